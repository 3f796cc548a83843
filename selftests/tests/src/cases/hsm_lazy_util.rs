//! Helpers of the hsm_lazy_* tests (lazy directories, `hsm-populate
//! --lazy`): the feature probe, a source tree served as a directory or by
//! nginx with its manifest ([`LazySource`]), snapshots of a tree by `lstat`
//! and `readlink` and their comparison, the directory tags, and a forked
//! process that does one path operation and reports its errno
//! ([`PathOp`]).  Not a test itself.

use super::hsm_http::{waits_for_listener, SourceKind, TestSource};
use super::hsm_util::*;
use fanotify::consts::*;
use fanotify::Fanotify;
use hsm::lazy::{self, TMP_PREFIX};
use ltp::res::OrBrok;
use ltp::{tbrok, tfail, tinfo, tpass, Ctx};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The tags of the lazy tests.
pub const TAGS: &[(&str, &str)] = &[("doc", "selftests/hsm/README.md")];

/// TCONF unless the kernel has lazy directories: a pre-content group
/// whose directory mark with FAN_PRE_DIR_ACCESS the kernel accepts (a
/// kernel without the feature refuses the bit with EINVAL).
pub fn probe(ctx: &Ctx) -> Result<(), String> {
    let g = Fanotify::init(
        FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC,
        (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
    )
    .map_err(|e| format!("no pre-content events (FAN_CLASS_PRE_CONTENT): {e}"))?;
    match g.mark(FAN_MARK_ADD, FAN_PRE_DIR_ACCESS, &ctx.mnt) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(Errno::EINVAL) => Err(format!(
            "the kernel refuses FAN_PRE_DIR_ACCESS (no lazy directories): {e}"
        )),
        Err(e) => tbrok!(
            "fanotify_mark FAN_PRE_DIR_ACCESS on {}: {e}",
            ctx.mnt.display()
        ),
    }
}

/// A source tree for a lazy clone, and how hsm-populate and hsm-serve reach
/// it: [`SourceKind::Dir`], the tree itself (on the test filesystem, so
/// the daemon's own listings of it are events it answers); or
/// [`SourceKind::Http`], nginx serving the tree (`tree/`) and its manifest
/// (`tree.manifest`, written by [`LazySource::populate`]).
pub struct LazySource {
    pub src: TestSource,
    /// Where to build the tree.
    pub tree: PathBuf,
}

impl LazySource {
    pub fn new(ctx: &Ctx, kind: SourceKind, name: &str) -> Self {
        let src = TestSource::new(ctx, kind, name);
        let tree = src.dir.join("tree");
        std::fs::create_dir(&tree).or_brok("mkdir the source tree");
        LazySource { src, tree }
    }

    pub fn kind(&self) -> SourceKind {
        self.src.kind
    }

    pub fn label(&self) -> &'static str {
        self.src.label()
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.src.spec.to_string_lossy())
    }

    /// `hsm-populate --lazy` of the tree (as it is now) at `dst`: from the
    /// tree, or from its manifest over HTTP.  Its summary line.
    pub fn populate(&self, dst: &Path) -> String {
        let out = match self.kind() {
            SourceKind::Dir => run_ok(
                "hsm-populate",
                &[OsStr::new("--lazy"), self.tree.as_os_str(), dst.as_os_str()],
            ),
            SourceKind::Http => {
                let m = self.src.dir.join("tree.manifest");
                run_ok(
                    "hsm-manifest",
                    &[self.tree.as_os_str(), OsStr::new("-o"), m.as_os_str()],
                );
                run_ok(
                    "hsm-populate",
                    &[
                        OsStr::new("--lazy"),
                        OsStr::new("--manifest"),
                        OsStr::new(&self.url("tree.manifest")),
                        dst.as_os_str(),
                    ],
                )
            }
        };
        tinfo!("{out}");
        out
    }

    /// hsm-serve's SRC for the content.
    pub fn content(&self) -> OsString {
        match self.kind() {
            SourceKind::Dir => self.tree.clone().into(),
            SourceKind::Http => self.url("tree/").into(),
        }
    }

    /// `hsm-serve SRC DST --mode fault EXTRA`, ready.
    pub fn serve(&self, dst: &Path, extra: &[&str]) -> Serve {
        let s = Serve::start(&serve_args(self.content(), dst, "fault", extra));
        if s.ready.get("dir_access") != Some(&1) || s.ready.get("lazy") != Some(&1) {
            tbrok!(
                "hsm-serve is ready without lazy directories (dir_access, lazy): {:?}",
                s.ready
            );
        }
        s
    }
}

