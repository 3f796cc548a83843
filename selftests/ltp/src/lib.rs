//! A small LTP-style test harness for kernel tests written in Rust.
//!
//! Each [`Test`] declares what it needs (root, kernel config options,
//! commands, filesystems, a feature probe), optional setup and cleanup, and a
//! body (or `tcnt` cases) that reports results with the LTP words:
//! [`tpass!`], [`tfail!`], [`tinfo!`], [`twarn!`], and the two that end the
//! test at once, [`tbrok!`] and [`tconf!`].  [`texp_fail!`], [`texp_pass!`]
//! and [`texp_fd!`] are LTP's `TST_EXP_FAIL`, `TST_EXP_PASS` and `TST_EXP_FD`.
//!
//! The [`runner`] runs every test (once per filesystem it asks for, each on a
//! fresh loop image made and mounted for it) in a forked test process with a
//! timeout (each case in a child of its own), runs the cleanup whatever
//! happened, scans the kernel log after each run (any WARNING, BUG, lockdep or
//! KASAN report fails the test; a log that cannot be read breaks it), and
//! prints each run's result and wall time and `Summary: N passed, N failed,
//! N broken, N skipped`, or KTAP on request.  With `--strict` every TCONF is a
//! failure unless the [`allow`]-list has its reason.

pub mod allow;
mod child;
pub mod fs;
pub mod kconfig;
pub mod kmsg;
pub mod ktap;
pub mod res;
pub mod runner;

pub use fs::Fs;
pub use res::{getpagesize, Outcome, ResKind};
pub use runner::{Ctx, Test};
