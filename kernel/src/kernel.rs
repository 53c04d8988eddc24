//! The kernel: decisions, effects, approvals and checkpoints as signed, durable records.
//!
//! One lock orders every append. A decision reserves its place under it (clocks,
//! sequence numbers, Guardian's verdict), is signed outside it, and is committed under
//! it in reservation order ([`pipeline`]), so that concurrent decisions sign on every
//! core. Other records are built, signed and appended under the lock once no decision is
//! in flight. Waiting for the fsync happens outside the lock, so concurrent callers
//! share one group commit.

use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use guardian::{Bundle, Evidence, Guardian, Histories, Limits, Request};
use serde::Serialize;
use verify_core::body::{self, Effect};
use verify_core::{
    approval_challenge, sha256, Body, CallKind, EffectStatus, Escalation, Hash, Kind, MerkleAccumulator, Record,
    RecordBuilder, Verdict,
};

use crate::clock::Clock;
use crate::signer::{sign_record, RecordSigner};
use crate::store::{Store, StoreError, StoreOptions, Ticket};
use crate::trust::{check_chain, Registry};

mod blob_sync;
mod pipeline;
mod wasm;
pub use wasm::{ToolRun, WasmTool};

/// Length of the random salt in front of a committed value (record-format.md §9).
pub const SALT_LEN: usize = 16;

/// The reasons of [`Kernel::deny_malformed`].
pub const MALFORMED_REASONS: [&str; 2] = ["INVALID_ARGUMENTS", "TRUNCATED_ARGUMENTS"];

/// How the kernel is set up.
#[derive(Debug)]
pub struct KernelConfig {
    /// The store directory (records in `DIR/records`, blobs in `DIR/blobs`).
    pub store_dir: PathBuf,
    /// Durability and segment options of the record log.
    pub store: StoreOptions,
    /// Root keys the trust chain must be signed by.
    pub anchors: Vec<[u8; 32]>,
    /// The trust chain (a CBOR sequence of TRUST_EVENTs), as `helm-airgap keys` writes it.
    pub trust_chain: Vec<u8>,
    /// Policy bundles, already loaded and author-verified.
    pub bundles: Vec<Bundle>,
    /// Guardian's evaluation limits.
    pub limits: Limits,
    /// A CHECKPOINT after this many records (0: only on request and on `tick`).
    pub checkpoint_every: u64,
    /// Also a CHECKPOINT on `tick` when records were added and this much kernel time
    /// passed since the last one (ms; 0: never by time).
    pub checkpoint_interval_ms: u64,
    /// How long a resolved escalation keeps answering retries of its call (ms).
    pub resolved_ttl_ms: u64,
    /// The file-system layer under the store: the real one by default; tests pass a
    /// [`SimulatedFs`](crate::store::SimulatedFs) to simulate power loss and full disks.
    pub fs: Option<Arc<dyn crate::store::StoreFs>>,
    /// Tools backed by WebAssembly modules, run in the sandbox when allowed.
    pub wasm_tools: Vec<WasmTool>,
}

impl KernelConfig {
    /// A configuration with defaults: durable store, checkpoints every 1000 records or
    /// 60 s, resolved escalations answer retries for an hour.
    pub fn new(store_dir: PathBuf, anchors: Vec<[u8; 32]>, trust_chain: Vec<u8>, bundles: Vec<Bundle>) -> Self {
        KernelConfig {
            store_dir,
            store: StoreOptions::default(),
            anchors,
            trust_chain,
            bundles,
            limits: Limits::default(),
            checkpoint_every: 1000,
            checkpoint_interval_ms: 60_000,
            resolved_ttl_ms: 3_600_000,
            fs: None,
            wasm_tools: Vec::new(),
        }
    }
}

/// The kernel could not start or could not record.
#[derive(Debug)]
pub enum KernelError {
    /// The trust chain, the trust root or the kernel key is not usable.
    Trust(String),
    /// The store failed.
    Store(StoreError),
    /// A record in the store does not decode (the store is not this kernel's).
    Corrupt(String),
    /// The signer failed.
    Sign(String),
}

impl core::fmt::Display for KernelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KernelError::Trust(m) => write!(f, "trust: {m}"),
            KernelError::Store(e) => write!(f, "store: {e}"),
            KernelError::Corrupt(m) => write!(f, "store content: {m}"),
            KernelError::Sign(m) => write!(f, "{m}"),
        }
    }
}

impl core::error::Error for KernelError {}

impl From<StoreError> for KernelError {
    fn from(e: StoreError) -> Self {
        KernelError::Store(e)
    }
}

/// A proposed tool call's arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Args {
    /// JSON arguments (committed as RFC 8785 canonical JSON).
    Json(serde_json::Value),
    /// Free-text input of a custom tool (committed as its UTF-8 bytes).
    Text(String),
}

/// A tool call an agent proposes.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// Tool name (MCP tools: `server/tool`).
    pub tool: String,
    /// Its arguments.
    pub args: Args,
    /// The authenticated principal (never taken from the request body by servers).
    pub principal: String,
    /// The session.
    pub session: String,
    /// The caller's id for this call (an OpenAI `tool_call.id`, an MCP request id),
    /// recorded in the INTENT's extension map as `{"call_id": ...}`, so that a result
    /// reported later under that id finds its decision, also after a restart.
    pub call_id: Option<String>,
}

/// The INTENT extension map `{"call_id": id}` (record-format.md §7).
fn call_id_ext(id: &str) -> Vec<u8> {
    let mut w = verify_core::CborWriter::new();
    w.map(1).text("call_id").text(id);
    w.into_bytes()
}

/// The `call_id` of an INTENT extension map written by [`call_id_ext`].
fn call_id_of(ext: &[u8]) -> Option<&str> {
    let mut r = verify_core::cbor::Reader::new(ext);
    if r.map_len().ok()? != 1 || r.text().ok()? != "call_id" {
        return None;
    }
    r.text().ok()
}

/// What the caller must do with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Run it, then report the effect with the permit.
    Allow,
    /// Do not run it.
    Deny,
    /// Do not run it yet: an approval is pending; propose the same call again later.
    Pending,
}

/// An open approval: what approvers sign and what the kernel waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    /// The approval id: the ESCALATE record's hash (hex).
    pub id: String,
    /// The challenge each approver signs (hex): spec/record-format.md §8.1.
    pub challenge: String,
    /// Role every approver must hold.
    pub role: String,
    /// Distinct approvers needed.
    pub quorum: u64,
    /// Approvers counted so far (public keys, hex).
    pub approvers: Vec<String>,
    /// Earliest kernel time an approval is accepted (ms): the timelock.
    pub not_before: u64,
    /// Latest kernel time (ms); after it the call is denied with APPROVAL_TIMEOUT.
    pub expires: u64,
    /// `pending`, `approved` or `denied`.
    pub state: String,
    /// The tool, principal and session of the call.
    pub tool: String,
    /// Who proposed it.
    pub principal: String,
    /// Its session.
    pub session: String,
}

/// The kernel's answer to a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Run, don't run, or wait.
    pub status: Status,
    /// The reason code (spec/registries.md).
    pub reason: String,
    /// The rule or budget that decided, if any.
    pub rule: Option<String>,
    /// The INTENT record (hex): the id to report the effect under.
    pub intent: Option<String>,
    /// The DECISION that answers (hex): ALLOW, DENY or ESCALATE.
    pub decision: Option<String>,
    /// The deciding bundle (hex).
    pub policy: Option<String>,
    /// With `pending` (and after a grant): the approval.
    pub approval: Option<PendingApproval>,
    /// Whether the records are on disk (fsync done). `false` in buffered mode, and when
    /// recording failed (then the status is `deny` with `KERNEL_ERROR`).
    pub durable: bool,
    /// Why recording failed, if it did.
    pub error: Option<String>,
}

impl Answer {
    /// DENY `KERNEL_ERROR` with `e` as the error: what a caller answers when the kernel
    /// could not be asked (a worker stopped) as well as when it failed.
    pub fn kernel_error(e: &dyn core::fmt::Display) -> Answer {
        Answer {
            status: Status::Deny,
            reason: "KERNEL_ERROR".into(),
            rule: None,
            intent: None,
            decision: None,
            policy: None,
            approval: None,
            durable: false,
            error: Some(e.to_string()),
        }
    }
}

