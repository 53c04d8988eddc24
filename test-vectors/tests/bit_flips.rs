//! A single changed bit anywhere in a valid record is rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test"
)]

use helm_test_vectors::{load_record_vectors, vectors_dir, Expectation};
use verify_core::{Capacity, OwnedTables, Verifier};

#[test]
fn every_single_bit_flip_in_every_record_is_rejected() {
    let vectors = load_record_vectors(&vectors_dir()).unwrap();
    // Valid vectors that together contain every record kind.
    let chosen = [
        "valid/allow-then-effect",
        "valid/escalate-approve-effect",
        "valid/attestation-and-extension",
        "valid/revocation-at-checkpoint",
        "valid/violation-reported",
    ];
    let mut kinds = std::collections::BTreeSet::new();
    let mut tables = OwnedTables::new(Capacity::for_records(64));
    let mut flips = 0u64;
    let mut seen = std::collections::HashSet::new();
    for id in chosen {
        let v = vectors
            .iter()
            .find(|v| v.id == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert!(matches!(v.expect, Expectation::Accept { .. }));
        let anchors: Vec<[u8; 32]> = v
            .anchors
            .iter()
            .map(|a| hex::decode(a).unwrap().try_into().unwrap())
            .collect();
        let records: Vec<Vec<u8>> = v.records.iter().map(|r| hex::decode(r).unwrap()).collect();
        for r in &records {
            kinds.insert(verify_core::Record::decode(r).unwrap().kind as u8);
        }
        for (i, record) in records.iter().enumerate() {
            // Records shared between vectors (the trust events) are flipped once.
            if !seen.insert(record.clone()) {
                continue;
            }
            for bit in 0..record.len() * 8 {
                let mut bad = record.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let mut verifier = Verifier::new(&anchors, tables.tables()).unwrap();
                for earlier in &records[..i] {
                    verifier.push(earlier).unwrap();
                }
                let err = verifier.push(&bad).expect_err("a flipped bit verified");
                assert_eq!(err.index, i as u64, "{id} record {i} bit {bit}: {err}");
                flips += 1;
            }
        }
    }
    assert_eq!(kinds.len(), 9, "chosen vectors cover every record kind: {kinds:?}");
    eprintln!("{flips} single-bit flips, all rejected");
}
