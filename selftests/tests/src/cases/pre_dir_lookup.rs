//! pre_dir_lookup: what FAN_PRE_DIR_ACCESS reports, system call by system
//! call, and that the call sees what the HSM created through the event fd.
//!
//! Each row (cases 0-22) makes a fresh, empty directory (never looked up in,
//! so no name of it is in the dcache), marks it (inode mark, a group asking
//! for O_RDWR event fds and reporting tids) and runs one system call on a
//! thread of its own.  The listener populates the directory through the
//! event fd at the first event (openat(O_CREAT | O_EXCL), mkdirat) and
//! answers; the row's other events it only answers.  Checked:
//! - every event: the mask exactly FAN_PRE_DIR_ACCESS; a NAME record with
//!   the looked-up name (one event per name: stat, open, openat from a
//!   directory fd, access, open(O_CREAT), mkdir, mknod, unlink, rmdir,
//!   rename's two names, symlink, link's two names), none for the open of
//!   a directory and for getdents64;
//!   no other record; the fd is the directory itself (st_dev, st_ino),
//!   O_RDONLY; sent by the calling thread;
//! - the call's result proves it saw the HSM's entries: stat gives their
//!   size, open reads their bytes, open(O_CREAT) opens the HSM's file
//!   rather than creating an empty one, mkdir, mknod and symlink over an
//!   HSM name fail with EEXIST, unlink, rmdir, rename and link succeed,
//!   getdents64 lists them; with a new name mkdir, open(O_CREAT) and
//!   symlink create it next to the HSM's entries;
//! - opening a directory sends an event (btrfs lists only what a directory
//!   held at its open), and getdents64 one on every call until the
//!   directory is ignored (an open and two calls to reach the end: three
//!   events), one when the HSM ignores the directory at its first event;
//! - FAN_DENY fails the call with EPERM, FAN_DENY_ERRNO(EIO / ENOSPC) with
//!   that errno.
//!
//! Case 23, the dcache and the ignore mark: a name already looked up as
//! positive (the HSM's file) sends nothing; a name over NAME_MAX is refused
//! with ENAMETOOLONG before an event; a walk from an O_PATH fd of the
//! directory sends its event (only event fds do not); a negative one (a name the HSM
//! does not have) sends the event again while the directory is not opted
//! out (the HSM's own population leaves negative dentries on the way: the
//! new name of a rename, before the rename); once the directory has the
//! ignore mark (FAN_MARK_IGNORE |
//! FAN_MARK_IGNORED_SURV_MODIFY), new names (stat, open(O_CREAT), mkdir,
//! rename, symlink, link, unlink, rmdir, a lookup of a name that does not
//! exist: ENOENT) and getdents64 send none.
//!
//! Case 24, walks that start at the event fd send nothing: inside its
//! handler the listener runs fstatat, mkdirat, a mark of the new
//! subdirectory (marked too), openat(O_CREAT), symlinkat, linkat, renameat,
//! unlinkat of two-component paths, and getdents64 of the event fd (rewound
//! first: btrfs lists what a directory held when it was opened), while it
//! keeps reading the group: an event then is "an event from a walk starting
//! at the event fd" (a TFAIL; it is allowed, so that the single-threaded
//! listener cannot deadlock on itself).  The same lookup from a directory
//! fd the test opened does send its event.
//!
//! An absence is proved by a barrier, not a sleep: the event waits for its
//! answer, and the listener records it before answering, so every event a
//! call sent is recorded when it returns.
//!
//! Guards the cover letter's "Directory pre-content events" (issue 16).

use super::pre_dir_util::*;
use crate::common::pattern;
use fanotify::consts::*;
use fanotify::Response;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Test};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longer than NAME_MAX (255): refused before any event.
const LONG_NAME: &str = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";

