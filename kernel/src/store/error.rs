//! The store's error type.

use core::fmt;
use std::io;
use std::path::PathBuf;

/// Why a store operation failed. Every variant that concerns a file names it; `Corrupt`
/// also names the offset and the rule broken.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer (another process, or another [`Store`](super::Store) in this one)
    /// holds the store's `LOCK` file.
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A file operation failed. After a failed write the store has been cut back to its
    /// last complete frame and stays usable; a failed `fsync` also poisons it.
    Io {
        /// The operation: `write`, `fdatasync`, `create`, `open`, `read`, ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The offset in the file, where the operation has one.
        offset: Option<u64>,
        /// The operating system's error.
        source: io::Error,
    },
    /// The store's files break a rule of `spec/store.md` in a place where cutting them
    /// back could lose acknowledged records: the store refuses to open.
    Corrupt {
        /// The segment file (or the directory, for a missing segment).
        path: PathBuf,
        /// Offset in that file.
        offset: u64,
        /// The rule broken.
        rule: String,
    },
    /// An earlier `fsync` failed (the operating system may have dropped the data it
    /// could not write), or cleaning up after a failed write failed: every append and
    /// wait fails until the store is reopened, which runs recovery.
    Poisoned {
        /// The first failure.
        reason: String,
    },
    /// A record in an append batch is empty or larger than the store takes; nothing of the
    /// batch was written.
    InvalidRecord {
        /// The largest record this store takes.
        max: usize,
        /// Position of the record in the batch.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// A ticket beyond what this store has appended (from another store instance).
    InvalidTicket {
        /// The ticket's position.
        ticket: u64,
        /// Records this store has appended.
        appended: u64,
    },
}

impl StoreError {
    /// The operating system's error kind, for `Io` errors (`StorageFull` for ENOSPC,
    /// `ReadOnlyFilesystem` for EROFS).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StoreError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, offset: Option<u64>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            offset,
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, rule: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            offset,
            rule: rule.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { dir } => write!(
                f,
                "store {}: locked by another writer (another process or Store holds {}/LOCK)",
                dir.display(),
                dir.display()
            ),
            StoreError::Io {
                op,
                path,
                offset: Some(o),
                source,
            } => {
                write!(f, "{op} {} at offset {o}: {source}", path.display())
            }
            StoreError::Io {
                op,
                path,
                offset: None,
                source,
            } => write!(f, "{op} {}: {source}", path.display()),
            StoreError::Corrupt { path, offset, rule } => write!(
                f,
                "{} at offset {offset}: {rule} (refusing to open: cutting here could lose acknowledged records)",
                path.display()
            ),
            StoreError::Poisoned { reason } => {
                write!(
                    f,
                    "store poisoned by an earlier failure ({reason}); reopen it to run recovery"
                )
            }
            StoreError::InvalidRecord { position, len, max } => write!(
                f,
                "record {position} of the batch is {len} bytes; this store takes 1 to {max} bytes"
            ),
            StoreError::InvalidTicket { ticket, appended } => {
                write!(
                    f,
                    "ticket {ticket} is beyond the {appended} records this store appended"
                )
            }
        }
    }
}

impl core::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
