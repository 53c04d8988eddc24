//! Writes every test vector deterministically: `generate-vectors [DIR]` (default: this
//! crate's folder). The same binary run twice writes the same bytes; CI regenerates the
//! vectors and compares them with the committed files.
//!
//! Expected verdicts are written here by hand, from the spec's rules; they are never
//! computed by running the verifier (that would make the vectors prove nothing).
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    reason = "a generator bug panics and fails CI; the vectors it writes are the product"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use helm_test_vectors::{test_key, Chain, Expectation, RecordVector, SignatureVector};
use verify_core::body::{self, Effect};
use verify_core::{
    approval_challenge, commitment, protected_header, sha256, sign_payload, CallKind, CborWriter, EffectStatus,
    Escalation, Hash, Kind, RecordBuilder, Signer, TrustAction, Verdict,
};

/// The keys of every generated scenario.
struct World {
    root: Signer,
    kernel: Signer,
    kernel2: Signer,
    approvers: [Signer; 3],
    witness: Signer,
    stranger: Signer,
}

impl World {
    fn new() -> World {
        World {
            root: test_key("root-1"),
            kernel: test_key("kernel-1"),
            kernel2: test_key("kernel-2"),
            approvers: [test_key("approver-1"), test_key("approver-2"), test_key("approver-3")],
            witness: test_key("witness-1"),
            stranger: test_key("stranger"),
        }
    }

    fn anchors(&self) -> Vec<String> {
        vec![hex::encode(self.root.public_key())]
    }
}

const S1: &str = "session-1";
const S2: &str = "session-2";

fn policy_hash() -> Hash {
    sha256(b"example policy bundle v1")
}

fn args(n: u8) -> (Hash, Vec<u8>) {
    let bytes = format!("{{\"path\":\"/workspace/file-{n}.txt\"}}").into_bytes();
    let salt = sha256(&[b's', n]);
    (commitment(&salt[..16], &bytes), bytes)
}

fn output(n: u8) -> Hash {
    commitment(&sha256(&[b'o', n])[..16], format!("contents of file {n}").as_bytes())
}

/// Trust events: the kernel keys, three approvers and a witness. Five records.
fn genesis(w: &World) -> Chain {
    let mut c = Chain::new();
    let publish =
        |k: &Signer, roles: &[&str]| body::trust_event(TrustAction::Publish, &k.public_key(), Some(roles), None, None);
    c.push(&w.root, Kind::TrustEvent, publish(&w.kernel, &["kernel"]), &[], "");
    for a in &w.approvers {
        c.push(&w.root, Kind::TrustEvent, publish(a, &["approver"]), &[], "");
    }
    c.push(&w.root, Kind::TrustEvent, publish(&w.witness, &["witness"]), &[], "");
    c
}

fn intent(c: &mut Chain, k: &Signer, tool: &str, n: u8, session: &str) -> Hash {
    c.push(
        k,
        Kind::Intent,
        body::intent(tool, CallKind::Json, &args(n).0),
        &[],
        session,
    )
}

fn decide(c: &mut Chain, k: &Signer, intent: Hash, verdict: Verdict, reason: &str, session: &str) -> Hash {
    c.push(
        k,
        Kind::Decision,
        body::decision(verdict, reason, &policy_hash(), None),
        &[intent],
        session,
    )
}

fn effect_body(tool: &str, n: u8) -> Vec<u8> {
    body::effect(&Effect {
        status: EffectStatus::Succeeded,
        tool,
        call_kind: CallKind::Json,
        args: args(n).0,
        output: output(n),
        executor: "tool-runner",
        meters: &[("duration_ms", 12), ("cost_units", 3)],
    })
}

fn effect(c: &mut Chain, k: &Signer, permit: &[Hash], tool: &str, n: u8, session: &str) -> Hash {
    c.push(k, Kind::Effect, effect_body(tool, n), permit, session)
}

fn terms(c: &Chain, quorum: u64) -> Escalation<'static> {
    Escalation {
        role: "approver",
        quorum,
        not_before: c.time + 60_000,
        expires: c.time + 3_600_000,
    }
}

fn escalate(c: &mut Chain, k: &Signer, intent: Hash, quorum: u64, session: &str) -> Hash {
    let t = terms(c, quorum);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Escalate, "POLICY_ESCALATE", &policy_hash(), Some(&t)),
        &[intent],
        session,
    )
}

fn approval_body(escalate: &Hash, approvers: &[&Signer]) -> Vec<u8> {
    let ch = approval_challenge(escalate);
    let list: Vec<([u8; 32], [u8; 64])> = approvers.iter().map(|a| (a.public_key(), a.sign(&ch))).collect();
    body::approval(&list)
}

/// Payload fields of a builder, each as (key, encoded value), for byte-level surgery.
fn fields(b: &RecordBuilder) -> Vec<(u64, Vec<u8>)> {
    let enc = |f: &dyn Fn(&mut CborWriter)| {
        let mut w = CborWriter::new();
        f(&mut w);
        w.into_bytes()
    };
    let mut parents = b.parents.clone();
    parents.sort();
    let mut out = vec![
        (
            0,
            enc(&|w| {
                w.uint(1);
            }),
        ),
        (
            1,
            enc(&|w| {
                w.uint(b.kind as u64);
            }),
        ),
        (
            2,
            enc(&|w| {
                w.array(parents.len());
                for p in &parents {
                    w.bytes(p);
                }
            }),
        ),
        (
            3,
            enc(&|w| {
                w.uint(b.lamport);
            }),
        ),
        (
            4,
            enc(&|w| {
                w.uint(b.time);
            }),
        ),
        (
            5,
            enc(&|w| {
                w.text(&b.principal);
            }),
        ),
        (
            6,
            enc(&|w| {
                w.text(&b.session);
            }),
        ),
        (
            7,
            enc(&|w| {
                w.uint(b.seq);
            }),
        ),
        (8, b.body.clone()),
    ];
    if let Some(e) = &b.ext {
        out.push((9, e.clone()));
    }
    out
}

fn map_of(fields: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.map(fields.len());
    for (k, v) in fields {
        w.uint(*k).raw(v);
    }
    w.into_bytes()
}

fn sign_raw(k: &Signer, payload: &[u8]) -> Vec<u8> {
    sign_payload(k, &protected_header(&k.public_key()), payload)
}

