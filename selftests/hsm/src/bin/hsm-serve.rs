//! hsm-serve: the reference HSM daemon.  Fills the stubs `hsm-populate` made
//! under DST from the files under SRC, on demand, from fanotify pre-content
//! events.  SRC (positional, or `--source`) is a local directory or an
//! `http://` URL fetched with range requests (see [`hsm::source`]).
//!
//! * Marks: one filesystem mark on DST's filesystem, with `FAN_PRE_ACCESS`
//!   (`--mode mmap`: mainline's whole-range event at mmap time) or
//!   `FAN_PRE_ACCESS | FAN_PRE_FAULT` (`--mode fault`, default: an event per
//!   page-cache miss at fault time).  Nothing is walked at start-up, and a
//!   stub created later (`hsm-populate` into a running daemon's DST) is
//!   served like the others.  A file that is not an incomplete stub (no
//!   `user.hsm.stub` xattr: complete, or never a stub, in DST or anywhere
//!   else on the filesystem) gets its first event answered at once and an
//!   inode ignore mark for the mask (`FAN_MARK_IGNORE`, evictable), so it
//!   costs nothing afterwards and, in fault mode, leaves fault-time mode
//!   from its next open on (an inode evicted from memory loses the ignore
//!   mark: its next open costs one event again).  A stub reached by a path
//!   outside DST (a hard link, another mount) is denied with EIO, never
//!   read as holes.  One daemon per filesystem.
//! * The daemon's own accesses never wait on it: fills and evictions go
//!   through descriptors that generate no events (the event's, or one
//!   under an ignore mark); its other accesses to the filesystem (a SRC or
//!   `--state` file on DST's filesystem) are of files that are not stubs,
//!   whose events the thread that reads events answers at once, never
//!   queued behind a worker that may be the one waiting.
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
//!   state, and is ignored from then on.
//! * Eviction (`--control SOCKET`, driven by `hsm-evict`): drops the content
//!   of a file or range that nothing uses, so that the next access fetches
//!   it again.  A file in use is skipped: eviction holds a write lease
//!   (`F_SETLEASE F_WRLCK`), which the kernel grants only while no other
//!   open file description of the inode exists (open, mapped or executing,
//!   the daemon's own event descriptors included), and which makes every
//!   open or truncate by another process wait until it is released.  Under
//!   the per-file lock, the state first loses the range (a crash then
//!   refetches, never serves a hole as filled), the lease is taken (if it is
//!   refused, the state is put back and the reply is `busy`), the range is
//!   punched out (`FALLOC_FL_PUNCH_HOLE`, under an ignore mark so the punch
//!   sends no event to the daemon itself), the ignore mark is dropped (a
//!   complete file is a stub again) and the lease released.
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
//! * Lazy directories (`hsm-populate --lazy`, see [`hsm::lazy`]): for a lazy
//!   DST the filesystem mark has `FAN_PRE_DIR_ACCESS` too (a DST that is not
//!   lazy goes without: its daemon would answer every directory of the
//!   filesystem for nothing).  A
//!   directory event is answered at once by the thread that reads events
//!   when the directory is not an unpopulated lazy one (ignored from then
//!   on, evictable ignore mark for `FAN_PRE_DIR_ACCESS`), or denied with EIO
//!   when it is one reached outside DST.  Otherwise a worker takes the
//!   directory's lock, and unless it is populated by then, makes its entries
//!   from the metadata the root's `user.hsm.lazy` names (a source directory,
//!   listed; a manifest, fetched once and indexed by directory), every call
//!   relative to the event's descriptor (which sends no event: the daemon's
//!   own walks from anywhere else would), syncs the directory, tags it
//!   `populated`, syncs it again, ignores it and allows the event.  A
//!   directory whose metadata cannot be had is denied with EIO, nothing
//!   tagged.  The daemon's own events of unpopulated directories (an
//!   eviction's path, a prefetch thread) go to the workers too: no worker
//!   ever walks a path into DST, so none waits for one.