pub const TEST: Test = Test {
    name: "pre_dir_lookup",
    doc: "FAN_PRE_DIR_ACCESS per system call: name record, O_RDONLY directory fd; the call sees the HSM's entries; deny; dcache and ignore mark; no events from walks at the event fd",
    needs_kconfigs: KCONFIGS,
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    // Each row is a case: a row that hangs ends only itself.
    timeout: Duration::from_secs(120),
    tags: &[
        (
            "issue",
            "16: lazy directories (FAN_PRE_DIR_ACCESS), the events of each system call",
        ),
        (
            "cover-letter",
            "Directory pre-content events: lookups, the last component of creates and removals, getdents(); the event fd; responses; the ignore mark",
        ),
    ],
    tcnt: ROWS.len() as u32 + 2,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

/// Size of the HSM's files: not a multiple of anything.
const SIZE: u64 = 3001;

type Remote = &'static [(&'static str, Kind)];
const NONE: Remote = &[];
const F: Remote = &[("f", Kind::File(SIZE))];
const OTHER: Remote = &[("other", Kind::File(SIZE))];
const SUB: Remote = &[("sub", Kind::Dir)];
const A: Remote = &[("a", Kind::File(SIZE))];
const LINK: Remote = &[("link", Kind::File(SIZE))];
const TREE: Remote = &[
    ("a", Kind::File(SIZE)),
    ("b", Kind::File(1)),
    ("sub", Kind::Dir),
];

/// What a row's call gave.
#[derive(Debug)]
enum Got {
    /// Succeeded, with what shows that it saw the HSM's entries.
    Saw(String),
    /// Succeeded, but not with what the HSM created.
    Wrong(String),
    Failed(Errno),
}

/// A check of what a call left: what it found, or what is wrong.
type After = fn(&Path) -> Result<String, String>;

struct Row {
    what: &'static str,
    /// What the HSM creates at the first event.
    remote: Remote,
    resp: Response,
    /// The HSM adds the ignore mark after populating.
    ignore: bool,
    op: fn(&Path) -> Got,
    want: Result<(), Errno>,
    events: Want,
    /// Checked once the group is closed (no marks): what the call left.
    after: Option<After>,
}

const fn names(required: &'static [&'static str]) -> Want {
    Want::Names {
        required,
        optional: &[],
    }
}

