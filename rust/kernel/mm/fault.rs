// SPDX-License-Identifier: GPL-2.0

//! Page fault handlers for driver mappings.
//!
//! A driver implements [`VmOperations`] and installs it on a new mapping with
//! [`VmaNew::set_vm_ops`]. When a process touches a page of the mapping that has no page table
//! entry yet, the kernel calls [`VmOperations::fault`] with a [`VmFault`]: a token saying that
//! the fault lock (the mmap read lock, or the per-VMA read lock) is held, through which the
//! handler reaches the VMA.
//!
//! # The fault lock and the value a handler returns
//!
//! The C rule is: a `->fault()` handler that drops the fault lock must return `VM_FAULT_RETRY`,
//! and one that returns `VM_FAULT_RETRY` must have dropped it (unless the fault had
//! `FAULT_FLAG_RETRY_NOWAIT`), because the arch fault code unlocks the lock unless the handler
//! says it is gone. Getting it wrong unlocks a lock twice, or leaks it.
//!
//! Here the rule is kept by types:
//!
//! - The value a handler returns, [`VmFaultReturn<'a>`], is branded with the lifetime `'a` of
//!   its fault (an invariant lifetime that the handler cannot name or choose), is neither
//!   `Clone` nor `Copy`, and can only be made by consuming that fault's token: a value of one
//!   fault cannot be kept and returned from another one, or made up.
//! - [`VmFault::pre_content`], the only code that may drop the lock, consumes the token. When
//!   it dropped the lock it gives back no token, only the [`VmFaultReturn`] the handler must
//!   return ([`PreContent::Done`]); when the handler may go on, it gives an [`Announced`]
//!   token, which serves the fault but has no `pre_content`.
//! - Everything borrowed from the token (the VMA) ends with it.
//!
//! So each of these is a compile error (the misuse snippets in the selftests of this series
//! check them, one rustc error each):
//!
//! ```ignore,compile_fail
//! # use kernel::{fs::File, mm::fault::{PreContent, VmFault, VmFaultReturn}};
//! fn fault<'a>(vmf: VmFault<'a>, file: &File) -> VmFaultReturn<'a> {
//!     let vma = vmf.vma();
//!     match vmf.pre_content(file, 0, 1) {
//!         PreContent::Proceed(vmf) => vmf.sigbus(),
//!         PreContent::Done(ret) => {
//!             // error[E0505]: cannot move out of `vmf` because it is borrowed
//!             let _ = vma.start();
//!             ret
//!         }
//!     }
//! }
//! ```
//!
//! ```ignore,compile_fail
//! # use kernel::{fs::File, mm::fault::{VmFault, VmFaultReturn}};
//! fn fault<'a>(vmf: VmFault<'a>, file: &File) -> VmFaultReturn<'a> {
//!     // The lock may be gone; the value saying so is dropped.
//!     let _ = vmf.pre_content(file, 0, 1);
//!     // error[E0382]: use of moved value: `vmf`
//!     vmf.sigbus()
//! }
//! ```
//!
//! (Marked `ignore` because kernel doctests are built for KUnit, which cannot check that
//! something does not compile.)
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)

use crate::{
    bindings,
    error::{
        code::{EBADF, EINVAL, ERANGE},
        from_err_ptr,
        Error,
        Result, //
    },
    fs::File,
    mm::virt::{
        VmaNew,
        VmaRef, //
    },
    page::{
        Page,
        PAGE_SHIFT, //
    },
    prelude::*,
    types::{
        ForeignOwnable,
        NotThreadSafe, //
    },
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// Makes a lifetime invariant: `'a` can be neither shortened nor lengthened.
type Brand<'a> = PhantomData<fn(&'a ()) -> &'a ()>;

/// The `FAULT_FLAG_*` flags of a page fault.
///
/// # Examples
///
/// ```
/// use kernel::{bindings, mm::fault::FaultFlags};
///
/// let flags = FaultFlags::WRITE | FaultFlags::USER;
/// assert!(flags.contains(FaultFlags::WRITE));
/// assert!(!flags.contains(FaultFlags::WRITE | FaultFlags::VMA_LOCK));
/// let raw = bindings::fault_flag_FAULT_FLAG_WRITE | bindings::fault_flag_FAULT_FLAG_USER;
/// assert_eq!(flags.as_raw(), raw);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultFlags(u32);

