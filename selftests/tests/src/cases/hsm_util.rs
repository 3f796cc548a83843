//! Helpers of the hsm_* tests: run the HSM tools (hsm-populate, hsm-serve,
//! hsm-validate), which are built next to fpc-tests, on the test
//! filesystem.  Not a test itself.

use ltp::res::OrBrok;
use ltp::{tbrok, tconf, tinfo};
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

pub use hsm::ranges::RangeSet;

/// A tool binary in the directory of the running fpc-tests.
pub fn tool(name: &str) -> PathBuf {
    hsm::driver::tool(name).unwrap_or_else(|e| tbrok!("{e}"))
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

/// Run a system command that must succeed; TBROK (with its stderr)
/// otherwise.
pub fn run_cmd(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .or_brok(&format!("run {cmd}"));
    if !o.status.success() {
        tbrok!("{cmd} {args:?} failed ({}): {}", o.status, text(&o.stderr));
    }
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

/// `hsm-validate check PATH ARGS...` to start in the background, its
/// stdout discarded: a reader that runs while the test watches the daemon.
pub fn check_cmd(path: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tool("hsm-validate"));
    c.arg("check")
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// Wait for every reader: how many exited with success.
pub fn wait_ok(readers: Vec<Child>) -> usize {
    readers
        .into_iter()
        .map(|mut r| r.wait().or_brok("wait reader"))
        .filter(|st| st.success())
        .count()
}

/// The `key=value` pairs of a `stats:` or `ready:` line.
pub use hsm::driver::Kv;

pub fn kv(m: &Kv, key: &str) -> u64 {
    m.get(key)
        .copied()
        .unwrap_or_else(|| tbrok!("no {key}= in hsm-serve output {m:?}"))
}

/// A running hsm-serve (the one driver, [`hsm::driver::Serve`], with its
/// errors as TBROK/TCONF and its output logged); SIGKILLed on drop if still
/// running.
pub struct Serve {
    d: hsm::driver::Serve,
    /// The `ready:` line's pairs.
    pub ready: Kv,
}

/// How long hsm-serve may take to come up or to answer SIGUSR1 (TCG).
const WAIT: Duration = Duration::from_secs(60);

/// Other stdout lines of hsm-serve, for the record.
fn log_line(l: &str) {
    tinfo!("hsm-serve: {l}");
}

fn log_stderr(l: &str) {
    tinfo!("hsm-serve stderr: {l}");
}

impl Serve {
    /// Start `hsm-serve ARGS` and wait for its ready line.  TCONF when it
    /// exits with status 3 (kernel or filesystem lacks the feature), TBROK
    /// on any other failure.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Serve {
        let mut d =
            hsm::driver::Serve::spawn(args, Some(log_stderr)).unwrap_or_else(|e| tbrok!("{e}"));
        match d.wait_ready(WAIT, log_line) {
            Ok(l) => tinfo!("hsm-serve {l}"),
            Err(_) => {
                let st = match d.wait_exit(WAIT).or_brok("wait hsm-serve") {
                    Some(st) => st,
                    None => tbrok!("hsm-serve printed no ready line in {WAIT:?} and still runs"),
                };
                // Its whole stderr: the reader has reached EOF.
                let msg = d.stderr();
                if code(&st) == hsm::EXIT_UNSUPPORTED {
                    tconf!("{msg}");
                }
                tbrok!("hsm-serve did not get ready ({st}): {msg}");
            }
        }
        let ready = d.ready.clone();
        Serve { d, ready }
    }

    /// Counters now (SIGUSR1).
    pub fn stats(&mut self) -> Kv {
        self.d
            .stats(WAIT, log_line)
            .unwrap_or_else(|e| tbrok!("{e}"))
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.d.alive()
    }

    /// Send `sig` and wait for the exit: (status, final stats line if any).
    pub fn stop(mut self, sig: Signal) -> (ExitStatus, Option<Kv>) {
        self.d.signal(sig).or_brok("signal hsm-serve");
        let Some(st) = self.d.wait_exit(WAIT).or_brok("wait hsm-serve") else {
            tbrok!("hsm-serve still running {} s after {sig:?}", WAIT.as_secs());
        };
        (st, self.d.last_stats(Duration::from_secs(2)))
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

/// Standard serve arguments: SRC DST --mode MODE plus `extra`; SRC is a
/// directory or a URL.
pub fn serve_args(
    src: impl AsRef<OsStr>,
    dst: &Path,
    mode: &str,
    extra: &[&str],
) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        src.as_ref().into(),
        dst.into(),
        "--mode".into(),
        mode.into(),
    ];
    v.extend(extra.iter().map(|s| s.into()));
    v
}

/// MiB with two decimals, for the record.
pub fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
}
