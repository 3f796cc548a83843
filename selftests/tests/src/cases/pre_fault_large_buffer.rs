//! pre_fault_large_buffer: reads and writes of a plain (not lazy) file whose
//! user buffer is an unfilled range of a lazy (FAN_PRE_FAULT) file's mapping
//! complete with the full count and the right bytes where the buffer is
//! larger than the 1 MiB the VFS faults in per round, is used by direct
//! I/O, by an append, or by overlayfs's calls to its real file: buffered and
//! O_DIRECT pread(2) and pwrite(2) of 4 MiB, O_APPEND write(2) of two pages
//! (the first filled, the second not) and of 3 MiB, and pwrite(2) and
//! pread(2) of a file through an overlay mounted on the test filesystem.
//!
//! Guards patch 6 (cover letter: "Design: reads and writes fault lazy
//! buffers in outside their locks"): inside ->read_iter() or ->write_iter()
//! of a regular file a fault on an unfilled lazy page is refused (no event);
//! call_rw_iter() drops the freeze protection, faults in the next 1 MiB of
//! the buffer (which sends the FAN_PRE_FAULT holding nothing) and calls
//! again.  A review found three gaps that the fix closes: an O_DIRECT call
//! with a lazy buffer over 1 MiB failed with EFAULT (direct I/O pins its
//! whole buffer and ext4 and xfs fail the whole call, so the window never
//! moved; a call that did nothing now gets the next window faulted in); an
//! O_APPEND write returned a short count as soon as a round was partial
//! (8192 bytes whose second page was unfilled gave 4096; the whole buffer of
//! an append is now faulted in first); and vfs_iter_read()/vfs_iter_write()
//! (overlayfs's calls to the real file) no longer fault in themselves, a
//! refused fault there ends the outer call's round.
//!
//! Each row runs on a fresh stub and checks the call's full count, the bytes
//! that arrived (read back from the mapping or the file), and that a
//! FAN_PRE_FAULT covered the buffer's first and last pages.  Reads come from
//! offsets other than the buffer's, so that bytes the listener filled in are
//! not taken for bytes the call copied.

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tbrok, tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const TEST: Test = Test {
    name: "pre_fault_large_buffer",
    doc: "large, O_DIRECT, O_APPEND and overlayfs reads and writes with an unfilled lazy buffer complete with the right bytes",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_OVERLAY_FS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[(
        "cover-letter",
        "Design: reads and writes fault lazy buffers in outside their locks",
    )],
    timeout: std::time::Duration::from_secs(120),
    tcnt: ROWS.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

const MIB: u64 = 1 << 20;
const STUB_SIZE: u64 = 8 * MIB;
/// Size of the pattern file in the overlay's lower directory.
const LOWER_SIZE: u64 = 2 * MIB;

/// Where the buffer starts in the stub: page-aligned (for O_DIRECT), not on
/// a MiB boundary, so the fault-in windows line up with nothing.
fn buf_off() -> u64 {
    MIB + 5 * page_size()
}

/// Where the plain file is read from, other than buf_off().
fn src_off() -> u64 {
    2 * MIB + 3 * page_size()
}

/// Where the overlay file is written and read: its lower file holds the
/// pattern at every offset, so not buf_off().
fn ovl_off() -> u64 {
    3 * page_size()
}

struct Setup<'a> {
    ctx: &'a Ctx,
    i: u32,
    stub: std::fs::File,
}

impl Setup<'_> {
    /// A path of this row's own on the test filesystem.
    fn path(&self, name: &str) -> PathBuf {
        self.ctx.path(&format!("{name}{}", self.i))
    }
}

/// What a row did: the bytes that arrived (read back where the call put
/// them) and the file offset whose pattern they must be.  The buffer starts
/// at buf_off() of the stub and is as long as `got`.
struct Outcome {
    got: Vec<u8>,
    want_off: u64,
}

