//! Writing packs canonically (feature `alloc`).
//!
//! The same records and blobs always give the same bytes: fixed entry order, canonical
//! headers, zero padding, exactly two end blocks, and a deterministic Ed25519 signature.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};
use verify_core::cbor::Writer;
use verify_core::{Body, ErrorCode, Hash, MerkleAccumulator, Record, Verdict, COSE_ALG_EDDSA, COSE_SIGN1_TAG};

use crate::manifest::Manifest;
use crate::reader::{blob_reference, SEGMENT_RECORDS};
use crate::tar::{self, BLOCK};

/// What goes into a pack.
#[derive(Debug, Default)]
pub struct PackContents<'a> {
    /// Records in a valid topological order (as the kernel appended them).
    pub records: Vec<&'a [u8]>,
    /// Blob contents available to the exporter, keyed by name (SHA-256 of the content).
    pub blobs: BTreeMap<Hash, &'a [u8]>,
    /// Names to withhold even though available (for privacy).
    pub withhold: BTreeSet<Hash>,
}

/// Why a pack could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Record `index` does not decode.
    Record(usize, ErrorCode),
    /// A blob whose content does not hash to its name.
    BlobHashMismatch(Hash),
    /// A blob no record references.
    BlobUnreferenced(Hash),
    /// No records.
    Empty,
    /// An entry too large for a tar header.
    TooLarge(String),
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hex = |h: &Hash| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        match self {
            WriteError::Record(i, c) => write!(f, "record #{i} does not decode: {c}"),
            WriteError::BlobHashMismatch(h) => write!(f, "blob {} does not hash to its name", hex(h)),
            WriteError::BlobUnreferenced(h) => write!(f, "blob {} is referenced by no record", hex(h)),
            WriteError::Empty => write!(f, "no records to export"),
            WriteError::TooLarge(n) => write!(f, "entry {n} is too large for a tar header"),
        }
    }
}

impl core::error::Error for WriteError {}

fn entry(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<(), WriteError> {
    let header = tar::encode(name, data.len() as u64).ok_or_else(|| WriteError::TooLarge(name.into()))?;
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    let pad = BLOCK
        .wrapping_sub(data.len().checked_rem(BLOCK).unwrap_or(0))
        .checked_rem(BLOCK)
        .unwrap_or(0);
    out.resize(out.len().saturating_add(pad), 0);
    Ok(())
}

/// Writes a full pack. `producer` is the kernel key that signs the manifest; `sign`
/// returns its Ed25519 signature over the bytes given (the COSE Sig_structure).
pub fn write_pack(
    contents: &PackContents<'_>,
    producer: [u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<Vec<u8>, WriteError> {
    if contents.records.is_empty() {
        return Err(WriteError::Empty);
    }
    let mut records_merkle = MerkleAccumulator::new();
    let mut referenced = BTreeSet::new();
    let mut head = [0u8; 32];
    let mut per_kind = [0u64; 9];
    let mut escalations = 0u64;
    let mut streams = BTreeSet::new();
    for (i, bytes) in contents.records.iter().enumerate() {
        let rec = Record::decode(bytes).map_err(|c| WriteError::Record(i, c))?;
        records_merkle.push(&rec.hash);
        head = rec.hash;
        if let Some(c) = per_kind.get_mut((rec.kind as usize).wrapping_sub(1)) {
            *c = c.saturating_add(1);
        }
        if matches!(
            rec.body,
            Body::Decision {
                verdict: Verdict::Escalate,
                ..
            }
        ) {
            escalations = escalations.saturating_add(1);
        }
        streams.insert((rec.kid, rec.session));
        if let Some(r) = blob_reference(&rec.body) {
            referenced.insert(r);
        }
    }
    for (name, data) in &contents.blobs {
        let digest: Hash = Sha256::digest(data).into();
        if digest != *name {
            return Err(WriteError::BlobHashMismatch(*name));
        }
        if !referenced.contains(name) {
            return Err(WriteError::BlobUnreferenced(*name));
        }
    }
    let present: Vec<(&Hash, &&[u8])> = contents
        .blobs
        .iter()
        .filter(|(n, _)| !contents.withhold.contains(*n))
        .collect();
    let present_names: BTreeSet<&Hash> = present.iter().map(|(n, _)| *n).collect();
    let withheld: Vec<&Hash> = referenced.iter().filter(|n| !present_names.contains(n)).collect();

    let mut blobs_merkle = MerkleAccumulator::new();
    present.iter().for_each(|(n, _)| {
        blobs_merkle.push(*n);
    });
    let mut withheld_merkle = MerkleAccumulator::new();
    withheld.iter().for_each(|n| {
        withheld_merkle.push(*n);
    });
    let segments = (contents.records.len() as u64).div_ceil(SEGMENT_RECORDS);
    let manifest = Manifest {
        producer,
        records: contents.records.len() as u64,
        records_root: records_merkle.root(),
        head,
        segments,
        blobs: present.len() as u64,
        blobs_root: blobs_merkle.root(),
        withheld: withheld.len() as u64,
        withheld_root: withheld_merkle.root(),
        per_kind,
        escalations,
        streams: streams.len() as u64,
    };
    let payload = manifest.payload();
    let mut protected = Writer::new();
    protected.map(2).uint(1).int(COSE_ALG_EDDSA).uint(4).bytes(&producer);
    let protected = protected.into_bytes();
    let mut sig_structure = Writer::new();
    sig_structure
        .array(4)
        .text("Signature1")
        .bytes(&protected)
        .bytes(&[])
        .bytes(&payload);
    let signature = sign(&sig_structure.buf);
    let mut cose = Writer::new();
    cose.tag(COSE_SIGN1_TAG)
        .array(4)
        .bytes(&protected)
        .map(0)
        .bytes(&payload)
        .bytes(&signature);

    let mut out = Vec::new();
    entry(&mut out, "manifest.cbor", &cose.buf)?;
    let mut list = Vec::with_capacity(withheld.len().saturating_mul(34));
    for n in &withheld {
        list.extend_from_slice(&[0x58, 0x20]);
        list.extend_from_slice(*n);
    }
    entry(&mut out, "withheld.cbor", &list)?;
    for (name, data) in &present {
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        entry(&mut out, &format!("blobs/sha256/{hex}"), data)?;
    }
    for (i, chunk) in contents.records.chunks(SEGMENT_RECORDS as usize).enumerate() {
        let data: Vec<u8> = chunk.concat();
        entry(&mut out, &format!("records/{i:06}.cbor"), &data)?;
    }
    out.resize(out.len().saturating_add(BLOCK.saturating_mul(2)), 0);
    Ok(out)
}
