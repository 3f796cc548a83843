//! pre_fault_mmap_lock: nothing waits for the listener holding the mmap or
//! VMA lock.  A thread T1 faults an unfilled page of a lazy (FAN_PRE_ACCESS |
//! FAN_PRE_FAULT) mapping; the listener gets the FAN_PRE_FAULT and does not
//! answer until the test's main thread, in the same process (same mm), has
//! done, one after the other:
//!
//! - mmap() of a new anonymous region (mmap lock for write),
//! - munmap() of it (mmap lock for write),
//! - mprotect() of another anonymous region, mapped before the fault (mmap
//!   lock for write),
//! - mprotect() of the last page of the lazy mapping, which splits the VMA the
//!   fault is on (mmap lock for write and that VMA's lock for write, which a
//!   per-VMA lock fault holds for read while it runs),
//! - a read of /proc/self/maps (mmap lock or VMA locks for read), which must
//!   list the lazy file.
//!
//! Each call must return while the fault is still pending: the listener has
//! not answered and T1 has not come back from its access.  Only then the
//! listener fills the range and allows; T1 must then see the filled bytes,
//! and exactly one FAN_PRE_FAULT covered the page.  A watchdog (30 s) fails
//! the call that did not return, naming it, and answers the event so that the
//! case can end.  Nothing here is decided by a sleep: the listener holds the
//! event until the main thread says so.
//!
//! Cases, each a different way for T1 (a spawned thread) to fault:
//!
//! 0. a load from a MAP_SHARED mapping: a user fault, which on x86 with
//!    CONFIG_PER_VMA_LOCK is first tried under the per-VMA lock
//!    (lock_vma_under_rcu()) and retried under the mmap lock after the
//!    VM_FAULT_RETRY | VM_FAULT_MAJOR of the event;
//! 1. read(2) of half a page from another, unwatched regular file into the
//!    unfilled page of a MAP_PRIVATE writable mapping: a kernel access on
//!    T1's behalf; the series refuses the fault inside ->read_iter() and the
//!    VFS faults the buffer in outside the filesystem's locks
//!    (fault_in_safe_writeable(), which holds the mmap lock until the fault
//!    drops it); the page then holds the source's bytes, then the lazy file's;
//! 2. MADV_POPULATE_READ of the page: GUP under the mmap lock, which the
//!    fault drops (FOLL_UNLOCKABLE).
//!
//! Guards the cover letter's answer to Linus's objection (Objections of the
//! revert, answered: 2, "nothing waits holding the mmap or VMA lock"), which
//! no test checked before (selftests/README.md, claims table), and its Design
//! ("the mmap or VMA lock is dropped (file pinned), the event sent ...").
//! The base kernel has no FAN_PRE_FAULT: TCONF.

