//! pre_fault_basic: lazy (fault-time) pre-content events.  With a mark of
//! FAN_PRE_ACCESS | FAN_PRE_FAULT, mmap() sends nothing; touching page N of
//! an unpopulated mapping sends one FAN_PRE_FAULT whose range starts at
//! N << PAGE_SHIFT (mapping offsets included), the listener fills it and the
//! page shows the filled bytes; touching it again, or any page of the range
//! the event covered (fault-around), sends nothing; pages already in the page
//! cache send nothing.
//!
//! Guards the cover letter's answers to objections 2 (events on the miss path
//! only) and 4 (the `pgoff >> PAGE_SHIFT` offset bug of the reverted 2024
//! hook, 955fbe0ef19d), and the opt-in of its Design.

use crate::common::*;
use fanotify::consts::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tfail, tinfo, tpass, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};

pub const TEST: Test = Test {
    name: "pre_fault_basic",
    doc: "touching page N sends one FAN_PRE_FAULT covering N; cached pages and fault-around send none",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("cover-letter", "Objections of the revert, answered: 2 (miss path only, no fsnotify call on a cache hit)"),
        ("cover-letter", "Objections of the revert, answered: 4 (offset)"),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
        ("linux-git", "955fbe0ef19d Revert \"fsnotify: generate pre-content permission event on page fault\" (6.14-rc7): the hook this series brings back"),
    ],
    run,
    ..Test::DEFAULT
};

const FILE_PAGES: u64 = 256;

struct Case {
    what: &'static str,
    /// Mapping starts at this file page.
    map_off: u64,
    /// Page of the mapping to touch.
    touch: u64,
    flags: MapFlags,
}

const CASES: &[Case] = &[
    Case {
        what: "MAP_SHARED, page 37",
        map_off: 0,
        touch: 37,
        flags: MapFlags::MAP_SHARED,
    },
    Case {
        what: "MAP_PRIVATE, page 200",
        map_off: 0,
        touch: 200,
        flags: MapFlags::MAP_PRIVATE,
    },
    Case {
        what: "mapping at file page 100, its page 3",
        map_off: 100,
        touch: 3,
        flags: MapFlags::MAP_SHARED,
    },
    Case {
        what: "last page",
        map_off: 0,
        touch: FILE_PAGES - 1,
        flags: MapFlags::MAP_SHARED,
    },
];

fn run(ctx: &Ctx) {
    for c in CASES {
        let path = ctx.path("stub");
        create_sparse_file(&path, FILE_PAGES * page_size());
        let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
        let f = std::fs::File::open(&path).or_brok("open");
        let m = Map::new(
            &f,
            c.map_off,
            FILE_PAGES - c.map_off,
            ProtFlags::PROT_READ,
            c.flags,
        )
        .or_brok("mmap");
        let at_mmap = l.seen().len();
        let page = c.map_off + c.touch;
        let data = m.read_page(c.touch);
        let seen = l.seen();
        log_seen(c.what, &seen);
        if at_mmap == 0 {
            tpass!("{}: mmap() sent no event to the lazy mark", c.what);
        } else {
            tfail!("{}: mmap() sent {at_mmap} events to the lazy mark", c.what);
        }
        let r = match seen.as_slice() {
            [s] if s.mask == FAN_PRE_FAULT => s.range,
            other => {
                tfail!("{}: want one FAN_PRE_FAULT, got {other:?}", c.what);
                continue;
            }
        };
        match r {
            Some(r)
                if r.offset == page * page_size()
                    && covers(&r, page * page_size())
                    && r.offset % page_size() == 0
                    && r.count % page_size() == 0 =>
            {
                tpass!(
                    "{}: one FAN_PRE_FAULT with range {r:?} starting at page {page}",
                    c.what
                )
            }
            other => tfail!(
                "{}: FAN_PRE_FAULT range {other:?} does not start at page {page}",
                c.what
            ),
        }
        match pattern_mismatch(page * page_size(), &data) {
            None => tpass!("{}: page {page} shows the filled bytes", c.what),
            Some(i) => tfail!(
                "{}: page {page} byte {i} is {:#x}, want {:#x}",
                c.what,
                data[i],
                pattern_byte(page * page_size() + i as u64)
            ),
        }
        // Again, and every page the event covered: nothing more.
        let r = r.unwrap_or(fanotify::Range {
            offset: page * page_size(),
            count: page_size(),
        });
        let mut bad = None;
        for p in (r.offset / page_size())..((r.offset + r.count) / page_size()).min(FILE_PAGES) {
            let d = m.read_page(p - c.map_off);
            if pattern_mismatch(p * page_size(), &d).is_some() {
                bad = Some(p);
            }
        }
        let after = l.seen().len();
        if after == 1 {
            tpass!(
                "{}: re-touch and the {} covered pages sent no further event",
                c.what,
                r.count / page_size()
            );
        } else {
            tfail!(
                "{}: {} further events for pages an event already covered",
                c.what,
                after - 1
            );
        }
        match bad {
            None => tpass!("{}: every covered page shows the filled bytes", c.what),
            Some(p) => tfail!("{}: covered page {p} is not filled", c.what),
        }
        drop(m);
        drop(f);
        drop(l);
        std::fs::remove_file(&path).or_brok("unlink");
    }

    // Pages already in the page cache cost nothing: populate and cache the
    // file before the mark, then fault all of it.
    let path = ctx.path("cached");
    create_pattern_file(&path, 64 * page_size());
    let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    let f = std::fs::File::open(&path).or_brok("open");
    let m = Map::new(&f, 0, 64, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    let bad = (0..64).find(|&p| pattern_mismatch(p * page_size(), &m.read_page(p)).is_some());
    let seen = l.stop();
    if seen.is_empty() && bad.is_none() {
        tpass!("cached file: 64 pages faulted, no event, content intact");
    } else {
        tfail!(
            "cached file: {} events, bad page {bad:?}: {seen:?}",
            seen.len()
        );
    }
    tinfo!("fs {}", ctx.fs.map(|f| f.name()).unwrap_or("?"));
}
