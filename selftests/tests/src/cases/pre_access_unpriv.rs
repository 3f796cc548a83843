//! pre_access_unpriv: an unprivileged process cannot create a pre-content
//! group (EPERM: pre-content listeners block other processes' I/O and need
//! CAP_SYS_ADMIN), while the unprivileged notification group it may create
//! (FAN_CLASS_NOTIF | FAN_REPORT_FID) still works as a control.
//!
//! Guards mainline semantics (cover letter, Design: without FAN_PRE_FAULT
//! nothing changes); the fault-time opt-in must not open a way around it.

use fanotify::consts::*;
use fanotify::Fanotify;
use ltp::res::OrBrok;
use ltp::{texp_fail, texp_pass, Ctx, Test};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setgid, setgroups, setuid, ForkResult, Gid, Uid};

pub const TEST: Test = Test {
    name: "pre_access_unpriv",
    doc: "unprivileged FAN_CLASS_PRE_CONTENT fanotify_init gives EPERM",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    tags: &[(
        "cover-letter",
        "Design: without FAN_PRE_FAULT nothing changes",
    )],
    run,
    ..Test::DEFAULT
};

const CASES: &[(&str, u32, Result<(), Errno>)] = &[
    (
        "FAN_CLASS_PRE_CONTENT",
        FAN_CLASS_PRE_CONTENT,
        Err(Errno::EPERM),
    ),
    ("FAN_CLASS_CONTENT", FAN_CLASS_CONTENT, Err(Errno::EPERM)),
    (
        "control: FAN_CLASS_NOTIF|FAN_REPORT_FID",
        FAN_CLASS_NOTIF | FAN_REPORT_FID,
        Ok(()),
    ),
];

/// fanotify_init as user nobody in a child; the errno comes back as exit code.
fn init_as_nobody(flags: u32) -> Result<(), Errno> {
    // SAFETY: the child drops privileges, makes one syscall and _exit()s.
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            let code = (|| {
                setgroups(&[]).ok()?;
                setgid(Gid::from_raw(65534)).ok()?;
                setuid(Uid::from_raw(65534)).ok()?;
                Some(match Fanotify::init(flags, libc::O_RDONLY as u32) {
                    Ok(_) => 0,
                    Err(e) => e.errno().map(|e| e as i32).unwrap_or(254),
                })
            })()
            .unwrap_or(255);
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).or_brok("waitpid") {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, 255) => ltp::tbrok!("could not drop privileges"),
            WaitStatus::Exited(_, c) => Err(Errno::from_raw(c)),
            s => ltp::tbrok!("child: {s:?}"),
        },
    }
}

fn run(_ctx: &Ctx) {
    for &(what, flags, want) in CASES {
        let got = init_as_nobody(flags);
        match want {
            Ok(()) => {
                texp_pass!(got, "unprivileged {what}");
            }
            Err(e) => {
                texp_fail!(got, e, "unprivileged {what}");
            }
        }
    }
}
