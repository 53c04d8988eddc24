//! HELM test vectors: the data model of the language-neutral vector files, a runner that
//! executes them against `verify-core`, and the chain builder the generator uses.
//!
//! The vector files (JSON, records as hex) are the contract; this crate is one runner.
//! Other implementations read the same files (see spec/test-vectors.md).
#![allow(clippy::arithmetic_side_effects, reason = "test tooling over small, bounded chains")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use verify_core::{
    sha256, Capacity, ErrorCode, Hash, Kind, MerkleAccumulator, OwnedTables, RecordBuilder, Signer, Verifier,
};

/// One record-stream vector: trust anchors, records in order, and the expected verdict.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordVector {
    /// Stable identifier, also the file's path below `records/` without `.json`.
    pub id: String,
    /// What the vector models and why the verdict follows.
    pub description: String,
    /// Conformance level: `L1`, `L2` or `L3`.
    pub level: String,
    /// The verification rule exercised (1–6; 0 for stream-level cases).
    pub rule: u8,
    /// Trust anchors (hex Ed25519 public keys), supplied out of band.
    pub anchors: Vec<String>,
    /// Records (hex), in stream order.
    pub records: Vec<String>,
    /// The expected outcome.
    pub expect: Expectation,
}

/// The outcome a conforming verifier must reach.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum Expectation {
    /// Every record verifies; `count` records, RFC 9162 root `root` over their hashes.
    Accept {
        /// Number of records.
        count: u64,
        /// Hex Merkle root over the record hashes.
        root: String,
    },
    /// The first broken rule: error code (spec/errors.md) and the record's index.
    Reject {
        /// Error code name, e.g. `PARENT_MISSING`.
        error: String,
        /// 0-based index of the offending record (the record count for stream-level errors).
        index: u64,
    },
}

/// One Ed25519 edge case with its expected verdict under spec/ed25519.md.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignatureVector {
    /// CCTV case number.
    pub number: u32,
    /// Hex public key.
    pub key: String,
    /// Hex signature.
    pub sig: String,
    /// Message (UTF-8 text).
    pub msg: String,
    /// CCTV flags.
    pub flags: Vec<String>,
    /// `accept` or `reject`.
    pub expect: String,
}

/// What a verifier concluded for one vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified: record count and hex root.
    Accept(u64, String),
    /// Rejected: error code name and record index.
    Reject(String, u64),
    /// The vector itself could not be read (bad hex, bad anchor).
    Invalid(String),
}

impl Expectation {
    /// The outcome this expectation describes.
    pub fn outcome(&self) -> Outcome {
        match self {
            Expectation::Accept { count, root } => Outcome::Accept(*count, root.clone()),
            Expectation::Reject { error, index } => Outcome::Reject(error.clone(), *index),
        }
    }
}

/// Runs one record vector through `verify-core`.
pub fn run_record_vector(v: &RecordVector) -> Outcome {
    let mut anchors = Vec::new();
    for a in &v.anchors {
        match hex::decode(a).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(k) => anchors.push(k),
            None => return Outcome::Invalid(format!("anchor {a} is not 32 hex bytes")),
        }
    }
    let mut records = Vec::new();
    for r in &v.records {
        match hex::decode(r) {
            Ok(b) => records.push(b),
            Err(e) => return Outcome::Invalid(format!("record is not hex: {e}")),
        }
    }
    let mut tables = OwnedTables::new(Capacity::for_records(records.len().max(1)));
    let mut verifier = match Verifier::new(&anchors, tables.tables()) {
        Ok(v) => v,
        Err(e) => return Outcome::Invalid(format!("setup: {e:?}")),
    };
    for r in &records {
        if let Err(e) = verifier.push(r) {
            return Outcome::Reject(e.code.name().to_string(), e.index);
        }
    }
    match verifier.finish() {
        Ok(s) => Outcome::Accept(s.records, hex::encode(s.root)),
        Err(e) => Outcome::Reject(e.code.name().to_string(), e.index),
    }
}

