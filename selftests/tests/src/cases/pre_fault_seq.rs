//! pre_fault_seq: the cost of lazily faulting a whole unpopulated file
//! sequentially: events per MiB (printed; target at most 16, i.e. one event
//! per 64 KiB or more) with every byte checked against the pattern.
//!
//! Guards the cover letter's Design (fault events sized to the range the kernel
//! reads, so one round trip fills many pages) and its Measured events per
//! MiB.

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::MapFlags;

pub const TEST: Test = Test {
    name: "pre_fault_seq",
    doc: "sequential faulting of an unpopulated file: <= 16 FAN_PRE_FAULT events per MiB, content exact",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        ("cover-letter", "Measured: sequential faulting of an unfilled 16 MiB file"),
        ("cover-letter", "Design: the event's range is the readahead window from the faulting page"),
    ],
    run,
    ..Test::DEFAULT
};

const MIB: u64 = 16;
const TARGET_PER_MIB: f64 = 16.0;

fn run(ctx: &Ctx) {
    for flags in [MapFlags::MAP_SHARED, MapFlags::MAP_PRIVATE] {
        let path = ctx.path("stub");
        let pages = (MIB << 20) / page_size();
        let LazyStub {
            map: m,
            file: _f,
            listener: l,
        } = LazyStub::new(&path, MIB << 20, flags);
        let bad =
            (0..pages).find(|&p| pattern_mismatch(p * page_size(), &m.read_page(p)).is_some());
        let seen = l.stop();
        let n = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).count();
        let per_mib = n as f64 / MIB as f64;
        tinfo!("{flags:?}: {n} FAN_PRE_FAULT events for {MIB} MiB = {per_mib:.2} per MiB");
        if n > 0 && per_mib <= TARGET_PER_MIB {
            tpass!("{flags:?}: {per_mib:.2} events per MiB <= {TARGET_PER_MIB}");
        } else {
            tfail!("{flags:?}: {per_mib:.2} events per MiB (target <= {TARGET_PER_MIB}, and > 0)");
        }
        match bad {
            None => tpass!("{flags:?}: all {pages} pages match the pattern"),
            Some(p) => tfail!("{flags:?}: page {p} differs from the pattern"),
        }
        drop(m);
        std::fs::remove_file(&path).or_brok("unlink");
    }
}
