//! Sandbox evidence in an EFFECT record (spec/sandbox.md §6): the extension-map entry,
//! the result bytes the `output` commitment covers, the executor name and the meters.

use core::fmt;

use verify_core::cbor::{Reader, MAJOR_MAP, MAJOR_SIMPLE, MAJOR_TEXT};
use verify_core::CborError;
use verify_core::CborWriter;

use crate::engine::{RunOutcome, RunRequest};
use crate::error::{SandboxError, Stop};
use crate::limits::{Limits, ENGINE, FUEL_MODEL};

/// Key of the sandbox entry in a record's extension map (payload key 9).
pub const EXT_KEY: &str = "sandbox";
/// Version of the evidence map.
pub const EVIDENCE_VERSION: u64 = 1;
/// Name of the fuel meter in the EFFECT's `meters`.
pub const METER_FUEL: &str = "fuel";
/// Prefix of the EFFECT's `executor` for a sandboxed call, followed by the module's
/// SHA-256 in lowercase hex.
pub const EXECUTOR_PREFIX: &str = "wasm:sha256:";

/// The EFFECT executor for a module: `wasm:sha256:<64 lowercase hex digits>`.
pub fn executor(module: &[u8; 32]) -> String {
    format!("{EXECUTOR_PREFIX}{}", hex::encode(module))
}

/// The module hash named by an executor, if it is a sandbox executor.
pub fn parse_executor(executor: &str) -> Option<[u8; 32]> {
    let h = executor.strip_prefix(EXECUTOR_PREFIX)?;
    if h.len() != 64 || h.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// How the call ended, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The guest finished (returned from `_start` or called `proc_exit`); its exit status
    /// is in the output bytes.
    Completed,
    /// The run was stopped.
    Stopped(Stop),
    /// The module was refused before it ran (`MODULE_INVALID` or `IMPORT_DENIED`), with
    /// the reason code.
    Refused(String),
}

impl Ending {
    /// The reason code, or `None` for a completed run.
    pub fn code(&self) -> Option<&str> {
        match self {
            Ending::Completed => None,
            Ending::Stopped(s) => Some(s.code()),
            Ending::Refused(c) => Some(c),
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Completed => f.write_str("completed"),
            Ending::Stopped(s) => write!(f, "{s}"),
            Ending::Refused(c) => f.write_str(c),
        }
    }
}

/// What an EFFECT records about a sandboxed call, beyond its commitments: enough to
/// re-execute it from the pack's blobs and to know whether that is meaningful.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxEvidence {
    /// SHA-256 of the module's bytes (as an ATTESTATION `sandbox-module` subject).
    pub module: [u8; 32],
    /// Commitment (blob name) of the pack blob holding `salt ‖ module bytes`, if the
    /// module is in the pack.
    pub module_blob: Option<[u8; 32]>,
    /// The engine, e.g. `wasmi 2.0.0` ([`ENGINE`]).
    pub engine: String,
    /// The fuel cost model ([`FUEL_MODEL`]).
    pub fuel_model: u32,
    /// Seed of the guest's random stream.
    pub seed: [u8; 32],
    /// What the guest's clocks read, ms since the Unix epoch.
    pub virtual_time_ms: u64,
    /// The guest's argv.
    pub args: Vec<String>,
    /// The guest's environment, in order.
    pub env: Vec<(String, String)>,
    /// The virtual files: path and the commitment (blob name) of the blob holding
    /// `salt ‖ content`, ascending by path.
    pub files: Vec<(String, [u8; 32])>,
    /// The limits of the run.
    pub limits: Limits,
    /// Fuel used.
    pub fuel_used: u64,
    /// How the call ended.
    pub ending: Ending,
    /// Whether the run can be re-executed to the same result (false after
    /// `TIME_EXHAUSTED`).
    pub replayable: bool,
}

impl SandboxEvidence {
    fn base(module: [u8; 32], req: &RunRequest<'_>, files: &[(String, [u8; 32])]) -> SandboxEvidence {
        let mut files = files.to_vec();
        files.sort();
        SandboxEvidence {
            module,
            module_blob: None,
            engine: ENGINE.to_string(),
            fuel_model: FUEL_MODEL,
            seed: req.seed,
            virtual_time_ms: req.virtual_time_ms,
            args: req.args.to_vec(),
            env: req.env.to_vec(),
            files,
            limits: req.limits,
            fuel_used: 0,
            ending: Ending::Completed,
            replayable: true,
        }
    }

