//! Per-call limits and per-sandbox configuration.

/// The engine that runs every module, exactly as recorded in evidence. The dependency is
/// pinned (`=2.0.0`), so this string cannot drift from the code that runs.
pub const ENGINE: &str = "wasmi 2.0.0";

/// Version of the fuel cost model (spec/sandbox.md §5): wasmi 2.0.0's default operator and
/// copy costs, eager compilation (no translation fuel), the host-call costs of this crate,
/// and the engine's stack limits. Any change to what a run costs, or to where it stops,
/// is a new version.
pub const FUEL_MODEL: u32 = 1;

/// Wasm page size in bytes.
pub const WASM_PAGE: u64 = 65_536;

/// Limits of one run. They are inputs of the run: the same module, input, seed and limits
/// give the same result, and they are recorded in the evidence so a replay uses the same.
///
/// `wall_ms` is the exception: time is not deterministic, a run it stops is marked not
/// replayable, and a replay may allow more time (see [`crate::ReplayOptions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Fuel for the whole call (instantiation and `_start`); running out is
    /// `GAS_EXHAUSTED`.
    pub fuel: u64,
    /// Wall-clock milliseconds for instantiation and execution; running out is
    /// `TIME_EXHAUSTED`.
    pub wall_ms: u64,
    /// Largest linear memory, in bytes; a `memory.grow` (or an initial memory) beyond it is
    /// `MEMORY_EXHAUSTED`.
    pub memory_bytes: u64,
    /// Most elements in any table; growth beyond it is `MEMORY_EXHAUSTED`.
    pub table_elements: u64,
    /// Most bytes written to stdout and stderr together; the write that crosses it is cut
    /// at the cap and the run stops with `OUTPUT_LIMIT`.
    pub output_bytes: u64,
}

impl Limits {
    /// 100 M fuel (about 0.3 s of interpretation), 2 s, 64 MiB of memory, 10,000 table
    /// elements, 1 MiB of output.
    pub const DEFAULT: Limits = Limits {
        fuel: 100_000_000,
        wall_ms: 2_000,
        memory_bytes: 64 << 20,
        table_elements: 10_000,
        output_bytes: 1 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Configuration of a [`crate::Sandbox`]: what it accepts before any run. None of it changes
/// a run's result, so none of it is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Largest module accepted, in bytes (`MODULE_TOO_LARGE`). Bounds parsing,
    /// validation and compilation time, which the wall-clock limit does not cover.
    pub max_module_bytes: usize,
    /// Compiled modules kept in the cache (keyed by SHA-256). When full, the least
    /// recently used entry is dropped.
    pub cache_entries: usize,
    /// Fuel per slice: execution is interrupted after this much fuel to check the clock,
    /// then resumed. Smaller slices stop a busy loop closer to its deadline; the slice size
    /// never changes the result or the fuel used.
    pub fuel_slice: u64,
    /// Most virtual files per run.
    pub max_files: usize,
    /// Most file descriptors a guest may hold open at once (beyond stdio and the
    /// preopened directory); `path_open` beyond it returns `EMFILE`.
    pub max_open_files: usize,
}

impl SandboxConfig {
    /// 16 MiB modules, 64 cached modules, 1 M-fuel slices (a few milliseconds), 1,024 files,
    /// 64 open files.
    pub const DEFAULT: SandboxConfig = SandboxConfig {
        max_module_bytes: 16 << 20,
        cache_entries: 64,
        fuel_slice: 1_000_000,
        max_files: 1_024,
        max_open_files: 64,
    };
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig::DEFAULT
    }
}
