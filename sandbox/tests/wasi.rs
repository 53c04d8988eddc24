//! The WASI subset: what a guest sees, and every denial.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

mod common;

use common::{run, run_with, sandbox, small_limits, tool, wat_file};
use helm_sandbox::{RunRequest, Stop, VirtualFile};
use verify_core::EffectStatus;

fn errnos(stdout: &[u8]) -> Vec<u32> {
    stdout
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn json_transform_succeeds() {
    let o = run(
        &tool("json-transform"),
        br#"{"b": [1, 2.5, "x"], "a": {"name": "helm"}, "n": null}"#,
    );
    assert_eq!(o.stopped, None, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.status(), EffectStatus::Succeeded);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "{\"a\":{\"name\":\"HELM\"},\"b\":[2,5.0,\"X\"],\"n\":null}\n"
    );
    assert!(o.stderr.is_empty());
}

#[test]
fn json_transform_reports_bad_input_with_its_exit_status() {
    let o = run(&tool("json-transform"), b"{not json");
    assert_eq!(o.stopped, None);
    assert_eq!(o.exit_code, Some(2), "proc_exit's status is the exit status");
    assert_eq!(o.status(), EffectStatus::Failed);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid JSON"));
}

#[test]
fn stdin_is_the_input_and_stdout_is_captured() {
    let input: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let o = run(&wat_file("echo.wat"), &input);
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.stdout, input);
}

fn sneaky(seed: [u8; 32], time_ms: u64) -> (String, helm_sandbox::RunOutcome) {
    let args = vec!["sneaky".to_string(), "--flag".to_string()];
    let env = vec![("TOOL_MODE".to_string(), "test".to_string())];
    let files = vec![
        VirtualFile::new("data.txt", &b"hello file"[..]),
        VirtualFile::new("nested/deep.txt", &b"deep"[..]),
    ];
    let mut req = RunRequest::new(b"");
    req.args = &args;
    req.env = &env;
    req.files = &files;
    req.seed = seed;
    req.virtual_time_ms = time_ms;
    req.limits = small_limits();
    let o = run_with(&sandbox(), &tool("sneaky"), &req).unwrap();
    (String::from_utf8(o.stdout.clone()).unwrap(), o)
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
}

