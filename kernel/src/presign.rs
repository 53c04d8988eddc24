//! Ed25519 signatures with their nonces made ahead of time, on idle CPU.
//!
//! An Ed25519 signature (RFC 8032 §5.1.6) is `R = r·B` and `S = r + k·a mod L`, with
//! `k = SHA-512(R ‖ A ‖ M)`. The scalar multiplication `r·B` is about three quarters of
//! the work, and nothing in it depends on the message except through `r`. RFC 8032
//! derives `r` from the key and the message so that a signer needs no random numbers;
//! a verifier cannot tell and does not care how `r` was chosen, only that it is
//! secret, uniformly distributed and never used for two messages.
//!
//! A [`Presigner`] keeps a pool of `(r, R)` pairs, made by a background thread at the
//! lowest CPU priority, so that signing a record costs one SHA-512 and one scalar
//! multiply-add (about 1 µs instead of 9). Each pair is made by signing a fresh
//! *throw-away* message `M'` with the key's ordinary RFC 8032 engine and solving its
//! signature for the nonce: `r' = S' − SHA-512(R' ‖ A ‖ M')·a`. So `r'` is exactly
//! RFC 8032's nonce for `M'` (`SHA-512(prefix ‖ M') mod L`: uniform, keyed by the
//! secret prefix), and `R'` comes from the engine's fast constant-time code.
//!
//! `M'` is never used twice: it holds a per-process counter, the time in nanoseconds,
//! the process id and 32 bytes drawn from the operating system's random source when
//! the pool starts (no pool if that fails). Even a broken random source therefore
//! cannot make two pairs alike, and the secret prefix keeps `r'` unpredictable. A pair leaves the
//! pool by move, is used for one signature and is then wiped. An empty pool (a burst
//! larger than it, or no idle CPU) is not an error: the signer signs the ordinary way.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use curve25519_dalek::Scalar;
use sha2::{Digest as _, Sha512};
use zeroize::Zeroize as _;

/// Domain separation for the throw-away messages (they are never published).
const MESSAGE_TAG: &[u8; 16] = b"HELM-PRESIGN-v1\0";

/// One nonce and its commitment. Wiped when dropped.
struct Nonce {
    r: Scalar,
    big_r: [u8; 32],
}

