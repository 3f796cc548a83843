//! pre_fault_matrix: every way a page of a lazy (FAN_PRE_FAULT) mapping can
//! be faulted in, with an HSM listener that fills and allows, and the
//! documented outcome of each: content correct with exactly one
//! FAN_PRE_FAULT covering the page (or the documented errno where a fault
//! cannot wait), never a hang.  Rows (case numbers):
//!
//! - 0, 1: user read fault, MAP_SHARED and MAP_PRIVATE.
//! - 2, 3: "write fault", MAP_SHARED and MAP_PRIVATE (COW): a load faults
//!   the page in, then a store of the same byte (a write-protect fault).
//! - 4: write(2) from the mapping.  5: read(2) into a private mapping.
//! - 6: MADV_POPULATE_READ.  7: O_DIRECT read into the mapping.
//! - 8: process_vm_readv.
//! - 9, 10: /proc/pid/mem and ptrace(PEEKDATA): cannot retry, EIO, no event.
//! - 11: fork, then a fault in the child.
//! - 12: a fault from a second thread (per-VMA lock).
//! - 13, 14: a write fault whose first access to the page is a store,
//!   MAP_SHARED and MAP_PRIVATE (COW): the stored byte holds what was
//!   stored, the rest of the page the pattern; one event.
//! - 15, 16: mmap(MAP_POPULATE) of the whole file, MAP_SHARED and
//!   MAP_PRIVATE writable (COW); 17, 18: mlock(2) of 40 pages from the test
//!   page, MAP_SHARED and MAP_PRIVATE writable.  Populating faults may drop
//!   the mmap lock, so they wait for the listener ("Faults that cannot wait"
//!   in the doc is only about those that may not): every page is filled,
//!   and the events are exactly one per readahead window from the first
//!   populated page (each fault reads exactly its event's range, which ends
//!   at the window, EOF or a cached page), not one per page; they all come
//!   while populating, and touching the pages afterwards sends none more.
//! - 19-22: io_submit(2) (buffered, O_DIRECT) and io_uring (buffered,
//!   O_DIRECT) reads of another, regular file into the mapping (MAP_PRIVATE
//!   writable): the page fault inside the read is refused, the VFS faults
//!   the buffer in outside the filesystem (one event) and calls again
//!   (patches/0013; "Reading or writing with a buffer in a lazy mapping" in
//!   the doc).
//!
//! FAULT_FLAG_RETRY_NOWAIT has no userspace trigger here; its behaviour is
//! covered by review.  MADV_POPULATE_READ's denied case is in pre_fault_deny.
//! Reads and writes of the lazy file itself with the buffer in its own
//! mapping are in pre_fault_same_file.
//!
//! Guards the cover letter's fault-path matrix, row by row, and what
//! Documentation/filesystems/fanotify-pre-fault.rst says of the event range
//! and of reads with a buffer in a lazy mapping.

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::wait::WaitStatus;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::RawFd;

pub const TEST: Test = Test {
    name: "pre_fault_matrix",
    doc: "fault-path matrix: each access path to a lazy mapping gets its documented outcome",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_AIO",
        "CONFIG_IO_URING",
    ],
    filesystems: &[Fs::Ext4, Fs::Xfs],
    tags: &[
        ("cover-letter", "Fault-path matrix"),
        (
            "cover-letter",
            "Design: reads and writes fault lazy buffers in outside their locks",
        ),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    // Each row is a case (fpc-tests pre_fault_matrix:N runs row N alone): a
    // row that hangs or breaks ends only itself, with this timeout.
    timeout: std::time::Duration::from_secs(60),
    setup: Some(setup),
    tcnt: ROWS.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

/// What a row should give.  The row returns the bytes of PAGE_IDX, or of
/// pages `first..first + pages` for `Windows`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Content correct, one FAN_PRE_FAULT, covering PAGE_IDX.
    Filled,
    /// The first access was a store of `stored_byte()` at byte STORE_AT of
    /// PAGE_IDX: that byte holds it, the rest of the page the pattern; one
    /// FAN_PRE_FAULT, covering PAGE_IDX.
    Stored,
    /// The kernel faulted in pages `first..first + pages` one after the
    /// other (populate): content correct, and the FAN_PRE_FAULT ranges are
    /// exactly the windows of `event_windows()`.
    Windows { first: u64, pages: u64 },
    /// Fails with this errno and sends no event (cannot wait for a listener).
    Errno(i32),
}

