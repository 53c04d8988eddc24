//! The pack manifest: a COSE_Sign1 over a deterministic CBOR map of counts and roots.
//!
//! It lists no entries; it commits to them through RFC 9162 roots, so a streaming
//! reader checks it with O(log n) state after buffering only the manifest itself. A
//! partial pack's manifest (kind 1) adds the checkpoint's tree and the selection.

use verify_core::cbor::Reader;
use verify_core::{ErrorCode, Hash, Partial, Selection, Sign1};

/// The format string in every manifest.
pub const PACK_FORMAT: &str = "helm-evidencepack/1";
/// Largest manifest entry, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 1024;

/// What a manifest claims about its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Signing key of the producer (must be an active kernel key at the end of the pack).
    pub producer: [u8; 32],
    /// Number of records.
    pub records: u64,
    /// RFC 9162 root over the record hashes, in pack order.
    pub records_root: Hash,
    /// Hash of the last record.
    pub head: Hash,
    /// Number of record segments.
    pub segments: u64,
    /// Number of blobs present.
    pub blobs: u64,
    /// RFC 9162 root over the present blobs' names (SHA-256 of their contents), ascending.
    pub blobs_root: Hash,
    /// Number of blobs withheld.
    pub withheld: u64,
    /// RFC 9162 root over the withheld blobs' names, ascending.
    pub withheld_root: Hash,
    /// Records per kind (INTENT first, CHECKPOINT last), so a reader can size its
    /// tables exactly before the records arrive.
    pub per_kind: [u64; 9],
    /// ESCALATE decisions.
    pub escalations: u64,
    /// Distinct (signer, session) pairs.
    pub streams: u64,
    /// A partial pack's tree and selection (manifest kind 1); `None` for a full pack.
    pub partial: Option<PartialClaims>,
}

/// Longest session a selection names, in bytes (as a record's session).
const MAX_SESSION: usize = 256;

/// What a partial pack's manifest adds (spec/evidencepack.md §9.2): the checkpoint's
/// tree (size T and root R) and the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialClaims {
    /// T: the checkpoint's count, its position in the log.
    pub tree_size: u64,
    /// R: the checkpoint's root.
    pub tree_root: Hash,
    session: [u8; MAX_SESSION],
    session_len: u16,
    has_session: bool,
    /// Kernel time (ms) at or after which records are selected.
    pub since: Option<u64>,
    /// Kernel time (ms) at or before which records are selected.
    pub until: Option<u64>,
}

impl PartialClaims {
    /// Claims for a tree and a selection; `None` if the selection is empty, its bounds
    /// are reversed, or its session is longer than 256 bytes.
    pub fn new(tree_size: u64, tree_root: Hash, selection: &Selection<'_>) -> Option<PartialClaims> {
        if selection.is_empty() || selection.since.zip(selection.until).is_some_and(|(a, b)| a > b) {
            return None;
        }
        let name = selection.session.unwrap_or("").as_bytes();
        let mut session = [0u8; MAX_SESSION];
        session.get_mut(..name.len())?.copy_from_slice(name);
        Some(PartialClaims {
            tree_size,
            tree_root,
            session,
            session_len: name.len() as u16,
            has_session: selection.session.is_some(),
            since: selection.since,
            until: selection.until,
        })
    }

    /// The selected session, if the selection names one.
    pub fn session(&self) -> Option<&str> {
        if !self.has_session {
            return None;
        }
        core::str::from_utf8(self.session.get(..usize::from(self.session_len))?).ok()
    }

    /// The selection.
    pub fn selection(&self) -> Selection<'_> {
        Selection {
            session: self.session(),
            since: self.since,
            until: self.until,
        }
    }

    /// What a partial verifier is set up with.
    pub fn partial(&self) -> Partial<'_> {
        Partial {
            tree_size: self.tree_size,
            tree_root: self.tree_root,
            selection: self.selection(),
        }
    }
}

/// Manifest payload keys of a full pack, in order.
const KEYS: usize = 13;
/// Manifest payload keys of a partial pack.
const PARTIAL_KEYS: usize = 16;

