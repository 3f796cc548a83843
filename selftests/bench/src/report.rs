//! The host side: read the sample lines the guests printed and turn them
//! into the ratios of the benchmark.  A ratio is one of two kinds
//! ([`Source`]):
//!
//! * numerator and denominator measured in the same (patched) boot, in
//!   interleaved runs (P2-P5): paired run by run; the row gives the
//!   median, min and max of the per-run ratios.
//! * a metric of the patched boot against the same metric of the base
//!   kernel (P1), measured in different boots, whose runs are never paired.
//!   The ratio is the median of the patched runs over the reference: the
//!   mean of the medians of the two base boots (`report --control`; the
//!   boot order is base, patched, base), or the first base boot's median
//!   without a second.  Its min and max are the patched boot's fastest and
//!   slowest run over the same reference (the spread of single runs).  The
//!   two base boots against each other give the noise floor,
//!   |median(base 2) / median(base) - 1|: unless it is below the target's
//!   margin |target - 1|, the verdict is "not resolvable here"; without a
//!   second base boot it is "no noise floor".
//!
//! A sample line is `FPCB <label> <metric> <run> <value>` (see
//! [`sample_line`]); anything else in a log is ignored, so a whole VM console
//! log can be fed in.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Prefix of the sample lines.
pub const TAG: &str = "FPCB";

/// The line the guest prints for one measurement.
pub fn sample_line(label: &str, metric: &str, run: usize, value: f64) -> String {
    format!("{TAG} {label} {metric} {run} {value}")
}

/// metric -> run -> value.
pub type Samples = BTreeMap<String, BTreeMap<usize, f64>>;

/// The samples in `text` (a console log); later duplicates win.
pub fn parse_samples(text: &str) -> Samples {
    let mut s = Samples::new();
    for line in text.lines() {
        // vng may leave a carriage return or console noise before the tag.
        let Some(pos) = line.find(&format!("{TAG} ")) else {
            continue;
        };
        let f: Vec<&str> = line[pos..].split_whitespace().collect();
        if f.len() != 5 {
            continue;
        }
        let (Ok(run), Ok(v)) = (f[3].parse::<usize>(), f[4].parse::<f64>()) else {
            continue;
        };
        if v.is_finite() {
            s.entry(f[2].to_string()).or_default().insert(run, v);
        }
    }
    s
}

pub fn read_samples(path: &Path) -> Result<Samples> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(parse_samples(&String::from_utf8_lossy(&text)))
}

/// Median, min and max of a non-empty set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(v: &[f64]) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Spread {
        n,
        median,
        min: s[0],
        max: s[n - 1],
    })
}

/// The median of a metric's runs in one boot's samples (None: no run).
pub fn median(s: &Samples, metric: &str) -> Option<f64> {
    let v: Vec<f64> = s.get(metric)?.values().copied().collect();
    spread(&v).map(|s| s.median)
}

/// Where the numerator and the denominator of a ratio come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Both from the patched boot, measured in interleaved runs: paired by
    /// run.
    Patched {
        num: &'static str,
        den: &'static str,
    },
    /// This metric of the patched boot against the same metric of the base
    /// boots (`report --base`, `--control`): different boots, never paired.
    AgainstBase(&'static str),
}

impl Source {
    /// The table's name of the way the ratio is formed.
    pub fn pairing(self) -> &'static str {
        match self {
            Patched { .. } => "runs",
            AgainstBase(_) => "boots",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    pub fn met(self, v: f64) -> bool {
        match self {
            Target::AtMost(t) => v <= t,
            Target::AtLeast(t) => v >= t,
        }
    }

    /// |target - 1|: a noise floor must be below it for a verdict.
    pub fn margin(self) -> f64 {
        match self {
            Target::AtMost(t) | Target::AtLeast(t) => (t - 1.0).abs(),
        }
    }

    pub fn text(self) -> String {
        match self {
            Target::AtMost(t) => format!("<= {t}"),
            Target::AtLeast(t) => format!(">= {t}"),
        }
    }
}

/// A row's verdict against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Across boots: the noise floor is not below the target's margin.
    NotResolvable,
    /// Across boots without a second base boot: the noise is unknown.
    NoNoiseFloor,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Met => "yes",
            Verdict::Missed => "NO",
            Verdict::NotResolvable => "not resolvable here",
            Verdict::NoNoiseFloor => "no noise floor",
        }
    }
}

