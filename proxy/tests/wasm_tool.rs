//! `[[wasm_tool]]` over HTTP: an allowed call of a WASM-backed tool runs in the kernel's
//! sandbox and `/v1/evaluate` returns its output; a denied call never runs; the store
//! verifies, and the exported pack's sandboxed effect replays with `helm-airgap replay`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn a_wasm_tool_runs_when_allowed_and_replays_offline() {
    let setup = Setup::new();
    let d = setup.path();
    let module = wat::parse_file(format!(
        "{}/../kernel/tests/wat/random-echo.wat",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    std::fs::write(d.join("echo.wasm"), &module).unwrap();
    let sha = hex::encode(verify_core::sha256(&module));
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[[wasm_tool]]\ntool = \"read_file\"\nmodule = \"echo.wasm\"\nsha256 = \"{sha}\"\nfuel = 1000000\nwall_ms = 1000\n"
    ));
    std::fs::write(setup.config(), &config).unwrap();

    let server = setup.start();
    let c = server.client();
    let r = c.evaluate("read_file", json!({"path": "/workspace/a.txt"}), "w1");
    assert_eq!(r.status, 200, "{:?}", r.json);
    let v: &Value = &r.json;
    assert_eq!(v["status"], "allow", "{v}");
    assert_eq!(v["sandbox"]["status"], "succeeded", "{v}");
    assert!(v["sandbox"]["effect"].is_string(), "{v}");
    assert!(
        v["sandbox"]["stdout"]
            .as_str()
            .unwrap()
            .ends_with(r#"{"path":"/workspace/a.txt"}"#),
        "{v}"
    );
    let denied = c.evaluate("read_file", json!({"path": "/etc/passwd"}), "w1");
    assert_eq!(denied.json["status"], "deny");
    assert!(denied.json["sandbox"]["effect"].is_null(), "a denied call never runs");
    server.terminate();

    let records = store_records(&setup.store());
    verify(&records);
    let Some(bin) = helm_airgap() else { return };
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let out = run(&[
        "export",
        "--store",
        "store",
        "--key",
        "kernel.key",
        "--trust-root",
        "trust-root.json",
        "-o",
        "w.tar",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["replay", "w.tar", "--trust-root", "trust-root.json", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["effects"].as_u64(), j["matched"].as_u64()),
        (Some(1), Some(1)),
        "{j}"
    );
}
