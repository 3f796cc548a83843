//! Unit tests of lazy directories that need no kernel feature: the
//! manifest indexed by directory, the populate plan, names, the record,
//! getdents64 parsing, and a population into a host directory (where the
//! host's temporary filesystem has O_TMPFILE and user xattrs).

use super::*;
use std::os::unix::fs::PermissionsExt;

fn attrs(mode: u32, secs: i64) -> Attrs {
    Attrs {
        mode,
        mtime: (secs, 7),
        owner: None,
    }
}

fn entry(name: &str, kind: Kind) -> LazyEntry {
    LazyEntry {
        name: name.into(),
        kind,
        attrs: attrs(0o644, 1),
    }
}

fn file(name: &str, size: u64) -> LazyEntry {
    entry(name, Kind::File { size })
}

/// A listing, sorted by name as the sources give it.
fn listing(mut entries: Vec<LazyEntry>) -> Listing {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Listing {
        dir: attrs(0o755, 100),
        entries,
    }
}

fn names(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

const MANIFEST: &str = "# hsm manifest v1\n\
d\t0755\t0\t1700000000.000000001\t.\n\
f\t0644\t3\t1.000000000\tz-last\n\
d\t2775\t0\t1700000001.000000002\ta\n\
d\t0700\t0\t1700000002.000000003\ta/b\n\
f\t0600\t4096\t2.000000000\ta/b/deep\n\
l\t0777\t0\t3.000000000\ta/link\t../z-last\n\
f\t0444\t0\t4.000000000\ta/empty\n\
d\t0755\t0\t5.000000000\tempty-dir\n\
f\t0644\t1\t6.000000000\ta%20space\n";

#[test]
fn manifest_indexed_by_directory() {
    let idx = ManifestIndex::new(manifest::decode(MANIFEST).unwrap()).unwrap();
    assert_eq!(idx.dirs(), 4, "root, a, a/b, empty-dir");
    assert_eq!(idx.entries(), 8);
    let root = idx.get(Path::new("")).unwrap();
    assert_eq!(root.dir.mode, 0o755);
    assert_eq!(root.dir.mtime, (1_700_000_000, 1));
    let got: Vec<_> = root.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        got,
        names(&["a", "a space", "empty-dir", "z-last"]),
        "the root's own entries only, sorted by name"
    );
    let a = idx.get(Path::new("a")).unwrap();
    assert_eq!(a.dir.mode, 0o2775);
    assert_eq!(a.dir.mtime, (1_700_000_001, 2));
    assert_eq!(
        a.entries,
        vec![
            LazyEntry {
                name: "b".into(),
                kind: Kind::Dir,
                attrs: Attrs {
                    mode: 0o700,
                    mtime: (1_700_000_002, 3),
                    owner: None
                }
            },
            LazyEntry {
                name: "empty".into(),
                kind: Kind::File { size: 0 },
                attrs: Attrs {
                    mode: 0o444,
                    mtime: (4, 0),
                    owner: None
                }
            },
            LazyEntry {
                name: "link".into(),
                kind: Kind::Symlink {
                    target: "../z-last".into()
                },
                attrs: Attrs {
                    mode: 0o777,
                    mtime: (3, 0),
                    owner: None
                }
            },
        ]
    );
    let b = idx.get(Path::new("a/b")).unwrap();
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.entries[0].kind, Kind::File { size: 4096 });
    assert!(idx.get(Path::new("empty-dir")).unwrap().entries.is_empty());
    assert!(
        idx.get(Path::new("z-last")).is_none(),
        "a file has no listing"
    );
    assert!(idx.get(Path::new("nope")).is_none());
    assert!(idx.get(Path::new("a/b/deep")).is_none());
}

