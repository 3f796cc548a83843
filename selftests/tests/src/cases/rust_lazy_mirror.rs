//! rust_lazy_mirror: the Rust sample samples/rust/rust_lazy_mirror.rs, a
//! misc device whose Rust page fault handler serves a read-only mapping from
//! a backing file, calls the fault-time pre-content hook through the Rust
//! bindings (VmFault::pre_content) before it reads a page.  Checked from
//! userspace: mmap() of the device sends nothing; touching page N sends one
//! FAN_PRE_FAULT for exactly page N of the backing file, and the page shows
//! the bytes the listener filled; re-touching sends nothing; a denied event
//! gives SIGBUS; a page past the backing file's end gives SIGBUS; closing the
//! listener with faults pending ends them all with SIGBUS and caches nothing
//! (review K6: pending fault-time events are denied); a writable mapping and a
//! write-only backing fd are refused.  And what the review of v1's Rust
//! patches asked (R3-R7, their v2): a backing file watched only for mmap()-time
//! events (FAN_PRE_ACCESS) gets one event for its whole content at
//! LAZY_MIRROR_SET_BACKING and the mapping shows filled bytes, never unfilled
//! ones (v1's sample read them); a mapping at page offset 2^51 and 2^51 - 1
//! (byte offsets that overflow or nearly overflow loff_t) gets SIGBUS and no
//! event; two threads faulting the same page together both get it (v1 gave
//! one of them SIGBUS for vm_insert_page()'s -EBUSY); and faults under the
//! per-VMA lock reach the Rust handler, which implements map_pages (without
//! it they are retried under the mmap lock).
//!
//! Guards the cover letter's Rust section (the bindings have an in-tree user that
//! works, rust/samples/rust/rust_lazy_mirror.rs), and through it the Design
//! (one event per faulting page, denied faults fail) and the listener-death
//! rows of the fault-path matrix for a Rust ->fault().

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tconf, texp_fail, tfail, tinfo, tpass, Ctx, Test};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "rust_lazy_mirror",
    doc: "Rust ->fault() of the lazy mirror sample sends one FAN_PRE_FAULT per touched page",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_SAMPLE_RUST_LAZY_MIRROR",
    ],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        (
            "cover-letter",
            "Rust: samples/rust/rust_lazy_mirror.rs, the in-tree user",
        ),
        ("doc", "rust/samples/rust/rust_lazy_mirror.rs"),
        (
            "cover-letter",
            "Design: a denied event fails the retried fault (SIGBUS / EFAULT)",
        ),
        (
            "cover-letter",
            "Fault-path matrix: listener closed with faults pending",
        ),
    ],
    run,
    ..Test::DEFAULT
};

const DEV: &str = "/dev/rust-lazy-mirror";
const FILE_PAGES: u64 = 64;

nix::ioctl_write_ptr!(set_backing, b'|', 0xa0, u32);
nix::ioctl_read!(vma_lock_faults, b'|', 0xa1, u64);

/// Open the device and give it `backing` (opened with `opts`).
fn mirror_of(backing: &std::fs::File) -> nix::Result<std::fs::File> {
    let dev = match std::fs::File::open(DEV) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tconf!("{DEV} missing: the lazy mirror sample is not built in")
        }
        Err(e) => tbrok!("open {DEV}: {e}"),
    };
    let fd = backing.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 from a valid pointer.
    unsafe { set_backing(dev.as_raw_fd(), &fd) }?;
    Ok(dev)
}

/// The device mirroring `backing`, and a shared read-only mapping of its
/// FILE_PAGES pages.
fn mirror_map(backing: &std::fs::File) -> (std::fs::File, Map) {
    let dev = mirror_of(backing).or_brok("LAZY_MIRROR_SET_BACKING");
    let m = Map::new(
        &dev,
        0,
        FILE_PAGES,
        ProtFlags::PROT_READ,
        MapFlags::MAP_SHARED,
    )
    .or_brok("mmap device");
    (dev, m)
}

/// Touch `page` of `m` in a child with SIGBUS's default action: how the
/// child ended (SIGBUS when the fault fails).
fn touch_in_child(m: &Map, page: u64) -> WaitStatus {
    in_child(|| {
        default_sigbus();
        m.touch(page);
        0
    })
}

/// An unwatched backing file `name` of 4 pattern pages, and the device
/// mirroring it.
fn unwatched_mirror(ctx: &Ctx, name: &str) -> (std::fs::File, std::fs::File) {
    let path = ctx.path(name);
    create_pattern_file(&path, 4 * page_size());
    let backing = open_ro(&path);
    let dev = mirror_of(&backing).or_brok("LAZY_MIRROR_SET_BACKING");
    (backing, dev)
}

