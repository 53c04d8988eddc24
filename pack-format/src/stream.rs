//! Verifying a pack from any `std::io::Read` (feature `std`): unwraps the transport,
//! sizes heap tables from the manifest's counts (bounded by a memory cap, since those
//! counts are not yet authenticated), and streams the rest through [`PackReader`].
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "std-only module"
)]

use std::boxed::Box;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::vec;
use std::vec::Vec;

use verify_core::{Capacity, OwnedTables, Verifier, MAX_RECORD_SIZE};

use crate::error::{PackCode, PackError};
use crate::manifest::{Manifest, MAX_MANIFEST_SIZE};
use crate::parallel::{Checks, Preframer, WithChecks};
use crate::reader::{BlobSlot, FirstPass, Observer, PackBuffers, PackReader, PackSummary};
use crate::tar::{self, BLOCK};
use crate::transport::{self, Limits, Wrapper};

/// Options for [`verify_reader`].
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Decompression limits for `.tar.zst` and `.tar.gz`.
    pub limits: Limits,
    /// Most bytes of verifier tables to allocate for the counts a manifest claims.
    pub max_table_bytes: u64,
    /// Read size.
    pub chunk: usize,
    /// Threads verifying, including the reader's own (1: everything on the calling
    /// thread). Default: the machine's available parallelism.
    pub threads: usize,
    /// When [`crate::verify_seekable`] reads a pack twice to need less memory.
    pub two_pass: crate::TwoPass,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            limits: Limits::default(),
            max_table_bytes: 4 << 30,
            chunk: 256 << 10,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            two_pass: crate::TwoPass::Auto,
        }
    }
}

