//! HTTPS for `helm-proxy serve`, and client certificates (mTLS) as a second way to
//! authenticate.
//!
//! With `[server] tls_cert` and `tls_key` the listener speaks TLS only (rustls, ring
//! provider, HTTP/1.1). With `client_ca`, rustls verifies a client certificate against
//! that CA bundle during the handshake (`WebPkiClientVerifier`): `client_auth =
//! "required"` refuses a connection without one, `"optional"` admits it (tokens still
//! work); a certificate that does not verify is refused either way. A verified
//! certificate is then pinned: the SHA-256 of its leaf's DER must be a `[[client_cert]]`
//! of the configuration, which names its principal and scopes, like a `[[token]]`.
//!
//! The identity is resolved once per connection, after the handshake, and travels with
//! each request as [`Peer`] (axum's `ConnectInfo`, set by the server, never by the
//! client); [`crate::auth::Authenticated`] reads it. Handshakes run beside the accept
//! loop (a slow client holds up no one), at most [`MAX_HANDSHAKES`] at once, each at
//! most [`HANDSHAKE_TIMEOUT`].
//!
//! Key material never reaches a log line or an error message: errors about the key file
//! name the file and the kind of problem only.

use core::net::SocketAddr;
use core::time::Duration;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::auth::Scope;
use crate::config::{ConfigError, ServerSection};
use crate::log::log_warn;

/// Longest certificate or key PEM file read.
const MAX_PEM_FILE: u64 = 1 << 20;
/// TLS handshakes in progress at once; a connection beyond is closed at once.
pub const MAX_HANDSHAKES: usize = 256;
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a client certificate is needed (`[server] client_auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// A connection without a certificate is admitted (bearer tokens still work); a
    /// certificate, if presented, must verify.
    Optional,
    /// No certificate, no connection.
    Required,
}

impl ClientAuthMode {
    /// `optional` or `required`.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuthMode::Optional => "optional",
            ClientAuthMode::Required => "required",
        }
    }
}

/// One pinned client certificate (`[[client_cert]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertIdentity {
    /// The principal the certificate authenticates.
    pub principal: String,
    /// SHA-256 of the leaf certificate's DER.
    pub fingerprint: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// The pinned client certificates.
#[derive(Clone, Debug, Default)]
pub struct CertTable {
    entries: Vec<Arc<CertIdentity>>,
}

impl CertTable {
    /// A table of entries (fingerprints must be distinct; the configuration checks that).
    pub fn new(entries: Vec<CertIdentity>) -> CertTable {
        CertTable {
            entries: entries.into_iter().map(Arc::new).collect(),
        }
    }

    /// The entries.
    pub fn entries(&self) -> impl Iterator<Item = &CertIdentity> {
        self.entries.iter().map(|e| &**e)
    }

    /// The entry of a fingerprint (fingerprints are public: no constant-time need).
    pub fn lookup(&self, fingerprint: &[u8; 32]) -> Option<Arc<CertIdentity>> {
        self.entries.iter().find(|e| e.fingerprint == *fingerprint).cloned()
    }
}

/// SHA-256 of a certificate's DER: what `[[client_cert]] cert_sha256` pins.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A fingerprint as the configuration writes it: 64 hex digits (either case).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits (the SHA-256 of the certificate's DER), found {:?}",
            s
        ));
    }
    let bytes = hex::decode(s).map_err(|e| e.to_string())?;
    <[u8; 32]>::try_from(bytes).map_err(|_| "expected 32 bytes".to_string())
}

/// The fingerprints of the certificates of a PEM file, leaf (first) first.
pub fn pem_fingerprints(path: &Path) -> Result<Vec<[u8; 32]>, ConfigError> {
    Ok(read_certs(path, "certificate")?
        .iter()
        .map(|c| fingerprint(c))
        .collect())
}

