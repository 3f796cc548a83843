//! fpc-demo: a short demonstration of pre-content events, run in the VM by
//! scripts/demo.sh.  It makes an ext4 image and, for mainline's mmap-time
//! mode (FAN_PRE_ACCESS) and then the series' fault-time mode
//! (FAN_PRE_ACCESS | FAN_PRE_FAULT), creates an empty (sparse) 1 MiB stub,
//! starts a listener that fills every requested range with a pattern, reads,
//! maps and touches the file, and prints every event the listener got and
//! whether the bytes the program saw are the filled ones.

#[allow(dead_code)]
mod common;

use common::*;
use fanotify::consts::*;
use nix::sys::mman::{MapFlags, ProtFlags};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

fn step(listener: &Listener, before: usize, what: &str) -> usize {
    std::thread::sleep(std::time::Duration::from_millis(100));
    let seen = listener.seen();
    println!("{what}");
    for s in &seen[before..] {
        match s.range {
            Some(r) => println!(
                "    event {:#x}  offset {:>8}  count {:>8}",
                s.mask, r.offset, r.count
            ),
            None => println!("    event {:#x}  (no range)", s.mask),
        }
    }
    if seen.len() == before {
        println!("    (no event)");
    }
    seen.len()
}

/// One run: a fresh 1 MiB stub watched with `mask`; read, map, touch.
/// Returns whether every byte the program saw was filled.
fn show(mnt: &Path, name: &str, mask: u64) -> bool {
    let stub = mnt.join(name);
    create_sparse_file(&stub, 1 << 20);
    let group = pre_content_group(&stub, FAN_MARK_INODE, mask);
    let l = Listener::filling(group);
    println!("\n== {name}: mark mask {mask:#x}");

    let f = std::fs::File::open(&stub).expect("open stub");
    let mut buf = vec![0u8; 10000];
    f.read_exact_at(&mut buf, 5000).expect("pread");
    let ok_read = pattern_mismatch(5000, &buf).is_none();
    let mut n = step(&l, 0, "read 10000 bytes at offset 5000:");

    let m = Map::new(&f, 64, 192, ProtFlags::PROT_READ, MapFlags::MAP_SHARED).expect("mmap");
    n = step(&l, n, "mmap 192 pages (768 KiB) at page 64:");
    let ok_map = [0u64, 7, 100]
        .iter()
        .all(|&pg| pattern_mismatch((64 + pg) * page_size(), &m.read_page(pg)).is_none());
    step(&l, n, "touch pages 0, 7 and 100 of the mapping:");
    drop(m);
    drop(l);
    println!(
        "   read() saw filled bytes: {}; mapping saw filled bytes: {}",
        if ok_read { "yes" } else { "NO" },
        if ok_map { "yes" } else { "NO" }
    );
    ok_read && ok_map
}

fn main() -> ExitCode {
    let dir = Path::new("/tmp/fpc-demo");
    let _ = std::fs::create_dir_all(dir);
    let mounted = match ltp::Fs::Ext4.mount(dir, &dir.join("mnt")) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fpc-demo: cannot make an ext4 test filesystem: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("fpc-demo: sparse 1 MiB stubs on ext4; an HSM listener fills each requested range with a pattern");
    let mmap_time = show(&mounted.mnt, "mmap-time", FAN_PRE_ACCESS);
    // On a kernel without the series, FAN_PRE_FAULT is refused (EINVAL) and
    // this part reports TCONF.
    let fault_time = show(&mounted.mnt, "fault-time", FAN_PRE_ACCESS | FAN_PRE_FAULT);
    if mmap_time && fault_time {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
