//! HELM test vectors: the data model of the language-neutral vector files, a runner that
//! executes them against `verify-core`, and the chain builder the generator uses.
//!
//! The vector files (JSON, records as hex) are the contract; this crate is one runner.
//! Other implementations read the same files (see spec/test-vectors.md).
#![allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test tooling over small, bounded inputs: a panic is a generator bug caught in CI"
)]

pub mod packs;

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

/// A realistic agent run for packs, benchmarks and demos: records plus the blob contents
/// they reference (salted arguments and outputs, the policy bundle).
#[derive(Debug)]
pub struct Run {
    /// Trust anchors (the root key).
    pub anchors: Vec<[u8; 32]>,
    /// Records in order.
    pub records: Vec<Vec<u8>>,
    /// Blob contents by name (SHA-256 of the content).
    pub blobs: BTreeMap<Hash, Vec<u8>>,
    /// The kernel key that signed the records (and signs the manifest).
    pub kernel: Signer,
}

/// Stores `salt ‖ value` as a blob and returns its name, which is the commitment.
fn salted_blob(blobs: &mut BTreeMap<Hash, Vec<u8>>, salt_seed: &[u8], value: &[u8]) -> Hash {
    let salt = &sha256(salt_seed)[..16];
    let mut content = salt.to_vec();
    content.extend_from_slice(value);
    let name = verify_core::commitment(salt, value);
    blobs.insert(name, content);
    name
}

/// `sessions` sessions of `calls` tool calls each: most allowed and executed, every
/// fifth denied, every seventh escalated and approved by two approvers after its
/// timelock; a CHECKPOINT every `checkpoint_every` records and one at the end.
pub fn sample_run(sessions: usize, calls: usize, checkpoint_every: usize) -> Run {
    use verify_core::body::{self, Effect};
    use verify_core::{CallKind, EffectStatus, Escalation, TrustAction, Verdict};
    let root = test_key("root-1");
    let kernel = test_key("kernel-1");
    let approvers = [test_key("approver-1"), test_key("approver-2")];
    let mut c = Chain::new();
    let mut blobs = BTreeMap::new();
    let publish =
        |k: &Signer, role: &str| body::trust_event(TrustAction::Publish, &k.public_key(), Some(&[role]), None, None);
    c.push(&root, Kind::TrustEvent, publish(&kernel, "kernel"), &[], "");
    for a in &approvers {
        c.push(&root, Kind::TrustEvent, publish(a, "approver"), &[], "");
    }
    let bundle = b"# example policy bundle\n[tools.read_file]\nallow = true\n".to_vec();
    let bundle_hash = sha256(&bundle);
    blobs.insert(bundle_hash, bundle);
    let policy = c.push(
        &kernel,
        Kind::Policy,
        body::policy(&bundle_hash, Some("example")),
        &[],
        "",
    );
    let mut since_checkpoint = c.records.len();
    let maybe_checkpoint = |c: &mut Chain, since: &mut usize| {
        if *since >= checkpoint_every {
            c.checkpoint(&kernel, &[], &[]);
            *since = 0;
        }
    };
    for s in 0..sessions {
        let session = format!("session-{s:06}");
        for call in 0..calls {
            let tool = if call % 3 == 0 { "send_email" } else { "read_file" };
            let args_json = format!("{{\"call\":{call},\"path\":\"/workspace/{s}/{call}.txt\"}}");
            let args = salted_blob(&mut blobs, format!("args {s} {call}").as_bytes(), args_json.as_bytes());
            let intent = c.push(
                &kernel,
                Kind::Intent,
                body::intent(tool, CallKind::Json, &args),
                &[],
                &session,
            );
            let output_blob = |blobs: &mut BTreeMap<Hash, Vec<u8>>| {
                salted_blob(
                    blobs,
                    format!("out {s} {call}").as_bytes(),
                    format!("result of call {call}").as_bytes(),
                )
            };
            let effect_body = |output: Hash| {
                body::effect(&Effect {
                    status: EffectStatus::Succeeded,
                    tool,
                    call_kind: CallKind::Json,
                    args,
                    output,
                    executor: "tool-runner",
                    meters: &[("duration_ms", 3 + (call as u64 % 40))],
                })
            };
            if call % 5 == 4 {
                let d = body::decision(Verdict::Deny, "POLICY_DENY", &bundle_hash, None);
                c.push(&kernel, Kind::Decision, d, &[intent, policy], &session);
            } else if call % 7 == 6 {
                let terms = Escalation {
                    role: "approver",
                    quorum: 2,
                    not_before: c.time + 60_000,
                    expires: c.time + 3_600_000,
                };
                let d = body::decision(Verdict::Escalate, "POLICY_ESCALATE", &bundle_hash, Some(&terms));
                let e = c.push(&kernel, Kind::Decision, d, &[intent, policy], &session);
                c.advance(61_000);
                let challenge = verify_core::approval_challenge(&e);
                let sigs: Vec<([u8; 32], [u8; 64])> =
                    approvers.iter().map(|a| (a.public_key(), a.sign(&challenge))).collect();
                let a = c.push(&kernel, Kind::Approval, body::approval(&sigs), &[e], &session);
                let out = output_blob(&mut blobs);
                c.push(&kernel, Kind::Effect, effect_body(out), &[e, a], &session);
            } else {
                let d = body::decision(Verdict::Allow, "POLICY_ALLOW", &bundle_hash, None);
                let d = c.push(&kernel, Kind::Decision, d, &[intent, policy], &session);
                let out = output_blob(&mut blobs);
                c.push(&kernel, Kind::Effect, effect_body(out), &[d], &session);
            }
            since_checkpoint += 3;
            maybe_checkpoint(&mut c, &mut since_checkpoint);
        }
    }
    c.checkpoint(&kernel, &[], &[]);
    Run {
        anchors: vec![root.public_key()],
        records: c.records,
        blobs,
        kernel,
    }
}

/// Writes `run` as a canonical pack, withholding the blobs named in `withhold`.
pub fn write_run(run: &Run, withhold: &[Hash]) -> Result<Vec<u8>, pack_format::WriteError> {
    let contents = pack_format::PackContents {
        records: run.records.iter().map(Vec::as_slice).collect(),
        blobs: run.blobs.iter().map(|(k, v)| (*k, v.as_slice())).collect(),
        withhold: withhold.iter().copied().collect(),
    };
    pack_format::write_pack(&contents, run.kernel.public_key(), |m| run.kernel.sign(m))
}