    /// The evidence of a run. `files` names the blob of each of the request's files
    /// (path, commitment); set [`SandboxEvidence::module_blob`] when the module goes into
    /// the pack.
    pub fn of_run(req: &RunRequest<'_>, outcome: &RunOutcome, files: &[(String, [u8; 32])]) -> SandboxEvidence {
        let mut e = SandboxEvidence::base(outcome.module, req, files);
        e.fuel_used = outcome.fuel_used;
        e.ending = match outcome.stopped {
            None => Ending::Completed,
            Some(s) => Ending::Stopped(s),
        };
        e.replayable = outcome.replayable;
        e
    }

    /// The evidence of a call whose module was refused (`MODULE_INVALID`,
    /// `IMPORT_DENIED`): nothing ran, no fuel was used, the output is
    /// [`encode_output`]`(None, b"", b"")`. `None` for errors that are not a property of
    /// the module ([`SandboxError::is_module_refusal`]): those are not recorded as
    /// sandbox evidence.
    pub fn refused(
        module: [u8; 32],
        req: &RunRequest<'_>,
        error: &SandboxError,
        files: &[(String, [u8; 32])],
    ) -> Option<SandboxEvidence> {
        if !error.is_module_refusal() {
            return None;
        }
        let mut e = SandboxEvidence::base(module, req, files);
        e.ending = Ending::Refused(error.code().to_string());
        Some(e)
    }

    /// The EFFECT executor: `wasm:sha256:<hex of module>`.
    pub fn executor(&self) -> String {
        executor(&self.module)
    }
}

/// Why evidence or output bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvidenceError {
    /// The extension map has no `sandbox` entry.
    Absent,
    /// Not deterministic CBOR, or not the expected shape.
    Cbor(CborError),
    /// A field is missing, unknown, out of range or of the wrong type.
    Field(&'static str),
    /// The evidence map's version is not one this crate reads.
    UnsupportedVersion(u64),
}

impl From<CborError> for EvidenceError {
    fn from(e: CborError) -> Self {
        EvidenceError::Cbor(e)
    }
}

impl fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceError::Absent => write!(f, "the extension map has no \"{EXT_KEY}\" entry"),
            EvidenceError::Cbor(e) => write!(f, "CBOR: {e:?}"),
            EvidenceError::Field(what) => write!(f, "sandbox evidence: {what}"),
            EvidenceError::UnsupportedVersion(v) => write!(f, "sandbox evidence version {v} is not supported"),
        }
    }
}

impl core::error::Error for EvidenceError {}

fn write_evidence(w: &mut CborWriter, e: &SandboxEvidence) {
    let trap = match &e.ending {
        Ending::Stopped(s) => s.trap(),
        _ => None,
    };
    let n = [e.ending.code().is_some(), trap.is_some(), e.module_blob.is_some()]
        .iter()
        .fold(12usize, |n, present| n.saturating_add(usize::from(*present)));
    w.map(n);
    w.uint(0).uint(EVIDENCE_VERSION);
    w.uint(1).bytes(&e.module);
    w.uint(2).text(&e.engine);
    w.uint(3).uint(u64::from(e.fuel_model));
    w.uint(4).bytes(&e.seed);
    w.uint(5).uint(e.virtual_time_ms);
    w.uint(6).array(e.args.len());
    for a in &e.args {
        w.text(a);
    }
    w.uint(7).array(e.env.len());
    for (k, v) in &e.env {
        w.array(2).text(k).text(v);
    }
    let mut files: Vec<&(String, [u8; 32])> = e.files.iter().collect();
    files.sort();
    w.uint(8).array(files.len());
    for (p, c) in files {
        w.array(2).text(p).bytes(c);
    }
    let l = &e.limits;
    w.uint(9).map(5);
    w.uint(0).uint(l.fuel);
    w.uint(1).uint(l.wall_ms);
    w.uint(2).uint(l.memory_bytes);
    w.uint(3).uint(l.table_elements);
    w.uint(4).uint(l.output_bytes);
    w.uint(10).uint(e.fuel_used);
    if let Some(code) = e.ending.code() {
        w.uint(11).text(code);
    }
    if let Some(t) = trap {
        w.uint(12).text(t.code());
    }
    // CBOR false / true.
    w.uint(13).raw(&[if e.replayable { 0xf5 } else { 0xf4 }]);
    if let Some(b) = &e.module_blob {
        w.uint(14).bytes(b);
    }
}

/// The evidence map alone (the value under [`EXT_KEY`]), for a kernel that merges it into
/// an extension map with other entries.
pub fn encode_evidence(e: &SandboxEvidence) -> Vec<u8> {
    let mut w = CborWriter::new();
    write_evidence(&mut w, e);
    w.into_bytes()
}

