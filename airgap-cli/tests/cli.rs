//! Runs the real `helm-airgap` binary in temporary directories.
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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

const SESSIONS: usize = 2;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_helm-airgap"))
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().unwrap()
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

/// A sample pack `name` with its trust root `trust.json` (and the round-trip files).
fn sample(dir: &Path, name: &str) -> PathBuf {
    let o = run_in(
        dir,
        &[
            "export",
            "--sample",
            &SESSIONS.to_string(),
            "-o",
            name,
            "--trust-root-out",
            "trust.json",
            "--force",
        ],
    );
    expect_code(&o, 0);
    assert!(stderr(&o).contains("PUBLIC TEST KEYS"), "{}", stderr(&o));
    dir.join(name)
}

/// Byte range of `entry`'s data in an uncompressed pack.
fn entry_data(tar: &[u8], entry: &str) -> core::ops::Range<usize> {
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let header = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&header[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(core::str::from_utf8(&header[124..135]).unwrap(), 8).unwrap();
        if name == entry {
            return at + 512..at + 512 + size;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no entry {entry}");
}

#[test]
fn export_sample_is_byte_identical_across_processes() {
    for suffix in ["tar", "tar.zst", "tar.gz"] {
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        let pa = sample(a.path(), &format!("pack.{suffix}"));
        let pb = sample(b.path(), &format!("pack.{suffix}"));
        let (da, db) = (fs::read(pa).unwrap(), fs::read(pb).unwrap());
        assert_eq!(da, db, "{suffix}");
        let magic: &[u8] = match suffix {
            "tar.zst" => &[0x28, 0xb5, 0x2f, 0xfd],
            "tar.gz" => &[0x1f, 0x8b],
            _ => b"manifest.cbor",
        };
        assert!(da.starts_with(magic), "{suffix}");
    }
}

#[test]
fn verify_reports_what_a_sample_proves() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar.zst");
    let o = run_in(d.path(), &["verify", "pack.tar.zst", "--trust-root", "trust.json"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    for want in [
        "VERIFIED",
        "INTENT",
        "CHECKPOINT",
        "sessions      2",
        "kernel time   2026-01-01T00:00:00.000Z ..",
        "producer      ed25519:",
        "wrapper zstd",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("FAILED"));

    let o = run_in(
        d.path(),
        &["verify", "pack.tar.zst", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["verified"], true);
    assert_eq!(v["sessions"], SESSIONS as u64);
    assert_eq!(v["sessions_capped"], false);
    assert_eq!(v["wrapper"], "zstd");
    let per_kind: u64 = v["per_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_kind, v["records"].as_u64().unwrap());
    assert_eq!(v["per_kind"]["TRUST_EVENT"], 3);
    assert_eq!(v["time"]["first"], "2026-01-01T00:00:00.000Z");
    assert_eq!(v["open_escalations"], 0);
    assert!(v["blobs"].as_u64().unwrap() > 0);
}

#[test]
fn tampered_record_segment_fails_with_the_record_error() {
    let d = TempDir::new().unwrap();
    let pack = sample(d.path(), "pack.tar");
    let mut bytes = fs::read(&pack).unwrap();
    let seg = entry_data(&bytes, "records/000000.cbor");
    // The last byte of the first record is the last byte of its signature.
    let first = helm_test_vectors::sample_run(SESSIONS, 10, 1000).records[0].len();
    assert_eq!(
        &bytes[seg.start..seg.start + first],
        helm_test_vectors::sample_run(SESSIONS, 10, 1000).records[0]
    );
    bytes[seg.start + first - 1] ^= 0x01;
    fs::write(d.path().join("tampered.tar"), &bytes).unwrap();

    let o = run_in(
        d.path(),
        &["verify", "tampered.tar", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 1);
    let v = json(&o);
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["code"], "SIGNATURE_INVALID");
    assert_eq!(v["error"]["number"], 201);
    assert_eq!(v["error"]["rule"], 2);
    assert_eq!(v["error"]["pack_code"], "PACK_RECORD_INVALID");
    assert_eq!(v["error"]["record_index"], 0);
    assert_eq!(v["error"]["entry"], "records/000000.cbor");
    assert_eq!(v["error"]["record_hash"].as_str().unwrap().len(), 64);

    let o = run_in(d.path(), &["verify", "tampered.tar", "--trust-root", "trust.json"]);
    expect_code(&o, 1);
    let text = stdout(&o);
    assert!(text.starts_with("FAILED"), "{text}");
    assert!(text.contains("SIGNATURE_INVALID (201)"), "{text}");
    assert!(text.contains("records/000000.cbor"), "{text}");
}

#[test]
fn missing_pack_is_exit_2() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar");
    let o = run_in(
        d.path(),
        &["verify", "no-such.tar", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 2);
    assert!(o.stdout.is_empty(), "no JSON for I/O errors");
    assert!(stderr(&o).contains("no-such.tar"));
    let o = run_in(d.path(), &["verify", "pack.tar", "--trust-root", "no-such.json"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("no-such.json"));
}

#[test]
fn bad_trust_roots_are_exit_2_naming_file_and_problem() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar");
    let good = fs::read_to_string(d.path().join("trust.json")).unwrap();
    let key = serde_json::from_str::<Value>(&good).unwrap()["anchors"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = [
        ("not-json.json", "{".to_string(), "not a valid trust-root file"),
        (
            "format.json",
            good.replace("helm-trust-root/1", "helm-trust-root/2"),
            "format",
        ),
        (
            "empty.json",
            r#"{"format":"helm-trust-root/1","anchors":[]}"#.to_string(),
            "no anchors",
        ),
        (
            "unknown.json",
            good.replacen('{', r#"{"comment":"x","#, 1),
            "unknown field",
        ),
        (
            "upper.json",
            good.replace(&key, &format!("ed25519:{}", key[8..].to_uppercase())),
            "lowercase",
        ),
        ("prefix.json", good.replace("ed25519:", ""), "ed25519:"),
    ];
    for (name, text, problem) in cases {
        fs::write(d.path().join(name), text).unwrap();
        let o = run_in(d.path(), &["verify", "pack.tar", "--trust-root", name]);
        expect_code(&o, 2);
        let err = stderr(&o);
        assert!(err.contains(name) && err.contains(problem), "{name}: {err}");
        assert!(o.stdout.is_empty());
    }
}

fn trust_root_for_new_key(dir: &Path, keyfile: &str) -> String {
    let o = run_in(dir, &["keys", "generate", "--out", keyfile]);
    expect_code(&o, 0);
    let o = run_in(dir, &["keys", "show", keyfile, "--json"]);
    expect_code(&o, 0);
    let public = json(&o)["public"].as_str().unwrap().to_string();
    let name = format!("{keyfile}.trust.json");
    fs::write(
        dir.join(&name),
        format!(r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"other","key":"{public}"}}]}}"#),
    )
    .unwrap();
    name
}

#[test]
fn the_wrong_trust_root_is_key_unknown() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar.gz");
    let other = trust_root_for_new_key(d.path(), "other.key");
    let o = run_in(d.path(), &["verify", "pack.tar.gz", "--trust-root", &other, "--json"]);
    expect_code(&o, 1);
    let v = json(&o);
    assert_eq!(v["error"]["code"], "KEY_UNKNOWN");
    assert_eq!(v["error"]["record_index"], 0);
    assert_eq!(v["records_verified"], 0);
}

#[test]
fn stdin_is_dash() {
    let d = TempDir::new().unwrap();
    let pack = sample(d.path(), "pack.tar.zst");
    for sub in ["verify", "inspect"] {
        let mut args = vec![sub, "-", "--json"];
        if sub == "verify" {
            args.extend(["--trust-root", "trust.json"]);
        }
        let mut child = bin()
            .current_dir(d.path())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let data = fs::read(&pack).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let o = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        expect_code(&o, 0);
        let v = json(&o);
        assert_eq!(v["pack"], "-");
        if sub == "verify" {
            assert_eq!(v["verified"], true);
        }
    }
}

#[test]
fn inspect_prints_decision_trees_and_claims_nothing() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar");
    let o = run_in(d.path(), &["inspect", "pack.tar"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.starts_with("NOT VERIFIED"), "{text}");
    assert!(text.contains("INTENT send_email (json) args"), "{text}");
    assert!(text.contains("-> #5 DECISION ALLOW POLICY_ALLOW"), "{text}");
    assert!(text.contains("EFFECT succeeded output"), "{text}");
    assert!(
        text.contains("DECISION ESCALATE POLICY_ESCALATE: quorum 2 of role approver"),
        "{text}"
    );
    assert!(text.contains("APPROVAL 2 approvers"), "{text}");
    assert!(text.contains("DECISION DENY POLICY_DENY"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("VERIFIED")), "{text}");

    let o = run_in(
        d.path(),
        &["inspect", "pack.tar", "--json", "--session", "session-000001"],
    );
    expect_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["verification"], "none");
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    let intents = sessions[0]["intents"].as_array().unwrap();
    assert_eq!(intents.len(), 10);
    assert_eq!(intents[0]["tool"], "send_email");
    assert_eq!(intents[0]["decisions"][0]["verdict"], "ALLOW");
    assert_eq!(intents[0]["decisions"][0]["effects"][0]["status"], "succeeded");
}

#[test]
fn inspect_fails_on_a_malformed_archive() {
    let d = TempDir::new().unwrap();
    let pack = sample(d.path(), "pack.tar");
    let mut bytes = fs::read(pack).unwrap();
    bytes[0] ^= 0x01; // the first header's checksum no longer matches
    fs::write(d.path().join("bad.tar"), &bytes).unwrap();
    let o = run_in(d.path(), &["inspect", "bad.tar"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("checksum"), "{}", stderr(&o));
    fs::write(d.path().join("short.tar"), &bytes[..700]).unwrap();
    let o = run_in(d.path(), &["inspect", "short.tar"]);
    expect_code(&o, 1);
}

#[test]
fn keys_generate_is_private_and_show_hides_the_secret() {
    let d = TempDir::new().unwrap();
    let o = run_in(d.path(), &["keys", "generate", "--out", "k.json", "--name", "kernel-9"]);
    expect_code(&o, 0);
    let path = d.path().join("k.json");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let file: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["format"], "helm-key/1");
    assert_eq!(file["name"], "kernel-9");
    let secret = file["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert!(!stdout(&o).contains(&secret));

    for args in [vec!["keys", "show", "k.json"], vec!["keys", "show", "k.json", "--json"]] {
        let o = run_in(d.path(), &args);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(file["public"].as_str().unwrap()));
        assert!(!stdout(&o).contains(&secret), "{args:?}");
        assert!(!stderr(&o).contains(&secret), "{args:?}");
    }
    let o = run_in(d.path(), &["keys", "show", "k.json", "--secret"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains(&secret));

    // Never overwrites; two keys differ.
    let o = run_in(d.path(), &["keys", "generate", "--out", "k.json"]);
    expect_code(&o, 2);
    assert_eq!(
        serde_json::from_str::<Value>(&fs::read_to_string(&path).unwrap()).unwrap()["secret"],
        secret.as_str()
    );
    let o = run_in(d.path(), &["keys", "generate", "--out", "k2.json"]);
    expect_code(&o, 0);
    assert_ne!(fs::read(&path).unwrap(), fs::read(d.path().join("k2.json")).unwrap());
}

#[test]
fn export_records_round_trips_the_sample() {
    let d = TempDir::new().unwrap();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--sample",
            "2",
            "-o",
            "sample.tar.zst",
            "--trust-root-out",
            "trust.json",
            "--records-out",
            "run.cbor",
            "--blobs-out",
            "blobs",
            "--key-out",
            "kernel.key",
        ],
    );
    expect_code(&o, 0);
    assert_eq!(
        fs::metadata(d.path().join("kernel.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A stray file in the blob directory is ignored with a note.
    fs::write(d.path().join("blobs").join("README"), "not a blob").unwrap();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "run.cbor",
            "--blobs",
            "blobs",
            "--key",
            "kernel.key",
            "--trust-root",
            "trust.json",
            "-o",
            "again.tar.zst",
        ],
    );
    expect_code(&o, 0);
    assert!(stderr(&o).contains("ignored 1 entries"), "{}", stderr(&o));
    assert_eq!(
        fs::read(d.path().join("sample.tar.zst")).unwrap(),
        fs::read(d.path().join("again.tar.zst")).unwrap()
    );

    // Without --blobs every referenced blob is withheld, and the pack still verifies.
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "run.cbor",
            "--key",
            "kernel.key",
            "--trust-root",
            "trust.json",
            "-o",
            "withheld.tar",
        ],
    );
    expect_code(&o, 0);
    assert!(stderr(&o).contains("withheld"), "{}", stderr(&o));
    let o = run_in(
        d.path(),
        &["verify", "withheld.tar", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 0);
    assert_eq!(json(&o)["blobs"], 0);
    assert!(json(&o)["withheld"].as_u64().unwrap() > 0);

    // No records (empty standard input): exit 1, nothing written.
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "-",
            "--key",
            "kernel.key",
            "--trust-root",
            "trust.json",
            "-o",
            "empty.tar",
        ],
    );
    expect_code(&o, 1);
    assert!(!d.path().join("empty.tar").exists());

    // Records that do not frame: exit 1, nothing written.
    fs::write(d.path().join("junk.cbor"), b"\x01\x02\x03").unwrap();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "junk.cbor",
            "--key",
            "kernel.key",
            "--no-verify",
            "-o",
            "junk.tar",
        ],
    );
    expect_code(&o, 1);
    assert!(!d.path().join("junk.tar").exists());

    // A producer key the records never published: refused (exit 1), nothing written...
    let _ = trust_root_for_new_key(d.path(), "stranger.key");
    let args = |out: &'static str| {
        vec![
            "export",
            "--records",
            "run.cbor",
            "--key",
            "stranger.key",
            "--trust-root",
            "trust.json",
            "-o",
            out,
        ]
    };
    let o = run_in(d.path(), &args("stranger.tar"));
    expect_code(&o, 1);
    assert!(stderr(&o).contains("PACK_MANIFEST_SIGNER"), "{}", stderr(&o));
    assert!(!d.path().join("stranger.tar").exists());
    // ...unless --no-verify, and then verify finds the same fault.
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "run.cbor",
            "--key",
            "stranger.key",
            "--no-verify",
            "-o",
            "stranger.tar",
        ],
    );
    expect_code(&o, 0);
    let o = run_in(
        d.path(),
        &["verify", "stranger.tar", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 1);
    assert_eq!(json(&o)["error"]["code"], "PACK_MANIFEST_SIGNER");
}

