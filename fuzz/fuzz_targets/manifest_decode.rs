//! `Manifest::decode` on arbitrary bytes: never panics; whatever decodes re-encodes to
//! exactly its payload (one byte form per manifest) and names its signer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pack_format::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok((m, env)) = Manifest::decode(data) {
        assert_eq!(m.payload(), env.payload, "a second byte form of a manifest payload decoded");
        assert_eq!(m.producer, env.kid);
    }
});
