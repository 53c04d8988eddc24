//! Verifies the valid example pack: prints `VERDICT verified records=28`, exits 0.
#![no_std]
#![no_main]

use helm_fw as _;

static PACK: &[u8] = include_bytes!("../../../../test-vectors/packs/valid/small-run.tar");

#[cortex_m_rt::entry]
fn main() -> ! {
    helm_fw::run(PACK)
}
