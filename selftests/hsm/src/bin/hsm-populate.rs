//! hsm-populate: mirror a directory tree (or one file) as sparse HSM stubs.
//!
//! Directories are created, regular files become sparse files of the same
//! size (no data blocks) tagged with the `user.hsm.stub` xattr (value: the
//! size), symlinks are copied as symlinks.  Modes, owners (when permitted)
//! and timestamps are copied.  Other file types are skipped and counted.
//! `hsm-serve SRC DST` then fills the stubs on demand.
//!
//! With `--manifest URL|FILE` the tree is built from a manifest instead
//! (see [`hsm::manifest`], written by `hsm-manifest SRC` on the server
//! side): the client needs no access to the source tree.  A manifest has
//! no owners, so the stubs belong to the user running hsm-populate.
//!
//! With `--lazy` (from SRC or from `--manifest`) only DST's root directory
//! is made, tagged as an unpopulated lazy directory (`user.hsm.dir =
//! unpopulated`) with a record of where the tree's metadata is
//! (`user.hsm.lazy`, see [`hsm::lazy`]); `hsm-serve` makes the entries of
//! each directory on its first access.  The root is made under a temporary
//! name next to DST, tagged and given its mode, owner and mtime, then
//! renamed to DST (over an empty directory there), so that a running
//! daemon never sees it untagged.

use anyhow::{bail, Context, Result};
use clap::Parser;
use hsm::lazy::{self, MetaSpec};
use hsm::manifest::{self, Kind};
use hsm::{xattr, DIR_XATTR, LAZY_XATTR, STUB_XATTR};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hsm-populate",
    override_usage = "hsm-populate [--force] [--lazy] SRC DST\n       hsm-populate [--force] [--lazy] --manifest URL|FILE DST",
    about = "Mirror SRC (a directory tree or one file) at DST as sparse HSM stubs",
    after_help = "Regular files become sparse stubs of the same size and mode, tagged with the \
                  user.hsm.stub xattr (their size); directories and symlinks are recreated.\n\
                  With --manifest the tree is built from a manifest (hsm-manifest SRC writes \
                  one) fetched from an http:// URL or read from a file, instead of SRC.\n\
                  DST must not exist, or be an empty directory / empty file, unless --force.\n\
                  With --lazy only DST's root directory is made, tagged unpopulated \
                  (user.hsm.dir) with the record of the metadata source (user.hsm.lazy); \
                  hsm-serve makes each directory's entries on its first access.\n\
                  Prints one summary line.  Exit status: 0 done, 1 error, 2 bad usage."
)]
struct Cli {
    /// SRC DST, or only DST with --manifest.  SRC: the tree (or file) to
    /// mirror; DST: where the stubs go (for a file SRC: the stub's path).
    #[arg(value_names = ["SRC", "DST"], num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,
    /// Build the tree from this manifest (an http:// URL or a file)
    /// instead of SRC.
    #[arg(long, value_name = "URL|FILE")]
    manifest: Option<String>,
    /// With --manifest: the time the fetch may take.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Populate into a non-empty DST, replacing entries that are in the way
    /// (with --lazy: emptying DST first).
    #[arg(long)]
    force: bool,
    /// Make only DST's root directory, an unpopulated lazy directory that
    /// records where the metadata is (SRC, or the manifest); hsm-serve
    /// makes the entries of each directory on its first access
    /// (FAN_PRE_DIR_ACCESS).
    #[arg(long)]
    lazy: bool,
}

