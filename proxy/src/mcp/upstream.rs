//! The side facing the upstream server: a child on stdio, a Streamable HTTP endpoint,
//! or an HTTP+SSE (2024-11-05) server. Each runs as one task per conversation, taking
//! the bridge's messages from a channel (the sentinel `null` closes it cleanly) and
//! handing what the server sends to [`Bridge::from_upstream_bytes`].

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::bridge::Bridge;
use super::protocol::{code, Message, Rev, META_PROTOCOL_VERSION};
use super::sse;
use crate::log::{log_info, log_warn};

/// The TLS configuration of an HTTP upstream, made once when the server starts.
#[derive(Clone, Debug)]
pub struct UpstreamTls(Arc<rustls::ClientConfig>);

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for UpstreamTls {}

/// Where the upstream server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A stdio server: program, arguments, environment.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The MCP endpoint.
        url: String,
        /// Extra request headers.
        headers: BTreeMap<String, String>,
        /// TLS for `https://`.
        tls: UpstreamTls,
    },
    /// An HTTP+SSE server (2024-11-05).
    Sse {
        /// The SSE URL.
        url: String,
        /// Extra request headers.
        headers: BTreeMap<String, String>,
        /// TLS for `https://`.
        tls: UpstreamTls,
    },
}

impl UpstreamSpec {
    /// The spec of a configured server; fails if its `ca_file` cannot be read.
    pub fn from_section(s: &super::config::UpstreamSection) -> Result<UpstreamSpec, String> {
        let tls = || {
            crate::tls::upstream_client_config(s.ca_file.as_deref())
                .map(|c| UpstreamTls(Arc::new(c)))
                .map_err(|e| format!("[[mcp.server]] {:?}: {e}", s.name))
        };
        Ok(if let Some(argv) = &s.command {
            UpstreamSpec::Command {
                argv: argv.clone(),
                env: s.env.clone(),
            }
        } else if let Some(u) = &s.url {
            UpstreamSpec::Http {
                url: u.clone(),
                headers: s.headers.clone(),
                tls: tls()?,
            }
        } else {
            UpstreamSpec::Sse {
                url: s.sse_url.clone().unwrap_or_default(),
                headers: s.headers.clone(),
                tls: tls()?,
            }
        })
    }
}

/// Starts the upstream side of `bridge`.
pub fn start_upstream(
    spec: &UpstreamSpec,
    bridge: Arc<Bridge>,
    rx: mpsc::UnboundedReceiver<Value>,
    max: usize,
) -> Result<JoinHandle<()>, String> {
    match spec {
        UpstreamSpec::Command { argv, env } => {
            let child = super::stdio::spawn_child(argv, env)?;
            Ok(tokio::spawn(super::stdio::run_child(child, bridge, rx, max)))
        }
        UpstreamSpec::Http { url, headers, tls } => {
            let up = HttpUp::new(url, headers, tls, bridge, max)?;
            Ok(tokio::spawn(up.run(rx)))
        }
        UpstreamSpec::Sse { url, headers, tls } => {
            let up = HttpUp::new(url, headers, tls, bridge, max)?;
            Ok(tokio::spawn(up.run_sse(rx)))
        }
    }
}

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Idle connections kept per plain-HTTP upstream.
const MAX_IDLE: usize = 8;

/// The POSTs to a plain-HTTP upstream (the usual local server) go over HTTP/1.1
/// connections of the conversation's own, kept open between messages: leaner than
/// hyper-util's pool on the per-message path (no pool key hashed, no task spawned
/// per request to hand the connection back: it comes back once its answer is read).
/// TLS upstreams, and the long-lived GET streams, use the pooled client.
#[derive(Debug)]
struct Direct {
    /// `host:port`, to connect to.
    addr: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target (origin form).
    target: Uri,
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
}

