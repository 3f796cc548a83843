//! pre_fault_listener_death: faults waiting for a FAN_PRE_FAULT answer
//! never hang when the listener goes away: with 8 threads blocked in faults
//! on a lazy file, closing the listener's group wakes all of them with the
//! documented result (pending events are allowed; the unfilled pages read as
//! the filesystem has them, i.e. zeros); and a process blocked in such a
//! fault dies at once on SIGKILL.
//!
//! Guards the last rows of the cover letter's fault-path matrix (listener closed
//! with faults pending, SIGKILL while waiting in a fault).

use crate::common::*;
use fanotify::consts::*;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "pre_fault_listener_death",
    doc: "listener closed with 8 faults pending: all wake; SIGKILL of a task waiting in a fault ends it",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs],
    tags: &[
        ("cover-letter", "Fault-path matrix: listener closed with faults pending; SIGKILL while waiting in a fault"),
    ],
    run,
    ..Test::DEFAULT
};

const THREADS: u64 = 8;
/// Far enough apart that each fault sends its own event.
const STRIDE: u64 = 64;

/// Read events until `n` arrived (or 10 s passed); keep them unanswered.
fn hold(group: &fanotify::Fanotify, n: usize) -> Vec<fanotify::Event> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < n && Instant::now() < deadline {
        held.extend(
            group
                .wait_events(Duration::from_millis(100))
                .or_brok("read events"),
        );
    }
    held
}

fn run(ctx: &Ctx) {
    let path = ctx.path("stub");
    create_sparse_file(&path, THREADS * STRIDE * page_size());
    let group = lazy_group(&path, FAN_MARK_INODE);
    let f = std::fs::File::open(&path).or_brok("open");
    let m = Arc::new(
        Map::new(
            &f,
            0,
            THREADS * STRIDE,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
        )
        .or_brok("mmap"),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || m.read_page(t * STRIDE))
        })
        .collect();
    let held = hold(&group, THREADS as usize);
    if held.len() == THREADS as usize {
        tpass!("{THREADS} faults are waiting for the listener");
    } else {
        tfail!("only {} of {THREADS} faults sent events", held.len());
    }
    drop(group);
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = threads.iter().filter(|t| t.is_finished()).count();
    if done == THREADS as usize {
        tpass!("closing the listener woke all {THREADS} faulting threads");
        let zero = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .all(|d| d.iter().all(|&b| b == 0));
        if zero {
            tpass!("the unfilled pages read as the filesystem has them (zeros)");
        } else {
            tfail!("unfilled pages returned non-zero bytes");
        }
    } else {
        tfail!(
            "{} of {THREADS} threads still blocked 10 s after the listener closed",
            THREADS as usize - done
        );
        return;
    }
    drop(held);

    // SIGKILL of a process waiting in a fault.
    let path2 = ctx.path("stub2");
    create_sparse_file(&path2, 16 * page_size());
    let group = lazy_group(&path2, FAN_MARK_INODE);
    let f2 = std::fs::File::open(&path2).or_brok("open");
    let m2 = Map::new(&f2, 0, 16, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child touches the mapping and exits.
    let child = match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            m2.touch(3);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    let held = hold(&group, 1);
    if held.is_empty() {
        tfail!("the child's fault sent no event");
    }
    kill(child, Signal::SIGKILL).or_brok("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = WaitStatus::StillAlive;
    while Instant::now() < deadline {
        status = waitpid(child, Some(WaitPidFlag::WNOHANG)).or_brok("waitpid");
        if status != WaitStatus::StillAlive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match status {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {
            tpass!("SIGKILL ended a task waiting in a fault")
        }
        other => tfail!("task waiting in a fault after SIGKILL: {other:?}"),
    }
    drop(held);
}
