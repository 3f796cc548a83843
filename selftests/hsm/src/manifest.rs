//! The manifest of a source tree: what `hsm-populate --manifest` needs to
//! build the stub tree without access to the tree itself (issue 15 item 3).
//! `hsm-manifest SRC` writes it on the server side; the client fetches it
//! (an `http://` URL, or a local file) and builds directories, sparse stubs
//! and symlinks from it.
//!
//! Format (text, one entry per line, fields separated by one TAB):
//!
//! ```text
//! # hsm manifest v1
//! TYPE  MODE  SIZE  MTIME  PATH  [TARGET]
//! ```
//!
//! * TYPE: `d` directory, `f` regular file, `l` symlink;
//! * MODE: the permission bits (`mode & 07777`) in octal;
//! * SIZE: the size in bytes of a regular file, `0` for the others;
//! * MTIME: `SECONDS.NANOSECONDS` since the epoch, as a `timespec`
//!   (`tv_sec`, which may be negative, and nine digits of `tv_nsec`);
//! * PATH: relative to the tree's root, `.` for the root itself, which comes
//!   first and is a directory; every other entry's parent is a directory
//!   listed before it, and no path appears twice;
//! * TARGET: only for symlinks, the link's target.
//!
//! PATH and TARGET have every byte that is not printable ASCII (space, TAB
//! and newline included) and `%` escaped as `%XX` (the escaping of the
//! `hsm-serve` state file).  A PATH is made of plain names: no `..`, no
//! `.` inside, no leading `/`, so a manifest cannot name anything outside
//! the stub tree.  Other file types are not listed.

use crate::state::{escape, unescape};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub const HEADER: &str = "# hsm manifest v1";

/// Largest manifest `fetch` accepts.
pub const MAX_MANIFEST: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: PathBuf },
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the root; empty for the root.
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
}

/// The entries of the tree at `root`, parents before their contents, each
/// directory's entries by name; and the paths of what is skipped (neither
/// directory, regular file nor symlink).
pub fn scan(root: &Path) -> Result<(Vec<Entry>, Vec<PathBuf>)> {
    let m = std::fs::symlink_metadata(root).with_context(|| format!("stat {}", root.display()))?;
    if !m.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    walk(root, Path::new(""), &mut out, &mut skipped)?;
    Ok((out, skipped))
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Entry>, skipped: &mut Vec<PathBuf>) -> Result<()> {
    let p = root.join(rel);
    let m = std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File { size: m.len() }
    } else if ft.is_symlink() {
        Kind::Symlink {
            target: std::fs::read_link(&p).with_context(|| format!("readlink {}", p.display()))?,
        }
    } else {
        skipped.push(rel.to_path_buf());
        return Ok(());
    };
    out.push(Entry {
        path: rel.to_path_buf(),
        kind,
        mode: if ft.is_symlink() {
            0o777
        } else {
            m.permissions().mode() & 0o7777
        },
        mtime: (m.mtime(), m.mtime_nsec() as u32),
    });
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&p)
            .with_context(|| format!("read directory {}", p.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("read directory {}", p.display()))?;
        names.sort();
        for n in names {
            walk(root, &rel.join(n), out, skipped)?;
        }
    }
    Ok(())
}

/// The text of a manifest.
pub fn encode(entries: &[Entry]) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for e in entries {
        let (t, size, target) = match &e.kind {
            Kind::Dir => ('d', 0, None),
            Kind::File { size } => ('f', *size, None),
            Kind::Symlink { target } => ('l', 0, Some(target)),
        };
        let path = if e.path.as_os_str().is_empty() {
            ".".to_string()
        } else {
            escape(&e.path)
        };
        let secs = e.mtime.0;
        s.push_str(&format!(
            "{t}\t{:04o}\t{size}\t{secs}.{:09}\t{path}",
            e.mode, e.mtime.1
        ));
        if let Some(t) = target {
            s.push('\t');
            s.push_str(&escape(t));
        }
        s.push('\n');
    }
    s
}