type Row = (&'static str, Want, fn(&Setup) -> Result<Vec<u8>, i32>);

struct Setup<'a> {
    /// The row's filling listener, for rows that look at events midway.
    listener: &'a Listener,
    file: std::fs::File,
    page: u64,
    src: std::path::PathBuf,
    dio_src: std::path::PathBuf,
}

const PAGES: u64 = 64;
const PAGE_IDX: u64 = 21;
/// The byte of PAGE_IDX the store-first rows store to.
const STORE_AT: usize = 100;
/// The pages the mlock rows lock, from PAGE_IDX: more than one readahead
/// window (32 pages here), ending before EOF.
const MLOCK_PAGES: u64 = 40;

fn map(s: &Setup, prot: ProtFlags, flags: MapFlags) -> Map {
    Map::new(&s.file, 0, PAGES, prot, flags).or_brok("mmap")
}

fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn user_read_shared(s: &Setup) -> Result<Vec<u8>, i32> {
    Ok(map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).read_page(s.page))
}

fn user_read_private(s: &Setup) -> Result<Vec<u8>, i32> {
    Ok(map(s, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE).read_page(s.page))
}

/// Rows 2-3: a load faults the page in (the event), then a store of the
/// same byte (a write-protect fault, or COW of the cached page).
fn write_fault(s: &Setup, flags: MapFlags) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags);
    let p = m.addr(s.page);
    // SAFETY: writable mapping we own: store the byte that is already
    // there (after faulting) so content stays the pattern.
    unsafe {
        let b = std::ptr::read_volatile(p.add(100));
        std::ptr::write_volatile(p.add(100), b);
    }
    Ok(m.read_page(s.page))
}

fn write_fault_shared(s: &Setup) -> Result<Vec<u8>, i32> {
    write_fault(s, MapFlags::MAP_SHARED)
}

fn write_fault_private(s: &Setup) -> Result<Vec<u8>, i32> {
    write_fault(s, MapFlags::MAP_PRIVATE)
}

fn write_from_mapping(s: &Setup) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let (r, w) = nix::unistd::pipe().or_brok("pipe");
    let page =
        &m.as_slice()[(s.page * page_size()) as usize..((s.page + 1) * page_size()) as usize];
    nix::unistd::write(&w, page).map_err(|e| e as i32)?;
    let mut out = vec![0u8; page_size() as usize];
    nix::unistd::read(r.as_raw_fd(), &mut out).or_brok("read pipe");
    Ok(out)
}

fn read_into_private(s: &Setup) -> Result<Vec<u8>, i32> {
    // read(2) of a (pattern) source into the mapping: the COW fault must
    // read the lazy page first; afterwards the page holds the source bytes,
    // which are the same pattern at the same offset.
    let m = map(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    );
    let src = std::fs::File::open(&s.src).or_brok("open src");
    // SAFETY: reading into our own writable private mapping, one page.
    let n = unsafe {
        libc::pread(
            src.as_raw_fd(),
            m.addr(s.page).cast(),
            100,
            (s.page * page_size()) as i64,
        )
    };
    ret_of(n)?;
    Ok(m.read_page(s.page))
}

fn madv_populate_read(s: &Setup) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    // SAFETY: advice on our own mapping.
    let r = unsafe {
        libc::madvise(
            m.addr(s.page).cast(),
            page_size() as usize,
            libc::MADV_POPULATE_READ,
        )
    };
    ret_of(r as isize)?;
    Ok(m.read_page(s.page))
}

fn odirect_into_mapping(s: &Setup) -> Result<Vec<u8>, i32> {
    let m = map(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    );
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&s.dio_src)
        .or_brok("open O_DIRECT");
    // SAFETY: page-aligned, page-sized buffer inside our writable mapping.
    let buf = unsafe { std::slice::from_raw_parts_mut(m.addr(s.page), page_size() as usize) };
    src.read_exact_at(buf, s.page * page_size())
        .map_err(errno_of)?;
    Ok(m.read_page(s.page))
}

fn ret_of(n: isize) -> Result<(), i32> {
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    } else {
        Ok(())
    }
}

/// Read the page of a child's mapping from outside, with `how`.
fn from_other_process(
    s: &Setup,
    how: fn(i32, usize) -> Result<Vec<u8>, i32>,
) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let addr = m.addr(s.page) as usize;
    let (r, w) = nix::unistd::pipe().or_brok("pipe");
    let (r2, w2) = nix::unistd::pipe().or_brok("pipe");
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child only waits on a pipe and exits.
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            drop(w);
            drop(r2);
            let mut b = [0u8; 1];
            let _ = nix::unistd::write(&w2, b"r");
            let _ = nix::unistd::read(r.as_raw_fd(), &mut b);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(r);
            drop(w2);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(r2.as_raw_fd(), &mut b);
            let res = how(child.as_raw(), addr);
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            res
        }
    }
}

