//! The streaming verifier: push records in order, get a [`Verified`] summary or the
//! first broken rule. Sans-IO: the caller frames records and owns all memory.
//!
//! Checks run in the order of spec/verification.md §"Order of checks", so that every
//! conforming implementation reports the same first error.

use sha2::{Digest, Sha256};

use crate::cbor::encode_head;
use crate::ed25519::PublicKey;
use crate::error::{ErrorCode, VerifyError};
use crate::merkle::MerkleAccumulator;
use crate::record::{Body, CallKind, Kind, Record, TrustAction, Verdict};
use crate::registry::{MAX_ROLES, MAX_ROLE_LEN, ROLE_KERNEL, ROLE_WITNESS};
use crate::tables::*;
use crate::Hash;

/// Domain-separation label approvers sign, with the ESCALATE's hash.
pub const APPROVAL_CONTEXT: &str = "HELM-APPROVAL-v1";
/// Domain-separation label witnesses sign, with a checkpoint's count and root.
pub const CHECKPOINT_CONTEXT: &str = "HELM-CHECKPOINT-v1";

/// The bytes an approver signs: CBOR `["HELM-APPROVAL-v1", escalate_hash]`.
pub fn approval_challenge(escalate: &Hash) -> [u8; 52] {
    let mut out = [0u8; 52];
    out[0] = 0x82;
    out[1] = 0x70; // text, 16 bytes
    out[2..18].copy_from_slice(APPROVAL_CONTEXT.as_bytes());
    out[18] = 0x58;
    out[19] = 0x20;
    out[20..52].copy_from_slice(escalate);
    out
}

/// The bytes a witness signs: CBOR `["HELM-CHECKPOINT-v1", count, root]`.
/// Returns the buffer and the number of bytes used.
pub fn checkpoint_challenge(count: u64, root: &Hash) -> ([u8; 64], usize) {
    let mut head = [0u8; 9];
    let n = encode_head(0, count, &mut head);
    // array(3), text(18) "HELM-CHECKPOINT-v1", uint count, bytes(32) root: at most 63 bytes.
    let parts: [&[u8]; 5] = [
        &[0x83, 0x72],
        CHECKPOINT_CONTEXT.as_bytes(),
        head.get(..n).unwrap_or(&[]),
        &[0x58, 0x20],
        root,
    ];
    let mut out = [0u8; 64];
    let mut len = 0usize;
    for (slot, byte) in out.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
        *slot = *byte;
        len = len.saturating_add(1);
    }
    (out, len)
}

/// A record's signature checked against the key its `kid` names, ahead of the
/// sequential rules: signature checks are independent of each other, so they can run on
/// every core while [`Verifier::push_checked`] applies the rules in order. Bound to the
/// record's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureCheck {
    hash: Hash,
    valid: bool,
}

impl SignatureCheck {
    /// Checks the signature of the record in `bytes` under the key its `kid` names, with
    /// the rules of spec/ed25519.md. Malformed records give a failed check (the verifier
    /// reports the decoding error itself).
    pub fn compute(bytes: &[u8]) -> SignatureCheck {
        SignatureCheck::compute_cached(bytes, &mut KeyCache::default())
    }

    /// Like [`SignatureCheck::compute`], reusing keys already decoded in `cache` (a
    /// stream has few signers; decoding a key costs about a fifth of a verification).
    pub fn compute_cached(bytes: &[u8], cache: &mut KeyCache) -> SignatureCheck {
        let hash = crate::record::sha256(bytes);
        let valid = bytes.len() <= crate::record::MAX_RECORD_SIZE
            && crate::cose::Sign1::decode(bytes).is_ok_and(|env| cache.get(&env.kid).is_some_and(|pk| env.verify(&pk)));
        SignatureCheck { hash, valid }
    }

    /// The record hash the check is bound to.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }
}

/// A few decoded public keys, most recent first, for [`SignatureCheck::compute_cached`].
#[derive(Clone, Debug, Default)]
pub struct KeyCache {
    keys: [Option<PublicKey>; 4],
}

impl KeyCache {
    /// The key for `kid`, decoded with the checks of spec/ed25519.md; `None` if it does
    /// not pass them.
    pub fn get(&mut self, kid: &[u8; 32]) -> Option<PublicKey> {
        if let Some(i) = self.keys.iter().position(|k| k.is_some_and(|k| k.as_bytes() == kid)) {
            let hit = self.keys.get(i).copied().flatten();
            if let Some(slice) = self.keys.get_mut(..=i) {
                slice.rotate_right(1);
            }
            return hit;
        }
        let pk = PublicKey::for_verification(kid).ok()?;
        self.keys.rotate_right(1);
        if let Some(first) = self.keys.first_mut() {
            *first = Some(pk);
        }
        Some(pk)
    }
}

/// Why a verifier could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// Trust anchor number `n` is not a canonical key of prime order.
    AnchorInvalid(usize),
    /// More anchors than the key table holds, or a table the verifier cannot use (empty).
    TablesTooSmall,
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Number of records.
    pub records: u64,
    /// Records per kind, indexed by `Kind as usize - 1`.
    pub per_kind: [u64; 9],
    /// CHECKPOINTs, and how many of them carried valid witness cosignatures.
    pub checkpoints: u64,
    /// See `checkpoints`.
    pub witnessed_checkpoints: u64,
    /// Earliest and latest kernel time of any record (ms).
    pub time_span: (u64, u64),
    /// RFC 9162 root over the hashes of all records, in order.
    pub root: Hash,
    /// Hash of the last record.
    pub head: Hash,
    /// ESCALATEs neither approved nor denied by the end.
    pub open_escalations: u64,
    /// ESCALATE decisions in all.
    pub escalations: u64,
    /// Distinct (signer, session) pairs.
    pub streams: u64,
    /// Keys published by trust events, and how many were rotated away or revoked.
    pub keys_published: u64,
    /// See `keys_published`.
    pub keys_retired: u64,
}

