//! Where `hsm-serve` gets the content of its stubs: a [`Source`], shared by
//! the workers, gives each worker thread a [`Fetcher`] of its own, which
//! opens the source of one stub ([`SourceFile`]) for the fills of one event.
//!
//! * [`DirSource`] (`--source DIR`, or a plain SRC argument): the file at the
//!   same relative path under a local directory, copied into the stub with
//!   `copy_file_range` (pread/pwrite when the kernel cannot copy between the
//!   two files).
//! * [`HttpSource`] (`--source http://HOST:PORT/PREFIX/`): the file at
//!   `PREFIX/<relative path>` (each path segment percent-encoded) fetched with
//!   HTTP/1.1 range requests (`Range: bytes=A-B`) by [`ureq`], one agent (and
//!   so one keep-alive connection pool) per worker.  Answers are checked
//!   strictly: `206 Partial Content` whose `Content-Range: bytes A-B/TOTAL`
//!   starts where asked and ends where asked or, clipped, at TOTAL-1; a body
//!   of exactly B-A+1 bytes; `416` with `bytes */TOTAL` and TOTAL <= A is
//!   the end of the file.  A `200` (the server ignored `Range`) is accepted
//!   only for a request at offset 0 whose body is exactly the requested
//!   length, i.e. a whole file asked for whole; any other `200` is an error.
//!   Connection errors, timeouts and 5xx answers are retried with
//!   exponential backoff, a bounded number of times and within the request's
//!   time budget; anything else (4xx, a wrong `Content-Range`, a wrong
//!   length) is an error at once.  An error is never a partial or wrong
//!   result: `hsm-serve` denies the event with EIO and records nothing.

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the content of the stubs comes from; shared by the workers.
pub trait Source: Send + Sync {
    /// What it is, for messages.
    fn name(&self) -> String;
    /// A fetcher for one worker thread (with its own connections).
    fn fetcher(&self) -> Box<dyn Fetcher>;
}

/// One worker's access to a [`Source`].
pub trait Fetcher {
    /// The source of the stub at `rel` (relative to DST; empty: DST is a
    /// single file and the source is the source itself).  Fails if it
    /// clearly cannot be read (a missing or non-regular local file); a
    /// remote file is only checked when read.
    fn open<'a>(&'a mut self, rel: &Path) -> Result<Box<dyn SourceFile + 'a>>;

    /// `len` bytes of `rel` from `offset`; fewer only at the end of the file
    /// (none from the end on).
    fn read_at(&mut self, rel: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut f = self.open(rel)?;
        let mut buf = vec![0; len];
        let n = f.read_at(&mut buf, offset)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// One opened source file.
pub trait SourceFile {
    /// Fill `buf` from `offset`: the count is `buf.len()`, less only at the
    /// end of the file (0 from the end on).
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize>;

    /// Write `[start, end)` of the source to the same offsets of `dst`; a
    /// source that ends first is an error ("short read").  On error, some of
    /// the range may have been written (real source bytes only).
    fn copy_to(&mut self, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
        copy_by_reads(self, dst, start, end, 1 << 20)
    }
}

/// [`SourceFile::copy_to`] by [`SourceFile::read_at`] of up to `chunk`
/// bytes and `pwrite`.
fn copy_by_reads<F: SourceFile + ?Sized>(
    f: &mut F,
    dst: BorrowedFd<'_>,
    mut off: u64,
    end: u64,
    chunk: usize,
) -> Result<()> {
    let mut buf = vec![0u8; ((end.saturating_sub(off)) as usize).min(chunk)];
    while off < end {
        let n = ((end - off) as usize).min(buf.len());
        let got = f.read_at(&mut buf[..n], off)?;
        if got == 0 {
            bail!("short read: the source has no data at {off} (the stub needs {end})");
        }
        write_all_at(dst, &buf[..got], off)?;
        off += got as u64;
    }
    Ok(())
}

fn write_all_at(dst: BorrowedFd<'_>, buf: &[u8], off: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        done += nix::sys::uio::pwrite(dst, &buf[done..], (off + done as u64) as i64)
            .with_context(|| format!("write at {}", off + done as u64))?;
    }
    Ok(())
}

