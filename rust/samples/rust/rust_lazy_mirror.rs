// SPDX-License-Identifier: GPL-2.0

//! Rust lazy mirror sample: a misc device whose mappings show a backing file, read at fault time.
//!
//! A process opens `/dev/rust-lazy-mirror`, gives it a file descriptor of a regular file with the
//! `LAZY_MIRROR_SET_BACKING` ioctl, and maps the device read-only. Each fault on the mapping
//! reads one page of the backing file. If the backing file gets fault-time pre-content events
//! (a fanotify `FAN_PRE_FAULT` mark), the fault handler sends one for the page first, through
//! [`VmFault::pre_content`], so a hierarchical storage manager fills exactly the pages that are
//! touched. A denied event gives `SIGBUS`, so does a page past the end of the backing file.
//!
//! ```c
//! #define LAZY_MIRROR_SET_BACKING _IOW('|', 0xa0, __u32)
//!
//! int dev = open("/dev/rust-lazy-mirror", O_RDONLY);
//! __u32 fd = open("lazy-file", O_RDONLY);
//! ioctl(dev, LAZY_MIRROR_SET_BACKING, &fd);
//! char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, dev, 0);
//! char c = p[5 * 4096];   // one event for page 5 of lazy-file, then its content
//! ```

use kernel::{
    fs::{
        file::flags::{O_ACCMODE, O_WRONLY},
        File, LocalFile,
    },
    ioctl::{_IOC_SIZE, _IOW},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::{
        fault::{PreContent, VmFault, VmFaultReturn, VmOperations},
        virt::VmaNew,
    },
    new_mutex,
    page::{Page, PAGE_SHIFT},
    prelude::*,
    sync::{aref::ARef, Arc, ArcBorrow, Mutex},
    uaccess::UserSlice,
};

const LAZY_MIRROR_SET_BACKING: u32 = _IOW::<u32>('|' as u32, 0xa0);

module! {
    type: LazyMirrorModule,
    name: "rust_lazy_mirror",
    authors: ["fanotify-prefault developers"],
    description: "Rust sample: a mapping served from a lazily filled backing file",
    license: "GPL",
}

#[pin_data]
struct LazyMirrorModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<LazyMirror>,
}

impl kernel::InPlaceModule for LazyMirrorModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions {
            name: c"rust-lazy-mirror",
        };
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}

/// An open instance of the device.
#[pin_data]
struct LazyMirror {
    #[pin]
    backing: Mutex<Option<ARef<File>>>,
}

#[vtable]
impl MiscDevice for LazyMirror {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(LazyMirror {
                backing <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )
    }

    fn mmap(me: Pin<&LazyMirror>, _file: &File, vma: &VmaNew) -> Result {
        let backing = me.backing.lock().clone().ok_or(ENXIO)?;
        // The mapping shows the backing file, which it never writes.
        vma.try_clear_maywrite().map_err(|_| EACCES)?;
        vma.set_mixedmap();
        vma.set_vm_ops(Arc::new(MirrorMapping { backing }, GFP_KERNEL)?);
        Ok(())
    }

    fn ioctl(me: Pin<&LazyMirror>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            LAZY_MIRROR_SET_BACKING => {
                let fd = UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd))
                    .reader()
                    .read::<u32>()?;
                let file = LocalFile::fget(fd)?;
                // SAFETY: This thread is in the ioctl of another file and not between
                // `fdget_pos` and `fdput_pos` on `fd`; with the reference taken here, later
                // `fdget_pos` calls on it take `f_pos_lock`.
                let file = unsafe { LocalFile::assume_no_fdget_pos(file) };
                if file.flags() & O_ACCMODE == O_WRONLY {
                    return Err(EBADF);
                }
                *me.backing.lock() = Some(file);
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// A mapping of the device: the state its faults share.
struct MirrorMapping {
    backing: ARef<File>,
}

impl VmOperations for MirrorMapping {
    fn fault(this: ArcBorrow<'_, Self>, vmf: VmFault<'_>) -> VmFaultReturn {
        let index = vmf.pgoff();
        let size = this.backing.size();
        // A page that starts at or after the end of the backing file does not exist.
        if i64::try_from(index)
            .ok()
            .and_then(|i| i.checked_shl(PAGE_SHIFT as u32))
            .is_none_or(|pos| pos >= size)
        {
            return VmFaultReturn::SIGBUS;
        }

        // The listener fills the page before the fault reads it. The lock may be gone after
        // this: only the returned token gives access to the VMA again.
        let vmf = match vmf.pre_content(&this.backing, index, 1) {
            PreContent::Proceed(vmf) => vmf,
            PreContent::Done(ret) => return ret,
        };

        let mut page = match Page::alloc_page(GFP_KERNEL) {
            Ok(page) => page,
            Err(_) => return VmFaultReturn::OOM,
        };
        if let Err(err) = this.backing.read_page_cache(index, &mut page) {
            return err.into();
        }
        let Some(vma) = vmf.vma().as_mixedmap_vma() else {
            return VmFaultReturn::SIGBUS;
        };
        match vma.vm_insert_page(vmf.address(), &page) {
            Ok(()) => VmFaultReturn::NOPAGE,
            Err(err) => err.into(),
        }
    }
}
