// SPDX-License-Identifier: GPL-2.0
//! Control: a correct handler (pre_content, read_page, insert_page, map_pages); must build.
//!
//! expect: build
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
        let _ = vmf.vma().start();
        let mut page = match Page::alloc_page(GFP_KERNEL) {
            Ok(page) => page,
            Err(err) => return vmf.error(err.into()),
        };
        match vmf.read_page(index, &mut page) {
            Ok(()) => vmf.insert_page(page),
            Err(err) => vmf.error(err),
        }
    }

    fn map_pages(
        _this: ArcBorrow<'_, Self>,
        _vmf: &VmFaultAround<'_>,
        _start: usize,
        _end: usize,
    ) {
    }
}
