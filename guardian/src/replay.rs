//! Decision replay (spec/guardian.md §9): recompute every DECISION of a record stream
//! from the bundles the stream activated, the INTENT's arguments and the records before
//! it, and report every DECISION the policy would not have produced.
//!
//! The records must already be verified (signatures, chain, trust): replay answers a
//! different question — not "did a trusted key sign this?" but "did the policy decide
//! this?" — so it catches a DECISION that was altered and re-signed with a valid key.

use std::collections::BTreeMap;

use serde::Serialize;
use verify_core::{Body, CallKind, Hash, Record, Verdict};

use crate::bundle::{verdict_str, Bundle};
use crate::engine::{Decision, EscalationMap, Guardian, Limits};
use crate::evidence::Evidence;
use crate::request::Request;

/// DENY reasons the kernel gives on its own (not the policy's): replay skips them.
pub const KERNEL_DENY_REASONS: &[&str] = &[
    "APPROVAL_TIMEOUT",
    "APPROVAL_REFUSED",
    "TOOL_DEFINITION_CHANGED",
    "INVALID_ARGUMENTS",
    "TRUNCATED_ARGUMENTS",
    "KERNEL_ERROR",
];

/// Length of the salt in front of a committed value (record-format.md §9).
pub const SALT_LEN: usize = 16;

/// What replay found about one DECISION.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Index of the DECISION in the stream.
    pub index: usize,
    /// Its record hash, hex.
    pub hash: String,
    /// What is wrong.
    pub problem: String,
    /// The DECISION as recorded, `VERDICT REASON`.
    pub recorded: String,
    /// What the policy gives, `VERDICT REASON`, if it could be recomputed.
    pub recomputed: Option<String>,
}

/// The result of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// DECISIONs examined.
    pub decisions: usize,
    /// DECISIONs reproduced exactly.
    pub reproduced: usize,
    /// DENYs the kernel makes, not the policy (they resolve an ESCALATE, or carry a
    /// kernel reason such as `KERNEL_ERROR`): not recomputed. They only refuse.
    pub kernel_denials: usize,
    /// Bundles activated by POLICY records (hex hashes), in stream order.
    pub bundles: Vec<String>,
    /// Every DECISION not reproduced, in stream order.
    pub findings: Vec<Finding>,
}

impl ReplayReport {
    /// Whether every DECISION was reproduced.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn describe(verdict: Verdict, reason: &str) -> String {
    format!("{} {reason}", verdict_str(verdict).to_uppercase())
}

fn same(
    d: &Decision,
    verdict: Verdict,
    reason: &str,
    policy: &Hash,
    esc: Option<&verify_core::Escalation<'_>>,
) -> Option<String> {
    if d.verdict != verdict || d.reason != reason {
        return Some("verdict or reason differs from the policy's".into());
    }
    if d.policy != *policy {
        return Some(format!(
            "policy {} is not the deciding bundle {}",
            hex(policy),
            hex(&d.policy)
        ));
    }
    let recorded = esc.map(|e| EscalationMap {
        role: e.role.to_owned(),
        quorum: e.quorum,
        not_before: e.not_before,
        expires: e.expires,
    });
    if recorded != d.escalation {
        return Some("escalation terms differ from the policy's".into());
    }
    None
}

/// The arguments an INTENT committed to, from its blob (`salt ‖ content`).
fn args_of(call_kind: CallKind, blob: &[u8]) -> Result<serde_json::Value, String> {
    let content = blob.get(SALT_LEN..).ok_or("argument blob shorter than its salt")?;
    match call_kind {
        CallKind::Json => serde_json::from_slice(content).map_err(|e| format!("arguments are not JSON: {e}")),
        CallKind::Text => core::str::from_utf8(content)
            .map(|s| serde_json::Value::String(s.to_owned()))
            .map_err(|_| "text arguments are not UTF-8".to_owned()),
        CallKind::Bytes => Ok(serde_json::Value::Null),
    }
}

