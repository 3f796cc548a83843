//! Helpers shared by the tests: pattern files, a pre-content listener thread,
//! feature probes.

use fanotify::consts::*;
use fanotify::{Event, Fanotify, Range, Response};
use ltp::res::OrBrok;
use ltp::{tconf, tinfo};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The page size, [`ltp::getpagesize()`] (never a hard-coded 4096).
pub fn page_size() -> u64 {
    ltp::getpagesize()
}

/// The byte at file offset `off` of a pattern file: the one fill pattern of
/// the project, [`hsm::pattern`] (splitmix64 of each 8-byte word's index), so
/// a page mapped at the wrong offset anywhere in the file, a zero page or a
/// stale page is always noticed.
pub fn pattern_byte(off: u64) -> u8 {
    hsm::pattern::byte_at(off)
}

/// The pattern bytes of `off..off + len`.
pub fn pattern(off: u64, len: usize) -> Vec<u8> {
    hsm::pattern::bytes(off, len)
}

/// First offset (relative to `off`) where `buf` differs from the pattern.
pub fn pattern_mismatch(off: u64, buf: &[u8]) -> Option<usize> {
    hsm::pattern::mismatch(off, buf)
}

/// A file of `size` bytes holding the pattern ([`hsm::pattern::write_file`]).
pub fn create_pattern_file(path: &Path, size: u64) {
    let mut f = std::fs::File::create(path).or_brok(&format!("create {}", path.display()));
    hsm::pattern::write_file(&mut f, size).or_brok("write pattern");
    f.sync_all().or_brok("fsync");
}

/// A sparse file of `size` bytes: what an HSM stub looks like before it is
/// filled.
pub fn create_sparse_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).or_brok(&format!("create {}", path.display()));
    f.set_len(size).or_brok("ftruncate");
}

/// Drop the page cache of `path` (fsync, then clean pages) so the next
/// access must read: [`hsm::cache::drop_file`], the one cache-drop helper.
pub fn drop_cache(path: &Path) {
    let f = std::fs::File::open(path).or_brok("open for fadvise");
    hsm::cache::drop_file(&f).or_brok("fsync and fadvise DONTNEED");
}

/// The filesystems that support pre-content marks (SB_I_ALLOW_HSM), by
/// statfs(2) f_type: the name of the one `path` is on, if it is one of them.
pub fn hsm_filesystem(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    let t = statfs(path)
        .or_brok(&format!("statfs {}", path.display()))
        .filesystem_type();
    [
        (EXT4_SUPER_MAGIC, "ext4"),
        (XFS_SUPER_MAGIC, "xfs"),
        (BTRFS_SUPER_MAGIC, "btrfs"),
    ]
    .into_iter()
    .find(|(m, _)| *m == t)
    .map(|(_, n)| n)
}

/// A pre-content group with `mask` marked on `path` (inode mark unless
/// `flags` says otherwise).  TCONF when the kernel lacks pre-content events
/// (or FAN_PRE_FAULT) or the filesystem is not one that supports them;
/// EOPNOTSUPP on ext4, xfs or btrfs, which do, is a failure.
pub fn pre_content_group(path: &Path, flags: u32, mask: u64) -> Fanotify {
    let g = match Fanotify::init(
        FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC,
        (libc::O_RDWR | libc::O_LARGEFILE) as u32,
    ) {
        Ok(g) => g,
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            tconf!("FAN_CLASS_PRE_CONTENT not supported: {e}")
        }
        Err(e) => ltp::tbrok!("fanotify_init: {e}"),
    };
    match g.mark(FAN_MARK_ADD | flags, mask, path) {
        Ok(()) => g,
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => match hsm_filesystem(path) {
            Some(fs) => ltp::res::report_exit(
                ltp::ResKind::Fail,
                format_args!("{fs} supports pre-content marks, but the mark failed: {e}"),
            ),
            None => tconf!("filesystem has no pre-content support: {e}"),
        },
        Err(e) if e.errno() == Some(Errno::EINVAL) && mask & FAN_PRE_FAULT != 0 => {
            tconf!("kernel does not know this pre-content mask {mask:#x}: {e}")
        }
        Err(e) => ltp::tbrok!("fanotify_mark: {e}"),
    }
}

