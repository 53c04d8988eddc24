//! `helm-airgap conform --implementation CMD [--level L]... [--expected-failures FILE] [--json]
//! [--vectors DIR] [--timeout SECS] [--no-batch] [--verbose]`
//!
//! A conformance runner for the `helm-conformance/1` protocol (spec/conformance.md): asks
//! the implementation for its `capabilities`, derives every vector's input files (§4)
//! into a fresh temporary directory, calls the implementation once per vector, or in
//! chunks through `batch` when it offers that, compares the members §4 names, and
//! reports each vector (PASS, FAIL, XFAIL, XPASS, SKIP) and each level, then a closing
//! line `conform: N passed, N failed[, N skipped]`. It reaches the same per-vector
//! results as the reference runner, implementations/python/run_conformance.py.
//!
//! Exit 0 when no vector failed and no expected failure passed, 1 otherwise, 2 when the
//! runner cannot run (unreadable vector or expected-failures files, an implementation
//! that cannot be started or does not answer `capabilities` with the protocol; then
//! nothing is printed on standard output, even with `--json`).

use core::fmt::Write as _;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cli::ConformConfig;
use crate::files::read_small;
use crate::output::{outln, Out, Safe};
use crate::status::{CliError, Status};

/// The protocol `capabilities` must name.
const PROTOCOL: &str = "helm-conformance/1";
/// Requests per `batch` call.
const CHUNK: usize = 256;
/// Most bytes of standard output kept from one call (or one `batch` response line).
const MAX_OUTPUT: u64 = 16 << 20;
/// Most bytes of standard error kept (the end), and characters quoted in a reason.
const STDERR_KEEP: usize = 64 << 10;
const STDERR_QUOTE: usize = 500;
/// Largest expected-failures file.
const MAX_EXPECTED_FAILURES: u64 = 16 << 20;

/// A conformance level (spec/conformance.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) enum Level {
    L1,
    L2,
    L3,
}

impl Level {
    pub(crate) const ALL: [Level; 3] = [Level::L1, Level::L2, Level::L3];

    fn name(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name() == s)
    }
}

// ---------------------------------------------------------------- vectors

/// The members compared for each kind of vector (§4), by expected result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Records,
    Pack,
    Signature,
}

impl Kind {
    fn compared(self, accept: bool) -> &'static [&'static str] {
        match (self, accept) {
            (Kind::Records, true) => &["result", "count", "root"],
            (Kind::Records, false) => &["result", "error", "index"],
            (Kind::Pack, true) => &["result", "records", "root"],
            (Kind::Pack, false) => &["result", "error"],
            (Kind::Signature, _) => &["result"],
        }
    }
}

