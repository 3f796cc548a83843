//! `fpc-bench icount`: kernel instructions per page fault and per syscall,
//! counted by the QEMU TCG plugin of `scripts/icount.sh`
//! (`selftests/bench/icount/icount.c`), inside the VM (root, one vCPU).
//!
//! Every measured operation runs in a window of its own:
//!
//! ```text
//! prepare (outside: zap the PTE, drop the page, lseek, ...)
//! xchg %r15,%r15      the plugin prints "icount mark=N kernel=K user=U"
//! the operation       (a load from a mapping, one syscall)
//! xchg %r15,%r15      mark=N+1
//! check the result (outside)
//! ```
//!
//! so `K(N+1) - K(N)` is the kernel's work for one operation, plus whatever
//! interrupt or other task ran in between: the minimum over many windows
//! is the number (interrupts only add), the median and the spread tell how
//! quiet the guest was.  Nothing allocates or prints between the markers.
//!
//! The program counts the markers it executes and prints, per scenario,
//! `icount-scenario name=S variant=V first_mark=K windows=R [key=value...]`,
//! where K is the 1-based index of the scenario's first marker among all the
//! markers this program executed.  The plugin numbers every marker the guest
//! executes since boot, so K is the plugin's `mark=` as long as nothing else
//! executes the marker: a first `calibration` window (two markers back to
//! back: exactly 1 user instruction) and the closing `icount-done marks=M`
//! line let `fpc-bench icount-report` check that.
//!
//! The measured filesystem is ext4 (`--device`): by default on /dev/pmem0
//! (the guest booted with `memmap=512M!1G`) mounted `-o dax=inode`, so that
//! a page-cache miss reads in the faulting task itself (the pmem driver
//! copies in submit_bio and completes the bio at once: no I/O thread, no
//! context switch, and the cold fault's count is as exact as a warm one's),
//! with the DAX file in a directory with FS_XFLAG_DAX; or on a loop device
//! over an image on a tmpfs of its own (`--device loop`, the fallback
//! without /dev/pmem0: the loop worker thread makes cold faults vary by
//! about 1 %), with the DAX file on /dev/pmem0 `-o dax` if there is one.
//! Made with the inode tables and journal initialised (no ext4lazyinit
//! thread), mounted `commit=600,noatime` (`--mount-options`: with relatime,
//! read() compares timestamps, and whether they are of the same second
//! depends on the wall clock), with periodic writeback off while the
//! program runs (`vm.dirty_writeback_centisecs=0`), the vmstat refresh
//! slowed down, proactive compaction and the soft-lockup watchdog off; each
//! scenario starts after `sync` and a quiet second.  The program re-executes
//! itself without ASLR, so that its mappings and buffers are at the same
//! addresses in every boot.  The measured page is page 517 of a 4 MiB
//! mapping at a 2 MiB-aligned address, `MADV_NOHUGEPAGE` (no PMD mapping,
//! no khugepaged collapse into a 2 MiB folio); pages 560 and 1000
//! (anchors) stay mapped and cached, so the page table and the page
//! cache's xarray node of the measured page are never freed between
//! windows.
//!
//! Scenarios (R windows each, after 16 unmeasured warm-up rounds):
//! * `fault-cold`: a read fault on a page not in the page cache, of a
//!   `MADV_RANDOM` mapping (no readahead: the fault reads exactly its page),
//!   with the default fault_around_bytes (fault-around runs first and finds
//!   nothing cached around the page).  Before each window: `MADV_DONTNEED` and
//!   `POSIX_FADV_DONTNEED` of pages 512-559, checked with cachestat(2).
//! * `fault-warm`: page cached, PTE zapped, fault_around_bytes=4096:
//!   filemap_fault()'s page-cache hit.
//! * `fault-around`: the same with the boot's fault_around_bytes (64 KiB):
//!   filemap_map_pages() maps the 16 pages around it, no ->fault.
//! * `fault-dax`: a read fault on a DAX file on /dev/pmem0 (boot with
//!   `memmap=512M!1G`), a PTE fault (`MADV_NOHUGEPAGE`); skipped
//!   without /dev/pmem0.
//! * `read`, `pread`, `write`: 4 KiB at page 517 of the cached 64 MiB file
//!   (read()/write() after an lseek outside the window; write() rewrites
//!   the same bytes, so after the first window it hits a dirty page).
//! * `uring-read`: an io_uring IORING_OP_READ of the same 4 KiB: the SQE
//!   push and io_uring_enter(submit 1, wait 1) are in the window.
//! * the path operations of patch 9's hooks (FAN_PRE_DIR_ACCESS), in a
//!   directory `dirops` of 32 files and a subdirectory, by descriptor of
//!   the directory: `stat-miss` (fstatat of a name that does not exist:
//!   after the warm-up a cached negative dentry, the fast path's hook),
//!   `open` (openat of a file, closed after the window), `opendir` (openat
//!   of the subdirectory O_DIRECTORY: the open-time hook), `getdents` (one
//!   getdents64 of the directory, from offset 0), `mkdir` (mkdirat of a new
//!   name, removed after the window: the parent lookup's hook).  With no
//!   FAN_PRE_DIR_ACCESS mark in any variant: the unwatched cost, and
//!   (hsm-filled) that of a file-only HSM's filesystem mark.
//! * variant `hsm-lazy` (after the others: its mark turns on the directory
//!   hooks' static key for good): the directory scenarios only, under a
//!   FAN_PRE_DIR_ACCESS filesystem mark with an ignore mark on `dirops` and
//!   `dirops/sub`: what a populated directory of a lazy tree costs, against
//!   the patched `hsm-filled` (whose marks stay: its listener keeps its
//!   group); its listener counts events (0 expected).
//! * `fault-event` (variant hsm-filled only): `fault-cold` on a file of the
//!   marked filesystem without an ignore mark: one FAN_PRE_FAULT event per
//!   window, answered FAN_ALLOW at once by a listener thread: the event
//!   round trip, absolute.
//!
//! Variants, in this order in one boot (a FAN_PRE_FAULT mark turns a static
//! key on that never goes off again):
//! * `none`: no fanotify mark since boot.
//! * `key-on`: a FAN_CLASS_PRE_CONTENT group with a FAN_PRE_ACCESS |
//!   FAN_PRE_FAULT inode mark on a file of another (small ext4) filesystem;
//!   the measured one has no mark.  A kernel without FAN_PRE_FAULT (the
//!   base) refuses the mask with EINVAL: the variant is then reported as
//!   not applicable and measured with a FAN_PRE_ACCESS mark alone.
//! * `hsm-filled`: a FAN_PRE_ACCESS | FAN_PRE_FAULT filesystem mark on the
//!   measured filesystems and an ignore mark (FAN_MARK_IGNORE_SURV) of both
//!   events on the measured files: what a filled file of an HSM costs.
//!   Files are opened after the marks.  Skipped where FAN_PRE_FAULT is
//!   refused.  The listener counts events: the measured files must get
//!   none (`events=0` in the lines of the other scenarios).

