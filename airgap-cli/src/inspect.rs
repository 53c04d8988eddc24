//! `helm-airgap inspect PACK [--json] [--session ID]`
//!
//! A lenient look inside a pack that proves nothing: it walks the tar entries, decodes
//! each record (without checking signatures, keys, chains, blobs or the manifest) and
//! prints each session's decision trees: INTENT → DECISION → APPROVAL / EFFECT, matched
//! by parent hashes. Exit 0 listed, 1 the archive or a record is malformed, 2 usage or
//! I/O error.
//!
//! Memory: a short summary of every record (of the chosen session, with `--session`) is
//! kept to build the trees.

use std::collections::HashMap;
use std::io::{self, Read};

use pack_format::tar::{self, HeaderError, BLOCK};
use pack_format::transport::{self, Limits};
use pack_format::{Manifest, MAX_MANIFEST_SIZE, WITHHELD_ITEM};
use serde::Serialize;
use verify_core::{Body, CallKind, EffectStatus, Hash, Kind, Record, TrustAction, Verdict, MAX_RECORD_SIZE};

use crate::cli::InspectConfig;
use crate::encoding::{key_string, short};
use crate::framing::frame_len;
use crate::output::{outln, Out, Safe};
use crate::report::{wrapper_name, PerKind};
use crate::status::{CliError, Status};
use crate::time::rfc3339_ms;

const NOTE: &str = "inspect decodes records without checking signatures, keys, chains, blobs or the manifest: \
                    anything shown may be forged; use `helm-airgap verify` for claims you can rely on";
/// Distinct principals listed per session.
const PRINCIPALS_LISTED: usize = 16;

/// What a record contributes to the trees.
#[derive(Clone, Debug)]
enum NodeBody {
    Intent {
        tool: String,
        call_kind: CallKind,
        args: Hash,
    },
    Decision {
        verdict: Verdict,
        reason: String,
        escalation: Option<EscalationJson>,
    },
    Approval {
        approvers: usize,
    },
    Effect {
        status: EffectStatus,
        tool: String,
        output: Hash,
        executor: String,
    },
    Other(String),
}

#[derive(Clone, Debug)]
struct Node {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    position: Option<u64>,
    hash: Hash,
    kind: Kind,
    time: u64,
    session: usize,
    parents: Vec<Hash>,
    body: NodeBody,
}

#[derive(Clone, Debug, Default)]
struct SessionAcc {
    name: String,
    principals: Vec<String>,
    more_principals: bool,
    nodes: Vec<usize>,
}

/// Longest proof item: `[index, 64 hashes, 64 hashes]`.
const MAX_ITEM: usize = 1 + 9 + 2 * (2 + 64 * 34);

/// The length of the proof item at the start of `buf` and the position it states:
/// `Ok(None)` if more bytes are needed, `Err` if it is not an item.
fn proof_item(buf: &[u8]) -> Result<Option<(usize, Option<u64>)>, ()> {
    let mut r = verify_core::cbor::Reader::new(buf);
    match r.any(4) {
        Ok(_) => {}
        Err(verify_core::CborError::Truncated) => return Ok(None),
        Err(_) => return Err(()),
    }
    let len = r.position();
    let mut r = verify_core::cbor::Reader::new(buf.get(..len).unwrap_or(&[]));
    if r.array_len() != Ok(3) {
        return Err(());
    }
    Ok(Some((len, r.uint().ok())))
}

/// The lenient pass over the archive.
#[derive(Debug, Default)]
struct Walk {
    pack: String,
    filter: Option<String>,
    offset: u64,
    entries: u32,
    manifest: Option<Manifest>,
    manifest_error: Option<String>,
    blobs: u64,
    blob_bytes: u64,
    withheld: u64,
    segments: u64,
    unexpected: Vec<String>,
    records: u64,
    per_kind: PerKind,
    nodes: Vec<Node>,
    sessions: Vec<SessionAcc>,
    session_ids: HashMap<String, usize>,
}

