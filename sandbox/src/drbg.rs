//! The deterministic random generator behind `random_get`.
//!
//! Block `i` (from 0) is `SHA-256("HELM-SANDBOX-DRBG-v1" ‖ seed ‖ u64_be(i))`; the stream
//! is the concatenation of the blocks, consumed in order across all `random_get` calls of
//! one run. The seed is chosen per call by the kernel and recorded, so a replay draws the
//! same bytes. It is not a CSPRNG for the guest's secrets: whoever holds the evidence
//! holds the seed.

use sha2::{Digest, Sha256};

/// Domain-separation prefix of every block.
pub const DRBG_LABEL: &[u8] = b"HELM-SANDBOX-DRBG-v1";

/// SHA-256 in counter mode over a 32-byte seed.
#[derive(Clone, Debug)]
pub struct Drbg {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Drbg {
    /// A generator at the start of the stream of `seed`.
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg {
            seed,
            counter: 0,
            block: [0; 32],
            // Empty: the first byte drawn computes block 0.
            used: 32,
        }
    }

    fn refill(&mut self) {
        let mut h = Sha256::new();
        h.update(DRBG_LABEL);
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        self.block = h.finalize().into();
        // 2^64 blocks are never reached: fuel bounds every run far below it.
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut filled = 0usize;
        while filled < out.len() {
            if self.used >= self.block.len() {
                self.refill();
            }
            let avail = self.block.get(self.used..).unwrap_or(&[]);
            let dst = out.get_mut(filled..).unwrap_or(&mut []);
            let n = avail.len().min(dst.len());
            if let (Some(d), Some(s)) = (dst.get_mut(..n), avail.get(..n)) {
                d.copy_from_slice(s);
            }
            self.used = self.used.saturating_add(n);
            filled = filled.saturating_add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_blocks_in_order_whatever_the_call_sizes() {
        let seed = [7u8; 32];
        let mut whole = [0u8; 100];
        Drbg::new(seed).fill(&mut whole);
        let mut parts = [0u8; 100];
        let mut d = Drbg::new(seed);
        for chunk in parts.chunks_mut(13) {
            d.fill(chunk);
        }
        assert_eq!(whole, parts);
        let mut h = Sha256::new();
        h.update(DRBG_LABEL);
        h.update(seed);
        h.update(1u64.to_be_bytes());
        let block1: [u8; 32] = h.finalize().into();
        assert_eq!(&whole[32..64], &block1);
    }
}
