//! Transport wrappers (feature `std`): `.tar.zst` and `.tar.gz`, detected by magic bytes.
//!
//! Signatures and hashes cover the uncompressed tar; the wrappers only make it smaller in
//! transit. Decompression is bounded: a window limit (zstd), a cap on decompressed bytes
//! and on the expansion ratio, so a decompression bomb is an error, not an OOM or a
//! full disk. Nothing is written anywhere: the caller reads the tar as a stream.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "std-only module"
)]

use std::boxed::Box;
use std::io::{self, Read};
use std::vec::Vec;

/// How a pack is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapper {
    /// A plain ustar archive.
    None,
    /// Zstandard (magic `28 b5 2f fd`).
    Zstd,
    /// gzip (magic `1f 8b`).
    Gzip,
}

impl Wrapper {
    /// Detects the wrapper from the first bytes.
    pub fn detect(prefix: &[u8]) -> Wrapper {
        if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Wrapper::Zstd
        } else if prefix.starts_with(&[0x1f, 0x8b]) {
            Wrapper::Gzip
        } else {
            Wrapper::None
        }
    }

    /// The conventional file suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Wrapper::None => ".tar",
            Wrapper::Zstd => ".tar.zst",
            Wrapper::Gzip => ".tar.gz",
        }
    }
}

/// Decompression limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest zstd window accepted (the decoder's memory), bytes.
    pub max_window: u64,
    /// Most decompressed bytes.
    pub max_output: u64,
    /// Most decompressed bytes per compressed byte, checked once output passes 1 MiB.
    pub max_ratio: u64,
}

impl Default for Limits {
    /// 8 MiB window, 64 GiB output, ratio 200: a pack of signed records compresses
    /// about 2–4 times; 200 leaves room for blobs of text while stopping bombs early.
    fn default() -> Self {
        Limits {
            max_window: 8 << 20,
            max_output: 64 << 30,
            max_ratio: 200,
        }
    }
}

fn invalid(msg: impl Into<std::string::String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// What the decompressor has consumed from the source, shared with [`Bounded`].
#[derive(Default)]
struct SourceState {
    bytes: std::cell::Cell<u64>,
    /// The source itself failed (an I/O error, not a corrupt stream).
    failed: std::cell::Cell<bool>,
}

/// Counts bytes read from the compressed source and notes its own failures.
struct Counting<R> {
    inner: R,
    state: std::rc::Rc<SourceState>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.state.failed.set(true))?;
        self.state.bytes.set(self.state.bytes.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Reads one byte past the end of the compressed stream: `true` if there was one.
type TrailingCheck<D> = Box<dyn FnMut(&mut D) -> io::Result<bool>>;

/// Enforces output and ratio limits, and that nothing follows the compressed stream.
struct Bounded<D> {
    decoder: D,
    source: std::rc::Rc<SourceState>,
    output: u64,
    limits: Limits,
    check_trailing: Option<TrailingCheck<D>>,
}

impl<D: Read> Read for Bounded<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.decoder.read(buf) {
            Ok(n) => n,
            // The decompressor's complaints (truncation, corruption) are the pack's fault.
            Err(e) if !self.source.failed.get() => {
                return Err(invalid(std::format!("corrupt or truncated stream: {e}")))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            if let Some(mut check) = self.check_trailing.take() {
                if check(&mut self.decoder)? {
                    return Err(invalid("data follows the compressed stream"));
                }
            }
            return Ok(0);
        }
        self.output = self.output.saturating_add(n as u64);
        if self.output > self.limits.max_output {
            return Err(invalid(std::format!(
                "decompressed size exceeds {} bytes",
                self.limits.max_output
            )));
        }
        let compressed = self.source.bytes.get().max(1);
        if self.output > (1 << 20) && self.output.checked_div(compressed).unwrap_or(u64::MAX) > self.limits.max_ratio {
            return Err(invalid(std::format!(
                "expansion ratio above {} (a decompression bomb?)",
                self.limits.max_ratio
            )));
        }
        Ok(n)
    }
}

/// Wraps `source` in the decompressor its first bytes call for, with `limits`.
/// Returns the wrapper found and a reader of the uncompressed tar.
pub fn open<'a, R: Read + 'a>(mut source: R, limits: Limits) -> io::Result<(Wrapper, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        let n = source.read(magic.get_mut(got..).unwrap_or(&mut []))?;
        if n == 0 {
            break;
        }
        got = got.saturating_add(n);
    }
    let prefix = magic.get(..got).unwrap_or(&[]).to_vec();
    let wrapper = Wrapper::detect(&prefix);
    let state = std::rc::Rc::new(SourceState::default());
    let counted = Counting {
        inner: io::Cursor::new(prefix).chain(source),
        state: state.clone(),
    };
    let reader: Box<dyn Read + 'a> = match wrapper {
        Wrapper::None => Box::new(counted),
        Wrapper::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(counted, limits.max_window)
                .map_err(|e| invalid(std::format!("zstd: {e}")))?;
            Box::new(Bounded {
                decoder,
                source: state,
                output: 0,
                limits,
                check_trailing: Some(Box::new(|d: &mut ruzstd::decoding::StreamingDecoder<_, _>| {
                    // The decoder does not compare the frame's content checksum itself.
                    let frame = &d.decoder;
                    if frame.get_checksum_from_data() != frame.get_calculated_checksum()
                        && frame.get_checksum_from_data().is_some()
                    {
                        return Err(invalid("zstd content checksum does not match"));
                    }
                    let mut one = [0u8; 1];
                    Ok(d.get_mut().read(&mut one)? > 0)
                })),
            })
        }
        Wrapper::Gzip => {
            // Our own buffer, so that bytes after the gzip member can be seen.
            let decoder = flate2::bufread::GzDecoder::new(io::BufReader::new(counted));
            Box::new(Bounded {
                decoder,
                source: state,
                output: 0,
                limits,
                check_trailing: Some(Box::new(|d: &mut flate2::bufread::GzDecoder<io::BufReader<_>>| {
                    use std::io::BufRead;
                    Ok(!d.get_mut().fill_buf()?.is_empty())
                })),
            })
        }
    };
    Ok((wrapper, reader))
}

/// Wraps an uncompressed pack for transport, deterministically (zstd "fastest" level;
/// gzip level 6 with mtime 0, no file name, OS byte 255).
pub fn compress(tar: &[u8], wrapper: Wrapper) -> io::Result<Vec<u8>> {
    match wrapper {
        Wrapper::None => Ok(tar.to_vec()),
        Wrapper::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            tar,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
        Wrapper::Gzip => {
            use std::io::Write;
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(Vec::new(), flate2::Compression::new(6));
            enc.write_all(tar)?;
            enc.finish()
        }
    }
}
