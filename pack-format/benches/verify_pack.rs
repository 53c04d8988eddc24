//! Pack verification throughput and memory, against two baselines measured in the same
//! run: `sha256sum` of the same file (the hashing floor) and the raw Ed25519 verify rate
//! of the backend (ed25519-dalek `verify_strict`) on one core.
//!
//! `cargo bench -p pack-format --bench verify_pack` (sizes: HELM_BENCH_SIZES, default
//! "10000,1000000"; repetitions: HELM_BENCH_RUNS, default 3; medians are printed).
//! Each verification runs in a child process so that its peak memory (VmHWM) is its own.
//! Files are verified with `verify_seekable` (two passes from 65,536 records on);
//! `HELM_BENCH_TWO_PASS=never` makes every child verify in one pass instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::print_stdout,
    reason = "benchmark binary"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pack_format::transport::{compress, Wrapper};
use pack_format::{verify_seekable, VerifyOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Counts signatures: one per record, plus approvers' and witnesses' inside records.
#[derive(Default)]
struct Signatures(u64);

impl pack_format::Observer for Signatures {
    fn record(&mut self, _index: u64, record: &verify_core::Record<'_>) {
        self.0 += 1 + match record.body {
            verify_core::Body::Approval { approvals } => approvals.len() as u64,
            verify_core::Body::Checkpoint {
                cosignatures: Some(c), ..
            } => c.len() as u64,
            _ => 0,
        };
    }
}

/// Child mode: verify one file, print "records signatures seconds peak_kib".
fn child(path: &Path, workers: usize, anchor: [u8; 32]) {
    let file = std::fs::File::open(path).unwrap();
    // HELM_BENCH_TWO_PASS=never: one pass, as verify_reader (to compare memory).
    let two_pass = match std::env::var("HELM_BENCH_TWO_PASS").as_deref() {
        Ok("never") => pack_format::TwoPass::Never,
        _ => pack_format::TwoPass::Auto,
    };
    let opts = VerifyOptions {
        threads: workers,
        two_pass,
        ..VerifyOptions::default()
    };
    let mut sigs = Signatures::default();
    let start = Instant::now();
    // A file is seekable: large packs are verified in two passes (less memory).
    let (_, summary) = verify_seekable(
        std::io::BufReader::with_capacity(1 << 20, file),
        &[anchor],
        &opts,
        &mut sigs,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let secs = start.elapsed().as_secs_f64();
    println!("{} {} {secs} {}", summary.verified.records, sigs.0, peak_rss_kib());
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-packs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds (or reuses) a pack of about `records` records, plain and zstd.
fn pack_files(records: usize) -> (PathBuf, PathBuf, [u8; 32], u64) {
    let plain = dir().join(format!("run-{records}.tar"));
    let zst = dir().join(format!("run-{records}.tar.zst"));
    let anchor = helm_test_vectors::test_key("root-1").public_key();
    if !plain.exists() || !zst.exists() {
        eprintln!(
            "generating a pack of ~{records} records (once; cached in {})",
            dir().display()
        );
        // ~3.2 records per call, 10 calls per session, a checkpoint every 10,000 records.
        let sessions = (records / 32).max(1);
        let run = helm_test_vectors::sample_run(sessions, 10, 10_000);
        let pack = helm_test_vectors::write_run(&run, &[]).unwrap();
        std::fs::write(&zst, compress(&pack, Wrapper::Zstd).unwrap()).unwrap();
        std::fs::write(&plain, &pack).unwrap();
    }
    // The manifest is in the first two blocks (header + at most 1024 bytes).
    let mut bytes = vec![0u8; 2048];
    std::io::Read::read_exact(&mut std::fs::File::open(&plain).unwrap(), &mut bytes).unwrap();
    let (m, _) = pack_format::Manifest::decode(&pack_format_manifest(&bytes)).unwrap();
    (plain, zst, anchor, m.records)
}

fn pack_format_manifest(pack: &[u8]) -> Vec<u8> {
    let size = usize::from_str_radix(core::str::from_utf8(&pack[124..135]).unwrap(), 8).unwrap();
    pack[512..512 + size].to_vec()
}

fn run_child(path: &Path, workers: usize, cpus: &str) -> (u64, u64, f64, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("taskset")
        .args(["-c", cpus])
        .arg(exe)
        .env("HELM_BENCH_CHILD", path)
        .env("HELM_BENCH_THREADS", workers.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

fn sha256sum_secs(path: &Path) -> f64 {
    let start = Instant::now();
    let st = Command::new("taskset")
        .args(["-c", "1", "sha256sum"])
        .arg(path)
        .output()
        .unwrap();
    assert!(st.status.success());
    start.elapsed().as_secs_f64()
}

/// Raw verify_strict rate on one core over `n` distinct signed messages of record size.
fn raw_verify_rate(n: usize) -> f64 {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| format!("{i:0300}").into_bytes()).collect();
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
    let start = Instant::now();
    for (m, s) in msgs.iter().zip(&sigs) {
        vk.verify_strict(m, s).unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if let Ok(path) = std::env::var("HELM_BENCH_CHILD") {
        let workers = std::env::var("HELM_BENCH_THREADS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(1);
        child(
            Path::new(&path),
            workers,
            helm_test_vectors::test_key("root-1").public_key(),
        );
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("HELM_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = std::env::var("HELM_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!(
        "pack verification benchmark: {runs} runs per figure, medians; machine: {} cores",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("one core = taskset -c 1, threads=1; two cores = taskset -c 0,1, threads=2 (the reader and one signature worker)");
    for size in sizes {
        let (plain, zst, _anchor, records) = pack_files(size);
        let mb = std::fs::metadata(&plain).unwrap().len() as f64 / 1e6;
        let zmb = std::fs::metadata(&zst).unwrap().len() as f64 / 1e6;
        let mut raw = Vec::new();
        let mut sha = Vec::new();
        let mut one = Vec::new();
        let mut two = Vec::new();
        let mut one_z = Vec::new();
        let mut two_z = Vec::new();
        let mut peak = 0;
        let mut signatures = 0;
        for _ in 0..runs {
            raw.push(raw_verify_rate(20_000));
            sha.push(sha256sum_secs(&plain));
            let (n, sigs, s, p) = run_child(&plain, 1, "1");
            assert_eq!(n, records);
            signatures = sigs;
            one.push(s);
            peak = peak.max(p);
            let (_, _, s, p) = run_child(&plain, 2, "0,1");
            two.push(s);
            peak = peak.max(p);
            let (_, _, s, _) = run_child(&zst, 1, "1");
            one_z.push(s);
            let (_, _, s, _) = run_child(&zst, 2, "0,1");
            two_z.push(s);
        }
        let raw = median(raw);
        let rate = |secs: f64| records as f64 / secs;
        let (one, two, one_z, two_z, sha) = (median(one), median(two), median(one_z), median(two_z), median(sha));
        println!();
        println!("pack: {records} records, {mb:.1} MB plain, {zmb:.1} MB .tar.zst");
        println!(
            "  baseline sha256sum (1 core)     {:>10.1} MB/s   ({sha:.3} s)",
            mb / sha
        );
        println!("  baseline raw verify_strict       {raw:>10.0} sig/s (1 core)");
        let sig_rate = signatures as f64 / one;
        println!("  signatures in the pack           {signatures:>10} ({:.3} per record: approvers' signatures inside APPROVALs)", signatures as f64 / records as f64);
        println!(
            "  verify plain, 1 core            {:>10.0} rec/s  {:>7.1} MB/s  {sig_rate:>8.0} sig/s",
            rate(one),
            mb / one
        );
        println!(
            "    ratio to raw verify rate       records {:.3}, signatures {:.3} (goal >= 0.9)",
            rate(one) / raw,
            sig_rate / raw
        );
        println!(
            "  verify plain, 2 cores           {:>10.0} rec/s  {:>7.1} MB/s  speed-up {:.2}x",
            rate(two),
            mb / two,
            one / two
        );
        println!(
            "  verify zstd, 1 core             {:>10.0} rec/s  {:>7.1} MB/s (compressed)",
            rate(one_z),
            zmb / one_z
        );
        println!(
            "  verify zstd, 2 cores            {:>10.0} rec/s  speed-up {:.2}x",
            rate(two_z),
            one_z / two_z
        );
        println!("  peak memory (VmHWM, max of runs) {:>9.1} MiB", peak as f64 / 1024.0);
    }
}
