//! The kernel over a simulated disk that loses every unsynced write at a crash: in
//! durable mode no acknowledged decision is ever lost; a full or read-only disk, or a
//! failing fsync, makes the kernel deny (`KERNEL_ERROR`), never lose what it answered.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use helm_kernel::clock::ManualClock;
use helm_kernel::store::{Durability, SimulatedFs, StoreError, StoreFs};
use helm_kernel::{Args, Kernel, Proposal, Status};
use serde_json::json;
use verify_core::Hash;

fn sim_config(fs: &Arc<SimulatedFs>) -> helm_kernel::KernelConfig {
    let mut c = config(Path::new("/sim/store"));
    c.fs = Some(fs.clone() as Arc<dyn StoreFs>);
    c.checkpoint_every = 40;
    c
}

fn stored(fs: &SimulatedFs) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    helm_kernel::store::read_records_with(Path::new("/sim/store/records"), fs, |_, r| {
        out.push(r.to_vec());
        Ok::<(), StoreError>(())
    })
    .unwrap();
    out
}

fn read(i: usize) -> Proposal {
    Proposal {
        tool: "read_file".into(),
        args: Args::Json(json!({"path": format!("/workspace/{i}")})),
        principal: "agent-7".into(),
        session: format!("s{}", i % 3),
        call_id: None,
    }
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// Runs `threads` callers until the disk fails; returns the acknowledged decisions.
fn load_until_failure(k: &Kernel, threads: usize, per_thread: usize) -> Vec<(Hash, Hash)> {
    let acked = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let acked = &acked;
            s.spawn(move || {
                for i in 0..per_thread {
                    let a = k.evaluate(&read(t * 100_000 + i));
                    match a.status {
                        Status::Allow => {
                            assert!(a.durable);
                            let pair = (h(a.intent.as_deref().unwrap()), h(a.decision.as_deref().unwrap()));
                            acked.lock().unwrap().push(pair);
                        }
                        Status::Deny => {
                            assert_eq!(a.reason, "KERNEL_ERROR", "{a:?}");
                            return;
                        }
                        Status::Pending => panic!("{a:?}"),
                    }
                }
            });
        }
    });
    acked.into_inner().unwrap()
}

#[test]
fn no_acknowledged_decision_is_lost_at_power_loss() {
    for (round, crash_after) in [3u64, 17, 40, 95, 160, 333].into_iter().enumerate() {
        let fs = Arc::new(SimulatedFs::new());
        if round % 2 == 1 {
            fs.set_torn_writes(Some(round as u64 * 7919));
        }
        let clock = ManualClock::new(T0);
        let mut acked = Vec::new();
        {
            let k = open_with(sim_config(&fs), &clock);
            acked.extend(load_until_failure(&k, 2, 20));
            assert_eq!(acked.len(), 40);
            fs.crash_after_ops(crash_after);
            acked.extend(load_until_failure(&k, 6, 200));
            assert!(!fs.crash_pending(), "round {round}: the crash did not happen");
        }
        // Reboot: the kernel reopens on what survived, and goes on.
        let k = open_with(sim_config(&fs), &clock);
        let after = load_until_failure(&k, 2, 10);
        assert_eq!(after.len(), 20, "round {round}: the kernel works after recovery");
        drop(k);
        let records = stored(&fs);
        let hashes: BTreeSet<Hash> = records.iter().map(|r| verify_core::sha256(r)).collect();
        for (intent, decision) in &acked {
            assert!(
                hashes.contains(intent) && hashes.contains(decision),
                "round {round}: acknowledged decision {} lost",
                hex::encode(decision)
            );
        }
        verify(&records);
    }
}

#[test]
fn a_full_disk_a_read_only_disk_and_a_failed_fsync_deny_and_lose_nothing() {
    let fs = Arc::new(SimulatedFs::new());
    let clock = ManualClock::new(T0);
    let k = open_with(sim_config(&fs), &clock);
    let mut acked = load_until_failure(&k, 2, 10);
    // Full disk: some calls are answered, then every call is denied.
    fs.set_space_limit(Some(20_000));
    acked.extend(load_until_failure(&k, 3, 500));
    let denied = k.evaluate(&read(1));
    assert_eq!((denied.status, denied.reason.as_str()), (Status::Deny, "KERNEL_ERROR"));
    assert!(denied.error.is_some());
    // Space is freed: the store was left consistent, the kernel goes on.
    fs.set_space_limit(None);
    acked.extend(load_until_failure(&k, 2, 10));
    // Read-only store: denied.
    fs.set_read_only(true);
    assert_eq!(k.evaluate(&read(2)).reason, "KERNEL_ERROR");
    fs.set_read_only(false);
    // A failed fsync poisons the store: denied until the kernel is reopened.
    fs.fail_next_syncs(1);
    assert_eq!(k.evaluate(&read(3)).reason, "KERNEL_ERROR");
    assert_eq!(k.evaluate(&read(4)).reason, "KERNEL_ERROR");
    assert!(k.metrics().kernel_errors >= 4);
    drop(k);
    let k = open_with(sim_config(&fs), &clock);
    acked.extend(load_until_failure(&k, 1, 5));
    drop(k);
    let records = stored(&fs);
    let hashes: BTreeSet<Hash> = records.iter().map(|r| verify_core::sha256(r)).collect();
    for (i, d) in &acked {
        assert!(hashes.contains(i) && hashes.contains(d));
    }
    verify(&records);
}

#[test]
fn buffered_mode_loses_at_most_the_unsynced_tail_and_says_so() {
    let fs = Arc::new(SimulatedFs::new());
    let clock = ManualClock::new(T0);
    let mut c = sim_config(&fs);
    c.store.durability = Durability::Buffered {
        sync_interval: core::time::Duration::from_secs(3600),
    };
    let k = open_with(c, &clock);
    let a = k.evaluate(&read(1));
    assert_eq!(a.status, Status::Allow);
    assert!(!a.durable, "buffered answers say they are not durable");
    for i in 0..30 {
        k.evaluate(&read(i));
    }
    fs.crash();
    drop(k);
    let mut c = sim_config(&fs);
    c.store.durability = Durability::Buffered {
        sync_interval: core::time::Duration::from_secs(3600),
    };
    // Nothing was synced after open: every decision is lost, the store is still valid.
    let k = open_with(c, &clock);
    drop(k);
    let records = stored(&fs);
    verify(&records);
    assert!(records.len() < 10, "{} records survived", records.len());
}
