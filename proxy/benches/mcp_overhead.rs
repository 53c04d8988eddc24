//! Latency the MCP interceptor adds to one `tools/call`, versus the client talking to
//! the same server directly: stdio (`helm-proxy mcp --stdio`) and Streamable HTTP
//! (`helm-proxy serve`, `/mcp/{server}`), buffered and durable stores.
//!
//! The upstream is a minimal MCP server built into this benchmark (it re-runs itself
//! with `HELM_MCP_BENCH_ROLE=stdio` or `=http`), answering `tools/call echo` at once, so
//! that the figures are the proxy's own cost: parsing, the kernel's decision (INTENT and
//! DECISION signed and appended), forwarding, the EFFECT (signed and appended), and the
//! extra hops. `helm-proxy` runs on core 0 (`taskset -c 0`), the client and the
//! upstream on core 1 (`taskset -c 1`). Calls are sequential (one in flight); every
//! answer is checked. PUBLIC TEST KEYS only.
//!
//! ```sh
//! cargo bench -p helm-proxy --bench mcp_overhead             # 5000 calls per case
//! cargo bench -p helm-proxy --bench mcp_overhead -- --quick  # 500
//! HELM_BENCH_MODE=buffered cargo bench -p helm-proxy --bench mcp_overhead  # one store mode
//! HELM_MCP_BENCH_ONLY=stdio cargo bench -p helm-proxy --bench mcp_overhead # or =http
//! ```
//!
//! Besides the latencies, each case prints the CPU time `helm-proxy` spent per call
//! (all its threads, from `/proc/PID/task/*/schedstat`): on a shared machine it moves
//! far less than the wall-clock figures. `HELM_MCP_BENCH_WRAP="valgrind
//! --tool=callgrind --callgrind-out-file=/tmp/cg.%p"` runs `helm-proxy` under that
//! command (split on spaces) to profile it; `HELM_MCP_BENCH_CALLS=N` sets the number
//! of calls per case; `HELM_MCP_BENCH_PROXY=PATH` benchmarks another `helm-proxy`
//! binary (to compare two builds); `HELM_BENCH_PRESIGN=N` sets `[signer] presign`
//! (0: sign without presigned nonces); `HELM_BENCH_SYNC_MS=N` the buffered store's
//! sync interval (default 10 ms, the server's default).

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
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use helm_kernel::keyfile::{key_string, KeyFile};
use serde_json::{json, Value};
use verify_core::{body, sha256, Kind, RecordBuilder, Signer, TrustAction};

const TOKEN: &str = "bench-token-agent";

const BUNDLE: &str = r#"
name = "mcp-bench"
other_tools = "deny"

[[rule]]
id = "echo"
tools = ["b/echo"]
verdict = "allow"
require = ["args.message matches 'hello*'"]
"#;

// ------------------------------------------------------------------ the upstream

fn answer(req: &Value) -> Option<Value> {
    let id = req.get("id")?.clone();
    let result = match req["method"].as_str()? {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "bench-echo", "version": "1"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "description": "Echo.",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": req["params"]["arguments"]["message"]}],
                               "isError": false}),
        _ => json!({}),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn upstream_stdio() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(a) = answer(&req) {
            writeln!(out, "{a}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only); `None` at end of connection.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn upstream_http(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            conn.set_nodelay(true).unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            while let Some(body) = read_request(&mut r) {
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let resp = match answer(&req) {
                    Some(a) => {
                        let b = a.to_string();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                            b.len()
                        )
                    }
                    None => "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_owned(),
                };
                if w.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

// ------------------------------------------------------------------ setup

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

fn setup(d: &Path, durability: &str, upstream_url: &str) {
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
        (signer("kernel-1").public_key(), "kernel"),
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
sync_interval_ms = {sync_ms}
[policy]
bundles = ["bundle.signed"]
[checkpoint]
every_records = 100000
interval_ms = 0
[[token]]
principal = "bench-agent"
token_sha256 = "{}"
[mcp]
stdio_principal = "bench-agent"
[[mcp.server]]
name = "b"
url = "{upstream_url}"
{presign}"#,
            hex::encode(sha256(TOKEN.as_bytes())),
            // HELM_BENCH_PRESIGN=N: the signer's pool of presigned nonces (0: off;
            // default: the server's default).
            // HELM_BENCH_SYNC_MS: the buffered store's sync interval (default 10, the
            // server's default).
            sync_ms = std::env::var("HELM_BENCH_SYNC_MS").unwrap_or_else(|_| "10".into()),
            presign = std::env::var("HELM_BENCH_PRESIGN")
                .map(|n| format!("[signer]\npresign = {n}\n"))
                .unwrap_or_default(),
        ),
    )
    .unwrap();
}