impl FaultFlags {
    /// The fault is a write access.
    pub const WRITE: Self = Self(bindings::fault_flag_FAULT_FLAG_WRITE);
    /// The fault is a write to a mapped page that is write-protected (`->page_mkwrite()`).
    pub const MKWRITE: Self = Self(bindings::fault_flag_FAULT_FLAG_MKWRITE);
    /// The fault may drop the fault lock and return `VM_FAULT_RETRY`.
    pub const ALLOW_RETRY: Self = Self(bindings::fault_flag_FAULT_FLAG_ALLOW_RETRY);
    /// The fault must not wait: it returns `VM_FAULT_RETRY` with the lock still held instead.
    pub const RETRY_NOWAIT: Self = Self(bindings::fault_flag_FAULT_FLAG_RETRY_NOWAIT);
    /// The fault may be interrupted by a fatal signal.
    pub const KILLABLE: Self = Self(bindings::fault_flag_FAULT_FLAG_KILLABLE);
    /// The fault has been retried once already.
    pub const TRIED: Self = Self(bindings::fault_flag_FAULT_FLAG_TRIED);
    /// The fault comes from user space.
    pub const USER: Self = Self(bindings::fault_flag_FAULT_FLAG_USER);
    /// The fault is on another process's memory (e.g. `/proc/pid/mem`).
    pub const REMOTE: Self = Self(bindings::fault_flag_FAULT_FLAG_REMOTE);
    /// The fault is an instruction fetch.
    pub const INSTRUCTION: Self = Self(bindings::fault_flag_FAULT_FLAG_INSTRUCTION);
    /// The fault may be interrupted by any signal.
    pub const INTERRUPTIBLE: Self = Self(bindings::fault_flag_FAULT_FLAG_INTERRUPTIBLE);
    /// The fault holds the per-VMA read lock, not the mmap read lock.
    pub const VMA_LOCK: Self = Self(bindings::fault_flag_FAULT_FLAG_VMA_LOCK);

    /// Returns whether all flags of `other` are set in `self`.
    #[inline]
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns the raw `FAULT_FLAG_*` bits.
    #[inline]
    pub fn as_raw(self) -> u32 {
        self.0
    }
}

impl core::ops::BitOr for FaultFlags {
    type Output = Self;

    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The value a page fault handler returns to the kernel, for the fault `'a`.
///
/// Only the token of fault `'a` makes one, by being consumed ([`VmFault::sigbus`],
/// [`Announced::insert_page`], [`PreContent::Done`], ...); it cannot be copied, kept for
/// another fault, or made from a raw value. See the [module documentation](self).
///
/// # Invariants
///
/// `raw` is a valid `vm_fault_t` for fault `'a`: it has `VM_FAULT_RETRY` only if the fault lock
/// of `'a` was released by [`VmFault::pre_content`] (or kept for a `FAULT_FLAG_RETRY_NOWAIT`
/// fault, as that flag asks).
///
/// # Examples
///
/// ```
/// use kernel::{
///     fs::File,
///     mm::fault::{PreContent, VmFault, VmFaultReturn}, //
/// };
///
/// fn fault<'a>(vmf: VmFault<'a>, file: &File) -> VmFaultReturn<'a> {
///     let index = vmf.pgoff();
///     match vmf.pre_content(file, index, 1) {
///         // The lock was released; the retried fault will find the page.
///         PreContent::Done(ret) if ret.is_retry() => ret,
///         PreContent::Done(ret) => ret,
///         PreContent::Proceed(vmf) => vmf.sigbus(),
///     }
/// }
/// ```
#[must_use = "a fault handler must return the value its fault gave"]
pub struct VmFaultReturn<'a> {
    raw: bindings::vm_fault_t,
    _brand: Brand<'a>,
}

impl<'a> VmFaultReturn<'a> {
    /// # Safety
    ///
    /// `raw` must satisfy the type invariants for fault `'a`.
    #[inline]
    unsafe fn new(raw: bindings::vm_fault_t) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            raw,
            _brand: PhantomData,
        }
    }

    /// Returns the raw `vm_fault_t` value.
    #[inline]
    pub fn as_raw(&self) -> bindings::vm_fault_t {
        self.raw
    }

    /// Returns whether the fault is to be retried (`VM_FAULT_RETRY`): the fault lock was released,
    /// unless the fault had [`FaultFlags::RETRY_NOWAIT`].
    #[inline]
    pub fn is_retry(&self) -> bool {
        self.raw & bindings::vm_fault_reason_VM_FAULT_RETRY != 0
    }
}

