//! Partial packs (spec/evidencepack.md §9): one session or a time range, each record
//! proven against a CHECKPOINT by an RFC 9162 inclusion proof.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

use std::collections::BTreeSet;

use helm_test_vectors::{sample_run, Run};
use pack_format::{
    plan_partial, record_len, verify_reader, write_partial_pack, write_partial_plan, NoObserver, PartialPlan,
    StreamError, VerifyOptions, WriteError,
};
use verify_core::{Kind, Record, Selection};

fn verify(bytes: &[u8], anchors: &[[u8; 32]]) -> Result<pack_format::PackSummary, String> {
    match verify_reader(bytes, anchors, &VerifyOptions::default(), &mut NoObserver) {
        Ok((_, s)) => Ok(s),
        Err(StreamError::Pack(e)) => Err(e.code_name().to_string()),
        Err(e) => Err(format!("{e}")),
    }
}

fn session(s: &str) -> Selection<'_> {
    Selection {
        session: Some(s),
        ..Selection::default()
    }
}

fn partial(run: &Run, sel: &Selection<'_>) -> pack_format::PartialPack {
    write_partial_pack(
        &run.records,
        |h| run.blobs.get(h).cloned(),
        sel,
        &BTreeSet::new(),
        run.kernel.public_key(),
        |m| run.kernel.sign(m),
    )
    .unwrap()
}

fn write_plan(run: &Run, plan: &PartialPlan, sel: &Selection<'_>) -> Vec<u8> {
    write_partial_plan(
        &run.records,
        plan,
        sel,
        |h| run.blobs.get(h).cloned(),
        &BTreeSet::new(),
        run.kernel.public_key(),
        |m| run.kernel.sign(m),
    )
    .unwrap()
    .0
}

fn run() -> Run {
    sample_run(4, 7, 9)
}

#[test]
fn a_session_verifies_on_its_own() {
    let run = run();
    let p = partial(&run, &session("session-000002"));
    let s = verify(&p.bytes, &run.anchors).unwrap();
    let m = s.manifest.partial.unwrap();
    assert_eq!(m.tree_size as usize, run.records.len() - 1);
    assert_eq!(m.session(), Some("session-000002"));
    assert_eq!(s.verified.records as usize, p.plan.carried.len());
    assert_eq!(s.verified.head, p.checkpoint);
    assert!(p.plan.selected > 0 && p.plan.carried.len() < run.records.len());
    for chunk in [1usize, 7, 513] {
        let opts = VerifyOptions {
            chunk,
            ..VerifyOptions::default()
        };
        assert!(
            verify_reader(&p.bytes[..], &run.anchors, &opts, &mut NoObserver).is_ok(),
            "chunk {chunk}"
        );
    }
    // Deterministic.
    assert_eq!(partial(&run, &session("session-000002")).bytes, p.bytes);
}

#[test]
fn every_session_and_time_ranges_verify() {
    let run = run();
    for s in 0..4 {
        let name = format!("session-{s:06}");
        let p = partial(&run, &session(&name));
        verify(&p.bytes, &run.anchors).unwrap();
    }
    let times: Vec<u64> = run.records.iter().map(|r| Record::decode(r).unwrap().time).collect();
    let (lo, hi) = (times[0], *times.iter().max().unwrap());
    for (since, until) in [(lo, hi), (lo + (hi - lo) / 3, lo + (hi - lo) / 2), (hi - 1, hi)] {
        let sel = Selection {
            since: Some(since),
            until: Some(until),
            ..Selection::default()
        };
        let p = partial(&run, &sel);
        verify(&p.bytes, &run.anchors).unwrap_or_else(|e| panic!("{since}..{until}: {e}"));
    }
    // The kernel scope (session ""): CHECKPOINTs below the tree size with their
    // consistency proofs.
    let p = partial(&run, &session(""));
    let s = verify(&p.bytes, &run.anchors).unwrap();
    assert!(s.verified.checkpoints > 1);
}