/// The client certificate of a connection.
#[derive(Clone, Debug)]
pub enum ClientCert {
    /// None presented (or no TLS).
    None,
    /// Verified against `client_ca` and pinned by a `[[client_cert]]`.
    Pinned(Arc<CertIdentity>),
    /// Verified against `client_ca` but not pinned: every authenticated request gets 401.
    Unpinned([u8; 32]),
}

/// What the server knows of a connection's peer; every request of a TLS connection
/// carries it as `ConnectInfo<Peer>`.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// Its client certificate.
    pub cert: ClientCert,
}

/// The loaded TLS setup: the rustls configuration and the pinned client certificates.
#[derive(Clone)]
pub struct Tls {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// The `[[client_cert]]` pins.
    pub certs: Arc<CertTable>,
    /// `client_auth`, when `client_ca` is set.
    pub client_auth: Option<ClientAuthMode>,
    /// For people: what was loaded (paths, counts, fingerprints; never key material).
    pub summary: Vec<String>,
}

impl core::fmt::Debug for Tls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tls")
            .field("client_auth", &self.client_auth)
            .field("certs", &self.certs)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, ConfigError> {
    crate::config::read_limited(path, MAX_PEM_FILE, what)
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError(format!(
                "{what} {}: not a PEM file of certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ConfigError(format!(
            "{what} {}: no PEM CERTIFICATE in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// The private key file: refused if other users may read or write it; errors never
/// quote its content.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let what = "[server] tls_key";
    let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("{what} {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ConfigError(format!(
            "{what} {}: other users may read or write it (mode {:o}): chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let bytes = read_pem(path, what)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)",
            _ => "not a valid PEM private key file",
        };
        ConfigError(format!("{what} {}: {why}", path.display()))
    })
}

/// Loads `[server]`'s TLS files, if `tls_cert` is set: the certificate chain, the key
/// (it must match the chain's leaf), the client CA bundle; builds the rustls server
/// configuration. `None` without TLS.
pub fn load(server: &ServerSection, certs: CertTable) -> Result<Option<Tls>, ConfigError> {
    let (Some(cert_path), Some(key_path)) = (&server.tls_cert, &server.tls_key) else {
        return Ok(None);
    };
    let chain = read_certs(cert_path, "[server] tls_cert")?;
    let key = read_key(key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("[server] TLS: {e}")))?;
    let mut summary = vec![format!(
        "https         certificate {} ({} certificate(s), leaf SHA-256 {})",
        cert_path.display(),
        chain.len(),
        chain.first().map(|c| hex::encode(fingerprint(c))).unwrap_or_default()
    )];
    let client_auth = server
        .client_ca
        .as_ref()
        .map(|ca_path| (ca_path, server.client_auth.unwrap_or(ClientAuthMode::Required)));
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some((ca_path, mode)) => {
            let what = "[server] client_ca";
            let mut roots = RootCertStore::empty();
            let cas = read_certs(ca_path, what)?;
            for (i, c) in cas.iter().enumerate() {
                roots.add(c.clone()).map_err(|e| {
                    ConfigError(format!(
                        "{what} {}: certificate #{} is not a usable CA certificate: {e}",
                        ca_path.display(),
                        i.saturating_add(1)
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match mode {
                ClientAuthMode::Optional => verifier.allow_unauthenticated(),
                ClientAuthMode::Required => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| ConfigError(format!("{what} {}: {e}", ca_path.display())))?;
            summary.push(format!(
                "client certs  {} against {} ({} CA certificate(s))",
                mode.name(),
                ca_path.display(),
                cas.len()
            ));
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        ConfigError(format!(
            "[server] tls_cert {} and tls_key {} do not make a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    for c in certs.entries() {
        let scopes: Vec<&str> = c.scopes.iter().map(|s| s.name()).collect();
        summary.push(format!(
            "client cert   principal {:?} sha256 {} scopes {}",
            c.principal,
            hex::encode(c.fingerprint),
            scopes.join(",")
        ));
    }
    Ok(Some(Tls {
        config: Arc::new(config),
        certs: Arc::new(certs),
        client_auth: client_auth.map(|(_, m)| m),
        summary,
    }))
}

/// A listener that hands axum connections whose TLS handshake is done, each with its
/// [`Peer`]. Dropping it stops accepting.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// TLS over `tcp` (must be called inside the tokio runtime).
    pub fn new(tcp: TcpListener, tls: &Tls) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(tls.config.clone()),
            tls.certs.clone(),
            tx,
        ));
        Ok(TlsListener { rx, local, accept_task })
    }
}

impl core::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (it only does when aborted): no more connections.
            None => core::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            remote: self.local,
            cert: ClientCert::None,
        })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

