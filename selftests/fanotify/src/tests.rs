use std::ffi::OsString;
use std::fs::File;
use std::os::fd::IntoRawFd;

use super::consts::*;
use super::*;

// ---------------------------------------------------------------------------
// Buffer builders.
// ---------------------------------------------------------------------------

fn metadata(event_len: u32, vers: u8, metadata_len: u16, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&event_len.to_ne_bytes());
    b.push(vers);
    b.push(0);
    b.extend_from_slice(&metadata_len.to_ne_bytes());
    b.extend_from_slice(&mask.to_ne_bytes());
    b.extend_from_slice(&fd.to_ne_bytes());
    b.extend_from_slice(&pid.to_ne_bytes());
    b
}

/// A well-formed event carrying `records`.
fn event(mask: u64, fd: i32, pid: i32, records: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = records.concat();
    let len = u32::try_from(24 + body.len()).unwrap();
    let mut b = metadata(len, FANOTIFY_METADATA_VERSION, 24, mask, fd, pid);
    b.extend_from_slice(&body);
    b
}

/// An info record with an explicit header `len`.
fn record_with_len(info_type: u8, len: u16, body: &[u8]) -> Vec<u8> {
    let mut b = vec![info_type, 0];
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(body);
    b
}

/// An info record whose header `len` covers `body`.
fn record(info_type: u8, body: &[u8]) -> Vec<u8> {
    record_with_len(info_type, u16::try_from(4 + body.len()).unwrap(), body)
}

fn range_rec(offset: u64, count: u64) -> Vec<u8> {
    let mut body = 0u32.to_ne_bytes().to_vec();
    body.extend_from_slice(&offset.to_ne_bytes());
    body.extend_from_slice(&count.to_ne_bytes());
    record(FAN_EVENT_INFO_TYPE_RANGE, &body)
}

fn pidfd_rec(pidfd: i32) -> Vec<u8> {
    record(FAN_EVENT_INFO_TYPE_PIDFD, &pidfd.to_ne_bytes())
}

fn error_rec(error: i32, count: u32) -> Vec<u8> {
    let mut body = error.to_ne_bytes().to_vec();
    body.extend_from_slice(&count.to_ne_bytes());
    record(FAN_EVENT_INFO_TYPE_ERROR, &body)
}

fn mnt_rec(mnt_id: u64) -> Vec<u8> {
    let mut body = vec![0u8; MNT_INFO_ID_OFFSET - 4];
    body.extend_from_slice(&mnt_id.to_ne_bytes());
    body.resize(MNT_INFO_LEN - 4, 0);
    record(FAN_EVENT_INFO_TYPE_MNT, &body)
}

/// A name record as patch 9 of the series writes it: the header, the name,
/// its NUL, zeros up to a multiple of 4 bytes; `len` covers all of it.
fn name_rec(name: &[u8]) -> Vec<u8> {
    let mut body = name.to_vec();
    body.push(0);
    body.resize((4 + body.len()).next_multiple_of(4) - 4, 0);
    record(FAN_EVENT_INFO_TYPE_NAME, &body)
}

/// Fid record body (without header) with `handle_bytes` given explicitly.
fn fid_body(fsid: [i32; 2], handle_bytes: u32, handle_type: i32, handle: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&fsid[0].to_ne_bytes());
    body.extend_from_slice(&fsid[1].to_ne_bytes());
    body.extend_from_slice(&handle_bytes.to_ne_bytes());
    body.extend_from_slice(&handle_type.to_ne_bytes());
    body.extend_from_slice(handle);
    body
}

/// A fid record as the kernel writes it: optional NUL-terminated name,
/// padded to 4 bytes.
fn fid_rec(
    info_type: u8,
    fsid: [i32; 2],
    handle_type: i32,
    handle: &[u8],
    name: Option<&str>,
) -> Vec<u8> {
    let hb = u32::try_from(handle.len()).unwrap();
    let mut body = fid_body(fsid, hb, handle_type, handle);
    if let Some(n) = name {
        body.extend_from_slice(n.as_bytes());
        body.push(0);
    }
    // The 4-byte header keeps the 4-byte alignment of the body.
    body.resize(body.len().next_multiple_of(4), 0);
    record(info_type, &body)
}

fn raw(mask: u64, fd: i32, pid: i32, info: Vec<InfoRecord>) -> RawEvent {
    RawEvent {
        mask,
        fd,
        pid,
        info,
    }
}

