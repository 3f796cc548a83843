//! Runs tests: one forked child per test and filesystem, a timeout, the
//! kernel log checked after each, a summary at the end.

use crate::fs::{Fs, Mounted};
use crate::kconfig::KConfig;
use crate::kmsg::Kmsg;
use crate::ktap;
use crate::res::{self, Outcome, ResKind, Tally};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, read, setpgid, ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A feature probe: `Err(reason)` makes the test TCONF.
pub type Probe = fn(&Ctx) -> Result<(), String>;

/// A test and what it needs.
pub struct Test {
    /// Unique name (the file it lives in).
    pub name: &'static str,
    /// One line: what it checks.
    pub doc: &'static str,
    pub needs_root: bool,
    /// `CONFIG_FOO`, `CONFIG_FOO=y`, `CONFIG_FOO=value`.
    pub needs_kconfigs: &'static [&'static str],
    /// Run once per filesystem, each freshly made and mounted at `Ctx::mnt`.
    /// Empty: run once in a scratch directory on tmpfs.
    pub filesystems: &'static [Fs],
    /// Oldest kernel (major, minor) the test applies to.
    pub min_kver: Option<(u32, u32)>,
    /// Feature probe run in the child before the body: `Err(reason)` is TCONF.
    pub probe: Option<Probe>,
    pub timeout: Duration,
    /// What the test guards: ("linux-git", "<commit>"), ("requirement", "3"), ...
    pub tags: &'static [(&'static str, &'static str)],
    pub run: fn(&Ctx),
}

impl Test {
    /// Defaults for the optional fields: root, no kconfig, no filesystem, 60 s.
    pub const DEFAULT: Test = Test {
        name: "",
        doc: "",
        needs_root: true,
        needs_kconfigs: &[],
        filesystems: &[],
        min_kver: None,
        probe: None,
        timeout: Duration::from_secs(60),
        tags: &[],
        run: |_| {},
    };
}

/// What a running test body sees.
pub struct Ctx {
    pub fs: Option<Fs>,
    /// Mount point of the test filesystem, or the scratch directory.
    pub mnt: PathBuf,
    /// The test's timeout, for tests that wait on their own helpers.
    pub timeout: Duration,
}

impl Ctx {
    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
}

struct Opts {
    ktap: bool,
    list: bool,
    only: Vec<String>,
    fs: Option<Vec<String>>,
    timeout_mul: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: fpc-tests [--list] [--ktap] [--fs ext4,xfs,...] [--timeout-mul X] [TEST...]\n\
         Runs every test (or the named ones) and prints\n\
         'Summary: N passed, N failed, N broken, N skipped'.  Exit 0 when nothing failed or broke."
    );
    std::process::exit(2)
}

fn parse_args() -> Opts {
    let mut o = Opts {
        ktap: false,
        list: false,
        only: vec![],
        fs: None,
        timeout_mul: 1.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ktap" => o.ktap = true,
            "--list" => o.list = true,
            "--fs" => {
                let v = args.next().unwrap_or_else(|| usage());
                o.fs = Some(v.split(',').map(str::to_string).collect());
            }
            "--timeout-mul" => {
                let v = args.next().unwrap_or_else(|| usage());
                o.timeout_mul = v.parse().unwrap_or_else(|_| {
                    eprintln!("--timeout-mul: not a number: {v}");
                    std::process::exit(2)
                });
            }
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}");
                usage()
            }
            s => o.only.push(s.to_string()),
        }
    }
    o
}

fn kernel_version() -> Option<(u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    let r = u.release().to_string_lossy().into_owned();
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// One test on one filesystem.
struct Variant<'a> {
    test: &'a Test,
    fs: Option<Fs>,
}

impl Variant<'_> {
    fn name(&self) -> String {
        match self.fs {
            Some(f) => format!("{}:{}", self.test.name, f.name()),
            None => self.test.name.to_string(),
        }
    }
}

