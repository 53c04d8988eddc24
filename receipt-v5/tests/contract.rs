//! The contract checks, their order, and the strictness of the reader, on receipts derived
//! from the interop vectors (re-signed with the interop test key where the signature must
//! stay valid).
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
    verify, verify_with_scratch, ContractError, ErrorClass, JsonErrorKind, JsonValue, KeyError, LimitError, Member,
    NumberErrorKind, ReceiptError, TrustedKey, TrustedKeyError, UnverifiedReceipt, INLINE_SCRATCH_LEN,
};
use serde_json::{json, Value};
use verify_core::Signer;

fn deny() -> Positive {
    positives()
        .into_iter()
        .find(|p| p.id == "decision_deny_genesis")
        .unwrap()
}

fn deny_value() -> Value {
    serde_json::from_slice(&deny().receipt).unwrap()
}

fn check(text: &[u8]) -> Result<(), ReceiptError> {
    verify(text, &key()).map(|_| ())
}

fn check_value(v: &Value) -> Result<(), ReceiptError> {
    check(serde_json::to_string(v).unwrap().as_bytes())
}

/// Serializes `v` and signs its signing payload with the interop test key.
fn signed(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    v["signature"] = json!("00".repeat(64));
    let unsigned = serde_json::to_vec(&v).unwrap();
    let parsed = UnverifiedReceipt::parse(&unsigned).unwrap();
    let mut payload = vec![0u8; unsigned.len()];
    let n = parsed.write_signing_payload(&mut payload).unwrap();
    let sig = Signer::from_seed(&TEST_SEED).sign(&payload[..n]);
    v["signature"] = json!(hex::encode(sig));
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn re_signing_the_original_gives_the_original() {
    // Ed25519 is deterministic: the helper reproduces the published signature.
    let p = deny();
    let v: Value = serde_json::from_slice(&p.receipt).unwrap();
    let again: Value = serde_json::from_slice(&signed(&v)).unwrap();
    assert_eq!(again["signature"], p.signature.as_str());
}

#[test]
fn not_an_object() {
    for text in ["[]", "\"receipt.v5\"", "1", "null"] {
        assert_eq!(
            check(text.as_bytes()),
            Err(ReceiptError::ContractMismatch(ContractError::NotAnObject)),
            "{text}"
        );
    }
}

#[test]
fn signature_version() {
    let mut v = deny_value();
    for bad in [
        json!("receipt.v4"),
        json!("RECEIPT.V5"),
        json!(5),
        json!(null),
        json!(""),
    ] {
        v["signature_version"] = bad.clone();
        assert_eq!(
            check_value(&v),
            Err(ContractError::UnsupportedSignatureVersion.into()),
            "{bad}"
        );
    }
    v.as_object_mut().unwrap().remove("signature_version");
    assert_eq!(
        check_value(&v),
        Err(ContractError::MissingMember(Member::SignatureVersion).into())
    );
}

#[test]
fn every_signed_member_is_required() {
    for m in Member::ALL {
        let mut v = deny_value();
        v.as_object_mut().unwrap().remove(m.name()).unwrap();
        assert_eq!(check_value(&v), Err(ContractError::MissingMember(m).into()), "{m}");
    }
}

#[test]
fn signed_member_types() {
    for m in Member::ALL.into_iter().filter(|m| *m != Member::SignatureVersion) {
        let wrong: &[Value] = if m == Member::LamportClock {
            &[json!("1"), json!(null), json!(true), json!([1]), json!({})]
        } else {
            &[json!(null), json!(1), json!(false), json!(["x"]), json!({"a": "b"})]
        };
        for w in wrong {
            let mut v = deny_value();
            v[m.name()] = w.clone();
            assert_eq!(check_value(&v), Err(ContractError::WrongType(m).into()), "{m} = {w}");
        }
    }
    let mut v = deny_value();
    v["lamport_clock"] = json!(-1);
    assert_eq!(check_value(&v), Err(ContractError::NegativeLamportClock.into()));
}

#[test]
fn numbers_anywhere_in_the_receipt_must_be_interoperable() {
    let p = deny();
    for (from, to, kind) in [
        (
            "\"lamport_clock\":1",
            "\"lamport_clock\":1.0",
            NumberErrorKind::Fraction,
        ),
        (
            "\"lamport_clock\":1",
            "\"lamport_clock\":1e0",
            NumberErrorKind::Exponent,
        ),
        (
            "\"lamport_clock\":1",
            "\"lamport_clock\":-0",
            NumberErrorKind::NegativeZero,
        ),
        (
            "\"lamport_clock\":1",
            "\"lamport_clock\":9007199254740992",
            NumberErrorKind::OutOfRange,
        ),
        // Unsigned members too, as the reference verifier checks the whole receipt.
        ("\"leaf_index\":41", "\"leaf_index\":41.5", NumberErrorKind::Fraction),
        (
            "\"leaf_index\":41",
            "\"leaf_index\":18446744073709551615",
            NumberErrorKind::OutOfRange,
        ),
        (
            "{\"tenant_id\":\"tenant-a\"}",
            "{\"tenant_id\":\"tenant-a\",\"ratio\":[0.5]}",
            NumberErrorKind::Fraction,
        ),
    ] {
        let text = replace_once(&p.receipt, from, to);
        match check(&text) {
            Err(ReceiptError::NonInteroperableNumber(e)) => {
                assert_eq!(e.kind, kind, "{to}");
                assert!(text[e.offset..].starts_with(to.rsplit([':', '[']).next().unwrap().as_bytes()));
            }
            other => panic!("{to}: {other:?}"),
        }
    }
    // The largest safe integer is fine anywhere.
    let text = replace_once(&p.receipt, "\"leaf_index\":41", "\"leaf_index\":9007199254740991");
    check(&text).unwrap();
    let text = replace_once(&p.receipt, "\"leaf_index\":41", "\"leaf_index\":-9007199254740991");
    check(&text).unwrap();
}

/// The reference order: version, presence, numbers, then everything else.
#[test]
fn order_of_checks() {
    let p = positives()
        .into_iter()
        .find(|p| p.id == "executor_success_empty_governance")
        .unwrap();
    let big = replace_once(
        &p.receipt,
        "\"lamport_clock\":9007199254740991",
        "\"lamport_clock\":9007199254740992",
    );
    // Presence before numbers.
    let both = replace_once(&big, "\"policy_hash\":\"\",", "");
    assert_eq!(
        check(&both),
        Err(ContractError::MissingMember(Member::PolicyHash).into())
    );
    // Numbers before types and signature members.
    let typed = replace_once(&big, "\"verdict\":\"\"", "\"verdict\":null");
    assert_eq!(check(&typed).unwrap_err().class(), ErrorClass::NonInteroperableNumber);
    let unsigned = replace_once(&big, "\"signature_profile\":\"classical\",", "");
    assert_eq!(
        check(&unsigned).unwrap_err().class(),
        ErrorClass::NonInteroperableNumber
    );
    // Everything before the signature, whatever the key.
    let other = TrustedKey::from_bytes(&Signer::from_seed(&[9; 32]).public_key()).unwrap();
    assert_eq!(
        verify(&typed, &other).map(|_| ()).unwrap_err().class(),
        ErrorClass::NonInteroperableNumber
    );
    // Malformed JSON before everything.
    let broken = [both.as_slice(), b","].concat();
    assert_eq!(check(&broken).unwrap_err().class(), ErrorClass::MalformedJson);
}

#[test]
fn signature_algorithm_and_profile() {
    let v = deny_value();
    // Both absent (older receipts): they are not signed, the signature still verifies.
    let mut old = v.clone();
    old.as_object_mut().unwrap().remove("signature_algorithm");
    old.as_object_mut().unwrap().remove("signature_profile");
    check_value(&old).unwrap();
    for (alg, prof) in [
        (Some(json!("ed25519")), None),
        (None, Some(json!("classical"))),
        (Some(json!("Ed25519")), Some(json!("classical"))),
        (Some(json!("ed25519")), Some(json!("hybrid"))),
        (Some(json!("ml-dsa-65")), Some(json!("classical"))),
        (Some(json!(null)), Some(json!(null))),
        (Some(json!("")), Some(json!(""))),
    ] {
        let mut w = old.clone();
        if let Some(a) = &alg {
            w["signature_algorithm"] = a.clone();
        }
        if let Some(p) = &prof {
            w["signature_profile"] = p.clone();
        }
        assert_eq!(
            check_value(&w),
            Err(ContractError::SignatureAlgorithm.into()),
            "{alg:?} {prof:?}"
        );
    }
}

#[test]
fn signature_member() {
    let p = deny();
    let mut v = deny_value();
    v.as_object_mut().unwrap().remove("signature");
    assert_eq!(check_value(&v), Err(ContractError::MissingSignature.into()));
    for bad in [
        json!(p.signature.to_uppercase()),
        json!(format!("ed25519:{}", p.signature)),
        json!(&p.signature[..126]),
        json!(format!("{}00", p.signature)),
        json!(format!("{} ", &p.signature[..127])),
        json!(null),
        json!(1),
        json!(""),
    ] {
        let mut w = deny_value();
        w["signature"] = bad.clone();
        assert_eq!(check_value(&w), Err(ContractError::SignatureEncoding.into()), "{bad}");
    }
    // A hex digit spelled as an escape is refused too.
    let text = replace_once(
        &p.receipt,
        &format!("\"{}\"", p.signature),
        &format!("\"\\u00{:x}{}\"", p.signature.as_bytes()[0], &p.signature[1..]),
    );
    assert_eq!(check(&text), Err(ContractError::SignatureEncoding.into()));
}

#[test]
fn duplicate_members_are_malformed() {
    let p = deny();
    // Go and Python keep the last duplicate; a first-wins reader would verify the DENY
    // while an application reads ALLOW. Both are refused.
    for extra in [
        ",\"verdict\":\"ALLOW\"}",
        ",\"verd\\u0069ct\":\"DENY\"}",
        ",\"timestamp\":\"2030-01-01T00:00:00Z\"}",
    ] {
        let mut text = p.receipt.clone();
        assert_eq!(text.pop(), Some(b'}'));
        text.extend_from_slice(extra.as_bytes());
        match check(&text) {
            Err(ReceiptError::MalformedJson(e)) => {
                assert_eq!(e.kind, JsonErrorKind::DuplicateMember, "{extra}");
                assert_eq!(e.offset, p.receipt.len(), "{extra}");
            }
            other => panic!("{extra}: {other:?}"),
        }
    }
    let nested = replace_once(
        &p.receipt,
        "{\"tenant_id\":\"tenant-a\"}",
        "{\"tenant_id\":\"tenant-a\",\"tenant_id\":\"tenant-b\"}",
    );
    assert_eq!(check(&nested).unwrap_err().class(), ErrorClass::MalformedJson);
}

#[test]
fn strict_json() {
    let p = deny();
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&p.receipt);
    let lone = replace_once(&p.receipt, "\"tenant-a\"}", "\"tenant-a\\ud800\"}");
    let control = replace_once(&p.receipt, "\"tenant-a\"}", "\"tenant-a\t\"}");
    let mut invalid_utf8 = replace_once(&p.receipt, "\"tenant-a\"}", "\"tenant-a?\"}");
    let at = invalid_utf8.iter().position(|&b| b == b'?').unwrap();
    invalid_utf8[at] = 0xff;
    for (text, kind) in [
        (bom, JsonErrorKind::ByteOrderMark),
        (lone, JsonErrorKind::LoneSurrogate),
        (control, JsonErrorKind::ControlCharacter),
        (invalid_utf8, JsonErrorKind::InvalidUtf8),
        (
            [p.receipt.as_slice(), b" x"].concat(),
            JsonErrorKind::TrailingCharacters,
        ),
        (p.receipt[..p.receipt.len() - 1].to_vec(), JsonErrorKind::UnexpectedEnd),
        (Vec::new(), JsonErrorKind::UnexpectedEnd),
    ] {
        match check(&text) {
            Err(ReceiptError::MalformedJson(e)) => assert_eq!(e.kind, kind),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    // Whitespace around the value is JSON.
    check(&[b" \n\t\r".as_slice(), &p.receipt, b"\r\n"].concat()).unwrap();
}

#[test]
fn unsigned_members_are_not_authenticated() {
    let p = deny();
    // Changing them keeps the signature valid: they are transport claims only.
    for (from, to) in [
        (
            "\"timestamp\":\"2026-08-06T12:00:00Z\"",
            "\"timestamp\":\"1999-01-01T00:00:00Z\"",
        ),
        (
            "\"key_id\":\"receipt-v5-reference-key-v1\"",
            "\"key_id\":\"someone-else\"",
        ),
        (
            "\"ed25519\":\"197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61\"",
            "\"ed25519\":\"0000000000000000000000000000000000000000000000000000000000000000\"",
        ),
        ("\"leaf_index\":41", "\"leaf_index\":42"),
    ] {
        let text = replace_once(&p.receipt, from, to);
        let r = verify(&text, &key()).unwrap();
        assert_eq!(r.verdict(), "DENY");
    }
    let text = replace_once(&p.receipt, "\"key_id\":\"receipt-v5-reference-key-v1\"", "\"key_id\":7");
    let r = verify(&text, &key()).unwrap();
    assert_eq!(r.unsigned_member("key_id"), Some(JsonValue::Number("7")));
    assert!(matches!(
        r.unsigned_member("metadata"),
        Some(JsonValue::Object("{\"tenant_id\":\"tenant-a\"}"))
    ));
}

#[test]
fn the_key_must_be_the_trusted_one() {
    let p = deny();
    let other = TrustedKey::from_bytes(&Signer::from_seed(&[1; 32]).public_key()).unwrap();
    assert_eq!(
        verify(&p.receipt, &other).map(|_| ()),
        Err(ReceiptError::SignatureRejected)
    );
    // Signed by another key, announced as the trusted one in public_key_set: refused.
    let mut v = deny_value();
    v["verdict"] = json!("ALLOW");
    let mut forged = v.clone();
    forged["signature"] = json!("00".repeat(64));
    let unsigned = serde_json::to_vec(&forged).unwrap();
    let mut payload = vec![0u8; unsigned.len()];
    let n = UnverifiedReceipt::parse(&unsigned)
        .unwrap()
        .write_signing_payload(&mut payload)
        .unwrap();
    forged["signature"] = json!(hex::encode(Signer::from_seed(&[1; 32]).sign(&payload[..n])));
    assert_eq!(check_value(&forged), Err(ReceiptError::SignatureRejected));
    // The same content signed by the trusted key verifies.
    let r_text = signed(&v);
    assert_eq!(verify(&r_text, &key()).unwrap().verdict(), "ALLOW");
}

#[test]
fn non_canonical_spellings_need_scratch() {
    // A signed member of 600 characters, each spelled \u00XX: 3,600 bytes of JSON that
    // canonicalize to 600 bytes, more than the inline scratch when two members do it.
    let mut v = deny_value();
    v["reason_code"] = json!("é".repeat(300));
    v["session_id"] = json!("ü".repeat(300));
    let text = signed(&v);
    verify(&text, &key()).unwrap();
    let escaped = String::from_utf8(text)
        .unwrap()
        .replace('é', "\\u00e9")
        .replace('ü', "\\u00fc");
    let needed = 1200;
    assert!(needed > INLINE_SCRATCH_LEN);
    assert_eq!(
        verify(escaped.as_bytes(), &key()).map(|_| ()),
        Err(ReceiptError::ResourceLimit(LimitError::BufferTooSmall {
            needed,
            available: INLINE_SCRATCH_LEN
        }))
    );
    let mut scratch = vec![0u8; escaped.len()];
    let r = verify_with_scratch(escaped.as_bytes(), &key(), &mut scratch).unwrap();
    assert_eq!(r.reason_code().to_string(), "é".repeat(300));
    let mut exact = vec![0u8; needed];
    verify_with_scratch(escaped.as_bytes(), &key(), &mut exact).unwrap();
    let mut short = vec![0u8; needed - 1];
    assert_eq!(
        verify_with_scratch(escaped.as_bytes(), &key(), &mut short)
            .unwrap_err()
            .class(),
        ErrorClass::ResourceLimit
    );
}

#[test]
fn limits() {
    let p = deny();
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let text = replace_once(&p.receipt, "\"leaf_index\":41", &format!("\"leaf_index\":{deep}"));
    assert!(matches!(
        check(&text),
        Err(ReceiptError::ResourceLimit(LimitError::TooDeep { .. }))
    ));
    let many: Vec<String> = (0..300).map(|i| format!("\"m{i}\":{i}")).collect();
    let text = replace_once(
        &p.receipt,
        "{\"tenant_id\":\"tenant-a\"}",
        &format!("{{{}}}", many.join(",")),
    );
    assert!(matches!(
        check(&text),
        Err(ReceiptError::ResourceLimit(LimitError::TooManyMembers { .. }))
    ));
    // Within the limits, a large unsigned member is fine.
    let some: Vec<String> = (0..200).map(|i| format!("\"m{i}\":{i}")).collect();
    let text = replace_once(
        &p.receipt,
        "{\"tenant_id\":\"tenant-a\"}",
        &format!("{{{}}}", some.join(",")),
    );
    check(&text).unwrap();
}

#[test]
fn trusted_key_text() {
    assert!(TRUSTED_KEY.parse::<TrustedKey>().is_ok());
    let hex = TRUSTED_KEY.strip_prefix("ed25519:").unwrap();
    assert_eq!(hex.parse::<TrustedKey>().unwrap_err(), TrustedKeyError::Prefix);
    assert_eq!(
        format!("ed25519:{}", hex.to_uppercase())
            .parse::<TrustedKey>()
            .unwrap_err(),
        TrustedKeyError::Hex
    );
    assert_eq!(
        format!("ed25519:{}", &hex[2..]).parse::<TrustedKey>().unwrap_err(),
        TrustedKeyError::Hex
    );
    let identity = format!("ed25519:01{}", "00".repeat(31));
    assert_eq!(
        identity.parse::<TrustedKey>().unwrap_err(),
        TrustedKeyError::Key(KeyError::SmallOrder)
    );
}

#[test]
fn error_classes_are_stable() {
    let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "malformed_json",
            "non_interoperable_number",
            "contract_mismatch",
            "signature_rejected",
            "resource_limit"
        ]
    );
    for c in ErrorClass::ALL {
        assert_eq!(ErrorClass::from_name(c.name()), Some(c));
    }
    let e: ReceiptError = ContractError::MissingMember(Member::PolicyHash).into();
    assert_eq!(
        e.to_string(),
        "contract_mismatch: signed member `policy_hash` is missing (all 13 signed members are required, even when empty)"
    );
}
