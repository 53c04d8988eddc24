//! Shared test helpers: the wasm32-wasip1 tools (built on demand), WAT modules, runs.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::expect_used, clippy::panic, reason = "test helpers")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use helm_sandbox::{Limits, ModuleRef, RunOutcome, RunRequest, Sandbox, SandboxConfig, SandboxError};

/// Directory of the built tools. `HELM_SANDBOX_TOOLS_DIR` points at prebuilt ones;
/// otherwise `cargo build --release --target wasm32-wasip1` of `sandbox/tools` runs once
/// per test binary (cargo's own lock serialises concurrent builds; an up-to-date build
/// takes a fraction of a second).
fn tools_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("HELM_SANDBOX_TOOLS_DIR") {
            return PathBuf::from(d);
        }
        let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools");
        let target_dir = tools.join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(tools.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            // The outer build's settings are not the tools' settings.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_MAKEFLAGS")
            .output()
            .expect("could not start cargo to build sandbox/tools");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("wasm32-wasip1")
                && (stderr.contains("target may not be installed")
                    || stderr.contains("can't find crate for `std`")
                    || stderr.contains("can't find crate for `core`"))
            {
                panic!(
                    "\n\nThe sandbox tests need the wasm32-wasip1 target to build sandbox/tools.\n\
                     Install it with:   rustup target add wasm32-wasip1\n\n{stderr}"
                );
            }
            panic!("building sandbox/tools for wasm32-wasip1 failed:\n{stderr}");
        }
        target_dir.join("wasm32-wasip1").join("release")
    })
}

/// The bytes of a tool (`json-transform`, `infinite-loop`, `memory-hog`, `stdout-flood`,
/// `sneaky`).
pub(crate) fn tool(name: &str) -> Vec<u8> {
    let path = tools_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A module from WebAssembly text.
pub(crate) fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).unwrap_or_else(|e| panic!("bad WAT in test: {e}"))
}

/// A module from a file in tests/wat/.
pub(crate) fn wat_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/wat").join(name);
    wat::parse_file(&path).unwrap_or_else(|e| panic!("bad WAT in {}: {e}", path.display()))
}

pub(crate) fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).expect("sandbox")
}

/// Small limits for fast tests: 20 M fuel, 5 s, 16 MiB memory, 64 KiB output.
pub(crate) fn small_limits() -> Limits {
    Limits {
        fuel: 20_000_000,
        wall_ms: 5_000,
        memory_bytes: 16 << 20,
        table_elements: 1_000,
        output_bytes: 64 << 10,
    }
}

pub(crate) fn run_with(sb: &Sandbox, module: &[u8], req: &RunRequest<'_>) -> Result<RunOutcome, SandboxError> {
    sb.run(ModuleRef::Bytes(module), req)
}

/// Runs `module` with `input` on stdin and small limits.
pub(crate) fn run(module: &[u8], input: &[u8]) -> RunOutcome {
    let mut req = RunRequest::new(input);
    req.limits = small_limits();
    run_with(&sandbox(), module, &req).expect("run")
}

/// The outcome without the fields that are not part of the result (timing, cache).
pub(crate) fn result_of(o: &RunOutcome) -> (Option<i32>, Vec<u8>, Vec<u8>, u64, Option<helm_sandbox::Stop>, bool) {
    (
        o.exit_code,
        o.stdout.clone(),
        o.stderr.clone(),
        o.fuel_used,
        o.stopped,
        o.replayable,
    )
}
