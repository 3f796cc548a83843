//! pre_fault_nowait: a read or write that must not wait (RWF_NOWAIT, and
//! io_uring's first, non-blocking issue) never waits for a fault-time
//! listener: with its buffer in an unfilled lazy mapping it fails with
//! EAGAIN and sends no FAN_PRE_FAULT; the same call without RWF_NOWAIT then
//! completes with the right bytes.  Guards patch 6 (call_rw_iter()): a
//! review of this revision found that the fault-in of a write's source
//! buffer before its first round ran for RWF_NOWAIT writes too, so the
//! writer waited for the listener (and got a full count) where it must get
//! EAGAIN at once.  The documented outcome is in
//! Documentation/filesystems/fanotify-pre-fault.rst ("Reading or writing
//! with a buffer in a lazy mapping").

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_fault_nowait",
    doc: "RWF_NOWAIT reads and writes with an unfilled lazy buffer get EAGAIN and send no event",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[(
        "cover-letter",
        "Known limitations and open questions: RWF_NOWAIT calls and io_uring's non-blocking issue get EAGAIN instead of waiting",
    )],
    run,
    ..Test::DEFAULT
};

const PAGES: u64 = 16;
/// The buffer: two pages of the lazy mapping.
const BUF: u64 = 4;

fn rw2(write: bool, fd: i32, m: &Map, nowait: bool) -> (isize, i32) {
    let iov = libc::iovec {
        iov_base: m.addr(BUF).cast(),
        iov_len: (2 * page_size()) as usize,
    };
    let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
    // SAFETY: one iovec of two pages of our own mapping.
    let n = unsafe {
        if write {
            libc::pwritev2(fd, &iov, 1, 0, flags)
        } else {
            libc::preadv2(fd, &iov, 1, 0, flags)
        }
    };
    (
        n,
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
    )
}

fn case(ctx: &Ctx, write: bool) {
    let what = if write { "pwritev2" } else { "preadv2" };
    let ps = page_size();
    let (l, stub) = lazy_stub_rw(&ctx.path(&format!("stub-{what}")), PAGES * ps);
    let prot = if write {
        ProtFlags::PROT_READ
    } else {
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
    };
    let m = Map::new(&stub, 0, PAGES, prot, MapFlags::MAP_PRIVATE).or_brok("mmap the stub");
    let other = ctx.path(&format!("plain-{what}"));
    create_pattern_file(&other, 2 * ps);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&other)
        .or_brok("open the plain file");
    // Cached, so that RWF_NOWAIT has no reason of its own to fail a read.
    let mut warm = vec![0u8; (2 * ps) as usize];
    f.read_exact_at(&mut warm, 0).or_brok("read the plain file");

    let (n, errno) = rw2(write, f.as_raw_fd(), &m, true);
    let faults = l.seen().iter().filter(|e| e.mask == FAN_PRE_FAULT).count();
    tinfo!("{what}(RWF_NOWAIT): {n} (errno {errno}), {faults} FAN_PRE_FAULT events");
    if faults == 0 {
        tpass!("{what}(RWF_NOWAIT) with an unfilled lazy buffer sent no FAN_PRE_FAULT (did not wait for the listener)");
    } else {
        tfail!("{what}(RWF_NOWAIT) sent {faults} FAN_PRE_FAULT events: it waited for the listener");
    }
    // EOPNOTSUPP: a filesystem without non-blocking buffered writes.
    if n < 0 && (errno == libc::EAGAIN || (write && errno == libc::EOPNOTSUPP)) {
        tpass!("{what}(RWF_NOWAIT) failed with errno {errno} (EAGAIN, or EOPNOTSUPP where the filesystem has no non-blocking buffered writes)");
    } else {
        tfail!("{what}(RWF_NOWAIT) returned {n} (errno {errno}), want EAGAIN");
    }

    let (n, errno) = rw2(write, f.as_raw_fd(), &m, false);
    let want = (2 * ps) as isize;
    if n != want {
        tfail!("{what} without RWF_NOWAIT: {n} (errno {errno}), want {want}");
        return;
    }
    let got = if write {
        let mut b = vec![0u8; want as usize];
        f.read_exact_at(&mut b, 0).or_brok("read back");
        (b, BUF * ps)
    } else {
        let mut b = m.read_page(BUF);
        b.extend(m.read_page(BUF + 1));
        (b, 0)
    };
    match pattern_mismatch(got.1, &got.0) {
        None => tpass!("{what} without RWF_NOWAIT: full count, the right bytes"),
        Some(b) => tfail!("{what} without RWF_NOWAIT: byte {b} is wrong"),
    }
}

fn run(ctx: &Ctx) {
    case(ctx, true);
    case(ctx, false);
}
