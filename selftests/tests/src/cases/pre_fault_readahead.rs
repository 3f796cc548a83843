//! pre_fault_readahead: a file with fault-time events never has a page in
//! the page cache that no event covered, since a later fault would map it
//! without an event.  After faulting one page of an unpopulated 64 MiB file,
//! after a read() in the middle of it, and after readahead hints (readahead
//! via POSIX_FADV_WILLNEED, MADV_WILLNEED), cachestat(2) finds cached pages
//! only inside the ranges events reported.
//!
//! Guards the cover letter's Design (readahead limited to covered ranges) and its
//! Measured cachestat numbers (the 2024 series disabled readahead instead:
//! 252256e416de, reverted).

use crate::common::*;
use fanotify::Range;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{madvise, MapFlags, MmapAdvise};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_fault_readahead",
    doc: "no page enters the page cache outside the ranges pre-content events reported",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_CACHESTAT_SYSCALL",
    ],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        ("cover-letter", "Design: nothing enters the page cache of such a file that no event covered"),
        ("cover-letter", "Measured: cachestat(2) after a fault, a read and WILLNEED hints"),
        ("linux-git", "252256e416de Revert \"fanotify: disable readahead if we have pre-content watches\" (6.14-rc7)"),
    ],
    run,
    ..Test::DEFAULT
};

const SIZE: u64 = 64 << 20;

fn run(ctx: &Ctx) {
    let LazyStub {
        map: m,
        file: f,
        listener: l,
    } = LazyStub::new(&ctx.path("stub"), SIZE, MapFlags::MAP_SHARED);

    let steps: [(&str, &dyn Fn()); 4] = [
        ("fault page 5000", &|| {
            m.touch(5000);
        }),
        ("pread 4096 @ 32 MiB", &|| {
            let mut b = [0u8; 4096];
            f.read_exact_at(&mut b, 32 << 20).or_brok("pread");
        }),
        ("POSIX_FADV_WILLNEED on the whole file", &|| {
            nix::fcntl::posix_fadvise(
                f.as_raw_fd(),
                0,
                SIZE as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            )
            .or_brok("fadvise");
        }),
        ("MADV_WILLNEED on the whole mapping", &|| {
            // SAFETY: advice on our own mapping.
            unsafe {
                madvise(
                    std::ptr::NonNull::new(m.addr(0).cast()).unwrap(),
                    m.len,
                    MmapAdvise::MADV_WILLNEED,
                )
            }
            .or_brok("madvise");
        }),
    ];
    for (what, step) in steps {
        // No wait here (there was a 200 ms sleep): when the step's call
        // returns, everything it did is visible.  Its pre-content events are
        // permission events, so the call waited for each answer, and the
        // listener records an event before it answers; readahead inserts its
        // folios into the page cache before it submits their I/O and returns,
        // and cachestat(2) counts a folio whose read is still in flight.
        step();
        let ranges: Vec<Range> = l.seen().iter().filter_map(|s| s.range).collect();
        let outside = cached_outside(&f, &ranges, SIZE);
        let total = cached(&f, 0, SIZE);
        tinfo!("{what}: {} events, {total} pages cached", ranges.len());
        if outside == 0 && total > 0 {
            tpass!("{what}: all {total} cached pages lie inside event ranges");
        } else if total == 0 {
            tfail!("{what}: nothing cached at all (the access did not read?)");
        } else {
            tfail!("{what}: {outside} cached pages outside every event range {ranges:?}");
        }
    }
    drop(m);
    l.stop();
}
