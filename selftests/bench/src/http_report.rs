//! The HTTP part of `fpc-bench report` (samples of `fpc-bench guest --parts
//! http,http-p4`, see [`crate::remote`]): per link profile, the measured
//! link and, per mode, the time to `rustc --version` output, bytes and
//! requests nginx served, events, the round trips the program waited for
//! one after the other, and the physical bound of the mode,
//! `bytes / measured bandwidth + dependent round trips x measured round
//! trip`; then the targets of issue 15 item 7, met or not.  The ratios
//! themselves (paired run by run) are rows `H1 ...`, `H10 ...`, `H50 ...`
//! and `HP4 ...` of the main table.

use crate::http::LINKS;
use crate::report::{median, num, write_cells, Samples};
use std::fmt::Write as _;

/// The modes, in the table's order, with their descriptions.
pub const MODES: &[(&str, &str)] = &[
    ("native", "native copy (local, cold): rustc alone"),
    ("fault", "fault mode (4K fills)"),
    ("prefetch", "fault mode + prefetch of the recorded profile"),
    ("prefetch4m", "the same, prefetch in 4 MiB pieces"),
    ("fill64k", "fault mode, --fill-size 64K"),
    ("fill1m", "fault mode, --fill-size 1M"),
    ("mmap", "mmap mode"),
    ("full", "full copy (download all, then run)"),
];

/// One row of the table.
#[derive(Clone, Debug)]
pub struct ModeRow {
    pub link: &'static str,
    pub link_text: String,
    pub rtt_nominal: f64,
    pub rate_nominal: f64,
    pub bw: f64,
    pub rtt: f64,
    pub mode: &'static str,
    pub runs: usize,
    pub secs: f64,
    pub bytes: f64,
    pub requests: f64,
    pub events: f64,
    pub dep_rtts: f64,
}

impl ModeRow {
    /// bytes / bandwidth + dependent round trips x round trip.
    pub fn bound(&self) -> f64 {
        self.bytes / self.bw + self.dep_rtts * self.rtt
    }
}

/// The rows present in the samples.
pub fn rows(s: &Samples) -> Vec<ModeRow> {
    let mut out = Vec::new();
    for l in LINKS {
        let id = l.id;
        let (Some(bw), Some(rtt)) = (
            median(s, &format!("h.{id}.bw_bytes_per_sec")),
            median(s, &format!("h.{id}.rtt_secs")),
        ) else {
            continue;
        };
        for (mode, _) in MODES {
            let m = |k: &str| median(s, &format!("h.{id}.{mode}.{k}"));
            let Some(secs) = m("secs") else { continue };
            out.push(ModeRow {
                link: id,
                link_text: l.text(),
                rtt_nominal: l.rtt.as_secs_f64(),
                rate_nominal: l.rate as f64 / 8.0,
                bw,
                rtt,
                mode,
                runs: s.get(&format!("h.{id}.{mode}.secs")).map_or(0, |r| r.len()),
                secs,
                bytes: m("bytes").unwrap_or(0.0),
                requests: m("requests").unwrap_or(0.0),
                events: m("events").unwrap_or(0.0),
                dep_rtts: m("dep_rtts").unwrap_or(0.0),
            });
        }
    }
    out
}

fn mb(b: f64) -> String {
    format!("{:.1} MB", b / 1e6)
}

/// The targets: (what, value, target, met).
pub fn targets(s: &Samples) -> Vec<(String, Option<f64>, f64)> {
    let r = |a: &str, b: &str| Some(median(s, a)? / median(s, b)?);
    vec![
        (
            "fault mode / mmap mode, time to rustc --version output at 10 ms / 200 Mbit/s".into(),
            r("h.10ms.fault.secs", "h.10ms.mmap.secs"),
            0.2,
        ),
        (
            "fault mode + prefetch / mmap mode, the same".into(),
            r("h.10ms.prefetch.secs", "h.10ms.mmap.secs"),
            0.2,
        ),
        (
            "cargo build from the HTTP-backed lazy toolchain once filled / native (P4)".into(),
            r("h.p4.filled.secs", "h.p4.native.secs"),
            1.1,
        ),
    ]
}