/// An INTENT builder for the next position of `c`, for tweaking at the byte level.
fn next_intent(c: &Chain, w: &World) -> RecordBuilder {
    c.builder(
        &w.kernel,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(1).0),
        &[],
        S1,
    )
}

/// The mixed-order key A + T, where T = (0, -1) is the point of order 2: (-x, -y).
fn mixed_order(key: &[u8; 32]) -> [u8; 32] {
    // p - y on 255-bit little-endian integers, then flip the sign bit of x.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut y = *key;
    let sign = y[31] & 0x80;
    y[31] &= 0x7f;
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in 0..32 {
        let d = i16::from(p[i]) - i16::from(y[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + if d < 0 { 256 } else { 0 }) as u8;
    }
    out[31] |= sign ^ 0x80;
    out
}

struct Out {
    dir: PathBuf,
    written: Vec<PathBuf>,
}

impl Out {
    fn write(&mut self, rel: &str, text: String) -> std::io::Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, text)?;
        self.written.push(path);
        Ok(())
    }

    fn vector(&mut self, v: RecordVector) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&v)? + "\n";
        self.write(&format!("records/{}.json", v.id), text)
    }
}

struct Vectors<'a> {
    w: &'a World,
    out: Vec<RecordVector>,
}

impl Vectors<'_> {
    fn accept(&mut self, id: &str, level: &str, rule: u8, description: &str, c: &Chain) {
        self.out.push(RecordVector {
            id: id.into(),
            description: description.into(),
            level: level.into(),
            rule,
            anchors: self.w.anchors(),
            records: c.hex_records(),
            expect: Expectation::Accept {
                count: c.records.len() as u64,
                root: hex::encode(c.root()),
            },
        });
    }

    /// A vector rejected at its last record with `error`.
    fn reject(&mut self, id: &str, level: &str, rule: u8, description: &str, c: &Chain, error: &str) {
        let index = c.records.len() as u64 - 1;
        self.reject_at(id, level, rule, description, c, error, index);
    }

    #[allow(clippy::too_many_arguments)]
    fn reject_at(&mut self, id: &str, level: &str, rule: u8, description: &str, c: &Chain, error: &str, index: u64) {
        assert!(
            verify_core::ErrorCode::from_name(error).is_some(),
            "unknown error code {error}"
        );
        self.out.push(RecordVector {
            id: id.into(),
            description: description.into(),
            level: level.into(),
            rule,
            anchors: self.w.anchors(),
            records: c.hex_records(),
            expect: Expectation::Reject {
                error: error.into(),
                index,
            },
        });
    }
}

fn valid_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;

    let mut c = genesis(w);
    let pol = c.push(
        k,
        Kind::Policy,
        body::policy(&policy_hash(), Some("coding-agent")),
        &[],
        "",
    );
    let i = intent(&mut c, k, "read_file", 1, S1);
    let d = c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "POLICY_ALLOW", &policy_hash(), None),
        &[i, pol],
        S1,
    );
    effect(&mut c, k, &[d], "read_file", 1, S1);
    c.checkpoint(k, &[], &[]);
    v.accept("valid/allow-then-effect", "L1", 5, "Trust events publish the kernel key; a POLICY, an INTENT, its ALLOW (naming the POLICY too), the EFFECT of that permit, and a CHECKPOINT over all of it.", &c);

    let mut c = genesis(w);
    let i = intent(&mut c, k, "delete_repo", 2, S1);
    decide(&mut c, k, i, Verdict::Deny, "POLICY_DENY", S1);
    v.accept(
        "valid/deny-without-effect",
        "L1",
        5,
        "An INTENT denied by policy; no EFFECT follows.",
        &c,
    );

    let mut c = genesis(w);
    let i = c.push(
        k,
        Kind::Intent,
        body::intent("shell", CallKind::Text, &commitment(b"sixteen-byte-sal", b"ls -la")),
        &[],
        S1,
    );
    let d = decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    c.push(
        k,
        Kind::Effect,
        body::effect(&Effect {
            status: EffectStatus::Failed,
            tool: "shell",
            call_kind: CallKind::Text,
            args: commitment(b"sixteen-byte-sal", b"ls -la"),
            output: commitment(b"another-16-bytes", b"permission denied"),
            executor: "sandbox",
            meters: &[],
        }),
        &[d],
        S1,
    );
    v.accept(
        "valid/free-text-call-failed-effect",
        "L1",
        5,
        "A free-text tool call (call kind 1) allowed; its EFFECT reports a failure and carries no meters.",
        &c,
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    let e = escalate(&mut c, k, i, 2, S1);
    c.advance(120_000);
    let a = c.push(
        k,
        Kind::Approval,
        approval_body(&e, &[&w.approvers[0], &w.approvers[2]]),
        &[e],
        S1,
    );
    effect(&mut c, k, &[e, a], "refund", 3, S1);
    v.accept("valid/escalate-approve-effect", "L2", 5, "An ESCALATE with quorum 2 and a 60 s timelock; an APPROVAL by two approvers after the timelock; the EFFECT names the ESCALATE and the APPROVAL as its permit.", &c);

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 4, S1);
    let e = escalate(&mut c, k, i, 1, S1);
    c.advance(3_700_000);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Deny, "APPROVAL_TIMEOUT", &policy_hash(), None),
        &[i, e],
        S1,
    );
    v.accept("valid/escalate-expires-deny", "L2", 5, "An ESCALATE that expires unanswered is resolved by a DENY (APPROVAL_TIMEOUT) naming the INTENT and the ESCALATE.", &c);

    let mut c = genesis(w);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &w.kernel2.public_key(),
            Some(&["kernel"]),
            None,
            None,
        ),
        &[],
        "",
    );
    let i = intent(&mut c, k, "read_file", 1, S1);
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    let cp = c.checkpoint(k, &[&w.witness], &[]);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Revoke, &k.public_key(), None, None, Some(&cp)),
        &[cp],
        "",
    );
    let i2 = intent(&mut c, &w.kernel2, "read_file", 2, S1);
    decide(&mut c, &w.kernel2, i2, Verdict::Allow, "POLICY_ALLOW", S1);
    v.accept("valid/revocation-at-checkpoint", "L2", 2, "A second kernel key is published; the first key signs up to a witnessed CHECKPOINT (which it also signs), is revoked with that checkpoint as cut-off, and the second key carries on in the same session with its own sequence numbers.", &c);

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    let cp = c.checkpoint(k, &[], &[]);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Rotate,
            &k.public_key(),
            Some(&["kernel"]),
            Some(&w.kernel2.public_key()),
            Some(&cp),
        ),
        &[cp],
        "",
    );
    let i2 = intent(&mut c, &w.kernel2, "read_file", 2, S1);
    let d2 = decide(&mut c, &w.kernel2, i2, Verdict::Allow, "POLICY_ALLOW", S1);
    effect(&mut c, &w.kernel2, &[d2], "read_file", 2, S1);
    v.accept(
        "valid/key-rotation",
        "L2",
        2,
        "The kernel key is rotated to a new key at a CHECKPOINT; the new key continues.",
        &c,
    );

    let mut c = genesis(w);
    let pol = c.push(k, Kind::Policy, body::policy(&policy_hash(), None), &[], "");
    c.advance(5_000);
    let first = c.hashes[0];
    c.push_with(
        k,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(1).0),
        &[pol, first],
        S1,
        |b| b.lamport = 1_000,
    );
    c.push_with(
        k,
        Kind::Violation,
        body::violation("PROTOCOL_VIOLATION", None, None),
        &[],
        S1,
        |b| {
            b.lamport = 3;
            b.time -= 1_000;
        },
    );
    v.accept("valid/parents-and-clocks", "L1", 3, "An INTENT naming two earlier records as parents, with a Lamport clock far above theirs; then a record without parents whose Lamport clock is lower (order is per parent, not global) and whose kernel time equals the previous record's (time may repeat, not go back).", &c);

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.checkpoint(k, &[&w.witness], &[]);
    v.accept(
        "valid/witnessed-checkpoint",
        "L2",
        6,
        "A CHECKPOINT cosigned by a key with the witness role.",
        &c,
    );

    let mut c = genesis(w);
    c.push(
        k,
        Kind::Violation,
        body::violation(
            "RESULT_WITHOUT_PERMIT",
            Some(&sha256(b"tool result")),
            Some("tool result for call id call_7 that was never allowed"),
        ),
        &[],
        S1,
    );
    v.accept(
        "valid/violation-reported",
        "L1",
        5,
        "A VIOLATION is a record like any other: reported by verification, not fatal.",
        &c,
    );

    let mut c = genesis(w);
    let mut claims = CborWriter::new();
    claims
        .map(2)
        .text("tool")
        .text("read_file")
        .text("server")
        .text("filesystem");
    c.push(
        k,
        Kind::Attestation,
        body::attestation("tool-pin", &sha256(b"tool definition"), Some(&claims.buf)),
        &[],
        "",
    );
    let mut ext = CborWriter::new();
    ext.map(2)
        .text("x")
        .array(2)
        .uint(1)
        .int(-2)
        .text("note")
        .text("ignorable");
    let ext = ext.into_bytes();
    c.push_with(
        k,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(1).0),
        &[],
        S1,
        |b| b.ext = Some(ext),
    );
    v.accept("valid/attestation-and-extension", "L1", 1, "An ATTESTATION of a pinned tool definition with claims, and an INTENT carrying an ignorable extension map (payload key 9).", &c);

    let mut c = genesis(w);
    let a = intent(&mut c, k, "read_file", 1, S1);
    let b = intent(&mut c, k, "read_file", 2, S2);
    let da = decide(&mut c, k, a, Verdict::Allow, "POLICY_ALLOW", S1);
    let db = decide(&mut c, k, b, Verdict::Allow, "POLICY_ALLOW", S2);
    effect(&mut c, k, &[db], "read_file", 2, S2);
    effect(&mut c, k, &[da], "read_file", 1, S1);
    c.checkpoint(k, &[], &[]);
    v.accept(
        "valid/interleaved-sessions",
        "L1",
        4,
        "Two sessions interleaved: sequence numbers count per (signer, session).",
        &c,
    );
}

