// SPDX-License-Identifier: GPL-2.0
//! The crate root every snippet of this directory is built after, by
//! scripts/rust-misuse.sh: a module with nothing in it, the imports the
//! snippets use, and `Mirror`, the state of a mapping served from a file.
#![allow(dead_code, unused_imports)]

use kernel::{
    fs::File,
    mm::fault::{PreContent, VmFault, VmFaultAround, VmFaultReturn, VmOperations},
    page::Page,
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
