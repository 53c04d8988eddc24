//! Throughput of the streaming [`Verifier`] against the raw signature rate of its
//! Ed25519 backend, on one core. See `verify-core/BENCHMARKS.md`.
//!
//! ```text
//! taskset -c 1 cargo bench -p verify-core --features sign
//! HELM_BENCH_RECORDS=5000 HELM_BENCH_ROUNDS=1 taskset -c 1 cargo bench -p verify-core --features sign
//! ```
//!
//! Environment: `HELM_BENCH_RECORDS` (default 100000), `HELM_BENCH_ROUNDS` (default 5),
//! `HELM_BENCH_SESSIONS` (default 1000), `HELM_BENCH_CHECKPOINT` (default 10000),
//! `HELM_BENCH_CHUNK` (default 500).
//!
//! 1. Builds (untimed) a valid stream: an anchor publishes the kernel key (TRUST_EVENT,
//!    roles ["kernel"]), the kernel activates a POLICY, then interleaved sessions run
//!    INTENT -> DECISION (about 90 % ALLOW, 10 % DENY) -> EFFECT (for ALLOWs), with a
//!    CHECKPOINT every `HELM_BENCH_CHECKPOINT` records. The stream is verified once,
//!    untimed, and must pass.
//! 2. Measures, in rounds; within a round the five measurements are interleaved chunk by
//!    chunk (`HELM_BENCH_CHUNK` records, order rotating), so that load from other
//!    processes falls on all of them alike. Rates use time on the CPU (wall clock minus
//!    run-queue wait, from /proc/thread-self/schedstat); wall-clock rates are shown too.
//!
//!    - (a) records/s of the full `Verifier`: fresh `OwnedTables` each round, allocated
//!      outside the timed region; `Verifier::new`, every `push` and `finish` inside it;
//!    - (b) `ed25519_dalek::VerifyingKey::verify_strict` over the same records' COSE
//!      Sig_structures and signatures (assembled, contiguous);
//!    - (c) `verify_core::PublicKey::verify` over the same messages;
//!    - (d) `PublicKey::verify_parts` over the six pieces the verifier hashes (the
//!      Sig_structure unassembled): exactly the verifier's signature check;
//!    - (e) `Record::decode` alone (strict CBOR decoding and the record's SHA-256).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use verify_core::{
    body, commitment, sha256, sig_structure, CallKind, Capacity, EffectStatus, Hash, Kind, MerkleAccumulator,
    OwnedTables, PublicKey, Record, RecordBuilder, Signer, TrustAction, Verdict, Verified, Verifier,
};

/// Test seeds (never use them for anything real).
const ANCHOR_SEED: [u8; 32] = [0xa5; 32];
const KERNEL_SEED: [u8; 32] = [0x4b; 32];
/// 2026-01-01T00:00:00Z in ms.
const T0: u64 = 1_767_225_600_000;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a positive integer, got {v:?}")),
        Err(_) => default,
    }
}

/// splitmix64: a deterministic stream, so every run builds the same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Records back to back in one buffer, as a pack reader would hand them over.
#[derive(Default)]
struct Stream {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Stream {
    fn push(&mut self, record: &[u8]) {
        self.buf.extend_from_slice(record);
        self.ends.push(self.buf.len());
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.buf[start..end];
            start = end;
            r
        })
    }
}

const TOOLS: &[(&str, &str)] = &[
    ("web.search", "sandbox-wasm"),
    ("fs.read_file", "sandbox-wasm"),
    ("fs.write_file", "sandbox-wasm"),
    ("http.fetch", "proxy-http"),
    ("shell.exec", "sandbox-wasm"),
    ("mcp.github.create_issue", "mcp-github"),
    ("mcp.slack.post_message", "mcp-slack"),
    ("db.query", "host"),
];
const DENY_REASONS: &[&str] = &[
    "POLICY_DENY",
    "TOOL_NOT_ALLOWED",
    "RATE_LIMITED",
    "BUDGET_EXHAUSTED",
    "INVALID_ARGUMENTS",
];

enum State {
    Idle,
    /// INTENT recorded: its hash and call.
    Intended {
        intent: Hash,
        tool: usize,
        args: Hash,
    },
    /// ALLOW recorded: its hash and the call it permits.
    Allowed {
        decision: Hash,
        tool: usize,
        args: Hash,
    },
}

struct Session {
    id: String,
    principal: String,
    seq: u64,
    last: Option<Hash>,
    state: State,
}