use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, Parser, ValueEnum};
use fanotify::consts::FAN_PRE_DIR_ACCESS;
use fanotify::consts::*;
use fanotify::{Event, Fanotify, Response};
use hsm::lazy::{self, DirState, MetaSpec};
use hsm::ranges::{fill_span, RangeSet};
use hsm::source::{open_source, Fetcher, HttpConfig, Source};
use hsm::stats::Counters;
use hsm::util::parse_fill_size;
use hsm::{
    control, state, xattr, DIR_XATTR, EXIT_UNSUPPORTED, LAZY_XATTR, PAGE, POPULATED_XATTR,
    STUB_XATTR,
};
use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "hsm-serve",
    override_usage = "hsm-serve [OPTIONS] SRC DST\n       hsm-serve [OPTIONS] --source DIR|URL DST",
    about = "Fill HSM stubs under DST from SRC on fanotify pre-content events",
    after_help = "Prints 'ready: mark=filesystem mode=... control=... dir_access=0|1 lazy=0|1' on \
                  stdout once its mark is in place, and a 'stats: events=N fetched_bytes=N \
                  files_completed=N errors=N duplicates=N ignored=N own=N evicted_files=N \
                  evicted_bytes=N evict_busy=N max_parallel=N p50_us=N p90_us=N p99_us=N max_us=N \
                  dir_events=N dir_ignored=N dirs_populated=N entries_created=N entries_kept=N \
                  tmp_removed=N meta_fetches=N entries_skipped=N' line on SIGUSR1 and on exit (SIGINT, SIGTERM).\n\
                  A lazy DST (hsm-populate --lazy) needs a kernel with FAN_PRE_DIR_ACCESS.\n\
                  Exit status: 0 after SIGINT/SIGTERM; 1 error; 2 bad usage; 3 the kernel or \
                  filesystem lacks the needed fanotify feature (e.g. FAN_PRE_FAULT, or \
                  FAN_PRE_DIR_ACCESS for a lazy DST)."
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
    /// Skip the fdatasync of each fill.  The ranges filled are then kept
    /// in memory only (a crash could lose the data, and recorded state must
    /// never claim unsynced data): a restarted daemon fetches them again.
    /// A file is still synced once, before it is recorded complete.
    #[arg(long)]
    no_sync: bool,
    /// Listen on this Unix socket for eviction requests (`hsm-evict`).  An
    /// existing socket there is replaced; any other file is an error.
    #[arg(long, value_name = "SOCKET")]
    control: Option<PathBuf>,
    /// Testing: keep each eviction's lease this long after the punch, so a
    /// test can show that an open waits for the eviction (stats:
    /// evict_leased=1 meanwhile).
    #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
    evict_hold_ms: u64,
    /// Testing: sleep this long with each entry of a lazy directory made but
    /// not yet under its name, so that a test can stop the daemon in the
    /// middle of a population.
    #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
    populate_hold_ms: u64,
    /// Start in fault mode even if other processes have regular files of
    /// DST's filesystem open or mapped (see "Marks" in the README: those
    /// opened before the mark cannot read what is not cached once the file
    /// is in fault-time mode).
    #[arg(long)]
    shared_fs: bool,
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
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    // The rename itself must be durable before what relies on it (an
    // eviction punches only after its state is).
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
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
    /// The file events of the mark, and of the ignore marks of files.
    mask: u64,
    /// The mark has FAN_PRE_DIR_ACCESS too (the kernel accepted it).
    dir_access: bool,
    /// The metadata of the lazy tree (DST's `user.hsm.lazy`), read at
    /// start-up; None when DST has no record (then [`Daemon::meta`] reads
    /// it again, and fails with a message, at each population).
    meta: Mutex<Option<Arc<lazy::Meta>>>,
    /// How long a manifest fetch may take.
    meta_timeout: Duration,
    /// --populate-hold-ms.
    populate_hold: Duration,
    store: Store,
    counters: Counters,
    /// Our own pid (the events' pid is the accessing process's tgid).
    pid: i32,
    /// Per-file locks, by (st_dev, st_ino).
    locks: Mutex<HashMap<FileKey, Arc<Mutex<()>>>>,
    delay: Duration,
    /// `--fill-size`: fills are widened to multiples of this.
    fill: u64,
    sync: bool,
    /// With --no-sync: the ranges filled since the start, by file, with
    /// the file's birth time (an inode number freed by a deleted stub is
    /// given to the next new file: its entry must not apply to that one).
    /// The store holds only synced ranges.
    unsynced: Mutex<HashMap<FileKey, (Birth, RangeSet)>>,
    /// --evict-hold-ms.
    evict_hold: Duration,
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
    // FAN_UNLIMITED_MARKS: every file and directory it has answered gets an
    // ignore mark (evictable ones for directories); at the default
    // fs.fanotify.max_user_marks a large tree would run out of them.
    let group = Fanotify::init(
        FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_MARKS,
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
    // SIGIO too, which is not read: the kernel sends it to a lease holder
    // when another process opens the file (eviction holds a lease only
    // briefly and releases it without being told), and its default action
    // would end the daemon.
    let mut blocked = sigs;
    blocked.add(Signal::SIGIO);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .context("block signals")?;
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;

    // A lazy tree: its root records where its metadata is, or is
    // unpopulated.  Read before the mark, which tells whether the kernel can
    // serve it.
    // Its record, read now: a worker reading it later walks DST's path.
    // An error other than "no such attribute" is an error: taken as "not
    // lazy", the clone would look empty.
    // (No user xattrs at all, EOPNOTSUPP: not lazy; the mark says why
    // such a DST cannot be served.)
    let dst_xattr = |name: &str| match xattr::lget(&dst, name) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        r => r.with_context(|| format!("read {name} of {}", dst.display())),
    };
    let record = dst_xattr(LAZY_XATTR)?;
    let lazy_tree = record.is_some()
        || DirState::from_value(dst_xattr(DIR_XATTR)?.as_deref()) == DirState::Unpopulated;
    let meta_timeout = Duration::from_millis(cli.http_timeout_ms);
    let meta = match record {
        Some(v) => {
            let spec = MetaSpec::decode(&v).with_context(|| format!("{}", dst.display()))?;
            eprintln!("hsm-serve: lazy tree: metadata from {spec}");
            Some(Arc::new(lazy::Meta::new(spec, meta_timeout)))
        }
        None => None,
    };
    // Bound before the mark: a lazy tree's mark sends FAN_PRE_DIR_ACCESS for
    // the socket's directory too, which nothing would answer before the
    // thread that reads events runs.
    let control_listener = match &cli.control {
        Some(p) => Some(bind_control(p)?),
        None => None,
    };
    let dir_access = match mark_filesystem(&group, mask, &dst, cli.mode, lazy_tree) {
        Ok(d) => d,
        Err(e) => {
            if let Some(p) = &cli.control {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    let d = Arc::new(Daemon {
        group,
        source,
        dst,
        mask,
        dir_access,
        meta: Mutex::new(meta),
        meta_timeout,
        populate_hold: Duration::from_millis(cli.populate_hold_ms),
        store,
        counters: Counters::default(),
        pid: std::process::id() as i32,
        locks: Mutex::new(HashMap::new()),
        delay: Duration::from_millis(cli.fetch_delay_ms),
        fill: cli.fill_size,
        sync: !cli.no_sync,
        unsynced: Mutex::new(HashMap::new()),
        evict_hold: Duration::from_millis(cli.evict_hold_ms),
        verbose: cli.verbose,
    });
    // After the mark (which tells whether the filesystem allows it at all),
    // so that a filesystem without pre-content support says so.
    if cli.mode == Mode::Fault && !cli.shared_fs {
        if let Err(e) = check_unused(&d.dst) {
            let _ = d
                .group
                .mark(FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, d.mark_mask(), &d.dst);
            return Err(e);
        }
    }
    let control = match (&cli.control, control_listener) {
        (Some(p), Some(l)) => {
            let d = d.clone();
            std::thread::Builder::new()
                .name("hsm-control".into())
                .spawn(move || d.control_loop(l))
                .context("spawn the control thread")?;
            p.display().to_string()
        }
        _ => "none".into(),
    };

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
        "ready: mark=filesystem mode={} workers={} fill_size={} state={} control={control} dst={} \
         dir_access={} lazy={}",
        match cli.mode {
            Mode::Fault => "fault",
            Mode::Mmap => "mmap",
        },
        cli.workers,
        d.fill,
        d.store.name(),
        d.dst.display(),
        u8::from(d.dir_access),
        u8::from(lazy_tree)
    );
    flush();

    let why = d.event_loop(&sfd, &tx)?;
    drop(tx);
    d.drain(&workers)?;
    for w in workers {
        let _ = w.join();
    }
    if let Some(p) = &cli.control {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("hsm-serve: exiting on {why:?}");
    println!("{}", d.counters.line());
    flush();
    Ok(())
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// The filesystem mark on DST's filesystem: `mask` and, for a lazy tree,
/// FAN_PRE_DIR_ACCESS (returns whether it has it).  A tree that is not lazy
/// does without: every lookup miss and directory open of the filesystem
/// would wait for this daemon for nothing.  A kernel that refuses the bit
/// cannot serve a lazy tree (exit status 3).
fn mark_filesystem(
    group: &Fanotify,
    mask: u64,
    dst: &Path,
    mode: Mode,
    lazy_tree: bool,
) -> Result<bool> {
    let add = |m: u64| group.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, m, dst);
    if !lazy_tree {
        add(mask).map_err(|e| mark_error(e, mode, dst))?;
        return Ok(false);
    }
    match add(mask | FAN_PRE_DIR_ACCESS) {
        Ok(()) => return Ok(true),
        // Which bit it refuses, the mark without it tells.
        Err(e) if e.errno() == Some(Errno::EINVAL) => {}
        Err(e) => return Err(mark_error(e, mode, dst)),
    }
    add(mask).map_err(|e| mark_error(e, mode, dst))?;
    let _ = group.mark(FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, mask, dst);
    Err(anyhow!(Unsupported(format!(
        "this kernel refuses FAN_PRE_DIR_ACCESS (EINVAL): {} is a lazy tree \
         (hsm-populate --lazy) whose directories it cannot populate on demand; \
         populate it without --lazy, or use a kernel with lazy directories",
        dst.display()
    ))))
}

fn mark_error(e: fanotify::Error, mode: Mode, dst: &Path) -> anyhow::Error {
    match e.errno() {
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
            dst.display()
        ))),
        _ => anyhow!("{e}"),
    }
}

