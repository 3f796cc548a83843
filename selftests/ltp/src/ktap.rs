//! KTAP output (Documentation/dev-tools/ktap.rst): a plan line and one
//! `ok`/`not ok` line per test; everything else is a `#` diagnostic.

use crate::res::Outcome;

pub fn header(n: usize) {
    println!("KTAP version 1");
    println!("1..{n}");
}

pub fn line(num: usize, name: &str, outcome: Outcome, reason: &str) -> String {
    let name = name.replace([' ', '#'], "_");
    match outcome {
        Outcome::Passed => format!("ok {num} {name}"),
        Outcome::Skipped => format!("ok {num} {name} # SKIP {reason}"),
        Outcome::Failed | Outcome::Broken => format!("not ok {num} {name}"),
    }
}

pub fn result(num: usize, name: &str, outcome: Outcome, reason: &str) {
    println!("{}", line(num, name, outcome, reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let cases = [
            (Outcome::Passed, "ok 1 a:ext4"),
            (Outcome::Skipped, "ok 1 a:ext4 # SKIP why"),
            (Outcome::Failed, "not ok 1 a:ext4"),
            (Outcome::Broken, "not ok 1 a:ext4"),
        ];
        for (o, want) in cases {
            assert_eq!(line(1, "a:ext4", o, "why"), want);
        }
        assert_eq!(line(2, "a b#c", Outcome::Passed, ""), "ok 2 a_b_c");
    }
}
