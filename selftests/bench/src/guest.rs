//! The measurements, run inside the VM (`fpc-bench guest`).  Each prints
//! sample lines (`FPCB <label> <metric> <run> <value>`) on stdout and its
//! progress on stderr.  `fpc-bench report` turns them into ratios.
//!
//! * P1: page-fault cost with no watcher (run on both kernels).
//! * P2/P3: `rustc --version` from a cold lazy copy of the toolchain, fault
//!   and mmap mode: bytes fetched, time; bytes touched and time natively.
//! * P4: `cargo build` of a small generated project with the toolchain from
//!   a cold lazy copy (fault mode) and from a cold native copy: time, and
//!   disk use of the copies afterwards.
//! * `--nosync`, `--host-source`, `--fill-size SIZE`: extra lazy-copy
//!   variants of P2/P3 (and P4 for `--nosync` and `--fill-size`).
//! * P5: warm read() throughput of the toolchain's big libraries: native,
//!   lazy copy after population (daemon still running), bindfs.
//! * `http`, `http-p4`: the HTTP source ([`crate::remote`]).
//! * `lazydir`: lazy directories ([`crate::lazydir`]).

use crate::report::sample_line;
use crate::say;
use crate::sys::{self, Scratch, Serve, PAGE};
use anyhow::{bail, Context, Result};
use hsm::map::Map;
use nix::sys::mman::MmapAdvise;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What `fpc-bench guest` was asked to do.
pub struct Plan {
    pub label: String,
    pub toolchain: PathBuf,
    pub scratch: PathBuf,
    pub image_size: u64,
    pub parts: Vec<String>,
    pub p1_runs: usize,
    pub p1_size: u64,
    pub p1_cold1_size: u64,
    pub p23_runs: usize,
    pub p4_runs: usize,
    pub p5_runs: usize,
    /// Also measure P3 and P4 with `hsm-serve --no-sync`.
    pub nosync: bool,
    /// Also measure P2/P3 with lazy copies filled from the host's toolchain.
    pub host_source: bool,
    /// Also measure P2/P3 and P4 (fault mode) with `hsm-serve --fill-size`.
    pub fill_size: Option<u64>,
    /// Top-level paths of the toolchain left out of the copies.
    pub exclude: Vec<String>,
    /// The HTTP part: link profiles, runs.
    pub links: Vec<crate::http::Link>,
    pub http_runs: usize,
    /// Runs of the lazy-directory part.
    pub lazydir_runs: usize,
    /// A tar archive of the toolchain for the lazy-directory part.
    pub lazydir_tar: Option<PathBuf>,
}

struct Ctx<'a> {
    plan: &'a Plan,
    fs: Scratch,
}

impl Ctx<'_> {
    fn sample(&self, metric: &str, run: usize, value: f64) {
        sys::out(&sample_line(&self.plan.label, metric, run, value));
    }

    /// The fill counters of a `stats:` line, sampled as
    /// `<prefix>.fetched_bytes` and `<prefix>.events`.
    fn sample_fills(&self, prefix: &str, run: usize, stats: &sys::Kv) -> Result<sys::Fills> {
        let f = sys::Fills::of(stats)?;
        self.sample(&format!("{prefix}.fetched_bytes"), run, f.fetched as f64);
        self.sample(&format!("{prefix}.events"), run, f.events as f64);
        Ok(f)
    }

    fn native(&self) -> PathBuf {
        self.fs.mnt.join("native")
    }
}

