//! hsm_source_gone: when the source of a stub fails, hsm-serve (fault mode)
//! answers FAN_DENY_ERRNO(EIO): read() of the stub fails with EIO and a
//! page fault on its mapping kills the reader with SIGBUS, for a source
//! that was removed and for the part past the end of a source that was
//! truncated (a short read), while the part a truncated source still has is
//! served exactly.  Nothing of a denied range is recorded as filled: the
//! removed source's stub has no populated range, the truncated one's only
//! what its source still had.  The daemon keeps running, counts the errors,
//! and still serves another file byte for byte.  All of it twice: from a
//! local source directory, and from nginx (an HTTP source, range requests;
//! started by the test on loopback, its document root on the scratch
//! tmpfs), whose document root loses the file (nginx answers 404) and has
//! the other one truncated (nginx answers 416 for a range past its new
//! end).
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): failure of one
//! source is contained, with either source (issue 15 items 1 and 6: a range
//! that cannot be fetched is denied with EIO, never filled with garbage).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::{in_child, page_size, Map};
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tpass, Ctx, Test};
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use std::os::unix::fs::FileExt;
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_source_gone",
    doc: "hsm-serve: a removed or truncated source gives EIO to read() and SIGBUS to a fault; others still served",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[
        ("doc", "selftests/hsm/README.md"),
        ("cover-letter", "Design: a denied event fails the retried fault (SIGBUS / EFAULT)"),
    ],
    needs_cmds: &["nginx"],
    timeout: Duration::from_secs(400),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

/// Pages of each file.
const PAGES: u64 = 64;
/// What is left of the truncated source.
const SHORT_PAGES: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Fault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Eio,
    Sigbus,
    Exact,
}

struct Case {
    what: &'static str,
    file: &'static str,
    page: u64,
    access: Access,
    want: Want,
}

const CASES: &[Case] = &[
    Case {
        what: "read() of a removed source",
        file: "gone",
        page: 0,
        access: Access::Read,
        want: Want::Eio,
    },
    Case {
        what: "fault on a removed source",
        file: "gone",
        page: 5,
        access: Access::Fault,
        want: Want::Sigbus,
    },
    Case {
        what: "read() past a truncated source's end",
        file: "short",
        page: 40,
        access: Access::Read,
        want: Want::Eio,
    },
    Case {
        what: "fault past a truncated source's end",
        file: "short",
        page: 50,
        access: Access::Fault,
        want: Want::Sigbus,
    },
    Case {
        what: "read() of what a truncated source still has",
        file: "short",
        page: 2,
        access: Access::Read,
        want: Want::Exact,
    },
];

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        gone(ctx, kind);
    }
}

fn gone(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, "src");
    let w = source.label();
    let src = &source.dir;
    let dst = ctx.path(&format!("dst-{kind:?}"));
    for f in ["gone", "short", "good"] {
        create_pattern(&src.join(f), PAGES * page_size());
    }
    populate(src, &dst);
    let mut s = Serve::start(&serve_args(&source.spec, &dst, "fault", &[]));
    // For nginx: the files of its document root.
    std::fs::remove_file(src.join("gone")).or_brok("remove source");
    std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("short"))
        .or_brok("open source")
        .set_len(SHORT_PAGES * page_size())
        .or_brok("truncate source");

    for c in CASES {
        let path = dst.join(c.file);
        let f = std::fs::File::open(&path).or_brok("open stub");
        let got = match c.access {
            Access::Read => {
                let mut b = vec![0u8; page_size() as usize];
                match f.read_exact_at(&mut b, c.page * page_size()) {
                    Ok(()) if hsm::pattern::mismatch(c.page * page_size(), &b).is_none() => {
                        Ok(Want::Exact)
                    }
                    Ok(()) => Err("read() returned wrong bytes".to_string()),
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(Want::Eio),
                    Err(e) => Err(format!("read(): {e}")),
                }
            }
            Access::Fault => {
                let st = in_child(|| {
                    // The Rust runtime's SIGBUS handler would retry the access.
                    // SAFETY: restoring the default action is always sound.
                    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
                    let m = Map::new(&f, 0, PAGES, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)
                        .expect("mmap");
                    let d = m.read_page(c.page);
                    if hsm::pattern::mismatch(c.page * page_size(), &d).is_none() {
                        0
                    } else {
                        1
                    }
                });
                match st {
                    WaitStatus::Signaled(_, Signal::SIGBUS, _) => Ok(Want::Sigbus),
                    WaitStatus::Exited(_, 0) => Ok(Want::Exact),
                    other => Err(format!("reader ended {other:?}")),
                }
            }
        };
        match got {
            Ok(g) if g == c.want => tpass!("{w}: {}: {g:?}", c.what),
            other => tfail!("{w}: {}: got {other:?}, want {:?}", c.what, c.want),
        }
    }

    // Nothing denied was recorded as filled.
    let gone_state = populated_xattr(&dst.join("gone")).unwrap_or_default();
    tcheck!(
        gone_state.is_empty(),
        "{w}: nothing recorded for the removed source's stub: {}",
        gone_state.encode()
    );
    let short_state = populated_xattr(&dst.join("short")).unwrap_or_default();
    let past_end = short_state
        .ranges()
        .iter()
        .any(|&(_, e)| e > SHORT_PAGES * page_size());
    tcheck!(
        !past_end && short_state.covers(2 * page_size(), 3 * page_size()),
        "{w}: the truncated source's stub records the page served and nothing past the \
         source's end ({} bytes): {}",
        SHORT_PAGES * page_size(),
        short_state.encode()
    );

    tcheck!(s.alive(), "{w}: hsm-serve still running after the failures");
    let m = s.stats();
    let denied = CASES.iter().filter(|c| c.want != Want::Exact).count() as u64;
    tcheck!(
        kv(&m, "errors") >= denied,
        "{w}: {} errors counted for {denied} denied accesses",
        kv(&m, "errors")
    );
    let (code, out) = validate(&dst.join("good"), &["--via", "both"]);
    tcheck!(
        code == 0,
        "{w}: another file is still served exactly: {out}"
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    if st.code() == Some(0) {
        tpass!("{w}: SIGTERM: exit 0");
    } else {
        tfail!("{w}: SIGTERM: {st}");
    }
}
