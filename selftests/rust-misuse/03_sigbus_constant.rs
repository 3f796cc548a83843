// SPDX-License-Identifier: GPL-2.0
// Returning a SIGBUS constant instead of the value of the fault (v1 had VmFaultReturn::SIGBUS).
//
// expect: E0599

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => vmf.sigbus(),
            PreContent::Done(_) => VmFaultReturn::SIGBUS,
        }
    }
}
