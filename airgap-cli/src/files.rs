//! Reading inputs and writing outputs safely.
//!
//! Outputs are written to a temporary file in the destination's directory, synced, and
//! then moved into place, so a failure leaves nothing half-written. Without `force` the
//! final step is a hard link, which fails if the destination exists: an existing file
//! is never replaced, even if it appears while we write.

use core::cell::Cell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::status::CliError;

/// Where a pack or record stream comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Standard input (`-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    pub(crate) fn from_arg(p: PathBuf) -> Input {
        if p.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(p)
        }
    }

    /// For messages and reports: the path, or `-`.
    pub(crate) fn display(&self) -> String {
        match self {
            Input::Stdin => "-".into(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// Opens the input.
    pub(crate) fn open(&self) -> Result<Opened, CliError> {
        let count = Rc::new(Cell::new(0u64));
        match self {
            Input::Stdin => {
                let r = Counting {
                    inner: io::stdin().lock(),
                    count: count.clone(),
                };
                Ok(Opened {
                    reader: Box::new(io::BufReader::with_capacity(256 << 10, r)),
                    read: count,
                    size: None,
                })
            }
            Input::File(p) => {
                let f = File::open(p).map_err(|e| CliError::io(format!("cannot open {}", p.display()), &e))?;
                let meta = f
                    .metadata()
                    .map_err(|e| CliError::io(format!("cannot read {}", p.display()), &e))?;
                if meta.is_dir() {
                    return Err(CliError::usage(format!("{} is a directory", p.display())));
                }
                let size = meta.is_file().then_some(meta.len());
                let r = Counting {
                    inner: f,
                    count: count.clone(),
                };
                Ok(Opened {
                    reader: Box::new(io::BufReader::with_capacity(256 << 10, r)),
                    read: count,
                    size,
                })
            }
        }
    }

    /// A regular file, opened so that it can be read twice (pack-format's two-pass
    /// verification needs less memory); `None` for standard input and other files.
    pub(crate) fn open_seekable(&self) -> Result<Option<SeekableOpened>, CliError> {
        let Input::File(p) = self else { return Ok(None) };
        let f = File::open(p).map_err(|e| CliError::io(format!("cannot open {}", p.display()), &e))?;
        let meta = f
            .metadata()
            .map_err(|e| CliError::io(format!("cannot read {}", p.display()), &e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let count = Rc::new(Cell::new(0u64));
        let r = Counting {
            inner: f,
            count: count.clone(),
        };
        Ok(Some(SeekableOpened {
            reader: io::BufReader::with_capacity(256 << 10, r),
            read: count,
            size: meta.len(),
        }))
    }

    /// Reads the whole input.
    pub(crate) fn read_all(&self) -> Result<Vec<u8>, CliError> {
        let mut buf = Vec::new();
        self.open()?
            .reader
            .read_to_end(&mut buf)
            .map_err(|e| CliError::io(format!("cannot read {}", self.display()), &e))?;
        Ok(buf)
    }
}

/// An opened input.
pub(crate) struct Opened {
    /// The bytes, buffered.
    pub(crate) reader: Box<dyn Read>,
    /// How many bytes were read from the source so far (for progress reports).
    pub(crate) read: Rc<Cell<u64>>,
    /// The size, if the input is a regular file.
    pub(crate) size: Option<u64>,
}

impl core::fmt::Debug for Opened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opened")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Counts the bytes read through it (for progress reports).
pub(crate) struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl core::fmt::Debug for SeekableOpened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SeekableOpened")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<R: io::Seek> io::Seek for Counting<R> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// A regular file opened by [`Input::open_seekable`].
pub(crate) struct SeekableOpened {
    /// The bytes, buffered.
    pub(crate) reader: io::BufReader<Counting<File>>,
    /// How many bytes were read so far (for progress reports; a second pass adds up).
    pub(crate) read: Rc<Cell<u64>>,
    pub(crate) size: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Reads a small file (trust roots, keys), refusing anything over `limit` bytes.
pub(crate) fn read_small(path: &Path, limit: u64, what: &str) -> Result<String, CliError> {
    let f = File::open(path).map_err(|e| CliError::io(format!("{what} {}: cannot open", path.display()), &e))?;
    let mut text = String::new();
    f.take(limit.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| CliError::io(format!("{what} {}: cannot read", path.display()), &e))?;
    if text.len() as u64 > limit {
        return Err(CliError::usage(format!(
            "{what} {}: larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Refuses early if `path` exists and `force` is off.
pub(crate) fn check_absent(path: &Path, force: bool) -> Result<(), CliError> {
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(CliError::usage(format!(
            "{} exists; refusing to overwrite it (use --force)",
            path.display()
        )));
    }
    Ok(())
}

/// Removes the temporary file unless it was moved into place.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce = getrandom::u64().unwrap_or(0);
    let name = format!(".{base}.{}.{nonce:016x}.tmp", std::process::id());
    dest.with_file_name(name)
}

/// Writes `data` to `dest` atomically with permissions `mode` (e.g. 0o644, 0o600).
pub(crate) fn write_atomic(dest: &Path, data: &[u8], force: bool, mode: u32) -> Result<(), CliError> {
    let ctx = |what: &str, e: &io::Error| CliError::io(format!("{what} {}", dest.display()), e);
    if dest.file_name().is_none() {
        return Err(CliError::usage(format!("{} is not a file name", dest.display())));
    }
    check_absent(dest, force)?;
    let tmp = temp_name(dest);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| ctx("cannot create a temporary file next to", &e))?;
    let mut guard = TempGuard { path: tmp, armed: true };
    // The umask may have narrowed the mode; make it exactly `mode`.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ctx("cannot set permissions for", &e))?;
    file.write_all(data).map_err(|e| ctx("cannot write", &e))?;
    file.sync_all().map_err(|e| ctx("cannot write", &e))?;
    drop(file);
    if force {
        fs::rename(&guard.path, dest).map_err(|e| ctx("cannot write", &e))?;
        guard.armed = false;
    } else {
        match fs::hard_link(&guard.path, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CliError::usage(format!(
                    "{} exists; refusing to overwrite it (use --force)",
                    dest.display()
                )));
            }
            // No hard links on this file system: the early check above must do.
            Err(_) => {
                fs::rename(&guard.path, dest).map_err(|e| ctx("cannot write", &e))?;
                guard.armed = false;
            }
        }
        // `guard` removes the temporary name; the destination keeps the content.
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one", false, 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert!(write_atomic(&p, b"two", false, 0o644).is_err());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", true, 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
