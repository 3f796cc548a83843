//! Lazy directories (issue 16 item 4): a tree whose directories are made
//! on demand, from `FAN_PRE_DIR_ACCESS` events (`fanotify::consts::FAN_PRE_DIR_ACCESS`, `fanotify::Event::name`).
//!
//! `hsm-populate --lazy` creates only DST's root directory, tagged as an
//! unpopulated lazy directory, with a record of where the metadata of the
//! tree is (a source directory, or a manifest).  `hsm-serve` populates a
//! directory the first time a path walk asks for a name in it or a
//! `getdents64` lists it: it creates all its entries from the metadata,
//! regular files as stubs (as `hsm-populate` makes them), subdirectories as
//! unpopulated lazy directories, symlinks as they are; then it tags the
//! directory populated and ignores it from then on.
//!
//! # On-disk conventions
//!
//! * [`DIR_XATTR`] (`user.hsm.dir`) on a directory: [`UNPOPULATED`]
//!   (`unpopulated`: its entries are not made yet, `hsm-serve` makes them on
//!   the first access) or [`POPULATED`] (`populated`: made; kept so that a
//!   restarted daemon, or one whose ignore mark went with the inode, answers
//!   from it without asking the source again).  A directory without it is
//!   an ordinary directory (never lazy, or made by someone else).
//! * [`LAZY_XATTR`] (`user.hsm.lazy`) on the root of a lazy tree (DST):
//!   where the tree's metadata is, as [`MetaSpec::encode`] writes it:
//!   `dir:` and the absolute path of the source directory (listed with
//!   `getdents` and `lstat`), or `manifest:` and an `http://` URL or the
//!   absolute path of a manifest file ([`crate::manifest`]).  The content of
//!   the files comes from `hsm-serve`'s SRC, as for any stub.
//! * Entries are made so that they appear complete: a stub is made nameless
//!   (`O_TMPFILE`), tagged, sized, given its mode, owner and mtime, then
//!   linked under its name; a symlink or a subdirectory is made under a
//!   temporary name [`TMP_PREFIX`]`PID.N`, given its tag, mode, owner and
//!   mtime, then renamed to its name (`RENAME_NOREPLACE`).  So a name that
//!   exists is complete, and a population cut short (a crash) leaves at most
//!   temporary names, which the next population removes.
//! * Every call of a population is relative to the directory's event
//!   descriptor (`*at()` with it as dirfd, `getdents64` on it): the kernel
//!   sends no `FAN_PRE_DIR_ACCESS` for those, so the daemon never waits for
//!   itself.

use crate::manifest::{self, Kind};
use crate::{xattr, STUB_XATTR};
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::{DIR_XATTR, LAZY_XATTR};

/// [`DIR_XATTR`] of a directory whose entries are not made yet.
pub const UNPOPULATED: &str = "unpopulated";
/// [`DIR_XATTR`] of a directory whose entries are made.
pub const POPULATED: &str = "populated";

/// Temporary names of a population: `.hsm-lazy-tmp.PID.N`.
pub const TMP_PREFIX: &str = ".hsm-lazy-tmp.";

/// Longest name (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The state a directory's [`DIR_XATTR`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// No tag: an ordinary directory.
    Plain,
    Unpopulated,
    Populated,
    /// A value this version does not know (treated as not lazy).
    Unknown(Vec<u8>),
}

impl DirState {
    pub fn from_value(v: Option<&[u8]>) -> Self {
        match v {
            None => DirState::Plain,
            Some(b) if b == UNPOPULATED.as_bytes() => DirState::Unpopulated,
            Some(b) if b == POPULATED.as_bytes() => DirState::Populated,
            Some(b) => DirState::Unknown(b.to_vec()),
        }
    }
}

/// The [`DirState`] of the directory open at `fd`.
pub fn dir_state(fd: BorrowedFd<'_>) -> std::io::Result<DirState> {
    Ok(DirState::from_value(xattr::fget(fd, DIR_XATTR)?.as_deref()))
}

