//! A strict reader for deterministic CBOR (RFC 8949 §4.2.1 "core deterministic encoding").
//!
//! The reader accepts exactly one byte form for every value, so a record has one encoding
//! and one hash. It rejects, as it reads and without a second pass:
//! - integers, lengths and tags not in their shortest form;
//! - indefinite lengths;
//! - map keys not in strictly ascending bytewise order of their encodings (which also
//!   rejects duplicate keys);
//! - floating-point numbers and simple values other than `false`, `true` and `null`
//!   (the record format never needs them, and excluding them removes the float
//!   canonicalisation rules from every implementation);
//! - text that is not UTF-8, and nesting deeper than [`MAX_DEPTH`].
//!
//! Callers that read a whole item also check that no bytes follow it.
//!
//! Public so that formats layered on records (pack manifests) decode with the same rules.

use crate::error::CborError;

/// Deepest nesting accepted in any payload value (only extension values and claims nest
/// freely; the defined fields are shallower).
pub const MAX_DEPTH: u8 = 8;

/// CBOR major type.
pub const MAJOR_UINT: u8 = 0;
/// CBOR major type.
pub const MAJOR_NINT: u8 = 1;
/// CBOR major type.
pub const MAJOR_BYTES: u8 = 2;
/// CBOR major type.
pub const MAJOR_TEXT: u8 = 3;
/// CBOR major type.
pub const MAJOR_ARRAY: u8 = 4;
/// CBOR major type.
pub const MAJOR_MAP: u8 = 5;
/// CBOR major type.
pub const MAJOR_TAG: u8 = 6;
/// CBOR major type.
pub const MAJOR_SIMPLE: u8 = 7;

