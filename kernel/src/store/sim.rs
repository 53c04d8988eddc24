//! A simulated disk for power-loss and fault-injection tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::fs::{DirLock, SegmentFile, StoreFs};

/// An in-memory file system that models what survives a power loss.
///
/// Each file has a current content (what reads see) and a synced length: the prefix
/// that [`SegmentFile::sync_data`] made durable. A new file also survives only once its
/// directory was synced. [`crash`](Self::crash) is a power loss followed by a reboot:
/// every byte not synced and every file whose directory entry was not synced is dropped,
/// all locks are released, and every handle opened before it fails with `EIO`; the store
/// then reopens on what survived.
///
/// Simplifications, all on the side of the store's own discipline: a write below the
/// synced length makes the file durable only up to that write; truncation and removal
/// are durable at once (the store `fsync`s after both anyway).
///
/// Fault injection: [`set_space_limit`](Self::set_space_limit) (`ENOSPC` once that
/// many more bytes were written, after a partial write), [`set_read_only`](Self::set_read_only)
/// (`EROFS` on every change), [`fail_next_syncs`](Self::fail_next_syncs) (`EIO` from
/// the next file or directory `fsync`s), and [`crash_after_ops`](Self::crash_after_ops)
/// (a crash in place of a given mutating operation).
#[derive(Debug, Clone, Default)]
pub struct SimulatedFs {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default)]
struct SimState {
    generation: u64,
    next_id: u64,
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, SimFile>,
    locks: BTreeMap<PathBuf, u64>,
    space_left: Option<u64>,
    read_only: bool,
    fail_syncs: u32,
    /// Syncs that succeed before the `fail_syncs` failures start.
    fail_skip: u32,
    crash_at_op: Option<u64>,
    /// xorshift64 state of torn-write crashes; `None`: a crash drops every unsynced byte.
    torn: Option<u64>,
    ops: u64,
    syncs: u64,
}

#[derive(Debug)]
struct SimFile {
    id: u64,
    data: Vec<u8>,
    synced_len: usize,
    dir_synced: bool,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A random number below `n` (0 if `n` is 0).
fn below(x: &mut u64, n: u64) -> u64 {
    xorshift(x).checked_rem(n).unwrap_or(0)
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("simulated: {what}"))
}

fn eio(what: &str) -> io::Error {
    err(io::ErrorKind::Other, what)
}

fn erofs() -> io::Error {
    err(io::ErrorKind::ReadOnlyFilesystem, "read-only file system")
}

impl SimState {
    fn crash(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let mut rng = self.torn.take();
        self.files
            .retain(|_, f| f.dir_synced || rng.as_mut().is_some_and(|r| xorshift(r) & 1 == 0));
        for f in self.files.values_mut() {
            let unsynced = f.data.len().saturating_sub(f.synced_len);
            let keep = match rng.as_mut() {
                Some(r) => {
                    usize::try_from(below(r, u64::try_from(unsynced).unwrap_or(0).saturating_add(1))).unwrap_or(0)
                }
                None => 0,
            };
            f.data.truncate(f.synced_len.saturating_add(keep));
            // Sometimes the file system had extended the file but not written the data.
            if let Some(r) = rng.as_mut() {
                if keep > 0 && xorshift(r) & 3 == 0 {
                    let zeros = usize::try_from(below(r, u64::try_from(keep).unwrap_or(1))).unwrap_or(0);
                    let from = f.data.len().saturating_sub(zeros.saturating_add(1));
                    if let Some(tail) = f.data.get_mut(from..) {
                        tail.fill(0);
                    }
                }
            }
            f.synced_len = f.data.len();
            f.dir_synced = true;
        }
        self.torn = rng;
        self.locks.clear();
        self.crash_at_op = None;
    }

    /// Counts a mutating operation; fails it (crashing first) if it is the one
    /// [`SimulatedFs::crash_after_ops`] named.
    fn tick(&mut self) -> io::Result<()> {
        if self.crash_at_op == Some(self.ops) {
            self.crash();
            return Err(eio("power lost"));
        }
        self.ops = self.ops.saturating_add(1);
        Ok(())
    }

