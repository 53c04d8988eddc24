//! A stream of fuzzer-framed records pushed into a `Verifier` with small tables.
//!
//! Input format:
//! - byte 0: number of records to push (at most 255);
//! - byte 1: record-table size: bit 7 clear = 64 records, set = 1 + (bits 0-5);
//!   bit 6 set = the next 32 input bytes are an extra trust anchor (placed before the
//!   fixture's anchor; exercises anchor admission on arbitrary points);
//! - byte 2: other tables: 0 = sized for the record count; otherwise bits 0-1 intents,
//!   2-3 escalations, 4-5 keys, 6-7 streams, each choosing from a few small sizes;
//! - then per record a big-endian u16 `L`: if `L >= 0xFF00`, record `(L & 0xFF) % N`
//!   of the fixture's pool (N = valid chain + independent extras); otherwise the next
//!   `min(L, remaining)` input bytes.
//!
//! The verifier must never panic, must keep its contract (see `helm_fuzz::run_stream`),
//! and a full table must be a `CAPACITY_EXCEEDED` error (checked deterministically once
//! at start-up, and by `run_stream`'s bound on accepted records on every input).
#![no_main]

use helm_fuzz::{fixture, run_stream};
use libfuzzer_sys::fuzz_target;
use verify_core::Capacity;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&[n, capb, subb], mut rest)) = data.split_first_chunk::<3>() else {
        return;
    };

    let mut anchors: Vec<[u8; 32]> = Vec::new();
    if capb & 0x40 != 0 {
        let Some((a, r)) = rest.split_first_chunk::<32>() else {
            return;
        };
        anchors.push(*a);
        rest = r;
    }
    anchors.push(f.anchor);

    let records = if capb & 0x80 == 0 {
        64
    } else {
        1 + usize::from(capb & 0x3f)
    };
    let cap = if subb == 0 {
        Capacity::for_records(records)
    } else {
        let pick = |shift: u8, sizes: [usize; 4]| sizes[usize::from((subb >> shift) & 3)];
        Capacity {
            records,
            intents: pick(0, [0, 1, 2, records]),
            escalations: pick(2, [0, 1, 2, records]),
            keys: pick(4, [1, 2, 4, 256]),
            streams: pick(6, [0, 1, 3, records]),
        }
    };

    let mut stream: Vec<&[u8]> = Vec::with_capacity(usize::from(n));
    while stream.len() < usize::from(n) {
        let Some((len, r)) = rest.split_first_chunk::<2>() else {
            break;
        };
        rest = r;
        let len = usize::from(u16::from_be_bytes(*len));
        if len >= 0xFF00 {
            let k = (len & 0xFF) % f.pool_len();
            stream.push(f.pool().nth(k).map(Vec::as_slice).unwrap_or(&[]));
        } else {
            let (chunk, r) = rest.split_at(len.min(rest.len()));
            stream.push(chunk);
            rest = r;
        }
    }

    let _ = run_stream(&anchors, cap, &stream);
});
