//! What the pre_dir_* tests (FAN_PRE_DIR_ACCESS, lazy directories: patch 9
//! of the series) share: the feature probe, groups and marks for directory
//! events, an HSM listener thread that records each event as the tests check
//! it (mask, name record, the event fd's properties, the sending thread) and
//! answers what its handler says, populating a directory through the event
//! fd, getdents64, and system calls run on threads of their own so that
//! every wait for them is bounded.  Not a test itself.
//!
//! The absence of an event is proved with a positive barrier, not a sleep:
//! a FAN_PRE_DIR_ACCESS always waits for its answer, and [`DirListener`]
//! records an event before it answers it, so once a system call returned,
//! every event it sent is in [`DirListener::events`].

use crate::common::{hsm_filesystem, pattern};
use fanotify::consts::*;
use fanotify::{Event, Fanotify, InfoRecord, Response};
use ltp::res::OrBrok;
use ltp::{tfail, Ctx, ResKind};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The kernel options every pre_dir_* test needs.
pub const KCONFIGS: &[&str] = &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"];

/// How long a system call may take whose events the listener answers at
/// once, or a listener's own walk, before it counts as hung.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// The feature probe of every pre_dir_* test: an inode mark of
/// FAN_PRE_DIR_ACCESS on a directory of the test filesystem in a
/// pre-content group.  The unpatched kernel does not know the bit (EINVAL):
/// TCONF, "FAN_PRE_DIR_ACCESS not supported".  EOPNOTSUPP on ext4, xfs or
/// btrfs, which support pre-content marks, is a failure.
pub fn probe(ctx: &Ctx) -> Result<(), String> {
    let dir = ctx.path("pre_dir_probe");
    std::fs::create_dir(&dir).or_brok("mkdir the probe directory");
    let g = match Fanotify::init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, libc::O_RDONLY as u32) {
        Ok(g) => g,
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            return Err(format!("FAN_CLASS_PRE_CONTENT not supported: {e}"))
        }
        Err(e) => ltp::tbrok!("fanotify_init: {e}"),
    };
    let r = g.mark(FAN_MARK_ADD, FAN_PRE_DIR_ACCESS, &dir);
    drop(g);
    std::fs::remove_dir(&dir).or_brok("rmdir the probe directory");
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            Err(format!("FAN_PRE_DIR_ACCESS not supported: {e}"))
        }
        Err(e) if e.errno() == Some(Errno::EOPNOTSUPP) => match hsm_filesystem(&ctx.mnt) {
            Some(fs) => ltp::res::report_exit(
                ResKind::Fail,
                format_args!("{fs} supports pre-content marks, but FAN_PRE_DIR_ACCESS gave: {e}"),
            ),
            None => Err(format!("filesystem has no pre-content support: {e}")),
        },
        Err(e) => ltp::tbrok!("probe mark: {e}"),
    }
}

/// A pre-content group as an HSM makes it: event fds asked for O_RDWR (the
/// fd of a directory event must still be O_RDONLY), FAN_REPORT_TID so that
/// an event names the thread whose system call sent it.
pub fn dir_group() -> Fanotify {
    Fanotify::init(
        FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID,
        (libc::O_RDWR | libc::O_LARGEFILE) as u32,
    )
    .or_brok("fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_REPORT_TID, O_RDWR)")
}

/// Mark `path` for FAN_PRE_DIR_ACCESS (`flags`: the mark type).
pub fn mark_dir(g: &Fanotify, flags: u32, path: &Path) {
    g.mark(FAN_MARK_ADD | flags, FAN_PRE_DIR_ACCESS, path)
        .or_brok(&format!("mark {} for FAN_PRE_DIR_ACCESS", path.display()));
}

/// A group with an inode mark of FAN_PRE_DIR_ACCESS on the directory `path`.
pub fn lazy_dir_group(path: &Path) -> Fanotify {
    let g = dir_group();
    mark_dir(&g, FAN_MARK_INODE, path);
    g
}

