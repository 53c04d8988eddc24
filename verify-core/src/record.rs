//! The record format: a tagged COSE_Sign1 whose payload is a deterministic CBOR map.
//!
//! Decoding borrows from the input and allocates nothing. A decoded [`Record`] is only
//! well-formed, not trusted: [`crate::Verifier`] decides that.

use sha2::{Digest, Sha256};

use crate::cbor::{KeyOrder, Reader};
use crate::cose::Sign1;
use crate::error::ErrorCode;
use crate::registry::{self, ReasonUse};
use crate::Hash;

/// The only format version.
pub const FORMAT_VERSION: u64 = 1;
/// Largest record, in bytes.
pub const MAX_RECORD_SIZE: usize = 65_536;
/// Most parents one record may name.
pub const MAX_PARENTS: usize = 32;
/// Longest principal, session id, tool or executor name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest free-text detail, in bytes.
pub const MAX_DETAIL_LEN: usize = 1024;
/// Most approvers in one APPROVAL, and most cosignatures on one CHECKPOINT.
pub const MAX_SIGNERS: usize = 16;
/// Most metering entries in one EFFECT.
pub const MAX_METERS: usize = 16;

/// Record kinds (payload key 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A proposed tool call.
    Intent = 1,
    /// ALLOW, DENY or ESCALATE for an INTENT.
    Decision = 2,
    /// A grant of an ESCALATE by a quorum of approvers.
    Approval = 3,
    /// The receipt of an executed call.
    Effect = 4,
    /// Something the kernel observed and refused.
    Violation = 5,
    /// A key published, rotated or revoked.
    TrustEvent = 6,
    /// A policy bundle activated.
    Policy = 7,
    /// Another kernel statement, typed by a registered subtype.
    Attestation = 8,
    /// A Merkle root over all records so far.
    Checkpoint = 9,
}

impl Kind {
    /// Every kind, in numeric order.
    pub const ALL: [Kind; 9] = [
        Kind::Intent,
        Kind::Decision,
        Kind::Approval,
        Kind::Effect,
        Kind::Violation,
        Kind::TrustEvent,
        Kind::Policy,
        Kind::Attestation,
        Kind::Checkpoint,
    ];

    /// From the payload's kind number.
    pub fn from_u64(v: u64) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| *k as u64 == v)
    }

    /// The spec's name for the kind, e.g. `INTENT`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Intent => "INTENT",
            Kind::Decision => "DECISION",
            Kind::Approval => "APPROVAL",
            Kind::Effect => "EFFECT",
            Kind::Violation => "VIOLATION",
            Kind::TrustEvent => "TRUST_EVENT",
            Kind::Policy => "POLICY",
            Kind::Attestation => "ATTESTATION",
            Kind::Checkpoint => "CHECKPOINT",
        }
    }
}

/// What bytes an INTENT's argument commitment covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// JSON arguments, committed as their RFC 8785 canonical JSON bytes.
    Json = 0,
    /// Free-text tool input, committed as its raw UTF-8 bytes.
    Text = 1,
    /// Opaque bytes (for example a sandboxed tool's stdin), committed as given.
    Bytes = 2,
}

/// A DECISION's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The call may run.
    Allow = 0,
    /// The call must not run.
    Deny = 1,
    /// The call needs approval first.
    Escalate = 2,
}

/// How an EFFECT's execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectStatus {
    /// The tool ran and returned a result.
    Succeeded = 0,
    /// The tool ran and reported an error.
    Failed = 1,
    /// The run was stopped by a limit (gas, time, memory, output size).
    Aborted = 2,
}

/// A TRUST_EVENT's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustAction {
    /// A new key with roles.
    Publish = 0,
    /// An old key replaced by a new one; the old key's records stand up to a cut-off.
    Rotate = 1,
    /// A key withdrawn; its records stand up to a cut-off.
    Revoke = 2,
}

/// What resolves an ESCALATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escalation<'a> {
    /// The role each approver must hold.
    pub role: &'a str,
    /// How many distinct approvers are needed (at least 1).
    pub quorum: u64,
    /// Earliest kernel time (ms) at which an APPROVAL may be recorded: the timelock.
    pub not_before: u64,
    /// Latest kernel time (ms) at which an APPROVAL may be recorded.
    pub expires: u64,
}

/// A list of (key, signature) pairs as they appear in the record, already validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureList<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> SignatureList<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (public key, signature) pairs, in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = ([u8; 32], [u8; 64])> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| read_key_sig(&mut r).ok())
    }
}

