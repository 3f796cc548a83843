//! fpc-bench: benchmarks of fault-time pre-content events.
//!
//! * `fpc-bench guest`: the measurements, inside the VM (scripts/bench.sh
//!   boots each kernel once and runs it); prints `FPCB` sample lines.
//! * `fpc-bench report`: on the host, the ratios from the samples of the
//!   base boots and the patched boot (value, min, max, runs, noise floor,
//!   target met?), optionally as Markdown and as CSV for the plot: runs of
//!   the same boot are paired run by run, runs of different boots never.
//! * `fpc-bench demo`: the rustc part of scripts/demo.sh, inside the VM.
//! * `fpc-bench icount`: kernel instructions per fault and per syscall,
//!   inside the VM under the QEMU icount plugin (scripts/icount-bench.sh).
//! * `fpc-bench icount-report`: on the host, the instruction-count table of
//!   the base and patched kernels from the plugin logs and guest outputs.

mod demo;
mod guest;
mod http;
mod http_report;
mod icount;
mod icount_report;
mod lazydir;
mod lazydir_report;
mod remote;
mod report;
mod sys;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fpc-bench",
    about = "Benchmarks of fault-time fanotify pre-content events (FAN_PRE_FAULT)",
    after_help = "scripts/bench.sh runs `guest` on the base and the patched kernel and then \
                  `report`; scripts/demo.sh runs `demo`.  `guest` and `demo` need root and \
                  make a loop-mounted ext4 image; run them in a test VM.\n\
                  Exit status: 0 success, 1 error, 2 bad usage."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run measurements (in the VM) and print `FPCB <label> <metric> <run> <value>` lines.
    Guest(GuestArgs),
    /// Compute the ratios from the logs of the two kernels' guest runs.
    Report(ReportArgs),
    /// rustc --version from lazy copies of the toolchain served by nginx over a
    /// shaped link, fault vs mmap mode (in the VM).
    Demo(DemoArgs),
    /// Kernel instructions per page fault and per syscall, in marker-delimited
    /// windows (in the VM, one vCPU, under the icount plugin): prints
    /// `icount-scenario` lines.
    Icount(IcountArgs),
    /// The instruction-count table (Markdown) of the base and patched kernels
    /// from their plugin logs and `fpc-bench icount` outputs.
    IcountReport(IcountReportArgs),
}

#[derive(clap::Args)]
struct IcountArgs {
    /// Variants, comma-separated; they run in the order none, key-on,
    /// hsm-filled, hsm-lazy whatever the order given (a FAN_PRE_FAULT or
    /// FAN_PRE_DIR_ACCESS mark turns on a static key for the rest of the
    /// boot).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,key-on,hsm-filled,hsm-lazy"
    )]
    variant: Vec<icount::Variant>,
    /// Scenarios, comma-separated (default: all).
    #[arg(long, value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(icount::SCENARIOS))]
    scenarios: Vec<String>,
    /// Measured windows per scenario.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    windows: u64,
    /// Unmeasured rounds before the windows of a scenario.
    #[arg(long, default_value_t = 16)]
    warmup: usize,
    /// Seconds of quiet (after sync) before each scenario.
    #[arg(long, default_value_t = 1)]
    quiet_secs: u64,
    /// A tmpfs is mounted here for the ext4 images and the mount points.
    #[arg(long, default_value = "/tmp/fpc-icount")]
    scratch: PathBuf,
    /// The block device under the measured ext4.
    #[arg(long, value_enum, default_value = "auto")]
    device: icount::Device,
    /// ext4 mount options of the measured filesystems.  noatime: with
    /// relatime, whether read() compares timestamps of the same second
    /// depends on the wall clock (it moved a read by 16 instructions between
    /// two boots of one kernel).
    #[arg(long, default_value = "commit=600,noatime")]
    mount_options: String,
}

