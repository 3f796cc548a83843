//! Access profiles (issue 15 item 7): what eStargz and nydus do for
//! container start-up, for `hsm-serve`.  A first run records, in order, the
//! ranges it filled (`--record-profile FILE`); a later run prefetches them
//! (`--prefetch FILE`) from the source in the background, with several
//! connections in parallel, into memory, so that the fills of the events
//! find their bytes there instead of paying a round trip each.
//!
//! It is a [`Source`] wrapping the real one ([`wrap`]), so `hsm-serve`'s fill
//! path is unchanged: a fill asks the wrapper for `[start, end)` of a file;
//! the parts a prefetch holds are written from memory, the parts a prefetch
//! is fetching right now are waited for, the rest is fetched from the real
//! source as without a profile.  Everything `hsm-serve` guarantees about a
//! fill holds as before: a prefetched range is the source's bytes (checked
//! by the real source like any other fetch), a failed prefetch is dropped
//! and the fill fetches the range itself, and nothing is recorded as filled
//! before it is written into the stub (the wrapper writes nothing to the
//! lazy tree by itself: the prefetched bytes enter a stub only through the
//! fill of an event, so the daemon's state stays the one truth).
//!
//! * Profile file: a first line `# hsm profile v1`, then one line per fill,
//!   in the order the fills were made: `START<TAB>END<TAB>PATH`, the range
//!   `[START, END)` in bytes and the stub's path relative to DST, escaped as
//!   in the state file ([`crate::state::escape`]; `.` for a DST that is a
//!   single file).  Lines are appended as fills complete.
//! * Plan ([`plan`]): per file, ranges closer than `--prefetch-gap` are
//!   merged (fewer requests, a few more bytes); the merged runs are cut in
//!   pieces of at most `--prefetch-chunk` (one request each, fetched in
//!   parallel by `--prefetch-threads` threads with a connection each), in
//!   the order of the profile's first access to each piece.
//! * Memory: at most `--prefetch-memory` bytes of prefetched data not yet
//!   written into stubs are held; the pieces beyond are not prefetched.  A
//!   piece is freed once fills have used all of it.
//! * Resident: once a piece is in memory, the thread that fetched it reads
//!   that range of the stub under DST (`pread`, a plain reader of the lazy
//!   tree).  The read sends the pre-content event any reader's would; a
//!   worker fills the range from the piece (from memory, the one fill
//!   path), and the pages are then in the page cache: the program's later
//!   faults on them are page-cache hits, which send no event at all, so it
//!   waits neither for the network nor for a daemon round trip there.  The
//!   bytes read are compared with the piece: should they differ (a daemon
//!   that does not answer its own reads), the range is dropped from the
//!   page cache, an error is logged, and no further range is made resident.
//!   This relies on `hsm-serve` answering the reads of its own threads like
//!   any other (it does: the reading thread is never a worker, and it holds
//!   no lock a fill needs).
//! * The prefetch starts when the first worker takes its fetcher, i.e. when
//!   `hsm-serve` is about to print `ready:`; a summary goes to stderr when
//!   it has finished, and one more (bytes served from memory) at exit.

use crate::ranges::RangeSet;
use crate::source::{Fetcher, Source, SourceFile};
use crate::state::{escape, unescape};
use crate::util::parse_size;
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::Instant;

pub const HEADER: &str = "# hsm profile v1";

/// The options of `hsm-serve` for access profiles.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Record an access profile: every fill of this run (path and range, in
    /// the order the fills complete) is appended to FILE (created or
    /// truncated at start-up), for --prefetch on a later run.
    #[arg(long, value_name = "FILE")]
    pub record_profile: Option<PathBuf>,
    /// Prefetch the ranges of an access profile (written by
    /// --record-profile) from the source in the background, in parallel,
    /// into memory, from start-up on; fills find their bytes there.
    #[arg(long, value_name = "FILE")]
    pub prefetch: Option<PathBuf>,
    /// Threads (each with its own connection) that prefetch.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub prefetch_threads: u32,
    /// Prefetch: ranges of one file at most SIZE apart are fetched as one.
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = size)]
    pub prefetch_gap: u64,
    /// Prefetch in pieces of at most SIZE (one request each).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = chunk_size)]
    pub prefetch_chunk: u64,
    /// Prefetched bytes held in memory at most, until fills use them.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = chunk_size)]
    pub prefetch_memory: u64,
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| format!("{e:#}"))
}

