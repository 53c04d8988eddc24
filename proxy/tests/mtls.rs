//! HTTPS and client certificates (mTLS) end to end: the real `helm-proxy` binary with
//! `[server] tls_cert`, `tls_key`, `client_ca` and `[[client_cert]]` pins, driven by a
//! real TLS client (`curl`). The CA, the server certificate (127.0.0.1, localhost) and
//! the client certificates are made here at test time with rcgen: PUBLIC TEST material,
//! never committed, never for real use.
//!
//! Covered: HTTPS with a token; `required` refuses a connection without a certificate
//! and `optional` admits it; a certificate of another CA is refused in both modes; a
//! verified but unpinned certificate gets 401; a pinned certificate evaluates a call and
//! the records carry its principal; a certificate with a token of another principal gets
//! 401; scopes apply to certificate principals (and to certificate + token, both must
//! allow); plain HTTP gets no answer; `check-config` refusals name the field;
//! `cert-fingerprint`; no key material in logs; the store verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};

/// A CA made at test time.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate signed by `issuer`, written as `<dir>/<name>.pem` and
/// `<dir>/<name>.key` (mode 0600); returns the hex SHA-256 of its DER.
fn leaf(dir: &Path, name: &str, issuer: &CertifiedIssuer<'static, KeyPair>, sans: &[&str], client: bool) -> String {
    let mut p = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    hex::encode(verify_core::sha256(cert.der()))
}

/// The test PKI in a setup's directory: `ca.pem` (clients and server), `server.pem`/
/// `.key`, pinned clients `cert-agent` (principal `cert-agent-1`, agent),
/// `cert-auditor` (`cert-auditor-1`, auditor) and `cert-agent7` (`agent-7`, agent and
/// auditor), an unpinned `cert-stranger`, and `cert-other-ca` of another CA.
struct Pki {
    agent: String,
    auditor: String,
    agent7: String,
    stranger: String,
}

fn make_pki(dir: &Path) -> Pki {
    let ca = ca("HELM TEST CA - PUBLIC, NEVER USE FOR REAL");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let other = ca_other();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    leaf(dir, "server", &ca, &["127.0.0.1", "localhost"], false);
    let pki = Pki {
        agent: leaf(dir, "cert-agent", &ca, &[], true),
        auditor: leaf(dir, "cert-auditor", &ca, &[], true),
        agent7: leaf(dir, "cert-agent7", &ca, &[], true),
        stranger: leaf(dir, "cert-stranger", &ca, &[], true),
    };
    leaf(dir, "cert-other-ca", &other, &[], true);
    pki
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("ANOTHER TEST CA - PUBLIC, NEVER USE FOR REAL")
}

/// Turns a test setup into an HTTPS one with client certificates in `mode`.
fn tls_setup(mode: &str) -> (Setup, Pki) {
    let setup = Setup::new();
    let d = setup.path();
    let pki = make_pki(d);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let config = config.replacen(
        "[server]\n",
        &format!(
            "[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\nclient_ca = \"ca.pem\"\nclient_auth = \"{mode}\"\n"
        ),
        1,
    );
    let config = format!(
        "{config}
[[client_cert]]
principal = \"cert-agent-1\"
cert_sha256 = \"{}\"

[[client_cert]]
principal = \"cert-auditor-1\"
cert_sha256 = \"{}\"
scopes = [\"auditor\"]

[[client_cert]]
principal = \"agent-7\"
cert_sha256 = \"{}\"
scopes = [\"agent\", \"auditor\"]
",
        pki.agent,
        pki.auditor,
        pki.agent7.to_uppercase()
    );
    std::fs::write(setup.config(), config).unwrap();
    (setup, pki)
}

/// `curl` is needed: say so loudly when it is missing.
fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: curl is not installed (apt-get install curl): the mTLS tests need a real TLS client");
    }
    ok
}

/// One request with curl: `cert` names `<name>.pem`/`<name>.key` in `dir`.
struct Curl<'a> {
    dir: &'a Path,
    base: &'a str,
    cert: Option<&'a str>,
    token: Option<&'a str>,
}

/// What curl got: the HTTP status (None: no HTTP answer) and the JSON body.
#[derive(Debug)]
struct Got {
    status: Option<u16>,
    json: Value,
    text: String,
}

