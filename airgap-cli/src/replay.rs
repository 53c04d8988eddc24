//! `helm-airgap replay-decisions`: verify a pack, then recompute every DECISION from the
//! policy bundles it carries and the records before it (spec/guardian.md §9), and name
//! every DECISION the policy would not have produced — even one re-signed with a valid
//! kernel key.
//!
//! Exit status: 0 every DECISION reproduced; 1 the pack does not verify, or a DECISION
//! was not reproduced (or could not be: bundle or arguments missing); 2 usage or I/O.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use guardian::{replay, Limits, ReplayReport};
use pack_format::tar::{self, BLOCK};
use pack_format::{record_len, transport, verify_reader, NoObserver, VerifyOptions};
use verify_core::{Hash, Record};

use crate::encoding::hex32;
use crate::files::Input;
use crate::output::{Out, Safe};
use crate::status::{CliError, Status};
use crate::trust_root::TrustRoot;

/// `replay-decisions`.
#[derive(Clone, Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The pack: .tar, .tar.zst or .tar.gz, or - for standard input
    #[arg(value_name = "PACK")]
    pack: PathBuf,
    /// Trust-root file (JSON, helm-trust-root/1) naming the anchors to trust
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// Records (as bytes, in order) and blobs (by name).
type Contents = (Vec<Vec<u8>>, BTreeMap<Hash, Vec<u8>>);

/// Records and blobs of an uncompressed, already verified pack.
pub(crate) fn contents(tar_bytes: &[u8]) -> Result<Contents, String> {
    let mut records = Vec::new();
    let mut blobs = BTreeMap::new();
    let mut off = 0usize;
    loop {
        let header: &[u8; BLOCK] = tar_bytes
            .get(off..off.saturating_add(BLOCK))
            .and_then(|h| h.try_into().ok())
            .ok_or("the archive ends without its end blocks")?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let h = tar::decode(header).map_err(|e| format!("tar header: {e:?}"))?;
        let size = usize::try_from(h.size).map_err(|_| "entry too large")?;
        let start = off.saturating_add(BLOCK);
        let data = tar_bytes
            .get(start..start.saturating_add(size))
            .ok_or("the archive ends inside an entry")?;
        let name = h.name();
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            blobs.insert(hex32(hex)?, data.to_vec());
        } else if name.starts_with("records/") {
            let mut pos = 0usize;
            while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
                let len = match record_len(rest) {
                    Ok(Some(len)) if len <= rest.len() => len,
                    _ => return Err(format!("bad record framing in {name}")),
                };
                records.push(rest.get(..len).unwrap_or(&[]).to_vec());
                pos = pos.saturating_add(len);
            }
        }
        let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        off = start.saturating_add(padded);
    }
    Ok((records, blobs))
}