fn chunk_size(s: &str) -> Result<u64, String> {
    match size(s)? {
        n if n < crate::PAGE => Err(format!("{s}: less than a page ({} bytes)", crate::PAGE)),
        n => Ok(n),
    }
}

/// One line of a profile: `[start, end)` of the stub at `rel` was filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rel: PathBuf,
    pub start: u64,
    pub end: u64,
}

/// One line of a profile file.
pub fn line(rel: &Path, start: u64, end: u64) -> String {
    let p = if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        escape(rel)
    };
    format!("{start}\t{end}\t{p}\n")
}

/// The entries of a profile file's text.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end() == HEADER => {}
        _ => bail!("not an access profile (the first line is not {HEADER:?})"),
    }
    let mut out = Vec::new();
    for (i, l) in lines {
        let n = i + 1;
        if l.is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split('\t').collect();
        let [s, e, p] = f[..] else {
            bail!("line {n}: {l:?} is not START<TAB>END<TAB>PATH");
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .with_context(|| format!("line {n}: {v:?} is not a byte offset"))
        };
        let (start, end) = (num(s)?, num(e)?);
        if start >= end {
            bail!("line {n}: empty or reversed range {start}-{end}");
        }
        let rel = if p == "." {
            PathBuf::new()
        } else {
            unescape(p).with_context(|| format!("line {n}"))?
        };
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!("line {n}: {} is not a plain relative path", rel.display());
        }
        out.push(Entry { rel, start, end });
    }
    Ok(out)
}

/// Read and parse a profile file.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read access profile {}", path.display()))?;
    parse(&text).with_context(|| format!("access profile {}", path.display()))
}

/// A piece of the prefetch: `[start, end)` of `rel`, one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub rel: PathBuf,
    pub start: u64,
    pub end: u64,
}

/// The prefetch of a profile: per file, ranges at most `gap` apart merged,
/// the merged runs cut at multiples of `chunk` from their start, the pieces
/// in the order of the first profile entry each one overlaps.
pub fn plan(entries: &[Entry], gap: u64, chunk: u64) -> Vec<Chunk> {
    /// A range of a file and the index of its profile entry.
    type Part = (u64, u64, usize);
    let chunk = chunk.max(1);
    // Per file: its parts, in file order.
    let mut files: HashMap<&Path, Vec<Part>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        files
            .entry(e.rel.as_path())
            .or_default()
            .push((e.start, e.end, i));
    }
    let mut out: Vec<(usize, Chunk)> = Vec::new();
    for (rel, mut v) in files {
        v.sort();
        // Merge into runs, keeping the entries of each run.
        let mut runs: Vec<(u64, u64, Vec<Part>)> = Vec::new();
        for r in v {
            match runs.last_mut() {
                Some(last) if r.0 <= last.1.saturating_add(gap) => {
                    last.1 = last.1.max(r.1);
                    last.2.push(r);
                }
                _ => runs.push((r.0, r.1, vec![r])),
            }
        }
        for (s, e, members) in runs {
            let first = members.iter().map(|m| m.2).min().unwrap_or(usize::MAX);
            let mut a = s;
            while a < e {
                let b = (a + chunk).min(e);
                let key = members
                    .iter()
                    .filter(|m| m.0 < b && m.1 > a)
                    .map(|m| m.2)
                    .min()
                    .unwrap_or(first);
                out.push((
                    key,
                    Chunk {
                        rel: rel.to_path_buf(),
                        start: a,
                        end: b,
                    },
                ));
                a = b;
            }
        }
    }
    out.sort_by(|x, y| (x.0, &x.1.rel, x.1.start).cmp(&(y.0, &y.1.rel, y.1.start)));
    out.into_iter().map(|(_, c)| c).collect()
}

