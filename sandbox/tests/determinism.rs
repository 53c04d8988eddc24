//! Determinism: the same module, input, seed, time and limits give the same output bytes
//! and fuel; whatever the cache state, the fuel slice size, the thread or the sandbox.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use common::{result_of, run_with, sandbox, small_limits, tool, wat_file};
use helm_sandbox::{ModuleRef, RunOutcome, RunRequest, Sandbox, SandboxConfig, Stop, VirtualFile};

struct Case {
    name: &'static str,
    module: Vec<u8>,
    input: Vec<u8>,
    fuel: u64,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "json-transform",
            module: tool("json-transform"),
            input: br#"{"k": [1, 2, {"s": "abc"}], "f": 0.5}"#.to_vec(),
            fuel: 20_000_000,
        },
        Case {
            name: "sneaky",
            module: tool("sneaky"),
            input: Vec::new(),
            fuel: 20_000_000,
        },
        Case {
            name: "compute",
            module: wat_file("compute.wat"),
            input: 20_000u32.to_le_bytes().to_vec(),
            fuel: 20_000_000,
        },
        Case {
            name: "infinite-loop (gas stop)",
            module: tool("infinite-loop"),
            input: Vec::new(),
            fuel: 777_777,
        },
        Case {
            name: "random-flood (gas stop in a host call)",
            module: wat_file("random-flood.wat"),
            input: Vec::new(),
            fuel: 100_003,
        },
        Case {
            name: "stdout-flood (output stop)",
            module: tool("stdout-flood"),
            input: Vec::new(),
            fuel: 20_000_000,
        },
        Case {
            name: "memory-hog (memory stop)",
            module: tool("memory-hog"),
            input: Vec::new(),
            fuel: 200_000_000,
        },
    ]
}

fn run_case(sb: &Sandbox, c: &Case, seed: [u8; 32]) -> RunOutcome {
    let files = vec![VirtualFile::new("data.txt", &b"contents"[..])];
    let args = vec!["tool".to_string()];
    let mut req = RunRequest::new(&c.input);
    req.args = &args;
    req.files = &files;
    req.seed = seed;
    req.virtual_time_ms = 1_700_000_000_000;
    req.limits = small_limits();
    req.limits.fuel = c.fuel;
    req.limits.wall_ms = 60_000;
    req.limits.memory_bytes = 4 << 20;
    run_with(sb, &c.module, &req).unwrap_or_else(|e| panic!("{}: {e}", c.name))
}

#[test]
fn same_inputs_same_outcome_twice_and_in_a_fresh_sandbox() {
    let sb = sandbox();
    for c in cases() {
        let a = run_case(&sb, &c, [3; 32]);
        let b = run_case(&sb, &c, [3; 32]);
        let fresh = run_case(&sandbox(), &c, [3; 32]);
        assert!(!a.cached && b.cached && !fresh.cached, "{}", c.name);
        assert_eq!(result_of(&a), result_of(&b), "{}: cold vs cached", c.name);
        assert_eq!(result_of(&a), result_of(&fresh), "{}: two sandboxes", c.name);
        assert_eq!(a.output(), b.output(), "{}", c.name);
        assert!(a.replayable, "{}", c.name);
    }
}

#[test]
fn another_seed_changes_only_what_reads_randomness() {
    let sb = sandbox();
    for c in cases() {
        let a = run_case(&sb, &c, [3; 32]);
        let b = run_case(&sb, &c, [4; 32]);
        if c.name == "sneaky" {
            assert_ne!(a.stdout, b.stdout, "sneaky prints random bytes");
        } else {
            assert_eq!(result_of(&a), result_of(&b), "{}", c.name);
        }
    }
}

#[test]
fn fuel_slice_size_never_changes_the_result() {
    let reference: Vec<_> = cases()
        .iter()
        .map(|c| result_of(&run_case(&sandbox(), c, [5; 32])))
        .collect();
    for slice in [1u64, 4_096, u64::MAX] {
        let sb = Sandbox::new(SandboxConfig {
            fuel_slice: slice,
            ..SandboxConfig::default()
        })
        .unwrap();
        for (c, want) in cases().iter().zip(&reference) {
            if slice == 1 && !matches!(c.name, "compute" | "random-flood (gas stop in a host call)") {
                continue; // one resume per instruction block: too slow for the bigger runs
            }
            assert_eq!(
                &result_of(&run_case(&sb, c, [5; 32])),
                want,
                "{} with slice {slice}",
                c.name
            );
        }
    }
}

#[test]
fn stops_are_the_expected_ones() {
    let sb = sandbox();
    let stops: Vec<_> = cases()
        .iter()
        .map(|c| (c.name, run_case(&sb, c, [0; 32]).stopped))
        .collect();
    assert_eq!(
        stops,
        vec![
            ("json-transform", None),
            ("sneaky", None),
            ("compute", None),
            ("infinite-loop (gas stop)", Some(Stop::Gas)),
            ("random-flood (gas stop in a host call)", Some(Stop::Gas)),
            ("stdout-flood (output stop)", Some(Stop::OutputLimit)),
            ("memory-hog (memory stop)", Some(Stop::Memory)),
        ]
    );
}

#[test]
fn cached_run_by_hash_matches_a_run_by_bytes() {
    let sb = sandbox();
    let module = tool("json-transform");
    let hash = sb.compile(&module).unwrap();
    assert!(sb.is_cached(&hash));
    let mut req = RunRequest::new(b"[1]");
    req.limits = small_limits();
    let by_hash = sb.run(ModuleRef::Hash(&hash), &req).unwrap();
    sb.clear_cache();
    let by_bytes = sb.run(ModuleRef::Bytes(&module), &req).unwrap();
    assert!(by_hash.cached && !by_bytes.cached);
    assert_eq!(result_of(&by_hash), result_of(&by_bytes));
    assert_eq!(by_hash.module, hash);
}

#[test]
fn cache_evicts_the_least_recently_used_module() {
    let sb = Sandbox::new(SandboxConfig {
        cache_entries: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let a = sb.compile(&wat_file("echo.wat")).unwrap();
    let b = sb.compile(&wat_file("unreachable.wat")).unwrap();
    sb.compile(&wat_file("echo.wat")).unwrap(); // a is now the most recent
    let c = sb.compile(&wat_file("busy-loop.wat")).unwrap();
    assert!(sb.is_cached(&a) && sb.is_cached(&c) && !sb.is_cached(&b));
}

#[test]
fn concurrent_runs_agree() {
    let sb = std::sync::Arc::new(sandbox());
    let c = &cases()[0];
    let want = result_of(&run_case(&sb, c, [9; 32]));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let sb = sb.clone();
            let module = c.module.clone();
            let input = c.input.clone();
            std::thread::spawn(move || {
                let case = Case {
                    name: "json-transform",
                    module,
                    input,
                    fuel: 20_000_000,
                };
                result_of(&run_case(&sb, &case, [9; 32]))
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}