/// The "populated" opt-out: an inode ignore mark of FAN_PRE_DIR_ACCESS on
/// the directory `dir` (an event fd, or any fd of it).
pub fn ignore_dir(g: &Fanotify, dir: BorrowedFd<'_>) -> Result<(), fanotify::Error> {
    g.mark_fd(
        FAN_MARK_ADD | FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY,
        FAN_PRE_DIR_ACCESS,
        dir,
        None,
    )
}

/// A new, empty directory at `path`: an unpopulated lazy directory.  Nothing
/// in it was ever looked up, so no name of it is in the dcache, positive or
/// negative: the first lookup of any name in it misses.
pub fn empty_dir(path: &Path) -> DirId {
    std::fs::create_dir(path).or_brok(&format!("mkdir {}", path.display()));
    dir_id(path)
}

/// Which directory: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirId {
    pub dev: u64,
    pub ino: u64,
}

pub fn dir_id(path: &Path) -> DirId {
    let st = nix::sys::stat::stat(path).or_brok(&format!("stat {}", path.display()));
    DirId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

/// What an event fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdInfo {
    /// `fcntl(F_GETFL) & O_ACCMODE`.
    pub accmode: i32,
    pub is_dir: bool,
    pub id: DirId,
}

impl FdInfo {
    pub fn of(fd: BorrowedFd<'_>) -> Result<Self, Errno> {
        let fl = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
        Ok(FdInfo {
            accmode: fl & libc::O_ACCMODE,
            is_dir: st.st_mode & libc::S_IFMT == libc::S_IFDIR,
            id: DirId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
        })
    }
}

/// One event as the listener read it.
#[derive(Debug, Clone)]
pub struct DirEvent {
    pub mask: u64,
    /// The sending thread (the groups report tids).
    pub pid: i32,
    /// The names of its FAN_EVENT_INFO_TYPE_NAME records (one at most).
    pub names: Vec<OsString>,
    /// The types of its other info records (none expected).
    pub other_records: Vec<u8>,
    /// The event fd, or the raw fd field when there is none.
    pub fd: Result<FdInfo, String>,
    /// Read while the handler's own walk from the event fd ran
    /// ([`Hsm::quietly`]): an event that walk sent.
    pub nested: bool,
}

impl DirEvent {
    pub fn of(ev: &Event) -> Self {
        let mut names = Vec::new();
        let mut other_records = Vec::new();
        for r in &ev.info {
            match r {
                InfoRecord::Name(n) => names.push(n.clone()),
                InfoRecord::Range(_) => other_records.push(FAN_EVENT_INFO_TYPE_RANGE),
                InfoRecord::Pidfd(_) => other_records.push(FAN_EVENT_INFO_TYPE_PIDFD),
                InfoRecord::Error { .. } => other_records.push(FAN_EVENT_INFO_TYPE_ERROR),
                InfoRecord::Mnt(_) => other_records.push(FAN_EVENT_INFO_TYPE_MNT),
                InfoRecord::Fid { info_type, .. } | InfoRecord::Unknown { info_type, .. } => {
                    other_records.push(*info_type)
                }
            }
        }
        let fd = match &ev.fd {
            Some(fd) => FdInfo::of(fd.as_fd()).map_err(|e| format!("fstat/fcntl: {e}")),
            None => Err(format!("no event fd (fd field {})", ev.raw_fd())),
        };
        DirEvent {
            mask: ev.mask,
            pid: ev.pid,
            names,
            other_records,
            fd,
            nested: false,
        }
    }

    /// The name record's name, lossily (None for a getdents event).
    pub fn name(&self) -> Option<String> {
        self.names.first().map(|n| n.to_string_lossy().into_owned())
    }

