//! hsm-evict: ask a running `hsm-serve --control SOCKET` to drop the
//! content of files (or of one range of each) that nothing uses, so that the
//! next access fetches it again (protocol in [`hsm::control`], the steps
//! and why they are race-free in `hsm-serve`'s documentation).  A file in
//! use (open, mapped or executing) is skipped and counted as busy: the rule
//! is "never evict under a user", which a write lease enforces in the
//! kernel.  A directory stands for every regular file under it (symlinks
//! are not followed).

use anyhow::{bail, Context, Result};
use clap::Parser;
use hsm::control::{Evict, Reply};
use hsm::util::parse_size;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hsm-evict",
    about = "Drop the fetched content of HSM files that nothing uses (through hsm-serve --control)",
    after_help = "Prints a line per file (evicted N bytes, busy, or the error) and a summary \
                  'hsm-evict: files=N evicted=N bytes=N busy=N errors=N'.  Exit status: 0 every \
                  file was evicted or busy; 1 an error (also for one file); 2 bad usage."
)]
struct Cli {
    /// The daemon's control socket (hsm-serve --control).
    #[arg(long, value_name = "SOCKET")]
    control: PathBuf,
    /// Evict from this offset (rounded down to a page; suffixes K, M, G).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    offset: u64,
    /// Evict this many bytes (rounded up to pages; default: to the end of
    /// the file).
    #[arg(long, value_parser = parse_size)]
    length: Option<u64>,
    /// Print only the summary.
    #[arg(short, long)]
    quiet: bool,
    /// Files, or directories whose regular files are all meant.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hsm-evict: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The regular files of `p`: itself, or those under it (`top`: `p` was
/// named, so anything but a file or directory is an error).
fn files(p: &Path, top: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let m = std::fs::symlink_metadata(p).with_context(|| format!("{}", p.display()))?;
    if m.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .with_context(|| format!("read {}", p.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("read {}", p.display()))?;
        v.sort();
        for c in v {
            files(&c, false, out)?;
        }
    } else if m.is_file() {
        out.push(std::path::absolute(p).with_context(|| format!("{}", p.display()))?);
    } else if top {
        bail!("{} is not a regular file or directory", p.display());
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<bool> {
    let end = match cli.length {
        Some(l) => Some(
            cli.offset
                .checked_add(l)
                .context("--offset + --length overflows")?,
        ),
        None => None,
    };
    let mut list = Vec::new();
    for p in &cli.paths {
        files(p, true, &mut list)?;
    }
    let conn = UnixStream::connect(&cli.control)
        .with_context(|| format!("connect to {} (hsm-serve --control)", cli.control.display()))?;
    let mut out = conn.try_clone().context("clone the connection")?;
    let mut replies = BufReader::new(conn).lines();
    let (mut evicted, mut bytes, mut busy, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for path in &list {
        let req = Evict {
            path: path.clone(),
            start: cli.offset,
            end,
        };
        writeln!(out, "{}", req.encode()).context("send a request")?;
        let line = replies
            .next()
            .context("hsm-serve closed the connection")?
            .context("read a reply")?;
        match Reply::parse(&line)? {
            Reply::Evicted(n) => {
                evicted += 1;
                bytes += n;
                if !cli.quiet {
                    println!("{}: evicted {n} bytes", path.display());
                }
            }
            Reply::Busy => {
                busy += 1;
                if !cli.quiet {
                    println!("{}: busy (in use), skipped", path.display());
                }
            }
            Reply::Error(m) => {
                errors += 1;
                eprintln!("hsm-evict: {}: {m}", path.display());
            }
        }
    }
    println!(
        "hsm-evict: files={} evicted={evicted} bytes={bytes} busy={busy} errors={errors}",
        list.len()
    );
    Ok(errors == 0)
}