const ROWS: &[Row] = &[
    Row {
        what: "stat",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| size_of(nix::sys::stat::stat(&d.join("f"))),
        want: Ok(()),
        events: names(&["f"]),
        after: None,
    },
    Row {
        what: "open O_RDONLY",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| content(std::fs::File::open(d.join("f")).map_err(errno)),
        want: Ok(()),
        events: names(&["f"]),
        after: None,
    },
    Row {
        what: "openat O_RDONLY from a directory fd the test opened",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| {
            content(open_dir(d).and_then(|dir| {
                at_fd(nix::fcntl::openat(
                    Some(dir.as_raw_fd()),
                    "f",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ))
                .map(std::fs::File::from)
            }))
        },
        want: Ok(()),
        // The open of the directory populates it: "f" is then in the
        // dcache, positive.
        events: Want::NoName(1),
        after: None,
    },
    Row {
        what: "access R_OK",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| match nix::unistd::access(&d.join("f"), nix::unistd::AccessFlags::R_OK) {
            Ok(()) => Got::Saw("readable".into()),
            Err(e) => Got::Failed(e),
        },
        want: Ok(()),
        events: names(&["f"]),
        after: None,
    },
    Row {
        what: "open O_CREAT | O_RDWR of a name the HSM has",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| {
            content(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(d.join("f"))
                    .map_err(errno),
            )
        },
        want: Ok(()),
        events: names(&["f"]),
        after: None,
    },
    Row {
        what: "open O_CREAT | O_RDWR of a new name",
        remote: OTHER,
        resp: Response::Allow,
        ignore: false,
        op: |d| match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(d.join("new"))
            .and_then(|f| f.metadata())
        {
            Ok(m) if m.len() == 0 => Got::Saw("created, empty".into()),
            Ok(m) => Got::Wrong(format!("opened a file of {} bytes", m.len())),
            Err(e) => Got::Failed(errno(e)),
        },
        want: Ok(()),
        events: names(&["new"]),
        after: Some(|d| both_exist(d, "new", "other")),
    },
    Row {
        what: "mkdir of a name the HSM has",
        remote: SUB,
        resp: Response::Allow,
        ignore: false,
        op: |d| {
            done(nix::unistd::mkdir(
                &d.join("sub"),
                Mode::from_bits_truncate(0o755),
            ))
        },
        want: Err(Errno::EEXIST),
        events: names(&["sub"]),
        after: None,
    },
    Row {
        what: "mkdir of a new name",
        remote: OTHER,
        resp: Response::Allow,
        ignore: false,
        op: |d| {
            done(nix::unistd::mkdir(
                &d.join("sub"),
                Mode::from_bits_truncate(0o755),
            ))
        },
        want: Ok(()),
        events: names(&["sub"]),
        after: Some(|d| both_exist(d, "sub", "other")),
    },
    Row {
        what: "mknod (fifo) of a name the HSM has",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| {
            done(nix::sys::stat::mknod(
                &d.join("f"),
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o644),
                0,
            ))
        },
        want: Err(Errno::EEXIST),
        events: names(&["f"]),
        after: None,
    },
    Row {
        what: "unlink",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(nix::unistd::unlink(&d.join("f"))),
        want: Ok(()),
        events: names(&["f"]),
        after: Some(|d| gone(d, "f")),
    },
    Row {
        what: "rmdir",
        remote: SUB,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(std::fs::remove_dir(d.join("sub")).map_err(errno)),
        want: Ok(()),
        events: names(&["sub"]),
        after: Some(|d| gone(d, "sub")),
    },
    Row {
        what: "rename a -> b",
        remote: A,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(std::fs::rename(d.join("a"), d.join("b")).map_err(errno)),
        want: Ok(()),
        // "b" is never created before the call looks it up; "a" has an
        // event unless the HSM created it at the event for "b".
        events: Want::Names {
            required: &["b"],
            optional: &["a"],
        },
        after: Some(|d| {
            gone(d, "a")?;
            has_size(d, "b")
        }),
    },
    Row {
        what: "symlink over a name the HSM has",
        remote: LINK,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(std::os::unix::fs::symlink("f", d.join("link")).map_err(errno)),
        want: Err(Errno::EEXIST),
        events: names(&["link"]),
        after: None,
    },
    Row {
        what: "symlink of a new name",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(std::os::unix::fs::symlink("f", d.join("link")).map_err(errno)),
        want: Ok(()),
        events: names(&["link"]),
        after: Some(|d| {
            let t = std::fs::read_link(d.join("link")).map_err(|e| format!("readlink: {e}"))?;
            if t != Path::new("f") {
                return Err(format!("the link points to {}", t.display()));
            }
            has_size(d, "link")
        }),
    },
    Row {
        what: "link f -> g",
        remote: F,
        resp: Response::Allow,
        ignore: false,
        op: |d| done(std::fs::hard_link(d.join("f"), d.join("g")).map_err(errno)),
        want: Ok(()),
        events: names(&["f", "g"]),
        after: Some(|d| {
            let (f, g) = (meta(d, "f")?, meta(d, "g")?);
            if f.ino() == g.ino() && f.nlink() == 2 {
                Ok("g is f, two links".into())
            } else {
                Err(format!(
                    "f: ino {} nlink {}, g: ino {}",
                    f.ino(),
                    f.nlink(),
                    g.ino()
                ))
            }
        }),
    },
    Row {
        what: "getdents64, one call",
        remote: TREE,
        resp: Response::Allow,
        ignore: false,
        op: |d| match open_dir(d).and_then(|fd| getdents_once(fd.as_fd())) {
            Ok(n) => tree_listing(n.into_iter().collect(), 1),
            Err(e) => Got::Failed(e),
        },
        want: Ok(()),
        events: Want::NoName(2), // the open, the call
        after: None,
    },
    Row {
        what: "getdents64 to the end (an event per call)",
        remote: TREE,
        resp: Response::Allow,
        ignore: false,
        op: |d| match list(d) {
            Ok((n, calls)) => tree_listing(n, calls),
            Err(e) => Got::Failed(e),
        },
        want: Ok(()),
        events: Want::NoName(3), // the open, two calls
        after: None,
    },
    Row {
        what: "getdents64 to the end, the HSM ignores the directory at its first event",
        remote: TREE,
        resp: Response::Allow,
        ignore: true,
        op: |d| match list(d) {
            Ok((n, calls)) => tree_listing(n, calls),
            Err(e) => Got::Failed(e),
        },
        want: Ok(()),
        events: Want::NoName(1),
        after: None,
    },
    Row {
        what: "stat, FAN_DENY_ERRNO(EIO)",
        remote: NONE,
        resp: Response::DenyErrno(libc::EIO),
        ignore: false,
        op: |d| size_of(nix::sys::stat::stat(&d.join("f"))),
        want: Err(Errno::EIO),
        events: names(&["f"]),
        after: Some(empty),
    },
    Row {
        what: "stat, FAN_DENY",
        remote: NONE,
        resp: Response::Deny,
        ignore: false,
        op: |d| size_of(nix::sys::stat::stat(&d.join("f"))),
        want: Err(Errno::EPERM),
        events: names(&["f"]),
        after: Some(empty),
    },
    Row {
        what: "getdents64, FAN_DENY_ERRNO(EIO)",
        remote: NONE,
        resp: Response::DenyErrno(libc::EIO),
        ignore: false,
        op: |d| match open_dir(d).and_then(|fd| getdents_once(fd.as_fd())) {
            Ok(n) => Got::Wrong(format!("listed {n:?}")),
            Err(e) => Got::Failed(e),
        },
        want: Err(Errno::EIO),
        events: Want::NoName(1),
        after: Some(empty),
    },
    Row {
        what: "mkdir, FAN_DENY",
        remote: NONE,
        resp: Response::Deny,
        ignore: false,
        op: |d| {
            done(nix::unistd::mkdir(
                &d.join("sub"),
                Mode::from_bits_truncate(0o755),
            ))
        },
        want: Err(Errno::EPERM),
        events: names(&["sub"]),
        after: Some(empty),
    },
    Row {
        what: "open O_CREAT, FAN_DENY_ERRNO(ENOSPC)",
        remote: NONE,
        resp: Response::DenyErrno(libc::ENOSPC),
        ignore: false,
        op: |d| {
            done(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(d.join("new"))
                    .map(drop)
                    .map_err(errno),
            )
        },
        want: Err(Errno::ENOSPC),
        events: names(&["new"]),
        after: Some(empty),
    },
];

