//! hsm-serve: the reference HSM daemon.  Fills the stubs `hsm-populate` made
//! under DST from the files under SRC, on demand, from fanotify pre-content
//! events.  SRC (positional, or `--source`) is a local directory or an
//! `http://` URL fetched with range requests (see [`hsm::source`]).
//!
//! * Marks: one inode mark per stub (a regular file under DST with the
//!   `user.hsm.stub` xattr that is not yet fully populated), with
//!   `FAN_PRE_ACCESS` (`--mode mmap`: mainline's whole-range event at mmap
//!   time) or `FAN_PRE_ACCESS | FAN_PRE_FAULT` (`--mode fault`, default: an
//!   event per page-cache miss at fault time).  Inode marks leave SRC
//!   unwatched even when it shares DST's filesystem, and a file's mark is
//!   removed once it is complete, so it costs nothing afterwards.
//! * Events: the event's file is mapped to SRC by its path relative to DST
//!   (`readlink /proc/self/fd/N`); the requested range, widened to
//!   `--fill-size` boundaries (pages by default) and clamped to the stub's
//!   size (the whole file if the event has no range), minus what is already
//!   populated, is copied from the source into the
//!   event fd (a directory: `copy_file_range`, falling back to pread/pwrite;
//!   a URL: range requests and pwrite; the event fd never generates events),
//!   made durable (`fdatasync`), recorded, and the event answered
//!   `FAN_ALLOW`; a failing source (missing, short, an HTTP error or
//!   timeout, a wrong answer) gets `FAN_DENY_ERRNO(EIO)`.
//! * Fill size (`--fill-size SIZE`, default 4K = one page; a power of two
//!   from 4K to 64M): the granularity of fills.  A range is widened down and
//!   up to multiples of SIZE, so one event fetches the whole aligned chunk
//!   around what was asked for: more bytes fetched, fewer events (a
//!   sequential reader of a cold stub gets about one event per SIZE instead
//!   of one per readahead window or per page).  The fill writes the extra
//!   pages through the event fd, so they enter the page cache filled, and
//!   later faults on them are page-cache hits that send no event at all
//!   (unless the filesystem cloned the range instead of copying it, e.g. a
//!   reflink copy on xfs or btrfs with SRC on DST's filesystem, or the pages
//!   were reclaimed: then the fault is an event that finds nothing to fetch).
//! * State: the populated ranges of each stub live in its
//!   `user.hsm.populated` xattr (`--state xattr`) or in a state file
//!   (`--state PATH`), so a restarted daemon never fetches them again.  If a
//!   file's range list would exceed 2 KiB, the smallest gaps are fetched too
//!   until it fits.  A complete file loses its `user.hsm.stub` xattr, its
//!   state and its mark.
//! * Workers: events are handled by a pool of threads; events of one file
//!   are serialised by a per-file lock, so a range asked for twice is
//!   fetched once; different files are filled in parallel.  Each worker has
//!   its own fetcher (for a URL: its own keep-alive connection).
//! * Access profiles (`--record-profile FILE`, `--prefetch FILE`; see
//!   [`hsm::prefetch`]): record the ranges this run fills, in order; or
//!   prefetch those of an earlier run in the background, in parallel, into
//!   memory, where the fills find them (a wrapper of the source: the fill
//!   path is the same), and read each piece back through its stub, so that
//!   a worker fills it and the program's faults there find it cached.  The
//!   prefetch threads are plain readers of DST: this relies on the daemon
//!   answering them like any other reader.

