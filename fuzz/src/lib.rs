//! Shared helpers for the verify-core fuzz targets.
//!
//! - [`fixture`]: a small, valid record stream built once in-process with the `sign`
//!   feature (fixed seeds, so every run and every machine gets the same bytes).
//! - [`touch`]: reads every field and iterator of a decoded [`Record`].
//! - [`reencode`]: re-encodes a decoded record with the `sign` encoders; strict decoding
//!   means this must give back the exact input bytes ("one byte form, one hash").
//! - [`apply_ops`]: applies fuzzer-chosen byte mutations to a buffer.
//! - [`run_stream`]: pushes records into a [`Verifier`] and checks its API invariants.

use std::collections::HashMap;
use std::sync::OnceLock;

use verify_core::body::{self, Effect};
use verify_core::{
    approval_challenge, checkpoint_challenge, commitment, sha256, Body, CallKind, Capacity, CborWriter, EffectStatus,
    ErrorCode, Escalation, Hash, Kind, MerkleAccumulator, OwnedTables, Record, RecordBuilder, Signer, TrustAction,
    Verdict, Verified, Verifier, VerifyError, COSE_SIGN1_TAG,
};

/// Seed of the trust anchor (the only key the verifier is told to trust).
pub const ANCHOR_SEED: [u8; 32] = [0xA1; 32];
/// Seed of the kernel key, published by the anchor with role "kernel".
pub const KERNEL_SEED: [u8; 32] = [0xC2; 32];
/// Seed of an approver key (role "approver").
pub const APPROVER_SEED: [u8; 32] = [0xD3; 32];
/// Seed of a witness key (role "witness").
pub const WITNESS_SEED: [u8; 32] = [0xE4; 32];
/// Seed of a key nobody published.
pub const STRANGER_SEED: [u8; 32] = [0xF5; 32];

/// Kernel time of the first record (ms).
pub const T0: u64 = 1_700_000_000_000;

/// Kernel time of every record of [`Fixture::extras`]: later than the whole chain.
pub const EXTRAS_TIME: u64 = T0 + 10_000_000;

/// Which key signed a fixture record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The trust anchor.
    Anchor,
    /// The kernel.
    Kernel,
}

/// The fixed keys and streams the targets share.
#[derive(Debug)]
pub struct Fixture {
    /// Anchor, kernel, approver, witness, stranger.
    pub signers: [Signer; 5],
    /// The anchor's public key (the verifier's only trust anchor).
    pub anchor: [u8; 32],
    /// A valid stream: trust events, INTENT -> DECISION ALLOW -> EFFECT, an ESCALATE
    /// with its APPROVAL and EFFECT, POLICY, ATTESTATION, VIOLATION, a witnessed
    /// CHECKPOINT and a revocation with a cut-off.
    pub chain: Vec<Vec<u8>>,
    /// Who signed each record of `chain`.
    pub chain_signers: Vec<Who>,
    /// Payload of each record of `chain` (for re-signing mutated payloads).
    pub chain_payloads: Vec<Vec<u8>>,
    /// Records independent of each other, valid after `chain[0]` (which publishes the
    /// kernel key): VIOLATIONs, each in its own session with seq 0, all at one time.
    pub extras: Vec<Vec<u8>>,
}

impl Fixture {
    /// The signer of a chain record.
    pub fn signer(&self, who: Who) -> &Signer {
        match who {
            Who::Anchor => &self.signers[0],
            Who::Kernel => &self.signers[1],
        }
    }

    /// `chain` followed by `extras`: the pool `verifier_stream` inputs may refer to.
    pub fn pool(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.chain.iter().chain(self.extras.iter())
    }

    /// Number of records in [`Fixture::pool`].
    pub fn pool_len(&self) -> usize {
        self.chain.len() + self.extras.len()
    }
}

struct ChainBuilder {
    records: Vec<Vec<u8>>,
    signers: Vec<Who>,
    payloads: Vec<Vec<u8>>,
    lamport: u64,
    time: u64,
    seqs: HashMap<([u8; 32], String), u64>,
    merkle: MerkleAccumulator,
}