/// Where the metadata of a lazy tree is (the value of [`LAZY_XATTR`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaSpec {
    /// A source directory (absolute), listed on demand.
    Dir(PathBuf),
    /// A manifest: an `http://` URL or an absolute file path.
    Manifest(String),
}

impl MetaSpec {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            MetaSpec::Dir(p) => [b"dir:", p.as_os_str().as_bytes()].concat(),
            MetaSpec::Manifest(s) => [b"manifest:", s.as_bytes()].concat(),
        }
    }

    pub fn decode(v: &[u8]) -> Result<Self> {
        if let Some(p) = v.strip_prefix(b"dir:") {
            if !p.starts_with(b"/") {
                bail!("{LAZY_XATTR}: the source directory {p:?} is not an absolute path");
            }
            return Ok(MetaSpec::Dir(PathBuf::from(OsString::from_vec(p.to_vec()))));
        }
        if let Some(s) = v.strip_prefix(b"manifest:") {
            let s = std::str::from_utf8(s)
                .map_err(|_| anyhow!("{LAZY_XATTR}: the manifest spec is not UTF-8"))?;
            if s.is_empty() {
                bail!("{LAZY_XATTR}: empty manifest spec");
            }
            return Ok(MetaSpec::Manifest(s.to_string()));
        }
        bail!(
            "{LAZY_XATTR} is {:?}: want dir:PATH or manifest:URL|FILE",
            String::from_utf8_lossy(v)
        )
    }
}

impl std::fmt::Display for MetaSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.encode()))
    }
}

/// Mode, mtime and owner of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits (`& 0o7777`; ignored for symlinks).
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// uid, gid; None: the daemon's (a manifest has no owners).
    pub owner: Option<(u32, u32)>,
}

/// One entry of a directory to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyEntry {
    pub name: OsString,
    pub kind: Kind,
    pub attrs: Attrs,
}

/// What a directory holds, and its own attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub dir: Attrs,
    /// Sorted by name.
    pub entries: Vec<LazyEntry>,
}

/// Can `name` be an entry of a directory?  Not empty, not `.` or `..`, no
/// `/` or NUL, at most [`NAME_MAX`] bytes.
pub fn valid_name(name: &OsStr) -> Result<(), &'static str> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err("empty name");
    }
    if b == b"." || b == b".." {
        return Err("'.' or '..'");
    }
    if b.contains(&b'/') {
        return Err("contains '/'");
    }
    if b.contains(&0) {
        return Err("contains NUL");
    }
    if b.len() > NAME_MAX {
        return Err("longer than NAME_MAX (255 bytes)");
    }
    Ok(())
}

/// Can `e` be made as the source says?  Its name ([`valid_name`]), a
/// symlink target without NUL and shorter than PATH_MAX (4096 bytes), a
/// file size that fits in an `off_t`.  An entry that cannot be made is
/// skipped (and counted), not a failure of its whole directory: one bad
/// line of a manifest would otherwise deny every access to it for good.
pub fn valid_entry(e: &LazyEntry) -> Result<(), &'static str> {
    valid_name(&e.name)?;
    match &e.kind {
        Kind::Symlink { target } => {
            let t = target.as_os_str().as_bytes();
            if t.is_empty() {
                return Err("empty symlink target");
            }
            if t.contains(&0) {
                return Err("symlink target contains NUL");
            }
            if t.len() >= libc::PATH_MAX as usize {
                return Err("symlink target of PATH_MAX (4096) bytes or more");
            }
        }
        Kind::File { size } if i64::try_from(*size).is_err() => {
            return Err("file size over the largest off_t");
        }
        _ => {}
    }
    Ok(())
}

/// A manifest indexed by directory: the listing of each directory.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    dirs: HashMap<PathBuf, Listing>,
    entries: usize,
}

