//! Pure parser for the byte stream returned by `read(2)` on a fanotify fd.
//!
//! Every length is checked before any field is read; all fields are decoded
//! with `from_ne_bytes` on bounds-checked slices.  Malformed input yields a
//! [`ParseError`], never a panic.

use std::ffi::OsString;
use std::mem::{offset_of, size_of};
use std::os::unix::ffi::OsStringExt;

use crate::consts::*;
use crate::error::ParseError;

/// Byte range of a `FAN_PRE_ACCESS` event (`FAN_EVENT_INFO_TYPE_RANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub offset: u64,
    pub count: u64,
}

/// One info record following the event metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoRecord {
    /// `FID`, `DFID`, `DFID_NAME`, `OLD_DFID_NAME` or `NEW_DFID_NAME`.
    /// `name` is `Some` exactly for the `*_DFID_NAME` types.
    Fid {
        info_type: u8,
        fsid: [i32; 2],
        handle_type: i32,
        handle: Vec<u8>,
        name: Option<OsString>,
    },
    /// The raw pidfd value: a descriptor (>= 0), [`FAN_NOPIDFD`] or [`FAN_EPIDFD`].
    Pidfd(i32),
    Error {
        error: i32,
        error_count: u32,
    },
    Range(Range),
    Mnt(u64),
    /// `FAN_EVENT_INFO_TYPE_NAME`: the name a `FAN_PRE_DIR_ACCESS` event
    /// looks up in its directory, without its NUL and padding.
    Name(OsString),
    /// A record of a type this crate does not know; `data` is the record
    /// without its 4-byte header.
    Unknown {
        info_type: u8,
        data: Vec<u8>,
    },
}

/// An event as found in the buffer: `fd` is the raw number (no ownership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub info: Vec<InfoRecord>,
}

impl RawEvent {
    /// Descriptors (>= 0) this event installed in the reader: its fd and any pidfds.
    pub fn fds(&self) -> impl Iterator<Item = i32> + '_ {
        std::iter::once(self.fd)
            .chain(self.info.iter().filter_map(|r| match r {
                InfoRecord::Pidfd(p) => Some(*p),
                _ => None,
            }))
            .filter(|fd| *fd >= 0)
    }

    /// Whether the kernel waits for a response to this event.
    pub fn needs_response(&self) -> bool {
        self.fd >= 0 && self.mask & FAN_PERM_EVENTS != 0
    }
}

/// A descriptor that appeared in a buffer but belongs to no event returned
/// by [`parse_events_partial`] (because parsing failed at or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrayFd {
    pub fd: i32,
    /// An event fd of a permission event: the kernel waits for a response.
    pub needs_response: bool,
}

/// Result of [`parse_events_partial`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseOutcome {
    /// Events fully parsed before the first error.
    pub events: Vec<RawEvent>,
    /// The first error, if any.
    pub error: Option<ParseError>,
    /// Best-effort list of descriptors found at and after the failing event
    /// (the failing event's fd and pidfds parsed before the error, then every
    /// later event that can still be framed).  Empty when `error` is `None`.
    pub stray_fds: Vec<StrayFd>,
}

/// `struct fanotify_event_info_header`, mirrored to get the C layout.
#[repr(C)]
struct InfoHeader {
    _info_type: u8,
    _pad: u8,
    _len: u16,
}

/// `struct fanotify_event_info_mnt`: `mnt_id` is naturally aligned, so on
/// most ABIs there are 4 bytes of padding after the header (size 16).
#[repr(C)]
struct InfoMnt {
    _hdr: InfoHeader,
    mnt_id: u64,
}

const HDR_LEN: usize = size_of::<InfoHeader>();
/// Header + `__kernel_fsid_t` + `handle_bytes` + `handle_type`.
pub const FID_INFO_MIN_LEN: usize = HDR_LEN + 8 + 8;
pub const PIDFD_INFO_LEN: usize = 8;
pub const ERROR_INFO_LEN: usize = 12;
pub const RANGE_INFO_LEN: usize = 24;
/// `sizeof(struct fanotify_event_info_mnt)` on this ABI.
pub const MNT_INFO_LEN: usize = size_of::<InfoMnt>();
/// Offset of `mnt_id` inside `struct fanotify_event_info_mnt` on this ABI.
pub const MNT_INFO_ID_OFFSET: usize = offset_of!(InfoMnt, mnt_id);

fn array<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    buf.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    array(buf, off).map(u16::from_ne_bytes)
}
fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    array(buf, off).map(u32::from_ne_bytes)
}
fn i32_at(buf: &[u8], off: usize) -> Option<i32> {
    array(buf, off).map(i32::from_ne_bytes)
}
fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    array(buf, off).map(u64::from_ne_bytes)
}

