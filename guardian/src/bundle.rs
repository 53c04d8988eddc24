//! Policy bundles: the TOML source people write, the canonical CBOR form that is
//! hashed and signed, and the compiled, indexed form that decides.

use core::fmt;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use verify_core::cbor::Reader;
use verify_core::{reason_allowed, role_name_valid, sha256, CborError, CborWriter, Hash, ReasonUse, Verdict};

use crate::evidence::PastCall;
use crate::expr::{compile, glob_match, Expr, ExprError};
use crate::request::Request;

/// Domain-separation label: key 0 of every canonical bundle.
pub const BUNDLE_LABEL: &str = "HELM-POLICY-v1";
/// Most rules in one bundle.
pub const MAX_RULES: usize = 10_000;
/// Most requirements in one rule, tool patterns in one rule, budgets, test cases.
pub const MAX_REQUIREMENTS: usize = 32;
/// Most budgets in one bundle.
pub const MAX_BUDGETS: usize = 64;
/// Most test cases in one bundle.
pub const MAX_TESTS: usize = 1024;
/// Largest canonical bundle, bytes.
pub const MAX_BUNDLE_SIZE: usize = 16 << 20;

/// Why a bundle does not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The TOML does not parse or has unknown fields.
    Syntax(String),
    /// A field has a value the format does not allow.
    Invalid(String),
    /// A requirement does not parse or type-check.
    Expression {
        /// The rule.
        rule: String,
        /// The requirement's source.
        source: String,
        /// What is wrong.
        error: ExprError,
    },
    /// The canonical form is malformed or not canonical.
    Encoding(String),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Syntax(m) => write!(f, "bundle syntax: {m}"),
            BundleError::Invalid(m) => write!(f, "invalid bundle: {m}"),
            BundleError::Expression { rule, source, error } => {
                write!(f, "rule {rule:?}: requirement {source:?}: {error}")
            }
            BundleError::Encoding(m) => write!(f, "canonical bundle: {m}"),
        }
    }
}

impl core::error::Error for BundleError {}

fn invalid<T>(m: impl Into<String>) -> Result<T, BundleError> {
    Err(BundleError::Invalid(m.into()))
}

// ---------------------------------------------------------------- source (TOML)

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    name: String,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    other_tools: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSource>,
    #[serde(default, rename = "budget")]
    budgets: Vec<BudgetSource>,
    #[serde(default, rename = "test")]
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSource {
    id: String,
    tools: Vec<String>,
    verdict: String,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    escalation: Option<EscalationTerms>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetSource {
    id: String,
    scope: String,
    #[serde(default = "all_tools")]
    tools: Vec<String>,
    #[serde(default)]
    max_calls: Option<u64>,
    #[serde(default)]
    max_cost: Option<u64>,
    #[serde(default)]
    window_ms: Option<u64>,
}

fn all_tools() -> Vec<String> {
    vec!["*".to_owned()]
}

/// What an ESCALATE asks for; `not_before = time + timelock_ms`,
/// `expires = not_before + ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationTerms {
    /// The role every approver must hold.
    #[serde(default = "approver")]
    pub role: String,
    /// Distinct approvers needed, 1–16.
    #[serde(default = "one")]
    pub quorum: u64,
    /// Delay before an approval may be recorded, ms.
    #[serde(default)]
    pub timelock_ms: u64,
    /// How long after the timelock an approval may be recorded, ms.
    #[serde(default = "day")]
    pub ttl_ms: u64,
}

fn approver() -> String {
    verify_core::ROLE_APPROVER.to_owned()
}
fn one() -> u64 {
    1
}
fn day() -> u64 {
    86_400_000
}

/// A test case a bundle carries: a request and its history, and the verdict and reason
/// code the bundle (alone) must give.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows.
    pub name: String,
    /// The proposed call.
    pub request: Request,
    /// Earlier permitted calls of the principal.
    #[serde(default)]
    pub history: Vec<PastCall>,
    /// `allow`, `deny` or `escalate`.
    pub expect: String,
    /// The expected reason code.
    pub reason: String,
}

// ---------------------------------------------------------------- canonical model

/// Whether a tool no rule names is refused by this bundle or left to others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtherTools {
    /// The bundle does not apply to such a call.
    NotApplicable = 0,
    /// DENY `TOOL_NOT_ALLOWED`.
    Deny = 1,
}

