//! hsm_http_kill: never zeros across a SIGKILL of hsm-serve in the middle of
//! HTTP fetches.  nginx (started by the test on loopback, its document root
//! on the scratch tmpfs) serves the source tree twice: under /slow/, every
//! range request that starts at byte 1000000 or later is sent at 1 byte/s
//! (`limit_rate` set from the `Range` header by a `map`), so its fetch does
//! not end while the test runs; under /fast/ nothing is limited.  A daemon
//! (fault mode, 4 workers) fetches from /slow/.  Four single-threaded
//! readers, each of its own 2 MiB stub (two fault pages in through a
//! MADV_RANDOM mapping, two read() them), read a few pages below 1000000,
//! which must be exact, then one page past it.  Once every reader is blocked
//! in the kernel on that page (its kernel stack shows the fanotify wait, its
//! report says which page) the daemon is SIGKILLed mid-fetch.  The kernel
//! denies the events the dead daemon left: each fault reader dies with
//! SIGBUS, each read() gets EIO, and no reader ever saw a page of zeros or
//! wrong bytes; the pages are not in the page cache, and the state records
//! the exact pages only.  A new daemon, fetching from /fast/ of the same
//! nginx, with the page cache as the kill left it (not dropped): the pages
//! that were pending read exact through a fault and read(), every page of
//! every stub is exact through a mapping and read(), and it fetched exactly
//! what the state lacked.
//!
//! Guards issue 15 item 6 (the reference HSM on an HTTP source never shows
//! unfilled data; selftests/hsm/README.md) and the listener-death rows of
//! the cover letter's fault-path matrix (patch 5).

use super::hsm_http::*;
use super::hsm_util::*;
use crate::common::{cached, page_size};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tfail, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_http_kill",
    doc: "hsm-serve SIGKILLed mid-fetch from a slow nginx: readers get the right bytes or EIO/SIGBUS, never zeros; a new daemon serves all",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("doc", "selftests/hsm/README.md"),
        (
            "cover-letter",
            "Fault-path matrix: listener killed with faults pending",
        ),
    ],
    timeout: Duration::from_secs(300),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

/// Each stub's size.
const SIZE: u64 = 2 << 20;
/// Range requests from this byte on are sent at 1 byte/s under /slow/.
const SLOW_FROM: u64 = 1_000_000;

/// nginx: a `map` from the `Range` header to the rate (0: unlimited) for
/// requests starting below [`SLOW_FROM`] (at most six digits).
const MAP: &str = "map $http_range $hsm_rate { default 1; \"~^bytes=[0-9]{1,6}-\" 0; }";

struct Row {
    access: Access,
    /// Pages read first: below SLOW_FROM, and (for read(), whose event may
    /// cover a readahead window) 32 pages apart.
    fast: &'static [u64],
    /// The page the daemon is killed on: past SLOW_FROM.
    slow: u64,
}

const ROWS: &[Row] = &[
    Row {
        access: Access::Fault,
        fast: &[0, 1, 2, 100, 244],
        slow: 245,
    },
    Row {
        access: Access::Read,
        fast: &[10, 60, 110],
        slow: 300,
    },
    Row {
        access: Access::Fault,
        fast: &[5, 50],
        slow: 511,
    },
    Row {
        access: Access::Read,
        fast: &[],
        slow: 400,
    },
];