    /// What is wrong with this event as a FAN_PRE_DIR_ACCESS on `dir`: the
    /// mask exactly FAN_PRE_DIR_ACCESS (no FAN_ONDIR), an fd that is `dir`
    /// itself, a directory, O_RDONLY (the groups ask for O_RDWR), at most
    /// one name record and no other record (no range).  The name itself is
    /// the caller's to check.
    pub fn problem(&self, dir: DirId) -> Option<String> {
        let fd = match &self.fd {
            Ok(fd) => fd,
            Err(e) => return Some(e.clone()),
        };
        if self.mask != FAN_PRE_DIR_ACCESS {
            Some(format!(
                "mask {:#x}, want exactly FAN_PRE_DIR_ACCESS {FAN_PRE_DIR_ACCESS:#x}",
                self.mask
            ))
        } else if !fd.is_dir {
            Some("the event fd is not a directory".into())
        } else if fd.accmode != libc::O_RDONLY {
            Some(format!(
                "the event fd's access mode is {:#o}, want O_RDONLY",
                fd.accmode
            ))
        } else if fd.id != dir {
            Some(format!(
                "the event fd is {:?}, not the watched directory {dir:?}",
                fd.id
            ))
        } else if self.names.len() > 1 {
            Some(format!("{} name records", self.names.len()))
        } else if !self.other_records.is_empty() {
            Some(format!(
                "info records of types {:?} besides the name",
                self.other_records
            ))
        } else {
            None
        }
    }
}

/// What the handler is given for one event.
pub struct Hsm<'a> {
    pub event: &'a DirEvent,
    /// The event fd: the directory, for populating it without events.
    pub fd: BorrowedFd<'a>,
    /// The group (for ignore marks and marks of new subdirectories).
    pub group: &'a Fanotify,
    log: &'a Mutex<Vec<DirEvent>>,
}

impl Hsm<'_> {
    /// Create `entries` in the event's directory through the event fd.
    pub fn populate(&self, entries: &[(&str, Kind)]) -> Result<(), String> {
        populate(self.fd, entries)
    }

    /// Mark the event's directory populated (the inode ignore mark).
    pub fn ignore(&self) -> Result<(), String> {
        ignore_dir(self.group, self.fd).map_err(|e| format!("ignore mark: {e}"))
    }

    /// Run `f` on a dup of the event fd (the walks of an HSM that starts
    /// them there) on a thread of its own, and meanwhile read the group: an
    /// event that arrives now is one that `f` sent, since the system call
    /// this handler serves waits for its answer (for tests where one call
    /// at a time waits).  Such events are recorded with `nested` set and
    /// allowed, so that a walk that does send one cannot deadlock the
    /// single-threaded listener.  None (with a TFAIL) if `f` did not return
    /// within the watchdog or panicked.
    pub fn quietly<R: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(BorrowedFd<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        let fd = self.fd.try_clone_to_owned().or_brok("dup the event fd");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(f(fd.as_fd()));
        });
        let deadline = Instant::now() + WATCHDOG;
        loop {
            match rx.try_recv() {
                Ok(r) => return Some(r),
                Err(TryRecvError::Disconnected) => {
                    tfail!("{what}: the listener's walk panicked");
                    return None;
                }
                Err(TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                tfail!("{what}: the listener's walk did not return within {WATCHDOG:?}");
                return None;
            }
            let evs = match self.group.wait_events(Duration::from_millis(10)) {
                Ok(evs) => evs,
                Err(e) => {
                    tfail!("{what}: reading events during the listener's walk: {e}");
                    return None;
                }
            };
            for ev in evs {
                let mut d = DirEvent::of(&ev);
                d.nested = true;
                self.log.lock().unwrap().push(d);
                if let (true, Some(fd)) = (ev.needs_response(), &ev.fd) {
                    if let Err(e) = self.group.respond(fd.as_fd(), Response::Allow) {
                        tfail!("listener: allow a nested event: {e}");
                    }
                }
            }
        }
    }
}

