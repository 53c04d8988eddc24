//! Decisions signed outside the lock and committed in order (kernel/src/kernel/pipeline.rs):
//! under many concurrent callers the store stays one valid stream, budgets hold exactly,
//! every DECISION replays, and a failing signer fails only decisions, losing nothing
//! that was acknowledged and leaving no trace in the evidence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

mod common;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use common::{records, test_seed, verify, BUNDLE, T0};
use helm_kernel::clock::ManualClock;
use helm_kernel::signer::{KeyFileSigner, RecordSigner, SignError};
use helm_kernel::{Answer, Args, Kernel, Proposal, Status};
use serde_json::json;
use verify_core::{Body, Hash, Record, Verdict};

/// 40 reads per principal, ever.
const BUDGET: &str = r#"
[[budget]]
id = "reads"
scope = "principal"
tools = ["read_file"]
max_calls = 40
"#;

fn config(dir: &Path) -> helm_kernel::KernelConfig {
    let bundle = guardian::Bundle::from_toml(&format!("{BUNDLE}{BUDGET}")).unwrap();
    let mut c = helm_kernel::KernelConfig::new(
        dir.to_path_buf(),
        vec![common::signer("root-1").public_key()],
        common::chain(),
        vec![bundle],
    );
    // Checkpoints between decisions in flight, often.
    c.checkpoint_every = 7;
    c
}

fn proposal(t: u64, i: u64) -> Proposal {
    let (tool, args) = if i % 4 == 3 {
        ("shell", json!({"cmd": "rm"}))
    } else {
        ("read_file", json!({"path": format!("/workspace/{t}/{i}")}))
    };
    Proposal {
        tool: tool.into(),
        args: Args::Json(args),
        principal: "agent-1".into(),
        // Three sessions shared by all threads, and the kernel's own session "".
        session: if t == 0 { String::new() } else { format!("s{}", t % 3) },
        call_id: None,
    }
}