impl Curl<'_> {
    fn with(&self, cert: Option<&'static str>, token: Option<&'static str>) -> Curl<'_> {
        Curl {
            dir: self.dir,
            base: self.base,
            cert,
            token,
        }
    }

    fn run(&self, path: &str, body: Option<&Value>) -> Got {
        let mut c = Command::new("curl");
        c.current_dir(self.dir).args([
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            "ca.pem",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(name) = self.cert {
            c.args(["--cert", &format!("{name}.pem"), "--key", &format!("{name}.key")]);
        }
        if let Some(t) = self.token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", &b.to_string()]);
        }
        c.arg(format!("{}{path}", self.base));
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let status = code.trim().parse::<u16>().ok().filter(|c| *c != 0);
        if status.is_some() {
            assert!(out.status.success(), "curl failed with an HTTP answer: {out:?}");
        }
        Got {
            status,
            json: serde_json::from_str(text).unwrap_or(Value::Null),
            text: format!("{text} [{}]", String::from_utf8_lossy(&out.stderr).trim()),
        }
    }

    fn get(&self, path: &str) -> Got {
        self.run(path, None)
    }

    fn evaluate(&self, path: &str, session: &str) -> Got {
        self.run(
            "/v1/evaluate",
            Some(&json!({"tool": "read_file", "args": {"path": path}, "session": session})),
        )
    }
}

fn code(g: &Got) -> &str {
    g.json["error"]["code"].as_str().unwrap_or("")
}

/// The record of `hash` in `GET /v1/records` (read with `reader`).
fn record_principal(reader: &Curl<'_>, hash: &str) -> String {
    let page = reader.get("/v1/records?from=0&limit=1000");
    assert_eq!(page.status, Some(200), "{}", page.text);
    let r = page.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hash"] == hash)
        .unwrap_or_else(|| panic!("record {hash} not listed"));
    r["principal"].as_str().unwrap().to_owned()
}

#[test]
fn required_client_certificates() {
    if !have_curl() {
        return;
    }
    let (setup, pki) = tls_setup("required");
    let server = setup.start();
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let c = Curl {
        dir: setup.path(),
        base: &server.base,
        cert: None,
        token: None,
    };

    // No certificate: no connection, with or without a valid token.
    for token in [None, Some(AGENT_TOKEN)] {
        let g = c.with(None, token).get("/healthz");
        assert_eq!(g.status, None, "{token:?}: {}", g.text);
    }
    // A certificate of another CA: refused.
    let g = c.with(Some("cert-other-ca"), None).get("/healthz");
    assert_eq!(g.status, None, "{}", g.text);

    // Verified but not pinned: the connection stands (health answers), every
    // authenticated endpoint is 401, a valid token does not help.
    let stranger = c.with(Some("cert-stranger"), None);
    assert_eq!(stranger.get("/healthz").status, Some(200));
    for token in [None, Some(AGENT_TOKEN)] {
        let g = c.with(Some("cert-stranger"), token).evaluate("/workspace/a", "m1");
        assert_eq!((g.status, code(&g)), (Some(401), "UNAUTHENTICATED"), "{}", g.text);
        assert!(g.text.contains(&pki.stranger), "{}", g.text);
    }

    // A pinned certificate alone: its principal proposes, and the records say so.
    let agent = c.with(Some("cert-agent"), None);
    let g = agent.evaluate("/workspace/a", "m1");
    assert_eq!(g.status, Some(200), "{}", g.text);
    assert_eq!(g.json["status"], "allow", "{}", g.text);
    let intent = g.json["intent"].as_str().unwrap().to_owned();
    let denied = agent.run(
        "/v1/evaluate",
        Some(&json!({"tool": "shell", "args": {"cmd": "rm"}, "session": "m1"})),
    );
    assert_eq!(denied.json["status"], "deny", "{}", denied.text);
    let auditor = c.with(Some("cert-auditor"), None);
    assert_eq!(record_principal(&auditor, &intent), "cert-agent-1");

    // Scopes apply to certificate principals: the agent's certificate cannot read
    // records, the auditor's cannot propose.
    let g = agent.get("/v1/records");
    assert_eq!((g.status, code(&g)), (Some(403), "FORBIDDEN"), "{}", g.text);
    let g = auditor.evaluate("/workspace/a", "m1");
    assert_eq!((g.status, code(&g)), (Some(403), "FORBIDDEN"), "{}", g.text);

    // A certificate and a token of another principal: 401, nothing recorded.
    let before = auditor.get("/v1/records?from=0&limit=1000").json["total"]
        .as_u64()
        .unwrap();
    for (cert, token) in [
        ("cert-agent", AGENT_TOKEN),
        ("cert-agent7", OTHER_AGENT_TOKEN),
        ("cert-auditor", AUDITOR_TOKEN),
    ] {
        let g = c.with(Some(cert), Some(token)).evaluate("/workspace/a", "m1");
        assert_eq!(
            (g.status, code(&g)),
            (Some(401), "UNAUTHENTICATED"),
            "{cert}: {}",
            g.text
        );
    }
    // A wrong token with a pinned certificate is still a wrong token.
    let g = c
        .with(Some("cert-agent"), Some("wrong-token"))
        .evaluate("/workspace/a", "m1");
    assert_eq!(g.status, Some(401), "{}", g.text);
    let after = auditor.get("/v1/records?from=0&limit=1000").json["total"]
        .as_u64()
        .unwrap();
    assert_eq!(before, after);

    // The same principal by certificate and token: admitted with what both allow (the
    // certificate of agent-7 has agent and auditor, its token only agent).
    let both = c.with(Some("cert-agent7"), Some(AGENT_TOKEN));
    let g = both.evaluate("/workspace/b", "m2");
    assert_eq!(
        (g.status, &g.json["status"]),
        (Some(200), &json!("allow")),
        "{}",
        g.text
    );
    assert_eq!(
        record_principal(&auditor, g.json["intent"].as_str().unwrap()),
        "agent-7"
    );
    assert_eq!(both.get("/v1/records").status, Some(403));
    assert_eq!(c.with(Some("cert-agent7"), None).get("/v1/records").status, Some(200));

    // The principal never comes from a header or the body.
    let g = agent.run(
        "/v1/evaluate",
        Some(&json!({"tool": "read_file", "args": {"path": "/workspace/a"}, "session": "m1", "principal": "agent-7"})),
    );
    assert_eq!(g.status, Some(400), "{}", g.text);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Curl {
        base: &server.base.replacen("https://", "http://", 1),
        ..c.with(None, Some(AGENT_TOKEN))
    };
    let g = plain.get("/healthz");
    assert_ne!(g.status, Some(200), "{}", g.text);

    let log = server.log_text();
    assert!(log.contains("listening on https://"), "{log}");
    assert!(log.contains("client certificates required"), "{log}");
    assert!(log.contains("TLS handshake from"), "{log}");
    let status = server.terminate();
    assert!(status.success(), "{status}");
    no_key_material(
        setup.path(),
        &std::fs::read_to_string(setup.path().join("server.log")).unwrap(),
    );
    let records = store_records(&setup.store());
    verify(&records);
}

