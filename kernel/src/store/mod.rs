//! The ProofGraph store on local disk: the embedded default, nothing to install.
//!
//! Records go into append-only segment files (`spec/store.md`): a 24-byte header, then
//! frames `len u32 LE | record | CRC-32 u32 LE`. One writer at a time: [`Store::open`]
//! takes an exclusive lock on the directory (a second writer, in this process or
//! another, gets [`StoreError::Locked`]); [`read_records`] reads without it.
//!
//! Durability: [`Store::append`] writes the records (in order, to the operating
//! system) and returns a [`Ticket`]; [`Store::wait_durable`] returns once an `fsync`
//! covering the ticket completed. In [`Durability::Durable`] mode one waiting thread
//! runs the `fsync` for every record appended so far while the others wait for it
//! (group commit), and appends go on meanwhile. [`Durability::Buffered`] is chosen
//! explicitly: `wait_durable` returns at once and a background thread `fsync`s every
//! `sync_interval`; a power loss may then lose the records appended since the start of
//! the last completed `fsync` (at most about one `sync_interval` of appends plus one
//! `fsync`), never an earlier one, and a process crash loses nothing.
//!
//! Failures: a failed write is cut back to the last complete frame and reported (the
//! store stays usable); a failed `fsync` poisons the store (every later call fails with
//! [`StoreError::Poisoned`]: the operating system may have dropped the data it could not
//! write) until it is reopened. Reopening runs recovery: the store reopens at its last
//! complete record, cuts (and reports in [`Recovery`]) a torn tail of its last segment,
//! and refuses to open ([`StoreError::Corrupt`]) where cutting would lose acknowledged
//! history.
//!
//! All file I/O goes through [`StoreFs`]: [`RealFs`] in production, [`SimulatedFs`] in
//! power-loss and fault-injection tests.

mod error;
mod format;
mod fs;
mod scan;
mod sim;

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;

pub use error::StoreError;
pub use fs::{DirLock, RealFs, SegmentFile, StoreFs};
pub use sim::SimulatedFs;

use crate::waiters::{Waiters, Wake};
pub use format::MAX_FRAME;
use format::{push_frame, segment_name, valid_record_len, FRAME_OVERHEAD, HEADER_LEN_U64};

/// When an appended record counts as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// [`Store::wait_durable`] returns after an `fsync` covering the records completed:
    /// no acknowledged record is lost, whatever happens to the machine.
    Durable,
    /// [`Store::wait_durable`] returns at once; a background thread (at the lowest CPU
    /// priority, so that it yields to request handling) `fsync`s every `sync_interval`
    /// (at least 1 ms; stretched when every core is saturated). A power loss can lose
    /// the records appended since the start of the last completed `fsync`: at most about
    /// `sync_interval` of appends plus those of one `fsync`. A process crash loses
    /// nothing (records are written to the operating system by `append`).
    Buffered {
        /// Time between two background `fsync`s.
        sync_interval: Duration,
    },
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Durable => f.write_str("durable (fsync before every acknowledgement, group commit)"),
            Durability::Buffered { sync_interval } => write!(
                f,
                "BUFFERED (fsync every {} ms: a power loss can lose the records of the last interval)",
                sync_interval.as_millis()
            ),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Durable (the default) or explicitly buffered.
    pub durability: Durability,
    /// A new segment is started when the next batch would take the current one past
    /// this size (a batch is never split; a batch larger than this gets a segment of its
    /// own). Default 64 MiB.
    pub segment_bytes: u64,
    /// Largest record `append` takes: 64 KiB by default (a record's limit,
    /// `verify_core::MAX_RECORD_SIZE`); a blob store raises it, up to [`MAX_FRAME`].
    pub max_record: usize,
    /// Zero bytes kept written ahead of the last frame (a **reservation**,
    /// `spec/store.md` §3), so that appends overwrite allocated blocks and an `fsync`
    /// need not also commit a new file length: about half the `fsync`'s time and CPU on
    /// ext4. Topped up before an `fsync` when less than a quarter is left; cut at
    /// rollover and at close. Default 256 KiB; 0 turns it off.
    pub reserve_bytes: u64,
}

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The default reservation ([`StoreOptions::reserve_bytes`]): 256 KiB, written in about
/// 40 µs once per ~190 KiB of records.
pub const DEFAULT_RESERVE_BYTES: u64 = 256 * 1024;

