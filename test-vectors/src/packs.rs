//! EvidencePack vectors: valid and invalid packs as files, with expectations.
//!
//! Invalid packs are built from a valid one by changing exactly one thing; where the
//! manifest would otherwise give the change away first, it is rewritten and re-signed
//! by the same kernel key, so that the rule at stake is the first to fail.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use verify_core::cbor::Writer;
use verify_core::{sha256, Hash, Kind, Selection, Signer, COSE_ALG_EDDSA, COSE_SIGN1_TAG};

use crate::{sample_run, test_key, write_run, Chain, Run};

/// One pack vector: a file below `packs/`, the trust anchors, and the expected outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackVector {
    /// Stable identifier.
    pub id: String,
    /// What the vector models.
    pub description: String,
    /// Conformance level.
    pub level: String,
    /// The pack file, relative to `packs/`.
    pub file: String,
    /// Trust anchors (hex).
    pub anchors: Vec<String>,
    /// Expected outcome.
    pub expect: PackExpectation,
}

/// What a conforming verifier concludes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum PackExpectation {
    /// The pack verifies: its record count and records root.
    Accept {
        /// Number of records.
        records: u64,
        /// Hex records root.
        root: String,
    },
    /// The pack fails with this code (a record's own code for record failures).
    Reject {
        /// Error code name.
        error: String,
    },
}

/// A pack split into its entries (name, data), for surgery.
pub fn entries(pack: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = pack.get(at..at + 512) {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name_len = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_len]).into_owned();
        let size = usize::from_str_radix(core::str::from_utf8(&h[124..135]).unwrap_or("0"), 8).unwrap_or(0);
        let data = pack[at + 512..at + 512 + size].to_vec();
        out.push((name, data));
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// Builds a canonical archive from entries (which may break the pack layout).
pub fn build(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        out.extend_from_slice(&pack_format::tar::encode(name, data.len() as u64).expect("canonical name"));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Re-signs a manifest after `edit` changed its decoded fields.
fn resign_manifest(manifest: &[u8], signer: &Signer, edit: impl FnOnce(&mut pack_format::Manifest)) -> Vec<u8> {
    let (mut m, _) = pack_format::Manifest::decode(manifest).expect("valid manifest");
    edit(&mut m);
    m.producer = signer.public_key();
    let payload = m.payload();
    let mut p = Writer::new();
    p.map(2).uint(1).int(COSE_ALG_EDDSA).uint(4).bytes(&signer.public_key());
    let sig = signer.sign(&verify_core::sig_structure(&p.buf, &payload));
    let mut w = Writer::new();
    w.tag(COSE_SIGN1_TAG)
        .array(4)
        .bytes(&p.buf)
        .map(0)
        .bytes(&payload)
        .bytes(&sig);
    w.into_bytes()
}

struct Out<'a> {
    dir: &'a Path,
    anchors: Vec<String>,
    vectors: Vec<PackVector>,
}

impl Out<'_> {
    fn add(
        &mut self,
        id: &str,
        level: &str,
        description: &str,
        file_suffix: &str,
        bytes: &[u8],
        expect: PackExpectation,
    ) {
        let file = format!("{id}{file_suffix}");
        let path = self.dir.join("packs").join(&file);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, bytes).expect("write pack vector");
        self.vectors.push(PackVector {
            id: id.into(),
            description: description.into(),
            level: level.into(),
            file,
            anchors: self.anchors.clone(),
            expect,
        });
    }

    fn reject(&mut self, id: &str, level: &str, description: &str, bytes: &[u8], error: &str) {
        self.add(
            id,
            level,
            description,
            ".tar",
            bytes,
            PackExpectation::Reject { error: error.into() },
        );
    }
}

fn manifest_index(e: &[(String, Vec<u8>)]) -> usize {
    e.iter().position(|(n, _)| n == "manifest.cbor").expect("manifest")
}

