//! `helm-airgap replay`: a kernel runs WASM tools (in process), the store is exported
//! with `export --store`, and `replay` re-executes every sandboxed EFFECT offline: all
//! match; a run stopped by the wall clock is reported as not replayable; an EFFECT whose
//! output was recorded falsely (validly signed) fails the replay, naming the record.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use helm_kernel::clock::ManualClock;
use helm_kernel::keyfile::KeyFile;
use helm_kernel::signer::KeyFileSigner;
use helm_kernel::{Args, Kernel, KernelConfig, Proposal, Status, WasmTool};
use verify_core::{body, Kind, RecordBuilder, TrustAction};

fn run(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_helm-airgap"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "$ helm-airgap {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn module(name: &str) -> Vec<u8> {
    wat::parse_file(format!("{}/../kernel/tests/wat/{name}.wat", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// PUBLIC TEST KEYS: seeds derived from public strings.
fn key(name: &str) -> KeyFile {
    let seed = verify_core::sha256(format!("HELM AIRGAP TEST KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes());
    KeyFile::from_seed(name.into(), "kernel".into(), seed)
}

const BUNDLE: &str = r#"
name = "wasm"
other_tools = "deny"

[[rule]]
id = "tools"
tools = ["wasm/*"]
verdict = "allow"
"#;

/// A store with three sandboxed runs (two replayable, one stopped by the clock) and,
/// if `forge`, one EFFECT whose output the kernel recorded falsely.
fn store(d: &Path, forge: bool) {
    let root = key("root");
    let kernel = key("kernel");
    root.write_new(&d.join("root.key")).unwrap();
    kernel.write_new(&d.join("kernel.key")).unwrap();
    let mut b = RecordBuilder::new(
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &kernel.public, Some(&["kernel"]), None, None),
    );
    b.lamport = 1;
    let chain = b.sign(&root.signer());
    let out = run(
        d,
        &["keys", "trust-root", "--anchor", "root.key", "--out", "trust-root.json"],
    );
    assert!(out.status.success());
    let mut cfg = KernelConfig::new(
        d.join("store"),
        vec![root.public],
        chain,
        vec![guardian::Bundle::from_toml(BUNDLE).unwrap()],
    );
    let limits = helm_sandbox::Limits::DEFAULT;
    cfg.wasm_tools = vec![
        WasmTool {
            tool: "wasm/echo".into(),
            module: module("random-echo"),
            sha256: None,
            limits,
            args: vec![],
            env: vec![],
        },
        WasmTool {
            tool: "wasm/spin".into(),
            module: module("spin"),
            sha256: None,
            limits: helm_sandbox::Limits {
                fuel: u64::MAX / 2,
                wall_ms: 30,
                ..limits
            },
            args: vec![],
            env: vec![],
        },
    ];
    let signer = KeyFileSigner::from_key(&kernel, "test key".into());
    let (k, _) = Kernel::open(cfg, Arc::new(signer), Arc::new(ManualClock::new(1_800_000_000_000))).unwrap();
    let call = |tool: &str, text: &str| Proposal {
        tool: tool.into(),
        args: Args::Json(serde_json::json!({ "text": text })),
        principal: "agent".into(),
        session: "s".into(),
        call_id: None,
    };
    for text in ["one", "two"] {
        assert_eq!(
            k.call_tool(&call("wasm/echo", text)).status.as_deref(),
            Some("succeeded")
        );
    }
    assert_eq!(
        k.call_tool(&call("wasm/spin", "x")).stopped.as_deref(),
        Some("TIME_EXHAUSTED")
    );
    if forge {
        let honest = k.call_tool(&call("wasm/echo", "three"));
        let records = {
            let mut v = Vec::new();
            helm_kernel::store::read_records(&d.join("store/records"), |_, r| {
                v.push(r.to_vec());
                Ok::<(), helm_kernel::store::StoreError>(())
            })
            .unwrap();
            v
        };
        let last = verify_core::Record::decode(records.last().unwrap()).unwrap();
        let verify_core::Body::Effect { executor, .. } = last.body else {
            panic!("not an EFFECT")
        };
        let a = k.evaluate(&call("wasm/echo", "three"));
        assert_eq!(a.status, Status::Allow);
        k.report_effect(&helm_kernel::EffectReport {
            intent: hex::decode(a.intent.unwrap()).unwrap().try_into().unwrap(),
            principal: "agent".into(),
            status: verify_core::EffectStatus::Succeeded,
            output: helm_sandbox::encode_output(Some(0), b"not what the module printed", b""),
            executor: executor.to_owned(),
            meters: vec![("fuel".into(), honest.fuel_used.unwrap())],
            ext: last.ext.map(<[u8]>::to_vec),
            blobs: vec![],
        })
        .unwrap();
    }
    k.checkpoint().unwrap();
}

fn export(d: &Path) {
    let out = run(
        d,
        &[
            "export",
            "--store",
            "store",
            "--key",
            "kernel.key",
            "--trust-root",
            "trust-root.json",
            "-o",
            "run.tar.zst",
        ],
    );
    assert!(out.status.success());
}

#[test]
fn honest_runs_replay_and_a_falsely_recorded_output_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d, false);
    export(d);
    let out = run(
        d,
        &["replay", "run.tar.zst", "--trust-root", "trust-root.json", "--json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["effects"].as_u64(), j["matched"].as_u64()),
        (Some(3), Some(2)),
        "{j}"
    );
    assert_eq!(j["mismatched"].as_u64(), Some(0));
    assert!(j["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["verdict"] == "not-replayable"));
    let human = run(d, &["replay", "run.tar.zst", "--trust-root", "trust-root.json"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("every replayable effect matched"));

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    store(d, true);
    export(d);
    // The pack verifies (the kernel key signed the lie) ...
    assert!(run(d, &["verify", "run.tar.zst", "--trust-root", "trust-root.json"])
        .status
        .success());
    // ... but the replay does not match, and names the record.
    let out = run(d, &["replay", "run.tar.zst", "--trust-root", "trust-root.json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MISMATCH record #"), "{text}");
}
