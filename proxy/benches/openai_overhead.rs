//! Latency the OpenAI-compatible proxy adds: the same requests sent to a local upstream
//! directly and through `helm-proxy`, (a) a reply without tool calls, (b) a reply with
//! one tool call (decided, recorded), (c) a streamed reply with a tool call (fragments
//! held, decided, released), at 1 and 32 concurrent keep-alive clients, for a durable
//! and a buffered store. Median of three rounds; p50/p99 of each round's latencies.
//!
//! Pinning: `helm-proxy` on core 0 (`taskset -c 0`), this process (the canned upstream,
//! a minimal HTTP/1.1 server with one thread per connection, and the load generator)
//! on core 1. Then a throughput run on 2 cores: nothing pinned, 32 clients.
//! PUBLIC TEST KEYS only.
//!
//! ```sh
//! cargo bench -p helm-proxy --bench openai_overhead            # full
//! cargo bench -p helm-proxy --bench openai_overhead -- --quick # fewer requests
//! cargo bench -p helm-proxy --bench openai_overhead -- --only b --buffered
//! ```
//!
//! Instruction counts (steadier still): `-- --profile N [--only a|b|c] [--buffered]` runs
//! `helm-proxy` under `valgrind --tool=callgrind`, sends 50 warm-up requests, zeroes the
//! counters, sends N requests per selected scenario on one connection and dumps
//! `callgrind.out.*` in `$TMPDIR/helm-openai-profile/` (`callgrind_annotate` reads them); it prints
//! the instructions per request of every thread together. `HELM_BENCH_PROFILE_WRAP`
//! replaces the callgrind command (e.g. `"strace -f -c -o /tmp/strace.txt"`).
//!
//! `HELM_BENCH_BIN=path/to/helm-proxy` benchmarks another build (to compare two builds
//! under the same load).
//!
//! "prx CPU" is the CPU time of every `helm-proxy` thread per request (from
//! `/proc/PID/task/*/schedstat`): steadier than wall-clock percentiles on a busy machine
//! (hardware instruction counters are not available on these virtual machines).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::std_instead_of_core,
    clippy::cast_precision_loss,
    missing_debug_implementations,
    dead_code,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{signer, Server, Setup, AGENT_TOKEN};

const BUNDLE: &str = r#"
name = "openai-bench"
other_tools = "deny"

[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Plain,
    Tool,
    StreamTool,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Plain => "(a) no tool call",
            Scenario::Tool => "(b) one tool call",
            Scenario::StreamTool => "(c) streamed, one tool call",
        }
    }

    fn body(self) -> Vec<u8> {
        let (model, stream) = match self {
            Scenario::Plain => ("bench-plain", false),
            Scenario::Tool => ("bench-read", false),
            Scenario::StreamTool => ("bench-stream-read", true),
        };
        format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Read /workspace/a.txt and summarise it."}}],"tools":[{{"type":"function","function":{{"name":"read_file","description":"Read a file","parameters":{{"type":"object","properties":{{"path":{{"type":"string"}}}},"required":["path"]}}}}}}]}}"#
        )
        .into_bytes()
    }
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The canned upstream's answer to a request body.
fn canned(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let id = CALLS.fetch_add(1, Ordering::Relaxed);
    let head = r#""id":"chatcmpl-bench","created":1800000000,"model":"m","system_fingerprint":"fp""#;
    if text.contains("bench-stream-read") {
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{{head},\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish},\"logprobs\":null}}]}}\n\n"
            )
        };
        let mut sse = chunk(r#"{"role":"assistant","content":""}"#, "null");
        sse += &chunk(r#"{"content":"Let me read it."}"#, "null");
        sse += &chunk(
            &format!(
                r#"{{"tool_calls":[{{"index":0,"id":"call_{id}","type":"function","function":{{"name":"read_file","arguments":""}}}}]}}"#
            ),
            "null",
        );
        for piece in [r#"{\"pa"#, r#"th\": \"/work"#, r#"space/a"#, r#".txt\"}"#] {
            sse += &chunk(
                &format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":"{piece}"}}}}]}}"#),
                "null",
            );
        }
        sse += &chunk("{}", "\"tool_calls\"");
        sse += "data: [DONE]\n\n";
        return format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{sse}\r\n0\r\n\r\n",
            sse.len()
        )
        .into_bytes();
    }
    let message = if text.contains("bench-read") {
        format!(
            r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_{id}","type":"function","function":{{"name":"read_file","arguments":"{{\"path\": \"/workspace/a.txt\"}}"}}}}]}},"finish_reason":"tool_calls""#
        )
    } else {
        r#"{"role":"assistant","content":"The file holds the quarterly figures; revenue rose 4% and costs fell 2%."},"finish_reason":"stop""#.to_owned()
    };
    let body = format!(
        r#"{{{head},"object":"chat.completion","choices":[{{"index":0,"message":{message},"logprobs":null}}],"usage":{{"prompt_tokens":20,"completion_tokens":12,"total_tokens":32}}}}"#
    );
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1.1 message (head and body: content-length or chunked); `None` at EOF.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(v) = lower.split("content-length:").nth(1) {
        let n: usize = v.split("\r\n").next()?.trim().parse().ok()?;
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((head, body))
}