use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, Parser, ValueEnum};
use fanotify::consts::*;
use fanotify::{Event, Fanotify, Response};
use hsm::ranges::{fill_span, RangeSet};
use hsm::source::{open_source, Fetcher, HttpConfig, Source};
use hsm::stats::Counters;
use hsm::util::parse_fill_size;
use hsm::{state, xattr, EXIT_UNSUPPORTED, PAGE, POPULATED_XATTR, STUB_XATTR};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "hsm-serve",
    override_usage = "hsm-serve [OPTIONS] SRC DST\n       hsm-serve [OPTIONS] --source DIR|URL DST",
    about = "Fill HSM stubs under DST from SRC on fanotify pre-content events",
    after_help = "Prints 'ready: marked=N complete=N ...' on stdout once its marks are in place, \
                  and a 'stats: events=N fetched_bytes=N files_completed=N errors=N duplicates=N \
                  max_parallel=N p50_us=N p90_us=N p99_us=N max_us=N' line on SIGUSR1 and on exit (SIGINT, \
                  SIGTERM).\n\
                  Exit status: 0 after SIGINT/SIGTERM; 1 error; 2 bad usage; 3 the kernel or \
                  filesystem lacks the needed fanotify feature (e.g. FAN_PRE_FAULT)."
)]
struct Cli {
    /// SRC DST, or only DST with --source SRC.  SRC: the tree (or file)
    /// holding the real content, a local path or an http:// URL (as for
    /// --source); DST: the stub tree (or stub file) made by hsm-populate.
    #[arg(value_names = ["SRC", "DST"], num_args = 1..=2, required = true)]
    paths: Vec<OsString>,
    /// Where the real content is: a directory (or file), or an http:// URL
    /// (http://HOST:PORT/PREFIX/: the file at relative path P is fetched
    /// from PREFIX/P with range requests; no TLS).  Instead of the
    /// positional SRC.
    #[arg(long, value_name = "DIR|URL")]
    source: Option<OsString>,
    /// HTTP source: the time one range request may take, retries included;
    /// a range not fetched in time is denied with EIO.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    http_timeout_ms: u64,
    /// HTTP source: retries after a connection error, a timeout or a 5xx
    /// answer (backoff 100 ms, doubled each time, at most 2 s).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=20))]
    http_retries: u32,
    /// fault: FAN_PRE_ACCESS|FAN_PRE_FAULT (pages fetched as they are faulted);
    /// mmap: FAN_PRE_ACCESS only (mainline: the whole mapped range at mmap()).
    #[arg(long, value_enum, default_value_t = Mode::Fault)]
    mode: Mode,
    /// Worker threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,
    /// Where populated ranges are kept: "xattr" (user.hsm.populated on each
    /// stub) or the path of a state file.
    #[arg(long, default_value = "xattr")]
    state: String,
    /// Sleep this long before each fetch (simulates a slow remote store).
    #[arg(long, default_value_t = 0)]
    fetch_delay_ms: u64,
    /// Fill granularity: each event's range is widened to multiples of SIZE
    /// (clamped to the file's size), trading bytes fetched for fewer events.
    /// A power of two from 4K (one page: only what was asked for) to 64M;
    /// suffixes K, M.
    #[arg(long, value_name = "SIZE", default_value = "4K", value_parser = parse_fill_size)]
    fill_size: u64,
    /// Skip the fdatasync of each fill before its state is recorded.
    #[arg(long)]
    no_sync: bool,
    /// Log every event to stderr.
    #[arg(short, long)]
    verbose: bool,
    /// Access profiles: --record-profile, --prefetch (see hsm::prefetch).
    #[command(flatten)]
    profile: hsm::prefetch::Args,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    Fault,
    Mmap,
}

/// A missing kernel or filesystem feature (exit status 3).
#[derive(Debug)]
struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Longest encoded range list kept per file (fits an ext4 xattr block).
const MAX_STATE: usize = 2048;

/// Where the populated ranges live.
enum Store {
    Xattr,
    File {
        path: PathBuf,
        map: Mutex<BTreeMap<PathBuf, RangeSet>>,
    },
}

