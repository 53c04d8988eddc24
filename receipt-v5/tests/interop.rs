//! The Go implementation's interop vectors (test-vectors/interop/helm-ai-kernel/):
//! 3 positive receipts, 4 negative mutations, 7 canonical-JSON outputs, 6 refused numbers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use common::*;
use receipt_v5::{
    canonicalize, canonicalize_with, signing_payload, verify, ErrorClass, Member, MemberValue, TrustedKey,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[test]
fn trusted_key_is_the_one_the_vectors_name() {
    let index = receipt_index();
    assert_eq!(index["public_key"], TRUSTED_KEY);
    assert_eq!(index["signature_version"], "receipt.v5");
    assert_eq!(index["canonicalization"]["profile"], "interoperable_subset");
    assert_eq!(
        index["canonicalization"]["max_safe_integer"],
        receipt_v5::MAX_SAFE_INTEGER
    );
    // "test key from the seed 0x2a repeated 32 times"
    let signer = verify_core::Signer::from_seed(&TEST_SEED);
    assert_eq!(key().as_bytes(), &signer.public_key());
    assert_eq!(key().to_string(), TRUSTED_KEY);
}

#[test]
fn three_positive_receipts_verify() {
    let positives = positives();
    assert_eq!(positives.len(), 3);
    for p in &positives {
        let r = verify(&p.receipt, &key()).unwrap_or_else(|e| panic!("{}: {e}", p.id));
        assert_eq!(hex::encode(r.signature()), p.signature, "{}", p.id);
        assert_eq!(r.key(), key().as_bytes());

        // The signing payload: exactly the published bytes, by every route.
        let mut out = vec![0u8; p.receipt.len()];
        let n = signing_payload(&p.receipt, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out[..n]),
            String::from_utf8_lossy(&p.payload),
            "{}",
            p.id
        );
        assert_eq!(r.signing_payload_len(), p.payload.len());
        let mut hasher = Sha256::new();
        r.signing_payload_with(|chunk| hasher.update(chunk));
        assert_eq!(hasher.finalize().as_slice(), Sha256::digest(&p.payload).as_slice());
        // The payload is the canonical form of itself.
        let mut again = vec![0u8; p.payload.len()];
        assert_eq!(canonicalize(&p.payload, &mut again).unwrap(), p.payload.len());
        assert_eq!(again, p.payload);

        // The signed members, decoded, are the payload's (serde_json as the reference).
        let payload: Value = serde_json::from_slice(&p.payload).unwrap();
        let object = payload.as_object().unwrap();
        assert_eq!(object.len(), 13);
        for (m, v) in r.members() {
            match v {
                MemberValue::String(s) => assert_eq!(s.to_string(), object[m.name()].as_str().unwrap()),
                MemberValue::Integer(n) => assert_eq!(Some(n), object[m.name()].as_u64()),
            }
        }
        assert_eq!(r.signature_version(), "receipt.v5");

        // Unsigned members are reported as such, signed ones never.
        let unsigned: Vec<String> = r.unsigned_members().map(|(k, _)| k.to_string()).collect();
        for name in [
            "signature",
            "signature_algorithm",
            "signature_profile",
            "timestamp",
            "key_id",
        ] {
            assert!(unsigned.iter().any(|k| k == name), "{}: {name}", p.id);
        }
        assert!(Member::ALL.iter().all(|m| !unsigned.iter().any(|k| k == m.name())));
        assert!(r.unsigned_member("verdict").is_none());

        // The repository file, with its trailing LF, is the same JSON text.
        let with_lf = read(&format!("receipt-v5/{}.receipt.c14n.json", p.id));
        verify(&with_lf, &key()).unwrap();
    }
}

#[test]
fn positive_members_read_back() {
    let p = positives()
        .into_iter()
        .find(|p| p.id == "escaped_string_members")
        .unwrap();
    let r = verify(&p.receipt, &key()).unwrap();
    assert_eq!(
        r.session_id().to_string(),
        "sess-\"quote\\solidus\ttab\u{2028}ls\u{2029}ps\u{1F510}lock"
    );
    assert_eq!(r.lamport_clock(), 2);
    assert_eq!(r.verdict(), "ALLOW");
    let p = positives()
        .into_iter()
        .find(|p| p.id == "executor_success_empty_governance")
        .unwrap();
    let r = verify(&p.receipt, &key()).unwrap();
    assert_eq!(r.lamport_clock(), 9_007_199_254_740_991);
    assert!(r.verdict().is_empty() && r.policy_hash().is_empty() && r.args_hash().is_empty());
}

