//! System helpers of the in-guest measurements: scratch filesystem, page
//! cache control and accounting (drop_caches, fadvise, cachestat), disk use,
//! commands, and the hsm-serve daemon.

use anyhow::{anyhow, bail, Context, Result};
use hsm::driver::NoLine;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const PAGE: u64 = 4096;

/// Progress to stderr (the VM console), so a slow TCG run shows where it is.
#[macro_export]
macro_rules! say {
    ($($a:tt)*) => {{
        eprintln!("fpc-bench: {}", format!($($a)*));
    }};
}

/// Run a command to completion; its stdout on success, an error with its
/// stderr otherwise.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {} {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Time a command that must succeed: (seconds, stdout).
pub fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let out = run(cmd)?;
    Ok((t.elapsed().as_secs_f64(), out))
}

/// A program that must exist on PATH (the host's root is the guest's).
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// A tool built next to this binary (hsm-populate, hsm-serve).
pub fn tool(name: &str) -> Result<PathBuf> {
    hsm::driver::tool(name).map_err(|e| anyhow!(e))
}

/// Write back dirty data and drop the whole page cache, dentries and inodes.
pub fn drop_caches() -> Result<()> {
    hsm::cache::drop_all().context("write /proc/sys/vm/drop_caches")
}

/// Drop the cached pages of one file.
pub fn drop_file_cache(f: &File) -> Result<()> {
    hsm::cache::drop_file(f).context("fsync and fadvise DONTNEED")
}

/// Pages of `f` in the page cache (cachestat(2): no mapping, so no
/// pre-content event either).
pub fn cached_pages(f: &File) -> Result<u64> {
    hsm::cache::cached_pages(f, 0, 0).context("cachestat (CONFIG_CACHESTAT_SYSCALL)")
}

/// Every regular file under `root` (symlinks not followed), with its
/// metadata.
pub fn walk(root: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    walk_except(root, &[])
}

/// [`walk`] without the `exclude` paths (relative to `root`) and what is
/// below them.
pub fn walk_except(root: &Path, exclude: &[String]) -> Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if excluded(root, &p, exclude) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        if m.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("read {}", p.display()))? {
                stack.push(e.with_context(|| format!("read {}", p.display()))?.path());
            }
        } else if m.is_file() {
            out.push((p, m));
        }
    }
    Ok(out)
}

/// Bytes of the page cache held by the regular files under `root`.
pub fn cached_bytes(root: &Path) -> Result<u64> {
    let mut pages = 0;
    for (p, m) in walk(root)? {
        if m.len() == 0 {
            continue;
        }
        let f = File::open(&p).with_context(|| format!("open {}", p.display()))?;
        pages += cached_pages(&f).with_context(|| p.display().to_string())?;
    }
    Ok(pages * PAGE)
}

/// Disk use of a tree like `du -s -B1`: allocated blocks (data and xattr
/// blocks) of every inode once, directories and symlinks included.
pub fn disk_use(root: &Path) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("read {}", p.display()))? {
                stack.push(e.with_context(|| format!("read {}", p.display()))?.path());
            }
        }
    }
    Ok(total)
}

/// A fresh ext4 loop image mounted at `<scratch>/mnt`; unmounted and removed
/// on drop.  Mounted with `discard`, so deleted copies give their memory
/// back to the tmpfs under the image.
pub struct Scratch {
    pub mnt: PathBuf,
    img: PathBuf,
}

impl Scratch {
    pub fn new(dir: &Path, size: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let img = dir.join("ext4.img");
        let mnt = dir.join("mnt");
        if mnt.exists() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&mnt)
                .stderr(Stdio::null())
                .status();
        }
        std::fs::create_dir_all(&mnt).with_context(|| format!("mkdir {}", mnt.display()))?;
        let f = File::create(&img).with_context(|| format!("create {}", img.display()))?;
        f.set_len(size).context("size the image")?;
        drop(f);
        run(Command::new("mkfs.ext4").args(["-F", "-q"]).arg(&img))?;
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,discard"])
            .arg(&img)
            .arg(&mnt))?;
        Ok(Scratch { mnt, img })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
    }
}

/// Remove a tree and give its blocks back (fstrim is implied by discard).
pub fn remove_tree(p: &Path) -> Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).with_context(|| format!("remove {}", p.display()))?;
    }
    nix::unistd::sync();
    Ok(())
}

