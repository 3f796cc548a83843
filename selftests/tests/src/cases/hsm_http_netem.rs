//! hsm_http_netem: link shaping of the guest's loopback for the HTTP
//! source.  `tc qdisc add dev lo root netem delay 5ms` delays each
//! direction, so a round trip takes at least 10 ms: every TCP connect to
//! nginx (started by the test on loopback) takes that long, and every
//! fault-time event hsm-serve answers from nginx (one range request at
//! least) too: 8 random touches of a stub (MADV_RANDOM) read exact with 8
//! events whose median latency is at least the round trip.  Removing the
//! qdisc leaves `lo` without netem.  TCONF naming the kernel options when
//! tc cannot add the qdisc.
//!
//! Guards issue 15 item 2 (a real server in the test VM over a shaped link;
//! the kernel options are in selftests/config) and the HTTP source of the
//! reference HSM (selftests/hsm/README.md).

use super::hsm_http::*;
use super::hsm_util::*;
use crate::common::page_size;
use ltp::fs::HSM_FILESYSTEMS;
use ltp::res::OrBrok;
use ltp::{tcheck, tinfo, Ctx, Test};
use nix::sys::signal::Signal;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

pub const TEST: Test = Test {
    name: "hsm_http_netem",
    doc: "netem on lo: nginx's round trip and hsm-serve's HTTP fills take at least the shaped RTT, content exact",
    needs_kconfigs: &[
        "CONFIG_FANOTIFY_ACCESS_PERMISSIONS",
        "CONFIG_NET_SCHED",
        "CONFIG_NET_SCH_NETEM",
    ],
    needs_cmds: &["nginx", "tc"],
    filesystems: HSM_FILESYSTEMS,
    tags: &[("doc", "selftests/config"), ("doc", "selftests/hsm/README.md")],
    timeout: Duration::from_secs(300),
    run,
    cleanup: Some(|ctx| {
        netem_remove();
        cleanup(ctx);
    }),
    ..Test::DEFAULT
};

/// netem delay of each direction.
const DELAY: Duration = Duration::from_millis(5);
const RTT: Duration = Duration::from_millis(10);
const TOUCHES: u64 = 8;

/// The shortest of a few TCP connects to `port`.
fn connect_time(port: u16) -> Duration {
    (0..5)
        .map(|_| {
            let t0 = Instant::now();
            let c = TcpStream::connect(("127.0.0.1", port)).or_brok("connect to nginx");
            let t = t0.elapsed();
            drop(c);
            t
        })
        .min()
        .unwrap_or_default()
}

fn lo_qdisc() -> String {
    let o = Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .or_brok("tc qdisc show");
    text(&o.stdout)
}

fn run(ctx: &Ctx) {
    let base = http_dir(ctx).join("netem");
    let root = base.join("root");
    let src = root.join("src");
    let dst = ctx.path("dst");
    std::fs::create_dir_all(&src).or_brok("mkdir the source");
    create_pattern(&src.join("file"), 256 * page_size());
    populate(&src, &dst);
    let nginx = Nginx::start(&base, &root, Conf::default());
    let plain = connect_time(nginx.port());
    tinfo!("TCP connect to nginx without netem: {plain:?}");

    let netem = Netem::delay(DELAY);
    tinfo!("lo: {}", lo_qdisc());
    let shaped = connect_time(nginx.port());
    tcheck!(
        shaped >= RTT,
        "netem delay {DELAY:?} on lo: the fastest of 5 TCP connects took {shaped:?} >= {RTT:?}"
    );

    let mut s = Serve::start(&serve_args(nginx.url("src/"), &dst, "fault", &[]));
    let touches = TOUCHES.to_string();
    let (code, out) = validate(
        &dst.join("file"),
        &[
            "--via",
            "mmap",
            "--sample",
            &touches,
            "--advice",
            "random",
            "--threads",
            "1",
        ],
    );
    tcheck!(
        code == 0,
        "{TOUCHES} touched pages exact over the shaped link: {out}"
    );
    let m = s.stats();
    let p50 = Duration::from_micros(kv(&m, "p50_us"));
    tinfo!(
        "{} events, fill latency p50 {p50:?}, p99 {} us, over a {RTT:?} round trip",
        kv(&m, "events"),
        kv(&m, "p99_us")
    );
    // The histogram is exact within 6 %.
    tcheck!(
        kv(&m, "events") == TOUCHES && p50 >= RTT * 94 / 100,
        "{} events for {TOUCHES} touches, median latency {p50:?}: at least a round trip",
        kv(&m, "events")
    );
    let (st, _) = s.stop(Signal::SIGTERM);
    tcheck!(st.code() == Some(0), "SIGTERM: {st}");

    drop(netem);
    let left = lo_qdisc();
    tcheck!(!left.contains("netem"), "netem removed from lo: {left}");
    nginx.stop();
}
