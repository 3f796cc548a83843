// SPDX-License-Identifier: GPL-2.0

//! Rust lazy mirror sample: a misc device whose mappings show a backing file, read at fault time.
//!
//! A process opens `/dev/rust-lazy-mirror`, gives it a file descriptor of a regular file with the
//! `LAZY_MIRROR_SET_BACKING` ioctl, and maps the device read-only. Each fault on the mapping
//! reads one page of the backing file. If the backing file gets fault-time pre-content events
//! (a fanotify `FAN_PRE_FAULT` mark), the fault handler sends one for the page first, through
//! [`VmFault::pre_content`], so a hierarchical storage manager fills exactly the pages that are
//! touched. A backing file watched only for `mmap()`-time events (`FAN_PRE_ACCESS`) has its
//! whole content announced by `LAZY_MIRROR_SET_BACKING`, which holds no lock, and is mirrored up
//! to the size it had then; so is an unwatched one. A denied event gives `SIGBUS`, so does a
//! page past the end.
//!
//! `LAZY_MIRROR_VMA_LOCK_FAULTS` reads how many faults on the device's mappings were handled
//! under the per-VMA lock, which the handler gets because it implements `map_pages`.
//!
//! ```c
//! #define LAZY_MIRROR_SET_BACKING _IOW('|', 0xa0, __u32)
//! #define LAZY_MIRROR_VMA_LOCK_FAULTS _IOR('|', 0xa1, __u64)
//!
//! int dev = open("/dev/rust-lazy-mirror", O_RDONLY);
//! __u32 fd = open("lazy-file", O_RDONLY);
//! ioctl(dev, LAZY_MIRROR_SET_BACKING, &fd);
//! char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, dev, 0);
//! char c = p[5 * 4096];   // one event for page 5 of lazy-file, then its content
//! ```

use kernel::{
    fs::{
        file::{
            flags::{
                O_ACCMODE,
                O_WRONLY, //
            },
            Offset,
        },
        fsnotify::Access,
        File,
        LocalFile, //
    },
    ioctl::{
        _IOC_SIZE,
        _IOR,
        _IOW, //
    },
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::{
        fault::{
            FaultFlags,
            PreContent,
            VmFault,
            VmFaultAround,
            VmFaultReturn,
            VmOperations, //
        },
        virt::VmaNew,
    },
    new_mutex,
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        ArcBorrow,
        Mutex, //
    },
    uaccess::UserSlice,
};

const LAZY_MIRROR_SET_BACKING: u32 = _IOW::<u32>('|' as u32, 0xa0);
const LAZY_MIRROR_VMA_LOCK_FAULTS: u32 = _IOR::<u64>('|' as u32, 0xa1);

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

/// The backing file of a device instance.
#[derive(Clone)]
struct Backing {
    file: ARef<File>,
    /// For a file without fault-time events: the size announced by `LAZY_MIRROR_SET_BACKING`,
    /// the only part of the file the mappings show.
    announced: Option<Offset>,
}

/// An open instance of the device.
#[pin_data]
struct LazyMirror {
    #[pin]
    backing: Mutex<Option<Backing>>,
    /// Faults handled under the per-VMA lock, on all mappings of this instance.
    vma_lock_faults: Arc<Atomic<u64>>,
}

#[vtable]
impl MiscDevice for LazyMirror {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let vma_lock_faults = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        KBox::try_pin_init(
            try_pin_init!(LazyMirror {
                backing <- new_mutex!(None),
                vma_lock_faults,
            }),
            GFP_KERNEL,
        )
    }

    fn mmap(me: Pin<&LazyMirror>, _file: &File, vma: &VmaNew) -> Result {
        let backing = me.backing.lock().clone().ok_or(ENXIO)?;
        // The mapping shows the backing file, which it never writes.
        vma.try_clear_maywrite().map_err(|_| EACCES)?;
        vma.set_mixedmap();
        let mapping = MirrorMapping {
            backing,
            vma_lock_faults: me.vma_lock_faults.clone(),
        };
        vma.set_vm_ops::<MirrorMapping>(Arc::new(mapping, GFP_KERNEL)?);
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
                // A file whose listeners expect one event for a whole mapping gets it here,
                // where no lock is held: the fault handler sends them nothing.
                let announced = if file.has_fault_events() {
                    None
                } else {
                    let size = file.size();
                    file.pre_content_perm(Access::Read, 0, usize::try_from(size)?)?;
                    Some(size)
                };
                *me.backing.lock() = Some(Backing { file, announced });
                Ok(0)
            }
            LAZY_MIRROR_VMA_LOCK_FAULTS => {
                let n = me.vma_lock_faults.load(Relaxed);
                UserSlice::new(UserPtr::from_addr(arg), _IOC_SIZE(cmd))
                    .writer()
                    .write(&n)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// A mapping of the device: the state its faults share.
struct MirrorMapping {
    backing: Backing,
    vma_lock_faults: Arc<Atomic<u64>>,
}

#[vtable]
impl VmOperations for MirrorMapping {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        if vmf.flags().contains(FaultFlags::VMA_LOCK) {
            this.vma_lock_faults.fetch_add(1, Relaxed);
        }
        let index = vmf.pgoff();
        let backing = &this.backing;
        // A page that starts at or after the end of what the mapping shows does not exist.
        let end = backing.announced.unwrap_or_else(|| backing.file.size());
        let pos = Offset::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(PAGE_SIZE as Offset));
        if pos.is_none_or(|pos| pos >= end) {
            return vmf.sigbus();
        }

        // The listener fills the page before the fault reads it. The lock may be gone after
        // this: only the returned token gives access to the fault again.
        let vmf = match vmf.pre_content(&backing.file, index, 1) {
            PreContent::Proceed(vmf) => vmf,
            PreContent::Done(ret) => return ret,
        };

        let mut page = match Page::alloc_page(GFP_KERNEL) {
            Ok(page) => page,
            Err(err) => return vmf.error(err.into()),
        };
        match vmf.read_page(index, &mut page) {
            Ok(()) => vmf.insert_page(page),
            Err(err) => vmf.error(err),
        }
    }

    /// Maps nothing: the faulting page may need an event, which cannot be sent here. Having it
    /// lets faults under the per-VMA lock reach `fault` instead of being retried under the mmap
    /// lock.
    fn map_pages(_this: ArcBorrow<'_, Self>, _vmf: &VmFaultAround<'_>, _start: usize, _end: usize) {
    }
}
