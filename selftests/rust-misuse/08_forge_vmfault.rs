// SPDX-License-Identifier: GPL-2.0
//! Forging a VmFault token from a raw pointer.
//!
//! expect: E0624
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

fn forge<'a>(vmf: core::ptr::NonNull<kernel::bindings::vm_fault>) -> VmFaultReturn<'a> {
    // SAFETY: none: this must not compile.
    let vmf = unsafe { VmFault::from_raw(vmf) };
    vmf.sigbus()
}
