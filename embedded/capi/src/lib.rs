//! C ABI for HELM EvidencePack verification.
//!
//! A C program (or any language with a C FFI) verifies a pack as it streams by, in
//! memory it owns: one block, sized by [`helm_verifier_size`], holds the verifier's
//! state, its tables and its buffers. Nothing here allocates, and no panic crosses the
//! boundary: the code is written without panicking operations (checked arithmetic, no
//! indexing, no `unwrap`; the lints deny them), and with the `std` feature every entry
//! point is also wrapped in `catch_unwind`, so that a bug would return [`HELM_E_PANIC`]
//! instead of unwinding into C.
//!
//! ```c
//! helm_capacity cap;
//! helm_capacity_from_manifest(prefix, prefix_len, 1, &cap);  /* or fixed numbers */
//! size_t size = helm_verifier_size(&cap);                      /* check it against a budget */
//! void *mem = malloc(size);                                    /* any alignment */
//! helm_verifier *v;
//! if (helm_verifier_init(mem, size, anchor, 1, &cap, &v) != HELM_OK) { ... }
//! while ((n = read(fd, buf, sizeof buf)) > 0)
//!     if (helm_verifier_feed(v, buf, n) != HELM_OK) break;    /* the verdict is already known */
//! helm_result r;
//! int32_t code = helm_verifier_finish(v, &r);                  /* 0: verified */
//! printf("%s\n", helm_error_name(code));
//! ```
//!
//! Return values: `0` ([`HELM_OK`]); a positive number is a verification failure, the
//! stable code of spec/errors.md (record rules, 100–999) or spec/evidencepack.md §7 (the
//! pack container, 1000–1999), the record's own code for a record failure; a negative
//! number is a misuse of the API (`HELM_E_*`). [`helm_error_name`] names all of them.
//!
//! The pack is the uncompressed tar: `.tar.zst` and `.tar.gz` transport wrappers are
//! for the caller to undo (their bounded decoders are in pack-format's `std` feature).
//!
//! Not thread-safe per handle: one verifier is used by one thread at a time. Any number
//! of verifiers may run at once in separate memory blocks.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic,
        clippy::undocumented_unsafe_blocks,
        reason = "unit tests fail loudly"
    )
)]

use core::alloc::Layout;
use core::ffi::{c_char, c_void};

use pack_format::tar::{self, BLOCK};
use pack_format::{BlobSlot, Manifest, NoObserver, PackBuffers, PackError, PackReader, PackSummary, MAX_MANIFEST_SIZE};
use verify_core::{
    EscalationSlot, IntentSlot, KeySlot, RecordSlot, SetupError, StreamSlot, Tables, Verifier, MAX_RECORD_SIZE,
};

/// Success: the call did what it was asked (for `helm_verifier_finish`: the pack verified).
pub const HELM_OK: i32 = 0;
/// A required pointer is NULL, or a length exceeds `PTRDIFF_MAX`.
pub const HELM_E_ARGUMENT: i32 = -1;
/// The memory block is smaller than `helm_verifier_size(capacity)`.
pub const HELM_E_MEMORY: i32 = -2;
/// The capacity cannot be used: sizes overflow, or fewer key slots than anchors.
pub const HELM_E_CAPACITY: i32 = -3;
/// A trust anchor is not a canonical Ed25519 key of prime order.
pub const HELM_E_ANCHOR: i32 = -4;
/// The handle is not an initialised verifier, was already finished, or a call on it
/// panicked (which is a bug; see `HELM_E_PANIC`).
pub const HELM_E_STATE: i32 = -5;
/// A panic inside the library was caught (`std` builds). A bug: please report it. The
/// handle is unusable afterwards.
pub const HELM_E_PANIC: i32 = -6;
/// `helm_capacity_from_manifest`: the bytes do not start with a readable manifest entry.
/// The capacity is still filled in (with minimal tables): a verifier made with it reports
/// what is wrong with the pack.
pub const HELM_E_NO_MANIFEST: i32 = -7;

/// Bytes of pack to pass to `helm_capacity_from_manifest`: the first tar header and the
/// largest manifest (fewer is fine if the pack is shorter).
pub const HELM_MANIFEST_PREFIX: usize = 1536;
const _: () = assert!(HELM_MANIFEST_PREFIX == BLOCK + MAX_MANIFEST_SIZE);

