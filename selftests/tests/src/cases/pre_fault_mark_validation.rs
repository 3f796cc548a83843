//! pre_fault_mark_validation: where a FAN_PRE_FAULT mark is accepted and
//! refused, and that the mark types other than an inode mark work.
//!
//! Case 0, fanotify_mark(2) with FAN_PRE_FAULT, as fanotify_mark(2) in
//! Documentation/filesystems/fanotify-pre-fault.rst and do_fanotify_mark()
//! (patches 0001 and 0004) have it:
//! - without FAN_PRE_ACCESS in the same mask: EINVAL (also with another
//!   permission event, and on a filesystem mark);
//! - with FAN_ONDIR: EINVAL;
//! - on a directory (inode mark, with or without FAN_EVENT_ON_CHILD):
//!   accepted, "a regular file or directory"; on a fifo: EINVAL;
//! - on tmpfs (inode, filesystem and mount mark): EOPNOTSUPP;
//! - in a FAN_CLASS_NOTIF or FAN_CLASS_CONTENT group: EINVAL;
//! - in an ignore mask (FAN_MARK_IGNORE, with or without
//!   FAN_MARK_IGNORED_SURV_MODIFY) alone, without FAN_PRE_ACCESS: accepted
//!   (patch 0004; v1 refused it with EINVAL);
//! - filesystem and mount marks with FAN_PRE_ACCESS | FAN_PRE_FAULT:
//!   accepted.
//!
//! Each accepted mark is read back from /proc/self/fdinfo of the group:
//! FAN_PRE_FAULT is in its mask (its ignored mask for the ignore rows).
//! The same rules for FAN_PRE_ACCESS alone (its controls, fifo, tmpfs,
//! FAN_ONDIR, classes, FID groups) are in pre_access_mark_errors; an inode
//! ignore mark of FAN_PRE_ACCESS | FAN_PRE_FAULT under a filesystem mark is
//! in pre_fault_leave (case 0).
//!
//! Case 1: FAN_MARK_REMOVE of FAN_PRE_ACCESS removes FAN_PRE_FAULT too
//! (patch 0001): the mark, kept alive by FAN_OPEN_PERM, loses both bits
//! (fdinfo), and a file opened afterwards, mapped and faulted, sends no
//! FAN_PRE_FAULT (and no FAN_PRE_ACCESS), only its FAN_OPEN_PERM; the inode
//! left fault-time mode with its last FAN_PRE_FAULT mark, so the fault reads
//! what is on disk (zeros of the sparse file) instead of SIGBUS.
//!
//! Cases 2-4, not only inode marks: a FAN_MARK_FILESYSTEM mark, a
//! FAN_MARK_MOUNT mark, and an inode mark of the parent directory with
//! FAN_EVENT_ON_CHILD, each of FAN_PRE_ACCESS | FAN_PRE_FAULT.  A file opened
//! after the mark gets no event from mmap() (no whole-range FAN_PRE_ACCESS)
//! and exactly one event from a fault, a FAN_PRE_FAULT covering the page,
//! and the page shows the bytes the listener filled.
//!
//! Case 5, decided at open: a file opened before the inode mark was added
//! gets no events.  Its inode is in fault-time mode from the mark on, so,
//! as "Fault-time mode" of the documentation (patch 0004) says, it cannot
//! read what the listener has not filled: a fault through a mapping of it
//! gets SIGBUS and read(2) fails with EIO (pre_fault_invariant case 0 also
//! checks the read() and readahead hints); a file opened after the mark gets
//! its FAN_PRE_FAULT and the filled bytes.
//!
//! Guards the cover letter's Design (opt-in per mark with FAN_PRE_FAULT,
//! which must come with FAN_PRE_ACCESS; decided at open) and review's "Tests"
//! item on mark validation and mark types.  The base kernel has no
//! FAN_PRE_FAULT: the probe TCONFs (every EINVAL row would pass there).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Fanotify;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, texp_fail, texp_pass, tfail, tinfo, tpass, Ctx, Test};
use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const TEST: Test = Test {
    name: "pre_fault_mark_validation",
    doc: "FAN_PRE_FAULT marks: errors, ignore masks, removal with FAN_PRE_ACCESS, filesystem/mount/directory marks, decided at open",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_TMPFS"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    tags: &[
        (
            "cover-letter",
            "Design: opt-in per mark with FAN_PRE_FAULT, which must come with FAN_PRE_ACCESS; decided at open",
        ),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
        ("ltp", "fanotify14"),
    ],
    tcnt: CASES.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

