//! The page-pattern content of `hsm-validate` files.
//!
//! The file is a sequence of little-endian 64-bit words; word `k` (at byte
//! offset `8 * k`, i.e. word `k % 512` of page `k / 512`) is
//! `splitmix64(k ^ SALT)`.  Every page's content is thus derived from its
//! index: a page written at the wrong offset, a zero (unfilled) page or a
//! stale page all differ from what is expected, byte by byte.

const SALT: u64 = 0x4853_4d2d_7061_6765; // "HSM-page"

/// The SplitMix64 finaliser: a bijection on u64 with good diffusion.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The expected byte at file offset `off`.
pub fn byte_at(off: u64) -> u8 {
    splitmix64((off / 8) ^ SALT).to_le_bytes()[(off % 8) as usize]
}

/// Fill `buf` with the pattern bytes of offsets `off..off + buf.len()`.
pub fn fill(off: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let o = off + i as u64;
        let word = splitmix64((o / 8) ^ SALT).to_le_bytes();
        let from = (o % 8) as usize;
        let n = (8 - from).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[from..from + n]);
        i += n;
    }
}

/// The pattern bytes of `off..off + len`.
pub fn bytes(off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(off, &mut v);
    v
}

/// Index (into `buf`) of the first byte that differs from the pattern of a
/// buffer read at file offset `off`.
pub fn mismatch(off: u64, buf: &[u8]) -> Option<usize> {
    let mut want = [0u8; 4096];
    let mut i = 0;
    while i < buf.len() {
        let n = want.len().min(buf.len() - i);
        fill(off + i as u64, &mut want[..n]);
        if let Some(j) = buf[i..i + n]
            .iter()
            .zip(&want[..n])
            .position(|(a, b)| a != b)
        {
            return Some(i + j);
        }
        i += n;
    }
    None
}

/// Write the pattern of `0..size` to `f` from its current position, in
/// 1 MiB pieces (the one pattern-file writer: `hsm-validate create`,
/// fpc-tests' `common::create_pattern_file`, fpc-bench's P1 file).
pub fn write_file(f: &mut impl std::io::Write, size: u64) -> std::io::Result<()> {
    let chunk = 1 << 20;
    let mut buf = vec![0u8; chunk];
    let mut off = 0;
    while off < size {
        let n = (chunk as u64).min(size - off) as usize;
        fill(off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_from_any_offset() {
        for off in [0u64, 1, 7, 8, 4095, 4096, 12345] {
            let v = bytes(off, 100);
            for (i, b) in v.iter().enumerate() {
                assert_eq!(*b, byte_at(off + i as u64), "off {off} i {i}");
            }
        }
    }

    #[test]
    fn pages_differ_and_mismatch_finds_first_bad_byte() {
        let p0 = bytes(0, 4096);
        let p1 = bytes(4096, 4096);
        assert_ne!(p0, p1);
        assert!(p0.iter().any(|&b| b != 0));
        assert_eq!(mismatch(0, &p0), None);
        // A misplaced page: page 1's content at offset 0.
        assert_eq!(mismatch(0, &p1), Some(0));
        // A zero page.
        let z = vec![0u8; 4096];
        assert!(mismatch(4096, &z).is_some());
        // One flipped byte, found across the internal chunk boundary.
        let mut big = bytes(100, 10000);
        big[9000] ^= 1;
        assert_eq!(mismatch(100, &big), Some(9000));
    }
}