/// Runs `threads` callers of `calls` decisions each; returns every answer.
fn load(k: &Arc<Kernel>, threads: u64, calls: u64) -> Vec<Answer> {
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let k = k.clone();
            std::thread::spawn(move || (0..calls).map(|i| k.evaluate(&proposal(t, i))).collect::<Vec<_>>())
        })
        .collect();
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// The blobs of a store, by name.
fn blobs(dir: &Path) -> BTreeMap<Hash, Vec<u8>> {
    let mut out = BTreeMap::new();
    helm_kernel::store::read_records(&dir.join("blobs"), |_, f| {
        out.insert(<Hash>::try_from(&f[..32]).unwrap(), f[32..].to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

/// Verifies the store, replays every DECISION, and returns the hashes of its records
/// and its number of ALLOWs.
fn check_store(dir: &Path) -> (BTreeSet<Hash>, usize) {
    let rs = records(dir);
    verify(&rs);
    let decoded: Vec<Record<'_>> = rs.iter().map(|r| Record::decode(r).unwrap()).collect();
    // spec/kernel.md §1: from the first decision on (the trust chain and the POLICY
    // records come first, with clocks of their own), one Lamport tick per record,
    // however many decisions were in flight.
    let first = decoded
        .iter()
        .position(|r| matches!(r.body, Body::Intent { .. }))
        .unwrap();
    for w in decoded[first..].windows(2) {
        assert_eq!(
            w[1].lamport,
            w[0].lamport + 1,
            "record {} after {}",
            hex::encode(w[1].hash),
            w[0].lamport
        );
    }
    let report = guardian::replay(&decoded, &blobs(dir), guardian::Limits::default());
    assert!(report.findings.is_empty(), "replay: {:?}", report.findings);
    assert!(report.reproduced > 0);
    let allows = decoded
        .iter()
        .filter(|r| {
            matches!(
                r.body,
                Body::Decision {
                    verdict: Verdict::Allow,
                    ..
                }
            )
        })
        .count();
    (decoded.iter().map(|r| r.hash).collect(), allows)
}

fn hash(hex_text: &Option<String>) -> Hash {
    <Hash>::try_from(hex::decode(hex_text.as_deref().unwrap()).unwrap()).unwrap()
}

#[test]
fn concurrent_decisions_make_one_valid_replayable_stream_and_budgets_hold() {
    concurrent_decisions(KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1"));
}

/// The same with presigned nonces (what `helm-proxy serve` uses): a small pool, so that
/// signatures come both from it and the ordinary way; the stream verifies record by
/// record either way.
#[test]
fn concurrent_decisions_with_presigned_nonces() {
    let s = KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1").with_presigning(32);
    concurrent_decisions(s);
}

fn concurrent_decisions(signer: KeyFileSigner) {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (k, _) = Kernel::open(config(d.path()), Arc::new(signer), Arc::new(clock.clone())).unwrap();
    let k = Arc::new(k);
    let answers = load(&k, 8, 25);
    let allowed = answers.iter().filter(|a| a.status == Status::Allow).count();
    assert!(answers.iter().all(|a| a.reason != "KERNEL_ERROR"), "{answers:?}");
    // 152 reads proposed concurrently by one principal; the budget allows exactly 40.
    assert_eq!(allowed, 40);
    assert_eq!(
        answers.iter().filter(|a| a.reason == "BUDGET_EXHAUSTED").count(),
        152 - 40
    );
    drop(k);
    let (stored, allows) = check_store(d.path());
    assert_eq!(allows, 40);
    for a in &answers {
        assert!(stored.contains(&hash(&a.intent)) && stored.contains(&hash(&a.decision)));
    }
    // Checkpoints were written between decisions in flight (every 7 records).
    let checkpoints = records(d.path())
        .iter()
        .filter(|r| matches!(Record::decode(r).unwrap().body, Body::Checkpoint { .. }))
        .count();
    // 400 decision records in pairs: one CHECKPOINT per 8, a few deferred while a
    // decision of session "" (the CHECKPOINTs' own) was in flight.
    assert!(checkpoints >= 40, "{checkpoints} checkpoints");
}

/// The kernel key, failing every `every`-th signature while `armed`.
#[derive(Debug)]
struct Flaky {
    inner: KeyFileSigner,
    armed: AtomicBool,
    count: AtomicU64,
    every: u64,
}

impl RecordSigner for Flaky {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if self.armed.load(Ordering::SeqCst) && self.count.fetch_add(1, Ordering::SeqCst) % self.every == self.every - 1
        {
            return Err(SignError("test token removed".into()));
        }
        self.inner.sign(message)
    }
    fn describe(&self) -> String {
        "flaky test signer".into()
    }
}

#[test]
fn a_failing_signer_fails_decisions_in_flight_and_loses_nothing_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let flaky = Arc::new(Flaky {
        inner: KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1"),
        armed: AtomicBool::new(false),
        count: AtomicU64::new(0),
        every: 23,
    });
    let (k, _) = Kernel::open(config(d.path()), flaky.clone(), Arc::new(clock.clone())).unwrap();
    let k = Arc::new(k);
    flaky.armed.store(true, Ordering::SeqCst);
    let mut answers = load(&k, 6, 30);
    let failed = answers.iter().filter(|a| a.reason == "KERNEL_ERROR").count();
    assert!(failed > 0, "the signer failed, so some decisions must have");
    assert!(answers
        .iter()
        .all(|a| a.reason != "KERNEL_ERROR" || a.status == Status::Deny));
    // The kernel goes on once the signer works again, with exact evidence: the budget
    // counts only the ALLOWs that were written.
    flaky.armed.store(false, Ordering::SeqCst);
    answers.extend(load(&k, 4, 30));
    let allowed: Vec<&Answer> = answers.iter().filter(|a| a.status == Status::Allow).collect();
    assert_eq!(allowed.len(), 40, "exactly the budget, failures taken back");
    assert!(k.evaluate(&proposal(1, 0)).reason == "BUDGET_EXHAUSTED");
    drop(k);
    let (stored, allows) = check_store(d.path());
    assert_eq!(allows, 40);
    for a in answers.iter().filter(|a| a.reason != "KERNEL_ERROR") {
        assert!(stored.contains(&hash(&a.intent)) && stored.contains(&hash(&a.decision)));
    }
}
