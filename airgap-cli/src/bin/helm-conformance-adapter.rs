//! `helm-conformance-adapter`: the `helm-conformance/1` protocol (spec/conformance.md) on
//! top of `verify-core` and `pack-format`, so that a conformance runner can test the Rust
//! reference verifier like any other implementation.
//!
//! ```sh
//! cargo build --release -p airgap-cli
//! target/release/helm-airgap conform --implementation target/release/helm-conformance-adapter
//! python3 implementations/python/run_conformance.py \
//!     --implementation target/release/helm-conformance-adapter
//! ```
//!
//! Commands: `capabilities`, `verify-records --anchors F --records F`,
//! `verify-pack --trust-root F --pack F`, `verify-signature --key HEX --signature HEX
//! --message-file F`, `batch [--input F]` (standard input without `--input` or with `-`).
//! Output: one JSON object on standard output (`batch`: one line per request); exit status
//! 0 whenever that was written, whatever the verdict, 2 for an internal failure (bad
//! arguments, unreadable files, an unusable trust root, a write error).
//!
//! Only the verifier crates and JSON: no network code, like `helm-airgap`.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use serde_json::{json, Value};
use verify_core::{Capacity, OwnedTables, Verifier};

const PROTOCOL: &str = "helm-conformance/1";
const COMMANDS: [&str; 5] = [
    "verify-records",
    "verify-pack",
    "verify-signature",
    "capabilities",
    "batch",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("batch") {
        batch(&args)
    } else {
        run(&args).and_then(|out| {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{out}")
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("writing to standard output: {e}"))
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helm-conformance-adapter: internal failure: {e}");
            ExitCode::from(2)
        }
    }
}

/// `batch [--input FILE]`: one request per line, `{"id": .., "argv": [..]}`; one
/// response per line, `{"id": .., "output": {..}}` or `{"id": .., "internal_error": ".."}`.
fn batch(args: &[String]) -> Result<(), String> {
    let input: Box<dyn BufRead> = match option(args, "--input") {
        Some(path) if path != "-" => Box::new(io::BufReader::new(
            std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?,
        )),
        _ => Box::new(io::BufReader::new(io::stdin())),
    };
    let mut out = io::stdout().lock();
    for line in input.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Value = serde_json::from_str(&line).map_err(|e| format!("batch line: {e}"))?;
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let argv: Option<Vec<String>> = req
            .get("argv")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect());
        let resp = match argv {
            None => json!({"id": id, "internal_error": "argv is not an array of strings"}),
            Some(argv) if argv.first().map(String::as_str) == Some("batch") => {
                json!({"id": id, "internal_error": "batch cannot be nested"})
            }
            Some(argv) => match run(&argv) {
                Ok(o) => json!({"id": id, "output": o}),
                Err(e) => json!({"id": id, "internal_error": e}),
            },
        };
        writeln!(out, "{resp}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The value of `--name VALUE` or `--name=VALUE`.
fn option(args: &[String], name: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

fn required(args: &[String], name: &str) -> Result<String, String> {
    option(args, name).ok_or_else(|| format!("missing {name}"))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn run(args: &[String]) -> Result<Value, String> {
    match args.first().map(String::as_str) {
        Some("capabilities") => Ok(json!({
            "protocol": PROTOCOL,
            "implementation": concat!("helm-rs verify-core + pack-format ", env!("CARGO_PKG_VERSION")),
            "levels": ["L1", "L2", "L3"],
            "commands": COMMANDS,
        })),
        Some("verify-records") => {
            let anchors = trust_root(&read(&required(args, "--anchors")?)?)?;
            let records = record_sequence(&read(&required(args, "--records")?)?)?;
            verify_records(&anchors, &records)
        }
        Some("verify-pack") => {
            let anchors = trust_root(&read(&required(args, "--trust-root")?)?)?;
            let pack = read(&required(args, "--pack")?)?;
            verify_pack(&anchors, &pack)
        }
        Some("verify-signature") => {
            let key = hex::decode(required(args, "--key")?).map_err(|e| format!("--key: {e}"))?;
            let sig = hex::decode(required(args, "--signature")?).map_err(|e| format!("--signature: {e}"))?;
            let msg = read(&required(args, "--message-file")?)?;
            // A key or signature of the wrong length is a reject (ed25519.md §2).
            let ok = match (
                <[u8; 32]>::try_from(key.as_slice()),
                <[u8; 64]>::try_from(sig.as_slice()),
            ) {
                (Ok(k), Ok(s)) => verify_core::verify_signature(&k, &msg, &s),
                _ => false,
            };
            Ok(json!({"result": if ok { "accept" } else { "reject" }}))
        }
        Some(other) => Err(format!("unknown command {other}")),
        None => Err("no command".into()),
    }
}

/// A trust-root file (spec/evidencepack.md §8), strictly. Key admission (ed25519.md §5)
/// is the verifier's setup check.
fn trust_root(bytes: &[u8]) -> Result<Vec<[u8; 32]>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("trust root: {e}"))?;
    let obj = doc.as_object().ok_or("trust root: not an object")?;
    if obj.len() != 2 || obj.get("format").and_then(Value::as_str) != Some("helm-trust-root/1") {
        return Err("trust root: members must be exactly format (helm-trust-root/1) and anchors".into());
    }
    let anchors = obj
        .get("anchors")
        .and_then(Value::as_array)
        .ok_or("trust root: anchors")?;
    if anchors.is_empty() {
        return Err("trust root: no anchors".into());
    }
    let mut out = Vec::new();
    for a in anchors {
        let a = a.as_object().ok_or("trust root: anchor is not an object")?;
        if a.len() != 2 || !a.get("name").is_some_and(Value::is_string) {
            return Err("trust root: an anchor has exactly name and key".into());
        }
        let key = a
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| k.strip_prefix("ed25519:"))
            .filter(|k| k.len() == 64 && k.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
            .ok_or("trust root: key is not ed25519:<64 lowercase hex>")?;
        let key = hex::decode(key).map_err(|e| e.to_string())?;
        out.push(<[u8; 32]>::try_from(key.as_slice()).map_err(|_| "trust root: key length")?);
    }
    Ok(out)
}

/// RECORDS.cbor: a CBOR sequence of definite-length byte strings, one per record.
fn record_sequence(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&first, tail)) = rest.split_first() {
        if first & 0xe0 != 0x40 {
            return Err("RECORDS file: an item is not a byte string".into());
        }
        let (len, tail) = match first & 0x1f {
            ai @ 0..=23 => (u64::from(ai), tail),
            ai @ 24..=27 => {
                let n = match ai {
                    24 => 1,
                    25 => 2,
                    26 => 4,
                    _ => 8,
                };
                let (arg, tail) = tail.split_at_checked(n).ok_or("RECORDS file: truncated head")?;
                let mut be = [0u8; 8];
                be.get_mut(8usize.saturating_sub(n)..)
                    .ok_or("RECORDS file: head")?
                    .copy_from_slice(arg);
                (u64::from_be_bytes(be), tail)
            }
            _ => return Err("RECORDS file: not a definite-length byte string".into()),
        };
        let len = usize::try_from(len).map_err(|_| "RECORDS file: length")?;
        let (record, tail) = tail
            .split_at_checked(len)
            .ok_or("RECORDS file: truncated byte string")?;
        out.push(record.to_vec());
        rest = tail;
    }
    Ok(out)
}