/// The outcome of an allowed call, as the caller reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectReport {
    /// The INTENT the permit was given for.
    pub intent: Hash,
    /// The authenticated principal reporting it: must be the INTENT's.
    pub principal: String,
    /// How it ended.
    pub status: EffectStatus,
    /// The tool's output bytes (committed with a fresh salt; kept as a blob).
    pub output: Vec<u8>,
    /// Who ran it (for example `client`, or `wasm:sha256:<hex>`).
    pub executor: String,
    /// Meters (`duration_ms`, `cost`, ...).
    pub meters: Vec<(String, u64)>,
    /// Optional extension map (deterministic CBOR), e.g. sandbox evidence.
    pub ext: Option<Vec<u8>>,
    /// Extra blobs to keep with the EFFECT (e.g. a WASM module), already content-named.
    pub blobs: Vec<Vec<u8>>,
}

/// A statement to record as an ATTESTATION ([`Kernel::attest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationReport {
    /// A registered subtype (`tool-pin`, `sandbox-module`, `kernel-config`).
    pub subtype: String,
    /// What it is about (for `tool-pin`: SHA-256 of the canonical tool definition).
    pub subject: Hash,
    /// Optional claims: a deterministic CBOR map.
    pub claims: Option<Vec<u8>>,
    /// The principal it is recorded under.
    pub principal: String,
    /// The session it is recorded in (may be empty).
    pub session: String,
    /// Blobs to keep with it (content-named by their SHA-256), e.g. the pinned definition.
    pub blobs: Vec<Vec<u8>>,
}

/// An ATTESTATION found in the store ([`Kernel::attestations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attested {
    /// The record's hash.
    pub record: Hash,
    /// Its subject.
    pub subject: Hash,
    /// Its claims map (deterministic CBOR), if any.
    pub claims: Option<Vec<u8>>,
}

/// Why an effect or approval was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// A stable code: `NO_OPEN_PERMIT`, `NO_PERMIT`, `NOT_YOUR_INTENT`,
    /// `UNKNOWN_APPROVAL`, `APPROVAL_TIMELOCK`, `APPROVAL_EXPIRED`, `APPROVAL_ROLE`,
    /// `APPROVAL_INVALID`, `APPROVAL_DUPLICATE`, `ALREADY_RESOLVED`, `KERNEL_ERROR`.
    pub code: String,
    /// For people.
    pub message: String,
}

fn refuse(code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        code: code.into(),
        message: message.into(),
    }
}

/// What `open` found.
#[derive(Clone, Debug, Serialize)]
pub struct OpenReport {
    /// Records in the store when opened.
    pub records: u64,
    /// Bytes of a torn tail cut off by recovery, and why.
    pub truncated_bytes: u64,
    /// What recovery cut, if anything.
    pub torn: Option<String>,
    /// TRUST_EVENTs copied from the chain into the store.
    pub trust_events_added: usize,
    /// POLICY records added for bundles not yet active.
    pub policies_added: usize,
    /// Escalations still waiting for approval.
    pub pending_approvals: usize,
    /// `sandbox-module` ATTESTATIONs added for WASM tools not attested yet.
    pub modules_attested: usize,
    /// Approver signatures below quorum counted again from the approvals log.
    pub approver_signatures_restored: usize,
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// Decisions by status.
    pub allow: u64,
    /// DENY answers (including kernel errors).
    pub deny: u64,
    /// Pending answers.
    pub pending: u64,
    /// Effects recorded.
    pub effects: u64,
    /// Approvals recorded (quorum reached).
    pub approvals: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Answers that were DENY `KERNEL_ERROR` because recording failed.
    pub kernel_errors: u64,
    /// Records in the store.
    pub records: u64,
}

#[derive(Clone, Debug)]
struct IntentInfo {
    tool: String,
    call_kind: CallKind,
    args: Hash,
    principal: String,
    session: String,
    /// The parents an EFFECT must name: the ALLOW, or the ESCALATE and the APPROVAL.
    permit: Option<Vec<Hash>>,
    used: bool,
    /// Its ESCALATE, if escalated.
    escalate: Option<Hash>,
    /// Caller call ids that name it (the INTENT's, and those of retries).
    call_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum EscState {
    Pending,
    Approved(Hash),
    Denied(String, u64),
}

#[derive(Clone, Debug)]
struct Esc {
    intent: Hash,
    key: Hash,
    role: String,
    quorum: u64,
    not_before: u64,
    expires: u64,
    sigs: BTreeMap<[u8; 32], [u8; 64]>,
    state: EscState,
    policy: Hash,
    tool: String,
    principal: String,
    session: String,
}

/// A session's own history and the tools approved in it.
type SessionEvidence = (Arc<Histories>, Arc<BTreeSet<String>>);

#[derive(Debug, Default)]
struct State {
    /// The Lamport clock of the last record reserved (see [`pipeline`]).
    lamport: u64,
    /// The Lamport clock of the last record written.
    committed_lamport: u64,
    time: u64,
    count: u64,
    merkle: MerkleAccumulator,
    seq: HashMap<String, u64>,
    heads: HashMap<String, Hash>,
    registry: Registry,
    /// Bundle hash -> its POLICY record.
    policies: HashMap<Hash, Hash>,
    /// Open INTENTs: undecided, escalated, or allowed and not yet used. Denied and used
    /// ones are dropped, so memory follows the open calls, not the store's size.
    intents: HashMap<Hash, IntentInfo>,
    /// Permit record (ALLOW or APPROVAL) -> its INTENT.
    permits: HashMap<Hash, Hash>,
    /// (principal, caller's call id) -> open INTENT.
    call_ids: HashMap<(String, String), Hash>,
    escalations: BTreeMap<Hash, Esc>,
    /// Intent key (tool, args, principal, session) -> ESCALATE, for retries.
    by_key: HashMap<Hash, Hash>,
    principals: HashMap<String, Arc<Histories>>,
    sessions: HashMap<(String, String), SessionEvidence>,
    since_checkpoint: u64,
    last_checkpoint_time: u64,
    /// Blob names already stored (bundles are stored once).
    blobs: BTreeSet<Hash>,
    metrics: Metrics,
    /// Decisions in flight (reserved, being signed, waiting to be committed).
    pipe: pipeline::Pipe,
}

/// Records staged under the lock: signed, counted, not yet appended.
struct Staged {
    records: Vec<Vec<u8>>,
    hashes: Vec<Hash>,
    lamport: u64,
    time: u64,
    count: u64,
    merkle: MerkleAccumulator,
    seq: Vec<(String, u64)>,
    heads: Vec<(String, Hash)>,
    blobs: Vec<Vec<u8>>,
    /// Salted blobs (arguments, outputs): unique by their salt, so their names are not
    /// remembered for deduplication (memory would grow with every decision).
    salted: Vec<Vec<u8>>,
}

/// The execution kernel.
#[derive(Debug)]
pub struct Kernel {
    state: Mutex<State>,
    /// Signalled when the pipeline drains, and when an operation that waited for that
    /// has its turn (see [`pipeline`]).
    drained: Condvar,
    records: Store,
    /// Approver signatures below quorum (spec/kernel.md §4): 128-byte entries
    /// `escalation id ‖ approver key ‖ signature`, re-checked when loaded.
    approvals_log: Store,
    blobs: Arc<Store>,
    /// Durable mode: the blob store's fsync, run beside the record store's.
    blob_sync: Option<blob_sync::BlobSync>,
    signer: Arc<dyn RecordSigner>,
    key: [u8; 32],
    guardian: Guardian,
    clock: Arc<dyn Clock>,
    checkpoint_every: u64,
    checkpoint_interval_ms: u64,
    resolved_ttl_ms: u64,
    durable: bool,
    /// Decisions in flight (a mirror of the pipeline's count, read without the lock).
    in_flight_hint: AtomicU64,
    /// Answers by status, and kernel errors: counted without the kernel's lock (every
    /// decision ends here; 64 callers would queue for the lock just to count).
    answers: [AtomicU64; 4],
    wasm: wasm::WasmTools,
}

/// An approvals-log entry: escalation id (32) ‖ approver key (32) ‖ signature (64).
const APPROVAL_ENTRY: usize = 128;

/// Indices into `Kernel::answers`.
const ALLOWS: usize = 0;
const DENIES: usize = 1;
const PENDINGS: usize = 2;
const KERNEL_ERRORS: usize = 3;

/// The key of a call for retries: SHA-256 over tool, canonical arguments, principal
/// and session, each length-prefixed.
fn intent_key(tool: &str, call_kind: CallKind, args: &[u8], principal: &str, session: &str) -> Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        tool.as_bytes(),
        &[call_kind as u8],
        args,
        principal.as_bytes(),
        session.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn hexs(h: &Hash) -> String {
    hex::encode(h)
}

/// Canonical bytes of the arguments and their call kind.
fn canonical_args(args: &Args) -> Result<(CallKind, Vec<u8>), String> {
    match args {
        Args::Json(v) => {
            let text = serde_json::to_vec(v).map_err(|e| format!("arguments do not encode: {e}"))?;
            let canon = receipt_v5::canonicalize_to_vec(&text)
                .map_err(|e| format!("arguments have no RFC 8785 form: {e:?}"))?;
            Ok((CallKind::Json, canon))
        }
        Args::Text(t) => Ok((CallKind::Text, t.as_bytes().to_vec())),
    }
}

fn salted(content: &[u8]) -> Result<(Hash, Vec<u8>), String> {
    let mut blob = vec![0u8; SALT_LEN];
    getrandom::fill(&mut blob).map_err(|e| format!("random source failed: {e}"))?;
    blob.extend_from_slice(content);
    Ok((sha256(&blob), blob))
}

impl State {
    fn stage(&self) -> Staged {
        Staged {
            records: Vec::new(),
            hashes: Vec::new(),
            lamport: self.lamport,
            time: self.time,
            count: self.count,
            merkle: self.merkle.clone(),
            seq: Vec::new(),
            heads: Vec::new(),
            blobs: Vec::new(),
            salted: Vec::new(),
        }
    }