#[test]
fn optional_client_certificates() {
    if !have_curl() {
        return;
    }
    let (setup, _pki) = tls_setup("optional");
    let server = setup.start();
    let c = Curl {
        dir: setup.path(),
        base: &server.base,
        cert: None,
        token: None,
    };
    // HTTPS with a token, no certificate.
    let h = c.get("/healthz");
    assert_eq!(h.status, Some(200), "{}", h.text);
    let g = c.with(None, Some(AGENT_TOKEN)).evaluate("/workspace/a", "o1");
    assert_eq!(
        (g.status, &g.json["status"]),
        (Some(200), &json!("allow")),
        "{}",
        g.text
    );
    let auditor = c.with(None, Some(AUDITOR_TOKEN));
    assert_eq!(
        record_principal(&auditor, g.json["intent"].as_str().unwrap()),
        "agent-7"
    );
    // Neither: 401 with the Bearer challenge.
    let g = c.get("/v1/records");
    assert_eq!((g.status, code(&g)), (Some(401), "UNAUTHENTICATED"), "{}", g.text);
    // A certificate of another CA is refused even though one is optional.
    let g = c.with(Some("cert-other-ca"), Some(AGENT_TOKEN)).get("/healthz");
    assert_eq!(g.status, None, "{}", g.text);
    // A pinned certificate works here too.
    let g = c.with(Some("cert-agent"), None).evaluate("/workspace/a", "o1");
    assert_eq!(
        (g.status, &g.json["status"]),
        (Some(200), &json!("allow")),
        "{}",
        g.text
    );
    assert_eq!(
        record_principal(&auditor, g.json["intent"].as_str().unwrap()),
        "cert-agent-1"
    );
    // Unpinned: 401.
    let g = c.with(Some("cert-stranger"), Some(AGENT_TOKEN)).get("/v1/records");
    assert_eq!(g.status, Some(401), "{}", g.text);
    assert!(server.terminate().success());
    verify(&store_records(&setup.store()));
}

