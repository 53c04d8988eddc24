//! `helm-airgap policy`: check, test, sign, verify, compose and explain Guardian policy
//! bundles offline (spec/guardian.md).
//!
//! A bundle file is either TOML source or a signed bundle (COSE_Sign1, detected by its
//! first byte 0xd2). A signed bundle loads only with `--author` keys that it is signed
//! by; TOML source is accepted by the authoring commands (check, test, sign, compose,
//! explain) and is never trusted by `verify`.
//!
//! Exit status: 0 success (check: valid; test: every case passed; verify: the bundle
//! loads); 1 invalid bundle, failed test case or bad signature; 2 usage or I/O error.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use guardian::{
    load_signed, sign_bundle, verdict_str, Bundle, Decision, Evidence, Guardian, Held, Limits, PastCall, Request,
};
use serde::Serialize;

use crate::encoding::{parse_key, KEY_PREFIX};
use crate::files::{read_small, write_atomic};
use crate::keyfile;
use crate::output::{Out, Safe};
use crate::status::{CliError, Status};

/// Largest bundle, request or history file read.
const MAX_FILE: u64 = 16 << 20;

/// `helm-airgap policy ...`.
#[derive(Clone, Debug, Subcommand)]
pub(crate) enum PolicyCmd {
    /// Parse and type-check a bundle; print its hash
    Check(BundleArgs),
    /// Run the test cases a bundle carries
    Test(BundleArgs),
    /// Sign a TOML bundle with a policy-author key (its test cases must pass)
    Sign(SignArgs),
    /// Check a signed bundle's signature against trusted policy-author keys
    Verify(VerifyArgs),
    /// Decide a request with several bundles (deny > escalate > allow)
    Compose(DecideArgs),
    /// Show which requirements of each rule held or failed for a request
    Explain(DecideArgs),
}

/// A bundle and the keys it may be signed by.
#[derive(Clone, Debug, Args)]
pub(crate) struct BundleArgs {
    /// The bundle: TOML source, or a signed bundle
    #[arg(value_name = "BUNDLE")]
    file: PathBuf,
    /// A trusted policy-author key (ed25519:<64 hex> or a helm-key/1 file); repeatable
    #[arg(long = "author", value_name = "KEY")]
    authors: Vec<String>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// `policy sign`.
#[derive(Clone, Debug, Args)]
pub(crate) struct SignArgs {
    /// The TOML source
    #[arg(value_name = "BUNDLE")]
    file: PathBuf,
    /// The policy-author key file (helm-key/1)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to write the signed bundle
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing output file
    #[arg(long)]
    force: bool,
}

/// `policy verify`.
#[derive(Clone, Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The signed bundle
    #[arg(value_name = "BUNDLE")]
    file: PathBuf,
    /// A trusted policy-author key (ed25519:<64 hex> or a helm-key/1 file); repeatable
    #[arg(long = "author", value_name = "KEY", required = true)]
    authors: Vec<String>,
}