fn header_problem(e: HeaderError) -> &'static str {
    match e {
        HeaderError::Checksum => "header checksum does not match",
        HeaderError::NotRegularFile => "not a regular file",
        HeaderError::BadPath => "bad path",
        HeaderError::NonCanonical => "not a canonical header",
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0usize;
    while let Some(rest) = buf.get_mut(got..).filter(|b| !b.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
        Verdict::Escalate => "ESCALATE",
    }
}

fn call_kind_name(c: CallKind) -> &'static str {
    match c {
        CallKind::Json => "json",
        CallKind::Text => "text",
        CallKind::Bytes => "bytes",
    }
}

fn status_name(s: EffectStatus) -> &'static str {
    match s {
        EffectStatus::Succeeded => "succeeded",
        EffectStatus::Failed => "failed",
        EffectStatus::Aborted => "aborted",
    }
}

fn other_summary(body: &Body<'_>) -> String {
    match *body {
        Body::TrustEvent {
            action,
            key,
            roles,
            new_key,
            cutoff,
        } => {
            let roles: Vec<&str> = roles.iter().flat_map(|r| r.iter()).collect();
            let mut s = match action {
                TrustAction::Publish => format!("publish {}", key_string(&key)),
                TrustAction::Rotate => format!(
                    "rotate {} -> {}",
                    key_string(&key),
                    new_key.map(|k| key_string(&k)).unwrap_or_else(|| "?".into())
                ),
                TrustAction::Revoke => format!("revoke {}", key_string(&key)),
            };
            if !roles.is_empty() {
                s.push_str(&format!(" roles {}", roles.join(",")));
            }
            if let Some(c) = cutoff {
                s.push_str(&format!(" cut-off {}", short(&c)));
            }
            s
        }
        Body::Policy { bundle, name } => match name {
            Some(n) => format!("bundle {} {n:?}", short(&bundle)),
            None => format!("bundle {}", short(&bundle)),
        },
        Body::Attestation { subtype, subject, .. } => format!("{subtype} subject {}", short(&subject)),
        Body::Checkpoint {
            count,
            root,
            cosignatures,
        } => format!(
            "count {count} root {}, {} cosignatures",
            short(&root),
            cosignatures.map_or(0, |c| c.len())
        ),
        Body::Violation { code, subject, detail } => {
            let mut s = code.to_string();
            if let Some(h) = subject {
                s.push_str(&format!(" subject {}", short(&h)));
            }
            if let Some(d) = detail {
                s.push_str(&format!(": {d}"));
            }
            s
        }
        // Tree kinds are summarised the same way when they are not attached to a tree.
        Body::Intent { tool, call_kind, args } => {
            format!("{tool} ({}) args {}", call_kind_name(call_kind), short(&args))
        }
        Body::Decision { verdict, reason, .. } => format!("{} {reason}", verdict_name(verdict)),
        Body::Approval { approvals } => format!("{} approvers", approvals.len()),
        Body::Effect {
            status, tool, output, ..
        } => format!("{} {tool} output {}", status_name(status), short(&output)),
    }
}

impl Walk {
    fn malformed(&self, what: impl core::fmt::Display) -> CliError {
        CliError::invalid(format!(
            "{}: malformed archive at byte {} (entry #{}): {what}",
            self.pack, self.offset, self.entries
        ))
    }

    fn read_err(&self, e: io::Error) -> CliError {
        if e.kind() == io::ErrorKind::InvalidData {
            CliError::invalid(format!("{}: invalid transport wrapper: {e}", self.pack))
        } else {
            CliError::io(format!("cannot read {}", self.pack), &e)
        }
    }

    fn skip(&mut self, tar: &mut dyn Read, n: u64) -> Result<(), CliError> {
        let copied = io::copy(&mut tar.take(n), &mut io::sink()).map_err(|e| self.read_err(e))?;
        self.offset = self.offset.saturating_add(copied);
        if copied < n {
            return Err(self.malformed("the archive ends inside an entry"));
        }
        Ok(())
    }

