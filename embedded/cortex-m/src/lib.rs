//! HELM EvidencePack verification on a Cortex-M4, with no allocator.
//!
//! [`run`] verifies a pack that the binary embeds with `include_bytes!`, feeding it to
//! `pack_format::PackReader` in 512-byte chunks as if it arrived over a UART or from
//! flash pages, with every table in a static buffer sized for that pack. It prints one
//! line through semihosting:
//!
//! ```text
//! VERDICT verified records=28
//! VERDICT failed code=SIGNATURE_INVALID number=201 index=27
//! ```
//!
//! then a `MEMORY` line (static data and the peak stack, measured by painting the stack
//! with a pattern at start and scanning for the lowest overwritten word at the end), and
//! exits QEMU with status 0 (verified) or 1 (failed, or a panic).
#![no_std]

use core::fmt::Write as _;

use cortex_m_semihosting::{debug, hio};
use pack_format::{BlobSlot, NoObserver, PackBuffers, PackError, PackReader};
use verify_core::{EscalationSlot, IntentSlot, KeySlot, RecordSlot, StreamSlot, Tables, Verifier};

/// The trust anchor: `root-1` of test-vectors/keys/trust-root.json,
/// "ed25519:94b104bbe45624075574bc7de23746c99e911eae36d7abdb0c0723785392f7ea".
/// A PUBLIC TEST KEY: real firmware takes its anchors from provisioning, never from a pack.
pub const ROOT_1: [u8; 32] = hex32("94b104bbe45624075574bc7de23746c99e911eae36d7abdb0c0723785392f7ea");

/// Chunk size: the pack is fed as it would arrive from a transport.
pub const CHUNK: usize = 512;

// Table sizes for test-vectors/packs/{valid/small-run,invalid/record-byte-flipped}.tar,
// from the manifest's counts as pack_format::capacity_for computes them: 28 records
// (7 INTENT, 3 TRUST_EVENT), 1 ESCALATE, 3 (signer, session) streams, 14 blobs; the
// largest record is 407 bytes. A pack that needs more fails with a capacity error
// (CAPACITY_EXCEEDED / PACK_CAPACITY_EXCEEDED), never with a silent pass.
const RECORDS: usize = 28;
/// Open-addressing index over record hashes: at least 8/7 of `RECORDS`.
const INDEX: usize = RECORDS * 8 / 7 + 1;
const INTENTS: usize = 7;
const ESCALATIONS: usize = 1;
/// One anchor, three keys published by TRUST_EVENTs, one spare.
const KEYS: usize = 1 + 3 + 1;
/// Open-addressing table of (signer, session) pairs: at least 8/7 of 3.
const STREAMS: usize = 3 * 8 / 7 + 1;
const BLOBS: usize = 14;
/// Holds a record that crosses a chunk boundary: at least the largest record.
const RECORD_BUFFER: usize = 512;

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

/// Decodes 64 hex digits at compile time (a bad constant is a build error).
const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    assert!(b.len() == 64, "a key is 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Semihosting standard output; output is best effort (a debugger may not be attached).
pub struct Out(Option<hio::HostStream>);

impl Out {
    pub fn open() -> Out {
        Out(hio::hstdout().ok())
    }
}

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match &mut self.0 {
            Some(h) => h.write_all(s.as_bytes()).map_err(|_| core::fmt::Error),
            None => Ok(()),
        }
    }
}

/// Ends the QEMU session: status 0 if `ok`, else 1.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    // Without a debugger the call returns; stop here.
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Verifies `pack`, prints the verdict and the memory measurements, and exits.
pub fn run(pack: &'static [u8]) -> ! {
    stack::paint();
    let mut out = Out::open();
    let ok = verify(pack, &mut out);
    let peak = stack::peak();
    let (data, bss) = stack::statics();
    let _ = writeln!(
        out,
        "MEMORY data={data} bss={bss} stack_peak={peak} total={}",
        data + bss + peak
    );
    exit(ok)
}

/// The part whose stack is measured: set-up, 512-byte feeds, finish, and the report.
///
/// Each step is a function of its own so that the temporaries of one (the tables'
/// initial values, the verifier before it moves into the reader) are gone before the
/// next runs; only the reader itself stays in this frame.
#[inline(never)]
fn verify(pack: &[u8], out: &mut Out) -> bool {
    // In an Option so that `finish` can take it by value in its own frame: moving it in
    // this frame would keep a second 7 KB copy here while the records are verified.
    let mut reader = Some(make_reader(out));
    if !feed_all(&mut reader, pack, out) {
        return false;
    }
    finish(&mut reader, out)
}

