//! The COSE_Sign1 envelope (RFC 9052) shared by records and pack manifests: tag 18,
//! protected header exactly `{1: -8, 4: kid}`, empty unprotected header, 64-byte
//! Ed25519 signature over `["Signature1", protected, h'', payload]`.

use crate::cbor::{encode_head, Reader, MAJOR_BYTES};
use crate::ed25519::PublicKey;
use crate::error::{CborError, ErrorCode};

/// COSE algorithm identifier for EdDSA (RFC 9053), the only one accepted.
pub const COSE_ALG_EDDSA: i64 = -8;
/// CBOR tag of COSE_Sign1 (RFC 9052).
pub const COSE_SIGN1_TAG: u64 = 18;

/// The error [`Sign1::decode`] would report for an input of `input_len` bytes that
/// begins with `prefix`, when the envelope's heads are malformed within `prefix`.
/// `None` if `prefix` does not show an envelope error.
pub fn envelope_error(prefix: &[u8], input_len: usize) -> Option<ErrorCode> {
    Sign1::decode_from(Reader::with_input_len(prefix, input_len)).err()
}

/// A decoded COSE_Sign1: well-formed, signature not yet checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sign1<'a> {
    /// The signing key named by the protected header.
    pub kid: [u8; 32],
    /// The protected header's bytes (the content of its bstr).
    pub protected: &'a [u8],
    /// The payload's bytes (the content of its bstr).
    pub payload: &'a [u8],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

impl<'a> Sign1<'a> {
    /// Decodes the envelope strictly: exactly one tagged COSE_Sign1, nothing after it.
    pub fn decode(bytes: &'a [u8]) -> Result<Sign1<'a>, ErrorCode> {
        Sign1::decode_from(Reader::new(bytes))
    }

    fn decode_from(mut r: Reader<'a>) -> Result<Sign1<'a>, ErrorCode> {
        let outer = (|| -> Result<_, CborError> {
            if r.tag()? != COSE_SIGN1_TAG {
                return Err(CborError::UnexpectedType);
            }
            if r.array_len()? != 4 {
                return Err(CborError::WrongLength);
            }
            let protected = r.bytes()?;
            if r.map_len()? != 0 {
                return Err(CborError::WrongLength);
            }
            let payload = r.bytes()?;
            let signature = r.bytes_fixed::<64>()?;
            r.finish()?;
            Ok((protected, payload, signature))
        })();
        let (protected, payload, signature) = outer.map_err(|e| match ErrorCode::from(e) {
            ErrorCode::SchemaInvalidValue => ErrorCode::CoseStructure,
            other => other,
        })?;
        let kid = decode_protected(protected)?;
        Ok(Sign1 {
            kid,
            protected,
            payload,
            signature,
        })
    }

    /// Verifies the signature over the Sig_structure, hashed in pieces (no buffer).
    pub fn verify(&self, pk: &PublicKey) -> bool {
        const PREFIX: [u8; 12] = [0x84, 0x6a, b'S', b'i', b'g', b'n', b'a', b't', b'u', b'r', b'e', b'1'];
        let mut ph = [0u8; 9];
        let pn = encode_head(MAJOR_BYTES, self.protected.len() as u64, &mut ph);
        let mut yh = [0u8; 9];
        let yn = encode_head(MAJOR_BYTES, self.payload.len() as u64, &mut yh);
        pk.verify_parts(
            &[
                &PREFIX,
                ph.get(..pn).unwrap_or(&[]),
                self.protected,
                &[0x40],
                yh.get(..yn).unwrap_or(&[]),
                self.payload,
            ],
            &self.signature,
        )
    }
}

fn decode_protected(protected: &[u8]) -> Result<[u8; 32], ErrorCode> {
    let mut r = Reader::new(protected);
    let n = r.map_len()?;
    let mut prev = None;
    let mut alg = None;
    let mut kid = None;
    for _ in 0..n {
        match r.key(&mut prev)? {
            1 => alg = Some(r.int()?),
            4 => kid = Some(r.bytes()?),
            _ => return Err(ErrorCode::SchemaUnknownField),
        }
    }
    r.finish()?;
    if alg != Some(COSE_ALG_EDDSA) {
        return Err(ErrorCode::CoseAlgorithm);
    }
    let kid = kid.ok_or(ErrorCode::CoseKidMissing)?;
    kid.try_into().map_err(|_| ErrorCode::CoseKidMissing)
}
