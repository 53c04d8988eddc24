//! The configuration file (TOML) and everything it names: the kernel key, the trust
//! root and chain, the policy bundles and the API tokens.
//!
//! [`Config::load`] parses the file, fills in defaults and resolves relative paths
//! against the file's directory; [`Config::prepare`] loads and checks what it names
//! (key file permissions, the chain against the trust root, the kernel key's role, the
//! bundles' signatures); `helm-proxy check-config` runs both and prints the result.
//! The format is documented in `proxy/README.md`; `proxy/examples/helm-proxy.toml` is a
//! complete example.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeSet;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guardian::{Bundle, Limits, LoadError};
use helm_kernel::keyfile::{key_string, parse_key};
use helm_kernel::signer::{KeyFileSigner, RecordSigner};
use helm_kernel::store::StoreOptions;
use helm_kernel::trust::{verify_chain, Registry};
use helm_kernel::KernelConfig;
use serde::{Deserialize, Serialize};
use verify_core::{Body, PublicKey, Record, TrustAction, ROLE_KERNEL, ROLE_POLICY_AUTHOR};

use crate::auth::{Scope, TokenEntry, TokenTable};

/// Largest configuration file read.
const MAX_CONFIG_FILE: u64 = 1 << 20;
/// Largest trust-root file read.
const MAX_TRUST_ROOT_FILE: u64 = 1 << 20;
/// Largest policy bundle file read.
const MAX_BUNDLE_FILE: u64 = 16 << 20;
/// Names (principals) are at most this many bytes (the record format's limit).
const MAX_NAME: usize = 256;

/// The configuration is unusable: the message names the file and the setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ConfigError {}

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// Whether an answer waits for its records to be on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Every answer waits for fsync (group commit): no acknowledged record is lost.
    #[default]
    Durable,
    /// Answers do not wait for fsync: a crash of the machine may lose the newest
    /// acknowledged records. Chosen explicitly, and labelled in logs and `/healthz`.
    Buffered,
}

impl DurabilityMode {
    /// `durable` or `buffered`.
    pub fn name(self) -> &'static str {
        match self {
            DurabilityMode::Durable => "durable",
            DurabilityMode::Buffered => "buffered",
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address and port to listen on (default `127.0.0.1:8787`; port 0 picks a free one).
    pub listen: String,
    /// Must be `true` to listen on an address other than loopback.
    pub allow_remote: bool,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: u64,
    /// How often the kernel's housekeeping runs (approval timeouts, timed checkpoints), ms.
    pub tick_ms: u64,
    /// How long a shutdown waits for requests in flight before the final checkpoint, ms.
    pub shutdown_grace_ms: u64,
    /// HTTPS: the server's certificate chain (PEM, leaf first). With `tls_key`, the
    /// listener speaks TLS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the private key of `tls_cert`'s leaf (PEM; mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Client certificates (mTLS): the CA bundle they must chain to (PEM). Needs TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `required` (default: no certificate, no connection) or
    /// `optional` (tokens still work; a certificate presented must verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<crate::tls::ClientAuthMode>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8787".into(),
            allow_remote: false,
            max_body_bytes: 1 << 20,
            tick_ms: 1000,
            shutdown_grace_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            client_auth: None,
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The store directory (created if missing).
    pub dir: PathBuf,
    /// `durable` (default) or `buffered`.
    pub durability: DurabilityMode,
    /// Buffered only: time between two background `fsync`s (ms). A power loss can lose
    /// the records acknowledged in about this much time.
    pub sync_interval_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            dir: PathBuf::from("helm-store"),
            durability: DurabilityMode::Durable,
            sync_interval_ms: 10,
        }
    }
}

/// `[signer.pkcs11]`: the kernel key on a PKCS#11 token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Section {
    /// The vendor's PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key pair's label.
    pub key_label: String,
    /// Environment variable holding the user PIN (this or `pin_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// File holding the user PIN, mode 0600 or 0400 (this or `pin_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// Most PKCS#11 sessions open at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

/// `[signer]`: exactly one of `key_file` and `pkcs11` (default `key_file = "kernel.key"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerSection {
    /// A `helm-key/1` key file (mode 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A key on a PKCS#11 token (needs the `pkcs11` feature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<Pkcs11Section>,
    /// `key_file` only: Ed25519 nonces made ahead of time on idle CPU (pool size;
    /// default [`DEFAULT_PRESIGN`], 0 turns it off). See `helm_kernel::presign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presign: Option<usize>,
}

