//! Tests of the access profiles: the file format, the plan, and the
//! wrapping source against an in-memory source that records its reads.

use super::*;
use std::os::fd::AsFd;
use std::time::Duration;

/// An in-memory source: files by relative path; every read is recorded;
/// reads at an offset in `fail` fail (once each); each read takes `delay`.
#[derive(Clone, Default)]
struct Mem {
    files: Arc<HashMap<PathBuf, Vec<u8>>>,
    reads: Arc<Mutex<Vec<(PathBuf, u64, u64)>>>,
    fail: Arc<Mutex<Vec<u64>>>,
    delay: Duration,
}

impl Source for Mem {
    fn name(&self) -> String {
        "mem".into()
    }

    fn fetcher(&self) -> Box<dyn Fetcher> {
        Box::new(self.clone())
    }
}

impl Fetcher for Mem {
    fn open<'a>(&'a mut self, rel: &Path) -> Result<Box<dyn SourceFile + 'a>> {
        Ok(Box::new(MemFile {
            m: self.clone(),
            rel: rel.to_path_buf(),
        }))
    }
}

struct MemFile {
    m: Mem,
    rel: PathBuf,
}

impl SourceFile for MemFile {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize> {
        std::thread::sleep(self.m.delay);
        {
            let mut fail = self.m.fail.lock().unwrap();
            if let Some(i) = fail.iter().position(|&o| o == offset) {
                fail.remove(i);
                bail!("injected failure at {offset}");
            }
        }
        let Some(data) = self.m.files.get(&self.rel) else {
            bail!("no such file {}", self.rel.display());
        };
        let a = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - a);
        buf[..n].copy_from_slice(&data[a..a + n]);
        self.m
            .reads
            .lock()
            .unwrap()
            .push((self.rel.clone(), offset, offset + n as u64));
        Ok(n)
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn mem(files: &[(&str, usize)]) -> Mem {
    Mem {
        files: Arc::new(
            files
                .iter()
                .enumerate()
                .map(|(i, (p, n))| (PathBuf::from(p), content(*n, i as u8)))
                .collect(),
        ),
        ..Mem::default()
    }
}

/// A fresh temporary path (removed by the caller).
fn tmp(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "hsm-prefetch-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

fn entry(rel: &str, start: u64, end: u64) -> Entry {
    Entry {
        rel: rel.into(),
        start,
        end,
    }
}

#[test]
fn profile_format_round_trip_and_errors() {
    let mut text = format!("{HEADER}\n");
    text += &line(Path::new("lib/a b%.so"), 0, 4096);
    text += &line(Path::new(""), 8192, 12288);
    let e = parse(&text).unwrap();
    assert_eq!(
        e,
        vec![entry("lib/a b%.so", 0, 4096), entry("", 8192, 12288)]
    );
    assert!(text.contains("lib/a%20b%25.so"), "{text}");
    for (bad, why) in [
        ("0\t1\tx\n", "not an access profile"),
        ("# hsm profile v1\n0 4096 x\n", "line 2"),
        ("# hsm profile v1\n4096\t4096\tx\n", "empty or reversed"),
        ("# hsm profile v1\nx\t4096\ta\n", "not a byte offset"),
        (
            "# hsm profile v1\n0\t4096\t../etc/passwd\n",
            "plain relative",
        ),
        ("# hsm profile v1\n0\t4096\t/etc/passwd\n", "plain relative"),
    ] {
        let err = format!("{:#}", parse(bad).unwrap_err());
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

#[test]
fn plan_merges_cuts_and_keeps_the_order_of_first_access() {
    let entries = [
        entry("b", 1 << 20, (1 << 20) + 4096), // first access: b at 1 MiB
        entry("a", 0, 4096),
        entry("b", 0, 4096),
        entry("a", 8192, 12288), // 4 KiB after a's first range: merged
        entry("a", 1 << 20, (1 << 20) + 4096), // far: its own run
        entry("b", 4096, 8192),  // adjacent to b's 0-4096
    ];
    let p = plan(&entries, 4096, 1 << 20);
    let got: Vec<(&str, u64, u64)> = p
        .iter()
        .map(|c| (c.rel.to_str().unwrap(), c.start, c.end))
        .collect();
    assert_eq!(
        got,
        vec![
            ("b", 1 << 20, (1 << 20) + 4096),
            ("a", 0, 12288),
            ("b", 0, 8192),
            ("a", 1 << 20, (1 << 20) + 4096),
        ]
    );
    // Without a gap a's first two ranges stay apart; small pieces cut runs.
    let p = plan(&entries, 0, 4096);
    assert!(p.iter().all(|c| c.end - c.start == 4096));
    assert_eq!(p.len(), 6);
    assert_eq!((p[1].rel.to_str(), p[1].start), (Some("a"), 0));
    // A run longer than a piece: pieces in the order of their first access.
    let p = plan(
        &[entry("c", 3 << 20, (3 << 20) + 1), entry("c", 0, 4 << 20)],
        0,
        1 << 20,
    );
    let starts: Vec<u64> = p.iter().map(|c| c.start).collect();
    assert_eq!(starts, vec![3 << 20, 0, 1 << 20, 2 << 20]);
}

fn args(record: Option<&Path>, prefetch: Option<&Path>) -> Args {
    Args {
        record_profile: record.map(Path::to_path_buf),
        prefetch: prefetch.map(Path::to_path_buf),
        prefetch_threads: 3,
        prefetch_gap: 0,
        prefetch_chunk: 8192,
        prefetch_memory: 1 << 30,
    }
}

/// Fill `[start, end)` of `rel` through `src` into `dst` (a plain file).
fn fill(src: &dyn Source, rel: &str, dst: &File, start: u64, end: u64) {
    let mut f = src.fetcher();
    f.open(Path::new(rel))
        .unwrap()
        .copy_to(dst.as_fd(), start, end)
        .unwrap();
}

fn read_back(f: &File, start: u64, end: u64) -> Vec<u8> {
    let mut b = vec![0u8; (end - start) as usize];
    nix::sys::uio::pread(f, &mut b, start as i64).unwrap();
    b
}

#[test]
fn record_then_prefetch() {
    let m = mem(&[("lib/big", 64 << 10), ("bin/tool", 20000)]);
    let profile = tmp("profile");
    let out = tmp("out");
    let dst = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&out)
        .unwrap();
    let fills = [
        ("bin/tool", 0, 8192),
        ("lib/big", 16384, 20480),
        ("lib/big", 40960, 49152),
        ("bin/tool", 16384, 20000),
    ];
    // First run: record.  Nothing prefetched; every byte from the source.
    {
        let src =
            ProfiledSource::new(Box::new(m.clone()), &args(Some(&profile), None), None).unwrap();
        for (rel, s, e) in fills {
            fill(&src, rel, &dst, s, e);
        }
    }
    let recorded = read(&profile).unwrap();
    assert_eq!(
        recorded,
        fills
            .iter()
            .map(|&(r, s, e)| entry(r, s, e))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.reads.lock().unwrap().len(), 4);
    m.reads.lock().unwrap().clear();

    // Second run: prefetch, then the same fills find everything in memory.
    let src = ProfiledSource::new(Box::new(m.clone()), &args(None, Some(&profile)), None).unwrap();
    src.start();
    src.wait_prefetched();
    let prefetched = m.reads.lock().unwrap().clone();
    // 8192-byte pieces: tool 0-8192, big 16384-20480, big 40960-49152,
    // tool 16384-20000.
    assert_eq!(prefetched.len(), 4, "{prefetched:?}");
    assert_eq!(
        src.stats().bytes.load(Ordering::SeqCst),
        8192 + 4096 + 8192 + 3616
    );
    m.reads.lock().unwrap().clear();
    for (rel, s, e) in fills {
        fill(&src, rel, &dst, s, e);
        let want = &m.files[Path::new(rel)][s as usize..e as usize];
        assert_eq!(read_back(&dst, s, e), want, "{rel} {s}-{e}");
    }
    assert!(
        m.reads.lock().unwrap().is_empty(),
        "a fill went to the source"
    );
    assert_eq!(
        src.stats().hit_bytes.load(Ordering::SeqCst),
        8192 + 4096 + 8192 + 3616
    );
    // All used: the memory is given back.
    assert_eq!(lock(&src.sh.cache).held, 0);
    assert!(lock(&src.sh.cache).files.is_empty());

    // A fill beyond what was prefetched goes to the source for the rest.
    fill(&src, "lib/big", &dst, 0, 32768);
    assert_eq!(
        read_back(&dst, 0, 32768),
        &m.files[Path::new("lib/big")][..32768]
    );
    assert_eq!(
        *m.reads.lock().unwrap(),
        vec![(PathBuf::from("lib/big"), 0, 32768)]
    );
    drop(src);
    let _ = std::fs::remove_file(&profile);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_failed_or_skipped_piece_is_fetched_by_the_fill() {
    let mut m = mem(&[("f", 32768)]);
    m.fail = Arc::new(Mutex::new(vec![8192]));
    let profile = tmp("profile2");
    std::fs::write(
        &profile,
        format!(
            "{HEADER}\n{}{}",
            line(Path::new("f"), 0, 8192),
            line(Path::new("f"), 8192, 16384)
        ),
    )
    .unwrap();
    let out = tmp("out2");
    let dst = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&out)
        .unwrap();
    let src = ProfiledSource::new(Box::new(m.clone()), &args(None, Some(&profile)), None).unwrap();
    src.start();
    src.wait_prefetched();
    assert_eq!(src.stats().failed.load(Ordering::SeqCst), 1);
    assert_eq!(src.stats().chunks.load(Ordering::SeqCst), 1);
    fill(&src, "f", &dst, 0, 16384);
    assert_eq!(read_back(&dst, 0, 16384), &m.files[Path::new("f")][..16384]);
    assert_eq!(src.stats().hit_bytes.load(Ordering::SeqCst), 8192);
    assert_eq!(src.stats().miss_bytes.load(Ordering::SeqCst), 8192);

    // A memory limit of one piece: the second is skipped.
    let mut a = args(None, Some(&profile));
    a.prefetch_memory = 8192;
    a.prefetch_threads = 1;
    let src = ProfiledSource::new(Box::new(mem(&[("f", 32768)])), &a, None).unwrap();
    src.start();
    src.wait_prefetched();
    assert_eq!(src.stats().skipped.load(Ordering::SeqCst), 1);
    assert_eq!(src.stats().chunks.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_file(&profile);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_fill_waits_for_a_piece_in_flight() {
    let mut m = mem(&[("f", 16384)]);
    m.delay = Duration::from_millis(300);
    let profile = tmp("profile3");
    std::fs::write(
        &profile,
        format!("{HEADER}\n{}", line(Path::new("f"), 0, 16384)),
    )
    .unwrap();
    let out = tmp("out3");
    let dst = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&out)
        .unwrap();
    let mut a = args(None, Some(&profile));
    a.prefetch_chunk = 16384;
    let src = ProfiledSource::new(Box::new(m.clone()), &a, None).unwrap();
    src.start();
    // The piece is in flight (300 ms): the fill waits for it rather than
    // asking the source a second time.
    std::thread::sleep(Duration::from_millis(100));
    fill(&src, "f", &dst, 4096, 8192);
    assert_eq!(
        read_back(&dst, 4096, 8192),
        &m.files[Path::new("f")][4096..8192]
    );
    assert_eq!(src.stats().waits.load(Ordering::SeqCst), 1);
    assert_eq!(m.reads.lock().unwrap().len(), 1, "one read: the prefetch");
    let _ = std::fs::remove_file(&profile);
    let _ = std::fs::remove_file(&out);
}

#[test]
fn without_options_the_source_is_unchanged() {
    let src = wrap(Box::new(mem(&[])), &Args::default(), Path::new("/")).unwrap();
    assert_eq!(src.name(), "mem");
}

#[test]
fn resident_pieces_are_read_back_and_checked() {
    let m = mem(&[("f", 16384)]);
    let profile = tmp("profile4");
    std::fs::write(
        &profile,
        format!("{HEADER}\n{}", line(Path::new("f"), 0, 16384)),
    )
    .unwrap();
    let dst = tmp("dst4");
    std::fs::create_dir(&dst).unwrap();
    // A DST whose file already holds the source's bytes (as a daemon's
    // fill would make it): the pieces are read back, found right, dropped.
    std::fs::write(dst.join("f"), &m.files[Path::new("f")]).unwrap();
    let a = args(None, Some(&profile));
    let src = ProfiledSource::new(Box::new(m.clone()), &a, Some(&dst)).unwrap();
    src.start();
    src.wait_prefetched();
    assert_eq!(src.stats().resident.load(Ordering::SeqCst), 2);
    assert_eq!(src.stats().mismatched.load(Ordering::SeqCst), 0);
    assert_eq!(lock(&src.sh.cache).held, 0, "resident pieces are dropped");
    // A DST of zeros (nobody filled it): a mismatch, and no more pieces
    // made resident; the pieces stay for the fills.
    std::fs::write(dst.join("f"), vec![0u8; 16384]).unwrap();
    let mut a = args(None, Some(&profile));
    a.prefetch_threads = 1;
    let src = ProfiledSource::new(Box::new(m.clone()), &a, Some(&dst)).unwrap();
    src.start();
    src.wait_prefetched();
    assert_eq!(src.stats().mismatched.load(Ordering::SeqCst), 1);
    assert_eq!(src.stats().resident.load(Ordering::SeqCst), 0);
    assert_eq!(lock(&src.sh.cache).held, 16384);
    let _ = std::fs::remove_file(&profile);
    let _ = std::fs::remove_dir_all(&dst);
}
