//! The HTTP part of `fpc-bench guest` (`--parts http`, issue 15 item 7):
//! the toolchain served by nginx in the guest ([`crate::http::Www`], on the
//! guest's tmpfs, not the lazy trees' ext4), over each link profile
//! ([`crate::http::LINKS`], netem on `lo`).  Per profile and run:
//!
//! * `fault`: a lazy copy (`hsm-populate --manifest URL`) served by
//!   `hsm-serve --source URL --mode fault --record-profile P`;
//! * `prefetch`: the same with `--prefetch P`, the profile the `fault` run
//!   of this profile and run just recorded (the same program: the best case
//!   of a recorded profile);
//! * `mmap`: `--mode mmap`;
//! * `full`: no daemon; every file downloaded whole first (4 connections),
//!   then run: the time is the download's plus the run's;
//! * at 10 ms / 200 Mbit also `prefetch4m` (the prefetch in 4 MiB pieces,
//!   `--prefetch-chunk 4M`), `fill64k` and `fill1m` (fault mode with
//!   `--fill-size 64K` and `1M`; the 4K row is `fault`);
//! * `native`: the native copy on the local ext4, page cache dropped: the
//!   program's own time, no network.
//!
//! Each is `rustc --version` from its copy, timed from the start of rustc
//! (the daemon is ready, the page cache dropped before it started; a
//! prefetch starts when the daemon gets ready, right before rustc).  Bytes
//! and requests are counted in nginx's access log, events in hsm-serve's
//! counters.  Samples: `h.<link>.<mode>.{secs,bytes,requests,events,dep_rtts}`
//! and per link `h.<link>.{bw_bytes_per_sec,rtt_secs,nominal_rtt_secs,
//! nominal_bytes_per_sec}`: the report's bound of a mode is bytes / bw +
//! dep_rtts x rtt, where dep_rtts are the round trips the program waits for
//! one after the other: every request for `fault`, `fill*` and `mmap` (one
//! faulting thread: its events are answered one at a time), the demand
//! requests plus the prefetch's requests divided by its threads for
//! `prefetch`, the requests divided by the connections for `full`.
//!
//! Then P4 over HTTP at 10 ms / 200 Mbit: `cargo build` with the toolchain of
//! a lazy copy served from nginx, cold (`h.p4.cold.secs`) and again once it
//! is filled (page cache dropped, daemon running: `h.p4.filled.secs`),
//! against the native copy (`h.p4.native.secs`), interleaved per run.

use crate::guest::{cargo_build, make_project};
use crate::http::{self, download_all, Link, Netem, Www};
use crate::report::sample_line;
use crate::say;
use crate::sys::{self, Serve};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Connections of the full copy (as many as hsm-serve's default workers).
pub const FULL_CONNS: usize = 4;

/// What the HTTP part is asked to do.
pub struct Plan<'a> {
    pub label: &'a str,
    /// The ext4 mount of the lazy copies and the native copy.
    pub mnt: &'a Path,
    /// A directory on another filesystem (tmpfs) for nginx.
    pub http_dir: &'a Path,
    /// The native copy (the document root is copied from it).
    pub native: &'a Path,
    pub links: Vec<Link>,
    pub runs: usize,
    pub p4: bool,
    /// For P4: the work directory.
    pub work: &'a Path,
}

/// The outcome of one mode.
pub struct One {
    pub secs: f64,
    pub served: http::Served,
    pub events: u64,
    pub dep_rtts: f64,
    pub version: String,
}

fn sample(label: &str, metric: &str, run: usize, v: f64) {
    sys::out(&sample_line(label, metric, run, v));
}

/// A lazy copy of the toolchain at `dst` built from the server's manifest.
pub fn populate(www: &Www, dst: &Path) -> Result<()> {
    sys::remove_tree(dst)?;
    sys::run(
        Command::new(sys::tool("hsm-populate")?)
            .arg("--manifest")
            .arg(www.url("manifest"))
            .arg(dst),
    )
    .context("hsm-populate --manifest")?;
    Ok(())
}

