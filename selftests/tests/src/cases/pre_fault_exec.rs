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
use fanotify::Range;
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
    let listener = Listener::copying(lazy_group(&path, FAN_MARK_INODE), source.clone());
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
    let l2 = Listener::copying(lazy_group(&path, FAN_MARK_INODE), source);
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