fn pinned(core: &str, program: &Path) -> Command {
    let wrap = std::env::var("HELM_MCP_BENCH_WRAP").ok().filter(|_| core == "0");
    let mut argv: Vec<String> = wrap
        .iter()
        .flat_map(|w| w.split_whitespace().map(str::to_owned))
        .collect();
    argv.push(program.to_str().unwrap().to_owned());
    if Command::new("taskset").arg("-V").output().is_ok() {
        argv.splice(0..0, ["taskset".to_owned(), "-c".to_owned(), core.to_owned()]);
    }
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

fn proxy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HELM_MCP_BENCH_PROXY") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap().parent().unwrap();
    let p = dir.join("helm-proxy");
    assert!(
        p.is_file(),
        "build helm-proxy first: cargo build --release -p helm-proxy ({})",
        p.display()
    );
    p
}

// ------------------------------------------------------------------ clients

struct Stdio2 {
    child: Child,
    w: Option<ChildStdin>,
    r: BufReader<ChildStdout>,
}

impl Stdio2 {
    fn call(&mut self, v: &Value) -> Value {
        let w = self.w.as_mut().unwrap();
        writeln!(w, "{v}").unwrap();
        w.flush().unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn notify(&mut self, v: &Value) {
        let w = self.w.as_mut().unwrap();
        writeln!(w, "{v}").unwrap();
        w.flush().unwrap();
    }
}

impl Drop for Stdio2 {
    /// Closes the child's stdin and lets it exit by itself (a profiler around
    /// `helm-proxy` writes its output then); killed after 60 s.
    fn drop(&mut self) {
        drop(self.w.take());
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

struct Http {
    w: TcpStream,
    r: BufReader<TcpStream>,
    host: String,
    path: String,
    session: Option<String>,
    token: bool,
}

impl Http {
    fn new(url: &str, token: bool) -> Http {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let s = TcpStream::connect(host).unwrap();
        s.set_nodelay(true).unwrap();
        Http {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
            host: host.to_owned(),
            path: path.to_owned(),
            session: None,
            token,
        }
    }

    fn post(&mut self, v: &Value) -> Option<Value> {
        let b = v.to_string();
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\n\
             MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n",
            self.path,
            self.host,
            b.len()
        );
        if self.token {
            req.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
        }
        if let Some(s) = &self.session {
            req.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&b);
        self.w.write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        self.r.read_line(&mut status).unwrap();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, val) = l.split_once(':').unwrap();
            if k.eq_ignore_ascii_case("content-length") {
                len = val.trim().parse().unwrap();
            }
            if k.eq_ignore_ascii_case("mcp-session-id") {
                self.session = Some(val.trim().to_owned());
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        assert!(
            status.contains(" 200 ") || status.contains(" 202 "),
            "{status} {}",
            String::from_utf8_lossy(&body)
        );
        (len > 0).then(|| serde_json::from_slice(&body).unwrap())
    }
}

fn init_msgs() -> [Value; 3] {
    [
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    ]
}

fn call(i: u64) -> Value {
    json!({"jsonrpc":"2.0","id": i + 10,"method":"tools/call","params":{"name":"echo","arguments":{"message":format!("hello {i}")}}})
}

fn ping(i: u64) -> Value {
    json!({"jsonrpc":"2.0","id": i + 1_000_000,"method":"ping"})
}

fn check(v: &Value, i: u64) {
    assert_eq!(v["result"]["content"][0]["text"], format!("hello {i}"), "{v}");
}

/// CPU time of every thread of process `pid` so far, in ns (Linux; 0 elsewhere).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// User and system CPU time of process `pid` so far, in clock ticks (`/proc/PID/stat`).
fn user_sys(pid: u32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0, 0);
    };
    // Fields after the command (which may hold spaces): state is field 3, utime 14.
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f[11], f[12])
}

/// CPU per measured call: total, and the system (kernel-mode) share, in µs.
#[derive(Clone, Copy, Default)]
struct Cpu {
    total: f64,
    system: f64,
}

/// Sorted latencies (µs) of `n` calls after `n / 10` warm-up calls, and the CPU time
/// process `pid` spent per measured call.
fn measure(n: u64, pid: Option<u32>, mut one: impl FnMut(u64)) -> (Vec<f64>, Cpu) {
    for i in 0..n / 10 {
        one(i);
    }
    let mut t = Vec::with_capacity(n as usize);
    let c0 = pid.map_or(0, cpu_ns);
    let t0 = pid.map_or((0, 0), user_sys);
    for i in 0..n {
        let t0 = Instant::now();
        one(i);
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    // The EFFECT of the last call is recorded after its answer went out.
    std::thread::sleep(Duration::from_millis(20));
    let total = pid.map_or(0, cpu_ns).saturating_sub(c0) as f64 / n as f64 / 1e3;
    let t1 = pid.map_or((0, 0), user_sys);
    let (user, sys) = (t1.0.saturating_sub(t0.0) as f64, t1.1.saturating_sub(t0.1) as f64);
    let system = if user + sys > 0.0 {
        total * sys / (user + sys)
    } else {
        0.0
    };
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t, Cpu { total, system })
}

