//! hsm_serve_errors: hsm-serve refuses bad input with a message that names
//! the problem and a distinct exit status, before it serves anything: a
//! missing SRC or DST and a corrupt state file exit 1, bad options exit 2,
//! and a DST on a filesystem without pre-content support (tmpfs) exits 3
//! (the status scripts and the hsm_* tests treat as "not supported").
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): clear errors,
//! non-zero exit on bad input.

use super::hsm_util::*;
use ltp::res::OrBrok;
use ltp::{tfail, tpass, Ctx, Test};

pub const TEST: Test = Test {
    name: "hsm_serve_errors",
    doc:
        "hsm-serve: missing paths, corrupt state, bad options, tmpfs DST: exit 1/2/3 with a message",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS", "CONFIG_TMPFS_XATTR"],
    tags: &[("doc", "selftests/hsm/README.md")],
    run,
    ..Test::DEFAULT
};

fn run(ctx: &Ctx) {
    // The scratch directory is on tmpfs (no filesystem asked for).
    let src = ctx.path("src");
    let dst = ctx.path("dst");
    std::fs::create_dir(&src).or_brok("mkdir");
    create_pattern(&src.join("f"), 8192);
    populate(&src, &dst);
    let bad_state = ctx.path("bad.state");
    std::fs::write(&bad_state, "not a state file\n").or_brok("write state");
    let (s, d, m) = (
        src.to_string_lossy().into_owned(),
        dst.to_string_lossy().into_owned(),
        ctx.path("missing").to_string_lossy().into_owned(),
    );
    let b = bad_state.to_string_lossy().into_owned();
    let cases: &[(&str, Vec<&str>, i32, &str)] = &[
        ("missing SRC", vec![&m, &d], 1, "missing"),
        ("missing DST", vec![&s, &m], 1, "missing"),
        (
            "corrupt state file",
            vec![&s, &d, "--state", &b],
            1,
            "not an hsm-serve state file",
        ),
        ("unknown mode", vec![&s, &d, "--mode", "eager"], 2, "eager"),
        ("zero workers", vec![&s, &d, "--workers", "0"], 2, "workers"),
        ("no arguments", vec![], 2, "Usage"),
        (
            "DST on tmpfs",
            vec![&s, &d, "--mode", "mmap"],
            hsm::EXIT_UNSUPPORTED,
            "does not allow pre-content marks",
        ),
    ];
    for (what, args, want, msg) in cases {
        let o = run_tool("hsm-serve", args);
        let c = code(&o.status);
        let err = text(&o.stderr);
        if c == *want && err.contains(msg) && text(&o.stdout).is_empty() {
            tpass!("{what}: exit {c}: {}", err.lines().next().unwrap_or(""));
        } else {
            tfail!(
                "{what}: exit {c}, want {want} with {msg:?} and no ready line: stderr {err:?}, \
                 stdout {:?}",
                text(&o.stdout)
            );
        }
    }
}