    /// Whether this `fsync` is one of those set to fail.
    fn sync_fails(&mut self) -> bool {
        if self.fail_syncs == 0 {
            return false;
        }
        if self.fail_skip > 0 {
            self.fail_skip = self.fail_skip.saturating_sub(1);
            return false;
        }
        self.fail_syncs = self.fail_syncs.saturating_sub(1);
        true
    }

    fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn file(&mut self, h: &SimHandle) -> io::Result<&mut SimFile> {
        if h.generation != self.generation {
            return Err(eio("handle opened before a crash"));
        }
        match self.files.get_mut(&h.path) {
            Some(f) if f.id == h.id => Ok(f),
            _ => Err(err(io::ErrorKind::NotFound, "file removed")),
        }
    }
}

impl SimulatedFs {
    /// An empty simulated disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Power loss and reboot (see the type's documentation).
    pub fn crash(&self) {
        self.state().crash();
    }

    /// Crash in place of the mutating operation (create, write, sync, truncate, remove,
    /// directory sync) that comes after `n` more of them; that operation fails with
    /// `EIO`, as does every later one through a handle opened before the crash.
    pub fn crash_after_ops(&self, n: u64) {
        let mut s = self.state();
        s.crash_at_op = Some(s.ops.saturating_add(n));
    }

    /// With `Some(seed)`, a crash is a torn one, as a disk that wrote some of its pages:
    /// it keeps a random prefix of each file's unsynced bytes (the last of them
    /// sometimes zeros, as a file system that extended a file before writing its data)
    /// and keeps each file whose directory entry was not synced with probability one
    /// half. With `None` (the default) a crash drops every unsynced byte and file.
    pub fn set_torn_writes(&self, seed: Option<u64>) {
        // xorshift has one fixed point, 0.
        self.state().torn = seed.map(|s| if s == 0 { 0x9e37_79b9_7f4a_7c15 } else { s });
    }

    /// Whether a crash set by [`crash_after_ops`](Self::crash_after_ops) is still to
    /// come.
    pub fn crash_pending(&self) -> bool {
        self.state().crash_at_op.is_some()
    }

    /// Mutating operations performed so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Successful file `fsync`s so far.
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// `Some(n)`: writes succeed for `n` more bytes, then fail with `ENOSPC` (a write
    /// crossing the limit writes its first bytes, then fails). `None`: unlimited.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.state().space_left = bytes;
    }

    /// In read-only mode every create, write, truncate and removal fails with `EROFS`.
    pub fn set_read_only(&self, read_only: bool) {
        self.state().read_only = read_only;
    }

    /// The next `n` file or directory `fsync`s fail with `EIO` (and make nothing
    /// durable).
    pub fn fail_next_syncs(&self, n: u32) {
        self.fail_syncs_after(0, n);
    }

    /// After `skip` more successful file or directory `fsync`s, the next `n` fail with
    /// `EIO`.
    pub fn fail_syncs_after(&self, skip: u32, n: u32) {
        let mut s = self.state();
        s.fail_skip = skip;
        s.fail_syncs = n;
    }

    /// The current content of a file (what a read sees).
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        self.state().files.get(path).map(|f| f.data.clone())
    }

    /// The length of a file that would survive a crash now.
    pub fn durable_len(&self, path: &Path) -> Option<usize> {
        self.state()
            .files
            .get(path)
            .filter(|f| f.dir_synced)
            .map(|f| f.synced_len)
    }

    /// Replaces (or creates) a file with `data`, durable, as a test fixture; the parent
    /// directory is created.
    pub fn set_file(&self, path: &Path, data: Vec<u8>) {
        let mut s = self.state();
        if let Some(dir) = path.parent() {
            for a in dir.ancestors() {
                s.dirs.insert(a.to_path_buf());
            }
        }
        let id = s.next_id();
        let synced_len = data.len();
        s.files.insert(
            path.to_path_buf(),
            SimFile {
                id,
                data,
                synced_len,
                dir_synced: true,
            },
        );
    }

    /// Removes a file at once, as a test fixture.
    pub fn remove_file(&self, path: &Path) {
        self.state().files.remove(path);
    }

    /// The files of `dir`, sorted.
    pub fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        self.state()
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }
}

#[derive(Debug)]
struct SimHandle {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
    id: u64,
    generation: u64,
    write: bool,
}