fn open_ro(p: &Path) -> std::fs::File {
    std::fs::File::open(p).or_brok("open backing")
}

/// Touch `pages` of a lazy backing file through the device; one event each,
/// exactly that page, content filled.
fn touch_pages(ctx: &Ctx, what: &str, pages: &[u64]) {
    let path = ctx.path("backing");
    create_sparse_file(&path, FILE_PAGES * page_size());
    let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let backing = open_ro(&path);
    let (_dev, m) = mirror_map(&backing);
    if l.seen().is_empty() {
        tpass!("{what}: mmap() of the device sent no event");
    } else {
        tfail!("{what}: mmap() of the device sent {:?}", l.seen());
    }
    for (i, &p) in pages.iter().enumerate() {
        let data = m.read_page(p);
        let seen = l.seen();
        match seen.get(i..) {
            Some([s]) if s.mask == FAN_PRE_FAULT => match s.range {
                Some(r) if r.offset == p * page_size() && r.count == page_size() => {
                    tpass!("{what}: page {p}: one FAN_PRE_FAULT for exactly that page")
                }
                r => tfail!("{what}: page {p}: event range {r:?}, want page {p}"),
            },
            other => tfail!("{what}: page {p}: want one new FAN_PRE_FAULT, got {other:?}"),
        }
        match pattern_mismatch(p * page_size(), &data) {
            None => tpass!("{what}: page {p} shows the filled bytes"),
            Some(b) => tfail!(
                "{what}: page {p} byte {b} is {:#x}, want {:#x}",
                data[b],
                pattern_byte(p * page_size() + b as u64)
            ),
        }
    }
    let before = l.seen().len();
    for &p in pages {
        m.touch(p);
    }
    let after = l.seen().len();
    if after == before {
        tpass!("{what}: re-touching sent no event");
    } else {
        tfail!("{what}: re-touching sent {} events", after - before);
    }
}

fn deny(ctx: &Ctx) {
    let path = ctx.path("denied");
    create_sparse_file(&path, FILE_PAGES * page_size());
    let l = Listener::answering(
        lazy_group(&path, FAN_MARK_INODE),
        Response::DenyErrno(libc::EIO),
    );
    let backing = open_ro(&path);
    let (_dev, m) = mirror_map(&backing);
    match touch_in_child(&m, 9) {
        WaitStatus::Signaled(_, Signal::SIGBUS, _) => tpass!("denied: SIGBUS"),
        other => tfail!("denied: want death by SIGBUS, got {other:?}"),
    }
    let n = l.stop().len();
    if n == 1 {
        tpass!("denied: one event (the retried fault sent none)");
    } else {
        tfail!("denied: {n} events for one fault");
    }
}