fn rule1_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;
    let surgery = |v: &mut Vectors<'_>, id: &str, desc: &str, error: &str, f: &dyn Fn(&mut Vec<(u64, Vec<u8>)>)| {
        let mut c = genesis(w);
        let b = next_intent(&c, w);
        let mut fs = fields(&b);
        f(&mut fs);
        c.push_raw(sign_raw(k, &map_of(&fs)));
        v.reject(id, "L1", 1, desc, &c, error);
    };
    surgery(
        v,
        "rule1/non-shortest-integer",
        "The format version is encoded as 0x18 0x01 instead of 0x01 (properly signed).",
        "CBOR_NON_CANONICAL",
        &|f| f[0].1 = vec![0x18, 0x01],
    );
    surgery(
        v,
        "rule1/unsorted-map-keys",
        "Payload keys 0 and 1 appear in the order 1, 0.",
        "CBOR_NON_CANONICAL",
        &|f| f.swap(0, 1),
    );
    surgery(
        v,
        "rule1/duplicate-map-key",
        "Payload key 0 appears twice.",
        "CBOR_NON_CANONICAL",
        &|f| {
            let dup = f[0].clone();
            f.insert(1, dup);
        },
    );
    surgery(
        v,
        "rule1/indefinite-length-array",
        "The (empty) parents array uses indefinite-length encoding 0x9f 0xff.",
        "CBOR_NON_CANONICAL",
        &|f| f[2].1 = vec![0x9f, 0xff],
    );
    surgery(
        v,
        "rule1/float-in-extension",
        "The ignorable extension map holds a half-precision float; floats are not part of the format.",
        "CBOR_NON_CANONICAL",
        &|f| f.push((9, vec![0xa1, 0x61, b'x', 0xf9, 0x3e, 0x00])),
    );
    surgery(
        v,
        "rule1/unknown-payload-field",
        "The payload has key 10, which the spec does not define.",
        "SCHEMA_UNKNOWN_FIELD",
        &|f| f.push((10, vec![0x00])),
    );
    surgery(
        v,
        "rule1/unknown-body-field",
        "The INTENT body has key 3, which the spec does not define.",
        "SCHEMA_UNKNOWN_FIELD",
        &|f| {
            let mut body = f[8].1.clone();
            body[0] += 1; // map of 4
            body.extend_from_slice(&[0x03, 0x00]);
            f[8].1 = body;
        },
    );
    surgery(
        v,
        "rule1/missing-sequence-number",
        "The payload has no sequence number (key 7).",
        "SCHEMA_MISSING_FIELD",
        &|f| f.retain(|(k, _)| *k != 7),
    );
    surgery(
        v,
        "rule1/unknown-kind",
        "Kind 10 is not defined.",
        "UNKNOWN_KIND",
        &|f| f[1].1 = vec![0x0a],
    );
    surgery(
        v,
        "rule1/unsupported-version",
        "Format version 2.",
        "UNSUPPORTED_VERSION",
        &|f| f[0].1 = vec![0x02],
    );
    surgery(
        v,
        "rule1/negative-lamport",
        "The Lamport clock is a negative integer.",
        "SCHEMA_INVALID_VALUE",
        &|f| f[3].1 = vec![0x20],
    );
    surgery(
        v,
        "rule1/undefined-in-extension",
        "The ignorable extension map holds `undefined` (0xf7); only false, true and null are simple values of the format.",
        "CBOR_NON_CANONICAL",
        &|f| f.push((9, vec![0xa1, 0x61, b'x', 0xf7])),
    );
    surgery(
        v,
        "rule1/count-beyond-input",
        "The parents array declares 2^32 elements: more than the bytes that remain, so truncated on any word size.",
        "CBOR_MALFORMED",
        &|f| f[2].1 = vec![0x9b, 0, 0, 0, 1, 0, 0, 0, 0],
    );
    surgery(
        v,
        "rule1/empty-principal",
        "The principal is the empty string.",
        "SCHEMA_INVALID_VALUE",
        &|f| f[5].1 = vec![0x60],
    );
    surgery(
        v,
        "rule1/parents-unsorted",
        "Two parents in descending order.",
        "SCHEMA_INVALID_VALUE",
        &|f| {
            let mut w = CborWriter::new();
            w.array(2).bytes(&[0xbb; 32]).bytes(&[0xaa; 32]);
            f[2].1 = w.into_bytes();
        },
    );
    surgery(
        v,
        "rule1/invalid-utf8-session",
        "The session id is not UTF-8.",
        "CBOR_MALFORMED",
        &|f| f[6].1 = vec![0x62, 0xff, 0xfe],
    );

    // COSE envelope.
    let mut c = genesis(w);
    let rec = next_intent(&c, w).sign(k);
    c.push_raw(rec[1..].to_vec());
    v.reject(
        "rule1/cose-untagged",
        "L1",
        1,
        "The COSE_Sign1 lacks tag 18.",
        &c,
        "COSE_STRUCTURE",
    );

    let mut c = genesis(w);
    let payload = next_intent(&c, w).payload();
    let prot = protected_header(&k.public_key());
    let sig = k.sign(&verify_core::sig_structure(&prot, &payload));
    let mut x = CborWriter::new();
    x.tag(18)
        .array(4)
        .bytes(&prot)
        .map(1)
        .uint(4)
        .bytes(&k.public_key())
        .bytes(&payload)
        .bytes(&sig);
    c.push_raw(x.into_bytes());
    v.reject(
        "rule1/cose-unprotected-header",
        "L1",
        1,
        "The unprotected header is not empty (it repeats the kid).",
        &c,
        "COSE_STRUCTURE",
    );

    let mut c = genesis(w);
    let payload = next_intent(&c, w).payload();
    let mut p = CborWriter::new();
    p.map(2).uint(1).int(-7).uint(4).bytes(&k.public_key());
    c.push_raw(sign_payload(k, &p.buf, &payload));
    v.reject(
        "rule1/cose-algorithm-es256",
        "L1",
        1,
        "The protected header names ES256 (-7).",
        &c,
        "COSE_ALGORITHM",
    );

    let mut c = genesis(w);
    let payload = next_intent(&c, w).payload();
    let mut p = CborWriter::new();
    p.map(1).uint(1).int(-8);
    c.push_raw(sign_payload(k, &p.buf, &payload));
    v.reject(
        "rule1/cose-kid-missing",
        "L1",
        1,
        "The protected header has no kid.",
        &c,
        "COSE_KID_MISSING",
    );

    let mut c = genesis(w);
    let mut rec = next_intent(&c, w).sign(k);
    rec.push(0x00);
    c.push_raw(rec);
    v.reject(
        "rule1/trailing-byte",
        "L1",
        1,
        "One zero byte follows the COSE_Sign1.",
        &c,
        "CBOR_TRAILING_BYTES",
    );

    let mut c = genesis(w);
    let mut rec = next_intent(&c, w).sign(k);
    rec.pop();
    c.push_raw(rec);
    v.reject(
        "rule1/truncated-record",
        "L1",
        1,
        "The last byte of the signature is missing.",
        &c,
        "CBOR_MALFORMED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "BECAUSE_I_SAID_SO", &policy_hash(), None),
        &[i],
        S1,
    );
    v.reject(
        "rule1/unknown-reason-code",
        "L1",
        1,
        "A DECISION whose reason code is not in the registry.",
        &c,
        "UNKNOWN_REASON_CODE",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "POLICY_DENY", &policy_hash(), None),
        &[i],
        S1,
    );
    v.reject(
        "rule1/reason-code-for-other-verdict",
        "L1",
        1,
        "An ALLOW carrying a reason code registered only for DENY.",
        &c,
        "UNKNOWN_REASON_CODE",
    );

    let mut c = genesis(w);
    c.push(
        k,
        Kind::Attestation,
        body::attestation("vibes", &sha256(b"x"), None),
        &[],
        "",
    );
    v.reject(
        "rule1/unknown-attestation-type",
        "L1",
        1,
        "An ATTESTATION subtype that is not registered.",
        &c,
        "UNKNOWN_ATTESTATION_TYPE",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    let e = escalate(&mut c, k, i, 1, S1);
    c.advance(120_000);
    let ch = approval_challenge(&e);
    let a = &w.approvers[0];
    let mut body = CborWriter::new();
    body.map(1).uint(0).array(2);
    for _ in 0..2 {
        body.map(2).uint(0).bytes(&a.public_key()).uint(1).bytes(&a.sign(&ch));
    }
    c.push(k, Kind::Approval, body.into_bytes(), &[e], S1);
    v.reject("rule1/approval-same-approver-twice", "L1", 1, "An APPROVAL lists one approver twice; approver lists are strictly ascending by key, so one approver can never count twice.", &c, "SCHEMA_INVALID_VALUE");

    let mut c = genesis(w);
    let mut ext = CborWriter::new();
    ext.map(1).text("padding").bytes(&vec![0u8; 70_000]);
    let ext = ext.into_bytes();
    c.push_with(
        k,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(1).0),
        &[],
        S1,
        |b| b.ext = Some(ext),
    );
    v.reject(
        "rule1/record-too-large",
        "L3",
        1,
        "A record of more than 65,536 bytes.",
        &c,
        "RECORD_TOO_LARGE",
    );
}

