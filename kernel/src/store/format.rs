//! Segment header and frame encoding (normative description: `spec/store.md`).

use core::fmt::Write as _;

/// First eight bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"HELMSEG1";
/// Segment format version written and accepted.
pub(crate) const VERSION: u32 = 1;
/// Segment header: magic (8) | version u32 LE | first index u64 LE | CRC-32 of the 20
/// bytes before it, u32 LE.
pub(crate) const HEADER_LEN: usize = 24;
/// [`HEADER_LEN`] as a file offset.
pub(crate) const HEADER_LEN_U64: u64 = 24;
/// Bytes a frame adds to its record: length (4) and CRC-32 (4).
pub(crate) const FRAME_OVERHEAD: usize = 8;
/// Largest record a frame may hold (the record format's limit).
/// Largest frame payload the format allows: 16 MiB. A record store holds records of
/// at most 64 KiB (`StoreOptions::max_record`); a blob store holds larger values.
pub const MAX_FRAME: usize = 16 << 20;
/// Suffix of segment file names.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Digits of the first index in a segment file name.
pub(crate) const NAME_DIGITS: usize = 20;

/// CRC-32 (ISO-HDLC, the zlib/PNG polynomial) of `parts` concatenated.
pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The header of a segment whose first record has index `first_index`.
pub(crate) fn encode_header(first_index: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let (body, tail) = h.split_at_mut(20);
    let (magic, rest) = body.split_at_mut(8);
    magic.copy_from_slice(&MAGIC);
    let (version, first) = rest.split_at_mut(4);
    version.copy_from_slice(&VERSION.to_le_bytes());
    first.copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32(&[body]);
    tail.copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a complete header: the first index, or the rule it breaks.
pub(crate) fn decode_header(h: &[u8; HEADER_LEN]) -> Result<u64, String> {
    let (body, tail) = h.split_at(20);
    let (magic, rest) = body.split_at(8);
    let (version, first) = rest.split_at(4);
    if magic != MAGIC {
        return Err("segment header: magic is not HELMSEG1".into());
    }
    let version = u32::from_le_bytes(le4(version));
    if version != VERSION {
        return Err(format!(
            "segment header: version {version} (this reader knows version {VERSION})"
        ));
    }
    let stored = u32::from_le_bytes(le4(tail));
    let computed = crc32(&[body]);
    if stored != computed {
        return Err(format!(
            "segment header: checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Ok(u64::from_le_bytes(le8(first)))
}

/// Appends the frame of `record` (whose length the caller checked) to `buf`.
pub(crate) fn push_frame(buf: &mut Vec<u8>, record: &[u8]) {
    let len = u32::try_from(record.len()).unwrap_or(u32::MAX).to_le_bytes();
    let crc = crc32(&[&len, record]);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(record);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// Whether `len` is a length a frame may carry: 1 ..= `max` (at most [`MAX_FRAME`]).
pub(crate) fn valid_record_len(len: usize, max: usize) -> bool {
    len != 0 && len <= max.min(MAX_FRAME)
}

/// The file name of the segment whose first record has index `first_index`.
pub(crate) fn segment_name(first_index: u64) -> String {
    let mut s = String::with_capacity(NAME_DIGITS.saturating_add(SEGMENT_SUFFIX.len()));
    // Writing into a String cannot fail.
    let _ = write!(s, "{first_index:020}{SEGMENT_SUFFIX}");
    s
}

/// What a directory entry is to the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryName {
    /// A segment file whose name carries this first index.
    Segment(u64),
    /// A name ending in `.seg` that is not 20 digits followed by `.seg`.
    BadSegment,
    /// Anything else (the `LOCK` file, editor droppings): ignored.
    Other,
}

/// Classifies a directory entry name.
pub(crate) fn parse_segment_name(name: &str) -> EntryName {
    let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
        return EntryName::Other;
    };
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return EntryName::BadSegment;
    }
    match stem.parse::<u64>() {
        Ok(n) => EntryName::Segment(n),
        Err(_) => EntryName::BadSegment,
    }
}

/// The first four bytes of `b` (zero-padded; callers pass exactly four).
pub(crate) fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    a
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    a
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let h = encode_header(0x0102_0304_0506_0708);
        assert_eq!(&h[..8], b"HELMSEG1");
        assert_eq!(decode_header(&h).unwrap(), 0x0102_0304_0506_0708);
        for i in 0..HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x01;
            assert!(decode_header(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn frame_layout() {
        let mut buf = Vec::new();
        push_frame(&mut buf, b"abc");
        assert_eq!(&buf[..4], &[3, 0, 0, 0]);
        assert_eq!(&buf[4..7], b"abc");
        assert_eq!(buf[7..].len(), 4);
        let crc = u32::from_le_bytes(le4(&buf[7..]));
        assert_eq!(crc, crc32(&[&[3, 0, 0, 0], b"abc"]));
        // Known answer: CRC-32/ISO-HDLC of "123456789" is cbf43926.
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xcbf4_3926);
    }

    #[test]
    fn names() {
        assert_eq!(segment_name(0), "00000000000000000000.seg");
        assert_eq!(segment_name(u64::MAX), "18446744073709551615.seg");
        assert_eq!(parse_segment_name("00000000000000000042.seg"), EntryName::Segment(42));
        assert_eq!(
            parse_segment_name("18446744073709551615.seg"),
            EntryName::Segment(u64::MAX)
        );
        assert_eq!(parse_segment_name("99999999999999999999.seg"), EntryName::BadSegment);
        assert_eq!(parse_segment_name("42.seg"), EntryName::BadSegment);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), EntryName::BadSegment);
        assert_eq!(parse_segment_name("LOCK"), EntryName::Other);
        assert!(valid_record_len(1, 65_536) && valid_record_len(65_536, 65_536));
        assert!(!valid_record_len(0, 65_536) && !valid_record_len(65_537, 65_536));
        assert!(valid_record_len(MAX_FRAME, usize::MAX) && !valid_record_len(MAX_FRAME + 1, usize::MAX));
    }
}