#[test]
fn export_refuses_to_overwrite_without_force() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar");
    fs::write(d.path().join("keep.tar"), "precious").unwrap();
    let o = run_in(d.path(), &["export", "--sample", "1", "-o", "keep.tar"]);
    expect_code(&o, 2);
    assert_eq!(fs::read(d.path().join("keep.tar")).unwrap(), b"precious");
    let o = run_in(d.path(), &["export", "--sample", "1", "-o", "keep.tar", "--force"]);
    expect_code(&o, 0);
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn withheld_blobs_are_reported() {
    let d = TempDir::new().unwrap();
    let o = run_in(
        d.path(),
        &["export", "--sample", "1", "-o", "a.tar", "--blobs-out", "blobs"],
    );
    expect_code(&o, 0);
    let mut names: Vec<String> = fs::read_dir(d.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--sample",
            "1",
            "-o",
            "w.tar",
            "--withhold",
            &names[0],
            "--withhold",
            &names[1],
            "--trust-root-out",
            "trust.json",
        ],
    );
    expect_code(&o, 0);
    let o = run_in(d.path(), &["verify", "w.tar", "--trust-root", "trust.json", "--json"]);
    expect_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["withheld"], 2);
    assert_eq!(v["withheld_first"], serde_json::json!([names[0], names[1]]));
    assert_eq!(v["blobs"].as_u64().unwrap() as usize, names.len() - 2);
}

