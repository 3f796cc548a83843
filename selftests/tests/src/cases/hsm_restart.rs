//! hsm_restart: hsm-serve stopped in the middle of fetching a file and
//! started again never fetches a range twice, and the file ends up exact.
//! A slow daemon (--fetch-delay-ms) serves the first 256 KiB of an 8 MiB
//! stub page by page (MADV_RANDOM), then a reader faults the whole file and
//! the daemon is stopped while it fetches (SIGTERM: it finishes the events it has read and exits
//! 0; SIGKILL: it dies at once).  The recorded state (user.hsm.populated, or
//! the --state file) covers part of the file; for SIGTERM it equals the
//! bytes the daemon reported fetched.  The kernel denies the fault-time
//! events the dead daemon left pending (the reader gets SIGBUS or EIO and
//! caches nothing unfilled); after dropping the page cache, a new daemon
//! serves the whole file: content exact, and it fetches exactly the bytes
//! the state did not cover.  Both stops with a local source directory and
//! with nginx as an HTTP source (started by the test on loopback, its
//! document root on the scratch tmpfs).  With --no-sync (no fdatasync per
//! fill) the state records nothing of an incomplete file (data a crash
//! could lose is never recorded as filled), and the second daemon fetches
//! it all.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): state survives a
//! restart, with either source (issue 15 items 1 and 2); review-v1's HSM
//! item "--no-sync can record unfilled data as filled".

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::{drop_cache, page_size};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_restart",
    doc: "hsm-serve stopped mid-fetch (SIGTERM, SIGKILL) and restarted: nothing refetched, content exact",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(400),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const SIZE: u64 = 8 << 20;

struct Case {
    what: &'static str,
    stop: Signal,
    /// None: xattr state; Some(name): a state file of that name.
    state_file: Option<&'static str>,
    source: SourceKind,
    /// hsm-serve --no-sync: nothing it fills is recorded.
    no_sync: bool,
}

const CASES: &[Case] = &[
    Case {
        what: "SIGTERM, xattr state",
        stop: Signal::SIGTERM,
        state_file: None,
        source: SourceKind::Dir,
        no_sync: false,
    },
    Case {
        what: "SIGKILL, state file",
        stop: Signal::SIGKILL,
        state_file: Some("hsm.state"),
        source: SourceKind::Dir,
        no_sync: false,
    },
    Case {
        what: "SIGTERM, xattr state, HTTP source",
        stop: Signal::SIGTERM,
        state_file: None,
        source: SourceKind::Http,
        no_sync: false,
    },
    Case {
        what: "SIGKILL, state file, HTTP source",
        stop: Signal::SIGKILL,
        state_file: Some("hsm-http.state"),
        source: SourceKind::Http,
        no_sync: false,
    },
    Case {
        what: "SIGKILL, --no-sync",
        stop: Signal::SIGKILL,
        state_file: None,
        source: SourceKind::Dir,
        no_sync: true,
    },
];

/// The ranges the state records for `rel`.
fn recorded(c: &Case, dst: &Path, state: &Path, rel: &str) -> RangeSet {
    match c.state_file {
        None => populated_xattr(&dst.join(rel)).unwrap_or_default(),
        Some(_) => {
            let text = std::fs::read_to_string(state).unwrap_or_default();
            hsm::state::decode(&text)
                .or_brok("parse state file")
                .remove(Path::new(rel))
                .unwrap_or_default()
        }
    }
}

