//! `Record::decode` on arbitrary bytes: never panics; whatever decodes has readable
//! fields and iterators, hashes to SHA-256 of the input, and re-encodes to exactly the
//! input (strict decoding admits one byte form per record, so one hash per record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use verify_core::{sha256, Record};

fuzz_target!(|data: &[u8]| {
    let first = Record::decode(data);
    if let Ok(rec) = &first {
        std::hint::black_box(helm_fuzz::touch(rec));
        assert_eq!(rec.hash, sha256(data));
        let again = helm_fuzz::reencode(rec);
        assert!(
            again == data,
            "decode accepted a second byte form of a record:\n input   {}\n canonical {}",
            hex(data),
            hex(&again)
        );
    }
    // Decoding is a pure function of the bytes.
    assert_eq!(Record::decode(data), first);
});

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
