//! pre_dir_mark: where a FAN_PRE_DIR_ACCESS mark is accepted and refused,
//! as patch 9 of the series specifies it:
//! - only in a FAN_CLASS_PRE_CONTENT group (FAN_CLASS_NOTIF and
//!   FAN_CLASS_CONTENT: EINVAL);
//! - an inode mark only on a directory (a regular file: ENOTDIR; a fifo:
//!   ENOTDIR or EINVAL, the existing rule for pre-content marks on fifos);
//! - with FAN_ONDIR in the mask: EINVAL (inode and filesystem mark);
//! - on tmpfs, which has no pre-content support: EOPNOTSUPP (inode,
//!   filesystem and mount mark);
//! - mount and filesystem marks: accepted;
//! - the "populated" opt-out, an inode ignore mark (FAN_MARK_IGNORE) on a
//!   directory: accepted with FAN_MARK_IGNORED_SURV_MODIFY (also with
//!   FAN_MARK_EVICTABLE), EISDIR without it (the existing rule for ignore
//!   marks on directories).
//!
//! Each accepted mark is read back from /proc/self/fdinfo of the group:
//! FAN_PRE_DIR_ACCESS is in its mask (its ignored mask for the ignore rows).
//! On the unpatched kernel every row would fail with EINVAL, the bit being
//! unknown: the probe TCONFs there ("FAN_PRE_DIR_ACCESS not supported").
//!
//! Guards the mark rules of the cover letter's "Directory pre-content
//! events" (issue 16).

use super::pre_dir_util;
use crate::common::*;
use fanotify::consts::*;
use fanotify::Fanotify;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};
use nix::errno::Errno;
use std::path::Path;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "pre_dir_mark",
    doc: "FAN_PRE_DIR_ACCESS marks: pre-content class, directories only, no FAN_ONDIR, not tmpfs; mount, filesystem and ignore marks",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_TMPFS"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(pre_dir_util::probe),
    timeout: Duration::from_secs(60),
    tags: &[
        ("issue", "16: lazy directories (FAN_PRE_DIR_ACCESS), the mark rules"),
        (
            "cover-letter",
            "Directory pre-content events: FAN_CLASS_PRE_CONTENT only, directories, no FAN_ONDIR, tmpfs EOPNOTSUPP, the ignore mark",
        ),
    ],
    run,
    ..Test::DEFAULT
};

/// What a row marks.
#[derive(Debug, Clone, Copy)]
enum Target {
    Dir,
    File,
    Fifo,
    /// The test filesystem's mount point (mount and filesystem marks).
    Mnt,
    /// The root of a tmpfs mounted for the test.
    TmpfsDir,
}

/// Where an accepted mark must show FAN_PRE_DIR_ACCESS.
#[derive(Debug, Clone, Copy, PartialEq)]
enum In {
    Mask,
    Ignored,
}

struct Row {
    what: &'static str,
    init: u32,
    flags: u32,
    mask: u64,
    target: Target,
    want: Result<In, &'static [Errno]>,
}

const DIR: u64 = FAN_PRE_DIR_ACCESS;
const IGNORE: u32 = FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY;

