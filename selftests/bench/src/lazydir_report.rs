//! The lazy-directory part of `fpc-bench report` (samples of `fpc-bench
//! guest --parts lazydir`, see [`crate::lazydir`]): per measure and copy,
//! the median time, its ratio to the native copy's, and the medians of
//! hsm-serve's counters (file events, directory events, directories
//! populated, entries made, bytes fetched).

use crate::lazydir::{COPIES, COUNTERS, MEASURES};
use crate::report::{median, num, write_cells, Samples};
use std::fmt::Write as _;

fn runs(s: &Samples, metric: &str) -> usize {
    s.get(metric).map_or(0, |r| r.len())
}

/// The table (Markdown or plain), or None without lazydir samples.
pub fn table(s: &Samples, markdown: bool) -> Option<String> {
    let entries = median(s, "d.entries")?;
    let depth = median(s, "d.depth").unwrap_or(0.0);
    let mut out =
        String::from("\n== Lazy directories: the whole toolchain, native vs eager vs lazy\n\n");
    let item = if markdown { "- " } else { "" };
    let _ = writeln!(
        out,
        "{item}{entries:.0} entries; the deepest file is {depth:.0} directories down (root included)"
    );
    out.push('\n');
    let head = [
        "measure",
        "copy",
        "runs",
        "time",
        "/ native",
        "file events",
        "dir events",
        "dirs populated",
        "entries made",
        "bytes fetched",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for (m, mtext) in MEASURES {
        let native = median(s, &format!("d.native.{m}.secs"));
        for (c, ctext) in COPIES {
            let key = |k: &str| format!("d.{c}.{m}.{k}");
            let Some(secs) = median(s, &key("secs")) else {
                continue;
            };
            let mut row = vec![
                mtext.to_string(),
                ctext.to_string(),
                runs(s, &key("secs")).to_string(),
                format!("{} s", num(secs)),
                // The native copy is made from the host (tar over 9p):
                // no measure to compare the clones' making with.
                native
                    .filter(|n| *n > 0.0 && *m != "clone")
                    .map_or("-".into(), |n| num(secs / n)),
            ];
            for k in COUNTERS {
                row.push(median(s, &key(k)).map_or("-".into(), |v| format!("{v:.0}")));
            }
            cells.push(row);
        }
    }
    write_cells(&mut out, &cells, markdown);
    out.push('\n');
    let _ = writeln!(
        out,
        "{item}medians of the runs, each with the page cache, dentries and inodes dropped first; \
         the counters are hsm-serve's over the measure (file events: pre-content events of \
         files); the clones are served by hsm-serve --mode fault from the native copy on the \
         same ext4, whose events of their own (reading the source) count in neither column; \
         make the copy: hsm-populate's time, caches dropped first (native: extracted from the \
         host's tar over 9p, once: not comparable); find: the first run only."
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse_samples;

    #[test]
    fn lazydir_table() {
        let s = parse_samples(
            "FPCB p d.entries 0 52000\nFPCB p d.depth 0 14\n\
             FPCB p d.native.stat.secs 0 0.002\nFPCB p d.native.stat.secs 1 0.004\n\
             FPCB p d.lazy.stat.secs 0 0.3\nFPCB p d.lazy.stat.secs 1 0.5\n\
             FPCB p d.lazy.stat.dir_events 0 14\nFPCB p d.lazy.stat.dir_events 1 14\n\
             FPCB p d.lazy.stat.dirs_populated 0 14\n\
             FPCB p d.eager.clone.secs 0 60\nFPCB p d.lazy.clone.secs 0 0.05\n",
        );
        let t = table(&s, false).unwrap();
        assert!(t.contains("52000 entries"), "{t}");
        let stat = t
            .lines()
            .find(|l| l.contains("stat the deepest file") && l.contains("lazy clone"))
            .unwrap();
        // 0.4 s / 0.003 s.
        assert!(stat.contains("133"), "{stat}");
        assert!(stat.contains("14"), "{stat}");
        let clone = t
            .lines()
            .find(|l| l.contains("make the copy") && l.contains("eager"))
            .unwrap();
        assert!(clone.contains("60"), "{clone}");
        assert!(table(&Samples::new(), false).is_none());
    }
}
