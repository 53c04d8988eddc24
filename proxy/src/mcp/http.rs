//! The client-facing HTTP transports, as an axum router mounted by `helm-proxy serve`
//! beside the kernel's API:
//!
//! - Streamable HTTP at `/mcp/{server}` (2025-03-26 and later): POST answered with JSON
//!   or an SSE stream; GET for the session's standalone stream; DELETE ends a session;
//!   `Mcp-Session-Id` minted at `initialize`; `MCP-Protocol-Version` checked; streams
//!   resumable with `Last-Event-ID`. Requests of revision 2026-07-28 (per-request
//!   `_meta`, no session) are served statelessly, their `MCP-Protocol-Version`,
//!   `Mcp-Method` and `Mcp-Name` headers checked against the body (`-32020`).
//! - HTTP+SSE (2024-11-05) at `/mcp/{server}/sse` (GET: the stream, whose first event
//!   is `endpoint`) and `/mcp/{server}/messages?sessionId=…` (POST).
//!
//! Every route checks `Origin` (loopback origins and `[mcp] allowed_origins` only; 403
//! otherwise) and authenticates the caller with an API token of scope `agent` (the
//! principal comes from the token). A session belongs to the principal that opened it.

use core::convert::Infallible;
use core::time::Duration;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::bridge::{id_key, json_text, Bridge, ClientSink, McpShared, ToClient};
use super::protocol::{code, parse_bytes, Incoming, Message, Rev, MODERN_VERSIONS};
use super::upstream::{start_upstream, UpstreamSpec};
use super::{random_id, sse};
use crate::api::AppState;
use crate::auth::{Authenticated, Scope, TokenTable};
use crate::log::{log_info, log_warn};

/// Events kept per stream for resumption.
const REPLAY_EVENTS: usize = 1024;
/// Messages kept for a standalone stream nobody listens to.
const BACKLOG: usize = 1024;
/// Finished streams kept per session for resumption.
const FINISHED: usize = 64;
/// SSE keep-alive comment interval.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The MCP HTTP endpoints' state.
#[derive(Debug)]
pub struct McpHttp {
    shared: Arc<McpShared>,
    tokens: Arc<TokenTable>,
    servers: HashMap<String, UpstreamSpec>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Stateless (2026-07-28) conversations, one per (server, principal).
    modern: Mutex<HashMap<(String, String), Arc<Session>>>,
}

/// The router's state.
#[derive(Clone, Debug)]
pub struct McpState(pub Arc<McpHttp>);

impl FromRef<McpState> for Arc<TokenTable> {
    fn from_ref(s: &McpState) -> Arc<TokenTable> {
        s.0.tokens.clone()
    }
}

#[derive(Debug)]
struct Stream {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    events: VecDeque<(u64, Bytes)>,
    next: u64,
    waiting: HashSet<String>,
    json: Option<(Vec<Value>, oneshot::Sender<Vec<Value>>)>,
    done: bool,
    /// Stateless requests travel under an id of the proxy's (clients of one principal
    /// share a conversation): (that id's key, the client's id).
    orig_id: Option<(String, Value)>,
}

#[derive(Debug, Default)]
struct Routes {
    next_stream: u64,
    streams: HashMap<u64, Stream>,
    by_request: HashMap<String, u64>,
    get_stream: Option<u64>,
    backlog: VecDeque<Value>,
    /// Finished streams, oldest first: kept for resumption, at most [`FINISHED`].
    finished: VecDeque<u64>,
}

impl Routes {
    /// Marks a stream finished; the oldest finished ones are forgotten.
    fn finish(&mut self, sid: u64) {
        if let Some(st) = self.streams.get_mut(&sid) {
            st.done = true;
            st.tx = None;
            if let Some((collected, tx)) = st.json.take() {
                let _ = tx.send(collected);
            }
        }
        self.finished.push_back(sid);
        while self.finished.len() > FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.streams.remove(&old);
            }
        }
    }
}

