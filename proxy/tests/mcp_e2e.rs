//! The MCP interceptor end to end with real peers: the official MCP Python SDK (1.x and
//! 2.x lines, each in its own virtual environment) as the client, our small FastMCP
//! server (`tests/mcp_py/server.py`) and the reference servers from the npm registry
//! (`@modelcontextprotocol/server-everything`, `@modelcontextprotocol/server-filesystem`)
//! as upstreams; `helm-proxy mcp --stdio` and `helm-proxy serve` (Streamable HTTP and
//! HTTP+SSE) in between. Every store is then verified record by record, its decisions
//! replayed, and exported and verified by `helm-airgap`.
//!
//! The peers come from `.ci/run` (see its "MCP peers" step), found through
//! `HELM_MCP_PY1`, `HELM_MCP_PY2` (python executables) and `HELM_MCP_NODE` (a directory
//! whose `node_modules/.bin` has the reference servers), or under `target/mcp-peers/`.
//! Without them the tests say so and pass, unless `HELM_REQUIRE_MCP_PEERS=1` (CI), where a
//! missing peer fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use core::time::Duration;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use serde_json::{json, Value};
use verify_core::{Body, Kind, Record};

/// The policy of these tests: server `t` is tests/mcp_py/server.py, `everything` and
/// `fs` are the reference servers.
pub const MCP_BUNDLE: &str = r#"
name = "mcp-test"
other_tools = "deny"

[[rule]]
id = "harmless"
tools = ["t/echo", "t/add", "t/slow", "t/sleepy", "t/ask", "t/crash", "t/long", "t/confirm", "t/big", "t/query", "t/wait", "everything/echo", "everything/get-sum", "everything/trigger-long-running-operation"]
verdict = "allow"
require = ["true"]

[[rule]]
id = "read-workspace"
tools = ["t/read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]

[[rule]]
id = "no-rm"
tools = ["t/rm"]
verdict = "deny"
require = ["true"]

[[rule]]
id = "deploy-needs-approval"
tools = ["t/deploy"]
verdict = "escalate"
require = ["true"]
escalation = { role = "approver", quorum = 1, ttl_ms = 600000 }

[[rule]]
id = "fs-read"
tools = ["fs/read_text_file", "fs/read_file", "fs/list_directory"]
verdict = "allow"
require = ["args.path matches '/tmp/helm-mcp-fs-*'", "not (args.path contains '..')"]

[[rule]]
id = "fs-write"
tools = ["fs/write_file"]
verdict = "allow"
require = ["args.path matches '/tmp/helm-mcp-fs-*'", "not (args.path contains '..')"]

[[rule]]
id = "no-password-prompts"
tools = ["*:elicitation/create"]
verdict = "deny"
require = ["args.message contains 'password'"]

[[rule]]
id = "client-features"
tools = ["*:sampling/createMessage", "*:roots/list", "*:elicitation/create"]
verdict = "allow"
require = ["true"]

[[rule]]
id = "notes"
tools = ["*:resources/read"]
verdict = "allow"
require = ["args.uri matches 'note://*'"]

[[rule]]
id = "prompts"
tools = ["*:prompts/get"]
verdict = "allow"
require = ["true"]
"#;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn required() -> bool {
    std::env::var("HELM_REQUIRE_MCP_PEERS").is_ok_and(|v| v == "1")
}

/// A peer that may be missing: `None` (with a note) unless peers are required.
fn peer(env: &str, default: PathBuf, what: &str) -> Option<PathBuf> {
    let p = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !required(),
        "HELM_REQUIRE_MCP_PEERS=1 but {what} is missing at {} (set {env}, or run .ci/run's MCP peers step)",
        p.display()
    );
    eprintln!("NOTE: {what} not found at {} (set {env}): skipped", p.display());
    None
}

fn py1() -> Option<PathBuf> {
    peer(
        "HELM_MCP_PY1",
        workspace().join("target/mcp-peers/venv1/bin/python"),
        "python with mcp 1.x",
    )
}

fn py2() -> Option<PathBuf> {
    peer(
        "HELM_MCP_PY2",
        workspace().join("target/mcp-peers/venv2/bin/python"),
        "python with mcp 2.x",
    )
}

fn node_bin(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HELM_MCP_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/mcp-peers/node"));
    let p = dir.join("node_modules/.bin").join(name);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !required(),
        "HELM_REQUIRE_MCP_PEERS=1 but {name} is missing at {} (set HELM_MCP_NODE, or run .ci/run's MCP peers step)",
        p.display()
    );
    eprintln!("NOTE: {name} not found at {} (set HELM_MCP_NODE): skipped", p.display());
    None
}

fn mcp_py(file: &str) -> String {
    workspace()
        .join("proxy/tests/mcp_py")
        .join(file)
        .to_str()
        .unwrap()
        .to_owned()
}

fn proxy_bin() -> &'static str {
    env!("CARGO_BIN_EXE_helm-proxy")
}

