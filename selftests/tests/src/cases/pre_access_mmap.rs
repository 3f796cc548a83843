//! pre_access_mmap: mmap() of a pre-content-watched file sends one
//! FAN_PRE_ACCESS for exactly the mapped file range (2 pages at page 100 →
//! offset 100 << PAGE_SHIFT, count 2 pages), and nothing at fault time.
//!
//! This is mainline's default (mmap-time) mode, which the series keeps for
//! marks that do not opt into fault-time events (cover letter, Design:
//! without FAN_PRE_FAULT nothing changes).  Guards
//! 066e053fe208 "fsnotify: add pre-content hooks on mmap()" and its offset fix
//! 28bba2c2935e (the event offset is pgoff << PAGE_SHIFT, not >>).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Range;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::num::NonZeroUsize;

pub const TEST: Test = Test {
    name: "pre_access_mmap",
    doc: "mmap() sends one FAN_PRE_ACCESS for the mapped range; faults send none",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        (
            "cover-letter",
            "Design: without FAN_PRE_FAULT nothing changes",
        ),
        (
            "linux-git",
            "066e053fe208 \"fsnotify: add pre-content hooks on mmap()\" (mainline)",
        ),
        (
            "linux-git",
            "28bba2c2935e (mainline): the offset fix of the mmap() hook",
        ),
    ],
    run,
    ..Test::DEFAULT
};

struct Case {
    what: &'static str,
    page: u64,
    pages: u64,
    flags: MapFlags,
}

const FILE_PAGES: u64 = 256;

fn cases() -> [Case; 3] {
    [
        Case {
            what: "2 pages at page 100, MAP_SHARED",
            page: 100,
            pages: 2,
            flags: MapFlags::MAP_SHARED,
        },
        Case {
            what: "2 pages at page 100, MAP_PRIVATE",
            page: 100,
            pages: 2,
            flags: MapFlags::MAP_PRIVATE,
        },
        Case {
            what: "whole file, MAP_SHARED",
            page: 0,
            pages: FILE_PAGES,
            flags: MapFlags::MAP_SHARED,
        },
    ]
}

fn run(ctx: &Ctx) {
    for c in cases() {
        let path = ctx.path("mm");
        create_pattern_file(&path, FILE_PAGES * page_size());
        drop_cache(&path);
        let group = pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS);
        let l = Listener::answering(group, fanotify::Response::Allow);
        let f = std::fs::File::open(&path).or_brok("open");
        let len = (c.pages * page_size()) as usize;
        // SAFETY: a fresh mapping of a file we own; unmapped below.
        let p = unsafe {
            mmap(
                None,
                NonZeroUsize::new(len).unwrap(),
                ProtFlags::PROT_READ,
                c.flags,
                &f,
                (c.page * page_size()) as i64,
            )
        }
        .or_brok("mmap");
        let after_mmap = l.seen();
        // Touch every page: in mmap-time mode this must not send events.
        // SAFETY: p maps len readable bytes.
        let data = unsafe { std::slice::from_raw_parts(p.as_ptr() as *const u8, len) };
        let bad = pattern_mismatch(c.page * page_size(), data);
        // SAFETY: p/len came from mmap above and data is no longer used.
        unsafe { munmap(p, len) }.or_brok("munmap");
        let all = l.stop();
        log_seen(c.what, &all);
        let want = Range {
            offset: c.page * page_size(),
            count: c.pages * page_size(),
        };
        match after_mmap.as_slice() {
            [s] if s.mask == FAN_PRE_ACCESS && s.range == Some(want) => {
                tpass!("{}: mmap() sent one event with range {want:?}", c.what)
            }
            other => tfail!(
                "{}: want one FAN_PRE_ACCESS {want:?} at mmap(), got {other:?}",
                c.what
            ),
        }
        if all.len() == after_mmap.len() {
            tpass!("{}: touching the mapping sent no further event", c.what);
        } else {
            tfail!(
                "{}: faults sent {} events in mmap-time mode",
                c.what,
                all.len() - after_mmap.len()
            );
        }
        match bad {
            None => tpass!("{}: mapped content matches the file", c.what),
            Some(i) => tfail!("{}: mapped byte {i} differs from the file", c.what),
        }
        std::fs::remove_file(&path).or_brok("unlink");
    }
}
