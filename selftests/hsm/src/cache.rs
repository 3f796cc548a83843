//! The page-cache helpers of the selftests: accounting that neither maps
//! nor reads the file, so it sends no pre-content event (cachestat(2)), and
//! the one way each to drop the cache of a file or of the whole system
//! (fpc-tests' `common::drop_cache` and fpc-bench use these).

use std::fs::File;
use std::os::fd::AsRawFd;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// cachestat(2) has the same number on every architecture.
const SYS_CACHESTAT: libc::c_long = 451;

/// Pages of `[off, off + len)` of `f` in the page cache; `len` 0 means to
/// the end of the file (as cachestat(2) takes it).  Needs
/// CONFIG_CACHESTAT_SYSCALL.
pub fn cached_pages(f: &File, off: u64, len: u64) -> std::io::Result<u64> {
    let r = CachestatRange { off, len };
    let mut cs = Cachestat::default();
    // SAFETY: cachestat(2) reads `r` and writes `cs`, both live for the call.
    let ret = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &r as *const CachestatRange,
            &mut cs as *mut Cachestat,
            0,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cs.nr_cache)
}

/// Drop the cached pages of `f` (fsync first: POSIX_FADV_DONTNEED drops
/// clean pages only), so the next access must read.
pub fn drop_file(f: &File) -> std::io::Result<()> {
    nix::unistd::fsync(f.as_raw_fd())?;
    nix::fcntl::posix_fadvise(
        f.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )?;
    Ok(())
}

/// Write back dirty data and drop the whole page cache, dentries and
/// inodes (`/proc/sys/vm/drop_caches`, root only).
pub fn drop_all() -> std::io::Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
}
