//! hsm_http_bad_answer: an HTTP server that answers range requests wrongly
//! gets EIO, and nothing of it is recorded as filled.  A tiny HTTP/1.1
//! server in a thread of the test (nginx cannot answer wrongly on demand)
//! serves the source tree, on the scratch tmpfs, to a daemon in fault mode.
//! For each wrong answer (a body cut short by a closed connection; a
//! `Content-Length` and body 100 bytes shorter or longer than the range; a
//! longer body delimited by closing the connection; the bytes of another
//! range with a `Content-Range` that says so; `200` with the whole file),
//! a read() of an unfilled page fails with EIO and a fault on another one
//! kills the reader with SIGBUS, after the server was asked for them; the
//! pages are neither in the state nor in the page cache.  With the server
//! answering right again, the same daemon asks for the same pages again
//! and they read exact through a fault and read(), and are recorded.
//!
//! Guards issue 15 item 6 (a short or wrong-length body: EIO, nothing
//! recorded as filled) and the answer checks of the HTTP source
//! (selftests/hsm/README.md: `Content-Range` and lengths checked, wrong or
//! unchecked bytes never written as filled).

use super::hsm_http::*;
use super::hsm_util::*;
use crate::common::{cached, page_size};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, Ctx, Test};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_http_bad_answer",
    doc: "hsm-serve from an HTTP server that answers short, long or wrong ranges: EIO/SIGBUS, nothing recorded; asked again once right",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(300),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const PAGES: u64 = 64;
/// The page read() and the page faulted in each stub.
const READ_PAGE: u64 = 8;
const FAULT_PAGE: u64 = 40;
const WAIT: Duration = Duration::from_secs(60);

const ANSWERS: &[Answer] = &[
    Answer::CutShort,
    Answer::ShortLength,
    Answer::LongLength,
    Answer::LongUntilClose,
    Answer::OtherRange,
    Answer::WholeFile,
];

/// Requests for `path` covering `page` among `asked`.
fn asked_for(asked: &[Asked], path: &str, page: u64) -> usize {
    let off = page * page_size();
    asked
        .iter()
        .filter(|a| a.path == path && a.start <= off && off < a.end)
        .count()
}

fn run(ctx: &Ctx) {
    let root = http_dir(ctx).join("bad").join("root");
    let src = root.join("src");
    let dst = ctx.path("dst");
    std::fs::create_dir_all(&src).or_brok("mkdir the source");
    for i in 0..ANSWERS.len() {
        create_pattern(&src.join(format!("f{i}")), PAGES * page_size());
    }
    populate(&src, &dst);
    let server = Responder::start(&root);
    let mut s = Serve::start(&serve_args(
        format!("{}src/", server.url()),
        &dst,
        "fault",
        &["--workers", "2"],
    ));
    let pg = page_size();
    let accesses = [(READ_PAGE, Access::Read), (FAULT_PAGE, Access::Fault)];
    for (i, &answer) in ANSWERS.iter().enumerate() {
        let name = format!("f{i}");
        let stub = dst.join(&name);
        let path = format!("src/{name}");
        server.set(answer);
        for (page, access) in accesses {
            let what = format!("{answer:?}: page {page} through {access:?}");
            let res = Reader::spawn(&stub, &[page], access).wait(WAIT);
            tcheck!(
                res.denied_at_end(access),
                "{what}: {}, never wrong bytes ({res:?})",
                match access {
                    Access::Read => "EIO",
                    Access::Fault => "SIGBUS",
                }
            );
            let n = asked_for(&server.asked(), &path, page);
            tcheck!(n >= 1, "{what}: the server was asked for it ({n} requests)");
            check_unfilled(&what, &stub, page);
        }

        // Right answers again: asked again, exact, recorded.
        server.set(Answer::Right);
        for (page, access) in accesses {
            let before = asked_for(&server.asked(), &path, page);
            let what = format!("{answer:?}, then right: page {page}");
            for again in [access, other(access)] {
                let res = Reader::spawn(&stub, &[page], again).wait(WAIT);
                tcheck!(res.all_exact(), "{what}: exact through {again:?}: {res:?}");
            }
            let after = asked_for(&server.asked(), &path, page);
            tcheck!(
                after > before,
                "{what}: the daemon asked the server again ({} more requests)",
                after - before
            );
            let r = populated_xattr(&stub).unwrap_or_default();
            tcheck!(
                r.covers(page * pg, (page + 1) * pg),
                "{what}: recorded as filled now ({r:?})"
            );
        }
    }
    tcheck!(s.alive(), "hsm-serve still running after the wrong answers");
    let m = s.stats();
    let denied = (ANSWERS.len() * accesses.len()) as u64;
    tcheck!(
        kv(&m, "errors") >= denied,
        "{} errors counted for {denied} denied accesses",
        kv(&m, "errors")
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "SIGTERM: {st}");
}

fn other(a: Access) -> Access {
    match a {
        Access::Read => Access::Fault,
        Access::Fault => Access::Read,
    }
}

/// The denied page is neither recorded as filled nor in the page cache.
fn check_unfilled(what: &str, stub: &Path, page: u64) {
    let pg = page_size();
    let r = populated_xattr(stub).unwrap_or_default();
    let f = std::fs::File::open(stub).or_brok("open the stub");
    let c = cached(&f, page * pg, pg);
    tcheck!(
        !r.covers(page * pg, (page + 1) * pg) && c == 0,
        "{what}: nothing recorded as filled ({r:?}), nothing cached ({c} pages)"
    );
}
