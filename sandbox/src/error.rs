//! Why a run stopped, and why a module was refused.

use core::fmt;

/// Why a run stopped before the guest finished on its own (returned from `_start` or
/// called `proc_exit`). Each has a stable reason code ([`Stop::code`]) recorded in the
/// evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stop {
    /// The fuel limit was reached: `GAS_EXHAUSTED`. Deterministic, replayable.
    Gas,
    /// The wall-clock limit was reached: `TIME_EXHAUSTED`. Not deterministic, not
    /// replayable.
    Time,
    /// Linear memory or a table would have grown beyond its cap, or the host could not
    /// allocate it: `MEMORY_EXHAUSTED`.
    Memory,
    /// stdout and stderr together reached `output_bytes`: `OUTPUT_LIMIT`. The output up to
    /// the cap is kept.
    OutputLimit,
    /// The guest trapped: `TRAP`, with the kind.
    Trap(TrapKind),
}

impl Stop {
    /// The reason code: `GAS_EXHAUSTED`, `TIME_EXHAUSTED`, `MEMORY_EXHAUSTED`,
    /// `OUTPUT_LIMIT` or `TRAP`.
    pub fn code(&self) -> &'static str {
        match self {
            Stop::Gas => "GAS_EXHAUSTED",
            Stop::Time => "TIME_EXHAUSTED",
            Stop::Memory => "MEMORY_EXHAUSTED",
            Stop::OutputLimit => "OUTPUT_LIMIT",
            Stop::Trap(_) => "TRAP",
        }
    }

    /// Whether a run stopped this way can be re-executed to the same result. Only
    /// a wall-clock stop cannot.
    pub fn replayable(&self) -> bool {
        !matches!(self, Stop::Time)
    }

    /// The trap kind, for `TRAP`.
    pub fn trap(&self) -> Option<TrapKind> {
        match self {
            Stop::Trap(t) => Some(*t),
            _ => None,
        }
    }

    /// The stop named by a reason code (and, for `TRAP`, a trap code).
    pub fn from_code(code: &str, trap: Option<&str>) -> Option<Stop> {
        Some(match (code, trap) {
            ("GAS_EXHAUSTED", None) => Stop::Gas,
            ("TIME_EXHAUSTED", None) => Stop::Time,
            ("MEMORY_EXHAUSTED", None) => Stop::Memory,
            ("OUTPUT_LIMIT", None) => Stop::OutputLimit,
            ("TRAP", Some(t)) => Stop::Trap(TrapKind::from_code(t)?),
            _ => return None,
        })
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Trap(t) => write!(f, "TRAP ({})", t.code()),
            other => f.write_str(other.code()),
        }
    }
}

/// What kind of trap stopped the guest. Codes are stable (recorded in evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrapKind {
    /// `unreachable` was executed (Rust's `panic` and `abort` end here).
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// A table access outside the table.
    TableOutOfBounds,
    /// `call_indirect` to a null entry.
    IndirectCallToNull,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// Signed division overflow.
    IntegerOverflow,
    /// Float-to-integer conversion of NaN or an out-of-range value.
    BadConversionToInteger,
    /// Recursion deeper than the engine's stack limits (part of the fuel model).
    StackOverflow,
    /// `call_indirect` with a mismatching signature.
    BadSignature,
    /// A host function failed in a way that is not a stop of its own.
    Host,
}