/// Largest record the format allows: a `record_buffer` of this size takes any pack.
pub const HELM_MAX_RECORD_SIZE: usize = 65_536;
const _: () = assert!(HELM_MAX_RECORD_SIZE == MAX_RECORD_SIZE);

/// How large the verifier's tables are. Each count is a maximum for the pack: a pack that
/// needs more fails with `CAPACITY_EXCEEDED` (900) or `PACK_CAPACITY_EXCEEDED` (1900),
/// never with a silent pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelmCapacity {
    /// Records in the pack (at least 1).
    pub records: usize,
    /// INTENT records.
    pub intents: usize,
    /// DECISION records with verdict ESCALATE.
    pub escalations: usize,
    /// Trust anchors plus keys published by TRUST_EVENT records.
    pub keys: usize,
    /// Distinct (signer key, session) pairs.
    pub streams: usize,
    /// Blobs, present and withheld.
    pub blobs: usize,
    /// Bytes for a record that arrives split across chunks: at least the largest record
    /// (`HELM_MAX_RECORD_SIZE` takes any pack).
    pub record_buffer: usize,
}

/// The outcome of `helm_verifier_finish`. Counts and hashes are set when `code` is 0
/// (and are zero otherwise); the failure fields when it is not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelmResult {
    /// 0 if the pack verified; else the most specific code (the record's own code for a
    /// record failure, else the pack code), as returned by `helm_verifier_finish`.
    pub code: i32,
    /// 0 if verified; else the container-level code (1200 `PACK_RECORD_INVALID` for a
    /// record failure).
    pub pack_code: i32,
    /// The offending record's 0-based index (for blob reference errors: the record that
    /// references the blob), or -1.
    pub record_index: i64,
    /// The 0-based tar entry where the failure was found, or -1.
    pub entry_index: i64,
    /// Byte offset in the pack where the failure was detected; the pack's size if it
    /// verified.
    pub offset: u64,
    /// Records in the pack.
    pub records: u64,
    /// Records per kind: INTENT, DECISION, APPROVAL, EFFECT, VIOLATION, TRUST_EVENT,
    /// POLICY, ATTESTATION, CHECKPOINT.
    pub per_kind: [u64; 9],
    /// ESCALATE decisions, and those neither approved nor denied by the end.
    pub escalations: u64,
    /// See `escalations`.
    pub open_escalations: u64,
    /// Distinct (signer, session) pairs.
    pub streams: u64,
    /// CHECKPOINT records, and those with valid witness cosignatures.
    pub checkpoints: u64,
    /// See `checkpoints`.
    pub witnessed_checkpoints: u64,
    /// Keys published by TRUST_EVENTs, and those rotated away or revoked.
    pub keys_published: u64,
    /// See `keys_published`.
    pub keys_retired: u64,
    /// Blobs present and withheld.
    pub blobs: u64,
    /// See `blobs`.
    pub withheld: u64,
    /// Earliest and latest kernel time of any record, milliseconds since the epoch.
    pub time_first_ms: u64,
    /// See `time_first_ms`.
    pub time_last_ms: u64,
    /// RFC 9162 root over the record hashes, in pack order.
    pub records_root: [u8; 32],
    /// Hash of the last record.
    pub head: [u8; 32],
    /// The manifest's signing key (an active kernel key).
    pub producer: [u8; 32],
}

impl HelmResult {
    const fn zero() -> HelmResult {
        HelmResult {
            code: 0,
            pack_code: 0,
            record_index: -1,
            entry_index: -1,
            offset: 0,
            records: 0,
            per_kind: [0; 9],
            escalations: 0,
            open_escalations: 0,
            streams: 0,
            checkpoints: 0,
            witnessed_checkpoints: 0,
            keys_published: 0,
            keys_retired: 0,
            blobs: 0,
            withheld: 0,
            time_first_ms: 0,
            time_last_ms: 0,
            records_root: [0; 32],
            head: [0; 32],
            producer: [0; 32],
        }
    }

    fn verified(s: &PackSummary) -> HelmResult {
        let v = &s.verified;
        HelmResult {
            offset: s.bytes,
            records: v.records,
            per_kind: v.per_kind,
            escalations: v.escalations,
            open_escalations: v.open_escalations,
            streams: v.streams,
            checkpoints: v.checkpoints,
            witnessed_checkpoints: v.witnessed_checkpoints,
            keys_published: v.keys_published,
            keys_retired: v.keys_retired,
            blobs: s.manifest.blobs,
            withheld: s.manifest.withheld,
            time_first_ms: v.time_span.0,
            time_last_ms: v.time_span.1,
            records_root: v.root,
            head: v.head,
            producer: s.manifest.producer,
            ..HelmResult::zero()
        }
    }

