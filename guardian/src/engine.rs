//! Deciding: one bundle's outcome, the composition of several, explanations and the
//! bundle's own test cases.

use core::fmt;

use verify_core::{sha256, Hash, Verdict};

use crate::bundle::{parse_verdict, Budget, Bundle, EscalationTerms, OtherTools, Scope};
use crate::evidence::Evidence;
use crate::expr::{eval_bool, glob_match, Ctx, EvalError};
use crate::request::Request;

/// Evaluation limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Steps one decision may take, over all bundles (a node, a path step, a list
    /// element, 16 bytes of a glob or substring match, a tool of the history scanned).
    pub max_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_steps: 100_000 }
    }
}

/// The escalation map of an ESCALATE (record-format.md §6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationMap {
    /// Role every approver must hold.
    pub role: String,
    /// Distinct approvers needed.
    pub quorum: u64,
    /// Earliest kernel time of the APPROVAL.
    pub not_before: u64,
    /// Latest kernel time of the APPROVAL.
    pub expires: u64,
}

impl EscalationMap {
    fn from_terms(t: &EscalationTerms, now: u64) -> EscalationMap {
        let not_before = now.saturating_add(t.timelock_ms);
        EscalationMap {
            role: t.role.clone(),
            quorum: t.quorum,
            not_before,
            expires: not_before.saturating_add(t.ttl_ms),
        }
    }
}

/// A verdict with its reason code and what produced it: exactly the fields a DECISION
/// record carries, plus where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// ALLOW, DENY or ESCALATE.
    pub verdict: Verdict,
    /// A reason code registered for the verdict.
    pub reason: String,
    /// The DECISION's `policy`: the hash of the bundle that decided, or of the bundle
    /// set when none applied (spec/guardian.md §6).
    pub policy: Hash,
    /// Present if and only if the verdict is ESCALATE.
    pub escalation: Option<EscalationMap>,
    /// The rule or budget that decided, if any.
    pub rule: Option<String>,
    /// Why an evaluation failed, if it did.
    pub error: Option<EvalError>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            crate::bundle::verdict_str(self.verdict).to_uppercase(),
            self.reason
        )?;
        if let Some(r) = &self.rule {
            write!(f, " (by {r})")?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// One bundle's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The bundle does not cover this principal or tool.
    NotApplicable,
    /// The bundle's verdict.
    Decided(Decision),
}

fn deny(bundle: &Bundle, reason: &str, rule: Option<&str>, error: Option<EvalError>) -> Outcome {
    Outcome::Decided(Decision {
        verdict: Verdict::Deny,
        reason: reason.to_owned(),
        policy: bundle.hash(),
        escalation: None,
        rule: rule.map(str::to_owned),
        error,
    })
}

fn budget_exceeded(b: &Budget, req: &Request, ev: &Evidence, cx_steps: &mut u64) -> Result<bool, EvalError> {
    if !b.tools.iter().any(|p| glob_match(p, &req.tool)) {
        return Ok(false);
    }
    let since = b.window_ms.map(|w| req.time.saturating_sub(w));
    let principal = b.scope == Scope::Principal;
    let mut calls = 0i64;
    let mut cost = 0i64;
    for p in &b.tools {
        let c = ev.scan_cost(p);
        *cx_steps = cx_steps
            .checked_sub(c)
            .ok_or_else(|| EvalError::Limit("evaluation step budget".into()))?;
        if b.max_calls.is_some() {
            calls = calls.saturating_add(ev.calls(p, since, principal));
        }
        if b.max_cost.is_some() {
            cost = cost.saturating_add(ev.cost(p, since, principal));
        }
    }
    let over = |used: i64, max: Option<u64>| max.is_some_and(|m| u64::try_from(used).unwrap_or(0) >= m);
    Ok(over(calls, b.max_calls) || over(cost, b.max_cost))
}