#[test]
fn meta_from_a_manifest_file_fetches_once() {
    let dir = std::env::temp_dir().join(format!("hsm-lazy-meta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mf = dir.join("m");
    std::fs::write(&mf, MANIFEST).unwrap();
    let meta = Meta::new(
        MetaSpec::Manifest(mf.to_string_lossy().into_owned()),
        Duration::from_secs(1),
    );
    let req = AtomicU64::new(0);
    assert_eq!(meta.listing(Path::new("a"), &req).unwrap().entries.len(), 3);
    assert_eq!(meta.listing(Path::new(""), &req).unwrap().entries.len(), 4);
    let e = meta.listing(Path::new("missing"), &req).unwrap_err();
    assert!(
        format!("{e:#}").contains("has no directory missing"),
        "{e:#}"
    );
    assert_eq!(req.load(Ordering::Relaxed), 1, "fetched once, then indexed");
    // A manifest that cannot be had: an error, and asked again next time.
    let gone = Meta::new(
        MetaSpec::Manifest(dir.join("gone").to_string_lossy().into_owned()),
        Duration::from_secs(1),
    );
    assert!(gone.listing(Path::new(""), &req).is_err());
    assert!(gone.listing(Path::new(""), &req).is_err());
    assert_eq!(req.load(Ordering::Relaxed), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn index_refuses_orphans() {
    let e = |p: &str, kind| manifest::Entry {
        path: p.into(),
        kind,
        mode: 0o755,
        mtime: (0, 0),
    };
    assert!(ManifestIndex::new(vec![e("", Kind::Dir), e("x/y", Kind::Dir)]).is_err());
    assert!(ManifestIndex::new(vec![e("x", Kind::Dir)]).is_err());
    assert!(ManifestIndex::new(vec![e("", Kind::Dir)]).is_ok());
}

#[test]
fn entry_rules() {
    let attrs = Attrs {
        mode: 0o644,
        mtime: (0, 0),
        owner: None,
    };
    let e = |name: &str, kind: Kind| LazyEntry {
        name: name.into(),
        kind,
        attrs,
    };
    let link = |t: &[u8]| Kind::Symlink {
        target: PathBuf::from(OsStr::from_bytes(t)),
    };
    for ok in [
        e(
            "f",
            Kind::File {
                size: i64::MAX as u64,
            },
        ),
        e("d", Kind::Dir),
        e("l", link(&[b'x'; 4095])),
    ] {
        assert_eq!(valid_entry(&ok), Ok(()), "{ok:?}");
    }
    for bad in [
        e("f", Kind::File { size: 1 << 63 }),
        e("l", link(b"a\0b")),
        e("l", link(&[b'x'; 4096])),
        e("l", link(b"")),
        e("a/b", Kind::Dir),
    ] {
        assert!(valid_entry(&bad).is_err(), "{bad:?}");
    }
    let listing = Listing {
        dir: attrs,
        entries: vec![e("a", Kind::File { size: 1 << 63 }), e("b", Kind::Dir)],
    };
    let p = plan(&listing, &[]);
    assert_eq!(p.invalid.len(), 1);
    assert_eq!(p.create.len(), 1);
}

#[test]
fn name_rules() {
    for ok in [
        "a",
        ".hidden",
        "...",
        "with space",
        "tab\tnl\n",
        &"x".repeat(255),
    ] {
        assert_eq!(valid_name(OsStr::new(ok)), Ok(()), "{ok:?}");
    }
    let high = OsStr::from_bytes(b"\xff\xfe");
    assert_eq!(valid_name(high), Ok(()));
    for bad in ["", ".", "..", "a/b", "/", &"x".repeat(256)] {
        assert!(valid_name(OsStr::new(bad)).is_err(), "{bad:?}");
    }
    assert!(valid_name(OsStr::from_bytes(b"a\0b")).is_err());
    assert!(is_tmp_name(OsStr::new(".hsm-lazy-tmp.12.3")));
    assert!(!is_tmp_name(OsStr::new("hsm-lazy-tmp.12.3")));
    let t = tmp_name();
    assert!(
        is_tmp_name(&t) && valid_name(&t).is_ok() && t.len() < 64,
        "{t:?}"
    );
    assert_ne!(tmp_name(), tmp_name(), "fresh each time");
}

#[test]
fn plan_fresh_directory() {
    let l = listing(vec![file("a", 1), entry("d", Kind::Dir), file("z", 0)]);
    let p = plan(&l, &[]);
    let made: Vec<_> = p.create.iter().map(|e| e.name.clone()).collect();
    assert_eq!(made, names(&["a", "d", "z"]));
    assert!(p.keep.is_empty() && p.remove.is_empty() && p.invalid.is_empty());
}

#[test]
fn plan_after_a_crash() {
    let l = listing(vec![
        file("a", 1),
        entry("d", Kind::Dir),
        entry("l", Kind::Symlink { target: "a".into() }),
        // A source name that looks temporary is the source's: kept/made.
        file(".hsm-lazy-tmp.1.1", 5),
        file("z", 0),
    ]);
    let existing = names(&[
        "a",
        ".hsm-lazy-tmp.99.4",
        "d",
        ".hsm-lazy-tmp.99.5",
        "local-only",
    ]);
    let p = plan(&l, &existing);
    let made: Vec<_> = p.create.iter().map(|e| e.name.clone()).collect();
    assert_eq!(made, names(&[".hsm-lazy-tmp.1.1", "l", "z"]));
    assert_eq!(p.keep, names(&["a", "d"]));
    assert_eq!(
        p.remove,
        names(&[".hsm-lazy-tmp.99.4", ".hsm-lazy-tmp.99.5"]),
        "leftover temporary names, not the local entry"
    );
    // The source's temporary-looking name, once made, is kept, not removed.
    let p = plan(&l, &names(&[".hsm-lazy-tmp.1.1"]));
    assert!(p.remove.is_empty());
    assert_eq!(p.keep, names(&[".hsm-lazy-tmp.1.1"]));
}

#[test]
fn plan_complete_directory_makes_nothing() {
    let l = listing(vec![file("a", 1), entry("d", Kind::Dir)]);
    let p = plan(&l, &names(&["d", "a"]));
    assert!(p.create.is_empty() && p.remove.is_empty());
    assert_eq!(p.keep.len(), 2);
}

#[test]
fn plan_skips_invalid_and_twice() {
    let l = Listing {
        dir: attrs(0o755, 1),
        entries: vec![
            file("ok", 1),
            file("ok", 2),
            file(&"x".repeat(300), 1),
            file("..", 1),
        ],
    };
    let p = plan(&l, &[]);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.create[0].kind, Kind::File { size: 1 }, "the first one");
    assert_eq!(p.invalid.len(), 2);
}

#[test]
fn record() {
    for s in [
        MetaSpec::Dir("/srv/tree with space".into()),
        MetaSpec::Manifest("http://127.0.0.1:8080/tree.manifest".into()),
        MetaSpec::Manifest("/srv/tree.manifest".into()),
    ] {
        assert_eq!(MetaSpec::decode(&s.encode()).unwrap(), s);
    }
    assert_eq!(
        MetaSpec::Dir("/a".into()).encode(),
        b"dir:/a".to_vec(),
        "the documented form"
    );
    for bad in [&b"dir:relative"[..], b"manifest:", b"http://x/", b""] {
        assert!(MetaSpec::decode(bad).is_err(), "{bad:?}");
    }
    assert_eq!(DirState::from_value(None), DirState::Plain);
    assert_eq!(
        DirState::from_value(Some(b"unpopulated")),
        DirState::Unpopulated
    );
    assert_eq!(
        DirState::from_value(Some(b"populated")),
        DirState::Populated
    );
    assert_eq!(
        DirState::from_value(Some(b"x")),
        DirState::Unknown(b"x".to_vec())
    );
}

fn dirent(name: &[u8]) -> Vec<u8> {
    let len = (19 + name.len() + 1).div_ceil(8) * 8;
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&1u64.to_ne_bytes());
    v[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
    v[18] = libc::DT_REG;
    v[19..19 + name.len()].copy_from_slice(name);
    v
}

#[test]
fn dirents() {
    let mut buf = Vec::new();
    for n in [
        &b"."[..],
        b"..",
        b"a",
        b"long name \xff",
        b".hsm-lazy-tmp.1.2",
    ] {
        buf.extend(dirent(n));
    }
    let got = parse_dirents(&buf).unwrap();
    assert_eq!(
        got,
        vec![
            OsString::from("a"),
            OsString::from_vec(b"long name \xff".to_vec()),
            OsString::from(".hsm-lazy-tmp.1.2")
        ]
    );
    assert!(parse_dirents(&buf[..10]).is_err());
    let mut bad = dirent(b"a");
    bad[16] = 200;
    assert!(parse_dirents(&bad).is_err());
}

/// A scratch directory of the host (removed on drop).
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!("hsm-lazy-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open_dir(p: &Path) -> OwnedFd {
    std::fs::File::open(p).unwrap().into()
}

/// Whether the host's temporary directory can hold stubs (O_TMPFILE and
/// user xattrs); the population test is skipped where it cannot.
fn host_can(dir: &Path) -> bool {
    let d = open_dir(dir);
    let fd = match nix::fcntl::openat(
        Some(d.as_raw_fd()),
        ".",
        OFlag::O_TMPFILE | OFlag::O_RDWR,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => fd,
        Err(_) => return false,
    };
    // SAFETY: a new descriptor.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    xattr::fset(f.as_fd(), "user.hsm.probe", b"1").is_ok()
}

#[test]
fn listing_of_a_source_directory() {
    let s = Scratch::new("src");
    let root = &s.0;
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/f"), b"12345").unwrap();
    std::os::unix::fs::symlink("sub/f", root.join("l")).unwrap();
    std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let l = list_source_dir(root, Path::new("")).unwrap();
    let got: Vec<_> = l
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.kind.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "l".into(),
                Kind::Symlink {
                    target: "sub/f".into()
                }
            ),
            ("sub".into(), Kind::Dir),
        ]
    );
    let sub = list_source_dir(root, Path::new("sub")).unwrap();
    assert_eq!(sub.entries[0].kind, Kind::File { size: 5 });
    assert_eq!(sub.entries[0].attrs.mode, 0o640);
    assert!(sub.entries[0].attrs.owner.is_some());
    assert!(list_source_dir(root, Path::new("nope")).is_err());
    assert!(list_source_dir(root, Path::new("l")).is_err());
    assert!(list_source_dir(root, Path::new("../x")).is_err());
}

