//! KTAP output (Documentation/dev-tools/ktap.rst): a plan line, one
//! `ok`/`not ok` line per test run and kselftest's `# Totals:` line;
//! everything else is a `#` diagnostic.
//!
//! A skip is `ok N name # SKIP <the TCONF reason>`.  A TCONF that a strict
//! run counts as a failure is `not ok N name` (no SKIP directive, which
//! parsers would read as a skip) after a diagnostic giving the reason.

use crate::res::Outcome;

pub fn header(n: usize) {
    println!("KTAP version 1");
    println!("1..{n}");
}

/// The reason goes on one line (a directive cannot span lines).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn line(num: usize, name: &str, outcome: Outcome, reason: &str) -> String {
    let name = name.replace([' ', '#'], "_");
    match outcome {
        Outcome::Passed => format!("ok {num} {name}"),
        Outcome::Skipped => format!("ok {num} {name} # SKIP {}", one_line(reason)),
        Outcome::Failed | Outcome::Broken => format!("not ok {num} {name}"),
    }
}

pub fn result(num: usize, name: &str, outcome: Outcome, reason: &str) {
    println!("{}", line(num, name, outcome, reason));
}

/// kselftest's totals line (`ksft_print_cnts()`): broken runs are errors.
pub fn totals(pass: u32, fail: u32, skip: u32, error: u32) -> String {
    format!("# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:{error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let cases = [
            (Outcome::Passed, "ok 1 a:ext4"),
            (Outcome::Skipped, "ok 1 a:ext4 # SKIP no /dev/pmem0: why"),
            (Outcome::Failed, "not ok 1 a:ext4"),
            (Outcome::Broken, "not ok 1 a:ext4"),
        ];
        for (o, want) in cases {
            assert_eq!(line(1, "a:ext4", o, "no /dev/pmem0:\n  why"), want);
        }
        assert_eq!(line(2, "a b#c", Outcome::Passed, ""), "ok 2 a_b_c");
    }

    #[test]
    fn totals_line() {
        assert_eq!(
            totals(60, 2, 4, 1),
            "# Totals: pass:60 fail:2 xfail:0 xpass:0 skip:4 error:1"
        );
    }
}
