//! hsm_state_compact: hsm-serve keeps a stub's populated-range list within
//! 2 KiB (it must fit an xattr) by also fetching the smallest gaps.
//! Touching every 4th page of a 4 MiB stub (256 separate pages, whose list
//! would take about 3.5 KiB) leaves a user.hsm.populated of at most 2048
//! bytes that covers every touched page and records exactly the bytes the
//! daemon reports fetched, more than the touched pages (gaps were filled)
//! and less than the file.  Reading the whole file afterwards is exact and
//! the total fetched is the file size: no byte twice.  Both with a local
//! source directory and with nginx (an HTTP source, range requests; started
//! by the test on loopback, its document root on the scratch tmpfs), on
//! ext4, xfs and btrfs.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): compact per-file
//! state, with either source (issue 15 items 1 and 2).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::page_size;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_state_compact",
    doc: "hsm-serve: 256 scattered pages keep user.hsm.populated within 2 KiB (gaps fetched), exact, nothing twice",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    needs_cmds: &["nginx"],
    timeout: Duration::from_secs(900),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const PAGES: u64 = 1024;
const STRIDE: u64 = 4;

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        compact(ctx, kind);
    }
}

fn compact(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, "src");
    let w = source.label();
    let dst = ctx.path(&format!("dst-{kind:?}"));
    create_pattern(&source.dir.join("f"), PAGES * page_size());
    populate(&source.dir, &dst);
    let file = dst.join("f");
    let mut s = Serve::start(&serve_args(&source.spec, &dst, "fault", &[]));

    let touched: Vec<u64> = (0..PAGES).step_by(STRIDE as usize).collect();
    let list = touched
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (code, out) = validate(
        &file,
        &["--via", "mmap", "--advice", "random", "--pages", &list],
    );
    tcheck!(
        code == 0,
        "{w}: {} scattered pages exact: {out}",
        touched.len()
    );
    let m = s.stats();
    let fetched = kv(&m, "fetched_bytes");
    let raw = hsm::xattr::lget(&file, hsm::POPULATED_XATTR)
        .or_brok("read user.hsm.populated")
        .unwrap_or_default();
    let ranges = RangeSet::decode(&text(&raw)).or_brok("decode user.hsm.populated");
    tinfo!(
        "{w}: {} touched pages: {} events, fetched {fetched} bytes, state {} bytes in {} ranges",
        touched.len(),
        kv(&m, "events"),
        raw.len(),
        ranges.ranges().len()
    );
    tcheck!(
        !raw.is_empty() && raw.len() <= 2048,
        "{w}: user.hsm.populated is {} bytes (at most 2048)",
        raw.len()
    );
    let missing = touched
        .iter()
        .filter(|&&p| !ranges.covers(p * page_size(), (p + 1) * page_size()))
        .count();
    tcheck!(
        missing == 0,
        "{w}: {missing} touched pages not in the recorded ranges"
    );
    tcheck!(
        ranges.total() == fetched,
        "{w}: the state records exactly the fetched bytes ({} vs {fetched})",
        ranges.total()
    );
    tcheck!(
        fetched > touched.len() as u64 * page_size() && fetched < PAGES * page_size(),
        "{w}: gaps were fetched to keep the list short: {fetched} bytes for {} touched pages",
        touched.len()
    );

    let (code, out) = validate(&file, &["--via", "both"]);
    let m = s.stats();
    tcheck!(
        code == 0 && kv(&m, "fetched_bytes") == PAGES * page_size() && stub_tag(&file).is_none(),
        "{w}: whole file exact and complete, {} bytes fetched in all for {}: {out}",
        kv(&m, "fetched_bytes"),
        PAGES * page_size()
    );
    s.stop(Signal::SIGTERM);
}
