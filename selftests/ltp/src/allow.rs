//! The TCONF allow-list of strict runs.
//!
//! In strict mode (`--strict`) every TCONF counts as a failure unless its
//! reason matches an entry of this list.  The format, one entry per line:
//!
//! ```text
//! # comment
//! test-name[:fs]  reason-substring  # justification
//! ```
//!
//! - `test-name` is a test of the binary; `:fs` (ext4, xfs, btrfs, tmpfs)
//!   limits the entry to that filesystem's run.
//! - `reason-substring` (may contain spaces, not `#`) must occur in the
//!   TCONF message.
//! - The justification (why the test cannot run in the test VM) is
//!   required.
//!
//! A malformed line is an error: the run stops before any test.

use crate::fs::Fs;
use crate::runner::Test;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub test: String,
    pub fs: Option<String>,
    pub reason: String,
    pub why: String,
    /// 1-based line number in the file.
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pub entries: Vec<Entry>,
}

/// A malformed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

const FILESYSTEMS: &[Fs] = &[Fs::Ext4, Fs::Xfs, Fs::Btrfs, Fs::Tmpfs];

impl AllowList {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |msg: String| ParseError { line, msg };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let Some((body, why)) = l.split_once('#') else {
                return Err(err(format!(
                    "no justification: write '{l}  # why this cannot run in the test VM'"
                )));
            };
            let why = why.trim();
            if why.is_empty() {
                return Err(err("empty justification after '#'".into()));
            }
            let body = body.trim();
            let Some((spec, reason)) = body.split_once([' ', '\t']) else {
                return Err(err(format!(
                    "'{body}': want 'test-name[:fs] reason-substring # justification'"
                )));
            };
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(err(
                    "empty reason substring (it would allow every TCONF)".into()
                ));
            }
            let (test, fs) = match spec.split_once(':') {
                Some((t, f)) => (t, Some(f)),
                None => (spec, None),
            };
            if test.is_empty() {
                return Err(err(format!("'{spec}': empty test name")));
            }
            if let Some(f) = fs {
                if !FILESYSTEMS.iter().any(|x| x.name() == f) {
                    return Err(err(format!(
                        "'{spec}': unknown filesystem '{f}' (ext4, xfs, btrfs, tmpfs)"
                    )));
                }
            }
            entries.push(Entry {
                test: test.to_string(),
                fs: fs.map(str::to_string),
                reason: reason.to_string(),
                why: why.to_string(),
                line,
            });
        }
        Ok(AllowList { entries })
    }

    /// Every entry names a test of `tests` (a stale entry is an error, not
    /// silently ignored).
    pub fn check_tests(&self, tests: &[Test]) -> Result<(), ParseError> {
        for e in &self.entries {
            if !tests.iter().any(|t| t.name == e.test) {
                return Err(ParseError {
                    line: e.line,
                    msg: format!("no test named '{}'", e.test),
                });
            }
        }
        Ok(())
    }

    /// The entry that allows a TCONF with `reason` in `test` on `fs`.
    pub fn find(&self, test: &str, fs: Option<&str>, reason: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.test == test
                && (e.fs.is_none() || e.fs.as_deref() == fs)
                && reason.contains(&e.reason)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
# header comment
   # indented comment

pre_fault_dax\tno /dev/pmem0   # the VM has no pmem without memmap=
pre_fault_freeze:btrfs  fsfreeze: Operation not supported # why not
";

    #[test]
    fn parse_and_match() {
        let l = AllowList::parse(LIST).unwrap();
        assert_eq!(
            l.entries[0],
            Entry {
                test: "pre_fault_dax".into(),
                fs: None,
                reason: "no /dev/pmem0".into(),
                why: "the VM has no pmem without memmap=".into(),
                line: 4,
            }
        );
        assert_eq!(l.entries[1].fs.as_deref(), Some("btrfs"));
        assert_eq!(l.entries[1].reason, "fsfreeze: Operation not supported");
        let cases = [
            (
                "pre_fault_dax",
                None,
                "no /dev/pmem0: boot with memmap",
                true,
            ),
            ("pre_fault_dax", Some("ext4"), "x: no /dev/pmem0", true),
            ("pre_fault_dax", None, "no /dev/pmem1", false),
            ("pre_fault_basic", None, "no /dev/pmem0", false),
            (
                "pre_fault_freeze",
                Some("btrfs"),
                "fsfreeze: Operation not supported",
                true,
            ),
            (
                "pre_fault_freeze",
                Some("xfs"),
                "fsfreeze: Operation not supported",
                false,
            ),
            (
                "pre_fault_freeze",
                None,
                "fsfreeze: Operation not supported",
                false,
            ),
        ];
        for (t, fs, why, want) in cases {
            assert_eq!(l.find(t, fs, why).is_some(), want, "{t} {fs:?} {why}");
        }
        assert_eq!(AllowList::parse("").unwrap(), AllowList::default());
    }

    #[test]
    fn malformed_lines() {
        let cases = [
            ("pre_fault_dax no pmem", 1, "justification"),
            ("pre_fault_dax no pmem #  ", 1, "empty justification"),
            ("# ok\npre_fault_dax # why", 2, "want 'test-name"),
            ("pre_fault_dax   \t # why", 1, "want 'test-name"),
            ("pre_fault_dax:zfs no pmem # why", 1, "unknown filesystem"),
            (":ext4 no pmem # why", 1, "empty test name"),
        ];
        for (text, line, msg) in cases {
            let e = AllowList::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.msg.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn stale_entries() {
        let tests = [Test {
            name: "a",
            ..Test::DEFAULT
        }];
        let ok = AllowList::parse("a:ext4 why not # because").unwrap();
        assert!(ok.check_tests(&tests).is_ok());
        let stale = AllowList::parse("\nb why not # because").unwrap();
        let e = stale.check_tests(&tests).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("no test named 'b'"), "{e}");
    }
}
