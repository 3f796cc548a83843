//! fpc-tests: the fault-time fanotify pre-content event test suite.
//!
//! Runs inside the test VM as root (`make -C selftests run`).  Each test
//! lives in its own file under `cases/`, with a header saying what it checks
//! and what it guards.  The strict mode's allow-list is
//! `selftests/tconf-allow.txt`, built in.

mod cases;
mod common;

const ALLOW_LIST: &str = include_str!("../../tconf-allow.txt");

fn main() -> std::process::ExitCode {
    ltp::runner::main_with_allow_list(cases::ALL, "selftests/tconf-allow.txt", ALLOW_LIST)
}

#[cfg(test)]
mod tests {
    /// The committed allow-list parses and names only tests that exist.
    #[test]
    fn allow_list_is_valid() {
        let l = ltp::allow::AllowList::parse(super::ALLOW_LIST).unwrap();
        l.check_tests(super::cases::ALL).unwrap();
    }
}
