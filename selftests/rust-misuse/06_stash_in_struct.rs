// SPDX-License-Identifier: GPL-2.0
// Keeping a fault's return value in the mapping's state (a struct), to return it from another fault.
//
// expect: lifetime may not live long enough

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