/// Writes every pack vector below `dir/packs/` and returns them (for the index).
pub fn generate(dir: &Path) -> Vec<PackVector> {
    let packs_dir = dir.join("packs");
    if packs_dir.exists() {
        fs::remove_dir_all(&packs_dir).expect("clean packs/");
    }
    let run = sample_run(1, 7, 8);
    let kernel = run.kernel.clone();
    let mut o = Out {
        dir,
        anchors: run.anchors.iter().map(hex::encode).collect(),
        vectors: Vec::new(),
    };
    let pack = write_run(&run, &[]).expect("pack");
    let accept = |p: &[u8]| {
        let (m, _) = pack_format::Manifest::decode(&entries(p)[0].1).expect("manifest");
        PackExpectation::Accept {
            records: m.records,
            root: hex::encode(m.records_root),
        }
    };
    let desc = "One session of seven calls (allowed, denied, escalated and approved), checkpoints, all blobs present.";
    o.add("valid/small-run", "L2", desc, ".tar", &pack, accept(&pack));
    let z = pack_format::transport::compress(&pack, pack_format::transport::Wrapper::Zstd).expect("zstd");
    o.add(
        "valid/small-run",
        "L2",
        "The same pack in a zstd transport wrapper.",
        ".tar.zst",
        &z,
        accept(&pack),
    );
    let g = pack_format::transport::compress(&pack, pack_format::transport::Wrapper::Gzip).expect("gzip");
    o.add(
        "valid/small-run",
        "L2",
        "The same pack in a gzip transport wrapper.",
        ".tar.gz",
        &g,
        accept(&pack),
    );
    let secret: Vec<Hash> = run.blobs.keys().step_by(2).copied().collect();
    let withheld = write_run(&run, &secret).expect("pack");
    let desc = "Every second blob withheld: listed in withheld.cbor, commitments still in the records.";
    o.add("valid/withheld-blobs", "L2", desc, ".tar", &withheld, accept(&withheld));
    // Fix the id of the wrapped variants (one id per file).
    for v in o.vectors.iter_mut() {
        if v.file.ends_with(".tar.zst") {
            v.id = "valid/small-run-zstd".into();
        } else if v.file.ends_with(".tar.gz") {
            v.id = "valid/small-run-gzip".into();
        }
    }

    let e = entries(&pack);
    let seg = e.iter().position(|(n, _)| n.starts_with("records/")).expect("segment");
    let first_blob = e.iter().position(|(n, _)| n.starts_with("blobs/")).expect("blob");

    let mut x = e.clone();
    let len = x[seg].1.len();
    x[seg].1[len - 1] ^= 0x01;
    o.reject(
        "invalid/record-byte-flipped",
        "L2",
        "One bit of the last record's signature flipped.",
        &build(&x),
        "SIGNATURE_INVALID",
    );

    let mut x = e.clone();
    let mi = manifest_index(&x);
    x[mi].1 = resign_manifest(&x[mi].1, &kernel, |m| m.records += 1);
    o.reject(
        "invalid/manifest-wrong-count",
        "L2",
        "The manifest, validly signed, claims one record more than the pack holds.",
        &build(&x),
        "PACK_MANIFEST_MISMATCH",
    );

    let mut x = e.clone();
    let mi = manifest_index(&x);
    x[mi].1 = resign_manifest(&x[mi].1, &test_key("approver-1"), |_| {});
    o.reject(
        "invalid/manifest-signed-by-approver",
        "L2",
        "The manifest is signed by a registered approver key, which lacks the kernel role.",
        &build(&x),
        "PACK_MANIFEST_SIGNER",
    );

    let mut x = e.clone();
    let mi = manifest_index(&x);
    let n = x[mi].1.len();
    x[mi].1[n - 1] ^= 0x80;
    o.reject(
        "invalid/manifest-bad-signature",
        "L2",
        "One bit of the manifest signature flipped.",
        &build(&x),
        "PACK_MANIFEST_SIGNATURE",
    );

    let mut x = e.clone();
    let n = x[first_blob].1.len();
    x[first_blob].1[n - 1] ^= 0x01;
    o.reject(
        "invalid/blob-content-changed",
        "L2",
        "One bit of a blob's content flipped: it no longer hashes to its name.",
        &build(&x),
        "PACK_BLOB_HASH_MISMATCH",
    );

    let mut x = e.clone();
    x.swap(first_blob, first_blob + 1);
    o.reject(
        "invalid/blobs-out-of-order",
        "L2",
        "Two blob entries swapped: names not ascending.",
        &build(&x),
        "PACK_BLOB_ORDER",
    );

    let mut x = e.clone();
    x.remove(first_blob);
    let mi = manifest_index(&x);
    x[mi].1 = resign_manifest(&x[mi].1, &kernel, |m| m.blobs -= 1);
    o.reject(
        "invalid/blob-dropped",
        "L2",
        "A referenced blob removed without being listed as withheld (the manifest is re-signed with one blob fewer; the record that references it fails before the manifest is checked).",
        &build(&x),
        "PACK_BLOB_MISSING",
    );

    let mut x = e.clone();
    let extra = b"an extra blob nobody references".to_vec();
    let extra_name = sha256(&extra);
    let mut blobs: BTreeMap<String, Vec<u8>> = x
        .iter()
        .filter(|(n, _)| n.starts_with("blobs/"))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    blobs.insert(format!("blobs/sha256/{}", hex::encode(extra_name)), extra);
    let rest: Vec<(String, Vec<u8>)> = x.iter().filter(|(n, _)| !n.starts_with("blobs/")).cloned().collect();
    x = rest[..2].to_vec();
    x.extend(blobs);
    x.extend(rest[2..].iter().cloned());
    let mi = manifest_index(&x);
    let names: Vec<Hash> = x
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("blobs/sha256/"))
        .map(|h| hex::decode(h).expect("hex").try_into().expect("32"))
        .collect();
    let mut acc = verify_core::MerkleAccumulator::new();
    names.iter().for_each(|n| {
        acc.push(n);
    });
    x[mi].1 = resign_manifest(&x[mi].1, &kernel, |m| {
        m.blobs += 1;
        m.blobs_root = acc.root();
    });
    o.reject(
        "invalid/blob-unreferenced",
        "L2",
        "An extra blob no record references (manifest re-signed to count it).",
        &build(&x),
        "PACK_BLOB_UNREFERENCED",
    );

    let mut x = e.clone();
    let wi = x.iter().position(|(n, _)| n == "withheld.cbor").expect("withheld");
    x[wi].1 = vec![0x58, 0x20];
    x[wi].1.extend_from_slice(&[0xbb; 32]);
    x[wi].1.extend_from_slice(&[0x58, 0x20]);
    x[wi].1.extend_from_slice(&[0xaa; 32]);
    o.reject(
        "invalid/withheld-unsorted",
        "L2",
        "Withheld names in descending order.",
        &build(&x),
        "PACK_WITHHELD_INVALID",
    );

    let mut x = e.clone();
    x.remove(manifest_index(&x));
    o.reject(
        "invalid/manifest-missing",
        "L3",
        "The first entry is withheld.cbor: the manifest is missing.",
        &build(&x),
        "PACK_UNEXPECTED_ENTRY",
    );

    let mut x = e.clone();
    x[seg].0 = "records/000001.cbor".into();
    o.reject(
        "invalid/segment-misnumbered",
        "L3",
        "The only segment is numbered 1.",
        &build(&x),
        "PACK_UNEXPECTED_ENTRY",
    );

    let mut x = e.clone();
    x.insert(seg, ("records/../../etc/passwd".into(), b"root".to_vec()));
    let mut bytes = build(&x[..seg]);
    bytes.truncate(bytes.len() - 1024);
    let mut h = pack_format::tar::encode("records/x", 4).expect("header");
    h[..24].copy_from_slice(b"records/../../etc/passwd");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(b"root");
    bytes.resize(bytes.len() + 508 + 1024, 0);
    o.reject(
        "invalid/path-traversal",
        "L3",
        "An entry named records/../../etc/passwd.",
        &bytes,
        "TAR_BAD_PATH",
    );

    let header_patch = |field: core::ops::Range<usize>, value: &[u8], fix_sum: bool| {
        let mut bytes = pack.clone();
        let at = 512 * (1 + e[0].1.len().div_ceil(512)); // the withheld.cbor header
        bytes[at + field.start..at + field.end].copy_from_slice(value);
        if fix_sum {
            bytes[at + 148..at + 156].copy_from_slice(b"        ");
            let sum: u32 = bytes[at..at + 512].iter().map(|&b| u32::from(b)).sum();
            bytes[at + 148..at + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        }
        bytes
    };
    o.reject(
        "invalid/symlink-entry",
        "L3",
        "The withheld.cbor header has type flag 2 (symbolic link).",
        &header_patch(156..157, b"2", true),
        "TAR_NOT_REGULAR_FILE",
    );
    o.reject(
        "invalid/pax-header",
        "L3",
        "The withheld.cbor header has type flag x (pax extended header).",
        &header_patch(156..157, b"x", true),
        "TAR_NOT_REGULAR_FILE",
    );
    o.reject(
        "invalid/header-mtime-set",
        "L3",
        "The withheld.cbor header carries a modification time (checksum fixed).",
        &header_patch(136..148, b"14712345670\0", true),
        "TAR_NON_CANONICAL_HEADER",
    );
    o.reject(
        "invalid/header-user-name",
        "L3",
        "The withheld.cbor header carries a user name (checksum fixed).",
        &header_patch(265..269, b"root", true),
        "TAR_NON_CANONICAL_HEADER",
    );
    o.reject(
        "invalid/header-bad-checksum",
        "L3",
        "The withheld.cbor header's mode changed without fixing the checksum.",
        &header_patch(100..108, b"0000755\0", false),
        "TAR_HEADER_CHECKSUM",
    );

    let mut bytes = pack.clone();
    let pad_at = 512 + e[0].1.len(); // first byte of padding after the manifest
    bytes[pad_at] = 1;
    o.reject(
        "invalid/nonzero-padding",
        "L3",
        "A padding byte after the manifest is 1.",
        &bytes,
        "TAR_NONZERO_PADDING",
    );

    let mut bytes = pack.clone();
    bytes.extend_from_slice(&[0u8; 512]);
    o.reject(
        "invalid/trailing-zero-block",
        "L3",
        "A third zero block after the end (as tar's 10240-byte records would add).",
        &bytes,
        "TAR_TRAILING_DATA",
    );

    let bytes = &pack[..pack.len() - 512];
    o.reject(
        "invalid/truncated-end",
        "L3",
        "The second end block is missing.",
        bytes,
        "TAR_TRUNCATED",
    );

    let mut dropped = run.records.clone();
    let effect = dropped
        .iter()
        .position(|r| verify_core::Record::decode(r).map(|r| r.kind) == Ok(verify_core::Kind::Effect))
        .expect("effect");
    dropped.remove(effect);
    let referenced: std::collections::BTreeSet<Hash> = dropped
        .iter()
        .filter_map(|r| {
            verify_core::Record::decode(r)
                .ok()
                .and_then(|r| pack_format::blob_reference(&r.body))
        })
        .collect();
    let r2 = Run {
        anchors: run.anchors.clone(),
        records: dropped,
        blobs: run
            .blobs
            .iter()
            .filter(|(k, _)| referenced.contains(*k))
            .map(|(k, v)| (*k, v.clone()))
            .collect(),
        kernel: kernel.clone(),
    };
    o.reject("invalid/record-dropped", "L2", "The first EFFECT removed and the pack rewritten and re-signed by the kernel: the next record of its session skips a sequence number.", &write_run(&r2, &[]).expect("pack"), "SEQUENCE_GAP");

    // A valid start, then a blob entry declaring 8 GiB followed by 64 MiB of zeros.
    let mut bomb = build(&e[..first_blob]);
    bomb.truncate(bomb.len() - 1024);
    bomb.extend_from_slice(&pack_format::tar::encode(&e[first_blob].0, 0o77_777_777_777).expect("header"));
    bomb.resize(bomb.len() + (64 << 20), 0);
    let bomb = pack_format::transport::compress(&bomb, pack_format::transport::Wrapper::Zstd).expect("zstd");
    o.add(
        "invalid/zstd-bomb",
        "L3",
        "A pack whose first blob declares 8 GiB and expands from a few kilobytes of zstd: refused by the expansion-ratio limit, in bounded memory, with nothing written anywhere.",
        ".tar.zst",
        &bomb,
        PackExpectation::Reject { error: "PACK_TRANSPORT_INVALID".into() },
    );
    let mut zc = pack_format::transport::compress(&pack, pack_format::transport::Wrapper::Zstd).expect("zstd");
    let last = zc.len() - 1;
    zc[last] ^= 0x04;
    o.add(
        "invalid/zstd-checksum",
        "L3",
        "The valid pack in a zstd frame whose 4-byte content checksum has one bit flipped: the tar inside is intact, the wrapper is not (found by differential fuzzing against the Python verifier).",
        ".tar.zst",
        &zc,
        PackExpectation::Reject { error: "PACK_TRANSPORT_INVALID".into() },
    );
    let gz = pack_format::transport::compress(&pack, pack_format::transport::Wrapper::Gzip).expect("gzip");
    o.add(
        "invalid/gzip-truncated",
        "L3",
        "A gzip wrapper cut short by one byte (its trailer).",
        ".tar.gz",
        &gz[..gz.len() - 1],
        PackExpectation::Reject {
            error: "PACK_TRANSPORT_INVALID".into(),
        },
    );

    partial_vectors(&mut o);
    o.vectors
}

