// SPDX-License-Identifier: GPL-2.0
// Calling pre_content() twice in one fault (the second event's answer would be lost: livelock).
//
// expect: E0599

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        match vmf.pre_content(&this.backing, 0, 1) {
            PreContent::Proceed(vmf) => match vmf.pre_content(&this.backing, 1, 1) {
                PreContent::Proceed(vmf) => vmf.sigbus(),
                PreContent::Done(ret) => ret,
            },
            PreContent::Done(ret) => ret,
        }
    }
}
