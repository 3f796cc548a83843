//! hsm_lazy_exec: programs run from a lazy clone as from their source.  The
//! source is a small program tree: a shell script `run.sh` that sources
//! shell libraries from nested directories (down to depth 5), reads a data
//! file at depth 4, lists a directory, and runs a copy of the guest's
//! dynamically linked `env` (from `bin/`, a stub) both directly and to run
//! a shell.  It is cloned with `hsm-populate --lazy` (directories and files
//! both lazy) and served by `hsm-serve`.  `run.sh` from the clone prints
//! exactly what it prints from the source and exits the same, and so does
//! `bin/env --version` executed directly from the clone; running them
//! populated exactly the 13 directories on their paths (two that nothing
//! looked into stay unpopulated) and filled the binary from the source.  Both sources, ext4,
//! xfs, btrfs; TCONF where the kernel refuses FAN_PRE_DIR_ACCESS.
//!
//! Guards the lazy directories of the reference HSM (issue 16 item 4,
//! selftests/hsm/README.md "Lazy directories"): execve of a lazy path and
//! the script interpreter's opens walk lazy paths (the dynamic loader and
//! the libraries are the guest's, outside the clone; whether `env` is
//! dynamically linked is only reported).

use super::hsm_http::{cleanup, SourceKind, BOTH_SOURCES};
use super::hsm_lazy_util::*;
use super::hsm_util::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_lazy_exec",
    doc: "lazy directories: a script tree and a dynamically linked binary run from a lazy clone as from the source",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx", "sh", "env", "ls", "sort"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    tags: TAGS,
    timeout: Duration::from_secs(600),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const RUN_SH: &str = r#"#!/bin/sh