/// Default `[signer] presign`: 16,384 nonces (1 MiB; made in about 0.2 s of idle CPU
/// at start), enough for a burst of about 8,000 decisions.
pub const DEFAULT_PRESIGN: usize = 16_384;
/// Largest `[signer] presign` (64 MiB of nonces).
const MAX_PRESIGN: usize = 1 << 20;

/// `[trust]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSection {
    /// The trust-root file (`helm-trust-root/1` JSON): the root keys.
    pub root: PathBuf,
    /// The trust chain: a CBOR sequence of TRUST_EVENT records signed by the roots.
    pub chain: PathBuf,
}

impl Default for TrustSection {
    fn default() -> Self {
        TrustSection {
            root: PathBuf::from("trust-root.json"),
            chain: PathBuf::from("trust-chain.cbor"),
        }
    }
}

/// `[policy]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Policy bundle files: signed bundles (`helm-airgap policy sign`), or TOML source
    /// only with `allow_unsigned_bundles`.
    pub bundles: Vec<PathBuf>,
    /// Keys whose signatures on bundles are accepted (`ed25519:<hex>`); each must be an
    /// active `policy-author` key of the trust chain. Empty: every active
    /// `policy-author` key of the chain.
    pub authors: Vec<String>,
    /// Accept bundles that are TOML source, not signed (development only; logged).
    pub allow_unsigned_bundles: bool,
    /// Steps one decision may take (Guardian's limit).
    pub max_steps: u64,
}

/// `[checkpoint]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// A CHECKPOINT after this many records (0: never by count).
    pub every_records: u64,
    /// A CHECKPOINT when records were added and this much time passed (ms; 0: never by time).
    pub interval_ms: u64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            every_records: 1000,
            interval_ms: 60_000,
        }
    }
}

/// `[approvals]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsSection {
    /// How long a resolved escalation keeps answering retries of its call (ms).
    pub resolved_ttl_ms: u64,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        ApprovalsSection {
            resolved_ttl_ms: 3_600_000,
        }
    }
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Agent]
}

/// `[[token]]`: one API token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// The principal the token authenticates.
    pub principal: String,
    /// SHA-256 of the token, 64 lowercase hex digits (`helm-proxy token new` prints it).
    pub token_sha256: String,
    /// What the token may do: `agent` (default), `approver`, `auditor`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
}

/// `[[client_cert]]`: one pinned client certificate (needs `[server] client_ca`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertSection {
    /// The principal the certificate authenticates.
    pub principal: String,
    /// SHA-256 of the leaf certificate's DER, 64 hex digits (`helm-proxy cert-fingerprint FILE`).
    pub cert_sha256: String,
    /// What the certificate may do: `agent` (default), `approver`, `auditor`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
}

/// The configuration, with defaults filled in and paths made absolute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[signer]`.
    pub signer: SignerSection,
    /// `[trust]`.
    pub trust: TrustSection,
    /// `[policy]`.
    pub policy: PolicySection,
    /// `[checkpoint]`.
    pub checkpoint: CheckpointSection,
    /// `[approvals]`.
    pub approvals: ApprovalsSection,
    /// `[[token]]`.
    #[serde(rename = "token")]
    pub tokens: Vec<TokenSection>,
    /// `[[client_cert]]`: client certificates pinned to principals.
    #[serde(rename = "client_cert", skip_serializing_if = "Vec::is_empty")]
    pub client_certs: Vec<ClientCertSection>,
    /// `[openai]`: the OpenAI-compatible proxy (see `crate::openai`); absent: not served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openai: Option<crate::openai::OpenAiSection>,
    /// `[mcp]`: the MCP interceptor (see `crate::mcp::config`).
    pub mcp: crate::mcp::config::McpSection,
    /// `[[wasm_tool]]`: tools run by the kernel in its WASM sandbox when allowed.
    #[serde(rename = "wasm_tool", skip_serializing_if = "Vec::is_empty")]
    pub wasm_tools: Vec<WasmToolSection>,
}

/// `[[wasm_tool]]`: a tool backed by a WebAssembly module (a WASI preview1 command).
/// `/v1/evaluate` runs an allowed call in the sandbox and returns its output; the EFFECT
/// with the sandbox evidence is recorded by the kernel (spec/sandbox.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmToolSection {
    /// The tool name Guardian decides on.
    pub tool: String,
    /// The module file.
    pub module: PathBuf,
    /// The module's SHA-256 (64 lowercase hex digits): another file is refused at start.
    pub sha256: String,
    /// Fuel per call.
    #[serde(default = "default_wasm_fuel")]
    pub fuel: u64,
    /// Wall-clock milliseconds per call.
    #[serde(default = "default_wasm_wall_ms")]
    pub wall_ms: u64,
    /// Largest linear memory, bytes.
    #[serde(default = "default_wasm_memory")]
    pub memory_bytes: u64,
    /// Most bytes of stdout and stderr together.
    #[serde(default = "default_wasm_output")]
    pub output_bytes: u64,
    /// The guest's argv.
    #[serde(default)]
    pub args: Vec<String>,
}

