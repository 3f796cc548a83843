//! fpc-tests: the fault-time fanotify pre-content event test suite.
//!
//! Runs inside the test VM as root (`make -C selftests run`).  Each test
//! lives in its own file under `cases/`, with a header saying what it checks
//! and what it guards.

mod cases;
mod common;

fn main() -> std::process::ExitCode {
    ltp::runner::main(cases::ALL)
}