impl TrapKind {
    /// The trap code recorded in evidence.
    pub fn code(&self) -> &'static str {
        match self {
            TrapKind::Unreachable => "UNREACHABLE",
            TrapKind::MemoryOutOfBounds => "MEMORY_OUT_OF_BOUNDS",
            TrapKind::TableOutOfBounds => "TABLE_OUT_OF_BOUNDS",
            TrapKind::IndirectCallToNull => "INDIRECT_CALL_TO_NULL",
            TrapKind::IntegerDivisionByZero => "INTEGER_DIVISION_BY_ZERO",
            TrapKind::IntegerOverflow => "INTEGER_OVERFLOW",
            TrapKind::BadConversionToInteger => "BAD_CONVERSION_TO_INTEGER",
            TrapKind::StackOverflow => "STACK_OVERFLOW",
            TrapKind::BadSignature => "BAD_SIGNATURE",
            TrapKind::Host => "HOST",
        }
    }

    /// The kind named by a trap code.
    pub fn from_code(code: &str) -> Option<TrapKind> {
        Some(match code {
            "UNREACHABLE" => TrapKind::Unreachable,
            "MEMORY_OUT_OF_BOUNDS" => TrapKind::MemoryOutOfBounds,
            "TABLE_OUT_OF_BOUNDS" => TrapKind::TableOutOfBounds,
            "INDIRECT_CALL_TO_NULL" => TrapKind::IndirectCallToNull,
            "INTEGER_DIVISION_BY_ZERO" => TrapKind::IntegerDivisionByZero,
            "INTEGER_OVERFLOW" => TrapKind::IntegerOverflow,
            "BAD_CONVERSION_TO_INTEGER" => TrapKind::BadConversionToInteger,
            "STACK_OVERFLOW" => TrapKind::StackOverflow,
            "BAD_SIGNATURE" => TrapKind::BadSignature,
            "HOST" => TrapKind::Host,
            _ => return None,
        })
    }
}

/// A module or request the sandbox refused: nothing ran. Module refusals
/// ([`SandboxError::is_module_refusal`]) are deterministic and can be recorded as the
/// outcome of a call ([`crate::SandboxEvidence::refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SandboxError {
    /// The module is larger than `max_module_bytes`: `MODULE_TOO_LARGE`.
    ModuleTooLarge {
        /// Its size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The module does not parse, validate or compile, has a start section, or lacks a
    /// `_start` function: `MODULE_INVALID`.
    ModuleInvalid(String),
    /// The module imports something outside the sandbox's WASI subset that cannot be
    /// answered with an errno (another module name, a non-function, a known function with
    /// another signature): `IMPORT_DENIED`.
    ImportDenied {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// `run` was given a hash that is not in the cache: `MODULE_NOT_CACHED`. Not an
    /// outcome of the module (the caller must supply the bytes).
    ModuleNotCached([u8; 32]),
    /// The request itself is unusable (NUL in an argument, duplicate or invalid file path,
    /// too many files): `REQUEST_INVALID`. Not an outcome of the module.
    RequestInvalid(String),
    /// The engine failed in a way that is not the module's doing: `ENGINE_ERROR`.
    Engine(String),
}

impl SandboxError {
    /// The reason code.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::ModuleTooLarge { .. } => "MODULE_TOO_LARGE",
            SandboxError::ModuleInvalid(_) => "MODULE_INVALID",
            SandboxError::ImportDenied { .. } => "IMPORT_DENIED",
            SandboxError::ModuleNotCached(_) => "MODULE_NOT_CACHED",
            SandboxError::RequestInvalid(_) => "REQUEST_INVALID",
            SandboxError::Engine(_) => "ENGINE_ERROR",
        }
    }

    /// Whether the error is a property of the module bytes alone (the same bytes are
    /// refused the same way by every sandbox with the same engine and fuel model), so it
    /// can be recorded as a call's outcome and replayed. `MODULE_TOO_LARGE` is not: it
    /// depends on the sandbox's configuration.
    pub fn is_module_refusal(&self) -> bool {
        matches!(self, SandboxError::ModuleInvalid(_) | SandboxError::ImportDenied { .. })
    }
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::ModuleTooLarge { size, max } => {
                write!(f, "MODULE_TOO_LARGE: module is {size} bytes, the limit is {max}")
            }
            SandboxError::ModuleInvalid(why) => write!(f, "MODULE_INVALID: {why}"),
            SandboxError::ImportDenied { module, name, reason } => {
                write!(f, "IMPORT_DENIED: import {module}.{name}: {reason}")
            }
            SandboxError::ModuleNotCached(h) => {
                write!(f, "MODULE_NOT_CACHED: no compiled module sha256:{}", hex::encode(h))
            }
            SandboxError::RequestInvalid(why) => write!(f, "REQUEST_INVALID: {why}"),
            SandboxError::Engine(why) => write!(f, "ENGINE_ERROR: {why}"),
        }
    }
}

impl core::error::Error for SandboxError {}