#[test]
fn sneaky_tool_is_denied_or_virtualised_everywhere() {
    let (out, o) = sneaky([1; 32], 1_767_225_600_000);
    assert_eq!(o.exit_code, Some(0), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "sneaky: done\n");
    // Arguments and environment: exactly what the request gave.
    assert_eq!(line(&out, "args "), r#"args ["sneaky", "--flag"]"#);
    assert_eq!(line(&out, "env "), r#"env [("TOOL_MODE", "test")]"#);
    // The virtual files, and nothing else.
    assert_eq!(
        line(&out, "std read data.txt:"),
        r#"std read data.txt: ok "hello file""#
    );
    assert_eq!(
        line(&out, "std read /data.txt:"),
        r#"std read /data.txt: ok "hello file""#
    );
    assert_eq!(
        line(&out, "std read nested/deep.txt:"),
        r#"std read nested/deep.txt: ok "deep""#
    );
    assert!(
        line(&out, "std read /etc/passwd:").contains("os error 44"),
        "ENOENT: {out}"
    );
    assert!(!line(&out, "std read ../secret:").contains(": ok"), "{out}");
    assert!(line(&out, "std write out.txt:").contains("os error 69"), "EROFS: {out}");
    assert_eq!(
        line(&out, "raw open ../etc/passwd:"),
        "raw open ../etc/passwd: errno 63",
        "EPERM"
    );
    assert_eq!(
        line(&out, "raw open /etc/passwd:"),
        "raw open /etc/passwd: errno 63",
        "EPERM"
    );
    assert_eq!(
        line(&out, "raw open data.txt for write:"),
        "raw open data.txt for write: errno 69"
    );
    assert_eq!(
        line(&out, "raw open new.txt with O_CREAT:"),
        "raw open new.txt with O_CREAT: errno 69"
    );
    // Sockets: ENOSYS; std's connect never reaches the host.
    for call in ["sock_accept", "sock_recv", "sock_send", "sock_shutdown"] {
        assert_eq!(line(&out, &format!("{call}:")), format!("{call}: errno 52"));
    }
    assert!(line(&out, "std connect:").contains("not supported"), "{out}");
    // No sleeping, no signals, no hidden descriptors.
    assert_eq!(line(&out, "poll_oneoff:"), "poll_oneoff: errno 52");
    assert_eq!(line(&out, "proc_raise:"), "proc_raise: errno 52");
    assert_eq!(line(&out, "fd_write fd 7:"), "fd_write fd 7: errno 8");
    // Clocks: the virtual time, frozen.
    assert_eq!(line(&out, "monotonic elapsed"), "monotonic elapsed 0ns");
    assert_eq!(line(&out, "realtime"), "realtime 1767225600000 ms");
    // Randomness: the seeded stream (block 0 of the DRBG), continuing across calls.
    let mut expect = [0u8; 32];
    helm_sandbox::Drbg::new([1; 32]).fill(&mut expect);
    assert_eq!(
        line(&out, "random_get:"),
        format!("random_get: errno 0 bytes {}", hex::encode(&expect[..16]))
    );
    assert_eq!(
        line(&out, "random_get again:"),
        format!("random_get again: errno 0 bytes {}", hex::encode(&expect[16..]))
    );
}

#[test]
fn random_depends_on_the_seed_and_time_on_the_virtual_time() {
    let (a, _) = sneaky([1; 32], 5_000);
    let (b, _) = sneaky([2; 32], 5_000);
    let (c, _) = sneaky([1; 32], 9_000);
    assert_ne!(line(&a, "random_get:"), line(&b, "random_get:"));
    assert_eq!(line(&a, "random_get:"), line(&c, "random_get:"));
    assert_eq!(line(&a, "realtime"), "realtime 5000 ms");
    assert_eq!(line(&c, "realtime"), "realtime 9000 ms");
}

#[test]
fn functions_outside_the_subset_return_enosys() {
    let o = run(&wat_file("enosys.wat"), b"");
    assert_eq!(o.exit_code, Some(0));
    // sock_accept, sock_shutdown, poll_oneoff, proc_raise, fd_readdir, path_unlink_file,
    // and a name that is not in preview1 at all.
    assert_eq!(errnos(&o.stdout), vec![52; 7]);
}

#[test]
fn pointers_outside_memory_are_efault_not_traps() {
    let o = run(&wat_file("bad-pointers.wat"), b"");
    assert_eq!(o.stopped, None);
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(errnos(&o.stdout), vec![21, 21, 21, 21, 21, 8]);
}

#[test]
fn nan_results_are_canonical() {
    let o = run(&wat_file("nan-bits.wat"), b"");
    assert_eq!(o.exit_code, Some(0));
    let b = &o.stdout;
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0x7fc0_0000, "f32 0/0");
    assert_eq!(
        u64::from_le_bytes(b[4..12].try_into().unwrap()),
        0x7ff8_0000_0000_0000,
        "f64 sqrt(-1)"
    );
    assert_eq!(
        u32::from_le_bytes(b[12..16].try_into().unwrap()),
        0x7fc0_0000,
        "f32 NaN payload + 1"
    );
    assert_eq!(
        u32::from_le_bytes(b[16..20].try_into().unwrap()),
        0x7fc0_0000,
        "f64 NaN demoted"
    );
    assert_eq!(
        u64::from_le_bytes(b[20..28].try_into().unwrap()),
        0x7ff8_0000_0000_0000,
        "f32 NaN promoted"
    );
}

#[test]
fn output_limit_stops_a_sneaky_flood_in_stderr_too() {
    let mut req = RunRequest::new(b"");
    req.limits = small_limits();
    req.limits.output_bytes = 5_000;
    let o = run_with(&sandbox(), &wat_file("output-flood.wat"), &req).unwrap();
    assert_eq!(o.stopped, Some(Stop::OutputLimit));
}