use crate::say;
use crate::sys::{self, PAGE};
use anyhow::{anyhow, bail, Context, Result};
use fanotify::consts::{
    FAN_CLASS_PRE_CONTENT, FAN_CLOEXEC, FAN_MARK_ADD, FAN_MARK_FILESYSTEM, FAN_MARK_IGNORE_SURV,
    FAN_PRE_ACCESS, FAN_PRE_DIR_ACCESS, FAN_PRE_FAULT,
};
use fanotify::{Fanotify, Response};
use nix::errno::Errno;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The variants, in the order they run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, clap::ValueEnum)]
pub enum Variant {
    /// No fanotify mark since boot.
    None,
    /// A FAN_PRE_FAULT mark on a file of another filesystem (the static key on).
    KeyOn,
    /// The measured files filled and ignored under a FAN_PRE_FAULT filesystem mark.
    HsmFilled,
    /// The directory scenarios' directories populated and ignored under a
    /// FAN_PRE_DIR_ACCESS filesystem mark.
    HsmLazy,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::KeyOn => "key-on",
            Variant::HsmFilled => "hsm-filled",
            Variant::HsmLazy => "hsm-lazy",
        }
    }
}

/// The directory scenarios, the only ones of the hsm-lazy variant.
const DIR_SCENARIOS: &[&str] = &["stat-miss", "open", "opendir", "getdents", "mkdir"];

/// The scenarios, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "fault-cold",
    "fault-warm",
    "fault-around",
    "fault-dax",
    "read",
    "pread",
    "write",
    "uring-read",
    "fault-event",
    "stat-miss",
    "open",
    "opendir",
    "getdents",
    "mkdir",
];

/// What `fpc-bench icount` was asked to do.
pub struct Plan {
    pub variants: Vec<Variant>,
    pub scenarios: Vec<String>,
    pub windows: usize,
    pub warmup: usize,
    pub scratch: PathBuf,
    pub quiet: Duration,
    pub device: Device,
    /// ext4 mount options of the measured filesystems.
    pub mount_options: String,
}

/// Size of the measured file.
const DATA_SIZE: u64 = 64 << 20;
/// Pages mapped by the fault scenarios (4 MiB: two page tables' worth, the
/// first 2 MiB-aligned).
const MAP_PAGES: usize = 1024;
/// The measured page.
const P: usize = 517;
/// Pages kept mapped and cached: 560 shares the xarray leaf node (512-575)
/// of P, not its 64 KiB fault-around block (512-527); both share P's page
/// table (512-1023).
const ANCHORS: [usize; 2] = [560, 1000];
/// Pages zapped and dropped before a cold fault (P's block up to the
/// first anchor).
const COLD_RANGE: (usize, usize) = (512, 560);
/// Size of the DAX and event files.
const SMALL_SIZE: u64 = (MAP_PAGES as u64) * PAGE;

const FAULT_AROUND: &str = "/sys/kernel/debug/fault_around_bytes";

// ------------------------------------------------------------- the marker

/// The marker the plugin recognises: `xchg %r15,%r15` (4d 87 ff).
#[inline(always)]
fn marker() {
    // SAFETY: exchanging r15 with itself changes no register, flag or
    // memory.  Not `nomem`: the compiler must not move the measured memory
    // access or call across it.
    unsafe { std::arch::asm!("xchg r15, r15", options(nostack, preserves_flags)) };
}

/// One measured operation: `prep` and `check` run outside the window, `op`
/// inside.
trait Op {
    /// Before window `i`.
    fn prep(&mut self, i: usize) -> Result<()>;
    /// The measured operation; its result goes to `check`.
    fn op(&mut self) -> i64;
    /// After the window.
    fn check(&mut self, r: i64) -> Result<()>;
}

// ------------------------------------------------------------ the system

/// Sysctls that make the guest quieter, restored on drop.
struct Quiet(Vec<(PathBuf, String)>);

impl Quiet {
    fn new() -> Quiet {
        let mut saved = Vec::new();
        for (p, v) in [
            // No periodic writeback (sync before each scenario instead).
            ("/proc/sys/vm/dirty_writeback_centisecs", "0"),
            // vmstat_update once an hour, not every second.
            ("/proc/sys/vm/stat_interval", "3600"),
            // No proactive compaction by kcompactd.
            ("/proc/sys/vm/compaction_proactiveness", "0"),
            // No soft-lockup watchdog hrtimer and thread.
            ("/proc/sys/kernel/watchdog", "0"),
        ] {
            let p = PathBuf::from(p);
            let Ok(old) = std::fs::read_to_string(&p) else {
                continue;
            };
            match std::fs::write(&p, v) {
                Ok(()) => {
                    sys::out(&format!(
                        "icount-info sysctl {}={v} (was {})",
                        p.display(),
                        old.trim()
                    ));
                    saved.push((p, old.trim().to_string()));
                }
                Err(e) => say!("icount: cannot write {v} to {}: {e}", p.display()),
            }
        }
        Quiet(saved)
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        for (p, v) in self.0.iter().rev() {
            let _ = std::fs::write(p, v);
        }
    }
}

