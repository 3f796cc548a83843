// SPDX-License-Identifier: GPL-2.0

//! Page fault handlers for driver mappings.
//!
//! A driver implements [`VmOperations`] and installs it on a new mapping with
//! [`VmaNew::set_vm_ops`]. When a process touches a page of the mapping that has no page table
//! entry yet, the kernel calls [`VmOperations::fault`] with a [`VmFault`]: a token saying that
//! the fault lock (the mmap read lock, or the per-VMA read lock) is held, through which the
//! handler reaches the VMA.
//!
//! A handler that serves the mapping from a file must let the file's pre-content listeners, such
//! as a hierarchical storage manager, fill the range first. A listener may need the fault lock
//! to do so, so the kernel drops it before it waits: [`VmFault::pre_content`] consumes the
//! token, and when it has dropped the lock it returns no token back, only the value the handler
//! must return. The borrow checker then rejects any later use of the VMA:
//!
//! ```ignore,compile_fail
//! use kernel::fs::File;
//! use kernel::mm::fault::{PreContent, VmFault, VmFaultReturn};
//!
//! fn fault(vmf: VmFault<'_>, file: &File) -> VmFaultReturn {
//!     let vma = vmf.vma();
//!     match vmf.pre_content(file, 0, 1) {
//!         PreContent::Proceed(_vmf) => VmFaultReturn::NOPAGE,
//!         // error[E0505]: cannot move out of `vmf` because it is borrowed
//!         PreContent::Done(ret) => {
//!             let _ = vma.start();
//!             ret
//!         }
//!     }
//! }
//! ```
//!
//! (Marked `ignore` because kernel doctests are built by a test builder that only collects them
//! for KUnit, so a `compile_fail` test cannot be checked by it.)
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)

use crate::{
    bindings,
    error::{code::ENOMEM, Error},
    fs::File,
    mm::virt::{VmaNew, VmaRef},
    sync::{Arc, ArcBorrow},
    types::NotThreadSafe,
};
use core::{marker::PhantomData, ptr::NonNull};

/// The value a page fault handler returns to the kernel.
///
/// Safe code cannot make one that says the fault lock was released (`VM_FAULT_RETRY`): only
/// [`VmFault::pre_content`], which releases it, returns such a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmFaultReturn(bindings::vm_fault_t);

impl VmFaultReturn {
    /// The handler installed the page table entry itself (e.g. with
    /// [`VmaMixedMap::vm_insert_page`]).
    ///
    /// [`VmaMixedMap::vm_insert_page`]: crate::mm::virt::VmaMixedMap::vm_insert_page
    pub const NOPAGE: Self = Self(bindings::vm_fault_reason_VM_FAULT_NOPAGE);
    /// The page cannot be provided: the access gets `SIGBUS` (`EFAULT` for a kernel access).
    pub const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);
    /// The address is not valid in this mapping: the access gets `SIGSEGV`.
    pub const SIGSEGV: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGSEGV);
    /// Out of memory.
    pub const OOM: Self = Self(bindings::vm_fault_reason_VM_FAULT_OOM);

    /// Returns the raw `vm_fault_t` value.
    #[inline]
    pub fn as_raw(self) -> bindings::vm_fault_t {
        self.0
    }

    /// Returns whether the kernel released the fault lock before returning this value, so the
    /// fault will be retried.
    #[inline]
    pub fn is_retry(self) -> bool {
        self.0 & bindings::vm_fault_reason_VM_FAULT_RETRY != 0
    }
}

impl From<Error> for VmFaultReturn {
    /// Maps an error of the handler: [`ENOMEM`] to [`VmFaultReturn::OOM`], anything else to
    /// [`VmFaultReturn::SIGBUS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::fault::VmFaultReturn;
    /// use kernel::prelude::*;
    ///
    /// assert_eq!(VmFaultReturn::from(ENOMEM), VmFaultReturn::OOM);
    /// assert_eq!(VmFaultReturn::from(EIO), VmFaultReturn::SIGBUS);
    /// assert!(!VmFaultReturn::from(EAGAIN).is_retry());
    /// ```
    fn from(err: Error) -> Self {
        if err == ENOMEM {
            Self::OOM
        } else {
            Self::SIGBUS
        }
    }
}

