//! Merkle trees as in RFC 9162 §2.1 (SHA-256; 0x00 leaf and 0x01 node prefixes).
//!
//! [`MerkleAccumulator`] keeps O(log n) state: one subtree root per set bit of the leaf
//! count, so a streaming verifier can check every CHECKPOINT without storing leaves.

use sha2::{Digest, Sha256};

use crate::Hash;

/// Deepest tree supported: 2^48 leaves, far beyond any pack.
pub const MAX_HEIGHT: usize = 48;

/// RFC 9162 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle Tree Hash of the empty list: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Appends leaves one at a time and yields the RFC 9162 root of all leaves so far.
#[derive(Clone, Debug)]
pub struct MerkleAccumulator {
    /// Roots of the perfect subtrees, largest first; `stack[i]` is valid for i < len.
    stack: [Hash; MAX_HEIGHT],
    len: usize,
    count: u64,
}

impl Default for MerkleAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl MerkleAccumulator {
    /// An empty tree.
    pub const fn new() -> Self {
        MerkleAccumulator {
            stack: [[0; 32]; MAX_HEIGHT],
            len: 0,
            count: 0,
        }
    }

    /// Number of leaves appended.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends a leaf whose data is `data` (for records: the 32-byte record hash).
    /// Returns `false` (and changes nothing) if the tree is full.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.count >= (1u64 << MAX_HEIGHT) - 1 {
            return false;
        }
        let mut node = leaf_hash(data);
        // Merge equal-sized subtrees: one per trailing one bit of the old count.
        let mut c = self.count;
        while c & 1 == 1 {
            let Some(top) = self.len.checked_sub(1) else {
                return false;
            };
            let Some(left) = self.stack.get(top) else {
                return false;
            };
            node = node_hash(left, &node);
            self.len = top;
            c >>= 1;
        }
        let Some(slot) = self.stack.get_mut(self.len) else {
            return false;
        };
        *slot = node;
        self.len = self.len.saturating_add(1);
        self.count = self.count.saturating_add(1);
        true
    }

    /// The Merkle Tree Hash of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.stack.iter().take(self.len).rev();
        let Some(last) = subtrees.next() else {
            return empty_root();
        };
        let mut acc = *last;
        for left in subtrees {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// Verifies an RFC 9162 §2.1.3.2 inclusion proof for the leaf at `index` in a tree of
/// `size` leaves with root `root`. `leaf` is the leaf hash (already prefixed with 0x00).
pub fn verify_inclusion<'p>(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: impl IntoIterator<Item = &'p Hash>,
    root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let mut fnode = index;
    let Some(mut snode) = size.checked_sub(1) else {
        return false;
    };
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// An RFC 9162 §2.1.3.2 inclusion proof checked one path hash at a time, in O(1) state:
/// a streaming reader feeds the hashes as they arrive and never buffers the path.
/// [`verify_inclusion`] is the same algorithm over a whole path.
#[derive(Clone, Debug)]
pub struct InclusionCheck {
    fnode: u64,
    snode: u64,
    r: Hash,
    ok: bool,
}

impl InclusionCheck {
    /// Starts checking that `leaf` (a leaf hash, already prefixed with 0x00) is at
    /// `index` in a tree of `size` leaves.
    pub fn new(index: u64, size: u64, leaf: &Hash) -> InclusionCheck {
        InclusionCheck {
            fnode: index,
            snode: size.saturating_sub(1),
            r: *leaf,
            ok: index < size,
        }
    }

    /// The next hash of the path.
    pub fn step(&mut self, p: &Hash) {
        if !self.ok {
            return;
        }
        if self.snode == 0 {
            self.ok = false;
            return;
        }
        if self.fnode & 1 == 1 || self.fnode == self.snode {
            self.r = node_hash(p, &self.r);
            if self.fnode & 1 == 0 {
                while self.fnode & 1 == 0 && self.fnode != 0 {
                    self.fnode >>= 1;
                    self.snode >>= 1;
                }
            }
        } else {
            self.r = node_hash(&self.r, p);
        }
        self.fnode >>= 1;
        self.snode >>= 1;
    }

    /// Whether the path, now complete, leads to `root`.
    pub fn finish(&self, root: &Hash) -> bool {
        self.ok && self.snode == 0 && self.r == *root
    }
}

/// An RFC 9162 §2.1.4.2 consistency proof, from a tree of `first` leaves with root
/// `first_root` to a tree of `second` leaves, checked one path hash at a time in O(1)
/// state. Defined for `0 < first < second`; anything else never verifies.
#[derive(Clone, Debug)]
pub struct ConsistencyCheck {
    first_root: Hash,
    fnode: u64,
    snode: u64,
    fr: Hash,
    sr: Hash,
    /// Whether `fr`/`sr` hold the proof's first value yet.
    started: bool,
    ok: bool,
}

impl ConsistencyCheck {
    /// Starts checking consistency of (`first`, `first_root`) with a tree of `second`
    /// leaves.
    pub fn new(first: u64, first_root: &Hash, second: u64) -> ConsistencyCheck {
        let mut c = ConsistencyCheck {
            first_root: *first_root,
            fnode: first.saturating_sub(1),
            snode: second.saturating_sub(1),
            fr: [0; 32],
            sr: [0; 32],
            started: false,
            ok: first > 0 && first < second,
        };
        if c.ok {
            // Step 4: right-shift both while the low bit of fn is set.
            while c.fnode & 1 == 1 {
                c.fnode >>= 1;
                c.snode >>= 1;
            }
            // Step 2: a first tree of 2^k leaves is a complete subtree: its root is
            // the proof's implicit first value.
            if first.is_power_of_two() {
                c.fr = *first_root;
                c.sr = *first_root;
                c.started = true;
            }
        }
        c
    }

    /// The next hash of the consistency path.
    pub fn step(&mut self, c: &Hash) {
        if !self.ok {
            return;
        }
        if !self.started {
            self.fr = *c;
            self.sr = *c;
            self.started = true;
            return;
        }
        if self.snode == 0 {
            self.ok = false;
            return;
        }
        if self.fnode & 1 == 1 || self.fnode == self.snode {
            self.fr = node_hash(c, &self.fr);
            self.sr = node_hash(c, &self.sr);
            if self.fnode & 1 == 0 {
                while self.fnode & 1 == 0 && self.fnode != 0 {
                    self.fnode >>= 1;
                    self.snode >>= 1;
                }
            }
        } else {
            self.sr = node_hash(&self.sr, c);
        }
        self.fnode >>= 1;
        self.snode >>= 1;
    }

    /// Whether the proof, now complete, shows the first tree is a prefix of the tree of
    /// `second` leaves with root `second_root`.
    pub fn finish(&self, second_root: &Hash) -> bool {
        self.ok && self.started && self.snode == 0 && self.fr == self.first_root && self.sr == *second_root
    }
}

/// Verifies an RFC 9162 §2.1.4.2 consistency proof between a tree of `first` leaves with
/// root `first_root` and one of `second` leaves with root `second_root`
/// (`0 < first < second`).
pub fn verify_consistency<'p>(
    first: u64,
    first_root: &Hash,
    second: u64,
    second_root: &Hash,
    proof: impl IntoIterator<Item = &'p Hash>,
) -> bool {
    let mut c = ConsistencyCheck::new(first, first_root, second);
    for p in proof {
        c.step(p);
    }
    c.finish(second_root)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// The RFC 9162 definition, recursively, as the reference.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// RFC 9162 §2.1.3.1 PATH(m, D[n]).
    fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn accumulator_matches_the_recursive_definition() {
        let leaves: Vec<Vec<u8>> = (0u32..70).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut acc = MerkleAccumulator::new();
        assert_eq!(acc.root(), empty_root());
        for n in 1..=leaves.len() {
            assert!(acc.push(&leaves[n - 1]));
            assert_eq!(acc.root(), mth(&leaves[..n]), "n = {n}");
        }
    }

    /// RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
    fn subproof(m: usize, leaves: &[Vec<u8>], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if m <= k {
            let mut p = subproof(m, &leaves[..k], complete);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn consistency_proofs_verify_and_reject_tampering() {
        let leaves: Vec<Vec<u8>> = (0u32..40).map(|i| i.to_be_bytes().to_vec()).collect();
        for n in 2..=leaves.len() {
            let root = mth(&leaves[..n]);
            for m in 1..n {
                let first = mth(&leaves[..m]);
                let proof = subproof(m, &leaves[..n], true);
                assert!(
                    verify_consistency(m as u64, &first, n as u64, &root, &proof),
                    "m={m} n={n}"
                );
                assert!(!verify_consistency(m as u64, &root, n as u64, &root, &proof) || first == root);
                // (The sizes are not authenticated by a proof: they come with the signed
                // roots. A size that does not fit the path's shape fails, as below.)
                assert!(!verify_consistency(m as u64, &first, (2 * n) as u64, &root, &proof));
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][0] ^= 1;
                    assert!(
                        !verify_consistency(m as u64, &first, n as u64, &root, &bad),
                        "m={m} n={n} i={i}"
                    );
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(!verify_consistency(m as u64, &first, n as u64, &root, &longer));
                if !proof.is_empty() {
                    assert!(!verify_consistency(
                        m as u64,
                        &first,
                        n as u64,
                        &root,
                        &proof[..proof.len() - 1]
                    ));
                }
            }
            // Not defined for first = 0 or first = second.
            assert!(!verify_consistency(0, &empty_root(), n as u64, &root, &[]));
            assert!(!verify_consistency(n as u64, &root, n as u64, &root, &[]));
        }
    }

    #[test]
    fn streaming_inclusion_equals_whole_path() {
        let leaves: Vec<Vec<u8>> = (0u32..21).map(|i| i.to_be_bytes().to_vec()).collect();
        for n in 1..=leaves.len() {
            let root = mth(&leaves[..n]);
            for m in 0..n + 1 {
                let proof = path(m.min(n - 1), &leaves[..n]);
                let leaf = leaf_hash(&leaves[m.min(n - 1)]);
                let mut c = InclusionCheck::new(m as u64, n as u64, &leaf);
                proof.iter().for_each(|p| c.step(p));
                assert_eq!(
                    c.finish(&root),
                    verify_inclusion(m as u64, n as u64, &leaf, &proof, &root)
                );
                assert_eq!(c.finish(&root), m < n);
            }
        }
    }

    #[test]
    fn inclusion_proofs_verify_and_reject_tampering() {
        let leaves: Vec<Vec<u8>> = (0u32..13).map(|i| i.to_be_bytes().to_vec()).collect();
        for n in 1..=leaves.len() {
            let root = mth(&leaves[..n]);
            for m in 0..n {
                let proof = path(m, &leaves[..n]);
                let leaf = leaf_hash(&leaves[m]);
                assert!(
                    verify_inclusion(m as u64, n as u64, &leaf, &proof, &root),
                    "m={m} n={n}"
                );
                let wrong = leaf_hash(b"x");
                assert!(!verify_inclusion(m as u64, n as u64, &wrong, &proof, &root));
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(m as u64, n as u64, &leaf, &bad, &root));
                }
            }
        }
    }
}
