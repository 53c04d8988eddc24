//! Two-pass verification (`verify_seekable`) reaches exactly the verdicts of one pass,
//! and gives the observer the same notifications.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "test"
)]

use std::io::{Cursor, Read, Seek, SeekFrom};

use helm_test_vectors::{sample_run, write_run, Run};
use pack_format::{verify_reader, verify_seekable, Observer, StreamError, TwoPass, VerifyOptions};
use verify_core::{Hash, Record};

/// Everything an observer hears, in order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Log(Vec<String>);

impl Observer for Log {
    fn record(&mut self, index: u64, r: &Record<'_>) {
        self.0.push(format!("record {index} {}", hex::encode(r.hash)));
    }
    fn withheld(&mut self, name: &Hash) {
        self.0.push(format!("withheld {}", hex::encode(name)));
    }
    fn blob(&mut self, name: &Hash, size: u64) {
        self.0.push(format!("blob {} {size}", hex::encode(name)));
    }
}

/// The verdict as (code, record index) and what the observer heard.
fn outcome(r: Result<(pack_format::transport::Wrapper, pack_format::PackSummary), StreamError>) -> String {
    match r {
        Ok((_, s)) => format!("accept {} {}", s.verified.records, hex::encode(s.verified.root)),
        Err(StreamError::Pack(e)) => format!(
            "reject {} {:?} {:?} {:?}",
            e.code_name(),
            e.record.as_ref().map(|r| r.index).or(e.index),
            e.subject.map(hex::encode),
            e.record.as_ref().and_then(|r| r.hash).map(hex::encode),
        ),
        Err(e) => format!("error {e}"),
    }
}

fn both(pack: &[u8], anchors: &[[u8; 32]], threads: usize) -> ((String, Log), (String, Log)) {
    let opts = |two_pass| VerifyOptions {
        threads,
        two_pass,
        ..VerifyOptions::default()
    };
    let mut one = Log::default();
    let a = outcome(verify_reader(pack, anchors, &opts(TwoPass::Never), &mut one));
    let mut two = Log::default();
    let b = outcome(verify_seekable(
        Cursor::new(pack),
        anchors,
        &opts(TwoPass::Always),
        &mut two,
    ));
    ((a, one), (b, two))
}

#[track_caller]
fn same(pack: &[u8], anchors: &[[u8; 32]]) -> String {
    let ((a, la), (b, lb)) = both(pack, anchors, 1);
    assert_eq!(a, b);
    assert_eq!(la, lb, "notifications differ for verdict {a}");
    a
}

#[test]
fn every_pack_vector_gets_the_same_verdict_and_notifications() {
    let dir = helm_test_vectors::vectors_dir();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("packs/index.json")).unwrap()).unwrap();
    for v in index["packs"].as_array().unwrap() {
        let pack = std::fs::read(dir.join("packs").join(v["file"].as_str().unwrap())).unwrap();
        let anchors: Vec<[u8; 32]> = v["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| hex::decode(a.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        same(&pack, &anchors);
    }
}

#[test]
fn every_single_bit_flip_gets_the_same_verdict() {
    let run = sample_run(1, 2, 100);
    let pack = write_run(&run, &[]).unwrap();
    for bit in 0..pack.len() * 8 {
        let mut bad = pack.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let ((a, _), (b, _)) = both(&bad, &run.anchors, 1);
        assert_eq!(a, b, "bit {bit}");
    }
}

/// A pack of `records` with the blobs of `run` they reference.
fn repack(run: &Run, records: Vec<Vec<u8>>) -> Vec<u8> {
    let referenced: std::collections::BTreeSet<Hash> = records
        .iter()
        .filter_map(|r| pack_format::blob_reference(&Record::decode(r).unwrap().body))
        .collect();
    let contents = pack_format::PackContents {
        records: records.iter().map(Vec::as_slice).collect(),
        blobs: run
            .blobs
            .iter()
            .filter(|(k, _)| referenced.contains(*k))
            .map(|(k, v)| (*k, v.as_slice()))
            .collect(),
        withhold: Default::default(),
    };
    pack_format::write_pack(&contents, run.kernel.public_key(), |m| run.kernel.sign(m)).unwrap()
}

#[test]
fn deferred_checks_fail_where_one_pass_fails() {
    let run = sample_run(3, 8, 20);
    // Valid, with some blobs withheld: both passes accept, with the same notifications.
    let secret: Vec<Hash> = run.blobs.keys().step_by(3).copied().collect();
    let withheld = write_run(&run, &secret).unwrap();
    assert!(same(&withheld, &run.anchors).starts_with("accept"));
    // Two threads as well.
    let ((a, la), (b, lb)) = both(&withheld, &run.anchors, 2);
    assert_eq!((a, la), (b, lb));

    // A blob dropped from the pack (references checked in the second pass).
    let e = helm_test_vectors::packs::entries(&write_run(&run, &[]).unwrap());
    let blob = e.iter().position(|(n, _)| n.starts_with("blobs/")).unwrap();
    let mut x = e.clone();
    x.remove(blob);
    let verdict = same(&helm_test_vectors::packs::build(&x), &run.anchors);
    assert!(
        verdict.contains("PACK_MANIFEST_MISMATCH") || verdict.contains("PACK_BLOB_MISSING"),
        "{verdict}"
    );

    // An EFFECT for other arguments (E4, checked in the second pass), a later record
    // broken too: the EFFECT's error comes first, as in one pass.
    let vectors = helm_test_vectors::load_record_vectors(&helm_test_vectors::vectors_dir()).unwrap();
    for id in ["rule5/effect-other-arguments", "rule5/effect-for-other-tool-arguments"] {
        let v = vectors.iter().find(|v| v.id == id).unwrap();
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
        let pack = pack_format::write_pack(&contents, kernel.public_key(), |m| kernel.sign(m)).unwrap();
        let verdict = same(&pack, &anchors);
        assert!(verdict.contains("EFFECT_MISMATCH"), "{id}: {verdict}");
    }
    // Records dropped, reordered: the first pass's verdict stands.
    let mut dropped = run.records.clone();
    dropped.remove(10);
    assert!(same(&repack(&run, dropped), &run.anchors).starts_with("reject"));
}

/// A source whose bytes change after the first pass read them.
struct Changing {
    data: Vec<u8>,
    pos: u64,
    reads: u32,
}

impl Read for Changing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut c = Cursor::new(&self.data);
        c.set_position(self.pos);
        let n = c.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Changing {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        if let SeekFrom::Start(0) = to {
            self.reads += 1;
            if self.reads == 1 {
                // Between the passes: one record byte changes.
                let last = self.data.len() - 1024 - 200;
                self.data[last] ^= 1;
            }
        }
        let mut c = Cursor::new(&self.data);
        c.set_position(self.pos);
        self.pos = c.seek(to)?;
        Ok(self.pos)
    }
}

#[test]
fn a_pack_that_changes_between_the_passes_is_an_io_error() {
    let run = sample_run(2, 5, 20);
    let pack = write_run(&run, &[]).unwrap();
    let opts = VerifyOptions {
        two_pass: TwoPass::Always,
        ..VerifyOptions::default()
    };
    let src = Changing {
        data: pack,
        pos: 0,
        reads: 0,
    };
    match verify_seekable(src, &run.anchors, &opts, &mut pack_format::NoObserver) {
        Err(StreamError::Io(e)) => assert!(e.to_string().contains("changed while being verified"), "{e}"),
        other => panic!("{:?}", other.map(|(_, s)| s.verified.records)),
    }
}