/// What a reservation is written from.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Durable,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_record: verify_core::MAX_RECORD_SIZE,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
        }
    }
}

impl StoreOptions {
    /// Buffered mode with this interval (and the default segment size).
    pub fn buffered(sync_interval: Duration) -> Self {
        StoreOptions {
            durability: Durability::Buffered { sync_interval },
            ..Self::default()
        }
    }
}

/// A position in the store: "every record appended up to here", returned by
/// [`Store::append`] for [`Store::wait_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The number of records appended up to and including the batch of this ticket (the
    /// index of its last record plus one).
    pub fn position(self) -> u64 {
        self.0
    }
}

/// What opening a store found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Records in the store (the next index).
    pub records: u64,
    /// Segment files.
    pub segments: u32,
    /// Bytes cut from the end of the last segment.
    pub truncated_bytes: u64,
    /// What was cut and why, if anything was.
    pub torn: Option<String>,
    /// Zero bytes found after the last frame (a reservation left by a writer that did
    /// not close the store) and kept: not damage, nothing cut.
    pub reserved_bytes: u64,
}

/// Counters of an open store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Records appended (the next index).
    pub appended: u64,
    /// Records known durable (covered by a completed `fsync`).
    pub durable: u64,
    /// `fsync`s run by group commit or the background thread since opening.
    pub fsyncs: u64,
    /// Segment files.
    pub segments: u32,
}

