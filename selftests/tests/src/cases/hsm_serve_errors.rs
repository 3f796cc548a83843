//! hsm_serve_errors: hsm-serve refuses bad input with a message that names
//! the problem and a distinct exit status, before it serves anything: a
//! missing SRC or DST and a corrupt state file exit 1, bad options exit 2,
//! and a DST on a filesystem without pre-content support (tmpfs) exits 3
//! (the status scripts and the hsm_* tests treat as "not supported").  The
//! rows that take a SRC run with both sources: a local directory and the
//! URL of nginx (started by the test on loopback, serving the same tree;
//! so a refusal is never for want of a server).  HTTP rows of their own: a
//! URL hsm-serve cannot use (https://, no host, a query) exits 1, bad HTTP
//! options (zero timeout, too many retries) and SRC given twice exit 2.  A
//! missing SRC has no HTTP row: hsm-serve does not contact the server
//! before it serves (a server down at start-up is used once it is up), so a
//! file the server lacks is an error of that file's fills, EIO
//! (hsm_source_gone's HTTP rows; hsm_http_down for a server that is down).
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): clear errors,
//! non-zero exit on bad input, with either source (issue 15 item 1).

use super::hsm_http::{cleanup, SourceKind, TestSource};
use super::hsm_util::*;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};

pub const TEST: Test = Test {
    name: "hsm_serve_errors",
    doc:
        "hsm-serve: missing paths, corrupt state, bad options or URLs, tmpfs DST: exit 1/2/3 with a message",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_TMPFS_XATTR"],
    needs_cmds: &["nginx"],
    tags: &[("doc", "selftests/hsm/README.md")],
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

/// Which sources a row runs with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// The local directory only.
    Dir,
    /// nginx's URL only.
    Http,
    /// Once with each.
    Both,
}

/// A row: hsm-serve's arguments, with `S` the source (directory or URL),
/// `D` the stub tree, `M` a path that does not exist, `B` a corrupt state
/// file, `Q` the source URL with a query; the exit status and a part of the
/// message wanted.
struct Case {
    what: &'static str,
    rows: Rows,
    args: &'static [&'static str],
    want: i32,
    msg: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "missing SRC",
        rows: Rows::Dir,
        args: &["M", "D"],
        want: 1,
        msg: "missing",
    },
    Case {
        what: "missing DST",
        rows: Rows::Both,
        args: &["S", "M"],
        want: 1,
        msg: "missing",
    },
    Case {
        what: "corrupt state file",
        rows: Rows::Both,
        args: &["S", "D", "--state", "B"],
        want: 1,
        msg: "not an hsm-serve state file",
    },
    Case {
        what: "unknown mode",
        rows: Rows::Both,
        args: &["S", "D", "--mode", "eager"],
        want: 2,
        msg: "eager",
    },
    Case {
        what: "zero workers",
        rows: Rows::Both,
        args: &["S", "D", "--workers", "0"],
        want: 2,
        msg: "workers",
    },
    Case {
        what: "no arguments",
        rows: Rows::Dir,
        args: &[],
        want: 2,
        msg: "Usage",
    },
    Case {
        what: "DST on tmpfs",
        rows: Rows::Both,
        args: &["S", "D", "--mode", "mmap"],
        want: hsm::EXIT_UNSUPPORTED,
        msg: "does not allow pre-content marks",
    },
    Case {
        what: "an https:// URL",
        rows: Rows::Http,
        args: &["https://127.0.0.1/", "D"],
        want: 1,
        msg: "unsupported URL scheme",
    },
    Case {
        what: "a URL with no host",
        rows: Rows::Http,
        args: &["http:///src/", "D"],
        want: 1,
        msg: "no host",
    },
    Case {
        what: "a URL with a query",
        rows: Rows::Http,
        args: &["Q", "D"],
        want: 1,
        msg: "query or fragment",
    },
    Case {
        what: "zero HTTP timeout",
        rows: Rows::Http,
        args: &["S", "D", "--http-timeout-ms", "0"],
        want: 2,
        msg: "http-timeout-ms",
    },
    Case {
        what: "too many HTTP retries",
        rows: Rows::Http,
        args: &["S", "D", "--http-retries", "21"],
        want: 2,
        msg: "http-retries",
    },
    Case {
        what: "SRC and --source",
        rows: Rows::Http,
        args: &["--source", "S", "S", "D"],
        want: 2,
        msg: "with --source, give only DST",
    },
];

fn run(ctx: &Ctx) {
    // The scratch directory is on tmpfs (no filesystem asked for).
    let dst = ctx.path("dst");
    let bad_state = ctx.path("bad.state");
    std::fs::write(&bad_state, "not a state file\n").or_brok("write state");
    let sources: Vec<TestSource> = [SourceKind::Dir, SourceKind::Http]
        .into_iter()
        .map(|k| {
            let s = TestSource::new(ctx, k, "src");
            create_pattern(&s.dir.join("f"), 8192);
            s
        })
        .collect();
    populate(&sources[0].dir, &dst);
    let d = dst.to_string_lossy().into_owned();
    let m = ctx.path("missing").to_string_lossy().into_owned();
    let b = bad_state.to_string_lossy().into_owned();
    for source in &sources {
        let w = source.label();
        let s = source.spec.to_string_lossy().into_owned();
        let q = format!("{s}?x=1");
        for c in CASES {
            let runs = match c.rows {
                Rows::Both => true,
                Rows::Dir => source.kind == SourceKind::Dir,
                Rows::Http => source.kind == SourceKind::Http,
            };
            if !runs {
                continue;
            }
            let args: Vec<&str> = c
                .args
                .iter()
                .map(|a| match *a {
                    "S" => s.as_str(),
                    "D" => d.as_str(),
                    "M" => m.as_str(),
                    "B" => b.as_str(),
                    "Q" => q.as_str(),
                    a => a,
                })
                .collect();
            let o = run_tool("hsm-serve", &args);
            let got = code(&o.status);
            let err = text(&o.stderr);
            let (what, want, msg) = (c.what, c.want, c.msg);
            if got == want && err.contains(msg) && text(&o.stdout).is_empty() {
                tpass!(
                    "{w}: {what}: exit {got}: {}",
                    err.lines().next().unwrap_or("")
                );
            } else {
                tfail!(
                    "{w}: {what}: exit {got}, want {want} with {msg:?} and no ready line: \
                     stderr {err:?}, stdout {:?}",
                    text(&o.stdout)
                );
            }
        }
    }
}
