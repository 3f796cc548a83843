//! hsm_evict: `hsm-evict` (through `hsm-serve --control`) frees the content
//! of files that nothing uses, and a later access fetches it again, exact.
//!
//! * A complete file evicted whole: its blocks are freed, it is a stub
//!   again (user.hsm.stub back, nothing populated), and reading it fetches
//!   every byte again, exact, and completes it again.
//! * A range of a complete file: exactly that range is dropped from the
//!   populated state and fetched again on the next read.
//! * The rule for files in use: a file open (read-only, or for writing)
//!   or mapped by another process (its descriptor closed) is skipped,
//!   reported `busy`, and keeps its content and state.
//! * Bad requests fail with a message and exit 1: a file outside DST, and a
//!   file of DST the source does not have (it could not be fetched back).
//! * The race: four readers open, fault and read random pages of random
//!   files in a loop (hsm-validate, which fails on any wrong byte) while
//!   hsm-evict evicts a random range (or all) of every file, again and
//!   again:
//!   every reader run is exact, evictions happen, and the daemon records
//!   no error.  Eviction holds a write lease, so it never punches a file
//!   while a reader has it open, and an open waits until the eviction is
//!   done: a daemon that holds each lease 3 s (--evict-hold-ms) shows a
//!   reader that opens a complete file during its eviction wait, then read
//!   it exact, and a process that maps it afterwards fault it in exact.
//!
//! Each case with a local source directory and with nginx.  On a kernel
//! without FAN_PRE_FAULT hsm-serve exits 3 and the test is TCONF.
//!
//! Guards issue 15 item 5 (eviction, race-free against a concurrent open or
//! fault, with the rule for files in use) and the fanotify(7) text of
//! patch 4 (a complete file under an ignore mark goes back to fault-time
//! mode once the mark is gone).

use super::hsm_http::{cleanup, SourceKind, TestSource, BOTH_SOURCES};
use super::hsm_util::*;
use crate::common::page_size;
use hsm::util::Rng;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_evict",
    doc: "hsm-evict: frees unused files and ranges; busy files skipped; exact under racing readers",
    needs_kconfigs: &["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/hsm/README.md")],
    needs_cmds: &["nginx"],
    // Two sources, with a race of 10 s each: 140-350 s per filesystem
    // seen under TCG on a loaded host.
    timeout: Duration::from_secs(900),
    run,
    cleanup: Some(cleanup),
    ..Test::DEFAULT
};

const SIZE: u64 = 1 << 20;
const FILES: usize = 6;
/// How long the readers race the evictions.
const RACE: Duration = Duration::from_secs(10);

fn run(ctx: &Ctx) {
    for &kind in BOTH_SOURCES {
        one_source(ctx, kind);
    }
}

/// `hsm-evict --control SOCK ARGS`: (exit code, the summary's pairs, all
/// output).
fn evict(sock: &Path, args: &[&OsStr]) -> (i32, Kv, String) {
    let mut a: Vec<&OsStr> = vec![OsStr::new("--control"), sock.as_os_str()];
    a.extend_from_slice(args);
    let o = run_tool("hsm-evict", &a);
    let out = text(&o.stdout);
    let sum = out
        .lines()
        .find_map(|l| hsm::stats::parse_line(l, "hsm-evict:"))
        .unwrap_or_default();
    (code(&o.status), sum, format!("{out} | {}", text(&o.stderr)))
}

fn blocks_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).or_brok("stat").blocks() * 512
}

