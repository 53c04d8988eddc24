//! Signature checks on every core (feature `std`).
//!
//! Signature verification dominates the cost of a pack, and each record's check needs
//! only its own bytes (the `kid` is the public key). A light pre-framer finds the records
//! in the chunks read, worker threads compute [`SignatureCheck`]s, and the sequential
//! [`crate::PackReader`] asks for them through [`Observer::precheck`]. The pre-framer
//! trusts nothing: if it loses track of the archive it stops, and the reader verifies
//! the remaining signatures itself. A check is bound to the record hash, so the result
//! is exactly that of a single-threaded run.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "std-only module"
)]

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::vec::Vec;

use verify_core::{Hash, KeyCache, Record, SignatureCheck};

use crate::reader::{record_len, Observer};
use crate::tar::{self, BLOCK};

/// Consecutive records, from stream index `first` on, in one buffer (no allocation per
/// record): record `k` is `data[ends[k - 1]..ends[k]]`.
#[derive(Default)]
struct Job {
    first: u64,
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Job {
    fn push(&mut self, index: u64, record: &[u8]) {
        if self.ends.is_empty() {
            self.first = index;
        }
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
    }

    fn records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let starts = core::iter::once(0).chain(self.ends.iter().copied());
        (self.first..).zip(
            starts
                .zip(self.ends.iter().copied())
                .map(|(a, b)| self.data.get(a..b).unwrap_or(&[])),
        )
    }
}

/// Records per job sent to a worker.
const BATCH: usize = 64;

enum Frame {
    Header,
    Data { remaining: u64, size: u64, segment: bool },
    Padding(u64),
    Stop,
}

/// Finds record bytes in a stream of tar chunks, leniently.
pub(crate) struct Preframer {
    state: Frame,
    header: Vec<u8>,
    record: Vec<u8>,
    /// `record` holds a partial pack's proof item, not a record.
    item: bool,
    next_index: u64,
}

impl Preframer {
    pub(crate) fn new() -> Preframer {
        Preframer {
            state: Frame::Header,
            header: Vec::with_capacity(BLOCK),
            record: Vec::new(),
            item: false,
            next_index: 0,
        }
    }

