//! The kernel end to end in process: decisions, approvals, effects, timeouts,
//! checkpoints and restarts; every store must verify as one stream and every DECISION
//! must replay.

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
use helm_kernel::{Args, EffectReport, Kernel, Proposal, Status};
use serde_json::json;
use verify_core::{approval_challenge, Body, EffectStatus, Hash, Kind, Record};

fn call(tool: &str, args: serde_json::Value, session: &str) -> Proposal {
    Proposal {
        tool: tool.into(),
        args: Args::Json(args),
        principal: "agent-7".into(),
        session: session.into(),
        call_id: None,
    }
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn effect(intent: &str, out: &[u8]) -> EffectReport {
    EffectReport {
        intent: h(intent),
        principal: "agent-7".into(),
        status: EffectStatus::Succeeded,
        output: out.to_vec(),
        executor: "client".into(),
        meters: vec![("duration_ms".into(), 4)],
        ext: None,
        blobs: vec![],
    }
}

fn blobs(dir: &std::path::Path) -> BTreeMap<Hash, Vec<u8>> {
    let mut out = BTreeMap::new();
    helm_kernel::store::read_records(&dir.join("blobs"), |_, f| {
        out.insert(f[..32].try_into().unwrap(), f[32..].to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

#[test]
fn allow_deny_escalate_approve_effect_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = open(dir.path(), &clock);

    let a = k.evaluate(&call("read_file", json!({"path": "/workspace/a.txt"}), "s1"));
    assert_eq!((a.status, a.reason.as_str()), (Status::Allow, "POLICY_ALLOW"), "{a:?}");
    assert!(a.durable);
    let d = k.evaluate(&call("shell", json!({"cmd": "rm"}), "s1"));
    assert_eq!((d.status, d.reason.as_str()), (Status::Deny, "TOOL_NOT_ALLOWED"));
    let o = k.evaluate(&call("unknown_tool", json!({}), "s1"));
    assert_eq!(o.status, Status::Deny);

    // An effect for the allowed call; a second one and one for the denied call are refused.
    k.report_effect(&effect(a.intent.as_deref().unwrap(), b"contents"))
        .unwrap();
    let again = k
        .report_effect(&effect(a.intent.as_deref().unwrap(), b"again"))
        .unwrap_err();
    assert_eq!(again.code, "NO_OPEN_PERMIT");
    let denied = k
        .report_effect(&effect(d.intent.as_deref().unwrap(), b"x"))
        .unwrap_err();
    assert_eq!(denied.code, "NO_OPEN_PERMIT");
    let mut theirs = effect(a.intent.as_deref().unwrap(), b"x");
    theirs.principal = "agent-8".into();
    assert_eq!(k.report_effect(&theirs).unwrap_err().code, "NO_OPEN_PERMIT");

    // Escalation: pending, the same call retried is still pending with the same id.
    let deploy = call("deploy", json!({"env": "prod"}), "s1");
    let e = k.evaluate(&deploy);
    assert_eq!(e.status, Status::Pending);
    assert_eq!(
        k.report_effect(&effect(e.intent.as_deref().unwrap(), b"early"))
            .unwrap_err()
            .code,
        "NO_PERMIT"
    );
    let mut theirs = effect(e.intent.as_deref().unwrap(), b"x");
    theirs.principal = "agent-8".into();
    assert_eq!(k.report_effect(&theirs).unwrap_err().code, "NOT_YOUR_INTENT");
    let appr = e.approval.clone().unwrap();
    assert_eq!(appr.quorum, 2);
    let again = k.evaluate(&deploy);
    assert_eq!(again.status, Status::Pending);
    assert_eq!(again.approval.unwrap().id, appr.id);
    let id = h(&appr.id);
    let challenge = approval_challenge(&id);
    assert_eq!(hex::encode(challenge), appr.challenge);
    let a1 = signer("approver-1");
    let a2 = signer("approver-2");

    // Timelock, wrong role, mis-bound signature, then quorum.
    let early = k
        .submit_approval(&id, a1.public_key(), a1.sign(&challenge))
        .unwrap_err();
    assert_eq!(early.code, "APPROVAL_TIMELOCK");
    clock.advance(1500);
    let kernel_key = signer("kernel-1");
    let role = k
        .submit_approval(&id, kernel_key.public_key(), kernel_key.sign(&challenge))
        .unwrap_err();
    assert_eq!(role.code, "APPROVAL_ROLE");
    let other = approval_challenge(&[9; 32]);
    let bad = k.submit_approval(&id, a1.public_key(), a1.sign(&other)).unwrap_err();
    assert_eq!(bad.code, "APPROVAL_INVALID");
    let one = k.submit_approval(&id, a1.public_key(), a1.sign(&challenge)).unwrap();
    assert_eq!(one.state, "pending");
    let dup = k
        .submit_approval(&id, a1.public_key(), a1.sign(&challenge))
        .unwrap_err();
    assert_eq!(dup.code, "APPROVAL_DUPLICATE");
    assert_eq!(k.evaluate(&deploy).status, Status::Pending);
    let two = k.submit_approval(&id, a2.public_key(), a2.sign(&challenge)).unwrap();
    assert_eq!(two.state, "approved");
    let replayed = k
        .submit_approval(&id, a2.public_key(), a2.sign(&challenge))
        .unwrap_err();
    assert_eq!(replayed.code, "ALREADY_RESOLVED");

    // The retried call is allowed now, idempotently, and its effect is recorded.
    let granted = k.evaluate(&deploy);
    assert_eq!(
        (granted.status, granted.reason.as_str()),
        (Status::Allow, "APPROVAL_GRANTED")
    );
    assert_eq!(k.evaluate(&deploy).intent, granted.intent);
    k.report_effect(&effect(granted.intent.as_deref().unwrap(), b"deployed"))
        .unwrap();
    // After the effect, the same call is a new call: escalated again.
    let fresh = k.evaluate(&deploy);
    assert_eq!(fresh.status, Status::Pending);
    assert_ne!(fresh.intent, granted.intent);

    // Timeout: past the window the escalation is denied with APPROVAL_TIMEOUT.
    clock.advance(70_000);
    k.tick().unwrap();
    let timed_out = k.evaluate(&deploy);
    assert_eq!(
        (timed_out.status, timed_out.reason.as_str()),
        (Status::Deny, "APPROVAL_TIMEOUT")
    );
    k.checkpoint().unwrap();

    let records = records(dir.path());
    let verified = verify(&records);
    assert_eq!(verified.records as usize, records.len());
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let kinds = |k: Kind| decoded.iter().filter(|r| r.kind == k).count();
    assert_eq!(kinds(Kind::TrustEvent), 3);
    assert_eq!(kinds(Kind::Policy), 1);
    assert_eq!(kinds(Kind::Approval), 1);
    assert_eq!(kinds(Kind::Effect), 2);
    assert_eq!(kinds(Kind::Violation), 5, "refused effects are recorded as violations");
    assert!(kinds(Kind::Checkpoint) >= 1);
    // Every DECISION replays from the bundle and argument blobs in the store.
    let report = guardian::replay(&decoded, &blobs(dir.path()), guardian::Limits::default());
    assert!(report.ok(), "{:?}", report.findings);
    assert!(report.reproduced >= 4, "{report:?}");
}

#[test]
fn restart_continues_clocks_sequences_and_pending_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let deploy = call("deploy", json!({"env": "staging"}), "s2");
    let id = {
        let k = open(dir.path(), &clock);
        for i in 0..120 {
            let a = k.evaluate(&call("read_file", json!({"path": format!("/workspace/{i}")}), "s2"));
            assert_eq!(a.status, Status::Allow);
            clock.advance(1);
        }
        k.evaluate(&deploy).approval.unwrap().id
    };
    clock.advance(2000);
    let k = open(dir.path(), &clock);
    // The open escalation survived the restart, and retries find it.
    let again = k.evaluate(&deploy);
    assert_eq!(again.status, Status::Pending, "{again:?}");
    assert_eq!(again.approval.unwrap().id, id);
    let idh = h(&id);
    let ch = approval_challenge(&idh);
    for name in ["approver-1", "approver-2"] {
        let s = signer(name);
        k.submit_approval(&idh, s.public_key(), s.sign(&ch)).unwrap();
    }
    assert_eq!(k.evaluate(&deploy).status, Status::Allow);
    for i in 0..10 {
        k.evaluate(&call("read_file", json!({"path": format!("/workspace/b{i}")}), "s2"));
    }
    drop(k);
    // A third open adds nothing (the chain and the bundle are already recorded).
    let k = open(dir.path(), &clock);
    k.evaluate(&call("read_file", json!({"path": "/workspace/last"}), "s3"));
    drop(k);
    let records = records(dir.path());
    verify(&records);
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    assert_eq!(decoded.iter().filter(|r| r.kind == Kind::TrustEvent).count(), 3);
    assert_eq!(decoded.iter().filter(|r| r.kind == Kind::Policy).count(), 1);
    assert!(decoded
        .iter()
        .any(|r| matches!(r.body, Body::Checkpoint { count, .. } if count > 100)));
}

#[test]
fn refuses_to_start_with_a_key_that_is_not_active() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let s = helm_kernel::signer::KeyFileSigner::from_seed(&test_seed("approver-1"), "test key approver-1");
    let err =
        helm_kernel::Kernel::open(config(dir.path()), std::sync::Arc::new(s), std::sync::Arc::new(clock)).unwrap_err();
    assert!(err.to_string().contains("not an active key with role kernel"), "{err}");
    // A chain signed by a key that is not an anchor is refused too.
    let mut c = config(dir.path());
    c.anchors = vec![signer("someone-else").public_key()];
    let s = helm_kernel::signer::KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1");
    let err =
        helm_kernel::Kernel::open(c, std::sync::Arc::new(s), std::sync::Arc::new(ManualClock::new(T0))).unwrap_err();
    assert!(err.to_string().contains("trust"), "{err}");
}

#[test]
fn a_second_kernel_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let _k = open(dir.path(), &clock);
    let s = helm_kernel::signer::KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1");
    let err =
        helm_kernel::Kernel::open(config(dir.path()), std::sync::Arc::new(s), std::sync::Arc::new(clock)).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("lock"), "{err}");
}

