//! The fanotify side of lazy directories: the `FAN_PRE_DIR_ACCESS` event
//! bit and its `FAN_EVENT_INFO_TYPE_NAME` info record (new kernel feature,
//! see [`crate::lazy`] for what `hsm-serve` does with them).
//!
//! TODO(merge): move to the fanotify crate.  The constants belong in
//! `fanotify::consts` (and `FAN_PRE_DIR_ACCESS` in its `FAN_PERM_EVENTS`,
//! so that `Event::needs_response()` and the deny-on-parse-error path of
//! `Fanotify::read_events` know it), the record in `fanotify::InfoRecord`
//! (`InfoRecord::Name`) and its parsing in `parse.rs`.  They are here, in
//! one small module, only so that this branch and the one adding them to
//! the fanotify crate do not conflict; until then the crate parses the
//! record as `InfoRecord::Unknown { info_type: 8, .. }`, which
//! [`event_name`] reads.

use fanotify::{Event, InfoRecord};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

// TODO(merge): move to the fanotify crate (fanotify::consts).
/// A path walk is about to ask the filesystem for a name in this directory
/// that the dcache does not know (with a [`FAN_EVENT_INFO_TYPE_NAME`]
/// record), or a `getdents64` of it is about to run (no name record:
/// "populate everything").  For `FAN_CLASS_PRE_CONTENT` groups; inode marks
/// on directories, mount and filesystem marks.  A kernel without it refuses
/// the bit with `EINVAL` at `fanotify_mark`.  The event fd is the directory
/// (`O_RDONLY | O_DIRECTORY`); walks that start at it, and `getdents64` on
/// it, send no `FAN_PRE_DIR_ACCESS`.
pub const FAN_PRE_DIR_ACCESS: u64 = 0x0040_0000;

// TODO(merge): move to the fanotify crate (fanotify::consts).
/// Info record of a `FAN_PRE_DIR_ACCESS` lookup event: `struct
/// fanotify_event_info_header` followed by the NUL-terminated name, padded
/// to 4 bytes (`hdr.len` includes the padding).
pub const FAN_EVENT_INFO_TYPE_NAME: u8 = 8;

/// Length of `struct fanotify_event_info_header`.
const HDR_LEN: usize = 4;

/// Why a name record is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRecordError {
    /// Fewer bytes than the header.
    Truncated(usize),
    /// The header's type is not [`FAN_EVENT_INFO_TYPE_NAME`].
    WrongType(u8),
    /// `hdr.len` is not the record's length, or not a multiple of 4.
    BadLen { len: u16, have: usize },
    /// No NUL byte after the name.
    NotTerminated,
    /// The name is empty.
    Empty,
}

impl std::fmt::Display for NameRecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated(n) => write!(f, "name record of {n} bytes: shorter than its header"),
            Self::WrongType(t) => write!(f, "info record of type {t}, not a name record"),
            Self::BadLen { len, have } => {
                write!(
                    f,
                    "name record: hdr.len {len} for {have} bytes (want equal, a multiple of 4)"
                )
            }
            Self::NotTerminated => f.write_str("name record: the name is not NUL-terminated"),
            Self::Empty => f.write_str("name record: empty name"),
        }
    }
}

impl std::error::Error for NameRecordError {}

// TODO(merge): move to the fanotify crate (parse.rs, as InfoRecord::Name).
/// Parse one whole `FAN_EVENT_INFO_TYPE_NAME` record (header included, as
/// it is in the `read(2)` buffer, `hdr.len` bytes): the name.
pub fn parse_name_record(rec: &[u8]) -> Result<OsString, NameRecordError> {
    if rec.len() < HDR_LEN {
        return Err(NameRecordError::Truncated(rec.len()));
    }
    if rec[0] != FAN_EVENT_INFO_TYPE_NAME {
        return Err(NameRecordError::WrongType(rec[0]));
    }
    let len = u16::from_ne_bytes([rec[2], rec[3]]);
    if usize::from(len) != rec.len() || len & 3 != 0 {
        return Err(NameRecordError::BadLen {
            len,
            have: rec.len(),
        });
    }
    name_from_payload(&rec[HDR_LEN..])
}

/// The name in a record's bytes after its header: up to the first NUL
/// (what follows it is padding).
pub fn name_from_payload(data: &[u8]) -> Result<OsString, NameRecordError> {
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(NameRecordError::NotTerminated)?;
    if nul == 0 {
        return Err(NameRecordError::Empty);
    }
    Ok(OsString::from_vec(data[..nul].to_vec()))
}

// TODO(merge): becomes a method of fanotify::Event (name()).
/// The name of a `FAN_PRE_DIR_ACCESS` event: `Ok(None)` when it has no
/// name record (a `getdents64`: the whole directory is asked for).
pub fn event_name(ev: &Event) -> Result<Option<OsString>, NameRecordError> {
    for r in &ev.info {
        if let InfoRecord::Unknown { info_type, data } = r {
            if *info_type == FAN_EVENT_INFO_TYPE_NAME {
                return name_from_payload(data).map(Some);
            }
        }
    }
    Ok(None)
}

