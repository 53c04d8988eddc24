//! Registries the spec defines: reason codes, attestation types and well-known roles.
//!
//! A value outside a registry is an error (fail closed): a verifier must not accept a
//! reason it cannot explain. The lists are normative (spec/registries.md).

/// Which records may carry a reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonUse {
    /// DECISION with verdict ALLOW.
    Allow,
    /// DECISION with verdict DENY.
    Deny,
    /// DECISION with verdict ESCALATE.
    Escalate,
    /// VIOLATION records.
    Violation,
}

/// The reason-code registry: (code, where it may appear).
pub const REASON_CODES: &[(&str, ReasonUse)] = &[
    ("POLICY_ALLOW", ReasonUse::Allow),
    ("APPROVAL_GRANTED", ReasonUse::Allow),
    ("POLICY_DENY", ReasonUse::Deny),
    ("NO_POLICY_DEFINED", ReasonUse::Deny),
    ("POLICY_EVALUATION_ERROR", ReasonUse::Deny),
    ("POLICY_MISSING_FIELD", ReasonUse::Deny),
    ("POLICY_TYPE_ERROR", ReasonUse::Deny),
    ("POLICY_LIMIT_EXCEEDED", ReasonUse::Deny),
    ("BUDGET_EXHAUSTED", ReasonUse::Deny),
    ("RATE_LIMITED", ReasonUse::Deny),
    ("APPROVAL_TIMEOUT", ReasonUse::Deny),
    ("APPROVAL_REFUSED", ReasonUse::Deny),
    ("TOOL_NOT_ALLOWED", ReasonUse::Deny),
    ("TOOL_DEFINITION_CHANGED", ReasonUse::Deny),
    ("INVALID_ARGUMENTS", ReasonUse::Deny),
    ("TRUNCATED_ARGUMENTS", ReasonUse::Deny),
    ("KERNEL_ERROR", ReasonUse::Deny),
    ("POLICY_ESCALATE", ReasonUse::Escalate),
    ("RESULT_WITHOUT_PERMIT", ReasonUse::Violation),
    ("TOOL_DEFINITION_CHANGED", ReasonUse::Violation),
    ("PROTOCOL_VIOLATION", ReasonUse::Violation),
    ("SANDBOX_VIOLATION", ReasonUse::Violation),
];

/// Whether `code` is registered for `usage`.
pub fn reason_allowed(code: &str, usage: ReasonUse) -> bool {
    REASON_CODES.iter().any(|(c, u)| *c == code && *u == usage)
}

/// Registered ATTESTATION subtypes.
pub const ATTESTATION_TYPES: &[&str] = &[
    // A pinned tool definition: subject = SHA-256 of its canonical definition.
    "tool-pin",
    // A WASM module the sandbox may run: subject = SHA-256 of the module bytes.
    "sandbox-module",
    // The kernel's configuration at start: subject = SHA-256 of the configuration.
    "kernel-config",
];

/// The role that may sign every record kind except TRUST_EVENT.
pub const ROLE_KERNEL: &str = "kernel";
/// The role whose keys cosign CHECKPOINTs.
pub const ROLE_WITNESS: &str = "witness";
/// The role whose keys sign policy bundles.
pub const ROLE_POLICY_AUTHOR: &str = "policy-author";
/// The conventional approver role (ESCALATEs may name any role).
pub const ROLE_APPROVER: &str = "approver";

/// Longest role name, in bytes.
pub const MAX_ROLE_LEN: usize = 32;
/// Most roles one key may hold.
pub const MAX_ROLES: usize = 4;

/// A role name is 1–32 bytes of `a-z`, `0-9`, `.`, `_` and `-`.
pub fn role_name_valid(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-')
}