/// What a snapshot keeps of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(u64),
    Symlink(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    /// Permission bits (0 for a symlink).
    pub mode: u32,
    /// mtime, seconds and nanoseconds.
    pub mtime: (i64, i64),
}

/// A tree by path relative to its root (the root is "").
pub type Tree = BTreeMap<PathBuf, Entry>;

fn entry_of(p: &Path) -> Entry {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| tbrok!("lstat {}: {e}", p.display()));
    let ft = m.file_type();
    let node = if ft.is_dir() {
        Node::Dir
    } else if ft.is_file() {
        Node::File(m.len())
    } else if ft.is_symlink() {
        Node::Symlink(
            std::fs::read_link(p).unwrap_or_else(|e| tbrok!("readlink {}: {e}", p.display())),
        )
    } else {
        tbrok!(
            "{} is neither a directory, a file nor a symlink",
            p.display()
        )
    };
    Entry {
        mode: if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        },
        node,
        mtime: (m.mtime(), m.mtime_nsec()),
    }
}

/// The tree at `root` by `lstat`, `getdents` and `readlink` (on a lazy
/// clone: every directory populated).  Any error is TBROK naming the path.
pub fn snapshot(root: &Path) -> Tree {
    let mut t = Tree::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        let mut e = entry_of(&p);
        if e.node == Node::Dir {
            for de in std::fs::read_dir(&p).unwrap_or_else(|e| tbrok!("list {}: {e}", p.display()))
            {
                let de = de.unwrap_or_else(|e| tbrok!("list {}: {e}", p.display()));
                todo.push(rel.join(de.file_name()));
            }
            // Again once listed: the lstat sent no event (its name was
            // looked up in the populated parent), so it may have seen the
            // directory in the middle of a population by another process,
            // with the mtime of the creates; the listing waited for that
            // population, which restored the source's mtime.
            e = entry_of(&p);
        }
        t.insert(rel, e);
    }
    t
}

/// Count of directories (the root included), files and symlinks.
pub fn kinds(t: &Tree) -> (u64, u64, u64) {
    let mut c = (0, 0, 0);
    for e in t.values() {
        match e.node {
            Node::Dir => c.0 += 1,
            Node::File(_) => c.1 += 1,
            Node::Symlink(_) => c.2 += 1,
        }
    }
    c
}

/// TPASS if `got` is exactly `want` (names, types, sizes, modes, symlink
/// targets, mtimes), TFAIL naming the first differences otherwise.
pub fn check_same(want: &Tree, got: &Tree, what: &str) -> bool {
    let mut diffs = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => diffs.push(format!("{}: missing ({w:?})", p.display())),
            Some(g) if g != w => diffs.push(format!("{}: {g:?}, want {w:?}", p.display())),
            Some(_) => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{}: not in the source", p.display()));
    }
    if diffs.is_empty() {
        let (d, f, l) = kinds(want);
        tpass!(
            "{what}: the lazy clone is exactly the source tree: {} entries ({d} directories, \
             {f} files, {l} symlinks) with their types, sizes, modes, symlink targets and \
             mtimes",
            want.len()
        );
        true
    } else {
        tfail!(
            "{what}: {} differences from the source tree, first: {}",
            diffs.len(),
            diffs
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        false
    }
}

/// Paths of a tree whose name is a population's temporary name.
pub fn tmp_names(t: &Tree) -> Vec<PathBuf> {
    t.keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(TMP_PREFIX.as_bytes()))
        })
        .cloned()
        .collect()
}

/// The `user.hsm.dir` tag of a directory (None: none).  Reading it looks up
/// `p`'s name in its parent, which must be populated already.
pub fn dir_tag(p: &Path) -> Option<String> {
    hsm::xattr::lget(p, hsm::DIR_XATTR)
        .or_brok("read user.hsm.dir")
        .map(|v| text(&v))
}

pub const UNPOPULATED: &str = lazy::UNPOPULATED;
pub const POPULATED: &str = lazy::POPULATED;

/// The lazy-directory counters of a `stats:` line, for comparisons.
pub fn dir_counters(m: &Kv) -> BTreeMap<&'static str, u64> {
    [
        "dir_events",
        "dir_ignored",
        "dirs_populated",
        "entries_created",
        "entries_kept",
        "tmp_removed",
        "entries_skipped",
        "meta_fetches",
        "errors",
    ]
    .into_iter()
    .map(|k| (k, kv(m, k)))
    .collect()
}