impl SimHandle {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| err(io::ErrorKind::InvalidInput, "offset too large"))
}

impl SegmentFile for SimHandle {
    fn size(&self) -> io::Result<u64> {
        let mut s = self.state();
        Ok(u64::try_from(s.file(self)?.data.len()).unwrap_or(u64::MAX))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state();
        let f = s.file(self)?;
        let Some(src) = f.data.get(to_usize(offset)?..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
        Ok(n)
    }

    fn write_all_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut s = self.state();
        s.file(self)?;
        s.tick()?;
        if s.read_only {
            return Err(erofs());
        }
        if !self.write {
            return Err(err(io::ErrorKind::PermissionDenied, "file opened read-only"));
        }
        let allowed = match s.space_left {
            Some(left) => usize::try_from(left).unwrap_or(usize::MAX).min(data.len()),
            None => data.len(),
        };
        if let Some(left) = s.space_left.as_mut() {
            *left = left.saturating_sub(u64::try_from(allowed).unwrap_or(u64::MAX));
        }
        let off = to_usize(offset)?;
        let f = s.file(self)?;
        let end = off.saturating_add(allowed);
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        if let (Some(d), Some(src)) = (f.data.get_mut(off..end), data.get(..allowed)) {
            d.copy_from_slice(src);
        }
        if allowed > 0 {
            f.synced_len = f.synced_len.min(off);
        }
        if allowed < data.len() {
            return Err(err(io::ErrorKind::StorageFull, "no space left on device"));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state();
        s.file(self)?;
        s.tick()?;
        if s.sync_fails() {
            return Err(eio("fsync failed (I/O error)"));
        }
        s.syncs = s.syncs.saturating_add(1);
        let f = s.file(self)?;
        f.synced_len = f.data.len();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state();
        s.file(self)?;
        s.tick()?;
        if s.read_only {
            return Err(erofs());
        }
        let len = to_usize(len)?;
        let f = s.file(self)?;
        f.data.resize(len, 0);
        f.synced_len = f.synced_len.min(len);
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<SimState>>,
    dir: PathBuf,
    token: u64,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.locks.get(&self.dir) == Some(&self.token) {
            s.locks.remove(&self.dir);
        }
    }
}

impl StoreFs for SimulatedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        if s.dirs.contains(dir) {
            return Ok(());
        }
        if s.read_only {
            return Err(erofs());
        }
        for a in dir.ancestors() {
            s.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn lock(&self, dir: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
        let mut s = self.state();
        if !s.dirs.contains(dir) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        if s.locks.contains_key(dir) {
            return Ok(None);
        }
        let token = s.next_id();
        s.locks.insert(dir.to_path_buf(), token);
        Ok(Some(Box::new(SimLock {
            state: Arc::clone(&self.state),
            dir: dir.to_path_buf(),
            token,
        })))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state();
        if !s.dirs.contains(dir) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(s.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let mut s = self.state();
        s.tick()?;
        if s.read_only {
            return Err(erofs());
        }
        if !path.parent().is_some_and(|d| s.dirs.contains(d)) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        let id = s.next_id();
        let dir_synced = s.files.get(path).is_some_and(|f| f.dir_synced);
        s.files.insert(
            path.to_path_buf(),
            SimFile {
                id,
                data: Vec::new(),
                synced_len: 0,
                dir_synced,
            },
        );
        Ok(Arc::new(SimHandle {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            id,
            generation: s.generation,
            write: true,
        }))
    }

    fn open(&self, path: &Path, write: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let s = self.state();
        let Some(f) = s.files.get(path) else {
            return Err(err(io::ErrorKind::NotFound, "no such file"));
        };
        if write && s.read_only {
            return Err(erofs());
        }
        Ok(Arc::new(SimHandle {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            id: f.id,
            generation: s.generation,
            write,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.tick()?;
        if s.read_only {
            return Err(erofs());
        }
        match s.files.remove(path) {
            Some(_) => Ok(()),
            None => Err(err(io::ErrorKind::NotFound, "no such file")),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.tick()?;
        if s.sync_fails() {
            return Err(eio("directory fsync failed (I/O error)"));
        }
        for (p, f) in s.files.iter_mut() {
            if p.parent() == Some(dir) {
                f.dir_synced = true;
            }
        }
        Ok(())
    }
}
