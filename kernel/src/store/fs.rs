//! The file operations the store uses, behind a trait so that tests can put a simulated
//! disk ([`SimulatedFs`](super::SimulatedFs)) underneath.

use core::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The minimal file-system interface of the store. Implementations must be usable from
/// several threads at once: the store writes through one handle of a segment while
/// another thread `fsync`s it.
pub trait StoreFs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the store's exclusive writer lock on `dir` without blocking: `Ok(None)` if
    /// another holder has it. The lock is held until the returned guard is dropped, and
    /// must vanish with the process that holds it.
    fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn DirLock>>>;
    /// The names of the entries of `dir` (non-UTF-8 names may be left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` for reading and writing, empty (truncating a file left there).
    fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file, for reading and, if `write`, writing.
    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (files created or removed in it) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open segment file.
pub trait SegmentFile: Send + Sync + fmt::Debug {
    /// The file's length.
    fn size(&self) -> io::Result<u64>;
    /// Reads at `offset` into `buf`; `Ok(0)` at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`. On an error, any prefix of `data` may have been
    /// written.
    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the file's length.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A held writer lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// The name of the lock file in a store directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The operating system's file system (`std::fs`; the lock is `flock(2)` on a `LOCK`
/// file, which the kernel releases when the holding process dies, so `kill -9` never
/// leaves a stale lock). Unix only: elsewhere every operation fails with `Unsupported`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[cfg(unix)]
mod unix {
    use super::{DirLock, RealFs, SegmentFile, StoreFs, LOCK_FILE};
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::unix::fs::FileExt as _;
    use std::path::Path;
    use std::sync::Arc;

    #[derive(Debug)]
    struct RealFile(File);

    impl SegmentFile for RealFile {
        fn size(&self) -> io::Result<u64> {
            Ok(self.0.metadata()?.len())
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                match self.0.read_at(buf, offset) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            }
        }
        fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.0.write_all_at(data, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.set_len(len)
        }
    }

    #[derive(Debug)]
    struct FlockGuard {
        _file: File,
    }
    impl DirLock for FlockGuard {}

    impl StoreFs for RealFs {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            std::fs::create_dir_all(dir)
        }
        fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(LOCK_FILE))?;
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => Ok(Some(Box::new(FlockGuard { _file: file }))),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                if let Ok(name) = entry?.file_name().into_string() {
                    names.push(name);
                }
            }
            Ok(names)
        }
        fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            Ok(Arc::new(RealFile(f)))
        }
        fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn SegmentFile>> {
            let f = OpenOptions::new().read(true).write(write).open(path)?;
            Ok(Arc::new(RealFile(f)))
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            std::fs::remove_file(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            File::open(dir)?.sync_all()
        }
    }
}

#[cfg(not(unix))]
mod other {
    use super::{DirLock, RealFs, SegmentFile, StoreFs};
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the HELM store needs a Unix file system",
        ))
    }

    impl StoreFs for RealFs {
        fn create_dir_all(&self, _: &Path) -> io::Result<()> {
            unsupported()
        }
        fn lock(&self, _: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
            unsupported()
        }
        fn list(&self, _: &Path) -> io::Result<Vec<String>> {
            unsupported()
        }
        fn create(&self, _: &Path) -> io::Result<Arc<dyn SegmentFile>> {
            unsupported()
        }
        fn open(&self, _: &Path, _: bool) -> io::Result<Arc<dyn SegmentFile>> {
            unsupported()
        }
        fn remove(&self, _: &Path) -> io::Result<()> {
            unsupported()
        }
        fn sync_dir(&self, _: &Path) -> io::Result<()> {
            unsupported()
        }
    }
}
