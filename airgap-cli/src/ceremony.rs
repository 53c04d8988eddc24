//! Key ceremonies on an air-gapped machine, and offline approvals.
//!
//! - `helm-airgap keys publish|rotate|revoke --root ROOT.key --chain CHAIN ...` signs a
//!   TRUST_EVENT with a root key (a trust anchor) and appends it to the trust chain
//!   file (a CBOR sequence of TRUST_EVENTs), after checking that the whole new chain
//!   verifies against the trust root. The kernel loads the chain at start.
//! - `helm-airgap keys chain --chain CHAIN --trust-root FILE` lists and verifies a chain.
//! - `helm-airgap approve --key APPROVER.key --id ESCALATE` signs the approval
//!   challenge of an escalation (spec/record-format.md §8.1); the kernel server accepts
//!   the signature over HTTP.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use helm_kernel::keyfile::{key_string, parse_key};
use helm_kernel::trust::{check_chain, split_records, verify_chain};
use serde::Serialize;
use verify_core::{body, sha256, Body, Hash, Kind, Record, RecordBuilder, TrustAction};

use crate::files::write_atomic;
use crate::keyfile;
use crate::output::{outln, Out};
use crate::status::{CliError, Status};
use crate::trust_root::TrustRoot;

/// Largest trust chain file read.
const MAX_CHAIN: u64 = 16 << 20;