fn at_fd(r: nix::Result<i32>) -> Result<OwnedFd, Errno> {
    // SAFETY: a descriptor a system call just returned, owned by nobody else.
    r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn done<E: Into<Errno>>(r: Result<(), E>) -> Got {
    match r {
        Ok(()) => Got::Saw("done".into()),
        Err(e) => Got::Failed(e.into()),
    }
}

fn size_of(r: nix::Result<nix::sys::stat::FileStat>) -> Got {
    match r {
        Ok(st) if st.st_size as u64 == SIZE => Got::Saw(format!("size {SIZE}")),
        Ok(st) => Got::Wrong(format!("size {}, the HSM wrote {SIZE}", st.st_size)),
        Err(e) => Got::Failed(e),
    }
}

/// The whole file holds the HSM's bytes.
fn content(f: Result<std::fs::File, Errno>) -> Got {
    let mut f = match f {
        Ok(f) => f,
        Err(e) => return Got::Failed(e),
    };
    let mut got = Vec::new();
    if let Err(e) = f.read_to_end(&mut got) {
        return Got::Failed(errno(e));
    }
    if got == pattern(0, SIZE as usize) {
        Got::Saw(format!("the HSM's {SIZE} bytes"))
    } else {
        Got::Wrong(format!("{} bytes, not the HSM's {SIZE}", got.len()))
    }
}

fn tree_listing(n: std::collections::BTreeSet<std::ffi::OsString>, calls: u32) -> Got {
    let want = name_set(&["a", "b", "sub"]);
    if n == want {
        Got::Saw(format!("listed {n:?} in {calls} getdents64 calls"))
    } else {
        Got::Wrong(format!("listed {n:?}, the HSM created {want:?}"))
    }
}

fn meta(d: &Path, name: &str) -> Result<std::fs::Metadata, String> {
    std::fs::metadata(d.join(name)).map_err(|e| format!("stat {name}: {e}"))
}

fn has_size(d: &Path, name: &str) -> Result<String, String> {
    match meta(d, name)?.len() {
        SIZE => Ok(format!("{name} has the HSM's {SIZE} bytes")),
        n => Err(format!("{name} has {n} bytes, not the HSM's {SIZE}")),
    }
}

fn gone(d: &Path, name: &str) -> Result<String, String> {
    match std::fs::symlink_metadata(d.join(name)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(format!("{name} is gone")),
        other => Err(format!("{name} still there: {other:?}")),
    }
}

fn both_exist(d: &Path, new: &str, hsm: &str) -> Result<String, String> {
    meta(d, new)?;
    has_size(d, hsm)?;
    Ok(format!("{new} created next to the HSM's {hsm}"))
}

fn empty(d: &Path) -> Result<String, String> {
    match list(d) {
        Ok((n, _)) if n.is_empty() => Ok("the directory stayed empty".into()),
        other => Err(format!("the directory has {other:?}")),
    }
}

fn run_case(ctx: &Ctx, i: u32) {
    match i as usize {
        n if n < ROWS.len() => row(ctx, n),
        n if n == ROWS.len() => dcache_and_ignore(ctx),
        _ => event_fd_walks(ctx),
    }
}

/// Report the events of one call: TPASS with what they were, or TFAIL with
/// each problem.
fn report_events(what: &str, events: &[DirEvent], dir: DirId, tid: i32, want: Want) {
    let problems = events_problems(events, dir, tid, want);
    let names: Vec<Option<String>> = events.iter().map(DirEvent::name).collect();
    if problems.is_empty() {
        match want {
            Want::Nothing => tpass!("{what}: no event"),
            _ => tpass!(
                "{what}: {} FAN_PRE_DIR_ACCESS (names {names:?}), each with an O_RDONLY fd of the directory, from the calling thread",
                events.len()
            ),
        }
    } else {
        tfail!("{what}: {}", problems.join("; "));
    }
}

/// TPASS if the call gave `want` (success: with the HSM's entries), TFAIL
/// saying what it gave.
fn report_got(what: &str, want: Result<(), Errno>, got: &Got) {
    match (want, got) {
        (Ok(()), Got::Saw(s)) => tpass!("{what}: {s}"),
        (Err(w), Got::Failed(e)) if w == *e => tpass!("{what}: failed with {e}"),
        (w, Got::Wrong(s)) => tfail!("{what}: succeeded, but {s}; want {w:?}"),
        (w, g) => tfail!("{what}: {g:?}, want {w:?}"),
    }
}

fn row(ctx: &Ctx, i: usize) {
    let r = &ROWS[i];
    let d = ctx.path(&format!("d{i}"));
    let id = empty_dir(&d);
    let l = DirListener::populating(lazy_dir_group(&d), r.remote, r.ignore, r.resp);
    let (op, d2) = (r.op, d.clone());
    let c = call(move || op(&d2));
    let got = c.wait(WATCHDOG);
    // Closes the group: a call still waiting for an answer fails with EIO.
    let events = l.stop();
    let Some(got) = got else {
        tfail!(
            "{}: did not return within {WATCHDOG:?}; events {events:?}; after the group closed: {:?}",
            r.what,
            c.wait(WATCHDOG)
        );
        return;
    };
    report_got(r.what, r.want, &got);
    report_events(r.what, &events, id, c.tid, r.events);
    if let Some(after) = r.after {
        match after(&d) {
            Ok(s) => tpass!("{}: afterwards {s}", r.what),
            Err(s) => tfail!("{}: afterwards {s}", r.what),
        }
    }
}

/// Case 23: the dcache and the ignore mark.
fn dcache_and_ignore(ctx: &Ctx) {
    let d = ctx.path("dcache");
    let id = empty_dir(&d);
    let g = lazy_dir_group(&d);
    let own = g.try_clone().or_brok("dup the group");
    let l = DirListener::populating(g, F, false, Response::Allow);
    let stat = |name: &'static str| {
        let p = d.join(name);
        move || size_of(nix::sys::stat::stat(&p))
    };
    type Check = (&'static str, &'static str, Want, Result<(), Errno>);
    let steps: [Check; 5] = [
        ("stat f, first lookup", "f", names(&["f"]), Ok(())),
        (
            "stat f again: a positive dentry",
            "f",
            Want::Nothing,
            Ok(()),
        ),
        (
            "stat nope, a name the HSM does not have",
            "nope",
            names(&["nope"]),
            Err(Errno::ENOENT),
        ),
        (
            "stat nope again: a negative dentry, in a directory not opted out",
            "nope",
            names(&["nope"]),
            Err(Errno::ENOENT),
        ),
        (
            "stat of a 300-byte name: refused before an event (no NAME record over NAME_MAX)",
            LONG_NAME,
            Want::Nothing,
            Err(Errno::ENAMETOOLONG),
        ),
    ];
    for (what, name, want_ev, want) in steps {
        let Some((got, evs, tid)) = step(&l, what, stat(name)) else {
            return;
        };
        report_got(what, want, &got);
        report_events(what, &evs, id, tid, want_ev);
    }
    // A walk from an O_PATH fd (anyone may open one) is a walk like any
    // other: only event fds send nothing.
    let d2 = d.clone();
    let Some((got, evs, tid)) = step(&l, "fstatat from an O_PATH fd", move || {
        let fd = nix::fcntl::open(
            &d2,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(|fd| {
            // SAFETY: open(2) returned a new descriptor that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        size_of(fd.and_then(|fd| {
            nix::sys::stat::fstatat(Some(fd.as_raw_fd()), "opath", AtFlags::empty())
        }))
    }) else {
        return;
    };
    report_got(
        "fstatat of a name from an O_PATH fd of the directory",
        Err(Errno::ENOENT),
        &got,
    );
    report_events(
        "fstatat of a name from an O_PATH fd of the directory",
        &evs,
        id,
        tid,
        names(&["opath"]),
    );

    // getdents64 still sends its event on every call.
    let d2 = d.clone();
    let Some((got, evs, tid)) = step(&l, "list", move || list(&d2)) else {
        return;
    };
    match got {
        Ok((n, calls)) if n == name_set(&["f"]) => {
            tpass!("listing before the ignore mark: {n:?}");
            report_events(
                "listing before the ignore mark",
                &evs,
                id,
                tid,
                Want::NoName(calls as usize + 1), // and the open
            );
        }
        other => tfail!("listing before the ignore mark: {other:?}, want {{\"f\"}}"),
    }

    let dirfd = open_dir(&d).or_brok("open the directory");
    ignore_dir(&own, dirfd.as_fd()).or_brok("the ignore mark");
    drop(dirfd);
    let d2 = d.clone();
    let Some((results, evs, tid)) = step(&l, "after the ignore mark", move || ignored_ops(&d2))
    else {
        return;
    };
    let wrong: Vec<&String> = results.iter().filter(|r| r.contains("want")).collect();
    if wrong.is_empty() {
        tpass!(
            "the ignored directory works as a plain one: {}",
            results.join(", ")
        );
    } else {
        tfail!("the ignored directory: {}", results.join(", "));
    }
    report_events(
        "new names, a missing name and getdents64 in the ignored directory",
        &evs,
        id,
        tid,
        Want::Nothing,
    );
    drop(own);
    drop(l);
}