#[derive(clap::Args)]
struct IcountReportArgs {
    /// The base kernel's plugin log (`icount mark=...` lines).
    #[arg(long)]
    base: PathBuf,
    /// The patched kernel's plugin log.
    #[arg(long)]
    patched: PathBuf,
    /// The base kernel's `fpc-bench icount` output (default: read from --base).
    #[arg(long)]
    base_out: Option<PathBuf>,
    /// The patched kernel's `fpc-bench icount` output (default: read from --patched).
    #[arg(long)]
    patched_out: Option<PathBuf>,
    /// The plugin log of a second boot of the base kernel: the ratios of the
    /// second boots against the first ones' are the noise between boots,
    /// part of the spread.
    #[arg(long)]
    base2: Option<PathBuf>,
    /// The second base boot's `fpc-bench icount` output (default: read from --base2).
    #[arg(long, requires = "base2")]
    base2_out: Option<PathBuf>,
    /// The plugin log of a second boot of the patched kernel.
    #[arg(long)]
    patched2: Option<PathBuf>,
    /// The second patched boot's `fpc-bench icount` output (default: read from --patched2).
    #[arg(long, requires = "patched2")]
    patched2_out: Option<PathBuf>,
    /// Also write the rows as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
}

#[derive(clap::Args)]
struct GuestArgs {
    /// The toolchain to copy (the host's `rustc --print sysroot`).
    #[arg(long)]
    toolchain: PathBuf,
    /// Label of the sample lines (one word, e.g. base, patched).
    #[arg(long, value_parser = word)]
    label: String,
    /// Parts to run, comma-separated: p1,p2,p3,p4,p5 (p2 and p3 are one
    /// measurement), http (rustc --version from nginx over the --links
    /// profiles: fault, fault + prefetch, mmap, full copy; --fill-size
    /// 64K and 1M at 10ms), http-p4 (cargo build from an HTTP-backed lazy
    /// copy at 10ms, cold and filled, vs native), lazydir (stat of a deep
    /// path, rustc --version and find from a lazy clone of the whole
    /// toolchain vs an eager stub tree vs a native copy; needs
    /// FAN_PRE_DIR_ACCESS).
    #[arg(long, default_value = "p1,p2,p3,p4,p5", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(
              ["p1", "p2", "p3", "p4", "p5", "http", "http-p4", "lazydir"]))]
    parts: Vec<String>,
    /// Link profiles of the http part (RTT / rate): 1ms (1 Gbit/s), 10ms
    /// (200 Mbit/s), 50ms (50 Mbit/s).
    #[arg(long, default_value = "1ms,10ms,50ms", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(["1ms", "10ms", "50ms"]))]
    links: Vec<String>,
    /// Runs of the http and http-p4 parts.
    #[arg(long, default_value_t = 1, value_parser = runs)]
    http_runs: usize,
    /// Runs of the lazydir part (find: the first run only).
    #[arg(long, default_value_t = 3, value_parser = runs)]
    lazydir_runs: usize,
    /// A tar archive of the --toolchain (`tar -C TOOLCHAIN -cf FILE .`),
    /// which the lazydir part extracts instead of copying the toolchain
    /// file by file over 9p.
    #[arg(long)]
    lazydir_tar: Option<PathBuf>,
    /// Directory for the ext4 image and the work files.
    #[arg(long, default_value = "/tmp/fpc-bench")]
    scratch: PathBuf,
    /// Size of the (sparse) ext4 image, e.g. 3G.
    #[arg(long, default_value = "3G", value_parser = size)]
    image_size: u64,
    /// Runs of P1 (each: cold, warm, cold-1, warm-1).
    #[arg(long, default_value_t = 15, value_parser = runs)]
    p1_runs: usize,
    /// Size of the P1 file, e.g. 64M (at least 1M).
    #[arg(long, default_value = "64M", value_parser = mib_size)]
    p1_size: u64,
    /// Bytes of the P1 file touched in the cold one-read-per-fault pass.
    #[arg(long, default_value = "8M", value_parser = mib_size)]
    p1_cold1_size: u64,
    /// Runs of P2/P3 (each: native, fault mode, mmap mode).
    #[arg(long, default_value_t = 3, value_parser = runs)]
    p23_runs: usize,
    /// Runs of P4 (each: native and HSM build).
    #[arg(long, default_value_t = 3, value_parser = runs)]
    p4_runs: usize,
    /// Runs of P5 (each: native, HSM, bindfs).
    #[arg(long, default_value_t = 7, value_parser = runs)]
    p5_runs: usize,
    /// Top-level paths of the toolchain not copied (comma-separated; "" for none).
    #[arg(long, default_value = "share/doc", value_delimiter = ',')]
    exclude: Vec<String>,
    /// Also measure P3 and P4 with `hsm-serve --no-sync` (no fdatasync per fill).
    #[arg(long)]
    nosync: bool,
    /// Also measure P2/P3 with lazy copies filled from the toolchain itself
    /// (the host's files over 9p) instead of the native copy.
    #[arg(long)]
    host_source: bool,
    /// Also measure P2/P3 and P4 with `hsm-serve --fill-size SIZE` (fault
    /// mode; a power of two from 4K to 64M, e.g. 1M).  The last one given
    /// counts (bench.sh passes 1M; `-- --fill-size 64K` replaces it).
    #[arg(long, value_name = "SIZE", value_parser = fill_size, overrides_with = "fill_size")]
    fill_size: Option<u64>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Console log of the base kernel's guest run.
    #[arg(long)]
    base: PathBuf,
    /// Console log of the patched kernel's guest run.
    #[arg(long)]
    patched: PathBuf,
    /// Console log of a second guest run of the base kernel (P1): the P1
    /// ratios then divide by the mean of the two base boots' medians, and
    /// the two against each other are the noise floor of their verdicts
    /// (without it: no noise floor, no verdict).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Print the table as Markdown.
    #[arg(long)]
    markdown: bool,
    /// Also write the ratios as CSV (for scripts/bench-plot.py).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Also write the HTTP part's rows (time, bytes, bound per link and
    /// mode) as CSV (for scripts/bench-plot.py --http).
    #[arg(long)]
    http_csv: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// The toolchain (the host's `rustc --print sysroot`).
    #[arg(long)]
    toolchain: PathBuf,
    /// Directory for the ext4 image.
    #[arg(long, default_value = "/tmp/fpc-bench-demo")]
    scratch: PathBuf,
    /// Size of the (sparse) ext4 image.
    #[arg(long, default_value = "2G", value_parser = size)]
    image_size: u64,
    /// Top-level paths of the toolchain not populated (comma-separated; "" for none).
    #[arg(long, default_value = "share/doc", value_delimiter = ',')]
    exclude: Vec<String>,
    /// The link between the lazy copy and nginx: 1ms (1 Gbit/s), 10ms
    /// (200 Mbit/s) or 50ms (50 Mbit/s).
    #[arg(long, default_value = "10ms",
          value_parser = clap::builder::PossibleValuesParser::new(["1ms", "10ms", "50ms"]))]
    link: String,
    /// Fill from the toolchain directory instead of nginx (no network).
    #[arg(long)]
    local: bool,
}