    fn failed(e: &PackError) -> HelmResult {
        let index = e.record.as_ref().map(|r| r.index).or(e.index);
        HelmResult {
            code: i32::from(e.code_number()),
            pack_code: i32::from(e.code.number()),
            record_index: index.and_then(|i| i64::try_from(i).ok()).unwrap_or(-1),
            entry_index: e.entry.map_or(-1, i64::from),
            offset: e.offset,
            ..HelmResult::zero()
        }
    }
}

/// `HelmVerifier::state` values.
const READY: u64 = 0x4845_4c4d_5245_4459; // "HELMREDY"
const BUSY: u64 = 0x4845_4c4d_4255_5359; // "HELMBUSY": inside feed; stays so if it panicked
const SPENT: u64 = 0x4845_4c4d_444f_4e45; // "HELMDONE": finished

/// A verifier living at the start of the caller's block (opaque to C). The reader's
/// tables and buffers are the rest of the same block; the `'static` lifetimes are the
/// caller's promise (see `helm_verifier_init`) that the block outlives the handle and is
/// neither moved nor touched while the handle is in use.
#[derive(Debug)]
pub struct HelmVerifier {
    state: u64,
    reader: Option<PackReader<'static>>,
}

/// Where each table goes in the block, relative to its (aligned) start.
#[derive(Clone, Copy, Debug)]
struct Plan {
    layout: Layout,
    index_len: usize,
    streams_len: usize,
    records: usize,
    index: usize,
    intents: usize,
    digests: usize,
    escalations: usize,
    keys: usize,
    streams: usize,
    blobs: usize,
    record_buffer: usize,
}

/// An open-addressing table's length for `n` entries: 8/7 of `n`, plus one (as
/// verify-core's own heap tables).
fn spread(n: usize) -> Option<usize> {
    n.checked_mul(8)?.checked_div(7)?.checked_add(1)
}

fn plan(c: &HelmCapacity) -> Option<Plan> {
    if c.records == 0 {
        return None;
    }
    let index_len = spread(c.records)?;
    let streams_len = spread(c.streams)?;
    let layout = Layout::new::<HelmVerifier>();
    let (layout, records) = layout.extend(Layout::array::<RecordSlot>(c.records).ok()?).ok()?;
    let (layout, index) = layout.extend(Layout::array::<u32>(index_len).ok()?).ok()?;
    let (layout, intents) = layout.extend(Layout::array::<IntentSlot>(c.intents).ok()?).ok()?;
    let (layout, digests) = layout.extend(Layout::array::<[u8; 32]>(c.intents).ok()?).ok()?;
    let (layout, escalations) = layout
        .extend(Layout::array::<EscalationSlot>(c.escalations).ok()?)
        .ok()?;
    let (layout, keys) = layout.extend(Layout::array::<KeySlot>(c.keys).ok()?).ok()?;
    let (layout, streams) = layout.extend(Layout::array::<StreamSlot>(streams_len).ok()?).ok()?;
    let (layout, blobs) = layout.extend(Layout::array::<BlobSlot>(c.blobs).ok()?).ok()?;
    let (layout, record_buffer) = layout.extend(Layout::array::<u8>(c.record_buffer).ok()?).ok()?;
    // Room to align any caller pointer: the block may start anywhere.
    let padded = layout.size().checked_add(layout.align().checked_sub(1)?)?;
    if padded > isize::MAX as usize {
        return None;
    }
    Some(Plan {
        layout: layout.pad_to_align(),
        index_len,
        streams_len,
        records,
        index,
        intents,
        digests,
        escalations,
        keys,
        streams,
        blobs,
        record_buffer,
    })
}

#[cfg(feature = "std")]
fn guard(f: impl FnOnce() -> i32) -> i32 {
    // AssertUnwindSafe: after a panic the handle is left in state BUSY and refused by
    // every later call, so no broken state is observed.
    std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)).unwrap_or(HELM_E_PANIC)
}

#[cfg(not(feature = "std"))]
fn guard(f: impl FnOnce() -> i32) -> i32 {
    f()
}