/// A complete extension map `{"sandbox": evidence}` for a record's payload key 9.
pub fn encode_ext(e: &SandboxEvidence) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.map(1).text(EXT_KEY);
    write_evidence(&mut w, e);
    w.into_bytes()
}

/// Reads the sandbox evidence from a record's extension map (the bytes of payload key 9,
/// e.g. `Record::ext`). Other entries are skipped (checked as deterministic CBOR only).
pub fn decode_ext(ext: &[u8]) -> Result<SandboxEvidence, EvidenceError> {
    let mut r = Reader::new(ext);
    let n = r.map_len()?;
    let mut order = verify_core::cbor::KeyOrder::new();
    let mut found = None;
    for _ in 0..n {
        let start = r.position();
        if r.peek_major() != Some(MAJOR_TEXT) {
            return Err(EvidenceError::Field("extension keys are text"));
        }
        let key = r.text()?;
        order.next(r.since(start))?;
        if key == EXT_KEY {
            found = Some(read_evidence(&mut r)?);
        } else {
            r.any(1)?;
        }
    }
    r.finish()?;
    found.ok_or(EvidenceError::Absent)
}

/// Reads an evidence map alone (the value under [`EXT_KEY`]); nothing may follow it.
pub fn decode_evidence(bytes: &[u8]) -> Result<SandboxEvidence, EvidenceError> {
    let mut r = Reader::new(bytes);
    let e = read_evidence(&mut r)?;
    r.finish()?;
    Ok(e)
}

fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, EvidenceError> {
    r.text().map(str::to_string).map_err(|_| EvidenceError::Field(what))
}

fn read_evidence(r: &mut Reader<'_>) -> Result<SandboxEvidence, EvidenceError> {
    if r.peek_major() != Some(MAJOR_MAP) {
        return Err(EvidenceError::Field("evidence is not a map"));
    }
    let n = r.map_len()?;
    let mut prev = None;
    let mut e = SandboxEvidence {
        module: [0; 32],
        module_blob: None,
        engine: String::new(),
        fuel_model: 0,
        seed: [0; 32],
        virtual_time_ms: 0,
        args: Vec::new(),
        env: Vec::new(),
        files: Vec::new(),
        limits: Limits::DEFAULT,
        fuel_used: 0,
        ending: Ending::Completed,
        replayable: true,
    };
    let mut seen = 0u32;
    let mut stop_code: Option<String> = None;
    let mut trap_code: Option<String> = None;
    for _ in 0..n {
        let k = r.key(&mut prev).map_err(|err| match err {
            CborError::KeyOrder => EvidenceError::Cbor(err),
            _ => EvidenceError::Field("keys are unsigned integers"),
        })?;
        match k {
            0 => {
                let v = r.uint().map_err(|_| EvidenceError::Field("version"))?;
                if v != EVIDENCE_VERSION {
                    return Err(EvidenceError::UnsupportedVersion(v));
                }
            }
            1 => e.module = r.bytes_fixed::<32>().map_err(|_| EvidenceError::Field("module"))?,
            2 => e.engine = text(r, "engine")?,
            3 => {
                let v = r.uint().map_err(|_| EvidenceError::Field("fuel_model"))?;
                e.fuel_model = u32::try_from(v).map_err(|_| EvidenceError::Field("fuel_model"))?;
            }
            4 => e.seed = r.bytes_fixed::<32>().map_err(|_| EvidenceError::Field("seed"))?,
            5 => e.virtual_time_ms = r.uint().map_err(|_| EvidenceError::Field("virtual_time"))?,
            6 => {
                let n = r.array_len().map_err(|_| EvidenceError::Field("args"))?;
                for _ in 0..n {
                    e.args.push(text(r, "args")?);
                }
            }
            7 => {
                let n = r.array_len().map_err(|_| EvidenceError::Field("env"))?;
                for _ in 0..n {
                    if r.array_len().map_err(|_| EvidenceError::Field("env"))? != 2 {
                        return Err(EvidenceError::Field("env entries are [name, value]"));
                    }
                    e.env.push((text(r, "env")?, text(r, "env")?));
                }
            }
            8 => {
                let n = r.array_len().map_err(|_| EvidenceError::Field("files"))?;
                for _ in 0..n {
                    if r.array_len().map_err(|_| EvidenceError::Field("files"))? != 2 {
                        return Err(EvidenceError::Field("file entries are [path, commitment]"));
                    }
                    let p = text(r, "files")?;
                    let c = r.bytes_fixed::<32>().map_err(|_| EvidenceError::Field("files"))?;
                    if e.files.last().is_some_and(|(last, _)| *last >= p) {
                        return Err(EvidenceError::Field("files are not strictly ascending by path"));
                    }
                    e.files.push((p, c));
                }
            }
            9 => {
                if r.map_len().map_err(|_| EvidenceError::Field("limits"))? != 5 {
                    return Err(EvidenceError::Field("limits has 5 entries"));
                }
                let mut lp = None;
                let mut vals = [0u64; 5];
                for (i, slot) in vals.iter_mut().enumerate() {
                    let key = r.key(&mut lp).map_err(|_| EvidenceError::Field("limits"))?;
                    if key != i as u64 {
                        return Err(EvidenceError::Field("limits keys are 0-4"));
                    }
                    *slot = r.uint().map_err(|_| EvidenceError::Field("limits"))?;
                }
                let [fuel, wall_ms, memory_bytes, table_elements, output_bytes] = vals;
                e.limits = Limits {
                    fuel,
                    wall_ms,
                    memory_bytes,
                    table_elements,
                    output_bytes,
                };
            }
            10 => e.fuel_used = r.uint().map_err(|_| EvidenceError::Field("fuel_used"))?,
            11 => stop_code = Some(text(r, "stop")?),
            12 => trap_code = Some(text(r, "trap")?),
            13 => {
                let (major, arg) = r.head().map_err(|_| EvidenceError::Field("replayable"))?;
                e.replayable = match (major, arg) {
                    (MAJOR_SIMPLE, 20) => false,
                    (MAJOR_SIMPLE, 21) => true,
                    _ => return Err(EvidenceError::Field("replayable is a boolean")),
                };
            }
            14 => e.module_blob = Some(r.bytes_fixed::<32>().map_err(|_| EvidenceError::Field("module_blob"))?),
            _ => return Err(EvidenceError::Field("unknown key")),
        }
        seen |= 1u32.checked_shl(k as u32).unwrap_or(0);
    }
    // 0-10 and 13 are required.
    let required = 0b10_0111_1111_1111u32;
    if seen & required != required {
        return Err(EvidenceError::Field("a required key is missing"));
    }
    e.ending = match (stop_code.as_deref(), trap_code.as_deref()) {
        (None, None) => Ending::Completed,
        (Some(c @ ("MODULE_INVALID" | "IMPORT_DENIED")), None) => Ending::Refused(c.to_string()),
        (Some(c), t) => {
            Ending::Stopped(Stop::from_code(c, t).ok_or(EvidenceError::Field("unknown stop or trap code"))?)
        }
        (None, Some(_)) => return Err(EvidenceError::Field("trap without stop")),
    };
    if e.replayable != !matches!(e.ending, Ending::Stopped(Stop::Time)) {
        return Err(EvidenceError::Field(
            "replayable must be false exactly for TIME_EXHAUSTED",
        ));
    }
    Ok(e)
}