/// Where the root key and the chain are.
#[derive(Clone, Debug, Args)]
pub(crate) struct ChainArgs {
    /// The root key file (its public key must be an anchor of the trust root)
    #[arg(long, value_name = "KEYFILE")]
    root: PathBuf,
    /// The trust chain file to append to (created if absent)
    #[arg(long, value_name = "FILE")]
    chain: PathBuf,
    /// Trust-root file the new chain must verify against [default: the root key alone]
    #[arg(long, value_name = "FILE")]
    trust_root: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// Key ceremonies (subcommands of `keys`).
#[derive(Clone, Debug, Subcommand)]
pub(crate) enum Ceremony {
    /// Publish an operational key with roles (kernel, approver, policy-author, witness)
    Publish {
        #[command(flatten)]
        chain: ChainArgs,
        /// The key to publish: a key file, or ed25519:<64 hex> (e.g. an HSM key)
        #[arg(long, value_name = "KEY")]
        key: String,
        /// A role to grant (repeatable)
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<String>,
    },
    /// Replace a key by a new one (which gets the old key's roles unless --role is given)
    Rotate {
        #[command(flatten)]
        chain: ChainArgs,
        /// The key to retire: a key file or ed25519:<64 hex>
        #[arg(long, value_name = "KEY")]
        key: String,
        /// The new key: a key file or ed25519:<64 hex>
        #[arg(long, value_name = "KEY")]
        new_key: String,
        /// Roles of the new key (repeatable)
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// The CHECKPOINT (64 hex) after which the old key's records no longer stand;
        /// required if the old key has signed anything
        #[arg(long, value_name = "HASH")]
        cutoff: Option<String>,
    },
    /// Withdraw a key
    Revoke {
        #[command(flatten)]
        chain: ChainArgs,
        /// The key to revoke: a key file or ed25519:<64 hex>
        #[arg(long, value_name = "KEY")]
        key: String,
        /// The CHECKPOINT (64 hex) after which its records no longer stand
        #[arg(long, value_name = "HASH")]
        cutoff: Option<String>,
    },
    /// Write a trust-root file naming root keys as anchors (for verifiers and the kernel)
    TrustRoot {
        /// A root key: a key file or ed25519:<64 hex> (repeatable)
        #[arg(long = "anchor", value_name = "KEY", required = true)]
        anchors: Vec<String>,
        /// Where to write it (refused if it exists, unless --force)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
    },
    /// List a trust chain and verify it against a trust root
    Chain {
        /// The trust chain file
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The trust-root file
        #[arg(long, value_name = "FILE")]
        trust_root: PathBuf,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

/// `helm-airgap approve`.
#[derive(Clone, Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The approver's key file
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// The approval id: the ESCALATE record's hash (64 hex), as the server lists it
    #[arg(long, value_name = "HASH")]
    id: String,
    /// The ESCALATE record itself (CBOR, e.g. from GET /v1/records): its terms are
    /// shown, and its hash must be the id
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print one JSON object (what POST /v1/approvals/{id} takes)
    #[arg(long)]
    json: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn hash_arg(s: &str, what: &str) -> Result<Hash, CliError> {
    helm_kernel::keyfile::hex32(s).map_err(|e| CliError::usage(format!("{what}: {e}")))
}

/// A key given as a key file or as `ed25519:<hex>`.
fn key_arg(s: &str) -> Result<[u8; 32], CliError> {
    if s.starts_with(helm_kernel::keyfile::KEY_PREFIX) {
        return parse_key(s).map_err(|e| CliError::usage(format!("key {s}: {e}")));
    }
    keyfile::load(Path::new(s)).map(|k| k.public)
}

fn read_chain(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::io(format!("trust chain {}", path.display()), &e)),
        Ok(m) if m.len() > MAX_CHAIN => {
            return Err(CliError::usage(format!(
                "trust chain {} is larger than {MAX_CHAIN} bytes",
                path.display()
            )))
        }
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(|e| CliError::io(format!("trust chain {}", path.display()), &e))?;
    split_records(&bytes).map_err(|e| CliError::usage(format!("trust chain {}: {e}", path.display())))
}

#[derive(Serialize)]
struct EventJson {
    index: usize,
    hash: String,
    action: &'static str,
    key: String,
    roles: Vec<String>,
    new_key: Option<String>,
    cutoff: Option<String>,
    signer: String,
    time: u64,
}

fn describe(i: usize, bytes: &[u8]) -> Option<EventJson> {
    let r = Record::decode(bytes).ok()?;
    let Body::TrustEvent {
        action,
        key,
        roles,
        new_key,
        cutoff,
    } = r.body
    else {
        return None;
    };
    Some(EventJson {
        index: i,
        hash: hex::encode(r.hash),
        action: match action {
            TrustAction::Publish => "publish",
            TrustAction::Rotate => "rotate",
            TrustAction::Revoke => "revoke",
        },
        key: key_string(&key),
        roles: roles.map(|l| l.iter().map(str::to_owned).collect()).unwrap_or_default(),
        new_key: new_key.map(|k| key_string(&k)),
        cutoff: cutoff.map(hex::encode),
        signer: key_string(&r.kid),
        time: r.time,
    })
}

fn append_event(
    args: &ChainArgs,
    action: TrustAction,
    key: [u8; 32],
    roles: Option<Vec<String>>,
    new_key: Option<[u8; 32]>,
    cutoff: Option<Hash>,
) -> Result<Status, CliError> {
    let root = keyfile::load(&args.root)?;
    let signer = root.signer();
    let mut chain = read_chain(&args.chain)?;
    let anchors = match &args.trust_root {
        Some(p) => TrustRoot::load(p)?.keys(),
        None => vec![root.public],
    };
    if !anchors.contains(&root.public) {
        return Err(CliError::usage(format!(
            "the root key {} is not an anchor of the trust root",
            key_string(&root.public)
        )));
    }
    // The new event follows the chain's last: its parent, a higher Lamport clock, a
    // time not before any earlier event, and the root key's next sequence number.
    let mut last: Option<(Hash, u64)> = None;
    let mut time = now_ms();
    let mut seq = 0u64;
    for r in &chain {
        let rec = Record::decode(r).map_err(|e| CliError::usage(format!("trust chain: {}", e.name())))?;
        last = Some((rec.hash, rec.lamport));
        time = time.max(rec.time);
        if rec.kid == root.public {
            seq = rec.seq.saturating_add(1);
        }
    }
    for role in roles.iter().flatten() {
        crate::keyfile::check_role(role).map_err(CliError::usage)?;
    }
    let role_refs: Option<Vec<&str>> = roles.as_ref().map(|r| r.iter().map(String::as_str).collect());
    let mut b = RecordBuilder::new(
        Kind::TrustEvent,
        body::trust_event(action, &key, role_refs.as_deref(), new_key.as_ref(), cutoff.as_ref()),
    );
    b.parents = last.map(|(h, _)| vec![h]).unwrap_or_default();
    b.lamport = last.map_or(1, |(_, l)| l.saturating_add(1));
    b.time = time;
    b.principal = root.name.clone();
    b.seq = seq;
    let record = b.sign(&signer);
    chain.push(record.clone());
    let all: Vec<u8> = chain.concat();
    check_chain(&anchors, &all).map_err(|e| CliError::invalid(format!("the new chain would not verify: {e}")))?;
    // Cut-offs name CHECKPOINTs of a kernel's store, which the chain alone does not
    // hold: such a chain is checked in full by the kernel, against its store.
    let has_cutoff = chain.iter().any(|r| {
        matches!(
            Record::decode(r).map(|r| r.body),
            Ok(Body::TrustEvent { cutoff: Some(_), .. })
        )
    });
    if !has_cutoff {
        verify_chain(&anchors, &all).map_err(|e| CliError::invalid(format!("the new chain would not verify: {e}")))?;
    }
    write_atomic(&args.chain, &all, true, 0o644)?;
    let mut out = Out::new();
    let ev = describe(chain.len().saturating_sub(1), &record);
    if args.json {
        out.json(&ev)?;
    } else if let Some(ev) = ev {
        outln!(
            out,
            "appended TRUST_EVENT {} ({} of {}) to {}",
            ev.hash,
            ev.action,
            ev.key,
            args.chain.display()
        );
        outln!(
            out,
            "chain: {} events, verified against {} anchor(s)",
            chain.len(),
            anchors.len()
        );
    }
    out.finish()?;
    Ok(Status::Success)
}

fn chain_show(chain: &Path, trust_root: &Path, json: bool) -> Result<Status, CliError> {
    let anchors = TrustRoot::load(trust_root)?.keys();
    let records = read_chain(chain)?;
    let verdict = check_chain(&anchors, &records.concat());
    let events: Vec<EventJson> = records.iter().enumerate().filter_map(|(i, r)| describe(i, r)).collect();
    let mut out = Out::new();
    if json {
        #[derive(Serialize)]
        struct ChainJson<'a> {
            verified: bool,
            error: Option<String>,
            events: &'a [EventJson],
        }
        out.json(&ChainJson {
            verified: verdict.is_ok(),
            error: verdict.as_ref().err().map(|e| e.0.clone()),
            events: &events,
        })?;
    } else {
        for e in &events {
            outln!(
                out,
                "{:>3}  {:<7} {}  roles [{}]{}",
                e.index,
                e.action,
                e.key,
                e.roles.join(", "),
                e.new_key.as_ref().map(|k| format!(" -> {k}")).unwrap_or_default()
            );
        }
        match &verdict {
            Ok(_) => outln!(
                out,
                "verified: {} events against {} anchor(s)",
                events.len(),
                anchors.len()
            ),
            Err(e) => outln!(out, "NOT verified: {e}"),
        }
    }
    out.finish()?;
    Ok(if verdict.is_ok() {
        Status::Success
    } else {
        Status::Failed
    })
}

/// The roles the chain grants `key` (by its PUBLISH or the ROTATE that introduced it).
fn current_roles(chain: &[Vec<u8>], key: &[u8; 32]) -> Option<Vec<String>> {
    let mut roles = None;
    for r in chain {
        let Ok(rec) = Record::decode(r) else { continue };
        if let Body::TrustEvent {
            action,
            key: k,
            roles: Some(list),
            new_key,
            ..
        } = rec.body
        {
            let granted_to = match action {
                TrustAction::Publish => Some(k),
                TrustAction::Rotate => new_key,
                TrustAction::Revoke => None,
            };
            if granted_to == Some(*key) {
                roles = Some(list.iter().map(str::to_owned).collect());
            }
        }
    }
    roles
}

/// Runs a ceremony.
pub(crate) fn run(c: &Ceremony) -> Result<Status, CliError> {
    match c {
        Ceremony::Publish { chain, key, roles } => append_event(
            chain,
            TrustAction::Publish,
            key_arg(key)?,
            Some(roles.clone()),
            None,
            None,
        ),
        Ceremony::Rotate {
            chain,
            key,
            new_key,
            roles,
            cutoff,
        } => {
            let cutoff = cutoff.as_deref().map(|c| hash_arg(c, "--cutoff")).transpose()?;
            let old = key_arg(key)?;
            let roles = if roles.is_empty() {
                current_roles(&read_chain(&chain.chain)?, &old).ok_or_else(|| {
                    CliError::usage(format!(
                        "{} has no roles in the chain; name the new key's roles with --role",
                        key_string(&old)
                    ))
                })?
            } else {
                roles.clone()
            };
            append_event(
                chain,
                TrustAction::Rotate,
                old,
                Some(roles),
                Some(key_arg(new_key)?),
                cutoff,
            )
        }
        Ceremony::Revoke { chain, key, cutoff } => {
            let cutoff = cutoff.as_deref().map(|c| hash_arg(c, "--cutoff")).transpose()?;
            append_event(chain, TrustAction::Revoke, key_arg(key)?, None, None, cutoff)
        }
        Ceremony::Chain {
            chain,
            trust_root,
            json,
        } => chain_show(chain, trust_root, *json),
        Ceremony::TrustRoot { anchors, out, force } => write_trust_root(anchors, out, *force),
    }
}

fn write_trust_root(keys: &[String], out_path: &Path, force: bool) -> Result<Status, CliError> {
    let mut anchors = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let (name, key) = if k.starts_with(helm_kernel::keyfile::KEY_PREFIX) {
            (format!("root-{}", i.saturating_add(1)), key_arg(k)?)
        } else {
            let f = keyfile::load(Path::new(k))?;
            (f.name, f.public)
        };
        anchors.push(crate::trust_root::Anchor { name, key });
    }
    let text = crate::trust_root::encode(&anchors)?;
    crate::trust_root::parse(&text).map_err(CliError::usage)?;
    write_atomic(out_path, text.as_bytes(), force, 0o644)?;
    let mut out = Out::new();
    outln!(out, "wrote {} with {} anchor(s)", out_path.display(), anchors.len());
    out.finish()?;
    Ok(Status::Success)
}