fn pct(t: &[f64], p: f64) -> f64 {
    t[((t.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, direct: &[f64], proxied: &[f64], cpu: Cpu) {
    let (d50, d99, p50, p99) = (
        pct(direct, 0.5),
        pct(direct, 0.99),
        pct(proxied, 0.5),
        pct(proxied, 0.99),
    );
    println!(
        "{name:<28} direct p50 {d50:>7.1} µs p99 {d99:>7.1} µs | via helm-proxy p50 {p50:>7.1} µs p99 {p99:>7.1} µs | added p50 {:>7.1} µs p99 {:>7.1} µs | proxy CPU {:>6.1} µs/call ({:.0} system)",
        p50 - d50,
        p99 - d99,
        cpu.total,
        cpu.system
    );
}

fn stdio_case(me: &Path, n: u64, durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), durability, "http://127.0.0.1:1/unused");
    let spawn = |proxied: bool| {
        let mut c = if proxied {
            let mut c = pinned("0", &proxy_bin());
            c.args(["mcp", "--stdio", "--config"])
                .arg(dir.path().join("helm-proxy.toml"))
                .args(["--server", "b", "--", "taskset", "-c", "1"])
                .arg(me);
            c
        } else {
            pinned("1", me)
        };
        let mut child = c
            .env("HELM_MCP_BENCH_ROLE", "stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        let mut s = Stdio2 { child, w: Some(w), r };
        let [init, inited, list] = init_msgs();
        s.call(&init);
        s.notify(&inited);
        s.call(&list);
        s
    };
    let mut direct = spawn(false);
    let (d, _) = measure(n, None, |i| check(&direct.call(&call(i)), i));
    let (dp, _) = measure(n, None, |i| assert!(direct.call(&ping(i)).get("result").is_some()));
    drop(direct);
    let mut proxied = spawn(true);
    let pid = Some(proxied.child.id());
    let (p, pc) = measure(n, pid, |i| check(&proxied.call(&call(i)), i));
    let (pp, ppc) = measure(n, pid, |i| assert!(proxied.call(&ping(i)).get("result").is_some()));
    drop(proxied);
    report(&format!("stdio, {durability}"), &d, &p, pc);
    report("  (ping: relay only)", &dp, &pp, ppc);
}

fn http_case(me: &Path, n: u64, durability: &str) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut up = pinned("1", me)
        .env("HELM_MCP_BENCH_ROLE", "http")
        .env("HELM_MCP_BENCH_PORT", port.to_string())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), durability, &url);
    let mut server = pinned("0", &proxy_bin())
        .args(["serve", "--config"])
        .arg(dir.path().join("helm-proxy.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().strip_prefix("helm-proxy listening on ").unwrap().to_owned();
    let run = |url: &str, token: bool, pid: Option<u32>| {
        let mut h = Http::new(url, token);
        let [init, inited, list] = init_msgs();
        h.post(&init);
        h.post(&inited);
        h.post(&list);
        let calls = measure(n, pid, |i| check(&h.post(&call(i)).unwrap(), i));
        let pings = measure(n, pid, |i| assert!(h.post(&ping(i)).unwrap().get("result").is_some()));
        (calls, pings)
    };
    let ((d, _), (dp, _)) = run(&url, false, None);
    let ((p, pc), (pp, ppc)) = run(&format!("{base}/mcp/b"), true, Some(server.id()));
    report(&format!("streamable HTTP, {durability}"), &d, &p, pc);
    report("  (ping: relay only)", &dp, &pp, ppc);
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    if std::env::var_os("HELM_MCP_BENCH_WRAP").is_some() {
        // helm-proxy is the wrapper's child (strace does not pass SIGTERM on).
        let _ = Command::new("pkill")
            .args(["-TERM", "-P", &server.id().to_string()])
            .status();
    }
    let _ = server.wait();
    let _ = up.kill();
    let _ = up.wait();
}

fn main() {
    match std::env::var("HELM_MCP_BENCH_ROLE").as_deref() {
        Ok("stdio") => return upstream_stdio(),
        Ok("http") => return upstream_http(std::env::var("HELM_MCP_BENCH_PORT").unwrap().parse().unwrap()),
        _ => {}
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let n = match std::env::var("HELM_MCP_BENCH_CALLS") {
        Ok(v) => v.parse().expect("HELM_MCP_BENCH_CALLS: a number"),
        Err(_) if quick => 500,
        Err(_) => 5000,
    };
    let only = std::env::var("HELM_MCP_BENCH_ONLY").ok();
    let modes = match std::env::var("HELM_BENCH_MODE").as_deref() {
        Ok("buffered") => vec!["buffered"],
        Ok("durable") => vec!["durable"],
        _ => vec!["buffered", "durable"],
    };
    let me = std::env::current_exe().unwrap();
    println!("MCP interceptor overhead per tools/call ({n} sequential calls per case; helm-proxy on core 0, client and upstream on core 1)");
    for durability in modes {
        if only.as_deref() != Some("http") {
            stdio_case(&me, n, durability);
        }
        if only.as_deref() != Some("stdio") {
            http_case(&me, n, durability);
        }
    }
}
