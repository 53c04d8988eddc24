//! The streaming pack reader (tar, manifest, withheld list, blobs, segments, records)
//! on arbitrary bytes, and on mutations of a valid pack.
//!
//! Input: byte 0 chooses the mode (bit 0) and the chunk size (the rest); then either the
//! pack itself (raw mode) or mutation ops applied to a valid pack built from the fixture
//! chain. Never panics; a mutated pack that differs from the valid one never verifies.
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
    let chunk = 1 + usize::from(mode >> 1) * 37;
    if mode & 1 == 0 {
        let _ = verify(rest, chunk);
        return;
    }
    let valid = valid_pack();
    let mut pack = valid.clone();
    helm_fuzz::apply_ops(&mut pack, rest);
    let result = verify(&pack, chunk);
    if pack != *valid {
        assert!(result.is_err(), "a changed pack verified");
    }
});