/// `policy compose` and `policy explain`.
#[derive(Clone, Debug, Args)]
pub(crate) struct DecideArgs {
    /// The bundles (explain: each is explained)
    #[arg(value_name = "BUNDLE", required = true)]
    files: Vec<PathBuf>,
    /// The request: a JSON object {tool, args, principal, session, context, time}
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// Earlier permitted calls: a JSON array of {tool, time, same_session, cost, approved}
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// A trusted policy-author key (ed25519:<64 hex> or a helm-key/1 file); repeatable
    #[arg(long = "author", value_name = "KEY")]
    authors: Vec<String>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

fn author_keys(authors: &[String]) -> Result<Vec<[u8; 32]>, CliError> {
    authors
        .iter()
        .map(|a| {
            if a.starts_with(KEY_PREFIX) {
                parse_key(a).map_err(|e| CliError::usage(format!("--author {a}: {e}")))
            } else {
                keyfile::load(Path::new(a)).map(|k| k.public)
            }
        })
        .collect()
}

fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError::io(format!("{what} {}", path.display()), &e))?;
    if meta.len() > MAX_FILE {
        return Err(CliError::usage(format!(
            "{what} {}: larger than {MAX_FILE} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| CliError::io(format!("{what} {}", path.display()), &e))
}

/// Loads a bundle file: signed (first byte 0xd2) against `authors`, else TOML source.
fn load(path: &Path, authors: &[[u8; 32]]) -> Result<(Bundle, Option<[u8; 32]>), CliError> {
    let bytes = read_bytes(path, "bundle")?;
    if bytes.first() == Some(&0xd2) {
        if authors.is_empty() {
            return Err(CliError::usage(format!(
                "{}: a signed bundle needs --author keys to load",
                path.display()
            )));
        }
        let (b, kid) =
            load_signed(&bytes, authors).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
        return Ok((b, Some(kid)));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::invalid(format!("{}: neither a signed bundle nor UTF-8 TOML", path.display())))?;
    let b = Bundle::from_toml(&text).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    Ok((b, None))
}

#[derive(Serialize)]
struct CheckReport {
    bundle: String,
    name: String,
    hash: String,
    signed_by: Option<String>,
    rules: usize,
    budgets: usize,
    tests: usize,
}

#[derive(Serialize)]
struct TestReport {
    bundle: String,
    hash: String,
    passed: usize,
    failed: usize,
    cases: Vec<CaseReport>,
}

#[derive(Serialize)]
struct CaseReport {
    name: String,
    passed: bool,
    expected: String,
    got: String,
}

#[derive(Serialize)]
struct DecisionReport {
    verdict: &'static str,
    reason: String,
    policy: String,
    rule: Option<String>,
    error: Option<String>,
    escalation: Option<EscalationReport>,
}

#[derive(Serialize)]
struct EscalationReport {
    role: String,
    quorum: u64,
    not_before: u64,
    expires: u64,
}

fn decision_report(d: &Decision) -> DecisionReport {
    DecisionReport {
        verdict: verdict_str(d.verdict),
        reason: d.reason.clone(),
        policy: hex::encode(d.policy),
        rule: d.rule.clone(),
        error: d.error.as_ref().map(ToString::to_string),
        escalation: d.escalation.as_ref().map(|e| EscalationReport {
            role: e.role.clone(),
            quorum: e.quorum,
            not_before: e.not_before,
            expires: e.expires,
        }),
    }
}

fn print_decision(out: &mut Out, d: &Decision) {
    out.line(format_args!("decision      {}", Safe(&d.to_string())));
    out.line(format_args!("policy        {}", hex::encode(d.policy)));
    if let Some(e) = &d.escalation {
        out.line(format_args!(
            "escalation    role {}, quorum {}, not before {}, expires {}",
            Safe(&e.role),
            e.quorum,
            e.not_before,
            e.expires
        ));
    }
}

fn check(a: &BundleArgs) -> Result<Status, CliError> {
    let (b, kid) = load(&a.file, &author_keys(&a.authors)?)?;
    let spec = b.spec();
    let r = CheckReport {
        bundle: a.file.display().to_string(),
        name: spec.name.clone(),
        hash: hex::encode(b.hash()),
        signed_by: kid.map(|k| crate::encoding::key_string(&k)),
        rules: spec.rules.len(),
        budgets: spec.budgets.len(),
        tests: spec.tests.len(),
    };
    let mut out = Out::new();
    if a.json {
        out.json(&r)?;
    } else {
        out.line(format_args!("bundle        {} ({})", Safe(&r.bundle), Safe(&r.name)));
        out.line(format_args!("hash          {}", r.hash));
        if let Some(k) = &r.signed_by {
            out.line(format_args!("signed by     {k}"));
        }
        out.line(format_args!(
            "contents      {} rules, {} budgets, {} test cases",
            r.rules, r.budgets, r.tests
        ));
        out.line(format_args!("result        valid"));
    }
    out.finish()?;
    Ok(Status::Success)
}

fn test(a: &BundleArgs) -> Result<Status, CliError> {
    let (b, _) = load(&a.file, &author_keys(&a.authors)?)?;
    let results = b.run_tests(Limits::default());
    let cases: Vec<CaseReport> = results
        .iter()
        .map(|r| CaseReport {
            name: r.name.clone(),
            passed: r.passed,
            expected: r.expected.clone(),
            got: r.got.to_string(),
        })
        .collect();
    let failed = cases.iter().filter(|c| !c.passed).count();
    let r = TestReport {
        bundle: a.file.display().to_string(),
        hash: hex::encode(b.hash()),
        passed: cases.len().saturating_sub(failed),
        failed,
        cases,
    };
    let mut out = Out::new();
    if a.json {
        out.json(&r)?;
    } else {
        for c in &r.cases {
            if c.passed {
                out.line(format_args!("ok    {}", Safe(&c.name)));
            } else {
                out.line(format_args!(
                    "FAIL  {}: expected {}, got {}",
                    Safe(&c.name),
                    Safe(&c.expected),
                    Safe(&c.got)
                ));
            }
        }
        out.line(format_args!("result        {} passed, {} failed", r.passed, r.failed));
    }
    out.finish()?;
    Ok(if failed == 0 { Status::Success } else { Status::Failed })
}

fn sign(a: &SignArgs) -> Result<Status, CliError> {
    let text = read_small(&a.file, MAX_FILE, "bundle")?;
    let b = Bundle::from_toml(&text).map_err(|e| CliError::invalid(format!("{}: {e}", a.file.display())))?;
    let failed: Vec<String> = b
        .run_tests(Limits::default())
        .into_iter()
        .filter(|r| !r.passed)
        .map(|r| r.name)
        .collect();
    if !failed.is_empty() {
        return Err(CliError::invalid(format!(
            "not signing: test cases fail: {}",
            failed.join(", ")
        )));
    }
    let key = keyfile::load(&a.key)?;
    let signed = sign_bundle(&b, &key.signer());
    write_atomic(&a.out, &signed, a.force, 0o644)?;
    let mut out = Out::new();
    out.line(format_args!("hash          {}", hex::encode(b.hash())));
    out.line(format_args!(
        "signed by     {}",
        crate::encoding::key_string(&key.public)
    ));
    out.line(format_args!("written       {}", Safe(&a.out.display().to_string())));
    out.finish()?;
    Ok(Status::Success)
}

fn verify(a: &VerifyArgs) -> Result<Status, CliError> {
    let authors = author_keys(&a.authors)?;
    let bytes = read_bytes(&a.file, "bundle")?;
    let (b, kid) =
        load_signed(&bytes, &authors).map_err(|e| CliError::invalid(format!("{}: {e}", a.file.display())))?;
    let mut out = Out::new();
    out.line(format_args!(
        "bundle        {} ({})",
        Safe(&a.file.display().to_string()),
        Safe(&b.spec().name)
    ));
    out.line(format_args!("hash          {}", hex::encode(b.hash())));
    out.line(format_args!("signed by     {}", crate::encoding::key_string(&kid)));
    out.line(format_args!("result        verified"));
    out.finish()?;
    Ok(Status::Success)
}

fn inputs(a: &DecideArgs) -> Result<(Vec<Bundle>, Request, Evidence), CliError> {
    let authors = author_keys(&a.authors)?;
    let bundles = a
        .files
        .iter()
        .map(|f| load(f, &authors).map(|b| b.0))
        .collect::<Result<Vec<_>, _>>()?;
    let text = read_small(&a.request, MAX_FILE, "request")?;
    let req: Request =
        serde_json::from_str(&text).map_err(|e| CliError::usage(format!("request {}: {e}", a.request.display())))?;
    let mut ev = Evidence::new();
    if let Some(h) = &a.history {
        let text = read_small(h, MAX_FILE, "history")?;
        let calls: Vec<PastCall> =
            serde_json::from_str(&text).map_err(|e| CliError::usage(format!("history {}: {e}", h.display())))?;
        for c in &calls {
            ev.add_call(c);
        }
    }
    Ok((bundles, req, ev))
}

fn compose(a: &DecideArgs) -> Result<Status, CliError> {
    let (bundles, req, ev) = inputs(a)?;
    let g = Guardian::new(bundles, Limits::default());
    let d = g.decide(&req, &ev);
    let mut out = Out::new();
    if a.json {
        out.json(&decision_report(&d))?;
    } else {
        print_decision(&mut out, &d);
    }
    out.finish()?;
    Ok(Status::Success)
}

#[derive(Serialize)]
struct ExplainRule {
    bundle: String,
    rule: String,
    verdict: &'static str,
    requirements: Vec<ExplainRequirement>,
}

#[derive(Serialize)]
struct ExplainRequirement {
    requirement: String,
    result: String,
}

fn explain(a: &DecideArgs) -> Result<Status, CliError> {
    let (bundles, req, ev) = inputs(a)?;
    let mut rules = Vec::new();
    for b in &bundles {
        for t in b.explain(&req, &ev, Limits::default()) {
            rules.push(ExplainRule {
                bundle: b.spec().name.clone(),
                rule: t.rule,
                verdict: verdict_str(t.verdict),
                requirements: t
                    .requirements
                    .into_iter()
                    .map(|(requirement, held)| ExplainRequirement {
                        requirement,
                        result: match held {
                            Held::Held => "held".into(),
                            Held::Failed => "failed".into(),
                            Held::Error(e) => format!("error {}: {e}", e.reason()),
                        },
                    })
                    .collect(),
            });
        }
    }
    let d = Guardian::new(bundles, Limits::default()).decide(&req, &ev);
    let mut out = Out::new();
    if a.json {
        #[derive(Serialize)]
        struct Explained<'a> {
            rules: &'a [ExplainRule],
            decision: DecisionReport,
        }
        out.json(&Explained {
            rules: &rules,
            decision: decision_report(&d),
        })?;
    } else {
        if rules.is_empty() {
            out.line(format_args!("no rule names tool {}", Safe(&req.tool)));
        }
        for r in &rules {
            out.line(format_args!(
                "rule {} / {} -> {}",
                Safe(&r.bundle),
                Safe(&r.rule),
                r.verdict
            ));
            if r.requirements.is_empty() {
                out.line(format_args!("  (no requirements: always holds)"));
            }
            for q in &r.requirements {
                out.line(format_args!("  {:<8} {}", q.result, Safe(&q.requirement)));
            }
        }
        print_decision(&mut out, &d);
    }
    out.finish()?;
    Ok(Status::Success)
}

/// Runs one `policy` subcommand.
pub(crate) fn run(cmd: &PolicyCmd) -> Result<Status, CliError> {
    match cmd {
        PolicyCmd::Check(a) => check(a),
        PolicyCmd::Test(a) => test(a),
        PolicyCmd::Sign(a) => sign(a),
        PolicyCmd::Verify(a) => verify(a),
        PolicyCmd::Compose(a) => compose(a),
        PolicyCmd::Explain(a) => explain(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLE: &str =
        "name = \"t\"\n[[rule]]\nid = \"r\"\ntools = [\"x\"]\nverdict = \"allow\"\nrequire = [\"args.n < 3\"]\n\
                          [[test]]\nname = \"small\"\nexpect = \"allow\"\nreason = \"POLICY_ALLOW\"\n\
                          request = { tool = \"x\", principal = \"p\", args = { n = 1 } }\n";

    #[test]
    fn sign_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("b.toml");
        std::fs::write(&src, BUNDLE).unwrap();
        let key = keyfile::KeyFile::from_seed("author".into(), "policy-author".into(), [5; 32]);
        let key_path = dir.path().join("author.key");
        std::fs::write(&key_path, key.to_json()).unwrap();
        let out = dir.path().join("b.cose");
        let cmd = |c: PolicyCmd| run(&c).map_err(|e| e.status);
        let bundle_args = |file: &Path, authors: Vec<String>| BundleArgs {
            file: file.to_path_buf(),
            authors,
            json: true,
        };
        assert_eq!(cmd(PolicyCmd::Check(bundle_args(&src, vec![]))), Ok(Status::Success));
        assert_eq!(cmd(PolicyCmd::Test(bundle_args(&src, vec![]))), Ok(Status::Success));
        assert_eq!(
            cmd(PolicyCmd::Sign(SignArgs {
                file: src.clone(),
                key: key_path.clone(),
                out: out.clone(),
                force: false,
            })),
            Ok(Status::Success)
        );
        let author = crate::encoding::key_string(&key.public);
        let verify = |file: &Path, authors: Vec<String>| {
            cmd(PolicyCmd::Verify(VerifyArgs {
                file: file.to_path_buf(),
                authors,
            }))
        };
        assert_eq!(verify(&out, vec![author.clone()]), Ok(Status::Success));
        // A key file works as --author too.
        assert_eq!(verify(&out, vec![key_path.display().to_string()]), Ok(Status::Success));
        // Another author, an unsigned bundle, a tampered bundle: exit 1.
        let other = crate::encoding::key_string(&[9; 32]);
        assert_eq!(verify(&out, vec![other]), Err(Status::Failed));
        assert_eq!(verify(&src, vec![author.clone()]), Err(Status::Failed));
        let mut bytes = std::fs::read(&out).unwrap();
        let last = bytes.len() - 70;
        bytes[last] ^= 1;
        let bad = dir.path().join("bad.cose");
        std::fs::write(&bad, &bytes).unwrap();
        assert_eq!(verify(&bad, vec![author.clone()]), Err(Status::Failed));
        // A signed bundle without --author does not load (usage error).
        assert_eq!(cmd(PolicyCmd::Check(bundle_args(&out, vec![]))), Err(Status::Error));
        assert_eq!(
            cmd(PolicyCmd::Test(bundle_args(&out, vec![author]))),
            Ok(Status::Success)
        );
        // A failing test case: `test` exits 1 and `sign` refuses.
        std::fs::write(&src, BUNDLE.replace("n = 1", "n = 5")).unwrap();
        assert_eq!(cmd(PolicyCmd::Test(bundle_args(&src, vec![]))), Ok(Status::Failed));
        let refused = cmd(PolicyCmd::Sign(SignArgs {
            file: src,
            key: key_path,
            out: dir.path().join("c.cose"),
            force: false,
        }));
        assert_eq!(refused, Err(Status::Failed));
    }
}