/// Mounts made by the program, unmounted (in reverse) on drop.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn mount(&mut self, args: &[&str], src: &Path, dst: &Path) -> Result<()> {
        std::fs::create_dir_all(dst).with_context(|| format!("mkdir {}", dst.display()))?;
        sys::run(Command::new("mount").args(args).arg(src).arg(dst))?;
        self.0.push(dst.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// mkfs.ext4 with 4 KiB blocks (a small filesystem would get 1 KiB ones)
/// and everything initialised now: no ext4lazyinit thread later.
fn mkfs_ext4(dev: &Path) -> Result<()> {
    sys::run(
        Command::new("mkfs.ext4")
            .args([
                "-F",
                "-q",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ])
            .arg(dev),
    )
    .map(drop)
}

/// A sparse image of `size` bytes at `img`, made ext4.
fn ext4_image(img: &Path, size: u64) -> Result<()> {
    let f = File::create(img).with_context(|| format!("create {}", img.display()))?;
    f.set_len(size).context("size the image")?;
    drop(f);
    mkfs_ext4(img)
}

/// A pattern file of `size` bytes (fsync'ed).
fn pattern_file(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    hsm::pattern::write_file(&mut f, size).with_context(|| format!("write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))
}

/// Is `path` a DAX file (statx STATX_ATTR_DAX)?
fn is_dax(path: &Path) -> Result<bool> {
    const STATX_ATTR_DAX: u64 = 0x0020_0000;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: an all-zero statx is a valid buffer for statx(2) to fill.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a buffer that outlive the call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    Errno::result(r).with_context(|| format!("statx {}", path.display()))?;
    Ok(stx.stx_attributes_mask & STATX_ATTR_DAX != 0 && stx.stx_attributes & STATX_ATTR_DAX != 0)
}

/// fault_around_bytes (mounting debugfs if needed); None without it.
fn fault_around() -> Option<u64> {
    if !Path::new(FAULT_AROUND).exists() {
        let _ =
            sys::run(Command::new("mount").args(["-t", "debugfs", "none", "/sys/kernel/debug"]));
    }
    std::fs::read_to_string(FAULT_AROUND)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn set_fault_around(v: u64) -> Result<()> {
    std::fs::write(FAULT_AROUND, v.to_string())
        .with_context(|| format!("write {v} to {FAULT_AROUND}"))
}

/// `POSIX_FADV_DONTNEED` of pages `[first, end)` of `f`.
fn drop_pages(f: &File, first: usize, end: usize) -> Result<()> {
    nix::fcntl::posix_fadvise(
        f.as_raw_fd(),
        (first as u64 * PAGE) as i64,
        ((end - first) as u64 * PAGE) as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .context("posix_fadvise DONTNEED")?;
    Ok(())
}

/// Pages of `[page, page + n)` of `f` in the page cache.
fn cached(f: &File, page: usize, n: usize) -> Result<u64> {
    hsm::cache::cached_pages(f, page as u64 * PAGE, n as u64 * PAGE).context("cachestat")
}

/// Read `f` whole (1 MiB pread()s), so that it is cached.
fn cache_file(f: &File) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = f.read_at(&mut buf, off).context("read the file")?;
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    let pages = len.div_ceil(PAGE);
    let c = sys::cached_pages(f)?;
    if c != pages {
        bail!("{c} of {pages} pages cached after reading the file");
    }
    Ok(())
}

// ------------------------------------------------------------ the mapping

/// A shared read-only mapping of the first [`MAP_PAGES`] pages of a file at
/// a 2 MiB-aligned address; unmapped on drop.
struct Mapping {
    base: *mut u8,
}

impl Mapping {
    const LEN: usize = MAP_PAGES * PAGE as usize;
    const ALIGN: usize = 2 << 20;

    fn new(f: &File) -> Result<Mapping> {
        let resv = Self::LEN + Self::ALIGN;
        // SAFETY: a fresh anonymous reservation at an address the kernel
        // picks, touching no existing mapping.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                resv,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap reservation");
        }
        let start = (r as usize).next_multiple_of(Self::ALIGN);
        // SAFETY: [start, start + LEN) lies inside our own reservation,
        // which MAP_FIXED replaces.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                Self::LEN,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                f.as_raw_fd(),
                0,
            )
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: the parts of our reservation around the file mapping.
        unsafe {
            let head = start - r as usize;
            if head > 0 {
                libc::munmap(r, head);
            }
            let tail = resv - head - Self::LEN;
            if tail > 0 {
                libc::munmap((start + Self::LEN) as *mut libc::c_void, tail);
            }
        }
        if p == libc::MAP_FAILED {
            // SAFETY: the reservation's middle, still ours.
            unsafe { libc::munmap(start as *mut libc::c_void, Self::LEN) };
            return Err(err).context("mmap the file");
        }
        let m = Mapping { base: p as *mut u8 };
        // No PMD mapping, and no khugepaged collapsing the file's pages
        // into a 2 MiB folio between windows (it did, with THP "always"
        // and ext4's large folios): small pages only.
        m.advise(0, MAP_PAGES, libc::MADV_NOHUGEPAGE)?;
        Ok(m)
    }

    /// Read the first byte of `page` (faults it in).
    #[inline(always)]
    fn touch(&self, page: usize) -> u8 {
        // SAFETY: page < MAP_PAGES (callers use the constants above), inside
        // the readable mapping.
        unsafe { self.base.add(page * PAGE as usize).read_volatile() }
    }

    /// madvise(2) on pages `[first, end)`.  MADV_DONTNEED only zaps: the
    /// mapping is a shared file mapping, nothing borrows its memory.
    fn advise(&self, first: usize, end: usize, advice: libc::c_int) -> Result<()> {
        assert!(first < end && end <= MAP_PAGES);
        // SAFETY: a range of our own mapping; no reference into it is held.
        let r = unsafe {
            libc::madvise(
                self.base.add(first * PAGE as usize) as *mut libc::c_void,
                (end - first) * PAGE as usize,
                advice,
            )
        };
        Errno::result(r)
            .map(drop)
            .with_context(|| format!("madvise({advice})"))
    }

    fn zap(&self, first: usize, end: usize) -> Result<()> {
        self.advise(first, end, libc::MADV_DONTNEED)
    }

    /// Map (and cache) the anchors.
    fn anchor(&self) {
        for a in ANCHORS {
            std::hint::black_box(self.touch(a));
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our mapping; nothing refers to it any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, Self::LEN) };
    }
}

// ----------------------------------------------------------- the scenarios

/// The byte of the pattern file at the start of page `page`.
fn pattern_byte(page: usize) -> i64 {
    hsm::pattern::byte_at(page as u64 * PAGE) as i64
}

/// A read fault on page P; `prep` zaps it (and drops it from the page
/// cache if `cold`).
struct Fault<'a> {
    m: &'a Mapping,
    file: &'a File,
    cold: bool,
    /// Zapped before each window: P's fault-around block for fault-around.
    zap: (usize, usize),
}