fn verify_records(anchors: &[[u8; 32]], records: &[Vec<u8>]) -> Result<Value, String> {
    // Tables for every record and 256 keys (spec/conformance.md §2.2).
    let mut tables = OwnedTables::new(Capacity::for_records(records.len().max(1)));
    let mut verifier = Verifier::new(anchors, tables.tables()).map_err(|e| format!("setup: {e:?}"))?;
    for r in records {
        if let Err(e) = verifier.push(r) {
            return Ok(json!({"result": "reject", "error": e.code.name(), "index": e.index}));
        }
    }
    Ok(match verifier.finish() {
        Ok(s) => json!({"result": "accept", "count": s.records, "root": hex::encode(s.root)}),
        Err(e) => json!({"result": "reject", "error": e.code.name(), "index": e.index}),
    })
}

fn verify_pack(anchors: &[[u8; 32]], pack: &[u8]) -> Result<Value, String> {
    let opts = pack_format::VerifyOptions::default();
    match pack_format::verify_reader(pack, anchors, &opts, &mut pack_format::NoObserver) {
        Ok((_, s)) => Ok(json!({
            "result": "accept",
            "records": s.verified.records,
            "root": hex::encode(s.verified.root),
        })),
        // A record failure reports the record's own code (§2.3).
        Err(pack_format::StreamError::Pack(e)) => {
            let mut out = json!({"result": "reject", "error": e.code_name()});
            if let (Some(r), Some(o)) = (&e.record, out.as_object_mut()) {
                o.insert("index".into(), json!(r.index));
            }
            Ok(out)
        }
        Err(pack_format::StreamError::Setup(e)) => Err(format!("setup: {e:?}")),
        Err(pack_format::StreamError::Io(e)) => Err(format!("I/O: {e}")),
    }
}
