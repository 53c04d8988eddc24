//! Shared fixtures for the server tests: PUBLIC TEST KEYS (seeds derived from public
//! strings: never use them for anything real), a trust root and chain built in the
//! test, a signed policy bundle, a configuration, the real `helm-proxy` binary on an
//! ephemeral loopback port, and a real HTTP client.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use core::time::Duration;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Instant;

use helm_kernel::keyfile::{key_string, KeyFile};
use serde_json::Value;
use verify_core::{body, sha256, Hash, Kind, OwnedTables, Record, RecordBuilder, Signer, TrustAction, Verifier};

/// A PUBLIC test key seed (never for real use).
pub fn test_seed(name: &str) -> [u8; 32] {
    sha256(format!("HELM PROXY TEST KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes())
}

pub fn signer(name: &str) -> Signer {
    Signer::from_seed(&test_seed(name))
}

/// API tokens of the tests (only their SHA-256 goes into the configuration).
pub const AGENT_TOKEN: &str = "test-token-agent-7";
pub const OTHER_AGENT_TOKEN: &str = "test-token-agent-8";
pub const APPROVER_TOKEN: &str = "test-token-approver";
pub const AUDITOR_TOKEN: &str = "test-token-auditor";

/// The test bundle: one allow, one deny, one escalate rule (timelock 400 ms).
pub const BUNDLE: &str = r#"
name = "proxy-test"
other_tools = "deny"

[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]

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
escalation = { role = "approver", quorum = 1, timelock_ms = 400, ttl_ms = 60000 }
"#;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// root-1 publishes kernel-1 (kernel), approver-1 (approver) and author-1 (policy-author).
pub fn chain() -> Vec<u8> {
    chain_for(&signer("kernel-1").public_key())
}

/// root-1 publishes `kernel` (kernel), approver-1 (approver) and author-1 (policy-author).
pub fn chain_for(kernel: &[u8; 32]) -> Vec<u8> {
    let root = signer("root-1");
    let t = now_ms() - 60_000;
    let mut out = Vec::new();
    let mut parent = None;
    for (i, (key, role)) in [
        (*kernel, "kernel"),
        (signer("approver-1").public_key(), "approver"),
        (signer("author-1").public_key(), "policy-author"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = RecordBuilder::new(
            Kind::TrustEvent,
            body::trust_event(TrustAction::Publish, key, Some(&[role]), None, None),
        );
        b.parents = parent.into_iter().collect();
        b.lamport = i as u64 + 1;
        b.time = t;
        b.principal = "root-1".into();
        b.seq = i as u64;
        let r = b.sign(&root);
        parent = Some(sha256(&r));
        out.extend_from_slice(&r);
    }
    out
}

/// A directory with a kernel key file, a trust root, a chain, the signed bundle and a
/// configuration (`helm-proxy.toml`) listening on an ephemeral loopback port.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with_config("")
    }

    /// With `extra` TOML appended to the `[store]` section.
    pub fn with_config(store_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        KeyFile::from_seed("kernel-1".into(), "kernel".into(), test_seed("kernel-1"))
            .write_new(&d.join("kernel.key"))
            .unwrap();
        std::fs::write(
            d.join("trust-root.json"),
            format!(
                r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"root-1","key":"{}"}}]}}"#,
                key_string(&signer("root-1").public_key())
            ),
        )
        .unwrap();
        std::fs::write(d.join("trust-chain.cbor"), chain()).unwrap();
        let bundle = guardian::Bundle::from_toml(BUNDLE).unwrap();
        std::fs::write(
            d.join("bundle.signed"),
            guardian::sign_bundle(&bundle, &signer("author-1")),
        )
        .unwrap();
        std::fs::write(d.join("bundle.toml"), BUNDLE).unwrap();
        let digest = |t: &str| hex::encode(sha256(t.as_bytes()));
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
tick_ms = 100
max_body_bytes = 65536

[store]
dir = "store"
{store_extra}

[signer]
key_file = "kernel.key"

[trust]
root = "trust-root.json"
chain = "trust-chain.cbor"

[policy]
bundles = ["bundle.signed"]

[checkpoint]
every_records = 100
interval_ms = 0

[[token]]
principal = "agent-7"
token_sha256 = "{}"

[[token]]
principal = "agent-8"
token_sha256 = "{}"
scopes = ["agent"]

[[token]]
principal = "approver-desk"
token_sha256 = "{}"
scopes = ["approver"]

[[token]]
principal = "auditor"
token_sha256 = "{}"
scopes = ["auditor"]
"#,
            digest(AGENT_TOKEN),
            digest(OTHER_AGENT_TOKEN),
            digest(APPROVER_TOKEN),
            digest(AUDITOR_TOKEN),
        );
        std::fs::write(d.join("helm-proxy.toml"), config).unwrap();
        Setup { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("helm-proxy.toml")
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Starts the server on this setup.
    pub fn start(&self) -> Server {
        Server::start(&self.config(), &self.path().join("server.log"))
    }
}

