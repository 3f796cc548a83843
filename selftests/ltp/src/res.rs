//! Result reporting.
//!
//! A test body runs in a forked child.  Every result is printed there and
//! also sent to the parent over a pipe, as one record (kind and message), so
//! the parent can count results (and knows the reason of a TCONF) even if the
//! child later crashes or hangs.

use nix::errno::Errno;
use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The LTP result words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResKind {
    Pass,
    Fail,
    Broken,
    Conf,
    Warn,
    Info,
}

impl ResKind {
    pub fn word(self) -> &'static str {
        match self {
            ResKind::Pass => "TPASS",
            ResKind::Fail => "TFAIL",
            ResKind::Broken => "TBROK",
            ResKind::Conf => "TCONF",
            ResKind::Warn => "TWARN",
            ResKind::Info => "TINFO",
        }
    }

    fn code(self) -> u8 {
        match self {
            ResKind::Pass => b'P',
            ResKind::Fail => b'F',
            ResKind::Broken => b'B',
            ResKind::Conf => b'C',
            ResKind::Warn => b'W',
            ResKind::Info => b'I',
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            b'P' => ResKind::Pass,
            b'F' => ResKind::Fail,
            b'B' => ResKind::Broken,
            b'C' => ResKind::Conf,
            b'W' => ResKind::Warn,
            b'I' => ResKind::Info,
            _ => return None,
        })
    }
}

/// What the test process tells the runner besides results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Setup (or the body, for a test without setup) is about to start: from
    /// now on the cleanup must run.
    Started,
    /// The cleanup has started (it is not run a second time).
    CleanupStarted,
    /// A case child could not be reaped after SIGKILL.
    Stuck,
}

impl Marker {
    fn code(self) -> u8 {
        match self {
            Marker::Started => b's',
            Marker::CleanupStarted => b'c',
            Marker::Stuck => b'x',
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            b's' => Marker::Started,
            b'c' => Marker::CleanupStarted,
            b'x' => Marker::Stuck,
            _ => return None,
        })
    }
}

/// One record of the result pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Res(ResKind, String),
    Mark(Marker),
}

/// Longest message sent over the pipe (the full text is printed anyway):
/// a record stays far below PIPE_BUF, so its write(2) is atomic even when
/// several threads or processes of one test report at once.
const MAX_MSG: usize = 1024;

impl Record {
    /// `code, u16 length (little endian), message`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (code, msg) = match self {
            Record::Res(k, m) => (k.code(), m.as_str()),
            Record::Mark(m) => (m.code(), ""),
        };
        let mut end = msg.len().min(MAX_MSG);
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let mut v = Vec::with_capacity(3 + end);
        v.push(code);
        v.extend_from_slice(&(end as u16).to_le_bytes());
        v.extend_from_slice(&msg.as_bytes()[..end]);
        v
    }
}

/// Reassembles records from what the parent reads off the pipe (a read may
/// end in the middle of one).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<Record> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= 3 {
            let len = u16::from_le_bytes([self.buf[at + 1], self.buf[at + 2]]) as usize;
            if self.buf.len() - at < 3 + len {
                break;
            }
            let code = self.buf[at];
            let msg = String::from_utf8_lossy(&self.buf[at + 3..at + 3 + len]).into_owned();
            if let Some(k) = ResKind::from_code(code) {
                out.push(Record::Res(k, msg));
            } else if let Some(m) = Marker::from_code(code) {
                out.push(Record::Mark(m));
            }
            at += 3 + len;
        }
        self.buf.drain(..at);
        out
    }
}

/// Pipe to the parent (-1 when running outside the runner, e.g. in unit tests).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
/// Name printed in front of each result line; set once in the forked child.
static PREFIX: OnceLock<String> = OnceLock::new();
/// The case a case child runs (u32::MAX: none), printed after the prefix.
static CASE: AtomicU32 = AtomicU32::new(u32::MAX);
/// The feature probe of this test ran and passed: a later TCONF means the
/// feature is there but did not work, which is a failure.
static PROBE_PASSED: AtomicBool = AtomicBool::new(false);

