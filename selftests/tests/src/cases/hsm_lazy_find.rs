//! hsm_lazy_find: a whole lazy clone, walked, is exactly its source.  A
//! source tree of 10,000 entries (1,000 directories up to depth 6, 8,000
//! regular files of 0 bytes to 512 KiB, 1,000 symlinks: relative, absolute,
//! dangling, to directories; names with spaces, a TAB, non-UTF-8 bytes, 255
//! bytes, and one that looks like a population's temporary name; modes
//! including set-gid and read-only directories) is cloned with
//! `hsm-populate --lazy`, which makes the root alone (tagged unpopulated,
//! empty), and served by `hsm-serve`.  Then `find DST` and a walk of the
//! test (getdents, lstat, readlink) run at the same time: the walk finds
//! exactly the source tree (names, types, sizes, modes, symlink targets,
//! mtimes), find lists exactly its paths; every directory was populated once
//! though two processes asked for most of them (`dirs_populated` = the
//! number of directories, `entries_created` = 10,000, no error), is tagged
//! populated, and no temporary name is left; with the local source the
//! daemon listed each source directory once, with nginx it fetched the
//! manifest once.  A few files (the largest, empty ones, one at depth 6)
//! read back exact through their stubs.  Both sources, ext4, xfs, btrfs;
//! TCONF where the kernel refuses FAN_PRE_DIR_ACCESS.
//!
//! Guards the lazy directories of the reference HSM (issue 16 item 4,
//! selftests/hsm/README.md "Lazy directories").

use super::hsm_http::{cleanup, SourceKind, BOTH_SOURCES};
use super::hsm_lazy_util::*;
use super::hsm_util::*;
use hsm::util::Rng;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tfail, tinfo, tpass, Ctx, Test};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_lazy_find",
    doc: "lazy directories: find and a walk of a 10,000-entry lazy clone list exactly the source tree",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx", "find"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    tags: TAGS,
    timeout: Duration::from_secs(1800),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

/// Directories besides the root, regular files, symlinks: 10,000 entries.
const DIRS: usize = 999;
const FILES: usize = 8000;
const LINKS: usize = 1001;
/// Deepest directory (the root is depth 0).
const DEPTH: usize = 6;

const FILE_MODES: &[u32] = &[0o644, 0o644, 0o600, 0o755, 0o444, 0o640, 0o4755];
const DIR_MODES: &[u32] = &[0o755, 0o755, 0o700, 0o750, 0o2775, 0o555];

/// A name for entry `i` of kind `k` (d, f, l): a few are odd on purpose.
fn name(k: char, i: usize) -> OsString {
    match (k, i) {
        ('f', 1) => "with space.txt".into(),
        ('f', 2) => "tab\there".into(),
        ('f', 3) => OsString::from_vec(b"bytes-\xff\xfe-not-utf8".to_vec()),
        ('f', 4) => "x".repeat(255).into(),
        ('f', 5) => ".hsm-lazy-tmp.1.1".into(),
        ('f', 6) => ".hidden".into(),
        ('d', 7) => "dir with space".into(),
        ('l', 8) => "caf\u{e9}-link".into(),
        _ => format!("{k}{i:04}").into(),
    }
}

fn file_size(r: &mut Rng) -> u64 {
    match r.below(100) {
        0..=14 => 0,
        15..=89 => 1 + r.below(2048),
        90..=98 => 2048 + r.below(30 << 10),
        _ => (32 << 10) + r.below(480 << 10),
    }
}