/// Size of one HTTP range request at most: longer fills are fetched in
/// pieces of this size, one after the other on the same connection.
pub const HTTP_MAX_REQUEST: usize = 8 << 20;

/// The source named by `spec`: an `http://` URL, or else a local path (a
/// directory, or a file when DST is a single stub).  Other URL schemes
/// (`https://`, `ftp://`, ...) are refused.
pub fn open_source(spec: &OsStr, http: HttpConfig) -> Result<Box<dyn Source>> {
    let s = spec.to_string_lossy();
    if s.starts_with("http://") {
        return Ok(Box::new(HttpSource::new(&s, http)?));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            bail!(
                "source {s}: unsupported URL scheme {scheme:?}: give a directory or an http:// URL \
                 (no TLS)"
            );
        }
    }
    Ok(Box::new(DirSource::new(Path::new(spec))?))
}

// ---------------------------------------------------------------------------
// Local directory

/// Files under a local directory (or one local file).
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// `root`, made absolute; an error if it does not exist.
    pub fn new(root: &Path) -> Result<Self> {
        let root =
            std::fs::canonicalize(root).with_context(|| format!("source {}", root.display()))?;
        Ok(DirSource { root })
    }

    /// The source of `rel`.
    pub fn path_of(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl Source for DirSource {
    fn name(&self) -> String {
        self.root.display().to_string()
    }

    fn fetcher(&self) -> Box<dyn Fetcher> {
        Box::new(DirFetcher {
            root: DirSource {
                root: self.root.clone(),
            },
        })
    }
}

struct DirFetcher {
    root: DirSource,
}

impl Fetcher for DirFetcher {
    fn open<'a>(&'a mut self, rel: &Path) -> Result<Box<dyn SourceFile + 'a>> {
        let sp = self.root.path_of(rel);
        let file = File::open(&sp).with_context(|| format!("source {}", sp.display()))?;
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            bail!("source {} is not a regular file", sp.display());
        }
        Ok(Box::new(DirFile { file }))
    }
}

struct DirFile {
    file: File,
}

impl SourceFile for DirFile {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let off = offset + done as u64;
            match nix::sys::uio::pread(&self.file, &mut buf[done..], off as i64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context(format!("read source at {off}")),
            }
        }
        Ok(done)
    }

    fn copy_to(&mut self, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
        copy_range(&self.file, dst, start, end)
    }
}

/// Copy `[start, end)` of `src` to the same offsets of `dst`; a source that
/// ends early is an error.
fn copy_range(src: &File, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
    let mut off_in = start as i64;
    let mut off_out = start as i64;
    let end = end as i64;
    while off_in < end {
        let len = (end - off_in).min(1 << 30) as usize;
        match nix::fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), len) {
            Ok(0) => bail!("short read: the source has no data at {off_in} (the stub needs {end})"),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::EXDEV | Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOSYS) => {
                return copy_rw(src, dst, off_in as u64, end as u64);
            }
            Err(e) => return Err(e).context(format!("copy_file_range at {off_in}")),
        }
    }
    Ok(())
}

fn copy_rw(src: &File, dst: BorrowedFd<'_>, mut off: u64, end: u64) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while off < end {
        let n = ((end - off) as usize).min(buf.len());
        let got = nix::sys::uio::pread(src, &mut buf[..n], off as i64)
            .with_context(|| format!("read source at {off}"))?;
        if got == 0 {
            bail!("short read: the source has no data at {off} (the stub needs {end})");
        }
        let mut done = 0;
        while done < got {
            done += nix::sys::uio::pwrite(dst, &buf[done..got], (off + done as u64) as i64)
                .with_context(|| format!("write at {}", off + done as u64))?;
        }
        off += got as u64;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTTP

/// Limits of [`HttpSource`] requests.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The whole budget of one range request, retries and backoff included:
    /// what cannot be fetched in this time is an error.
    pub timeout: Duration,
    /// Budget of each TCP connect (within `timeout`).
    pub connect_timeout: Duration,
    /// Retries after a connection error, a timeout or a 5xx answer.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one (at most
    /// [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// Longest range asked for in one request.
    pub max_request: usize,
}

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retries: 3,
            backoff: Duration::from_millis(100),
            max_request: HTTP_MAX_REQUEST,
        }
    }
}

