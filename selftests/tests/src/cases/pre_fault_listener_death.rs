//! pre_fault_listener_death: a listener that dies with fault-time events
//! pending never lets unfilled content in.  8 processes block in faults on a
//! lazy file, each its own FAN_PRE_FAULT event; the listener process is
//! SIGKILLed without answering.  Every faulting process must end with SIGBUS
//! (the pending events are denied with EIO, never allowed: v1 allowed them and
//! the faults mapped zeros, which stayed cached for every later mapping, even
//! after a new listener started); none of the dead events' windows may be in
//! the page cache; a new listener then fills them and a fresh mapping shows
//! the right bytes.  Also: a process blocked in such a fault dies at once on
//! SIGKILL.
//!
//! Guards the last rows of the cover letter's fault-path matrix (listener
//! killed with faults pending; SIGKILL while waiting in a fault).

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tpass, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, read, write, ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "pre_fault_listener_death",
    doc: "listener SIGKILLed with 8 faults pending: all get SIGBUS, nothing cached, a new listener fills; SIGKILL of a task waiting in a fault ends it",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_CACHESTAT_SYSCALL"],
    filesystems: HSM_FILESYSTEMS,
    timeout: Duration::from_secs(120),
    tags: &[
        ("cover-letter", "Fault-path matrix: listener killed with faults pending; SIGKILL while waiting in a fault"),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    run,
    ..Test::DEFAULT
};

const THREADS: u64 = 8;
/// Far enough apart that each fault sends its own event (one readahead
/// window of 32 pages each).
const STRIDE: u64 = 64;

/// Exit codes of a faulting process that was not killed by SIGBUS.
const SAW_ZEROS: i32 = 10;
const SAW_OTHER: i32 = 11;

/// Wait up to `timeout` for `pid` to end.
pub fn wait_for(pid: Pid, timeout: Duration) -> WaitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let s = waitpid(pid, Some(WaitPidFlag::WNOHANG)).or_brok("waitpid");
        if s != WaitStatus::StillAlive || Instant::now() >= deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A listener process that marks `path`, reads events and never answers
/// them; it writes one byte to the returned pipe per event it holds.
fn holding_listener(path: &Path) -> (Pid, OwnedFd) {
    // The feature probe in this process: a kernel without FAN_PRE_FAULT
    // is a TCONF here, not a listener that dies before it marks.
    drop(lazy_group(path, FAN_MARK_INODE));
    let (count_r, count_w) = pipe().or_brok("pipe");
    let (ready_r, ready_w) = pipe().or_brok("pipe");
    // SAFETY: the child only uses the fanotify group and the pipes, then
    // _exit()s (or is killed).
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            drop(count_r);
            drop(ready_r);
            let group = lazy_group(path, FAN_MARK_INODE);
            let _ = write(&ready_w, b"r");
            let mut held = Vec::new();
            loop {
                let events = group
                    .wait_events(Duration::from_millis(100))
                    .unwrap_or_default();
                for ev in events {
                    let _ = write(&count_w, b"e");
                    held.push(ev);
                }
            }
        }
        ForkResult::Parent { child } => {
            drop(count_w);
            drop(ready_w);
            let mut b = [0u8; 1];
            if read(ready_r.as_raw_fd(), &mut b).or_brok("listener ready") != 1 {
                ltp::tbrok!("the listener process died before marking the file");
            }
            (child, count_r)
        }
    }
}

/// Read one byte per held event from `count` until `n` arrived or 10 s passed.
pub fn held_events(count: &OwnedFd, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = 0;
    let mut fds = [nix::poll::PollFd::new(
        count.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    while got < n && Instant::now() < deadline {
        if matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)), Ok(k) if k > 0)
        {
            let mut b = [0u8; 16];
            match read(count.as_raw_fd(), &mut b) {
                Ok(0) | Err(_) => break,
                Ok(k) => got += k,
            }
        }
    }
    got
}

