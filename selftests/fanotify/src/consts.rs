//! Constants from `include/uapi/linux/fanotify.h` (Linux 7.3).
//!
//! Only upstream values live here.  Event masks are `u64` (the type of the
//! `mask` argument of `fanotify_mark(2)` and of `fanotify_event_metadata.mask`);
//! init, mark and response flags are `u32`; info types are `u8`.

// ---------------------------------------------------------------------------
// Events (mask bits).
// ---------------------------------------------------------------------------

/// File was accessed.
pub const FAN_ACCESS: u64 = 0x0000_0001;
/// File was modified.
pub const FAN_MODIFY: u64 = 0x0000_0002;
/// Metadata changed.
pub const FAN_ATTRIB: u64 = 0x0000_0004;
/// Writable file closed.
pub const FAN_CLOSE_WRITE: u64 = 0x0000_0008;
/// Unwritable file closed.
pub const FAN_CLOSE_NOWRITE: u64 = 0x0000_0010;
/// File was opened.
pub const FAN_OPEN: u64 = 0x0000_0020;
/// File was moved from X.
pub const FAN_MOVED_FROM: u64 = 0x0000_0040;
/// File was moved to Y.
pub const FAN_MOVED_TO: u64 = 0x0000_0080;
/// Subfile was created.
pub const FAN_CREATE: u64 = 0x0000_0100;
/// Subfile was deleted.
pub const FAN_DELETE: u64 = 0x0000_0200;
/// Self was deleted.
pub const FAN_DELETE_SELF: u64 = 0x0000_0400;
/// Self was moved.
pub const FAN_MOVE_SELF: u64 = 0x0000_0800;
/// File was opened for exec.
pub const FAN_OPEN_EXEC: u64 = 0x0000_1000;
/// Event queue overflowed.
pub const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
/// Filesystem error.
pub const FAN_FS_ERROR: u64 = 0x0000_8000;
/// File open in permission check.
pub const FAN_OPEN_PERM: u64 = 0x0001_0000;
/// File accessed in permission check.
pub const FAN_ACCESS_PERM: u64 = 0x0002_0000;
/// File open/exec in permission check.
pub const FAN_OPEN_EXEC_PERM: u64 = 0x0004_0000;
/// Pre-content access hook.
pub const FAN_PRE_ACCESS: u64 = 0x0010_0000;
/// Pre-content event at page-fault time, on a page cache miss (added by the
/// fault-time pre-content series; not in mainline 7.3, where marking it gives
/// EINVAL).  A mark with it must also have [`FAN_PRE_ACCESS`]; mmap() then
/// sends that mark no whole-range event.
pub const FAN_PRE_FAULT: u64 = 0x0020_0000;
/// Pre-content event on a directory about to be looked up in or listed
/// (patch 9 of the fault-time series, "lazy directories"; not in mainline
/// 7.3, where marking it gives EINVAL).  Only for FAN_CLASS_PRE_CONTENT
/// groups; an inode mark must be on a directory.  The event's fd is the
/// directory (O_RDONLY); a lookup of a name not in the dcache carries a
/// [`FAN_EVENT_INFO_TYPE_NAME`] record with it, a getdents() none.
pub const FAN_PRE_DIR_ACCESS: u64 = 0x0040_0000;
/// Mount was attached.
pub const FAN_MNT_ATTACH: u64 = 0x0100_0000;
/// Mount was detached.
pub const FAN_MNT_DETACH: u64 = 0x0200_0000;
/// Interested in child events.
pub const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;
/// File was renamed.
pub const FAN_RENAME: u64 = 0x1000_0000;
/// Event occurred against a directory.
pub const FAN_ONDIR: u64 = 0x4000_0000;

/// `FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE`.
pub const FAN_CLOSE: u64 = FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
/// `FAN_MOVED_FROM | FAN_MOVED_TO`.
pub const FAN_MOVE: u64 = FAN_MOVED_FROM | FAN_MOVED_TO;

/// Every event that waits for a userspace response (not an upstream macro;
/// the union of the upstream permission events).
pub const FAN_PERM_EVENTS: u64 = FAN_OPEN_PERM
    | FAN_ACCESS_PERM
    | FAN_OPEN_EXEC_PERM
    | FAN_PRE_ACCESS
    | FAN_PRE_FAULT
    | FAN_PRE_DIR_ACCESS;

// ---------------------------------------------------------------------------
// fanotify_init() flags.
// ---------------------------------------------------------------------------

