// SPDX-License-Identifier: GPL-2.0
// Forging a VmFault token from a raw pointer.
//
// expect: E0624

fn forge<'a>(vmf: core::ptr::NonNull<kernel::bindings::vm_fault>) -> VmFaultReturn<'a> {
    // SAFETY: none: this must not compile.
    let vmf = unsafe { VmFault::from_raw(vmf) };
    vmf.sigbus()
}