impl ManifestIndex {
    /// Index checked manifest entries ([`manifest::decode`]: root first,
    /// parents before their contents, no path twice).
    pub fn new(entries: Vec<manifest::Entry>) -> Result<Self> {
        let mut dirs: HashMap<PathBuf, Listing> = HashMap::new();
        let mut n = 0;
        for e in entries {
            let attrs = Attrs {
                mode: e.mode,
                mtime: e.mtime,
                owner: None,
            };
            if e.kind == Kind::Dir {
                if dirs.contains_key(&e.path) {
                    bail!("manifest: directory {} listed twice", e.path.display());
                }
                dirs.insert(
                    e.path.clone(),
                    Listing {
                        dir: attrs,
                        entries: Vec::new(),
                    },
                );
            }
            if e.path.as_os_str().is_empty() {
                continue;
            }
            let parent = e.path.parent().unwrap_or(Path::new(""));
            let name = e
                .path
                .file_name()
                .ok_or_else(|| anyhow!("manifest: {} has no name", e.path.display()))?
                .to_os_string();
            let Some(l) = dirs.get_mut(parent) else {
                bail!(
                    "manifest: {} comes before its parent directory",
                    e.path.display()
                );
            };
            l.entries.push(LazyEntry {
                name,
                kind: e.kind,
                attrs,
            });
            n += 1;
        }
        if !dirs.contains_key(Path::new("")) {
            bail!("manifest: no root directory");
        }
        for l in dirs.values_mut() {
            l.entries.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(ManifestIndex { dirs, entries: n })
    }

    /// The listing of directory `rel` (empty: the root).
    pub fn get(&self, rel: &Path) -> Option<&Listing> {
        self.dirs.get(rel)
    }

    /// Directories, the root included.
    pub fn dirs(&self) -> usize {
        self.dirs.len()
    }

    /// Entries, the root excluded.
    pub fn entries(&self) -> usize {
        self.entries
    }
}

/// `rel` is made of plain names only.
fn plain(rel: &Path) -> Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        bail!("{}: not a plain relative path", rel.display())
    }
}

fn attrs_of(m: &std::fs::Metadata) -> Attrs {
    Attrs {
        mode: m.mode() & 0o7777,
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        owner: Some((m.uid(), m.gid())),
    }
}

/// The listing of `root/rel` in a source directory: its entries
/// (`getdents` and `lstat`), directories, regular files and symlinks
/// (others are skipped and named on stderr).
pub fn list_source_dir(root: &Path, rel: &Path) -> Result<Listing> {
    plain(rel)?;
    let p = root.join(rel);
    let m = std::fs::symlink_metadata(&p).with_context(|| format!("source {}", p.display()))?;
    if !m.is_dir() {
        bail!("source {} is not a directory", p.display());
    }
    let mut entries = Vec::new();
    for de in std::fs::read_dir(&p).with_context(|| format!("list source {}", p.display()))? {
        let de = de.with_context(|| format!("list source {}", p.display()))?;
        let ep = de.path();
        let m = std::fs::symlink_metadata(&ep)
            .with_context(|| format!("lstat source {}", ep.display()))?;
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File { size: m.len() }
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: std::fs::read_link(&ep)
                    .with_context(|| format!("readlink source {}", ep.display()))?,
            }
        } else {
            eprintln!(
                "hsm-serve: skipping source {} (not a directory, regular file or symlink)",
                ep.display()
            );
            continue;
        };
        entries.push(LazyEntry {
            name: de.file_name(),
            kind,
            attrs: attrs_of(&m),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing {
        dir: attrs_of(&m),
        entries,
    })
}

/// The metadata of a lazy tree, for `hsm-serve`: a source directory listed
/// on demand, or a manifest fetched once (on first use, again only after a
/// failed fetch) and indexed by directory.
pub struct Meta {
    spec: MetaSpec,
    timeout: Duration,
    manifest: Mutex<Option<Arc<ManifestIndex>>>,
}

impl Meta {
    /// `timeout`: of a manifest fetch over HTTP.
    pub fn new(spec: MetaSpec, timeout: Duration) -> Self {
        Meta {
            spec,
            timeout,
            manifest: Mutex::new(None),
        }
    }

    pub fn spec(&self) -> &MetaSpec {
        &self.spec
    }

