//! The `receipt.v5` profile: signed members, contract checks, signing payload, verification.

use core::fmt;

use crate::canon::BufferSink;
use crate::error::{ContractError, LimitError, ReceiptError};
use crate::json::{self, JsonStr, JsonValue, Kind, Members, Span};
use crate::key::{decode_lower_hex, TrustedKey};

/// The value of `signature_version` this profile verifies.
pub const SIGNATURE_VERSION: &str = "receipt.v5";

/// Size of the stack buffer [`verify`] uses to rewrite signed string members whose JSON
/// spelling is not the canonical one (for example `\u00e9` for `é`, or `\/`). Members
/// spelled canonically, as every canonical receipt is, are signed in place and need none.
pub const INLINE_SCRATCH_LEN: usize = 1024;

/// One of the 13 signed members of a `receipt.v5` receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    /// `signature_version`: the string `receipt.v5`.
    SignatureVersion,
    /// `receipt_id`.
    ReceiptId,
    /// `decision_id`.
    DecisionId,
    /// `effect_id`.
    EffectId,
    /// `status`.
    Status,
    /// `output_hash`.
    OutputHash,
    /// `prev_hash`.
    PrevHash,
    /// `lamport_clock`: the only number, an integer in [0, 2^53-1].
    LamportClock,
    /// `args_hash`.
    ArgsHash,
    /// `verdict`.
    Verdict,
    /// `reason_code`.
    ReasonCode,
    /// `policy_hash`.
    PolicyHash,
    /// `session_id`.
    SessionId,
}

impl Member {
    /// The 13 signed members in the order the profile lists them (the order in which a
    /// missing member is reported).
    pub const ALL: [Member; 13] = [
        Member::SignatureVersion,
        Member::ReceiptId,
        Member::DecisionId,
        Member::EffectId,
        Member::Status,
        Member::OutputHash,
        Member::PrevHash,
        Member::LamportClock,
        Member::ArgsHash,
        Member::Verdict,
        Member::ReasonCode,
        Member::PolicyHash,
        Member::SessionId,
    ];

    /// The 13 signed members in the order of the signing payload (RFC 8785 §3.2.3; the
    /// names are ASCII, so this is plain byte order).
    pub const CANONICAL_ORDER: [Member; 13] = [
        Member::ArgsHash,
        Member::DecisionId,
        Member::EffectId,
        Member::LamportClock,
        Member::OutputHash,
        Member::PolicyHash,
        Member::PrevHash,
        Member::ReasonCode,
        Member::ReceiptId,
        Member::SessionId,
        Member::SignatureVersion,
        Member::Status,
        Member::Verdict,
    ];

    /// The member's name in the receipt.
    pub const fn name(self) -> &'static str {
        match self {
            Member::SignatureVersion => "signature_version",
            Member::ReceiptId => "receipt_id",
            Member::DecisionId => "decision_id",
            Member::EffectId => "effect_id",
            Member::Status => "status",
            Member::OutputHash => "output_hash",
            Member::PrevHash => "prev_hash",
            Member::LamportClock => "lamport_clock",
            Member::ArgsHash => "args_hash",
            Member::Verdict => "verdict",
            Member::ReasonCode => "reason_code",
            Member::PolicyHash => "policy_hash",
            Member::SessionId => "session_id",
        }
    }

    /// Looks a member up by name.
    pub fn from_name(name: &str) -> Option<Member> {
        Member::ALL.into_iter().find(|m| m.name() == name)
    }

    fn from_json(name: &JsonStr<'_>) -> Option<Member> {
        Member::ALL.into_iter().find(|m| name.eq_str(m.name()))
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bytes of the signing payload between the member values, in canonical order: the
/// text before each value of [`Member::CANONICAL_ORDER`], then [`PAYLOAD_END`]. String
/// values are quoted by this glue; `lamport_clock` is not.
const PAYLOAD_GLUE: [&str; 13] = [
    "{\"args_hash\":\"",
    "\",\"decision_id\":\"",
    "\",\"effect_id\":\"",
    "\",\"lamport_clock\":",
    ",\"output_hash\":\"",
    "\",\"policy_hash\":\"",
    "\",\"prev_hash\":\"",
    "\",\"reason_code\":\"",
    "\",\"receipt_id\":\"",
    "\",\"session_id\":\"",
    "\",\"signature_version\":\"",
    "\",\"status\":\"",
    "\",\"verdict\":\"",
];
const PAYLOAD_END: &str = "\"}";

/// The value of a signed member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberValue<'a> {
    /// One of the twelve string members.
    String(JsonStr<'a>),
    /// `lamport_clock`.
    Integer(u64),
}

impl fmt::Display for MemberValue<'_> {
    /// The decoded string, or the integer in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberValue::String(s) => s.fmt(f),
            MemberValue::Integer(n) => n.fmt(f),
        }
    }
}

