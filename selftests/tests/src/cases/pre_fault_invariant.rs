//! pre_fault_invariant: no page enters the page cache of a lazily watched
//! inode unless a pre-content event covered it, whoever reads the inode.  A
//! page fault maps what is cached without an event, so one unannounced reader
//! is enough to show a lazy mapping unfilled bytes.  One case per reader
//! that sends no event of its own:
//!
//! 0. a file opened before the mark: read() of an unfilled page fails with
//!    EIO, readahead(2) and POSIX_FADV_WILLNEED cache nothing;
//! 1. the listener's event fd reading the range it filled, next to an
//!    unfilled one: only that range is cached;
//! 2. uprobes, which read the text page they patch (`__copy_insn()`): a
//!    probe on an unfilled text page of a lazy binary; the program runs its
//!    real instructions;
//! 3. btrfs defragmentation, whose readahead has no file: only filled extents
//!    are cached;
//! 4. xfs with 16 KiB blocks (block size > page size): read() and fault
//!    events announce whole folios, so nothing unannounced is cached next to
//!    the requested page.
//!
//! Each case checks with cachestat(2) that no page outside the announced
//! (or filled) ranges is cached, and that a lazy mapping shows the filled
//! bytes afterwards.  Guards the cover letter's Design ("no byte is visible
//! unless an allowed event covered it"); v1 of the series gated per file and
//! per caller, and failed cases 0-4.