// ---------------------------------------------------------------------------
// Successful parses.
// ---------------------------------------------------------------------------

#[test]
fn parse_ok_table() {
    let handle = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
    let cases: Vec<(&str, Vec<u8>, Vec<RawEvent>)> = vec![
        ("empty buffer", vec![], vec![]),
        (
            "single event, no info",
            event(FAN_OPEN, 7, 42, &[]),
            vec![raw(FAN_OPEN, 7, 42, vec![])],
        ),
        (
            "two back-to-back events",
            [
                event(FAN_OPEN, 7, 1, &[]),
                event(FAN_CLOSE_NOWRITE, 8, 2, &[]),
            ]
            .concat(),
            vec![
                raw(FAN_OPEN, 7, 1, vec![]),
                raw(FAN_CLOSE_NOWRITE, 8, 2, vec![]),
            ],
        ),
        (
            "overflow event without fd",
            event(FAN_Q_OVERFLOW, FAN_NOFD, 0, &[]),
            vec![raw(FAN_Q_OVERFLOW, -1, 0, vec![])],
        ),
        (
            "range record",
            event(FAN_PRE_ACCESS, 9, 3, &[range_rec(4096, 8192)]),
            vec![raw(
                FAN_PRE_ACCESS,
                9,
                3,
                vec![InfoRecord::Range(Range {
                    offset: 4096,
                    count: 8192,
                })],
            )],
        ),
        (
            "pidfd + range",
            event(FAN_PRE_ACCESS, 9, 3, &[pidfd_rec(11), range_rec(0, 1)]),
            vec![raw(
                FAN_PRE_ACCESS,
                9,
                3,
                vec![
                    InfoRecord::Pidfd(11),
                    InfoRecord::Range(Range {
                        offset: 0,
                        count: 1,
                    }),
                ],
            )],
        ),
        (
            "fid + dfid_name with name",
            event(
                FAN_CREATE,
                FAN_NOFD,
                5,
                &[
                    fid_rec(FAN_EVENT_INFO_TYPE_FID, [1, 2], 0x81, &handle, None),
                    fid_rec(
                        FAN_EVENT_INFO_TYPE_DFID_NAME,
                        [1, 2],
                        0x81,
                        &handle[..4],
                        Some("file.txt"),
                    ),
                ],
            ),
            vec![raw(
                FAN_CREATE,
                -1,
                5,
                vec![
                    InfoRecord::Fid {
                        info_type: FAN_EVENT_INFO_TYPE_FID,
                        fsid: [1, 2],
                        handle_type: 0x81,
                        handle: handle.to_vec(),
                        name: None,
                    },
                    InfoRecord::Fid {
                        info_type: FAN_EVENT_INFO_TYPE_DFID_NAME,
                        fsid: [1, 2],
                        handle_type: 0x81,
                        handle: handle[..4].to_vec(),
                        name: Some(OsString::from("file.txt")),
                    },
                ],
            )],
        ),
        (
            "old/new dfid_name (rename)",
            event(
                FAN_RENAME,
                FAN_NOFD,
                5,
                &[
                    fid_rec(FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, [0, 0], 1, &[], Some("a")),
                    fid_rec(
                        FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                        [0, 0],
                        1,
                        &[],
                        Some("bb"),
                    ),
                ],
            ),
            vec![raw(
                FAN_RENAME,
                -1,
                5,
                vec![
                    InfoRecord::Fid {
                        info_type: FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
                        fsid: [0, 0],
                        handle_type: 1,
                        handle: vec![],
                        name: Some(OsString::from("a")),
                    },
                    InfoRecord::Fid {
                        info_type: FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                        fsid: [0, 0],
                        handle_type: 1,
                        handle: vec![],
                        name: Some(OsString::from("bb")),
                    },
                ],
            )],
        ),
        (
            "error record",
            event(FAN_FS_ERROR, FAN_NOFD, 0, &[error_rec(-libc::EIO, 3)]),
            vec![raw(
                FAN_FS_ERROR,
                -1,
                0,
                vec![InfoRecord::Error {
                    error: -libc::EIO,
                    error_count: 3,
                }],
            )],
        ),
        (
            "mnt record",
            event(FAN_MNT_ATTACH, FAN_NOFD, 0, &[mnt_rec(0x1234_5678_9abc)]),
            vec![raw(
                FAN_MNT_ATTACH,
                -1,
                0,
                vec![InfoRecord::Mnt(0x1234_5678_9abc)],
            )],
        ),
        (
            "name record without padding (the NUL ends a 4-byte word)",
            event(FAN_PRE_DIR_ACCESS, 9, 3, &[name_rec(b"abc")]),
            vec![raw(
                FAN_PRE_DIR_ACCESS,
                9,
                3,
                vec![InfoRecord::Name(OsString::from("abc"))],
            )],
        ),
        (
            "getdents: a FAN_PRE_DIR_ACCESS without records",
            event(FAN_PRE_DIR_ACCESS, 9, 3, &[]),
            vec![raw(FAN_PRE_DIR_ACCESS, 9, 3, vec![])],
        ),
        (
            "pidfd + name, then another event",
            [
                event(FAN_PRE_DIR_ACCESS, 9, 3, &[pidfd_rec(10), name_rec(b"x")]),
                event(FAN_PRE_DIR_ACCESS, 11, 3, &[]),
            ]
            .concat(),
            vec![
                raw(
                    FAN_PRE_DIR_ACCESS,
                    9,
                    3,
                    vec![InfoRecord::Pidfd(10), InfoRecord::Name(OsString::from("x"))],
                ),
                raw(FAN_PRE_DIR_ACCESS, 11, 3, vec![]),
            ],
        ),
        (
            "unknown type kept",
            event(
                FAN_OPEN,
                7,
                1,
                &[record(200, &[1, 2, 3, 4, 5]), range_rec(1, 2)],
            ),
            vec![raw(
                FAN_OPEN,
                7,
                1,
                vec![
                    InfoRecord::Unknown {
                        info_type: 200,
                        data: vec![1, 2, 3, 4, 5],
                    },
                    InfoRecord::Range(Range {
                        offset: 1,
                        count: 2,
                    }),
                ],
            )],
        ),
        (
            "metadata_len > 24 skips extended metadata",
            {
                let mut b = metadata(24 + 8 + 8, 3, 32, FAN_OPEN, 7, 1);
                b.extend_from_slice(&[0xff; 8]);
                b.extend_from_slice(&pidfd_rec(12));
                b
            },
            vec![raw(FAN_OPEN, 7, 1, vec![InfoRecord::Pidfd(12)])],
        ),
    ];
    for (name, buf, want) in cases {
        assert_eq!(parse_events(&buf), Ok(want), "case {name}");
        let out = parse_events_partial(&buf);
        assert_eq!(out.error, None, "case {name}");
        assert!(out.stray_fds.is_empty(), "case {name}");
    }
}

