//! Two-pass verification of seekable full packs (feature `std`), for less memory.
//!
//! A single pass keeps, besides the records' table, every blob name (to check that each
//! record's reference is present or withheld, and that every blob is referenced) and
//! every INTENT's call digest (to check that its EFFECT matches: E4). At a million
//! records those are a third of the memory. Here the first pass checks everything else
//! and keeps neither (the verifier from `Verifier::new_deferring_effect_match`, the reader
//! from `PackReader::new_deferring_references`), recording only each EFFECT's permitted
//! intent; its tables are dropped; the second pass reads the pack again and checks the
//! references, E4 and unreferenced blobs, keeping only names, digests and links.
//!
//! The verdict is the single pass's, exactly: the second pass looks only at the records
//! the first pass accepted, in order, and at each one does what a single pass does right
//! after accepting it (E4 is the last rule of the record's checks, its reference check
//! follows them), so its first failure, if any, comes before the first pass's. The
//! second pass proves it read what the first pass verified (the roots over the blob
//! names, the withheld names and the accepted records' hashes); otherwise the input
//! changed under the verifier, an I/O error. It also gives the observer the
//! notifications a single pass gives (withheld names, blobs, records), which the first
//! pass holds back.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "std-only module"
)]

use std::boxed::Box;
use std::io::{self, Read, Seek, SeekFrom};
use std::vec;
use std::vec::Vec;

use sha2::{Digest, Sha256};
use verify_core::{call_digest, Body, ErrorCode, Hash, MerkleAccumulator, Record, VerifyError, MAX_RECORD_SIZE};

use crate::error::{PackCode, PackError};
use crate::reader::{blob_reference, parse_blob_name, record_len, FirstPass, Observer, PackSummary, WITHHELD_ITEM};
use crate::stream::{read_prefix, run_pass, StreamError, VerifyOptions};
use crate::tar::{self, BLOCK};
use crate::transport::{self, Wrapper};

/// When [`verify_seekable`] reads a pack twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TwoPass {
    /// For full packs whose manifest claims at least [`TWO_PASS_MIN_RECORDS`] records.
    #[default]
    Auto,
    /// For every full pack (tests).
    Always,
    /// Never: one pass, as [`crate::verify_reader`].
    Never,
}

/// Full packs from this many records on are read twice by [`verify_seekable`] (smaller
/// ones take little memory either way).
pub const TWO_PASS_MIN_RECORDS: u64 = 65_536;

/// Forwards progress only: the first pass holds the other notifications back.
struct ProgressOnly<'a, O>(&'a mut O);

impl<O: Observer> Observer for ProgressOnly<'_, O> {
    fn progress(&mut self, offset: u64) {
        self.0.progress(offset);
    }
}

fn changed(what: &str) -> StreamError {
    StreamError::Io(io::Error::other(std::format!(
        "the pack read differently the second time ({what}): it changed while being verified"
    )))
}

/// Verifies a pack from a seekable `source` (a file), as [`crate::verify_reader`] does and
/// with the same verdict, in less memory: a large full pack is read twice (see the
/// module docs; `opts.two_pass`). Partial packs and small packs are read once.
pub fn verify_seekable<R: Read + Seek, O: Observer>(
    mut source: R,
    anchors: &[[u8; 32]],
    opts: &VerifyOptions,
    obs: &mut O,
) -> Result<(Wrapper, PackSummary), StreamError> {
    let start = source.stream_position().map_err(StreamError::Io)?;
    let once = |mut source: R, obs: &mut O| -> Result<(Wrapper, PackSummary), StreamError> {
        source.seek(SeekFrom::Start(start)).map_err(StreamError::Io)?;
        crate::verify_reader(source, anchors, opts, obs)
    };
    let worth_it = match opts.two_pass {
        TwoPass::Never => false,
        TwoPass::Always => true,
        TwoPass::Auto => {
            // The manifest (its unauthenticated counts) says whether the pack is large.
            let manifest = match transport::open(&mut source, opts.limits) {
                Ok((_, mut input)) => read_prefix(&mut input).ok().and_then(|(_, m)| m),
                Err(_) => None,
            };
            source.seek(SeekFrom::Start(start)).map_err(StreamError::Io)?;
            manifest.is_some_and(|m| m.partial.is_none() && m.records >= TWO_PASS_MIN_RECORDS)
        }
    };
    if !worth_it {
        return once(source, obs);
    }
    let first = run_pass(&mut source, anchors, opts, &mut ProgressOnly(obs), true)?;
    let Some(state) = first.first else {
        return once(source, obs);
    };
    let transport = matches!(&first.result, Err(e) if e.code == PackCode::TransportInvalid);
    let before_records = first.result.is_err() && state.records == 0;
    let full = first.manifest.as_ref().is_some_and(|m| m.partial.is_none());
    if !full || state.fell_short || transport || before_records {
        // What one pass reports exactly, read once more: partial packs, a manifest that
        // under-counts what the first pass keeps, corrupt transport wrappers (where a
        // decompressor stops may depend on how it is read), and packs that fail before
        // their first record (so that the observer hears of the same blobs; no records'
        // tables are needed then). All but partial packs are invalid packs.
        return once(source, obs);
    }
    source.seek(SeekFrom::Start(start)).map_err(StreamError::Io)?;
    let (_, input) = transport::open(&mut source, opts.limits).map_err(StreamError::Io)?;
    let manifest = first.manifest.as_ref();
    let unreferenced_too = first.result.is_ok();
    let second = second_pass(input, &state, &first.effects, manifest, unreferenced_too, obs)?;
    match (second, first.result) {
        (Some(e), _) => Err(StreamError::Pack(Box::new(e))),
        (None, Ok(summary)) => Ok((first.wrapper, summary)),
        (None, Err(e)) => Err(StreamError::Pack(Box::new(e))),
    }
}