/// `source` with the profile options of `args`: unchanged without them.
/// `dst`: the stub tree (or stub), where prefetched pieces are made
/// resident.
pub fn wrap(source: Box<dyn Source>, args: &Args, dst: &Path) -> Result<Box<dyn Source>> {
    if args.record_profile.is_none() && args.prefetch.is_none() {
        return Ok(source);
    }
    Ok(Box::new(ProfiledSource::new(source, args, Some(dst))?))
}

/// Counters of the prefetch (bytes are bytes of the source).
#[derive(Default)]
pub struct PrefetchStats {
    /// Pieces fetched, and their bytes.
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
    /// Pieces whose fetch failed (the fills fetch those ranges themselves).
    pub failed: AtomicU64,
    /// Pieces not prefetched: the memory limit was reached.
    pub skipped: AtomicU64,
    /// Bytes fills took from prefetched memory, and from the source.
    pub hit_bytes: AtomicU64,
    pub miss_bytes: AtomicU64,
    /// Times a fill waited for a piece being prefetched.
    pub waits: AtomicU64,
    /// Pieces made resident (read through the stub), and those whose bytes
    /// read back differed (none is made resident after one).
    pub resident: AtomicU64,
    pub mismatched: AtomicU64,
}

/// A prefetched piece.
struct Slot {
    start: u64,
    end: u64,
    /// None: being fetched.
    data: Option<Arc<Vec<u8>>>,
    /// What fills have taken from it.
    used: RangeSet,
}

#[derive(Default)]
struct Cache {
    files: HashMap<PathBuf, Vec<Slot>>,
    /// Bytes of the slots (in flight included).
    held: u64,
}

struct Shared {
    inner: Box<dyn Source>,
    /// Where pieces are made resident; cleared after a mismatch.
    dst: Option<PathBuf>,
    resident_ok: std::sync::atomic::AtomicBool,
    recorder: Option<Mutex<File>>,
    /// The pieces still to prefetch; threads, memory limit.
    queue: Mutex<VecDeque<Chunk>>,
    threads: u32,
    memory: u64,
    /// Prefetch threads still running.
    running: AtomicUsize,
    started: Once,
    t0: Mutex<Option<Instant>>,
    cache: Mutex<Cache>,
    changed: Condvar,
    stats: PrefetchStats,
}

