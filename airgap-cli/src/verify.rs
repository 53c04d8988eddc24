//! `helm-airgap verify PACK --trust-root FILE [--json] [--max-memory BYTES]`
//!
//! Streams the pack once through pack-format's verifier and reports what it proves, or
//! the first broken rule. Exit 0 verified, 1 not verified, 2 usage or I/O error (and
//! then nothing is printed on standard output, even with `--json`).

use core::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::rc::Rc;

use pack_format::transport::Wrapper;
use pack_format::{verify_reader, verify_seekable, Observer, PackSummary, VerifyOptions};
use serde::Serialize;
use verify_core::{Body, Hash, Kind, Record};

use crate::cli::VerifyConfig;
use crate::encoding::key_string;
use crate::files::Input;
use crate::output::{outln, Out, Safe};
use crate::report::{split_stream_error, wrapper_name, ErrorReport, PerKind};
use crate::status::{CliError, Status};
use crate::time::rfc3339_ms;
use crate::trust_root::TrustRoot;

/// Most distinct sessions (and principals) counted exactly; beyond, reports say "≥".
pub(crate) const DISTINCT_CAP: usize = 100_000;
/// How many violations and withheld names are listed.
const LIST_FIRST: usize = 10;
/// Files larger than this get a progress indicator (on a terminal).
const PROGRESS_MIN: u64 = 16 << 20;

/// Counts distinct strings up to [`DISTINCT_CAP`], keeping only their SHA-256 (so memory
/// is bounded whatever the strings' lengths).
#[derive(Debug, Default)]
struct Distinct {
    seen: HashSet<Hash>,
    last: String,
    capped: bool,
}

impl Distinct {
    fn add(&mut self, s: &str) {
        if self.capped || (s == self.last && !self.seen.is_empty()) {
            return;
        }
        self.last.clear();
        self.last.push_str(s);
        let h = verify_core::sha256(s.as_bytes());
        if self.seen.len() >= DISTINCT_CAP {
            if !self.seen.contains(&h) {
                self.capped = true;
            }
            return;
        }
        self.seen.insert(h);
    }

    fn count(&self) -> u64 {
        self.seen.len() as u64
    }
}

/// A violation record, as listed in reports.
#[derive(Clone, Debug, Serialize)]
struct ViolationItem {
    index: u64,
    hash: String,
    code: String,
    subject: Option<String>,
    detail: Option<String>,
}

/// A percentage on standard error. For a plain tar the reader's offset measures
/// progress; behind a compression wrapper, the compressed bytes read from the file.
#[derive(Debug)]
struct Progress {
    read: Rc<Cell<u64>>,
    compressed: bool,
    total: u64,
    shown: Option<u64>,
}

impl Progress {
    fn update(&mut self, offset: u64) {
        let done = if self.compressed { self.read.get() } else { offset };
        let pct = done.saturating_mul(100).checked_div(self.total).unwrap_or(0).min(100);
        if self.shown != Some(pct) {
            self.shown = Some(pct);
            let mut e = io::stderr().lock();
            let _ = write!(e, "\rverifying: {pct:3}%");
            let _ = e.flush();
        }
    }

    fn clear(&self) {
        if self.shown.is_some() {
            let mut e = io::stderr().lock();
            let _ = write!(e, "\r{:16}\r", "");
            let _ = e.flush();
        }
    }
}

/// What the report needs beyond the verifier's summary.
#[derive(Debug, Default)]
struct Collector {
    records: u64,
    sessions: Distinct,
    principals: Distinct,
    violations: Vec<ViolationItem>,
    withheld: Vec<Hash>,
    blob_bytes: u64,
    progress: Option<Progress>,
    /// The last sequence number of each TRUST_EVENT signer (anchor), per session.
    trust_events: BTreeMap<([u8; 32], String), u64>,
}

impl Observer for Collector {
    fn record(&mut self, index: u64, r: &Record<'_>) {
        self.records = self.records.saturating_add(1);
        if !r.session.is_empty() {
            self.sessions.add(r.session);
        }
        self.principals.add(r.principal);
        if r.kind == Kind::TrustEvent {
            self.trust_events.insert((r.kid, r.session.to_string()), r.seq);
        }
        if let Body::Violation { code, subject, detail } = r.body {
            if self.violations.len() < LIST_FIRST {
                self.violations.push(ViolationItem {
                    index,
                    hash: hex::encode(r.hash),
                    code: code.into(),
                    subject: subject.map(hex::encode),
                    detail: detail.map(str::to_string),
                });
            }
        }
    }

