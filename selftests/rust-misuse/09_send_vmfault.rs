// SPDX-License-Identifier: GPL-2.0
//! Sending the fault token to another thread (the fault lock belongs to the faulting task).
//!
//! expect: E0277
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

    fn fault<'a>(_this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        fn send<T: Send>(_: &T) {}
        send(&vmf);
        vmf.sigbus()
    }
}