#[test]
fn the_writer_refuses_what_it_cannot_prove() {
    let run = run();
    assert_eq!(
        plan_partial(&run.records, &Selection::default()),
        Err(WriteError::EmptySelection)
    );
    assert_eq!(
        plan_partial(&run.records, &session("no-such-session")),
        Err(WriteError::NothingSelected)
    );
    // A record after the last checkpoint.
    let mut records = run.records.clone();
    records.pop();
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let last_checkpoint = decoded.iter().rposition(|r| r.kind == Kind::Checkpoint).unwrap();
    let first_uncovered = (last_checkpoint..records.len())
        .find(|&i| decoded[i].session == "session-000003")
        .unwrap();
    let err = plan_partial(&records, &session("session-000003")).unwrap_err();
    assert_eq!(err, WriteError::NotCovered(first_uncovered));
    assert!(err.to_string().contains("no checkpoint covers record"));
}

/// The pack's units: (record, item) pairs of its only segment.
fn units(pack: &[u8]) -> (usize, Vec<(usize, usize, usize)>) {
    let e = helm_test_vectors::packs::entries(pack);
    let seg = e.iter().position(|(n, _)| n.starts_with("records/")).unwrap();
    let data = &e[seg].1;
    // Offset of the segment's data in the pack.
    let mut at = 0;
    for (_, d) in &e[..seg] {
        at += 512 + d.len().div_ceil(512) * 512;
    }
    at += 512;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let r = record_len(&data[pos..]).unwrap().unwrap();
        let mut d = verify_core::cbor::Reader::new(&data[pos + r..]);
        d.any(4).unwrap();
        out.push((at + pos, r, d.position()));
        pos += r + d.position();
    }
    (at, out)
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let run = sample_run(2, 2, 100);
    let p = partial(&run, &session("session-000001"));
    for bit in 0..p.bytes.len() * 8 {
        let mut bad = p.bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            verify(&bad, &run.anchors).is_err(),
            "flipping bit {bit} (byte {}) verified",
            bit / 8
        );
    }
}