/// Why a pack could not be verified.
#[derive(Debug)]
pub enum StreamError {
    /// Reading failed (not the pack's fault): exit code 2 in the CLI.
    Io(io::Error),
    /// The trust anchors are unusable (a usage error, not the pack's fault): for
    /// example an anchor that is not a canonical key of prime order.
    Setup(verify_core::SetupError),
    /// The pack is invalid: exit code 1 in the CLI.
    Pack(Box<PackError>),
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamError::Io(e) => write!(f, "I/O error: {e}"),
            StreamError::Setup(verify_core::SetupError::AnchorInvalid(i)) => {
                write!(f, "trust anchor #{i} is not a canonical Ed25519 key of prime order")
            }
            StreamError::Setup(e) => write!(f, "cannot set up the verifier: {e:?}"),
            StreamError::Pack(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StreamError {}

/// Table sizes for the counts a manifest claims, and the bytes they take.
pub fn capacity_for(m: &Manifest, anchors: usize) -> (Capacity, u64) {
    let c = Capacity {
        records: usize::try_from(m.records).unwrap_or(usize::MAX).max(1),
        intents: usize::try_from(m.per_kind[0]).unwrap_or(usize::MAX),
        escalations: usize::try_from(m.escalations).unwrap_or(usize::MAX),
        keys: anchors
            .saturating_add(usize::try_from(m.per_kind[5]).unwrap_or(usize::MAX))
            .saturating_add(1),
        streams: usize::try_from(m.streams).unwrap_or(usize::MAX).max(1),
    };
    let bytes = OwnedTables::bytes_for(c).saturating_add(
        m.blobs
            .saturating_add(m.withheld)
            .saturating_mul(core::mem::size_of::<BlobSlot>() as u64),
    );
    (c, bytes)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(buf.get_mut(got..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(n) => got = got.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn io_error(e: io::Error, offset: u64) -> StreamError {
    if e.kind() == io::ErrorKind::InvalidData {
        let mut p = PackError::new(
            PackCode::TransportInvalid,
            offset,
            "the transport wrapper is invalid or exceeds a limit",
        );
        p.transport = Some(std::format!("{e}"));
        StreamError::Pack(Box::new(p))
    } else {
        StreamError::Io(e)
    }
}

/// Below this many records a pack is verified on one thread.
const PARALLEL_MIN_RECORDS: u64 = 1024;

/// Chunks read ahead of the reader, so that workers always have records to check.
const LOOKAHEAD: usize = 8;

/// Feeds `reader` while worker threads check signatures ahead of it.
fn feed_parallel<O: Observer>(
    reader: &mut PackReader<'_>,
    prefix: Vec<u8>,
    input: &mut dyn Read,
    opts: &VerifyOptions,
    obs: &mut O,
) -> Result<(), StreamError> {
    std::thread::scope(|scope| {
        let mut checks = Checks::start(scope, opts.threads.saturating_sub(1));
        let mut frames = Preframer::new();
        let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
        frames.feed(&prefix, &mut |i, r| checks.add(i, r));
        pending.push_back(prefix);
        let mut eof = false;
        let result = loop {
            while !eof && pending.len() < LOOKAHEAD {
                let mut buf = vec![0u8; opts.chunk.max(BLOCK)];
                let n = match read_full(input, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        checks.stop();
                        return Err(io_error(e, reader.offset()));
                    }
                };
                if n == 0 {
                    eof = true;
                    break;
                }
                buf.truncate(n);
                frames.feed(&buf, &mut |i, r| checks.add(i, r));
                pending.push_back(buf);
            }
            checks.flush();
            let Some(chunk) = pending.pop_front() else { break Ok(()) };
            let mut with = WithChecks {
                inner: &mut *obs,
                checks: &mut checks,
            };
            if let Err(e) = reader.feed(&chunk, &mut with) {
                break Err(StreamError::Pack(Box::new(e)));
            }
        };
        checks.stop();
        result
    })
}

/// Verifies a pack read from `source` against `anchors`, in one pass.
pub fn verify_reader<R: Read, O: Observer>(
    source: R,
    anchors: &[[u8; 32]],
    opts: &VerifyOptions,
    obs: &mut O,
) -> Result<(Wrapper, PackSummary), StreamError> {
    let pass = run_pass(source, anchors, opts, obs, false)?;
    pass.result
        .map(|s| (pass.wrapper, s))
        .map_err(|e| StreamError::Pack(Box::new(e)))
}

/// One pass over a pack: the verdict, and (for a first pass that deferred its reference
/// checks) what the second pass needs.
pub(crate) struct Pass {
    pub(crate) wrapper: Wrapper,
    pub(crate) manifest: Option<Manifest>,
    pub(crate) result: Result<PackSummary, PackError>,
    pub(crate) first: Option<FirstPass>,
    /// For each accepted EFFECT, the intent its permit belongs to (deferred passes).
    pub(crate) effects: Vec<u32>,
}

/// Reads the transport wrapper and the manifest at the start of `input`: the bytes read
/// and the manifest, if it decodes.
pub(crate) fn read_prefix(input: &mut dyn Read) -> Result<(Vec<u8>, Option<Manifest>), StreamError> {
    let mut prefix = vec![0u8; BLOCK.saturating_add(MAX_MANIFEST_SIZE)];
    let got = read_full(input, &mut prefix).map_err(|e| io_error(e, 0))?;
    prefix.truncate(got);
    let manifest = prefix
        .get(..BLOCK)
        .and_then(|h| <&[u8; BLOCK]>::try_from(h).ok())
        .and_then(|h| {
            let header = tar::decode(h).ok()?;
            let size = usize::try_from(header.size).ok()?;
            if header.name() != "manifest.cbor" || size > MAX_MANIFEST_SIZE {
                return None;
            }
            Manifest::decode(prefix.get(BLOCK..BLOCK.saturating_add(size))?)
                .ok()
                .map(|(m, _)| m)
        });
    Ok((prefix, manifest))
}

/// Feeds the rest of `input` to `reader`; a pack error is the verdict (returned in
/// `Ok(Err(..))`), an I/O error is not.
fn feed_all<O: Observer>(
    reader: &mut PackReader<'_>,
    prefix: Vec<u8>,
    input: &mut dyn Read,
    opts: &VerifyOptions,
    records: u64,
    obs: &mut O,
) -> Result<Result<(), PackError>, StreamError> {
    // Threads pay off only for packs with more than a few records.
    if opts.threads <= 1 || records < PARALLEL_MIN_RECORDS {
        if let Err(e) = reader.feed(&prefix, obs) {
            return Ok(Err(e));
        }
        let mut buf = vec![0u8; opts.chunk.max(BLOCK)];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return match io_error(e, reader.offset()) {
                        StreamError::Pack(p) => Ok(Err(*p)),
                        other => Err(other),
                    }
                }
            };
            if let Err(e) = reader.feed(buf.get(..n).unwrap_or(&[]), obs) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    } else {
        match feed_parallel(reader, prefix, input, opts, obs) {
            Ok(()) => Ok(Ok(())),
            Err(StreamError::Pack(p)) => Ok(Err(*p)),
            Err(other) => Err(other),
        }
    }
}

/// One pass: a single-pass verification, or (`deferred`) the first pass of a two-pass
/// one, which keeps no present blob names and no call digests.
pub(crate) fn run_pass<R: Read, O: Observer>(
    source: R,
    anchors: &[[u8; 32]],
    opts: &VerifyOptions,
    obs: &mut O,
    deferred: bool,
) -> Result<Pass, StreamError> {
    let (wrapper, mut input) = transport::open(source, opts.limits).map_err(|e| io_error(e, 0))?;
    // The first header and the manifest tell how large the tables must be.
    let (prefix, manifest) = read_prefix(&mut input)?;
    let verdict = |result| Pass {
        wrapper,
        manifest,
        result,
        first: None,
        effects: Vec::new(),
    };
    let (capacity, blobs) = match &manifest {
        Some(m) => {
            let (c, bytes) = capacity_for(m, anchors.len());
            if bytes > opts.max_table_bytes {
                let mut e = PackError::new(
                    PackCode::CapacityExceeded,
                    0,
                    "the manifest claims more records than the memory cap allows (raise --max-memory)",
                );
                e.needed = Some(bytes);
                return Ok(verdict(Err(e)));
            }
            (
                c,
                usize::try_from(m.blobs.saturating_add(m.withheld)).unwrap_or(usize::MAX),
            )
        }
        // The reader will report what is wrong with the first entry.
        None => (
            Capacity {
                records: 1,
                intents: 0,
                escalations: 0,
                keys: anchors.len().max(1),
                streams: 1,
            },
            0,
        ),
    };
    let records = manifest.as_ref().map_or(0, |m| m.records);
    let mut record_buf = vec![0u8; MAX_RECORD_SIZE];
    if !deferred {
        let mut tables = OwnedTables::new(capacity);
        let verifier = Verifier::new(anchors, tables.tables()).map_err(StreamError::Setup)?;
        let mut blob_table: Vec<BlobSlot> = vec![BlobSlot::default(); blobs];
        let mut reader = PackReader::new(
            verifier,
            PackBuffers {
                record: &mut record_buf,
                blobs: &mut blob_table,
            },
        );
        let fed = feed_all(&mut reader, prefix, &mut input, opts, records, obs)?;
        return Ok(verdict(fed.and_then(|()| reader.finish())));
    }
    // The first of two passes: no call digests, no present blob names (the second pass
    // reads them again); the withheld names the manifest claims, and a zeroed (so
    // untouched until written) slot per record for the EFFECTs' permit links.
    let mut tables = OwnedTables::without_digests(capacity);
    let verifier = Verifier::new_deferring_effect_match(anchors, tables.tables()).map_err(StreamError::Setup)?;
    let withheld = manifest
        .as_ref()
        .map_or(0, |m| usize::try_from(m.withheld).unwrap_or(usize::MAX))
        .min(blobs);
    let mut blob_table: Vec<BlobSlot> = vec![BlobSlot::default(); withheld];
    let mut effects = vec![0u32; capacity.records];
    let mut reader = PackReader::new_deferring_references(
        verifier,
        PackBuffers {
            record: &mut record_buf,
            blobs: &mut blob_table,
        },
        blobs,
        &mut effects,
    );
    let fed = feed_all(&mut reader, prefix, &mut input, opts, records, obs)?;
    let first = reader.first_pass();
    let result = fed.and_then(|()| reader.finish());
    effects.truncate(first.effects);
    Ok(Pass {
        wrapper,
        manifest,
        result,
        first: Some(first),
        effects,
    })
}