/// A page fault being handled.
///
/// The fault lock is the mmap read lock of the faulting address space, or the per-VMA read lock
/// of the faulting VMA ([`FaultFlags::VMA_LOCK`]). It is what keeps the VMA alive, so the VMA is
/// only reachable through a borrow of a token.
///
/// # Invariants
///
/// `vmf` points to the `struct vm_fault` of the running `vm_operations_struct::fault` call `'a`
/// (a lifetime no other fault has), whose fault lock is held. The value is not `Send`: the lock
/// belongs to the faulting task.
struct RawFault<'a> {
    vmf: NonNull<bindings::vm_fault>,
    _p: PhantomData<(&'a mut bindings::vm_fault, NotThreadSafe, Brand<'a>)>,
}

impl<'a> RawFault<'a> {
    #[inline]
    fn raw(&self) -> &bindings::vm_fault {
        // SAFETY: By the type invariants the fault is being handled, so `vmf` is valid, and the
        // handler is the only one using it.
        unsafe { self.vmf.as_ref() }
    }

    #[inline]
    fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariants the fault lock is held while `self` exists, and the
        // returned reference cannot outlive the borrow of `self`.
        unsafe { VmaRef::from_raw(self.raw().__bindgen_anon_1.vma) }
    }

    #[inline]
    fn finish(self, raw: bindings::vm_fault_t) -> VmFaultReturn<'a> {
        debug_assert!(raw & bindings::vm_fault_reason_VM_FAULT_RETRY == 0);
        // SAFETY: `raw` is not a retry, and the lock of fault `'a` is held by the type
        // invariants of `self`, which is consumed.
        unsafe { VmFaultReturn::new(raw) }
    }

    fn insert_page(self, page: Page) -> VmFaultReturn<'a> {
        let address = self.raw().__bindgen_anon_1.address;
        let raw = match self.vma().as_mixedmap_vma() {
            // SAFETY: The fault lock is held by the type invariants, the VMA has `VM_MIXEDMAP`
            // (so `vm_insert_page()` does not set it, which needs the mmap lock), and `page` is
            // a valid order-0 page by the type invariants of `Page`. The mapping takes a
            // reference of its own; ours is dropped when `page` goes out of scope.
            Some(vma) => unsafe { bindings::vmf_insert_page(vma.as_ptr(), address, page.as_ptr()) },
            None => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
        };
        self.finish(raw)
    }

    fn error(self, err: Error) -> VmFaultReturn<'a> {
        // SAFETY: `vmf_error()` only maps an errno to a `vm_fault_t`.
        let raw = unsafe { bindings::vmf_error(err.to_errno()) };
        self.finish(raw)
    }
}

/// The accessors and the ways to end a fault that both tokens have.
macro_rules! fault_token_methods {
    () => {
        /// Returns the faulting virtual address, rounded down to a page boundary.
        #[inline]
        pub fn address(&self) -> usize {
            self.fault.raw().__bindgen_anon_1.address
        }

        /// Returns the index of the faulting page within the mapped object (`vm_pgoff` plus the
        /// page's offset in the VMA).
        #[inline]
        pub fn pgoff(&self) -> usize {
            self.fault.raw().__bindgen_anon_1.pgoff
        }

        /// Returns the flags of the fault.
        #[inline]
        pub fn flags(&self) -> FaultFlags {
            FaultFlags(self.fault.raw().flags)
        }

        /// Returns the faulting VMA.
        ///
        /// The reference cannot outlive the borrow of this token, which ends at the latest when
        /// the token is consumed.
        #[inline]
        pub fn vma(&self) -> &VmaRef {
            self.fault.vma()
        }

        /// Ends the fault without a page: the access gets `SIGBUS` (`EFAULT` for a kernel
        /// access).
        #[inline]
        pub fn sigbus(self) -> VmFaultReturn<'a> {
            self.fault.finish(bindings::vm_fault_reason_VM_FAULT_SIGBUS)
        }

        /// Ends the fault for an error, as C's `vmf_error()`: [`ENOMEM`] is `VM_FAULT_OOM`,
        /// `EHWPOISON` is `VM_FAULT_HWPOISON`, anything else `VM_FAULT_SIGBUS`.
        ///
        /// [`ENOMEM`]: crate::error::code::ENOMEM
        #[inline]
        pub fn error(self, err: Error) -> VmFaultReturn<'a> {
            self.fault.error(err)
        }

        /// Maps `page` at the faulting address and ends the fault, as C's `vmf_insert_page()`.
        ///
        /// The mapping must have `VM_MIXEDMAP` (see [`VmaNew::set_mixedmap`]), else the fault gets
        /// `SIGBUS`. If another thread mapped the address first, the fault succeeds with that
        /// thread's page (`-EBUSY` is not an error for a fault). The page is consumed: once user
        /// space can see it, the driver cannot write to it any more.
        #[inline]
        pub fn insert_page(self, page: Page) -> VmFaultReturn<'a> {
            self.fault.insert_page(page)
        }
    };
}

