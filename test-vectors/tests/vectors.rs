//! Runs every vector file against verify-core and checks the files are exactly what the
//! generator writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use helm_test_vectors::{load_record_vectors, run_record_vector, vectors_dir, SignatureVector};

#[test]
fn every_record_vector_reaches_its_expected_verdict() {
    let vectors = load_record_vectors(&vectors_dir()).unwrap();
    assert!(vectors.len() >= 60, "only {} vectors found", vectors.len());
    let mut failures = Vec::new();
    for v in &vectors {
        let got = run_record_vector(v);
        let want = v.expect.outcome();
        if got != want {
            failures.push(format!("{}: expected {want:?}, got {got:?}", v.id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rule_has_a_positive_and_a_negative_vector() {
    let vectors = load_record_vectors(&vectors_dir()).unwrap();
    for rule in 1..=6u8 {
        let of_rule: Vec<_> = vectors.iter().filter(|v| v.rule == rule).collect();
        assert!(
            of_rule
                .iter()
                .any(|v| matches!(v.expect, helm_test_vectors::Expectation::Reject { .. })),
            "rule {rule}: no negative vector"
        );
        assert!(
            vectors
                .iter()
                .any(|v| v.rule == rule && matches!(v.expect, helm_test_vectors::Expectation::Accept { .. })),
            "rule {rule}: no positive vector"
        );
    }
}

#[test]
fn cctv_ed25519_edge_cases_match_the_pinned_verdicts() {
    let text = fs::read_to_string(vectors_dir().join("ed25519/strict-verdicts.json")).unwrap();
    let cases: Vec<SignatureVector> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 914);
    let (mut accepted, mut wrong) = (0, Vec::new());
    for c in &cases {
        let key: [u8; 32] = hex::decode(&c.key).unwrap().try_into().unwrap();
        let sig: [u8; 64] = hex::decode(&c.sig).unwrap().try_into().unwrap();
        let ok = verify_core::verify_signature(&key, c.msg.as_bytes(), &sig);
        accepted += usize::from(ok);
        if ok != (c.expect == "accept") {
            wrong.push(format!(
                "case {} {:?}: expected {}, got {}",
                c.number, c.flags, c.expect, ok
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(accepted, 43);
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The committed vectors are byte-for-byte what the generator writes (twice, in two
/// processes), so nobody can edit an expectation by hand without the generator.
#[test]
fn committed_vectors_are_exactly_what_the_generator_writes() {
    let base = std::env::temp_dir().join(format!("helm-vectors-{}", std::process::id()));
    let runs: Vec<PathBuf> = (0..2).map(|i| base.join(i.to_string())).collect();
    for dir in &runs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_generate-vectors"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let generated = files_below(&runs[0]);
    assert_eq!(generated, files_below(&runs[1]));
    let committed = vectors_dir();
    for rel in &generated {
        let a = fs::read(runs[0].join(rel)).unwrap();
        assert_eq!(
            a,
            fs::read(runs[1].join(rel)).unwrap(),
            "{} differs between two runs",
            rel.display()
        );
        let c = fs::read(committed.join(rel)).unwrap_or_default();
        assert!(
            a == c,
            "{} differs from the committed file: run `cargo run -p helm-test-vectors --bin generate-vectors`",
            rel.display()
        );
    }
    // No stale committed vector that the generator no longer writes.
    let committed_records: Vec<PathBuf> = files_below(&committed.join("records"))
        .into_iter()
        .map(|p| Path::new("records").join(p))
        .collect();
    for rel in committed_records {
        assert!(
            generated.contains(&rel),
            "{} is committed but not generated",
            rel.display()
        );
    }
    fs::remove_dir_all(&base).ok();
}

#[test]
fn every_pack_vector_reaches_its_expected_verdict() {
    use helm_test_vectors::packs::{PackExpectation, PackVector};
    let dir = vectors_dir().join("packs");
    let index: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let packs: Vec<PackVector> = serde_json::from_value(index["packs"].clone()).unwrap();
    assert!(packs.len() >= 20, "{} pack vectors", packs.len());
    let mut failures = Vec::new();
    for v in &packs {
        let bytes = fs::read(dir.join(&v.file)).unwrap();
        let anchors: Vec<[u8; 32]> = v
            .anchors
            .iter()
            .map(|a| hex::decode(a).unwrap().try_into().unwrap())
            .collect();
        let got =
            match pack_format::verify_reader(&bytes[..], &anchors, &Default::default(), &mut pack_format::NoObserver) {
                Ok((_, s)) => PackExpectation::Accept {
                    records: s.verified.records,
                    root: hex::encode(s.verified.root),
                },
                Err(pack_format::StreamError::Pack(e)) => PackExpectation::Reject {
                    error: e.code_name().into(),
                },
                Err(pack_format::StreamError::Setup(e)) => PackExpectation::Reject {
                    error: format!("SETUP {e:?}"),
                },
                Err(pack_format::StreamError::Io(e)) => PackExpectation::Reject {
                    error: format!("IO {e}"),
                },
            };
        if got != v.expect {
            failures.push(format!("{} ({}): expected {:?}, got {got:?}", v.id, v.file, v.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
