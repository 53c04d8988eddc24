//! EvidencePack: round trips, determinism, tamper evidence and hostile archives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

use helm_test_vectors::{sample_run, write_run, Run};
use pack_format::transport::{compress, Limits, Wrapper};
use pack_format::{verify_reader, NoObserver, PackCode, StreamError, VerifyOptions};

fn verify(bytes: &[u8]) -> Result<pack_format::PackSummary, String> {
    verify_with(bytes, &small_run().anchors)
}

fn verify_with(bytes: &[u8], anchors: &[[u8; 32]]) -> Result<pack_format::PackSummary, String> {
    match verify_reader(bytes, anchors, &VerifyOptions::default(), &mut NoObserver) {
        Ok((_, s)) => Ok(s),
        Err(StreamError::Pack(e)) => Err(e.code_name().to_string()),
        Err(StreamError::Io(e)) => Err(format!("io: {e}")),
        Err(StreamError::Setup(e)) => Err(format!("setup: {e:?}")),
    }
}

fn small_run() -> Run {
    sample_run(2, 8, 10)
}

#[test]
fn a_written_pack_verifies_in_chunks_of_any_size() {
    let run = small_run();
    let pack = write_run(&run, &[]).unwrap();
    let s = verify(&pack).unwrap();
    assert_eq!(s.verified.records, run.records.len() as u64);
    assert_eq!(s.manifest.blobs, run.blobs.len() as u64);
    assert_eq!(s.manifest.withheld, 0);
    for chunk in [1usize, 7, 511, 512, 513, 4096] {
        let opts = VerifyOptions {
            chunk,
            ..VerifyOptions::default()
        };
        let got = verify_reader(&pack[..], &run.anchors, &opts, &mut NoObserver).map(|(_, s)| s.verified.records);
        assert_eq!(got.ok(), Some(run.records.len() as u64), "chunk {chunk}");
    }
}

