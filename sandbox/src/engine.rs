//! The sandbox: a wasmi engine, a cache of compiled modules, and the bounded run loop.

use core::time::Duration;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use verify_core::EffectStatus;
use wasmi::{
    CompilationMode, Config, EnforcedLimits, Engine, Error, ExternType, Linker, Module, Store, TrapCode,
    TypedResumableCall, ValType,
};

use crate::error::{SandboxError, Stop, TrapKind};
use crate::limits::{Limits, SandboxConfig};
use crate::wasi::{self, Host, HostInit, HostStop, VirtualFile, IMPLEMENTED, WASI_MODULE};

/// Which module to run: its bytes (compiled, or taken from the cache when the same bytes
/// were compiled before), or the SHA-256 of bytes already in the cache.
#[derive(Clone, Copy, Debug)]
pub enum ModuleRef<'a> {
    /// The module's bytes.
    Bytes(&'a [u8]),
    /// The SHA-256 of a module compiled earlier ([`Sandbox::compile`]).
    Hash(&'a [u8; 32]),
}

/// Everything a run depends on besides the module. With the same module, the same request
/// (wall-clock limit aside) gives the same outcome.
#[derive(Clone, Debug)]
pub struct RunRequest<'a> {
    /// stdin: the tool input (the content the call's `args` commitment commits to).
    pub input: &'a [u8],
    /// The guest's argv, exactly (by convention `args[0]` names the program). No NUL.
    pub args: &'a [String],
    /// The guest's environment, in this order. Names non-empty, no `=` or NUL; values no NUL.
    pub env: &'a [(String, String)],
    /// Read-only files under the preopened directory `/`, each path given once.
    pub files: &'a [VirtualFile],
    /// Seed of `random_get`'s stream (spec/sandbox.md §3.4); the kernel draws it per call.
    pub seed: [u8; 32],
    /// What every clock reads, in milliseconds since the Unix epoch (the kernel's time of
    /// the call). It does not advance during the run.
    pub virtual_time_ms: u64,
    /// The limits of this run.
    pub limits: Limits,
}

impl<'a> RunRequest<'a> {
    /// A request with `input` on stdin and everything else empty, zero or default.
    pub fn new(input: &'a [u8]) -> RunRequest<'a> {
        RunRequest {
            input,
            args: &[],
            env: &[],
            files: &[],
            seed: [0; 32],
            virtual_time_ms: 0,
            limits: Limits::DEFAULT,
        }
    }
}

/// The result of a run the sandbox carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// SHA-256 of the module's bytes.
    pub module: [u8; 32],
    /// The exit status: 0 when `_start` returned, the argument of `proc_exit` when it was
    /// called; `None` when the run was stopped.
    pub exit_code: Option<i32>,
    /// What the guest wrote to stdout (up to the output cap).
    pub stdout: Vec<u8>,
    /// What the guest wrote to stderr (up to the output cap).
    pub stderr: Vec<u8>,
    /// Fuel consumed by instantiation, execution and host calls.
    pub fuel_used: u64,
    /// Why the run was stopped, if it was.
    pub stopped: Option<Stop>,
    /// Whether re-running gives the same outcome: false only after `TIME_EXHAUSTED`.
    pub replayable: bool,
    /// Whether the compiled module came from the cache (not part of the outcome proper:
    /// cold and cached runs are otherwise identical).
    pub cached: bool,
    /// Wall-clock time of the run, compilation included (not deterministic).
    pub elapsed: Duration,
}

impl RunOutcome {
    /// The EFFECT status: SUCCEEDED for exit 0, FAILED for another exit status or a trap,
    /// ABORTED for a stop by a limit (fuel, time, memory, output).
    pub fn status(&self) -> EffectStatus {
        match (self.stopped, self.exit_code) {
            (None, Some(0)) => EffectStatus::Succeeded,
            (None, _) | (Some(Stop::Trap(_)), _) => EffectStatus::Failed,
            (Some(_), _) => EffectStatus::Aborted,
        }
    }

    /// The result bytes the EFFECT's `output` commits to (spec/sandbox.md §6.2).
    pub fn output(&self) -> Vec<u8> {
        crate::evidence::encode_output(self.exit_code, &self.stdout, &self.stderr)
    }

    /// The meters for the EFFECT: `{"fuel": fuel_used}`.
    pub fn meters(&self) -> [(&'static str, u64); 1] {
        [(crate::evidence::METER_FUEL, self.fuel_used)]
    }
}

struct Compiled {
    module: Module,
    linker: Arc<Linker<Host>>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], (Arc<Compiled>, u64)>,
    clock: u64,
}