/// The open ProofGraph store: the single writer of its directory. `Send + Sync`.
pub struct Store {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

struct Inner {
    dir: PathBuf,
    fs: Arc<dyn StoreFs>,
    durability: Durability,
    segment_bytes: u64,
    max_record: usize,
    reserve_bytes: u64,
    writer: Mutex<Writer>,
    /// Mirror of `Writer::next_index`, for lock-free ticket checks.
    appended: AtomicU64,
    sync: Mutex<SyncState>,
    /// Wakes the buffered mode's flusher at shutdown.
    cv: Condvar,
    /// Wakes appends waiting for a reservation being written (`Writer::extending`).
    extended: Condvar,
    poison: OnceLock<String>,
    fsyncs: AtomicU64,
    _lock: Box<dyn DirLock>,
}

struct Writer {
    segments: Vec<(u64, PathBuf)>,
    file: Arc<dyn SegmentFile>,
    /// End of the current segment's last complete frame.
    offset: u64,
    /// The segment file's length as written by the store: the bytes from `offset` to
    /// here are a reservation (zeros). At least `offset`.
    reserved: u64,
    /// Zeros are being written past `reserved` (without this lock): an append that
    /// would write past `reserved`, a rollover or a cut waits until they are.
    extending: bool,
    /// `offset` when the reservation was last looked at (before the previous `fsync`).
    checked_offset: u64,
    next_index: u64,
    buf: Vec<u8>,
}

struct SyncState {
    /// Records covered by a completed `fsync`.
    durable: u64,
    /// A thread is running an `fsync` for everyone.
    syncing: bool,
    /// Threads waiting for their records to become durable (woken when they are, or
    /// one to run the next `fsync`).
    waiters: Waiters,
    shutdown: bool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("durability", &self.inner.durability)
            .field("appended", &self.inner.appended.load(Ordering::Acquire))
            .field("poisoned", &self.inner.poison.get())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating `dir` if absent) the store in `dir` on the real file system,
    /// taking its writer lock and running recovery.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<(Store, Recovery), StoreError> {
        Self::open_with(dir, opts, Arc::new(RealFs))
    }

    /// [`open`](Self::open) through the file-system layer `fs`.
    pub fn open_with(dir: &Path, opts: StoreOptions, fs: Arc<dyn StoreFs>) -> Result<(Store, Recovery), StoreError> {
        if fs.list(dir).is_err() {
            fs.create_dir_all(dir)
                .map_err(|e| StoreError::io("create directory", dir, None, e))?;
            // Make the new directory's own entry durable (ancestors created with it are
            // left to the file system).
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fs.sync_dir(parent)
                .map_err(|e| StoreError::io("fsync directory", parent, None, e))?;
        }
        let lock = match fs.lock(dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(StoreError::Locked { dir: dir.to_path_buf() }),
            Err(e) => return Err(StoreError::io("lock", dir.join(fs::LOCK_FILE), None, e)),
        };
        let rec = scan::recover(&*fs, dir)?;
        let durability = match opts.durability {
            Durability::Buffered { sync_interval } => Durability::Buffered {
                sync_interval: sync_interval.max(Duration::from_millis(1)),
            },
            Durability::Durable => Durability::Durable,
        };
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            fs,
            durability,
            segment_bytes: opts.segment_bytes,
            max_record: opts.max_record.min(MAX_FRAME),
            reserve_bytes: opts.reserve_bytes,
            writer: Mutex::new(Writer {
                segments: rec.segments,
                file: rec.file,
                offset: rec.offset,
                reserved: rec.reserved,
                extending: false,
                checked_offset: rec.offset,
                next_index: rec.next_index,
                buf: Vec::new(),
            }),
            appended: AtomicU64::new(rec.next_index),
            sync: Mutex::new(SyncState {
                durable: rec.next_index,
                syncing: false,
                waiters: Waiters::default(),
                shutdown: false,
            }),
            cv: Condvar::new(),
            extended: Condvar::new(),
            poison: OnceLock::new(),
            fsyncs: AtomicU64::new(0),
            _lock: lock,
        });
        let flusher = match inner.durability {
            Durability::Buffered { sync_interval } => {
                let inner = Arc::clone(&inner);
                let handle = std::thread::Builder::new()
                    .name("helm-store-sync".into())
                    .spawn(move || inner.flusher(sync_interval))
                    .map_err(|e| StoreError::io("spawn sync thread for", dir, None, e))?;
                Some(handle)
            }
            Durability::Durable => None,
        };
        Ok((Store { inner, flusher }, rec.report))
    }

    /// Appends `records` (each 1 to `max_record` bytes) in order, as one write. Returns once
    /// they are written to the operating system, not once durable: pass the ticket to
    /// [`wait_durable`](Self::wait_durable) before acting on them. Appends are
    /// serialised internally. On an error nothing of the batch remains in the store (a
    /// power loss at that moment may still keep a prefix of it, as of any batch not yet
    /// acknowledged).
    pub fn append(&self, records: &[&[u8]]) -> Result<Ticket, StoreError> {
        self.inner.check_poison()?;
        let mut batch_len = 0u64;
        for (position, r) in records.iter().enumerate() {
            if !valid_record_len(r.len(), self.inner.max_record) {
                return Err(StoreError::InvalidRecord {
                    position,
                    len: r.len(),
                    max: self.inner.max_record,
                });
            }
            // A record is at most 16 MiB: no overflow for any slice that fits in memory.
            let frame = u64::try_from(r.len())
                .unwrap_or(u64::MAX)
                .saturating_add(FRAME_OVERHEAD as u64);
            batch_len = batch_len.saturating_add(frame);
        }
        let mut w = self.inner.writer()?;
        self.inner.check_poison()?;
        if records.is_empty() {
            return Ok(Ticket(w.next_index));
        }
        // Rare: the reservation ran out while it is being extended (the extension starts
        // when a quarter is left).
        while w.extending && w.offset.saturating_add(batch_len) > w.reserved {
            w = self.inner.wait_extended(w)?;
        }
        let count = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let next = w
            .next_index
            .checked_add(count)
            .ok_or_else(|| self.inner.poison("record index overflow".into()))?;
        let end = w
            .offset
            .checked_add(batch_len)
            .ok_or_else(|| self.inner.poison("segment offset overflow".into()))?;
        if w.offset > HEADER_LEN_U64 && end > self.inner.segment_bytes {
            self.inner.roll(&mut w)?;
        }
        let offset = w.offset;
        let end = offset.saturating_add(batch_len);
        let mut buf = core::mem::take(&mut w.buf);
        buf.clear();
        for r in records {
            push_frame(&mut buf, r);
        }
        let written = w.file.write_all_at(offset, &buf);
        w.buf = buf;
        if let Err(e) = written {
            return Err(self.inner.undo_write(&mut w, offset, batch_len, e));
        }
        w.offset = end;
        w.reserved = w.reserved.max(end);
        w.next_index = next;
        self.inner.appended.store(next, Ordering::Release);
        Ok(Ticket(next))
    }

    /// Blocks until the records up to `t` are durable. Durable mode: the first waiter
    /// runs one `fsync` covering everything appended so far, later waiters wait for it
    /// (group commit). Buffered mode: returns at once (unless the store is poisoned).
    pub fn wait_durable(&self, t: Ticket) -> Result<(), StoreError> {
        let appended = self.inner.appended.load(Ordering::Acquire);
        if t.0 > appended {
            return Err(StoreError::InvalidTicket { ticket: t.0, appended });
        }
        match self.inner.durability {
            Durability::Durable => self.inner.sync_to(t.0),
            Durability::Buffered { .. } => self.inner.check_poison(),
        }
    }

    /// Makes every record appended so far durable, in either mode.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync_to(self.inner.appended.load(Ordering::Acquire))
    }

    /// Hands every record to `f` in order with its index (records appended after this
    /// call started are not included), and returns how many there were. The kernel
    /// replays the store with it at startup.
    pub fn for_each_record<E: From<StoreError>>(&self, f: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<u64, E> {
        self.read_range(0, u64::MAX, f)
    }

    /// Hands the records `from..from + limit` to `f` in order with their indices, and
    /// returns how many there were: fewer than `limit` (none when `from` is past the
    /// end) if the store ends first; records appended after this call started are not
    /// included, and a record being appended is never handed out half-written.
    ///
    /// Reading starts at the segment holding `from` (segments are named by their first
    /// index) and stops after record `from + limit - 1`: the cost is that of the records
    /// asked for plus, at most, the records before `from` in its segment (read and
    /// checked, not handed out). Every frame read is checked as in
    /// [`for_each_record`](Self::for_each_record): a defect is [`StoreError::Corrupt`].
    pub fn read_range<E: From<StoreError>>(
        &self,
        from: u64,
        limit: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        // Under the writer's lock: every record below `next_index` is completely written
        // (an append writes its batch before moving `next_index`, and a failed write is
        // cut back beyond it), so the read below needs no lenient tail.
        let (segments, end) = {
            let w = self.inner.writer()?;
            let end = w.next_index.min(from.saturating_add(limit));
            if from >= end {
                return Ok(0);
            }
            // The segment holding `from`: the last one starting at or before it.
            let first = w.segments.partition_point(|(s, _)| *s <= from).saturating_sub(1);
            let segments: Vec<(u64, PathBuf)> = w
                .segments
                .get(first..)
                .unwrap_or_default()
                .iter()
                .take_while(|(s, _)| *s < end)
                .cloned()
                .collect();
            (segments, end)
        };
        let span = scan::Span {
            start: segments.first().map_or(0, |(s, _)| *s),
            from,
            limit: end,
        };
        let mut handed = 0u64;
        scan::read_segments(&*self.inner.fs, &segments, span, false, &mut |i, r| {
            handed = handed.saturating_add(1);
            f(i, r)
        })?;
        Ok(handed)
    }

    /// Records appended (the index the next record gets).
    pub fn len(&self) -> u64 {
        self.inner.appended.load(Ordering::Acquire)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mode the store was opened in (an interval is raised to at least 1 ms).
    pub fn durability(&self) -> &Durability {
        &self.inner.durability
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Why the store is poisoned, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        self.inner.poison.get().map(String::as_str)
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        let segments = self
            .inner
            .writer()
            .map_or(0, |w| u32::try_from(w.segments.len()).unwrap_or(u32::MAX));
        StoreStats {
            appended: self.inner.appended.load(Ordering::Acquire),
            durable: self.inner.sync_state().durable,
            fsyncs: self.inner.fsyncs.load(Ordering::Relaxed),
            segments,
        }
    }

    /// Syncs everything appended and closes the store, reporting a failed final `fsync`
    /// (dropping the store does the same but cannot report).
    pub fn close(self) -> Result<(), StoreError> {
        self.stop_flusher();
        self.sync()?;
        self.inner.cut_reservation()
    }

    fn stop_flusher(&self) {
        self.inner.sync_state().shutdown = true;
        self.inner.cv.notify_all();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_flusher();
        if let Some(h) = self.flusher.take() {
            // The flusher never panics; a join error leaves nothing to do.
            let _ = h.join();
        }
        // Best effort: a failure poisons, and the next open runs recovery anyway (which
        // keeps a reservation left behind).
        if self.sync().is_ok() {
            let _ = self.inner.cut_reservation();
        }
    }
}

impl Inner {
    fn writer(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        self.writer.lock().map_err(|_| StoreError::Poisoned {
            reason: "a thread panicked while appending".into(),
        })
    }

    fn wait_extended<'a>(&self, w: MutexGuard<'a, Writer>) -> Result<MutexGuard<'a, Writer>, StoreError> {
        self.extended.wait(w).map_err(|_| StoreError::Poisoned {
            reason: "a thread panicked while appending".into(),
        })
    }

    fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        // SyncState holds plain counters that no panic can leave inconsistent.
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_poison(&self) -> Result<(), StoreError> {
        match self.poison.get() {
            Some(reason) => Err(StoreError::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Poisons the store (the first reason stays) and returns the error to report.
    fn poison(&self, reason: String) -> StoreError {
        let _ = self.poison.set(reason);
        let reason = self.poison.get().cloned().unwrap_or_default();
        StoreError::Poisoned { reason }
    }

    /// Poisons the store with an I/O failure and returns that failure.
    fn poison_io(&self, op: &'static str, path: &Path, e: std::io::Error) -> StoreError {
        let _ = self.poison.set(format!("{op} {}: {e}", path.display()));
        StoreError::io(op, path, None, e)
    }

    fn current_path(w: &Writer) -> PathBuf {
        w.segments.last().map_or_else(PathBuf::new, |(_, p)| p.clone())
    }

    /// After a failed write at `offset`: cut the segment back to `offset` (durably; a
    /// reservation goes with it), or poison the store if that fails.
    fn undo_write(&self, w: &mut Writer, offset: u64, batch_len: u64, e: std::io::Error) -> StoreError {
        let path = Self::current_path(w);
        let error = StoreError::io("write", &path, Some(offset), e);
        // A write into the reservation that wrote nothing (a read-only file system, say)
        // left only zeros behind: nothing to cut, and the reservation stays.
        let written_end = offset.saturating_add(batch_len).min(w.reserved);
        let untouched = written_end > offset && scan::all_zero(&*w.file, &path, offset, written_end).unwrap_or(false);
        match w.file.size() {
            Ok(len) if len == offset => w.reserved = offset,
            _ if untouched => {}
            _ => {
                let undone = w.file.set_len(offset).and_then(|()| w.file.sync_data());
                match undone {
                    Ok(()) => w.reserved = offset,
                    Err(e2) => {
                        let _ = self.poison.set(format!(
                            "cutting {} back to {offset} after a failed write failed: {e2}",
                            path.display()
                        ));
                    }
                }
            }
        }
        error
    }

    /// Tops the reservation up to `reserve_bytes` past the last frame (page-aligned, at
    /// most to the segment size) once less than a quarter of it is left, unless appends
    /// use more than half of it between two `fsync`s. Called before an
    /// `fsync`, which then also commits the new length: the `fsync`s after it, until the
    /// reservation runs low again, write data only. The zeros are written without the
    /// writer's lock (256 KiB take about 40 µs), past everything appends may touch until
    /// then. Best effort: they are not records, so a failure (a full disk) only means
    /// appends grow the file again.
    fn top_up_reservation(&self) {
        let want = self.reserve_bytes;
        if want == 0 {
            return;
        }
        let (file, from, end) = {
            let Ok(mut w) = self.writer() else { return };
            let since = w.offset.saturating_sub(w.checked_offset);
            w.checked_offset = w.offset;
            // Appends that outrun the reservation (more than half of it between two
            // `fsync`s: the store bench's 400 MB/s, not a kernel's decisions) gain nothing
            // from it, and would wait for the zeros: left to grow the file.
            if w.extending || w.reserved.saturating_sub(w.offset) >= want / 4 || since > want / 2 {
                return;
            }
            let end = w
                .offset
                .saturating_add(want)
                .div_ceil(4096)
                .saturating_mul(4096)
                .min(self.segment_bytes.max(w.offset));
            if end <= w.reserved {
                return;
            }
            w.extending = true;
            (Arc::clone(&w.file), w.reserved, end)
        };
        let mut at = from;
        let mut written = true;
        while at < end {
            let n = usize::try_from(end.saturating_sub(at)).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            if file.write_all_at(at, ZEROS.get(..n).unwrap_or_default()).is_err() {
                written = false;
                break;
            }
            at = at.saturating_add(n as u64);
        }
        // Poisoned only by a panic elsewhere; then nothing waits for this any more.
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        w.extending = false;
        // Unchanged unless a failed append cut the segment meanwhile (then the zeros past
        // it are harmless: appends overwrite them, recovery keeps a zero tail).
        if Arc::ptr_eq(&w.file, &file) && w.reserved == from {
            if written {
                w.reserved = end;
            } else {
                // Give the space back.
                let _ = file.set_len(from);
            }
        }
        drop(w);
        self.extended.notify_all();
    }

    /// Cuts the reservation of the current segment (at close): the file ends at its last
    /// frame again.
    fn cut_reservation(&self) -> Result<(), StoreError> {
        let mut w = self.writer()?;
        while w.extending {
            w = self.wait_extended(w)?;
        }
        if w.reserved <= w.offset {
            return Ok(());
        }
        let path = Self::current_path(&w);
        let offset = w.offset;
        w.file
            .set_len(offset)
            .and_then(|()| w.file.sync_data())
            .map_err(|e| StoreError::io("truncate", &path, Some(offset), e))?;
        w.reserved = offset;
        Ok(())
    }

    /// Starts a new segment at the next index: the current one is `fsync`ed first, so
    /// that only the last segment can ever have a torn tail.
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        let old = Self::current_path(w);
        // Only the last segment may end in a reservation. A failed cut changes nothing:
        // the batch is refused and the next append tries again. No zeros are being
        // written now: a rollover's batch ends past the segment size, so past
        // `reserved`, and `append` waited for any extension.
        if w.reserved > w.offset {
            let offset = w.offset;
            w.file
                .set_len(offset)
                .map_err(|e| StoreError::io("truncate", &old, Some(offset), e))?;
            w.reserved = offset;
        }
        w.file.sync_data().map_err(|e| self.poison_io("fdatasync", &old, e))?;
        let first = w.next_index;
        let path = self.dir.join(segment_name(first));
        let file = scan::create_segment(&*self.fs, &self.dir, &path, first).map_err(|e| {
            if e.poison {
                let _ = self.poison.set(e.error.to_string());
            }
            e.error
        })?;
        w.segments.push((first, path));
        w.file = file;
        w.offset = HEADER_LEN_U64;
        w.reserved = HEADER_LEN_U64;
        w.checked_offset = HEADER_LEN_U64;
        Ok(())
    }

    /// Group commit: returns once an `fsync` covering `target` records completed. The
    /// first caller runs the `fsync`; callers arriving meanwhile park. When it
    /// completes, the callers it covers are woken, and one other (if any) to run the
    /// next `fsync` for everything appended since: nobody is woken just to sleep again.
    fn sync_to(&self, target: u64) -> Result<(), StoreError> {
        let mut s = self.sync_state();
        loop {
            if let Err(e) = self.check_poison() {
                // Nobody will run another fsync: let every waiter see the failure.
                s.waiters.wake_all();
                return Err(e);
            }
            if s.durable >= target {
                return Ok(());
            }
            if s.syncing {
                let w = s.waiters.add(target);
                drop(s);
                if w.park() == Wake::Done {
                    return Ok(());
                }
                s = self.sync_state();
                continue;
            }
            s.syncing = true;
            let already = s.durable;
            drop(s);
            let synced = self.sync_once(already);
            s = self.sync_state();
            s.syncing = false;
            match synced {
                Ok(n) => {
                    s.durable = s.durable.max(n);
                    let durable = s.durable;
                    // Woken after the lock is released: the next fsync's runner first,
                    // so that it starts before the covered callers take the cores.
                    let mut woken = Vec::new();
                    let next = s.waiters.take_next(durable);
                    s.waiters.take_reached(durable, &mut woken);
                    drop(s);
                    if let Some(w) = next {
                        w.wake(Wake::Recheck);
                    }
                    for w in woken {
                        w.wake(Wake::Done);
                    }
                    s = self.sync_state();
                }
                Err(e) => {
                    s.waiters.wake_all();
                    return Err(e);
                }
            }
        }
    }

    /// One `fsync` of the current segment; returns the records it covers. Earlier
    /// segments were synced when the store moved past them.
    fn sync_once(&self, already: u64) -> Result<u64, StoreError> {
        let (file, target) = {
            let w = self.writer()?;
            (Arc::clone(&w.file), w.next_index)
        };
        if target <= already {
            return Ok(target);
        }
        self.top_up_reservation();
        if let Err(e) = file.sync_data() {
            let path = self.writer().map(|w| Self::current_path(&w)).unwrap_or_default();
            return Err(self.poison_io("fdatasync", &path, e));
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(target)
    }

    /// The buffered mode's background thread.
    fn flusher(&self, interval: Duration) {
        // At the lowest CPU priority: the fsync's CPU work (about 50-100 µs every
        // interval) yields to request handling on a shared core. Measured with
        // helm-proxy pinned to one core (MCP over HTTP, buffered): p99 of a call 287-345
        // -> 227-253 µs. Under full load it still gets its share (background.rs).
        crate::background::lower_priority();
        loop {
            {
                let s = self.sync_state();
                let (s, _) = self
                    .cv
                    .wait_timeout_while(s, interval, |s| !s.shutdown)
                    .unwrap_or_else(PoisonError::into_inner);
                if s.shutdown {
                    return;
                }
            }
            if self.poison.get().is_some() {
                return;
            }
            // A failure poisons the store; appends report it.
            let _ = self.sync_to(self.appended.load(Ordering::Acquire));
        }
    }
}

/// Reads the store in `dir` without taking its lock (a server may be writing it): hands
/// every complete, checksum-valid record to `f` in order with its index, stops at a torn
/// or still-being-written tail of the last segment, and modifies nothing. Returns the
/// number of records read. A defect anywhere else is [`StoreError::Corrupt`].
pub fn read_records<E: From<StoreError>>(dir: &Path, f: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<u64, E> {
    read_records_with(dir, &RealFs, f)
}

/// [`read_records`] through the file-system layer `fs`.
pub fn read_records_with<E: From<StoreError>>(
    dir: &Path,
    fs: &dyn StoreFs,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let segments = scan::list_segments(fs, dir)?;
    scan::read_segments(fs, &segments, scan::Span::all(u64::MAX), true, &mut f)
}
