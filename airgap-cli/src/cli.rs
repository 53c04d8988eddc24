//! Command-line flags, parsed in one place into a typed configuration.
//!
//! clap reads the flags; [`parse`] checks the combinations clap cannot express and
//! returns a [`Command`] whose fields need no further validation by the subcommands.
//! Usage errors are clap errors, so they print the same way and exit with status 2.

use core::time::Duration;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use pack_format::transport::Wrapper;
use receipt_v5::TrustedKey;
use verify_core::Hash;

use crate::conform::Level;
use crate::encoding::{hex32, parse_bytes};
use crate::files::Input;
use crate::keyfile::{check_name, check_role};
use crate::shell;

const EXIT_CODES: &str = "\
Exit status:
  0  success (verify: the pack verified; verify-receipt: the receipt verified;
     conform: no vector failed and none passed unexpectedly)
  1  verification failed (the pack or receipt, or the input to export, is invalid;
     conform: a vector failed, or an expected failure passed)
  2  usage error, unreadable input, I/O error, a bad trust-root or key file, or a bad --trusted-key
     (conform: unreadable vector files, an implementation that cannot run or does not answer
     capabilities)";

#[derive(Debug, Parser)]
#[command(
    name = "helm-airgap",
    version,
    about = "Verify, inspect and export HELM EvidencePacks, and verify receipt.v5 receipts, offline. \
             Contains no network code.",
    after_help = EXIT_CODES,
    subcommand_required = true,
    arg_required_else_help = true,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify a pack against a trust root and report what it proves
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// List a pack's decision trees WITHOUT verifying anything
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Write a canonical pack from records, blobs and a producer key (or a test sample)
    #[command(after_help = EXIT_CODES)]
    Export(ExportArgs),
    /// Generate and show Ed25519 key files
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Verify a HELM receipt.v5 receipt (Go implementation) under a key you trust
    #[command(after_help = EXIT_CODES)]
    VerifyReceipt(VerifyReceiptArgs),
    /// Run the conformance test vectors against a verifier (helm-conformance/1)
    #[command(after_help = EXIT_CODES)]
    Conform(ConformArgs),
    /// Check, test, sign, verify, compose and explain Guardian policy bundles
    #[command(subcommand)]
    Policy(crate::policy::PolicyCmd),
    /// Recompute every DECISION of a verified pack from the policy bundles it carries
    #[command(after_help = EXIT_CODES)]
    ReplayDecisions(crate::replay::ReplayArgs),
    /// Sign an escalation's approval challenge with an approver key, offline
    #[command(after_help = EXIT_CODES)]
    Approve(crate::ceremony::ApproveArgs),
    /// Verify a pack, then re-execute its sandboxed (WASM) effects and compare outputs and fuel
    #[command(after_help = EXIT_CODES)]
    Replay(crate::replay_effects::ReplayEffectsArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The pack: .tar, .tar.zst or .tar.gz (detected from its content), or - for standard input
    #[arg(value_name = "PACK")]
    pack: PathBuf,
    /// Trust-root file (JSON, helm-trust-root/1) naming the anchors to trust
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// Print one JSON object instead of the report for people
    #[arg(long)]
    json: bool,
    /// Most memory for verifier tables, which are sized from the manifest's counts before
    /// they are authenticated; suffixes K, M, G, T are powers of 1024
    #[arg(long, value_name = "BYTES", default_value = "4G", value_parser = parse_bytes)]
    max_memory: u64,
}