use crate::common::*;
use fanotify::consts::*;
use fanotify::{Range, Response};
use ltp::fs::{Fs, HSM_FILESYSTEMS};
use ltp::res::OrBrok;
use ltp::{tcheck, tconf, tfail, tinfo, tpass, Ctx, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One case: what it exercises, and the body.
type Case = (&'static str, fn(&Ctx));

const CASES: &[Case] = &[
    ("a file opened before the mark", early_fd),
    ("the event fd next to an unfilled range", event_fd),
    ("a uprobe on an unfilled text page", uprobe),
    ("btrfs defragmentation", btrfs_defrag),
    ("xfs with 16 KiB blocks", xfs_16k),
];

pub const TEST: Test = Test {
    name: "pre_fault_invariant",
    doc: "no unannounced page enters the page cache of a lazy inode: early fds, event fds, uprobes, btrfs defrag, xfs bs > ps",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_UPROBE_EVENTS",
        "CONFIG_CACHESTAT_SYSCALL",
        "CONFIG_EXT4_FS",
        "CONFIG_XFS_FS",
        "CONFIG_BTRFS_FS",
    ],
    needs_cmds: &["mkfs.ext4", "mkfs.xfs", "mkfs.btrfs"],
    timeout: Duration::from_secs(180),
    tags: &[
        ("cover-letter", "Design: no byte is visible unless an allowed event covered it"),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    tcnt: CASES.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

fn run_case(ctx: &Ctx, i: u32) {
    let (what, f) = CASES[i as usize];
    tinfo!("case {i}: {what}");
    f(ctx);
}

/// Mount a fresh `fs` under the scratch directory and run `f` on it.  Each
/// case runs in a process of its own and may end early (TCONF, TBROK)
/// without unmounting: the image and mount point are named by process.
fn on_fs(ctx: &Ctx, fs: Fs, f: impl FnOnce(&Path, &str)) {
    let scratch = ctx.mnt.join(format!("case-{}", std::process::id()));
    let dir = scratch.join(fs.name());
    let mounted = fs
        .mount(&scratch, &dir)
        .or_brok(&format!("{} setup", fs.name()));
    f(&dir, fs.name());
    drop(mounted);
}

/// Pages of the stubs of cases 0 and 1.
const STUB_PAGES: u64 = 64;

/// `f(stub, fs)` on each HSM filesystem, `stub` a fresh sparse file of
/// STUB_PAGES pages on it (cases 0 and 1).
fn with_stub_on_each_fs(ctx: &Ctx, f: impl Fn(&Path, &str)) {
    for &fs in HSM_FILESYSTEMS {
        on_fs(ctx, fs, |dir, fs| {
            let path = dir.join("stub");
            create_sparse_file(&path, STUB_PAGES * page_size());
            f(&path, fs)
        });
    }
}

/// The ranges of the events seen.
fn ranges(seen: &[Seen]) -> Vec<Range> {
    seen.iter().filter_map(|s| s.range).collect()
}

/// Check that nothing outside `ranges` is cached: the invariant itself.
fn check_cached(fs: &str, when: &str, f: &File, ranges: &[Range], size: u64) {
    let n = cached_outside(f, ranges, size);
    tcheck!(
        n == 0,
        "{fs}: {when}: {n} pages cached outside the announced ranges {ranges:?}"
    );
}

/// Fault `page` through a new lazy mapping of `f`: the bytes must be the
/// pattern, and a FAN_PRE_FAULT event must have covered the page.
fn check_fault(fs: &str, f: &File, pages: u64, page: u64, listener: &Listener) {
    let ps = page_size();
    let before = listener.seen().len();
    let m = Map::new(f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let d = m.read_page(page);
    match pattern_mismatch(page * ps, &d) {
        None => tpass!("{fs}: the lazy mapping shows the filled bytes of page {page}"),
        Some(i) => tfail!(
            "{fs}: page {page} of the lazy mapping has {:#x} at byte {i}, not the filled {:#x}",
            d[i],
            pattern_byte(page * ps + i as u64)
        ),
    }
    let covered = fault_events_covering(&listener.seen()[before..], page * ps) > 0;
    tcheck!(covered, "{fs}: a FAN_PRE_FAULT event covered page {page}");
}

/// Case 0: a file opened before the mark sends no events; it must not read
/// unfilled pages into the page cache.
fn early_fd(ctx: &Ctx) {
    with_stub_on_each_fs(ctx, |path, fs| {
        let ps = page_size();
        let pages = STUB_PAGES;
        let early = File::open(path).or_brok("open before the mark");
        let listener = Listener::filling(lazy_group(path, FAN_MARK_INODE));
        let late = File::open(path).or_brok("open after the mark");

        let mut b = vec![0u8; ps as usize];
        match early.read_at(&mut b, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => tpass!(
                "{fs}: read() of an unfilled page through a file opened before the mark fails with EIO"
            ),
            Ok(n) => tfail!(
                "{fs}: read() through a file opened before the mark returned {n} unfilled bytes without an event"
            ),
            Err(e) => tfail!("{fs}: read() through a file opened before the mark: {e}, expected EIO"),
        }
        // SAFETY: readahead(2) on a file we own; it only fills the page
        // cache.
        unsafe { libc::readahead(early.as_raw_fd(), 0, (pages * ps) as usize) };
        nix::fcntl::posix_fadvise(
            early.as_raw_fd(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        )
        .or_brok("POSIX_FADV_WILLNEED");
        let seen = listener.seen();
        tcheck!(
            seen.is_empty(),
            "{fs}: the file opened before the mark sent no events ({} seen)",
            seen.len()
        );
        check_cached(
            fs,
            "after read(), readahead(2) and WILLNEED through the early fd",
            &late,
            &ranges(&seen),
            pages * ps,
        );

        check_fault(fs, &late, pages, 2, &listener);
        check_cached(
            fs,
            "after the fault",
            &late,
            &ranges(&listener.seen()),
            pages * ps,
        );
    });
}

/// Case 1: the listener reads back, through its event fd, the range it just
/// filled; the page next to it is unfilled and must stay out of the cache.
fn event_fd(ctx: &Ctx) {
    with_stub_on_each_fs(ctx, |path, fs| {
        let ps = page_size();
        let pages = STUB_PAGES;
        let bad = Arc::new(Mutex::new(Vec::new()));
        let bad2 = bad.clone();
        let listener = Listener::start(
            lazy_group(path, FAN_MARK_INODE),
            Box::new(move |ctx| {
                if let Err(e) = ctx.fill_range() {
                    bad2.lock().unwrap().push(format!("fill: {e}"));
                    return Response::DenyErrno(libc::EIO);
                }
                if let (Some(fd), Some(r)) = (&ctx.event.fd, ctx.event.range()) {
                    let mut b = vec![0u8; r.count as usize];
                    match nix::sys::uio::pread(fd.as_fd(), &mut b, r.offset as i64) {
                        Ok(n) if pattern_mismatch(r.offset, &b[..n]).is_none() => {}
                        Ok(_) => bad2.lock().unwrap().push(format!("{r:?} read back wrong")),
                        Err(e) => bad2.lock().unwrap().push(format!("read back {r:?}: {e}")),
                    }
                }
                Response::Allow
            }),
        );
        let f = File::open(path).or_brok("open stub");
        let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
        // One page per fault event: the neighbour stays unfilled.
        m.advise(MmapAdvise::MADV_RANDOM)
            .or_brok("madvise(MADV_RANDOM)");
        let d = m.read_page(0);
        tcheck!(
            pattern_mismatch(0, &d).is_none(),
            "{fs}: page 0 shows the filled bytes"
        );
        let errs = bad.lock().unwrap().clone();
        tcheck!(
            errs.is_empty(),
            "{fs}: the listener filled and read back its range through the event fd {errs:?}"
        );
        check_cached(
            fs,
            "after the event fd read its filled range",
            &f,
            &ranges(&listener.seen()),
            pages * ps,
        );
        drop(m);
        check_fault(fs, &f, pages, 1, &listener);
    });
}

/// The file offset of the entry point of the ELF executable `elf` (64-bit,
/// little-endian): the page a uprobe on it patches.
fn elf_entry_offset(elf: &[u8]) -> Option<u64> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let entry = u64_at(0x18)?;
    let phoff = u64_at(0x20)? as usize;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        let (ptype, off, vaddr, filesz) = (
            u32_at(ph)?,
            u64_at(ph + 8)?,
            u64_at(ph + 16)?,
            u64_at(ph + 32)?,
        );
        (ptype == 1 && vaddr <= entry && entry < vaddr + filesz).then_some(entry - vaddr + off)
    })
}

/// The dynamic PMU of uprobes (perf_uprobe), whose type number the kernel
/// publishes here.
const UPROBE_PMU_TYPE: &str = "/sys/bus/event_source/devices/uprobe/type";
/// perf_event_open(2)'s flag (<linux/perf_event.h>; not in libc).
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// A uprobe, registered through perf_event_open(2) with the uprobe PMU (one
/// counting event per CPU, any process), removed on drop.  Not through
/// tracefs: enabling and disabling a trace event there also starts and stops
/// the sched tracepoints' comm recording, which live-patches scheduler code
/// (static calls), and that text poking crashed the TCG guest (an int3 taken
/// in ttwu_do_wakeup() while tracefs disabled the event).  A perf uprobe
/// patches no kernel text.
struct Uprobe {
    fds: Vec<std::os::fd::OwnedFd>,
}

impl Uprobe {
    fn add(path: &Path, off: u64) -> Uprobe {
        let ty: u32 = match std::fs::read_to_string(UPROBE_PMU_TYPE) {
            Ok(t) => t.trim().parse().or_brok("parse the uprobe PMU type"),
            Err(e) => tconf!("no {UPROBE_PMU_TYPE} (CONFIG_UPROBE_EVENTS): {e}"),
        };
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .or_brok("the program's path as a C string");
        // struct perf_event_attr, PERF_ATTR_SIZE_VER8 (136 bytes): type at
        // byte 0, size at 4, config at 8, config1 (uprobe_path) at 56,
        // config2 (probe_offset) at 64; everything else 0 (counting, enabled).
        let mut attr = [0u64; 17];
        attr[0] = u64::from(ty) | (136u64 << 32);
        attr[7] = cpath.as_ptr() as u64;
        attr[8] = off;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut fds = Vec::new();
        for cpu in 0..cpus {
            // SAFETY: attr is a valid perf_event_attr of the size it says, and
            // cpath outlives the call, which copies the path.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    attr.as_ptr(),
                    -1 as libc::pid_t,
                    cpu as libc::c_int,
                    -1 as libc::c_int,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                ltp::tbrok!(
                    "perf_event_open(uprobe {}:{off:#x}, cpu {cpu}): {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: a new descriptor that nothing else owns.
            fds.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) });
        }
        Uprobe { fds }
    }

    /// How many times the probe fired, on all CPUs.
    fn hits(&self) -> u64 {
        self.fds
            .iter()
            .map(|fd| {
                let mut b = [0u8; 8];
                match nix::unistd::read(fd.as_raw_fd(), &mut b) {
                    Ok(8) => u64::from_ne_bytes(b),
                    _ => 0,
                }
            })
            .sum()
    }
}

