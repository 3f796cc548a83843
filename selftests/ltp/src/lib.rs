//! A small LTP-style test harness for kernel tests written in Rust.
//!
//! Each [`Test`] declares what it needs (root, kernel config options,
//! filesystems, a feature probe) and a body that reports results with the
//! LTP words: [`tpass!`], [`tfail!`], [`tinfo!`], [`twarn!`], and the two that
//! end the test at once, [`tbrok!`] and [`tconf!`].
//!
//! The [`runner`] runs every test (once per filesystem it asks for, each on a
//! fresh loop image made and mounted for it) in a forked child with a timeout,
//! scans the kernel log after each one (any WARNING, BUG, lockdep or KASAN
//! report fails the test), and prints `Summary: N passed, N failed, N broken,
//! N skipped`, or KTAP on request.

pub mod fs;
pub mod kconfig;
pub mod kmsg;
pub mod ktap;
pub mod res;
pub mod runner;

pub use fs::Fs;
pub use res::{Outcome, ResKind};
pub use runner::{Ctx, Test};