/// Parse and check a manifest (see the module's documentation).
pub fn decode(text: &str) -> Result<Vec<Entry>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l == HEADER => {}
        other => bail!(
            "not an hsm manifest: the first line is {:?}, want {HEADER:?}",
            other.map(|o| o.1)
        ),
    }
    let mut out: Vec<Entry> = Vec::new();
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for (i, l) in lines {
        let e = parse_line(l).with_context(|| format!("manifest line {}: {l:?}", i + 1))?;
        let what = || format!("manifest line {}", i + 1);
        if out.is_empty() {
            if !e.path.as_os_str().is_empty() || e.kind != Kind::Dir {
                bail!("{}: the first entry must be the root directory '.'", what());
            }
        } else {
            if e.path.as_os_str().is_empty() {
                bail!("{}: the root '.' is listed twice", what());
            }
            let parent = e.path.parent().unwrap_or(Path::new(""));
            if !dirs.contains(parent) {
                bail!(
                    "{}: {} comes before its parent directory",
                    what(),
                    e.path.display()
                );
            }
        }
        if !seen.insert(e.path.clone()) {
            bail!("{}: {} is listed twice", what(), e.path.display());
        }
        if e.kind == Kind::Dir {
            dirs.insert(e.path.clone());
        }
        out.push(e);
    }
    if out.is_empty() {
        bail!("the manifest lists nothing (not even the root '.')");
    }
    Ok(out)
}

fn parse_line(l: &str) -> Result<Entry> {
    let f: Vec<&str> = l.split('\t').collect();
    let (t, mode, size, mtime, path) = match f[..] {
        [t, m, s, mt, p] | [t, m, s, mt, p, _] => (t, m, s, mt, p),
        _ => bail!(
            "want 5 TAB-separated fields (6 for a symlink), got {}",
            f.len()
        ),
    };
    let mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| anyhow!("bad mode {mode:?}"))?;
    let size: u64 = size.parse().map_err(|_| anyhow!("bad size {size:?}"))?;
    let mtime = parse_mtime(mtime).ok_or_else(|| anyhow!("bad mtime {mtime:?}"))?;
    let path = if path == "." {
        PathBuf::new()
    } else {
        let p = unescape(path)?;
        if p.as_os_str().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!("path {path:?} is not a plain relative path");
        }
        p
    };
    let kind = match (t, f.len()) {
        ("d", 5) => Kind::Dir,
        ("f", 5) => Kind::File { size },
        ("l", 6) => {
            let target = unescape(f[5])?;
            if target.as_os_str().is_empty() {
                bail!("empty symlink target");
            }
            Kind::Symlink { target }
        }
        ("d" | "f" | "l", n) => bail!("{n} fields for type {t}"),
        _ => bail!("unknown type {t:?} (d, f or l)"),
    };
    if size != 0 && !matches!(kind, Kind::File { .. }) {
        bail!("a size for type {t}");
    }
    Ok(Entry {
        path,
        kind,
        mode,
        mtime,
    })
}

