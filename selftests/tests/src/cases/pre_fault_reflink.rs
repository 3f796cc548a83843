//! pre_fault_reflink: a retry after an allow always makes progress.  The
//! listener fills by reflinking from a filled copy (FICLONERANGE on xfs and
//! btrfs, copy_file_range on ext4), which leaves nothing in the lazy file's
//! page cache: every fault must still end with the right bytes.  v2 reads
//! the allowed range in the fault itself before it returns VM_FAULT_RETRY,
//! instead of replaying the answer in the retry (review K4).
//!
//! Guards the cover letter's Design (no answer is reused).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_fault_reflink",
    doc: "faults on a lazy file filled by reflink (nothing in its page cache) end with the right bytes",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    timeout: Duration::from_secs(120),
    tags: &[("cover-letter", "Design")],
    run: reflink_fill,
    ..Test::DEFAULT
};

/// FICLONE_RANGE: `struct file_clone_range { s64 src_fd; u64 src_offset,
/// src_length, dest_offset; }`.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}
const FICLONERANGE: libc::c_ulong = 0x4020_940d;

fn reflink_fill(ctx: &Ctx) {
    let ps = page_size();
    let pages = 256;
    let size = pages * ps;
    let src_path = ctx.path("source");
    create_pattern_file(&src_path, size);
    let src = Arc::new(File::open(&src_path).or_brok("open the source"));
    let path = ctx.path("stub");
    create_sparse_file(&path, size);
    let reflinks = Arc::new(AtomicU64::new(0));
    let (s2, r2) = (src.clone(), reflinks.clone());
    let listener = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            let (Some(fd), Some(r)) = (&ctx.event.fd, ctx.event.range()) else {
                return Response::Allow;
            };
            let len = (r.offset + r.count).min(size).saturating_sub(r.offset);
            let arg = FileCloneRange {
                src_fd: s2.as_raw_fd() as i64,
                src_offset: r.offset,
                src_length: len,
                dest_offset: r.offset,
            };
            // SAFETY: FICLONERANGE reads `arg`, which lives for the call.
            let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FICLONERANGE, &arg) };
            if ret == 0 {
                r2.fetch_add(1, Ordering::Relaxed);
                return Response::Allow;
            }
            let (mut so, mut d) = (r.offset as i64, r.offset as i64);
            match nix::fcntl::copy_file_range(
                s2.as_fd(),
                Some(&mut so),
                fd.as_fd(),
                Some(&mut d),
                len as usize,
            ) {
                Ok(_) => Response::Allow,
                Err(_) => Response::DenyErrno(libc::EIO),
            }
        }),
    );
    let f = File::open(&path).or_brok("open");
    let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let wrong: Vec<u64> = (0..pages)
        .filter(|&p| pattern_mismatch(p * ps, &m.read_page(p)).is_some())
        .collect();
    let events = listener.stop().len();
    tinfo!(
        "{events} events, {} filled by reflink",
        reflinks.load(Ordering::Relaxed)
    );
    tcheck!(
        wrong.is_empty(),
        "faults on a file filled by reflink end with the right bytes (wrong pages {wrong:?})"
    );
}
