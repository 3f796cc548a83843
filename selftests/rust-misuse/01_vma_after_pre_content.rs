// SPDX-License-Identifier: GPL-2.0
//! Using the VMA (borrowed from the fault) after pre_content(), which may have dropped the lock.
//!
//! expect: E0505
#![allow(dead_code, unused_imports)]

use kernel::{
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
        let vma = vmf.vma();
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => vmf.sigbus(),
            PreContent::Done(ret) => {
                let _ = vma.start();
                ret
            }
        }
    }
}
