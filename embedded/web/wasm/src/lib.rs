//! The verifier for the browser page (embedded/web): `pack_format::verify_reader`, the
//! same code path as `helm-airgap verify`, compiled to wasm32-unknown-unknown.
//!
//! The module imports two functions from JavaScript (module `env`):
//!
//! - `helm_read(ptr, len) -> isize`: copy up to `len` bytes of the pack file into linear
//!   memory at `ptr`; 0 at its end, -1 on a read error. The page's worker implements it
//!   with `FileReaderSync`, so a pack of any size streams through with bounded memory.
//! - `helm_progress(bytes: f64)`: uncompressed bytes verified so far.
//!
//! and exports, besides `memory`:
//!
//! - `helm_alloc(len) -> ptr`, `helm_free(ptr, len)`: buffers for the anchors;
//! - `helm_verify(anchors, n_anchors) -> i32`: verifies the pack that `helm_read`
//!   delivers against `n_anchors` 32-byte Ed25519 keys at `anchors`. Returns 0 if it
//!   verified, the stable error number if not, -1 for a read error, -2 for unusable
//!   anchors;
//! - `helm_report_ptr()`, `helm_report_len()`: the JSON report of the last
//!   `helm_verify` (UTF-8).
//!
//! Nothing leaves the machine: the module has no imports besides these two.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::Mutex;

use pack_format::{Observer, PackError, PackSummary, StreamError, VerifyOptions};

#[link(wasm_import_module = "env")]
extern "C" {
    fn helm_read(ptr: *mut u8, len: usize) -> isize;
    fn helm_progress(bytes: f64);
}