fn rule2_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;

    let mut c = genesis(w);
    intent(&mut c, &w.stranger, "read_file", 1, S1);
    v.reject(
        "rule2/unknown-signer",
        "L1",
        2,
        "An INTENT signed by a key no TRUST_EVENT published.",
        &c,
        "KEY_UNKNOWN",
    );

    let mut c = genesis(w);
    let mut rec = next_intent(&c, w).sign(k);
    let n = rec.len();
    rec[n - 10] ^= 0x01;
    c.push_raw(rec);
    v.reject(
        "rule2/bad-signature",
        "L1",
        2,
        "One bit of the signature's S half flipped.",
        &c,
        "SIGNATURE_INVALID",
    );

    let mut c = genesis(w);
    let payload = next_intent(&c, w).payload();
    let prot = protected_header(&k.public_key());
    let sig = w.stranger.sign(&verify_core::sig_structure(&prot, &payload));
    let mut x = CborWriter::new();
    x.tag(18).array(4).bytes(&prot).map(0).bytes(&payload).bytes(&sig);
    c.push_raw(x.into_bytes());
    v.reject(
        "rule2/signed-by-other-key",
        "L1",
        2,
        "The kid names the kernel key, but another key signed.",
        &c,
        "SIGNATURE_INVALID",
    );

    let mut c = genesis(w);
    let mut rec = next_intent(&c, w).sign(k);
    // S + L: the same signature with a non-canonical scalar (malleability).
    let n = rec.len();
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = &mut rec[n - 32..];
    let mut carry = 0u16;
    for i in 0..32 {
        let t = u16::from(s[i]) + u16::from(l[i]) + carry;
        s[i] = t as u8;
        carry = t >> 8;
    }
    c.push_raw(rec);
    v.reject(
        "rule2/non-canonical-s",
        "L1",
        2,
        "The signature's S replaced by S + L: valid under a lax verifier, malleable, rejected here.",
        &c,
        "SIGNATURE_INVALID",
    );

    let mut c = genesis(w);
    c.push(
        k,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Publish,
            &w.stranger.public_key(),
            Some(&["kernel"]),
            None,
            None,
        ),
        &[],
        "",
    );
    v.reject(
        "rule2/kernel-signs-trust-event",
        "L1",
        2,
        "A kernel key tries to publish a key; only trust anchors sign TRUST_EVENTs.",
        &c,
        "ROLE_NOT_PERMITTED",
    );

    let mut c = genesis(w);
    intent(&mut c, &w.root, "read_file", 1, S1);
    v.reject(
        "rule2/anchor-signs-intent",
        "L1",
        2,
        "A trust anchor signs an INTENT; anchors sign only TRUST_EVENTs.",
        &c,
        "ROLE_NOT_PERMITTED",
    );

    let mut c = genesis(w);
    intent(&mut c, &w.witness, "read_file", 1, S1);
    v.reject(
        "rule2/witness-signs-intent",
        "L1",
        2,
        "A key with only the witness role signs an INTENT.",
        &c,
        "ROLE_NOT_PERMITTED",
    );

    // A revoked key backdating a record.
    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    let cp = c.checkpoint(k, &[], &[]);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Revoke, &k.public_key(), None, None, Some(&cp)),
        &[cp],
        "",
    );
    c.push_with(
        k,
        Kind::Intent,
        body::intent("transfer_funds", CallKind::Json, &args(9).0),
        &[],
        S2,
        |b| {
            b.lamport = 1;
            b.time = helm_test_vectors::EPOCH_MS;
        },
    );
    v.reject("rule2/revoked-key-backdates-record", "L2", 2, "After the kernel key is revoked at a CHECKPOINT, a record signed with it claims Lamport 1 and the first kernel time of the run; key validity rests on the cut-off, not on clocks the signer chooses.", &c, "KEY_REVOKED");

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    let cp = c.checkpoint(k, &[], &[]);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Rotate,
            &k.public_key(),
            Some(&["kernel"]),
            Some(&w.kernel2.public_key()),
            Some(&cp),
        ),
        &[cp],
        "",
    );
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    v.reject(
        "rule2/rotated-key-signs-after-cutoff",
        "L2",
        2,
        "The kernel key is rotated away; the old key then signs a DECISION.",
        &c,
        "KEY_REVOKED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    let cp = c.checkpoint(k, &[], &[]);
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Revoke, &k.public_key(), None, None, Some(&cp)),
        &[cp],
        "",
    );
    v.reject("rule2/revocation-cutoff-before-records", "L2", 2, "A revocation whose cut-off CHECKPOINT lies before a record the key already signed: that record does not stand, so the stream is rejected.", &c, "REVOCATION_CUTOFF_VIOLATED");

    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut c = genesis(w);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &identity, Some(&["kernel"]), None, None),
        &[],
        "",
    );
    v.reject(
        "rule2/publish-small-order-key",
        "L2",
        2,
        "A TRUST_EVENT publishes the identity point, a key of small order.",
        &c,
        "TRUST_KEY_INVALID",
    );

    let mut c = genesis(w);
    let mixed = mixed_order(&w.kernel2.public_key());
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &mixed, Some(&["kernel"]), None, None),
        &[],
        "",
    );
    v.reject("rule2/publish-mixed-order-key", "L2", 2, "A TRUST_EVENT publishes A + T, a valid key plus the point of order 2: canonical and not of small order, but not of prime order.", &c, "TRUST_KEY_INVALID");

    let mut c = genesis(w);
    let mut noncanon = [0xffu8; 32];
    noncanon[0] = 0xee; // y = p + 1, a non-canonical encoding of y = 1
    noncanon[31] = 0x7f;
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &noncanon, Some(&["kernel"]), None, None),
        &[],
        "",
    );
    v.reject(
        "rule2/publish-non-canonical-key",
        "L2",
        2,
        "A TRUST_EVENT publishes y = p + 1, a non-canonical encoding.",
        &c,
        "TRUST_KEY_INVALID",
    );

    let mut c = genesis(w);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Revoke, &w.stranger.public_key(), None, None, None),
        &[],
        "",
    );
    v.reject(
        "rule2/revoke-unknown-key",
        "L2",
        2,
        "A revocation of a key that was never published.",
        &c,
        "TRUST_EVENT_INVALID",
    );

    let mut c = genesis(w);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &k.public_key(), Some(&["witness"]), None, None),
        &[],
        "",
    );
    v.reject(
        "rule2/publish-known-key",
        "L2",
        2,
        "A key published twice (here to add a role).",
        &c,
        "TRUST_EVENT_INVALID",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    c.push(
        &w.root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Revoke, &k.public_key(), None, None, Some(&i)),
        &[],
        "",
    );
    v.reject(
        "rule2/cutoff-not-a-checkpoint",
        "L2",
        2,
        "A revocation whose cut-off names an INTENT, not a CHECKPOINT.",
        &c,
        "TRUST_EVENT_INVALID",
    );
}

