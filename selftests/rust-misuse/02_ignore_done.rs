// SPDX-License-Identifier: GPL-2.0
// Ignoring Done(ret) and returning another value (here SIGBUS) after the lock may have been dropped.
//
// expect: E0382

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        let _ = vmf.pre_content(&this.backing, 0, 1);
        vmf.sigbus()
    }
}
