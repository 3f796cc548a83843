// SPDX-License-Identifier: GPL-2.0
// Producing VM_FAULT_RETRY without the hook having dropped the lock (forging a return value).
//
// expect: E0451

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
