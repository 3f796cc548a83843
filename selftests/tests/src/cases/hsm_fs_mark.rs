//! hsm_fs_mark: hsm-serve watches DST's filesystem with one filesystem
//! mark instead of an inode mark per stub walked at start-up.
//!
//! * A stub that hsm-populate creates after the daemon is ready is served:
//!   its touched pages are exact and fetched on demand.
//! * The daemon's own accesses never wait on it: with one worker, the
//!   source directory on DST's filesystem and the state file on it too, a
//!   stub read whole is exact within the time limit (a worker that queued
//!   the event of its own read of SRC, or of its own state file write,
//!   behind itself would hang), and the daemon counts those events as its
//!   own (`own` > 0).  With nginx, only the state file is on the filesystem.
//! * A file that is not a stub (written in DST, or outside DST on the same
//!   filesystem, before the start) reads back exact; its events (at least
//!   one each) are all answered by ignoring it, and a second read with a
//!   cold page cache sends none.
//! * A stub reached by a path outside DST (a hard link) is refused with EIO,
//!   not read as holes; through DST it is exact.
//!
//! Each case with a local source directory and with nginx.  On a kernel
//! without FAN_PRE_FAULT hsm-serve exits 3 and the test is TCONF.
//!
//! Guards issue 15 item 4 (production marking: a filesystem mark, the
//! daemon's own accesses, completed and other files ignored, stubs created
//! after start served) and the fanotify(7) text of patch 4 (an inode
//! leaves fault-time mode under a filesystem mark through an ignore mark).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::{drop_cache, page_size};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_fs_mark",
    doc: "hsm-serve: one filesystem mark; late stubs served, own accesses never wait, other files ignored",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    needs_cmds: &["nginx"],
    timeout: Duration::from_secs(600),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const SIZE: u64 = 1 << 20;
/// A reader that takes longer than this is taken as hung (a deadlock is
/// forever; one worker that fsyncs a state file per fill under TCG on a
/// loaded host takes tens of seconds for 1 MiB).
const HANG: Duration = Duration::from_secs(180);

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        one_source(ctx, kind);
    }
}

