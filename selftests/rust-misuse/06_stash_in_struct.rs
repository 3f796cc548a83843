// SPDX-License-Identifier: GPL-2.0
//! Keeping a fault's return value in the mapping's state (a struct), to return it from another fault.
//!
//! expect: lifetime may not live long enough
#![allow(dead_code, unused_imports)]

use kernel::{
    fs::File,
    mm::fault::{VmFault, VmFaultReturn, VmOperations},
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

struct Keeper {
    backing: ARef<File>,
    kept: kernel::sync::Mutex<Option<VmFaultReturn<'static>>>,
}

#[vtable]
impl VmOperations for Keeper {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        if let Some(old) = this.kept.lock().take() {
            // A RETRY of an earlier fault: this fault never dropped its lock.
            return old;
        }
        vmf.sigbus()
    }
}