fn lstat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn populate_a_host_directory() {
    let s = Scratch::new("pop");
    let d = s.0.join("d");
    std::fs::create_dir(&d).unwrap();
    if !host_can(&d) {
        eprintln!("skipped: no O_TMPFILE or user xattrs in {}", d.display());
        return;
    }
    let l = Listing {
        dir: attrs(0o750, 1_000_000),
        entries: vec![
            LazyEntry {
                name: "big".into(),
                kind: Kind::File { size: 1 << 30 },
                attrs: attrs(0o640, 11),
            },
            LazyEntry {
                name: "empty".into(),
                kind: Kind::File { size: 0 },
                attrs: attrs(0o444, 12),
            },
            LazyEntry {
                name: "l".into(),
                kind: Kind::Symlink {
                    target: "no/such".into(),
                },
                attrs: attrs(0o777, 13),
            },
            LazyEntry {
                name: "sub".into(),
                kind: Kind::Dir,
                attrs: attrs(0o2750, 14),
            },
        ],
    };
    // A crash left: one entry made, two temporary names.
    std::fs::write(d.join("empty"), b"").unwrap();
    std::fs::create_dir(d.join(".hsm-lazy-tmp.1.1")).unwrap();
    std::os::unix::fs::symlink("x", d.join(".hsm-lazy-tmp.1.2")).unwrap();
    let fd = open_dir(&d);
    let mut live = 0;
    let n = populate(fd.as_fd(), &l, Duration::ZERO, || live += 1).unwrap();
    assert_eq!(
        n,
        Populated {
            created: 3,
            kept: 1,
            removed: 2,
            invalid: 0
        }
    );
    assert_eq!(live, 3);
    let mut got: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    got.sort();
    assert_eq!(
        got,
        names(&["big", "empty", "l", "sub"]),
        "no temporary name left"
    );
    let big = lstat(&d.join("big"));
    assert!(big.is_file());
    assert_eq!(big.len(), 1 << 30);
    assert_eq!(big.blocks(), 0, "sparse");
    assert_eq!(big.mode() & 0o7777, 0o640);
    assert_eq!((big.mtime(), big.mtime_nsec()), (11, 7));
    assert_eq!(
        xattr::lget(&d.join("big"), STUB_XATTR).unwrap().unwrap(),
        b"1073741824"
    );
    assert_eq!(
        std::fs::read_link(d.join("l")).unwrap(),
        PathBuf::from("no/such")
    );
    assert_eq!(lstat(&d.join("l")).mtime(), 13);
    let sub = lstat(&d.join("sub"));
    assert!(sub.is_dir());
    assert_eq!(sub.mode() & 0o7777, 0o2750);
    assert_eq!(sub.mtime(), 14);
    assert_eq!(
        xattr::lget(&d.join("sub"), DIR_XATTR).unwrap().unwrap(),
        UNPOPULATED.as_bytes()
    );
    assert_eq!(
        xattr::lget(&d.join("empty"), STUB_XATTR).unwrap(),
        None,
        "the entry that was there is kept as it was"
    );
    let dm = lstat(&d);
    assert_eq!(
        (dm.mtime(), dm.mtime_nsec()),
        (1_000_000, 7),
        "the directory's mtime is the source's again"
    );
    // Again: nothing to do.
    let n = populate(fd.as_fd(), &l, Duration::ZERO, || {}).unwrap();
    assert_eq!(
        n,
        Populated {
            created: 0,
            kept: 4,
            removed: 0,
            invalid: 0
        }
    );
}