/// One client session (or the stateless conversation of a principal).
#[derive(Debug)]
struct Session {
    id: String,
    server: String,
    principal: String,
    bridge: Arc<Bridge>,
    up_tx: mpsc::UnboundedSender<Value>,
    routes: Mutex<Routes>,
    last_used: Mutex<Instant>,
    /// HTTP+SSE: everything goes to its one stream.
    sse_tx: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
}

impl Session {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    fn close(&self) {
        self.bridge.client_closed();
        let _ = self.up_tx.send(Value::Null);
        let mut r = self.routes();
        for s in r.streams.values_mut() {
            s.tx = None;
            s.done = true;
        }
        *self.sse_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Routes one message for the client to its stream.
    fn deliver(&self, m: ToClient) {
        self.touch();
        let sse_tx = self
            .sse_tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(tx) = sse_tx {
            let _ = tx.send(Bytes::from(sse::encode(None, Some("message"), &json_text(&m.msg))));
            return;
        }
        let mut r = self.routes();
        let is_response = m.msg.get("result").is_some() || m.msg.get("error").is_some();
        let sid = m.related.as_ref().and_then(|k| r.by_request.get(k).copied());
        let target = match sid {
            Some(s) if r.streams.get(&s).is_some_and(|st| !st.done) => Some(s),
            _ => r.get_stream.filter(|g| r.streams.get(g).is_some_and(|st| !st.done)),
        };
        let Some(sid) = target else {
            if r.backlog.len() >= BACKLOG {
                r.backlog.pop_front();
                log_warn!("MCP session {}: backlog full, oldest message dropped", self.id);
            }
            r.backlog.push_back(m.msg);
            return;
        };
        let key = m.related.clone();
        if let (true, Some(k)) = (is_response, &key) {
            r.by_request.remove(k);
        }
        let Some(st) = r.streams.get_mut(&sid) else { return };
        let mut m = m;
        if let (Some((k, orig)), Some(id)) = (&st.orig_id, m.msg.get("id")) {
            if is_response && id_key(id) == *k {
                if let Some(o) = m.msg.as_object_mut() {
                    o.insert("id".into(), orig.clone());
                }
            }
        }
        if let Some((collected, _)) = &mut st.json {
            if is_response {
                collected.push(m.msg);
            } else {
                // A JSON answer cannot carry notifications: they go to the standalone stream.
                drop(r);
                self.deliver_unrelated(m.msg);
                r = self.routes();
            }
        } else {
            let seq = st.next;
            st.next = st.next.saturating_add(1);
            let ev = Bytes::from(sse::encode(
                Some(&format!("{sid}-{seq}")),
                Some("message"),
                &json_text(&m.msg),
            ));
            if st.events.len() >= REPLAY_EVENTS {
                st.events.pop_front();
            }
            st.events.push_back((seq, ev.clone()));
            if let Some(tx) = &st.tx {
                if tx.send(ev).is_err() {
                    st.tx = None;
                }
            }
        }
        let Some(st) = r.streams.get_mut(&sid) else { return };
        if let (true, Some(k)) = (is_response, &key) {
            st.waiting.remove(k);
            if st.waiting.is_empty() && Some(sid) != r.get_stream {
                r.finish(sid);
            }
        }
    }

    fn deliver_unrelated(&self, msg: Value) {
        self.deliver(ToClient { msg, related: None });
    }
}

/// What to do with the body of a POST.
struct Posted {
    keys: Vec<String>,
    batch: bool,
}

fn posted(inc: &Incoming) -> Posted {
    let key = |m: &Message| match m {
        Message::Request { id, .. } => Some(id_key(id)),
        _ => None,
    };
    match inc {
        Incoming::One(m) => Posted {
            keys: key(m).into_iter().collect(),
            batch: false,
        },
        Incoming::Batch(items) => Posted {
            keys: items.iter().filter_map(|i| i.as_ref().ok().and_then(key)).collect(),
            batch: true,
        },
    }
}

/// A JSON-RPC error as an HTTP response.
fn rpc_error(status: StatusCode, id: Value, c: i64, message: &str, data: Option<Value>) -> Response {
    let body = Message::error(id, c, message, data).into_value();
    json_response(status, &body)
}

/// A JSON body as an HTTP response: the text written once, handed to hyper as is.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn sse_response(rx: mpsc::UnboundedReceiver<Bytes>, first: Vec<Bytes>, session: Option<&str>) -> Response {
    let stream = futures_util::stream::unfold((rx, VecDeque::from(first)), |(mut rx, mut first)| async move {
        if let Some(b) = first.pop_front() {
            return Some((Ok::<Bytes, Infallible>(b), (rx, first)));
        }
        match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Ok(Some(b)) => Some((Ok(b), (rx, first))),
            Ok(None) => None,
            Err(_) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), (rx, first))),
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert("mcp-session-id", s);
    }
    r
}