    /// The evidence for a call of `principal` in `session`.
    fn evidence(&self, principal: &str, session: &str) -> Evidence {
        let p = self.principals.get(principal).cloned().unwrap_or_default();
        let (s, a) = self
            .sessions
            .get(&(principal.to_owned(), session.to_owned()))
            .cloned()
            .unwrap_or_default();
        Evidence::from_parts(p, s, a)
    }

    fn add_call(&mut self, principal: &str, session: &str, tool: &str, time: u64, approved: bool) {
        Arc::make_mut(self.principals.entry(principal.to_owned()).or_default()).add_call(tool, time);
        let (s, a) = self
            .sessions
            .entry((principal.to_owned(), session.to_owned()))
            .or_default();
        Arc::make_mut(s).add_call(tool, time);
        if approved {
            Arc::make_mut(a).insert(tool.to_owned());
        }
    }

    fn add_cost(&mut self, principal: &str, session: &str, tool: &str, time: u64, cost: u64) {
        Arc::make_mut(self.principals.entry(principal.to_owned()).or_default()).add_cost(tool, time, cost);
        let (s, _) = self
            .sessions
            .entry((principal.to_owned(), session.to_owned()))
            .or_default();
        Arc::make_mut(s).add_cost(tool, time, cost);
    }

    /// Takes back a call counted by `add_call` (of a decision that was not written).
    fn remove_call(&mut self, principal: &str, session: &str, tool: &str, time: u64) {
        if let Some(p) = self.principals.get_mut(principal) {
            Arc::make_mut(p).remove_call(tool, time);
        }
        if let Some((s, _)) = self.sessions.get_mut(&(principal.to_owned(), session.to_owned())) {
            Arc::make_mut(s).remove_call(tool, time);
        }
    }

    /// Forgets a final INTENT (denied, or its effect recorded) and its call ids.
    fn remove_intent(&mut self, h: &Hash) -> Option<IntentInfo> {
        let i = self.intents.remove(h)?;
        for id in &i.call_ids {
            self.call_ids.remove(&(i.principal.clone(), id.clone()));
        }
        Some(i)
    }

    /// Applies a record of the store (at open) or one just appended.
    fn apply(&mut self, r: &Record<'_>, own_key: &[u8; 32]) {
        self.apply_counted(r, own_key, false);
    }

    /// As `apply`; `counted`: an ALLOW was already counted in the evidence when the
    /// decision was reserved (see [`pipeline`]).
    fn apply_counted(&mut self, r: &Record<'_>, own_key: &[u8; 32], counted: bool) {
        self.count = self.count.saturating_add(1);
        self.merkle.push(&r.hash);
        self.lamport = self.lamport.max(r.lamport);
        self.committed_lamport = self.committed_lamport.max(r.lamport);
        self.since_checkpoint = self.since_checkpoint.saturating_add(1);
        if r.kid == *own_key {
            self.time = self.time.max(r.time);
            self.seq.insert(r.session.to_owned(), r.seq.saturating_add(1));
            self.heads.insert(r.session.to_owned(), r.hash);
        }
        match r.body {
            Body::TrustEvent { .. } => self.registry.apply(r),
            Body::Policy { bundle, .. } => {
                self.policies.insert(bundle, r.hash);
            }
            Body::Checkpoint { .. } => {
                self.since_checkpoint = 0;
                self.last_checkpoint_time = r.time;
                self.metrics.checkpoints = self.metrics.checkpoints.saturating_add(1);
            }
            Body::Intent { tool, call_kind, args } => {
                let call_ids: Vec<String> = r.ext.and_then(call_id_of).map(str::to_owned).into_iter().collect();
                for id in &call_ids {
                    self.call_ids.insert((r.principal.to_owned(), id.clone()), r.hash);
                }
                self.intents.insert(
                    r.hash,
                    IntentInfo {
                        tool: tool.to_owned(),
                        call_kind,
                        args,
                        principal: r.principal.to_owned(),
                        session: r.session.to_owned(),
                        permit: None,
                        used: false,
                        escalate: None,
                        call_ids,
                    },
                );
            }
            Body::Decision {
                verdict,
                reason,
                policy,
                escalation,
            } => self.apply_decision(r, verdict, reason, policy, escalation, counted),
            Body::Approval { approvals } => {
                let Some(e) = r.parents.iter().next() else { return };
                let Some(esc) = self.escalations.get_mut(&e) else {
                    return;
                };
                esc.state = EscState::Approved(r.hash);
                esc.sigs = approvals.iter().collect();
                let intent = esc.intent;
                self.permits.insert(r.hash, intent);
                if let Some(i) = self.intents.get_mut(&intent) {
                    i.permit = Some(vec![e, r.hash]);
                    let (p, s, t) = (i.principal.clone(), i.session.clone(), i.tool.clone());
                    self.add_call(&p, &s, &t, r.time, true);
                }
                self.metrics.approvals = self.metrics.approvals.saturating_add(1);
            }
            Body::Effect { tool, meters, .. } => {
                let intent = r.parents.iter().find_map(|p| self.permits.get(&p).copied());
                if let Some(h) = intent {
                    if let Some(i) = self.remove_intent(&h) {
                        if let Some(pm) = &i.permit {
                            for p in pm {
                                self.permits.remove(p);
                            }
                        }
                        if let Some(key) = i.escalate.and_then(|e| self.escalations.remove(&e)).map(|e| e.key) {
                            self.by_key.remove(&key);
                        }
                    }
                }
                let cost = meters.and_then(|m| m.get(guardian::COST_METER)).unwrap_or(0);
                if cost > 0 {
                    let (p, s) = (r.principal.to_owned(), r.session.to_owned());
                    self.add_cost(&p, &s, tool, r.time, cost);
                }
                self.metrics.effects = self.metrics.effects.saturating_add(1);
            }
            Body::Violation { .. } | Body::Attestation { .. } => {}
        }
    }