impl Op for Fault<'_> {
    fn prep(&mut self, _: usize) -> Result<()> {
        if self.cold {
            self.m.zap(COLD_RANGE.0, COLD_RANGE.1)?;
            drop_pages(self.file, COLD_RANGE.0, COLD_RANGE.1)?;
            let c = cached(self.file, P, 1)?;
            if c != 0 {
                let range = cached(self.file, COLD_RANGE.0, COLD_RANGE.1 - COLD_RANGE.0)?;
                let whole = sys::cached_pages(self.file)?;
                let mut again = Vec::new();
                for _ in 0..5 {
                    std::thread::sleep(Duration::from_millis(20));
                    drop_pages(self.file, COLD_RANGE.0, COLD_RANGE.1)?;
                    again.push(cached(self.file, P, 1)?);
                }
                bail!(
                    "page {P} still cached after POSIX_FADV_DONTNEED (pages cached: {range} of \
                     {}-{}, {whole} of the file; after retries: {again:?})",
                    COLD_RANGE.0,
                    COLD_RANGE.1 - 1
                );
            }
        } else {
            self.m.zap(self.zap.0, self.zap.1)?;
        }
        Ok(())
    }

    #[inline(always)]
    fn op(&mut self) -> i64 {
        self.m.touch(P) as i64
    }

    fn check(&mut self, r: i64) -> Result<()> {
        if r != pattern_byte(P) {
            bail!(
                "page {P} read {r:#x}, not the pattern's {:#x}",
                pattern_byte(P)
            );
        }
        Ok(())
    }
}

/// A page-aligned 4 KiB buffer.
#[repr(C, align(4096))]
struct PageBuf([u8; PAGE as usize]);

impl PageBuf {
    /// Holding the pattern of page P (touched, so no fault in a window).
    fn new() -> Box<PageBuf> {
        let mut b = Box::new(PageBuf([0; PAGE as usize]));
        hsm::pattern::fill(P as u64 * PAGE, &mut b.0);
        b
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rw {
    Read,
    Pread,
    Write,
}

/// read(), pread() or write() of 4 KiB at page P.
struct Syscall {
    fd: RawFd,
    rw: Rw,
    buf: Box<PageBuf>,
}

impl Op for Syscall {
    fn prep(&mut self, _: usize) -> Result<()> {
        if self.rw != Rw::Pread {
            nix::unistd::lseek(
                self.fd,
                (P as u64 * PAGE) as i64,
                nix::unistd::Whence::SeekSet,
            )
            .context("lseek")?;
        }
        Ok(())
    }

    #[inline(always)]
    fn op(&mut self) -> i64 {
        let b = self.buf.0.as_mut_ptr() as *mut libc::c_void;
        let n = PAGE as usize;
        // SAFETY: a 4 KiB buffer of ours and an fd of ours.
        (unsafe {
            match self.rw {
                Rw::Read => libc::read(self.fd, b, n),
                Rw::Pread => libc::pread(self.fd, b, n, (P as u64 * PAGE) as libc::off_t),
                Rw::Write => libc::write(self.fd, b, n),
            }
        }) as i64
    }

    fn check(&mut self, r: i64) -> Result<()> {
        if r != PAGE as i64 {
            bail!(
                "returned {r} ({})",
                if r < 0 {
                    std::io::Error::last_os_error().to_string()
                } else {
                    "short".into()
                }
            );
        }
        if self.rw != Rw::Write && hsm::pattern::mismatch(P as u64 * PAGE, &self.buf.0).is_some() {
            bail!("read bytes that are not the pattern");
        }
        Ok(())
    }
}

/// An io_uring IORING_OP_READ of 4 KiB at page P: push and submit-and-wait
/// in the window, the completion reaped after it.
struct Uring {
    ring: io_uring::IoUring,
    sqe: io_uring::squeue::Entry,
    buf: Box<PageBuf>,
}

impl Uring {
    fn new(fd: RawFd) -> Result<Uring> {
        let ring = io_uring::IoUring::new(8).context("io_uring_setup")?;
        let mut buf = PageBuf::new();
        let sqe =
            io_uring::opcode::Read::new(io_uring::types::Fd(fd), buf.0.as_mut_ptr(), PAGE as u32)
                .offset(P as u64 * PAGE)
                .build()
                .user_data(0x1c0);
        Ok(Uring { ring, sqe, buf })
    }
}

impl Op for Uring {
    fn prep(&mut self, _: usize) -> Result<()> {
        self.buf.0.fill(0);
        Ok(())
    }

    #[inline(always)]
    fn op(&mut self) -> i64 {
        // SAFETY: the SQE reads into self.buf from an fd that stay alive
        // until its completion is reaped in check().
        if unsafe { self.ring.submission().push(&self.sqe) }.is_err() {
            return -1;
        }
        match self.ring.submit_and_wait(1) {
            Ok(n) => n as i64,
            Err(e) => -(e.raw_os_error().unwrap_or(0) as i64) - 1000,
        }
    }

    fn check(&mut self, r: i64) -> Result<()> {
        if r != 1 {
            bail!("push/io_uring_enter returned {r}");
        }
        let cqe = self
            .ring
            .completion()
            .next()
            .ok_or_else(|| anyhow!("no completion"))?;
        if cqe.result() != PAGE as i32 {
            bail!("the read completed with {}", cqe.result());
        }
        if hsm::pattern::mismatch(P as u64 * PAGE, &self.buf.0).is_some() {
            bail!("read bytes that are not the pattern");
        }
        Ok(())
    }
}

/// The path operations of the directory hooks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirKind {
    StatMiss,
    Open,
    Opendir,
    Getdents,
    Mkdir,
}

/// One path operation in the directory `dir` (see the module's
/// documentation); `op` returns the result or -errno.
struct DirOp {
    kind: DirKind,
    dir: RawFd,
    buf: Box<PageBuf>,
}

impl Op for DirOp {
    fn prep(&mut self, _: usize) -> Result<()> {
        if self.kind == DirKind::Getdents {
            nix::unistd::lseek(self.dir, 0, nix::unistd::Whence::SeekSet).context("lseek")?;
        }
        Ok(())
    }

