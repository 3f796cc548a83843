// SPDX-License-Identifier: GPL-2.0
// Using the VMA (borrowed from the fault) after pre_content(), which may have dropped the lock.
//
// expect: E0505

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        let vma = vmf.vma();
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => vmf.sigbus(),
            PreContent::Done(ret) => {
                let _ = vma.start();
                ret
            }
        }
    }
}
