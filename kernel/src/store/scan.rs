//! Reading segments: headers, frames, the directory listing, and recovery at open.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StoreError;
use super::format::{
    crc32, decode_header, encode_header, le4, parse_segment_name, segment_name, EntryName, HEADER_LEN, HEADER_LEN_U64,
    MAX_FRAME,
};
use super::fs::{SegmentFile, StoreFs};
use super::Recovery;

/// Bytes read from a segment at a time.
const CHUNK: usize = 256 * 1024;

/// A forward reader over the first `len` bytes of a file, in chunks.
struct Chunked<'a> {
    file: &'a dyn SegmentFile,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Bytes of `buf` consumed.
    pos: usize,
}

impl<'a> Chunked<'a> {
    fn new(file: &'a dyn SegmentFile, len: u64, at: u64) -> Self {
        Chunked {
            file,
            len,
            buf: Vec::new(),
            start: at,
            pos: 0,
        }
    }

    fn offset(&self) -> u64 {
        self.start.saturating_add(u64::try_from(self.pos).unwrap_or(u64::MAX))
    }

    /// The next `n` bytes, or `None` if the file (its first `len` bytes) ends first.
    fn take(&mut self, n: usize) -> io::Result<Option<&[u8]>> {
        let have = self.buf.len().saturating_sub(self.pos);
        if have < n {
            let consumed = self.pos.min(self.buf.len());
            self.buf.drain(..consumed);
            self.start = self.start.saturating_add(u64::try_from(consumed).unwrap_or(u64::MAX));
            self.pos = 0;
            let buf_end = self
                .start
                .saturating_add(u64::try_from(self.buf.len()).unwrap_or(u64::MAX));
            let avail = self.len.saturating_sub(buf_end);
            let want = n.saturating_sub(self.buf.len()).max(CHUNK);
            let want = usize::try_from(avail).map_or(want, |a| a.min(want));
            let old = self.buf.len();
            self.buf.resize(old.saturating_add(want), 0);
            let mut filled = old;
            while filled < self.buf.len() {
                let at = self.start.saturating_add(u64::try_from(filled).unwrap_or(u64::MAX));
                let Some(dst) = self.buf.get_mut(filled..) else { break };
                let k = self.file.read_at(at, dst)?;
                if k == 0 {
                    break;
                }
                filled = filled.saturating_add(k);
            }
            self.buf.truncate(filled);
            if self.buf.len() < n {
                return Ok(None);
            }
        }
        let from = self.pos;
        let to = from.saturating_add(n);
        self.pos = to;
        Ok(self.buf.get(from..to))
    }
}

/// How a scan of frames ended.
#[derive(Debug)]
pub(crate) enum Tail {
    /// At the end of the file, or at the record limit.
    Clean,
    /// At a bad or incomplete frame: why.
    Torn(String),
}

/// The result of scanning the frames of one segment.
#[derive(Debug)]
pub(crate) struct Frames {
    /// Complete, checksum-valid frames read.
    pub(crate) records: u64,
    /// Offset just after the last of them.
    pub(crate) end: u64,
    pub(crate) tail: Tail,
}

