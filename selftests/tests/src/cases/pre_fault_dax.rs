//! pre_fault_dax: DAX files (pmem from `memmap=` on the guest command line,
//! ext4 and xfs mounted -o dax) get fault-time events too.  A lazily watched
//! DAX file sends one FAN_PRE_FAULT per first-touched page (DAX has no page
//! cache) and shows the filled bytes.  Huge faults: touching every page of a
//! 2 MiB aligned region of an unwatched DAX file must take a few page faults
//! (PMD mappings), of the lazily watched file one per page (PTE mappings:
//! the huge fault fell back).  Page faults are counted with getrusage(2):
//! smaps cannot tell, as it leaves DAX PMD mappings out of FilePmdMapped.
//! Where the unwatched file gets no PMD mappings, the test says so and the
//! fallback is not verified.
//!
//! Guards the cover letter's Design (huge faults fall back, ext4 and xfs DAX
//! faults send events) and its answer to objection 3 (the reverted hooks
//! 4f4dc3a9378b, 27773ce17762 and bc71aab4513f).

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::run as run_cmd;
use ltp::res::OrBrok;
use ltp::{tconf, tfail, tinfo, tpass, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::path::Path;
use std::process::Command;

pub const TEST: Test = Test {
    name: "pre_fault_dax",
    doc: "DAX on pmem: lazy file gets one event per page and PTE mappings; unwatched keeps PMD mappings",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_FS_DAX", "CONFIG_BLK_DEV_PMEM"],
    tags: &[
        ("cover-letter", "Objections of the revert, answered: 3 (vfio/PFNMAP: huge faults)"),
        ("cover-letter", "Design: huge faults fall back; DAX faults send one event per page"),
        ("linux-git", "4f4dc3a9378b Revert \"mm: don't allow huge faults for files with pre content watches\" (6.14-rc7)"),
        ("linux-git", "27773ce17762 Revert \"xfs: add pre-content fsnotify hook for DAX faults\" (6.14-rc7)"),
        ("linux-git", "bc71aab4513f Revert of the ext4 DAX fault hook (6.14-rc7)"),
    ],
    needs_cmds: &["mkfs.ext4", "mkfs.xfs", "mount", "umount"],
    timeout: std::time::Duration::from_secs(120),
    run,
    // /dev/pmem0 must not stay mounted when a check breaks the test.
    cleanup: Some(|ctx| {
        let _ = Command::new("umount").arg(ctx.path("pmem")).output();
    }),
    ..Test::DEFAULT
};

const PMEM: &str = "/dev/pmem0";
const SIZE: u64 = 8 << 20;

struct DaxFs {
    name: &'static str,
    mkfs: &'static [&'static str],
}

const FILESYSTEMS: &[DaxFs] = &[
    DaxFs {
        name: "ext4",
        // DAX needs the block size to be the page size: run() adds -b.
        mkfs: &["mkfs.ext4", "-F", "-q"],
    },
    DaxFs {
        name: "xfs",
        mkfs: &[
            "mkfs.xfs",
            "-f",
            "-q",
            "-m",
            "reflink=0",
            "-d",
            "su=2m,sw=1,agcount=2",
        ],
    },
];

/// The 2 MiB aligned region of the files whose faults are counted: bytes
/// [REGION, REGION + HUGE), untouched before.
const REGION: u64 = 6 << 20;
const HUGE: u64 = 2 << 20;

/// Pages in the region.
fn region_pages() -> u64 {
    HUGE / page_size()
}

/// Page faults this thread takes to read one byte of every page of the
/// region of `m` (its mapping starts at file offset 0).
fn region_faults(m: &Map) -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let before = getrusage(UsageWho::RUSAGE_THREAD).or_brok("getrusage");
    let first = REGION / page_size();
    for p in first..first + region_pages() {
        // SAFETY: a page of our own readable mapping.
        unsafe { std::ptr::read_volatile(m.addr(p)) };
    }
    let after = getrusage(UsageWho::RUSAGE_THREAD).or_brok("getrusage");
    let n = |u: &nix::sys::resource::Usage| u.minor_page_faults() + u.major_page_faults();
    (n(&after) - n(&before)) as u64
}

/// At most this many faults for the region: PMD mapped.
const PMD_FAULTS: u64 = 8;

fn is_dax(path: &Path) -> bool {
    // SAFETY: statx writes into the zeroed struct; path is NUL-terminated.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).or_brok("path");
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    r == 0 && stx.stx_attributes & (libc::STATX_ATTR_DAX as u64) != 0
}

/// Overwrite `path` with the pattern (keeps its allocation).
fn write_pattern(path: &Path, size: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .or_brok("open");
    f.write_all_at(&pattern(0, size as usize), 0)
        .or_brok("write pattern");
    f.sync_all().or_brok("fsync");
}

