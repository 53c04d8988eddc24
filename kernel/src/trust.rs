//! The trust chain: TRUST_EVENT records signed offline by root keys (anchors), which
//! publish, rotate and revoke operational keys with roles. The kernel loads the chain
//! at start, refuses to start with a key that is not active, and copies new events
//! into its store so that every pack carries them.
//!
//! A chain file is a CBOR sequence (RFC 8742) of TRUST_EVENT records in order, as
//! `helm-airgap keys publish|rotate|revoke` writes it.

use std::collections::BTreeMap;

use verify_core::{Body, Hash, OwnedTables, Record, TrustAction, Verifier};

/// Largest chain file read.
pub const MAX_CHAIN_BYTES: usize = 16 << 20;

/// The trust chain could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainError(pub String);

impl core::fmt::Display for ChainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ChainError {}

/// Splits a CBOR sequence of records into the records' bytes.
pub fn split_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = match pack_format::record_len(rest) {
            Ok(Some(len)) => len,
            Ok(None) => return Err(ChainError(format!("record {} of the sequence is truncated", out.len()))),
            Err(_) => {
                return Err(ChainError(format!(
                    "record {} of the sequence is not a record",
                    out.len()
                )))
            }
        };
        let (record, tail) = rest
            .split_at_checked(len)
            .ok_or_else(|| ChainError(format!("record {} of the sequence is truncated", out.len())))?;
        out.push(record.to_vec());
        rest = tail;
    }
    Ok(out)
}

/// Checks a chain's form: every record a TRUST_EVENT signed by an anchor (signature
/// valid), each naming the previous one as its only parent, Lamport clocks increasing,
/// and each anchor's sequence numbers counting from 0. The rules that need the records
/// a cut-off names (rotations and revocations of keys that signed records) can only be
/// checked in the store the events go into: the kernel verifies them there.
pub fn check_chain(anchors: &[[u8; 32]], bytes: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    if bytes.len() > MAX_CHAIN_BYTES {
        return Err(ChainError(format!("trust chain larger than {MAX_CHAIN_BYTES} bytes")));
    }
    let records = split_records(bytes)?;
    let mut prev: Option<(Hash, u64)> = None;
    let mut seqs: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    for (i, bytes) in records.iter().enumerate() {
        let r = Record::decode(bytes)
            .map_err(|e| ChainError(format!("trust chain record {i} does not decode: {}", e.name())))?;
        if !matches!(r.body, Body::TrustEvent { .. }) {
            return Err(ChainError(format!("trust chain record {i} is not a TRUST_EVENT")));
        }
        if !anchors.contains(&r.kid) {
            return Err(ChainError(format!(
                "trust chain record {i} is signed by ed25519:{}, which is not an anchor of the trust root",
                hex::encode(r.kid)
            )));
        }
        if !verify_core::verify_signature(
            &r.kid,
            &verify_core::sig_structure(r.protected, r.payload),
            &r.signature,
        ) {
            return Err(ChainError(format!("trust chain record {i}: SIGNATURE_INVALID")));
        }
        let parents: Vec<Hash> = r.parents.iter().collect();
        let linked = match prev {
            None => parents.is_empty(),
            Some((h, lamport)) => parents == [h] && r.lamport > lamport,
        };
        if !linked {
            return Err(ChainError(format!(
                "trust chain record {i} does not follow record {} (its only parent, with a higher Lamport clock)",
                i.saturating_sub(1)
            )));
        }
        let next = seqs.entry(r.kid).or_insert(0);
        if r.seq != *next {
            return Err(ChainError(format!(
                "trust chain record {i}: sequence number {} where {next} was expected",
                r.seq
            )));
        }
        *next = next.saturating_add(1);
        prev = Some((r.hash, r.lamport));
    }
    Ok(records)
}

/// Verifies a chain on its own against the anchors (every record a TRUST_EVENT, signed
/// by an anchor, all rules of spec/verification.md). Returns the records.
pub fn verify_chain(anchors: &[[u8; 32]], bytes: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    if bytes.len() > MAX_CHAIN_BYTES {
        return Err(ChainError(format!("trust chain larger than {MAX_CHAIN_BYTES} bytes")));
    }
    let records = split_records(bytes)?;
    let mut tables = OwnedTables::new(verify_core::Capacity::for_records(records.len()));
    let mut v = Verifier::new(anchors, tables.tables()).map_err(|e| ChainError(format!("trust root: {e:?}")))?;
    for (i, r) in records.iter().enumerate() {
        let rec = v
            .push(r)
            .map_err(|e| ChainError(format!("trust chain record {i}: {}", e.code.name())))?;
        if !matches!(rec.body, Body::TrustEvent { .. }) {
            return Err(ChainError(format!(
                "trust chain record {i} is a {:?}, not a TRUST_EVENT",
                rec.kind
            )));
        }
    }
    v.finish()
        .map_err(|e| ChainError(format!("trust chain: {}", e.code.name())))?;
    Ok(records)
}

/// One key's standing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// Roles granted.
    pub roles: Vec<String>,
    /// Rotated away or revoked.
    pub retired: bool,
}

/// Keys and roles as the TRUST_EVENTs seen so far define them.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    keys: BTreeMap<[u8; 32], KeyState>,
    seen: std::collections::BTreeSet<Hash>,
}

impl Registry {
    /// Applies a TRUST_EVENT (others are ignored). Events already applied are skipped.
    pub fn apply(&mut self, r: &Record<'_>) {
        let Body::TrustEvent {
            action,
            key,
            roles,
            new_key,
            ..
        } = r.body
        else {
            return;
        };
        if !self.seen.insert(r.hash) {
            return;
        }
        let roles: Vec<String> = roles.map(|l| l.iter().map(str::to_owned).collect()).unwrap_or_default();
        match action {
            TrustAction::Publish => {
                self.keys.insert(key, KeyState { roles, retired: false });
            }
            TrustAction::Rotate => {
                if let Some(k) = self.keys.get_mut(&key) {
                    k.retired = true;
                }
                if let Some(n) = new_key {
                    self.keys.insert(n, KeyState { roles, retired: false });
                }
            }
            TrustAction::Revoke => {
                if let Some(k) = self.keys.get_mut(&key) {
                    k.retired = true;
                }
            }
        }
    }

    /// Whether a TRUST_EVENT with this hash was applied.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.seen.contains(hash)
    }

    /// Whether `key` is published, not retired, and holds `role`.
    pub fn active(&self, key: &[u8; 32], role: &str) -> bool {
        self.keys
            .get(key)
            .is_some_and(|k| !k.retired && k.roles.iter().any(|r| r == role))
    }

    /// A key's standing, if published.
    pub fn get(&self, key: &[u8; 32]) -> Option<&KeyState> {
        self.keys.get(key)
    }
}