/// The (mask, ignored mask) of each mark of `g`, from /proc/self/fdinfo.
pub fn marks_of(g: &Fanotify) -> Vec<(u64, u64)> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", g.as_raw_fd()))
        .or_brok("read the group's fdinfo");
    let hex = |l: &str, key: &str| {
        l.split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
    };
    info.lines()
        .filter(|l| l.starts_with("fanotify "))
        .filter_map(|l| Some((hex(l, "mask:")?, hex(l, "ignored_mask:")?)))
        .collect()
}

/// What the listener saw of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub mask: u64,
    pub range: Option<Range>,
    pub pid: i32,
}

/// What the handler is told about an event, and may use to fill the file.
pub struct EventCtx<'a> {
    pub event: &'a Event,
}

impl EventCtx<'_> {
    /// Fill the event's range with the pattern through the event fd (which
    /// never generates events itself).
    pub fn fill_range(&self) -> std::io::Result<()> {
        let (Some(fd), Some(r)) = (&self.event.fd, self.event.range()) else {
            return Ok(());
        };
        let size = nix::sys::stat::fstat(fd.as_raw_fd())?.st_size as u64;
        let end = (r.offset + r.count).min(size);
        if end > r.offset {
            let buf = pattern(r.offset, (end - r.offset) as usize);
            nix::sys::uio::pwrite(fd.as_fd(), &buf, r.offset as i64)?;
        }
        Ok(())
    }
}

