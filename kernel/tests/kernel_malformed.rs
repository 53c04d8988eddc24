//! Calls whose arguments cannot be presented to Guardian (not valid JSON, or cut off by
//! the model's token limit) are recorded as an INTENT and a kernel DENY
//! (`INVALID_ARGUMENTS`, `TRUNCATED_ARGUMENTS`): the store verifies and replay counts them
//! as kernel denials, not as findings. Any other reason is refused as `KERNEL_ERROR`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use helm_kernel::clock::ManualClock;
use helm_kernel::{Args, Proposal, Status};
use verify_core::{Body, Record, Verdict};

fn proposal(tool: &str, text: &str, call_id: &str) -> Proposal {
    Proposal {
        tool: tool.into(),
        args: Args::Text(text.into()),
        principal: "agent-7".into(),
        session: "s1".into(),
        call_id: Some(call_id.into()),
    }
}

#[test]
fn malformed_calls_are_denied_recorded_and_replay_as_kernel_denials() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = open(dir.path(), &clock);
    // `read_file` would be allowed with a proper path: the malformed call is still denied.
    let a = k.deny_malformed(
        &proposal("read_file", "{\"path\": \"/workspace/a", "call_1"),
        "INVALID_ARGUMENTS",
    );
    assert_eq!((a.status, a.reason.as_str()), (Status::Deny, "INVALID_ARGUMENTS"));
    assert!(a.intent.is_some() && a.decision.is_some());
    let t = k.deny_malformed(&proposal("read_file", "{\"path\":", "call_2"), "TRUNCATED_ARGUMENTS");
    assert_eq!(t.reason, "TRUNCATED_ARGUMENTS");
    // A denied call's id names no open INTENT.
    assert!(k.intent_for_call("agent-7", "call_1").is_none());
    // Not a kernel reason: refused, nothing recorded.
    let before = k.metrics().records;
    let x = k.deny_malformed(&proposal("read_file", "{}", "call_3"), "POLICY_DENY");
    assert_eq!((x.status, x.reason.as_str()), (Status::Deny, "KERNEL_ERROR"));
    assert_eq!(k.metrics().records, before);
    drop(k);

    let records = records(dir.path());
    verify(&records);
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let reasons: Vec<&str> = decoded
        .iter()
        .filter_map(|r| match r.body {
            Body::Decision {
                verdict: Verdict::Deny,
                reason,
                ..
            } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["INVALID_ARGUMENTS", "TRUNCATED_ARGUMENTS"]);
    let mut blobs = BTreeMap::new();
    helm_kernel::store::read_records(&dir.path().join("blobs"), |_, f| {
        blobs.insert(f[..32].try_into().unwrap(), f[32..].to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    let report = guardian::replay(&decoded, &blobs, guardian::Limits::default());
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.kernel_denials, 2);
}