/// What runs when the test ends early (TBROK, TCONF) or at its end: the
/// test's cleanup.  It runs only in the process that armed it, so a TBROK in
/// a helper child forked by the test does not run the cleanup there.
struct ExitHook {
    pid: u32,
    hook: Box<dyn FnOnce() + Send>,
}

static EXIT_HOOK: Mutex<Option<ExitHook>> = Mutex::new(None);

/// Called in the child before the test body runs.
pub(crate) fn set_reporter(fd: RawFd, prefix: String) {
    REPORT_FD.store(fd, Ordering::SeqCst);
    // Panic messages straight to fd 2: the default hook takes the stderr
    // lock, which another thread of the forking process may have held.
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("{}: panic: {info}\n", self::prefix());
        // SAFETY: a write from a valid buffer to fd 2.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    }));
    // Only forked children set it, each once, right after fork(): the
    // parent never does, so it is always unset here.
    let _ = PREFIX.set(prefix);
}

pub(crate) fn set_case(case: u32) {
    CASE.store(case, Ordering::SeqCst);
}

pub(crate) fn set_probe_passed() {
    PROBE_PASSED.store(true, Ordering::SeqCst);
}

pub(crate) fn arm_exit_hook(hook: Box<dyn FnOnce() + Send>) {
    let pid = std::process::id();
    *EXIT_HOOK.lock().unwrap_or_else(|e| e.into_inner()) = Some(ExitHook { pid, hook });
}

/// Run the exit hook if this process armed it (at most once).
pub(crate) fn run_exit_hook() {
    let h = EXIT_HOOK.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = h {
        if h.pid == std::process::id() {
            (h.hook)();
        }
    }
}

fn prefix() -> &'static str {
    PREFIX.get().map(String::as_str).unwrap_or("")
}

fn send(rec: &Record) {
    let fd = REPORT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = rec.encode();
        // SAFETY: fd is the write end of the result pipe, owned by this
        // process for its whole life; a write below PIPE_BUF is atomic.
        unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    }
}

/// One write(2) of a whole line to fd 1, not through `std::io::stdout()`:
/// its lock may have been held by another thread of the process that forked
/// this one (in the unit tests), and lines of threads and processes of one
/// test do not interleave.
fn write_stdout(mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: a write from a valid buffer to fd 1.
        let n = unsafe { libc::write(1, b.as_ptr().cast(), b.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

pub(crate) fn send_marker(m: Marker) {
    send(&Record::Mark(m));
}

/// Report one result.  Prefer the macros.
pub fn report(kind: ResKind, args: fmt::Arguments<'_>) {
    let mut msg = args.to_string();
    let mut kind = kind;
    if kind == ResKind::Conf && PROBE_PASSED.load(Ordering::SeqCst) {
        kind = ResKind::Fail;
        msg = format!("TCONF after the feature probe passed: {msg}");
    }
    let case = match CASE.load(Ordering::SeqCst) {
        u32::MAX => String::new(),
        c => format!(" case {c}"),
    };
    let line = format!("{}{case}: {}: {msg}\n", prefix(), kind.word());
    write_stdout(line.as_bytes());
    if kind != ResKind::Info {
        send(&Record::Res(kind, msg));
    }
}

/// End the test process: run the cleanup (if this process armed it) and
/// _exit(0).
pub fn exit_test() -> ! {
    run_exit_hook();
    // Skip destructors and atexit handlers of the forked child: the parent
    // cleans up the mount and the image.
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(0) }
}

/// Report and end the test: TBROK or TCONF (or TFAIL, for a failure after
/// which nothing else can be checked).  The cleanup still runs.
pub fn report_exit(kind: ResKind, args: fmt::Arguments<'_>) -> ! {
    report(kind, args);
    exit_test()
}

#[macro_export]
macro_rules! tpass { ($($a:tt)*) => { $crate::res::report($crate::ResKind::Pass, format_args!($($a)*)) } }
#[macro_export]
macro_rules! tfail { ($($a:tt)*) => { $crate::res::report($crate::ResKind::Fail, format_args!($($a)*)) } }
#[macro_export]
macro_rules! tinfo { ($($a:tt)*) => { $crate::res::report($crate::ResKind::Info, format_args!($($a)*)) } }
#[macro_export]
macro_rules! twarn { ($($a:tt)*) => { $crate::res::report($crate::ResKind::Warn, format_args!($($a)*)) } }
/// Report TBROK and end the test.
#[macro_export]
macro_rules! tbrok { ($($a:tt)*) => { $crate::res::report_exit($crate::ResKind::Broken, format_args!($($a)*)) } }
/// Report TCONF and end the test.
#[macro_export]
macro_rules! tconf { ($($a:tt)*) => { $crate::res::report_exit($crate::ResKind::Conf, format_args!($($a)*)) } }

/// Pass if `cond`, fail otherwise; both with the same description.
#[macro_export]
macro_rules! tcheck {
    ($cond:expr, $($a:tt)*) => {
        if $cond {
            $crate::tpass!($($a)*)
        } else {
            $crate::tfail!($($a)*)
        }
    };
}

/// The errno behind an error: the error itself or any error in its
/// `source()` chain that is an [`Errno`] or an `std::io::Error` from a
/// system call (so `nix::Result`, `std::io::Result` and library errors that
/// keep the errno as their source all work).
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<Errno> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(n) = e.downcast_ref::<Errno>() {
            return Some(*n);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(Errno::from_raw(n));
            }
        }
        cur = e.source();
    }
    None
}

