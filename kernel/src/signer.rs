//! The kernel key behind an interface, so that it can live in a file or in an HSM.
//!
//! A [`RecordSigner`] signs COSE Sig_structures; [`sign_record`] turns a
//! [`RecordBuilder`] into record bytes with it. A signer whose signatures come from
//! outside the process (a PKCS#11 token) checks each one against its public key before
//! returning it: a faulty token must not put an invalid record into the store.

use core::fmt;
use std::path::Path;

use verify_core::Signer;
use verify_core::{protected_header, sig_structure, CborWriter, RecordBuilder};

use crate::keyfile::{KeyFile, KeyFileError};

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
#[derive(Clone)]
pub struct KeyFileSigner {
    signer: Signer,
    public: [u8; 32],
    origin: String,
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
        let signer = key.signer();
        KeyFileSigner {
            public: signer.public_key(),
            signer,
            origin,
        }
    }

    /// A signer from a raw seed (tests and benchmarks).
    pub fn from_seed(seed: &[u8; 32], origin: &str) -> KeyFileSigner {
        let signer = Signer::from_seed(seed);
        KeyFileSigner {
            public: signer.public_key(),
            signer,
            origin: origin.to_owned(),
        }
    }
}

impl RecordSigner for KeyFileSigner {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        Ok(self.signer.sign(message))
    }

    fn describe(&self) -> String {
        self.origin.clone()
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