/// The canned upstream on 127.0.0.1 (a thread per connection); returns its address.
fn start_upstream() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                while let Some((_, body)) = read_message(&mut r) {
                    if w.write_all(&canned(&body)).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One keep-alive client: `n` requests; returns each one's latency (full answer read).
fn client(addr: &str, token: &str, body: &[u8], n: usize) -> Vec<Duration> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let req = [
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes(),
        body.to_vec(),
    ]
    .concat();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        w.write_all(&req).unwrap();
        let (head, answer) = read_message(&mut r).expect("an answer");
        out.push(t0.elapsed());
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // Every tool call must have been allowed (and the stream complete).
        if answer.windows(9).any(|w| w == b"read_file") {
            assert!(!answer.windows(6).any(|w| w == b"[HELM]"), "a call was not allowed");
        }
    }
    out
}

struct Round {
    p50: f64,
    p99: f64,
    rps: f64,
    /// CPU time of the proxy per request (µs), when measured.
    cpu: f64,
}

/// CPU time used so far by every thread of process `pid` (ns), from /proc schedstat.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn round(addr: &str, token: &str, s: Scenario, conc: usize, per_client: usize, pid: Option<u32>) -> Round {
    let body = Arc::new(s.body());
    let cpu0 = pid.map(cpu_ns);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..conc)
        .map(|_| {
            let (addr, token, body) = (addr.to_owned(), token.to_owned(), body.clone());
            std::thread::spawn(move || client(&addr, &token, &body, per_client))
        })
        .collect();
    let mut all: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let wall = t0.elapsed();
    let cpu = match (pid, cpu0) {
        (Some(p), Some(c0)) => cpu_ns(p).saturating_sub(c0) as f64 / 1e3 / all.len() as f64,
        _ => 0.0,
    };
    all.sort();
    Round {
        p50: pct(&all, 0.50),
        p99: pct(&all, 0.99),
        rps: all.len() as f64 / wall.as_secs_f64(),
        cpu,
    }
}

/// Median of three rounds (by p50; p99 and throughput medians taken separately).
fn median3(mut f: impl FnMut() -> Round) -> Round {
    let r: Vec<Round> = (0..3).map(|_| f()).collect();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[1]
    };
    Round {
        p50: med(&mut r.iter().map(|x| x.p50).collect()),
        p99: med(&mut r.iter().map(|x| x.p99).collect()),
        rps: med(&mut r.iter().map(|x| x.rps).collect()),
        cpu: med(&mut r.iter().map(|x| x.cpu).collect()),
    }
}

