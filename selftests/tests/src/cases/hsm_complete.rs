//! hsm_complete: a file hsm-serve (fault mode) has fully populated no
//! longer generates events.  Reading a stub whole (mapping and read(), size
//! not a page multiple) fetches exactly its size, counts it complete,
//! removes its user.hsm.stub / user.hsm.populated xattrs and ignores it
//! (inode ignore mark): reading and mapping it again with a cold page cache
//! reaches the daemon with no event, while a control stub still does.  A
//! restarted daemon (a new fanotify group: the old ignore marks are gone)
//! answers the complete file's first access by ignoring it, fetching
//! nothing, and then gets no event for it either.  SIGINT ends the daemon
//! like SIGTERM (exit 0, final stats).  All of it twice: from a local
//! source directory and from nginx (an HTTP source, range requests;
//! started by the test on loopback, its document root on the scratch
//! tmpfs).
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): a complete file costs
//! nothing, with either source (issue 15 items 1 and 2); issue 15 item 4
//! (completed files leave lazy mode through an ignore mark under the
//! daemon's filesystem mark).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::{drop_cache, page_size};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::{tcheck, Ctx, Test};
use nix::sys::signal::Signal;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_complete",
    doc: "hsm-serve: a fully populated file loses its stub tag and mark; no more events, also after a restart",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(400),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

fn size() -> u64 {
    (1 << 20) + 3 * page_size() + 100
}

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        complete(ctx, kind);
    }
}

fn complete(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, "src");
    let w = source.label();
    let src = &source.dir;
    let dst = ctx.path(&format!("dst-{kind:?}"));
    create_pattern(&src.join("full"), size());
    // Large enough that the two sampled pages' fault windows (up to 4 MiB
    // each, btrfs's readahead) can never fill it whole: at 64 pages, two
    // windows sometimes covered it, and it completed: then no control.
    create_pattern(&src.join("control"), 16 << 20);
    populate(src, &dst);
    let full = dst.join("full");
    let control = dst.join("control");

    let mut s = Serve::start(&serve_args(&source.spec, &dst, "fault", &[]));
    let (code, out) = validate(&full, &["--via", "both"]);
    tcheck!(code == 0, "{w}: whole file exact: {out}");
    let m0 = s.stats();
    tcheck!(
        kv(&m0, "fetched_bytes") == size() && kv(&m0, "files_completed") == 1,
        "{w}: fetched exactly its {} bytes ({}) and completed it ({})",
        size(),
        kv(&m0, "fetched_bytes"),
        kv(&m0, "files_completed")
    );
    tcheck!(
        stub_tag(&full).is_none() && populated_xattr(&full).is_none(),
        "{w}: the complete file has no user.hsm.stub or user.hsm.populated"
    );

    let e0 = kv(&m0, "events");
    drop_cache(&full);
    let (code, out) = validate(&full, &["--via", "both"]);
    let m1 = s.stats();
    tcheck!(code == 0, "{w}: re-read with a cold cache exact: {out}");
    tcheck!(
        kv(&m1, "events") == e0,
        "{w}: re-reading the complete file sent no event ({} before, {} after)",
        e0,
        kv(&m1, "events")
    );

    // Control: the counter does move for a stub.
    let (code, out) = validate(&control, &["--via", "mmap", "--sample", "2"]);
    let m2 = s.stats();
    tcheck!(
        code == 0 && kv(&m2, "events") > kv(&m1, "events"),
        "{w}: control stub: exact and events counted ({} -> {}): {out}",
        kv(&m1, "events"),
        kv(&m2, "events")
    );
    let (st, last) = s.stop(Signal::SIGINT);
    tcheck!(
        st.code() == Some(0) && last.is_some(),
        "{w}: SIGINT: exit {:?} with a final stats line: {last:?}",
        st.code()
    );

    // Restart: the complete file's first access is ignored, then no events.
    drop_cache(&full);
    let mut s = Serve::start(&serve_args(&source.spec, &dst, "fault", &[]));
    let (code, out) = validate(&full, &["--via", "both"]);
    let m3 = s.stats();
    tcheck!(
        code == 0
            && kv(&m3, "events") >= 1
            && kv(&m3, "ignored") == kv(&m3, "events")
            && kv(&m3, "fetched_bytes") == 0,
        "{w}: complete file after the restart: exact, {} events, {} of them answered by \
         ignoring it, {} bytes fetched: {out}",
        kv(&m3, "events"),
        kv(&m3, "ignored"),
        kv(&m3, "fetched_bytes")
    );
    drop_cache(&full);
    let (code, out) = validate(&full, &["--via", "both"]);
    let m4 = s.stats();
    tcheck!(
        code == 0 && kv(&m4, "events") == kv(&m3, "events"),
        "{w}: and once ignored: exact, no more events ({} -> {}): {out}",
        kv(&m3, "events"),
        kv(&m4, "events")
    );
    s.stop(Signal::SIGTERM);
}