/// One argument of a call: literal text, or the path of one of the vector's files.
#[derive(Clone, Debug)]
enum Arg {
    Text(String),
    File(&'static str),
}

/// A vector, with its input files derived (§4).
#[derive(Clone, Debug)]
struct Vector {
    /// `records/<id>`, `packs/<id>` or `ed25519/<number>`.
    id: String,
    level: Level,
    argv: Vec<Arg>,
    files: Vec<(&'static str, Vec<u8>)>,
    /// The compared members and their expected values (`root` in lowercase).
    want: Vec<(&'static str, Value)>,
}

#[derive(Debug, Deserialize)]
struct Index {
    records: Vec<RecordEntry>,
    packs: Option<String>,
    ed25519: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RecordEntry {
    id: String,
    level: String,
    expect: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RecordFile {
    anchors: Vec<String>,
    records: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct PackIndex {
    packs: Vec<PackEntry>,
}

#[derive(Debug, Deserialize)]
struct PackEntry {
    id: String,
    level: String,
    anchors: Vec<String>,
    file: String,
    expect: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct SignatureCase {
    number: u64,
    key: String,
    sig: String,
    msg: String,
    expect: String,
}

#[derive(Debug, Serialize)]
struct AnchorJson {
    name: String,
    key: String,
}

#[derive(Debug, Serialize)]
struct TrustRootJson {
    format: &'static str,
    anchors: Vec<AnchorJson>,
}

/// The `test-vectors` directory when `--vectors` is not given: `./test-vectors`, else
/// the one next to the sources this binary was built from.
fn default_vectors() -> Result<PathBuf, CliError> {
    let here = PathBuf::from("test-vectors");
    if here.join("index.json").is_file() {
        return Ok(here);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = manifest.parent().unwrap_or(manifest).join("test-vectors");
    if built.join("index.json").is_file() {
        return Ok(built);
    }
    Err(CliError::usage(format!(
        "no test vectors: neither ./test-vectors nor {} holds an index.json (give --vectors DIR)",
        built.display()
    )))
}

/// Reads the vectors (an error of the runner's input is exit 2, never a vector result).
fn load_vectors(dir: &Path) -> Result<Vec<Vector>, CliError> {
    load(dir).map_err(|e| CliError::usage(format!("cannot read the vectors in {}: {e}", dir.display())))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn level(id: &str, s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{id}: unknown level {s:?}"))
}

/// A trust-root file (spec/evidencepack.md §8) naming `anchors` (hex, 32 bytes each).
fn trust_root(id: &str, anchors: &[String]) -> Result<Vec<u8>, String> {
    let mut list = Vec::with_capacity(anchors.len());
    for (i, a) in anchors.iter().enumerate() {
        let key = hex::decode(a).map_err(|e| format!("{id}: anchor {a:?}: {e}"))?;
        if key.len() != 32 {
            return Err(format!("{id}: anchor {a:?} is not 32 bytes"));
        }
        list.push(AnchorJson {
            name: format!("anchor-{i}"),
            key: format!("ed25519:{}", hex::encode(key)),
        });
    }
    let doc = TrustRootJson {
        format: "helm-trust-root/1",
        anchors: list,
    };
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// A CBOR byte string with the shortest head.
fn cbor_bstr(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len() as u64;
    let be = n.to_be_bytes();
    let (head, skip) = match n {
        0..=23 => (0x40 | u8::try_from(n).unwrap_or(0), 8),
        24..=0xff => (0x58, 7),
        0x100..=0xffff => (0x59, 6),
        0x1_0000..=0xffff_ffff => (0x5a, 4),
        _ => (0x5b, 0),
    };
    out.push(head);
    out.extend_from_slice(be.get(skip..).unwrap_or(&[]));
    out.extend_from_slice(data);
}

/// RECORDS.cbor (§2.2): a CBOR sequence of byte strings, one per record.
fn record_sequence(id: &str, records: &[String]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let bytes = hex::decode(r).map_err(|e| format!("{id}: record {i}: {e}"))?;
        cbor_bstr(&mut out, &bytes);
    }
    Ok(out)
}

/// The compared members of `expect`, which must all be present.
fn wanted(id: &str, kind: Kind, expect: &Map<String, Value>) -> Result<Vec<(&'static str, Value)>, String> {
    let accept = match expect.get("result") {
        Some(Value::String(r)) => r == "accept",
        _ => return Err(format!("{id}: expect has no result")),
    };
    kind.compared(accept)
        .iter()
        .map(|&name| match expect.get(name) {
            Some(Value::String(s)) if name == "root" => Ok((name, Value::String(s.to_ascii_lowercase()))),
            Some(v) => Ok((name, v.clone())),
            None => Err(format!("{id}: expect has no {name}")),
        })
        .collect()
}

fn load(dir: &Path) -> Result<Vec<Vector>, String> {
    let mut out = Vec::new();
    let index: Index = read_json(&dir.join("index.json"))?;
    for entry in &index.records {
        let id = format!("records/{}", entry.id);
        let file: RecordFile = read_json(&dir.join("records").join(format!("{}.json", entry.id)))?;
        out.push(Vector {
            level: level(&id, &entry.level)?,
            argv: vec![
                Arg::Text("verify-records".into()),
                Arg::Text("--anchors".into()),
                Arg::File("anchors"),
                Arg::Text("--records".into()),
                Arg::File("records"),
            ],
            files: vec![
                ("anchors", trust_root(&id, &file.anchors)?),
                ("records", record_sequence(&id, &file.records)?),
            ],
            want: wanted(&id, Kind::Records, &entry.expect)?,
            id,
        });
    }
    let packs_path = dir.join(index.packs.as_deref().unwrap_or("packs/index.json"));
    let packs: PackIndex = read_json(&packs_path)?;
    let packs_dir = packs_path.parent().unwrap_or(dir);
    for entry in &packs.packs {
        let id = format!("packs/{}", entry.id);
        let path = packs_dir.join(&entry.file);
        let pack = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(Vector {
            level: level(&id, &entry.level)?,
            argv: vec![
                Arg::Text("verify-pack".into()),
                Arg::Text("--trust-root".into()),
                Arg::File("anchors"),
                Arg::Text("--pack".into()),
                Arg::File("pack"),
            ],
            files: vec![("anchors", trust_root(&id, &entry.anchors)?), ("pack", pack)],
            want: wanted(&id, Kind::Pack, &entry.expect)?,
            id,
        });
    }
    let cases: Vec<SignatureCase> =
        read_json(&dir.join(index.ed25519.as_deref().unwrap_or("ed25519/strict-verdicts.json")))?;
    for c in cases {
        let id = format!("ed25519/{}", c.number);
        let mut expect = Map::new();
        expect.insert("result".into(), Value::String(c.expect));
        out.push(Vector {
            level: Level::L1,
            argv: vec![
                Arg::Text("verify-signature".into()),
                Arg::Text("--key".into()),
                Arg::Text(c.key),
                Arg::Text("--signature".into()),
                Arg::Text(c.sig),
                Arg::Text("--message-file".into()),
                Arg::File("message"),
            ],
            files: vec![("message", c.msg.into_bytes())],
            want: wanted(&id, Kind::Signature, &expect)?,
            id,
        });
    }
    Ok(out)
}

/// Vector ids from an expected-failures file (§5): one a line, `#` comments.
fn read_expected_failures(path: &Path) -> Result<BTreeSet<String>, CliError> {
    let text = read_small(path, MAX_EXPECTED_FAILURES, "expected-failures file")?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

// ---------------------------------------------------------------- comparing

/// Two JSON values are equal; numbers by value (`10` equals `10.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(p), Some(q), _, _) => p == q,
            (_, _, Some(p), Some(q)) => p == q,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// JSON as the reference runner prints it (`json.dumps(sort_keys=True)`): sorted keys,
/// `", "` and `": "` separators.
fn py_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", Value::String(k.clone()));
                if let Some(x) = m.get(k) {
                    py_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_json(x, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn members_text(members: &[(&'static str, Value)]) -> String {
    let obj: Map<String, Value> = members.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    let mut s = String::new();
    py_json(&Value::Object(obj), &mut s);
    s
}

/// What one call gave.
#[derive(Clone, Debug)]
enum Outcome {
    /// The JSON text it printed.
    Output(Value),
    /// An internal failure (§1): why.
    Internal(String),
}

/// `Ok(compared members as text)` when `got` is the expected outcome, else `Err(reason)`.
fn compare(v: &Vector, got: &Outcome) -> Result<String, String> {
    let got = match got {
        Outcome::Internal(why) => return Err(format!("internal failure: {why}")),
        Outcome::Output(Value::Object(m)) => m,
        Outcome::Output(_) => return Err("output is not a JSON object".into()),
    };
    let have: Vec<(&'static str, Value)> = v
        .want
        .iter()
        .map(|(k, _)| (*k, got.get(*k).cloned().unwrap_or(Value::Null)))
        .collect();
    let same = v.want.iter().zip(&have).all(|((_, w), (_, h))| json_eq(w, h));
    if same {
        Ok(members_text(&have))
    } else {
        Err(format!(
            "expected {}, got {}",
            members_text(&v.want),
            members_text(&have)
        ))
    }
}

// ---------------------------------------------------------------- calling CMD

/// A directory of our own under the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, CliError> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let nonce = getrandom::u64().unwrap_or(0);
            let path = base.join(format!("helm-conform-{}-{nonce:016x}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(CliError::io(
                        format!("cannot create a directory in {}", base.display()),
                        &e,
                    ))
                }
            }
        }
        let e = last.unwrap_or_else(|| io::Error::other("no free name"));
        Err(CliError::io(
            format!("cannot create a directory in {}", base.display()),
            &e,
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Reads `r` to the end on a thread; keeps the first [`MAX_OUTPUT`] bytes.
fn read_head(r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let _ = (&mut r).take(MAX_OUTPUT).read_to_end(&mut buf);
        let _ = io::copy(&mut r, &mut io::sink());
        let _ = tx.send(buf);
    });
    rx
}

/// Reads `r` to the end on a thread; keeps the last [`STDERR_KEEP`] bytes.
fn read_tail(r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = r;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    if buf.len() > STDERR_KEEP.saturating_mul(2) {
                        let cut = buf.len().saturating_sub(STDERR_KEEP);
                        buf.drain(..cut);
                    }
                }
            }
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Reads `r` line by line on a thread (a line over [`MAX_OUTPUT`] bytes is cut short).
fn read_lines(r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        loop {
            let mut line = Vec::new();
            match (&mut r).take(MAX_OUTPUT).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                // Over-long: drop the rest of the line.
                let mut rest = Vec::new();
                if r.read_until(b'\n', &mut rest).is_err() {
                    break;
                }
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn remaining(deadline: Option<Instant>) -> Duration {
    deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()))
}

/// Waits for `rx` until `deadline` (`None`: the sender went away or time ran out).
fn recv_until<T>(rx: &mpsc::Receiver<T>, deadline: Option<Instant>) -> Result<T, mpsc::RecvTimeoutError> {
    match deadline {
        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        Some(_) => rx.recv_timeout(remaining(deadline)),
    }
}

/// Waits for the child to exit until `deadline`; kills it when time runs out (`None`).
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Option<ExitStatus> {
    let mut pause = Duration::from_micros(100);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => break,
        }
        let left = remaining(deadline);
        if left.is_zero() {
            break;
        }
        thread::sleep(pause.min(left));
        pause = pause.saturating_mul(2).min(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// How a process ended, for reasons.
fn describe(status: ExitStatus, stderr: &[u8]) -> String {
    let mut s = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "abnormal exit".to_string(),
    };
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if !text.is_empty() {
        let n = text.chars().count();
        let tail: String = text.chars().skip(n.saturating_sub(STDERR_QUOTE)).collect();
        s.push_str(": ");
        s.push_str(&tail);
    }
    s
}

/// The implementation's command line, and where the calls' files go.
#[derive(Debug)]
struct Runner<'a> {
    command: &'a [String],
    /// For messages: `--implementation` as given.
    shown: &'a str,
    timeout: Duration,
    dir: &'a Path,
}

impl Runner<'_> {
    fn deadline(&self, n: usize) -> Option<Instant> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Instant::now().checked_add(self.timeout.saturating_mul(n))
    }

    fn spawn(&self, extra: &[OsString]) -> Result<Child, CliError> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(CliError::usage("--implementation: no command given"));
        };
        Command::new(program)
            .args(args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::io(format!("cannot run {}", Safe(self.shown)), &e))
    }

    /// One call; an error only when the implementation cannot be started.
    fn call_one(&self, argv: &[OsString]) -> Result<Outcome, CliError> {
        let deadline = self.deadline(1);
        let mut child = self.spawn(argv)?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(CliError::usage("cannot capture the implementation's output"));
        };
        let out_rx = read_head(stdout);
        let err_rx = read_tail(stderr);
        let timed_out = || Outcome::Internal(format!("timed out after {} s", self.timeout.as_secs()));
        let Ok(out) = recv_until(&out_rx, deadline) else {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(timed_out());
        };
        let Some(status) = wait_until(&mut child, deadline) else {
            return Ok(timed_out());
        };
        if !status.success() {
            let err = recv_until(&err_rx, deadline).unwrap_or_default();
            return Ok(Outcome::Internal(describe(status, &err)));
        }
        Ok(match serde_json::from_slice::<Value>(&out) {
            Ok(v) => Outcome::Output(v),
            Err(e) => Outcome::Internal(format!("stdout is not one JSON object: {e}")),
        })
    }

    /// One `batch` call for `argvs`, whose request ids are `first`, `first + 1`, …
    fn call_batch(&self, first: usize, argvs: &[Vec<String>]) -> Result<Vec<Outcome>, CliError> {
        let input = self.dir.join(format!("batch-{first}.jsonl"));
        let mut requests = String::new();
        for (k, argv) in argvs.iter().enumerate() {
            let req = serde_json::json!({"id": first.saturating_add(k), "argv": argv});
            let _ = writeln!(requests, "{req}");
        }
        fs::write(&input, requests).map_err(|e| CliError::io(format!("cannot write {}", input.display()), &e))?;
        let mut child = self.spawn(&["batch".into(), "--input".into(), input.into_os_string()])?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(CliError::usage("cannot capture the implementation's output"));
        };
        let lines = read_lines(stdout);
        let err_rx = read_tail(stderr);
        let mut results: Vec<Option<Outcome>> = vec![None; argvs.len()];
        // The k-th response is due k timeouts after the start: each request gets the
        // timeout on average, and an implementation that answers at the end still can.
        let start = Instant::now();
        let mut received: u32 = 0;
        let mut timed_out = false;
        loop {
            received = received.saturating_add(1);
            let deadline = start.checked_add(self.timeout.saturating_mul(received));
            match recv_until(&lines, deadline) {
                Ok(line) => {
                    if let Some((k, outcome)) = batch_response(&line, first, argvs.len()) {
                        if let Some(slot) = results.get_mut(k) {
                            *slot = Some(outcome);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
            }
        }
        let status = if timed_out {
            let _ = child.kill();
            let _ = child.wait();
            None
        } else {
            wait_until(&mut child, self.deadline(1))
        };
        let missing = match status {
            None => format!(
                "batch timed out (no response within {} s per request)",
                self.timeout.as_secs()
            ),
            Some(s) if s.success() => "no batch response".to_string(),
            Some(s) => {
                let err = recv_until(&err_rx, self.deadline(1)).unwrap_or_default();
                format!("batch {}", describe(s, &err))
            }
        };
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Outcome::Internal(missing.clone())))
            .collect())
    }

    /// Writes the vector's files as `<n>-<name>` and returns its arguments.
    fn materialise(&self, n: usize, v: &Vector) -> Result<Vec<OsString>, CliError> {
        let mut paths = Vec::with_capacity(v.files.len());
        for (name, data) in &v.files {
            let path = self.dir.join(format!("{n}-{name}"));
            fs::write(&path, data).map_err(|e| CliError::io(format!("cannot write {}", path.display()), &e))?;
            paths.push((*name, path));
        }
        Ok(v.argv
            .iter()
            .map(|a| match a {
                Arg::Text(t) => OsString::from(t),
                Arg::File(name) => paths
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| p.clone().into_os_string())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Calls the implementation for every vector, in order.
    fn run_all(&self, vectors: &[&Vector], batch: bool) -> Result<Vec<Outcome>, CliError> {
        let mut out = Vec::with_capacity(vectors.len());
        let mut first = 0usize;
        for chunk in vectors.chunks(CHUNK) {
            let mut argvs = Vec::with_capacity(chunk.len());
            for (k, v) in chunk.iter().enumerate() {
                argvs.push(self.materialise(first.saturating_add(k), v)?);
            }
            let texts: Option<Vec<Vec<String>>> = argvs
                .iter()
                .map(|a| a.iter().map(|s| s.to_str().map(str::to_string)).collect())
                .collect();
            match texts {
                // A batch request is JSON text: paths that are not UTF-8 go one by one.
                Some(texts) if batch => out.extend(self.call_batch(first, &texts)?),
                _ => {
                    for a in &argvs {
                        out.push(self.call_one(a)?);
                    }
                }
            }
            first = first.saturating_add(chunk.len());
        }
        Ok(out)
    }
}

/// A `batch` response line: the request's position in the chunk and its outcome.
fn batch_response(line: &[u8], first: usize, len: usize) -> Option<(usize, Outcome)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let obj = v.as_object()?;
    let k = usize::try_from(obj.get("id")?.as_u64()?).ok()?.checked_sub(first)?;
    if k >= len {
        return None;
    }
    let outcome = match (obj.get("output"), obj.get("internal_error")) {
        (Some(o), _) => Outcome::Output(o.clone()),
        (None, Some(Value::String(e))) => Outcome::Internal(e.clone()),
        (None, Some(e)) => Outcome::Internal(e.to_string()),
        (None, None) => Outcome::Internal("a batch response with neither output nor internal_error".into()),
    };
    Some((k, outcome))
}

/// What `capabilities` said.
#[derive(Debug)]
struct Capabilities {
    raw: Value,
    levels: Vec<Level>,
    batch: bool,
}

fn capabilities(runner: &Runner<'_>) -> Result<Capabilities, CliError> {
    let raw = match runner.call_one(&["capabilities".into()])? {
        Outcome::Output(v) => v,
        Outcome::Internal(why) => {
            return Err(CliError::usage(format!(
                "{} does not answer capabilities: {}",
                Safe(runner.shown),
                Safe(&why)
            )))
        }
    };
    if raw.get("protocol").and_then(Value::as_str) != Some(PROTOCOL) {
        return Err(CliError::usage(format!(
            "{} does not speak {PROTOCOL}: capabilities gave {}",
            Safe(runner.shown),
            Safe(&raw.to_string())
        )));
    }
    let strings = |name: &str| -> Vec<String> {
        raw.get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let levels = strings("levels").iter().filter_map(|s| Level::parse(s)).collect();
    let batch = strings("commands").iter().any(|c| c == "batch");
    Ok(Capabilities { raw, levels, batch })
}

// ---------------------------------------------------------------- reporting

/// A vector's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum VectorStatus {
    Pass,
    Fail,
    Xfail,
    Xpass,
    Skip,
}

impl VectorStatus {
    fn name(self) -> &'static str {
        match self {
            VectorStatus::Pass => "PASS",
            VectorStatus::Fail => "FAIL",
            VectorStatus::Xfail => "XFAIL",
            VectorStatus::Xpass => "XPASS",
            VectorStatus::Skip => "SKIP",
        }
    }
}

#[derive(Debug, Serialize)]
struct VectorResult {
    id: String,
    level: Level,
    status: VectorStatus,
    /// Why it failed (expected and got), passed unexpectedly, or was skipped.
    reason: Option<String>,
}

/// Per-level counts.
#[derive(Debug, Default, Serialize)]
struct Counts {
    pass: u64,
    fail: u64,
    xfail: u64,
    xpass: u64,
    skip: u64,
    total: u64,
}

impl Counts {
    fn add(&mut self, s: VectorStatus) {
        let n = match s {
            VectorStatus::Pass => &mut self.pass,
            VectorStatus::Fail => &mut self.fail,
            VectorStatus::Xfail => &mut self.xfail,
            VectorStatus::Xpass => &mut self.xpass,
            VectorStatus::Skip => &mut self.skip,
        };
        *n = n.saturating_add(1);
        self.total = self.total.saturating_add(1);
    }
}

/// The `--json` report (field names are stable: README.md).
#[derive(Debug, Serialize)]
struct Report<'a> {
    protocol: &'static str,
    implementation: &'a str,
    capabilities: &'a Value,
    vectors_dir: String,
    batch: bool,
    ok: bool,
    passed: u64,
    failed: u64,
    skipped: u64,
    levels: BTreeMap<&'static str, Counts>,
    unknown_expected_failures: Vec<String>,
    vectors: Vec<VectorResult>,
}

pub(crate) fn run(cfg: &ConformConfig) -> Result<Status, CliError> {
    let dir = match &cfg.vectors {
        Some(d) => d.clone(),
        None => default_vectors()?,
    };
    let vectors = load_vectors(&dir)?;
    let xfail = match &cfg.expected_failures {
        Some(p) => read_expected_failures(p)?,
        None => BTreeSet::new(),
    };
    let known: HashSet<&str> = vectors.iter().map(|v| v.id.as_str()).collect();
    let unknown: Vec<String> = xfail.iter().filter(|x| !known.contains(x.as_str())).cloned().collect();

    let tmp = TempDir::new()?;
    let runner = Runner {
        command: &cfg.command,
        shown: &cfg.implementation,
        timeout: cfg.timeout,
        dir: &tmp.0,
    };
    let caps = capabilities(&runner)?;
    let asked: Vec<&Vector> = vectors.iter().filter(|v| cfg.levels.contains(&v.level)).collect();
    let (selected, skipped): (Vec<&Vector>, Vec<&Vector>) =
        asked.into_iter().partition(|v| caps.levels.contains(&v.level));
    let batch = cfg.batch && caps.batch;
    let outputs = runner.run_all(&selected, batch)?;
    drop(tmp);

    let mut results = Vec::with_capacity(selected.len().saturating_add(skipped.len()));
    for (v, got) in selected.iter().zip(&outputs) {
        let listed = xfail.contains(&v.id);
        let (status, reason) = match (compare(v, got), listed) {
            (Ok(_), false) => (VectorStatus::Pass, None),
            (Ok(have), true) => (
                VectorStatus::Xpass,
                Some(format!("listed as an expected failure, but passed: got {have}")),
            ),
            (Err(why), false) => (VectorStatus::Fail, Some(why)),
            (Err(why), true) => (VectorStatus::Xfail, Some(why)),
        };
        results.push(VectorResult {
            id: v.id.clone(),
            level: v.level,
            status,
            reason,
        });
    }
    for v in &skipped {
        results.push(VectorResult {
            id: v.id.clone(),
            level: v.level,
            status: VectorStatus::Skip,
            reason: Some("level not claimed".into()),
        });
    }

    let mut levels: BTreeMap<&'static str, Counts> = BTreeMap::new();
    for r in &results {
        levels.entry(r.level.name()).or_default().add(r.status);
    }
    let sum = |f: fn(&Counts) -> u64| levels.values().map(f).fold(0u64, u64::saturating_add);
    let passed = sum(|c| c.pass);
    let failed = sum(|c| c.fail.saturating_add(c.xpass));
    let skipped_n = sum(|c| c.skip);
    let ok = failed == 0;

    let mut out = Out::new();
    if cfg.json {
        out.json(&Report {
            protocol: PROTOCOL,
            implementation: &cfg.implementation,
            capabilities: &caps.raw,
            vectors_dir: dir.display().to_string(),
            batch,
            ok,
            passed,
            failed,
            skipped: skipped_n,
            levels,
            unknown_expected_failures: unknown,
            vectors: results,
        })?;
    } else {
        for r in &results {
            if r.status == VectorStatus::Pass && !cfg.verbose {
                continue;
            }
            let reason = match (&r.reason, r.status) {
                (Some(why), s) if s != VectorStatus::Skip => format!(": {}", Safe(why)),
                _ => String::new(),
            };
            outln!(out, "{:<5} {} {}{reason}", r.status.name(), r.level.name(), Safe(&r.id));
        }
        for (name, c) in &levels {
            outln!(
                out,
                "{name}: {} passed, {} failed, {} expected failures, {} unexpected passes, {} skipped (of {})",
                c.pass,
                c.fail,
                c.xfail,
                c.xpass,
                c.skip,
                c.total
            );
        }
        for x in &unknown {
            outln!(out, "note: expected failure {} names no vector", Safe(x));
        }
        let skipped_text = if skipped_n > 0 {
            format!(", {skipped_n} skipped")
        } else {
            String::new()
        };
        outln!(out, "conform: {passed} passed, {failed} failed{skipped_text}");
    }
    out.finish()?;
    Ok(if ok { Status::Success } else { Status::Failed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(kind: Kind, expect: Value) -> Vector {
        let Value::Object(expect) = expect else { panic!() };
        Vector {
            id: "records/x".into(),
            level: Level::L1,
            argv: Vec::new(),
            files: Vec::new(),
            want: wanted("x", kind, &expect).unwrap(),
        }
    }

    #[test]
    fn compares_only_the_named_members() {
        let v = vector(
            Kind::Records,
            json!({"result": "accept", "count": 10, "root": "AB01", "rule": 5}),
        );
        let got = |v: Value| Outcome::Output(v);
        assert!(compare(
            &v,
            &got(json!({"result": "accept", "count": 10, "root": "ab01", "x": 1}))
        )
        .is_ok());
        assert!(compare(&v, &got(json!({"result": "accept", "count": 10.0, "root": "ab01"}))).is_ok());
        assert_eq!(
            compare(&v, &got(json!({"result": "accept", "count": 0, "root": "00"}))).unwrap_err(),
            r#"expected {"count": 10, "result": "accept", "root": "ab01"}, got {"count": 0, "result": "accept", "root": "00"}"#
        );
        // Uppercase hex from the implementation is not the lowercase the protocol asks for.
        assert!(compare(&v, &got(json!({"result": "accept", "count": 10, "root": "AB01"}))).is_err());
        assert!(compare(&v, &got(json!({"result": "accept", "count": true, "root": "ab01"}))).is_err());
        assert_eq!(
            compare(&v, &got(json!([1]))).unwrap_err(),
            "output is not a JSON object"
        );
        assert_eq!(
            compare(&v, &Outcome::Internal("exit status 2".into())).unwrap_err(),
            "internal failure: exit status 2"
        );

        let v = vector(
            Kind::Pack,
            json!({"result": "reject", "error": "PACK_BLOB_MISSING", "index": 3}),
        );
        assert!(compare(&v, &got(json!({"result": "reject", "error": "PACK_BLOB_MISSING"}))).is_ok());
        assert_eq!(
            compare(&v, &got(json!({"result": "accept"}))).unwrap_err(),
            r#"expected {"error": "PACK_BLOB_MISSING", "result": "reject"}, got {"error": null, "result": "accept"}"#
        );
    }

    #[test]
    fn expect_must_name_the_compared_members() {
        let Value::Object(e) = json!({"result": "reject", "error": "SEQUENCE_GAP"}) else {
            panic!()
        };
        assert!(wanted("x", Kind::Records, &e).is_err());
        assert!(wanted("x", Kind::Pack, &e).is_ok());
        let Value::Object(e) = json!({"count": 1}) else {
            panic!()
        };
        assert!(wanted("x", Kind::Signature, &e).is_err());
    }

    #[test]
    fn byte_string_heads_are_shortest() {
        for (n, head) in [
            (0usize, vec![0x40]),
            (23, vec![0x57]),
            (24, vec![0x58, 24]),
            (255, vec![0x58, 0xff]),
            (256, vec![0x59, 1, 0]),
            (65_536, vec![0x5a, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            cbor_bstr(&mut out, &vec![7u8; n]);
            assert_eq!(out[..head.len()], head[..], "{n}");
            assert_eq!(out.len(), head.len() + n);
        }
    }

    #[test]
    fn trust_roots_match_the_reference_runner() {
        let a = "94B104BBE45624075574BC7DE23746C99E911EAE36D7ABDB0C0723785392F7EA".to_string();
        let text = String::from_utf8(trust_root("x", &[a]).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n  \"format\": \"helm-trust-root/1\",\n  \"anchors\": [\n    {\n      \"name\": \"anchor-0\",\n      \
             \"key\": \"ed25519:94b104bbe45624075574bc7de23746c99e911eae36d7abdb0c0723785392f7ea\"\n    }\n  ]\n}\n"
        );
        assert!(trust_root("x", &["abcd".into()]).is_err());
        assert!(trust_root("x", &["zz".repeat(32)]).is_err());
    }

    #[test]
    fn batch_responses() {
        let r = batch_response(br#"{"id": 12, "output": {"result": "accept"}}"#, 10, 5).unwrap();
        assert!(matches!(r, (2, Outcome::Output(_))));
        let r = batch_response(br#"{"id": 10, "internal_error": "cannot read"}"#, 10, 5).unwrap();
        assert!(matches!(r, (0, Outcome::Internal(ref e)) if e == "cannot read"));
        assert!(batch_response(br#"{"id": 15, "output": {}}"#, 10, 5).is_none());
        assert!(batch_response(br#"{"id": 9, "output": {}}"#, 10, 5).is_none());
        assert!(batch_response(br#"{"id": "10", "output": {}}"#, 10, 5).is_none());
        assert!(batch_response(b"not json", 10, 5).is_none());
    }

    #[test]
    fn describes_exits() {
        let s = ExitStatus::from_raw(2 << 8);
        assert_eq!(describe(s, b"  boom\n"), "exit status 2: boom");
        assert_eq!(describe(ExitStatus::from_raw(9), b""), "killed by signal 9");
        let long = "x".repeat(1000);
        assert_eq!(
            describe(s, long.as_bytes()).len(),
            "exit status 2: ".len() + STDERR_QUOTE
        );
    }
}