fn default_wasm_fuel() -> u64 {
    helm_sandbox::Limits::DEFAULT.fuel
}
fn default_wasm_wall_ms() -> u64 {
    helm_sandbox::Limits::DEFAULT.wall_ms
}
fn default_wasm_memory() -> u64 {
    helm_sandbox::Limits::DEFAULT.memory_bytes
}
fn default_wasm_output() -> u64 {
    helm_sandbox::Limits::DEFAULT.output_bytes
}

/// Reads at most `max` bytes of a file.
pub(crate) fn read_limited(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, ConfigError> {
    let f = fs::File::open(path).map_err(|e| ConfigError(format!("{what} {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError(format!("{what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > max {
        return err(format!("{what} {}: larger than {max} bytes", path.display()));
    }
    Ok(bytes)
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// A name (principal) as records allow it: 1 to 256 bytes, no control characters.
fn check_name(what: &str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return err(format!(
            "{what} {s:?}: a name is 1 to {MAX_NAME} bytes without control characters"
        ));
    }
    Ok(())
}

impl Config {
    /// Reads a configuration file, fills in defaults, resolves relative paths against
    /// the file's directory and checks every value that can be checked without loading
    /// the files it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_limited(path, MAX_CONFIG_FILE, "configuration")?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError(format!("configuration {}: not UTF-8", path.display())))?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| ConfigError(format!("configuration {}: {e}", path.display())))?;
        let base = absolute(Path::new("."), path.parent().unwrap_or(Path::new(".")));
        c.resolve(&base);
        c.check()
            .map_err(|e| ConfigError(format!("configuration {}: {e}", path.display())))?;
        Ok(c)
    }

    /// Makes every path absolute (relative ones against `base`) and fills in the
    /// default key file.
    pub fn resolve(&mut self, base: &Path) {
        self.store.dir = absolute(base, &self.store.dir);
        for p in [
            &mut self.server.tls_cert,
            &mut self.server.tls_key,
            &mut self.server.client_ca,
        ]
        .into_iter()
        .flatten()
        {
            *p = absolute(base, p);
        }
        if self.server.client_ca.is_some() && self.server.client_auth.is_none() {
            self.server.client_auth = Some(crate::tls::ClientAuthMode::Required);
        }
        for t in &mut self.wasm_tools {
            t.module = absolute(base, &t.module);
        }
        if self.signer.key_file.is_none() && self.signer.pkcs11.is_none() {
            self.signer.key_file = Some(PathBuf::from("kernel.key"));
        }
        if let Some(k) = &mut self.signer.key_file {
            *k = absolute(base, k);
        }
        if let Some(p) = &mut self.signer.pkcs11 {
            if let Some(f) = &mut p.pin_file {
                *f = absolute(base, f);
            }
        }
        self.trust.root = absolute(base, &self.trust.root);
        self.trust.chain = absolute(base, &self.trust.chain);
        for b in &mut self.policy.bundles {
            *b = absolute(base, b);
        }
        if self.policy.max_steps == 0 {
            self.policy.max_steps = Limits::default().max_steps;
        }
        if let Some(o) = &mut self.openai {
            o.resolve(base);
        }
        for s in &mut self.mcp.servers {
            if let Some(f) = &mut s.ca_file {
                *f = absolute(base, f);
            }
        }
    }

    /// Checks the values themselves (not the files they name).
    pub fn check(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        if !addr.ip().is_loopback() && !self.server.allow_remote {
            return err(format!(
                "[server] listen = {:?} is not a loopback address: set allow_remote = true to listen on it \
                 (API tokens then cross the network in clear text unless tls_cert is set or a TLS proxy is in front)",
                self.server.listen
            ));
        }
        if !(1024..=(64 << 20)).contains(&self.server.max_body_bytes) {
            return err("[server] max_body_bytes must be between 1024 and 67108864");
        }
        if !(10..=60_000).contains(&self.server.tick_ms) {
            return err("[server] tick_ms must be between 10 and 60000");
        }
        if !(1..=10_000).contains(&self.store.sync_interval_ms) {
            return err("[store] sync_interval_ms must be between 1 and 10000");
        }
        if self.server.shutdown_grace_ms > 600_000 {
            return err("[server] shutdown_grace_ms must be at most 600000");
        }
        if self.signer.pkcs11.is_some() && self.signer.presign.is_some() {
            return err("[signer] presign applies to key_file only (a PKCS#11 token signs by itself)");
        }
        if self.signer.presign.is_some_and(|n| n > MAX_PRESIGN) {
            return err(format!("[signer] presign: at most {MAX_PRESIGN} nonces"));
        }
        match (&self.signer.key_file, &self.signer.pkcs11) {
            (Some(_), Some(_)) => return err("[signer] has both key_file and pkcs11: choose one"),
            (_, Some(p)) => {
                if p.pin_env.is_some() == p.pin_file.is_some() {
                    return err("[signer.pkcs11] needs exactly one of pin_env and pin_file");
                }
                if p.max_sessions == Some(0) {
                    return err("[signer.pkcs11] max_sessions must be at least 1");
                }
            }
            _ => {}
        }
        for a in &self.policy.authors {
            let k = parse_key(a).map_err(|e| ConfigError(format!("[policy] authors: {a:?}: {e}")))?;
            PublicKey::admit(&k)
                .map_err(|e| ConfigError(format!("[policy] authors: {a:?} is not a valid Ed25519 key ({e:?})")))?;
        }
        if let Some(o) = &self.openai {
            o.check()?;
        }
        let mut bundles = BTreeSet::new();
        for b in &self.policy.bundles {
            if !bundles.insert(b) {
                return err(format!("[policy] bundles: {} is listed twice", b.display()));
            }
        }
        let mut digests = BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("[[token]] #{} (principal {:?})", i.saturating_add(1), t.principal);
            check_name(&format!("{at}: principal"), &t.principal)?;
            if t.principal == "kernel" {
                return err(format!("{at}: the principal \"kernel\" is the kernel's own"));
            }
            let d = helm_kernel::keyfile::hex32(&t.token_sha256).map_err(|e| {
                ConfigError(format!(
                    "{at}: token_sha256: {e} (the SHA-256 of the token, not the token)"
                ))
            })?;
            if !digests.insert(d) {
                return err(format!("{at}: the same token_sha256 appears twice"));
            }
            if t.scopes.is_empty() {
                return err(format!("{at}: scopes is empty"));
            }
        }
        self.check_tls()?;
        self.mcp.check().map_err(ConfigError)?;
        Ok(())
    }

    /// `[server]`'s TLS keys and `[[client_cert]]`.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return err("[server] tls_cert and tls_key go together: set both for HTTPS, or neither");
        }
        if s.client_ca.is_some() && s.tls_cert.is_none() {
            return err("[server] client_ca needs tls_cert and tls_key: client certificates exist only over TLS");
        }
        if s.client_auth.is_some() && s.client_ca.is_none() {
            return err("[server] client_auth needs client_ca (the CA bundle client certificates must chain to)");
        }
        if !self.client_certs.is_empty() && s.client_ca.is_none() {
            return err("[[client_cert]] needs [server] client_ca (and tls_cert, tls_key)");
        }
        let mut fingerprints = BTreeSet::new();
        for (i, c) in self.client_certs.iter().enumerate() {
            let at = format!("[[client_cert]] #{} (principal {:?})", i.saturating_add(1), c.principal);
            check_name(&format!("{at}: principal"), &c.principal)?;
            if c.principal == "kernel" {
                return err(format!("{at}: the principal \"kernel\" is the kernel's own"));
            }
            let fp = crate::tls::parse_fingerprint(&c.cert_sha256).map_err(|e| {
                ConfigError(format!(
                    "{at}: cert_sha256: {e}; `helm-proxy cert-fingerprint FILE` prints it"
                ))
            })?;
            if !fingerprints.insert(fp) {
                return err(format!("{at}: the same cert_sha256 appears twice"));
            }
            if c.scopes.is_empty() {
                return err(format!("{at}: scopes is empty"));
            }
        }
        Ok(())
    }

    /// The pinned client certificates.
    pub fn cert_table(&self) -> crate::tls::CertTable {
        crate::tls::CertTable::new(
            self.client_certs
                .iter()
                .filter_map(|c| {
                    let fingerprint = crate::tls::parse_fingerprint(&c.cert_sha256).ok()?;
                    let mut scopes = c.scopes.clone();
                    scopes.sort();
                    scopes.dedup();
                    Some(crate::tls::CertIdentity {
                        principal: c.principal.clone(),
                        fingerprint,
                        scopes,
                    })
                })
                .collect(),
        )
    }

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError(format!(
                "[server] listen = {:?} is not an address:port",
                self.server.listen
            ))
        })
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError(format!("configuration does not print: {e}")))
    }

    /// The token table.
    pub fn token_table(&self) -> TokenTable {
        TokenTable::new(
            self.tokens
                .iter()
                .filter_map(|t| {
                    let digest = helm_kernel::keyfile::hex32(&t.token_sha256).ok()?;
                    let mut scopes = t.scopes.clone();
                    scopes.sort();
                    scopes.dedup();
                    Some(TokenEntry {
                        principal: t.principal.clone(),
                        digest,
                        scopes,
                    })
                })
                .collect(),
        )
    }

    /// Loads and checks everything the configuration names.
    pub fn prepare(&self) -> Result<Prepared, ConfigError> {
        let mut warnings = Vec::new();
        let signer = self.open_signer()?;
        let anchors = load_trust_root(&self.trust.root)?;
        let chain = read_limited(
            &self.trust.chain,
            helm_kernel::trust::MAX_CHAIN_BYTES as u64,
            "trust chain",
        )?;
        let anchor_keys: Vec<[u8; 32]> = anchors.iter().map(|a| a.key).collect();
        let records = verify_chain(&anchor_keys, &chain).map_err(|e| {
            ConfigError(format!(
                "trust chain {} does not verify against trust root {}: {e}",
                self.trust.chain.display(),
                self.trust.root.display()
            ))
        })?;
        let mut registry = Registry::default();
        let mut published = BTreeSet::new();
        for bytes in &records {
            let r = Record::decode(bytes).map_err(|e| ConfigError(format!("trust chain: {}", e.name())))?;
            if let Body::TrustEvent {
                action, key, new_key, ..
            } = r.body
            {
                match (action, new_key) {
                    (TrustAction::Rotate, Some(n)) => {
                        published.insert(n);
                    }
                    _ => {
                        published.insert(key);
                    }
                }
            }
            registry.apply(&r);
        }
        let kernel_key = signer.public_key();
        if !registry.active(&kernel_key, ROLE_KERNEL) {
            return err(format!(
                "the kernel key {} ({}) is not an active key with role kernel in the trust chain {}",
                key_string(&kernel_key),
                signer.describe(),
                self.trust.chain.display()
            ));
        }
        let chain_authors: Vec<[u8; 32]> = published
            .into_iter()
            .filter(|k| registry.active(k, ROLE_POLICY_AUTHOR))
            .collect();
        let authors = if self.policy.authors.is_empty() {
            chain_authors
        } else {
            let mut v = Vec::new();
            for a in &self.policy.authors {
                let k = parse_key(a).map_err(|e| ConfigError(format!("[policy] authors: {e}")))?;
                if !chain_authors.contains(&k) {
                    return err(format!(
                        "[policy] authors: {a} is not an active policy-author key in the trust chain"
                    ));
                }
                v.push(k);
            }
            v
        };
        let limits = Limits {
            max_steps: self.policy.max_steps,
        };
        let mut bundles: Vec<LoadedBundle> = Vec::new();
        for path in &self.policy.bundles {
            let b = load_bundle(path, &authors, self.policy.allow_unsigned_bundles, limits)?;
            if let Some(other) = bundles.iter().find(|o| o.bundle.hash() == b.bundle.hash()) {
                return err(format!(
                    "[policy] bundles: {} and {} are the same bundle",
                    other.path.display(),
                    path.display()
                ));
            }
            if b.author.is_none() {
                warnings.push(format!(
                    "UNSIGNED policy bundle {} ({}) accepted because allow_unsigned_bundles = true",
                    path.display(),
                    b.bundle.spec().name
                ));
            }
            bundles.push(b);
        }
        if bundles.is_empty() {
            warnings.push("no policy bundles: every call will be denied (NO_POLICY_DEFINED)".into());
        }
        let tls = crate::tls::load(&self.server, self.cert_table())?;
        if self.tokens.is_empty() && self.client_certs.is_empty() {
            warnings.push("no [[token]]: every API call will be refused with 401".into());
        }
        if self.server.client_ca.is_some() && self.client_certs.is_empty() {
            warnings.push(
                "[server] client_ca without [[client_cert]]: every client certificate will be refused with 401".into(),
            );
        }
        if self.store.durability == DurabilityMode::Buffered {
            warnings.push(format!(
                "BUFFERED store: answers do not wait for fsync (one every {} ms); a power loss may lose the records \
                 acknowledged in the last interval",
                self.store.sync_interval_ms
            ));
        }
        if self.server.allow_remote && !self.listen_addr()?.ip().is_loopback() && tls.is_none() {
            warnings.push(format!(
                "listening on {} beyond loopback: tokens travel in clear text unless TLS is in front",
                self.server.listen
            ));
        }
        Ok(Prepared {
            signer,
            anchors,
            chain,
            chain_records: records.len(),
            bundles,
            authors,
            tokens: self.token_table(),
            tls,
            warnings,
        })
    }

    fn open_signer(&self) -> Result<Arc<dyn RecordSigner>, ConfigError> {
        if let Some(p) = &self.signer.pkcs11 {
            return open_pkcs11(p);
        }
        let presign = self.signer.presign.unwrap_or(DEFAULT_PRESIGN);
        let path = self
            .signer
            .key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("kernel.key"));
        let mut s = KeyFileSigner::load(&path).map_err(|e| ConfigError(format!("[signer] key_file: {e}")))?;
        if presign > 0 {
            s = s.with_presigning(presign);
        }
        Ok(Arc::new(s))
    }

    /// The kernel's configuration.
    pub fn kernel_config(&self, p: &Prepared) -> Result<KernelConfig, ConfigError> {
        let mut bundles = Vec::with_capacity(p.bundles.len());
        for b in &p.bundles {
            let copy = Bundle::from_canonical(b.bundle.canonical())
                .map_err(|e| ConfigError(format!("policy bundle {}: {e}", b.path.display())))?;
            bundles.push(copy);
        }
        let mut k = KernelConfig::new(
            self.store.dir.clone(),
            p.anchors.iter().map(|a| a.key).collect(),
            p.chain.clone(),
            bundles,
        );
        k.store = match self.store.durability {
            DurabilityMode::Durable => StoreOptions::default(),
            DurabilityMode::Buffered => StoreOptions::buffered(Duration::from_millis(self.store.sync_interval_ms)),
        };
        k.limits = Limits {
            max_steps: self.policy.max_steps,
        };
        k.checkpoint_every = self.checkpoint.every_records;
        k.checkpoint_interval_ms = self.checkpoint.interval_ms;
        k.resolved_ttl_ms = self.approvals.resolved_ttl_ms;
        for t in &self.wasm_tools {
            let module = read_limited(&t.module, 16 << 20, "[[wasm_tool]] module")?;
            let sha256 = helm_kernel::keyfile::hex32(&t.sha256)
                .map_err(|e| ConfigError(format!("[[wasm_tool]] {}: sha256: {e}", t.tool)))?;
            k.wasm_tools.push(helm_kernel::WasmTool {
                tool: t.tool.clone(),
                module,
                sha256: Some(sha256),
                limits: helm_sandbox::Limits {
                    fuel: t.fuel,
                    wall_ms: t.wall_ms,
                    memory_bytes: t.memory_bytes,
                    output_bytes: t.output_bytes,
                    ..helm_sandbox::Limits::DEFAULT
                },
                args: t.args.clone(),
                env: Vec::new(),
            });
        }
        Ok(k)
    }
}