impl ChainBuilder {
    fn new() -> Self {
        ChainBuilder {
            records: Vec::new(),
            signers: Vec::new(),
            payloads: Vec::new(),
            lamport: 0,
            time: T0,
            seqs: HashMap::new(),
            merkle: MerkleAccumulator::new(),
        }
    }

    /// Signs and appends a record; returns its hash.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        signer: &Signer,
        who: Who,
        kind: Kind,
        body: Vec<u8>,
        session: &str,
        parents: &[Hash],
        ext: Option<Vec<u8>>,
    ) -> Hash {
        // A global Lamport counter is greater than every earlier record's, so greater
        // than every parent's; time never decreases.
        self.lamport += 1;
        self.time += 10;
        let seq = self.seqs.entry((signer.public_key(), session.to_string())).or_insert(0);
        let mut b = RecordBuilder::new(kind, body);
        b.parents = parents.to_vec();
        b.lamport = self.lamport;
        b.time = self.time;
        b.principal = if who == Who::Anchor {
            "authority".into()
        } else {
            "agent:alice".into()
        };
        b.session = session.into();
        b.seq = *seq;
        b.ext = ext;
        *seq += 1;
        let bytes = b.sign(signer);
        let hash = sha256(&bytes);
        assert!(self.merkle.push(&hash));
        self.payloads.push(b.payload());
        self.records.push(bytes);
        self.signers.push(who);
        hash
    }
}