fn errno_list(want: &[Errno]) -> String {
    want.iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// [`texp_fail!`](crate::texp_fail): TPASS if `r` failed with one of `want`, TFAIL otherwise,
/// saying what it got.  Returns whether it passed.
pub fn exp_fail<T, E: std::error::Error + 'static>(
    r: Result<T, E>,
    want: &[Errno],
    desc: fmt::Arguments<'_>,
) -> bool {
    let wants = errno_list(want);
    match r {
        Ok(_) => {
            report(
                ResKind::Fail,
                format_args!("{desc}: succeeded, expected {wants}"),
            );
            false
        }
        Err(e) => match errno_of(&e) {
            Some(n) if want.contains(&n) => {
                report(ResKind::Pass, format_args!("{desc}: failed with {n:?}"));
                true
            }
            Some(n) => {
                report(
                    ResKind::Fail,
                    format_args!("{desc}: failed with {n:?} ({e}), expected {wants}"),
                );
                false
            }
            None => {
                report(
                    ResKind::Fail,
                    format_args!("{desc}: failed without an errno ({e}), expected {wants}"),
                );
                false
            }
        },
    }
}

/// [`texp_pass!`](crate::texp_pass): TPASS if `r` is `Ok`, TFAIL with the error otherwise.
/// Returns the value.
pub fn exp_pass<T, E: fmt::Display>(r: Result<T, E>, desc: fmt::Arguments<'_>) -> Option<T> {
    match r {
        Ok(v) => {
            report(ResKind::Pass, format_args!("{desc}: succeeded"));
            Some(v)
        }
        Err(e) => {
            report(ResKind::Fail, format_args!("{desc}: failed: {e}"));
            None
        }
    }
}

/// [`texp_fd!`](crate::texp_fd): TPASS if `r` is `Ok` with a valid descriptor, TFAIL
/// otherwise.  Returns the value.
pub fn exp_fd<T: std::os::fd::AsRawFd, E: fmt::Display>(
    r: Result<T, E>,
    desc: fmt::Arguments<'_>,
) -> Option<T> {
    match r {
        Ok(v) if v.as_raw_fd() >= 0 => {
            report(
                ResKind::Pass,
                format_args!("{desc}: returned fd {}", v.as_raw_fd()),
            );
            Some(v)
        }
        Ok(v) => {
            report(
                ResKind::Fail,
                format_args!("{desc}: returned invalid fd {}", v.as_raw_fd()),
            );
            None
        }
        Err(e) => {
            report(ResKind::Fail, format_args!("{desc}: failed: {e}"));
            None
        }
    }
}

