//! The language-neutral store vectors (`test-vectors/store/index.json`): each case's
//! segment files are written to a fresh directory, then a lockless reader and the
//! writer's recovery must make of them what the vector says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "tests"
)]

use std::fs;
use std::path::Path;

use helm_kernel::store::{read_records, Store, StoreError, StoreOptions};
use serde_json::Value;

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/store/index.json");
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

/// A segment file's bytes from its parts: `{"hex": ...}` or `{"zeros": n}`.
fn bytes(parts: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts.as_array().unwrap() {
        if let Some(h) = part.get("hex") {
            out.extend(hex::decode(h.as_str().unwrap()).unwrap());
        } else {
            let n = part["zeros"].as_u64().unwrap() as usize;
            out.resize(out.len() + n, 0);
        }
    }
    out
}

#[test]
fn store_vectors() {
    let doc = vectors();
    assert_eq!(doc["format"], "helm-store-vectors/1");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut last = None;
        for (name, parts) in case["segments"].as_object().unwrap() {
            fs::write(dir.join(name), bytes(parts)).unwrap();
            last = Some(dir.join(name));
        }
        let last = last.unwrap();

        // The lockless reader, before anything is repaired.
        let mut read = Vec::new();
        let r = read_records(dir, |_, rec| {
            read.push(hex::encode(rec));
            Ok::<(), StoreError>(())
        });
        match case["reader_records"].as_u64() {
            Some(n) => assert_eq!(r.unwrap(), n, "{id}: reader"),
            None => assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{id}: reader {r:?}"),
        }

        let expect = &case["expect"];
        let opened = Store::open(dir, StoreOptions::default());
        match expect["open"].as_str().unwrap() {
            "ok" => {
                let (store, report) = opened.unwrap_or_else(|e| panic!("{id}: {e}"));
                let mut got = Vec::new();
                store
                    .for_each_record(|_, rec| {
                        got.push(Value::from(hex::encode(rec)));
                        Ok::<(), StoreError>(())
                    })
                    .unwrap();
                assert_eq!(Value::from(got.clone()), expect["records"], "{id}: records");
                assert_eq!(read, got, "{id}: reader and writer agree");
                assert_eq!(report.records, got.len() as u64, "{id}");
                assert_eq!(Some(report.truncated_bytes), expect["truncated_bytes"].as_u64(), "{id}");
                assert_eq!(Some(report.reserved_bytes), expect["reserved_bytes"].as_u64(), "{id}");
                assert_eq!(
                    Some(report.torn.is_some()),
                    expect["torn"].as_bool(),
                    "{id}: {report:?}"
                );
                assert_eq!(
                    Some(fs::metadata(&last).unwrap().len()),
                    expect["length_after_open"].as_u64(),
                    "{id}: length after open"
                );
            }
            "corrupt" => {
                let e = opened.err().unwrap_or_else(|| panic!("{id}: opened"));
                let shown = e.to_string();
                assert!(matches!(e, StoreError::Corrupt { .. }), "{id}: {shown}");
                assert!(shown.contains(expect["file"].as_str().unwrap()), "{id}: {shown}");
                assert!(
                    shown.contains(expect["reason_contains"].as_str().unwrap()),
                    "{id}: {shown}"
                );
            }
            other => panic!("{id}: unknown expectation {other}"),
        }
    }
}
