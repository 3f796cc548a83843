//! Error types.

use std::path::PathBuf;

use nix::errno::Errno;

/// A malformed `read(2)` buffer.  Offsets are byte offsets into the buffer
/// handed to [`crate::parse_events`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes remain than an event's metadata needs.
    #[error("truncated event metadata at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        offset: usize,
        need: usize,
        have: usize,
    },
    /// `event_len` is smaller than the metadata or runs past the buffer.
    #[error("bad event_len {len} at offset {offset}")]
    BadEventLen { offset: usize, len: u32 },
    /// `metadata_len` is smaller than `struct fanotify_event_metadata`.
    #[error("bad metadata_len {len} at offset {offset}")]
    BadMetadataLen { offset: usize, len: u16 },
    /// `vers` is not [`crate::consts::FANOTIFY_METADATA_VERSION`].
    #[error("unsupported fanotify metadata version {0}")]
    BadVersion(u8),
    /// Fewer bytes remain in the event than an info record header needs.
    #[error("truncated info record header at offset {offset}: {have} bytes left in event")]
    InfoTruncated { offset: usize, have: usize },
    /// An info record's `len` is below the header size or runs past the event.
    #[error("bad info record len {len} (type {info_type}) at offset {offset}")]
    BadInfoLen {
        offset: usize,
        info_type: u8,
        len: u16,
    },
    /// An info record is shorter than the fixed part of its type.
    #[error(
        "info record of type {info_type} at offset {offset} too short: len {len}, need {need}"
    )]
    InfoTooShort {
        offset: usize,
        info_type: u8,
        len: u16,
        need: usize,
    },
    /// A file handle's `handle_bytes` does not fit inside its record.
    #[error("file handle at offset {offset}: handle_bytes {handle_bytes} exceeds the {room} bytes left in the record")]
    BadHandle {
        offset: usize,
        handle_bytes: u32,
        room: usize,
    },
    /// A name after a file handle has no terminating NUL inside its record.
    #[error("name in info record at offset {offset} is not NUL-terminated")]
    NameNotTerminated { offset: usize },
}

/// Any failure of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fanotify_init(flags={flags:#x}): {source}")]
    Init { flags: u32, source: Errno },
    #[error("fanotify_mark({path:?}, flags={flags:#x}, mask={mask:#x}): {source}")]
    Mark {
        path: PathBuf,
        mask: u64,
        flags: u32,
        source: Errno,
    },
    #[error("read from fanotify fd: {0}")]
    Read(#[source] Errno),
    #[error("poll on fanotify fd: {0}")]
    Poll(#[source] Errno),
    #[error("write fanotify response for fd {fd}: {source}")]
    Respond { fd: i32, source: Errno },
    #[error("parse fanotify events: {0}")]
    Parse(#[from] ParseError),
}

impl Error {
    /// The errno of a failed system call, `None` for parse errors.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Init { source, .. }
            | Error::Mark { source, .. }
            | Error::Respond { source, .. } => Some(*source),
            Error::Read(e) | Error::Poll(e) => Some(*e),
            Error::Parse(_) => None,
        }
    }
}
