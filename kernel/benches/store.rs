//! Store throughput on the real disk: N threads (default 64) each append a decision (two
//! records of 300 bytes, under a shared "kernel" lock, as the kernel does) and wait for
//! it to be durable, in a loop, for a few seconds; three runs per mode, median reported.
//!
//! ```sh
//! cargo bench -p helm-kernel --bench store
//! HELM_STORE_BENCH_SECS=2 HELM_STORE_BENCH_THREADS=64 HELM_STORE_BENCH_DIR=/tmp cargo bench -p helm-kernel --bench store
//! ```
//!
//! Each run is made twice side by side: with the store's default reservation (zeros
//! written ahead of the last frame, spec/store.md §3) and without it (`reserve_bytes:
//! 0`, the baseline), and the ratio of the medians is printed, with the process's CPU
//! time per decision (from `/proc/self/stat`). `HELM_STORE_BENCH_THREADS=1` shows the
//! latency of one `fdatasync`.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does one short smoke run.
//!
//! With `--range`: paging (`Store::read_range`, what `GET /v1/records` reads) against a
//! full scan filtered to the page (how it read before): a store of
//! `HELM_STORE_BENCH_RANGE_N` records of 300 bytes (default 200,000) in segments of
//! `HELM_STORE_BENCH_SEGMENT` bytes (default 4 MiB), pages of 100 records.
//!
//! ```sh
//! cargo bench -p helm-kernel --bench store -- --range
//! ```
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

use helm_kernel::store::{Durability, Store, StoreOptions, DEFAULT_RESERVE_BYTES};

struct Run {
    decisions_per_s: f64,
    cpu_us_per_decision: f64,
    fsyncs_per_s: f64,
    p50_us: u64,
    p99_us: u64,
}

fn env_or<T: core::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time of this process so far (user + system), in seconds (clock ticks of 10 ms).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime is the 12th, stime
    // the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn run(durability: &Durability, reserve_bytes: u64, threads: usize, secs: f64) -> Run {
    let base = std::env::var("HELM_STORE_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let tmp = tempfile::tempdir_in(base).unwrap();
    let opts = StoreOptions {
        durability: durability.clone(),
        reserve_bytes,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(tmp.path(), opts).unwrap();
    let store = Arc::new(store);
    let cpu_before = process_cpu_s();
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
    let cpu = process_cpu_s() - cpu_before;
    let stats = store.stats();
    assert_eq!(stats.appended, 2 * latencies.len() as u64);
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    Run {
        decisions_per_s: latencies.len() as f64 / elapsed,
        cpu_us_per_decision: cpu * 1e6 / latencies.len().max(1) as f64,
        fsyncs_per_s: stats.fsyncs as f64 / elapsed,
        p50_us: pct(0.50).copied().unwrap_or(0),
        p99_us: pct(0.99).copied().unwrap_or(0),
    }
}

/// Median time of `f` over `runs` runs, in microseconds.
fn median_us(runs: usize, mut f: impl FnMut() -> u64) -> (f64, u64) {
    let mut times: Vec<f64> = Vec::new();
    let mut got = 0;
    for _ in 0..runs {
        let began = Instant::now();
        got = f();
        times.push(began.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], got)
}

fn range(bench: bool) {
    let n = if bench {
        env_or("HELM_STORE_BENCH_RANGE_N", 200_000u64)
    } else {
        5_000
    };
    let segment_bytes = env_or("HELM_STORE_BENCH_SEGMENT", 4u64 << 20);
    let base = std::env::var("HELM_STORE_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let tmp = tempfile::tempdir_in(base).unwrap();
    let opts = StoreOptions {
        segment_bytes,
        ..StoreOptions::buffered(Duration::from_millis(10))
    };
    let (store, _) = Store::open(tmp.path(), opts).unwrap();
    let record = vec![7u8; 300];
    let batch: Vec<&[u8]> = vec![&record; 100];
    while store.len() < n {
        store.append(&batch).unwrap();
    }
    store.sync().unwrap();
    let n = store.len();
    let segments = store.stats().segments;
    let page = 100u64;
    let runs = if bench { 21 } else { 3 };
    for (name, from) in [("first page", 0), ("middle page", n / 2), ("last page", n - page)] {
        let (ranged, a) = median_us(runs, || {
            store
                .read_range(from, page, |_, r| {
                    assert_eq!(r.len(), 300);
                    Ok::<(), helm_kernel::store::StoreError>(())
                })
                .unwrap()
        });
        let (scanned, b) = median_us(runs, || {
            let mut k = 0;
            store
                .for_each_record(|i, _| {
                    if i >= from && i < from + page {
                        k += 1;
                    }
                    Ok::<(), helm_kernel::store::StoreError>(())
                })
                .unwrap();
            k
        });
        assert_eq!((a, b), (page, page));
        println!(
            "store read_range, {n} records of 300 bytes in {segments} segments of {segment_bytes} bytes, {name} of {page}: \
             {ranged:.0} us (full scan {scanned:.0} us, {:.0}x)",
            scanned / ranged
        );
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--range") {
        range(bench);
        return;
    }
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
        // Side by side: the default reservation, then none (the baseline), alternating.
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..runs {
            with.push(run(mode, DEFAULT_RESERVE_BYTES, threads, secs));
            without.push(run(mode, 0, threads, secs));
        }
        let show = |name: &str, results: &mut Vec<Run>| {
            for r in results.iter() {
                println!(
                    "  {name:<14} {:>9.0} decisions/s  {:>7.0} fsyncs/s  latency p50 {} us  p99 {} us  CPU {:.1} us/decision",
                    r.decisions_per_s, r.fsyncs_per_s, r.p50_us, r.p99_us, r.cpu_us_per_decision
                );
            }
            results.sort_by(|a, b| a.decisions_per_s.total_cmp(&b.decisions_per_s));
            let m = &results[results.len() / 2];
            println!(
                "store {mode}, {threads} threads, {secs} s x {runs}, {name}: median {:.0} decisions/s = {:.0} records/s, \
                 {:.0} fsyncs/s ({:.1} decisions per fsync), p50 {} us, p99 {} us, CPU {:.1} us/decision",
                m.decisions_per_s,
                2.0 * m.decisions_per_s,
                m.fsyncs_per_s,
                if m.fsyncs_per_s > 0.0 { m.decisions_per_s / m.fsyncs_per_s } else { 0.0 },
                m.p50_us,
                m.p99_us,
                m.cpu_us_per_decision
            );
            (m.decisions_per_s, m.p50_us as f64, m.cpu_us_per_decision)
        };
        let (a, a50, acpu) = show("reserved", &mut with);
        let (b, b50, bcpu) = show("no reservation", &mut without);
        println!(
            "  reservation / baseline: throughput {:.2}x, p50 latency {:.2}x, CPU per decision {:.2}x",
            a / b,
            a50 / b50.max(1.0),
            acpu / bcpu.max(f64::MIN_POSITIVE)
        );
    }
}