#[derive(Default)]
struct Mix {
    intents: u64,
    allows: u64,
    denies: u64,
    effects: u64,
    checkpoints: u64,
    other: u64,
}

struct Builder {
    anchor: Signer,
    kernel: Signer,
    stream: Stream,
    merkle: MerkleAccumulator,
    lamport: u64,
    time: u64,
    kernel_scope_seq: u64,
    head: Hash,
    rng: Rng,
    mix: Mix,
}

impl Builder {
    /// Fills in the clocks, signs, appends. Returns the record hash.
    fn emit(&mut self, mut b: RecordBuilder, by_anchor: bool) -> Hash {
        self.lamport += 1;
        self.time += self.rng.below(4); // non-decreasing per signer (one global clock)
        b.lamport = self.lamport;
        b.time = self.time;
        let bytes = b.sign(if by_anchor { &self.anchor } else { &self.kernel });
        let hash = sha256(&bytes);
        assert!(self.merkle.push(&hash));
        self.stream.push(&bytes);
        self.head = hash;
        hash
    }

    fn kernel_scope(&mut self, kind: Kind, body: Vec<u8>, parents: Vec<Hash>) -> Hash {
        let mut b = RecordBuilder::new(kind, body);
        b.parents = parents;
        b.principal = "helm-kernel".into();
        b.seq = self.kernel_scope_seq;
        self.kernel_scope_seq += 1;
        self.emit(b, false)
    }

    fn step(&mut self, s: &mut Session, policy: &Hash) {
        let mut b = match std::mem::replace(&mut s.state, State::Idle) {
            State::Idle => {
                let tool = self.rng.below(TOOLS.len() as u64) as usize;
                // Argument commitment: salt and canonical JSON of realistic length.
                let salt = self.rng.next().to_le_bytes();
                let json = format!(
                    "{{\"query\":\"{}\",\"limit\":{},\"path\":\"/workspace/project/{}/file-{}.txt\"}}",
                    "x".repeat(self.rng.below(200) as usize),
                    self.rng.below(100),
                    s.id,
                    self.rng.below(1000)
                );
                let args = commitment(&salt, json.as_bytes());
                let mut b = RecordBuilder::new(Kind::Intent, body::intent(TOOLS[tool].0, CallKind::Json, &args));
                b.parents = s.last.into_iter().collect();
                self.mix.intents += 1;
                s.state = State::Intended {
                    intent: [0; 32],
                    tool,
                    args,
                };
                b
            }
            State::Intended { intent, tool, args } => {
                let allow = self.rng.percent(90);
                let body = if allow {
                    self.mix.allows += 1;
                    body::decision(Verdict::Allow, "POLICY_ALLOW", policy, None)
                } else {
                    self.mix.denies += 1;
                    let reason = DENY_REASONS[self.rng.below(DENY_REASONS.len() as u64) as usize];
                    body::decision(Verdict::Deny, reason, policy, None)
                };
                let mut b = RecordBuilder::new(Kind::Decision, body);
                b.parents = vec![intent];
                if allow {
                    s.state = State::Allowed {
                        decision: [0; 32],
                        tool,
                        args,
                    };
                }
                b
            }
            State::Allowed { decision, tool, args } => {
                let output = commitment(&self.rng.next().to_le_bytes(), &self.rng.next().to_le_bytes());
                let fuel = self.rng.below(5_000_000);
                let wall = self.rng.below(2_000);
                let meters: &[(&str, u64)] = if TOOLS[tool].1 == "sandbox-wasm" {
                    &[("fuel", fuel), ("wall_ms", wall), ("mem_bytes", 1 << 20)]
                } else {
                    &[("wall_ms", wall)]
                };
                let status = if self.rng.percent(95) {
                    EffectStatus::Succeeded
                } else {
                    EffectStatus::Failed
                };
                let e = body::Effect {
                    status,
                    tool: TOOLS[tool].0,
                    call_kind: CallKind::Json,
                    args,
                    output,
                    executor: TOOLS[tool].1,
                    meters,
                };
                let mut b = RecordBuilder::new(Kind::Effect, body::effect(&e));
                b.parents = vec![decision];
                self.mix.effects += 1;
                b
            }
        };
        b.principal = s.principal.clone();
        b.session = s.id.clone();
        b.seq = s.seq;
        s.seq += 1;
        let hash = self.emit(b, false);
        match &mut s.state {
            State::Intended { intent, .. } => *intent = hash,
            State::Allowed { decision, .. } => *decision = hash,
            State::Idle => {}
        }
        s.last = Some(hash);
    }
}