#[derive(Default)]
struct Totals {
    passed: u32,
    failed: u32,
    broken: u32,
    skipped: u32,
}

/// Entry point for a test binary: run `tests` as the command line asks.
pub fn main(tests: &[Test]) -> ExitCode {
    let o = parse_args();
    for t in tests {
        if !o.only.is_empty() && !o.only.iter().any(|n| n == t.name) {
            continue;
        }
        if o.list {
            println!("{:28} {}", t.name, t.doc);
            for (k, v) in t.tags {
                println!("{:28}   {k}: {v}", "");
            }
        }
    }
    if o.list {
        return ExitCode::SUCCESS;
    }
    for n in &o.only {
        if !tests.iter().any(|t| t.name == n) {
            eprintln!("fpc-tests: no test named {n} (see --list)");
            return ExitCode::from(2);
        }
    }
    let mut variants = Vec::new();
    for t in tests
        .iter()
        .filter(|t| o.only.is_empty() || o.only.iter().any(|n| n == t.name))
    {
        if t.filesystems.is_empty() {
            variants.push(Variant { test: t, fs: None });
        }
        for &f in t.filesystems {
            if o.fs
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == f.name()))
            {
                variants.push(Variant {
                    test: t,
                    fs: Some(f),
                });
            }
        }
    }

    let root = nix::unistd::geteuid().is_root();
    let kconfig = KConfig::load();
    if let Err(e) = &kconfig {
        println!("fpc-tests: TINFO: {e:#}: kernel config requirements cannot be checked");
    }
    let kver = kernel_version();
    let scratch = match Scratch::new(root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fpc-tests: cannot set up a scratch area: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if o.ktap {
        ktap::header(variants.len());
    }
    let mut totals = Totals::default();
    let mut stuck = false;
    for (i, v) in variants.iter().enumerate() {
        let name = v.name();
        let (outcome, reason) = if stuck {
            (
                Outcome::Broken,
                "not run: an earlier test left a task stuck in the kernel".to_string(),
            )
        } else {
            let (oc, r, s) = run_variant(v, &o, root, kconfig.as_ref().ok(), kver, &scratch);
            stuck = s;
            (oc, r)
        };
        match outcome {
            Outcome::Passed => totals.passed += 1,
            Outcome::Failed => totals.failed += 1,
            Outcome::Broken => totals.broken += 1,
            Outcome::Skipped => totals.skipped += 1,
        }
        if o.ktap {
            ktap::result(i + 1, &name, outcome, &reason);
        } else {
            println!("{name}: {} {reason}", outcome_word(outcome));
        }
    }
    drop(scratch);
    let line = format!(
        "Summary: {} passed, {} failed, {} broken, {} skipped",
        totals.passed, totals.failed, totals.broken, totals.skipped
    );
    if o.ktap {
        println!("# {line}");
    } else {
        println!("{line}");
    }
    if totals.failed + totals.broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Passed => "PASSED",
        Outcome::Failed => "FAILED",
        Outcome::Broken => "BROKEN",
        Outcome::Skipped => "SKIPPED",
    }
}

/// Print a result line from the parent (the runner's own findings).
fn parent_res(prefix: &str, kind: ResKind, msg: &str, tally: &mut Tally) {
    println!("{prefix}: {}: {msg}", kind.word());
    tally.add(kind);
}