/// Neither the server's nor any client's private key appears in `text`.
fn no_key_material(dir: &Path, text: &str) {
    for name in ["server", "cert-agent", "cert-auditor", "cert-agent7", "cert-stranger"] {
        let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
        for line in key.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
            assert!(!text.contains(line), "key material of {name} in the output");
        }
    }
    assert!(!text.contains("PRIVATE KEY"));
}

#[test]
fn check_config_and_fingerprints() {
    let (setup, pki) = tls_setup("required");
    let d = setup.path();
    let out = helm_proxy(&["check-config", "--config", "helm-proxy.toml"], d);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("client certs  required against"), "{text}");
    assert!(text.contains(&pki.agent), "{text}");
    assert!(text.contains("client_auth = \"required\""), "{text}");
    no_key_material(d, &text);

    // cert-fingerprint prints what [[client_cert]] pins.
    let out = helm_proxy(&["cert-fingerprint", "cert-agent.pem"], d);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), pki.agent);
    let out = helm_proxy(&["cert-fingerprint", "cert-agent.key"], d);
    assert_eq!(out.status.code(), Some(2));

    // Refusals name the field (exit 2), for check-config and serve alike.
    let good = std::fs::read_to_string(setup.config()).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            good.replacen("tls_cert = \"server.pem\"\n", "", 1),
            "tls_cert and tls_key go together",
        ),
        (
            good.replacen("tls_cert = \"server.pem\"\ntls_key = \"server.key\"\n", "", 1),
            "client_ca needs tls_cert",
        ),
        (
            good.replacen("client_ca = \"ca.pem\"\nclient_auth = \"required\"\n", "", 1),
            "[[client_cert]] needs [server] client_ca",
        ),
        (good.replacen(&pki.agent, &pki.agent[..63], 1), "cert_sha256"),
        (
            good.replacen(&pki.auditor, &pki.agent, 1),
            "same cert_sha256 appears twice",
        ),
        (
            good.replacen("principal = \"cert-agent-1\"", "principal = \"kernel\"", 1),
            "kernel's own",
        ),
        (
            good.replacen("client_auth = \"required\"", "client_auth = \"sometimes\"", 1),
            "unknown variant",
        ),
        (good.replacen("server.pem", "missing.pem", 1), "[server] tls_cert"),
        (
            good.replacen("tls_cert = \"server.pem\"", "tls_cert = \"server.key\"", 1),
            "no PEM CERTIFICATE",
        ),
        (
            good.replacen("tls_key = \"server.key\"", "tls_key = \"cert-agent.key\"", 1),
            "do not make a usable pair",
        ),
        (
            good.replacen("tls_key = \"server.key\"", "tls_key = \"ca.pem\"", 1),
            "tls_key",
        ),
        (
            good.replacen("client_ca = \"ca.pem\"", "client_ca = \"cert-agent.key\"", 1),
            "[server] client_ca",
        ),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        std::fs::write(d.join("bad.toml"), config).unwrap();
        // serve runs the same checks first (twice is enough to show it).
        let cmds: &[&str] = if i == 0 || i == 7 {
            &["check-config", "serve"]
        } else {
            &["check-config"]
        };
        for cmd in cmds {
            let out = helm_proxy(&[*cmd, "--config", "bad.toml"], d);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "{cmd} {needle}: {err}");
            assert!(err.contains(needle), "{cmd}: expected {needle:?} in {err}");
            no_key_material(d, &err);
        }
    }
    // A key file others may read is refused.
    std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = helm_proxy(&["check-config", "--config", "helm-proxy.toml"], d);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tls_key") && err.contains("chmod 600"), "{err}");
}

