//! Durable mode: the blob store's fsync runs beside the record store's.
//!
//! A decision is acknowledged once its argument blob and its records are durable: two
//! stores, two `fsync`s. Waiting for them one after the other doubles the latency of a
//! lone caller and the length of every group-commit round under load. A thread of the
//! kernel's waits for the blob store while the caller waits for the record store; both
//! still use group commit (one `fsync` covers every blob appended before it).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::store::{Store, StoreError, Ticket};
use crate::waiters::{Waiters, Wake};

#[derive(Debug, Default)]
struct Progress {
    /// The highest blob ticket asked for.
    wanted: Option<Ticket>,
    /// The highest blob ticket known durable.
    done: Option<Ticket>,
    /// A failure of the blob store (it poisons the store: every later wait fails too).
    failed: Option<String>,
    stop: bool,
    /// The thread sleeps on `work` (nothing asked for beyond what is durable).
    idle: bool,
    /// Callers waiting for their blobs, woken exactly when they are durable.
    waiters: Waiters,
}

#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    progress: Mutex<Progress>,
    /// Wakes the thread: more is asked for, or stop.
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The blob store's syncing thread.
#[derive(Debug)]
pub(super) struct BlobSync {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BlobSync {
    pub(super) fn start(store: Arc<Store>) -> std::io::Result<BlobSync> {
        let shared = Arc::new(Shared {
            store,
            progress: Mutex::new(Progress::default()),
            work: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("helm-blob-sync".into())
            .spawn(move || run(&s))?;
        Ok(BlobSync {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for everything up to `t` to become durable (returns at once).
    pub(super) fn request(&self, t: Ticket) {
        let mut p = self.shared.lock();
        if p.wanted.is_none_or(|w| w < t) {
            p.wanted = Some(t);
            if p.idle {
                p.idle = false;
                self.shared.work.notify_one();
            }
        }
    }

    /// Waits until everything up to `t` is durable; a failure is the cause of the blob
    /// store's poisoning.
    pub(super) fn wait(&self, t: Ticket) -> Result<(), String> {
        let mut p = self.shared.lock();
        loop {
            if p.done.is_some_and(|d| d >= t) {
                return Ok(());
            }
            if let Some(e) = &p.failed {
                return Err(e.clone());
            }
            if p.stop {
                return Err("the kernel is shutting down".into());
            }
            let w = p.waiters.add(t.position());
            drop(p);
            if w.park() == Wake::Done {
                return Ok(());
            }
            p = self.shared.lock();
        }
    }
}

fn run(s: &Shared) {
    loop {
        let t = {
            let mut p = s.lock();
            loop {
                if p.stop {
                    return;
                }
                match p.wanted {
                    Some(w) if p.failed.is_none() && p.done.is_none_or(|d| d < w) => break w,
                    _ => {
                        p.idle = true;
                        p = s.work.wait(p).unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
        };
        let r = s.store.wait_durable(t);
        let mut p = s.lock();
        match r {
            Ok(()) => {
                let done = p.done.map_or(t, |d| d.max(t));
                p.done = Some(done);
                let mut woken = Vec::new();
                p.waiters.take_reached(done.position(), &mut woken);
                drop(p);
                for w in woken {
                    w.wake(Wake::Done);
                }
            }
            // Any failure here poisons the blob store; keep the first cause.
            Err(e) => {
                p.failed = Some(match e {
                    StoreError::Poisoned { reason } => reason,
                    e => e.to_string(),
                });
                p.waiters.wake_all();
            }
        }
    }
}

impl Drop for BlobSync {
    fn drop(&mut self) {
        {
            let mut p = self.shared.lock();
            p.stop = true;
            p.waiters.wake_all();
        }
        self.shared.work.notify_all();
        if let Some(h) = self.thread.take() {
            // The thread never panics; a join error leaves nothing to do.
            let _ = h.join();
        }
    }
}