#[test]
fn plain_tar_lists_the_pack() {
    let pack = write_run(&small_run(), &[]).unwrap();
    let dir = std::env::temp_dir().join(format!("helm-pack-tar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.tar");
    std::fs::write(&path, &pack).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = names.lines().collect();
    assert_eq!(lines[0], "manifest.cbor");
    assert_eq!(lines[1], "withheld.cbor");
    assert!(lines[2].starts_with("blobs/sha256/"));
    assert_eq!(*lines.last().unwrap(), "records/000000.cbor");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn writing_is_deterministic_and_so_are_the_transport_wrappers() {
    let a = write_run(&small_run(), &[]).unwrap();
    let b = write_run(&small_run(), &[]).unwrap();
    assert_eq!(a, b);
    for w in [Wrapper::Zstd, Wrapper::Gzip] {
        let x = compress(&a, w).unwrap();
        assert_eq!(x, compress(&b, w).unwrap());
        assert_eq!(Wrapper::detect(&x), w);
        let s = verify(&x).unwrap();
        assert_eq!(s.bytes, a.len() as u64);
    }
}

#[test]
fn withheld_blobs_are_listed_and_still_verify() {
    let run = small_run();
    let secret: Vec<_> = run.blobs.keys().take(3).copied().collect();
    let pack = write_run(&run, &secret).unwrap();
    let s = verify(&pack).unwrap();
    assert_eq!(s.manifest.withheld, 3);
    assert_eq!(s.manifest.blobs, run.blobs.len() as u64 - 3);
}

#[test]
fn every_single_bit_flip_is_rejected() {
    // A tiny pack (one session, two calls) so that every bit can be tried.
    let run = sample_run(1, 2, 100);
    let pack = write_run(&run, &[]).unwrap();
    let mut flips = 0;
    for bit in 0..pack.len() * 8 {
        let mut bad = pack.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            verify_with(&bad, &run.anchors).is_err(),
            "flipping bit {bit} (byte {}) verified",
            bit / 8
        );
        flips += 1;
    }
    eprintln!("{flips} single-bit flips over a {}-byte pack, all rejected", pack.len());
}

/// Rewrites a pack from modified records and blobs (the manifest is re-signed by the
/// same kernel key, so only the rule at stake can fail).
fn repack(run: &Run, records: Vec<Vec<u8>>) -> Vec<u8> {
    // Keep only the blobs the remaining records reference.
    let referenced: std::collections::BTreeSet<_> = records
        .iter()
        .filter_map(|r| pack_format::blob_reference(&verify_core::Record::decode(r).unwrap().body))
        .collect();
    let blobs = run
        .blobs
        .iter()
        .filter(|(k, _)| referenced.contains(*k))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let r = Run {
        anchors: run.anchors.clone(),
        records,
        blobs,
        kernel: run.kernel.clone(),
    };
    write_run(&r, &[]).unwrap()
}

#[test]
fn dropped_reordered_duplicated_records_each_have_their_error() {
    let run = small_run();
    // Drop an EFFECT (nothing depends on it): the next record of its session skips a number.
    let mut dropped = run.records.clone();
    let effect = dropped
        .iter()
        .position(|r| verify_core::Record::decode(r).unwrap().kind == verify_core::Kind::Effect)
        .unwrap();
    dropped.remove(effect);
    assert_eq!(verify(&repack(&run, dropped)).unwrap_err(), "SEQUENCE_GAP");

    let mut reordered = run.records.clone();
    reordered.swap(4, 5); // an INTENT and its DECISION
    assert_eq!(verify(&repack(&run, reordered)).unwrap_err(), "PARENT_MISSING");

    let mut duplicated = run.records.clone();
    duplicated.insert(6, run.records[5].clone());
    assert_eq!(verify(&repack(&run, duplicated)).unwrap_err(), "DUPLICATE_RECORD");
}

#[test]
fn a_truncated_pack_is_rejected_at_every_length() {
    let pack = write_run(&sample_run(1, 2, 100), &[]).unwrap();
    for len in (0..pack.len()).step_by(97).chain([pack.len() - 1, pack.len() - 512]) {
        let e = verify(&pack[..len]).unwrap_err();
        assert!(
            [
                "TAR_TRUNCATED",
                "PACK_UNEXPECTED_ENTRY",
                "PACK_MANIFEST_INVALID",
                "PACK_SEGMENT_INVALID"
            ]
            .contains(&e.as_str())
                || len < 512,
            "length {len}: {e}"
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn a_blob_swapped_for_another_is_rejected() {
    let run = small_run();
    let pack = write_run(&run, &[]).unwrap();
    // Replace the content of the first blob entry (same length) with other bytes.
    let (name, content) = run.blobs.iter().find(|(_, v)| v.len() > 20).unwrap();
    let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let at = find(&pack, format!("blobs/sha256/{hex}").as_bytes()) + 512;
    let mut bad = pack.clone();
    let mut other = content.clone();
    other[17] ^= 0x20;
    bad[at..at + other.len()].copy_from_slice(&other);
    assert_eq!(verify(&bad).unwrap_err(), "PACK_BLOB_HASH_MISMATCH");
}

#[test]
fn record_by_revoked_key_after_cutoff_is_rejected_inside_a_pack() {
    let vectors = helm_test_vectors::load_record_vectors(&helm_test_vectors::vectors_dir()).unwrap();
    let v = vectors
        .iter()
        .find(|v| v.id == "rule2/revoked-key-backdates-record")
        .unwrap();
    let records: Vec<Vec<u8>> = v.records.iter().map(|r| hex::decode(r).unwrap()).collect();
    let anchors: Vec<[u8; 32]> = v
        .anchors
        .iter()
        .map(|a| hex::decode(a).unwrap().try_into().unwrap())
        .collect();
    let kernel = helm_test_vectors::test_key("kernel-1");
    let contents = pack_format::PackContents {
        records: records.iter().map(Vec::as_slice).collect(),
        ..Default::default()
    };
    // The vector's records reference argument blobs that are not available: withheld.
    let pack = pack_format::write_pack(&contents, kernel.public_key(), |m| kernel.sign(m)).unwrap();
    assert_eq!(verify_with(&pack, &anchors).unwrap_err(), "KEY_REVOKED");
}

fn tar_entry(name: &[u8], typeflag: u8, size: u64, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..337].copy_from_slice(b"0000000\0");
    h[337..345].copy_from_slice(b"0000000\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn hostile_archives_are_refused_with_clear_errors() {
    let end = vec![0u8; 1024];
    let traversal = [tar_entry(b"../../etc/passwd", b'0', 4, b"root"), end.clone()].concat();
    assert_eq!(verify(&traversal).unwrap_err(), "TAR_BAD_PATH");
    let absolute = [tar_entry(b"/etc/passwd", b'0', 4, b"root"), end.clone()].concat();
    assert_eq!(verify(&absolute).unwrap_err(), "TAR_BAD_PATH");
    let symlink = [tar_entry(b"manifest.cbor", b'2', 0, b""), end.clone()].concat();
    assert_eq!(verify(&symlink).unwrap_err(), "TAR_NOT_REGULAR_FILE");
    let pax = [tar_entry(b"manifest.cbor", b'x', 0, b""), end.clone()].concat();
    assert_eq!(verify(&pax).unwrap_err(), "TAR_NOT_REGULAR_FILE");
    // A header declaring 8 GiB for the manifest: refused before reading any of it.
    let huge = tar_entry(b"manifest.cbor", b'0', 0o77_777_777_777, b"");
    assert_eq!(verify(&huge).unwrap_err(), "PACK_MANIFEST_INVALID");
    // A blob declaring 8 GiB, then the stream ends: truncated, with bounded memory.
    let pack = write_run(&small_run(), &[]).unwrap();
    let first_blob = find(&pack, b"blobs/sha256/");
    let mut big = pack[..first_blob].to_vec();
    let name = &pack[first_blob..first_blob + 77];
    big.extend_from_slice(&tar_entry(name, b'0', 0o77_777_777_777, &[0u8; 4096])[..512 + 4096]);
    assert_eq!(verify(&big).unwrap_err(), "TAR_TRUNCATED");
    // Trailing data after the end blocks.
    let mut trailing = pack.clone();
    trailing.extend_from_slice(&[0u8; 512]);
    assert_eq!(verify(&trailing).unwrap_err(), "TAR_TRAILING_DATA");
}

#[test]
fn decompression_bombs_and_truncated_streams_are_errors_not_ooms() {
    let zeros = vec![0u8; 64 << 20];
    for w in [Wrapper::Zstd, Wrapper::Gzip] {
        let bomb = compress(&zeros, w).unwrap();
        assert!(bomb.len() < (1 << 20), "{w:?} bomb is {} bytes", bomb.len());
        let e = verify(&bomb).unwrap_err();
        // 64 MiB of zeros is first an all-zero "end block" with no layout, or a ratio bomb.
        assert!(
            e == "PACK_TRANSPORT_INVALID" || e == "PACK_UNEXPECTED_ENTRY",
            "{w:?}: {e}"
        );
        let opts = VerifyOptions {
            limits: Limits {
                max_output: 1 << 20,
                ..Limits::default()
            },
            ..Default::default()
        };
        let capped = verify_reader(&bomb[..], &[], &opts, &mut NoObserver);
        assert!(capped.is_err());

        let pack = write_run(&small_run(), &[]).unwrap();
        let z = compress(&pack, w).unwrap();
        for cut in [z.len() / 2, z.len() - 1] {
            let e = verify(&z[..cut]).unwrap_err();
            assert_eq!(e, "PACK_TRANSPORT_INVALID", "{w:?} cut {cut}");
        }
        let mut trailing = z.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(
            verify(&trailing).unwrap_err(),
            "PACK_TRANSPORT_INVALID",
            "{w:?} trailing junk"
        );
    }
}

#[test]
fn a_pack_whose_manifest_overstates_its_size_is_refused_before_allocating() {
    let pack = write_run(&small_run(), &[]).unwrap();
    let opts = VerifyOptions {
        max_table_bytes: 1024,
        ..VerifyOptions::default()
    };
    match verify_reader(&pack[..], &small_run().anchors, &opts, &mut NoObserver) {
        Err(StreamError::Pack(e)) => assert_eq!(e.code, PackCode::CapacityExceeded),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parallel_and_single_threaded_verification_agree_on_a_multi_segment_pack() {
    // About 18,000 records: two segments, enough to use the worker threads.
    let run = sample_run(600, 10, 1000);
    assert!(run.records.len() > pack_format::SEGMENT_RECORDS as usize);
    let pack = write_run(&run, &[]).unwrap();
    let one = VerifyOptions {
        threads: 1,
        ..VerifyOptions::default()
    };
    let two = VerifyOptions {
        threads: 2,
        ..VerifyOptions::default()
    };
    let a = verify_reader(&pack[..], &run.anchors, &one, &mut NoObserver).unwrap().1;
    let b = verify_reader(&pack[..], &run.anchors, &two, &mut NoObserver).unwrap().1;
    assert_eq!(a, b);
    assert_eq!(a.manifest.segments, 2);
    // A flipped byte deep in the second segment: the same error either way.
    let mut bad = pack.clone();
    let second = find(&pack, b"records/000001.cbor") + 512 + 100_000;
    bad[second] ^= 0x04;
    let e1 = verify_reader(&bad[..], &run.anchors, &one, &mut NoObserver).unwrap_err();
    let e2 = verify_reader(&bad[..], &run.anchors, &two, &mut NoObserver).unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
}

/// Packs the differential fuzzer (implementations/python/differential_fuzz.py) kept as
/// findings: our verdict must not depend on how the input is split into chunks, and for
/// the three pack-format bugs it found, must equal the Python verifier's (the spec's).
#[test]
fn differential_findings_verdicts_are_independent_of_chunking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../implementations/python/findings");
    let fixed = [
        "packs-bf8161504b2c3451",
        "packs-57cce161e9a9f49c",
        "packs-wrapper-f3994a3aaf598533",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(pack_hex) = v["pack"].as_str() else { continue };
        let pack = hex::decode(pack_hex).unwrap();
        let anchors: Vec<[u8; 32]> = v["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| hex::decode(a.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        let verdict = |chunk: usize| {
            let opts = VerifyOptions {
                chunk,
                threads: 1,
                ..VerifyOptions::default()
            };
            match verify_reader(&pack[..], &anchors, &opts, &mut NoObserver) {
                Ok(_) => "accept".to_string(),
                Err(StreamError::Pack(e)) => e.code_name().to_string(),
                Err(e) => format!("{e}"),
            }
        };
        let whole = verdict(1 << 24);
        for chunk in [1, 7, 512, 4096, 65_536] {
            assert_eq!(verdict(chunk), whole, "{} with {chunk}-byte reads", path.display());
        }
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if fixed.contains(&stem.as_str()) {
            let python = v["python"]["error"].as_str().unwrap_or("accept");
            assert_eq!(whole, python, "{stem}: Rust and the Python verifier disagree");
        }
        checked += 1;
    }
    assert!(checked >= 3, "findings not found in {}", dir.display());
}
