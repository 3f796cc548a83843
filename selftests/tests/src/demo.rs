//! fpc-demo: a short demonstration of pre-content events, run in the VM by
//! scripts/demo.sh.  It makes an ext4 image, creates an empty (sparse) 1 MiB
//! stub, starts a listener that fills every requested range with a pattern,
//! then reads, maps and touches the file, printing every event the listener
//! got and whether the bytes the program saw are the filled ones.

#[allow(dead_code)]
mod common;

use common::*;
use fanotify::consts::*;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::num::NonZeroUsize;
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
    let stub = mounted.mnt.join("stub");
    create_sparse_file(&stub, 1 << 20);
    let group = pre_content_group(&stub, FAN_MARK_INODE, FAN_PRE_ACCESS);
    let l = Listener::filling(group);
    println!(
        "fpc-demo: 1 MiB sparse stub on ext4, HSM listener fills requested ranges with a pattern"
    );

    let f = std::fs::File::open(&stub).expect("open stub");
    let mut buf = vec![0u8; 10000];
    f.read_exact_at(&mut buf, 5000).expect("pread");
    let ok_read = pattern_mismatch(5000, &buf).is_none();
    let mut n = step(&l, 0, "read 10000 bytes at offset 5000:");

    let len = 16 * PAGE as usize;
    // SAFETY: a fresh read-only shared mapping of the stub, unmapped below.
    let p = unsafe {
        mmap(
            None,
            NonZeroUsize::new(len).unwrap(),
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            &f,
            (64 * PAGE) as i64,
        )
    }
    .expect("mmap");
    n = step(&l, n, "mmap 16 pages at page 64:");
    // SAFETY: p maps len readable bytes.
    let data = unsafe { std::slice::from_raw_parts(p.as_ptr() as *const u8, len) };
    let ok_map = [0usize, 7, 15].iter().all(|&pg| {
        let off = pg * PAGE as usize;
        pattern_mismatch((64 + pg as u64) * PAGE, &data[off..off + PAGE as usize]).is_none()
    });
    step(&l, n, "touch pages 0, 7 and 15 of the mapping:");
    // SAFETY: p/len from mmap above; data is not used after this.
    unsafe { munmap(p, len) }.expect("munmap");
    drop(l);
    println!(
        "fpc-demo: read() saw filled bytes: {}; mapping saw filled bytes: {}",
        if ok_read { "yes" } else { "NO" },
        if ok_map { "yes" } else { "NO" }
    );
    if ok_read && ok_map {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
