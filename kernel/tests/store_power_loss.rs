//! Power-loss simulation: the store runs on `SimulatedFs`, which at a crash drops every
//! byte not yet `fsync`ed and every file whose directory entry was not `fsync`ed.
//!
//! - Durable mode: no acknowledged record (its `wait_durable` returned `Ok`) is ever
//!   lost, whatever operation the crash interrupts (every one is tried in turn), and
//!   what survives is exactly a prefix of what was appended, in order.
//! - Buffered mode: the loss is bounded by what was appended since the last completed
//!   `fsync`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use helm_kernel::store::{Durability, SimulatedFs, Store, StoreError, StoreOptions};

const DIR: &str = "/sim/store";

/// xorshift64: deterministic, no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rec(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (tag as usize * 31 + i) as u8));
    v.truncate(len);
    v
}

fn open(fs: &SimulatedFs, opts: StoreOptions) -> Result<(Store, helm_kernel::store::Recovery), StoreError> {
    Store::open_with(Path::new(DIR), opts, Arc::new(fs.clone()))
}

fn all(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .for_each_record(|i, r| {
            assert_eq!(i, out.len() as u64);
            out.push(r.to_vec());
            Ok::<(), StoreError>(())
        })
        .unwrap();
    out
}

fn small_segments() -> StoreOptions {
    StoreOptions {
        segment_bytes: 700,
        ..StoreOptions::default()
    }
}

/// A single-threaded workload: batches of one to three records, each waited for.
/// Returns (records acknowledged, records passed to `append`).
fn scripted_workload(store: &Store, seed: u64) -> (usize, Vec<Vec<u8>>) {
    let mut rng = Rng(seed);
    let mut attempted = Vec::new();
    let mut acked = 0;
    for _ in 0..14 {
        let n = 1 + rng.below(3);
        let batch: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                rec(
                    attempted.len() as u64 + rng.below(1000) * 1000,
                    20 + rng.below(200) as usize,
                )
            })
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let appended = store.append(&refs);
        // A failed append may still leave a prefix of its batch after a power loss.
        attempted.extend(batch);
        let Ok(t) = appended else { break };
        if store.wait_durable(t).is_err() {
            break;
        }
        assert_eq!(t.position() as usize, attempted.len());
        acked = attempted.len();
    }
    (acked, attempted)
}