/// Bytes of memory a verifier with `capacity` needs, including slack to align any
/// pointer; 0 if `capacity` is NULL or cannot be used (no record slot, or sizes that
/// overflow). The counts may come from an untrusted manifest: compare the result against
/// a memory budget before allocating.
///
/// # Safety
/// `capacity` is NULL or points to a valid `helm_capacity`.
#[no_mangle]
pub unsafe extern "C" fn helm_verifier_size(capacity: *const HelmCapacity) -> usize {
    // SAFETY: the caller passes NULL or a valid pointer; `as_ref` handles NULL.
    let Some(c) = (unsafe { capacity.as_ref() }) else {
        return 0;
    };
    plan(c).map_or(0, |p| {
        p.layout.size().saturating_add(p.layout.align().saturating_sub(1))
    })
}

/// Table sizes for a pack, read from its first bytes (the first tar header and the
/// manifest: `HELM_MANIFEST_PREFIX` bytes, or the whole pack if shorter), as `helm-airgap`
/// sizes them: exactly the manifest's counts, `n_anchors` plus the TRUST_EVENT count plus
/// one key slots, and a `HELM_MAX_RECORD_SIZE` record buffer.
///
/// Returns `HELM_OK`, or `HELM_E_NO_MANIFEST` when the bytes do not start with a readable
/// manifest entry (then `*out` holds minimal tables, enough for the verifier to report
/// the defect), or `HELM_E_ARGUMENT`. The manifest is not authenticated yet: its counts
/// only size tables, and a pack that lies about them fails verification.
///
/// # Safety
/// `prefix` points to `len` readable bytes (or is NULL with `len` 0); `out` points to a
/// writable `helm_capacity`.
#[no_mangle]
pub unsafe extern "C" fn helm_capacity_from_manifest(
    prefix: *const u8,
    len: usize,
    n_anchors: usize,
    out: *mut HelmCapacity,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return HELM_E_ARGUMENT;
        }
        // SAFETY: the caller passes `len` readable bytes at `prefix` (checked by `bytes`
        // for NULL and size).
        let Some(bytes) = (unsafe { bytes(prefix, len) }) else {
            return HELM_E_ARGUMENT;
        };
        let (capacity, status) = match read_manifest(bytes) {
            Some(m) => (capacity_for(&m, n_anchors), HELM_OK),
            None => (
                HelmCapacity {
                    records: 1,
                    keys: n_anchors.max(1),
                    streams: 1,
                    record_buffer: MAX_RECORD_SIZE,
                    ..HelmCapacity::default()
                },
                HELM_E_NO_MANIFEST,
            ),
        };
        // SAFETY: `out` is non-NULL and, by the caller's contract, valid for a write.
        unsafe { out.write(capacity) };
        status
    })
}

fn read_manifest(bytes: &[u8]) -> Option<Manifest> {
    let header = <&[u8; BLOCK]>::try_from(bytes.get(..BLOCK)?).ok()?;
    let h = tar::decode(header).ok()?;
    let size = usize::try_from(h.size).ok()?;
    if h.name() != "manifest.cbor" || size > MAX_MANIFEST_SIZE {
        return None;
    }
    let body = bytes.get(BLOCK..BLOCK.checked_add(size)?)?;
    Manifest::decode(body).ok().map(|(m, _)| m)
}

fn capacity_for(m: &Manifest, n_anchors: usize) -> HelmCapacity {
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let [intents, _, _, _, _, trust_events, ..] = m.per_kind;
    HelmCapacity {
        records: count(m.records).max(1),
        intents: count(intents),
        escalations: count(m.escalations),
        keys: n_anchors.saturating_add(count(trust_events)).saturating_add(1),
        streams: count(m.streams).max(1),
        blobs: count(m.blobs.saturating_add(m.withheld)),
        record_buffer: MAX_RECORD_SIZE,
    }
}

/// A byte slice from a C pointer and length; `None` for NULL with a non-zero length or a
/// length over `isize::MAX`.
///
/// # Safety
/// A non-NULL `p` points to `len` readable bytes that stay unchanged during the call.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: non-NULL, `len` bytes readable (caller), `len` <= isize::MAX, u8 has
    // alignment 1.
    Some(unsafe { core::slice::from_raw_parts(p, len) })
}