impl Bundle {
    /// This bundle's outcome for `req` given `ev`, charging `steps`.
    pub fn evaluate(&self, req: &Request, ev: &Evidence, steps: &mut u64) -> Outcome {
        if !self.covers_principal(&req.principal) {
            return Outcome::NotApplicable;
        }
        let mut any = false;
        self.candidates(&req.tool, |_| {
            any = true;
            false
        });
        if !any {
            return match self.spec().other_tools {
                OtherTools::NotApplicable => Outcome::NotApplicable,
                OtherTools::Deny => deny(self, "TOOL_NOT_ALLOWED", None, None),
            };
        }
        for b in &self.spec().budgets {
            match budget_exceeded(b, req, ev, steps) {
                Ok(false) => {}
                Ok(true) => {
                    let reason = if b.window_ms.is_some() {
                        "RATE_LIMITED"
                    } else {
                        "BUDGET_EXHAUSTED"
                    };
                    return deny(self, reason, Some(&b.id), None);
                }
                Err(e) => return deny(self, e.reason(), Some(&b.id), Some(e)),
            }
        }
        let mut cx = Ctx { req, ev, steps: *steps };
        let rules = &self.spec().rules;
        let mut result: Option<Outcome> = None;
        let mut escalate: Option<usize> = None;
        let mut allow: Option<usize> = None;
        self.candidates(&req.tool, |i| {
            let (Some(rule), Some(compiled)) = (rules.get(i), self.compiled.get(i)) else {
                result = Some(deny(self, "POLICY_EVALUATION_ERROR", None, None));
                return false;
            };
            let mut holds = true;
            for e in &compiled.require {
                match eval_bool(e, &mut cx) {
                    Ok(true) => {}
                    Ok(false) => {
                        holds = false;
                        break;
                    }
                    Err(err) => {
                        result = Some(deny(self, err.reason(), Some(&rule.id), Some(err)));
                        return false;
                    }
                }
            }
            if holds {
                match rule.verdict {
                    Verdict::Deny => {
                        result = Some(deny(self, &rule.reason, Some(&rule.id), None));
                        return false;
                    }
                    Verdict::Escalate => {
                        escalate = escalate.or(Some(i));
                    }
                    Verdict::Allow => {
                        allow = allow.or(Some(i));
                    }
                }
            }
            true
        });
        *steps = cx.steps;
        if let Some(r) = result {
            return r;
        }
        let Some(rule) = escalate.or(allow).and_then(|i| rules.get(i)) else {
            // The tool is covered but no requirement set held: fail closed.
            return deny(self, "POLICY_DENY", None, None);
        };
        Outcome::Decided(Decision {
            verdict: rule.verdict,
            reason: rule.reason.clone(),
            policy: self.hash(),
            escalation: rule.escalation.as_ref().map(|t| EscalationMap::from_terms(t, req.time)),
            rule: Some(rule.id.clone()),
            error: None,
        })
    }
}

/// A set of active bundles and the limits they run under: the decision point.
#[derive(Debug)]
pub struct Guardian {
    bundles: Vec<Bundle>,
    set_hash: Hash,
    limits: Limits,
}

/// The hash of a set of bundles: SHA-256 of their hashes, sorted and concatenated
/// (the `policy` of a DENY `NO_POLICY_DEFINED`).
pub fn set_hash(hashes: &[Hash]) -> Hash {
    let mut v = hashes.to_vec();
    v.sort();
    v.dedup();
    sha256(&v.concat())
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Deny => 2,
        Verdict::Escalate => 1,
        Verdict::Allow => 0,
    }
}

impl Guardian {
    /// The decision point over `bundles` (order does not matter: they are kept by hash).
    pub fn new(mut bundles: Vec<Bundle>, limits: Limits) -> Guardian {
        bundles.sort_by_key(Bundle::hash);
        bundles.dedup_by_key(|b| b.hash());
        let hashes: Vec<Hash> = bundles.iter().map(Bundle::hash).collect();
        Guardian {
            set_hash: set_hash(&hashes),
            bundles,
            limits,
        }
    }