/// The four negative mutations of vectors.json, applied to the receipt text.
#[test]
fn four_negative_mutations_are_refused_with_their_class() {
    let index = receipt_index();
    let max = index["canonicalization"]["max_safe_integer"].as_u64().unwrap();
    let positives = positives();
    let negatives = index["negative_vectors"].as_array().unwrap();
    assert_eq!(negatives.len(), 4);
    for n in negatives {
        let id = n["id"].as_str().unwrap();
        let p = positives
            .iter()
            .find(|p| p.id == n["vector_id"].as_str().unwrap())
            .unwrap();
        let v: Value = serde_json::from_slice(&p.receipt).unwrap();
        let mutated = match n["mutation"].as_str().unwrap() {
            "set_verdict_to_ALLOW" => {
                let old = format!("\"verdict\":\"{}\"", v["verdict"].as_str().unwrap());
                assert_ne!(old, "\"verdict\":\"ALLOW\"");
                replace_once(&p.receipt, &old, "\"verdict\":\"ALLOW\"")
            }
            "flip_signature_last_bit" => {
                // As the reference verifier does: the last byte of the signature, xor 1.
                let mut sig = hex::decode(&p.signature).unwrap();
                *sig.last_mut().unwrap() ^= 1;
                replace_once(&p.receipt, &p.signature, &hex::encode(sig))
            }
            "set_lamport_clock_above_max_safe_integer" => {
                let old = format!("\"lamport_clock\":{}", v["lamport_clock"]);
                replace_once(&p.receipt, &old, &format!("\"lamport_clock\":{}", max + 1))
            }
            "remove_empty_policy_hash" => {
                assert_eq!(v["policy_hash"], "");
                replace_once(&p.receipt, "\"policy_hash\":\"\",", "")
            }
            other => panic!("{id}: unknown mutation {other}"),
        };
        let err = verify(&mutated, &key()).map(|_| ()).unwrap_err();
        let want = ErrorClass::from_name(n["expected_error"].as_str().unwrap()).unwrap();
        assert_eq!(err.class(), want, "{id}: {err}");
        assert_eq!(err.class().name(), n["expected_error"], "{id}");
        // The refusal does not depend on the key: the wrong key gives the same class for
        // every class decided before the signature.
        if want != ErrorClass::SignatureRejected {
            let other = TrustedKey::from_bytes(&verify_core::Signer::from_seed(&[7; 32]).public_key()).unwrap();
            assert_eq!(verify(&mutated, &other).map(|_| ()).unwrap_err(), err);
        }
    }
}

#[test]
fn canonical_json_vectors() {
    let index = json("canonical-json-v1/vectors.json");
    assert_eq!(index["schema_version"], "helm.canonical-json/v1");
    let vectors = index["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 13);
    let (mut exact, mut refused) = (0, 0);
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let input = v["input"].as_str().unwrap().as_bytes();
        let canonical = v["canonical"].as_str().unwrap().as_bytes();
        assert_eq!(sha256_hex(canonical), v["sha256"].as_str().unwrap(), "{id}: data file");
        let mut out = vec![0u8; 4096];
        let result = canonicalize(input, &mut out);
        if v["interoperable"].as_bool().unwrap() {
            let n = result.unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&out[..n]),
                String::from_utf8_lossy(canonical),
                "{id}"
            );
            assert_eq!(sha256_hex(&out[..n]), v["sha256"].as_str().unwrap(), "{id}");
            // Streaming gives the same bytes; canonical output is a fixed point.
            let mut streamed = Vec::new();
            canonicalize_with(input, |b| streamed.extend_from_slice(b)).unwrap();
            assert_eq!(streamed, &out[..n], "{id}");
            let mut twice = vec![0u8; n];
            assert_eq!(canonicalize(canonical, &mut twice).unwrap(), n);
            assert_eq!(twice, canonical, "{id}");
            exact += 1;
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.class(), ErrorClass::NonInteroperableNumber, "{id}: {err}");
            assert_eq!(err.class().name(), "non_interoperable_number");
            // Neither HELM's literal-preserving form nor strict RFC 8785's re-rendering
            // comes out: nothing is written at all.
            let mut wrote = false;
            assert!(canonicalize_with(input, |_| wrote = true).is_err());
            assert!(!wrote, "{id}");
            assert!(v["rfc8785_canonical"].is_string(), "{id}");
            refused += 1;
        }
    }
    assert_eq!((exact, refused), (7, 6));
}

/// A receipt whose signed members are spelled with other (valid) JSON escapes, in another
/// member order and with whitespace, is the same receipt: it verifies with the original
/// signature, and the payload is rebuilt canonically.
#[test]
fn other_spellings_of_a_positive_receipt_verify() {
    let p = positives()
        .into_iter()
        .find(|p| p.id == "escaped_string_members")
        .unwrap();
    // \u2028 \u2029 and the lock as a surrogate pair, 's' as \u0073, '-' as \u002d.
    let respelled = replace_once(
        &p.receipt,
        "\"session_id\":\"sess-",
        "\"session_id\":\"\\u0073ess\\u002d",
    );
    let respelled = String::from_utf8(respelled)
        .unwrap()
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .replace('\u{1F510}', "\\ud83d\\udd10")
        .replace("\"verdict\":\"ALLOW\"", "\"verd\\u0069ct\":\"\\u0041LLOW\"");
    let r = verify(respelled.as_bytes(), &key()).unwrap();
    assert_eq!(r.verdict(), "ALLOW");
    assert_eq!(r.verdict().raw(), "\\u0041LLOW");
    let mut out = vec![0u8; respelled.len()];
    let n = signing_payload(respelled.as_bytes(), &mut out).unwrap();
    assert_eq!(&out[..n], p.payload.as_slice());

    // Pretty-printed, members in another order (serde_json sorts by code point and
    // escapes nothing RFC 8785 keeps literal).
    let v: Value = serde_json::from_slice(&p.receipt).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert!(pretty.contains('\n'));
    verify(pretty.as_bytes(), &key()).unwrap();
}
