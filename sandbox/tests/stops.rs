//! Every way a run stops, and every way a module is refused. Each test is named after the
//! attack or edge case it pins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use core::time::Duration;

use common::{run, run_with, sandbox, small_limits, tool, wat_file};
use helm_sandbox::{Limits, ModuleRef, RunRequest, Sandbox, SandboxConfig, SandboxError, Stop, TrapKind};
use verify_core::EffectStatus;

fn req(limits: Limits) -> RunRequest<'static> {
    let mut r = RunRequest::new(b"");
    r.limits = limits;
    r
}

#[test]
fn infinite_loop_tool_is_stopped_by_gas() {
    let mut l = small_limits();
    l.fuel = 2_000_000;
    let o = run_with(&sandbox(), &tool("infinite-loop"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Gas));
    assert_eq!(o.stopped.unwrap().code(), "GAS_EXHAUSTED");
    assert!(o.replayable, "a gas stop is deterministic");
    assert_eq!(o.exit_code, None);
    assert_eq!(o.status(), EffectStatus::Aborted);
    assert!(
        o.fuel_used <= l.fuel && o.fuel_used > l.fuel - 100,
        "fuel used {}",
        o.fuel_used
    );
}

#[test]
fn infinite_loop_tool_is_stopped_by_the_wall_clock() {
    let mut l = small_limits();
    l.fuel = u64::MAX;
    l.wall_ms = 150;
    let o = run_with(&sandbox(), &tool("infinite-loop"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Time));
    assert_eq!(o.stopped.unwrap().code(), "TIME_EXHAUSTED");
    assert!(!o.replayable, "a time stop is not replayable");
    assert_eq!(o.status(), EffectStatus::Aborted);
    assert!(o.elapsed >= Duration::from_millis(150));
    assert!(o.elapsed < Duration::from_secs(3), "deadline overshot: {:?}", o.elapsed);
    assert!(o.fuel_used > 0);
}

#[test]
fn busy_loop_without_host_calls_is_stopped_by_the_wall_clock() {
    let mut l = small_limits();
    l.fuel = u64::MAX;
    l.wall_ms = 100;
    let o = run_with(&sandbox(), &wat_file("busy-loop.wat"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Time));
    assert!(o.elapsed < Duration::from_secs(3), "deadline overshot: {:?}", o.elapsed);
}

#[test]
fn busy_loop_is_stopped_by_gas_with_exactly_the_budget_spent_or_less() {
    let mut l = small_limits();
    l.fuel = 1_234_567;
    let o = run_with(&sandbox(), &wat_file("busy-loop.wat"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Gas));
    assert!(o.fuel_used <= 1_234_567);
}

#[test]
fn zero_fuel_stops_before_the_first_instruction() {
    let mut l = small_limits();
    l.fuel = 0;
    let o = run_with(&sandbox(), &wat_file("busy-loop.wat"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Gas));
    assert_eq!(o.fuel_used, 0);
}

#[test]
fn memory_hog_tool_is_stopped_by_the_memory_cap() {
    let mut l = small_limits();
    l.fuel = 1_000_000_000;
    l.memory_bytes = 8 << 20;
    let o = run_with(&sandbox(), &tool("memory-hog"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Memory), "{o:?}");
    assert_eq!(o.stopped.unwrap().code(), "MEMORY_EXHAUSTED");
    assert!(o.replayable);
    assert_eq!(o.status(), EffectStatus::Aborted);
}

