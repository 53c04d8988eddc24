//! Recovery at open, on the real file system: a torn tail of the last segment (cut at
//! every byte of its last frame, or with any byte of it flipped) is reported and cut and
//! earlier records stay; a defect anywhere else refuses to open (`Corrupt`); the
//! lockless reader stops at a torn tail and modifies nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "tests"
)]

use std::fs;
use std::path::{Path, PathBuf};

use helm_kernel::store::{read_records, Store, StoreError, StoreOptions};

fn rec(tag: u64, len: usize) -> Vec<u8> {
    let mut v = tag.to_le_bytes().to_vec();
    v.extend((0..len.saturating_sub(8)).map(|i| (tag as usize * 31 + i) as u8));
    v.truncate(len);
    v
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

fn seg(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// A closed store of `n` single-record batches of `len` bytes each.
fn build(dir: &Path, n: u64, len: usize, segment_bytes: u64) -> Vec<Vec<u8>> {
    let (store, _) = Store::open(
        dir,
        StoreOptions {
            segment_bytes,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let mut v = Vec::new();
    for i in 0..n {
        let r = rec(i, len);
        store.wait_durable(store.append(&[&r]).unwrap()).unwrap();
        v.push(r);
    }
    store.close().unwrap();
    v
}

fn open(dir: &Path) -> Result<(Store, helm_kernel::store::Recovery), StoreError> {
    Store::open(dir, StoreOptions::default())
}

#[test]
fn torn_tail_cut_at_every_offset_of_the_last_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let expect = build(dir, 5, 100, 1 << 20);
    let path = seg(dir, 0);
    let bytes = fs::read(&path).unwrap();
    let start = bytes.len() - 108;
    for cut in start..bytes.len() {
        fs::write(&path, &bytes[..cut]).unwrap();
        // The lockless reader stops at the torn tail and leaves the file alone.
        let mut n = 0;
        read_records(dir, |_, _| {
            n += 1;
            Ok::<(), StoreError>(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(fs::read(&path).unwrap().len(), cut);

        let (store, r) = open(dir).unwrap();
        assert_eq!(r.records, 4, "cut at {cut}");
        assert_eq!(r.truncated_bytes, (cut - start) as u64);
        if cut == start {
            assert_eq!(r.torn, None);
        } else {
            let torn = r.torn.clone().unwrap();
            assert!(
                torn.contains("00000000000000000000.seg") && torn.contains(&format!("offset {start}")),
                "{torn}"
            );
        }
        assert_eq!(all(&store), expect[..4]);
        drop(store);
        assert_eq!(fs::read(&path).unwrap(), bytes[..start]);
    }
    // The store continues where the good records end.
    let (store, _) = open(dir).unwrap();
    let t = store.append(&[b"next"]).unwrap();
    assert_eq!(t.position(), 5);
    store.wait_durable(t).unwrap();
}

#[test]
fn flipped_byte_in_the_last_frame_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let expect = build(dir, 5, 100, 1 << 20);
    let path = seg(dir, 0);
    let bytes = fs::read(&path).unwrap();
    let start = bytes.len() - 108;
    for at in start..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            fs::write(&path, &bad).unwrap();
            let (store, r) = open(dir).unwrap();
            assert_eq!((r.records, r.truncated_bytes), (4, 108), "flip {mask:#x} at {at}");
            assert!(r.torn.is_some());
            assert_eq!(all(&store), expect[..4]);
        }
    }
}

#[test]
fn torn_tail_in_a_later_segment_keeps_earlier_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Frames of 108 bytes, two per segment of 250 bytes.
    let expect = build(dir, 7, 100, 250);
    let last = seg(dir, 6);
    let bytes = fs::read(&last).unwrap();
    assert_eq!(bytes.len(), 24 + 108);
    fs::write(&last, &bytes[..50]).unwrap();
    let (store, r) = open(dir).unwrap();
    assert_eq!((r.records, r.segments, r.truncated_bytes), (6, 4, 26));
    assert_eq!(all(&store), expect[..6]);
}

#[test]
fn interrupted_segment_creation_is_repaired() {
    for keep in [0usize, 1, 10, 23, 24] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let expect = build(dir, 4, 100, 250);
        // A segment created but whose header never reached the disk (or zeros did).
        let path = seg(dir, 4);
        let header = fs::read(seg(dir, 0)).unwrap()[..24].to_vec();
        let mut partial = vec![0u8; keep];
        partial[..keep.min(10)].copy_from_slice(&header[..keep.min(10)]);
        fs::write(&path, &partial).unwrap();
        let (store, r) = open(dir).unwrap();
        assert_eq!(
            (r.records, r.segments, r.truncated_bytes),
            (4, 3, keep as u64),
            "keep {keep}"
        );
        assert!(r.torn.unwrap().contains("header"));
        assert_eq!(all(&store), expect);
        store.wait_durable(store.append(&[b"next"]).unwrap()).unwrap();
        drop(store);
        assert_eq!(fs::metadata(&path).unwrap().len(), 24 + 12);
        let (store, r) = open(dir).unwrap();
        assert_eq!((r.records, r.torn), (5, None));
        drop(store);
    }
}

fn expect_corrupt(dir: &Path, file: &str, rule: &str) {
    let err = open(dir).unwrap_err();
    let StoreError::Corrupt { path, rule: got, .. } = &err else {
        panic!("not Corrupt: {err}")
    };
    assert!(path.ends_with(file), "{err}");
    assert!(got.contains(rule), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains(file) && shown.contains("offset") && shown.contains(rule),
        "{shown}"
    );
    // The lockless reader refuses too.
    let r = read_records(dir, |_, _| Ok::<(), StoreError>(()));
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
}

#[test]
fn bad_frame_in_an_older_segment_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 7, 100, 250);
    let path = seg(dir, 2);
    let good = fs::read(&path).unwrap();
    for (at, rule) in [(24 + 108 + 50, "checksum"), (24 + 108 + 1, "incomplete frame")] {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        expect_corrupt(dir, "00000000000000000002.seg", rule);
    }
    // A cut older segment.
    fs::write(&path, &good[..good.len() - 3]).unwrap();
    expect_corrupt(dir, "00000000000000000002.seg", "incomplete frame");
    // Zeros in place of a frame.
    let mut zeroed = good.clone();
    zeroed[24..].fill(0);
    fs::write(&path, &zeroed).unwrap();
    expect_corrupt(dir, "00000000000000000002.seg", "frame length 0");
    fs::write(&path, &good).unwrap();
    assert_eq!(open(dir).unwrap().1.records, 7);
}