/// A receipt that passed every check but the signature: strict JSON, the contract, the
/// interoperable numbers. It gives access to the signing payload and the signature only;
/// the member values are available after [`verify`](UnverifiedReceipt::verify), from the
/// [`VerifiedReceipt`].
#[derive(Clone, Copy, Debug)]
pub struct UnverifiedReceipt<'a> {
    text: &'a str,
    root: Span,
    /// Indexed by [`Member::index`]; the `lamport_clock` slot is empty.
    strings: [JsonStr<'a>; 13],
    lamport_clock: u64,
    /// The literal of `lamport_clock`: in the subset and not negative, so canonical.
    lamport_literal: &'a str,
    signature: [u8; 64],
}

impl<'a> UnverifiedReceipt<'a> {
    /// Reads a receipt and applies every check but the signature, in the order of the
    /// specification (spec/receipt-v5.md §5):
    ///
    /// 1. strict JSON (`malformed_json`, or `resource_limit` for the nesting and member
    ///    limits);
    /// 2. a JSON object whose `signature_version` is `"receipt.v5"`, with all 13 signed
    ///    members present (`contract_mismatch`);
    /// 3. every number of the receipt, signed or not, in the interoperable subset
    ///    (`non_interoperable_number`);
    /// 4. the signed members' types, `signature_algorithm` / `signature_profile`, and a
    ///    `signature` of 128 lowercase hexadecimal characters (`contract_mismatch`).
    pub fn parse(json: &'a [u8]) -> Result<UnverifiedReceipt<'a>, ReceiptError> {
        let doc = json::parse(json)?;
        if doc.root.kind != Kind::Object {
            return Err(ContractError::NotAnObject.into());
        }
        let mut signed: [Option<Span>; 13] = [None; 13];
        let (mut signature, mut algorithm, mut profile) = (None, None, None);
        for member in Members::new(doc.text, doc.root) {
            let (name, value) = member?;
            if let Some(m) = Member::from_json(&name) {
                if let Some(slot) = signed.get_mut(m.index()) {
                    *slot = Some(value);
                }
            } else if name.eq_str("signature") {
                signature = Some(value);
            } else if name.eq_str("signature_algorithm") {
                algorithm = Some(value);
            } else if name.eq_str("signature_profile") {
                profile = Some(value);
            }
        }
        let string = |span: Option<Span>| span.and_then(|s| json::string_at(doc.text, s));

        // 2. The contract: version, then presence of every signed member.
        let version = signed.get(Member::SignatureVersion.index()).copied().flatten();
        if version.is_none() {
            return Err(ContractError::MissingMember(Member::SignatureVersion).into());
        }
        if !string(version).is_some_and(|v| v.eq_str(SIGNATURE_VERSION)) {
            return Err(ContractError::UnsupportedSignatureVersion.into());
        }
        for (m, span) in Member::ALL.iter().zip(signed.iter()) {
            if span.is_none() {
                return Err(ContractError::MissingMember(*m).into());
            }
        }

        // 3. Numbers, anywhere in the receipt.
        if let Some(e) = doc.first_bad_number {
            return Err(e.into());
        }

        // 4. Types and the signature members.
        let mut strings = [JsonStr::EMPTY; 13];
        let mut lamport = None;
        for ((m, span), out) in Member::ALL.iter().zip(signed.iter()).zip(strings.iter_mut()) {
            let Some(span) = *span else {
                return Err(ContractError::MissingMember(*m).into());
            };
            if *m == Member::LamportClock {
                if span.kind != Kind::Number {
                    return Err(ContractError::WrongType(*m).into());
                }
                let literal = doc.text.get(span.start..span.end).unwrap_or_default();
                if literal.starts_with('-') {
                    return Err(ContractError::NegativeLamportClock.into());
                }
                let value = json::magnitude(literal.as_bytes()).ok_or(ContractError::WrongType(*m))?;
                lamport = Some((value, literal));
            } else {
                *out = json::string_at(doc.text, span).ok_or(ContractError::WrongType(*m))?;
            }
        }
        let (lamport_clock, lamport_literal) = lamport.ok_or(ContractError::MissingMember(Member::LamportClock))?;

        match (algorithm, profile) {
            (None, None) => {}
            (Some(a), Some(p))
                if string(Some(a)).is_some_and(|a| a.eq_str("ed25519"))
                    && string(Some(p)).is_some_and(|p| p.eq_str("classical")) => {}
            _ => return Err(ContractError::SignatureAlgorithm.into()),
        }

        let signature_text = match signature {
            None => return Err(ContractError::MissingSignature.into()),
            Some(span) => string(Some(span)).ok_or(ContractError::SignatureEncoding)?,
        };
        let mut sig = [0u8; 64];
        // The decoded value must be the hex; a JSON spelling with escapes of hex digits
        // is refused too (no encoder writes one).
        let hex = signature_text.as_str().ok_or(ContractError::SignatureEncoding)?;
        if !decode_lower_hex(hex.as_bytes(), &mut sig) {
            return Err(ContractError::SignatureEncoding.into());
        }

        Ok(UnverifiedReceipt {
            text: doc.text,
            root: doc.root,
            strings,
            lamport_clock,
            lamport_literal,
            signature: sig,
        })
    }

    /// The 64-byte Ed25519 signature from the `signature` member.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    fn string(&self, m: Member) -> JsonStr<'a> {
        self.strings.get(m.index()).copied().unwrap_or(JsonStr::EMPTY)
    }

