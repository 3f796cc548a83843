//! hsm_http_down: the HTTP server of hsm-serve goes away, and comes back.
//! nginx (started by the test on loopback, document root on the scratch
//! tmpfs) serves the source; a daemon (fault mode, `--http-timeout-ms
//! 3000 --http-retries 2`) serves stubs from it.  Two ways down: nginx
//! stopped (connection refused: retried with backoff, then EIO), and a
//! socket on nginx's port that accepts connections and never answers (the
//! request times out: EIO once the 3 s budget is spent, not before).  In
//! each, a read() of an unfilled page fails with EIO and a fault on one
//! kills the reader with SIGBUS, within the budget and a margin; nothing is
//! recorded as filled and the daemon keeps running.  With nginx started
//! again on the same port, the same daemon serves the pages that failed
//! (asked again: exact through a fault and read()) and every page of
//! another stub.
//!
//! Guards issue 15 item 6 (server down: EIO within the timeout, the daemon
//! keeps serving; selftests/hsm/README.md, HTTP source: timeouts, retries,
//! "never filled with garbage").

use super::hsm_http::*;
use super::hsm_util::*;
use crate::common::page_size;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::net::TcpListener;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_http_down",
    doc: "hsm-serve with its nginx stopped or hung: EIO/SIGBUS within the timeout, nothing recorded; served again when nginx is back",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(300),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const PAGES: u64 = 64;
/// `--http-timeout-ms`.
const TIMEOUT: Duration = Duration::from_millis(3000);
/// How much later than the budget the EIO may come (TCG, fanotify, the
/// reader's own start).
const MARGIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Down {
    /// nginx stopped: connections are refused.
    Refused,
    /// A socket that never accepts: requests get no answer.
    Hung,
}

struct Row {
    down: Down,
    /// Pages of stub "a" read() and faulted while the server is down.
    read: u64,
    fault: u64,
}

const ROWS: &[Row] = &[
    Row {
        down: Down::Refused,
        read: 10,
        fault: 20,
    },
    Row {
        down: Down::Hung,
        read: 30,
        fault: 40,
    },
];

fn run(ctx: &Ctx) {
    let base = http_dir(ctx).join("down");
    let root = base.join("root");
    let src = root.join("src");
    let dst = ctx.path("dst");
    std::fs::create_dir_all(&src).or_brok("mkdir the source");
    for f in ["a", "b"] {
        create_pattern(&src.join(f), PAGES * page_size());
    }
    populate(&src, &dst);
    let mut nginx = Nginx::start(&base, &root, Conf::default());
    let port = nginx.port();
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let mut s = Serve::start(&serve_args(
        nginx.url("src/"),
        &dst,
        "fault",
        &[
            "--workers",
            "2",
            "--http-timeout-ms",
            &timeout_ms,
            "--http-retries",
            "2",
        ],
    ));
    let a = dst.join("a");
    let res = Reader::spawn(&a, &[0], Access::Read).wait(MARGIN);
    tcheck!(res.all_exact(), "nginx up: page 0 of a exact: {res:?}");

    for row in ROWS {
        // Take the server down.
        nginx.stop();
        let hung = match row.down {
            Down::Refused => None,
            Down::Hung => Some(TcpListener::bind(("127.0.0.1", port)).or_brok("bind nginx's port")),
        };
        for (page, access) in [(row.read, Access::Read), (row.fault, Access::Fault)] {
            let t0 = Instant::now();
            let res = Reader::spawn(&a, &[page], access).wait(TIMEOUT + 2 * MARGIN);
            let took = t0.elapsed();
            let what = format!("{:?}: page {page} through {access:?}", row.down);
            tcheck!(
                res.denied_at_end(access),
                "{what}: {} ({res:?})",
                match access {
                    Access::Read => "EIO",
                    Access::Fault => "SIGBUS",
                }
            );
            tinfo!("{what}: denied after {took:?} (budget {TIMEOUT:?})");
            match row.down {
                Down::Refused => tcheck!(
                    took < TIMEOUT + MARGIN,
                    "{what}: denied within the budget and a margin ({took:?})"
                ),
                Down::Hung => tcheck!(
                    took >= TIMEOUT && took < TIMEOUT + MARGIN,
                    "{what}: denied once the {TIMEOUT:?} budget was spent, not before ({took:?})"
                ),
            }
            let pg = page_size();
            let r = populated_xattr(&a).unwrap_or_default();
            tcheck!(
                !r.covers(page * pg, (page + 1) * pg),
                "{what}: nothing recorded as filled ({r:?})"
            );
        }
        tcheck!(s.alive(), "{:?}: hsm-serve still running", row.down);
        drop(hung);
        // Back up, on the same port.
        nginx = Nginx::start_on(&base, &root, Conf::default(), port);
    }

    // The same daemon serves again: the pages that failed, asked again,
    // and all of another stub.
    for row in ROWS {
        for (page, access) in [(row.read, Access::Read), (row.fault, Access::Fault)] {
            for again in [Access::Fault, Access::Read] {
                let res = Reader::spawn(&a, &[page], again).wait(MARGIN);
                tcheck!(
                    res.all_exact(),
                    "nginx back: page {page} (denied to {access:?} while {:?}) exact through \
                     {again:?}: {res:?}",
                    row.down
                );
            }
        }
    }
    let (code, out) = validate(&dst.join("b"), &["--via", "both"]);
    tcheck!(code == 0, "nginx back: every page of b exact: {out}");
    let m = s.stats();
    let denied = 2 * ROWS.len() as u64;
    tcheck!(
        kv(&m, "errors") >= denied,
        "{} errors counted for {denied} denied accesses",
        kv(&m, "errors")
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "SIGTERM: {st}");
    nginx.stop();
}