type Case = (&'static str, fn(&Ctx));

const CASES: &[Case] = &[
    ("fanotify_mark(2) errors with FAN_PRE_FAULT", mark_rows),
    (
        "removing FAN_PRE_ACCESS removes FAN_PRE_FAULT",
        remove_pre_access,
    ),
    ("a filesystem mark", filesystem_mark),
    ("a mount mark", mount_mark),
    ("a directory mark with FAN_EVENT_ON_CHILD", directory_mark),
    ("a file opened before the mark", opened_before),
];

/// Pages of the stubs.
const PAGES: u64 = 64;
/// The page the behaviour cases fault.
const PAGE: u64 = 5;
const LAZY: u64 = FAN_PRE_ACCESS | FAN_PRE_FAULT;

/// TCONF unless the kernel knows FAN_PRE_FAULT: on the base kernel every
/// EINVAL row below would pass for the wrong reason.
fn probe(ctx: &Ctx) -> Result<(), String> {
    let path = ctx.path("probe");
    create_sparse_file(&path, page_size());
    let g = Fanotify::init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, libc::O_RDONLY as u32)
        .map_err(|e| format!("FAN_CLASS_PRE_CONTENT not supported: {e}"))?;
    match g.mark(FAN_MARK_ADD, FAN_PRE_ACCESS, &path) {
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            return Err(format!("kernel has no FAN_PRE_ACCESS: {e}"))
        }
        _ => {}
    }
    match g.mark(FAN_MARK_ADD, LAZY, &path) {
        Err(e) if e.errno() == Some(Errno::EINVAL) => {
            Err(format!("kernel does not know FAN_PRE_FAULT: {e}"))
        }
        _ => Ok(()),
    }
}

fn run_case(ctx: &Ctx, i: u32) {
    let (what, f) = CASES[i as usize];
    tinfo!("case {i}: {what}");
    f(ctx);
}

/// Where an accepted mark must show FAN_PRE_FAULT.
#[derive(Clone, Copy, PartialEq)]
enum In {
    Mask,
    Ignored,
}

struct Row {
    what: &'static str,
    init: u32,
    flags: u32,
    mask: u64,
    obj: Obj,
    want: Result<In, Errno>,
}

const ROWS: &[Row] = &[
    Row {
        what: "FAN_PRE_FAULT without FAN_PRE_ACCESS",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: FAN_PRE_FAULT,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "FAN_PRE_FAULT | FAN_OPEN_PERM, without FAN_PRE_ACCESS",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: FAN_PRE_FAULT | FAN_OPEN_PERM,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "filesystem mark, FAN_PRE_FAULT without FAN_PRE_ACCESS",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: FAN_PRE_FAULT,
        obj: Obj::Mnt,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "FAN_PRE_ACCESS | FAN_PRE_FAULT | FAN_ONDIR on a directory",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY | FAN_ONDIR,
        obj: Obj::Dir,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "directory inode mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY,
        obj: Obj::Dir,
        want: Ok(In::Mask),
    },
    Row {
        what: "directory inode mark with FAN_EVENT_ON_CHILD",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY | FAN_EVENT_ON_CHILD,
        obj: Obj::Dir,
        want: Ok(In::Mask),
    },
    Row {
        what: "fifo",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY,
        obj: Obj::Fifo,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "tmpfs inode mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY,
        obj: Obj::TmpfsFile,
        want: Err(Errno::EOPNOTSUPP),
    },
    Row {
        what: "tmpfs filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: LAZY,
        obj: Obj::TmpfsFile,
        want: Err(Errno::EOPNOTSUPP),
    },
    Row {
        what: "tmpfs mount mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_MOUNT,
        mask: LAZY,
        obj: Obj::TmpfsFile,
        want: Err(Errno::EOPNOTSUPP),
    },
    Row {
        what: "FAN_CLASS_NOTIF group",
        init: FAN_CLASS_NOTIF,
        flags: FAN_MARK_INODE,
        mask: LAZY,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "FAN_CLASS_CONTENT group",
        init: FAN_CLASS_CONTENT,
        flags: FAN_MARK_INODE,
        mask: LAZY,
        obj: Obj::File,
        want: Err(Errno::EINVAL),
    },
    Row {
        what: "ignore mask (FAN_MARK_IGNORE_SURV) of FAN_PRE_FAULT alone",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE | FAN_MARK_IGNORE_SURV,
        mask: FAN_PRE_FAULT,
        obj: Obj::File,
        want: Ok(In::Ignored),
    },
    Row {
        what: "ignore mask (FAN_MARK_IGNORE) of FAN_PRE_FAULT alone",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_INODE | FAN_MARK_IGNORE,
        mask: FAN_PRE_FAULT,
        obj: Obj::File,
        want: Ok(In::Ignored),
    },
    Row {
        what: "filesystem mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_FILESYSTEM,
        mask: LAZY,
        obj: Obj::Mnt,
        want: Ok(In::Mask),
    },
    Row {
        what: "mount mark",
        init: FAN_CLASS_PRE_CONTENT,
        flags: FAN_MARK_MOUNT,
        mask: LAZY,
        obj: Obj::Mnt,
        want: Ok(In::Mask),
    },
];