type Handler = Box<dyn FnMut(&EventCtx<'_>) -> Response + Send>;

/// A thread answering the events of a group.
pub struct Listener {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(group: Fanotify, mut handler: Handler) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st2.load(Ordering::SeqCst) {
                let events = match group.wait_events(Duration::from_millis(50)) {
                    Ok(e) => e,
                    Err(e) => {
                        ltp::tfail!("listener: reading events: {e}");
                        return;
                    }
                };
                for ev in events {
                    s2.lock().unwrap().push(Seen {
                        mask: ev.mask,
                        range: ev.range(),
                        pid: ev.pid,
                    });
                    let resp = handler(&EventCtx { event: &ev });
                    if let (true, Some(fd)) = (ev.needs_response(), &ev.fd) {
                        if let Err(e) = group.respond(fd.as_fd(), resp) {
                            ltp::tfail!("listener: respond {resp:?}: {e}");
                        }
                    }
                }
            }
        });
        Listener {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// A listener that fills every requested range with the bytes of
    /// `source` at the same offsets (a copy of a real file: a program) and
    /// allows; a failed fill is denied with EIO.
    pub fn copying(group: Fanotify, source: Arc<Vec<u8>>) -> Self {
        Self::start(
            group,
            Box::new(move |ctx| {
                let (Some(fd), Some(r)) = (&ctx.event.fd, ctx.event.range()) else {
                    return Response::Allow;
                };
                let end = (r.offset + r.count).min(source.len() as u64) as usize;
                let start = (r.offset as usize).min(end);
                match nix::sys::uio::pwrite(fd.as_fd(), &source[start..end], start as i64) {
                    Ok(_) => Response::Allow,
                    Err(_) => Response::DenyErrno(libc::EIO),
                }
            }),
        )
    }

    /// A listener that fills every requested range with the pattern and allows.
    pub fn filling(group: Fanotify) -> Self {
        Self::start(
            group,
            Box::new(|ctx| match ctx.fill_range() {
                Ok(()) => Response::Allow,
                Err(e) => {
                    ltp::tfail!("listener: fill: {e}");
                    Response::DenyErrno(libc::EIO)
                }
            }),
        )
    }

    /// A listener that answers every event with `resp`.
    pub fn answering(group: Fanotify, resp: Response) -> Self {
        Self::start(group, Box::new(move |_| resp))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Log the events seen, for the record.
pub fn log_seen(what: &str, seen: &[Seen]) {
    for s in seen {
        tinfo!(
            "{what}: mask={:#x} range={:?} pid={}",
            s.mask,
            s.range,
            s.pid
        );
    }
}

/// Marks for fault-time (lazy) pre-content events: FAN_PRE_ACCESS for
/// read()/write() plus FAN_PRE_FAULT.  TCONF on kernels without the series.
pub fn lazy_group(path: &Path, flags: u32) -> Fanotify {
    pre_content_group(path, flags, FAN_PRE_ACCESS | FAN_PRE_FAULT)
}

/// A file mapping, unmapped on drop: the one mmap wrapper of the selftests
/// (`Map::new(file, first page, pages, prot, flags)`, pages of
/// [`page_size()`]), shared with hsm-validate and fpc-bench.
pub use hsm::map::Map;

/// What a mark-validation row marks (pre_access_mark_errors,
/// pre_fault_mark_validation).
#[derive(Clone, Copy)]
pub enum Obj {
    File,
    Dir,
    Fifo,
    /// The test filesystem's mount point (for filesystem and mount marks).
    Mnt,
    /// A file on a tmpfs, which has no pre-content support.
    TmpfsFile,
}

/// The objects of [`Obj`], made in the test directory: a sparse file of
/// `file_size` bytes, a directory, a fifo, and a one-page file on a tmpfs
/// mounted for the test (unmounted on drop).
pub struct MarkObjects {
    pub file: std::path::PathBuf,
    dir: std::path::PathBuf,
    fifo: std::path::PathBuf,
    mnt: std::path::PathBuf,
    tfile: std::path::PathBuf,
    _tmpfs: ltp::fs::Mounted,
}

impl MarkObjects {
    pub fn new(ctx: &ltp::Ctx, file_size: u64) -> Self {
        let file = ctx.path("file");
        create_sparse_file(&file, file_size);
        let dir = ctx.path("dir");
        std::fs::create_dir(&dir).or_brok("mkdir");
        let fifo = ctx.path("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .or_brok("mkfifo");
        let tmnt = ctx.path("tmpfs");
        let tmpfs = ltp::Fs::Tmpfs.mount(&ctx.mnt, &tmnt).or_brok("mount tmpfs");
        let tfile = tmnt.join("file");
        create_sparse_file(&tfile, page_size());
        MarkObjects {
            file,
            dir,
            fifo,
            mnt: ctx.mnt.clone(),
            tfile,
            _tmpfs: tmpfs,
        }
    }

    pub fn path(&self, o: Obj) -> &Path {
        match o {
            Obj::File => &self.file,
            Obj::Dir => &self.dir,
            Obj::Fifo => &self.fifo,
            Obj::Mnt => &self.mnt,
            Obj::TmpfsFile => &self.tfile,
        }
    }
}

/// Does `r` contain the byte at `off`?
pub fn covers(r: &Range, off: u64) -> bool {
    r.offset <= off && off < r.offset + r.count
}

/// Run `f` in a forked child; return how it ended.
pub fn in_child(f: impl FnOnce() -> i32) -> nix::sys::wait::WaitStatus {
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child runs f and _exit()s; f must not rely on other threads.
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            let code = f();
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None).or_brok("waitpid"),
    }
}

/// A sparse stub of `size` bytes watched lazily (FAN_PRE_ACCESS |
/// FAN_PRE_FAULT inode mark) by a listener that fills what it is asked for,
/// opened read-only and mapped whole.  Fields drop in order: mapping first.
pub struct LazyStub {
    pub map: Map,
    pub file: std::fs::File,
    pub listener: Listener,
}

impl LazyStub {
    pub fn new(path: &Path, size: u64, flags: MapFlags) -> Self {
        create_sparse_file(path, size);
        let listener = Listener::filling(lazy_group(path, FAN_MARK_INODE));
        let file = std::fs::File::open(path).or_brok("open stub");
        let map = Map::new(&file, 0, size / page_size(), ProtFlags::PROT_READ, flags)
            .or_brok("mmap stub");
        LazyStub {
            map,
            file,
            listener,
        }
    }
}

/// A sparse stub of `size` bytes at `path` watched lazily (FAN_PRE_ACCESS |
/// FAN_PRE_FAULT inode mark) by a listener that fills what it is asked for,
/// opened read-write (for the rows that map and do I/O on it themselves).
pub fn lazy_stub_rw(path: &Path, size: u64) -> (Listener, std::fs::File) {
    create_sparse_file(path, size);
    let l = Listener::filling(lazy_group(path, FAN_MARK_INODE));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_brok("open the stub");
    (l, file)
}

/// Flags of the page frames behind a process's mappings: /proc/self/pagemap
/// gives the frame of a virtual page, /proc/kpageflags its KPF_* bits.
/// Needs root (pagemap hides frame numbers otherwise).
pub struct PageFlags {
    pagemap: std::fs::File,
    kflags: std::fs::File,
}

/// KPF_RECLAIM: PG_reclaim, the bit PG_readahead shares.
pub const KPF_RECLAIM: u64 = 1 << 9;
/// KPF_COMPOUND_HEAD and KPF_COMPOUND_TAIL: a page of a large folio.
pub const KPF_COMPOUND: u64 = 1 << 15 | 1 << 16;

impl PageFlags {
    pub fn open() -> Self {
        PageFlags {
            pagemap: std::fs::File::open("/proc/self/pagemap").or_brok("open /proc/self/pagemap"),
            kflags: std::fs::File::open("/proc/kpageflags").or_brok("open /proc/kpageflags"),
        }
    }

    /// The KPF_* flags of the frame mapped at `page` of `m`; None if the
    /// page is not mapped.
    pub fn of(&self, m: &Map, page: u64) -> Option<u64> {
        let mut e = [0u8; 8];
        self.pagemap
            .read_exact_at(&mut e, m.addr(page) as u64 / page_size() * 8)
            .or_brok("read /proc/self/pagemap");
        let e = u64::from_le_bytes(e);
        if e >> 63 == 0 {
            return None;
        }
        let mut f = [0u8; 8];
        self.kflags
            .read_exact_at(&mut f, (e & ((1 << 55) - 1)) * 8)
            .or_brok("read /proc/kpageflags");
        Some(u64::from_le_bytes(f))
    }
}

/// Restore the default action of SIGBUS.  Rust's runtime handles SIGBUS (to
/// report stack overflows) and, for a fault outside a stack guard, restores
/// the default and returns, so the faulting access runs again as a new fault:
/// a process that must end with the first fault's SIGBUS calls this first.
pub fn default_sigbus() {
    // SAFETY: installs the default action, no handler code.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGBUS,
            nix::sys::signal::SigHandler::SigDfl,
        )
    }
    .or_brok("signal(SIGBUS, SIG_DFL)");
}

