//! pre_fault_reuse: a fault on a new lazy file always sends its own event,
//! even when the file's inode reuses the memory of one just deleted.  The
//! series records the answer to a fault's event for the retried fault; a
//! retry that hits the page cache leaves the answer unused, and an earlier
//! version let the next file's first fault at the same offset take it for
//! its own (same address_space pointer after inode reuse), reading unfilled
//! content with no event (found by pre_fault_matrix on xfs).  50 rounds (per mapping type) of
//! create, mark, map, fault page 21, unlink.
//!
//! Guards the cover letter's Design (no page visible without an answered event;
//! the retried fault uses only its own answer) and the bug its Measured
//! section says an earlier version had.

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};
use nix::sys::mman::MapFlags;

pub const TEST: Test = Test {
    name: "pre_fault_reuse",
    doc: "each new lazy file's first fault sends its own event, also when its inode reuses a deleted one's memory",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("cover-letter", "Measured: pre_fault_reuse guards a bug an earlier version had"),
        ("cover-letter", "Design: the retried fault consumes the answer"),
    ],
    run,
    ..Test::DEFAULT
};

const ROUNDS: usize = 50;
const PAGE_IDX: u64 = 21;

fn run(ctx: &Ctx) {
    let mut missing = 0;
    let mut wrong = 0;
    for flags in [MapFlags::MAP_SHARED, MapFlags::MAP_PRIVATE] {
        for _ in 0..ROUNDS {
            let path = ctx.path("stub");
            let stub = LazyStub::new(&path, 64 * page_size(), flags);
            let d = stub.map.read_page(PAGE_IDX);
            let LazyStub {
                map,
                file,
                listener,
            } = stub;
            drop(map);
            drop(file);
            let events = listener
                .stop()
                .iter()
                .filter(|s| s.mask == FAN_PRE_FAULT)
                .count();
            if events != 1 {
                missing += 1;
            }
            if pattern_mismatch(PAGE_IDX * page_size(), &d).is_some() {
                wrong += 1;
            }
            std::fs::remove_file(&path).or_brok("unlink");
        }
    }
    if missing == 0 {
        tpass!(
            "{} new files: each first fault sent exactly one FAN_PRE_FAULT",
            2 * ROUNDS
        );
    } else {
        tfail!(
            "{missing} of {} new files did not send exactly one FAN_PRE_FAULT",
            2 * ROUNDS
        );
    }
    if wrong == 0 {
        tpass!("every faulted page showed the filled bytes");
    } else {
        tfail!("{wrong} faulted pages showed unfilled content");
    }
}