fn vm_readv(pid: i32, addr: usize) -> Result<Vec<u8>, i32> {
    let mut out = vec![0u8; page_size() as usize];
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut _,
        iov_len: out.len(),
    };
    // SAFETY: both iovecs describe live buffers of the given length.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n != page_size() as isize {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    Ok(out)
}

fn proc_mem(pid: i32, addr: usize) -> Result<Vec<u8>, i32> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).or_brok("open /proc/pid/mem");
    let mut out = vec![0u8; page_size() as usize];
    f.read_exact_at(&mut out, addr as u64).map_err(errno_of)?;
    Ok(out)
}

fn ptrace_peek(pid: i32, addr: usize) -> Result<Vec<u8>, i32> {
    use nix::sys::ptrace;
    let pid = nix::unistd::Pid::from_raw(pid);
    ptrace::attach(pid).map_err(|e| e as i32)?;
    let _ = nix::sys::wait::waitpid(pid, None);
    let mut out = Vec::new();
    let mut res = Ok(());
    for i in 0..(page_size() as usize / 8) {
        match ptrace::read(pid, (addr + i * 8) as ptrace::AddressType) {
            Ok(w) => out.extend_from_slice(&w.to_ne_bytes()),
            Err(e) => {
                res = Err(e as i32);
                break;
            }
        }
    }
    let _ = ptrace::detach(pid, None);
    res.map(|_| out)
}

fn row_vm_readv(s: &Setup) -> Result<Vec<u8>, i32> {
    from_other_process(s, vm_readv)
}

fn row_proc_mem(s: &Setup) -> Result<Vec<u8>, i32> {
    from_other_process(s, proc_mem)
}

fn row_ptrace(s: &Setup) -> Result<Vec<u8>, i32> {
    from_other_process(s, ptrace_peek)
}

fn fork_child_fault(s: &Setup) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_PRIVATE);
    let (r, w) = nix::unistd::pipe().or_brok("pipe");
    let page = s.page;
    let st = in_child(|| {
        let d = m.read_page(page);
        let _ = nix::unistd::write(&w, &d);
        0
    });
    drop(w);
    if st != WaitStatus::Exited(st.pid().unwrap(), 0) {
        ltp::tbrok!("fork child: {st:?}");
    }
    let mut out = vec![0u8; page_size() as usize];
    let mut got = 0;
    while got < out.len() {
        match nix::unistd::read(r.as_raw_fd(), &mut out[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e as i32),
        }
    }
    Ok(out)
}

fn second_thread_fault(s: &Setup) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED);
    let page = s.page;
    std::thread::scope(|sc| sc.spawn(|| m.read_page(page)).join().map_err(|_| -1))
}

/// What the store-first rows store at STORE_AT of PAGE_IDX: never the
/// pattern byte that is there, so the check sees the store.
fn stored_byte() -> u8 {
    !pattern_byte(PAGE_IDX * page_size() + STORE_AT as u64)
}

/// A write fault with nothing before it: the very first access to the
/// unfilled page is a one-byte store.
fn store_first(s: &Setup, flags: MapFlags) -> Result<Vec<u8>, i32> {
    let m = map(s, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags);
    // SAFETY: a byte of our own writable mapping; nothing reads the page
    // before this store.
    unsafe { std::ptr::write_volatile(m.addr(s.page).add(STORE_AT), stored_byte()) };
    Ok(m.read_page(s.page))
}

fn store_first_shared(s: &Setup) -> Result<Vec<u8>, i32> {
    store_first(s, MapFlags::MAP_SHARED)
}

fn store_first_private(s: &Setup) -> Result<Vec<u8>, i32> {
    store_first(s, MapFlags::MAP_PRIVATE)
}

/// The bytes of pages `first..first + pages` of `m`, read (touched) one
/// after the other.
fn read_pages(m: &Map, first: u64, pages: u64) -> Vec<u8> {
    (first..first + pages)
        .flat_map(|p| m.read_page(p))
        .collect()
}

/// The FAN_PRE_FAULT events the row's listener has seen so far (a fault
/// waits for the answer, which comes after the event is recorded).
fn faults_so_far(s: &Setup) -> usize {
    s.listener
        .seen()
        .iter()
        .filter(|e| e.mask == FAN_PRE_FAULT)
        .count()
}

