//! The processes of one test run.
//!
//! ```text
//! runner ── fork ──> test process (own process group)
//!                      probe, setup,
//!                      run(ctx)                  (a test without cases)
//!                      or, per case: fork ──> case child: run_case(ctx, i)
//!                      cleanup
//!        ── fork ──> cleanup process             (only if the test process
//!                      cleanup                    died before its cleanup)
//! ```
//!
//! The cleanup runs in the test process, at its end or when a TBROK, TCONF
//! or panic (in setup or the body) ends it early: it sees what setup left in
//! the process's memory.  When the test process never got to its cleanup
//! (timeout, killed by a signal), the runner runs the cleanup in a fresh
//! child, which only has the [`Ctx`]: a cleanup must work from there too
//! (undo what is visible on the system, e.g. thaw the filesystem).
//!
//! Each case runs in its own child of the test process, so a TBROK or a
//! crash ends only that case; it inherits setup's memory and descriptors
//! (not its threads).  A case has the test's timeout; the whole run has
//! `(cases + 1) × timeout`.

use crate::res::{self, Decoder, Marker, Record, ResKind, Tally};
use crate::runner::{Ctx, Test};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, read, setpgid, ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// How long a SIGKILLed process may take to go away before it counts as
/// stuck in the kernel.
const REAP_GRACE: Duration = Duration::from_secs(15);

/// Print a result line from the parent (the runner's own findings).
pub(crate) fn parent_res(prefix: &str, kind: ResKind, msg: &str, tally: &mut Tally) {
    println!("{prefix}: {}: {msg}", kind.word());
    tally.add_msg(kind, msg);
}

/// What the markers of a test process said.
#[derive(Debug, Default)]
struct Marks {
    started: bool,
    cleanup_started: bool,
    stuck: bool,
}

/// Reads the result pipe into the tally.
struct Collector<'a> {
    rfd: OwnedFd,
    dec: Decoder,
    tally: &'a mut Tally,
    marks: Marks,
    open: bool,
}

impl Collector<'_> {
    fn take(&mut self, data: &[u8]) {
        for r in self.dec.feed(data) {
            match r {
                Record::Res(k, m) => self.tally.add_msg(k, &m),
                Record::Mark(Marker::Started) => self.marks.started = true,
                Record::Mark(Marker::CleanupStarted) => self.marks.cleanup_started = true,
                Record::Mark(Marker::Stuck) => self.marks.stuck = true,
            }
        }
    }

    /// Wait up to 100 ms for data and read what is there.  Reads only what
    /// poll says is there: a blocking read of a silent child's pipe would
    /// never get to a deadline.
    fn poll_once(&mut self) {
        if !self.open {
            std::thread::sleep(Duration::from_millis(50));
            return;
        }
        let mut fds = [PollFd::new(self.rfd.as_fd(), PollFlags::POLLIN)];
        if matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0) {
            let mut buf = [0u8; 4096];
            match read(self.rfd.as_raw_fd(), &mut buf) {
                Ok(0) => self.open = false,
                Ok(n) => self.take(&buf[..n]),
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => self.open = false,
            }
        }
    }

    /// Read what is left without blocking (grandchildren may still hold the
    /// pipe open).
    fn drain(&mut self) {
        let _ = nix::fcntl::fcntl(
            self.rfd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let mut buf = [0u8; 4096];
        while let Ok(n) = read(self.rfd.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            self.take(&buf[..n]);
        }
    }
}

enum Waited {
    Exited(WaitStatus),
    TimedOut,
}

/// Collect results until `child` exits or `deadline` passes.
fn collect(child: Pid, c: &mut Collector<'_>, deadline: Instant) -> Waited {
    loop {
        c.poll_once();
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s) => {
                c.drain();
                return Waited::Exited(s);
            }
            Err(_) => {
                c.drain();
                return Waited::Exited(WaitStatus::Exited(child, 255));
            }
        }
        if Instant::now() >= deadline {
            c.drain();
            return Waited::TimedOut;
        }
    }
}

/// Wait for a SIGKILLed child; false if it is still there after the grace
/// period (stuck in the kernel).
fn reap(child: Pid) -> bool {
    let deadline = Instant::now() + REAP_GRACE;
    while Instant::now() < deadline {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(50)),
            _ => return true,
        }
    }
    false
}

