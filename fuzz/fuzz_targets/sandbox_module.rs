//! helm-sandbox: arbitrary module bytes through validation, compilation, instantiation and
//! execution under small limits.
//!
//! Input: byte 0 chooses the mode.
//! - `0x00..=0x7f`: one of the seed modules (`helm_fuzz::sandbox_seed_modules`, byte 0
//!   modulo their count) mutated by the remaining bytes as 4-byte ops
//!   (`helm_fuzz::apply_ops`).
//! - `0x80..=0xff`: the remaining bytes as the module.
//!
//! Always: no panic and no hang (fuel 200,000, 1 s, 1 MiB of memory, 4 KiB of output); a
//! refusal is `MODULE_INVALID`, `IMPORT_DENIED` or `MODULE_TOO_LARGE`, never an engine
//! error; fuel and output stay within their limits; a second run (from the cache) gives
//! the same outcome unless the first was stopped by the clock; the evidence of the run
//! round-trips through the extension-map encoding. The raw bytes also go through the
//! evidence and output decoders.
#![no_main]

use std::sync::OnceLock;

use helm_sandbox::{
    decode_evidence, decode_ext, decode_output, encode_ext, Limits, ModuleRef, RunRequest, Sandbox, SandboxConfig,
    SandboxEvidence, Stop,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    fuel: 200_000,
    wall_ms: 1_000,
    memory_bytes: 1 << 20,
    table_elements: 1_000,
    output_bytes: 4_096,
};

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            max_module_bytes: 256 << 10,
            cache_entries: 16,
            ..SandboxConfig::default()
        })
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_ext(data);
    let _ = decode_evidence(data);
    let _ = decode_output(data);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let module = if mode < 0x80 {
        let seeds = helm_fuzz::sandbox_seed_modules();
        let mut m = seeds[usize::from(mode) % seeds.len()].clone();
        helm_fuzz::apply_ops(&mut m, rest);
        m
    } else {
        rest.to_vec()
    };
    let mut req = RunRequest::new(b"{\"fuzz\": true}");
    req.seed = [0x5a; 32];
    req.virtual_time_ms = 1_767_225_600_000;
    req.limits = LIMITS;
    let first = sandbox().run(ModuleRef::Bytes(&module), &req);
    let second = sandbox().run(ModuleRef::Bytes(&module), &req);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert!(a.fuel_used <= LIMITS.fuel, "fuel used {} over the limit", a.fuel_used);
            assert!((a.stdout.len() + a.stderr.len()) as u64 <= LIMITS.output_bytes);
            assert_eq!(a.replayable, a.stopped != Some(Stop::Time));
            assert_eq!(a.exit_code.is_some(), a.stopped.is_none());
            if a.stopped != Some(Stop::Time) && b.stopped != Some(Stop::Time) {
                assert_eq!(
                    (a.exit_code, &a.stdout, &a.stderr, a.fuel_used, a.stopped),
                    (b.exit_code, &b.stdout, &b.stderr, b.fuel_used, b.stopped),
                    "two runs of the same module and request differ"
                );
            }
            let ev = SandboxEvidence::of_run(&req, &a, &[]);
            assert_eq!(decode_ext(&encode_ext(&ev)).as_ref(), Ok(&ev));
            let out = a.output();
            let (code, stdout, stderr) = decode_output(&out).unwrap();
            assert_eq!((code, stdout, stderr), (a.exit_code, &a.stdout[..], &a.stderr[..]));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "a module refused two ways");
            assert!(
                matches!(a.code(), "MODULE_INVALID" | "IMPORT_DENIED" | "MODULE_TOO_LARGE"),
                "unexpected refusal {a}"
            );
        }
        (a, b) => panic!("the same module was refused once and ran once: {a:?} / {b:?}"),
    }
});
