//! The one mmap wrapper of the selftests: a file mapping, unmapped on drop.
//! fpc-tests uses it as `common::Map`, and `hsm-validate` and `fpc-bench`
//! map their files with it too.

use nix::sys::mman::{madvise, mmap, munmap, MapFlags, MmapAdvise, ProtFlags};
use std::sync::OnceLock;

/// The page size, from sysconf(3) (never a hard-coded 4096); the same value
/// as `ltp::getpagesize()`.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
            Ok(Some(n)) if n > 0 => n as u64,
            // POSIX requires the value; this is not reached on Linux.
            _ => 4096,
        },
    )
}

/// A file mapping of whole pages, unmapped on drop.
pub struct Map {
    ptr: std::ptr::NonNull<libc::c_void>,
    pub len: usize,
}

impl Map {
    /// `pages` pages of `f` from its page `page_off`.
    pub fn new(
        f: &std::fs::File,
        page_off: u64,
        pages: u64,
        prot: ProtFlags,
        flags: MapFlags,
    ) -> nix::Result<Self> {
        let len = (pages * page_size()) as usize;
        // SAFETY: a new mapping of a file we own, at an address the kernel
        // picks; it is unmapped only in Drop.
        let ptr = unsafe {
            mmap(
                None,
                std::num::NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?,
                prot,
                flags,
                f,
                (page_off * page_size()) as i64,
            )
        }?;
        Ok(Map { ptr, len })
    }

    /// The first `size` bytes of `f` (rounded up to whole pages), shared and
    /// read-only.
    pub fn whole_ro(f: &std::fs::File, size: u64) -> nix::Result<Self> {
        Self::new(
            f,
            0,
            size.div_ceil(page_size()),
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
        )
    }

    pub fn addr(&self, page: u64) -> *mut u8 {
        assert!(page * page_size() < self.len as u64);
        // SAFETY: in bounds, checked above.
        unsafe { (self.ptr.as_ptr() as *mut u8).add((page * page_size()) as usize) }
    }

    /// Read one page through the mapping (faults it in).
    pub fn read_page(&self, page: u64) -> Vec<u8> {
        let p = self.addr(page);
        let mut v = vec![0u8; page_size() as usize];
        for (i, b) in v.iter_mut().enumerate() {
            // SAFETY: p..p+page_size() lies inside the mapping; volatile so every
            // read really touches the mapping.
            *b = unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        v
    }

    /// Touch the first byte of a page (faults it in).
    pub fn touch(&self, page: u64) -> u8 {
        // SAFETY: inside the mapping.
        unsafe { std::ptr::read_volatile(self.addr(page)) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is len readable bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const u8, self.len) }
    }

    /// madvise(2) on the whole mapping, with an advice that changes no
    /// memory contents (the ones that may drop or zero pages are refused).
    pub fn advise(&self, advice: MmapAdvise) -> nix::Result<()> {
        assert!(
            !matches!(
                advice,
                MmapAdvise::MADV_DONTNEED | MmapAdvise::MADV_FREE | MmapAdvise::MADV_REMOVE
            ),
            "Map::advise({advice:?}) could change what as_slice() borrows"
        );
        // SAFETY: advice on exactly our own mapping; it changes no memory
        // contents (asserted above).
        unsafe { madvise(self.ptr, self.len, advice) }
    }
}

// SAFETY: a Map is a plain memory range; reading it from several threads is
// what the concurrency tests and hsm-validate do, and unmapping needs &mut
// (Drop).
unsafe impl Sync for Map {}
// SAFETY: as above; the mapping belongs to the process, not a thread.
unsafe impl Send for Map {}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from mmap and nothing borrows them past self.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}
