// SPDX-License-Identifier: GPL-2.0

#include <linux/fsnotify.h>

__rust_helper bool rust_helper_fsnotify_file_has_prefault(const struct file *file)
{
	return fsnotify_file_has_prefault(file);
}

__rust_helper int rust_helper_fsnotify_file_area_perm(struct file *file,
						      int perm_mask,
						      const loff_t *ppos,
						      size_t count)
{
	return fsnotify_file_area_perm(file, perm_mask, ppos, count);
}
