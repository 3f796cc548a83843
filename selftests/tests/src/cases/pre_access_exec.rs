//! pre_access_exec: the exec/ETXTBSY rule of pre-content watched files.  An
//! HSM must be able to write a file while it is being executed, so a file
//! watched for pre-content events can be executed while open for write; an
//! unwatched file open for write still gives ETXTBSY.  Exec of a watched file
//! sends FAN_PRE_ACCESS events, which the listener allows.
//!
//! Guards mainline semantics (cover letter, Design: without FAN_PRE_FAULT
//! nothing changes), as LTP fanotify24 checks them.

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const TEST: Test = Test {
    name: "pre_access_exec",
    doc: "a pre-content watched file can be exec'd while open for write; unwatched gives ETXTBSY",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: ltp::fs::HSM_FILESYSTEMS,
    tags: &[
        (
            "cover-letter",
            "Design: without FAN_PRE_FAULT nothing changes",
        ),
        ("ltp", "fanotify24"),
    ],
    run,
    ..Test::DEFAULT
};

/// Exec `path` in a child; Ok(exit code) or Err(errno of execve).
fn exec_in_child(path: &Path) -> Result<i32, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).or_brok("path");
    // SAFETY: the child only calls async-signal-safe functions (execve, _exit).
    match unsafe { fork() }.or_brok("fork") {
        ForkResult::Child => {
            let argv = [p.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: argv and envp are NULL-terminated arrays of C strings.
            unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            // SAFETY: _exit is always safe; 100 + errno marks an execve failure.
            unsafe { libc::_exit(100 + *libc::__errno_location()) }
        }
        ForkResult::Parent { child } => match waitpid(child, None).or_brok("waitpid") {
            WaitStatus::Exited(_, c) if c >= 100 => Err(c - 100),
            WaitStatus::Exited(_, c) => Ok(c),
            s => ltp::tbrok!("exec child: {s:?}"),
        },
    }
}

fn run(ctx: &Ctx) {
    let prog = ctx.path("true");
    std::fs::copy("/bin/true", &prog).or_brok("copy /bin/true");
    for watched in [true, false] {
        let l = watched.then(|| {
            Listener::answering(
                pre_content_group(&prog, FAN_MARK_INODE, FAN_PRE_ACCESS),
                Response::Allow,
            )
        });
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&prog)
            .or_brok("open for write");
        let got = exec_in_child(&prog);
        drop(writer);
        let seen = l.map(|l| l.stop()).unwrap_or_default();
        match (watched, got) {
            (true, Ok(0)) if !seen.is_empty() => {
                tpass!(
                    "watched: exec while open for write succeeded ({} pre-access events)",
                    seen.len()
                )
            }
            (false, Err(libc::ETXTBSY)) => {
                tpass!("unwatched: exec while open for write gave ETXTBSY")
            }
            _ => tfail!(
                "watched={watched}: exec gave {got:?} with {} events",
                seen.len()
            ),
        }
    }
}
