//! hsm_lazy_stat: a lookup populates exactly the directories on its path.
//! A lazy clone (`hsm-populate --lazy`) of a tree of 14 directories, with a
//! file at depth 7 (`a/b/c/d/e/f/target`) and siblings at every level, is
//! served by `hsm-serve`.  One `stat` of the deep file gives its size and
//! mode, and populates exactly its 7 ancestors: `dirs_populated` is 7,
//! `entries_created` the number of their entries, and no file event
//! reaches the workers (the daemon's own truncates of the stubs it makes
//! are answered as they are read; before, each went to a worker, so two
//! workers populating at once could wait for each other); they are tagged
//! `populated`, the subdirectories they hold that are not on the path are
//! tagged `unpopulated` (read without populating anything more: the
//! counters do not move), and the deeper ones do not exist yet.  A name the
//! source does not have: `stat` in a populated directory, in an unpopulated
//! one (populated by it) and under a directory that does not exist gives
//! ENOENT; repeated, it costs nothing (the lazy-directory counters, events
//! included, are unchanged: no event, nothing fetched again); creating new
//! names in a populated directory sends no event either (its ignore mark).
//! After the dentry and inode caches are dropped (which takes the evictable
//! ignore marks with the inodes), the same lookups give the same answers
//! and the daemon answers the events, which it gets again, from its tags:
//! nothing populated or fetched again.  Both sources (with nginx the manifest is fetched once in all),
//! ext4, xfs, btrfs; TCONF where the kernel refuses FAN_PRE_DIR_ACCESS.
//!
//! Guards the lazy directories of the reference HSM (issue 16 item 4,
//! selftests/hsm/README.md "Lazy directories").

use super::hsm_http::{cleanup, SourceKind, BOTH_SOURCES};
use super::hsm_lazy_util::*;
use super::hsm_util::kv;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tbrok, tcheck, texp_fail, tinfo, Ctx, Test};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TEST: Test = Test {
    name: "hsm_lazy_stat",
    doc: "lazy directories: a stat populates exactly the path's ancestors; a missing name is ENOENT, again for free",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    needs_cmds: &["nginx"],
    filesystems: HSM_FILESYSTEMS,
    probe: Some(probe),
    tags: TAGS,
    timeout: Duration::from_secs(600),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const DEEP: &str = "a/b/c/d/e/f/target";
const DEEP_SIZE: u64 = 12345;

const TREE: &[(&str, Make)] = &[
    ("a", Make::Dir),
    ("top-file", Make::File(10)),
    ("top-link", Make::Symlink("a/b")),
    ("top-sib", Make::Dir),
    ("top-sib/f", Make::File(1)),
    ("a/a-file", Make::File(4096)),
    ("a/a-sib", Make::Dir),
    ("a/a-sib/x", Make::Dir),
    ("a/a-sib/x/f", Make::File(3)),
    ("a/b", Make::Dir),
    ("a/b/b-file", Make::File(0)),
    ("a/b/b-sib", Make::Dir),
    ("a/b/c", Make::Dir),
    ("a/b/c/c-file", Make::File(100)),
    ("a/b/c/d", Make::Dir),
    ("a/b/c/d/d-file", Make::File(5000)),
    ("a/b/c/d/d-sib", Make::Dir),
    ("a/b/c/d/d-sib/g", Make::File(7)),
    ("a/b/c/d/e", Make::Dir),
    ("a/b/c/d/e/e-file", Make::File(1)),
    ("a/b/c/d/e/f", Make::Dir),
    (DEEP, Make::File(DEEP_SIZE)),
    ("a/b/c/d/e/f/f-link", Make::Symlink("target")),
    ("a/b/c/d/e/f/f-sib", Make::Dir),
    ("a/b/c/d/e/f/f-sib/y", Make::Dir),
];

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        one_source(ctx, kind);
    }
}

/// `stat` that must fail with ENOENT.
fn enoent(p: &Path, what: &str) {
    texp_fail!(std::fs::symlink_metadata(p), Errno::ENOENT, "{what}");
}