impl Verified {
    /// Records of one kind.
    pub fn count(&self, kind: Kind) -> u64 {
        self.per_kind.get((kind as usize).wrapping_sub(1)).copied().unwrap_or(0)
    }
}

/// Which records a partial pack selects (spec/evidencepack.md §9.1): a session and/or
/// kernel-time bounds (inclusive). A record is selected when it meets every given part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection<'a> {
    /// Records of this session only (`""` is the kernel scope).
    pub session: Option<&'a str>,
    /// Records with kernel time at or after this (ms).
    pub since: Option<u64>,
    /// Records with kernel time at or before this (ms).
    pub until: Option<u64>,
}

impl Selection<'_> {
    /// Whether `rec` is selected.
    pub fn matches(&self, rec: &Record<'_>) -> bool {
        self.session.is_none_or(|s| s == rec.session)
            && self.since.is_none_or(|t| rec.time >= t)
            && self.until.is_none_or(|t| rec.time <= t)
    }

    /// Whether nothing is selected by any criterion (such a selection is not a partial
    /// pack's).
    pub fn is_empty(&self) -> bool {
        self.session.is_none() && self.since.is_none() && self.until.is_none()
    }

    /// A selection by session alone: every record of that session before the checkpoint
    /// is carried, so its streams are checked for gaps (spec/verification.md §10, S8).
    pub fn session_only(&self) -> Option<&str> {
        self.session.filter(|_| self.since.is_none() && self.until.is_none())
    }
}

/// What a partial stream is proven against (spec/verification.md §10): the checkpoint's
/// position (its count) and root, and the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partial<'a> {
    /// T: the checkpoint's count, which is its position in the log.
    pub tree_size: u64,
    /// R: the checkpoint's root.
    pub tree_root: Hash,
    /// What the pack selects.
    pub selection: Selection<'a>,
}

/// Longest session name (spec/record-format.md, payload key 6).
const MAX_SESSION: usize = 256;

/// A partial stream's parameters, kept inline (the verifier borrows nothing else).
#[derive(Clone, Copy, Debug)]
struct PartialState {
    tree_size: u64,
    tree_root: Hash,
    session: [u8; MAX_SESSION],
    session_len: usize,
    has_session: bool,
    since: Option<u64>,
    until: Option<u64>,
}

impl PartialState {
    fn session(&self) -> Option<&[u8]> {
        self.has_session.then(|| self.session.get(..self.session_len)).flatten()
    }

    fn selects(&self, rec: &Record<'_>) -> bool {
        self.session().is_none_or(|s| s == rec.session.as_bytes())
            && self.since.is_none_or(|t| rec.time >= t)
            && self.until.is_none_or(|t| rec.time <= t)
    }

    /// A stream checked for gaps: the selected session's, for a selection by session alone.
    fn strict_session(&self, session: &str) -> bool {
        self.since.is_none() && self.until.is_none() && self.session() == Some(session.as_bytes())
    }
}

/// Where a record of a partial stream is (spec/verification.md §10).
#[derive(Clone, Copy, Debug)]
struct At {
    position: u64,
    /// For a CHECKPOINT below the tree size: its root is proven (by a consistency
    /// proof, or as the empty root at count 0).
    root_proven: bool,
}

/// The streaming verifier. See the crate docs for an example.
#[derive(Debug)]
pub struct Verifier<'t> {
    t: Tables<'t>,
    count: u64,
    intents: u32,
    escalations: u32,
    keys: usize,
    streams_used: usize,
    merkle: MerkleAccumulator,
    summary: Verified,
    failed: Option<VerifyError>,
    last_key: usize,
    /// E4 is left to the caller (see [`Verifier::new_deferring_effect_match`]).
    defer_effect_match: bool,
    /// The intent the last accepted INTENT, DECISION, APPROVAL or EFFECT belongs to.
    last_intent: Option<u32>,
    partial: Option<PartialState>,
    /// Partial streams: the position of the last accepted record.
    last_position: Option<u64>,
}