/// Whether an `Origin` may reach the MCP endpoints: none (not a browser), a loopback
/// origin, or one of `allowed`.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(o) = origin else { return true };
    if allowed.iter().any(|a| a == o) {
        return true;
    }
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
        .unwrap_or("");
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().map(|h| format!("[{h}]"))
    } else {
        rest.split(':').next().map(str::to_owned)
    };
    matches!(host.as_deref(), Some("localhost" | "127.0.0.1" | "[::1]")) && !rest.contains('/') && !rest.contains('@')
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes the `=?base64?…?=` sentinel form of a header value.
fn header_decoded(v: &str) -> Option<String> {
    match v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok()),
        None => Some(v.to_owned()),
    }
}

/// Checks the 2026-07-28 request headers against the body: `Err` is the `-32020`
/// answer.
fn check_modern_headers(h: &HeaderMap, m: &Message, declared: &str) -> Result<(), String> {
    let Message::Request { method, params, .. } = m else {
        return Err("a modern POST carries one request".into());
    };
    match header_str(h, "mcp-protocol-version") {
        Some(v) if v == declared => {}
        Some(v) => {
            return Err(format!(
                "Header mismatch: MCP-Protocol-Version {v:?} does not match the body's {declared:?}"
            ))
        }
        None => return Err("Header mismatch: MCP-Protocol-Version is missing".into()),
    }
    match header_str(h, "mcp-method") {
        Some(v) if v == method => {}
        Some(v) => {
            return Err(format!(
                "Header mismatch: Mcp-Method {v:?} does not match the body's {method:?}"
            ))
        }
        None => return Err("Header mismatch: Mcp-Method is missing".into()),
    }
    let body_name = params
        .as_ref()
        .and_then(|p| match method.as_str() {
            "tools/call" | "prompts/get" => p.get("name"),
            "resources/read" => p.get("uri"),
            _ => None,
        })
        .and_then(Value::as_str);
    let header_name = header_str(h, "mcp-name");
    match (body_name, header_name) {
        (Some(b), Some(hv)) => {
            if header_decoded(hv).as_deref() != Some(b) {
                return Err(format!("Header mismatch: Mcp-Name does not match the body's {b:?}"));
            }
        }
        (Some(_), None) => return Err("Header mismatch: Mcp-Name is missing".into()),
        (None, Some(_)) | (None, None) => {}
    }
    Ok(())
}

/// The routes (mount with [`crate::api::router_with`]). Spawns the idle-session
/// janitor: call inside the runtime.
pub fn routes(mcp: Arc<McpHttp>) -> Router<AppState> {
    let weak = Arc::downgrade(&mcp);
    tokio::spawn(janitor(weak));
    Router::new()
        .route("/mcp/{server}", post(post_mcp).get(get_mcp).delete(delete_mcp))
        .route("/mcp/{server}/sse", get(get_sse))
        .route("/mcp/{server}/messages", post(post_messages))
        .route("/v1/mcp/pins", get(list_pins).post(approve_pin))
        .with_state(McpState(mcp))
}

async fn janitor(mcp: Weak<McpHttp>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Some(m) = mcp.upgrade() else { return };
        let idle = Duration::from_millis(m.shared.settings.session_idle_ms);
        let expired: Vec<Arc<Session>> = {
            let mut s = m.lock_sessions();
            let ids: Vec<String> = s
                .iter()
                .filter(|(_, v)| v.idle() > idle || v.bridge.is_closed())
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| s.remove(k)).collect()
        };
        for s in expired {
            log_info!("MCP session {} ({}) expired", s.id, s.server);
            s.close();
        }
    }
}