fn one_source(ctx: &Ctx, kind: SourceKind) {
    let src = LazySource::new(ctx, kind, &format!("src-{kind:?}"));
    let w = src.label();
    build(&src.tree, TREE);
    std::fs::set_permissions(src.tree.join(DEEP), PermissionsExt::from_mode(0o640))
        .or_brok("chmod");
    let want = snapshot(&src.tree);
    let (dirs, _, _) = kinds(&want);
    if dirs != 14 {
        tbrok!("the source has {dirs} directories");
    }
    let dst = ctx.path(&format!("dst-{kind:?}"));
    src.populate(&dst);
    let mut s = src.serve(&dst, &["--workers", "2"]);
    let c0 = dir_counters(&s.stats());
    tcheck!(
        c0["dirs_populated"] == 0 && c0["meta_fetches"] == 0,
        "{w}: nothing populated or fetched before the first access: {c0:?}"
    );

    // One stat of the deep file.
    let m = std::fs::symlink_metadata(dst.join(DEEP));
    tcheck!(
        matches!(&m, Ok(m) if m.is_file() && m.len() == DEEP_SIZE && m.mode() & 0o7777 == 0o640),
        "{w}: stat {DEEP}: a {DEEP_SIZE}-byte 0640 file ({m:?})"
    );
    let ancestors: Vec<PathBuf> = Path::new(DEEP)
        .ancestors()
        .skip(1)
        .map(Path::to_path_buf)
        .collect();
    let made: u64 = ancestors.iter().map(|a| entries_in(&want, a)).sum();
    let m1 = s.stats();
    let c1 = dir_counters(&m1);
    tinfo!("{w}: after the stat: {c1:?}");
    tcheck!(
        kv(&m1, "events") == 0 && kv(&m1, "fetched_bytes") == 0,
        "{w}: the stat read no file: no file event reached the workers (events {}, \
         fetched_bytes {}; the daemon's own truncates of the stubs it made are answered as it \
         reads them: queued, 2 workers populating at once could wait for each other)",
        kv(&m1, "events"),
        kv(&m1, "fetched_bytes")
    );
    tcheck!(
        c1["dirs_populated"] == ancestors.len() as u64 && c1["entries_created"] == made,
        "{w}: the stat populated exactly the {} ancestors of {DEEP} (dirs_populated {}), \
         making their {made} entries (entries_created {})",
        ancestors.len(),
        c1["dirs_populated"],
        c1["entries_created"]
    );
    let fetches = match kind {
        SourceKind::Dir => ancestors.len() as u64,
        SourceKind::Http => 1,
    };
    tcheck!(
        c1["meta_fetches"] == fetches && c1["errors"] == 0,
        "{w}: metadata asked {} times (want {fetches}), no error",
        c1["meta_fetches"]
    );

    // The tags: ancestors populated, their other subdirectories not.
    let bad: Vec<_> = ancestors
        .iter()
        .filter(|a| dir_tag(&dst.join(a)).as_deref() != Some(POPULATED))
        .collect();
    tcheck!(
        bad.is_empty(),
        "{w}: the {} ancestors are tagged {POPULATED} (not: {bad:?})",
        ancestors.len()
    );
    let others = children_dirs(&want, &ancestors);
    let bad: Vec<_> = others
        .iter()
        .filter(|p| dir_tag(&dst.join(p)).as_deref() != Some(UNPOPULATED))
        .collect();
    tcheck!(
        others.len() == 5 && bad.is_empty(),
        "{w}: the {} subdirectories off the path ({others:?}) exist, tagged {UNPOPULATED} \
         (not: {bad:?})",
        others.len()
    );
    let c2 = dir_counters(&s.stats());
    tcheck!(
        c2 == c1,
        "{w}: reading the tags populated nothing more: every other directory is still \
         unpopulated ({c1:?} -> {c2:?})"
    );

    // Names the source does not have.
    enoent(
        &dst.join("a/b/nope"),
        &format!("{w}: stat a/b/nope (populated directory)"),
    );
    let unpop = "a/b/c/d/d-sib/nope";
    enoent(
        &dst.join(unpop),
        &format!("{w}: stat {unpop} (unpopulated directory)"),
    );
    enoent(
        &dst.join("a/no-dir/deeper"),
        &format!("{w}: stat a/no-dir/deeper (no such directory)"),
    );
    let c3 = dir_counters(&s.stats());
    tcheck!(
        c3["dirs_populated"] == c2["dirs_populated"] + 1
            && c3["meta_fetches"] == c2["meta_fetches"] + u64::from(kind == SourceKind::Dir),
        "{w}: the missing names populated only a/b/c/d/d-sib ({c2:?} -> {c3:?})"
    );
    for i in 0..3 {
        for p in ["a/b/nope", unpop, "a/no-dir/deeper"] {
            enoent(&dst.join(p), &format!("{w}: stat {p} again ({})", i + 1));
        }
    }
    let c4 = dir_counters(&s.stats());
    tcheck!(
        c4 == c3,
        "{w}: repeated, the missing names cost nothing: no event, nothing populated or \
         fetched ({c3:?} -> {c4:?})"
    );

    // The ignore mark of a populated directory: new names (lookups the
    // dcache cannot answer, not even negatively) send no event.
    for i in 0..3 {
        let p = dst.join(format!("a/b/new-{i}"));
        std::fs::File::create(&p).or_brok("create a file in a populated directory");
        std::fs::remove_file(&p).or_brok("remove it");
    }
    let c4b = dir_counters(&s.stats());
    tcheck!(
        c4b == c4,
        "{w}: a populated directory is ignored: creating 3 new names in it sent no event \
         ({c4:?} -> {c4b:?})"
    );

    // Without the caches: the events again, answered from the tags.
    hsm::cache::drop_all().or_brok("drop the caches");
    for p in ["a/b/nope", unpop, "a/no-dir/deeper"] {
        enoent(
            &dst.join(p),
            &format!("{w}: stat {p} after dropping the caches"),
        );
    }
    let m = std::fs::symlink_metadata(dst.join(DEEP));
    tcheck!(
        matches!(&m, Ok(m) if m.len() == DEEP_SIZE),
        "{w}: stat {DEEP} after dropping the caches: {m:?}"
    );
    let c5 = dir_counters(&s.stats());
    tcheck!(
        c5["dir_events"] > c4["dir_events"]
            && c5["dir_ignored"] - c4["dir_ignored"] == c5["dir_events"] - c4["dir_events"],
        "{w}: after dropping the caches the directories sent their events again (the evictable \
         ignore marks went with the inodes), all answered from the tags: {} events, {} of them \
         ignored at once",
        c5["dir_events"] - c4["dir_events"],
        c5["dir_ignored"] - c4["dir_ignored"]
    );
    tcheck!(
        [
            "dirs_populated",
            "entries_created",
            "meta_fetches",
            "errors"
        ]
        .iter()
        .all(|k| c5[k] == c4[k]),
        "{w}: after dropping the caches nothing was populated or fetched again \
         ({c4:?} -> {c5:?})"
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "{w}: SIGTERM: {st}");
}
