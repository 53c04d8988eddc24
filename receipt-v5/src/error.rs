//! Errors: five stable classes, each with a typed detail.
//!
//! Three class names come from the Go implementation's interop vectors
//! (`non_interoperable_number`, `contract_mismatch`, `signature_rejected`); this crate adds
//! `malformed_json` (the text is not strict JSON) and `resource_limit` (a documented limit of
//! this implementation was reached; the receipt may be valid).

use core::fmt;

use crate::receipt::Member;

/// The class of an error: the stable, language-neutral verdict reported to users and
/// compared against the interop vectors' `expected_error`.
///
/// Deliberately exhaustive: a new class is a breaking change that callers mapping classes
/// to exit codes must see at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// `malformed_json`: not a strict JSON text (RFC 8259 with the I-JSON rules of RFC 7493:
    /// UTF-8, no lone surrogates, no duplicate member names).
    MalformedJson,
    /// `non_interoperable_number`: a number outside the interoperable subset (an integer
    /// literal `-?(0|[1-9][0-9]*)`, not `-0`, of magnitude at most 2^53-1).
    NonInteroperableNumber,
    /// `contract_mismatch`: valid JSON that is not a `receipt.v5` receipt (a signed member
    /// missing or of the wrong type, a wrong signature version, algorithm or encoding).
    ContractMismatch,
    /// `signature_rejected`: the Ed25519 signature does not verify under the trusted key.
    SignatureRejected,
    /// `resource_limit`: a documented limit of this implementation (nesting depth, members
    /// held at once, a caller buffer) was reached. The input may be valid.
    ResourceLimit,
}

impl ErrorClass {
    /// Every class.
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::MalformedJson,
        ErrorClass::NonInteroperableNumber,
        ErrorClass::ContractMismatch,
        ErrorClass::SignatureRejected,
        ErrorClass::ResourceLimit,
    ];

    /// The stable name, e.g. `signature_rejected`.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorClass::MalformedJson => "malformed_json",
            ErrorClass::NonInteroperableNumber => "non_interoperable_number",
            ErrorClass::ContractMismatch => "contract_mismatch",
            ErrorClass::SignatureRejected => "signature_rejected",
            ErrorClass::ResourceLimit => "resource_limit",
        }
    }

    /// Looks a class up by its stable name.
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a receipt or a JSON text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Class `malformed_json`.
    MalformedJson(JsonError),
    /// Class `non_interoperable_number`.
    NonInteroperableNumber(NumberError),
    /// Class `contract_mismatch`.
    ContractMismatch(ContractError),
    /// Class `signature_rejected`: the signature does not verify under the trusted key with
    /// the strict Ed25519 rules of spec/ed25519.md.
    SignatureRejected,
    /// Class `resource_limit`.
    ResourceLimit(LimitError),
}

impl ReceiptError {
    /// The error's class.
    pub const fn class(&self) -> ErrorClass {
        match self {
            ReceiptError::MalformedJson(_) => ErrorClass::MalformedJson,
            ReceiptError::NonInteroperableNumber(_) => ErrorClass::NonInteroperableNumber,
            ReceiptError::ContractMismatch(_) => ErrorClass::ContractMismatch,
            ReceiptError::SignatureRejected => ErrorClass::SignatureRejected,
            ReceiptError::ResourceLimit(_) => ErrorClass::ResourceLimit,
        }
    }
}

impl fmt::Display for ReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.class())?;
        match self {
            ReceiptError::MalformedJson(e) => e.fmt(f),
            ReceiptError::NonInteroperableNumber(e) => e.fmt(f),
            ReceiptError::ContractMismatch(e) => e.fmt(f),
            ReceiptError::SignatureRejected => {
                f.write_str("the Ed25519 signature over the signing payload does not verify under the trusted key")
            }
            ReceiptError::ResourceLimit(e) => e.fmt(f),
        }
    }
}

impl From<JsonError> for ReceiptError {
    fn from(e: JsonError) -> Self {
        ReceiptError::MalformedJson(e)
    }
}

impl From<NumberError> for ReceiptError {
    fn from(e: NumberError) -> Self {
        ReceiptError::NonInteroperableNumber(e)
    }
}

impl From<ContractError> for ReceiptError {
    fn from(e: ContractError) -> Self {
        ReceiptError::ContractMismatch(e)
    }
}

impl From<LimitError> for ReceiptError {
    fn from(e: LimitError) -> Self {
        ReceiptError::ResourceLimit(e)
    }
}

/// A JSON text that is not strict JSON, at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset in the input where the rule is broken.
    pub offset: usize,
    /// The rule.
    pub kind: JsonErrorKind,
}

