//! `fpc-bench icount-report`: the instruction-count tables, on the host,
//! from the icount plugin's logs (`icount mark=N kernel=K user=U`, one line
//! per marker the guest executed, cumulative counters) and the guest output
//! of `fpc-bench icount` (`icount-scenario name=S variant=V first_mark=K
//! windows=R ...`) of the base and the patched kernel.
//!
//! Window w of a scenario is the marker pair (K + 2w, K + 2w + 1); its
//! kernel count is the difference of the two lines' `kernel=`.  Per
//! scenario and variant the table gives both kernels' minimum (the number:
//! interrupts and other tasks only add), their median, the ratios, and the
//! noise: how far the 10th percentile is above the minimum, the ratio of
//! the minimums computed on each half of the windows, and, given the logs
//! of a second boot of the kernels (`--base2`, `--patched2`), the same
//! ratio from the second boots: counts that are exact within a boot can
//! still move by a few instructions between boots (where only one kernel
//! was booted again, its second boot is paired with the other's first).
//! The row's spread is the larger of the halves' difference and the
//! difference between the boots' ratios; its verdict against its target is
//! "not resolvable" when the spread exceeds half the target's margin.
//!
//! The rows of the patched-only variant `hsm-filled` compare it with the
//! patched kernel's `key-on` (the same file on a filesystem without marks,
//! the static key on); `fault-event` has no reference (absolute).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The plugin's counters at each marker: index N-1 holds mark N.
#[derive(Debug, Default)]
pub struct Marks {
    pub kernel: Vec<u64>,
    pub user: Vec<u64>,
}

/// The `icount mark=` lines of a plugin log.  They must be numbered 1, 2,
/// ... without a gap.
pub fn parse_marks(text: &str) -> Result<Marks> {
    let mut m = Marks::default();
    for (ln, line) in text.lines().enumerate() {
        let Some(pos) = line.find("icount mark=") else {
            continue;
        };
        let kv = pairs(&line[pos + "icount ".len()..]);
        let get = |k: &str| -> Result<u64> {
            kv.get(k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("line {}: no number {k}= in {line:?}", ln + 1))
        };
        let (n, k, u) = (get("mark")?, get("kernel")?, get("user")?);
        if n != m.kernel.len() as u64 + 1 {
            bail!(
                "line {}: mark={n} after mark={} (a plugin log of one boot has them in order)",
                ln + 1,
                m.kernel.len()
            );
        }
        m.kernel.push(k);
        m.user.push(u);
    }
    Ok(m)
}

/// `key=value` pairs of a line; a value may be quoted ("...").
pub fn pairs(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(e) => (q[..e].to_string(), &q[e + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(char::is_whitespace) {
                Some(e) => (after[..e].to_string(), &after[e..]),
                None => (after.to_string(), ""),
            }
        };
        if !key.is_empty() && !key.contains(char::is_whitespace) {
            out.insert(key, val);
        }
        rest = next.trim_start();
    }
    out
}

/// One `icount-scenario` line.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub variant: String,
    pub first_mark: u64,
    pub windows: usize,
    pub extra: BTreeMap<String, String>,
}

/// What the guest printed.
#[derive(Debug, Default)]
pub struct Guest {
    pub scenarios: Vec<Scenario>,
    /// `icount-skip` and `icount-variant ... applicable=no` lines.
    pub notes: Vec<String>,
    pub kernel: Option<String>,
    /// From `icount-done marks=M`: None if the guest did not finish.
    pub done: Option<u64>,
}

