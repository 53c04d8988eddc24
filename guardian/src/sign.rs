//! Signed bundles: a COSE_Sign1 (the record envelope of spec/record-format.md §3–4)
//! whose payload is the canonical bundle, signed by a `policy-author` key.

use core::fmt;

use verify_core::{protected_header, sign_payload, PublicKey, Sign1, Signer};

use crate::bundle::{Bundle, BundleError};

/// Why a signed bundle does not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a COSE_Sign1 envelope (an unsigned bundle, or damaged bytes).
    NotSigned(String),
    /// The signing key is not one of the trusted `policy-author` keys.
    UntrustedKey([u8; 32]),
    /// The signature does not verify (the bundle was altered after signing).
    BadSignature,
    /// The signed payload is not a valid canonical bundle.
    Bundle(BundleError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotSigned(m) => write!(f, "not a signed bundle: {m}"),
            LoadError::UntrustedKey(k) => {
                f.write_str("signed by a key that is not a trusted policy author: ")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            LoadError::BadSignature => f.write_str("the bundle's signature does not verify"),
            LoadError::Bundle(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for LoadError {}

/// Signs a bundle's canonical form with a `policy-author` key.
pub fn sign_bundle(bundle: &Bundle, author: &Signer) -> Vec<u8> {
    sign_payload(author, &protected_header(&author.public_key()), bundle.canonical())
}

/// Loads a signed bundle: the envelope must be well formed, signed by one of
/// `trusted_authors` (keys holding the `policy-author` role, supplied by the caller),
/// with a valid signature, over a canonical bundle. Returns the bundle and its author.
pub fn load_signed(bytes: &[u8], trusted_authors: &[[u8; 32]]) -> Result<(Bundle, [u8; 32]), LoadError> {
    let env = Sign1::decode(bytes).map_err(|e| LoadError::NotSigned(format!("{e:?}")))?;
    if !trusted_authors.contains(&env.kid) {
        return Err(LoadError::UntrustedKey(env.kid));
    }
    let pk = PublicKey::for_verification(&env.kid).map_err(|_| LoadError::BadSignature)?;
    if !env.verify(&pk) {
        return Err(LoadError::BadSignature);
    }
    let bundle = Bundle::from_canonical(env.payload).map_err(LoadError::Bundle)?;
    Ok((bundle, env.kid))
}
