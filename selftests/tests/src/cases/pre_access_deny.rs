//! pre_access_deny: a FAN_PRE_ACCESS answered FAN_DENY fails read() with
//! EPERM, and FAN_DENY_ERRNO(e) with e for every errno the kernel allows
//! (EIO, EPERM, EBUSY, ETXTBSY, EAGAIN, ENOSPC, EDQUOT); a response with any
//! other errno is refused with EINVAL and the event stays pending.
//!
//! Guards mainline semantics the series keeps (cover letter, Design: without
//! FAN_PRE_FAULT nothing changes) and the errno set that a denied fault
//! event maps to SIGBUS/EFAULT (Design).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{tbrok, texp_fail, tfail, tpass, Ctx, Test};
use nix::errno::Errno;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_access_deny",
    doc: "FAN_DENY / FAN_DENY_ERRNO(e) fail read() with EPERM / e; invalid errnos are refused",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[ltp::Fs::Ext4],
    tags: &[
        (
            "cover-letter",
            "Design: without FAN_PRE_FAULT nothing changes",
        ),
        (
            "cover-letter",
            "Design: a denied event fails the retried fault (SIGBUS / EFAULT)",
        ),
        (
            "kernel",
            "include/uapi/linux/fanotify.h: FAN_DENY_ERRNO (mainline since v6.14)",
        ),
        ("ltp", "fanotify24"),
    ],
    run,
    ..Test::DEFAULT
};

const ALLOWED: &[(Response, Errno)] = &[
    (Response::Deny, Errno::EPERM),
    (Response::DenyErrno(libc::EIO), Errno::EIO),
    (Response::DenyErrno(libc::EPERM), Errno::EPERM),
    (Response::DenyErrno(libc::EBUSY), Errno::EBUSY),
    (Response::DenyErrno(libc::ETXTBSY), Errno::ETXTBSY),
    (Response::DenyErrno(libc::EAGAIN), Errno::EAGAIN),
    (Response::DenyErrno(libc::ENOSPC), Errno::ENOSPC),
    (Response::DenyErrno(libc::EDQUOT), Errno::EDQUOT),
];

const REFUSED: &[i32] = &[libc::EINVAL, libc::ENOENT, libc::EFAULT, libc::EACCES];

fn read_errno(path: &std::path::Path) -> Result<(), Errno> {
    let f = std::fs::File::open(path).or_brok("open");
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 0)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

fn run(ctx: &Ctx) {
    let path = ctx.path("deny");
    create_pattern_file(&path, 8192);
    for &(resp, want) in ALLOWED {
        let group = pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS);
        let l = Listener::answering(group, resp);
        let got = read_errno(&path);
        let seen = l.stop();
        if got == Err(want) && seen.len() == 1 {
            tpass!("{resp:?}: read() failed with {want}");
        } else {
            tfail!("{resp:?}: read() gave {got:?}, want Err({want}); events {seen:?}");
        }
    }
    // Invalid errnos: the response write fails with EINVAL; the event is
    // then still pending and a valid answer releases the reader.
    for &e in REFUSED {
        let group = pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS);
        let p2 = path.clone();
        let reader = std::thread::spawn(move || read_errno(&p2));
        let mut evs = group
            .wait_events(Duration::from_secs(10))
            .or_brok("read events");
        if evs.is_empty() {
            tbrok!("no event for the reader within 10 s");
        }
        let ev = evs.remove(0);
        let fd = ev.fd.as_ref().unwrap_or_else(|| tbrok!("event without fd"));
        let raw = FAN_DENY | (((e as u32) & 0xff) << 24);
        texp_fail!(
            group.respond_raw(std::os::fd::AsRawFd::as_raw_fd(fd), raw),
            Errno::EINVAL,
            "FAN_DENY_ERRNO({e}) response"
        );
        group
            .respond(fd.as_fd(), Response::Allow)
            .or_brok("allow after refused response");
        match reader.join() {
            Ok(Ok(())) => tpass!("after the refused response, FAN_ALLOW released the reader"),
            other => tfail!("reader after FAN_ALLOW: {other:?}"),
        }
    }
}