/// `rustc --version` from a fresh lazy copy served from `www` by
/// `hsm-serve --mode MODE EXTRA...`.
pub fn lazy_run(www: &mut Www, dst: &Path, mode: &str, extra: &[&str]) -> Result<One> {
    populate(www, dst)?;
    sys::drop_caches()?;
    www.served()?;
    let url = www.tc_url();
    let serve = Serve::start(Path::new(&url), dst, mode, extra)?;
    let r = sys::rustc_version(dst);
    let stats = serve.stop()?;
    let (secs, version) = r?;
    let served = www.served()?;
    let events = sys::kv(&stats, "events")?;
    Ok(One {
        secs,
        served,
        events,
        dep_rtts: served.requests as f64,
        version,
    })
}

/// `rustc --version` from the native copy, page cache dropped.
pub fn native_run(native: &Path) -> Result<One> {
    sys::drop_caches()?;
    let (secs, version) = sys::rustc_version(native)?;
    Ok(One {
        secs,
        served: http::Served::default(),
        events: 0,
        dep_rtts: 0.0,
        version,
    })
}

/// The full copy: download all, then `rustc --version`.
pub fn full_run(www: &mut Www, dst: &Path) -> Result<One> {
    populate(www, dst)?;
    sys::drop_caches()?;
    www.served()?;
    let t = Instant::now();
    download_all(&www.tc_url(), dst, FULL_CONNS)?;
    let (_, version) = sys::rustc_version(dst)?;
    let secs = t.elapsed().as_secs_f64();
    let served = www.served()?;
    Ok(One {
        secs,
        served,
        events: 0,
        dep_rtts: (served.requests as f64 / FULL_CONNS as f64).ceil(),
        version,
    })
}

/// The prefetch's requests (pieces) for a profile file with hsm-serve's
/// default prefetch options but the piece size `chunk`.
pub fn prefetch_pieces(profile: &Path, chunk: u64) -> Result<(u64, u32)> {
    let d = hsm::prefetch::Args {
        prefetch_threads: 4,
        prefetch_gap: 64 << 10,
        prefetch_chunk: chunk,
        ..Default::default()
    };
    let p = hsm::prefetch::plan(
        &hsm::prefetch::read(profile)?,
        d.prefetch_gap,
        d.prefetch_chunk,
    );
    Ok((p.len() as u64, d.prefetch_threads))
}

/// A fault-mode run with `--prefetch profile` (pieces of `chunk` bytes,
/// hsm-serve's default 1M if None): its dependent round trips are the
/// demand requests plus the pieces over the prefetch threads.
pub fn prefetch_run(www: &mut Www, dst: &Path, profile: &Path, chunk: Option<u64>) -> Result<One> {
    let (pieces, threads) = prefetch_pieces(profile, chunk.unwrap_or(1 << 20))?;
    let p = profile.to_string_lossy().into_owned();
    let c = chunk.map(|c| c.to_string());
    let mut args = vec!["--prefetch", &p];
    if let Some(c) = &c {
        args.extend(["--prefetch-chunk", c]);
    }
    let mut one = lazy_run(www, dst, "fault", &args)?;
    let demand = one.served.requests.saturating_sub(pieces);
    one.dep_rtts = demand as f64 + (pieces as f64 / threads as f64).ceil();
    Ok(one)
}