/// A strict, zero-copy reader over one buffer.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where the input ends: `buf.len()`, or further when `buf` is only the known
    /// beginning of a longer input (see [`Reader::with_input_len`]).
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over `buf`, the first bytes of an input of `input_len` bytes: lengths and
    /// counts are checked against the whole input, as a decoder that had it all would.
    /// Reading content beyond `buf` is `Truncated`. (A pack reader uses this to name the
    /// defect of a record that does not frame, whatever its reads looked like.)
    pub fn with_input_len(buf: &'a [u8], input_len: usize) -> Self {
        Reader {
            buf,
            pos: 0,
            end: input_len.max(buf.len()),
        }
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CborError::TrailingBytes)
        }
    }

    /// The bytes from `start` to the current position.
    pub fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).ok_or(CborError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(CborError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self.buf.get(self.pos).ok_or(CborError::Truncated)?;
        self.pos = self.pos.checked_add(1).ok_or(CborError::Truncated)?;
        Ok(b)
    }

    /// Reads an item head: major type and argument, insisting on the shortest form.
    pub fn head(&mut self) -> Result<(u8, u64), CborError> {
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == MAJOR_SIMPLE && info >= 24 {
            // One-byte simple values, floats and "break".
            return Err(CborError::Unsupported);
        }
        let arg = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 {
                    return Err(CborError::NotShortest);
                }
                v
            }
            25 => {
                let v = u64::from(u16::from_be_bytes(self.array::<2>()?));
                if v <= 0xff {
                    return Err(CborError::NotShortest);
                }
                v
            }
            26 => {
                let v = u64::from(u32::from_be_bytes(self.array::<4>()?));
                if v <= 0xffff {
                    return Err(CborError::NotShortest);
                }
                v
            }
            27 => {
                let v = u64::from_be_bytes(self.array::<8>()?);
                if v <= 0xffff_ffff {
                    return Err(CborError::NotShortest);
                }
                v
            }
            28..=30 => return Err(CborError::Reserved),
            _ => return Err(CborError::IndefiniteLength),
        };
        Ok((major, arg))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn expect(&mut self, major: u8) -> Result<u64, CborError> {
        let (m, arg) = self.head()?;
        if m != major {
            return Err(CborError::UnexpectedType);
        }
        Ok(arg)
    }

    /// A length or count. Every byte or element takes at least one byte, so one larger
    /// than what remains is truncated input: the same verdict on 32- and 64-bit targets.
    fn len(&mut self, major: u8) -> Result<usize, CborError> {
        let arg = self.expect(major)?;
        let remaining = self.end.saturating_sub(self.pos) as u64;
        if arg > remaining {
            return Err(CborError::Truncated);
        }
        usize::try_from(arg).map_err(|_| CborError::Truncated)
    }

    /// An unsigned integer.
    pub fn uint(&mut self) -> Result<u64, CborError> {
        self.expect(MAJOR_UINT)
    }

    /// A signed integer, in the range of `i64`.
    pub fn int(&mut self) -> Result<i64, CborError> {
        let (m, arg) = self.head()?;
        let v = i64::try_from(arg).map_err(|_| CborError::OutOfRange)?;
        match m {
            MAJOR_UINT => Ok(v),
            MAJOR_NINT => (-1i64).checked_sub(v).ok_or(CborError::OutOfRange),
            _ => Err(CborError::UnexpectedType),
        }
    }

    /// A byte string, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let n = self.len(MAJOR_BYTES)?;
        self.take(n)
    }

    /// A byte string of exactly `N` bytes.
    pub fn bytes_fixed<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        // The length is judged from the head, before the content is read.
        if self.len(MAJOR_BYTES)? != N {
            return Err(CborError::WrongLength);
        }
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A UTF-8 text string, borrowed.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let n = self.len(MAJOR_TEXT)?;
        let b = self.take(n)?;
        core::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8)
    }

    /// An array head: the number of items.
    pub fn array_len(&mut self) -> Result<usize, CborError> {
        self.len(MAJOR_ARRAY)
    }

    /// A map head: the number of pairs.
    pub fn map_len(&mut self) -> Result<usize, CborError> {
        self.len(MAJOR_MAP)
    }

    /// A tag number.
    pub fn tag(&mut self) -> Result<u64, CborError> {
        self.expect(MAJOR_TAG)
    }

    /// Peeks at the major type of the next item without consuming it.
    pub fn peek_major(&self) -> Option<u8> {
        self.buf.get(self.pos).map(|b| b >> 5)
    }

    /// Reads and validates any deterministic item, returning its encoded bytes.
    /// Used for ignorable extension values, which are signed but not interpreted.
    pub fn any(&mut self, depth: u8) -> Result<&'a [u8], CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let start = self.pos;
        let (major, arg) = self.head()?;
        let remaining = self.end.saturating_sub(self.pos) as u64;
        if matches!(major, MAJOR_BYTES | MAJOR_TEXT | MAJOR_ARRAY | MAJOR_MAP) && arg > remaining {
            return Err(CborError::Truncated);
        }
        let depth = depth.saturating_add(1);
        match major {
            MAJOR_UINT | MAJOR_NINT => {}
            // false, true, null; no `undefined`, no unassigned simple values.
            MAJOR_SIMPLE if (20..=22).contains(&arg) => {}
            MAJOR_SIMPLE => return Err(CborError::Unsupported),
            MAJOR_BYTES => {
                let n = usize::try_from(arg).map_err(|_| CborError::Truncated)?;
                self.take(n)?;
            }
            MAJOR_TEXT => {
                let n = usize::try_from(arg).map_err(|_| CborError::Truncated)?;
                core::str::from_utf8(self.take(n)?).map_err(|_| CborError::InvalidUtf8)?;
            }
            MAJOR_ARRAY => {
                for _ in 0..arg {
                    self.any(depth)?;
                }
            }
            MAJOR_MAP => {
                let mut keys = KeyOrder::new();
                for _ in 0..arg {
                    let key = self.any(depth)?;
                    keys.next(key)?;
                    self.any(depth)?;
                }
            }
            // Tags are not part of the record format's extension values.
            _ => return Err(CborError::Unsupported),
        }
        Ok(self.since(start))
    }

    /// Reads an unsigned map key and checks it is strictly greater than the previous one.
    pub fn key(&mut self, previous: &mut Option<u64>) -> Result<u64, CborError> {
        let k = self.uint()?;
        if let Some(p) = *previous {
            if k <= p {
                return Err(CborError::KeyOrder);
            }
        }
        *previous = Some(k);
        Ok(k)
    }
}

/// Checks that map keys, given as their encodings, are in strictly ascending bytewise
/// order (RFC 8949 §4.2.1), which also excludes duplicates.
#[derive(Debug, Default)]
pub struct KeyOrder<'a> {
    previous: Option<&'a [u8]>,
}

impl<'a> KeyOrder<'a> {
    /// A reader at the start of `buf`.
    /// No key seen yet.
    pub fn new() -> Self {
        KeyOrder { previous: None }
    }

    /// The next key's encoding: must be greater than the previous one.
    pub fn next(&mut self, key: &'a [u8]) -> Result<(), CborError> {
        if let Some(p) = self.previous {
            if key <= p {
                return Err(CborError::KeyOrder);
            }
        }
        self.previous = Some(key);
        Ok(())
    }
}

