//! Key files: an Ed25519 signing key for `export --key`, written by `keys generate`.
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
//! it reads as `kernel`. `public` must be the key the seed derives. The file is created
//! with mode 0600; reading one that others may read prints a warning.

use core::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use verify_core::Signer;

use crate::encoding::{hex32, key_string, parse_key};
use crate::files::read_small;
use crate::output::note;
use crate::status::CliError;

/// The `format` value.
pub(crate) const FORMAT: &str = "helm-key/1";
/// Largest key file read.
const MAX_FILE: u64 = 64 << 10;

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

/// A signing key with its label. `Debug` never shows the seed.
#[derive(Clone)]
pub(crate) struct KeyFile {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) public: [u8; 32],
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
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err("a key name is 1 to 128 bytes without control characters".into());
    }
    Ok(())
}

/// Checks a role name as the record format does.
pub(crate) fn check_role(role: &str) -> Result<(), String> {
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
    pub(crate) fn from_seed(name: String, role: String, seed: [u8; 32]) -> KeyFile {
        let public = Signer::from_seed(&seed).public_key();
        KeyFile {
            name,
            role,
            public,
            seed,
        }
    }

    /// A new key from 32 bytes of operating-system randomness.
    pub(crate) fn generate(name: String, role: String) -> Result<KeyFile, CliError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CliError::usage(format!("the operating system's random source failed: {e}")))?;
        Ok(KeyFile::from_seed(name, role, seed))
    }

    /// The signer.
    pub(crate) fn signer(&self) -> Signer {
        Signer::from_seed(&self.seed)
    }

    /// The seed in hex (only for `keys show --secret` and the file itself).
    pub(crate) fn secret_hex(&self) -> String {
        hex::encode(self.seed)
    }

    /// Parses the JSON text of a key file.
    pub(crate) fn parse(text: &str) -> Result<KeyFile, String> {
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

    /// Reads a key file; any problem is exit 2, naming the file.
    pub(crate) fn load(path: &Path) -> Result<KeyFile, CliError> {
        let text = read_small(path, MAX_FILE, "key file")?;
        let k = KeyFile::parse(&text).map_err(|p| CliError::usage(format!("key file {}: {p}", path.display())))?;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                note!(
                    "warning: key file {} may be read by other users (mode {:o}); use chmod 600",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
        Ok(k)
    }

    /// The JSON text of the file.
    pub(crate) fn to_json(&self) -> Result<String, CliError> {
        let j = KeyJson {
            format: FORMAT.into(),
            name: self.name.clone(),
            role: self.role.clone(),
            public: key_string(&self.public),
            secret: self.secret_hex(),
        };
        let mut text =
            serde_json::to_string_pretty(&j).map_err(|e| CliError::usage(format!("cannot encode key file: {e}")))?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let k = KeyFile::from_seed("k".into(), "kernel".into(), [7; 32]);
        let text = k.to_json().unwrap();
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
}
