//! The kernel key behind an interface, so that it can live in a file or in an HSM.
//!
//! A [`RecordSigner`] signs COSE Sig_structures; [`sign_record`] turns a
//! [`RecordBuilder`] into record bytes with it. A signer whose signatures come from
//! outside the process (a PKCS#11 token) checks each one against its public key before
//! returning it: a faulty token must not put an invalid record into the store.

use core::fmt;
use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroize as _;

use verify_core::Signer;
use verify_core::{protected_header, sig_structure, CborWriter, RecordBuilder};

use crate::keyfile::{KeyFile, KeyFileError};
use crate::presign::Presigner;

/// A signer failed: the record is not written and the caller gets a DENY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignError(pub String);

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signing failed: {}", self.0)
    }
}

impl core::error::Error for SignError {}

/// Something that signs with one Ed25519 key.
pub trait RecordSigner: Send + Sync + fmt::Debug {
    /// The raw public key (the `kid` of the records it signs).
    fn public_key(&self) -> [u8; 32];
    /// An Ed25519 signature over `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError>;
    /// Where the key lives, for logs and health output (never secret material).
    fn describe(&self) -> String;
}

/// The default signer: a `helm-key/1` key file held in memory.
///
/// With the `aws-lc` feature (the default) it signs with AWS-LC's Ed25519, about twice
/// as fast as ed25519-dalek on x86_64. Ed25519 signatures are deterministic (RFC 8032
/// §5.1.6), so both engines must produce the same bytes for the same key and message:
/// construction checks that on a known message and falls back to ed25519-dalek (with
/// the reason in [`KeyFileSigner::describe`]) if the two ever disagree.
///
/// [`with_presigning`](KeyFileSigner::with_presigning) (what `helm-proxy serve` uses)
/// adds a pool of nonces made ahead of time on idle CPU: a signature then costs about
/// 1 µs on the caller's path instead of 9 ([`crate::presign`] explains why that is
/// sound). Such signatures are valid Ed25519 signatures under the same key but not the
/// deterministic RFC 8032 ones.
#[derive(Clone)]
pub struct KeyFileSigner {
    signer: Signer,
    #[cfg(feature = "aws-lc")]
    fast: Option<Arc<aws_lc_rs::signature::Ed25519KeyPair>>,
    public: [u8; 32],
    origin: String,
    seed: Arc<Seed>,
    presign: Option<Arc<Presigner>>,
}

/// The key's seed, kept to start a presigner; wiped when the last signer goes.
struct Seed([u8; 32]);

impl Drop for Seed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for KeyFileSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFileSigner")
            .field("public", &hex::encode(self.public))
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl KeyFileSigner {
    /// Loads a key file (refusing one that other users may read or write).
    pub fn load(path: &Path) -> Result<KeyFileSigner, KeyFileError> {
        let key = KeyFile::load_private(path)?;
        Ok(KeyFileSigner::from_key(&key, format!("key file {}", path.display())))
    }

    /// A signer for an already loaded key.
    pub fn from_key(key: &KeyFile, origin: String) -> KeyFileSigner {
        KeyFileSigner::from_seed(key.seed(), &origin)
    }

    /// A signer from a raw seed (tests and benchmarks).
    pub fn from_seed(seed: &[u8; 32], origin: &str) -> KeyFileSigner {
        let signer = Signer::from_seed(seed);
        KeyFileSigner {
            public: signer.public_key(),
            #[cfg(feature = "aws-lc")]
            fast: fast_engine(seed, &signer),
            signer,
            origin: origin.to_owned(),
            seed: Arc::new(Seed(*seed)),
            presign: None,
        }
    }

    /// This signer with a pool of `capacity` nonces refilled by a background thread at
    /// the lowest priority (see [`crate::presign`]). Unchanged if the process may run
    /// on one CPU only (pinned with `taskset`, or a one-CPU machine: the nonces would
    /// be made on the core that then signs with them, which only adds thread
    /// switches), if the thread cannot be started, or if the pool's first signature
    /// does not verify.
    #[must_use]
    pub fn with_presigning(mut self, capacity: usize) -> KeyFileSigner {
        if std::thread::available_parallelism().map_or(1, core::num::NonZero::get) < 2 {
            return self;
        }
        let engine = self.clone();
        let sign = move |m: &[u8]| engine.sign_ordinary(m).ok();
        self.presign = Presigner::start(&self.seed.0, self.public, Box::new(sign), capacity, true).map(Arc::new);
        self
    }

    /// Nonces ready in the pool, signatures made from it, and signatures made the
    /// ordinary way because it was empty; `None` without presigning.
    pub fn presign_stats(&self) -> Option<(usize, u64, u64)> {
        self.presign.as_ref().map(|p| p.stats())
    }

    /// An RFC 8032 signature with the engine, never from the pool.
    fn sign_ordinary(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        #[cfg(feature = "aws-lc")]
        if let Some(pair) = &self.fast {
            let sig = pair.sign(message);
            return <[u8; 64]>::try_from(sig.as_ref())
                .map_err(|_| SignError("AWS-LC returned a signature that is not 64 bytes".into()));
        }
        Ok(self.signer.sign(message))
    }

    /// The Ed25519 implementation in use.
    pub fn engine(&self) -> &'static str {
        #[cfg(feature = "aws-lc")]
        if self.fast.is_some() {
            return "aws-lc";
        }
        "ed25519-dalek"
    }

    /// A signature from ed25519-dalek, whatever the engine (tests compare the two).
    pub fn sign_reference(&self, message: &[u8]) -> [u8; 64] {
        self.signer.sign(message)
    }
}

