//! The server end to end: the real `helm-proxy` binary on an ephemeral loopback port,
//! driven by a real HTTP client. Authentication; allowed, denied and escalated calls
//! under a signed bundle; an approval signed with an approver key and submitted over
//! HTTP; the retried call allowed; effects; records, metrics, errors; shutdown with a
//! final CHECKPOINT; then the store verified record by record against the trust root,
//! every decision replayed, and (when `helm-airgap` is built) exported as a pack,
//! verified and replayed by `helm-airgap`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use common::*;
use helm_kernel::keyfile::key_string;
use serde_json::{json, Value};
use verify_core::{approval_challenge, Record};

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

fn error_code(r: &Resp) -> String {
    s(&r.json["error"]["code"])
}

#[test]
fn evaluate_approve_effects_records_shutdown_verify() {
    let setup = Setup::new();
    let server = setup.start();
    let c = server.client();

    // Health needs no token.
    let h = c.get("/healthz", None);
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json["status"], "ok");
    assert_eq!(h.json["durability"], "durable");
    assert_eq!(h.json["key"], key_string(&signer("kernel-1").public_key()));
    assert_eq!(h.json["bundles"][0]["name"], "proxy-test");
    let records_at_start = h.json["records"].as_u64().unwrap();
    // 3 TRUST_EVENTs and 1 POLICY.
    assert_eq!(records_at_start, 4);
    // The stores: healthy, every record durable.
    let store = &h.json["store"];
    assert_eq!(store["poisoned"], false, "{}", h.text);
    assert_eq!(store["records"]["poisoned"], Value::Null);
    assert_eq!(store["blobs"]["poisoned"], Value::Null);
    assert_eq!(store["records"]["appended"].as_u64(), Some(records_at_start));
    assert_eq!(store["records"]["durable"].as_u64(), Some(records_at_start));
    assert!(store["records"]["segments"].as_u64().unwrap() >= 1);
    assert!(store["blobs"]["appended"].as_u64().is_some());

    // No token, a wrong token, a malformed header: 401 with a JSON error, nothing recorded.
    let call = json!({"tool": "read_file", "args": {"path": "/workspace/a.txt"}, "session": "s1"});
    for token in [None, Some("wrong-token"), Some("")] {
        let r = c.post("/v1/evaluate", token, &call);
        assert_eq!(r.status, 401, "{token:?}: {}", r.text);
        assert_eq!(error_code(&r), "UNAUTHENTICATED");
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer realm=\"helm\""));
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
    for path in ["/v1/records", "/v1/approvals", "/metrics"] {
        assert_eq!(c.get(path, None).status, 401, "{path}");
    }
    // Unauthenticated and malformed: still 401 (authentication comes first).
    assert_eq!(c.post_raw("/v1/evaluate", None, b"{not json").status, 401);
    // A token without the scope: 403.
    let r = c.post("/v1/evaluate", Some(APPROVER_TOKEN), &call);
    assert_eq!((r.status, error_code(&r).as_str()), (403, "FORBIDDEN"));
    assert_eq!(c.get("/v1/records", Some(AGENT_TOKEN)).status, 403);
    assert_eq!(c.get("/v1/approvals", Some(AGENT_TOKEN)).status, 403);

    // Requests that cannot be parsed: 400, nothing allowed, nothing recorded.
    for (body, code) in [
        (&b"{not json"[..], "INVALID_JSON"),
        (b"", "INVALID_JSON"),
        (
            br#"{"tool":"read_file","session":"s1","principal":"root"}"#,
            "INVALID_REQUEST",
        ),
        (br#"{"tool":"read_file"}"#, "INVALID_REQUEST"),
        (br#"{"tool":"","session":"s1"}"#, "INVALID_REQUEST"),
        (
            br#"{"tool":"read_file","session":"s1","args":{},"text":"x"}"#,
            "INVALID_REQUEST",
        ),
        (br#"[1,2,3]"#, "INVALID_REQUEST"),
    ] {
        let r = c.post_raw("/v1/evaluate", Some(AGENT_TOKEN), body);
        assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text);
        assert_eq!(error_code(&r), code, "{}", r.text);
        assert!(r.json.get("status").is_none());
    }
    // A body over the limit (64 KiB in this configuration): 413.
    let big = json!({"tool": "read_file", "args": {"path": "x".repeat(70_000)}, "session": "s1"});
    let r = c.post("/v1/evaluate", Some(AGENT_TOKEN), &big);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (413, "BODY_TOO_LARGE"),
        "{}",
        r.text
    );
    // Unknown routes and methods: JSON errors too.
    let r = c.get("/v1/nothing", Some(AGENT_TOKEN));
    assert_eq!((r.status, error_code(&r).as_str()), (404, "NOT_FOUND"));
    let r = c.get("/v1/evaluate", Some(AGENT_TOKEN));
    assert_eq!((r.status, error_code(&r).as_str()), (405, "METHOD_NOT_ALLOWED"));
    assert_eq!(
        c.get("/healthz", None).json["records"].as_u64().unwrap(),
        records_at_start
    );

    // Allowed.
    let a = c.evaluate("read_file", json!({"path": "/workspace/a.txt"}), "s1");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        (s(&a.json["status"]), s(&a.json["reason"])),
        ("allow".into(), "POLICY_ALLOW".into())
    );
    assert_eq!(a.json["rule"], "read");
    assert_eq!(a.json["durable"], true);
    let allowed_intent = s(&a.json["intent"]);
    // Denied: by the deny rule, and by the bundle's other_tools.
    let d = c.evaluate("shell", json!({"cmd": "rm"}), "s1");
    assert_eq!(
        (s(&d.json["status"]), s(&d.json["reason"])),
        ("deny".into(), "POLICY_DENY".into()),
        "{}",
        d.text
    );
    let denied_intent = s(&d.json["intent"]);
    let o = c.evaluate("format_disk", json!({}), "s1");
    assert_eq!(s(&o.json["status"]), "deny");
    // Free-text input.
    let t = c.post(
        "/v1/evaluate",
        Some(AGENT_TOKEN),
        &json!({"tool": "read_file", "text": "/workspace/b.txt", "session": "s1"}),
    );
    assert_eq!((t.status, s(&t.json["status"])), (200, "deny".into()), "{}", t.text);

    // Escalated: pending with an approval.
    let deploy = json!({"env": "prod", "version": "1.2.3"});
    let p = c.evaluate("deploy", deploy.clone(), "s2");
    assert_eq!(
        (s(&p.json["status"]), s(&p.json["reason"])),
        ("pending".into(), "POLICY_ESCALATE".into()),
        "{}",
        p.text
    );
    let approval = &p.json["approval"];
    let id = s(&approval["id"]);
    assert_eq!(id, s(&p.json["decision"]));
    assert_eq!(
        (s(&approval["role"]), approval["quorum"].as_u64()),
        ("approver".into(), Some(1))
    );
    let not_before = approval["not_before"].as_u64().unwrap();
    let deploy_intent = s(&p.json["intent"]);
    // Retried: the same pending approval, no new decision.
    let p2 = c.evaluate("deploy", deploy.clone(), "s2");
    assert_eq!(
        (s(&p2.json["status"]), s(&p2.json["approval"]["id"])),
        ("pending".into(), id.clone())
    );

    // The approver's view: list, fetch the challenge.
    let list = c.get("/v1/approvals?state=pending", Some(APPROVER_TOKEN));
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<String> = list.json["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["id"]))
        .collect();
    assert_eq!(ids, vec![id.clone()]);
    let one = c.get(&format!("/v1/approvals/{id}"), Some(APPROVER_TOKEN));
    assert_eq!(one.status, 200);
    let id_bytes: [u8; 32] = hex::decode(&id).unwrap().try_into().unwrap();
    let challenge = hex::decode(s(&one.json["challenge"])).unwrap();
    assert_eq!(challenge, approval_challenge(&id_bytes).to_vec());
    assert_eq!(s(&one.json["principal"]), "agent-7");
    assert_eq!(
        c.get(&format!("/v1/approvals/{}", "0".repeat(64)), Some(APPROVER_TOKEN))
            .status,
        404
    );
    assert_eq!(c.get("/v1/approvals/xyz", Some(APPROVER_TOKEN)).status, 400);

    // The approver signs the challenge (offline: only the signature travels).
    let approver = signer("approver-1");
    let submit = |key: &verify_core::Signer, sig: [u8; 64]| {
        c.post(
            &format!("/v1/approvals/{id}"),
            Some(APPROVER_TOKEN),
            &json!({"approver": key_string(&key.public_key()), "signature": hex::encode(sig)}),
        )
    };
    let good_sig = approver.sign(&challenge);
    // The body may carry the id (as `helm-airgap approve --json` writes it): it must match.
    let r = c.post(
        &format!("/v1/approvals/{id}"),
        Some(APPROVER_TOKEN),
        &json!({"id": "ab".repeat(32), "approver": key_string(&approver.public_key()), "signature": hex::encode(good_sig)}),
    );
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (400, "INVALID_REQUEST"),
        "{}",
        r.text
    );
    if now_ms() + 50 < not_before {
        let r = submit(&approver, good_sig);
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (409, "APPROVAL_TIMELOCK"),
            "{}",
            r.text
        );
    } else {
        eprintln!("NOTE: the machine is slow: the timelock passed before the early submission could be tried");
    }
    // An approval needs the approver scope, not just any token.
    let r = c.post(
        &format!("/v1/approvals/{id}"),
        Some(AGENT_TOKEN),
        &json!({"approver": key_string(&approver.public_key()), "signature": hex::encode(good_sig)}),
    );
    assert_eq!(r.status, 403);
    // Wait for the timelock.
    while now_ms() <= not_before + 20 {
        std::thread::sleep(core::time::Duration::from_millis(20));
    }
    // After the timelock: a key that is not an approver's (the policy author's) and a signature
    // over something else are refused; the approver's signature is granted.
    let author = signer("author-1");
    let r = submit(&author, author.sign(&challenge));
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "APPROVAL_ROLE"),
        "{}",
        r.text
    );
    let r = submit(&approver, approver.sign(b"something else"));
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "APPROVAL_INVALID"),
        "{}",
        r.text
    );
    let r = c.post(
        &format!("/v1/approvals/{id}"),
        Some(APPROVER_TOKEN),
        &json!({"id": id, "approver": key_string(&approver.public_key()), "signature": hex::encode(good_sig)}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s(&r.json["state"]), "approved");
    assert_eq!(r.json["approvers"][0], hex::encode(approver.public_key()));
    let r = submit(&approver, good_sig);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (409, "ALREADY_RESOLVED"),
        "{}",
        r.text
    );

    // The retried call is now allowed, under the same intent.
    let g = c.evaluate("deploy", deploy.clone(), "s2");
    assert_eq!(
        (s(&g.json["status"]), s(&g.json["reason"])),
        ("allow".into(), "APPROVAL_GRANTED".into()),
        "{}",
        g.text
    );
    assert_eq!(s(&g.json["intent"]), deploy_intent);
    // Another principal's identical call is its own intent: escalated, not allowed.
    let other = c.post(
        "/v1/evaluate",
        Some(OTHER_AGENT_TOKEN),
        &json!({"tool": "deploy", "args": deploy, "session": "s2"}),
    );
    assert_eq!(s(&other.json["status"]), "pending", "{}", other.text);

    // Effects.
    let effect = |token: &str, body: Value| c.post("/v1/effects", Some(token), &body);
    let e = effect(
        AGENT_TOKEN,
        json!({"intent": allowed_intent, "status": "succeeded", "output": "file contents", "meters": {"duration_ms": 3}}),
    );
    assert_eq!(e.status, 200, "{}", e.text);
    let read_effect = s(&e.json["effect"]);
    let e = effect(AGENT_TOKEN, json!({"intent": allowed_intent, "status": "succeeded"}));
    assert_eq!(
        (e.status, error_code(&e).as_str()),
        (409, "NO_OPEN_PERMIT"),
        "{}",
        e.text
    );
    let e = effect(AGENT_TOKEN, json!({"intent": denied_intent, "status": "succeeded"}));
    assert_eq!(e.status, 409, "{}", e.text);
    let e = effect(
        OTHER_AGENT_TOKEN,
        json!({"intent": deploy_intent, "status": "succeeded"}),
    );
    assert_eq!(
        (e.status, error_code(&e).as_str()),
        (403, "NOT_YOUR_INTENT"),
        "{}",
        e.text
    );
    let e = effect(AGENT_TOKEN, json!({"intent": deploy_intent, "status": "done"}));
    assert_eq!((e.status, error_code(&e).as_str()), (400, "INVALID_REQUEST"));
    let e = effect(
        AGENT_TOKEN,
        json!({"intent": deploy_intent, "status": "failed", "output_base64": "ZGVwbG95IGZhaWxlZA==", "executor": "ci-runner"}),
    );
    assert_eq!(e.status, 200, "{}", e.text);
    let deploy_effect = s(&e.json["effect"]);
    // By the caller's call id instead of the INTENT hash (only the principal's own calls).
    let k = c.post(
        "/v1/evaluate",
        Some(AGENT_TOKEN),
        &json!({"tool": "read_file", "args": {"path": "/workspace/k.txt"}, "session": "s3", "call_id": "call-42"}),
    );
    assert_eq!(s(&k.json["status"]), "allow", "{}", k.text);
    let e = effect(OTHER_AGENT_TOKEN, json!({"call_id": "call-42", "status": "succeeded"}));
    assert_eq!(
        (e.status, error_code(&e).as_str()),
        (409, "NO_OPEN_PERMIT"),
        "{}",
        e.text
    );
    let e = effect(
        AGENT_TOKEN,
        json!({"call_id": "call-42", "status": "succeeded", "output": "k"}),
    );
    assert_eq!(e.status, 200, "{}", e.text);
    let e = effect(AGENT_TOKEN, json!({"call_id": "call-42", "status": "succeeded"}));
    assert_eq!(
        (e.status, error_code(&e).as_str()),
        (409, "NO_OPEN_PERMIT"),
        "{}",
        e.text
    );

    // Records: paged, decoded, with the raw bytes.
    let page = c.get("/v1/records?from=0&limit=1000", Some(AUDITOR_TOKEN));
    assert_eq!(page.status, 200, "{}", page.text);
    let recs = page.json["records"].as_array().unwrap();
    assert_eq!(recs.len() as u64, page.json["total"].as_u64().unwrap());
    assert_eq!(page.json["next"], Value::Null);
    assert_eq!(recs[0]["kind"], "TRUST_EVENT");
    use base64::Engine as _;
    for r in recs {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s(&r["cbor"])).unwrap();
        assert_eq!(hex::encode(verify_core::sha256(&bytes)), s(&r["hash"]));
    }
    let listed: Vec<String> = recs.iter().map(|r| s(&r["hash"])).collect();
    for h in [
        &allowed_intent,
        &denied_intent,
        &deploy_intent,
        &id,
        &read_effect,
        &deploy_effect,
    ] {
        assert!(listed.contains(h), "{h} not listed");
    }
    let kinds: Vec<String> = recs.iter().map(|r| s(&r["kind"])).collect();
    assert!(
        kinds.contains(&"APPROVAL".to_string()) && kinds.contains(&"VIOLATION".to_string()),
        "{kinds:?}"
    );
    let two = c.get("/v1/records?from=1&limit=2&encoding=hex", Some(AUDITOR_TOKEN));
    assert_eq!(two.json["records"].as_array().unwrap().len(), 2);
    assert_eq!(two.json["next"], 3);
    let one = c.get("/v1/records/1?encoding=hex", Some(AUDITOR_TOKEN));
    assert_eq!(one.status, 200);
    assert_eq!(one.json["hash"], recs[1]["hash"]);
    assert_eq!(
        hex::encode(verify_core::sha256(&hex::decode(s(&one.json["cbor"])).unwrap())),
        s(&one.json["hash"])
    );
    assert_eq!(c.get("/v1/records/100000", Some(AUDITOR_TOKEN)).status, 404);
    assert_eq!(c.get("/v1/records?limit=0", Some(AUDITOR_TOKEN)).status, 400);
    assert_eq!(c.get("/v1/records?bogus=1", Some(AUDITOR_TOKEN)).status, 400);

    // Metrics.
    let m = c.get("/metrics", Some(AUDITOR_TOKEN));
    assert_eq!(m.status, 200);
    assert!(m.content_type.as_deref().unwrap().starts_with("text/plain"));
    for line in [
        "helm_decisions_total{status=\"allow\"} 3",
        "helm_decisions_total{status=\"deny\"} 3",
        "helm_decisions_total{status=\"pending\"} 3",
        "helm_effects_total 3",
        "helm_approvals_total 1",
        "helm_store_durable 1",
        "helm_evaluate_duration_seconds_count 9",
    ] {
        assert!(m.text.lines().any(|l| l == line), "metrics lack {line:?}:\n{}", m.text);
    }

    // A second server on the same store is refused (one writer at a time): exit 1.
    let second = helm_proxy(&["serve", "--config", setup.config().to_str().unwrap()], setup.path());
    assert_eq!(
        second.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // SIGTERM: graceful stop with a final CHECKPOINT, exit 0.
    let total = page.json["total"].as_u64().unwrap();
    let log_path = server.log.clone();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("final CHECKPOINT at record"), "{log}");

    // The store: every record verifies against the trust root, in order; the last is the
    // final CHECKPOINT; every DECISION replays from the bundle the store carries.
    let records = store_records(&setup.store());
    assert!(
        records.len() as u64 > total,
        "{} records, {total} listed before the checkpoint",
        records.len()
    );
    let verified = verify(&records);
    eprintln!("verified: {verified:?}");
    let last = Record::decode(records.last().unwrap()).unwrap();
    assert_eq!(last.kind, verify_core::Kind::Checkpoint);
    let all = hashes(&records);
    for h in [
        &allowed_intent,
        &denied_intent,
        &deploy_intent,
        &id,
        &read_effect,
        &deploy_effect,
    ] {
        assert!(all.contains(h));
    }
    let report = replay(&records, &store_blobs(&setup.store()));
    assert!(report.reproduced >= 6, "{report:?}");
    airgap_export_verify_replay(&setup);

    // Restarted on the same store: clocks and sequences continue, the store still verifies.
    let server = setup.start();
    let c = server.client();
    let h = c.get("/healthz", None);
    assert_eq!(h.json["records"].as_u64().unwrap(), records.len() as u64);
    let again = c.evaluate("read_file", json!({"path": "/workspace/c.txt"}), "s1");
    assert_eq!(s(&again.json["status"]), "allow");
    assert!(server.terminate().success());
    let records = store_records(&setup.store());
    verify(&records);
    replay(&records, &store_blobs(&setup.store()));
}

