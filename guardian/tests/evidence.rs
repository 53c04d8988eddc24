//! Budgets and sequence conditions read from signed records: a restart (a new
//! `Evidence` built from the same records) cannot reset them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use guardian::{Bundle, Evidence, Guardian, Limits, Request, Verdict};
use helm_test_vectors::{test_key, Chain};
use verify_core::{body, CallKind, EffectStatus, Escalation, Kind, Record};

const POLICY: &str = r#"
name = "from-records"
[[rule]]
id = "send"
tools = ["send_email"]
verdict = "allow"
require = ["not called('read_inbox') or approved('send_email')"]
[[rule]]
id = "send-after-read"
tools = ["send_email"]
verdict = "escalate"
require = ["called('read_inbox') and not approved('send_email')"]
[[rule]]
id = "read"
tools = ["read_inbox"]
verdict = "allow"
[[budget]]
id = "cost"
scope = "principal"
tools = ["*"]
max_cost = 100
[[budget]]
id = "sends"
scope = "session"
tools = ["send_email"]
max_calls = 3
"#;

#[test]
fn evidence_from_records() {
    let kernel = test_key("kernel");
    let bundle = Bundle::from_toml(POLICY).unwrap();
    let g = Guardian::new(vec![bundle], Limits::default());
    let mut chain = Chain::new();
    let h = bundle_hash(&g);
    let allow = |chain: &mut Chain, tool: &str, session: &str, cost: u64| {
        let i = chain.push(
            &kernel,
            Kind::Intent,
            body::intent(tool, CallKind::Json, &[1; 32]),
            &[],
            session,
        );
        let d = chain.push(
            &kernel,
            Kind::Decision,
            body::decision(Verdict::Allow, "POLICY_ALLOW", &h, None),
            &[i],
            session,
        );
        let meters = [("cost", cost)];
        let e = body::Effect {
            status: EffectStatus::Succeeded,
            tool,
            call_kind: CallKind::Json,
            args: [1; 32],
            output: [2; 32],
            executor: "test",
            meters: if cost > 0 { &meters } else { &[] },
        };
        chain.push(&kernel, Kind::Effect, body::effect(&e), &[d], session);
    };
    let decide = |chain: &Chain, tool: &str, session: &str| {
        let records: Vec<Record<'_>> = chain.records.iter().map(|r| Record::decode(r).unwrap()).collect();
        let ev = Evidence::from_records(&records, "agent:alice", session);
        g.decide(&Request::new(tool, "agent:alice", session, chain.time), &ev)
    };
    allow(&mut chain, "send_email", "s1", 10);
    assert_eq!(decide(&chain, "send_email", "s1").verdict, Verdict::Allow);
    // Sequence: read_inbox, then send_email escalates.
    allow(&mut chain, "read_inbox", "s1", 10);
    let d = decide(&chain, "send_email", "s1");
    assert_eq!((d.verdict, d.reason.as_str()), (Verdict::Escalate, "POLICY_ESCALATE"));
    // Another session of the same principal has not read the inbox.
    assert_eq!(decide(&chain, "send_email", "s2").verdict, Verdict::Allow);
    // An ESCALATE and its APPROVAL count as a permitted, approved call.
    let i = chain.push(
        &kernel,
        Kind::Intent,
        body::intent("send_email", CallKind::Json, &[3; 32]),
        &[],
        "s1",
    );
    let esc = Escalation {
        role: "approver",
        quorum: 1,
        not_before: 0,
        expires: u64::MAX,
    };
    let e = chain.push(
        &kernel,
        Kind::Decision,
        body::decision(Verdict::Escalate, "POLICY_ESCALATE", &h, Some(&esc)),
        &[i],
        "s1",
    );
    let approver = test_key("approver");
    chain.push(
        &kernel,
        Kind::Approval,
        body::approval(&[(approver.public_key(), [0; 64])]),
        &[e],
        "s1",
    );
    let d = decide(&chain, "send_email", "s1");
    assert_eq!((d.verdict, d.reason.as_str()), (Verdict::Allow, "POLICY_ALLOW"), "{d}");
    // Third permitted send in s1 (ALLOW, APPROVAL, ALLOW): the session budget is used up.
    allow(&mut chain, "send_email", "s1", 10);
    let d = decide(&chain, "send_email", "s1");
    assert_eq!(
        (d.verdict, d.reason.as_str()),
        (Verdict::Deny, "BUDGET_EXHAUSTED"),
        "{d}"
    );
    assert_eq!(d.rule.as_deref(), Some("sends"));
    // Cost over all sessions of the principal: 30 so far; 70 more in s2 exhausts it.
    allow(&mut chain, "read_inbox", "s2", 69);
    assert_eq!(decide(&chain, "read_inbox", "s3").verdict, Verdict::Allow);
    allow(&mut chain, "read_inbox", "s2", 1);
    let d = decide(&chain, "read_inbox", "s3");
    assert_eq!(
        (d.verdict, d.reason.as_str(), d.rule.as_deref()),
        (Verdict::Deny, "BUDGET_EXHAUSTED", Some("cost"))
    );
}

fn bundle_hash(g: &Guardian) -> [u8; 32] {
    g.bundles()[0].hash()
}