/// The connection's client certificate, verified by rustls during the handshake.
fn identify(tls: &TlsStream<TcpStream>, certs: &CertTable) -> ClientCert {
    let (_, conn) = tls.get_ref();
    match conn.peer_certificates().and_then(|c| c.first()) {
        None => ClientCert::None,
        Some(leaf) => {
            let fp = fingerprint(leaf);
            match certs.lookup(&fp) {
                Some(id) => ClientCert::Pinned(id),
                None => ClientCert::Unpinned(fp),
            }
        }
    }
}

/// Logs failed handshakes: the first at once, then at most one line every 10 s with
/// the number left unlogged.
#[derive(Default)]
struct FailureLog(Mutex<Option<(Instant, u64)>>);

impl FailureLog {
    fn note(&self, remote: SocketAddr, why: &dyn core::fmt::Display) {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *g {
            Some((at, skipped)) if at.elapsed() < Duration::from_secs(10) => {
                *skipped = skipped.saturating_add(1);
            }
            other => {
                let skipped = other.map_or(0, |(_, s)| s);
                log_warn!("TLS handshake from {remote} failed: {why} ({skipped} more failure(s) not logged before)");
                *other = Some((Instant::now(), 0));
            }
        }
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    certs: Arc<CertTable>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let failures = Arc::new(FailureLog::default());
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, as axum does.
                log_warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            failures.note(
                remote,
                &format_args!("more than {MAX_HANDSHAKES} handshakes in progress"),
            );
            continue;
        };
        // Streamed answers are many small writes (see server.rs).
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let certs = certs.clone();
        let tx = tx.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    drop(permit);
                    let cert = identify(&tls, &certs);
                    let _ = tx.send((tls, Peer { remote, cert })).await;
                }
                Ok(Err(e)) => failures.note(remote, &e),
                Err(_) => failures.note(remote, &"timed out"),
            }
        });
    }
}

/// The TLS configuration for reaching an upstream server (the OpenAI upstream, an MCP
/// server over `https://`): rustls with the ring provider, the Mozilla roots, and the
/// PEM certificates of `ca_file` as further roots (a private CA). Errors name the file.
pub fn upstream_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
            .and_then(Iterator::collect)
            .map_err(|e| format!("ca_file {}: {e}", f.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: no certificate", f.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("ca_file {}: {e}", f.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fingerprints_parse() {
        let fp = fingerprint(b"not really a certificate");
        assert_eq!(parse_fingerprint(&hex::encode(fp)).unwrap(), fp);
        assert_eq!(parse_fingerprint(&hex::encode_upper(fp)).unwrap(), fp);
        for bad in [
            "",
            "00",
            &"g".repeat(64),
            &"0".repeat(65),
            &format!("{}:", &"0".repeat(63)),
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_lookup() {
        let t = CertTable::new(vec![CertIdentity {
            principal: "a".into(),
            fingerprint: [1; 32],
            scopes: vec![Scope::Agent],
        }]);
        assert_eq!(t.lookup(&[1; 32]).unwrap().principal, "a");
        assert!(t.lookup(&[2; 32]).is_none());
    }
}