    /// Streams the signing payload (the canonical JSON object of the 13 signed members) in
    /// pieces, for example into a hash, without allocating.
    pub fn signing_payload_with(&self, mut sink: impl FnMut(&[u8])) {
        for (m, glue) in Member::CANONICAL_ORDER.iter().zip(PAYLOAD_GLUE) {
            sink(glue.as_bytes());
            if *m == Member::LamportClock {
                sink(self.lamport_literal.as_bytes());
            } else {
                self.string(*m).write_canonical(&mut sink);
            }
        }
        sink(PAYLOAD_END.as_bytes());
    }

    /// The length of the signing payload in bytes. It never exceeds the length of the
    /// receipt's JSON text.
    pub fn signing_payload_len(&self) -> usize {
        let mut n = 0usize;
        self.signing_payload_with(|b| n = n.saturating_add(b.len()));
        n
    }

    /// Writes the signing payload into `out`; returns its length (`resource_limit` if `out`
    /// is too small; a buffer as long as the receipt's JSON text always suffices).
    pub fn write_signing_payload(&self, out: &mut [u8]) -> Result<usize, ReceiptError> {
        let mut sink = BufferSink::new(out);
        self.signing_payload_with(|b| sink.write(b));
        sink.finish()
    }

    /// The signing payload as a new vector.
    #[cfg(feature = "alloc")]
    pub fn signing_payload_to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec::Vec::with_capacity(self.signing_payload_len());
        self.signing_payload_with(|b| out.extend_from_slice(b));
        out
    }

    /// Verifies the signature under `key` (`signature_rejected` if it does not verify).
    ///
    /// Signed string members spelled canonically are signed in place; others are rewritten
    /// into a stack buffer of [`INLINE_SCRATCH_LEN`] bytes (`resource_limit` if they need
    /// more: then use [`verify_with_scratch`](Self::verify_with_scratch)).
    pub fn verify(&self, key: &TrustedKey) -> Result<VerifiedReceipt<'a>, ReceiptError> {
        let mut scratch = [0u8; INLINE_SCRATCH_LEN];
        self.verify_with_scratch(key, &mut scratch)
    }

    /// As [`verify`](Self::verify), rewriting non-canonically spelled members into
    /// `scratch`: a buffer as long as the receipt's JSON text always suffices.
    pub fn verify_with_scratch(
        &self,
        key: &TrustedKey,
        scratch: &mut [u8],
    ) -> Result<VerifiedReceipt<'a>, ReceiptError> {
        let rewritten = |s: &JsonStr<'_>| if s.is_canonical() { 0 } else { s.canonical_len() };
        let needed = self.strings.iter().fold(0usize, |n, s| n.saturating_add(rewritten(s)));
        if needed > scratch.len() {
            return Err(LimitError::BufferTooSmall {
                needed,
                available: scratch.len(),
            }
            .into());
        }
        // 13 glue pieces, 13 values, the closing piece.
        let mut parts: [&[u8]; 27] = [&[]; 27];
        let available = scratch.len();
        let mut rest: &mut [u8] = scratch;
        let mut slots = parts.iter_mut();
        for (m, glue) in Member::CANONICAL_ORDER.iter().zip(PAYLOAD_GLUE) {
            let value: &[u8] = if *m == Member::LamportClock {
                self.lamport_literal.as_bytes()
            } else {
                let s = self.string(*m);
                if s.is_canonical() {
                    s.raw().as_bytes()
                } else {
                    let (head, tail) = core::mem::take(&mut rest)
                        .split_at_mut_checked(s.canonical_len())
                        .ok_or(LimitError::BufferTooSmall { needed, available })?;
                    let mut sink = BufferSink::new(head);
                    s.write_canonical(&mut |b: &[u8]| sink.write(b));
                    sink.finish()?;
                    rest = tail;
                    head
                }
            };
            for piece in [glue.as_bytes(), value] {
                if let Some(slot) = slots.next() {
                    *slot = piece;
                }
            }
        }
        if let Some(slot) = slots.next() {
            *slot = PAYLOAD_END.as_bytes();
        }
        if key.public_key().verify_parts(&parts, &self.signature) {
            Ok(VerifiedReceipt {
                receipt: *self,
                key: *key.as_bytes(),
            })
        } else {
            Err(ReceiptError::SignatureRejected)
        }
    }
}