/// Returns (outcome, reason, a task is stuck in the kernel).
fn run_variant(
    v: &Variant<'_>,
    o: &Opts,
    root: bool,
    kconfig: Option<&KConfig>,
    kver: Option<(u32, u32)>,
    scratch: &Scratch,
) -> (Outcome, String, bool) {
    let t = v.test;
    let name = v.name();
    let prefix = if o.ktap {
        format!("# {name}")
    } else {
        name.clone()
    };
    let mut tally = Tally::default();
    let skip = |why: String| {
        println!("{prefix}: TCONF: {why}");
        (Outcome::Skipped, why, false)
    };
    if t.needs_root && !root {
        return skip("needs root".into());
    }
    if let (Some(min), Some(have)) = (t.min_kver, kver) {
        if have < min {
            return skip(format!("needs kernel >= {}.{}", min.0, min.1));
        }
    }
    let mut reqs: Vec<&str> = t.needs_kconfigs.to_vec();
    if let Some(f) = v.fs {
        reqs.push(f.kconfig());
    }
    if let Some(kc) = kconfig {
        let missing = kc.missing(&reqs);
        if !missing.is_empty() {
            return skip(format!("kernel config lacks {}", missing.join(" ")));
        }
    }

    let kmsg = Kmsg::open_at_end().ok();
    let mnt = scratch.dir.join("mnt");
    let mounted: Option<Mounted> = match v.fs {
        Some(f) => match f.mount(&scratch.dir, &mnt) {
            Ok(m) => Some(m),
            Err(e) => {
                parent_res(
                    &prefix,
                    ResKind::Broken,
                    &format!("{} setup: {e:#}", f.name()),
                    &mut tally,
                );
                return (Outcome::Broken, "filesystem setup failed".into(), false);
            }
        },
        None => {
            let _ = std::fs::remove_dir_all(&mnt);
            if let Err(e) = std::fs::create_dir_all(&mnt) {
                parent_res(
                    &prefix,
                    ResKind::Broken,
                    &format!("mkdir {}: {e}", mnt.display()),
                    &mut tally,
                );
                return (Outcome::Broken, "scratch setup failed".into(), false);
            }
            None
        }
    };
    let timeout = Duration::from_secs_f64(t.timeout.as_secs_f64() * o.timeout_mul);
    let ctx = Ctx {
        fs: v.fs,
        mnt: mnt.clone(),
        timeout,
    };
    let stuck = run_child(t, &ctx, &prefix, timeout, &mut tally);
    if !stuck {
        drop(mounted);
    } else {
        std::mem::forget(mounted);
    }
    // Give deferred work (e.g. a lockdep report from an exiting task) a
    // moment to reach the log.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(k) = kmsg {
        for l in k.bad_lines() {
            parent_res(
                &prefix,
                ResKind::Fail,
                &format!("kernel log: {l}"),
                &mut tally,
            );
        }
    }
    let outcome = tally.outcome();
    let reason = match outcome {
        Outcome::Broken if tally.broken + tally.warn == 0 => {
            parent_res(
                &prefix,
                ResKind::Broken,
                "test reported no result",
                &mut tally,
            );
            "no result".into()
        }
        Outcome::Skipped => "TCONF".into(),
        _ => String::new(),
    };
    (outcome, reason, stuck)
}

