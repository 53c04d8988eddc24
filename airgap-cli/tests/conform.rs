//! `helm-airgap conform` against the Rust verifier (`helm-conformance-adapter`) and
//! against deliberately broken fake implementations (shell scripts).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

const ADAPTER: &str = env!("CARGO_BIN_EXE_helm-conformance-adapter");

/// A fake that claims L2 and L3 (not L1, so its L1 vectors are skipped), offers no
/// `batch`, and accepts everything with a wrong count and root.
const ALWAYS_ACCEPT: &str = r#"
case "$1" in
capabilities) echo '{"protocol": "helm-conformance/1", "levels": ["L2", "L3"], "commands": ["verify-records", "verify-pack", "verify-signature", "capabilities"]}' ;;
*) echo '{"result":"accept","count":0,"root":"00"}' ;;
esac
"#;

fn conform(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helm-airgap"))
        .current_dir(dir)
        .arg("conform")
        .args(args)
        .output()
        .unwrap()
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
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_string()
}

/// `conform: P passed, F failed[, S skipped]` → (P, F, S).
#[track_caller]
fn closing(o: &Output) -> (u64, u64, u64) {
    let line = last_line(o);
    let rest = line
        .strip_prefix("conform: ")
        .unwrap_or_else(|| panic!("closing line: {line}"));
    let nums: Vec<u64> = rest
        .split(", ")
        .map(|part| part.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let words: Vec<&str> = rest.split(", ").map(|p| p.split(' ').nth(1).unwrap()).collect();
    match words[..] {
        ["passed", "failed"] => (nums[0], nums[1], 0),
        ["passed", "failed", "skipped"] => {
            assert!(nums[2] > 0, "{line}");
            (nums[0], nums[1], nums[2])
        }
        _ => panic!("closing line: {line}"),
    }
}

/// The test vectors of the source tree.
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors")
}

/// Writes a POSIX shell script; it runs as `sh 'PATH'` (never executed directly, so a
/// file still open for writing in a concurrently forked test process cannot make
/// exec fail with ETXTBSY).
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    format!("sh '{}'", path.display())
}

