//! Shared code of the reference HSM tools (`hsm-populate`, `hsm-serve`,
//! `hsm-validate`) and of the fpc-tests cases that drive them.
//!
//! * [`pattern`]: the page-pattern content `hsm-validate` writes and checks.
//! * [`ranges`]: a set of byte ranges and its compact text encoding, the
//!   populated-range state `hsm-serve` keeps per file.
//! * [`xattr`]: `getxattr(2)` family wrappers (nix has none).
//! * [`state`]: the state file format of `hsm-serve --state FILE`.
//! * [`stats`]: the daemon's counters and latency histogram, and the parser
//!   of the `stats:` lines it prints.
//! * [`util`]: size and page-list arguments, a small deterministic RNG.
//! * [`cache`]: cachestat(2), dropping a file's or the whole page cache.
//! * [`map`]: the file mapping (mmap wrapper) of the tools and the tests.
//! * [`driver`]: running `hsm-serve` from fpc-tests and fpc-bench.
//! * [`source`]: where `hsm-serve` fetches content from: a local directory
//!   or an HTTP server (range requests).
//! * [`prefetch`]: access profiles `hsm-serve` records and prefetches.
//! * [`manifest`]: the listing of a source tree `hsm-manifest` writes and
//!   `hsm-populate --manifest` builds the stub tree from.
//! * [`control`]: the request and reply lines `hsm-evict` and
//!   `hsm-serve --control` exchange.
//! * [`lazy`]: lazy directories (`hsm-populate --lazy`): tags, the record
//!   of the metadata source, the manifest indexed by directory, the
//!   population of one directory.
//!
//! # On-disk conventions (shared by the tools)
//!
//! * [`STUB_XATTR`] (`user.hsm.stub`) marks a file as an HSM stub; its value
//!   is the stub's remote size in decimal.  `hsm-populate` sets it, and
//!   `hsm-serve` removes it once the file is fully populated (and sets it
//!   again when it evicts content).  `hsm-serve` fills only files that carry
//!   it; it answers the events of every other file of the filesystem at once
//!   and ignores that file from then on.
//! * [`POPULATED_XATTR`] (`user.hsm.populated`) holds the populated ranges of
//!   a stub when `hsm-serve --state xattr` (the default) is used; see
//!   [`ranges::RangeSet::encode`] for the format.
//! * [`DIR_XATTR`] (`user.hsm.dir`) marks a directory of a lazy tree:
//!   `unpopulated` (its entries are made by `hsm-serve` on first access) or
//!   `populated`; [`LAZY_XATTR`] (`user.hsm.lazy`) on the root of a lazy
//!   tree says where its metadata is.  See [`lazy`].

pub mod cache;
pub mod control;
pub mod driver;
pub mod lazy;
pub mod manifest;
pub mod map;
pub mod pattern;
pub mod prefetch;
pub mod ranges;
pub mod source;
pub mod state;
pub mod stats;
pub mod util;
pub mod xattr;

/// Page size the tools align ranges to.
pub const PAGE: u64 = 4096;

/// Extended attribute that marks a stub (value: its remote size, decimal).
pub const STUB_XATTR: &str = "user.hsm.stub";

/// Extended attribute holding the populated ranges of a stub.
pub const POPULATED_XATTR: &str = "user.hsm.populated";

/// Extended attribute of a lazy directory: `unpopulated` or `populated`
/// (see [`lazy`]).
pub const DIR_XATTR: &str = "user.hsm.dir";

/// Extended attribute of the root of a lazy tree: where its metadata is
/// (see [`lazy::MetaSpec`]).
pub const LAZY_XATTR: &str = "user.hsm.lazy";

/// Exit code of the tools for "the kernel or filesystem lacks a feature"
/// (e.g. `FAN_PRE_FAULT` rejected with `EINVAL`), distinct from plain errors
/// (1) and usage errors (2).
pub const EXIT_UNSUPPORTED: i32 = 3;