/// The table (Markdown or plain), or None without HTTP samples.
pub fn table(s: &Samples, markdown: bool) -> Option<String> {
    let rows = rows(s);
    let p4 = median(s, "h.p4.native.secs").is_some();
    if rows.is_empty() && !p4 {
        return None;
    }
    let mut out = String::from("\n== HTTP source: nginx in the guest over netem on lo\n\n");
    let head = [
        "link",
        "mode",
        "runs",
        "time",
        "/ mmap",
        "bytes",
        "requests",
        "events",
        "dep. RTTs",
        "bound",
        "time / bound",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    let mut links_seen = Vec::new();
    for r in &rows {
        if !links_seen.contains(&r.link) {
            links_seen.push(r.link);
            let _ = writeln!(
                out,
                "{}{}: measured {:.1} Mbit/s ({:.0} % of nominal), request round trip {:.2} ms \
                 (nominal RTT {:.0} ms)",
                if markdown { "- " } else { "" },
                r.link_text,
                r.bw * 8.0 / 1e6,
                100.0 * r.bw / r.rate_nominal,
                r.rtt * 1e3,
                r.rtt_nominal * 1e3
            );
        }
        let mmap = rows
            .iter()
            .find(|m| m.link == r.link && m.mode == "mmap")
            .map(|m| m.secs);
        cells.push(vec![
            r.link.to_string(),
            MODES
                .iter()
                .find(|m| m.0 == r.mode)
                .map_or(r.mode, |m| m.1)
                .to_string(),
            r.runs.to_string(),
            format!("{} s", num(r.secs)),
            mmap.map_or("-".into(), |m| num(r.secs / m)),
            mb(r.bytes),
            format!("{:.0}", r.requests),
            format!("{:.0}", r.events),
            format!("{:.0}", r.dep_rtts),
            format!("{} s", num(r.bound())),
            if r.bound() > 0.0 {
                num(r.secs / r.bound())
            } else {
                "-".into()
            },
        ]);
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("(no link measured)\n");
    } else {
        write_cells(&mut out, &cells, markdown);
    }
    let item = if markdown { "- " } else { "" };
    out.push('\n');
    let _ = writeln!(
        out,
        "{item}time: medians of the runs, from the start of rustc (full copy: from the start of the \
         download); bytes and requests: nginx's access log; bound = bytes / measured bandwidth + \
         dependent round trips x measured request round trip, the dependent round trips being \
         every request for one faulting thread (fault, fill, mmap), the demand requests plus the \
         prefetch's pieces / its 4 threads (prefetch), the requests / 4 connections (full copy)."
    );
    if p4 {
        let m = |k: &str| median(s, k).map_or("-".into(), |v| format!("{} s", num(v)));
        let _ = writeln!(
            out,
            "{item}P4 over HTTP (10 ms / 200 Mbit/s): native cold build {}, lazy copy cold {} \
             ({} fetched), filled {} ({} events)",
            m("h.p4.native.secs"),
            m("h.p4.cold.secs"),
            median(s, "h.p4.cold.bytes").map_or("-".into(), mb),
            m("h.p4.filled.secs"),
            median(s, "h.p4.filled.events").map_or("-".into(), |v| format!("{v:.0}"))
        );
    }
    out.push('\n');
    for (what, v, t) in targets(s) {
        let verdict = match v {
            None => "not measured".to_string(),
            Some(v) if v <= t => format!("{}: met", num(v)),
            Some(v) => format!("{}: NOT met", num(v)),
        };
        let _ = writeln!(out, "{item}target {what} <= {t}: {verdict}");
    }
    Some(out)
}

/// CSV for `bench-plot.py --http`.
pub fn csv(s: &Samples) -> String {
    let mut out = String::from(
        "link,rtt_ms,rate_mbit,measured_mbit,measured_rtt_ms,mode,runs,secs,bytes,requests,events,dep_rtts,bound_secs\n",
    );
    for r in rows(s) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.link,
            r.rtt_nominal * 1e3,
            r.rate_nominal * 8.0 / 1e6,
            r.bw * 8.0 / 1e6,
            r.rtt * 1e3,
            r.mode,
            r.runs,
            r.secs,
            r.bytes,
            r.requests,
            r.events,
            r.dep_rtts,
            r.bound()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse_samples;

    #[test]
    fn bound_table_and_targets() {
        let s = parse_samples(
            "FPCB p h.10ms.bw_bytes_per_sec 0 20000000\nFPCB p h.10ms.rtt_secs 0 0.012\n\
             FPCB p h.10ms.fault.secs 0 5\nFPCB p h.10ms.fault.bytes 0 30000000\n\
             FPCB p h.10ms.fault.requests 0 300\nFPCB p h.10ms.fault.dep_rtts 0 300\n\
             FPCB p h.10ms.mmap.secs 0 20\nFPCB p h.10ms.mmap.bytes 0 300000000\n\
             FPCB p h.10ms.mmap.dep_rtts 0 40\n\
             FPCB p h.10ms.prefetch.secs 0 3\n\
             FPCB p h.p4.native.secs 0 20\nFPCB p h.p4.filled.secs 0 21\n",
        );
        let r = rows(&s);
        assert_eq!(r.len(), 3);
        let f = r.iter().find(|r| r.mode == "fault").unwrap();
        // 30 MB at 20 MB/s + 300 x 12 ms.
        assert!((f.bound() - (1.5 + 3.6)).abs() < 1e-9);
        let t = targets(&s);
        assert_eq!(t[0].1, Some(0.25));
        assert_eq!(t[1].1, Some(0.15));
        assert_eq!(t[2].1, Some(1.05));
        let text = table(&s, false).unwrap();
        assert!(text.contains("<= 0.2: 0.250: NOT met"), "{text}");
        assert!(text.contains("<= 0.2: 0.150: met"), "{text}");
        assert!(text.contains("<= 1.1: 1.050: met"), "{text}");
        assert!(
            text.contains("measured 160.0 Mbit/s (80 % of nominal)"),
            "{text}"
        );
        let c = csv(&s);
        assert_eq!(c.lines().count(), 4);
        assert!(c
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("10ms,10,200,160,12,fault,1,5,"));
        assert!(table(&Samples::new(), false).is_none());
    }
}