#[test]
fn missing_or_misnamed_segments_refuse_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 7, 100, 250);
    let mid = fs::read(seg(dir, 2)).unwrap();
    fs::remove_file(seg(dir, 2)).unwrap();
    expect_corrupt(dir, "00000000000000000004.seg", "missing");
    fs::write(seg(dir, 2), &mid).unwrap();

    let first = fs::read(seg(dir, 0)).unwrap();
    fs::remove_file(seg(dir, 0)).unwrap();
    expect_corrupt(dir, "00000000000000000002.seg", "first segment starts at index 2");
    fs::write(seg(dir, 0), &first).unwrap();

    // A segment whose header names another first index.
    fs::rename(seg(dir, 6), seg(dir, 5)).unwrap();
    expect_corrupt(dir, "00000000000000000005.seg", "header names first index 6");
    fs::rename(seg(dir, 5), seg(dir, 6)).unwrap();

    fs::write(dir.join("12.seg"), b"").unwrap();
    expect_corrupt(dir, "12.seg", "20 decimal digits");
    fs::remove_file(dir.join("12.seg")).unwrap();

    // Other files are ignored.
    fs::write(dir.join("notes.txt"), b"hello").unwrap();
    assert_eq!(open(dir).unwrap().1.records, 7);
}

#[test]
fn bad_header_of_a_last_segment_with_frames_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build(dir, 3, 100, 1 << 20);
    let path = seg(dir, 0);
    let good = fs::read(&path).unwrap();
    for (at, rule) in [(0, "magic"), (8, "version"), (12, "checksum"), (21, "checksum")] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        expect_corrupt(dir, "00000000000000000000.seg", rule);
    }
}

#[test]
fn read_records_stops_at_a_torn_tail_without_modifying_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let expect = build(dir, 7, 100, 250);
    let last = seg(dir, 6);
    let bytes = fs::read(&last).unwrap();
    let torn = &bytes[..bytes.len() - 1];
    fs::write(&last, torn).unwrap();
    let mut got = Vec::new();
    let n = read_records(dir, |i, r| {
        assert_eq!(i, got.len() as u64);
        got.push(r.to_vec());
        Ok::<(), StoreError>(())
    })
    .unwrap();
    assert_eq!(n, 6);
    assert_eq!(got, expect[..6]);
    assert_eq!(fs::read(&last).unwrap(), torn);
}