/// `hsm-validate check PATH ARGS` that must end within [`HANG`].
fn validate_in_time(path: &Path, args: &[&str]) -> Result<(), String> {
    let mut c = check_cmd(path, args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .or_brok("spawn hsm-validate");
    let t0 = Instant::now();
    loop {
        if let Some(st) = c.try_wait().or_brok("wait hsm-validate") {
            return if st.success() {
                Ok(())
            } else {
                Err(format!("hsm-validate failed: {st}"))
            };
        }
        if t0.elapsed() > HANG {
            let _ = c.kill();
            let _ = c.wait();
            return Err(format!("hsm-validate still ran after {HANG:?} (hung)"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn one_source(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, &format!("src-{kind:?}"));
    let w = source.label();
    let src = &source.dir;
    let dst = ctx.path(&format!("dst-{kind:?}"));
    let state = ctx.path(&format!("state-{kind:?}"));
    std::fs::create_dir(&dst).or_brok("mkdir dst");
    create_pattern(&src.join("early"), SIZE);

    // Own accesses: one worker, the state file on DST's filesystem (and,
    // for the local source, SRC too).
    populate(src, &dst);
    // Files that are not stubs, written before the daemon starts (so that
    // their first events come when they are read).
    let plain = dst.join("plain");
    let outside = ctx.path(&format!("outside-{kind:?}"));
    for p in [&plain, &outside] {
        create_pattern(p, SIZE);
        drop_cache(p);
    }
    let state_arg = state.to_string_lossy();
    let mut s = Serve::start(&serve_args(
        &source.spec,
        &dst,
        "fault",
        &["--workers", "1", "--state", &state_arg],
    ));
    let r = validate_in_time(&dst.join("early"), &["--via", "both"]);
    let m = s.stats();
    tcheck!(
        r.is_ok() && kv(&m, "fetched_bytes") == SIZE && kv(&m, "files_completed") == 1,
        "{w}: one worker, state file on DST's filesystem: whole stub exact and fetched once \
         ({} bytes, {} complete): {r:?}",
        kv(&m, "fetched_bytes"),
        kv(&m, "files_completed")
    );
    tcheck!(
        kv(&m, "own") > 0,
        "{w}: the daemon's own accesses reached it as events and were answered at once \
         (own={})",
        kv(&m, "own")
    );

    // A stub created after the daemon is ready.
    std::fs::create_dir(src.join("sub")).or_brok("mkdir src/sub");
    create_pattern(&src.join("sub/late"), SIZE);
    let late_dir = dst.join("sub");
    std::fs::create_dir(&late_dir).or_brok("mkdir dst/sub");
    populate(&src.join("sub/late"), &late_dir.join("late"));
    let before = s.stats();
    let r = validate_in_time(
        &late_dir.join("late"),
        &["--via", "mmap", "--sample", "8", "--advice", "random"],
    );
    let after = s.stats();
    let fetched = kv(&after, "fetched_bytes") - kv(&before, "fetched_bytes");
    tcheck!(
        r.is_ok() && fetched > 0 && fetched <= 8 * page_size(),
        "{w}: a stub created after the start is served: 8 touched pages exact, {fetched} \
         bytes fetched: {r:?}"
    );

    // Files that are not stubs: in DST, and outside it.
    let e0 = kv(&s.stats(), "events");
    let i0 = kv(&s.stats(), "ignored");
    for p in [&plain, &outside] {
        let r = validate_in_time(p, &["--via", "both"]);
        tcheck!(r.is_ok(), "{w}: {} reads back exact: {r:?}", p.display());
    }
    let m1 = s.stats();
    let (e1, i1) = (kv(&m1, "events"), kv(&m1, "ignored"));
    tcheck!(
        e1 - e0 >= 2
            && e1 - e0 == i1 - i0
            && kv(&m1, "fetched_bytes") == kv(&after, "fetched_bytes"),
        "{w}: the events of files that are not stubs were all answered by ignoring them \
         ({} events, {} ignored), nothing fetched",
        e1 - e0,
        i1 - i0
    );
    for p in [&plain, &outside] {
        drop_cache(p);
        let r = validate_in_time(p, &["--via", "both"]);
        tcheck!(r.is_ok(), "{w}: {} again: exact: {r:?}", p.display());
    }
    let e2 = kv(&s.stats(), "events");
    tcheck!(
        e2 == e1,
        "{w}: once ignored, reading them with a cold cache sends no event ({e1} -> {e2})"
    );

    // A stub reached through a hard link outside DST.
    create_pattern(&src.join("linked"), SIZE);
    populate(&src.join("linked"), &dst.join("linked"));
    let link = ctx.path(&format!("link-{kind:?}"));
    std::fs::hard_link(dst.join("linked"), &link).or_brok("hard link");
    let f = std::fs::File::open(&link).or_brok("open the link");
    let mut buf = vec![0u8; page_size() as usize];
    let res = f.read_at(&mut buf, 0);
    tinfo!("{w}: read through the link outside DST: {res:?}");
    tcheck!(
        matches!(&res, Err(e) if e.raw_os_error() == Some(Errno::EIO as i32)),
        "{w}: a stub reached outside DST is refused with EIO, never read as holes ({res:?})"
    );
    drop(f);
    std::fs::remove_file(&link).or_brok("remove the link");
    let r = validate_in_time(&dst.join("linked"), &["--via", "pread", "--sample", "4"]);
    tcheck!(r.is_ok(), "{w}: and through DST it is exact: {r:?}");

    let (st, last) = s.stop(Signal::SIGTERM);
    tcheck!(
        st.code() == Some(0) && last.as_ref().is_some_and(|m| kv(m, "errors") == 1),
        "{w}: SIGTERM: exit {:?}, one error (the refused link): {last:?}",
        st.code()
    );
}
