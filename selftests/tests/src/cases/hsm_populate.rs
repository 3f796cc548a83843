//! hsm_populate: `hsm-populate SRC DST` mirrors a tree as HSM stubs: every
//! directory, regular file and symlink of SRC is at the same place in DST
//! with the same type and mode (and mtime); regular files have their size,
//! no allocated blocks and a `user.hsm.stub` tag holding that size; symlinks
//! keep their target (dangling ones too).  A non-empty DST is refused (exit
//! status != 0, DST untouched) unless --force, which turns it back into
//! stubs.  All of this for both sources (rows of one table): the tree
//! itself (`hsm-populate SRC DST`), and its manifest over HTTP:
//! `hsm-manifest` lists the same tree (names with a space, a TAB and a
//! newline included), nginx (started by the test on loopback, document root
//! on the scratch tmpfs) serves the manifest and the tree, and
//! `hsm-populate --manifest URL DST` builds the same stubs with no access to
//! the tree, which `hsm-serve --mode mmap` then fills from nginx byte for
//! byte.  Local source only (a manifest has no equivalent): a single file
//! is mirrored as one stub (a manifest's root is always a directory), and
//! bad input (missing source, DST inside SRC, no arguments) fails with a
//! message naming it.  HTTP source only, its equivalent of bad input:
//! manifests that name a path outside DST, that are not manifests, that the
//! server does not have (404), or a server that is not there (connection
//! refused), are refused with nothing created.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): the stub tree
//! hsm-serve fills; issue 15 item 3 (stubs from remote metadata).

use super::hsm_http::{cleanup, http_dir, Conf, Nginx, SourceKind, BOTH_SOURCES};
use super::hsm_util::*;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, tfail, tpass, Ctx, Test};
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_populate",
    doc: "hsm-populate: stubs of the right type, size, mode, target, no blocks; refuses a non-empty DST",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(400),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Dir,
    File(u64),
    Symlink(&'static str),
}

struct Entry {
    path: &'static str,
    kind: Kind,
    mode: u32,
}

/// Created in this order (parents first).
const TREE: &[Entry] = &[
    Entry {
        path: "a",
        kind: Kind::Dir,
        mode: 0o755,
    },
    Entry {
        path: "a/empty",
        kind: Kind::File(0),
        mode: 0o644,
    },
    Entry {
        path: "a/one byte",
        kind: Kind::File(1),
        mode: 0o600,
    },
    Entry {
        path: "a/page",
        kind: Kind::File(4096),
        mode: 0o640,
    },
    Entry {
        path: "a/tab\tand\nnewline",
        kind: Kind::File(10),
        mode: 0o644,
    },
    Entry {
        path: "a/b",
        kind: Kind::Dir,
        mode: 0o700,
    },
    Entry {
        path: "a/b/big",
        kind: Kind::File((3 << 20) + 123),
        mode: 0o755,
    },
    Entry {
        path: "a/b/rel-link",
        kind: Kind::Symlink("../page"),
        mode: 0,
    },
    Entry {
        path: "dangling",
        kind: Kind::Symlink("does/not/exist"),
        mode: 0,
    },
    Entry {
        path: "setgid-dir",
        kind: Kind::Dir,
        mode: 0o2775,
    },
    Entry {
        path: "setgid-dir/ro",
        kind: Kind::File(5000),
        mode: 0o444,
    },
];

fn make_src(root: &Path) {
    std::fs::create_dir(root).or_brok("mkdir src");
    for e in TREE {
        let p = root.join(e.path);
        match e.kind {
            Kind::Dir => std::fs::create_dir(&p).or_brok("mkdir"),
            Kind::File(size) => create_pattern(&p, size),
            Kind::Symlink(t) => std::os::unix::fs::symlink(t, &p).or_brok("symlink"),
        }
    }
    // Modes last (read-only directories would refuse their children).
    for e in TREE.iter().rev() {
        if !matches!(e.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(root.join(e.path), PermissionsExt::from_mode(e.mode))
                .or_brok("chmod");
        }
    }
}