    fn walk(&mut self, tar: &mut dyn Read) -> Result<(), CliError> {
        let mut header = [0u8; BLOCK];
        loop {
            let got = read_full(tar, &mut header).map_err(|e| self.read_err(e))?;
            if got < BLOCK {
                return Err(self.malformed("the archive ends without its two end blocks"));
            }
            if header.iter().all(|&b| b == 0) {
                // The end: count the end blocks (leniently: the second may be missing).
                self.offset = self.offset.saturating_add(BLOCK as u64);
                let got = read_full(tar, &mut header).map_err(|e| self.read_err(e))?;
                self.offset = self.offset.saturating_add(got as u64);
                return Ok(());
            }
            let h = tar::decode(&header).map_err(|e| self.malformed(header_problem(e)))?;
            self.offset = self.offset.saturating_add(BLOCK as u64);
            let name = h.name().to_string();
            let size = h.size;
            if name == "manifest.cbor" && size <= MAX_MANIFEST_SIZE as u64 {
                let mut data = vec![0u8; usize::try_from(size).unwrap_or(0)];
                let n = read_full(tar, &mut data).map_err(|e| self.read_err(e))?;
                self.offset = self.offset.saturating_add(n as u64);
                if n < data.len() {
                    return Err(self.malformed("the archive ends inside an entry"));
                }
                match Manifest::decode(&data) {
                    Ok((m, _)) => self.manifest = Some(m),
                    Err(code) => self.manifest_error = Some(format!("does not decode: {}", code.name())),
                }
            } else if name == "withheld.cbor" {
                self.withheld = size.checked_div(WITHHELD_ITEM as u64).unwrap_or(0);
                self.skip(tar, size)?;
            } else if name.starts_with("blobs/") {
                self.blobs = self.blobs.saturating_add(1);
                self.blob_bytes = self.blob_bytes.saturating_add(size);
                self.skip(tar, size)?;
            } else if name.starts_with("records/") {
                self.segments = self.segments.saturating_add(1);
                self.segment(tar, size, &name)?;
            } else {
                if name == "manifest.cbor" {
                    self.manifest_error = Some(format!("{size} bytes, larger than {MAX_MANIFEST_SIZE}"));
                } else {
                    self.unexpected.push(name.clone());
                }
                self.skip(tar, size)?;
            }
            let block = BLOCK as u64;
            let pad = block
                .wrapping_sub(size.checked_rem(block).unwrap_or(0))
                .checked_rem(block)
                .unwrap_or(0);
            self.skip(tar, pad)?;
            self.entries = self.entries.saturating_add(1);
        }
    }

    fn segment(&mut self, tar: &mut dyn Read, size: u64, entry: &str) -> Result<(), CliError> {
        let partial = self.manifest.as_ref().is_some_and(|m| m.partial.is_some());
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut remaining = size;
        while remaining > 0 {
            let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
            let chunk = buf.get_mut(..want).unwrap_or(&mut []);
            let n = read_full(tar, chunk).map_err(|e| self.read_err(e))?;
            self.offset = self.offset.saturating_add(n as u64);
            if n < want {
                return Err(self.malformed("the archive ends inside an entry"));
            }
            remaining = remaining.saturating_sub(n as u64);
            pending.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
            let mut pos = 0usize;
            while let Some(rest) = pending.get(pos..).filter(|r| !r.is_empty()) {
                match frame_len(rest) {
                    Ok(Some(len)) if len > MAX_RECORD_SIZE => {
                        return Err(self.malformed(format!("record #{} in {entry} is too large", self.records)))
                    }
                    Ok(Some(len)) if len <= rest.len() => {
                        // A partial pack's record is followed by its proof item.
                        let (item_len, position) = if partial {
                            match proof_item(rest.get(len..).unwrap_or(&[])) {
                                Ok(Some(x)) => x,
                                Ok(None) => break,
                                Err(()) => {
                                    return Err(self.malformed(format!(
                                        "the proof item of record #{} in {entry} is not [index, path, path]",
                                        self.records
                                    )))
                                }
                            }
                        } else {
                            (0, None)
                        };
                        self.record(rest.get(..len).unwrap_or(&[]), entry, position)?;
                        pos = pos.saturating_add(len).saturating_add(item_len);
                    }
                    Ok(_) => break,
                    Err(e) => return Err(self.malformed(format!("record #{} in {entry}: {e}", self.records))),
                }
            }
            pending.drain(..pos);
            if pending.len() > MAX_RECORD_SIZE.saturating_add(MAX_ITEM) {
                return Err(self.malformed(format!("record #{} in {entry} is too large", self.records)));
            }
        }
        if !pending.is_empty() {
            return Err(self.malformed(format!("a record crosses the end of {entry}")));
        }
        Ok(())
    }