/// The example of spec/store.md §2.4, byte for byte.
#[test]
fn spec_example_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = open(tmp.path()).unwrap();
    store
        .wait_durable(store.append(&[b"intent", b"decision"]).unwrap())
        .unwrap();
    store.close().unwrap();
    let bytes = fs::read(seg(tmp.path(), 0)).unwrap();
    assert_eq!(
        hex::encode(bytes),
        "48454c4d53454731010000000000000000000000a3df2b40\
         06000000696e74656e7483423ae1\
         080000006465636973696f6eb0d1579c"
    );
    // A segment whose first index is 2.
    let (store, _) = Store::open(
        &tmp.path().join("b"),
        StoreOptions {
            segment_bytes: 30,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    store
        .wait_durable(store.append(&[b"intent", b"decision"]).unwrap())
        .unwrap();
    store.wait_durable(store.append(&[b"x"]).unwrap()).unwrap();
    drop(store);
    let bytes = fs::read(seg(&tmp.path().join("b"), 2)).unwrap();
    assert_eq!(
        hex::encode(&bytes[..24]),
        "48454c4d53454731010000000200000000000000ded80e02"
    );
}

/// A reservation (spec/store.md §3): zeros written ahead of the last frame while the
/// store is open, kept at a reopen after a crash (not reported as torn), cut at close
/// and at rollover.
#[test]
fn reservation_is_written_ahead_kept_after_a_crash_and_cut_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = seg(dir, 0);
    let (store, _) = open(dir).unwrap();
    let a = rec(0, 300);
    store.wait_durable(store.append(&[&a]).unwrap()).unwrap();
    let end = 24 + 308;
    let len = fs::metadata(&path).unwrap().len();
    assert_eq!(
        len,
        256 * 1024 + 4096,
        "page-aligned end of 256 KiB past the last frame"
    );
    assert!(fs::read(&path).unwrap()[end..].iter().all(|&b| b == 0));
    // A crashed writer leaves the reservation: copy the files as they are now.
    let crashed = tmp.path().join("crashed");
    fs::create_dir(&crashed).unwrap();
    fs::copy(&path, seg(&crashed, 0)).unwrap();
    store.close().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), end as u64, "cut at close");

    let (store, report) = open(&crashed).unwrap();
    assert_eq!(report.torn, None, "{report:?}");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.reserved_bytes, len - end as u64);
    assert_eq!(report.records, 1);
    // The lockless reader stops at the zeros too.
    assert_eq!(read_records(&crashed, |_, _| Ok::<(), StoreError>(())).unwrap(), 1);
    let b = rec(1, 50);
    store.wait_durable(store.append(&[&b]).unwrap()).unwrap();
    assert_eq!(
        fs::metadata(seg(&crashed, 0)).unwrap().len(),
        len,
        "appended over the zeros"
    );
    assert_eq!(all(&store), vec![a, b]);
    store.close().unwrap();
    assert_eq!(fs::metadata(seg(&crashed, 0)).unwrap().len(), end as u64 + 58);
}

#[test]
fn zeros_then_anything_else_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let expect = build(dir, 3, 100, 1 << 20);
    let path = seg(dir, 0);
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad.extend(core::iter::repeat_n(0u8, 5000));
    bad.push(1);
    bad.extend(core::iter::repeat_n(0u8, 100));
    fs::write(&path, &bad).unwrap();
    let (store, report) = open(dir).unwrap();
    assert_eq!(report.reserved_bytes, 0);
    assert_eq!(report.truncated_bytes, 5101, "{report:?}");
    assert!(report.torn.as_deref().unwrap().contains("frame length 0"), "{report:?}");
    assert_eq!(all(&store), expect);
    drop(store);
    assert_eq!(fs::read(&path).unwrap(), good);
}

#[test]
fn rollover_cuts_the_reservation_of_the_older_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = StoreOptions {
        segment_bytes: 64 * 1024,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(dir, opts.clone()).unwrap();
    let mut expect = Vec::new();
    // 300 decisions of 1 KiB: several segments, each reserved up to 64 KiB while last.
    for i in 0..300 {
        let r = rec(i, 1024);
        store.wait_durable(store.append(&[&r]).unwrap()).unwrap();
        expect.push(r);
    }
    let segments = store.stats().segments;
    assert!(segments >= 4, "{segments}");
    let last = seg(dir, 300 - (300 % 63));
    assert!(
        fs::metadata(&last).unwrap().len() > 24 + (300 % 63) * 1032,
        "the last segment holds a reservation"
    );
    for first in (0..300 - 63).step_by(63) {
        assert_eq!(
            fs::metadata(seg(dir, first)).unwrap().len(),
            24 + 63 * 1032,
            "segment {first}"
        );
    }
    // Reopened while the reservation is there (the lock is the only obstacle: copy).
    let copy = tmp.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "seg") {
            fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    drop(store);
    let (reopened, report) = Store::open(&copy, opts).unwrap();
    assert_eq!(report.torn, None);
    assert!(report.reserved_bytes > 0);
    assert_eq!(all(&reopened), expect);
}