fn past_eof(ctx: &Ctx) {
    let (_backing, dev) = unwatched_mirror(ctx, "short");
    let m = Map::new(&dev, 0, 8, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let ok = (0..4).all(|p| pattern_mismatch(p * page_size(), &m.read_page(p)).is_none());
    if ok {
        tpass!("unwatched backing file: pages 0-3 show its content");
    } else {
        tfail!("unwatched backing file: content differs");
    }
    match touch_in_child(&m, 5) {
        WaitStatus::Signaled(_, Signal::SIGBUS, _) => tpass!("page past EOF: SIGBUS"),
        other => tfail!("page past EOF: want death by SIGBUS, got {other:?}"),
    }
}

fn listener_death(ctx: &Ctx) {
    const FAULTERS: u64 = 4;
    let path = ctx.path("orphan");
    create_sparse_file(&path, FILE_PAGES * page_size());
    let group = lazy_group(&path, FAN_MARK_INODE);
    let backing = open_ro(&path);
    let (_dev, m) = mirror_map(&backing);
    // Each fault in a process of its own: the documented result is SIGBUS.
    // The children close their copy of the group's fd, or the group would
    // outlive the listener.
    let group_fd = group.as_raw_fd();
    let faulters: Vec<_> = (0..FAULTERS)
        .map(|t| {
            // SAFETY: the child only reads the shared mapping and _exit()s.
            match unsafe { nix::unistd::fork() }.or_brok("fork") {
                nix::unistd::ForkResult::Child => {
                    // SAFETY: closes this child's copy of the group fd,
                    // which nothing in the child uses.
                    unsafe { libc::close(group_fd) };
                    default_sigbus();
                    let page = m.read_page(t * 8);
                    let code = if page.iter().all(|&b| b == 0) { 10 } else { 11 };
                    // SAFETY: _exit is always safe.
                    unsafe { libc::_exit(code) }
                }
                nix::unistd::ForkResult::Parent { child } => child,
            }
        })
        .collect();
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (held.len() as u64) < FAULTERS && Instant::now() < deadline {
        held.extend(
            group
                .wait_events(Duration::from_millis(100))
                .or_brok("read events"),
        );
    }
    tinfo!("listener holds {} unanswered events", held.len());
    if held.len() as u64 != FAULTERS {
        tfail!("want {FAULTERS} pending events, got {}", held.len());
    }
    let t0 = Instant::now();
    drop(held);
    drop(group);
    let mut sigbus = 0;
    let mut other = Vec::new();
    for pid in faulters {
        match waitpid(pid, None).or_brok("waitpid") {
            WaitStatus::Signaled(_, Signal::SIGBUS, _) => sigbus += 1,
            s => other.push(s),
        }
    }
    let waited = t0.elapsed();
    if waited < Duration::from_secs(10) && sigbus == FAULTERS {
        tpass!("listener closed: {FAULTERS} faults ended with SIGBUS in {waited:?}, none read unfilled zeros");
    } else {
        tfail!("listener closed: after {waited:?}, {sigbus}/{FAULTERS} SIGBUS, others {other:?} (exit 10: zeros)");
    }
    let cached =
        hsm::cache::cached_pages(&backing, 0, FILE_PAGES * page_size()).or_brok("cachestat");
    if cached == 0 {
        tpass!("listener closed: nothing of the backing file was cached");
    } else {
        tfail!("listener closed: {cached} unfilled pages of the backing file cached");
    }
}

fn refused(ctx: &Ctx) {
    let (backing, dev) = unwatched_mirror(ctx, "plain");
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV)
        .or_brok("open device rw");
    // SAFETY: the ioctl reads one u32 from a valid pointer.
    unsafe { set_backing(rw.as_raw_fd(), &(backing.as_raw_fd() as u32)) }.or_brok("ioctl rw");
    let cases: [(&str, nix::Result<()>, Errno); 3] = [
        (
            "writable shared mapping",
            Map::new(
                &rw,
                0,
                4,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
            .map(drop),
            Errno::EACCES,
        ),
        (
            "write-only backing fd",
            std::fs::OpenOptions::new()
                .write(true)
                .open(ctx.path("plain"))
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
                .and_then(|wo| mirror_of(&wo).map(drop)),
            Errno::EBADF,
        ),
        (
            "closed backing fd",
            {
                let fd = 1000u32;
                // SAFETY: the ioctl reads one u32 from a valid pointer.
                unsafe { set_backing(dev.as_raw_fd(), &fd) }.map(drop)
            },
            Errno::EBADF,
        ),
    ];
    for (what, got, want) in cases {
        texp_fail!(got, want, "{what}");
    }
}

/// R3: a backing file watched only for mmap()-time events gets one
/// FAN_PRE_ACCESS for its whole content when it is set, and the mapping shows
/// what the listener filled.
fn mmap_mode_backing(ctx: &Ctx) {
    let path = ctx.path("mmap-mode");
    let size = FILE_PAGES * page_size();
    create_sparse_file(&path, size);
    let l = Listener::filling(pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS));
    let backing = open_ro(&path);
    let (_dev, m) = mirror_map(&backing);
    let seen = l.seen();
    let whole = seen
        .iter()
        .filter(|e| e.mask == FAN_PRE_ACCESS)
        .any(|e| e.range.is_some_and(|r| r.offset == 0 && r.count >= size));
    if whole {
        tpass!("mmap-mode backing: LAZY_MIRROR_SET_BACKING announced the whole file");
    } else {
        tfail!("mmap-mode backing: no FAN_PRE_ACCESS for the whole file (seen {seen:?})");
    }
    let wrong: Vec<u64> = [0, 7, FILE_PAGES - 1]
        .into_iter()
        .filter(|&p| pattern_mismatch(p * page_size(), &m.read_page(p)).is_some())
        .collect();
    if wrong.is_empty() {
        tpass!("mmap-mode backing: the mapping shows the filled bytes");
    } else {
        tfail!(
            "mmap-mode backing: pages {wrong:?} are not the filled bytes (unfilled content read)"
        );
    }
    let faults = l.stop().iter().filter(|e| e.mask == FAN_PRE_FAULT).count();
    if faults == 0 {
        tpass!("mmap-mode backing: no FAN_PRE_FAULT (the mark did not ask for them)");
    } else {
        tfail!("mmap-mode backing: {faults} FAN_PRE_FAULT events");
    }
}