    fn record(&mut self, bytes: &[u8], entry: &str, position: Option<u64>) -> Result<(), CliError> {
        let index = self.records;
        self.records = self.records.saturating_add(1);
        let rec = Record::decode(bytes).map_err(|code| {
            CliError::invalid(format!(
                "{}: record #{index} in {entry} does not decode: {} ({})",
                self.pack,
                code.name(),
                code.number()
            ))
        })?;
        self.per_kind.add(rec.kind);
        if self.filter.as_deref().is_some_and(|f| f != rec.session) {
            return Ok(());
        }
        let si = match self.session_ids.get(rec.session) {
            Some(&i) => i,
            None => {
                let i = self.sessions.len();
                self.session_ids.insert(rec.session.to_string(), i);
                self.sessions.push(SessionAcc {
                    name: rec.session.to_string(),
                    ..SessionAcc::default()
                });
                i
            }
        };
        let node_index = self.nodes.len();
        if let Some(s) = self.sessions.get_mut(si) {
            s.nodes.push(node_index);
            if !s.principals.iter().any(|p| p == rec.principal) {
                if s.principals.len() < PRINCIPALS_LISTED {
                    s.principals.push(rec.principal.to_string());
                } else {
                    s.more_principals = true;
                }
            }
        }
        let body = match rec.body {
            Body::Intent { tool, call_kind, args } => NodeBody::Intent {
                tool: tool.into(),
                call_kind,
                args,
            },
            Body::Decision {
                verdict,
                reason,
                escalation,
                ..
            } => NodeBody::Decision {
                verdict,
                reason: reason.into(),
                escalation: escalation.map(|e| EscalationJson {
                    role: e.role.into(),
                    quorum: e.quorum,
                    not_before: rfc3339_ms(e.not_before),
                    expires: rfc3339_ms(e.expires),
                }),
            },
            Body::Approval { approvals } => NodeBody::Approval {
                approvers: approvals.len(),
            },
            Body::Effect {
                status,
                tool,
                output,
                executor,
                ..
            } => NodeBody::Effect {
                status,
                tool: tool.into(),
                output,
                executor: executor.into(),
            },
            ref other => NodeBody::Other(other_summary(other)),
        };
        self.nodes.push(Node {
            index,
            position,
            hash: rec.hash,
            kind: rec.kind,
            time: rec.time,
            session: si,
            parents: rec.parents.iter().collect(),
            body,
        });
        Ok(())
    }