/// Takes the static buffers (each once) and sets up the verifier and the pack reader.
/// The reader is returned by value straight into the caller's frame; a set-up failure
/// (which the constants above rule out) ends the program.
#[inline(never)]
fn make_reader(out: &mut Out) -> PackReader<'static> {
    // Static buffers (in .bss); `singleton!` hands out each `&'static mut` once, without
    // `static mut` references in this crate.
    let (Some(records), Some(index), Some(intents), Some(escalations), Some(keys), Some(streams)) = (
        cortex_m::singleton!(: [RecordSlot; RECORDS] = [RecordSlot::default(); RECORDS]),
        cortex_m::singleton!(: [u32; INDEX] = [0; INDEX]),
        cortex_m::singleton!(: [IntentSlot; INTENTS] = [IntentSlot::default(); INTENTS]),
        cortex_m::singleton!(: [EscalationSlot; ESCALATIONS] = [EscalationSlot::default(); ESCALATIONS]),
        cortex_m::singleton!(: [KeySlot; KEYS] = [KeySlot::default(); KEYS]),
        cortex_m::singleton!(: [StreamSlot; STREAMS] = [StreamSlot::default(); STREAMS]),
    ) else {
        let _ = writeln!(out, "VERDICT error the static tables were already taken");
        exit(false);
    };
    let (Some(record), Some(blobs), Some(digests)) = (
        cortex_m::singleton!(: [u8; RECORD_BUFFER] = [0; RECORD_BUFFER]),
        cortex_m::singleton!(: [BlobSlot; BLOBS] = [BlobSlot::default(); BLOBS]),
        cortex_m::singleton!(: [[u8; 32]; INTENTS] = [[0; 32]; INTENTS]),
    ) else {
        let _ = writeln!(out, "VERDICT error the static buffers were already taken");
        exit(false);
    };
    let tables = Tables {
        records,
        index,
        intents,
        digests,
        escalations,
        keys,
        streams,
    };
    match Verifier::new(&[ROOT_1], tables) {
        Ok(verifier) => PackReader::new(verifier, PackBuffers { record, blobs }),
        Err(e) => {
            let _ = writeln!(out, "VERDICT error verifier setup {e:?}");
            exit(false)
        }
    }
}

/// Feeds the pack in `CHUNK`-byte pieces (a function of its own, so that the reader is
/// passed by reference and its state is not copied into this frame).
#[inline(never)]
fn feed_all(reader: &mut Option<PackReader<'_>>, pack: &[u8], out: &mut Out) -> bool {
    let Some(reader) = reader else { return false };
    for chunk in pack.chunks(CHUNK) {
        if let Err(e) = reader.feed(chunk, &mut NoObserver) {
            report_failure(out, &e);
            return false;
        }
    }
    true
}

#[inline(never)]
fn finish(reader: &mut Option<PackReader<'_>>, out: &mut Out) -> bool {
    let Some(reader) = reader.take() else { return false };
    match reader.finish() {
        Ok(summary) => {
            let _ = writeln!(out, "VERDICT verified records={}", summary.verified.records);
            true
        }
        Err(e) => {
            report_failure(out, &e);
            false
        }
    }
}

fn report_failure(out: &mut Out, e: &PackError) {
    // The record index for record failures; for blob reference errors, the record that
    // references the blob; else none.
    let index = e.record.as_ref().map(|r| r.index).or(e.index);
    let _ = write!(
        out,
        "VERDICT failed code={} number={} index=",
        e.code_name(),
        e.code_number()
    );
    let _ = match index {
        Some(i) => writeln!(out, "{i}"),
        None => writeln!(out, "-"),
    };
}

/// Stack measurement by painting: the free RAM between the end of the statics and the
/// stack pointer is filled with a pattern at start; at the end the lowest word that no
/// longer holds it marks the deepest the stack went.
mod stack {
    const PATTERN: u32 = 0x5A17_C0DE;
    /// Not painted just below the stack pointer at the time of painting.
    const MARGIN: usize = 64;

    extern "C" {
        // Symbols of cortex-m-rt's link.x.
        static __sdata: u32;
        static __edata: u32;
        static __sbss: u32;
        static __ebss: u32;
        /// First free byte after .data, .bss and .uninit.
        static __sheap: u32;
        /// Initial stack pointer: the top of RAM.
        static _stack_start: u32;
    }

    fn addr(p: *const u32) -> usize {
        p as usize
    }

    /// Bytes of .data and .bss.
    pub(crate) fn statics() -> (usize, usize) {
        // Only the addresses of the linker symbols are taken; nothing is read.
        let (sd, ed, sb, eb) = (
            addr(&raw const __sdata),
            addr(&raw const __edata),
            addr(&raw const __sbss),
            addr(&raw const __ebss),
        );
        (ed - sd, eb - sb)
    }

    fn bounds() -> (usize, usize) {
        (addr(&raw const __sheap), addr(&raw const _stack_start))
    }

    #[inline(never)]
    pub(crate) fn paint() {
        let (low, _) = bounds();
        let high = (cortex_m::register::msp::read() as usize).saturating_sub(MARGIN) & !3;
        let mut p = low;
        while p < high {
            // SAFETY: `p` is word-aligned and in [end of statics, stack pointer - MARGIN):
            // RAM that no Rust object occupies (there is no heap, the stack lies above,
            // and no interrupt is enabled that could push a frame there).
            unsafe { (p as *mut u32).write_volatile(PATTERN) };
            p += 4;
        }
    }

    /// Deepest stack use since `paint`, in bytes.
    #[inline(never)]
    pub(crate) fn peak() -> usize {
        let (low, top) = bounds();
        let mut p = low;
        // SAFETY: as in `paint`; reads stop at the first word that changed, which is at
        // or below the current stack pointer.
        while p < top && unsafe { (p as *const u32).read_volatile() } == PATTERN {
            p += 4;
        }
        top - p
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = Out::open();
    let _ = writeln!(out, "PANIC {info}");
    exit(false)
}