    /// Passes each record completed by `chunk` to `out`, with its index.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], out: &mut dyn FnMut(u64, &[u8])) {
        while !chunk.is_empty() {
            match self.state {
                Frame::Stop => return,
                Frame::Header => {
                    let n = BLOCK.saturating_sub(self.header.len()).min(chunk.len());
                    let (head, rest) = chunk.split_at(n);
                    self.header.extend_from_slice(head);
                    chunk = rest;
                    if self.header.len() == BLOCK {
                        let block: Option<&[u8; BLOCK]> = self.header.as_slice().try_into().ok();
                        self.state = match block.map(tar::decode) {
                            Some(Ok(h)) if h.size == 0 => Frame::Header,
                            Some(Ok(h)) => Frame::Data {
                                remaining: h.size,
                                size: h.size,
                                segment: h.name().starts_with("records/"),
                            },
                            _ => Frame::Stop,
                        };
                        self.header.clear();
                    }
                }
                Frame::Data {
                    remaining,
                    size,
                    segment,
                } => {
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.len());
                    let (data, rest) = chunk.split_at(n);
                    chunk = rest;
                    if segment {
                        self.frame(data, out);
                        if matches!(self.state, Frame::Stop) {
                            return;
                        }
                    }
                    let left = remaining.saturating_sub(n as u64);
                    self.state = if left > 0 {
                        Frame::Data {
                            remaining: left,
                            size,
                            segment,
                        }
                    } else if !self.record.is_empty() {
                        Frame::Stop
                    } else {
                        let pad = (BLOCK as u64).wrapping_sub(size.checked_rem(BLOCK as u64).unwrap_or(0));
                        Frame::Padding(pad.checked_rem(BLOCK as u64).unwrap_or(0))
                    };
                }
                Frame::Padding(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                    chunk = chunk.get(n..).unwrap_or(&[]);
                    let left = left.saturating_sub(n as u64);
                    self.state = if left == 0 { Frame::Header } else { Frame::Padding(left) };
                }
            }
        }
    }

    fn frame(&mut self, mut data: &[u8], out: &mut dyn FnMut(u64, &[u8])) {
        while !data.is_empty() {
            if self.record.is_empty() {
                // A partial pack's proof item (an array of 3; a record is a tag) is skipped.
                self.item = data.first() == Some(&0x83);
                if self.item {
                    if let Ok(Ok(n)) = item_len(data) {
                        if n <= data.len() {
                            data = data.get(n..).unwrap_or(&[]);
                            continue;
                        }
                    }
                }
            }
            if self.item {
                let want = match item_len(&self.record) {
                    Ok(Ok(n)) | Ok(Err(n)) => n,
                    Err(()) => {
                        self.state = Frame::Stop;
                        return;
                    }
                };
                if want <= self.record.len() {
                    // Never past an item's end; lost track otherwise.
                    self.state = Frame::Stop;
                    return;
                }
                let n = want.saturating_sub(self.record.len()).min(data.len());
                let (head, rest) = data.split_at(n);
                self.record.extend_from_slice(head);
                data = rest;
                if item_len(&self.record) == Ok(Ok(self.record.len())) {
                    self.record.clear();
                }
                continue;
            }
            if self.record.is_empty() {
                // Whole records straight from the chunk.
                if let Ok(Some(n)) = record_len(data) {
                    if n <= data.len() && n <= verify_core::MAX_RECORD_SIZE {
                        let (rec, rest) = data.split_at(n);
                        out(self.next_index, rec);
                        self.next_index = self.next_index.saturating_add(1);
                        data = rest;
                        continue;
                    }
                }
            }
            // Read heads first (a few bytes), then the exact remainder of the record.
            let want = match record_len(&self.record) {
                Ok(Some(n)) => n,
                Ok(None) => self.record.len().saturating_add(16),
                Err(_) => {
                    self.state = Frame::Stop;
                    return;
                }
            };
            if want > verify_core::MAX_RECORD_SIZE {
                self.state = Frame::Stop;
                return;
            }
            let n = want.saturating_sub(self.record.len()).min(data.len());
            let (head, rest) = data.split_at(n);
            self.record.extend_from_slice(head);
            data = rest;
            if let Ok(Some(total)) = record_len(&self.record) {
                if total == self.record.len() {
                    out(self.next_index, &self.record);
                    self.record.clear();
                    self.next_index = self.next_index.saturating_add(1);
                }
            }
        }
    }
}

/// The length of the partial pack's proof item at the start of `buf`, from its heads
/// (spec/evidencepack.md §9.3; leniently: the reader checks it): `Ok(Ok(n))`, or
/// `Ok(Err(m))` when at least `m` bytes are needed to tell (never past the item's end).
fn item_len(buf: &[u8]) -> Result<Result<usize, usize>, ()> {
    let mut pos = 0usize;
    // The head at `pos`, or how many bytes are needed to read it.
    let head = |pos: &mut usize| -> Result<Result<(u8, u64), usize>, ()> {
        let Some(rest) = buf.get(*pos..) else {
            return Ok(Err(pos.saturating_add(1)));
        };
        let mut r = verify_core::cbor::Reader::new(rest);
        match r.head() {
            Ok(h) => {
                *pos = pos.saturating_add(r.position());
                Ok(Ok(h))
            }
            Err(verify_core::CborError::Truncated) => Ok(Err(buf.len().max(*pos).saturating_add(1))),
            Err(_) => Err(()),
        }
    };
    match head(&mut pos)? {
        Ok((4, 3)) => {}
        Ok(_) => return Err(()),
        Err(need) => return Ok(Err(need)),
    }
    match head(&mut pos)? {
        Ok((0, _)) => {}
        Ok(_) => return Err(()),
        Err(need) => return Ok(Err(need)),
    }
    for _ in 0..2 {
        match head(&mut pos)? {
            Ok((4, n)) if n <= crate::reader::MAX_PROOF_HASHES => {
                pos = pos.saturating_add(usize::try_from(n).unwrap_or(0).saturating_mul(34));
            }
            Ok(_) => return Err(()),
            Err(need) => return Ok(Err(need)),
        }
    }
    Ok(Ok(pos))
}

/// Jobs waiting for a thread, and whether more will come.
struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    more: Condvar,
}

fn check_all(job: &Job, keys: &mut KeyCache) -> Vec<(u64, SignatureCheck)> {
    job.records()
        .map(|(i, bytes)| (i, SignatureCheck::compute_cached(bytes, keys)))
        .collect()
}