    /// Matches parents and builds the report.
    fn into_report(self, wrapper: &'static str) -> InspectReport {
        let by_hash: HashMap<Hash, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.hash, i)).collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        let mut attached = vec![false; self.nodes.len()];
        let parent_of_kind = |n: &Node, kinds: &[Kind]| -> Option<usize> {
            kinds.iter().find_map(|k| {
                n.parents.iter().filter_map(|p| by_hash.get(p).copied()).find(|&pi| {
                    self.nodes
                        .get(pi)
                        .is_some_and(|p| p.kind == *k && p.session == n.session)
                })
            })
        };
        for (i, n) in self.nodes.iter().enumerate() {
            let parent = match n.kind {
                Kind::Decision => parent_of_kind(n, &[Kind::Intent]),
                Kind::Approval | Kind::Effect => parent_of_kind(n, &[Kind::Decision]),
                _ => None,
            };
            if let (Some(p), Some(a)) = (parent, attached.get_mut(i)) {
                if let Some(c) = children.get_mut(p) {
                    c.push(i);
                    *a = true;
                }
            }
        }
        let node = |i: usize| self.nodes.get(i);
        let kids = |i: usize| children.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let sessions = self
            .sessions
            .iter()
            .map(|s| {
                let mut intents = Vec::new();
                let mut other = Vec::new();
                for &i in &s.nodes {
                    let Some(n) = node(i) else { continue };
                    match &n.body {
                        NodeBody::Intent { tool, call_kind, args } => intents.push(IntentJson {
                            index: n.index,
                            position: n.position,
                            hash: hex::encode(n.hash),
                            time: rfc3339_ms(n.time),
                            tool: tool.clone(),
                            call_kind: call_kind_name(*call_kind),
                            args: hex::encode(args),
                            decisions: kids(i)
                                .iter()
                                .filter_map(|&d| decision_json(&self.nodes, d, kids(d)))
                                .collect(),
                        }),
                        _ if attached.get(i).copied().unwrap_or(false) => {}
                        body => other.push(OtherJson {
                            index: n.index,
                            position: n.position,
                            hash: hex::encode(n.hash),
                            time: rfc3339_ms(n.time),
                            kind: n.kind.name(),
                            summary: match body {
                                NodeBody::Other(s) => s.clone(),
                                _ => format!("{} (its parent is not in this listing)", tree_summary(body)),
                            },
                        }),
                    }
                }
                SessionJson {
                    session: s.name.clone(),
                    principals: s.principals.clone(),
                    more_principals: s.more_principals,
                    records: s.nodes.len() as u64,
                    intents,
                    other,
                }
            })
            .collect();
        InspectReport {
            verification: "none",
            note: NOTE,
            pack: self.pack.clone(),
            wrapper,
            tar_bytes: self.offset,
            manifest: self.manifest.map(|m| ManifestClaims {
                producer: key_string(&m.producer),
                records: m.records,
                segments: m.segments,
                blobs: m.blobs,
                withheld: m.withheld,
                per_kind: PerKind(m.per_kind),
                escalations: m.escalations,
                streams: m.streams,
                records_root: hex::encode(m.records_root),
                head: hex::encode(m.head),
                partial: m.partial.map(|p| PartialClaimsJson {
                    tree_size: p.tree_size,
                    tree_root: hex::encode(p.tree_root),
                    session: p.session().map(str::to_string),
                    since: p.since.map(rfc3339_ms),
                    until: p.until.map(rfc3339_ms),
                }),
            }),
            manifest_error: self.manifest_error,
            entries: EntryCounts {
                blobs: self.blobs,
                blob_bytes: self.blob_bytes,
                withheld: self.withheld,
                segments: self.segments,
                unexpected: self.unexpected,
            },
            records: self.records,
            per_kind: self.per_kind,
            session_filter: self.filter,
            sessions,
        }
    }
}

fn tree_summary(body: &NodeBody) -> String {
    match body {
        NodeBody::Intent { tool, call_kind, args } => {
            format!("{tool} ({}) args {}", call_kind_name(*call_kind), short(args))
        }
        NodeBody::Decision { verdict, reason, .. } => format!("{} {reason}", verdict_name(*verdict)),
        NodeBody::Approval { approvers } => format!("{approvers} approvers"),
        NodeBody::Effect {
            status, tool, output, ..
        } => format!("{} {tool} output {}", status_name(*status), short(output)),
        NodeBody::Other(s) => s.clone(),
    }
}

fn decision_json(nodes: &[Node], i: usize, kids: &[usize]) -> Option<DecisionJson> {
    let n = nodes.get(i)?;
    let NodeBody::Decision {
        verdict,
        reason,
        escalation,
    } = &n.body
    else {
        return None;
    };
    let mut approvals = Vec::new();
    let mut effects = Vec::new();
    for &k in kids {
        let Some(c) = nodes.get(k) else { continue };
        match &c.body {
            NodeBody::Approval { approvers } => approvals.push(ApprovalJson {
                index: c.index,
                position: c.position,
                hash: hex::encode(c.hash),
                time: rfc3339_ms(c.time),
                approvers: *approvers,
            }),
            NodeBody::Effect {
                status,
                tool,
                output,
                executor,
            } => effects.push(EffectJson {
                index: c.index,
                position: c.position,
                hash: hex::encode(c.hash),
                time: rfc3339_ms(c.time),
                status: status_name(*status),
                tool: tool.clone(),
                output: hex::encode(output),
                executor: executor.clone(),
            }),
            _ => {}
        }
    }
    Some(DecisionJson {
        index: n.index,
        position: n.position,
        hash: hex::encode(n.hash),
        time: rfc3339_ms(n.time),
        verdict: verdict_name(*verdict),
        reason: reason.clone(),
        escalation: escalation.clone(),
        approvals,
        effects,
    })
}

