//! Writing packs canonically (feature `alloc`).
//!
//! The same records and blobs always give the same bytes: fixed entry order, canonical
//! headers, zero padding, exactly two end blocks, and a deterministic Ed25519 signature.
//! [`write_pack`] writes a full pack; [`write_partial_pack`] a partial pack (one session
//! or a time range, with inclusion proofs to a CHECKPOINT: spec/evidencepack.md §9).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};
use verify_core::cbor::Writer;
use verify_core::{
    empty_root, leaf_hash, node_hash, sha256, Body, ErrorCode, Hash, Kind, MerkleAccumulator, Record, Selection,
    Verdict, COSE_ALG_EDDSA, COSE_SIGN1_TAG,
};

use crate::manifest::{Manifest, PartialClaims};
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
    /// A partial pack's selection names no session and no time bound.
    EmptySelection,
    /// A partial pack's selection matches no record.
    NothingSelected,
    /// Record `index` is selected, but no CHECKPOINT follows it.
    NotCovered(usize),
    /// The CHECKPOINT at `index` does not state the count and root of the records
    /// before it.
    CheckpointInvalid(usize),
    /// Record `index` names a parent or cut-off that is not an earlier record.
    ParentNotFound(usize),
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
            WriteError::EmptySelection => write!(f, "a partial pack needs a session or a time bound"),
            WriteError::NothingSelected => write!(f, "no record matches the selection"),
            WriteError::NotCovered(i) => {
                write!(f, "no checkpoint covers record {i}; the kernel writes one periodically")
            }
            WriteError::CheckpointInvalid(i) => write!(
                f,
                "the CHECKPOINT at record {i} does not state the count and root of the records before it"
            ),
            WriteError::ParentNotFound(i) => {
                write!(f, "record {i} names a parent or cut-off that is not an earlier record")
            }
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
    assemble(
        &contents.records,
        None,
        &contents.blobs,
        &contents.withhold,
        None,
        producer,
        sign,
    )
}