    #[inline(always)]
    fn op(&mut self) -> i64 {
        // SAFETY: NUL-terminated names, a stat buffer and a 4 KiB buffer of
        // ours, and a directory descriptor of ours.
        let r = unsafe {
            match self.kind {
                DirKind::StatMiss => {
                    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
                    libc::fstatat(
                        self.dir,
                        c"nope".as_ptr(),
                        st.as_mut_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                    ) as i64
                }
                DirKind::Open => {
                    libc::openat(self.dir, c"f7".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) as i64
                }
                DirKind::Opendir => libc::openat(
                    self.dir,
                    c"sub".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                ) as i64,
                DirKind::Getdents => libc::syscall(
                    libc::SYS_getdents64,
                    self.dir,
                    self.buf.0.as_mut_ptr(),
                    PAGE as usize,
                ),
                DirKind::Mkdir => libc::mkdirat(self.dir, c"new".as_ptr(), 0o700) as i64,
            }
        };
        if r < 0 {
            -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
        } else {
            r
        }
    }

    fn check(&mut self, r: i64) -> Result<()> {
        let err = |what: &str| anyhow!("{what}: returned {r}");
        match self.kind {
            DirKind::StatMiss if r != -(libc::ENOENT as i64) => Err(err("want -ENOENT")),
            DirKind::Open | DirKind::Opendir if r < 0 => Err(err("openat")),
            DirKind::Open | DirKind::Opendir => {
                nix::unistd::close(r as RawFd).context("close")?;
                Ok(())
            }
            // 33 entries and . and .., about 20 bytes each.
            DirKind::Getdents if r < 35 * 20 => Err(err("getdents64: want all 35 entries")),
            DirKind::Mkdir if r != 0 => Err(err("mkdirat")),
            DirKind::Mkdir => {
                nix::unistd::unlinkat(Some(self.dir), "new", nix::unistd::UnlinkatFlags::RemoveDir)
                    .context("rmdir")?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------ the program

/// A FAN_CLASS_PRE_CONTENT group whose events a thread answers FAN_ALLOW at
/// once, counting them.
struct Listener {
    events: Arc<AtomicU64>,
}

impl Listener {
    /// A FAN_CLASS_PRE_CONTENT group (no marks yet).
    fn group() -> Result<Fanotify> {
        Fanotify::init(
            FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC,
            (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
        )
        .context("fanotify_init(FAN_CLASS_PRE_CONTENT)")
    }

    /// Answer the events of `group` from a thread of its own.
    fn spawn(group: Fanotify) -> Result<Listener> {
        let events = Arc::new(AtomicU64::new(0));
        let (g, n) = (group, events.clone());
        std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || loop {
                match g.read_events() {
                    Ok(evs) => {
                        for e in evs {
                            if let (Some(fd), true) = (&e.fd, e.needs_response()) {
                                if let Err(err) = g.respond(fd.as_fd(), Response::Allow) {
                                    say!("icount: listener: {err}");
                                }
                            }
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        say!("icount: listener: {e}; it stops");
                        return;
                    }
                }
            })
            .context("spawn the listener")?;
        Ok(Listener { events })
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

/// The files a variant measures, opened after its marks.
struct Files {
    data: File,
    data_rw: File,
    dax: Option<File>,
    event: Option<File>,
}

struct Prog<'a> {
    plan: &'a Plan,
    /// Markers executed so far.
    marks: u64,
    /// Where the files are.
    layout: Layout,
    fault_around: Option<u64>,
    variant: Variant,
    /// The hsm-filled variant's group.
    listener: Option<Listener>,
}

impl Prog<'_> {
    fn data_path(&self) -> PathBuf {
        self.layout.root.join("data")
    }

    fn event_path(&self) -> PathBuf {
        self.layout.root.join("event")
    }

    fn dax_path(&self) -> Option<PathBuf> {
        self.layout.dax.as_ref().map(|d| d.join("data"))
    }

    fn wants(&self, name: &str) -> bool {
        (self.variant != Variant::HsmLazy || DIR_SCENARIOS.contains(&name))
            && self.plan.scenarios.iter().any(|s| s == name)
    }

    /// The directory of the directory scenarios: 32 files and `sub`.
    fn dirops(&self) -> Result<PathBuf> {
        let dir = self.layout.root.join("dirops");
        if !dir.exists() {
            std::fs::create_dir_all(dir.join("sub"))
                .with_context(|| format!("mkdir {}", dir.display()))?;
            for i in 0..32 {
                std::fs::write(dir.join(format!("f{i}")), b"x")
                    .with_context(|| format!("create a file in {}", dir.display()))?;
            }
        }
        Ok(dir)
    }

    fn skip(&self, name: &str, why: &str) {
        say!("{name} ({}): skipped: {why}", self.variant.name());
        sys::out(&format!(
            "icount-skip name={name} variant={} reason=\"{why}\"",
            self.variant.name()
        ));
    }

    /// Write back everything, then give the system `plan.quiet` to settle.
    fn quiet(&self) {
        nix::unistd::sync();
        std::thread::sleep(self.plan.quiet);
    }

    /// R windows of `o` (after the warm-up rounds, unmeasured), then the
    /// scenario's line.
    fn windows(&mut self, name: &str, o: &mut impl Op, extra: &str) -> Result<()> {
        for i in 0..self.plan.warmup {
            o.prep(i)
                .and_then(|()| {
                    let r = o.op();
                    o.check(r)
                })
                .with_context(|| format!("{name}: warm-up round {i}"))?;
        }
        let events = self.listener.as_ref().map(Listener::events);
        self.quiet();
        let first = self.marks + 1;
        for i in 0..self.plan.windows {
            o.prep(i)
                .with_context(|| format!("{name}: before window {i}"))?;
            marker();
            let r = o.op();
            marker();
            self.marks += 2;
            o.check(r).with_context(|| format!("{name}: window {i}"))?;
        }
        let mut extra = extra.to_string();
        if let (Some(l), Some(before)) = (&self.listener, events) {
            extra.push_str(&format!(" events={}", l.events() - before));
        }
        sys::out(&format!(
            "icount-scenario name={name} variant={} first_mark={first} windows={}{}{extra}",
            self.variant.name(),
            self.plan.windows,
            if extra.is_empty() { "" } else { " " },
        ));
        say!(
            "{name} ({}): {} windows",
            self.variant.name(),
            self.plan.windows
        );
        Ok(())
    }

    fn calibration(&mut self) {
        let first = self.marks + 1;
        marker();
        marker();
        self.marks += 2;
        sys::out(&format!(
            "icount-scenario name=calibration variant=- first_mark={first} windows=1 expect_user=1"
        ));
    }

    fn open(&self) -> Result<Files> {
        let data = File::open(self.data_path()).context("open the data file")?;
        let data_rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.data_path())
            .context("open the data file O_RDWR")?;
        let dax = match self.dax_path() {
            Some(p) => Some(File::open(p).context("open the DAX file")?),
            None => None,
        };
        let event = if self.variant == Variant::HsmFilled {
            Some(File::open(self.event_path()).context("open the event file")?)
        } else {
            None
        };
        Ok(Files {
            data,
            data_rw,
            dax,
            event,
        })
    }

    fn cold_fault(&mut self, name: &str, f: &File) -> Result<()> {
        let fa = self.fault_around;
        sys::drop_caches()?;
        let m = Mapping::new(f)?;
        m.advise(0, MAP_PAGES, libc::MADV_RANDOM)?;
        m.anchor();
        let mut o = Fault {
            m: &m,
            file: f,
            cold: true,
            zap: COLD_RANGE,
        };
        let extra = format!(
            "madvise=random fault_around={}",
            fa.map_or("?".into(), |v| v.to_string())
        );
        self.windows(name, &mut o, &extra)?;
        for a in ANCHORS {
            if cached(f, a, 1)? != 1 {
                bail!("{name}: anchor page {a} was evicted");
            }
        }
        Ok(())
    }

    fn variant_run(&mut self) -> Result<()> {
        let files = self.open()?;
        let fa = self.fault_around;
        if self.wants("fault-cold") {
            self.cold_fault("fault-cold", &files.data)?;
        }
        // Everything cached from here on.
        cache_file(&files.data)?;
        if self.wants("fault-warm") {
            match fa {
                Some(orig) => {
                    set_fault_around(PAGE)?;
                    let r = (|| {
                        let m = Mapping::new(&files.data)?;
                        m.anchor();
                        let mut o = Fault {
                            m: &m,
                            file: &files.data,
                            cold: false,
                            zap: (P, P + 1),
                        };
                        self.windows("fault-warm", &mut o, "fault_around=4096")
                    })();
                    set_fault_around(orig)?;
                    r?;
                }
                None => self.skip("fault-warm", &format!("no {FAULT_AROUND}")),
            }
        }
        if self.wants("fault-around") {
            let bytes = fa.unwrap_or(65536);
            let block = (bytes / PAGE).max(1) as usize;
            let first = P / block * block;
            let m = Mapping::new(&files.data)?;
            m.anchor();
            let mut o = Fault {
                m: &m,
                file: &files.data,
                cold: false,
                zap: (first, (first + block).min(MAP_PAGES)),
            };
            let extra = format!("fault_around={}", fa.map_or("?".into(), |v| v.to_string()));
            self.windows("fault-around", &mut o, &extra)?;
        }
        if self.wants("fault-dax") {
            match &files.dax {
                Some(f) => {
                    let m = Mapping::new(f)?;
                    m.anchor();
                    let mut o = Fault {
                        m: &m,
                        file: f,
                        cold: false,
                        zap: (P, P + 1),
                    };
                    self.windows("fault-dax", &mut o, "madvise=nohugepage")?;
                }
                None => self.skip("fault-dax", &self.layout.no_dax.clone()),
            }
        }
        for (name, rw) in [
            ("read", Rw::Read),
            ("pread", Rw::Pread),
            ("write", Rw::Write),
        ] {
            if !self.wants(name) {
                continue;
            }
            let f = if rw == Rw::Write {
                &files.data_rw
            } else {
                &files.data
            };
            let mut o = Syscall {
                fd: f.as_raw_fd(),
                rw,
                buf: PageBuf::new(),
            };
            self.windows(name, &mut o, "bytes=4096")?;
        }
        nix::unistd::fdatasync(files.data_rw.as_raw_fd()).context("fdatasync")?;
        if self.wants("uring-read") {
            let mut o = Uring::new(files.data.as_raw_fd())?;
            self.windows("uring-read", &mut o, "bytes=4096")?;
        }
        let dir_ops = [
            ("stat-miss", DirKind::StatMiss),
            ("open", DirKind::Open),
            ("opendir", DirKind::Opendir),
            ("getdents", DirKind::Getdents),
            ("mkdir", DirKind::Mkdir),
        ];
        if dir_ops.iter().any(|(n, _)| self.wants(n)) {
            let dir = self.dirops()?;
            let d = File::open(&dir).with_context(|| format!("open {}", dir.display()))?;
            for (name, kind) in dir_ops {
                if self.wants(name) {
                    let mut o = DirOp {
                        kind,
                        dir: d.as_raw_fd(),
                        buf: PageBuf::new(),
                    };
                    self.windows(name, &mut o, "dir_entries=33")?;
                }
            }
        }
        if self.variant == Variant::HsmFilled && self.wants("fault-event") {
            let f = files.event.as_ref().expect("opened for hsm-filled");
            self.cold_fault("fault-event", f)?;
        }
        Ok(())
    }
}

/// The key-on variant's mark: FAN_PRE_ACCESS | FAN_PRE_FAULT on a file of
/// a small filesystem of its own (FAN_PRE_ACCESS alone where FAN_PRE_FAULT
/// is refused).  The group stays open for the rest of the program.
fn key_on(scratch: &Path, mounts: &mut Mounts) -> Result<Fanotify> {
    let img = scratch.join("keyfs.img");
    let mnt = scratch.join("keyfs");
    ext4_image(&img, 32 << 20)?;
    mounts.mount(&["-t", "ext4", "-o", "loop"], &img, &mnt)?;
    let file = mnt.join("marked");
    pattern_file(&file, 1 << 20)?;
    let g = Listener::group()?;
    match g.mark(FAN_MARK_ADD, FAN_PRE_ACCESS | FAN_PRE_FAULT, &file) {
        Ok(()) => sys::out(
            "icount-variant variant=key-on applicable=yes mark=\"FAN_PRE_ACCESS|FAN_PRE_FAULT inode mark on another ext4\"",
        ),
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            g.mark(FAN_MARK_ADD, FAN_PRE_ACCESS, &file)
                .context("FAN_PRE_ACCESS mark")?;
            sys::out(
                "icount-variant variant=key-on applicable=no reason=\"FAN_PRE_FAULT refused (EINVAL): no fault-time events in this kernel\" mark=\"FAN_PRE_ACCESS inode mark on another ext4\"",
            );
        }
        Err(e) => return Err(anyhow!("{e}")).context("FAN_PRE_FAULT mark"),
    }
    Ok(g)
}

/// The hsm-filled variant's marks: a FAN_PRE_ACCESS | FAN_PRE_FAULT
/// filesystem mark on the measured filesystems and an ignore mark of both on
/// the measured files.  None (after printing why) where FAN_PRE_FAULT is
/// refused.
fn hsm_filled(p: &Prog) -> Result<Option<Listener>> {
    let g = Listener::group()?;
    let mask = FAN_PRE_ACCESS | FAN_PRE_FAULT;
    let mut fss = vec![(p.layout.root.clone(), p.data_path())];
    if let (Some(d), Some(f)) = (&p.layout.dax, p.dax_path()) {
        // A filesystem of its own, or a directory of the measured one.
        fss.push((d.clone(), f));
    }
    let mut marked = 0;
    for (i, (mnt, file)) in fss.iter().enumerate() {
        let dev = std::fs::metadata(mnt)?.dev();
        if i > 0 && dev == std::fs::metadata(&fss[0].0)?.dev() {
            // Same filesystem: its mark is there already.
        } else {
            marked += 1;
            match g.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, mnt) {
                Ok(()) => {}
                Err(e) if i == 0 && e.errno() == Some(Errno::EINVAL) => {
                    // Which bit is refused?  (The group goes, and its marks.)
                    let why = match g.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_PRE_ACCESS, mnt)
                    {
                        Ok(()) => {
                            "FAN_PRE_FAULT refused (EINVAL): no fault-time events in this kernel"
                                .to_string()
                        }
                        Err(e2) => format!("{e}; FAN_PRE_ACCESS alone: {e2}"),
                    };
                    sys::out(&format!(
                        "icount-variant variant=hsm-filled applicable=no reason=\"{why}\""
                    ));
                    return Ok(None);
                }
                Err(e) => {
                    return Err(anyhow!("{e}")).with_context(|| format!("mark {}", mnt.display()))
                }
            }
        }
        g.mark(FAN_MARK_ADD | FAN_MARK_IGNORE_SURV, mask, file)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("ignore mark on {}", file.display()))?;
    }
    sys::out(&format!(
        "icount-variant variant=hsm-filled applicable=yes mark=\"FAN_PRE_ACCESS|FAN_PRE_FAULT filesystem mark, ignore mark on the measured files\" filesystems={marked} files={}",
        fss.len()
    ));
    Ok(Some(Listener::spawn(g)?))
}

/// The hsm-lazy variant's marks: a FAN_PRE_DIR_ACCESS filesystem mark on
/// the measured filesystem and an ignore mark of it on the directory
/// scenarios' directory and its subdirectory (populated directories of a
/// lazy tree).  None (after printing why) where FAN_PRE_DIR_ACCESS is
/// refused.
fn hsm_lazy(p: &Prog) -> Result<Option<Listener>> {
    let g = Listener::group()?;
    let root = &p.layout.root;
    match g.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_PRE_DIR_ACCESS, root) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            sys::out(
                "icount-variant variant=hsm-lazy applicable=no reason=\"FAN_PRE_DIR_ACCESS refused (EINVAL): no lazy directories in this kernel\"",
            );
            return Ok(None);
        }
        Err(e) => return Err(anyhow!("{e}")).with_context(|| format!("mark {}", root.display())),
    }
    let dir = p.dirops()?;
    for d in [dir.clone(), dir.join("sub")] {
        g.mark(FAN_MARK_ADD | FAN_MARK_IGNORE_SURV, FAN_PRE_DIR_ACCESS, &d)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("ignore mark on {}", d.display()))?;
    }
    sys::out(
        "icount-variant variant=hsm-lazy applicable=yes mark=\"FAN_PRE_DIR_ACCESS filesystem mark, ignore mark on the measured directories\"",
    );
    Ok(Some(Listener::spawn(g)?))
}