fn build_stream(n: usize, sessions: usize, checkpoint_every: usize) -> (Stream, [u8; 32], Mix) {
    let anchor = Signer::from_seed(&ANCHOR_SEED);
    let kernel = Signer::from_seed(&KERNEL_SEED);
    let anchor_pk = anchor.public_key();
    let kernel_pk = kernel.public_key();
    let mut g = Builder {
        anchor,
        kernel,
        stream: Stream::default(),
        merkle: MerkleAccumulator::new(),
        lamport: 0,
        time: T0,
        kernel_scope_seq: 0,
        head: [0; 32],
        rng: Rng(0x48454c4d_62656e63),
        mix: Mix::default(),
    };
    // The anchor publishes the kernel key.
    let mut te = RecordBuilder::new(
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &kernel_pk, Some(&["kernel"]), None, None),
    );
    te.principal = "helm-root-authority".into();
    let te_hash = g.emit(te, true);
    g.mix.other += 1;
    // The kernel activates a policy bundle.
    let policy = sha256(b"policy bundle: default-deny, allow listed tools with budgets");
    if g.stream.len() < n {
        g.kernel_scope(Kind::Policy, body::policy(&policy, Some("default-v1")), vec![te_hash]);
        g.mix.other += 1;
    }
    let mut sess: Vec<Session> = (0..sessions)
        .map(|i| {
            let r = g.rng.next();
            Session {
                id: format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    r >> 32,
                    (r >> 16) & 0xffff,
                    i & 0xfff,
                    r & 0xfff,
                    i
                ),
                principal: format!("agent-{:02}@tenant-{}.example", i % 64, i % 7),
                seq: 0,
                last: None,
                state: State::Idle,
            }
        })
        .collect();
    while g.stream.len() < n {
        let count = g.stream.len();
        if checkpoint_every > 0 && count.is_multiple_of(checkpoint_every) {
            let root = g.merkle.root();
            let head = g.head;
            g.kernel_scope(Kind::Checkpoint, body::checkpoint(count as u64, &root, &[]), vec![head]);
            g.mix.checkpoints += 1;
            continue;
        }
        let i = g.rng.below(sess.len() as u64) as usize;
        g.step(&mut sess[i], &policy);
    }
    (g.stream, anchor_pk, g.mix)
}

fn verify_all(stream: &Stream, anchors: &[[u8; 32]], tables: &mut OwnedTables) -> Verified {
    let mut v = Verifier::new(anchors, tables.tables()).expect("verifier setup");
    for r in stream.iter() {
        if let Err(e) = v.push(r) {
            panic!("stream does not verify: {e:?}");
        }
    }
    v.finish().expect("finish")
}

/// The (message, signature, key) triples: each record's COSE Sig_structure.
struct Messages {
    buf: Vec<u8>,
    ends: Vec<usize>,
    sigs: Vec<[u8; 64]>,
    key_of: Vec<u8>,
}

impl Messages {
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8; 64], usize)> + '_ {
        let mut start = 0;
        self.ends
            .iter()
            .zip(&self.sigs)
            .zip(&self.key_of)
            .map(move |((&end, sig), &k)| {
                let m = &self.buf[start..end];
                start = end;
                (m, sig, usize::from(k))
            })
    }
}

fn messages(stream: &Stream, kids: &[[u8; 32]]) -> Messages {
    let mut m = Messages {
        buf: Vec::new(),
        ends: Vec::new(),
        sigs: Vec::new(),
        key_of: Vec::new(),
    };
    for r in stream.iter() {
        let rec = Record::decode(r).expect("decodes");
        m.buf.extend_from_slice(&sig_structure(rec.protected, rec.payload));
        m.ends.push(m.buf.len());
        m.sigs.push(rec.signature);
        m.key_of
            .push(kids.iter().position(|k| *k == rec.kid).expect("known signer") as u8);
    }
    m
}

/// The fixed start of every Sig_structure: array(4), text "Signature1".
const SIG1_PREFIX: [u8; 12] = [0x84, 0x6a, b'S', b'i', b'g', b'n', b'a', b't', b'u', b'r', b'e', b'1'];

