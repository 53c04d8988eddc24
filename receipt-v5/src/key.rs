//! The trusted key: supplied by the caller, out of band.

use core::fmt;
use core::str::FromStr;

use verify_core::{KeyError, PublicKey};

/// An Ed25519 public key the caller trusts to sign receipts.
///
/// Never take it from the receipt: `public_key_set` and `key_id` in a receipt are
/// unauthenticated routing hints. Admitted like a verify-core trust anchor
/// ([`PublicKey::admit`]): a canonical encoding of a point of prime order.
#[derive(Clone, Copy, Debug)]
pub struct TrustedKey {
    key: PublicKey,
}

impl TrustedKey {
    /// A trusted key from its 32-byte encoding.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<TrustedKey, KeyError> {
        Ok(TrustedKey {
            key: PublicKey::admit(bytes)?,
        })
    }

    /// A trusted key written as `ed25519:` followed by 64 lowercase hexadecimal characters
    /// (the form of the interop vectors and of `helm-airgap verify-receipt --trusted-key`).
    pub fn parse(text: &str) -> Result<TrustedKey, TrustedKeyError> {
        let hex = text.strip_prefix("ed25519:").ok_or(TrustedKeyError::Prefix)?;
        let mut bytes = [0u8; 32];
        if !decode_lower_hex(hex.as_bytes(), &mut bytes) {
            return Err(TrustedKeyError::Hex);
        }
        TrustedKey::from_bytes(&bytes).map_err(TrustedKeyError::Key)
    }

    /// The key's 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl FromStr for TrustedKey {
    type Err = TrustedKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustedKey::parse(s)
    }
}

impl fmt::Display for TrustedKey {
    /// `ed25519:` and 64 lowercase hexadecimal characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ed25519:")?;
        self.as_bytes().iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a trusted key written as text is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustedKeyError {
    /// It does not start with `ed25519:`.
    Prefix,
    /// It is not followed by exactly 64 lowercase hexadecimal characters.
    Hex,
    /// The 32 bytes are not a key verify-core admits as a trust anchor.
    Key(KeyError),
}

impl fmt::Display for TrustedKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedKeyError::Prefix => f.write_str("a trusted key must start with `ed25519:`"),
            TrustedKeyError::Hex => {
                f.write_str("a trusted key must be `ed25519:` and 64 lowercase hexadecimal characters")
            }
            TrustedKeyError::Key(e) => write!(f, "not a usable Ed25519 public key: {e:?}"),
        }
    }
}

impl core::error::Error for TrustedKeyError {}

/// Decodes exactly `out.len() * 2` lowercase hexadecimal characters.
pub(crate) fn decode_lower_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len().saturating_mul(2) {
        return false;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(c.wrapping_sub(b'a').wrapping_add(10)),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match pair {
            [hi, lo] => match (nibble(*hi), nibble(*lo)) {
                (Some(h), Some(l)) => *o = (h << 4) | l,
                _ => return false,
            },
            _ => return false,
        }
    }
    true
}
