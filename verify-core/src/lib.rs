//! HELM verify-core: the ProofGraph record format and its verifier.
//!
//! Every tool call an AI agent proposes, every policy decision and every effect becomes a
//! record: a COSE_Sign1 (RFC 9052) over deterministic CBOR (RFC 8949 §4.2.1), signed with
//! Ed25519, chained by parent hashes and Lamport clocks. This crate decodes records
//! strictly and verifies a stream of them against trust anchors the caller supplies.
//!
//! - `#![no_std]`, no allocator needed: the verifier's tables live in memory the caller
//!   provides ([`Tables`]); a full table is an error, never a silent pass.
//! - Sans-IO: the caller pushes each record's bytes and finally asks for the summary.
//! - Features: `alloc` (heap-backed [`OwnedTables`]), `std` (default: `alloc`, fast
//!   precomputed tables, `std::error::Error`), `sign` (build and sign records).
//!
//! The normative specification is `spec/` in the repository; error codes are listed in
//! [`ErrorCode`].
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use verify_core::{Capacity, OwnedTables, Verifier};
//! let anchors: [[u8; 32]; 0] = [];
//! let mut tables = OwnedTables::new(Capacity::for_records(16));
//! let verifier = Verifier::new(&anchors, tables.tables()).unwrap();
//! // for record in records { verifier.push(record)?; }
//! assert!(verifier.finish().is_err()); // an empty stream proves nothing
//! # }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// A VerifyError is built once per verification, never on the hot path, and boxing it
// would need an allocator.
#![allow(clippy::result_large_err)]
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

pub mod cbor;
mod cose;
mod ed25519;
mod error;
mod merkle;
mod record;
mod registry;
#[cfg(feature = "sign")]
mod sign;
mod tables;
mod verifier;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

pub use cose::{envelope_error, Sign1, COSE_ALG_EDDSA, COSE_SIGN1_TAG};
pub use ed25519::{verify_signature, KeyError, PublicKey};
pub use error::{CborError, ErrorCode, VerifyError};
pub use merkle::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, ConsistencyCheck, InclusionCheck,
    MerkleAccumulator, MAX_HEIGHT as MERKLE_MAX_HEIGHT,
};
pub use record::{
    commitment, sha256, Body, CallKind, EffectStatus, Escalation, Kind, Meters, Parents, Record, SignatureList,
    TextList, TrustAction, Verdict, FORMAT_VERSION, MAX_DETAIL_LEN, MAX_METERS, MAX_NAME_LEN, MAX_PARENTS,
    MAX_RECORD_SIZE, MAX_SIGNERS,
};
pub use registry::{
    reason_allowed, role_name_valid, ReasonUse, ATTESTATION_TYPES, MAX_ROLES, MAX_ROLE_LEN, REASON_CODES,
    ROLE_APPROVER, ROLE_KERNEL, ROLE_POLICY_AUTHOR, ROLE_WITNESS,
};
#[cfg(feature = "alloc")]
pub use tables::OwnedTables;
pub use tables::{Capacity, EscalationSlot, IntentSlot, KeySlot, RecordSlot, StreamSlot, Tables};
pub use verifier::{
    approval_challenge, call_digest, checkpoint_challenge, KeyCache, Partial, Selection, SetupError, SignatureCheck,
    Verified, Verifier, APPROVAL_CONTEXT, CHECKPOINT_CONTEXT,
};

#[cfg(feature = "sign")]
pub use sign::{body, protected_header, sig_structure, sign_payload, CborWriter, RecordBuilder, Signer};