/// Parse a whole buffer; fails on the first malformed event.
pub fn parse_events(buf: &[u8]) -> Result<Vec<RawEvent>, ParseError> {
    let out = parse_events_partial(buf);
    match out.error {
        Some(e) => Err(e),
        None => Ok(out.events),
    }
}

/// Parse as much of a buffer as possible, recording every descriptor seen so
/// that the caller can close them all even when parsing fails.
pub fn parse_events_partial(buf: &[u8]) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    let mut off = 0;
    while off < buf.len() {
        match parse_one(buf, off) {
            Ok((ev, next)) => {
                out.events.push(ev);
                off = next;
            }
            Err(f) => {
                out.error = Some(f.error);
                out.stray_fds = f.fds;
                if let Some(next) = f.next {
                    collect_stray(buf, next, &mut out.stray_fds);
                }
                break;
            }
        }
    }
    out
}

/// Best-effort walk over the rest of a buffer after an error.
fn collect_stray(buf: &[u8], mut off: usize, fds: &mut Vec<StrayFd>) {
    while off < buf.len() {
        match parse_one(buf, off) {
            Ok((ev, next)) => {
                let needs_response = ev.needs_response();
                fds.extend(ev.fds().map(|fd| StrayFd {
                    fd,
                    needs_response: needs_response && fd == ev.fd,
                }));
                off = next;
            }
            Err(f) => {
                fds.extend(f.fds);
                match f.next {
                    Some(next) => off = next,
                    None => break,
                }
            }
        }
    }
}

struct Failure {
    error: ParseError,
    /// Descriptors seen in the failing event.
    fds: Vec<StrayFd>,
    /// Where the next event starts, if the failing one could be framed.
    next: Option<usize>,
}

fn parse_one(buf: &[u8], off: usize) -> Result<(RawEvent, usize), Failure> {
    let have = buf.len().saturating_sub(off);
    let truncated = || Failure {
        error: ParseError::Truncated {
            offset: off,
            need: FAN_EVENT_METADATA_LEN,
            have,
        },
        fds: Vec::new(),
        next: None,
    };
    let meta = match buf.get(off..) {
        Some(m) if m.len() >= FAN_EVENT_METADATA_LEN => m,
        _ => return Err(truncated()),
    };
    let (Some(event_len), Some(&vers), Some(metadata_len), Some(mask), Some(fd), Some(pid)) = (
        u32_at(meta, 0),
        meta.get(4),
        u16_at(meta, 6),
        u64_at(meta, 8),
        i32_at(meta, 16),
        i32_at(meta, 20),
    ) else {
        return Err(truncated());
    };
    if vers != FANOTIFY_METADATA_VERSION {
        // Unknown layout: nothing in it can be trusted, not even the fd.
        return Err(Failure {
            error: ParseError::BadVersion(vers),
            fds: Vec::new(),
            next: None,
        });
    }
    let needs_response = mask & FAN_PERM_EVENTS != 0;
    let mut fds = Vec::new();
    if fd >= 0 {
        fds.push(StrayFd { fd, needs_response });
    }
    let ev_len = usize::try_from(event_len).unwrap_or(usize::MAX);
    if ev_len < FAN_EVENT_METADATA_LEN || ev_len > meta.len() {
        return Err(Failure {
            error: ParseError::BadEventLen {
                offset: off,
                len: event_len,
            },
            fds,
            next: None,
        });
    }
    let next = off + ev_len;
    let md_len = usize::from(metadata_len);
    if md_len < FAN_EVENT_METADATA_LEN {
        return Err(Failure {
            error: ParseError::BadMetadataLen {
                offset: off,
                len: metadata_len,
            },
            fds,
            next: Some(next),
        });
    }
    if md_len > ev_len {
        return Err(Failure {
            error: ParseError::BadEventLen {
                offset: off,
                len: event_len,
            },
            fds,
            next: Some(next),
        });
    }
    let event = &meta[..ev_len];
    let mut info = Vec::new();
    let mut pos = md_len;
    while pos < ev_len {
        match parse_record(event, pos, off) {
            Ok((rec, len)) => {
                if let InfoRecord::Pidfd(p) = rec {
                    if p >= 0 {
                        fds.push(StrayFd {
                            fd: p,
                            needs_response: false,
                        });
                    }
                }
                info.push(rec);
                pos += len;
            }
            Err(error) => {
                return Err(Failure {
                    error,
                    fds,
                    next: Some(next),
                })
            }
        }
    }
    Ok((
        RawEvent {
            mask,
            fd,
            pid,
            info,
        },
        next,
    ))
}

