//! pre_dir_freeze: FAN_PRE_DIR_ACCESS is sent before freeze protection, so
//! an HSM that populates a directory cannot deadlock with a freeze.  For
//! each call that creates or removes a name (mkdir, open(O_CREAT), unlink,
//! rename, symlink; one case each): the test filesystem is frozen
//! (fsfreeze --freeze), then a thread runs the call in an unpopulated
//! directory.  Its event must reach the listener while the filesystem is
//! still frozen (had the call taken freeze protection first, it would wait
//! for the thaw before sending it).  The listener then populates through
//! the event fd, and that write waits for the frozen filesystem (the
//! listener's thread sleeps in D state); then the test thaws.  Everything
//! completes: the call succeeds, the directory holds the listener's
//! entries and what the call made of them.
//!
//! Every wait is bounded (a hang is a TFAIL saying where), and the
//! filesystem is thawed before the case returns on every path; the cleanup
//! thaws too, after a timeout or a TBROK.
//!
//! Guards the cover letter's "Directory pre-content events" (sent before
//! the call takes a lock of the directory or freeze protection) and its
//! answer to objection 1 (the freeze deadlock) for directories (issue 16).

use super::freeze_util;
use super::pre_dir_util::*;
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::{tfail, tinfo, tpass, Ctx, Test};
use nix::errno::Errno;
use std::path::Path;
use std::sync::mpsc::channel;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_dir_freeze",
    doc: "FAN_PRE_DIR_ACCESS reaches the HSM while the filesystem is frozen (sent before freeze protection); the HSM's population waits for the thaw; no hang",
    needs_kconfigs: KCONFIGS,
    needs_cmds: &["fsfreeze"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    timeout: Duration::from_secs(120),
    tags: &[
        (
            "issue",
            "16: lazy directories (FAN_PRE_DIR_ACCESS), events before freeze protection",
        ),
        (
            "cover-letter",
            "Directory pre-content events: sent before the system call takes a lock of the directory or freeze protection",
        ),
        (
            "cover-letter",
            "Objections of the revert, answered: 1 (freeze deadlock), for directories",
        ),
    ],
    tcnt: ROWS.len() as u32,
    run_case: Some(run_case),
    // A TBROK, panic or timeout while the filesystem is frozen must not
    // leave it frozen.
    cleanup: Some(|ctx| freeze_util::thaw(&ctx.mnt)),
    ..Test::DEFAULT
};

type Remote = &'static [(&'static str, Kind)];

struct Row {
    what: &'static str,
    /// What the HSM creates through the event fd at the first event.
    remote: Remote,
    op: fn(&Path) -> Result<(), Errno>,
    /// The names the first event may have.
    first: &'static [&'static str],
    /// The directory afterwards.
    after: &'static [&'static str],
}

const ROWS: &[Row] = &[
    Row {
        what: "mkdir",
        remote: &[("e1", Kind::Dir), ("e2", Kind::File(100))],
        op: |d| {
            nix::unistd::mkdir(
                &d.join("newname"),
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            )
        },
        first: &["newname"],
        after: &["e1", "e2", "newname"],
    },
    Row {
        what: "open(O_CREAT)",
        remote: &[("e1", Kind::Dir), ("e2", Kind::File(100))],
        op: |d| {
            std::fs::File::create(d.join("newfile"))
                .map(drop)
                .map_err(errno)
        },
        first: &["newfile"],
        after: &["e1", "e2", "newfile"],
    },
    Row {
        what: "unlink",
        remote: &[("e1", Kind::Dir), ("victim", Kind::File(100))],
        op: |d| nix::unistd::unlink(&d.join("victim")),
        first: &["victim"],
        after: &["e1"],
    },
    Row {
        what: "rename",
        remote: &[("e1", Kind::Dir), ("a", Kind::File(100))],
        op: |d| std::fs::rename(d.join("a"), d.join("b")).map_err(errno),
        first: &["a", "b"],
        after: &["b", "e1"],
    },
    Row {
        what: "symlink",
        remote: &[("e1", Kind::Dir), ("e2", Kind::File(100))],
        op: |d| std::os::unix::fs::symlink("e2", d.join("link")).map_err(errno),
        first: &["link"],
        after: &["e1", "e2", "link"],
    },
];

