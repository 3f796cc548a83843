//! The host side: read the sample lines the guests printed, pair them run by
//! run, and turn them into the ratios of the benchmark (median, min, max).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Base,
    Patched,
    /// The base kernel booted a second time (`report --control`): the noise
    /// floor of a patched / base ratio.
    Control,
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

    pub fn text(self) -> String {
        match self {
            Target::AtMost(t) => format!("<= {t}"),
            Target::AtLeast(t) => format!(">= {t}"),
        }
    }
}

/// One ratio of the benchmark: numerator / denominator, paired by run.
pub struct RatioDef {
    pub id: &'static str,
    /// Its description; `{fill}` stands for the `--fill-size` of the guest
    /// run (see [`FILL_SIZE`]).
    pub what: &'static str,
    pub num: (Kernel, &'static str),
    pub den: (Kernel, &'static str),
    pub unit: &'static str,
    pub target: Option<Target>,
}

use Kernel::{Base, Control, Patched};

/// The metric holding `fpc-bench guest --fill-size` in bytes (run 0).
pub const FILL_SIZE: &str = "fill_size_bytes";

/// Every ratio the report prints, in order.
pub const RATIOS: &[RatioDef] = &[
    RatioDef {
        id: "P1 cold",
        what: "page-fault cost, no watcher, cold (page cache dropped, sequential, readahead): patched / base",
        num: (Patched, "p1.cold.ns_per_page"),
        den: (Base, "p1.cold.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 warm",
        what: "page-fault cost, no watcher, warm (cached, sequential, fault-around): patched / base",
        num: (Patched, "p1.warm.ns_per_page"),
        den: (Base, "p1.warm.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 cold-1",
        what: "page-fault cost, no watcher, cold, one read per fault (MADV_RANDOM): patched / base",
        num: (Patched, "p1.cold1.ns_per_page"),
        den: (Base, "p1.cold1.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 warm-1",
        what: "page-fault cost, no watcher, warm, one fault per page (fault_around_bytes=4096): patched / base",
        num: (Patched, "p1.warm1.ns_per_page"),
        den: (Base, "p1.warm1.ns_per_page"),
        unit: "ns/page",
        target: Some(Target::AtMost(1.005)),
    },
    RatioDef {
        id: "P1 cold ctl",
        what: "noise floor of P1 cold: the base kernel booted again / base (cold)",
        num: (Control, "p1.cold.ns_per_page"),
        den: (Base, "p1.cold.ns_per_page"),
        unit: "ns/page",
        target: None,
    },
    RatioDef {
        id: "P1 warm ctl",
        what: "noise floor of P1 warm: the base kernel booted again / base (warm)",
        num: (Control, "p1.warm.ns_per_page"),
        den: (Base, "p1.warm.ns_per_page"),
        unit: "ns/page",
        target: None,
    },
    RatioDef {
        id: "P1 cold-1 ctl",
        what: "noise floor of P1 cold-1: the base kernel booted again / base (cold, one read per fault)",
        num: (Control, "p1.cold1.ns_per_page"),
        den: (Base, "p1.cold1.ns_per_page"),
        unit: "ns/page",
        target: None,
    },
    RatioDef {
        id: "P1 warm-1 ctl",
        what: "noise floor of P1 warm-1: the base kernel booted again / base (warm, one fault per page)",
        num: (Control, "p1.warm1.ns_per_page"),
        den: (Base, "p1.warm1.ns_per_page"),
        unit: "ns/page",
        target: None,
    },
    RatioDef {
        id: "P2 fault",
        what: "rustc --version: bytes fetched (fault mode) / bytes touched (native cold copy)",
        num: (Patched, "p2.fault.fetched_bytes"),
        den: (Patched, "p2.touched_bytes"),
        unit: "bytes",
        target: Some(Target::AtMost(1.25)),
    },
    RatioDef {
        id: "P2 mmap",
        what: "rustc --version: bytes fetched (mmap mode) / bytes touched (native cold copy)",
        num: (Patched, "p2.mmap.fetched_bytes"),
        den: (Patched, "p2.touched_bytes"),
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P2 fill",
        what: "rustc --version: bytes fetched (fault mode, hsm-serve --fill-size {fill}) / bytes touched (native cold copy)",
        num: (Patched, "p2.fault-fill.fetched_bytes"),
        den: (Patched, "p2.touched_bytes"),
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P3",
        what: "rustc --version from a cold HSM copy: time fault mode / mmap mode",
        num: (Patched, "p3.fault.secs"),
        den: (Patched, "p3.mmap.secs"),
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 nosync",
        what: "the same with hsm-serve --no-sync (no fdatasync per fill): fault mode / mmap mode",
        num: (Patched, "p3.fault-nosync.secs"),
        den: (Patched, "p3.mmap-nosync.secs"),
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 9p",
        what: "the same with the lazy copies filled from the host's toolchain over 9p: fault mode / mmap mode",
        num: (Patched, "p3.fault-9p.secs"),
        den: (Patched, "p3.mmap-9p.secs"),
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 fill",
        what: "the same with hsm-serve --fill-size {fill} (fault mode only): fault mode with it / mmap mode",
        num: (Patched, "p3.fault-fill.secs"),
        den: (Patched, "p3.mmap.secs"),
        unit: "s",
        target: Some(Target::AtMost(0.2)),
    },
    RatioDef {
        id: "P3 native",
        what: "rustc --version: time fault-mode HSM copy / native copy (both cold)",
        num: (Patched, "p3.fault.secs"),
        den: (Patched, "p3.native.secs"),
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "P4 time",
        what: "cargo build of a small project with the toolchain: time HSM copy (fault mode, cold) / native copy (cold)",
        num: (Patched, "p4.hsm.secs"),
        den: (Patched, "p4.native.secs"),
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 nosync",
        what: "the same with hsm-serve --no-sync: time HSM copy / native copy",
        num: (Patched, "p4.hsm-nosync.secs"),
        den: (Patched, "p4.native.secs"),
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 fill",
        what: "the same with hsm-serve --fill-size {fill}: time HSM copy / native copy",
        num: (Patched, "p4.hsm-fill.secs"),
        den: (Patched, "p4.native.secs"),
        unit: "s",
        target: Some(Target::AtMost(1.02)),
    },
    RatioDef {
        id: "P4 again",
        what: "the same build again from that HSM copy (page cache dropped, daemon running) / native copy (cold)",
        num: (Patched, "p4.hsm-again.secs"),
        den: (Patched, "p4.native.secs"),
        unit: "s",
        target: None,
    },
    RatioDef {
        id: "P4 disk",
        what: "after that build: du of the HSM copy / du of the native copy",
        num: (Patched, "p4.hsm.du_bytes"),
        den: (Patched, "p4.native.du_bytes"),
        unit: "bytes",
        target: None,
    },
    RatioDef {
        id: "P5 HSM",
        what: "warm read() throughput of the big libraries after population: HSM copy (daemon running) / native",
        num: (Patched, "p5.hsm.mbps"),
        den: (Patched, "p5.native.mbps"),
        unit: "MB/s",
        target: Some(Target::AtLeast(0.99)),
    },
    RatioDef {
        id: "P5 bindfs",
        what: "the same through bindfs (FUSE passthrough of the native copy) / native",
        num: (Patched, "p5.bindfs.mbps"),
        den: (Patched, "p5.native.mbps"),
        unit: "MB/s",
        target: None,
    },
];

/// One computed row.
pub struct Row {
    pub def: &'static RatioDef,
    /// `def.what` with `{fill}` filled in.
    pub what: String,
    /// Per-run ratios (paired by run index).
    pub ratio: Option<Spread>,
    pub num: Option<Spread>,
    pub den: Option<Spread>,
}

impl Row {
    pub fn met(&self) -> Option<bool> {
        Some(self.def.target?.met(self.ratio?.median))
    }
}

fn values(s: &Samples, metric: &str) -> BTreeMap<usize, f64> {
    s.get(metric).cloned().unwrap_or_default()
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

/// Compute every ratio from the samples of the two kernels (and of the base
/// kernel's second boot, if there is one: the `ctl` rows, left out without).
pub fn compute(base: &Samples, patched: &Samples, control: Option<&Samples>) -> Vec<Row> {
    let pick = |k: Kernel| match k {
        Base => Some(base),
        Patched => Some(patched),
        Control => control,
    };
    let fill = patched
        .get(FILL_SIZE)
        .and_then(|m| m.values().next())
        .map_or_else(|| "SIZE".to_string(), |&b| size_text(b as u64));
    RATIOS
        .iter()
        .filter_map(|def| Some((def, pick(def.num.0)?, pick(def.den.0)?)))
        .map(|(def, num, den)| {
            let n = values(num, def.num.1);
            let d = values(den, def.den.1);
            let pairs: Vec<f64> = n
                .iter()
                .filter_map(|(run, a)| d.get(run).filter(|b| **b > 0.0).map(|b| a / b))
                .collect();
            Row {
                def,
                what: def.what.replace("{fill}", &fill),
                ratio: spread(&pairs),
                num: spread(&n.values().copied().collect::<Vec<_>>()),
                den: spread(&d.values().copied().collect::<Vec<_>>()),
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

fn abs(s: &Option<Spread>, unit: &str) -> String {
    match s {
        Some(s) => format!("{} {unit}", num(s.median)),
        None => "-".into(),
    }
}

/// The table, as plain text (`markdown`: as a Markdown table).
pub fn table(rows: &[Row], markdown: bool) -> String {
    let head = [
        "ratio",
        "runs",
        "median",
        "min",
        "max",
        "target",
        "met",
        "numerator",
        "denominator",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let (n, med, min, max) = match r.ratio {
            Some(s) => (s.n.to_string(), num(s.median), num(s.min), num(s.max)),
            None => ("0".into(), "-".into(), "-".into(), "-".into()),
        };
        cells.push(vec![
            r.def.id.to_string(),
            n,
            med,
            min,
            max,
            r.def.target.map(Target::text).unwrap_or_else(|| "-".into()),
            match r.met() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
            abs(&r.num, r.def.unit),
            abs(&r.den, r.def.unit),
        ]);
    }
    let mut out = String::new();
    if markdown {
        for (i, c) in cells.iter().enumerate() {
            let _ = writeln!(out, "| {} |", c.join(" | "));
            if i == 0 {
                let _ = writeln!(out, "|{}", "---|".repeat(c.len()));
            }
        }
    } else {
        let w: Vec<usize> = (0..head.len())
            .map(|i| cells.iter().map(|c| c[i].len()).max().unwrap_or(0))
            .collect();
        for c in &cells {
            let line: Vec<String> = c
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s:<w$}", w = w[i]))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
    out.push('\n');
    for r in rows {
        let _ = writeln!(out, "{}: {}", r.def.id, r.what);
    }
    out
}

/// CSV for the plot script: id,runs,median,min,max,target_op,target.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("id,runs,median,min,max,target_op,target\n");
    for r in rows {
        let Some(s) = r.ratio else { continue };
        let (op, t) = match r.def.target {
            Some(Target::AtMost(t)) => ("<=", t.to_string()),
            Some(Target::AtLeast(t)) => (">=", t.to_string()),
            None => ("", String::new()),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{op},{t}",
            r.def.id, s.n, s.median, s.min, s.max
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

    #[test]
    fn control_rows_only_with_a_control_log() {
        let base = parse_samples("FPCB base p1.warm.ns_per_page 0 200\n");
        let ctl = parse_samples("FPCB base2 p1.warm.ns_per_page 0 210\n");
        let without = compute(&base, &Samples::new(), None);
        assert!(without.iter().all(|r| !r.def.id.ends_with(" ctl")));
        let with = compute(&base, &Samples::new(), Some(&ctl));
        let r = with.iter().find(|r| r.def.id == "P1 warm ctl").unwrap();
        assert!((r.ratio.unwrap().median - 1.05).abs() < 1e-9);
        assert_eq!(r.met(), None);
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
    fn parse_and_pair() {
        let base = parse_samples(
            "noise\n\rFPCB base p1.cold.ns_per_page 0 100\nFPCB base p1.cold.ns_per_page 1 200\r\n\
             FPCB base p1.warm.ns_per_page 0 nan\nFPCB base bad 0\n",
        );
        assert_eq!(base["p1.cold.ns_per_page"].len(), 2);
        assert!(!base.contains_key("p1.warm.ns_per_page"), "NaN kept");
        assert!(!base.contains_key("bad"));
        let patched = parse_samples(
            "[  12.3] FPCB patched p1.cold.ns_per_page 0 101\n\
             FPCB patched p1.cold.ns_per_page 1 198\n\
             FPCB patched p1.cold.ns_per_page 2 500\n\
             FPCB patched p2.touched_bytes 0 1000\n\
             FPCB patched p2.fault.fetched_bytes 0 1100\n\
             FPCB patched p5.native.mbps 0 0\nFPCB patched p5.hsm.mbps 0 10\n",
        );
        let rows = compute(&base, &patched, None);
        let cold = rows.iter().find(|r| r.def.id == "P1 cold").unwrap();
        let s = cold.ratio.unwrap();
        assert_eq!(s.n, 2, "run 2 has no base partner");
        assert!((s.min - 0.99).abs() < 1e-9 && (s.max - 1.01).abs() < 1e-9);
        assert_eq!(cold.met(), Some(true));
        let p2 = rows.iter().find(|r| r.def.id == "P2 fault").unwrap();
        assert!((p2.ratio.unwrap().median - 1.1).abs() < 1e-9);
        let p5 = rows.iter().find(|r| r.def.id == "P5 HSM").unwrap();
        assert!(p5.ratio.is_none(), "a zero denominator is no ratio");
        assert_eq!(p5.met(), None);
        let t = table(&rows, false);
        assert!(t.contains("P1 cold") && t.contains("<= 1.005"));
        let m = table(&rows, true);
        assert!(m.starts_with("| ratio | runs |"));
        let c = csv(&rows);
        assert_eq!(c.lines().count(), 3, "{c}");
        assert!(c.contains("P2 fault,1,"));
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
        let row = |id: &str| rows.iter().find(|r| r.def.id == id).unwrap();
        assert!((row("P2 fill").ratio.unwrap().median - 3.0).abs() < 1e-9);
        assert_eq!(row("P2 fill").met(), None);
        assert!((row("P3 fill").ratio.unwrap().median - 0.1).abs() < 1e-9);
        assert_eq!(row("P3 fill").met(), Some(true));
        assert!((row("P4 fill").ratio.unwrap().median - 1.01).abs() < 1e-9);
        assert_eq!(row("P4 fill").met(), Some(true));
        assert!(row("P3 fill").what.contains("--fill-size 1M"));
        let t = table(&rows, false);
        assert!(
            t.contains("P4 fill: the same with hsm-serve --fill-size 1M:"),
            "{t}"
        );
        assert!(!t.contains("{fill}"));
        // Without the variant: no ratio, a placeholder in the description.
        let rows = compute(&Samples::new(), &Samples::new(), None);
        let p3 = rows.iter().find(|r| r.def.id == "P3 fill").unwrap();
        assert!(p3.ratio.is_none() && p3.what.contains("--fill-size SIZE"));
        assert_eq!(size_text(64 << 10), "64K");
        assert_eq!(size_text(5000), "5000 bytes");
    }

    #[test]
    fn targets() {
        assert!(Target::AtMost(1.0).met(1.0) && !Target::AtMost(1.0).met(1.01));
        assert!(Target::AtLeast(0.99).met(1.0) && !Target::AtLeast(0.99).met(0.9));
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