pub fn run(plan: &Plan) -> Result<()> {
    let wants = |p: &str| plan.parts.iter().any(|x| x == p);
    let copies = ["p2", "p3", "p4", "p5", "http", "http-p4"]
        .iter()
        .any(|p| wants(p));
    if (copies || wants("lazydir")) && !plan.toolchain.join("bin/rustc").is_file() {
        bail!(
            "{} has no bin/rustc: not a toolchain (use rustc --print sysroot)",
            plan.toolchain.display()
        );
    }
    let fs = Scratch::new(&plan.scratch, plan.image_size).context("scratch ext4 filesystem")?;
    let cx = Ctx { plan, fs };
    say!(
        "kernel {}, label {}, parts {}",
        nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        plan.label,
        plan.parts.join(",")
    );
    if wants("p1") {
        p1(&cx).context("P1")?;
    }
    if copies {
        native_copy(&cx).context("native copy of the toolchain")?;
    }
    if let Some(fill) = plan
        .fill_size
        .filter(|_| ["p2", "p3", "p4"].iter().any(|p| wants(p)))
    {
        // For the report's descriptions of the fill rows.
        cx.sample(crate::report::FILL_SIZE, 0, fill as f64);
    }
    if wants("p2") || wants("p3") {
        p23(&cx).context("P2/P3")?;
    }
    if wants("p4") {
        p4(&cx).context("P4")?;
    }
    if wants("p5") {
        p5(&cx).context("P5")?;
    }
    if wants("http") || wants("http-p4") {
        let native = cx.native();
        let work = plan.scratch.join("http-p4");
        crate::remote::run(&crate::remote::Plan {
            label: &plan.label,
            mnt: &cx.fs.mnt,
            http_dir: &plan.scratch.join("http"),
            native: &native,
            links: if wants("http") {
                plan.links.clone()
            } else {
                Vec::new()
            },
            runs: plan.http_runs,
            p4: wants("http-p4"),
            work: &work,
        })
        .context("HTTP part")?;
    }
    if wants("lazydir") {
        crate::lazydir::run(&crate::lazydir::Plan {
            label: &plan.label,
            mnt: &cx.fs.mnt,
            toolchain: &plan.toolchain,
            tar: plan.lazydir_tar.as_deref(),
            runs: plan.lazydir_runs,
        })
        .context("lazy-directory part")?;
    }
    say!("done");
    Ok(())
}

// ---------------------------------------------------------------- P1

/// Read one byte of each of the first `pages` pages of `m`, in order: the
/// time per page (ns).
fn touch(m: &Map, pages: usize) -> f64 {
    let p = m.as_slice().as_ptr();
    let pages = pages.min(m.len / PAGE as usize);
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..pages {
        // SAFETY: i * PAGE is inside the mapping; volatile so every
        // page is really touched.
        sum = sum.wrapping_add(unsafe { p.add(i * PAGE as usize).read_volatile() } as u64);
    }
    let ns = t.elapsed().as_nanos() as f64;
    std::hint::black_box(sum);
    ns / pages as f64
}

/// A shared read-only mapping of the whole file `f` of `len` bytes.
fn map(f: &File, len: usize) -> Result<Map> {
    Map::whole_ro(f, len as u64).context("mmap")
}

const FAULT_AROUND: &str = "/sys/kernel/debug/fault_around_bytes";

/// fault_around_bytes, mounting debugfs if needed; None if unavailable.
fn fault_around() -> Option<String> {
    if !Path::new(FAULT_AROUND).exists() {
        let _ =
            sys::run(Command::new("mount").args(["-t", "debugfs", "none", "/sys/kernel/debug"]));
    }
    std::fs::read_to_string(FAULT_AROUND)
        .ok()
        .map(|s| s.trim().to_string())
}

fn set_fault_around(v: &str) -> Result<()> {
    std::fs::write(FAULT_AROUND, v).with_context(|| format!("write {v} to {FAULT_AROUND}"))
}