    fn apply_decision(
        &mut self,
        r: &Record<'_>,
        verdict: Verdict,
        reason: &str,
        policy: Hash,
        escalation: Option<Escalation<'_>>,
        counted: bool,
    ) {
        let Some(intent) = r.parents.iter().find(|p| self.intents.contains_key(p)) else {
            return;
        };
        let resolved = r.parents.iter().find(|p| self.escalations.contains_key(p));
        let Some(info) = self.intents.get_mut(&intent) else {
            return;
        };
        match verdict {
            Verdict::Allow => {
                info.permit = Some(vec![r.hash]);
                let (p, s, t) = (info.principal.clone(), info.session.clone(), info.tool.clone());
                self.permits.insert(r.hash, intent);
                if !counted {
                    self.add_call(&p, &s, &t, r.time, false);
                }
            }
            Verdict::Deny => {
                // The INTENT is final: nothing more can happen to it. A resolved
                // escalation stays (it answers retries for a while).
                self.remove_intent(&intent);
                if let Some(e) = resolved.and_then(|e| self.escalations.get_mut(&e)) {
                    e.state = EscState::Denied(reason.to_owned(), r.time);
                }
            }
            Verdict::Escalate => {
                let Some(t) = escalation else { return };
                info.escalate = Some(r.hash);
                let (tool, principal, session) = (info.tool.clone(), info.principal.clone(), info.session.clone());
                // The retry key is rebuilt from the argument blob when the store is
                // reopened (see `Kernel::open`); until then it is unknown.
                self.escalations.insert(
                    r.hash,
                    Esc {
                        intent,
                        key: [0; 32],
                        role: t.role.to_owned(),
                        quorum: t.quorum,
                        not_before: t.not_before,
                        expires: t.expires,
                        sigs: BTreeMap::new(),
                        state: EscState::Pending,
                        policy,
                        tool,
                        principal,
                        session,
                    },
                );
            }
        }
    }
}

impl Staged {
    fn time(&mut self, clock: u64) -> u64 {
        self.time = self.time.max(clock);
        self.time
    }

    /// Signs one record of the kernel in `session` with `parents`.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        st: &State,
        signer: &dyn RecordSigner,
        kind: Kind,
        body: Vec<u8>,
        parents: Vec<Hash>,
        principal: &str,
        session: &str,
        ext: Option<Vec<u8>>,
    ) -> Result<Hash, KernelError> {
        let seq = self
            .seq
            .iter()
            .rev()
            .find(|(s, _)| s == session)
            .map(|(_, n)| *n)
            .or_else(|| st.seq.get(session).copied())
            .unwrap_or(0);
        self.push_at(signer, kind, body, parents, principal, session, seq, ext)
    }

