//! `fpc-bench demo`: the rustc comparison of scripts/demo.sh.  A lazy copy
//! of the toolchain on a fresh ext4 image, `rustc --version` run from it
//! with the page cache dropped, once served by `hsm-serve --mode fault` and
//! once, from a fresh copy, by `--mode mmap`; the bytes fetched and the
//! time of each are printed on one screen.
//!
//! By default the content is remote: nginx in the guest serves the
//! toolchain (a copy on the guest's tmpfs, not on the ext4 image) over a
//! link shaped with netem on `lo` (`--link`, 10 ms RTT / 200 Mbit/s), the
//! stubs are built from its manifest (`hsm-populate --manifest URL`), and
//! `hsm-serve --source URL` fills them with range requests; a third run
//! shows fault mode with `--prefetch` of the profile the fault-mode run
//! recorded.  `--local` fills from the toolchain directory instead (no
//! network).

use crate::http::{self, Link, Netem, Www};
use crate::remote;
use crate::say;
use crate::sys::{self, Scratch, Serve};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// What `fpc-bench demo` was asked to do.
pub struct Plan<'a> {
    pub toolchain: &'a Path,
    pub scratch: &'a Path,
    pub image_size: u64,
    pub exclude: &'a [String],
    /// None: fill from the toolchain directory.
    pub link: Option<Link>,
}

pub fn run(p: &Plan) -> Result<()> {
    let toolchain = p.toolchain;
    if !toolchain.join("bin/rustc").is_file() {
        bail!("{} has no bin/rustc: not a toolchain", toolchain.display());
    }
    let fs = Scratch::new(p.scratch, p.image_size).context("scratch ext4 filesystem")?;
    let kept = sys::walk_except(toolchain, p.exclude)?;
    let tree: u64 = kept.iter().map(|(_, m)| m.len()).sum();
    let left_out = if p.exclude.is_empty() {
        String::new()
    } else {
        format!("; {} left out", p.exclude.join(", "))
    };
    match p.link {
        Some(l) => remote_demo(p, &fs, l, kept.len(), tree, &left_out),
        None => local_demo(p, &fs, kept.len(), tree, &left_out),
    }
}

fn native_line(toolchain: &Path) -> Result<()> {
    sys::drop_caches()?;
    let (native_secs, version) = sys::rustc_version(toolchain)?;
    println!("   the toolchain itself, page cache dropped: {version}  ({native_secs:.2} s)");
    Ok(())
}

fn local_demo(p: &Plan, fs: &Scratch, files: usize, tree: u64, left_out: &str) -> Result<()> {
    let toolchain = p.toolchain;
    println!(
        "\n== rustc from a lazy copy of {} ({files} files, {}{left_out}), filled from that directory",
        toolchain.display(),
        mib(tree),
    );
    native_line(toolchain)?;
    let mut rows = Vec::new();
    for mode in ["fault", "mmap"] {
        let dst = fs.mnt.join(format!("lazy-{mode}"));
        let t = Instant::now();
        let n = sys::populate_filtered(toolchain, &dst, p.exclude)?;
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
        rows.push((secs, fetched));
        sys::remove_tree(&dst)?;
    }
    if let [(fs_, ff), (ms, mf)] = rows[..] {
        println!(
            "   fault mode / mmap mode: {:.3} of the bytes, {:.3} of the time",
            ff as f64 / mf.max(1) as f64,
            fs_ / ms.max(1e-9)
        );
    }
    Ok(())
}

fn remote_demo(
    p: &Plan,
    fs: &Scratch,
    l: Link,
    files: usize,
    tree: u64,
    left_out: &str,
) -> Result<()> {
    let http_dir = p.scratch.join("http");
    let mut www = Www::start(&http_dir, p.toolchain, p.exclude)?;
    let _netem = Netem::set(l)?;
    let (big, big_size) = sys::biggest_files(&www.dir.join("tc/lib"), 1)?
        .into_iter()
        .next()
        .context("no library in the toolchain's lib")?;
    let big = big.strip_prefix(www.dir.join("tc"))?.to_path_buf();
    let m = http::measure(&www, l, &big, big_size)?;
    println!(
        "\n== rustc from a lazy copy of {} ({files} files, {}{left_out})\n   \
         served by nginx over {} (netem on lo; measured {:.0} Mbit/s, request round trip {:.1} ms)",
        p.toolchain.display(),
        mib(tree),
        l.text(),
        m.bytes_per_sec * 8.0 / 1e6,
        m.rtt.as_secs_f64() * 1e3
    );
    native_line(p.toolchain)?;
    let profile = http_dir.join("profile.txt");
    let prof = profile.to_string_lossy().into_owned();
    let dst = fs.mnt.join("lazy");
    let mut rows = Vec::new();
    for (name, what) in [
        ("fault", "--mode fault          "),
        ("prefetch", "--mode fault --prefetch"),
        ("mmap", "--mode mmap           "),
    ] {
        let one = match name {
            "fault" => remote::lazy_run(&mut www, &dst, "fault", &["--record-profile", &prof])?,
            "prefetch" => remote::prefetch_run(&mut www, &dst, &profile, None)?,
            _ => remote::lazy_run(&mut www, &dst, "mmap", &[])?,
        };
        let bound = one.served.bytes as f64 / m.bytes_per_sec + one.dep_rtts * m.rtt.as_secs_f64();
        println!(
            "   hsm-serve {what}: {}  {:6.2} s  {:>9} in {:3} requests, {:3} events  (bound {:.2} s)",
            one.version,
            one.secs,
            mib(one.served.bytes),
            one.served.requests,
            one.events,
            bound
        );
        rows.push((one.secs, one.served.bytes));
        sys::remove_tree(&dst)?;
    }
    if let [(fs_, fb), (ps, _), (ms, mb)] = rows[..] {
        println!(
            "   fault mode / mmap mode: {:.3} of the bytes, {:.3} of the time ({:.3} with the prefetch)",
            fb as f64 / mb.max(1) as f64,
            fs_ / ms.max(1e-9),
            ps / ms.max(1e-9)
        );
    }
    println!(
        "   (bound: bytes / measured bandwidth + the round trips rustc waits for one after the other x the measured round trip;\n   \
         the prefetch replays the profile the fault-mode run just recorded: the same program, its best case)"
    );
    Ok(())
}
