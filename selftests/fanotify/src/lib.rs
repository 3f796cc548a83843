//! fanotify(7) for kernel selftests and HSM daemons.
//!
//! This crate wraps `fanotify_init(2)`, `fanotify_mark(2)`, reading events
//! and writing permission responses.  It is used by an LTP-style test suite
//! and by hierarchical storage manager (HSM) daemons that exercise Linux
//! pre-content events (`FAN_PRE_ACCESS`, with its `FAN_EVENT_INFO_TYPE_RANGE`
//! record) on Linux 7.3, and the series' `FAN_PRE_FAULT` and
//! `FAN_PRE_DIR_ACCESS` (with its `FAN_EVENT_INFO_TYPE_NAME` record).
//!
//! * [`consts`] holds the upstream constants of `<linux/fanotify.h>`.
//! * [`parse_events`] / [`parse_events_partial`] are pure parsers over a
//!   `read(2)` buffer: every length is checked before use, every info record
//!   is decoded, and malformed input yields a [`ParseError`], never a panic.
//! * [`Fanotify::read_events`] adopts the descriptors installed by the kernel
//!   (event fds and pidfds) so that they are closed on drop, and closes every
//!   descriptor of a buffer it fails to parse (denying pending permission
//!   events first so that no accessing process stays blocked).
//!
//! Kernel failures carry their [`Errno`] (see [`Error::errno`]) so tests can
//! assert on `EOPNOTSUPP`, `EPERM`, `EINVAL`, ...

pub mod consts;
mod error;
mod parse;

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

pub use error::{Error, ParseError};
pub use parse::{
    parse_events, parse_events_partial, InfoRecord, ParseOutcome, Range, RawEvent, StrayFd,
    ERROR_INFO_LEN, FID_INFO_MIN_LEN, MNT_INFO_ID_OFFSET, MNT_INFO_LEN, PIDFD_INFO_LEN,
    RANGE_INFO_LEN,
};

/// Size of the buffer [`Fanotify::read_events`] reads into.
pub const READ_BUF_LEN: usize = 64 * 1024;

/// A permission decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Allow,
    Deny,
    /// `FAN_DENY_ERRNO(err)`: deny and fail the access with `err` (low 8 bits).
    DenyErrno(i32),
}

impl Response {
    /// The `response` field of `struct fanotify_response`.
    pub fn to_raw(self) -> u32 {
        match self {
            Response::Allow => consts::FAN_ALLOW,
            Response::Deny => consts::FAN_DENY,
            Response::DenyErrno(err) => consts::fan_deny_errno(err),
        }
    }
}

/// An event read from a group, owning the descriptors the kernel installed.
///
/// `fd` is `None` when the kernel reported no descriptor (`FAN_NOFD`, or a
/// negative error with `FAN_REPORT_FD_ERROR`; see [`Event::raw_fd`]).  Pidfds
/// reported in [`InfoRecord::Pidfd`] are owned by the event too and closed
/// when it is dropped unless taken with [`Event::take_pidfd`].
#[derive(Debug)]
pub struct Event {
    pub mask: u64,
    pub fd: Option<OwnedFd>,
    pub pid: i32,
    pub info: Vec<InfoRecord>,
    raw_fd: i32,
    pidfds: Vec<OwnedFd>,
}

impl Event {
    /// The first `FAN_EVENT_INFO_TYPE_RANGE` record.
    pub fn range(&self) -> Option<Range> {
        self.info.iter().find_map(|r| match r {
            InfoRecord::Range(range) => Some(*range),
            _ => None,
        })
    }

    /// The name of the first `FAN_EVENT_INFO_TYPE_NAME` record (the name a
    /// `FAN_PRE_DIR_ACCESS` event looks up); `None` if the event has none.
    pub fn name(&self) -> Option<&std::ffi::OsStr> {
        self.info.iter().find_map(|r| match r {
            InfoRecord::Name(n) => Some(n.as_os_str()),
            _ => None,
        })
    }

    /// The value of the first pidfd record: a descriptor owned by this event
    /// (>= 0), `FAN_NOPIDFD` or `FAN_EPIDFD`.
    pub fn pidfd(&self) -> Option<i32> {
        self.info.iter().find_map(|r| match r {
            InfoRecord::Pidfd(p) => Some(*p),
            _ => None,
        })
    }