fn read_key_sig(r: &mut Reader<'_>) -> Result<([u8; 32], [u8; 64]), ErrorCode> {
    if r.map_len()? != 2 {
        return Err(ErrorCode::SchemaMissingField);
    }
    let mut prev = None;
    if r.key(&mut prev)? != 0 {
        return Err(ErrorCode::SchemaMissingField);
    }
    let key = r.bytes_fixed::<32>()?;
    if r.key(&mut prev)? != 1 {
        return Err(ErrorCode::SchemaMissingField);
    }
    let sig = r.bytes_fixed::<64>()?;
    Ok((key, sig))
}

fn read_signature_list<'a>(r: &mut Reader<'a>) -> Result<SignatureList<'a>, ErrorCode> {
    let count = r.array_len()?;
    if count == 0 || count > MAX_SIGNERS {
        return Err(ErrorCode::SchemaInvalidValue);
    }
    let start = r.position();
    let mut previous: Option<[u8; 32]> = None;
    for _ in 0..count {
        let (key, _) = read_key_sig(r)?;
        if previous.is_some_and(|p| key <= p) {
            // Sorted by key, each key once: one byte form, and no double counting.
            return Err(ErrorCode::SchemaInvalidValue);
        }
        previous = Some(key);
    }
    Ok(SignatureList {
        raw: r.since(start),
        count,
    })
}

/// A list of text items (roles), already validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextList<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> TextList<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| r.text().ok())
    }
}

/// The metering map of an EFFECT: (meter name, value) in canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meters<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> Meters<'a> {
    /// Number of meters.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (name, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| Some((r.text().ok()?, r.uint().ok()?)))
    }

    /// The value of one meter.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The parents of a record: strictly ascending 32-byte hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parents<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> Parents<'a> {
    /// Number of parents.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the record has no parents.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The parent hashes, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Hash> + 'a {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| r.bytes_fixed::<32>().ok())
    }
}

/// The kind-specific body of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Fields are documented in spec/record-format.md.
pub enum Body<'a> {
    Intent {
        tool: &'a str,
        call_kind: CallKind,
        args: Hash,
    },
    Decision {
        verdict: Verdict,
        reason: &'a str,
        policy: Hash,
        escalation: Option<Escalation<'a>>,
    },
    Approval {
        approvals: SignatureList<'a>,
    },
    Effect {
        status: EffectStatus,
        tool: &'a str,
        call_kind: CallKind,
        args: Hash,
        output: Hash,
        executor: &'a str,
        meters: Option<Meters<'a>>,
    },
    Violation {
        code: &'a str,
        subject: Option<Hash>,
        detail: Option<&'a str>,
    },
    TrustEvent {
        action: TrustAction,
        key: [u8; 32],
        roles: Option<TextList<'a>>,
        new_key: Option<[u8; 32]>,
        cutoff: Option<Hash>,
    },
    Policy {
        bundle: Hash,
        name: Option<&'a str>,
    },
    Attestation {
        subtype: &'a str,
        subject: Hash,
        claims: Option<&'a [u8]>,
    },
    Checkpoint {
        count: u64,
        root: Hash,
        cosignatures: Option<SignatureList<'a>>,
    },
}

impl Body<'_> {
    /// The record kind this body belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Intent { .. } => Kind::Intent,
            Body::Decision { .. } => Kind::Decision,
            Body::Approval { .. } => Kind::Approval,
            Body::Effect { .. } => Kind::Effect,
            Body::Violation { .. } => Kind::Violation,
            Body::TrustEvent { .. } => Kind::TrustEvent,
            Body::Policy { .. } => Kind::Policy,
            Body::Attestation { .. } => Kind::Attestation,
            Body::Checkpoint { .. } => Kind::Checkpoint,
        }
    }
}

/// A decoded, well-formed record. Its signature and rules are not yet checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// SHA-256 of the record's exact bytes: its identity.
    pub hash: Hash,
    /// The signing key (`kid` in the protected header): a raw Ed25519 public key.
    pub kid: [u8; 32],
    /// The Ed25519 signature over the COSE Sig_structure.
    pub signature: [u8; 64],
    /// The protected header's bytes (the content of its bstr).
    pub protected: &'a [u8],
    /// The payload's bytes (the content of its bstr).
    pub payload: &'a [u8],
    /// Record kind.
    pub kind: Kind,
    /// Hashes of the records this one depends on.
    pub parents: Parents<'a>,
    /// Lamport clock: greater than every parent's.
    pub lamport: u64,
    /// Kernel time, milliseconds since the Unix epoch; never decreasing per signer.
    pub time: u64,
    /// Who the record is about (the agent's principal, or the authority for trust events).
    pub principal: &'a str,
    /// Session id; empty for kernel-scope records.
    pub session: &'a str,
    /// Sequence number per (signer, session), starting at 0.
    pub seq: u64,
    /// The kind-specific body.
    pub body: Body<'a>,
    /// Ignorable extension map (signed, not interpreted), as its encoded bytes.
    pub ext: Option<&'a [u8]>,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The commitment `SHA-256(salt ‖ bytes)` to an argument or output value.