/// A receipt whose signature verified under a trusted key. Its signed members are what the
/// key holder signed; everything else in the receipt is an unauthenticated claim.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedReceipt<'a> {
    receipt: UnverifiedReceipt<'a>,
    key: [u8; 32],
}

impl<'a> VerifiedReceipt<'a> {
    /// The value of a signed member.
    pub fn member(&self, m: Member) -> MemberValue<'a> {
        match m {
            Member::LamportClock => MemberValue::Integer(self.receipt.lamport_clock),
            m => MemberValue::String(self.receipt.string(m)),
        }
    }

    /// The 13 signed members and their values, in the order of [`Member::ALL`].
    pub fn members(&self) -> impl Iterator<Item = (Member, MemberValue<'a>)> + 'a {
        let this = *self;
        Member::ALL.into_iter().map(move |m| (m, this.member(m)))
    }

    /// `signature_version` (always `receipt.v5`).
    pub fn signature_version(&self) -> JsonStr<'a> {
        self.receipt.string(Member::SignatureVersion)
    }

    /// `receipt_id`.
    pub fn receipt_id(&self) -> JsonStr<'a> {
        self.receipt.string(Member::ReceiptId)
    }

    /// `decision_id`.
    pub fn decision_id(&self) -> JsonStr<'a> {
        self.receipt.string(Member::DecisionId)
    }

    /// `effect_id`.
    pub fn effect_id(&self) -> JsonStr<'a> {
        self.receipt.string(Member::EffectId)
    }

    /// `status`.
    pub fn status(&self) -> JsonStr<'a> {
        self.receipt.string(Member::Status)
    }

    /// `output_hash`.
    pub fn output_hash(&self) -> JsonStr<'a> {
        self.receipt.string(Member::OutputHash)
    }

    /// `prev_hash`.
    pub fn prev_hash(&self) -> JsonStr<'a> {
        self.receipt.string(Member::PrevHash)
    }

    /// `lamport_clock`.
    pub fn lamport_clock(&self) -> u64 {
        self.receipt.lamport_clock
    }

    /// `args_hash`.
    pub fn args_hash(&self) -> JsonStr<'a> {
        self.receipt.string(Member::ArgsHash)
    }

    /// `verdict`.
    pub fn verdict(&self) -> JsonStr<'a> {
        self.receipt.string(Member::Verdict)
    }

    /// `reason_code`.
    pub fn reason_code(&self) -> JsonStr<'a> {
        self.receipt.string(Member::ReasonCode)
    }

    /// `policy_hash`.
    pub fn policy_hash(&self) -> JsonStr<'a> {
        self.receipt.string(Member::PolicyHash)
    }

    /// `session_id`.
    pub fn session_id(&self) -> JsonStr<'a> {
        self.receipt.string(Member::SessionId)
    }

    /// The signature that verified.
    pub fn signature(&self) -> &[u8; 64] {
        &self.receipt.signature
    }

    /// The trusted key it verified under.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The signed bytes, streamed (see [`UnverifiedReceipt::signing_payload_with`]).
    pub fn signing_payload_with(&self, sink: impl FnMut(&[u8])) {
        self.receipt.signing_payload_with(sink);
    }

    /// The length of the signed bytes.
    pub fn signing_payload_len(&self) -> usize {
        self.receipt.signing_payload_len()
    }

    /// Writes the signed bytes into `out` (see [`UnverifiedReceipt::write_signing_payload`]).
    pub fn write_signing_payload(&self, out: &mut [u8]) -> Result<usize, ReceiptError> {
        self.receipt.write_signing_payload(out)
    }

    /// The top-level members that are **not** signed, in text order: `signature`,
    /// `timestamp`, `key_id`, `public_key_set`, `metadata`, ... Nothing vouches for them.
    pub fn unsigned_members(&self) -> UnsignedMembers<'a> {
        UnsignedMembers {
            text: self.receipt.text,
            members: Members::new(self.receipt.text, self.receipt.root),
        }
    }

    /// An unsigned top-level member by name (`None` if absent or if `name` is signed).
    /// Nothing vouches for its value.
    pub fn unsigned_member(&self, name: &str) -> Option<JsonValue<'a>> {
        self.unsigned_members().find(|(n, _)| n.eq_str(name)).map(|(_, v)| v)
    }
}