    /// The listing of directory `rel` of the tree; `requests` counts the
    /// requests made to the source for it (a directory listing, a manifest
    /// fetch; none when the manifest is already here).  An error when the
    /// source cannot say (down, timeout, no such directory).
    pub fn listing(&self, rel: &Path, requests: &AtomicU64) -> Result<Listing> {
        match &self.spec {
            MetaSpec::Dir(root) => {
                requests.fetch_add(1, Ordering::Relaxed);
                list_source_dir(root, rel)
            }
            MetaSpec::Manifest(spec) => {
                let idx = {
                    let mut m = self.manifest.lock().unwrap_or_else(|e| e.into_inner());
                    match &*m {
                        Some(i) => i.clone(),
                        None => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            let text = manifest::fetch(spec, self.timeout)?;
                            let entries = manifest::decode(&text)
                                .with_context(|| format!("manifest {spec}"))?;
                            let i = Arc::new(
                                ManifestIndex::new(entries)
                                    .with_context(|| format!("manifest {spec}"))?,
                            );
                            *m = Some(i.clone());
                            i
                        }
                    }
                };
                plain(rel)?;
                idx.get(rel).cloned().ok_or_else(|| {
                    anyhow!(
                        "the manifest {spec} has no directory {}",
                        if rel.as_os_str().is_empty() {
                            ".".into()
                        } else {
                            rel.display().to_string()
                        }
                    )
                })
            }
        }
    }
}

/// What a population does in a directory that may already hold some of its
/// entries (a population cut short by a crash).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Entries to make, in name order.
    pub create: Vec<&'a LazyEntry>,
    /// Names already there: complete (a name only ever appears complete).
    pub keep: Vec<OsString>,
    /// Leftover temporary names, to remove first.
    pub remove: Vec<OsString>,
    /// Entries of the source that cannot be made ([`valid_entry`]: skipped).
    pub invalid: Vec<&'a LazyEntry>,
}

/// Is `name` one of a population's temporary names?
pub fn is_tmp_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(TMP_PREFIX.as_bytes())
}

/// The plan for `listing` in a directory holding `existing` names (what
/// `getdents64` returns, `.` and `..` left out).  Names that are neither
/// the source's nor temporary are left alone.
pub fn plan<'a>(listing: &'a Listing, existing: &[OsString]) -> Plan<'a> {
    let have: HashSet<&OsStr> = existing.iter().map(OsString::as_os_str).collect();
    let mut p = Plan::default();
    let mut source = HashSet::new();
    for e in &listing.entries {
        if valid_entry(e).is_err() {
            p.invalid.push(e);
            continue;
        }
        if !source.insert(e.name.as_os_str()) {
            // Twice in the listing: made once.
            continue;
        }
        if have.contains(e.name.as_os_str()) {
            p.keep.push(e.name.clone());
        } else {
            p.create.push(e);
        }
    }
    let mut remove: Vec<OsString> = existing
        .iter()
        .filter(|n| is_tmp_name(n) && !source.contains(n.as_os_str()))
        .cloned()
        .collect();
    remove.sort();
    remove.dedup();
    p.remove = remove;
    p
}

/// The names in a `getdents64` buffer (`struct linux_dirent64` records),
/// without `.` and `..`.
pub fn parse_dirents(buf: &[u8]) -> Result<Vec<OsString>> {
    // d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
    const NAME_OFF: usize = 19;
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rec = &buf[off..];
        if rec.len() < NAME_OFF {
            bail!("getdents64: truncated record at {off}");
        }
        let reclen = usize::from(u16::from_ne_bytes([rec[16], rec[17]]));
        if reclen < NAME_OFF + 1 || reclen > rec.len() {
            bail!("getdents64: bad record length {reclen} at {off}");
        }
        let name = &rec[NAME_OFF..reclen];
        let nul = name
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| anyhow!("getdents64: name not terminated at {off}"))?;
        let name = &name[..nul];
        if name != b"." && name != b".." {
            out.push(OsString::from_vec(name.to_vec()));
        }
        off += reclen;
    }
    Ok(out)
}