pub fn parse_guest(text: &str) -> Result<Guest> {
    let mut g = Guest::default();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let find = |tag: &str| line.find(tag).map(|p| &line[p + tag.len()..]);
        if let Some(rest) = find("icount-scenario ") {
            let mut kv = pairs(rest);
            let mut take = |k: &str| {
                kv.remove(k)
                    .with_context(|| format!("line {}: no {k}= in {line:?}", ln + 1))
            };
            let name = take("name")?;
            let variant = take("variant")?;
            let first_mark = take("first_mark")?.parse().context("first_mark")?;
            let windows = take("windows")?.parse().context("windows")?;
            g.scenarios.push(Scenario {
                name,
                variant,
                first_mark,
                windows,
                extra: kv,
            });
        } else if let Some(rest) = find("icount-skip ") {
            let kv = pairs(rest);
            g.notes.push(format!(
                "{} ({}) skipped: {}",
                kv.get("name").map_or("?", String::as_str),
                kv.get("variant").map_or("?", String::as_str),
                kv.get("reason").map_or("?", String::as_str)
            ));
        } else if let Some(rest) = find("icount-variant ") {
            let kv = pairs(rest);
            if kv.get("applicable").map(String::as_str) == Some("no") {
                g.notes.push(format!(
                    "variant {} not applicable: {}{}",
                    kv.get("variant").map_or("?", String::as_str),
                    kv.get("reason").map_or("?", String::as_str),
                    kv.get("mark")
                        .map_or(String::new(), |m| format!("; measured with: {m}"))
                ));
            }
        } else if let Some(rest) = find("icount-info ") {
            if let Some(k) = pairs(rest).get("kernel") {
                g.kernel = Some(k.clone());
            }
        } else if let Some(rest) = find("icount-done ") {
            g.done = pairs(rest).get("marks").and_then(|v| v.parse().ok());
        }
    }
    Ok(g)
}

/// Kernel and user counts of each window of `s`.
pub fn windows(m: &Marks, s: &Scenario) -> Result<(Vec<u64>, Vec<u64>)> {
    let last = s.first_mark as usize + 2 * s.windows - 1;
    if s.first_mark == 0 || last > m.kernel.len() {
        bail!(
            "{} ({}): marks {}..={last}, the plugin log has {}",
            s.name,
            s.variant,
            s.first_mark,
            m.kernel.len()
        );
    }
    let (mut k, mut u) = (Vec::new(), Vec::new());
    for w in 0..s.windows {
        let a = s.first_mark as usize - 1 + 2 * w;
        let (dk, du) = (
            m.kernel[a + 1].checked_sub(m.kernel[a]),
            m.user[a + 1].checked_sub(m.user[a]),
        );
        let (Some(dk), Some(du)) = (dk, du) else {
            bail!(
                "{} ({}): counters go backwards at mark {}",
                s.name,
                s.variant,
                a + 1
            );
        };
        k.push(dk);
        u.push(du);
    }
    Ok((k, u))
}

/// One kernel's log pair, checked.
pub struct Run {
    pub label: String,
    pub marks: Marks,
    pub guest: Guest,
    /// Kernel count of the calibration window.
    pub calib_kernel: u64,
}

/// Read and check a plugin log and a guest output (the same file may hold
/// both).  The calibration window must hold exactly its expected user
/// instructions and, if the guest finished, the plugin must have seen as
/// many markers as the guest executed: otherwise something else executed
/// the marker and the windows would be misaligned.
pub fn load(label: &str, plugin: &Path, guest: &Path) -> Result<Run> {
    let read = |p: &Path| -> Result<String> {
        let b = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    };
    let marks = parse_marks(&read(plugin)?).with_context(|| format!("{}", plugin.display()))?;
    let g = parse_guest(&read(guest)?).with_context(|| format!("{}", guest.display()))?;
    if marks.kernel.is_empty() {
        bail!("{label}: no 'icount mark=' line in {}", plugin.display());
    }
    let Some(cal) = g.scenarios.iter().find(|s| s.name == "calibration") else {
        bail!("{label}: no calibration line in {}", guest.display());
    };
    let (k, u) = windows(&marks, cal).with_context(|| label.to_string())?;
    let want: u64 = cal
        .extra
        .get("expect_user")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if u.iter().any(|&x| x != want) {
        bail!(
            "{label}: the calibration window (marks {} and {}) counted {u:?} user instructions, \
             not {want}: the plugin's marks and the guest's do not line up (did another program \
             execute xchg %r15,%r15?)",
            cal.first_mark,
            cal.first_mark + 1
        );
    }
    match g.done {
        Some(n) if n != marks.kernel.len() as u64 => bail!(
            "{label}: the guest executed {n} markers, the plugin log {} has {}",
            plugin.display(),
            marks.kernel.len()
        ),
        Some(_) => {}
        None => eprintln!(
            "warning: {label}: the guest did not finish (no icount-done line in {})",
            guest.display()
        ),
    }
    Ok(Run {
        label: label.to_string(),
        calib_kernel: k[0],
        marks,
        guest: g,
    })
}

/// Order statistics of one scenario's kernel counts.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub min: u64,
    pub p10: u64,
    pub median: f64,
    /// Minimums of the first and the second half of the windows.
    pub min_h1: u64,
    pub min_h2: u64,
}