/// Files under an `http://` URL, fetched with range requests.
pub struct HttpSource {
    /// The URL as given (`http://host[:port][/prefix...]`).
    base: String,
    cfg: HttpConfig,
}

impl HttpSource {
    /// `url`: `http://HOST[:PORT][/PREFIX[/]]`; the file at relative path
    /// P is `PREFIX/P`.  No TLS, no query, no fragment, no user info.
    pub fn new(url: &str, cfg: HttpConfig) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("source {url}: not an http:// URL");
        };
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            bail!("source {url}: no host in the URL");
        }
        if host.contains('@') {
            bail!("source {url}: user info in the URL is not supported");
        }
        if url.contains(['?', '#']) {
            bail!("source {url}: a query or fragment in the URL is not supported");
        }
        if url
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            bail!("source {url}: spaces or control characters in the URL");
        }
        if cfg.max_request == 0 || cfg.timeout.is_zero() {
            bail!("source {url}: zero request size or timeout");
        }
        // Let the URL parser have the last word.
        url.parse::<ureq::http::Uri>()
            .map_err(|e| anyhow!("source {url}: {e}"))?;
        Ok(HttpSource {
            base: url.to_string(),
            cfg,
        })
    }

    /// The URL of the file at `rel`: the base, a `/` if it has none at its
    /// end, and the segments of `rel` percent-encoded.
    pub fn url_of(&self, rel: &Path) -> Result<String> {
        url_of(&self.base, rel)
    }

    /// A fetcher of its own (what [`Source::fetcher`] gives, typed).
    pub fn http_fetcher(&self) -> HttpFetcher {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections(4)
            .max_idle_connections_per_host(4)
            .timeout_connect(Some(self.cfg.connect_timeout))
            .timeout_global(Some(self.cfg.timeout))
            .build()
            .into();
        HttpFetcher {
            base: self.base.clone(),
            cfg: self.cfg.clone(),
            agent,
        }
    }
}

fn url_of(base: &str, rel: &Path) -> Result<String> {
    let mut u = base.to_string();
    let mut first = true;
    for c in rel.components() {
        let Component::Normal(seg) = c else {
            bail!("{}: not a plain relative path", rel.display());
        };
        if !(first && u.ends_with('/')) {
            u.push('/');
        }
        first = false;
        for &b in seg.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                u.push(b as char);
            } else {
                u.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(u)
}

impl Source for HttpSource {
    fn name(&self) -> String {
        self.base.clone()
    }

    fn fetcher(&self) -> Box<dyn Fetcher> {
        Box::new(self.http_fetcher())
    }
}

/// One worker's HTTP client: its own agent, so its own keep-alive
/// connections.
pub struct HttpFetcher {
    base: String,
    cfg: HttpConfig,
    agent: ureq::Agent,
}

impl Fetcher for HttpFetcher {
    fn open<'a>(&'a mut self, rel: &Path) -> Result<Box<dyn SourceFile + 'a>> {
        let url = url_of(&self.base, rel)?;
        Ok(Box::new(HttpFile { f: self, url }))
    }
}

struct HttpFile<'a> {
    f: &'a mut HttpFetcher,
    url: String,
}

impl SourceFile for HttpFile<'_> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(self.f.cfg.max_request);
            let off = offset + done as u64;
            let got = self.f.get_range(&self.url, off, &mut buf[done..done + n])?;
            done += got;
            if got < n {
                break;
            }
        }
        Ok(done)
    }

    fn copy_to(&mut self, dst: BorrowedFd<'_>, start: u64, end: u64) -> Result<()> {
        let chunk = self.f.cfg.max_request;
        copy_by_reads(self, dst, start, end, chunk)
    }
}

/// Why an attempt failed.
enum Failure {
    /// Worth another attempt (connection, timeout, 5xx).
    Transient(anyhow::Error),
    /// Not (the server answered, wrongly).
    Fatal(anyhow::Error),
}

