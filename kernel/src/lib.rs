//! The HELM execution kernel: every proposed tool call becomes signed, durable records
//! (INTENT, DECISION; later APPROVAL and EFFECT) before anyone acts on it.
//!
//! - [`signer`]: the kernel key behind an interface: a key file by default, a PKCS#11
//!   token (an HSM) with the `pkcs11` feature.
//! - [`store`]: the ProofGraph store on local disk: append-only segment files, one
//!   writer at a time, group commit, crash recovery.
//!
//! Synchronous and free of network code, so that the air-gapped CLI can read stores and
//! perform key ceremonies with it. The HTTP server lives in the `proxy` crate.

#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic,
        reason = "unit tests fail loudly"
    )
)]

mod background;
pub mod clock;
mod kernel;
pub mod keyfile;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod presign;
pub mod signer;
pub mod store;
pub mod trust;
mod waiters;

pub use kernel::{
    Answer, Args, AttestationReport, Attested, EffectReport, Kernel, KernelConfig, KernelError, Metrics, OpenReport,
    PendingApproval, Proposal, Refusal, Status, StoreState, ToolRun, WasmTool, MALFORMED_REASONS, SALT_LEN,
};