/// One MCP exchange over Streamable HTTP with ureq: the JSON-RPC answer (from a JSON
/// body or the SSE stream) and the session id header.
fn mcp_post(base: &str, session: Option<&str>, body: &Value) -> (u16, Value, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(core::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut req = agent
        .post(format!("{base}/mcp/outer"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("Authorization", format!("Bearer {AGENT_TOKEN}"));
    if let Some(s) = session {
        req = req
            .header("Mcp-Session-Id", s)
            .header("MCP-Protocol-Version", "2025-06-18");
    }
    let mut r = req.send(serde_json::to_vec(body).unwrap()).unwrap();
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    });
    (status, json, sid)
}

/// An MCP server reached over `https://` with a private CA (`[[mcp.server]] ca_file`):
/// `helm-proxy` B (plain HTTP, facing the client) relays to `helm-proxy` A, which serves
/// TLS with a certificate of the test CA and fronts a stdio server. With `ca_file`, an
/// allowed call goes through both and a denied one is refused; without it, B refuses the
/// upstream's certificate and the client gets an error, not a result. Both stores verify.
#[test]
fn mcp_upstream_over_https_with_a_private_ca() {
    let python = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        eprintln!("SKIPPED: no python3 for the stdio MCP server");
        return;
    };
    let server_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_py/tiny_stdio_server.py");
    const MCP_BUNDLE: &str = r#"
name = "mcp-https-test"
other_tools = "deny"

[[rule]]
id = "echo-hello"
tools = ["inner/echo", "outer/echo"]
verdict = "allow"
require = ["args.message matches 'hello*'"]
"#;
    let bundle = guardian::Bundle::from_toml(MCP_BUNDLE).unwrap();
    let signed = guardian::sign_bundle(&bundle, &signer("author-1"));

    // A: TLS, the stdio server behind it as "inner".
    let a = Setup::new();
    make_pki(a.path());
    std::fs::write(a.path().join("bundle.signed"), &signed).unwrap();
    let config = std::fs::read_to_string(a.config()).unwrap().replacen(
        "[server]\n",
        "[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\n",
        1,
    );
    let config = format!(
        "{config}\n[[mcp.server]]\nname = \"inner\"\ncommand = [{:?}, {:?}]\n",
        python,
        server_py.to_str().unwrap()
    );
    std::fs::write(a.config(), config).unwrap();
    let server_a = a.start();
    assert!(server_a.base.starts_with("https://"), "{}", server_a.base);

    let start_b = |ca_file: bool| {
        let b = Setup::new();
        std::fs::write(b.path().join("bundle.signed"), &signed).unwrap();
        std::fs::copy(a.path().join("ca.pem"), b.path().join("private-ca.pem")).unwrap();
        let config = std::fs::read_to_string(b.config()).unwrap();
        let config = format!(
            "{config}\n[[mcp.server]]\nname = \"outer\"\nurl = \"{}/mcp/inner\"\nheaders = {{ Authorization = \"Bearer {AGENT_TOKEN}\" }}\n{}",
            server_a.base,
            if ca_file { "ca_file = \"private-ca.pem\"\n" } else { "" }
        );
        std::fs::write(b.config(), config).unwrap();
        let server = b.start();
        (b, server)
    };

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "mtls-test", "version": "1"}}});
    let (b, server_b) = start_b(true);
    let (status, answer, sid) = mcp_post(&server_b.base, None, &init);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["serverInfo"]["name"], "tiny-stdio", "{answer}");
    let sid = sid.expect("a session id");
    let notified = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(mcp_post(&server_b.base, Some(&sid), &notified).0, 202);
    let (_, list, _) = mcp_post(
        &server_b.base,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(list["result"]["tools"][0]["name"], "echo", "{list}");
    let call = |id: u64, message: &str| {
        mcp_post(
            &server_b.base,
            Some(&sid),
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": message}}}),
        )
        .1
    };
    let allowed = call(3, "hello over tls");
    assert_eq!(allowed["result"]["content"][0]["text"], "hello over tls", "{allowed}");
    let denied = call(4, "goodbye");
    let text = denied.to_string();
    assert!(
        denied["result"]["isError"] == true || denied.get("error").is_some(),
        "{denied}"
    );
    assert!(
        text.contains("DENY") || text.contains("NO_RULE") || text.contains("denied"),
        "{text}"
    );
    assert_eq!(server_b.terminate().code(), Some(0));

    // Without ca_file the upstream's certificate is not trusted: no result.
    let (b2, server_b2) = start_b(false);
    let (_, refused, _) = mcp_post(&server_b2.base, None, &init);
    assert!(refused.get("result").is_none(), "{refused}");
    let log = server_b2.log_text();
    assert_eq!(server_b2.terminate().code(), Some(0));
    assert!(
        log.contains("UnknownIssuer") || log.to_lowercase().contains("certificate"),
        "{log}"
    );
    assert_eq!(server_a.terminate().code(), Some(0));

    for s in [&a, &b, &b2] {
        let records = store_records(&s.store());
        verify(&records);
    }
    // The allowed call was decided on both sides: an ALLOW in A's and in B's store.
    for s in [&a, &b] {
        let allows = store_records(&s.store())
            .iter()
            .filter(|r| {
                let rec = verify_core::Record::decode(r).unwrap();
                matches!(
                    rec.body,
                    verify_core::Body::Decision {
                        verdict: verify_core::Verdict::Allow,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(allows, 1, "{}", s.path().display());
    }
}