pub fn stats(v: &[u64]) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2] as f64
    } else {
        (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0
    };
    let h = n.div_ceil(2);
    let min_h1 = *v[..h].iter().min()?;
    let min_h2 = v[h..].iter().min().copied().unwrap_or(min_h1);
    Some(Stats {
        n,
        min: s[0],
        p10: s[(n - 1) / 10],
        median,
        min_h1,
        min_h2,
    })
}

/// One row: `test` (the patched kernel) against `reference` (the base, or
/// the patched kernel's key-on for hsm-filled; None: absolute).
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub variant: String,
    pub reference: Option<(String, Stats)>,
    pub test: Stats,
    pub target: Option<f64>,
    pub events: Option<String>,
    /// The ratio of the minimums from the second boots.
    pub boot2: Option<f64>,
}

impl Row {
    pub fn ratio_min(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .map(|(_, r)| self.test.min as f64 / r.min as f64)
    }
    pub fn ratio_median(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .map(|(_, r)| self.test.median / r.median)
    }
    /// The ratio of the minimums on each half of the windows.
    pub fn ratio_halves(&self) -> Option<(f64, f64)> {
        self.reference.as_ref().map(|(_, r)| {
            (
                self.test.min_h1 as f64 / r.min_h1 as f64,
                self.test.min_h2 as f64 / r.min_h2 as f64,
            )
        })
    }
    /// The difference of the halves' ratios, or of the two boots' ratios
    /// if larger.
    pub fn spread(&self) -> Option<f64> {
        let r = self.ratio_min()?;
        let boots = self.boot2.map_or(0.0, |b| (b - r).abs());
        self.ratio_halves().map(|(a, b)| (a - b).abs().max(boots))
    }
    pub fn verdict(&self) -> &'static str {
        match (self.target, self.ratio_min(), self.spread()) {
            (Some(t), Some(r), Some(s)) => {
                if s > (t - 1.0) / 2.0 {
                    "not resolvable"
                } else if r <= t {
                    "met"
                } else {
                    "MISSED"
                }
            }
            _ => "-",
        }
    }
}

/// Targets of patched/base: 1.005 with no mark anywhere, 1.01 with the
/// static key on.
pub fn target(variant: &str) -> Option<f64> {
    match variant {
        "none" => Some(1.005),
        "key-on" => Some(1.01),
        _ => None,
    }
}

/// (scenario, variant) -> statistics of one run.
type ByKey = BTreeMap<(String, String), Stats>;

fn by_key(r: &Run) -> Result<ByKey> {
    let mut m = BTreeMap::new();
    for s in &r.guest.scenarios {
        if s.name == "calibration" {
            continue;
        }
        let (k, _) = windows(&r.marks, s).with_context(|| r.label.clone())?;
        if let Some(st) = stats(&k) {
            m.insert((s.name.clone(), s.variant.clone()), st);
        }
    }
    Ok(m)
}

/// The reference of a row in one boot's statistics: the base kernel's
/// same scenario and variant, or for hsm-filled the patched kernel's
/// key-on (its cost against the same file without marks), for hsm-lazy
/// the patched hsm-filled (else key-on).
fn reference_of<'a>(
    b: &'a ByKey,
    p: &'a ByKey,
    name: &str,
    variant: &str,
) -> Option<(&'static str, &'a Stats)> {
    if variant == "hsm-lazy" {
        // hsm-filled's marks stay (its listener keeps its group): the
        // difference is the FAN_PRE_DIR_ACCESS mark and the key.
        if let Some(r) = p.get(&(name.to_string(), "hsm-filled".to_string())) {
            return Some(("patched hsm-filled", r));
        }
    }
    if variant == "hsm-filled" || variant == "hsm-lazy" {
        p.get(&(name.to_string(), "key-on".to_string()))
            .map(|r| ("patched key-on", r))
    } else {
        b.get(&(name.to_string(), variant.to_string()))
            .map(|r| ("base", r))
    }
}