/// The layout of patch 9's name record, built byte by byte: header (type 8,
/// pad 0, len 12), "abcde", its NUL, two bytes of zero padding, and then a
/// range record that must be found right after the padding.
#[test]
fn name_record_with_padding_then_another_record() {
    let mut rec = vec![FAN_EVENT_INFO_TYPE_NAME, 0];
    rec.extend_from_slice(&12u16.to_ne_bytes());
    rec.extend_from_slice(b"abcde\0\0\0");
    assert_eq!(rec, name_rec(b"abcde"), "the builder writes the same bytes");
    let buf = event(FAN_PRE_DIR_ACCESS, 9, 3, &[rec, range_rec(7, 8)]);
    let evs = parse_events(&buf).expect("parse");
    assert_eq!(
        evs,
        vec![raw(
            FAN_PRE_DIR_ACCESS,
            9,
            3,
            vec![
                InfoRecord::Name(OsString::from("abcde")),
                InfoRecord::Range(Range {
                    offset: 7,
                    count: 8
                }),
            ],
        )]
    );
    // Through the owning Event: name() finds it; a getdents event has none.
    let ev = Event {
        mask: evs[0].mask,
        fd: None,
        pid: 3,
        info: evs[0].info.clone(),
        raw_fd: 9,
        pidfds: Vec::new(),
    };
    assert_eq!(ev.name(), Some(std::ffi::OsStr::new("abcde")));
    let ev = Event { info: vec![], ..ev };
    assert_eq!(ev.name(), None);
    // A name that is not UTF-8 is kept byte for byte.
    let buf = event(FAN_PRE_DIR_ACCESS, 9, 3, &[name_rec(b"\xff\xfe")]);
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        parse_events(&buf).unwrap()[0].info,
        vec![InfoRecord::Name(OsString::from(
            std::ffi::OsStr::from_bytes(b"\xff\xfe")
        ))]
    );
}

