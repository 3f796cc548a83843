//! The one driver of a running `hsm-serve`, for the programs that start the
//! daemon: fpc-tests' hsm_* cases (`tests/src/cases/hsm_util.rs`, which turn
//! its errors into TBROK/TCONF) and fpc-bench (`bench/src/sys.rs`, which
//! turns them into `anyhow` errors).  It spawns the daemon, reads its stdout
//! line by line in a thread, waits for the `ready:` and `stats:` lines,
//! signals it, and kills it on drop.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `key=value` pairs of a `ready:` or `stats:` line.
pub type Kv = std::collections::BTreeMap<String, u64>;

/// A tool (hsm-populate, hsm-serve, hsm-validate) built next to the running
/// executable; Err says where it was looked for.
pub fn tool(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let p = exe
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    if !p.is_file() {
        return Err(format!(
            "{} not found next to {} (build the workspace: cargo build --release)",
            p.display(),
            exe.display()
        ));
    }
    Ok(p)
}

/// Why no line with the wanted prefix came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLine {
    /// Nothing within the wait.
    Timeout,
    /// hsm-serve closed its stdout (it exited).
    Closed,
}

impl std::fmt::Display for NoLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoLine::Timeout => "no such line in time",
            NoLine::Closed => "hsm-serve closed its stdout",
        })
    }
}

/// A running hsm-serve; SIGKILLed on drop if still running.
pub struct Serve {
    child: Child,
    lines: Receiver<String>,
    /// The stderr reader when stderr is captured: it ends at EOF with the
    /// lines it read.
    stderr: Option<JoinHandle<Vec<String>>>,
    /// The `ready:` line's pairs, once [`Serve::wait_ready`] saw it.
    pub ready: Kv,
}

impl Serve {
    /// Start `hsm-serve ARGS` (not waiting for it to get ready).  With
    /// `on_stderr`, its stderr is read too: each line is given to
    /// `on_stderr` and kept for [`Serve::stderr`]; without, it is inherited.
    pub fn spawn<S: AsRef<OsStr>>(
        args: &[S],
        on_stderr: Option<fn(&str)>,
    ) -> Result<Serve, String> {
        let mut cmd = Command::new(tool("hsm-serve")?);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        if on_stderr.is_some() {
            cmd.stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn hsm-serve: {e}"))?;
        let out = child.stdout.take().ok_or("hsm-serve has no stdout pipe")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let stderr = match (on_stderr, child.stderr.take()) {
            (Some(log), Some(err)) => Some(std::thread::spawn(move || {
                let mut kept = Vec::new();
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    log(&l);
                    kept.push(l);
                }
                kept
            })),
            _ => None,
        };
        Ok(Serve {
            child,
            lines,
            stderr,
            ready: Kv::new(),
        })
    }

    /// The next stdout line starting with `prefix` within `wait`; the lines
    /// before it go to `other`.
    pub fn next_line(
        &mut self,
        prefix: &str,
        wait: Duration,
        mut other: impl FnMut(&str),
    ) -> Result<String, NoLine> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok(l),
                Ok(l) => other(&l),
                Err(RecvTimeoutError::Timeout) => return Err(NoLine::Timeout),
                Err(RecvTimeoutError::Disconnected) => return Err(NoLine::Closed),
            }
        }
    }

    /// Wait for the `ready:` line and keep its pairs in `ready`; the line.
    pub fn wait_ready(
        &mut self,
        wait: Duration,
        other: impl FnMut(&str),
    ) -> Result<String, NoLine> {
        let l = self.next_line("ready:", wait, other)?;
        self.ready = crate::stats::parse_line(&l, "ready:").unwrap_or_default();
        Ok(l)
    }

    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), sig)
    }

    /// The counters now: SIGUSR1, then the `stats:` line within `wait`.
    /// The daemon keeps running.
    pub fn stats(&mut self, wait: Duration, other: impl FnMut(&str)) -> Result<Kv, String> {
        self.signal(Signal::SIGUSR1)
            .map_err(|e| format!("signal hsm-serve: {e}"))?;
        let l = self
            .next_line("stats:", wait, other)
            .map_err(|e| format!("hsm-serve printed no stats line after SIGUSR1: {e}"))?;
        Ok(crate::stats::parse_line(&l, "stats:").unwrap_or_default())
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the exit, at most `limit`: None if it still runs then.
    pub fn wait_exit(&mut self, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the exit: the pairs of the last `stats:` line of what is left
    /// of stdout (read until it closes, or `wait` passes with it still open
    /// by a process that inherited it).
    pub fn last_stats(&mut self, wait: Duration) -> Option<Kv> {
        let mut last = None;
        while let Ok(l) = self.lines.recv_timeout(wait) {
            if let Some(m) = crate::stats::parse_line(&l, "stats:") {
                last = Some(m);
            }
        }
        last
    }

    /// After the exit: the captured stderr lines, joined with ` | `.  Joins
    /// the reader, which ends at EOF: every line the daemon wrote is there,
    /// no wait for it to "catch up" needed.
    pub fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
            .join(" | ")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
