//! HTTP round trip of `POST /v1/evaluate` on loopback: the real `helm-proxy` server
//! pinned to core 0 (`taskset -c 0`), this load generator pinned to core 1 (it re-runs
//! itself under `taskset -c 1`), a minimal keep-alive HTTP/1.1 client so that the
//! client's own cost stays small.
//!
//! For each store mode (durable: every answer waits for fsync with group commit;
//! buffered) and each number of concurrent connections, three rounds; the figures
//! printed are the median round's. Every answer is checked (200 and the expected
//! verdict). PUBLIC TEST KEYS only.
//!
//! ```sh
//! cargo bench -p helm-proxy --bench http_roundtrip
//! cargo bench -p helm-proxy --bench http_roundtrip -- --quick   # fewer requests
//! HELM_BENCH_MODE=buffered cargo bench -p helm-proxy --bench http_roundtrip   # one store mode
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::std_instead_of_core,
    clippy::cast_precision_loss,
    missing_debug_implementations
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helm_kernel::keyfile::{key_string, KeyFile};
use verify_core::{body, sha256, Kind, RecordBuilder, Signer, TrustAction};

const TOKEN: &str = "bench-token-agent";

const BUNDLE: &str = r#"
name = "bench"
other_tools = "deny"

[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]

[[rule]]
id = "no-rm"
tools = ["shell"]
verdict = "deny"
require = ["args.cmd == 'rm'"]
"#;