/// System calls on new names and a listing of the ignored directory `d`:
/// one line each, "want" in the lines that did not give what they should.
fn ignored_ops(d: &Path) -> Vec<String> {
    let mode = Mode::from_bits_truncate(0o755);
    let p = |n: &str| d.join(n);
    type Op<'a> = (&'a str, Result<(), Errno>, Result<(), Errno>);
    let ops: Vec<Op> = vec![
        (
            "stat new1",
            nix::sys::stat::stat(&p("new1")).map(drop),
            Err(Errno::ENOENT),
        ),
        (
            "open(O_CREAT) new2",
            std::fs::File::create(p("new2")).map(drop).map_err(errno),
            Ok(()),
        ),
        ("mkdir new3", nix::unistd::mkdir(&p("new3"), mode), Ok(())),
        (
            "rename new2 new4",
            std::fs::rename(p("new2"), p("new4")).map_err(errno),
            Ok(()),
        ),
        (
            "symlink new5",
            std::os::unix::fs::symlink("new4", p("new5")).map_err(errno),
            Ok(()),
        ),
        (
            "link new4 new6",
            std::fs::hard_link(p("new4"), p("new6")).map_err(errno),
            Ok(()),
        ),
        ("unlink new4", nix::unistd::unlink(&p("new4")), Ok(())),
        (
            "rmdir new3",
            std::fs::remove_dir(p("new3")).map_err(errno),
            Ok(()),
        ),
        (
            "stat missing",
            nix::sys::stat::stat(&p("missing")).map(drop),
            Err(Errno::ENOENT),
        ),
    ];
    let mut out: Vec<String> = ops
        .into_iter()
        .map(|(what, got, want)| {
            if got == want {
                format!("{what}: {got:?}")
            } else {
                format!("{what}: {got:?}, want {want:?}")
            }
        })
        .collect();
    let want = name_set(&["f", "new5", "new6"]);
    out.push(match list(d) {
        Ok((n, _)) if n == want => format!("listing {n:?}"),
        other => format!("listing {other:?}, want {want:?}"),
    });
    out
}

