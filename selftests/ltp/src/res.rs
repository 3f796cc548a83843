//! Result reporting.
//!
//! A test body runs in a forked child.  Every result is printed there and
//! also sent, as one byte, to the parent over a pipe, so the parent can count
//! results even if the child later crashes or hangs.

use std::fmt;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Pipe to the parent (-1 when running outside the runner, e.g. in unit tests).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
/// Name printed in front of each result line.
static mut PREFIX: String = String::new();

/// Called in the child before the test body runs.
pub(crate) fn set_reporter(fd: RawFd, prefix: String) {
    REPORT_FD.store(fd, Ordering::SeqCst);
    // SAFETY: called once in the freshly forked, single-threaded child before
    // the test body (the only other user) runs.
    unsafe { *std::ptr::addr_of_mut!(PREFIX) = prefix };
}

fn prefix() -> &'static str {
    // SAFETY: written only by set_reporter() before any reader runs.
    unsafe { (*std::ptr::addr_of!(PREFIX)).as_str() }
}

/// Report one result.  Prefer the macros.
pub fn report(kind: ResKind, args: fmt::Arguments<'_>) {
    let line = format!("{}: {}: {}\n", prefix(), kind.word(), args);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    let fd = REPORT_FD.load(Ordering::SeqCst);
    if fd >= 0 && kind != ResKind::Info {
        // SAFETY: fd is the write end of the result pipe, owned by this
        // process for its whole life; a one-byte write is atomic.
        unsafe { libc::write(fd, [kind.code()].as_ptr().cast(), 1) };
    }
}

/// Report and end the test: TBROK or TCONF.
pub fn report_exit(kind: ResKind, args: fmt::Arguments<'_>) -> ! {
    report(kind, args);
    // Skip destructors and atexit handlers of the forked child: the parent
    // cleans up the mount and the image.
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(0) }
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
    }
}