/// Worker threads computing signature checks, and the answers in index order. The
/// reader's own thread takes jobs from the same queue while it waits, so `threads`
/// threads in all keep `threads` cores busy.
pub(crate) struct Checks {
    queue: Arc<Queue>,
    results: Receiver<Vec<(u64, SignatureCheck)>>,
    ready: HashMap<u64, SignatureCheck>,
    dispatched: u64,
    batch: Job,
    /// Keys decoded by this (the reader's) thread.
    keys: KeyCache,
}

impl Checks {
    /// Starts `workers` threads inside `scope`.
    pub(crate) fn start<'scope>(scope: &'scope std::thread::Scope<'scope, '_>, workers: usize) -> Checks {
        let (res_tx, res_rx) = channel();
        let queue = Arc::new(Queue {
            jobs: Mutex::new((VecDeque::new(), false)),
            more: Condvar::new(),
        });
        for _ in 0..workers {
            let queue = Arc::clone(&queue);
            let results: Sender<_> = res_tx.clone();
            scope.spawn(move || {
                let mut keys = KeyCache::default();
                loop {
                    let job = {
                        let Ok(mut guard) = queue.jobs.lock() else { return };
                        loop {
                            if let Some(job) = guard.0.pop_front() {
                                break job;
                            }
                            if guard.1 {
                                return;
                            }
                            guard = match queue.more.wait(guard) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                    };
                    if results.send(check_all(&job, &mut keys)).is_err() {
                        return;
                    }
                }
            });
        }
        Checks {
            queue,
            results: res_rx,
            ready: HashMap::new(),
            dispatched: 0,
            batch: Job::default(),
            keys: KeyCache::default(),
        }
    }

    /// Queues one record for checking.
    pub(crate) fn add(&mut self, index: u64, record: &[u8]) {
        self.batch.push(index, record);
        if self.batch.ends.len() >= BATCH {
            self.flush();
        }
    }

    /// Queues a partial batch (before the reader needs it).
    pub(crate) fn flush(&mut self) {
        if self.batch.ends.is_empty() {
            return;
        }
        let batch = core::mem::take(&mut self.batch);
        self.dispatched = self.dispatched.max(batch.first.saturating_add(batch.ends.len() as u64));
        if let Ok(mut guard) = self.queue.jobs.lock() {
            guard.0.push_back(batch);
            self.queue.more.notify_one();
        }
    }

    /// The check for `index`: computed already, or computed now by this thread taking
    /// queued jobs in order, or (when a worker holds it) waited for.
    fn get(&mut self, index: u64) -> Option<SignatureCheck> {
        if index >= self.dispatched {
            self.flush();
            if index >= self.dispatched {
                return None;
            }
        }
        loop {
            if let Some(c) = self.ready.remove(&index) {
                // The verifier ignores a check whose hash is not the record's.
                return Some(c);
            }
            while let Ok(done) = self.results.try_recv() {
                self.ready.extend(done);
            }
            if self.ready.contains_key(&index) {
                continue;
            }
            let job = self.queue.jobs.lock().ok().and_then(|mut g| g.0.pop_front());
            match job {
                Some(job) => self.ready.extend(check_all(&job, &mut self.keys)),
                None => match self.results.recv() {
                    Ok(done) => self.ready.extend(done),
                    Err(_) => return None,
                },
            }
        }
    }

    /// Stops the workers (they finish the job in hand and exit).
    pub(crate) fn stop(&mut self) {
        if let Ok(mut guard) = self.queue.jobs.lock() {
            guard.0.clear();
            guard.1 = true;
        }
        self.queue.more.notify_all();
    }
}

/// Passes notifications to the caller's observer and answers prechecks from workers.
pub(crate) struct WithChecks<'a, O> {
    pub(crate) inner: &'a mut O,
    pub(crate) checks: &'a mut Checks,
}

impl<O: Observer> Observer for WithChecks<'_, O> {
    fn record(&mut self, index: u64, record: &Record<'_>) {
        self.inner.record(index, record);
    }
    fn withheld(&mut self, name: &Hash) {
        self.inner.withheld(name);
    }
    fn blob(&mut self, name: &Hash, size: u64) {
        self.inner.blob(name, size);
    }
    fn progress(&mut self, offset: u64) {
        self.inner.progress(offset);
    }
    fn precheck(&mut self, index: u64, _record: &[u8]) -> Option<SignatureCheck> {
        self.checks.get(index)
    }
}
