//! Text forms of keys and hashes.

use verify_core::Hash;

/// Prefix of a public key in trust-root and key files.
pub(crate) const KEY_PREFIX: &str = "ed25519:";

/// 32 bytes from exactly 64 lowercase hex digits.
pub(crate) fn hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, found {} characters",
            s.chars().count()
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("expected lowercase hex digits (0-9, a-f)".into());
    }
    let bytes = hex::decode(s).map_err(|e| e.to_string())?;
    <[u8; 32]>::try_from(bytes).map_err(|_| "expected 32 bytes".to_string())
}

/// A public key written `ed25519:` and 64 lowercase hex digits.
pub(crate) fn parse_key(s: &str) -> Result<[u8; 32], String> {
    let Some(h) = s.strip_prefix(KEY_PREFIX) else {
        return Err(format!(
            "a key is written \"{KEY_PREFIX}\" followed by 64 lowercase hex digits"
        ));
    };
    hex32(h)
}

/// `ed25519:<hex>`.
pub(crate) fn key_string(k: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(k))
}

/// The first 8 bytes of a hash in hex, for listings meant for people.
pub(crate) fn short(h: &Hash) -> String {
    hex::encode(h.get(..8).unwrap_or(h))
}

/// A byte count with an optional binary suffix: `4096`, `512K`, `64M`, `4G`, `1T`
/// (also `KiB`, `MiB`, `GiB`, `TiB`).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a byte count"))?;
    let shift = match suffix {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return Err(format!("unknown size suffix {suffix:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_keys() {
        let k = [0xabu8; 32];
        assert_eq!(parse_key(&key_string(&k)), Ok(k));
        assert!(parse_key(&hex::encode(k)).is_err());
        assert!(hex32(&hex::encode(k).to_uppercase()).is_err());
        assert!(hex32("ab").is_err());
        assert_eq!(short(&k), "abababababababab");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("512K"), Ok(512 << 10));
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("4X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }
}