/// Writes the entries of a pack: records (each followed by its proof item, for a
/// partial pack), blobs, withheld list and the signed manifest.
fn assemble(
    records: &[&[u8]],
    items: Option<&[Vec<u8>]>,
    blobs: &BTreeMap<Hash, &[u8]>,
    withhold: &BTreeSet<Hash>,
    partial: Option<PartialClaims>,
    producer: [u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<Vec<u8>, WriteError> {
    if records.is_empty() {
        return Err(WriteError::Empty);
    }
    let mut records_merkle = MerkleAccumulator::new();
    let mut referenced = BTreeSet::new();
    let mut head = [0u8; 32];
    let mut per_kind = [0u64; 9];
    let mut escalations = 0u64;
    let mut streams = BTreeSet::new();
    for (i, bytes) in records.iter().enumerate() {
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
    for (name, data) in blobs {
        let digest: Hash = Sha256::digest(data).into();
        if digest != *name {
            return Err(WriteError::BlobHashMismatch(*name));
        }
        if !referenced.contains(name) {
            return Err(WriteError::BlobUnreferenced(*name));
        }
    }
    let present: Vec<(&Hash, &&[u8])> = blobs.iter().filter(|(n, _)| !withhold.contains(*n)).collect();
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
    let segments = (records.len() as u64).div_ceil(SEGMENT_RECORDS);
    let manifest = Manifest {
        producer,
        records: records.len() as u64,
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
        partial,
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
    let per_segment = SEGMENT_RECORDS as usize;
    for (i, chunk) in records.chunks(per_segment).enumerate() {
        let data: Vec<u8> = match items {
            None => chunk.concat(),
            Some(items) => {
                let start = i.saturating_mul(per_segment);
                let mut data = Vec::new();
                for (k, r) in chunk.iter().enumerate() {
                    data.extend_from_slice(r);
                    if let Some(item) = items.get(start.saturating_add(k)) {
                        data.extend_from_slice(item);
                    }
                }
                data
            }
        };
        entry(&mut out, &format!("records/{i:06}.cbor"), &data)?;
    }
    out.resize(out.len().saturating_add(BLOCK.saturating_mul(2)), 0);
    Ok(out)
}

/// An RFC 9162 Merkle tree over a log's record hashes, kept whole (2n hashes) so that
/// inclusion and consistency proofs for any prefix of it cost O(log² n).
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[k][i]`: the root of the perfect subtree of leaves `i·2^k .. (i+1)·2^k`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// The tree whose leaf data are `leaves` (for records: their 32-byte hashes).
    pub fn new(leaves: impl IntoIterator<Item = Hash>) -> MerkleTree {
        let mut levels = vec![leaves.into_iter().map(|d| leaf_hash(&d)).collect::<Vec<Hash>>()];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let next: Vec<Hash> = last
                .chunks_exact(2)
                .map(|p| match p {
                    [a, b] => node_hash(a, b),
                    _ => [0; 32],
                })
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// MTH of leaves `a..b` (`a < b ≤ len`).
    fn mth(&self, a: u64, b: u64) -> Hash {
        let n = b.saturating_sub(a);
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && a.checked_rem(n) == Some(0) {
            let level = n.trailing_zeros() as usize;
            let i = usize::try_from(a.checked_div(n).unwrap_or(0)).unwrap_or(usize::MAX);
            if let Some(h) = self.levels.get(level).and_then(|l| l.get(i)) {
                return *h;
            }
        }
        let k = split(n);
        node_hash(&self.mth(a, a.saturating_add(k)), &self.mth(a.saturating_add(k), b))
    }

    /// The RFC 9162 root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Hash {
        self.mth(0, size.min(self.len()))
    }

    /// RFC 9162 §2.1.3.1 `PATH(index, D[0:size])`: the inclusion proof of leaf `index` in
    /// the tree of the first `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        self.path(index, 0, size.min(self.len()), &mut out);
        out
    }

    fn path(&self, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) {
        let n = b.saturating_sub(a);
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, a, a.saturating_add(k), out);
            out.push(self.mth(a.saturating_add(k), b));
        } else {
            self.path(m.saturating_sub(k), a.saturating_add(k), b, out);
            out.push(self.mth(a, a.saturating_add(k)));
        }
    }

    /// RFC 9162 §2.1.4.1 `PROOF(first, D[0:size])`: the consistency proof from the tree of
    /// the first `first` leaves to that of the first `size` (`0 < first < size`).
    pub fn consistency(&self, first: u64, size: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        let size = size.min(self.len());
        if first > 0 && first < size {
            self.subproof(first, 0, size, true, &mut out);
        }
        out
    }

    fn subproof(&self, m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = b.saturating_sub(a);
        if m == n {
            if !complete {
                out.push(self.mth(a, b));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, a, a.saturating_add(k), complete, out);
            out.push(self.mth(a.saturating_add(k), b));
        } else {
            self.subproof(m.saturating_sub(k), a.saturating_add(k), b, false, out);
            out.push(self.mth(a, a.saturating_add(k)));
        }
    }
}

/// The largest power of two smaller than `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    let p = 1u64 << (63u32.saturating_sub(n.saturating_sub(1).leading_zeros()));
    if p >= n {
        p >> 1
    } else {
        p
    }
}

/// The bytes of a partial pack's proof item `[index, inclusion, consistency]`
/// (spec/evidencepack.md §9.3).
pub fn proof_item(index: u64, inclusion: &[Hash], consistency: &[Hash]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(3).uint(index).array(inclusion.len());
    for h in inclusion {
        w.bytes(h);
    }
    w.array(consistency.len());
    for h in consistency {
        w.bytes(h);
    }
    w.into_bytes()
}

/// Which records of a log a partial pack carries (spec/evidencepack.md §9.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialPlan {
    /// The checkpoint's position in the log (its count: the tree size T).
    pub checkpoint: usize,
    /// Positions carried, ascending, ending with the checkpoint's.
    pub carried: Vec<usize>,
    /// How many of them are selected (the others are TRUST_EVENTs, parents of carried
    /// DECISIONs, APPROVALs and EFFECTs, and cut-off CHECKPOINTs).
    pub selected: usize,
}