/// Touch pages `first..first + pages` of `m`, which `how` populated, and
/// check that populating sent the events (touching pages in order would
/// send the same windows) and touching sends none: the populating faults
/// waited for the listener.
fn touch_populated(s: &Setup, how: &str, m: &Map, first: u64, pages: u64) -> Vec<u8> {
    let before = faults_so_far(s);
    let d = read_pages(m, first, pages);
    let after = faults_so_far(s);
    tcheck!(
        before > 0 && after == before,
        "{how}: {before} FAN_PRE_FAULT events while populating, none more touching the pages ({after} in all)"
    );
    d
}

/// mmap(MAP_POPULATE) of the whole file (errors are ignored: the touch
/// afterwards shows what it did), then every page touched.
fn map_populate(s: &Setup, prot: ProtFlags, flags: MapFlags) -> Result<Vec<u8>, i32> {
    let m = map(s, prot, flags | MapFlags::MAP_POPULATE);
    Ok(touch_populated(s, "mmap(MAP_POPULATE)", &m, 0, PAGES))
}

fn map_populate_shared(s: &Setup) -> Result<Vec<u8>, i32> {
    map_populate(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
}

fn map_populate_private(s: &Setup) -> Result<Vec<u8>, i32> {
    map_populate(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    )
}

/// mlock(2) of MLOCK_PAGES unfilled pages from PAGE_IDX (root: no
/// RLIMIT_MEMLOCK), then those pages touched.
fn mlock_range(s: &Setup, prot: ProtFlags, flags: MapFlags) -> Result<Vec<u8>, i32> {
    let m = map(s, prot, flags);
    // SAFETY: a range inside our own mapping; munmap (drop) unlocks it.
    let r = unsafe { libc::mlock(m.addr(s.page).cast(), (MLOCK_PAGES * page_size()) as usize) };
    ret_of(r as isize)?;
    Ok(touch_populated(s, "mlock(2)", &m, s.page, MLOCK_PAGES))
}

fn mlock_shared(s: &Setup) -> Result<Vec<u8>, i32> {
    mlock_range(s, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
}

fn mlock_private(s: &Setup) -> Result<Vec<u8>, i32> {
    mlock_range(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    )
}

/// A read of PAGE_IDX of `src` (opened with `flags`), a regular file nobody
/// watches, into PAGE_IDX of a private writable mapping, by `how` (which
/// returns the count or a negative errno): afterwards the page holds the
/// source bytes, the same pattern at the same offset.
fn read_other_into(
    s: &Setup,
    flags: i32,
    how: fn(RawFd, &Map, u64) -> Result<i64, String>,
) -> Result<Vec<u8>, i32> {
    let m = map(
        s,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    );
    let path = if flags & libc::O_DIRECT != 0 {
        &s.dio_src
    } else {
        &s.src
    };
    let src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .or_brok("open src");
    match how(src.as_raw_fd(), &m, s.page) {
        Ok(n) if n == page_size() as i64 => Ok(m.read_page(s.page)),
        Ok(n) if n < 0 => Err(-n as i32),
        Ok(n) => {
            tinfo!("short read: {n} bytes");
            Err(-1)
        }
        Err(e) => {
            tinfo!("{e}");
            Err(-1)
        }
    }
}

fn aio_one_page(fd: RawFd, m: &Map, page: u64) -> Result<i64, String> {
    aio_pread(fd, m, page, page_size() as usize, page * page_size())
}

fn uring_one_page(fd: RawFd, m: &Map, page: u64) -> Result<i64, String> {
    Ok(uring_pread(fd, m, page, page_size() as u32, page * page_size()).into())
}

fn aio_other_buffered(s: &Setup) -> Result<Vec<u8>, i32> {
    read_other_into(s, 0, aio_one_page)
}

fn aio_other_direct(s: &Setup) -> Result<Vec<u8>, i32> {
    read_other_into(s, libc::O_DIRECT, aio_one_page)
}

fn uring_other_buffered(s: &Setup) -> Result<Vec<u8>, i32> {
    read_other_into(s, 0, uring_one_page)
}

fn uring_other_direct(s: &Setup) -> Result<Vec<u8>, i32> {
    read_other_into(s, libc::O_DIRECT, uring_one_page)
}

const ROWS: &[Row] = &[
    (
        "user read fault, MAP_SHARED",
        Want::Filled,
        user_read_shared,
    ),
    (
        "user read fault, MAP_PRIVATE",
        Want::Filled,
        user_read_private,
    ),
    ("write fault, MAP_SHARED", Want::Filled, write_fault_shared),
    (
        "write fault, MAP_PRIVATE (COW)",
        Want::Filled,
        write_fault_private,
    ),
    (
        "write(2) from the mapping",
        Want::Filled,
        write_from_mapping,
    ),
    (
        "read(2) into a private mapping",
        Want::Filled,
        read_into_private,
    ),
    ("MADV_POPULATE_READ", Want::Filled, madv_populate_read),
    (
        "O_DIRECT read into the mapping",
        Want::Filled,
        odirect_into_mapping,
    ),
    ("process_vm_readv", Want::Filled, row_vm_readv),
    ("/proc/pid/mem", Want::Errno(libc::EIO), row_proc_mem),
    ("ptrace(PEEKDATA)", Want::Errno(libc::EIO), row_ptrace),
    ("fork, fault in the child", Want::Filled, fork_child_fault),
    (
        "fault from a second thread (per-VMA lock)",
        Want::Filled,
        second_thread_fault,
    ),
    (
        "write fault, the first access a store, MAP_SHARED",
        Want::Stored,
        store_first_shared,
    ),
    (
        "write fault, the first access a store, MAP_PRIVATE (COW)",
        Want::Stored,
        store_first_private,
    ),
    (
        "mmap(MAP_POPULATE), MAP_SHARED",
        Want::Windows {
            first: 0,
            pages: PAGES,
        },
        map_populate_shared,
    ),
    (
        "mmap(MAP_POPULATE), MAP_PRIVATE writable (COW)",
        Want::Windows {
            first: 0,
            pages: PAGES,
        },
        map_populate_private,
    ),
    (
        "mlock(2) of 40 unfilled pages, MAP_SHARED",
        Want::Windows {
            first: PAGE_IDX,
            pages: MLOCK_PAGES,
        },
        mlock_shared,
    ),
    (
        "mlock(2) of 40 unfilled pages, MAP_PRIVATE writable (COW)",
        Want::Windows {
            first: PAGE_IDX,
            pages: MLOCK_PAGES,
        },
        mlock_private,
    ),
    (
        "io_submit(2) read of another file into a private mapping",
        Want::Filled,
        aio_other_buffered,
    ),
    (
        "io_submit(2) O_DIRECT read of another file into a private mapping",
        Want::Filled,
        aio_other_direct,
    ),
    (
        "io_uring read of another file into a private mapping",
        Want::Filled,
        uring_other_buffered,
    ),
    (
        "io_uring O_DIRECT read of another file into a private mapping",
        Want::Filled,
        uring_other_direct,
    ),
];

/// The page ranges `[start, end)` of the FAN_PRE_FAULT events that faulting
/// in pages `first..first + pages` one after the other sends, by
/// filemap_prefault_range() (patches/0002, 0011): from the faulting folio
/// for `window` pages (the file's readahead window, rounded up to the
/// minimum folio size `min`), not past EOF (`eof` pages), nor into a cached
/// page (none here: each fault reads its event's range and the next one
/// starts after it).  The file is otherwise unfilled and uncached.
fn event_windows(first: u64, pages: u64, window: u64, min: u64, eof: u64) -> Vec<(u64, u64)> {
    let window = window.max(min).div_ceil(min) * min;
    let mut out = Vec::new();
    let mut p = first;
    while p < first + pages {
        let start = p / min * min;
        let end = (start + window).min(eof.div_ceil(min) * min);
        out.push((start, end));
        p = end;
    }
    out
}

/// The readahead window and the minimum folio size of `f`, in pages:
/// file->f_ra.ra_pages comes from the filesystem's bdi when the file is
/// opened, on ext4 and xfs that of the block device
/// (/sys/class/bdi/MAJ:MIN/read_ahead_kb); the minimum folio is a block
/// where blocks are larger than a page.
fn readahead_window(f: &std::fs::File) -> (u64, u64) {
    use nix::sys::stat::{fstat, major, minor};
    let dev = fstat(f.as_raw_fd()).or_brok("fstat").st_dev;
    let p = format!("/sys/class/bdi/{}:{}/read_ahead_kb", major(dev), minor(dev));
    let kb: u64 = std::fs::read_to_string(&p)
        .or_brok(&format!("read {p}"))
        .trim()
        .parse()
        .or_brok(&format!("parse {p}"));
    let bsize = nix::sys::statvfs::fstatvfs(f)
        .or_brok("fstatvfs")
        .block_size();
    (kb * 1024 / page_size(), (bsize / page_size()).max(1))
}

/// The source file of the rows that copy from another file.
fn setup(ctx: &Ctx) {
    create_pattern_file(&ctx.path("src"), PAGES * page_size());
}

/// One row: a fresh stub with its own listener.
fn run_case(ctx: &Ctx, i: u32) {
    let (what, want, f) = ROWS[i as usize];
    let src = ctx.path("src");
    let path = ctx.path(&format!("stub{i}"));
    let (l, file) = lazy_stub_rw(&path, PAGES * page_size());
    let s = Setup {
        listener: &l,
        file,
        page: PAGE_IDX,
        src: src.clone(),
        dio_src: src,
    };
    let got = f(&s);
    let Setup { file, .. } = s;
    let seen = l.stop();
    let faults = seen.iter().filter(|e| e.mask == FAN_PRE_FAULT).count();
    tinfo!(
        "{what}: {} events ({faults} FAN_PRE_FAULT), result {}",
        seen.len(),
        match &got {
            Ok(_) => "data".to_string(),
            Err(e) => format!("errno {e}"),
        }
    );
    let covering = fault_events_covering(&seen, PAGE_IDX * page_size());
    match (want, got) {
        (Want::Filled, Ok(d)) => match pattern_mismatch(PAGE_IDX * page_size(), &d) {
            None if faults == 1 && covering == 1 => {
                tpass!("{what}: content correct, one FAN_PRE_FAULT")
            }
            None if faults == 1 => {
                log_seen(what, &seen);
                tfail!("{what}: content correct but the one FAN_PRE_FAULT does not cover the page")
            }
            None => tfail!("{what}: content correct but {faults} FAN_PRE_FAULT events"),
            Some(i) => tfail!("{what}: byte {i} wrong ({faults} events)"),
        },
        (Want::Stored, Ok(d)) => {
            let mut want = pattern(PAGE_IDX * page_size(), page_size() as usize);
            want[STORE_AT] = stored_byte();
            match d.iter().zip(&want).position(|(a, b)| a != b) {
                None if faults == 1 && covering == 1 => {
                    tpass!("{what}: the stored byte and the pattern around it, one FAN_PRE_FAULT")
                }
                None => {
                    log_seen(what, &seen);
                    tfail!(
                        "{what}: content correct but {faults} FAN_PRE_FAULT events, {covering} covering the page"
                    )
                }
                Some(i) => tfail!(
                    "{what}: byte {i} is {:#04x}, want {:#04x} ({} at {STORE_AT}; {faults} events)",
                    d[i],
                    want[i],
                    if i == STORE_AT {
                        "the stored byte"
                    } else {
                        "the pattern, the store was"
                    }
                ),
            }
        }
        (Want::Windows { first, pages }, Ok(d)) => {
            let (window, min) = readahead_window(&file);
            let ps = page_size();
            let want: Vec<(u64, u64)> = event_windows(first, pages, window, min, PAGES)
                .into_iter()
                .map(|(a, b)| (a * ps, (b.min(PAGES) - a) * ps))
                .collect();
            let mut got: Vec<(u64, u64)> = seen
                .iter()
                .filter(|e| e.mask == FAN_PRE_FAULT)
                .filter_map(|e| e.range.map(|r| (r.offset, r.count)))
                .collect();
            got.sort_unstable();
            tinfo!(
                "{what}: readahead window {window} pages (minimum folio {min}): want events {want:?}"
            );
            match pattern_mismatch(first * ps, &d) {
                None => tpass!("{what}: all {pages} pages from page {first} correct"),
                Some(i) => tfail!(
                    "{what}: byte {i} of the {pages} pages from page {first} wrong ({faults} events)"
                ),
            }
            if got == want && faults == want.len() {
                tpass!("{what}: {faults} FAN_PRE_FAULT events, one per readahead window: {got:?}");
            } else {
                log_seen(what, &seen);
                tfail!("{what}: FAN_PRE_FAULT ranges {got:?} ({faults} events), want {want:?}");
            }
        }
        (Want::Errno(e), Err(g)) if e == g && faults == 0 => {
            tpass!("{what}: errno {g}, no FAN_PRE_FAULT")
        }
        (w, g) => tfail!(
            "{what}: want {w:?}, got {:?} with {faults} events",
            g.map(|_| "data")
        ),
    }
    drop(file);
    std::fs::remove_file(&path).or_brok("unlink");
}