fn build() -> Fixture {
    let signers = [ANCHOR_SEED, KERNEL_SEED, APPROVER_SEED, WITNESS_SEED, STRANGER_SEED].map(|s| Signer::from_seed(&s));
    let [anchor, kernel, approver, witness, _stranger] = &signers;
    let (a, k) = (Who::Anchor, Who::Kernel);
    let mut c = ChainBuilder::new();

    // Trust: the anchor publishes the kernel, an approver and a witness.
    c.push(
        anchor,
        a,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &kernel.public_key(),
            Some(&["kernel"]),
            None,
            None,
        ),
        "",
        &[],
        None,
    );
    c.push(
        anchor,
        a,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &approver.public_key(),
            Some(&["approver"]),
            None,
            None,
        ),
        "",
        &[],
        None,
    );
    c.push(
        anchor,
        a,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &witness.public_key(),
            Some(&["witness", "audit.log"]),
            None,
            None,
        ),
        "",
        &[],
        None,
    );

    // A policy (with an extension map) and a tool pin, kernel scope.
    let bundle = sha256(b"policy bundle v1");
    let mut ext = CborWriter::new();
    ext.map(2)
        .text("note")
        .text("fuzz fixture")
        .text("labels")
        .array(2)
        .uint(1)
        .int(-2);
    let policy = c.push(
        kernel,
        k,
        Kind::Policy,
        body::policy(&bundle, Some("default")),
        "",
        &[],
        Some(ext.into_bytes()),
    );
    let mut claims = CborWriter::new();
    claims.map(1).text("a").bytes(b"b");
    let pin = c.push(
        kernel,
        k,
        Kind::Attestation,
        body::attestation("tool-pin", &sha256(b"fs.read def"), Some(&claims.buf)),
        "",
        &[],
        None,
    );

    // INTENT -> DECISION ALLOW -> EFFECT.
    let s = "session-1";
    let args = commitment(b"salt-1", br#"{"path":"/tmp/x"}"#);
    let intent = c.push(
        kernel,
        k,
        Kind::Intent,
        body::intent("fs.read", CallKind::Json, &args),
        s,
        &[],
        None,
    );
    let allow = c.push(
        kernel,
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "POLICY_ALLOW", &bundle, None),
        s,
        &[intent, policy],
        None,
    );
    let effect = Effect {
        status: EffectStatus::Succeeded,
        tool: "fs.read",
        call_kind: CallKind::Json,
        args,
        output: commitment(b"salt-2", b"hello"),
        executor: "sandbox-0",
        meters: &[("gas", 1234), ("wall_ms", 5), ("bytes_out", 5)],
    };
    c.push(kernel, k, Kind::Effect, body::effect(&effect), s, &[allow, pin], None);

    // INTENT -> DECISION ESCALATE -> APPROVAL -> EFFECT.
    let args2 = commitment(b"salt-3", b"rm -rf /tmp/y");
    let intent2 = c.push(
        kernel,
        k,
        Kind::Intent,
        body::intent("shell", CallKind::Text, &args2),
        s,
        &[],
        None,
    );
    let terms = Escalation {
        role: "approver",
        quorum: 1,
        not_before: T0,
        expires: T0 + 1_000_000,
    };
    let escalate = c.push(
        kernel,
        k,
        Kind::Decision,
        body::decision(Verdict::Escalate, "POLICY_ESCALATE", &bundle, Some(&terms)),
        s,
        &[intent2],
        None,
    );
    let approval_sig = approver.sign(&approval_challenge(&escalate));
    let approval = c.push(
        kernel,
        k,
        Kind::Approval,
        body::approval(&[(approver.public_key(), approval_sig)]),
        s,
        &[escalate],
        None,
    );
    let effect2 = Effect {
        status: EffectStatus::Failed,
        tool: "shell",
        call_kind: CallKind::Text,
        args: args2,
        output: commitment(b"salt-4", b"permission denied"),
        executor: "sandbox-0",
        meters: &[],
    };
    c.push(
        kernel,
        k,
        Kind::Effect,
        body::effect(&effect2),
        s,
        &[escalate, approval],
        None,
    );

    // INTENT -> DENY, and a VIOLATION.
    let args3 = commitment(b"salt-5", &[0, 1, 2, 3]);
    let intent3 = c.push(
        kernel,
        k,
        Kind::Intent,
        body::intent("net.fetch", CallKind::Bytes, &args3),
        "session-2",
        &[],
        None,
    );
    c.push(
        kernel,
        k,
        Kind::Decision,
        body::decision(Verdict::Deny, "TOOL_NOT_ALLOWED", &bundle, None),
        "session-2",
        &[intent3],
        None,
    );
    c.push(
        kernel,
        k,
        Kind::Violation,
        body::violation("PROTOCOL_VIOLATION", Some(&intent3), Some("result without permit")),
        "session-2",
        &[intent3],
        None,
    );

    // A CHECKPOINT over everything so far, cosigned by the witness.
    let count = c.records.len() as u64;
    let root = c.merkle.root();
    let (msg, n) = checkpoint_challenge(count, &root);
    let cosig = witness.sign(&msg[..n]);
    let checkpoint = c.push(
        kernel,
        k,
        Kind::Checkpoint,
        body::checkpoint(count, &root, &[(witness.public_key(), cosig)]),
        "",
        &[],
        None,
    );

    // The approver key is retired with the checkpoint as cut-off (it signed no record).
    c.push(
        anchor,
        a,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Revoke,
            &approver.public_key(),
            None,
            None,
            Some(&checkpoint),
        ),
        "",
        &[],
        None,
    );

    // Independent VIOLATIONs: any subset, in any order, verifies after chain[0].
    let extras = (0..72)
        .map(|i| {
            let mut b = RecordBuilder::new(Kind::Violation, body::violation("SANDBOX_VIOLATION", None, None));
            b.lamport = 1;
            b.time = EXTRAS_TIME;
            b.session = format!("x{i}");
            b.sign(kernel)
        })
        .collect();

    Fixture {
        anchor: anchor.public_key(),
        chain: c.records,
        chain_signers: c.signers,
        chain_payloads: c.payloads,
        extras,
        signers,
    }
}

/// The fixture, built (and checked) once per process.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let f = build();
        self_check(&f);
        f
    })
}