fn run(ctx: &Ctx) {
    let pg = page_size();
    if (ROWS[0].slow * pg) < SLOW_FROM || (ROWS[0].slow - 1) * pg >= SLOW_FROM {
        tbrok!(
            "page {} is not the first page past {SLOW_FROM}",
            ROWS[0].slow
        );
    }
    let base = http_dir(ctx).join("kill");
    let root = base.join("root");
    let src = root.join("src");
    let dst = ctx.path("dst");
    std::fs::create_dir_all(&src).or_brok("mkdir the source");
    for i in 0..ROWS.len() {
        create_pattern(&src.join(format!("f{i}")), SIZE);
    }
    populate(&src, &dst);
    let srv = format!(
        "location /slow/ {{ alias \"{r}/\"; limit_rate $hsm_rate; }}\n\
         location /fast/ {{ alias \"{r}/\"; }}",
        r = root.display()
    );
    let nginx = Nginx::start(
        &base,
        &root,
        Conf {
            http: MAP,
            server: &srv,
        },
    );

    let s = Serve::start(&serve_args(
        nginx.url("slow/src/"),
        &dst,
        "fault",
        &["--workers", "4", "--http-timeout-ms", "600000"],
    ));
    let stub = |i: usize| dst.join(format!("f{i}"));
    let mut readers: Vec<Reader> = ROWS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut pages = r.fast.to_vec();
            pages.push(r.slow);
            Reader::spawn(&stub(i), &pages, r.access)
        })
        .collect();

    // Every reader blocked on its slow page, waiting for the daemon, which
    // is fetching it at 1 byte/s: none of them can move on before the kill.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(i) = readers.iter_mut().position(Reader::exited) {
            let res = readers.remove(i).wait(Duration::from_secs(1));
            tbrok!(
                "reader {i} ({:?}) ended before the kill: {res:?}",
                ROWS[i].access
            );
        }
        let mut blocked = 0;
        for (r, row) in readers.iter_mut().zip(ROWS) {
            if r.in_page() == Some(row.slow) && r.waits_for_listener() {
                blocked += 1;
            }
        }
        if blocked == ROWS.len() {
            break;
        }
        if Instant::now() > deadline {
            tbrok!(
                "only {blocked} of {} readers blocked on their slow page",
                ROWS.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tinfo!(
        "all {} readers wait in the kernel for the daemon (fanotify in their kernel stacks), \
         on pages past byte {SLOW_FROM}",
        ROWS.len()
    );
    let (st, _) = s.stop(Signal::SIGKILL);
    tinfo!("first daemon: {st}");

    let mut recorded = 0;
    for (i, (r, row)) in readers.drain(..).zip(ROWS).enumerate() {
        let res = r.wait(Duration::from_secs(60));
        let what = format!("reader {i} ({:?})", row.access);
        let wrong = res.wrong();
        tcheck!(
            wrong.is_empty(),
            "{what}: never a page of zeros or wrong bytes (wrong: {wrong:?})"
        );
        tcheck!(
            res.denied_at_end(row.access),
            "{what}: pages {:?} exact, then page {} {} at the kill: {res:?}",
            row.fast,
            row.slow,
            match row.access {
                Access::Read => "failed with EIO",
                Access::Fault => "killed it with SIGBUS",
            }
        );
        let f = std::fs::File::open(stub(i)).or_brok("open the stub");
        let c = cached(&f, row.slow * page_size(), page_size());
        tcheck!(
            c == 0,
            "{what}: the pending page {} is not in the page cache ({c} cached)",
            row.slow
        );
        let r1 = populated_xattr(&stub(i)).unwrap_or_default();
        let pg = page_size();
        let fast_ok = row.fast.iter().all(|&p| r1.covers(p * pg, (p + 1) * pg));
        tcheck!(
            fast_ok && !r1.covers(row.slow * pg, (row.slow + 1) * pg),
            "{what}: the state records the exact pages {:?} and not page {}: {r1:?}",
            row.fast,
            row.slow
        );
        recorded += r1.total();
    }

    // A new daemon, from the same nginx without the limit; nothing dropped.
    let mut s = Serve::start(&serve_args(
        nginx.url("fast/src/"),
        &dst,
        "fault",
        &["--workers", "4"],
    ));
    for (i, row) in ROWS.iter().enumerate() {
        for access in [Access::Fault, Access::Read] {
            let res = Reader::spawn(&stub(i), &[row.slow], access).wait(Duration::from_secs(120));
            tcheck!(
                res.all_exact(),
                "after the restart: page {} of f{i} through {access:?}: exact ({res:?})",
                row.slow
            );
        }
        let (code, out) = validate(&stub(i), &["--via", "both"]);
        tcheck!(
            code == 0,
            "after the restart: every page of f{i} exact: {out}"
        );
    }
    let m = s.stats();
    let f2 = kv(&m, "fetched_bytes");
    let all = SIZE * ROWS.len() as u64;
    tcheck!(
        f2 == all - recorded,
        "the second daemon fetched what the state lacked: {f2} = {all} - {recorded}"
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    if st.code() != Some(0) {
        tfail!("second daemon: SIGTERM: {st}");
    }
    nginx.stop();
}
