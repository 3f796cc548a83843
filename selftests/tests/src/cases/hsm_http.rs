//! The HTTP side of the hsm_* tests (issue 15): nginx from the distribution,
//! started by the test inside the guest on loopback ([`Nginx`]); link
//! shaping with netem on `lo` ([`Netem`]); a tiny in-test HTTP server that
//! answers range requests wrongly on purpose ([`Responder`]); the source of
//! a table-driven test, a local directory or nginx ([`TestSource`]); and a
//! reader process that reports page by page what it saw ([`Reader`]).  Not
//! a test itself.
//!
//! Everything of a server (document root, configuration, logs) lives in
//! [`http_dir`], on the runner's scratch tmpfs next to the test
//! filesystem's mount point: never on the lazy tree's filesystem.  Tests
//! that start nginx name [`cleanup`] as their cleanup, which also ends an
//! nginx left behind by a test process that was killed.

use super::hsm_util::text;
use crate::common::{default_sigbus, page_size, Map};
use ltp::res::OrBrok;
use ltp::{tbrok, tconf, Ctx};
use nix::sys::mman::MmapAdvise;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to come up or go (TCG).
const WAIT: Duration = Duration::from_secs(60);

/// The directory of the test's HTTP servers: on the runner's scratch tmpfs
/// (the parent of the test filesystem's mount point), so that neither the
/// document root nor the server's files are on the lazy tree's filesystem.
pub fn http_dir(ctx: &Ctx) -> PathBuf {
    ctx.mnt
        .parent()
        .unwrap_or_else(|| tbrok!("{} has no parent", ctx.mnt.display()))
        .join("http")
}

