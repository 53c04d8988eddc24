//! WASM tools through the kernel: allowed calls run in the sandbox and their EFFECTs carry
//! the sandbox evidence; denied calls never run; every recorded run replays offline from
//! the store's blobs, and a kernel that records another output or fuel is caught.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use helm_kernel::clock::ManualClock;
use helm_kernel::signer::KeyFileSigner;
use helm_kernel::{Args, Kernel, Proposal, Status, WasmTool};
use helm_sandbox::{decode_ext, replay_effect, RecordedEffect, ReplayError, ReplayInputs, ReplayOptions, Sandbox};
use serde_json::json;
use verify_core::{Body, Hash, Record};

const BUNDLE: &str = r#"
name = "wasm-tools"
other_tools = "deny"

[[rule]]
id = "echo"
tools = ["wasm/echo", "wasm/spin", "wasm/spin-fuel"]
verdict = "allow"
require = ["not (args.text contains 'forbidden')"]
"#;

fn module(name: &str) -> Vec<u8> {
    wat::parse_file(format!("{}/tests/wat/{name}.wat", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn tools() -> Vec<WasmTool> {
    let limits = helm_sandbox::Limits::DEFAULT;
    vec![
        WasmTool {
            tool: "wasm/echo".into(),
            module: module("random-echo"),
            sha256: None,
            limits,
            args: vec!["echo".into()],
            env: vec![],
        },
        WasmTool {
            tool: "wasm/spin".into(),
            module: module("spin"),
            sha256: None,
            limits: helm_sandbox::Limits {
                fuel: u64::MAX / 2,
                wall_ms: 50,
                ..limits
            },
            args: vec![],
            env: vec![],
        },
        WasmTool {
            tool: "wasm/spin-fuel".into(),
            module: module("spin"),
            sha256: None,
            limits: helm_sandbox::Limits {
                fuel: 200_000,
                ..limits
            },
            args: vec![],
            env: vec![],
        },
    ]
}

fn open_wasm(dir: &std::path::Path, clock: &ManualClock) -> Kernel {
    let mut c = config(dir);
    c.bundles = vec![guardian::Bundle::from_toml(BUNDLE).unwrap()];
    c.wasm_tools = tools();
    let s = KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1");
    Kernel::open(c, Arc::new(s), Arc::new(clock.clone())).unwrap().0
}

fn call(tool: &str, text: &str) -> Proposal {
    Proposal {
        tool: tool.into(),
        args: Args::Json(json!({ "text": text })),
        principal: "agent-7".into(),
        session: "w".into(),
        call_id: None,
    }
}

fn blobs(dir: &std::path::Path) -> BTreeMap<Hash, Vec<u8>> {
    let mut out = BTreeMap::new();
    helm_kernel::store::read_records(&dir.join("blobs"), |_, f| {
        out.insert(f[..32].try_into().unwrap(), f[32..].to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

/// Replays every sandboxed EFFECT of the store; the verdict per EFFECT.
fn replay_all(records: &[Vec<u8>], blobs: &BTreeMap<Hash, Vec<u8>>) -> Vec<Result<(), ReplayError>> {
    let sandbox = Sandbox::new(helm_sandbox::SandboxConfig::default()).unwrap();
    let mut out = Vec::new();
    for bytes in records {
        let r = Record::decode(bytes).unwrap();
        let Body::Effect {
            status,
            args,
            output,
            executor,
            meters,
            ..
        } = r.body
        else {
            continue;
        };
        let ev = decode_ext(r.ext.unwrap()).unwrap();
        let recorded_output = &blobs[&output][16..];
        let recorded = RecordedEffect {
            evidence: &ev,
            status,
            executor,
            fuel_meter: meters.and_then(|m| m.get("fuel")),
            output: recorded_output,
        };
        let inputs = ReplayInputs {
            module: &blobs[&ev.module],
            input: &blobs[&args][16..],
            files: &[],
        };
        out.push(replay_effect(&sandbox, &recorded, &inputs, &ReplayOptions::default()).map(|_| ()));
    }
    out
}

#[test]
fn allowed_calls_run_denied_never_and_every_run_replays() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = open_wasm(dir.path(), &clock);
    assert_eq!(k.wasm_module("wasm/echo").unwrap().len(), 64);

    let a = k.call_tool(&call("wasm/echo", "hello"));
    assert_eq!(a.answer.status, Status::Allow);
    assert_eq!(a.status.as_deref(), Some("succeeded"));
    assert_eq!(
        &a.stdout[16..],
        br#"{"text":"hello"}"#,
        "stdin is the canonical arguments"
    );
    let b = k.call_tool(&call("wasm/echo", "hello"));
    assert_ne!(a.stdout[..16], b.stdout[..16], "each call draws its own seed");

    let denied = k.call_tool(&call("wasm/echo", "forbidden"));
    assert_eq!(denied.answer.status, Status::Deny);
    assert!(denied.effect.is_none(), "a denied call never runs");

    let spin = k.call_tool(&call("wasm/spin", "x"));
    assert_eq!(spin.stopped.as_deref(), Some("TIME_EXHAUSTED"));
    assert_eq!(spin.replayable, Some(false));
    let gas = k.call_tool(&call("wasm/spin-fuel", "x"));
    assert_eq!(gas.stopped.as_deref(), Some("GAS_EXHAUSTED"));
    assert_eq!(gas.replayable, Some(true));
    assert_eq!(gas.status.as_deref(), Some("aborted"));
    drop(k);

    let records = records(dir.path());
    verify(&records);
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let attested = decoded
        .iter()
        .filter(|r| {
            matches!(
                r.body,
                Body::Attestation {
                    subtype: "sandbox-module",
                    ..
                }
            )
        })
        .count();
    assert_eq!(attested, 2, "one ATTESTATION per distinct module");
    let verdicts = replay_all(&records, &blobs(dir.path()));
    assert_eq!(verdicts.len(), 4);
    assert_eq!(verdicts.iter().filter(|v| v.is_ok()).count(), 3, "{verdicts:?}");
    assert!(verdicts.iter().any(|v| matches!(v, Err(ReplayError::NotReplayable))));

    // A module that is not the declared one is refused at start.
    let mut c = config(dir.path());
    c.bundles = vec![guardian::Bundle::from_toml(BUNDLE).unwrap()];
    let mut t = tools();
    t[0].sha256 = Some([0; 32]);
    c.wasm_tools = t;
    let s = KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1");
    let err = Kernel::open(c, Arc::new(s), Arc::new(clock.clone())).unwrap_err();
    assert!(err.to_string().contains("not the declared"), "{err}");

    // A restart does not attest the modules again.
    let k = open_wasm(dir.path(), &clock);
    drop(k);
    let again: Vec<Vec<u8>> = common::records(dir.path());
    assert_eq!(again.len(), records.len());
}

#[test]
fn a_kernel_that_records_another_output_or_fuel_is_caught_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let k = open_wasm(dir.path(), &clock);
    // Run the tool honestly once to get genuine evidence, then record two lies with a
    // valid kernel signature: another output, and another fuel figure.
    let honest = k.call_tool(&call("wasm/echo", "a"));
    assert_eq!(honest.status.as_deref(), Some("succeeded"));
    let records = common::records(dir.path());
    let last = Record::decode(records.last().unwrap()).unwrap();
    let ext = last.ext.unwrap().to_vec();
    let Body::Effect { executor, .. } = last.body else {
        panic!("the last record is the EFFECT")
    };
    let executor = executor.to_owned();
    let ev = decode_ext(&ext).unwrap();
    for (output, fuel) in [
        (b"forged".to_vec(), ev.fuel_used),
        (honest_output(&honest), ev.fuel_used + 1),
    ] {
        let a = k.evaluate(&call("wasm/echo", "a"));
        let mut forged = ev.clone();
        forged.fuel_used = fuel;
        k.report_effect(&helm_kernel::EffectReport {
            intent: hex::decode(a.intent.unwrap()).unwrap().try_into().unwrap(),
            principal: "agent-7".into(),
            status: verify_core::EffectStatus::Succeeded,
            output,
            executor: executor.clone(),
            meters: vec![("fuel".into(), fuel)],
            ext: Some(helm_sandbox::encode_ext(&forged)),
            blobs: vec![],
        })
        .unwrap();
    }
    drop(k);
    let records = common::records(dir.path());
    verify(&records);
    let verdicts = replay_all(&records, &blobs(dir.path()));
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts[0].is_ok());
    assert!(
        matches!(&verdicts[1], Err(ReplayError::Mismatch(_))),
        "{:?}",
        verdicts[1]
    );
    assert!(
        matches!(&verdicts[2], Err(ReplayError::Mismatch(_))),
        "{:?}",
        verdicts[2]
    );
}

fn honest_output(run: &helm_kernel::ToolRun) -> Vec<u8> {
    helm_sandbox::encode_output(run.exit_code, &run.stdout, &run.stderr)
}
