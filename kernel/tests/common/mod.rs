//! Shared fixtures: PUBLIC TEST KEYS (never use them for anything real), a trust
//! chain, a bundle with an allow, a deny and an escalate rule, and a verifier run over
//! a store.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;

use helm_kernel::clock::ManualClock;
use helm_kernel::signer::KeyFileSigner;
use helm_kernel::{Kernel, KernelConfig};
use verify_core::{body, sha256, Kind, OwnedTables, RecordBuilder, Signer, TrustAction, Verifier};

pub const T0: u64 = 1_800_000_000_000;

/// A public test key: the seed is derived from a public string.
pub fn test_seed(name: &str) -> [u8; 32] {
    sha256(format!("HELM KERNEL TEST KEY - PUBLIC, NEVER USE FOR REAL - {name}").as_bytes())
}

pub fn signer(name: &str) -> Signer {
    Signer::from_seed(&test_seed(name))
}

/// root-1 publishes kernel-1 (kernel) and approver-1, approver-2 (approver).
pub fn chain() -> Vec<u8> {
    let root = signer("root-1");
    let mut out = Vec::new();
    let mut parent = None;
    for (i, (name, role)) in [
        ("kernel-1", "kernel"),
        ("approver-1", "approver"),
        ("approver-2", "approver"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = RecordBuilder::new(
            Kind::TrustEvent,
            body::trust_event(
                TrustAction::Publish,
                &signer(name).public_key(),
                Some(&[role]),
                None,
                None,
            ),
        );
        b.parents = parent.into_iter().collect();
        b.lamport = i as u64 + 1;
        b.time = T0 - 1000;
        b.principal = "root-1".into();
        b.seq = i as u64;
        let r = b.sign(&root);
        parent = Some(sha256(&r));
        out.extend_from_slice(&r);
    }
    out
}

pub const BUNDLE: &str = r#"
name = "kernel-test"
other_tools = "deny"

[[rule]]
id = "read"
tools = ["read_file"]
verdict = "allow"
require = ["args.path matches '/workspace/*'"]

[[rule]]
id = "no-rm"
tools = ["shell"]
verdict = "deny"
reason = "TOOL_NOT_ALLOWED"
require = ["args.cmd == 'rm'"]

[[rule]]
id = "deploy-needs-two"
tools = ["deploy"]
verdict = "escalate"
require = ["true"]
escalation = { role = "approver", quorum = 2, timelock_ms = 1000, ttl_ms = 60000 }
"#;

pub fn config(dir: &Path) -> KernelConfig {
    let bundle = guardian::Bundle::from_toml(BUNDLE).unwrap();
    let mut c = KernelConfig::new(
        dir.to_path_buf(),
        vec![signer("root-1").public_key()],
        chain(),
        vec![bundle],
    );
    c.checkpoint_every = 50;
    c
}

pub fn open(dir: &Path, clock: &ManualClock) -> Kernel {
    open_with(config(dir), clock)
}

pub fn open_with(c: KernelConfig, clock: &ManualClock) -> Kernel {
    let s = KeyFileSigner::from_seed(&test_seed("kernel-1"), "test key kernel-1");
    Kernel::open(c, Arc::new(s), Arc::new(clock.clone())).unwrap().0
}

/// All records of a store.
pub fn records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    helm_kernel::store::read_records(&dir.join("records"), |_, r| {
        out.push(r.to_vec());
        Ok::<(), helm_kernel::store::StoreError>(())
    })
    .unwrap();
    out
}

/// Verifies a store's records as one stream against root-1; panics naming the record.
pub fn verify(records: &[Vec<u8>]) -> verify_core::Verified {
    let mut tables = OwnedTables::new(verify_core::Capacity::for_records(records.len()));
    let mut v = Verifier::new(&[signer("root-1").public_key()], tables.tables()).unwrap();
    for (i, r) in records.iter().enumerate() {
        if let Err(e) = v.push(r) {
            panic!("record {i} fails: {e:?}");
        }
    }
    v.finish().unwrap()
}
