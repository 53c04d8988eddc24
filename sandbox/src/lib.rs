//! HELM sandbox: bounded, deterministic execution of WebAssembly tools, and offline replay.
//!
//! A tool an agent calls can be a WebAssembly module (a WASI preview1 command). The kernel
//! runs it here, on the [wasmi] interpreter, and records an EFFECT whose extension map
//! carries [`SandboxEvidence`]; anyone holding the pack can later re-execute the call
//! with [`replay_effect`] and check the output bytes and the fuel.
//!
//! - **Bounded**: fuel per call (`GAS_EXHAUSTED`); a wall-clock deadline checked between
//!   fuel slices of a resumable call, so a busy loop is interrupted (`TIME_EXHAUSTED`);
//!   caps on linear memory and tables (`MEMORY_EXHAUSTED`), output (`OUTPUT_LIMIT`) and
//!   module size (`MODULE_TOO_LARGE`); validation and compilation before instantiation
//!   (`MODULE_INVALID`). A hostile module is an outcome or an error, never a host crash
//!   or hang.
//! - **Deny by default**: the guest sees only a WASI preview1 subset implemented here
//!   ([`wasi`]): explicit args and environment, stdin = the tool input, captured
//!   stdout/stderr, one virtual time per call, a seeded random stream, read-only virtual
//!   files. Every other WASI function returns `ENOSYS`; other imports are refused.
//! - **Deterministic**: the same module bytes, input, seed, virtual time, limits, engine
//!   and fuel model give the same output bytes and the same fuel used (spec/sandbox.md
//!   §5).
//!
//! ```
//! use helm_sandbox::{ModuleRef, RunRequest, Sandbox, SandboxConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let module: &[u8] = &[0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0,
//! #     7, 10, 1, 6, 95, 115, 116, 97, 114, 116, 0, 0, 10, 4, 1, 2, 0, 11];
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let mut req = RunRequest::new(b"{\"x\": 1}");
//! req.seed = [7; 32]; // the kernel draws a fresh seed per call and records it
//! let outcome = sandbox.run(ModuleRef::Bytes(module), &req)?;
//! assert_eq!(outcome.exit_code, Some(0));
//! // The EFFECT: executor, meters, output commitment over `outcome.output()`, and the
//! // extension map `helm_sandbox::encode_ext(&SandboxEvidence::of_run(&req, &outcome, &[]))`.
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
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

#[cfg(not(any(feature = "portable-dispatch", feature = "tail-call-dispatch")))]
compile_error!(
    "helm-sandbox needs the `portable-dispatch` (default) or the `tail-call-dispatch` feature: \
     without either, wasmi dispatches by tail calls in every build, which is unsound without optimisation"
);

mod drbg;
mod engine;
mod error;
mod evidence;
mod limits;
mod replay;
mod screen;
pub mod wasi;

pub use drbg::{Drbg, DRBG_LABEL};
pub use engine::{ModuleRef, RunOutcome, RunRequest, Sandbox};
pub use error::{SandboxError, Stop, TrapKind};
pub use evidence::{
    decode_evidence, decode_ext, decode_output, encode_evidence, encode_ext, encode_output, executor, parse_executor,
    DecodedOutput, Ending, EvidenceError, SandboxEvidence, EVIDENCE_VERSION, EXECUTOR_PREFIX, EXT_KEY, METER_FUEL,
};
pub use limits::{Limits, SandboxConfig, ENGINE, FUEL_MODEL, WASM_PAGE};
pub use replay::{replay_effect, Difference, RecordedEffect, ReplayError, ReplayInputs, ReplayOptions, Replayed};
pub use wasi::VirtualFile;

/// Engine configurations for measurements: not for running tools.
#[doc(hidden)]
pub mod bench_support {
    /// wasmi's configuration of fuel model 1, with fuel metering on or off (off: for
    /// measuring what metering costs; such an engine cannot enforce fuel or time).
    pub fn engine_config(consume_fuel: bool) -> wasmi::Config {
        crate::engine::engine_config(consume_fuel)
    }
}