type Fail = (ErrorCode, &'static str);

fn h32(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-256 over an INTENT's or EFFECT's tool, call kind and argument commitment: an
/// EFFECT matches its INTENT (spec/verification.md E4) exactly when the two digests are
/// equal.
pub fn call_digest(tool: &str, call_kind: CallKind, args: &Hash) -> Hash {
    let len = (tool.len() as u32).to_be_bytes();
    h32(&[&len, tool.as_bytes(), &[call_kind as u8], args])
}

impl<'t> Verifier<'t> {
    /// A verifier trusting `anchors` (raw Ed25519 keys, supplied out of band), working
    /// in `tables`. Anchors may sign only TRUST_EVENTs.
    pub fn new(anchors: &[[u8; 32]], tables: Tables<'t>) -> Result<Verifier<'t>, SetupError> {
        Self::setup(anchors, tables, false)
    }

    /// A verifier that checks every rule except E4 (an EFFECT's tool, call kind and
    /// argument commitment equal to its INTENT's), and so needs no call digests
    /// (`tables.digests` may be empty): 32 bytes less per INTENT.
    ///
    /// **The caller MUST check E4 itself**, in a second pass over the same records: for
    /// every accepted EFFECT, [`Verifier::last_intent`] names (right after its push) the
    /// INTENT whose [`call_digest`] it must equal, and the first EFFECT that does not is
    /// the stream's `EFFECT_MISMATCH` (unless an earlier record failed). pack-format's
    /// two-pass verification of seekable packs does this.
    pub fn new_deferring_effect_match(anchors: &[[u8; 32]], tables: Tables<'t>) -> Result<Verifier<'t>, SetupError> {
        Self::setup(anchors, tables, true)
    }

    fn setup(anchors: &[[u8; 32]], tables: Tables<'t>, defer_effect_match: bool) -> Result<Verifier<'t>, SetupError> {
        let t = tables;
        if t.records.is_empty() || t.index.is_empty() || t.streams.is_empty() || anchors.len() > t.keys.len() {
            return Err(SetupError::TablesTooSmall);
        }
        t.index.iter_mut().for_each(|e| *e = 0);
        t.streams.iter_mut().for_each(|s| s.used = false);
        t.keys.iter_mut().for_each(|k| *k = KeySlot::default());
        for (i, (a, slot)) in anchors.iter().zip(t.keys.iter_mut()).enumerate() {
            let key = PublicKey::admit(a).map_err(|_| SetupError::AnchorInvalid(i))?;
            *slot = KeySlot {
                key: Some(key),
                anchor: true,
                ..KeySlot::default()
            };
        }
        Ok(Verifier {
            t,
            count: 0,
            intents: 0,
            escalations: 0,
            keys: anchors.len(),
            streams_used: 0,
            merkle: MerkleAccumulator::new(),
            summary: Verified {
                records: 0,
                per_kind: [0; 9],
                checkpoints: 0,
                witnessed_checkpoints: 0,
                time_span: (u64::MAX, 0),
                root: [0; 32],
                head: [0; 32],
                open_escalations: 0,
                escalations: 0,
                streams: 0,
                keys_published: 0,
                keys_retired: 0,
            },
            failed: None,
            last_key: 0,
            defer_effect_match,
            last_intent: None,
            partial: None,
            last_position: None,
        })
    }

    /// Makes this a verifier of a partial stream (spec/verification.md §10), before its
    /// first record: records are then pushed with [`Verifier::push_at`], each at its
    /// proven position. Fails (changing nothing) after a record was pushed, or for a
    /// session name longer than 256 bytes.
    pub fn set_partial(&mut self, p: &Partial<'_>) -> Result<(), SetupError> {
        if self.count != 0 || self.failed.is_some() {
            return Err(SetupError::TablesTooSmall);
        }
        let mut session = [0u8; MAX_SESSION];
        let name = p.selection.session.unwrap_or("").as_bytes();
        match session.get_mut(..name.len()) {
            Some(dst) => dst.copy_from_slice(name),
            None => return Err(SetupError::TablesTooSmall),
        }
        self.partial = Some(PartialState {
            tree_size: p.tree_size,
            tree_root: p.tree_root,
            session,
            session_len: name.len(),
            has_session: p.selection.session.is_some(),
            since: p.selection.since,
            until: p.selection.until,
        });
        Ok(())
    }

    /// Whether this verifies a partial stream.
    pub fn is_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Partial streams: the position of the last accepted record.
    pub fn last_position(&self) -> Option<u64> {
        self.last_position
    }

    /// Partial streams: the first accepted record (its place in the pack and its hash)
    /// that is not selected, not a TRUST_EVENT, not the checkpoint, and not named as a
    /// parent by an accepted DECISION, APPROVAL or EFFECT or as a cut-off by an accepted
    /// TRUST_EVENT (spec/evidencepack.md §9.4, `PACK_RECORD_UNSELECTED`).
    pub fn unselected(&self) -> Option<(u64, Hash)> {
        self.t
            .records
            .iter()
            .take(usize::try_from(self.count).unwrap_or(usize::MAX))
            .enumerate()
            .find(|(_, r)| r.flags & (SLOT_EXTRA | SLOT_NEEDED) == SLOT_EXTRA)
            .map(|(i, r)| (i as u64, r.hash))
    }

    /// The intent table position of the INTENT the last accepted record belongs to (an
    /// INTENT itself, a DECISION's, an APPROVAL's, or an EFFECT's permitted INTENT);
    /// `None` for other kinds. INTENTs are numbered from 0 in stream order.
    pub fn last_intent(&self) -> Option<u32> {
        self.last_intent
    }

    /// Number of records accepted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The key `kid` if the registry, as of the records so far, holds it active (not
    /// rotated or revoked, not an anchor) with `role`. Used to check signatures made
    /// outside the record stream, such as a pack manifest's.
    pub fn active_key(&self, kid: &[u8; 32], role: &str) -> Option<PublicKey> {
        self.t
            .keys
            .iter()
            .take(self.keys)
            .filter(|k| !k.revoked && !k.anchor && k.has_role(role))
            .find_map(|k| k.key.filter(|pk| pk.as_bytes() == kid))
    }

    /// The RFC 9162 root over all records accepted so far.
    pub fn root(&self) -> Hash {
        self.merkle.root()
    }

    /// Verifies the next record. On success returns the decoded record (borrowing
    /// `bytes`) so the caller can report on it. After the first error every later call
    /// returns that error: a verifier never resumes past a broken rule.
    pub fn push<'b>(&mut self, bytes: &'b [u8]) -> Result<Record<'b>, VerifyError> {
        self.push_checked(bytes, None)
    }

    /// Like [`Verifier::push`], with the signature already checked by
    /// [`SignatureCheck::compute`] (for example on another core). The check is bound to
    /// the record's hash: a check for other bytes is ignored and the signature verified
    /// here, so a wrong or stale check can never make a record pass.
    pub fn push_checked<'b>(
        &mut self,
        bytes: &'b [u8],
        check: Option<&SignatureCheck>,
    ) -> Result<Record<'b>, VerifyError> {
        self.push_inner(bytes, check, None)
    }

    /// Partial streams ([`Verifier::set_partial`]): verifies the next record at its
    /// `position` in the log, which the caller has proven (an inclusion proof to the
    /// tree root, spec/evidencepack.md §9.4) and which must be greater than the last
    /// one's. `root_proven` matters for a CHECKPOINT below the tree size only: whether
    /// its root is proven (a consistency proof to the tree root, or the empty root at
    /// count 0). On a verifier that is not partial this fails.
    pub fn push_at<'b>(
        &mut self,
        bytes: &'b [u8],
        position: u64,
        root_proven: bool,
        check: Option<&SignatureCheck>,
    ) -> Result<Record<'b>, VerifyError> {
        self.push_inner(bytes, check, Some(At { position, root_proven }))
    }

    fn push_inner<'b>(
        &mut self,
        bytes: &'b [u8],
        check: Option<&SignatureCheck>,
        at: Option<At>,
    ) -> Result<Record<'b>, VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let index = self.count;
        let misuse = match (self.partial.is_some(), at) {
            (true, None) => Some("a partial verifier needs each record's position (push_at)"),
            (false, Some(_)) => Some("push_at on a verifier that is not partial (set_partial)"),
            (true, Some(at)) if self.last_position.is_some_and(|p| at.position <= p) => {
                Some("positions of a partial stream must ascend")
            }
            _ => None,
        };
        if let Some(detail) = misuse {
            // A caller error, not a verdict on the record: fail closed all the same.
            let e = VerifyError::new(ErrorCode::CapacityExceeded, index, None, detail);
            self.failed = Some(e.clone());
            return Err(e);
        }
        let result = Record::decode(bytes)
            .map_err(|code| {
                VerifyError::new(
                    code,
                    index,
                    Some(crate::record::sha256(bytes)),
                    "record does not decode",
                )
            })
            .and_then(|rec| {
                let pre = check.filter(|c| c.hash == rec.hash).map(|c| c.valid);
                self.check_and_apply(&rec, pre, at).map(|()| rec)
            });
        match result {
            Ok(rec) => Ok(rec),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Ends verification: the summary, or the first error.
    pub fn finish(self) -> Result<Verified, VerifyError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.count == 0 {
            return Err(VerifyError::new(ErrorCode::EmptyStream, 0, None, "no records"));
        }
        let mut s = self.summary;
        s.records = self.count;
        s.root = self.merkle.root();
        s.escalations = u64::from(self.escalations);
        s.streams = self.streams_used as u64;
        s.open_escalations = self
            .t
            .escalations
            .iter()
            .take(self.escalations as usize)
            .filter(|e| !e.resolved)
            .count() as u64;
        Ok(s)
    }

    fn err(&self, rec: &Record<'_>, (code, detail): Fail) -> VerifyError {
        VerifyError::new(code, self.count, Some(rec.hash), detail)
    }

    fn find_key(&mut self, kid: &[u8; 32]) -> Option<usize> {
        if self
            .t
            .keys
            .get(self.last_key)
            .and_then(|k| k.key)
            .is_some_and(|k| k.as_bytes() == kid)
        {
            return Some(self.last_key);
        }
        let i = self
            .t
            .keys
            .iter()
            .take(self.keys)
            .position(|k| k.key.is_some_and(|k| k.as_bytes() == kid))?;
        self.last_key = i;
        Some(i)
    }

    fn lookup(&self, hash: &Hash) -> Option<u32> {
        let len = self.t.index.len();
        let mut b = bucket(hash, len);
        for _ in 0..len {
            let e = *self.t.index.get(b)?;
            if e == 0 {
                return None;
            }
            let pos = e.wrapping_sub(1);
            if self.t.records.get(pos as usize).is_some_and(|r| r.hash == *hash) {
                return Some(pos);
            }
            b = next_bucket(b, len);
        }
        None
    }

    fn slot(&self, pos: u32) -> Option<&RecordSlot> {
        self.t.records.get(pos as usize)
    }

    fn mark_needed(&mut self, pos: u32) {
        if let Some(s) = self.t.records.get_mut(pos as usize) {
            s.flags |= SLOT_NEEDED;
        }
    }

    fn capacity(&self, rec: &Record<'_>, what: &'static str) -> VerifyError {
        self.err(rec, (ErrorCode::CapacityExceeded, what))
    }

    fn check_and_apply(
        &mut self,
        rec: &Record<'_>,
        signature_valid: Option<bool>,
        at: Option<At>,
    ) -> Result<(), VerifyError> {
        let index = self.count;
        let pos = u32::try_from(index)
            .ok()
            .filter(|p| (*p as usize) < self.t.records.len());
        let Some(pos) = pos else {
            return Err(self.capacity(rec, "record table is full"));
        };
        // The index keeps at least one eighth free so that probes stay short and end.
        if (index as usize).saturating_add(1).saturating_mul(8) > self.t.index.len().saturating_mul(7) {
            return Err(self.capacity(rec, "record index is full"));
        }

        // Rule 2: signer, signature, revocation, role.
        let Some(ki) = self.find_key(&rec.kid) else {
            return Err(self.err(rec, (ErrorCode::KeyUnknown, "signing key is not in the trust registry")));
        };
        let key = self.t.keys.get(ki).copied().unwrap_or_default();
        let pk = key
            .key
            .ok_or_else(|| self.err(rec, (ErrorCode::KeyUnknown, "signing key slot is empty")))?;
        if !signature_valid.unwrap_or_else(|| rec.envelope().verify(&pk)) {
            return Err(self.err(rec, (ErrorCode::SignatureInvalid, "Ed25519 signature does not verify")));
        }
        if key.revoked {
            return Err(self.err(
                rec,
                (
                    ErrorCode::KeyRevoked,
                    "record signed by a key after its cut-off checkpoint",
                ),
            ));
        }
        let role_ok = if rec.kind == Kind::TrustEvent {
            key.anchor
        } else {
            !key.anchor && key.has_role(ROLE_KERNEL)
        };
        if !role_ok {
            return Err(self.err(
                rec,
                (
                    ErrorCode::RoleNotPermitted,
                    "TRUST_EVENTs need a trust anchor; other records need the kernel role",
                ),
            ));
        }

        // Rule 3: no duplicates; parents earlier with smaller Lamport clocks; time monotonic.
        if self.lookup(&rec.hash).is_some() {
            return Err(self.err(rec, (ErrorCode::DuplicateRecord, "the same record appears earlier")));
        }
        // Partial streams: only a DECISION's, APPROVAL's or EFFECT's parents must all be
        // carried; other kinds' absent parents are not judged (spec/verification.md §10).
        let lifecycle = matches!(rec.kind, Kind::Decision | Kind::Approval | Kind::Effect);
        for parent in rec.parents.iter() {
            let found = self.lookup(&parent);
            if let (Some(p), true, true) = (found, self.partial.is_some(), lifecycle) {
                self.mark_needed(p);
            }
            if found.is_none() && self.partial.is_some() && !lifecycle {
                continue;
            }
            let Some(p) = found.and_then(|p| self.slot(p)) else {
                return Err(self
                    .err(
                        rec,
                        (ErrorCode::ParentMissing, "parent does not appear earlier in the stream"),
                    )
                    .related(parent));
            };
            if rec.lamport <= p.lamport() {
                return Err(self
                    .err(
                        rec,
                        (
                            ErrorCode::LamportNotIncreasing,
                            "Lamport clock not greater than a parent's",
                        ),
                    )
                    .related(parent)
                    .numbers(p.lamport().saturating_add(1), rec.lamport));
            }
        }
        if key.last_signed != 0 && rec.time < key.last_time {
            return Err(self
                .err(
                    rec,
                    (ErrorCode::TimeRegression, "kernel time went backwards for this signer"),
                )
                .numbers(key.last_time, rec.time));
        }

        // Rule 4: per (signer, session) sequence numbers go up by exactly one.
        let stream_id = h32(&[
            &rec.kid,
            &(rec.session.len() as u32).to_be_bytes(),
            rec.session.as_bytes(),
        ]);
        let si = self
            .stream_slot(&stream_id)
            .ok_or_else(|| self.capacity(rec, "stream table is full"))?;
        let stream = self.t.streams.get(si).copied().unwrap_or_default();
        let expected = if stream.used { stream.next_seq() } else { 0 };
        // Partial streams: a gap is an error only in a stream whose records are all carried.
        let strict = match &self.partial {
            None => true,
            Some(p) => key.anchor || p.strict_session(rec.session),
        };
        if rec.seq > expected && strict {
            return Err(self
                .err(
                    rec,
                    (
                        ErrorCode::SequenceGap,
                        "sequence number skips ahead: a record was dropped",
                    ),
                )
                .numbers(expected, rec.seq));
        }
        if rec.seq < expected {
            let mut e = self
                .err(
                    rec,
                    (
                        ErrorCode::SequenceEquivocation,
                        "sequence number already used by this signer and session",
                    ),
                )
                .numbers(expected, rec.seq);
            if rec.seq.checked_add(1) == Some(expected) {
                if let Some(twin) = self.slot(stream.last()) {
                    e = e.related(twin.hash);
                }
            }
            return Err(e);
        }

        // Rules 5, 2 (trust events) and 6: kind-specific checks; returns the slot link.
        let (link, mut flags) = self.check_kind(rec, pos, at)?;

        // Everything holds: remember the record.
        if let (Some(p), Some(at)) = (&self.partial, at) {
            if !p.selects(rec) && rec.kind != Kind::TrustEvent && at.position != p.tree_size {
                flags |= SLOT_EXTRA;
            }
            self.last_position = Some(at.position);
        }
        self.last_intent = match rec.kind {
            Kind::Intent | Kind::Decision | Kind::Approval | Kind::Effect => Some(link),
            _ => None,
        };
        if let Some(s) = self.t.records.get_mut(pos as usize) {
            *s = RecordSlot::new(rec.hash, rec.lamport, link, rec.kind as u8, flags);
        }
        let len = self.t.index.len();
        let mut b = bucket(&rec.hash, len);
        loop {
            match self.t.index.get_mut(b) {
                Some(e) if *e == 0 => {
                    *e = pos.saturating_add(1);
                    break;
                }
                Some(_) => b = next_bucket(b, len),
                None => return Err(self.capacity(rec, "record index is full")),
            }
        }
        if !stream.used {
            self.streams_used = self.streams_used.saturating_add(1);
        }
        if let Some(s) = self.t.streams.get_mut(si) {
            *s = StreamSlot::new(stream_id, rec.seq.saturating_add(1), pos);
        }
        if let Some(k) = self.t.keys.get_mut(ki) {
            k.last_signed = index.saturating_add(1);
            k.last_time = rec.time;
        }
        if !self.merkle.push(&rec.hash) {
            return Err(self.capacity(rec, "Merkle tree is full"));
        }
        let s = &mut self.summary;
        if let Some(c) = s.per_kind.get_mut((rec.kind as usize).wrapping_sub(1)) {
            *c = c.saturating_add(1);
        }
        s.time_span = (s.time_span.0.min(rec.time), s.time_span.1.max(rec.time));
        s.head = rec.hash;
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// The stream slot for `id`: its existing slot, or a free one while the table keeps
    /// one eighth free (so that probes stay short and end).
    fn stream_slot(&self, id: &Hash) -> Option<usize> {
        let len = self.t.streams.len();
        let mut b = bucket(id, len);
        for _ in 0..len {
            let s = self.t.streams.get(b)?;
            if !s.used {
                return (self.streams_used.saturating_add(1).saturating_mul(8) <= len.saturating_mul(7)).then_some(b);
            }
            if s.id == *id {
                return Some(b);
            }
            b = next_bucket(b, len);
        }
        None
    }

    fn check_kind(&mut self, rec: &Record<'_>, pos: u32, at: Option<At>) -> Result<(u32, u8), VerifyError> {
        match rec.body {
            Body::Intent { tool, call_kind, args } => {
                let i = self.intents;
                match self.t.intents.get_mut(i as usize) {
                    Some(s) => *s = IntentSlot::default(),
                    None => return Err(self.capacity(rec, "intent table is full")),
                }
                if !self.defer_effect_match {
                    match self.t.digests.get_mut(i as usize) {
                        Some(d) => *d = call_digest(tool, call_kind, &args),
                        None => return Err(self.capacity(rec, "call digest table is full")),
                    }
                }
                self.intents = self.intents.saturating_add(1);
                Ok((i, 0))
            }
            Body::Decision {
                verdict, escalation, ..
            } => self.check_decision(rec, verdict, escalation),
            Body::Approval { approvals } => self.check_approval(rec, approvals),
            Body::Effect {
                tool, call_kind, args, ..
            } => self.check_effect(rec, call_digest(tool, call_kind, &args)),
            Body::Violation { .. } | Body::Policy { .. } | Body::Attestation { .. } => Ok((0, 0)),
            Body::TrustEvent {
                action,
                key,
                roles,
                new_key,
                cutoff,
            } => self
                .check_trust_event(rec, action, &key, roles, new_key, cutoff)
                .map(|()| (0, 0)),
            Body::Checkpoint {
                count,
                root,
                cosignatures,
            } => {
                // K1: the number of records before it is its position (in a partial
                // stream, the proven position in the log).
                let position = at.map_or(self.count, |a| a.position);
                if count != position {
                    return Err(self
                        .err(
                            rec,
                            (
                                ErrorCode::CheckpointCount,
                                "count is not the number of records before it",
                            ),
                        )
                        .numbers(position, count));
                }
                // K2: the root, computed here, or in a partial stream proven against the
                // tree root (the checkpoint's own root is the tree root).
                let root_ok = match (&self.partial, at) {
                    (Some(p), Some(a)) if a.position == p.tree_size => root == p.tree_root,
                    (Some(_), Some(a)) => a.root_proven,
                    _ => root == self.merkle.root(),
                };
                if !root_ok {
                    return Err(self.err(
                        rec,
                        (
                            ErrorCode::CheckpointRoot,
                            "root is not the Merkle root of the records before it",
                        ),
                    ));
                }
                if let Some(list) = cosignatures {
                    let (msg, n) = checkpoint_challenge(count, &root);
                    let msg = msg.get(..n).unwrap_or(&[]);
                    for (wkey, sig) in list.iter() {
                        let ok = self
                            .find_key(&wkey)
                            .and_then(|i| self.t.keys.get(i))
                            .filter(|k| !k.revoked && !k.anchor && k.has_role(ROLE_WITNESS))
                            .and_then(|k| k.key)
                            .is_some_and(|pk| pk.verify(msg, &sig));
                        if !ok {
                            return Err(self.err(
                                rec,
                                (
                                    ErrorCode::WitnessInvalid,
                                    "cosignature by a key without an active witness role, or invalid",
                                ),
                            ));
                        }
                    }
                    self.summary.witnessed_checkpoints = self.summary.witnessed_checkpoints.saturating_add(1);
                }
                self.summary.checkpoints = self.summary.checkpoints.saturating_add(1);
                Ok((pos, 0))
            }
        }
    }

    /// Rule 5 for DECISIONs: one INTENT parent; at most one final decision per INTENT;
    /// an ESCALATE is resolved once (APPROVAL, or a DENY naming it).
    fn check_decision(
        &mut self,
        rec: &Record<'_>,
        verdict: Verdict,
        escalation: Option<crate::record::Escalation<'_>>,
    ) -> Result<(u32, u8), VerifyError> {
        let mut intent: Option<u32> = None;
        let mut intents = 0u32;
        let mut escalate: Option<u32> = None;
        for parent in rec.parents.iter() {
            let Some(p) = self.lookup(&parent).and_then(|p| self.slot(p).copied()) else {
                continue;
            };
            match Kind::from_u64(u64::from(p.kind)) {
                Some(Kind::Intent) => {
                    intents = intents.saturating_add(1);
                    intent = Some(p.link());
                }
                Some(Kind::Decision)
                    if p.verdict() == Verdict::Escalate as u8 && verdict == Verdict::Deny && escalate.is_none() =>
                {
                    escalate = Some(p.link());
                }
                Some(Kind::Policy) => {}
                _ => {
                    return Err(self
                        .err(
                            rec,
                            (
                                ErrorCode::ParentKindNotAllowed,
                                "a DECISION's parents are its INTENT, the ESCALATE a DENY resolves, and POLICY records",
                            ),
                        )
                        .related(parent))
                }
            }
        }
        let (Some(ii), 1) = (intent, intents) else {
            return Err(self.err(
                rec,
                (
                    ErrorCode::DecisionIntentParent,
                    "a DECISION needs exactly one INTENT parent",
                ),
            ));
        };
        let islot = self.t.intents.get(ii as usize).copied().unwrap_or_default();
        if let Some(ei) = escalate {
            // A DENY resolving an ESCALATE: the same intent, still open.
            if ei != ii {
                return Err(self.err(
                    rec,
                    (
                        ErrorCode::EscalationAlreadyResolved,
                        "the ESCALATE parent belongs to another INTENT",
                    ),
                ));
            }
            let open = islot.flags & INTENT_ESCALATED != 0 && islot.flags & (INTENT_APPROVED | INTENT_FINAL) == 0;
            if !open {
                return Err(self.err(
                    rec,
                    (
                        ErrorCode::EscalationAlreadyResolved,
                        "the ESCALATE was already approved or denied",
                    ),
                ));
            }
        } else if islot.flags & (INTENT_FINAL | INTENT_ESCALATED) != 0 {
            return Err(self.err(
                rec,
                (
                    ErrorCode::IntentAlreadyDecided,
                    "the INTENT already has a final decision or an ESCALATE (resolve it with a DENY naming it)",
                ),
            ));
        }
        let mut flags = islot.flags;
        match verdict {
            Verdict::Allow => flags |= INTENT_FINAL | INTENT_ALLOWED,
            Verdict::Deny => {
                flags |= INTENT_FINAL;
                if let Some(e) = self
                    .t
                    .escalations
                    .get_mut((islot.escalation() as usize).wrapping_sub(1))
                {
                    e.resolved = true;
                }
            }
            Verdict::Escalate => {
                let Some(terms) = escalation else {
                    return Err(self.err(rec, (ErrorCode::SchemaMissingField, "ESCALATE without terms")));
                };
                let ei = self.escalations;
                let mut role = [0u8; MAX_ROLE_LEN];
                let rb = terms.role.as_bytes();
                if let Some(d) = role.get_mut(..rb.len()) {
                    d.copy_from_slice(rb);
                }
                // The quorum is 1-16 (checked when the DECISION decoded).
                let quorum = u8::try_from(terms.quorum).unwrap_or(u8::MAX);
                let slot = EscalationSlot::new(terms.not_before, terms.expires, quorum, role, rb.len() as u8);
                match self.t.escalations.get_mut(ei as usize) {
                    Some(s) => *s = slot,
                    None => return Err(self.capacity(rec, "escalation table is full")),
                }
                self.escalations = self.escalations.saturating_add(1);
                flags |= INTENT_ESCALATED;
                if let Some(s) = self.t.intents.get_mut(ii as usize) {
                    s.set_escalation(ei.saturating_add(1));
                }
            }
        }
        if let Some(s) = self.t.intents.get_mut(ii as usize) {
            s.flags = flags;
        }
        Ok((ii, verdict as u8))
    }

    fn check_approval(
        &mut self,
        rec: &Record<'_>,
        approvals: crate::record::SignatureList<'_>,
    ) -> Result<(u32, u8), VerifyError> {
        let mut parents = rec.parents.iter();
        let (Some(parent), None) = (parents.next(), parents.next()) else {
            return Err(self.err(
                rec,
                (
                    ErrorCode::ApprovalInvalid,
                    "an APPROVAL has exactly one parent, its ESCALATE",
                ),
            ));
        };
        let p = self
            .lookup(&parent)
            .and_then(|p| self.slot(p).copied())
            .unwrap_or_default();
        if p.kind != Kind::Decision as u8 || p.verdict() != Verdict::Escalate as u8 {
            return Err(self
                .err(rec, (ErrorCode::ApprovalInvalid, "the parent is not an ESCALATE"))
                .related(parent));
        }
        let ii = p.link();
        let islot = self.t.intents.get(ii as usize).copied().unwrap_or_default();
        if islot.flags & (INTENT_APPROVED | INTENT_FINAL) != 0 {
            return Err(self.err(
                rec,
                (
                    ErrorCode::EscalationAlreadyResolved,
                    "the ESCALATE was already approved or denied",
                ),
            ));
        }
        let esc = self
            .t
            .escalations
            .get((islot.escalation() as usize).wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        if rec.time < esc.not_before() {
            return Err(self
                .err(rec, (ErrorCode::ApprovalTimelock, "approved before the timelock ended"))
                .numbers(esc.not_before(), rec.time));
        }
        if rec.time > esc.expires() {
            return Err(self
                .err(rec, (ErrorCode::ApprovalExpired, "approved after the ESCALATE expired"))
                .numbers(esc.expires(), rec.time));
        }
        let role = core::str::from_utf8(esc.role.get(..usize::from(esc.role_len)).unwrap_or(&[])).unwrap_or("");
        let challenge = approval_challenge(&parent);
        for (akey, sig) in approvals.iter() {
            let k = self.find_key(&akey).and_then(|i| self.t.keys.get(i).copied());
            let Some(k) = k.filter(|k| !k.revoked && !k.anchor && k.has_role(role)) else {
                return Err(self.err(
                    rec,
                    (
                        ErrorCode::ApprovalRole,
                        "approver key is not active or lacks the ESCALATE's role",
                    ),
                ));
            };
            if !k.key.is_some_and(|pk| pk.verify(&challenge, &sig)) {
                return Err(self.err(
                    rec,
                    (
                        ErrorCode::ApprovalInvalid,
                        "an approver's signature over the challenge does not verify",
                    ),
                ));
            }
        }
        let n = approvals.len() as u64;
        if n < u64::from(esc.quorum) {
            return Err(self
                .err(
                    rec,
                    (ErrorCode::ApprovalQuorum, "fewer distinct approvers than the quorum"),
                )
                .numbers(u64::from(esc.quorum), n));
        }
        if let Some(s) = self.t.intents.get_mut(ii as usize) {
            s.flags |= INTENT_APPROVED;
        }
        if let Some(e) = self
            .t
            .escalations
            .get_mut((islot.escalation() as usize).wrapping_sub(1))
        {
            e.resolved = true;
        }
        Ok((ii, 0))
    }

    fn check_effect(&mut self, rec: &Record<'_>, digest: Hash) -> Result<(u32, u8), VerifyError> {
        let (mut allow, mut escalate, mut approval) = (None::<u32>, None::<u32>, None::<u32>);
        let (mut allows, mut escalates, mut approvals) = (0u32, 0u32, 0u32);
        for parent in rec.parents.iter() {
            let Some(p) = self.lookup(&parent).and_then(|p| self.slot(p).copied()) else {
                continue;
            };
            match Kind::from_u64(u64::from(p.kind)) {
                Some(Kind::Decision) if p.verdict() == Verdict::Deny as u8 => {
                    return Err(self
                        .err(rec, (ErrorCode::EffectForDeny, "an EFFECT names a DENY as its permit"))
                        .related(parent));
                }
                Some(Kind::Decision) if p.verdict() == Verdict::Allow as u8 => {
                    allows = allows.saturating_add(1);
                    allow = Some(p.link());
                }
                Some(Kind::Decision) => {
                    escalates = escalates.saturating_add(1);
                    escalate = Some(p.link());
                }
                Some(Kind::Approval) => {
                    approvals = approvals.saturating_add(1);
                    approval = Some(p.link());
                }
                Some(Kind::Attestation) => {}
                _ => {
                    return Err(self
                        .err(
                            rec,
                            (
                                ErrorCode::ParentKindNotAllowed,
                                "an EFFECT's parents are its permit and ATTESTATIONs",
                            ),
                        )
                        .related(parent))
                }
            }
        }
        let ii = match (allows, escalates, approvals) {
            (1, 0, 0) => allow,
            (0, 1, 1) if escalate == approval => escalate,
            _ => None,
        };
        let Some(ii) = ii else {
            return Err(self.err(
                rec,
                (
                    ErrorCode::EffectWithoutPermit,
                    "parents are not one ALLOW, or one ESCALATE with its APPROVAL",
                ),
            ));
        };
        let islot = self.t.intents.get(ii as usize).copied().unwrap_or_default();
        if islot.flags & INTENT_EFFECT != 0 {
            return Err(self.err(rec, (ErrorCode::PermitAlreadyUsed, "the permit already has an EFFECT")));
        }
        let mismatch = !self.defer_effect_match && self.t.digests.get(ii as usize).is_none_or(|d| *d != digest);
        if mismatch {
            return Err(self.err(
                rec,
                (
                    ErrorCode::EffectMismatch,
                    "tool, call kind or argument commitment differ from the permitted INTENT",
                ),
            ));
        }
        if let Some(s) = self.t.intents.get_mut(ii as usize) {
            s.flags |= INTENT_EFFECT;
        }
        Ok((ii, 0))
    }

    fn check_trust_event(
        &mut self,
        rec: &Record<'_>,
        action: TrustAction,
        key: &[u8; 32],
        roles: Option<crate::record::TextList<'_>>,
        new_key: Option<[u8; 32]>,
        cutoff: Option<Hash>,
    ) -> Result<(), VerifyError> {
        let invalid = |s: &Self, d| Err(s.err(rec, (ErrorCode::TrustEventInvalid, d)));
        let existing = self
            .t
            .keys
            .iter()
            .take(self.keys)
            .position(|k| k.key.is_some_and(|k| k.as_bytes() == key));
        let retire = match action {
            TrustAction::Publish => None,
            TrustAction::Rotate | TrustAction::Revoke => {
                let Some(i) = existing else {
                    return invalid(self, "rotates or revokes a key that was never published");
                };
                let k = self.t.keys.get(i).copied().unwrap_or_default();
                if k.anchor || k.revoked {
                    return invalid(
                        self,
                        "trust anchors cannot be rotated or revoked by records; revoked keys stay revoked",
                    );
                }
                // The cut-off: the last CHECKPOINT up to which the key's records stand.
                let cut = match cutoff {
                    None => 0,
                    Some(c) => {
                        let cp = self.lookup(&c).and_then(|p| self.slot(p).copied());
                        match cp {
                            Some(s) if s.kind == Kind::Checkpoint as u8 => {
                                if self.partial.is_some() {
                                    if let Some(p) = self.lookup(&c) {
                                        self.mark_needed(p);
                                    }
                                }
                                u64::from(s.link()) + 1
                            }
                            _ => return invalid(self, "cut-off is not an earlier CHECKPOINT"),
                        }
                    }
                };
                // `last_signed` and `cut` are 1 + stream positions (0 = none).
                if k.last_signed > cut {
                    let last = self
                        .slot(k.last_signed.saturating_sub(1) as u32)
                        .map(|s| s.hash)
                        .unwrap_or_default();
                    return Err(self
                        .err(
                            rec,
                            (
                                ErrorCode::RevocationCutoffViolated,
                                "the key signed records after the cut-off checkpoint",
                            ),
                        )
                        .related(last));
                }
                Some(i)
            }
        };
        let publish = match action {
            TrustAction::Publish => Some(*key),
            TrustAction::Rotate => new_key,
            TrustAction::Revoke => None,
        };
        if let Some(nk) = publish {
            if self
                .t
                .keys
                .iter()
                .take(self.keys)
                .any(|k| k.key.is_some_and(|k| *k.as_bytes() == nk))
            {
                return invalid(self, "publishes a key that is already in the registry");
            }
            let Ok(pk) = PublicKey::admit(&nk) else {
                return Err(self.err(
                    rec,
                    (
                        ErrorCode::TrustKeyInvalid,
                        "key is not a canonical point of prime order",
                    ),
                ));
            };
            let mut slot = KeySlot {
                key: Some(pk),
                ..KeySlot::default()
            };
            for (i, role) in roles.iter().flat_map(|r| r.iter()).take(MAX_ROLES).enumerate() {
                if let (Some(d), Some(l)) = (slot.roles.get_mut(i), slot.role_lens.get_mut(i)) {
                    if let Some(d) = d.get_mut(..role.len()) {
                        d.copy_from_slice(role.as_bytes());
                    }
                    *l = role.len() as u8;
                }
            }
            match self.t.keys.get_mut(self.keys) {
                Some(s) => *s = slot,
                None => return Err(self.capacity(rec, "key table is full")),
            }
            self.keys = self.keys.saturating_add(1);
            self.summary.keys_published = self.summary.keys_published.saturating_add(1);
        }
        if let Some(i) = retire {
            if let Some(k) = self.t.keys.get_mut(i) {
                k.revoked = true;
            }
            self.summary.keys_retired = self.summary.keys_retired.saturating_add(1);
        }
        Ok(())
    }
}

fn next_bucket(b: usize, len: usize) -> usize {
    let n = b.saturating_add(1);
    if n >= len {
        0
    } else {
        n
    }
}