/// The rows, in the patched guest's order.  `base2` and `patched2` are
/// second boots of the kernels (either may be missing).
pub fn compute(
    base: &Run,
    patched: &Run,
    base2: Option<&Run>,
    patched2: Option<&Run>,
) -> Result<(Vec<Row>, Vec<String>)> {
    let mut notes = Vec::new();
    let b = by_key(base)?;
    let p = by_key(patched)?;
    let b2 = base2.map(by_key).transpose()?;
    let p2 = patched2.map(by_key).transpose()?;
    let second = b2.is_some() || p2.is_some();
    let (b2, p2) = (b2.as_ref().unwrap_or(&b), p2.as_ref().unwrap_or(&p));
    let mut rows = Vec::new();
    for s in &patched.guest.scenarios {
        let key = (s.name.clone(), s.variant.clone());
        let Some(&test) = p.get(&key) else { continue };
        let reference = reference_of(&b, &p, &s.name, &s.variant).map(|(n, r)| (n.to_string(), *r));
        if reference.is_none() && s.variant != "hsm-filled" && s.variant != "hsm-lazy" {
            notes.push(format!(
                "{} ({}): not measured on the base kernel",
                s.name, s.variant
            ));
        }
        let mut boot2 = None;
        if second && reference.is_some() {
            match (p2.get(&key), reference_of(b2, p2, &s.name, &s.variant)) {
                (Some(t2), Some((_, r2))) => boot2 = Some(t2.min as f64 / r2.min as f64),
                _ => notes.push(format!(
                    "{} ({}): not measured in the second boots",
                    s.name, s.variant
                )),
            }
        }
        rows.push(Row {
            scenario: s.name.clone(),
            variant: s.variant.clone(),
            reference,
            test,
            target: target(&s.variant),
            events: s.extra.get("events").cloned(),
            boot2,
        });
    }
    for (name, variant) in b.keys() {
        if !p.contains_key(&(name.clone(), variant.clone())) {
            notes.push(format!(
                "{name} ({variant}): not measured on the patched kernel"
            ));
        }
    }
    Ok((rows, notes))
}

fn pct(x: u64, min: u64) -> String {
    if min == 0 {
        return "-".into();
    }
    format!("{:.2}%", (x as f64 / min as f64 - 1.0) * 100.0)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.4}"))
}