#[test]
fn tampered_proofs_positions_and_selections_have_their_errors() {
    let run = run();
    let sel = session("session-000001");
    let p = partial(&run, &sel);
    let (_, u) = units(&p.bytes);
    // A flipped byte in an inclusion path: the proof leads to another root.
    let (at, r, _) = u[3];
    let mut bad = p.bytes.clone();
    bad[at + r + 5] ^= 0x10;
    assert_eq!(verify(&bad, &run.anchors).unwrap_err(), "PACK_PROOF_MISMATCH");

    let plan = plan_partial(&run.records, &sel).unwrap();
    // The same record carried twice.
    let mut dup = plan.clone();
    dup.carried.insert(5, dup.carried[5]);
    assert_eq!(
        verify(&write_plan(&run, &dup, &sel), &run.anchors).unwrap_err(),
        "PACK_PROOF_ORDER"
    );
    // Two records swapped: in the session's strict streams the first one out of place
    // already skips a sequence number...
    let mut swapped = plan.clone();
    swapped.carried.swap(6, 7);
    assert_eq!(
        verify(&write_plan(&run, &swapped, &sel), &run.anchors).unwrap_err(),
        "SEQUENCE_GAP"
    );
    // ... while in a time range an INTENT moved before the EFFECT that preceded it
    // passes its own checks, and the EFFECT's position comes out of order.
    let times: Vec<u64> = run.records.iter().map(|r| Record::decode(r).unwrap().time).collect();
    let range = Selection {
        since: Some(times[30]),
        until: Some(times[60]),
        ..Selection::default()
    };
    let mut moved = plan_partial(&run.records, &range).unwrap();
    let k = (1..moved.carried.len())
        .find(|&k| {
            let kind = |i: usize| Record::decode(&run.records[moved.carried[i]]).unwrap().kind;
            kind(k) == Kind::Intent && kind(k - 1) == Kind::Effect
        })
        .unwrap();
    moved.carried.swap(k - 1, k);
    assert_eq!(
        verify(&write_plan(&run, &moved, &range), &run.anchors).unwrap_err(),
        "PACK_PROOF_ORDER"
    );
    // A TRUST_EVENT left out (the second of the root key's): its successor skips a number.
    let te: Vec<usize> = plan
        .carried
        .iter()
        .copied()
        .filter(|&i| Record::decode(&run.records[i]).unwrap().kind == Kind::TrustEvent)
        .collect();
    let mut no_te = plan.clone();
    no_te.carried.retain(|&i| i != te[1]);
    assert_eq!(
        verify(&write_plan(&run, &no_te, &sel), &run.anchors).unwrap_err(),
        "SEQUENCE_GAP"
    );
    // An EFFECT's permit left out.
    let effect = plan
        .carried
        .iter()
        .copied()
        .find(|&i| Record::decode(&run.records[i]).unwrap().kind == Kind::Effect)
        .unwrap();
    let permit = Record::decode(&run.records[effect])
        .unwrap()
        .parents
        .iter()
        .next()
        .unwrap();
    let mut no_permit = plan.clone();
    no_permit
        .carried
        .retain(|&i| verify_core::sha256(&run.records[i]) != permit);
    assert_eq!(
        verify(&write_plan(&run, &no_permit, &sel), &run.anchors).unwrap_err(),
        "PARENT_MISSING"
    );
    // A record of another session that nothing needs.
    let other = (0..plan.checkpoint)
        .find(|&i| {
            let r = Record::decode(&run.records[i]).unwrap();
            r.session == "session-000003" && r.kind == Kind::Intent
        })
        .unwrap();
    let mut extra = plan.clone();
    extra.carried.push(other);
    extra.carried.sort_unstable();
    assert_eq!(
        verify(&write_plan(&run, &extra, &sel), &run.anchors).unwrap_err(),
        "PACK_RECORD_UNSELECTED"
    );
    // No checkpoint at the end.
    let mut headless = plan.clone();
    headless.carried.pop();
    assert_eq!(
        verify(&write_plan(&run, &headless, &sel), &run.anchors).unwrap_err(),
        "PACK_CHECKPOINT_INVALID"
    );
    // A tree whose last position is not a CHECKPOINT.
    let mut wrong = plan.clone();
    let t = *wrong.carried.iter().rev().nth(1).unwrap();
    wrong.carried.pop();
    wrong.checkpoint = t;
    assert_eq!(
        verify(&write_plan(&run, &wrong, &sel), &run.anchors).unwrap_err(),
        "PACK_CHECKPOINT_INVALID"
    );
}

#[test]
fn large_partial_packs_verify_the_same_on_one_and_two_threads() {
    // More than PARALLEL_MIN_RECORDS carried records: signatures are checked by workers,
    // whose pre-framer skips the proof items.
    let run = sample_run(60, 10, 500);
    let times: Vec<u64> = run.records.iter().map(|r| Record::decode(r).unwrap().time).collect();
    let sel = Selection {
        since: Some(times[100]),
        until: Some(times[times.len() - 2]),
        ..Selection::default()
    };
    let p = partial(&run, &sel);
    assert!(p.plan.carried.len() > 1024);
    let opts = |threads| VerifyOptions {
        threads,
        ..VerifyOptions::default()
    };
    let one = verify_reader(&p.bytes[..], &run.anchors, &opts(1), &mut NoObserver)
        .unwrap()
        .1;
    let two = verify_reader(&p.bytes[..], &run.anchors, &opts(2), &mut NoObserver)
        .unwrap()
        .1;
    assert_eq!(one, two);
    let (_, u) = units(&p.bytes);
    let (at, r, _) = u[700];
    let mut bad = p.bytes.clone();
    bad[at + r - 1] ^= 1; // the record's signature
    let code = |t| match verify_reader(&bad[..], &run.anchors, &opts(t), &mut NoObserver) {
        Err(StreamError::Pack(e)) => (e.code_name(), e.record.map(|r| r.index)),
        _ => panic!("accepted"),
    };
    assert_eq!(code(1), code(2));
    assert_eq!(code(2), ("PACK_PROOF_MISMATCH", None));
}
