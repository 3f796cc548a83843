// SPDX-License-Identifier: GPL-2.0

//! Pre-content permission hooks of fsnotify.
//!
//! A hierarchical storage manager (HSM) keeps files whose content is not all present yet and
//! fills them on demand. It does so with fanotify pre-content marks: before an access reads a
//! range of such a file, the kernel sends a permission event for the range, and the HSM fills
//! the range and answers. Code that reads a file's content other than through the VFS read and
//! fault paths, which already call these hooks, must call them itself.
//!
//! The hooks block until a listener answers, which may take as long as fetching the content
//! over a network: they must not be called holding a lock the listener may need to fill the
//! file, such as the mmap or VMA lock of a process that may fault on it. In a page fault
//! handler, use [`VmFault::pre_content`], which drops the fault lock first.
//!
//! C header: [`include/linux/fsnotify.h`](srctree/include/linux/fsnotify.h)
//!
//! [`VmFault::pre_content`]: crate::mm::fault::VmFault::pre_content

use crate::{
    bindings,
    error::to_result,
    fs::{
        file::Offset,
        File, //
    },
    prelude::*, //
};

/// How an access uses the range it asks permission for.
///
/// # Examples
///
/// ```
/// use kernel::fs::fsnotify::Access;
///
/// let access = Access::Read;
/// assert_eq!(access, Access::Read);
/// assert_ne!(access, Access::Write);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The access reads the range.
    Read,
    /// The access writes the range.
    Write,
}

impl Access {
    fn mask(self) -> c_int {
        let mask = match self {
            Access::Read => bindings::MAY_READ,
            Access::Write => bindings::MAY_WRITE,
        };
        // The `MAY_*` flags are small constants, so the conversion is lossless.
        mask as c_int
    }
}

impl File {
    /// Returns whether page faults that read this file's content send fault-time pre-content
    /// events (`FAN_PRE_FAULT`) instead of `mmap()` sending one for the whole mapped range.
    ///
    /// Decided when the file is opened: true if a `FAN_PRE_FAULT` mark watched the file then.
    ///
    /// # Examples
    ///
    /// A driver that maps a file's content decides when to let its listeners fill it:
    ///
    /// ```
    /// use kernel::{
    ///     fs::{
    ///         fsnotify::Access,
    ///         File, //
    ///     },
    ///     prelude::*, //
    /// };
    ///
    /// fn announce(file: &File) -> Result {
    ///     if !file.has_fault_events() {
    ///         // Its listeners want one event for the whole content, before any fault.
    ///         file.pre_content_perm(Access::Read, 0, usize::try_from(file.size())?)?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn has_fault_events(&self) -> bool {
        // SAFETY: The file is valid because the shared reference guarantees a nonzero refcount.
        unsafe { bindings::fsnotify_file_has_prefault(self.as_ptr()) }
    }

    /// Asks the pre-content listeners for permission to access `len` bytes at `pos`.
    ///
    /// Blocks until every listener answered; a listener of an HSM fills the range before it
    /// answers. Returns the error the listener denied the access with (e.g. [`EIO`]), or
    /// [`EINTR`] if a fatal signal interrupted the wait. Returns `Ok(())` at once if the file has
    /// no pre-content watch (decided when the file was opened), so it can be called for any
    /// file.
    ///
    /// Must not be called holding a lock that the listener may need to fill the file, see the
    /// [module documentation](self).
    ///
    /// [`EIO`]: crate::error::code::EIO
    /// [`EINTR`]: crate::error::code::EINTR
    ///
    /// # Examples
    ///
    /// A driver that copies from a file the user gave it:
    ///
    /// ```
    /// use kernel::{
    ///     fs::{
    ///         file::Offset,
    ///         fsnotify::Access,
    ///         File, //
    ///     },
    ///     prelude::*, //
    /// };
    ///
    /// fn copy_in(file: &File, pos: Offset, len: usize) -> Result {
    ///     // The listener fills `pos..pos + len` before this returns, or refuses.
    ///     file.pre_content_perm(Access::Read, pos, len)?;
    ///     // ... read the range ...
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn pre_content_perm(&self, access: Access, pos: Offset, len: usize) -> Result {
        // It waits for user space, which may need locks the caller holds: see the module
        // documentation.
        crate::task::might_sleep();
        // SAFETY: The file is valid because the shared reference guarantees a nonzero refcount,
        // and `pos` is a valid pointer for the duration of the call.
        to_result(unsafe {
            bindings::fsnotify_file_area_perm(self.as_ptr(), access.mask(), &pos, len)
        })
    }
}