#[test]
fn one_huge_memory_grow_is_memory_exhausted() {
    let o = run(&wat_file("memory-grow-huge.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Memory));
}

#[test]
fn memory_grow_loop_ignoring_failures_is_stopped_at_the_cap() {
    let o = run(&wat_file("memory-grow-loop.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Memory));
}

#[test]
fn memory_grow_past_the_modules_own_maximum_returns_minus_one() {
    let o = run(&wat_file("memory-grow-past-own-max.wat"), b"");
    assert_eq!(o.stopped, None);
    assert_eq!(o.exit_code, Some(7), "the guest must have seen -1");
    assert_eq!(o.status(), EffectStatus::Failed);
}

#[test]
fn initial_memory_over_the_cap_is_stopped_at_instantiation() {
    let o = run(&wat_file("initial-memory-over-cap.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Memory));
}

#[test]
fn table_growth_over_the_cap_is_memory_exhausted() {
    let o = run(&wat_file("table-grow.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Memory));
}

#[test]
fn stdout_flood_tool_is_cut_at_the_output_cap() {
    let mut l = small_limits();
    l.output_bytes = 100_000;
    let o = run_with(&sandbox(), &tool("stdout-flood"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::OutputLimit));
    assert_eq!(o.stopped.unwrap().code(), "OUTPUT_LIMIT");
    assert_eq!(o.stdout.len(), 100_000, "the output up to the cap is kept");
    assert!(o.stdout.iter().all(|&b| b == b'y' || b == b'\n'));
    assert!(o.replayable);
    assert_eq!(o.status(), EffectStatus::Aborted);
}

#[test]
fn stdout_and_stderr_share_one_output_cap() {
    let mut l = small_limits();
    l.output_bytes = 10_000;
    let o = run_with(&sandbox(), &wat_file("output-flood.wat"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::OutputLimit));
    assert_eq!(o.stdout.len() + o.stderr.len(), 10_000);
    assert_eq!((o.stdout.len(), o.stderr.len()), (4096 + 1808, 4096));
}

#[test]
fn host_calls_cost_fuel_by_the_byte() {
    let mut l = small_limits();
    l.fuel = 1_000_000;
    let o = run_with(&sandbox(), &wat_file("random-flood.wat"), &req(l)).unwrap();
    assert_eq!(o.stopped, Some(Stop::Gas));
    assert_eq!(
        o.fuel_used, 1_000_000,
        "a host call that cannot be paid for spends the rest"
    );
}

#[test]
fn unreachable_is_a_trap() {
    let o = run(&wat_file("unreachable.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Trap(TrapKind::Unreachable)));
    assert_eq!(o.stopped.unwrap().code(), "TRAP");
    assert_eq!(o.status(), EffectStatus::Failed);
    assert!(o.replayable);
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let o = run(&wat_file("deep-recursion.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Trap(TrapKind::StackOverflow)));
}

#[test]
fn division_by_zero_is_a_trap() {
    let o = run(&wat_file("divide-by-zero.wat"), b"");
    assert_eq!(o.stopped, Some(Stop::Trap(TrapKind::IntegerDivisionByZero)));
}

fn refused(module: &[u8]) -> SandboxError {
    match run_with(&sandbox(), module, &req(small_limits())) {
        Err(e) => e,
        Ok(o) => panic!("module ran: {o:?}"),
    }
}

#[test]
fn garbage_bytes_are_module_invalid() {
    for bytes in [
        &b""[..],
        b"\0asm",
        b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f",
        b"not wasm at all",
    ] {
        let e = refused(bytes);
        assert_eq!(e.code(), "MODULE_INVALID", "{e}");
        assert!(e.is_module_refusal());
    }
}

#[test]
fn start_function_is_refused_not_run() {
    let e = refused(&wat_file("start-function-loop.wat"));
    assert_eq!(e.code(), "MODULE_INVALID", "{e}");
}

#[test]
fn module_without_start_export_is_invalid() {
    let e = refused(&wat_file("no-start-export.wat"));
    assert_eq!(e.code(), "MODULE_INVALID", "{e}");
}

#[test]
fn imports_outside_wasi_are_denied() {
    for (file, name) in [
        ("import-env.wat", "launch_missiles"),
        ("import-memory.wat", "memory"),
        ("import-wrong-signature.wat", "fd_write"),
        ("import-no-errno.wat", "sock_accept"),
    ] {
        match refused(&wat_file(file)) {
            SandboxError::ImportDenied { name: n, .. } => assert_eq!(n, name, "{file}"),
            other => panic!("{file}: {other}"),
        }
    }
}

#[test]
fn oversized_module_is_refused_before_parsing() {
    let sb = Sandbox::new(SandboxConfig {
        max_module_bytes: 1_000,
        ..SandboxConfig::default()
    })
    .unwrap();
    let e = run_with(&sb, &tool("json-transform"), &req(small_limits())).unwrap_err();
    assert_eq!(e.code(), "MODULE_TOO_LARGE");
    assert!(
        !e.is_module_refusal(),
        "depends on the configuration, not on the module"
    );
}

#[test]
fn unknown_hash_is_not_cached() {
    let e = sandbox()
        .run(ModuleRef::Hash(&[9; 32]), &req(small_limits()))
        .unwrap_err();
    assert_eq!(e.code(), "MODULE_NOT_CACHED");
}

#[test]
fn bad_requests_are_refused() {
    let sb = sandbox();
    let m = wat_file("echo.wat");
    let args = vec!["a\0b".to_string()];
    let mut r = req(small_limits());
    r.args = &args;
    assert_eq!(run_with(&sb, &m, &r).unwrap_err().code(), "REQUEST_INVALID");
    let env = vec![("A=B".to_string(), "c".to_string())];
    let mut r = req(small_limits());
    r.env = &env;
    assert_eq!(run_with(&sb, &m, &r).unwrap_err().code(), "REQUEST_INVALID");
    for files in [
        vec![helm_sandbox::VirtualFile::new("../x", &b""[..])],
        vec![helm_sandbox::VirtualFile::new("/abs", &b""[..])],
        vec![helm_sandbox::VirtualFile::new("a//b", &b""[..])],
        vec![
            helm_sandbox::VirtualFile::new("a", &b""[..]),
            helm_sandbox::VirtualFile::new("a", &b""[..]),
        ],
        vec![
            helm_sandbox::VirtualFile::new("a", &b""[..]),
            helm_sandbox::VirtualFile::new("a/b", &b""[..]),
        ],
    ] {
        let mut r = req(small_limits());
        r.files = &files;
        assert_eq!(
            run_with(&sb, &m, &r).unwrap_err().code(),
            "REQUEST_INVALID",
            "{files:?}"
        );
    }
}

/// Regression: wasmi's tail-call dispatch backend grew the host stack per guest instruction
/// when LLVM did not lower a handler's tail call (dev profile, dependencies at opt-level 3
/// with debug assertions), and `loop br 0` crashed the host. The loop backend uses constant
/// stack: a long busy loop runs on a 256 KiB thread.
#[test]
fn busy_loop_does_not_grow_the_host_stack() {
    let module = wat_file("busy-loop.wat");
    let o = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let mut l = small_limits();
            l.fuel = 30_000_000;
            run_with(&sandbox(), &module, &req(l)).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(o.stopped, Some(Stop::Gas));
}

/// Regression (found by the sandbox_module fuzz target): wasmi 2.0.0 with strict enforced
/// limits divides a code section's size by its function count; a section declaring 0
/// functions in 1,000 bytes or more panicked the host. The sandbox screens it out.
#[test]
fn empty_code_section_of_1000_bytes_is_refused_not_a_panic() {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.push(10); // code section
    m.extend_from_slice(&[0xe9, 0x07]); // 1,001 bytes
    m.push(0); // 0 functions
    m.extend_from_slice(&[0u8; 1000]);
    let e = refused(&m);
    assert_eq!(e.code(), "MODULE_INVALID", "{e}");
    // And the fuzzer's original input: a mutated memory-grow-loop.wat.
    let mut fuzzed = wat_file("memory-grow-loop.wat");
    let ops = [
        0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x6d, 0x64, 0x81, 0x0d,
    ];
    apply_ops(&mut fuzzed, &ops);
    let e = refused(&fuzzed);
    assert_eq!(e.code(), "MODULE_INVALID");
    assert!(
        !e.to_string().contains("panicked"),
        "refused by the screen, not caught: {e}"
    );
}

/// Regression (found by the sandbox_module fuzz target): a function body with operators
/// after its final `end` reached a debug assertion in wasmi 2.0.0's translator (a panic in
/// builds with debug assertions, such as this workspace's test profile) before wasmi's
/// interleaved validation refused it. The sandbox validates the whole module first.
#[test]
fn operators_after_the_final_end_are_refused_not_a_panic() {
    let mut fuzzed = wat_file("memory-grow-loop.wat");
    apply_ops(&mut fuzzed, &[0x18, 0x01, 0x60, 0x01, 0x7e, 0x12, 0x99, 0x0b]);
    let e = refused(&fuzzed);
    assert_eq!(e.code(), "MODULE_INVALID");
    assert!(
        !e.to_string().contains("panicked"),
        "refused by validation, not caught: {e}"
    );
}

/// fuzz/src/lib.rs `apply_ops`: 4-byte ops [op, pos_hi, pos_lo, value].
fn apply_ops(buf: &mut Vec<u8>, ops: &[u8]) {
    for op in ops.chunks_exact(4) {
        let (kind, pos, val) = (op[0] % 4, usize::from(u16::from_be_bytes([op[1], op[2]])), op[3]);
        match kind {
            0 | 1 if !buf.is_empty() => {
                let i = pos % buf.len();
                buf[i] ^= val;
            }
            2 => {
                let i = pos % (buf.len() + 1);
                buf.insert(i, val);
            }
            3 if !buf.is_empty() => {
                let i = pos % buf.len();
                buf.remove(i);
            }
            _ => {}
        }
    }
}
