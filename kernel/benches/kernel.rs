//! Kernel decision latency and durable throughput.
//!
//! - In process: `Kernel::evaluate` (Guardian with a 100-rule bundle, INTENT and
//!   DECISION signed, appended; durable mode also waits for the fsync) p50/p99/p999
//!   for ALLOW and DENY, buffered and durable, one caller.
//! - Durable throughput with group commit at 1, 16 and 64 concurrent callers.
//! - Baseline side by side: two bare Ed25519 signatures (what a decision must at least
//!   cost), so the ratio shows the kernel's own overhead.
//!
//! `cargo bench -p helm-kernel --bench kernel` (harness = false). The store lives in
//! `HELM_BENCH_DIR` (default: a temporary directory under the target dir's disk).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    reason = "benchmark"
)]

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use helm_kernel::clock::SystemClock;
use helm_kernel::signer::{KeyFileSigner, RecordSigner as _};
use helm_kernel::store::Durability;
use helm_kernel::{Args, Kernel, KernelConfig, Proposal, Status};
use serde_json::json;
use verify_core::{body, sha256, Kind, RecordBuilder, Signer, TrustAction};

fn seed(name: &str) -> [u8; 32] {
    sha256(format!("HELM KERNEL BENCH KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes())
}

fn chain() -> Vec<u8> {
    let root = Signer::from_seed(&seed("root"));
    let kernel = Signer::from_seed(&seed("kernel"));
    let mut b = RecordBuilder::new(
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &kernel.public_key(),
            Some(&["kernel"]),
            None,
            None,
        ),
    );
    b.lamport = 1;
    b.sign(&root)
}

fn bundle() -> guardian::Bundle {
    let mut s = String::from("name = \"bench\"\nprincipals = [\"agent-*\"]\nother_tools = \"deny\"\n");
    for i in 0..100 {
        s.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\ntools = [\"srv/tool_{i}\"]\nverdict = \"allow\"\nrequire = [\"args.path matches '/workspace/*' and not (args.path contains '..')\", \"args.size <= 1000\"]\n"
        ));
    }
    guardian::Bundle::from_toml(&s).unwrap()
}