/// A forked child that does one operation on paths and exits with 0 or
/// the errno it got, so that a test can see whether it waits for the
/// daemon and how it ended.
pub struct PathOp {
    pid: Pid,
    status: Option<WaitStatus>,
}

/// Exit code of a [`PathOp`] that succeeded but saw something else than it
/// was told to expect.
pub const OP_WRONG: i32 = 200;

impl PathOp {
    /// Run `f` (0, an errno, or [`OP_WRONG`]) in a child.
    pub fn spawn(f: impl FnOnce() -> i32) -> PathOp {
        // SAFETY: the child only makes system calls on paths and _exit()s;
        // it relies on no other thread.
        match unsafe { fork() }.or_brok("fork") {
            ForkResult::Child => {
                let code = f();
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => PathOp {
                pid: child,
                status: None,
            },
        }
    }

    /// List directory `p` whole (`getdents64`): 0 if it has exactly `want`
    /// entries, OP_WRONG if not, the errno of a failure.
    pub fn list(p: &Path, want: usize) -> PathOp {
        let p = p.to_path_buf();
        PathOp::spawn(move || match std::fs::read_dir(&p) {
            Err(e) => e.raw_os_error().unwrap_or(OP_WRONG),
            Ok(rd) => {
                let mut n = 0;
                for de in rd {
                    match de {
                        Ok(_) => n += 1,
                        Err(e) => return e.raw_os_error().unwrap_or(OP_WRONG),
                    }
                }
                if n == want {
                    0
                } else {
                    OP_WRONG
                }
            }
        })
    }

    /// `lstat(p)`: 0 or its errno.
    pub fn lstat(p: &Path) -> PathOp {
        let p = p.to_path_buf();
        PathOp::spawn(move || match std::fs::symlink_metadata(&p) {
            Ok(_) => 0,
            Err(e) => e.raw_os_error().unwrap_or(OP_WRONG),
        })
    }

    /// Blocked in the kernel, waiting for the listener?
    pub fn waits(&self) -> bool {
        waits_for_listener(self.pid)
    }

    /// Has it exited (reaped here)?
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).or_brok("waitpid") {
                WaitStatus::StillAlive => return false,
                st => self.status = Some(st),
            }
        }
        true
    }

    /// Its exit code (at most `limit` from now, then TBROK); a signal is
    /// TBROK.
    pub fn wait(mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        while !self.exited() {
            if Instant::now() > deadline {
                tbrok!("a path operation still runs after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.status {
            Some(WaitStatus::Exited(_, c)) => c,
            st => tbrok!("a path operation ended with {st:?}"),
        }
    }
}

impl Drop for PathOp {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// An errno code for messages.
pub fn errno_name(code: i32) -> String {
    match code {
        0 => "success".into(),
        OP_WRONG => "success with a wrong result".into(),
        c => format!("{}", Errno::from_raw(c)),
    }
}

/// An entry of a small source tree ([`build`]).
#[derive(Debug, Clone, Copy)]
pub enum Make {
    Dir,
    /// A pattern file of this size.
    File(u64),
    Symlink(&'static str),
}

/// Make the tree `entries` (parents first) under `root`, files with the
/// pattern content; synced.
pub fn build(root: &Path, entries: &[(&str, Make)]) {
    for (p, m) in entries {
        let p = root.join(p);
        match m {
            Make::Dir => std::fs::create_dir(&p).or_brok("mkdir in the source"),
            Make::File(size) => {
                let mut f = std::fs::File::create(&p).or_brok("create a source file");
                hsm::pattern::write_file(&mut f, *size).or_brok("write a source file");
            }
            Make::Symlink(t) => std::os::unix::fs::symlink(t, &p).or_brok("symlink in the source"),
        }
    }
    nix::unistd::sync();
}

/// The directories of `t` whose parent is one of `populated` but which are
/// not themselves: those a population made, unpopulated.
pub fn children_dirs(t: &Tree, populated: &[PathBuf]) -> Vec<PathBuf> {
    t.iter()
        .filter(|(p, e)| {
            e.node == Node::Dir
                && !p.as_os_str().is_empty()
                && !populated.contains(p)
                && populated.iter().any(|a| p.parent() == Some(a.as_path()))
        })
        .map(|(p, _)| p.clone())
        .collect()
}

/// Entries of directory `dir` in `t`.
pub fn entries_in(t: &Tree, dir: &Path) -> u64 {
    t.keys()
        .filter(|p| !p.as_os_str().is_empty() && p.parent() == Some(dir))
        .count() as u64
}
