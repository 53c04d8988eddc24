//! A structural pre-screen of module bytes, before wasmi parses them: it refuses shapes
//! known to make wasmi 2.0.0 panic instead of returning an error.
//!
//! - A code section that declares 0 functions but is at least 1,000 bytes long: with the
//!   strict enforced limits, wasmi's parser divides the section size by the function count
//!   (`debug_assert!` in debug builds, integer division by zero in release builds). Found
//!   by the `sandbox_module` fuzz target. Any code section with a count of 0 and more than
//!   the count's own bytes is malformed, so all of them are refused here.
//!
//! - Then the whole module is validated with wasmparser 0.228 (wasmi 2.0.0's own
//!   validator) and wasmi's feature set, before wasmi parses it. wasmi validates each
//!   function while translating it, and the fuzz target found invalid modules (operators
//!   after a function's final `end`) that reached a debug assertion in its translator
//!   first. After this pass wasmi only ever sees valid modules.
//!
//! The header screen reads only section headers (id, size) and the code section's count.
//! Neither step refuses a module that wasmi would accept.

use wasmparser::{Validator, WasmFeatures};

/// wasmi 2.0.0's default features, less its `simd`/`memory64` cargo features (off here):
/// `Config::default_features` in wasmi.
fn features() -> WasmFeatures {
    let mut f = WasmFeatures::empty();
    for feature in [
        WasmFeatures::MUTABLE_GLOBAL,
        WasmFeatures::MULTI_VALUE,
        WasmFeatures::MULTI_MEMORY,
        WasmFeatures::SATURATING_FLOAT_TO_INT,
        WasmFeatures::SIGN_EXTENSION,
        WasmFeatures::BULK_MEMORY,
        WasmFeatures::REFERENCE_TYPES,
        WasmFeatures::GC_TYPES,
        WasmFeatures::TAIL_CALL,
        WasmFeatures::EXTENDED_CONST,
        WasmFeatures::FLOATS,
    ] {
        f.insert(feature);
    }
    f
}

/// Validates the whole module: `Err` with wasmparser's message.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), String> {
    Validator::new_with_features(features())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads an unsigned LEB128 value of at most 32 bits: (value, bytes used).
fn leb_u32(b: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        let bits = u32::from(byte & 0x7f);
        let shift = u32::try_from(i).ok()?.checked_mul(7)?;
        v |= bits.checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((v, i.checked_add(1)?));
        }
    }
    None
}

/// `Err` with the reason when the bytes have a shape that wasmi mishandles.
pub(crate) fn screen(bytes: &[u8]) -> Result<(), String> {
    let Some(mut rest) = bytes.get(8..) else {
        return Ok(());
    };
    while let Some((&id, after_id)) = rest.split_first() {
        let Some((size, n)) = leb_u32(after_id) else {
            return Ok(());
        };
        let Some(payload_and_more) = after_id.get(n..) else {
            return Ok(());
        };
        // wasmi judges the declared size, before it has the whole section.
        if id == 10 {
            if let Some((0, used)) = leb_u32(payload_and_more) {
                if size as usize > used {
                    return Err(format!("code section declares 0 functions in {size} bytes"));
                }
            }
        }
        let Some(next) = payload_and_more.get(size as usize..) else {
            return Ok(());
        };
        rest = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_code_section_with_content_is_refused() {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // code section (10) of 1,001 bytes: count 0 then 1,000 bytes.
        m.push(10);
        m.extend_from_slice(&[0xe9, 0x07]);
        m.push(0);
        m.extend_from_slice(&[0u8; 1000]);
        assert!(screen(&m).is_err());
        // The same, cut short (the fuzzer's case: the declared size runs past the end).
        assert!(screen(&m[..20]).is_err());
        // A genuine empty code section passes.
        assert!(screen(b"\0asm\x01\0\0\0\x0a\x01\x00").is_ok());
        // Garbage is left to the validator.
        assert!(screen(b"\0asm\x01\0\0\0\x0a\xff\xff\xff\xff\xff").is_ok());
        assert!(screen(b"").is_ok());
    }

    #[test]
    fn leb() {
        assert_eq!(leb_u32(&[0x00]), Some((0, 1)));
        assert_eq!(leb_u32(&[0xe9, 0x07]), Some((1001, 2)));
        assert_eq!(leb_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None);
        assert_eq!(leb_u32(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some((u32::MAX, 5)));
    }
}