/// Fork, run the body, collect results.  Returns true if the child could not
/// be reaped after SIGKILL (stuck in the kernel).
fn run_child(t: &Test, ctx: &Ctx, prefix: &str, timeout: Duration, tally: &mut Tally) -> bool {
    let (rfd, wfd) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            parent_res(prefix, ResKind::Broken, &format!("pipe: {e}"), tally);
            return false;
        }
    };
    // SAFETY: the runner is single-threaded here; the child only runs the
    // test body and then _exit()s.
    let child = match unsafe { fork() } {
        Err(e) => {
            parent_res(prefix, ResKind::Broken, &format!("fork: {e}"), tally);
            return false;
        }
        Ok(ForkResult::Child) => {
            drop(rfd);
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            res::set_reporter(wfd.as_raw_fd(), prefix.to_string());
            std::mem::forget(wfd);
            let _ = std::env::set_current_dir(&ctx.mnt);
            if let Some(p) = t.probe {
                if let Err(why) = p(ctx) {
                    res::report_exit(ResKind::Conf, format_args!("{why}"));
                }
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(ctx)));
            if r.is_err() {
                res::report(ResKind::Broken, format_args!("test panicked"));
            }
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(wfd);
    let _ = setpgid(child, child);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    let mut status = None;
    let mut pipe_open = true;
    loop {
        if pipe_open {
            let mut fds = [PollFd::new(rfd.as_fd(), PollFlags::POLLIN)];
            // Read only what poll says is there: a blocking read of a silent
            // child's pipe would never get to the deadline below.
            if matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0) {
                match read(rfd.as_raw_fd(), &mut buf) {
                    Ok(0) => pipe_open = false,
                    Ok(n) => buf[..n]
                        .iter()
                        .filter_map(|&c| ResKind::from_code(c))
                        .for_each(|k| tally.add(k)),
                    Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                    Err(_) => pipe_open = false,
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_none() {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(s) => status = Some(s),
                Err(_) => status = Some(WaitStatus::Exited(child, 255)),
            }
        }
        // Done when the child is gone; leftover grandchildren holding the
        // pipe are killed with the process group.
        if let Some(s) = status {
            drain(&rfd, tally);
            let _ = killpg(child, Signal::SIGKILL);
            match s {
                WaitStatus::Exited(_, 0) => {}
                WaitStatus::Exited(_, c) => parent_res(
                    prefix,
                    ResKind::Broken,
                    &format!("test process exited with {c}"),
                    tally,
                ),
                WaitStatus::Signaled(_, sig, _) => parent_res(
                    prefix,
                    ResKind::Broken,
                    &format!("test process killed by {sig:?}"),
                    tally,
                ),
                _ => {}
            }
            return false;
        }
        if Instant::now() >= deadline {
            parent_res(
                prefix,
                ResKind::Broken,
                &format!("timeout after {:.0} s", timeout.as_secs_f64()),
                tally,
            );
            let _ = killpg(child, Signal::SIGKILL);
            let reap_deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < reap_deadline {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(100)),
                    _ => return false,
                }
            }
            dump_stuck(child, prefix, tally);
            return true;
        }
    }
}

fn drain(rfd: &std::os::fd::OwnedFd, tally: &mut Tally) {
    let _ = nix::fcntl::fcntl(
        rfd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 256];
    while let Ok(n) = read(rfd.as_raw_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        buf[..n]
            .iter()
            .filter_map(|&c| ResKind::from_code(c))
            .for_each(|k| tally.add(k));
    }
}

fn dump_stuck(child: Pid, prefix: &str, tally: &mut Tally) {
    let stack = std::fs::read_to_string(format!("/proc/{child}/stack")).unwrap_or_default();
    parent_res(
        prefix,
        ResKind::Broken,
        &format!("test process {child} did not die after SIGKILL; kernel stack:\n{stack}"),
        tally,
    );
}

/// A private tmpfs for images and mount points, removed at the end.
struct Scratch {
    dir: PathBuf,
    mounted: bool,
}

impl Scratch {
    fn new(root: bool) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fpc-tests.{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut s = Scratch {
            dir,
            mounted: false,
        };
        if root {
            crate::fs::run(
                std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=2g", "fpc-scratch"])
                    .arg(&s.dir),
            )?;
            s.mounted = true;
        }
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep_forever(_: &Ctx) {
        std::thread::sleep(Duration::from_secs(600));
    }

    /// A child that hangs without writing a result still hits its timeout
    /// (the runner once blocked in read(2) on the silent pipe).
    #[test]
    fn silent_child_times_out() {
        let t = Test {
            name: "silent",
            doc: "sleeps",
            run: sleep_forever,
            ..Test::DEFAULT
        };
        let ctx = Ctx {
            fs: None,
            mnt: std::env::temp_dir(),
            timeout: Duration::from_millis(300),
        };
        let mut tally = Tally::default();
        let t0 = Instant::now();
        let stuck = run_child(&t, &ctx, "silent", ctx.timeout, &mut tally);
        assert!(!stuck, "a sleeping child must be reaped after SIGKILL");
        assert_eq!(tally.broken, 1, "the timeout is one TBROK");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t0.elapsed()
        );
    }
}