pub type Handler = Box<dyn FnMut(&Hsm<'_>) -> Response + Send>;

/// A thread answering the events of a group with what its handler says,
/// after recording them.  Stopping it (or dropping it) closes the group.
pub struct DirListener {
    events: Arc<Mutex<Vec<DirEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DirListener {
    pub fn start(group: Fanotify, mut handler: Handler) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, st) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let evs = match group.wait_events(Duration::from_millis(50)) {
                    Ok(e) => e,
                    Err(e) => {
                        tfail!("listener: reading events: {e}");
                        return;
                    }
                };
                for ev in evs {
                    let d = DirEvent::of(&ev);
                    log.lock().unwrap().push(d.clone());
                    let Some(fd) = &ev.fd else { continue };
                    let resp = handler(&Hsm {
                        event: &d,
                        fd: fd.as_fd(),
                        group: &group,
                        log: &log,
                    });
                    if ev.needs_response() {
                        if let Err(e) = group.respond(fd.as_fd(), resp) {
                            tfail!("listener: respond {resp:?}: {e}");
                        }
                    }
                }
            }
        });
        DirListener {
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// An HSM that populates the directory of the first event with
    /// `entries`, then marks it populated if `ignore`, and answers every
    /// event `resp` (a failed population is a TFAIL and EIO).
    pub fn populating(
        group: Fanotify,
        entries: &'static [(&'static str, Kind)],
        ignore: bool,
        resp: Response,
    ) -> Self {
        let mut done = false;
        Self::start(
            group,
            Box::new(move |h| {
                if done {
                    return resp;
                }
                done = true;
                let r = h
                    .populate(entries)
                    .and_then(|()| if ignore { h.ignore() } else { Ok(()) });
                match r {
                    Ok(()) => resp,
                    Err(e) => {
                        tfail!("listener: populate: {e}");
                        Response::DenyErrno(libc::EIO)
                    }
                }
            }),
        )
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<DirEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Stop the thread (which closes the group and with it its marks) and
    /// return every event it saw.
    pub fn stop(mut self) -> Vec<DirEvent> {
        self.halt();
        self.events()
    }

    /// Stop the thread, waiting at most the watchdog: a thread still in its
    /// handler then is stuck in a system call (an event from its own walk
    /// at the event fd would do that); it is left to the end of the
    /// process, whose exit closes the group and so releases it.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else { return };
        let deadline = Instant::now() + WATCHDOG;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tfail!("the listener thread is stuck in its handler after {WATCHDOG:?} (waiting for an event from its own walk at the event fd?)");
        }
    }
}

impl Drop for DirListener {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An entry an HSM creates: a file of that many bytes of the pattern, or a
/// directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File(u64),
    Dir,
}

/// Create `name` in `dir` (an fd) as `kind`: O_CREAT | O_EXCL, so that an
/// entry that exists already is an error.
pub fn create(dir: BorrowedFd<'_>, name: &str, kind: Kind) -> Result<(), String> {
    let what = |e: &dyn std::fmt::Display| format!("create {name} ({kind:?}): {e}");
    match kind {
        Kind::Dir => {
            nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755))
                .map_err(|e| what(&e))
        }
        Kind::File(size) => {
            let fd = nix::fcntl::openat(
                Some(dir.as_raw_fd()),
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(|e| what(&e))?;
            // SAFETY: openat returned a new descriptor that nothing else owns.
            let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            f.write_all(&pattern(0, size as usize))
                .map_err(|e| what(&e))
        }
    }
}

/// Create `name` in `dir` so that it appears whole to concurrent lookups:
/// under a temporary name first (a file with all its bytes; a directory
/// with `mark`'s FAN_PRE_DIR_ACCESS inode mark, so that it is lazy from the
/// moment it is visible), then renamed.  All through `dir`: an HSM does it
/// through the event fd, which sends no events.
pub fn create_whole(
    dir: BorrowedFd<'_>,
    name: &str,
    kind: Kind,
    mark: Option<&Fanotify>,
) -> Result<(), String> {
    let tmp = format!(".tmp-{name}");
    create(dir, &tmp, kind)?;
    if let (Kind::Dir, Some(g)) = (kind, mark) {
        g.mark_fd(FAN_MARK_ADD, FAN_PRE_DIR_ACCESS, dir, Some(Path::new(&tmp)))
            .map_err(|e| format!("mark {tmp}: {e}"))?;
    }
    let at = Some(dir.as_raw_fd());
    nix::fcntl::renameat(at, tmp.as_str(), at, name)
        .map_err(|e| format!("rename {tmp} to {name}: {e}"))
}