fn size(s: &str) -> Result<u64, String> {
    hsm::util::parse_size(s).map_err(|e| format!("{e:#}"))
}

fn fill_size(s: &str) -> Result<u64, String> {
    hsm::util::parse_fill_size(s).map_err(|e| format!("{e:#}"))
}

fn mib_size(s: &str) -> Result<u64, String> {
    match size(s)? {
        n if n < 1 << 20 => Err(format!("{s} is less than 1M")),
        n => Ok(n),
    }
}

fn runs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of runs (1-1000)")),
    }
}

fn word(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not one word"));
    }
    Ok(s.to_string())
}

fn clean(v: Vec<String>) -> Vec<String> {
    v.into_iter()
        .map(|s| s.trim().trim_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fpc-bench: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Guest(a) => {
            let parts = clean(a.parts);
            guest::run(&guest::Plan {
                label: a.label,
                toolchain: a.toolchain,
                scratch: a.scratch,
                image_size: a.image_size,
                parts,
                p1_runs: a.p1_runs,
                p1_size: a.p1_size,
                p1_cold1_size: a.p1_cold1_size,
                p23_runs: a.p23_runs,
                p4_runs: a.p4_runs,
                p5_runs: a.p5_runs,
                nosync: a.nosync,
                host_source: a.host_source,
                fill_size: a.fill_size,
                exclude: clean(a.exclude),
                links: a
                    .links
                    .iter()
                    .map(|l| http::link(l))
                    .collect::<Result<_>>()?,
                http_runs: a.http_runs,
                lazydir_runs: a.lazydir_runs,
                lazydir_tar: a.lazydir_tar,
            })
        }
        Cmd::Report(a) => {
            let base = report::read_samples(&a.base)?;
            let patched = report::read_samples(&a.patched)?;
            report::require_samples(&base, &a.base)?;
            report::require_samples(&patched, &a.patched)?;
            let control = match &a.control {
                Some(p) => {
                    let c = report::read_samples(p)?;
                    report::require_samples(&c, p)?;
                    Some(c)
                }
                None => None,
            };
            let rows = report::compute(&base, &patched, control.as_ref());
            print!("{}", report::table(&rows, a.markdown));
            if let Some(t) = http_report::table(&patched, a.markdown) {
                print!("{t}");
            }
            if let Some(t) = lazydir_report::table(&patched, a.markdown) {
                print!("{t}");
            }
            if let Some(p) = a.csv {
                std::fs::write(&p, report::csv(&rows))
                    .with_context(|| format!("write {}", p.display()))?;
            }
            if let Some(p) = a.http_csv {
                std::fs::write(&p, http_report::csv(&patched))
                    .with_context(|| format!("write {}", p.display()))?;
            }
            Ok(())
        }
        Cmd::Demo(a) => demo::run(&demo::Plan {
            toolchain: &a.toolchain,
            scratch: &a.scratch,
            image_size: a.image_size,
            exclude: &clean(a.exclude),
            link: if a.local {
                None
            } else {
                Some(http::link(&a.link)?)
            },
        }),
        Cmd::Icount(a) => {
            let mut variants = a.variant;
            variants.sort();
            variants.dedup();
            let scenarios = if a.scenarios.is_empty() {
                icount::SCENARIOS.iter().map(|s| s.to_string()).collect()
            } else {
                a.scenarios
            };
            icount::run(&icount::Plan {
                variants,
                scenarios,
                windows: a.windows as usize,
                warmup: a.warmup,
                scratch: a.scratch,
                quiet: std::time::Duration::from_secs(a.quiet_secs),
                device: a.device,
                mount_options: a.mount_options,
            })
        }
        Cmd::IcountReport(a) => {
            let load = |label: &str, log: &PathBuf, out: &Option<PathBuf>| {
                icount_report::load(label, log, out.as_ref().unwrap_or(log))
            };
            let base = load("base", &a.base, &a.base_out)?;
            let patched = load("patched", &a.patched, &a.patched_out)?;
            let base2 = a
                .base2
                .as_ref()
                .map(|l| load("base boot 2", l, &a.base2_out))
                .transpose()?;
            let patched2 = a
                .patched2
                .as_ref()
                .map(|l| load("patched boot 2", l, &a.patched2_out))
                .transpose()?;
            let (rows, notes) =
                icount_report::compute(&base, &patched, base2.as_ref(), patched2.as_ref())?;
            let runs: Vec<&icount_report::Run> = [
                Some(&base),
                Some(&patched),
                base2.as_ref(),
                patched2.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect();
            print!("{}", icount_report::report(&runs, &rows, &notes));
            if let Some(p) = a.csv {
                std::fs::write(&p, icount_report::csv(&rows))
                    .with_context(|| format!("write {}", p.display()))?;
            }
            Ok(())
        }
    }
}
