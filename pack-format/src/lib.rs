//! HELM EvidencePack: one file that proves what an agent run did, verifiable offline.
//!
//! A pack is a plain ustar archive (any `tar -tf` lists it), written canonically and read
//! strictly so that every byte is significant:
//!
//! ```text
//! manifest.cbor            COSE_Sign1: counts and RFC 9162 roots (no entry list)
//! withheld.cbor            names of blobs withheld for privacy (CBOR sequence)
//! blobs/sha256/<hex>       content-addressed blobs, ascending (arguments, outputs, bundles)
//! records/000000.cbor      records as CBOR sequences (RFC 8742), 16,384 per segment
//! ...                      then two zero blocks
//! ```
//!
//! - `#![no_std]`: [`PackReader`] streams a pack of any size through the verify-core
//!   verifier in one pass with caller-provided memory; nothing is extracted.
//! - `alloc`: [`write_pack`] writes the canonical bytes; [`write_partial_pack`] a partial
//!   pack (one session or a time range, with inclusion proofs to a CHECKPOINT).
//! - `std`: `.tar.zst` and `.tar.gz` transport wrappers with decompression limits;
//!   [`verify_reader`] (one pass, any reader) and [`verify_seekable`] (a file: large packs
//!   are read twice, keeping no blob names or call digests in the first pass, for about
//!   two thirds of the memory and the same verdicts).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(
    clippy::result_large_err,
    reason = "errors are built once per verification; boxing needs an allocator"
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod error;
mod manifest;
#[cfg(feature = "std")]
mod parallel;
mod reader;
#[cfg(feature = "std")]
mod stream;
pub mod tar;
#[cfg(feature = "std")]
pub mod transport;
#[cfg(feature = "std")]
mod twopass;
#[cfg(feature = "alloc")]
mod writer;

pub use error::{PackCode, PackError};
pub use manifest::{Manifest, PartialClaims, MAX_MANIFEST_SIZE, PACK_FORMAT};
pub use reader::{
    blob_reference, record_len, BlobSlot, NoObserver, NotARecord, Observer, PackBuffers, PackReader, PackSummary,
    MAX_PROOF_HASHES, SEGMENT_RECORDS, WITHHELD_ITEM,
};
#[cfg(feature = "std")]
pub use stream::{capacity_for, verify_reader, StreamError, VerifyOptions};
#[cfg(feature = "std")]
pub use twopass::{verify_seekable, TwoPass, TWO_PASS_MIN_RECORDS};
#[cfg(feature = "alloc")]
pub use writer::{
    plan_partial, proof_item, write_pack, write_partial_pack, write_partial_plan, MerkleTree, PackContents,
    PartialPack, PartialPlan, WriteError,
};