/// Create every entry of `entries` in `dir`.
pub fn populate(dir: BorrowedFd<'_>, entries: &[(&str, Kind)]) -> Result<(), String> {
    entries
        .iter()
        .try_for_each(|&(name, kind)| create(dir, name, kind))
}

/// The names `list` as a set, to compare with a listing.
pub fn name_set(list: &[&str]) -> BTreeSet<OsString> {
    list.iter().map(OsString::from).collect()
}

/// One getdents64(2) call into a 32 KiB buffer: the names it returned ("."
/// and ".." left out), none at the end of the directory.
pub fn getdents_once(fd: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    let mut buf = vec![0u8; 32 << 10];
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(Errno::last());
    }
    // struct linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type,
    // then the NUL-terminated name.
    let mut out = Vec::new();
    let mut at = 0usize;
    let end = n as usize;
    while at + 19 <= end {
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if reclen < 20 || at + reclen > end {
            ltp::tbrok!("getdents64: bad d_reclen {reclen} at {at} of {end}");
        }
        let name = &buf[at + 19..at + reclen];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if name != b"." && name != b".." {
            out.push(OsString::from(std::ffi::OsStr::from_bytes(name)));
        }
        at += reclen;
    }
    Ok(out)
}

/// getdents64(2) on `fd` until it returns nothing: the names ("." and ".."
/// left out) and how many calls it took (the last one returned nothing).
pub fn getdents_all(fd: BorrowedFd<'_>) -> Result<(BTreeSet<OsString>, u32), Errno> {
    let mut names = BTreeSet::new();
    let mut calls = 0;
    loop {
        calls += 1;
        let got = getdents_once(fd)?;
        if got.is_empty() {
            return Ok((names, calls));
        }
        names.extend(got);
    }
}

/// Open the directory `path` (O_RDONLY | O_DIRECTORY).
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `path` and list all of it.
pub fn list(path: &Path) -> Result<(BTreeSet<OsString>, u32), Errno> {
    getdents_all(open_dir(path)?.as_fd())
}

/// The errno of an `std::io::Error` from a system call.
pub fn errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// A system call run on a thread of its own, so that the wait for it is
/// bounded; `tid` is the thread (FAN_REPORT_TID events name it).
pub struct Call<R> {
    pub tid: i32,
    rx: Receiver<R>,
}

/// Start `f` on a new thread.
pub fn call<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Call<R> {
    let (ttx, trx) = channel();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = ttx.send(nix::unistd::gettid().as_raw());
        let _ = tx.send(f());
    });
    let tid = trx.recv().or_brok("the call's thread did not start");
    Call { tid, rx }
}

impl<R> Call<R> {
    /// The result, or None if the call did not return within `limit` (or
    /// its thread panicked).  May be called again after a None.
    pub fn wait(&self, limit: Duration) -> Option<R> {
        self.rx.recv_timeout(limit).ok()
    }
}

/// What the events of one system call must be.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// One event per name, in any order: each of `required`, and at most one
    /// of each of `optional` (a name the HSM may have created, through the
    /// event fd, before the call looked it up).
    Names {
        required: &'static [&'static str],
        optional: &'static [&'static str],
    },
    /// This many events without a name record (getdents64).
    NoName(usize),
    /// None at all.
    Nothing,
}

