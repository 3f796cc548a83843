//! pre_fault_short_write: a write(2) whose buffer spans an unfilled lazy page
//! the listener fills and one it denies returns exactly the bytes written
//! before the denied page, and those bytes are right.  The series refuses the
//! buffer's page faults inside ->write_iter(), faults the buffer in outside
//! the filesystem's locks and calls again (patch 6): the first round writes
//! nothing, the fault-in fills page one and is denied on page two, the
//! second round writes page one, and the fault-in of page two fails.  A
//! review found that an earlier version of patch 6 then returned 8192 for
//! the 4096 bytes written.  btrfs faults its whole write chunk in before it
//! copies and writes nothing when part of it cannot be (EFAULT), as it does
//! for an unmapped page.
//!
//! Guards the cover letter's Design (reads and writes fault lazy buffers in
//! outside their locks) and the documented outcome of a denied fault for a
//! kernel access (a short count, EFAULT if nothing was done).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_fault_short_write",
    doc: "write(2) from a lazy buffer whose second page is denied returns one page, with the right bytes",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[(
        "cover-letter",
        "Design: reads and writes fault lazy buffers in outside their locks",
    )],
    run,
    ..Test::DEFAULT
};

const PAGES: u64 = 64;
/// The buffer's first page (filled and allowed); the next one is denied.
const FIRST: u64 = 21;

fn run(ctx: &Ctx) {
    let ps = page_size();
    let stub = ctx.path("stub");
    create_sparse_file(&stub, PAGES * ps);
    let denied = FIRST + 1;
    let l = Listener::start(
        lazy_group(&stub, FAN_MARK_INODE),
        Box::new(move |ev| {
            if ev.event.mask == FAN_PRE_FAULT
                && ev.event.range().is_some_and(|r| covers(&r, denied * ps))
            {
                return Response::DenyErrno(libc::EIO);
            }
            match ev.fill_range() {
                Ok(()) => Response::Allow,
                Err(_) => Response::DenyErrno(libc::EIO),
            }
        }),
    );
    let f = std::fs::File::open(&stub).or_brok("open the stub");
    let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    // One page per fault event, so that the denied page has its own.
    m.advise(MmapAdvise::MADV_RANDOM)
        .or_brok("madvise(MADV_RANDOM)");
    let dest = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(ctx.path("dest"))
        .or_brok("create the destination");
    // SAFETY: two pages of our own mapping as the source buffer.
    let n = unsafe { libc::pwrite(dest.as_raw_fd(), m.addr(FIRST).cast(), 2 * ps as usize, 0) };
    let err = std::io::Error::last_os_error();
    let seen = l.stop();
    tinfo!(
        "pwrite of 2 pages returned {n} ({}), {} events",
        if n < 0 { err.to_string() } else { "ok".into() },
        seen.len()
    );
    tcheck!(
        n != 2 * ps as isize,
        "write(2) of a filled and a denied lazy page did not report the denied page as written ({n})"
    );
    // btrfs faults in its whole write chunk (both pages) before it copies,
    // and writes nothing when any of it cannot be: EFAULT, as with an
    // unmapped second page.  ext4 and xfs copy page by page.
    let efault_ok =
        ctx.fs == Some(Fs::Btrfs) && n == -1 && err.raw_os_error() == Some(libc::EFAULT);
    tcheck!(
        n == ps as isize || efault_ok,
        "write(2) of a filled and a denied lazy page returned the one page written, or EFAULT on btrfs ({n}, want {ps})"
    );
    if n > 0 {
        let mut got = vec![0u8; n as usize];
        dest.read_exact_at(&mut got, 0)
            .or_brok("read the destination");
        tcheck!(
            pattern_mismatch(FIRST * ps, &got).is_none(),
            "the written bytes are the filled page's"
        );
    }
    tcheck!(
        fault_events_covering(&seen, denied * ps) >= 1,
        "a FAN_PRE_FAULT for the denied page was sent (and denied)"
    );
}
