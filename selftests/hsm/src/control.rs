//! The control protocol of `hsm-serve --control SOCKET`, spoken by
//! `hsm-evict`: one request per line on a Unix stream socket, one reply line
//! each, in order.
//!
//! * Request: `evict START END PATH`: drop the populated content of
//!   `[START, END)` (decimal bytes; END `eof`: to the end of the file) of the
//!   file at PATH (absolute, escaped as in the state file: bytes outside
//!   printable ASCII, space and `%` as `%XX`).
//! * Reply: `evicted BYTES` (the populated bytes dropped, 0 if there were
//!   none), `busy` (the file is in use: open, mapped or executing, by anyone
//!   else; nothing changed) or `error MESSAGE` (one line).

use crate::state::{escape, unescape};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evict {
    pub path: PathBuf,
    pub start: u64,
    /// None: to the end of the file.
    pub end: Option<u64>,
}

impl Evict {
    /// The request line, without its newline.
    pub fn encode(&self) -> String {
        let end = self
            .end
            .map_or_else(|| "eof".to_string(), |e| e.to_string());
        format!("evict {} {end} {}", self.start, escape(&self.path))
    }

    pub fn parse(line: &str) -> Result<Self> {
        let mut w = line.splitn(4, ' ');
        if w.next() != Some("evict") {
            bail!("unknown request {line:?} (expected \"evict START END PATH\")");
        }
        let (Some(s), Some(e), Some(p)) = (w.next(), w.next(), w.next()) else {
            bail!("short request {line:?} (expected \"evict START END PATH\")");
        };
        let start = s.parse().with_context(|| format!("START {s:?}"))?;
        let end = match e {
            "eof" => None,
            e => Some(e.parse().with_context(|| format!("END {e:?}"))?),
        };
        if end.is_some_and(|e| e < start) {
            bail!("END {e} is before START {s}");
        }
        let path = unescape(p)?;
        if !path.is_absolute() {
            bail!("PATH {} is not absolute", path.display());
        }
        Ok(Evict { path, start, end })
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Evicted(u64),
    Busy,
    Error(String),
}

impl Reply {
    /// The reply line, without its newline.
    pub fn encode(&self) -> String {
        match self {
            Reply::Evicted(n) => format!("evicted {n}"),
            Reply::Busy => "busy".into(),
            Reply::Error(m) => format!("error {}", m.replace(['\n', '\r'], " ")),
        }
    }

    pub fn parse(line: &str) -> Result<Self> {
        let (w, rest) = line.split_once(' ').unwrap_or((line, ""));
        match w {
            "evicted" => Ok(Reply::Evicted(
                rest.parse().with_context(|| format!("reply {line:?}"))?,
            )),
            "busy" if rest.is_empty() => Ok(Reply::Busy),
            "error" => Ok(Reply::Error(rest.to_string())),
            _ => Err(anyhow!("unknown reply {line:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        for (path, start, end) in [
            ("/a/b", 0, None),
            ("/with space/%x\tfile", 4096, Some(8192)),
            ("/", 7, Some(7)),
        ] {
            let r = Evict {
                path: path.into(),
                start,
                end,
            };
            let line = r.encode();
            assert!(!line.contains('\t') && !line.contains('\n'), "{line}");
            assert_eq!(Evict::parse(&line).unwrap(), r, "{line}");
        }
    }

    #[test]
    fn bad_requests() {
        for line in [
            "",
            "evict",
            "evict 1 2",
            "drop 0 eof /x",
            "evict x eof /x",
            "evict 0 y /x",
            "evict 10 5 /x",
            "evict 0 eof relative",
            "evict 0 eof /bad%zz",
        ] {
            assert!(Evict::parse(line).is_err(), "{line:?} accepted");
        }
    }

    #[test]
    fn replies() {
        for r in [
            Reply::Evicted(0),
            Reply::Evicted(1 << 40),
            Reply::Busy,
            Reply::Error("x is not under y".into()),
        ] {
            assert_eq!(Reply::parse(&r.encode()).unwrap(), r);
        }
        assert_eq!(
            Reply::parse(&Reply::Error("a\nb".into()).encode()).unwrap(),
            Reply::Error("a b".into())
        );
        for line in ["", "evicted", "evicted x", "busy now", "ok"] {
            assert!(Reply::parse(line).is_err(), "{line:?} accepted");
        }
    }
}