/// The block device under the measured ext4.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Device {
    /// /dev/pmem0 if it exists, else loop.
    Auto,
    /// /dev/pmem0 (boot with memmap=512M!1G), mounted -o dax=inode: a read
    /// completes in the faulting task (the pmem driver copies in
    /// submit_bio), no I/O thread, no context switch; the DAX file is in
    /// a directory with FS_XFLAG_DAX.
    Pmem,
    /// A loop device over an image on a tmpfs (reads go through the loop
    /// worker thread: noisier cold faults); the DAX file on a filesystem of
    /// its own on /dev/pmem0, if there is one.
    Loop,
}

const PMEM: &str = "/dev/pmem0";

/// Where the measured files are.
struct Layout {
    device: &'static str,
    /// The measured filesystem's root: `data` and `event` are there.
    root: PathBuf,
    /// The directory of the DAX file `data` (on the measured filesystem or
    /// one of its own).
    dax: Option<PathBuf>,
    /// Why there is no DAX file.
    no_dax: String,
}

/// Set FS_XFLAG_DAX on the directory `dir`: files made in it are DAX on an
/// ext4 mounted -o dax=inode.
fn set_dax_flag(dir: &Path) -> Result<()> {
    #[repr(C)]
    #[derive(Default)]
    struct Fsxattr {
        xflags: u32,
        extsize: u32,
        nextents: u32,
        projid: u32,
        cowextsize: u32,
        pad: [u8; 8],
    }
    const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
    const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
    const FS_XFLAG_DAX: u32 = 0x0000_8000;
    let d = File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    let mut x = Fsxattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills a struct fsxattr (28 bytes) we own.
    Errno::result(unsafe { libc::ioctl(d.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x) })
        .context("FS_IOC_FSGETXATTR")?;
    x.xflags |= FS_XFLAG_DAX;
    // SAFETY: FS_IOC_FSSETXATTR reads the struct.
    Errno::result(unsafe { libc::ioctl(d.as_raw_fd(), FS_IOC_FSSETXATTR, &x) })
        .context("FS_IOC_FSSETXATTR FS_XFLAG_DAX")?;
    Ok(())
}

