//! The OpenAI-compatible proxy end to end: the real `helm-proxy` binary in front of a
//! scripted OpenAI-compatible upstream (`openai_py/upstream.py`, on loopback), driven by
//! the official `openai` Python client (`openai_py/test_*.py`, run by pytest): allowed,
//! denied, escalated (approved over HTTP, then allowed), malformed and truncated calls,
//! parallel calls, streams split anywhere, reused indices, custom tools, hosted tools,
//! upstream errors; both deny modes; a restart on the same store. Then the stores are
//! verified record by record, every decision replayed, the pack exported, verified and
//! replayed by `helm-airgap`, and the upstream key looked for (and not found) in the
//! logs and the stores.
//!
//! Needs `python3` with `openai`, `pytest` and `cryptography`
//! (`pip install -r proxy/tests/openai_py/requirements.txt`). Without them the test is
//! skipped with a note, unless `HELM_REQUIRE_OPENAI_PY=1` (CI sets it): then it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use verify_core::{Body, Kind, Record, Verdict};

/// The upstream's API key in these tests (a PUBLIC test value).
const UPSTREAM_KEY: &str = "sk-upstream-test-KEY-never-in-records-3f9c";

pub const OAI_BUNDLE: &str = r#"
name = "openai-proxy-test"
other_tools = "deny"

[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]

[[rule]]
id = "shell-ls"
tools = ["shell"]
verdict = "allow"
require = ["args.cmd == 'ls'"]

[[rule]]
id = "no-rm"
tools = ["shell"]
verdict = "deny"
require = ["args.cmd == 'rm'"]

[[rule]]
id = "deploy-needs-approval"
tools = ["deploy"]
verdict = "escalate"
require = ["true"]
escalation = { role = "approver", quorum = 1, timelock_ms = 0, ttl_ms = 600000 }

[[rule]]
id = "hosted-web-search"
tools = ["hosted/web_search", "hosted/code_interpreter"]
verdict = "allow"
require = ["true"]

[[rule]]
id = "patch"
tools = ["apply_patch"]
verdict = "allow"
require = ["args contains '*** Begin Patch'"]
"#;

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_py")
}

/// Whether python3 has what the tests need; `None` with the reason otherwise.
fn python_ready() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import openai, pytest, cryptography"])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The scripted upstream (killed when dropped).
struct Upstream {
    child: Child,
    url: String,
}