#[test]
fn usage_errors_are_exit_2() {
    let d = TempDir::new().unwrap();
    for args in [
        vec![],
        vec!["verify"],
        vec!["verify", "x.tar"],
        vec!["frobnicate"],
        vec!["verify", "x.tar", "--trust-root", "t", "--max-memory", "lots"],
        vec!["export", "-o", "x.tar"],
        vec!["export", "--records", "r", "--key", "k", "-o", "x.tar"],
        vec![
            "export",
            "--sample",
            "1",
            "--records-out",
            "r",
            "--records",
            "r",
            "-o",
            "x",
        ],
        vec!["keys", "generate"],
    ] {
        let o = run_in(d.path(), &args);
        expect_code(&o, 2);
    }
    expect_code(&run_in(d.path(), &["--version"]), 0);
}

#[test]
fn broken_pipe_is_not_an_error() {
    let d = TempDir::new().unwrap();
    sample(d.path(), "pack.tar");
    for (args, want) in [
        (vec!["verify", "pack.tar", "--trust-root", "trust.json"], 0),
        (vec!["inspect", "pack.tar"], 0),
    ] {
        let mut child = bin()
            .current_dir(d.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away
        let o = child.wait_with_output().unwrap();
        expect_code(&o, want);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn help_lists_each_subcommands_key_flags() {
    let d = TempDir::new().unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--help"], &["verify", "inspect", "export", "keys", "Exit status"]),
        (
            &["verify", "--help"],
            &["--trust-root <FILE>", "--json", "--max-memory <BYTES>", "<PACK>"],
        ),
        (
            &["inspect", "--help"],
            &["--json", "--session <ID>", "WITHOUT verifying"],
        ),
        (
            &["export", "--help"],
            &[
                "--out <OUT>",
                "--records <FILE>",
                "--blobs <DIR>",
                "--key <KEYFILE>",
                "--sample <SESSIONS>",
                "--trust-root-out <FILE>",
                "--compress <WRAPPER>",
                "--withhold <HEX>",
                "--no-verify",
                "--force",
            ],
        ),
        (
            &["keys", "generate", "--help"],
            &["--out <FILE>", "--name <NAME>", "--role <ROLE>", "0600"],
        ),
        (&["keys", "show", "--help"], &["--secret", "--json", "<FILE>"]),
    ];
    for (args, wants) in cases {
        let o = run_in(d.path(), args);
        expect_code(&o, 0);
        let text = stdout(&o);
        for w in wants {
            assert!(text.contains(w), "{args:?} help lacks {w:?}:\n{text}");
        }
    }
}

/// Every pack vector of test-vectors/packs, through the real binary: the verdict, the
/// exit status, and the error code (the record's own code for record failures, else
/// the pack code) or the record count and root.
#[test]
fn pack_vectors_give_their_expected_verdicts() {
    let dir = helm_test_vectors::vectors_dir().join("packs");
    let index: Value = serde_json::from_str(&fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let tmp = TempDir::new().unwrap();
    let packs = index["packs"].as_array().unwrap();
    assert!(packs.len() >= 20);
    for (i, v) in packs.iter().enumerate() {
        let id = v["id"].as_str().unwrap();
        let anchors: Vec<String> = v["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(j, k)| format!(r#"{{"name":"anchor-{j}","key":"ed25519:{}"}}"#, k.as_str().unwrap()))
            .collect();
        let trust = tmp.path().join(format!("trust-{i}.json"));
        fs::write(
            &trust,
            format!(r#"{{"format":"helm-trust-root/1","anchors":[{}]}}"#, anchors.join(",")),
        )
        .unwrap();
        let pack = dir.join(v["file"].as_str().unwrap());
        let o = bin()
            .args(["verify", "--json", "--trust-root"])
            .arg(&trust)
            .arg(&pack)
            .output()
            .unwrap();
        let report = json(&o);
        match v["expect"]["result"].as_str().unwrap() {
            "accept" => {
                assert_eq!(code(&o), 0, "{id}: {report}");
                assert_eq!(report["records"], v["expect"]["records"], "{id}");
                assert_eq!(report["records_root"], v["expect"]["root"], "{id}");
            }
            "reject" => {
                assert_eq!(code(&o), 1, "{id}: {report}");
                assert_eq!(report["error"]["code"], v["expect"]["error"], "{id}: {report}");
            }
            other => panic!("{id}: unknown result {other}"),
        }
    }
}

#[test]
fn partial_export_verifies_and_says_what_it_proves() {
    let d = TempDir::new().unwrap();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--sample",
            "3",
            "-o",
            "full.tar",
            "--trust-root-out",
            "trust.json",
            "--records-out",
            "run.cbor",
            "--blobs-out",
            "blobs",
            "--key-out",
            "kernel.key",
        ],
    );
    expect_code(&o, 0);
    let export = |extra: &[&str], out: &str| {
        let mut args = vec![
            "export",
            "--records",
            "run.cbor",
            "--blobs",
            "blobs",
            "--key",
            "kernel.key",
            "--trust-root",
            "trust.json",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        run_in(d.path(), &args)
    };
    let o = export(&["--session", "session-000001"], "s1.tar");
    expect_code(&o, 0);
    assert!(stdout(&o).contains("partial pack: "), "{}", stdout(&o));
    // Two processes, the same bytes.
    let o = export(&["--session", "session-000001", "--force"], "s1-again.tar");
    expect_code(&o, 0);
    assert_eq!(
        fs::read(d.path().join("s1.tar")).unwrap(),
        fs::read(d.path().join("s1-again.tar")).unwrap()
    );

    let o = run_in(d.path(), &["verify", "s1.tar", "--trust-root", "trust.json"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("partial pack: "), "{text}");
    assert!(text.contains("proven against checkpoint"), "{text}");
    assert!(text.contains("not proven"), "{text}");
    let o = run_in(d.path(), &["verify", "s1.tar", "--trust-root", "trust.json", "--json"]);
    expect_code(&o, 0);
    let v = json(&o);
    let p = &v["partial"];
    assert_eq!(p["selection"]["session"], "session-000001");
    assert_eq!(p["records"].as_u64().unwrap() + 1, v["records"].as_u64().unwrap());
    assert_eq!(p["position"], p["of"]);
    assert_eq!(p["checkpoint"], v["head"]);
    assert_eq!(v["sessions"], 1);
    let full = run_in(
        d.path(),
        &["verify", "full.tar", "--trust-root", "trust.json", "--json"],
    );
    assert_eq!(json(&full)["partial"], Value::Null);
    assert_eq!(p["of"].as_u64().unwrap() + 1, json(&full)["records"].as_u64().unwrap());

    let o = export(
        &["--since", "2026-01-01T00:01:20Z", "--until", "2026-01-01T00:02:10.500Z"],
        "range.tar.zst",
    );
    expect_code(&o, 0);
    let o = run_in(
        d.path(),
        &["verify", "range.tar.zst", "--trust-root", "trust.json", "--json"],
    );
    expect_code(&o, 0);
    assert_eq!(json(&o)["partial"]["selection"]["until_ms"], 1_767_225_730_500u64);

    let o = run_in(d.path(), &["inspect", "s1.tar", "--json"]);
    expect_code(&o, 0);
    let v = json(&o);
    assert_eq!(v["manifest"]["partial"]["session"], "session-000001");
    let intent = &v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session"] == "session-000001")
        .unwrap()["intents"][0];
    assert!(intent["position"].as_u64().unwrap() >= intent["index"].as_u64().unwrap());
    let o = run_in(d.path(), &["inspect", "s1.tar"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("partial pack  claims"), "{}", stdout(&o));

    // Nothing selected, and a selection the last CHECKPOINT does not cover: exit 1,
    // nothing written.
    let o = export(&["--session", "no-such-session"], "none.tar");
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no record matches"), "{}", stderr(&o));
    assert!(!d.path().join("none.tar").exists());
    let records = fs::read(d.path().join("run.cbor")).unwrap();
    let mut framed = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let n = pack_format::record_len(&records[pos..]).unwrap().unwrap();
        framed.push(&records[pos..pos + n]);
        pos += n;
    }
    fs::write(d.path().join("cut.cbor"), framed[..framed.len() - 1].concat()).unwrap();
    let o = run_in(
        d.path(),
        &[
            "export",
            "--records",
            "cut.cbor",
            "--key",
            "kernel.key",
            "--no-verify",
            "--session",
            "session-000002",
            "-o",
            "cut.tar",
        ],
    );
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no checkpoint covers record"), "{}", stderr(&o));
}