/// A partial pack of `run` as `plan` says (proofs computed for whatever it lists).
fn write_plan(run: &Run, plan: &pack_format::PartialPlan, sel: &Selection<'_>) -> Vec<u8> {
    pack_format::write_partial_plan(
        &run.records,
        plan,
        sel,
        |h| run.blobs.get(h).cloned(),
        &BTreeSet::new(),
        run.kernel.public_key(),
        |m| run.kernel.sign(m),
    )
    .expect("partial pack")
    .0
}

fn plan(run: &Run, sel: &Selection<'_>) -> pack_format::PartialPlan {
    pack_format::plan_partial(&run.records, sel).expect("plan")
}

/// A record's bytes and its proof item's, as ranges of a segment's data.
type Unit = (Range<usize>, Range<usize>);

/// A partial pack's units: the index of its only segment's entry, and for each record
/// its (record, proof item) ranges in the segment's data.
fn units(e: &[(String, Vec<u8>)]) -> (usize, Vec<Unit>) {
    let seg = e.iter().position(|(n, _)| n.starts_with("records/")).expect("segment");
    let data = &e[seg].1;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let r = pack_format::record_len(&data[pos..])
            .expect("frames")
            .expect("complete");
        let mut d = verify_core::cbor::Reader::new(&data[pos + r..]);
        d.any(4).expect("item");
        let end = pos + r + d.position();
        out.push((pos..pos + r, pos + r..end));
        pos = end;
    }
    (seg, out)
}

