//! The decision engine: every fail-closed path, composition, sequence conditions over
//! session history, budgets from records, signed bundles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]

use guardian::{
    load_signed, sign_bundle, Bundle, Evidence, Guardian, Held, Limits, LoadError, PastCall, Request, Verdict,
};
use serde_json::json;
use verify_core::Signer;

const MAIL: &str = r#"
name = "mail"
principals = ["agent-*"]

[[rule]]
id = "read"
tools = ["read_inbox"]
verdict = "allow"

[[rule]]
id = "send-internal"
tools = ["send_email"]
verdict = "allow"
require = ["args.to matches '*@example.com'", "not called('read_inbox')"]

[[rule]]
id = "send-after-read"
tools = ["send_email"]
verdict = "escalate"
require = ["called('read_inbox')"]
escalation = { role = "approver", quorum = 2, timelock_ms = 1000, ttl_ms = 60000 }

[[rule]]
id = "big-attachment"
tools = ["send_email"]
verdict = "deny"
require = ["exists(args.attachment_mb) and args.attachment_mb > 10"]

[[rule]]
id = "pay"
tools = ["pay"]
verdict = "allow"
require = ["args.amount <= 100"]

[[budget]]
id = "send-rate"
scope = "session"
tools = ["send_email"]
max_calls = 3
window_ms = 60000

[[budget]]
id = "daily-pay"
scope = "principal"
tools = ["pay"]
max_calls = 2
"#;

fn mail() -> Bundle {
    Bundle::from_toml(MAIL).unwrap()
}

fn one(b: Bundle) -> Guardian {
    Guardian::new(vec![b], Limits::default())
}

fn req(tool: &str, args: serde_json::Value) -> Request {
    Request::new(tool, "agent-1", "s1", 1_000_000).with_args(args)
}

fn call(tool: &str, time: u64) -> PastCall {
    PastCall {
        tool: tool.into(),
        time,
        same_session: true,
        cost: 0,
        approved: false,
    }
}

fn check(g: &Guardian, r: &Request, ev: &Evidence, verdict: Verdict, reason: &str) {
    let d = g.decide(r, ev);
    assert_eq!((d.verdict, d.reason.as_str()), (verdict, reason), "{r:?}: {d}");
}

#[test]
fn allow_and_requirement_sets() {
    let g = one(mail());
    let ev = Evidence::new();
    check(&g, &req("read_inbox", json!({})), &ev, Verdict::Allow, "POLICY_ALLOW");
    check(
        &g,
        &req("send_email", json!({"to": "a@example.com"})),
        &ev,
        Verdict::Allow,
        "POLICY_ALLOW",
    );
    // No requirement set held: fail closed.
    check(
        &g,
        &req("send_email", json!({"to": "a@evil.com"})),
        &ev,
        Verdict::Deny,
        "POLICY_DENY",
    );
    // A satisfied deny rule wins over a satisfied allow rule.
    check(
        &g,
        &req("send_email", json!({"to": "a@example.com", "attachment_mb": 50})),
        &ev,
        Verdict::Deny,
        "POLICY_DENY",
    );
    let d = g.decide(&req("send_email", json!({"to": "a@example.com"})), &ev);
    assert_eq!(d.policy, mail().hash());
    assert_eq!(d.rule.as_deref(), Some("send-internal"));
}

#[test]
fn no_bundle_applies_is_no_policy_defined() {
    let g = one(mail());
    let ev = Evidence::new();
    // Unknown tool: the bundle does not apply.
    check(&g, &req("rm_rf", json!({})), &ev, Verdict::Deny, "NO_POLICY_DEFINED");
    // Another principal: the bundle does not apply.
    let r = Request::new("read_inbox", "human-1", "s1", 0);
    check(&g, &r, &ev, Verdict::Deny, "NO_POLICY_DEFINED");
    // No bundle at all.
    check(
        &Guardian::new(vec![], Limits::default()),
        &req("read_inbox", json!({})),
        &ev,
        Verdict::Deny,
        "NO_POLICY_DEFINED",
    );
    let d = g.decide(&req("rm_rf", json!({})), &ev);
    assert_eq!(d.policy, guardian::set_hash(&[mail().hash()]));
}