/// A process that faults `page` of a shared mapping of `path`: killed by
/// SIGBUS, or exits with SAW_ZEROS / SAW_OTHER / 0 (the pattern).
fn faulter(path: &Path, pages: u64, page: u64) -> Pid {
    // SAFETY: the child maps, reads and _exit()s.
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            default_sigbus();
            let code = (|| {
                let f = std::fs::File::open(path).ok()?;
                let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).ok()?;
                let d = m.read_page(page);
                Some(if d.iter().all(|&b| b == 0) {
                    SAW_ZEROS
                } else if pattern_mismatch(page * page_size(), &d).is_none() {
                    0
                } else {
                    SAW_OTHER
                })
            })()
            .unwrap_or(SAW_OTHER);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

fn run(ctx: &Ctx) {
    let ps = page_size();
    let pages = THREADS * STRIDE;
    let path = ctx.path("stub");
    create_sparse_file(&path, pages * ps);

    let (listener, count) = holding_listener(&path);
    let faulters: Vec<Pid> = (0..THREADS)
        .map(|t| faulter(&path, pages, t * STRIDE))
        .collect();
    let held = held_events(&count, THREADS as usize);
    tcheck!(
        held == THREADS as usize,
        "{held} of {THREADS} faults are waiting for the listener"
    );
    kill(listener, Signal::SIGKILL).or_brok("kill the listener");
    tcheck!(
        matches!(
            wait_for(listener, Duration::from_secs(10)),
            WaitStatus::Signaled(_, Signal::SIGKILL, _)
        ),
        "the listener died of SIGKILL"
    );

    let mut outcomes = Vec::new();
    for pid in faulters {
        outcomes.push(wait_for(pid, Duration::from_secs(10)));
    }
    let sigbus = outcomes
        .iter()
        .filter(|s| matches!(s, WaitStatus::Signaled(_, Signal::SIGBUS, _)))
        .count();
    if sigbus == THREADS as usize {
        tpass!("all {THREADS} faults pending at the listener's death got SIGBUS");
    } else {
        let zeros = outcomes
            .iter()
            .filter(|s| matches!(s, WaitStatus::Exited(_, SAW_ZEROS)))
            .count();
        tfail!(
            "{sigbus} of {THREADS} faults got SIGBUS, {zeros} read unfilled zeros: {outcomes:?}"
        );
        for s in &outcomes {
            if *s == WaitStatus::StillAlive {
                if let Some(p) = s.pid() {
                    let _ = kill(p, Signal::SIGKILL);
                }
            }
        }
    }

    let f = std::fs::File::open(&path).or_brok("open");
    let cached = hsm::cache::cached_pages(&f, 0, pages * ps).or_brok("cachestat");
    tcheck!(
        cached == 0,
        "{cached} pages of the dead events' windows are in the page cache"
    );

    let listener = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    // A file opened after the new mark: one opened while no listener
    // watched gets no events, and cannot read what is not cached.
    let f = std::fs::File::open(&path).or_brok("open");
    let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let wrong: Vec<u64> = (0..THREADS)
        .map(|t| t * STRIDE)
        .filter(|&p| pattern_mismatch(p * ps, &m.read_page(p)).is_some())
        .collect();
    tcheck!(
        wrong.is_empty(),
        "a new listener filled the windows; a fresh mapping shows the right bytes (wrong pages: {wrong:?})"
    );
    let seen = listener.stop();
    let uncovered: Vec<u64> = (0..THREADS)
        .map(|t| t * STRIDE)
        .filter(|&p| fault_events_covering(&seen, p * ps) == 0)
        .collect();
    tcheck!(
        uncovered.is_empty(),
        "FAN_PRE_FAULT events of the new listener covered every window (uncovered pages: {uncovered:?})"
    );
    drop(m);

    sigkill_while_waiting(ctx);
}

/// SIGKILL of a process waiting in a fault for its answer ends it.
fn sigkill_while_waiting(ctx: &Ctx) {
    let path = ctx.path("stub2");
    create_sparse_file(&path, 16 * page_size());
    let (listener, count) = holding_listener(&path);
    let child = faulter(&path, 16, 3);
    if held_events(&count, 1) != 1 {
        tfail!("the child's fault sent no event");
    }
    kill(child, Signal::SIGKILL).or_brok("kill");
    match wait_for(child, Duration::from_secs(10)) {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {
            tpass!("SIGKILL ended a task waiting in a fault")
        }
        other => tfail!("task waiting in a fault after SIGKILL: {other:?}"),
    }
    let _ = kill(listener, Signal::SIGKILL);
    let _ = wait_for(listener, Duration::from_secs(10));
}