/// What a test compares of an entry: type, size, symlink target, mode
/// (not of a symlink), mtime.
fn describe(p: &Path) -> (String, u64, Option<PathBuf>, u32, (i64, i64)) {
    let m = lstat(p);
    let ft = m.file_type();
    let t = if ft.is_dir() {
        "d"
    } else if ft.is_file() {
        "f"
    } else {
        "l"
    };
    (
        t.into(),
        if ft.is_file() { m.len() } else { 0 },
        ft.is_symlink().then(|| std::fs::read_link(p).unwrap()),
        if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        },
        (m.mtime(), m.mtime_nsec()),
    )
}

type Described =
    std::collections::BTreeMap<PathBuf, (String, u64, Option<PathBuf>, u32, (i64, i64))>;

fn describe_tree(root: &Path) -> Described {
    let mut out = Described::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        if lstat(&p).is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.insert(rel, describe(&p));
    }
    out
}

/// What hsm-serve does, directory after directory, without the kernel:
/// populate `rel` from `meta`, tag it populated, then its subdirectories.
fn populate_all(dst: &Path, rel: &Path, meta: &Meta, req: &AtomicU64) -> u64 {
    let fd = open_dir(&dst.join(rel));
    assert_eq!(
        dir_state(fd.as_fd()).unwrap(),
        DirState::Unpopulated,
        "{rel:?}"
    );
    let l = meta.listing(rel, req).unwrap();
    let n = populate(fd.as_fd(), &l, Duration::ZERO, || {}).unwrap();
    xattr::fset(fd.as_fd(), DIR_XATTR, POPULATED.as_bytes()).unwrap();
    let mut made = n.created;
    for e in &l.entries {
        if e.kind == Kind::Dir {
            made += populate_all(dst, &rel.join(&e.name), meta, req);
        }
    }
    made
}