#[test]
fn other_tools_deny_is_tool_not_allowed() {
    let b = Bundle::from_toml(&MAIL.replace(
        "principals = [\"agent-*\"]",
        "principals = [\"agent-*\"]\nother_tools = \"deny\"",
    ))
    .unwrap();
    check(
        &one(b),
        &req("rm_rf", json!({})),
        &Evidence::new(),
        Verdict::Deny,
        "TOOL_NOT_ALLOWED",
    );
}

#[test]
fn missing_field_is_policy_missing_field() {
    let g = one(mail());
    let d = g.decide(&req("send_email", json!({"subject": "x"})), &Evidence::new());
    assert_eq!(
        (d.verdict, d.reason.as_str()),
        (Verdict::Deny, "POLICY_MISSING_FIELD"),
        "{d}"
    );
    assert!(d.error.unwrap().to_string().contains("args[\"to\"]"));
    check(
        &g,
        &req("pay", json!({})),
        &Evidence::new(),
        Verdict::Deny,
        "POLICY_MISSING_FIELD",
    );
}

#[test]
fn type_error_is_policy_type_error() {
    let g = one(mail());
    for args in [
        json!({"amount": "100"}),
        json!({"amount": 1.5}),
        json!({"amount": [1]}),
        json!({"amount": null}),
    ] {
        check(
            &g,
            &req("pay", args),
            &Evidence::new(),
            Verdict::Deny,
            "POLICY_TYPE_ERROR",
        );
    }
    check(
        &g,
        &req("send_email", json!({"to": 7})),
        &Evidence::new(),
        Verdict::Deny,
        "POLICY_TYPE_ERROR",
    );
    // Arguments that are not an object.
    check(
        &g,
        &req("pay", json!([1, 2])),
        &Evidence::new(),
        Verdict::Deny,
        "POLICY_TYPE_ERROR",
    );
}

#[test]
fn exhausted_step_budget_is_policy_limit_exceeded() {
    let g = Guardian::new(vec![mail()], Limits { max_steps: 3 });
    check(
        &g,
        &req("send_email", json!({"to": "a@example.com"})),
        &Evidence::new(),
        Verdict::Deny,
        "POLICY_LIMIT_EXCEEDED",
    );
    // A long input costs steps in proportion to its length.
    let g = Guardian::new(vec![mail()], Limits { max_steps: 200 });
    let long = format!("{}@example.com", "a".repeat(100_000));
    check(
        &g,
        &req("send_email", json!({"to": long})),
        &Evidence::new(),
        Verdict::Deny,
        "POLICY_LIMIT_EXCEEDED",
    );
}

#[test]
fn bad_expressions_do_not_load() {
    for bad in [
        "args.amount <= 'x'",
        "args.amount <=",
        "tool matches 3",
        "unknown_root == 1",
        "time == 'noon'",
        "called('x') + 1",
    ] {
        let src = MAIL.replace("args.amount <= 100", bad);
        let err = Bundle::from_toml(&src).unwrap_err();
        assert!(matches!(err, guardian::BundleError::Expression { .. }), "{bad}: {err}");
    }
    // Reason codes must be registered for the verdict.
    let src = MAIL.replace("id = \"pay\"", "id = \"pay\"\nreason = \"POLICY_DENY\"");
    assert!(Bundle::from_toml(&src).is_err());
    // Unknown fields are errors.
    assert!(Bundle::from_toml(&format!(
        "{MAIL}\n[[rule]]\nid = \"x\"\ntools = [\"t\"]\nverdict = \"allow\"\nrequires = []\n"
    ))
    .is_err());
}

#[test]
fn sequence_condition_over_session_history() {
    let g = one(mail());
    let send = req("send_email", json!({"to": "a@example.com"}));
    let mut ev = Evidence::new();
    check(&g, &send, &ev, Verdict::Allow, "POLICY_ALLOW");
    // read_inbox in another session of the same principal does not count.
    ev.add_call(&PastCall {
        same_session: false,
        ..call("read_inbox", 10)
    });
    check(&g, &send, &ev, Verdict::Allow, "POLICY_ALLOW");
    // read_inbox earlier in this session: escalate, with the terms of the rule.
    ev.add_call(&call("read_inbox", 20));
    let d = g.decide(&send, &ev);
    assert_eq!((d.verdict, d.reason.as_str()), (Verdict::Escalate, "POLICY_ESCALATE"));
    let e = d.escalation.unwrap();
    assert_eq!(
        (e.role.as_str(), e.quorum, e.not_before, e.expires),
        ("approver", 2, 1_001_000, 1_061_000)
    );
}