set -e
here=${0%/*}
. "$here/lib/sh/a/b/greet.sh"
. "$here/lib/sh/c/more.sh"
greet "lazy world"
more
"$here/bin/env" -i LAZY_A=1 LAZY_B=two
while IFS= read -r l; do
    echo "line: $l"
done < "$here/share/data/x/y/words.txt"
ls -a "$here/share/data" | sort
"$here/bin/env" -i PATH=/usr/bin:/bin sh -c 'echo "nested exec: $0"' child
exit 3
"#;

const GREET_SH: &str = "greet() { echo \"hello, $1\"; }\n";
const MORE_SH: &str = ". \"$here/lib/sh/c/d/e/deep.sh\"\nmore() { echo \"more: $DEEP\"; }\n";
const DEEP_SH: &str = "DEEP=\"from depth 5\"\n";
const WORDS: &str = "alpha\nbeta gamma\n\ndelta\n";

/// The program tree under `root`, with the guest's `env` at `bin/env`.
fn make_tree(root: &Path, env: &Path) {
    for d in [
        "bin",
        "lib",
        "lib/sh",
        "lib/sh/a",
        "lib/sh/a/b",
        "lib/sh/c",
        "lib/sh/c/d",
        "lib/sh/c/d/e",
        "share",
        "share/data",
        "share/data/x",
        "share/data/x/y",
        "share/data/empty",
        "unused",
    ] {
        std::fs::create_dir(root.join(d)).or_brok("mkdir in the source");
    }
    for (p, body, mode) in [
        ("run.sh", RUN_SH, 0o755),
        ("lib/sh/a/b/greet.sh", GREET_SH, 0o644),
        ("lib/sh/c/more.sh", MORE_SH, 0o644),
        ("lib/sh/c/d/e/deep.sh", DEEP_SH, 0o644),
        ("share/data/x/y/words.txt", WORDS, 0o444),
        ("share/data/readme", "not read\n", 0o644),
        ("unused/never", "never looked at\n", 0o644),
    ] {
        std::fs::write(root.join(p), body).or_brok("write a source file");
        std::fs::set_permissions(root.join(p), PermissionsExt::from_mode(mode)).or_brok("chmod");
    }
    std::os::unix::fs::symlink("x/y/words.txt", root.join("share/data/words")).or_brok("symlink");
    std::fs::copy(env, root.join("bin/env")).or_brok("copy env");
    std::fs::set_permissions(root.join("bin/env"), PermissionsExt::from_mode(0o755))
        .or_brok("chmod env");
    nix::unistd::sync();
}

/// Run `prog ARGS` with a fixed environment.
fn run_prog(prog: &Path, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .or_brok(&format!("run {}", prog.display()))
}

fn show(o: &Output) -> String {
    format!(
        "{} stdout {:?} stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether an ELF file has a program interpreter (PT_INTERP): is
/// dynamically linked.
fn has_interp(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|x| usize::try_from(u64::from_le_bytes(x.try_into().ok()?)).ok())
    };
    if !b.starts_with(b"\x7fELF") || b.get(5) != Some(&1) {
        return false;
    }
    let (phoff, phentsize, phnum) = match b.get(4) {
        Some(2) => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        Some(1) => (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c)),
        _ => return false,
    };
    let (Some(off), Some(size), Some(n)) = (phoff, phentsize, phnum) else {
        return false;
    };
    (0..n).any(|i| u32_at(off + i * size) == Some(3))
}

/// The guest's `env`, and whether it is dynamically linked.
fn guest_env() -> (std::path::PathBuf, bool) {
    let env = ["/usr/bin/env", "/bin/env"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| tbrok!("no /usr/bin/env or /bin/env"))
        .to_path_buf();
    let bytes = std::fs::read(&env).or_brok("read env");
    (env, has_interp(&bytes))
}

fn run(ctx: &Ctx) {
    let (env, dynamic) = guest_env();
    tinfo!(
        "{}: {}",
        env.display(),
        if dynamic {
            "dynamically linked (an ELF program interpreter)"
        } else {
            "not dynamically linked (no ELF program interpreter)"
        }
    );
    for &kind in BOTH_SOURCES {
        one_source(ctx, kind, &env);
    }
}

fn one_source(ctx: &Ctx, kind: SourceKind, env: &Path) {
    let src = LazySource::new(ctx, kind, &format!("src-{kind:?}"));
    let w = src.label();
    make_tree(&src.tree, env);
    let native = run_prog(&src.tree.join("run.sh"), &[]);
    let native_v = run_prog(&src.tree.join("bin/env"), &["--version"]);
    if native.status.code() != Some(3) || native.stdout.is_empty() {
        tbrok!("the script does not run from its source: {}", show(&native));
    }
    tinfo!("{w}: native run: {}", show(&native));
    let dst = ctx.path(&format!("dst-{kind:?}"));
    src.populate(&dst);
    let mut s = src.serve(&dst, &["--workers", "2"]);

    let lazy = run_prog(&dst.join("run.sh"), &[]);
    tcheck!(
        lazy.status.code() == native.status.code()
            && lazy.stdout == native.stdout
            && lazy.stderr == native.stderr,
        "{w}: run.sh from the lazy clone prints and exits as from the source: {}",
        show(&lazy)
    );
    let lazy_v = run_prog(&dst.join("bin/env"), &["--version"]);
    tcheck!(
        lazy_v.status.success() && lazy_v.stdout == native_v.stdout,
        "{w}: bin/env --version executed from the lazy clone, as from the source: {}",
        show(&lazy_v)
    );
    let m = s.stats();
    let c = dir_counters(&m);
    tinfo!("{w}: {c:?}, fetched_bytes={}", kv(&m, "fetched_bytes"));
    // The root, bin, lib, lib/sh, lib/sh/a, lib/sh/a/b, lib/sh/c,
    // lib/sh/c/d, lib/sh/c/d/e, share, share/data, share/data/x,
    // share/data/x/y.
    tcheck!(
        c["dirs_populated"] == 13 && c["errors"] == 0,
        "{w}: the runs populated the 13 directories on their paths ({} of 15: not unused \
         or share/data/empty), no error",
        c["dirs_populated"]
    );
    tcheck!(
        dir_tag(&dst.join("unused")).as_deref() == Some(UNPOPULATED)
            && dir_tag(&dst.join("share/data/empty")).as_deref() == Some(UNPOPULATED),
        "{w}: directories nothing looked into stay unpopulated"
    );
    let env_size = std::fs::metadata(env).or_brok("stat env").len();
    tcheck!(
        kv(&m, "fetched_bytes") > 0 && kv(&m, "fetched_bytes") <= env_size + (1 << 20),
        "{w}: the binary was filled from the source ({} bytes fetched, env is {env_size})",
        kv(&m, "fetched_bytes")
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "{w}: SIGTERM: {st}");
}