impl Direct {
    /// `None` unless `url` is plain `http://` (without user information).
    fn new(url: &Uri) -> Option<Direct> {
        if url.scheme_str() != Some("http") {
            return None;
        }
        let auth = url.authority()?;
        if auth.as_str().contains('@') {
            return None;
        }
        let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        let host = HeaderValue::from_str(auth.as_str()).ok()?;
        let target: Uri = url.path_and_query().map_or("/", |p| p.as_str()).parse().ok()?;
        Some(Direct {
            addr,
            host,
            target,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<http1::SendRequest<Full<Bytes>>>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection that is still open and ready, or a new one.
    async fn checkout(&self) -> Result<http1::SendRequest<Full<Bytes>>, String> {
        loop {
            let Some(mut c) = self.idle().pop() else { break };
            if !c.is_closed() && c.ready().await.is_ok() {
                return Ok(c);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, String> {
        let tcp = match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&self.addr)).await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(format!("connecting to {}: {e}", self.addr)),
            Err(_) => return Err(format!("connecting to {}: no answer in 10 s", self.addr)),
        };
        let _ = tcp.set_nodelay(true);
        let (c, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(c)
    }

    /// Sends `req`; on a kept connection the server had closed before the request
    /// went out, once more on a new connection.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(hyper::Response<Incoming>, http1::SendRequest<Full<Bytes>>), String> {
        let mut c = self.checkout().await?;
        match c.try_send_request(req).await {
            Ok(r) => Ok((r, c)),
            Err(mut e) => {
                let Some(req) = e.take_message() else {
                    return Err(format!("POST failed: {}", crate::error::describe(e.error())));
                };
                let mut c = self.connect().await?;
                let r = c
                    .send_request(req)
                    .await
                    .map_err(|e| format!("POST failed: {}", crate::error::describe(&e)))?;
                Ok((r, c))
            }
        }
    }

    /// A connection whose answer has been read in full, for the next message.
    fn give_back(&self, c: http1::SendRequest<Full<Bytes>>) {
        if c.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }
}

#[derive(Debug)]
struct HttpUp {
    client: HttpClient,
    /// Plain-HTTP upstreams: the POSTs' own connections.
    direct: Option<Direct>,
    url: Uri,
    headers: HeaderMap,
    session: Mutex<Option<HeaderValue>>,
    bridge: Arc<Bridge>,
    max: usize,
}

impl HttpUp {
    fn new(
        url: &str,
        extra: &BTreeMap<String, String>,
        tls: &UpstreamTls,
        bridge: Arc<Bridge>,
        max: usize,
    ) -> Result<Arc<HttpUp>, String> {
        let url: Uri = url.parse().map_err(|e| format!("upstream URL {url:?}: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(format!("upstream URL {url}: http:// or https:// only"));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("upstream header {k:?}: {e}"))?;
            let mut value = HeaderValue::from_str(v).map_err(|e| format!("upstream header {k:?}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        // TLS as configured (crate::tls::upstream_client_config), made once at start.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.0).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Arc::new(HttpUp {
            client,
            direct: Direct::new(&url),
            url,
            headers,
            session: Mutex::new(None),
            bridge,
            max,
        }))
    }

    fn session(&self) -> Option<HeaderValue> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn request(&self, method: Method, uri: &Uri, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        // Method and URI are valid already: no builder (it re-checks them per request).
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        if !self.headers.is_empty() {
            h.extend(self.headers.clone());
        }
        if let Some(s) = self.session() {
            h.insert(MCP_SESSION_ID, s);
        }
        Ok(req)
    }

    /// Posts one message to the Streamable HTTP endpoint and hands what comes back to
    /// the bridge. A request that gets no answer gets an error from here.
    async fn post(self: Arc<Self>, v: Value) {
        // `v` is a message the bridge built (valid JSON-RPC): read, not parsed again.
        let method = v.get("method").and_then(Value::as_str);
        let params = v.get("params").and_then(Value::as_object);
        let up_id = method.and(v.get("id")).and_then(Value::as_u64);
        let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        let target = self.direct.as_ref().map_or(&self.url, |d| &d.target);
        let mut req = match self.request(Method::POST, target, body) {
            Ok(r) => r,
            Err(e) => return self.fail(up_id, &e).await,
        };
        let h = req.headers_mut();
        if let Some(d) = &self.direct {
            h.entry(header::HOST).or_insert_with(|| d.host.clone());
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let declared = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);
        let version = match declared {
            Some(d) => HeaderValue::from_str(d).ok(),
            None => self
                .bridge
                .revision()
                .filter(|r| *r >= Rev::V2025_06_18)
                .map(|r| HeaderValue::from_static(r.name())),
        };
        if let Some(v) = version {
            h.insert(MCP_PROTOCOL_VERSION, v);
        }
        if let (Some(_), Some(method), Some(_)) = (declared, method, up_id) {
            if let Ok(m) = HeaderValue::from_str(method) {
                h.insert("mcp-method", m);
            }
            let name = params
                .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                .and_then(Value::as_str);
            if let Some(n) = name.and_then(|n| HeaderValue::from_str(&super::params::encode(n)).ok()) {
                h.insert("mcp-name", n);
            }
            if method == "tools/call" {
                let (tool, args) = (
                    params.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or(""),
                    params.and_then(|p| p.get("arguments")).unwrap_or(&Value::Null),
                );
                for (k, v) in self.bridge.param_headers(tool, args) {
                    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                        h.insert(k, v);
                    }
                }
            }
        }
        let is_init = up_id.is_some() && method == Some("initialize");
        let sent = async {
            match &self.direct {
                Some(d) => d.send(req).await.map(|(r, c)| (r, Some(c))),
                None => self
                    .client
                    .request(req)
                    .await
                    .map(|r| (r, None))
                    .map_err(|e| format!("POST failed: {}", crate::error::describe(&e))),
            }
        };
        // The connection of a plain-HTTP upstream, handed back once the answer is read.
        let (resp, conn) = match tokio::time::timeout(Duration::from_secs(30), sent).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(up_id, &e).await,
            Err(_) => return self.fail(up_id, "POST: no answer in 30 s").await,
        };
        let give_back = |c: Option<http1::SendRequest<Full<Bytes>>>| {
            if let (Some(d), Some(c)) = (&self.direct, c) {
                d.give_back(c);
            }
        };
        if is_init {
            if let Some(s) = resp.headers().get(MCP_SESSION_ID) {
                *self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(s.clone());
            }
        }
        let status = resp.status();
        if is_init && status.is_success() {
            // The session's standalone stream: server requests not tied to a call come there.
            let me = self.clone();
            tokio::spawn(async move {
                // After the client's notifications/initialized has gone out.
                tokio::time::sleep(Duration::from_millis(50)).await;
                me.listen().await
            });
        }
        if status == StatusCode::ACCEPTED {
            if read_body(resp.into_body(), self.max).await.is_ok() {
                give_back(conn);
            }
            return;
        }
        if status == StatusCode::NOT_FOUND && self.session().is_some() {
            self.fail(up_id, "the upstream session expired (404)").await;
            return;
        }
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("text/event-stream") {
            let (answered, complete) = self.clone().read_stream(resp.into_body(), up_id).await;
            if complete {
                give_back(conn);
            }
            if !answered && up_id.is_some() {
                self.fail(up_id, "the upstream's stream ended without an answer").await;
            }
            return;
        }
        let body = match read_body(resp.into_body(), self.max).await {
            Ok(b) => b,
            Err(e) => return self.fail(up_id, &e).await,
        };
        // Before the answer goes on: the connection is free for the next message.
        give_back(conn);
        if ctype.starts_with("application/json") && !body.is_empty() {
            self.bridge.from_upstream_bytes(&body, up_id).await;
        } else if up_id.is_some() {
            self.fail(up_id, &format!("the upstream answered HTTP {status}")).await;
        }
    }

    /// Reads an SSE stream into the bridge: whether it carried the answer to `up_id`,
    /// and whether it was read to its end.
    async fn read_stream(self: Arc<Self>, mut body: Incoming, up_id: Option<u64>) -> (bool, bool) {
        let mut parser = sse::Parser::new(self.max);
        let mut answered = false;
        loop {
            let Some(frame) = body.frame().await else {
                return (answered, true);
            };
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else { continue };
            let events = match parser.push(&data) {
                Ok(e) => e,
                Err(e) => {
                    log_warn!("MCP {}: upstream stream: {e}", self.bridge.server);
                    break;
                }
            };
            for e in events {
                if e.data.is_empty() || !(e.event.is_empty() || e.event == "message") {
                    continue;
                }
                if let (Some(want), Ok(v)) = (up_id, serde_json::from_str::<Value>(&e.data)) {
                    let is_answer = v.get("id").and_then(Value::as_u64) == Some(want)
                        && (v.get("result").is_some() || v.get("error").is_some());
                    answered |= is_answer;
                }
                self.bridge.from_upstream_bytes(e.data.as_bytes(), up_id).await;
            }
        }
        (answered, false)
    }

    /// The standalone GET stream of a session (405: the server has none).
    async fn listen(self: Arc<Self>) {
        let Ok(mut req) = self.request(Method::GET, &self.url, Bytes::new()) else {
            return;
        };
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(v) = self
            .bridge
            .revision()
            .filter(|r| *r >= Rev::V2025_06_18)
            .and_then(|r| HeaderValue::from_str(r.name()).ok())
        {
            req.headers_mut().insert(MCP_PROTOCOL_VERSION, v);
        }
        if let Ok(resp) = self.client.request(req).await {
            if resp.status().is_success() {
                self.clone().read_stream(resp.into_body(), None).await;
            }
        }
    }

    async fn fail(&self, up_id: Option<u64>, why: &str) {
        log_warn!("MCP {}: upstream: {why}", self.bridge.server);
        if let Some(id) = up_id {
            let m = Message::error(Value::from(id), code::UPSTREAM_UNAVAILABLE, why, None);
            self.bridge.from_upstream(m.to_value(), None).await;
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Value>) {
        while let Some(v) = rx.recv().await {
            if v.is_null() {
                break;
            }
            let is_request = v.get("id").is_some() && v.get("method").is_some();
            if is_request {
                tokio::spawn(self.clone().post(v));
            } else {
                // Notifications and responses in order.
                self.clone().post(v).await;
            }
        }
        if let Some(s) = self.session() {
            if let Ok(mut req) = self.request(Method::DELETE, &self.url, Bytes::new()) {
                req.headers_mut().insert(MCP_SESSION_ID, s);
                let _ = tokio::time::timeout(Duration::from_secs(5), self.client.request(req)).await;
            }
        }
        self.bridge.upstream_closed("shutdown").await;
    }

    /// HTTP+SSE (2024-11-05): GET the SSE URL, wait for the `endpoint` event, POST every
    /// message there; everything the server sends comes on the SSE stream.
    async fn run_sse(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Value>) {
        let mut req = match self.request(Method::GET, &self.url, Bytes::new()) {
            Ok(r) => r,
            Err(e) => return self.bridge.upstream_closed(&e).await,
        };
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        let resp = match tokio::time::timeout(Duration::from_secs(30), self.client.request(req)).await {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                return self
                    .bridge
                    .upstream_closed(&format!("GET SSE: HTTP {}", r.status()))
                    .await
            }
            Ok(Err(e)) => {
                return self
                    .bridge
                    .upstream_closed(&format!("GET SSE: {}", crate::error::describe(&e)))
                    .await
            }
            Err(_) => return self.bridge.upstream_closed("GET SSE: no answer in 30 s").await,
        };
        let (ep_tx, ep_rx) = tokio::sync::oneshot::channel::<Uri>();
        let me = self.clone();
        let mut reader = tokio::spawn(async move {
            let mut body = resp.into_body();
            let mut parser = sse::Parser::new(me.max);
            let mut ep_tx = Some(ep_tx);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                let Ok(data) = frame.into_data() else { continue };
                let Ok(events) = parser.push(&data) else { break };
                for e in events {
                    if e.event == "endpoint" {
                        match me.resolve(&e.data) {
                            Ok(u) => {
                                if let Some(tx) = ep_tx.take() {
                                    let _ = tx.send(u);
                                }
                            }
                            Err(err) => {
                                log_warn!("MCP {}: {err}", me.bridge.server);
                                return;
                            }
                        }
                    } else if e.event.is_empty() || e.event == "message" {
                        me.bridge.from_upstream_bytes(e.data.as_bytes(), None).await;
                    }
                }
            }
        });
        let endpoint = tokio::select! {
            e = ep_rx => e.ok(),
            _ = &mut reader => None,
        };
        let Some(endpoint) = endpoint else {
            reader.abort();
            return self.bridge.upstream_closed("the SSE stream gave no endpoint").await;
        };
        log_info!("MCP {}: HTTP+SSE endpoint {endpoint}", self.bridge.server);
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(v) if !v.is_null() => {
                        let up_id = v.get("method").and_then(|_| v.get("id")).and_then(Value::as_u64);
                        let body = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                        let sent = match self.request(Method::POST, &endpoint, body) {
                            Ok(mut r) => {
                                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                                self.client.request(r).await.map_err(|e| crate::error::describe(&e)).and_then(|resp| {
                                    if resp.status().is_success() { Ok(()) } else { Err(format!("HTTP {}", resp.status())) }
                                })
                            }
                            Err(e) => Err(e),
                        };
                        if let Err(e) = sent {
                            self.fail(up_id, &format!("POST to the SSE endpoint failed: {e}")).await;
                        }
                    }
                    _ => break,
                },
                _ = &mut reader => {
                    return self.bridge.upstream_closed("the SSE stream ended").await;
                }
            }
        }
        reader.abort();
        self.bridge.upstream_closed("shutdown").await;
    }

    /// The endpoint URI of an `endpoint` event: relative to the SSE URL, or absolute
    /// on the same origin.
    fn resolve(&self, data: &str) -> Result<Uri, String> {
        let data = data.trim();
        let scheme = self.url.scheme_str().unwrap_or("http");
        let u: Uri = if data.starts_with('/') {
            let auth = self.url.authority().map(|a| a.as_str()).unwrap_or("");
            format!("{scheme}://{auth}{data}")
                .parse()
                .map_err(|e| format!("endpoint {data:?}: {e}"))?
        } else {
            data.parse().map_err(|e| format!("endpoint {data:?}: {e}"))?
        };
        if u.scheme_str() != Some(scheme) || u.authority() != self.url.authority() {
            return Err(format!("endpoint {data:?} is not on the SSE URL's origin: refused"));
        }
        Ok(u)
    }
}

async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, String> {
    // Most answers come in one frame: kept as is, copied only when a second one comes.
    let mut first: Option<Bytes> = None;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the upstream's answer: {e}"))?;
        if let Ok(d) = frame.into_data() {
            let have = first.as_ref().map_or(0, Bytes::len).saturating_add(out.len());
            if have.saturating_add(d.len()) > max {
                return Err(format!("the upstream's answer exceeds {max} bytes"));
            }
            match first.take() {
                None if out.is_empty() => first = Some(d),
                f => {
                    if let Some(f) = f {
                        out.extend_from_slice(&f);
                    }
                    out.extend_from_slice(&d);
                }
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(out)))
}