/// Compare one mirrored entry; returns a description of the first mismatch.
fn check_entry(src: &Path, dst: &Path, e: &Entry) -> Result<(), String> {
    let s = std::fs::symlink_metadata(src.join(e.path)).map_err(|x| format!("src: {x}"))?;
    let d = std::fs::symlink_metadata(dst.join(e.path)).map_err(|x| format!("missing: {x}"))?;
    match e.kind {
        Kind::Dir if !d.is_dir() => return Err("not a directory".into()),
        Kind::File(size) => {
            if !d.is_file() {
                return Err("not a regular file".into());
            }
            if d.len() != size {
                return Err(format!("size {} want {size}", d.len()));
            }
            if d.blocks() != 0 {
                return Err(format!("{} blocks allocated, want 0", d.blocks()));
            }
            match stub_tag(&dst.join(e.path)) {
                Some(v) if v == size.to_string() => {}
                other => return Err(format!("user.hsm.stub is {other:?}, want {size}")),
            }
        }
        Kind::Symlink(t) => {
            let got = std::fs::read_link(dst.join(e.path)).map_err(|x| format!("readlink: {x}"))?;
            if got != Path::new(t) {
                return Err(format!("symlink to {got:?}, want {t:?}"));
            }
        }
        Kind::Dir => {}
    }
    if !matches!(e.kind, Kind::Symlink(_)) && d.mode() & 0o7777 != e.mode {
        return Err(format!("mode {:o} want {:o}", d.mode() & 0o7777, e.mode));
    }
    if d.mtime() != s.mtime() || d.mtime_nsec() != s.mtime_nsec() {
        return Err(format!(
            "mtime {}.{} want {}.{}",
            d.mtime(),
            d.mtime_nsec(),
            s.mtime(),
            s.mtime_nsec()
        ));
    }
    Ok(())
}

fn check_tree(src: &Path, dst: &Path, what: &str) {
    let mut bad = 0;
    for e in TREE {
        if let Err(why) = check_entry(src, dst, e) {
            tfail!("{what}: {} ({:?}): {why}", e.path, e.kind);
            bad += 1;
        }
    }
    if bad == 0 {
        tpass!(
            "{what}: all {} entries mirrored with type, size, mode, mtime; files sparse and tagged",
            TREE.len()
        );
    }
}

/// A tree to make stubs from and how hsm-populate gets it.
struct TreeSource {
    /// The tree (to compare the stubs with).
    src: PathBuf,
    /// hsm-populate's arguments before DST: SRC, or `--manifest URL`.
    args: Vec<OsString>,
    /// The nginx serving the manifest and the tree (HTTP source).
    nginx: Option<Nginx>,
    /// The document root (HTTP source).
    root: PathBuf,
}

impl TreeSource {
    fn new(ctx: &Ctx, kind: SourceKind) -> Self {
        match kind {
            SourceKind::Dir => {
                let src = ctx.path("src");
                make_src(&src);
                TreeSource {
                    args: vec![src.clone().into()],
                    src,
                    nginx: None,
                    root: PathBuf::new(),
                }
            }
            SourceKind::Http => {
                let base = http_dir(ctx).join("manifest");
                let root = base.join("root");
                let src = root.join("src");
                std::fs::create_dir_all(&root).or_brok("mkdir the document root");
                make_src(&src);
                let manifest = root.join("tree.manifest");
                run_ok(
                    "hsm-manifest",
                    &[src.as_os_str(), OsStr::new("-o"), manifest.as_os_str()],
                );
                let nginx = Nginx::start(&base, &root, Conf::default());
                TreeSource {
                    args: vec!["--manifest".into(), nginx.url("tree.manifest").into()],
                    src,
                    nginx: Some(nginx),
                    root,
                }
            }
        }
    }