#[test]
fn budgets_and_rate_limits() {
    let g = one(mail());
    let send = req("send_email", json!({"to": "a@example.com"}));
    let mut ev = Evidence::new();
    for t in [1, 2, 3] {
        ev.add_call(&call("send_email", t));
    }
    // Three sends long ago: outside the window.
    check(&g, &send, &ev, Verdict::Allow, "POLICY_ALLOW");
    let mut ev = Evidence::new();
    for t in [990_000, 995_000, 999_000] {
        ev.add_call(&call("send_email", t));
    }
    check(&g, &send, &ev, Verdict::Deny, "RATE_LIMITED");
    // Principal budget counts every session.
    let pay = req("pay", json!({"amount": 5}));
    let mut ev = Evidence::new();
    ev.add_call(&PastCall {
        same_session: false,
        ..call("pay", 1)
    });
    check(&g, &pay, &ev, Verdict::Allow, "POLICY_ALLOW");
    ev.add_call(&call("pay", 2));
    check(&g, &pay, &ev, Verdict::Deny, "BUDGET_EXHAUSTED");
}

const STRICT: &str = r#"
name = "strict"
[[rule]]
id = "no-pay-over-50"
tools = ["pay"]
verdict = "deny"
require = ["args.amount > 50"]
[[rule]]
id = "pay-ok"
tools = ["pay"]
verdict = "allow"
[[rule]]
id = "mail-escalate"
tools = ["send_email", "read_*"]
verdict = "escalate"
"#;

#[test]
fn composition_deny_over_escalate_over_allow() {
    let g = Guardian::new(vec![mail(), Bundle::from_toml(STRICT).unwrap()], Limits::default());
    let ev = Evidence::new();
    // mail allows, strict denies.
    check(
        &g,
        &req("pay", json!({"amount": 80})),
        &ev,
        Verdict::Deny,
        "POLICY_DENY",
    );
    // both allow.
    check(
        &g,
        &req("pay", json!({"amount": 8})),
        &ev,
        Verdict::Allow,
        "POLICY_ALLOW",
    );
    // mail allows, strict escalates.
    check(
        &g,
        &req("read_inbox", json!({})),
        &ev,
        Verdict::Escalate,
        "POLICY_ESCALATE",
    );
    // mail not applicable (principal), strict allows.
    let r = Request::new("pay", "human", "s", 0).with_args(json!({"amount": 1}));
    check(&g, &r, &ev, Verdict::Allow, "POLICY_ALLOW");
    // an evaluation error in one bundle denies even if the other allows.
    check(
        &g,
        &req("pay", json!({"amount": "8"})),
        &ev,
        Verdict::Deny,
        "POLICY_TYPE_ERROR",
    );
    // order of the bundles does not matter.
    let g2 = Guardian::new(vec![Bundle::from_toml(STRICT).unwrap(), mail()], Limits::default());
    for r in [req("pay", json!({"amount": 80})), req("read_inbox", json!({}))] {
        assert_eq!(g.decide(&r, &ev), g2.decide(&r, &ev));
    }
}

#[test]
fn canonical_form_ignores_formatting_and_round_trips() {
    let a = mail();
    let reformatted = MAIL.replace("args.amount <= 100", "( args.amount<=100 )");
    let b = Bundle::from_toml(&reformatted).unwrap();
    assert_eq!(a.hash(), b.hash());
    let c = Bundle::from_canonical(a.canonical()).unwrap();
    assert_eq!(c.hash(), a.hash());
    assert_eq!(c.spec(), a.spec());
    // Any byte change is rejected or changes the hash.
    let mut bytes = a.canonical().to_vec();
    bytes.push(0);
    assert!(Bundle::from_canonical(&bytes).is_err());
}

