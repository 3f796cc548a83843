//! pre_fault_write_atomic: a write(2) whose source buffer is partly unfilled
//! lazy pages is not interleaved with another writer of the same range.  The
//! series does a read or write whose buffer faults on a lazy page in rounds,
//! dropping the inode lock in between so that the listener can fill (patch 6,
//! call_rw_iter()); a review of this revision found that a write of pages
//! whose first one was filled wrote that page, then let another writer in
//! while the rest was faulted in, and wrote the rest over it: a mix of the two
//! writes, which i_rwsem otherwise rules out.  The source buffer of a write is
//! now faulted in before the first round, outside the filesystem's locks.
//!
//! Each iteration: a fresh lazy stub whose even pages are filled (touched
//! under MADV_RANDOM, one page per event) and odd ones not; writer A
//! pwrite(2)s PAGES pages from that mapping to offset 0 of a plain file while
//! writer B, released the moment A starts, pwrite(2)s PAGES pages of 0xbb to
//! the same range.  Afterwards the file must be all A's bytes or all B's.
//!
//! Guards the cover letter's Known limitations (a write is split only if its
//! buffer does not stay in memory) and Design (fault-in-and-retry).

use crate::common::*;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

pub const TEST: Test = Test {
    name: "pre_fault_write_atomic",
    doc: "a write(2) from a partly unfilled lazy buffer is not interleaved with another writer",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        (
            "cover-letter",
            "Known limitations and open questions: a write is split only if its buffer does not stay in memory",
        ),
        (
            "cover-letter",
            "Design: reads and writes fault lazy buffers in outside their locks",
        ),
    ],
    timeout: std::time::Duration::from_secs(120),
    run,
    ..Test::DEFAULT
};

const PAGES: u64 = 8;
const ITERATIONS: u32 = 10;
const B_BYTE: u8 = 0xbb;

/// One iteration: "A", "B" or a description of the mix.
fn iteration(ctx: &Ctx, i: u32, dest: &std::fs::File) -> Result<&'static str, String> {
    let ps = page_size();
    let len = (PAGES * ps) as usize;
    let path = ctx.path(&format!("stub{i}"));
    let (l, stub) = lazy_stub_rw(&path, PAGES * ps);
    let m = Map::new(&stub, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
        .or_brok("mmap the stub");
    m.advise(MmapAdvise::MADV_RANDOM)
        .or_brok("madvise(MADV_RANDOM)");
    for p in (0..PAGES).step_by(2) {
        m.touch(p);
    }
    let b_buf = vec![B_BYTE; len];
    let go = AtomicBool::new(false);
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            dest.write_at(&b_buf, 0)
        });
        go.store(true, Ordering::Release);
        // SAFETY: PAGES pages of our own mapping as the source buffer.
        let a = unsafe { libc::pwrite(dest.as_raw_fd(), m.addr(0).cast(), len, 0) };
        (a, b.join().expect("writer B"))
    });
    drop(l);
    if a != len as isize {
        return Err(format!(
            "writer A: {a} ({})",
            std::io::Error::last_os_error()
        ));
    }
    if b.as_ref().ok() != Some(&len) {
        return Err(format!("writer B: {b:?}"));
    }
    let mut got = vec![0u8; len];
    dest.read_exact_at(&mut got, 0)
        .or_brok("read the file back");
    if pattern_mismatch(0, &got).is_none() {
        return Ok("A");
    }
    if got.iter().all(|&c| c == B_BYTE) {
        return Ok("B");
    }
    let who: Vec<char> = got
        .chunks(ps as usize)
        .enumerate()
        .map(|(p, c)| {
            if pattern_mismatch(p as u64 * ps, c).is_none() {
                'A'
            } else if c.iter().all(|&x| x == B_BYTE) {
                'B'
            } else {
                '?'
            }
        })
        .collect();
    Err(format!(
        "the pages are a mix of the two writes: {}",
        who.iter().collect::<String>()
    ))
}

fn run(ctx: &Ctx) {
    let dest = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(ctx.path("dest"))
        .or_brok("create the destination");
    let (mut a_last, mut b_last, mut bad) = (0, 0, Vec::new());
    for i in 0..ITERATIONS {
        match iteration(ctx, i, &dest) {
            Ok("A") => a_last += 1,
            Ok(_) => b_last += 1,
            Err(e) => bad.push(format!("iteration {i}: {e}")),
        }
    }
    tinfo!("{ITERATIONS} iterations: A's write last in {a_last}, B's in {b_last}");
    if bad.is_empty() {
        tpass!("{ITERATIONS} writes from a partly unfilled lazy buffer were each one write, never a mix with the concurrent writer's");
    } else {
        tfail!("{}", bad.join("; "));
    }
}