#[derive(Debug, Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: String,
}

impl McpHttp {
    /// The endpoints' state for the configured upstreams; fails if one's `ca_file`
    /// cannot be read.
    pub fn new(shared: Arc<McpShared>, tokens: Arc<TokenTable>) -> Result<Arc<McpHttp>, String> {
        let servers = shared
            .settings
            .servers
            .iter()
            .map(|s| Ok((s.name.clone(), UpstreamSpec::from_section(s)?)))
            .collect::<Result<_, String>>()?;
        Ok(Arc::new(McpHttp {
            shared,
            tokens,
            servers,
            sessions: Mutex::new(HashMap::new()),
            modern: Mutex::new(HashMap::new()),
        }))
    }

    fn lock_sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes every session (upstreams shut down cleanly); for the server's shutdown.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Session>> = self.lock_sessions().drain().map(|(_, s)| s).collect();
        let modern: Vec<Arc<Session>> = self
            .modern
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, s)| s)
            .collect();
        let n = all.len().saturating_add(modern.len());
        for s in all.iter().chain(modern.iter()) {
            s.close();
        }
        // Give the upstreams a moment to exit (stdin closed, then SIGTERM).
        let deadline = Instant::now()
            .checked_add(super::stdio::CHILD_GRACE.saturating_mul(2))
            .unwrap_or_else(Instant::now);
        while Instant::now() < deadline && all.iter().chain(modern.iter()).any(|s| !s.bridge.is_closed()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for s in all.iter().chain(modern.iter()) {
            s.bridge.drain(Duration::from_secs(10)).await;
        }
        if n > 0 {
            log_info!("MCP: {n} session(s) closed");
        }
    }

    #[allow(
        clippy::result_large_err,
        reason = "the error is the HTTP answer itself, built once per refused request"
    )]
    fn check(&self, headers: &HeaderMap, auth: &Authenticated, server: &str) -> Result<(), Response> {
        if !origin_allowed(header_str(headers, "origin"), &self.shared.settings.allowed_origins) {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                Value::Null,
                code::INVALID_REQUEST,
                "Origin not allowed",
                None,
            ));
        }
        auth.require(Scope::Agent).map_err(IntoResponse::into_response)?;
        if !self.servers.contains_key(server) {
            return Err(rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                code::INVALID_REQUEST,
                &format!("no MCP server {server:?} is configured"),
                None,
            ));
        }
        Ok(())
    }

    /// A new conversation with its upstream and its dispatcher.
    fn open(
        &self,
        server: &str,
        principal: &str,
        sse_tx: Option<mpsc::UnboundedSender<Bytes>>,
    ) -> Result<Arc<Session>, String> {
        let spec = self.servers.get(server).ok_or("no such server")?;
        let id = random_id()?;
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let slot: Arc<std::sync::OnceLock<Weak<Session>>> = Arc::new(std::sync::OnceLock::new());
        let target = slot.clone();
        let sink = ClientSink::Direct(Box::new(move |m| {
            if let Some(s) = target.get().and_then(Weak::upgrade) {
                s.deliver(m);
            }
        }));
        let bridge = Bridge::new(
            self.shared.clone(),
            server,
            principal,
            &format!("mcp-http-{id}"),
            up_tx.clone(),
            sink,
        );
        let max = usize::try_from(self.shared.settings.max_message_bytes).unwrap_or(usize::MAX);
        start_upstream(spec, bridge.clone(), up_rx, max)?;
        let session = Arc::new(Session {
            id,
            server: server.to_owned(),
            principal: principal.to_owned(),
            bridge,
            up_tx,
            routes: Mutex::new(Routes::default()),
            last_used: Mutex::new(Instant::now()),
            sse_tx: Mutex::new(sse_tx),
        });
        let _ = slot.set(Arc::downgrade(&session));
        Ok(session)
    }

    #[allow(
        clippy::result_large_err,
        reason = "the error is the HTTP answer itself, built once per refused request"
    )]
    fn session(&self, headers: &HeaderMap, principal: &str, server: &str) -> Result<Arc<Session>, Response> {
        let Some(id) = header_str(headers, "mcp-session-id") else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required (send initialize first)",
                None,
            ));
        };
        let s = self.lock_sessions().get(id).cloned();
        match s {
            Some(s) if s.principal == principal && s.server == server && !s.bridge.is_closed() => {
                s.touch();
                Ok(s)
            }
            _ => Err(rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                code::INVALID_REQUEST,
                "Session not found",
                None,
            )),
        }
    }
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what) || v.contains("*/*"))
}