/// The names in the directory open at `fd`, read with `getdents64` on that
/// very descriptor (an event descriptor: the kernel sends no event for it).
/// Its file position is rewound first and left at the end.
pub fn read_names(fd: BorrowedFd<'_>) -> Result<Vec<OsString>> {
    nix::unistd::lseek(fd.as_raw_fd(), 0, nix::unistd::Whence::SeekSet)
        .context("rewind the directory")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        // SAFETY: getdents64(2) writes at most buf.len() bytes into buf.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let n = Errno::result(n).context("getdents64")? as usize;
        if n == 0 {
            return Ok(out);
        }
        out.extend(parse_dirents(&buf[..n])?);
    }
}

/// Makes the entries of one directory, every call relative to `dir` (the
/// event's descriptor of that directory).
pub struct Creator<'a> {
    pub dir: BorrowedFd<'a>,
    /// Testing: sleep this long with each entry made but not yet named
    /// (`hsm-serve --populate-hold-ms`).
    pub hold: Duration,
}

/// The (device, inode) of the files this process is making (O_TMPFILE,
/// not linked yet): see [`being_made`].
static MAKING: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// A file in [`MAKING`] for as long as this lives.
struct Making((u64, u64));

impl Making {
    fn new(fd: BorrowedFd<'_>) -> Result<Making> {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("fstat the new file")?;
        let key = (st.st_dev, st.st_ino);
        MAKING.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        Ok(Making(key))
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        let mut m = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = m.iter().position(|k| *k == self.0) {
            m.swap_remove(i);
        }
    }
}

/// Is the file of `fd` one this process is making in a population (an
/// O_TMPFILE stub being sized before its link)?  Its events are the
/// daemon's own sizing: nothing to fill.
pub fn being_made(fd: BorrowedFd<'_>) -> bool {
    let Ok(st) = nix::sys::stat::fstat(fd.as_raw_fd()) else {
        return false;
    };
    MAKING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(st.st_dev, st.st_ino))
}

