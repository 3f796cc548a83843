//! pre_dir_pathless: path-less lookups (the kernel's lookup_one*() helpers,
//! as overlayfs uses them on its layers) cannot wait for an HSM: into a
//! directory that would send FAN_PRE_DIR_ACCESS (an inode or filesystem
//! mark selects it and it is not ignored) they fail with EPERM; a populated
//! (ignored) directory works normally; mount marks do not see them.  An
//! overlay is mounted with lowerdir = an unpopulated directory of the test
//! filesystem, upperdir and workdir on a tmpfs.  Cases:
//! - 0: inode mark on the lower directory: stat of a name through the
//!   overlay fails with EPERM;
//! - 1: the same with a filesystem mark of the test filesystem;
//! - 2: getdents64 of the overlay root: overlayfs reads the lower directory
//!   itself (iterate_dir() from the kernel, perhaps holding the overlay
//!   directory's lock), which must not wait for the HSM: EPERM without an
//!   event while the lower is unpopulated; listing the lower's own path
//!   (a system call) sends the event, the HSM populates and ignores it, and
//!   a new overlay then lists it complete, without an event;
//! - 3: stat through the overlay fails with EPERM; a stat of the lower's
//!   own path sends a normal event, the listener populates and ignores the
//!   directory; the same stat through a new overlay mount (overlayfs caches
//!   lookups) finds the file with its bytes;
//! - 4: a group with only a mount mark of the test filesystem: the lookup
//!   through the overlay is not refused (ENOENT), while a path walk on the
//!   lower's own path does send its event (the mark selects the directory).
//!
//! Guards the cover letter's "Directory pre-content events" (path-less
//! lookups) (issue 16).

use super::pre_dir_util::{self, *};
use crate::common::pattern;
use fanotify::consts::*;
use fanotify::Response;
use ltp::fs::{Mounted, HSM_FILESYSTEMS};
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags, MsFlags};
use std::path::PathBuf;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_dir_pathless",
    doc: "overlayfs over a lazy lower directory: path-less lookups and overlayfs's own readdir EPERM while unpopulated (inode, filesystem mark), remount after populate+ignore works; mount marks do not refuse",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_OVERLAY_FS",
        "CONFIG_TMPFS",
    ],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    timeout: Duration::from_secs(120),
    tags: &[
        (
            "issue",
            "16: lazy directories (FAN_PRE_DIR_ACCESS), path-less lookups",
        ),
        (
            "cover-letter",
            "Directory pre-content events: path-less lookups (overlayfs layers, nfsd) fail with EPERM; mount marks do not see them",
        ),
    ],
    tcnt: CASES,
    run_case: Some(run_case),
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const CASES: u32 = 5;
const SIZE: u64 = 4099;
const LOWER: &[(&str, Kind)] = &[("name", Kind::File(SIZE)), ("other", Kind::Dir)];

/// FAN_PRE_DIR_ACCESS (pre_dir_util::probe) and overlayfs: a read-only
/// overlay of two directories of the test filesystem must mount.
fn probe(ctx: &Ctx) -> Result<(), String> {
    pre_dir_util::probe(ctx)?;
    let dirs = ["ovl_probe_l1", "ovl_probe_l2", "ovl_probe_m"].map(|n| ctx.path(n));
    for d in &dirs {
        std::fs::create_dir(d).or_brok("mkdir for the overlay probe");
    }
    let opts = format!("lowerdir={}:{}", dirs[0].display(), dirs[1].display());
    let r = nix::mount::mount(
        Some("overlay"),
        &dirs[2],
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    );
    if r.is_ok() {
        umount2(&dirs[2], MntFlags::MNT_DETACH).or_brok("umount the probe overlay");
    }
    for d in &dirs {
        std::fs::remove_dir(d).or_brok("rmdir after the overlay probe");
    }
    r.map_err(|e| format!("overlayfs cannot be mounted: {e}"))
}

/// Unmount what a case left (also from a fresh process).
fn cleanup(ctx: &Ctx) {
    for i in 0..CASES {
        let t = ctx.path(&format!("ovl{i}"));
        for m in ["merged", "merged2"] {
            let _ = umount2(&t.join(m), MntFlags::MNT_DETACH);
        }
        let _ = umount2(&t, MntFlags::MNT_DETACH);
    }
}

/// The layers of case `i`: the lower directory on the test filesystem, the
/// rest on a tmpfs of its own (two upper/work/merged sets, for a remount).
struct Layers {
    lower: PathBuf,
    tmp: PathBuf,
    _tmpfs: Mounted,
}