/// The directory holding the vector files (this crate's folder).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every record vector below `dir/records`, sorted by path.
pub fn load_record_vectors(dir: &Path) -> Result<Vec<RecordVector>, String> {
    let mut paths = Vec::new();
    collect_json(&dir.join("records"), &mut paths).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

fn collect_json(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_json(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// A deterministic test key. Never use these for anything real: the seeds are public.
pub fn test_key(name: &str) -> Signer {
    Signer::from_seed(&sha256(
        format!("HELM TEST KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes(),
    ))
}

/// Kernel time of the first record in generated chains: 2026-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// Builds valid record chains: Lamport clocks, sequence numbers and kernel time are
/// filled in; a `tweak` may then break exactly one rule.
#[derive(Debug)]
pub struct Chain {
    /// Records so far, in order.
    pub records: Vec<Vec<u8>>,
    /// Their hashes.
    pub hashes: Vec<Hash>,
    lamport: u64,
    /// Kernel time the next record gets.
    pub time: u64,
    seqs: BTreeMap<([u8; 32], String), u64>,
    merkle: MerkleAccumulator,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Chain {
        Chain {
            records: Vec::new(),
            hashes: Vec::new(),
            lamport: 0,
            time: EPOCH_MS,
            seqs: BTreeMap::new(),
            merkle: MerkleAccumulator::new(),
        }
    }

    /// A builder with the next Lamport value, sequence number and time (without
    /// advancing the chain: `push_built` does that).
    pub fn builder(
        &self,
        signer: &Signer,
        kind: Kind,
        body: Vec<u8>,
        parents: &[Hash],
        session: &str,
    ) -> RecordBuilder {
        let mut b = RecordBuilder::new(kind, body);
        b.parents = parents.to_vec();
        b.lamport = self.lamport + 1;
        b.time = self.time;
        b.principal = if session.is_empty() {
            "kernel".into()
        } else {
            "agent:alice".into()
        };
        b.session = session.into();
        b.seq = self
            .seqs
            .get(&(signer.public_key(), session.to_string()))
            .copied()
            .unwrap_or(0);
        b
    }

    /// Signs and appends a record built by `builder`, after `tweak` modified it.
    pub fn push_with(
        &mut self,
        signer: &Signer,
        kind: Kind,
        body: Vec<u8>,
        parents: &[Hash],
        session: &str,
        tweak: impl FnOnce(&mut RecordBuilder),
    ) -> Hash {
        let mut b = self.builder(signer, kind, body, parents, session);
        tweak(&mut b);
        let bytes = b.sign(signer);
        self.lamport = self.lamport.max(b.lamport);
        self.seqs.insert((signer.public_key(), b.session.clone()), b.seq + 1);
        self.time = self.time.max(b.time) + 1000;
        self.push_raw(bytes)
    }

    /// Signs and appends a valid record.
    pub fn push(&mut self, signer: &Signer, kind: Kind, body: Vec<u8>, parents: &[Hash], session: &str) -> Hash {
        self.push_with(signer, kind, body, parents, session, |_| {})
    }

    /// Appends bytes as they are (which may be invalid).
    pub fn push_raw(&mut self, bytes: Vec<u8>) -> Hash {
        let h = sha256(&bytes);
        self.merkle.push(&h);
        self.hashes.push(h);
        self.records.push(bytes);
        h
    }

    /// Appends a CHECKPOINT over everything so far, cosigned by `witnesses`.
    pub fn checkpoint(&mut self, kernel: &Signer, witnesses: &[&Signer], parents: &[Hash]) -> Hash {
        let count = self.records.len() as u64;
        let root = self.merkle.root();
        let (msg, n) = verify_core::checkpoint_challenge(count, &root);
        let cosigs: Vec<([u8; 32], [u8; 64])> = witnesses
            .iter()
            .map(|w| (w.public_key(), w.sign(msg.get(..n).unwrap_or(&[]))))
            .collect();
        self.push(
            kernel,
            Kind::Checkpoint,
            verify_core::body::checkpoint(count, &root, &cosigs),
            parents,
            "",
        )
    }

    /// Moves kernel time forward.
    pub fn advance(&mut self, ms: u64) {
        self.time += ms;
    }

    /// The current Merkle root.
    pub fn root(&self) -> Hash {
        self.merkle.root()
    }

    /// Records as hex strings.
    pub fn hex_records(&self) -> Vec<String> {
        self.records.iter().map(hex::encode).collect()
    }
}

/// Maps an error code name to its code, for runners that need the number.
pub fn error_code(name: &str) -> Option<ErrorCode> {
    ErrorCode::from_name(name)
}
