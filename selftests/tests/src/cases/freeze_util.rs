//! The freeze race of pre_fault_freeze and pre_fault_freeze_cross: a writer
//! write(2)s to a file of the filesystem being frozen from an unfilled lazy
//! mapping; once its FAN_PRE_FAULT event reaches the HSM, `fsfreeze
//! --freeze` runs, and then the HSM writes to the frozen filesystem (its
//! fill, or a log line) before it answers.  Not a test itself.
//!
//! The steps are ordered by channels, not by sleeps: the freeze starts when
//! the event has arrived, the HSM writes when the freeze has returned.
//! Timeouts are watchdogs only.

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What pre_fault_freeze and pre_fault_freeze_cross share: needs, the
/// filesystems, the feature probe, what they guard, the timeout.  Each
/// adds its name, doc, body and cleanup.
pub const TEST_BASE: Test = Test {
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    probe: Some(probe),
    tags: &[
        (
            "cover-letter",
            "Objections of the revert, answered: 1 (freeze deadlock)",
        ),
        (
            "cover-letter",
            "Design: reads and writes fault lazy buffers in outside their locks",
        ),
    ],
    needs_cmds: &["fsfreeze"],
    timeout: Duration::from_secs(300),
    ..Test::DEFAULT
};

/// Races per filesystem.
pub const ITERATIONS: usize = 50;

/// Does the kernel have lazy marks at all?  `lazy_group()` TCONFs on the
/// base kernel (no FAN_PRE_FAULT); after this probe, a TCONF is a TFAIL.
fn probe(ctx: &Ctx) -> Result<(), String> {
    let probe = ctx.path("probe");
    create_sparse_file(&probe, page_size());
    drop(lazy_group(&probe, FAN_MARK_INODE));
    Ok(())
}

/// Pages of each lazy file the writer copies.
const PAGES: u64 = 16;
/// How long `fsfreeze --freeze` may take before it counts as blocked.
const FREEZE_WATCHDOG: Duration = Duration::from_secs(10);
/// How long a writer may take once the filesystem is thawed.
const WRITER_WATCHDOG: Duration = Duration::from_secs(30);

/// Where the race runs.
pub struct Race<'a> {
    /// Directory of the lazy files (the HSM filesystem).
    pub lazy_dir: &'a Path,
    /// Directory of the files the writer writes (on `freeze_mnt`).
    pub dest_dir: &'a Path,
    /// Mount point of the filesystem that is frozen.
    pub freeze_mnt: &'a Path,
    /// A file on `freeze_mnt` the HSM appends a line to before each fill,
    /// when its fills go to another filesystem.
    pub log: Option<&'a Path>,
}

/// fsfreeze --unfreeze; a filesystem that is not frozen is left alone.
pub fn thaw(mnt: &Path) {
    let _ = Command::new("fsfreeze").arg("--unfreeze").arg(mnt).output();
}