async fn post_mcp(
    State(McpState(mcp)): State<McpState>,
    Path(server): Path<String>,
    auth: Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = mcp.check(&headers, &auth, &server) {
        return r;
    }
    let Ok(body) = body else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            code::INVALID_REQUEST,
            "body too large",
            None,
        );
    };
    let max = usize::try_from(mcp.shared.settings.max_message_bytes).unwrap_or(usize::MAX);
    let inc = match parse_bytes(&body, max) {
        Ok(i) => i,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                e.id.unwrap_or(Value::Null),
                e.code,
                &e.message,
                None,
            );
        }
    };
    // 2026-07-28: stateless, headers checked against the body.
    let declared = match &inc {
        Incoming::One(m) => m.declared_version().map(str::to_owned),
        Incoming::Batch(_) => None,
    };
    if let (Some(v), Incoming::One(m)) = (&declared, &inc) {
        let id = match m {
            Message::Request { id, .. } => id.clone(),
            _ => Value::Null,
        };
        if !Rev::parse(v).is_some_and(Rev::is_modern) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                code::UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                Some(json!({"supported": MODERN_VERSIONS, "requested": v})),
            );
        }
        if let Err(e) = check_modern_headers(&headers, m, v) {
            return rpc_error(StatusCode::BAD_REQUEST, id, code::HEADER_MISMATCH, &e, None);
        }
        let key = (server.clone(), auth.principal.clone());
        let existing = mcp
            .modern
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|s| !s.bridge.is_closed())
            .cloned();
        let session = match existing {
            Some(s) => s,
            None => match mcp.open(&server, &auth.principal, None) {
                Ok(s) => {
                    mcp.modern
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(key, s.clone());
                    s
                }
                Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, id, code::UPSTREAM_UNAVAILABLE, &e, None),
            },
        };
        return exchange_as(&session, inc, &headers, false, true).await;
    }
    let is_init = matches!(&inc, Incoming::One(Message::Request { method, .. }) if method == "initialize");
    if is_init {
        if mcp.lock_sessions().len() >= mcp.shared.settings.max_sessions {
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                Value::Null,
                code::INTERNAL_ERROR,
                "too many MCP sessions",
                None,
            );
        }
        let session = match mcp.open(&server, &auth.principal, None) {
            Ok(s) => s,
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    Value::Null,
                    code::UPSTREAM_UNAVAILABLE,
                    &e,
                    None,
                );
            }
        };
        mcp.lock_sessions().insert(session.id.clone(), session.clone());
        log_info!(
            "MCP session {} opened: server {server}, principal {:?}",
            session.id,
            auth.principal
        );
        return exchange(&session, inc, &headers, true).await;
    }
    let session = match mcp.session(&headers, &auth.principal, &server) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let (Some(h), Some(rev)) = (header_str(&headers, "mcp-protocol-version"), session.bridge.revision()) {
        if h != rev.name() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                &format!(
                    "Bad Request: MCP-Protocol-Version {h:?} is not the session's {}",
                    rev.name()
                ),
                None,
            );
        }
    }
    exchange(&session, inc, &headers, false).await
}

/// Hands a POST body to the session's bridge and answers: 202 for notifications and
/// responses, else an SSE stream (or JSON, for clients that take only JSON) carrying
/// the answers to its requests.
async fn exchange(session: &Arc<Session>, inc: Incoming, headers: &HeaderMap, with_id: bool) -> Response {
    exchange_as(session, inc, headers, with_id, false).await
}