/// Whose history a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This session's calls.
    Session = 0,
    /// All sessions of the principal.
    Principal = 1,
}

/// One rule: a requirement set (all must hold) for some tools, and the verdict it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Name, unique in the bundle.
    pub id: String,
    /// Tool names or glob patterns.
    pub tools: Vec<String>,
    /// The verdict when every requirement holds.
    pub verdict: Verdict,
    /// Requirements, canonical text.
    pub require: Vec<String>,
    /// Reason code, registered for the verdict.
    pub reason: String,
    /// Present if and only if the verdict is ESCALATE.
    pub escalation: Option<EscalationTerms>,
}

/// A budget or rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Name, unique in the bundle.
    pub id: String,
    /// Session or principal.
    pub scope: Scope,
    /// Tool names or glob patterns counted (and limited).
    pub tools: Vec<String>,
    /// Most permitted calls.
    pub max_calls: Option<u64>,
    /// Most cost units.
    pub max_cost: Option<u64>,
    /// Counting window, ms: a rate limit (`RATE_LIMITED`); none: a budget (`BUDGET_EXHAUSTED`).
    pub window_ms: Option<u64>,
}

/// The canonical content of a bundle (defaults filled in, expressions in canonical text).
#[derive(Clone, Debug, PartialEq)]
pub struct BundleSpec {
    /// Human-readable name.
    pub name: String,
    /// Principal glob patterns the bundle applies to; empty: all.
    pub principals: Vec<String>,
    /// Calls to tools no rule names.
    pub other_tools: OtherTools,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Budgets, in order.
    pub budgets: Vec<Budget>,
    /// Test cases.
    pub tests: Vec<TestCase>,
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
        Verdict::Escalate => "escalate",
    }
}

/// Parses `allow`, `deny` or `escalate`.
pub fn parse_verdict(s: &str) -> Option<Verdict> {
    match s {
        "allow" => Some(Verdict::Allow),
        "deny" => Some(Verdict::Deny),
        "escalate" => Some(Verdict::Escalate),
        _ => None,
    }
}

/// The lower-case name of a verdict.
pub fn verdict_str(v: Verdict) -> &'static str {
    verdict_name(v)
}

fn reason_use(v: Verdict) -> ReasonUse {
    match v {
        Verdict::Allow => ReasonUse::Allow,
        Verdict::Deny => ReasonUse::Deny,
        Verdict::Escalate => ReasonUse::Escalate,
    }
}

fn default_reason(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "POLICY_ALLOW",
        Verdict::Deny => "POLICY_DENY",
        Verdict::Escalate => "POLICY_ESCALATE",
    }
}

fn check_name(what: &str, s: &str) -> Result<(), BundleError> {
    if s.is_empty() || s.len() > 256 {
        return invalid(format!("{what} must be 1–256 bytes"));
    }
    Ok(())
}

fn check_patterns(what: &str, v: &[String]) -> Result<(), BundleError> {
    if v.len() > MAX_REQUIREMENTS {
        return invalid(format!("{what}: more than {MAX_REQUIREMENTS} patterns"));
    }
    for p in v {
        check_name(what, p)?;
    }
    Ok(())
}