#[test]
fn signed_bundles() {
    let author = Signer::from_seed(&[7; 32]);
    let other = Signer::from_seed(&[8; 32]);
    let b = mail();
    let signed = sign_bundle(&b, &author);
    let (loaded, kid) = load_signed(&signed, &[author.public_key()]).unwrap();
    assert_eq!((loaded.hash(), kid), (b.hash(), author.public_key()));
    // Unsigned: the bare canonical form.
    assert!(matches!(
        load_signed(b.canonical(), &[author.public_key()]),
        Err(LoadError::NotSigned(_))
    ));
    // Signed by a key that is not a trusted author.
    assert!(matches!(
        load_signed(&sign_bundle(&b, &other), &[author.public_key()]),
        Err(LoadError::UntrustedKey(_))
    ));
    // Tampered: flip one byte of the payload, keep the signature.
    let needle = b"args";
    let at = signed.windows(4).position(|w| w == needle).unwrap();
    let mut tampered = signed.clone();
    tampered[at] ^= 0x20;
    assert_eq!(
        load_signed(&tampered, &[author.public_key()]).unwrap_err(),
        LoadError::BadSignature
    );
    // Every single-byte flip fails to load.
    for i in 0..signed.len() {
        let mut t = signed.clone();
        t[i] ^= 1;
        assert!(load_signed(&t, &[author.public_key()]).is_err(), "flip at {i} loaded");
    }
}

#[test]
fn explain_shows_each_requirement() {
    let b = mail();
    let mut ev = Evidence::new();
    ev.add_call(&call("read_inbox", 1));
    let t = b.explain(
        &req("send_email", json!({"to": "a@example.com"})),
        &ev,
        Limits::default(),
    );
    let ids: Vec<&str> = t.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(ids, ["send-internal", "send-after-read", "big-attachment"]);
    assert_eq!(t[0].requirements[0].1, Held::Held);
    assert_eq!(t[0].requirements[1].1, Held::Failed);
    assert_eq!(t[1].requirements[0].1, Held::Held);
    assert_eq!(t[2].requirements[0].1, Held::Failed);
}

#[test]
fn mcp_server_qualified_tools() {
    let b = Bundle::from_toml(
        r#"
name = "mcp"
[[rule]]
id = "github-read"
tools = ["github/get_*", "github/list_*"]
verdict = "allow"
[[rule]]
id = "github-write"
tools = ["github/*"]
verdict = "escalate"
require = ["server == 'github' and not (tool_name matches 'get_*')"]
"#,
    )
    .unwrap();
    let g = one(b);
    let ev = Evidence::new();
    check(
        &g,
        &req("github/get_issue", json!({})),
        &ev,
        Verdict::Allow,
        "POLICY_ALLOW",
    );
    check(
        &g,
        &req("github/create_issue", json!({})),
        &ev,
        Verdict::Escalate,
        "POLICY_ESCALATE",
    );
    check(
        &g,
        &req("gitlab/get_issue", json!({})),
        &ev,
        Verdict::Deny,
        "NO_POLICY_DEFINED",
    );
}

#[test]
fn non_canonical_encodings_do_not_load() {
    let b = mail();
    let bytes = b.canonical();
    assert_eq!(bytes[0], 0xa7, "a map of 7 pairs");
    // The same map with a non-shortest head.
    let mut long_head = vec![0xb8, 0x07];
    long_head.extend_from_slice(&bytes[1..]);
    assert!(Bundle::from_canonical(&long_head).is_err());
    // A requirement that is valid but not in canonical text.
    let needle = br#"args["amount"] <= 100"#;
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut spaced = bytes.to_vec();
    spaced[at + 14] = b'<'; // `args["amount"] << 100`: does not parse
    assert!(Bundle::from_canonical(&spaced).is_err());
    let mut other = bytes.to_vec();
    other[at + 18] = b'2'; // `<= 200`: canonical, but another bundle with another hash
    let c = Bundle::from_canonical(&other).unwrap();
    assert_ne!(c.hash(), b.hash());
}

#[test]
fn failing_bundle_test_cases_are_reported() {
    let src = format!(
        "{MAIL}\n[[test]]\nname = \"wrong on purpose\"\nexpect = \"allow\"\nreason = \"POLICY_ALLOW\"\nrequest = {{ tool = \"pay\", principal = \"agent-1\", args = {{ amount = 500 }} }}\n"
    );
    let results = Bundle::from_toml(&src).unwrap().run_tests(Limits::default());
    assert_eq!(results.len(), 1);
    assert!(!results[0].passed);
    assert_eq!(results[0].got.reason, "POLICY_DENY");
}
