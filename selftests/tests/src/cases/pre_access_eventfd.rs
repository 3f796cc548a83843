//! pre_access_eventfd: the fd carried by a pre-content event does not
//! generate events itself, so an HSM can fill the file through it (pwrite)
//! and read it back while the faulting reader waits; the reader then sees the
//! filled bytes.  Without this an HSM would deadlock on its own fill.
//!
//! Guards mainline semantics (cover letter, Design: without FAN_PRE_FAULT
//! nothing changes) that every fill path of the series relies on.

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_access_eventfd",
    doc: "filling through the event fd generates no event; the reader sees the filled bytes",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: ltp::fs::HSM_FILESYSTEMS,
    tags: &[(
        "cover-letter",
        "Design: without FAN_PRE_FAULT nothing changes",
    )],
    run,
    ..Test::DEFAULT
};

const CASES: &[(u64, usize)] = &[(0, 4096), (3 * 4096 + 17, 5000), (60 * 1024, 4096)];

fn run(ctx: &Ctx) {
    for &(off, len) in CASES {
        let path = ctx.path("stub");
        create_sparse_file(&path, 64 * 1024);
        let l = Listener::filling(pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS));
        let f = std::fs::File::open(&path).or_brok("open");
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off).or_brok("pread");
        let seen = l.stop();
        if seen.len() == 1 {
            tpass!("read {len} @ {off}: exactly one event although the listener wrote and read the file");
        } else {
            tfail!("read {len} @ {off}: {} events: {seen:?}", seen.len());
        }
        match pattern_mismatch(off, &buf) {
            None => tpass!("read {len} @ {off}: reader saw the filled bytes"),
            Some(i) => tfail!(
                "read {len} @ {off}: byte {i} is {:#x}, want {:#x}",
                buf[i],
                pattern_byte(off + i as u64)
            ),
        }
        std::fs::remove_file(&path).or_brok("unlink");
    }
}