pub fn commitment(salt: &[u8], bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(bytes);
    h.finalize().into()
}

fn name<'a>(r: &mut Reader<'a>, allow_empty: bool) -> Result<&'a str, ErrorCode> {
    let s = r.text()?;
    if s.len() > MAX_NAME_LEN || (!allow_empty && s.is_empty()) {
        return Err(ErrorCode::SchemaInvalidValue);
    }
    Ok(s)
}

impl<'a> Record<'a> {
    /// The record's COSE envelope.
    pub fn envelope(&self) -> Sign1<'a> {
        Sign1 {
            kid: self.kid,
            protected: self.protected,
            payload: self.payload,
            signature: self.signature,
        }
    }

    /// Decodes one record, strictly (rule 1). The hash is computed over `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, ErrorCode> {
        if bytes.len() > MAX_RECORD_SIZE {
            return Err(ErrorCode::RecordTooLarge);
        }
        let env = Sign1::decode(bytes)?;
        let hash = sha256(bytes);
        let mut record = decode_payload(env.payload, hash)?;
        record.kid = env.kid;
        record.signature = env.signature;
        record.protected = env.protected;
        Ok(record)
    }
}

fn decode_payload(payload: &[u8], hash: Hash) -> Result<Record<'_>, ErrorCode> {
    let mut r = Reader::new(payload);
    let mut f = body_fields::<10>(&mut r)?;
    r.finish()?;
    if req(&mut f, 0)?.uint()? != FORMAT_VERSION {
        return Err(ErrorCode::UnsupportedVersion);
    }
    let kind = Kind::from_u64(req(&mut f, 1)?.uint()?).ok_or(ErrorCode::UnknownKind)?;
    let parents = {
        let pr = req(&mut f, 2)?;
        let count = pr.array_len()?;
        if count > MAX_PARENTS {
            return Err(ErrorCode::SchemaInvalidValue);
        }
        let start = pr.position();
        let mut previous: Option<Hash> = None;
        for _ in 0..count {
            let h = pr.bytes_fixed::<32>()?;
            // Strictly ascending: one byte form, no parent named twice.
            if previous.is_some_and(|p| h <= p) {
                return Err(ErrorCode::SchemaInvalidValue);
            }
            previous = Some(h);
        }
        Parents {
            raw: pr.since(start),
            count,
        }
    };
    let lamport = req(&mut f, 3)?.uint()?;
    let time = req(&mut f, 4)?.uint()?;
    let principal = name(req(&mut f, 5)?, false)?;
    let session = name(req(&mut f, 6)?, true)?;
    let seq = req(&mut f, 7)?.uint()?;
    let body = decode_body(kind, req(&mut f, 8)?)?;
    let ext = match opt(&mut f, 9) {
        None => None,
        Some(er) => {
            // Ignorable: any deterministic map with text keys, signed but not interpreted.
            let whole = er.clone().any(0)?;
            let count = er.map_len()?;
            let mut order = KeyOrder::new();
            for _ in 0..count {
                let s = er.position();
                er.text()?;
                order.next(er.since(s))?;
                er.any(1)?;
            }
            Some(whole)
        }
    };
    Ok(Record {
        hash,
        kid: [0; 32],
        signature: [0; 64],
        protected: &[],
        payload,
        kind,
        parents,
        lamport,
        time,
        principal,
        session,
        seq,
        body,
        ext,
    })
}

/// Reads a map with unsigned keys below `N`, ascending, and returns a reader positioned
/// at each field's value (validated as deterministic CBOR on the way).
fn body_fields<'a, const N: usize>(r: &mut Reader<'a>) -> Result<[Option<Reader<'a>>; N], ErrorCode> {
    let n = r.map_len()?;
    let mut prev = None;
    let mut out: [Option<Reader<'a>>; N] = core::array::from_fn(|_| None);
    for _ in 0..n {
        let k = r.key(&mut prev)?;
        let slot = out
            .get_mut(usize::try_from(k).unwrap_or(usize::MAX))
            .ok_or(ErrorCode::SchemaUnknownField)?;
        *slot = Some(r.clone());
        r.any(0)?;
    }
    Ok(out)
}

fn req<'a, 'b>(f: &'b mut [Option<Reader<'a>>], i: usize) -> Result<&'b mut Reader<'a>, ErrorCode> {
    f.get_mut(i)
        .and_then(Option::as_mut)
        .ok_or(ErrorCode::SchemaMissingField)
}

