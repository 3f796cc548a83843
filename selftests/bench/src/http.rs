//! The remote store of the HTTP benchmarks and of the demo (issue 15 items
//! 7 and 8): nginx from the distribution serving a copy of the toolchain on
//! the guest's loopback, and link profiles shaped with netem on `lo`.
//!
//! * [`Www`]: the document root on the guest's tmpfs (never on the
//!   filesystem of the lazy trees): the toolchain under `tc/`, its
//!   manifest (`hsm-manifest`) at `manifest`; nginx (one foreground process,
//!   configuration and logs next to the root) with an access log of one
//!   line per request (status, body bytes), from which the bytes and
//!   requests of each measurement are counted.
//! * [`Link`]: a profile (RTT, rate).  netem on `lo` delays each direction,
//!   and every packet of both directions goes through `lo`'s one root
//!   qdisc: `delay RTT/2 rate RATE`.  The rate a TCG guest actually reaches
//!   is measured ([`measure`]): one request of a few seconds' worth of data
//!   on a warm connection, and the fastest of a few one-byte requests.
//! * [`download_all`]: the "full copy" of the toolchain: every file fetched
//!   whole with range requests over a few parallel connections.

use crate::say;
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use hsm::source::{Fetcher, HttpConfig, HttpSource, Source};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A link profile.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Short name, used in the sample metrics (`10ms`).
    pub id: &'static str,
    pub rtt: Duration,
    /// Bits per second.
    pub rate: u64,
}

impl Link {
    pub fn text(self) -> String {
        format!(
            "{} ms RTT / {} Mbit/s",
            self.rtt.as_millis(),
            self.rate / 1_000_000
        )
    }
}

/// The three profiles of issue 15 item 7.
pub const LINKS: &[Link] = &[
    Link {
        id: "1ms",
        rtt: Duration::from_millis(1),
        rate: 1_000_000_000,
    },
    Link {
        id: "10ms",
        rtt: Duration::from_millis(10),
        rate: 200_000_000,
    },
    Link {
        id: "50ms",
        rtt: Duration::from_millis(50),
        rate: 50_000_000,
    },
];

/// A profile by its id (`1ms`, `10ms`, `50ms`).
pub fn link(id: &str) -> Result<Link> {
    LINKS.iter().copied().find(|l| l.id == id).ok_or_else(|| {
        anyhow!(
            "no link profile {id:?} (have {})",
            LINKS.iter().map(|l| l.id).collect::<Vec<_>>().join(", ")
        )
    })
}

/// netem on `lo` as the profile says; removed on drop.
pub struct Netem;

impl Netem {
    pub fn set(l: Link) -> Result<Netem> {
        let _ = remove();
        let delay = format!("{}us", l.rtt.as_micros() / 2);
        let rate = format!("{}bit", l.rate);
        sys::run(Command::new("tc").args([
            "qdisc", "add", "dev", "lo", "root", "netem", "delay", &delay, "rate", &rate, "limit",
            "100000",
        ]))
        .context(
            "tc qdisc add dev lo root netem (needs CONFIG_NET_SCHED, CONFIG_NET_SCH_NETEM and \
             iproute2: scripts/setup.sh)",
        )?;
        Ok(Netem)
    }
}

fn remove() -> Result<String> {
    sys::run(Command::new("tc").args(["qdisc", "del", "dev", "lo", "root"]))
}

impl Drop for Netem {
    fn drop(&mut self) {
        let _ = remove();
    }
}

/// Bring `lo` up if it is down.
fn loopback_up() -> Result<()> {
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").context("read lo's flags")?;
    let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .context("parse lo's flags")?
        & 1
        != 0;
    if !up {
        sys::run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    }
    Ok(())
}

/// The document root and its nginx; nginx is killed on drop.
pub struct Www {
    pub dir: PathBuf,
    child: Child,
    port: u16,
    log: PathBuf,
    /// How far the access log has been counted.
    seen: u64,
}

/// What nginx served between two [`Www::served`] calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    pub bytes: u64,
}