/// Pages of `[off, off + len)` of `f` in the page cache (cachestat(2), which
/// neither maps nor reads the file); TBROK if cachestat fails.
pub fn cached(f: &std::fs::File, off: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    hsm::cache::cached_pages(f, off, len).or_brok("cachestat")
}

/// Pages of `[0, size)` of `f` in the page cache outside the union of
/// `ranges` (byte ranges, e.g. the ranges events announced).
pub fn cached_outside(f: &std::fs::File, ranges: &[Range], size: u64) -> u64 {
    let mut rs = ranges.to_vec();
    rs.sort_by_key(|r| r.offset);
    let (mut pos, mut n) = (0, 0);
    for r in rs {
        if r.offset > pos {
            n += cached(f, pos, (r.offset - pos).min(size.saturating_sub(pos)));
        }
        pos = pos.max(r.offset + r.count);
    }
    n + cached(f, pos, size.saturating_sub(pos))
}

/// How many of the `seen` events are FAN_PRE_FAULT with a range covering
/// the byte at `off`.
pub fn fault_events_covering(seen: &[Seen], off: u64) -> usize {
    seen.iter()
        .filter(|s| s.mask == FAN_PRE_FAULT && s.range.is_some_and(|r| covers(&r, off)))
        .count()
}

/// struct io_event of <linux/aio_abi.h> (libc has no binding for it).
#[repr(C)]
#[derive(Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// io_submit(2) of one IOCB_CMD_PREAD of `len` bytes at offset `off` of `fd`
/// into `m` from its page `page`, on a context of its own, waited for: the
/// completion's result (a count or a negative errno), or what io_submit said
/// as `"io_submit: {error}"`.  TBROK if io_setup or io_getevents fails.
pub fn aio_pread(fd: RawFd, m: &Map, page: u64, len: usize, off: u64) -> Result<i64, String> {
    assert!(page * page_size() + len as u64 <= m.len as u64);
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup(2) writes the context id into `ctx`.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx as *mut libc::c_ulong) };
    if r != 0 {
        ltp::tbrok!("io_setup: {}", std::io::Error::last_os_error());
    }
    // SAFETY: iocb is plain data; all-zero is a valid (empty) request.
    let mut cb: libc::iocb = unsafe { std::mem::zeroed() };
    cb.aio_lio_opcode = 0; // IOCB_CMD_PREAD
    cb.aio_fildes = fd as u32;
    cb.aio_buf = m.addr(page) as u64;
    cb.aio_nbytes = len as u64;
    cb.aio_offset = off as i64;
    let mut cbs = [&mut cb as *mut libc::iocb];
    // SAFETY: one valid iocb whose buffer lies inside the mapping `m`, which
    // outlives the request (we wait for its completion below).
    let n = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, cbs.as_mut_ptr()) };
    let res = if n != 1 {
        Err(format!("io_submit: {}", std::io::Error::last_os_error()))
    } else {
        let mut ev = IoEvent::default();
        // SAFETY: room for one event; no timeout (the test timeout bounds it).
        let got = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                ctx,
                1,
                1,
                &mut ev as *mut IoEvent,
                std::ptr::null_mut::<libc::timespec>(),
            )
        };
        if got != 1 {
            ltp::tbrok!("io_getevents: {}", std::io::Error::last_os_error());
        }
        Ok(ev.res)
    };
    // SAFETY: the context has no request in flight.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    res
}

