//! Errors: one stable code per broken rule, with the record that broke it.
//!
//! The codes and their numbers are normative (spec/errors.md); test vectors and the
//! C ABI refer to them, so a code is never renumbered or reused.

use core::fmt;

use crate::Hash;

/// Low-level CBOR decoding failures (mapped onto [`ErrorCode`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs, reason = "each variant is documented where ErrorCode::from maps it")]
pub enum CborError {
    Truncated,
    NotShortest,
    IndefiniteLength,
    Reserved,
    Unsupported,
    UnexpectedType,
    WrongLength,
    OutOfRange,
    InvalidUtf8,
    KeyOrder,
    TooDeep,
    TrailingBytes,
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($num:expr, $rule:expr, $name:expr), )*) => {
        /// What rule a record broke. Each code has a stable name and number (spec/errors.md).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name used in test vectors and reports, e.g. `PARENT_MISSING`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The stable number used across the C ABI.
            pub const fn number(self) -> u16 {
                match self { $(ErrorCode::$variant => $num,)* }
            }

            /// The verification rule (1–6 as in the spec; 0 for resource limits and stream
            /// framing) that this code belongs to.
            pub const fn rule(self) -> u8 {
                match self { $(ErrorCode::$variant => $rule,)* }
            }

            /// Looks a code up by its stable name.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                match name { $($name => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// Truncated item, reserved additional information, invalid UTF-8, or nesting too deep.
    CborMalformed = (100, 1, "CBOR_MALFORMED"),
    /// Valid CBOR, but not the deterministic encoding: a longer-than-shortest head, an
    /// indefinite length, map keys out of order or duplicated, a float or simple value.
    CborNonCanonical = (101, 1, "CBOR_NON_CANONICAL"),
    /// Bytes follow the single item that was expected.
    CborTrailingBytes = (102, 1, "CBOR_TRAILING_BYTES"),
    /// Not a tagged COSE_Sign1 with an empty unprotected header and a 64-byte signature.
    CoseStructure = (110, 1, "COSE_STRUCTURE"),
    /// The protected header names an algorithm other than EdDSA (-8).
    CoseAlgorithm = (111, 1, "COSE_ALGORITHM"),
    /// The protected header has no 32-byte `kid`.
    CoseKidMissing = (112, 1, "COSE_KID_MISSING"),
    /// A map holds a key the spec does not define.
    SchemaUnknownField = (120, 1, "SCHEMA_UNKNOWN_FIELD"),
    /// A required field is absent.
    SchemaMissingField = (121, 1, "SCHEMA_MISSING_FIELD"),
    /// A field has the wrong type, size or range, or parents are not strictly ascending.
    SchemaInvalidValue = (122, 1, "SCHEMA_INVALID_VALUE"),
    /// The record kind is not one the spec defines.
    UnknownKind = (123, 1, "UNKNOWN_KIND"),
    /// A reason code that is not in the registry.
    UnknownReasonCode = (124, 1, "UNKNOWN_REASON_CODE"),
    /// An attestation subtype that is not registered.
    UnknownAttestationType = (125, 1, "UNKNOWN_ATTESTATION_TYPE"),
    /// The format version is not 1.
    UnsupportedVersion = (126, 1, "UNSUPPORTED_VERSION"),
    /// The record is larger than the format allows.
    RecordTooLarge = (127, 1, "RECORD_TOO_LARGE"),

    /// The signing key was never published by a TRUST_EVENT rooted in a trust anchor.
    KeyUnknown = (200, 2, "KEY_UNKNOWN"),
    /// The Ed25519 signature does not verify under the strict rules of spec/ed25519.md.
    SignatureInvalid = (201, 2, "SIGNATURE_INVALID"),
    /// The signing key holds no role that may sign this kind of record.
    RoleNotPermitted = (202, 2, "ROLE_NOT_PERMITTED"),
    /// A record signed by a key after the TRUST_EVENT that rotated or revoked it. (Records
    /// between the cut-off checkpoint and that event fail at the event, with
    /// `REVOCATION_CUTOFF_VIOLATED`.)
    KeyRevoked = (203, 2, "KEY_REVOKED"),
    /// A published key is not a canonical encoding of a point of prime order.
    TrustKeyInvalid = (204, 2, "TRUST_KEY_INVALID"),
    /// A TRUST_EVENT that cannot apply: publishing a known key, rotating or revoking an
    /// unknown one, or a cut-off that is not an earlier CHECKPOINT.
    TrustEventInvalid = (205, 2, "TRUST_EVENT_INVALID"),
    /// A rotation or revocation whose cut-off lies before records the key already signed.
    RevocationCutoffViolated = (206, 2, "REVOCATION_CUTOFF_VIOLATED"),

    /// A parent hash that names no earlier record.
    ParentMissing = (300, 3, "PARENT_MISSING"),
    /// The Lamport clock is not greater than every parent's.
    LamportNotIncreasing = (301, 3, "LAMPORT_NOT_INCREASING"),
    /// Kernel time went backwards for this signer.
    TimeRegression = (302, 3, "TIME_REGRESSION"),
    /// The same record appears twice.
    DuplicateRecord = (303, 3, "DUPLICATE_RECORD"),

    /// A per-(signer, session) sequence number skipped ahead: a record was dropped.
    SequenceGap = (400, 4, "SEQUENCE_GAP"),
    /// Two records of one signer and session carry the same (or an earlier) number.
    SequenceEquivocation = (401, 4, "SEQUENCE_EQUIVOCATION"),

    /// A parent of a kind this record kind may not have.
    ParentKindNotAllowed = (500, 5, "PARENT_KIND_NOT_ALLOWED"),
    /// A DECISION without exactly one INTENT parent.
    DecisionIntentParent = (501, 5, "DECISION_INTENT_PARENT"),
    /// A second final decision (or a second ESCALATE) for one INTENT.
    IntentAlreadyDecided = (502, 5, "INTENT_ALREADY_DECIDED"),
    /// An ESCALATE resolved twice, or resolved by a DENY for another INTENT.
    EscalationAlreadyResolved = (503, 5, "ESCALATION_ALREADY_RESOLVED"),
    /// An EFFECT whose parents are not a permit: an ALLOW, or an ESCALATE plus its APPROVAL.
    EffectWithoutPermit = (510, 5, "EFFECT_WITHOUT_PERMIT"),
    /// An EFFECT whose permit is a DENY.
    EffectForDeny = (511, 5, "EFFECT_FOR_DENY"),
    /// An EFFECT whose tool or argument commitment differs from its permitted INTENT.
    EffectMismatch = (512, 5, "EFFECT_MISMATCH"),
    /// A second EFFECT for one permit.
    PermitAlreadyUsed = (513, 5, "PERMIT_ALREADY_USED"),
    /// An APPROVAL whose parent is not an open ESCALATE, or with a bad approver signature.
    ApprovalInvalid = (520, 5, "APPROVAL_INVALID"),
    /// An approver key not active or without the ESCALATE's approver role.
    ApprovalRole = (521, 5, "APPROVAL_ROLE"),
    /// Fewer distinct valid approvers than the ESCALATE's quorum.
    ApprovalQuorum = (522, 5, "APPROVAL_QUORUM"),
    /// An APPROVAL before the ESCALATE's timelock ended.
    ApprovalTimelock = (523, 5, "APPROVAL_TIMELOCK"),
    /// An APPROVAL after the ESCALATE expired.
    ApprovalExpired = (524, 5, "APPROVAL_EXPIRED"),

    /// A CHECKPOINT whose count is not the number of records before it.
    CheckpointCount = (600, 6, "CHECKPOINT_COUNT"),
    /// A CHECKPOINT whose root is not the Merkle root of the records before it.
    CheckpointRoot = (601, 6, "CHECKPOINT_ROOT"),
    /// A witness cosignature by an unknown or inactive key, a key without the witness
    /// role, or that does not verify.
    WitnessInvalid = (602, 6, "WITNESS_INVALID"),

    /// A verifier table provided by the caller is full: verification cannot continue.
    CapacityExceeded = (900, 0, "CAPACITY_EXCEEDED"),
    /// `finish` was called on a verifier that saw no record.
    EmptyStream = (901, 0, "EMPTY_STREAM"),
}