// ---------------------------------------------------------------------------
// Malformed input.
// ---------------------------------------------------------------------------

#[test]
fn parse_err_table() {
    type Check = fn(&ParseError) -> bool;
    let good = event(FAN_OPEN, 7, 1, &[]);
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("truncated metadata", good[..23].to_vec(), |e| {
            matches!(
                e,
                ParseError::Truncated {
                    offset: 0,
                    need: 24,
                    have: 23
                }
            )
        }),
        (
            "truncated second event",
            [good.clone(), good[..10].to_vec()].concat(),
            |e| {
                matches!(
                    e,
                    ParseError::Truncated {
                        offset: 24,
                        need: 24,
                        have: 10
                    }
                )
            },
        ),
        (
            "event_len < metadata_len",
            {
                let mut b = metadata(28, 3, 32, FAN_OPEN, 7, 1);
                b.extend_from_slice(&[0; 4]);
                b
            },
            |e| matches!(e, ParseError::BadEventLen { offset: 0, len: 28 }),
        ),
        ("event_len < 24", metadata(16, 3, 24, FAN_OPEN, 7, 1), |e| {
            matches!(e, ParseError::BadEventLen { len: 16, .. })
        }),
        (
            "event_len past buffer",
            metadata(48, 3, 24, FAN_OPEN, 7, 1),
            |e| matches!(e, ParseError::BadEventLen { offset: 0, len: 48 }),
        ),
        (
            "event_len u32::MAX",
            metadata(u32::MAX, 3, 24, FAN_OPEN, 7, 1),
            |e| matches!(e, ParseError::BadEventLen { len: u32::MAX, .. }),
        ),
        (
            "metadata_len < 24",
            metadata(24, 3, 16, FAN_OPEN, 7, 1),
            |e| matches!(e, ParseError::BadMetadataLen { offset: 0, len: 16 }),
        ),
        ("metadata_len 0", metadata(24, 3, 0, FAN_OPEN, 7, 1), |e| {
            matches!(e, ParseError::BadMetadataLen { len: 0, .. })
        }),
        ("wrong vers", metadata(24, 2, 24, FAN_OPEN, 7, 1), |e| {
            matches!(e, ParseError::BadVersion(2))
        }),
        (
            "info header truncated",
            event(FAN_OPEN, 7, 1, &[vec![FAN_EVENT_INFO_TYPE_PIDFD, 0]]),
            |e| {
                matches!(
                    e,
                    ParseError::InfoTruncated {
                        offset: 24,
                        have: 2
                    }
                )
            },
        ),
        (
            "info len 0",
            event(
                FAN_OPEN,
                7,
                1,
                &[record_with_len(FAN_EVENT_INFO_TYPE_PIDFD, 0, &[0; 4])],
            ),
            |e| {
                matches!(
                    e,
                    ParseError::BadInfoLen {
                        offset: 24,
                        info_type: 4,
                        len: 0
                    }
                )
            },
        ),
        (
            "info len < 4",
            event(FAN_OPEN, 7, 1, &[record_with_len(200, 3, &[0; 4])]),
            |e| matches!(e, ParseError::BadInfoLen { len: 3, .. }),
        ),
        (
            "info len past event end",
            event(
                FAN_OPEN,
                7,
                1,
                &[record_with_len(FAN_EVENT_INFO_TYPE_PIDFD, 12, &[0; 4])],
            ),
            |e| matches!(e, ParseError::BadInfoLen { len: 12, .. }),
        ),
        (
            "info len past event end into next event",
            [
                event(
                    FAN_OPEN,
                    7,
                    1,
                    &[record_with_len(FAN_EVENT_INFO_TYPE_PIDFD, 12, &[0; 4])],
                ),
                good.clone(),
            ]
            .concat(),
            |e| matches!(e, ParseError::BadInfoLen { len: 12, .. }),
        ),
        (
            "range record too short",
            event(
                FAN_PRE_ACCESS,
                7,
                1,
                &[record(FAN_EVENT_INFO_TYPE_RANGE, &[0; 12])],
            ),
            |e| {
                matches!(
                    e,
                    ParseError::InfoTooShort {
                        info_type: 6,
                        len: 16,
                        need: 24,
                        ..
                    }
                )
            },
        ),
        (
            "pidfd record too short",
            event(FAN_OPEN, 7, 1, &[record(FAN_EVENT_INFO_TYPE_PIDFD, &[])]),
            |e| matches!(e, ParseError::InfoTooShort { need: 8, .. }),
        ),
        (
            "error record too short",
            event(
                FAN_FS_ERROR,
                -1,
                1,
                &[record(FAN_EVENT_INFO_TYPE_ERROR, &[0; 4])],
            ),
            |e| matches!(e, ParseError::InfoTooShort { need: 12, .. }),
        ),
        (
            "mnt record too short",
            event(
                FAN_MNT_ATTACH,
                -1,
                1,
                &[record(FAN_EVENT_INFO_TYPE_MNT, &[0; 4])],
            ),
            |e| matches!(e, ParseError::InfoTooShort { info_type: 7, .. }),
        ),
        (
            "fid record shorter than fixed part",
            event(
                FAN_OPEN,
                -1,
                1,
                &[record(FAN_EVENT_INFO_TYPE_FID, &[0; 12])],
            ),
            |e| matches!(e, ParseError::InfoTooShort { need: 20, .. }),
        ),
        (
            "fid handle_bytes overflowing record",
            event(
                FAN_OPEN,
                -1,
                1,
                &[record(
                    FAN_EVENT_INFO_TYPE_FID,
                    &fid_body([0, 0], 9, 1, &[0; 8]),
                )],
            ),
            |e| {
                matches!(
                    e,
                    ParseError::BadHandle {
                        handle_bytes: 9,
                        room: 8,
                        ..
                    }
                )
            },
        ),
        (
            "fid handle_bytes u32::MAX",
            event(
                FAN_OPEN,
                -1,
                1,
                &[record(
                    FAN_EVENT_INFO_TYPE_DFID,
                    &fid_body([0, 0], u32::MAX, 1, &[]),
                )],
            ),
            |e| {
                matches!(
                    e,
                    ParseError::BadHandle {
                        handle_bytes: u32::MAX,
                        room: 0,
                        ..
                    }
                )
            },
        ),
        (
            "name without NUL",
            event(
                FAN_CREATE,
                -1,
                1,
                &[record(
                    FAN_EVENT_INFO_TYPE_DFID_NAME,
                    &[fid_body([0, 0], 4, 1, &[1, 2, 3, 4]), b"abcd".to_vec()].concat(),
                )],
            ),
            |e| matches!(e, ParseError::NameNotTerminated { offset: 24 }),
        ),
        (
            "name record without NUL",
            event(
                FAN_PRE_DIR_ACCESS,
                9,
                1,
                &[record(FAN_EVENT_INFO_TYPE_NAME, b"abcd")],
            ),
            |e| matches!(e, ParseError::NameNotTerminated { offset: 24 }),
        ),
        (
            "empty name record (header only)",
            event(
                FAN_PRE_DIR_ACCESS,
                9,
                1,
                &[record(FAN_EVENT_INFO_TYPE_NAME, &[])],
            ),
            |e| matches!(e, ParseError::NameNotTerminated { offset: 24 }),
        ),
        (
            "name record whose len runs past the event",
            event(
                FAN_PRE_DIR_ACCESS,
                9,
                1,
                &[record_with_len(FAN_EVENT_INFO_TYPE_NAME, 12, b"ab\0\0")],
            ),
            |e| {
                matches!(
                    e,
                    ParseError::BadInfoLen {
                        info_type: FAN_EVENT_INFO_TYPE_NAME,
                        len: 12,
                        ..
                    }
                )
            },
        ),
        (
            "dfid_name with no room for name",
            event(
                FAN_CREATE,
                -1,
                1,
                &[record(
                    FAN_EVENT_INFO_TYPE_DFID_NAME,
                    &fid_body([0, 0], 0, 1, &[]),
                )],
            ),
            |e| matches!(e, ParseError::NameNotTerminated { .. }),
        ),
    ];
    for (name, buf, check) in cases {
        let res = std::panic::catch_unwind(|| parse_events(&buf));
        let res = res.unwrap_or_else(|_| panic!("case {name}: parser panicked"));
        match res {
            Err(e) => assert!(check(&e), "case {name}: unexpected error {e:?}"),
            Ok(evs) => panic!("case {name}: expected error, got {evs:?}"),
        }
    }
}

