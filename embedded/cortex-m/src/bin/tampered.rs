//! Verifies a pack with one bit of the last record's signature flipped: prints
//! `VERDICT failed code=SIGNATURE_INVALID number=201 index=27`, exits 1.
#![no_std]
#![no_main]

use helm_fw as _;

static PACK: &[u8] = include_bytes!("../../../../test-vectors/packs/invalid/record-byte-flipped.tar");

#[cortex_m_rt::entry]
fn main() -> ! {
    helm_fw::run(PACK)
}
