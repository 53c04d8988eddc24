//! The example bundles in `guardian/examples/` load, sign and pass their own test cases.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use guardian::{load_signed, sign_bundle, Bundle, Limits};

fn run(file: &str, at_least: usize) {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let bundle = Bundle::from_toml(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let results = bundle.run_tests(Limits::default());
    assert!(results.len() >= at_least, "{path}: only {} test cases", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: expected {}, got {}", r.name, r.expected, r.got))
        .collect();
    assert!(failed.is_empty(), "{path}:\n{}", failed.join("\n"));
    // The signed form carries the same tests and passes them too.
    let author = verify_core::Signer::from_seed(&[1; 32]);
    let (loaded, _) = load_signed(&sign_bundle(&bundle, &author), &[author.public_key()]).unwrap();
    assert_eq!(loaded.hash(), bundle.hash());
    assert!(loaded.run_tests(Limits::default()).iter().all(|r| r.passed));
}

#[test]
fn coding_agent() {
    run("coding-agent.toml", 12);
}

#[test]
fn support_agent() {
    run("support-agent.toml", 12);
}
