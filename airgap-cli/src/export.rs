//! `helm-airgap export -o OUT (--records FILE --key KEYFILE [--blobs DIR]
//! (--trust-root FILE | --no-verify) | --sample SESSIONS [...]) [--compress W]
//! [--withhold HEX]... [--session ID] [--since T] [--until T] [--force]`
//!
//! Writes a canonical pack: the same inputs always give the same bytes. With
//! `--session`, `--since` or `--until` it writes a partial pack (spec/evidencepack.md §9):
//! the selected records with inclusion proofs to the last CHECKPOINT of the records, the
//! TRUST_EVENTs before it and the parents its DECISIONs, APPROVALs and EFFECTs need. The
//! pack is
//! verified in memory before anything is written (against `--trust-root`, or for
//! `--sample` the test root key), and written atomically. Exit 0 written, 1 the inputs
//! do not make a pack that verifies (nothing written), 2 usage or I/O error.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Cursor;
use std::path::Path;

use pack_format::transport::{compress, Wrapper};
use pack_format::{
    blob_reference, verify_reader, write_pack, write_partial_pack, NoObserver, PackContents, PackSummary, VerifyOptions,
};
use verify_core::{sha256, Hash, Record, Signer};

use crate::cli::{ExportConfig, ExportSource, SelectionConfig};
use crate::encoding::{hex32, key_string};
use crate::files::{check_absent, write_atomic, Input};
use crate::framing;
use crate::keyfile::{self, KeyFile};
use crate::output::{note, outln, Out, Safe};
use crate::report::{split_stream_error, wrapper_name, ErrorReport};
use crate::status::{CliError, Status};
use crate::trust_root::{self, Anchor, TrustRoot};