/// Copy the tree `src` to `dst` like `cp -a` (directories, regular files,
/// symlinks; mode, owner, times), leaving out the `exclude` paths (relative
/// to `src`).  Files are copied with 4 MiB reads: `cp` reads a 9p file in
/// st_blksize (4 KiB) pieces, one round trip to the host each.  Hard links
/// are not kept.  Returns (files, bytes).
pub fn copy_tree(src: &Path, dst: &Path, exclude: &[String]) -> Result<(u64, u64)> {
    fn go(
        src: &Path,
        dst: &Path,
        rel: &Path,
        exclude: &[String],
        buf: &mut [u8],
        n: &mut (u64, u64),
    ) -> Result<()> {
        let m =
            std::fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(dst).with_context(|| format!("mkdir {}", dst.display()))?;
            for e in std::fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
                let e = e.with_context(|| format!("read {}", src.display()))?;
                let r = rel.join(e.file_name());
                if !exclude.iter().any(|x| Path::new(x) == r) {
                    go(&e.path(), &dst.join(e.file_name()), &r, exclude, buf, n)?;
                }
            }
        } else if ft.is_file() {
            let mut from = File::open(src).with_context(|| format!("open {}", src.display()))?;
            let mut to = File::create(dst).with_context(|| format!("create {}", dst.display()))?;
            loop {
                let k = std::io::Read::read(&mut from, buf)
                    .with_context(|| format!("read {}", src.display()))?;
                if k == 0 {
                    break;
                }
                to.write_all(&buf[..k])
                    .with_context(|| format!("write {}", dst.display()))?;
                n.1 += k as u64;
            }
            n.0 += 1;
        } else if ft.is_symlink() {
            let t =
                std::fs::read_link(src).with_context(|| format!("readlink {}", src.display()))?;
            std::os::unix::fs::symlink(&t, dst)
                .with_context(|| format!("symlink {}", dst.display()))?;
        } else {
            return Ok(());
        }
        let _ = std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()));
        if !ft.is_symlink() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .with_context(|| format!("chmod {}", dst.display()))?;
        }
        let at = nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec());
        let mt = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
        nix::sys::stat::utimensat(
            None,
            dst,
            &at,
            &mt,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .with_context(|| format!("set times of {}", dst.display()))?;
        Ok(())
    }
    let mut buf = vec![0u8; 4 << 20];
    let mut n = (0, 0);
    go(src, dst, Path::new(""), exclude, &mut buf, &mut n)?;
    Ok(n)
}

/// `hsm-populate SRC DST`: its summary line.
pub fn populate(src: &Path, dst: &Path) -> Result<String> {
    Ok(run(Command::new(tool("hsm-populate")?).arg(src).arg(dst))?
        .trim()
        .to_string())
}

/// The `key=value` pairs of a `ready:` or `stats:` line.
pub use hsm::driver::Kv;

/// The counters of a `stats:` line the benchmark reports.
pub struct Fills {
    pub fetched: u64,
    pub events: u64,
    /// Median latency of an event's answer.
    pub p50_us: u64,
}

impl Fills {
    pub fn of(stats: &Kv) -> Result<Self> {
        Ok(Fills {
            fetched: kv(stats, "fetched_bytes")?,
            events: kv(stats, "events")?,
            p50_us: kv(stats, "p50_us")?,
        })
    }
}

/// A running hsm-serve (the one driver, [`hsm::driver::Serve`], with its
/// errors as `anyhow` errors; its stderr goes to the console); killed on
/// drop if still running.
pub struct Serve {
    d: hsm::driver::Serve,
}

/// How long hsm-serve may take to mark a large tree under TCG.
const READY_WAIT: Duration = Duration::from_secs(900);
/// How long it may take to print its counters.
const STATS_WAIT: Duration = Duration::from_secs(300);

impl Serve {
    /// `hsm-serve SRC DST --mode MODE [EXTRA...]`, waiting for its `ready:`
    /// line.
    pub fn start(src: &Path, dst: &Path, mode: &str, extra: &[&str]) -> Result<Serve> {
        let mut args = vec![src.as_os_str(), dst.as_os_str()];
        args.extend(
            ["--mode", mode]
                .into_iter()
                .chain(extra.iter().copied())
                .map(OsStr::new),
        );
        let mut d = hsm::driver::Serve::spawn(&args, None).map_err(|e| anyhow!(e))?;
        if let Err(e) = d.wait_ready(READY_WAIT, |_| {}) {
            match e {
                NoLine::Timeout => bail!("hsm-serve printed no 'ready:' line in {READY_WAIT:?}"),
                NoLine::Closed => {
                    let st = d.wait_exit(STATS_WAIT).context("wait for hsm-serve")?;
                    bail!("hsm-serve exited ({st:?}) before printing 'ready:'")
                }
            }
        }
        Ok(Serve { d })
    }

