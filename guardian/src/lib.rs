//! Guardian: HELM's policy decision point. Every proposed tool call gets ALLOW, DENY or
//! ESCALATE with a registered reason code, reproducibly and offline.
//!
//! - A **bundle** is written in TOML ([`Bundle::from_toml`]), brought to a canonical
//!   deterministic-CBOR form whose SHA-256 is the `policy` of every DECISION it makes,
//!   and signed by a `policy-author` key ([`sign_bundle`], [`load_signed`]).
//! - Its **rules** form a proof requirement graph: per tool (or `server/tool` pattern),
//!   requirement sets whose requirements are expressions of a small total language
//!   (spec/guardian.md §4) over the request and the [`Evidence`] of earlier records.
//! - It **fails closed**: no applicable bundle is DENY `NO_POLICY_DEFINED`; a missing
//!   field, a type error or an exhausted limit is a DENY with its own reason code.
//! - Budgets and rate limits count the records ([`Evidence::from_records`]), so a
//!   restart cannot reset them.
//!
//! Synchronous, no network code, no async runtime. Specification: `spec/guardian.md`.

#![forbid(unsafe_code)]

mod bundle;
mod engine;
mod evidence;
mod expr;
mod replay;
mod request;
mod sign;

pub use bundle::{
    bundle_hash, parse_verdict, verdict_str, Budget, Bundle, BundleError, BundleSpec, EscalationTerms, OtherTools,
    Rule, Scope, TestCase, BUNDLE_LABEL, MAX_BUDGETS, MAX_BUNDLE_SIZE, MAX_REQUIREMENTS, MAX_RULES, MAX_TESTS,
};
pub use engine::{set_hash, Decision, EscalationMap, Guardian, Held, Limits, Outcome, RuleTrace, TestResult};
pub use evidence::{Evidence, Histories, PastCall, COST_METER};
pub use expr::{glob_match, EvalError, ExprError, MAX_DEPTH, MAX_EXPR_LEN, MAX_LIST, MAX_NODES, MAX_PATTERN_LEN};
pub use replay::{replay, Finding, ReplayReport, KERNEL_DENY_REASONS, SALT_LEN};
pub use request::Request;
pub use sign::{load_signed, sign_bundle, LoadError};
pub use verify_core::Verdict;