/// A page fault being handled, with the fault lock held: the token a handler gets.
///
/// # Examples
///
/// ```
/// use kernel::mm::fault::{FaultFlags, VmFault, VmFaultReturn};
///
/// /// A read-only mapping with nothing behind it.
/// fn fault<'a>(vmf: VmFault<'a>) -> VmFaultReturn<'a> {
///     let in_vma = vmf.address() >= vmf.vma().start() && vmf.address() < vmf.vma().end();
///     if vmf.flags().contains(FaultFlags::WRITE) || !in_vma {
///         return vmf.sigbus();
///     }
///     vmf.error(kernel::error::code::EIO)
/// }
/// ```
///
/// # Invariants
///
/// As for `RawFault`: the fault `'a` is running with its lock held while this value exists.
pub struct VmFault<'a> {
    fault: RawFault<'a>,
}

impl<'a> VmFault<'a> {
    /// Creates the token for a fault.
    ///
    /// # Safety
    ///
    /// `vmf` must be the argument of a `vm_operations_struct::fault` call that is running and
    /// does not return before `'a` ends, with the fault lock held, and `'a` must be a lifetime
    /// no other `VmFault` has. Only the fault trampoline of this module calls it.
    #[inline]
    unsafe fn from_raw(vmf: NonNull<bindings::vm_fault>) -> Self {
        // INVARIANT: The caller guarantees that the fault is being handled with the lock held.
        Self {
            fault: RawFault {
                vmf,
                _p: PhantomData,
            },
        }
    }

    fault_token_methods!();

