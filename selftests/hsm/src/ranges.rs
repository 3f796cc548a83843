//! A set of half-open byte ranges, and its compact text form.

use anyhow::{bail, Context, Result};

/// Sorted, disjoint, non-adjacent half-open ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    r: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.r
    }

    /// Bytes covered.
    pub fn total(&self) -> u64 {
        self.r.iter().map(|(s, e)| e - s).sum()
    }

    /// Add `[start, end)`, merging with overlapping and adjacent ranges.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // First range that ends at or after s (may touch or overlap).
        let i = self.r.partition_point(|&(_, re)| re < s);
        let mut j = i;
        while j < self.r.len() && self.r[j].0 <= e {
            s = s.min(self.r[j].0);
            e = e.max(self.r[j].1);
            j += 1;
        }
        self.r.splice(i..j, [(s, e)]);
    }

    /// Take `[start, end)` out of the set; returns the bytes that were in it.
    pub fn remove(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let mut removed = 0;
        let mut out = Vec::with_capacity(self.r.len() + 1);
        for &(s, e) in &self.r {
            if e <= start || s >= end {
                out.push((s, e));
                continue;
            }
            removed += e.min(end) - s.max(start);
            if s < start {
                out.push((s, start));
            }
            if e > end {
                out.push((end, e));
            }
        }
        self.r = out;
        removed
    }

    /// The parts of `[start, end)` not in the set, in order.
    pub fn missing(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = start;
        let i = self.r.partition_point(|&(_, re)| re <= start);
        for &(s, e) in &self.r[i..] {
            if pos >= end || s >= end {
                break;
            }
            if s > pos {
                out.push((pos, s));
            }
            pos = pos.max(e);
        }
        if pos < end {
            out.push((pos, end));
        }
        out
    }

    /// Whether `[start, end)` is wholly in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.missing(start, end).is_empty()
    }

    /// The smallest gap between two consecutive ranges, if there are two.
    pub fn smallest_gap(&self) -> Option<(u64, u64)> {
        self.r
            .windows(2)
            .map(|w| (w[0].1, w[1].0))
            .min_by_key(|&(s, e)| (e - s, s))
    }

    /// Compact text form: comma-separated `START-END` pairs in lower-case
    /// hex, half-open byte offsets, sorted (e.g. `0-20000,a0000-a3000`); the
    /// empty set is the empty string.
    pub fn encode(&self) -> String {
        self.r
            .iter()
            .map(|(s, e)| format!("{s:x}-{e:x}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parse [`encode`](Self::encode)'s form.  Rejects anything malformed,
    /// empty, unsorted or overlapping ranges.
    pub fn decode(text: &str) -> Result<Self> {
        let text = text.trim();
        let mut set = RangeSet::new();
        if text.is_empty() {
            return Ok(set);
        }
        let mut last_end: Option<u64> = None;
        for part in text.split(',') {
            let (s, e) = part
                .split_once('-')
                .with_context(|| format!("range {part:?} is not START-END"))?;
            let s = u64::from_str_radix(s, 16).with_context(|| format!("range {part:?}"))?;
            let e = u64::from_str_radix(e, 16).with_context(|| format!("range {part:?}"))?;
            if s >= e {
                bail!("range {part:?} is empty or reversed");
            }
            if last_end.is_some_and(|le| s < le) {
                bail!("range {part:?} overlaps or precedes the previous one");
            }
            last_end = Some(e);
            set.insert(s, e);
        }
        Ok(set)
    }
}

/// `[off, off + count)` widened to whole pages of `page` bytes and clamped to
/// `limit`; `None` when nothing of it lies below `limit`.
pub fn page_span(off: u64, count: u64, page: u64, limit: u64) -> Option<(u64, u64)> {
    let start = off - off % page;
    let end = off
        .saturating_add(count)
        .div_ceil(page)
        .saturating_mul(page);
    let end = end.min(limit);
    (start < end).then_some((start, end))
}

/// What `hsm-serve --fill-size FILL` fills for an event on
/// `[off, off + count)`: the range widened to `fill`-aligned boundaries
/// (down for the start, up for the end) and clamped to `limit`, or `None`
/// when nothing of the range itself lies below `limit` (an event past the
/// end fills nothing, even if its chunk starts inside the file).  `fill` is
/// a power of two multiple of `page`.
pub fn fill_span(off: u64, count: u64, page: u64, fill: u64, limit: u64) -> Option<(u64, u64)> {
    page_span(off, count, page, limit)?;
    page_span(off, count, fill, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Spans = &'static [(u64, u64)];

    #[test]
    fn remove_table() {
        // (set, removed range, set after, bytes removed)
        let cases: &[(Spans, (u64, u64), Spans, u64)] = &[
            (&[(0, 100)], (0, 100), &[], 100),
            (&[(0, 100)], (20, 30), &[(0, 20), (30, 100)], 10),
            (
                &[(0, 10), (20, 30), (40, 50)],
                (5, 45),
                &[(0, 5), (45, 50)],
                20,
            ),
            (&[(10, 20)], (0, 10), &[(10, 20)], 0),
            (&[(10, 20)], (20, 30), &[(10, 20)], 0),
            (&[(10, 20)], (15, 15), &[(10, 20)], 0),
            (&[(10, 20)], (0, 1000), &[], 10),
        ];
        for &(before, (a, b), after, n) in cases {
            let mut s = set(before);
            assert_eq!(s.remove(a, b), n, "{before:?} - [{a}, {b})");
            assert_eq!(s, set(after), "{before:?} - [{a}, {b})");
        }
    }

    fn set(v: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::new();
        for &(a, b) in v {
            s.insert(a, b);
        }
        s
    }

    #[test]
    fn insert_merges() {
        let cases: &[(Spans, Spans)] = &[
            (&[(0, 10), (20, 30)], &[(0, 10), (20, 30)]),
            (&[(0, 10), (10, 20)], &[(0, 20)]),
            (&[(20, 30), (0, 10), (5, 25)], &[(0, 30)]),
            (&[(0, 10), (20, 30), (40, 50), (9, 41)], &[(0, 50)]),
            (&[(5, 5)], &[]),
            (
                &[(40, 50), (0, 10), (20, 30)],
                &[(0, 10), (20, 30), (40, 50)],
            ),
            (&[(0, 100), (10, 20)], &[(0, 100)]),
        ];
        for (ins, want) in cases {
            assert_eq!(set(ins).ranges(), *want, "{ins:?}");
        }
    }

    #[test]
    fn missing_and_covers() {
        let s = set(&[(10, 20), (30, 40)]);
        let cases: &[((u64, u64), Spans)] = &[
            ((0, 50), &[(0, 10), (20, 30), (40, 50)]),
            ((10, 20), &[]),
            ((12, 35), &[(20, 30)]),
            ((20, 30), &[(20, 30)]),
            ((0, 5), &[(0, 5)]),
            ((45, 50), &[(45, 50)]),
            ((15, 15), &[]),
        ];
        for &((a, b), want) in cases {
            assert_eq!(s.missing(a, b), want, "{a}..{b}");
            assert_eq!(s.covers(a, b), want.is_empty(), "{a}..{b}");
        }
        assert_eq!(s.total(), 20);
        assert_eq!(s.smallest_gap(), Some((20, 30)));
        assert_eq!(set(&[(0, 4)]).smallest_gap(), None);
    }

    #[test]
    fn encode_round_trip_and_rejects() {
        let s = set(&[(0, 0x20000), (0xa0000, 0xa3000)]);
        assert_eq!(s.encode(), "0-20000,a0000-a3000");
        assert_eq!(RangeSet::decode(&s.encode()).unwrap(), s);
        assert_eq!(RangeSet::decode("").unwrap(), RangeSet::new());
        assert_eq!(RangeSet::decode(" 0-1000\n").unwrap(), set(&[(0, 0x1000)]));
        for bad in [
            "x",
            "1-",
            "-1",
            "5-5",
            "9-3",
            "0-10,5-20",
            "10-20,0-5",
            "g-10",
        ] {
            assert!(RangeSet::decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn page_spans() {
        let cases = [
            ((0, 1, 100_000), Some((0, 4096))),
            ((4095, 2, 100_000), Some((0, 8192))),
            ((8192, 4096, 100_000), Some((8192, 12288))),
            ((8192, 100_000, 10_000), Some((8192, 10_000))),
            ((12288, 10, 10_000), None),
            ((0, 0, 10_000), None),
            ((4096, u64::MAX, 10_000), Some((4096, 10_000))),
        ];
        for ((o, c, l), want) in cases {
            assert_eq!(page_span(o, c, 4096, l), want, "{o} {c} {l}");
        }
    }

    #[test]
    fn fill_size_spans() {
        // hsm-serve --fill-size 64K: a one-page event widened to its 64 KiB
        // chunk, clamped to the end of the file.
        const K64: u64 = 64 << 10;
        let size = 3 * K64 + 5 * 4096 + 123;
        let cases = [
            ((17 * 4096, 4096, size), Some((K64, 2 * K64))),
            ((0, 1, size), Some((0, K64))),
            ((K64 - 1, 2, size), Some((0, 2 * K64))),
            ((3 * K64 + 4096, 4096, size), Some((3 * K64, size))),
            ((size + 4096, 4096, size), None),
            ((size - 1, 4096, size), Some((3 * K64, size))),
            ((0, 0, size), None),
        ];
        for ((o, c, l), want) in cases {
            assert_eq!(fill_span(o, c, 4096, K64, l), want, "{o} {c} {l}");
        }
        // A one-page fill size is page_span.
        for (o, c) in [(0, 1), (4095, 2), (8192, 100_000), (size, 1)] {
            assert_eq!(
                fill_span(o, c, 4096, 4096, size),
                page_span(o, c, 4096, size),
                "{o} {c}"
            );
        }
    }
}