fn run(ctx: &Ctx) {
    let sources: Vec<TestSource> = BOTH_SOURCES
        .iter()
        .map(|&k| {
            let s = TestSource::new(ctx, k, "src");
            create_pattern(&s.dir.join("file"), SIZE);
            s
        })
        .collect();
    for (i, c) in CASES.iter().enumerate() {
        let Some(source) = sources.iter().find(|s| s.kind == c.source) else {
            tbrok!("{}: no {:?} source", c.what, c.source);
        };
        let src = &source.spec;
        let dst = ctx.path(&format!("dst{i}"));
        populate(&source.dir, &dst);
        let state = ctx.path(c.state_file.unwrap_or("unused"));
        let mut extra = vec!["--workers", "2"];
        let state_s = state.to_string_lossy().into_owned();
        if c.state_file.is_some() {
            extra.extend(["--state", state_s.as_str()]);
        }
        if c.no_sync {
            extra.push("--no-sync");
        }
        let file = dst.join("file");

        // First daemon: slow.
        let mut slow = extra.clone();
        slow.extend(["--fetch-delay-ms", "150"]);
        let mut s = Serve::start(&serve_args(src, &dst, "fault", &slow));
        let (code, out) = validate(
            &file,
            &["--via", "mmap", "--pages", "0-63", "--advice", "random"],
        );
        tcheck!(code == 0, "{}: first 64 pages exact: {out}", c.what);
        let first = s.stats();
        // A reader of the whole file; stop the daemon while it fetches.
        let mut reader = check_cmd(
            &file,
            &["--via", "mmap", "--threads", "2", "--advice", "random"],
        )
        .stderr(Stdio::null())
        .spawn()
        .or_brok("spawn reader");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = s.stats();
            if kv(&now, "events") >= kv(&first, "events") + 3 {
                break;
            }
            if Instant::now() > deadline {
                tbrok!("{}: the reader's faults reached no daemon", c.what);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let reading = matches!(reader.try_wait(), Ok(None));
        let (st, last) = s.stop(c.stop);
        tcheck!(
            reading,
            "{}: the daemon was stopped while the reader still waited for the file",
            c.what
        );
        tinfo!("{}: first daemon ended: {st}", c.what);
        let rc = reader.wait().or_brok("wait reader");
        tinfo!(
            "{}: the reader across the stop ended with {rc} (its result is not checked: \
             pending events are allowed when the daemon goes away)",
            c.what
        );
        let r1 = recorded(c, &dst, &state, "file");
        tinfo!(
            "{}: state after the stop: {} of {} bytes populated ({} ranges)",
            c.what,
            r1.total(),
            SIZE,
            r1.ranges().len()
        );
        if c.no_sync {
            tcheck!(
                r1.is_empty(),
                "{}: nothing recorded of what was filled unsynced ({} bytes recorded)",
                c.what,
                r1.total()
            );
        } else {
            tcheck!(
                r1.covers(0, 64 * page_size()) && r1.total() < SIZE,
                "{}: the state covers the first 64 pages and not the whole file",
                c.what
            );
        }
        if c.stop == Signal::SIGTERM {
            let f1 = last.as_ref().map(|m| kv(m, "fetched_bytes"));
            tcheck!(
                st.code() == Some(0) && f1 == Some(r1.total()),
                "{}: exit 0 and the {f1:?} bytes fetched are exactly the {} recorded",
                c.what,
                r1.total()
            );
        }

        drop_cache(&file);
        let mut s = Serve::start(&serve_args(src, &dst, "fault", &extra));
        let (code, out) = validate(&file, &["--via", "both"]);
        tcheck!(
            code == 0,
            "{}: after the restart the whole file is exact: {out}",
            c.what
        );
        let m = s.stats();
        let f2 = kv(&m, "fetched_bytes");
        tinfo!(
            "{}: second daemon fetched {f2} bytes ({} recorded before, {SIZE} in all)",
            c.what,
            r1.total()
        );
        tcheck!(
            f2 == SIZE - r1.total(),
            "{}: the second daemon fetched only what the state lacked ({f2} = {SIZE} - {})",
            c.what,
            r1.total()
        );
        tcheck!(
            kv(&m, "files_completed") == 1 && stub_tag(&file).is_none(),
            "{}: the file is complete and no longer a stub",
            c.what
        );
        if c.state_file.is_some() {
            let left = recorded(c, &dst, &state, "file");
            tcheck!(
                left.is_empty(),
                "{}: the complete file left the state file",
                c.what
            );
        } else {
            tcheck!(
                populated_xattr(&file).is_none(),
                "{}: the complete file has no user.hsm.populated",
                c.what
            );
        }
        s.stop(Signal::SIGTERM);
    }
}