/// A setup (keys, trust, config) whose bundle is [`MCP_BUNDLE`] and whose config has
/// `[mcp]` with `mcp_extra` in it.
fn mcp_setup(mcp_extra: &str) -> Setup {
    let setup = Setup::new();
    let bundle = guardian::Bundle::from_toml(MCP_BUNDLE).unwrap();
    std::fs::write(
        setup.path().join("bundle.signed"),
        guardian::sign_bundle(&bundle, &signer("author-1")),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[mcp]\nescalation_wait_ms = 300\nstdio_principal = \"agent-7\"\n{mcp_extra}\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    if let Some(keep) = std::env::var_os("HELM_MCP_KEEP_SETUP") {
        // Debugging: a copy of the setup (keys, trust, config) to run peers by hand.
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for f in [
            "kernel.key",
            "trust-root.json",
            "trust-chain.cbor",
            "bundle.signed",
            "helm-proxy.toml",
        ] {
            std::fs::copy(setup.path().join(f), keep.join(f)).unwrap();
        }
    }
    setup
}

/// Runs `python check.py ARGS`, echoing its output; panics unless it exits 0.
fn run_check(python: &Path, args: &[String], env: &[(&str, &str)], dir: &Path) -> String {
    let t0 = Instant::now();
    let mut cmd = Command::new(python);
    cmd.arg(mcp_py("check.py")).args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "$ check.py {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}\n({} ms)", t0.elapsed().as_millis());
    assert!(out.status.success(), "check.py failed:\n{text}");
    text
}

fn stdio_args(setup: &Setup, scenario: &str, server: &str, upstream: &[String]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--transport".into(),
        "stdio".into(),
        "--scenario".into(),
        scenario.into(),
        "--".into(),
        proxy_bin().into(),
        "mcp".into(),
        "--stdio".into(),
        "--config".into(),
        setup.config().to_str().unwrap().into(),
        "--server".into(),
        server.into(),
        "--".into(),
    ];
    a.extend(upstream.iter().cloned());
    a
}

/// Kinds of the store's records, and the VIOLATION codes, EFFECT statuses.
fn summary(records: &[Vec<u8>]) -> (Vec<Kind>, Vec<String>, Vec<String>) {
    let mut kinds = Vec::new();
    let mut violations = Vec::new();
    let mut effects = Vec::new();
    for r in records {
        let r = Record::decode(r).unwrap();
        kinds.push(r.kind);
        match r.body {
            Body::Violation { code, .. } => violations.push(code.to_owned()),
            Body::Effect { status, tool, .. } => effects.push(format!("{tool}:{status:?}")),
            _ => {}
        }
    }
    (kinds, violations, effects)
}

fn verify_store(setup: &Setup) -> (Vec<Kind>, Vec<String>, Vec<String>) {
    let records = store_records(&setup.store());
    verify(&records);
    replay(&records, &store_blobs(&setup.store()));
    airgap_export_verify_replay(setup);
    summary(&records)
}

#[test]
fn stdio_python_sdk_allow_deny_escalate_progress_cancel_sampling_then_rug_pull() {
    for (line, python) in [("1.x", py1()), ("2.x", py2())] {
        let Some(python) = python else { continue };
        let server_py = py1().unwrap_or_else(|| python.clone());
        eprintln!("=== mcp {line} client over stdio ===");
        let setup = mcp_setup("");
        let upstream = vec![server_py.to_str().unwrap().to_owned(), mcp_py("server.py")];
        run_check(&python, &stdio_args(&setup, "full", "t", &upstream), &[], setup.path());
        // The same server, restarted with a changed definition of `echo`: the pin made in
        // the first run (in the store) catches it.
        run_check(
            &python,
            &stdio_args(&setup, "changed", "t", &upstream),
            &[("HELM_TEST_VARIANT", "changed")],
            setup.path(),
        );
        let (kinds, violations, effects) = verify_store(&setup);
        assert!(kinds.contains(&Kind::Attestation), "tool pins are recorded");
        assert!(
            violations.iter().any(|v| v == "TOOL_DEFINITION_CHANGED"),
            "{violations:?}"
        );
        assert!(effects.iter().any(|e| e == "t/echo:Succeeded"), "{effects:?}");
        assert!(
            effects.iter().any(|e| e == "t/sleepy:Aborted"),
            "the cancelled call: {effects:?}"
        );
        assert!(
            effects.iter().any(|e| e == "t:elicitation/create:Succeeded"),
            "the elicitation is recorded: {effects:?}"
        );
        assert!(
            effects.iter().any(|e| e == "t:sampling/createMessage:Succeeded"),
            "the sampling request is recorded: {effects:?}"
        );
        assert!(!effects.iter().any(|e| e.starts_with("t/rm")), "{effects:?}");
    }
}