impl Upstream {
    /// Plain HTTP, or HTTPS with a throwaway CA written to `tls_ca`.
    fn start(tls_ca: Option<&Path>) -> Upstream {
        let mut cmd = Command::new("python3");
        cmd.arg(py_dir().join("upstream.py"));
        if let Some(ca) = tls_ca {
            cmd.arg("--tls").arg(ca);
        }
        let mut child = cmd
            .env("HELM_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().strip_prefix("upstream listening on ").unwrap().to_owned();
        Upstream { child, url }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A setup with the test bundle, the upstream key in a 0600 file and an `[openai]`
/// section (`extra` appended to it); `store` is added to `[store]`.
fn setup(upstream: &str, mode: &str, extra: &str, store: &str) -> Setup {
    let s = Setup::with_config(store);
    let bundle = guardian::Bundle::from_toml(OAI_BUNDLE).unwrap();
    std::fs::write(
        s.path().join("bundle.signed"),
        guardian::sign_bundle(&bundle, &signer("author-1")),
    )
    .unwrap();
    let key = s.path().join("upstream.key");
    std::fs::write(&key, format!("{UPSTREAM_KEY}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut config = std::fs::read_to_string(s.config()).unwrap();
    config.push_str(&format!(
        r#"
[openai]
upstream = "{upstream}/v1"
api_key_file = "upstream.key"
deny_mode = "{mode}"
pending_wait_ms = 300
hosted_tools = ["web_search", "file_search"]
keepalive_ms = 100
timeout_ms = 20000
max_request_bytes = 262144
{extra}
"#
    ));
    std::fs::write(s.config(), config).unwrap();
    s
}

fn pytest(args: &[&str], env: &[(&str, String)]) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-q", "-rs"])
        .args(args)
        .current_dir(py_dir())
        .env("HELM_TEST_UPSTREAM_KEY", UPSTREAM_KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ pytest {}\n{text}", args.join(" "));
    assert!(out.status.success(), "pytest failed:\n{text}");
}

/// Checks the store: verifies, replays, holds no upstream key; returns the records.
fn check_store(setup: &Setup, log: &str) -> Vec<Vec<u8>> {
    let records = store_records(&setup.store());
    verify(&records);
    let blobs = store_blobs(&setup.store());
    replay(&records, &blobs);
    let key = UPSTREAM_KEY.as_bytes();
    let contains = |hay: &[u8]| hay.windows(key.len()).any(|w| w == key);
    assert!(!records.iter().any(|r| contains(r)), "the upstream key is in a record");
    assert!(!blobs.values().any(|b| contains(b)), "the upstream key is in a blob");
    assert!(!log.contains(UPSTREAM_KEY), "the upstream key is in the log");
    airgap_export_verify_replay(setup);
    records
}

#[test]
fn openai_clients_through_the_governed_proxy() {
    if let Err(why) = python_ready() {
        let msg = format!(
            "python3 with openai, pytest and cryptography is needed \
             (pip install -r proxy/tests/openai_py/requirements.txt): {why}"
        );
        if std::env::var_os("HELM_REQUIRE_OPENAI_PY").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let upstream = Upstream::start(None);
    let main = setup(&upstream.url, "rewrite", "", "");
    // Deny mode error on a buffered store (the kernel is then called inline).
    let strict = setup(&upstream.url, "error", "", "durability = \"buffered\"");
    let server = main.start();
    let strict_server = strict.start();
    // An HTTPS upstream, trusted through ca_file (rustls).
    let ca = tempfile::tempdir().unwrap();
    let ca_file = ca.path().join("ca.pem");
    let tls_upstream = Upstream::start(Some(&ca_file));
    assert!(tls_upstream.url.starts_with("https://"));
    let tls = setup(
        &tls_upstream.url,
        "rewrite",
        &format!("ca_file = {:?}", ca_file.display().to_string()),
        "",
    );
    let tls_server = tls.start();
    // The same HTTPS upstream without its CA: refused (502), never reached in clear.
    let untrusted = setup(&tls_upstream.url, "rewrite", "", "");
    let untrusted_server = untrusted.start();
    let state = tempfile::tempdir().unwrap();
    let env = |base: &str, strict_base: &str| {
        vec![
            ("HELM_PROXY_URL", base.to_owned()),
            ("HELM_PROXY_ERROR_URL", strict_base.to_owned()),
            ("HELM_UPSTREAM_URL", upstream.url.clone()),
            ("HELM_AGENT_TOKEN", AGENT_TOKEN.to_owned()),
            ("HELM_APPROVER_TOKEN", APPROVER_TOKEN.to_owned()),
            ("HELM_STATE_DIR", state.path().display().to_string()),
            ("HELM_PROXY_TLS_URL", tls_server.base.clone()),
            ("HELM_PROXY_UNTRUSTED_URL", untrusted_server.base.clone()),
        ]
    };
    pytest(&["-m", "not after_restart"], &env(&server.base, &strict_server.base));

    // Restart on the same store: the call ids are still known.
    let log = server.log_text();
    assert!(server.terminate().success());
    let server = main.start();
    pytest(&["-m", "after_restart"], &env(&server.base, &strict_server.base));
    let log = format!("{log}{}", server.log_text());
    assert!(server.terminate().success());
    let strict_log = strict_server.log_text();
    assert!(strict_server.terminate().success());

    let records = check_store(&main, &log);
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let count = |k: Kind| decoded.iter().filter(|r| r.kind == k).count();
    let reasons: Vec<&str> = decoded
        .iter()
        .filter_map(|r| match r.body {
            Body::Decision { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    for r in [
        "POLICY_ALLOW",
        "POLICY_DENY",
        "POLICY_ESCALATE",
        "INVALID_ARGUMENTS",
        "TRUNCATED_ARGUMENTS",
        "TOOL_NOT_ALLOWED",
    ] {
        assert!(reasons.contains(&r), "no DECISION {r}: {reasons:?}");
    }
    assert!(count(Kind::Approval) >= 1);
    // Effects: read (once, though sent three times), deploy, two Responses results, the
    // result given with previous_response_id (the proxy's [HELM] outputs are not effects).
    assert_eq!(count(Kind::Effect), 5, "EFFECTs");
    // Violations: the forged result, the denied call's result after the restart.
    assert_eq!(count(Kind::Violation), 2, "VIOLATIONs");
    let allows = decoded
        .iter()
        .filter(|r| {
            matches!(
                r.body,
                Body::Decision {
                    verdict: Verdict::Allow,
                    ..
                }
            )
        })
        .count();
    assert!(allows >= 8, "ALLOW decisions: {allows}");
    check_store(&strict, &strict_log);
}