/// The CBOR head of a byte string of `len` bytes.
fn bstr_head(len: usize) -> ([u8; 9], usize) {
    let mut h = [0u8; 9];
    let n = match len {
        0..=23 => {
            h[0] = 0x40 | len as u8;
            1
        }
        24..=0xff => {
            h[0] = 0x58;
            h[1] = len as u8;
            2
        }
        0x100..=0xffff => {
            h[0] = 0x59;
            h[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        }
        _ => {
            h[0] = 0x5a;
            h[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            5
        }
    };
    (h, n)
}

/// Runs `f` with `N` more bytes of stack below the caller's frame.
#[inline(never)]
fn pad_stack<const N: usize>(f: &mut dyn FnMut()) {
    let pad = [0u8; N];
    black_box(&pad);
    f();
    black_box(&pad);
}

macro_rules! stack_pads {
    ($($i:literal)*) => { [$(pad_stack::<{ $i * 64 }>),*] };
}

/// Stack offsets 0, 64, .., 4032 bytes. The speed of curve25519-dalek's AVX2 backend
/// depends on where the stack sits modulo 4 KiB (up to 20 % per call path, measured:
/// see BENCHMARKS.md), so one process would compare its call paths at one arbitrary
/// alignment each. Every chunk runs at another offset: the rates are averages over
/// alignments, as over many processes.
const STACK_PADS: [fn(&mut dyn FnMut()); 64] = stack_pads!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
);

/// Run-queue wait of this thread so far, in ns (field 2 of /proc/thread-self/schedstat).
/// It is brought up to date whenever the thread is scheduled in, so it is exact here.
fn run_delay() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Wall clock, and time on the CPU: wall clock minus the time spent waiting to run
/// (another process on the pinned core). Page faults and I/O would still count; there
/// are none in the timed loops.
struct Stopwatch {
    t: Instant,
    delay: Option<u64>,
}

impl Stopwatch {
    fn start() -> Stopwatch {
        let delay = run_delay();
        Stopwatch {
            t: Instant::now(),
            delay,
        }
    }
    fn stop(self) -> (Duration, Duration) {
        let wall = self.t.elapsed();
        let waited = match (self.delay, run_delay()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
            _ => Duration::ZERO,
        };
        (wall, wall.saturating_sub(waited))
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let k = s.len();
    if k % 2 == 1 {
        s[k / 2]
    } else {
        (s[k / 2 - 1] + s[k / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it small then.
    let under_test = !std::env::args().any(|a| a == "--bench");
    let n = env_usize("HELM_BENCH_RECORDS", if under_test { 2_000 } else { 100_000 });
    let rounds = env_usize("HELM_BENCH_ROUNDS", if under_test { 1 } else { 5 }).max(1);
    let sessions = env_usize("HELM_BENCH_SESSIONS", 1_000).max(1);
    let checkpoint_every = env_usize("HELM_BENCH_CHECKPOINT", 10_000);
    let chunk = env_usize("HELM_BENCH_CHUNK", 500).max(1);
    assert!(n >= 2, "HELM_BENCH_RECORDS must be at least 2");

    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    println!("HELM verify-core benchmark (single-threaded)");
    println!(
        "machine: std::thread::available_parallelism = {cores} (respects the affinity mask; online CPUs: {}); \
         the bench uses one core.",
        if online.is_empty() { "unknown" } else { &online }
    );
    println!("  For stable figures pin it to one core: taskset -c 1 cargo bench -p verify-core --features sign");

    // 1. Build and check the stream (untimed).
    let t = Instant::now();
    let (stream, anchor, mix) = build_stream(n, sessions, checkpoint_every);
    let built = t.elapsed();
    let kernel = Signer::from_seed(&KERNEL_SEED).public_key();
    let anchors = [anchor];
    let mut tables = OwnedTables::new(Capacity::for_records(n));
    let summary = verify_all(&stream, &anchors, &mut tables);
    assert_eq!(summary.records, n as u64);
    assert_eq!(summary.count(Kind::Intent), mix.intents);
    assert_eq!(summary.count(Kind::Effect), mix.effects);
    assert_eq!(summary.count(Kind::Checkpoint), mix.checkpoints);
    drop(tables);
    let kids = [anchor, kernel];
    let msgs = messages(&stream, &kids);
    let dalek: Vec<VerifyingKey> = kids.iter().map(|k| VerifyingKey::from_bytes(k).expect("key")).collect();
    let ours: Vec<PublicKey> = kids
        .iter()
        .map(|k| PublicKey::for_verification(k).expect("key"))
        .collect();
    let sigs: Vec<Signature> = msgs.sigs.iter().map(Signature::from_bytes).collect();
    for (i, r) in stream.iter().enumerate() {
        // (d) hashes the same bytes as (b) and (c), in pieces.
        let rec = Record::decode(r).expect("decodes");
        let (ph, pn) = bstr_head(rec.protected.len());
        let (yh, yn) = bstr_head(rec.payload.len());
        let joined = [
            &SIG1_PREFIX[..],
            &ph[..pn],
            rec.protected,
            &[0x40],
            &yh[..yn],
            rec.payload,
        ]
        .concat();
        assert_eq!(
            joined,
            sig_structure(rec.protected, rec.payload),
            "pieces of record {i}"
        );
    }
    println!(
        "stream: {n} records ({} sessions; {} INTENT, {} ALLOW, {} DENY, {} EFFECT, {} CHECKPOINT, {} other), \
         {:.0} B/record, Sig_structure {:.0} B avg; built in {:.1} s; verified once untimed: OK",
        sessions,
        mix.intents,
        mix.allows,
        mix.denies,
        mix.effects,
        mix.checkpoints,
        mix.other,
        stream.buf.len() as f64 / n as f64,
        msgs.buf.len() as f64 / n as f64,
        built.as_secs_f64()
    );

    // 2. Rounds; within a round the measurements are interleaved chunk by chunk (the
    // order rotating), so that load from other processes hits all of them alike.
    let decoded: Vec<Record<'_>> = stream.iter().map(|r| Record::decode(r).expect("decodes")).collect();
    let pieces_keys: Vec<usize> = decoded
        .iter()
        .map(|r| kids.iter().position(|k| *k == r.kid).expect("signer"))
        .collect();
    let names = [
        "(a) Verifier (full stream)",
        "(b) dalek verify_strict",
        "(c) PublicKey::verify",
        "(d) PublicKey::verify_parts",
        "(e) Record::decode only",
    ];
    let mut cpu: [Vec<f64>; 5] = Default::default();
    let mut wall: [Vec<f64>; 5] = Default::default();
    let mut alloc_ms = Vec::new();
    let mut ratios = Vec::new();
    let mut waited = Duration::ZERO;
    let mut total_wall = Duration::ZERO;
    let records: Vec<&[u8]> = stream.iter().collect();
    let msg: Vec<(&[u8], &[u8; 64], usize)> = msgs.iter().collect();
    let sched = run_delay().is_some();
    for round in 0..rounds {
        let t = Instant::now();
        let mut tables = OwnedTables::new(Capacity::for_records(n));
        alloc_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let mut dw = [Duration::ZERO; 5];
        let mut dc = [Duration::ZERO; 5];
        let mut add = |i: usize, sw: Stopwatch| {
            let (w, c) = sw.stop();
            dw[i] += w;
            dc[i] += c;
        };
        let sw = Stopwatch::start();
        let mut v = Verifier::new(&anchors, tables.tables()).expect("verifier setup");
        add(0, sw);
        for (ci, start) in (0..n).step_by(chunk).enumerate() {
            let range = start..(start + chunk).min(n);
            // A different stack offset for each chunk (see STACK_PADS).
            let pad = STACK_PADS[(ci * 37 + round * 13) % STACK_PADS.len()];
            for step in 0..5 {
                let which = (round + ci + step) % 5;
                pad(&mut || {
                    let sw = Stopwatch::start();
                    match which {
                        0 => {
                            for r in &records[range.clone()] {
                                if let Err(e) = v.push(black_box(r)) {
                                    panic!("stream does not verify: {e:?}");
                                }
                            }
                            add(0, sw);
                        }
                        1 => {
                            let mut ok = 0usize;
                            for (&(m, _, k), sig) in msg[range.clone()].iter().zip(&sigs[range.clone()]) {
                                ok += usize::from(
                                    black_box(&dalek[k]).verify_strict(black_box(m), black_box(sig)).is_ok(),
                                );
                            }
                            add(1, sw);
                            assert_eq!(ok, range.len());
                        }
                        2 => {
                            let mut ok = 0usize;
                            for &(m, s, k) in &msg[range.clone()] {
                                ok += usize::from(black_box(&ours[k]).verify(black_box(m), black_box(s)));
                            }
                            add(2, sw);
                            assert_eq!(ok, range.len());
                        }
                        3 => {
                            // Exactly the pieces the verifier hashes: the Sig_structure, unassembled.
                            let mut ok = 0usize;
                            for (rec, &k) in decoded[range.clone()].iter().zip(&pieces_keys[range.clone()]) {
                                let rec = black_box(rec);
                                let (ph, pn) = bstr_head(rec.protected.len());
                                let (yh, yn) = bstr_head(rec.payload.len());
                                let pieces: [&[u8]; 6] =
                                    [&SIG1_PREFIX, &ph[..pn], rec.protected, &[0x40], &yh[..yn], rec.payload];
                                ok += usize::from(black_box(&ours[k]).verify_parts(&pieces, &rec.signature));
                            }
                            add(3, sw);
                            assert_eq!(ok, range.len());
                        }
                        _ => {
                            let mut kinds = 0usize;
                            for r in &records[range.clone()] {
                                kinds += black_box(Record::decode(black_box(r)))
                                    .map(|r| r.kind as usize)
                                    .unwrap_or(0);
                            }
                            add(4, sw);
                            black_box(kinds);
                        }
                    }
                });
            }
        }
        let sw = Stopwatch::start();
        let s = v.finish().expect("finish");
        add(0, sw);
        assert_eq!(s.records, n as u64);
        drop(tables);
        for i in 0..5 {
            cpu[i].push(rate(n, dc[i]));
            wall[i].push(rate(n, dw[i]));
            waited += dw[i].saturating_sub(dc[i]);
            total_wall += dw[i];
        }
        ratios.push(dc[1].as_secs_f64() / dc[0].as_secs_f64());
        println!(
            "  round {}/{rounds}: verifier {:>6.0}/s  verify_strict {:>6.0}/s  ratio {:.3}   (wall clock: {:>6.0}/s, {:>6.0}/s, {:.3})",
            round + 1,
            rate(n, dc[0]),
            rate(n, dc[1]),
            dc[1].as_secs_f64() / dc[0].as_secs_f64(),
            rate(n, dw[0]),
            rate(n, dw[1]),
            dw[1].as_secs_f64() / dw[0].as_secs_f64(),
        );
    }

    println!();
    println!(
        "{rounds} rounds x {n} records; operations per second on one core, median [min .. max]; ns/op from the median"
    );
    if sched {
        println!(
            "time on CPU = wall clock minus run-queue wait (/proc/thread-self/schedstat); the process waited for the CPU {:.1} % of the timed wall clock",
            100.0 * waited.as_secs_f64() / total_wall.as_secs_f64().max(1e-9)
        );
    } else {
        println!("(/proc/thread-self/schedstat unavailable: all figures are wall clock)");
    }
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}   {:>12}",
        "measurement", "median/s", "min/s", "max/s", "ns/op", "wall median/s"
    );
    for i in 0..5 {
        let m = median(&cpu[i]);
        println!(
            "{:<28} {:>9.0} {:>9.0} {:>9.0} {:>9.0}   {:>12.0}",
            names[i],
            m,
            min(&cpu[i]),
            max(&cpu[i]),
            1e9 / m,
            median(&wall[i])
        );
    }
    let ns = |i: usize| 1e9 / median(&cpu[i]);
    let ratio = ns(1) / ns(0);
    println!();
    println!(
        "records/s / raw verify_strict/s = {ratio:.3} (per-round ratios: median {:.3}, range {:.3} .. {:.3}; wall clock {:.3}); goal >= 0.90: {}",
        median(&ratios),
        min(&ratios),
        max(&ratios),
        median(&wall[0]) / median(&wall[1]),
        if ratio >= 0.90 { "met" } else { "NOT met" }
    );
    println!(
        "overhead per record, Verifier vs verify_strict: {:>6.0} ns/record, made of",
        ns(0) - ns(1)
    );
    println!(
        "  our signature checks vs verify_strict   (c) - (b): {:>6.0} ns",
        ns(2) - ns(1)
    );
    println!(
        "  hashing the Sig_structure in 6 pieces   (d) - (c): {:>6.0} ns",
        ns(3) - ns(2)
    );
    println!(
        "  everything except the signature         (a) - (d): {:>6.0} ns (Record::decode alone: {:.0} ns)",
        ns(0) - ns(3),
        ns(4)
    );
    println!(
        "table allocation, OwnedTables::new(Capacity::for_records({n})), outside the timed region: median {:.1} ms",
        median(&alloc_ms)
    );
}
