//! The upstream: an OpenAI-compatible server reached over HTTP/1.1, TLS by rustls.

use core::time::Duration;
use std::sync::Arc;

use axum::http::uri::{self, Authority, PathAndQuery, Scheme};
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

/// Whether a client request header is passed to the upstream: [`FORWARD_REQUEST`] and
/// the OpenAI SDKs' `x-stainless-*`.
fn forward_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    FORWARD_REQUEST.contains(&n) || n.starts_with("x-stainless-")
}

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
    scheme: Scheme,
    authority: Authority,
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
        let authority =
            Authority::try_from(base.authority.as_str()).map_err(|e| ConfigError(format!("[openai] upstream: {e}")))?;
        Ok(Upstream {
            client,
            scheme: if base.https { Scheme::HTTPS } else { Scheme::HTTP },
            authority,
            base,
            key,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    /// The upstream URI for a client path under `/v1` (and its query): the base URL's
    /// scheme and authority (parsed once), its prefix and the rest of the path.
    fn uri(&self, path_and_query: &str) -> Result<Uri, OaiError> {
        let invalid = || OaiError::invalid("invalid_path", "the request path cannot be passed upstream");
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        let mut path = String::with_capacity(self.base.prefix.len().saturating_add(rest.len()));
        path.push_str(&self.base.prefix);
        path.push_str(rest);
        if !path.starts_with('/') {
            return Err(invalid());
        }
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(path)).map_err(|_| invalid())?);
        Uri::from_parts(parts).map_err(|_| invalid())
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
        // One pass over the client's headers (each name's values stay in their order).
        for (name, v) in client_headers {
            if forward_request_header(name) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream::new(&OpenAiSection {
            upstream: base.into(),
            ..OpenAiSection::default()
        })
        .unwrap()
    }

    #[test]
    fn upstream_uris() {
        let u = upstream("https://api.example.com/v1");
        for (path, want) in [
            ("/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
            ("/v1/models?limit=2", "https://api.example.com/v1/models?limit=2"),
            ("/v1", "https://api.example.com/v1"),
        ] {
            assert_eq!(u.uri(path).unwrap().to_string(), want);
        }
        let u = upstream("http://127.0.0.1:8000");
        assert_eq!(
            u.uri("/v1/responses").unwrap().to_string(),
            "http://127.0.0.1:8000/responses"
        );
        // A path that would run into the authority, or that is not a path: refused.
        for bad in ["/v1x", "/v1/a b", "/v1/\u{7f}"] {
            assert!(u.uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_request_headers() {
        for (name, fwd) in [
            ("content-type", true),
            ("accept", true),
            ("openai-project", true),
            ("x-stainless-lang", true),
            ("authorization", false),
            ("cookie", false),
            ("x-helm-session", false),
            ("host", false),
            ("content-length", false),
        ] {
            assert_eq!(forward_request_header(&HeaderName::from_static(name)), fwd, "{name}");
        }
    }
}
