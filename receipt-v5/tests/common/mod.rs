//! Shared helpers: the interop data files of test-vectors/interop/helm-ai-kernel/.
#![allow(dead_code, reason = "each test file uses a part")]

use std::fs;
use std::path::PathBuf;

use receipt_v5::TrustedKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The trusted key of the receipt.v5 vectors (README of the interop data).
pub(crate) const TRUSTED_KEY: &str = "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";

/// The seed of that key: 0x2a repeated 32 times (a public test key).
pub(crate) const TEST_SEED: [u8; 32] = [0x2a; 32];

pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/interop/helm-ai-kernel")
}

pub(crate) fn read(rel: &str) -> Vec<u8> {
    let p = dir().join(rel);
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn json(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

/// A repository file's canonical text: without its single trailing LF (the hashes in
/// vectors.json cover the text without it).
pub(crate) fn canonical_file(rel: &str) -> Vec<u8> {
    let mut b = read(rel);
    assert_eq!(b.pop(), Some(b'\n'), "{rel} ends with one LF");
    assert_ne!(b.last(), Some(&b'\n'), "{rel} ends with one LF only");
    b
}

pub(crate) fn key() -> TrustedKey {
    TRUSTED_KEY.parse().unwrap()
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The receipt.v5 index.
pub(crate) fn receipt_index() -> Value {
    json("receipt-v5/vectors.json")
}

/// One positive vector: (id, receipt text, signing payload text, signature hex).
pub(crate) struct Positive {
    pub(crate) id: String,
    pub(crate) receipt: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: String,
}

pub(crate) fn positives() -> Vec<Positive> {
    let index = receipt_index();
    index["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let load = |part: &str| {
                let rel = format!("receipt-v5/{}", v[part]["canonical"].as_str().unwrap());
                let text = canonical_file(&rel);
                assert_eq!(
                    format!("sha256:{}", sha256_hex(&text)),
                    v[part]["sha256"].as_str().unwrap(),
                    "{rel}: the data file is not the one vectors.json pins"
                );
                text
            };
            Positive {
                id: v["id"].as_str().unwrap().to_string(),
                receipt: load("receipt"),
                payload: load("signing_payload"),
                signature: v["signature"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("ed25519:")
                    .unwrap()
                    .to_string(),
            }
        })
        .collect()
}

/// Replaces the only occurrence of `from` in `text`.
pub(crate) fn replace_once(text: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = core::str::from_utf8(text).unwrap();
    assert_eq!(s.matches(from).count(), 1, "{from:?} must occur once");
    s.replacen(from, to, 1).into_bytes()
}

/// The byte range of a top-level member `"name":value` (name, colon and value) of a
/// canonical (whitespace-free) receipt, found textually, independently of the crate.
pub(crate) fn member_range(text: &[u8], name: &str) -> core::ops::Range<usize> {
    let s = core::str::from_utf8(text).unwrap();
    let needle = format!("\"{name}\":");
    let start = s.find(&needle).unwrap_or_else(|| panic!("{name} not found"));
    let v = start + needle.len();
    let b = text;
    let end = if b[v] == b'"' {
        let mut i = v + 1;
        while b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    } else {
        let mut i = v;
        while !matches!(b[i], b',' | b'}') {
            i += 1;
        }
        i
    };
    start..end
}
