//! kunit_rust: collects the KUnit results of the boot-time Rust doctests
//! (CONFIG_RUST_KERNEL_DOCTESTS) from debugfs and reports them as tests:
//! every suite must pass, and the doctests of the series' Rust modules
//! (kernel::fs::fsnotify, kernel::mm::fault) must be among
//! them and pass, as many as those files have runnable examples (review R8:
//! every public item has one; a count that drops means examples stopped being
//! built as doctests).
//!
//! Guards the cover letter's Rust section: the doctests of the bindings
//! (rust/kernel/fs/fsnotify.rs, rust/kernel/mm/fault.rs) run in the VM and
//! appear in the suite summary.

use ltp::res::OrBrok;
use ltp::{tbrok, tfail, tinfo, tpass, Ctx, Test};
use std::path::Path;

pub const TEST: Test = Test {
    name: "kunit_rust",
    doc: "boot-time Rust doctests (KUnit) pass, including those of the series' modules",
    needs_kconfigs: &[
        "CONFIG_KUNIT_DEBUGFS",
        "CONFIG_RUST_KERNEL_DOCTESTS",
        "CONFIG_SAMPLE_RUST_LAZY_MIRROR",
    ],
    tags: &[
        (
            "cover-letter",
            "Rust: doctests of the new modules run at boot",
        ),
        ("doc", "rust/kernel/fs/fsnotify.rs"),
        ("doc", "rust/kernel/mm/fault.rs"),
    ],
    run,
    ..Test::DEFAULT
};

const KUNIT: &str = "/sys/kernel/debug/kunit";

/// Source files of the series whose doctests must have run, as they appear
/// in the generated test names.
/// The series' Rust files and how many runnable doctests each has (the
/// examples not marked `ignore` in rust/kernel/fs/fsnotify.rs and
/// rust/kernel/mm/fault.rs).
const SERIES_FILES: &[(&str, usize)] = &[("fs_fsnotify_rs", 3), ("mm_fault_rs", 7)];

/// A test case result line of a KTAP suite: `ok N name` / `not ok N name`.
#[derive(Debug, PartialEq, Eq)]
struct Case {
    ok: bool,
    skip: bool,
    name: String,
}

/// The case lines of one suite's `results` file (the indented level).
fn parse_cases(text: &str) -> Vec<Case> {
    text.lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
        .map(str::trim)
        .filter_map(|l| {
            let (ok, rest) = if let Some(r) = l.strip_prefix("ok ") {
                (true, r)
            } else {
                (false, l.strip_prefix("not ok ")?)
            };
            let mut it = rest.splitn(2, ' ');
            it.next()?.parse::<u32>().ok()?;
            let tail = it.next()?;
            let (name, directive) = match tail.split_once(" # ") {
                Some((n, d)) => (n, d),
                None => (tail, ""),
            };
            Some(Case {
                ok,
                skip: directive.starts_with("SKIP"),
                name: name.trim().to_string(),
            })
        })
        .collect()
}

fn run(_ctx: &Ctx) {
    if !Path::new(KUNIT).exists() {
        let _ = std::fs::create_dir_all("/sys/kernel/debug");
        nix::mount::mount(
            Some("debugfs"),
            "/sys/kernel/debug",
            Some("debugfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .or_brok("mount debugfs");
    }
    let mut suites: Vec<_> = std::fs::read_dir(KUNIT)
        .or_brok("read kunit debugfs")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("results").exists())
        .collect();
    suites.sort();
    if suites.is_empty() {
        tbrok!("no KUnit suite in {KUNIT}");
    }
    let mut series = vec![0usize; SERIES_FILES.len()];
    for s in suites {
        let name = s
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(s.join("results")).or_brok("read results");
        let cases = parse_cases(&text);
        let failed: Vec<_> = cases.iter().filter(|c| !c.ok).map(|c| &c.name).collect();
        let skipped = cases.iter().filter(|c| c.skip).count();
        if cases.is_empty() {
            tfail!("suite {name}: no results (did it run?)");
        } else if failed.is_empty() {
            tpass!("suite {name}: {} cases ok ({skipped} skipped)", cases.len());
        } else {
            tfail!(
                "suite {name}: {} of {} failed: {failed:?}",
                failed.len(),
                cases.len()
            );
        }
        for c in &cases {
            for (i, (f, _)) in SERIES_FILES.iter().enumerate() {
                if c.name.contains(f) {
                    series[i] += 1;
                    tinfo!("{name}: {} {}", if c.ok { "ok" } else { "NOT OK" }, c.name);
                }
            }
        }
    }
    for ((f, want), n) in SERIES_FILES.iter().zip(series) {
        if n >= *want {
            tpass!("{n} doctests of {f} ran (it has {want})");
        } else {
            tfail!("{n} doctests of {f} ran, but it has {want}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suite_results() {
        let t = "KTAP version 1\n# Subtest: rust_doctests_kernel\n1..3\n    ok 1 rust_doctest_kernel_mm_fault_rs_0\n    not ok 2 rust_doctest_kernel_fs_fsnotify_rs_0\n    ok 3 x # SKIP no\n        ok 1 param\nok 1 rust_doctests_kernel\n";
        let c = parse_cases(t);
        assert_eq!(c.len(), 3);
        assert!(c[0].ok && !c[0].skip);
        assert_eq!(c[1].name, "rust_doctest_kernel_fs_fsnotify_rs_0");
        assert!(!c[1].ok);
        assert!(c[2].skip && c[2].name == "x");
    }
}
