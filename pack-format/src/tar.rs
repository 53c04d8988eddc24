//! Canonical ustar headers: written one way, read strictly.
//!
//! A header is valid only if it is byte-for-byte the header this module would write for
//! the same name and size, so every header byte is significant.

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// Longest entry name (the ustar `name` field; `prefix` is always empty).
pub const MAX_NAME: usize = 100;
/// Largest entry size: 11 octal digits.
pub const MAX_ENTRY_SIZE: u64 = 0o77_777_777_777;

/// Why a header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The stored checksum does not match the header.
    Checksum,
    /// Not a regular file (a link, device, directory, FIFO or extension header).
    NotRegularFile,
    /// The name is empty, absolute, contains `..`, or uses characters outside `[a-z0-9._/-]`.
    BadPath,
    /// Valid tar, but not the canonical header (mode, owner, times, magic, padding...).
    NonCanonical,
}

/// A parsed canonical header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    name: [u8; MAX_NAME],
    name_len: usize,
    /// Entry size in bytes.
    pub size: u64,
}

impl Header {
    /// The entry name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(self.name.get(..self.name_len).unwrap_or(&[])).unwrap_or("")
    }
}

fn octal(field: &mut [u8], value: u64) {
    // `digits` octal digits, zero-padded, then one NUL.
    let digits = field.len().saturating_sub(1);
    let mut v = value;
    for i in (0..digits).rev() {
        if let Some(b) = field.get_mut(i) {
            *b = b'0'.wrapping_add((v & 7) as u8);
        }
        v >>= 3;
    }
    if let Some(last) = field.last_mut() {
        *last = 0;
    }
}

fn path_ok(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.first() != Some(&b'/')
        && name.last() != Some(&b'/')
        && name
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b))
        && name
            .split(|&b| b == b'/')
            .all(|part| !part.is_empty() && part != b"." && part != b"..")
}

/// Writes the canonical header for a regular file `name` of `size` bytes: mode 0644,
/// uid/gid 0, empty user and group names, mtime 0, ustar magic, no prefix.
pub fn encode(name: &str, size: u64) -> Option<[u8; BLOCK]> {
    if !path_ok(name.as_bytes()) || size > MAX_ENTRY_SIZE {
        return None;
    }
    let mut h = [0u8; BLOCK];
    h.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
    octal(h.get_mut(100..108)?, 0o644); // mode
    octal(h.get_mut(108..116)?, 0); // uid
    octal(h.get_mut(116..124)?, 0); // gid
    octal(h.get_mut(124..136)?, size);
    octal(h.get_mut(136..148)?, 0); // mtime
    *h.get_mut(156)? = b'0'; // typeflag: regular file
    h.get_mut(257..263)?.copy_from_slice(b"ustar\0");
    h.get_mut(263..265)?.copy_from_slice(b"00");
    octal(h.get_mut(329..337)?, 0); // devmajor
    octal(h.get_mut(337..345)?, 0); // devminor
                                    // Checksum: sum of all bytes with the checksum field as eight spaces; stored as six
                                    // octal digits, NUL, space.
    h.get_mut(148..156)?.copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(h.get_mut(148..155)?, sum);
    *h.get_mut(155)? = b' ';
    Some(h)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let digits = field.iter().take_while(|&&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    let mut any = false;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(d.wrapping_sub(b'0')))?;
        any = true;
    }
    any.then_some(v)
}

/// Reads a header strictly. The caller has already checked it is not an all-zero block.
pub fn decode(h: &[u8; BLOCK]) -> Result<Header, HeaderError> {
    let stored = parse_octal(h.get(148..156).unwrap_or(&[])).ok_or(HeaderError::Checksum)?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return Err(HeaderError::Checksum);
    }
    if h.get(156) != Some(&b'0') {
        return Err(HeaderError::NotRegularFile);
    }
    let name_field = h.get(..MAX_NAME).unwrap_or(&[]);
    let name_len = name_field.iter().position(|&b| b == 0).unwrap_or(MAX_NAME);
    let name_bytes = name_field.get(..name_len).unwrap_or(&[]);
    let prefix_empty = h.get(345..500).is_some_and(|p| p.iter().all(|&b| b == 0));
    if !path_ok(name_bytes) || !prefix_empty {
        return Err(HeaderError::BadPath);
    }
    let size = parse_octal(h.get(124..136).unwrap_or(&[])).ok_or(HeaderError::NonCanonical)?;
    let name = core::str::from_utf8(name_bytes).map_err(|_| HeaderError::BadPath)?;
    let canonical = encode(name, size).ok_or(HeaderError::NonCanonical)?;
    if canonical != *h {
        return Err(HeaderError::NonCanonical);
    }
    let mut out = Header {
        name: [0; MAX_NAME],
        name_len,
        size,
    };
    out.name
        .get_mut(..name_len)
        .ok_or(HeaderError::BadPath)?
        .copy_from_slice(name_bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let h = encode("records/000000.cbor", 1234).unwrap();
        let d = decode(&h).unwrap();
        assert_eq!(d.name(), "records/000000.cbor");
        assert_eq!(d.size, 1234);
        let mut m = h;
        m[265] = b'r'; // a user name
                       // Fix the checksum so only canonicality is at stake.
        m[148..156].copy_from_slice(b"        ");
        let sum: u64 = m.iter().map(|&b| u64::from(b)).sum();
        octal(&mut m[148..155], sum);
        m[155] = b' ';
        assert_eq!(decode(&m), Err(HeaderError::NonCanonical));
        let mut s = h;
        s[156] = b'2'; // symlink
        assert_eq!(decode(&s), Err(HeaderError::Checksum));
    }

    #[test]
    fn paths() {
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "A", "a/", "./a", "a\\b"] {
            assert!(encode(bad, 1).is_none(), "{bad}");
        }
        assert!(encode("blobs/sha256/00ff", 1).is_some());
    }
}
