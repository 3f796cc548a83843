//! pre_fault_freeze: the syzbot freeze deadlock of the reverted 2024 hook
//! (the revert's objection 1) cannot happen, and freezing keeps working.  A
//! task write(2)s to a file of the HSM filesystem from an unfilled lazy
//! mapping of a file of the same filesystem; once its FAN_PRE_FAULT event
//! reaches the HSM, `fsfreeze --freeze` runs, and only then does the HSM
//! fill the range (a write to the frozen filesystem, which waits for the
//! thaw).  50 iterations with watchdogs: the filesystem froze every time
//! with the event pending, the HSM's fill waited for it, no hang, and every
//! write has the filled bytes.
//!
//! The series sends no fault-time event from inside a read or write: the
//! fault fails there, and the VFS faults the buffer in after dropping the
//! freeze protection (patch "fs: fault lazy buffers of reads and writes in
//! outside their locks").  v1 refused the freeze (EBUSY) while FAN_PRE_FAULT
//! marks existed; the 6.14 hook deadlocked here (syzbot, "WARNING in
//! fsnotify_file_area_perm"); the base kernel has no FAN_PRE_FAULT (TCONF).
//! The cross-filesystem variant is pre_fault_freeze_cross.

use super::freeze_util::{self, Race};
use ltp::{Ctx, Test};

pub const TEST: Test = Test {
    name: "pre_fault_freeze",
    doc: "write(2) from a lazy mapping racing fsfreeze: the filesystem freezes every time, no hang, right bytes",
    // Needs, filesystems, probe (TCONF without FAN_PRE_FAULT), tags
    // (objection 1, the freeze deadlock; the Design point on faulting lazy
    // buffers in outside the locks) and timeout: freeze_util::TEST_BASE.
    run,
    // A TBROK, panic or timeout while the filesystem is frozen must not
    // leave it frozen.
    cleanup: Some(|ctx| freeze_util::thaw(&ctx.mnt)),
    ..freeze_util::TEST_BASE
};

fn run(ctx: &Ctx) {
    freeze_util::run(
        &Race {
            lazy_dir: &ctx.mnt,
            dest_dir: &ctx.mnt,
            freeze_mnt: &ctx.mnt,
            log: None,
        },
        freeze_util::ITERATIONS,
    );
}