#[derive(Debug, Args)]
struct VerifyReceiptArgs {
    /// The receipt: one JSON object (at most 1 MiB), or - for standard input
    #[arg(value_name = "FILE")]
    receipt: PathBuf,
    /// The Ed25519 key the receipt must be signed with, written ed25519:<64 lowercase hex>
    /// (never taken from the receipt's own key_id or public_key_set)
    #[arg(long, value_name = "KEY", value_parser = parse_trusted_key)]
    trusted_key: TrustedKey,
    /// Print one JSON object instead of the report for people
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ConformArgs {
    /// The implementation's command line, split as a POSIX shell would (quotes and
    /// backslashes; no expansions), e.g. 'python3 adapter.py'
    #[arg(long, value_name = "CMD")]
    implementation: String,
    /// Run only the vectors of this level (repeatable, or a comma list) [default: every
    /// level; levels the implementation does not claim are skipped]
    #[arg(long, value_enum, value_name = "LEVEL", value_delimiter = ',')]
    level: Vec<LevelArg>,
    /// File of vector ids the implementation is known to fail (one per line, # comments)
    #[arg(long, value_name = "FILE")]
    expected_failures: Option<PathBuf>,
    /// Print one JSON object instead of the report for people
    #[arg(long)]
    json: bool,
    /// The test-vectors directory [default: ./test-vectors, else the one in the source tree
    /// this binary was built from]
    #[arg(long, value_name = "DIR")]
    vectors: Option<PathBuf>,
    /// Seconds each call may take (in a batch, each request on average)
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// One process per vector even if the implementation offers `batch`
    #[arg(long)]
    no_batch: bool,
    /// Also list the vectors that passed
    #[arg(short, long)]
    verbose: bool,
}

/// A conformance level (spec/conformance.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LevelArg {
    #[value(name = "L1")]
    L1,
    #[value(name = "L2")]
    L2,
    #[value(name = "L3")]
    L3,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The pack: .tar, .tar.zst or .tar.gz, or - for standard input
    #[arg(value_name = "PACK")]
    pack: PathBuf,
    /// Print one JSON object instead of the listing for people
    #[arg(long)]
    json: bool,
    /// Show only this session (and keep only its records in memory)
    #[arg(long, value_name = "ID")]
    session: Option<String>,
}

/// Transport wrapper for `export --compress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CompressArg {
    /// A plain ustar archive (.tar)
    None,
    /// Zstandard (.tar.zst)
    Zstd,
    /// gzip (.tar.gz)
    Gzip,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["records", "store", "sample"])))]