const ROWS: &[Row] = &[
    Row {
        what: "inode mark on a directory",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::Dir,
        want: Ok(In::Mask),
    },
    Row {
        what: "FAN_CLASS_NOTIF group",
        init: FAN_CLASS_NOTIF,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::Dir,
        want: Err(&[Errno::EINVAL]),
    },
    Row {
        what: "FAN_CLASS_CONTENT group",
        init: FAN_CLASS_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::Dir,
        want: Err(&[Errno::EINVAL]),
    },
    Row {
        what: "inode mark on a regular file",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::File,
        want: Err(&[Errno::ENOTDIR]),
    },
    Row {
        what: "inode mark on a fifo",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::Fifo,
        want: Err(&[Errno::ENOTDIR, Errno::EINVAL]),
    },
    Row {
        what: "FAN_ONDIR, inode mark on a directory",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR | FAN_ONDIR,
        target: Target::Dir,
        want: Err(&[Errno::EINVAL]),
    },
    Row {
        what: "FAN_ONDIR, filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: DIR | FAN_ONDIR,
        target: Target::Mnt,
        want: Err(&[Errno::EINVAL]),
    },
    Row {
        what: "tmpfs directory, inode mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: DIR,
        target: Target::TmpfsDir,
        want: Err(&[Errno::EOPNOTSUPP]),
    },
    Row {
        what: "tmpfs, filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: DIR,
        target: Target::TmpfsDir,
        want: Err(&[Errno::EOPNOTSUPP]),
    },
    Row {
        what: "tmpfs, mount mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_MOUNT,
        mask: DIR,
        target: Target::TmpfsDir,
        want: Err(&[Errno::EOPNOTSUPP]),
    },
    Row {
        what: "mount mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_MOUNT,
        mask: DIR,
        target: Target::Mnt,
        want: Ok(In::Mask),
    },
    Row {
        what: "filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: DIR,
        target: Target::Mnt,
        want: Ok(In::Mask),
    },
    Row {
        what: "ignore mark (FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY) on a directory",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE | IGNORE,
        mask: DIR,
        target: Target::Dir,
        want: Ok(In::Ignored),
    },
    Row {
        what: "evictable ignore mark on a directory",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE | IGNORE | FAN_MARK_EVICTABLE,
        mask: DIR,
        target: Target::Dir,
        want: Ok(In::Ignored),
    },
    Row {
        what: "ignore mark on a directory without FAN_MARK_IGNORED_SURV_MODIFY",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE | FAN_MARK_IGNORE,
        mask: DIR,
        target: Target::Dir,
        want: Err(&[Errno::EISDIR]),
    },
];

fn target<'a>(objs: &'a MarkObjects, tmpfs: &'a Path, t: Target) -> &'a Path {
    match t {
        Target::Dir => objs.path(Obj::Dir),
        Target::File => objs.path(Obj::File),
        Target::Fifo => objs.path(Obj::Fifo),
        Target::Mnt => objs.path(Obj::Mnt),
        Target::TmpfsDir => tmpfs,
    }
}

fn run(ctx: &Ctx) {
    // Marks only: the objects' content does not matter.
    let objs = MarkObjects::new(ctx, page_size());
    let tmpfs = objs
        .path(Obj::TmpfsFile)
        .parent()
        .unwrap_or_else(|| ltp::tbrok!("the tmpfs file has no parent"))
        .to_path_buf();
    for r in ROWS {
        let g =
            Fanotify::init(r.init | FAN_CLOEXEC, libc::O_RDONLY as u32).or_brok("fanotify_init");
        let got = g
            .mark(
                FAN_MARK_ADD | r.flags,
                r.mask,
                target(&objs, &tmpfs, r.target),
            )
            .map_err(|e| e.errno().unwrap_or(Errno::UnknownErrno));
        match (r.want, got) {
            (Ok(place), Ok(())) => {
                let marks = marks_of(&g);
                let shown = marks.iter().any(|&(mask, ignored)| {
                    let bits = if place == In::Mask { mask } else { ignored };
                    bits & FAN_PRE_DIR_ACCESS != 0
                });
                if shown {
                    tpass!(
                        "{}: accepted, FAN_PRE_DIR_ACCESS in its {}",
                        r.what,
                        if place == In::Mask {
                            "mask"
                        } else {
                            "ignored mask"
                        }
                    );
                } else {
                    tfail!(
                        "{}: accepted, but the group's marks (mask, ignored mask) are {marks:x?}",
                        r.what
                    );
                }
            }
            (Err(want), Err(e)) if want.contains(&e) => {
                tpass!("{}: refused with {e}", r.what)
            }
            (want, got) => tfail!(
                "{}: fanotify_mark gave {got:?}, want {}",
                r.what,
                match want {
                    Ok(_) => "success".to_string(),
                    Err(w) => format!("{w:?}"),
                }
            ),
        }
    }
}
