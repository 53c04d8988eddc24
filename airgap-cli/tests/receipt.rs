//! `helm-airgap verify-receipt`, through the real binary, on the Go implementation's
//! `receipt.v5` interop data (test-vectors/interop/helm-ai-kernel/receipt-v5/, see
//! PROVENANCE.md there): the 3 positive receipts, a wrong key, the 4 negative mutations of
//! vectors.json (applied here), bad keys, the size bound.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// The trusted key of every receipt vector (shared/interop/helm-ai-kernel/README.md: the
/// public test key of the seed 0x2a x 32, never for real use).
const TRUSTED_KEY: &str = "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";

/// The 13 signed members, in the order of spec/receipt-v5.md §3.
const SIGNED: [&str; 13] = [
    "signature_version",
    "receipt_id",
    "decision_id",
    "effect_id",
    "status",
    "output_hash",
    "prev_hash",
    "lamport_clock",
    "args_hash",
    "verdict",
    "reason_code",
    "policy_hash",
    "session_id",
];

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_helm-airgap"))
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/interop/helm-ai-kernel/receipt-v5")
}

fn index() -> Value {
    serde_json::from_slice(&fs::read(vectors_dir().join("vectors.json")).unwrap()).unwrap()
}

/// A positive vector: its id, receipt file and signing payload.
struct Positive {
    id: String,
    file: PathBuf,
    receipt: Vec<u8>,
    payload: Value,
    signature: String,
}

fn positives() -> Vec<Positive> {
    index()["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let file = vectors_dir().join(v["receipt"]["canonical"].as_str().unwrap());
            let payload = vectors_dir().join(v["signing_payload"]["canonical"].as_str().unwrap());
            Positive {
                id: v["id"].as_str().unwrap().into(),
                receipt: fs::read(&file).unwrap(),
                file,
                payload: serde_json::from_slice(&fs::read(payload).unwrap()).unwrap(),
                signature: v["signature"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("ed25519:")
                    .unwrap()
                    .into(),
            }
        })
        .collect()
}

