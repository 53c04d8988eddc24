//! Threads waiting for a counter (records made durable) to reach their target, woken
//! one by one, exactly when it does.
//!
//! Group commit with a `Condvar` and `notify_all` wakes every waiting thread after
//! every `fsync`; with 64 callers, most of them only find that their record is not
//! covered yet and go back to sleep. On two cores those wasted context switches cost as
//! much as the decisions themselves. Here each waiter registers its target under the
//! owner's lock and parks; whoever advances the counter wakes the waiters it covers,
//! and one more to run the next `fsync`.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};

/// One parked thread.
#[derive(Debug)]
pub(crate) struct Waiter {
    woken: AtomicBool,
    thread: Thread,
}

impl Waiter {
    /// Parks the calling thread (the one that registered) until it is woken. Call it
    /// after releasing the lock the registration was made under; then re-check the
    /// condition under that lock (a waiter is also woken to take over a duty, or when
    /// the owner shuts down or fails).
    pub(crate) fn park(&self) {
        while !self.woken.load(Ordering::Acquire) {
            thread::park();
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
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
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        self.list.push((target, w.clone()));
        w
    }

    /// Wakes every waiter whose target is at most `reached`.
    pub(crate) fn wake_reached(&mut self, reached: u64) {
        self.list.retain(|(target, w)| {
            if *target <= reached {
                w.wake();
                false
            } else {
                true
            }
        });
    }

    /// Wakes the waiter with the lowest target above `reached`, if any (to take over a
    /// duty: the next `fsync`).
    pub(crate) fn wake_next(&mut self, reached: u64) {
        let lowest = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, (target, _))| *target > reached)
            .min_by_key(|(_, (target, _))| *target)
            .map(|(i, _)| i);
        if let Some(i) = lowest {
            let (_, w) = self.list.swap_remove(i);
            w.wake();
        }
    }

    /// Wakes everyone (shutdown, failure).
    pub(crate) fn wake_all(&mut self) {
        for (_, w) in self.list.drain(..) {
            w.wake();
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
                    w.park();
                })
            })
            .collect();
        for step in [3u64, 7, 12, 16] {
            thread::sleep(core::time::Duration::from_millis(20));
            let mut g = state.lock().unwrap();
            g.0 = step;
            g.1.wake_reached(step);
        }
        for (i, t) in threads.into_iter().enumerate() {
            let seen = t.join().unwrap();
            assert!(seen > i as u64);
        }
        assert!(state.lock().unwrap().1.is_empty());
    }
}