/// Fills `len` values of `T` at `at` with `T::default()` and returns them as a slice.
///
/// # Safety
/// `at` is aligned for `T` and valid for writes of `len` values, inside the caller's
/// block, disjoint from every other slice made from it, and the block outlives the
/// returned reference (the `helm_verifier_init` contract).
unsafe fn table<T: Default + Copy>(at: *mut u8, len: usize) -> &'static mut [T] {
    let p = at.cast::<T>();
    let mut i = 0usize;
    while i < len {
        // SAFETY: `i < len`, so `p.add(i)` is inside the region the caller vouches for;
        // `write` does not read the (uninitialised) old value.
        unsafe { p.add(i).write(T::default()) };
        i = i.wrapping_add(1);
    }
    // SAFETY: all `len` values were just initialised; the region is aligned, disjoint
    // from the other tables and outlives the handle (caller's contract).
    unsafe { core::slice::from_raw_parts_mut(p, len) }
}

/// Creates a verifier in the caller's memory block `mem` of `len` bytes, trusting the
/// `n_anchors` Ed25519 keys at `anchors` (32 bytes each, back to back; they are copied),
/// with tables of `capacity`. On success `*out` is the handle (inside `mem`; not
/// necessarily equal to it, since the block is aligned internally).
///
/// Memory: `len` must be at least `helm_verifier_size(capacity)`. `mem` may have any
/// alignment (the size includes the slack). The block belongs to the verifier until
/// `helm_verifier_finish` returns: do not move, copy, free or write it before. After that
/// it may be freed or reused for a new `helm_verifier_init`. A block can be reused
/// without clearing.
///
/// Returns `HELM_OK`, `HELM_E_ARGUMENT`, `HELM_E_CAPACITY`, `HELM_E_MEMORY` or
/// `HELM_E_ANCHOR`.
///
/// # Safety
/// `mem` is valid for reads and writes of `len` bytes and not used by anything else until
/// the verifier is finished; `anchors` points to `32 * n_anchors` readable bytes;
/// `capacity` to a valid `helm_capacity`; `out` to a writable `helm_verifier *`.
#[no_mangle]
pub unsafe extern "C" fn helm_verifier_init(
    mem: *mut c_void,
    len: usize,
    anchors: *const u8,
    n_anchors: usize,
    capacity: *const HelmCapacity,
    out: *mut *mut HelmVerifier,
) -> i32 {
    guard(|| {
        if mem.is_null() || out.is_null() {
            return HELM_E_ARGUMENT;
        }
        // SAFETY: NULL or valid, by the caller's contract.
        let Some(capacity) = (unsafe { capacity.as_ref() }) else {
            return HELM_E_ARGUMENT;
        };
        let anchor_keys: &[[u8; 32]] = if n_anchors == 0 {
            &[]
        } else if anchors.is_null() || n_anchors > isize::MAX as usize / 32 {
            return HELM_E_ARGUMENT;
        } else {
            // SAFETY: non-NULL, `32 * n_anchors` readable bytes (caller), at most
            // isize::MAX bytes; `[u8; 32]` has alignment 1.
            unsafe { core::slice::from_raw_parts(anchors.cast::<[u8; 32]>(), n_anchors) }
        };
        let Some(plan) = plan(capacity) else {
            return HELM_E_CAPACITY;
        };
        let base = mem.cast::<u8>();
        let skip = base.align_offset(plan.layout.align());
        match skip.checked_add(plan.layout.size()) {
            Some(need) if need <= len => {}
            _ => return HELM_E_MEMORY,
        }
        // SAFETY: `skip + layout.size() <= len`, so the block start and every offset of
        // the plan (all below `layout.size()`) stay inside the caller's `len` bytes.
        let start = unsafe { base.add(skip) };
        // SAFETY: (each call) the plan's offsets come from `Layout::extend`, so each table
        // is aligned for its type and the tables do not overlap each other or the
        // verifier header at offset 0; all lie inside the block (checked above), which the
        // caller lends until finish.
        let tables = unsafe {
            Tables {
                records: table(start.add(plan.records), capacity.records),
                index: table(start.add(plan.index), plan.index_len),
                intents: table(start.add(plan.intents), capacity.intents),
                digests: table(start.add(plan.digests), capacity.intents),
                escalations: table(start.add(plan.escalations), capacity.escalations),
                keys: table(start.add(plan.keys), capacity.keys),
                streams: table(start.add(plan.streams), plan.streams_len),
            }
        };
        // SAFETY: as above, for the blob table and the record buffer.
        let buffers = unsafe {
            PackBuffers {
                blobs: table(start.add(plan.blobs), capacity.blobs),
                record: table(start.add(plan.record_buffer), capacity.record_buffer),
            }
        };
        let verifier = match Verifier::new(anchor_keys, tables) {
            Ok(v) => v,
            Err(SetupError::AnchorInvalid(_)) => return HELM_E_ANCHOR,
            Err(SetupError::TablesTooSmall) => return HELM_E_CAPACITY,
        };
        let handle = start.cast::<HelmVerifier>();
        // SAFETY: offset 0 of the aligned block is reserved for the header (the plan's
        // first field) and aligned for it; `write` does not drop the old bytes there, and
        // `out` is non-NULL and writable (caller).
        unsafe {
            handle.write(HelmVerifier {
                state: READY,
                reader: Some(PackReader::new(verifier, buffers)),
            });
            out.write(handle);
        }
        HELM_OK
    })
}