/// `verify-receipt` on a file.
fn run_file(file: &Path, key: &str, json: bool) -> Output {
    let mut c = bin();
    c.args([
        "verify-receipt".as_ref(),
        file.as_os_str(),
        "--trusted-key".as_ref(),
        key.as_ref(),
    ]);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

/// `verify-receipt -` with `data` on standard input.
fn run_stdin(data: &[u8], key: &str, json: bool) -> Output {
    let mut c = bin();
    c.args(["verify-receipt", "-", "--trusted-key", key]);
    if json {
        c.arg("--json");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    // The binary may stop reading early (the size bound): a broken pipe here is fine.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    o
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[track_caller]
fn expect_code(o: &Output, want: i32) {
    assert_eq!(code(o), want, "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

/// Replaces the single occurrence of `old` in `text`.
fn replace_once(text: &[u8], old: &str, new: &str) -> Vec<u8> {
    let s = core::str::from_utf8(text).unwrap();
    assert_eq!(s.matches(old).count(), 1, "{old}");
    s.replacen(old, new, 1).into_bytes()
}

/// A valid Ed25519 key that did not sign the vectors.
fn other_key() -> String {
    let public = verify_core::Signer::from_seed(&[7; 32]).public_key();
    format!("ed25519:{}", hex::encode(public))
}

#[test]
fn trusted_key_is_the_one_the_vectors_name() {
    assert_eq!(index()["public_key"], TRUSTED_KEY);
}

#[test]
fn three_positive_receipts_verify() {
    let positives = positives();
    assert_eq!(positives.len(), 3);
    for p in &positives {
        // For people.
        let o = run_file(&p.file, TRUSTED_KEY, false);
        expect_code(&o, 0);
        let text = stdout(&o);
        assert!(text.starts_with("VERIFIED: "), "{}: {text}", p.id);
        assert!(text.contains(TRUSTED_KEY), "{}: {text}", p.id);
        for m in SIGNED {
            assert!(
                text.contains(&format!("    {m:<18} ")),
                "{}: {m} not listed:\n{text}",
                p.id
            );
        }
        assert!(text.contains("NOT AUTHENTICATED"), "{}: {text}", p.id);
        assert!(stderr(&o).is_empty(), "{}: {}", p.id, stderr(&o));

        // JSON: the 13 signed members in the profile's order, with the payload's values.
        let o = run_file(&p.file, TRUSTED_KEY, true);
        expect_code(&o, 0);
        let v = json(&o);
        assert_eq!(v["verified"], true, "{}", p.id);
        assert_eq!(v["trusted_key"], TRUSTED_KEY);
        assert_eq!(v["receipt"], p.file.display().to_string());
        let text = stdout(&o);
        let positions: Vec<usize> = SIGNED
            .iter()
            .map(|m| text.find(&format!("\"{m}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}: order", p.id);
        let signed = v["signed"].as_object().unwrap();
        assert_eq!(signed.len(), 13, "{}", p.id);
        assert_eq!(
            &Value::Object(signed.clone()),
            &p.payload,
            "{}: the signed members are the signing payload's",
            p.id
        );
        assert!(signed["lamport_clock"].is_u64(), "{}", p.id);

        // Unsigned members: every other top-level member, never a signed one.
        let receipt: Value = serde_json::from_slice(&p.receipt).unwrap();
        let mut want: Vec<String> = receipt
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !SIGNED.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut unsigned: Vec<String> = v["unsigned_members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        want.sort();
        unsigned.sort();
        assert_eq!(unsigned, want, "{}", p.id);
        for name in ["signature", "timestamp", "key_id", "public_key_set"] {
            assert!(unsigned.iter().any(|n| n == name), "{}: {name}", p.id);
        }

        // The same bytes on standard input.
        let o = run_stdin(&p.receipt, TRUSTED_KEY, true);
        expect_code(&o, 0);
        let v = json(&o);
        assert_eq!(v["receipt"], "-");
        assert_eq!(v["signed"], p.payload);
    }
}

#[test]
fn the_escaped_members_are_decoded_and_shown_safely() {
    let p = positives()
        .into_iter()
        .find(|p| p.id == "escaped_string_members")
        .unwrap();
    let o = run_file(&p.file, TRUSTED_KEY, true);
    expect_code(&o, 0);
    assert_eq!(
        json(&o)["signed"]["session_id"],
        "sess-\"quote\\solidus\ttab\u{2028}ls\u{2029}ps\u{1F510}lock"
    );
    // For people, the TAB is escaped.
    let o = run_file(&p.file, TRUSTED_KEY, false);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("sess-\"quote\\solidus\\u{9}tab"), "{}", stdout(&o));
    assert!(!stdout(&o).contains('\t'));
}

#[test]
fn unsigned_members_can_change_and_other_spellings_verify() {
    let p = positives()
        .into_iter()
        .find(|p| p.id == "decision_deny_genesis")
        .unwrap();
    // Changing a transport claim does not break the signature; it stays unauthenticated.
    let changed = replace_once(
        &p.receipt,
        "\"timestamp\":\"2026-08-06T12:00:00Z\"",
        "\"timestamp\":\"1999-01-01T00:00:00Z\"",
    );
    let o = run_stdin(&changed, TRUSTED_KEY, true);
    expect_code(&o, 0);
    let v = json(&o);
    assert!(v["unsigned_members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "timestamp"));
    assert!(v["signed"].get("timestamp").is_none());
    // Pretty-printed, the same receipt.
    let pretty = serde_json::to_string_pretty(&serde_json::from_slice::<Value>(&p.receipt).unwrap()).unwrap();
    expect_code(&run_stdin(pretty.as_bytes(), TRUSTED_KEY, false), 0);
}

#[test]
fn a_wrong_key_is_signature_rejected() {
    let key = other_key();
    assert_ne!(key, TRUSTED_KEY);
    for p in positives() {
        let o = run_file(&p.file, &key, true);
        expect_code(&o, 1);
        let v = json(&o);
        assert_eq!(v["verified"], false, "{}", p.id);
        assert_eq!(v["trusted_key"], key);
        assert_eq!(v["error"]["class"], "signature_rejected", "{}", p.id);
        assert!(v["error"]["detail"].as_str().unwrap().contains("signature"), "{}", p.id);
        assert!(v.get("signed").is_none(), "{}", p.id);

        let o = run_file(&p.file, &key, false);
        expect_code(&o, 1);
        let text = stdout(&o);
        assert!(text.starts_with("FAILED: "), "{}: {text}", p.id);
        assert!(text.contains("error   signature_rejected"), "{}: {text}", p.id);
    }
}

/// The four negative mutations of vectors.json, applied to the receipt text.
#[test]
fn four_negative_mutations_fail_with_their_class() {
    let index = index();
    let max = index["canonicalization"]["max_safe_integer"].as_u64().unwrap();
    let positives = positives();
    let negatives = index["negative_vectors"].as_array().unwrap();
    assert_eq!(negatives.len(), 4);
    let dir = TempDir::new().unwrap();
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
        let want = n["expected_error"].as_str().unwrap();
        let file = dir.path().join(format!("{id}.json"));
        fs::write(&file, &mutated).unwrap();

        let o = run_file(&file, TRUSTED_KEY, true);
        expect_code(&o, 1);
        let r = json(&o);
        assert_eq!(r["verified"], false, "{id}");
        assert_eq!(r["error"]["class"], want, "{id}: {}", r["error"]["detail"]);
        assert!(!r["error"]["detail"].as_str().unwrap().is_empty(), "{id}");

        let o = run_file(&file, TRUSTED_KEY, false);
        expect_code(&o, 1);
        assert!(stdout(&o).starts_with("FAILED: "), "{id}");
        assert!(stdout(&o).contains(&format!("error   {want}")), "{id}: {}", stdout(&o));

        let o = run_stdin(&mutated, TRUSTED_KEY, true);
        expect_code(&o, 1);
        assert_eq!(json(&o)["error"]["class"], want, "{id}");
    }
}

#[test]
fn not_json_is_malformed_json() {
    let o = run_stdin(b"{\"signature_version\":\"receipt.v5\",", TRUSTED_KEY, true);
    expect_code(&o, 1);
    assert_eq!(json(&o)["error"]["class"], "malformed_json");
    let o = run_stdin(b"", TRUSTED_KEY, true);
    expect_code(&o, 1);
    assert_eq!(json(&o)["error"]["class"], "malformed_json");
}

#[test]
fn bad_trusted_keys_are_exit_2() {
    let p = &positives()[0];
    for bad in [
        "",
        "ed25519:",
        // No prefix.
        "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61",
        // Uppercase hex.
        "ed25519:197F6B23E16C8532C6ABC838FACD5EA789BE0C76B2920334039BFA8B3D368D61",
        // Too short, too long.
        "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d6",
        "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d6100",
        "ed25519:not-a-key",
        // The identity point: canonical, but of small order.
        "ed25519:0100000000000000000000000000000000000000000000000000000000000000",
    ] {
        for json in [false, true] {
            let o = run_file(&p.file, bad, json);
            expect_code(&o, 2);
            assert!(o.stdout.is_empty(), "{bad:?}: {}", stdout(&o));
            assert!(stderr(&o).contains("--trusted-key"), "{bad:?}: {}", stderr(&o));
        }
    }
    // No key at all.
    let o = bin()
        .args(["verify-receipt".as_ref(), p.file.as_os_str()])
        .output()
        .unwrap();
    expect_code(&o, 2);
}

#[test]
fn unreadable_and_oversized_inputs_are_exit_2() {
    let dir = TempDir::new().unwrap();
    // Missing file, a directory.
    for path in [dir.path().join("absent.json"), dir.path().to_path_buf()] {
        let o = run_file(&path, TRUSTED_KEY, true);
        expect_code(&o, 2);
        assert!(o.stdout.is_empty());
    }
    // Just over 1 MiB, as a file and on standard input.
    let big = vec![b' '; (1 << 20) + 1];
    let file = dir.path().join("big.json");
    fs::write(&file, &big).unwrap();
    let o = run_file(&file, TRUSTED_KEY, true);
    expect_code(&o, 2);
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("larger than 1048576 bytes"), "{}", stderr(&o));
    let o = run_stdin(&big, TRUSTED_KEY, true);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("larger than 1048576 bytes"), "{}", stderr(&o));
    // Exactly 1 MiB is read (and verified): a receipt padded with whitespace.
    let p = &positives()[0];
    let mut padded = p.receipt.clone();
    padded.resize(1 << 20, b' ');
    let o = run_stdin(&padded, TRUSTED_KEY, true);
    expect_code(&o, 0);
}

#[test]
fn help_and_closed_stdout() {
    let o = bin().args(["verify-receipt", "--help"]).output().unwrap();
    expect_code(&o, 0);
    for want in ["--trusted-key <KEY>", "--json", "<FILE>", "Exit status"] {
        assert!(stdout(&o).contains(want), "{want}: {}", stdout(&o));
    }
    let o = bin().arg("--help").output().unwrap();
    assert!(stdout(&o).contains("verify-receipt"));

    let p = &positives()[0];
    let mut child = bin()
        .args([
            "verify-receipt".as_ref(),
            p.file.as_os_str(),
            "--trusted-key".as_ref(),
            TRUSTED_KEY.as_ref(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    expect_code(&o, 0);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