    /// Take ownership of the first pidfd (if it is a descriptor).
    pub fn take_pidfd(&mut self) -> Option<OwnedFd> {
        let p = self.pidfd()?;
        let i = self.pidfds.iter().position(|fd| fd.as_raw_fd() == p)?;
        Some(self.pidfds.remove(i))
    }

    /// The `fd` field as the kernel wrote it (a descriptor number, `FAN_NOFD`,
    /// or `-errno` with `FAN_REPORT_FD_ERROR`).
    pub fn raw_fd(&self) -> i32 {
        self.raw_fd
    }

    /// Whether the kernel waits for a response to this event.
    pub fn needs_response(&self) -> bool {
        self.fd.is_some() && self.mask & consts::FAN_PERM_EVENTS != 0
    }

    /// Path of the event fd, via `readlink /proc/self/fd/N`.
    pub fn path(&self) -> std::io::Result<PathBuf> {
        let fd = self.fd.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("event has no fd (raw fd {})", self.raw_fd),
            )
        })?;
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }
}

/// A fanotify group.
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
}

impl AsFd for Fanotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Fanotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Fanotify {
    /// A second handle on the same group (a dup of its fd), e.g. to change
    /// marks while a listener thread owns the first.  The group is released
    /// when the last handle is dropped.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Fanotify {
            fd: self.fd.try_clone()?,
        })
    }

    /// `fanotify_init(flags, event_f_flags)`.
    pub fn init(flags: u32, event_f_flags: u32) -> Result<Self, Error> {
        // SAFETY: plain syscall wrapper without pointers.
        let ret = unsafe { libc::fanotify_init(flags, event_f_flags) };
        let fd = Errno::result(ret).map_err(|source| Error::Init { flags, source })?;
        // SAFETY: on success fanotify_init returns a new descriptor we own.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// `fanotify_mark(fd, flags, mask, AT_FDCWD, path)`.
    pub fn mark<P: AsRef<Path>>(&self, flags: u32, mask: u64, path: P) -> Result<(), Error> {
        self.mark_raw(flags, mask, libc::AT_FDCWD, Some(path.as_ref()))
    }

    /// `fanotify_mark(fd, flags, mask, dirfd, path)`; `None` passes a NULL
    /// pathname, marking `dirfd` itself.
    pub fn mark_fd(
        &self,
        flags: u32,
        mask: u64,
        dirfd: BorrowedFd<'_>,
        path: Option<&Path>,
    ) -> Result<(), Error> {
        self.mark_raw(flags, mask, dirfd.as_raw_fd(), path)
    }

    fn mark_raw(
        &self,
        flags: u32,
        mask: u64,
        dirfd: RawFd,
        path: Option<&Path>,
    ) -> Result<(), Error> {
        let err = |source| Error::Mark {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            mask,
            flags,
            source,
        };
        let cpath = match path {
            Some(p) => {
                Some(CString::new(p.as_os_str().as_bytes()).map_err(|_| err(Errno::EINVAL))?)
            }
            None => None,
        };
        let ptr = cpath.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: `ptr` is NULL or points to a NUL-terminated string that
        // outlives the call.
        let ret = unsafe { libc::fanotify_mark(self.fd.as_raw_fd(), flags, mask, dirfd, ptr) };
        Errno::result(ret).map(drop).map_err(err)
    }

    /// One `read(2)` into a 64 KiB buffer, parsed into events.  A nonblocking
    /// group with nothing queued yields an empty vector.
    ///
    /// On a parse error every descriptor found in the buffer is closed
    /// (pending permission events are denied first) and `Error::Parse` is
    /// returned.
    pub fn read_events(&self) -> Result<Vec<Event>, Error> {
        let mut buf = vec![0u8; READ_BUF_LEN];
        let n = match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(Vec::new()),
            Err(e) => return Err(Error::Read(e)),
        };
        let buf = buf.get(..n).unwrap_or_default();
        events_from_buffer(buf, self.fd.as_raw_fd(), |fd| {
            // Best effort: the group may not be a permission group.
            let _ = self.respond_raw(fd, consts::FAN_DENY);
        })
    }

    /// `poll(2)` for up to `timeout`, then [`read_events`](Self::read_events).
    /// Returns an empty vector on timeout.
    pub fn wait_events(&self, timeout: Duration) -> Result<Vec<Event>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            // Round up so that a sub-millisecond timeout still waits.
            let ms = left.as_micros().div_ceil(1000);
            let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
            match Errno::result(ret) {
                Ok(0) => return Ok(Vec::new()),
                Ok(_) => return self.read_events(),
                Err(Errno::EINTR) if !left.is_zero() => continue,
                Err(Errno::EINTR) => return Ok(Vec::new()),
                Err(e) => return Err(Error::Poll(e)),
            }
        }
    }

    /// Write a response for a permission event.
    pub fn respond(&self, event_fd: BorrowedFd<'_>, response: Response) -> Result<(), Error> {
        self.respond_raw(event_fd.as_raw_fd(), response.to_raw())
    }

    /// Write `struct fanotify_response { fd, response }` verbatim (for tests
    /// sending invalid responses).
    pub fn respond_raw(&self, event_fd: RawFd, response: u32) -> Result<(), Error> {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&event_fd.to_ne_bytes());
        bytes[4..].copy_from_slice(&response.to_ne_bytes());
        let err = |source| Error::Respond {
            fd: event_fd,
            source,
        };
        match nix::unistd::write(&self.fd, &bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(err(Errno::EIO)),
            Err(e) => Err(err(e)),
        }
    }
}