impl Daemon {
    /// The events of the filesystem mark.
    fn mark_mask(&self) -> u64 {
        if self.dir_access {
            self.mask | FAN_PRE_DIR_ACCESS
        } else {
            self.mask
        }
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
            self.pump(Some(tx))?;
        }
    }

    /// After a stop signal, until every worker has returned: the workers
    /// finish what is queued, and their own events (a stub's truncate, a
    /// read of SRC on DST's filesystem), which only this thread answers,
    /// are still answered; an event that would need a worker is denied
    /// with EIO (the daemon is going: nothing would fill it).  Without
    /// this a worker populating a directory waited for good on its own
    /// event and the daemon never exited.  A second stop signal is not
    /// read meanwhile: the drain lasts as long as the queued work.
    fn drain(&self, workers: &[std::thread::JoinHandle<()>]) -> Result<()> {
        while !workers.iter().all(|w| w.is_finished()) {
            let mut fds = [PollFd::new(self.group.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(20u8)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            self.pump(None)?;
        }
        Ok(())
    }

    /// Read and dispatch the events there are: answered here
    /// ([`Self::answer_inline`], [`Self::answer_dir_inline`]) or queued for
    /// the workers on `tx` (None: stopping, denied with EIO).
    fn pump(&self, tx: Option<&mpsc::Sender<(Event, Instant)>>) -> Result<()> {
        loop {
            let events = match self.group.read_events() {
                Ok(ev) => ev,
                // Not the group's end: e.g. no descriptor left for an
                // event's file (EMFILE, ENFILE: the kernel denies that
                // event) or a record it could not parse (its events are
                // denied).  Keep serving the others.
                Err(e) if !matches!(e.errno(), Some(Errno::EBADF | Errno::EINVAL)) => {
                    eprintln!("hsm-serve: read fanotify events: {e} (continuing)");
                    Counters::add(&self.counters.errors, 1);
                    std::thread::sleep(Duration::from_millis(10));
                    return Ok(());
                }
                Err(e) => return Err(e).context("read fanotify events"),
            };
            if events.is_empty() {
                return Ok(());
            }
            let t0 = Instant::now();
            for ev in events {
                if ev.mask & FAN_Q_OVERFLOW != 0 {
                    eprintln!("hsm-serve: fanotify queue overflow");
                    Counters::add(&self.counters.errors, 1);
                }
                let inline = if ev.mask & FAN_PRE_DIR_ACCESS != 0 {
                    self.answer_dir_inline(&ev)
                } else {
                    !ev.needs_response() || self.answer_inline(&ev, t0)
                };
                if inline {
                    continue;
                }
                match tx {
                    Some(tx) => tx
                        .send((ev, t0))
                        .map_err(|_| anyhow!("all workers are gone"))?,
                    None => {
                        if let Some(fd) = ev.fd.as_ref() {
                            eprintln!("hsm-serve: stopping: an event denied with EIO");
                            if let Err(e) = self
                                .group
                                .respond(fd.as_fd(), Response::DenyErrno(libc::EIO))
                            {
                                eprintln!("hsm-serve: {e}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answer at once, in the thread that reads events, what needs no
    /// fill: the event of a file that is not a stub, which is ignored from
    /// now on (among them the daemon's own accesses to DST's filesystem, a
    /// fill reading SRC or a state file write, for which a worker may be
    /// the one waiting).  Returns false for an event of a stub, for the
    /// workers: no worker ever accesses a stub but through event
    /// descriptors, so none waits for such an event.
    fn answer_inline(&self, ev: &Event, t0: Instant) -> bool {
        let Some(fd) = ev.fd.as_ref() else {
            return true;
        };
        let own = ev.pid == self.pid;
        match xattr::fget(fd.as_fd(), STUB_XATTR) {
            Ok(None) => {}
            // The daemon sizing a stub it makes in a lazy directory, for
            // which the worker making it waits: nothing to fill, allowed
            // here (queued, it could wait behind the workers that wait for
            // it).  A file a population is making (lazy::being_made: an
            // O_TMPFILE not linked yet) tells it from the daemon's own
            // reads of a stub (the prefetch's), which need a fill; the
            // truncate's range is not empty where the kernel aligns it to
            // a page (patch 4).
            Ok(Some(_))
                if own
                    && (ev.range().is_none_or(|r| r.count == 0)
                        || lazy::being_made(fd.as_fd())) =>
            {
                Counters::add(&self.counters.own, 1);
                if let Err(e) = self.group.respond(fd.as_fd(), Response::Allow) {
                    eprintln!("hsm-serve: {e}");
                    Counters::add(&self.counters.errors, 1);
                }
                return true;
            }
            Ok(Some(_)) => return false,
            // Unreadable: a worker fails it again and denies it; but an
            // event of the daemon's own may be one a worker waits for, so
            // that one is allowed here (without an ignore mark).
            Err(_) if !own => return false,
            Err(e) => {
                eprintln!("hsm-serve: read {STUB_XATTR} (own access): {e}");
                Counters::add(&self.counters.errors, 1);
                Counters::add(&self.counters.own, 1);
                if let Err(e) = self.group.respond(fd.as_fd(), Response::Allow) {
                    eprintln!("hsm-serve: {e}");
                }
                return true;
            }
        }
        if own {
            Counters::add(&self.counters.own, 1);
        } else {
            Counters::add(&self.counters.events, 1);
            Counters::add(&self.counters.ignored, 1);
        }
        if let Err(e) = self.ignore(fd.as_fd()) {
            eprintln!("hsm-serve: {e:#}");
            Counters::add(&self.counters.errors, 1);
        }
        if !own {
            self.counters
                .record_latency(t0.elapsed().as_micros() as u64);
        }
        if let Err(e) = self.group.respond(fd.as_fd(), Response::Allow) {
            eprintln!("hsm-serve: {e}");
            Counters::add(&self.counters.errors, 1);
        }
        true
    }

    /// Ignore the file of `fd` from now on (it is not an incomplete stub):
    /// an evictable inode ignore mark for the whole mask.
    fn ignore(&self, fd: BorrowedFd<'_>) -> Result<()> {
        self.group
            .mark_fd(
                FAN_MARK_ADD | FAN_MARK_IGNORE_SURV | FAN_MARK_EVICTABLE,
                self.mask,
                fd,
                None,
            )
            .map_err(|e| anyhow!("{e}"))
            .context("ignore mark")
    }

    /// Answer a FAN_PRE_DIR_ACCESS event at once, in the thread that reads
    /// events, when it needs no population: a directory that is not an
    /// unpopulated lazy one (populated, or never lazy, in DST or anywhere
    /// else on the filesystem) is allowed and ignored from now on; an
    /// unpopulated one reached outside DST (another mount) is denied with
    /// EIO, as its metadata cannot be named.  Returns false for an
    /// unpopulated directory of DST, for the workers: the daemon's own
    /// events of those too (an eviction's or a prefetch thread's path walk),
    /// never answered blocking here.
    fn answer_dir_inline(&self, ev: &Event) -> bool {
        let Some(fd) = ev.fd.as_ref() else {
            return true;
        };
        let fd = fd.as_fd();
        let own = ev.pid == self.pid;
        let resp = match lazy::dir_state(fd) {
            Ok(DirState::Unpopulated) => match ev.path() {
                Ok(p) if self.rel(&p).is_ok() => return false,
                p => {
                    eprintln!(
                        "hsm-serve: denying with EIO: an unpopulated lazy directory reached \
                         outside {} ({p:?})",
                        self.dst.display()
                    );
                    Counters::add(&self.counters.errors, 1);
                    Response::DenyErrno(libc::EIO)
                }
            },
            Ok(_) => {
                if let Err(e) = self.ignore_dir(fd) {
                    eprintln!("hsm-serve: {e:#}");
                    Counters::add(&self.counters.errors, 1);
                }
                if !own {
                    Counters::add(&self.counters.dir_ignored, 1);
                }
                Response::Allow
            }
            // Unreadable: a worker fails it again and denies it; the
            // daemon's own is allowed (a worker may be the one waiting).
            Err(_) if !own => return false,
            Err(e) => {
                eprintln!("hsm-serve: read {DIR_XATTR} (own access): {e}");
                Counters::add(&self.counters.errors, 1);
                Response::Allow
            }
        };
        if self.verbose {
            eprintln!(
                "hsm-serve: directory {:?} name={:?} pid={} -> {resp:?} (inline)",
                ev.path(),
                ev.name(),
                ev.pid
            );
        }
        self.count_dir_event(own);
        if let Err(e) = self.group.respond(fd, resp) {
            eprintln!("hsm-serve: {e}");
            Counters::add(&self.counters.errors, 1);
        }
        true
    }

    fn count_dir_event(&self, own: bool) {
        if own {
            Counters::add(&self.counters.own, 1);
        } else {
            Counters::add(&self.counters.dir_events, 1);
        }
    }

    /// Ignore the directory of `fd` from now on: an evictable inode ignore
    /// mark for FAN_PRE_DIR_ACCESS (when the inode is evicted the mark goes
    /// with it, and the next event is answered from the directory's tag).
    fn ignore_dir(&self, fd: BorrowedFd<'_>) -> Result<()> {
        self.group
            .mark_fd(
                FAN_MARK_ADD | FAN_MARK_IGNORE_SURV | FAN_MARK_EVICTABLE,
                FAN_PRE_DIR_ACCESS,
                fd,
                None,
            )
            .map_err(|e| anyhow!("{e}"))
            .context("directory ignore mark")
    }

    /// Answer one FAN_PRE_DIR_ACCESS event in a worker: populate the
    /// directory if it still needs it.
    fn handle_dir(&self, ev: Event) {
        let Some(fd) = ev.fd.as_ref() else { return };
        let own = ev.pid == self.pid;
        let resp = match self.serve_dir(&ev, fd.as_fd()) {
            Ok(()) => Response::Allow,
            Err(e) => {
                eprintln!("hsm-serve: denying a directory event with EIO: {e:#}");
                Counters::add(&self.counters.errors, 1);
                Response::DenyErrno(libc::EIO)
            }
        };
        self.count_dir_event(own);
        if let Err(e) = self.group.respond(fd.as_fd(), resp) {
            eprintln!("hsm-serve: {e}");
            Counters::add(&self.counters.errors, 1);
        }
    }

    /// The metadata of the lazy tree, from DST's `user.hsm.lazy` (read at
    /// start-up; here if it was not there then: a DST tagged unpopulated
    /// without a record, which fails).
    fn meta(&self) -> Result<Arc<lazy::Meta>> {
        let mut m = lock(&self.meta);
        if let Some(x) = &*m {
            return Ok(x.clone());
        }
        let dst = &self.dst;
        let rec = xattr::lget(dst, LAZY_XATTR)
            .with_context(|| format!("read {LAZY_XATTR} of {}", dst.display()))?
            .ok_or_else(|| {
                anyhow!(
                    "{} has no {LAZY_XATTR}: it is not the root of a lazy tree \
                     (hsm-populate --lazy), so its unpopulated directories cannot be named \
                     in any metadata",
                    dst.display()
                )
            })?;
        let spec = MetaSpec::decode(&rec)?;
        eprintln!("hsm-serve: lazy tree: metadata from {spec}");
        let meta = Arc::new(lazy::Meta::new(spec, self.meta_timeout));
        *m = Some(meta.clone());
        Ok(meta)
    }

    /// Populate the directory of `fd` (an event descriptor), under its lock,
    /// unless it is populated by now.  Err: deny the event, nothing tagged.
    fn serve_dir(&self, ev: &Event, fd: BorrowedFd<'_>) -> Result<()> {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("fstat event fd")?;
        let key = (st.st_dev, st.st_ino);
        let dlock = self.file_lock(key);
        let _guard = lock(&dlock);
        let state = lazy::dir_state(fd).with_context(|| format!("read {DIR_XATTR}"))?;
        if state != DirState::Unpopulated {
            // Populated while this event waited for the lock (several
            // events of one directory: populated once, all answered), or
            // not lazy.
            if ev.pid != self.pid {
                Counters::add(&self.counters.dir_ignored, 1);
            }
            self.drop_lock(key, &dlock);
            if let Err(e) = self.ignore_dir(fd) {
                eprintln!("hsm-serve: {e:#}");
                Counters::add(&self.counters.errors, 1);
            }
            return Ok(());
        }
        let path = ev.path().context("readlink event fd")?;
        if path.to_string_lossy().ends_with(" (deleted)") {
            bail!("{} was deleted", path.display());
        }
        let rel = self
            .rel(&path)
            .context("an unpopulated lazy directory reached outside DST")?;
        if !rel.as_os_str().is_empty() && xattr::fget(fd, LAZY_XATTR)?.is_some() {
            bail!(
                "{} is the root of another lazy tree (hsm-populate --lazy into a served \
                 tree): its metadata is not {}'s",
                path.display(),
                self.dst.display()
            );
        }
        let meta = self.meta()?;
        let listing = meta
            .listing(&rel, &self.counters.meta_fetches)
            .with_context(|| format!("metadata of {}", path.display()))?;
        let n = lazy::populate(fd, &listing, self.populate_hold, || {
            Counters::add(&self.counters.entries_created, 1)
        })
        .with_context(|| format!("populate {}", path.display()))?;
        Counters::add(&self.counters.entries_kept, n.kept);
        Counters::add(&self.counters.tmp_removed, n.removed);
        Counters::add(&self.counters.entries_skipped, n.invalid);
        // The entries are durable before the tag that says so.
        if self.sync {
            nix::unistd::fsync(fd.as_raw_fd())
                .with_context(|| format!("fsync {}", path.display()))?;
        }
        xattr::fset(fd, DIR_XATTR, lazy::POPULATED.as_bytes())
            .with_context(|| format!("tag {} populated", path.display()))?;
        if self.sync {
            nix::unistd::fsync(fd.as_raw_fd())
                .with_context(|| format!("fsync {}", path.display()))?;
        }
        Counters::add(&self.counters.dirs_populated, 1);
        if self.verbose {
            eprintln!(
                "hsm-serve: populated {} (name={:?} pid={}): {} made, {} kept, {} leftovers \
                 removed, {} skipped",
                path.display(),
                ev.name(),
                ev.pid,
                n.created,
                n.kept,
                n.removed,
                n.invalid
            );
        }
        self.drop_lock(key, &dlock);
        // Populated either way: a failed mark only costs events.
        if let Err(e) = self.ignore_dir(fd) {
            eprintln!("hsm-serve: {e:#}");
            Counters::add(&self.counters.errors, 1);
        }
        Ok(())
    }

    /// Answer one permission event.
    fn handle(&self, fetcher: &mut dyn Fetcher, ev: Event, t0: Instant) {
        if ev.mask & FAN_PRE_DIR_ACCESS != 0 {
            return self.handle_dir(ev);
        }
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

    /// The lock of one file (made on first use).  Give it back with
    /// [`Daemon::drop_lock`] when the file needs none any more.
    fn file_lock(&self, key: FileKey) -> Arc<Mutex<()>> {
        lock(&self.locks).entry(key).or_default().clone()
    }

    /// Forget the lock of a file that is complete or not a stub, unless
    /// another thread holds or waits for it (then it is still in use, and a
    /// new lock made now would not exclude that thread).  `held` is the
    /// caller's own reference.
    fn drop_lock(&self, key: FileKey, held: &Arc<Mutex<()>>) {
        let mut m = lock(&self.locks);
        // The map's reference and the caller's.
        if Arc::strong_count(held) == 2 {
            m.remove(&key);
        }
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
            // Not (or no longer) a stub: complete (perhaps while this was
            // queued), or never one.
            Counters::add(&self.counters.ignored, 1);
            self.drop_lock(key, &flock);
            return self.ignore(fd);
        };
        let stub_size = parse_stub(&stub, &path)?;
        let limit = (st.st_size as u64).min(stub_size);
        let span = match ev.range() {
            Some(r) => fill_span(r.offset, r.count, PAGE, self.fill, limit),
            None => (limit > 0).then_some((0, limit)),
        };
        let Some(span) = span else {
            // Nothing of the stub's content: past its end, or a truncate
            // (hsm-populate sizing a new stub, which has no name yet).
            Counters::add(&self.counters.duplicates, 1);
            return Ok(());
        };
        if path.to_string_lossy().ends_with(" (deleted)") {
            bail!("{} was deleted", path.display());
        }
        let rel = self
            .rel(&path)
            .context("a stub reached outside DST (a hard link, another mount)")?;
        // A stub being created has its tag before its size (hsm-populate):
        // it is complete only at its full size.
        let whole = st.st_size as u64 == stub_size;
        let mut ranges = self.load_ranges(key, fd, &rel)?;
        let missing = ranges.missing(span.0, span.1);
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
        if fetched > 0 && self.sync {
            nix::unistd::fdatasync(fd.as_raw_fd())
                .with_context(|| format!("fdatasync {}", path.display()))?;
        }
        if whole && ranges.covers(0, stub_size) {
            // Also when nothing was fetched: filled by an earlier daemon
            // that stopped before it could finish the file.
            if !self.sync {
                nix::unistd::fdatasync(fd.as_raw_fd())
                    .with_context(|| format!("fdatasync {}", path.display()))?;
            }
            self.finish(key, fd, &rel)?;
            Counters::add(&self.counters.files_completed, 1);
            self.drop_lock(key, &flock);
        } else if fetched > 0 {
            self.save_filled(key, fd, &rel, &ranges)?;
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

    /// The populated ranges of a stub: the store's, or with --no-sync
    /// what this daemon filled (which includes them).
    fn load_ranges(&self, key: FileKey, fd: BorrowedFd<'_>, rel: &Path) -> Result<RangeSet> {
        let mut u = lock(&self.unsynced);
        if let Some((b, r)) = u.get(&key) {
            if *b == birth(fd)? {
                return Ok(r.clone());
            }
            // Another file on a reused inode number.
            u.remove(&key);
        }
        drop(u);
        self.store.load(fd, rel)
    }

    /// Record a fill: in the store once synced; with --no-sync in memory.
    fn save_filled(
        &self,
        key: FileKey,
        fd: BorrowedFd<'_>,
        rel: &Path,
        r: &RangeSet,
    ) -> Result<()> {
        if self.sync {
            self.store.save(fd, rel, r)
        } else {
            let b = birth(fd)?;
            lock(&self.unsynced).insert(key, (b, r.clone()));
            Ok(())
        }
    }

    /// A complete file (synced): no longer a stub, no state, ignored from
    /// now on.
    fn finish(&self, key: FileKey, fd: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        xattr::fremove(fd, STUB_XATTR)
            .with_context(|| format!("remove {STUB_XATTR} of {}", rel.display()))?;
        self.store.forget(fd, rel)?;
        lock(&self.unsynced).remove(&key);
        self.ignore(fd)
            .with_context(|| format!("complete file {}", rel.display()))?;
        if self.verbose {
            eprintln!("hsm-serve: {} complete", rel.display());
        }
        Ok(())
    }
}

/// Refuse a filesystem on which other processes have regular files open or
/// mapped: the filesystem mark puts every file opened from now on in
/// fault-time mode, and a file opened before it (which gets no events)
/// then cannot read what is not in the page cache (EIO, SIGBUS).
fn check_unused(dst: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dst)
        .with_context(|| format!("stat {}", dst.display()))?
        .dev();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let procs = std::fs::read_dir("/proc").context("read /proc")?;
    for p in procs.flatten() {
        let name = p.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        for sub in ["fd", "map_files"] {
            // Gone, or not ours to look at: nothing to learn.
            let Ok(rd) = std::fs::read_dir(p.path().join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(m) = std::fs::metadata(e.path()) else {
                    continue;
                };
                if m.dev() == dev && m.is_file() {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    found.push(format!(
                        "pid {name} ({}): {}",
                        comm.trim(),
                        target.display()
                    ));
                    break;
                }
            }
        }
        if found.len() >= 5 {
            break;
        }
    }
    if !found.is_empty() {
        bail!(
            "other processes have files of {}'s filesystem open or mapped ({}): in fault mode \
             they could no longer read what is not cached once another process opens them; \
             give the lazy tree a filesystem of its own, stop them, or use --shared-fs",
            dst.display(),
            found.join("; ")
        );
    }
    Ok(())
}

/// A file's birth time (statx STATX_BTIME), which tells apart two files
/// that had the same inode number one after the other.
type Birth = (i64, u32);

fn birth(fd: BorrowedFd<'_>) -> Result<Birth> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx(2) on a descriptor we hold (empty path, AT_EMPTY_PATH),
    // writing into a zeroed buffer of the right type.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    };
    Errno::result(ret).context("statx")?;
    // SAFETY: statx succeeded and filled the buffer.
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_BTIME == 0 {
        bail!("the filesystem reports no birth time (statx), which --no-sync needs");
    }
    Ok((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec))
}

/// How often eviction tries the lease before it calls the file busy.
const LEASE_TRIES: u32 = 10;

/// What an eviction did.
enum Evicted {
    /// Dropped this many populated bytes.
    Bytes(u64),
    /// The file is in use: nothing changed.
    Busy,
}

/// The control socket at `p`: an old socket there is replaced.
fn bind_control(p: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(p).is_ok() {
                bail!("--control {}: another daemon listens there", p.display());
            }
            std::fs::remove_file(p)
                .with_context(|| format!("remove the old socket {}", p.display()))?
        }
        Ok(_) => bail!("--control {}: exists and is not a socket", p.display()),
        Err(_) => {}
    }
    UnixListener::bind(p).with_context(|| format!("--control {}: bind", p.display()))
}

impl Daemon {
    /// Serve the control socket, one connection at a time.
    fn control_loop(&self, l: UnixListener) {
        let mut fetcher = self.source.fetcher();
        for conn in l.incoming() {
            match conn {
                Ok(c) => {
                    if let Err(e) = self.control_conn(&mut *fetcher, c) {
                        eprintln!("hsm-serve: control connection: {e:#}");
                    }
                }
                Err(e) => {
                    eprintln!("hsm-serve: control socket: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn control_conn(&self, fetcher: &mut dyn Fetcher, c: UnixStream) -> Result<()> {
        // One connection at a time: an idle client must not block others.
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .context("set a read timeout")?;
        let mut out = c.try_clone().context("clone the connection")?;
        for line in BufReader::new(c).lines() {
            let line = line.context("read a request")?;
            let reply = match control::Evict::parse(&line) {
                Err(e) => control::Reply::Error(format!("{e:#}")),
                Ok(r) => match self.evict(fetcher, &r) {
                    Ok(Evicted::Bytes(n)) => control::Reply::Evicted(n),
                    Ok(Evicted::Busy) => {
                        Counters::add(&self.counters.evict_busy, 1);
                        control::Reply::Busy
                    }
                    Err(e) => {
                        Counters::add(&self.counters.errors, 1);
                        control::Reply::Error(format!("{e:#}"))
                    }
                },
            };
            if self.verbose {
                eprintln!("hsm-serve: control: {line} -> {}", reply.encode());
            }
            writeln!(out, "{}", reply.encode()).context("write a reply")?;
        }
        Ok(())
    }

    /// Drop the populated content of `r`'s range of its file, widened to
    /// whole pages (see the module documentation for the order of steps).
    fn evict(&self, fetcher: &mut dyn Fetcher, r: &control::Evict) -> Result<Evicted> {
        let path =
            std::fs::canonicalize(&r.path).with_context(|| format!("{}", r.path.display()))?;
        let rel = self.rel(&path)?;
        let f = match nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            // Executing (ETXTBSY), or leased by someone else.
            Err(Errno::ETXTBSY | Errno::EWOULDBLOCK) => return Ok(Evicted::Busy),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
            // SAFETY: open(2) returned a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        };
        let fd = f.as_fd();
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("fstat")?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            bail!("{} is not a regular file", path.display());
        }
        let size = st.st_size as u64;
        let key = (st.st_dev, st.st_ino);
        let flock = self.file_lock(key);
        let _guard = lock(&flock);
        let stub = xattr::fget(fd, STUB_XATTR)
            .with_context(|| format!("read {STUB_XATTR} of {}", path.display()))?;
        let complete = stub.is_none();
        // What is populated, and what of it the store holds (synced).
        let (old, persisted) = match &stub {
            Some(v) => {
                let stub_size = parse_stub(v, &path)?;
                if stub_size != size {
                    bail!(
                        "{} is {size} bytes, its {STUB_XATTR} says {stub_size}: being created?",
                        path.display()
                    );
                }
                let p = self.store.load(fd, &rel)?;
                (self.load_ranges(key, fd, &rel)?, p)
            }
            None => {
                // Only what the source can give back.
                if size > 0 {
                    let tail = fetcher.read_at(&rel, size - 1, 2).with_context(|| {
                        format!(
                            "{}: not evicted, the source cannot give it back",
                            rel.display()
                        )
                    })?;
                    if tail.len() != 1 {
                        bail!(
                            "{}: not evicted, the source's copy is not {size} bytes",
                            rel.display()
                        );
                    }
                }
                // Synced before it was recorded complete.
                let mut all = RangeSet::new();
                all.insert(0, size);
                (all.clone(), all)
            }
        };
        let end = r.end.unwrap_or(size).min(size);
        if end <= r.start {
            return Ok(Evicted::Bytes(0));
        }
        let start = r.start / PAGE * PAGE;
        let end = end.div_ceil(PAGE).saturating_mul(PAGE).min(size);
        let mut new = old.clone();
        let dropped = new.remove(start, end);
        if dropped == 0 {
            return Ok(Evicted::Bytes(0));
        }
        if new.encode().len() > MAX_STATE {
            bail!(
                "{}: evicting {start}-{end} would split its populated ranges past the {MAX_STATE} \
                 bytes of state kept per file: evict a larger range",
                rel.display()
            );
        }
        // 0. A complete file stops ignoring FAN_PRE_FAULT before anything
        //    else, while its content is all there: an open from now on
        //    puts it in fault-time mode (an open decides that before it
        //    waits for the lease), and no page cached from now on is one
        //    the punch would make stale.
        if complete && self.mask & FAN_PRE_FAULT != 0 {
            self.group
                .mark_fd(FAN_MARK_REMOVE | FAN_MARK_IGNORE, FAN_PRE_FAULT, fd, None)
                .or_else(|e| match e.errno() {
                    // Never ignored by this daemon (it started later).
                    Some(Errno::ENOENT) => Ok(()),
                    _ => Err(anyhow!("{e}")),
                })
                .context("stop ignoring FAN_PRE_FAULT")?;
        }
        // 1. The state loses the range.
        let mut persisted_new = persisted.clone();
        persisted_new.remove(start, end);
        if complete {
            xattr::fset(fd, STUB_XATTR, size.to_string().as_bytes())
                .with_context(|| format!("set {STUB_XATTR} of {}", rel.display()))?;
        }
        self.save_ranges(fd, &rel, &persisted_new)?;
        if matches!(self.store, Store::Xattr) {
            nix::unistd::fsync(fd.as_raw_fd()).context("fsync the state")?;
        }
        let unsynced_old = {
            let mut u = lock(&self.unsynced);
            let had = u.get(&key).cloned();
            if let Some((b, _)) = had {
                u.insert(key, (b, new.clone()));
            }
            had
        };
        // 2. The lease: no one else has the file, and no one can open it
        //    until it is released.
        //    A reader that has just been answered may still be closing its
        //    descriptor, or the worker its event descriptor: try a few times.
        let mut tries = 0;
        let leased = loop {
            // SAFETY: fcntl(2) on a descriptor we own, with an integer
            // argument.
            let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
            match Errno::result(ret) {
                Err(Errno::EAGAIN) if tries < LEASE_TRIES => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r,
            }
        };
        if let Err(e) = leased {
            if let Some(h) = unsynced_old {
                lock(&self.unsynced).insert(key, h);
            }
            let undo = if complete {
                self.store
                    .forget(fd, &rel)
                    .and_then(|()| xattr::fremove(fd, STUB_XATTR).context("remove the tag"))
            } else {
                self.save_ranges(fd, &rel, &persisted)
            };
            undo.with_context(|| format!("{}: put the state back", rel.display()))?;
            return match e {
                Errno::EAGAIN | Errno::EBUSY => Ok(Evicted::Busy),
                e => Err(e).context("F_SETLEASE F_WRLCK"),
            };
        }
        // 3. Punch, with our own event ignored, then drop the ignore mark.
        let punched = self.punch_ignored(fd, start, end);
        let recorded = punched;
        if !self.evict_hold.is_zero() {
            self.counters.evict_leased.store(1, Ordering::Relaxed);
            std::thread::sleep(self.evict_hold);
            self.counters.evict_leased.store(0, Ordering::Relaxed);
        }
        // SAFETY: fcntl(2) on a descriptor we own, with an integer argument.
        let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        // EAGAIN: an opener waited longer than lease-break-time, and the
        // kernel took the lease back already.
        let unlocked = match Errno::result(ret) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e).context("F_SETLEASE F_UNLCK"),
        };
        recorded.with_context(|| format!("punch {start}-{end} of {}", rel.display()))?;
        unlocked?;
        Counters::add(&self.counters.evicted_files, 1);
        Counters::add(&self.counters.evicted_bytes, dropped);
        Ok(Evicted::Bytes(dropped))
    }

    /// Punch `[start, end)` out of `fd`'s file under an ignore mark for
    /// FAN_PRE_ACCESS (fallocate(2) sends one), leaving the file with no
    /// ignore mark (a complete file's FAN_PRE_FAULT bit went before).
    fn punch_ignored(&self, fd: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
        let ign = |flags: u32, mask: u64| {
            self.group
                .mark_fd(flags, mask, fd, None)
                .map_err(|e| anyhow!("{e}"))
        };
        ign(
            FAN_MARK_ADD | FAN_MARK_IGNORE_SURV | FAN_MARK_EVICTABLE,
            FAN_PRE_ACCESS,
        )?;
        let res = nix::fcntl::fallocate(
            fd.as_raw_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            start as i64,
            (end - start) as i64,
        )
        .context("fallocate");
        let mut removed = ign(FAN_MARK_REMOVE | FAN_MARK_IGNORE, FAN_PRE_ACCESS);
        for _ in 0..3 {
            if removed.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            removed = ign(FAN_MARK_REMOVE | FAN_MARK_IGNORE, FAN_PRE_ACCESS);
        }
        if let Err(e) = removed {
            // A punched stub whose reads send no event would read holes as
            // content: end the daemon, whose marks go with its group.
            eprintln!(
                "hsm-serve: cannot drop the ignore mark of a punched file ({e:#}): exiting, \
                 so that no hole is read as content"
            );
            std::process::exit(1);
        }
        res
    }

    /// Save a file's ranges; none left: forget it.
    fn save_ranges(&self, fd: BorrowedFd<'_>, rel: &Path, r: &RangeSet) -> Result<()> {
        if r.is_empty() {
            self.store.forget(fd, rel)
        } else {
            self.store.save(fd, rel, r)
        }
    }
}

fn parse_stub(v: &[u8], p: &Path) -> Result<u64> {
    String::from_utf8_lossy(v)
        .trim()
        .parse()
        .with_context(|| format!("{STUB_XATTR} of {} is not a size: {v:?}", p.display()))
}