/// The source tree under `root`; returns the relative paths of its files
/// by size, for the content checks: (empty ones, the largest, one at the
/// greatest depth).
fn make_tree(root: &Path) -> (Vec<PathBuf>, PathBuf, PathBuf) {
    let mut r = Rng::new(0x1a2b_f1d0);
    // (relative path, depth); a chain to the deepest level first.
    let mut dirs: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    let mut p = PathBuf::new();
    for i in 0..DEPTH {
        p = p.join(name('d', i));
        dirs.push((p.clone(), i + 1));
    }
    while dirs.len() < DIRS + 1 {
        let parents: Vec<usize> = (0..dirs.len()).filter(|&j| dirs[j].1 < DEPTH).collect();
        let (pp, pd) = dirs[parents[r.below(parents.len() as u64) as usize]].clone();
        let i = dirs.len();
        dirs.push((pp.join(name('d', i)), pd + 1));
    }
    for (d, _) in &dirs[1..] {
        std::fs::create_dir(root.join(d)).or_brok("mkdir in the source");
    }
    let mut files = Vec::new();
    let (mut largest, mut big) = (PathBuf::new(), 0);
    let mut empty = Vec::new();
    let mut deep = PathBuf::new();
    for i in 0..FILES {
        let (d, depth) = &dirs[if i == 0 {
            DEPTH
        } else {
            r.below(dirs.len() as u64) as usize
        }];
        let rel = d.join(name('f', i));
        // The first one, at the deepest level, is not empty.
        let size = if i == 0 { 100_000 } else { file_size(&mut r) };
        let mut f = std::fs::File::create(root.join(&rel)).or_brok("create a source file");
        hsm::pattern::write_file(&mut f, size).or_brok("write a source file");
        let mode = FILE_MODES[r.below(FILE_MODES.len() as u64) as usize];
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .or_brok("chmod a source file");
        if size > big {
            (largest, big) = (rel.clone(), size);
        }
        if size == 0 && empty.len() < 3 {
            empty.push(rel.clone());
        }
        if *depth == DEPTH && deep.as_os_str().is_empty() && size > 0 {
            deep = rel.clone();
        }
        files.push(rel);
    }
    for i in 0..LINKS {
        let (d, depth) = &dirs[r.below(dirs.len() as u64) as usize];
        let up = "../".repeat(*depth);
        let target: PathBuf = match r.below(5) {
            0 => format!("nowhere/x{i}").into(),
            1 => format!("/nonexistent/{i}").into(),
            2 => format!(
                "{up}{}",
                dirs[r.below(dirs.len() as u64) as usize].0.display()
            )
            .into(),
            _ => Path::new(&up).join(&files[r.below(files.len() as u64) as usize]),
        };
        let target = if target.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            target
        };
        std::os::unix::fs::symlink(&target, root.join(d).join(name('l', i)))
            .or_brok("symlink in the source");
    }
    // Directory modes last, deepest first (a read-only one would refuse
    // its entries to a user who is not root).
    for (d, _) in dirs.iter().rev() {
        let mode = DIR_MODES[r.below(DIR_MODES.len() as u64) as usize];
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(mode))
            .or_brok("chmod a source directory");
    }
    nix::unistd::sync();
    (empty, largest, deep)
}

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        one_source(ctx, kind);
    }
}