/// Wait for `child` at most `limit`: its success, or None if it still runs.
fn wait_for(child: &mut Child, limit: Duration) -> Option<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().or_brok("wait for fsfreeze") {
            return Some(st.success());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// fsfreeze --freeze, bounded by the freeze watchdog: what went wrong if the
/// filesystem is not frozen when it returns (a freeze still blocked is
/// waited for, then thawed, so that nothing stays frozen).
pub fn freeze(mnt: &Path) -> Result<(), String> {
    let mut fsfreeze = Command::new("fsfreeze")
        .arg("--freeze")
        .arg(mnt)
        .stderr(Stdio::piped())
        .spawn()
        .or_brok("run fsfreeze");
    match wait_for(&mut fsfreeze, FREEZE_WATCHDOG) {
        Some(true) => Ok(()),
        Some(false) => {
            let out = fsfreeze.wait_with_output().or_brok("fsfreeze output");
            Err(format!(
                "fsfreeze --freeze failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        None => {
            let _ = fsfreeze.kill();
            let _ = fsfreeze.wait();
            thaw(mnt);
            Err(format!(
                "fsfreeze --freeze still blocked after {FREEZE_WATCHDOG:?}"
            ))
        }
    }
}

/// Has thread `tid` of this process gone to sleep uninterruptibly (state D:
/// its write waits for the frozen filesystem)?  Polled up to the watchdog.
pub fn blocked_in_kernel(tid: i32) -> bool {
    let path = format!("/proc/self/task/{tid}/stat");
    let deadline = Instant::now() + FREEZE_WATCHDOG;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(&path).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        if let Some(state) = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
        {
            if state == "D" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Run `iterations` races; TPASS/TFAIL on: no hang, the filesystem froze
/// every time, every write has the filled bytes.
pub fn run(r: &Race, iterations: usize) {
    let ps = page_size();
    let (mut froze, mut blocked, mut refused, mut bad) = (0, 0, 0, 0);
    let mut hsm_waited = 0;
    for i in 0..iterations {
        let stub = r.lazy_dir.join(format!("stub{i}"));
        create_sparse_file(&stub, PAGES * ps);
        // The HSM: at the writer's first fault event it tells the test, waits
        // until the freeze returned, writes to the frozen filesystem, fills.
        let (ev_tx, ev_rx) = channel::<i32>();
        let (go_tx, go_rx) = channel::<bool>();
        let log: Option<PathBuf> = r.log.map(Path::to_path_buf);
        let mut first = true;
        let listener = Listener::start(
            lazy_group(&stub, FAN_MARK_INODE),
            Box::new(move |ctx| {
                if first && ctx.event.mask == FAN_PRE_FAULT {
                    first = false;
                    let _ = ev_tx.send(nix::unistd::gettid().as_raw());
                    let write_frozen = go_rx.recv().unwrap_or(false);
                    if let (true, Some(log)) = (write_frozen, &log) {
                        let line = format!("fill {:?}\n", ctx.event.range());
                        let res = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(log)
                            .and_then(|mut f| f.write_all(line.as_bytes()));
                        if let Err(e) = res {
                            tfail!("HSM: log line: {e}");
                        }
                    }
                }
                match ctx.fill_range() {
                    Ok(()) => Response::Allow,
                    Err(_) => Response::DenyErrno(libc::EIO),
                }
            }),
        );
        let dest = r.dest_dir.join(format!("dest{i}"));
        let (s2, d2) = (stub.clone(), dest.clone());
        let writer = std::thread::spawn(move || -> Result<(), String> {
            let f = std::fs::File::open(&s2).map_err(|e| e.to_string())?;
            let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
                .map_err(|e| e.to_string())?;
            let out = std::fs::File::create(&d2).map_err(|e| e.to_string())?;
            out.write_all_at(m.as_slice(), 0).map_err(|e| e.to_string())
        });

        let hsm_tid = match ev_rx.recv_timeout(WRITER_WATCHDOG) {
            Ok(tid) => tid,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                tfail!("iteration {i}: the writer's FAN_PRE_FAULT never reached the HSM");
                let _ = go_tx.send(false);
                drop(listener);
                break;
            }
        };
        let mut fsfreeze = Command::new("fsfreeze")
            .arg("--freeze")
            .arg(r.freeze_mnt)
            .stderr(Stdio::piped())
            .spawn()
            .or_brok("run fsfreeze");
        match wait_for(&mut fsfreeze, FREEZE_WATCHDOG) {
            Some(true) => {
                froze += 1;
                // The HSM now writes to the frozen filesystem: it waits there
                // until the thaw, and so does the writer, if it must.
                let _ = go_tx.send(true);
                if blocked_in_kernel(hsm_tid) {
                    hsm_waited += 1;
                }
                thaw(r.freeze_mnt);
            }
            Some(false) => {
                refused += 1;
                let out = fsfreeze.wait_with_output().or_brok("fsfreeze output");
                tinfo!(
                    "iteration {i}: fsfreeze --freeze failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                let _ = go_tx.send(true);
            }
            None => {
                // The freeze waits for the writer, which waits for the HSM:
                // let the HSM fill without writing to the frozen filesystem,
                // so that everything can finish.
                blocked += 1;
                tfail!(
                    "iteration {i}: fsfreeze --freeze still blocked after {FREEZE_WATCHDOG:?}: \
                     the writer waits for its fault event holding the freeze protection"
                );
                let _ = go_tx.send(false);
                let _ = fsfreeze.wait();
                thaw(r.freeze_mnt);
            }
        }
        let stop = blocked > 0;
        let deadline = Instant::now() + WRITER_WATCHDOG;
        while !writer.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !writer.is_finished() {
            tfail!("iteration {i}: write(2) from the lazy mapping hung after the thaw");
            thaw(r.freeze_mnt);
            break;
        }
        match writer.join() {
            Ok(Ok(())) => {
                let got = std::fs::read(&dest).or_brok("read the written file");
                if got.len() != (PAGES * ps) as usize || pattern_mismatch(0, &got).is_some() {
                    bad += 1;
                    tinfo!("iteration {i}: the written file does not have the filled bytes");
                }
            }
            other => {
                bad += 1;
                tinfo!("iteration {i}: writer: {other:?}");
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&stub);
        let _ = std::fs::remove_file(&dest);
        if stop {
            tinfo!("stopping after the first blocked freeze: every further iteration would block the same way");
            break;
        }
    }
    if froze > 0 && hsm_waited == froze {
        tpass!("the HSM's write waited for the frozen filesystem in all {froze} frozen iterations");
    } else {
        tfail!("the HSM's write waited for the frozen filesystem in only {hsm_waited} of {froze} frozen iterations");
    }
    if froze == iterations {
        tpass!("the filesystem froze in all {iterations} iterations, with the writer's fault event pending");
    } else {
        tfail!("the filesystem froze in {froze} of {iterations} iterations ({refused} refused, {blocked} blocked)");
    }
    if bad == 0 && blocked == 0 && froze + refused == iterations {
        tpass!("every write(2) from a lazy mapping completed with the filled bytes, no hang");
    } else if bad > 0 {
        tfail!("{bad} writes failed or wrote wrong bytes");
    }
}