fn kind_of(record: &[u8]) -> Kind {
    verify_core::Record::decode(record).expect("record").kind
}

/// A log in which the kernel key is rotated, with a cut-off CHECKPOINT, between two
/// sessions. `old_key_late`: the rotated-away key signs a record of the second session
/// after the rotation; `old_key_between`: it signs one after its cut-off and before the
/// rotation. Blobs are not included (the partial packs list them as withheld).
fn rotation_log(old_key_between: bool, old_key_late: bool) -> Run {
    use verify_core::body::{self, Effect};
    use verify_core::{CallKind, EffectStatus, TrustAction, Verdict};
    let root = test_key("root-1");
    let k1 = test_key("kernel-1");
    let k2 = test_key("kernel-2");
    let policy = sha256(b"rotation example policy");
    let mut c = Chain::new();
    c.push(
        &root,
        Kind::TrustEvent,
        body::trust_event(TrustAction::Publish, &k1.public_key(), Some(&["kernel"]), None, None),
        &[],
        "",
    );
    let call = |c: &mut Chain, k: &Signer, session: &str, n: u32| {
        let args = sha256(format!("args {session} {n}").as_bytes());
        let i = c.push(
            k,
            Kind::Intent,
            body::intent("read_file", CallKind::Json, &args),
            &[],
            session,
        );
        let d = body::decision(Verdict::Allow, "POLICY_ALLOW", &policy, None);
        let d = c.push(k, Kind::Decision, d, &[i], session);
        let e = body::effect(&Effect {
            status: EffectStatus::Succeeded,
            tool: "read_file",
            call_kind: CallKind::Json,
            args,
            output: sha256(format!("output {session} {n}").as_bytes()),
            executor: "tool-runner",
            meters: &[],
        });
        c.push(k, Kind::Effect, e, &[d], session);
    };
    call(&mut c, &k1, "session-a", 0);
    call(&mut c, &k1, "session-a", 1);
    let cut = c.checkpoint(&k1, &[], &[]);
    if old_key_between {
        call(&mut c, &k1, "session-b", 9);
    }
    c.push(
        &root,
        Kind::TrustEvent,
        body::trust_event(
            TrustAction::Rotate,
            &k1.public_key(),
            Some(&["kernel"]),
            Some(&k2.public_key()),
            Some(&cut),
        ),
        &[cut],
        "",
    );
    call(&mut c, &k2, "session-b", 0);
    if old_key_late {
        call(&mut c, &k1, "session-b", 7);
    }
    call(&mut c, &k2, "session-b", 1);
    c.checkpoint(&k2, &[], &[]);
    Run {
        anchors: vec![root.public_key()],
        records: c.records,
        blobs: BTreeMap::new(),
        kernel: k2,
    }
}