#[test]
fn the_rust_verifier_passes_every_level() {
    // From a directory without test-vectors/: the default is the source tree's.
    let dir = TempDir::new().unwrap();
    let o = conform(dir.path(), &["--implementation", ADAPTER]);
    expect_code(&o, 0);
    let text = stdout(&o);
    for level in ["L1", "L2", "L3"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{level}: ")))
            .unwrap_or_else(|| panic!("no {level} line:\n{text}"));
        assert!(
            line.contains(" passed, 0 failed, 0 expected failures, 0 unexpected passes, 0 skipped (of "),
            "{line}"
        );
    }
    let (passed, failed, skipped) = closing(&o);
    assert!(passed > 1000, "{passed}");
    assert_eq!((failed, skipped), (0, 0));
    // Passing vectors are listed only with --verbose.
    assert_eq!(text.lines().count(), 4, "{text}");

    let o = conform(dir.path(), &["--implementation", ADAPTER, "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["ok"], true);
    assert_eq!(j["batch"], true);
    assert_eq!(j["protocol"], "helm-conformance/1");
    assert_eq!(j["capabilities"]["levels"], serde_json::json!(["L1", "L2", "L3"]));
    assert_eq!(j["passed"], passed);
    assert_eq!((j["failed"].as_u64(), j["skipped"].as_u64()), (Some(0), Some(0)));
    for level in ["L1", "L2", "L3"] {
        let c = &j["levels"][level];
        assert!(c["total"].as_u64().unwrap() > 0, "{level}");
        assert_eq!(c["pass"], c["total"], "{level}");
    }
    let vectors = j["vectors"].as_array().unwrap();
    assert_eq!(vectors.len() as u64, passed);
    assert!(vectors.iter().all(|v| v["status"] == "PASS" && v["reason"].is_null()));
    for prefix in ["records/", "packs/", "ed25519/"] {
        assert!(
            vectors.iter().any(|v| v["id"].as_str().unwrap().starts_with(prefix)),
            "{prefix}"
        );
    }
}

#[test]
fn one_process_per_vector_gives_the_same_results() {
    // The adapter behind a path with a space, quoted as a shell would.
    let dir = TempDir::new().unwrap();
    let spaced = dir.path().join("my adapter");
    fs::create_dir(&spaced).unwrap();
    std::os::unix::fs::symlink(ADAPTER, spaced.join("adapter")).unwrap();
    let cmd = format!("'{}/adapter'", spaced.display());
    let vectors = vectors_dir();
    let o = conform(
        dir.path(),
        &[
            "--implementation",
            &cmd,
            "--no-batch",
            "--level",
            "L3",
            "--vectors",
            vectors.to_str().unwrap(),
            "--json",
        ],
    );
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["batch"], false);
    assert_eq!(j["levels"].as_object().unwrap().len(), 1);
    let c = &j["levels"]["L3"];
    assert!(c["total"].as_u64().unwrap() > 0);
    assert_eq!(c["pass"], c["total"]);
}

#[test]
fn an_expected_failure_that_passes_fails_the_run() {
    let dir = TempDir::new().unwrap();
    fs::write(
        dir.path().join("xfail.txt"),
        "# known gaps\n\n  records/valid/allow-then-effect   # it passes: XPASS\npacks/valid/renamed-away\n",
    )
    .unwrap();
    let vectors = vectors_dir();
    let args = [
        "--implementation",
        ADAPTER,
        "--expected-failures",
        "xfail.txt",
        "--level",
        "L1",
        "--vectors",
        vectors.to_str().unwrap(),
    ];
    let o = conform(dir.path(), &args);
    expect_code(&o, 1);
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("XPASS L1 records/valid/allow-then-effect: ")
                && l.contains(r#"got {"count": 10, "result": "accept", "root": "#)),
        "{text}"
    );
    assert!(
        text.contains("note: expected failure packs/valid/renamed-away names no vector"),
        "{text}"
    );
    let l1 = text.lines().find(|l| l.starts_with("L1: ")).unwrap();
    assert!(
        l1.contains(" passed, 0 failed, 0 expected failures, 1 unexpected passes, 0 skipped (of "),
        "{l1}"
    );
    let (passed, failed, skipped) = closing(&o);
    assert!(passed > 0);
    assert_eq!((failed, skipped), (1, 0));

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let o = conform(dir.path(), &json_args);
    expect_code(&o, 1);
    let j = json(&o);
    assert_eq!(j["ok"], false);
    assert_eq!(j["levels"]["L1"]["xpass"], 1);
    assert_eq!(
        j["unknown_expected_failures"],
        serde_json::json!(["packs/valid/renamed-away"])
    );
    let xpass: Vec<&Value> = j["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] == "XPASS")
        .collect();
    assert_eq!(xpass.len(), 1);
    assert_eq!(xpass[0]["id"], "records/valid/allow-then-effect");
}

#[test]
fn a_broken_implementation_fails() {
    let dir = TempDir::new().unwrap();
    let fake = script(dir.path(), "fake.sh", ALWAYS_ACCEPT);
    let o = conform(
        dir.path(),
        &["--implementation", &fake, "--vectors", vectors_dir().to_str().unwrap()],
    );
    expect_code(&o, 1);
    let text = stdout(&o);
    // Record vectors: expected vs got.
    assert!(
        text.lines().any(|l| l.starts_with("FAIL  L2 records/valid/")
            && l.contains(r#"got {"count": 0, "result": "accept", "root": "00"}"#)),
        "{text}"
    );
    // Pack vectors that should be rejected.
    assert!(
        text.lines().any(|l| l.starts_with("FAIL  L3 packs/invalid/")
            && l.contains(r#"expected {"error": "PACK_"#)
            && l.ends_with(r#"got {"error": null, "result": "accept"}"#)),
        "{text}"
    );
    // L1 is not claimed: skipped.
    assert!(text.lines().any(|l| l.starts_with("SKIP  L1 ed25519/")), "{text}");
    let l1 = text.lines().find(|l| l.starts_with("L1: ")).unwrap();
    assert!(
        l1.starts_with("L1: 0 passed, 0 failed, 0 expected failures, 0 unexpected passes, "),
        "{l1}"
    );
    let (passed, failed, skipped) = closing(&o);
    assert_eq!(passed, 0);
    assert!(failed > 0);
    assert!(
        l1.ends_with(&format!("{skipped} skipped (of {skipped})")),
        "{l1} / {skipped}"
    );
    assert!(!text.lines().any(|l| l.starts_with("PASS ")));
}

#[test]
fn expected_failures_do_not_fail_the_run() {
    let dir = TempDir::new().unwrap();
    let fake = script(dir.path(), "fake.sh", ALWAYS_ACCEPT);
    let vectors = vectors_dir();
    // Every L3 vector the fake fails, listed.
    let o = conform(
        dir.path(),
        &[
            "--implementation",
            &fake,
            "--level",
            "L3",
            "--vectors",
            vectors.to_str().unwrap(),
            "--json",
        ],
    );
    expect_code(&o, 1);
    let j = json(&o);
    let ids: Vec<String> = j["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["status"], "FAIL");
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(!ids.is_empty());
    fs::write(dir.path().join("xfail.txt"), ids.join("  # not yet\n")).unwrap();
    let o = conform(
        dir.path(),
        &[
            "--implementation",
            &fake,
            "--level",
            "L3",
            "--vectors",
            vectors.to_str().unwrap(),
            "--expected-failures",
            "xfail.txt",
        ],
    );
    expect_code(&o, 0);
    let text = stdout(&o);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("XFAIL L3 ")).count(),
        ids.len(),
        "{text}"
    );
    assert_eq!(last_line(&o), "conform: 0 passed, 0 failed");
}

#[test]
fn internal_failures_and_timeouts_fail_the_vector() {
    let dir = TempDir::new().unwrap();
    let fake = script(
        dir.path(),
        "fake.sh",
        r#"
case "$1" in
capabilities) echo '{"protocol": "helm-conformance/1", "levels": ["L3"], "commands": []}' ;;
verify-records) exec sleep 10 ;;
*) echo "cannot cope" >&2; exit 3 ;;
esac
"#,
    );
    let vectors = vectors_dir();
    let o = conform(
        dir.path(),
        &[
            "--implementation",
            &fake,
            "--timeout",
            "1",
            "--vectors",
            vectors.to_str().unwrap(),
        ],
    );
    expect_code(&o, 1);
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL  L3 records/") && l.ends_with(": internal failure: timed out after 1 s")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL  L3 packs/") && l.ends_with(": internal failure: exit status 3: cannot cope")),
        "{text}"
    );
}

