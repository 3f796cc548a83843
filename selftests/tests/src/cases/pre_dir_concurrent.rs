//! pre_dir_concurrent: 8 threads race on an unpopulated directory whose
//! HSM populates it slowly, and every one of them sees all of it.  Each
//! thread, released together with the others, stats 50 different names of
//! the directory (each thread its own set, overlapping the others') and
//! lists all of it, twice.  The HSM, single-threaded, populates a directory
//! at the first event it reads for it: 100 files (f000-f099, file i of
//! 100 + i bytes), 5 ms per file, each created under a temporary name and
//! renamed through the event fd so that it appears whole; then it adds the
//! ignore mark and answers that event, and then the events that queued
//! meanwhile, which it only allows.  The kernel does not coalesce events,
//! so several threads may wait at once; once a call of a thread returned
//! from its wait the directory is ignored, so a thread sends at most one
//! event per directory.
//!
//! Checked: every stat found its file with its size, every listing had the
//! 100 files and nothing else; each directory was populated exactly once,
//! at an event of its own; every event is a FAN_PRE_DIR_ACCESS with an
//! O_RDONLY fd of its directory, from one of the threads, with the name
//! looked up (or none, from a getdents64); no thread sent more than one
//! event per directory, so at least 1 and at most 8 per directory (the
//! number is printed).
//!
//! Case 0: the directory itself is marked.  Case 1: it is at depth 3
//! (top/mid/leaf), each level unpopulated and marked: populating top
//! creates mid (marked before it is visible), populating mid creates leaf,
//! populating leaf creates the files; the threads' walks send the events on
//! the ancestors.
//!
//! Guards the cover letter's "Directory pre-content events" (events are not
//! coalesced; the ignore mark; populating through the event fd) (issue 16).

use super::pre_dir_util::*;
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::{tfail, tinfo, tpass, Ctx, Test};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_dir_concurrent",
    doc: "8 threads stat and list an unpopulated directory (depth 1 and 3) while a slow HSM populates it once: all see everything, at most one event per thread and directory",
    needs_kconfigs: KCONFIGS,
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    timeout: Duration::from_secs(180),
    tags: &[
        (
            "issue",
            "16: lazy directories (FAN_PRE_DIR_ACCESS), concurrent lookups and listings",
        ),
        (
            "cover-letter",
            "Directory pre-content events: events are not coalesced; the ignore mark; populating through the event fd",
        ),
    ],
    tcnt: 2,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

const THREADS: usize = 8;
const FILES: usize = 100;
const STATS: usize = 50;
const ROUNDS: usize = 2;
/// How slow the HSM is, per entry it creates.
const PER_ENTRY: Duration = Duration::from_millis(5);
/// The subdirectories of the depth-3 case, top down.
const LEVELS: &[&str] = &["mid", "leaf"];

fn fname(i: usize) -> String {
    format!("f{i:03}")
}

fn fsize(i: usize) -> u64 {
    100 + i as u64
}

/// The HSM's record of the directories it knows: their level (0: the
/// marked top) and how often it populated each.
#[derive(Default)]
struct Dirs {
    level: BTreeMap<DirId, usize>,
    populated: BTreeMap<DirId, u32>,
}

/// Populate the directory of `h` as level `level` of `depth`: the next
/// level's directory (marked), or the files at the last level; then the
/// ignore mark.
fn populate_level(
    h: &Hsm<'_>,
    level: usize,
    depth: usize,
    dirs: &Mutex<Dirs>,
) -> Result<(), String> {
    if level + 1 < depth {
        let name = LEVELS[level];
        create_whole(h.fd, name, Kind::Dir, Some(h.group))?;
        std::thread::sleep(PER_ENTRY);
        let st = nix::sys::stat::fstatat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&h.fd)),
            name,
            nix::fcntl::AtFlags::empty(),
        )
        .map_err(|e| format!("fstatat {name}: {e}"))?;
        dirs.lock().unwrap().level.insert(
            DirId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
            level + 1,
        );
    } else {
        for i in 0..FILES {
            create_whole(h.fd, &fname(i), Kind::File(fsize(i)), None)?;
            // A slow HSM (a remote store), not a synchronisation.
            std::thread::sleep(PER_ENTRY);
        }
    }
    h.ignore()
}

/// What one thread saw.
#[derive(Default, Debug)]
struct Report {
    bad: Vec<String>,
    stats: usize,
    listings: usize,
}

/// One thread: ROUNDS times, 50 stats of its own names, then a listing.
fn worker(t: usize, leaf: PathBuf, start: Arc<Barrier>) -> Report {
    let mut r = Report::default();
    let all: BTreeSet<OsString> = (0..FILES).map(|i| OsString::from(fname(i))).collect();
    start.wait();
    for round in 0..ROUNDS {
        for k in 0..STATS {
            // 7 is prime to 100: 50 different names, from t * 13 on.
            let i = (t * 13 + k * 7) % FILES;
            r.stats += 1;
            match nix::sys::stat::stat(&leaf.join(fname(i))) {
                Ok(st) if st.st_size as u64 == fsize(i) => {}
                Ok(st) => r.bad.push(format!(
                    "round {round}: stat {}: size {}, want {}",
                    fname(i),
                    st.st_size,
                    fsize(i)
                )),
                Err(e) => r.bad.push(format!("round {round}: stat {}: {e}", fname(i))),
            }
        }
        r.listings += 1;
        match list(&leaf) {
            Ok((names, _)) if names == all => {}
            Ok((names, _)) => {
                let missing = all.difference(&names).count();
                let extra: Vec<&OsString> = names.difference(&all).collect();
                r.bad.push(format!(
                    "round {round}: the listing lacks {missing} files, has {extra:?} besides"
                ));
            }
            Err(e) => r.bad.push(format!("round {round}: listing: {e}")),
        }
    }
    r
}