/// Partial packs (spec/evidencepack.md §9).
fn partial_vectors(o: &mut Out<'_>) {
    let run = sample_run(3, 5, 8);
    let sel = Selection {
        session: Some("session-000001"),
        ..Selection::default()
    };
    let accept = |p: &[u8]| {
        let (m, _) = pack_format::Manifest::decode(&entries(p)[0].1).expect("manifest");
        PackExpectation::Accept {
            records: m.records,
            root: hex::encode(m.records_root),
        }
    };
    let session_plan = plan(&run, &sel);
    let pack = write_plan(&run, &session_plan, &sel);
    o.add(
        "valid/partial-session",
        "L2",
        "A partial pack of one session (session-000001) of a three-session run: its records, every TRUST_EVENT, the INTENT, permit and POLICY parents of its DECISIONs, APPROVALs and EFFECTs, each with an inclusion proof to the run's last CHECKPOINT, which ends the pack.",
        ".tar",
        &pack,
        accept(&pack),
    );

    let times: Vec<u64> = run
        .records
        .iter()
        .map(|r| verify_core::Record::decode(r).expect("record").time)
        .collect();
    let n = times.len();
    let range = Selection {
        since: Some(times[n / 3]),
        until: Some(times[2 * n / 3]),
        ..Selection::default()
    };
    let range_plan = plan(&run, &range);
    let ranged = write_plan(&run, &range_plan, &range);
    o.add(
        "valid/partial-time-range",
        "L2",
        "A partial pack of a kernel-time range across sessions: records before the range that its DECISIONs, APPROVALs and EFFECTs name are carried too, and the CHECKPOINTs inside the range prove their roots with consistency proofs.",
        ".tar",
        &ranged,
        accept(&ranged),
    );

    let rot = rotation_log(false, false);
    let sel_b = Selection {
        session: Some("session-b"),
        ..Selection::default()
    };
    let rotated = write_plan(&rot, &plan(&rot, &sel_b), &sel_b);
    o.add(
        "valid/partial-after-rotation",
        "L2",
        "A partial pack of a session signed by a kernel key that replaced another by a ROTATE with a cut-off CHECKPOINT: the TRUST_EVENTs and the cut-off are carried, the blobs withheld, and the manifest is signed by the new key.",
        ".tar",
        &rotated,
        accept(&rotated),
    );

    let e = entries(&pack);
    let (seg, u) = units(&e);
    let mut x = e.clone();
    let item = u[4].1.clone();
    x[seg].1[item.start + 6] ^= 0x01;
    o.reject(
        "invalid/partial-proof-tampered",
        "L2",
        "One bit of a hash in the fifth record's inclusion path flipped: the proof no longer leads to the checkpoint's root.",
        &build(&x),
        "PACK_PROOF_MISMATCH",
    );

    let mut x = e.clone();
    let mi = manifest_index(&x);
    let other_root = sha256(b"another tree");
    x[mi].1 = resign_manifest(&x[mi].1, &run.kernel, |m| {
        if let Some(p) = &mut m.partial {
            p.tree_root = other_root;
        }
    });
    o.reject(
        "invalid/partial-other-tree",
        "L2",
        "The manifest, validly re-signed, names another tree root than the checkpoint's: the first record's proof does not lead to it.",
        &build(&x),
        "PACK_PROOF_MISMATCH",
    );

    let mut x = e.clone();
    let item = u[2].1.clone();
    x[seg].1.drain(item);
    o.reject(
        "invalid/partial-proof-missing",
        "L3",
        "The third record's proof item removed: the next record's tag stands where the item's array should be.",
        &build(&x),
        "PACK_PROOF_INVALID",
    );

    let mut twice = session_plan.clone();
    twice.carried.insert(6, twice.carried[6]);
    o.reject(
        "invalid/partial-record-twice",
        "L2",
        "A record carried twice, with the same valid proof: positions must strictly ascend.",
        &write_plan(&run, &twice, &sel),
        "PACK_PROOF_ORDER",
    );

    let mut moved = range_plan.clone();
    let k = (1..moved.carried.len())
        .find(|&k| {
            kind_of(&run.records[moved.carried[k]]) == Kind::Intent
                && kind_of(&run.records[moved.carried[k - 1]]) == Kind::Effect
        })
        .expect("an INTENT after an EFFECT");
    moved.carried.swap(k - 1, k);
    o.reject(
        "invalid/partial-out-of-order",
        "L2",
        "In a time-range pack, an INTENT moved before the EFFECT that precedes it in the log (both with valid proofs): the INTENT passes its own checks, the EFFECT's position is then lower than the previous one.",
        &write_plan(&run, &moved, &range),
        "PACK_PROOF_ORDER",
    );

    let mut extra = session_plan.clone();
    let stranger = (0..extra.checkpoint)
        .find(|&i| {
            let r = verify_core::Record::decode(&run.records[i]).expect("record");
            r.session == "session-000002" && r.kind == Kind::Intent
        })
        .expect("an INTENT of another session");
    extra.carried.push(stranger);
    extra.carried.sort_unstable();
    o.reject(
        "invalid/partial-record-unselected",
        "L2",
        "An INTENT of another session carried with a valid proof (and counted in the re-signed manifest): it is not selected and no carried record needs it.",
        &write_plan(&run, &extra, &sel),
        "PACK_RECORD_UNSELECTED",
    );

    let mut no_te = session_plan.clone();
    let second_te = no_te
        .carried
        .iter()
        .copied()
        .filter(|&i| kind_of(&run.records[i]) == Kind::TrustEvent)
        .nth(1)
        .expect("two TRUST_EVENTs");
    no_te.carried.retain(|&i| i != second_te);
    o.reject(
        "invalid/partial-trust-event-omitted",
        "L2",
        "The root key's second TRUST_EVENT (publishing an approver) left out: the third one skips a sequence number of the anchor's stream.",
        &write_plan(&run, &no_te, &sel),
        "SEQUENCE_GAP",
    );

    let mut no_permit = session_plan.clone();
    let effect = no_permit
        .carried
        .iter()
        .copied()
        .find(|&i| kind_of(&run.records[i]) == Kind::Effect)
        .expect("an EFFECT");
    let permit = verify_core::Record::decode(&run.records[effect])
        .expect("record")
        .parents
        .iter()
        .next()
        .expect("a parent");
    no_permit.carried.retain(|&i| sha256(&run.records[i]) != permit);
    o.reject(
        "invalid/partial-permit-missing",
        "L2",
        "An EFFECT carried without its ALLOW: a DECISION's, APPROVAL's or EFFECT's parents must all be carried.",
        &write_plan(&run, &no_permit, &sel),
        "PARENT_MISSING",
    );

    let mut no_end = session_plan.clone();
    no_end.carried.pop();
    o.reject(
        "invalid/partial-no-checkpoint",
        "L2",
        "The checkpoint left out: the last record's position is below the tree size.",
        &write_plan(&run, &no_end, &sel),
        "PACK_CHECKPOINT_INVALID",
    );

    let re = entries(&ranged);
    let (rseg, ru) = units(&re);
    let size = range_plan.checkpoint as u64;
    let (_, cons) = ru
        .iter()
        .zip(&range_plan.carried)
        .find(|((r, _), &p)| kind_of(&re[rseg].1[r.clone()]) == Kind::Checkpoint && (p as u64) < size)
        .map(|((r, i), _)| (r.clone(), i.clone()))
        .expect("a checkpoint inside the range");
    let mut x = re.clone();
    let end = cons.end;
    x[rseg].1[end - 1] ^= 0x01;
    o.reject(
        "invalid/partial-checkpoint-inconsistent",
        "L2",
        "A CHECKPOINT inside a time-range pack whose consistency proof has one bit flipped: its root is not proven to be that of the log's records before it.",
        &build(&x),
        "CHECKPOINT_ROOT",
    );

    // The last CHECKPOINT signed by a key nobody published.
    let stranger_key = test_key("stranger");
    let mut forged = Run {
        anchors: run.anchors.clone(),
        records: run.records.clone(),
        blobs: run.blobs.clone(),
        kernel: run.kernel.clone(),
    };
    let mut acc = verify_core::MerkleAccumulator::new();
    forged.records.iter().for_each(|r| {
        acc.push(&sha256(r));
    });
    let last = verify_core::Record::decode(forged.records.last().expect("records")).expect("record");
    let mut b = verify_core::RecordBuilder::new(
        Kind::Checkpoint,
        verify_core::body::checkpoint(forged.records.len() as u64, &acc.root(), &[]),
    );
    b.lamport = last.lamport + 1;
    b.time = last.time + 1000;
    b.principal = "kernel".into();
    b.session = String::new();
    b.seq = 0;
    forged.records.push(b.sign(&stranger_key));
    o.reject(
        "invalid/partial-checkpoint-unknown-signer",
        "L2",
        "The checkpoint the proofs lead to is signed by a key no TRUST_EVENT published: every record proves its place in that tree, and the checkpoint itself fails.",
        &write_plan(&forged, &plan(&forged, &sel), &sel),
        "KEY_UNKNOWN",
    );

    let late = rotation_log(false, true);
    o.reject(
        "invalid/partial-revoked-signer",
        "L2",
        "A log in which the rotated-away kernel key signs a record of session-b after the ROTATE (positions from the proofs put it after the TRUST_EVENT): a partial pack of session-b.",
        &write_plan(&late, &plan(&late, &sel_b), &sel_b),
        "KEY_REVOKED",
    );
    let between = rotation_log(true, false);
    o.reject(
        "invalid/partial-signed-after-cutoff",
        "L2",
        "A log in which the old kernel key signs records of session-b after its cut-off CHECKPOINT and before the ROTATE that names it: the partial pack of session-b fails at the ROTATE, by position.",
        &write_plan(&between, &plan(&between, &sel_b), &sel_b),
        "REVOCATION_CUTOFF_VIOLATED",
    );
}