    /// Sends the fault-time pre-content event for pages `start..start + nr` of `file`, the file
    /// this handler reads to serve the fault, if the file gets such events (a fanotify
    /// `FAN_PRE_FAULT` mark: see [`File::has_fault_events`]).
    ///
    /// A listener may need the fault lock to fill the range (it may fault on the same file), so
    /// the lock is released before the event is sent, and the fault is retried. The pages of an
    /// allowed range are read into `file`'s page cache before the retry, so the retried fault
    /// finds them and sends no event. The range is rounded to the mapping's minimum folio size
    /// and ends at the end of `file`; a range that is all in the page cache sends nothing. The
    /// result:
    ///
    /// - [`PreContent::Proceed`]: the lock is held, and the returned [`Announced`] token lets
    ///   the handler read the range ([`Announced::read_page`]) and end the fault.
    /// - [`PreContent::Done`]: return its value from the handler. After the lock was released
    ///   it is a retry ([`VmFaultReturn::is_retry`]). It is `SIGBUS` if `nr` is 0, and for a
    ///   file with fault-time events if `start` is at or past its end, if a listener denied
    ///   the access, if the fault may not
    ///   release the lock (no [`FaultFlags::ALLOW_RETRY`]), or if it happens inside a read or
    ///   write of a regular file (which faults its buffer in afterwards, holding no filesystem
    ///   lock, and goes on). A [`FaultFlags::RETRY_NOWAIT`] fault gets a retry with the lock
    ///   held, and no event.
    ///
    /// A file that gets pre-content events only at `mmap()` time (a `FAN_PRE_ACCESS` mark
    /// without `FAN_PRE_FAULT`) gets no event here: announce its range where no lock is held
    /// (see [`File::pre_content_perm`]), or refuse it.
    ///
    /// [`File::has_fault_events`]: crate::fs::File::has_fault_events
    /// [`File::pre_content_perm`]: crate::fs::File::pre_content_perm
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{
    ///     fs::File,
    ///     mm::fault::{PreContent, VmFault, VmFaultReturn},
    ///     page::Page,
    ///     prelude::*, //
    /// };
    ///
    /// /// Serves a fault on page `index` of `backing`.
    /// fn serve<'a>(vmf: VmFault<'a>, backing: &File, index: usize) -> VmFaultReturn<'a> {
    ///     let vmf = match vmf.pre_content(backing, index, 1) {
    ///         PreContent::Proceed(vmf) => vmf,
    ///         PreContent::Done(ret) => return ret,
    ///     };
    ///     let mut page = match Page::alloc_page(GFP_KERNEL) {
    ///         Ok(page) => page,
    ///         Err(err) => return vmf.error(err.into()),
    ///     };
    ///     match vmf.read_page(index, &mut page) {
    ///         Ok(()) => vmf.insert_page(page),
    ///         Err(err) => vmf.error(err),
    ///     }
    /// }
    /// ```
    pub fn pre_content<'f>(self, file: &'f File, start: usize, nr: usize) -> PreContent<'a, 'f> {
        if nr == 0 || start.checked_add(nr).is_none() {
            return PreContent::Done(self.sigbus());
        }
        // SAFETY: By the type invariants the fault is being handled with the lock held, as the
        // C function requires. `file` is valid for the duration of the call.
        let raw = unsafe {
            bindings::filemap_fsnotify_fault_range(
                self.fault.vmf.as_ptr(),
                file.as_ptr(),
                start,
                nr,
            )
        };
        if raw == 0 {
            // INVARIANT: The lock is still held, and the range was announced and allowed, or
            // `file` gets no fault-time events.
            PreContent::Proceed(Announced {
                fault: self.fault,
                file,
                start,
                nr,
            })
        } else {
            // SAFETY: The C function returns `VM_FAULT_RETRY` only after releasing the lock of
            // this fault (or keeping it for `FAULT_FLAG_RETRY_NOWAIT`), and `self` is consumed
            // here, so nothing can use the lock any more.
            PreContent::Done(unsafe { VmFaultReturn::new(raw) })
        }
    }
}

/// The outcome of [`VmFault::pre_content`].
#[must_use = "a `Done` value must be returned from the fault handler"]
pub enum PreContent<'a, 'f> {
    /// Go on serving the fault: the lock is held, and the range may be read.
    Proceed(Announced<'a, 'f>),
    /// Return this value from the handler; the token is gone, and the lock may be too.
    Done(VmFaultReturn<'a>),
}

/// A page fault being handled after [`VmFault::pre_content`] let it proceed.
///
/// It has what [`VmFault`] has but `pre_content` (the fault's event is sent), and it can read
/// the pages the event announced.
///
/// # Examples
///
/// ```
/// use kernel::{
///     fs::File,
///     mm::fault::{Announced, PreContent, VmFault, VmFaultReturn},
///     page::Page,
///     prelude::*, //
/// };
///
/// /// Serves page `index` of `file` from a page the caller allocated.
/// fn serve<'a>(vmf: Announced<'a, '_>, index: usize, mut page: Page) -> VmFaultReturn<'a> {
///     // Only the announced page can be read: `index + 1` would fail with EINVAL.
///     match vmf.read_page(index, &mut page) {
///         Ok(()) => vmf.insert_page(page),
///         Err(err) => vmf.error(err),
///     }
/// }
///
/// fn fault<'a>(vmf: VmFault<'a>, file: &File, page: Page) -> VmFaultReturn<'a> {
///     let index = vmf.pgoff();
///     match vmf.pre_content(file, index, 1) {
///         PreContent::Proceed(vmf) => serve(vmf, index, page),
///         PreContent::Done(ret) => ret,
///     }
/// }
/// ```
///
/// # Invariants
///
/// As for [`VmFault`], and: pages `start..start + nr` of `file` (those before its end) were
/// announced by a fault-time pre-content event that was allowed, or were all in the page cache
/// (covered by an earlier event), or `file` gets no fault-time events (the driver announces
/// such a file's content itself, see [`VmFault::pre_content`]).
pub struct Announced<'a, 'f> {
    fault: RawFault<'a>,
    file: &'f File,
    start: usize,
    nr: usize,
}

impl<'a> Announced<'a, '_> {
    fault_token_methods!();