/// The chain of `common::chain()` plus a ROTATE of kernel-1 to kernel-2.
fn chain_with_rotation(cutoff: Option<Hash>) -> Vec<u8> {
    let base = chain();
    let last = helm_kernel::trust::split_records(&base).unwrap().pop().unwrap();
    let mut b = verify_core::RecordBuilder::new(
        Kind::TrustEvent,
        verify_core::body::trust_event(
            verify_core::TrustAction::Rotate,
            &signer("kernel-1").public_key(),
            Some(&["kernel"]),
            Some(&signer("kernel-2").public_key()),
            cutoff.as_ref(),
        ),
    );
    b.parents = vec![verify_core::sha256(&last)];
    b.lamport = 4;
    b.time = T0;
    b.principal = "root-1".into();
    b.seq = 3;
    let mut out = base;
    out.extend_from_slice(&b.sign(&signer("root-1")));
    out
}

#[test]
fn key_rotation_needs_a_cutoff_after_the_old_keys_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let cp = {
        let k = open(dir.path(), &clock);
        k.evaluate(&call("read_file", json!({"path": "/workspace/x"}), "s"));
        k.checkpoint().unwrap().unwrap().1
    };
    let kernel2 = || {
        std::sync::Arc::new(helm_kernel::signer::KeyFileSigner::from_seed(
            &test_seed("kernel-2"),
            "test key kernel-2",
        ))
    };
    // Without a cut-off the rotation would make the store fail rule T4: refused.
    let mut c = config(dir.path());
    c.trust_chain = chain_with_rotation(None);
    let err = helm_kernel::Kernel::open(c, kernel2(), std::sync::Arc::new(clock.clone())).unwrap_err();
    assert!(err.to_string().contains("cut-off"), "{err}");
    // With the last CHECKPOINT as cut-off the new key takes over.
    let mut c = config(dir.path());
    c.trust_chain = chain_with_rotation(Some(h(&cp)));
    let (k, report) = helm_kernel::Kernel::open(c, kernel2(), std::sync::Arc::new(clock.clone())).unwrap();
    assert_eq!(report.trust_events_added, 1);
    assert_eq!(
        k.evaluate(&call("read_file", json!({"path": "/workspace/y"}), "s"))
            .status,
        Status::Allow
    );
    drop(k);
    verify(&records(dir.path()));
    // The old key can no longer start the kernel.
    let mut c = config(dir.path());
    c.trust_chain = chain_with_rotation(Some(h(&cp)));
    let old = std::sync::Arc::new(helm_kernel::signer::KeyFileSigner::from_seed(
        &test_seed("kernel-1"),
        "test key kernel-1",
    ));
    assert!(helm_kernel::Kernel::open(c, old, std::sync::Arc::new(clock)).is_err());
}