    /// Signs a record without parents with sequence number `seq` (reserved earlier).
    fn push_seq(
        &mut self,
        signer: &dyn RecordSigner,
        kind: Kind,
        body: Vec<u8>,
        principal: &str,
        session: &str,
        seq: u64,
    ) -> Result<Hash, KernelError> {
        self.push_at(signer, kind, body, Vec::new(), principal, session, seq, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_at(
        &mut self,
        signer: &dyn RecordSigner,
        kind: Kind,
        body: Vec<u8>,
        parents: Vec<Hash>,
        principal: &str,
        session: &str,
        seq: u64,
        ext: Option<Vec<u8>>,
    ) -> Result<Hash, KernelError> {
        self.lamport = self.lamport.saturating_add(1);
        let builder = RecordBuilder {
            kind,
            parents,
            lamport: self.lamport,
            time: self.time,
            principal: principal.to_owned(),
            session: session.to_owned(),
            seq,
            body,
            ext,
        };
        let bytes = sign_record(&builder, signer).map_err(|e| KernelError::Sign(e.to_string()))?;
        let hash = sha256(&bytes);
        self.merkle.push(&hash);
        self.count = self.count.saturating_add(1);
        self.seq.push((session.to_owned(), seq.saturating_add(1)));
        self.heads.push((session.to_owned(), hash));
        self.records.push(bytes);
        self.hashes.push(hash);
        Ok(hash)
    }

    fn head(&self, st: &State, session: &str) -> Option<Hash> {
        self.heads
            .iter()
            .rev()
            .find(|(s, _)| s == session)
            .map(|(_, h)| *h)
            .or_else(|| st.heads.get(session).copied())
    }
}

impl Kernel {
    /// Opens the store, checks the trust chain and the kernel key, replays the store to
    /// restore clocks, sequences and open approvals, and records new TRUST_EVENTs and
    /// POLICY activations.
    pub fn open(
        config: KernelConfig,
        signer: Arc<dyn RecordSigner>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Kernel, OpenReport), KernelError> {
        let chain = check_chain(&config.anchors, &config.trust_chain).map_err(|e| KernelError::Trust(e.0))?;
        let key = signer.public_key();
        let fs = config.fs.clone().unwrap_or_else(|| Arc::new(crate::store::RealFs));
        let (records, recovery) =
            Store::open_with(&config.store_dir.join("records"), config.store.clone(), fs.clone())?;
        let mut blob_options = config.store.clone();
        blob_options.max_record = crate::store::MAX_FRAME;
        let (blobs, _) = Store::open_with(&config.store_dir.join("blobs"), blob_options, fs.clone())?;
        let mut log_options = config.store.clone();
        log_options.max_record = APPROVAL_ENTRY;
        let (approvals_log, _) = Store::open_with(&config.store_dir.join("approvals"), log_options, fs)?;
        let blobs = Arc::new(blobs);
        let durable = matches!(config.store.durability, crate::store::Durability::Durable);
        let mut st = State::default();
        let mut bad = None;
        records.for_each_record(|i, bytes| {
            match Record::decode(bytes) {
                Ok(r) => st.apply(&r, &key),
                Err(e) => {
                    bad.get_or_insert(format!("record {i} does not decode: {}", e.name()));
                }
            }
            Ok::<(), StoreError>(())
        })?;
        if let Some(b) = bad {
            return Err(KernelError::Corrupt(b));
        }
        // Rebuild the retry keys of open escalations from their argument blobs.
        let mut wanted: HashMap<Hash, Hash> = HashMap::new();
        for (e, esc) in &st.escalations {
            if let Some(i) = st.intents.get(&esc.intent) {
                wanted.insert(i.args, *e);
            }
        }
        blobs.for_each_record(|_, frame| {
            if let Some((name, content)) = frame.split_at_checked(32) {
                if let Ok(name) = <Hash>::try_from(name) {
                    st.blobs.insert(name);
                    if let Some(e) = wanted.get(&name) {
                        let esc_key = st.escalations.get(e).and_then(|esc| {
                            let i = st.intents.get(&esc.intent)?;
                            let args = content.get(SALT_LEN..)?;
                            Some(intent_key(&i.tool, i.call_kind, args, &i.principal, &i.session))
                        });
                        if let (Some(k), Some(esc)) = (esc_key, st.escalations.get_mut(e)) {
                            esc.key = k;
                            if matches!(esc.state, EscState::Pending | EscState::Approved(_))
                                && !st.intents.get(&esc.intent).is_some_and(|i| i.used)
                            {
                                st.by_key.insert(k, *e);
                            }
                        }
                    }
                }
            }
            Ok::<(), StoreError>(())
        })?;

        let guardian = Guardian::new(config.bundles, config.limits);
        let (wasm, wasm_tools) = wasm::WasmTools::new(config.wasm_tools)?;
        let kernel = Kernel {
            state: Mutex::new(st),
            drained: Condvar::new(),
            records,
            approvals_log,
            blob_sync: if durable {
                let b = blob_sync::BlobSync::start(blobs.clone()).map_err(|e| {
                    KernelError::Store(StoreError::io(
                        "start the blob sync thread for",
                        &config.store_dir,
                        None,
                        e,
                    ))
                })?;
                Some(b)
            } else {
                None
            },
            blobs,
            signer,
            key,
            guardian,
            clock,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval_ms: config.checkpoint_interval_ms,
            resolved_ttl_ms: config.resolved_ttl_ms,
            durable,
            in_flight_hint: AtomicU64::new(0),
            answers: Default::default(),
            wasm,
        };
        let mut report = OpenReport {
            records: recovery.records,
            truncated_bytes: recovery.truncated_bytes,
            torn: recovery.torn.clone(),
            trust_events_added: 0,
            policies_added: 0,
            pending_approvals: 0,
            modules_attested: 0,
            approver_signatures_restored: 0,
        };
        let ticket = {
            let mut st = kernel.lock();
            let mut staged = st.stage();
            // New trust events first, verbatim, in chain order.
            let mut added = Vec::new();
            for r in &chain {
                let h = sha256(r);
                if !st.registry.contains(&h) {
                    staged.records.push(r.clone());
                    staged.hashes.push(h);
                    staged.merkle.push(&h);
                    staged.count = staged.count.saturating_add(1);
                    added.push(r.clone());
                }
            }
            // New events must keep the store a valid stream (rotations and revocations
            // need cut-offs in it, spec/verification.md §6.4): verify the store with them
            // appended before writing anything. Only when the chain changed.
            if !added.is_empty() {
                kernel.verify_with(&config.anchors, &added)?;
            }
            let mut registry = st.registry.clone();
            for r in &added {
                if let Ok(rec) = Record::decode(r) {
                    registry.apply(&rec);
                }
            }
            if !registry.active(&key, verify_core::ROLE_KERNEL) {
                return Err(KernelError::Trust(format!(
                    "the kernel key ed25519:{} ({}) is not an active key with role kernel in the trust chain",
                    hex::encode(key),
                    kernel.signer.describe()
                )));
            }
            report.trust_events_added = added.len();
            let now = kernel.clock.now_ms();
            staged.time(now);
            for b in kernel.guardian.bundles() {
                if st.policies.contains_key(&b.hash()) {
                    continue;
                }
                let name = b.spec().name.clone();
                if !st.blobs.contains(&b.hash()) {
                    let mut frame = b.hash().to_vec();
                    frame.extend_from_slice(b.canonical());
                    staged.blobs.push(frame);
                }
                staged.push(
                    &st,
                    kernel.signer.as_ref(),
                    Kind::Policy,
                    body::policy(&b.hash(), Some(&name)),
                    Vec::new(),
                    "kernel",
                    "",
                    None,
                )?;
                report.policies_added = report.policies_added.saturating_add(1);
            }
            kernel.commit(&mut st, staged)?
        };
        kernel.wait(ticket)?;
        report.modules_attested = kernel.attest_modules(&wasm_tools)?;
        report.approver_signatures_restored = kernel.restore_approver_signatures()?;
        report.pending_approvals = kernel
            .lock()
            .escalations
            .values()
            .filter(|e| e.state == EscState::Pending)
            .count();
        Ok((kernel, report))
    }

    /// Counts again the approver signatures of the approvals log that still count: the
    /// escalation is pending, the key is active with its role, the signature verifies
    /// over its challenge, and the key was not counted yet. Others (resolved
    /// escalations, retired keys, a damaged entry) are skipped: the log only saves
    /// approvers a second submission, it never admits anything by itself.
    fn restore_approver_signatures(&self) -> Result<usize, KernelError> {
        let mut st = self.lock();
        let mut restored = 0usize;
        self.approvals_log.for_each_record(|_, entry| {
            let parts = (
                entry.get(..32).and_then(|b| <Hash>::try_from(b).ok()),
                entry.get(32..64).and_then(|b| <[u8; 32]>::try_from(b).ok()),
                entry.get(64..APPROVAL_ENTRY).and_then(|b| <[u8; 64]>::try_from(b).ok()),
            );
            let (Some(id), Some(approver), Some(signature)) = parts else {
                return Ok::<(), StoreError>(());
            };
            let counts = st.escalations.get(&id).is_some_and(|e| {
                e.state == EscState::Pending
                    && !e.sigs.contains_key(&approver)
                    && (e.sigs.len() as u64).saturating_add(1) < e.quorum
                    && st.registry.active(&approver, &e.role)
                    && verify_core::verify_signature(&approver, &approval_challenge(&id), &signature)
            });
            if counts {
                if let Some(e) = st.escalations.get_mut(&id) {
                    e.sigs.insert(approver, signature);
                    restored = restored.saturating_add(1);
                }
            }
            Ok(())
        })?;
        Ok(restored)
    }

    /// Verifies the whole store followed by `extra` records as one stream.
    fn verify_with(&self, anchors: &[[u8; 32]], extra: &[Vec<u8>]) -> Result<(), KernelError> {
        let n = usize::try_from(self.records.len())
            .unwrap_or(usize::MAX)
            .saturating_add(extra.len());
        let mut tables = verify_core::OwnedTables::new(verify_core::Capacity::for_records(n));
        let mut v = verify_core::Verifier::new(anchors, tables.tables())
            .map_err(|e| KernelError::Trust(format!("trust root: {e:?}")))?;
        let fail = |i: u64, e: verify_core::VerifyError, what: &str| {
            KernelError::Trust(format!(
                "{what} {i} fails {} with the new trust chain (a key that signed records here is \
                 rotated or revoked only with a cut-off CHECKPOINT of this store after its last record)",
                e.code.name()
            ))
        };
        self.records
            .for_each_record(|i, bytes| v.push(bytes).map(|_| ()).map_err(|e| fail(i, e, "store record")))?;
        for (i, r) in extra.iter().enumerate() {
            v.push(r).map_err(|e| fail(i as u64, e, "new trust chain event"))?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half-applied state (commit applies
        // after the store accepted the records), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the staged blobs and records and applies the records to the state.
    /// Returns the tickets to wait for (records, blobs).
    fn commit(&self, st: &mut State, staged: Staged) -> Result<(Option<Ticket>, Option<Ticket>), KernelError> {
        self.commit_counted(st, staged, false)
    }

    /// As `commit`; `counted`: the staged DECISION's ALLOW is already in the evidence.
    fn commit_counted(
        &self,
        st: &mut State,
        staged: Staged,
        counted: bool,
    ) -> Result<(Option<Ticket>, Option<Ticket>), KernelError> {
        let blob_ticket = if staged.blobs.is_empty() && staged.salted.is_empty() {
            None
        } else {
            let frames: Vec<&[u8]> = staged.salted.iter().chain(&staged.blobs).map(Vec::as_slice).collect();
            Some(self.blobs.append(&frames)?)
        };
        if staged.records.is_empty() {
            return Ok((None, blob_ticket));
        }
        let frames: Vec<&[u8]> = staged.records.iter().map(Vec::as_slice).collect();
        let t = self.records.append(&frames)?;
        for b in &staged.blobs {
            if let Some(name) = b.get(..32).and_then(|n| <Hash>::try_from(n).ok()) {
                st.blobs.insert(name);
            }
        }
        for bytes in &staged.records {
            if let Ok(r) = Record::decode(bytes) {
                st.apply_counted(&r, &self.key, counted);
            }
        }
        st.metrics.records = st.count;
        Ok((Some(t), blob_ticket))
    }

    fn wait(&self, tickets: (Option<Ticket>, Option<Ticket>)) -> Result<(), KernelError> {
        if let (Some(r), Some(b), Some(sync)) = (tickets.0, tickets.1, &self.blob_sync) {
            // Both fsyncs at once: the blobs' on the sync thread, the records' here.
            sync.request(b);
            if self.in_flight_hint.load(Ordering::Relaxed) > 0 {
                // Decisions about to be appended: let them in before an fsync starts.
                std::thread::yield_now();
            }
            let records = self.records.wait_durable(r);
            let blobs = sync.wait(b);
            records?;
            return blobs.map_err(|e| KernelError::Store(StoreError::Poisoned { reason: e }));
        }
        if let Some(t) = tickets.1 {
            self.blobs.wait_durable(t)?;
        }
        if let Some(t) = tickets.0 {
            self.records.wait_durable(t)?;
        }
        Ok(())
    }

    /// Adds a CHECKPOINT to `staged` if one is due by count.
    fn maybe_checkpoint(&self, st: &State, staged: &mut Staged) -> Result<(), KernelError> {
        let since = st.since_checkpoint.saturating_add(staged.records.len() as u64);
        if self.checkpoint_every > 0 && since >= self.checkpoint_every {
            self.stage_checkpoint(st, staged)?;
        }
        Ok(())
    }

    fn stage_checkpoint(&self, st: &State, staged: &mut Staged) -> Result<Hash, KernelError> {
        let count = staged.count;
        let root = staged.merkle.root();
        staged.push(
            st,
            self.signer.as_ref(),
            Kind::Checkpoint,
            body::checkpoint(count, &root, &[]),
            Vec::new(),
            "kernel",
            "",
            None,
        )
    }

    /// Denies, with `APPROVAL_TIMEOUT`, every pending escalation whose window closed.
    fn stage_timeouts(&self, st: &State, staged: &mut Staged) -> Result<(), KernelError> {
        let expired: Vec<(Hash, Hash)> = st
            .escalations
            .iter()
            .filter(|(_, e)| e.state == EscState::Pending && e.expires < staged.time)
            .map(|(h, e)| (*h, e.intent))
            .collect();
        for (e, intent) in expired {
            let Some(x) = st.escalations.get(&e) else { continue };
            let (policy, p, s) = (x.policy, x.principal.clone(), x.session.clone());
            staged.push(
                st,
                self.signer.as_ref(),
                Kind::Decision,
                body::decision(Verdict::Deny, "APPROVAL_TIMEOUT", &policy, None),
                vec![intent, e],
                &p,
                &s,
                None,
            )?;
        }
        Ok(())
    }

    fn pending_view(&self, st: &State, e: &Hash) -> Option<PendingApproval> {
        let esc = st.escalations.get(e)?;
        Some(PendingApproval {
            id: hexs(e),
            challenge: hex::encode(approval_challenge(e)),
            role: esc.role.clone(),
            quorum: esc.quorum,
            approvers: esc.sigs.keys().map(hex::encode).collect(),
            not_before: esc.not_before,
            expires: esc.expires,
            state: match esc.state {
                EscState::Pending => "pending".into(),
                EscState::Approved(_) => "approved".into(),
                EscState::Denied(..) => "denied".into(),
            },
            tool: esc.tool.clone(),
            principal: esc.principal.clone(),
            session: esc.session.clone(),
        })
    }

    /// Decides a proposed call: INTENT and DECISION become durable records before the
    /// answer returns. Never fails: anything that goes wrong is DENY `KERNEL_ERROR`.
    pub fn evaluate(&self, p: &Proposal) -> Answer {
        self.count_answer(
            self.evaluate_inner(p, None)
                .unwrap_or_else(|e| Answer::kernel_error(&e)),
        )
    }

    /// Records a call whose arguments could not be presented to Guardian, as an INTENT
    /// (the arguments as received) and a DENY with `reason`: `INVALID_ARGUMENTS` (not
    /// valid JSON) or `TRUNCATED_ARGUMENTS` (cut off). Guardian is not asked; the
    /// DENY's `policy` is the hash of the bundle set (as for `NO_POLICY_DEFINED`), and
    /// replay counts it as a kernel denial. Never fails: a recording failure, or another
    /// reason, is DENY `KERNEL_ERROR`.
    pub fn deny_malformed(&self, p: &Proposal, reason: &str) -> Answer {
        let answer = if MALFORMED_REASONS.contains(&reason) {
            self.evaluate_inner(p, Some(reason))
                .unwrap_or_else(|e| Answer::kernel_error(&e))
        } else {
            Answer::kernel_error(&format!("{reason} is not a reason for a malformed call"))
        };
        self.count_answer(answer)
    }

    fn count_answer(&self, answer: Answer) -> Answer {
        let status = match answer.status {
            Status::Allow => ALLOWS,
            Status::Deny => DENIES,
            Status::Pending => PENDINGS,
        };
        let count = |i: usize| {
            if let Some(c) = self.answers.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        count(status);
        if answer.reason == "KERNEL_ERROR" {
            count(KERNEL_ERRORS);
        }
        answer
    }

    /// Decides `p` with Guardian, or, with `malformed`, records the kernel's DENY with
    /// that reason without asking Guardian.
    fn evaluate_inner(&self, p: &Proposal, malformed: Option<&str>) -> Result<Answer, KernelError> {
        let (call_kind, args) = match canonical_args(&p.args) {
            Ok(a) => a,
            Err(e) => return Ok(Answer::kernel_error(&e)),
        };
        let key = intent_key(&p.tool, call_kind, &args, &p.principal, &p.session);
        let (args_hash, args_blob) = salted(&args).map_err(KernelError::Sign)?;
        let job = {
            let mut st = self.lock_reserve();
            let now = st.time.max(self.clock.now_ms());
            if st
                .escalations
                .values()
                .any(|e| e.state == EscState::Pending && e.expires < now)
            {
                // Resolve timeouts first (alone), so that a retry below sees them.
                drop(st);
                self.resolve_timeouts()?;
                st = self.lock_reserve();
            }
            if let Some(f) = Self::pipeline_failure(&st) {
                return Err(KernelError::Sign(format!(
                    "refused while the kernel recovers from a failure ({f}); retry"
                )));
            }
            st.time = st.time.max(self.clock.now_ms());
            let time = st.time;
            let retried = match malformed {
                Some(_) => None,
                None => self.retry_answer(&mut st, &key, time),
            };
            if let Some(answer) = retried {
                // A retry under a new call id: that id names the same INTENT (held in
                // memory; after a restart the retry finds the INTENT by its content).
                if let (Some(id), Some(intent)) = (&p.call_id, answer.intent.as_deref()) {
                    if let Some(ih) = hex::decode(intent).ok().and_then(|v| Hash::try_from(v).ok()) {
                        if let Some(info) = st.intents.get_mut(&ih) {
                            if !info.call_ids.contains(id) {
                                info.call_ids.push(id.clone());
                            }
                            st.call_ids.insert((p.principal.clone(), id.clone()), ih);
                        }
                    }
                }
                return Ok(answer);
            }
            let decision = match malformed {
                Some(reason) => guardian::Decision {
                    verdict: Verdict::Deny,
                    reason: reason.to_owned(),
                    policy: guardian::set_hash(&self.guardian.bundles().iter().map(Bundle::hash).collect::<Vec<_>>()),
                    escalation: None,
                    rule: None,
                    error: None,
                },
                None => {
                    let req = Request {
                        tool: p.tool.clone(),
                        args: match &p.args {
                            Args::Json(v) => v.clone(),
                            Args::Text(t) => serde_json::Value::String(t.clone()),
                        },
                        principal: p.principal.clone(),
                        session: p.session.clone(),
                        context: serde_json::Value::Object(serde_json::Map::new()),
                        time,
                    };
                    // The evidence's references are released before the state changes:
                    // `add_call` would otherwise copy the whole history (Arc::make_mut
                    // on a shared Arc).
                    let ev = st.evidence(&p.principal, &p.session);
                    self.guardian.decide(&req, &ev)
                }
            };
            let mut blob = args_hash.to_vec();
            blob.extend_from_slice(&args_blob);
            self.reserve(
                &mut st,
                pipeline::Reservation {
                    tool: p.tool.clone(),
                    call_kind,
                    args_hash,
                    principal: p.principal.clone(),
                    session: p.session.clone(),
                    call_id: p.call_id.clone(),
                    decision,
                    key,
                    blob,
                    time,
                },
            )
        };
        let (answer, tickets) = self.sign_and_commit(job)?;
        self.wait(tickets)?;
        Ok(answer)
    }

    /// Denies the escalations whose window closed, with no decision in flight.
    fn resolve_timeouts(&self) -> Result<(), KernelError> {
        let tickets = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            staged.time(self.clock.now_ms());
            self.stage_timeouts(&st, &mut staged)?;
            self.commit(&mut st, staged)?
        };
        self.wait(tickets)
    }

    /// The answer for a retried escalated call, if there is one.
    fn retry_answer(&self, st: &mut State, key: &Hash, now: u64) -> Option<Answer> {
        let e = *st.by_key.get(key)?;
        let esc = st.escalations.get(&e)?.clone();
        let base = |status: Status, reason: &str| Answer {
            status,
            reason: reason.into(),
            rule: None,
            intent: Some(hexs(&esc.intent)),
            decision: Some(hexs(&e)),
            policy: Some(hexs(&esc.policy)),
            approval: self.pending_view(st, &e),
            durable: self.durable,
            error: None,
        };
        match &esc.state {
            EscState::Pending => Some(base(Status::Pending, "POLICY_ESCALATE")),
            EscState::Approved(a) => {
                let mut ans = base(Status::Allow, "APPROVAL_GRANTED");
                ans.decision = Some(hexs(a));
                Some(ans)
            }
            EscState::Denied(reason, at) => {
                if now.saturating_sub(*at) > self.resolved_ttl_ms {
                    st.by_key.remove(key);
                    None
                } else {
                    Some(base(Status::Deny, reason))
                }
            }
        }
    }

    /// Records the outcome of an allowed call. Refused (and recorded as a VIOLATION
    /// `RESULT_WITHOUT_PERMIT`) if the INTENT has no open permit of the reporting
    /// principal: denied, pending, already used, unknown, or another principal's.
    pub fn report_effect(&self, e: &EffectReport) -> Result<String, Refusal> {
        let kerr = |x: KernelError| refuse("KERNEL_ERROR", x.to_string());
        let (out_hash, out_blob) = salted(&e.output).map_err(|m| refuse("KERNEL_ERROR", m))?;
        let (result, tickets) = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            staged.time(self.clock.now_ms());
            let info = st.intents.get(&e.intent).cloned();
            let problem = match &info {
                None => Some((
                    "NO_OPEN_PERMIT",
                    "no open permit: the call was denied, its effect was already reported, or it is unknown",
                )),
                Some(i) if i.principal != e.principal => Some(("NOT_YOUR_INTENT", "the call is another principal's")),
                Some(i) if i.permit.is_none() => {
                    Some(("NO_PERMIT", "the call was not allowed (or its approval is pending)"))
                }
                Some(_) => None,
            };
            if let Some((code, why)) = problem {
                // The claim that a call without a permit ran is itself evidence.
                let detail = format!("{code}: {why}");
                let (parents, session) = match &info {
                    Some(i) => (vec![e.intent], i.session.clone()),
                    None => (Vec::new(), String::new()),
                };
                staged
                    .push(
                        &st,
                        self.signer.as_ref(),
                        Kind::Violation,
                        body::violation("RESULT_WITHOUT_PERMIT", Some(&e.intent), Some(&detail)),
                        parents,
                        &e.principal,
                        &session,
                        None,
                    )
                    .map_err(kerr)?;
                let t = self.commit(&mut st, staged).map_err(kerr)?;
                drop(st);
                self.wait(t).map_err(kerr)?;
                return Err(refuse(code, format!("INTENT {}: {why}", hexs(&e.intent))));
            }
            let Some(info) = info else {
                return Err(refuse("NO_OPEN_PERMIT", "no open permit"));
            };
            let permit = info.permit.clone().unwrap_or_default();
            let mut frame = out_hash.to_vec();
            frame.extend_from_slice(&out_blob);
            staged.salted.push(frame);
            for b in &e.blobs {
                let name = sha256(b);
                if !st.blobs.contains(&name) {
                    let mut frame = name.to_vec();
                    frame.extend_from_slice(b);
                    staged.blobs.push(frame);
                }
            }
            let meters: Vec<(&str, u64)> = e.meters.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let effect = staged
                .push(
                    &st,
                    self.signer.as_ref(),
                    Kind::Effect,
                    body::effect(&Effect {
                        status: e.status,
                        tool: &info.tool,
                        call_kind: info.call_kind,
                        args: info.args,
                        output: out_hash,
                        executor: &e.executor,
                        meters: &meters,
                    }),
                    permit,
                    &info.principal,
                    &info.session,
                    e.ext.clone(),
                )
                .map_err(kerr)?;
            self.maybe_checkpoint(&st, &mut staged).map_err(kerr)?;
            let t = self.commit(&mut st, staged).map_err(kerr)?;
            (hexs(&effect), t)
        };
        self.wait(tickets).map_err(kerr)?;
        Ok(result)
    }

    /// The open INTENT (hex) that `principal`'s call id names, if any: undecided,
    /// escalated, or allowed with its effect not yet reported.
    pub fn intent_for_call(&self, principal: &str, call_id: &str) -> Option<String> {
        let st = self.lock();
        st.call_ids.get(&(principal.to_owned(), call_id.to_owned())).map(hexs)
    }

    /// Open and recently resolved approvals.
    pub fn approvals(&self) -> Vec<PendingApproval> {
        let st = self.lock();
        st.escalations
            .keys()
            .filter_map(|e| self.pending_view(&st, e))
            .collect()
    }

    /// One approval by id.
    pub fn approval(&self, id: &Hash) -> Option<PendingApproval> {
        let st = self.lock();
        self.pending_view(&st, id)
    }

    /// Counts an approver's signature over the challenge of escalation `id`. When the
    /// quorum is reached the APPROVAL is recorded (durably) and the call is allowed
    /// from then on.
    pub fn submit_approval(
        &self,
        id: &Hash,
        approver: [u8; 32],
        signature: [u8; 64],
    ) -> Result<PendingApproval, Refusal> {
        let kerr = |x: KernelError| refuse("KERNEL_ERROR", x.to_string());
        let tickets = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            let now = staged.time(self.clock.now_ms());
            let Some(esc) = st.escalations.get(id).cloned() else {
                return Err(refuse("UNKNOWN_APPROVAL", format!("no escalation {}", hexs(id))));
            };
            if esc.state != EscState::Pending {
                return Err(refuse("ALREADY_RESOLVED", "the escalation is already resolved"));
            }
            if now < esc.not_before {
                return Err(refuse(
                    "APPROVAL_TIMELOCK",
                    format!(
                        "the timelock runs until kernel time {} ({} ms from now)",
                        esc.not_before,
                        esc.not_before.saturating_sub(now)
                    ),
                ));
            }
            if now > esc.expires {
                return Err(refuse("APPROVAL_EXPIRED", "the approval window has closed"));
            }
            if !st.registry.active(&approver, &esc.role) {
                return Err(refuse(
                    "APPROVAL_ROLE",
                    format!(
                        "ed25519:{} is not an active key with role {}",
                        hex::encode(approver),
                        esc.role
                    ),
                ));
            }
            let challenge = approval_challenge(id);
            let valid = verify_core::verify_signature(&approver, &challenge, &signature);
            if !valid {
                return Err(refuse(
                    "APPROVAL_INVALID",
                    "the signature does not verify over this escalation's challenge",
                ));
            }
            if esc.sigs.contains_key(&approver) {
                return Err(refuse("APPROVAL_DUPLICATE", "this approver was already counted"));
            }
            let mut sigs = esc.sigs.clone();
            sigs.insert(approver, signature);
            if (sigs.len() as u64) < esc.quorum {
                // Below quorum: the signature is kept in the approvals log, so that a
                // restart does not ask the approver again; answered once it is durable.
                let mut entry = Vec::with_capacity(APPROVAL_ENTRY);
                entry.extend_from_slice(id);
                entry.extend_from_slice(&approver);
                entry.extend_from_slice(&signature);
                let ticket = self.approvals_log.append(&[&entry]).map_err(|e| kerr(e.into()))?;
                if let Some(e) = st.escalations.get_mut(id) {
                    e.sigs = sigs;
                }
                let view = self.pending_view(&st, id);
                drop(st);
                self.approvals_log.wait_durable(ticket).map_err(|e| kerr(e.into()))?;
                return view.ok_or_else(|| refuse("UNKNOWN_APPROVAL", "gone"));
            }
            let list: Vec<([u8; 32], [u8; 64])> = sigs.into_iter().collect();
            staged
                .push(
                    &st,
                    self.signer.as_ref(),
                    Kind::Approval,
                    body::approval(&list),
                    vec![*id],
                    &esc.principal,
                    &esc.session,
                    None,
                )
                .map_err(kerr)?;
            self.maybe_checkpoint(&st, &mut staged).map_err(kerr)?;
            self.commit(&mut st, staged).map_err(kerr)?
        };
        self.wait(tickets).map_err(kerr)?;
        self.approval(id).ok_or_else(|| refuse("UNKNOWN_APPROVAL", "gone"))
    }

    /// Housekeeping, called periodically by a server: denies expired escalations and
    /// writes a CHECKPOINT when one is due by time.
    pub fn tick(&self) -> Result<(), KernelError> {
        let tickets = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            let now = staged.time(self.clock.now_ms());
            self.stage_timeouts(&st, &mut staged)?;
            // Forget denials older than the retry window.
            let ttl = self.resolved_ttl_ms;
            let stale: Vec<(Hash, Hash)> = st
                .escalations
                .iter()
                .filter(|(_, e)| matches!(e.state, EscState::Denied(_, at) if now.saturating_sub(at) > ttl))
                .map(|(h, e)| (*h, e.key))
                .collect();
            for (h, key) in stale {
                st.escalations.remove(&h);
                if st.by_key.get(&key) == Some(&h) {
                    st.by_key.remove(&key);
                }
            }
            let pending = st.since_checkpoint.saturating_add(staged.records.len() as u64);
            if self.checkpoint_interval_ms > 0
                && pending > 0
                && now.saturating_sub(st.last_checkpoint_time) >= self.checkpoint_interval_ms
            {
                self.stage_checkpoint(&st, &mut staged)?;
            }
            self.commit(&mut st, staged)?
        };
        self.wait(tickets)
    }

    /// Writes a CHECKPOINT now (if any record came after the last one); returns the
    /// newest CHECKPOINT's position and hash.
    pub fn checkpoint(&self) -> Result<Option<(u64, String)>, KernelError> {
        let (tickets, out) = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            staged.time(self.clock.now_ms());
            if st.since_checkpoint == 0 {
                return Ok(None);
            }
            let pos = staged.count;
            let h = self.stage_checkpoint(&st, &mut staged)?;
            (self.commit(&mut st, staged)?, Some((pos, hexs(&h))))
        };
        self.wait(tickets)?;
        Ok(out)
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        let st = self.lock();
        let mut m = st.metrics.clone();
        m.records = st.count;
        drop(st);
        let count = |i: usize| self.answers.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        m.allow = count(ALLOWS);
        m.deny = count(DENIES);
        m.pending = count(PENDINGS);
        m.kernel_errors = count(KERNEL_ERRORS);
        m
    }

    /// The kernel's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key
    }