/// A page fault being handled, with the fault lock held.
///
/// The fault lock is the mmap read lock of the faulting address space, or the per-VMA read lock
/// of the faulting VMA (`FAULT_FLAG_VMA_LOCK`). It is what keeps the VMA alive, so the VMA is
/// only reachable through a borrow of this token ([`VmFault::vma`]).
///
/// # Invariants
///
/// `vmf` points to the `struct vm_fault` of the `vm_operations_struct::fault` call that created
/// this value, which has not returned, and the fault lock is held for as long as this value
/// exists. The value is not `Send`: the lock belongs to the faulting task.
pub struct VmFault<'a> {
    vmf: NonNull<bindings::vm_fault>,
    _p: PhantomData<(&'a mut bindings::vm_fault, NotThreadSafe)>,
}

impl<'a> VmFault<'a> {
    /// Creates the token for a fault.
    ///
    /// # Safety
    ///
    /// `vmf` must be the argument of a `vm_operations_struct::fault` call that is running and
    /// does not return before `'a` ends, with the fault lock held for `'a` unless released by
    /// the kernel through [`VmFault::pre_content`].
    #[inline]
    pub unsafe fn from_raw(vmf: NonNull<bindings::vm_fault>) -> Self {
        // INVARIANT: The caller guarantees that the fault is being handled with the lock held.
        Self {
            vmf,
            _p: PhantomData,
        }
    }

    #[inline]
    fn raw(&self) -> &bindings::vm_fault {
        // SAFETY: By the type invariants the fault is being handled, so `vmf` is valid, and the
        // handler is the only one using it.
        unsafe { self.vmf.as_ref() }
    }

    /// Returns the faulting virtual address, rounded down to a page boundary.
    #[inline]
    pub fn address(&self) -> usize {
        self.raw().__bindgen_anon_1.address
    }

    /// Returns the index of the faulting page within the mapped object (`vm_pgoff` plus the
    /// page's offset in the VMA).
    #[inline]
    pub fn pgoff(&self) -> usize {
        self.raw().__bindgen_anon_1.pgoff
    }

    /// Returns the `FAULT_FLAG_*` flags of the fault.
    #[inline]
    pub fn flags(&self) -> u32 {
        self.raw().flags
    }

    /// Returns whether the fault is for a write access.
    #[inline]
    pub fn is_write(&self) -> bool {
        self.flags() & bindings::fault_flag_FAULT_FLAG_WRITE != 0
    }

    /// Returns the faulting VMA.
    ///
    /// The reference cannot outlive the borrow of this token, which ends at the latest when the
    /// token is consumed by [`VmFault::pre_content`].
    #[inline]
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariants the fault lock is held while `self` exists, and the
        // returned reference cannot outlive the borrow of `self`.
        unsafe { VmaRef::from_raw(self.raw().__bindgen_anon_1.vma) }
    }

    /// Sends the fault-time pre-content event for pages `start..start + nr` of `file`, the file
    /// this handler reads to serve the fault, if the file gets such events.
    ///
    /// A listener may need the fault lock to fill the range (it may fault on the same file), so
    /// the lock is released before the event is sent, and the fault is retried. The retried
    /// fault finds the answer and does not send a second event. The result:
    ///
    /// - [`PreContent::Proceed`] gives the token back, with the lock held: the range may be
    ///   read. If `file` uses the page cache, the answered range is in it, so
    ///   [`File::read_page_cache`] finds it without I/O.
    /// - [`PreContent::Done`] consumes the token: return its value from the handler. After
    ///   the lock was released it is a retry ([`VmFaultReturn::is_retry`]). It is
    ///   [`VmFaultReturn::SIGBUS`] if `start` is at or past the end of `file` (pages past the
    ///   end are not announced), if a listener denied the access, if the fault may not
    ///   release the lock, or if it happens inside a read or write of a regular file (the
    ///   read or write faults its buffer in afterwards, holding no filesystem lock, and
    ///   goes on).
    ///
    /// [`File::read_page_cache`]: crate::fs::LocalFile::read_page_cache
    #[inline]
    pub fn pre_content(self, file: &File, start: usize, nr: usize) -> PreContent<'a> {
        if nr == 0 || start.checked_add(nr).is_none() {
            return PreContent::Done(VmFaultReturn::SIGBUS);
        }
        // SAFETY: By the type invariants the fault is being handled with the lock held, as the
        // C function requires. `file` is valid for the duration of the call. If it releases the
        // lock, it returns `VM_FAULT_RETRY` and `self` is dropped below without being returned.
        let ret = unsafe {
            bindings::filemap_fsnotify_fault_range(self.vmf.as_ptr(), file.as_ptr(), start, nr)
        };
        if ret == 0 {
            PreContent::Proceed(self)
        } else {
            PreContent::Done(VmFaultReturn(ret))
        }
    }
}