/// The `Mcp-Param-*` headers of a request: (lowercase name, value).
fn mcp_params(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("mcp-param-"))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

async fn exchange_as(
    session: &Arc<Session>,
    mut inc: Incoming,
    headers: &HeaderMap,
    with_id: bool,
    stateless: bool,
) -> Response {
    let mut orig_id = None;
    if stateless {
        if let Incoming::One(Message::Request { id, method, .. }) = &mut inc {
            let n = {
                let mut r = session.routes();
                r.next_stream = r.next_stream.saturating_add(1);
                r.next_stream
            };
            let ours = Value::String(format!("helm-{n}"));
            // 2026-07-28: the call's Mcp-Param-* headers are checked against its arguments.
            if method == "tools/call" {
                session.bridge.expect_params(&id_key(&ours), mcp_params(headers));
            }
            orig_id = Some((id_key(&ours), core::mem::replace(id, ours)));
        }
    }
    let p = posted(&inc);
    if p.keys.is_empty() {
        session.bridge.from_client(inc);
        let mut r = StatusCode::ACCEPTED.into_response();
        if with_id {
            if let Ok(v) = HeaderValue::from_str(&session.id) {
                r.headers_mut().insert("mcp-session-id", v);
            }
        }
        return r;
    }
    let want_sse = accepts(headers, "text/event-stream");
    // A JSON answer needs no stream: only the oneshot that hands it over.
    let (tx, rx) = if want_sse {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (json_tx, json_rx) = oneshot::channel();
    {
        let mut r = session.routes();
        r.next_stream = r.next_stream.saturating_add(1);
        let sid = r.next_stream;
        for k in &p.keys {
            r.by_request.insert(k.clone(), sid);
        }
        r.streams.insert(
            sid,
            Stream {
                tx,
                events: VecDeque::new(),
                next: 0,
                waiting: p.keys.iter().cloned().collect(),
                json: (!want_sse).then(|| (Vec::new(), json_tx)),
                done: false,
                orig_id,
            },
        );
    }
    session.bridge.from_client(inc);
    let id = with_id.then_some(session.id.as_str());
    if let Some(rx) = rx {
        return sse_response(rx, Vec::new(), id);
    }
    let Ok(mut answers) = json_rx.await else {
        return rpc_error(
            StatusCode::BAD_GATEWAY,
            Value::Null,
            code::UPSTREAM_UNAVAILABLE,
            "no answer",
            None,
        );
    };
    let body = if p.batch {
        Value::Array(answers)
    } else {
        answers.pop().unwrap_or(Value::Null)
    };
    let mut r = json_response(StatusCode::OK, &body);
    if let Some(v) = id.and_then(|i| HeaderValue::from_str(i).ok()) {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

async fn get_mcp(
    State(McpState(mcp)): State<McpState>,
    Path(server): Path<String>,
    auth: Authenticated,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = mcp.check(&headers, &auth, &server) {
        return r;
    }
    if !accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            code::INVALID_REQUEST,
            "Not Acceptable: the client must accept text/event-stream",
            None,
        );
    }
    let session = match mcp.session(&headers, &auth.principal, &server) {
        Ok(s) => s,
        Err(_) if header_str(&headers, "mcp-session-id").is_none() => {
            return rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                Value::Null,
                code::INVALID_REQUEST,
                "Method Not Allowed: no session",
                None,
            );
        }
        Err(r) => return r,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut r = session.routes();
    // Resumption: replay a stream after the last event the client saw.
    if let Some(last) = header_str(&headers, "last-event-id") {
        let parsed = last
            .split_once('-')
            .and_then(|(s, n)| Some((s.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        let Some((sid, seq)) = parsed else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                code::INVALID_REQUEST,
                "bad Last-Event-ID",
                None,
            );
        };
        let Some(st) = r.streams.get_mut(&sid) else {
            return rpc_error(
                StatusCode::NOT_FOUND,
                Value::Null,
                code::INVALID_REQUEST,
                "unknown stream",
                None,
            );
        };
        let replay: Vec<Bytes> = st
            .events
            .iter()
            .filter(|(n, _)| *n > seq)
            .map(|(_, b)| b.clone())
            .collect();
        if st.done {
            drop(tx);
        } else {
            st.tx = Some(tx);
        }
        drop(r);
        return sse_response(rx, replay, None);
    }
    // The standalone stream (one at a time: a new one replaces the old).
    if let Some(old) = r.get_stream.take() {
        r.finish(old);
    }
    r.next_stream = r.next_stream.saturating_add(1);
    let sid = r.next_stream;
    r.streams.insert(
        sid,
        Stream {
            tx: Some(tx),
            events: VecDeque::new(),
            next: 0,
            waiting: HashSet::new(),
            json: None,
            done: false,
            orig_id: None,
        },
    );
    r.get_stream = Some(sid);
    let backlog: Vec<Value> = r.backlog.drain(..).collect();
    drop(r);
    for m in backlog {
        session.deliver_unrelated(m);
    }
    sse_response(rx, Vec::new(), None)
}

async fn delete_mcp(
    State(McpState(mcp)): State<McpState>,
    Path(server): Path<String>,
    auth: Authenticated,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = mcp.check(&headers, &auth, &server) {
        return r;
    }
    let session = match mcp.session(&headers, &auth.principal, &server) {
        Ok(s) => s,
        Err(r) => return r,
    };
    mcp.lock_sessions().remove(&session.id);
    session.close();
    log_info!("MCP session {} deleted by the client", session.id);
    StatusCode::NO_CONTENT.into_response()
}

/// HTTP+SSE: the stream of a new session; its first event names the POST endpoint.
async fn get_sse(
    State(McpState(mcp)): State<McpState>,
    Path(server): Path<String>,
    auth: Authenticated,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = mcp.check(&headers, &auth, &server) {
        return r;
    }
    if mcp.lock_sessions().len() >= mcp.shared.settings.max_sessions {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Value::Null,
            code::INTERNAL_ERROR,
            "too many MCP sessions",
            None,
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let session = match mcp.open(&server, &auth.principal, Some(tx.clone())) {
        Ok(s) => s,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                Value::Null,
                code::UPSTREAM_UNAVAILABLE,
                &e,
                None,
            )
        }
    };
    mcp.lock_sessions().insert(session.id.clone(), session.clone());
    log_info!(
        "MCP HTTP+SSE session {} opened: server {server}, principal {:?}",
        session.id,
        auth.principal
    );
    let endpoint = format!("/mcp/{server}/messages?sessionId={}", session.id);
    let first = vec![Bytes::from(sse::encode(None, Some("endpoint"), &endpoint))];
    // The session ends with its stream: a watcher closes it when the client goes.
    let weak = Arc::downgrade(&mcp);
    let sid = session.id.clone();
    tokio::spawn(async move {
        tx.closed().await;
        if let Some(m) = weak.upgrade() {
            if let Some(s) = m.lock_sessions().remove(&sid) {
                log_info!("MCP HTTP+SSE session {sid} closed by the client");
                s.close();
            }
        }
    });
    sse_response(rx, first, None)
}

/// HTTP+SSE: a message of a session; answers come on its stream.
async fn post_messages(
    State(McpState(mcp)): State<McpState>,
    Path(server): Path<String>,
    auth: Authenticated,
    headers: HeaderMap,
    q: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = mcp.check(&headers, &auth, &server) {
        return r;
    }
    let Ok(Query(q)) = q else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            code::INVALID_REQUEST,
            "sessionId is required",
            None,
        );
    };
    let session = mcp.lock_sessions().get(&q.session_id).cloned();
    let Some(session) = session.filter(|s| s.principal == auth.principal && s.server == server) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            Value::Null,
            code::INVALID_REQUEST,
            "Session not found",
            None,
        );
    };
    let Ok(body) = body else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            code::INVALID_REQUEST,
            "body too large",
            None,
        );
    };
    let max = usize::try_from(mcp.shared.settings.max_message_bytes).unwrap_or(usize::MAX);
    match parse_bytes(&body, max) {
        Ok(inc) => {
            session.touch();
            session.bridge.from_client(inc);
            (StatusCode::ACCEPTED, "Accepted").into_response()
        }
        Err(e) => rpc_error(
            StatusCode::BAD_REQUEST,
            e.id.unwrap_or(Value::Null),
            e.code,
            &e.message,
            None,
        ),
    }
}

