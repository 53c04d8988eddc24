//! Sandbox benchmarks (plain binary, prints medians and percentiles):
//!
//! 1. latency of a small tool, instantiate + run: cold (compile from bytes every time)
//!    and cached (by hash, and by bytes, which adds the SHA-256 of the module); for the
//!    WAT `echo` command and, when the wasm32-wasip1 target is installed, the
//!    Rust-compiled `json-transform` tool;
//! 2. the cost of fuel metering: the same compute-heavy module (tests/wat/compute.wat, a
//!    hash loop) with wasmi's fuel metering off and on, and through the sandbox (fuel on,
//!    1 M-fuel slices with a clock check, WASI host).
//!
//!   cargo bench -p helm-sandbox --bench sandbox
//!   BENCH_QUICK=1 cargo bench -p helm-sandbox --bench sandbox   # fewer iterations
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "benchmark"
)]

use core::time::Duration;
use std::path::PathBuf;
use std::time::Instant;

use helm_sandbox::{Limits, ModuleRef, RunRequest, Sandbox, SandboxConfig};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn wat_file(name: &str) -> Vec<u8> {
    wat::parse_file(manifest_dir().join("tests/wat").join(name)).unwrap()
}

/// json-transform.wasm, built if the wasm32-wasip1 target is installed.
fn json_transform() -> Option<Vec<u8>> {
    let tools = manifest_dir().join("tools");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(tools.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(tools.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .ok()?;
    if !status.success() {
        eprintln!("note: sandbox/tools did not build (rustup target add wasm32-wasip1); json-transform skipped");
        return None;
    }
    std::fs::read(tools.join("target/wasm32-wasip1/release/json-transform.wasm")).ok()
}

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

struct Stats {
    p50: Duration,
    p99: Duration,
    min: Duration,
}

fn stats(mut d: Vec<Duration>) -> Stats {
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        min: d[0],
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn latency(name: &str, module: &[u8], input: &[u8]) {
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut req = RunRequest::new(input);
    req.limits = Limits::DEFAULT;
    let (cold_n, warm_n) = if quick() { (30, 300) } else { (300, 5_000) };
    // Warm up the allocator and caches.
    for _ in 0..20 {
        sb.clear_cache();
        sb.run(ModuleRef::Bytes(module), &req).unwrap();
    }
    let mut cold = Vec::with_capacity(cold_n);
    for _ in 0..cold_n {
        sb.clear_cache();
        let t = Instant::now();
        let o = sb.run(ModuleRef::Bytes(module), &req).unwrap();
        cold.push(t.elapsed());
        assert!(!o.cached && o.exit_code == Some(0));
    }
    let hash = sb.compile(module).unwrap();
    let mut by_hash = Vec::with_capacity(warm_n);
    for _ in 0..warm_n {
        let t = Instant::now();
        let o = sb.run(ModuleRef::Hash(&hash), &req).unwrap();
        by_hash.push(t.elapsed());
        assert!(o.cached && o.exit_code == Some(0));
    }
    let mut by_bytes = Vec::with_capacity(warm_n);
    for _ in 0..warm_n {
        let t = Instant::now();
        let o = sb.run(ModuleRef::Bytes(module), &req).unwrap();
        by_bytes.push(t.elapsed());
        assert!(o.cached);
    }
    let o = sb.run(ModuleRef::Hash(&hash), &req).unwrap();
    println!(
        "latency {name} ({} bytes, {} fuel per run): instantiate + run",
        module.len(),
        o.fuel_used
    );
    for (label, d) in [
        ("cold (compile)", cold),
        ("cached by hash", by_hash),
        ("cached by bytes", by_bytes),
    ] {
        let s = stats(d);
        println!(
            "  {label:<16} p50 {:>9.1} us   p99 {:>9.1} us   min {:>9.1} us",
            us(s.p50),
            us(s.p99),
            us(s.min)
        );
    }
}

fn raw_hash_call(module: &[u8], fuel: bool, n: i32) -> (Duration, i64) {
    use wasmi::{Caller, Engine, Linker, Module, Store};
    let engine = Engine::new(&helm_sandbox::bench_support::engine_config(fuel));
    let module = Module::new(&engine, module).unwrap();
    let mut linker = Linker::<()>::new(&engine);
    let stub = |_: Caller<'_, ()>, _: i32, _: i32, _: i32, _: i32| -> i32 { 52 };
    linker.func_wrap("wasi_snapshot_preview1", "fd_read", stub).unwrap();
    linker.func_wrap("wasi_snapshot_preview1", "fd_write", stub).unwrap();
    let mut store = Store::new(&engine, ());
    if fuel {
        store.set_fuel(u64::MAX).unwrap();
    }
    let instance = linker.instantiate_and_start(&mut store, &module).unwrap();
    let hash = instance.get_typed_func::<i32, i64>(&store, "hash").unwrap();
    let t = Instant::now();
    let h = hash.call(&mut store, n).unwrap();
    (t.elapsed(), h)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn metering() {
    let module = wat_file("compute.wat");
    let n: i32 = if quick() { 2_000_000 } else { 20_000_000 };
    let reps = if quick() { 3 } else { 9 };
    let sb = Sandbox::new(SandboxConfig::default()).unwrap();
    let input = n.to_le_bytes();
    let mut req = RunRequest::new(&input);
    req.limits.fuel = u64::MAX;
    req.limits.wall_ms = 600_000;
    sb.compile(&module).unwrap();
    let (mut off, mut on, mut sandboxed) = (Vec::new(), Vec::new(), Vec::new());
    let mut fuel_used = 0;
    // Interleaved, so that machine noise falls on all three alike.
    for _ in 0..reps {
        let (d, h_off) = raw_hash_call(&module, false, n);
        off.push(d);
        let (d, h_on) = raw_hash_call(&module, true, n);
        on.push(d);
        assert_eq!(h_off, h_on);
        let t = Instant::now();
        let o = sb.run(ModuleRef::Bytes(&module), &req).unwrap();
        sandboxed.push(t.elapsed());
        assert_eq!(o.stdout, h_on.to_le_bytes());
        fuel_used = o.fuel_used;
    }
    let (off, on, sandboxed) = (median(off), median(on), median(sandboxed));
    println!("fuel metering: compute.wat, {n} loop iterations, median of {reps} (fuel used {fuel_used})");
    println!("  wasmi, fuel off       {:>9.2} ms", off.as_secs_f64() * 1e3);
    println!(
        "  wasmi, fuel on        {:>9.2} ms   ratio {:.3}",
        on.as_secs_f64() * 1e3,
        on.as_secs_f64() / off.as_secs_f64()
    );
    println!(
        "  sandbox (fuel, slices, WASI) {:>9.2} ms   ratio {:.3}",
        sandboxed.as_secs_f64() * 1e3,
        sandboxed.as_secs_f64() / off.as_secs_f64()
    );
    println!(
        "  interpretation rate (sandbox): {:.0} M fuel/s",
        fuel_used as f64 / sandboxed.as_secs_f64() / 1e6
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    latency("echo.wat", &wat_file("echo.wat"), b"{\"x\":1}");
    if let Some(m) = json_transform() {
        latency("json-transform", &m, br#"{"a": [1, 2, 3], "b": "text"}"#);
    }
    metering();
}
