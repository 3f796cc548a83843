//! pre_access_rw: read(), write() and truncate on a pre-content-watched file
//! each send one FAN_PRE_ACCESS event whose range record is the range the
//! syscall touches, widened to page boundaries (truncate: the page holding
//! the new size).
//!
//! Guards mainline semantics the series must keep (cover letter, Design: without
//! FAN_PRE_FAULT nothing changes); upstream: "fsnotify: generate pre-content
//! permission event on truncate" and "fanotify: report file range info with
//! pre-content events" (v6.14).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Range;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Test};
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_access_rw",
    doc: "read/write/truncate send FAN_PRE_ACCESS with the exact range",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("cover-letter", "Design: without FAN_PRE_FAULT nothing changes"),
        ("kernel", "include/uapi/linux/fanotify.h: FAN_PRE_ACCESS, FAN_EVENT_INFO_TYPE_RANGE (mainline since v6.14)"),
    ],
    run,
    ..Test::DEFAULT
};

enum Op {
    Pread { off: u64, len: usize },
    Pwrite { off: u64, len: usize },
    Ftruncate { len: u64 },
}

struct Case {
    what: &'static str,
    op: Op,
    want: Range,
}

const CASES: &[Case] = &[
    Case {
        what: "pread 4096 @ 8192",
        op: Op::Pread {
            off: 8192,
            len: 4096,
        },
        want: Range {
            offset: 8192,
            count: 4096,
        },
    },
    Case {
        what: "pread 10 @ 4095 (straddles a page boundary)",
        op: Op::Pread { off: 4095, len: 10 },
        want: Range {
            offset: 0,
            count: 8192,
        },
    },
    Case {
        what: "pread 100000 @ 12288",
        op: Op::Pread {
            off: 12288,
            len: 100000,
        },
        want: Range {
            offset: 12288,
            count: 102400,
        },
    },
    Case {
        what: "pwrite 100 @ 5000",
        op: Op::Pwrite {
            off: 5000,
            len: 100,
        },
        want: Range {
            offset: 4096,
            count: 4096,
        },
    },
    Case {
        what: "ftruncate to 1000",
        op: Op::Ftruncate { len: 1000 },
        want: Range {
            offset: 0,
            count: 4096,
        },
    },
];

fn run(ctx: &Ctx) {
    for c in CASES {
        let path = ctx.path("rw");
        create_pattern_file(&path, 256 * 1024);
        let group = pre_content_group(&path, FAN_MARK_INODE, FAN_PRE_ACCESS);
        let l = Listener::answering(group, fanotify::Response::Allow);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .or_brok("open");
        match c.op {
            Op::Pread { off, len } => {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, off).or_brok("pread");
            }
            Op::Pwrite { off, len } => f.write_all_at(&vec![1u8; len], off).or_brok("pwrite"),
            Op::Ftruncate { len } => f.set_len(len).or_brok("ftruncate"),
        }
        let seen = l.stop();
        log_seen(c.what, &seen);
        let me = std::process::id() as i32;
        match seen.as_slice() {
            [s] if s.mask == FAN_PRE_ACCESS && s.range == Some(c.want) && s.pid == me => {
                tpass!("{}: one FAN_PRE_ACCESS with range {:?}", c.what, c.want)
            }
            [] => tfail!("{}: no event", c.what),
            other => tfail!(
                "{}: want one FAN_PRE_ACCESS {:?} from pid {me}, got {other:?}",
                c.what,
                c.want
            ),
        }
        drop(f);
        std::fs::remove_file(&path).or_brok("unlink");
    }
    tinfo!("done on {}", ctx.fs.map(|f| f.name()).unwrap_or("?"));
}