/// Feeds the next `len` bytes of the (uncompressed) pack; chunks may have any size and
/// split the pack anywhere.
///
/// Returns `HELM_OK` while the pack is fine so far; a positive code as soon as it is known
/// to be invalid (the same code `helm_verifier_finish` will report; later feeds return it
/// again and need not be made); `HELM_E_ARGUMENT` or `HELM_E_STATE`.
///
/// # Safety
/// `v` is a handle from `helm_verifier_init` not yet finished (or NULL); `chunk` points to
/// `len` readable bytes (or is NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn helm_verifier_feed(v: *mut HelmVerifier, chunk: *const u8, len: usize) -> i32 {
    guard(|| {
        // SAFETY: NULL or a live handle (caller's contract).
        let Some(v) = (unsafe { v.as_mut() }) else {
            return HELM_E_ARGUMENT;
        };
        if v.state != READY {
            return HELM_E_STATE;
        }
        // SAFETY: `len` readable bytes at `chunk` (caller).
        let Some(data) = (unsafe { bytes(chunk, len) }) else {
            return HELM_E_ARGUMENT;
        };
        let Some(reader) = v.reader.as_mut() else {
            return HELM_E_STATE;
        };
        v.state = BUSY;
        let r = reader.feed(data, &mut NoObserver);
        v.state = READY;
        match r {
            Ok(()) => HELM_OK,
            Err(e) => i32::from(e.code_number()),
        }
    })
}

/// Ends the stream and writes the outcome to `*out`. Returns 0 if the pack verified, else
/// the failure's code (also in `out->code`); `HELM_E_ARGUMENT` or `HELM_E_STATE` (then
/// `*out` is not written). The handle is spent afterwards, whatever the result: its
/// memory may be freed or reused.
///
/// # Safety
/// `v` is a handle from `helm_verifier_init` not yet finished (or NULL); `out` points to a
/// writable `helm_result` (or is NULL).
#[no_mangle]
pub unsafe extern "C" fn helm_verifier_finish(v: *mut HelmVerifier, out: *mut HelmResult) -> i32 {
    guard(|| {
        // SAFETY: NULL or a live handle (caller's contract).
        let Some(v) = (unsafe { v.as_mut() }) else {
            return HELM_E_ARGUMENT;
        };
        if out.is_null() {
            return HELM_E_ARGUMENT;
        }
        if v.state != READY {
            return HELM_E_STATE;
        }
        let Some(reader) = v.reader.take() else {
            return HELM_E_STATE;
        };
        v.state = SPENT;
        let result = match reader.finish() {
            Ok(summary) => HelmResult::verified(&summary),
            Err(e) => HelmResult::failed(&e),
        };
        // SAFETY: `out` is non-NULL and writable (caller).
        unsafe { out.write(result) };
        result.code
    })
}

/// Longest name plus its NUL.
const NAME_LEN: usize = 40;
type Names<const N: usize> = [[u8; NAME_LEN]; N];

const RECORD_CODES: usize = verify_core::ErrorCode::ALL.len();
const PACK_CODES: usize = pack_format::PackCode::ALL.len();

/// Copies `name` into a NUL-terminated fixed buffer, at compile time (a name that does
/// not fit is a build error).
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "evaluated at compile time only: a mistake fails the build"
)]
const fn c_name(name: &str) -> [u8; NAME_LEN] {
    let b = name.as_bytes();
    assert!(b.len() < NAME_LEN, "error name too long for the C table");
    let mut out = [0u8; NAME_LEN];
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "evaluated at compile time only: a mistake fails the build"
)]
const fn record_names() -> Names<RECORD_CODES> {
    let mut out = [[0u8; NAME_LEN]; RECORD_CODES];
    let mut i = 0;
    while i < RECORD_CODES {
        out[i] = c_name(verify_core::ErrorCode::ALL[i].name());
        i += 1;
    }
    out
}

