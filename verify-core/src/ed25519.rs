//! Ed25519 verification with the pinned, non-malleable semantics of spec/ed25519.md.
//!
//! Backend: ed25519-dalek. Its `verify_strict` has the verdicts the spec pins on all 914
//! CCTV edge cases (ed25519-compact checks the cofactored equation and accepts some
//! mixed-order cases Go, OpenSSL and `verify_strict` reject, and is about six times
//! larger on Cortex-M). We use dalek's streaming verifier (`hazmat`) so that a record's
//! COSE Sig_structure is hashed in pieces instead of copied into a buffer, and perform
//! `verify_strict`'s extra checks ourselves, plus an explicit canonical-encoding check:
//! 1. S is canonical (S < L): enforced by dalek when the signature is parsed;
//! 2. A and R are canonical encodings (y < p; A is recompressed and compared);
//! 3. A and R are not of small order;
//! 4. the cofactorless equation [S]B = R + [k]A, checked as dalek does: the point
//!    [S]B - [k]A, compressed, must equal the encoding of R byte for byte.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, VerifyingKey};

/// A public key that passed the spec's key checks, ready to verify with.
#[derive(Clone, Copy, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// Why a public key is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not a canonical encoding of a curve point.
    NonCanonical,
    /// Not on the curve.
    NotOnCurve,
    /// A point of small order (2, 4 or 8, or the identity).
    SmallOrder,
    /// A point with a small-order component (not in the prime-order subgroup).
    NotPrimeOrder,
}

/// The canonical encodings of the eight points of small order (the 8-torsion, as
/// `curve25519_dalek::constants::EIGHT_TORSION` compresses them; a test checks this).
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85,
    ],
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa,
    ],
];

/// Whether a 32-byte encoding has y < p (the field element is reduced).
fn y_is_canonical(b: &[u8; 32]) -> bool {
    // p = 2^255 - 19. The low 255 bits are >= p only when they are all ones except
    // the low byte, which is >= 0xed.
    let top = b[31] & 0x7f;
    let middle_all_ones = b[1..31].iter().all(|&x| x == 0xff);
    !(top == 0x7f && middle_all_ones && b[0] >= 0xed)
}

impl PublicKey {
    /// A key for signature verification: canonical and not of small order (the checks
    /// `verify_strict` and the spec apply to A). Mixed-order keys pass this; trust events
    /// admit keys only through [`PublicKey::admit`].
    pub fn for_verification(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        if !y_is_canonical(bytes) {
            return Err(KeyError::NonCanonical);
        }
        let point = CompressedEdwardsY(*bytes).decompress().ok_or(KeyError::NotOnCurve)?;
        // Recompression catches the remaining non-canonical form: x = 0 with the sign bit set.
        if point.compress().to_bytes() != *bytes {
            return Err(KeyError::NonCanonical);
        }
        if point.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotOnCurve)?;
        Ok(PublicKey { key })
    }

    /// A key that a TRUST_EVENT (or the caller, as a trust anchor) may admit: in addition,
    /// of prime order (no small-order component), so its signatures are unambiguous.
    pub fn admit(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let pk = PublicKey::for_verification(bytes)?;
        let point = CompressedEdwardsY(*bytes).decompress().ok_or(KeyError::NotOnCurve)?;
        if !point.is_torsion_free() {
            return Err(KeyError::NotPrimeOrder);
        }
        Ok(pk)
    }

    /// The key's encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Verifies `signature` over the concatenation of `parts`, with the spec's rules.
    pub fn verify_parts(&self, parts: &[&[u8]], signature: &[u8; 64]) -> bool {
        let r: [u8; 32] = match signature[..32].try_into() {
            Ok(r) => r,
            Err(_) => return false,
        };
        // R must be canonical and not of small order. No need to decompress it: the
        // equation check below compares R byte for byte with the canonical encoding of
        // a curve point, which no non-canonical encoding and no non-point can equal; so
        // only the canonical encodings of the eight small-order points remain to refuse.
        if !y_is_canonical(&r) || SMALL_ORDER_ENCODINGS.contains(&r) {
            return false;
        }
        let sig = Signature::from_bytes(signature);
        // `verify_stream` rejects S >= L when it parses the signature.
        let Ok(mut stream) = self.key.verify_stream(&sig) else {
            return false;
        };
        for part in parts {
            stream.update(part);
        }
        stream.finalize_and_verify().is_ok()
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.verify_parts(&[message], signature)
    }
}

/// Verifies an Ed25519 signature with the spec's semantics, from raw bytes.
/// This is the function the CCTV edge-case vectors pin.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    match PublicKey::for_verification(public_key) {
        Ok(pk) => pk.verify(message, signature),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_canonical_boundary() {
        let mut b = [0xffu8; 32];
        b[31] = 0x7f;
        b[0] = 0xec; // p - 1
        assert!(y_is_canonical(&b));
        b[0] = 0xed; // p
        assert!(!y_is_canonical(&b));
        b[31] = 0xff; // sign bit does not matter
        assert!(!y_is_canonical(&b));
    }

    #[test]
    fn small_order_encodings_are_the_eight_torsion() {
        for (p, e) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .zip(SMALL_ORDER_ENCODINGS.iter())
        {
            assert_eq!(p.compress().to_bytes(), *e);
            assert!(p.is_small_order());
        }
    }

    #[test]
    fn identity_and_negative_zero_are_refused() {
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey::for_verification(&id).err(), Some(KeyError::SmallOrder));
        id[31] = 0x80; // x = 0 with the sign bit set
        assert_eq!(PublicKey::for_verification(&id).err(), Some(KeyError::NonCanonical));
    }
}