struct ExportArgs {
    /// Where to write the pack (refused if it exists, unless --force)
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    out: PathBuf,
    /// Replace existing output files
    #[arg(long)]
    force: bool,
    /// Transport wrapper [default: from OUT's suffix: .tar.zst, .tar.gz, else none]
    #[arg(long, value_enum, value_name = "WRAPPER")]
    compress: Option<CompressArg>,
    /// Withhold this blob (64 lowercase hex digits) even if available; repeatable
    #[arg(long, value_name = "HEX", value_parser = parse_hash)]
    withhold: Vec<Hash>,
    /// A kernel store directory (helm-proxy's `store_dir`) to export, records and blobs;
    /// readable while the server runs (complete records only)
    #[arg(long, value_name = "DIR", conflicts_with = "blobs")]
    store: Option<PathBuf>,
    /// Records to export: a CBOR sequence (RFC 8742) in kernel order, or - for standard input
    #[arg(long, value_name = "FILE")]
    records: Option<PathBuf>,
    /// Directory of blobs, each file named by the lowercase hex SHA-256 of its content
    #[arg(long, value_name = "DIR", conflicts_with = "sample")]
    blobs: Option<PathBuf>,
    /// The producer's kernel key file (helm-key/1) that signs the manifest
    #[arg(long, value_name = "KEYFILE", conflicts_with = "sample")]
    key: Option<PathBuf>,
    /// Trust root to verify the new pack against before writing it (required with --records)
    #[arg(long, value_name = "FILE", conflicts_with = "sample")]
    trust_root: Option<PathBuf>,
    /// Write the pack without verifying it first
    #[arg(long, conflicts_with_all = ["sample", "trust_root"])]
    no_verify: bool,
    /// Export a generated run of SESSIONS sessions signed with the PUBLIC TEST KEYS
    #[arg(long, value_name = "SESSIONS", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sample: Option<u32>,
    /// With --sample: also write the matching trust-root file
    #[arg(long, value_name = "FILE", conflicts_with = "records")]
    trust_root_out: Option<PathBuf>,
    /// With --sample: also write the run's records as a CBOR sequence
    #[arg(long, value_name = "FILE", conflicts_with = "records")]
    records_out: Option<PathBuf>,
    /// With --sample: also write the run's blobs into DIR, named by their SHA-256
    #[arg(long, value_name = "DIR", conflicts_with = "records")]
    blobs_out: Option<PathBuf>,
    /// With --sample: also write the (public, test-only) kernel key as a key file
    #[arg(long, value_name = "FILE", conflicts_with = "records")]
    key_out: Option<PathBuf>,
    /// Write a partial pack of this session only: its records with inclusion proofs to the
    /// last CHECKPOINT, plus the TRUST_EVENTs and parent records needed to verify them
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Partial pack of the records with kernel time at or after T (milliseconds since
    /// 1970, or 2026-01-01T00:00:00.000Z); with --session, of that session only
    #[arg(long, value_name = "T", value_parser = parse_time)]
    since: Option<u64>,
    /// Partial pack of the records with kernel time at or before T (as --since)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    until: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Generate a new Ed25519 key file, created with mode 0600; never overwrites
    #[command(after_help = EXIT_CODES)]
    Generate {
        /// Where to write the key file
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A label for the key [default: the file name without extension]
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The role the key is meant for (a label; TRUST_EVENTs grant the real roles)
        #[arg(long, value_name = "ROLE", default_value = "kernel")]
        role: String,
    },
    /// Show a key file's name, role and public key (the secret only with --secret)
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The key file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also print the secret seed
        #[arg(long)]
        secret: bool,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Ceremony(crate::ceremony::Ceremony),
}

fn parse_time(s: &str) -> Result<u64, String> {
    crate::time::parse_time(s)
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    hex32(s)
}

fn parse_trusted_key(s: &str) -> Result<TrustedKey, String> {
    TrustedKey::parse(s).map_err(|e| e.to_string())
}

/// `verify`.
#[derive(Clone, Debug)]
pub(crate) struct VerifyConfig {
    pub(crate) pack: Input,
    pub(crate) trust_root: PathBuf,
    pub(crate) json: bool,
    pub(crate) max_memory: u64,
}

/// `verify-receipt`.
#[derive(Clone, Debug)]
pub(crate) struct VerifyReceiptConfig {
    pub(crate) receipt: Input,
    pub(crate) trusted_key: TrustedKey,
    pub(crate) json: bool,
}

/// `inspect`.
#[derive(Clone, Debug)]
pub(crate) struct InspectConfig {
    pub(crate) pack: Input,
    pub(crate) json: bool,
    pub(crate) session: Option<String>,
}

/// `conform`.
#[derive(Clone, Debug)]
pub(crate) struct ConformConfig {
    /// `--implementation` as given (for reports).
    pub(crate) implementation: String,
    /// `--implementation` split into the program and its first arguments (never empty).
    pub(crate) command: Vec<String>,
    /// The levels asked, each once, in level order.
    pub(crate) levels: Vec<Level>,
    pub(crate) expected_failures: Option<PathBuf>,
    pub(crate) json: bool,
    /// `None`: look for `test-vectors/` (conform::default_vectors).
    pub(crate) vectors: Option<PathBuf>,
    pub(crate) timeout: Duration,
    pub(crate) batch: bool,
    pub(crate) verbose: bool,
}

/// Where `export` gets its records.
#[derive(Clone, Debug)]
pub(crate) enum ExportSource {
    /// `--records FILE --key KEYFILE [--blobs DIR] (--trust-root FILE | --no-verify)`.
    Records {
        records: Input,
        blobs: Option<PathBuf>,
        key: PathBuf,
        /// `None` means `--no-verify`.
        trust_root: Option<PathBuf>,
    },
    /// `--store DIR --key KEYFILE (--trust-root FILE | --no-verify)`.
    Store {
        dir: PathBuf,
        key: PathBuf,
        /// `None` means `--no-verify`.
        trust_root: Option<PathBuf>,
    },
    /// `--sample SESSIONS` and its optional extra outputs.
    Sample {
        sessions: usize,
        trust_root_out: Option<PathBuf>,
        records_out: Option<PathBuf>,
        blobs_out: Option<PathBuf>,
        key_out: Option<PathBuf>,
    },
}

/// What a partial pack selects (`export --session/--since/--until`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SelectionConfig {
    pub(crate) session: Option<String>,
    pub(crate) since: Option<u64>,
    pub(crate) until: Option<u64>,
}

impl SelectionConfig {
    pub(crate) fn selection(&self) -> verify_core::Selection<'_> {
        verify_core::Selection {
            session: self.session.as_deref(),
            since: self.since,
            until: self.until,
        }
    }
}

/// `export`.
#[derive(Clone, Debug)]
pub(crate) struct ExportConfig {
    pub(crate) out: PathBuf,
    pub(crate) force: bool,
    pub(crate) wrapper: Wrapper,
    pub(crate) withhold: Vec<Hash>,
    pub(crate) source: ExportSource,
    /// `Some`: a partial pack (spec/evidencepack.md §9).
    pub(crate) selection: Option<SelectionConfig>,
}