fn med(m: f64) -> String {
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

/// The Markdown table.
pub fn table(rows: &[Row]) -> String {
    let head = [
        "scenario",
        "variant",
        "reference",
        "ref min",
        "patched min",
        "ratio (min)",
        "ref median",
        "patched median",
        "ratio (median)",
        "p10 over min (ref / patched)",
        "ratio (min) by halves",
        "ratio (min), second boots",
        "spread",
        "target",
        "verdict",
        "windows",
    ];
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let (refname, rmin, rmed, rp10) = match &r.reference {
            Some((n, s)) => (
                n.clone(),
                s.min.to_string(),
                med(s.median),
                pct(s.p10, s.min),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let halves = r
            .ratio_halves()
            .map_or("-".into(), |(a, b)| format!("{a:.4} / {b:.4}"));
        let mut variant = r.variant.clone();
        if let Some(e) = &r.events {
            variant.push_str(&format!(" ({e} events)"));
        }
        let cells = [
            r.scenario.clone(),
            variant,
            refname,
            rmin,
            r.test.min.to_string(),
            ratio(r.ratio_min()),
            rmed,
            med(r.test.median),
            ratio(r.ratio_median()),
            format!("{} / {}", rp10, pct(r.test.p10, r.test.min)),
            halves,
            ratio(r.boot2),
            r.spread().map_or("-".into(), |s| format!("{s:.4}")),
            r.target.map_or("-".into(), |t| format!("<= {t}")),
            r.verdict().to_string(),
            r.test.n.to_string(),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The rows as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "scenario,variant,reference,ref_min,ref_p10,ref_median,patched_min,patched_p10,patched_median,\
         ratio_min,ratio_median,ratio_min_h1,ratio_min_h2,ratio_min_boot2,spread,target,verdict,windows,events\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for r in rows {
        let (rn, rmin, rp10, rmed) = match &r.reference {
            Some((n, s)) => (
                n.clone(),
                s.min.to_string(),
                s.p10.to_string(),
                s.median.to_string(),
            ),
            None => Default::default(),
        };
        let (h1, h2) = match r.ratio_halves() {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let _ = writeln!(
            out,
            "{},{},{rn},{rmin},{rp10},{rmed},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.scenario,
            r.variant,
            r.test.min,
            r.test.p10,
            r.test.median,
            opt(r.ratio_min()),
            opt(r.ratio_median()),
            opt(h1),
            opt(h2),
            opt(r.boot2),
            opt(r.spread()),
            r.target.map_or(String::new(), |t| t.to_string()),
            r.verdict(),
            r.test.n,
            r.events.clone().unwrap_or_default()
        );
    }
    out
}

/// The whole report: a header on the two runs, the table, the notes.
pub fn report(runs: &[&Run], rows: &[Row], notes: &[String]) -> String {
    let mut out = String::new();
    for r in runs {
        let _ = writeln!(
            out,
            "- {}: kernel {}, {} markers, calibration window: 1 user instruction (ok), {} kernel",
            r.label,
            r.guest.kernel.as_deref().unwrap_or("?"),
            r.marks.kernel.len(),
            r.calib_kernel
        );
    }
    let _ = writeln!(
        out,
        "- kernel instructions per operation; min over the windows (the number), median; \
         ratios patched / reference; spread = the larger of |ratio of the first half's mins - \
         the second's| and |ratio of the second boots - the first's|{}; \"not resolvable\" when \
         the spread exceeds half the target's margin\n",
        if runs.len() > 2 {
            ""
        } else {
            " (no second boot: the noise between boots is not in the spread)"
        }
    );
    out.push_str(&table(rows));
    let _ = writeln!(out);
    // The notes of the first boots (a second boot's are the same).
    for r in runs.iter().take(2) {
        for n in &r.guest.notes {
            let _ = writeln!(out, "- {}: {n}", r.label);
        }
    }
    for n in notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(windows: &[(u64, u64)]) -> String {
        // Cumulative counters: each window adds its own (k, u); 100 kernel
        // and 7 user instructions between windows.
        let (mut k, mut u) = (1000u64, 500u64);
        let mut out = String::new();
        let mut n = 0;
        for &(dk, du) in windows {
            n += 1;
            out.push_str(&format!("icount mark={n} kernel={k} user={u}\n"));
            k += dk;
            u += du;
            n += 1;
            out.push_str(&format!("icount mark={n} kernel={k} user={u}\n"));
            k += 100;
            u += 7;
        }
        out
    }

    #[test]
    fn pairs_with_quotes() {
        let kv = pairs("name=a variant=key-on reason=\"no /dev/pmem0 (x)\" n=3");
        assert_eq!(kv["name"], "a");
        assert_eq!(kv["reason"], "no /dev/pmem0 (x)");
        assert_eq!(kv["n"], "3");
    }

    #[test]
    fn windows_and_stats() {
        let text = log(&[(0, 1), (50, 10), (40, 10), (45, 10), (41, 10)]);
        let m = parse_marks(&text).unwrap();
        let g = parse_guest(
            "icount-scenario name=calibration variant=- first_mark=1 windows=1 expect_user=1\r\n\
             x icount-scenario name=read variant=none first_mark=3 windows=4 bytes=4096\n\
             icount-done marks=10\n",
        )
        .unwrap();
        assert_eq!(g.done, Some(10));
        let (k, u) = windows(&m, &g.scenarios[1]).unwrap();
        assert_eq!(k, vec![50, 40, 45, 41]);
        assert_eq!(u, vec![10; 4]);
        let s = stats(&k).unwrap();
        assert_eq!((s.min, s.min_h1, s.min_h2, s.median), (40, 40, 41, 43.0));
        let short = Scenario {
            windows: 5,
            ..g.scenarios[1].clone()
        };
        assert!(windows(&m, &short).is_err());
    }

    #[test]
    fn marks_must_be_in_order() {
        assert!(parse_marks("icount mark=2 kernel=1 user=1\n").is_err());
    }

    #[test]
    fn verdicts() {
        let st = |min, h1, h2| Stats {
            n: 10,
            min,
            p10: min,
            median: min as f64,
            min_h1: h1,
            min_h2: h2,
        };
        let row = |t: Stats| Row {
            scenario: "s".into(),
            variant: "none".into(),
            reference: Some(("base".into(), st(1000, 1000, 1000))),
            test: t,
            target: Some(1.005),
            events: None,
            boot2: None,
        };
        assert_eq!(row(st(1004, 1004, 1004)).verdict(), "met");
        assert_eq!(row(st(1010, 1010, 1010)).verdict(), "MISSED");
        assert_eq!(row(st(1004, 1004, 1010)).verdict(), "not resolvable");
        let mut r = row(st(1004, 1004, 1004));
        r.boot2 = Some(1.007);
        assert_eq!(r.verdict(), "not resolvable");
        r.boot2 = Some(1.003);
        assert_eq!(r.verdict(), "met");
    }
}