#[test]
fn stdio_reference_servers_everything_and_filesystem() {
    let Some(python) = py1() else { return };
    let (Some(everything), Some(fs)) = (node_bin("mcp-server-everything"), node_bin("mcp-server-filesystem")) else {
        return;
    };
    let setup = mcp_setup("");
    run_check(
        &python,
        &stdio_args(
            &setup,
            "everything",
            "everything",
            &[everything.to_str().unwrap().into(), "stdio".into()],
        ),
        &[],
        setup.path(),
    );
    let root = tempfile::Builder::new()
        .prefix("helm-mcp-fs-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(root.path().join("hello.txt"), "hello from the workspace").unwrap();
    let mut args = stdio_args(
        &setup,
        "filesystem",
        "fs",
        &[fs.to_str().unwrap().into(), root.path().to_str().unwrap().into()],
    );
    args.splice(0..0, ["--fs-root".to_owned(), root.path().to_str().unwrap().to_owned()]);
    run_check(&python, &args, &[], setup.path());
    let (_, _, effects) = verify_store(&setup);
    assert!(effects.iter().any(|e| e == "everything/echo:Succeeded"), "{effects:?}");
    assert!(effects.iter().any(|e| e == "fs/write_file:Succeeded"), "{effects:?}");
}

/// A raw conversation with `helm-proxy mcp --stdio`: one JSON line in, the answers out.
struct Raw {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
}

impl Raw {
    fn start(setup: &Setup, upstream: &[String]) -> Raw {
        let mut child = Command::new(proxy_bin())
            .args(["mcp", "--stdio", "--config"])
            .arg(setup.config())
            .args(["--server", "t", "--"])
            .args(upstream)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        Raw { child, stdin, out }
    }

    fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        w.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "helm-proxy closed its stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    fn call(&mut self, v: Value) -> Value {
        self.send(&v.to_string());
        self.recv()
    }
}

#[test]
fn stdio_raw_protocol_fail_closed_and_versions() {
    let Some(python) = py1() else { return };
    let setup = mcp_setup("max_message_bytes = 4096");
    let upstream = vec![python.to_str().unwrap().to_owned(), mcp_py("server.py")];
    let mut raw = Raw::start(&setup, &upstream);
    // Before initialize: only the handshake (and the modern probe) pass.
    let r = raw.call(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}),
    );
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // Not JSON, not JSON-RPC, an oversized line: errors, nothing forwarded.
    raw.send("{not json");
    assert_eq!(raw.recv()["error"]["code"], -32700);
    let r = raw.call(json!({"jsonrpc":"1.0","id":2,"method":"ping"}));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    raw.send(&format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    ));
    let r = raw.recv();
    assert!(r["error"]["message"].as_str().unwrap().contains("larger than"), "{r}");
    // The oldest revision negotiates.
    let r = raw.call(json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}));
    assert_eq!(r["id"], "init");
    assert_eq!(r["result"]["protocolVersion"], "2024-11-05", "{r}");
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    // Batches are refused in 2024-11-05 (only 2025-03-26 has them).
    raw.send(r#"[{"jsonrpc":"2.0","id":4,"method":"ping"}]"#);
    let r = raw.recv();
    assert!(r["error"]["message"].as_str().unwrap().contains("batches"), "{r}");
    // Methods outside the revision's allowlist are refused.
    let r = raw.call(json!({"jsonrpc":"2.0","id":5,"method":"tasks/list"}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = raw.call(json!({"jsonrpc":"2.0","id":6,"method":"admin/shutdown"}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    // A governed call works; a string id comes back as the same string.
    let r = raw.call(
        json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"message":"raw"}}}),
    );
    assert_eq!(r["id"], "c1");
    assert_eq!(r["result"]["content"][0]["text"], "echo: raw", "{r}");
    // A call without a tools/list first: the proxy lists on its own (ids of its own),
    // the client's ids are unaffected.
    let r = raw
        .call(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}));
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["isError"], false, "{r}");
    // Arguments that are not an object: refused.
    let r = raw.call(json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":[1]}}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    // The upstream crashes during a call: the call gets an error (-32012), so does
    // every later request, and the call's EFFECT is `aborted`.
    let r = raw.call(json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"crash","arguments":{}}}));
    assert_eq!(
        (r["id"].as_i64(), r["error"]["code"].as_i64()),
        (Some(9), Some(-32012)),
        "{r}"
    );
    let r = raw.call(json!({"jsonrpc":"2.0","id":10,"method":"tools/list"}));
    assert_eq!(r["error"]["code"], -32012, "{r}");
    let r = raw.call(
        json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}),
    );
    assert_eq!(r["error"]["code"], -32012, "{r}");
    // Clean shutdown: close stdin; the proxy exits 0.
    drop(raw.stdin.take());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = raw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "helm-proxy did not exit after end of input"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    raw.out.read_to_string(&mut rest).unwrap();
    eprintln!("clean shutdown in {} ms", t0.elapsed().as_millis());
    let (_, _, effects) = verify_store(&setup);
    assert!(effects.iter().any(|e| e == "t/crash:Aborted"), "{effects:?}");
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Python MCP server on HTTP (streamable-http or sse), killed when dropped.
struct PyServer(std::process::Child);

