//! Tests of the sources against a tiny HTTP/1.1 server in the test process
//! (127.0.0.1, a thread per connection, keep-alive, `Range`), which can be
//! told to misbehave.

use super::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How the server answers.
#[derive(Clone, Debug, PartialEq)]
enum Behave {
    /// Correctly.
    Good,
    /// 200 with the whole file, ignoring `Range`.
    Full200,
    /// 206 with the range shifted by one byte (and its bytes).
    WrongRange,
    /// 206 with a correct Content-Range but one byte less of body (and a
    /// matching Content-Length).
    ShortBody,
    /// 206 with no Content-Length (`Connection: close` framing) and one
    /// byte less of body.
    ShortBodyClose,
    /// 206 with one byte more of body (and a matching Content-Length).
    LongBody,
    /// 206 announcing the full length, sending half, closing.
    CutBody,
    /// 503 this many times, then correctly.
    Fail503(u32),
    /// Nothing for 3 s, then close.
    Hang,
}

struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    behave: Arc<Mutex<Behave>>,
}

impl Server {
    /// Serve `files` (relative path -> content) under `/prefix/`.
    fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let behave = Arc::new(Mutex::new(Behave::Good));
        let files = Arc::new(files);
        let (a, r, b) = (accepts.clone(), requests.clone(), behave.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (files, r, b) = (files.clone(), r.clone(), b.clone());
                std::thread::spawn(move || {
                    let _ = connection(s, &files, &r, &b);
                });
            }
        });
        Server {
            addr,
            accepts,
            requests,
            behave,
        }
    }

    fn set(&self, b: Behave) {
        *self.behave.lock().unwrap() = b;
    }

    fn url(&self) -> String {
        format!("http://{}/prefix/", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn decode(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(h, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn connection(
    s: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    requests: &AtomicUsize,
    behave: &Mutex<Behave>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            if k.eq_ignore_ascii_case("range") {
                let (a, b) = v
                    .trim()
                    .strip_prefix("bytes=")
                    .unwrap()
                    .split_once('-')
                    .unwrap();
                range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let how = {
            let mut b = behave.lock().unwrap();
            let now = b.clone();
            if let Behave::Fail503(n) = &mut *b {
                *b = if *n > 1 {
                    Behave::Fail503(*n - 1)
                } else {
                    Behave::Good
                };
            }
            now
        };
        let Some(data) = path
            .strip_prefix("/prefix/")
            .and_then(|p| files.get(&decode(p)))
        else {
            w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let size = data.len() as u64;
        match how {
            Behave::Fail503(_) => {
                w.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            Behave::Hang => {
                std::thread::sleep(Duration::from_secs(3));
                return Ok(());
            }
            _ => {}
        }
        let Some((a, b)) = range.filter(|_| how != Behave::Full200) else {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n")?;
            w.write_all(data)?;
            continue;
        };
        if a >= size {
            write!(
                w,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n\
                 Content-Length: 0\r\n\r\n"
            )?;
            continue;
        }
        let b = b.min(size - 1);
        let (a, b, body_end) = match how {
            Behave::WrongRange => (a + 1, b.min(size - 2) + 1, b.min(size - 2) + 2),
            Behave::ShortBody | Behave::ShortBodyClose => (a, b, b),
            Behave::LongBody => (a, b, (b + 2).min(size)),
            _ => (a, b, b + 1),
        };
        let body = &data[a as usize..body_end as usize];
        if how == Behave::ShortBodyClose {
            write!(
                w,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\n\
                 Connection: close\r\n\r\n"
            )?;
            w.write_all(body)?;
            return Ok(());
        }
        let cl = if how == Behave::CutBody {
            b - a + 1
        } else {
            body.len() as u64
        };
        write!(
            w,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{size}\r\n\
             Content-Length: {cl}\r\n\r\n"
        )?;
        if how == Behave::CutBody {
            w.write_all(&body[..body.len() / 2])?;
            return Ok(());
        }
        w.write_all(body)?;
    }
}

/// Content whose every byte depends on its offset.
fn content(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 7) as u8 ^ salt)
        .collect()
}

const SIZE: usize = 3 * 4096 + 123;

fn one_file() -> (Server, Vec<u8>) {
    let data = content(SIZE, 1);
    let s = Server::start(HashMap::from([("f".to_string(), data.clone())]));
    (s, data)
}

fn quick() -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        retries: 3,
        backoff: Duration::from_millis(10),
        max_request: HTTP_MAX_REQUEST,
    }
}

fn fetcher(s: &Server, cfg: HttpConfig) -> HttpFetcher {
    HttpSource::new(&s.url(), cfg).unwrap().http_fetcher()
}

/// Offsets and lengths around pages and the end of a SIZE file.
fn probes() -> Vec<(u64, usize)> {
    let n = SIZE as u64;
    vec![
        (0, 4096),
        (1, 100),
        (4095, 2),
        (4096, 8192),
        (0, SIZE),
        (n - 1, 1),
        (n - 100, 4096),
        (n, 10),
        (n + 5000, 10),
    ]
}

fn expect(data: &[u8], off: u64, len: usize) -> &[u8] {
    let s = (off as usize).min(data.len());
    &data[s..(s + len).min(data.len())]
}

#[test]
fn http_reads_ranges_clipped_at_eof() {
    let (s, data) = one_file();
    let mut f = fetcher(&s, quick());
    for (off, len) in probes() {
        let got = f.read_at(Path::new("f"), off, len).unwrap();
        assert_eq!(got, expect(&data, off, len), "offset {off} len {len}");
    }
}

#[test]
fn http_keeps_the_connection() {
    let (s, data) = one_file();
    let mut f = fetcher(&s, quick());
    for i in 0..20u64 {
        let got = f.read_at(Path::new("f"), i * 100, 333).unwrap();
        assert_eq!(got, expect(&data, i * 100, 333));
    }
    assert_eq!(s.requests(), 20);
    assert_eq!(
        s.accepts(),
        1,
        "20 requests of one fetcher on one connection"
    );
    // Another worker: a connection of its own.
    let mut g = fetcher(&s, quick());
    g.read_at(Path::new("f"), 0, 10).unwrap();
    f.read_at(Path::new("f"), 0, 10).unwrap();
    assert_eq!(s.accepts(), 2);
}

#[test]
fn http_splits_long_reads() {
    let (s, data) = one_file();
    let mut f = fetcher(
        &s,
        HttpConfig {
            max_request: 1000,
            ..quick()
        },
    );
    let got = f.read_at(Path::new("f"), 50, 5000).unwrap();
    assert_eq!(got, expect(&data, 50, 5000));
    assert_eq!(s.requests(), 5);
    assert_eq!(s.accepts(), 1);
}

#[test]
fn http_retries_503() {
    let (s, data) = one_file();
    s.set(Behave::Fail503(2));
    let mut f = fetcher(&s, quick());
    let got = f.read_at(Path::new("f"), 4096, 4096).unwrap();
    assert_eq!(got, expect(&data, 4096, 4096));
    assert_eq!(s.requests(), 3, "two 503s, then the range");
}

#[test]
fn http_gives_up_after_the_retries() {
    let (s, _) = one_file();
    s.set(Behave::Fail503(100));
    let mut f = fetcher(
        &s,
        HttpConfig {
            retries: 2,
            ..quick()
        },
    );
    let e = f.read_at(Path::new("f"), 0, 4096).unwrap_err();
    assert!(format!("{e:#}").contains("503"), "{e:#}");
    assert_eq!(s.requests(), 3, "one attempt and two retries");
}

/// Every misbehaviour is an error, never bytes.
fn refused(b: Behave, off: u64, len: usize) -> String {
    let (s, _) = one_file();
    s.set(b.clone());
    let mut f = fetcher(&s, quick());
    match f.read_at(Path::new("f"), off, len) {
        Ok(v) => panic!("{b:?}: {} bytes returned", v.len()),
        Err(e) => {
            eprintln!("{b:?}: {e:#}");
            format!("{e:#}")
        }
    }
}

#[test]
fn http_refuses_200_for_a_range() {
    let e = refused(Behave::Full200, 4096, 4096);
    assert!(e.contains("200"), "{e}");
    // At offset 0 but not the whole file: the length does not match.
    let e = refused(Behave::Full200, 0, 4096);
    assert!(e.contains("Content-Length"), "{e}");
}

#[test]
fn http_accepts_200_for_the_whole_file() {
    let (s, data) = one_file();
    s.set(Behave::Full200);
    let mut f = fetcher(&s, quick());
    assert_eq!(f.read_at(Path::new("f"), 0, SIZE).unwrap(), data);
}

#[test]
fn http_refuses_a_wrong_content_range() {
    let e = refused(Behave::WrongRange, 4096, 4096);
    assert!(e.contains("Content-Range"), "{e}");
}

#[test]
fn http_refuses_a_short_body() {
    let e = refused(Behave::ShortBody, 4096, 4096);
    assert!(e.contains("Content-Length"), "{e}");
    // Clipped at the end of the file too.
    let e = refused(Behave::ShortBody, SIZE as u64 - 100, 4096);
    assert!(e.contains("Content-Length"), "{e}");
    // No Content-Length: the body is counted.
    let e = refused(Behave::ShortBodyClose, 4096, 4096);
    assert!(e.contains("body of 4095 bytes for 4096"), "{e}");
}

#[test]
fn http_refuses_a_long_body() {
    let e = refused(Behave::LongBody, 4096, 4096);
    assert!(e.contains("Content-Length"), "{e}");
}

#[test]
fn http_refuses_a_cut_body() {
    let (s, _) = one_file();
    s.set(Behave::CutBody);
    let mut f = fetcher(&s, quick());
    let e = f.read_at(Path::new("f"), 0, 4096).unwrap_err();
    assert!(format!("{e:#}").contains("4 attempt"), "{e:#}");
    assert_eq!(s.requests(), 4, "a cut connection is retried");
}

#[test]
fn http_times_out_on_a_hang() {
    let (s, _) = one_file();
    s.set(Behave::Hang);
    let mut f = fetcher(
        &s,
        HttpConfig {
            timeout: Duration::from_millis(300),
            ..quick()
        },
    );
    let t = Instant::now();
    let e = f.read_at(Path::new("f"), 0, 4096).unwrap_err();
    let took = t.elapsed();
    eprintln!("Hang: {took:?}: {e:#}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "took {took:?}: {e:#}"
    );
}

#[test]
fn http_missing_file_is_not_retried() {
    let (s, _) = one_file();
    let mut f = fetcher(&s, quick());
    let e = f.read_at(Path::new("nope"), 0, 10).unwrap_err();
    assert!(format!("{e:#}").contains("404"), "{e:#}");
    assert_eq!(s.requests(), 1);
}

#[test]
fn http_server_down_fails_in_time() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let src = HttpSource::new(
        &format!("http://{addr}/x/"),
        HttpConfig {
            timeout: Duration::from_millis(500),
            ..quick()
        },
    )
    .unwrap();
    let t = Instant::now();
    let e = src.fetcher().read_at(Path::new("f"), 0, 10).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{e:#}");
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hsm-source-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn dir_and_http_give_the_same_bytes() {
    let d = tmpdir("same");
    let rel = "sub dir/f%ü";
    let data = content(SIZE, 7);
    std::fs::create_dir_all(d.join("sub dir")).unwrap();
    std::fs::write(d.join(rel), &data).unwrap();
    let s = Server::start(HashMap::from([(rel.to_string(), data.clone())]));
    let dir = DirSource::new(&d).unwrap();
    let http = HttpSource::new(&s.url(), quick()).unwrap();
    let (mut df, mut hf) = (dir.fetcher(), http.fetcher());
    for (off, len) in probes() {
        let a = df.read_at(Path::new(rel), off, len).unwrap();
        let b = hf.read_at(Path::new(rel), off, len).unwrap();
        assert_eq!(a, b, "offset {off} len {len}");
        assert_eq!(a, expect(&data, off, len), "offset {off} len {len}");
    }
    assert_eq!(s.accepts(), 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn copy_to_fills_and_refuses_past_eof() {
    let d = tmpdir("copy");
    let data = content(SIZE, 9);
    std::fs::write(d.join("f"), &data).unwrap();
    let s = Server::start(HashMap::from([("f".to_string(), data.clone())]));
    let dir = DirSource::new(&d).unwrap();
    let small = HttpConfig {
        max_request: 3000,
        ..quick()
    };
    let http = HttpSource::new(&s.url(), small).unwrap();
    for (name, src) in [("dir", &dir as &dyn Source), ("http", &http)] {
        let out_path = d.join(format!("out-{name}"));
        let out = File::create(&out_path).unwrap();
        out.set_len(SIZE as u64).unwrap();
        let mut fe = src.fetcher();
        let mut f = fe.open(Path::new("f")).unwrap();
        f.copy_to(out.as_fd(), 4096, SIZE as u64).unwrap();
        f.copy_to(out.as_fd(), 0, 4096).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), data, "{name}");
        let e = f.copy_to(out.as_fd(), 8192, SIZE as u64 + 10).unwrap_err();
        assert!(format!("{e:#}").contains("short read"), "{name}: {e:#}");
    }
    // The missing local file fails at open, as before.
    let e = dir.fetcher().open(Path::new("gone")).err().unwrap();
    assert!(format!("{e:#}").contains("source"), "{e:#}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn urls() {
    let s = HttpSource::new("http://h:1/p", HttpConfig::default()).unwrap();
    assert_eq!(
        s.url_of(Path::new("a b/ü%")).unwrap(),
        "http://h:1/p/a%20b/%C3%BC%25"
    );
    let s = HttpSource::new("http://h:1/p/", HttpConfig::default()).unwrap();
    assert_eq!(s.url_of(Path::new("x/y")).unwrap(), "http://h:1/p/x/y");
    assert_eq!(s.url_of(Path::new("")).unwrap(), "http://h:1/p/");
    assert!(s.url_of(Path::new("../x")).is_err());
    let s = HttpSource::new("http://h", HttpConfig::default()).unwrap();
    assert_eq!(s.url_of(Path::new("x")).unwrap(), "http://h/x");
    for bad in [
        "http://",
        "http:///p",
        "http://h/p?q",
        "http://u@h/",
        "http://h/a b",
    ] {
        assert!(
            HttpSource::new(bad, HttpConfig::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn open_source_kinds() {
    let cfg = HttpConfig::default;
    assert_eq!(
        open_source(OsStr::new("http://127.0.0.1:9/x/"), cfg())
            .unwrap()
            .name(),
        "http://127.0.0.1:9/x/"
    );
    for bad in ["https://h/x/", "ftp://h/x"] {
        let e = open_source(OsStr::new(bad), cfg()).err().unwrap();
        assert!(format!("{e:#}").contains("unsupported URL scheme"), "{e:#}");
    }
    let d = tmpdir("open");
    assert!(open_source(d.as_os_str(), cfg()).is_ok());
    let e = open_source(d.join("missing").as_os_str(), cfg())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("missing"), "{e:#}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn content_range_parsing() {
    assert_eq!(
        parse_content_range("bytes 0-9/100"),
        Some((0, 9, Some(100)))
    );
    assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
    assert_eq!(parse_content_range("bytes -1-9/100"), None);
    assert_eq!(parse_content_range("items 0-9/100"), None);
    assert_eq!(parse_content_range("bytes 0-9"), None);
    assert_eq!(parse_unsatisfied("bytes */100"), Some(100));
    assert_eq!(parse_unsatisfied("bytes 0-1/100"), None);
}
