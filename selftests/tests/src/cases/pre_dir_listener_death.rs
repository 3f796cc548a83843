//! pre_dir_listener_death: a listener that goes away with FAN_PRE_DIR_ACCESS
//! events pending never lets a call into a directory it did not populate,
//! and nothing hangs.  The listener is a forked process that marks an
//! unpopulated directory and holds every event without answering; 8
//! threads of the test block in it: stat of four names, getdents64 on two
//! directory fds, mkdir and open(O_CREAT) of new names (events are not
//! coalesced: the listener must hold 8).  Then:
//! - case 0: the listener is SIGKILLed;
//! - case 1: the listener closes its fanotify fd (keeping the event fds,
//!   and living on).
//!
//! Every blocked call must fail with EIO within 10 s.  The directory was
//! not left populated: a new listener gets a fresh event for the next
//! lookup (the failed ones left no negative dentry behind), populates
//! through the event fd and allows, and the lookup and a listing see its
//! entries.
//!
//! Case 2: a process waiting for its FAN_PRE_DIR_ACCESS dies at once on
//! SIGKILL.
//!
//! Guards the cover letter's "Directory pre-content events" (a listener
//! that dies or closes its group fails the waiting calls with EIO) (issue
//! 16).

use super::pre_dir_util::*;
use super::pre_fault_listener_death::{held_events, wait_for};
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tinfo, tpass, Ctx, Test};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{fork, pipe, read, write, ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "pre_dir_listener_death",
    doc: "listener SIGKILLed or closing its group with 8 directory events pending: all fail with EIO within 10 s, a new listener gets fresh events; SIGKILL ends a waiting task",
    needs_kconfigs: KCONFIGS,
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    timeout: Duration::from_secs(120),
    tags: &[
        (
            "issue",
            "16: lazy directories (FAN_PRE_DIR_ACCESS), listener death",
        ),
        (
            "cover-letter",
            "Directory pre-content events: a listener that dies or closes its group fails the waiting calls with EIO",
        ),
    ],
    tcnt: 3,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

const CALLS: usize = 8;
/// How long the calls may take to fail once the listener is gone.
const RELEASE: Duration = Duration::from_secs(10);
const SIZE: u64 = 777;
/// What the new listener creates.
const REMOTE: &[(&str, Kind)] = &[("s0", Kind::File(SIZE)), ("m0", Kind::Dir)];

/// A listener process that marks `dir` and holds every event without
/// answering; one byte on `count` per event it holds.  On a byte on `cmd`
/// it closes its group (keeping the event fds), says so with a 'c' on
/// `count`, and idles until killed.
fn holding_listener(dir: &Path) -> (Pid, OwnedFd, OwnedFd) {
    let (count_r, count_w) = pipe().or_brok("pipe");
    let (cmd_r, cmd_w) = pipe().or_brok("pipe");
    let (ready_r, ready_w) = pipe().or_brok("pipe");
    // SAFETY: the test process has no other thread yet; the child uses the
    // group and the pipes only, and never returns.
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            drop((count_r, cmd_w, ready_r));
            let mut group = Some(lazy_dir_group(dir));
            let _ = write(&ready_w, b"r");
            let mut held = Vec::new();
            loop {
                match &group {
                    Some(g) => {
                        for ev in g.wait_events(Duration::from_millis(50)).unwrap_or_default() {
                            let _ = write(&count_w, b"e");
                            held.push(ev);
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
                let mut fds = [nix::poll::PollFd::new(
                    cmd_r.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                if group.is_some()
                    && matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
                {
                    group = None;
                    let _ = write(&count_w, b"c");
                }
            }
        }
        ForkResult::Parent { child } => {
            drop((count_w, cmd_r, ready_w));
            let mut b = [0u8; 1];
            if read(ready_r.as_raw_fd(), &mut b).or_brok("listener ready") != 1 {
                ltp::tbrok!("the listener process died before marking the directory");
            }
            (child, count_r, cmd_w)
        }
    }
}

/// The blocked calls: stat of four names, getdents64 on two fds of its
/// own, mkdir and open(O_CREAT) of new names; each sends one event.
fn calls(d: &Path) -> Vec<(String, Call<Result<(), Errno>>)> {
    let mut out = Vec::new();
    for i in 0..4 {
        let p = d.join(format!("s{i}"));
        out.push((
            format!("stat s{i}"),
            call(move || nix::sys::stat::stat(&p).map(drop)),
        ));
    }
    for i in 0..2 {
        let p = d.to_path_buf();
        out.push((
            format!("getdents64 #{i}"),
            call(move || {
                open_dir(&p)
                    .and_then(|fd| getdents_once(fd.as_fd()))
                    .map(drop)
            }),
        ));
    }
    let p = d.join("m0");
    out.push((
        "mkdir m0".into(),
        call(move || nix::unistd::mkdir(&p, nix::sys::stat::Mode::from_bits_truncate(0o755))),
    ));
    let p = d.join("c0");
    out.push((
        "open(O_CREAT) c0".into(),
        call(move || std::fs::File::create(&p).map(drop).map_err(errno)),
    ));
    assert_eq!(out.len(), CALLS);
    out
}

fn run_case(ctx: &Ctx, i: u32) {
    let d = ctx.path(&format!("d{i}"));
    let id = empty_dir(&d);
    if i == 2 {
        sigkill_while_waiting(&d);
        return;
    }
    let (listener, count, cmd) = holding_listener(&d);
    let waiting = calls(&d);
    let held = held_events(&count, CALLS);
    tcheck!(
        held == CALLS,
        "{held} of {CALLS} calls wait for the listener, each with its own event"
    );
    let gone = if i == 0 {
        kill(listener, Signal::SIGKILL).or_brok("kill the listener");
        matches!(
            wait_for(listener, RELEASE),
            WaitStatus::Signaled(_, Signal::SIGKILL, _)
        )
    } else {
        write(&cmd, b"c").or_brok("tell the listener to close its group");
        held_events(&count, 1) == 1
    };
    let how = if i == 0 {
        "SIGKILLed"
    } else {
        "closed its fanotify fd"
    };
    if !gone {
        tfail!("the listener never {how}");
    }
    let start = Instant::now();
    let mut results = Vec::new();
    for (what, c) in &waiting {
        let left = RELEASE.saturating_sub(start.elapsed());
        results.push((what.as_str(), c.wait(left)));
    }
    let took = start.elapsed();
    let eio = results
        .iter()
        .filter(|(_, r)| *r == Some(Err(Errno::EIO)))
        .count();
    if eio == CALLS {
        tpass!("all {CALLS} calls waiting when the listener {how} failed with EIO, in {took:.1?}");
    } else {
        tfail!("the listener {how}; within {RELEASE:?} the {CALLS} waiting calls gave {results:?} (None: still waiting), want EIO each");
    }
    if i == 1 {
        let _ = kill(listener, Signal::SIGKILL);
        let _ = wait_for(listener, RELEASE);
    }

    // The directory is still unpopulated: a new listener gets its events.
    let l = DirListener::populating(lazy_dir_group(&d), REMOTE, true, Response::Allow);
    let p = d.join("s0");
    let Some((got, evs, tid)) = step(&l, "stat s0", move || {
        nix::sys::stat::stat(&p).map(|st| st.st_size as u64)
    }) else {
        return;
    };
    let problems = events_problems(
        &evs,
        id,
        tid,
        Want::Names {
            required: &["s0"],
            optional: &[],
        },
    );
    if got == Ok(SIZE) && problems.is_empty() {
        tpass!("a new listener got a fresh FAN_PRE_DIR_ACCESS for s0, populated, and the stat found its {SIZE} bytes");
    } else {
        tfail!("a new listener: stat s0 gave {got:?} (want Ok({SIZE})); events: {problems:?}");
    }
    let want = name_set(&["s0", "m0"]);
    match list(&d) {
        Ok((n, _)) if n == want => tpass!("the listing shows the new listener's entries {n:?}"),
        other => tfail!("the listing gave {other:?}, want {want:?}"),
    }
    let all = l.stop();
    tinfo!("the new listener saw {} events", all.len());
}

/// Case 2: a process waiting for its FAN_PRE_DIR_ACCESS dies on SIGKILL.
fn sigkill_while_waiting(d: &Path) {
    let (listener, count, _cmd) = holding_listener(d);
    let p = d.join("x");
    // SAFETY: the child stats and _exit()s.
    let child = match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            let _ = nix::sys::stat::stat(&p);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    if held_events(&count, 1) != 1 {
        tfail!("the child's stat sent no event");
    }
    kill(child, Signal::SIGKILL).or_brok("kill");
    match wait_for(child, RELEASE) {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {
            tpass!("SIGKILL ended a task waiting for its FAN_PRE_DIR_ACCESS")
        }
        other => tfail!("a task waiting for its FAN_PRE_DIR_ACCESS after SIGKILL: {other:?}"),
    }
    let _ = kill(listener, Signal::SIGKILL);
    let _ = wait_for(listener, RELEASE);
}