/// Checks the fixture is what the targets assume: the chain verifies, every kind is
/// present, the extras verify after the kernel's publication, and a full table is an
/// error rather than a panic.
fn self_check(f: &Fixture) {
    let chain: Vec<&[u8]> = f.chain.iter().map(Vec::as_slice).collect();
    let v = check_stream(&[f.anchor], Capacity::for_records(64), &chain, false).expect("the fixture chain must verify");
    assert_eq!(v.records, chain.len() as u64);
    for kind in Kind::ALL {
        assert!(v.count(kind) > 0, "fixture lacks a {}", kind.name());
    }
    assert_eq!((v.checkpoints, v.witnessed_checkpoints, v.open_escalations), (1, 1, 0));
    assert_eq!((v.keys_published, v.keys_retired), (3, 1));
    for r in f.pool() {
        let rec = Record::decode(r).expect("fixture records decode");
        assert_eq!(reencode(&rec), *r, "fixture record does not re-encode to itself");
    }

    // Extras in reverse order after the kernel's key: all verify.
    let mut s: Vec<&[u8]> = vec![&f.chain[0]];
    s.extend(f.extras.iter().rev().map(Vec::as_slice));
    let v = check_stream(&[f.anchor], Capacity::for_records(s.len()), &s, false).expect("extras verify");
    assert_eq!(v.records, s.len() as u64);

    // Full tables: record table (64 slots, 65 records).
    let mut s: Vec<&[u8]> = chain.clone();
    s.extend(f.extras.iter().map(Vec::as_slice));
    let e = check_stream(&[f.anchor], Capacity::for_records(64), &s[..65], false).expect_err("65 records in 64 slots");
    assert_eq!((e.code, e.index), (ErrorCode::CapacityExceeded, 64), "{e}");
    // Intent table.
    let e = check_stream(
        &[f.anchor],
        Capacity {
            intents: 1,
            ..Capacity::for_records(64)
        },
        &chain,
        false,
    )
    .expect_err("one intent slot");
    assert_eq!(e.code, ErrorCode::CapacityExceeded, "{e}");
    // Escalation table.
    let e = check_stream(
        &[f.anchor],
        Capacity {
            escalations: 0,
            ..Capacity::for_records(64)
        },
        &chain,
        false,
    )
    .expect_err("no escalation slot");
    assert_eq!(e.code, ErrorCode::CapacityExceeded, "{e}");
    // Key table (anchor + 3 published keys needed).
    let e = check_stream(
        &[f.anchor],
        Capacity {
            keys: 2,
            ..Capacity::for_records(64)
        },
        &chain,
        false,
    )
    .expect_err("two key slots");
    assert_eq!(e.code, ErrorCode::CapacityExceeded, "{e}");
    // Stream table: 1 + 1 slots keep no eighth free for a second (signer, session).
    let e = check_stream(
        &[f.anchor],
        Capacity {
            streams: 1,
            ..Capacity::for_records(64)
        },
        &chain,
        false,
    )
    .expect_err("one stream slot");
    assert_eq!(e.code, ErrorCode::CapacityExceeded, "{e}");
}