/// One ratio of the benchmark.
pub struct RatioDef {
    pub id: &'static str,
    /// Its description; `{fill}` stands for the `--fill-size` of the guest
    /// run (see [`FILL_SIZE`]).
    pub what: &'static str,
    pub source: Source,
    pub unit: &'static str,
    pub target: Option<Target>,
}

use Source::{AgainstBase, Patched};

/// The metric holding `fpc-bench guest --fill-size` in bytes (run 0).
pub const FILL_SIZE: &str = "fill_size_bytes";

/// Every ratio the report prints, in order.
pub const RATIOS: &[RatioDef] = &[
    RatioDef {
        id: "P1 cold",
        what: "page-fault cost, no watcher, cold (page cache dropped, sequential, readahead): patched / base",
        source: AgainstBase("p1.cold.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 warm",
        what: "page-fault cost, no watcher, warm (cached, sequential, fault-around): patched / base",
        source: AgainstBase("p1.warm.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 cold-1",
        what: "page-fault cost, no watcher, cold, one read per fault (MADV_RANDOM): patched / base",
        source: AgainstBase("p1.cold1.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 warm-1",
        what: "page-fault cost, no watcher, warm, one fault per page (fault_around_bytes=4096): patched / base",
        source: AgainstBase("p1.warm1.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P2 fault",
        what: "rustc --version: bytes fetched (fault mode) / bytes touched (native cold copy)",
        source: Patched {
            num: "p2.fault.fetched_bytes",
            den: "p2.touched_bytes",
        },
        unit: "bytes",
        target: Some(Target::AtMost(1.25)),
    },
    RatioDef {
        id: "P2 mmap",
        what: "rustc --version: bytes fetched (mmap mode) / bytes touched (native cold copy)",
        source: Patched {
            num: "p2.mmap.fetched_bytes",
            den: "p2.touched_bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P2 fill",
        what: "rustc --version: bytes fetched (fault mode, hsm-serve --fill-size {fill}) / bytes touched (native cold copy)",
        source: Patched {
            num: "p2.fault-fill.fetched_bytes",
            den: "p2.touched_bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P3",
        what: "rustc --version from a cold HSM copy: time fault mode / mmap mode",
        source: Patched {
            num: "p3.fault.secs",
            den: "p3.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 nosync",
        what: "the same with hsm-serve --no-sync (no fdatasync per fill): fault mode / mmap mode",
        source: Patched {
            num: "p3.fault-nosync.secs",
            den: "p3.mmap-nosync.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 9p",
        what: "the same with the lazy copies filled from the host's toolchain over 9p: fault mode / mmap mode",
        source: Patched {
            num: "p3.fault-9p.secs",
            den: "p3.mmap-9p.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 fill",
        what: "the same with hsm-serve --fill-size {fill} (fault mode only): fault mode with it / mmap mode",
        source: Patched {
            num: "p3.fault-fill.secs",
            den: "p3.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 native",
        what: "rustc --version: time fault-mode HSM copy / native copy (both cold)",
        source: Patched {
            num: "p3.fault.secs",
            den: "p3.native.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "P4 time",
        what: "cargo build of a small project with the toolchain: time HSM copy (fault mode, cold) / native copy (cold)",
        source: Patched {
            num: "p4.hsm.secs",
            den: "p4.native.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 nosync",
        what: "the same with hsm-serve --no-sync: time HSM copy / native copy",
        source: Patched {
            num: "p4.hsm-nosync.secs",
            den: "p4.native.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 fill",
        what: "the same with hsm-serve --fill-size {fill}: time HSM copy / native copy",
        source: Patched {
            num: "p4.hsm-fill.secs",
            den: "p4.native.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 again",
        what: "the same build again from that HSM copy (page cache dropped, daemon running) / native copy (cold)",
        source: Patched {
            num: "p4.hsm-again.secs",
            den: "p4.native.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "P4 disk",
        what: "after that build: du of the HSM copy / du of the native copy",
        source: Patched {
            num: "p4.hsm.du_bytes",
            den: "p4.native.du_bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P5 HSM",
        what: "warm read() throughput of the big libraries after population: HSM copy (daemon running) / native",
        source: Patched {
            num: "p5.hsm.mbps",
            den: "p5.native.mbps",
        },
        unit: "MB/s",
        target: Some(Target::AtLeast(0.99)),
    },
    RatioDef {
        id: "P5 bindfs",
        what: "the same through bindfs (FUSE passthrough of the native copy) / native",
        source: Patched {
            num: "p5.bindfs.mbps",
            den: "p5.native.mbps",
        },
        unit: "MB/s",
        target: None,
    },
    RatioDef {
        id: "H1 fault",
        what: "rustc --version from nginx over 1 ms RTT / 1 Gbit/s: time fault mode / mmap mode",
        source: Patched {
            num: "h.1ms.fault.secs",
            den: "h.1ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H1 prefetch",
        what: "the same, fault mode with hsm-serve --prefetch (the profile the fault run recorded) / mmap mode",
        source: Patched {
            num: "h.1ms.prefetch.secs",
            den: "h.1ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H1 full",
        what: "the same, full copy (download everything over 4 connections, then run) / mmap mode",
        source: Patched {
            num: "h.1ms.full.secs",
            den: "h.1ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H1 bytes",
        what: "bytes nginx sent: fault mode / mmap mode",
        source: Patched {
            num: "h.1ms.fault.bytes",
            den: "h.1ms.mmap.bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "H10 fault",
        what: "rustc --version from nginx over 10 ms RTT / 200 Mbit/s: time fault mode / mmap mode",
        source: Patched {
            num: "h.10ms.fault.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "H10 prefetch",
        what: "the same, fault mode with hsm-serve --prefetch (the profile the fault run recorded) / mmap mode",
        source: Patched {
            num: "h.10ms.prefetch.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "H10 prefetch4M",
        what: "the same, with hsm-serve --prefetch --prefetch-chunk 4M / mmap mode",
        source: Patched {
            num: "h.10ms.prefetch4m.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "H10 fill64K",
        what: "the same, fault mode with hsm-serve --fill-size 64K / mmap mode",
        source: Patched {
            num: "h.10ms.fill64k.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "H10 fill1M",
        what: "the same, fault mode with hsm-serve --fill-size 1M / mmap mode",
        source: Patched {
            num: "h.10ms.fill1m.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "H10 full",
        what: "the same, full copy (download everything over 4 connections, then run) / mmap mode",
        source: Patched {
            num: "h.10ms.full.secs",
            den: "h.10ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H10 bytes",
        what: "bytes nginx sent: fault mode / mmap mode",
        source: Patched {
            num: "h.10ms.fault.bytes",
            den: "h.10ms.mmap.bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "H50 fault",
        what: "rustc --version from nginx over 50 ms RTT / 50 Mbit/s: time fault mode / mmap mode",
        source: Patched {
            num: "h.50ms.fault.secs",
            den: "h.50ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H50 prefetch",
        what: "the same, fault mode with hsm-serve --prefetch (the profile the fault run recorded) / mmap mode",
        source: Patched {
            num: "h.50ms.prefetch.secs",
            den: "h.50ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H50 full",
        what: "the same, full copy (download everything over 4 connections, then run) / mmap mode",
        source: Patched {
            num: "h.50ms.full.secs",
            den: "h.50ms.mmap.secs",
        },
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "H50 bytes",
        what: "bytes nginx sent: fault mode / mmap mode",
        source: Patched {
            num: "h.50ms.fault.bytes",
            den: "h.50ms.mmap.bytes",
        },
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "HP4 filled",
        what: "cargo build with the toolchain of an HTTP-backed lazy copy (10 ms / 200 Mbit/s) once a first build filled it (page cache dropped, daemon running) / native copy (cold)",
        source: Patched {
            num: "h.p4.filled.secs",
            den: "h.p4.native.secs",
        },
        unit: "s",
        target: Some(Target::AtMost(1.1)),
    },
    RatioDef {
        id: "HP4 cold",
        what: "the same, the first (cold) build over the link / native copy (cold)",
        source: Patched {
            num: "h.p4.cold.secs",
            den: "h.p4.native.secs",
        },
        unit: "s",
        target: None,
    },
];

/// A row's ratio and the spread around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// Pairs of runs or, against the base, runs of the patched boot.
    pub n: usize,
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

/// One computed row.
pub struct Row {
    pub def: &'static RatioDef,
    /// `def.what` with `{fill}` filled in.
    pub what: String,
    pub ratio: Option<Ratio>,
    /// The numerator's runs.
    pub num: Option<Spread>,
    /// The denominator's runs (against the base: the first base boot's).
    pub den: Option<Spread>,
    /// Against the base: the second base boot's runs (`--control`).
    pub den2: Option<Spread>,
}

impl Row {
    /// What the ratio divides by: the median of the denominator's runs or,
    /// against the base, the mean of the two base boots' medians.
    pub fn reference(&self) -> Option<f64> {
        let d = self.den?.median;
        Some(match self.den2 {
            Some(d2) => (d + d2.median) / 2.0,
            None => d,
        })
    }

    /// The noise floor of a ratio against the base:
    /// |median(base 2) / median(base) - 1|; None without a second base boot.
    pub fn noise(&self) -> Option<f64> {
        let (d, d2) = (self.den?, self.den2?);
        Some((d2.median / d.median - 1.0).abs())
    }

    /// None without a target or a ratio.
    pub fn verdict(&self) -> Option<Verdict> {
        let (t, r) = (self.def.target?, self.ratio?);
        if let AgainstBase(_) = self.def.source {
            match self.noise() {
                None => return Some(Verdict::NoNoiseFloor),
                Some(n) if n >= t.margin() => return Some(Verdict::NotResolvable),
                Some(_) => {}
            }
        }
        Some(if t.met(r.value) {
            Verdict::Met
        } else {
            Verdict::Missed
        })
    }
}

fn runs_of(s: &Samples, metric: &str) -> BTreeMap<usize, f64> {
    s.get(metric).cloned().unwrap_or_default()
}

fn spread_of(runs: &BTreeMap<usize, f64>) -> Option<Spread> {
    spread(&runs.values().copied().collect::<Vec<_>>())
}

/// `1M`, `64K` or `N bytes`.
fn size_text(b: u64) -> String {
    match b {
        0 => "0".into(),
        b if b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Compute every ratio from the samples of the patched boot and the base
/// boot, and of the base kernel's second boot if there is one (`control`).
pub fn compute(base: &Samples, patched: &Samples, control: Option<&Samples>) -> Vec<Row> {
    let fill = patched
        .get(FILL_SIZE)
        .and_then(|m| m.values().next())
        .map_or_else(|| "SIZE".to_string(), |&b| size_text(b as u64));
    RATIOS
        .iter()
        .map(|def| {
            let what = def.what.replace("{fill}", &fill);
            match def.source {
                Patched { num, den } => {
                    let n = runs_of(patched, num);
                    let d = runs_of(patched, den);
                    let pairs: Vec<f64> = n
                        .iter()
                        .filter_map(|(run, a)| d.get(run).filter(|b| **b > 0.0).map(|b| a / b))
                        .collect();
                    Row {
                        def,
                        what,
                        ratio: spread(&pairs).map(|s| Ratio {
                            n: s.n,
                            value: s.median,
                            min: s.min,
                            max: s.max,
                        }),
                        num: spread_of(&n),
                        den: spread_of(&d),
                        den2: None,
                    }
                }
                AgainstBase(metric) => {
                    // A base boot whose median is not positive measured nothing.
                    let boot =
                        |s: &Samples| spread_of(&runs_of(s, metric)).filter(|s| s.median > 0.0);
                    let mut row = Row {
                        def,
                        what,
                        ratio: None,
                        num: spread_of(&runs_of(patched, metric)),
                        den: boot(base),
                        den2: control.and_then(boot),
                    };
                    row.ratio = match (row.num, row.reference()) {
                        (Some(n), Some(r)) => Some(Ratio {
                            n: n.n,
                            value: n.median / r,
                            min: n.min / r,
                            max: n.max / r,
                        }),
                        _ => None,
                    };
                    row
                }
            }
        })
        .collect()
}

/// A value with 4 significant digits, in a compact form.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{:.3}e9", v / 1e9)
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn abs(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{} {unit}", num(v)))
}

/// How the columns are computed, printed under the table.
const LEGEND: &[&str] = &[
    "pairing \"runs\": numerator and denominator from the same (patched) boot, measured in \
     interleaved runs: value, min and max are the median, min and max of the per-run ratios \
     (run i / run i).",
    "pairing \"boots\": the patched boot against the base boots, whose runs are never paired: \
     value = median of the patched runs / the mean of the two base boots' medians (the \
     denominator column; the first base boot's alone without --control); min and max = the \
     patched boot's fastest and slowest run over that same denominator (the spread of single \
     runs). Noise floor = |median of base boot 2 / median of base boot 1 - 1|; met is \"not \
     resolvable here\" unless the noise floor is below the target's margin |target - 1|, and \
     \"no noise floor\" without a second base boot.",
    "numerator, denominator: medians of the runs (a \"boots\" row's denominator: the mean of \
     the two base boots' medians).",
];

/// The table, as plain text (`markdown`: as a Markdown table), its legend
/// and the rows' descriptions.
/// Write `cells` (the header row first) as a markdown table, or as plain
/// columns padded to their widest cell.
pub fn write_cells(out: &mut String, cells: &[Vec<String>], markdown: bool) {
    if markdown {
        for (i, c) in cells.iter().enumerate() {
            let _ = writeln!(out, "| {} |", c.join(" | "));
            if i == 0 {
                let _ = writeln!(out, "|{}", "---|".repeat(c.len()));
            }
        }
    } else {
        let cols = cells.first().map_or(0, Vec::len);
        let w: Vec<usize> = (0..cols)
            .map(|i| cells.iter().map(|c| c[i].len()).max().unwrap_or(0))
            .collect();
        for c in cells {
            let line: Vec<String> = c
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s:<w$}", w = w[i]))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
}

pub fn table(rows: &[Row], markdown: bool) -> String {
    let head = [
        "ratio",
        "pairing",
        "runs",
        "value",
        "min",
        "max",
        "noise floor",
        "target",
        "met",
        "numerator",
        "denominator",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let (n, value, min, max) = match r.ratio {
            Some(s) => (s.n.to_string(), num(s.value), num(s.min), num(s.max)),
            None => ("0".into(), "-".into(), "-".into(), "-".into()),
        };
        cells.push(vec![
            r.def.id.to_string(),
            r.def.source.pairing().to_string(),
            n,
            value,
            min,
            max,
            r.noise().map_or("-".into(), pct),
            r.def.target.map_or("-".into(), Target::text),
            r.verdict().map_or("-", Verdict::text).to_string(),
            abs(r.num.map(|s| s.median), r.def.unit),
            abs(r.reference(), r.def.unit),
        ]);
    }
    let mut out = String::new();
    write_cells(&mut out, &cells, markdown);
    let item = if markdown { "- " } else { "" };
    out.push('\n');
    for l in LEGEND {
        let _ = writeln!(out, "{item}{l}");
    }
    out.push('\n');
    for r in rows {
        let _ = write!(out, "{item}{}: {}", r.def.id, r.what);
        if let AgainstBase(_) = r.def.source {
            let boot = |s: Spread| format!("{} {} ({} runs)", num(s.median), r.def.unit, s.n);
            match (r.den, r.den2) {
                (Some(d), Some(d2)) => {
                    let _ = write!(out, "; base boots {} and {}", boot(d), boot(d2));
                }
                (Some(d), None) => {
                    let _ = write!(out, "; one base boot, {}: no noise floor", boot(d));
                }
                (None, _) => out.push_str("; not measured on the base kernel"),
            }
        }
        out.push('\n');
    }
    out
}

/// CSV for the plot script:
/// id,pairing,runs,value,min,max,noise_floor,target_op,target,met.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("id,pairing,runs,value,min,max,noise_floor,target_op,target,met\n");
    for r in rows {
        let Some(s) = r.ratio else { continue };
        let (op, t) = match r.def.target {
            Some(Target::AtMost(t)) => ("<=", t.to_string()),
            Some(Target::AtLeast(t)) => (">=", t.to_string()),
            None => ("", String::new()),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{op},{t},{}",
            r.def.id,
            r.def.source.pairing(),
            s.n,
            s.value,
            s.min,
            s.max,
            r.noise().map_or(String::new(), |n| n.to_string()),
            r.verdict().map_or("", Verdict::text)
        );
    }
    out
}

/// Fail if a log holds no sample at all (the guest run failed early).
pub fn require_samples(s: &Samples, path: &Path) -> Result<()> {
    if s.is_empty() {
        bail!(
            "{}: no '{TAG}' sample lines (did the guest run fail?)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(rows: &'a [Row], id: &str) -> &'a Row {
        rows.iter().find(|r| r.def.id == id).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// `FPCB` lines of one boot: (metric, values of runs 0, 1, ...).
    fn boot(label: &str, metrics: &[(&str, &[f64])]) -> Samples {
        let mut text = String::new();
        for (m, vals) in metrics {
            for (run, v) in vals.iter().enumerate() {
                text.push_str(&sample_line(label, m, run, *v));
                text.push('\n');
            }
        }
        parse_samples(&text)
    }

    const WARM: &str = "p1.warm.ns_per_page";

    #[test]
    fn against_the_mean_of_two_base_boots() {
        let base = boot("base", &[(WARM, &[190.0, 200.0, 230.0])]);
        let ctl = boot("base2", &[(WARM, &[204.0, 150.0, 260.0])]);
        let patched = boot("patched", &[(WARM, &[101.0, 203.0, 404.0])]);
        let rows = compute(&base, &patched, Some(&ctl));
        let r = row(&rows, "P1 warm");
        assert!(close(r.reference().unwrap(), 202.0), "mean of 200 and 204");
        let s = r.ratio.unwrap();
        assert_eq!(s.n, 3);
        assert!(close(s.value, 203.0 / 202.0));
        assert!(close(s.min, 101.0 / 202.0) && close(s.max, 2.0));
        assert!(close(r.noise().unwrap(), 0.02));
        // 1.005 is within the target, but 2 % of noise cannot resolve 0.5 %.
        assert_eq!(r.verdict(), Some(Verdict::NotResolvable));
        let t = table(&rows, false);
        let line = t.lines().find(|l| l.starts_with("P1 warm ")).unwrap();
        assert!(line.contains("boots") && line.contains("2.00%"), "{line}");
        assert!(line.contains("not resolvable here") && line.contains("202.0 ns/page"));
        assert!(t.contains("base boots 200.0 ns/page (3 runs) and 204.0 ns/page (3 runs)"));
    }

    #[test]
    fn runs_of_different_boots_are_never_paired() {
        // No run index in common: pairing by index would give no ratio.
        let base = parse_samples("FPCB base p1.warm.ns_per_page 0 200\n");
        let ctl = parse_samples("FPCB base2 p1.warm.ns_per_page 1 200\n");
        let patched = parse_samples(
            "FPCB patched p1.warm.ns_per_page 5 201\nFPCB patched p1.warm.ns_per_page 6 199\n",
        );
        let r = compute(&base, &patched, Some(&ctl));
        let s = row(&r, "P1 warm").ratio.unwrap();
        assert_eq!(s.n, 2);
        assert!(close(s.value, 1.0) && close(s.min, 0.995) && close(s.max, 1.005));
    }

    #[test]
    fn verdict_where_the_noise_floor_is_below_the_margin() {
        let base = boot("base", &[(WARM, &[200.0])]);
        let ctl = boot("base2", &[(WARM, &[200.4])]);
        let rows = |p: f64| compute(&base, &boot("patched", &[(WARM, &[p])]), Some(&ctl));
        let met = rows(200.6);
        let r = row(&met, "P1 warm");
        assert!(close(r.noise().unwrap(), 0.002));
        assert!(close(r.ratio.unwrap().value, 200.6 / 200.2));
        assert_eq!(r.verdict(), Some(Verdict::Met));
        let missed = rows(203.0);
        assert_eq!(row(&missed, "P1 warm").verdict(), Some(Verdict::Missed));
        let c = csv(&missed);
        assert!(c.starts_with("id,pairing,runs,value,min,max,noise_floor,target_op,target,met\n"));
        let line = c.lines().find(|l| l.starts_with("P1 warm,")).unwrap();
        assert!(line.starts_with("P1 warm,boots,1,"), "{line}");
        assert!(line.ends_with(",<=,1.005,NO"), "{line}");
    }

    #[test]
    fn without_a_control_log_there_is_no_noise_floor() {
        let base = boot("base", &[(WARM, &[200.0, 220.0])]);
        let patched = boot("patched", &[(WARM, &[199.0])]);
        let rows = compute(&base, &patched, None);
        let r = row(&rows, "P1 warm");
        assert!(
            close(r.ratio.unwrap().value, 199.0 / 210.0),
            "the base median alone"
        );
        assert_eq!(r.noise(), None);
        assert_eq!(r.verdict(), Some(Verdict::NoNoiseFloor));
        let t = table(&rows, false);
        let line = t.lines().find(|l| l.starts_with("P1 warm ")).unwrap();
        assert!(line.contains("no noise floor"), "{line}");
        assert!(t.contains("one base boot, 210.0 ns/page (2 runs): no noise floor"));
        let c = csv(&rows);
        assert!(c.contains(",<=,1.005,no noise floor\n"), "{c}");
        // A second base boot without the metric is no noise floor either.
        let other = boot("base2", &[("p1.cold.ns_per_page", &[100.0])]);
        let rows = compute(&base, &patched, Some(&other));
        assert_eq!(row(&rows, "P1 warm").verdict(), Some(Verdict::NoNoiseFloor));
        // Not measured on the base kernel: no ratio.
        let rows = compute(&Samples::new(), &patched, None);
        let r = row(&rows, "P1 warm");
        assert!(r.ratio.is_none() && r.verdict().is_none());
        assert!(table(&rows, false).contains("not measured on the base kernel"));
    }

    #[test]
    fn spreads() {
        assert_eq!(spread(&[]), None);
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        let s = spread(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (4, 2.5, 1.0, 4.0));
    }

    #[test]
    fn parse_and_pair_within_the_patched_boot() {
        let base = parse_samples(
            "noise\n\rFPCB base p1.cold.ns_per_page 0 100\nFPCB base p1.cold.ns_per_page 1 200\r\n\
             FPCB base p1.warm.ns_per_page 0 nan\nFPCB base bad 0\n",
        );
        assert_eq!(base["p1.cold.ns_per_page"].len(), 2);
        assert!(!base.contains_key("p1.warm.ns_per_page"), "NaN kept");
        assert!(!base.contains_key("bad"));
        let patched = parse_samples(
            "[  12.3] FPCB patched p2.touched_bytes 0 1000\n\
             FPCB patched p2.touched_bytes 1 1000\n\
             FPCB patched p2.fault.fetched_bytes 0 1100\n\
             FPCB patched p2.fault.fetched_bytes 1 1300\n\
             FPCB patched p2.fault.fetched_bytes 2 9999\n\
             FPCB patched p5.native.mbps 0 0\nFPCB patched p5.hsm.mbps 0 10\n",
        );
        let rows = compute(&base, &patched, None);
        let p2 = row(&rows, "P2 fault");
        let s = p2.ratio.unwrap();
        assert_eq!(s.n, 2, "run 2 has no partner");
        assert!(close(s.value, 1.2) && close(s.min, 1.1) && close(s.max, 1.3));
        assert_eq!((p2.noise(), p2.verdict()), (None, Some(Verdict::Met)));
        let p5 = row(&rows, "P5 HSM");
        assert!(p5.ratio.is_none(), "a zero denominator is no ratio");
        assert_eq!(p5.verdict(), None);
        let t = table(&rows, false);
        assert!(t.contains("P2 fault") && t.contains("<= 1.25"));
        assert!(t.contains("pairing \"runs\""));
        let m = table(&rows, true);
        assert!(m.starts_with("| ratio | pairing | runs |"));
        assert!(m.contains("\n- pairing \"boots\""));
        let c = csv(&rows);
        assert_eq!(c.lines().count(), 2, "{c}");
        let line = c.lines().nth(1).unwrap();
        assert!(line.starts_with("P2 fault,runs,2,1.2"), "{line}");
        assert!(line.ends_with(",1.1,1.3,,<=,1.25,yes"), "{line}");
    }

    #[test]
    fn fill_rows() {
        let patched = parse_samples(
            "FPCB patched fill_size_bytes 0 1048576\n\
             FPCB patched p2.touched_bytes 0 1000\n\
             FPCB patched p2.fault-fill.fetched_bytes 0 3000\n\
             FPCB patched p3.mmap.secs 0 10\nFPCB patched p3.fault-fill.secs 0 1\n\
             FPCB patched p4.native.secs 0 20\nFPCB patched p4.hsm-fill.secs 0 20.2\n",
        );
        let rows = compute(&Samples::new(), &patched, None);
        assert!(close(row(&rows, "P2 fill").ratio.unwrap().value, 3.0));
        assert_eq!(row(&rows, "P2 fill").verdict(), None);
        assert!(close(row(&rows, "P3 fill").ratio.unwrap().value, 0.1));
        assert_eq!(row(&rows, "P3 fill").verdict(), Some(Verdict::Met));
        assert!(close(row(&rows, "P4 fill").ratio.unwrap().value, 1.01));
        assert_eq!(row(&rows, "P4 fill").verdict(), Some(Verdict::Met));
        assert!(row(&rows, "P3 fill").what.contains("--fill-size 1M"));
        let t = table(&rows, false);
        assert!(
            t.contains("P4 fill: the same with hsm-serve --fill-size 1M:"),
            "{t}"
        );
        assert!(!t.contains("{fill}"));
        // Without the variant: no ratio, a placeholder in the description.
        let rows = compute(&Samples::new(), &Samples::new(), None);
        let p3 = row(&rows, "P3 fill");
        assert!(p3.ratio.is_none() && p3.what.contains("--fill-size SIZE"));
        assert_eq!(size_text(64 << 10), "64K");
        assert_eq!(size_text(5000), "5000 bytes");
    }

    #[test]
    fn targets() {
        assert!(Target::AtMost(1.0).met(1.0) && !Target::AtMost(1.0).met(1.01));
        assert!(Target::AtLeast(0.99).met(1.0) && !Target::AtLeast(0.99).met(0.9));
        assert!(close(Target::AtMost(1.005).margin(), 0.005));
        assert!(close(Target::AtLeast(0.99).margin(), 0.01));
        assert_eq!(num(0.07812), "0.078");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(2.5e9), "2.500e9");
    }

    #[test]
    fn sample_round_trip() {
        let s = parse_samples(&sample_line("patched", "p3.fault.secs", 4, 1.25));
        assert_eq!(s["p3.fault.secs"][&4], 1.25);
    }
}