/// `find DST -printf '%P\0'`, started now: the relative paths it listed.
fn spawn_find(dst: &Path) -> std::process::Child {
    Command::new("find")
        .arg(dst)
        .args(["-printf", "%P\\0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .or_brok("spawn find")
}

fn one_source(ctx: &Ctx, kind: SourceKind) {
    let src = LazySource::new(ctx, kind, &format!("src-{kind:?}"));
    let w = src.label();
    let (empty, largest, deep) = make_tree(&src.tree);
    let want = snapshot(&src.tree);
    let (dirs, files, links) = kinds(&want);
    tinfo!(
        "{w}: source tree of {} entries below its root: {dirs} directories (root included), \
         {files} files, {links} symlinks",
        want.len() - 1
    );
    if want.len() - 1 != DIRS + FILES + LINKS {
        tbrok!("the source tree has {} entries", want.len() - 1);
    }
    let dst = ctx.path(&format!("dst-{kind:?}"));
    src.populate(&dst);
    let listed: Vec<_> = std::fs::read_dir(&dst).or_brok("list DST").collect();
    tcheck!(
        listed.is_empty() && dir_tag(&dst).as_deref() == Some(UNPOPULATED),
        "{w}: hsm-populate --lazy made the root alone: empty, tagged {UNPOPULATED} \
         ({} entries, tag {:?})",
        listed.len(),
        dir_tag(&dst)
    );

    let mut s = src.serve(&dst, &["--workers", "4"]);
    let find = spawn_find(&dst);
    let got = snapshot(&dst);
    let out = find.wait_with_output().or_brok("wait find");
    check_same(&want, &got, w);
    let found: BTreeSet<PathBuf> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();
    let expect: BTreeSet<PathBuf> = want
        .keys()
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .collect();
    let missing = expect.difference(&found).count();
    let extra: Vec<_> = found.difference(&expect).take(5).collect();
    tcheck!(
        out.status.success() && missing == 0 && extra.is_empty(),
        "{w}: find DST, at the same time, listed exactly the {} paths of the source \
         ({}; {missing} missing, extra {extra:?}; stderr {})",
        expect.len(),
        out.status,
        text(&out.stderr)
    );

    let m = s.stats();
    let c = dir_counters(&m);
    tinfo!("{w}: {c:?}");
    tcheck!(
        c["dirs_populated"] == dirs && c["entries_created"] == want.len() as u64 - 1,
        "{w}: each of the {dirs} directories populated once by two walkers \
         (dirs_populated {}), {} entries made (entries_created {})",
        c["dirs_populated"],
        want.len() - 1,
        c["entries_created"]
    );
    tcheck!(
        c["errors"] == 0 && c["entries_kept"] == 0 && c["tmp_removed"] == 0,
        "{w}: no error, nothing kept or removed in a fresh clone: {c:?}"
    );
    let fetches = match kind {
        SourceKind::Dir => dirs,
        SourceKind::Http => 1,
    };
    tcheck!(
        c["meta_fetches"] == fetches,
        "{w}: metadata asked of the source {} times, want {fetches} ({})",
        c["meta_fetches"],
        match kind {
            SourceKind::Dir => "one listing per directory",
            SourceKind::Http => "the manifest, once",
        }
    );
    tcheck!(
        c["dir_events"] >= dirs,
        "{w}: at least one FAN_PRE_DIR_ACCESS per directory ({} for {dirs})",
        c["dir_events"]
    );
    let untagged: Vec<_> = want
        .iter()
        .filter(|(_, e)| e.node == Node::Dir)
        .map(|(p, _)| p)
        .filter(|p| dir_tag(&dst.join(p)).as_deref() != Some(POPULATED))
        .take(5)
        .collect();
    tcheck!(
        untagged.is_empty(),
        "{w}: every directory is tagged {POPULATED} (not: {untagged:?})"
    );
    let tmp: Vec<_> = tmp_names(&got)
        .into_iter()
        .filter(|p| !want.contains_key(p))
        .collect();
    tcheck!(
        tmp.is_empty(),
        "{w}: no temporary name left (the source's look-alike is the source's): {tmp:?}"
    );

    // Contents through the stubs.
    let mut checked = 0;
    for rel in empty.iter().chain([&largest, &deep]) {
        let size = match want.get(rel).map(|e| &e.node) {
            Some(Node::File(n)) => *n,
            other => tbrok!("{}: {other:?} in the source", rel.display()),
        };
        let mut buf = Vec::new();
        let res = std::fs::File::open(dst.join(rel)).and_then(|mut f| f.read_to_end(&mut buf));
        match res {
            Ok(n) if n as u64 == size && hsm::pattern::mismatch(0, &buf).is_none() => checked += 1,
            other => tfail!(
                "{w}: {} ({size} bytes): read {other:?}, first wrong byte {:?}",
                rel.display(),
                hsm::pattern::mismatch(0, &buf)
            ),
        }
    }
    if checked == empty.len() + 2 {
        tpass!(
            "{w}: {checked} files read back exact through their stubs (the largest, {} bytes; \
             {} empty; one at depth {DEPTH})",
            match &want[&largest].node {
                Node::File(n) => *n,
                _ => 0,
            },
            empty.len()
        );
    }
    let (st, last) = s.stop(Signal::SIGTERM);
    tcheck!(
        st.code() == Some(0) && last.as_ref().is_some_and(|m| kv(m, "errors") == 0),
        "{w}: SIGTERM: exit {:?}, no error: {last:?}",
        st.code()
    );
}