/// The strict-JSON rule a text breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The text starts with a UTF-8 byte order mark (RFC 8259 §8.1).
    ByteOrderMark,
    /// The text is not well-formed UTF-8.
    InvalidUtf8,
    /// The text ends inside a value, or holds no value.
    UnexpectedEnd,
    /// A character that cannot start or continue a value here.
    UnexpectedCharacter,
    /// `true`, `false` or `null` misspelled.
    InvalidLiteral,
    /// Not a JSON number: leading zero, missing digits, `+`, a bare `-`.
    InvalidNumber,
    /// An unescaped control character (U+0000..U+001F) inside a string.
    ControlCharacter,
    /// An escape other than `\" \\ \/ \b \f \n \r \t \uXXXX`.
    InvalidEscape,
    /// A `\uXXXX` escape of a surrogate that is not part of a high-low pair (I-JSON).
    LoneSurrogate,
    /// An object member name that repeats an earlier one of the same object, compared after
    /// unescaping (I-JSON; RFC 8785 input).
    DuplicateMember,
    /// Characters other than whitespace after the value.
    TrailingCharacters,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JsonErrorKind::ByteOrderMark => "a byte order mark, which JSON texts must not start with",
            JsonErrorKind::InvalidUtf8 => "invalid UTF-8",
            JsonErrorKind::UnexpectedEnd => "the end of the text inside a value (or no value at all)",
            JsonErrorKind::UnexpectedCharacter => "a character that is not valid JSON here",
            JsonErrorKind::InvalidLiteral => "a literal that is not true, false or null",
            JsonErrorKind::InvalidNumber => {
                "a malformed number (expected -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?)"
            }
            JsonErrorKind::ControlCharacter => "an unescaped control character in a string",
            JsonErrorKind::InvalidEscape => "an invalid escape sequence",
            JsonErrorKind::LoneSurrogate => "a \\u escape of a lone surrogate",
            JsonErrorKind::DuplicateMember => "a member name that repeats an earlier one of the same object",
            JsonErrorKind::TrailingCharacters => "characters after the JSON value",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

/// A number outside the interoperable subset, at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumberError {
    /// Byte offset of the number's first character.
    pub offset: usize,
    /// Why it is outside the subset.
    pub kind: NumberErrorKind,
}

/// Why a (well-formed) JSON number is outside the interoperable subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberErrorKind {
    /// It has a fraction part (`1.0`, `0.1`).
    Fraction,
    /// It has an exponent (`1e2`, `1E2`).
    Exponent,
    /// It is `-0`.
    NegativeZero,
    /// Its magnitude exceeds 2^53-1 = 9007199254740991.
    OutOfRange,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            NumberErrorKind::Fraction => "has a fraction part",
            NumberErrorKind::Exponent => "has an exponent",
            NumberErrorKind::NegativeZero => "is -0",
            NumberErrorKind::OutOfRange => "exceeds 2^53-1 in magnitude",
        };
        write!(
            f,
            "the number at byte {} {what}; only integers -?(0|[1-9][0-9]*) in [-(2^53-1), 2^53-1], not -0, are interoperable",
            self.offset
        )
    }
}

/// Valid JSON that is not a `receipt.v5` receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContractError {
    /// The JSON value is not an object.
    NotAnObject,
    /// `signature_version` is present but is not the string `receipt.v5`.
    UnsupportedSignatureVersion,
    /// A signed member is absent (all 13 are required, even when empty).
    MissingMember(Member),
    /// A signed member has the wrong JSON type: `lamport_clock` must be an integer, the
    /// twelve others strings.
    WrongType(Member),
    /// `lamport_clock` is negative (it is an unsigned counter).
    NegativeLamportClock,
    /// `signature_algorithm` and `signature_profile` are not either both absent or exactly
    /// `"ed25519"` and `"classical"`.
    SignatureAlgorithm,
    /// There is no `signature` member.
    MissingSignature,
    /// `signature` is not a string of exactly 128 lowercase hexadecimal characters.
    SignatureEncoding,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractError::NotAnObject => f.write_str("a receipt must be a JSON object"),
            ContractError::UnsupportedSignatureVersion => {
                f.write_str("signature_version must be the string \"receipt.v5\"")
            }
            ContractError::MissingMember(m) => {
                write!(
                    f,
                    "signed member `{m}` is missing (all 13 signed members are required, even when empty)"
                )
            }
            ContractError::WrongType(m) => match m {
                Member::LamportClock => f.write_str("signed member `lamport_clock` must be an integer"),
                m => write!(f, "signed member `{m}` must be a string"),
            },
            ContractError::NegativeLamportClock => f.write_str("lamport_clock must not be negative"),
            ContractError::SignatureAlgorithm => f.write_str(
                "signature_algorithm and signature_profile must be \"ed25519\" and \"classical\", or both absent",
            ),
            ContractError::MissingSignature => f.write_str("the receipt has no `signature` member"),
            ContractError::SignatureEncoding => {
                f.write_str("signature must be a string of 128 lowercase hexadecimal characters")
            }
        }
    }
}

/// A documented limit of this implementation was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitError {
    /// Arrays and objects nest deeper than [`MAX_DEPTH`](crate::MAX_DEPTH).
    TooDeep {
        /// Byte offset of the container that is one level too deep.
        offset: usize,
    },
    /// More than [`MAX_OPEN_MEMBERS`](crate::MAX_OPEN_MEMBERS) object members would have to
    /// be held at once (the members of all objects open at that point).
    TooManyMembers {
        /// Byte offset of the member that did not fit.
        offset: usize,
    },
    /// A caller buffer (output or scratch) is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::TooDeep { offset } => {
                write!(f, "nesting deeper than {} at byte {offset}", crate::MAX_DEPTH)
            }
            LimitError::TooManyMembers { offset } => write!(
                f,
                "more than {} object members open at once at byte {offset}",
                crate::MAX_OPEN_MEMBERS
            ),
            LimitError::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small: {needed} bytes needed, {available} available")
            }
        }
    }
}

impl core::error::Error for ReceiptError {}
