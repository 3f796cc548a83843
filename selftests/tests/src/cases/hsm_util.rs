//! Helpers of the hsm_* tests: run the HSM tools (hsm-populate, hsm-serve,
//! hsm-validate), which are built next to fpc-tests, on the test
//! filesystem.  Not a test itself.

use ltp::res::OrBrok;
use ltp::{tbrok, tconf, tinfo};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use hsm::ranges::RangeSet;

/// A tool binary in the directory of the running fpc-tests.
pub fn tool(name: &str) -> PathBuf {
    let exe = std::env::current_exe().or_brok("current_exe");
    let p = exe
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    if !p.is_file() {
        tbrok!(
            "{} not found next to {} (build the hsm crate)",
            p.display(),
            exe.display()
        );
    }
    p
}

/// Run a tool to completion.
pub fn run_tool<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Output {
    Command::new(tool(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .or_brok(&format!("run {name}"))
}

/// Exit code, or 128 + signal number.
pub fn code(s: &ExitStatus) -> i32 {
    s.code()
        .unwrap_or_else(|| 128 + s.signal().unwrap_or_default())
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Run a tool that must succeed; TBROK (with its stderr) otherwise.
pub fn run_ok<S: AsRef<OsStr>>(name: &str, args: &[S]) -> String {
    let o = run_tool(name, args);
    if !o.status.success() {
        tbrok!(
            "{name} failed ({}): {} {}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    text(&o.stdout)
}

/// `hsm-validate create PATH --size SIZE`.
pub fn create_pattern(path: &Path, size: u64) {
    run_ok(
        "hsm-validate",
        &[
            OsStr::new("create"),
            path.as_os_str(),
            OsStr::new("--size"),
            OsStr::new(&size.to_string()),
        ],
    );
}

/// `hsm-validate check PATH ARGS...`: (exit code, stdout + stderr).
pub fn validate(path: &Path, args: &[&str]) -> (i32, String) {
    let mut a: Vec<&OsStr> = vec![OsStr::new("check"), path.as_os_str()];
    a.extend(args.iter().map(OsStr::new));
    let o = run_tool("hsm-validate", &a);
    (
        code(&o.status),
        format!("{}\n{}", text(&o.stdout), text(&o.stderr))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" | "),
    )
}

/// The `key=value` pairs of a `stats:` or `ready:` line.
pub type Kv = BTreeMap<String, u64>;

pub fn kv(m: &Kv, key: &str) -> u64 {
    m.get(key)
        .copied()
        .unwrap_or_else(|| tbrok!("no {key}= in hsm-serve output {m:?}"))
}

/// A running hsm-serve; SIGKILLed on drop if still running.
pub struct Serve {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The `ready:` line's pairs.
    pub ready: Kv,
}

/// How long hsm-serve may take to come up or to answer SIGUSR1 (TCG).
const WAIT: Duration = Duration::from_secs(60);

impl Serve {
    /// Start `hsm-serve ARGS` and wait for its ready line.  TCONF when it
    /// exits with status 3 (kernel or filesystem lacks the feature), TBROK
    /// on any other failure.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Serve {
        let mut child = Command::new(tool("hsm-serve"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .or_brok("spawn hsm-serve");
        let (tx, lines) = channel();
        let out = child
            .stdout
            .take()
            .ok_or("no pipe")
            .or_brok("hsm-serve stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child
            .stderr
            .take()
            .ok_or("no pipe")
            .or_brok("hsm-serve stderr");
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                tinfo!("hsm-serve stderr: {l}");
                e2.lock().unwrap().push(l);
            }
        });
        let mut s = Serve {
            child,
            lines,
            stderr,
            ready: Kv::new(),
        };
        match s.next_line("ready:") {
            Some(l) => {
                tinfo!("hsm-serve {l}");
                s.ready = hsm::stats::parse_line(&l, "ready:").unwrap_or_default();
            }
            None => {
                let st = s.child.wait().or_brok("wait hsm-serve");
                // Let the stderr reader catch up.
                std::thread::sleep(Duration::from_millis(100));
                let msg = s.stderr.lock().unwrap().join(" | ");
                if code(&st) == hsm::EXIT_UNSUPPORTED {
                    tconf!("{msg}");
                }
                tbrok!("hsm-serve did not get ready ({st}): {msg}");
            }
        }
        s
    }

    /// The next stdout line starting with `prefix` (others are logged);
    /// None if hsm-serve closed stdout or `WAIT` passed.
    fn next_line(&mut self, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(l) => tinfo!("hsm-serve: {l}"),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).or_brok("signal hsm-serve");
    }

    /// Counters now (SIGUSR1).
    pub fn stats(&mut self) -> Kv {
        self.signal(Signal::SIGUSR1);
        match self.next_line("stats:") {
            Some(l) => hsm::stats::parse_line(&l, "stats:").unwrap_or_default(),
            None => tbrok!("hsm-serve printed no stats line after SIGUSR1"),
        }
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send `sig` and wait for the exit: (status, final stats line if any).
    pub fn stop(mut self, sig: Signal) -> (ExitStatus, Option<Kv>) {
        self.signal(sig);
        let deadline = Instant::now() + WAIT;
        let st = loop {
            if let Some(st) = self.child.try_wait().or_brok("wait hsm-serve") {
                break st;
            }
            if Instant::now() > deadline {
                tbrok!("hsm-serve still running {} s after {sig:?}", WAIT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut last = None;
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if let Some(m) = hsm::stats::parse_line(&l, "stats:") {
                last = Some(m);
            }
        }
        (st, last)
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

/// The `user.hsm.stub` value of `path` (None: not a stub).
pub fn stub_tag(path: &Path) -> Option<String> {
    hsm::xattr::lget(path, hsm::STUB_XATTR)
        .or_brok("read user.hsm.stub")
        .map(|v| text(&v))
}

/// The populated ranges recorded in `user.hsm.populated` (None: absent).
pub fn populated_xattr(path: &Path) -> Option<RangeSet> {
    hsm::xattr::lget(path, hsm::POPULATED_XATTR)
        .or_brok("read user.hsm.populated")
        .map(|v| RangeSet::decode(&text(&v)).or_brok("decode user.hsm.populated"))
}

/// hsm-populate SRC DST, which must succeed; returns its summary line.
pub fn populate(src: &Path, dst: &Path) -> String {
    let out = run_ok("hsm-populate", &[src.as_os_str(), dst.as_os_str()]);
    tinfo!("{out}");
    out
}

/// Standard serve arguments: SRC DST --mode MODE plus `extra`.
pub fn serve_args(src: &Path, dst: &Path, mode: &str, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![src.into(), dst.into(), "--mode".into(), mode.into()];
    v.extend(extra.iter().map(|s| s.into()));
    v
}

/// MiB with two decimals, for the record.
pub fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
}
