//! Panics on purpose, to check that the panic handler reports through semihosting and
//! exits QEMU with a non-zero status.
#![no_std]
#![no_main]

use helm_fw as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    let n = core::hint::black_box(3usize);
    let table = [1u8, 2, 3];
    // Out of bounds at run time: the panic handler prints `PANIC ...` and exits 1.
    let v = table[n];
    helm_fw::exit(v == 0)
}
