// SPDX-License-Identifier: GPL-2.0
// Control: a correct handler (pre_content, read_page, insert_page, map_pages); must build.
//
// expect: build

#[vtable]
impl VmOperations for Mirror {
    type Ptr = Arc<Self>;

    fn fault<'a>(this: ArcBorrow<'_, Self>, vmf: VmFault<'a>) -> VmFaultReturn<'a> {
        let index = vmf.pgoff();
        let vmf = match vmf.pre_content(&this.backing, index, 1) {
            PreContent::Proceed(vmf) => vmf,
            PreContent::Done(ret) => return ret,
        };
        let _ = vmf.vma().start();
        let mut page = match Page::alloc_page(GFP_KERNEL) {
            Ok(page) => page,
            Err(err) => return vmf.error(err.into()),
        };
        match vmf.read_page(index, &mut page) {
            Ok(()) => vmf.insert_page(page),
            Err(err) => vmf.error(err),
        }
    }

    fn map_pages(
        _this: ArcBorrow<'_, Self>,
        _vmf: &VmFaultAround<'_>,
        _start: usize,
        _end: usize,
    ) {
    }
}