fn read_exact(input: &mut dyn Read, buf: &mut [u8]) -> Result<(), StreamError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            changed("it ends early")
        } else {
            StreamError::Io(e)
        }
    })
}

fn skip(input: &mut dyn Read, n: u64) -> Result<(), StreamError> {
    let copied = io::copy(&mut input.take(n), &mut io::sink()).map_err(StreamError::Io)?;
    if copied < n {
        return Err(changed("it ends early"));
    }
    Ok(())
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64)
        .wrapping_sub(size.checked_rem(BLOCK as u64).unwrap_or(0))
        .checked_rem(BLOCK as u64)
        .unwrap_or(0)
}

/// The second pass's state: names, references, digests, the records so far.
struct Second<'a, O> {
    first: &'a FirstPass,
    links: &'a [u32],
    obs: &'a mut O,
    withheld: Vec<Hash>,
    present: Vec<Hash>,
    /// Withheld names first, then present ones (a single pass's table order).
    referenced: Vec<bool>,
    digests: Vec<Hash>,
    effects: usize,
    records: u64,
    merkle: MerkleAccumulator,
    /// The blob and withheld names were compared with the first pass's.
    names_checked: bool,
    /// Where the current segment's data starts, and its entry.
    offset: u64,
    entry: u32,
    /// The first failure found. It is reported only once the records read are proven
    /// to be the first pass's (the root over them), so the rest are still hashed.
    failure: Option<PackError>,
}

impl<O: Observer> Second<'_, O> {
    fn check_names(&mut self) -> Result<(), StreamError> {
        if self.names_checked {
            return Ok(());
        }
        let root = |names: &[Hash]| {
            let mut m = MerkleAccumulator::new();
            names.iter().for_each(|n| {
                m.push(n);
            });
            m.root()
        };
        if (self.withheld.len() as u64, root(&self.withheld)) != (self.first.withheld, self.first.withheld_root)
            || (self.present.len() as u64, root(&self.present)) != (self.first.blobs, self.first.blobs_root)
        {
            return Err(changed("blob names"));
        }
        self.referenced = vec![false; self.withheld.len().saturating_add(self.present.len())];
        self.names_checked = true;
        Ok(())
    }

    fn record_error(&self, code: ErrorCode, index: u64, hash: Hash, detail: &'static str) -> PackError {
        let e = VerifyError::new(code, index, Some(hash), detail);
        PackError::record(e, self.offset).at_entry(self.entry, "records")
    }

    /// What a single pass does right after accepting record `index`: E4, then the
    /// reference check (§4.3); then the observer hears of the record.
    fn record(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let index = self.records;
        self.records = self.records.saturating_add(1);
        if self.failure.is_some() {
            let hash: Hash = Sha256::digest(bytes).into();
            self.merkle.push(&hash);
            return Ok(());
        }
        let rec = Record::decode(bytes).map_err(|_| changed("a record"))?;
        let hash = rec.hash;
        self.merkle.push(&hash);
        self.failure = self.check(index, &rec);
        if self.failure.is_none() {
            self.obs.record(index, &rec);
        }
        Ok(())
    }

    /// E4, then the reference (§4.3), for an accepted record.
    fn check(&mut self, index: u64, rec: &Record<'_>) -> Option<PackError> {
        let hash = rec.hash;
        match rec.body {
            Body::Intent { tool, call_kind, args } => self.digests.push(call_digest(tool, call_kind, &args)),
            Body::Effect {
                tool, call_kind, args, ..
            } => {
                let link = self.links.get(self.effects).copied();
                self.effects = self.effects.saturating_add(1);
                let intent = link.and_then(|i| self.digests.get(i as usize));
                if intent != Some(&call_digest(tool, call_kind, &args)) {
                    return Some(self.record_error(
                        ErrorCode::EffectMismatch,
                        index,
                        hash,
                        "tool, call kind or argument commitment differ from the permitted INTENT",
                    ));
                }
            }
            _ => {}
        }
        if let Some(name) = blob_reference(&rec.body) {
            let slot = self.withheld.binary_search(&name).ok().or_else(|| {
                self.present
                    .binary_search(&name)
                    .ok()
                    .map(|i| i.saturating_add(self.withheld.len()))
            });
            match slot.and_then(|i| self.referenced.get_mut(i)) {
                Some(r) => *r = true,
                None => {
                    let mut e = PackError::new(
                        PackCode::BlobMissing,
                        self.offset,
                        "a record references content that is neither present nor withheld",
                    )
                    .at_entry(self.entry, "records");
                    e.subject = Some(name);
                    e.index = Some(index);
                    return Some(e);
                }
            }
        }
        None
    }

    /// The records of one segment of `size` bytes, up to the first pass's count.
    fn segment(&mut self, input: &mut dyn Read, size: u64) -> Result<(), StreamError> {
        self.check_names()?;
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut remaining = size;
        while remaining > 0 && self.records < self.first.records {
            let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
            let chunk = buf.get_mut(..want).unwrap_or(&mut []);
            read_exact(input, chunk)?;
            remaining = remaining.saturating_sub(want as u64);
            pending.extend_from_slice(chunk);
            let mut pos = 0usize;
            while self.records < self.first.records {
                let rest = pending.get(pos..).unwrap_or(&[]);
                match record_len(rest) {
                    Ok(Some(n)) if n <= rest.len() => {
                        self.record(rest.get(..n).unwrap_or(&[]))?;
                        pos = pos.saturating_add(n);
                    }
                    Ok(Some(n)) if n > MAX_RECORD_SIZE => return Err(changed("a record")),
                    Ok(_) => break,
                    Err(_) => return Err(changed("a record")),
                }
            }
            pending.drain(..pos);
        }
        if remaining > 0 {
            skip(input, remaining)?;
        }
        Ok(())
    }
}