impl Manifest {
    /// Decodes a manifest envelope and payload strictly (signature not yet checked).
    pub fn decode(bytes: &[u8]) -> Result<(Manifest, Sign1<'_>), ErrorCode> {
        let env = Sign1::decode(bytes)?;
        let mut r = Reader::new(env.payload);
        let keys = r.map_len()?;
        if keys != KEYS && keys != PARTIAL_KEYS {
            return Err(ErrorCode::SchemaMissingField);
        }
        let mut prev = None;
        let mut key = |r: &mut Reader<'_>, want: u64| -> Result<(), ErrorCode> {
            if r.key(&mut prev)? != want {
                return Err(ErrorCode::SchemaMissingField);
            }
            Ok(())
        };
        key(&mut r, 0)?;
        if r.text()? != PACK_FORMAT {
            return Err(ErrorCode::UnsupportedVersion);
        }
        key(&mut r, 1)?;
        // Kind 0: a full pack, keys 0-12; kind 1: a partial pack, keys 0-15.
        let kind = r.uint()?;
        if !matches!((kind, keys), (0, KEYS) | (1, PARTIAL_KEYS)) {
            return Err(ErrorCode::SchemaInvalidValue);
        }
        key(&mut r, 2)?;
        let records = r.uint()?;
        key(&mut r, 3)?;
        let records_root = r.bytes_fixed::<32>()?;
        key(&mut r, 4)?;
        let head = r.bytes_fixed::<32>()?;
        key(&mut r, 5)?;
        let segments = r.uint()?;
        key(&mut r, 6)?;
        let blobs = r.uint()?;
        key(&mut r, 7)?;
        let blobs_root = r.bytes_fixed::<32>()?;
        key(&mut r, 8)?;
        let withheld = r.uint()?;
        key(&mut r, 9)?;
        let withheld_root = r.bytes_fixed::<32>()?;
        key(&mut r, 10)?;
        if r.array_len()? != 9 {
            return Err(ErrorCode::SchemaInvalidValue);
        }
        let mut per_kind = [0u64; 9];
        for c in per_kind.iter_mut() {
            *c = r.uint()?;
        }
        key(&mut r, 11)?;
        let escalations = r.uint()?;
        key(&mut r, 12)?;
        let streams = r.uint()?;
        let partial = if kind == 1 {
            key(&mut r, 13)?;
            let tree_size = r.uint()?;
            key(&mut r, 14)?;
            let tree_root = r.bytes_fixed::<32>()?;
            key(&mut r, 15)?;
            let n = r.map_len()?;
            let mut selection = Selection::default();
            let mut prev = None;
            for _ in 0..n {
                match r.key(&mut prev)? {
                    0 => selection.session = Some(r.text()?),
                    1 => selection.since = Some(r.uint()?),
                    2 => selection.until = Some(r.uint()?),
                    _ => return Err(ErrorCode::SchemaUnknownField),
                }
            }
            Some(PartialClaims::new(tree_size, tree_root, &selection).ok_or(ErrorCode::SchemaInvalidValue)?)
        } else {
            None
        };
        r.finish()?;
        let m = Manifest {
            producer: env.kid,
            records,
            records_root,
            head,
            segments,
            blobs,
            blobs_root,
            withheld,
            withheld_root,
            per_kind,
            escalations,
            streams,
            partial,
        };
        Ok((m, env))
    }

    /// The manifest payload (deterministic CBOR).
    #[cfg(feature = "alloc")]
    pub fn payload(&self) -> alloc::vec::Vec<u8> {
        let mut w = verify_core::cbor::Writer::new();
        w.map(if self.partial.is_some() { PARTIAL_KEYS } else { KEYS });
        w.uint(0)
            .text(PACK_FORMAT)
            .uint(1)
            .uint(u64::from(self.partial.is_some()))
            .uint(2)
            .uint(self.records)
            .uint(3)
            .bytes(&self.records_root);
        w.uint(4)
            .bytes(&self.head)
            .uint(5)
            .uint(self.segments)
            .uint(6)
            .uint(self.blobs)
            .uint(7)
            .bytes(&self.blobs_root);
        w.uint(8).uint(self.withheld).uint(9).bytes(&self.withheld_root);
        w.uint(10).array(9);
        for c in self.per_kind {
            w.uint(c);
        }
        w.uint(11).uint(self.escalations).uint(12).uint(self.streams);
        if let Some(p) = &self.partial {
            w.uint(13).uint(p.tree_size).uint(14).bytes(&p.tree_root).uint(15);
            let sel = p.selection();
            let n = [sel.session.is_some(), sel.since.is_some(), sel.until.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            w.map(n);
            if let Some(s) = sel.session {
                w.uint(0).text(s);
            }
            if let Some(t) = sel.since {
                w.uint(1).uint(t);
            }
            if let Some(t) = sel.until {
                w.uint(2).uint(t);
            }
        }
        w.into_bytes()
    }
}
