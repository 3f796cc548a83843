// SPDX-License-Identifier: GPL-2.0
// Sending the fault token to another thread (the fault lock belongs to the faulting task).
//
// expect: E0277

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(_this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        fn send<T: Send>(_: &T) {}
        send(&vmf);
        vmf.sigbus()
    }
}
