//! pre_fault_same_file: a read or write of a lazy (FAN_PRE_FAULT) file whose
//! user buffer is an unfilled range of a mapping of that same file completes
//! with the right bytes: write(2) and pwritev(2) from the mapping, read(2)
//! (buffered and O_DIRECT) into it, io_submit(2) and io_uring reads into it,
//! an io_uring write from it, and a write of eight pages of which every other
//! one is unfilled (the call completes in several rounds).  The filesystem
//! may hold the inode's i_rwsem while it copies, which the listener's fill of
//! the same file needs: the series refuses the fault inside ->read_iter() or
//! ->write_iter(), faults the buffer in with the locks dropped (that sends
//! the FAN_PRE_FAULT) and retries (cover letter: "Design: reads and writes
//! fault lazy buffers in outside their locks"; review K2, Linus's objection 2
//! in the revert).  v1 failed every row but the last with EFAULT; the base
//! kernel has no FAN_PRE_FAULT (TCONF).
//!
//! Each row checks the call's full count, the bytes that arrived, and that a
//! FAN_PRE_FAULT event covered the buffer's page (it was filled by the
//! listener, not read unfilled).

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

pub const TEST: Test = Test {
    name: "pre_fault_same_file",
    doc: "read/write of a lazy file with the buffer in its own unfilled mapping completes with the right bytes",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_IO_URING"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        (
            "cover-letter",
            "Design: reads and writes fault lazy buffers in outside their locks",
        ),
        ("cover-letter", "Fault-path matrix"),
    ],
    timeout: std::time::Duration::from_secs(60),
    tcnt: ROWS.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

const PAGES: u64 = 64;
/// The page of the mapping used as the buffer.
const BUF_PAGE: u64 = 21;
/// The page of the file at the other end of the call.
const OTHER_PAGE: u64 = 40;

struct Setup {
    path: std::path::PathBuf,
    file: std::fs::File,
}

/// What a row did: the bytes that arrived (read back where the call put
/// them) and the file offset whose pattern they must be.
struct Outcome {
    got: Vec<u8>,
    want_off: u64,
    /// The buffer's first page, which a FAN_PRE_FAULT must have covered.
    buf_page: u64,
}

type Row = (&'static str, fn(&Setup) -> Result<Outcome, String>);

fn map(s: &Setup, prot: ProtFlags, flags: MapFlags) -> Map {
    Map::new(&s.file, 0, PAGES, prot, flags).or_brok("mmap the stub")
}

fn reopen(s: &Setup, flags: i32) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(&s.path)
        .or_brok("open the stub again")
}

/// pwrite(2) of `n` pages of the mapping from BUF_PAGE to OTHER_PAGE of the
/// same file; the result is read back through the mapping (cached, so no
/// event: a read(2) would make the listener refill it).
fn write_from(s: &Setup, m: &Map, n: u64) -> Result<Outcome, String> {
    let len = (n * page_size()) as usize;
    // SAFETY: `n` pages of our own mapping as the source buffer.
    let r = unsafe {
        libc::pwrite(
            s.file.as_raw_fd(),
            m.addr(BUF_PAGE).cast(),
            len,
            (OTHER_PAGE * page_size()) as i64,
        )
    };
    full_count(r, "pwrite", len as u64)?;
    let mut got = Vec::new();
    for p in 0..n {
        got.extend(m.read_page(OTHER_PAGE + p));
    }
    Ok(Outcome {
        got,
        want_off: BUF_PAGE * page_size(),
        buf_page: BUF_PAGE,
    })
}

fn write_shared(s: &Setup) -> Result<Outcome, String> {
    write_from(s, &map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED), 1)
}

/// Eight pages, the odd ones filled first (MADV_RANDOM: one page per
/// event): the write is refused on the first page, faults the rest in and
/// goes on.
fn write_partly_filled(s: &Setup) -> Result<Outcome, String> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    m.advise(MmapAdvise::MADV_RANDOM)
        .or_brok("madvise(MADV_RANDOM)");
    for p in (1..8).step_by(2) {
        m.touch(BUF_PAGE + p);
    }
    write_from(s, &m, 8)
}

