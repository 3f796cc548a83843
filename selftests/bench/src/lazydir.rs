//! The lazy-directory part of `fpc-bench guest` (`--parts lazydir`, issue 16
//! item 5): what a lazy clone of a whole tree costs against an eager stub
//! tree and a native copy.  Patched kernel only: the base kernel has no
//! FAN_PRE_DIR_ACCESS.
//!
//! The tree is the whole toolchain, documentation included (`share/doc`
//! is most of its entries), copied to `<mnt>/tree` (extracted from
//! `--lazydir-tar`, a tar archive bench.sh makes on the host, or copied
//! file by file over 9p, which takes many minutes): the native copy and the
//! source of both clones, on the same ext4.  Per run, in alternating order:
//!
//! * `native`: the tree itself;
//! * `eager`: `hsm-populate TREE DST` (every directory and stub made up
//!   front), served by `hsm-serve --mode fault`; one clone per run, shared
//!   by the measures (a `stat` fetches nothing from an eager tree, and
//!   `find` reads no data);
//! * `lazy`: `hsm-populate --lazy TREE DST` (only the root), served by
//!   `hsm-serve --mode fault`, which populates each directory on its first
//!   FAN_PRE_DIR_ACCESS; a fresh clone per measure, so no measure finds a
//!   directory another one populated.
//!
//! The measures, each with the page cache, dentries and inodes dropped
//! first: `clone` (making the copy: hsm-populate's time, of the first clone
//! of the run; the native copy's is the copy from the host, once), `stat` (`lstat` of the deepest file of
//! the tree, whose size must match the native one), `rustc` (`rustc
//! --version`, whose line must match), `find` (every entry by `lstat` and
//! `getdents`, whose count must match; first run only).  Samples:
//! `d.entries`, `d.depth` (directories a walk to the deep file looks up in:
//! the root and each ancestor) and `d.<copy>.<measure>.{secs, events,
//! dir_events, dirs_populated, entries_created, fetched_bytes}` (the
//! counters are hsm-serve's, their change over the measure).

use crate::report::sample_line;
use crate::say;
use crate::sys::{self, Serve};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The copies, in the report's order.
pub const COPIES: &[(&str, &str)] = &[
    ("native", "native copy"),
    ("eager", "eager stub tree (hsm-populate)"),
    ("lazy", "lazy clone (hsm-populate --lazy)"),
];

/// The measures, in the report's order.
pub const MEASURES: &[(&str, &str)] = &[
    ("clone", "make the copy"),
    ("stat", "stat the deepest file"),
    ("rustc", "rustc --version"),
    ("find", "find (every entry)"),
];

/// The hsm-serve counters sampled per measure (`events`: file events).
pub const COUNTERS: &[&str] = &[
    "events",
    "dir_events",
    "dirs_populated",
    "entries_created",
    "fetched_bytes",
];

/// More counters, logged but not sampled: which of the file events were
/// the daemon's own, of files that are not stubs (ignored), or had nothing
/// to fetch.
const LOGGED: &[&str] = &["own", "ignored", "duplicates", "dir_ignored"];

/// What the part is asked to do.
pub struct Plan<'a> {
    pub label: &'a str,
    /// The ext4 mount of the copies.
    pub mnt: &'a Path,
    /// The toolchain to copy whole.
    pub toolchain: &'a Path,
    /// A tar archive of it (made on the host by bench.sh): extracted in
    /// the guest, much faster than a copy file by file over 9p.
    pub tar: Option<&'a Path>,
    pub runs: usize,
}

fn sample(label: &str, metric: &str, run: usize, v: f64) {
    sys::out(&sample_line(label, metric, run, v));
}

/// Every entry under `root` (not `root` itself), by `lstat` and
/// `getdents`: (entries, seconds).
fn find(root: &Path) -> Result<(u64, f64)> {
    let t = Instant::now();
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let p = e.with_context(|| format!("read {}", d.display()))?.path();
            let m =
                std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
            n += 1;
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok((n, t.elapsed().as_secs_f64()))
}

