//! pre_access_mark_errors: where pre-content marks are refused.  Pre-content
//! events need a FAN_CLASS_PRE_CONTENT group (EINVAL otherwise), a filesystem
//! with SB_I_ALLOW_HSM (EOPNOTSUPP on tmpfs), a regular file or directory
//! (EINVAL on a fifo), no FAN_ONDIR (EINVAL), and no FID reporting (EINVAL at
//! fanotify_init).
//!
//! Guards mainline semantics (cover letter, Design: without FAN_PRE_FAULT
//! nothing changes); the same validation must cover the series' opt-in bit.
//! LTP fanotify14 checks the class rules.

use crate::common::*;
use fanotify::consts::*;
use fanotify::Fanotify;
use ltp::res::OrBrok;
use ltp::{texp_fail, tfail, tpass, Ctx, Fs, Test};
use nix::errno::Errno;

pub const TEST: Test = Test {
    name: "pre_access_mark_errors",
    doc:
        "pre-content marks refused on tmpfs, non-regular files, wrong class, FAN_ONDIR, FID groups",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_TMPFS"],
    filesystems: &[Fs::Ext4],
    tags: &[
        (
            "cover-letter",
            "Design: without FAN_PRE_FAULT nothing changes",
        ),
        ("ltp", "fanotify14"),
    ],
    run,
    ..Test::DEFAULT
};

struct Case {
    what: &'static str,
    init: u32,
    mark: u32,
    mask: u64,
    obj: Obj,
    want: Result<(), Errno>,
}

const CASES: &[Case] = &[
    Case {
        what: "control: regular file on ext4",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::File,
        want: Ok(()),
    },
    Case {
        what: "control: directory",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::Dir,
        want: Ok(()),
    },
    Case {
        what: "tmpfs inode mark",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::TmpfsFile,
        want: Err(Errno::EOPNOTSUPP),
    },
    Case {
        what: "tmpfs filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_FILESYSTEM,
        mask: FAN_PRE_ACCESS,
        obj: Obj::TmpfsFile,
        want: Err(Errno::EOPNOTSUPP),
    },
    Case {
        what: "fifo",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::Fifo,
        want: Err(Errno::EINVAL),
    },
    Case {
        what: "FAN_ONDIR",
        init: FAN_CLASS_PRE_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS | FAN_ONDIR,
        obj: Obj::Dir,
        want: Err(Errno::EINVAL),
    },
    Case {
        what: "FAN_CLASS_NOTIF group",
        init: FAN_CLASS_NOTIF,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
    Case {
        what: "FAN_CLASS_CONTENT group",
        init: FAN_CLASS_CONTENT,
        mark: FAN_MARK_INODE,
        mask: FAN_PRE_ACCESS,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
];

fn run(ctx: &Ctx) {
    // Marks only: the files' content does not matter.
    let objs = MarkObjects::new(ctx, page_size());
    for c in CASES {
        let obj = objs.path(c.obj);
        let g =
            Fanotify::init(c.init | FAN_CLOEXEC, libc::O_RDONLY as u32).or_brok("fanotify_init");
        let got = g
            .mark(FAN_MARK_ADD | c.mark, c.mask, obj)
            .map_err(|e| e.errno().unwrap_or(Errno::UnknownErrno));
        if got == c.want {
            tpass!("{}: fanotify_mark gave {:?}", c.what, got);
        } else if c.want.is_ok() && got == Err(Errno::EINVAL) {
            ltp::tconf!("{}: kernel has no FAN_PRE_ACCESS", c.what);
        } else {
            tfail!("{}: fanotify_mark gave {got:?}, want {:?}", c.what, c.want);
        }
    }
    for (what, flags) in [
        ("FAN_REPORT_FID", FAN_REPORT_FID),
        ("FAN_REPORT_DIR_FID", FAN_REPORT_DIR_FID),
    ] {
        texp_fail!(
            Fanotify::init(FAN_CLASS_PRE_CONTENT | flags, libc::O_RDONLY as u32),
            Errno::EINVAL,
            "pre-content group with {what}"
        );
    }
}