#[test]
fn parse_never_panics_on_prefixes_and_mutations() {
    let buf = [
        event(FAN_PRE_ACCESS, 7, 1, &[pidfd_rec(8), range_rec(1, 2)]),
        event(
            FAN_CREATE,
            -1,
            1,
            &[fid_rec(
                FAN_EVENT_INFO_TYPE_DFID_NAME,
                [1, 2],
                1,
                &[9; 8],
                Some("x"),
            )],
        ),
        event(FAN_MNT_ATTACH, -1, 1, &[mnt_rec(5), error_rec(1, 1)]),
        event(
            FAN_PRE_DIR_ACCESS,
            9,
            1,
            &[name_rec(b"name"), range_rec(0, 0)],
        ),
    ]
    .concat();
    for n in 0..=buf.len() {
        let _ = parse_events_partial(&buf[..n]);
    }
    for i in 0..buf.len() {
        for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
            let mut b = buf.clone();
            b[i] = v;
            let _ = parse_events_partial(&b);
        }
    }
}

#[test]
fn partial_keeps_events_before_error_and_collects_stray_fds() {
    let buf = [
        event(FAN_OPEN_PERM, 5, 1, &[]),
        event(FAN_OPEN, 6, 1, &[pidfd_rec(7)]),
        // Fails in its second record: fd 8 and pidfd 9 are stray.
        event(
            FAN_PRE_ACCESS,
            8,
            1,
            &[pidfd_rec(9), record(FAN_EVENT_INFO_TYPE_RANGE, &[0; 4])],
        ),
        // Still framed: found by the best-effort walk.
        event(FAN_ACCESS_PERM, 10, 1, &[pidfd_rec(11)]),
        // Bad metadata_len but framed.
        metadata(24, 3, 8, FAN_OPEN, 12, 1),
        // Bad version: nothing trusted, walk stops.
        metadata(24, 9, 24, FAN_OPEN, 13, 1),
        event(FAN_OPEN, 14, 1, &[]),
    ]
    .concat();
    let out = parse_events_partial(&buf);
    assert_eq!(out.events.len(), 2);
    assert!(matches!(out.error, Some(ParseError::InfoTooShort { .. })));
    let stray: Vec<(i32, bool)> = out
        .stray_fds
        .iter()
        .map(|s| (s.fd, s.needs_response))
        .collect();
    assert_eq!(
        stray,
        vec![(8, true), (9, false), (10, true), (11, false), (12, false)]
    );

    let plan = cleanup_plan(&out, 6);
    assert_eq!(plan.deny, vec![5, 8, 10]);
    // 6 is the group fd: never closed.
    assert_eq!(plan.close, vec![5, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn cleanup_plan_dedups_and_skips_negative() {
    let out = ParseOutcome {
        events: vec![raw(
            FAN_OPEN,
            3,
            1,
            vec![InfoRecord::Pidfd(3), InfoRecord::Pidfd(FAN_EPIDFD)],
        )],
        error: Some(ParseError::BadVersion(0)),
        stray_fds: vec![
            StrayFd {
                fd: -1,
                needs_response: true,
            },
            StrayFd {
                fd: 4,
                needs_response: true,
            },
            StrayFd {
                fd: 4,
                needs_response: true,
            },
        ],
    };
    assert_eq!(
        cleanup_plan(&out, 100),
        Cleanup {
            deny: vec![4],
            close: vec![3, 4]
        }
    );
}

#[test]
fn response_to_raw() {
    assert_eq!(Response::Allow.to_raw(), 1);
    assert_eq!(Response::Deny.to_raw(), 2);
    assert_eq!(Response::DenyErrno(libc::EIO).to_raw(), 2 | (5 << 24));
    assert_eq!(
        Response::DenyErrno(libc::EIO).to_raw(),
        fan_deny_errno(libc::EIO)
    );
    assert_eq!(Response::DenyErrno(0x1ff).to_raw(), 2 | (0xff << 24));
}

#[test]
fn constants_match_uapi() {
    assert_eq!(FAN_PRE_ACCESS, 0x0010_0000);
    assert_eq!(FAN_PRE_FAULT, 0x0020_0000);
    assert_eq!(FAN_PRE_DIR_ACCESS, 0x0040_0000);
    assert_eq!(FAN_EVENT_INFO_TYPE_NAME, 8);
    assert_ne!(FAN_PERM_EVENTS & FAN_PRE_DIR_ACCESS, 0);
    assert_eq!(FAN_EVENT_ON_CHILD, 0x0800_0000);
    assert_eq!(FAN_ONDIR, 0x4000_0000);
    assert_eq!(FAN_CLASS_PRE_CONTENT, 8);
    assert_eq!(FAN_REPORT_FD_ERROR, 0x2000);
    assert_eq!(FAN_MARK_IGNORE, 0x400);
    assert_eq!(FAN_ERRNO_SHIFT, 24);
    assert_eq!(RANGE_INFO_LEN, 24);
    const { assert!(MNT_INFO_LEN >= 12 && MNT_INFO_ID_OFFSET + 8 <= MNT_INFO_LEN) };
    #[cfg(target_arch = "x86_64")]
    assert_eq!((MNT_INFO_LEN, MNT_INFO_ID_OFFSET), (16, 8));
}

#[test]
fn error_errno() {
    let e = Error::Mark {
        path: "/x".into(),
        mask: FAN_PRE_ACCESS,
        flags: FAN_MARK_ADD,
        source: Errno::EOPNOTSUPP,
    };
    assert_eq!(e.errno(), Some(Errno::EOPNOTSUPP));
    assert_eq!(Error::Read(Errno::EPERM).errno(), Some(Errno::EPERM));
    assert_eq!(Error::Parse(ParseError::BadVersion(1)).errno(), None);
    assert!(e.to_string().contains("/x"));
}

// ---------------------------------------------------------------------------
// fd ownership in events_from_buffer, with real descriptors.
// ---------------------------------------------------------------------------

/// A pipe whose write end is handed out as a raw fd; `is_closed` tells
/// whether that write end has been closed (read end sees EOF), without
/// racing on fd-number reuse by other tests.
struct Probe {
    rd: OwnedFd,
}

fn probe() -> (Probe, RawFd) {
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (Probe { rd }, wr.into_raw_fd())
}

impl Probe {
    fn is_closed(&self) -> bool {
        let mut b = [0u8; 1];
        match nix::unistd::read(self.rd.as_raw_fd(), &mut b) {
            Ok(0) => true,
            Err(Errno::EAGAIN) => false,
            other => panic!("unexpected read result {other:?}"),
        }
    }
}

#[test]
fn events_from_buffer_adopts_fds() {
    let (p1, fd1) = probe();
    let (p2, fd2) = probe();
    let buf = [
        event(FAN_OPEN_PERM, fd1, 1, &[pidfd_rec(fd2), range_rec(0, 10)]),
        event(FAN_Q_OVERFLOW, FAN_NOFD, 0, &[]),
    ]
    .concat();
    let mut denied = Vec::new();
    let mut evs = events_from_buffer(&buf, -100, |fd| denied.push(fd)).unwrap();
    assert!(denied.is_empty());
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].fd.as_ref().map(|f| f.as_raw_fd()), Some(fd1));
    assert!(evs[0].needs_response());
    assert_eq!(evs[0].pidfd(), Some(fd2));
    assert_eq!(
        evs[0].range(),
        Some(Range {
            offset: 0,
            count: 10
        })
    );
    assert!(evs[0]
        .path()
        .unwrap()
        .to_string_lossy()
        .starts_with("pipe:"));
    assert!(evs[1].fd.is_none() && evs[1].raw_fd() == FAN_NOFD);
    assert!(evs[1].path().is_err());
    assert!(!p1.is_closed() && !p2.is_closed());
    let pidfd = evs[0].take_pidfd().unwrap();
    drop(evs);
    assert!(p1.is_closed());
    assert!(!p2.is_closed());
    drop(pidfd);
    assert!(p2.is_closed());
}

#[test]
fn events_from_buffer_closes_everything_on_parse_error() {
    let (p1, fd1) = probe();
    let (p2, fd2) = probe();
    let (p3, fd3) = probe();
    let (p4, fd4) = probe();
    let buf = [
        event(FAN_OPEN, fd1, 1, &[pidfd_rec(fd2)]),
        event(
            FAN_PRE_ACCESS,
            fd3,
            1,
            &[record_with_len(FAN_EVENT_INFO_TYPE_RANGE, 2, &[0; 4])],
        ),
        event(FAN_OPEN_PERM, fd4, 1, &[]),
    ]
    .concat();
    let mut denied = Vec::new();
    let err = events_from_buffer(&buf, -100, |fd| denied.push(fd)).unwrap_err();
    assert!(matches!(
        err,
        Error::Parse(ParseError::BadInfoLen { len: 2, .. })
    ));
    assert_eq!(denied, vec![fd3, fd4]);
    for p in [&p1, &p2, &p3, &p4] {
        assert!(p.is_closed());
    }
}

// ---------------------------------------------------------------------------
// Against the running kernel (skipped where fanotify is unavailable).
// ---------------------------------------------------------------------------

fn try_group(flags: u32) -> Option<Fanotify> {
    match Fanotify::init(flags, libc::O_RDONLY as u32) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("skipping: fanotify_init: {e}");
            None
        }
    }
}