impl Layout {
    fn new(device: Device, opts: &str, scratch: &Path, mounts: &mut Mounts) -> Result<Layout> {
        let pmem = Path::new(PMEM);
        let device = match device {
            Device::Auto if pmem.exists() => Device::Pmem,
            Device::Auto => Device::Loop,
            d => d,
        };
        let root = scratch.join("mnt");
        let (device, dax, no_dax) = if device == Device::Pmem {
            if !pmem.exists() {
                bail!("--device pmem: no {PMEM} (boot with memmap=512M!1G)");
            }
            mkfs_ext4(pmem)?;
            let o = format!("dax=inode,{opts}");
            mounts.mount(&["-t", "ext4", "-o", &o], pmem, &root)?;
            let d = root.join("dax");
            std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
            let r = set_dax_flag(&d)
                .and_then(|()| pattern_file(&d.join("data"), SMALL_SIZE))
                .and_then(|()| is_dax(&d.join("data")));
            let (dax, no_dax) = match r {
                Ok(true) => (Some(d), String::new()),
                Ok(false) => (
                    None,
                    format!(
                        "a file of an FS_XFLAG_DAX directory on {PMEM} -o dax=inode is not DAX"
                    ),
                ),
                Err(e) => (None, format!("DAX setup failed: {e:#}")),
            };
            ("pmem", dax, no_dax)
        } else {
            let img = scratch.join("ext4.img");
            ext4_image(&img, 512 << 20)?;
            let o = format!("loop,{opts}");
            mounts.mount(&["-t", "ext4", "-o", &o], &img, &root)?;
            let (dax, no_dax) = if !pmem.exists() {
                (None, format!("no {PMEM} (boot with memmap=512M!1G)"))
            } else {
                let d = scratch.join("dax");
                let r = mkfs_ext4(pmem)
                    .and_then(|()| {
                        let o = format!("dax,{opts}");
                        mounts.mount(&["-t", "ext4", "-o", &o], pmem, &d)
                    })
                    .and_then(|()| pattern_file(&d.join("data"), SMALL_SIZE))
                    .and_then(|()| is_dax(&d.join("data")));
                match r {
                    Ok(true) => (Some(d), String::new()),
                    Ok(false) => (None, format!("files on {PMEM} -o dax are not DAX")),
                    Err(e) => (None, format!("DAX setup failed: {e:#}")),
                }
            };
            ("loop", dax, no_dax)
        };
        pattern_file(&root.join("data"), DATA_SIZE)?;
        pattern_file(&root.join("event"), SMALL_SIZE)?;
        if is_dax(&root.join("data"))? {
            bail!(
                "{} is DAX: it must use the page cache",
                root.join("data").display()
            );
        }
        Ok(Layout {
            device,
            root,
            dax,
            no_dax,
        })
    }
}