/// What to do with the descriptors of a buffer that failed to parse.
#[derive(Debug, Default, PartialEq, Eq)]
struct Cleanup {
    /// Permission-event fds to answer `FAN_DENY` before closing.
    deny: Vec<RawFd>,
    /// Every descriptor to close, without duplicates.
    close: Vec<RawFd>,
}

/// Descriptors of a failed parse: those of the fully parsed events and the
/// stray ones.  Negative numbers, duplicates and `group_fd` are skipped.
fn cleanup_plan(outcome: &ParseOutcome, group_fd: RawFd) -> Cleanup {
    let mut plan = Cleanup::default();
    let mut seen = HashSet::new();
    let all = outcome
        .events
        .iter()
        .flat_map(|ev| {
            ev.fds().map(move |fd| StrayFd {
                fd,
                needs_response: fd == ev.fd && ev.needs_response(),
            })
        })
        .chain(outcome.stray_fds.iter().copied());
    for s in all {
        if s.fd < 0 || s.fd == group_fd || !seen.insert(s.fd) {
            continue;
        }
        if s.needs_response {
            plan.deny.push(s.fd);
        }
        plan.close.push(s.fd);
    }
    plan
}

/// Turn a `read(2)` buffer into owned events.  `deny` is called for each
/// pending permission fd before it is closed on a parse error.
fn events_from_buffer(
    buf: &[u8],
    group_fd: RawFd,
    mut deny: impl FnMut(RawFd),
) -> Result<Vec<Event>, Error> {
    let outcome = parse_events_partial(buf);
    if let Some(err) = outcome.error.clone() {
        let plan = cleanup_plan(&outcome, group_fd);
        for fd in plan.deny {
            deny(fd);
        }
        for fd in plan.close {
            // SAFETY: the kernel installed this descriptor for us; nothing
            // else owns it and it is closed exactly once (deduplicated).
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        return Err(Error::Parse(err));
    }
    let mut seen = HashSet::new();
    let mut adopt = |fd: i32| -> Option<OwnedFd> {
        if fd < 0 || fd == group_fd || !seen.insert(fd) {
            return None;
        }
        // SAFETY: as above; each number is adopted at most once.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    Ok(outcome
        .events
        .into_iter()
        .map(|ev| {
            let fd = adopt(ev.fd);
            let pidfds = ev
                .info
                .iter()
                .filter_map(|r| match r {
                    InfoRecord::Pidfd(p) => adopt(*p),
                    _ => None,
                })
                .collect();
            Event {
                mask: ev.mask,
                fd,
                pid: ev.pid,
                info: ev.info,
                raw_fd: ev.fd,
                pidfds,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
