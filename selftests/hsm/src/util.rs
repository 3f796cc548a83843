//! Argument parsers and a small RNG.

use anyhow::{bail, Context, Result};

/// A byte count: digits with an optional binary suffix K, M, G (or KiB, MiB,
/// GiB), e.g. `4096`, `64K`, `1MiB`.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &t[digits.len()..];
    let mul: u64 = match suffix {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => bail!("size {s:?}: unknown suffix {suffix:?} (use K, M or G)"),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("size {s:?} is not a number"))?;
    n.checked_mul(mul)
        .with_context(|| format!("size {s:?} is too large"))
}

/// Largest `hsm-serve --fill-size`.
pub const MAX_FILL: u64 = 64 << 20;

/// A fill granularity (`hsm-serve --fill-size`): a [`parse_size`] that is a
/// power of two between one page ([`crate::PAGE`], 4K) and [`MAX_FILL`]
/// (64M), so a whole number of pages.
pub fn parse_fill_size(s: &str) -> Result<u64> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(crate::PAGE..=MAX_FILL).contains(&n) || n % crate::PAGE != 0 {
        bail!(
            "fill size {s:?} ({n} bytes) must be a power of two multiple of the {} byte page \
             between 4K and 64M (e.g. 4K, 64K, 1M)",
            crate::PAGE
        );
    }
    Ok(n)
}

/// A page list: comma-separated page indices and inclusive ranges `A-B`,
/// e.g. `0-9,100,200-299`.  Sorted and deduplicated.
pub fn parse_pages(s: &str) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| -> Result<u64> {
            x.trim()
                .parse()
                .with_context(|| format!("page list: {part:?} is not a page number or A-B"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    bail!("page list: range {part:?} is reversed");
                }
                if b - a > 1 << 28 {
                    bail!("page list: range {part:?} is too long");
                }
                v.extend(a..=b);
            }
            None => v.push(num(part)?),
        }
    }
    if v.is_empty() {
        bail!("page list {s:?} is empty");
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// SplitMix64 as a generator: deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::pattern::splitmix64(self.0.wrapping_sub(0x9e37_79b9_7f4a_7c15))
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// `k` distinct values of `0..n`, sorted.
    pub fn sample(&mut self, n: u64, k: u64) -> Vec<u64> {
        let k = k.min(n);
        let mut set = std::collections::BTreeSet::new();
        while (set.len() as u64) < k {
            set.insert(self.below(n));
        }
        set.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("4096", 4096),
            ("64K", 65536),
            ("1M", 1 << 20),
            ("2MiB", 2 << 20),
            ("1G", 1 << 30),
            ("0", 0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
        for bad in ["", "K", "12Q", "-1", "1.5M", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fill_sizes() {
        let ok = [
            ("4K", 4096),
            ("4096", 4096),
            ("64K", 65536),
            ("1M", 1 << 20),
            ("64M", 64 << 20),
        ];
        for (s, want) in ok {
            assert_eq!(parse_fill_size(s).unwrap(), want, "{s}");
        }
        for bad in [
            "0", "2K", "2048", "12K", "96K", "128M", "1G", "", "4Q", "-4K",
        ] {
            assert!(parse_fill_size(bad).is_err(), "{bad:?} accepted");
        }
        let msg = format!("{:#}", parse_fill_size("12K").unwrap_err());
        assert!(msg.contains("power of two") && msg.contains("64M"), "{msg}");
    }

    #[test]
    fn pages() {
        assert_eq!(parse_pages("0-3,2,10").unwrap(), vec![0, 1, 2, 3, 10]);
        assert_eq!(parse_pages("7").unwrap(), vec![7]);
        for bad in ["", "a", "3-1", "1-", ","] {
            assert!(parse_pages(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rng() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        assert_eq!(a.next_u64(), b.next_u64());
        let s = a.sample(100, 10);
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]) && s[9] < 100);
        assert_eq!(a.sample(5, 10), vec![0, 1, 2, 3, 4]);
        let mut v: Vec<u32> = (0..50).collect();
        a.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
