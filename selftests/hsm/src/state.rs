//! The state file of `hsm-serve --state FILE`: the populated ranges of each
//! stub, keyed by its path relative to DST.
//!
//! Format: a first line `# hsm-serve state v1`, then one line per partly
//! populated file: `RANGES<TAB>PATH`, where RANGES is
//! [`RangeSet::encode`]'s form and PATH is the relative path with every
//! byte that is not printable ASCII, and `%`, escaped as `%XX`.  The file is
//! rewritten whole (to a temporary file, then renamed) on every update.

use crate::ranges::RangeSet;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

pub const HEADER: &str = "# hsm-serve state v1";

/// `%XX`-escape bytes outside printable ASCII (space excluded) and `%`.
pub fn escape(p: &Path) -> String {
    let mut s = String::new();
    for &b in p.as_os_str().as_bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Inverse of [`escape`].
pub fn unescape(s: &str) -> Result<PathBuf> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .with_context(|| format!("path {s:?}: truncated %XX escape"))?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .with_context(|| format!("path {s:?}: bad escape %{hex}"))?,
            );
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

/// The text of a state file.
pub fn encode(map: &BTreeMap<PathBuf, RangeSet>) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for (p, r) in map.iter().filter(|(_, r)| !r.is_empty()) {
        s.push_str(&format!("{}\t{}\n", r.encode(), escape(p)));
    }
    s
}

/// Parse a state file's text.
pub fn decode(text: &str) -> Result<BTreeMap<PathBuf, RangeSet>> {
    let mut lines = text.lines();
    match lines.next() {
        Some(HEADER) => {}
        Some(other) => bail!("not an hsm-serve state file (first line {other:?})"),
        None => return Ok(BTreeMap::new()),
    }
    let mut map = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let (r, p) = line
            .split_once('\t')
            .with_context(|| format!("line {}: no TAB between ranges and path", n + 2))?;
        let ranges = RangeSet::decode(r).with_context(|| format!("line {}", n + 2))?;
        map.insert(
            unescape(p).with_context(|| format!("line {}", n + 2))?,
            ranges,
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trip() {
        let cases: &[&[u8]] = &[
            b"a/b.txt",
            b"sp ace",
            b"tab\there",
            b"100%",
            b"nl\n",
            b"\xff\x01",
        ];
        for c in cases {
            let p = PathBuf::from(OsString::from_vec(c.to_vec()));
            let e = escape(&p);
            assert!(!e.contains(['\t', '\n', ' ']), "{e}");
            assert_eq!(unescape(&e).unwrap(), p);
        }
        assert!(unescape("a%2").is_err());
        assert!(unescape("a%zz").is_err());
    }

    #[test]
    fn file_round_trip() {
        let mut m = BTreeMap::new();
        let mut r = RangeSet::new();
        r.insert(0, 0x2000);
        m.insert(PathBuf::from("dir/a file"), r);
        m.insert(PathBuf::from("empty"), RangeSet::new());
        let text = encode(&m);
        assert_eq!(text, "# hsm-serve state v1\n0-2000\tdir/a%20file\n");
        let back = decode(&text).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[&PathBuf::from("dir/a file")],
            m[&PathBuf::from("dir/a file")]
        );
        assert!(decode("").unwrap().is_empty());
        assert!(decode("garbage\n").is_err());
        assert!(decode("# hsm-serve state v1\n0-10 x\n").is_err());
        assert!(decode("# hsm-serve state v1\n9-1\tx\n").is_err());
    }
}
