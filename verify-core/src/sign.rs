//! Building and signing records (feature `sign`): for the kernel and the vector generator.
//!
//! The writer emits only deterministic CBOR, so anything built here decodes; the
//! generator writes deliberately broken bytes by other means.

use alloc::string::String;
use alloc::vec::Vec;

use ed25519_dalek::{Signer as _, SigningKey};

use crate::cose::{COSE_ALG_EDDSA, COSE_SIGN1_TAG};
use crate::record::{CallKind, EffectStatus, Escalation, Kind, TrustAction, Verdict, FORMAT_VERSION};
use crate::Hash;

/// An Ed25519 signing key.
#[derive(Clone, Debug)]
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// The key derived from a 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The raw public key, which is also the `kid` of records it signs.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

pub use crate::cbor::Writer as CborWriter;

/// Encodes a list of (key, signature) entries, sorted by key as the format requires.
fn key_sig_list(w: &mut CborWriter, entries: &[([u8; 32], [u8; 64])]) {
    let mut sorted: Vec<&([u8; 32], [u8; 64])> = entries.iter().collect();
    sorted.sort_by_key(|e| e.0);
    w.array(sorted.len());
    for (k, s) in sorted {
        w.map(2).uint(0).bytes(k).uint(1).bytes(s);
    }
}

/// Encoders for each kind's body (the map under payload key 8).
pub mod body {
    use super::*;

    /// INTENT: tool, call kind, argument commitment.
    pub fn intent(tool: &str, call_kind: CallKind, args: &Hash) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(3)
            .uint(0)
            .text(tool)
            .uint(1)
            .uint(call_kind as u64)
            .uint(2)
            .bytes(args);
        w.into_bytes()
    }

    /// DECISION: verdict, reason code, policy hash, and the terms of an ESCALATE.
    pub fn decision(verdict: Verdict, reason: &str, policy: &Hash, escalation: Option<&Escalation<'_>>) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(if escalation.is_some() { 4 } else { 3 });
        w.uint(0)
            .uint(verdict as u64)
            .uint(1)
            .text(reason)
            .uint(2)
            .bytes(policy);
        if let Some(e) = escalation {
            w.uint(3)
                .map(4)
                .uint(0)
                .text(e.role)
                .uint(1)
                .uint(e.quorum)
                .uint(2)
                .uint(e.not_before)
                .uint(3)
                .uint(e.expires);
        }
        w.into_bytes()
    }

    /// APPROVAL: each approver's key and signature over the challenge.
    pub fn approval(approvals: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(1).uint(0);
        key_sig_list(&mut w, approvals);
        w.into_bytes()
    }

    /// EFFECT fields, as in spec/record-format.md.
    #[derive(Clone, Debug)]
    #[allow(missing_docs, reason = "fields are the EFFECT body fields of the spec")]
    pub struct Effect<'a> {
        pub status: EffectStatus,
        pub tool: &'a str,
        pub call_kind: CallKind,
        pub args: Hash,
        pub output: Hash,
        pub executor: &'a str,
        /// (name, value) pairs; sorted canonically here.
        pub meters: &'a [(&'a str, u64)],
    }

    /// EFFECT: status, tool, call kind, argument and output commitments, executor, meters.
    pub fn effect(e: &Effect<'_>) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(if e.meters.is_empty() { 6 } else { 7 });
        w.uint(0)
            .uint(e.status as u64)
            .uint(1)
            .text(e.tool)
            .uint(2)
            .uint(e.call_kind as u64);
        w.uint(3)
            .bytes(&e.args)
            .uint(4)
            .bytes(&e.output)
            .uint(5)
            .text(e.executor);
        if !e.meters.is_empty() {
            let mut m: Vec<&(&str, u64)> = e.meters.iter().collect();
            // Canonical order of text keys: shorter first, then bytewise.
            m.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
            w.uint(6).map(m.len());
            for (k, v) in m {
                w.text(k).uint(*v);
            }
        }
        w.into_bytes()
    }

    /// VIOLATION: reason code, optional subject hash, optional detail.
    pub fn violation(code: &str, subject: Option<&Hash>, detail: Option<&str>) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(
            [true, subject.is_some(), detail.is_some()]
                .iter()
                .filter(|present| **present)
                .count(),
        );
        w.uint(0).text(code);
        if let Some(s) = subject {
            w.uint(1).bytes(s);
        }
        if let Some(d) = detail {
            w.uint(2).text(d);
        }
        w.into_bytes()
    }

    /// TRUST_EVENT: action, subject key, roles (sorted here), new key, cut-off checkpoint.
    pub fn trust_event(
        action: TrustAction,
        key: &[u8; 32],
        roles: Option<&[&str]>,
        new_key: Option<&[u8; 32]>,
        cutoff: Option<&Hash>,
    ) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(
            [true, true, roles.is_some(), new_key.is_some(), cutoff.is_some()]
                .iter()
                .filter(|present| **present)
                .count(),
        );
        w.uint(0).uint(action as u64).uint(1).bytes(key);
        if let Some(r) = roles {
            let mut r: Vec<&str> = r.to_vec();
            r.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
            w.uint(2).array(r.len());
            for role in r {
                w.text(role);
            }
        }
        if let Some(k) = new_key {
            w.uint(3).bytes(k);
        }
        if let Some(c) = cutoff {
            w.uint(4).bytes(c);
        }
        w.into_bytes()
    }

    /// POLICY: bundle hash and optional name.
    pub fn policy(bundle: &Hash, name: Option<&str>) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(if name.is_some() { 2 } else { 1 }).uint(0).bytes(bundle);
        if let Some(n) = name {
            w.uint(1).text(n);
        }
        w.into_bytes()
    }

    /// ATTESTATION: registered subtype, subject hash, optional claims (an encoded map).
    pub fn attestation(subtype: &str, subject: &Hash, claims: Option<&[u8]>) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(if claims.is_some() { 3 } else { 2 })
            .uint(0)
            .text(subtype)
            .uint(1)
            .bytes(subject);
        if let Some(c) = claims {
            w.uint(2).raw(c);
        }
        w.into_bytes()
    }

    /// CHECKPOINT: count, root, optional witness cosignatures.
    pub fn checkpoint(count: u64, root: &Hash, cosignatures: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
        let mut w = CborWriter::new();
        w.map(if cosignatures.is_empty() { 2 } else { 3 })
            .uint(0)
            .uint(count)
            .uint(1)
            .bytes(root);
        if !cosignatures.is_empty() {
            w.uint(2);
            key_sig_list(&mut w, cosignatures);
        }
        w.into_bytes()
    }
}