fn opt<'a, 'b>(f: &'b mut [Option<Reader<'a>>], i: usize) -> Option<&'b mut Reader<'a>> {
    f.get_mut(i).and_then(Option::as_mut)
}

fn call_kind(r: &mut Reader<'_>) -> Result<CallKind, ErrorCode> {
    match r.uint()? {
        0 => Ok(CallKind::Json),
        1 => Ok(CallKind::Text),
        2 => Ok(CallKind::Bytes),
        _ => Err(ErrorCode::SchemaInvalidValue),
    }
}

fn decode_body<'a>(kind: Kind, r: &mut Reader<'a>) -> Result<Body<'a>, ErrorCode> {
    Ok(match kind {
        Kind::Intent => {
            let mut f = body_fields::<3>(r)?;
            Body::Intent {
                tool: name(req(&mut f, 0)?, false)?,
                call_kind: call_kind(req(&mut f, 1)?)?,
                args: req(&mut f, 2)?.bytes_fixed::<32>()?,
            }
        }
        Kind::Decision => {
            let mut f = body_fields::<4>(r)?;
            let verdict = match req(&mut f, 0)?.uint()? {
                0 => Verdict::Allow,
                1 => Verdict::Deny,
                2 => Verdict::Escalate,
                _ => return Err(ErrorCode::SchemaInvalidValue),
            };
            let reason = req(&mut f, 1)?.text()?;
            let usage = match verdict {
                Verdict::Allow => ReasonUse::Allow,
                Verdict::Deny => ReasonUse::Deny,
                Verdict::Escalate => ReasonUse::Escalate,
            };
            if !registry::reason_allowed(reason, usage) {
                return Err(ErrorCode::UnknownReasonCode);
            }
            let policy = req(&mut f, 2)?.bytes_fixed::<32>()?;
            let escalation = match (verdict, opt(&mut f, 3)) {
                (Verdict::Escalate, Some(er)) => Some(decode_escalation(er)?),
                (Verdict::Escalate, None) => return Err(ErrorCode::SchemaMissingField),
                (_, Some(_)) => return Err(ErrorCode::SchemaUnknownField),
                (_, None) => None,
            };
            Body::Decision {
                verdict,
                reason,
                policy,
                escalation,
            }
        }
        Kind::Approval => {
            let mut f = body_fields::<1>(r)?;
            Body::Approval {
                approvals: read_signature_list(req(&mut f, 0)?)?,
            }
        }
        Kind::Effect => {
            let mut f = body_fields::<7>(r)?;
            let status = match req(&mut f, 0)?.uint()? {
                0 => EffectStatus::Succeeded,
                1 => EffectStatus::Failed,
                2 => EffectStatus::Aborted,
                _ => return Err(ErrorCode::SchemaInvalidValue),
            };
            let meters = match opt(&mut f, 6) {
                None => None,
                Some(mr) => {
                    let count = mr.map_len()?;
                    if count == 0 || count > MAX_METERS {
                        return Err(ErrorCode::SchemaInvalidValue);
                    }
                    let start = mr.position();
                    let mut order = KeyOrder::new();
                    for _ in 0..count {
                        let kstart = mr.position();
                        let meter = mr.text()?;
                        if meter.is_empty() || meter.len() > 64 {
                            return Err(ErrorCode::SchemaInvalidValue);
                        }
                        order.next(mr.since(kstart))?;
                        mr.uint()?;
                    }
                    Some(Meters {
                        raw: mr.since(start),
                        count,
                    })
                }
            };
            Body::Effect {
                status,
                tool: name(req(&mut f, 1)?, false)?,
                call_kind: call_kind(req(&mut f, 2)?)?,
                args: req(&mut f, 3)?.bytes_fixed::<32>()?,
                output: req(&mut f, 4)?.bytes_fixed::<32>()?,
                executor: name(req(&mut f, 5)?, false)?,
                meters,
            }
        }
        Kind::Violation => {
            let mut f = body_fields::<3>(r)?;
            let code = req(&mut f, 0)?.text()?;
            if !registry::reason_allowed(code, ReasonUse::Violation) {
                return Err(ErrorCode::UnknownReasonCode);
            }
            let subject = opt(&mut f, 1).map(|s| s.bytes_fixed::<32>()).transpose()?;
            let detail = opt(&mut f, 2).map(|s| s.text()).transpose()?;
            if detail.is_some_and(|d| d.len() > MAX_DETAIL_LEN) {
                return Err(ErrorCode::SchemaInvalidValue);
            }
            Body::Violation { code, subject, detail }
        }
        Kind::TrustEvent => {
            let mut f = body_fields::<5>(r)?;
            let action = match req(&mut f, 0)?.uint()? {
                0 => TrustAction::Publish,
                1 => TrustAction::Rotate,
                2 => TrustAction::Revoke,
                _ => return Err(ErrorCode::SchemaInvalidValue),
            };
            let key = req(&mut f, 1)?.bytes_fixed::<32>()?;
            let roles = opt(&mut f, 2).map(read_roles).transpose()?;
            let new_key = opt(&mut f, 3).map(|s| s.bytes_fixed::<32>()).transpose()?;
            let cutoff = opt(&mut f, 4).map(|s| s.bytes_fixed::<32>()).transpose()?;
            // Which fields each action takes: exactly these, no others.
            let shape_ok = match action {
                TrustAction::Publish => roles.is_some() && new_key.is_none() && cutoff.is_none(),
                TrustAction::Rotate => roles.is_some() && new_key.is_some(),
                TrustAction::Revoke => roles.is_none() && new_key.is_none(),
            };
            if !shape_ok {
                return Err(ErrorCode::SchemaInvalidValue);
            }
            Body::TrustEvent {
                action,
                key,
                roles,
                new_key,
                cutoff,
            }
        }
        Kind::Policy => {
            let mut f = body_fields::<2>(r)?;
            Body::Policy {
                bundle: req(&mut f, 0)?.bytes_fixed::<32>()?,
                name: opt(&mut f, 1).map(|s| name(s, false)).transpose()?,
            }
        }
        Kind::Attestation => {
            let mut f = body_fields::<3>(r)?;
            let subtype = req(&mut f, 0)?.text()?;
            if !registry::ATTESTATION_TYPES.contains(&subtype) {
                return Err(ErrorCode::UnknownAttestationType);
            }
            let subject = req(&mut f, 1)?.bytes_fixed::<32>()?;
            let claims = match opt(&mut f, 2) {
                None => None,
                Some(cr) => {
                    if cr.peek_major() != Some(crate::cbor::MAJOR_MAP) {
                        return Err(ErrorCode::SchemaInvalidValue);
                    }
                    Some(cr.any(0)?)
                }
            };
            Body::Attestation {
                subtype,
                subject,
                claims,
            }
        }
        Kind::Checkpoint => {
            let mut f = body_fields::<3>(r)?;
            Body::Checkpoint {
                count: req(&mut f, 0)?.uint()?,
                root: req(&mut f, 1)?.bytes_fixed::<32>()?,
                cosignatures: opt(&mut f, 2).map(|s| read_signature_list(s)).transpose()?,
            }
        }
    })
}