/// The `inspect --json` object (field names are stable: README.md).
#[derive(Debug, Serialize)]
struct InspectReport {
    verification: &'static str,
    note: &'static str,
    pack: String,
    wrapper: &'static str,
    tar_bytes: u64,
    manifest: Option<ManifestClaims>,
    manifest_error: Option<String>,
    entries: EntryCounts,
    records: u64,
    per_kind: PerKind,
    session_filter: Option<String>,
    sessions: Vec<SessionJson>,
}

#[derive(Debug, Serialize)]
struct ManifestClaims {
    producer: String,
    records: u64,
    segments: u64,
    blobs: u64,
    withheld: u64,
    per_kind: PerKind,
    escalations: u64,
    streams: u64,
    records_root: String,
    head: String,
    /// A partial pack's claims: tree size and root, selection (`null` for a full pack).
    partial: Option<PartialClaimsJson>,
}

#[derive(Debug, Serialize)]
struct PartialClaimsJson {
    tree_size: u64,
    tree_root: String,
    session: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

#[derive(Debug, Serialize)]
struct EntryCounts {
    blobs: u64,
    blob_bytes: u64,
    withheld: u64,
    segments: u64,
    unexpected: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SessionJson {
    session: String,
    principals: Vec<String>,
    more_principals: bool,
    records: u64,
    intents: Vec<IntentJson>,
    other: Vec<OtherJson>,
}

#[derive(Debug, Serialize)]
struct IntentJson {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    hash: String,
    time: String,
    tool: String,
    call_kind: &'static str,
    args: String,
    decisions: Vec<DecisionJson>,
}

#[derive(Clone, Debug, Serialize)]
struct EscalationJson {
    role: String,
    quorum: u64,
    not_before: String,
    expires: String,
}

#[derive(Debug, Serialize)]
struct DecisionJson {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    hash: String,
    time: String,
    verdict: &'static str,
    reason: String,
    escalation: Option<EscalationJson>,
    approvals: Vec<ApprovalJson>,
    effects: Vec<EffectJson>,
}

#[derive(Debug, Serialize)]
struct ApprovalJson {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    hash: String,
    time: String,
    approvers: usize,
}

#[derive(Debug, Serialize)]
struct EffectJson {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    hash: String,
    time: String,
    status: &'static str,
    tool: String,
    output: String,
    executor: String,
}

#[derive(Debug, Serialize)]
struct OtherJson {
    index: u64,
    /// Partial packs: the position its proof item states (unchecked).
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    hash: String,
    time: String,
    kind: &'static str,
    summary: String,
}

/// `#index`, or `#index @position` for a record of a partial pack.
fn label(index: u64, position: Option<u64>) -> String {
    match position {
        Some(p) => format!("#{index} @{p}"),
        None => format!("#{index}"),
    }
}

fn short_hex(full: &str) -> &str {
    full.get(..16).unwrap_or(full)
}

fn print(out: &mut Out, r: &InspectReport) {
    outln!(out, "NOT VERIFIED: {NOTE}.");
    outln!(out);
    outln!(
        out,
        "pack          {} (wrapper {}, {} bytes of tar)",
        Safe(&r.pack),
        r.wrapper,
        r.tar_bytes
    );
    match (&r.manifest, &r.manifest_error) {
        (Some(m), _) => outln!(
            out,
            "manifest      claims {} records, {} blobs, {} withheld; producer {} (unchecked)",
            m.records,
            m.blobs,
            m.withheld,
            m.producer
        ),
        (None, Some(e)) => outln!(out, "manifest      {}", Safe(e)),
        (None, None) => outln!(out, "manifest      none"),
    }
    if let Some(p) = r.manifest.as_ref().and_then(|m| m.partial.as_ref()) {
        let mut sel = Vec::new();
        if let Some(s) = &p.session {
            sel.push(format!("session {:?}", Safe(s).to_string()));
        }
        if let Some(t) = &p.since {
            sel.push(format!("since {t}"));
        }
        if let Some(t) = &p.until {
            sel.push(format!("until {t}"));
        }
        outln!(
            out,
            "partial pack  claims records of a log of {} proven against the checkpoint at position {} \
             (records listed #index @position); selection {} (unchecked)",
            p.tree_size,
            p.tree_size,
            sel.join(", ")
        );
    }
    outln!(
        out,
        "entries       {} blobs ({} bytes), {} withheld, {} record segment(s)",
        r.entries.blobs,
        r.entries.blob_bytes,
        r.entries.withheld,
        r.entries.segments
    );
    for u in &r.entries.unexpected {
        outln!(out, "              unexpected entry {}", Safe(u));
    }
    let kinds: Vec<String> = r
        .per_kind
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    outln!(out, "records       {} ({})", r.records, kinds.join(", "));
    if let Some(f) = &r.session_filter {
        outln!(out, "showing       session {:?} only", Safe(f).to_string());
    }
    for s in &r.sessions {
        if out.stopped() {
            return;
        }
        outln!(out);
        let principals: Vec<String> = s.principals.iter().map(|p| Safe(p).to_string()).collect();
        let more = if s.more_principals { ", ..." } else { "" };
        if s.session.is_empty() {
            outln!(
                out,
                "kernel scope (no session), principals {}{more}: {} records",
                principals.join(", "),
                s.records
            );
        } else {
            outln!(
                out,
                "session {}, principals {}{more}: {} records, {} intents",
                Safe(&s.session),
                principals.join(", "),
                s.records,
                s.intents.len()
            );
        }
        for i in &s.intents {
            outln!(
                out,
                "  {} INTENT {} ({}) args {}  at {}",
                label(i.index, i.position),
                Safe(&i.tool),
                i.call_kind,
                short_hex(&i.args),
                i.time
            );
            for d in &i.decisions {
                match &d.escalation {
                    Some(e) => outln!(
                        out,
                        "    -> {} DECISION {} {}: quorum {} of role {}, from {} until {}",
                        label(d.index, d.position),
                        d.verdict,
                        Safe(&d.reason),
                        e.quorum,
                        Safe(&e.role),
                        e.not_before,
                        e.expires
                    ),
                    None => outln!(
                        out,
                        "    -> {} DECISION {} {}",
                        label(d.index, d.position),
                        d.verdict,
                        Safe(&d.reason)
                    ),
                }
                for a in &d.approvals {
                    outln!(
                        out,
                        "       -> {} APPROVAL {} approvers",
                        label(a.index, a.position),
                        a.approvers
                    );
                }
                for e in &d.effects {
                    outln!(
                        out,
                        "       -> {} EFFECT {} output {} by {}",
                        label(e.index, e.position),
                        e.status,
                        short_hex(&e.output),
                        Safe(&e.executor)
                    );
                }
            }
        }
        for o in &s.other {
            outln!(out, "  {} {} {}", label(o.index, o.position), o.kind, Safe(&o.summary));
        }
    }
}

pub(crate) fn run(cfg: &InspectConfig) -> Result<Status, CliError> {
    let reader = cfg.pack.open()?.reader;
    let mut walk = Walk {
        pack: cfg.pack.display(),
        filter: cfg.session.clone(),
        ..Walk::default()
    };
    let (wrapper, mut tar) = transport::open(reader, Limits::default()).map_err(|e| walk.read_err(e))?;
    walk.walk(&mut tar)?;
    let report = walk.into_report(wrapper_name(wrapper));
    let mut out = Out::new();
    if cfg.json {
        out.json(&report)?;
    } else {
        print(&mut out, &report);
    }
    out.finish()?;
    Ok(Status::Success)
}