/// pwritev(2) of two iovecs, each one unfilled page of a private mapping.
fn writev_private(s: &Setup) -> Result<Outcome, String> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE);
    let iov = [
        libc::iovec {
            iov_base: m.addr(BUF_PAGE).cast(),
            iov_len: page_size() as usize,
        },
        libc::iovec {
            iov_base: m.addr(BUF_PAGE + 1).cast(),
            iov_len: page_size() as usize,
        },
    ];
    // SAFETY: two iovecs of our own mapping.
    let r = unsafe {
        libc::pwritev(
            s.file.as_raw_fd(),
            iov.as_ptr(),
            2,
            (OTHER_PAGE * page_size()) as i64,
        )
    };
    full_count(r, "pwritev", 2 * page_size())?;
    // Through a shared mapping: the private one still shows its own pages.
    let shared = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let mut got = shared.read_page(OTHER_PAGE);
    got.extend(shared.read_page(OTHER_PAGE + 1));
    Ok(Outcome {
        got,
        want_off: BUF_PAGE * page_size(),
        buf_page: BUF_PAGE,
    })
}

/// pread(2) of OTHER_PAGE through an fd opened with `flags` into BUF_PAGE
/// of a writable mapping (`mflags`) of the same file.
fn read_into(s: &Setup, flags: i32, mflags: MapFlags) -> Result<Outcome, String> {
    let m = map(s, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, mflags);
    let f = reopen(s, flags);
    // SAFETY: one page of our own writable mapping as the destination.
    let r = unsafe {
        libc::pread(
            f.as_raw_fd(),
            m.addr(BUF_PAGE).cast(),
            page_size() as usize,
            (OTHER_PAGE * page_size()) as i64,
        )
    };
    full_count(r, "pread", page_size())?;
    Ok(Outcome {
        got: m.read_page(BUF_PAGE),
        want_off: OTHER_PAGE * page_size(),
        buf_page: BUF_PAGE,
    })
}

fn read_private(s: &Setup) -> Result<Outcome, String> {
    read_into(s, 0, MapFlags::MAP_PRIVATE)
}

fn read_shared(s: &Setup) -> Result<Outcome, String> {
    read_into(s, 0, MapFlags::MAP_SHARED)
}

fn read_direct(s: &Setup) -> Result<Outcome, String> {
    read_into(s, libc::O_DIRECT, MapFlags::MAP_PRIVATE)
}

/// A read (fd opened with `flags`) of OTHER_PAGE into BUF_PAGE of a
/// private mapping, submitted by `submit` (which returns the count); `what`
/// names a short count.
fn read_other_page(
    s: &Setup,
    flags: i32,
    what: &str,
    submit: impl FnOnce(RawFd, &Map) -> Result<i64, String>,
) -> Result<Outcome, String> {
    let m = map(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    );
    let f = reopen(s, flags);
    let res = submit(f.as_raw_fd(), &m)?;
    if res != page_size() as i64 {
        return Err(format!("{what}: {res}"));
    }
    Ok(Outcome {
        got: m.read_page(BUF_PAGE),
        want_off: OTHER_PAGE * page_size(),
        buf_page: BUF_PAGE,
    })
}

/// io_submit(2) of an IOCB_CMD_PREAD (fd opened with `flags`) of OTHER_PAGE
/// into BUF_PAGE of a private mapping; the completion's result is the count.
fn aio_read(s: &Setup, flags: i32) -> Result<Outcome, String> {
    read_other_page(s, flags, "io_submit completion", |fd, m| {
        let (len, off) = (page_size() as usize, OTHER_PAGE * page_size());
        aio_pread(fd, m, BUF_PAGE, len, off)
    })
}

fn aio_read_buffered(s: &Setup) -> Result<Outcome, String> {
    aio_read(s, 0)
}