/// Reads every field and iterator of a decoded record; returns a value that depends on
/// all of them (so the optimiser cannot drop the reads).
pub fn touch(rec: &Record<'_>) -> u64 {
    let mut acc = 0u64;
    let mut mix = |x: u64| acc = acc.rotate_left(5) ^ x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let bytes = |b: &[u8]| b.iter().fold(b.len() as u64, |h, &x| h.rotate_left(7) ^ u64::from(x));
    mix(bytes(&rec.hash));
    mix(bytes(&rec.kid));
    mix(bytes(&rec.signature));
    mix(bytes(rec.protected));
    mix(bytes(rec.payload));
    mix(rec.kind as u64);
    mix(bytes(rec.kind.name().as_bytes()));
    assert_eq!(Kind::from_u64(rec.kind as u64), Some(rec.kind));
    let mut n = 0;
    let mut prev: Option<Hash> = None;
    for p in rec.parents.iter() {
        assert!(prev.is_none_or(|q| q < p), "parents not strictly ascending");
        prev = Some(p);
        mix(bytes(&p));
        n += 1;
    }
    assert_eq!(n, rec.parents.len());
    assert_eq!(rec.parents.is_empty(), n == 0);
    mix(rec.lamport);
    mix(rec.time);
    mix(bytes(rec.principal.as_bytes()));
    mix(bytes(rec.session.as_bytes()));
    mix(rec.seq);
    if let Some(e) = rec.ext {
        mix(bytes(e));
    }
    assert_eq!(rec.body.kind(), rec.kind);
    match rec.body {
        Body::Intent { tool, call_kind, args } => {
            mix(bytes(tool.as_bytes()));
            mix(call_kind as u64);
            mix(bytes(&args));
        }
        Body::Decision {
            verdict,
            reason,
            policy,
            escalation,
        } => {
            mix(verdict as u64);
            mix(bytes(reason.as_bytes()));
            mix(bytes(&policy));
            if let Some(e) = escalation {
                mix(bytes(e.role.as_bytes()));
                mix(e.quorum ^ e.not_before ^ e.expires);
            }
        }
        Body::Approval { approvals } => {
            let mut n = 0;
            for (k, s) in approvals.iter() {
                mix(bytes(&k));
                mix(bytes(&s));
                n += 1;
            }
            assert_eq!(n, approvals.len());
            assert!(!approvals.is_empty());
        }
        Body::Effect {
            status,
            tool,
            call_kind,
            args,
            output,
            executor,
            meters,
        } => {
            mix(status as u64);
            mix(bytes(tool.as_bytes()));
            mix(call_kind as u64);
            mix(bytes(&args));
            mix(bytes(&output));
            mix(bytes(executor.as_bytes()));
            if let Some(m) = meters {
                let mut n = 0;
                for (name, v) in m.iter() {
                    mix(bytes(name.as_bytes()));
                    mix(v);
                    assert_eq!(m.get(name), Some(v));
                    n += 1;
                }
                assert_eq!(n, m.len());
                assert!(!m.is_empty());
                assert_eq!(m.get(""), None);
            }
        }
        Body::Violation { code, subject, detail } => {
            mix(bytes(code.as_bytes()));
            if let Some(s) = subject {
                mix(bytes(&s));
            }
            if let Some(d) = detail {
                mix(bytes(d.as_bytes()));
            }
        }
        Body::TrustEvent {
            action,
            key,
            roles,
            new_key,
            cutoff,
        } => {
            mix(action as u64);
            mix(bytes(&key));
            if let Some(r) = roles {
                let mut n = 0;
                for role in r.iter() {
                    assert!(verify_core::role_name_valid(role));
                    mix(bytes(role.as_bytes()));
                    n += 1;
                }
                assert_eq!(n, r.len());
                assert!(!r.is_empty());
            }
            if let Some(k) = new_key {
                mix(bytes(&k));
            }
            if let Some(c) = cutoff {
                mix(bytes(&c));
            }
        }
        Body::Policy { bundle, name } => {
            mix(bytes(&bundle));
            if let Some(n) = name {
                mix(bytes(n.as_bytes()));
            }
        }
        Body::Attestation {
            subtype,
            subject,
            claims,
        } => {
            mix(bytes(subtype.as_bytes()));
            mix(bytes(&subject));
            if let Some(c) = claims {
                mix(bytes(c));
            }
        }
        Body::Checkpoint {
            count,
            root,
            cosignatures,
        } => {
            mix(count);
            mix(bytes(&root));
            if let Some(list) = cosignatures {
                let mut n = 0;
                for (k, s) in list.iter() {
                    mix(bytes(&k));
                    mix(bytes(&s));
                    n += 1;
                }
                assert_eq!(n, list.len());
            }
        }
    }
    acc
}