/// Case 2: a uprobe on the entry point of a lazy copy of a real program,
/// whose text page is not filled when exec maps it.
fn uprobe(ctx: &Ctx) {
    let prog = ["/bin/echo", "/usr/bin/echo"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| ltp::tbrok!("no echo program to copy"));
    let bytes = std::fs::read(&prog).or_brok("read the program");
    let off = elf_entry_offset(&bytes)
        .unwrap_or_else(|| ltp::tbrok!("{}: no entry point in a PT_LOAD segment", prog.display()));
    for &fs in HSM_FILESYSTEMS {
        on_fs(ctx, fs, |dir, fs| {
            let ps = page_size();
            let size = bytes.len() as u64;
            let source = Arc::new(bytes.clone());
            let path = dir.join("lazy-echo");
            create_sparse_file(&path, size);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .or_brok("chmod");
            let listener = Listener::copying(lazy_group(&path, FAN_MARK_INODE), source.clone());
            let probe = Uprobe::add(&path, off);
            tinfo!(
                "{fs}: uprobe on {} at file offset {off:#x} (page {})",
                path.display(),
                off / ps
            );
            let out = Command::new(&path)
                .arg("fpc-uprobe-ok")
                .output()
                .or_brok("run the lazy program");
            let hits = probe.hits();
            drop(probe);
            tcheck!(
                out.status.success() && out.stdout == b"fpc-uprobe-ok\n",
                "{fs}: the lazy program with a uprobe on its unfilled entry page ran its real instructions ({:?}, {:?})",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
            tinfo!("{fs}: the uprobe fired {hits} times");
            // Control: the same probe on a filled, unwatched copy fires, so
            // the lazy run above did register a probe that could fire.
            let plain = dir.join("plain-echo");
            std::fs::write(&plain, &bytes).or_brok("write a filled copy");
            std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755))
                .or_brok("chmod");
            let control = Uprobe::add(&plain, off);
            let ok = Command::new(&plain)
                .arg("fpc-uprobe-ok")
                .output()
                .or_brok("run the filled copy");
            let fired = control.hits();
            drop(control);
            tcheck!(
                ok.status.success() && fired >= 1,
                "{fs}: control: the same uprobe on a filled, unwatched copy fired {fired} times"
            );
            let f = File::open(&path).or_brok("open the lazy program");
            let seen = listener.seen();
            let n = cached_outside(&f, &ranges(&seen), size);
            tcheck!(
                n == 0,
                "{fs}: {n} pages of the lazy program cached outside the {} announced ranges",
                seen.len()
            );
            let mut content = vec![0u8; bytes.len()];
            // Read through the new fd (it announces): everything is filled.
            f.read_exact_at(&mut content, 0)
                .or_brok("read the program back");
            tcheck!(
                content == bytes,
                "{fs}: the lazy program reads back as the original"
            );
        });
    }
}

