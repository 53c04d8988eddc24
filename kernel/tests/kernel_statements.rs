//! ATTESTATION and VIOLATION records appended on a caller's behalf (the MCP
//! interceptor's tool pins and refusals): registered subtypes and codes only, claims
//! must be a deterministic CBOR map, blobs kept, records verify as one stream and
//! attestations are found again after a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use common::*;
use helm_kernel::clock::ManualClock;
use helm_kernel::AttestationReport;
use verify_core::{sha256, Body, CborWriter, Kind, Record};

fn pin(def: &[u8], tool: &str) -> AttestationReport {
    let mut w = CborWriter::new();
    w.map(2).text("tool").text(tool).text("server").text("fs");
    AttestationReport {
        subtype: "tool-pin".into(),
        subject: sha256(def),
        claims: Some(w.into_bytes()),
        principal: "kernel".into(),
        session: String::new(),
        blobs: vec![def.to_vec()],
    }
}

#[test]
fn attestations_and_violations_are_recorded_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = open(dir.path(), &clock);
    let def = br#"{"name":"read_file"}"#;
    let a = k.attest(&pin(def, "read_file")).unwrap();
    assert_eq!(a.len(), 64);
    // Unregistered subtype, malformed claims: refused, nothing recorded.
    let before = k.metrics().records;
    let mut bad = pin(def, "x");
    bad.subtype = "my-type".into();
    assert_eq!(k.attest(&bad).unwrap_err().code, "INVALID_ATTESTATION");
    let mut bad = pin(def, "x");
    bad.claims = Some(vec![0x01]);
    assert_eq!(k.attest(&bad).unwrap_err().code, "INVALID_STATEMENT");
    assert_eq!(
        k.record_violation("POLICY_DENY", None, None, "agent-7", "s")
            .unwrap_err()
            .code,
        "INVALID_VIOLATION"
    );
    assert_eq!(k.metrics().records, before);

    let long = "é".repeat(700);
    let v = k
        .record_violation(
            "TOOL_DEFINITION_CHANGED",
            Some(&sha256(b"new")),
            Some(&long),
            "agent-7",
            "s1",
        )
        .unwrap();
    assert_eq!(v.len(), 64);
    drop(k);

    // After a restart the pin is found again, the blob is kept, and the store verifies.
    let k = open(dir.path(), &clock);
    let pins = k.attestations("tool-pin").unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(hex::encode(pins[0].record), a);
    assert_eq!(pins[0].subject, sha256(def));
    assert!(k.attestations("sandbox-module").unwrap().is_empty());
    let records = records(dir.path());
    verify(&records);
    let mut kinds = Vec::new();
    for bytes in &records {
        let r = Record::decode(bytes).unwrap();
        if let Body::Violation { detail, .. } = r.body {
            assert!(detail.unwrap().len() <= 1024);
        }
        kinds.push(r.kind);
    }
    assert!(kinds.contains(&Kind::Attestation) && kinds.contains(&Kind::Violation));
    let mut found = false;
    helm_kernel::store::read_records(&dir.path().join("blobs"), |_, f| {
        found |= &f[32..] == def && f[..32] == sha256(def);
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    assert!(found, "the pinned definition is kept as a blob");
}