#[derive(Default)]
struct Summary {
    dirs: u64,
    files: u64,
    symlinks: u64,
    skipped: u64,
    bytes: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.manifest.is_some() != (cli.paths.len() == 1) {
        use clap::CommandFactory;
        let msg = if cli.manifest.is_some() {
            "with --manifest, give only DST"
        } else {
            "give SRC and DST (or --manifest URL DST)"
        };
        Cli::command()
            .error(clap::error::ErrorKind::WrongNumberOfValues, msg)
            .exit();
    }
    let dst = cli.paths.last().cloned().unwrap_or_default();
    if cli.lazy {
        let timeout = Duration::from_millis(cli.timeout_ms);
        let (from, res) = match &cli.manifest {
            Some(m) => (m.clone(), lazy_from_manifest(m, timeout, &dst, cli.force)),
            None => (
                cli.paths[0].display().to_string(),
                lazy_from_dir(&cli.paths[0], &dst, cli.force),
            ),
        };
        return match res {
            Ok(spec) => {
                println!(
                    "hsm-populate: {from} -> {}: lazy: 1 directory (unpopulated), its entries \
                     made on demand by hsm-serve (metadata: {spec})",
                    dst.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hsm-populate: error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let (from, res) = match &cli.manifest {
        Some(url) => (
            url.clone(),
            from_manifest(url, Duration::from_millis(cli.timeout_ms), &dst, cli.force),
        ),
        None => (
            cli.paths[0].display().to_string(),
            run(&cli.paths[0], &dst, cli.force),
        ),
    };
    match res {
        Ok(s) => {
            println!(
                "hsm-populate: {} -> {}: {} directories, {} files ({} bytes, sparse), {} symlinks, \
                 {} skipped",
                from,
                dst.display(),
                s.dirs,
                s.files,
                s.bytes,
                s.symlinks,
                s.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hsm-populate: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// DST must not exist, or be empty, unless `force`.
fn check_dst(dst: &Path, force: bool) -> Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(m) => {
            let empty = if m.is_dir() {
                fs::read_dir(dst)
                    .with_context(|| format!("read {}", dst.display()))?
                    .next()
                    .is_none()
            } else {
                m.is_file() && m.len() == 0
            };
            if !empty && !force {
                bail!(
                    "destination {} exists and is not empty (use --force to populate into it)",
                    dst.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("destination {}", dst.display())),
    }
}

/// A source directory's canonical path, refusing a DST inside it.
fn source_dir(src: &Path, dst: &Path) -> Result<PathBuf> {
    let src = fs::canonicalize(src).with_context(|| format!("resolve {}", src.display()))?;
    if let Some(parent) = dst.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(p) = fs::canonicalize(parent) {
            if p.starts_with(&src) {
                bail!(
                    "destination {} is inside the source {}",
                    dst.display(),
                    src.display()
                );
            }
        }
    }
    Ok(src)
}

/// `--lazy SRC DST`: the lazy root of the tree at SRC.
fn lazy_from_dir(src: &Path, dst: &Path, force: bool) -> Result<MetaSpec> {
    let m = fs::symlink_metadata(src).with_context(|| format!("source {}", src.display()))?;
    if !m.is_dir() {
        bail!(
            "source {}: --lazy needs a directory (a single file has no entries to make lazily)",
            src.display()
        );
    }
    let src = source_dir(src, dst)?;
    let attrs = lazy::Attrs {
        mode: m.mode() & 0o7777,
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        owner: Some((m.uid(), m.gid())),
    };
    let spec = MetaSpec::Dir(src);
    make_lazy_root(&spec, &attrs, dst, force)?;
    Ok(spec)
}

/// `--lazy --manifest URL|FILE DST`: the whole manifest is fetched and
/// checked (as without --lazy: a bad one is refused with nothing made), and
/// its spec recorded (a file as an absolute path).
fn lazy_from_manifest(spec: &str, timeout: Duration, dst: &Path, force: bool) -> Result<MetaSpec> {
    let entries = manifest::decode(&manifest::fetch(spec, timeout)?)
        .with_context(|| format!("manifest {spec}"))?;
    let root = &entries[0];
    let attrs = lazy::Attrs {
        mode: root.mode,
        mtime: root.mtime,
        owner: None,
    };
    lazy::ManifestIndex::new(entries.clone()).with_context(|| format!("manifest {spec}"))?;
    let spec = if spec.starts_with("http://") {
        spec.to_string()
    } else {
        fs::canonicalize(spec)
            .with_context(|| format!("resolve {spec}"))?
            .to_str()
            .with_context(|| format!("manifest path {spec} is not UTF-8"))?
            .to_string()
    };
    let spec = MetaSpec::Manifest(spec);
    make_lazy_root(&spec, &attrs, dst, force)?;
    Ok(spec)
}

/// DST as an unpopulated lazy directory recording `spec`: made under a
/// temporary name next to it, tagged, given its attributes, then renamed
/// to DST (which must not exist or be an empty directory; `force` empties
/// it first).  Where DST cannot be replaced (a mount point), the empty DST
/// is tagged in place.
fn make_lazy_root(spec: &MetaSpec, attrs: &lazy::Attrs, dst: &Path, force: bool) -> Result<()> {
    let existing = match fs::symlink_metadata(dst) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("destination {}", dst.display())),
    };
    if let Some(m) = &existing {
        let empty_dir = m.is_dir()
            && fs::read_dir(dst)
                .with_context(|| format!("read {}", dst.display()))?
                .next()
                .is_none();
        if !empty_dir {
            if !force {
                bail!(
                    "destination {} exists and is not an empty directory (use --force to \
                     replace it)",
                    dst.display()
                );
            }
            if m.is_dir() {
                for e in fs::read_dir(dst).with_context(|| format!("read {}", dst.display()))? {
                    let e = e.with_context(|| format!("read {}", dst.display()))?;
                    clear(&e.path())?;
                }
            } else {
                clear(dst)?;
            }
        }
    }
    let tag = |p: &Path| -> Result<()> {
        xattr::lset(p, LAZY_XATTR, &spec.encode())
            .and_then(|()| xattr::lset(p, DIR_XATTR, lazy::UNPOPULATED.as_bytes()))
            .with_context(|| {
                format!(
                    "tag {} with {DIR_XATTR} and {LAZY_XATTR} (the filesystem needs user xattrs)",
                    p.display()
                )
            })?;
        if let Some((u, g)) = attrs.owner {
            match fchownat(
                None,
                p,
                Some(Uid::from_raw(u)),
                Some(Gid::from_raw(g)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(nix::errno::Errno::EPERM) => {}
                Err(e) => return Err(e).with_context(|| format!("chown {}", p.display())),
            }
        }
        fs::set_permissions(p, fs::Permissions::from_mode(attrs.mode))
            .with_context(|| format!("chmod {}", p.display()))?;
        let mt = TimeSpec::new(attrs.mtime.0, attrs.mtime.1.into());
        utimensat(
            None,
            p,
            &TimeSpec::UTIME_OMIT,
            &mt,
            UtimensatFlags::NoFollowSymlink,
        )
        .with_context(|| format!("set times of {}", p.display()))
    };
    let name = dst.file_name().context("destination has no file name")?;
    let parent = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".hsm-tmp.{}", std::process::id()));
    let tmp = parent.join(tmp_name);
    fs::create_dir(&tmp).with_context(|| format!("mkdir {}", tmp.display()))?;
    if let Err(e) = tag(&tmp) {
        let _ = fs::remove_dir(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, dst) {
        Ok(()) => Ok(()),
        // DST is a mount point (EBUSY) or cannot be replaced otherwise: tag
        // the empty directory in place.
        Err(e) if dst.is_dir() => {
            let _ = fs::remove_dir(&tmp);
            eprintln!(
                "hsm-populate: cannot replace {} ({e}): tagging it in place (start hsm-serve \
                 after this)",
                dst.display()
            );
            tag(dst)
        }
        Err(e) => {
            let _ = fs::remove_dir(&tmp);
            Err(e).with_context(|| format!("rename {} to {}", tmp.display(), dst.display()))
        }
    }
}

fn run(src: &Path, dst: &Path, force: bool) -> Result<Summary> {
    let src_meta =
        fs::symlink_metadata(src).with_context(|| format!("source {}", src.display()))?;
    let ft = src_meta.file_type();
    if !ft.is_dir() && !ft.is_file() {
        bail!(
            "source {} is neither a directory nor a regular file",
            src.display()
        );
    }
    check_dst(dst, force)?;
    if ft.is_dir() {
        source_dir(src, dst)?;
    }
    let mut s = Summary::default();
    mirror(src, dst, force, &mut s)?;
    Ok(s)
}

/// Build the tree the manifest at `spec` describes at `dst`.  Directory
/// modes and times are set last, deepest first, once their contents exist.
fn from_manifest(spec: &str, timeout: Duration, dst: &Path, force: bool) -> Result<Summary> {
    let entries = manifest::decode(&manifest::fetch(spec, timeout)?)
        .with_context(|| format!("manifest {spec}"))?;
    check_dst(dst, force)?;
    let mut s = Summary::default();
    let mut dirs = Vec::new();
    for e in &entries {
        let p = dst.join(&e.path);
        match &e.kind {
            Kind::Dir => {
                make_dir(&p, force)?;
                dirs.push(e);
                s.dirs += 1;
                continue;
            }
            Kind::File { size } => {
                make_stub(&p, *size, force)?;
                s.files += 1;
                s.bytes += size;
            }
            Kind::Symlink { target } => {
                make_symlink(target, &p, force)?;
                s.symlinks += 1;
            }
        }
        set_attrs(e, &p)?;
    }
    for e in dirs.iter().rev() {
        set_attrs(e, &dst.join(&e.path))?;
    }
    Ok(s)
}

/// Mode (not for symlinks) and mtime of a manifest entry.
fn set_attrs(e: &manifest::Entry, p: &Path) -> Result<()> {
    if !matches!(e.kind, Kind::Symlink { .. }) {
        fs::set_permissions(p, fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    let mt = TimeSpec::new(e.mtime.0, e.mtime.1.into());
    utimensat(
        None,
        p,
        &TimeSpec::UTIME_OMIT,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("set times of {}", p.display()))
}

/// Remove whatever is at `p` (for --force).
fn clear(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("remove {}", p.display())),
        Err(_) => Ok(()),
    }
}

fn mirror(src: &Path, dst: &Path, force: bool, s: &mut Summary) -> Result<()> {
    let m = fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    let ft = m.file_type();
    if ft.is_dir() {
        make_dir(dst, force)?;
        let mut entries: Vec<_> = fs::read_dir(src)
            .with_context(|| format!("read directory {}", src.display()))?
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("read directory {}", src.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            mirror(&e.path(), &dst.join(e.file_name()), force, s)?;
        }
        s.dirs += 1;
    } else if ft.is_file() {
        make_stub(dst, m.len(), force)?;
        s.files += 1;
        s.bytes += m.len();
    } else if ft.is_symlink() {
        let target = fs::read_link(src).with_context(|| format!("readlink {}", src.display()))?;
        make_symlink(&target, dst, force)?;
        s.symlinks += 1;
    } else {
        eprintln!(
            "hsm-populate: skipping {} (not a directory, regular file or symlink)",
            src.display()
        );
        s.skipped += 1;
        return Ok(());
    }
    copy_attrs(&m, dst)
}

/// A directory at `dst` (an existing one is kept; anything else is in the
/// way, and replaced with `force`).
fn make_dir(dst: &Path, force: bool) -> Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(d) if d.is_dir() => Ok(()),
        Ok(_) if force => {
            clear(dst)?;
            fs::create_dir(dst).with_context(|| format!("mkdir {}", dst.display()))
        }
        Ok(_) => bail!("{} exists and is not a directory", dst.display()),
        Err(_) => fs::create_dir(dst).with_context(|| format!("mkdir {}", dst.display())),
    }
}

/// A sparse stub of `size` bytes tagged with [`STUB_XATTR`].  It is made
/// nameless (`O_TMPFILE`), tagged before it is sized, and only then given
/// its name, so that no one can open it untagged: a running `hsm-serve`
/// ignores for good a file it finds without the tag, and would leave its
/// holes to be read as zeros.
fn make_stub(dst: &Path, size: u64, force: bool) -> Result<()> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    if force {
        clear(dst)?;
    }
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fd = open(
        dir,
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| {
        format!(
            "create stub {}: O_TMPFILE in {} (the filesystem must support it)",
            dst.display(),
            dir.display()
        )
    })?;
    // SAFETY: open(2) returned a new descriptor that nothing else owns.
    let f = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    xattr::fset(f.as_fd(), STUB_XATTR, size.to_string().as_bytes()).with_context(|| {
        format!(
            "tag {} with {STUB_XATTR} (the filesystem needs user xattrs)",
            dst.display()
        )
    })?;
    f.set_len(size)
        .with_context(|| format!("size stub {} to {size} bytes", dst.display()))?;
    // Named under a temporary name, then renamed over DST: an empty file
    // there (allowed without --force) is replaced, anything else was
    // refused or cleared before.
    let name = dst.file_name().context("stub path has no file name")?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".hsm-tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let proc_fd = PathBuf::from(format!("/proc/self/fd/{fd}"));
    nix::unistd::linkat(
        None,
        &proc_fd,
        None,
        &tmp,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .with_context(|| format!("link the new stub at {}", tmp.display()))?;
    if let Err(e) = fs::rename(&tmp, dst) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("rename {} to {}", tmp.display(), dst.display()));
    }
    Ok(())
}

fn make_symlink(target: &Path, dst: &Path, force: bool) -> Result<()> {
    if force {
        clear(dst)?;
    }
    std::os::unix::fs::symlink(target, dst)
        .with_context(|| format!("symlink {} -> {}", dst.display(), target.display()))
}

/// Owner (when permitted), mode (not for symlinks) and timestamps.
fn copy_attrs(m: &fs::Metadata, dst: &Path) -> Result<()> {
    let symlink = m.file_type().is_symlink();
    match fchownat(
        None,
        dst,
        Some(Uid::from_raw(m.uid())),
        Some(Gid::from_raw(m.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(e) => return Err(e).with_context(|| format!("chown {}", dst.display())),
    }
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .with_context(|| format!("chmod {}", dst.display()))?;
    }
    let at = TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(None, dst, &at, &mt, UtimensatFlags::NoFollowSymlink)
        .with_context(|| format!("set times of {}", dst.display()))?;
    Ok(())
}