/// Like LTP's `TST_EXP_FAIL(expr, errno, ...)`: `expr` (a `Result` whose
/// error carries an errno, see [`errno_of`]) must fail with `errno` (or one
/// of a `[list]`): TPASS, else TFAIL saying what it got.  Evaluates to
/// whether it passed.
///
/// ```text
/// texp_fail!(g.mark(FAN_MARK_ADD, mask, &fifo), Errno::EINVAL, "mark on a fifo");
/// texp_fail!(madvise(...), [Errno::EFAULT, Errno::EIO], "MADV_POPULATE_READ");
/// ```
#[macro_export]
macro_rules! texp_fail {
    ($expr:expr, [$($errno:expr),+ $(,)?], $($a:tt)*) => {
        $crate::res::exp_fail($expr, &[$($errno),+], format_args!($($a)*))
    };
    ($expr:expr, $errno:expr, $($a:tt)*) => {
        $crate::res::exp_fail($expr, &[$errno], format_args!($($a)*))
    };
}

/// Like LTP's `TST_EXP_PASS(expr, ...)`: `expr` (a `Result`) must succeed:
/// TPASS, else TFAIL with the error.  Evaluates to `Option` of the value.
#[macro_export]
macro_rules! texp_pass {
    ($expr:expr, $($a:tt)*) => {
        $crate::res::exp_pass($expr, format_args!($($a)*))
    };
}

/// Like LTP's `TST_EXP_FD(expr, ...)`: `expr` must give a valid file
/// descriptor (anything `AsRawFd`).  Evaluates to `Option` of it.
#[macro_export]
macro_rules! texp_fd {
    ($expr:expr, $($a:tt)*) => {
        $crate::res::exp_fd($expr, format_args!($($a)*))
    };
}

/// Unwrap a `Result` or end the test with TBROK naming the operation.
pub trait OrBrok<T> {
    fn or_brok(self, what: &str) -> T;
}

impl<T, E: fmt::Display> OrBrok<T> for Result<T, E> {
    fn or_brok(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => report_exit(ResKind::Broken, format_args!("{what}: {e}")),
        }
    }
}

/// The outcome of one test run (one test on one filesystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Broken,
    Skipped,
}

/// What the parent knows about a finished child.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub pass: u32,
    pub fail: u32,
    pub broken: u32,
    pub conf: u32,
    pub warn: u32,
    /// The message of every TCONF, in order.
    pub conf_reasons: Vec<String>,
    /// The message of the first TFAIL, TBROK or TWARN.
    pub first_problem: Option<String>,
}

impl Tally {
    pub fn add(&mut self, k: ResKind) {
        match k {
            ResKind::Pass => self.pass += 1,
            ResKind::Fail => self.fail += 1,
            ResKind::Broken => self.broken += 1,
            ResKind::Conf => self.conf += 1,
            ResKind::Warn => self.warn += 1,
            ResKind::Info => {}
        }
    }

    /// Count a result and keep its message where the verdict needs it.
    pub fn add_msg(&mut self, k: ResKind, msg: &str) {
        self.add(k);
        match k {
            ResKind::Conf => self.conf_reasons.push(msg.to_string()),
            ResKind::Fail | ResKind::Broken | ResKind::Warn if self.first_problem.is_none() => {
                self.first_problem = Some(msg.to_string())
            }
            _ => {}
        }
    }

    /// LTP's rules: any failure fails; a break (or a warning, or a test that
    /// reported nothing at all) is broken; TCONF without a pass is skipped.
    pub fn outcome(&self) -> Outcome {
        if self.fail > 0 {
            Outcome::Failed
        } else if self.broken > 0 || self.warn > 0 {
            Outcome::Broken
        } else if self.pass > 0 {
            Outcome::Passed
        } else if self.conf > 0 {
            Outcome::Skipped
        } else {
            Outcome::Broken
        }
    }
}