fn one_source(ctx: &Ctx, kind: SourceKind) {
    let source = TestSource::new(ctx, kind, &format!("src-{kind:?}"));
    let w = source.label();
    let src = &source.dir;
    let dst = ctx.path(&format!("dst-{kind:?}"));
    let sock = ctx.path(&format!("ctl-{kind:?}"));
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i}")).collect();
    for n in &names {
        create_pattern(&src.join(n), SIZE);
    }
    populate(src, &dst);
    let files: Vec<PathBuf> = names.iter().map(|n| dst.join(n)).collect();
    let sock_arg = sock.to_string_lossy();
    let mut s = Serve::start(&serve_args(
        &source.spec,
        &dst,
        "fault",
        &["--control", &sock_arg],
    ));
    let a = &files[0];

    // A complete file, evicted whole.
    let (c, out) = validate(a, &["--via", "both"]);
    let m0 = s.stats();
    tcheck!(
        c == 0 && stub_tag(a).is_none() && kv(&m0, "files_completed") == 1,
        "{w}: f0 read whole and complete: {out}"
    );
    let (c, sum, out) = evict(&sock, &[a.as_os_str()]);
    tcheck!(
        c == 0 && sum.get("evicted") == Some(&1) && sum.get("bytes") == Some(&SIZE),
        "{w}: f0 evicted whole ({SIZE} bytes): exit {c}: {out}"
    );
    let blocks = blocks_bytes(a);
    tcheck!(
        stub_tag(a).as_deref() == Some(SIZE.to_string().as_str())
            && populated_xattr(a).is_none()
            && blocks <= 64 << 10,
        "{w}: f0 is a stub again: tag {:?}, populated {:?}, {blocks} bytes of blocks",
        stub_tag(a),
        populated_xattr(a)
    );
    let (c, out) = validate(a, &["--via", "both"]);
    let m1 = s.stats();
    tcheck!(
        c == 0
            && kv(&m1, "fetched_bytes") - kv(&m0, "fetched_bytes") == SIZE
            && kv(&m1, "files_completed") == 2,
        "{w}: f0 read again: exact, all {SIZE} bytes fetched again ({}), complete again: {out}",
        kv(&m1, "fetched_bytes") - kv(&m0, "fetched_bytes")
    );

    // A range of it.
    let (off, len) = (16 * page_size(), 16 * page_size());
    let (c, sum, out) = evict(
        &sock,
        &[
            OsStr::new("--offset"),
            OsStr::new(&off.to_string()),
            OsStr::new("--length"),
            OsStr::new(&len.to_string()),
            a.as_os_str(),
        ],
    );
    let mut want = RangeSet::new();
    want.insert(0, off);
    want.insert(off + len, SIZE);
    tcheck!(
        c == 0 && sum.get("bytes") == Some(&len) && populated_xattr(a) == Some(want.clone()),
        "{w}: range {off}+{len} of f0 evicted: populated {:?} (want {want:?}): {out}",
        populated_xattr(a)
    );
    let (c, out) = validate(a, &["--via", "pread"]);
    let m2 = s.stats();
    tcheck!(
        c == 0 && kv(&m2, "fetched_bytes") - kv(&m1, "fetched_bytes") == len,
        "{w}: and read again: exact, the {len} bytes fetched again ({}): {out}",
        kv(&m2, "fetched_bytes") - kv(&m1, "fetched_bytes")
    );

    // Files in use are skipped.
    let b = &files[1];
    let (c, out) = validate(b, &["--via", "pread"]);
    tcheck!(c == 0, "{w}: f1 read whole: {out}");
    for (how, arg) in [
        ("open read-only", "read"),
        ("open for writing", "write"),
        ("mapped, descriptor closed", "map"),
    ] {
        let mut child = std::process::Command::new(tool("hsm-validate"))
            .args([
                OsStr::new("hold"),
                b.as_os_str(),
                OsStr::new("--how"),
                OsStr::new(arg),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .or_brok("spawn hsm-validate hold");
        wait_ready(&mut child);
        let busy0 = kv(&s.stats(), "evict_busy");
        let (c, sum, out) = evict(&sock, &[b.as_os_str()]);
        let busy1 = kv(&s.stats(), "evict_busy");
        drop(child.stdin.take());
        let _ = child.wait();
        tcheck!(
            c == 0 && sum.get("busy") == Some(&1) && busy1 == busy0 + 1,
            "{w}: f1 {how}: skipped as busy: exit {c}: {out}"
        );
        tcheck!(
            stub_tag(b).is_none() && blocks_bytes(b) >= SIZE,
            "{w}: f1 {how}: still complete, its blocks kept ({} bytes)",
            blocks_bytes(b)
        );
    }

    // Bad requests.
    let outside = ctx.path(&format!("outside-{kind:?}"));
    create_pattern(&outside, SIZE);
    let native = dst.join("native");
    create_pattern(&native, SIZE);
    for (what, p) in [("outside DST", &outside), ("not in the source", &native)] {
        let (c, sum, out) = evict(&sock, &[p.as_os_str()]);
        tcheck!(
            c == 1 && sum.get("errors") == Some(&1) && blocks_bytes(p) >= SIZE,
            "{w}: a file {what}: exit {c}, an error, content kept: {out}"
        );
    }
    let (c, out) = validate(&native, &[]);
    tcheck!(
        c == 0,
        "{w}: and the file not in the source is intact: {out}"
    );

    race(&mut s, &sock, &files, w);

    let (st, last) = s.stop(Signal::SIGTERM);
    tcheck!(
        st.code() == Some(0) && last.as_ref().is_some_and(|m| kv(m, "errors") == 2),
        "{w}: SIGTERM: exit {:?}, the two refused requests the only errors: {last:?}",
        st.code()
    );

    open_waits(&source, &dst, &sock, &files[2], w);
}

/// An open during an eviction waits for it, then reads exact content:
/// a daemon that keeps each lease 3 s after the punch (--evict-hold-ms),
/// a complete file evicted, and a reader that opens it while the lease is
/// held.  Without the lease the open would not wait, and with the
/// FAN_PRE_FAULT ignore bit dropped after the lease instead of before, the
/// reader's open would cache holes that a later faulting process maps.
fn open_waits(source: &TestSource, dst: &Path, sock: &Path, f: &Path, w: &str) {
    let sock_arg = sock.to_string_lossy();
    let mut s = Serve::start(&serve_args(
        &source.spec,
        dst,
        "fault",
        &["--control", &sock_arg, "--evict-hold-ms", "3000"],
    ));
    let (c, out) = validate(f, &["--via", "pread"]);
    tcheck!(
        c == 0 && stub_tag(f).is_none(),
        "{w}: {} read whole and complete: {out}",
        f.display()
    );
    let mut ev = std::process::Command::new(tool("hsm-evict"))
        .args([OsStr::new("--control"), sock.as_os_str(), f.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .or_brok("spawn hsm-evict");
    let deadline = Instant::now() + Duration::from_secs(60);
    while kv(&s.stats(), "evict_leased") == 0 {
        if Instant::now() > deadline || matches!(ev.try_wait(), Ok(Some(_))) {
            let _ = ev.kill();
            ltp::tbrok!("{w}: the eviction never held its lease");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The open alone: it waits for the lease (held 3 s after the punch).
    let t0 = Instant::now();
    let opened = std::fs::File::open(f).or_brok("open the file being evicted");
    let waited = t0.elapsed();
    drop(opened);
    let (c, out) = validate(f, &["--via", "pread", "--threads", "1"]);
    let o = ev.wait_with_output().or_brok("wait hsm-evict");
    tcheck!(
        o.status.success() && text(&o.stdout).contains("evicted=1"),
        "{w}: the eviction went through: {}",
        text(&o.stdout)
    );
    tcheck!(
        c == 0 && waited >= Duration::from_secs(1),
        "{w}: an open of the file while it was evicted waited {waited:?} for the lease (held \
         3 s), then it read exact: {out}"
    );
    let (c, out) = validate(f, &["--via", "mmap", "--advice", "random"]);
    tcheck!(
        c == 0,
        "{w}: and a process that maps it afterwards faults it in exact: {out}"
    );
    s.stop(Signal::SIGTERM);
}

fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let out = child
        .stdout
        .take()
        .unwrap_or_else(|| ltp::tbrok!("the holder has no stdout pipe"));
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .or_brok("read the holder's ready line");
    if line.trim() != "ready" {
        ltp::tbrok!("the holder said {line:?}, not ready");
    }
}

/// Readers and evictions at once.
fn race(s: &mut Serve, sock: &Path, files: &[PathBuf], w: &str) {
    let m0 = s.stats();
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = (0..4u64)
        .map(|t| {
            let (stop, runs, bad) = (stop.clone(), runs.clone(), bad.clone());
            let files = files.to_vec();
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x5eed + t);
                while !stop.load(Ordering::Relaxed) {
                    let f = &files[rng.below(files.len() as u64) as usize];
                    let seed = rng.next_u64().to_string();
                    let (c, out) = validate(
                        f,
                        &[
                            "--via",
                            "both",
                            "--sample",
                            "8",
                            "--threads",
                            "1",
                            "--seed",
                            &seed,
                        ],
                    );
                    runs.fetch_add(1, Ordering::Relaxed);
                    if c != 0 {
                        bad.lock().unwrap().push(format!("{}: {out}", f.display()));
                    }
                }
            })
        })
        .collect();
    let mut rng = Rng::new(42);
    let (mut evictions, mut busy, mut bytes) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < RACE {
        // One hsm-evict run asks for every file (a process start is slow
        // under TCG): the same random range of each, or each whole.
        let pages = SIZE / page_size();
        let off = (rng.below(pages) * page_size()).to_string();
        let len = ((1 + rng.below(pages / 4)) * page_size()).to_string();
        let whole = rng.below(4) == 0;
        let mut args: Vec<&OsStr> = Vec::new();
        if !whole {
            args.extend([
                OsStr::new("--offset"),
                OsStr::new(&off),
                OsStr::new("--length"),
                OsStr::new(&len),
            ]);
        }
        args.extend(files.iter().map(|f| f.as_os_str()));
        let (c, sum, out) = evict(sock, &args);
        if c != 0 {
            ltp::tfail!("{w}: hsm-evict failed during the race: {out}");
        }
        evictions += sum.get("evicted").copied().unwrap_or(0);
        busy += sum.get("busy").copied().unwrap_or(0);
        bytes += sum.get("bytes").copied().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join()
            .unwrap_or_else(|_| ltp::tbrok!("a reader thread panicked"));
    }
    let m1 = s.stats();
    let bad = bad.lock().unwrap();
    tinfo!(
        "{w}: race: {} reader runs, {evictions} evictions ({bytes} bytes), {busy} busy, {} bytes \
         fetched",
        runs.load(Ordering::Relaxed),
        kv(&m1, "fetched_bytes") - kv(&m0, "fetched_bytes")
    );
    tcheck!(
        bad.is_empty(),
        "{w}: every reader run racing the evictions was exact ({} failed: {:?})",
        bad.len(),
        bad.first()
    );
    tcheck!(
        bytes > 0 && runs.load(Ordering::Relaxed) > 0,
        "{w}: evictions dropped content while readers ran ({bytes} bytes)"
    );
    tcheck!(
        kv(&m1, "errors") == kv(&m0, "errors"),
        "{w}: the daemon recorded no error during the race ({} -> {})",
        kv(&m0, "errors"),
        kv(&m1, "errors")
    );
    for f in files {
        let (c, out) = validate(f, &["--via", "pread"]);
        tcheck!(c == 0, "{w}: {} exact after the race: {out}", f.display());
    }
}