    /// Copies page `index` of the announced file into `dst`, reading it from the filesystem if
    /// it is not in the page cache.
    ///
    /// Holds the file's `invalidate_lock` while it finds the page, so that a truncate or hole
    /// punch of a filesystem that takes it (ext4, xfs) cannot hand it a page being removed, and
    /// the folio lock while it reads one. Fails with [`EINVAL`] if `index` is outside the
    /// announced range, or the file has no page cache the filesystem reads into (a DAX file, a
    /// filesystem without `read_folio`); with [`EBADF`] if the file was not opened for reading;
    /// with [`ERANGE`] if the page is at or past the end of the file. Sends no events. Reading
    /// may wait for I/O with the fault lock held, as drivers that read a file in `->fault()`
    /// do; for a file in fault-time mode a page that was evicted since the event fails
    /// (`EIO`) instead of being read without an event.
    pub fn read_page(&self, index: usize, dst: &mut Page) -> Result {
        if index < self.start || index - self.start >= self.nr {
            return Err(EINVAL);
        }
        let file = self.file.as_ptr();
        // SAFETY: The file is valid because the shared reference guarantees a nonzero refcount.
        // An open file's `f_mode` read bit, `f_inode` and `f_mapping` do not change while it is
        // open.
        let (readable, inode, mapping) = unsafe {
            (
                (*file).f_mode & bindings::FMODE_READ != 0,
                (*file).f_inode,
                (*file).f_mapping,
            )
        };
        if !readable {
            return Err(EBADF);
        }
        // SAFETY: `mapping` is valid as above.
        unsafe { bindings::filemap_invalidate_lock_shared(mapping) };
        let res = (|| {
            // SAFETY: `inode` and `mapping` are valid as above. The file type bits of `i_mode`
            // never change; `a_ops` changes only under the exclusive `invalidate_lock` (ext4's
            // switch of data journalling), which is held shared here; the `S_DAX` bit of
            // `i_flags` does not change while the file is open.
            let cached = unsafe {
                let a_ops = (*mapping).a_ops;
                u32::from((*inode).i_mode) & bindings::S_IFMT == bindings::S_IFREG
                    && (*inode).i_flags & bindings::S_DAX == 0
                    && !a_ops.is_null()
                    && (*a_ops).read_folio.is_some()
            };
            if !cached {
                return Err(EINVAL);
            }
            // The size is read under the lock, which ext4's and xfs's truncate take
            // exclusively; on other filesystems a concurrent truncate removes the page from
            // the mapping after this, as for any page cache read.
            let size = self.file.size();
            let end = u64::try_from(size).unwrap_or(0).div_ceil(1 << PAGE_SHIFT);
            if u64::try_from(index).unwrap_or(u64::MAX) >= end {
                return Err(ERANGE);
            }
            // SAFETY: `mapping` is valid and has a `read_folio`, which a NULL filler makes
            // `read_cache_folio()` use; the caller holds the `invalidate_lock` it asks for.
            let folio =
                from_err_ptr(unsafe { bindings::read_cache_folio(mapping, index, None, file) })?;
            // SAFETY: `read_cache_folio()` returned a referenced, uptodate folio that contains
            // `index`. `dst` is a valid order-0 page by the type invariants of `Page`, and the
            // exclusive reference means nobody else accesses it during the copy: a `Page` that
            // user space can see is one given to `insert_page()`, which consumes it. The copy
            // tolerates concurrent writes to the source, like any read of the page cache.
            unsafe {
                bindings::copy_highpage(dst.as_ptr(), bindings::folio_file_page(folio, index));
                bindings::folio_put(folio);
            }
            Ok(())
        })();
        // SAFETY: Taken above.
        unsafe { bindings::filemap_invalidate_unlock_shared(mapping) };
        res
    }
}

/// A fault-around being handled: the kernel asks the handler to map pages next to the faulting
/// one that are ready without sleeping.
///
/// # Invariants
///
/// `vmf` points to the `struct vm_fault` of the running `vm_operations_struct::map_pages` call
/// `'a`, with the fault lock and the RCU read lock held.
pub struct VmFaultAround<'a> {
    vmf: NonNull<bindings::vm_fault>,
    _p: PhantomData<(&'a bindings::vm_fault, NotThreadSafe)>,
}

