//! pre_fault_leave: a filled file leaves fault-time mode, so it costs
//! nothing more.  An HSM that has filled a file opts it out, and from its
//! next open on the file behaves like any other: faults and reads send no
//! event, and readahead reads ahead again (cachestat(2) finds pages beyond
//! the touched one).  Two ways to opt out:
//!
//! 0. an inode ignore mark (FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY)
//!    for FAN_PRE_ACCESS | FAN_PRE_FAULT under a filesystem mark; another
//!    lazy file of the filesystem still gets its events (v1 refused
//!    FAN_PRE_FAULT in ignore masks with EINVAL);
//! 1. removing the inode mark.
//!
//! Guards the cover letter's Design (the mode is decided at open; a filled
//! file is opted out) and the documentation of ignore masks.

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::os::unix::fs::FileExt;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_fault_leave",
    doc: "a filled file opted out (inode ignore mark, or its mark removed) sends no events and reads ahead again",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_CACHESTAT_SYSCALL"],
    filesystems: HSM_FILESYSTEMS,
    timeout: Duration::from_secs(120),
    tags: &[
        ("cover-letter", "Design"),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    tcnt: 2,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

const PAGES: u64 = 256;

fn run_case(ctx: &Ctx, i: u32) {
    let ps = page_size();
    let size = PAGES * ps;
    let path = ctx.path("stub");
    let other = ctx.path("other");
    create_sparse_file(&path, size);
    create_sparse_file(&other, size);
    let group = if i == 0 {
        tinfo!("a filesystem mark, the filled file opted out with an inode ignore mark");
        lazy_group(&ctx.mnt, FAN_MARK_FILESYSTEM)
    } else {
        tinfo!("an inode mark, removed once the file is filled");
        lazy_group(&path, FAN_MARK_INODE)
    };
    // The group is shared with the listener thread through a dup of its fd.
    let control = group.try_clone().or_brok("dup the fanotify fd");
    let listener = Listener::filling(group);

    // Fill the whole file through read(): the listener fills each range.
    {
        let f = std::fs::File::open(&path).or_brok("open");
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < size {
            let n = f.read_at(&mut buf, off).or_brok("read");
            if n == 0 {
                break;
            }
            if let Some(k) = pattern_mismatch(off, &buf[..n]) {
                ltp::tbrok!("filling read: wrong byte at {}", off + k as u64);
            }
            off += n as u64;
        }
    }

    let opt_out = if i == 0 {
        control.mark(
            FAN_MARK_ADD | FAN_MARK_IGNORE_SURV,
            FAN_PRE_ACCESS | FAN_PRE_FAULT,
            &path,
        )
    } else {
        control.mark(FAN_MARK_REMOVE, FAN_PRE_ACCESS | FAN_PRE_FAULT, &path)
    };
    if let Err(e) = opt_out {
        ltp::tfail!("opting the filled file out: {e}");
        return;
    }
    drop_cache(&path);

    let before = listener.seen().len();
    let f = std::fs::File::open(&path).or_brok("open after opting out");
    let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let d = m.read_page(100);
    tcheck!(
        pattern_mismatch(100 * ps, &d).is_none(),
        "the opted-out file shows its bytes"
    );
    let mut b = vec![0u8; ps as usize];
    f.read_exact_at(&mut b, 200 * ps).or_brok("pread");
    tcheck!(
        pattern_mismatch(200 * ps, &b).is_none(),
        "read() of the opted-out file returns its bytes"
    );
    let new: Vec<Seen> = listener.seen()[before..].to_vec();
    tcheck!(
        new.is_empty(),
        "a fault and a read() of the opted-out file sent no events ({new:?})"
    );
    let ahead = hsm::cache::cached_pages(&f, 101 * ps, 99 * ps).or_brok("cachestat");
    tcheck!(
        ahead > 0,
        "readahead works again: {ahead} pages after the faulted one are cached"
    );

    if i == 0 {
        // The filesystem mark still serves every other file.
        let o = std::fs::File::open(&other).or_brok("open the other file");
        let om = Map::new(&o, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
            .or_brok("mmap the other file");
        let before = listener.seen().len();
        let d = om.read_page(7);
        let faults = fault_events_covering(&listener.seen()[before..], 7 * ps);
        tcheck!(
            faults == 1 && pattern_mismatch(7 * ps, &d).is_none(),
            "another lazy file of the filesystem still gets its FAN_PRE_FAULT ({faults}) and its bytes"
        );
    }
}