/// `struct btrfs_ioctl_defrag_range_args`.
#[repr(C)]
#[derive(Default)]
struct DefragRange {
    start: u64,
    len: u64,
    flags: u64,
    extent_thresh: u32,
    compress_type: u32,
    unused: [u32; 4],
}
/// `_IOW(BTRFS_IOCTL_MAGIC, 16, struct btrfs_ioctl_defrag_range_args)`.
const BTRFS_IOC_DEFRAG_RANGE: libc::c_ulong = 0x4030_9410;
const BTRFS_DEFRAG_RANGE_START_IO: u64 = 2;

/// Case 3: btrfs defragments the filled extents of a partly filled file;
/// its readahead, which has no file, must not read the unfilled rest.
/// Mainline refuses defragmentation through a file in pre-content mode
/// (EINVAL), so this defragments through a file opened before the mark,
/// which is what autodefrag and the other filesystem-internal readers are
/// like.
fn btrfs_defrag(ctx: &Ctx) {
    on_fs(ctx, Fs::Btrfs, |dir, fs| {
        let ps = page_size();
        let (pages, filled) = (64u64, 16u64);
        let path = dir.join("stub");
        create_sparse_file(&path, pages * ps);
        {
            // Before the mark: the filled part, one fsynced page at a time,
            // so that btrfs has small extents to defragment.
            let w = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .or_brok("open for writing");
            for p in 0..filled {
                w.write_all_at(&pattern(p * ps, ps as usize), p * ps)
                    .or_brok("write");
                w.sync_all().or_brok("fsync");
            }
        }
        drop_cache(&path);
        let early = File::open(&path).or_brok("open before the mark");
        let listener = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
        let f = File::open(&path).or_brok("open after the mark");
        let range = DefragRange {
            len: u64::MAX,
            flags: BTRFS_DEFRAG_RANGE_START_IO,
            ..Default::default()
        };
        // SAFETY: BTRFS_IOC_DEFRAG_RANGE reads `range`, live for the call.
        let r = unsafe { libc::ioctl(early.as_raw_fd(), BTRFS_IOC_DEFRAG_RANGE, &range) };
        if r != 0 {
            ltp::tbrok!(
                "BTRFS_IOC_DEFRAG_RANGE: {}",
                std::io::Error::last_os_error()
            );
        }
        tinfo!("{fs}: defragmented the file through a file opened before the mark");
        let mut ok_ranges = ranges(&listener.seen());
        ok_ranges.push(Range {
            offset: 0,
            count: filled * ps,
        });
        check_cached(
            fs,
            "after defragmenting the filled extents",
            &f,
            &ok_ranges,
            pages * ps,
        );
        check_fault(fs, &f, pages, filled + 4, &listener);
    });
}

