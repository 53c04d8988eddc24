//! Trust-root files: the anchors a verifier trusts, supplied out of band.
//!
//! ```json
//! {
//!   "format": "helm-trust-root/1",
//!   "anchors": [
//!     { "name": "root-1", "key": "ed25519:<64 lowercase hex digits>" }
//!   ]
//! }
//! ```
//!
//! `format` is exactly `helm-trust-root/1`; `anchors` has at least one entry; each `key`
//! is `ed25519:` and 64 lowercase hex digits and passes the prime-order admission check
//! of spec/ed25519.md; each `name` is a non-empty label without control characters.
//! Keys and names are unique. No other members are allowed. See README.md.

use std::path::Path;

use serde::{Deserialize, Serialize};
use verify_core::PublicKey;

use crate::encoding::{key_string, parse_key};
use crate::files::read_small;
use crate::status::CliError;

/// The `format` value.
pub(crate) const FORMAT: &str = "helm-trust-root/1";
/// Largest trust-root file read.
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    format: String,
    anchors: Vec<AnchorJson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorJson {
    name: String,
    key: String,
}

/// One trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) name: String,
    pub(crate) key: [u8; 32],
}

/// A loaded, checked trust root.
#[derive(Clone, Debug)]
pub(crate) struct TrustRoot {
    /// The file it came from, for reports.
    pub(crate) file: String,
    pub(crate) anchors: Vec<Anchor>,
}

impl TrustRoot {
    /// Reads and checks a trust-root file; any problem is exit 2, naming the file.
    pub(crate) fn load(path: &Path) -> Result<TrustRoot, CliError> {
        let text = read_small(path, MAX_FILE, "trust root")?;
        let anchors =
            parse(&text).map_err(|problem| CliError::usage(format!("trust root {}: {problem}", path.display())))?;
        Ok(TrustRoot {
            file: path.display().to_string(),
            anchors,
        })
    }

    /// The raw anchor keys, in file order.
    pub(crate) fn keys(&self) -> Vec<[u8; 32]> {
        self.anchors.iter().map(|a| a.key).collect()
    }

    /// The anchors' names, in file order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.anchors.iter().map(|a| a.name.clone()).collect()
    }
}

/// Parses and checks the JSON text of a trust-root file.
pub(crate) fn parse(text: &str) -> Result<Vec<Anchor>, String> {
    let file: FileJson = serde_json::from_str(text).map_err(|e| format!("not a valid trust-root file: {e}"))?;
    if file.format != FORMAT {
        return Err(format!("format is {:?}; expected {FORMAT:?}", file.format));
    }
    if file.anchors.is_empty() {
        return Err("no anchors: at least one is required".into());
    }
    let mut out: Vec<Anchor> = Vec::with_capacity(file.anchors.len());
    for (i, a) in file.anchors.iter().enumerate() {
        let at = format!("anchor #{i} ({:?})", a.name);
        if a.name.is_empty() || a.name.chars().any(char::is_control) {
            return Err(format!("{at}: a name is a non-empty label without control characters"));
        }
        let key = parse_key(&a.key).map_err(|e| format!("{at}: key: {e}"))?;
        PublicKey::admit(&key).map_err(|e| format!("{at}: key is not a valid Ed25519 anchor ({e:?})"))?;
        if out.iter().any(|o| o.name == a.name) {
            return Err(format!("{at}: the name appears twice"));
        }
        if out.iter().any(|o| o.key == key) {
            return Err(format!("{at}: the key appears twice"));
        }
        out.push(Anchor {
            name: a.name.clone(),
            key,
        });
    }
    Ok(out)
}

/// The JSON text of a trust-root file for `anchors`.
pub(crate) fn encode(anchors: &[Anchor]) -> Result<String, CliError> {
    let file = FileJson {
        format: FORMAT.into(),
        anchors: anchors
            .iter()
            .map(|a| AnchorJson {
                name: a.name.clone(),
                key: key_string(&a.key),
            })
            .collect(),
    };
    let mut text =
        serde_json::to_string_pretty(&file).map_err(|e| CliError::usage(format!("cannot encode trust root: {e}")))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_key() -> String {
        key_string(&helm_test_vectors::test_key("root-1").public_key())
    }

    fn doc(anchors: &str) -> String {
        format!(r#"{{"format":"helm-trust-root/1","anchors":[{anchors}]}}"#)
    }

    #[test]
    fn accepts_a_good_file_and_round_trips() {
        let text = doc(&format!(r#"{{"name":"root-1","key":"{}"}}"#, root_key()));
        let anchors = parse(&text).unwrap();
        assert_eq!(anchors.len(), 1);
        assert_eq!(parse(&encode(&anchors).unwrap()).unwrap(), anchors);
    }

    #[test]
    fn refuses_bad_files() {
        let good = format!(r#"{{"name":"root-1","key":"{}"}}"#, root_key());
        let cases = [
            ("{", "not a valid"),
            (r#"{"format":"helm-trust-root/2","anchors":[]}"#, "format"),
            (&doc(""), "no anchors"),
            (
                &format!(r#"{{"format":"helm-trust-root/1","anchors":[{good}],"extra":1}}"#),
                "unknown field",
            ),
            (&doc(r#"{"name":"r","key":"ed25519:00","x":1}"#), "unknown field"),
            (&doc(&good.replace("ed25519:", "")), "ed25519:"),
            (&doc(&good.replace("root-1\"", "\"")), "non-empty"),
            (&doc(&format!("{good},{good}")), "twice"),
            // The identity point: small order, never an anchor.
            (
                &doc(&format!(r#"{{"name":"id","key":"ed25519:01{}"}}"#, "00".repeat(31))),
                "not a valid Ed25519",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let upper = doc(&format!(
            r#"{{"name":"r","key":"ed25519:{}"}}"#,
            root_key()[8..].to_uppercase()
        ));
        assert!(parse(&upper).unwrap_err().contains("lowercase"));
    }
}
