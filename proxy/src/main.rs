//! `helm-proxy`: the HELM kernel server.
//!
//! Exit codes: 0 success (the server stopped on SIGTERM or ctrl-c); 1 the server could
//! not run (store locked or damaged, cannot listen); 2 usage or configuration error.

/// mimalloc: fewer instructions per request than the system allocator (proxy/Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use helm_proxy::auth::{new_token, token_digest_hex, Scope};
use helm_proxy::config::Config;
use helm_proxy::server::{run, ServeError};

#[derive(Debug, Parser)]
#[command(
    name = "helm-proxy",
    version,
    about = "The HELM kernel server: every tool call decided, signed and durable"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server until SIGTERM or ctrl-c (then a final CHECKPOINT is written)
    Serve {
        /// The configuration file (TOML; relative paths in it are relative to its directory)
        #[arg(long, short, value_name = "FILE", default_value = "helm-proxy.toml")]
        config: PathBuf,
    },
    /// Load and check a configuration and every file it names; print the effective configuration
    CheckConfig {
        /// The configuration file
        #[arg(long, short, value_name = "FILE", default_value = "helm-proxy.toml")]
        config: PathBuf,
    },
    /// Create API tokens and their configuration entries
    #[command(subcommand)]
    Token(TokenCmd),
    /// Print the SHA-256 fingerprint of a PEM certificate's DER (the first certificate of the file), for [[client_cert]] cert_sha256
    CertFingerprint {
        /// The client certificate (PEM)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The MCP interceptor on stdio: spawn an MCP server and govern every message between it and our stdin/stdout
    Mcp {
        /// Speak stdio on the client side (the only mode of this subcommand; HTTP is served by `serve` at /mcp/{server})
        #[arg(long, required = true)]
        stdio: bool,
        /// The configuration file (kernel store, keys, policy, [mcp])
        #[arg(long, short, value_name = "FILE", default_value = "helm-proxy.toml")]
        config: PathBuf,
        /// The server's name: its tools are `NAME/tool` for the policy
        #[arg(long, value_name = "NAME")]
        server: String,
        /// The principal (default: [mcp] stdio_principal)
        #[arg(long)]
        principal: Option<String>,
        /// The kernel session (default: mcp-stdio-<random>)
        #[arg(long)]
        session: Option<String>,
        /// Use this store directory instead of the configuration's (a store is used by one process at a time)
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// The MCP server command and its arguments (after `--`)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Generate a random token; print it (give it to the client) and its [[token]] entry (put it in the configuration)
    New {
        /// The principal the token authenticates
        #[arg(long)]
        principal: String,
        /// What the token may do (repeatable, or a comma list)
        #[arg(long = "scope", value_enum, value_delimiter = ',', default_value = "agent")]
        scopes: Vec<ScopeArg>,
    },
    /// Print the token_sha256 of a token read from standard input (one line)
    Hash,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// evaluate and effects
    Agent,
    /// list, read and answer approvals
    Approver,
    /// records and metrics
    Auditor,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Agent => Scope::Agent,
            ScopeArg::Approver => Scope::Approver,
            ScopeArg::Auditor => Scope::Auditor,
        }
    }
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("helm-proxy: {message}");
    ExitCode::from(code)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let prepared = match config.prepare() {
        Ok(p) => p,
        Err(e) => return fail(2, &e.to_string()),
    };
    let text = match config.to_toml() {
        Ok(t) => t,
        Err(e) => return fail(2, &e.to_string()),
    };
    let mut out = format!("# configuration OK: {}\n", path.display());
    for line in prepared.summary(&config) {
        out.push_str(&format!("#   {line}\n"));
    }
    for w in &prepared.warnings {
        out.push_str(&format!("# WARNING: {w}\n"));
    }
    out.push_str("\n# effective configuration (defaults filled in, paths absolute):\n");
    out.push_str(&text);
    crate::out(&out);
    ExitCode::SUCCESS
}

fn token(cmd: &TokenCmd) -> ExitCode {
    match cmd {
        TokenCmd::New { principal, scopes } => {
            let t = match new_token() {
                Ok(t) => t,
                Err(e) => return fail(1, &e),
            };
            let mut names: Vec<Scope> = scopes.iter().map(|s| Scope::from(*s)).collect();
            names.sort();
            names.dedup();
            let list: Vec<String> = names.iter().map(|s| format!("{:?}", s.name())).collect();
            out(&format!(
                "# the token (give it to the client; it is not stored anywhere):\n# {t}\n[[token]]\n\
                 principal = {principal:?}\ntoken_sha256 = \"{}\"\nscopes = [{}]\n",
                token_digest_hex(&t),
                list.join(", ")
            ));
            ExitCode::SUCCESS
        }
        TokenCmd::Hash => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().take(64 << 10).read_to_string(&mut s) {
                return fail(2, &format!("standard input: {e}"));
            }
            let t = s.strip_suffix('\n').unwrap_or(&s);
            let t = t.strip_suffix('\r').unwrap_or(t);
            if t.is_empty() {
                return fail(2, "no token on standard input");
            }
            out(&format!("{}\n", token_digest_hex(t)));
            ExitCode::SUCCESS
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match &cli.cmd {
        Cmd::Serve { config } => {
            let c = match Config::load(config) {
                Ok(c) => c,
                Err(e) => return fail(2, &e.to_string()),
            };
            match run(&c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ ServeError::Config(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
        Cmd::CheckConfig { config } => check_config(config),
        Cmd::Token(t) => token(t),
        Cmd::CertFingerprint { file } => match helm_proxy::tls::pem_fingerprints(file) {
            Ok(f) => match f.first() {
                Some(fp) => {
                    out(&format!("{}\n", hex::encode(fp)));
                    ExitCode::SUCCESS
                }
                None => fail(2, &format!("{}: no certificate", file.display())),
            },
            Err(e) => fail(2, &e.to_string()),
        },
        Cmd::Mcp {
            stdio: _,
            config,
            server,
            principal,
            session,
            store,
            command,
        } => {
            let mut c = match Config::load(config) {
                Ok(c) => c,
                Err(e) => return fail(2, &e.to_string()),
            };
            if let Some(dir) = store {
                c.store.dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            }
            let opts = helm_proxy::mcp::StdioOptions {
                server: server.clone(),
                command: command.clone(),
                principal: principal.clone(),
                session: session.clone(),
            };
            match helm_proxy::mcp::run_stdio(&c, opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ ServeError::Config(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
    }
}