/// After a crash: what survives is a prefix of what was attempted, containing every
/// acknowledged record; the store then goes on appending.
/// Returns whether recovery cut a torn tail.
fn check_survivors(fs: &SimulatedFs, acked: usize, attempted: &[Vec<u8>], what: &str) -> bool {
    let (store, rec) = open(fs, small_segments()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let got = all(&store);
    assert_eq!(rec.records as usize, got.len(), "{what}");
    let torn = rec.torn.is_some();
    assert_eq!(torn, rec.truncated_bytes > 0, "{what}: {rec:?}");
    assert!(
        got.len() >= acked,
        "{what}: {} records survive, {acked} were acknowledged",
        got.len()
    );
    assert!(got.len() <= attempted.len(), "{what}");
    assert_eq!(
        got,
        attempted[..got.len()],
        "{what}: survivors are not a prefix of what was appended"
    );
    // Clocks and sequences continue.
    let t = store.append(&[b"after"]).unwrap();
    assert_eq!(t.position() as usize, got.len() + 1, "{what}");
    store.wait_durable(t).unwrap();
    drop(store);
    let (store, rec) = open(fs, small_segments()).unwrap();
    assert_eq!(rec.records as usize, got.len() + 1, "{what}");
    assert_eq!(rec.torn, None, "{what}");
    drop(store);
    torn
}

#[test]
fn durable_crash_at_every_operation_loses_no_acknowledged_record() {
    let mut torn_tails = 0;
    for seed in [1u64, 0x9e37_79b9_7f4a_7c15] {
        // Clean crashes (every unsynced byte lost), then torn ones (part of them kept).
        for torn in [false, true] {
            let mut crashes = 0;
            for n in 0.. {
                let fs = SimulatedFs::new();
                if torn {
                    fs.set_torn_writes(Some(seed ^ n));
                }
                fs.crash_after_ops(n);
                let (acked, attempted) = match open(&fs, small_segments()) {
                    Ok((store, _)) => scripted_workload(&store, seed),
                    Err(_) => (0, Vec::new()),
                };
                if fs.crash_pending() {
                    // The workload finished before operation n: every point was covered.
                    assert!(n > 40, "only {n} operations");
                    break;
                }
                crashes += 1;
                let what = format!("seed {seed:#x}, torn {torn}, crash at operation {n}");
                if check_survivors(&fs, acked, &attempted, &what) {
                    torn_tails += 1;
                }
            }
            assert!(crashes > 40);
        }
    }
    assert!(torn_tails > 10, "torn crashes cut only {torn_tails} tails");
}

#[test]
fn crash_during_recovery_is_recovered_again() {
    // First crash part-way through the workload, then a crash at each operation of the
    // recovery that follows, then a clean recovery.
    for first in [17u64, 31, 44] {
        for second in 0..6u64 {
            let fs = SimulatedFs::new();
            fs.set_torn_writes(Some(first * 100 + second));
            fs.crash_after_ops(first);
            let (store, _) = open(&fs, small_segments()).unwrap();
            let (acked, attempted) = scripted_workload(&store, 7);
            drop(store);
            assert!(!fs.crash_pending());
            fs.crash_after_ops(second);
            if let Ok((store, _)) = open(&fs, small_segments()) {
                drop(store);
            }
            fs.crash();
            check_survivors(
                &fs,
                acked,
                &attempted,
                &format!("crash at {first}, then at {second} during recovery"),
            );
        }
    }
}

/// Many threads append and wait; the disk loses power at a random operation (a torn
/// crash). Returns whether recovery cut a torn tail.
fn concurrent_run(seed: u64, durability: Durability) -> bool {
    let mut rng = Rng(seed);
    let fs = SimulatedFs::new();
    fs.set_torn_writes(Some(seed));
    let opts = StoreOptions {
        durability: durability.clone(),
        segment_bytes: 4096,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open_with(Path::new(DIR), opts.clone(), Arc::new(fs.clone())).unwrap();
    let store = Arc::new(store);
    fs.crash_after_ops(rng.below(600));
    // (first index, batch) of every successful append; indices of acknowledged batches.
    let appended = Arc::new(Mutex::new(Vec::<(u64, Vec<Vec<u8>>)>::new()));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (store, appended, acked) = (Arc::clone(&store), Arc::clone(&appended), Arc::clone(&acked));
            let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let tag = t << 32 | i << 1;
                    let batch = vec![
                        rec(tag, 8 + rng.below(300) as usize),
                        rec(tag | 1, 8 + rng.below(300) as usize),
                    ];
                    let Ok(ticket) = store.append(&[&batch[0], &batch[1]]) else {
                        return;
                    };
                    let first = ticket.position() - 2;
                    appended.lock().unwrap().push((first, batch));
                    if store.wait_durable(ticket).is_err() {
                        return;
                    }
                    acked.lock().unwrap().push(first);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Syncs after the crash fail, so this is the last durable point before it.
    let durable_before_crash = store.stats().durable;
    drop(store);
    if fs.crash_pending() {
        fs.crash();
    }
    let mut appended = Arc::try_unwrap(appended).unwrap().into_inner().unwrap();
    appended.sort();
    let mut in_order = Vec::new();
    for (first, batch) in &appended {
        assert_eq!(*first as usize, in_order.len());
        in_order.extend(batch.iter().cloned());
    }
    let (store, rec) = Store::open_with(Path::new(DIR), opts, Arc::new(fs.clone())).unwrap();
    let got = all(&store);
    let what = format!("seed {seed}, {durability:?}, {} appended, {:?}", in_order.len(), rec);
    assert!(got.len() <= in_order.len(), "{what}");
    assert_eq!(got, in_order[..got.len()], "{what}");
    assert!(
        got.len() as u64 >= durable_before_crash,
        "{what}: durable point {durable_before_crash} lost"
    );
    if durability == Durability::Durable {
        for first in acked.lock().unwrap().iter() {
            assert!(
                got.len() as u64 >= first + 2,
                "{what}: acknowledged batch at {first} lost"
            );
        }
    }
    rec.torn.is_some()
}

#[test]
fn durable_concurrent_crashes_lose_no_acknowledged_record() {
    let torn = (1..=12)
        .filter(|&seed| concurrent_run(seed, Durability::Durable))
        .count();
    assert!(torn > 0, "no run cut a torn tail");
}

#[test]
fn buffered_concurrent_crashes_lose_only_what_followed_the_last_sync() {
    for seed in 101..=106 {
        let _ = concurrent_run(
            seed,
            Durability::Buffered {
                sync_interval: core::time::Duration::from_millis(1),
            },
        );
    }
}

#[test]
fn buffered_loss_is_exactly_the_records_since_the_last_sync() {
    let fs = SimulatedFs::new();
    // No background sync within the test: only the explicit one.
    let opts = StoreOptions::buffered(core::time::Duration::from_secs(3600));
    let (store, _) = open(&fs, opts.clone()).unwrap();
    let mut expect = Vec::new();
    for i in 0..10u64 {
        let r = rec(i, 300);
        // Buffered: returns at once.
        store.wait_durable(store.append(&[&r]).unwrap()).unwrap();
        expect.push(r);
    }
    assert_eq!(store.stats().durable, 0);
    store.sync().unwrap();
    assert_eq!(store.stats().durable, 10);
    for i in 10..15u64 {
        store.wait_durable(store.append(&[&rec(i, 300)]).unwrap()).unwrap();
    }
    fs.crash();
    drop(store);
    let (store, rec) = open(&fs, opts).unwrap();
    assert_eq!(rec.records, 10);
    assert_eq!(all(&store), expect);
}
