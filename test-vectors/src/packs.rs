//! EvidencePack vectors: valid and invalid packs as files, with expectations.
//!
//! Invalid packs are built from a valid one by changing exactly one thing; where the
//! manifest would otherwise give the change away first, it is rewritten and re-signed
//! by the same kernel key, so that the rule at stake is the first to fail.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use verify_core::cbor::Writer;
use verify_core::{sha256, Hash, Signer, COSE_ALG_EDDSA, COSE_SIGN1_TAG};

use crate::{sample_run, test_key, write_run, Run};

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

    o.vectors
}