/// The seed `helm_test_vectors::test_key(name)` derives its key from.
fn test_seed(name: &str) -> [u8; 32] {
    sha256(format!("HELM TEST KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes())
}

/// What a partial export carries.
struct PartialInfo {
    /// Records carried, the checkpoint included.
    carried: usize,
    /// Of them, matching the selection.
    selected: usize,
    /// The checkpoint's position (its count): the number of records it covers.
    position: usize,
    checkpoint: Hash,
}

/// What to write, after the pack is built.
struct Built {
    bytes: Vec<u8>,
    summary: Option<PackSummary>,
    partial: Option<PartialInfo>,
}

fn build(
    records: Vec<&[u8]>,
    blobs: BTreeMap<Hash, &[u8]>,
    withhold: &[Hash],
    signer: &Signer,
    wrapper: Wrapper,
    anchors: Option<(&[[u8; 32]], &str)>,
    selection: Option<&SelectionConfig>,
) -> Result<Built, CliError> {
    let referenced: BTreeSet<Hash> = records
        .iter()
        .filter_map(|r| Record::decode(r).ok())
        .filter_map(|r| blob_reference(&r.body))
        .collect();
    for h in withhold {
        if !referenced.contains(h) {
            note!(
                "note: --withhold {} names no blob a record references; ignored",
                hex::encode(h)
            );
        }
    }
    let cannot = |e: pack_format::WriteError| CliError::invalid(format!("cannot build the pack: {e}; nothing written"));
    let withhold: BTreeSet<Hash> = withhold.iter().copied().collect();
    let (tar, partial) = match selection {
        None => {
            let contents = PackContents {
                records,
                blobs,
                withhold,
            };
            let tar = write_pack(&contents, signer.public_key(), |m| signer.sign(m)).map_err(cannot)?;
            (tar, None)
        }
        Some(sel) => {
            let p = write_partial_pack(
                &records,
                |h| blobs.get(h).copied(),
                &sel.selection(),
                &withhold,
                signer.public_key(),
                |m| signer.sign(m),
            )
            .map_err(cannot)?;
            let info = PartialInfo {
                carried: p.plan.carried.len(),
                selected: p.plan.selected,
                position: p.plan.checkpoint,
                checkpoint: p.checkpoint,
            };
            (p.bytes, Some(info))
        }
    };
    let bytes = compress(&tar, wrapper).map_err(|e| CliError::io("compressing the pack", &e))?;
    let summary = match anchors {
        None => None,
        Some((anchors, trust_file)) => {
            let r = verify_reader(Cursor::new(&bytes), anchors, &VerifyOptions::default(), &mut NoObserver);
            match r {
                Ok((_, s)) => Some(s),
                Err(e) => {
                    let e = split_stream_error(e, "the new pack")?;
                    return Err(CliError::invalid(format!(
                        "the new pack does not verify against trust root {}: {}; nothing written \
                         (--no-verify writes it anyway)",
                        Safe(trust_file),
                        ErrorReport::new(&e).one_line()
                    )));
                }
            }
        }
    };
    Ok(Built {
        bytes,
        summary,
        partial,
    })
}

fn report(out: &mut Out, cfg: &ExportConfig, built: &Built, verified_by: &str) {
    let path = cfg.out.display().to_string();
    outln!(
        out,
        "wrote {}: {} bytes, wrapper {}, sha256 {}",
        Safe(&path),
        built.bytes.len(),
        wrapper_name(cfg.wrapper),
        hex::encode(sha256(&built.bytes))
    );
    match &built.summary {
        Some(s) => {
            outln!(
                out,
                "  {} records, {} blobs present, {} withheld; producer {}",
                s.verified.records,
                s.manifest.blobs,
                s.manifest.withheld,
                key_string(&s.manifest.producer)
            );
            outln!(out, "  verified before writing against {}", Safe(verified_by));
        }
        None => outln!(out, "  NOT verified (--no-verify)"),
    }
    if let Some(p) = &built.partial {
        outln!(
            out,
            "  partial pack: {} of {} records ({} selected, the others TRUST_EVENTs and records they need), \
             proven against checkpoint {} at position {}",
            p.carried.saturating_sub(1),
            p.position,
            p.selected,
            hex::encode(p.checkpoint),
            p.position
        );
    }
}

fn sample(
    cfg: &ExportConfig,
    sessions: usize,
    trust_root_out: Option<&Path>,
    records_out: Option<&Path>,
    blobs_out: Option<&Path>,
    key_out: Option<&Path>,
) -> Result<Status, CliError> {
    for p in [trust_root_out, records_out, key_out].into_iter().flatten() {
        check_absent(p, cfg.force)?;
    }
    note!(
        "WARNING: --sample signs with the PUBLIC TEST KEYS of helm-test-vectors. Their seeds are \
         published: anyone can forge such a pack. Use it for tests and demos only; never trust \
         these keys for anything real."
    );
    let run = helm_test_vectors::sample_run(sessions, 10, 1000);
    let records: Vec<&[u8]> = run.records.iter().map(Vec::as_slice).collect();
    let blobs: BTreeMap<Hash, &[u8]> = run.blobs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let built = build(
        records,
        blobs,
        &cfg.withhold,
        &run.kernel,
        cfg.wrapper,
        Some((&run.anchors, "the test root key")),
        cfg.selection.as_ref(),
    )?;
    write_atomic(&cfg.out, &built.bytes, cfg.force, 0o644)?;
    let mut out = Out::new();
    report(&mut out, cfg, &built, "the public test root key (root-1)");
    if let Some(p) = trust_root_out {
        let anchors: Vec<Anchor> = run
            .anchors
            .iter()
            .map(|k| Anchor {
                name: "root-1 (PUBLIC TEST KEY)".into(),
                key: *k,
            })
            .collect();
        write_atomic(p, trust_root::encode(&anchors)?.as_bytes(), cfg.force, 0o644)?;
        outln!(out, "wrote {}: trust root with the public test root key", p.display());
    }
    if let Some(p) = records_out {
        write_atomic(p, &run.records.concat(), cfg.force, 0o644)?;
        outln!(
            out,
            "wrote {}: {} records as a CBOR sequence",
            p.display(),
            run.records.len()
        );
    }
    if let Some(dir) = blobs_out {
        fs::create_dir_all(dir).map_err(|e| CliError::io(format!("cannot create {}", dir.display()), &e))?;
        let mut written = 0usize;
        for (name, data) in &run.blobs {
            let p = dir.join(hex::encode(name));
            // Content-addressed: an existing file with the right content is fine.
            if fs::read(&p).is_ok_and(|existing| existing == *data) {
                continue;
            }
            write_atomic(&p, data, cfg.force, 0o644)?;
            written = written.saturating_add(1);
        }
        outln!(
            out,
            "wrote {}: {} blobs ({} new)",
            dir.display(),
            run.blobs.len(),
            written
        );
    }
    if let Some(p) = key_out {
        let key = KeyFile::from_seed(
            "kernel-1 (PUBLIC TEST KEY)".into(),
            verify_core::ROLE_KERNEL.into(),
            test_seed("kernel-1"),
        );
        if key.public != run.kernel.public_key() {
            return Err(CliError::usage(
                "internal error: the test kernel key's seed derivation changed in helm-test-vectors",
            ));
        }
        write_atomic(p, key.to_json().as_bytes(), cfg.force, 0o600)?;
        outln!(out, "wrote {}: the public test kernel key", p.display());
    }
    out.finish()?;
    Ok(Status::Success)
}

/// Reads the blobs that records reference from `dir`; notes what is ignored or missing.
fn load_blobs(dir: &Path, referenced: &BTreeSet<Hash>) -> Result<BTreeMap<Hash, Vec<u8>>, CliError> {
    let entries = fs::read_dir(dir).map_err(|e| CliError::io(format!("cannot list {}", dir.display()), &e))?;
    let mut blobs = BTreeMap::new();
    let (mut unreferenced, mut misnamed) = (0usize, 0usize);
    for entry in entries {
        let entry = entry.map_err(|e| CliError::io(format!("cannot list {}", dir.display()), &e))?;
        let path = entry.path();
        if path.is_dir() {
            misnamed = misnamed.saturating_add(1);
            continue;
        }
        let Some(name) = entry.file_name().to_str().and_then(|n| hex32(n).ok()) else {
            misnamed = misnamed.saturating_add(1);
            continue;
        };
        if !referenced.contains(&name) {
            unreferenced = unreferenced.saturating_add(1);
            continue;
        }
        let data = fs::read(&path).map_err(|e| CliError::io(format!("cannot read {}", path.display()), &e))?;
        if sha256(&data) != name {
            return Err(CliError::invalid(format!(
                "blob file {} does not hash to its name; nothing written",
                path.display()
            )));
        }
        blobs.insert(name, data);
    }
    if unreferenced > 0 {
        note!(
            "note: ignored {unreferenced} blobs in {} that no record references",
            dir.display()
        );
    }
    if misnamed > 0 {
        note!(
            "note: ignored {misnamed} entries in {} not named by 64 lowercase hex digits",
            dir.display()
        );
    }
    Ok(blobs)
}

fn records(
    cfg: &ExportConfig,
    input: &Input,
    blobs_dir: Option<&Path>,
    key_path: &Path,
    trust_path: Option<&Path>,
) -> Result<Status, CliError> {
    // Cheap checks first: key and trust root problems are exit 2 before any work.
    let key = keyfile::load(key_path)?;
    let trust = trust_path.map(TrustRoot::load).transpose()?;
    let data = input.read_all()?;
    let parts = framing::split(&data).map_err(|(offset, e)| {
        CliError::invalid(format!(
            "{}: byte {offset}: {e}; nothing written",
            Safe(&input.display())
        ))
    })?;
    let referenced = referenced_blobs(&input.display(), &parts)?;
    let blob_data = match blobs_dir {
        Some(dir) => load_blobs(dir, &referenced)?,
        None => BTreeMap::new(),
    };
    write_records(cfg, parts, &referenced, &blob_data, &key, trust.as_ref())
}

/// Reads a kernel store (spec/store.md): its records, and the blobs they reference.
fn store(cfg: &ExportConfig, dir: &Path, key_path: &Path, trust_path: Option<&Path>) -> Result<Status, CliError> {
    let key = keyfile::load(key_path)?;
    let trust = trust_path.map(TrustRoot::load).transpose()?;
    let store_err = |e: helm_kernel::store::StoreError| CliError::usage(format!("store {}: {e}", dir.display()));
    let mut records: Vec<Vec<u8>> = Vec::new();
    helm_kernel::store::read_records(&dir.join("records"), |_, r| {
        records.push(r.to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .map_err(store_err)?;
    if records.is_empty() {
        return Err(CliError::usage(format!("store {} holds no records", dir.display())));
    }
    let parts: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let referenced = referenced_blobs(&dir.display().to_string(), &parts)?;
    let mut blob_data = BTreeMap::new();
    let blob_dir = dir.join("blobs");
    if blob_dir.exists() {
        helm_kernel::store::read_records(&blob_dir, |_, frame| {
            if let Some((name, content)) = frame.split_at_checked(32) {
                if let Ok(name) = Hash::try_from(name) {
                    // A blob is kept only if it hashes to its name.
                    if referenced.contains(&name) && sha256(content) == name {
                        blob_data.insert(name, content.to_vec());
                    }
                }
            }
            Ok::<(), helm_kernel::store::StoreError>(())
        })
        .map_err(store_err)?;
    }
    write_records(cfg, parts, &referenced, &blob_data, &key, trust.as_ref())
}

/// The blobs `parts` reference; a record that does not decode is an error.
fn referenced_blobs(source: &str, parts: &[&[u8]]) -> Result<BTreeSet<Hash>, CliError> {
    let mut referenced = BTreeSet::new();
    for (i, r) in parts.iter().enumerate() {
        let rec = Record::decode(r).map_err(|c| {
            CliError::invalid(format!(
                "{}: record #{i} does not decode: {} ({}); nothing written",
                Safe(source),
                c.name(),
                c.number()
            ))
        })?;
        if let Some(h) = blob_reference(&rec.body) {
            referenced.insert(h);
        }
    }
    Ok(referenced)
}

/// Builds, verifies and writes the pack of `parts` and the available blobs.
fn write_records(
    cfg: &ExportConfig,
    parts: Vec<&[u8]>,
    referenced: &BTreeSet<Hash>,
    blob_data: &BTreeMap<Hash, Vec<u8>>,
    key: &KeyFile,
    trust: Option<&TrustRoot>,
) -> Result<Status, CliError> {
    let missing = referenced.iter().filter(|h| !blob_data.contains_key(*h)).count();
    // (A partial pack lists only its own records' missing blobs: see its report.)
    if missing > 0 && cfg.selection.is_none() {
        note!(
            "note: {missing} of {} referenced blobs are not available; they are withheld",
            referenced.len()
        );
    }
    let blobs: BTreeMap<Hash, &[u8]> = blob_data.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let keys = trust.map(TrustRoot::keys);
    let anchors = match (&trust, &keys) {
        (Some(t), Some(k)) => Some((k.as_slice(), t.file.as_str())),
        _ => None,
    };
    let built = build(
        parts,
        blobs,
        &cfg.withhold,
        &key.signer(),
        cfg.wrapper,
        anchors,
        cfg.selection.as_ref(),
    )?;
    write_atomic(&cfg.out, &built.bytes, cfg.force, 0o644)?;
    let by = trust
        .map(|t| format!("trust root {} (anchors: {})", t.file, t.names().join(", ")))
        .unwrap_or_default();
    let mut out = Out::new();
    report(&mut out, cfg, &built, &by);
    out.finish()?;
    Ok(Status::Success)
}

pub(crate) fn run(cfg: &ExportConfig) -> Result<Status, CliError> {
    check_absent(&cfg.out, cfg.force)?;
    match &cfg.source {
        ExportSource::Sample {
            sessions,
            trust_root_out,
            records_out,
            blobs_out,
            key_out,
        } => sample(
            cfg,
            *sessions,
            trust_root_out.as_deref(),
            records_out.as_deref(),
            blobs_out.as_deref(),
            key_out.as_deref(),
        ),
        ExportSource::Records {
            records: input,
            blobs,
            key,
            trust_root,
        } => records(cfg, input, blobs.as_deref(), key, trust_root.as_deref()),
        ExportSource::Store { dir, key, trust_root } => store(cfg, dir, key, trust_root.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_seed_matches_the_test_vectors() {
        for name in ["kernel-1", "root-1"] {
            assert_eq!(
                Signer::from_seed(&test_seed(name)).public_key(),
                helm_test_vectors::test_key(name).public_key()
            );
        }
    }
}
