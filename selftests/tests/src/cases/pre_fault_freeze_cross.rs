//! pre_fault_freeze_cross: the cross-filesystem freeze cycle of review K1
//! cannot hang.  Two filesystems: A (frozen) and B (the HSM's).  A writer
//! write(2)s to a file on A from an unfilled lazy mapping of a file on B;
//! once its FAN_PRE_FAULT event reaches the HSM, `fsfreeze --freeze A` runs,
//! and then the HSM appends a line to a log on A (which waits for the thaw)
//! before it fills B.  50 iterations with watchdogs: A froze every time with
//! the event pending, the HSM's log line waited for it, no hang, and every
//! write has the filled bytes.
//!
//! v1 only vetoed freezing a filesystem with FAN_PRE_FAULT marks, and A has
//! none: the writer held A's freeze protection while it waited for its
//! event, so the freeze blocked, the log line waited for the freeze, and all
//! three hung (reproduced in the review; here the freeze's watchdog reports
//! it and lets the HSM skip its log line so the run can go on).  The series
//! faults the buffer in after dropping the freeze protection (patch "fs:
//! fault lazy buffers of reads and writes in outside their locks").  The
//! base kernel has no FAN_PRE_FAULT (TCONF).

use super::freeze_util::{self, Race};
use ltp::res::OrBrok;
use ltp::{Ctx, Test};
use std::path::PathBuf;

pub const TEST: Test = Test {
    name: "pre_fault_freeze_cross",
    doc: "write(2) to fs A from a lazy mapping on fs B while A freezes and the HSM logs to A: no hang",
    // Needs, filesystems, probe (TCONF without FAN_PRE_FAULT), tags
    // (objection 1, the freeze deadlock; the Design point on faulting lazy
    // buffers in outside the locks) and timeout: freeze_util::TEST_BASE.
    run,
    cleanup: Some(|ctx| freeze_util::thaw(&fs_a_mnt(ctx))),
    ..freeze_util::TEST_BASE
};

/// Filesystem A: a second filesystem of the test's type, with its image
/// next to B's mount point (in the run's directory in the guest's /tmp), so
/// that nothing of A lives on B.  The cleanup, which may run in another
/// process, finds it there too.
fn fs_a_scratch(ctx: &Ctx) -> PathBuf {
    ctx.mnt
        .parent()
        .unwrap_or_else(|| ltp::tbrok!("{} has no parent", ctx.mnt.display()))
        .join("freeze-cross")
}

fn fs_a_mnt(ctx: &Ctx) -> PathBuf {
    fs_a_scratch(ctx).join("a")
}

fn run(ctx: &Ctx) {
    let fs = ctx.fs.unwrap_or_else(|| ltp::tbrok!("no test filesystem"));
    let scratch = fs_a_scratch(ctx);
    std::fs::create_dir_all(&scratch).or_brok("mkdir the scratch directory of A");
    let a = fs
        .mount(&scratch, &fs_a_mnt(ctx))
        .or_brok(&format!("make and mount filesystem A ({})", fs.name()));
    let log = a.mnt.join("hsm.log");
    freeze_util::run(
        &Race {
            lazy_dir: &ctx.mnt,
            dest_dir: &a.mnt,
            freeze_mnt: &a.mnt,
            log: Some(&log),
        },
        freeze_util::ITERATIONS,
    );
    drop(a);
    let _ = std::fs::remove_dir_all(&scratch);
}
