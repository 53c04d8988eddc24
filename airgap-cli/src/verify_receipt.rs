//! `helm-airgap verify-receipt FILE --trusted-key ed25519:HEX [--json]`
//!
//! Verifies a HELM `receipt.v5` receipt (the Go implementation's signed receipts) with
//! `receipt-v5` under a key given on the command line, never one taken from the receipt,
//! and reports the 13 signed members, or the error class and why. The other members of
//! the receipt are listed as not authenticated. Exit 0 verified, 1 not verified, 2 usage
//! or I/O error (including a receipt over [`MAX_RECEIPT_BYTES`]; then nothing is printed
//! on standard output, even with `--json`).

use std::io::Read;

use receipt_v5::{MemberValue, ReceiptError, VerifiedReceipt};
use serde::{Serialize, Serializer};

use crate::cli::VerifyReceiptConfig;
use crate::files::Input;
use crate::output::{outln, Out, Safe};
use crate::status::{CliError, Status};

/// Largest receipt read, in bytes (1 MiB; the Go implementation's receipts are about 1 KiB).
pub(crate) const MAX_RECEIPT_BYTES: u64 = 1 << 20;

/// Width of the member-name column in the report for people.
const NAME_WIDTH: usize = 18;

/// A signed member's value: a string, or `lamport_clock`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SignedValue {
    String(String),
    Integer(u64),
}

/// The 13 signed members, in the profile's order (a JSON object in that order).
#[derive(Debug)]
struct Signed(Vec<(&'static str, SignedValue)>);

impl Serialize for Signed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// The report of a receipt that verified (field names are stable: README.md).
#[derive(Debug, Serialize)]
struct VerifiedReport {
    verified: bool,
    receipt: String,
    trusted_key: String,
    signed: Signed,
    unsigned_members: Vec<String>,
}

/// Why a receipt did not verify.
#[derive(Debug, Serialize)]
struct ErrorJson {
    class: &'static str,
    detail: String,
}

/// The report of a receipt that did not verify.
#[derive(Debug, Serialize)]
struct FailedReport {
    verified: bool,
    receipt: String,
    trusted_key: String,
    error: ErrorJson,
}

/// Reads the whole receipt, refusing more than [`MAX_RECEIPT_BYTES`].
fn read_receipt(input: &Input) -> Result<Vec<u8>, CliError> {
    let too_large = || {
        CliError::usage(format!(
            "receipt {}: larger than {MAX_RECEIPT_BYTES} bytes (1 MiB), the most verify-receipt reads",
            input.display()
        ))
    };
    let opened = input.open()?;
    if opened.size.is_some_and(|s| s > MAX_RECEIPT_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    opened
        .reader
        .take(MAX_RECEIPT_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io(format!("cannot read {}", input.display()), &e))?;
    if bytes.len() as u64 > MAX_RECEIPT_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn verified_report(receipt: String, trusted_key: String, r: &VerifiedReceipt<'_>) -> VerifiedReport {
    let signed = r
        .members()
        .map(|(m, v)| {
            let value = match v {
                MemberValue::String(s) => SignedValue::String(s.to_string()),
                MemberValue::Integer(n) => SignedValue::Integer(n),
            };
            (m.name(), value)
        })
        .collect();
    VerifiedReport {
        verified: true,
        receipt,
        trusted_key,
        signed: Signed(signed),
        unsigned_members: r.unsigned_members().map(|(name, _)| name.to_string()).collect(),
    }
}

fn error_json(e: &ReceiptError) -> ErrorJson {
    let class = e.class().name();
    // `ReceiptError`'s text is "<class>: <detail>".
    let text = e.to_string();
    let detail = text
        .strip_prefix(class)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(&text)
        .to_string();
    ErrorJson { class, detail }
}

pub(crate) fn run(cfg: &VerifyReceiptConfig) -> Result<Status, CliError> {
    let bytes = read_receipt(&cfg.receipt)?;
    // A buffer as long as the receipt always suffices to rewrite signed members spelled
    // with non-canonical escapes, so no valid receipt under the size bound hits a limit.
    let mut scratch = vec![0u8; bytes.len()];
    let result = receipt_v5::verify_with_scratch(&bytes, &cfg.trusted_key, &mut scratch);
    let receipt = cfg.receipt.display();
    let trusted_key = cfg.trusted_key.to_string();
    let mut out = Out::new();
    let status = match result {
        Ok(r) => {
            let report = verified_report(receipt, trusted_key, &r);
            if cfg.json {
                out.json(&report)?;
            } else {
                print_verified(&mut out, &report);
            }
            Status::Success
        }
        Err(e) => {
            let report = FailedReport {
                verified: false,
                receipt,
                trusted_key,
                error: error_json(&e),
            };
            if cfg.json {
                out.json(&report)?;
            } else {
                print_failed(&mut out, &report);
            }
            Status::Failed
        }
    };
    out.finish()?;
    Ok(status)
}

fn print_verified(out: &mut Out, r: &VerifiedReport) {
    outln!(
        out,
        "VERIFIED: {} is a receipt.v5 receipt signed by the trusted key {}",
        Safe(&r.receipt),
        r.trusted_key
    );
    outln!(out, "  signed members (authenticated by the signature):");
    for (name, value) in &r.signed.0 {
        match value {
            SignedValue::String(s) if s.is_empty() => outln!(out, "    {name:<NAME_WIDTH$} (empty)"),
            SignedValue::String(s) => outln!(out, "    {name:<NAME_WIDTH$} {}", Safe(s)),
            SignedValue::Integer(n) => outln!(out, "    {name:<NAME_WIDTH$} {n}"),
        }
    }
    if r.unsigned_members.is_empty() {
        outln!(out, "  note: the receipt has no unsigned members");
    } else {
        outln!(
            out,
            "  note: {} unsigned members are present and NOT AUTHENTICATED (anyone can change them \
             without breaking the signature):",
            r.unsigned_members.len()
        );
        outln!(out, "    {}", Safe(&r.unsigned_members.join(", ")));
    }
}

fn print_failed(out: &mut Out, r: &FailedReport) {
    outln!(
        out,
        "FAILED: {} does not verify as a receipt.v5 receipt signed by the trusted key {}",
        Safe(&r.receipt),
        r.trusted_key
    );
    outln!(out, "  error   {}", r.error.class);
    outln!(out, "  detail  {}", Safe(&r.error.detail));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_drops_the_class_prefix() {
        let e = ReceiptError::SignatureRejected;
        let j = error_json(&e);
        assert_eq!(j.class, "signature_rejected");
        assert!(j.detail.starts_with("the Ed25519 signature"), "{}", j.detail);
    }

    #[test]
    fn signed_members_keep_their_order() {
        let s = Signed(vec![
            ("verdict", SignedValue::String("DENY".into())),
            ("lamport_clock", SignedValue::Integer(7)),
            ("args_hash", SignedValue::String(String::new())),
        ]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"verdict":"DENY","lamport_clock":7,"args_hash":""}"#
        );
    }
}
