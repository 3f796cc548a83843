// SPDX-License-Identifier: GPL-2.0
// Keeping a page that was given to user space, to write to it later (insert_page() consumes it).
//
// expect: E0382

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        let index = vmf.pgoff();
        let vmf = match vmf.pre_content(&this.backing, index, 1) {
            PreContent::Proceed(vmf) => vmf,
            PreContent::Done(ret) => return ret,
        };
        let Ok(page) = Page::alloc_page(GFP_KERNEL) else {
            return vmf.sigbus();
        };
        let ret = vmf.insert_page(page);
        // The user mapping shows it now.
        let _ = page.as_ptr();
        ret
    }
}