fn stack_of(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default()
}

fn status_problem(s: WaitStatus) -> Option<String> {
    match s {
        WaitStatus::Exited(_, 0) => None,
        WaitStatus::Exited(_, c) => Some(format!("exited with {c}")),
        WaitStatus::Signaled(_, sig, _) => Some(format!("killed by {sig:?}")),
        _ => None,
    }
}

/// Fork a child in its own process group that reports over a fresh pipe
/// and runs `f` (which should end the process; if it returns, the child
/// ends as at the end of a test); the parent gets its pid and the collector.
fn spawn<'a>(
    prefix: &str,
    ctx: &Ctx,
    tally: &'a mut Tally,
    f: impl FnOnce(),
) -> Result<(Pid, Collector<'a>), String> {
    let (rfd, wfd) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the runner is single-threaded here; the child only runs the
    // test code and then _exit()s.
    match unsafe { fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(rfd);
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            res::set_reporter(wfd.as_raw_fd(), prefix.to_string());
            std::mem::forget(wfd);
            let _ = std::env::set_current_dir(&ctx.mnt);
            f();
            res::exit_test()
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wfd);
            let _ = setpgid(child, child);
            Ok((
                child,
                Collector {
                    rfd,
                    dec: Decoder::default(),
                    tally,
                    marks: Marks::default(),
                    open: true,
                },
            ))
        }
    }
}

/// Run one test (all of `cases`, for a test with cases) in a test process
/// with a timeout, and its cleanup if the test process did not.  Returns
/// true if a process could not be reaped after SIGKILL (stuck in the
/// kernel).
pub(crate) fn run_test(
    t: &Test,
    ctx: &Ctx,
    prefix: &str,
    cases: &[u32],
    tally: &mut Tally,
) -> bool {
    let timeout = ctx.timeout;
    let budget = timeout
        * (if t.run_case.is_some() {
            cases.len() as u32 + 1
        } else {
            1
        });
    let spawned = spawn(prefix, ctx, tally, || test_process(t, ctx, cases));
    let (child, mut c) = match spawned {
        Ok(x) => x,
        Err(e) => {
            parent_res(prefix, ResKind::Broken, &e, tally);
            return false;
        }
    };
    let waited = collect(child, &mut c, Instant::now() + budget);
    let marks = std::mem::take(&mut c.marks);
    drop(c);
    let need_cleanup = t.cleanup.is_some() && marks.started && !marks.cleanup_started;
    match waited {
        Waited::Exited(s) => {
            // Leftover grandchildren holding the pipe go with the group.
            let _ = killpg(child, Signal::SIGKILL);
            if let Some(p) = status_problem(s) {
                parent_res(prefix, ResKind::Broken, &format!("test process {p}"), tally);
            }
            if need_cleanup {
                fresh_cleanup(t, ctx, prefix, tally);
            }
            marks.stuck
        }
        Waited::TimedOut => {
            parent_res(
                prefix,
                ResKind::Broken,
                &format!("timeout after {budget:?}"),
                tally,
            );
            let _ = killpg(child, Signal::SIGKILL);
            // Before reaping: the cleanup may be what lets a killed task
            // go (a thaw).
            if need_cleanup {
                fresh_cleanup(t, ctx, prefix, tally);
            }
            if reap(child) {
                return marks.stuck;
            }
            parent_res(
                prefix,
                ResKind::Broken,
                &format!(
                    "test process {child} did not die after SIGKILL; kernel stack:\n{}",
                    stack_of(child)
                ),
                tally,
            );
            true
        }
    }
}