    fn withheld(&mut self, name: &Hash) {
        if self.withheld.len() < LIST_FIRST {
            self.withheld.push(*name);
        }
    }

    fn blob(&mut self, _name: &Hash, size: u64) {
        self.blob_bytes = self.blob_bytes.saturating_add(size);
    }

    fn progress(&mut self, offset: u64) {
        if let Some(p) = &mut self.progress {
            p.update(offset);
        }
    }
}

#[derive(Debug, Serialize)]
struct TrustInfo {
    file: String,
    anchors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TimeSpan {
    first: String,
    last: String,
    first_ms: u64,
    last_ms: u64,
}

/// What a partial pack selects.
#[derive(Debug, Serialize)]
struct SelectionReport {
    session: Option<String>,
    since: Option<String>,
    until: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

/// An anchor's TRUST_EVENT sequence in a partial pack: complete from 0 to `last_seq`;
/// later ones before the checkpoint could have been left out (spec/evidencepack.md §9.7).
#[derive(Debug, Serialize)]
struct TrustEventSequence {
    signer: String,
    session: String,
    last_seq: u64,
}

/// A partial pack (spec/evidencepack.md §9): what it carries and what it is proven against.
#[derive(Debug, Serialize)]
struct PartialReport {
    /// Records carried before the checkpoint.
    records: u64,
    /// Records of the log the checkpoint covers (its position).
    of: u64,
    checkpoint: String,
    position: u64,
    tree_root: String,
    selection: SelectionReport,
    trust_event_sequences: Vec<TrustEventSequence>,
    not_proven: &'static str,
}

const NOT_PROVEN: &str = "that records outside the pack are valid; that every selected record, and every \
                          TRUST_EVENT before the checkpoint, is carried; anything after the checkpoint \
                          (spec/evidencepack.md §9.7)";

/// The report of a verified pack (field names are stable: README.md).
#[derive(Debug, Serialize)]
struct VerifiedReport {
    verified: bool,
    pack: String,
    trust_root: TrustInfo,
    wrapper: &'static str,
    pack_bytes: u64,
    input_bytes: u64,
    producer: String,
    records: u64,
    per_kind: PerKind,
    sessions: u64,
    sessions_capped: bool,
    principals: u64,
    principals_capped: bool,
    streams: u64,
    time: TimeSpan,
    checkpoints: u64,
    witnessed_checkpoints: u64,
    escalations: u64,
    open_escalations: u64,
    keys_published: u64,
    keys_retired: u64,
    violations: u64,
    violations_first: Vec<ViolationItem>,
    blobs: u64,
    blob_bytes: u64,
    withheld: u64,
    withheld_first: Vec<String>,
    records_root: String,
    head: String,
    /// `null` for a full pack.
    partial: Option<PartialReport>,
}

/// The report of a pack that did not verify.
#[derive(Debug, Serialize)]
struct FailedReport {
    verified: bool,
    pack: String,
    trust_root: TrustInfo,
    records_verified: u64,
    error: ErrorReport,
}

/// Where the pack comes from.
enum Source {
    File(std::io::BufReader<crate::files::Counting<File>>),
    Stream(Box<dyn Read>),
}

/// Whether the file starts with a compression wrapper's magic bytes.
fn is_compressed(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    let got = File::open(path).and_then(|mut f| f.read(&mut magic)).unwrap_or(0);
    Wrapper::detect(magic.get(..got).unwrap_or(&[])) != Wrapper::None
}

fn count_text(n: u64, capped: bool) -> String {
    if capped {
        format!("≥{n}")
    } else {
        n.to_string()
    }
}

pub(crate) fn run(cfg: &VerifyConfig) -> Result<Status, CliError> {
    let trust = TrustRoot::load(&cfg.trust_root)?;
    // A regular file is verified by pack-format's two-pass reader where that needs less
    // memory (large packs); standard input and pipes in one pass. Same verdicts.
    let (source, read, size) = match cfg.pack.open_seekable()? {
        Some(f) => (Source::File(f.reader), f.read, Some(f.size)),
        None => {
            let opened = cfg.pack.open()?;
            (Source::Stream(opened.reader), opened.read, opened.size)
        }
    };
    let mut collector = Collector::default();
    if let (Some(total), Input::File(path)) = (size.filter(|s| *s > PROGRESS_MIN), &cfg.pack) {
        if io::stderr().is_terminal() {
            collector.progress = Some(Progress {
                read: read.clone(),
                compressed: is_compressed(path),
                total,
                shown: None,
            });
        }
    }
    let opts = VerifyOptions {
        max_table_bytes: cfg.max_memory,
        ..VerifyOptions::default()
    };
    let result = match source {
        Source::File(f) => verify_seekable(f, &trust.keys(), &opts, &mut collector),
        Source::Stream(r) => verify_reader(r, &trust.keys(), &opts, &mut collector),
    };
    if let Some(p) = &collector.progress {
        p.clear();
    }
    let trust_info = TrustInfo {
        file: trust.file.clone(),
        anchors: trust.names(),
    };
    let pack = cfg.pack.display();
    let mut out = Out::new();
    let status = match result {
        Ok((wrapper, summary)) => {
            let report = verified_report(pack, trust_info, wrapper_name(wrapper), read.get(), &summary, collector);
            if cfg.json {
                out.json(&report)?;
            } else {
                print_verified(&mut out, &report);
            }
            Status::Success
        }
        Err(e) => {
            let e = split_stream_error(e, &pack)?;
            let report = FailedReport {
                verified: false,
                pack,
                trust_root: trust_info,
                records_verified: collector.records,
                error: ErrorReport::new(&e),
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

fn verified_report(
    pack: String,
    trust_root: TrustInfo,
    wrapper: &'static str,
    input_bytes: u64,
    s: &PackSummary,
    c: Collector,
) -> VerifiedReport {
    let v = &s.verified;
    let partial = s.manifest.partial.map(|p| PartialReport {
        records: v.records.saturating_sub(1),
        of: p.tree_size,
        checkpoint: hex::encode(v.head),
        position: p.tree_size,
        tree_root: hex::encode(p.tree_root),
        selection: SelectionReport {
            session: p.session().map(str::to_string),
            since: p.since.map(rfc3339_ms),
            until: p.until.map(rfc3339_ms),
            since_ms: p.since,
            until_ms: p.until,
        },
        trust_event_sequences: c
            .trust_events
            .iter()
            .map(|((kid, session), seq)| TrustEventSequence {
                signer: key_string(kid),
                session: session.clone(),
                last_seq: *seq,
            })
            .collect(),
        not_proven: NOT_PROVEN,
    });
    VerifiedReport {
        verified: true,
        pack,
        trust_root,
        wrapper,
        pack_bytes: s.bytes,
        input_bytes,
        producer: key_string(&s.manifest.producer),
        records: v.records,
        per_kind: PerKind(v.per_kind),
        sessions: c.sessions.count(),
        sessions_capped: c.sessions.capped,
        principals: c.principals.count(),
        principals_capped: c.principals.capped,
        streams: v.streams,
        time: TimeSpan {
            first: rfc3339_ms(v.time_span.0),
            last: rfc3339_ms(v.time_span.1),
            first_ms: v.time_span.0,
            last_ms: v.time_span.1,
        },
        checkpoints: v.checkpoints,
        witnessed_checkpoints: v.witnessed_checkpoints,
        escalations: v.escalations,
        open_escalations: v.open_escalations,
        keys_published: v.keys_published,
        keys_retired: v.keys_retired,
        violations: v.count(Kind::Violation),
        violations_first: c.violations,
        blobs: s.manifest.blobs,
        blob_bytes: c.blob_bytes,
        withheld: s.manifest.withheld,
        withheld_first: c.withheld.iter().map(hex::encode).collect(),
        records_root: hex::encode(v.root),
        head: hex::encode(v.head),
        partial,
    }
}

fn print_verified(out: &mut Out, r: &VerifiedReport) {
    outln!(
        out,
        "VERIFIED: {} against trust root {} (anchors: {})",
        Safe(&r.pack),
        Safe(&r.trust_root.file),
        Safe(&r.trust_root.anchors.join(", "))
    );
    outln!(
        out,
        "  pack          {} bytes of tar, wrapper {}, {} bytes read",
        r.pack_bytes,
        r.wrapper,
        r.input_bytes
    );
    outln!(out, "  producer      {}", r.producer);
    if let Some(p) = &r.partial {
        outln!(
            out,
            "  partial pack: {} of {} records, proven against checkpoint {} at position {}",
            p.records,
            p.of,
            p.checkpoint,
            p.position
        );
        let mut sel = Vec::new();
        if let Some(s) = &p.selection.session {
            sel.push(format!("session {:?}", Safe(s).to_string()));
        }
        if let Some(t) = &p.selection.since {
            sel.push(format!("since {t}"));
        }
        if let Some(t) = &p.selection.until {
            sel.push(format!("until {t}"));
        }
        outln!(out, "  selection     {}", sel.join(", "));
        for t in &p.trust_event_sequences {
            outln!(
                out,
                "  trust events  {} (session {:?}): sequence 0..{} carried; compare with the trust authority's",
                t.signer,
                Safe(&t.session).to_string(),
                t.last_seq
            );
        }
        outln!(out, "  not proven    {}", p.not_proven);
    }
    outln!(out, "  records       {}", r.records);
    for (name, n) in r.per_kind.iter() {
        outln!(out, "    {name:<12}{n:>8}");
    }
    outln!(out, "  sessions      {}", count_text(r.sessions, r.sessions_capped));
    outln!(out, "  principals    {}", count_text(r.principals, r.principals_capped));
    outln!(out, "  streams       {} (signer, session) pairs", r.streams);
    outln!(out, "  kernel time   {} .. {}", r.time.first, r.time.last);
    outln!(
        out,
        "  checkpoints   {} ({} witnessed)",
        r.checkpoints,
        r.witnessed_checkpoints
    );
    outln!(
        out,
        "  escalations   {} ({} still open)",
        r.escalations,
        r.open_escalations
    );
    outln!(
        out,
        "  keys          {} published, {} retired",
        r.keys_published,
        r.keys_retired
    );
    outln!(out, "  violations    {}", r.violations);
    for v in &r.violations_first {
        let detail = v
            .detail
            .as_deref()
            .map(|d| format!(": {}", Safe(d)))
            .unwrap_or_default();
        outln!(out, "    #{} {}{detail}", v.index, Safe(&v.code));
    }
    if r.violations > r.violations_first.len() as u64 {
        outln!(out, "    (first {} listed)", r.violations_first.len());
    }
    outln!(out, "  blobs         {} present ({} bytes)", r.blobs, r.blob_bytes);
    outln!(out, "  withheld      {}", r.withheld);
    for h in &r.withheld_first {
        outln!(out, "    {h}");
    }
    if r.withheld > r.withheld_first.len() as u64 {
        outln!(out, "    (first {} listed)", r.withheld_first.len());
    }
    outln!(out, "  records root  {}", r.records_root);
    outln!(out, "  head record   {}", r.head);
}

fn print_failed(out: &mut Out, r: &FailedReport) {
    outln!(
        out,
        "FAILED: {} does not verify against trust root {} (anchors: {})",
        Safe(&r.pack),
        Safe(&r.trust_root.file),
        Safe(&r.trust_root.anchors.join(", "))
    );
    r.error.print(out);
    outln!(out, "  records verified before the failure: {}", r.records_verified);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_are_bounded() {
        let mut d = Distinct::default();
        for s in ["a", "a", "b", "a", "c"] {
            d.add(s);
        }
        assert_eq!((d.count(), d.capped), (3, false));
        let mut d = Distinct::default();
        for i in 0..DISTINCT_CAP + 10 {
            d.add(&format!("session-{i}"));
        }
        assert_eq!(d.count(), DISTINCT_CAP as u64);
        assert!(d.capped);
        assert_eq!(count_text(d.count(), d.capped), "≥100000");
    }
}
