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

use crate::error::CborError;

/// Deepest nesting accepted inside ignorable extension values.
pub(crate) const MAX_DEPTH: u8 = 8;

pub(crate) const MAJOR_UINT: u8 = 0;
pub(crate) const MAJOR_NINT: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
pub(crate) const MAJOR_TAG: u8 = 6;
pub(crate) const MAJOR_SIMPLE: u8 = 7;

#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), CborError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CborError::TrailingBytes)
        }
    }

    /// The bytes from `start` to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
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
    pub(crate) fn head(&mut self) -> Result<(u8, u64), CborError> {
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

    fn len(&mut self, major: u8) -> Result<usize, CborError> {
        let arg = self.expect(major)?;
        usize::try_from(arg).map_err(|_| CborError::Truncated)
    }

    pub(crate) fn uint(&mut self) -> Result<u64, CborError> {
        self.expect(MAJOR_UINT)
    }

    /// A signed integer, in the range of `i64`.
    pub(crate) fn int(&mut self) -> Result<i64, CborError> {
        let (m, arg) = self.head()?;
        let v = i64::try_from(arg).map_err(|_| CborError::OutOfRange)?;
        match m {
            MAJOR_UINT => Ok(v),
            MAJOR_NINT => (-1i64).checked_sub(v).ok_or(CborError::OutOfRange),
            _ => Err(CborError::UnexpectedType),
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let n = self.len(MAJOR_BYTES)?;
        self.take(n)
    }

    pub(crate) fn bytes_fixed<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let b = self.bytes()?;
        let mut out = [0u8; N];
        if b.len() != N {
            return Err(CborError::WrongLength);
        }
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn text(&mut self) -> Result<&'a str, CborError> {
        let n = self.len(MAJOR_TEXT)?;
        let b = self.take(n)?;
        core::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8)
    }

    pub(crate) fn array_len(&mut self) -> Result<usize, CborError> {
        self.len(MAJOR_ARRAY)
    }

    pub(crate) fn map_len(&mut self) -> Result<usize, CborError> {
        self.len(MAJOR_MAP)
    }

    pub(crate) fn tag(&mut self) -> Result<u64, CborError> {
        self.expect(MAJOR_TAG)
    }

    /// Peeks at the major type of the next item without consuming it.
    pub(crate) fn peek_major(&self) -> Option<u8> {
        self.buf.get(self.pos).map(|b| b >> 5)
    }

    /// Reads and validates any deterministic item, returning its encoded bytes.
    /// Used for ignorable extension values, which are signed but not interpreted.
    pub(crate) fn any(&mut self, depth: u8) -> Result<&'a [u8], CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let start = self.pos;
        let (major, arg) = self.head()?;
        let depth = depth.saturating_add(1);
        match major {
            MAJOR_UINT | MAJOR_NINT | MAJOR_SIMPLE => {}
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
    pub(crate) fn key(&mut self, previous: &mut Option<u64>) -> Result<u64, CborError> {
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
#[derive(Debug)]
pub(crate) struct KeyOrder<'a> {
    previous: Option<&'a [u8]>,
}

impl<'a> KeyOrder<'a> {
    pub(crate) fn new() -> Self {
        KeyOrder { previous: None }
    }

    pub(crate) fn next(&mut self, key: &'a [u8]) -> Result<(), CborError> {
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
pub(crate) fn encode_head(major: u8, arg: u64, out: &mut [u8; 9]) -> usize {
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
