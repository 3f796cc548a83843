//! Kernel log checks.  A [`Kmsg`] is opened (at the end of the log) before a
//! test; [`Kmsg::bad_lines`] afterwards returns every new record that shows a
//! kernel warning, bug, lockdep or KASAN report.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{lseek, read, Whence};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Markers of a kernel problem.  Lockdep, RCU and KCSAN reports start with
/// "WARNING:" or "BUG:" themselves; the rest are listed for completeness.
const BAD: &[&str] = &[
    "WARNING:",
    "BUG:",
    "BUG kmalloc",
    "kernel BUG at",
    "Oops",
    "general protection fault",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "KASAN:",
    "UBSAN:",
    "Kernel panic",
    "INFO: task",
    "INFO: rcu_",
    "hung_task",
    "Call Trace:",
];

/// Is this kernel log message a sign of a kernel problem?
pub fn is_bad(msg: &str) -> bool {
    BAD.iter().any(|m| msg.contains(m))
}

pub struct Kmsg {
    fd: OwnedFd,
}

impl Kmsg {
    /// Open /dev/kmsg positioned after the last record.
    pub fn open_at_end() -> Result<Self> {
        let raw = open(
            "/dev/kmsg",
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("open /dev/kmsg")?;
        // SAFETY: open() just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        lseek(fd.as_raw_fd(), 0, Whence::SeekEnd).context("seek /dev/kmsg")?;
        Ok(Kmsg { fd })
    }

    /// Every message logged since the last call (or the open).  An error
    /// other than "no more records" (EAGAIN) or "records overwritten"
    /// (EPIPE) means the log cannot be checked.
    pub fn read_new(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match read(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "prio,seq,time,flags;message\n continuation..."
                    let msg = rec.split_once(';').map(|x| x.1).unwrap_or(&rec);
                    out.push(msg.lines().next().unwrap_or("").to_string());
                }
                // EPIPE: records were overwritten; go on from the next one.
                Err(Errno::EPIPE) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("read /dev/kmsg"),
            }
        }
        Ok(out)
    }

    /// New messages that show a kernel problem.
    pub fn bad_lines(&self) -> Result<Vec<String>> {
        Ok(self.read_new()?.into_iter().filter(|m| is_bad(m)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        let cases = [
            (
                "WARNING: CPU: 1 PID: 77 at fs/notify/fsnotify.c:123 foo+0x1/0x2",
                true,
            ),
            (
                "WARNING: possible circular locking dependency detected",
                true,
            ),
            ("BUG: sleeping function called from invalid context", true),
            ("BUG: KASAN: slab-use-after-free in bar", true),
            (
                "INFO: task a.out:99 blocked for more than 120 seconds.",
                true,
            ),
            (
                "EXT4-fs (loop0): mounted filesystem with ordered data mode",
                false,
            ),
            ("XFS (loop0): Mounting V5 Filesystem", false),
            ("loop0: detected capacity change from 0 to 614400", false),
        ];
        for (msg, want) in cases {
            assert_eq!(is_bad(msg), want, "{msg}");
        }
    }
}