/// Replays every DECISION of `records` (verified, in stream order). `blobs` maps blob
/// names to contents: canonical bundles (named by their hash) and argument blobs.
/// Bundles are taken from the blobs the POLICY records name; their author signatures
/// are not carried by a pack (the kernel-signed POLICY record binds the hash).
pub fn replay(records: &[Record<'_>], blobs: &BTreeMap<Hash, Vec<u8>>, limits: Limits) -> ReplayReport {
    let mut report = ReplayReport::default();
    let mut active: Vec<Hash> = Vec::new();
    let mut loaded: BTreeMap<Hash, Result<(), String>> = BTreeMap::new();
    let mut guardian = Guardian::new(Vec::new(), limits);
    let mut intents: BTreeMap<Hash, usize> = BTreeMap::new();
    let mut escalates: std::collections::BTreeSet<Hash> = std::collections::BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        match r.body {
            Body::Policy { bundle, .. } if !active.contains(&bundle) => {
                active.push(bundle);
                report.bundles.push(hex(&bundle));
                let result = match blobs.get(&bundle) {
                    None => Err("bundle blob missing or withheld".to_owned()),
                    Some(bytes) => Bundle::from_canonical(bytes).map(|_| ()).map_err(|e| e.to_string()),
                };
                loaded.insert(bundle, result);
                let bundles = active
                    .iter()
                    .filter_map(|h| blobs.get(h).and_then(|b| Bundle::from_canonical(b).ok()))
                    .collect();
                guardian = Guardian::new(bundles, limits);
            }
            Body::Intent { .. } => {
                intents.insert(r.hash, i);
            }
            Body::Decision {
                verdict,
                reason,
                policy,
                escalation,
            } => {
                report.decisions = report.decisions.saturating_add(1);
                if verdict == Verdict::Escalate {
                    escalates.insert(r.hash);
                }
                if verdict == Verdict::Deny
                    && (KERNEL_DENY_REASONS.contains(&reason) || r.parents.iter().any(|p| escalates.contains(&p)))
                {
                    report.kernel_denials = report.kernel_denials.saturating_add(1);
                    continue;
                }
                let finding = |problem: String, recomputed: Option<String>| Finding {
                    index: i,
                    hash: hex(&r.hash),
                    problem,
                    recorded: describe(verdict, reason),
                    recomputed,
                };
                if let Some((h, Err(e))) = loaded.iter().find(|(_, v)| v.is_err()) {
                    report
                        .findings
                        .push(finding(format!("bundle {} does not load: {e}", hex(h)), None));
                    continue;
                }
                let intent = r
                    .parents
                    .iter()
                    .find_map(|p| intents.get(&p).copied())
                    .and_then(|j| records.get(j));
                let Some(intent) = intent else {
                    report
                        .findings
                        .push(finding("no INTENT among its parents".into(), None));
                    continue;
                };
                let Body::Intent { tool, call_kind, args } = intent.body else {
                    continue;
                };
                let args = match blobs
                    .get(&args)
                    .ok_or_else(|| "argument blob missing or withheld".to_owned())
                {
                    Ok(blob) => args_of(call_kind, blob),
                    Err(e) => Err(e),
                };
                let args = match args {
                    Ok(a) => a,
                    Err(e) => {
                        report.findings.push(finding(format!("cannot recompute: {e}"), None));
                        continue;
                    }
                };
                let req = Request {
                    tool: tool.to_owned(),
                    args,
                    principal: intent.principal.to_owned(),
                    session: intent.session.to_owned(),
                    context: serde_json::Value::Object(serde_json::Map::new()),
                    time: intent.time,
                };
                let ev = Evidence::from_records(records.get(..i).unwrap_or(&[]), intent.principal, intent.session);
                let d = guardian.decide(&req, &ev);
                if verdict == Verdict::Allow && reason == "APPROVAL_GRANTED" {
                    // A grant presupposes that the policy escalated this call.
                    if d.verdict == Verdict::Escalate && d.policy == policy {
                        report.reproduced = report.reproduced.saturating_add(1);
                    } else {
                        report.findings.push(finding(
                            "APPROVAL_GRANTED, but the policy does not escalate this call".into(),
                            Some(describe(d.verdict, &d.reason)),
                        ));
                    }
                    continue;
                }
                match same(&d, verdict, reason, &policy, escalation.as_ref()) {
                    None => report.reproduced = report.reproduced.saturating_add(1),
                    Some(problem) => report
                        .findings
                        .push(finding(problem, Some(describe(d.verdict, &d.reason)))),
                }
            }
            _ => {}
        }
    }
    report
}
