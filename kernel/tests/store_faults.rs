//! Failing disks: a full disk (ENOSPC, also part-way through a write or a segment
//! creation) or a read-only one (EROFS) makes `append` fail and leaves the store
//! consistent and usable; a failed `fsync` poisons it until it is reopened. In every
//! case the records acknowledged before are intact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use helm_kernel::store::{SimulatedFs, Store, StoreError, StoreOptions};

const DIR: &str = "/sim/store";

fn rec(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (tag as usize * 31 + i) as u8));
    v.truncate(len);
    v
}

fn open(fs: &SimulatedFs, segment_bytes: u64) -> Result<Store, StoreError> {
    let opts = StoreOptions {
        segment_bytes,
        ..StoreOptions::default()
    };
    Store::open_with(Path::new(DIR), opts, Arc::new(fs.clone())).map(|(s, _)| s)
}

fn all(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .for_each_record(|_, r| {
            out.push(r.to_vec());
            Ok::<(), StoreError>(())
        })
        .unwrap();
    out
}

/// Appends a decision (two records of 300 bytes) and waits for it.
fn decide(store: &Store, expect: &mut Vec<Vec<u8>>) -> Result<(), StoreError> {
    let n = expect.len() as u64;
    let (a, b) = (rec(n, 300), rec(n + 1, 300));
    let t = store.append(&[&a, &b])?;
    store.wait_durable(t)?;
    expect.push(a);
    expect.push(b);
    Ok(())
}

fn segment(first: u64) -> std::path::PathBuf {
    Path::new(DIR).join(format!("{first:020}.seg"))
}

fn reopen_and_check(fs: &SimulatedFs, expect: &[Vec<u8>]) {
    fs.crash();
    let (store, rec) = Store::open_with(Path::new(DIR), StoreOptions::default(), Arc::new(fs.clone())).unwrap();
    assert_eq!(rec.torn, None, "a failed write left debris: {rec:?}");
    assert_eq!(all(&store), expect);
}

#[test]
fn disk_full_part_way_through_a_write() {
    let fs = SimulatedFs::new();
    let store = open(&fs, 1 << 20).unwrap();
    let mut expect = Vec::new();
    for _ in 0..3 {
        decide(&store, &mut expect).unwrap();
    }
    // The end of the last frame (the file itself may be longer: a reservation of zeros).
    let len_before = 24 + 3 * 616;
    // Room for 100 more bytes: the write of 616 stops there.
    fs.set_space_limit(Some(100));
    let err = decide(&store, &mut expect).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("00000000000000000000.seg") && shown.contains(&format!("offset {len_before}")),
        "{shown}"
    );
    assert_eq!(
        fs.file(&segment(0)).unwrap().len(),
        len_before,
        "the partial frame was cut (and the reservation with it)"
    );
    assert!(store.poisoned().is_none());
    // Still full.
    assert_eq!(
        decide(&store, &mut expect).unwrap_err().io_kind(),
        Some(ErrorKind::StorageFull)
    );
    assert_eq!(store.len(), 6);
    // Space again: the store goes on at the right index.
    fs.set_space_limit(None);
    decide(&store, &mut expect).unwrap();
    assert_eq!(store.len(), 8);
    assert_eq!(all(&store), expect);
    drop(store);
    reopen_and_check(&fs, &expect);
}

#[test]
fn disk_full_when_starting_a_segment() {
    let fs = SimulatedFs::new();
    // One decision (24 + 616 bytes) per segment of 1000 bytes.
    let store = open(&fs, 1000).unwrap();
    let mut expect = Vec::new();
    decide(&store, &mut expect).unwrap();
    // The old segment syncs, the new one is created, its header write fails part-way.
    fs.set_space_limit(Some(10));
    let err = decide(&store, &mut expect).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::StorageFull), "{err}");
    assert!(err.to_string().contains("00000000000000000002.seg"), "{err}");
    assert_eq!(
        fs.files_in(Path::new(DIR)),
        vec![segment(0)],
        "the half-made segment was removed"
    );
    assert!(store.poisoned().is_none());
    // A smaller batch still fits in the old segment.
    let small = rec(2, 50);
    fs.set_space_limit(Some(58));
    store.wait_durable(store.append(&[&small]).unwrap()).unwrap();
    expect.push(small);
    fs.set_space_limit(None);
    decide(&store, &mut expect).unwrap();
    assert_eq!(fs.files_in(Path::new(DIR)), vec![segment(0), segment(3)]);
    assert_eq!(all(&store), expect);
    drop(store);
    reopen_and_check(&fs, &expect);
}

#[test]
fn read_only_file_system() {
    let fs = SimulatedFs::new();
    let store = open(&fs, 1000).unwrap();
    let mut expect = Vec::new();
    decide(&store, &mut expect).unwrap();
    fs.set_read_only(true);
    // A write into the current segment, and the creation of a new one, both fail.
    let err = store.append(&[b"small"]).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::ReadOnlyFilesystem), "{err}");
    let err = decide(&store, &mut expect).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::ReadOnlyFilesystem), "{err}");
    assert!(store.poisoned().is_none());
    assert_eq!(store.len(), 2);
    fs.set_read_only(false);
    decide(&store, &mut expect).unwrap();
    drop(store);
    // A store that cannot be written does not open.
    fs.set_read_only(true);
    let err = open(&fs, 1000).unwrap_err();
    assert_eq!(err.io_kind(), Some(ErrorKind::ReadOnlyFilesystem), "{err}");
    fs.set_read_only(false);
    reopen_and_check(&fs, &expect);
}

#[test]
fn failed_fsync_poisons_until_reopened() {
    let fs = SimulatedFs::new();
    let store = open(&fs, 1 << 20).unwrap();
    let mut expect = Vec::new();
    decide(&store, &mut expect).unwrap();
    fs.fail_next_syncs(1);
    let t = store.append(&[b"unsure"]).unwrap();
    let err = store.wait_durable(t).unwrap_err();
    assert!(matches!(err, StoreError::Io { op: "fdatasync", .. }), "{err}");
    assert!(store.poisoned().is_some());
    for err in [
        store.append(&[b"more"]).unwrap_err(),
        store.wait_durable(t).unwrap_err(),
        store.sync().unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("reopen"), "{err}");
    }
    // The kernel denies, then a restart (here after a power loss) runs recovery.
    drop(store);
    reopen_and_check(&fs, &expect);
    let store = open(&fs, 1 << 20).unwrap();
    decide(&store, &mut expect).unwrap();
    assert_eq!(all(&store), expect);
}

#[test]
fn failed_fsync_when_starting_a_segment_poisons() {
    // Starting a segment syncs the old segment, then the new header, then the directory.
    for skip in 0..3u32 {
        let fs = SimulatedFs::new();
        let store = open(&fs, 1000).unwrap();
        let mut expect = Vec::new();
        decide(&store, &mut expect).unwrap();
        fs.fail_syncs_after(skip, 1);
        let err = decide(&store, &mut expect).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(store.poisoned().is_some(), "sync {skip} of the roll failed: {err}");
        assert!(matches!(
            store.append(&[b"x"]).unwrap_err(),
            StoreError::Poisoned { .. }
        ));
        drop(store);
        reopen_and_check(&fs, &expect);
    }
}
