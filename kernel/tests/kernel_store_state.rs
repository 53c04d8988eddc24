//! The kernel's view of its stores: `records_range` pages (read from the segment holding
//! their first record) match a full read of the store, and `store_state` shows a store
//! poisoned by a failed fsync until the kernel is reopened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use helm_kernel::clock::ManualClock;
use helm_kernel::store::{Durability, SimulatedFs, StoreFs};
use helm_kernel::{Args, Proposal, Status};
use serde_json::json;

fn read(i: usize) -> Proposal {
    Proposal {
        tool: "read_file".into(),
        args: Args::Json(json!({"path": format!("/workspace/{i}")})),
        principal: "agent-7".into(),
        session: format!("s{}", i % 3),
        call_id: None,
    }
}

#[test]
fn records_range_pages_match_the_whole_store() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(tmp.path());
    // A few records per segment.
    c.store.segment_bytes = 2000;
    let k = open_with(c, &clock);
    for i in 0..60 {
        assert_eq!(k.evaluate(&read(i)).status, Status::Allow);
    }
    let n = k.metrics().records;
    assert!(k.store_state().record_stats.segments > 20, "{:?}", k.store_state());
    let full = k.records_range(0, u64::MAX).unwrap();
    assert_eq!(full.len() as u64, n);
    assert_eq!(full, records(tmp.path()));
    for from in [0, 1, 7, n / 2, n - 1, n, n + 1, u64::MAX] {
        for limit in [0, 1, 3, 100, u64::MAX] {
            let start = from.min(n) as usize;
            let end = from.saturating_add(limit).min(n) as usize;
            assert_eq!(
                k.records_range(from, limit).unwrap(),
                full[start..end],
                "from {from} limit {limit}"
            );
        }
    }
    // Pages of 7 put together give the store.
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let page = k.records_range(from, 7).unwrap();
        if page.is_empty() {
            break;
        }
        from += page.len() as u64;
        paged.extend(page);
    }
    assert_eq!(paged, full);
}

#[test]
fn a_poisoned_store_shows_in_store_state_until_reopened() {
    let fs = Arc::new(SimulatedFs::new());
    let clock = ManualClock::new(T0);
    let sim_config = || {
        let mut c = config(Path::new("/sim/store"));
        c.fs = Some(fs.clone() as Arc<dyn StoreFs>);
        c
    };
    let k = open_with(sim_config(), &clock);
    assert_eq!(k.evaluate(&read(0)).status, Status::Allow);
    let s = k.store_state();
    assert!(!s.is_poisoned(), "{s:?}");
    assert_eq!(
        (s.records_poisoned.as_deref(), s.blobs_poisoned.as_deref()),
        (None, None)
    );
    assert_eq!(s.durability, Durability::Durable);
    assert_eq!(s.records, k.metrics().records);
    assert_eq!(s.record_stats.appended, s.records);
    assert_eq!(s.record_stats.durable, s.records);
    assert!(s.blob_stats.appended > 0, "{s:?}");

    // A failed fsync poisons the store: every decision is denied, and store_state says why.
    fs.fail_next_syncs(1);
    assert_eq!(k.evaluate(&read(1)).reason, "KERNEL_ERROR");
    assert_eq!(k.evaluate(&read(2)).reason, "KERNEL_ERROR");
    let s = k.store_state();
    assert!(s.is_poisoned(), "{s:?}");
    let reason = s.records_poisoned.as_deref().or(s.blobs_poisoned.as_deref()).unwrap();
    assert!(reason.contains("fdatasync"), "{reason}");
    drop(k);

    // Reopened: recovery ran, the store is healthy again.
    let k = open_with(sim_config(), &clock);
    let s = k.store_state();
    assert!(!s.is_poisoned(), "{s:?}");
    assert_eq!(k.evaluate(&read(3)).status, Status::Allow);
    assert!(!k.store_state().is_poisoned());
}
