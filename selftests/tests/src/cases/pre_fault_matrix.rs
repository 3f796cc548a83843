//! pre_fault_matrix: every way a page of a lazy (FAN_PRE_FAULT) mapping can
//! be faulted in, with an HSM listener that fills and allows, and the
//! documented outcome of each: content correct with exactly one
//! FAN_PRE_FAULT (or the documented errno where a fault cannot wait), never
//! a hang.  Rows: user read fault (MAP_SHARED, MAP_PRIVATE), write fault
//! (MAP_SHARED, MAP_PRIVATE/COW), write(2) from the mapping, read(2) into a
//! private mapping, MADV_POPULATE_READ, O_DIRECT read into the mapping,
//! process_vm_readv, /proc/pid/mem and ptrace(PEEKDATA) (cannot retry: EIO,
//! no event), fork then child fault, a fault from a second thread (per-VMA
//! lock).  FAULT_FLAG_RETRY_NOWAIT has no userspace trigger here; its
//! behaviour is covered by review.
//!
//! Reads and writes of the lazy file itself with the buffer in its own
//! mapping are in pre_fault_same_file.
//!
//! Guards the cover letter's fault-path matrix, row by row.

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::wait::WaitStatus;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

pub const TEST: Test = Test {
    name: "pre_fault_matrix",
    doc: "fault-path matrix: each access path to a lazy mapping gets its documented outcome",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs],
    tags: &[("cover-letter", "Fault-path matrix")],
    // Each row is a case (fpc-tests pre_fault_matrix:N runs row N alone): a
    // row that hangs or breaks ends only itself, with this timeout.
    timeout: std::time::Duration::from_secs(60),
    setup: Some(setup),
    tcnt: ROWS.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

/// What a row should give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Content correct, one FAN_PRE_FAULT.
    Filled,
    /// Fails with this errno and sends no event (cannot wait for a listener).
    Errno(i32),
}

type Row = (&'static str, Want, fn(&Setup) -> Result<Vec<u8>, i32>);

struct Setup {
    file: std::fs::File,
    page: u64,
    src: std::path::PathBuf,
    dio_src: std::path::PathBuf,
}

const PAGES: u64 = 64;
const PAGE_IDX: u64 = 21;

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
];

/// The source file of the rows that copy from another file.
fn setup(ctx: &Ctx) {
    create_pattern_file(&ctx.path("src"), PAGES * page_size());
}

/// One row: a fresh stub with its own listener.
fn run_case(ctx: &Ctx, i: u32) {
    let (what, want, f) = ROWS[i as usize];
    let src = ctx.path("src");
    let path = ctx.path(&format!("stub{i}"));
    create_sparse_file(&path, PAGES * page_size());
    let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .or_brok("open");
    let s = Setup {
        file,
        page: PAGE_IDX,
        src: src.clone(),
        dio_src: src,
    };
    let got = f(&s);
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
    match (want, got) {
        (Want::Filled, Ok(d)) => match pattern_mismatch(PAGE_IDX * page_size(), &d) {
            None if faults == 1 => tpass!("{what}: content correct, one FAN_PRE_FAULT"),
            None => tfail!("{what}: content correct but {faults} FAN_PRE_FAULT events"),
            Some(i) => tfail!("{what}: byte {i} wrong ({faults} events)"),
        },
        (Want::Errno(e), Err(g)) if e == g && faults == 0 => {
            tpass!("{what}: errno {g}, no FAN_PRE_FAULT")
        }
        (w, g) => tfail!(
            "{what}: want {w:?}, got {:?} with {faults} events",
            g.map(|_| "data")
        ),
    }
    drop(s);
    std::fs::remove_file(&path).or_brok("unlink");
}
