//! hsm-populate: mirror a directory tree (or one file) as sparse HSM stubs.
//!
//! Directories are created, regular files become sparse files of the same
//! size (no data blocks) tagged with the `user.hsm.stub` xattr (value: the
//! size), symlinks are copied as symlinks.  Modes, owners (when permitted)
//! and timestamps are copied.  Other file types are skipped and counted.
//! `hsm-serve SRC DST` then fills the stubs on demand.

use anyhow::{bail, Context, Result};
use clap::Parser;
use hsm::{xattr, STUB_XATTR};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hsm-populate",
    about = "Mirror SRC (a directory tree or one file) at DST as sparse HSM stubs",
    after_help = "Regular files become sparse stubs of the same size and mode, tagged with the \
                  user.hsm.stub xattr (their size); directories and symlinks are recreated.\n\
                  DST must not exist, or be an empty directory / empty file, unless --force.\n\
                  Prints one summary line.  Exit status: 0 done, 1 error, 2 bad usage."
)]
struct Cli {
    /// The tree (or file) to mirror.
    src: PathBuf,
    /// Where the stubs go (for a file SRC: the stub's path).
    dst: PathBuf,
    /// Populate into a non-empty DST, replacing entries that are in the way.
    #[arg(long)]
    force: bool,
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
    match run(&cli) {
        Ok(s) => {
            println!(
                "hsm-populate: {} -> {}: {} directories, {} files ({} bytes, sparse), {} symlinks, \
                 {} skipped",
                cli.src.display(),
                cli.dst.display(),
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

fn run(cli: &Cli) -> Result<Summary> {
    let src_meta =
        fs::symlink_metadata(&cli.src).with_context(|| format!("source {}", cli.src.display()))?;
    let ft = src_meta.file_type();
    if !ft.is_dir() && !ft.is_file() {
        bail!(
            "source {} is neither a directory nor a regular file",
            cli.src.display()
        );
    }
    match fs::symlink_metadata(&cli.dst) {
        Ok(m) => {
            let empty = if m.is_dir() {
                fs::read_dir(&cli.dst)
                    .with_context(|| format!("read {}", cli.dst.display()))?
                    .next()
                    .is_none()
            } else {
                m.is_file() && m.len() == 0
            };
            if !empty && !cli.force {
                bail!(
                    "destination {} exists and is not empty (use --force to populate into it)",
                    cli.dst.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("destination {}", cli.dst.display())),
    }
    if ft.is_dir() {
        let src =
            fs::canonicalize(&cli.src).with_context(|| format!("resolve {}", cli.src.display()))?;
        if let Some(parent) = cli.dst.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(p) = fs::canonicalize(parent) {
                if p.starts_with(&src) {
                    bail!(
                        "destination {} is inside the source {}",
                        cli.dst.display(),
                        src.display()
                    );
                }
            }
        }
    }
    let mut s = Summary::default();
    mirror(&cli.src, &cli.dst, cli.force, &mut s)?;
    Ok(s)
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
        match fs::symlink_metadata(dst) {
            Ok(d) if d.is_dir() => {}
            Ok(_) if force => {
                clear(dst)?;
                fs::create_dir(dst).with_context(|| format!("mkdir {}", dst.display()))?;
            }
            Ok(_) => bail!("{} exists and is not a directory", dst.display()),
            Err(_) => fs::create_dir(dst).with_context(|| format!("mkdir {}", dst.display()))?,
        }
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
        if force {
            clear(dst)?;
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dst)
            .with_context(|| format!("create stub {}", dst.display()))?;
        f.set_len(m.len())
            .with_context(|| format!("size stub {} to {} bytes", dst.display(), m.len()))?;
        use std::os::fd::AsFd;
        xattr::fset(f.as_fd(), STUB_XATTR, m.len().to_string().as_bytes()).with_context(|| {
            format!(
                "tag {} with {STUB_XATTR} (the filesystem needs user xattrs)",
                dst.display()
            )
        })?;
        s.files += 1;
        s.bytes += m.len();
    } else if ft.is_symlink() {
        let target = fs::read_link(src).with_context(|| format!("readlink {}", src.display()))?;
        if force {
            clear(dst)?;
        }
        std::os::unix::fs::symlink(&target, dst)
            .with_context(|| format!("symlink {} -> {}", dst.display(), target.display()))?;
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
