//! `helm-airgap replay PACK --trust-root FILE [--json]`: verifies the pack, then
//! re-executes every sandboxed EFFECT (executor `wasm:sha256:...`) from the pack's blobs
//! and checks that its output bytes, fuel and ending match (spec/sandbox.md §7).
//!
//! Exit 0: the pack verifies and every replayable EFFECT matched; 1: the pack does not
//! verify or an EFFECT did not match (named by record index and hash); 2: usage or I/O.
//! Effects that cannot be judged (stopped by the wall clock, another engine version,
//! a withheld blob) are reported and do not fail the run.

use std::path::PathBuf;

use clap::Args;
use helm_sandbox::{
    decode_ext, parse_executor, replay_effect, RecordedEffect, ReplayError, ReplayInputs, ReplayOptions, Sandbox,
    SandboxConfig, METER_FUEL,
};
use serde::Serialize;
use verify_core::{Body, Hash, Record};

use crate::files::Input;
use crate::output::{Out, Safe};
use crate::status::{CliError, Status};
use crate::trust_root::TrustRoot;

/// Length of the salt in front of a committed value.
const SALT_LEN: usize = 16;

/// `replay`.
#[derive(Clone, Debug, Args)]
pub(crate) struct ReplayEffectsArgs {
    /// The pack: .tar, .tar.zst or .tar.gz, or - for standard input
    #[arg(value_name = "PACK")]
    pack: PathBuf,
    /// Trust-root file (JSON, helm-trust-root/1) naming the anchors to trust
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// Wall-clock seconds each re-execution may take (at least the recorded limit)
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// The verdict on one sandboxed EFFECT.
#[derive(Debug, Serialize)]
struct EffectVerdict {
    index: usize,
    hash: String,
    tool: String,
    module: String,
    /// `match`, `mismatch`, `not-replayable`, `not-judged`.
    verdict: &'static str,
    detail: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct ReplayReport {
    effects: usize,
    matched: usize,
    mismatched: usize,
    not_judged: usize,
    results: Vec<EffectVerdict>,
}

fn content(blobs: &std::collections::BTreeMap<Hash, Vec<u8>>, name: &Hash) -> Option<Vec<u8>> {
    blobs.get(name).and_then(|b| b.get(SALT_LEN..)).map(<[u8]>::to_vec)
}

fn judge(
    sandbox: &Sandbox,
    r: &Record<'_>,
    blobs: &std::collections::BTreeMap<Hash, Vec<u8>>,
    options: &ReplayOptions,
) -> (&'static str, Option<String>) {
    let Body::Effect {
        status,
        args,
        output,
        executor,
        meters,
        ..
    } = r.body
    else {
        return ("not-judged", Some("not an EFFECT".into()));
    };
    let Some(ext) = r.ext else {
        return ("mismatch", Some("a sandboxed EFFECT without sandbox evidence".into()));
    };
    let evidence = match decode_ext(ext) {
        Ok(e) => e,
        Err(e) => return ("mismatch", Some(format!("sandbox evidence does not decode: {e}"))),
    };
    // The module: the blob named by its SHA-256 (the kernel's ATTESTATION
    // `sandbox-module` references it), or the salted `module_blob`.
    let module = blobs
        .get(&evidence.module)
        .cloned()
        .or_else(|| evidence.module_blob.as_ref().and_then(|b| content(blobs, b)));
    let Some(module) = module else {
        return ("not-judged", Some("the module blob is withheld or absent".into()));
    };
    let (Some(input), Some(recorded_output)) = (content(blobs, &args), content(blobs, &output)) else {
        return ("not-judged", Some("the input or output blob is withheld".into()));
    };
    if !evidence.files.is_empty() {
        return (
            "not-judged",
            Some("runs with virtual files are not replayed by this version".into()),
        );
    }
    let recorded = RecordedEffect {
        evidence: &evidence,
        status,
        executor,
        fuel_meter: meters.and_then(|m| m.get(METER_FUEL)),
        output: &recorded_output,
    };
    let inputs = ReplayInputs {
        module: &module,
        input: &input,
        files: &[],
    };
    match replay_effect(sandbox, &recorded, &inputs, options) {
        Ok(_) => ("match", None),
        Err(ReplayError::Mismatch(diffs)) => (
            "mismatch",
            Some(diffs.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join("; ")),
        ),
        Err(ReplayError::NotReplayable) => (
            "not-replayable",
            Some("stopped by the wall clock: time is not deterministic".into()),
        ),
        Err(e) => ("not-judged", Some(e.to_string())),
    }
}

/// Runs `replay`.
pub(crate) fn run(a: &ReplayEffectsArgs) -> Result<Status, CliError> {
    let anchors = TrustRoot::load(&a.trust_root)?.keys();
    let pack = Input::from_arg(a.pack.clone()).read_all()?;
    let (records, blobs) = crate::replay::verified_contents(&pack, &anchors)?;
    let sandbox = Sandbox::new(SandboxConfig::default()).map_err(|e| CliError::usage(format!("sandbox: {e}")))?;
    let options = ReplayOptions {
        wall_ms: a.timeout.saturating_mul(1000),
    };
    let mut report = ReplayReport::default();
    for (i, bytes) in records.iter().enumerate() {
        let r = Record::decode(bytes).map_err(|e| CliError::invalid(format!("record {i}: {}", e.name())))?;
        let Body::Effect { tool, executor, .. } = r.body else {
            continue;
        };
        let Some(module) = parse_executor(executor) else {
            continue;
        };
        report.effects = report.effects.saturating_add(1);
        let (verdict, detail) = judge(&sandbox, &r, &blobs, &options);
        match verdict {
            "match" => report.matched = report.matched.saturating_add(1),
            "mismatch" => report.mismatched = report.mismatched.saturating_add(1),
            _ => report.not_judged = report.not_judged.saturating_add(1),
        }
        report.results.push(EffectVerdict {
            index: i,
            hash: hex::encode(r.hash),
            tool: tool.to_owned(),
            module: hex::encode(module),
            verdict,
            detail,
        });
    }
    let mut out = Out::new();
    if a.json {
        out.json(&report)?;
    } else {
        out.line(format_args!("pack          verified"));
        out.line(format_args!(
            "sandboxed     {} effects: {} matched, {} MISMATCHED, {} not judged",
            report.effects, report.matched, report.mismatched, report.not_judged
        ));
        for v in &report.results {
            if v.verdict != "match" {
                out.line(format_args!(
                    "{} record #{} {} ({}): {}",
                    v.verdict.to_uppercase(),
                    v.index,
                    v.hash,
                    Safe(&v.tool),
                    Safe(v.detail.as_deref().unwrap_or(""))
                ));
            }
        }
        out.line(format_args!(
            "result        {}",
            if report.mismatched == 0 {
                "every replayable effect matched"
            } else {
                "EFFECTS DID NOT MATCH"
            }
        ));
    }
    out.finish()?;
    Ok(if report.mismatched == 0 {
        Status::Success
    } else {
        Status::Failed
    })
}
