//! Range reads of the ProofGraph store (`Store::read_range`): over many small segments,
//! every range (from the first record, inside a segment, at segment boundaries, past
//! the end; limits 0, 1 and large) gives exactly what a full scan gives; a range starts
//! at the segment holding its first record and stops after its last one (a damaged
//! segment outside the range is not read), still checks every frame it reads, and never
//! hands out a record being appended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use core::sync::atomic::{AtomicBool, Ordering};
use std::path::{Path, PathBuf};

use helm_kernel::store::{Store, StoreError, StoreOptions};

/// Record `index`: its length (10 to 70 bytes) and bytes follow from the index, so a
/// reader can check any record on its own.
fn rec(index: u64) -> Vec<u8> {
    let len = 10 + (index * 7 % 61) as usize;
    let mut v = index.to_le_bytes().to_vec();
    v.extend((8..len).map(|i| (index as usize * 31 + i) as u8));
    v
}

/// Segments of a few records each. Buffered: these tests are about what readers see,
/// not about fsync.
fn small_segments() -> StoreOptions {
    StoreOptions {
        segment_bytes: 400,
        ..StoreOptions::buffered(core::time::Duration::from_millis(50))
    }
}

/// Appends records `0..n` in batches of 1 to 4 records.
fn fill(store: &Store, n: u64) {
    let mut i = store.len();
    let mut batch = 1;
    while i < n {
        let end = (i + batch).min(n);
        let recs: Vec<Vec<u8>> = (i..end).map(rec).collect();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        store.wait_durable(store.append(&refs).unwrap()).unwrap();
        i = end;
        batch = batch % 4 + 1;
    }
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

fn range(store: &Store, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    let n = store.read_range(from, limit, |i, r| {
        assert_eq!(i, from + out.len() as u64, "indices are consecutive from {from}");
        out.push(r.to_vec());
        Ok::<(), StoreError>(())
    })?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

/// Segment files of `dir` with their first index, in order.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    v.sort();
    v
}

/// Checks every interesting range against the full scan.
fn check_ranges(store: &Store, dir: &Path) {
    let full = all(store);
    let n = full.len() as u64;
    let firsts: Vec<u64> = segments(dir).iter().map(|(f, _)| *f).collect();
    assert!(firsts.len() > 20, "{} segments", firsts.len());
    let check = |from: u64, limit: u64| {
        let got = range(store, from, limit).unwrap();
        let start = from.min(n) as usize;
        let end = from.saturating_add(limit).min(n) as usize;
        assert_eq!(got, full[start..end], "from {from} limit {limit}");
    };
    let large = [n - 1, n, 1000, u64::MAX - 1, u64::MAX];
    for from in [0, 1, 2, n / 2, n - 1, n, n + 1, n + 1000, u64::MAX - 1, u64::MAX] {
        for limit in [0, 1, 2, 3, 5, 17].into_iter().chain(large) {
            check(from, limit);
        }
    }
    for (k, f) in firsts.iter().enumerate() {
        // At a boundary, just before it (the last record of the previous segment) and
        // just after it (inside a segment); ranges within a segment, across one
        // boundary and across several.
        for from in [*f, f.saturating_sub(1), f + 1] {
            for limit in [0, 1, 2, 3, 5, 17] {
                check(from, limit);
            }
        }
        // To the end, from a few segments (each reads every later segment).
        if k % 8 == 0 {
            check(f + 1, u64::MAX);
        }
    }
}

#[test]
fn ranges_match_a_full_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let (store, _) = Store::open(dir, small_segments()).unwrap();
        // Empty store: nothing, whatever the range.
        assert!(range(&store, 0, 10).unwrap().is_empty());
        assert!(range(&store, 5, u64::MAX).unwrap().is_empty());
        fill(&store, 300);
        let full = all(&store);
        assert_eq!(full, (0..300).map(rec).collect::<Vec<_>>());
        assert!(store.stats().segments > 20);
        check_ranges(&store, dir);
    }
    // Reopened: the segment list comes from recovery.
    let (store, recovery) = Store::open(dir, small_segments()).unwrap();
    assert_eq!(recovery.records, 300);
    check_ranges(&store, dir);
    // Records appended after reopening, in a new segment.
    fill(&store, 340);
    check_ranges(&store, dir);
}

/// Flips a byte of the first record of the segment starting at `first`.
fn damage_first_record(dir: &Path, first: u64) {
    let path = dir.join(format!("{first:020}.seg"));
    let mut bytes = std::fs::read(&path).unwrap();
    // Header (24 bytes), frame length (4 bytes), then the record.
    bytes[24 + 4 + 3] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_range_reads_only_the_segments_it_spans_and_checks_what_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (store, _) = Store::open(dir, small_segments()).unwrap();
    fill(&store, 200);
    let segs = segments(dir);
    let first = |k: usize| segs[k].0;
    // Two segments of at least two records, with a segment between them and after them.
    let multi = |k: usize| k + 1 < segs.len() && first(k + 1) - first(k) >= 2;
    let a = (1..segs.len()).find(|&k| multi(k)).unwrap();
    let b = (a + 2..segs.len() - 1).find(|&k| multi(k)).unwrap();
    // Damage the first record of each.
    damage_first_record(dir, first(a));
    damage_first_record(dir, first(b));
    // A full scan sees it.
    let full = store.for_each_record(|_, _| Ok::<(), StoreError>(()));
    assert!(matches!(full, Err(StoreError::Corrupt { .. })), "{full:?}");
    // Ranges before, between and after the damaged segments do not read them.
    let good = (0..200).map(rec).collect::<Vec<_>>();
    for (from, end) in [(0, first(a)), (first(a + 1), first(b)), (first(b + 1), 200)] {
        assert_eq!(
            range(&store, from, end - from).unwrap(),
            good[from as usize..end as usize],
            "{from}..{end}"
        );
    }
    // The records before `from` in its segment are read and checked too (frames carry
    // no index to seek to), and a range that includes a damaged record reports it.
    for (from, limit) in [
        (first(a) + 1, 1),
        (first(a), 1),
        (first(a) - 1, 2),
        (first(a + 1), 200),
        (0, u64::MAX),
    ] {
        let r = range(&store, from, limit);
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{from} {limit}: {r:?}");
    }
}

#[test]
fn a_range_never_hands_out_a_record_being_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        segment_bytes: 2000,
        ..small_segments()
    };
    let (store, _) = Store::open(tmp.path(), opts).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let store = &store;
        let done = &done;
        s.spawn(move || {
            fill(store, 2000);
            done.store(true, Ordering::Release);
        });
        for _ in 0..2 {
            s.spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    // The tail as it grows: whatever is returned is complete and right.
                    let n = store.len();
                    let from = n.saturating_sub(5);
                    let got = range(store, from, 10).unwrap();
                    assert!(got.len() >= (n - from) as usize, "{n} {from} {}", got.len());
                    for (k, r) in got.iter().enumerate() {
                        assert_eq!(*r, rec(from + k as u64));
                    }
                    reads += 1;
                }
            });
        }
    });
    assert_eq!(all(&store), (0..2000).map(rec).collect::<Vec<_>>());
}
