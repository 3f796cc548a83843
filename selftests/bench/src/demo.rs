//! `fpc-bench demo`: the rustc comparison of scripts/demo.sh.  A lazy copy
//! of the toolchain (hsm-populate) on a fresh ext4 image, served from the
//! toolchain itself by `hsm-serve --mode fault`, then a fresh one by
//! `--mode mmap`; each time `rustc --version` runs from the lazy copy with
//! the page cache dropped, and the bytes fetched and the time are printed.

use crate::say;
use crate::sys::{self, Scratch, Serve};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn run(toolchain: &Path, scratch: &Path, image_size: u64, exclude: &[String]) -> Result<()> {
    if !toolchain.join("bin/rustc").is_file() {
        bail!("{} has no bin/rustc: not a toolchain", toolchain.display());
    }
    let fs = Scratch::new(scratch, image_size).context("scratch ext4 filesystem")?;
    let kept = sys::walk_except(toolchain, exclude)?;
    let tree: u64 = kept.iter().map(|(_, m)| m.len()).sum();
    println!(
        "\n== rustc from a lazy copy of {} ({} files, {}{})",
        toolchain.display(),
        kept.len(),
        mib(tree),
        if exclude.is_empty() {
            String::new()
        } else {
            format!("; {} left out", exclude.join(", "))
        }
    );
    sys::drop_caches()?;
    let (native_secs, version) = sys::rustc_version(toolchain)?;
    println!("   the toolchain itself, page cache dropped: {version}  ({native_secs:.2} s)");
    let mut rows = Vec::new();
    for mode in ["fault", "mmap"] {
        let dst = fs.mnt.join(format!("lazy-{mode}"));
        let t = Instant::now();
        let n = sys::populate_filtered(toolchain, &dst, exclude)?;
        say!(
            "lazy copy {} populated ({n} hsm-populate runs, {:.1} s)",
            dst.display(),
            t.elapsed().as_secs_f64()
        );
        let serve = Serve::start(toolchain, &dst, mode, &[])?;
        sys::drop_caches()?;
        let r = sys::rustc_version(&dst);
        let stats = serve.stop()?;
        let (secs, v) = r?;
        let sys::Fills {
            fetched, events, ..
        } = sys::Fills::of(&stats)?;
        let du = sys::disk_use(&dst)?;
        println!(
            "   hsm-serve --mode {mode:<5}: {v}  ({secs:.2} s; {} fetched in {events} events; lazy copy now uses {} on disk)",
            mib(fetched),
            mib(du)
        );
        rows.push((mode, secs, fetched));
        sys::remove_tree(&dst)?;
    }
    if let [(_, fs_, ff), (_, ms, mf)] = rows[..] {
        println!(
            "   fault mode / mmap mode: {:.3} of the bytes, {:.3} of the time",
            ff as f64 / mf.max(1) as f64,
            fs_ / ms.max(1e-9)
        );
    }
    drop(fs);
    Ok(())
}
