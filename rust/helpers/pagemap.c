// SPDX-License-Identifier: GPL-2.0

#include <linux/highmem.h>
#include <linux/pagemap.h>

__rust_helper void rust_helper_folio_put(struct folio *folio)
{
	folio_put(folio);
}

__rust_helper struct page *rust_helper_folio_file_page(struct folio *folio,
						       pgoff_t index)
{
	return folio_file_page(folio, index);
}

__rust_helper void rust_helper_copy_highpage(struct page *to, struct page *from)
{
	copy_highpage(to, from);
}