/// The outcome of [`VmFault::pre_content`].
pub enum PreContent<'a> {
    /// Go on serving the fault: the lock is held.
    Proceed(VmFault<'a>),
    /// Return this value from the handler; the token is gone, and the lock may be too.
    Done(VmFaultReturn),
}

/// Page fault handling of a driver mapping.
///
/// Installed by [`VmaNew::set_vm_ops`]. The mapping keeps an [`Arc`] of the implementing type
/// for each VMA it is split or copied (on `fork()`) into.
pub trait VmOperations: Send + Sync + Sized + 'static {
    /// Handles a fault on a page of the mapping that has no page table entry.
    fn fault(this: ArcBorrow<'_, Self>, vmf: VmFault<'_>) -> VmFaultReturn;
}

struct VmOpsVTable<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> VmOpsVTable<T> {
    /// Another VMA (a split part, or the child's copy on `fork()`) now shares the data.
    ///
    /// # Safety
    ///
    /// `vma` must be a VMA whose `vm_private_data` was copied from a VMA set up by
    /// [`VmaNew::set_vm_ops`] with this `T`.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: By the safety requirements, `vm_private_data` came from `Arc::into_raw` of an
        // `Arc<T>` that the original VMA still holds.
        let data = unsafe { ArcBorrow::<T>::from_raw((*vma).vm_private_data.cast()) };
        // The new VMA owns a reference of its own, released by `close`.
        let _ = Arc::from(data).into_raw();
    }

    /// # Safety
    ///
    /// `vma` must be a VMA set up by [`VmaNew::set_vm_ops`] with this `T`, or opened by
    /// [`Self::open`], that is being removed.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: By the safety requirements, `vm_private_data` holds a reference this VMA owns.
        drop(unsafe { Arc::<T>::from_raw((*vma).vm_private_data.cast()) });
    }

    /// # Safety
    ///
    /// `vmf` must be the fault being handled on a VMA set up by [`VmaNew::set_vm_ops`] with
    /// this `T`, with the fault lock held.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: `vmf` is valid by the safety requirements, and the fault lock keeps its VMA
        // alive, whose `vm_private_data` holds a reference to an `Arc<T>` until `close`.
        let data = unsafe {
            ArcBorrow::<T>::from_raw((*(*vmf).__bindgen_anon_1.vma).vm_private_data.cast())
        };
        // Once `VmFault::pre_content` releases the fault lock, the VMA may be unmapped and
        // `close` drop its reference: the handler holds one of its own for the whole call.
        let data = Arc::from(data);
        // SAFETY: `vmf` is the argument of this running fault handler, which holds the fault
        // lock until it returns or `VmFault::pre_content` releases it.
        let vmf = unsafe { VmFault::from_raw(NonNull::new_unchecked(vmf)) };
        T::fault(data.as_arc_borrow(), vmf).as_raw()
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
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
    /// VMA without closing it, and the reference to `data` leaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::fault::{VmFault, VmFaultReturn, VmOperations};
    /// use kernel::mm::virt::VmaNew;
    /// use kernel::prelude::*;
    /// use kernel::sync::{Arc, ArcBorrow};
    ///
    /// struct NoPages;
    ///
    /// impl VmOperations for NoPages {
    ///     fn fault(_this: ArcBorrow<'_, Self>, _vmf: VmFault<'_>) -> VmFaultReturn {
    ///         VmFaultReturn::SIGBUS
    ///     }
    /// }
    ///
    /// fn mmap(vma: &VmaNew) -> Result {
    ///     vma.set_vm_ops(Arc::new(NoPages, GFP_KERNEL)?);
    ///     Ok(())
    /// }
    /// ```
    pub fn set_vm_ops<T: VmOperations>(&self, data: Arc<T>) {
        let vma = self.as_ptr();
        // SAFETY: By the type invariants of `VmaNew`, the VMA is being set up and not shared
        // yet, so writing these fields does not race. The `Arc` reference is owned by the VMA
        // from now on, and released by `close`.
        unsafe {
            (*vma).vm_private_data = data.into_raw().cast_mut().cast();
            (*vma).vm_ops = VmOpsVTable::<T>::build();
        }
    }
}