impl BundleSpec {
    /// Parses the TOML source, fills in defaults and brings every requirement to its
    /// canonical text (so formatting does not change the hash).
    pub fn from_toml(text: &str) -> Result<BundleSpec, BundleError> {
        let src: Source = toml::from_str(text).map_err(|e| BundleError::Syntax(e.to_string()))?;
        let mut rules = Vec::with_capacity(src.rules.len());
        for r in src.rules {
            let Some(verdict) = parse_verdict(&r.verdict) else {
                return invalid(format!("rule {:?}: verdict must be allow, deny or escalate", r.id));
            };
            let mut require = Vec::with_capacity(r.require.len());
            for s in &r.require {
                let e = compile(s).map_err(|error| BundleError::Expression {
                    rule: r.id.clone(),
                    source: s.clone(),
                    error,
                })?;
                require.push(e.to_string());
            }
            let escalation = match (verdict, r.escalation) {
                (Verdict::Escalate, e) => Some(e.unwrap_or(EscalationTerms {
                    role: approver(),
                    quorum: 1,
                    timelock_ms: 0,
                    ttl_ms: day(),
                })),
                (_, None) => None,
                (_, Some(_)) => return invalid(format!("rule {:?}: escalation terms on a non-escalate rule", r.id)),
            };
            rules.push(Rule {
                reason: r.reason.unwrap_or_else(|| default_reason(verdict).to_owned()),
                id: r.id,
                tools: r.tools,
                verdict,
                require,
                escalation,
            });
        }
        let mut budgets = Vec::with_capacity(src.budgets.len());
        for b in src.budgets {
            let scope = match b.scope.as_str() {
                "session" => Scope::Session,
                "principal" => Scope::Principal,
                _ => return invalid(format!("budget {:?}: scope must be session or principal", b.id)),
            };
            budgets.push(Budget {
                id: b.id,
                scope,
                tools: b.tools,
                max_calls: b.max_calls,
                max_cost: b.max_cost,
                window_ms: b.window_ms,
            });
        }
        let other_tools = match src.other_tools.as_deref() {
            None | Some("not_applicable") => OtherTools::NotApplicable,
            Some("deny") => OtherTools::Deny,
            Some(o) => return invalid(format!("other_tools must be deny or not_applicable, not {o:?}")),
        };
        let spec = BundleSpec {
            name: src.name,
            principals: src.principals,
            other_tools,
            rules,
            budgets,
            tests: src.tests,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every constraint of spec/guardian.md §3 that the types do not.
    pub fn validate(&self) -> Result<(), BundleError> {
        check_name("name", &self.name)?;
        check_patterns("principals", &self.principals)?;
        if self.rules.len() > MAX_RULES {
            return invalid(format!("more than {MAX_RULES} rules"));
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &self.rules {
            check_name("rule id", &r.id)?;
            if !ids.insert(r.id.as_str()) {
                return invalid(format!("rule id {:?} twice", r.id));
            }
            if r.tools.is_empty() {
                return invalid(format!("rule {:?} names no tool", r.id));
            }
            check_patterns("tools", &r.tools)?;
            if r.require.len() > MAX_REQUIREMENTS {
                return invalid(format!("rule {:?}: more than {MAX_REQUIREMENTS} requirements", r.id));
            }
            if !reason_allowed(&r.reason, reason_use(r.verdict)) {
                return invalid(format!(
                    "rule {:?}: reason {:?} is not registered for {}",
                    r.id,
                    r.reason,
                    verdict_name(r.verdict)
                ));
            }
            if (r.verdict == Verdict::Escalate) != r.escalation.is_some() {
                return invalid(format!("rule {:?}: escalation terms iff verdict escalate", r.id));
            }
            if let Some(e) = &r.escalation {
                if !role_name_valid(&e.role) || !(1..=16).contains(&e.quorum) || e.ttl_ms == 0 {
                    return invalid(format!(
                        "rule {:?}: escalation needs a valid role, quorum 1–16, ttl_ms > 0",
                        r.id
                    ));
                }
            }
        }
        if self.budgets.len() > MAX_BUDGETS {
            return invalid(format!("more than {MAX_BUDGETS} budgets"));
        }
        for b in &self.budgets {
            check_name("budget id", &b.id)?;
            if !ids.insert(b.id.as_str()) {
                return invalid(format!("id {:?} twice", b.id));
            }
            if b.tools.is_empty() {
                return invalid(format!("budget {:?} names no tool", b.id));
            }
            check_patterns("tools", &b.tools)?;
            if b.max_calls.is_none() && b.max_cost.is_none() {
                return invalid(format!("budget {:?} sets neither max_calls nor max_cost", b.id));
            }
            if b.window_ms == Some(0) {
                return invalid(format!("budget {:?}: window_ms must be positive", b.id));
            }
        }
        if self.tests.len() > MAX_TESTS {
            return invalid(format!("more than {MAX_TESTS} test cases"));
        }
        for t in &self.tests {
            let Some(v) = parse_verdict(&t.expect) else {
                return invalid(format!("test {:?}: expect must be allow, deny or escalate", t.name));
            };
            if !reason_allowed(&t.reason, reason_use(v)) {
                return invalid(format!(
                    "test {:?}: reason {:?} is not registered for {}",
                    t.name, t.reason, t.expect
                ));
            }
        }
        Ok(())
    }

    /// The canonical form: deterministic CBOR (spec/guardian.md §3.2).
    pub fn to_cbor(&self) -> Result<Vec<u8>, BundleError> {
        let mut w = CborWriter::new();
        w.map(7).uint(0).text(BUNDLE_LABEL).uint(1).text(&self.name).uint(2);
        texts(&mut w, &self.principals);
        w.uint(3).uint(self.other_tools as u64).uint(4).array(self.rules.len());
        for r in &self.rules {
            w.map(if r.escalation.is_some() { 6 } else { 5 })
                .uint(0)
                .text(&r.id)
                .uint(1);
            texts(&mut w, &r.tools);
            w.uint(2).uint(r.verdict as u64).uint(3);
            texts(&mut w, &r.require);
            w.uint(4).text(&r.reason);
            if let Some(e) = &r.escalation {
                w.uint(5)
                    .map(4)
                    .uint(0)
                    .text(&e.role)
                    .uint(1)
                    .uint(e.quorum)
                    .uint(2)
                    .uint(e.timelock_ms)
                    .uint(3)
                    .uint(e.ttl_ms);
            }
        }
        w.uint(5).array(self.budgets.len());
        for b in &self.budgets {
            let n = 3usize
                .saturating_add(usize::from(b.max_calls.is_some()))
                .saturating_add(usize::from(b.max_cost.is_some()))
                .saturating_add(usize::from(b.window_ms.is_some()));
            w.map(n).uint(0).text(&b.id).uint(1).uint(b.scope as u64).uint(2);
            texts(&mut w, &b.tools);
            if let Some(v) = b.max_calls {
                w.uint(3).uint(v);
            }
            if let Some(v) = b.max_cost {
                w.uint(4).uint(v);
            }
            if let Some(v) = b.window_ms {
                w.uint(5).uint(v);
            }
        }
        w.uint(6).array(self.tests.len());
        for t in &self.tests {
            // A test case is carried as its JSON text (serde_json writes object keys
            // sorted and fields in declaration order: one text per case).
            let json = serde_json::to_string(t).map_err(|e| BundleError::Encoding(e.to_string()))?;
            w.text(&json);
        }
        Ok(w.into_bytes())
    }

    /// Decodes the canonical form. Rejects anything that does not re-encode to the
    /// same bytes, so a bundle has exactly one byte form and one hash.
    pub fn from_cbor(bytes: &[u8]) -> Result<BundleSpec, BundleError> {
        if bytes.len() > MAX_BUNDLE_SIZE {
            return Err(BundleError::Encoding("bundle too large".into()));
        }
        let spec = decode(bytes).map_err(|e| BundleError::Encoding(format!("{e:?}")))?;
        spec.validate()?;
        for r in &spec.rules {
            for s in &r.require {
                let e = compile(s).map_err(|error| BundleError::Expression {
                    rule: r.id.clone(),
                    source: s.clone(),
                    error,
                })?;
                if e.to_string() != *s {
                    return Err(BundleError::Encoding(format!(
                        "rule {:?}: requirement not in canonical text",
                        r.id
                    )));
                }
            }
        }
        if spec.to_cbor()? != bytes {
            return Err(BundleError::Encoding("not the canonical encoding".into()));
        }
        Ok(spec)
    }
}

fn texts(w: &mut CborWriter, v: &[String]) {
    w.array(v.len());
    for s in v {
        w.text(s);
    }
}

#[derive(Debug)]
enum DecodeError {
    Cbor(#[allow(dead_code, reason = "shown by Debug")] CborError),
    Field(#[allow(dead_code, reason = "shown by Debug")] &'static str),
}

impl From<CborError> for DecodeError {
    fn from(e: CborError) -> Self {
        DecodeError::Cbor(e)
    }
}

fn read_texts(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.array_len()?;
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(r.text()?.to_owned());
    }
    Ok(v)
}

fn verdict_of(v: u64) -> Result<Verdict, DecodeError> {
    Ok(match v {
        0 => Verdict::Allow,
        1 => Verdict::Deny,
        2 => Verdict::Escalate,
        _ => return Err(DecodeError::Field("verdict")),
    })
}

fn decode(bytes: &[u8]) -> Result<BundleSpec, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.map_len()? != 7 {
        return Err(DecodeError::Field("bundle map"));
    }
    let mut prev = None;
    let mut expect = |r: &mut Reader<'_>, k: u64| -> Result<(), DecodeError> {
        if r.key(&mut prev)? == k {
            Ok(())
        } else {
            Err(DecodeError::Field("bundle key"))
        }
    };
    expect(&mut r, 0)?;
    if r.text()? != BUNDLE_LABEL {
        return Err(DecodeError::Field("label"));
    }
    expect(&mut r, 1)?;
    let name = r.text()?.to_owned();
    expect(&mut r, 2)?;
    let principals = read_texts(&mut r)?;
    expect(&mut r, 3)?;
    let other_tools = match r.uint()? {
        0 => OtherTools::NotApplicable,
        1 => OtherTools::Deny,
        _ => return Err(DecodeError::Field("other_tools")),
    };
    expect(&mut r, 4)?;
    let n = r.array_len()?;
    let mut rules = Vec::new();
    for _ in 0..n {
        let pairs = r.map_len()?;
        let mut p = None;
        let mut key = |r: &mut Reader<'_>, k: u64| -> Result<(), DecodeError> {
            if r.key(&mut p)? == k {
                Ok(())
            } else {
                Err(DecodeError::Field("rule key"))
            }
        };
        key(&mut r, 0)?;
        let id = r.text()?.to_owned();
        key(&mut r, 1)?;
        let tools = read_texts(&mut r)?;
        key(&mut r, 2)?;
        let verdict = verdict_of(r.uint()?)?;
        key(&mut r, 3)?;
        let require = read_texts(&mut r)?;
        key(&mut r, 4)?;
        let reason = r.text()?.to_owned();
        let escalation = match pairs {
            5 => None,
            6 => {
                key(&mut r, 5)?;
                if r.map_len()? != 4 {
                    return Err(DecodeError::Field("escalation"));
                }
                let mut q = None;
                let mut ek = |r: &mut Reader<'_>, k: u64| -> Result<(), DecodeError> {
                    if r.key(&mut q)? == k {
                        Ok(())
                    } else {
                        Err(DecodeError::Field("escalation key"))
                    }
                };
                ek(&mut r, 0)?;
                let role = r.text()?.to_owned();
                ek(&mut r, 1)?;
                let quorum = r.uint()?;
                ek(&mut r, 2)?;
                let timelock_ms = r.uint()?;
                ek(&mut r, 3)?;
                let ttl_ms = r.uint()?;
                Some(EscalationTerms {
                    role,
                    quorum,
                    timelock_ms,
                    ttl_ms,
                })
            }
            _ => return Err(DecodeError::Field("rule map")),
        };
        rules.push(Rule {
            id,
            tools,
            verdict,
            require,
            reason,
            escalation,
        });
    }
    expect(&mut r, 5)?;
    let n = r.array_len()?;
    let mut budgets = Vec::new();
    for _ in 0..n {
        let pairs = r.map_len()?;
        let mut p = None;
        let mut b = Budget {
            id: String::new(),
            scope: Scope::Session,
            tools: Vec::new(),
            max_calls: None,
            max_cost: None,
            window_ms: None,
        };
        let mut seen = 0u8;
        for _ in 0..pairs {
            match r.key(&mut p)? {
                0 => b.id = r.text()?.to_owned(),
                1 => {
                    b.scope = match r.uint()? {
                        0 => Scope::Session,
                        1 => Scope::Principal,
                        _ => return Err(DecodeError::Field("scope")),
                    }
                }
                2 => b.tools = read_texts(&mut r)?,
                3 => b.max_calls = Some(r.uint()?),
                4 => b.max_cost = Some(r.uint()?),
                5 => b.window_ms = Some(r.uint()?),
                _ => return Err(DecodeError::Field("budget key")),
            }
            seen = seen.saturating_add(1);
        }
        if p.is_none_or(|k| k < 2) || seen < 3 {
            return Err(DecodeError::Field("budget map"));
        }
        budgets.push(b);
    }
    expect(&mut r, 6)?;
    let n = r.array_len()?;
    let mut tests = Vec::new();
    for _ in 0..n {
        let t: TestCase = serde_json::from_str(r.text()?).map_err(|_| DecodeError::Field("test case"))?;
        tests.push(t);
    }
    r.finish()?;
    Ok(BundleSpec {
        name,
        principals,
        other_tools,
        rules,
        budgets,
        tests,
    })
}

