//! The streaming pack reader: feed the uncompressed pack in chunks of any size; records
//! are verified as they stream by; nothing is extracted or allocated.
//!
//! Layout it enforces (spec/evidencepack.md), in this order:
//! `manifest.cbor`, `withheld.cbor`, `blobs/sha256/<hex>` (ascending), then
//! `records/000000.cbor`, `records/000001.cbor`, … and exactly two zero blocks.

use sha2::{Digest, Sha256};
use verify_core::cbor::Reader;
use verify_core::{
    empty_root, leaf_hash, Body, ConsistencyCheck, ErrorCode, Hash, InclusionCheck, MerkleAccumulator, Record, Sign1,
    SignatureCheck, Verified, Verifier, VerifyError, ROLE_KERNEL,
};

use crate::error::{PackCode, PackError};
use crate::manifest::{Manifest, MAX_MANIFEST_SIZE};
use crate::tar::{self, BLOCK};

/// Records per segment: every segment but the last holds exactly this many.
pub const SEGMENT_RECORDS: u64 = 16_384;
/// Size of one withheld-list item: a CBOR byte string of 32 bytes.
pub const WITHHELD_ITEM: usize = 34;

/// One entry of the blob table: a present or withheld blob's name and whether a
/// record referenced it.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlobSlot {
    name: Hash,
    referenced: bool,
}

/// Memory the caller provides besides the verifier's tables.
#[derive(Debug)]
pub struct PackBuffers<'b> {
    /// Holds one record while it crosses chunk boundaries: at least the largest record
    /// in the pack (verify-core allows 65,536 bytes).
    pub record: &'b mut [u8],
    /// One slot per blob, present or withheld.
    pub blobs: &'b mut [BlobSlot],
}

/// Notifications as the pack streams by (all default to doing nothing).
pub trait Observer {
    /// A record verified, at its 0-based index.
    fn record(&mut self, _index: u64, _record: &Record<'_>) {}
    /// Partial packs: the record at `index` in the pack is at `position` in its log
    /// (proven by its inclusion proof); called just before [`Observer::record`].
    fn position(&mut self, _index: u64, _position: u64) {}
    /// A withheld blob's name.
    fn withheld(&mut self, _name: &Hash) {}
    /// A present blob's name and size, once its content was checked.
    fn blob(&mut self, _name: &Hash, _size: u64) {}
    /// Bytes consumed so far (for progress reports).
    fn progress(&mut self, _offset: u64) {}
    /// A signature check already computed for record `index` (for example on another
    /// core); `None` to have the reader verify it. Checks are bound to the record's hash,
    /// so a wrong answer can only cost time, never accept a bad record.
    fn precheck(&mut self, _index: u64, _record: &[u8]) -> Option<SignatureCheck> {
        None
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;
impl Observer for NoObserver {}

/// What a verified pack established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackSummary {
    /// The record-level summary.
    pub verified: Verified,
    /// The verified manifest.
    pub manifest: Manifest,
    /// Size of the uncompressed pack.
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Manifest,
    Withheld,
    Blobs,
    Segments,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Manifest,
    Withheld,
    Blob,
    Segment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Data(Entry, u64),
    Padding(usize),
    SecondEndBlock,
    Done,
}

/// The streaming reader. See the module docs.
#[derive(Debug)]
pub struct PackReader<'t> {
    verifier: Verifier<'t>,
    record: &'t mut [u8],
    record_len: usize,
    blobs: &'t mut [BlobSlot],
    withheld_n: usize,
    present_n: usize,
    header: [u8; BLOCK],
    header_len: usize,
    manifest: [u8; MAX_MANIFEST_SIZE],
    manifest_len: usize,
    withheld_item: [u8; WITHHELD_ITEM],
    withheld_item_len: usize,
    blob_hasher: Sha256,
    blob_name: Hash,
    blob_size: u64,
    state: State,
    phase: Phase,
    offset: u64,
    entry: u32,
    entries: u32,
    entry_name: [u8; tar::MAX_NAME],
    entry_name_len: usize,
    segments: u64,
    segment_records: u64,
    blobs_merkle: MerkleAccumulator,
    withheld_merkle: MerkleAccumulator,
    failed: Option<PackError>,
    /// A partial pack's tree (T, R), once its manifest is read.
    tree: Option<(u64, Hash)>,
    /// Partial packs: the proof item after the record in the buffer, being read.
    item: Option<ItemParser>,
    /// Partial packs: the position of the last record.
    last_position: Option<u64>,
    /// Two-pass verification: blob references left to a second pass.
    deferred: Option<Deferred<'t>>,
}

/// What a first pass that defers reference checks keeps (`new_deferring_references`).
#[derive(Debug)]
#[cfg_attr(not(feature = "std"), allow(dead_code, reason = "two-pass verification is std-only"))]
struct Deferred<'t> {
    /// The blob table a single pass would have: present and withheld names.
    capacity: usize,
    last_present: Option<Hash>,
    /// For each accepted EFFECT in order, the intent its permit belongs to.
    effects: &'t mut [u32],
    effects_n: usize,
    /// A buffer smaller than a single pass's table ran out: the result of this pass
    /// must not be used (verify in one pass instead).
    fell_short: bool,
}

/// What a first pass that deferred its reference checks saw, for the second pass.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FirstPass {
    /// Records accepted, and the root over their hashes.
    pub(crate) records: u64,
    pub(crate) records_root: Hash,
    /// Present and withheld blobs read, and the roots over their names.
    pub(crate) blobs: u64,
    pub(crate) blobs_root: Hash,
    pub(crate) withheld: u64,
    pub(crate) withheld_root: Hash,
    /// EFFECT permit links recorded.
    pub(crate) effects: usize,
    pub(crate) fell_short: bool,
}