/// Encodes an item head in its shortest form into `out`, returning the bytes used.
pub fn encode_head(major: u8, arg: u64, out: &mut [u8; 9]) -> usize {
    let m = major << 5;
    let be = arg.to_be_bytes();
    let (info, n) = match arg {
        0..=23 => (arg as u8, 0usize),
        24..=0xff => (24, 1),
        0x100..=0xffff => (25, 2),
        0x1_0000..=0xffff_ffff => (26, 4),
        _ => (27, 8),
    };
    out[0] = m | info;
    if let (Some(dst), Some(src)) = (out.get_mut(1..=n), be.get(8usize.saturating_sub(n)..)) {
        dst.copy_from_slice(src);
    }
    n.saturating_add(1)
}

/// A writer of deterministic CBOR. Map keys must be written in canonical order by the
/// caller (all record maps use small unsigned keys written in ascending order).
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: alloc::vec::Vec<u8>,
}

#[cfg(feature = "alloc")]
#[allow(missing_docs, reason = "one method per CBOR item type, named after it")]
impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    fn head(&mut self, major: u8, arg: u64) -> &mut Self {
        let mut h = [0u8; 9];
        let n = encode_head(major, arg, &mut h);
        self.buf.extend_from_slice(h.get(..n).unwrap_or(&[]));
        self
    }
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(MAJOR_UINT, v)
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            self.head(MAJOR_UINT, v.unsigned_abs())
        } else {
            self.head(MAJOR_NINT, v.unsigned_abs().saturating_sub(1))
        }
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }
    pub fn array(&mut self, n: usize) -> &mut Self {
        self.head(MAJOR_ARRAY, n as u64)
    }
    pub fn map(&mut self, n: usize) -> &mut Self {
        self.head(MAJOR_MAP, n as u64)
    }
    pub fn tag(&mut self, t: u64) -> &mut Self {
        self.head(MAJOR_TAG, t)
    }
    /// Appends bytes that are already encoded CBOR.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn into_bytes(self) -> alloc::vec::Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_uint(b: &[u8]) -> Result<u64, CborError> {
        let mut r = Reader::new(b);
        let v = r.uint()?;
        r.finish()?;
        Ok(v)
    }

    #[test]
    fn shortest_integers_only() {
        assert_eq!(read_uint(&[0x17]), Ok(23));
        assert_eq!(read_uint(&[0x18, 0x18]), Ok(24));
        assert_eq!(read_uint(&[0x18, 0x17]), Err(CborError::NotShortest));
        assert_eq!(read_uint(&[0x19, 0x00, 0xff]), Err(CborError::NotShortest));
        assert_eq!(read_uint(&[0x19, 0x01, 0x00]), Ok(256));
        assert_eq!(read_uint(&[0x1a, 0, 0, 0xff, 0xff]), Err(CborError::NotShortest));
        assert_eq!(
            read_uint(&[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(CborError::NotShortest)
        );
        assert_eq!(read_uint(&[0x1c]), Err(CborError::Reserved));
        assert_eq!(read_uint(&[0x18]), Err(CborError::Truncated));
        assert_eq!(read_uint(&[0x01, 0x00]), Err(CborError::TrailingBytes));
    }

    #[test]
    fn head_round_trips() {
        for v in [
            0u64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX.into(),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let mut buf = [0u8; 9];
            let n = encode_head(MAJOR_UINT, v, &mut buf);
            assert_eq!(read_uint(&buf[..n]), Ok(v));
        }
    }

    #[test]
    fn rejects_indefinite_floats_and_unsorted_maps() {
        assert_eq!(Reader::new(&[0x5f]).bytes(), Err(CborError::IndefiniteLength));
        assert_eq!(Reader::new(&[0xf9, 0, 0]).any(0), Err(CborError::Unsupported));
        // {1: 0, 0: 0}
        assert_eq!(
            Reader::new(&[0xa2, 0x01, 0x00, 0x00, 0x00]).any(0),
            Err(CborError::KeyOrder)
        );
        // {0: 0, 0: 0}
        assert_eq!(
            Reader::new(&[0xa2, 0x00, 0x00, 0x00, 0x00]).any(0),
            Err(CborError::KeyOrder)
        );
        // {"b": 0, "aa": 0}: shorter encodings sort first, so this is canonical.
        assert!(Reader::new(&[0xa2, 0x61, b'b', 0x00, 0x62, b'a', b'a', 0x00])
            .any(0)
            .is_ok());
        assert_eq!(Reader::new(&[0x62, 0xff, 0xfe]).text(), Err(CborError::InvalidUtf8));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = [0x81u8; 64];
        assert_eq!(Reader::new(&deep).any(0), Err(CborError::TooDeep));
    }
}