type Row = (&'static str, fn(&Setup) -> Result<Outcome, String>);

fn map(s: &Setup, prot: ProtFlags, flags: MapFlags) -> Map {
    Map::new(&s.stub, 0, STUB_SIZE / page_size(), prot, flags).or_brok("mmap the stub")
}

/// pread(2) of `len` bytes at `off` of `src` into the buffer in a fresh
/// MAP_PRIVATE writable mapping of the stub; the bytes are read back from
/// the mapping (its own pages now: no event).
fn read_into(s: &Setup, src: &std::fs::File, off: u64, len: u64) -> Result<Outcome, String> {
    let m = map(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    );
    let buf = m.addr(buf_off() / page_size()).cast();
    // SAFETY: `len` bytes of our own writable mapping as the destination.
    let n = unsafe { libc::pread(src.as_raw_fd(), buf, len as usize, off as i64) };
    full_count(n, "pread", len)?;
    let b = buf_off() as usize;
    Ok(Outcome {
        got: m.as_slice()[b..b + len as usize].to_vec(),
        want_off: off,
    })
}

/// pwrite(2) at `at`, or write(2) if None (an append), of the `len` bytes
/// of the buffer in `m` to `dst` opened with `flags` (created if need be);
/// the file is read back through a buffered descriptor.
fn write_to(m: &Map, dst: &Path, flags: i32, len: u64, at: Option<u64>) -> Result<Outcome, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(flags)
        .open(dst)
        .or_brok("open the destination");
    let (fd, buf) = (f.as_raw_fd(), m.addr(buf_off() / page_size()).cast());
    // SAFETY: `len` bytes of our own mapping as the source buffer.
    let n = unsafe {
        match at {
            Some(off) => libc::pwrite(fd, buf, len as usize, off as i64),
            None => libc::write(fd, buf, len as usize),
        }
    };
    full_count(n, if at.is_some() { "pwrite" } else { "write" }, len)?;
    let back = std::fs::File::open(dst).or_brok("open the destination again");
    let mut got = vec![0u8; len as usize];
    back.read_exact_at(&mut got, at.unwrap_or(0))
        .map_err(|e| format!("reading the destination back: {e}"))?;
    let size = back.metadata().or_brok("fstat the destination").len();
    if at.is_none() && size != len {
        return Err(format!("{size} bytes in the file after appending {len}"));
    }
    Ok(Outcome {
        got,
        want_off: buf_off(),
    })
}

fn read_plain(s: &Setup, flags: i32) -> Result<Outcome, String> {
    let path = s.path("plain");
    create_pattern_file(&path, STUB_SIZE);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&path)
        .or_brok("open the pattern file");
    read_into(s, &f, src_off(), 4 * MIB)
}

fn read_buffered(s: &Setup) -> Result<Outcome, String> {
    read_plain(s, 0)
}

fn read_direct(s: &Setup) -> Result<Outcome, String> {
    read_plain(s, libc::O_DIRECT)
}

/// pwrite(2) of 4 MiB from a MAP_SHARED mapping to an empty file opened
/// with `flags`, at the buffer's own offset.
fn write_plain(s: &Setup, flags: i32) -> Result<Outcome, String> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    write_to(&m, &s.path("plain"), flags, 4 * MIB, Some(buf_off()))
}

fn write_buffered(s: &Setup) -> Result<Outcome, String> {
    write_plain(s, 0)
}

fn write_direct(s: &Setup) -> Result<Outcome, String> {
    write_plain(s, libc::O_DIRECT)
}

/// Two pages appended, the first filled first (MADV_RANDOM: one page per
/// event), the second not: a partial first round must not end the append.
fn append_half_filled(s: &Setup) -> Result<Outcome, String> {
    let ps = page_size();
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    m.advise(MmapAdvise::MADV_RANDOM)
        .or_brok("madvise(MADV_RANDOM)");
    m.touch(buf_off() / ps);
    if cached(&s.stub, buf_off() + ps, ps) != 0 {
        tbrok!("filling the first page of the buffer filled the second too");
    }
    write_to(&m, &s.path("append"), libc::O_APPEND, 2 * ps, None)
}

fn append_large(s: &Setup) -> Result<Outcome, String> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    write_to(&m, &s.path("append"), libc::O_APPEND, 3 * MIB, None)
}

