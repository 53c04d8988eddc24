//! receipt-v5: the strict JSON reader, the canonical writer and the receipt verifier.
//!
//! Input: byte 0 chooses the mode.
//! - `0x00..=0x7f`: one of the three interop receipts (byte 0 modulo 3) mutated by the
//!   remaining bytes as 4-byte ops (`helm_fuzz::apply_ops`: xor, insert, delete). Whatever
//!   still verifies must carry exactly the original's signed payload and signature: an
//!   accepted change of a signed member or of the signature would be a forgery, a
//!   malleable signature, or a reader that admits two meanings for one text.
//! - `0x80..=0xff`: the remaining bytes as a JSON text, through the verifier and the
//!   canonical writer.
//!
//! Always: no panic; the entry points agree (`verify`, `verify_with_scratch`,
//! `UnverifiedReceipt`); a signing payload is canonical JSON no longer than the receipt;
//! canonical output is never longer than its input and is its own canonical form.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use receipt_v5::{
    canonicalize, canonicalize_with, verify, verify_with_scratch, ErrorClass, LimitError, ReceiptError, TrustedKey,
    UnverifiedReceipt,
};

const KEY: &str = "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";

const RECEIPTS: [&[u8]; 3] = [
    include_bytes!("../../test-vectors/interop/helm-ai-kernel/receipt-v5/decision_deny_genesis.receipt.c14n.json"),
    include_bytes!(
        "../../test-vectors/interop/helm-ai-kernel/receipt-v5/executor_success_empty_governance.receipt.c14n.json"
    ),
    include_bytes!("../../test-vectors/interop/helm-ai-kernel/receipt-v5/escaped_string_members.receipt.c14n.json"),
];

const PAYLOADS: [&[u8]; 3] = [
    include_bytes!("../../test-vectors/interop/helm-ai-kernel/receipt-v5/decision_deny_genesis.signing_payload.c14n.json"),
    include_bytes!(
        "../../test-vectors/interop/helm-ai-kernel/receipt-v5/executor_success_empty_governance.signing_payload.c14n.json"
    ),
    include_bytes!(
        "../../test-vectors/interop/helm-ai-kernel/receipt-v5/escaped_string_members.signing_payload.c14n.json"
    ),
];

fuzz_target!(|data: &[u8]| {
    let key: TrustedKey = KEY.parse().unwrap();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 0x80 {
        let i = usize::from(mode) % RECEIPTS.len();
        let mut mutated = RECEIPTS[i].to_vec();
        helm_fuzz::apply_ops(&mut mutated, rest);
        let original = original_signatures()[i];
        if let Some(payload) = check_receipt(&mutated, &key) {
            let expected = PAYLOADS[i].strip_suffix(b"\n").unwrap_or(PAYLOADS[i]);
            assert!(
                payload.0 == expected && payload.1 == original,
                "SECURITY: a receipt with other signed members or another signature verified\n original {}\n mutated  {}\n payload  {}",
                String::from_utf8_lossy(RECEIPTS[i]),
                String::from_utf8_lossy(&mutated),
                String::from_utf8_lossy(&payload.0)
            );
        }
    } else {
        if let Some((payload, _)) = check_receipt(rest, &key) {
            // Only the three signed payloads exist under this key.
            assert!(PAYLOADS
                .iter()
                .any(|p| p.strip_suffix(b"\n") == Some(payload.as_slice())));
        }
        check_canonical(rest);
    }
});

/// The signatures of the three interop receipts (which must verify).
fn original_signatures() -> &'static [[u8; 64]; 3] {
    static SIGS: OnceLock<[[u8; 64]; 3]> = OnceLock::new();
    SIGS.get_or_init(|| {
        let key: TrustedKey = KEY.parse().unwrap();
        RECEIPTS.map(|r| *verify(r, &key).expect("the interop receipt verifies").signature())
    })
}

/// Runs every verification entry point; returns the signing payload and signature of an
/// accepted receipt.
fn check_receipt(bytes: &[u8], key: &TrustedKey) -> Option<(Vec<u8>, [u8; 64])> {
    let inline = verify(bytes, key);
    let mut scratch = vec![0u8; bytes.len()];
    let with_scratch = verify_with_scratch(bytes, key, &mut scratch);
    let parsed = UnverifiedReceipt::parse(bytes);
    match (&inline, &with_scratch) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.signature(), b.signature());
            assert_eq!(a.signing_payload_len(), b.signing_payload_len());
        }
        // Only the inline scratch can be too small: json.len() bytes always suffice.
        (Err(ReceiptError::ResourceLimit(LimitError::BufferTooSmall { .. })), _) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("verify and verify_with_scratch disagree: {a:?} / {b:?}"),
    }
    if let Err(e) = &with_scratch {
        assert!(
            !matches!(e, ReceiptError::ResourceLimit(LimitError::BufferTooSmall { .. })),
            "a scratch of json.len() bytes was too small: {e:?}"
        );
        // Everything but the signature is decided by `parse`.
        match &parsed {
            Ok(_) => assert_eq!(e.class(), ErrorClass::SignatureRejected),
            Err(p) => assert_eq!(p, e),
        }
    }
    if let Ok(p) = &parsed {
        let n = p.signing_payload_len();
        assert!(n <= bytes.len(), "signing payload longer than the receipt");
        let mut out = vec![0u8; bytes.len()];
        assert_eq!(p.write_signing_payload(&mut out).unwrap(), n);
        out.truncate(n);
        let mut streamed = Vec::new();
        p.signing_payload_with(|b| streamed.extend_from_slice(b));
        assert_eq!(streamed, out);
        let mut again = vec![0u8; n];
        assert_eq!(
            canonicalize(&out, &mut again).map(|m| &again[..m]),
            Ok(out.as_slice()),
            "payload not canonical"
        );
    }
    let r = with_scratch.ok()?;
    let mut payload = vec![0u8; r.signing_payload_len()];
    r.write_signing_payload(&mut payload).unwrap();
    Some((payload, *r.signature()))
}

fn check_canonical(bytes: &[u8]) {
    // The canonical form is never longer than the input.
    let mut out = vec![0u8; bytes.len()];
    let result = canonicalize(bytes, &mut out);
    let mut streamed = Vec::new();
    let stream_result = canonicalize_with(bytes, |b| streamed.extend_from_slice(b));
    match result {
        Ok(n) => {
            assert_eq!(stream_result, Ok(()));
            assert_eq!(streamed, &out[..n]);
            let mut again = vec![0u8; n];
            assert_eq!(
                canonicalize(&out[..n], &mut again),
                Ok(n),
                "canonical output is not canonical input"
            );
            assert_eq!(again, &out[..n], "canonicalization is not idempotent");
        }
        Err(e) => {
            assert_eq!(stream_result, Err(e));
            assert!(streamed.is_empty(), "bytes written for a refused input");
            assert!(
                !matches!(e, ReceiptError::ResourceLimit(LimitError::BufferTooSmall { .. })),
                "canonical output longer than its input"
            );
        }
    }
}