#[test]
fn runner_errors_are_status_2_with_nothing_on_stdout() {
    let dir = TempDir::new().unwrap();
    let other = script(
        dir.path(),
        "other.sh",
        r#"echo '{"protocol": "helm-conformance/0", "levels": ["L1"], "commands": []}'"#,
    );
    let mute = script(dir.path(), "mute.sh", "exit 0");
    fs::write(dir.path().join("index.json"), "{not json").unwrap();
    let vectors = vectors_dir();
    let v = vectors.to_str().unwrap();
    for (args, message) in [
        (
            vec!["--implementation", "./no-such-adapter", "--vectors", v],
            "cannot run ./no-such-adapter",
        ),
        (
            vec!["--implementation", &other, "--vectors", v],
            "does not speak helm-conformance/1",
        ),
        (
            vec!["--implementation", &mute, "--vectors", v],
            "does not answer capabilities",
        ),
        (
            vec!["--implementation", ADAPTER, "--vectors", "."],
            "cannot read the vectors in .",
        ),
        (
            vec!["--implementation", ADAPTER, "--vectors", "missing"],
            "cannot read the vectors in missing",
        ),
        (
            vec![
                "--implementation",
                ADAPTER,
                "--vectors",
                v,
                "--expected-failures",
                "missing.txt",
            ],
            "expected-failures file missing.txt",
        ),
        (vec!["--implementation", "'unclosed"], "no closing quotation mark"),
        (vec!["--implementation", ADAPTER, "--level", "L4"], "L4"),
    ] {
        let mut args = args.clone();
        args.push("--json");
        let o = conform(dir.path(), &args);
        expect_code(&o, 2);
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
    // Without --vectors and without test-vectors/ here, the source tree's are used; a
    // test-vectors/ in the current directory wins.
    fs::create_dir(dir.path().join("test-vectors")).unwrap();
    fs::write(dir.path().join("test-vectors/index.json"), "[]").unwrap();
    let o = conform(dir.path(), &["--implementation", ADAPTER]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("cannot read the vectors in test-vectors"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_adapter_speaks_the_protocol() {
    let dir = TempDir::new().unwrap();
    let run = |args: &[&str]| {
        Command::new(ADAPTER)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["capabilities"]);
    expect_code(&o, 0);
    let caps = json(&o);
    assert_eq!(caps["protocol"], "helm-conformance/1");
    assert_eq!(caps["levels"], serde_json::json!(["L1", "L2", "L3"]));

    fs::write(dir.path().join("msg"), b"").unwrap();
    let o = run(&[
        "verify-signature",
        "--key",
        "00",
        "--signature",
        "00",
        "--message-file",
        "msg",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o), serde_json::json!({"result": "reject"}));
    let o = run(&[
        "verify-signature",
        "--key",
        "zz",
        "--signature",
        "00",
        "--message-file",
        "msg",
    ]);
    expect_code(&o, 2);
    assert!(o.stdout.is_empty());
    let o = run(&["verify-records", "--anchors", "missing.json", "--records", "r"]);
    expect_code(&o, 2);

    fs::write(
        dir.path().join("req.jsonl"),
        concat!(
            r#"{"id": 1, "argv": ["verify-signature", "--key", "00", "--signature", "00", "--message-file", "msg"]}"#,
            "\n",
            r#"{"id": "two", "argv": ["batch", "--input", "req.jsonl"]}"#,
            "\n",
            r#"{"id": 3, "argv": ["verify-pack", "--trust-root", "missing.json", "--pack", "p"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let o = run(&["batch", "--input", "req.jsonl"]);
    expect_code(&o, 0);
    let lines: Vec<Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], serde_json::json!({"id": 1, "output": {"result": "reject"}}));
    assert_eq!(lines[1]["id"], "two");
    assert!(lines[1]["internal_error"].is_string());
    assert_eq!(lines[2]["id"], 3);
    assert!(lines[2]["internal_error"].as_str().unwrap().contains("missing.json"));
}
