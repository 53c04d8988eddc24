//! HELM `receipt.v5` compatibility profile: verify receipts signed by the Go
//! implementation of HELM (Mindburn-Labs/helm-ai-kernel) under a key you trust.
//!
//! A `receipt.v5` receipt is a JSON object. Thirteen of its members are signed; everything
//! else in it (`timestamp`, `metadata`, `key_id`, `public_key_set`, transparency fields, ...)
//! is an unauthenticated transport claim. The signature is Ed25519 over the RFC 8785
//! canonical JSON of the object made of exactly those 13 members, restricted to the
//! "interoperable subset" (the only number, `lamport_clock`, is an integer in
//! [0, 2^53-1]). The normative text is `spec/receipt-v5.md` in the repository.
//!
//! - `#![no_std]`, `#![forbid(unsafe_code)]`, no allocator: the reader validates in place
//!   and hands out borrowed strings ([`JsonStr`]); the signing payload is signed in pieces
//!   borrowed from the input.
//! - Strict: I-JSON (UTF-8, no lone surrogates, no duplicate member names), every number
//!   of the receipt in the interoperable subset, exact member types.
//! - Ed25519 with verify-core's pinned, non-malleable semantics (spec/ed25519.md).
//! - Errors carry one of five stable classes ([`ErrorClass`]); three are the Go
//!   implementation's own (`non_interoperable_number`, `contract_mismatch`,
//!   `signature_rejected`).
//! - Also: [`canonicalize`], RFC 8785 canonical JSON for the interoperable subset.
//! - Features: `alloc` (`Vec` conveniences), `std` (default: `alloc` and verify-core's
//!   fast Ed25519 backend). Errors implement `core::error::Error` in every build.
//!
//! ```
//! use receipt_v5::{verify, ErrorClass, TrustedKey};
//!
//! let key: TrustedKey =
//!     "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61".parse().unwrap();
//! let receipt = br#"{"signature_version":"receipt.v5","verdict":"ALLOW"}"#;
//! let err = verify(receipt, &key).unwrap_err();
//! assert_eq!(err.class(), ErrorClass::ContractMismatch); // 11 signed members missing
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic,
        reason = "tests"
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod canon;
mod error;
mod json;
mod key;
mod receipt;

#[cfg(feature = "alloc")]
pub use canon::canonicalize_to_vec;
pub use canon::{canonicalize, canonicalize_with};
pub use error::{
    ContractError, ErrorClass, JsonError, JsonErrorKind, LimitError, NumberError, NumberErrorKind, ReceiptError,
};
pub use json::{Chars, JsonStr, JsonValue, MAX_DEPTH, MAX_OPEN_MEMBERS, MAX_SAFE_INTEGER};
pub use key::{TrustedKey, TrustedKeyError};
pub use receipt::{
    signing_payload, verify, verify_with_scratch, Member, MemberValue, UnsignedMembers, UnverifiedReceipt,
    VerifiedReceipt, INLINE_SCRATCH_LEN, SIGNATURE_VERSION,
};
pub use verify_core::KeyError;