impl Drop for Nonce {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

/// Signs a message the ordinary (RFC 8032) way: the key's engine.
pub(crate) type Engine = dyn Fn(&[u8]) -> Option<[u8; 64]> + Send + Sync;

struct Shared {
    /// The secret scalar `a` (clamped, reduced mod L) and the public key `A`.
    secret: Scalar,
    public: [u8; 32],
    engine: Box<Engine>,
    /// 32 bytes from the operating system's random source, drawn once: with the
    /// counter, the time and the process id they make every throw-away message unique
    /// (uniqueness is all it needs: the secret prefix makes the nonce unpredictable).
    instance: [u8; 32],
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the generator (pool below half, or stop).
    refill: Condvar,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

struct State {
    pool: Vec<Nonce>,
    stop: bool,
    /// The generator sleeps until a signer takes the pool below half.
    idle: bool,
    counter: u64,
    /// Signatures made from the pool, and made the ordinary way because it was empty.
    used: u64,
    missed: u64,
}

/// A pool of Ed25519 nonces refilled in the background; see the module documentation.
pub(crate) struct Presigner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl State {
    /// Takes the last pair out of the pool, leaving zeros in its place (a plain `pop`
    /// would leave a copy of the nonce in the pool's buffer).
    fn take(&mut self) -> Option<Nonce> {
        let last = self.pool.last_mut()?;
        let n = core::mem::replace(
            last,
            Nonce {
                r: Scalar::ZERO,
                big_r: [0; 32],
            },
        );
        self.pool.pop();
        Some(n)
    }
}

impl Presigner {
    /// Starts the generator thread for the key `seed` (public key `public`), which
    /// makes pairs with `engine` until `capacity` are ready. `None` (the signer then
    /// signs the ordinary way) if a first pair does not give a valid signature or the
    /// thread cannot be started.
    /// `background`: run the generator at the lowest priority (production); tests run
    /// it at normal priority so that a busy machine cannot starve them.
    pub(crate) fn start(
        seed: &[u8; 32],
        public: [u8; 32],
        engine: Box<Engine>,
        capacity: usize,
        background: bool,
    ) -> Option<Presigner> {
        let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from(seed);
        let mut instance = [0u8; 32];
        getrandom::fill(&mut instance).ok()?;
        let shared = Arc::new(Shared {
            secret: expanded.scalar,
            public,
            engine,
            instance,
            capacity: capacity.max(2),
            state: Mutex::new(State {
                pool: Vec::with_capacity(capacity),
                stop: false,
                idle: false,
                counter: 0,
                used: 0,
                missed: 0,
            }),
            refill: Condvar::new(),
        });
        // Self-check: a pair made and used here must give a strictly valid signature,
        // or the pool is not used at all.
        const PROBE: &[u8] = b"helm-kernel: a presigned signature must verify";
        let sig = shared.finish(&shared.make(0)?, PROBE);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).ok()?;
        key.verify_strict(PROBE, &ed25519_dalek::Signature::from_bytes(&sig))
            .ok()?;
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("helm-presign".into())
            .spawn(move || {
                if background {
                    crate::background::lower_priority();
                }
                worker.run();
            })
            .ok()?;
        Some(Presigner {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A signature over `message` from a pooled nonce, or `None` if the pool is empty.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        let nonce = {
            let mut st = self.shared.lock();
            let n = st.take();
            if n.is_some() {
                st.used = st.used.saturating_add(1);
            } else {
                st.missed = st.missed.saturating_add(1);
            }
            if st.idle && st.pool.len() < self.shared.capacity / 2 {
                // Only then: a wake-up is a system call on the signing path.
                st.idle = false;
                self.shared.refill.notify_one();
            }
            n
        }?;
        Some(self.shared.finish(&nonce, message))
    }

    /// Pairs ready, signatures made from the pool, signatures made without it.
    pub(crate) fn stats(&self) -> (usize, u64, u64) {
        let st = self.shared.lock();
        (st.pool.len(), st.used, st.missed)
    }
}

impl Drop for Presigner {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.refill.notify_all();
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `R ‖ S` with `S = r + SHA-512(R ‖ A ‖ M)·a mod L`.
    #[allow(clippy::arithmetic_side_effects, reason = "Scalar arithmetic is mod L")]
    fn finish(&self, nonce: &Nonce, message: &[u8]) -> [u8; 64] {
        let k = self.challenge(&nonce.big_r, message);
        let s = k * self.secret + nonce.r;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&nonce.big_r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    fn challenge(&self, big_r: &[u8; 32], message: &[u8]) -> Scalar {
        let mut h = Sha512::new();
        h.update(big_r);
        h.update(self.public);
        h.update(message);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// The generator: refills the pool whenever it falls below half.
    fn run(&self) {
        loop {
            let counter = {
                let mut st = self.lock();
                if st.pool.len() >= self.capacity {
                    // Full: sleep until a signer takes it below half (or stop).
                    st.idle = true;
                    while st.idle && !st.stop {
                        st = self.refill.wait(st).unwrap_or_else(PoisonError::into_inner);
                    }
                }
                if st.stop {
                    return;
                }
                st.counter = st.counter.wrapping_add(1);
                st.counter
            };
            let Some(nonce) = self.make(counter) else {
                // The engine failed: stop making pairs; every signature is made the
                // ordinary way from now on.
                return;
            };
            let mut st = self.lock();
            if st.stop {
                return;
            }
            st.pool.push(nonce);
        }
    }

    /// One pair: the engine's signature over a fresh throw-away message, solved for
    /// its nonce.
    #[allow(clippy::arithmetic_side_effects, reason = "Scalar arithmetic is mod L")]
    fn make(&self, counter: u64) -> Option<Nonce> {
        let mut message = [0u8; 16 + 8 + 16 + 4 + 32];
        let (tag, rest) = message.split_at_mut(16);
        tag.copy_from_slice(MESSAGE_TAG);
        let (count, rest) = rest.split_at_mut(8);
        count.copy_from_slice(&counter.to_le_bytes());
        let (time, rest) = rest.split_at_mut(16);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        time.copy_from_slice(&nanos.to_le_bytes());
        let (pid, random) = rest.split_at_mut(4);
        pid.copy_from_slice(&std::process::id().to_le_bytes());
        random.copy_from_slice(&self.instance);
        let sig = (self.engine)(&message)?;
        let mut big_r = [0u8; 32];
        big_r.copy_from_slice(sig.get(..32)?);
        let s: [u8; 32] = sig.get(32..)?.try_into().ok()?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
        let r = s - self.challenge(&big_r, &message) * self.secret;
        Some(Nonce { r, big_r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
    use std::time::Instant;

    fn presigner(seed: [u8; 32], capacity: usize) -> (Presigner, VerifyingKey) {
        let key = SigningKey::from_bytes(&seed);
        let public = key.verifying_key();
        let engine = move |m: &[u8]| Some(key.sign(m).to_bytes());
        (
            Presigner::start(&seed, public.to_bytes(), Box::new(engine), capacity, false).unwrap(),
            public,
        )
    }

    fn wait_for(p: &Presigner, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.stats().0 < n {
            assert!(Instant::now() < deadline, "pool never filled: {:?}", p.stats());
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Pooled signatures verify strictly, every nonce is used once, and an empty pool
    /// says so instead of blocking.
    #[test]
    fn pooled_signatures_verify_and_never_share_a_nonce() {
        let (p, public) = presigner([3; 32], 64);
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..8u8 {
            // The generator refills once the pool is below half: wait for that much.
            wait_for(&p, 32);
            for i in 0..32u16 {
                let msg: Vec<u8> = (0..(i * 7 + u16::from(round))).map(|j| j as u8 ^ round).collect();
                let sig = p.sign(&msg).expect("pool is full");
                public.verify_strict(&msg, &Signature::from_bytes(&sig)).unwrap();
                assert!(seen.insert(sig[..32].to_vec()), "a nonce was used twice");
            }
        }
        assert_eq!(seen.len(), 256);
        // Drain it: the pool never blocks and reports the miss.
        let stop = Instant::now() + Duration::from_secs(5);
        while p.sign(b"x").is_some() {
            assert!(Instant::now() < stop);
        }
        assert!(p.stats().2 >= 1);
    }

    /// The recovered nonce is RFC 8032's for the throw-away message: signing that same
    /// message with the pair gives the engine's own signature.
    #[test]
    fn recovered_nonce_is_the_rfc8032_nonce() {
        let seed = [9; 32];
        let (p, _) = presigner(seed, 2);
        let message = b"some throw-away message";
        let reference = SigningKey::from_bytes(&seed).sign(message).to_bytes();
        let shared = &p.shared;
        let big_r: [u8; 32] = reference[..32].try_into().unwrap();
        let s = Scalar::from_canonical_bytes(reference[32..].try_into().unwrap()).unwrap();
        let r = s - shared.challenge(&big_r, message) * shared.secret;
        let again = shared.finish(&Nonce { r, big_r }, message);
        assert_eq!(again, reference);
    }

    /// Dropping the presigner stops its thread.
    #[test]
    fn drop_stops_the_generator() {
        let (p, _) = presigner([5; 32], 8);
        wait_for(&p, 8);
        let weak = Arc::downgrade(&p.shared);
        drop(p);
        assert!(weak.upgrade().is_none(), "the generator still holds the key");
    }
}