/// The deepest regular file under `root` (most components; the first in
/// byte order among those), relative to `root`.
fn deepest_file(root: &Path) -> Result<PathBuf> {
    let mut best: Option<PathBuf> = None;
    for (p, _) in sys::walk(root)? {
        let rel = p.strip_prefix(root)?.to_path_buf();
        let better = match &best {
            None => true,
            Some(b) => {
                let (n, m) = (rel.components().count(), b.components().count());
                n > m || (n == m && rel.as_os_str() < b.as_os_str())
            }
        };
        if better {
            best = Some(rel);
        }
    }
    best.with_context(|| format!("no regular file under {}", root.display()))
}

/// The native tree's answers the copies must give.
struct Expect {
    deep: PathBuf,
    deep_len: u64,
    version: String,
    entries: u64,
}

/// A copy being measured: its root and, for the clones, its daemon.
struct Copy {
    root: PathBuf,
    serve: Option<Serve>,
}

impl Copy {
    /// A fresh clone of `tree` at `dst` (`lazy`: `--lazy`), served in fault
    /// mode, and hsm-populate's time.
    fn clone_of(tree: &Path, dst: &Path, lazy: bool) -> Result<(Copy, f64)> {
        sys::remove_tree(dst)?;
        // Cold, whatever ran before (a native find warms the tree).
        sys::drop_caches()?;
        let mut cmd = Command::new(sys::tool("hsm-populate")?);
        if lazy {
            cmd.arg("--lazy");
        }
        let (secs, _) = sys::timed(cmd.arg(tree).arg(dst)).with_context(|| {
            format!(
                "hsm-populate{} of {}",
                if lazy { " --lazy" } else { "" },
                tree.display()
            )
        })?;
        nix::unistd::sync();
        let serve = Serve::start(tree, dst, "fault", &[])?;
        let c = Copy {
            root: dst.to_path_buf(),
            serve: Some(serve),
        };
        Ok((c, secs))
    }

    /// hsm-serve's counters now, [`COUNTERS`] then [`LOGGED`] (zero for
    /// the native copy).
    fn counters(&mut self) -> Result<Vec<u64>> {
        let keys = COUNTERS.iter().chain(LOGGED);
        match &mut self.serve {
            None => Ok(keys.map(|_| 0).collect()),
            Some(s) => {
                let kv = s.stats()?;
                keys.map(|k| sys::kv(&kv, k)).collect()
            }
        }
    }

    fn stop(self) -> Result<()> {
        if let Some(s) = self.serve {
            s.stop()?;
        }
        Ok(())
    }
}

/// One measure on `copy`, caches dropped first: samples its time and the
/// change of hsm-serve's counters, checks its answer against `x`.
fn measure(
    label: &str,
    name: &str,
    what: &str,
    run: usize,
    copy: &mut Copy,
    x: &Expect,
) -> Result<()> {
    sys::drop_caches()?;
    let before = copy.counters()?;
    let secs = match what {
        "stat" => {
            let p = copy.root.join(&x.deep);
            let t = Instant::now();
            let m =
                std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
            let secs = t.elapsed().as_secs_f64();
            if !m.is_file() || m.len() != x.deep_len {
                bail!(
                    "{name}: {} is not a regular file of {} bytes ({:?}, {} bytes)",
                    p.display(),
                    x.deep_len,
                    m.file_type(),
                    m.len()
                );
            }
            secs
        }
        "rustc" => {
            let (secs, version) = sys::rustc_version(&copy.root)?;
            if version != x.version {
                bail!(
                    "{name}: rustc --version printed {version:?}, the native copy {:?}",
                    x.version
                );
            }
            secs
        }
        "find" => {
            let (n, secs) = find(&copy.root)?;
            if n != x.entries {
                bail!(
                    "{name}: find saw {n} entries, the native copy has {}",
                    x.entries
                );
            }
            secs
        }
        _ => bail!("no measure {what:?}"),
    };
    let after = copy.counters()?;
    sample(label, &format!("d.{name}.{what}.secs"), run, secs);
    let mut text = Vec::new();
    for (i, k) in COUNTERS.iter().chain(LOGGED).enumerate() {
        let d = after[i].saturating_sub(before[i]);
        if i < COUNTERS.len() {
            sample(label, &format!("d.{name}.{what}.{k}"), run, d as f64);
        }
        text.push(format!("{k} {d}"));
    }
    say!(
        "lazydir run {run}: {name}: {what}: {secs:.3} s, {}",
        text.join(", ")
    );
    Ok(())
}

