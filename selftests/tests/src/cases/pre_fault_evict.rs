//! pre_fault_evict: a retried fault never reads without an event of its own,
//! whenever the HSM evicts (review K4).  8 threads fault random pages of a
//! lazy file for 10 s while the HSM evicts random windows every 5 ms, with
//! no regard to what is in flight: FALLOC_FL_PUNCH_HOLE through its event fd
//! (dropping data), or fsync and POSIX_FADV_DONTNEED (dropping cache only).
//! Every byte read must equal the pattern.
//!
//! A punch can land between the HSM's answer and the fault's read of the
//! allowed range.  v1 replayed allowed answers, so a retried fault read a
//! punched range without a new event; the first v2 build re-created a folio
//! that the punch had truncated under the fault; the v2 build before this
//! test read the allowed range even if it was punched after the answer,
//! which gave zeros unless the HSM waited a while after each answer before
//! evicting (the earlier version of this test waited 2 s, and still saw 2
//! zeros in 66 million reads on a loaded host; without waiting, this test
//! saw 9117 wrong bytes of 5.8 million on ext4, 83 of 4.2 million on xfs).
//! Now a fault reads the range in only if no truncation or hole punch of
//! the file began since its event and none is under way
//! (fsnotify_prefault_truncate_begin()), so the test evicts without waiting.
//! read(2) is not covered (cover letter): the threads only fault.
//!
//! ext4 and xfs only: they punch holes under the mapping's invalidate_lock,
//! which the fault reads in under.  btrfs does not, and still showed one
//! zero byte (of 17000 and of 77000 reads) in two of three runs; that is an
//! open item of the series (cover letter).
//!
//! Guards the cover letter's Design (no answer is reused; an HSM may evict
//! while faults wait) and Documentation/filesystems/fanotify-pre-fault.rst.

use crate::common::*;
use fanotify::consts::*;
use fanotify::{Range, Response};
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "pre_fault_evict",
    doc: "8 threads fault while the HSM evicts windows at any time (punch hole, DONTNEED): every byte right",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs],
    timeout: Duration::from_secs(120),
    tags: &[("cover-letter", "Design")],
    run: evict_while_faulting,
    ..Test::DEFAULT
};

const PAGES: u64 = 1024;
const WINDOW: u64 = 32;
const THREADS: usize = 8;
const RUN: Duration = Duration::from_secs(10);

/// splitmix64: a cheap deterministic sequence for picking pages.
fn next(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn evict_while_faulting(ctx: &Ctx) {
    let ps = page_size();
    let size = PAGES * ps;
    let path = ctx.path("stub");
    create_sparse_file(&path, size);
    let evfd: Arc<Mutex<Option<OwnedFd>>> = Arc::default();
    let e2 = evfd.clone();
    let listener = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            if let Err(e) = ctx.fill_range() {
                ltp::tfail!("listener: fill: {e}");
                return Response::DenyErrno(libc::EIO);
            }
            if let Some(fd) = &ctx.event.fd {
                let mut e = e2.lock().unwrap();
                if e.is_none() {
                    *e = fd.try_clone().ok();
                }
            }
            Response::Allow
        }),
    );
    let f = File::open(&path).or_brok("open");
    let m = Arc::new(
        Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (m, stop, reads, wrong) = (m.clone(), stop.clone(), reads.clone(), wrong.clone());
            std::thread::spawn(move || {
                let mut seed = t as u64 + 1;
                while !stop.load(Ordering::Relaxed) {
                    let page = next(&mut seed) % PAGES;
                    let off = next(&mut seed) % ps;
                    // SAFETY: inside the mapping; volatile so the load
                    // really faults.
                    let b = unsafe { std::ptr::read_volatile(m.addr(page).add(off as usize)) };
                    reads.fetch_add(1, Ordering::Relaxed);
                    if b != pattern_byte(page * ps + off)
                        && wrong.fetch_add(1, Ordering::Relaxed) < 5
                    {
                        ltp::tinfo!(
                            "wrong byte at page {page} + {off}: {b:#x}, want {:#x}",
                            pattern_byte(page * ps + off)
                        );
                    }
                }
            })
        })
        .collect();

    let (mut punched, mut dropped) = (0, 0);
    let mut seed = 0x5eed;
    // The evictor's own copy of an event fd: the listener takes the mutex
    // on every event, so a punch made holding it would hold answers back.
    let mut own_fd: Option<OwnedFd> = None;
    let t0 = Instant::now();
    while t0.elapsed() < RUN {
        std::thread::sleep(Duration::from_millis(5));
        let w = next(&mut seed) % (PAGES / WINDOW);
        let r = Range {
            offset: w * WINDOW * ps,
            count: WINDOW * ps,
        };
        if own_fd.is_none() {
            own_fd = evfd
                .lock()
                .unwrap()
                .as_ref()
                .map(|fd| fd.try_clone().or_brok("dup the event fd"));
        }
        let Some(fd) = own_fd.as_ref() else { continue };
        if punched <= dropped {
            nix::fcntl::fallocate(
                fd.as_raw_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                r.offset as i64,
                r.count as i64,
            )
            .or_brok("punch a hole through the event fd");
            punched += 1;
        } else {
            nix::unistd::fsync(fd.as_raw_fd()).or_brok("fsync");
            nix::fcntl::posix_fadvise(
                fd.as_raw_fd(),
                r.offset as i64,
                r.count as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )
            .or_brok("POSIX_FADV_DONTNEED");
            dropped += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let events = listener.stop().len();
    let (reads, wrong) = (reads.load(Ordering::Relaxed), wrong.load(Ordering::Relaxed));
    tinfo!("{reads} reads, {events} events, {punched} windows punched, {dropped} dropped");
    tcheck!(
        punched + dropped > 0 && reads > 0,
        "the HSM evicted windows ({punched} punched, {dropped} dropped) while {THREADS} threads faulted"
    );
    tcheck!(
        wrong == 0,
        "every byte read while the HSM evicted equals the pattern ({wrong} of {reads} wrong)"
    );
}