impl PyServer {
    fn start(python: &Path, transport: &str, port: u16, env: &[(&str, &str)]) -> PyServer {
        let mut cmd = Command::new(python);
        cmd.arg(mcp_py("server.py"))
            .args(["--transport", transport, "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the Python server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PyServer(child)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_args(server: &Server, path: &str, transport: &str, scenario: &str) -> Vec<String> {
    vec![
        "--transport".into(),
        transport.into(),
        "--scenario".into(),
        scenario.into(),
        "--url".into(),
        format!("{}{path}", server.base),
        "--token".into(),
        AGENT_TOKEN.into(),
        "--approver-token".into(),
        APPROVER_TOKEN.into(),
    ]
}

/// Streamable HTTP and HTTP+SSE on the client side, stdio on the upstream side; the
/// approval of an escalated call over the kernel's HTTP API; then the same setup with a
/// changed definition.
#[test]
fn http_and_sse_clients_stdio_upstream() {
    let Some(py) = py1() else { return };
    let clients: Vec<(&str, PathBuf)> = [("1.x", py1()), ("2.x", py2())]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
        .collect();
    let server_cmd = format!("[{:?}, {:?}]", py.to_str().unwrap(), mcp_py("server.py"));
    let setup = mcp_setup(&format!("[[mcp.server]]\nname = \"t\"\ncommand = {server_cmd}\n"));
    let server = setup.start();
    for (line, client) in &clients {
        eprintln!("=== mcp {line} client, Streamable HTTP ===");
        run_check(client, &http_args(&server, "/mcp/t", "http", "full"), &[], setup.path());
        eprintln!("=== mcp {line} client, HTTP+SSE ===");
        run_check(
            client,
            &http_args(&server, "/mcp/t/sse", "sse", "full"),
            &[],
            setup.path(),
        );
    }
    // Refusals at the door: no token, a foreign Origin, an unknown server, no session.
    let c = server.client();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    assert_eq!(c.post("/mcp/t", None, &init).status, 401);
    assert_eq!(c.post("/mcp/nope", Some(AGENT_TOKEN), &init).status, 404);
    assert_eq!(c.post("/mcp/t", Some(APPROVER_TOKEN), &init).status, 403);
    let r = c.post(
        "/mcp/t",
        Some(AGENT_TOKEN),
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = c.post_raw("/mcp/t", Some(AGENT_TOKEN), b"{not json");
    assert_eq!(
        (r.status, r.json["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{}",
        r.text
    );
    let foreign = ureq_post_with_origin(&server.base, "/mcp/t", "http://evil.example", &init);
    assert_eq!(foreign, 403);
    let status = server.terminate();
    assert!(status.success(), "{status}");
    // The server restarted with the changed definition: caught by the pin in the store.
    std::fs::write(
        setup.config(),
        std::fs::read_to_string(setup.config())
            .unwrap()
            .replace("command = [", "env = { HELM_TEST_VARIANT = \"changed\" }\ncommand = ["),
    )
    .unwrap();
    let server = setup.start();
    run_check(
        &clients[0].1,
        &http_args(&server, "/mcp/t", "http", "changed"),
        &[],
        setup.path(),
    );
    assert!(server.terminate().success());
    let (_, violations, effects) = verify_store(&setup);
    assert!(
        violations.iter().any(|v| v == "TOOL_DEFINITION_CHANGED"),
        "{violations:?}"
    );
    assert!(
        effects.iter().any(|e| e == "t/deploy:Succeeded"),
        "approved deploy ran: {effects:?}"
    );
}

fn ureq_post_with_origin(base: &str, path: &str, origin: &str, body: &Value) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {AGENT_TOKEN}"))
        .header("Origin", origin)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .send(body.to_string().as_bytes())
        .unwrap()
        .status()
        .as_u16()
}

/// Streamable HTTP and HTTP+SSE on the upstream side (our Python server on each), and
/// `deny_as = "error"`.
#[test]
fn http_upstreams_streamable_and_sse() {
    let Some(py) = py1() else { return };
    for (transport, path) in [("streamable-http", "/mcp"), ("sse", "/sse")] {
        eprintln!("=== upstream {transport} ===");
        let port = free_port();
        let _up = PyServer::start(&py, transport, port, &[]);
        let key = if transport == "sse" { "sse_url" } else { "url" };
        let setup = mcp_setup(&format!(
            "deny_as = \"error\"\n[[mcp.server]]\nname = \"t\"\n{key} = \"http://127.0.0.1:{port}{path}\"\n"
        ));
        let server = setup.start();
        let mut args = http_args(&server, "/mcp/t", "http", "full");
        args.extend(["--deny-as".into(), "error".into()]);
        run_check(&py, &args, &[], setup.path());
        assert!(server.terminate().success());
        verify_store(&setup);
    }
}

/// `@modelcontextprotocol/server-everything` in its Streamable HTTP and SSE modes as the
/// upstream, the Python SDK on Streamable HTTP and HTTP+SSE in front.
#[test]
fn http_reference_server_everything() {
    let (Some(py), Some(everything)) = (py1(), node_bin("mcp-server-everything")) else {
        return;
    };
    for (mode, key, path, client) in [
        ("streamableHttp", "url", "/mcp", "http"),
        ("sse", "sse_url", "/sse", "sse"),
    ] {
        eprintln!("=== server-everything {mode}, client {client} ===");
        let port = free_port();
        let child = Command::new(&everything)
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _up = PyServer(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "server-everything did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let setup = mcp_setup(&format!(
            "[[mcp.server]]\nname = \"everything\"\n{key} = \"http://127.0.0.1:{port}{path}\"\n"
        ));
        let server = setup.start();
        let url = if client == "sse" {
            "/mcp/everything/sse"
        } else {
            "/mcp/everything"
        };
        run_check(&py, &http_args(&server, url, client, "everything"), &[], setup.path());
        assert!(server.terminate().success());
        let (_, _, effects) = verify_store(&setup);
        assert!(
            effects.iter().any(|e| e == "everything/get-sum:Succeeded"),
            "{effects:?}"
        );
    }
}

/// Revision 2026-07-28 (stateless): the mcp 2.x `Client` pinned to it, against our 2.x
/// server, over stdio and over Streamable HTTP on both sides; the headers that must
/// match the body are checked.
#[test]
fn modern_revision_stdio_and_http() {
    let Some(py) = py2() else { return };
    let upstream = vec![py.to_str().unwrap().to_owned(), mcp_py("server_modern.py")];
    let setup = mcp_setup("");
    run_check(&py, &stdio_args(&setup, "modern", "t", &upstream), &[], setup.path());
    verify_store(&setup);

    let port = free_port();
    let child = Command::new(&py)
        .arg(mcp_py("server_modern.py"))
        .args(["--transport", "streamable-http", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _up = PyServer(child);
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the modern server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let setup = mcp_setup(&format!(
        "[[mcp.server]]\nname = \"t\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    ));
    let server = setup.start();
    run_check(&py, &http_args(&server, "/mcp/t", "http", "modern"), &[], setup.path());
    // Headers that do not match the body, an unknown revision: refused before anything.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let call = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let post = |name: &str, version: &str, body: &Value| {
        let mut r = agent
            .post(format!("{}/mcp/t", server.base))
            .header("Authorization", format!("Bearer {AGENT_TOKEN}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", version)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", name)
            .send(body.to_string().as_bytes())
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    };
    let (st, body) = post("rm", "2026-07-28", &call);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");
    let (st, body) = post("echo", "2025-11-25", &call);
    assert!(st == 400 && body.contains("-32020"), "{body}");
    let mut old = call.clone();
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (st, body) = post("echo", "2099-01-01", &old);
    assert!(
        st == 400 && body.contains("-32022") && body.contains("supported"),
        "{body}"
    );
    let (st, body) = post("echo", "2026-07-28", &call);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("echo: x"), "{body}");
    // A parameter annotated x-mcp-header: its Mcp-Param-Region header must match.
    let query = |region_header: Option<&str>| {
        let body = json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"query","arguments":{"region":"eu","q":"x"},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
        let mut req = agent
            .post(format!("{}/mcp/t", server.base))
            .header("Authorization", format!("Bearer {AGENT_TOKEN}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", "query");
        if let Some(r) = region_header {
            req = req.header("Mcp-Param-Region", r);
        }
        let mut r = req.send(body.to_string().as_bytes()).unwrap();
        r.body_mut().read_to_string().unwrap()
    };
    let ok = query(Some("eu"));
    assert!(ok.contains("eu: x"), "{ok}");
    for bad in [None, Some("us")] {
        let refused = query(bad);
        assert!(refused.contains("-32020"), "{bad:?}: {refused}");
    }
    assert!(server.terminate().success());
    verify_store(&setup);
}

/// Revision 2025-03-26 allows JSON-RPC batches: every element is governed on its own.
#[test]
fn stdio_batches_in_2025_03_26_each_element_governed() {
    let Some(python) = py1() else { return };
    let setup = mcp_setup("");
    let upstream = vec![python.to_str().unwrap().to_owned(), mcp_py("server.py")];
    let mut raw = Raw::start(&setup, &upstream);
    let r = raw.call(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}));
    assert_eq!(r["result"]["protocolVersion"], "2025-03-26", "{r}");
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send(
        &json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"b"}}},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm","arguments":{"path":"/x"}}},
            {"jsonrpc":"2.0","id":3,"method":"initialize","params":{}},
            {"jsonrpc":"2.0","id":4,"method":"bogus/method"}
        ])
        .to_string(),
    );
    // The answers come back together, as one array (JSON-RPC 2.0 batch response).
    let all = raw.recv();
    let mut answers = std::collections::BTreeMap::new();
    for a in all.as_array().unwrap_or_else(|| panic!("not an array: {all}")) {
        answers.insert(a["id"].as_i64().unwrap(), a.clone());
    }
    assert_eq!(answers.len(), 4, "{all}");
    assert_eq!(answers[&1]["result"]["content"][0]["text"], "echo: b", "{answers:?}");
    assert_eq!(answers[&2]["result"]["isError"], true, "{answers:?}");
    assert!(answers[&2]["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("POLICY_DENY"));
    assert_eq!(
        answers[&3]["error"]["code"], -32600,
        "initialize in a batch: {answers:?}"
    );
    assert_eq!(answers[&4]["error"]["code"], -32601, "{answers:?}");
    drop(raw.stdin.take());
    assert!(raw.child.wait().unwrap().success());
    let (_, _, effects) = verify_store(&setup);
    assert!(effects.iter().any(|e| e == "t/echo:Succeeded"), "{effects:?}");
}

/// Streamable HTTP resumption: the client drops a call's SSE stream after the first
/// progress event and resumes it with `Last-Event-ID` on a GET: the rest of the events,
/// the answer included, arrive.
#[test]
fn http_stream_resumption_with_last_event_id() {
    let Some(py) = py1() else { return };
    let server_cmd = format!("[{:?}, {:?}]", py.to_str().unwrap(), mcp_py("server.py"));
    let setup = mcp_setup(&format!("[[mcp.server]]\nname = \"t\"\ncommand = {server_cmd}\n"));
    let server = setup.start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |session: Option<&str>, body: Value| {
        let mut req = agent
            .post(format!("{}/mcp/t", server.base))
            .header("Authorization", format!("Bearer {AGENT_TOKEN}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(s) = session {
            req = req
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", "2025-11-25");
        }
        req.send(body.to_string().as_bytes()).unwrap()
    };
    let r = post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
    );
    let mut r = r;
    let session = r.headers().get("mcp-session-id").unwrap().to_str().unwrap().to_owned();
    let init = r.body_mut().read_to_string().unwrap();
    assert!(init.contains("protocolVersion"), "{init}");
    post(
        Some(&session),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    );
    let mut r = post(
        Some(&session),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"steps":4},"_meta":{"progressToken":"p1"}}}),
    );
    assert_eq!(r.headers().get("content-type").unwrap(), "text/event-stream");
    // Read up to the first event's id, then hang up.
    let mut reader = BufReader::new(r.body_mut().as_reader());
    let mut first_id = None;
    let mut line = String::new();
    while first_id.is_none() {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended early");
        if let Some(id) = line.trim_end().strip_prefix("id: ") {
            first_id = Some(id.to_owned());
        }
    }
    drop(reader);
    drop(r);
    let first_id = first_id.unwrap();
    eprintln!("first event id {first_id}");
    std::thread::sleep(Duration::from_millis(500));
    // The resuming GET, by hand (HTTP/1.1, Connection: close; the body is chunked).
    let addr = server.base.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET /mcp/t HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {AGENT_TOKEN}\r\nAccept: text/event-stream\r\n\
         Mcp-Session-Id: {session}\r\nLast-Event-ID: {first_id}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.contains(&format!("id: {first_id}\n")),
        "the seen event is not replayed:\n{text}"
    );
    assert!(text.contains("notifications/progress"), "{text}\n{}", server.log_text());
    assert!(
        text.contains("done 4"),
        "the answer arrives on the resumed stream:\n{text}"
    );
    assert!(server.terminate().success());
    verify_store(&setup);
}