/// Chooses what a partial pack of `records` (a whole log, in order) for `selection`
/// carries: the latest CHECKPOINT, every selected record before it, every TRUST_EVENT
/// before it, the parents of every carried DECISION, APPROVAL and EFFECT (repeatedly),
/// and the cut-off of every carried TRUST_EVENT.
pub fn plan_partial<R: AsRef<[u8]>>(records: &[R], selection: &Selection<'_>) -> Result<PartialPlan, WriteError> {
    if selection.is_empty() {
        return Err(WriteError::EmptySelection);
    }
    let mut decoded = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        decoded.push(Record::decode(r.as_ref()).map_err(|c| WriteError::Record(i, c))?);
    }
    let selected: Vec<usize> = decoded
        .iter()
        .enumerate()
        .filter(|(_, r)| selection.matches(r))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = selected.first() else {
        return Err(WriteError::NothingSelected);
    };
    let Some(c) = decoded.iter().rposition(|r| r.kind == Kind::Checkpoint) else {
        return Err(WriteError::NotCovered(first));
    };
    if let Some(&late) = selected.iter().find(|&&p| p > c) {
        return Err(WriteError::NotCovered(late));
    }
    let mut acc = MerkleAccumulator::new();
    decoded.iter().take(c).for_each(|r| {
        acc.push(&r.hash);
    });
    match decoded.get(c).map(|r| &r.body) {
        Some(Body::Checkpoint { count, root, .. }) if *count == c as u64 && *root == acc.root() => {}
        _ => return Err(WriteError::CheckpointInvalid(c)),
    }
    let positions: BTreeMap<Hash, usize> = decoded.iter().take(c).enumerate().map(|(i, r)| (r.hash, i)).collect();
    let mut carried = vec![false; c];
    for &p in selected.iter().filter(|&&p| p < c) {
        if let Some(x) = carried.get_mut(p) {
            *x = true;
        }
    }
    for (p, r) in decoded.iter().take(c).enumerate() {
        if r.kind == Kind::TrustEvent {
            if let Some(x) = carried.get_mut(p) {
                *x = true;
            }
        }
    }
    // Parents are earlier: one pass from the end reaches every carried record's parents
    // before it is itself looked at.
    for p in (0..c).rev() {
        if !carried.get(p).copied().unwrap_or(false) {
            continue;
        }
        let Some(r) = decoded.get(p) else { continue };
        let mut needs: Vec<Hash> = Vec::new();
        if matches!(r.kind, Kind::Decision | Kind::Approval | Kind::Effect) {
            needs.extend(r.parents.iter());
        }
        if let Body::TrustEvent { cutoff: Some(cut), .. } = r.body {
            needs.push(cut);
        }
        for h in needs {
            match positions.get(&h) {
                Some(&q) if q < p => {
                    if let Some(x) = carried.get_mut(q) {
                        *x = true;
                    }
                }
                _ => return Err(WriteError::ParentNotFound(p)),
            }
        }
    }
    let mut list: Vec<usize> = carried.iter().enumerate().filter(|(_, &x)| x).map(|(i, _)| i).collect();
    list.push(c);
    Ok(PartialPlan {
        checkpoint: c,
        carried: list,
        selected: selected.len(),
    })
}

/// A partial pack, written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialPack {
    /// The canonical tar.
    pub bytes: Vec<u8>,
    /// What it carries.
    pub plan: PartialPlan,
    /// The checkpoint's hash.
    pub checkpoint: Hash,
    /// Blobs listed as withheld (not available, or asked to be withheld).
    pub withheld: usize,
}