/// Re-encodes a decoded record with the `sign` encoders: the full COSE_Sign1 bytes.
/// Strict decoding accepts one byte form only, so this must equal the decoded input.
pub fn reencode(rec: &Record<'_>) -> Vec<u8> {
    let body = match rec.body {
        Body::Intent { tool, call_kind, args } => body::intent(tool, call_kind, &args),
        Body::Decision {
            verdict,
            reason,
            policy,
            escalation,
        } => body::decision(verdict, reason, &policy, escalation.as_ref()),
        Body::Approval { approvals } => body::approval(&approvals.iter().collect::<Vec<_>>()),
        Body::Effect {
            status,
            tool,
            call_kind,
            args,
            output,
            executor,
            meters,
        } => {
            let m: Vec<(&str, u64)> = meters.iter().flat_map(|m| m.iter()).collect();
            body::effect(&Effect {
                status,
                tool,
                call_kind,
                args,
                output,
                executor,
                meters: &m,
            })
        }
        Body::Violation { code, subject, detail } => body::violation(code, subject.as_ref(), detail),
        Body::TrustEvent {
            action,
            key,
            roles,
            new_key,
            cutoff,
        } => {
            let r: Option<Vec<&str>> = roles.map(|r| r.iter().collect());
            body::trust_event(action, &key, r.as_deref(), new_key.as_ref(), cutoff.as_ref())
        }
        Body::Policy { bundle, name } => body::policy(&bundle, name),
        Body::Attestation {
            subtype,
            subject,
            claims,
        } => body::attestation(subtype, &subject, claims),
        Body::Checkpoint {
            count,
            root,
            cosignatures,
        } => body::checkpoint(
            count,
            &root,
            &cosignatures.iter().flat_map(|c| c.iter()).collect::<Vec<_>>(),
        ),
    };
    let mut b = RecordBuilder::new(rec.kind, body);
    b.parents = rec.parents.iter().collect();
    b.lamport = rec.lamport;
    b.time = rec.time;
    b.principal = rec.principal.into();
    b.session = rec.session.into();
    b.seq = rec.seq;
    b.ext = rec.ext.map(<[u8]>::to_vec);
    let payload = b.payload();
    let mut w = CborWriter::new();
    w.tag(COSE_SIGN1_TAG)
        .array(4)
        .bytes(&verify_core::protected_header(&rec.kid))
        .map(0)
        .bytes(&payload)
        .bytes(&rec.signature);
    w.into_bytes()
}

/// Applies mutations to `buf`. Each op is 4 bytes `[op, pos_hi, pos_lo, value]`;
/// the position is taken modulo the buffer's length (plus one for inserts):
/// op % 4 = 0 or 1: xor the byte with `value`; 2: insert `value`; 3: delete the byte.
/// A trailing partial op is ignored. Returns the number of ops applied.
pub fn apply_ops(buf: &mut Vec<u8>, ops: &[u8]) -> usize {
    let mut n = 0;
    for op in ops.chunks_exact(4) {
        let (kind, pos, val) = (op[0] % 4, usize::from(u16::from_be_bytes([op[1], op[2]])), op[3]);
        match kind {
            0 | 1 if !buf.is_empty() => {
                let i = pos % buf.len();
                buf[i] ^= val;
            }
            2 => {
                let i = pos % (buf.len() + 1);
                buf.insert(i, val);
            }
            3 if !buf.is_empty() => {
                let i = pos % buf.len();
                buf.remove(i);
            }
            _ => continue,
        }
        n += 1;
    }
    n
}

/// Whether `HELM_FUZZ_STATS` is set: then [`run_stream`] prints each stream's outcome
/// (`HELM_FUZZ_OUTCOME <code>`) to stderr, to see which rules a corpus reaches.
pub fn stats_enabled() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("HELM_FUZZ_STATS").is_some())
}

/// Pushes `records` into a fresh verifier with tables of capacity `cap`, checking the
/// verifier's contract on the way; returns what `finish` returns.
///
/// Checked: a verifier that failed keeps returning that same error; an accepted record
/// is what `Record::decode` makes of the bytes; `count` is the number accepted and never
/// exceeds the record table; `finish` agrees with the pushes. Setup errors are returned
/// as a synthetic `CapacityExceeded` at index `u64::MAX` (they are not what is fuzzed).
#[allow(clippy::result_large_err)]
pub fn run_stream(anchors: &[[u8; 32]], cap: Capacity, records: &[&[u8]]) -> Result<Verified, VerifyError> {
    check_stream(anchors, cap, records, stats_enabled())
}