#[cfg(feature = "pkcs11")]
fn open_pkcs11(p: &Pkcs11Section) -> Result<Arc<dyn RecordSigner>, ConfigError> {
    use helm_kernel::pkcs11::{Pin, Pkcs11Config, Pkcs11Signer};
    let pin = match (&p.pin_env, &p.pin_file) {
        (Some(v), _) => Pin::Env(v.clone()),
        (None, Some(f)) => Pin::File(f.clone()),
        (None, None) => return err("[signer.pkcs11] needs pin_env or pin_file"),
    };
    let mut c = Pkcs11Config::new(p.module.clone(), &p.token_label, &p.key_label, pin);
    if let Some(n) = p.max_sessions {
        c.max_sessions = n;
    }
    let s = Pkcs11Signer::open(&c).map_err(|e| ConfigError(format!("[signer.pkcs11]: {e}")))?;
    Ok(Arc::new(s))
}

#[cfg(not(feature = "pkcs11"))]
fn open_pkcs11(_: &Pkcs11Section) -> Result<Arc<dyn RecordSigner>, ConfigError> {
    err("[signer.pkcs11]: this helm-proxy was built without PKCS#11 support (cargo feature `pkcs11`)")
}

/// What the configuration names, loaded and checked.
#[derive(Debug)]
pub struct Prepared {
    /// The kernel's signer (its key is an active `kernel` key of the chain).
    pub signer: Arc<dyn RecordSigner>,
    /// The trust root's anchors.
    pub anchors: Vec<Anchor>,
    /// The trust chain's bytes (verified against the anchors).
    pub chain: Vec<u8>,
    /// TRUST_EVENTs in the chain.
    pub chain_records: usize,
    /// The policy bundles.
    pub bundles: Vec<LoadedBundle>,
    /// The policy-author keys accepted on bundles.
    pub authors: Vec<[u8; 32]>,
    /// The API tokens.
    pub tokens: TokenTable,
    /// HTTPS and client certificates (`[server] tls_cert`); `None`: plain HTTP.
    pub tls: Option<crate::tls::Tls>,
    /// Things an operator should know (unsigned bundles, buffered store, ...).
    pub warnings: Vec<String>,
}

