//! pre_fault_ra_marker: no readahead marker (PG_readahead) is left on a
//! page of a lazily watched file.  Fault-around skips marked folios, so a
//! marker that is never cleared sends every first fault on that page through
//! ->fault(), which drops the mmap lock and retries (v1 returned from the
//! asynchronous readahead of such files before clearing the marker).  The
//! first half of the file is filled and read with read() before the mark,
//! which leaves a marker in it; then the whole file is faulted through a lazy
//! mapping: the faults end, the unfilled half costs one event per readahead
//! window, every byte is right, and /proc/kpageflags shows no marker
//! (KPF_RECLAIM, the bit PG_readahead shares) on any page of the file.
//!
//! Guards the cover letter's Design (readahead in fault-time mode).

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_fault_ra_marker",
    doc: "faults across a readahead marker of a lazy file end, one event per window, and clear the marker",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_PROC_PAGE_MONITOR"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("cover-letter", "Design")],
    run,
    ..Test::DEFAULT
};

/// The filled half is larger than the readahead of a 16-page read() on
/// every filesystem here (btrfs reads ahead 64 pages), so that nothing
/// unfilled is cached before the mark.
const PAGES: u64 = 256;
const FILLED: u64 = 128;

/// Pages of `m` whose frame has KPF_RECLAIM (= PG_readahead on a page not
/// under writeback).
fn marked_pages(m: &Map, pages: u64) -> Vec<u64> {
    let flags = PageFlags::open();
    (0..pages)
        .filter(|&p| flags.of(m, p).is_some_and(|f| f & KPF_RECLAIM != 0))
        .collect()
}

fn run(ctx: &Ctx) {
    let ps = page_size();
    let path = ctx.path("stub");
    create_sparse_file(&path, PAGES * ps);
    {
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .or_brok("open");
        w.write_all_at(&pattern(0, (FILLED * ps) as usize), 0)
            .or_brok("fill the first half");
    }
    drop_cache(&path);
    {
        // Before the mark: a read() of the first 16 pages reads ahead and
        // marks a page for the next asynchronous readahead.
        let r = File::open(&path).or_brok("open");
        let mut b = vec![0u8; (16 * ps) as usize];
        r.read_exact_at(&mut b, 0).or_brok("read");
    }
    let listener = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let f = File::open(&path).or_brok("open after the mark");
    let cached = hsm::cache::cached_pages(&f, 0, PAGES * ps).or_brok("cachestat");
    let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let wrong: Vec<u64> = (0..PAGES)
        .filter(|&p| pattern_mismatch(p * ps, &m.read_page(p)).is_some())
        .collect();
    tcheck!(
        wrong.is_empty(),
        "faulting the whole file across the marker ends with the right bytes (wrong pages {wrong:?})"
    );
    let seen = listener.stop();
    let faults: Vec<_> = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).collect();
    let windows = (PAGES - cached).div_ceil(32);
    tinfo!(
        "events: {:?}",
        faults.iter().map(|s| s.range).collect::<Vec<_>>()
    );
    tcheck!(
        faults.len() as u64 <= windows,
        "{} FAN_PRE_FAULT events for the {} pages not cached at the mark (at most one per 32-page window: {windows})",
        faults.len(),
        PAGES - cached
    );
    let marked = marked_pages(&m, PAGES);
    tcheck!(
        marked.is_empty(),
        "no page of the lazy file keeps a readahead marker (marked: {marked:?})"
    );
}
