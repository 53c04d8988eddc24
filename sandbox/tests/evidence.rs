//! Evidence in EFFECT records and offline replay: encoding, strict decoding, a signed
//! record round trip, and replay verdicts for honest and tampered records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use common::{run_with, sandbox, small_limits, tool, wat_file};
use helm_sandbox::{
    decode_evidence, decode_ext, decode_output, encode_evidence, encode_ext, encode_output, executor, parse_executor,
    replay_effect, Difference, Ending, EvidenceError, Limits, RecordedEffect, ReplayError, ReplayInputs, ReplayOptions,
    RunOutcome, RunRequest, SandboxEvidence, Stop, TrapKind, VirtualFile, ENGINE, FUEL_MODEL,
};
use verify_core::{body, Body, CallKind, EffectStatus, Kind, Record, RecordBuilder, Signer};

fn sample() -> SandboxEvidence {
    SandboxEvidence {
        module: [0x11; 32],
        module_blob: Some([0x22; 32]),
        engine: ENGINE.to_string(),
        fuel_model: FUEL_MODEL,
        seed: [0x33; 32],
        virtual_time_ms: 1_767_225_600_000,
        args: vec!["tool".into(), "-v".into()],
        env: vec![("LANG".into(), "C".into())],
        files: vec![("a.json".into(), [0x44; 32])],
        limits: Limits::DEFAULT,
        fuel_used: 12_345,
        ending: Ending::Stopped(Stop::Trap(TrapKind::Unreachable)),
        replayable: true,
    }
}

#[test]
fn evidence_round_trips_in_every_ending() {
    for (ending, replayable, blob) in [
        (Ending::Completed, true, None),
        (Ending::Stopped(Stop::Gas), true, Some([1; 32])),
        (Ending::Stopped(Stop::Time), false, None),
        (Ending::Stopped(Stop::Memory), true, None),
        (Ending::Stopped(Stop::OutputLimit), true, None),
        (Ending::Stopped(Stop::Trap(TrapKind::StackOverflow)), true, None),
        (Ending::Refused("MODULE_INVALID".into()), true, None),
        (Ending::Refused("IMPORT_DENIED".into()), true, None),
    ] {
        let mut e = sample();
        e.ending = ending;
        e.replayable = replayable;
        e.module_blob = blob;
        assert_eq!(decode_ext(&encode_ext(&e)), Ok(e.clone()));
        assert_eq!(decode_evidence(&encode_evidence(&e)), Ok(e.clone()));
    }
}

#[test]
fn evidence_encoding_is_pinned() {
    // spec/sandbox.md §6.1 shows this map.
    let mut e = sample();
    e.limits = Limits {
        fuel: 1_000_000,
        wall_ms: 2_000,
        memory_bytes: 16 << 20,
        table_elements: 1_000,
        output_bytes: 65_536,
    };
    e.args = vec!["t".into()];
    e.env = vec![];
    e.files = vec![];
    e.module_blob = None;
    e.ending = Ending::Stopped(Stop::Gas);
    e.fuel_used = 1_000_000;
    let hex = hex::encode(encode_ext(&e));
    assert_eq!(
        hex,
        concat!(
            "a1",
            "67",
            "73616e64626f78", // {"sandbox":
            "ad",             // map(13)
            "0001",           // 0 version 1
            "015820",
            "1111111111111111111111111111111111111111111111111111111111111111", // 1 module
            "026b",
            "7761736d6920322e302e30", // 2 engine "wasmi 2.0.0"
            "0301",                   // 3 fuel model 1
            "045820",
            "3333333333333333333333333333333333333333333333333333333333333333", // 4 seed
            "051b0000019b76daa800",                                             // 5 virtual time
            "068161",
            "74",   // 6 args ["t"]
            "0780", // 7 env []
            "0880", // 8 files []
            "09a5",
            "001a000f4240",
            "011907d0",
            "021a01000000",
            "031903e8",
            "041a00010000", // 9 limits
            "0a1a000f4240", // 10 fuel used
            "0b6d",
            "4741535f455848415553544544", // 11 stop "GAS_EXHAUSTED"
            "0df5",                       // 13 replayable true
        )
    );
}

