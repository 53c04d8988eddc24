//! Decision replay catches a DECISION whose verdict was altered and re-signed with a
//! valid kernel key.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "tests"
)]

use std::collections::BTreeMap;

use guardian::{replay, Bundle, Limits, Verdict};
use helm_test_vectors::{test_key, Chain};
use verify_core::{body, commitment, CallKind, Escalation, Hash, Kind, Record};

const POLICY: &str = r#"
name = "refunds"
[[rule]]
id = "small"
tools = ["refund"]
verdict = "allow"
require = ["args.amount <= 100"]
[[rule]]
id = "large"
tools = ["refund"]
verdict = "escalate"
require = ["args.amount > 100"]
escalation = { role = "approver", quorum = 1, ttl_ms = 60000 }
"#;

struct Run {
    chain: Chain,
    blobs: BTreeMap<Hash, Vec<u8>>,
}

fn args_blob(blobs: &mut BTreeMap<Hash, Vec<u8>>, json: &str) -> Hash {
    let salt = [9u8; 16];
    let name = commitment(&salt, json.as_bytes());
    let mut content = salt.to_vec();
    content.extend_from_slice(json.as_bytes());
    blobs.insert(name, content);
    name
}

/// A run with three refunds; `tamper` may replace the third DECISION's verdict.
fn run(tamper: bool) -> Run {
    let kernel = test_key("kernel");
    let bundle = Bundle::from_toml(POLICY).unwrap();
    let h = bundle.hash();
    let mut chain = Chain::new();
    let mut blobs = BTreeMap::new();
    blobs.insert(h, bundle.canonical().to_vec());
    let p = chain.push(&kernel, Kind::Policy, body::policy(&h, Some("refunds")), &[], "");
    for (n, amount) in [50u64, 80, 5000].into_iter().enumerate() {
        let a = args_blob(&mut blobs, &format!("{{\"amount\":{amount}}}"));
        let time = chain.time;
        let i = chain.push(
            &kernel,
            Kind::Intent,
            body::intent("refund", CallKind::Json, &a),
            &[],
            "s1",
        );
        let decision = if amount > 100 && !(tamper && n == 2) {
            let esc = Escalation {
                role: "approver",
                quorum: 1,
                not_before: time,
                expires: time + 60000,
            };
            body::decision(Verdict::Escalate, "POLICY_ESCALATE", &h, Some(&esc))
        } else {
            body::decision(Verdict::Allow, "POLICY_ALLOW", &h, None)
        };
        chain.push(&kernel, Kind::Decision, decision, &[i, p], "s1");
    }
    Run { chain, blobs }
}

fn decode(chain: &Chain) -> Vec<Record<'_>> {
    chain.records.iter().map(|r| Record::decode(r).unwrap()).collect()
}

#[test]
fn honest_run_replays() {
    let r = run(false);
    let report = replay(&decode(&r.chain), &r.blobs, Limits::default());
    assert_eq!((report.decisions, report.reproduced), (3, 3), "{report:?}");
    assert!(report.ok());
}

#[test]
fn altered_and_resigned_decision_is_caught() {
    let r = run(true);
    let records = decode(&r.chain);
    // Every record is validly signed by the kernel key...
    assert!(records.iter().all(|rec| rec.kid == test_key("kernel").public_key()));
    // ...but the policy would have escalated the 5000 refund.
    let report = replay(&records, &r.blobs, Limits::default());
    assert_eq!((report.decisions, report.reproduced), (3, 2));
    let f = &report.findings[0];
    assert_eq!(f.index, 6);
    assert_eq!(f.recorded, "ALLOW POLICY_ALLOW");
    assert_eq!(f.recomputed.as_deref(), Some("ESCALATE POLICY_ESCALATE"));
    assert_eq!(f.hash, hex::encode(r.chain.hashes[6]));
}

#[test]
fn missing_bundle_or_arguments_cannot_be_replayed() {
    let r = run(false);
    let records = decode(&r.chain);
    let mut blobs = r.blobs.clone();
    blobs.remove(&Bundle::from_toml(POLICY).unwrap().hash());
    let report = replay(&records, &blobs, Limits::default());
    assert_eq!(report.findings.len(), 3);
    let mut blobs = r.blobs.clone();
    let Some(verify_core::Body::Intent { args, .. }) = records.get(1).map(|r| r.body) else {
        panic!("record 1 is the first INTENT")
    };
    blobs.remove(&args);
    let report = replay(&records, &blobs, Limits::default());
    assert_eq!(report.findings.len(), 1);
    assert!(report.findings[0].problem.contains("withheld"));
}

#[test]
fn kernel_denials_are_not_recomputed_but_grants_are() {
    let mut r = run(false);
    let kernel = test_key("kernel");
    let h = Bundle::from_toml(POLICY).unwrap().hash();
    // The ESCALATE of the 5000 refund is record 6; a DENY APPROVAL_TIMEOUT resolves it.
    let intent5000 = r.chain.hashes[5];
    let escalate = r.chain.hashes[6];
    r.chain.push(
        &kernel,
        Kind::Decision,
        body::decision(Verdict::Deny, "APPROVAL_TIMEOUT", &h, None),
        &[intent5000, escalate],
        "s1",
    );
    // A kernel error on a fresh INTENT.
    let a = args_blob(&mut r.blobs, "{\"amount\":1}");
    let i = r.chain.push(
        &kernel,
        Kind::Intent,
        body::intent("refund", CallKind::Json, &a),
        &[],
        "s1",
    );
    r.chain.push(
        &kernel,
        Kind::Decision,
        body::decision(Verdict::Deny, "KERNEL_ERROR", &h, None),
        &[i],
        "s1",
    );
    // ALLOW APPROVAL_GRANTED for a call the policy escalates: fine; for one it allows: not.
    for amount in [7000u64, 8] {
        let a = args_blob(&mut r.blobs, &format!("{{\"amount\":{amount}}}"));
        let i = r.chain.push(
            &kernel,
            Kind::Intent,
            body::intent("refund", CallKind::Json, &a),
            &[],
            "s1",
        );
        r.chain.push(
            &kernel,
            Kind::Decision,
            body::decision(Verdict::Allow, "APPROVAL_GRANTED", &h, None),
            &[i],
            "s1",
        );
    }
    let records = decode(&r.chain);
    let report = replay(&records, &r.blobs, Limits::default());
    assert_eq!(
        (report.decisions, report.reproduced, report.kernel_denials),
        (7, 4, 2),
        "{report:?}"
    );
    assert_eq!(report.findings.len(), 1);
    assert!(report.findings[0].problem.contains("APPROVAL_GRANTED"));
}