/// Cleanup of a test that starts nginx (also from a fresh process after a
/// timeout): end an nginx the test left running, remove [`http_dir`].
pub fn cleanup(ctx: &Ctx) {
    let dir = http_dir(ctx);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            Nginx::kill_left(&e.path());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bring `lo` up if it is not (an interface's flags: IFF_UP is bit 0).
fn loopback_up() {
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").or_brok("read lo's flags");
    let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .or_brok("parse lo's flags")
        & 1
        != 0;
    if !up {
        super::hsm_util::run_cmd("ip", &["link", "set", "lo", "up"]);
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .or_brok("find a free port")
        .port()
}

/// Extra nginx configuration: directives of the `http` block (e.g. a `map`)
/// and of the `server` block (e.g. `location`s).
#[derive(Clone, Copy, Default)]
pub struct Conf<'a> {
    pub http: &'a str,
    pub server: &'a str,
}

/// nginx serving a directory on 127.0.0.1, as one process in the
/// foreground (`daemon off; master_process off;`), with its configuration,
/// pid file and logs in a directory of its own.  SIGKILLed on drop if still
/// running.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Serve `root` on a free port; configuration and logs in `dir`.
    pub fn start(dir: &Path, root: &Path, conf: Conf<'_>) -> Nginx {
        Self::start_on(dir, root, conf, free_port())
    }

    /// The same on `port` (a restart where a daemon expects the server).
    pub fn start_on(dir: &Path, root: &Path, conf: Conf<'_>, port: u16) -> Nginx {
        loopback_up();
        std::fs::create_dir_all(dir.join("tmp")).or_brok("mkdir the nginx directory");
        let d = dir.display();
        let text = format!(
            "daemon off;\n\
             master_process off;\n\
             pid \"{d}/nginx.pid\";\n\
             error_log \"{d}/error.log\" warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20   access_log \"{d}/access.log\";\n\
             \x20   client_body_temp_path \"{d}/tmp/body\";\n\
             \x20   proxy_temp_path \"{d}/tmp/proxy\";\n\
             \x20   fastcgi_temp_path \"{d}/tmp/fastcgi\";\n\
             \x20   uwsgi_temp_path \"{d}/tmp/uwsgi\";\n\
             \x20   scgi_temp_path \"{d}/tmp/scgi\";\n\
             \x20   default_type application/octet-stream;\n\
             \x20   keepalive_requests 1000000;\n\
             \x20   keepalive_timeout 600s;\n\
             \x20   {http}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       root \"{root}\";\n\
             \x20       {server}\n\
             \x20   }}\n\
             }}\n",
            root = root.display(),
            http = conf.http,
            server = conf.server,
        );
        let cfg = dir.join("nginx.conf");
        std::fs::write(&cfg, text).or_brok("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&cfg)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_brok("spawn nginx");
        let mut n = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        n.wait_listening();
        n
    }

    fn error_log(&self) -> String {
        let t = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        text(t.as_bytes()).replace('\n', " | ")
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().or_brok("wait nginx") {
                tbrok!(
                    "nginx exited ({st}) before it listened: {}",
                    self.error_log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                tbrok!(
                    "nginx does not accept connections on port {} after {WAIT:?}: {}",
                    self.port,
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Stop it (SIGTERM: nginx's fast shutdown) and wait until it is gone;
    /// the port is free then.
    pub fn stop(mut self) {
        self.end(Signal::SIGTERM);
    }

    fn end(&mut self, sig: Signal) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
            let deadline = Instant::now() + WAIT;
            while matches!(self.child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    tbrok!("nginx still running {WAIT:?} after {sig:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL the nginx whose directory is `dir`, if its pid file names a
    /// running nginx.
    fn kill_left(dir: &Path) {
        let Ok(pid) = std::fs::read_to_string(dir.join("nginx.pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "nginx" {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where a test's source tree lives and how hsm-serve reaches it: the rows
/// of tests that run with both sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory on the test filesystem, given to hsm-serve as a path.
    Dir,
    /// A directory on the scratch tmpfs served by nginx, given as a URL.
    Http,
}

pub const BOTH_SOURCES: &[SourceKind] = &[SourceKind::Dir, SourceKind::Http];

/// A source tree for hsm-serve: `dir` to create the source files in,
/// `spec` the SRC argument of hsm-serve.  An HTTP source's nginx runs
/// until it is dropped, which also removes the server's directory (the
/// files are in the guest's memory).
pub struct TestSource {
    pub dir: PathBuf,
    pub spec: OsString,
    pub kind: SourceKind,
    /// The nginx and its directory.
    http: Option<(Nginx, PathBuf)>,
}

impl Drop for TestSource {
    fn drop(&mut self) {
        if let Some((nginx, base)) = self.http.take() {
            drop(nginx);
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

impl TestSource {
    /// An empty source tree named `name`: `ctx.path(name)` for
    /// [`SourceKind::Dir`], for [`SourceKind::Http`] a directory under
    /// [`http_dir`] served by an nginx of its own.
    pub fn new(ctx: &Ctx, kind: SourceKind, name: &str) -> Self {
        match kind {
            SourceKind::Dir => {
                let dir = ctx.path(name);
                std::fs::create_dir(&dir).or_brok("mkdir the source");
                TestSource {
                    spec: dir.clone().into(),
                    dir,
                    kind,
                    http: None,
                }
            }
            SourceKind::Http => {
                let base = http_dir(ctx).join(name);
                let dir = base.join("root");
                std::fs::create_dir_all(&dir).or_brok("mkdir the document root");
                let n = Nginx::start(&base, &dir, Conf::default());
                TestSource {
                    spec: n.url("").into(),
                    dir,
                    kind,
                    http: Some((n, base)),
                }
            }
        }
    }

    /// For messages.
    pub fn label(&self) -> &'static str {
        match self.kind {
            SourceKind::Dir => "local source",
            SourceKind::Http => "HTTP source (nginx)",
        }
    }
}

/// netem on `lo`: every packet waits `delay`, in each direction, so a round
/// trip takes twice that.  Removed on drop (and by [`netem_remove`]).
pub struct Netem;

/// The kernel options `tc qdisc add dev lo root netem` needs.
pub const NETEM_KCONFIGS: &[&str] = &["CONFIG_NET_SCHED", "CONFIG_NET_SCH_NETEM"];

impl Netem {
    /// `tc qdisc add dev lo root netem delay DELAY`; TCONF, with the kernel
    /// options that are missing, if tc fails.
    pub fn delay(delay: Duration) -> Netem {
        let us = delay.as_micros().to_string() + "us";
        let o = Command::new("tc")
            .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", &us])
            .stdin(Stdio::null())
            .output()
            .or_brok("run tc");
        if !o.status.success() {
            let missing = ltp::kconfig::KConfig::load()
                .map(|k| format!("{:?}", k.missing(NETEM_KCONFIGS)))
                .unwrap_or_else(|e| format!("unknown ({e:#})"));
            tconf!(
                "tc qdisc add dev lo root netem delay {us} failed ({}): {}; link shaping needs \
                 {NETEM_KCONFIGS:?}, missing in this kernel: {missing}",
                o.status,
                text(&o.stderr)
            );
        }
        Netem
    }
}

/// Remove the root qdisc of `lo` (what [`Netem`] added), ignoring errors.
pub fn netem_remove() {
    let _ = Command::new("tc")
        .args(["qdisc", "del", "dev", "lo", "root"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Netem {
    fn drop(&mut self) {
        netem_remove();
    }
}

/// How [`Responder`] answers a range request `bytes=A-B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `206`, `Content-Range: bytes A-B/SIZE`, the bytes.
    Right,
    /// The right head, then half of the body, then the connection closes.
    CutShort,
    /// `206` with the right `Content-Range`, but a body (and
    /// `Content-Length`) 100 bytes shorter.
    ShortLength,
    /// `206` with the right `Content-Range`, a body (and `Content-Length`)
    /// 100 bytes longer.
    LongLength,
    /// `206` with the right `Content-Range`, no `Content-Length`, a body
    /// 100 bytes longer, delimited by closing the connection.
    LongUntilClose,
    /// `206` with the bytes of the range one page later, and a
    /// `Content-Range` that says so.
    OtherRange,
    /// `200` with the whole file (the `Range` header ignored).
    WholeFile,
}

/// A request [`Responder`] got: path and the asked range `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub path: String,
    pub start: u64,
    pub end: u64,
}

struct RespState {
    answer: Answer,
    asked: Vec<Asked>,
}

/// A minimal HTTP/1.1 server in threads of the test: it serves the files
/// under a directory to range requests (keep-alive), answering as told
/// ([`Answer`]), and records every range asked for.
pub struct Responder {
    port: u16,
    state: Arc<Mutex<RespState>>,
}

impl Responder {
    pub fn start(root: &Path) -> Responder {
        loopback_up();
        let l = TcpListener::bind("127.0.0.1:0").or_brok("bind the responder");
        let port = l.local_addr().or_brok("responder address").port();
        let state = Arc::new(Mutex::new(RespState {
            answer: Answer::Right,
            asked: Vec::new(),
        }));
        let st = state.clone();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let st = st.clone();
                let root = root.clone();
                std::thread::spawn(move || serve_conn(c, &root, &st));
            }
        });
        Responder { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn set(&self, a: Answer) {
        lock(&self.state).answer = a;
    }

    /// The requests so far.
    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.state).asked.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection: requests until the client closes it or an answer ends
/// it.
fn serve_conn(c: TcpStream, root: &Path, st: &Mutex<RespState>) {
    let Ok(rc) = c.try_clone() else { return };
    let mut r = BufReader::new(rc);
    let mut w = c;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = v
                        .trim()
                        .strip_prefix("bytes=")
                        .and_then(|s| s.split_once('-'))
                        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
                }
            }
        }
        if !answer(&mut w, root, &path, range, st) {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Write the answer; false: the connection is to be closed.
fn answer(
    w: &mut TcpStream,
    root: &Path,
    path: &str,
    range: Option<(u64, u64)>,
    st: &Mutex<RespState>,
) -> bool {
    let Ok(f) = std::fs::File::open(root.join(path)) else {
        return w
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .is_ok();
    };
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let read = |a: u64, len: u64| {
        let mut b = vec![0u8; len as usize];
        let n = f.read_at(&mut b, a).unwrap_or(0);
        b.truncate(n);
        b
    };
    let (a, b) = match range {
        Some((a, b)) if a < size => (a, b.min(size - 1)),
        _ => {
            return w
                .write_all(
                    format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n\
                         Content-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .is_ok()
        }
    };
    let how = {
        let mut s = lock(st);
        s.asked.push(Asked {
            path: path.to_string(),
            start: a,
            end: b + 1,
        });
        s.answer
    };
    let n = b + 1 - a;
    let cr = format!("bytes {a}-{b}/{size}");
    let head = |status: &str, cr: &str, len: Option<u64>| {
        let mut h = format!("HTTP/1.1 {status}\r\n");
        if !cr.is_empty() {
            h += &format!("Content-Range: {cr}\r\n");
        }
        match len {
            Some(l) => h += &format!("Content-Length: {l}\r\n"),
            None => h += "Connection: close\r\n",
        }
        h + "\r\n"
    };
    let page = page_size();
    let (h, body, keep) = match how {
        Answer::Right => (head("206 Partial Content", &cr, Some(n)), read(a, n), true),
        Answer::CutShort => (
            head("206 Partial Content", &cr, Some(n)),
            read(a, n / 2),
            false,
        ),
        Answer::ShortLength => {
            let body = read(a, n.saturating_sub(100));
            (
                head("206 Partial Content", &cr, Some(body.len() as u64)),
                body,
                true,
            )
        }
        Answer::LongLength => {
            let body = read(a, n + 100);
            (
                head("206 Partial Content", &cr, Some(body.len() as u64)),
                body,
                true,
            )
        }
        Answer::LongUntilClose => (
            head("206 Partial Content", &cr, None),
            read(a, n + 100),
            false,
        ),
        Answer::OtherRange => {
            let a2 = a + page;
            let body = read(a2, n);
            let cr2 = format!("bytes {a2}-{}/{size}", a2 + body.len() as u64 - 1);
            (
                head("206 Partial Content", &cr2, Some(body.len() as u64)),
                body,
                true,
            )
        }
        Answer::WholeFile => (head("200 OK", "", Some(size)), read(0, size), true),
    };
    w.write_all(h.as_bytes()).is_ok() && w.write_all(&body).is_ok() && keep
}

/// How a reader accesses a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// pread(2) of the page.
    Read,
    /// A load from a shared mapping of the file (MADV_RANDOM: the fault
    /// asks for that page only).
    Fault,
}

/// What a reader saw at one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The source's bytes.
    Exact,
    /// A page of zeros: unfilled data.  Never acceptable.
    Zeros,
    /// Other wrong bytes.
    Wrong,
    /// read() failed with EIO (the reader stopped).
    Eio,
    /// read() failed otherwise (the reader stopped).
    OtherError,
    /// The access began and did not end: the reader died in it (SIGBUS
    /// for a fault an HSM denied).
    Died,
}

/// How a [`Reader`] ended: what it saw at each page it began, in order,
/// and how the process ended.
#[derive(Debug)]
pub struct ReadResult {
    pub pages: Vec<(u64, Seen)>,
    pub status: WaitStatus,
}

impl ReadResult {
    /// Every page was read exactly and the reader exited 0.
    pub fn all_exact(&self) -> bool {
        self.pages.iter().all(|p| p.1 == Seen::Exact)
            && matches!(self.status, WaitStatus::Exited(_, 0))
    }

    /// Pages that showed zeros or other wrong bytes.
    pub fn wrong(&self) -> Vec<(u64, Seen)> {
        self.pages
            .iter()
            .copied()
            .filter(|p| matches!(p.1, Seen::Zeros | Seen::Wrong))
            .collect()
    }

    /// The last page ended cleanly with the errno of `access` (EIO for a
    /// read(), SIGBUS for a fault) and the pages before it were exact.
    pub fn denied_at_end(&self, access: Access) -> bool {
        let Some((&(_, last), before)) = self.pages.split_last() else {
            return false;
        };
        let end_ok = match access {
            Access::Read => last == Seen::Eio && matches!(self.status, WaitStatus::Exited(_, 0)),
            Access::Fault => {
                last == Seen::Died
                    && matches!(self.status, WaitStatus::Signaled(_, Signal::SIGBUS, _))
            }
        };
        end_ok && before.iter().all(|p| p.1 == Seen::Exact)
    }
}

/// Codes the reader child writes to its pipe, one byte each.
const BEGIN: u8 = b'b';
const EXACT: u8 = b'=';
const ZEROS: u8 = b'0';
const WRONG: u8 = b'x';
const EIO: u8 = b'E';
const OTHER: u8 = b'e';

/// A forked reader of one file: it accesses the given pages in order and
/// reports each (began, then what it saw) over a pipe; a read() error
/// stops it, a denied fault kills it with SIGBUS.
pub struct Reader {
    pid: Pid,
    pages: Vec<u64>,
    rd: std::fs::File,
    got: Vec<u8>,
    status: Option<WaitStatus>,
}

impl Reader {
    pub fn spawn(path: &Path, pages: &[u64], access: Access) -> Reader {
        let f = std::fs::File::open(path).or_brok("open the stub");
        let size = f.metadata().or_brok("stat the stub").len();
        let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe().or_brok("pipe");
        // SAFETY: the child only reads the file and writes to the pipe, then
        // _exit()s; it relies on no other thread.
        match unsafe { fork() }.or_brok("fork") {
            ForkResult::Child => {
                drop(rd);
                let code = read_pages(&f, size, pages, access, &wr);
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(wr);
                nix::fcntl::fcntl(
                    rd.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .or_brok("O_NONBLOCK");
                Reader {
                    pid: child,
                    pages: pages.to_vec(),
                    rd: rd.into(),
                    got: Vec::new(),
                    status: None,
                }
            }
        }
    }

    /// Read what the child has reported so far.
    fn poll(&mut self) {
        let mut b = [0u8; 256];
        loop {
            match self.rd.read(&mut b) {
                Ok(0) => return,
                Ok(n) => self.got.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => tbrok!("read the reader's pipe: {e}"),
            }
        }
    }

    /// The page it has begun and not finished, if any.
    pub fn in_page(&mut self) -> Option<u64> {
        self.poll();
        let begun = self.got.iter().filter(|&&c| c == BEGIN).count();
        let ended = self.got.len() - begun;
        (begun > ended).then(|| self.pages[begun - 1])
    }

    /// Has it exited (reaped here)?
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).or_brok("waitpid") {
                WaitStatus::StillAlive => return false,
                st => self.status = Some(st),
            }
        }
        true
    }

    /// Wait for the end (at most `limit`, then TBROK) and decode its report.
    pub fn wait(mut self, limit: Duration) -> ReadResult {
        let deadline = Instant::now() + limit;
        while !self.exited() {
            if Instant::now() > deadline {
                let _ = kill(self.pid, Signal::SIGKILL);
                tbrok!("a reader still runs after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.poll();
        let mut pages = Vec::new();
        let mut it = self.pages.iter();
        let mut cur = None;
        for &c in &self.got {
            if c == BEGIN {
                cur = it.next().copied();
                continue;
            }
            let seen = match c {
                EXACT => Seen::Exact,
                ZEROS => Seen::Zeros,
                WRONG => Seen::Wrong,
                EIO => Seen::Eio,
                _ => Seen::OtherError,
            };
            if let Some(p) = cur.take() {
                pages.push((p, seen));
            }
        }
        if let Some(p) = cur {
            pages.push((p, Seen::Died));
        }
        ReadResult {
            pages,
            status: self.status.unwrap_or(WaitStatus::StillAlive),
        }
    }

    /// Is it blocked in the kernel waiting for a fanotify listener's
    /// answer?  See [`waits_for_listener`].
    pub fn waits_for_listener(&self) -> bool {
        waits_for_listener(self.pid)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Is process `pid` blocked in the kernel waiting for a fanotify
/// listener's answer?  Its kernel stack (/proc/PID/stack) says so.
pub fn waits_for_listener(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stack"))
        .map(|s| s.contains("fanotify"))
        .unwrap_or(false)
}

/// The child's loop; its exit code.
fn read_pages(f: &std::fs::File, size: u64, pages: &[u64], access: Access, wr: &OwnedFd) -> i32 {
    let say = |c: u8| {
        let _ = nix::unistd::write(wr, &[c]);
    };
    default_sigbus();
    let pg = page_size();
    let map = match access {
        Access::Fault => {
            let Ok(m) = Map::whole_ro(f, size) else {
                return 2;
            };
            if m.advise(MmapAdvise::MADV_RANDOM).is_err() {
                return 2;
            }
            Some(m)
        }
        Access::Read => None,
    };
    for &p in pages {
        let len = pg.min(size - p * pg) as usize;
        say(BEGIN);
        let data = match &map {
            Some(m) => m.read_page(p)[..len].to_vec(),
            None => {
                let mut b = vec![0u8; len];
                match f.read_exact_at(&mut b, p * pg) {
                    Ok(()) => b,
                    Err(e) => {
                        say(if e.raw_os_error() == Some(libc::EIO) {
                            EIO
                        } else {
                            OTHER
                        });
                        return 0;
                    }
                }
            }
        };
        say(if hsm::pattern::mismatch(p * pg, &data).is_none() {
            EXACT
        } else if data.iter().all(|&b| b == 0) {
            ZEROS
        } else {
            WRONG
        });
    }
    0
}