    /// `hsm-populate ARGS DST EXTRA`.
    fn populate(&self, dst: &Path, extra: &[&str]) -> std::process::Output {
        let mut a = self.args.clone();
        a.push(dst.into());
        a.extend(extra.iter().map(OsString::from));
        run_tool("hsm-populate", &a)
    }
}

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        let tree = TreeSource::new(ctx, kind);
        let dst = ctx.path(&format!("dst-{kind:?}"));
        mirror(&tree, &dst, kind);
        match kind {
            SourceKind::Dir => local_only(ctx, &tree.src),
            SourceKind::Http => http_only(ctx, tree, &dst),
        }
    }
}

/// The same for both sources: stubs, a non-empty DST refused, --force.
fn mirror(tree: &TreeSource, dst: &Path, kind: SourceKind) {
    let w = match kind {
        SourceKind::Dir => "tree",
        SourceKind::Http => "manifest over HTTP",
    };
    let o = tree.populate(dst, &[]);
    let out = text(&o.stdout);
    tcheck!(
        o.status.success(),
        "{w}: hsm-populate: {}: {out} {}",
        o.status,
        text(&o.stderr)
    );
    check_summary(&out, w);
    check_tree(&tree.src, dst, w);
    let root = std::fs::metadata(dst).or_brok("stat dst");
    tcheck!(root.is_dir(), "{w}: DST is a directory");

    // A non-empty DST is refused and left alone.
    let marker = dst.join("a/page");
    std::fs::write(&marker, b"local data").or_brok("write into dst");
    let o = tree.populate(dst, &[]);
    let msg = text(&o.stderr);
    if !o.status.success() && msg.contains("not empty") && msg.contains(&*dst.to_string_lossy()) {
        tpass!("{w}: non-empty DST refused ({}): {msg}", o.status);
    } else {
        tfail!("{w}: non-empty DST: status {}, stderr {msg:?}", o.status);
    }
    let kept = std::fs::read(&marker).or_brok("read marker");
    tcheck!(
        kept == b"local data",
        "{w}: the refused run left DST untouched"
    );

    // --force makes stubs again.
    let o = tree.populate(dst, &["--force"]);
    tcheck!(
        o.status.success(),
        "{w}: --force into a non-empty DST: {}: {}",
        o.status,
        text(&o.stderr)
    );
    check_tree(&tree.src, dst, &format!("{w}, after --force"));
}

/// A single file, and bad input, with a local source.
fn local_only(ctx: &Ctx, src: &Path) {
    // One file.
    let single = ctx.path("single-stub");
    let o = run_tool(
        "hsm-populate",
        &[src.join("a/b/big").as_os_str(), single.as_os_str()],
    );
    let m = std::fs::symlink_metadata(&single);
    match m {
        Ok(m)
            if o.status.success()
                && m.is_file()
                && m.len() == (3 << 20) + 123
                && m.blocks() == 0
                && m.mode() & 0o7777 == 0o755 =>
        {
            tpass!("single file: a sparse 0755 stub of {} bytes", m.len())
        }
        other => tfail!("single file: status {}, {other:?}", o.status),
    }

    // Bad input.
    let missing = ctx.path("no-such-src");
    let d1 = ctx.path("d1");
    let inside = src.join("a/inside");
    let cases: &[(&str, Vec<&OsStr>, i32, String)] = &[
        (
            "missing source",
            vec![missing.as_os_str(), d1.as_os_str()],
            1,
            missing.to_string_lossy().into_owned(),
        ),
        (
            "DST inside SRC",
            vec![src.as_os_str(), inside.as_os_str()],
            1,
            "inside".to_string(),
        ),
        ("no arguments", vec![], 2, "Usage".to_string()),
    ];
    for (what, args, want_code, want_msg) in cases {
        let o = run_tool("hsm-populate", args);
        let msg = text(&o.stderr);
        if code(&o.status) == *want_code && msg.contains(want_msg.as_str()) {
            tpass!(
                "{what}: exit {want_code}: {}",
                msg.lines().next().unwrap_or("")
            );
        } else {
            tfail!(
                "{what}: exit {}, want {want_code} with {want_msg:?}: {msg:?}",
                code(&o.status)
            );
        }
    }
    tcheck!(!inside.exists(), "DST inside SRC: nothing was created");
}