/// The walks an HSM starts at the event fd while it populates: one line
/// for each that did not give what it should.
fn walks(fd: BorrowedFd<'_>, group: fanotify::Fanotify) -> Vec<String> {
    let at = Some(fd.as_raw_fd());
    let mut bad = Vec::new();
    let mut want = |what: &str, got: Result<(), Errno>, w: Result<(), Errno>| {
        if got != w {
            bad.push(format!("{what}: {got:?}, want {w:?}"));
        }
    };
    want(
        "fstatat missing",
        nix::sys::stat::fstatat(at, "missing", AtFlags::empty()).map(drop),
        Err(Errno::ENOENT),
    );
    want(
        "mkdirat sub",
        nix::sys::stat::mkdirat(at, "sub", Mode::from_bits_truncate(0o755)),
        Ok(()),
    );
    // sub is lazy too: a walk through it from the event fd must not send
    // its event either.
    want(
        "mark sub (a lookup from the event fd)",
        group
            .mark_fd(FAN_MARK_ADD, FAN_PRE_DIR_ACCESS, fd, Some(Path::new("sub")))
            .map_err(|e| e.errno().unwrap_or(Errno::UnknownErrno)),
        Ok(()),
    );
    want(
        "openat sub/x O_CREAT",
        at_fd(nix::fcntl::openat(
            at,
            "sub/x",
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ))
        .map(drop),
        Ok(()),
    );
    want(
        "fstatat sub/x",
        nix::sys::stat::fstatat(at, "sub/x", AtFlags::empty()).map(drop),
        Ok(()),
    );
    want(
        "symlinkat sub/l",
        nix::unistd::symlinkat("x", at, "sub/l"),
        Ok(()),
    );
    want(
        "linkat sub/x sub/y",
        nix::unistd::linkat(at, "sub/x", at, "sub/y", AtFlags::empty()),
        Ok(()),
    );
    want(
        "renameat sub/y sub/z",
        nix::fcntl::renameat(at, "sub/y", at, "sub/z"),
        Ok(()),
    );
    want(
        "unlinkat sub/z",
        nix::unistd::unlinkat(at, "sub/z", nix::unistd::UnlinkatFlags::NoRemoveDir),
        Ok(()),
    );
    want(
        "fstatat sub/nothing",
        nix::sys::stat::fstatat(at, "sub/nothing", AtFlags::empty()).map(drop),
        Err(Errno::ENOENT),
    );
    // btrfs lists what a directory held at its open or its last rewind.
    if let Err(e) = nix::unistd::lseek(fd.as_raw_fd(), 0, nix::unistd::Whence::SeekSet) {
        bad.push(format!("rewind the event fd: {e}"));
    }
    let listed = getdents_all(fd).map(|(n, _)| n);
    let w = name_set(&["f", "sub"]);
    if listed.as_ref() != Ok(&w) {
        bad.push(format!(
            "getdents64 of the event fd: {listed:?}, want {w:?}"
        ));
    }
    bad
}