pub const FAN_CLOEXEC: u32 = 0x0000_0001;
pub const FAN_NONBLOCK: u32 = 0x0000_0002;
pub const FAN_CLASS_NOTIF: u32 = 0x0000_0000;
pub const FAN_CLASS_CONTENT: u32 = 0x0000_0004;
pub const FAN_CLASS_PRE_CONTENT: u32 = 0x0000_0008;
pub const FAN_UNLIMITED_QUEUE: u32 = 0x0000_0010;
pub const FAN_UNLIMITED_MARKS: u32 = 0x0000_0020;
pub const FAN_ENABLE_AUDIT: u32 = 0x0000_0040;
pub const FAN_REPORT_PIDFD: u32 = 0x0000_0080;
pub const FAN_REPORT_TID: u32 = 0x0000_0100;
pub const FAN_REPORT_FID: u32 = 0x0000_0200;
pub const FAN_REPORT_DIR_FID: u32 = 0x0000_0400;
pub const FAN_REPORT_NAME: u32 = 0x0000_0800;
pub const FAN_REPORT_TARGET_FID: u32 = 0x0000_1000;
pub const FAN_REPORT_FD_ERROR: u32 = 0x0000_2000;
pub const FAN_REPORT_MNT: u32 = 0x0000_4000;
/// `FAN_REPORT_DIR_FID | FAN_REPORT_NAME`.
pub const FAN_REPORT_DFID_NAME: u32 = FAN_REPORT_DIR_FID | FAN_REPORT_NAME;
/// `FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID`.
pub const FAN_REPORT_DFID_NAME_TARGET: u32 =
    FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID;

// ---------------------------------------------------------------------------
// fanotify_mark() flags.
// ---------------------------------------------------------------------------

pub const FAN_MARK_ADD: u32 = 0x0000_0001;
pub const FAN_MARK_REMOVE: u32 = 0x0000_0002;
pub const FAN_MARK_DONT_FOLLOW: u32 = 0x0000_0004;
pub const FAN_MARK_ONLYDIR: u32 = 0x0000_0008;
pub const FAN_MARK_IGNORED_MASK: u32 = 0x0000_0020;
pub const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x0000_0040;
pub const FAN_MARK_FLUSH: u32 = 0x0000_0080;
pub const FAN_MARK_EVICTABLE: u32 = 0x0000_0200;
pub const FAN_MARK_IGNORE: u32 = 0x0000_0400;
pub const FAN_MARK_INODE: u32 = 0x0000_0000;
pub const FAN_MARK_MOUNT: u32 = 0x0000_0010;
pub const FAN_MARK_FILESYSTEM: u32 = 0x0000_0100;
pub const FAN_MARK_MNTNS: u32 = 0x0000_0110;
/// `FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY`.
pub const FAN_MARK_IGNORE_SURV: u32 = FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY;

// ---------------------------------------------------------------------------
// Event metadata and info records.
// ---------------------------------------------------------------------------

pub const FANOTIFY_METADATA_VERSION: u8 = 3;
/// `sizeof(struct fanotify_event_metadata)`.
pub const FAN_EVENT_METADATA_LEN: usize = 24;

pub const FAN_EVENT_INFO_TYPE_FID: u8 = 1;
pub const FAN_EVENT_INFO_TYPE_DFID_NAME: u8 = 2;
pub const FAN_EVENT_INFO_TYPE_DFID: u8 = 3;
pub const FAN_EVENT_INFO_TYPE_PIDFD: u8 = 4;
pub const FAN_EVENT_INFO_TYPE_ERROR: u8 = 5;
pub const FAN_EVENT_INFO_TYPE_RANGE: u8 = 6;
pub const FAN_EVENT_INFO_TYPE_MNT: u8 = 7;
/// `struct fanotify_event_info_name { hdr; char name[]; }`: the name a
/// [`FAN_PRE_DIR_ACCESS`] event looks up, NUL-terminated, the record padded
/// with zeros to a multiple of 4 bytes (patch 9 of the series).
pub const FAN_EVENT_INFO_TYPE_NAME: u8 = 8;
pub const FAN_EVENT_INFO_TYPE_OLD_DFID_NAME: u8 = 10;
pub const FAN_EVENT_INFO_TYPE_NEW_DFID_NAME: u8 = 12;

// ---------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------

pub const FAN_RESPONSE_INFO_NONE: u8 = 0;
pub const FAN_RESPONSE_INFO_AUDIT_RULE: u8 = 1;

pub const FAN_ALLOW: u32 = 0x01;
pub const FAN_DENY: u32 = 0x02;
pub const FAN_ERRNO_BITS: u32 = 8;
pub const FAN_ERRNO_SHIFT: u32 = 32 - FAN_ERRNO_BITS;
pub const FAN_ERRNO_MASK: u32 = (1 << FAN_ERRNO_BITS) - 1;
/// Bitmask to create an audit record for the result.
pub const FAN_AUDIT: u32 = 0x10;
/// Bitmask to indicate additional information follows the response.
pub const FAN_INFO: u32 = 0x20;

/// `FAN_DENY_ERRNO(err)`: deny with a specific errno (low 8 bits of `err`).
pub const fn fan_deny_errno(err: i32) -> u32 {
    FAN_DENY | (((err as u32) & FAN_ERRNO_MASK) << FAN_ERRNO_SHIFT)
}

/// No fd set in event.
pub const FAN_NOFD: i32 = -1;
/// No pidfd in a pidfd info record.
pub const FAN_NOPIDFD: i32 = FAN_NOFD;
/// Creating the pidfd failed.
pub const FAN_EPIDFD: i32 = -2;