#[derive(Serialize)]
struct ApprovalJson {
    id: String,
    approver: String,
    signature: String,
}

/// `helm-airgap approve`.
pub(crate) fn approve(a: &ApproveArgs) -> Result<Status, CliError> {
    let id = hash_arg(&a.id, "--id")?;
    let key = keyfile::load(&a.key)?;
    let mut out = Out::new();
    if let Some(path) = &a.record {
        let bytes = std::fs::read(path).map_err(|e| CliError::io(format!("record {}", path.display()), &e))?;
        if sha256(&bytes) != id {
            return Err(CliError::usage(format!(
                "{} is not the record {} (its hash differs)",
                path.display(),
                a.id
            )));
        }
        let r = Record::decode(&bytes).map_err(|e| CliError::usage(format!("record: {}", e.name())))?;
        let Body::Decision {
            escalation: Some(t),
            reason,
            ..
        } = r.body
        else {
            return Err(CliError::usage("the record is not an ESCALATE decision"));
        };
        if !a.json {
            outln!(
                out,
                "escalation {} ({reason}) for principal {:?}, session {:?}: role {}, quorum {}, window {}..{} ms",
                a.id,
                r.principal,
                r.session,
                t.role,
                t.quorum,
                t.not_before,
                t.expires
            );
        }
    }
    let challenge = verify_core::approval_challenge(&id);
    let sig = key.signer().sign(&challenge);
    let j = ApprovalJson {
        id: a.id.clone(),
        approver: key_string(&key.public),
        signature: hex::encode(sig),
    };
    if a.json {
        out.json(&j)?;
    } else {
        outln!(out, "approver  {}", j.approver);
        outln!(out, "signature {}", j.signature);
        outln!(
            out,
            "submit: POST /v1/approvals/{} with {{\"approver\": ..., \"signature\": ...}}",
            j.id
        );
    }
    out.finish()?;
    Ok(Status::Success)
}