#[test]
fn decode_ext_skips_other_entries_and_is_strict() {
    let e = sample();
    let inner = encode_evidence(&e);
    // {"a": 1, "sandbox": ..., "zzzzzzzz": [true]}: canonical order (shorter keys first).
    let mut ext = vec![0xa3, 0x61, b'a', 0x01, 0x67];
    ext.extend_from_slice(b"sandbox");
    ext.extend_from_slice(&inner);
    ext.extend_from_slice(&[0x68]);
    ext.extend_from_slice(b"zzzzzzzz");
    ext.extend_from_slice(&[0x81, 0xf5]);
    assert_eq!(decode_ext(&ext), Ok(e.clone()));
    // Out of order: "sandbox" before "a".
    let mut bad = vec![0xa2, 0x67];
    bad.extend_from_slice(b"sandbox");
    bad.extend_from_slice(&inner);
    bad.extend_from_slice(&[0x61, b'a', 0x01]);
    assert!(matches!(decode_ext(&bad), Err(EvidenceError::Cbor(_))));
    assert_eq!(decode_ext(&[0xa1, 0x61, b'a', 0x01]), Err(EvidenceError::Absent));
    assert_eq!(decode_ext(&[0xa0]), Err(EvidenceError::Absent));
    // Trailing bytes, truncation.
    let mut trailing = encode_ext(&e);
    trailing.push(0);
    assert!(decode_ext(&trailing).is_err());
    let whole = encode_ext(&e);
    for cut in 0..whole.len() {
        assert!(decode_ext(&whole[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn decode_evidence_rejects_bad_fields() {
    let good = encode_evidence(&sample());
    // An unknown key 15 appended (map count bumped).
    let mut unknown = good.clone();
    unknown[0] += 1;
    unknown.extend_from_slice(&[0x0f, 0x00]);
    assert_eq!(decode_evidence(&unknown), Err(EvidenceError::Field("unknown key")));
    // Version 2.
    let mut v2 = good.clone();
    assert_eq!(&v2[1..3], &[0x00, 0x01]);
    v2[2] = 0x02;
    assert_eq!(decode_evidence(&v2), Err(EvidenceError::UnsupportedVersion(2)));
    // replayable false for a trap.
    let mut e = sample();
    e.replayable = false;
    assert!(decode_evidence(&encode_evidence(&e)).is_err());
    // An unknown stop code.
    let mut e = sample();
    e.ending = Ending::Refused("SOMETHING_ELSE".into());
    assert!(decode_evidence(&encode_evidence(&e)).is_err());
}

#[test]
fn output_encoding_round_trips_and_is_strict() {
    for (code, out, err) in [
        (Some(0), &b"ok\n"[..], &b""[..]),
        (Some(-3), b"", b"e"),
        (None, b"partial", b""),
    ] {
        let bytes = encode_output(code, out, err);
        assert_eq!(decode_output(&bytes), Ok((code, out, err)));
    }
    assert_eq!(hex::encode(encode_output(Some(0), b"hi", b"")), "a30000014268690240");
    assert!(decode_output(&[0xa1, 0x01, 0x40]).is_err());
    assert!(decode_output(&[0xa2, 0x02, 0x40, 0x01, 0x40]).is_err());
}

#[test]
fn executor_names_the_module() {
    let h = [0xab; 32];
    let name = executor(&h);
    assert_eq!(name, format!("wasm:sha256:{}", "ab".repeat(32)));
    assert_eq!(parse_executor(&name), Some(h));
    assert_eq!(parse_executor(&name.to_uppercase()), None);
    assert_eq!(parse_executor("sandbox"), None);
}

struct Recorded {
    evidence: SandboxEvidence,
    status: EffectStatus,
    executor: String,
    fuel_meter: Option<u64>,
    output: Vec<u8>,
}

impl Recorded {
    fn of(req: &RunRequest<'_>, o: &RunOutcome, files: &[(String, [u8; 32])]) -> Recorded {
        let evidence = SandboxEvidence::of_run(req, o, files);
        Recorded {
            executor: evidence.executor(),
            status: o.status(),
            fuel_meter: Some(o.fuel_used),
            output: o.output(),
            evidence,
        }
    }

    fn view(&self) -> RecordedEffect<'_> {
        RecordedEffect {
            evidence: &self.evidence,
            status: self.status,
            executor: &self.executor,
            fuel_meter: self.fuel_meter,
            output: &self.output,
        }
    }
}

fn replay(
    rec: &Recorded,
    module: &[u8],
    input: &[u8],
    files: &[VirtualFile],
) -> Result<helm_sandbox::Replayed, ReplayError> {
    let inputs = ReplayInputs { module, input, files };
    replay_effect(&sandbox(), &rec.view(), &inputs, &ReplayOptions::default())
}

fn record(module: &[u8], input: &[u8], limits: Limits) -> Recorded {
    let mut req = RunRequest::new(input);
    req.seed = [8; 32];
    req.limits = limits;
    let o = run_with(&sandbox(), module, &req).unwrap();
    Recorded::of(&req, &o, &[])
}

fn mismatches(r: Result<helm_sandbox::Replayed, ReplayError>) -> Vec<Difference> {
    match r {
        Err(ReplayError::Mismatch(d)) => d,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn effect_record_carries_the_evidence() {
    let module = tool("json-transform");
    let input = br#"{"x": 1}"#;
    let mut req = RunRequest::new(input);
    req.seed = [8; 32];
    req.limits = small_limits();
    let o = run_with(&sandbox(), &module, &req).unwrap();
    let mut ev = SandboxEvidence::of_run(&req, &o, &[]);
    ev.module_blob = Some([0x5a; 32]);
    let exec = ev.executor();
    let meters = o.meters();
    let effect = body::effect(&body::Effect {
        status: o.status(),
        tool: "json-transform",
        call_kind: CallKind::Bytes,
        args: [1; 32],
        output: [2; 32],
        executor: &exec,
        meters: &meters,
    });
    let mut b = RecordBuilder::new(Kind::Effect, effect);
    b.ext = Some(encode_ext(&ev));
    let bytes = b.sign(&Signer::from_seed(&[7; 32]));
    let rec = Record::decode(&bytes).expect("the record decodes under the record format");
    assert_eq!(decode_ext(rec.ext.expect("ext")), Ok(ev.clone()));
    match rec.body {
        Body::Effect { executor, .. } => assert_eq!(parse_executor(executor), Some(o.module)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn honest_records_replay() {
    let m = tool("json-transform");
    let rec = record(&m, br#"{"a": [1, "b"]}"#, small_limits());
    let r = replay(&rec, &m, br#"{"a": [1, "b"]}"#, &[]).unwrap();
    assert_eq!(r.ending, Ending::Completed);
    assert_eq!(r.fuel_used, rec.evidence.fuel_used);

    // A gas stop and a trap replay too.
    let mut l = small_limits();
    l.fuel = 500_000;
    let loop_ = tool("infinite-loop");
    let rec = record(&loop_, b"", l);
    assert_eq!(
        replay(&rec, &loop_, b"", &[]).unwrap().ending,
        Ending::Stopped(Stop::Gas)
    );
    let u = wat_file("unreachable.wat");
    let rec = record(&u, b"", small_limits());
    assert!(replay(&rec, &u, b"", &[]).is_ok());
}

#[test]
fn replay_with_files_and_seeded_randomness() {
    let m = tool("sneaky");
    let files = vec![VirtualFile::new("data.txt", &b"hello file"[..])];
    let mut req = RunRequest::new(b"");
    req.files = &files;
    req.seed = [42; 32];
    req.virtual_time_ms = 99;
    req.limits = small_limits();
    let o = run_with(&sandbox(), &m, &req).unwrap();
    let rec = Recorded::of(&req, &o, &[("data.txt".into(), [0xcc; 32])]);
    assert!(replay(&rec, &m, b"", &files).is_ok());
    // Another file content: the tool prints it, so stdout differs.
    let other = vec![VirtualFile::new("data.txt", &b"HELLO file"[..])];
    assert!(matches!(
        mismatches(replay(&rec, &m, b"", &other))[..],
        [Difference::Stdout { .. }]
    ));
    // A file missing.
    assert_eq!(mismatches(replay(&rec, &m, b"", &[])), vec![Difference::Files]);
}

#[test]
fn tampered_output_is_a_mismatch_naming_what_differs() {
    let m = tool("json-transform");
    let mut rec = record(&m, b"[1,2,3]", small_limits());
    let (code, out, err) = decode_output(&rec.output).unwrap();
    let mut out = out.to_vec();
    out[1] = b'9';
    rec.output = encode_output(code, &out, err);
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1,2,3]", &[])),
        vec![Difference::Stdout {
            recorded_len: 8,
            replayed_len: 8,
            first_difference: 1
        }]
    );
    // The exit status.
    let mut rec = record(&m, b"[1]", small_limits());
    let (_, out, err) = decode_output(&rec.output).unwrap();
    let (out, err) = (out.to_vec(), err.to_vec());
    rec.output = encode_output(Some(1), &out, &err);
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1]", &[])),
        vec![Difference::ExitCode {
            recorded: Some(1),
            replayed: Some(0)
        }]
    );
    // Garbage where the output should be.
    let mut rec = record(&m, b"[1]", small_limits());
    rec.output = b"[2]\n".to_vec();
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1]", &[])),
        vec![Difference::OutputEncoding]
    );
}

#[test]
fn tampered_fuel_is_a_mismatch() {
    let m = tool("json-transform");
    // The meter alone.
    let mut rec = record(&m, b"[1]", small_limits());
    let real = rec.evidence.fuel_used;
    rec.fuel_meter = Some(real - 1);
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1]", &[])),
        vec![Difference::FuelMeter {
            meter: Some(real - 1),
            evidence: real
        }]
    );
    // Meter and evidence together, consistently.
    rec.evidence.fuel_used = real - 1;
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1]", &[])),
        vec![Difference::Fuel {
            recorded: real - 1,
            replayed: real
        }]
    );
}

#[test]
fn tampered_status_ending_module_or_executor_is_a_mismatch() {
    let m = tool("json-transform");
    let mut rec = record(&m, b"[1]", small_limits());
    rec.status = EffectStatus::Failed;
    assert_eq!(
        mismatches(replay(&rec, &m, b"[1]", &[])),
        vec![Difference::Status {
            recorded: EffectStatus::Failed,
            replayed: EffectStatus::Succeeded
        }]
    );
    let mut rec = record(&m, b"[1]", small_limits());
    rec.evidence.ending = Ending::Stopped(Stop::Gas);
    assert!(matches!(
        mismatches(replay(&rec, &m, b"[1]", &[]))[..],
        [Difference::Ending { .. }]
    ));
    let rec = record(&m, b"[1]", small_limits());
    assert!(matches!(
        mismatches(replay(&rec, &tool("sneaky"), b"[1]", &[]))[..],
        [Difference::ModuleHash { .. }]
    ));
    let mut rec = record(&m, b"[1]", small_limits());
    rec.executor = "sandbox".into();
    assert!(matches!(
        mismatches(replay(&rec, &m, b"[1]", &[]))[..],
        [Difference::Executor { .. }]
    ));
    // Another input: a different output.
    let rec = record(&m, b"[1]", small_limits());
    let d = mismatches(replay(&rec, &m, b"[5]", &[]));
    assert!(d.iter().any(|d| matches!(d, Difference::Stdout { .. })), "{d:?}");
}

#[test]
fn another_engine_or_fuel_model_is_not_judged() {
    let m = tool("json-transform");
    let mut rec = record(&m, b"[1]", small_limits());
    rec.evidence.engine = "wasmi 2.0.1".into();
    let e = replay(&rec, &m, b"[1]", &[]).unwrap_err();
    assert_eq!(
        e,
        ReplayError::EngineDiffers {
            recorded: "wasmi 2.0.1".into(),
            ours: ENGINE
        }
    );
    assert!(!e.is_mismatch());
    assert!(e.to_string().contains("engine version differs"));
    let mut rec = record(&m, b"[1]", small_limits());
    rec.evidence.fuel_model = 2;
    assert!(matches!(
        replay(&rec, &m, b"[1]", &[]),
        Err(ReplayError::FuelModelDiffers { recorded: 2, .. })
    ));
}

#[test]
fn time_stopped_runs_are_not_replayable() {
    let m = tool("infinite-loop");
    let mut l = small_limits();
    l.fuel = u64::MAX;
    l.wall_ms = 50;
    let rec = record(&m, b"", l);
    assert_eq!(rec.evidence.ending, Ending::Stopped(Stop::Time));
    assert!(!rec.evidence.replayable);
    assert_eq!(replay(&rec, &m, b"", &[]), Err(ReplayError::NotReplayable));
}

#[test]
fn a_replay_that_runs_out_of_time_is_inconclusive() {
    let m = tool("infinite-loop");
    let mut rec = record(&wat_file("echo.wat"), b"", small_limits());
    // Claim the infinite loop completed with a huge budget; allow the replay 50 ms.
    rec.evidence.module = sha256(&m);
    rec.executor = executor(&rec.evidence.module);
    rec.evidence.limits.fuel = u64::MAX;
    rec.evidence.limits.wall_ms = 50;
    let inputs = ReplayInputs {
        module: &m,
        input: b"",
        files: &[],
    };
    let r = replay_effect(&sandbox(), &rec.view(), &inputs, &ReplayOptions { wall_ms: 50 });
    assert_eq!(r, Err(ReplayError::TimedOut));
}

#[test]
fn refused_modules_are_recorded_and_replayed() {
    let m = wat_file("import-env.wat");
    let mut req = RunRequest::new(b"");
    req.limits = small_limits();
    let err = run_with(&sandbox(), &m, &req).unwrap_err();
    let ev = SandboxEvidence::refused(sha256(&m), &req, &err, &[]).unwrap();
    assert_eq!(ev.ending, Ending::Refused("IMPORT_DENIED".into()));
    assert_eq!(decode_ext(&encode_ext(&ev)), Ok(ev.clone()));
    let rec = Recorded {
        executor: ev.executor(),
        evidence: ev,
        status: EffectStatus::Failed,
        fuel_meter: Some(0),
        output: encode_output(None, b"", b""),
    };
    assert!(replay(&rec, &m, b"", &[]).is_ok());
    // Configuration errors are not evidence.
    let too_large = helm_sandbox::SandboxError::ModuleTooLarge { size: 2, max: 1 };
    assert!(SandboxEvidence::refused([0; 32], &req, &too_large, &[]).is_none());
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
