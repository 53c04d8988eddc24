//! Mutations of one record's payload, re-signed, so that the verifier's rules behind
//! the signature check (parents, Lamport clocks, time, sequence numbers, decisions,
//! approvals, effects, trust events, checkpoints) are explored. The verifier must never
//! panic and must keep its contract (`helm_fuzz::run_stream`).
//!
//! Input: byte 0 picks the record (modulo the chain's length); byte 1 picks the signer
//! (bits 0-2: 0-3 the record's own signer, 4 anchor, 5 kernel, 6 approver, 7 a key
//! nobody published) and bit 7 drops the records after the mutated one; the rest are
//! 4-byte mutation ops on the payload (see `helm_fuzz::apply_ops`).
#![no_main]

use helm_fuzz::{apply_ops, fixture, run_stream};
use libfuzzer_sys::fuzz_target;
use verify_core::{protected_header, sign_payload, Capacity};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&[sel, who], ops)) = data.split_first_chunk::<2>() else {
        return;
    };
    let i = usize::from(sel) % f.chain.len();
    let own = f.signer(f.chain_signers[i]);
    let signer = match who & 7 {
        0..=3 => own,
        4 => &f.signers[0],
        5 => &f.signers[1],
        6 => &f.signers[2],
        _ => &f.signers[4],
    };
    let mut payload = f.chain_payloads[i].clone();
    apply_ops(&mut payload, ops);
    let record = sign_payload(signer, &protected_header(&signer.public_key()), &payload);

    let end = if who & 0x80 != 0 { i + 1 } else { f.chain.len() };
    let mut stream: Vec<&[u8]> = f.chain[..end].iter().map(Vec::as_slice).collect();
    stream[i] = &record;
    let result = run_stream(&[f.anchor], Capacity::for_records(64), &stream);

    if record == f.chain[i] {
        assert!(
            result.is_ok(),
            "re-signing the original payload must give a valid stream: {result:?}"
        );
    }
});
