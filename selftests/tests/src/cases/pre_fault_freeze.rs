//! pre_fault_freeze: the syzbot freeze deadlock of the reverted 2024 hook
//! (the cover letter's objection 1) cannot happen.  A task write(2)s to a file of
//! the HSM filesystem from an unpopulated lazy mapping (so it faults while
//! holding the filesystem's freeze protection) while `fsfreeze --freeze`
//! runs and the HSM must fill: 50 iterations with a watchdog.  The series
//! refuses to freeze a filesystem with FAN_PRE_FAULT marks (EBUSY) and to add
//! such marks to a frozen one, so every write completes with the right bytes
//! and fsfreeze fails cleanly.  Controls: without the lazy marks (closed
//! group, or mainline FAN_PRE_ACCESS marks only) the filesystem freezes.
//!
//! Guards the cover letter's answer to objection 1 (freeze deadlock).

use crate::common::*;
use fanotify::consts::*;
use fanotify::{Fanotify, Response};
use ltp::res::OrBrok;
use ltp::{texp_fail, tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "pre_fault_freeze",
    doc: "write(2) from a lazy mapping racing fsfreeze never hangs (freeze refused while FAN_PRE_FAULT marks exist)",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_PROVE_LOCKING"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        ("cover-letter", "Objections of the revert, answered: 1 (freeze deadlock)"),
        ("cover-letter", "Known limitations and open questions: freezing is refused while FS_PRE_FAULT watches exist"),
    ],
    needs_cmds: &["fsfreeze"],
    timeout: Duration::from_secs(240),
    run,
    // A TBROK, panic or timeout while the filesystem is frozen must not
    // leave it frozen.
    cleanup: Some(|ctx| thaw(&ctx.mnt)),
    ..Test::DEFAULT
};

const ITERATIONS: usize = 50;
const PAGES: u64 = 16;

/// fsfreeze --freeze; Ok(()) if the filesystem froze.
fn freeze(mnt: &Path) -> Result<(), String> {
    let out = Command::new("fsfreeze")
        .arg("--freeze")
        .arg(mnt)
        .output()
        .or_brok("run fsfreeze");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// fsfreeze --unfreeze; a filesystem that is not frozen is left alone.
fn thaw(mnt: &Path) {
    let _ = Command::new("fsfreeze").arg("--unfreeze").arg(mnt).output();
}

fn run(ctx: &Ctx) {
    // Does the kernel have lazy marks at all?  (TCONF on the base kernel.)
    let probe = ctx.path("probe");
    create_sparse_file(&probe, page_size());
    drop(lazy_group(&probe, FAN_MARK_INODE));

    let mut hung = 0;
    let mut froze = 0;
    let mut bad = 0;
    for i in 0..ITERATIONS {
        let stub = ctx.path(&format!("stub{i}"));
        create_sparse_file(&stub, PAGES * page_size());
        let group = lazy_group(&stub, FAN_MARK_INODE);
        // A slow HSM: the writer sits in its fault while fsfreeze runs.
        let l = Listener::start(
            group,
            Box::new(|ctx| {
                std::thread::sleep(Duration::from_millis(30));
                match ctx.fill_range() {
                    Ok(()) => Response::Allow,
                    Err(_) => Response::DenyErrno(libc::EIO),
                }
            }),
        );
        let dest = ctx.path(&format!("dest{i}"));
        let (s2, d2) = (stub.clone(), dest.clone());
        let writer = std::thread::spawn(move || -> Result<(), String> {
            let f = std::fs::File::open(&s2).map_err(|e| e.to_string())?;
            let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
                .map_err(|e| e.to_string())?;
            let out = std::fs::File::create(&d2).map_err(|e| e.to_string())?;
            out.write_all_at(m.as_slice(), 0).map_err(|e| e.to_string())
        });
        std::thread::sleep(Duration::from_millis(5));
        match freeze(&ctx.mnt) {
            Ok(()) => {
                froze += 1;
                // Thaw at once so a writer blocked by the freeze can finish.
                thaw(&ctx.mnt);
            }
            Err(msg) if msg.contains("busy") => {}
            Err(msg) => tinfo!("iteration {i}: fsfreeze: {msg}"),
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !writer.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !writer.is_finished() {
            hung += 1;
            tfail!("iteration {i}: write(2) from the lazy mapping hung (thawing to recover)");
            thaw(&ctx.mnt);
            break;
        }
        match writer.join() {
            Ok(Ok(())) => {
                let got = std::fs::read(&dest).or_brok("read dest");
                if pattern_mismatch(0, &got).is_some()
                    || got.len() != (PAGES * page_size()) as usize
                {
                    bad += 1;
                }
            }
            other => {
                bad += 1;
                tinfo!("iteration {i}: writer: {other:?}");
            }
        }
        drop(l);
    }
    if hung == 0 {
        tpass!("{ITERATIONS} write(2)-from-lazy-mapping vs fsfreeze races: no hang");
    }
    if froze == 0 {
        tpass!("fsfreeze was refused every time while FAN_PRE_FAULT marks existed");
    } else {
        tfail!("fsfreeze froze a filesystem with FAN_PRE_FAULT marks {froze} times");
    }
    if bad == 0 {
        tpass!("every write completed with the filled bytes");
    } else {
        tfail!("{bad} writes failed or wrote wrong bytes");
    }

    // Adding a lazy mark to a frozen filesystem is refused, and a mainline
    // FAN_PRE_ACCESS mark does not prevent freezing.
    let g = Fanotify::init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, libc::O_RDWR as u32)
        .or_brok("fanotify_init");
    g.mark(FAN_MARK_ADD, FAN_PRE_ACCESS, &probe)
        .or_brok("FAN_PRE_ACCESS mark");
    match freeze(&ctx.mnt) {
        Ok(()) => {
            tpass!("control: FAN_PRE_ACCESS-only marks do not prevent freezing");
            let g2 = Fanotify::init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, libc::O_RDWR as u32)
                .or_brok("fanotify_init");
            texp_fail!(
                g2.mark(FAN_MARK_ADD, FAN_PRE_ACCESS | FAN_PRE_FAULT, &probe),
                Errno::EBUSY,
                "FAN_PRE_FAULT mark on a frozen filesystem"
            );
            thaw(&ctx.mnt);
        }
        Err(msg) => tfail!("control: freezing with FAN_PRE_ACCESS marks only failed: {msg}"),
    }
    drop(g);
    match freeze(&ctx.mnt) {
        Ok(()) => {
            tpass!("control: after the lazy groups closed, the filesystem freezes");
            thaw(&ctx.mnt);
        }
        Err(msg) => tfail!("control: freeze after closing every group failed: {msg}"),
    }
}