/// The page size (`sysconf(_SC_PAGESIZE)`, LTP's `getpagesize()`), as a
/// `u64` for file offsets.  Never hard-code 4096.
pub fn getpagesize() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
            Ok(Some(n)) if n > 0 => n as u64,
            // POSIX requires the value; this is not reached on Linux.
            _ => 4096,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_rules() {
        let t = |p, f, b, c, w| Tally {
            pass: p,
            fail: f,
            broken: b,
            conf: c,
            warn: w,
            ..Tally::default()
        };
        let cases = [
            (t(1, 0, 0, 0, 0), Outcome::Passed),
            (t(3, 1, 0, 0, 0), Outcome::Failed),
            (t(0, 1, 1, 0, 0), Outcome::Failed),
            (t(2, 0, 1, 0, 0), Outcome::Broken),
            (t(2, 0, 0, 0, 1), Outcome::Broken),
            (t(0, 0, 0, 1, 0), Outcome::Skipped),
            (t(1, 0, 0, 1, 0), Outcome::Passed),
            // asserting nothing is a defect, not a pass
            (t(0, 0, 0, 0, 0), Outcome::Broken),
        ];
        for (tally, want) in cases {
            assert_eq!(tally.outcome(), want, "{tally:?}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for k in [
            ResKind::Pass,
            ResKind::Fail,
            ResKind::Broken,
            ResKind::Conf,
            ResKind::Warn,
            ResKind::Info,
        ] {
            assert_eq!(ResKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ResKind::from_code(b'x'), None);
        for m in [Marker::Started, Marker::CleanupStarted, Marker::Stuck] {
            assert_eq!(Marker::from_code(m.code()), Some(m));
            assert_eq!(ResKind::from_code(m.code()), None);
        }
    }

    /// Records survive being split anywhere between reads; long messages are
    /// cut on a character boundary.
    #[test]
    fn records_reassemble() {
        let recs = [
            Record::Res(ResKind::Conf, "no /dev/pmem0: boot with memmap=".into()),
            Record::Mark(Marker::Started),
            Record::Res(ResKind::Pass, String::new()),
            Record::Res(ResKind::Fail, "é".repeat(MAX_MSG)),
        ];
        let bytes: Vec<u8> = recs.iter().flat_map(|r| r.encode()).collect();
        for chunk in [1, 2, 3, 7, 1000, bytes.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                got.extend(d.feed(c));
            }
            assert_eq!(got.len(), recs.len(), "chunk {chunk}");
            assert_eq!(got[..3], recs[..3], "chunk {chunk}");
            let Record::Res(ResKind::Fail, long) = &got[3] else {
                panic!("{:?}", got[3])
            };
            assert!(long.len() <= MAX_MSG && long.chars().all(|c| c == 'é'));
        }
    }

    #[test]
    fn errno_from_chains() {
        #[derive(Debug)]
        struct Wrap(Errno);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "wrapped")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(errno_of(&Errno::EFAULT), Some(Errno::EFAULT));
        assert_eq!(
            errno_of(&std::io::Error::from_raw_os_error(libc::EBUSY)),
            Some(Errno::EBUSY)
        );
        assert_eq!(errno_of(&Wrap(Errno::EINVAL)), Some(Errno::EINVAL));
        assert_eq!(errno_of(&std::io::Error::other("no errno")), None);
    }

    #[test]
    fn expectations() {
        // Outside the runner the reports only go to stdout.
        assert!(exp_fail::<(), _>(
            Err(Errno::EINVAL),
            &[Errno::EINVAL],
            format_args!("x")
        ));
        assert!(exp_fail::<(), _>(
            Err(Errno::EIO),
            &[Errno::EFAULT, Errno::EIO],
            format_args!("x")
        ));
        assert!(!exp_fail::<(), _>(
            Err(Errno::EPERM),
            &[Errno::EINVAL],
            format_args!("x")
        ));
        assert!(!exp_fail::<_, Errno>(
            Ok(1),
            &[Errno::EINVAL],
            format_args!("x")
        ));
        assert_eq!(exp_pass::<_, Errno>(Ok(3), format_args!("x")), Some(3));
        assert_eq!(exp_pass::<u8, _>(Err(Errno::EIO), format_args!("x")), None);
        let f = std::fs::File::open("/dev/null");
        assert!(exp_fd(f, format_args!("open /dev/null")).is_some());
    }

    #[test]
    fn page_size() {
        let p = getpagesize();
        assert!(p >= 4096 && p.is_power_of_two(), "{p}");
    }
}