/// Parse the record at `pos` of `event` (which starts at `base` in the
/// buffer).  Returns the record and its length.
fn parse_record(event: &[u8], pos: usize, base: usize) -> Result<(InfoRecord, usize), ParseError> {
    let offset = base + pos;
    let rest = event.get(pos..).unwrap_or_default();
    let (Some(&info_type), Some(len)) = (rest.first(), u16_at(rest, 2)) else {
        return Err(ParseError::InfoTruncated {
            offset,
            have: rest.len(),
        });
    };
    let rec_len = usize::from(len);
    if rec_len < HDR_LEN || rec_len > rest.len() {
        return Err(ParseError::BadInfoLen {
            offset,
            info_type,
            len,
        });
    }
    let rec = &rest[..rec_len];
    let too_short = |need: usize| ParseError::InfoTooShort {
        offset,
        info_type,
        len,
        need,
    };
    let need = |n: usize| {
        if rec_len < n {
            Err(too_short(n))
        } else {
            Ok(())
        }
    };
    let record = match info_type {
        FAN_EVENT_INFO_TYPE_FID
        | FAN_EVENT_INFO_TYPE_DFID
        | FAN_EVENT_INFO_TYPE_DFID_NAME
        | FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
        | FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => parse_fid(rec, info_type, offset, too_short)?,
        FAN_EVENT_INFO_TYPE_PIDFD => {
            need(PIDFD_INFO_LEN)?;
            InfoRecord::Pidfd(i32_at(rec, 4).ok_or_else(|| too_short(PIDFD_INFO_LEN))?)
        }
        FAN_EVENT_INFO_TYPE_ERROR => {
            need(ERROR_INFO_LEN)?;
            match (i32_at(rec, 4), u32_at(rec, 8)) {
                (Some(error), Some(error_count)) => InfoRecord::Error { error, error_count },
                _ => return Err(too_short(ERROR_INFO_LEN)),
            }
        }
        FAN_EVENT_INFO_TYPE_RANGE => {
            need(RANGE_INFO_LEN)?;
            match (u64_at(rec, 8), u64_at(rec, 16)) {
                (Some(offset), Some(count)) => InfoRecord::Range(Range { offset, count }),
                _ => return Err(too_short(RANGE_INFO_LEN)),
            }
        }
        FAN_EVENT_INFO_TYPE_MNT => {
            need(MNT_INFO_LEN)?;
            InfoRecord::Mnt(u64_at(rec, MNT_INFO_ID_OFFSET).ok_or_else(|| too_short(MNT_INFO_LEN))?)
        }
        FAN_EVENT_INFO_TYPE_NAME => {
            let tail = rec.get(HDR_LEN..).unwrap_or_default();
            let nul = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or(ParseError::NameNotTerminated { offset })?;
            InfoRecord::Name(OsString::from_vec(tail[..nul].to_vec()))
        }
        _ => InfoRecord::Unknown {
            info_type,
            data: rec.get(HDR_LEN..).unwrap_or_default().to_vec(),
        },
    };
    Ok((record, rec_len))
}

fn parse_fid(
    rec: &[u8],
    info_type: u8,
    offset: usize,
    too_short: impl Fn(usize) -> ParseError,
) -> Result<InfoRecord, ParseError> {
    let (Some(f0), Some(f1), Some(handle_bytes), Some(handle_type)) = (
        i32_at(rec, 4),
        i32_at(rec, 8),
        u32_at(rec, 12),
        i32_at(rec, 16),
    ) else {
        return Err(too_short(FID_INFO_MIN_LEN));
    };
    let room = rec.len().saturating_sub(FID_INFO_MIN_LEN);
    let bad_handle = ParseError::BadHandle {
        offset,
        handle_bytes,
        room,
    };
    let hb = match usize::try_from(handle_bytes) {
        Ok(hb) if hb <= room => hb,
        _ => return Err(bad_handle),
    };
    let end = FID_INFO_MIN_LEN + hb;
    let handle = rec.get(FID_INFO_MIN_LEN..end).ok_or(bad_handle)?.to_vec();
    let name = match info_type {
        FAN_EVENT_INFO_TYPE_DFID_NAME
        | FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
        | FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => {
            let tail = rec.get(end..).unwrap_or_default();
            let nul = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or(ParseError::NameNotTerminated { offset })?;
            Some(OsString::from_vec(tail[..nul].to_vec()))
        }
        _ => None,
    };
    Ok(InfoRecord::Fid {
        info_type,
        fsid: [f0, f1],
        handle_type,
        handle,
        name,
    })
}
