//! Threads waiting for a counter (records made durable) to reach their target, woken
//! one by one, exactly when it does.
//!
//! Group commit with a `Condvar` and `notify_all` wakes every waiting thread after
//! every `fsync`; with 64 callers, most of them only find that their record is not
//! covered yet and go back to sleep. On two cores those wasted context switches cost as
//! much as the decisions themselves. Here each waiter registers its target under the
//! owner's lock and parks; whoever advances the counter takes the waiters it covers out
//! of the list under the lock and wakes them after releasing it, telling them they are
//! done (so they return without taking the lock again), and wakes one more to run the
//! next `fsync`.

use core::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};

/// Still waiting.
const WAITING: u8 = 0;
/// The target was reached: return.
const DONE: u8 = 1;
/// Look again under the owner's lock (run the next `fsync`, or a failure).
const RECHECK: u8 = 2;

/// Why a parked thread was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Its target was reached.
    Done,
    /// Something else changed: check the state again under the owner's lock.
    Recheck,
}

/// One parked thread.
#[derive(Debug)]
pub(crate) struct Waiter {
    state: AtomicU8,
    thread: Thread,
}

impl Waiter {
    /// Parks the calling thread (the one that registered) until it is woken. Call it
    /// after releasing the lock the registration was made under.
    pub(crate) fn park(&self) -> Wake {
        loop {
            match self.state.load(Ordering::Acquire) {
                WAITING => thread::park(),
                DONE => return Wake::Done,
                _ => return Wake::Recheck,
            }
        }
    }

    /// Wakes the thread with `why`.
    pub(crate) fn wake(&self, why: Wake) {
        let state = match why {
            Wake::Done => DONE,
            Wake::Recheck => RECHECK,
        };
        self.state.store(state, Ordering::Release);
        self.thread.unpark();
    }
}

/// The registered waiters; lives under the owner's lock.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    list: Vec<(u64, Arc<Waiter>)>,
}

impl Waiters {
    /// Registers the calling thread as waiting for the counter to reach `target`.
    pub(crate) fn add(&mut self, target: u64) -> Arc<Waiter> {
        let w = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            thread: thread::current(),
        });
        self.list.push((target, w.clone()));
        w
    }

    /// Takes out every waiter whose target is at most `reached`, to be woken with
    /// [`Wake::Done`] once the owner's lock is released.
    pub(crate) fn take_reached(&mut self, reached: u64, out: &mut Vec<Arc<Waiter>>) {
        self.list.retain(|(target, w)| {
            if *target <= reached {
                out.push(w.clone());
                false
            } else {
                true
            }
        });
    }

    /// Takes out the waiter with the lowest target above `reached`, if any: the one to
    /// wake (with [`Wake::Recheck`]) to take over a duty, the next `fsync`.
    pub(crate) fn take_next(&mut self, reached: u64) -> Option<Arc<Waiter>> {
        let i = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, (target, _))| *target > reached)
            .min_by_key(|(_, (target, _))| *target)
            .map(|(i, _)| i)?;
        Some(self.list.swap_remove(i).1)
    }

    /// Wakes everyone with [`Wake::Recheck`] (shutdown, failure).
    pub(crate) fn wake_all(&mut self) {
        for (_, w) in self.list.drain(..) {
            w.wake(Wake::Recheck);
        }
    }

    /// Whether anyone waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// 16 threads wait for targets 1..=16 while the counter advances in steps; each
    /// returns once its target is reached, never before.
    #[test]
    fn waiters_wake_when_their_target_is_reached() {
        let state = Arc::new(Mutex::new((0u64, Waiters::default())));
        let threads: Vec<_> = (1..=16u64)
            .map(|target| {
                let state = state.clone();
                thread::spawn(move || loop {
                    let w = {
                        let mut g = state.lock().unwrap();
                        if g.0 >= target {
                            return g.0;
                        }
                        g.1.add(target)
                    };
                    if w.park() == Wake::Done {
                        return state.lock().unwrap().0;
                    }
                })
            })
            .collect();
        for step in [3u64, 7, 12, 16] {
            thread::sleep(core::time::Duration::from_millis(20));
            let mut woken = Vec::new();
            {
                let mut g = state.lock().unwrap();
                g.0 = step;
                g.1.take_reached(step, &mut woken);
                if let Some(next) = g.1.take_next(step) {
                    woken.push(next);
                }
            }
            for w in woken {
                w.wake(Wake::Recheck);
            }
        }
        for (i, t) in threads.into_iter().enumerate() {
            let seen = t.join().unwrap();
            assert!(seen > i as u64);
        }
        assert!(state.lock().unwrap().1.is_empty());
    }
}