#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "evaluated at compile time only: a mistake fails the build"
)]
const fn pack_names() -> Names<PACK_CODES> {
    let mut out = [[0u8; NAME_LEN]; PACK_CODES];
    let mut i = 0;
    while i < PACK_CODES {
        out[i] = c_name(pack_format::PackCode::ALL[i].name());
        i += 1;
    }
    out
}

/// The stable names, NUL-terminated, from verify-core's and pack-format's own tables.
static RECORD_NAMES: Names<RECORD_CODES> = record_names();
static PACK_NAMES: Names<PACK_CODES> = pack_names();
static API_NAMES: Names<8> = [
    c_name("OK"),
    c_name("HELM_E_ARGUMENT"),
    c_name("HELM_E_MEMORY"),
    c_name("HELM_E_CAPACITY"),
    c_name("HELM_E_ANCHOR"),
    c_name("HELM_E_STATE"),
    c_name("HELM_E_PANIC"),
    c_name("HELM_E_NO_MANIFEST"),
];
static UNKNOWN: [u8; 8] = *b"UNKNOWN\0";

fn name_of(code: i32) -> &'static [u8; NAME_LEN] {
    if code <= 0 {
        let i = usize::try_from(code.unsigned_abs()).unwrap_or(usize::MAX);
        if let Some(n) = API_NAMES.get(i) {
            return n;
        }
    }
    let record = verify_core::ErrorCode::ALL
        .iter()
        .zip(RECORD_NAMES.iter())
        .find(|(c, _)| i32::from(c.number()) == code)
        .map(|(_, n)| n);
    let pack = || {
        pack_format::PackCode::ALL
            .iter()
            .zip(PACK_NAMES.iter())
            .find(|(c, _)| i32::from(c.number()) == code)
            .map(|(_, n)| n)
    };
    record.or_else(pack).unwrap_or(&[0; NAME_LEN])
}

/// The stable name of a code returned by this API: `"OK"` for 0, a verification code
/// (`"SIGNATURE_INVALID"`, `"PACK_MANIFEST_MISMATCH"`, ...), a `"HELM_E_..."` name, or
/// `"UNKNOWN"`. Never NULL; the string is static.
#[no_mangle]
pub extern "C" fn helm_error_name(code: i32) -> *const c_char {
    let n = name_of(code);
    if n.first() == Some(&0) {
        return UNKNOWN.as_ptr().cast();
    }
    n.as_ptr().cast()
}