/// src itself, a, a/b, setgid-dir; 6 files; 2 symlinks.
fn check_summary(out: &str, what: &str) {
    tcheck!(
        out.contains("4 directories") && out.contains("6 files") && out.contains("2 symlinks"),
        "{what}: summary line counts 4 directories, 6 files, 2 symlinks: {out:?}"
    );
}

/// With the HTTP source: the stubs made from the manifest are filled from
/// the same nginx; bad manifests, and no server, are refused.
fn http_only(ctx: &Ctx, tree: TreeSource, dst: &Path) {
    let Some(nginx) = tree.nginx else {
        tbrok!("the HTTP source has no nginx");
    };
    let root = tree.root;
    // The stubs are filled from the same server.
    let s = Serve::start(&serve_args(nginx.url("src/"), dst, "mmap", &[]));
    let (rc, out) = validate(&dst.join("a/b/big"), &["--via", "pread"]);
    tcheck!(
        rc == 0,
        "a stub made from the manifest is filled from nginx byte for byte: {out}"
    );
    let (st, _) = s.stop(nix::sys::signal::Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "hsm-serve: SIGTERM: {st}");

    // Refused, with nothing created.
    let head = "# hsm manifest v1\nd\t0755\t0\t1.000000000\t.\n";
    let bad: &[(&str, String, &str)] = &[
        (
            "a path out of DST",
            format!("{head}f\t0644\t1\t1.000000000\t../escape\n"),
            "not a plain relative path",
        ),
        (
            "an absolute path",
            format!("{head}f\t0644\t1\t1.000000000\t%2Fescape\n"),
            "not a plain relative path",
        ),
        (
            "not a manifest",
            "<html></html>\n".into(),
            "not an hsm manifest",
        ),
    ];
    for (i, (_, body, _)) in bad.iter().enumerate() {
        std::fs::write(root.join(format!("bad{i}")), body).or_brok("write a manifest");
    }
    let rows = bad
        .iter()
        .enumerate()
        .map(|(i, (what, _, want))| (*what, format!("bad{i}"), *want))
        .chain([("a missing manifest", "none".to_string(), "HTTP status 404")]);
    for (i, (what, name, want)) in rows.enumerate() {
        let d = ctx.path(&format!("dst-bad{i}"));
        let o = run_tool(
            "hsm-populate",
            &[
                OsStr::new("--manifest"),
                OsStr::new(&nginx.url(&name)),
                d.as_os_str(),
            ],
        );
        let msg = text(&o.stderr);
        tcheck!(
            code(&o.status) == 1 && msg.contains(want) && !d.exists(),
            "{what}: refused (exit {}, want 1 and {want:?}), nothing created: {msg}",
            code(&o.status)
        );
    }
    tcheck!(
        !ctx.path("escape").exists() && !Path::new("/escape").exists(),
        "nothing was created out of DST"
    );

    // No server: the URL of the manifest once nginx is stopped.
    let url = nginx.url("tree.manifest");
    nginx.stop();
    let d = ctx.path("dst-no-server");
    let o = run_tool(
        "hsm-populate",
        &[OsStr::new("--manifest"), OsStr::new(&url), d.as_os_str()],
    );
    let msg = text(&o.stderr);
    tcheck!(
        code(&o.status) == 1 && msg.contains(&url) && !d.exists(),
        "no server at {url}: refused (exit {}, want 1 and the URL), nothing created: {msg}",
        code(&o.status)
    );
}
