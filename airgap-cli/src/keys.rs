//! `helm-airgap keys generate --out FILE [--name NAME] [--role ROLE]` and
//! `helm-airgap keys show FILE [--secret] [--json]`.
//!
//! Secrets are printed only by `keys show --secret`. Exit 0 done, 2 usage or I/O error
//! (including a bad key file, or an existing output file).

use serde::Serialize;

use crate::cli::{KeysConfig, KeysGenerateConfig, KeysShowConfig};
use crate::encoding::key_string;
use crate::files::write_atomic;
use crate::keyfile;
use crate::output::{outln, Out, Safe};
use crate::status::{CliError, Status};

fn generate(cfg: &KeysGenerateConfig) -> Result<Status, CliError> {
    if std::fs::symlink_metadata(&cfg.out).is_ok() {
        return Err(CliError::usage(format!(
            "{} exists; keys generate never overwrites a key file",
            cfg.out.display()
        )));
    }
    let key = keyfile::generate(cfg.name.clone(), cfg.role.clone())?;
    write_atomic(&cfg.out, key.to_json().as_bytes(), false, 0o600)?;
    let mut out = Out::new();
    outln!(
        out,
        "wrote {} (mode 0600): key {:?}, role {}",
        cfg.out.display(),
        Safe(&key.name).to_string(),
        key.role
    );
    outln!(out, "public {}", key_string(&key.public));
    out.finish()?;
    Ok(Status::Success)
}

#[derive(Debug, Serialize)]
struct ShowJson {
    name: String,
    role: String,
    public: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn show(cfg: &KeysShowConfig) -> Result<Status, CliError> {
    let key = keyfile::load(&cfg.file)?;
    let secret = cfg.secret.then(|| key.secret_hex());
    let mut out = Out::new();
    if cfg.json {
        out.json(&ShowJson {
            name: key.name.clone(),
            role: key.role.clone(),
            public: key_string(&key.public),
            secret,
        })?;
    } else {
        outln!(out, "name    {}", Safe(&key.name));
        outln!(out, "role    {}", key.role);
        outln!(out, "public  {}", key_string(&key.public));
        if let Some(s) = secret {
            outln!(out, "secret  {s}");
        }
    }
    out.finish()?;
    Ok(Status::Success)
}

pub(crate) fn run(cfg: &KeysConfig) -> Result<Status, CliError> {
    match cfg {
        KeysConfig::Generate(c) => generate(c),
        KeysConfig::Show(c) => show(c),
    }
}