/// Runs WebAssembly modules within limits. Cheap to share between threads (`&self` API);
/// each run has its own store.
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<Host>>,
    config: SandboxConfig,
    cache: Mutex<Cache>,
}

impl core::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether wasmi dispatches by tail calls in a build with debug assertions (unsound).
const TAIL_CALLS_WITH_DEBUG_ASSERTIONS: bool = cfg!(all(
    feature = "tail-call-dispatch",
    not(feature = "portable-dispatch"),
    debug_assertions
));

/// The engine configuration of fuel model 1 (spec/sandbox.md §5).
pub(crate) fn engine_config(consume_fuel: bool) -> Config {
    let mut c = Config::default();
    c.consume_fuel(consume_fuel)
        // Eager: every function is compiled before instantiation, so no run pays
        // translation fuel and cold and cached runs use the same fuel.
        .compilation_mode(CompilationMode::Eager)
        // A start function would run inside instantiation, which cannot be sliced for the
        // deadline: refused (WASI commands use the `_start` export instead).
        .allow_start_fn(false)
        // No memory64, SIMD or relaxed SIMD: their cargo features are off.
        .enforced_limits(EnforcedLimits::strict());
    c
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

enum End {
    Exit(i32),
    Stop(Stop),
}

fn trap_kind(code: TrapCode) -> Stop {
    match code {
        TrapCode::OutOfFuel => Stop::Gas,
        TrapCode::GrowthOperationLimited | TrapCode::OutOfSystemMemory => Stop::Memory,
        TrapCode::UnreachableCodeReached => Stop::Trap(TrapKind::Unreachable),
        TrapCode::MemoryOutOfBounds => Stop::Trap(TrapKind::MemoryOutOfBounds),
        TrapCode::TableOutOfBounds => Stop::Trap(TrapKind::TableOutOfBounds),
        TrapCode::IndirectCallToNull => Stop::Trap(TrapKind::IndirectCallToNull),
        TrapCode::IntegerDivisionByZero => Stop::Trap(TrapKind::IntegerDivisionByZero),
        TrapCode::IntegerOverflow => Stop::Trap(TrapKind::IntegerOverflow),
        TrapCode::BadConversionToInteger => Stop::Trap(TrapKind::BadConversionToInteger),
        TrapCode::StackOverflow => Stop::Trap(TrapKind::StackOverflow),
        TrapCode::BadSignature => Stop::Trap(TrapKind::BadSignature),
    }
}

/// How an error from instantiation or execution ends the run.
fn classify(e: &Error, host: &Host) -> Result<End, SandboxError> {
    if let Some(code) = e.i32_exit_status() {
        return Ok(End::Exit(code));
    }
    if let Some(code) = host.exit {
        return Ok(End::Exit(code));
    }
    if let Some(s) = e.downcast_ref::<HostStop>() {
        return Ok(End::Stop(match s {
            HostStop::Gas => Stop::Gas,
            HostStop::OutputLimit => Stop::OutputLimit,
        }));
    }
    if host.limiter.exceeded {
        return Ok(End::Stop(Stop::Memory));
    }
    if let Some(code) = e.as_trap_code() {
        return Ok(End::Stop(trap_kind(code)));
    }
    match e.kind() {
        wasmi::errors::ErrorKind::Host(_) => Ok(End::Stop(Stop::Trap(TrapKind::Host))),
        wasmi::errors::ErrorKind::Memory(_) | wasmi::errors::ErrorKind::Table(_) => Ok(End::Stop(Stop::Memory)),
        _ => Err(SandboxError::Engine(e.to_string())),
    }
}

fn engine_err(e: Error) -> SandboxError {
    SandboxError::Engine(e.to_string())
}

impl Sandbox {
    /// A sandbox with `config`.
    ///
    /// Refuses (`ENGINE_ERROR`) to start with the `tail-call-dispatch` feature in a build
    /// with debug assertions, where that dispatch can overflow the host's stack.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if TAIL_CALLS_WITH_DEBUG_ASSERTIONS {
            return Err(SandboxError::Engine(
                "the tail-call-dispatch feature is unsound in a build with debug assertions \
                 (a guest's loop can overflow the host stack); use portable-dispatch"
                    .into(),
            ));
        }
        Sandbox::with_engine(config, engine_config(true))
    }

    fn with_engine(config: SandboxConfig, engine_config: Config) -> Result<Sandbox, SandboxError> {
        let engine = Engine::new(&engine_config);
        let mut linker = Linker::new(&engine);
        wasi::define(&mut linker).map_err(|e| SandboxError::Engine(e.to_string()))?;
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            config,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Parses, validates and compiles `bytes` (or finds them in the cache) and returns
    /// their SHA-256, under which [`ModuleRef::Hash`] finds them. A refused module is
    /// `MODULE_TOO_LARGE`, `MODULE_INVALID` or `IMPORT_DENIED`.
    pub fn compile(&self, bytes: &[u8]) -> Result<[u8; 32], SandboxError> {
        let (_, hash, _) = self.compiled(bytes)?;
        Ok(hash)
    }

    /// Whether the module with this SHA-256 is in the cache.
    pub fn is_cached(&self, hash: &[u8; 32]) -> bool {
        self.lock().entries.contains_key(hash)
    }

    /// Drops every compiled module.
    pub fn clear_cache(&self) {
        self.lock().entries.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, hash: &[u8; 32]) -> Option<Arc<Compiled>> {
        let mut cache = self.lock();
        cache.clock = cache.clock.wrapping_add(1);
        let now = cache.clock;
        cache.entries.get_mut(hash).map(|(c, used)| {
            *used = now;
            c.clone()
        })
    }

    fn compiled(&self, bytes: &[u8]) -> Result<(Arc<Compiled>, [u8; 32], bool), SandboxError> {
        if bytes.len() > self.config.max_module_bytes {
            return Err(SandboxError::ModuleTooLarge {
                size: bytes.len(),
                max: self.config.max_module_bytes,
            });
        }
        let hash = sha256(bytes);
        if let Some(c) = self.lookup(&hash) {
            return Ok((c, hash, true));
        }
        let compiled = Arc::new(self.compile_uncached(bytes)?);
        if self.config.cache_entries > 0 {
            let mut cache = self.lock();
            while cache.entries.len() >= self.config.cache_entries {
                let oldest = cache.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k);
                match oldest {
                    Some(k) => cache.entries.remove(&k),
                    None => break,
                };
            }
            cache.clock = cache.clock.wrapping_add(1);
            let now = cache.clock;
            cache.entries.insert(hash, (compiled.clone(), now));
        }
        Ok((compiled, hash, false))
    }

    fn compile_uncached(&self, bytes: &[u8]) -> Result<Compiled, SandboxError> {
        crate::screen::screen(bytes).map_err(SandboxError::ModuleInvalid)?;
        crate::screen::validate(bytes).map_err(SandboxError::ModuleInvalid)?;
        // Defence in depth: a panic inside wasmi's parser or compiler (the screen above
        // removes the one known) is a refusal, not a host crash. wasmi's locks are spin
        // locks released on unwind, so the engine stays usable.
        let compiled = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| Module::new(&self.engine, bytes)));
        let module = match compiled {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(SandboxError::ModuleInvalid(e.to_string())),
            Err(_) => {
                return Err(SandboxError::ModuleInvalid(
                    "the engine panicked while compiling the module".into(),
                ))
            }
        };
        let deny = |module: &str, name: &str, reason: &'static str| SandboxError::ImportDenied {
            module: module.to_string(),
            name: name.to_string(),
            reason,
        };
        let mut stubs: Vec<(String, wasmi::FuncType)> = Vec::new();
        let mut stubbed = BTreeSet::new();
        for import in module.imports() {
            let (m, n) = (import.module(), import.name());
            if m != WASI_MODULE {
                return Err(deny(m, n, "only wasi_snapshot_preview1 is linked"));
            }
            let ExternType::Func(ty) = import.ty() else {
                return Err(deny(m, n, "only functions can be imported"));
            };
            if let Some((_, params, results)) = IMPLEMENTED.iter().find(|(name, _, _)| *name == n) {
                if ty.params() != *params || ty.results() != *results {
                    return Err(deny(m, n, "the signature differs from WASI preview1"));
                }
            } else if ty.results() == [ValType::I32] {
                if stubbed.insert(n.to_string()) {
                    stubs.push((n.to_string(), ty.clone()));
                } else if stubs.iter().any(|(s, t)| s == n && t != ty) {
                    return Err(deny(m, n, "imported twice with different signatures"));
                }
            } else {
                return Err(deny(
                    m,
                    n,
                    "outside the WASI subset, and its signature cannot return an errno",
                ));
            }
        }
        match module.get_export("_start") {
            Some(ExternType::Func(ty)) if ty.params().is_empty() && ty.results().is_empty() => {}
            _ => {
                return Err(SandboxError::ModuleInvalid(
                    "no exported function `_start` of type () -> ()".into(),
                ))
            }
        }
        let linker = if stubs.is_empty() {
            self.linker.clone()
        } else {
            let mut l = (*self.linker).clone();
            for (name, ty) in stubs {
                wasi::define_enosys(&mut l, &name, ty).map_err(|_| SandboxError::ImportDenied {
                    module: WASI_MODULE.to_string(),
                    name,
                    reason: "cannot be linked",
                })?;
            }
            Arc::new(l)
        };
        Ok(Compiled { module, linker })
    }

    /// Runs a module's `_start` under `req`. A refused module or request is an error;
    /// everything that happens once the module is accepted, including every stop, is an
    /// outcome.
    pub fn run(&self, module: ModuleRef<'_>, req: &RunRequest<'_>) -> Result<RunOutcome, SandboxError> {
        let started = Instant::now();
        let (compiled, hash, cached) = match module {
            ModuleRef::Bytes(b) => self.compiled(b)?,
            ModuleRef::Hash(h) => (self.lookup(h).ok_or(SandboxError::ModuleNotCached(*h))?, *h, true),
        };
        let host = Host::new(&HostInit {
            args: req.args,
            env: req.env,
            input: req.input,
            files: req.files,
            seed: req.seed,
            virtual_time_ms: req.virtual_time_ms,
            output_cap: req.limits.output_bytes,
            memory_bytes: req.limits.memory_bytes,
            table_elements: req.limits.table_elements,
            max_files: self.config.max_files,
            max_open_files: self.config.max_open_files,
        })
        .map_err(SandboxError::RequestInvalid)?;
        let deadline = Instant::now().checked_add(Duration::from_millis(req.limits.wall_ms));
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        let budget = req.limits.fuel;
        // Instantiation cannot be resumed: it gets the whole budget, then the rest is sliced.
        store.set_fuel(budget).map_err(engine_err)?;
        let end = match compiled.linker.instantiate_and_start(&mut store, &compiled.module) {
            Err(e) => classify(&e, store.data())?,
            Ok(instance) => {
                store.data_mut().memory = instance.get_memory(&store, "memory");
                let start = instance
                    .get_typed_func::<(), ()>(&store, "_start")
                    .map_err(engine_err)?;
                let slice = self.config.fuel_slice.max(1);
                let left = store.get_fuel().map_err(engine_err)?;
                let grant = left.min(slice);
                store.set_fuel(grant).map_err(engine_err)?;
                store.data_mut().fuel_reserve = left.saturating_sub(grant);
                let mut call = start.call_resumable(&mut store, ());
                loop {
                    match call {
                        Ok(TypedResumableCall::Finished(())) => break End::Exit(0),
                        Ok(TypedResumableCall::HostTrap(t)) => break classify(t.host_error(), store.data())?,
                        Err(e) => break classify(&e, store.data())?,
                        Ok(TypedResumableCall::OutOfFuel(inv)) => {
                            if deadline.is_some_and(|d| Instant::now() >= d) {
                                break End::Stop(Stop::Time);
                            }
                            let left = store.get_fuel().map_err(engine_err)?;
                            let reserve = store.data().fuel_reserve;
                            let need = inv.required_fuel();
                            if left.saturating_add(reserve) < need {
                                break End::Stop(Stop::Gas);
                            }
                            let grant = slice.max(need.saturating_sub(left)).min(reserve);
                            store.set_fuel(left.saturating_add(grant)).map_err(engine_err)?;
                            store.data_mut().fuel_reserve = reserve.saturating_sub(grant);
                            call = inv.resume(&mut store);
                        }
                    }
                }
            }
        };
        let unused = store
            .get_fuel()
            .map_err(engine_err)?
            .saturating_add(store.data().fuel_reserve);
        let fuel_used = budget.saturating_sub(unused);
        let host = store.into_data();
        let (exit_code, stopped) = match end {
            End::Exit(code) => (Some(code), None),
            End::Stop(s) => (None, Some(s)),
        };
        Ok(RunOutcome {
            module: hash,
            exit_code,
            stdout: host.stdout,
            stderr: host.stderr,
            fuel_used,
            stopped,
            replayable: stopped.is_none_or(|s| s.replayable()),
            cached,
            elapsed: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_call_dispatch_is_refused_with_debug_assertions() {
        assert_eq!(
            Sandbox::new(SandboxConfig::default()).is_err(),
            TAIL_CALLS_WITH_DEBUG_ASSERTIONS
        );
    }

    #[test]
    fn sandbox_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Sandbox>();
    }
}