/// Most hashes in a proof item's inclusion or consistency path (spec/evidencepack.md §9.3).
pub const MAX_PROOF_HASHES: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemStage {
    Open,
    Index,
    InclusionLen,
    Inclusion(u64),
    ConsistencyLen,
    Consistency(u64),
    Done,
}

/// A partial pack's proof item `[index, inclusion, consistency]`, read byte by byte in
/// its one exact form (spec/evidencepack.md §9.3), checking the paths as they arrive.
#[derive(Clone, Debug)]
struct ItemParser {
    stage: ItemStage,
    head: [u8; 9],
    head_len: usize,
    hash: [u8; 34],
    hash_len: usize,
    index: u64,
    inclusion_len: u64,
    consistency_len: u64,
    leaf: Hash,
    tree_size: u64,
    inclusion: InclusionCheck,
    /// For a CHECKPOINT below the tree size with count > 0: its consistency proof.
    consistency: Option<ConsistencyCheck>,
}

/// A byte that cannot continue a proof item.
#[derive(Clone, Copy, Debug)]
struct BadItem;

impl ItemParser {
    fn new(record_hash: &Hash, tree_size: u64) -> ItemParser {
        let leaf = leaf_hash(record_hash);
        ItemParser {
            stage: ItemStage::Open,
            head: [0; 9],
            head_len: 0,
            hash: [0; 34],
            hash_len: 0,
            index: 0,
            inclusion_len: 0,
            consistency_len: 0,
            leaf,
            tree_size,
            inclusion: InclusionCheck::new(0, 0, &leaf),
            consistency: None,
        }
    }

    /// Reads one CBOR head of `major` into `self.head`; `Some(argument)` once complete.
    fn head_byte(&mut self, b: u8, major: u8) -> Result<Option<u64>, BadItem> {
        if let Some(slot) = self.head.get_mut(self.head_len) {
            *slot = b;
        }
        self.head_len = self.head_len.saturating_add(1);
        let first = self.head.first().copied().unwrap_or(0);
        if first >> 5 != major {
            return Err(BadItem);
        }
        let extra = match first & 0x1f {
            0..=23 => 0usize,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(BadItem),
        };
        if self.head_len < extra.saturating_add(1) {
            return Ok(None);
        }
        self.head_len = 0;
        let value = if extra == 0 {
            u64::from(first & 0x1f)
        } else {
            self.head
                .get(1..extra.saturating_add(1))
                .unwrap_or(&[])
                .iter()
                .fold(0u64, |v, &b| (v << 8) | u64::from(b))
        };
        // Shortest form only.
        let min = match extra {
            0 => 0,
            1 => 24,
            2 => 0x100,
            4 => 0x1_0000,
            _ => 0x1_0000_0000,
        };
        if value < min {
            return Err(BadItem);
        }
        Ok(Some(value))
    }

    /// Reads one byte of a path hash (`58 20` and 32 bytes); `Some(hash)` once complete.
    fn hash_byte(&mut self, b: u8) -> Result<Option<Hash>, BadItem> {
        let expected = match self.hash_len {
            0 => Some(0x58),
            1 => Some(0x20),
            _ => None,
        };
        if expected.is_some_and(|e| e != b) {
            return Err(BadItem);
        }
        if let Some(slot) = self.hash.get_mut(self.hash_len) {
            *slot = b;
        }
        self.hash_len = self.hash_len.saturating_add(1);
        if self.hash_len < 34 {
            return Ok(None);
        }
        self.hash_len = 0;
        let mut h = [0u8; 32];
        h.copy_from_slice(self.hash.get(2..).unwrap_or(&[0; 32]));
        Ok(Some(h))
    }

    /// Feeds one byte. `record` is the record the item follows (to set up the
    /// consistency proof of a CHECKPOINT).
    fn byte(&mut self, b: u8, record: &[u8]) -> Result<(), BadItem> {
        match self.stage {
            ItemStage::Open => {
                if b != 0x83 {
                    return Err(BadItem);
                }
                self.stage = ItemStage::Index;
            }
            ItemStage::Index => {
                if let Some(index) = self.head_byte(b, 0)? {
                    self.index = index;
                    self.inclusion = InclusionCheck::new(index, self.tree_size, &self.leaf);
                    self.stage = ItemStage::InclusionLen;
                }
            }
            ItemStage::InclusionLen => {
                if let Some(n) = self.head_byte(b, 4)? {
                    if n > MAX_PROOF_HASHES {
                        return Err(BadItem);
                    }
                    self.inclusion_len = n;
                    self.stage = if n == 0 {
                        ItemStage::ConsistencyLen
                    } else {
                        ItemStage::Inclusion(n)
                    };
                }
            }
            ItemStage::Inclusion(left) => {
                if let Some(h) = self.hash_byte(b)? {
                    self.inclusion.step(&h);
                    let left = left.saturating_sub(1);
                    self.stage = if left == 0 {
                        ItemStage::ConsistencyLen
                    } else {
                        ItemStage::Inclusion(left)
                    };
                }
            }
            ItemStage::ConsistencyLen => {
                if let Some(n) = self.head_byte(b, 4)? {
                    if n > MAX_PROOF_HASHES {
                        return Err(BadItem);
                    }
                    self.consistency_len = n;
                    if n > 0 {
                        // A CHECKPOINT below the tree size proves its root to the tree's.
                        if let Ok(Record {
                            body: Body::Checkpoint { count, root, .. },
                            ..
                        }) = Record::decode(record)
                        {
                            if count > 0 && count < self.tree_size {
                                self.consistency = Some(ConsistencyCheck::new(count, &root, self.tree_size));
                            }
                        }
                    }
                    self.stage = if n == 0 {
                        ItemStage::Done
                    } else {
                        ItemStage::Consistency(n)
                    };
                }
            }
            ItemStage::Consistency(left) => {
                if let Some(h) = self.hash_byte(b)? {
                    if let Some(c) = &mut self.consistency {
                        c.step(&h);
                    }
                    let left = left.saturating_sub(1);
                    self.stage = if left == 0 {
                        ItemStage::Done
                    } else {
                        ItemStage::Consistency(left)
                    };
                }
            }
            ItemStage::Done => return Err(BadItem),
        }
        Ok(())
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(b.wrapping_sub(b'a').wrapping_add(10)),
        _ => None,
    }
}

