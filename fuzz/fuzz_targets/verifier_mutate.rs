//! Byte mutations of one record of a valid, signed stream. The verifier must never
//! panic, and a stream in which any record's bytes differ from the original must be
//! rejected: every byte of a record is either signed (protected header and payload,
//! whose lengths the Sig_structure also fixes), fixed by the strict COSE/CBOR framing
//! (tag 18, array(4), empty unprotected map, shortest-form heads), or the signature
//! itself (strictly verified: canonical R of non-small order, S < L). A mutated record
//! that verifies would be an Ed25519 forgery or a decoder that admits a second form.
//!
//! Input: byte 0 picks the record (modulo the chain's length); the rest are 4-byte
//! mutation ops (see `helm_fuzz::apply_ops`: xor, insert, delete at a position).
#![no_main]

use helm_fuzz::{apply_ops, fixture, run_stream};
use libfuzzer_sys::fuzz_target;
use verify_core::Capacity;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&sel, ops)) = data.split_first() else { return };
    let i = usize::from(sel) % f.chain.len();
    let mut mutated = f.chain[i].clone();
    apply_ops(&mut mutated, ops);

    let mut stream: Vec<&[u8]> = f.chain.iter().map(Vec::as_slice).collect();
    stream[i] = &mutated;
    let result = run_stream(&[f.anchor], Capacity::for_records(64), &stream);

    if mutated == f.chain[i] {
        assert!(result.is_ok(), "the unmodified chain must verify: {result:?}");
        return;
    }
    match result {
        Ok(_) => panic!(
            "SECURITY: a mutated record verified.\n record #{i}\n original {}\n mutated  {}",
            hex(&f.chain[i]),
            hex(&mutated)
        ),
        // Records before #i are unchanged, so they pass again; unless the mutation
        // turned #i into a copy of another valid record, #i itself must be refused.
        Err(e) if !f.chain.contains(&mutated) => assert_eq!(
            e.index,
            i as u64,
            "mutated record #{i} passed and a later record failed ({e})\n mutated {}",
            hex(&mutated)
        ),
        Err(_) => {}
    }
});

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