impl Layers {
    fn new(ctx: &Ctx, i: u32) -> (Self, DirId) {
        let lower = ctx.path(&format!("lower{i}"));
        let id = empty_dir(&lower);
        let tmp = ctx.path(&format!("ovl{i}"));
        let tmpfs = Fs::Tmpfs.mount(&ctx.mnt, &tmp).or_brok("mount a tmpfs");
        for d in ["upper", "work", "merged", "upper2", "work2", "merged2"] {
            std::fs::create_dir(tmp.join(d)).or_brok("mkdir on the tmpfs");
        }
        (
            Layers {
                lower,
                tmp,
                _tmpfs: tmpfs,
            },
            id,
        )
    }

    /// Mount overlay number `n` (0 or 1) over the lower directory.
    fn mount(&self, n: usize) -> Result<Overlay, Errno> {
        let sfx = if n == 0 { "" } else { "2" };
        let merged = self.tmp.join(format!("merged{sfx}"));
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.tmp.join(format!("upper{sfx}")).display(),
            self.tmp.join(format!("work{sfx}")).display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )?;
        Ok(Overlay(merged))
    }
}

/// A mounted overlay, unmounted (lazily) on drop.
struct Overlay(PathBuf);

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Mount the overlay or end the case with a TFAIL saying so.
fn mount_or_fail(l: &Layers, n: usize, what: &str) -> Option<Overlay> {
    match l.mount(n) {
        Ok(o) => Some(o),
        Err(e) => {
            tfail!("{what}: mounting an overlay over the lazy lower directory failed: {e}");
            None
        }
    }
}

fn stat_size(p: PathBuf) -> impl FnOnce() -> Result<u64, Errno> + Send + 'static {
    move || nix::sys::stat::stat(&p).map(|st| st.st_size as u64)
}

fn summary(evs: &[DirEvent]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "mask {:#x} name {:?} fd {:?} thread {}",
                e.mask,
                e.name(),
                e.fd,
                e.pid
            )
        })
        .collect()
}

fn run_case(ctx: &Ctx, i: u32) {
    let (layers, id) = Layers::new(ctx, i);
    match i {
        0 | 1 => refused(ctx, &layers, i),
        2 => listing(&layers, id),
        3 => remount(&layers, id),
        _ => mount_mark(ctx, &layers, id),
    }
}

/// Cases 0 and 1: EPERM through the overlay (inode / filesystem mark).
fn refused(ctx: &Ctx, layers: &Layers, i: u32) {
    let g = dir_group();
    let what = if i == 0 {
        mark_dir(&g, FAN_MARK_INODE, &layers.lower);
        "inode mark"
    } else {
        mark_dir(&g, FAN_MARK_FILESYSTEM, &ctx.mnt);
        "filesystem mark"
    };
    let l = DirListener::start(g, Box::new(|_| Response::Allow));
    let Some(ovl) = mount_or_fail(layers, 0, what) else {
        return;
    };
    let Some((got, evs, _)) = step(&l, what, stat_size(ovl.0.join("name"))) else {
        return;
    };
    tinfo!(
        "{what}: events during the lookup through the overlay: {:?}",
        summary(&evs)
    );
    if got == Err(Errno::EPERM) {
        tpass!("{what}: a lookup through the overlay into the unpopulated, unignored lower directory failed with EPERM");
    } else {
        tfail!("{what}: a lookup through the overlay into the unpopulated lower directory gave {got:?}, want EPERM");
    }
    drop(ovl);
    drop(l);
}

/// Case 2: listing the overlay root.
fn listing(layers: &Layers, id: DirId) {
    let l = DirListener::populating(lazy_dir_group(&layers.lower), LOWER, true, Response::Allow);
    let Some(ovl) = mount_or_fail(layers, 0, "listing") else {
        return;
    };
    let merged = ovl.0.clone();
    let Some((got, evs, _)) = step(&l, "listing the overlay root", move || list(&merged)) else {
        return;
    };
    drop(ovl);
    if matches!(got, Err(Errno::EPERM)) && evs.is_empty() {
        tpass!("listing the overlay root (overlayfs reads the unpopulated lower directory itself, perhaps under its own locks) failed with EPERM, without an event");
    } else {
        tfail!(
            "listing the overlay root before the lower is populated gave {got:?} and {} events ({:?}), want EPERM and none",
            evs.len(),
            summary(&evs)
        );
    }
    // The lower's own path: a system call, which waits for the listener.
    let lower = layers.lower.clone();
    let Some((got, evs, tid)) = step(&l, "listing the lower directory", move || list(&lower))
    else {
        return;
    };
    let want = name_set(&["name", "other"]);
    let good = evs
        .iter()
        .filter(|e| e.name().is_none() && e.problem(id).is_none() && e.pid == tid)
        .count();
    match &got {
        Ok((n, _)) if *n == want && good > 0 => tpass!(
            "listing the lower's own path sent a FAN_PRE_DIR_ACCESS without a name and listed what the HSM made: {n:?}"
        ),
        other => tfail!(
            "listing the lower's own path gave {other:?} with events {:?}, want {want:?} after an event without a name",
            summary(&evs)
        ),
    }
    // A new overlay (overlayfs caches what it read) over the populated,
    // ignored lower directory.
    let Some(ovl) = mount_or_fail(layers, 1, "listing after populating") else {
        return;
    };
    let merged = ovl.0.clone();
    let Some((got, evs, _)) = step(&l, "listing a new overlay", move || list(&merged)) else {
        return;
    };
    match &got {
        Ok((n, _)) if *n == want && evs.is_empty() => {
            tpass!("the populated, ignored lower directory lists through a new overlay: {n:?}, no event")
        }
        other => tfail!(
            "listing a new overlay over the populated lower gave {other:?} with events {:?}, want {want:?} and none",
            summary(&evs)
        ),
    }
    drop(ovl);
    drop(l);
}

