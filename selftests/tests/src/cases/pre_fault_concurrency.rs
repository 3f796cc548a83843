//! pre_fault_concurrency: 8 threads fault the same and adjacent pages of a
//! lazy file in random order while the HSM fills with random delays: every
//! byte seen matches the pattern.  The HSM, like a real one, keeps track of
//! what it filled and never fills a page twice (a second fill would overwrite
//! data the first one made visible).  Events for ranges it already filled can
//! only come from faults that raced the fill: once a range is filled and
//! allowed it is in the page cache, so each fill can be raced by at most one
//! pending fault of each other thread.  The test asserts that bound
//! (redundant events <= fills x (threads - 1)), and that no thread panicked.
//!
//! Guards the cover letter's Design (lock dropped, answer recorded, fault retried)
//! and its answer to objection 2, under concurrency.

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_fault_concurrency",
    doc:
        "8 threads, random page order, slow random HSM: every byte exact, redundant events bounded",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        (
            "cover-letter",
            "Objections of the revert, answered: 2 (nothing waits holding the mmap or VMA lock)",
        ),
        (
            "cover-letter",
            "Design: the mmap or VMA lock is dropped, the answer recorded, the fault retried",
        ),
    ],
    timeout: Duration::from_secs(120),
    run,
    ..Test::DEFAULT
};

const THREADS: u64 = 8;
const PAGES: u64 = 512;

/// A small deterministic PRNG (xorshift), seeded per thread.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn run(ctx: &Ctx) {
    let path = ctx.path("stub");
    create_sparse_file(&path, PAGES * page_size());
    let filled = Arc::new(Mutex::new(vec![false; PAGES as usize]));
    let redundant = Arc::new(Mutex::new(0u64));
    let fills = Arc::new(Mutex::new(0u64));
    let (f2, r2, n2) = (filled.clone(), redundant.clone(), fills.clone());
    let mut delay = rng(42);
    let l = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            std::thread::sleep(Duration::from_micros(delay() % 5000));
            let Some(r) = ctx.event.range() else {
                return Response::Allow;
            };
            let (a, b) = (
                r.offset / page_size(),
                ((r.offset + r.count) / page_size()).min(PAGES),
            );
            let mut filled = f2.lock().unwrap();
            if (a..b).all(|p| filled[p as usize]) {
                *r2.lock().unwrap() += 1;
                return Response::Allow;
            }
            *n2.lock().unwrap() += 1;
            let fd = ctx.event.fd.as_ref().expect("event fd");
            for p in a..b {
                if !filled[p as usize] {
                    if let Err(e) = nix::sys::uio::pwrite(
                        fd,
                        &pattern(p * page_size(), page_size() as usize),
                        (p * page_size()) as i64,
                    ) {
                        ltp::tfail!("fill page {p}: {e}");
                        return Response::DenyErrno(libc::EIO);
                    }
                    filled[p as usize] = true;
                }
            }
            Response::Allow
        }),
    );
    let f = std::fs::File::open(&path).or_brok("open");
    let m = Arc::new(
        Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap"),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut next = rng(t + 1);
                let mut bad = 0u32;
                for _ in 0..PAGES {
                    // Half the time a page near the hot spot all threads share.
                    let p = if next().is_multiple_of(2) { 100 + next() % 8 } else { next() % PAGES };
                    let d = m.read_page(p);
                    if let Some(i) = pattern_mismatch(p * page_size(), &d) {
                        if bad < 3 {
                            let zeros = d.iter().filter(|&&b| b == 0).count();
                            tinfo!("thread {t}: page {p} byte {i} is {:#x} ({zeros} zero bytes in the page)", d[i]);
                        }
                        bad += 1;
                    }
                }
                bad
            })
        })
        .collect();
    let (mut bad, mut panicked) = (0u32, 0u32);
    for t in threads {
        match t.join() {
            Ok(b) => bad += b,
            Err(_) => panicked += 1,
        }
    }
    let seen = l.stop();
    let n = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).count();
    let redundant = *redundant.lock().unwrap();
    let fills = *fills.lock().unwrap();
    tinfo!("{n} FAN_PRE_FAULT events: {fills} fills, {redundant} for ranges already filled");
    if panicked > 0 {
        tfail!("{panicked} faulting threads panicked");
    }
    let bound = fills * (THREADS - 1);
    if redundant <= bound {
        tpass!(
            "{redundant} events for filled ranges <= {fills} fills x {} other threads",
            THREADS - 1
        );
    } else {
        tfail!("{redundant} events for filled ranges: more than {fills} fills x {} other threads could race", THREADS - 1);
    }
    if bad == 0 && panicked == 0 {
        tpass!("{THREADS} threads x {PAGES} random page reads: every byte matches");
    } else {
        tfail!("{bad} page reads saw wrong bytes");
    }
    if n > 0 {
        tpass!("{n} fault-time events served the {THREADS} threads");
    } else {
        tfail!("no FAN_PRE_FAULT event at all");
    }
}