fn rule3_and_4_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "POLICY_ALLOW", &policy_hash(), None),
        &[sha256(b"no such record")],
        S1,
    );
    v.reject(
        "rule3/parent-missing",
        "L1",
        3,
        "A DECISION names a parent hash that no record has.",
        &c,
        "PARENT_MISSING",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    let (a, b) = (c.records[5].clone(), c.records[6].clone());
    c.records[5] = b;
    c.records[6] = a;
    v.reject_at(
        "rule3/reordered-records",
        "L1",
        3,
        "An INTENT and its DECISION swapped: the DECISION names a parent that has not appeared yet.",
        &c,
        "PARENT_MISSING",
        5,
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    let lamport_of_intent = 6;
    c.push_with(
        k,
        Kind::Decision,
        body::decision(Verdict::Allow, "POLICY_ALLOW", &policy_hash(), None),
        &[i],
        S1,
        |b| b.lamport = lamport_of_intent,
    );
    v.reject(
        "rule3/lamport-not-increasing",
        "L1",
        3,
        "A DECISION whose Lamport clock equals its INTENT's.",
        &c,
        "LAMPORT_NOT_INCREASING",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.push_with(
        k,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(2).0),
        &[],
        S1,
        |b| b.time -= 5_000,
    );
    v.reject(
        "rule3/time-regression",
        "L1",
        3,
        "The kernel key's second record has an earlier kernel time than its first.",
        &c,
        "TIME_REGRESSION",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    let dup = c.records[5].clone();
    c.push_raw(dup);
    v.reject(
        "rule3/duplicate-record",
        "L1",
        3,
        "The same record twice.",
        &c,
        "DUPLICATE_RECORD",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    intent(&mut c, k, "read_file", 2, S1);
    intent(&mut c, k, "read_file", 3, S1);
    c.records.remove(6);
    c.hashes.remove(6);
    v.reject_at(
        "rule4/dropped-record",
        "L1",
        4,
        "The middle of three INTENTs of one session is dropped: the third's sequence number skips one.",
        &c,
        "SEQUENCE_GAP",
        6,
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.push_with(
        k,
        Kind::Intent,
        body::intent("send_email", CallKind::Json, &args(2).0),
        &[],
        S1,
        |b| b.seq = 0,
    );
    v.reject(
        "rule4/equivocation",
        "L1",
        4,
        "Two different records of one signer and session with sequence number 0.",
        &c,
        "SEQUENCE_EQUIVOCATION",
    );

    let mut c = genesis(w);
    c.push_with(
        k,
        Kind::Intent,
        body::intent("read_file", CallKind::Json, &args(1).0),
        &[],
        S1,
        |b| b.seq = 1,
    );
    v.reject(
        "rule4/first-sequence-not-zero",
        "L1",
        4,
        "The first record of a (signer, session) pair has sequence number 1.",
        &c,
        "SEQUENCE_GAP",
    );
}

fn rule5_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;
    let allow = |c: &mut Chain, parents: &[Hash]| {
        c.push(
            k,
            Kind::Decision,
            body::decision(Verdict::Allow, "POLICY_ALLOW", &policy_hash(), None),
            parents,
            S1,
        )
    };

    let mut c = genesis(w);
    let pol = c.push(k, Kind::Policy, body::policy(&policy_hash(), None), &[], "");
    allow(&mut c, &[pol]);
    v.reject(
        "rule5/decision-without-intent",
        "L1",
        5,
        "A DECISION whose only parent is a POLICY.",
        &c,
        "DECISION_INTENT_PARENT",
    );

    let mut c = genesis(w);
    let a = intent(&mut c, k, "read_file", 1, S1);
    let b = intent(&mut c, k, "read_file", 2, S1);
    allow(&mut c, &[a, b]);
    v.reject(
        "rule5/decision-two-intents",
        "L1",
        5,
        "One DECISION for two INTENTs.",
        &c,
        "DECISION_INTENT_PARENT",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    let vio = c.push(
        k,
        Kind::Violation,
        body::violation("PROTOCOL_VIOLATION", None, None),
        &[],
        S1,
    );
    allow(&mut c, &[i, vio]);
    v.reject(
        "rule5/decision-parent-kind",
        "L1",
        5,
        "A DECISION with a VIOLATION parent, a kind a DECISION may not depend on.",
        &c,
        "PARENT_KIND_NOT_ALLOWED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    decide(&mut c, k, i, Verdict::Deny, "POLICY_DENY", S1);
    allow(&mut c, &[i]);
    v.reject(
        "rule5/second-final-decision",
        "L1",
        5,
        "A DENY and then an ALLOW for one INTENT.",
        &c,
        "INTENT_ALREADY_DECIDED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    escalate(&mut c, k, i, 1, S1);
    allow(&mut c, &[i]);
    v.reject(
        "rule5/allow-after-escalate",
        "L2",
        5,
        "An ALLOW for an INTENT under ESCALATE: only an APPROVAL grants it.",
        &c,
        "INTENT_ALREADY_DECIDED",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    effect(&mut c, k, &[], "read_file", 1, S1);
    v.reject(
        "rule5/effect-without-permit",
        "L1",
        5,
        "An EFFECT with no parents: no effect without a permit.",
        &c,
        "EFFECT_WITHOUT_PERMIT",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    effect(&mut c, k, &[i], "read_file", 1, S1);
    v.reject(
        "rule5/effect-names-intent",
        "L1",
        5,
        "An EFFECT naming its INTENT instead of a permit.",
        &c,
        "PARENT_KIND_NOT_ALLOWED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    let e = escalate(&mut c, k, i, 1, S1);
    effect(&mut c, k, &[e], "refund", 3, S1);
    v.reject(
        "rule5/effect-on-unapproved-escalate",
        "L2",
        5,
        "An EFFECT whose permit is an ESCALATE without its APPROVAL.",
        &c,
        "EFFECT_WITHOUT_PERMIT",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "delete_repo", 2, S1);
    let d = decide(&mut c, k, i, Verdict::Deny, "POLICY_DENY", S1);
    effect(&mut c, k, &[d], "delete_repo", 2, S1);
    v.reject(
        "rule5/effect-for-deny",
        "L1",
        5,
        "An EFFECT for a denied call.",
        &c,
        "EFFECT_FOR_DENY",
    );

    let mut c = genesis(w);
    let a = intent(&mut c, k, "read_file", 1, S1);
    let b = intent(&mut c, k, "send_email", 2, S1);
    let da = decide(&mut c, k, a, Verdict::Allow, "POLICY_ALLOW", S1);
    decide(&mut c, k, b, Verdict::Deny, "POLICY_DENY", S1);
    effect(&mut c, k, &[da], "send_email", 2, S1);
    v.reject("rule5/effect-for-other-tool-arguments", "L1", 5, "read_file was allowed and send_email denied; an EFFECT uses read_file's permit but carries send_email's tool and arguments.", &c, "EFFECT_MISMATCH");

    let mut c = genesis(w);
    let a = intent(&mut c, k, "read_file", 1, S1);
    let da = decide(&mut c, k, a, Verdict::Allow, "POLICY_ALLOW", S1);
    effect(&mut c, k, &[da], "read_file", 7, S1);
    v.reject(
        "rule5/effect-other-arguments",
        "L1",
        5,
        "An EFFECT for the permitted tool with other arguments than the INTENT's.",
        &c,
        "EFFECT_MISMATCH",
    );

    let mut c = genesis(w);
    let a = intent(&mut c, k, "read_file", 1, S1);
    let da = decide(&mut c, k, a, Verdict::Allow, "POLICY_ALLOW", S1);
    effect(&mut c, k, &[da], "read_file", 1, S1);
    c.push(
        k,
        Kind::Effect,
        body::effect(&Effect {
            status: EffectStatus::Succeeded,
            tool: "read_file",
            call_kind: CallKind::Json,
            args: args(1).0,
            output: output(2),
            executor: "tool-runner",
            meters: &[],
        }),
        &[da],
        S1,
    );
    v.reject(
        "rule5/second-effect-for-permit",
        "L1",
        5,
        "A second EFFECT for one ALLOW: a permit is used once.",
        &c,
        "PERMIT_ALREADY_USED",
    );

    let approvals = |v: &mut Vectors<'_>,
                     id: &str,
                     desc: &str,
                     error: &str,
                     quorum: u64,
                     wait: u64,
                     who: &[&Signer],
                     bind_other: bool| {
        let mut c = genesis(w);
        let i = intent(&mut c, k, "refund", 3, S1);
        let e = escalate(&mut c, k, i, quorum, S1);
        c.advance(wait);
        let target = if bind_other { sha256(b"another escalate") } else { e };
        c.push(k, Kind::Approval, approval_body(&target, who), &[e], S1);
        v.reject(id, "L2", 5, desc, &c, error);
    };
    let [a1, a2, _] = &w.approvers;
    approvals(
        v,
        "rule5/approval-short-of-quorum",
        "An ESCALATE needs 2 approvers; the APPROVAL has 1.",
        "APPROVAL_QUORUM",
        2,
        120_000,
        &[a1],
        false,
    );
    approvals(
        v,
        "rule5/approval-before-timelock",
        "An APPROVAL recorded 10 s after an ESCALATE with a 60 s timelock.",
        "APPROVAL_TIMELOCK",
        1,
        9_000,
        &[a1],
        false,
    );
    approvals(
        v,
        "rule5/approval-after-expiry",
        "An APPROVAL recorded after the ESCALATE's expiry.",
        "APPROVAL_EXPIRED",
        1,
        3_700_000,
        &[a1, a2],
        false,
    );
    approvals(
        v,
        "rule5/approval-by-wrong-role",
        "The witness key (role witness) approves an ESCALATE that needs the approver role.",
        "APPROVAL_ROLE",
        1,
        120_000,
        &[&w.witness],
        false,
    );
    approvals(
        v,
        "rule5/approval-bound-to-other-escalate",
        "Approver signatures over the challenge of another ESCALATE, replayed here.",
        "APPROVAL_INVALID",
        1,
        120_000,
        &[a1],
        true,
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "read_file", 1, S1);
    let d = decide(&mut c, k, i, Verdict::Allow, "POLICY_ALLOW", S1);
    c.advance(120_000);
    c.push(k, Kind::Approval, approval_body(&d, &[a1]), &[d], S1);
    v.reject(
        "rule5/approval-of-allow",
        "L2",
        5,
        "An APPROVAL whose parent is an ALLOW, not an ESCALATE.",
        &c,
        "APPROVAL_INVALID",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    let e = escalate(&mut c, k, i, 1, S1);
    c.advance(120_000);
    c.push(k, Kind::Approval, approval_body(&e, &[a1]), &[e], S1);
    c.push(
        k,
        Kind::Decision,
        body::decision(Verdict::Deny, "APPROVAL_TIMEOUT", &policy_hash(), None),
        &[i, e],
        S1,
    );
    v.reject(
        "rule5/deny-after-approval",
        "L2",
        5,
        "An ESCALATE approved, then denied: it is resolved once.",
        &c,
        "ESCALATION_ALREADY_RESOLVED",
    );

    let mut c = genesis(w);
    let i = intent(&mut c, k, "refund", 3, S1);
    let e = escalate(&mut c, k, i, 1, S1);
    c.advance(120_000);
    c.push(k, Kind::Approval, approval_body(&e, &[a1]), &[e], S1);
    c.push(k, Kind::Approval, approval_body(&e, &[a2]), &[e], S1);
    v.reject(
        "rule5/second-approval",
        "L2",
        5,
        "A second APPROVAL of one ESCALATE.",
        &c,
        "ESCALATION_ALREADY_RESOLVED",
    );
}

fn rule6_vectors(v: &mut Vectors<'_>) {
    let w = v.w;
    let k = &w.kernel;

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    let root = c.root();
    c.push(k, Kind::Checkpoint, body::checkpoint(5, &root, &[]), &[], "");
    v.reject(
        "rule6/checkpoint-wrong-count",
        "L2",
        6,
        "A CHECKPOINT after 6 records that claims 5.",
        &c,
        "CHECKPOINT_COUNT",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.push(
        k,
        Kind::Checkpoint,
        body::checkpoint(6, &sha256(b"forged root"), &[]),
        &[],
        "",
    );
    v.reject(
        "rule6/checkpoint-wrong-root",
        "L2",
        6,
        "A CHECKPOINT whose root is not the Merkle root of the records before it.",
        &c,
        "CHECKPOINT_ROOT",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    let root = c.root();
    let (msg, n) = verify_core::checkpoint_challenge(5, &root);
    let bad = (w.witness.public_key(), w.witness.sign(&msg[..n]));
    c.push(k, Kind::Checkpoint, body::checkpoint(6, &root, &[bad]), &[], "");
    v.reject(
        "rule6/witness-signed-other-count",
        "L2",
        6,
        "A witness cosignature over count 5 on a CHECKPOINT of count 6.",
        &c,
        "WITNESS_INVALID",
    );

    let mut c = genesis(w);
    intent(&mut c, k, "read_file", 1, S1);
    c.checkpoint(k, &[&w.approvers[0]], &[]);
    v.reject(
        "rule6/witness-without-role",
        "L2",
        6,
        "A CHECKPOINT cosigned by an approver key, which lacks the witness role.",
        &c,
        "WITNESS_INVALID",
    );
}

fn stream_vectors(v: &mut Vectors<'_>) {
    let c = Chain::new();
    v.reject_at(
        "stream/empty",
        "L1",
        0,
        "No records at all: an empty stream proves nothing.",
        &c,
        "EMPTY_STREAM",
        0,
    );
}

/// The CCTV Ed25519 edge cases with the verdict the spec's rule gives (from the flags,
/// not from running our code).
fn ed25519_vectors(dir: &Path) -> Result<String, String> {
    let src = dir.join("ed25519/cctv-ed25519vectors.json");
    let text = fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", src.display()))?;
    const REJECT_FLAGS: [&str; 5] = [
        "low_order_A",
        "low_order_R",
        "non_canonical_A",
        "non_canonical_R",
        "low_order_residue",
    ];
    let mut out = Vec::new();
    for c in cases {
        let flags: Vec<String> = c["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let reject = flags.iter().any(|f| REJECT_FLAGS.contains(&f.as_str()));
        out.push(SignatureVector {
            number: c["number"].as_u64().ok_or("case without number")? as u32,
            key: c["key"].as_str().ok_or("case without key")?.into(),
            sig: c["sig"].as_str().ok_or("case without sig")?.into(),
            msg: c["msg"].as_str().ok_or("case without msg")?.into(),
            flags,
            expect: if reject { "reject" } else { "accept" }.into(),
        });
    }
    serde_json::to_string_pretty(&out)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(helm_test_vectors::vectors_dir);
    let world = World::new();
    let mut v = Vectors {
        w: &world,
        out: Vec::new(),
    };
    valid_vectors(&mut v);
    rule1_vectors(&mut v);
    rule2_vectors(&mut v);
    rule3_and_4_vectors(&mut v);
    rule5_vectors(&mut v);
    rule6_vectors(&mut v);
    stream_vectors(&mut v);

    let mut out = Out {
        dir: dir.clone(),
        written: Vec::new(),
    };
    let result = (|| -> Result<(), String> {
        let records_dir = dir.join("records");
        if records_dir.exists() {
            // Stale vectors from an older generator must not linger.
            fs::remove_dir_all(&records_dir).map_err(|e| format!("{}: {e}", records_dir.display()))?;
        }
        let count = v.out.len();
        let mut index = Vec::new();
        for vec in v.out {
            index.push(serde_json::json!({
                "id": vec.id, "level": vec.level, "rule": vec.rule, "expect": vec.expect,
            }));
            out.vector(vec).map_err(|e| e.to_string())?;
        }
        let index_text = serde_json::to_string_pretty(&serde_json::json!({
            "format": "helm-test-vectors/1",
            "records": index,
            "ed25519": "ed25519/strict-verdicts.json",
            "packs": "packs/index.json",
            // Written by hand, not by this program: store directories (spec/store.md).
            "store": "store/index.json",
        }))
        .map_err(|e| e.to_string())?
            + "\n";
        out.write("index.json", index_text).map_err(|e| e.to_string())?;
        out.write(
            "ed25519/strict-verdicts.json",
            ed25519_vectors(&helm_test_vectors::vectors_dir())?,
        )
        .map_err(|e| e.to_string())?;
        let packs = helm_test_vectors::packs::generate(&dir);
        let packs_index = serde_json::to_string_pretty(&serde_json::json!({
            "format": "helm-pack-vectors/1",
            "packs": packs,
        }))
        .map_err(|e| e.to_string())?
            + "\n";
        out.write("packs/index.json", packs_index).map_err(|e| e.to_string())?;
        out.write(
            "keys/trust-root.json",
            serde_json::to_string_pretty(&serde_json::json!({
                "format": "helm-trust-root/1",
                "anchors": [{ "name": "root-1 (PUBLIC TEST KEY)", "key": format!("ed25519:{}", hex::encode(world.root.public_key())) }],
            }))
            .map_err(|e| e.to_string())?
                + "\n",
        )
        .map_err(|e| e.to_string())?;
        out.write(
            "keys/test-keys.json",
            serde_json::to_string_pretty(&serde_json::json!({
                "warning": "TEST KEYS ONLY. Seeds are SHA-256 of public strings; never use them for anything real.",
                "root-1": hex::encode(world.root.public_key()),
                "kernel-1": hex::encode(world.kernel.public_key()),
                "kernel-2": hex::encode(world.kernel2.public_key()),
                "approver-1": hex::encode(world.approvers[0].public_key()),
                "approver-2": hex::encode(world.approvers[1].public_key()),
                "approver-3": hex::encode(world.approvers[2].public_key()),
                "witness-1": hex::encode(world.witness.public_key()),
                "stranger": hex::encode(world.stranger.public_key()),
            }))
            .map_err(|e| e.to_string())?
                + "\n",
        )
        .map_err(|e| e.to_string())?;
        eprintln!(
            "wrote {count} record vectors and {} files to {}",
            out.written.len(),
            dir.display()
        );
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate-vectors: {e}");
            ExitCode::from(2)
        }
    }
}