/// 2025-11-25 tasks: a task-augmented `tools/call` is decided like any call; its
/// EFFECT is written when `tasks/result` delivers the result.
#[test]
fn stdio_task_augmented_call_effect_at_result() {
    let Some(python) = py1() else { return };
    let setup = mcp_setup("");
    let upstream = vec![python.to_str().unwrap().to_owned(), mcp_py("server_tasks.py")];
    run_check(&python, &stdio_args(&setup, "tasks", "t", &upstream), &[], setup.path());
    let records = store_records(&setup.store());
    let (_, _, effects) = verify_store(&setup);
    assert_eq!(
        effects,
        vec!["t/long:Succeeded".to_owned()],
        "one EFFECT, for the task's result"
    );
    // The EFFECT commits to the delivered result (the blob holds it after the salt).
    let blobs = store_blobs(&setup.store());
    let effect = records
        .iter()
        .map(|r| Record::decode(r).unwrap())
        .find_map(|r| match r.body {
            Body::Effect { output, .. } => Some(output),
            _ => None,
        })
        .unwrap();
    let blob = &blobs[&effect];
    assert!(String::from_utf8_lossy(&blob[16..]).contains("long done 7"));
}

/// 2026-07-28 tasks (extension `io.modelcontextprotocol/tasks`), against a scripted
/// server (`server_tasks_modern.py`): a `tools/call` answered with a CreateTaskResult is
/// decided like any call, and its EFFECT is written when the task reaches a terminal
/// status, seen in a `tasks/get` result or pushed as `notifications/tasks`: completed
/// (committing to the result), failed (the JSON-RPC error), cancelled. A poll that
/// finds the task still working writes nothing.
#[test]
fn modern_tasks_effect_at_terminal_status() {
    let setup = mcp_setup("");
    let upstream = vec!["python3".to_owned(), mcp_py("server_tasks_modern.py")];
    let mut raw = Raw::start(&setup, &upstream);
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}});
    let mut call = |id: u64, method: &str, mut params: Value| {
        params["_meta"] = meta.clone();
        raw.call(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
    };
    let r = call(1, "server/discover", json!({}));
    assert_eq!(r["result"]["supportedVersions"][0], "2026-07-28", "{r}");
    let r = call(2, "tools/list", json!({}));
    assert_eq!(r["result"]["tools"].as_array().map(Vec::len), Some(8), "{r}");
    let status = |r: &Value| r["result"]["status"].as_str().unwrap_or_default().to_owned();

    let r = call(3, "tools/call", json!({"name":"long","arguments":{}}));
    assert_eq!(
        (r["result"]["resultType"].as_str(), r["result"]["taskId"].as_str()),
        (Some("task"), Some("task-long")),
        "{r}"
    );
    let r = call(4, "tasks/get", json!({"taskId":"task-long"}));
    assert_eq!(status(&r), "working", "{r}");
    let r = call(5, "tasks/get", json!({"taskId":"task-long"}));
    assert_eq!(status(&r), "completed", "{r}");
    assert_eq!(r["result"]["result"]["content"][0]["text"], "long done 7", "{r}");

    let r = call(6, "tools/call", json!({"name":"crash","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let r = call(7, "tasks/get", json!({"taskId":"task-crash"}));
    assert_eq!(status(&r), "failed", "{r}");

    let r = call(8, "tools/call", json!({"name":"slow","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let n = raw.recv();
    assert_eq!(
        (n["method"].as_str(), n["params"]["status"].as_str()),
        (Some("notifications/tasks"), Some("completed")),
        "{n}"
    );

    let mut call = |id: u64, method: &str, mut params: Value| {
        params["_meta"] = meta.clone();
        raw.call(json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
    };
    let r = call(9, "tools/call", json!({"name":"sleepy","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let r = call(10, "tasks/cancel", json!({"taskId":"task-sleepy"}));
    assert!(r.get("result").is_some(), "{r}");
    let r = call(11, "tasks/get", json!({"taskId":"task-sleepy"}));
    assert_eq!(status(&r), "cancelled", "{r}");

    // Requests of the server inside results (2026-07-28 has no others): decided like
    // server requests of earlier revisions, once however often a poll repeats them.
    let r = call(12, "tools/call", json!({"name":"ask","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    for id in [13, 14] {
        let r = call(id, "tasks/get", json!({"taskId":"task-ask"}));
        assert_eq!(status(&r), "input_required", "{r}");
        assert_eq!(
            r["result"]["inputRequests"]["name"]["method"], "elicitation/create",
            "{r}"
        );
    }
    let r = call(
        15,
        "tasks/update",
        json!({"taskId":"task-ask",
        "inputResponses":{"name":{"action":"accept","content":{"name":"Luca"}}}}),
    );
    assert!(r.get("result").is_some(), "{r}");
    let r = call(16, "tasks/get", json!({"taskId":"task-ask"}));
    assert_eq!(r["result"]["result"]["content"][0]["text"], "Hello, Luca!", "{r}");
    // One the policy refuses: the client gets the refusal, never the request.
    let r = call(17, "tools/call", json!({"name":"big","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let r = call(18, "tasks/get", json!({"taskId":"task-big"}));
    assert_eq!(r["error"]["code"], -32010, "{r}");
    assert!(!r.to_string().contains("Enter your password"), "{r}");
    // Waiting for input it does not name: nothing to decide, relayed as it is.
    let r = call(21, "tools/call", json!({"name":"wait","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let r = call(22, "tasks/get", json!({"taskId":"task-wait"}));
    assert_eq!(status(&r), "input_required", "{r}");
    // Without a task: an InputRequiredResult, then the retry with the response.
    let r = call(19, "tools/call", json!({"name":"confirm","arguments":{}}));
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let r = call(
        20,
        "tools/call",
        json!({"name":"confirm","arguments":{},
        "inputResponses":{"ok":{"action":"accept","content":{}}}}),
    );
    assert_eq!(r["result"]["content"][0]["text"], "confirmed", "{r}");

    drop(raw.stdin.take());
    assert!(raw.child.wait().unwrap().success());
    let records = store_records(&setup.store());
    let (_, _, mut effects) = verify_store(&setup);
    effects.sort();
    assert_eq!(
        effects,
        [
            "t/ask:Succeeded",
            // Never ended: aborted when the server went away.
            "t/big:Aborted",
            "t/confirm:Aborted",
            "t/confirm:Succeeded",
            "t/crash:Failed",
            "t/long:Succeeded",
            "t/sleepy:Aborted",
            "t/slow:Succeeded",
            "t/wait:Aborted",
            "t:elicitation/create:Succeeded",
            "t:elicitation/create:Succeeded",
        ],
        "one EFFECT per task at its terminal status, one per answered input request"
    );
    // Decisions of the input requests: `ask`'s once despite two polls, `confirm`'s, and
    // `big`'s refused by the policy.
    let mut decided = Vec::new();
    let mut last_tool = None;
    for r in &records {
        match Record::decode(r).unwrap().body {
            Body::Intent { tool, .. } => last_tool = Some(tool.to_owned()),
            Body::Decision { verdict, reason, .. } => {
                if let Some(t) = last_tool.take().filter(|t| t.starts_with("t:")) {
                    decided.push(format!("{t} {verdict:?} {reason}"));
                }
            }
            _ => {}
        }
    }
    decided.sort();
    assert_eq!(decided.len(), 3, "{decided:?}");
    assert!(
        decided[2].contains("Deny") && decided[0].contains("Allow") && decided[1].contains("Allow"),
        "{decided:?}"
    );
    // Each EFFECT commits to what ended its task (the blob holds it after the salt).
    let blobs = store_blobs(&setup.store());
    let outputs: Vec<String> = records
        .iter()
        .map(|r| Record::decode(r).unwrap())
        .filter_map(|r| match r.body {
            Body::Effect { output, .. } => Some(String::from_utf8_lossy(&blobs[&output][16..]).into_owned()),
            _ => None,
        })
        .collect();
    for want in ["long done 7", "API rate limit exceeded", "slow done", "task cancelled"] {
        assert!(outputs.iter().any(|o| o.contains(want)), "{want}: {outputs:?}");
    }
}

/// A server that changes a tool's definition without announcing it (no
/// `notifications/tools/list_changed`, `server_silent_change.py`): the proxy reads the
/// listing again before a call once the last one is older than `relist_ms`, so the
/// next call is refused `TOOL_DEFINITION_CHANGED`; with `relist_ms = 0` only an
/// announced change is caught, and the call goes through.
#[test]
fn stdio_silent_definition_change_caught_by_relisting() {
    for (relist_ms, caught) in [(1, true), (0, false)] {
        let setup = mcp_setup(&format!("relist_ms = {relist_ms}"));
        let upstream = vec!["python3".to_owned(), mcp_py("server_silent_change.py")];
        let mut raw = Raw::start(&setup, &upstream);
        let r = raw.call(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}));
        assert_eq!(r["result"]["protocolVersion"], "2025-06-18", "{r}");
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let r = raw.call(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
        assert_eq!(r["result"]["tools"][0]["name"], "echo", "{r}");
        let echo = |id: u64| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}});
        let r = raw.call(echo(2));
        assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
        std::thread::sleep(Duration::from_millis(5));
        let r = raw.call(echo(3));
        if caught {
            assert_eq!(r["result"]["isError"], true, "{r}");
            assert!(r.to_string().contains("TOOL_DEFINITION_CHANGED"), "{r}");
        } else {
            assert_eq!(r["result"]["content"][0]["text"], "hi", "relist_ms = 0: {r}");
        }
        drop(raw.stdin.take());
        assert!(raw.child.wait().unwrap().success());
        let (_, violations, effects) = verify_store(&setup);
        assert_eq!(
            violations.iter().any(|v| v == "TOOL_DEFINITION_CHANGED"),
            caught,
            "relist_ms = {relist_ms}: {violations:?}"
        );
        assert_eq!(effects.len(), if caught { 1 } else { 2 }, "{effects:?}");
    }
}

/// An upstream message larger than `max_message_bytes`: which request it answered
/// cannot be known, so the server is dropped (every request gets an error) and a
/// VIOLATION `PROTOCOL_VIOLATION` is recorded.
#[test]
fn stdio_oversized_upstream_message_drops_the_server() {
    let Some(python) = py1() else { return };
    let setup = mcp_setup("max_message_bytes = 4096");
    let upstream = vec![python.to_str().unwrap().to_owned(), mcp_py("server.py")];
    let mut raw = Raw::start(&setup, &upstream);
    let r = raw.call(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}));
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25", "{r}");
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let r =
        raw.call(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"big","arguments":{"n":100}}}));
    assert_eq!(r["result"]["isError"], false, "{r}");
    let r = raw
        .call(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"big","arguments":{"n":100000}}}));
    assert_eq!(
        (r["id"].as_i64(), r["error"]["code"].as_i64()),
        (Some(2), Some(-32012)),
        "{r}"
    );
    let r = raw.call(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}));
    assert_eq!(r["error"]["code"], -32012, "{r}");
    drop(raw.stdin.take());
    assert!(raw.child.wait().unwrap().success());
    let (_, violations, effects) = verify_store(&setup);
    assert!(violations.iter().any(|v| v == "PROTOCOL_VIOLATION"), "{violations:?}");
    assert!(effects.iter().any(|e| e == "t/big:Aborted"), "{effects:?}");
}
