//! Key files (`helm-key/1`): an Ed25519 signing key as JSON, created with mode 0600.
//!
//! ```json
//! {
//!   "format": "helm-key/1",
//!   "name": "kernel-1",
//!   "role": "kernel",
//!   "public": "ed25519:<64 lowercase hex digits>",
//!   "secret": "<64 lowercase hex digits: the RFC 8032 seed>"
//! }
//! ```
//!
//! `role` is a label (the roles that count are those a TRUST_EVENT grants); when absent
//! it reads as `kernel`. `public` must be the key the seed derives.

use core::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use verify_core::Signer;

/// The `format` value.
pub const FORMAT: &str = "helm-key/1";
/// Largest key file read.
const MAX_FILE: u64 = 64 << 10;
/// Text form of a public key: this prefix and 64 lowercase hex digits.
pub const KEY_PREFIX: &str = "ed25519:";

/// A key file could not be read, parsed or written. Never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileError(pub String);

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for KeyFileError {}

fn default_role() -> String {
    verify_core::ROLE_KERNEL.into()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    format: String,
    name: String,
    #[serde(default = "default_role")]
    role: String,
    public: String,
    secret: String,
}

/// 64 lowercase hex digits as 32 bytes.
pub fn hex32(s: &str) -> Result<[u8; 32], String> {
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

/// `ed25519:<hex>` as a raw key.
pub fn parse_key(s: &str) -> Result<[u8; 32], String> {
    let Some(h) = s.strip_prefix(KEY_PREFIX) else {
        return Err(format!(
            "a key is written \"{KEY_PREFIX}\" followed by 64 lowercase hex digits"
        ));
    };
    hex32(h)
}

/// `ed25519:<hex>`.
pub fn key_string(k: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(k))
}

/// A signing key with its label. `Debug` never shows the seed.
#[derive(Clone)]
pub struct KeyFile {
    /// The key's label.
    pub name: String,
    /// The role it is meant for (a label).
    pub role: String,
    /// The public key.
    pub public: [u8; 32],
    seed: [u8; 32],
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("public", &key_string(&self.public))
            .finish_non_exhaustive()
    }
}

/// Checks a key name: non-empty, at most 128 bytes, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err("a key name is 1 to 128 bytes without control characters".into());
    }
    Ok(())
}

/// Checks a role name as the record format does.
pub fn check_role(role: &str) -> Result<(), String> {
    if !verify_core::role_name_valid(role) {
        return Err(format!(
            "{role:?} is not a valid role name (lowercase letters, digits and '-', at most {} bytes)",
            verify_core::MAX_ROLE_LEN
        ));
    }
    Ok(())
}

impl KeyFile {
    /// The key derived from `seed`.
    pub fn from_seed(name: String, role: String, seed: [u8; 32]) -> KeyFile {
        let public = Signer::from_seed(&seed).public_key();
        KeyFile {
            name,
            role,
            public,
            seed,
        }
    }

    /// A new key from 32 bytes of operating-system randomness.
    pub fn generate(name: String, role: String) -> Result<KeyFile, KeyFileError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| KeyFileError(format!("the operating system's random source failed: {e}")))?;
        Ok(KeyFile::from_seed(name, role, seed))
    }

    /// The seed, for signers built from this key (never printed).
    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The signer.
    pub fn signer(&self) -> Signer {
        Signer::from_seed(&self.seed)
    }

    /// The seed in hex (only for `keys show --secret` and the file itself).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.seed)
    }

    /// Parses the JSON text of a key file.
    pub fn parse(text: &str) -> Result<KeyFile, String> {
        let j: KeyJson = serde_json::from_str(text).map_err(|e| format!("not a valid key file: {e}"))?;
        if j.format != FORMAT {
            return Err(format!("format is {:?}; expected {FORMAT:?}", j.format));
        }
        check_name(&j.name)?;
        check_role(&j.role)?;
        let public = parse_key(&j.public).map_err(|e| format!("public: {e}"))?;
        // Do not echo the secret in any message.
        let seed = hex32(&j.secret).map_err(|_| "secret: expected 64 lowercase hex digits".to_string())?;
        let k = KeyFile::from_seed(j.name, j.role, seed);
        if k.public != public {
            return Err("public is not the key the secret derives".into());
        }
        Ok(k)
    }

    /// Reads and parses a key file, naming the file in any error. Returns the key and
    /// whether other users may read or write the file.
    pub fn load(path: &Path) -> Result<(KeyFile, bool), KeyFileError> {
        let meta = fs::metadata(path).map_err(|e| KeyFileError(format!("key file {}: {e}", path.display())))?;
        if meta.len() > MAX_FILE {
            return Err(KeyFileError(format!(
                "key file {}: larger than {MAX_FILE} bytes",
                path.display()
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| KeyFileError(format!("key file {}: {e}", path.display())))?;
        let k = KeyFile::parse(&text).map_err(|p| KeyFileError(format!("key file {}: {p}", path.display())))?;
        Ok((k, meta.permissions().mode() & 0o077 != 0))
    }

    /// Reads a key file that a server will sign with: one that other users may read
    /// or write is refused.
    pub fn load_private(path: &Path) -> Result<KeyFile, KeyFileError> {
        let (k, exposed) = KeyFile::load(path)?;
        if exposed {
            return Err(KeyFileError(format!(
                "key file {} may be read or written by other users; chmod 600 it",
                path.display()
            )));
        }
        Ok(k)
    }

    /// The JSON text of the file.
    pub fn to_json(&self) -> String {
        let j = KeyJson {
            format: FORMAT.into(),
            name: self.name.clone(),
            role: self.role.clone(),
            public: key_string(&self.public),
            secret: self.secret_hex(),
        };
        let mut text = serde_json::to_string_pretty(&j).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the key file with mode 0600; never overwrites an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        let err = |e: std::io::Error| KeyFileError(format!("cannot write key file {}: {e}", path.display()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(self.to_json().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let k = KeyFile::from_seed("k".into(), "kernel".into(), [7; 32]);
        let text = k.to_json();
        let back = KeyFile::parse(&text).unwrap();
        assert_eq!(back.public, k.public);
        assert_eq!(back.secret_hex(), k.secret_hex());
        assert!(!format!("{k:?}").contains(&k.secret_hex()));
        let other = key_string(&KeyFile::from_seed("o".into(), "kernel".into(), [8; 32]).public);
        let mismatched = text.replace(&key_string(&k.public), &other);
        assert!(KeyFile::parse(&mismatched).unwrap_err().contains("derives"));
        let bad_secret = text.replace(&k.secret_hex(), "zz");
        let err = KeyFile::parse(&bad_secret).unwrap_err();
        assert!(!err.contains("zz"), "{err}");
        let no_role = text.replace("  \"role\": \"kernel\",\n", "");
        assert_eq!(KeyFile::parse(&no_role).unwrap().role, "kernel");
    }

    #[test]
    fn private_load_refuses_exposed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let k = KeyFile::from_seed("k".into(), "kernel".into(), [7; 32]);
        k.write_new(&path).unwrap();
        assert!(k.write_new(&path).is_err(), "never overwrites");
        assert_eq!(KeyFile::load_private(&path).unwrap().public, k.public);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyFile::load_private(&path).unwrap_err().0.contains("chmod 600"));
    }
}