/// The wrapping [`Source`] (see the module's documentation).
pub struct ProfiledSource {
    sh: Arc<Shared>,
    prefetching: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ProfiledSource {
    /// `dst`: where to make prefetched pieces resident (None: kept in
    /// memory until fills take them).
    pub fn new(inner: Box<dyn Source>, args: &Args, dst: Option<&Path>) -> Result<Self> {
        let chunks = match &args.prefetch {
            Some(p) => plan(&read(p)?, args.prefetch_gap, args.prefetch_chunk),
            None => Vec::new(),
        };
        let recorder = match &args.record_profile {
            Some(p) => {
                let mut f = File::create(p)
                    .with_context(|| format!("create access profile {}", p.display()))?;
                writeln!(f, "{HEADER}")
                    .with_context(|| format!("write access profile {}", p.display()))?;
                Some(Mutex::new(f))
            }
            None => None,
        };
        Ok(ProfiledSource {
            prefetching: args.prefetch.is_some(),
            sh: Arc::new(Shared {
                inner,
                dst: dst.map(Path::to_path_buf),
                resident_ok: std::sync::atomic::AtomicBool::new(true),
                recorder,
                queue: Mutex::new(chunks.into()),
                threads: args.prefetch_threads.max(1),
                memory: args.prefetch_memory,
                running: AtomicUsize::new(0),
                started: Once::new(),
                t0: Mutex::new(None),
                cache: Mutex::new(Cache::default()),
                changed: Condvar::new(),
                stats: PrefetchStats::default(),
            }),
        })
    }

    pub fn stats(&self) -> &PrefetchStats {
        &self.sh.stats
    }

    /// Start the prefetch threads (once).
    pub fn start(&self) {
        if !self.prefetching {
            return;
        }
        let sh = self.sh.clone();
        self.sh.started.call_once(move || {
            *lock(&sh.t0) = Some(Instant::now());
            let n = sh.threads as usize;
            let (pieces, bytes) = {
                let q = lock(&sh.queue);
                (q.len(), q.iter().map(|c| c.end - c.start).sum::<u64>())
            };
            eprintln!("hsm-serve: prefetch: {pieces} pieces ({bytes} bytes) with {n} threads");
            sh.running.store(n, Ordering::SeqCst);
            for i in 0..n {
                let t = sh.clone();
                let r = std::thread::Builder::new()
                    .name(format!("hsm-prefetch-{i}"))
                    .spawn(move || prefetch_thread(&t));
                if let Err(e) = r {
                    eprintln!("hsm-serve: prefetch: cannot start a thread: {e}");
                    sh.running.fetch_sub(1, Ordering::SeqCst);
                }
            }
        });
    }

    /// Wait until every piece is prefetched (or failed or skipped).
    pub fn wait_prefetched(&self) {
        let mut c = lock(&self.sh.cache);
        while self.sh.running.load(Ordering::SeqCst) > 0 {
            c = self.sh.changed.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn prefetch_thread(sh: &Shared) {
    let mut fetcher = sh.inner.fetcher();
    let mut files: HashMap<PathBuf, File> = HashMap::new();
    loop {
        let Some(c) = lock(&sh.queue).pop_front() else {
            break;
        };
        let len = c.end - c.start;
        {
            let mut cache = lock(&sh.cache);
            if cache.held + len > sh.memory {
                Shared::add(&sh.stats.skipped, 1);
                continue;
            }
            cache.held += len;
            cache.files.entry(c.rel.clone()).or_default().push(Slot {
                start: c.start,
                end: c.end,
                data: None,
                used: RangeSet::new(),
            });
        }
        let got = fetcher.read_at(&c.rel, c.start, len as usize);
        let mut cache = lock(&sh.cache);
        let slots = cache.files.entry(c.rel.clone()).or_default();
        let i = slots.iter().position(|s| s.start == c.start);
        match (got, i) {
            (Ok(data), Some(i)) if !data.is_empty() => {
                Shared::add(&sh.stats.chunks, 1);
                Shared::add(&sh.stats.bytes, data.len() as u64);
                let short = len - data.len() as u64;
                slots[i].end = c.start + data.len() as u64;
                let data = Arc::new(data);
                slots[i].data = Some(data.clone());
                cache.held -= short;
                drop(cache);
                sh.changed.notify_all();
                sh.make_resident(&mut files, &c.rel, c.start, &data);
                continue;
            }
            (r, i) => {
                if let Err(e) = r {
                    eprintln!(
                        "hsm-serve: prefetch of {} {}-{} failed (fills will fetch it): {e:#}",
                        c.rel.display(),
                        c.start,
                        c.end
                    );
                    Shared::add(&sh.stats.failed, 1);
                }
                if let Some(i) = i {
                    slots.remove(i);
                }
                cache.held -= len;
            }
        }
        drop(cache);
        sh.changed.notify_all();
    }
    if sh.running.fetch_sub(1, Ordering::SeqCst) == 1 {
        let secs = lock(&sh.t0).map_or(0.0, |t| t.elapsed().as_secs_f64());
        let s = &sh.stats;
        eprintln!(
            "hsm-serve: prefetch done in {secs:.2} s: {} pieces, {} bytes, {} made resident; {} \
             failed, {} skipped (memory limit)",
            s.chunks.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
            s.resident.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.skipped.load(Ordering::Relaxed)
        );
        let _c = lock(&sh.cache);
        sh.changed.notify_all();
    }
}

impl Shared {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Read `data.len()` bytes at `start` of the stub `rel` under DST (see
    /// the module's documentation), check them, and drop the piece.
    fn make_resident(
        &self,
        files: &mut HashMap<PathBuf, File>,
        rel: &Path,
        start: u64,
        data: &[u8],
    ) {
        let Some(dst) = &self.dst else { return };
        if !self.resident_ok.load(Ordering::SeqCst) {
            return;
        }
        let path = if rel.as_os_str().is_empty() {
            dst.clone()
        } else {
            dst.join(rel)
        };
        let res = (|| -> Result<bool> {
            // One file open per thread at most: a descriptor held per file
            // would run a long profile out of descriptors (then the kernel
            // denies events it cannot give one) and keep every file read
            // back busy for eviction until the prefetch ends.
            if !files.contains_key(rel) {
                files.clear();
            }
            let f = match files.entry(rel.to_path_buf()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(File::open(&path).with_context(|| format!("open {}", path.display()))?)
                }
            };
            let mut buf = vec![0u8; data.len()];
            let mut done = 0;
            while done < buf.len() {
                let n = nix::sys::uio::pread(&*f, &mut buf[done..], (start + done as u64) as i64)
                    .with_context(|| {
                    format!("read {} at {}", path.display(), start + done as u64)
                })?;
                if n == 0 {
                    bail!("{} ends before {}", path.display(), start + done as u64);
                }
                done += n;
            }
            if buf != data {
                // Not filled by the daemon: never leave those pages cached.
                let _ = nix::fcntl::posix_fadvise(
                    f.as_raw_fd(),
                    start as i64,
                    data.len() as i64,
                    nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                );
                return Ok(false);
            }
            Ok(true)
        })();
        match res {
            Ok(true) => {
                Self::add(&self.stats.resident, 1);
                // Filled (by this read's event or earlier): drop the piece.
                let mut cache = lock(&self.cache);
                if let Some(slots) = cache.files.get_mut(rel) {
                    if let Some(i) = slots.iter().position(|s| s.start == start) {
                        let s = slots.remove(i);
                        if slots.is_empty() {
                            cache.files.remove(rel);
                        }
                        cache.held -= s.end - s.start;
                    }
                }
            }
            Ok(false) => {
                Self::add(&self.stats.mismatched, 1);
                self.resident_ok.store(false, Ordering::SeqCst);
                eprintln!(
                    "hsm-serve: prefetch: the bytes read back from {} at {start} are not the                      source's: no range is made resident any more",
                    path.display()
                );
            }
            Err(e) => {
                // E.g. EIO from a fill that failed: the fills go on as usual.
                eprintln!("hsm-serve: prefetch: making a piece resident: {e:#}");
            }
        }
    }

    /// Where `pos` (< `end`) of `rel` is: prefetched data up to some offset,
    /// or a gap to fetch up to some offset.  Waits while a piece holding
    /// `pos` is being fetched.
    fn find(&self, rel: &Path, pos: u64, end: u64) -> Found {
        let mut cache = lock(&self.cache);
        let mut waited = false;
        loop {
            let Some(slots) = cache.files.get(rel) else {
                return Found::Gap(end);
            };
            match slots.iter().find(|s| s.start <= pos && pos < s.end) {
                Some(s) => match &s.data {
                    Some(d) => return Found::Data(d.clone(), s.start, s.end.min(end)),
                    None => {
                        if !waited {
                            Self::add(&self.stats.waits, 1);
                            waited = true;
                        }
                        cache = self.changed.wait(cache).unwrap_or_else(|e| e.into_inner());
                    }
                },
                None => {
                    let next = slots
                        .iter()
                        .filter(|s| s.start > pos)
                        .map(|s| s.start)
                        .min()
                        .unwrap_or(end);
                    return Found::Gap(next.min(end));
                }
            }
        }
    }

    /// Fills took `[a, b)` from the piece of `rel` starting at `start`:
    /// free it once all of it is taken.
    fn used(&self, rel: &Path, start: u64, a: u64, b: u64) {
        let mut cache = lock(&self.cache);
        let Some(slots) = cache.files.get_mut(rel) else {
            return;
        };
        let Some(i) = slots.iter().position(|s| s.start == start) else {
            return;
        };
        slots[i].used.insert(a, b);
        if slots[i].used.covers(slots[i].start, slots[i].end) {
            let s = slots.remove(i);
            if slots.is_empty() {
                cache.files.remove(rel);
            }
            cache.held -= s.end - s.start;
        }
    }

    fn record(&self, rel: &Path, start: u64, end: u64) -> Result<()> {
        if let Some(f) = &self.recorder {
            lock(f)
                .write_all(line(rel, start, end).as_bytes())
                .context("append to the access profile")?;
        }
        Ok(())
    }
}

enum Found {
    /// The piece's data (starting at the offset), usable up to the last.
    Data(Arc<Vec<u8>>, u64, u64),
    /// Not prefetched up to this offset.
    Gap(u64),
}

impl Source for ProfiledSource {
    fn name(&self) -> String {
        self.sh.inner.name()
    }

    fn fetcher(&self) -> Box<dyn Fetcher> {
        self.start();
        Box::new(ProfiledFetcher {
            inner: self.sh.inner.fetcher(),
            sh: self.sh.clone(),
        })
    }
}

impl Drop for ProfiledSource {
    fn drop(&mut self) {
        if self.prefetching {
            let s = &self.sh.stats;
            eprintln!(
                "hsm-serve: prefetch: fills took {} bytes from prefetched memory and {} from the \
                 source; waited {} times for a piece in flight",
                s.hit_bytes.load(Ordering::Relaxed),
                s.miss_bytes.load(Ordering::Relaxed),
                s.waits.load(Ordering::Relaxed)
            );
        }
    }
}

struct ProfiledFetcher {
    inner: Box<dyn Fetcher>,
    sh: Arc<Shared>,
}

impl Fetcher for ProfiledFetcher {
    fn open<'a>(&'a mut self, rel: &Path) -> Result<Box<dyn SourceFile + 'a>> {
        Ok(Box::new(ProfiledFile {
            f: self,
            rel: rel.to_path_buf(),
        }))
    }
}

struct ProfiledFile<'a> {
    f: &'a mut ProfiledFetcher,
    rel: PathBuf,
}

fn pwrite_all(dst: BorrowedFd<'_>, buf: &[u8], off: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        done += nix::sys::uio::pwrite(dst, &buf[done..], (off + done as u64) as i64)
            .with_context(|| format!("write at {}", off + done as u64))?;
    }
    Ok(())
}