/// What is wrong with `events` as the FAN_PRE_DIR_ACCESS events a call of
/// thread `tid` sent on `dir` (see [`DirEvent::problem`]), and with their
/// names as `want` says.  Empty: nothing.
pub fn events_problems(events: &[DirEvent], dir: DirId, tid: i32, want: Want) -> Vec<String> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(p) = e.problem(dir) {
            out.push(format!("event {i} (name {:?}): {p}", e.name()));
        }
        if e.pid != tid {
            out.push(format!(
                "event {i} (name {:?}) from thread {}, not the calling thread {tid}",
                e.name(),
                e.pid
            ));
        }
        if e.nested {
            out.push(format!(
                "event {i} (name {:?}) from a walk starting at the event fd",
                e.name()
            ));
        }
    }
    let names: Vec<Option<String>> = events.iter().map(DirEvent::name).collect();
    match want {
        Want::Nothing if !events.is_empty() => out.push(format!(
            "{} events (names {names:?}), want none",
            events.len()
        )),
        Want::Nothing => {}
        Want::NoName(n) => {
            if events.len() != n || names.iter().any(Option::is_some) {
                out.push(format!(
                    "{} events with names {names:?}, want {n} without a name record",
                    events.len()
                ));
            }
        }
        Want::Names { required, optional } => {
            let mut seen: Vec<&str> = Vec::new();
            for n in &names {
                match n.as_deref() {
                    None => out.push("an event without a name record".into()),
                    Some(n) if !required.contains(&n) && !optional.contains(&n) => {
                        out.push(format!("an event for the name {n:?}"))
                    }
                    Some(n) if seen.contains(&n) => {
                        out.push(format!("two events for the name {n:?}"))
                    }
                    Some(n) => seen.push(n),
                }
            }
            for r in required {
                if !seen.contains(r) {
                    out.push(format!("no event for the name {r:?} (names {names:?})"));
                }
            }
        }
    }
    out
}

/// Run `f` on a thread of its own while `l` listens: its result, the events
/// `l` recorded meanwhile and the thread's id; None (with a TFAIL) if it did
/// not return within the watchdog.
pub fn step<R: Send + 'static>(
    l: &DirListener,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> Option<(R, Vec<DirEvent>, i32)> {
    let before = l.count();
    let c = call(f);
    match c.wait(WATCHDOG) {
        Some(r) => Some((r, l.events().split_off(before), c.tid)),
        None => {
            tfail!(
                "{what}: did not return within {WATCHDOG:?}; events meanwhile: {:?}",
                l.events().split_off(before)
            );
            None
        }
    }
}