impl Www {
    /// `dir/www/tc`: a copy of `toolchain` without the `exclude` paths,
    /// `dir/www/manifest`: its manifest; nginx serving `dir/www` on a free
    /// port, its configuration and logs in `dir`.
    pub fn start(dir: &Path, toolchain: &Path, exclude: &[String]) -> Result<Www> {
        if sys::which("nginx").is_none() {
            bail!("nginx is not installed (scripts/setup.sh installs it)");
        }
        loopback_up()?;
        sys::remove_tree(dir)?;
        std::fs::create_dir_all(dir.join("tmp"))
            .with_context(|| format!("mkdir {}", dir.display()))?;
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        let t = Instant::now();
        let (files, bytes) = sys::copy_tree(toolchain, &www.join("tc"), exclude)?;
        say!(
            "HTTP: document root {}: {files} files, {} MiB copied in {:.1} s",
            www.display(),
            bytes >> 20,
            t.elapsed().as_secs_f64()
        );
        sys::run(
            Command::new(sys::tool("hsm-manifest")?)
                .arg(www.join("tc"))
                .arg("-o")
                .arg(www.join("manifest")),
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port")?
            .port();
        let d = dir.display();
        let log = dir.join("access.log");
        let conf = format!(
            "daemon off;\nmaster_process off;\npid \"{d}/nginx.pid\";\n\
             error_log \"{d}/error.log\" warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  log_format fpc '$status $body_bytes_sent';\n  access_log \"{log}\" fpc;\n\
             \x20 client_body_temp_path \"{d}/tmp/body\";\n  proxy_temp_path \"{d}/tmp/proxy\";\n\
             \x20 fastcgi_temp_path \"{d}/tmp/fastcgi\";\n  uwsgi_temp_path \"{d}/tmp/uwsgi\";\n\
             \x20 scgi_temp_path \"{d}/tmp/scgi\";\n  default_type application/octet-stream;\n\
             \x20 sendfile on;\n  keepalive_requests 1000000;\n  keepalive_timeout 600s;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    root \"{w}\";\n  }}\n}}\n",
            log = log.display(),
            w = www.display()
        );
        let cfg = dir.join("nginx.conf");
        std::fs::write(&cfg, conf).context("write nginx.conf")?;
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
            .context("spawn nginx")?;
        let mut w = Www {
            dir: www,
            child,
            port,
            log,
            seen: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = w.child.try_wait()? {
                bail!(
                    "nginx exited ({st}): {}",
                    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("nginx does not listen on port {port} after 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(w)
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The toolchain's URL (hsm-serve --source).
    pub fn tc_url(&self) -> String {
        self.url("tc/")
    }

    /// Requests and body bytes served since the last call.
    pub fn served(&mut self) -> Result<Served> {
        let text =
            std::fs::read(&self.log).with_context(|| format!("read {}", self.log.display()))?;
        let new = &text[(self.seen as usize).min(text.len())..];
        // Only whole lines.
        let upto = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.seen += upto as u64;
        let mut s = Served::default();
        for l in String::from_utf8_lossy(&new[..upto]).lines() {
            let mut f = l.split_whitespace();
            let (Some(_status), Some(b)) = (f.next(), f.next()) else {
                continue;
            };
            s.requests += 1;
            s.bytes += b.parse::<u64>().unwrap_or(0);
        }
        Ok(s)
    }
}

impl Drop for Www {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The link as measured: bytes per second of one large request on a warm
/// connection, and the fastest small request (a round trip with nginx).
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub bytes_per_sec: f64,
    pub rtt: Duration,
}

fn source(url: &str, timeout: Duration, max_request: usize) -> Result<HttpSource> {
    HttpSource::new(
        url,
        HttpConfig {
            timeout,
            max_request,
            retries: 0,
            ..HttpConfig::default()
        },
    )
}

/// Measure the link of `www` (netem in place) with `file` (relative to the
/// toolchain, at least a few MiB).
pub fn measure(www: &Www, l: Link, file: &Path, file_size: u64) -> Result<Measured> {
    // About 2 s of data at the nominal rate, 8 to 48 MiB.
    let want = ((l.rate / 8) * 2).clamp(8 << 20, 48 << 20).min(file_size) as usize;
    let src = source(&www.tc_url(), Duration::from_secs(300), 64 << 20)?;
    let mut f = src.http_fetcher();
    let mut rtt = Duration::MAX;
    for i in 0..6 {
        let t = Instant::now();
        let b = f.read_at(file, i * 4096, 1)?;
        if b.len() != 1 {
            bail!(
                "a one-byte request of {} gave {} bytes",
                file.display(),
                b.len()
            );
        }
        if i > 0 {
            // The first one opened the connection.
            rtt = rtt.min(t.elapsed());
        }
    }
    let t = Instant::now();
    let b = f.read_at(file, 0, want)?;
    let secs = t.elapsed().as_secs_f64();
    if b.len() != want {
        bail!("a request of {want} bytes gave {}", b.len());
    }
    let bps = want as f64 / (secs - rtt.as_secs_f64()).max(1e-6);
    Ok(Measured {
        bytes_per_sec: bps,
        rtt,
    })
}

/// The full copy: every regular file of the stub tree `dst` (made by
/// hsm-populate, no daemon) fetched whole from `url` over `conns` parallel
/// connections, biggest files first, written into the stubs.  Returns the
/// bytes written.
pub fn download_all(url: &str, dst: &Path, conns: usize) -> Result<u64> {
    let mut files: Vec<(PathBuf, u64)> = sys::walk(dst)?
        .into_iter()
        .map(|(p, m)| (p, m.len()))
        .collect();
    // Smallest first: pop() takes the biggest.
    files.sort_by_key(|f| f.1);
    let total: u64 = files.iter().map(|f| f.1).sum();
    let queue = Arc::new(Mutex::new(files));
    let src = Arc::new(source(url, Duration::from_secs(600), 8 << 20)?);
    let threads: Vec<_> = (0..conns.max(1))
        .map(|_| {
            let (queue, src, dst) = (queue.clone(), src.clone(), dst.to_path_buf());
            std::thread::spawn(move || -> Result<()> {
                let mut f = src.fetcher();
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((p, len)) = next else { return Ok(()) };
                    let rel = p.strip_prefix(&dst)?;
                    let out = std::fs::File::options()
                        .write(true)
                        .open(&p)
                        .with_context(|| format!("open {}", p.display()))?;
                    if len > 0 {
                        f.open(rel)?
                            .copy_to(out.as_fd(), 0, len)
                            .with_context(|| format!("download {}", rel.display()))?;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("a download thread panicked"))??;
    }
    Ok(total)
}