pub(crate) fn parse_blob_name(name: &str) -> Option<Hash> {
    let hex = name.strip_prefix("blobs/sha256/")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
            return None;
        };
        *o = (hex_digit(hi)? << 4) | hex_digit(lo)?;
    }
    Some(out)
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("records/")?.strip_suffix(".cbor")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The content a record refers to, which a pack must carry as a blob or list as
/// withheld: an INTENT's arguments, an EFFECT's output, a POLICY's bundle, an
/// ATTESTATION's subject.
pub fn blob_reference(body: &Body<'_>) -> Option<Hash> {
    match *body {
        Body::Intent { args, .. } => Some(args),
        Body::Effect { output, .. } => Some(output),
        Body::Policy { bundle, .. } => Some(bundle),
        Body::Attestation { subject, .. } => Some(subject),
        _ => None,
    }
}

/// Bytes that are not the heads of a tagged COSE_Sign1 record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotARecord;

/// The length of the record at the start of `buf`, from its CBOR heads alone (tag 18,
/// array of 4, byte string, empty map, byte string, byte string of 64 bytes):
/// `Ok(None)` if more bytes are needed to tell. This is how records are framed in a
/// CBOR sequence (spec/evidencepack.md §2).
pub fn record_len(buf: &[u8]) -> Result<Option<usize>, NotARecord> {
    let mut pos = 0usize;
    // (major type, required argument; None = a byte-string length to skip)
    const STEPS: [(u8, Option<u64>); 6] = [
        (6, Some(18)),
        (4, Some(4)),
        (2, None),
        (5, Some(0)),
        (2, None),
        (2, Some(64)),
    ];
    for (major, want) in STEPS {
        let Some(rest) = buf.get(pos..) else { return Ok(None) };
        let mut r = Reader::new(rest);
        let (m, arg) = match r.head() {
            Ok(h) => h,
            Err(verify_core::CborError::Truncated) => return Ok(None),
            Err(_) => return Err(NotARecord),
        };
        if m != major || want.is_some_and(|w| w != arg) {
            return Err(NotARecord);
        }
        pos = pos.checked_add(r.position()).ok_or(NotARecord)?;
        if major == 2 {
            pos = pos
                .checked_add(usize::try_from(arg).map_err(|_| NotARecord)?)
                .ok_or(NotARecord)?;
        }
    }
    Ok(Some(pos))
}