/// The cleanup in a fresh child of the runner, with the test's timeout.
fn fresh_cleanup(t: &Test, ctx: &Ctx, prefix: &str, tally: &mut Tally) {
    let Some(cleanup) = t.cleanup else { return };
    println!(
        "{prefix}: TINFO: the test process ended before its cleanup: running it in a new process"
    );
    let prefix = format!("{prefix} (cleanup)");
    let spawned = spawn(&prefix, ctx, tally, || run_cleanup(cleanup, ctx));
    let (child, mut c) = match spawned {
        Ok(x) => x,
        Err(e) => {
            parent_res(&prefix, ResKind::Broken, &e, tally);
            return;
        }
    };
    let waited = collect(child, &mut c, Instant::now() + ctx.timeout);
    drop(c);
    let _ = killpg(child, Signal::SIGKILL);
    match waited {
        Waited::Exited(s) => {
            if let Some(p) = status_problem(s) {
                parent_res(&prefix, ResKind::Broken, &format!("cleanup {p}"), tally);
            }
        }
        Waited::TimedOut => {
            parent_res(
                &prefix,
                ResKind::Broken,
                &format!("cleanup: timeout after {:?}", ctx.timeout),
                tally,
            );
            reap(child);
        }
    }
}

fn run_cleanup(cleanup: fn(&Ctx), ctx: &Ctx) {
    res::send_marker(Marker::CleanupStarted);
    if catch_unwind(AssertUnwindSafe(|| cleanup(ctx))).is_err() {
        res::report(ResKind::Broken, format_args!("cleanup panicked"));
    }
}

/// The test process: probe, setup, body or cases, cleanup.
fn test_process(t: &Test, ctx: &Ctx, cases: &[u32]) -> ! {
    if let Some(p) = t.probe {
        match catch_unwind(AssertUnwindSafe(|| p(ctx))) {
            Ok(Ok(())) => res::set_probe_passed(),
            Ok(Err(why)) => res::report_exit(ResKind::Conf, format_args!("{why}")),
            Err(_) => res::report_exit(ResKind::Broken, format_args!("feature probe panicked")),
        }
    }
    res::send_marker(Marker::Started);
    if let Some(cleanup) = t.cleanup {
        let c = ctx.clone();
        res::arm_exit_hook(Box::new(move || run_cleanup(cleanup, &c)));
    }
    if let Some(setup) = t.setup {
        if catch_unwind(AssertUnwindSafe(|| setup(ctx))).is_err() {
            res::report(ResKind::Broken, format_args!("setup panicked"));
            res::exit_test();
        }
    }
    match t.run_case {
        None => {
            if catch_unwind(AssertUnwindSafe(|| (t.run)(ctx))).is_err() {
                res::report(ResKind::Broken, format_args!("test panicked"));
            }
        }
        Some(run_case) => {
            for &i in cases {
                if !case_child(run_case, ctx, i) {
                    res::report(
                        ResKind::Broken,
                        format_args!("cases after {i} not run: case {i} is stuck in the kernel"),
                    );
                    break;
                }
            }
        }
    }
    res::exit_test()
}

/// Run case `i` in a child of the test process, with the test's timeout.
/// False if the child could not be reaped after SIGKILL.
fn case_child(run_case: fn(&Ctx, u32), ctx: &Ctx, i: u32) -> bool {
    // SAFETY: the child runs the case and _exit()s; like any fork in a test,
    // it must not rely on threads of the test process.
    let child = match unsafe { fork() } {
        Err(e) => res::report_exit(ResKind::Broken, format_args!("fork for case {i}: {e}")),
        Ok(ForkResult::Child) => {
            res::set_case(i);
            if catch_unwind(AssertUnwindSafe(|| run_case(ctx, i))).is_err() {
                res::report(ResKind::Broken, format_args!("test panicked"));
            }
            // The cleanup belongs to the test process, not to a case: the
            // exit hook does not run here (it runs only where it was armed).
            res::exit_test()
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    let deadline = Instant::now() + ctx.timeout;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s) => {
                if let Some(p) = status_problem(s) {
                    res::report(ResKind::Broken, format_args!("case {i}: {p}"));
                }
                return true;
            }
            Err(e) => {
                res::report(ResKind::Broken, format_args!("case {i}: waitpid: {e}"));
                return true;
            }
        }
        if Instant::now() >= deadline {
            res::report(
                ResKind::Broken,
                format_args!("case {i}: timeout after {:?}", ctx.timeout),
            );
            let _ = kill(child, Signal::SIGKILL);
            if reap(child) {
                return true;
            }
            res::report(
                ResKind::Broken,
                format_args!(
                    "case {i}: process {child} did not die after SIGKILL; kernel stack:\n{}",
                    stack_of(child)
                ),
            );
            res::send_marker(Marker::Stuck);
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