/// The helpers on the host (no kernel feature needed): listing, creating,
/// the event checks.
#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pre_dir_util.{}.{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn populate_list_and_fd_info() {
        let d = scratch("populate");
        let fd = open_dir(&d).unwrap();
        let info = FdInfo::of(fd.as_fd()).unwrap();
        assert_eq!(info.accmode, libc::O_RDONLY);
        assert!(info.is_dir);
        assert_eq!(info.id, dir_id(&d));
        populate(
            fd.as_fd(),
            &[
                ("a", Kind::File(3001)),
                ("sub", Kind::Dir),
                ("e", Kind::File(0)),
            ],
        )
        .unwrap();
        // O_EXCL: an entry that exists is an error.
        assert!(create(fd.as_fd(), "a", Kind::File(1)).is_err());
        create_whole(fd.as_fd(), "w", Kind::File(5000), None).unwrap();
        create_whole(fd.as_fd(), "wd", Kind::Dir, None).unwrap();
        assert_eq!(std::fs::read(d.join("a")).unwrap(), pattern(0, 3001));
        assert_eq!(std::fs::read(d.join("w")).unwrap(), pattern(0, 5000));
        assert!(d.join("sub").is_dir() && d.join("wd").is_dir());
        // Many names: more than one getdents64 call returns entries.
        for i in 0..1200 {
            create(fd.as_fd(), &format!("many-entries-{i:04}"), Kind::File(0)).unwrap();
        }
        let (names, calls) = list(&d).unwrap();
        assert_eq!(names.len(), 1205);
        assert!(names.is_superset(&name_set(&["a", "sub", "e", "w", "wd"])));
        assert!(!names.iter().any(|n| n == "." || n == ".."));
        assert!(
            calls > 2,
            "{calls} calls for 1205 entries in 32 KiB buffers"
        );
        // One call on a fresh fd, then the end.
        let fd = open_dir(&d.join("sub")).unwrap();
        assert_eq!(getdents_once(fd.as_fd()).unwrap(), Vec::<OsString>::new());
        assert_eq!(list(&d.join("sub")).unwrap(), (BTreeSet::new(), 1));
        assert_eq!(list(&d.join("a")).unwrap_err(), Errno::ENOTDIR);
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn ev(name: Option<&str>, pid: i32, id: DirId) -> DirEvent {
        DirEvent {
            mask: FAN_PRE_DIR_ACCESS,
            pid,
            names: name.map(OsString::from).into_iter().collect(),
            other_records: vec![],
            fd: Ok(FdInfo {
                accmode: libc::O_RDONLY,
                is_dir: true,
                id,
            }),
            nested: false,
        }
    }

    #[test]
    fn event_checks() {
        let id = DirId { dev: 1, ino: 2 };
        let names = |r, o| Want::Names {
            required: r,
            optional: o,
        };
        let ok = [ev(Some("a"), 7, id), ev(Some("b"), 7, id)];
        assert!(events_problems(&ok, id, 7, names(&["a", "b"], &[])).is_empty());
        assert!(events_problems(&ok[1..], id, 7, names(&["b"], &["a"])).is_empty());
        assert!(events_problems(&ok, id, 7, names(&["b"], &["a"])).is_empty());
        assert!(events_problems(&[], id, 7, Want::Nothing).is_empty());
        let dents = [ev(None, 7, id), ev(None, 7, id)];
        assert!(events_problems(&dents, id, 7, Want::NoName(2)).is_empty());
        // Each of these must be found.
        let bad: Vec<(Vec<DirEvent>, Want)> = vec![
            (ok[..1].to_vec(), names(&["a", "b"], &[])),
            (vec![ok[0].clone(), ok[0].clone()], names(&["a"], &[])),
            (ok.to_vec(), names(&["a"], &[])),
            (dents.to_vec(), Want::NoName(1)),
            (ok.to_vec(), Want::NoName(2)),
            (dents[..1].to_vec(), names(&["a"], &[])),
            (ok[..1].to_vec(), Want::Nothing),
            (vec![ev(Some("a"), 8, id)], names(&["a"], &[])),
            (
                vec![ev(Some("a"), 7, DirId { dev: 1, ino: 3 })],
                names(&["a"], &[]),
            ),
            (
                vec![DirEvent {
                    mask: FAN_PRE_DIR_ACCESS | FAN_ONDIR,
                    ..ev(Some("a"), 7, id)
                }],
                names(&["a"], &[]),
            ),
            (
                vec![DirEvent {
                    other_records: vec![FAN_EVENT_INFO_TYPE_RANGE],
                    ..ev(Some("a"), 7, id)
                }],
                names(&["a"], &[]),
            ),
            (
                vec![DirEvent {
                    fd: Ok(FdInfo {
                        accmode: libc::O_RDWR,
                        is_dir: true,
                        id,
                    }),
                    ..ev(Some("a"), 7, id)
                }],
                names(&["a"], &[]),
            ),
            (
                vec![DirEvent {
                    fd: Err("no event fd".into()),
                    ..ev(Some("a"), 7, id)
                }],
                names(&["a"], &[]),
            ),
            (
                vec![DirEvent {
                    nested: true,
                    ..ev(Some("a"), 7, id)
                }],
                names(&["a"], &[]),
            ),
        ];
        for (i, (evs, want)) in bad.iter().enumerate() {
            assert!(
                !events_problems(evs, id, 7, *want).is_empty(),
                "bad case {i} passed: {evs:?} {want:?}"
            );
        }
    }

    #[test]
    fn calls_are_bounded() {
        let c = call(|| {
            std::thread::sleep(Duration::from_millis(300));
            5
        });
        assert_ne!(c.tid, nix::unistd::gettid().as_raw());
        assert_eq!(c.wait(Duration::from_millis(1)), None);
        assert_eq!(c.wait(Duration::from_secs(10)), Some(5));
    }
}