/// Reads the frames of a segment from just after its header until the end of the file
/// (`file_len`), `max_records` frames, or the first bad frame, handing each record to
/// `f` with its index.
pub(crate) fn scan_frames<E: From<StoreError>>(
    file: &dyn SegmentFile,
    path: &Path,
    file_len: u64,
    first_index: u64,
    max_records: u64,
    f: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Frames, E> {
    let mut r = Chunked::new(file, file_len, HEADER_LEN_U64);
    let mut records = 0u64;
    loop {
        let at = r.offset();
        let torn = |reason: String| {
            Ok(Frames {
                records,
                end: at,
                tail: Tail::Torn(reason),
            })
        };
        let remaining = file_len.saturating_sub(at);
        if records >= max_records || remaining == 0 {
            return Ok(Frames {
                records,
                end: at,
                tail: Tail::Clean,
            });
        }
        let len_bytes = match r.take(4) {
            Ok(Some(b)) => le4(b),
            Ok(None) => {
                return torn(format!(
                    "incomplete frame length ({remaining} bytes before the end of the file)"
                ))
            }
            Err(e) => return Err(StoreError::io("read", path, Some(at), e).into()),
        };
        let len = usize::try_from(u32::from_le_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len == 0 {
            return torn("frame length 0 (a frame carries 1 to 16 MiB)".into());
        }
        if len > MAX_FRAME {
            return torn(format!("frame length {len} exceeds {MAX_FRAME}"));
        }
        let need = len.saturating_add(4);
        let body = match r.take(need) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return torn(format!(
                    "incomplete frame: length {len} needs {} bytes, {remaining} before the end of the file",
                    need.saturating_add(4)
                ))
            }
            Err(e) => return Err(StoreError::io("read", path, Some(at), e).into()),
        };
        let (record, crc) = body.split_at(len);
        let stored = u32::from_le_bytes(le4(crc));
        let computed = crc32(&[&len_bytes, record]);
        if stored != computed {
            return torn(format!(
                "frame checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ));
        }
        let index = first_index
            .checked_add(records)
            .ok_or_else(|| StoreError::corrupt(path, at, "record index overflows 64 bits"))?;
        f(index, record)?;
        records = records.saturating_add(1);
    }
}

/// A segment's header as found.
#[derive(Debug)]
pub(crate) enum Header {
    /// Valid: the first index it names.
    Valid(u64),
    /// The file is shorter than a header.
    Short,
    /// A complete header breaking this rule.
    Bad(String),
}

pub(crate) fn read_header(file: &dyn SegmentFile, path: &Path, file_len: u64) -> Result<Header, StoreError> {
    if file_len < HEADER_LEN_U64 {
        return Ok(Header::Short);
    }
    let mut r = Chunked::new(file, HEADER_LEN_U64, 0);
    let mut h = [0u8; HEADER_LEN];
    match r.take(HEADER_LEN) {
        Ok(Some(b)) => h.copy_from_slice(b),
        Ok(None) => return Ok(Header::Short),
        Err(e) => return Err(StoreError::io("read", path, Some(0), e)),
    }
    Ok(match decode_header(&h) {
        Ok(first) => Header::Valid(first),
        Err(rule) => Header::Bad(rule),
    })
}

/// The segments of `dir`, sorted by first index.
pub(crate) fn list_segments(fs: &dyn StoreFs, dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let names = fs.list(dir).map_err(|e| StoreError::io("list", dir, None, e))?;
    let mut segs = Vec::new();
    for name in names {
        match parse_segment_name(&name) {
            EntryName::Segment(first) => segs.push((first, dir.join(name))),
            EntryName::BadSegment => {
                return Err(StoreError::corrupt(
                    dir.join(name),
                    0,
                    "segment file name is not 20 decimal digits (a first index) followed by .seg",
                ))
            }
            EntryName::Other => {}
        }
    }
    segs.sort();
    Ok(segs)
}

fn file_len(file: &dyn SegmentFile, path: &Path) -> Result<u64, StoreError> {
    file.size().map_err(|e| StoreError::io("stat", path, None, e))
}

fn gap(path: &Path, first: u64, expected: u64) -> StoreError {
    let rule = if expected == 0 {
        format!("the first segment starts at index {first}, not 0 (missing segments)")
    } else {
        format!("segment starts at index {first}, the previous one ends at {expected} (missing or extra segment)")
    };
    StoreError::corrupt(path, 0, rule)
}

/// Which records a read of segments hands out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    /// The index the first of the segments must start at: 0 for a whole store, or the
    /// first index of the segment holding `from` (taken from the writer's list).
    pub(crate) start: u64,
    /// The first index handed out: the records of the first segment before it are
    /// still read and checked (frames have no index to seek to), not handed out.
    pub(crate) from: u64,
    /// The index to stop at (exclusive): at most this many records from `start`.
    pub(crate) limit: u64,
}

impl Span {
    /// Every record, up to `limit`.
    pub(crate) fn all(limit: u64) -> Self {
        Span {
            start: 0,
            from: 0,
            limit,
        }
    }
}

/// Reads the records of `segs` in order, the first segment starting at `span.start`, up
/// to index `span.limit` (exclusive), handing those from `span.from` on to `f`. Returns
/// the index reached (the number of records from index 0 up to where the read ended).
/// With `lenient_tail` (a reader without the lock), an incomplete header or frame in the
/// last segment ends the read; otherwise anything short of `span.limit` is `Corrupt`.
pub(crate) fn read_segments<E: From<StoreError>>(
    fs: &dyn StoreFs,
    segs: &[(u64, PathBuf)],
    span: Span,
    lenient_tail: bool,
    f: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let Span { start, from, limit } = span;
    let mut from_on = |i: u64, r: &[u8]| if i >= from { f(i, r) } else { Ok(()) };
    let mut expected = start;
    let last = segs.len().saturating_sub(1);
    for (i, (first, path)) in segs.iter().enumerate() {
        let is_last = i == last;
        if expected >= limit {
            break;
        }
        let file = fs
            .open(path, false)
            .map_err(|e| StoreError::io("open", path, None, e))?;
        let len = file_len(&*file, path)?;
        match read_header(&*file, path, len)? {
            Header::Valid(h) if h == *first => {}
            Header::Valid(h) => {
                return Err(
                    StoreError::corrupt(path, 0, format!("header names first index {h}, file name {first}")).into(),
                )
            }
            // A segment being created by the writer.
            Header::Short | Header::Bad(_) if lenient_tail && is_last && len <= HEADER_LEN_U64 => break,
            Header::Short => {
                return Err(StoreError::corrupt(path, len, "segment shorter than its 24-byte header").into())
            }
            Header::Bad(rule) => return Err(StoreError::corrupt(path, 0, rule).into()),
        }
        if *first != expected {
            return Err(gap(path, *first, expected).into());
        }
        let frames = scan_frames(&*file, path, len, *first, limit.saturating_sub(expected), &mut from_on)?;
        expected = expected.saturating_add(frames.records);
        if let Tail::Torn(reason) = frames.tail {
            if lenient_tail && is_last {
                break;
            }
            return Err(StoreError::corrupt(path, frames.end, reason).into());
        }
    }
    if !lenient_tail && expected < limit {
        let path = segs.last().map_or_else(PathBuf::new, |(_, p)| p.clone());
        return Err(StoreError::corrupt(
            path,
            0,
            format!(
                "the store holds {expected} records, {limit} were appended (a segment shrank underneath the store)"
            ),
        )
        .into());
    }
    Ok(expected)
}

/// Why creating a segment failed, and whether the store must be poisoned (the failed
/// step was an `fsync`, or cleaning up failed).
#[derive(Debug)]
pub(crate) struct CreateError {
    pub(crate) error: StoreError,
    pub(crate) poison: bool,
}

/// Creates the segment `path` starting at `first`: header written and `fsync`ed, then
/// the directory `fsync`ed. A failed header write removes the file again.
pub(crate) fn create_segment(
    fs: &dyn StoreFs,
    dir: &Path,
    path: &Path,
    first: u64,
) -> Result<Arc<dyn SegmentFile>, CreateError> {
    let plain = |error| CreateError { error, poison: false };
    let fatal = |error| CreateError { error, poison: true };
    let file = fs
        .create(path)
        .map_err(|e| plain(StoreError::io("create", path, None, e)))?;
    if let Err(e) = file.write_all_at(0, &encode_header(first)) {
        let error = StoreError::io("write", path, Some(0), e);
        let cleaned = fs.remove(path).and_then(|()| fs.sync_dir(dir));
        return Err(CreateError {
            error,
            poison: cleaned.is_err(),
        });
    }
    file.sync_data()
        .map_err(|e| fatal(StoreError::io("fdatasync", path, None, e)))?;
    fs.sync_dir(dir)
        .map_err(|e| fatal(StoreError::io("fsync directory", dir, None, e)))?;
    Ok(file)
}

/// What recovery leaves for the writer.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<(u64, PathBuf)>,
    pub(crate) file: Arc<dyn SegmentFile>,
    pub(crate) offset: u64,
    /// The last segment's length: more than `offset` when a zero tail (a reservation) was
    /// kept.
    pub(crate) reserved: u64,
    pub(crate) next_index: u64,
    pub(crate) report: Recovery,
}