/// `keys generate`.
#[derive(Clone, Debug)]
pub(crate) struct KeysGenerateConfig {
    pub(crate) out: PathBuf,
    pub(crate) name: String,
    pub(crate) role: String,
}

/// `keys show`.
#[derive(Clone, Debug)]
pub(crate) struct KeysShowConfig {
    pub(crate) file: PathBuf,
    pub(crate) secret: bool,
    pub(crate) json: bool,
}

/// `keys generate` or `keys show`.
#[derive(Clone, Debug)]
pub(crate) enum KeysConfig {
    Generate(KeysGenerateConfig),
    Show(KeysShowConfig),
}

/// A subcommand with its checked configuration.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    Verify(VerifyConfig),
    Inspect(InspectConfig),
    Export(ExportConfig),
    Keys(KeysConfig),
    VerifyReceipt(VerifyReceiptConfig),
    Conform(ConformConfig),
    Policy(crate::policy::PolicyCmd),
    ReplayDecisions(crate::replay::ReplayArgs),
    Ceremony(crate::ceremony::Ceremony),
    Approve(crate::ceremony::ApproveArgs),
    Replay(crate::replay_effects::ReplayEffectsArgs),
}

fn usage(kind: ErrorKind, msg: impl core::fmt::Display) -> clap::Error {
    Cli::command().error(kind, msg)
}

/// The wrapper an output name asks for.
pub(crate) fn wrapper_for(out: &std::path::Path) -> Wrapper {
    let name = out.to_string_lossy();
    if name.ends_with(".zst") {
        Wrapper::Zstd
    } else if name.ends_with(".gz") || name.ends_with(".tgz") {
        Wrapper::Gzip
    } else {
        Wrapper::None
    }
}

/// Parses the process's arguments. On error the caller prints it and exits with
/// `exit_code()` (2 for usage errors; 0 for `--help` and `--version`).
pub(crate) fn parse() -> Result<Command, clap::Error> {
    parse_from(std::env::args_os())
}

fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    Ok(match cli.command {
        Cmd::Verify(a) => Command::Verify(VerifyConfig {
            pack: Input::from_arg(a.pack),
            trust_root: a.trust_root,
            json: a.json,
            max_memory: a.max_memory,
        }),
        Cmd::Inspect(a) => Command::Inspect(InspectConfig {
            pack: Input::from_arg(a.pack),
            json: a.json,
            session: a.session,
        }),
        Cmd::Export(a) => Command::Export(export_config(a)?),
        Cmd::Keys(KeysCmd::Generate { out, name, role }) => {
            let name = match name {
                Some(n) => n,
                None => out
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "key".into()),
            };
            check_name(&name).map_err(|e| usage(ErrorKind::ValueValidation, format!("--name: {e}")))?;
            check_role(&role).map_err(|e| usage(ErrorKind::ValueValidation, format!("--role: {e}")))?;
            Command::Keys(KeysConfig::Generate(KeysGenerateConfig { out, name, role }))
        }
        Cmd::Keys(KeysCmd::Show { file, secret, json }) => {
            Command::Keys(KeysConfig::Show(KeysShowConfig { file, secret, json }))
        }
        Cmd::VerifyReceipt(a) => Command::VerifyReceipt(VerifyReceiptConfig {
            receipt: Input::from_arg(a.receipt),
            trusted_key: a.trusted_key,
            json: a.json,
        }),
        Cmd::Conform(a) => Command::Conform(conform_config(a)?),
        Cmd::Policy(c) => Command::Policy(c),
        Cmd::ReplayDecisions(a) => Command::ReplayDecisions(a),
        Cmd::Approve(a) => Command::Approve(a),
        Cmd::Replay(a) => Command::Replay(a),
        Cmd::Keys(KeysCmd::Ceremony(c)) => Command::Ceremony(c),
    })
}

fn conform_config(a: ConformArgs) -> Result<ConformConfig, clap::Error> {
    let command = shell::split(&a.implementation)
        .map_err(|e| usage(ErrorKind::ValueValidation, format!("--implementation: {e}")))?;
    if command.is_empty() {
        return Err(usage(ErrorKind::ValueValidation, "--implementation: no command given"));
    }
    let asked: Vec<Level> = a
        .level
        .iter()
        .map(|l| match l {
            LevelArg::L1 => Level::L1,
            LevelArg::L2 => Level::L2,
            LevelArg::L3 => Level::L3,
        })
        .collect();
    // Each level once, in level order; none asked means all.
    let levels = Level::ALL
        .into_iter()
        .filter(|l| asked.is_empty() || asked.contains(l))
        .collect();
    Ok(ConformConfig {
        implementation: a.implementation,
        command,
        levels,
        expected_failures: a.expected_failures,
        json: a.json,
        vectors: a.vectors,
        timeout: Duration::from_secs(a.timeout),
        batch: !a.no_batch,
        verbose: a.verbose,
    })
}