impl VmFaultAround<'_> {
    /// Returns the faulting virtual address, rounded down to a page boundary.
    #[inline]
    pub fn address(&self) -> usize {
        // SAFETY: `vmf` is valid by the type invariants.
        unsafe { self.vmf.as_ref().__bindgen_anon_1.address }
    }

    /// Returns the flags of the fault.
    #[inline]
    pub fn flags(&self) -> FaultFlags {
        // SAFETY: `vmf` is valid by the type invariants.
        FaultFlags(unsafe { self.vmf.as_ref().flags })
    }
}

/// Page fault handling of a driver mapping.
///
/// Installed by [`VmaNew::set_vm_ops`]. Each VMA of the mapping (the one created, and those it
/// is split or copied into on `fork()`) holds a [`Self::Ptr`] to the state, so it must be
/// shareable: [`Arc`] is.
///
/// [`Arc`]: crate::sync::Arc
///
/// # Examples
///
/// ```
/// use kernel::{
///     mm::fault::{VmFault, VmFaultAround, VmFaultReturn, VmOperations},
///     prelude::*,
///     sync::{Arc, ArcBorrow}, //
/// };
///
/// /// Counts nothing, maps nothing: every fault gets `SIGBUS`, also under the per-VMA lock.
/// struct Empty;
///
/// #[vtable]
/// impl VmOperations for Empty {
///     type Ptr = Arc<Self>;
///
///     fn fault<'a>(_this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
///         vmf.sigbus()
///     }
///
///     fn map_pages(
///         _this: ArcBorrow<'_, Self>,
///         vmf: &VmFaultAround<'_>,
///         start: usize,
///         end: usize,
///     ) {
///         // Must not sleep here (RCU read lock).
///         let _ = (vmf.address(), vmf.flags(), start..=end);
///     }
/// }
///
/// assert!(<Empty as VmOperations>::HAS_FAULT);
/// assert!(<Empty as VmOperations>::HAS_MAP_PAGES);
/// ```
#[vtable]
pub trait VmOperations: Sized {
    /// The pointer type of the state the mapping's VMAs share.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Handles a fault on a page of the mapping that has no page table entry.
    ///
    /// With [`Self::map_pages`] implemented, this is also called with the per-VMA lock instead
    /// of the mmap lock ([`FaultFlags::VMA_LOCK`]).
    fn fault<'a>(
        this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        vmf: VmFault<'a>,
    ) -> VmFaultReturn<'a>;

    /// Called for pages `start..=end` around a fault (fault-around) before [`Self::fault`] is
    /// called for the faulting page.
    ///
    /// There is no way to map pages from here yet: the point of implementing it is that a
    /// mapping without it has its faults under the per-VMA lock retried under the mmap lock,
    /// so they never reach [`Self::fault`] with [`FaultFlags::VMA_LOCK`]. Called with the RCU
    /// read lock held: it must not sleep.
    fn map_pages(
        _this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _vmf: &VmFaultAround<'_>,
        _start: usize,
        _end: usize,
    ) {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
}

