//! pre_fault_deny: a FAN_PRE_FAULT answered FAN_DENY_ERRNO(EIO) fails the
//! fault: a user access gets SIGBUS; a kernel access through the mapping
//! (write(2) from it, read(2) into a private writable copy of it,
//! MADV_POPULATE_READ) fails with EFAULT; nothing hangs, and exactly one
//! event is sent per denied fault (the retried fault sends none).
//!
//! Guards the cover letter's Design (a denied event gives SIGBUS / EFAULT; the
//! retried, FAULT_FLAG_TRIED fault sends no second event) and the denied
//! column of its fault-path matrix.

use crate::common::*;
use fanotify::consts::*;
use fanotify::Response;
use ltp::res::OrBrok;
use ltp::{texp_fail, tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

pub const TEST: Test = Test {
    name: "pre_fault_deny",
    doc:
        "denied FAN_PRE_FAULT: SIGBUS for a user fault, EFAULT for kernel accesses, one event each",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs],
    tags: &[
        ("cover-letter", "Fault-path matrix: the denied (EIO) column"),
        (
            "cover-letter",
            "Design: a denied event fails the retried fault (SIGBUS / EFAULT)",
        ),
    ],
    run,
    ..Test::DEFAULT
};

#[derive(Clone, Copy, Debug)]
enum Access {
    UserLoad,
    WriteFromMapping,
    ReadIntoPrivateMapping,
    MadvPopulateRead,
}

const CASES: &[Access] = &[
    Access::UserLoad,
    Access::WriteFromMapping,
    Access::ReadIntoPrivateMapping,
    Access::MadvPopulateRead,
];

fn run(ctx: &Ctx) {
    let src = ctx.path("src");
    create_pattern_file(&src, 16 * page_size());
    for &a in CASES {
        let path = ctx.path("stub");
        create_sparse_file(&path, 64 * page_size());
        let l = Listener::answering(
            lazy_group(&path, FAN_MARK_INODE),
            Response::DenyErrno(libc::EIO),
        );
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(&path)
            .or_brok("open");
        match a {
            Access::UserLoad => {
                let st = in_child(|| {
                    // The Rust runtime's SIGBUS handler (stack overflow
                    // detection) returns for other addresses, which would
                    // run the access, and its fault, a second time.
                    // SAFETY: restoring the default action is always sound.
                    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
                    let m = Map::new(&f, 0, 64, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
                        .expect("mmap");
                    m.touch(10);
                    0
                });
                match st {
                    WaitStatus::Signaled(_, Signal::SIGBUS, _) => tpass!("{a:?}: SIGBUS"),
                    other => tfail!("{a:?}: want death by SIGBUS, got {other:?}"),
                }
            }
            Access::WriteFromMapping => {
                let m =
                    Map::new(&f, 0, 64, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
                let (_r, w) = nix::unistd::pipe().or_brok("pipe");
                let res = nix::unistd::write(
                    &w,
                    &m.as_slice()[10 * page_size() as usize..11 * page_size() as usize],
                );
                check_efault(a, res.map(|_| ()));
            }
            Access::ReadIntoPrivateMapping => {
                let m = Map::new(
                    &f,
                    0,
                    64,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE,
                )
                .or_brok("mmap");
                let s = std::fs::File::open(&src).or_brok("open src");
                // SAFETY: reading into a private writable mapping we own.
                let res = nix::Error::result(unsafe {
                    libc::pread(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        m.addr(10).cast(),
                        page_size() as usize,
                        0,
                    )
                });
                check_efault(a, res.map(|_| ()));
            }
            Access::MadvPopulateRead => {
                let m =
                    Map::new(&f, 0, 64, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
                // SAFETY: advice on a mapping we own; it only faults pages in.
                let res = nix::errno::Errno::result(unsafe {
                    libc::madvise(
                        m.addr(10).cast(),
                        page_size() as usize,
                        libc::MADV_POPULATE_READ,
                    )
                });
                // The documented errno only (Documentation: "Outcome of a
                // denied fault").
                texp_fail!(res, Errno::EFAULT, "{a:?}");
            }
        }
        let seen = l.stop();
        log_seen(&format!("{a:?}"), &seen);
        let faults: Vec<_> = seen.iter().filter(|s| s.mask == FAN_PRE_FAULT).collect();
        if faults.len() == 1 {
            tpass!("{a:?}: exactly one FAN_PRE_FAULT (the retried fault sent none)");
        } else {
            tfail!("{a:?}: {} FAN_PRE_FAULT events, want 1", faults.len());
        }
        std::fs::remove_file(&path).or_brok("unlink");
    }
    tinfo!("done");
}

fn check_efault(a: Access, res: nix::Result<()>) {
    texp_fail!(res, Errno::EFAULT, "{a:?}");
}
