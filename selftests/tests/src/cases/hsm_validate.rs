//! hsm_validate: `hsm-validate create` writes the page pattern and `check`
//! accepts it (exit 0) through a mapping and pread(2); every kind of damage
//! an HSM can do is caught with exit 1 and the first bad offset, by both
//! read paths: a flipped byte, a zero (unfilled) page, two pages swapped
//! (misplaced fill), a wrong byte in the partial last page.  `--pages`
//! checks only the pages it names; bad usage exits 2.  No HTTP rows (issue
//! 15): hsm-validate reads a local file against the pattern and has no
//! source; the hsm_serve_* tests run it on stubs filled from both sources.
//!
//! Guards the reference HSM tools (selftests/hsm/README.md): the checker the
//! hsm_serve_* tests trust.

use super::hsm_util::*;
use crate::common::page_size;
use ltp::res::OrBrok;
use ltp::{tcheck, tfail, tpass, Ctx, Test};
use std::os::unix::fs::FileExt;

pub const TEST: Test = Test {
    name: "hsm_validate",
    doc: "hsm-validate: pattern files check OK; flipped byte, zero page, swapped pages found at the first bad offset",
    tags: &[("doc", "selftests/hsm/README.md")],
    run,
    ..Test::DEFAULT
};

/// 64 pages and a partial one.
fn size() -> u64 {
    64 * page_size() + 100
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Page, byte in the page.
    FlipByte(u64, u64),
    ZeroPage(u64),
    SwapPages(u64, u64),
}

struct Case {
    what: &'static str,
    damage: Damage,
}

const CASES: &[Case] = &[
    Case {
        what: "one flipped byte",
        damage: Damage::FlipByte(17, 1234),
    },
    Case {
        what: "an unfilled (zero) page",
        damage: Damage::ZeroPage(40),
    },
    Case {
        what: "two pages swapped",
        damage: Damage::SwapPages(9, 50),
    },
    Case {
        what: "last partial page",
        damage: Damage::FlipByte(64, 99),
    },
];

/// Apply the damage; returns the first offset that differs.
fn damage(path: &std::path::Path, d: Damage) -> u64 {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_brok("open");
    let read = |off: u64| {
        let mut b = vec![0u8; page_size() as usize];
        f.read_exact_at(&mut b, off).or_brok("read page");
        b
    };
    let first_diff = |off: u64, new: &[u8]| {
        let want = hsm::pattern::bytes(off, new.len());
        off + new.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0) as u64
    };
    match d {
        Damage::FlipByte(p, at) => {
            let off = p * page_size() + at;
            let mut b = [0u8];
            f.read_exact_at(&mut b, off).or_brok("read byte");
            f.write_all_at(&[b[0] ^ 0x40], off).or_brok("write byte");
            off
        }
        Damage::ZeroPage(p) => {
            let z = vec![0u8; page_size() as usize];
            f.write_all_at(&z, p * page_size()).or_brok("zero page");
            first_diff(p * page_size(), &z)
        }
        Damage::SwapPages(a, b) => {
            let (pa, pb) = (read(a * page_size()), read(b * page_size()));
            f.write_all_at(&pb, a * page_size()).or_brok("write page");
            f.write_all_at(&pa, b * page_size()).or_brok("write page");
            first_diff(a * page_size(), &pb).min(first_diff(b * page_size(), &pa))
        }
    }
}

fn run(ctx: &Ctx) {
    let path = ctx.path("pattern");
    create_pattern(&path, size());
    let len = std::fs::metadata(&path).or_brok("stat").len();
    tcheck!(len == size(), "create wrote {len} bytes, want {}", size());
    for via in ["both", "mmap", "pread"] {
        let (c, out) = validate(&path, &["--via", via, "--threads", "3"]);
        tcheck!(c == 0, "intact file via {via}: exit {c}: {out}");
    }
    let mut buf = vec![0u8; size() as usize];
    std::fs::File::open(&path)
        .or_brok("open")
        .read_exact_at(&mut buf, 0)
        .or_brok("read");
    tcheck!(
        hsm::pattern::mismatch(0, &buf).is_none(),
        "created bytes equal the library's pattern"
    );

    for c in CASES {
        create_pattern(&path, size());
        let off = damage(&path, c.damage);
        for via in ["mmap", "pread"] {
            let (code, out) = validate(&path, &["--via", via]);
            let want = format!("at offset {off} ");
            if code == 1 && out.contains(&want) {
                tpass!("{} via {via}: exit 1, first bad offset {off}", c.what);
            } else {
                tfail!(
                    "{} via {via}: exit {code}, want 1 and {want:?}: {out}",
                    c.what
                );
            }
        }
    }

    // --pages: only the named pages count.
    create_pattern(&path, size());
    damage(&path, Damage::ZeroPage(30));
    let (c, out) = validate(&path, &["--pages", "0-29,31-64"]);
    tcheck!(c == 0, "damage outside --pages ignored: exit {c}: {out}");
    let (c, out) = validate(&path, &["--pages", "29-31"]);
    tcheck!(c == 1, "damage inside --pages found: exit {c}: {out}");

    // Bad usage.
    let missing = ctx.path("missing");
    let usage: &[(&str, Vec<&str>)] = &[
        ("page beyond EOF", vec!["check", "P", "--pages", "65-70"]),
        ("missing file", vec!["check", "M"]),
        ("bad size", vec!["create", "P", "--size", "12Q"]),
        ("bad --via", vec!["check", "P", "--via", "telepathy"]),
        ("no subcommand", vec![]),
    ];
    let p = path.to_string_lossy().into_owned();
    let m = missing.to_string_lossy().into_owned();
    for (what, args) in usage {
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "P" => p.as_str(),
                "M" => m.as_str(),
                a => a,
            })
            .collect();
        let o = run_tool("hsm-validate", &args);
        let c = code(&o.status);
        let msg = text(&o.stderr);
        if c == 2 && !msg.is_empty() {
            tpass!("{what}: exit 2: {}", msg.lines().next().unwrap_or(""));
        } else {
            tfail!("{what}: exit {c}, want 2 with a message: {msg:?}");
        }
    }
}