impl HttpFetcher {
    /// Fetch `buf.len()` bytes at `off`: the count, less only at the end of
    /// the file.  Retries transient failures within the budget.
    fn get_range(&self, url: &str, off: u64, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.cfg.timeout;
        let mut backoff = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let err = match self.try_range(url, off, buf, left) {
                Ok(n) => return Ok(n),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(e)) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if attempt > self.cfg.retries || left.is_zero() {
                return Err(err.context(format!(
                    "gave up after {attempt} attempt(s) in {:?}",
                    self.cfg.timeout.saturating_sub(left)
                )));
            }
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One request for `bytes=off-(off+len-1)`, checked.
    fn try_range(
        &self,
        url: &str,
        off: u64,
        buf: &mut [u8],
        left: Duration,
    ) -> std::result::Result<usize, Failure> {
        let len = buf.len() as u64;
        let last = off + len - 1;
        let what = format!("GET {url} bytes={off}-{last}");
        let fatal = |m: String| Failure::Fatal(anyhow!("{what}: {m}"));
        let transient = |e: ureq::Error| Failure::Transient(anyhow!("{what}: {e}"));
        let mut resp = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(left))
            .timeout_connect(Some(self.cfg.connect_timeout.min(left)))
            .build()
            .header("Range", format!("bytes={off}-{last}"))
            .call()
            .map_err(|e| classify(e, &what))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let content_range = header("content-range");
        let content_length = header("content-length");
        let want = match status {
            206 => {
                let Some(cr) = content_range else {
                    return Err(fatal("206 without Content-Range".into()));
                };
                let Some((a, b, total)) = parse_content_range(&cr) else {
                    return Err(fatal(format!("bad Content-Range {cr:?}")));
                };
                let ok = a == off
                    && b >= a
                    && match total {
                        // Clipped at the end of the file, or all of it.
                        Some(t) => b < t && (b == last || (b < last && b + 1 == t)),
                        None => b == last,
                    };
                if !ok {
                    return Err(fatal(format!("Content-Range {cr:?} does not match")));
                }
                b - a + 1
            }
            416 => {
                // Nothing at `off`: the end of the file, if the total says so.
                let total = content_range.as_deref().and_then(parse_unsatisfied);
                return match total {
                    Some(t) if t <= off => Ok(0),
                    _ => Err(fatal(format!(
                        "416 Range Not Satisfiable with Content-Range {content_range:?}"
                    ))),
                };
            }
            200 if off == 0 => len,
            200 => {
                return Err(fatal(
                    "200 OK: the server ignored the Range header (a full body is accepted \
                     only for a request at offset 0 of exactly the file's length)"
                        .into(),
                ))
            }
            500..=599 => {
                return Err(Failure::Transient(anyhow!("{what}: HTTP status {status}")));
            }
            _ => return Err(fatal(format!("HTTP status {status}"))),
        };
        if let Some(cl) = &content_length {
            if cl.trim().parse::<u64>().ok() != Some(want) {
                return Err(fatal(format!(
                    "Content-Length {cl} for {want} bytes (status {status})"
                )));
            }
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(want)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    fatal(format!("body longer than {want} bytes (status {status})"))
                }
                e => transient(e),
            })?;
        if body.len() as u64 != want {
            return Err(fatal(format!(
                "body of {} bytes for {want} (status {status})",
                body.len()
            )));
        }
        buf[..body.len()].copy_from_slice(&body);
        Ok(body.len())
    }
}

/// A failed call: transient for the network and timeouts.
fn classify(e: ureq::Error, what: &str) -> Failure {
    let m = anyhow!("{what}: {e}");
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => Failure::Transient(m),
        _ => Failure::Fatal(m),
    }
}

/// `bytes A-B/TOTAL` (TOTAL may be `*`): (A, B, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let num = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let total = match total.trim() {
        "*" => None,
        t => Some(num(t)?),
    };
    Some((num(a)?, num(b)?, total))
}

/// `bytes */TOTAL` of a 416 answer: TOTAL.
fn parse_unsatisfied(v: &str) -> Option<u64> {
    let t = v
        .trim()
        .strip_prefix("bytes")?
        .trim_start()
        .strip_prefix("*/")?;
    let t = t.trim();
    (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests;