/// Case 24: walks that start at the event fd send no event.
fn event_fd_walks(ctx: &Ctx) {
    let d = ctx.path("walks");
    let id = empty_dir(&d);
    let bad = Arc::new(Mutex::new(None::<Vec<String>>));
    let bad2 = bad.clone();
    let mut first = true;
    let l = DirListener::start(
        lazy_dir_group(&d),
        Box::new(move |h| {
            if !first {
                return Response::Allow;
            }
            first = false;
            if let Err(e) = h.populate(F) {
                tfail!("listener: populate: {e}");
                return Response::DenyErrno(libc::EIO);
            }
            let g = h.group.try_clone().or_brok("dup the group");
            let r = h.quietly("walks from the event fd", move |fd| walks(fd, g));
            *bad2.lock().unwrap() = r;
            Response::Allow
        }),
    );
    let p = d.join("f");
    let Some((got, evs, tid)) = step(&l, "stat f", move || size_of(nix::sys::stat::stat(&p)))
    else {
        return;
    };
    report_got(
        "stat f, the HSM walking from the event fd meanwhile",
        Ok(()),
        &got,
    );
    let (nested, outer): (Vec<DirEvent>, Vec<DirEvent>) = evs.into_iter().partition(|e| e.nested);
    report_events("stat f", &outer, id, tid, names(&["f"]));
    if nested.is_empty() {
        tpass!("walks from the event fd (fstatat, mkdirat, a mark, openat(O_CREAT), symlinkat, linkat, renameat, unlinkat of two-component paths, getdents64) sent no event");
    } else {
        let names: Vec<Option<String>> = nested.iter().map(DirEvent::name).collect();
        tfail!(
            "event from a walk starting at the event fd: {} events, names {names:?}",
            nested.len()
        );
    }
    match bad.lock().unwrap().take() {
        Some(b) if b.is_empty() => tpass!("the walks from the event fd gave what they should"),
        Some(b) => tfail!("walks from the event fd: {}", b.join("; ")),
        None => tfail!("the walks from the event fd did not complete"),
    }
    // The same kind of lookup from a descriptor the test opened is not quiet.
    let dirfd = open_dir(&d).or_brok("open the directory");
    let Some((got, evs, tid)) = step(&l, "fstatat missing2", move || {
        nix::sys::stat::fstatat(Some(dirfd.as_raw_fd()), "missing2", AtFlags::empty()).map(drop)
    }) else {
        return;
    };
    tinfo!("fstatat(a directory fd the test opened, missing2): {got:?}");
    report_events(
        "the same lookup from a directory fd the test opened",
        &evs,
        id,
        tid,
        names(&["missing2"]),
    );
    drop(l);
}
