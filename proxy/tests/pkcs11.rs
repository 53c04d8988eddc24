//! The server with its kernel key on a PKCS#11 token: SoftHSM2 as a real PKCS#11 peer.
//! The key is generated on the token, published in the trust chain, and named in the
//! configuration (`[signer] pkcs11 = {...}`, PIN from an environment variable); every
//! record the server writes must verify under it.
//!
//! Needs `softhsm2-util` and `libsofthsm2.so` (Debian package softhsm2). Without them the
//! test says "SKIPPED" on standard error and passes, unless `HELM_REQUIRE_SOFTHSM=1` (CI
//! sets it). `HELM_SOFTHSM_MODULE` names the module if it is not in a usual place.

#![cfg(feature = "pkcs11")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use helm_kernel::keyfile::key_string;
use helm_kernel::pkcs11::{Pin, Pkcs11Config, Pkcs11Signer};
use serde_json::json;
use verify_core::Record;

const TOKEN: &str = "helm-proxy-test";
const KEY: &str = "kernel-hsm";
const USER_PIN: &str = "1234-test-user-pin";
const PIN_ENV: &str = "HELM_PROXY_TEST_PKCS11_PIN";

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_module() -> Option<PathBuf> {
    if let Some(m) = std::env::var_os("HELM_SOFTHSM_MODULE") {
        return Some(PathBuf::from(m)).filter(|p| p.is_file());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

#[test]
fn server_signs_with_a_key_on_softhsm2() {
    let (Some(util), Some(module)) = (find_in_path("softhsm2-util"), find_module()) else {
        if std::env::var("HELM_REQUIRE_SOFTHSM").as_deref() == Ok("1") {
            panic!("HELM_REQUIRE_SOFTHSM=1 but softhsm2 is not installed (apt-get install softhsm2)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!! SKIPPED: softhsm2 not installed: the server's PKCS#11 test did not run.\n"
        );
        return;
    };
    let setup = Setup::new();
    let d = setup.path();
    // A token of our own, and the key generated on it.
    let tokens = d.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = d.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(util)
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            USER_PIN,
            "--so-pin",
            "5678-test-so-pin",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Read by the module in this process and inherited by the server.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    std::env::set_var(PIN_ENV, USER_PIN);
    let hsm_key =
        Pkcs11Signer::generate_key(&Pkcs11Config::new(&module, TOKEN, KEY, Pin::Env(PIN_ENV.into()))).unwrap();

    // The chain publishes the token's key as the kernel's; the configuration names it.
    std::fs::write(d.join("trust-chain.cbor"), chain_for(&hsm_key)).unwrap();
    let config = std::fs::read_to_string(setup.config()).unwrap().replace(
        "key_file = \"kernel.key\"",
        &format!(
            "pkcs11 = {{ module = \"{}\", token_label = \"{TOKEN}\", key_label = \"{KEY}\", pin_env = \"{PIN_ENV}\" }}",
            module.display()
        ),
    );
    std::fs::write(setup.config(), config).unwrap();
    let check = helm_proxy(&["check-config", "--config", "helm-proxy.toml"], d);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let server = setup.start();
    let c = server.client();
    let h = c.get("/healthz", None);
    assert_eq!(h.json["key"], key_string(&hsm_key), "{}", h.text);
    let a = c.evaluate("read_file", json!({"path": "/workspace/a.txt"}), "s1");
    assert_eq!(a.json["status"], "allow", "{}", a.text);
    let e = c.post(
        "/v1/effects",
        Some(AGENT_TOKEN),
        &json!({"intent": a.json["intent"], "status": "succeeded", "output": "ok"}),
    );
    assert_eq!(e.status, 200, "{}", e.text);
    assert!(server.terminate().success());

    let records = store_records(&setup.store());
    verify(&records);
    let by_hsm = records
        .iter()
        .filter(|r| Record::decode(r).unwrap().kid == hsm_key)
        .count();
    // POLICY, INTENT, DECISION, EFFECT and the final CHECKPOINT.
    assert!(by_hsm >= 5, "{by_hsm} records signed by the token's key");
    replay(&records, &store_blobs(&setup.store()));

    // A wrong PIN: the server does not start (configuration error, exit 2).
    std::env::set_var(PIN_ENV, "0000-wrong");
    let out = helm_proxy(&["serve", "--config", "helm-proxy.toml"], d);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
