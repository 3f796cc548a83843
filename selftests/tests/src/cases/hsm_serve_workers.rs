//! hsm_serve_workers: hsm-serve fills different files in parallel.  With a
//! slow source (--fetch-delay-ms 3000), two readers faulting one page each
//! of two different stubs at the same time: with --workers 2 the daemon
//! reports two fetches in progress at once (max_parallel=2) and both
//! readers finish in less than two fetch delays; with --workers 1 (the
//! control, which shows both checks can tell) max_parallel=1 and they take
//! at least two delays.  Content exact in both.  Both with a local source
//! directory and with nginx (an HTTP source, range requests, each worker
//! with its own keep-alive connection; started by the test on loopback,
//! its document root on the scratch tmpfs), on ext4, xfs and btrfs.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): a worker pool,
//! different files in parallel, with either source (issue 15 items 1 and
//! 2).

use super::hsm_http::{cleanup, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_serve_workers",
    doc: "hsm-serve --workers 2 fills two files at once (max_parallel=2, < 2 delays); --workers 1 takes two",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    needs_cmds: &["nginx"],
    timeout: Duration::from_secs(300),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const DELAY_MS: u64 = 3000;

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        let source = TestSource::new(ctx, kind, "src");
        let w = source.label();
        for f in ["a", "b"] {
            create_pattern(&source.dir.join(f), 16 * 4096);
        }
        for workers in ["2", "1"] {
            let dst = ctx.path(&format!("dst-{kind:?}-{workers}"));
            populate(&source.dir, &dst);
            one(&source.spec, &dst, w, workers);
        }
    }
}

/// Two readers of two stubs under `dst` at once, served by `--workers
/// workers` from `src`.
fn one(src: &OsStr, dst: &Path, w: &str, workers: &str) {
    let delay = DELAY_MS.to_string();
    let s = Serve::start(&serve_args(
        src,
        dst,
        "fault",
        &["--workers", workers, "--fetch-delay-ms", &delay],
    ));
    let t0 = Instant::now();
    let readers: Vec<_> = ["a", "b"]
        .iter()
        .map(|f| {
            check_cmd(
                &dst.join(f),
                &["--via", "mmap", "--pages", "3", "--advice", "random"],
            )
            .spawn()
            .or_brok("spawn reader")
        })
        .collect();
    let ok = wait_ok(readers);
    let took = t0.elapsed();
    let (_, last) = s.stop(Signal::SIGTERM);
    let par = last.map(|m| kv(&m, "max_parallel")).unwrap_or_default();
    tinfo!(
        "{w}: --workers {workers}: two files, one {DELAY_MS} ms fetch each: {} ms",
        took.as_millis()
    );
    tcheck!(
        ok == 2,
        "{w}: --workers {workers}: both readers saw exact content"
    );
    let want = if workers == "2" { 2 } else { 1 };
    tcheck!(
        par == want,
        "{w}: --workers {workers}: at most {par} fetches were in progress at once, want {want}"
    );
    if workers == "2" {
        // Serial fills cannot take less than two delays; parallel ones
        // take one plus the readers' start-up (1-2 s under TCG).
        let limit = Duration::from_millis(DELAY_MS * 2);
        tcheck!(
            took < limit,
            "{w}: --workers 2: the two files were filled in parallel ({} ms < {} ms)",
            took.as_millis(),
            limit.as_millis()
        );
    } else {
        let limit = Duration::from_millis(DELAY_MS * 2);
        tcheck!(
            took >= limit,
            "{w}: --workers 1 (control): the fills were serial ({} ms >= {} ms)",
            took.as_millis(),
            limit.as_millis()
        );
    }
}