fn proxy_setup(upstream: &str, durability: &str) -> Setup {
    // HELM_BENCH_SYNC_MS: the buffered store's sync interval (the config's default: 10).
    let sync = std::env::var("HELM_BENCH_SYNC_MS").unwrap_or_else(|_| "10".into());
    let s = Setup::with_config(&format!("durability = \"{durability}\"\nsync_interval_ms = {sync}"));
    let bundle = guardian::Bundle::from_toml(BUNDLE).unwrap();
    std::fs::write(
        s.path().join("bundle.signed"),
        guardian::sign_bundle(&bundle, &signer("author-1")),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(s.config()).unwrap();
    // Checkpoints as in production (every 1000 records), not the tests' 100.
    config = config.replace("every_records = 100", "every_records = 1000");
    config.push_str(&format!("\n[openai]\nupstream = \"http://{upstream}/v1\"\n"));
    std::fs::write(s.config(), config).unwrap();
    s
}

/// The `helm-proxy` binary: `HELM_BENCH_BIN` (to compare two builds), else this build's.
fn proxy_bin() -> String {
    std::env::var("HELM_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_helm-proxy").to_owned())
}

/// Starts helm-proxy, pinned to `cpus` with taskset when it is there.
fn start_proxy(setup: &Setup, cpus: Option<&str>) -> Server {
    let bin = proxy_bin();
    let log = setup.path().join("server.log");
    match cpus {
        Some(c) if taskset_ok() => {
            let wrapper = setup.path().join("pinned.sh");
            std::fs::write(&wrapper, format!("#!/bin/sh\nexec taskset -c {c} {bin} \"$@\"\n")).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            start_with(&wrapper, setup, &log)
        }
        _ => start_with(std::path::Path::new(&bin), setup, &log),
    }
}