/// Case 0: the errno (or acceptance) of each row, on a fresh group each.
fn mark_rows(ctx: &Ctx) {
    let objs = MarkObjects::new(ctx, PAGES * page_size());
    for r in ROWS {
        let obj = objs.path(r.obj);
        let g =
            Fanotify::init(r.init | FAN_CLOEXEC, libc::O_RDONLY as u32).or_brok("fanotify_init");
        let res = g.mark(FAN_MARK_ADD | r.flags, r.mask, obj);
        match r.want {
            Err(errno) => {
                texp_fail!(res, errno, "{}", r.what);
            }
            Ok(place) => {
                if texp_pass!(res, "{}", r.what).is_some() {
                    let marks = marks_of(&g);
                    let ok = matches!(marks.as_slice(), [(m, i)]
                        if (if place == In::Mask { m } else { i }) & FAN_PRE_FAULT != 0);
                    tcheck!(
                        ok,
                        "{}: fdinfo shows FAN_PRE_FAULT in the mark's {} (mask, ignored mask: {marks:x?})",
                        r.what,
                        if place == In::Mask { "mask" } else { "ignored mask" }
                    );
                }
            }
        }
    }
}

/// Fault page PAGE through a new shared mapping of `f` in a child (SIGBUS
/// kills it); how the child ended: exit 0 if the page was all zeros, 1 if
/// it was the pattern, 2 otherwise, 3 if mmap() failed.
fn fault_in_child(f: &std::fs::File) -> WaitStatus {
    in_child(|| {
        default_sigbus();
        let Ok(m) = Map::new(f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED) else {
            return 3;
        };
        let d = m.read_page(PAGE);
        if d.iter().all(|&b| b == 0) {
            0
        } else if pattern_mismatch(PAGE * page_size(), &d).is_none() {
            1
        } else {
            2
        }
    })
}

/// Case 1: FAN_MARK_REMOVE of FAN_PRE_ACCESS takes FAN_PRE_FAULT with it.
fn remove_pre_access(ctx: &Ctx) {
    let ps = page_size();
    let path = ctx.path("removed-stub");
    create_sparse_file(&path, PAGES * ps);
    // FAN_OPEN_PERM keeps the mark once the pre-content bits are gone.
    let group = pre_content_group(&path, FAN_MARK_INODE, LAZY | FAN_OPEN_PERM);
    let control = group.try_clone().or_brok("dup the fanotify fd");
    let listener = Listener::filling(group);
    tinfo!("mark before: {:x?}", marks_of(&control));
    texp_pass!(
        control.mark(FAN_MARK_REMOVE, FAN_PRE_ACCESS, &path),
        "FAN_MARK_REMOVE of FAN_PRE_ACCESS alone"
    );
    let marks = marks_of(&control);
    tcheck!(
        matches!(marks.as_slice(), [(m, _)] if m & FAN_OPEN_PERM != 0 && m & LAZY == 0),
        "the mark kept FAN_OPEN_PERM and lost FAN_PRE_FAULT with FAN_PRE_ACCESS (mask, ignored mask: {marks:x?})"
    );

    let st = {
        // Opened here, in the test: the child only maps and faults.
        let f = std::fs::File::open(&path).or_brok("open after the removal");
        fault_in_child(&f)
    };
    let seen = listener.stop();
    log_seen("after the removal", &seen);
    let pre = seen.iter().filter(|s| s.mask & LAZY != 0).count();
    let opens = seen.iter().filter(|s| s.mask == FAN_OPEN_PERM).count();
    tcheck!(
        pre == 0 && opens >= 1,
        "a file opened after the removal, mapped and faulted, sent no FAN_PRE_FAULT or FAN_PRE_ACCESS ({pre}), only FAN_OPEN_PERM ({opens})"
    );
    tcheck!(
        matches!(st, WaitStatus::Exited(_, 0)),
        "the inode left fault-time mode: the fault read the sparse file's zeros without an event ({st:?})"
    );
}