    /// The current `stats:` pairs (SIGUSR1); the daemon keeps running.
    pub fn stats(&mut self) -> Result<Kv> {
        self.d.stats(STATS_WAIT, |_| {}).map_err(|e| anyhow!(e))
    }

    /// SIGTERM, wait, and return the final `stats:` pairs.
    pub fn stop(mut self) -> Result<Kv> {
        self.d
            .signal(nix::sys::signal::Signal::SIGTERM)
            .context("kill hsm-serve")?;
        let line = self
            .d
            .next_line("stats:", STATS_WAIT, |_| {})
            .map_err(|e| anyhow!("hsm-serve printed no final 'stats:' line: {e}"))?;
        let st = self
            .d
            .wait_exit(STATS_WAIT)
            .context("wait for hsm-serve")?
            .context("hsm-serve still runs after its final stats")?;
        if !st.success() {
            bail!("hsm-serve exited with {st}");
        }
        let kv = hsm::stats::parse_line(&line, "stats:").unwrap_or_default();
        if kv.get("errors").copied().unwrap_or(0) != 0 {
            bail!("hsm-serve reported errors: {line}");
        }
        Ok(kv)
    }
}

pub fn kv(m: &Kv, key: &str) -> Result<u64> {
    m.get(key)
        .copied()
        .ok_or_else(|| anyhow!("no {key}= in hsm-serve output {m:?}"))
}

/// The toolchain's rustc, run with `--version`: (seconds, version line).
pub fn rustc_version(toolchain: &Path) -> Result<(f64, String)> {
    let rustc = toolchain.join("bin/rustc");
    let (secs, out) = timed(Command::new(&rustc).arg("--version"))?;
    let line = out.trim().to_string();
    if !line.starts_with("rustc ") {
        bail!("{} --version printed {line:?}", rustc.display());
    }
    Ok((secs, line))
}

/// Print and flush one line on stdout.
pub fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// The biggest regular files directly in `dir`, largest first.
pub fn biggest_files(dir: &Path, n: usize) -> Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e.with_context(|| format!("read {}", dir.display()))?;
        let m = std::fs::symlink_metadata(e.path())?;
        if m.is_file() {
            v.push((e.path(), m.len()));
        }
    }
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v.truncate(n);
    if v.is_empty() {
        bail!("no regular file in {}", dir.display());
    }
    Ok(v)
}

/// Is `p` (under `root`) one of the `exclude` paths (relative to `root`) or
/// below one?
pub fn excluded(root: &Path, p: &Path, exclude: &[String]) -> bool {
    p.strip_prefix(root)
        .map(|r| exclude.iter().any(|e| r.starts_with(e)))
        .unwrap_or(false)
}

/// `hsm-populate` of `src` at `dst` without the `exclude` paths (relative
/// to `src`): the subtrees beside them are populated one by one.  Returns
/// the number of hsm-populate runs.
pub fn populate_filtered(src: &Path, dst: &Path, exclude: &[String]) -> Result<usize> {
    fn go(src: &Path, dst: &Path, rel: &Path, exclude: &[String]) -> Result<usize> {
        if !exclude.iter().any(|e| Path::new(e).starts_with(rel)) {
            populate(src, dst)?;
            return Ok(1);
        }
        std::fs::create_dir_all(dst).with_context(|| format!("mkdir {}", dst.display()))?;
        let mut n = 0;
        for e in std::fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
            let e = e.with_context(|| format!("read {}", src.display()))?;
            let r = rel.join(e.file_name());
            if exclude.iter().any(|x| Path::new(x) == r) {
                continue;
            }
            let (s, d) = (e.path(), dst.join(e.file_name()));
            if e.file_type()?.is_symlink() {
                let t =
                    std::fs::read_link(&s).with_context(|| format!("readlink {}", s.display()))?;
                std::os::unix::fs::symlink(&t, &d)
                    .with_context(|| format!("symlink {}", d.display()))?;
            } else {
                n += go(&s, &d, &r, exclude)?;
            }
        }
        Ok(n)
    }
    go(src, dst, Path::new(""), exclude)
}
