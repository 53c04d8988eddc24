//! Key files (`helm-key/1`, defined in `helm_kernel::keyfile`): loading with the CLI's
//! error handling. A key file that other users may read is used, with a warning (an
//! air-gapped laptop's files); the kernel server refuses such a file.

use std::path::Path;

pub(crate) use helm_kernel::keyfile::{check_name, check_role, KeyFile};

use crate::output::note;
use crate::status::CliError;

/// Reads a key file; any problem is exit 2, naming the file.
pub(crate) fn load(path: &Path) -> Result<KeyFile, CliError> {
    let (key, exposed) = KeyFile::load(path).map_err(|e| CliError::usage(e.0))?;
    if exposed {
        note!(
            "warning: key file {} may be read by other users; use chmod 600",
            path.display()
        );
    }
    Ok(key)
}

/// A new key from the operating system's random source.
pub(crate) fn generate(name: String, role: String) -> Result<KeyFile, CliError> {
    KeyFile::generate(name, role).map_err(|e| CliError::usage(e.0))
}