fn run_case(ctx: &Ctx, i: u32) {
    let depth = if i == 0 { 1 } else { LEVELS.len() + 1 };
    let top = ctx.path(&format!("top{i}"));
    let top_id = empty_dir(&top);
    let leaf = LEVELS[..depth - 1]
        .iter()
        .fold(top.clone(), |p, l| p.join(l));
    tinfo!(
        "depth {depth}: {THREADS} threads stat and list {}",
        leaf.display()
    );

    let dirs = Arc::new(Mutex::new(Dirs::default()));
    dirs.lock().unwrap().level.insert(top_id, 0);
    let d2 = dirs.clone();
    let l = DirListener::start(
        lazy_dir_group(&top),
        Box::new(move |h| {
            let Ok(fd) = &h.event.fd else {
                return Response::Allow;
            };
            let level = d2.lock().unwrap().level.get(&fd.id).copied();
            let Some(level) = level else {
                tfail!(
                    "listener: an event on a directory the HSM did not make: {:?}",
                    h.event
                );
                return Response::Allow;
            };
            if d2.lock().unwrap().populated.contains_key(&fd.id) {
                // Queued while the HSM populated: nothing left to do.
                return Response::Allow;
            }
            match populate_level(h, level, depth, &d2) {
                Ok(()) => {
                    *d2.lock().unwrap().populated.entry(fd.id).or_default() += 1;
                    Response::Allow
                }
                Err(e) => {
                    tfail!("listener: populate level {level}: {e}");
                    Response::DenyErrno(libc::EIO)
                }
            }
        }),
    );

    let start = Arc::new(Barrier::new(THREADS));
    let calls: Vec<Call<Report>> = (0..THREADS)
        .map(|t| {
            let (leaf, start) = (leaf.clone(), start.clone());
            call(move || worker(t, leaf, start))
        })
        .collect();
    let tids: Vec<i32> = calls.iter().map(|c| c.tid).collect();
    let mut reports = Vec::new();
    let mut hung = 0;
    let limit = WATCHDOG * 3;
    let deadline = std::time::Instant::now() + limit;
    for (t, c) in calls.iter().enumerate() {
        match c.wait(deadline.saturating_duration_since(std::time::Instant::now())) {
            Some(r) => reports.push(r),
            None => {
                hung += 1;
                tfail!("thread {t} did not finish within {limit:?}");
            }
        }
    }
    let events = l.stop();
    if hung > 0 {
        tinfo!("{} events before the group closed", events.len());
        return;
    }

    let bad: Vec<&String> = reports.iter().flat_map(|r| &r.bad).collect();
    let (stats, listings): (usize, usize) = reports
        .iter()
        .fold((0, 0), |(s, l), r| (s + r.stats, l + r.listings));
    if bad.is_empty() {
        tpass!("{stats} stats found their files with their sizes, {listings} listings had all {FILES} files and nothing else");
    } else {
        tfail!(
            "{} of {stats} stats and {listings} listings went wrong, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
    }

    let dirs = dirs.lock().unwrap();
    let mut problems = Vec::new();
    let mut per_dir: BTreeMap<usize, usize> = BTreeMap::new();
    for (id, &level) in &dirs.level {
        let n = dirs.populated.get(id).copied().unwrap_or(0);
        if n != 1 {
            problems.push(format!("level {level} was populated {n} times"));
        }
        let evs: Vec<&DirEvent> = events
            .iter()
            .filter(|e| e.fd.as_ref().is_ok_and(|f| f.id == *id))
            .collect();
        per_dir.insert(level, evs.len());
        let mut by_thread: BTreeMap<i32, usize> = BTreeMap::new();
        for e in &evs {
            *by_thread.entry(e.pid).or_default() += 1;
            if let Some(p) = e.problem(*id) {
                problems.push(format!("level {level}: {p}"));
            }
            if !tids.contains(&e.pid) {
                problems.push(format!("level {level}: an event from thread {}", e.pid));
            }
            let name_ok = match (level + 1 < depth, e.name()) {
                (true, Some(n)) => n == LEVELS[level],
                (true, None) => false,
                (false, Some(n)) => (0..FILES).any(|i| fname(i) == n),
                (false, None) => true,
            };
            if !name_ok {
                problems.push(format!(
                    "level {level}: an event with the name {:?}",
                    e.name()
                ));
            }
        }
        if let Some((tid, n)) = by_thread.iter().find(|(_, &n)| n > 1) {
            problems.push(format!(
                "level {level}: {n} events from thread {tid}, which waited for the first until the directory was ignored"
            ));
        }
        if evs.is_empty() || evs.len() > THREADS {
            problems.push(format!(
                "level {level}: {} events, want 1 to {THREADS}",
                evs.len()
            ));
        }
    }
    let stray = events
        .iter()
        .filter(|e| !e.fd.as_ref().is_ok_and(|f| dirs.level.contains_key(&f.id)))
        .count();
    if stray > 0 {
        problems.push(format!("{stray} events on no directory of the test"));
    }
    tinfo!(
        "{} FAN_PRE_DIR_ACCESS events for {THREADS} threads x {ROUNDS} rounds of {STATS} stats and a listing; per level: {per_dir:?}",
        events.len()
    );
    if problems.is_empty() {
        tpass!(
            "each of the {depth} directories was populated once, at its own event; every event an O_RDONLY fd of its directory with the looked-up name; at most one event per thread and directory ({per_dir:?} of at most {THREADS})"
        );
    } else {
        tfail!("{}", problems.join("; "));
    }
}
