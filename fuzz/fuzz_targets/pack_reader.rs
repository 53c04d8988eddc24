//! The streaming pack reader (tar, manifest, withheld list, blobs, segments, records)
//! on arbitrary bytes, and on mutations of a valid pack.
//!
//! Input: byte 0 chooses the mode (bit 0: mutations of a valid pack; bit 1: of the
//! partial pack instead of the full one) and the chunk size (the rest); then either the
//! pack itself (raw mode) or mutation ops applied to a valid pack built from the fixture
//! chain: the full pack, or a partial pack of the records before its CHECKPOINT (inclusion
//! proofs, a consistency proof, positions). Never panics; a mutated pack that differs
//! from the valid one never verifies.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pack_format::{BlobSlot, NoObserver, PackBuffers, PackContents, PackReader};
use verify_core::{Capacity, OwnedTables, Verifier};

fn valid_pack() -> &'static Vec<u8> {
    static PACK: OnceLock<Vec<u8>> = OnceLock::new();
    PACK.get_or_init(|| {
        let fx = helm_fuzz::fixture();
        let kernel = fx.signer(helm_fuzz::Who::Kernel);
        let contents = PackContents { records: fx.chain.iter().map(Vec::as_slice).collect(), ..Default::default() };
        let pack = pack_format::write_pack(&contents, kernel.public_key(), |m| kernel.sign(m)).expect("fixture pack");
        assert!(verify(&pack, 512).is_ok(), "the fixture pack must verify");
        pack
    })
}

/// A partial pack of the fixture chain: the records up to the one before its last
/// CHECKPOINT, selected by time, proven against that CHECKPOINT.
fn partial_pack() -> Option<&'static Vec<u8>> {
    static PACK: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    PACK.get_or_init(|| {
        let fx = helm_fuzz::fixture();
        let kernel = fx.signer(helm_fuzz::Who::Kernel);
        let decoded: Vec<_> = fx.chain.iter().map(|r| verify_core::Record::decode(r).expect("fixture")).collect();
        let c = decoded.iter().rposition(|r| r.kind == verify_core::Kind::Checkpoint)?;
        let until = decoded.get(c.checked_sub(1)?)?.time;
        let sel = verify_core::Selection { since: Some(0), until: Some(until), ..Default::default() };
        let p = pack_format::write_partial_pack(
            &fx.chain,
            |_| None::<Vec<u8>>,
            &sel,
            &Default::default(),
            kernel.public_key(),
            |m| kernel.sign(m),
        )
        .ok()?;
        assert!(verify(&p.bytes, 512).is_ok(), "the fixture's partial pack must verify");
        Some(p.bytes)
    })
    .as_ref()
}

fn verify(pack: &[u8], chunk: usize) -> Result<(), pack_format::PackError> {
    let fx = helm_fuzz::fixture();
    let mut tables = OwnedTables::new(Capacity { records: 64, intents: 16, escalations: 8, keys: 8, streams: 32 });
    let verifier = Verifier::new(&[fx.anchor], tables.tables()).expect("anchor");
    let mut record = vec![0u8; 4096];
    let mut blobs = vec![BlobSlot::default(); 32];
    let mut reader = PackReader::new(verifier, PackBuffers { record: &mut record, blobs: &mut blobs });
    for piece in pack.chunks(chunk.max(1)) {
        reader.feed(piece, &mut NoObserver)?;
    }
    reader.finish().map(|_| ())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let chunk = 1 + usize::from(mode >> 2) * 37;
    if mode & 1 == 0 {
        let _ = verify(rest, chunk);
        return;
    }
    let valid = if mode & 2 == 0 {
        valid_pack()
    } else {
        match partial_pack() {
            Some(p) => p,
            None => return,
        }
    };
    let mut pack = valid.clone();
    helm_fuzz::apply_ops(&mut pack, rest);
    let result = verify(&pack, chunk);
    if pack != *valid {
        assert!(result.is_err(), "a changed pack verified");
    }
});