// ---------------------------------------------------------------- compiled bundle

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) require: Vec<Expr>,
}

/// A loaded bundle: canonical, hashed, compiled and indexed by tool.
#[derive(Debug)]
pub struct Bundle {
    spec: BundleSpec,
    canonical: Vec<u8>,
    hash: Hash,
    pub(crate) compiled: Vec<CompiledRule>,
    /// Exact tool name -> rule indices, ascending.
    pub(crate) exact: HashMap<String, Vec<u32>>,
    /// (pattern, rule index) for patterns with `*` or `?`, ascending by index.
    pub(crate) globs: Vec<(String, u32)>,
}

fn is_glob(p: &str) -> bool {
    p.bytes().any(|b| b == b'*' || b == b'?')
}

impl Bundle {
    /// Compiles a validated spec.
    pub fn from_spec(spec: BundleSpec) -> Result<Bundle, BundleError> {
        spec.validate()?;
        let canonical = spec.to_cbor()?;
        let hash = sha256(&canonical);
        let mut compiled = Vec::with_capacity(spec.rules.len());
        let mut exact: HashMap<String, Vec<u32>> = HashMap::new();
        let mut globs = Vec::new();
        for (i, r) in spec.rules.iter().enumerate() {
            let idx = u32::try_from(i).map_err(|_| BundleError::Invalid("too many rules".into()))?;
            let mut require = Vec::with_capacity(r.require.len());
            for s in &r.require {
                require.push(compile(s).map_err(|error| BundleError::Expression {
                    rule: r.id.clone(),
                    source: s.clone(),
                    error,
                })?);
            }
            compiled.push(CompiledRule { require });
            for t in &r.tools {
                if is_glob(t) {
                    globs.push((t.clone(), idx));
                } else {
                    let v = exact.entry(t.clone()).or_default();
                    if v.last() != Some(&idx) {
                        v.push(idx);
                    }
                }
            }
        }
        Ok(Bundle {
            spec,
            canonical,
            hash,
            compiled,
            exact,
            globs,
        })
    }