/// A name record as the kernel writes it (for tests of the parser and of
/// the event loop without the kernel): header, name, NUL, zero padding to
/// 4 bytes.
pub fn encode_name_record(name: &[u8]) -> Vec<u8> {
    let len = (HDR_LEN + name.len() + 1).div_ceil(4) * 4;
    let mut v = Vec::with_capacity(len);
    v.push(FAN_EVENT_INFO_TYPE_NAME);
    v.push(0);
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(name);
    v.resize(len, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanotify::consts::{FANOTIFY_METADATA_VERSION, FAN_EVENT_METADATA_LEN};

    #[test]
    fn round_trip_and_padding() {
        for name in [
            &b"a"[..],
            b"ab",
            b"abc",
            b"abcd",
            b"with space\xff",
            &[b'x'; 255],
        ] {
            let rec = encode_name_record(name);
            assert_eq!(rec.len() % 4, 0, "{name:?}");
            assert!(rec.len() > HDR_LEN + name.len());
            assert!(rec.len() < HDR_LEN + name.len() + 1 + 4);
            assert_eq!(
                parse_name_record(&rec).unwrap(),
                OsString::from_vec(name.to_vec())
            );
        }
        // "abc" + NUL fills the 4 bytes after the header exactly.
        assert_eq!(encode_name_record(b"abc").len(), 8);
        assert_eq!(encode_name_record(b"abcd").len(), 12);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse_name_record(&[8, 0]),
            Err(NameRecordError::Truncated(2))
        );
        let mut rec = encode_name_record(b"name");
        rec[0] = 6;
        assert_eq!(parse_name_record(&rec), Err(NameRecordError::WrongType(6)));
        let mut rec = encode_name_record(b"name");
        rec[2] = 9;
        assert!(matches!(
            parse_name_record(&rec),
            Err(NameRecordError::BadLen { .. })
        ));
        // No NUL: the name fills the record.
        let mut rec = vec![8, 0];
        rec.extend_from_slice(&8u16.to_ne_bytes());
        rec.extend_from_slice(b"abcd");
        assert_eq!(parse_name_record(&rec), Err(NameRecordError::NotTerminated));
        let mut rec = vec![8, 0];
        rec.extend_from_slice(&8u16.to_ne_bytes());
        rec.extend_from_slice(&[0; 4]);
        assert_eq!(parse_name_record(&rec), Err(NameRecordError::Empty));
        // Garbage after the NUL is padding.
        assert_eq!(name_from_payload(b"ab\0z").unwrap(), OsString::from("ab"));
    }

    /// A whole event as read(2) returns it, through the fanotify crate's
    /// parser (which keeps the record as Unknown until the merge).
    #[test]
    fn through_the_event_parser() {
        let rec = encode_name_record(b"lib");
        let ev_len = FAN_EVENT_METADATA_LEN + rec.len();
        let mut buf = Vec::new();
        buf.extend_from_slice(&(ev_len as u32).to_ne_bytes());
        buf.push(FANOTIFY_METADATA_VERSION);
        buf.push(0);
        buf.extend_from_slice(&(FAN_EVENT_METADATA_LEN as u16).to_ne_bytes());
        buf.extend_from_slice(&FAN_PRE_DIR_ACCESS.to_ne_bytes());
        buf.extend_from_slice(&(-1i32).to_ne_bytes());
        buf.extend_from_slice(&42i32.to_ne_bytes());
        buf.extend_from_slice(&rec);
        let evs = fanotify::parse_events(&buf).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].mask, FAN_PRE_DIR_ACCESS);
        let InfoRecord::Unknown { info_type, data } = &evs[0].info[0] else {
            panic!("{:?}", evs[0].info);
        };
        assert_eq!(*info_type, FAN_EVENT_INFO_TYPE_NAME);
        assert_eq!(name_from_payload(data).unwrap(), OsString::from("lib"));
    }

    #[test]
    fn bit_is_free() {
        use fanotify::consts::*;
        let known = FAN_PERM_EVENTS | FAN_ONDIR | FAN_EVENT_ON_CHILD | FAN_Q_OVERFLOW;
        assert_eq!(FAN_PRE_DIR_ACCESS & known, 0);
        assert!(![
            FAN_EVENT_INFO_TYPE_FID,
            FAN_EVENT_INFO_TYPE_DFID_NAME,
            FAN_EVENT_INFO_TYPE_DFID,
            FAN_EVENT_INFO_TYPE_PIDFD,
            FAN_EVENT_INFO_TYPE_ERROR,
            FAN_EVENT_INFO_TYPE_RANGE,
            FAN_EVENT_INFO_TYPE_MNT,
            FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
            FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
        ]
        .contains(&FAN_EVENT_INFO_TYPE_NAME));
    }
}