#[test]
fn kernel_notification_events() {
    let Some(group) = try_group(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("fanotify-crate-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    std::fs::write(&file, b"hello").unwrap();

    assert!(group.read_events().unwrap().is_empty());
    assert!(group
        .wait_events(Duration::from_millis(10))
        .unwrap()
        .is_empty());

    group
        .mark(FAN_MARK_ADD, FAN_OPEN | FAN_CLOSE_NOWRITE, &file)
        .unwrap();
    drop(File::open(&file).unwrap());
    let mut got = 0;
    let mut evs = Vec::new();
    while got & (FAN_OPEN | FAN_CLOSE_NOWRITE) != FAN_OPEN | FAN_CLOSE_NOWRITE {
        let batch = group.wait_events(Duration::from_secs(5)).unwrap();
        assert!(!batch.is_empty(), "timed out, got mask {got:#x}");
        for ev in &batch {
            got |= ev.mask;
            assert_eq!(ev.pid, std::process::id() as i32);
            assert_eq!(ev.path().unwrap(), file.canonicalize().unwrap());
        }
        evs.extend(batch);
    }

    // Invalid requests report their errno.
    let err = group
        .mark(FAN_MARK_ADD, FAN_OPEN, dir.join("missing"))
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    // No permission event is pending for this fd.
    let err = group.respond_raw(evs[0].raw_fd(), FAN_ALLOW).unwrap_err();
    assert!(
        matches!(err.errno(), Some(Errno::ENOENT | Errno::EINVAL)),
        "{err}"
    );
    let err = group
        .mark(FAN_MARK_ADD, FAN_OPEN, PathBuf::from("a\0b"))
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EINVAL));

    let dirfd = File::open(&dir).unwrap();
    group
        .mark_fd(
            FAN_MARK_REMOVE,
            FAN_OPEN | FAN_CLOSE_NOWRITE,
            dirfd.as_fd(),
            Some(Path::new("f")),
        )
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kernel_init_invalid_flags() {
    match Fanotify::init(0x8000_0000, 0) {
        Err(e) => assert!(
            matches!(
                e,
                Error::Init {
                    flags: 0x8000_0000,
                    ..
                }
            ) && e.errno().is_some()
        ),
        Ok(_) => panic!("fanotify_init accepted an invalid flag"),
    }
}

#[test]
fn kernel_permission_response() {
    let Some(group) = try_group(FAN_CLASS_CONTENT | FAN_CLOEXEC) else {
        return;
    };
    let file = std::env::temp_dir().join(format!("fanotify-crate-perm-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    group.mark(FAN_MARK_ADD, FAN_OPEN_PERM, &file).unwrap();
    for (response, want_ok) in [(Response::Allow, true), (Response::Deny, false)] {
        let f = file.clone();
        let opener = std::thread::spawn(move || File::open(f).map(drop));
        let evs = group.wait_events(Duration::from_secs(5)).unwrap();
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert!(evs[0].needs_response());
        group
            .respond(evs[0].fd.as_ref().unwrap().as_fd(), response)
            .unwrap();
        let res = opener.join().unwrap();
        assert_eq!(res.is_ok(), want_ok, "{response:?}: {res:?}");
        if let Err(e) = res {
            assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        }
    }
    group.mark(FAN_MARK_FLUSH, 0, "/").unwrap();
    std::fs::remove_file(&file).unwrap();
}