pub fn run(p: &Plan) -> Result<()> {
    let mut www = Www::start(p.http_dir, p.native, &[])?;
    let (big, big_size) = sys::biggest_files(&www.dir.join("tc/lib"), 1)?
        .into_iter()
        .next()
        .context("no library to measure the link with")?;
    let big = big.strip_prefix(www.dir.join("tc"))?.to_path_buf();
    let profile = p.http_dir.join("profile.txt");
    let dst = p.mnt.join("lazy-http");
    for &l in &p.links {
        let netem = Netem::set(l)?;
        let m = http::measure(&www, l, &big, big_size)?;
        say!(
            "HTTP {}: measured {:.1} Mbit/s, request round trip {:.2} ms",
            l.text(),
            m.bytes_per_sec * 8.0 / 1e6,
            m.rtt.as_secs_f64() * 1e3
        );
        let id = l.id;
        sample(
            p.label,
            &format!("h.{id}.bw_bytes_per_sec"),
            0,
            m.bytes_per_sec,
        );
        sample(p.label, &format!("h.{id}.rtt_secs"), 0, m.rtt.as_secs_f64());
        sample(
            p.label,
            &format!("h.{id}.nominal_rtt_secs"),
            0,
            l.rtt.as_secs_f64(),
        );
        sample(
            p.label,
            &format!("h.{id}.nominal_bytes_per_sec"),
            0,
            l.rate as f64 / 8.0,
        );
        for run in 0..p.runs {
            // fault before prefetch (it records the profile); mmap and full
            // before or after them, alternating.
            let mut order = vec!["native", "fault", "prefetch"];
            if l.id == "10ms" {
                order.extend(["prefetch4m", "fill64k", "fill1m"]);
            }
            if run % 2 == 0 {
                order.extend(["mmap", "full"]);
            } else {
                order.splice(0..0, ["full", "mmap"]);
            }
            for mode in order {
                let prof = profile.to_string_lossy().into_owned();
                let one = match mode {
                    "fault" => lazy_run(&mut www, &dst, "fault", &["--record-profile", &prof])?,
                    "prefetch" => prefetch_run(&mut www, &dst, &profile, None)?,
                    "prefetch4m" => prefetch_run(&mut www, &dst, &profile, Some(4 << 20))?,
                    "fill64k" => lazy_run(&mut www, &dst, "fault", &["--fill-size", "64K"])?,
                    "fill1m" => lazy_run(&mut www, &dst, "fault", &["--fill-size", "1M"])?,
                    "mmap" => lazy_run(&mut www, &dst, "mmap", &[])?,
                    "native" => native_run(p.native)?,
                    _ => full_run(&mut www, &dst)?,
                };
                say!(
                    "HTTP {} run {run}: {mode}: {:.2} s, {} bytes in {} requests, {} events, {} dependent round trips ({})",
                    l.text(),
                    one.secs,
                    one.served.bytes,
                    one.served.requests,
                    one.events,
                    one.dep_rtts,
                    one.version
                );
                let k = |m: &str| format!("h.{id}.{mode}.{m}");
                sample(p.label, &k("secs"), run, one.secs);
                sample(p.label, &k("bytes"), run, one.served.bytes as f64);
                sample(p.label, &k("requests"), run, one.served.requests as f64);
                sample(p.label, &k("events"), run, one.events as f64);
                sample(p.label, &k("dep_rtts"), run, one.dep_rtts);
                sys::remove_tree(&dst)?;
            }
        }
        drop(netem);
    }
    if p.p4 {
        let l = http::link("10ms")?;
        let _netem = Netem::set(l)?;
        p4(p, &mut www, l).context("P4 over HTTP")?;
    }
    Ok(())
}

/// cargo build: native cold, lazy-over-HTTP cold, the same filled.
fn p4(p: &Plan, www: &mut Www, l: Link) -> Result<()> {
    let project = p.work.join("project");
    let home = p.work.join("cargo-home");
    let target = p.work.join("target");
    make_project(&project)?;
    std::fs::create_dir_all(&home)?;
    let dst: PathBuf = p.mnt.join("lazy-http-p4");
    for run in 0..p.runs {
        let mut order = ["native", "hsm"];
        if run % 2 == 1 {
            order.reverse();
        }
        for what in order {
            if what == "native" {
                sys::drop_caches()?;
                let secs = cargo_build(p.native, &project, &target, &home)?;
                say!("P4 over HTTP run {run}: native: {secs:.2} s");
                sample(p.label, "h.p4.native.secs", run, secs);
                continue;
            }
            populate(www, &dst)?;
            sys::drop_caches()?;
            www.served()?;
            let url = www.tc_url();
            let mut serve = Serve::start(Path::new(&url), &dst, "fault", &[])?;
            let cold = cargo_build(&dst, &project, &target, &home)?;
            let s1 = serve.stats()?;
            let got = www.served()?;
            sys::drop_caches()?;
            let filled = cargo_build(&dst, &project, &target, &home)?;
            let s2 = sys::Fills::of(&serve.stop()?)?;
            let again = www.served()?;
            let e1 = sys::kv(&s1, "events")?;
            say!(
                "P4 over HTTP ({}) run {run}: cold {cold:.2} s ({} bytes, {} requests, {e1} events); \
                 filled {filled:.2} s ({} more bytes, {} more events)",
                l.text(),
                got.bytes,
                got.requests,
                again.bytes,
                s2.events - e1
            );
            sample(p.label, "h.p4.cold.secs", run, cold);
            sample(p.label, "h.p4.cold.bytes", run, got.bytes as f64);
            sample(p.label, "h.p4.filled.secs", run, filled);
            sample(p.label, "h.p4.filled.events", run, (s2.events - e1) as f64);
            sys::remove_tree(&dst)?;
        }
    }
    sys::remove_tree(p.work)?;
    Ok(())
}
