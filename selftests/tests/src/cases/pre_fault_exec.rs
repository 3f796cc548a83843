//! pre_fault_exec: a lazy (FAN_PRE_ACCESS | FAN_PRE_FAULT) copy of a real
//! program, executed in fault-time mode, runs and prints what the original
//! prints, while the HSM fills only what it touches: every FAN_PRE_FAULT comes
//! from the program's own process, each is at most one readahead window
//! (read_ahead_kb set to 64 before the exec), the announced ranges together
//! are less than the file, and nothing of the program is in the page cache
//! outside them.  Afterwards the file reads back as the original.
//!
//! Guards the cover letter's introduction and Design (an HSM fetches only the
//! pages of an executable that a program touches, not the whole file at
//! mmap() time) and the fault-path matrix's exec row of the review's test
//! list.  The base kernel has no FAN_PRE_FAULT (TCONF).

use crate::common::*;
use fanotify::consts::*;
use fanotify::{Range, Response};
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tinfo, Ctx, Fs, Test};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub const TEST: Test = Test {
    name: "pre_fault_exec",
    doc: "a lazy copy of a real program runs in fault-time mode; only windows around touched pages are filled",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        (
            "cover-letter",
            "Design: a mark that has FAN_PRE_FAULT gets it for each range a page fault reads",
        ),
        ("cover-letter", "Fault-path matrix"),
    ],
    run,
    ..Test::DEFAULT
};

/// The readahead window set for the run, in KiB.
const RA_KB: u64 = 64;

/// A program large enough that one invocation touches only part of it, and
/// its arguments.
fn program() -> (PathBuf, &'static [&'static str]) {
    let candidates: [(&str, &[&str]); 3] = [
        ("/usr/bin/git", &["--version"]),
        ("/usr/bin/perl", &["-e", "print qq(fpc-exec-ok\\n)"]),
        ("/usr/bin/bash", &["-c", "echo fpc-exec-ok"]),
    ];
    for (p, args) in candidates {
        if Path::new(p).exists() {
            return (PathBuf::from(p), args);
        }
    }
    tbrok!("none of git, perl, bash to copy")
}

/// The read_ahead_kb file of the bdi of the filesystem at `mnt`: the loop
/// device's queue, or btrfs's own bdi.
fn read_ahead_kb_file(fs: Fs, mnt: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").or_brok("read mountinfo");
    let want = mnt.to_string_lossy();
    let source = info
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            (point == want).then(|| post.split_whitespace().nth(1).map(str::to_string))?
        })
        .next_back()
        .unwrap_or_else(|| tbrok!("{} is not in /proc/self/mountinfo", mnt.display()));
    let dev = source.trim_start_matches("/dev/").to_string();
    if fs != Fs::Btrfs {
        return PathBuf::from(format!("/sys/block/{dev}/queue/read_ahead_kb"));
    }
    for d in std::fs::read_dir("/sys/fs/btrfs")
        .or_brok("read /sys/fs/btrfs")
        .flatten()
    {
        if d.path().join("devices").join(&dev).exists() {
            return d.path().join("bdi").join("read_ahead_kb");
        }
    }
    tbrok!("no /sys/fs/btrfs/*/devices/{dev}")
}

fn run(ctx: &Ctx) {
    let fs = ctx.fs.unwrap_or_else(|| tbrok!("no test filesystem"));
    let (prog, args) = program();
    let bytes = std::fs::read(&prog).or_brok("read the program");
    let size = bytes.len() as u64;
    let want_out = Command::new(&prog)
        .args(args)
        .output()
        .or_brok("run the original program");
    let ra = read_ahead_kb_file(fs, &ctx.mnt);
    std::fs::write(&ra, format!("{RA_KB}")).or_brok(&format!("write {}", ra.display()));

    let path = ctx.path("lazy-prog");
    create_sparse_file(&path, size);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).or_brok("chmod");
    let source = Arc::new(bytes.clone());
    let src = source.clone();
    let listener = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            let (Some(fd), Some(r)) = (&ctx.event.fd, ctx.event.range()) else {
                return Response::Allow;
            };
            let end = (r.offset + r.count).min(src.len() as u64) as usize;
            let start = (r.offset as usize).min(end);
            match nix::sys::uio::pwrite(fd, &src[start..end], start as i64) {
                Ok(_) => Response::Allow,
                Err(_) => Response::DenyErrno(libc::EIO),
            }
        }),
    );
    let child = Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .or_brok("run the lazy program");
    let pid = child.id() as i32;
    let out = child
        .wait_with_output()
        .or_brok("wait for the lazy program");
    let seen = listener.stop();
    tcheck!(
        out.status.success() && out.stdout == want_out.stdout,
        "{}: the lazy copy ran and printed what the original prints ({:?}, {:?})",
        prog.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let faults: Vec<&Seen> = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).collect();
    let announced: Vec<Range> = seen.iter().filter_map(|s| s.range).collect();
    let total: u64 = announced.iter().map(|r| r.count).sum();
    tinfo!(
        "{} FAN_PRE_FAULT and {} other events, {total} of {size} bytes announced",
        faults.len(),
        seen.len() - faults.len()
    );
    tcheck!(
        !faults.is_empty(),
        "the program's page faults sent FAN_PRE_FAULT ({} events)",
        faults.len()
    );
    let strangers: Vec<i32> = faults
        .iter()
        .filter(|s| s.pid != pid)
        .map(|s| s.pid)
        .collect();
    tcheck!(
        strangers.is_empty(),
        "every FAN_PRE_FAULT came from the program's process {pid} (others: {strangers:?})"
    );
    let big: Vec<Range> = faults
        .iter()
        .filter_map(|s| s.range)
        .filter(|r| r.count > RA_KB * 1024)
        .collect();
    tcheck!(
        big.is_empty(),
        "every FAN_PRE_FAULT range is at most one {RA_KB} KiB readahead window ({big:?})"
    );
    tcheck!(
        total < size,
        "the announced ranges ({total} bytes) are less than the program ({size} bytes)"
    );
    let f = std::fs::File::open(&path).or_brok("open the lazy program");
    let outside = cached_outside(&f, &announced, size);
    tcheck!(
        outside == 0,
        "{outside} pages of the program are cached outside the announced ranges"
    );
    drop(f);
    // A new fd announces what it reads: the file is then filled whole.
    let l2 = Listener::start(
        lazy_group(&path, FAN_MARK_INODE),
        Box::new(move |ctx| {
            let (Some(fd), Some(r)) = (&ctx.event.fd, ctx.event.range()) else {
                return Response::Allow;
            };
            let end = (r.offset + r.count).min(source.len() as u64) as usize;
            let start = (r.offset as usize).min(end);
            match nix::sys::uio::pwrite(fd, &source[start..end], start as i64) {
                Ok(_) => Response::Allow,
                Err(_) => Response::DenyErrno(libc::EIO),
            }
        }),
    );
    let f = std::fs::File::open(&path).or_brok("open the lazy program");
    let mut content = vec![0u8; bytes.len()];
    f.read_exact_at(&mut content, 0)
        .or_brok("read the program back");
    drop(l2);
    tcheck!(
        content == bytes,
        "the lazy program reads back as the original"
    );
}