/// `helm-proxy` with arguments, to completion.
pub fn helm_proxy(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helm-proxy"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The real server process. Killed (SIGKILL) when dropped, if still running.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `helm-proxy serve` and waits until it listens (its stdout line).
    pub fn start(config: &Path, log: &Path) -> Server {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_helm-proxy"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let n = BufReader::new(stdout).read_line(&mut line).unwrap();
        if n == 0 {
            let status = child.wait().unwrap();
            panic!(
                "helm-proxy exited ({status}) before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let base = line
            .trim()
            .strip_prefix("helm-proxy listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            base,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the exit (at most 30 s).
    pub fn terminate(mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "helm-proxy did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (kill -9), and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real HTTP client (ureq) against the server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

/// A response: status, JSON body (or `Value::Null`), raw text, headers of interest.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub www_authenticate: Option<String>,
    pub content_type: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            agent,
            base: base.to_owned(),
        }
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Resp, ureq::Error> {
        let mut r = r?;
        let status = r.status().as_u16();
        let header = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let www_authenticate = header("www-authenticate");
        let content_type = header("content-type");
        let text = r.body_mut().read_to_string()?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            json,
            text,
            www_authenticate,
            content_type,
        })
    }

    /// GET with an optional token.
    pub fn try_get(&self, path: &str, token: Option<&str>) -> Result<Resp, ureq::Error> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Client::finish(req.call())
    }

    /// POST raw bytes with an optional token.
    pub fn try_post_raw(&self, path: &str, token: Option<&str>, body: &[u8]) -> Result<Resp, ureq::Error> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Client::finish(req.send(body))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.try_get(path, token).unwrap()
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        self.try_post_raw(path, token, body.to_string().as_bytes()).unwrap()
    }

    pub fn post_raw(&self, path: &str, token: Option<&str>, body: &[u8]) -> Resp {
        self.try_post_raw(path, token, body).unwrap()
    }

    /// `POST /v1/evaluate` as agent-7.
    pub fn evaluate(&self, tool: &str, args: Value, session: &str) -> Resp {
        self.post(
            "/v1/evaluate",
            Some(AGENT_TOKEN),
            &serde_json::json!({"tool": tool, "args": args, "session": session}),
        )
    }
}

/// Every record of a store (read without its lock).
pub fn store_records(store: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    helm_kernel::store::read_records(&store.join("records"), |_, r| {
        out.push(r.to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

/// Every blob of a store, by name.
pub fn store_blobs(store: &Path) -> BTreeMap<Hash, Vec<u8>> {
    let mut out = BTreeMap::new();
    helm_kernel::store::read_records(&store.join("blobs"), |_, f| {
        out.insert(f[..32].try_into().unwrap(), f[32..].to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

/// Verifies a store's records as one stream against root-1 (every record, every rule of
/// spec/verification.md); panics naming the first record that fails.
pub fn verify(records: &[Vec<u8>]) -> verify_core::Verified {
    let mut tables = OwnedTables::new(verify_core::Capacity::for_records(records.len()));
    let mut v = Verifier::new(&[signer("root-1").public_key()], tables.tables()).unwrap();
    for (i, r) in records.iter().enumerate() {
        if let Err(e) = v.push(r) {
            panic!("record {i} of {} fails verification: {e:?}", records.len());
        }
    }
    v.finish().unwrap()
}

/// Recomputes every DECISION of the store from the bundles it carries; panics on a finding.
pub fn replay(records: &[Vec<u8>], blobs: &BTreeMap<Hash, Vec<u8>>) -> guardian::ReplayReport {
    let decoded: Vec<Record<'_>> = records.iter().map(|r| Record::decode(r).unwrap()).collect();
    let report = guardian::replay(&decoded, blobs, guardian::Limits::default());
    assert!(report.ok(), "replay findings: {:?}", report.findings);
    report
}

/// The record hashes of a store, hex.
pub fn hashes(records: &[Vec<u8>]) -> std::collections::BTreeSet<String> {
    records.iter().map(|r| hex::encode(sha256(r))).collect()
}

/// `helm-airgap`, if it can be had: `$HELM_AIRGAP`, or the binary next to `helm-proxy`
/// (built by `cargo test --workspace`). `None` (and a note) otherwise.
pub fn helm_airgap() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HELM_AIRGAP") {
        return Some(PathBuf::from(p));
    }
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_helm-proxy"));
    let theirs = ours.with_file_name("helm-airgap");
    if theirs.is_file() {
        return Some(theirs);
    }
    eprintln!(
        "NOTE: helm-airgap not found next to {} (build it with `cargo build -p airgap-cli`, or set HELM_AIRGAP): \
         the pack export and `helm-airgap verify` steps are skipped; the store was verified in process",
        ours.display()
    );
    None
}

/// Exports the store with `helm-airgap export --store`, verifies the pack with
/// `helm-airgap verify` and replays its decisions with `helm-airgap replay-decisions`.
pub fn airgap_export_verify_replay(setup: &Setup) {
    let Some(bin) = helm_airgap() else { return };
    let d = setup.path();
    let run = |args: &[&str]| {
        let out = Command::new(&bin).args(args).current_dir(d).output().unwrap();
        let text = format!(
            "$ helm-airgap {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}");
        assert!(out.status.success(), "helm-airgap failed:\n{text}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "export",
        "--store",
        "store",
        "--key",
        "kernel.key",
        "--trust-root",
        "trust-root.json",
        "-o",
        "run.tar.zst",
        "--force",
    ]);
    let report = run(&["verify", "run.tar.zst", "--trust-root", "trust-root.json", "--json"]);
    let j: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(j["verified"], Value::Bool(true), "{report}");
    let replay = run(&[
        "replay-decisions",
        "run.tar.zst",
        "--trust-root",
        "trust-root.json",
        "--json",
    ]);
    let r: Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(r["findings"].as_array().unwrap().len(), 0, "{replay}");
}