use crate::common::*;
use fanotify::consts::*;
use fanotify::{Range, Response};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tinfo, tpass, Ctx, Test};
use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_fault_mmap_lock",
    doc: "while a FAN_PRE_FAULT waits for the listener, the same process can mmap, munmap, mprotect and read /proc/self/maps",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_PER_VMA_LOCK"],
    filesystems: HSM_FILESYSTEMS,
    timeout: Duration::from_secs(120),
    tags: &[
        (
            "cover-letter",
            "Objections of the revert, answered: 2 (nothing waits holding the mmap or VMA lock)",
        ),
        (
            "cover-letter",
            "Design: the mmap or VMA lock is dropped, the event sent, VM_FAULT_RETRY",
        ),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    tcnt: CASES.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

/// Pages of the lazy file and of its mapping.
const PAGES: u64 = 64;
/// The page T1 faults; its event's window (32 pages) ends before LAST.
const PAGE: u64 = 8;
/// The page of the lazy mapping the main thread mprotect()s.
const LAST: u64 = PAGES - 1;
/// How long the listener's event, and the main thread's calls, may take.
const WATCHDOG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Access {
    /// A load from a MAP_SHARED mapping.
    Load,
    /// read(2) from another file into a MAP_PRIVATE writable mapping.
    ReadInto,
    /// madvise(MADV_POPULATE_READ).
    PopulateRead,
}

const CASES: &[(&str, Access)] = &[
    (
        "a load by a second thread (per-VMA lock fault)",
        Access::Load,
    ),
    (
        "read(2) by a second thread from a regular file into the mapping (kernel access)",
        Access::ReadInto,
    ),
    (
        "MADV_POPULATE_READ by a second thread (GUP)",
        Access::PopulateRead,
    ),
];

/// Offset of the source file's bytes that read(2) copies (Access::ReadInto).
const SRC_OFF: u64 = 3;

/// What page PAGE of the mapping must hold once T1 is done.
fn want(a: Access) -> Vec<u8> {
    let ps = page_size();
    match a {
        Access::Load | Access::PopulateRead => pattern(PAGE * ps, ps as usize),
        Access::ReadInto => {
            let half = ps / 2;
            let mut v = pattern(SRC_OFF * ps, half as usize);
            v.extend(pattern(PAGE * ps + half, (ps - half) as usize));
            v
        }
    }
}

/// T1's access; the bytes of page PAGE afterwards.
fn access(a: Access, m: &Map, src: &std::fs::File) -> Result<Vec<u8>, String> {
    let ps = page_size();
    match a {
        Access::Load => {}
        Access::ReadInto => {
            let half = (ps / 2) as usize;
            // SAFETY: half a page of our own writable private mapping as the
            // destination.
            let n = unsafe {
                libc::pread(
                    src.as_raw_fd(),
                    m.addr(PAGE).cast(),
                    half,
                    (SRC_OFF * ps) as i64,
                )
            };
            if n != half as isize {
                return Err(format!(
                    "read(2) into the mapping returned {n} ({}), not {half}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Access::PopulateRead => {
            // SAFETY: advice on our own mapping; it only faults pages in.
            let r = unsafe {
                libc::madvise(m.addr(PAGE).cast(), ps as usize, libc::MADV_POPULATE_READ)
            };
            if r != 0 {
                return Err(format!(
                    "MADV_POPULATE_READ: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(m.read_page(PAGE))
}

/// What the main thread sees of the pending fault.
struct Pending {
    /// The listener answered the held event (set before it responds).
    answered: Arc<AtomicBool>,
    /// T1 came back from its access.
    t1_done: Arc<AtomicBool>,
    /// The call in progress, for the watchdog.
    current: Arc<Mutex<&'static str>>,
}

impl Pending {
    /// Run one call of the main thread: it must return, succeed, and do so
    /// while the fault is still pending.  Returns its value if it succeeded.
    fn call<T>(&self, what: &'static str, f: impl FnOnce() -> Result<T, String>) -> Option<T> {
        if self.answered.load(Ordering::SeqCst) {
            tinfo!("{what}: not tried, the listener has answered already");
            return None;
        }
        *self.current.lock().unwrap() = what;
        let res = f();
        let answered = self.answered.load(Ordering::SeqCst);
        let t1_done = self.t1_done.load(Ordering::SeqCst);
        match res {
            Err(e) => {
                tfail!("{what}: {e}");
                None
            }
            Ok(v) => {
                if !answered && !t1_done {
                    tpass!("{what} returned while the fault waited for the listener");
                } else {
                    tfail!(
                        "{what} returned only after the fault ended (listener answered: {answered}, T1 done: {t1_done})"
                    );
                }
                Some(v)
            }
        }
    }
}

fn run_case(ctx: &Ctx, i: u32) {
    let (what, a) = CASES[i as usize];
    tinfo!("case {i}: {what}");
    // A SIGBUS in T1 must end the case, not run the access again.
    default_sigbus();
    let ps = page_size();
    let path = ctx.path(&format!("stub{i}"));
    create_sparse_file(&path, PAGES * ps);
    let src_path = ctx.path(&format!("src{i}"));
    create_pattern_file(&src_path, 8 * ps);
    let src = std::fs::File::open(&src_path).or_brok("open the source file");

    // Everything that maps memory (threads' stacks, the region to
    // mprotect) is set up before the fault.
    let len = NonZeroUsize::new(4 * ps as usize).unwrap();
    // SAFETY: a new anonymous mapping at an address the kernel picks,
    // unmapped at the end of the case.
    let other = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }
    .or_brok("mmap the region to mprotect");

    let (ev_tx, ev_rx) = channel::<Option<Range>>();
    let (go_tx, go_rx) = channel::<()>();
    let answered = Arc::new(AtomicBool::new(false));
    let answered2 = answered.clone();
    let mut holding = true;
    let listener = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            let held = holding && ctx.event.mask == FAN_PRE_FAULT;
            if held {
                holding = false;
                let _ = ev_tx.send(ctx.event.range());
                // Until the main thread (or the watchdog) says so, or is gone.
                let _ = go_rx.recv();
            }
            let resp = match ctx.fill_range() {
                Ok(()) => Response::Allow,
                Err(e) => {
                    tfail!("listener: fill: {e}");
                    Response::DenyErrno(libc::EIO)
                }
            };
            if held {
                answered2.store(true, Ordering::SeqCst);
            }
            resp
        }),
    );

    let (prot, flags) = match a {
        Access::Load | Access::PopulateRead => (ProtFlags::PROT_READ, MapFlags::MAP_SHARED),
        Access::ReadInto => (
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        ),
    };
    let file = std::fs::File::open(&path).or_brok("open the stub");
    let map = Arc::new(Map::new(&file, 0, PAGES, prot, flags).or_brok("mmap the stub"));

    // The watchdog: armed when the event arrived; if the main thread's calls
    // have not all returned 30 s later, it answers the event (first: that
    // releases whatever the fault holds) and names the call.
    let current = Arc::new(Mutex::new("nothing yet"));
    let (arm_tx, arm_rx) = channel::<()>();
    let (fin_tx, fin_rx) = channel::<()>();
    let (wd_go, wd_current) = (go_tx.clone(), current.clone());
    let watchdog = std::thread::spawn(move || {
        if arm_rx.recv().is_err() {
            return;
        }
        if let Err(RecvTimeoutError::Timeout) = fin_rx.recv_timeout(WATCHDOG) {
            let _ = wd_go.send(());
            let stuck = *wd_current.lock().unwrap();
            tfail!(
                "{stuck} did not return within {WATCHDOG:?} while the fault waited for the listener: it waits for a lock the fault holds"
            );
        }
    });

    let t1_done = Arc::new(AtomicBool::new(false));
    let (m1, done1) = (map.clone(), t1_done.clone());
    let t1 = std::thread::spawn(move || {
        let r = access(a, &m1, &src);
        done1.store(true, Ordering::SeqCst);
        r
    });

    let pending = Pending {
        answered: answered.clone(),
        t1_done: t1_done.clone(),
        current,
    };
    match ev_rx.recv_timeout(WATCHDOG) {
        Ok(r) => {
            tcheck!(
                r.is_some_and(|r| covers(&r, PAGE * ps)),
                "T1's FAN_PRE_FAULT (range {r:?}) covers page {PAGE} and waits for the listener"
            );
            let _ = arm_tx.send(());

            let new = pending.call("mmap() of a new anonymous region", || {
                // SAFETY: a new anonymous mapping, unmapped by the next call.
                unsafe {
                    mmap_anonymous(
                        None,
                        len,
                        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                        MapFlags::MAP_PRIVATE,
                    )
                }
                .map_err(|e| e.to_string())
            });
            if let Some(p) = new {
                pending.call("munmap() of it", || {
                    // SAFETY: the region just mapped, which nothing uses.
                    unsafe { munmap(p, len.get()) }.map_err(|e| e.to_string())
                });
            }
            pending.call("mprotect() of another anonymous region", || {
                // SAFETY: our own anonymous region, which nothing accesses.
                unsafe { mprotect(other, len.get(), ProtFlags::PROT_READ) }
                    .map_err(|e| e.to_string())
            });
            pending.call(
                "mprotect() of the last page of the lazy mapping (splits the faulting VMA)",
                || {
                    let p = std::ptr::NonNull::new(map.addr(LAST).cast()).unwrap();
                    // SAFETY: a page of our own mapping that nothing accesses.
                    unsafe { mprotect(p, ps as usize, ProtFlags::PROT_NONE) }
                        .map_err(|e| e.to_string())
                },
            );
            let name = path.to_string_lossy().into_owned();
            pending.call("a read of /proc/self/maps", || {
                let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
                if maps.contains(&name) {
                    Ok(())
                } else {
                    Err(format!("/proc/self/maps does not list {name}"))
                }
            });
        }
        Err(_) => tfail!("no FAN_PRE_FAULT of T1 reached the listener within {WATCHDOG:?}"),
    }
    drop(fin_tx);
    drop(arm_tx);
    let _ = go_tx.send(());
    drop(go_tx);
    let _ = watchdog.join();

    match t1.join() {
        Ok(Ok(got)) => {
            let w = want(a);
            match got.iter().zip(&w).position(|(g, w)| g != w) {
                None if got.len() == w.len() => {
                    tpass!("{what}: T1 sees the filled bytes once the listener allowed")
                }
                None => tfail!("{what}: T1 read {} bytes, not {}", got.len(), w.len()),
                Some(b) => tfail!(
                    "{what}: byte {b} of page {PAGE} is {:#x}, want {:#x}",
                    got[b],
                    w[b]
                ),
            }
        }
        Ok(Err(e)) => tfail!("{what}: {e}"),
        Err(_) => tfail!("{what}: T1 panicked"),
    }
    let seen = listener.stop();
    log_seen(what, &seen);
    let faults = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).count();
    let covering = fault_events_covering(&seen, PAGE * ps);
    tcheck!(
        seen.len() == 1 && covering == 1,
        "{what}: one event, a FAN_PRE_FAULT covering page {PAGE} ({} events, {faults} FAN_PRE_FAULT, {covering} covering)",
        seen.len()
    );
    drop(map);
    // SAFETY: our own region; nothing uses it any more.
    let _ = unsafe { munmap(other, len.get()) };
}
