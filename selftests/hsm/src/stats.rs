//! Counters of `hsm-serve` and the `stats:` line it prints.
//!
//! The line is `stats: events=N fetched_bytes=N files_completed=N errors=N
//! duplicates=N ignored=N own=N evicted_files=N evicted_bytes=N
//! evict_busy=N evict_leased=N max_parallel=N p50_us=N p90_us=N p99_us=N max_us=N
//! dir_events=N dir_ignored=N dirs_populated=N entries_created=N entries_kept=N
//! tmp_removed=N meta_fetches=N entries_skipped=N`
//! (`max_parallel`: most fetches in progress at once; the `dir_*` and later
//! ones are of lazy directories, see [`crate::lazy`]): space-separated
//! `key=value` pairs after the `stats:` word, so scripts and tests can parse
//! it with [`parse_line`].  Latencies are from reading an event to writing
//! its response, in microseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Linear buckets per power of two above [`LINEAR`]: values are kept to
/// within 1/16 (6 %).
const SUB: u64 = 16;
/// Values below this have a bucket each.
const LINEAR: u64 = 2 * SUB;

/// A log-linear histogram of u64 values (microseconds here).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as u64; // >= 5
    let shift = msb - 4;
    let m = v >> shift; // in [16, 32)
    (LINEAR + (shift - 1) * SUB + (m - SUB)) as usize
}

/// Largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let m = (i - LINEAR) % SUB + SUB;
    ((m + 1) << shift).wrapping_sub(1)
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; bucket(u64::MAX) + 1],
            n: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The `p`-th percentile (0 < p <= 100): an upper bound within 6 % of
    /// the true value, never above the maximum.  0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }
}

/// The daemon's counters, shared by its threads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Permission events answered.
    pub events: AtomicU64,
    /// Bytes copied from the source.
    pub fetched_bytes: AtomicU64,
    /// Files that became fully populated.
    pub files_completed: AtomicU64,
    /// Events denied because the source failed, and other failures.
    pub errors: AtomicU64,
    /// Events whose range was already populated (nothing fetched).
    pub duplicates: AtomicU64,
    /// Events (in `events`) of files that are not stubs (complete, or never
    /// stubs): answered at once, and the file ignored from then on.
    pub ignored: AtomicU64,
    /// Events of the daemon's own accesses (not in `events` nor in
    /// `dir_events`): to files that are not stubs and the truncate of a
    /// stub it makes, answered at once by the thread that reads events; and
    /// its directory events, answered like anyone's.
    pub own: AtomicU64,
    /// Evictions done (files, and populated bytes dropped), and refused
    /// because the file was in use.
    pub evicted_files: AtomicU64,
    pub evicted_bytes: AtomicU64,
    pub evict_busy: AtomicU64,
    /// 1 while an eviction holds its lease longer on purpose
    /// (`--evict-hold-ms`, for tests).
    pub evict_leased: AtomicU64,
    /// Fetches in progress now, and the most there have been at once.
    pub fetching: AtomicU64,
    pub max_parallel: AtomicU64,
    pub latency_us: Mutex<Histogram>,
    /// `FAN_PRE_DIR_ACCESS` events answered for other processes (the
    /// daemon's own are in `own`); not in `events`, nor in the latency.
    pub dir_events: AtomicU64,
    /// Of those, events of directories that are not unpopulated lazy ones
    /// (populated, or never lazy, or populated by another event while this
    /// one waited for the directory's lock): answered without populating,
    /// the directory ignored from then on.
    pub dir_ignored: AtomicU64,
    /// Directories this daemon populated (tagged `populated`).
    pub dirs_populated: AtomicU64,
    /// Entries it made in them; entries it found made already (by a
    /// population cut short); leftover temporary names it removed.
    pub entries_created: AtomicU64,
    pub entries_kept: AtomicU64,
    pub tmp_removed: AtomicU64,
    /// Entries of the source it could not make and skipped (a name or a
    /// symlink target that cannot be, a size too large): the directory is
    /// populated without them.
    pub entries_skipped: AtomicU64,
    /// Requests of metadata to the source: a manifest fetch, or a listing
    /// of a source directory.
    pub meta_fetches: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A fetch starts; returns a guard that ends it.
    pub fn fetch_started(&self) -> FetchGuard<'_> {
        let n = self.fetching.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_parallel.fetch_max(n, Ordering::Relaxed);
        FetchGuard(self)
    }

    pub fn record_latency(&self, us: u64) {
        self.latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us);
    }

    /// The `stats:` line.
    pub fn line(&self) -> String {
        let h = self
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "stats: events={} fetched_bytes={} files_completed={} errors={} duplicates={} \
             ignored={} own={} evicted_files={} evicted_bytes={} evict_busy={} \
             evict_leased={} max_parallel={} p50_us={} p90_us={} p99_us={} max_us={} \
             dir_events={} dir_ignored={} dirs_populated={} entries_created={} entries_kept={} \
             tmp_removed={} meta_fetches={} entries_skipped={}",
            g(&self.events),
            g(&self.fetched_bytes),
            g(&self.files_completed),
            g(&self.errors),
            g(&self.duplicates),
            g(&self.ignored),
            g(&self.own),
            g(&self.evicted_files),
            g(&self.evicted_bytes),
            g(&self.evict_busy),
            g(&self.evict_leased),
            g(&self.max_parallel),
            h.percentile(50.0),
            h.percentile(90.0),
            h.percentile(99.0),
            h.max(),
            g(&self.dir_events),
            g(&self.dir_ignored),
            g(&self.dirs_populated),
            g(&self.entries_created),
            g(&self.entries_kept),
            g(&self.tmp_removed),
            g(&self.meta_fetches),
            g(&self.entries_skipped)
        )
    }
}