/// `POST /v1/mcp/pins`: an approver approves a tool definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    server: String,
    tool: String,
    sha256: String,
}

/// `GET /v1/mcp/pins` (approver or auditor): every pinned definition.
async fn list_pins(State(McpState(mcp)): State<McpState>, auth: Authenticated) -> Response {
    if auth.require(Scope::Approver).is_err() {
        if let Err(e) = auth.require(Scope::Auditor) {
            return e.into_response();
        }
    }
    let pins: Vec<Value> = mcp
        .shared
        .pins
        .all()
        .into_iter()
        .map(|(s, t, h)| json!({"server": s, "tool": t, "sha256": hex::encode(h)}))
        .collect();
    crate::api::json(StatusCode::OK, &json!({ "pins": pins }))
}

/// `POST /v1/mcp/pins` (approver): approves a definition (typically one a server
/// changed to); recorded as a `tool-pin` ATTESTATION, in force at once.
async fn approve_pin(
    State(McpState(mcp)): State<McpState>,
    auth: Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = auth.require(Scope::Approver) {
        return e.into_response();
    }
    let Ok(body) = body else {
        return crate::error::ApiError::invalid("unreadable body").into_response();
    };
    let req: PinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return crate::error::ApiError::from_json(&e).into_response(),
    };
    let Ok(hash) = helm_kernel::keyfile::hex32(&req.sha256) else {
        return crate::error::ApiError::invalid("sha256: 64 lowercase hex digits").into_response();
    };
    if !super::config::valid_server_name(&req.server) || req.tool.is_empty() || req.tool.len() > 256 {
        return crate::error::ApiError::invalid("server or tool name out of bounds").into_response();
    }
    let shared = mcp.shared.clone();
    let (server, tool) = (req.server.clone(), req.tool.clone());
    let done = tokio::task::spawn_blocking(move || shared.pins.approve(&server, &tool, hash, None)).await;
    match done {
        Ok(Ok(record)) => {
            log_info!(
                "MCP pin {}/{} sha256:{} approved by {:?}",
                req.server,
                req.tool,
                req.sha256,
                auth.principal
            );
            crate::api::json(
                StatusCode::OK,
                &json!({"server": req.server, "tool": req.tool, "sha256": req.sha256, "record": record}),
            )
        }
        Ok(Err(e)) => crate::error::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "KERNEL_ERROR", e).into_response(),
        Err(e) => crate::error::ApiError::internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn origins() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(None, &none));
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8443",
            "http://localhost",
        ] {
            assert!(origin_allowed(Some(ok), &none), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "null",
            "http://evil@localhost",
        ] {
            assert!(!origin_allowed(Some(bad), &none), "{bad}");
        }
        assert!(origin_allowed(
            Some("https://app.example"),
            &["https://app.example".into()]
        ));
    }

    #[test]
    fn modern_headers_must_match_the_body() {
        let m = Message::from_value(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}})).unwrap();
        let mut h = HeaderMap::new();
        assert!(check_modern_headers(&h, &m, "2026-07-28").is_err());
        h.insert("mcp-protocol-version", HeaderValue::from_static("2026-07-28"));
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        assert!(check_modern_headers(&h, &m, "2026-07-28")
            .unwrap_err()
            .contains("Mcp-Name"));
        h.insert("mcp-name", HeaderValue::from_static("other"));
        assert!(check_modern_headers(&h, &m, "2026-07-28").is_err());
        h.insert("mcp-name", HeaderValue::from_static("=?base64?ZWNobw==?="));
        assert!(check_modern_headers(&h, &m, "2026-07-28").is_ok());
        h.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert!(check_modern_headers(&h, &m, "2026-07-28").is_err());
    }
}