impl From<CborError> for ErrorCode {
    fn from(e: CborError) -> Self {
        match e {
            CborError::Truncated
            | CborError::Reserved
            | CborError::InvalidUtf8
            | CborError::TooDeep
            | CborError::OutOfRange => ErrorCode::CborMalformed,
            CborError::NotShortest | CborError::IndefiniteLength | CborError::Unsupported | CborError::KeyOrder => {
                ErrorCode::CborNonCanonical
            }
            CborError::TrailingBytes => ErrorCode::CborTrailingBytes,
            CborError::UnexpectedType | CborError::WrongLength => ErrorCode::SchemaInvalidValue,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verification failure: the code, the record (by position and hash), and what was
/// expected where a number says it best.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The rule that was broken.
    pub code: ErrorCode,
    /// Position of the offending record in the stream (0-based).
    pub index: u64,
    /// SHA-256 of the offending record's bytes (absent for errors about the stream).
    pub hash: Option<Hash>,
    /// Another record involved: a missing parent, an equivocating twin, a used permit.
    pub related: Option<Hash>,
    /// What the rule expected and what the record had, where numbers say it.
    pub expected: Option<u64>,
    /// See `expected`.
    pub actual: Option<u64>,
    /// A short English explanation.
    pub detail: &'static str,
}

impl VerifyError {
    /// An error of `code` at record `index` (with its hash, where known).
    pub fn new(code: ErrorCode, index: u64, hash: Option<Hash>, detail: &'static str) -> Self {
        VerifyError {
            code,
            index,
            hash,
            related: None,
            expected: None,
            actual: None,
            detail,
        }
    }

    pub(crate) fn related(mut self, h: Hash) -> Self {
        self.related = Some(h);
        self
    }

    pub(crate) fn numbers(mut self, expected: u64, actual: u64) -> Self {
        self.expected = Some(expected);
        self.actual = Some(actual);
        self
    }
}

pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record #{}", self.index)?;
        if let Some(h) = &self.hash {
            write!(f, " ({})", Hex(h))?;
        }
        write!(f, ": rule {} {}: {}", self.code.rule(), self.code.name(), self.detail)?;
        if let (Some(e), Some(a)) = (self.expected, self.actual) {
            write!(f, " (expected {e}, found {a})")?;
        }
        if let Some(r) = &self.related {
            write!(f, " [related record {}]", Hex(r))?;
        }
        Ok(())
    }
}

impl core::error::Error for VerifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_round_trip() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::from_name(a.name()), Some(*a));
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(a.number(), b.number());
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