/// One io_uring request on a fresh ring; its completion's result.
///
/// # Safety
///
/// The buffers and descriptors `sqe` names must stay valid until the
/// request completes, which this waits for.
pub unsafe fn uring_one(sqe: io_uring::squeue::Entry) -> i32 {
    let mut ring = match io_uring::IoUring::new(2) {
        Ok(r) => r,
        Err(e) => ltp::tbrok!("io_uring_setup: {e}"),
    };
    // SAFETY: the caller's buffer and fd outlive the request: we wait for
    // its completion here.
    unsafe { ring.submission().push(&sqe).or_brok("push the SQE") };
    ring.submit_and_wait(1).or_brok("io_uring_enter");
    let Some(cqe) = ring.completion().next() else {
        ltp::tbrok!("io_uring: no completion")
    };
    cqe.result()
}

/// io_uring IORING_OP_READ of `len` bytes at offset `off` of `fd` into `m`
/// from its page `page`: the completion's result.
pub fn uring_pread(fd: RawFd, m: &Map, page: u64, len: u32, off: u64) -> i32 {
    use io_uring::{opcode, types};
    assert!(page * page_size() + u64::from(len) <= m.len as u64);
    let sqe = opcode::Read::new(types::Fd(fd), m.addr(page), len)
        .offset(off)
        .build();
    // SAFETY: the buffer lies inside the mapping `m`, which the caller holds
    // (and `fd` open) until uring_one() returns with the completion.
    unsafe { uring_one(sqe) }
}

/// The read_ahead_kb file of the bdi that files of the `fs` filesystem
/// mounted at `mnt` read ahead with: its loop device's queue, or btrfs's own
/// bdi (found through /sys/fs/btrfs/*/devices).  A file takes its window from
/// it when it is opened.
pub fn read_ahead_kb_file(fs: ltp::Fs, mnt: &Path) -> std::path::PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").or_brok("read mountinfo");
    let want = mnt.to_string_lossy();
    let source = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            (point == want).then(|| post.split_whitespace().nth(1).map(str::to_string))?
        })
        .next_back()
        .unwrap_or_else(|| ltp::tbrok!("{} is not in /proc/self/mountinfo", mnt.display()));
    let dev = source.trim_start_matches("/dev/").to_string();
    if fs != ltp::Fs::Btrfs {
        return std::path::PathBuf::from(format!("/sys/block/{dev}/queue/read_ahead_kb"));
    }
    for d in std::fs::read_dir("/sys/fs/btrfs")
        .or_brok("read /sys/fs/btrfs")
        .flatten()
    {
        if d.path().join("devices").join(&dev).exists() {
            return d.path().join("bdi").join("read_ahead_kb");
        }
    }
    ltp::tbrok!("no /sys/fs/btrfs/*/devices/{dev}")
}

/// A read or write syscall's return value checked for a full count: its
/// errno (read right after the call) or a short count as the error.
pub fn full_count(n: isize, what: &str, want: u64) -> Result<(), String> {
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("{what} of {want} bytes failed: {e}"));
    }
    if n as u64 != want {
        return Err(format!("{what} returned {n}, not {want}"));
    }
    Ok(())
}