/// R4: page offsets whose byte offset overflows (2^51) or nearly overflows
/// (2^51 - 1) a loff_t: SIGBUS, and no event with a bogus offset.
fn huge_pgoff(ctx: &Ctx) {
    let path = ctx.path("huge-pgoff");
    create_sparse_file(&path, FILE_PAGES * page_size());
    let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let backing = open_ro(&path);
    let dev = mirror_of(&backing).or_brok("LAZY_MIRROR_SET_BACKING");
    for pgoff in [(1u64 << 51) - 1, 1u64 << 51] {
        let m = match Map::new(&dev, pgoff, 1, ProtFlags::PROT_READ, MapFlags::MAP_SHARED) {
            Ok(m) => m,
            Err(e) => {
                tfail!("mmap at page offset {pgoff:#x}: {e}");
                continue;
            }
        };
        match touch_in_child(&m, 0) {
            WaitStatus::Signaled(_, Signal::SIGBUS, _) => {
                tpass!("page offset {pgoff:#x}: SIGBUS")
            }
            other => tfail!("page offset {pgoff:#x}: want death by SIGBUS, got {other:?}"),
        }
    }
    let seen = l.stop();
    if seen.is_empty() {
        tpass!("huge page offsets: no event");
    } else {
        tfail!("huge page offsets: events {seen:?}");
    }
}

/// R5: two threads fault the same page of the mapping at the same time, for
/// each of PAGES pages: both get it (vm_insert_page()'s -EBUSY for the one
/// that comes second is not an error of the fault).
fn same_page_threads(ctx: &Ctx) {
    use std::sync::atomic::{AtomicU64, Ordering};
    const PAGES: u64 = 1024;
    let path = ctx.path("two-threads");
    create_pattern_file(&path, PAGES * page_size());
    let backing = open_ro(&path);
    let dev = mirror_of(&backing).or_brok("LAZY_MIRROR_SET_BACKING");
    let m = Map::new(&dev, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let status = in_child(|| {
        default_sigbus();
        let go = AtomicU64::new(u64::MAX);
        let ready = AtomicU64::new(0);
        let bad = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for p in 0..PAGES {
                        ready.fetch_add(1, Ordering::AcqRel);
                        while go.load(Ordering::Acquire) != p {
                            std::hint::spin_loop();
                        }
                        if pattern_mismatch(p * page_size(), &m.read_page(p)).is_some() {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            for p in 0..PAGES {
                while ready.load(Ordering::Acquire) < 2 * (p + 1) {
                    std::hint::spin_loop();
                }
                go.store(p, Ordering::Release);
            }
        });
        if bad.load(Ordering::Relaxed) == 0 {
            0
        } else {
            12
        }
    });
    match status {
        WaitStatus::Exited(_, 0) => {
            tpass!("{PAGES} pages faulted by two threads at once: both got each page, right bytes")
        }
        WaitStatus::Exited(_, 12) => tfail!("two threads: some pages showed wrong bytes"),
        other => tfail!(
            "two threads faulting one page: {other:?} (SIGBUS: the second insert failed the fault)"
        ),
    }
}

/// R7: with map_pages, faults under the per-VMA lock reach the Rust handler.
fn vma_lock_faults_reach_handler(ctx: &Ctx) {
    let (_backing, dev) = unwatched_mirror(ctx, "vma-lock");
    let m = Map::new(&dev, 0, 4, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    for p in 0..4 {
        m.touch(p);
    }
    let mut n = 0u64;
    // SAFETY: the ioctl writes one u64 to a valid pointer.
    match unsafe { vma_lock_faults(dev.as_raw_fd(), &mut n) } {
        Ok(_) if n >= 1 => {
            tpass!("{n} of the 4 faults reached the Rust handler under the per-VMA lock")
        }
        Ok(_) => tfail!("no fault reached the Rust handler under the per-VMA lock"),
        Err(e) => tfail!("LAZY_MIRROR_VMA_LOCK_FAULTS: {e}"),
    }
}

fn run(ctx: &Ctx) {
    touch_pages(ctx, "scattered pages", &[5, 0, 63, 17]);
    std::fs::remove_file(ctx.path("backing")).or_brok("unlink");
    touch_pages(ctx, "neighbours", &[30, 31, 29]);
    deny(ctx);
    past_eof(ctx);
    listener_death(ctx);
    refused(ctx);
    mmap_mode_backing(ctx);
    huge_pgoff(ctx);
    same_page_threads(ctx);
    vma_lock_faults_reach_handler(ctx);
}