    /// Parses and compiles a TOML source.
    pub fn from_toml(text: &str) -> Result<Bundle, BundleError> {
        Bundle::from_spec(BundleSpec::from_toml(text)?)
    }

    /// Loads the canonical form (already authenticated by the caller: see
    /// [`crate::load_signed`] for signed bundles).
    pub fn from_canonical(bytes: &[u8]) -> Result<Bundle, BundleError> {
        Bundle::from_spec(BundleSpec::from_cbor(bytes)?)
    }

    /// The canonical bytes.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// SHA-256 of the canonical bytes: the `policy` of DECISIONs and the `bundle` of POLICY records.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The content.
    pub fn spec(&self) -> &BundleSpec {
        &self.spec
    }

    /// Whether the bundle covers `principal`.
    pub(crate) fn covers_principal(&self, principal: &str) -> bool {
        self.spec.principals.is_empty() || self.spec.principals.iter().any(|p| glob_match(p, principal))
    }

    /// Calls `f` with the index of every rule naming `tool`, ascending, each once.
    pub(crate) fn candidates(&self, tool: &str, mut f: impl FnMut(usize) -> bool) {
        let exact: &[u32] = self.exact.get(tool).map_or(&[], Vec::as_slice);
        let mut ei = exact.iter().peekable();
        let mut gi = self
            .globs
            .iter()
            .filter(|(p, _)| glob_match(p, tool))
            .map(|(_, i)| *i)
            .peekable();
        let mut last: Option<u32> = None;
        loop {
            let next = match (ei.peek(), gi.peek()) {
                (Some(&&a), Some(&b)) => {
                    if a <= b {
                        ei.next();
                        a
                    } else {
                        gi.next();
                        b
                    }
                }
                (Some(&&a), None) => {
                    ei.next();
                    a
                }
                (None, Some(&b)) => {
                    gi.next();
                    b
                }
                (None, None) => return,
            };
            if last == Some(next) {
                continue;
            }
            last = Some(next);
            if !f(next as usize) {
                return;
            }
        }
    }
}

/// A canonical bundle's hash, from its bytes.
pub fn bundle_hash(canonical: &[u8]) -> Hash {
    sha256(canonical)
}