/// Scans the store in `dir` (locked by the caller), cuts a torn tail of the last
/// segment, and makes what remains durable.
pub(crate) fn recover(fs: &dyn StoreFs, dir: &Path) -> Result<Recovered, StoreError> {
    let mut segs = list_segments(fs, dir)?;
    let Some((last_first, last_path)) = segs.last().cloned() else {
        let path = dir.join(segment_name(0));
        let file = create_segment(fs, dir, &path, 0).map_err(|e| e.error)?;
        return Ok(Recovered {
            segments: vec![(0, path)],
            file,
            offset: HEADER_LEN_U64,
            reserved: HEADER_LEN_U64,
            next_index: 0,
            report: Recovery {
                records: 0,
                segments: 1,
                truncated_bytes: 0,
                torn: None,
                reserved_bytes: 0,
            },
        });
    };
    // Every segment but the last must be complete and contiguous.
    let mut expected = 0u64;
    let count = segs.len().saturating_sub(1);
    for (first, path) in segs.iter().take(count) {
        let file = fs
            .open(path, false)
            .map_err(|e| StoreError::io("open", path, None, e))?;
        let len = file_len(&*file, path)?;
        match read_header(&*file, path, len)? {
            Header::Valid(h) if h == *first => {}
            Header::Valid(h) => {
                return Err(StoreError::corrupt(
                    path,
                    0,
                    format!("header names first index {h}, file name {first}"),
                ))
            }
            Header::Short => {
                return Err(StoreError::corrupt(
                    path,
                    len,
                    "segment shorter than its 24-byte header",
                ))
            }
            Header::Bad(rule) => return Err(StoreError::corrupt(path, 0, rule)),
        }
        if *first != expected {
            return Err(gap(path, *first, expected));
        }
        let frames = scan_frames::<StoreError>(&*file, path, len, *first, u64::MAX, &mut |_, _| Ok(()))?;
        if let Tail::Torn(reason) = frames.tail {
            return Err(StoreError::corrupt(
                path,
                frames.end,
                format!("{reason}, in a segment that is not the last"),
            ));
        }
        expected = expected.saturating_add(frames.records);
    }
    // The last segment: a torn tail is cut.
    let path = last_path;
    let file = fs
        .open(&path, true)
        .map_err(|e| StoreError::io("open", &path, None, e))?;
    let len = file_len(&*file, &path)?;
    let header = read_header(&*file, &path, len)?;
    match &header {
        Header::Valid(h) if *h != last_first => {
            return Err(StoreError::corrupt(
                &path,
                0,
                format!("header names first index {h}, file name {last_first}"),
            ))
        }
        Header::Bad(rule) if len > HEADER_LEN_U64 => return Err(StoreError::corrupt(&path, 0, rule.clone())),
        _ => {}
    }
    if last_first != expected {
        return Err(gap(&path, last_first, expected));
    }
    let mut report = Recovery {
        records: 0,
        segments: u32::try_from(segs.len()).unwrap_or(u32::MAX),
        truncated_bytes: 0,
        torn: None,
        reserved_bytes: 0,
    };
    let name = path.display();
    let mut reserved = HEADER_LEN_U64;
    let offset = match header {
        Header::Valid(_) => {
            let frames = scan_frames::<StoreError>(&*file, &path, len, last_first, u64::MAX, &mut |_, _| Ok(()))?;
            expected = expected.saturating_add(frames.records);
            reserved = frames.end;
            if let Tail::Torn(reason) = frames.tail {
                if all_zero(&*file, &path, frames.end, len)? {
                    // A reservation (§3): no frame starts with a zero length, so a zero
                    // tail holds no record, torn or not. Kept for the next appends.
                    reserved = len;
                    report.reserved_bytes = len.saturating_sub(frames.end);
                } else {
                    let cut = len.saturating_sub(frames.end);
                    file.set_len(frames.end)
                        .map_err(|e| StoreError::io("truncate", &path, Some(frames.end), e))?;
                    report.truncated_bytes = cut;
                    report.torn = Some(format!(
                        "{name}: torn tail at offset {}: {reason}; cut {cut} bytes",
                        frames.end
                    ));
                }
            }
            frames.end
        }
        // An interrupted segment creation: no frame can follow a header that was never
        // made durable, so no record is lost by writing it again.
        Header::Short | Header::Bad(_) => {
            file.set_len(0)
                .map_err(|e| StoreError::io("truncate", &path, Some(0), e))?;
            file.write_all_at(0, &encode_header(last_first))
                .map_err(|e| StoreError::io("write", &path, Some(0), e))?;
            report.truncated_bytes = len;
            report.torn = Some(format!(
                "{name}: incomplete segment header ({len} of {HEADER_LEN} bytes) from an interrupted segment creation; header written again"
            ));
            HEADER_LEN_U64
        }
    };
    // What was read is now acknowledged history: make it durable (a previous process may
    // have died before its last fsync).
    file.sync_data()
        .map_err(|e| StoreError::io("fdatasync", &path, None, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync directory", dir, None, e))?;
    report.records = expected;
    segs.shrink_to_fit();
    Ok(Recovered {
        segments: segs,
        file,
        offset,
        reserved,
        next_index: expected,
        report,
    })
}

/// Whether the bytes `from..len` of `file` are all zero.
pub(crate) fn all_zero(file: &dyn SegmentFile, path: &Path, from: u64, len: u64) -> Result<bool, StoreError> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at < len {
        let want = usize::try_from(len.saturating_sub(at)).map_or(CHUNK, |n| n.min(CHUNK));
        let Some(dst) = buf.get_mut(..want) else { break };
        let n = file
            .read_at(at, dst)
            .map_err(|e| StoreError::io("read", path, Some(at), e))?;
        if n == 0 {
            // The file shrank underneath us: nothing more to examine.
            break;
        }
        if dst.get(..n).is_some_and(|b| b.iter().any(|&x| x != 0)) {
            return Ok(false);
        }
        at = at.saturating_add(n as u64);
    }
    Ok(true)
}