impl<'t> PackReader<'t> {
    /// A reader that verifies records with `verifier` (already given its anchors), using
    /// `buffers` for records in flight and the blob table.
    pub fn new(verifier: Verifier<'t>, buffers: PackBuffers<'t>) -> PackReader<'t> {
        PackReader {
            verifier,
            record: buffers.record,
            record_len: 0,
            blobs: buffers.blobs,
            withheld_n: 0,
            present_n: 0,
            header: [0; BLOCK],
            header_len: 0,
            manifest: [0; MAX_MANIFEST_SIZE],
            manifest_len: 0,
            withheld_item: [0; WITHHELD_ITEM],
            withheld_item_len: 0,
            blob_hasher: Sha256::new(),
            blob_name: [0; 32],
            blob_size: 0,
            state: State::Header,
            phase: Phase::Manifest,
            offset: 0,
            entry: 0,
            entries: 0,
            entry_name: [0; tar::MAX_NAME],
            entry_name_len: 0,
            segments: 0,
            segment_records: 0,
            blobs_merkle: MerkleAccumulator::new(),
            withheld_merkle: MerkleAccumulator::new(),
            failed: None,
            tree: None,
            item: None,
            last_position: None,
            deferred: None,
        }
    }

    #[cfg(feature = "std")]
    /// A reader for the first pass of a two-pass verification (`std` only): it checks
    /// everything except the blob references (§4.3: each reference present or withheld,
    /// every blob referenced), and keeps no present blob names (`buffers.blobs` holds only
    /// withheld ones; `blob_capacity` is the table size a single pass would have, for
    /// identical capacity errors). With a verifier from
    /// [`Verifier::new_deferring_effect_match`], `effects` receives each accepted EFFECT's
    /// permitted intent. The second pass must check what was left out.
    pub(crate) fn new_deferring_references(
        verifier: Verifier<'t>,
        buffers: PackBuffers<'t>,
        blob_capacity: usize,
        effects: &'t mut [u32],
    ) -> PackReader<'t> {
        let mut r = PackReader::new(verifier, buffers);
        r.deferred = Some(Deferred {
            capacity: blob_capacity,
            last_present: None,
            effects,
            effects_n: 0,
            fell_short: false,
        });
        r
    }

    /// The first pass's view, for the second (before [`PackReader::finish`]).
    #[cfg(feature = "std")]
    pub(crate) fn first_pass(&self) -> FirstPass {
        FirstPass {
            records: self.verifier.count(),
            records_root: self.verifier.root(),
            blobs: self.present_n as u64,
            blobs_root: self.blobs_merkle.root(),
            withheld: self.withheld_n as u64,
            withheld_root: self.withheld_merkle.root(),
            effects: self.deferred.as_ref().map_or(0, |d| d.effects_n),
            fell_short: self.deferred.as_ref().is_some_and(|d| d.fell_short),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn name(&self) -> &str {
        core::str::from_utf8(self.entry_name.get(..self.entry_name_len).unwrap_or(&[])).unwrap_or("")
    }

    fn fail(&self, code: PackCode, detail: &'static str) -> PackError {
        let e = PackError::new(code, self.offset, detail);
        if self.entry_name_len > 0 {
            e.at_entry(self.entry, self.name())
        } else {
            e
        }
    }

    /// Feeds the next chunk. After the first error every call returns it again.
    pub fn feed<O: Observer>(&mut self, chunk: &[u8], obs: &mut O) -> Result<(), PackError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_inner(chunk, obs);
        obs.progress(self.offset);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn feed_inner<O: Observer>(&mut self, mut chunk: &[u8], obs: &mut O) -> Result<(), PackError> {
        while !chunk.is_empty() {
            let used = match self.state {
                State::Header => self.take_header(chunk, obs)?,
                State::Data(entry, remaining) => {
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.len());
                    let data = chunk.get(..n).unwrap_or(&[]);
                    let left = remaining.saturating_sub(n as u64);
                    self.entry_data(entry, data, left, obs)?;
                    self.advance_offset(n);
                    if left == 0 {
                        self.end_entry(entry, obs)?;
                    } else {
                        self.state = State::Data(entry, left);
                    }
                    n
                }
                State::Padding(remaining) => {
                    let n = remaining.min(chunk.len());
                    if chunk.get(..n).unwrap_or(&[]).iter().any(|&b| b != 0) {
                        return Err(self.fail(PackCode::TarNonZeroPadding, "padding after an entry is not zero"));
                    }
                    self.advance_offset(n);
                    let left = remaining.saturating_sub(n);
                    self.state = if left == 0 { State::Header } else { State::Padding(left) };
                    if left == 0 {
                        self.entry_name_len = 0;
                    }
                    n
                }
                State::SecondEndBlock => self.take_end_block(chunk)?,
                State::Done => {
                    return Err(self.fail(PackCode::TarTrailingData, "bytes follow the two end blocks"));
                }
            };
            chunk = chunk.get(used..).unwrap_or(&[]);
        }
        Ok(())
    }

    fn advance_offset(&mut self, n: usize) {
        self.offset = self.offset.saturating_add(n as u64);
    }

    fn take_block(&mut self, chunk: &[u8]) -> (usize, bool) {
        let n = BLOCK.saturating_sub(self.header_len).min(chunk.len());
        if let (Some(dst), Some(src)) = (
            self.header.get_mut(self.header_len..self.header_len.saturating_add(n)),
            chunk.get(..n),
        ) {
            dst.copy_from_slice(src);
        }
        self.header_len = self.header_len.saturating_add(n);
        self.advance_offset(n);
        (n, self.header_len == BLOCK)
    }

    fn take_end_block(&mut self, chunk: &[u8]) -> Result<usize, PackError> {
        let (n, full) = self.take_block(chunk);
        if full {
            self.header_len = 0;
            if self.header.iter().any(|&b| b != 0) {
                return Err(self.fail(PackCode::TarNonZeroPadding, "the second end block is not zero"));
            }
            self.state = State::Done;
        }
        Ok(n)
    }

    fn take_header<O: Observer>(&mut self, chunk: &[u8], obs: &mut O) -> Result<usize, PackError> {
        let (n, full) = self.take_block(chunk);
        if !full {
            return Ok(n);
        }
        self.header_len = 0;
        if self.header.iter().all(|&b| b == 0) {
            // First end block. The layout must be complete: at least one segment.
            if self.phase != Phase::Segments {
                return Err(self.fail(PackCode::UnexpectedEntry, "the archive ends before any record segment"));
            }
            self.state = State::SecondEndBlock;
            return Ok(n);
        }
        let h = tar::decode(&self.header).map_err(|e| {
            let code = match e {
                tar::HeaderError::Checksum => PackCode::TarHeaderChecksum,
                tar::HeaderError::NotRegularFile => PackCode::TarNotRegularFile,
                tar::HeaderError::BadPath => PackCode::TarBadPath,
                tar::HeaderError::NonCanonical => PackCode::TarNonCanonicalHeader,
            };
            self.fail(code, "tar header refused")
        })?;
        self.entry = self.entries;
        self.entries = self.entries.saturating_add(1);
        let name = h.name();
        self.entry_name_len = name.len().min(tar::MAX_NAME);
        if let (Some(dst), Some(src)) = (
            self.entry_name.get_mut(..self.entry_name_len),
            name.as_bytes().get(..self.entry_name_len),
        ) {
            dst.copy_from_slice(src);
        }
        let entry = self.classify(h.size)?;
        if h.size == 0 {
            self.end_entry(entry, obs)?;
        } else {
            self.state = State::Data(entry, h.size);
        }
        Ok(n)
    }

    /// Checks the entry's name and size against the layout; moves the phase on.
    fn classify(&mut self, size: u64) -> Result<Entry, PackError> {
        let name_buf = self.entry_name;
        let name = core::str::from_utf8(name_buf.get(..self.entry_name_len).unwrap_or(&[])).unwrap_or("");
        let unexpected = |s: &Self, d| Err(s.fail(PackCode::UnexpectedEntry, d));
        match (self.phase, name) {
            (Phase::Manifest, "manifest.cbor") => {
                if size > MAX_MANIFEST_SIZE as u64 {
                    return Err(self.fail(PackCode::ManifestInvalid, "manifest larger than 1024 bytes"));
                }
                self.phase = Phase::Withheld;
                Ok(Entry::Manifest)
            }
            (Phase::Manifest, _) => unexpected(self, "the first entry must be manifest.cbor"),
            (Phase::Withheld, "withheld.cbor") => {
                if !size.is_multiple_of(WITHHELD_ITEM as u64) {
                    return Err(self.fail(
                        PackCode::WithheldInvalid,
                        "withheld.cbor is not a sequence of 34-byte items",
                    ));
                }
                self.phase = Phase::Blobs;
                Ok(Entry::Withheld)
            }
            (Phase::Withheld, _) => unexpected(self, "the second entry must be withheld.cbor"),
            (Phase::Blobs, n) if n.starts_with("blobs/") => {
                let Some(hash) = parse_blob_name(n) else {
                    return unexpected(self, "blob names are blobs/sha256/ and 64 lowercase hex digits");
                };
                let previous = match &self.deferred {
                    Some(d) => d.last_present,
                    None => self
                        .present_n
                        .checked_sub(1)
                        .and_then(|i| self.blobs.get(self.withheld_n.saturating_add(i)))
                        .map(|p| p.name),
                };
                if previous.is_some_and(|p| hash <= p) {
                    return Err(self.fail(PackCode::BlobOrder, "blob names are not strictly ascending"));
                }
                if self.find_in(0, self.withheld_n, &hash).is_some() {
                    return Err(self.fail(PackCode::BlobOrder, "a blob is both present and listed as withheld"));
                }
                self.blob_name = hash;
                self.blob_hasher = Sha256::new();
                self.blob_size = size;
                Ok(Entry::Blob)
            }
            (Phase::Blobs | Phase::Segments, n) if n.starts_with("records/") => {
                if parse_segment_name(n) != Some(self.segments) {
                    return unexpected(
                        self,
                        "segments are records/000000.cbor, records/000001.cbor, ... in order",
                    );
                }
                if self.segments > 0 && self.segment_records != SEGMENT_RECORDS {
                    return Err(self.fail(
                        PackCode::SegmentInvalid,
                        "only the last segment may hold fewer than 16384 records",
                    ));
                }
                self.phase = Phase::Segments;
                self.segments = self.segments.saturating_add(1);
                self.segment_records = 0;
                Ok(Entry::Segment)
            }
            _ => unexpected(self, "entry not allowed here by the pack layout"),
        }
    }

    fn find_in(&self, start: usize, len: usize, name: &Hash) -> Option<usize> {
        let region = self.blobs.get(start..start.saturating_add(len))?;
        region
            .binary_search_by(|s| s.name.cmp(name))
            .ok()
            .map(|i| i.saturating_add(start))
    }

    /// `left`: the entry's bytes after `data`.
    fn entry_data<O: Observer>(&mut self, entry: Entry, data: &[u8], left: u64, obs: &mut O) -> Result<(), PackError> {
        match entry {
            Entry::Manifest => {
                let end = self.manifest_len.saturating_add(data.len());
                let dst = self.manifest.get_mut(self.manifest_len..end);
                let Some(dst) = dst else {
                    return Err(self.fail(PackCode::ManifestInvalid, "manifest larger than 1024 bytes"));
                };
                dst.copy_from_slice(data);
                self.manifest_len = end;
                Ok(())
            }
            Entry::Withheld => {
                for &b in data {
                    if let Some(slot) = self.withheld_item.get_mut(self.withheld_item_len) {
                        *slot = b;
                    }
                    self.withheld_item_len = self.withheld_item_len.saturating_add(1);
                    if self.withheld_item_len == WITHHELD_ITEM {
                        self.withheld_item_len = 0;
                        self.add_withheld(obs)?;
                    }
                }
                Ok(())
            }
            Entry::Blob => {
                self.blob_hasher.update(data);
                Ok(())
            }
            Entry::Segment => self.segment_data(data, left, obs),
        }
    }

    fn add_withheld<O: Observer>(&mut self, obs: &mut O) -> Result<(), PackError> {
        let item = self.withheld_item;
        let (Some(&[0x58, 0x20]), Some(name)) = (item.get(..2), item.get(2..)) else {
            return Err(self.fail(
                PackCode::WithheldInvalid,
                "a withheld item is not a 32-byte CBOR byte string",
            ));
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(name);
        let previous = self.withheld_n.checked_sub(1).and_then(|i| self.blobs.get(i));
        if previous.is_some_and(|p| hash <= p.name) {
            return Err(self.fail(PackCode::WithheldInvalid, "withheld names are not strictly ascending"));
        }
        let short = match &mut self.deferred {
            Some(d) if self.withheld_n >= self.blobs.len() && self.withheld_n < d.capacity => {
                d.fell_short = true;
                true
            }
            _ => false,
        };
        let Some(slot) = self.blobs.get_mut(self.withheld_n) else {
            let detail = if short {
                "withheld names beyond the first pass's table (verify in one pass)"
            } else {
                "blob table is full"
            };
            return Err(self.fail(PackCode::CapacityExceeded, detail));
        };
        *slot = BlobSlot {
            name: hash,
            referenced: false,
        };
        self.withheld_n = self.withheld_n.saturating_add(1);
        self.withheld_merkle.push(&hash);
        obs.withheld(&hash);
        Ok(())
    }

    /// `left`: the segment's bytes after `data` (to judge a record that does not frame
    /// by the whole rest of its segment, however the input was split into chunks).
    fn segment_data<O: Observer>(&mut self, mut data: &[u8], left: u64, obs: &mut O) -> Result<(), PackError> {
        if self.tree.is_some() {
            return self.partial_segment_data(data, left, obs);
        }
        while !data.is_empty() {
            if self.record_len == 0 {
                // Fast path: whole records straight from the caller's chunk, no copy.
                match record_len(data) {
                    Ok(Some(n)) if n <= data.len() => {
                        let (rec, rest) = data.split_at(n);
                        self.verify_record(rec, obs)?;
                        data = rest;
                        continue;
                    }
                    Ok(_) => {}
                    Err(NotARecord) => return Err(self.framing_error(data, (data.len() as u64).saturating_add(left))),
                }
            }
            // Slow path: gather the record in the buffer.
            let want = match record_len(self.record.get(..self.record_len).unwrap_or(&[])) {
                Ok(Some(n)) => n,
                Ok(None) => self.record_len.saturating_add(16).max(16),
                Err(NotARecord) => return Err(self.buffered_framing_error(data, left)),
            };
            if want > self.record.len() {
                return Err(self.too_large());
            }
            let n = want.saturating_sub(self.record_len).min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = self.record.get_mut(self.record_len..self.record_len.saturating_add(n)) {
                dst.copy_from_slice(head);
            }
            self.record_len = self.record_len.saturating_add(n);
            data = rest;
            let framed = record_len(self.record.get(..self.record_len).unwrap_or(&[]));
            if framed.is_err() {
                // Judged now, not when the next chunk comes (or the segment ends).
                return Err(self.buffered_framing_error(data, left));
            }
            if let Ok(Some(total)) = framed {
                if total > self.record.len() {
                    return Err(self.too_large());
                }
                if total == self.record_len {
                    let len = self.record_len;
                    self.record_len = 0;
                    // Move the buffer out for the call (it borrows self mutably).
                    let buf = core::mem::take(&mut self.record);
                    let r = self.verify_record(buf.get(..len).unwrap_or(&[]), obs);
                    self.record = buf;
                    r?;
                }
            }
        }
        Ok(())
    }

    fn too_large(&self) -> PackError {
        let e = VerifyError::new(
            ErrorCode::RecordTooLarge,
            self.verifier.count(),
            None,
            "record larger than the record buffer",
        );
        PackError::record(e, self.offset).at_entry(self.entry, self.name())
    }

    /// The error for a record whose heads do not frame: what the record decoder reports
    /// for the bytes from the record's start to the end of its segment
    /// (spec/evidencepack.md §2), of which `prefix` are known and `total` exist.
    fn framing_error(&self, prefix: &[u8], total: u64) -> PackError {
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let code = verify_core::envelope_error(prefix, total).unwrap_or(ErrorCode::CoseStructure);
        let e = VerifyError::new(
            code,
            self.verifier.count(),
            None,
            "record does not frame as a COSE_Sign1",
        );
        PackError::record(e, self.offset).at_entry(self.entry, self.name())
    }

    fn buffered_framing_error(&self, data: &[u8], left: u64) -> PackError {
        let prefix = self.record.get(..self.record_len).unwrap_or(&[]);
        let total = (self.record_len as u64)
            .saturating_add(data.len() as u64)
            .saturating_add(left);
        self.framing_error(prefix, total)
    }

    fn verify_record<O: Observer>(&mut self, bytes: &[u8], obs: &mut O) -> Result<(), PackError> {
        let index = self.verifier.count();
        if self.segment_records >= SEGMENT_RECORDS {
            return Err(self.fail(PackCode::SegmentInvalid, "a segment holds more than 16384 records"));
        }
        let check = obs.precheck(index, bytes);
        let rec = self
            .verifier
            .push_checked(bytes, check.as_ref())
            .map_err(|e| PackError::record(e, self.offset).at_entry(self.entry, self.name()))?;
        self.segment_records = self.segment_records.saturating_add(1);
        if let Some(d) = &mut self.deferred {
            if matches!(rec.body, Body::Effect { .. }) {
                match d.effects.get_mut(d.effects_n) {
                    Some(slot) => *slot = self.verifier.last_intent().unwrap_or(u32::MAX),
                    None => {
                        d.fell_short = true;
                        return Err(self.fail(
                            PackCode::CapacityExceeded,
                            "more EFFECTs than the first pass's table (verify in one pass)",
                        ));
                    }
                }
                d.effects_n = d.effects_n.saturating_add(1);
            }
        } else {
            self.check_reference(index, &rec)?;
        }
        obs.record(index, &rec);
        Ok(())
    }

    /// §4.3: the blob a verified record references is present or withheld.
    fn check_reference(&mut self, index: u64, rec: &Record<'_>) -> Result<(), PackError> {
        if let Some(name) = blob_reference(&rec.body) {
            let slot = self
                .find_in(0, self.withheld_n, &name)
                .or_else(|| self.find_in(self.withheld_n, self.present_n, &name));
            match slot.and_then(|i| self.blobs.get_mut(i)) {
                Some(s) => s.referenced = true,
                None => {
                    let mut e = self.fail(
                        PackCode::BlobMissing,
                        "a record references content that is neither present nor withheld",
                    );
                    e.subject = Some(name);
                    e.index = Some(index);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// A partial pack's segment data (spec/evidencepack.md §9.3): each record, framed as
    /// in a full pack but always gathered in the record buffer, then its proof item.
    fn partial_segment_data<O: Observer>(&mut self, mut data: &[u8], left: u64, obs: &mut O) -> Result<(), PackError> {
        while !data.is_empty() {
            if let Some(mut item) = self.item.take() {
                let record = self.record.get(..self.record_len).unwrap_or(&[]);
                let mut used = 0usize;
                let mut bad = false;
                for &b in data.iter() {
                    used = used.saturating_add(1);
                    if item.byte(b, record).is_err() {
                        bad = true;
                        break;
                    }
                    if item.stage == ItemStage::Done {
                        break;
                    }
                }
                data = data.get(used..).unwrap_or(&[]);
                if bad {
                    return Err(self.fail(
                        PackCode::ProofInvalid,
                        "a record's proof item is not [index, inclusion path, consistency path] in its exact form",
                    ));
                }
                if item.stage == ItemStage::Done {
                    self.finish_unit(&item, obs)?;
                    self.record_len = 0;
                } else {
                    self.item = Some(item);
                }
                continue;
            }
            // Gather the record (as the full reader's slow path).
            let want = match record_len(self.record.get(..self.record_len).unwrap_or(&[])) {
                Ok(Some(n)) => n,
                Ok(None) => self.record_len.saturating_add(16).max(16),
                Err(NotARecord) => return Err(self.buffered_framing_error(data, left)),
            };
            if want > self.record.len() {
                return Err(self.too_large());
            }
            let n = want.saturating_sub(self.record_len).min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = self.record.get_mut(self.record_len..self.record_len.saturating_add(n)) {
                dst.copy_from_slice(head);
            }
            self.record_len = self.record_len.saturating_add(n);
            data = rest;
            match record_len(self.record.get(..self.record_len).unwrap_or(&[])) {
                Err(NotARecord) => return Err(self.buffered_framing_error(data, left)),
                Ok(Some(total)) if total > self.record.len() => return Err(self.too_large()),
                Ok(Some(total)) if total == self.record_len => {
                    if self.segment_records >= SEGMENT_RECORDS {
                        return Err(self.fail(PackCode::SegmentInvalid, "a segment holds more than 16384 records"));
                    }
                    let hash: Hash = Sha256::digest(self.record.get(..total).unwrap_or(&[])).into();
                    let size = self.tree.map_or(0, |(t, _)| t);
                    self.item = Some(ItemParser::new(&hash, size));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A partial pack's record and its complete proof item: spec/evidencepack.md §9.4,
    /// steps 1 to 6.
    fn finish_unit<O: Observer>(&mut self, item: &ItemParser, obs: &mut O) -> Result<(), PackError> {
        let index = self.verifier.count();
        let (tree_size, tree_root) = self.tree.unwrap_or((0, [0; 32]));
        let fail = |s: &Self, code, detail| {
            let mut e = s.fail(code, detail);
            e.index = Some(index);
            e.position = Some(item.index);
            e
        };
        if self.last_position.is_some_and(|p| item.index <= p) {
            return Err(fail(
                self,
                PackCode::ProofOrder,
                "positions are not strictly ascending: a record carried twice, or out of the log's order",
            ));
        }
        if item.index > tree_size {
            return Err(fail(
                self,
                PackCode::ProofInvalid,
                "position beyond the checkpoint's tree",
            ));
        }
        if item.index == tree_size && item.inclusion_len != 0 {
            return Err(fail(
                self,
                PackCode::ProofInvalid,
                "the checkpoint's own item has an inclusion path",
            ));
        }
        if item.index < tree_size && !item.inclusion.finish(&tree_root) {
            return Err(fail(
                self,
                PackCode::ProofMismatch,
                "the inclusion proof does not lead to the checkpoint's root at this position",
            ));
        }
        let len = self.record_len;
        let buf = core::mem::take(&mut self.record);
        let r = self.verify_at(buf.get(..len).unwrap_or(&[]), index, item, obs);
        self.record = buf;
        if r.is_ok() {
            self.last_position = Some(item.index);
            self.segment_records = self.segment_records.saturating_add(1);
        }
        r
    }

    fn verify_at<O: Observer>(
        &mut self,
        bytes: &[u8],
        index: u64,
        item: &ItemParser,
        obs: &mut O,
    ) -> Result<(), PackError> {
        let (tree_size, tree_root) = self.tree.unwrap_or((0, [0; 32]));
        let mut root_proven = false;
        // Step 4, on a record that decodes (one that does not gets its decoding error
        // from the verifier).
        if let Ok(rec) = Record::decode(bytes) {
            let fail = |s: &Self, code, detail| {
                let mut e = s.fail(code, detail);
                e.index = Some(index);
                e.position = Some(item.index);
                e
            };
            let checkpoint = match rec.body {
                Body::Checkpoint { count, root, .. } => Some((count, root)),
                _ => None,
            };
            if item.index == tree_size && checkpoint.is_none() {
                return Err(fail(
                    self,
                    PackCode::CheckpointInvalid,
                    "the record at the tree size's position is not a CHECKPOINT",
                ));
            }
            match checkpoint {
                Some((count, root)) if item.index < tree_size => {
                    root_proven = if count == 0 {
                        item.consistency_len == 0 && root == empty_root()
                    } else {
                        item.consistency_len > 0 && item.consistency.as_ref().is_some_and(|c| c.finish(&tree_root))
                    };
                }
                _ if item.consistency_len != 0 => {
                    return Err(fail(
                        self,
                        PackCode::ProofInvalid,
                        "a consistency path on a record that is not a CHECKPOINT below the tree size",
                    ));
                }
                _ => {}
            }
        }
        let check = obs.precheck(index, bytes);
        let rec = self
            .verifier
            .push_at(bytes, item.index, root_proven, check.as_ref())
            .map_err(|e| {
                let mut p = PackError::record(e, self.offset).at_entry(self.entry, self.name());
                p.position = Some(item.index);
                p
            })?;
        self.check_reference(index, &rec)?;
        obs.position(index, item.index);
        obs.record(index, &rec);
        Ok(())
    }

    fn end_entry<O: Observer>(&mut self, entry: Entry, obs: &mut O) -> Result<(), PackError> {
        match entry {
            Entry::Manifest => {
                let bytes = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
                let Ok((m, _)) = Manifest::decode(bytes) else {
                    return Err(self.fail(PackCode::ManifestInvalid, "manifest does not decode"));
                };
                if let Some(p) = &m.partial {
                    if self.verifier.set_partial(&p.partial()).is_err() {
                        return Err(self.fail(PackCode::ManifestInvalid, "the manifest's selection is unusable"));
                    }
                    self.tree = Some((p.tree_size, p.tree_root));
                }
            }
            Entry::Withheld => {}
            Entry::Blob => {
                let digest: Hash = core::mem::take(&mut self.blob_hasher).finalize().into();
                if digest != self.blob_name {
                    return Err(self.fail(PackCode::BlobHashMismatch, "the blob's SHA-256 is not its name"));
                }
                let at = self.withheld_n.saturating_add(self.present_n);
                if let Some(d) = &mut self.deferred {
                    // Not kept: the second pass reads the names again.
                    if at >= d.capacity {
                        return Err(self.fail(PackCode::CapacityExceeded, "blob table is full"));
                    }
                    d.last_present = Some(digest);
                } else {
                    let Some(slot) = self.blobs.get_mut(at) else {
                        return Err(self.fail(PackCode::CapacityExceeded, "blob table is full"));
                    };
                    *slot = BlobSlot {
                        name: digest,
                        referenced: false,
                    };
                }
                self.present_n = self.present_n.saturating_add(1);
                self.blobs_merkle.push(&digest);
                obs.blob(&digest, self.blob_size);
            }
            Entry::Segment => {
                if self.record_len != 0 || self.item.is_some() {
                    return Err(self.fail(
                        PackCode::SegmentInvalid,
                        "a record (or its proof item) crosses the end of its segment",
                    ));
                }
                if self.segment_records == 0 {
                    return Err(self.fail(PackCode::SegmentInvalid, "an empty segment"));
                }
            }
        }
        // Data of `size` bytes is followed by zero padding to the next block.
        let pad = (BLOCK as u64)
            .saturating_sub(self.entry_size_mod())
            .checked_rem(BLOCK as u64)
            .unwrap_or(0);
        self.state = if pad == 0 {
            State::Header
        } else {
            State::Padding(pad as usize)
        };
        if pad == 0 {
            self.entry_name_len = 0;
        }
        Ok(())
    }

    fn entry_size_mod(&self) -> u64 {
        // The offset is block-aligned at each header, so the entry's size modulo the
        // block size equals the offset's.
        self.offset.checked_rem(BLOCK as u64).unwrap_or(0)
    }

    /// Ends the stream: checks the archive is complete, the records verify to the end, the
    /// manifest is signed by an active kernel key and matches the contents, and every blob
    /// is referenced.
    pub fn finish(self) -> Result<PackSummary, PackError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.state != State::Done {
            return Err(PackError::new(
                PackCode::TarTruncated,
                self.offset,
                "the pack ends before its two end blocks",
            ));
        }
        let manifest_bytes = self.manifest.get(..self.manifest_len).unwrap_or(&[]);
        let (manifest, env): (Manifest, Sign1<'_>) = Manifest::decode(manifest_bytes)
            .map_err(|_| PackError::new(PackCode::ManifestInvalid, 0, "manifest does not decode"))?;
        let signer = self.verifier.active_key(&manifest.producer, ROLE_KERNEL);
        let unselected = self.verifier.unselected();
        let last_position = self.verifier.last_position();
        let verified = self.verifier.finish().map_err(|e| PackError::record(e, self.offset))?;
        if let Some((tree_size, _)) = self.tree {
            if last_position != Some(tree_size) {
                let mut e = PackError::new(
                    PackCode::CheckpointInvalid,
                    self.offset,
                    "the partial pack does not end with its checkpoint (the record at the tree size's position)",
                );
                e.position = last_position;
                return Err(e);
            }
        }
        let at_manifest = |code, detail| PackError::new(code, 0, detail).at_entry(0, "manifest.cbor");
        let Some(pk) = signer else {
            return Err(at_manifest(
                PackCode::ManifestSigner,
                "the producer is not an active kernel key at the end of the pack",
            ));
        };
        if !env.verify(&pk) {
            return Err(at_manifest(
                PackCode::ManifestSignature,
                "the manifest signature does not verify",
            ));
        }
        let checks: [(bool, &'static str); 11] = [
            (manifest.records == verified.records, "record count differs"),
            (manifest.records_root == verified.root, "records root differs"),
            (manifest.head == verified.head, "head record differs"),
            (manifest.segments == self.segments, "segment count differs"),
            (manifest.blobs == self.present_n as u64, "blob count differs"),
            (manifest.blobs_root == self.blobs_merkle.root(), "blobs root differs"),
            (manifest.withheld == self.withheld_n as u64, "withheld count differs"),
            (
                manifest.withheld_root == self.withheld_merkle.root(),
                "withheld root differs",
            ),
            (manifest.per_kind == verified.per_kind, "records per kind differ"),
            (manifest.escalations == verified.escalations, "ESCALATE count differs"),
            (manifest.streams == verified.streams, "(signer, session) count differs"),
        ];
        if let Some((_, detail)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(at_manifest(PackCode::ManifestMismatch, detail));
        }
        let total = self.withheld_n.saturating_add(self.present_n);
        let unreferenced = match self.deferred {
            Some(_) => None,
            None => self.blobs.get(..total).and_then(|b| b.iter().find(|s| !s.referenced)),
        };
        if let Some(s) = unreferenced {
            let mut e = PackError::new(
                PackCode::BlobUnreferenced,
                self.offset,
                "a blob or withheld entry no record references",
            );
            e.subject = Some(s.name);
            return Err(e);
        }
        if let Some((index, hash)) = unselected {
            let mut e = PackError::new(
                PackCode::RecordUnselected,
                self.offset,
                "a record that is not selected, not a TRUST_EVENT and not needed to verify another record",
            );
            e.index = Some(index);
            e.subject = Some(hash);
            return Err(e);
        }
        Ok(PackSummary {
            verified,
            manifest,
            bytes: self.offset,
        })
    }
}