/// Cases 2-4: a lazy mark of `flags` | `mask` on `target`; a file opened
/// after it, `path` (created before it), gets exactly one FAN_PRE_FAULT for
/// a fault and none from mmap(), and the filled bytes.
fn lazy_by_mark(what: &str, target: &Path, flags: u32, mask: u64, path: &Path) {
    let ps = page_size();
    let listener = Listener::filling(pre_content_group(target, flags, mask));
    let f = std::fs::File::open(path).or_brok("open the stub after the mark");
    let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let at_mmap = listener.seen();
    tcheck!(
        at_mmap.is_empty(),
        "{what}: mmap() sent no event, no whole-range FAN_PRE_ACCESS ({at_mmap:?})"
    );
    let d = m.read_page(PAGE);
    let seen = listener.stop();
    log_seen(what, &seen);
    let covering = fault_events_covering(&seen, PAGE * ps);
    tcheck!(
        seen.len() == 1 && covering == 1,
        "{what}: the fault sent exactly one event, a FAN_PRE_FAULT covering page {PAGE} ({} events, {covering} covering)",
        seen.len()
    );
    match pattern_mismatch(PAGE * ps, &d) {
        None => tpass!("{what}: the faulted page shows the filled bytes"),
        Some(b) => tfail!(
            "{what}: byte {b} of page {PAGE} is {:#x}, not the filled {:#x}",
            d[b],
            pattern_byte(PAGE * ps + b as u64)
        ),
    }
}

fn filesystem_mark(ctx: &Ctx) {
    let path = ctx.path("fs-stub");
    create_sparse_file(&path, PAGES * page_size());
    lazy_by_mark(
        "filesystem mark",
        &ctx.mnt,
        FAN_MARK_FILESYSTEM,
        LAZY,
        &path,
    );
}

fn mount_mark(ctx: &Ctx) {
    let path = ctx.path("mnt-stub");
    create_sparse_file(&path, PAGES * page_size());
    lazy_by_mark("mount mark", &ctx.mnt, FAN_MARK_MOUNT, LAZY, &path);
}

fn directory_mark(ctx: &Ctx) {
    let dir: PathBuf = ctx.path("parent");
    std::fs::create_dir(&dir).or_brok("mkdir");
    let path = dir.join("stub");
    create_sparse_file(&path, PAGES * page_size());
    lazy_by_mark(
        "directory mark with FAN_EVENT_ON_CHILD",
        &dir,
        FAN_MARK_INODE,
        LAZY | FAN_EVENT_ON_CHILD,
        &path,
    );
}

/// Case 5: the mode is decided at open.
fn opened_before(ctx: &Ctx) {
    let ps = page_size();
    let path = ctx.path("early-stub");
    create_sparse_file(&path, PAGES * ps);
    let early = std::fs::File::open(&path).or_brok("open before the mark");
    let listener = Listener::filling(lazy_group(&path, FAN_MARK_INODE));

    let st = fault_in_child(&early);
    tcheck!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGBUS, _)),
        "a fault through a mapping of the file opened before the mark gets SIGBUS ({st:?})"
    );
    let mut b = vec![0u8; ps as usize];
    texp_fail!(
        early.read_at(&mut b, PAGE * ps),
        Errno::EIO,
        "read(2) of the unfilled page through the file opened before the mark"
    );
    let seen = listener.seen();
    tcheck!(
        seen.is_empty(),
        "the file opened before the mark sent no event for mmap(), the fault and read(2) ({seen:?})"
    );

    // Control: a file opened after the mark gets its event and the bytes.
    let late = std::fs::File::open(&path).or_brok("open after the mark");
    let m = Map::new(&late, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let d = m.read_page(PAGE);
    let seen = listener.stop();
    log_seen("file opened after the mark", &seen);
    let covering = fault_events_covering(&seen, PAGE * ps);
    tcheck!(
        covering == 1 && pattern_mismatch(PAGE * ps, &d).is_none(),
        "a file opened after the mark gets a FAN_PRE_FAULT covering page {PAGE} ({covering}) and the filled bytes"
    );
}
