//! Every single-bit flip in a positive receipt's signed members (name, colon and value) or
//! in its signature is refused; flips elsewhere are either refused or leave the signed
//! members exactly as they were.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use receipt_v5::{verify, ErrorClass, Member};

#[test]
fn a_flipped_bit_in_a_signed_member_or_the_signature_is_refused() {
    let key = key();
    let mut total = 0usize;
    let mut classes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for p in positives() {
        let mut ranges: Vec<(String, core::ops::Range<usize>)> = Member::ALL
            .iter()
            .map(|m| (m.name().to_string(), member_range(&p.receipt, m.name())))
            .collect();
        ranges.push(("signature".into(), member_range(&p.receipt, "signature")));
        for (name, range) in ranges {
            for i in range {
                for bit in 0..8 {
                    let mut mutated = p.receipt.clone();
                    mutated[i] ^= 1 << bit;
                    match verify(&mutated, &key) {
                        Ok(_) => panic!(
                            "{}: flipping bit {bit} of byte {i} ({name}) still verifies:\n{}",
                            p.id,
                            String::from_utf8_lossy(&mutated)
                        ),
                        Err(e) => *classes.entry(e.class().name()).or_default() += 1,
                    }
                    total += 1;
                }
            }
        }
    }
    assert!(total > 10_000, "{total}");
    // All of them were reached, except resource limits.
    for class in ErrorClass::ALL {
        if class != ErrorClass::ResourceLimit {
            assert!(classes.contains_key(class.name()), "{class}: {classes:?}");
        }
    }
}

/// Flips anywhere else (unsigned members, punctuation): whatever still verifies has the
/// same signed members and signature as the original.
#[test]
fn a_flipped_bit_elsewhere_never_changes_what_is_signed() {
    let key = key();
    for p in positives() {
        let original = verify(&p.receipt, &key).unwrap();
        let members: Vec<String> = original.members().map(|(_, v)| v.to_string()).collect();
        let mut accepted = 0;
        for i in 0..p.receipt.len() {
            for bit in 0..8 {
                let mut mutated = p.receipt.clone();
                mutated[i] ^= 1 << bit;
                if let Ok(r) = verify(&mutated, &key) {
                    let now: Vec<String> = r.members().map(|(_, v)| v.to_string()).collect();
                    assert_eq!(now, members, "{}: byte {i} bit {bit}", p.id);
                    assert_eq!(r.signature(), original.signature());
                    accepted += 1;
                }
            }
        }
        // Unsigned members exist and are not protected.
        assert!(accepted > 0, "{}", p.id);
    }
}