/// The fields of a record, to encode and sign.
#[derive(Clone, Debug)]
pub struct RecordBuilder {
    /// Record kind.
    pub kind: Kind,
    /// Parent hashes (sorted and de-duplicated when encoded).
    pub parents: Vec<Hash>,
    /// Lamport clock.
    pub lamport: u64,
    /// Kernel time, ms.
    pub time: u64,
    /// Principal.
    pub principal: String,
    /// Session id (empty for kernel scope).
    pub session: String,
    /// Sequence number for (signer, session).
    pub seq: u64,
    /// The encoded body (see [`body`]).
    pub body: Vec<u8>,
    /// An encoded extension map, if any.
    pub ext: Option<Vec<u8>>,
}

impl RecordBuilder {
    /// A record of `kind` with `body`; other fields zero or empty.
    pub fn new(kind: Kind, body: Vec<u8>) -> RecordBuilder {
        RecordBuilder {
            kind,
            parents: Vec::new(),
            lamport: 0,
            time: 0,
            principal: String::from("kernel"),
            session: String::new(),
            seq: 0,
            body,
            ext: None,
        }
    }

    /// The deterministic CBOR payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut parents = self.parents.clone();
        parents.sort();
        parents.dedup();
        let mut w = CborWriter::new();
        w.map(if self.ext.is_some() { 10 } else { 9 });
        w.uint(0)
            .uint(FORMAT_VERSION)
            .uint(1)
            .uint(self.kind as u64)
            .uint(2)
            .array(parents.len());
        for p in &parents {
            w.bytes(p);
        }
        w.uint(3)
            .uint(self.lamport)
            .uint(4)
            .uint(self.time)
            .uint(5)
            .text(&self.principal);
        w.uint(6)
            .text(&self.session)
            .uint(7)
            .uint(self.seq)
            .uint(8)
            .raw(&self.body);
        if let Some(e) = &self.ext {
            w.uint(9).raw(e);
        }
        w.into_bytes()
    }

    /// Encodes and signs: the record's bytes.
    pub fn sign(&self, signer: &Signer) -> Vec<u8> {
        sign_payload(signer, &protected_header(&signer.public_key()), &self.payload())
    }
}

/// The protected header `{1: -8, 4: kid}`.
pub fn protected_header(kid: &[u8; 32]) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.map(2).uint(1).int(COSE_ALG_EDDSA).uint(4).bytes(kid);
    w.into_bytes()
}

/// The COSE Sig_structure `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.array(4).text("Signature1").bytes(protected).bytes(&[]).bytes(payload);
    w.into_bytes()
}

/// A tagged COSE_Sign1 over arbitrary header and payload bytes (which may be invalid:
/// the vector generator signs broken payloads to test the decoder behind the signature).
pub fn sign_payload(signer: &Signer, protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let sig = signer.sign(&sig_structure(protected, payload));
    let mut w = CborWriter::new();
    w.tag(COSE_SIGN1_TAG)
        .array(4)
        .bytes(protected)
        .map(0)
        .bytes(payload)
        .bytes(&sig);
    w.into_bytes()
}
