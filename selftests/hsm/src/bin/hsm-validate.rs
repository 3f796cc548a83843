//! hsm-validate: write and check page-pattern files.
//!
//! `create FILE --size N` writes a file whose every page is derived from its
//! index (see `hsm::pattern`), so a misplaced, stale or unfilled page is
//! detected byte by byte.  `check FILE` verifies such a file (or a copy
//! served by an HSM) with several threads in random page order, through a
//! shared mapping and with pread(2).  `hold FILE --how read|write|map`
//! keeps a file in use (open, or mapped with its descriptor closed) until
//! its stdin closes, for tests of what an HSM does with files in use.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hsm::map::Map;
use hsm::util::{parse_pages, parse_size, Rng};
use hsm::{pattern, PAGE};
use nix::sys::mman::MmapAdvise;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "hsm-validate",
    about = "Write and check page-pattern files (each page's bytes derive from its index)",
    after_help = "Exit status: 0 content matches; 1 mismatch or read error (the first bad \
                  offset is printed); 2 bad usage or the file cannot be opened.\n\
                  A page that cannot be faulted in (an HSM denied it) kills `check --via mmap` \
                  with SIGBUS."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write FILE (created or truncated) with the page pattern.
    Create {
        file: PathBuf,
        /// Size in bytes, with an optional K, M or G suffix.
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Check FILE against the page pattern.
    Check {
        file: PathBuf,
        /// Threads per pass.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: u32,
        /// How to read: through a shared mapping, with pread(2), or both
        /// (mapping first, so a cold HSM file is filled by page faults).
        #[arg(long, value_enum, default_value_t = Via::Both)]
        via: Via,
        /// Check only these pages (e.g. 0-9,100,200-299) instead of all.
        #[arg(long, conflicts_with = "sample")]
        pages: Option<String>,
        /// Check only N random pages.
        #[arg(long)]
        sample: Option<u64>,
        /// Seed of the random page order (and sample); printed when omitted.
        #[arg(long)]
        seed: Option<u64>,
        /// madvise(2) advice for the mapping.
        #[arg(long, value_enum, default_value_t = Advice::Normal)]
        advice: Advice,
    },
    /// Keep FILE in use: print "ready" once it is, then wait for stdin to
    /// close.
    Hold {
        file: PathBuf,
        /// read: open read-only; write: open read-write; map: map it
        /// shared, read-only, and close the descriptor.
        #[arg(long, value_enum)]
        how: Hold,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Hold {
    Read,
    Write,
    Map,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Via {
    Mmap,
    Pread,
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Advice {
    Normal,
    Random,
    Sequential,
}

/// What a check found.
#[derive(Debug)]
enum Bad {
    Mismatch { off: u64, got: u8, want: u8 },
    ReadError { off: u64, err: String },
}

impl Bad {
    fn off(&self) -> u64 {
        match self {
            Bad::Mismatch { off, .. } | Bad::ReadError { off, .. } => *off,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Create { file, size } => create(&file, size).map(|()| true),
        Cmd::Check {
            file,
            threads,
            via,
            pages,
            sample,
            seed,
            advice,
        } => check(&file, threads, via, pages, sample, seed, advice),
        Cmd::Hold { file, how } => hold(&file, how).map(|()| true),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hsm-validate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn hold(path: &Path, how: Hold) -> Result<()> {
    use std::io::{Read, Write};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(how == Hold::Write)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let _map = match how {
        Hold::Map => {
            let len = f.metadata().context("fstat")?.len().max(1);
            let m = Map::whole_ro(&f, len).with_context(|| format!("map {}", path.display()))?;
            drop(f);
            Some(m)
        }
        _ => {
            // Kept open until the end of the function.
            std::mem::forget(f);
            None
        }
    };
    println!("ready");
    std::io::stdout().flush().context("write ready")?;
    let mut sink = Vec::new();
    std::io::stdin()
        .read_to_end(&mut sink)
        .context("wait for stdin to close")?;
    Ok(())
}

fn create(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    pattern::write_file(&mut f, size).with_context(|| format!("write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    println!(
        "hsm-validate: created {}: {size} bytes ({} pages)",
        path.display(),
        size.div_ceil(PAGE)
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check(
    path: &Path,
    threads: u32,
    via: Via,
    pages: Option<String>,
    sample: Option<u64>,
    seed: Option<u64>,
    advice: Advice,
) -> Result<bool> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let size = f
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    let npages = size.div_ceil(PAGE);
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = Rng::new(seed);
    let list: Vec<u64> = match (pages, sample) {
        (Some(spec), _) => {
            let v = parse_pages(&spec)?;
            if let Some(&p) = v.iter().find(|&&p| p >= npages) {
                bail!(
                    "page {p} is beyond the end of {} ({npages} pages)",
                    path.display()
                );
            }
            v
        }
        (None, Some(k)) => rng.sample(npages, k),
        (None, None) => (0..npages).collect(),
    };
    let f = Arc::new(f);
    let mut passes = Vec::new();
    if matches!(via, Via::Mmap | Via::Both) {
        passes.push(Via::Mmap);
    }
    if matches!(via, Via::Pread | Via::Both) {
        passes.push(Via::Pread);
    }
    let mapping = if via != Via::Pread && size > 0 {
        // Unmapped when the last Arc drops, after every thread has joined.
        let m = Map::whole_ro(&f, size).with_context(|| format!("mmap {}", path.display()))?;
        let adv = match advice {
            Advice::Normal => MmapAdvise::MADV_NORMAL,
            Advice::Random => MmapAdvise::MADV_RANDOM,
            Advice::Sequential => MmapAdvise::MADV_SEQUENTIAL,
        };
        m.advise(adv).context("madvise")?;
        Some(Arc::new(m))
    } else {
        None
    };
    for pass in passes {
        let mut order = list.clone();
        rng.shuffle(&mut order);
        let mut handles = Vec::new();
        for t in 0..threads as usize {
            let mine: Vec<u64> = order
                .iter()
                .copied()
                .skip(t)
                .step_by(threads as usize)
                .collect();
            let f = f.clone();
            let m = mapping.clone();
            handles.push(std::thread::spawn(move || {
                check_pages(&mine, size, pass, &f, m.as_deref())
            }));
        }
        let mut worst: Option<Bad> = None;
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("a checker thread panicked"))?;
            if let Some(b) = r {
                if worst.as_ref().is_none_or(|w| b.off() < w.off()) {
                    worst = Some(b);
                }
            }
        }
        let name = format!("{pass:?}").to_lowercase();
        match worst {
            None => println!(
                "hsm-validate: {}: {} pages OK via {name} ({threads} threads, seed {seed})",
                path.display(),
                list.len()
            ),
            Some(Bad::Mismatch { off, got, want }) => {
                println!(
                    "hsm-validate: {}: MISMATCH at offset {off} (page {}) via {name}: \
                     got {got:#04x}, want {want:#04x} (seed {seed})",
                    path.display(),
                    off / PAGE
                );
                return Ok(false);
            }
            Some(Bad::ReadError { off, err }) => {
                println!(
                    "hsm-validate: {}: READ ERROR at offset {off} (page {}) via {name}: {err} \
                     (seed {seed})",
                    path.display(),
                    off / PAGE
                );
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Check `pages` in the given order; the lowest bad offset found.
fn check_pages(pages: &[u64], size: u64, via: Via, f: &File, m: Option<&Map>) -> Option<Bad> {
    let mut buf = vec![0u8; PAGE as usize];
    let mut worst: Option<Bad> = None;
    for &p in pages {
        let off = p * PAGE;
        let len = PAGE.min(size - off) as usize;
        let data: &[u8] = match (via, m) {
            (Via::Mmap, Some(m)) => {
                // SAFETY: off + len <= size <= m.len; the mapping lives
                // while this thread runs (the caller joins before dropping).
                let src = unsafe { m.as_slice().as_ptr().add(off as usize) };
                for (i, b) in buf[..len].iter_mut().enumerate() {
                    // SAFETY: in bounds as above; volatile so that every
                    // byte is really loaded through the mapping.
                    *b = unsafe { std::ptr::read_volatile(src.add(i)) };
                }
                &buf[..len]
            }
            _ => match read_full(f, &mut buf[..len], off) {
                Ok(()) => &buf[..len],
                Err(e) => {
                    let b = Bad::ReadError {
                        off,
                        err: e.to_string(),
                    };
                    if worst.as_ref().is_none_or(|w| off < w.off()) {
                        worst = Some(b);
                    }
                    continue;
                }
            },
        };
        if let Some(i) = pattern::mismatch(off, data) {
            let o = off + i as u64;
            if worst.as_ref().is_none_or(|w| o < w.off()) {
                worst = Some(Bad::Mismatch {
                    off: o,
                    got: data[i],
                    want: pattern::byte_at(o),
                });
            }
        }
    }
    worst
}

fn read_full(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    f.read_exact_at(buf, off)
}