fn run(ctx: &Ctx) {
    if !Path::new(PMEM).exists() {
        tconf!("no {PMEM}: boot the guest with memmap=SIZE!OFFSET (make -C selftests run does)");
    }
    // Legacy memmap= pmem comes up as an fsdax namespace with 4 KiB
    // alignment, which never gets PMD mappings; make it 2 MiB aligned.
    match Command::new("ndctl")
        .args([
            "create-namespace",
            "-f",
            "-e",
            "namespace0.0",
            "-m",
            "fsdax",
            "--align",
            "2M",
        ])
        .output()
    {
        Ok(o) if o.status.success() => tinfo!("{PMEM}: fsdax namespace with 2 MiB alignment"),
        Ok(o) => tinfo!(
            "ndctl create-namespace failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => tinfo!("no ndctl ({e}): PMD mappings may be unavailable"),
    }
    let mnt = ctx.path("pmem");
    std::fs::create_dir_all(&mnt).or_brok("mkdir");
    for fs in FILESYSTEMS {
        let mut mkfs = Command::new(fs.mkfs[0]);
        mkfs.args(&fs.mkfs[1..]);
        if fs.name == "ext4" {
            mkfs.args(["-b", &page_size().to_string()]);
        }
        run_cmd(mkfs.arg(PMEM)).or_brok(fs.name);
        run_cmd(
            Command::new("mount")
                .args(["-t", fs.name, "-o", "dax", PMEM])
                .arg(&mnt),
        )
        .or_brok("mount -o dax");
        check_fs(fs, &mnt);
        let _ = Command::new("umount").arg(&mnt).status();
    }
}

fn check_fs(fs: &DaxFs, mnt: &Path) {
    let n = fs.name;
    let region = region_pages();
    // Unwatched, populated file: huge mappings stay.
    let plain = mnt.join("plain");
    {
        // One allocation for the whole file, so extents can be 2 MiB aligned.
        let f = std::fs::File::create(&plain).or_brok("create");
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            nix::fcntl::FallocateFlags::empty(),
            0,
            SIZE as i64,
        )
        .or_brok("fallocate");
    }
    write_pattern(&plain, SIZE);
    if !is_dax(&plain) {
        tconf!("{n}: files are not DAX on {PMEM}");
    }
    let f = std::fs::File::open(&plain).or_brok("open");
    let m = Map::new(
        &f,
        0,
        SIZE / page_size(),
        ProtFlags::PROT_READ,
        MapFlags::MAP_SHARED,
    )
    .or_brok("mmap");
    let bad = (0..SIZE / page_size())
        .step_by(64)
        .find(|&p| pattern_mismatch(p * page_size(), &m.read_page(p)).is_some());
    // Count on a fresh mapping: the content check above mapped part of it.
    let fresh = Map::new(
        &f,
        0,
        SIZE / page_size(),
        ProtFlags::PROT_READ,
        MapFlags::MAP_SHARED,
    )
    .or_brok("mmap");
    if !(fresh.addr(0) as usize).is_multiple_of(HUGE as usize) {
        tinfo!("{n}: the DAX mapping is not 2 MiB aligned");
    }
    let control = region_faults(&fresh);
    drop(fresh);
    tinfo!("{n}: unwatched DAX file: {control} page faults for {region} pages");
    if bad.is_some() {
        tfail!("{n}: unwatched DAX content wrong at page {bad:?}");
    }
    drop(m);

    // Lazily watched stub.
    let LazyStub {
        map: m,
        file: _f,
        listener: l,
    } = LazyStub::new(&mnt.join("stub"), SIZE, MapFlags::MAP_SHARED);
    // Pages 10, 700 and 1500 of 4 KiB, outside the counted region.
    let pages = [40u64 << 10, 2800 << 10, 6000 << 10].map(|off| off / page_size());
    let mut wrong = 0;
    for &p in &pages {
        if pattern_mismatch(p * page_size(), &m.read_page(p)).is_some() {
            wrong += 1;
        }
    }
    let seen = l.stop();
    // The file was opened with fault-time events: its huge faults fall back
    // whether or not the (now closed) group still watches.
    let watched = region_faults(&m);
    tinfo!("{n}: lazily watched DAX file: {watched} page faults for {region} pages");
    log_seen(n, &seen);
    let faults: Vec<_> = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).collect();
    let covered = pages.iter().all(|&p| {
        faults
            .iter()
            .any(|s| s.range.is_some_and(|r| covers(&r, p * page_size())))
    });
    if faults.len() == pages.len() && covered {
        tpass!("{n}: one FAN_PRE_FAULT per touched DAX page, each covering it");
    } else {
        tfail!(
            "{n}: {} FAN_PRE_FAULT events for {} touched pages (covered: {covered})",
            faults.len(),
            pages.len()
        );
    }
    if wrong == 0 {
        tpass!("{n}: touched DAX pages show the filled bytes");
    } else {
        tfail!("{n}: {wrong} touched DAX pages are not filled");
    }
    if control > PMD_FAULTS {
        tinfo!("{n}: no PMD DAX mappings on this platform even unwatched ({control} faults): huge-fault fallback not verified here");
    } else if watched >= region {
        tpass!("{n}: unwatched DAX file PMD mapped ({control} faults per {region} pages), lazily watched one PTE mapped ({watched})");
    } else {
        tfail!("{n}: lazily watched DAX file took {watched} faults for {region} pages: huge mappings (unwatched: {control})");
    }
    drop(m);
}
