//! The C2SP CCTV Ed25519 edge-case vectors (spec/ed25519.md, "Edge-case vectors").
//!
//! Rule: accept exactly the vectors flagged with none of `low_order_A`, `low_order_R`,
//! `non_canonical_A`, `non_canonical_R`, `low_order_residue` (43 accept, 871 reject).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test"
)]

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../test-vectors/ed25519/cctv-ed25519vectors.json"
);

/// Flags whose presence means the pinned semantics reject the vector.
const REJECT_FLAGS: [&str; 5] = [
    "low_order_A",
    "low_order_R",
    "non_canonical_A",
    "non_canonical_R",
    "low_order_residue",
];

#[test]
fn cctv_ed25519_vectors() {
    let text = std::fs::read_to_string(VECTORS).expect("read the CCTV vectors");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("parse the CCTV vectors");
    assert_eq!(cases.len(), 914, "number of CCTV vectors");

    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let number = case["number"].as_u64().expect("number");
        assert_eq!(number, i as u64, "vectors are numbered in order");
        let key: [u8; 32] = hex::decode(case["key"].as_str().expect("key"))
            .unwrap()
            .try_into()
            .unwrap();
        let sig: [u8; 64] = hex::decode(case["sig"].as_str().expect("sig"))
            .unwrap()
            .try_into()
            .unwrap();
        let msg = case["msg"].as_str().expect("msg");
        // `flags` is a list of strings, or null for the one plain vector.
        let flags: Vec<&str> = match &case["flags"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a.iter().map(|f| f.as_str().expect("flag")).collect(),
            other => panic!("case {number}: unexpected flags {other}"),
        };

        let expected = !flags.iter().any(|f| REJECT_FLAGS.contains(f));
        let got = verify_core::verify_signature(&key, msg.as_bytes(), &sig);
        if got {
            accepted += 1;
        } else {
            rejected += 1;
        }
        if got != expected {
            println!(
                "case {number}: expected {}, got {}; flags {flags:?}",
                if expected { "accept" } else { "reject" },
                if got { "accept" } else { "reject" },
            );
            mismatches.push(number);
        }
    }

    assert!(
        mismatches.is_empty(),
        "{} verdicts disagree with the flag rule: cases {mismatches:?}",
        mismatches.len()
    );
    assert_eq!((accepted, rejected), (43, 871), "(accepted, rejected)");
}