#[allow(clippy::result_large_err)]
fn check_stream(anchors: &[[u8; 32]], cap: Capacity, records: &[&[u8]], report: bool) -> Result<Verified, VerifyError> {
    let mut tables = OwnedTables::new(cap);
    let mut v = match Verifier::new(anchors, tables.tables()) {
        Ok(v) => v,
        Err(_) => {
            return Err(VerifyError {
                code: ErrorCode::CapacityExceeded,
                index: u64::MAX,
                hash: None,
                related: None,
                expected: None,
                actual: None,
                detail: "setup",
            })
        }
    };
    let mut first_err: Option<VerifyError> = None;
    let mut accepted = 0u64;
    for r in records {
        let res = v.push(r);
        match (&first_err, res) {
            (None, Ok(rec)) => {
                assert_eq!(Ok(rec), Record::decode(r), "push returned a record decode does not");
                accepted += 1;
            }
            (None, Err(e)) => {
                assert_eq!(e.index, accepted, "error names the wrong record: {e}");
                assert!(
                    e.hash == Some(sha256(r)),
                    "error does not name the offending record: {e}"
                );
                first_err = Some(e);
            }
            (Some(first), Ok(_)) => panic!("verifier accepted a record after failing with {first}"),
            (Some(first), Err(e)) => assert_eq!(*first, e, "a failed verifier changed its error"),
        }
        assert_eq!(v.count(), accepted);
        assert!(
            accepted as usize <= cap.records,
            "more records accepted than the table holds"
        );
    }
    let out = v.finish();
    if report {
        match &out {
            Ok(_) => eprintln!("HELM_FUZZ_OUTCOME OK"),
            Err(e) => eprintln!("HELM_FUZZ_OUTCOME {}", e.code.name()),
        }
    }
    match (&first_err, &out) {
        (Some(e), Err(f)) => assert_eq!(e, f, "finish reports another error than push"),
        (Some(e), Ok(_)) => panic!("finish succeeded after push failed with {e}"),
        (None, Ok(s)) => {
            assert_eq!(s.records, accepted);
            assert_eq!(s.per_kind.iter().sum::<u64>(), accepted);
            assert!(s.time_span.0 <= s.time_span.1);
            assert!(s.witnessed_checkpoints <= s.checkpoints);
        }
        (None, Err(e)) => {
            assert_eq!(accepted, 0, "finish failed after all pushes succeeded: {e}");
            assert_eq!(e.code, ErrorCode::EmptyStream);
        }
    }
    out
}

/// Seed modules for the `sandbox_module` target: the sandbox's hand-written WAT edge
/// cases (sandbox/tests/wat/), compiled once.
pub fn sandbox_seed_modules() -> &'static [Vec<u8>] {
    static MODULES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MODULES.get_or_init(|| {
        [
            include_str!("../../sandbox/tests/wat/echo.wat"),
            include_str!("../../sandbox/tests/wat/compute.wat"),
            include_str!("../../sandbox/tests/wat/enosys.wat"),
            include_str!("../../sandbox/tests/wat/bad-pointers.wat"),
            include_str!("../../sandbox/tests/wat/nan-bits.wat"),
            include_str!("../../sandbox/tests/wat/output-flood.wat"),
            include_str!("../../sandbox/tests/wat/random-flood.wat"),
            include_str!("../../sandbox/tests/wat/memory-grow-loop.wat"),
            include_str!("../../sandbox/tests/wat/memory-grow-past-own-max.wat"),
            include_str!("../../sandbox/tests/wat/table-grow.wat"),
            include_str!("../../sandbox/tests/wat/deep-recursion.wat"),
            include_str!("../../sandbox/tests/wat/busy-loop.wat"),
            include_str!("../../sandbox/tests/wat/start-function-loop.wat"),
        ]
        .iter()
        .map(|src| wat::parse_str(src).expect("the sandbox's WAT test modules parse"))
        .collect()
    })
}
