//! The pack manifest: a COSE_Sign1 over a deterministic CBOR map of counts and roots.
//!
//! It lists no entries; it commits to them through RFC 9162 roots, so a streaming
//! reader checks it with O(log n) state after buffering only the manifest itself.

use verify_core::cbor::Reader;
use verify_core::{ErrorCode, Hash, Sign1};

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
}

/// Manifest payload keys, in order.
const KEYS: usize = 13;

impl Manifest {
    /// Decodes a manifest envelope and payload strictly (signature not yet checked).
    pub fn decode(bytes: &[u8]) -> Result<(Manifest, Sign1<'_>), ErrorCode> {
        let env = Sign1::decode(bytes)?;
        let mut r = Reader::new(env.payload);
        if r.map_len()? != KEYS {
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
        if r.uint()? != 0 {
            // Kind 0 = full pack; partial packs are not defined in format version 1.
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
        };
        Ok((m, env))
    }

    /// The manifest payload (deterministic CBOR).
    #[cfg(feature = "alloc")]
    pub fn payload(&self) -> alloc::vec::Vec<u8> {
        let mut w = verify_core::cbor::Writer::new();
        w.map(KEYS);
        w.uint(0)
            .text(PACK_FORMAT)
            .uint(1)
            .uint(0)
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
        w.into_bytes()
    }
}