/// The second pass (module docs): `Ok(Some(e))` is the pack's verdict, `Ok(None)` leaves
/// the first pass's.
fn second_pass<O: Observer>(
    mut input: Box<dyn Read + '_>,
    first: &FirstPass,
    links: &[u32],
    manifest: Option<&crate::Manifest>,
    unreferenced_too: bool,
    obs: &mut O,
) -> Result<Option<PackError>, StreamError> {
    let claim = |n: u64| usize::try_from(n).unwrap_or(0);
    let mut s = Second {
        first,
        links,
        obs,
        withheld: Vec::with_capacity(claim(first.withheld)),
        present: Vec::with_capacity(claim(first.blobs)),
        referenced: Vec::new(),
        digests: Vec::with_capacity(manifest.map_or(0, |m| claim(m.per_kind[0]))),
        effects: 0,
        records: 0,
        merkle: MerkleAccumulator::new(),
        names_checked: false,
        offset: 0,
        entry: 0,
        failure: None,
    };
    let mut header = [0u8; BLOCK];
    let mut offset = 0u64;
    let mut entry = 0u32;
    while s.records < first.records {
        read_exact(&mut input, &mut header)?;
        offset = offset.saturating_add(BLOCK as u64);
        if header.iter().all(|&b| b == 0) {
            return Err(changed("it ends before the records the first pass verified"));
        }
        let h = tar::decode(&header).map_err(|_| changed("a tar header"))?;
        let name = h.name();
        let size = h.size;
        if name == "withheld.cbor" {
            let mut item = [0u8; WITHHELD_ITEM];
            for _ in 0..size.checked_div(WITHHELD_ITEM as u64).unwrap_or(0) {
                read_exact(&mut input, &mut item)?;
                let mut n = [0u8; 32];
                n.copy_from_slice(item.get(2..).unwrap_or(&[0; 32]));
                s.withheld.push(n);
                s.obs.withheld(&n);
            }
            skip(&mut input, size.checked_rem(WITHHELD_ITEM as u64).unwrap_or(0))?;
        } else if name.starts_with("blobs/") {
            let Some(n) = parse_blob_name(name) else {
                return Err(changed("a blob name"));
            };
            s.present.push(n);
            s.obs.blob(&n, size);
            skip(&mut input, size)?;
        } else if name.starts_with("records/") {
            s.offset = offset;
            s.entry = entry;
            s.segment(&mut input, size)?;
        } else {
            skip(&mut input, size)?;
        }
        skip(&mut input, padding(size))?;
        offset = offset.saturating_add(size).saturating_add(padding(size));
        entry = entry.saturating_add(1);
    }
    if s.merkle.root() != first.records_root {
        return Err(changed("the records"));
    }
    s.check_names()?;
    if let Some(e) = s.failure {
        return Ok(Some(e));
    }
    if unreferenced_too {
        let withheld = s.withheld.iter();
        let names = withheld.chain(s.present.iter());
        if let Some((name, _)) = names.zip(s.referenced.iter()).find(|(_, r)| !**r) {
            let mut e = PackError::new(
                PackCode::BlobUnreferenced,
                offset,
                "a blob or withheld entry no record references",
            );
            e.subject = Some(*name);
            return Ok(Some(e));
        }
    }
    Ok(None)
}