/// An overlay mounted for one row, detached when dropped.  A TBROK exits
/// without dropping it; the runner's lazy unmount of the test filesystem
/// then takes it along.
struct Overlay(PathBuf);

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// An overlay of directories of the test filesystem whose lower directory
/// holds `file`, a pattern file of LOWER_SIZE bytes: the guard, and the
/// file's path through the overlay.
fn overlay(s: &Setup) -> (Overlay, PathBuf) {
    use nix::errno::Errno;
    let [lower, upper, work, mnt] = ["lower", "upper", "work", "ovl"].map(|d| s.path(d));
    for d in [&lower, &upper, &work, &mnt] {
        std::fs::create_dir(d).or_brok(&format!("mkdir {}", d.display()));
    }
    create_pattern_file(&lower.join("file"), LOWER_SIZE);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let fs = s.ctx.fs.map_or("?", Fs::name);
    let flags = nix::mount::MsFlags::empty();
    match nix::mount::mount(Some("overlay"), &mnt, Some("overlay"), flags, Some(&*opts)) {
        Ok(()) => (Overlay(mnt.clone()), mnt.join("file")),
        Err(e @ Errno::ENODEV) => tbrok!("no overlay filesystem in this kernel: {e}"),
        Err(e @ Errno::EINVAL) => tbrok!("overlayfs refuses {fs} for {opts}: {e}"),
        Err(e) => tbrok!("mount overlay on {fs} ({opts}): {e}"),
    }
}

/// pwrite(2) of 4 pages into the overlay file opened read-write (copied up).
fn overlay_write(s: &Setup) -> Result<Outcome, String> {
    let (_ovl, file) = overlay(s);
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let mut o = write_to(&m, &file, 0, 4 * page_size(), Some(ovl_off()))?;
    o.want_off = buf_off();
    Ok(o)
}

/// pread(2) of 1 MiB of the overlay file opened read-only (not copied up).
fn overlay_read(s: &Setup) -> Result<Outcome, String> {
    let (_ovl, file) = overlay(s);
    let f = std::fs::File::open(&file).or_brok("open the overlay file");
    read_into(s, &f, ovl_off(), MIB)
}

const ROWS: &[Row] = &[
    (
        "buffered pread(2) of 4 MiB into a lazy mapping",
        read_buffered,
    ),
    (
        "O_DIRECT pread(2) of 4 MiB into a lazy mapping",
        read_direct,
    ),
    (
        "buffered pwrite(2) of 4 MiB from a lazy mapping",
        write_buffered,
    ),
    (
        "O_DIRECT pwrite(2) of 4 MiB from a lazy mapping",
        write_direct,
    ),
    (
        "O_APPEND write(2) of 2 lazy pages, the first filled",
        append_half_filled,
    ),
    (
        "O_APPEND write(2) of 3 MiB from a lazy mapping",
        append_large,
    ),
    (
        "overlayfs pwrite(2) of 4 pages from a lazy mapping",
        overlay_write,
    ),
    (
        "overlayfs pread(2) of 1 MiB into a lazy mapping",
        overlay_read,
    ),
];

/// One row on a fresh 8 MiB stub with a filling listener: the row's buffer
/// is an unfilled range of a mapping of it.
fn run_case(ctx: &Ctx, i: u32) {
    let (what, f) = ROWS[i as usize];
    let (l, stub) = lazy_stub_rw(&ctx.path(&format!("stub{i}")), STUB_SIZE);
    let res = f(&Setup { ctx, i, stub });
    let seen = l.stop();
    let faults = seen.iter().filter(|e| e.mask == FAN_PRE_FAULT).count();
    tinfo!("{what}: {} events ({faults} FAN_PRE_FAULT)", seen.len());
    let o = match res {
        Err(e) => return tfail!("{what}: {e} ({faults} FAN_PRE_FAULT events)"),
        Ok(o) => o,
    };
    let len = o.got.len();
    match pattern_mismatch(o.want_off, &o.got) {
        None => tpass!("{what}: full count ({len}), the right bytes"),
        Some(b) => tfail!("{what}: full count ({len}), but byte {b} is wrong"),
    }
    let last = buf_off() + len as u64 - page_size();
    let mut logged = false;
    for (page, off) in [("first", buf_off()), ("last", last)] {
        if fault_events_covering(&seen, off) >= 1 {
            tpass!("{what}: a FAN_PRE_FAULT covered the buffer's {page} page");
        } else {
            if !std::mem::replace(&mut logged, true) {
                log_seen(what, &seen);
            }
            tfail!("{what}: no FAN_PRE_FAULT covered the buffer's {page} page");
        }
    }
}