/// The result bytes of a sandboxed call, which the EFFECT's `output` commits to and the
/// output blob holds after its salt: the deterministic CBOR map
/// `{? 0: exit status (int), 1: stdout (bstr), 2: stderr (bstr)}`, key 0 absent when the
/// run was stopped or refused.
pub fn encode_output(exit_code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.map(if exit_code.is_some() { 3 } else { 2 });
    if let Some(c) = exit_code {
        w.uint(0).int(i64::from(c));
    }
    w.uint(1).bytes(stdout).uint(2).bytes(stderr);
    w.into_bytes()
}

/// The result bytes decoded: exit status, stdout, stderr.
pub type DecodedOutput<'a> = (Option<i32>, &'a [u8], &'a [u8]);

/// Reads result bytes written by [`encode_output`], strictly.
pub fn decode_output(bytes: &[u8]) -> Result<DecodedOutput<'_>, EvidenceError> {
    let mut r = Reader::new(bytes);
    let n = r.map_len()?;
    if !(2..=3).contains(&n) {
        return Err(EvidenceError::Field("output map has 2 or 3 entries"));
    }
    let mut prev = None;
    let mut exit = None;
    if n == 3 {
        if r.key(&mut prev)? != 0 {
            return Err(EvidenceError::Field("output key 0"));
        }
        let c = r.int()?;
        exit = Some(i32::try_from(c).map_err(|_| EvidenceError::Field("exit status"))?);
    }
    if r.key(&mut prev)? != 1 {
        return Err(EvidenceError::Field("output key 1"));
    }
    let stdout = r.bytes()?;
    if r.key(&mut prev)? != 2 {
        return Err(EvidenceError::Field("output key 2"));
    }
    let stderr = r.bytes()?;
    r.finish()?;
    Ok((exit, stdout, stderr))
}