    /// The bundles, by hash.
    pub fn bundles(&self) -> &[Bundle] {
        &self.bundles
    }

    /// Decides one call. Never fails: every failure is a DENY with its reason code.
    /// Composition: DENY over ESCALATE over ALLOW; NOT_APPLICABLE is ignored; ties go
    /// to the bundle with the smallest hash; none applicable: DENY `NO_POLICY_DEFINED`.
    pub fn decide(&self, req: &Request, ev: &Evidence) -> Decision {
        let mut steps = self.limits.max_steps;
        let mut best: Option<Decision> = None;
        for b in &self.bundles {
            if let Outcome::Decided(d) = b.evaluate(req, ev, &mut steps) {
                let better = best.as_ref().is_none_or(|cur| rank(d.verdict) > rank(cur.verdict));
                if better {
                    let is_deny = d.verdict == Verdict::Deny;
                    best = Some(d);
                    if is_deny {
                        break;
                    }
                }
            }
        }
        best.unwrap_or_else(|| Decision {
            verdict: Verdict::Deny,
            reason: "NO_POLICY_DEFINED".to_owned(),
            policy: self.set_hash,
            escalation: None,
            rule: None,
            error: None,
        })
    }
}

/// What one requirement evaluated to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// True.
    Held,
    /// False.
    Failed,
    /// The evaluation failed.
    Error(EvalError),
}

/// One rule's requirements and what each evaluated to (all of them, no short cut).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    /// Rule id.
    pub rule: String,
    /// The rule's verdict when all hold.
    pub verdict: Verdict,
    /// (canonical requirement text, result).
    pub requirements: Vec<(String, Held)>,
}

impl Bundle {
    /// Every rule naming the request's tool, with each requirement's result.
    pub fn explain(&self, req: &Request, ev: &Evidence, limits: Limits) -> Vec<RuleTrace> {
        let mut out = Vec::new();
        self.candidates(&req.tool, |i| {
            if let (Some(rule), Some(compiled)) = (self.spec().rules.get(i), self.compiled.get(i)) {
                let requirements = rule
                    .require
                    .iter()
                    .zip(&compiled.require)
                    .map(|(text, e)| {
                        let mut cx = Ctx {
                            req,
                            ev,
                            steps: limits.max_steps,
                        };
                        let held = match eval_bool(e, &mut cx) {
                            Ok(true) => Held::Held,
                            Ok(false) => Held::Failed,
                            Err(err) => Held::Error(err),
                        };
                        (text.clone(), held)
                    })
                    .collect();
                out.push(RuleTrace {
                    rule: rule.id.clone(),
                    verdict: rule.verdict,
                    requirements,
                });
            }
            true
        });
        out
    }
}

/// The result of one bundle test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// The case's name.
    pub name: String,
    /// Whether verdict and reason are as expected.
    pub passed: bool,
    /// Expected `verdict reason`.
    pub expected: String,
    /// What the bundle (alone) decided.
    pub got: Decision,
}

impl Bundle {
    /// Runs the bundle's test cases against the bundle alone.
    pub fn run_tests(&self, limits: Limits) -> Vec<TestResult> {
        self.spec()
            .tests
            .iter()
            .map(|t| {
                let mut ev = Evidence::new();
                for c in &t.history {
                    ev.add_call(c);
                }
                let mut steps = limits.max_steps;
                let got = match self.evaluate(&t.request, &ev, &mut steps) {
                    Outcome::Decided(d) => d,
                    Outcome::NotApplicable => Decision {
                        verdict: Verdict::Deny,
                        reason: "NO_POLICY_DEFINED".to_owned(),
                        policy: set_hash(&[self.hash()]),
                        escalation: None,
                        rule: None,
                        error: None,
                    },
                };
                let passed = parse_verdict(&t.expect) == Some(got.verdict) && got.reason == t.reason;
                TestResult {
                    name: t.name.clone(),
                    passed,
                    expected: format!("{} {}", t.expect.to_uppercase(), t.reason),
                    got,
                }
            })
            .collect()
    }
}