fn export_config(a: ExportArgs) -> Result<ExportConfig, clap::Error> {
    if a.out.as_os_str() == "-" {
        return Err(usage(
            ErrorKind::ValueValidation,
            "export writes a file (atomically); -o - is not supported",
        ));
    }
    let wrapper = match a.compress {
        Some(CompressArg::None) => Wrapper::None,
        Some(CompressArg::Zstd) => Wrapper::Zstd,
        Some(CompressArg::Gzip) => Wrapper::Gzip,
        None => wrapper_for(&a.out),
    };
    let source = match (a.records, a.sample) {
        (None, None) if a.store.is_some() => {
            let (Some(dir), Some(key)) = (a.store, a.key) else {
                return Err(usage(ErrorKind::MissingRequiredArgument, "--store needs --key KEYFILE"));
            };
            if a.trust_root.is_none() && !a.no_verify {
                return Err(usage(
                    ErrorKind::MissingRequiredArgument,
                    "--store needs --trust-root FILE to verify the pack before writing it (or --no-verify)",
                ));
            }
            ExportSource::Store {
                dir,
                key,
                trust_root: a.trust_root,
            }
        }
        (Some(records), None) => {
            let Some(key) = a.key else {
                return Err(usage(
                    ErrorKind::MissingRequiredArgument,
                    "--records needs --key KEYFILE",
                ));
            };
            if a.trust_root.is_none() && !a.no_verify {
                return Err(usage(
                    ErrorKind::MissingRequiredArgument,
                    "--records needs --trust-root FILE to verify the pack before writing it (or --no-verify)",
                ));
            }
            ExportSource::Records {
                records: Input::from_arg(records),
                blobs: a.blobs,
                key,
                trust_root: a.trust_root,
            }
        }
        (None, Some(sessions)) => ExportSource::Sample {
            sessions: usize::try_from(sessions).unwrap_or(usize::MAX),
            trust_root_out: a.trust_root_out,
            records_out: a.records_out,
            blobs_out: a.blobs_out,
            key_out: a.key_out,
        },
        _ => {
            return Err(usage(
                ErrorKind::MissingRequiredArgument,
                "give exactly one of --records FILE, --store DIR or --sample SESSIONS",
            ))
        }
    };
    if let (Some(since), Some(until)) = (a.since, a.until) {
        if since > until {
            return Err(usage(ErrorKind::ValueValidation, "--since is after --until"));
        }
    }
    let selection = (a.session.is_some() || a.since.is_some() || a.until.is_some()).then_some(SelectionConfig {
        session: a.session,
        since: a.since,
        until: a.until,
    });
    if selection
        .as_ref()
        .and_then(|s| s.session.as_ref())
        .is_some_and(|s| s.len() > 256)
    {
        return Err(usage(ErrorKind::ValueValidation, "--session: at most 256 bytes"));
    }
    Ok(ExportConfig {
        out: a.out,
        force: a.force,
        wrapper,
        withhold: a.withhold,
        source,
        selection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        parse_from(core::iter::once("helm-airgap").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn export_combinations() {
        assert!(matches!(
            parse(&["export", "--sample", "2", "-o", "x.tar.zst"]),
            Ok(Command::Export(ExportConfig {
                wrapper: Wrapper::Zstd,
                ..
            }))
        ));
        let e = parse(&["export", "--records", "r", "--key", "k", "-o", "x.tar"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--trust-root"));
        assert!(parse(&["export", "--records", "r", "--key", "k", "--no-verify", "-o", "x.tar"]).is_ok());
        assert!(parse(&["export", "--records", "r", "--sample", "1", "--key", "k", "-o", "x"]).is_err());
        assert!(parse(&["export", "--sample", "1", "--key", "k", "-o", "x"]).is_err());
        assert!(parse(&["export", "--sample", "0", "-o", "x"]).is_err());
        assert!(parse(&["export", "-o", "x"]).is_err());
        assert!(parse(&["export", "--sample", "1", "-o", "-"]).is_err());
        assert!(parse(&["export", "--sample", "1", "--withhold", "AB", "-o", "x"]).is_err());
    }

    #[test]
    fn partial_export_flags() {
        let sel = |args: &[&str]| match parse(args) {
            Ok(Command::Export(c)) => Ok(c.selection),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.exit_code()),
        };
        let base = ["export", "--records", "r", "--key", "k", "--no-verify", "-o", "x.tar"];
        assert_eq!(sel(&base), Ok(None));
        let with = |extra: &[&str]| sel(&[&base[..], extra].concat());
        assert_eq!(
            with(&["--session", "s-1"]),
            Ok(Some(SelectionConfig {
                session: Some("s-1".into()),
                ..SelectionConfig::default()
            }))
        );
        assert_eq!(
            with(&["--since", "2026-01-01T00:00:00Z", "--until", "1767225600500"]),
            Ok(Some(SelectionConfig {
                session: None,
                since: Some(1_767_225_600_000),
                until: Some(1_767_225_600_500)
            }))
        );
        assert_eq!(with(&["--since", "5", "--until", "4"]), Err(2));
        assert_eq!(with(&["--since", "yesterday"]), Err(2));
        assert_eq!(with(&["--session", &"x".repeat(257)]), Err(2));
        assert!(sel(&["export", "--sample", "3", "--session", "session-000001", "-o", "x.tar"]).is_ok());
    }

    #[test]
    fn keys_defaults() {
        match parse(&["keys", "generate", "--out", "/tmp/kernel-7.json"]).unwrap() {
            Command::Keys(KeysConfig::Generate(c)) => {
                assert_eq!(c.name, "kernel-7");
                assert_eq!(c.role, "kernel");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["keys", "generate", "--out", "k", "--role", "Kernel"]).is_err());
    }

    #[test]
    fn verify_receipt_key() {
        const KEY: &str = "ed25519:197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61";
        match parse(&["verify-receipt", "-", "--trusted-key", KEY, "--json"]).unwrap() {
            Command::VerifyReceipt(c) => {
                assert_eq!(c.receipt, Input::Stdin);
                assert_eq!(c.trusted_key.to_string(), KEY);
                assert!(c.json);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "197f6b23e16c8532c6abc838facd5ea789be0c76b2920334039bfa8b3d368d61",
            "ed25519:197F6B23E16C8532C6ABC838FACD5EA789BE0C76B2920334039BFA8B3D368D61",
            "ed25519:197f",
            // The identity point: canonical but of small order.
            "ed25519:0100000000000000000000000000000000000000000000000000000000000000",
        ] {
            let e = parse(&["verify-receipt", "r.json", "--trusted-key", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(parse(&["verify-receipt", "r.json"]).is_err());
    }

    #[test]
    fn conform_flags() {
        match parse(&["conform", "--implementation", "python3 'my adapter.py' -x"]).unwrap() {
            Command::Conform(c) => {
                assert_eq!(c.command, ["python3", "my adapter.py", "-x"]);
                assert_eq!(c.levels, Level::ALL);
                assert_eq!(c.timeout, Duration::from_secs(120));
                assert!(c.batch && !c.json && !c.verbose);
                assert_eq!(c.vectors, None);
            }
            other => panic!("{other:?}"),
        }
        let levels = |args: &[&str]| match parse(args).unwrap() {
            Command::Conform(c) => c.levels,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            levels(&["conform", "--implementation", "x", "--level", "L3,L1"]),
            [Level::L1, Level::L3]
        );
        assert_eq!(
            levels(&["conform", "--implementation", "x", "--level", "L2", "--level", "L2"]),
            [Level::L2]
        );
        for bad in [
            &["conform"][..],
            &["conform", "--implementation", ""],
            &["conform", "--implementation", "  "],
            &["conform", "--implementation", "'unclosed"],
            &["conform", "--implementation", "x", "--level", "L4"],
            &["conform", "--implementation", "x", "--timeout", "0"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn stdin_and_sizes() {
        match parse(&["verify", "-", "--trust-root", "t", "--max-memory", "64M"]).unwrap() {
            Command::Verify(c) => {
                assert_eq!(c.pack, Input::Stdin);
                assert_eq!(c.max_memory, 64 << 20);
            }
            other => panic!("{other:?}"),
        }
    }
}
