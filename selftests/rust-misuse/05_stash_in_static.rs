// SPDX-License-Identifier: GPL-2.0
// Keeping a fault's return value in a static, to return it from another fault.
//
// expect: lifetime may not live long enough

static mut STASH: Option<VmFaultReturn<'static>> = None;

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => vmf.sigbus(),
            PreContent::Done(ret) => {
                // SAFETY: none needed for the point: this must not compile.
                unsafe { STASH = Some(ret) };
                loop {}
            }
        }
    }
}