/// `program serve --config ...` as a [`Server`] (as `Server::start` does for the binary).
fn start_with(program: &std::path::Path, setup: &Setup, log: &std::path::Path) -> Server {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = Command::new(program)
        .args(["serve", "--config"])
        .arg(setup.config())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("helm-proxy listening on ")
        .unwrap_or_else(|| {
            panic!(
                "helm-proxy did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_owned();
    Server {
        child,
        base,
        log: log.to_path_buf(),
    }
}

fn taskset_ok() -> bool {
    Command::new("taskset")
        .arg("-p")
        .arg("1")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pin_self(cpus: &str) {
    if taskset_ok() {
        let _ = Command::new("taskset")
            .args(["-a", "-c", "-p", cpus, &std::process::id().to_string()])
            .output();
    }
}

/// `--profile N`: the proxy under callgrind, instructions per request.
fn profile(upstream: &str, scenarios: &[Scenario], stores: &[&str], n: usize) {
    for &durability in stores {
        for &s in scenarios {
            let setup = proxy_setup(upstream, durability);
            let tag = format!("{durability}-{}", &s.name()[1..2]);
            let dir = std::env::temp_dir().join("helm-openai-profile");
            std::fs::create_dir_all(&dir).unwrap();
            let out = dir.join(format!("callgrind.out.{tag}"));
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("callgrind.out.{tag}"))
                {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
            let wrapper = setup.path().join("callgrind.sh");
            // HELM_BENCH_PROFILE_WRAP="strace -f -c -o FILE" (say) instead of callgrind.
            let wrap = std::env::var("HELM_BENCH_PROFILE_WRAP").ok();
            let tool = wrap
                .clone()
                .unwrap_or_else(|| format!("valgrind --tool=callgrind --callgrind-out-file={}", out.display()));
            std::fs::write(&wrapper, format!("#!/bin/sh\nexec {tool} {} \"$@\"\n", proxy_bin())).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let log = setup.path().join("server.log");
            let server = start_with(&wrapper, &setup, &log);
            let addr = server.base.trim_start_matches("http://").to_owned();
            let pid = server.pid().to_string();
            round(&addr, AGENT_TOKEN, s, 1, 50, None);
            let ctl = |arg: &str| {
                if wrap.is_some() {
                    return;
                }
                let o = Command::new("callgrind_control").args([arg, &pid]).output().unwrap();
                assert!(o.status.success(), "callgrind_control {arg}: {o:?}");
            };
            ctl("-z");
            round(&addr, AGENT_TOKEN, s, 1, n, None);
            ctl("-d");
            if wrap.is_some() {
                // The wrapper's child is helm-proxy: stop it, then the wrapper ends.
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
                for c in children.split_whitespace() {
                    let _ = Command::new("kill").args(["-TERM", c]).status();
                }
                let mut server = server;
                server.child.wait().unwrap();
            } else {
                assert!(server.terminate().success());
            }
            // The dump after zeroing: the file with the highest part number.
            let mut total = 0u64;
            let prefix = format!("callgrind.out.{tag}");
            let mut parts: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.starts_with(&prefix) && f.contains(".1"))
                .collect();
            parts.sort();
            for f in &parts {
                // One file per thread: `prefix.1-NN` (the first dump).
                let text = std::fs::read_to_string(dir.join(f)).unwrap();
                if let Some(l) = text
                    .lines()
                    .find(|l| l.starts_with("summary:") || l.starts_with("totals:"))
                {
                    total += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|x| x.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            println!(
                "{durability:<9} {:<28} {:>10.0} instructions per request ({} dump file(s): {prefix}.1*)",
                s.name(),
                total as f64 / n as f64,
                parts.len()
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let n1 = if quick { 300 } else { 2000 };
    let n32 = if quick { 20 } else { 150 };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("openai_overhead: load average {}", load.trim());
    println!(
        "helm-proxy on core 0, upstream and load generator on core 1 (taskset: {})",
        taskset_ok()
    );
    pin_self("1");
    let upstream = start_upstream();
    let scenarios: Vec<Scenario> = [Scenario::Plain, Scenario::Tool, Scenario::StreamTool]
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| s.name().starts_with(&format!("({o})"))))
        .collect();
    let stores: Vec<&str> = ["buffered", "durable"]
        .into_iter()
        .filter(|d| !args.iter().any(|a| a == "--buffered") || *d == "buffered")
        .collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
    {
        profile(&upstream, &scenarios, &stores, n);
        return;
    }
    let mut direct = Vec::new();
    for &s in &scenarios {
        for (conc, per) in [(1, n1), (32, n32)] {
            let r = median3(|| round(&upstream, "sk-direct", s, conc, per, None));
            direct.push((s, conc, r));
        }
    }
    println!(
        "\n{:<9} {:<28} {:>4} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9} | {:>8} {:>9}",
        "store",
        "reply",
        "conc",
        "dir p50",
        "dir p99",
        "prx p50",
        "prx p99",
        "add p50",
        "add p99",
        "prx r/s",
        "prx CPU"
    );
    for &durability in &stores {
        let setup = proxy_setup(&upstream, durability);
        let server = start_proxy(&setup, Some("0"));
        let addr = server.base.trim_start_matches("http://").to_owned();
        eprintln!("helm-proxy ({durability}) pid {}", server.pid());
        for &s in &scenarios {
            for (conc, per) in [(1, n1), (32, n32)] {
                // Warm up (connections, pools, allocator).
                round(&addr, AGENT_TOKEN, s, conc.min(4), 20, None);
                let pid = Some(server.pid());
                let r = median3(|| round(&addr, AGENT_TOKEN, s, conc, per, pid));
                let d = &direct.iter().find(|(ds, dc, _)| *ds == s && *dc == conc).unwrap().2;
                println!(
                    "{durability:<9} {:<28} {conc:>4} | {:>7.0}µs {:>7.0}µs | {:>7.0}µs {:>7.0}µs | {:>7.0}µs {:>7.0}µs | {:>8.0} {:>7.0}µs",
                    s.name(),
                    d.p50,
                    d.p99,
                    r.p50,
                    r.p99,
                    r.p50 - d.p50,
                    r.p99 - d.p99,
                    r.rps,
                    r.cpu
                );
            }
        }
        assert!(server.terminate().success());
    }
    println!("\nthroughput on 2 cores (nothing pinned), 32 clients, requests/s through the proxy:");
    pin_self("0,1");
    for &durability in &stores {
        let setup = proxy_setup(&upstream, durability);
        let server = start_proxy(&setup, None);
        let addr = server.base.trim_start_matches("http://").to_owned();
        for &s in &scenarios {
            round(&addr, AGENT_TOKEN, s, 4, 20, None);
            let r = median3(|| round(&addr, AGENT_TOKEN, s, 32, n32, None));
            println!(
                "{durability:<9} {:<28} {:>8.0} req/s (p50 {:.0}µs, p99 {:.0}µs)",
                s.name(),
                r.rps,
                r.p50,
                r.p99
            );
        }
        assert!(server.terminate().success());
    }
}
