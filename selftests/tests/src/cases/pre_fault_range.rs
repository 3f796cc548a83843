//! pre_fault_range: the range of a FAN_PRE_FAULT event is exactly what the
//! documentation says: it starts at the faulting page and ends at the end of
//! the file's readahead window, at the next page already in the page cache,
//! or at EOF (in bytes: never past it), whichever comes first, and it is one
//! page under MADV_RANDOM and POSIX_FADV_RANDOM.  Each case sets the
//! filesystem's readahead window (read_ahead_kb of its backing device, or of
//! btrfs's own bdi) before it opens the file, so the expected window is
//! known, and asserts start and end of the one event of one fault.
//!
//! Guards the cover letter's Design ("The range of a fault event is the
//! readahead window from the faulting folio, clipped at EOF (never past it)
//! and at the next cached page") and review K11 (the range never extends past
//! EOF).  The base kernel has no FAN_PRE_FAULT (TCONF).

use crate::common::*;
use fanotify::consts::*;
use fanotify::Range;
use ltp::res::OrBrok;
use ltp::{tbrok, tfail, tinfo, tpass, Ctx, Fs, Test};
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "pre_fault_range",
    doc: "a FAN_PRE_FAULT range ends at the readahead window, the next cached page or EOF; one page when random",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: &[Fs::Ext4, Fs::Xfs, Fs::Btrfs],
    tags: &[
        (
            "cover-letter",
            "Design: the range of a fault event is the readahead window, clipped at EOF and at the next cached page",
        ),
        ("doc", "Documentation/filesystems/fanotify-pre-fault.rst"),
    ],
    tcnt: CASES.len() as u32,
    run_case: Some(run_case),
    ..Test::DEFAULT
};

/// The readahead window every case sets, in KiB: not the default (128), so
/// that the range follows the setting and not a constant.
const RA_KB: u64 = 64;
/// The page every case faults.
const FAULT_PAGE: u64 = 10;

enum Setup {
    /// Nothing more.
    Plain,
    /// read(2) this page first: it is then in the page cache.
    CachedAt(u64),
    /// madvise(MADV_RANDOM) on the mapping.
    MadvRandom,
    /// posix_fadvise(POSIX_FADV_RANDOM) on the file before mmap().
    FadvRandom,
}

struct Case {
    what: &'static str,
    /// File size in bytes, as (pages, extra bytes).
    size: (u64, u64),
    setup: Setup,
    /// Expected range: (first page, end in bytes as pages + extra bytes).
    want: (u64, (u64, u64)),
}

const CASES: &[Case] = &[
    Case {
        what: "the readahead window",
        size: (1024, 0),
        setup: Setup::Plain,
        // 64 KiB from the faulting page.
        want: (FAULT_PAGE, (FAULT_PAGE, RA_KB * 1024)),
    },
    Case {
        what: "clipped at EOF, in bytes",
        size: (FAULT_PAGE + 2, 100),
        setup: Setup::Plain,
        want: (FAULT_PAGE, (FAULT_PAGE + 2, 100)),
    },
    Case {
        what: "clipped at the next cached page",
        size: (1024, 0),
        setup: Setup::CachedAt(FAULT_PAGE + 5),
        want: (FAULT_PAGE, (FAULT_PAGE + 5, 0)),
    },
    Case {
        what: "MADV_RANDOM: one page",
        size: (1024, 0),
        setup: Setup::MadvRandom,
        want: (FAULT_PAGE, (FAULT_PAGE + 1, 0)),
    },
    Case {
        what: "POSIX_FADV_RANDOM: one page",
        size: (1024, 0),
        setup: Setup::FadvRandom,
        want: (FAULT_PAGE, (FAULT_PAGE + 1, 0)),
    },
];

fn run_case(ctx: &Ctx, i: u32) {
    let case = &CASES[i as usize];
    let ps = page_size();
    let fs = ctx.fs.unwrap_or_else(|| tbrok!("no test filesystem"));
    let ra = read_ahead_kb_file(fs, &ctx.mnt);
    std::fs::write(&ra, format!("{RA_KB}")).or_brok(&format!("write {}", ra.display()));
    let got_ra = std::fs::read_to_string(&ra).or_brok("read read_ahead_kb");
    if got_ra.trim() != RA_KB.to_string() {
        tbrok!("{}: {} after writing {RA_KB}", ra.display(), got_ra.trim());
    }

    let path = ctx.path(&format!("stub{i}"));
    let size = case.size.0 * ps + case.size.1;
    create_sparse_file(&path, size);
    let l = Listener::filling(lazy_group(&path, FAN_MARK_INODE));
    // Opened after read_ahead_kb was set: the file's window is taken at open.
    let f = std::fs::File::open(&path).or_brok("open the stub");
    if let Setup::CachedAt(p) = case.setup {
        let mut b = vec![0u8; ps as usize];
        f.read_exact_at(&mut b, p * ps)
            .or_brok("read the page to cache");
    }
    if let Setup::FadvRandom = case.setup {
        nix::fcntl::posix_fadvise(
            f.as_raw_fd(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM,
        )
        .or_brok("posix_fadvise(POSIX_FADV_RANDOM)");
    }
    let pages = size.div_ceil(ps);
    let m = Map::new(&f, 0, pages, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).or_brok("mmap");
    if let Setup::MadvRandom = case.setup {
        m.advise(MmapAdvise::MADV_RANDOM)
            .or_brok("madvise(MADV_RANDOM)");
    }
    let before = l.seen().len();
    let got = m.read_page(FAULT_PAGE);
    let seen = l.stop();
    let faults: Vec<Range> = seen[before..]
        .iter()
        .filter(|s| s.mask == FAN_PRE_FAULT)
        .filter_map(|s| s.range)
        .collect();
    let want = Range {
        offset: case.want.0 * ps,
        count: case.want.1 .0 * ps + case.want.1 .1 - case.want.0 * ps,
    };
    tinfo!(
        "{}: {} events after the fault: {faults:?}",
        case.what,
        seen.len() - before
    );
    match faults.as_slice() {
        [r] if *r == want => tpass!(
            "{}: one FAN_PRE_FAULT, range {r:?} (start and end as documented)",
            case.what
        ),
        [r] => tfail!(
            "{}: the FAN_PRE_FAULT range is {r:?}, not {want:?}",
            case.what
        ),
        _ => tfail!(
            "{}: {} FAN_PRE_FAULT events, not one",
            case.what,
            faults.len()
        ),
    }
    if let Some(r) = faults.first() {
        if r.offset + r.count > size {
            tfail!("{}: the range {r:?} extends past EOF ({size})", case.what);
        }
    }
    match pattern_mismatch(FAULT_PAGE * ps, &got) {
        None => tpass!("{}: the faulted page shows the filled bytes", case.what),
        Some(b) => tfail!("{}: byte {b} of the faulted page is wrong", case.what),
    }
    drop(m);
    drop(f);
    std::fs::remove_file(&path).or_brok("unlink");
}