fn parse_mtime(s: &str) -> Option<(i64, u32)> {
    let (a, b) = s.split_once('.')?;
    if b.len() != 9 || !b.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The text of the manifest at `spec`: an `http://` URL (fetched with one
/// GET, which must answer `200` within `timeout`) or a local file.
pub fn fetch(spec: &str, timeout: Duration) -> Result<String> {
    let bytes = if spec.starts_with("http://") {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build()
            .into();
        let mut resp = agent
            .get(spec)
            .call()
            .map_err(|e| anyhow!("GET {spec}: {e}"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            bail!("GET {spec}: HTTP status {status}");
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| anyhow!("GET {spec}: {e}"))?
    } else if spec.contains("://") {
        bail!("manifest {spec}: give an http:// URL (no TLS) or a file");
    } else {
        std::fs::read(spec).with_context(|| format!("read manifest {spec}"))?
    };
    String::from_utf8(bytes).map_err(|_| anyhow!("manifest {spec}: not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn sample() -> Vec<Entry> {
        let odd = OsStr::from_bytes(b"tab\there\nnl %25 \xff");
        vec![
            Entry {
                path: PathBuf::new(),
                kind: Kind::Dir,
                mode: 0o755,
                mtime: (1_700_000_000, 5),
            },
            Entry {
                path: "d".into(),
                kind: Kind::Dir,
                mode: 0o2775,
                mtime: (-1, 999_999_999),
            },
            Entry {
                path: Path::new("d").join(odd),
                kind: Kind::File { size: 1 << 40 },
                mode: 0o444,
                mtime: (0, 0),
            },
            Entry {
                path: "link".into(),
                kind: Kind::Symlink {
                    target: Path::new("../x").join(odd),
                },
                mode: 0o777,
                mtime: (1, 1),
            },
        ]
    }

    #[test]
    fn round_trip() {
        let text = encode(&sample());
        assert!(text.starts_with("# hsm manifest v1\nd\t0755\t0\t1700000000.000000005\t.\n"));
        assert!(
            text.contains("\td/tab%09here%0Anl%20%2525%20%FF\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 5, "one line per entry: {text}");
        assert_eq!(decode(&text).unwrap(), sample());
    }

    #[test]
    fn scan_a_tree() {
        let dir = std::env::temp_dir().join(format!("hsm-manifest-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), b"12345").unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("l")).unwrap();
        let (e, skipped) = scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.path.clone(), e.kind.clone())).collect();
        assert_eq!(
            got,
            vec![
                (PathBuf::new(), Kind::Dir),
                (
                    "l".into(),
                    Kind::Symlink {
                        target: "sub/f".into()
                    }
                ),
                ("sub".into(), Kind::Dir),
                ("sub/f".into(), Kind::File { size: 5 }),
            ]
        );
        assert!(skipped.is_empty());
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn refused() {
        let h = HEADER;
        let root = "d\t0755\t0\t1.000000000\t.";
        for (what, body) in [
            ("no header", format!("{root}\n")),
            ("nothing", format!("{h}\n")),
            (
                "root not first",
                format!("{h}\nf\t0644\t1\t1.000000000\tx\n"),
            ),
            (
                "parent",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\td/x\n"),
            ),
            (
                "dotdot",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\t..\n"),
            ),
            (
                "inner dotdot",
                format!(
                    "{h}\n{root}\nd\t0755\t0\t1.000000000\ta\nf\t0644\t1\t1.000000000\ta/../../x\n"
                ),
            ),
            (
                "absolute",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\t/etc/x\n"),
            ),
            (
                "escaped slash",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\t%2Fetc\n"),
            ),
            (
                "twice",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\tx\nf\t0644\t1\t1.000000000\tx\n"),
            ),
            ("type", format!("{h}\n{root}\np\t0644\t0\t1.000000000\tx\n")),
            ("mode", format!("{h}\n{root}\nf\t0999\t1\t1.000000000\tx\n")),
            ("mtime", format!("{h}\n{root}\nf\t0644\t1\t1.5\tx\n")),
            (
                "size of a dir",
                format!("{h}\n{root}\nd\t0755\t7\t1.000000000\tx\n"),
            ),
            (
                "link without target",
                format!("{h}\n{root}\nl\t0777\t0\t1.000000000\tx\n"),
            ),
            (
                "target of a file",
                format!("{h}\n{root}\nf\t0644\t1\t1.000000000\tx\ty\n"),
            ),
            ("fields", format!("{h}\n{root}\nf\t0644\t1\tx\n")),
        ] {
            assert!(decode(&body).is_err(), "{what}: accepted {body:?}");
        }
    }
}