/// AWS-LC's key pair for `seed`, if it derives the same public key and signs a known
/// message exactly as ed25519-dalek does.
#[cfg(feature = "aws-lc")]
fn fast_engine(seed: &[u8; 32], reference: &Signer) -> Option<Arc<aws_lc_rs::signature::Ed25519KeyPair>> {
    use aws_lc_rs::signature::KeyPair as _;
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
    if pair.public_key().as_ref() != reference.public_key().as_slice() {
        return None;
    }
    const PROBE: &[u8] = b"helm-kernel: aws-lc and ed25519-dalek must sign alike";
    let ok = pair.sign(PROBE).as_ref() == reference.sign(PROBE).as_slice();
    ok.then(|| Arc::new(pair))
}

impl RecordSigner for KeyFileSigner {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        if let Some(sig) = self.presign.as_ref().and_then(|p| p.sign(message)) {
            return Ok(sig);
        }
        self.sign_ordinary(message)
    }

    fn describe(&self) -> String {
        let presigned = if self.presign.is_some() {
            ", presigned nonces"
        } else {
            ""
        };
        format!("{} (Ed25519 by {}{presigned})", self.origin, self.engine())
    }
}

/// Encodes and signs a record: its bytes, a tagged COSE_Sign1.
pub fn sign_record(builder: &RecordBuilder, signer: &dyn RecordSigner) -> Result<Vec<u8>, SignError> {
    let kid = signer.public_key();
    let protected = protected_header(&kid);
    let payload = builder.payload();
    let sig = signer.sign(&sig_structure(&protected, &payload))?;
    let mut w = CborWriter::new();
    w.tag(verify_core::COSE_SIGN1_TAG)
        .array(4)
        .bytes(&protected)
        .map(0)
        .bytes(&payload)
        .bytes(&sig);
    Ok(w.into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]

    use super::*;
    use sha2::{Digest, Sha256};

    /// Every engine must produce RFC 8032's deterministic signature: the same bytes as
    /// ed25519-dalek for every key and message (lengths 0..=2048, both sides of the
    /// SHA-512 block boundaries), and signatures that verify.
    #[test]
    fn engines_sign_alike() {
        for k in 0u8..8 {
            let seed: [u8; 32] = Sha256::digest([b'k', k]).into();
            let s = KeyFileSigner::from_seed(&seed, "test key");
            #[cfg(feature = "aws-lc")]
            assert_eq!(s.engine(), "aws-lc");
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&s.public_key()).unwrap();
            for len in (0usize..300).chain([511, 512, 1023, 1024, 2048]) {
                let msg: Vec<u8> = (0..len).map(|i| (i as u8) ^ k.wrapping_mul(31)).collect();
                let sig = s.sign(&msg).unwrap();
                assert_eq!(sig, s.sign_reference(&msg), "key {k}, message length {len}");
                vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                    .unwrap();
            }
        }
    }

    /// With presigning, signatures come from the pool or, when it is empty, the
    /// ordinary way; either way they verify strictly, and the counts add up. On one
    /// CPU (`taskset -c 0 cargo test`) presigning stays off.
    #[test]
    fn presigning_signer_signs_validly_either_way() {
        let s = KeyFileSigner::from_seed(&[4; 32], "test key").with_presigning(16);
        if std::thread::available_parallelism().unwrap().get() < 2 {
            assert!(s.presign_stats().is_none() && !s.describe().contains("presigned"));
            return;
        }
        assert!(s.describe().contains("presigned"), "{}", s.describe());
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&s.public_key()).unwrap();
        let mut nonces = std::collections::BTreeSet::new();
        for i in 0u16..200 {
            // Distinct messages: signed the ordinary (deterministic) way, one message
            // signed twice would repeat its nonce, rightly.
            let msg = i.to_le_bytes().repeat(usize::from(i % 50) + 1);
            let sig = s.sign(&msg).unwrap();
            vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .unwrap();
            nonces.insert(sig[..32].to_vec());
        }
        assert_eq!(nonces.len(), 200, "a nonce was used twice");
        let (_, used, missed) = s.presign_stats().unwrap();
        assert_eq!(used + missed, 200);
        assert!(KeyFileSigner::from_seed(&[4; 32], "k").presign_stats().is_none());
    }

    /// RFC 8032 §7.1 TEST 3: a published vector, so the engine is checked against the
    /// standard and not only against the other implementation.
    #[test]
    fn rfc8032_test_3() {
        let seed: [u8; 32] = hex::decode("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7")
            .unwrap()
            .try_into()
            .unwrap();
        let s = KeyFileSigner::from_seed(&seed, "RFC 8032 test key");
        assert_eq!(
            hex::encode(s.public_key()),
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"
        );
        assert_eq!(
            hex::encode(s.sign(&[0xaf, 0x82]).unwrap()),
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
             18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        );
    }
}