/// Case 3: EPERM, then populated and ignored, then a new overlay works.
fn remount(layers: &Layers, id: DirId) {
    const NAME: &[(&str, Kind)] = &[("name", Kind::File(SIZE))];
    let l = DirListener::populating(lazy_dir_group(&layers.lower), NAME, true, Response::Allow);
    let Some(ovl) = mount_or_fail(layers, 0, "before populating") else {
        return;
    };
    let Some((got, _, _)) = step(
        &l,
        "stat through the overlay",
        stat_size(ovl.0.join("name")),
    ) else {
        return;
    };
    if got == Err(Errno::EPERM) {
        tpass!("before populating: the lookup through the overlay failed with EPERM");
    } else {
        tfail!("before populating: the lookup through the overlay gave {got:?}, want EPERM");
    }
    let Some((got, evs, tid)) = step(
        &l,
        "stat of the lower's own path",
        stat_size(layers.lower.join("name")),
    ) else {
        return;
    };
    let problems = events_problems(
        &evs,
        id,
        tid,
        Want::Names {
            required: &["name"],
            optional: &[],
        },
    );
    if got == Ok(SIZE) && problems.is_empty() {
        tpass!("a stat of the lower's own path sent its event; the listener populated and ignored the directory");
    } else {
        tfail!("a stat of the lower's own path gave {got:?}; events: {problems:?}");
    }
    drop(ovl);
    let Some(ovl) = mount_or_fail(layers, 1, "after populating") else {
        return;
    };
    let p = ovl.0.join("name");
    let Some((got, evs, _)) = step(&l, "read through a new overlay", move || {
        std::fs::read(&p).map_err(errno)
    }) else {
        return;
    };
    match got {
        Ok(b) if b == pattern(0, SIZE as usize) => tpass!(
            "after populating and ignoring: the file through a new overlay mount has its {SIZE} bytes ({} events)",
            evs.len()
        ),
        Ok(b) => tfail!(
            "after populating and ignoring: {} bytes through a new overlay, not the listener's {SIZE}",
            b.len()
        ),
        Err(e) => tfail!("after populating and ignoring: reading through a new overlay mount failed with {e}"),
    }
    drop(ovl);
    drop(l);
}

/// Case 4: a mount mark does not refuse path-less lookups.
fn mount_mark(ctx: &Ctx, layers: &Layers, id: DirId) {
    let g = dir_group();
    mark_dir(&g, FAN_MARK_MOUNT, &ctx.mnt);
    let l = DirListener::start(g, Box::new(|_| Response::Allow));
    let Some(ovl) = mount_or_fail(layers, 0, "mount mark") else {
        return;
    };
    let Some((got, evs, _)) = step(
        &l,
        "mount mark: stat through the overlay",
        stat_size(ovl.0.join("absent")),
    ) else {
        return;
    };
    if got == Err(Errno::ENOENT) {
        tpass!(
            "mount mark: a lookup through the overlay is not refused (ENOENT; {} events)",
            evs.len()
        );
    } else {
        tfail!("mount mark: a lookup through the overlay gave {got:?}, want ENOENT (not refused)");
    }
    let Some((got, evs, tid)) = step(
        &l,
        "mount mark: stat of the lower's own path",
        stat_size(layers.lower.join("absent2")),
    ) else {
        return;
    };
    let problems = events_problems(
        &evs,
        id,
        tid,
        Want::Names {
            required: &["absent2"],
            optional: &[],
        },
    );
    if got == Err(Errno::ENOENT) && problems.is_empty() {
        tpass!("mount mark: a path walk into the lower directory sends its event (the mark selects it)");
    } else {
        tfail!("mount mark: a stat of the lower's own path gave {got:?}; events: {problems:?}");
    }
    drop(ovl);
    drop(l);
}