struct VmOpsVTable<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> VmOpsVTable<T>
where
    for<'b> <T::Ptr as ForeignOwnable>::Borrowed<'b>: Into<T::Ptr>,
{
    /// Another VMA (a split part, or the child's copy on `fork()`) now shares the state.
    ///
    /// # Safety
    ///
    /// `vma` must be a VMA whose `vm_private_data` was copied from a VMA set up by
    /// [`VmaNew::set_vm_ops`] with this `T`.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: By the safety requirements, `vm_private_data` came from `into_foreign()` of a
        // `T::Ptr` that the original VMA still owns.
        let this = unsafe { <T::Ptr as ForeignOwnable>::borrow((*vma).vm_private_data) };
        let own: T::Ptr = this.into();
        // SAFETY: The new VMA owns a pointer of its own, released by `close`.
        unsafe { (*vma).vm_private_data = own.into_foreign() };
    }

    /// # Safety
    ///
    /// `vma` must be a VMA set up by [`VmaNew::set_vm_ops`] with this `T`, or opened by
    /// [`Self::open`], that is being removed.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: By the safety requirements, `vm_private_data` holds a pointer this VMA owns.
        drop(unsafe { <T::Ptr as ForeignOwnable>::from_foreign((*vma).vm_private_data) });
    }

    /// # Safety
    ///
    /// `vmf` must be the fault being handled on a VMA set up by [`VmaNew::set_vm_ops`] with
    /// this `T`, with the fault lock held.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: `vmf` is valid by the safety requirements, and the fault lock keeps its VMA
        // alive, whose `vm_private_data` holds a pointer to the state until `close`.
        let this = unsafe {
            <T::Ptr as ForeignOwnable>::borrow((*(*vmf).__bindgen_anon_1.vma).vm_private_data)
        };
        // Once `VmFault::pre_content` releases the fault lock, the VMA may be unmapped and
        // `close` drop its pointer: the handler holds one of its own for the whole call.
        let own: T::Ptr = this.into();
        let own = own.into_foreign();
        // SAFETY: `own` came from `into_foreign()` just above and is released below.
        let this = unsafe { <T::Ptr as ForeignOwnable>::borrow(own) };
        // SAFETY: `vmf` is the argument of this running fault handler, which holds the fault
        // lock until it returns or `VmFault::pre_content` releases it; the token's lifetime is
        // that of this call, which no other token has.
        let vmf = unsafe { VmFault::from_raw(NonNull::new_unchecked(vmf)) };
        let raw = T::fault(this, vmf).as_raw();
        // SAFETY: `own` came from `into_foreign()` above, and `this` is not used any more.
        drop(unsafe { <T::Ptr as ForeignOwnable>::from_foreign(own) });
        raw
    }

    /// # Safety
    ///
    /// `vmf` must be a fault-around being handled on a VMA set up by [`VmaNew::set_vm_ops`] with
    /// this `T`, with the fault lock and the RCU read lock held.
    unsafe extern "C" fn map_pages(
        vmf: *mut bindings::vm_fault,
        start: usize,
        end: usize,
    ) -> bindings::vm_fault_t {
        // SAFETY: As in `fault`; the fault lock is held for the whole call here.
        let this = unsafe {
            <T::Ptr as ForeignOwnable>::borrow((*(*vmf).__bindgen_anon_1.vma).vm_private_data)
        };
        // INVARIANT: By the safety requirements.
        let around = VmFaultAround {
            // SAFETY: `vmf` is not null by the safety requirements.
            vmf: unsafe { NonNull::new_unchecked(vmf) },
            _p: PhantomData,
        };
        T::map_pages(this, &around, start, end);
        // The faulting page was not mapped: `fault` is called for it.
        0
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        map_pages: if T::HAS_MAP_PAGES {
            Some(Self::map_pages)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::vm_operations_struct {
        &Self::VTABLE
    }
}

impl VmaNew {
    /// Makes `T` handle the faults of this mapping, with `data` as its state.
    ///
    /// Call this last in the `mmap` hook: if the hook fails after it, the kernel discards the
    /// VMA without closing it, and `data` leaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{
    ///     mm::fault::{VmFault, VmFaultReturn, VmOperations},
    ///     mm::virt::VmaNew,
    ///     prelude::*,
    ///     sync::{Arc, ArcBorrow}, //
    /// };
    ///
    /// struct NoPages;
    ///
    /// #[vtable]
    /// impl VmOperations for NoPages {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn fault<'a>(_this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
    ///         vmf.sigbus()
    ///     }
    /// }
    ///
    /// fn mmap(vma: &VmaNew) -> Result {
    ///     vma.set_vm_ops::<NoPages>(Arc::new(NoPages, GFP_KERNEL)?);
    ///     Ok(())
    /// }
    /// # assert!(<NoPages as VmOperations>::HAS_FAULT);
    /// # assert!(!<NoPages as VmOperations>::HAS_MAP_PAGES);
    /// ```
    pub fn set_vm_ops<T: VmOperations>(&self, data: T::Ptr)
    where
        for<'b> <T::Ptr as ForeignOwnable>::Borrowed<'b>: Into<T::Ptr>,
    {
        let vma = self.as_ptr();
        // SAFETY: By the type invariants of `VmaNew`, the VMA is being set up and not shared
        // yet, so writing these fields does not race. The pointer is owned by the VMA from now
        // on, and released by `close`.
        unsafe {
            (*vma).vm_private_data = data.into_foreign();
            (*vma).vm_ops = VmOpsVTable::<T>::build();
        }
    }
}
