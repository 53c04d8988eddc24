//! Framing records in a CBOR sequence (RFC 8742) from their heads alone, as a pack
//! reader does: tag 18, array of 4, byte string, empty map, byte string, byte string of
//! 64 bytes (spec/evidencepack.md §2).

/// Why a sequence does not frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The bytes at the offset are not the heads of a tagged COSE_Sign1 record.
    NotARecord,
    /// The sequence ends inside a record.
    Truncated,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::NotARecord => "not the start of a record (tagged COSE_Sign1)",
            FrameError::Truncated => "the data ends inside a record",
        })
    }
}

/// The length of the record at the start of `buf`; `Ok(None)` if more bytes are needed
/// to tell. The pack reader's own framer, so `inspect` and `export` frame exactly as
/// verification does.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    pack_format::record_len(buf).map_err(|_| FrameError::NotARecord)
}

/// Splits a whole CBOR sequence into records. On failure, the byte offset and why.
pub(crate) fn split(data: &[u8]) -> Result<Vec<&[u8]>, (usize, FrameError)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
        match frame_len(rest) {
            Ok(Some(n)) if n <= rest.len() => {
                out.push(rest.get(..n).unwrap_or(&[]));
                pos = pos.saturating_add(n);
            }
            Ok(_) => return Err((pos, FrameError::Truncated)),
            Err(e) => return Err((pos, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_sample_records() {
        let run = helm_test_vectors::sample_run(1, 3, 1000);
        let seq: Vec<u8> = run.records.concat();
        let parts = split(&seq).unwrap();
        assert_eq!(parts.len(), run.records.len());
        for (a, b) in parts.iter().zip(&run.records) {
            assert_eq!(*a, b.as_slice());
        }
        let truncated = &seq[..seq.len() - 1];
        assert_eq!(split(truncated).unwrap_err().1, FrameError::Truncated);
        assert_eq!(split(b"\x01\x02").unwrap_err(), (0, FrameError::NotARecord));
        assert!(split(&[]).unwrap().is_empty());
    }
}