#[test]
fn call_ids_find_their_intent_across_restarts_until_the_effect() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut p = call("read_file", json!({"path": "/workspace/c"}), "s9");
    p.call_id = Some("call_abc123".into());
    let intent = {
        let k = open(dir.path(), &clock);
        let a = k.evaluate(&p);
        assert_eq!(k.intent_for_call("agent-7", "call_abc123"), a.intent);
        assert_eq!(
            k.intent_for_call("agent-8", "call_abc123"),
            None,
            "ids are per principal"
        );
        a.intent.unwrap()
    };
    let k = open(dir.path(), &clock);
    assert_eq!(
        k.intent_for_call("agent-7", "call_abc123").as_deref(),
        Some(intent.as_str())
    );
    // Outputs larger than a record are kept as blobs (up to 16 MiB).
    k.report_effect(&effect(&intent, &vec![b'x'; 300 << 10])).unwrap();
    assert_eq!(k.intent_for_call("agent-7", "call_abc123"), None);
    drop(k);
    let k = open(dir.path(), &clock);
    assert_eq!(k.intent_for_call("agent-7", "call_abc123"), None);
}

/// An approver's signature below quorum survives a restart (the approvals log): after
/// the restart it is counted, the same approver is a duplicate, and a second approver
/// reaches the quorum. An entry that no longer counts (a damaged or mis-bound
/// signature) is skipped, never admitted.
#[test]
fn approver_signatures_below_quorum_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let deploy = call("deploy", json!({"env": "prod"}), "s1");
    let (a1, a2) = (signer("approver-1"), signer("approver-2"));
    let id = {
        let k = open(dir.path(), &clock);
        let e = k.evaluate(&deploy);
        assert_eq!(e.status, Status::Pending);
        let id = h(&e.approval.unwrap().id);
        clock.advance(1500);
        let one = k
            .submit_approval(&id, a1.public_key(), a1.sign(&approval_challenge(&id)))
            .unwrap();
        assert_eq!((one.state.as_str(), one.approvers.len()), ("pending", 1));
        id
    };
    // A forged entry in the log (a signature over another challenge) is not counted.
    {
        let (log, _) = helm_kernel::store::Store::open(
            &dir.path().join("approvals"),
            helm_kernel::store::StoreOptions::default(),
        )
        .unwrap();
        let mut forged = id.to_vec();
        forged.extend_from_slice(&a2.public_key());
        forged.extend_from_slice(&a2.sign(&approval_challenge(&[7; 32])));
        let t = log.append(&[&forged]).unwrap();
        log.wait_durable(t).unwrap();
    }
    let (k, report) = Kernel::open(
        config(dir.path()),
        std::sync::Arc::new(helm_kernel::signer::KeyFileSigner::from_seed(
            &test_seed("kernel-1"),
            "test key kernel-1",
        )),
        std::sync::Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(report.approver_signatures_restored, 1);
    let view = k.approval(&id).unwrap();
    assert_eq!(view.approvers, vec![hex::encode(a1.public_key())]);
    let dup = k
        .submit_approval(&id, a1.public_key(), a1.sign(&approval_challenge(&id)))
        .unwrap_err();
    assert_eq!(dup.code, "APPROVAL_DUPLICATE");
    let two = k
        .submit_approval(&id, a2.public_key(), a2.sign(&approval_challenge(&id)))
        .unwrap();
    assert_eq!(two.state, "approved");
    assert_eq!(k.evaluate(&deploy).reason, "APPROVAL_GRANTED");
    drop(k);
    let records = records(dir.path());
    verify(&records);
    let approval = records
        .iter()
        .map(|r| Record::decode(r).unwrap())
        .find(|r| r.kind == Kind::Approval)
        .unwrap();
    let Body::Approval { approvals } = approval.body else {
        panic!("not an APPROVAL body");
    };
    assert_eq!(approvals.len(), 2);
}
