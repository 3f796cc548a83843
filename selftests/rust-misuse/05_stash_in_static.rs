// SPDX-License-Identifier: GPL-2.0
//! Keeping a fault's return value in a static, to return it from another fault.
//!
//! expect: lifetime may not live long enough
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

static mut STASH: Option<VmFaultReturn<'static>> = None;

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => vmf.sigbus(),
            PreContent::Done(ret) => {
                // SAFETY: none needed for the point: this must not compile.
                unsafe { STASH = Some(ret) };
                loop {}
            }
        }
    }
}