/// The unsigned top-level members of a verified receipt: see
/// [`VerifiedReceipt::unsigned_members`].
#[derive(Clone, Debug)]
pub struct UnsignedMembers<'a> {
    text: &'a str,
    members: Members<'a>,
}

impl<'a> Iterator for UnsignedMembers<'a> {
    type Item = (JsonStr<'a>, JsonValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // The text was validated: an error here cannot happen and ends the iteration.
            let (name, span) = self.members.next()?.ok()?;
            if Member::from_json(&name).is_none() {
                return Some((name, JsonValue::from_span(self.text, span)?));
            }
        }
    }
}

/// Verifies a `receipt.v5` receipt (its JSON text) under a trusted key.
///
/// Checks, in order (spec/receipt-v5.md §5): strict JSON, the contract, the interoperable
/// numbers, the types and signature members, then the Ed25519 signature over the
/// canonical signing payload with verify-core's strict rules. Needs no allocator; see
/// [`UnverifiedReceipt::verify`] for the one size limit and [`verify_with_scratch`] to
/// lift it.
///
/// ```
/// # let receipt = br#"{}"#;
/// let key: receipt_v5::TrustedKey =
///     "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61".parse().unwrap();
/// match receipt_v5::verify(receipt, &key) {
///     Ok(r) => println!("{} {} at {}", r.receipt_id(), r.verdict(), r.lamport_clock()),
///     Err(e) => println!("refused: {} ({e})", e.class()),
/// }
/// ```
pub fn verify<'a>(json: &'a [u8], key: &TrustedKey) -> Result<VerifiedReceipt<'a>, ReceiptError> {
    UnverifiedReceipt::parse(json)?.verify(key)
}

/// As [`verify`], with a caller buffer for rewriting signed members whose JSON spelling is
/// not canonical: `json.len()` bytes always suffice.
pub fn verify_with_scratch<'a>(
    json: &'a [u8],
    key: &TrustedKey,
    scratch: &mut [u8],
) -> Result<VerifiedReceipt<'a>, ReceiptError> {
    UnverifiedReceipt::parse(json)?.verify_with_scratch(key, scratch)
}

/// Writes the signing payload of a receipt into `out` (after every check but the
/// signature); returns its length. `json.len()` bytes always suffice.
pub fn signing_payload(json: &[u8], out: &mut [u8]) -> Result<usize, ReceiptError> {
    UnverifiedReceipt::parse(json)?.write_signing_payload(out)
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    #[test]
    fn member_orders() {
        let mut names: Vec<&str> = Member::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        let canonical: Vec<&str> = Member::CANONICAL_ORDER.iter().map(|m| m.name()).collect();
        assert_eq!(names, canonical);
        for (i, m) in Member::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Member::from_name(m.name()), Some(*m));
        }
    }

    /// The glue is exactly what the generic canonical writer produces around the values.
    #[test]
    fn glue_matches_the_canonical_writer() {
        let mut object = String::from("{");
        for (i, m) in Member::ALL.iter().enumerate() {
            if i > 0 {
                object.push(',');
            }
            match m {
                Member::LamportClock => object.push_str(&format!("\"{}\":7", m.name())),
                _ => object.push_str(&format!("\"{}\":\"<{}>\"", m.name(), m.name())),
            }
        }
        object.push('}');
        let mut canonical = Vec::new();
        crate::canonicalize_with(object.as_bytes(), |b| canonical.extend_from_slice(b)).unwrap();
        let mut glued = Vec::new();
        for (m, glue) in Member::CANONICAL_ORDER.iter().zip(PAYLOAD_GLUE) {
            glued.extend_from_slice(glue.as_bytes());
            match m {
                Member::LamportClock => glued.push(b'7'),
                _ => glued.extend_from_slice(format!("<{}>", m.name()).as_bytes()),
            }
        }
        glued.extend_from_slice(PAYLOAD_END.as_bytes());
        assert_eq!(String::from_utf8(glued).unwrap(), String::from_utf8(canonical).unwrap());
    }
}