fn signer(name: &str) -> Signer {
    Signer::from_seed(&sha256(
        format!("HELM PROXY BENCH KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes(),
    ))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Key file, trust root, chain, signed bundle and configuration in `d`.
fn setup(d: &Path, durability: &str) {
    let kernel = signer("kernel-1");
    KeyFile::from_seed(
        "kernel-1".into(),
        "kernel".into(),
        sha256(b"HELM PROXY BENCH KEY - PUBLIC, NEVER USE FOR REAL - kernel-1"),
    )
    .write_new(&d.join("kernel.key"))
    .unwrap();
    let root = signer("root-1");
    std::fs::write(
        d.join("trust-root.json"),
        format!(
            r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"root-1","key":"{}"}}]}}"#,
            key_string(&root.public_key())
        ),
    )
    .unwrap();
    let mut chain = Vec::new();
    let mut parent = None;
    for (i, (k, role)) in [
        (kernel.public_key(), "kernel"),
        (signer("author-1").public_key(), "policy-author"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = RecordBuilder::new(
            Kind::TrustEvent,
            body::trust_event(TrustAction::Publish, k, Some(&[role]), None, None),
        );
        b.parents = parent.into_iter().collect();
        b.lamport = i as u64 + 1;
        b.time = now_ms() - 60_000;
        b.principal = "root-1".into();
        b.seq = i as u64;
        let r = b.sign(&root);
        parent = Some(sha256(&r));
        chain.extend_from_slice(&r);
    }
    std::fs::write(d.join("trust-chain.cbor"), chain).unwrap();
    let bundle = guardian::Bundle::from_toml(BUNDLE).unwrap();
    std::fs::write(
        d.join("bundle.signed"),
        guardian::sign_bundle(&bundle, &signer("author-1")),
    )
    .unwrap();
    std::fs::write(
        d.join("helm-proxy.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
dir = "store"
durability = "{durability}"
[policy]
bundles = ["bundle.signed"]
[[token]]
principal = "bench-agent"
token_sha256 = "{}"
"#,
            hex::encode(sha256(TOKEN.as_bytes()))
        ),
    )
    .unwrap();
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start(d: &Path, pin: bool) -> Server {
    let bin = env!("CARGO_BIN_EXE_helm-proxy");
    let log = std::fs::File::create(d.join("server.log")).unwrap();
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(d.join("helm-proxy.toml"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("helm-proxy listening on http://")
        .unwrap_or_else(|| {
            panic!(
                "server did not start: {line:?}\n{}",
                std::fs::read_to_string(d.join("server.log")).unwrap_or_default()
            )
        })
        .to_owned();
    Server { child, addr }
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    req: Vec<u8>,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(8192),
            req: Vec::with_capacity(1024),
        }
    }

    /// Sends one evaluate request; returns the status and body.
    fn evaluate(&mut self, body: &[u8]) -> (u16, Vec<u8>) {
        self.req.clear();
        write!(
            self.req,
            "POST /v1/evaluate HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req).unwrap();
        // Read the head.
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).unwrap().to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("content-length");
        while self.buf.len() < head_end + len {
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        (status, self.buf[head_end..head_end + len].to_vec())
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[derive(Clone, Copy, Debug)]
struct Figures {
    p50: f64,
    p99: f64,
    p999: f64,
    per_sec: f64,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// `requests` calls over `conns` connections (one thread each); every 4th call is denied.
fn round(addr: &str, conns: usize, requests: usize, tag: &str) -> Figures {
    let per = requests / conns;
    let t0 = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let addr = addr.to_owned();
            let tag = tag.to_owned();
            std::thread::spawn(move || {
                let mut conn = Conn::new(&addr);
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let deny = i % 4 == 3;
                    let body = if deny {
                        format!(r#"{{"tool":"shell","args":{{"cmd":"rm","n":{i}}},"session":"{tag}-{c}"}}"#)
                    } else {
                        format!(
                            r#"{{"tool":"read_file","args":{{"path":"/workspace/{tag}/{c}/{i}.txt"}},"session":"{tag}-{c}"}}"#
                        )
                    };
                    let t = Instant::now();
                    let (status, answer) = conn.evaluate(body.as_bytes());
                    lat.push(t.elapsed());
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    let want: &[u8] = if deny {
                        br#""status":"deny""#
                    } else {
                        br#""status":"allow""#
                    };
                    assert!(find(&answer, want).is_some(), "{}", String::from_utf8_lossy(&answer));
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let wall = t0.elapsed();
    all.sort();
    Figures {
        p50: pct(&all, 0.50),
        p99: pct(&all, 0.99),
        p999: pct(&all, 0.999),
        per_sec: all.len() as f64 / wall.as_secs_f64(),
    }
}

fn median(mut v: Vec<Figures>) -> Figures {
    v.sort_by(|a, b| a.p50.total_cmp(&b.p50));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let have_taskset = Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    // Counted before pinning: once pinned, this process sees one core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned_child = std::env::var_os("HELM_BENCH_PINNED").is_some();
    let pin = pinned_child || (have_taskset && cores >= 2);
    if pin && !pinned_child {
        // Re-run this generator pinned to core 1; the server goes to core 0.
        let me = std::env::current_exe().unwrap();
        let status = Command::new("taskset")
            .args(["-c", "1"])
            .arg(me)
            .args(&args)
            .env("HELM_BENCH_PINNED", "1")
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "HTTP round trip, POST /v1/evaluate on loopback (3/4 allow, 1/4 deny); {}; load average {}",
        if pin {
            "server on core 0, load generator on core 1"
        } else {
            "NOT PINNED (taskset missing or one core)"
        },
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<9} {:>5} {:>8} {:>9} {:>9} {:>9} {:>10}",
        "store", "conns", "requests", "p50 µs", "p99 µs", "p99.9 µs", "answers/s"
    );
    for (mode, cases) in [
        ("durable", vec![(1usize, 2000usize), (16, 8000)]),
        ("buffered", vec![(1, 10000), (16, 16000)]),
    ] {
        // HELM_BENCH_MODE=durable|buffered runs one store mode only (e.g. under perf).
        if std::env::var("HELM_BENCH_MODE").is_ok_and(|m| m != mode) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path(), mode);
        let server = start(dir.path(), pin);
        // Warm up: connections, allocator, page cache.
        round(&server.addr, 4, 400, "warmup");
        for (conns, requests) in cases {
            let requests = if quick { requests / 5 } else { requests };
            let rounds: Vec<Figures> = (0..3)
                .map(|r| round(&server.addr, conns, requests, &format!("{mode}-{conns}-{r}")))
                .collect();
            let m = median(rounds);
            println!(
                "{:<9} {:>5} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
                mode, conns, requests, m.p50, m.p99, m.p999, m.per_sec
            );
        }
        drop(server);
    }
}
