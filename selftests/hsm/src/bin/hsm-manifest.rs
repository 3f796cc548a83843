//! hsm-manifest: write the manifest of a source tree (the server side of
//! `hsm-populate --manifest`; format in [`hsm::manifest`]): path, type,
//! size, mode, mtime and symlink target of every directory, regular file
//! and symlink.  Other file types are skipped and counted.

use anyhow::{Context, Result};
use clap::Parser;
use hsm::manifest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hsm-manifest",
    about = "Write the manifest of a source tree, for hsm-populate --manifest",
    after_help = "One line per directory, regular file and symlink: TYPE MODE SIZE MTIME PATH \
                  [TARGET], TAB-separated, after a '# hsm manifest v1' line; PATH and TARGET \
                  %XX-escaped (selftests/hsm/README.md).  Serve it next to the tree, not inside \
                  it.  Prints a summary on stderr.  Exit status: 0 done, 1 error, 2 bad usage."
)]
struct Cli {
    /// The source tree.
    src: PathBuf,
    /// Write the manifest here (atomically: a temporary file renamed)
    /// instead of to stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsm-manifest: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let (entries, skipped) = manifest::scan(&cli.src)?;
    for p in &skipped {
        eprintln!(
            "hsm-manifest: skipping {} (not a directory, regular file or symlink)",
            cli.src.join(p).display()
        );
    }
    let text = manifest::encode(&entries);
    match &cli.output {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("write the manifest")?,
        Some(out) => write_atomic(out, &text)?,
    }
    eprintln!(
        "hsm-manifest: {}: {} entries, {} skipped",
        cli.src.display(),
        entries.len(),
        skipped.len()
    );
    Ok(())
}

fn write_atomic(out: &Path, text: &str) -> Result<()> {
    let tmp = out.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("rename {} to {}", tmp.display(), out.display()))
}