#[test]
fn check_config_and_refusals() {
    let setup = Setup::new();
    let d = setup.path();
    let out = helm_proxy(&["check-config", "--config", "helm-proxy.toml"], d);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("configuration OK"), "{text}");
    assert!(text.contains("active with role kernel"), "{text}");
    assert!(text.contains("signed by ed25519:"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:0\""), "{text}");
    assert!(text.contains("durability = \"durable\""), "{text}");
    // The printed configuration is itself a valid configuration.
    std::fs::write(d.join("effective.toml"), text.as_bytes()).unwrap();
    let again = helm_proxy(&["check-config", "--config", "effective.toml"], d);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

    let config = std::fs::read_to_string(setup.config()).unwrap();
    let refuse = |name: &str, text: String, needle: &str| {
        std::fs::write(d.join(name), text).unwrap();
        for cmd in ["check-config", "serve"] {
            let out = helm_proxy(&[cmd, "--config", name], d);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {err}");
            assert!(err.contains(needle), "{cmd} {name}: {err}");
        }
    };
    // Unsigned bundles need an explicit switch.
    refuse(
        "unsigned.toml",
        config.replace("bundle.signed", "bundle.toml"),
        "not a signed bundle",
    );
    // A listen address beyond loopback needs an explicit switch.
    refuse(
        "remote.toml",
        config.replace("127.0.0.1:0", "0.0.0.0:0"),
        "not a loopback address",
    );
    // A bundle signed by a key that is not a policy author of the chain.
    let bundle = guardian::Bundle::from_toml(BUNDLE).unwrap();
    std::fs::write(
        d.join("rogue.signed"),
        guardian::sign_bundle(&bundle, &signer("approver-1")),
    )
    .unwrap();
    refuse(
        "rogue.toml",
        config.replace("bundle.signed", "rogue.signed"),
        "not a trusted policy author",
    );
    // A kernel key that the chain does not publish.
    helm_kernel::keyfile::KeyFile::from_seed("other".into(), "kernel".into(), test_seed("other"))
        .write_new(&d.join("other.key"))
        .unwrap();
    refuse(
        "otherkey.toml",
        config.replace("kernel.key", "other.key"),
        "not an active key with role kernel",
    );
    // A token written in clear instead of its SHA-256.
    refuse(
        "cleartoken.toml",
        format!("{config}\n[[token]]\nprincipal = \"x\"\ntoken_sha256 = \"{AGENT_TOKEN}\"\n"),
        "token_sha256",
    );
    // A trust root that did not sign the chain.
    std::fs::write(
        d.join("other-root.json"),
        format!(
            r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"x","key":"{}"}}]}}"#,
            key_string(&signer("not-root").public_key())
        ),
    )
    .unwrap();
    refuse(
        "otherroot.toml",
        config.replace("trust-root.json", "other-root.json"),
        "does not verify",
    );
}

#[test]
fn buffered_store_and_unsigned_bundle_are_labelled() {
    let setup = Setup::with_config("durability = \"buffered\"\nsync_interval_ms = 5");
    let config = std::fs::read_to_string(setup.config()).unwrap().replace(
        "bundles = [\"bundle.signed\"]",
        "bundles = [\"bundle.toml\"]\nallow_unsigned_bundles = true",
    );
    std::fs::write(setup.config(), config).unwrap();
    let server = setup.start();
    let c = server.client();
    let h = c.get("/healthz", None);
    assert_eq!(h.json["durability"], "buffered");
    let a = c.evaluate("read_file", json!({"path": "/workspace/a.txt"}), "s1");
    assert_eq!(
        (s(&a.json["status"]), a.json["durable"].clone()),
        ("allow".into(), Value::Bool(false))
    );
    let m = c.get("/metrics", Some(AUDITOR_TOKEN));
    assert!(m.text.lines().any(|l| l == "helm_store_durable 0"), "{}", m.text);
    let log = server.log_text();
    assert!(log.contains("UNSIGNED policy bundle"), "{log}");
    assert!(log.contains("BUFFERED store"), "{log}");
    assert!(server.terminate().success());
    let records = store_records(&setup.store());
    verify(&records);
}
