// SPDX-License-Identifier: GPL-2.0
//! Keeping a page that was given to user space, to write to it later (insert_page() consumes it).
//!
//! expect: E0382
#![allow(dead_code, unused_imports)]

use kernel::{
    mm::fault::VmFaultAround,
    page::Page,
    fs::File,
    mm::fault::{PreContent, VmFault, VmFaultReturn, VmOperations},
    prelude::*,
    sync::{aref::ARef, Arc, ArcBorrow},
};

module! {
    type: Misuse,
    name: "fpc_misuse",
    authors: ["fanotify-prefault developers"],
    description: "a misuse of the fault API that must not compile",
    license: "GPL",
}

struct Misuse;

impl kernel::Module for Misuse {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Misuse)
    }
}

struct Mirror {
    backing: ARef<File>,
}

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        let index = vmf.pgoff();
        let vmf = match vmf.pre_content(&this.backing, index, 1) {
            PreContent::Proceed(vmf) => vmf,
            PreContent::Done(ret) => return ret,
        };
        let Ok(page) = Page::alloc_page(GFP_KERNEL) else {
            return vmf.sigbus();
        };
        let ret = vmf.insert_page(page);
        // The user mapping shows it now.
        let _ = page.as_ptr();
        ret
    }
}