/// Ends a fetch counted by [`Counters::fetch_started`] when dropped.
pub struct FetchGuard<'a>(&'a Counters);

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        self.0.fetching.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Parse a `stats:` line (or any `word: k=v k=v` line) into its pairs.
/// `None` if the line does not start with `prefix`.
pub fn parse_line(line: &str, prefix: &str) -> Option<BTreeMap<String, u64>> {
    let rest = line.trim().strip_prefix(prefix)?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let b = bucket(v);
            assert!(b == last || b == last + 1, "gap at {v}");
            assert!(bucket_high(b) >= v, "high of {v}");
            assert!(bucket_high(b) - v <= v / 16 + 1, "precision at {v}");
            last = b;
        }
        assert_eq!(bucket_high(bucket(u64::MAX)), u64::MAX);
    }

    #[test]
    fn percentiles() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50.0), 0);
        for v in 1..=100u64 {
            h.record(v * 10);
        }
        let cases = [(50.0, 500), (90.0, 900), (99.0, 990), (100.0, 1000)];
        for (p, want) in cases {
            let got = h.percentile(p);
            assert!(
                got >= want && got <= want + want / 16,
                "p{p}: {got} vs {want}"
            );
        }
        assert_eq!(h.max(), 1000);
        assert_eq!(h.count(), 100);
        let mut one = Histogram::new();
        one.record(7);
        assert_eq!(one.percentile(99.0), 7);
    }

    #[test]
    fn line_round_trip() {
        let c = Counters::default();
        Counters::add(&c.events, 3);
        Counters::add(&c.fetched_bytes, 8192);
        Counters::add(&c.evicted_bytes, 4096);
        Counters::add(&c.own, 2);
        Counters::add(&c.dirs_populated, 5);
        Counters::add(&c.entries_created, 77);
        Counters::add(&c.meta_fetches, 1);
        c.record_latency(120);
        {
            let _a = c.fetch_started();
            let _b = c.fetch_started();
        }
        let _c = c.fetch_started();
        let m = parse_line(&c.line(), "stats:").unwrap();
        assert_eq!(m["events"], 3);
        assert_eq!(m["fetched_bytes"], 8192);
        assert_eq!(m["errors"], 0);
        assert_eq!(m["evicted_bytes"], 4096);
        assert_eq!(m["own"], 2);
        assert_eq!(m["ignored"], 0);
        assert_eq!(m["dirs_populated"], 5);
        assert_eq!(m["entries_created"], 77);
        assert_eq!(m["meta_fetches"], 1);
        for k in [
            "dir_events",
            "dir_ignored",
            "entries_kept",
            "tmp_removed",
            "entries_skipped",
        ] {
            assert_eq!(m[k], 0, "{k}");
        }
        assert_eq!(m["max_us"], 120);
        assert_eq!(m["max_parallel"], 2);
        assert_eq!(c.fetching.load(Ordering::Relaxed), 1);
        assert!(parse_line("ready: x=1", "stats:").is_none());
    }
}