/// The last report (the module is single-threaded; the lock is never contended).
static REPORT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Most bytes of verifier tables to allocate for the counts a manifest claims (the
/// counts are not authenticated until the end).
const MAX_TABLE_BYTES: u64 = 1 << 30;

const KINDS: [&str; 9] = [
    "INTENT",
    "DECISION",
    "APPROVAL",
    "EFFECT",
    "VIOLATION",
    "TRUST_EVENT",
    "POLICY",
    "ATTESTATION",
    "CHECKPOINT",
];

struct JsFile;

impl Read for JsFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the import writes at most `buf.len()` bytes at `buf`'s start, a live
        // mutable buffer in this module's memory.
        let n = unsafe { helm_read(buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or_else(|| io::Error::other("the browser could not read the file"))
    }
}

struct Progress {
    last: u64,
}

impl Observer for Progress {
    fn progress(&mut self, offset: u64) {
        if offset.saturating_sub(self.last) >= 1 << 20 {
            self.last = offset;
            // SAFETY: an imported function taking a number; no memory is shared.
            unsafe { helm_progress(offset as f64) };
        }
    }
}

/// Reserves `len` bytes in linear memory for the page (0 if `len` is 0).
#[no_mangle]
pub extern "C" fn helm_alloc(len: usize) -> *mut u8 {
    let mut v = Vec::<u8>::with_capacity(len);
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Releases a buffer from `helm_alloc`.
///
/// # Safety
/// `ptr` and `len` are exactly those of one earlier `helm_alloc` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn helm_free(ptr: *mut u8, len: usize) {
    // SAFETY: rebuilds the Vec that `helm_alloc` leaked, with its pointer and capacity
    // (caller's contract); length 0, so no element is dropped.
    drop(unsafe { Vec::from_raw_parts(ptr, 0, len) });
}

#[no_mangle]
pub extern "C" fn helm_report_ptr() -> *const u8 {
    REPORT.lock().map(|r| r.as_ptr()).unwrap_or(std::ptr::null())
}

#[no_mangle]
pub extern "C" fn helm_report_len() -> usize {
    REPORT.lock().map(|r| r.len()).unwrap_or(0)
}

/// Verifies the pack delivered by `helm_read`. See the module docs.
///
/// # Safety
/// `anchors` points to `32 * n_anchors` readable bytes (a `helm_alloc` buffer).
#[no_mangle]
pub unsafe extern "C" fn helm_verify(anchors: *const u8, n_anchors: usize) -> i32 {
    let keys: &[[u8; 32]] = if n_anchors == 0 || anchors.is_null() {
        &[]
    } else {
        // SAFETY: `32 * n_anchors` readable bytes at `anchors` (caller); [u8; 32] has
        // alignment 1.
        unsafe { std::slice::from_raw_parts(anchors.cast::<[u8; 32]>(), n_anchors) }
    };
    let opts = VerifyOptions {
        max_table_bytes: MAX_TABLE_BYTES,
        ..VerifyOptions::default()
    };
    let mut progress = Progress { last: 0 };
    let (code, report) = match pack_format::verify_reader(JsFile, keys, &opts, &mut progress) {
        Ok((wrapper, summary)) => (0, verified_json(&format!("{wrapper:?}").to_lowercase(), &summary)),
        Err(StreamError::Pack(e)) => (i32::from(e.code_number()), failed_json(&e)),
        Err(StreamError::Io(e)) => (-1, other_json("READ_ERROR", &e.to_string())),
        Err(other) => (-2, other_json("TRUST_ROOT_INVALID", &other.to_string())),
    };
    if let Ok(mut r) = REPORT.lock() {
        *r = report.into_bytes();
    }
    code
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

fn verified_json(wrapper: &str, s: &PackSummary) -> String {
    let v = &s.verified;
    let per_kind = KINDS
        .iter()
        .zip(v.per_kind.iter())
        .map(|(k, n)| format!("{}:{n}", js(k)))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        concat!(
            "{{\"verified\":true,\"wrapper\":{},\"pack_bytes\":{},\"records\":{},\"per_kind\":{{{}}},",
            "\"escalations\":{},\"open_escalations\":{},\"streams\":{},\"checkpoints\":{},",
            "\"witnessed_checkpoints\":{},\"keys_published\":{},\"keys_retired\":{},",
            "\"blobs\":{},\"withheld\":{},\"time_first_ms\":{},\"time_last_ms\":{},",
            "\"records_root\":{},\"head\":{},\"producer\":{}}}"
        ),
        js(wrapper),
        s.bytes,
        v.records,
        per_kind,
        v.escalations,
        v.open_escalations,
        v.streams,
        v.checkpoints,
        v.witnessed_checkpoints,
        v.keys_published,
        v.keys_retired,
        s.manifest.blobs,
        s.manifest.withheld,
        v.time_span.0,
        v.time_span.1,
        js(&hex(&v.root)),
        js(&hex(&v.head)),
        js(&format!("ed25519:{}", hex(&s.manifest.producer))),
    )
}

fn failed_json(e: &PackError) -> String {
    let index = e.record.as_ref().map(|r| r.index).or(e.index);
    let detail = e.record.as_ref().map_or(e.detail, |r| r.detail);
    format!(
        concat!(
            "{{\"verified\":false,\"error\":{{\"code\":{},\"number\":{},\"detail\":{},",
            "\"pack_code\":{},\"pack_number\":{},\"record_index\":{},\"entry\":{},",
            "\"entry_index\":{},\"offset\":{},\"transport\":{}}}}}"
        ),
        js(e.code_name()),
        e.code_number(),
        js(detail),
        js(e.code.name()),
        e.code.number(),
        opt(index),
        e.entry_name().map_or_else(|| "null".to_owned(), js),
        opt(e.entry),
        e.offset,
        e.transport.as_deref().map_or_else(|| "null".to_owned(), js),
    )
}

fn other_json(code: &str, message: &str) -> String {
    format!(
        "{{\"verified\":false,\"error\":{{\"code\":{},\"number\":null,\"detail\":{},\"record_index\":null}}}}",
        js(code),
        js(message)
    )
}
