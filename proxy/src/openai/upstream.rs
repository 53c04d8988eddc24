//! The upstream: an OpenAI-compatible server reached over HTTP/1.1, TLS by rustls.

use core::time::Duration;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

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

/// A keep-alive HTTP/1.1 connection to the upstream.
type Conn = http1::SendRequest<Full<Bytes>>;

/// How long an unused connection is kept (as hyper-util's pool did).
const IDLE: Duration = Duration::from_secs(60);
/// At most this many connections are kept.
const MAX_POOLED: usize = 256;

/// The upstream's keep-alive connections. A connection is taken for a request and put
/// back as soon as the answer's head has come: until its body has been read it is not
/// ready, and is skipped. Closed connections, and those unused for [`IDLE`], are
/// dropped when the pool is looked at.
#[derive(Default)]
struct Pool(Mutex<Vec<(Conn, Instant)>>);

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Pool")
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Conn, Instant)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection ready for a request (the most recently put back first).
    fn take(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut g = self.lock();
        g.retain(|(c, at)| !c.is_closed() && now.saturating_duration_since(*at) < IDLE);
        let i = g.iter().rposition(|(c, _)| c.is_ready())?;
        Some(g.swap_remove(i).0)
    }

    fn put(&self, c: Conn) {
        if c.is_closed() {
            return;
        }
        let mut g = self.lock();
        if g.len() < MAX_POOLED {
            g.push((c, Instant::now()));
        }
    }
}

/// The upstream client.
#[derive(Debug)]
pub(crate) struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    pool: Pool,
    /// `scheme://authority/`: what the connector connects to.
    origin: Uri,
    /// The `Host` header of every request.
    host: HeaderValue,
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
        let tls = crate::tls::upstream_client_config(c.ca_file.as_deref())
            .map_err(|e| ConfigError(format!("[openai] {e}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(c.connect_timeout_ms)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let authority =
            Authority::try_from(base.authority.as_str()).map_err(|e| ConfigError(format!("[openai] upstream: {e}")))?;
        let scheme = if base.https { Scheme::HTTPS } else { Scheme::HTTP };
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ConfigError(format!("[openai] upstream: {e}")))?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| ConfigError(format!("[openai] upstream: {e}")))?;
        Ok(Upstream {
            connector,
            pool: Pool::default(),
            origin,
            host,
            base,
            key,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    /// The upstream path (and query) for a client path under `/v1`: the base URL's
    /// prefix and the rest of the path.
    fn target(&self, path_and_query: &str) -> Result<PathAndQuery, OaiError> {
        let invalid = || OaiError::invalid("invalid_path", "the request path cannot be passed upstream");
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        let mut path = String::with_capacity(self.base.prefix.len().saturating_add(rest.len()));
        path.push_str(&self.base.prefix);
        path.push_str(rest);
        if !path.starts_with('/') {
            return Err(invalid());
        }
        PathAndQuery::from_maybe_shared(Bytes::from(path)).map_err(|_| invalid())
    }

    /// The upstream URI for a client path under `/v1` (and its query): the base URL's
    /// scheme and authority (parsed once) and [`target`](Self::target).
    #[cfg(test)]
    fn uri(&self, path_and_query: &str) -> Result<Uri, OaiError> {
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        parts.path_and_query = Some(self.target(path_and_query)?);
        Uri::from_parts(parts)
            .map_err(|_| OaiError::invalid("invalid_path", "the request path cannot be passed upstream"))
    }

    fn unreachable(&self, why: &str) -> OaiError {
        OaiError::upstream(
            "upstream_unreachable",
            format!("the upstream {} cannot be reached: {why}", self.base.authority),
        )
    }

    /// A new connection (TCP, TLS for `https`), its driver spawned.
    async fn connect(&self) -> Result<Conn, OaiError> {
        let mut c = self.connector.clone();
        let io = async {
            core::future::poll_fn(|cx| Service::<Uri>::poll_ready(&mut c, cx)).await?;
            c.call(self.origin.clone()).await
        }
        .await
        .map_err(|e| self.unreachable(&crate::error::describe(&*e)))?;
        let (send, conn) = http1::handshake(io)
            .await
            .map_err(|e| self.unreachable(&crate::error::describe(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// Sends on a pooled connection, or a new one. A request that a pooled connection
    /// did not take (closed meanwhile: hyper hands the request back, unsent) goes on
    /// another; a request that may have been sent is never sent again.
    async fn round_trip(&self, mut req: Request<Full<Bytes>>) -> Result<Response<Incoming>, OaiError> {
        loop {
            let (mut conn, pooled) = match self.pool.take() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            match conn.try_send_request(req).await {
                Ok(r) => {
                    self.pool.put(conn);
                    return Ok(r);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if pooled => req = unsent,
                    _ => return Err(self.unreachable(&crate::error::describe(&e.into_error()))),
                },
            }
        }
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
        let target = self.target(path_and_query)?;
        let mut req = Request::builder()
            .method(method)
            .uri(Uri::from(target))
            .body(Full::new(body))
            .map_err(|e| OaiError::upstream("upstream_request", format!("cannot build the upstream request: {e}")))?;
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
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
        match tokio::time::timeout(self.timeout, self.round_trip(req)).await {
            Ok(r) => r,
            Err(_) => Err(OaiError::upstream(
                "upstream_timeout",
                format!("the upstream did not answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;

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

    /// A minimal HTTP/1.1 upstream on loopback: answers `ok` to every request, closing
    /// the connection after each answer if `close`; counts the connections it accepted.
    fn tiny_upstream(close: bool) -> (String, Arc<core::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let conns = Arc::new(core::sync::atomic::AtomicUsize::new(0));
        let n = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                n.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    loop {
                        let (mut len, mut host) = (0usize, false);
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                            host |= lower.starts_with("host: 127.0.0.1:");
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let answer = if host { "ok" } else { "no host" };
                        let _ = write!(w, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
                        if close {
                            let _ = w.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_reused_and_replaced() {
        use http_body_util::BodyExt as _;
        for close in [false, true] {
            let (addr, conns) = tiny_upstream(close);
            let u = Arc::new(upstream(&format!("http://{addr}/v1")));
            let get = |u: Arc<Upstream>| async move {
                let r = u
                    .send(
                        Method::POST,
                        "/v1/chat/completions",
                        &HeaderMap::new(),
                        Bytes::from_static(b"{}"),
                    )
                    .await
                    .unwrap();
                r.into_body().collect().await.unwrap().to_bytes()
            };
            for _ in 0..5 {
                assert_eq!(get(u.clone()).await, "ok");
                // Let the connection's driver see the end of the answer (or the close).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let n = conns.load(core::sync::atomic::Ordering::SeqCst);
            assert_eq!(n, if close { 5 } else { 1 }, "close {close}");
            // Concurrent requests: each its own connection while the others are busy.
            let all = futures_util::future::join_all((0..8).map(|_| get(u.clone()))).await;
            assert!(all.iter().all(|b| b == "ok"));
        }
        // Nothing listening: 502 upstream_unreachable.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let u = upstream(&format!("http://127.0.0.1:{port}"));
        let e = u
            .send(Method::POST, "/v1/responses", &HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("upstream_unreachable"));
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