impl Store {
    fn open(spec: &str) -> Result<Self> {
        if spec == "xattr" {
            return Ok(Store::Xattr);
        }
        let path = PathBuf::from(spec);
        let map = match std::fs::read_to_string(&path) {
            Ok(text) => {
                state::decode(&text).with_context(|| format!("state file {}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("read state file {}", path.display())),
        };
        Ok(Store::File {
            path,
            map: Mutex::new(map),
        })
    }

    fn name(&self) -> String {
        match self {
            Store::Xattr => "xattr".into(),
            Store::File { path, .. } => path.display().to_string(),
        }
    }

    fn load(&self, fd: BorrowedFd<'_>, rel: &Path) -> Result<RangeSet> {
        match self {
            Store::Xattr => match xattr::fget(fd, POPULATED_XATTR)
                .with_context(|| format!("read {POPULATED_XATTR} of {}", rel.display()))?
            {
                None => Ok(RangeSet::new()),
                Some(v) => RangeSet::decode(&String::from_utf8_lossy(&v))
                    .with_context(|| format!("{POPULATED_XATTR} of {}", rel.display())),
            },
            Store::File { map, .. } => Ok(lock(map).get(rel).cloned().unwrap_or_default()),
        }
    }

    fn save(&self, fd: BorrowedFd<'_>, rel: &Path, r: &RangeSet) -> Result<()> {
        match self {
            Store::Xattr => xattr::fset(fd, POPULATED_XATTR, r.encode().as_bytes())
                .with_context(|| format!("write {POPULATED_XATTR} of {}", rel.display())),
            Store::File { path, map } => {
                let mut m = lock(map);
                m.insert(rel.to_path_buf(), r.clone());
                write_state_file(path, &m)
            }
        }
    }

    fn forget(&self, fd: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        match self {
            Store::Xattr => xattr::fremove(fd, POPULATED_XATTR)
                .with_context(|| format!("remove {POPULATED_XATTR} of {}", rel.display())),
            Store::File { path, map } => {
                let mut m = lock(map);
                if m.remove(rel).is_some() {
                    write_state_file(path, &m)?;
                }
                Ok(())
            }
        }
    }
}

fn write_state_file(path: &Path, m: &BTreeMap<PathBuf, RangeSet>) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(state::encode(m).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// (st_dev, st_ino) of a stub.
type FileKey = (u64, u64);

struct Daemon {
    group: Fanotify,
    source: Box<dyn Source>,
    dst: PathBuf,
    mask: u64,
    store: Store,
    counters: Counters,
    /// Per-file locks, by (st_dev, st_ino).
    locks: Mutex<HashMap<FileKey, Arc<Mutex<()>>>>,
    delay: Duration,
    /// `--fill-size`: fills are widened to multiples of this.
    fill: u64,
    sync: bool,
    verbose: bool,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.source.is_some() != (cli.paths.len() == 1) {
        let msg = if cli.source.is_some() {
            "with --source, give only DST"
        } else {
            "give SRC and DST (or --source SRC DST)"
        };
        Cli::command()
            .error(clap::error::ErrorKind::WrongNumberOfValues, msg)
            .exit();
    }
    if let Some(s) = cli.source.take() {
        cli.paths.insert(0, s);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm-serve: error: {e:#}");
            if e.downcast_ref::<Unsupported>().is_some() {
                ExitCode::from(EXIT_UNSUPPORTED as u8)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let http = HttpConfig {
        timeout: Duration::from_millis(cli.http_timeout_ms),
        retries: cli.http_retries,
        ..HttpConfig::default()
    };
    let source = open_source(&cli.paths[0], http)?;
    let dst_arg = Path::new(&cli.paths[1]);
    let dst = std::fs::canonicalize(dst_arg)
        .with_context(|| format!("destination {}", dst_arg.display()))?;
    // Access profiles (hsm::prefetch): the source, wrapped if asked.
    let source = hsm::prefetch::wrap(source, &cli.profile, &dst)?;
    let store = Store::open(&cli.state)?;
    let mask = match cli.mode {
        Mode::Fault => FAN_PRE_ACCESS | FAN_PRE_FAULT,
        Mode::Mmap => FAN_PRE_ACCESS,
    };
    let group = Fanotify::init(
        FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
        (libc::O_RDWR | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
    )
    .map_err(|e| match e.errno() {
        Some(Errno::EINVAL) => anyhow!(Unsupported(format!(
            "{e}: this kernel has no pre-content events (FAN_CLASS_PRE_CONTENT)"
        ))),
        Some(Errno::EPERM) => anyhow!("{e}: needs CAP_SYS_ADMIN"),
        _ => anyhow!("{e}"),
    })?;

    // Signals are taken from a signalfd; block them before any thread starts
    // so that every thread inherits the mask.
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR1] {
        sigs.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&sigs), None)
        .context("block signals")?;
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;

    let d = Arc::new(Daemon {
        group,
        source,
        dst,
        mask,
        store,
        counters: Counters::default(),
        locks: Mutex::new(HashMap::new()),
        delay: Duration::from_millis(cli.fetch_delay_ms),
        fill: cli.fill_size,
        sync: !cli.no_sync,
        verbose: cli.verbose,
    });
    let (marked, complete) = d.mark_tree(cli.mode)?;

    let (tx, rx) = mpsc::channel::<(Event, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..cli.workers)
        .map(|i| {
            let d = d.clone();
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hsm-worker-{i}"))
                .spawn(move || {
                    let mut fetcher = d.source.fetcher();
                    loop {
                        let job = lock(&rx).recv();
                        match job {
                            Ok((ev, t0)) => d.handle(&mut *fetcher, ev, t0),
                            Err(_) => return,
                        }
                    }
                })
                .context("spawn worker")
        })
        .collect::<Result<_>>()?;

    println!(
        "ready: marked={marked} complete={complete} mode={} workers={} fill_size={} state={} dst={}",
        match cli.mode {
            Mode::Fault => "fault",
            Mode::Mmap => "mmap",
        },
        cli.workers,
        d.fill,
        d.store.name(),
        d.dst.display()
    );
    flush();

    let why = d.event_loop(&sfd, &tx)?;
    drop(tx);
    for w in workers {
        let _ = w.join();
    }
    eprintln!("hsm-serve: exiting on {why:?}");
    println!("{}", d.counters.line());
    flush();
    Ok(())
}

fn flush() {
    let _ = std::io::stdout().flush();
}

impl Daemon {
    /// Mark every incomplete stub under DST; finish complete ones.  Returns
    /// (marked, found complete).
    fn mark_tree(&self, mode: Mode) -> Result<(u64, u64)> {
        let mut marked = 0;
        let mut complete = 0;
        let mut stack = vec![self.dst.clone()];
        while let Some(p) = stack.pop() {
            let m =
                std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
            if m.is_dir() {
                for e in std::fs::read_dir(&p).with_context(|| format!("read {}", p.display()))? {
                    stack.push(e.with_context(|| format!("read {}", p.display()))?.path());
                }
                continue;
            }
            if !m.is_file() {
                continue;
            }
            let Some(stub) = xattr::lget(&p, STUB_XATTR)
                .with_context(|| format!("read {STUB_XATTR} of {}", p.display()))?
            else {
                continue;
            };
            let stub_size = parse_stub(&stub, &p)?;
            let rel = self.rel(&p)?;
            // Opened before any mark exists on it: no event.
            let f = File::open(&p).with_context(|| format!("open {}", p.display()))?;
            let ranges = self.store.load(f.as_fd(), &rel)?;
            if ranges.covers(0, m.len().min(stub_size)) {
                self.finish(f.as_fd(), &rel)?;
                complete += 1;
                continue;
            }
            drop(f);
            self.group
                .mark(FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW, self.mask, &p)
                .map_err(|e| match e.errno() {
                    Some(Errno::EINVAL) if mode == Mode::Fault => anyhow!(Unsupported(format!(
                        "{e}: this kernel rejects FAN_PRE_FAULT (no fault-time pre-content \
                         events); use --mode mmap"
                    ))),
                    Some(Errno::EINVAL) => anyhow!(Unsupported(format!(
                        "{e}: this kernel rejects FAN_PRE_ACCESS (no pre-content events)"
                    ))),
                    Some(Errno::EOPNOTSUPP) => anyhow!(Unsupported(format!(
                        "{e}: the filesystem of {} does not allow pre-content marks \
                         (ext4, xfs and btrfs do)",
                        p.display()
                    ))),
                    _ => anyhow!("{e}"),
                })?;
            marked += 1;
        }
        Ok((marked, complete))
    }

    /// Wait for events and signals.  Returns the signal that ended it.
    fn event_loop(&self, sfd: &SignalFd, tx: &mpsc::Sender<(Event, Instant)>) -> Result<Signal> {
        loop {
            let mut fds = [
                PollFd::new(self.group.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            while let Some(si) = sfd.read_signal().context("read signalfd")? {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGUSR1) => {
                        println!("{}", self.counters.line());
                        flush();
                    }
                    Ok(s) => return Ok(s),
                    Err(_) => {}
                }
            }
            loop {
                let events = self.group.read_events().context("read fanotify events")?;
                if events.is_empty() {
                    break;
                }
                let t0 = Instant::now();
                for ev in events {
                    if ev.mask & FAN_Q_OVERFLOW != 0 {
                        eprintln!("hsm-serve: fanotify queue overflow");
                        Counters::add(&self.counters.errors, 1);
                    }
                    if ev.needs_response() {
                        tx.send((ev, t0))
                            .map_err(|_| anyhow!("all workers are gone"))?;
                    }
                }
            }
        }
    }

    /// Answer one permission event.
    fn handle(&self, fetcher: &mut dyn Fetcher, ev: Event, t0: Instant) {
        let Some(fd) = ev.fd.as_ref() else { return };
        let resp = if ev.mask & (FAN_PRE_ACCESS | FAN_PRE_FAULT) == 0 {
            Response::Allow
        } else {
            match self.serve(fetcher, &ev, fd.as_fd()) {
                Ok(()) => Response::Allow,
                Err(e) => {
                    eprintln!("hsm-serve: denying with EIO: {e:#}");
                    Counters::add(&self.counters.errors, 1);
                    Response::DenyErrno(libc::EIO)
                }
            }
        };
        Counters::add(&self.counters.events, 1);
        self.counters
            .record_latency(t0.elapsed().as_micros() as u64);
        if let Err(e) = self.group.respond(fd.as_fd(), resp) {
            eprintln!("hsm-serve: {e}");
            Counters::add(&self.counters.errors, 1);
        }
    }

    fn rel(&self, p: &Path) -> Result<PathBuf> {
        p.strip_prefix(&self.dst)
            .map(Path::to_path_buf)
            .map_err(|_| anyhow!("{} is not under {}", p.display(), self.dst.display()))
    }

    fn file_lock(&self, key: FileKey) -> Arc<Mutex<()>> {
        lock(&self.locks).entry(key).or_default().clone()
    }

    /// Fill what the event asks for.  Err: deny it.
    fn serve(&self, fetcher: &mut dyn Fetcher, ev: &Event, fd: BorrowedFd<'_>) -> Result<()> {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("fstat event fd")?;
        let key = (st.st_dev, st.st_ino);
        let flock = self.file_lock(key);
        let _guard = lock(&flock);
        let path = ev.path().context("readlink event fd")?;
        let Some(stub) = xattr::fget(fd, STUB_XATTR)
            .with_context(|| format!("read {STUB_XATTR} of {}", path.display()))?
        else {
            // Not (or no longer) a stub: completed while this was queued.
            Counters::add(&self.counters.duplicates, 1);
            return Ok(());
        };
        if path.to_string_lossy().ends_with(" (deleted)") {
            bail!("{} was deleted", path.display());
        }
        let stub_size = parse_stub(&stub, &path)?;
        let rel = self.rel(&path)?;
        let limit = (st.st_size as u64).min(stub_size);
        let mut ranges = self.store.load(fd, &rel)?;
        let span = match ev.range() {
            Some(r) => fill_span(r.offset, r.count, PAGE, self.fill, limit),
            None => (limit > 0).then_some((0, limit)),
        };
        let missing = span.map_or_else(Vec::new, |(s, e)| ranges.missing(s, e));
        let mut fetched = 0;
        let res = if missing.is_empty() {
            Counters::add(&self.counters.duplicates, 1);
            Ok(())
        } else {
            self.fetch(fetcher, &rel, fd, &missing, &mut ranges, &mut fetched)
        };
        if self.verbose {
            eprintln!(
                "hsm-serve: {} mask={:#x} range={:?} fetched={fetched} missing={missing:?}",
                rel.display(),
                ev.mask,
                ev.range()
            );
        }
        Counters::add(&self.counters.fetched_bytes, fetched);
        if fetched > 0 {
            if self.sync {
                nix::unistd::fdatasync(fd.as_raw_fd())
                    .with_context(|| format!("fdatasync {}", path.display()))?;
            }
            if ranges.covers(0, limit) {
                self.finish(fd, &rel)?;
                Counters::add(&self.counters.files_completed, 1);
                lock(&self.locks).remove(&key);
            } else {
                self.store.save(fd, &rel, &ranges)?;
            }
        }
        res
    }

    /// Copy the `missing` ranges from the source; then, while the range
    /// list is too long to store, the smallest gaps.
    fn fetch(
        &self,
        fetcher: &mut dyn Fetcher,
        rel: &Path,
        fd: BorrowedFd<'_>,
        missing: &[(u64, u64)],
        ranges: &mut RangeSet,
        fetched: &mut u64,
    ) -> Result<()> {
        let mut src = fetcher.open(rel)?;
        let _fetching = self.counters.fetch_started();
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        for &(s, e) in missing {
            src.copy_to(fd, s, e)
                .with_context(|| format!("fill {}", rel.display()))?;
            ranges.insert(s, e);
            *fetched += e - s;
        }
        while ranges.encode().len() > MAX_STATE {
            let Some((s, e)) = ranges.smallest_gap() else {
                break;
            };
            src.copy_to(fd, s, e)
                .with_context(|| format!("fill {}", rel.display()))?;
            ranges.insert(s, e);
            *fetched += e - s;
        }
        Ok(())
    }

    /// A complete file: no longer a stub, no state, no mark.
    fn finish(&self, fd: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        xattr::fremove(fd, STUB_XATTR)
            .with_context(|| format!("remove {STUB_XATTR} of {}", rel.display()))?;
        self.store.forget(fd, rel)?;
        // ENOENT: never marked (found complete at start-up) or removed.
        match self.group.mark_fd(FAN_MARK_REMOVE, self.mask, fd, None) {
            Err(e) if e.errno() != Some(Errno::ENOENT) => {
                return Err(anyhow!("{e}")).context(format!("unmark {}", rel.display()))
            }
            _ => {}
        }
        if self.verbose {
            eprintln!("hsm-serve: {} complete", rel.display());
        }
        Ok(())
    }
}

fn parse_stub(v: &[u8], p: &Path) -> Result<u64> {
    String::from_utf8_lossy(v)
        .trim()
        .parse()
        .with_context(|| format!("{STUB_XATTR} of {} is not a size: {v:?}", p.display()))
}