/// Verifies `pack` (any wrapper) against `anchors` and replays its decisions.
pub(crate) fn replay_pack(pack: &[u8], anchors: &[[u8; 32]]) -> Result<ReplayReport, CliError> {
    let (records, blobs) = verified_contents(pack, anchors)?;
    let decoded = records
        .iter()
        .map(|r| Record::decode(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::invalid(format!("a record does not decode: {}", e.name())))?;
    Ok(replay(&decoded, &blobs, Limits::default()))
}

/// Verifies `pack` (any wrapper) against `anchors`; then its records and blobs.
pub(crate) fn verified_contents(pack: &[u8], anchors: &[[u8; 32]]) -> Result<Contents, CliError> {
    let opts = VerifyOptions::default();
    verify_reader(pack, anchors, &opts, &mut NoObserver)
        .map_err(|e| CliError::invalid(format!("the pack does not verify: {e}")))?;
    let (_, mut reader) =
        transport::open(pack, opts.limits).map_err(|e| CliError::invalid(format!("cannot open the pack: {e}")))?;
    let mut tar_bytes = Vec::new();
    reader
        .read_to_end(&mut tar_bytes)
        .map_err(|e| CliError::invalid(format!("cannot decompress the pack: {e}")))?;
    contents(&tar_bytes).map_err(CliError::invalid)
}

/// Runs `replay-decisions`.
pub(crate) fn run(a: &ReplayArgs) -> Result<Status, CliError> {
    let anchors = TrustRoot::load(&a.trust_root)?.keys();
    let pack = Input::from_arg(a.pack.clone()).read_all()?;
    let report = replay_pack(&pack, &anchors)?;
    let mut out = Out::new();
    if a.json {
        out.json(&report)?;
    } else {
        out.line(format_args!("bundles       {}", report.bundles.len()));
        for b in &report.bundles {
            out.line(format_args!("  {b}"));
        }
        out.line(format_args!(
            "decisions     {} replayed, {} reproduced, {} kernel denials not recomputed",
            report.decisions, report.reproduced, report.kernel_denials
        ));
        for f in &report.findings {
            out.line(format_args!(
                "NOT REPRODUCED record #{} {}: {} (recorded {}, policy gives {})",
                f.index,
                f.hash,
                Safe(&f.problem),
                f.recorded,
                f.recomputed.as_deref().unwrap_or("nothing")
            ));
        }
        out.line(format_args!(
            "result        {}",
            if report.ok() {
                "every decision reproduced"
            } else {
                "DECISIONS NOT REPRODUCED"
            }
        ));
    }
    out.finish()?;
    Ok(if report.ok() { Status::Success } else { Status::Failed })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use guardian::{Bundle, Verdict};
    use helm_test_vectors::{test_key, Chain};
    use pack_format::{write_pack, PackContents};
    use verify_core::{body, commitment, CallKind, Escalation, Hash, Kind, TrustAction};

    use super::replay_pack;

    const POLICY: &str = r#"
name = "refunds"
[[rule]]
id = "small"
tools = ["refund"]
verdict = "allow"
require = ["args.amount <= 100"]
[[rule]]
id = "large"
tools = ["refund"]
verdict = "escalate"
require = ["args.amount > 100"]
escalation = { role = "approver", quorum = 1, ttl_ms = 60000 }
"#;

    /// A pack with a POLICY record naming the bundle (carried as a blob) and three
    /// refunds; with `tamper`, the last DECISION says ALLOW instead of ESCALATE and is
    /// signed with the (valid) kernel key all the same.
    fn pack(tamper: bool) -> (Vec<u8>, [u8; 32]) {
        let root = test_key("root-1");
        let kernel = test_key("kernel-1");
        let bundle = Bundle::from_toml(POLICY).unwrap();
        let h = bundle.hash();
        let mut chain = Chain::new();
        let mut blobs: BTreeMap<Hash, Vec<u8>> = BTreeMap::new();
        blobs.insert(h, bundle.canonical().to_vec());
        let trust = chain.push(
            &root,
            Kind::TrustEvent,
            body::trust_event(
                TrustAction::Publish,
                &kernel.public_key(),
                Some(&["kernel"]),
                None,
                None,
            ),
            &[],
            "",
        );
        let p = chain.push(&kernel, Kind::Policy, body::policy(&h, Some("refunds")), &[trust], "");
        for (n, amount) in [50u64, 80, 5000].into_iter().enumerate() {
            let json = format!("{{\"amount\":{amount}}}");
            let salt = [n as u8; 16];
            let a = commitment(&salt, json.as_bytes());
            let mut content = salt.to_vec();
            content.extend_from_slice(json.as_bytes());
            blobs.insert(a, content);
            let time = chain.time;
            let i = chain.push(
                &kernel,
                Kind::Intent,
                body::intent("refund", CallKind::Json, &a),
                &[p],
                "s1",
            );
            let d = if amount > 100 && !tamper {
                let esc = Escalation {
                    role: "approver",
                    quorum: 1,
                    not_before: time,
                    expires: time + 60000,
                };
                body::decision(Verdict::Escalate, "POLICY_ESCALATE", &h, Some(&esc))
            } else {
                body::decision(Verdict::Allow, "POLICY_ALLOW", &h, None)
            };
            chain.push(&kernel, Kind::Decision, d, &[i, p], "s1");
        }
        let contents = PackContents {
            records: chain.records.iter().map(Vec::as_slice).collect(),
            blobs: blobs.iter().map(|(k, v)| (*k, v.as_slice())).collect(),
            withhold: Default::default(),
        };
        let bytes = write_pack(&contents, kernel.public_key(), |m| kernel.sign(m)).unwrap();
        (bytes, root.public_key())
    }

    #[test]
    fn honest_pack_replays() {
        let (bytes, root) = pack(false);
        let r = replay_pack(&bytes, &[root]).unwrap();
        assert_eq!((r.decisions, r.reproduced, r.bundles.len()), (3, 3, 1), "{r:?}");
    }

    #[test]
    fn altered_and_resigned_decision_is_named() {
        let (bytes, root) = pack(true);
        // The pack verifies: every record is signed by a trusted kernel key...
        pack_format::verify_reader(&bytes[..], &[root], &Default::default(), &mut pack_format::NoObserver).unwrap();
        // ...but the policy would have escalated the last refund.
        let r = replay_pack(&bytes, &[root]).unwrap();
        assert_eq!((r.decisions, r.reproduced), (3, 2));
        let f = &r.findings[0];
        assert_eq!(f.index, 7);
        assert_eq!(f.recorded, "ALLOW POLICY_ALLOW");
        assert_eq!(f.recomputed.as_deref(), Some("ESCALATE POLICY_ESCALATE"));
    }
}