fn open(durability: Durability) -> (Kernel, tempfile::TempDir, Arc<KeyFileSigner>) {
    let base = std::env::var_os("HELM_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let root = Signer::from_seed(&seed("root")).public_key();
    let mut c = KernelConfig::new(dir.path().to_path_buf(), vec![root], chain(), vec![bundle()]);
    c.store.durability = durability;
    c.checkpoint_every = 10_000;
    let s = Arc::new(presigning(KeyFileSigner::from_seed(&seed("kernel"), "bench key")));
    let (k, _) = Kernel::open(c, s.clone(), Arc::new(SystemClock)).unwrap();
    (k, dir, s)
}

/// The pool size for presigned nonces, as `helm-proxy serve` uses by default;
/// `HELM_BENCH_PRESIGN=0` measures without presigning. Waits until the pool is full.
fn presigning(s: KeyFileSigner) -> KeyFileSigner {
    let n: usize = std::env::var("HELM_BENCH_PRESIGN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PRESIGN_POOL);
    if n == 0 {
        return s;
    }
    let s = s.with_presigning(n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.presign_stats().is_some_and(|(ready, _, _)| ready < n) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    s
}

/// `helm-proxy`'s default `[signer] presign`.
const PRESIGN_POOL: usize = 16_384;

fn proposal(i: u64, allow: bool) -> Proposal {
    let path = if allow { "/workspace/file.txt" } else { "/etc/passwd" };
    Proposal {
        tool: format!("srv/tool_{}", i % 100),
        args: Args::Json(json!({"path": path, "size": 10, "n": i})),
        principal: "agent-1".into(),
        session: format!("s{}", i % sessions()),
        call_id: None,
    }
}

/// Sessions the proposals are spread over (`HELM_BENCH_SESSIONS`, default 8): each
/// session is a hash chain, so decisions of one session in flight wait for each other.
fn sessions() -> u64 {
    static N: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("HELM_BENCH_SESSIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(8)
    })
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn latency(name: &str, durability: Durability, n: u64) {
    let (k, _dir, signer) = open(durability);
    for allow in [true, false] {
        let before = signer.presign_stats();
        let mut t = Vec::with_capacity(n as usize);
        for i in 0..n {
            let p = proposal(i, allow);
            let start = Instant::now();
            let a = k.evaluate(&p);
            t.push(start.elapsed().as_nanos() as u64);
            assert_eq!(a.status == Status::Allow, allow, "{a:?}");
        }
        t.sort_unstable();
        // How many signatures came from the presigned pool (the rest were made the
        // ordinary way because it was empty).
        let pooled = match (before, signer.presign_stats()) {
            (Some((_, u0, m0)), Some((_, u1, m1))) => format!("  presigned {}/{}", u1 - u0, u1 - u0 + m1 - m0),
            _ => String::new(),
        };
        println!(
            "{name:<9} {:<5} n={n:<6} p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8.1} us{pooled}",
            if allow { "allow" } else { "deny" },
            pct(&t, 0.5),
            pct(&t, 0.99),
            pct(&t, 0.999)
        );
    }
}

/// Durable throughput with `callers` threads for `secs` seconds: decisions/s, and per
/// decision the process's CPU time (all threads, from `/proc/self/stat`) and the
/// callers' context switches (from `/proc/thread-self/status`). On a shared machine
/// the last two move far less than the rate.
fn throughput(callers: u64, secs: u64) -> (f64, f64, f64) {
    let (k, _dir, _) = open(Durability::Durable);
    let k = Arc::new(k);
    let done = Arc::new(AtomicU64::new(0));
    let switches = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_ticks();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let (k, done, switches) = (k.clone(), done.clone(), switches.clone());
            std::thread::spawn(move || {
                let before = context_switches();
                let mut i = c * 1_000_000;
                while Instant::now() < deadline {
                    let a = k.evaluate(&proposal(i, true));
                    assert_eq!(a.status, Status::Allow, "{a:?}");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                switches.fetch_add(context_switches() - before, Ordering::Relaxed);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = done.load(Ordering::Relaxed) as f64;
    // Clock ticks are 10 ms (USER_HZ = 100 on Linux).
    let cpu_us = (cpu_ticks() - cpu0) as f64 * 10_000.0;
    (n / secs as f64, cpu_us / n, switches.load(Ordering::Relaxed) as f64 / n)
}

/// User + system CPU time of this process so far, in clock ticks (0 if unknown).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime
    // the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// This thread's voluntary and involuntary context switches so far (0 if unknown).
fn context_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn print_throughput(callers: u64, secs: u64) {
    let (rate, cpu, switches) = throughput(callers, secs);
    println!(
        "durable throughput, {callers:>2} callers: {rate:>8.0} decisions/s  (CPU {cpu:.1} us/decision, {switches:.2} context switches/decision)"
    );
}

/// Two bare signatures of 300 bytes, in µs: with ed25519-dalek, and with the kernel's
/// signer (its engine: AWS-LC by default).
fn baseline(n: u64) -> (f64, f64) {
    let s = Signer::from_seed(&seed("kernel"));
    let k = KeyFileSigner::from_seed(&seed("kernel"), "bench key");
    let msg = [7u8; 300];
    let start = Instant::now();
    for _ in 0..n {
        core::hint::black_box(s.sign(core::hint::black_box(&msg)));
        core::hint::black_box(s.sign(core::hint::black_box(&msg)));
    }
    let dalek = start.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
    let start = Instant::now();
    for _ in 0..n {
        core::hint::black_box(k.sign(core::hint::black_box(&msg)).unwrap());
        core::hint::black_box(k.sign(core::hint::black_box(&msg)).unwrap());
    }
    (dalek, start.elapsed().as_nanos() as f64 / n as f64 / 1000.0)
}

/// The machine's noise floor: p50/p99/p999 of a fixed piece of work about as long as a
/// decision (three signatures with the kernel's signer and 300 bytes of SHA-256), timed
/// one at a time like a decision. A tail here is the environment's (timer ticks,
/// hypervisor exits, the other core), not the kernel's.
fn noise_floor(n: u64) -> (f64, f64, f64) {
    let k = KeyFileSigner::from_seed(&seed("kernel"), "bench key");
    let msg = [7u8; 300];
    let mut t = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = Instant::now();
        for _ in 0..3 {
            core::hint::black_box(k.sign(core::hint::black_box(&msg)).unwrap());
        }
        core::hint::black_box(sha256(core::hint::black_box(&msg)));
        t.push(start.elapsed().as_nanos() as u64);
    }
    t.sort_unstable();
    (pct(&t, 0.5), pct(&t, 0.99), pct(&t, 0.999))
}

fn main() {
    if std::env::args().any(|a| a == "--profile") {
        // For `valgrind --tool=callgrind` or `perf record`: buffered decisions only,
        // 500 ALLOWs and 500 DENYs (HELM_BENCH_N each).
        let n = std::env::var("HELM_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        if std::env::var_os("HELM_BENCH_FLOOR").is_some() {
            let (f50, f99, f999) = noise_floor(n);
            println!("noise floor: p50 {f50:.1} us  p99 {f99:.1} us  p999 {f999:.1} us");
        }
        // HELM_BENCH_SYNC_MS: the buffered flusher's interval (default 50 ms), to see
        // how much of the tail its fsyncs cause.
        let sync_ms = std::env::var("HELM_BENCH_SYNC_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        latency(
            "buffered",
            Durability::Buffered {
                sync_interval: Duration::from_millis(sync_ms),
            },
            n,
        );
        return;
    }
    if std::env::args().any(|a| a == "--throughput") {
        // HELM_BENCH_CALLERS=64: one caller count only (for profiling).
        let only: Option<u64> = std::env::var("HELM_BENCH_CALLERS").ok().and_then(|v| v.parse().ok());
        for callers in [1, 16, 64] {
            if only.is_some_and(|o| o != callers) {
                continue;
            }
            print_throughput(callers, 3);
        }
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 20_000 };
    let (f50, f99, f999) = noise_floor(n);
    println!(
        "noise floor: a fixed piece of work (3 signatures), timed {n} times: p50 {f50:.1} us  p99 {f99:.1} us  p999 {f999:.1} us (p99 - p50 = {:.1} us)",
        f99 - f50
    );
    let (dalek, engine) = baseline(n);
    println!(
        "baseline: two Ed25519 signatures of 300 bytes: {dalek:.1} us (ed25519-dalek), {engine:.1} us ({}): ratio {:.2}",
        KeyFileSigner::from_seed(&seed("kernel"), "bench key").engine(),
        engine / dalek
    );
    latency(
        "buffered",
        Durability::Buffered {
            sync_interval: Duration::from_millis(50),
        },
        n,
    );
    latency("durable", Durability::Durable, n / 10);
    let secs = if quick { 1 } else { 3 };
    for callers in [1, 16, 64] {
        print_throughput(callers, secs);
    }
}