/// Writes a partial pack of `records` (a whole log, in order) for `selection`
/// (spec/evidencepack.md §9.5): [`plan_partial`], then [`write_partial_plan`]. `blobs`
/// looks up a blob's content by name; a referenced blob it does not have, or one in
/// `withhold`, is listed as withheld. `producer` signs the manifest with `sign`.
///
/// ```ignore
/// let pack = write_partial_pack(&records, |h| store.blob(h), &Selection { session: Some("s-1"), ..Default::default() },
///                               &BTreeSet::new(), kernel.public_key(), |m| kernel.sign(m))?;
/// ```
pub fn write_partial_pack<R: AsRef<[u8]>, B: AsRef<[u8]>>(
    records: &[R],
    blobs: impl FnMut(&Hash) -> Option<B>,
    selection: &Selection<'_>,
    withhold: &BTreeSet<Hash>,
    producer: [u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<PartialPack, WriteError> {
    let plan = plan_partial(records, selection)?;
    let (bytes, withheld) = write_partial_plan(records, &plan, selection, blobs, withhold, producer, sign)?;
    let checkpoint = records
        .get(plan.checkpoint)
        .map(|r| sha256(r.as_ref()))
        .unwrap_or_default();
    Ok(PartialPack {
        bytes,
        plan,
        checkpoint,
        withheld,
    })
}

/// Writes the partial pack a plan describes, as it is (test vectors write invalid plans
/// on purpose): the tree size is `plan.checkpoint`, each carried record gets its
/// proof item (an inclusion proof below the tree size, empty paths at or above it, a
/// consistency proof for a CHECKPOINT with `0 < count < tree size`). Returns the tar and
/// the number of withheld blobs.
pub fn write_partial_plan<R: AsRef<[u8]>, B: AsRef<[u8]>>(
    records: &[R],
    plan: &PartialPlan,
    selection: &Selection<'_>,
    mut blobs: impl FnMut(&Hash) -> Option<B>,
    withhold: &BTreeSet<Hash>,
    producer: [u8; 32],
    sign: impl FnOnce(&[u8]) -> [u8; 64],
) -> Result<(Vec<u8>, usize), WriteError> {
    let size = plan.checkpoint as u64;
    let tree = MerkleTree::new(records.iter().take(plan.checkpoint).map(|r| sha256(r.as_ref())));
    let root = tree.root(size);
    let claims = PartialClaims::new(size, root, selection).ok_or(WriteError::EmptySelection)?;
    let mut carried: Vec<&[u8]> = Vec::with_capacity(plan.carried.len());
    let mut items = Vec::with_capacity(plan.carried.len());
    let mut contents: BTreeMap<Hash, B> = BTreeMap::new();
    for &p in &plan.carried {
        let bytes = records.get(p).map(|r| r.as_ref()).ok_or(WriteError::Empty)?;
        let rec = Record::decode(bytes).map_err(|c| WriteError::Record(p, c))?;
        let position = p as u64;
        let inclusion = if position < size {
            tree.inclusion(position, size)
        } else {
            Vec::new()
        };
        let consistency = match rec.body {
            Body::Checkpoint { count, .. } if position < size => tree.consistency(count, size),
            _ => Vec::new(),
        };
        items.push(proof_item(position, &inclusion, &consistency));
        if let Some(name) = blob_reference(&rec.body) {
            if !withhold.contains(&name) && !contents.contains_key(&name) {
                if let Some(data) = blobs(&name) {
                    if sha256(data.as_ref()) != name {
                        return Err(WriteError::BlobHashMismatch(name));
                    }
                    contents.insert(name, data);
                }
            }
        }
        carried.push(bytes);
    }
    let present: BTreeMap<Hash, &[u8]> = contents.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let referenced: BTreeSet<Hash> = carried
        .iter()
        .filter_map(|b| Record::decode(b).ok())
        .filter_map(|r| blob_reference(&r.body))
        .collect();
    let withheld = referenced.iter().filter(|n| !present.contains_key(*n)).count();
    let bytes = assemble(&carried, Some(&items), &present, withhold, Some(claims), producer, sign)?;
    Ok((bytes, withheld))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_proofs_verify() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| sha256(&i.to_be_bytes())).collect();
        let tree = MerkleTree::new(leaves.iter().copied());
        for size in 1..=leaves.len() as u64 {
            let mut acc = MerkleAccumulator::new();
            leaves.iter().take(size as usize).for_each(|l| {
                acc.push(l);
            });
            let root = tree.root(size);
            assert_eq!(root, acc.root(), "size {size}");
            for m in 0..size {
                let p = tree.inclusion(m, size);
                assert!(verify_core::verify_inclusion(
                    m,
                    size,
                    &leaf_hash(&leaves[m as usize]),
                    &p,
                    &root
                ));
            }
            for first in 1..size {
                let p = tree.consistency(first, size);
                assert!(
                    verify_core::verify_consistency(first, &tree.root(first), size, &root, &p),
                    "{first} -> {size}"
                );
            }
        }
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for n in 2u64..300 {
            let k = split(n);
            assert!(k.is_power_of_two() && k < n && 2 * k >= n, "{n}");
        }
    }
}
