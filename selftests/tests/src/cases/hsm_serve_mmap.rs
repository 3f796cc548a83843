//! hsm_serve_mmap: `hsm-serve --mode mmap` (FAN_PRE_ACCESS only, mainline's
//! mmap-time event) serves the same stubs correctly: touching a few pages
//! of a mapped 16 MiB stub shows the source's bytes, at the price of
//! fetching the whole mapped file in one event at mmap() (the cost the
//! fault mode avoids; compare hsm_serve_fault); the file is then complete.
//! read() of another stub fetches what it reads, exactly.  A single file
//! can be served as SRC and DST.  All of it twice: from a local source
//! directory and from nginx (an HTTP source, range requests; started by the
//! test on loopback, its document root on the scratch tmpfs), where the
//! single file's SRC is the URL of that one file.  Runs on the unpatched
//! kernel too.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md) and the default,
//! mmap-time behaviour (cover letter, Design: without FAN_PRE_FAULT nothing
//! changes), with either source (issue 15 items 1 and 2).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::page_size;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::{tcheck, tfail, tinfo, tpass, Ctx, Test};
use nix::sys::signal::Signal;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_serve_mmap",
    doc: "hsm-serve --mode mmap: a mapped stub is fetched whole at mmap(), exact; read() fetches what it reads",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("doc", "selftests/hsm/README.md"),
        ("cover-letter", "Design: without FAN_PRE_FAULT nothing changes"),
    ],
    needs_cmds: &["nginx"],
    timeout: Duration::from_secs(400),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const BIG: u64 = 16 << 20;

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        serve(ctx, kind);
    }
}

fn serve(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, "src");
    let w = source.label();
    let src = &source.dir;
    let dst = ctx.path(&format!("dst-{kind:?}"));
    create_pattern(&src.join("big"), BIG);
    create_pattern(&src.join("other"), 256 * page_size());
    populate(src, &dst);

    let mut s = Serve::start(&serve_args(&source.spec, &dst, "mmap", &[]));
    let before = s.stats();
    let (code, out) = validate(
        &dst.join("big"),
        &["--via", "mmap", "--sample", "4", "--seed", "3"],
    );
    tcheck!(
        code == 0,
        "{w}: 4 touched pages of the mapped stub exact: {out}"
    );
    let after = s.stats();
    let fetched = kv(&after, "fetched_bytes") - kv(&before, "fetched_bytes");
    let events = kv(&after, "events") - kv(&before, "events");
    tinfo!(
        "{w}: mmap mode: 4 touches of a {} file: {events} events, fetched {}",
        mib(BIG),
        mib(fetched)
    );
    tcheck!(
        fetched == BIG && events == 1,
        "{w}: mmap() fetched the whole file in one event ({fetched} bytes, {events} events)"
    );
    tcheck!(
        kv(&after, "files_completed") == 1 && stub_tag(&dst.join("big")).is_none(),
        "{w}: the mapped file is complete and no longer a stub"
    );

    // read() of 3 separate pages fetches those pages.
    let (code, out) = validate(
        &dst.join("other"),
        &["--via", "pread", "--pages", "5,100,255"],
    );
    let last = s.stats();
    let fetched = kv(&last, "fetched_bytes") - kv(&after, "fetched_bytes");
    tcheck!(
        code == 0 && fetched == 3 * page_size(),
        "{w}: read() of 3 pages exact and fetched exactly them ({fetched} bytes): {out}"
    );
    let ranges = populated_xattr(&dst.join("other")).unwrap_or_default();
    tcheck!(
        ranges.ranges()
            == [
                (5 * page_size(), 6 * page_size()),
                (100 * page_size(), 101 * page_size()),
                (255 * page_size(), 256 * page_size())
            ],
        "{w}: user.hsm.populated records exactly those pages: {}",
        ranges.encode()
    );
    let (st, m) = s.stop(Signal::SIGTERM);
    match (st.code(), m) {
        (Some(0), Some(m)) if kv(&m, "errors") == 0 => tpass!("{w}: SIGTERM: exit 0, no errors"),
        (c, m) => tfail!("{w}: SIGTERM: exit {c:?}, final stats {m:?}"),
    }

    // A single file as SRC and DST: the file itself, or its URL.
    let one_src = src.join("other");
    let one_spec = match kind {
        SourceKind::Dir => one_src.clone().into_os_string(),
        SourceKind::Http => {
            let mut u = source.spec.clone();
            u.push("other");
            u
        }
    };
    let one = ctx.path(&format!("one-stub-{kind:?}"));
    populate(&one_src, &one);
    let mut s = Serve::start(&serve_args(&one_spec, &one, "mmap", &[]));
    let (code, out) = validate(&one, &["--via", "both"]);
    let m = s.stats();
    tcheck!(
        code == 0 && kv(&m, "fetched_bytes") == 256 * page_size(),
        "{w}: single-file SRC {one_spec:?} and DST: served exactly ({} bytes fetched): {out}",
        kv(&m, "fetched_bytes")
    );
    s.stop(Signal::SIGTERM);
}