    /// Where the kernel key lives (for health output).
    pub fn signer_description(&self) -> String {
        self.signer.describe()
    }

    /// Whether answers wait for fsync.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Records `from..from+limit` of the store, in order (for the HTTP API): fewer if
    /// the store ends first. Reads from the segment holding `from` and stops after the
    /// last record asked for ([`Store::read_range`]), so a page costs what it returns
    /// (plus, at most, the records before `from` in its segment), not the store's size.
    pub fn records_range(&self, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, KernelError> {
        let mut out = Vec::new();
        self.records.read_range(from, limit, |_, bytes| {
            out.push(bytes.to_vec());
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }

    /// The state of the record and blob stores, for health output: a poisoned store (a
    /// failed `fsync`) refuses every append until the kernel is reopened, so every
    /// decision is denied (`KERNEL_ERROR`) meanwhile.
    pub fn store_state(&self) -> StoreState {
        StoreState {
            records: self.records.len(),
            durability: self.records.durability().clone(),
            records_poisoned: self.records.poisoned().map(str::to_owned),
            blobs_poisoned: self.blobs.poisoned().map(str::to_owned),
            record_stats: self.records.stats(),
            blob_stats: self.blobs.stats(),
        }
    }

    /// The bundles Guardian decides with.
    pub fn bundles(&self) -> &[Bundle] {
        self.guardian.bundles()
    }

    /// Records an ATTESTATION of a registered subtype (spec/registries.md §3), for
    /// example a `tool-pin` (subject: SHA-256 of a tool's canonical definition), with
    /// its blobs, durably. Refused (`INVALID_ATTESTATION`, nothing recorded) if the
    /// subtype is not registered or the claims are not a deterministic CBOR map.
    pub fn attest(&self, a: &AttestationReport) -> Result<String, Refusal> {
        if !verify_core::ATTESTATION_TYPES.contains(&a.subtype.as_str()) {
            return Err(refuse(
                "INVALID_ATTESTATION",
                format!("{:?} is not a registered attestation subtype", a.subtype),
            ));
        }
        let body = body::attestation(&a.subtype, &a.subject, a.claims.as_deref());
        self.append_statement(Kind::Attestation, body, &a.principal, &a.session, &a.blobs)
    }

    /// Records a VIOLATION with a code registered for VIOLATION records (for example
    /// `TOOL_DEFINITION_CHANGED` or `PROTOCOL_VIOLATION`), durably. The detail is cut to
    /// the format's 1024 bytes (at a character boundary). Refused (`INVALID_VIOLATION`,
    /// nothing recorded) for an unregistered code.
    pub fn record_violation(
        &self,
        code: &str,
        subject: Option<&Hash>,
        detail: Option<&str>,
        principal: &str,
        session: &str,
    ) -> Result<String, Refusal> {
        if !verify_core::reason_allowed(code, verify_core::ReasonUse::Violation) {
            return Err(refuse(
                "INVALID_VIOLATION",
                format!("{code:?} is not registered for VIOLATION records"),
            ));
        }
        let detail = detail.map(|d| {
            let mut end = d.len().min(1024);
            while !d.is_char_boundary(end) {
                end = end.saturating_sub(1);
            }
            d.get(..end).unwrap_or_default()
        });
        let body = body::violation(code, subject, detail);
        self.append_statement(Kind::Violation, body, principal, session, &[])
    }

    /// Stages, signs and durably appends one record without parents beyond the
    /// session's head: an ATTESTATION or a VIOLATION. The record is decoded before it
    /// is appended, so a malformed body is refused instead of stored.
    fn append_statement(
        &self,
        kind: Kind,
        body: Vec<u8>,
        principal: &str,
        session: &str,
        blobs: &[Vec<u8>],
    ) -> Result<String, Refusal> {
        let kerr = |x: KernelError| refuse("KERNEL_ERROR", x.to_string());
        if principal.is_empty() || principal.len() > 256 || session.len() > 256 {
            return Err(refuse("INVALID_STATEMENT", "principal or session out of bounds"));
        }
        let (hash, tickets) = {
            let mut st = self.lock_drained();
            let mut staged = st.stage();
            staged.time(self.clock.now_ms());
            for b in blobs {
                let name = sha256(b);
                if !st.blobs.contains(&name) && !staged.blobs.iter().any(|f| f.get(..32) == Some(&name[..])) {
                    let mut frame = name.to_vec();
                    frame.extend_from_slice(b);
                    staged.blobs.push(frame);
                }
            }
            let parents = staged.head(&st, session).into_iter().collect();
            let h = staged
                .push(&st, self.signer.as_ref(), kind, body, parents, principal, session, None)
                .map_err(kerr)?;
            if staged.records.last().is_none_or(|r| Record::decode(r).is_err()) {
                return Err(refuse(
                    "INVALID_STATEMENT",
                    "the record does not decode (claims must be a deterministic CBOR map)",
                ));
            }
            self.maybe_checkpoint(&st, &mut staged).map_err(kerr)?;
            let t = self.commit(&mut st, staged).map_err(kerr)?;
            (hexs(&h), t)
        };
        self.wait(tickets).map_err(kerr)?;
        Ok(hash)
    }

    /// Every ATTESTATION of `subtype` in the store, oldest first. Reads the whole store
    /// (for start-up, e.g. restoring tool pins).
    pub fn attestations(&self, subtype: &str) -> Result<Vec<Attested>, KernelError> {
        let mut out = Vec::new();
        self.records.for_each_record(|_, bytes| {
            if let Ok(r) = Record::decode(bytes) {
                if let Body::Attestation {
                    subtype: t,
                    subject,
                    claims,
                } = r.body
                {
                    if t == subtype {
                        out.push(Attested {
                            record: r.hash,
                            subject,
                            claims: claims.map(<[u8]>::to_vec),
                        });
                    }
                }
            }
            Ok::<(), StoreError>(())
        })?;
        Ok(out)
    }
}

/// The state of the kernel's stores ([`Kernel::store_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreState {
    /// Records in the record store (the index the next one gets).
    pub records: u64,
    /// The record store's durability mode (the blob store's is the same).
    pub durability: crate::store::Durability,
    /// Why the record store is poisoned, if it is.
    pub records_poisoned: Option<String>,
    /// Why the blob store is poisoned, if it is.
    pub blobs_poisoned: Option<String>,
    /// The record store's counters.
    pub record_stats: crate::store::StoreStats,
    /// The blob store's counters.
    pub blob_stats: crate::store::StoreStats,
}

impl StoreState {
    /// Whether either store is poisoned (every decision is denied until the kernel is
    /// reopened).
    pub fn is_poisoned(&self) -> bool {
        self.records_poisoned.is_some() || self.blobs_poisoned.is_some()
    }
}