/// Run without address-space randomisation: re-execute this program with
/// the ADDR_NO_RANDOMIZE personality unless it has it.  Where the mappings
/// and buffers are moved some counts by a few instructions from one boot
/// to the next (fault-around by up to 14, a DAX fault by 12, on the debug
/// kernel); with fixed addresses they stay put.
fn no_aslr() -> Result<()> {
    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
    // SAFETY: 0xffffffff queries the personality without changing it.
    let cur = unsafe { libc::personality(0xffff_ffff) };
    if cur < 0 {
        say!("icount: cannot read the personality: ASLR stays on");
        return Ok(());
    }
    if cur as libc::c_ulong & ADDR_NO_RANDOMIZE != 0 {
        return Ok(());
    }
    // SAFETY: sets a flag that takes effect at the next execve.
    if unsafe { libc::personality(cur as libc::c_ulong | ADDR_NO_RANDOMIZE) } < 0 {
        say!("icount: cannot set ADDR_NO_RANDOMIZE: ASLR stays on");
        return Ok(());
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let err = Command::new("/proc/self/exe").arg0(arg0).args(args).exec();
    Err(err).context("re-execute /proc/self/exe without ASLR")
}

pub fn run(plan: &Plan) -> Result<()> {
    no_aslr()?;
    let uname = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a query, as above.
    let aslr = unsafe { libc::personality(0xffff_ffff) } & 0x0040000 == 0;
    sys::out(&format!(
        "icount-info kernel={uname} cpus={cpus} windows={} warmup={} aslr={}",
        plan.windows,
        plan.warmup,
        if aslr { "on" } else { "off" }
    ));
    if cpus != 1 {
        say!("icount: {cpus} CPUs: the plugin's counters race; boot with one (vm-run.sh --cpus 1)");
    }
    let mut mounts = Mounts::default();
    let scratch = &plan.scratch;
    if scratch.exists() {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(scratch)
            .stderr(std::process::Stdio::null())
            .status();
    }
    mounts.mount(
        &["-t", "tmpfs", "-o", "size=1G"],
        Path::new("tmpfs"),
        scratch,
    )?;
    let layout = Layout::new(plan.device, &plan.mount_options, scratch, &mut mounts)?;
    sys::out(&format!(
        "icount-info device={} dax={} mount_options={}",
        layout.device,
        if layout.dax.is_some() { "yes" } else { "no" },
        plan.mount_options
    ));
    let _quiet = Quiet::new();
    let mut p = Prog {
        plan,
        marks: 0,
        layout,
        fault_around: fault_around(),
        variant: Variant::None,
        listener: None,
    };
    p.quiet();
    p.calibration();
    let mut groups = Vec::new();
    for &v in &plan.variants {
        p.variant = v;
        match v {
            Variant::None => {}
            Variant::KeyOn => groups.push(key_on(scratch, &mut mounts).context("key-on")?),
            Variant::HsmFilled => match hsm_filled(&p).context("hsm-filled")? {
                Some(l) => p.listener = Some(l),
                // Not applicable: said so in the icount-variant line.
                None => continue,
            },
            Variant::HsmLazy => match hsm_lazy(&p).context("hsm-lazy")? {
                Some(l) => p.listener = Some(l),
                None => continue,
            },
        }
        say!("variant {}", v.name());
        p.variant_run()
            .with_context(|| format!("variant {}", v.name()))?;
    }
    if let Some(l) = &p.listener {
        sys::out(&format!("icount-info listener_events={}", l.events()));
    }
    sys::out(&format!("icount-done marks={}", p.marks));
    drop(groups);
    Ok(())
}
