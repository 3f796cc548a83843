// SPDX-License-Identifier: GPL-2.0
//! Passing a fault's return value off as one of a shorter-lived fault (the brand is invariant).
//!
//! expect: lifetime may not live long enough
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

fn shorten<'a, 'b: 'a>(vmf: VmFault<'b>) -> VmFaultReturn<'a> {
    vmf.sigbus()
}