/// Pin the measuring thread to the last CPU: fewer migrations, less noise.
fn pin_last_cpu() {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = nix::sched::CpuSet::new();
    if set.set(n - 1).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn p1(cx: &Ctx) -> Result<()> {
    let size = cx.plan.p1_size;
    let path = cx.fs.mnt.join("p1.dat");
    say!("P1: writing a {} MiB file", size >> 20);
    {
        let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        // The one fill pattern of the selftests (any content would do).
        hsm::pattern::write_file(&mut f, size).context("write P1 file")?;
        f.sync_all().context("fsync P1 file")?;
    }
    let f = File::open(&path).context("open P1 file")?;
    let len = f.metadata()?.len() as usize;
    let fa = fault_around();
    if fa.is_none() {
        say!("P1: no {FAULT_AROUND}: warm-1 not measured");
    }
    pin_last_cpu();
    let pages = len / PAGE as usize;
    let pages1 = (cx.plan.p1_cold1_size / PAGE) as usize;
    // Passes whose times are added up: warm ones are short.
    let passes = |n: usize, what: &dyn Fn() -> Result<f64>| -> Result<f64> {
        let mut t = 0.0;
        for _ in 0..n {
            t += what()?;
        }
        Ok(t / n as f64)
    };
    for run in 0..cx.plan.p1_runs {
        // Cold: nothing cached; sequential touches with default readahead.
        let cold = passes(1, &|| {
            sys::drop_file_cache(&f)?;
            let cached = sys::cached_pages(&f)?;
            if cached > 0 {
                bail!("{cached} pages still cached after POSIX_FADV_DONTNEED");
            }
            Ok(touch(&map(&f, len)?, pages))
        })?;
        // Warm: everything cached; fault-around maps up to 16 pages a fault.
        let warm = passes(8, &|| Ok(touch(&map(&f, len)?, pages)))?;
        // Cold, one page read per fault (MADV_RANDOM: no readahead), on the
        // first pages only (each fault waits for its read).
        let cold1 = passes(1, &|| {
            sys::drop_file_cache(&f)?;
            let m = map(&f, len)?;
            m.advise(MmapAdvise::MADV_RANDOM).context("madvise")?;
            Ok(touch(&m, pages1))
        })?;
        cx.sample("p1.cold.ns_per_page", run, cold);
        cx.sample("p1.warm.ns_per_page", run, warm);
        cx.sample("p1.cold1.ns_per_page", run, cold1);
        // Warm, one fault per page: fault-around off.
        if let Some(orig) = &fa {
            set_fault_around("4096")?;
            let warm1 = passes(3, &|| Ok(touch(&map(&f, len)?, pages)));
            set_fault_around(orig)?;
            cx.sample("p1.warm1.ns_per_page", run, warm1?);
        }
        say!("P1 run {run} done");
    }
    drop(f);
    std::fs::remove_file(&path).context("remove P1 file")?;
    Ok(())
}

// ------------------------------------------------------ the toolchain copies

/// A copy of the toolchain (minus the excluded paths) at `<mnt>/native`.
fn native_copy(cx: &Ctx) -> Result<()> {
    let tc = &cx.plan.toolchain;
    let native = cx.native();
    say!("copying {} to {}", tc.display(), native.display());
    let t = Instant::now();
    let (files, bytes) = sys::copy_tree(tc, &native, &cx.plan.exclude)?;
    nix::unistd::sync();
    say!(
        "native copy: {files} files, {} MiB in {:.1} s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );
    if !native.join("bin/rustc").is_file() {
        bail!("{} has no bin/rustc: not a toolchain", tc.display());
    }
    Ok(())
}

/// How a lazy copy is made and served.
#[derive(Clone, Copy)]
struct Lazy {
    /// fault or mmap.
    mode: &'static str,
    /// `hsm-serve --no-sync`: no fdatasync per fill.
    nosync: bool,
    /// Filled from the host's toolchain (9p) rather than from the native
    /// copy on the same ext4.
    host: bool,
    /// `hsm-serve --fill-size`: fills widened to multiples of this.
    fill: Option<u64>,
}

impl Lazy {
    const FAULT: Lazy = Lazy {
        mode: "fault",
        nosync: false,
        host: false,
        fill: None,
    };

    /// `fault`, `mmap-nosync`, `fault-9p`, `fault-fill`, ...
    fn name(self) -> String {
        format!(
            "{}{}{}{}",
            self.mode,
            if self.nosync { "-nosync" } else { "" },
            if self.host { "-9p" } else { "" },
            if self.fill.is_some() { "-fill" } else { "" }
        )
    }

    /// The extra arguments of hsm-serve.
    fn args(self) -> Vec<String> {
        let mut v = Vec::new();
        if self.nosync {
            v.push("--no-sync".to_string());
        }
        if let Some(f) = self.fill {
            v.extend(["--fill-size".to_string(), f.to_string()]);
        }
        v
    }
}

/// A fresh lazy copy at `<mnt>/<name>`, served as `how` says.
fn lazy(cx: &Ctx, name: &str, how: Lazy) -> Result<(PathBuf, Serve)> {
    let dst = cx.fs.mnt.join(name);
    sys::remove_tree(&dst)?;
    let t = Instant::now();
    let src = if how.host {
        sys::populate_filtered(&cx.plan.toolchain, &dst, &cx.plan.exclude)?;
        cx.plan.toolchain.clone()
    } else {
        sys::populate(&cx.native(), &dst)?;
        cx.native()
    };
    let populated = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let extra = how.args();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let serve = Serve::start(&src, &dst, how.mode, &extra)?;
    say!(
        "{name}: stubs of {} populated in {populated:.1} s; hsm-serve --mode {} {}ready in {:.1} s",
        src.display(),
        how.mode,
        extra.iter().map(|e| format!("{e} ")).collect::<String>(),
        t.elapsed().as_secs_f64()
    );
    Ok((dst, serve))
}

// ------------------------------------------------------------- P2 / P3

fn p23(cx: &Ctx) -> Result<()> {
    let native = cx.native();
    for run in 0..cx.plan.p23_runs {
        // Bytes touched: what a cold run of the native copy brings into the
        // page cache (its reads, faults and the kernel's readahead).
        sys::drop_caches()?;
        let (secs, version) = sys::rustc_version(&native)?;
        let touched = sys::cached_bytes(&native)?;
        say!("P2/P3 run {run}: native: {version}: {secs:.2} s, {touched} bytes touched");
        cx.sample("p3.native.secs", run, secs);
        cx.sample("p2.touched_bytes", run, touched as f64);
        // Alternate the order of the variants between runs.
        let mut variants = Vec::new();
        for (nosync, host) in [(false, false), (true, false), (false, true)] {
            if (nosync && !cx.plan.nosync) || (host && !cx.plan.host_source) {
                continue;
            }
            for mode in ["fault", "mmap"] {
                variants.push(Lazy {
                    mode,
                    nosync,
                    host,
                    fill: None,
                });
            }
        }
        // --fill-size: fault mode only (P3 fill compares it with mmap mode).
        if let Some(fill) = cx.plan.fill_size {
            variants.push(Lazy {
                fill: Some(fill),
                ..Lazy::FAULT
            });
        }
        if run % 2 == 1 {
            variants.reverse();
        }
        for how in variants {
            let name = how.name();
            let (dst, serve) = lazy(cx, &format!("lazy-{name}"), how)?;
            sys::drop_caches()?;
            let r = sys::rustc_version(&dst);
            let stats = serve.stop()?;
            let (secs, _) = r?;
            let f = cx.sample_fills(&format!("p2.{name}"), run, &stats)?;
            say!(
                "P2/P3 run {run}: {name}: {secs:.2} s, {} bytes fetched, {} events, fill p50 {} us",
                f.fetched,
                f.events,
                f.p50_us
            );
            cx.sample(&format!("p3.{name}.secs"), run, secs);
            cx.sample(&format!("p2.{name}.p50_us"), run, f.p50_us as f64);
            sys::remove_tree(&dst)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- P4

/// A small Rust project with no dependencies (a few hundred lines using
/// std collections, traits, generics, formatting).
pub(crate) fn make_project(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fpcwork\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    )?;
    let mut main = String::from(
        "use std::collections::{BTreeMap, HashMap};\nuse std::fmt;\n\n\
         pub trait Shape { fn area(&self) -> f64; fn name(&self) -> String; }\n",
    );
    for i in 0..24 {
        main.push_str(&format!(
            "#[derive(Debug, Clone, PartialEq)]\npub struct S{i} {{ a: f64, b: Vec<u32>, m: HashMap<String, u64> }}\n\
             impl Shape for S{i} {{\n    fn area(&self) -> f64 {{ self.a * {i}.0 + self.b.iter().map(|x| *x as f64).sum::<f64>() }}\n    \
             fn name(&self) -> String {{ format!(\"S{i}({{}}, {{}})\", self.a, self.m.len()) }}\n}}\n\
             impl fmt::Display for S{i} {{\n    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {{ write!(f, \"{{}}:{{:?}}\", self.name(), self.b) }}\n}}\n\
             pub fn make{i}(n: u32) -> S{i} {{\n    let mut m = HashMap::new();\n    for k in 0..n {{ m.insert(format!(\"k{{k}}\"), (k as u64) * {i}); }}\n    \
             S{i} {{ a: n as f64 / 3.0, b: (0..n).filter(|x| x % {m} == 0).collect(), m }}\n}}\n",
            m = i % 5 + 2
        ));
    }
    main.push_str("fn total<T: Shape>(v: &[T]) -> f64 { v.iter().map(Shape::area).sum() }\n\nfn main() {\n    let mut out = BTreeMap::new();\n");
    for i in 0..24 {
        main.push_str(&format!(
            "    let v{i}: Vec<S{i}> = (1..20).map(make{i}).collect();\n    out.insert(\"{i}\", (total(&v{i}), v{i}[3].to_string()));\n"
        ));
    }
    main.push_str("    for (k, (a, s)) in &out { println!(\"{k} {a:.1} {}\", s.len()); }\n}\n");
    std::fs::write(dir.join("src/main.rs"), main)?;
    Ok(())
}

/// `cargo build --offline` of the project with the toolchain at `tc`, in a
/// fresh target directory: seconds.
pub(crate) fn cargo_build(
    tc: &Path,
    project: &Path,
    target: &Path,
    cargo_home: &Path,
) -> Result<f64> {
    sys::remove_tree(target)?;
    let path = format!(
        "{}:{}",
        tc.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (secs, _) = sys::timed(
        Command::new(tc.join("bin/cargo"))
            .args(["build", "--offline", "--quiet"])
            .current_dir(project)
            .env("PATH", path)
            .env("RUSTC", tc.join("bin/rustc"))
            .env("CARGO_HOME", cargo_home)
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTFLAGS"),
    )?;
    let out = sys::run(&mut Command::new(target.join("debug/fpcwork")))?;
    if out.lines().count() != 24 {
        bail!("the built program printed {:?}", out);
    }
    Ok(secs)
}

/// One cold build with the toolchain of a fresh lazy copy (fault mode,
/// served as `how` says: plain, `--no-sync` or `--fill-size`).
fn p4_hsm(cx: &Ctx, run: usize, project: &Path, work: &Path, home: &Path, how: Lazy) -> Result<()> {
    let plain = !how.nosync && how.fill.is_none();
    let name = format!(
        "hsm{}{}",
        if how.nosync { "-nosync" } else { "" },
        if how.fill.is_some() { "-fill" } else { "" }
    );
    let (dst, mut serve) = lazy(cx, "lazy-p4", how)?;
    sys::drop_caches()?;
    let secs = cargo_build(&dst, project, &work.join("target"), home)?;
    let stats = serve.stats()?;
    nix::unistd::sync();
    let du = sys::disk_use(&dst)?;
    let sys::Fills {
        fetched,
        events,
        p50_us: p50,
    } = cx.sample_fills(&format!("p4.{name}"), run, &stats)?;
    say!(
        "P4 run {run}: {name} (fault mode): {secs:.2} s, {fetched} bytes fetched, {events} events, fill p50 {p50} us, du {du}"
    );
    cx.sample(&format!("p4.{name}.secs"), run, secs);
    cx.sample(&format!("p4.{name}.du_bytes"), run, du as f64);
    if plain {
        // The same build again from the now partly filled copy, page cache
        // dropped, daemon still running: the cost once the data is local.
        sys::drop_caches()?;
        let again = cargo_build(&dst, project, &work.join("target"), home)?;
        let now = sys::Fills::of(&serve.stats()?)?;
        let more = now.fetched - fetched;
        let events = now.events - events;
        say!(
            "P4 run {run}: {name} again: {again:.2} s, {events} events, {more} more bytes fetched"
        );
        cx.sample("p4.hsm-again.secs", run, again);
        cx.sample("p4.hsm-again.events", run, events as f64);
    }
    serve.stop()?;
    sys::remove_tree(&dst)
}

fn p4(cx: &Ctx) -> Result<()> {
    let work = cx.plan.scratch.join("p4");
    let project = work.join("project");
    let home = work.join("cargo-home");
    make_project(&project)?;
    std::fs::create_dir_all(&home)?;
    let native = cx.native();
    let native_du = sys::disk_use(&native)?;
    for run in 0..cx.plan.p4_runs {
        let mut order = ["native", "hsm"];
        if run % 2 == 1 {
            order.reverse();
        }
        for what in order {
            if what == "native" {
                sys::drop_caches()?;
                let secs = cargo_build(&native, &project, &work.join("target"), &home)?;
                say!("P4 run {run}: native: {secs:.2} s");
                cx.sample("p4.native.secs", run, secs);
                cx.sample("p4.native.du_bytes", run, native_du as f64);
            } else {
                p4_hsm(cx, run, &project, &work, &home, Lazy::FAULT)?;
                if cx.plan.nosync {
                    let how = Lazy {
                        nosync: true,
                        ..Lazy::FAULT
                    };
                    p4_hsm(cx, run, &project, &work, &home, how)?;
                }
                if let Some(fill) = cx.plan.fill_size {
                    let how = Lazy {
                        fill: Some(fill),
                        ..Lazy::FAULT
                    };
                    p4_hsm(cx, run, &project, &work, &home, how)?;
                }
            }
        }
    }
    sys::remove_tree(&work)?;
    Ok(())
}

// ------------------------------------------------------------------- P5

/// Read the files whole with 1 MiB read()s: MB/s.
fn read_all(files: &[PathBuf]) -> Result<f64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    let t = Instant::now();
    for p in files {
        let mut f = File::open(p).with_context(|| format!("open {}", p.display()))?;
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("read {}", p.display()))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// A bindfs mount of `src` at `mnt`; unmounted on drop.
struct Bindfs(PathBuf);

impl Bindfs {
    fn mount(src: &Path, mnt: &Path) -> Result<Option<Bindfs>> {
        let Some(bindfs) = sys::which("bindfs") else {
            say!("P5: bindfs not installed (scripts/setup.sh installs it): not measured");
            return Ok(None);
        };
        std::fs::create_dir_all(mnt)?;
        sys::run(Command::new(bindfs).arg(src).arg(mnt)).context("bindfs")?;
        Ok(Some(Bindfs(mnt.to_path_buf())))
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn p5(cx: &Ctx) -> Result<()> {
    let native = cx.native();
    let big: Vec<PathBuf> = sys::biggest_files(&native.join("lib"), 2)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let rel: Vec<PathBuf> = big
        .iter()
        .map(|p| p.strip_prefix(&native).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    let (dst, serve) = lazy(cx, "lazy-p5", Lazy::FAULT)?;
    let in_lazy: Vec<PathBuf> = rel.iter().map(|r| dst.join(r)).collect();
    // Populate: the first read() of each range is an event that fills it.
    let t = Instant::now();
    read_all(&in_lazy)?;
    for p in &in_lazy {
        if hsm::xattr::lget(p, hsm::STUB_XATTR)?.is_some() {
            bail!("{} is still a stub after being read whole", p.display());
        }
    }
    say!(
        "P5: populated {} in {:.1} s; hsm-serve keeps running",
        rel.iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        t.elapsed().as_secs_f64()
    );
    // Start every copy from the same state: nothing cached, then read back
    // by the same warm-up reads (so the folios are alike; a filled copy
    // would otherwise keep the folios its fills wrote).  The populated copy
    // is complete: no mark, no event, plain readahead.
    sys::drop_caches()?;
    let bind = Bindfs::mount(&native, &cx.plan.scratch.join("bindfs"))?;
    let mut configs: Vec<(&str, Vec<PathBuf>)> =
        vec![("native", big.clone()), ("hsm", in_lazy.clone())];
    if let Some(b) = &bind {
        configs.push(("bindfs", rel.iter().map(|r| b.0.join(r)).collect()));
    }
    // Warm up every configuration (twice: the second pass finds it all
    // cached).
    for _ in 0..2 {
        for (_, files) in &configs {
            read_all(files)?;
        }
    }
    for run in 0..cx.plan.p5_runs {
        let k = configs.len();
        for i in 0..k {
            let (name, files) = &configs[(i + run) % k];
            let mbps = read_all(files)?;
            cx.sample(&format!("p5.{name}.mbps"), run, mbps);
            say!("P5 run {run}: {name}: {mbps:.0} MB/s");
        }
    }
    drop(bind);
    let stats = serve.stop()?;
    say!(
        "P5: hsm-serve fetched {} bytes",
        sys::kv(&stats, "fetched_bytes")?
    );
    sys::remove_tree(&dst)?;
    Ok(())
}
