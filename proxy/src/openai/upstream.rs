//! The upstream: an OpenAI-compatible server reached over HTTP/1.1, TLS by rustls.

use core::time::Duration;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::config::{parse_base_url, BaseUrl, OpenAiSection};
use super::error::OaiError;
use crate::config::ConfigError;

/// The upstream API key: never printed.
#[derive(Clone)]
pub(crate) struct Secret(HeaderValue);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Request headers passed from the client to the upstream (everything else, the
/// client's `Authorization` first of all, stays here).
const FORWARD_REQUEST: [&str; 7] = [
    "content-type",
    "accept",
    "user-agent",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "idempotency-key",
];

/// Response headers passed from the upstream to the client.
pub(crate) fn forward_response_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n == "content-type"
        || n == "x-request-id"
        || n == "retry-after"
        || n == "x-should-retry"
        || n.starts_with("openai-")
        || n.starts_with("x-ratelimit-")
}

/// The upstream client.
#[derive(Debug)]
pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: BaseUrl,
    key: Option<Secret>,
    pub(crate) timeout: Duration,
}

impl Upstream {
    /// A client for the configured upstream (reads the key and the CA file).
    pub(crate) fn new(c: &OpenAiSection) -> Result<Upstream, ConfigError> {
        let base = parse_base_url(&c.upstream).map_err(|e| ConfigError(format!("[openai] upstream: {e}")))?;
        let key = match c.load_key()? {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| ConfigError("[openai] the upstream API key is not a valid header value".into()))?;
                v.set_sensitive(true);
                Some(Secret(v))
            }
            None => None,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(f) = &c.ca_file {
            use rustls::pki_types::pem::PemObject as _;
            use rustls::pki_types::CertificateDer;
            let certs: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_file_iter(f)
                .map_err(|e| ConfigError(format!("[openai] ca_file {}: {e}", f.display())))?
                .collect();
            let certs = certs.map_err(|e| ConfigError(format!("[openai] ca_file {}: {e}", f.display())))?;
            if certs.is_empty() {
                return Err(ConfigError(format!("[openai] ca_file {}: no certificate", f.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| ConfigError(format!("[openai] ca_file {}: {e}", f.display())))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(format!("[openai] TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(c.connect_timeout_ms)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Upstream {
            client,
            base,
            key,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    /// The upstream URI for a client path under `/v1` (and its query).
    fn uri(&self, path_and_query: &str) -> Result<Uri, OaiError> {
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        let s = format!(
            "{}://{}{}{}",
            if self.base.https { "https" } else { "http" },
            self.base.authority,
            self.base.prefix,
            rest
        );
        s.parse()
            .map_err(|_| OaiError::invalid("invalid_path", "the request path cannot be passed upstream"))
    }

    /// Sends a request; waits for the answer's head (at most the timeout). 502 if the
    /// upstream cannot be reached.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, OaiError> {
        let uri = self.uri(path_and_query)?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| OaiError::upstream("upstream_request", format!("cannot build the upstream request: {e}")))?;
        let h = req.headers_mut();
        for name in FORWARD_REQUEST {
            for v in client_headers.get_all(name) {
                h.append(name, v.clone());
            }
        }
        for (name, v) in client_headers {
            if name.as_str().starts_with("x-stainless-") {
                h.append(name.clone(), v.clone());
            }
        }
        // The body is parsed: ask for it unencoded.
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Some(Secret(k)) = &self.key {
            h.insert(header::AUTHORIZATION, k.clone());
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(OaiError::upstream(
                "upstream_unreachable",
                format!(
                    "the upstream {} cannot be reached: {}",
                    self.base.authority,
                    describe(&e)
                ),
            )),
            Err(_) => Err(OaiError::upstream(
                "upstream_timeout",
                format!("the upstream did not answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut s = e.to_string();
    let mut src = core::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