/// How long the event may take to reach the listener while frozen.
const EVENT_WATCHDOG: Duration = Duration::from_secs(10);

fn run_case(ctx: &Ctx, i: u32) {
    let r = &ROWS[i as usize];
    // A case that broke or timed out while frozen is not thawed by the
    // cleanup, which runs after the last case.
    freeze_util::thaw(&ctx.mnt);
    let d = ctx.path(&format!("d{i}"));
    let id = empty_dir(&d);
    // The listener: at the first event it tells the test (its thread, the
    // name), then populates through the event fd, which waits while the
    // filesystem is frozen.
    let (tx, rx) = channel::<(i32, Option<String>)>();
    let mut first = true;
    let remote = r.remote;
    let l = DirListener::start(
        lazy_dir_group(&d),
        Box::new(move |h| {
            if !first {
                return Response::Allow;
            }
            first = false;
            let _ = tx.send((nix::unistd::gettid().as_raw(), h.event.name()));
            match h.populate(remote).and_then(|()| h.ignore()) {
                Ok(()) => Response::Allow,
                Err(e) => {
                    tfail!("listener: populate: {e}");
                    Response::DenyErrno(libc::EIO)
                }
            }
        }),
    );

    if let Err(e) = freeze_util::freeze(&ctx.mnt) {
        tfail!("{}: {e}", r.what);
        return;
    }
    // From here every return thaws first.
    let thawed = Thawed(&ctx.mnt);
    let (op, d2) = (r.op, d.clone());
    let c = call(move || op(&d2));
    match rx.recv_timeout(EVENT_WATCHDOG) {
        Ok((hsm_tid, name)) => {
            if name.as_deref().is_some_and(|n| r.first.contains(&n)) {
                tpass!(
                    "{}: its FAN_PRE_DIR_ACCESS (name {name:?}) reached the listener while the filesystem was frozen",
                    r.what
                );
            } else {
                tfail!(
                    "{}: an event reached the listener while frozen, but with the name {name:?} (want one of {:?})",
                    r.what,
                    r.first
                );
            }
            if freeze_util::blocked_in_kernel(hsm_tid) {
                tpass!(
                    "{}: the listener's population through the event fd waited for the frozen filesystem",
                    r.what
                );
            } else {
                tfail!(
                    "{}: the listener's population did not wait for the frozen filesystem (its thread never slept in D state)",
                    r.what
                );
            }
        }
        Err(_) => tfail!(
            "{}: no FAN_PRE_DIR_ACCESS reached the listener within {EVENT_WATCHDOG:?} of the call while the filesystem was frozen: the call took freeze protection before sending it (or sent none)",
            r.what
        ),
    }
    drop(thawed);
    let got = c.wait(WATCHDOG);
    let events = l.stop();
    match got {
        Some(Ok(())) => tpass!("{}: completed after the thaw", r.what),
        Some(Err(e)) => tfail!("{}: failed after the thaw: {e}", r.what),
        None => {
            tfail!(
                "{}: still waiting {WATCHDOG:?} after the thaw; after the group closed: {:?}",
                r.what,
                c.wait(WATCHDOG)
            );
            return;
        }
    }
    let problems: Vec<String> = events.iter().filter_map(|e| e.problem(id)).collect();
    if !problems.is_empty() {
        tfail!("{}: events: {}", r.what, problems.join("; "));
    }
    tinfo!(
        "{}: {} events, names {:?}",
        r.what,
        events.len(),
        events.iter().map(DirEvent::name).collect::<Vec<_>>()
    );
    let want = name_set(r.after);
    match list(&d) {
        Ok((n, _)) if n == want => tpass!("{}: the directory holds {n:?}", r.what),
        other => tfail!("{}: the directory holds {other:?}, want {want:?}", r.what),
    }
}

/// Thaws the filesystem when dropped.
struct Thawed<'a>(&'a Path);

impl Drop for Thawed<'_> {
    fn drop(&mut self) {
        freeze_util::thaw(self.0);
    }
}
