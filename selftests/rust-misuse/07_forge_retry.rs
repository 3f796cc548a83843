// SPDX-License-Identifier: GPL-2.0
//! Producing VM_FAULT_RETRY without the hook having dropped the lock (forging a return value).
//!
//! expect: E0451
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

    fn fault<'a>(_this: ArcBorrow<'_, Self>, _vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        VmFaultReturn {
            raw: kernel::bindings::vm_fault_reason_VM_FAULT_RETRY,
            _brand: core::marker::PhantomData,
        }
    }
}
