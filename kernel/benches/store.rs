//! Store throughput on the real disk: N threads (default 64) each append a decision (two
//! records of 300 bytes, under a shared "kernel" lock, as the kernel does) and wait for
//! it to be durable, in a loop, for a few seconds; three runs per mode, median reported.
//!
//! ```sh
//! cargo bench -p helm-kernel --bench store
//! HELM_STORE_BENCH_SECS=2 HELM_STORE_BENCH_THREADS=64 HELM_STORE_BENCH_DIR=/tmp cargo bench -p helm-kernel --bench store
//! ```
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does one short smoke run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "benchmark"
)]

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use helm_kernel::store::{Durability, Store, StoreOptions};

struct Run {
    decisions_per_s: f64,
    fsyncs_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn env_or<T: core::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run(durability: &Durability, threads: usize, secs: f64) -> Run {
    let base = std::env::var("HELM_STORE_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let tmp = tempfile::tempdir_in(base).unwrap();
    let opts = StoreOptions {
        durability: durability.clone(),
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(tmp.path(), opts).unwrap();
    let store = Arc::new(store);
    let kernel_lock = Arc::new(Mutex::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, kernel_lock, stop) = (Arc::clone(&store), Arc::clone(&kernel_lock), Arc::clone(&stop));
            std::thread::spawn(move || {
                let intent = vec![t as u8; 300];
                let decision = vec![!(t as u8); 300];
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let ticket = {
                        let _kernel = kernel_lock.lock().unwrap();
                        store.append(&[&intent, &decision]).unwrap()
                    };
                    store.wait_durable(ticket).unwrap();
                    latencies.push(began.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.stats();
    assert_eq!(stats.appended, 2 * latencies.len() as u64);
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    Run {
        decisions_per_s: latencies.len() as f64 / elapsed,
        fsyncs_per_s: stats.fsyncs as f64 / elapsed,
        p50_us: pct(0.50).copied().unwrap_or(0),
        p99_us: pct(0.99).copied().unwrap_or(0),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let threads = env_or("HELM_STORE_BENCH_THREADS", 64usize);
    let (secs, runs) = if bench {
        (env_or("HELM_STORE_BENCH_SECS", 2.0f64), 3)
    } else {
        (0.1, 1)
    };
    let modes = [
        Durability::Durable,
        Durability::Buffered {
            sync_interval: Duration::from_millis(10),
        },
    ];
    for mode in &modes {
        let mut results: Vec<Run> = (0..runs).map(|_| run(mode, threads, secs)).collect();
        for r in &results {
            println!(
                "  {:>9.0} decisions/s  {:>9.0} records/s  {:>7.0} fsyncs/s  latency p50 {} us  p99 {} us",
                r.decisions_per_s,
                2.0 * r.decisions_per_s,
                r.fsyncs_per_s,
                r.p50_us,
                r.p99_us
            );
        }
        results.sort_by(|a, b| a.decisions_per_s.total_cmp(&b.decisions_per_s));
        let m = &results[results.len() / 2];
        println!(
            "store {mode}, {threads} threads, {secs} s x {runs}: median {:.0} decisions/s = {:.0} records/s, {:.0} fsyncs/s ({:.1} decisions per fsync)",
            m.decisions_per_s,
            2.0 * m.decisions_per_s,
            m.fsyncs_per_s,
            if m.fsyncs_per_s > 0.0 { m.decisions_per_s / m.fsyncs_per_s } else { 0.0 }
        );
    }
}