/// A whole tree made lazily, from a source directory and from its
/// manifest, is the source tree (mtimes of directories included: each is
/// set back after its population).
#[test]
fn whole_tree_from_both_metadata_sources() {
    let s = Scratch::new("tree");
    let src = s.0.join("src");
    std::fs::create_dir(&src).unwrap();
    if !host_can(&src) {
        eprintln!("skipped: no O_TMPFILE or user xattrs in {}", src.display());
        return;
    }
    for d in ["a", "a/b", "a/b/c", "ro", "sg", "sg/deep", "sg/deep/er"] {
        std::fs::create_dir(src.join(d)).unwrap();
    }
    for (f, n) in [
        ("top", 3),
        ("a/b/c/x", 5000),
        ("a/empty", 0),
        ("sg/deep/er/f", 1),
    ] {
        std::fs::write(src.join(f), vec![7u8; n]).unwrap();
    }
    std::fs::write(src.join("ro/in a ro dir"), b"r").unwrap();
    std::os::unix::fs::symlink("../top", src.join("a/up")).unwrap();
    std::os::unix::fs::symlink("/no/such", src.join("sg/abs")).unwrap();
    let modes = [
        ("a/b/c/x", 0o4755),
        ("top", 0o600),
        ("a/b", 0o700),
        ("sg", 0o2775),
        ("ro", 0o555),
    ];
    for (p, m) in modes {
        std::fs::set_permissions(src.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
    let want = describe_tree(&src);
    let manifest_file = s.0.join("tree.manifest");
    let (entries, _) = manifest::scan(&src).unwrap();
    std::fs::write(&manifest_file, manifest::encode(&entries)).unwrap();
    let specs = [
        MetaSpec::Dir(src.clone()),
        MetaSpec::Manifest(manifest_file.to_string_lossy().into_owned()),
    ];
    for (i, spec) in specs.into_iter().enumerate() {
        let dst = s.0.join(format!("dst{i}"));
        std::fs::create_dir(&dst).unwrap();
        xattr::lset(&dst, DIR_XATTR, UNPOPULATED.as_bytes()).unwrap();
        let m = lstat(&src);
        std::fs::set_permissions(&dst, m.permissions()).unwrap();
        let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
        nix::sys::stat::utimensat(
            None,
            &dst,
            &TimeSpec::UTIME_OMIT,
            &mt,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let dirs = want.values().filter(|d| d.0 == "d").count() as u64;
        let meta = Meta::new(spec.clone(), Duration::from_secs(1));
        let req = AtomicU64::new(0);
        let made = populate_all(&dst, Path::new(""), &meta, &req);
        assert_eq!(made, want.len() as u64 - 1, "{spec}: every entry made once");
        let want_req = if i == 0 { dirs } else { 1 };
        assert_eq!(req.load(Ordering::Relaxed), want_req, "{spec}");
        assert_eq!(describe_tree(&dst), want, "{spec}");
    }
}