/// The part: see the module's documentation.
pub fn run(plan: &Plan) -> Result<()> {
    let tree = plan.mnt.join("tree");
    let t = Instant::now();
    match plan.tar {
        Some(tar) => {
            say!(
                "lazydir: extracting {} to {}",
                tar.display(),
                tree.display()
            );
            std::fs::create_dir_all(&tree).with_context(|| format!("mkdir {}", tree.display()))?;
            sys::run(
                Command::new("tar")
                    .arg("-xpf")
                    .arg(tar)
                    .arg("-C")
                    .arg(&tree),
            )
            .context("extract the toolchain")?;
        }
        None => {
            say!(
                "lazydir: copying all of {} to {}",
                plan.toolchain.display(),
                tree.display()
            );
            sys::copy_tree(plan.toolchain, &tree, &[])?;
        }
    }
    nix::unistd::sync();
    let copy_secs = t.elapsed().as_secs_f64();
    sample(plan.label, "d.native.clone.secs", 0, copy_secs);
    let (files, bytes) = sys::walk(&tree)?
        .iter()
        .fold((0u64, 0u64), |(n, b), (_, m)| (n + 1, b + m.len()));
    let deep = deepest_file(&tree)?;
    let deep_len = std::fs::symlink_metadata(tree.join(&deep))?.len();
    let (entries, _) = find(&tree)?;
    let (_, version) = sys::rustc_version(&tree)?;
    let depth = deep.components().count();
    say!(
        "lazydir: {files} files, {} MiB, {entries} entries, copied in {copy_secs:.1} s; deepest file \
         {} ({depth} directories to look up in); {version}",
        bytes >> 20,
        deep.display()
    );
    sample(plan.label, "d.entries", 0, entries as f64);
    sample(plan.label, "d.depth", 0, depth as f64);
    let x = Expect {
        deep,
        deep_len,
        version,
        entries,
    };
    let eager_dst = plan.mnt.join("d-eager");
    let lazy_dst = plan.mnt.join("d-lazy");
    for run in 0..plan.runs {
        let mut order = ["native", "eager", "lazy"];
        if run % 2 == 1 {
            order.reverse();
        }
        let measures: &[&str] = if run == 0 {
            &["stat", "rustc", "find"]
        } else {
            &["stat", "rustc"]
        };
        for name in order {
            match name {
                "native" => {
                    let mut c = Copy {
                        root: tree.clone(),
                        serve: None,
                    };
                    for m in measures {
                        measure(plan.label, name, m, run, &mut c, &x)?;
                    }
                }
                "eager" => {
                    let (mut c, secs) = Copy::clone_of(&tree, &eager_dst, false)?;
                    sample(plan.label, "d.eager.clone.secs", run, secs);
                    for m in measures {
                        measure(plan.label, name, m, run, &mut c, &x)?;
                    }
                    c.stop()?;
                    sys::remove_tree(&eager_dst)?;
                }
                _ => {
                    for (i, m) in measures.iter().enumerate() {
                        let (mut c, secs) = Copy::clone_of(&tree, &lazy_dst, true)?;
                        if i == 0 {
                            sample(plan.label, "d.lazy.clone.secs", run, secs);
                        }
                        measure(plan.label, name, m, run, &mut c, &x)?;
                        c.stop()?;
                        sys::remove_tree(&lazy_dst)?;
                    }
                }
            }
        }
    }
    sys::remove_tree(&tree)?;
    Ok(())
}