/// One policy bundle.
#[derive(Debug)]
pub struct LoadedBundle {
    /// Its file.
    pub path: PathBuf,
    /// The bundle.
    pub bundle: Bundle,
    /// Its author's key; `None` for an unsigned bundle (`allow_unsigned_bundles`).
    pub author: Option<[u8; 32]>,
}

/// Loads a bundle file: signed (COSE_Sign1, first byte 0xd2) by one of `authors`, or,
/// only if `allow_unsigned`, TOML source whose own test cases pass.
pub fn load_bundle(
    path: &Path,
    authors: &[[u8; 32]],
    allow_unsigned: bool,
    limits: Limits,
) -> Result<LoadedBundle, ConfigError> {
    let bytes = read_limited(path, MAX_BUNDLE_FILE, "policy bundle")?;
    let at = |m: String| ConfigError(format!("policy bundle {}: {m}", path.display()));
    if bytes.first() == Some(&0xd2) {
        let (bundle, author) = guardian::load_signed(&bytes, authors).map_err(|e| match e {
            LoadError::UntrustedKey(k) if authors.is_empty() => at(format!(
                "signed by {}, but no policy-author key is trusted (none is active in the trust chain)",
                key_string(&k)
            )),
            other => at(other.to_string()),
        })?;
        return Ok(LoadedBundle {
            path: path.to_path_buf(),
            bundle,
            author: Some(author),
        });
    }
    if !allow_unsigned {
        return Err(at(
            "not a signed bundle: sign it with `helm-airgap policy sign`, or set [policy] allow_unsigned_bundles = true \
             (development only)"
                .into(),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| at("neither a signed bundle nor UTF-8 TOML".into()))?;
    let bundle = Bundle::from_toml(&text).map_err(|e| at(e.to_string()))?;
    let failed: Vec<String> = bundle
        .run_tests(limits)
        .into_iter()
        .filter(|t| !t.passed)
        .map(|t| t.name)
        .collect();
    if !failed.is_empty() {
        return Err(at(format!("its own test cases fail: {}", failed.join(", "))));
    }
    Ok(LoadedBundle {
        path: path.to_path_buf(),
        bundle,
        author: None,
    })
}

/// One trust anchor of a trust-root file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Its label.
    pub name: String,
    /// The root key.
    pub key: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustRootJson {
    format: String,
    anchors: Vec<AnchorJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorJson {
    name: String,
    key: String,
}

/// The `format` of a trust-root file.
pub const TRUST_ROOT_FORMAT: &str = "helm-trust-root/1";

/// Parses a trust-root file (`helm-trust-root/1`, as `helm-airgap` reads it: see
/// `airgap-cli/README.md`): at least one anchor, each key `ed25519:<hex>` admitted by
/// the prime-order check, names non-empty without control characters, keys and names
/// unique, no other members.
pub fn parse_trust_root(text: &str) -> Result<Vec<Anchor>, String> {
    let file: TrustRootJson = serde_json::from_str(text).map_err(|e| format!("not a valid trust-root file: {e}"))?;
    if file.format != TRUST_ROOT_FORMAT {
        return Err(format!("format is {:?}; expected {TRUST_ROOT_FORMAT:?}", file.format));
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

fn load_trust_root(path: &Path) -> Result<Vec<Anchor>, ConfigError> {
    let bytes = read_limited(path, MAX_TRUST_ROOT_FILE, "trust root")?;
    let text =
        String::from_utf8(bytes).map_err(|_| ConfigError(format!("trust root {}: not UTF-8", path.display())))?;
    parse_trust_root(&text).map_err(|e| ConfigError(format!("trust root {}: {e}", path.display())))
}

impl Prepared {
    /// A summary for people: what was loaded, one item per line.
    pub fn summary(&self, config: &Config) -> Vec<String> {
        let mut out = vec![format!(
            "kernel key    {} ({}), active with role kernel",
            key_string(&self.signer.public_key()),
            self.signer.describe()
        )];
        for a in &self.anchors {
            out.push(format!("trust anchor  {} {}", a.name, key_string(&a.key)));
        }
        out.push(format!(
            "trust chain   {} TRUST_EVENT(s) in {}",
            self.chain_records,
            config.trust.chain.display()
        ));
        for k in &self.authors {
            out.push(format!("policy author {}", key_string(k)));
        }
        for b in &self.bundles {
            out.push(format!(
                "bundle        {} {} {}",
                b.bundle.spec().name,
                hex::encode(b.bundle.hash()),
                match &b.author {
                    Some(k) => format!("signed by {}", key_string(k)),
                    None => "UNSIGNED".into(),
                }
            ));
        }
        for t in self.tokens.entries() {
            let scopes: Vec<&str> = t.scopes.iter().map(|s| s.name()).collect();
            out.push(format!(
                "token         principal {:?} scopes {}",
                t.principal,
                scopes.join(",")
            ));
        }
        if let Some(t) = &self.tls {
            out.extend(t.summary.iter().cloned());
        }
        out.push(format!(
            "store         {} ({})",
            config.store.dir.display(),
            config.store.durability.name()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        c.resolve(Path::new("/etc/helm"));
        c.check()?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8787");
        assert_eq!(c.store.dir, PathBuf::from("/etc/helm/helm-store"));
        assert_eq!(c.store.durability, DurabilityMode::Durable);
        assert_eq!(c.signer.key_file, Some(PathBuf::from("/etc/helm/kernel.key")));
        assert_eq!(c.trust.root, PathBuf::from("/etc/helm/trust-root.json"));
        assert!(!c.policy.allow_unsigned_bundles);
        // The effective configuration prints and reads back the same.
        let again: Config = toml::from_str(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn refusals() {
        for (text, needle) in [
            ("[server]\nlisten = \"0.0.0.0:8787\"", "not a loopback address"),
            ("[server]\nlisten = \"nonsense\"", "not an address"),
            ("[store]\ndurability = \"fast\"", "unknown variant"),
            ("[signer]\nkey_file = \"k\"\npkcs11 = { module = \"m\", token_label = \"t\", key_label = \"k\", pin_env = \"P\" }", "choose one"),
            ("[[token]]\nprincipal = \"a\"\ntoken_sha256 = \"secret\"", "token_sha256"),
            ("[[token]]\nprincipal = \"kernel\"\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"", "kernel's own"),
            ("[[token]]\nprincipal = \"a\"\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n[[token]]\nprincipal = \"b\"\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"", "twice"),
            ("[[token]]\nprincipal = \"a\"\ntoken_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nscopes = [\"root\"]", "unknown variant"),
            ("listen = \"127.0.0.1:1\"", "unknown field"),
            ("[policy]\nauthors = [\"ed25519:00\"]", "authors"),
            ("[signer]\npresign = 2000000", "at most"),
            ("[[mcp.server]]\nname = \"s\"\ncommand = [\"x\"]\nca_file = \"ca.pem\"", "ca_file applies to url"),
            ("[[mcp.server]]\nname = \"s\"\ncommand = [\"x\"]\nurl = \"http://127.0.0.1:1/mcp\"", "exactly one of"),
            ("[signer]\npresign = 16\npkcs11 = { module = \"m\", token_label = \"t\", key_label = \"k\", pin_env = \"P\" }", "key_file only"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
        let c = parse("[server]\nlisten = \"0.0.0.0:8787\"\nallow_remote = true").unwrap();
        assert!(!c.listen_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn trust_root_files() {
        let key = hex::encode(verify_core::Signer::from_seed(&[7; 32]).public_key());
        let ok = format!(r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"root-1","key":"ed25519:{key}"}}]}}"#);
        assert_eq!(parse_trust_root(&ok).unwrap()[0].name, "root-1");
        let bad_format = ok.replace("helm-trust-root/1", "helm-trust-root/2");
        assert!(parse_trust_root(&bad_format).unwrap_err().contains("format"));
        let twice = format!(
            r#"{{"format":"helm-trust-root/1","anchors":[{{"name":"a","key":"ed25519:{key}"}},{{"name":"b","key":"ed25519:{key}"}}]}}"#
        );
        assert!(parse_trust_root(&twice).unwrap_err().contains("twice"));
        assert!(parse_trust_root(r#"{"format":"helm-trust-root/1","anchors":[]}"#).is_err());
    }
}