fn aio_read_direct(s: &Setup) -> Result<Outcome, String> {
    aio_read(s, libc::O_DIRECT)
}

/// io_uring IORING_OP_READ (fd opened with `flags`) of OTHER_PAGE into
/// BUF_PAGE of a private mapping.
fn uring_read(s: &Setup, flags: i32) -> Result<Outcome, String> {
    read_other_page(s, flags, "io_uring read", |fd, m| {
        let (len, off) = (page_size() as u32, OTHER_PAGE * page_size());
        Ok(i64::from(uring_pread(fd, m, BUF_PAGE, len, off)))
    })
}

fn uring_read_buffered(s: &Setup) -> Result<Outcome, String> {
    uring_read(s, 0)
}

fn uring_read_direct(s: &Setup) -> Result<Outcome, String> {
    uring_read(s, libc::O_DIRECT)
}

/// io_uring IORING_OP_WRITE of BUF_PAGE of a shared mapping to OTHER_PAGE.
fn uring_write(s: &Setup) -> Result<Outcome, String> {
    use io_uring::{opcode, types};
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let sqe = opcode::Write::new(
        types::Fd(s.file.as_raw_fd()),
        m.addr(BUF_PAGE),
        page_size() as u32,
    )
    .offset(OTHER_PAGE * page_size())
    .build();
    // SAFETY: the source buffer is a page of `m` and the fd is `s.file`,
    // both held until uring_one() returns with the completion.
    let r = unsafe { uring_one(sqe) };
    if r != page_size() as i32 {
        return Err(format!("io_uring write: {r}"));
    }
    Ok(Outcome {
        got: m.read_page(OTHER_PAGE),
        want_off: BUF_PAGE * page_size(),
        buf_page: BUF_PAGE,
    })
}

const ROWS: &[Row] = &[
    ("pwrite(2) from its MAP_SHARED mapping", write_shared),
    (
        "pwrite(2) of 8 pages from its mapping, every other one filled",
        write_partly_filled,
    ),
    ("pwritev(2) from its MAP_PRIVATE mapping", writev_private),
    ("pread(2) into its MAP_PRIVATE mapping", read_private),
    ("pread(2) into its MAP_SHARED mapping", read_shared),
    ("O_DIRECT pread(2) into its mapping", read_direct),
    ("io_submit(2) read into its mapping", aio_read_buffered),
    (
        "io_submit(2) O_DIRECT read into its mapping",
        aio_read_direct,
    ),
    ("io_uring read into its mapping", uring_read_buffered),
    ("io_uring O_DIRECT read into its mapping", uring_read_direct),
    ("io_uring write from its mapping", uring_write),
];

/// One row on a fresh stub with a filling listener.
fn run_case(ctx: &Ctx, i: u32) {
    let (what, f) = ROWS[i as usize];
    let path = ctx.path(&format!("stub{i}"));
    let (l, file) = lazy_stub_rw(&path, PAGES * page_size());
    let s = Setup { path, file };
    let res = f(&s);
    let seen = l.stop();
    let faults = seen.iter().filter(|e| e.mask == FAN_PRE_FAULT).count();
    tinfo!("{what}: {} events ({faults} FAN_PRE_FAULT)", seen.len());
    match res {
        Err(e) => tfail!("{what}: {e} ({faults} FAN_PRE_FAULT events)"),
        Ok(o) => {
            match pattern_mismatch(o.want_off, &o.got) {
                None => tpass!("{what}: full count, the right bytes"),
                Some(b) => tfail!("{what}: byte {b} of the result is wrong"),
            }
            let covering = fault_events_covering(&seen, o.buf_page * page_size());
            if covering >= 1 {
                tpass!("{what}: a FAN_PRE_FAULT covered the buffer's page");
            } else {
                log_seen(what, &seen);
                tfail!("{what}: no FAN_PRE_FAULT covered the buffer's page");
            }
        }
    }
}
