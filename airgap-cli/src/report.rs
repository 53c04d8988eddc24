//! Pieces shared by the reports of `verify` and `export`.

use pack_format::transport::Wrapper;
use pack_format::{PackError, StreamError};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use verify_core::Kind;

use crate::output::{outln, Out, Safe};
use crate::status::CliError;

/// Records per kind, serialized as a map in kind order (`INTENT` … `CHECKPOINT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PerKind(pub(crate) [u64; 9]);

impl PerKind {
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Kind::ALL.iter().zip(self.0.iter()).map(|(k, n)| (k.name(), *n))
    }

    pub(crate) fn add(&mut self, kind: Kind) {
        if let Some(c) = self.0.get_mut((kind as usize).wrapping_sub(1)) {
            *c = c.saturating_add(1);
        }
    }
}

impl Serialize for PerKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9))?;
        for (name, n) in self.iter() {
            m.serialize_entry(name, &n)?;
        }
        m.end()
    }
}

/// `none`, `zstd` or `gzip`.
pub(crate) fn wrapper_name(w: Wrapper) -> &'static str {
    match w {
        Wrapper::None => "none",
        Wrapper::Zstd => "zstd",
        Wrapper::Gzip => "gzip",
    }
}

/// Everything a pack failure says, with stable field names (see README.md).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ErrorReport {
    /// The most specific code: the record's own code for record failures.
    pub(crate) code: &'static str,
    pub(crate) number: u16,
    /// The most specific explanation.
    pub(crate) detail: &'static str,
    /// The verification rule (1-6; 0 for resource limits), for record failures.
    pub(crate) rule: Option<u8>,
    pub(crate) record_index: Option<u64>,
    /// Partial packs: the record's position in its log, from its proof item.
    pub(crate) record_position: Option<u64>,
    pub(crate) record_hash: Option<String>,
    pub(crate) related: Option<String>,
    pub(crate) expected: Option<u64>,
    pub(crate) actual: Option<u64>,
    /// The container-level code (`PACK_RECORD_INVALID` for record failures).
    pub(crate) pack_code: &'static str,
    pub(crate) pack_number: u16,
    pub(crate) pack_detail: &'static str,
    pub(crate) entry: Option<String>,
    pub(crate) entry_index: Option<u32>,
    pub(crate) offset: u64,
    pub(crate) blob: Option<String>,
    pub(crate) needed_bytes: Option<u64>,
    pub(crate) transport: Option<String>,
}

impl ErrorReport {
    pub(crate) fn new(e: &PackError) -> ErrorReport {
        let r = e.record.as_ref();
        ErrorReport {
            code: e.code_name(),
            number: e.code_number(),
            detail: r.map_or(e.detail, |r| r.detail),
            rule: r.map(|r| r.code.rule()),
            record_index: r.map(|r| r.index).or(e.index),
            record_position: e.position,
            record_hash: r.and_then(|r| r.hash).map(hex::encode),
            related: r.and_then(|r| r.related).map(hex::encode),
            expected: r.and_then(|r| r.expected),
            actual: r.and_then(|r| r.actual),
            pack_code: e.code.name(),
            pack_number: e.code.number(),
            pack_detail: e.detail,
            entry: e.entry_name().map(str::to_string),
            entry_index: e.entry,
            offset: e.offset,
            blob: e.subject.map(hex::encode),
            needed_bytes: e.needed,
            transport: e.transport.clone(),
        }
    }

    /// The lines of the report for people, indented by two spaces.
    pub(crate) fn print(&self, out: &mut Out) {
        match self.rule {
            Some(rule) => outln!(out, "  error         {} ({}), rule {rule}", self.code, self.number),
            None => outln!(out, "  error         {} ({})", self.code, self.number),
        }
        outln!(out, "  detail        {}", self.detail);
        match (self.record_index, &self.record_hash) {
            (Some(i), Some(h)) => outln!(out, "  record        #{i} {h}"),
            (Some(i), None) => outln!(out, "  record        #{i}"),
            _ => {}
        }
        if let Some(p) = self.record_position {
            outln!(out, "  position      {p} in the log (from its proof item)");
        }
        if let Some(v) = self.expected {
            outln!(out, "  expected      {v}");
        }
        if let Some(v) = self.actual {
            outln!(out, "  actual        {v}");
        }
        if let Some(h) = &self.related {
            outln!(out, "  related       {h}");
        }
        if self.pack_code != self.code {
            outln!(
                out,
                "  pack error    {} ({}): {}",
                self.pack_code,
                self.pack_number,
                self.pack_detail
            );
        }
        match (self.entry_index, &self.entry) {
            (Some(i), Some(n)) => outln!(out, "  entry         #{i} {}", Safe(n)),
            (Some(i), None) => outln!(out, "  entry         #{i}"),
            _ => {}
        }
        outln!(out, "  byte offset   {} (in the uncompressed tar)", self.offset);
        if let Some(b) = &self.blob {
            outln!(out, "  blob          {b}");
        }
        if let Some(n) = self.needed_bytes {
            outln!(out, "  memory needed {n} bytes (raise --max-memory)");
        }
        if let Some(t) = &self.transport {
            outln!(out, "  transport     {}", Safe(t));
        }
    }

    /// A one-line summary for standard error.
    pub(crate) fn one_line(&self) -> String {
        let mut s = format!("{} ({}): {}", self.code, self.number, self.detail);
        if let Some(i) = self.record_index {
            s.push_str(&format!(", record #{i}"));
        }
        if let Some(e) = &self.entry {
            s.push_str(&format!(", entry {}", Safe(e)));
        }
        s.push_str(&format!(", byte {}", self.offset));
        s
    }
}

/// Splits a stream error: a pack failure (exit 1) or an I/O error (exit 2).
pub(crate) fn split_stream_error(e: StreamError, what: &str) -> Result<Box<PackError>, CliError> {
    match e {
        StreamError::Pack(p) => Ok(p),
        StreamError::Io(io) => Err(CliError::io(format!("cannot read {what}"), &io)),
        StreamError::Setup(e) => Err(CliError::usage(format!("{}", StreamError::Setup(e)))),
    }
}