impl SourceFile for ProfiledFile<'_> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let at = (pos - offset) as usize;
            match self.f.sh.find(&self.rel, pos, end) {
                Found::Data(d, s, e) => {
                    let (a, b) = ((pos - s) as usize, (e - s) as usize);
                    buf[at..at + (b - a)].copy_from_slice(&d[a..b]);
                    Shared::add(&self.f.sh.stats.hit_bytes, e - pos);
                    self.f.sh.used(&self.rel, s, pos, e);
                    pos = e;
                }
                Found::Gap(g) => {
                    let want = (g - pos) as usize;
                    let n = self
                        .f
                        .inner
                        .open(&self.rel)?
                        .read_at(&mut buf[at..at + want], pos)?;
                    Shared::add(&self.f.sh.stats.miss_bytes, n as u64);
                    pos += n as u64;
                    if n < want {
                        break;
                    }
                }
            }
        }
        Ok((pos - offset) as usize)
    }

    fn copy_to(&mut self, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
        let mut pos = start;
        while pos < end {
            match self.f.sh.find(&self.rel, pos, end) {
                Found::Data(d, s, e) => {
                    pwrite_all(dst, &d[(pos - s) as usize..(e - s) as usize], pos)?;
                    Shared::add(&self.f.sh.stats.hit_bytes, e - pos);
                    self.f.sh.used(&self.rel, s, pos, e);
                    pos = e;
                }
                Found::Gap(g) => {
                    self.f.inner.open(&self.rel)?.copy_to(dst, pos, g)?;
                    Shared::add(&self.f.sh.stats.miss_bytes, g - pos);
                    pos = g;
                }
            }
        }
        self.f.sh.record(&self.rel, start, end)
    }
}

#[cfg(test)]
mod tests;