/// Case 4: xfs with 16 KiB blocks: the page cache reads 16 KiB folios, so
/// events must announce whole folios.
fn xfs_16k(ctx: &Ctx) {
    const BS: u64 = 16384;
    let img = ctx.mnt.join("xfs16k.img");
    let dir = ctx.mnt.join("xfs16k");
    std::fs::create_dir_all(&dir).or_brok("mkdir");
    File::create(&img)
        .and_then(|f| f.set_len(512 << 20))
        .or_brok("create the image");
    ltp::fs::run(
        Command::new("mkfs.xfs")
            .args(["-f", "-q", "-b", "size=16384"])
            .arg(&img),
    )
    .or_brok("mkfs.xfs -b size=16384");
    let mounted = Command::new("mount")
        .args(["-t", "xfs", "-o", "loop"])
        .arg(&img)
        .arg(&dir)
        .output()
        .or_brok("mount");
    if !mounted.status.success() {
        tconf!(
            "this kernel cannot mount xfs with 16 KiB blocks: {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
    }
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _umount = Umount(&dir);
    let fs = "xfs-16k";
    let ps = page_size();
    let pages = 64u64;
    let path = dir.join("stub");
    create_sparse_file(&path, pages * ps);
    let listener = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let f = File::open(&path).or_brok("open after the mark");

    // read() of 100 bytes inside the second block.
    let off = BS + ps + 10;
    let mut b = [0u8; 100];
    f.read_exact_at(&mut b, off).or_brok("pread");
    tcheck!(
        pattern_mismatch(off, &b).is_none(),
        "{fs}: read() returns the filled bytes"
    );
    let seen = listener.seen();
    let want = Range {
        offset: BS,
        count: BS,
    };
    tcheck!(
        seen.iter()
            .any(|s| s.mask == FAN_PRE_ACCESS && s.range == Some(want)),
        "{fs}: the read's FAN_PRE_ACCESS announces the whole 16 KiB folio {want:?} (seen {:?})",
        ranges(&seen)
    );
    check_cached(fs, "after read()", &f, &ranges(&seen), pages * ps);

    // A fault on the second page of the third block, one folio per event.
    let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    m.advise(MmapAdvise::MADV_RANDOM)
        .or_brok("madvise(MADV_RANDOM)");
    let page = 2 * BS / ps + 1;
    let d = m.read_page(page);
    tcheck!(
        pattern_mismatch(page * ps, &d).is_none(),
        "{fs}: the fault shows the filled bytes"
    );
    let seen = listener.seen();
    let want = Range {
        offset: 2 * BS,
        count: BS,
    };
    tcheck!(
        seen.iter()
            .any(|s| s.mask == FAN_PRE_FAULT && s.range == Some(want)),
        "{fs}: the fault's FAN_PRE_FAULT announces the whole 16 KiB folio {want:?} (seen {:?})",
        ranges(&seen)
    );
    check_cached(fs, "after the fault", &f, &ranges(&seen), pages * ps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_offset_of_a_real_program() {
        let Ok(b) = std::fs::read("/bin/echo") else {
            return;
        };
        let off = elf_entry_offset(&b).expect("entry in a PT_LOAD segment");
        assert!(off < b.len() as u64);
    }

    #[test]
    fn entry_offset_rejects_garbage() {
        assert_eq!(elf_entry_offset(b"not an elf file at all"), None);
        assert_eq!(elf_entry_offset(b""), None);
    }
}