/// Sequence of temporary names in this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name: the process, a sequence number and 64 random
/// bits.  Random because a name already made has a positive dentry, which
/// a path walk follows without an event: a process that guessed the name
/// of a subdirectory not yet tagged could open it, and the daemon would
/// answer that as a plain directory and ignore it for good.
fn tmp_name() -> OsString {
    let mut r = [0u8; 8];
    // SAFETY: getrandom(2) writes at most r.len() bytes into r.
    let n = unsafe { libc::getrandom(r.as_mut_ptr().cast(), r.len(), 0) };
    let rand = if n == r.len() as isize {
        u64::from_ne_bytes(r)
    } else {
        // No entropy (not before early boot): the time, which is still
        // hard to hit by a guess.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    OsString::from(format!(
        "{TMP_PREFIX}{}.{}.{rand:016x}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

fn timespec(t: (i64, u32)) -> TimeSpec {
    TimeSpec::new(t.0, t.1.into())
}

fn raw(fd: BorrowedFd<'_>) -> Option<i32> {
    Some(fd.as_raw_fd())
}

/// EPERM from a chown is not an error (hsm-populate does the same).
fn owned(r: nix::Result<()>) -> Result<()> {
    match r {
        Ok(()) | Err(Errno::EPERM) => Ok(()),
        Err(e) => Err(e).context("chown"),
    }
}

impl Creator<'_> {
    /// Make `e` under its name, complete (see the module documentation).
    pub fn create(&self, e: &LazyEntry) -> Result<()> {
        let what = || format!("make {:?}", e.name);
        match &e.kind {
            Kind::File { size } => self.file(e, *size).with_context(what),
            Kind::Symlink { target } => self.symlink(e, target).with_context(what),
            Kind::Dir => self.subdir(e).with_context(what),
        }
    }

    fn hold(&self) {
        if !self.hold.is_zero() {
            std::thread::sleep(self.hold);
        }
    }

    /// Mode, owner, mtime of a descriptor (owner first: chown clears the
    /// set-id bits).
    fn set_fd_attrs(fd: BorrowedFd<'_>, a: &Attrs) -> Result<()> {
        if let Some((u, g)) = a.owner {
            owned(nix::unistd::fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(u)),
                Some(Gid::from_raw(g)),
            ))?;
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(a.mode))
            .context("chmod")?;
        nix::sys::stat::futimens(fd.as_raw_fd(), &TimeSpec::UTIME_OMIT, &timespec(a.mtime))
            .context("set times")
    }

    /// `set_fd_attrs` for the entry `name` of the directory, through walks
    /// from the event fd (no events), without opening it.
    fn set_at_attrs(&self, name: &OsStr, a: &Attrs) -> Result<()> {
        if let Some((u, g)) = a.owner {
            owned(nix::unistd::fchownat(
                raw(self.dir),
                name,
                Some(Uid::from_raw(u)),
                Some(Gid::from_raw(g)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ))?;
        }
        nix::sys::stat::fchmodat(
            raw(self.dir),
            name,
            Mode::from_bits_truncate(a.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .context("chmod")?;
        nix::sys::stat::utimensat(
            raw(self.dir),
            name,
            &TimeSpec::UTIME_OMIT,
            &timespec(a.mtime),
            UtimensatFlags::NoFollowSymlink,
        )
        .context("set times")
    }

    /// A stub as `hsm-populate` makes it: nameless, tagged, sized, then
    /// linked under its name.
    fn file(&self, e: &LazyEntry, size: u64) -> Result<()> {
        let fd = nix::fcntl::openat(
            raw(self.dir),
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .context("O_TMPFILE (the filesystem must support it)")?;
        // SAFETY: openat(2) returned a new descriptor that nothing else owns.
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        let making = Making::new(f.as_fd())?;
        xattr::fset(f.as_fd(), STUB_XATTR, size.to_string().as_bytes())
            .with_context(|| format!("tag with {STUB_XATTR}"))?;
        if size > 0 {
            nix::unistd::ftruncate(&f, size as i64).context("size the stub")?;
        }
        // Sized: from its link on, its events are anyone's.
        drop(making);
        Self::set_fd_attrs(f.as_fd(), &e.attrs)?;
        self.hold();
        let proc_fd = OsString::from(format!("/proc/self/fd/{fd}"));
        nix::unistd::linkat(
            None,
            proc_fd.as_os_str(),
            raw(self.dir),
            e.name.as_os_str(),
            AtFlags::AT_SYMLINK_FOLLOW,
        )
        .context("link under its name")
    }

    /// Make something under a fresh temporary name with `make`.
    fn fresh(&self, make: impl Fn(&OsStr) -> nix::Result<()>) -> Result<OsString> {
        for _ in 0..100 {
            let t = tmp_name();
            match make(&t) {
                Ok(()) => return Ok(t),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e).with_context(|| format!("make {t:?}")),
            }
        }
        bail!("no free temporary name")
    }

    /// Rename the temporary `tmp` to `name` (which must not exist); on
    /// failure remove `tmp`.
    fn publish(&self, tmp: &OsStr, name: &OsStr, dir: bool) -> Result<()> {
        let r = nix::fcntl::renameat2(
            raw(self.dir),
            tmp,
            raw(self.dir),
            name,
            RenameFlags::RENAME_NOREPLACE,
        );
        if let Err(e) = r {
            let _ = self.remove(tmp, dir);
            return Err(e).with_context(|| format!("rename {tmp:?} to {name:?}"));
        }
        Ok(())
    }

    fn symlink(&self, e: &LazyEntry, target: &Path) -> Result<()> {
        let tmp = self.fresh(|t| nix::unistd::symlinkat(target, raw(self.dir), t))?;
        let done = (|| {
            if let Some((u, g)) = e.attrs.owner {
                owned(nix::unistd::fchownat(
                    raw(self.dir),
                    tmp.as_os_str(),
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ))?;
            }
            nix::sys::stat::utimensat(
                raw(self.dir),
                tmp.as_os_str(),
                &TimeSpec::UTIME_OMIT,
                &timespec(e.attrs.mtime),
                UtimensatFlags::NoFollowSymlink,
            )
            .context("set times")
        })();
        if let Err(err) = done {
            let _ = self.remove(&tmp, false);
            return Err(err);
        }
        self.hold();
        self.publish(&tmp, &e.name, false)
    }

    /// A subdirectory: made, tagged unpopulated, given its attributes under
    /// a temporary name, then renamed.
    fn subdir(&self, e: &LazyEntry) -> Result<()> {
        let tmp = self.fresh(|t| {
            nix::sys::stat::mkdirat(raw(self.dir), t, Mode::from_bits_truncate(0o700))
        })?;
        let done = (|| {
            // O_PATH is enough for the tag (set through /proc/self/fd).  A
            // walk from the event descriptor sends no FAN_PRE_DIR_ACCESS,
            // so an open for reading would not either; but a directory
            // opened by any other path before its tag would be answered as
            // a plain one and ignored for good (it is named only once
            // tagged, under a temporary name until then).
            let fd = nix::fcntl::openat(
                raw(self.dir),
                tmp.as_os_str(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .context("open")?;
            // SAFETY: openat(2) returned a new descriptor that nothing else
            // owns.
            let sub = unsafe { OwnedFd::from_raw_fd(fd) };
            xattr::opath_set(sub.as_fd(), DIR_XATTR, UNPOPULATED.as_bytes())
                .with_context(|| format!("tag with {DIR_XATTR}"))?;
            self.set_at_attrs(&tmp, &e.attrs)
        })();
        if let Err(err) = done {
            let _ = self.remove(&tmp, true);
            return Err(err);
        }
        self.hold();
        self.publish(&tmp, &e.name, true)
    }

    fn remove(&self, name: &OsStr, dir: bool) -> nix::Result<()> {
        nix::unistd::unlinkat(
            raw(self.dir),
            name,
            if dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            },
        )
    }

    /// Remove a leftover temporary name (a directory one is empty: it
    /// never had a name its population could be asked for).
    pub fn remove_tmp(&self, name: &OsStr) -> Result<()> {
        let st = nix::sys::stat::fstatat(raw(self.dir), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .with_context(|| format!("lstat {name:?}"))?;
        let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        self.remove(name, dir)
            .with_context(|| format!("remove the leftover {name:?}"))
    }

    /// After the entries: the directory's own mtime, which making them
    /// changed.
    pub fn finish(&self, a: &Attrs) -> Result<()> {
        nix::sys::stat::futimens(
            self.dir.as_raw_fd(),
            &TimeSpec::UTIME_OMIT,
            &timespec(a.mtime),
        )
        .context("set the directory's mtime")
    }
}

/// Counts of one population.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Populated {
    pub created: u64,
    pub kept: u64,
    pub removed: u64,
    pub invalid: u64,
}

/// Make the entries of `listing` in the directory `dir` (an event
/// descriptor): leftover temporary names removed, existing names kept, the
/// others made, the directory's mtime restored.  `created` is called after
/// each entry made (the daemon's live counter).  Tagging the directory
/// populated is the caller's, after syncing it.
pub fn populate(
    dir: BorrowedFd<'_>,
    listing: &Listing,
    hold: Duration,
    mut created: impl FnMut(),
) -> Result<Populated> {
    let existing = read_names(dir)?;
    let p = plan(listing, &existing);
    let c = Creator { dir, hold };
    let mut n = Populated::default();
    for t in &p.remove {
        c.remove_tmp(t)?;
        n.removed += 1;
    }
    for e in &p.invalid {
        eprintln!(
            "hsm-serve: skipping {:?}: {}",
            e.name,
            valid_entry(e).err().unwrap_or("invalid")
        );
        n.invalid += 1;
    }
    n.kept = p.keep.len() as u64;
    for e in &p.create {
        match c.create(e) {
            Ok(()) => {
                n.created += 1;
                created();
            }
            // Larger than this filesystem's files may be, or a symlink
            // target longer than it takes (xfs: 1023 bytes): skipped like
            // an invalid entry (nothing of it was named).
            Err(err)
                if err.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<Errno>(),
                        Some(Errno::EFBIG | Errno::ENAMETOOLONG)
                    )
                }) =>
            {
                eprintln!("hsm-serve: skipping {:?}: {err:#}", e.name);
                n.invalid += 1;
            }
            Err(err) => return Err(err),
        }
    }
    c.finish(&listing.dir)?;
    Ok(n)
}

#[cfg(test)]
mod tests;