fn read_roles<'a>(r: &mut Reader<'a>) -> Result<TextList<'a>, ErrorCode> {
    let count = r.array_len()?;
    if count == 0 || count > registry::MAX_ROLES {
        return Err(ErrorCode::SchemaInvalidValue);
    }
    let start = r.position();
    let mut order = KeyOrder::new();
    for _ in 0..count {
        let s = r.position();
        let role = r.text()?;
        if !registry::role_name_valid(role) {
            return Err(ErrorCode::SchemaInvalidValue);
        }
        // Canonical order of the encodings, each role once.
        order.next(r.since(s)).map_err(|_| ErrorCode::SchemaInvalidValue)?;
    }
    Ok(TextList {
        raw: r.since(start),
        count,
    })
}

fn decode_escalation<'a>(r: &mut Reader<'a>) -> Result<Escalation<'a>, ErrorCode> {
    let mut f = body_fields::<4>(r)?;
    let role = req(&mut f, 0)?.text()?;
    if !registry::role_name_valid(role) {
        return Err(ErrorCode::SchemaInvalidValue);
    }
    let quorum = req(&mut f, 1)?.uint()?;
    let not_before = req(&mut f, 2)?.uint()?;
    let expires = req(&mut f, 3)?.uint()?;
    if quorum == 0 || quorum > MAX_SIGNERS as u64 || expires < not_before {
        return Err(ErrorCode::SchemaInvalidValue);
    }
    Ok(Escalation {
        role,
        quorum,
        not_before,
        expires,
    })
}