#[cfg(all(not(feature = "std"), not(test), feature = "panic-handler"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable by construction (see the crate docs); if it happens, stop here rather
    // than return into C with broken state.
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;
    use core::ptr;

    fn name(code: i32) -> &'static str {
        unsafe { CStr::from_ptr(helm_error_name(code)) }.to_str().unwrap()
    }

    #[test]
    fn names_match_the_crates_tables() {
        for c in verify_core::ErrorCode::ALL {
            assert_eq!(name(i32::from(c.number())), c.name());
        }
        for c in pack_format::PackCode::ALL {
            assert_eq!(name(i32::from(c.number())), c.name());
        }
        assert_eq!(name(0), "OK");
        assert_eq!(name(HELM_E_NO_MANIFEST), "HELM_E_NO_MANIFEST");
        assert_eq!(name(HELM_E_STATE), "HELM_E_STATE");
        assert_eq!(name(-99), "UNKNOWN");
        assert_eq!(name(7), "UNKNOWN");
    }

    const ROOT_1: &str = "94b104bbe45624075574bc7de23746c99e911eae36d7abdb0c0723785392f7ea";

    fn anchor() -> [u8; 32] {
        let mut a = [0u8; 32];
        for (i, b) in a.iter_mut().enumerate() {
            *b = u8::from_str_radix(&ROOT_1[2 * i..2 * i + 2], 16).unwrap();
        }
        a
    }

    fn pack(path: &str) -> std::vec::Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../test-vectors/packs")
                .join(path),
        )
        .unwrap()
    }

    /// Runs one pack through the C API with the block at a deliberately odd address.
    fn verify(bytes: &[u8], chunk: usize) -> (i32, HelmResult) {
        let a = anchor();
        let mut cap = HelmCapacity::default();
        let s =
            unsafe { helm_capacity_from_manifest(bytes.as_ptr(), bytes.len().min(HELM_MANIFEST_PREFIX), 1, &mut cap) };
        assert!(s == HELM_OK || s == HELM_E_NO_MANIFEST);
        let size = unsafe { helm_verifier_size(&cap) };
        assert!(size > 0);
        let mut mem = std::vec![0u8; size + 1];
        let mut v: *mut HelmVerifier = ptr::null_mut();
        let block = unsafe { mem.as_mut_ptr().add(1) }.cast::<c_void>();
        assert_eq!(
            unsafe { helm_verifier_init(block, size, a.as_ptr(), 1, &cap, &mut v) },
            HELM_OK
        );
        for c in bytes.chunks(chunk) {
            if unsafe { helm_verifier_feed(v, c.as_ptr(), c.len()) } != HELM_OK {
                break;
            }
        }
        let mut r = HelmResult::zero();
        let code = unsafe { helm_verifier_finish(v, &mut r) };
        assert_eq!(code, r.code);
        assert_eq!(unsafe { helm_verifier_feed(v, ptr::null(), 0) }, HELM_E_STATE);
        assert_eq!(unsafe { helm_verifier_finish(v, &mut r) }, HELM_E_STATE);
        (code, r)
    }

    #[test]
    fn valid_and_tampered_packs() {
        let valid = pack("valid/small-run.tar");
        for chunk in [1, 511, 512, 4096, valid.len()] {
            let (code, r) = verify(&valid, chunk);
            assert_eq!(code, HELM_OK);
            assert_eq!(r.records, 28);
            assert_eq!(r.per_kind, [7, 7, 1, 6, 0, 3, 1, 0, 3]);
        }
        let (code, r) = verify(&pack("invalid/record-byte-flipped.tar"), 512);
        assert_eq!(name(code), "SIGNATURE_INVALID");
        assert_eq!(r.pack_code, 1200);
        assert_eq!(r.record_index, 27);
        let (code, _) = verify(&pack("invalid/manifest-missing.tar"), 512);
        assert_eq!(name(code), "PACK_UNEXPECTED_ENTRY");
    }

    #[test]
    fn misuse_is_reported() {
        let a = anchor();
        let cap = HelmCapacity {
            records: 4,
            keys: 1,
            streams: 1,
            record_buffer: 512,
            ..HelmCapacity::default()
        };
        let size = unsafe { helm_verifier_size(&cap) };
        let mut mem = std::vec![0u8; size];
        let mut v: *mut HelmVerifier = ptr::null_mut();
        let m = mem.as_mut_ptr().cast::<c_void>();
        assert_eq!(
            unsafe { helm_verifier_init(m, size - 64, a.as_ptr(), 1, &cap, &mut v) },
            HELM_E_MEMORY
        );
        assert_eq!(
            unsafe { helm_verifier_init(m, size, a.as_ptr(), 2, &cap, &mut v) },
            HELM_E_CAPACITY
        );
        let bad = [0u8; 32]; // the identity point: small order
        assert_eq!(
            unsafe { helm_verifier_init(m, size, bad.as_ptr(), 1, &cap, &mut v) },
            HELM_E_ANCHOR
        );
        assert_eq!(
            unsafe { helm_verifier_init(m, size, ptr::null(), 1, &cap, &mut v) },
            HELM_E_ARGUMENT
        );
        let none = HelmCapacity::default();
        assert_eq!(unsafe { helm_verifier_size(&none) }, 0);
        assert_eq!(unsafe { helm_verifier_size(ptr::null()) }, 0);
        let huge = HelmCapacity {
            records: usize::MAX / 2,
            ..cap
        };
        assert_eq!(unsafe { helm_verifier_size(&huge) }, 0);
        assert_eq!(
            unsafe { helm_verifier_feed(ptr::null_mut(), ptr::null(), 0) },
            HELM_E_ARGUMENT
        );
        assert_eq!(
            unsafe { helm_verifier_init(m, size, a.as_ptr(), 1, &cap, &mut v) },
            HELM_OK
        );
        assert_eq!(unsafe { helm_verifier_feed(v, ptr::null(), 5) }, HELM_E_ARGUMENT);
        // A table too small for the pack is a verification failure, not a pass.
        let valid = pack("valid/small-run.tar");
        let mut code = HELM_OK;
        for c in valid.chunks(512) {
            code = unsafe { helm_verifier_feed(v, c.as_ptr(), c.len()) };
            if code != HELM_OK {
                break;
            }
        }
        assert_eq!(name(code), "PACK_CAPACITY_EXCEEDED");
    }
}
