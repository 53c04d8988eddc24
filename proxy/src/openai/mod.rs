//! The governed OpenAI-compatible proxy: point an OpenAI client's `base_url` at
//! `helm-proxy` and every tool call the model proposes is decided by Guardian and
//! recorded before the client can act on it.
//!
//! - `POST /v1/chat/completions` and `POST /v1/responses` go to the configured upstream
//!   ([`OpenAiSection::upstream`]) with the upstream's key; the client authenticates
//!   with its HELM API token (`agent` scope), which names its principal. The session is
//!   the `X-Helm-Session` header, or [`OpenAiSection::default_session`].
//! - Request side: tools the principal can never use are not offered
//!   ([`policy`](self::policy)); hosted tools are stripped unless listed; tool results
//!   coming back are recorded as the EFFECT of their call, and a result for a call that
//!   was never allowed is refused (403) and recorded as a VIOLATION.
//! - Response side: every proposed call becomes an INTENT and a DECISION; calls not
//!   allowed never reach the client as callable ([`DenyMode`]). Streams are governed,
//!   not passed through: text at once, call fragments held until decided.
//! - Other routes are refused unless listed in [`OpenAiSection::passthrough`].
//! - Fail closed: an upstream that cannot be reached is a 502 OpenAI-style error; a
//!   kernel failure denies the calls (`KERNEL_ERROR`) or refuses the request (503); an
//!   upstream answer that cannot be parsed is not passed (502, or an error event).
//!
//! Every governed answer names its calls' decisions in `x-helm-call` headers (streams:
//! `: helm-call ...` comment lines, since headers leave before the decisions).

mod calls;
mod chat;
mod config;
mod error;
mod govern;
mod json;
mod policy;
mod request;
mod responses;
mod sse;
mod upstream;

use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use helm_kernel::Kernel;
use http_body_util::BodyExt as _;
use serde_json::{Map, Value};

use self::calls::CallBook;
pub use self::config::{DenyMode, OpenAiSection, DEFAULT_PASSTHROUGH, KNOWN_HOSTED};
use self::error::OaiError;
use self::govern::Ctx;
use self::request::Api;
use self::upstream::{forward_response_header, Upstream};
use crate::api::AppState;
use crate::auth::{Authenticated, Scope};
use crate::config::ConfigError;
use crate::error::ApiError;
use crate::log::{log_info, log_warn};

/// `x-helm-session`: the session of a request (request header), echoed on answers.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("x-helm-session");
/// `x-helm-call`: one per governed call of an answer.
pub const CALL_HEADER: HeaderName = HeaderName::from_static("x-helm-call");

/// The proxy's state.
#[derive(Debug)]
pub struct OpenAi {
    kernel: Arc<Kernel>,
    upstream: Upstream,
    section: OpenAiSection,
    book: Mutex<CallBook>,
    /// Response id -> the calls of that response withheld from the client (bounded).
    withheld: Mutex<(HashMap<String, responses::Withheld>, VecDeque<String>)>,
}

/// Responses whose withheld calls are remembered (for `previous_response_id`).
const WITHHELD_RESPONSES: usize = 10_000;

impl OpenAi {
    /// Sets the proxy up: the upstream client (key, TLS roots) and the book of call ids
    /// rebuilt from the store in `store_dir`.
    pub fn open(section: &OpenAiSection, kernel: Arc<Kernel>, store_dir: &Path) -> Result<Arc<OpenAi>, ConfigError> {
        let upstream = Upstream::new(section)?;
        let book = CallBook::from_store(store_dir, section.remember_calls).map_err(ConfigError)?;
        log_info!(
            "OpenAI-compatible proxy: upstream {}, deny mode {}, pass-through {:?}, hosted tools {:?}, {} call id(s) remembered",
            section.upstream,
            section.deny_mode.name(),
            section.passthrough,
            section.hosted_tools,
            book.len()
        );
        Ok(Arc::new(OpenAi {
            kernel,
            upstream,
            section: section.clone(),
            book: Mutex::new(book),
            withheld: Mutex::new((HashMap::new(), VecDeque::new())),
        }))
    }

    fn book(&self) -> MutexGuard<'_, CallBook> {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the calls of response `id` that the client did not get.
    fn remember_withheld(&self, id: Option<&str>, list: responses::Withheld) {
        let (Some(id), false) = (id, list.is_empty()) else {
            return;
        };
        let mut g = self.withheld.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.0.insert(id.to_owned(), list).is_none() {
            g.1.push_back(id.to_owned());
            while g.1.len() > WITHHELD_RESPONSES {
                if let Some(old) = g.1.pop_front() {
                    g.0.remove(&old);
                }
            }
        }
    }

    fn withheld_of(&self, id: &str) -> responses::Withheld {
        let g = self.withheld.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.0.get(id).cloned().unwrap_or_default()
    }
}

/// The proxy's routes, to add beside the kernel's with [`crate::api::router_with`].
pub fn routes(o: Arc<OpenAi>) -> Router<AppState> {
    let limit = usize::try_from(o.section.max_request_bytes).unwrap_or(usize::MAX);
    // The handlers hold the proxy's state (an `Extension` layer would insert it into
    // every request's extensions, and add a layer to every route).
    let chat = {
        let o = o.clone();
        move |State(s): State<AppState>,
              auth: Result<Authenticated, ApiError>,
              headers: HeaderMap,
              uri: Uri,
              body: Result<Bytes, BytesRejection>| { handle(s, o.clone(), Api::Chat, auth, headers, uri, body) }
    };
    let resp = {
        let o = o.clone();
        move |State(s): State<AppState>,
              auth: Result<Authenticated, ApiError>,
              headers: HeaderMap,
              uri: Uri,
              body: Result<Bytes, BytesRejection>| {
            handle(s, o.clone(), Api::Responses, auth, headers, uri, body)
        }
    };
    let pass = {
        let o = o.clone();
        move |auth: Result<Authenticated, ApiError>,
              method: Method,
              headers: HeaderMap,
              uri: Uri,
              body: Result<Bytes, BytesRejection>| { passthrough(o.clone(), auth, method, headers, uri, body) }
    };
    let mut r = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/responses", post(resp));
    for p in &o.section.passthrough {
        r = r
            .route(p, any(pass.clone()))
            .route(&format!("{p}/{{*rest}}"), any(pass.clone()));
    }
    r.layer(DefaultBodyLimit::max(limit))
}

fn authenticate(auth: Result<Authenticated, ApiError>) -> Result<Authenticated, OaiError> {
    let a = auth.map_err(|e| {
        let mut o = OaiError::new(e.status, "invalid_request_error", "invalid_api_key", e.message);
        o.no_retry = true;
        o
    })?;
    a.require(Scope::Agent)
        .map_err(|e| OaiError::new(StatusCode::FORBIDDEN, "invalid_request_error", "forbidden", e.message))?;
    Ok(a)
}

fn request_body(b: Result<Bytes, BytesRejection>, limit: u64) -> Result<Bytes, OaiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OaiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("the body is larger than {limit} bytes"),
            )
        } else {
            OaiError::new(e.status(), "invalid_request_error", "bad_body", e.body_text())
        }
    })
}

fn session(headers: &HeaderMap, default: &str) -> Result<String, OaiError> {
    let Some(v) = headers.get(&SESSION_HEADER) else {
        return Ok(default.to_owned());
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 256 => Ok(s.to_owned()),
        _ => Err(OaiError::invalid(
            "invalid_session",
            "X-Helm-Session: 1 to 256 visible ASCII characters",
        )),
    }
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// `POST /v1/chat/completions` and `POST /v1/responses`.
async fn handle(
    s: AppState,
    o: Arc<OpenAi>,
    api: Api,
    auth: Result<Authenticated, ApiError>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    governed(s, o, api, auth, headers, uri, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Copies the upstream's headers worth passing to the client.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if forward_response_header(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

async fn governed(
    s: AppState,
    o: Arc<OpenAi>,
    api: Api,
    auth: Result<Authenticated, ApiError>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OaiError> {
    let auth = authenticate(auth)?;
    let body = request_body(body, o.section.max_request_bytes)?;
    let ctx = Ctx {
        principal: auth.principal,
        session: session(&headers, &o.section.default_session)?,
    };
    // The common case: nothing to change, no result to record; the body is read
    // without building a JSON tree (the full path below decides everything else).
    let fast = {
        let bundles = s.0.kernel.bundles();
        let may = |tool: &str| policy::may_use(bundles, &ctx.principal, tool);
        let withheld = |id: &str| !o.withheld_of(id).is_empty();
        request::untouched(&body, api, &may, &o.section.hosted_tools, &withheld)
    };
    if let Some(stream) = fast {
        return forward(o, ctx, api, &headers, &uri, body, stream).await;
    }
    let mut map: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(OaiError::invalid("invalid_json", "the body must be a JSON object")),
        Err(e) => return Err(OaiError::invalid("invalid_json", format!("the body is not JSON: {e}"))),
    };
    let results = match api {
        Api::Chat => request::chat_request(&map)?,
        Api::Responses => request::responses_request(&map)?,
    };
    let filtered = {
        let bundles = s.0.kernel.bundles();
        let may = |tool: &str| policy::may_use(bundles, &ctx.principal, tool);
        request::filter_tools(&mut map, api, &may, &o.section.hosted_tools)?
    };
    govern::record_results(&o, &ctx, results).await?;
    // Continuing a response whose calls the client did not get: their outputs.
    let mut changed = filtered.changed;
    if api == Api::Responses {
        if let Some(prev) = map.get("previous_response_id").and_then(Value::as_str) {
            let w = o.withheld_of(prev);
            if !w.is_empty() {
                responses::supply_withheld(&mut map, &w);
                changed = true;
            }
        }
    }
    let stream = map.get("stream").and_then(Value::as_bool) == Some(true);
    let body = if changed {
        Bytes::from(serde_json::to_vec(&map).map_err(|e| OaiError::invalid("invalid_json", e.to_string()))?)
    } else {
        body
    };
    drop(map);
    forward(o, ctx, api, &headers, &uri, body, stream).await
}

/// Sends the (governed) request upstream; governs the answer.
async fn forward(
    o: Arc<OpenAi>,
    ctx: Ctx,
    api: Api,
    headers: &HeaderMap,
    uri: &Uri,
    body: Bytes,
    stream: bool,
) -> Result<Response, OaiError> {
    let resp = o
        .upstream
        .send(Method::POST, &path_and_query(uri), headers, body)
        .await?;
    let (parts, incoming) = resp.into_parts();
    let mut out_headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut out_headers);
    if let Ok(v) = HeaderValue::from_str(&ctx.session) {
        out_headers.insert(SESSION_HEADER, v);
    }
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if parts.status.is_success() && stream && is_sse {
        return Ok(stream_response(o, ctx, api, incoming, out_headers));
    }
    let bytes = read_all(incoming, &o).await?;
    if !parts.status.is_success() {
        // The upstream's own error: passed as it is (no call can be run from it).
        let mut r = (parts.status, bytes).into_response();
        *r.headers_mut() = out_headers;
        return Ok(r);
    }
    if is_sse {
        return Err(OaiError::upstream(
            "upstream_unexpected_stream",
            "the upstream streamed an answer that was not asked to be streamed",
        ));
    }
    let escaped = chat::has_unicode_escape(&bytes);
    let may = match api {
        Api::Chat => chat::may_have_calls(&bytes),
        Api::Responses => responses::may_have_calls(&bytes),
    };
    if !may && !escaped {
        return Ok(buffered(parts.status, out_headers, bytes));
    }
    let (mut v, repeated) = json::parse(&bytes).map_err(|e| {
        OaiError::upstream(
            "upstream_unparseable",
            format!("the upstream's answer may hold tool calls but is not JSON ({e}): not passed"),
        )
    })?;
    let (calls, apply): (Vec<govern::Call>, Apply) = match api {
        Api::Chat => {
            let found = chat::extract(&v);
            let calls = found.iter().map(|f| f.call.clone()).collect();
            let mode = o.section.deny_mode;
            (calls, Box::new(move |v, out| chat::apply(v, &found, out, mode)))
        }
        Api::Responses => {
            let found = responses::extract(&v);
            let calls = found.iter().map(|(_, c)| c.clone()).collect();
            let mode = o.section.deny_mode;
            let types = responses::item_types(&v, &found);
            let o2 = o.clone();
            (
                calls,
                Box::new(move |v, out| {
                    let w = responses::withheld(&found, out, &types);
                    responses::apply(v, &found, out, mode)?;
                    o2.remember_withheld(v.get("id").and_then(Value::as_str), w);
                    Ok(())
                }),
            )
        }
    };
    if calls.is_empty() {
        return Ok(buffered(parts.status, out_headers, bytes));
    }
    let outcomes = govern::decide(&o, &ctx, &calls).await;
    let values = govern::header_values(&calls, &outcomes);
    // Every call allowed: nothing to rewrite (`apply` would leave the same value), and
    // the upstream's bytes are passed as they came, unless a repeated key could make a
    // client read them otherwise than they were governed (then they are re-encoded).
    let mut r = if !repeated && outcomes.iter().all(govern::Outcome::allowed) {
        drop(v);
        let mut r = (parts.status, bytes).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, val) in &out_headers {
            if k != header::CONTENT_TYPE {
                h.append(k.clone(), val.clone());
            }
        }
        r
    } else {
        match apply(&mut v, &outcomes) {
            Ok(()) => {
                let mut r = crate::api::json(parts.status, &v);
                for (k, val) in &out_headers {
                    if k != header::CONTENT_TYPE {
                        r.headers_mut().append(k.clone(), val.clone());
                    }
                }
                r
            }
            Err(e) => {
                let mut r = e.into_response();
                if let Some(v) = out_headers.get(&SESSION_HEADER) {
                    r.headers_mut().insert(SESSION_HEADER, v.clone());
                }
                r
            }
        }
    };
    for v in values {
        r.headers_mut().append(CALL_HEADER, v);
    }
    Ok(r)
}

fn buffered(status: StatusCode, headers: HeaderMap, bytes: Bytes) -> Response {
    let mut r = (status, bytes).into_response();
    *r.headers_mut() = headers;
    r
}

/// The whole upstream body, within the size limit and the timeout.
async fn read_all(mut body: hyper::body::Incoming, o: &OpenAi) -> Result<Bytes, OaiError> {
    let max = usize::try_from(o.section.max_response_bytes).unwrap_or(usize::MAX);
    let read = async {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| OaiError::upstream("upstream_broken", format!("the upstream's answer broke off: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len().saturating_add(data.len()) > max {
                    return Err(OaiError::upstream(
                        "upstream_too_large",
                        format!("the upstream's answer is larger than {max} bytes: not passed"),
                    ));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(o.upstream.timeout, read).await.map_err(|_| {
        OaiError::upstream(
            "upstream_timeout",
            format!(
                "the upstream's answer took longer than {} ms",
                o.upstream.timeout.as_millis()
            ),
        )
    })?
}

/// Rewrites a response once its calls are decided.
type Apply = Box<dyn FnOnce(&mut Value, &[govern::Outcome]) -> Result<(), OaiError> + Send>;

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

fn stream_response(
    o: Arc<OpenAi>,
    ctx: Ctx,
    api: Api,
    incoming: hyper::body::Incoming,
    headers: HeaderMap,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        match api {
            Api::Chat => drive_chat(o, ctx, incoming, tx).await,
            Api::Responses => drive_responses(o, ctx, incoming, tx).await,
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(Body::from_stream(stream));
    *r.headers_mut() = headers;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Sends bytes to the client; false once the client is gone.
async fn send(tx: &Tx, bytes: Vec<u8>) -> bool {
    bytes.is_empty() || tx.send(Ok(Bytes::from(bytes))).await.is_ok()
}

/// Decides calls while sending keep-alive comments.
async fn decide_keepalive(o: &Arc<OpenAi>, ctx: &Ctx, calls: &[govern::Call], tx: &Tx) -> Vec<govern::Outcome> {
    let fut = govern::decide(o, ctx, calls);
    tokio::pin!(fut);
    let every = Duration::from_millis(o.section.keepalive_ms);
    let now = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(now.checked_add(every).unwrap_or(now), every);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                // A client that left does not stop the decision (its records complete).
                let _ = tx.try_send(Ok(Bytes::from_static(b": keep-alive\n\n")));
            }
        }
    }
}

/// The next events of the upstream stream; `None` at its end; an error if it broke,
/// timed out or sent an event too large.
async fn next_events(
    body: &mut hyper::body::Incoming,
    dec: &mut sse::Decoder,
    idle: Duration,
) -> Result<Option<Vec<sse::Event>>, String> {
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(format!("the upstream sent nothing for {} ms", idle.as_millis())),
            Ok(None) => {
                return if dec.pending() {
                    Err("the upstream's stream ended inside an event".into())
                } else {
                    Ok(None)
                }
            }
            Ok(Some(Err(e))) => return Err(format!("the upstream's stream broke off: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        let mut evs = Vec::new();
        dec.feed(&data, &mut evs).map_err(|e| e.0)?;
        if !evs.is_empty() {
            return Ok(Some(evs));
        }
    }
}

fn stream_error(e: &OaiError) -> Vec<u8> {
    let mut out = Vec::new();
    sse::encode(&mut out, None, &e.body().to_string());
    out
}

async fn drive_chat(o: Arc<OpenAi>, ctx: Ctx, mut body: hyper::body::Incoming, tx: Tx) {
    let mut gov = chat::ChatStream::new(o.section.deny_mode);
    let max = usize::try_from(o.section.max_response_bytes).unwrap_or(usize::MAX);
    let mut dec = sse::Decoder::new(max);
    loop {
        let (steps, failure) = match next_events(&mut body, &mut dec, o.upstream.timeout).await {
            Ok(Some(evs)) => {
                let mut steps = Vec::new();
                let mut failure = None;
                for ev in &evs {
                    match gov.push(ev) {
                        Ok(s) => steps.extend(s),
                        Err(e) => {
                            steps.extend(gov.abandon());
                            failure = Some(e);
                            break;
                        }
                    }
                }
                (steps, failure)
            }
            Ok(None) => (gov.abandon(), Some(String::new())),
            Err(e) => (gov.abandon(), Some(e)),
        };
        for step in steps {
            let bytes = match step {
                chat::Step::Bytes(b) => b,
                chat::Step::Decide(i, calls) => {
                    let outcomes = decide_keepalive(&o, &ctx, &calls, &tx).await;
                    match gov.resolve(i, &calls, &outcomes) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = send(&tx, stream_error(&e)).await;
                            return;
                        }
                    }
                }
            };
            if !send(&tx, bytes).await {
                return;
            }
        }
        match failure {
            None => {}
            Some(e) if e.is_empty() => return,
            Some(e) => {
                log_warn!("OpenAI proxy: {e}");
                let _ = send(&tx, stream_error(&OaiError::upstream("upstream_broken", e))).await;
                return;
            }
        }
    }
}

async fn drive_responses(o: Arc<OpenAi>, ctx: Ctx, mut body: hyper::body::Incoming, tx: Tx) {
    let mut gov = responses::ResponsesStream::new(o.section.deny_mode);
    let max = usize::try_from(o.section.max_response_bytes).unwrap_or(usize::MAX);
    let mut dec = sse::Decoder::new(max);
    loop {
        let (steps, failure) = match next_events(&mut body, &mut dec, o.upstream.timeout).await {
            Ok(Some(evs)) => {
                let mut steps = Vec::new();
                let mut failure = None;
                for ev in &evs {
                    match gov.push(ev) {
                        Ok(s) => steps.extend(s),
                        Err(e) => {
                            steps.extend(gov.abandon());
                            failure = Some(e);
                            break;
                        }
                    }
                }
                (steps, failure)
            }
            Ok(None) => (gov.abandon(), Some(String::new())),
            Err(e) => (gov.abandon(), Some(e)),
        };
        for step in steps {
            let result = match step {
                responses::Step::Bytes(b) => Ok(b),
                responses::Step::Decide(i, call) => {
                    let outcomes = decide_keepalive(&o, &ctx, core::slice::from_ref(&call), &tx).await;
                    match outcomes.first() {
                        Some(out) => gov.resolve(i, &call, out),
                        None => Err(OaiError::kernel("no decision")),
                    }
                }
                responses::Step::Terminal(v) => {
                    let extra = gov.terminal_calls(&v);
                    let calls: Vec<govern::Call> = extra.iter().map(|(_, c)| c.clone()).collect();
                    let outcomes = if calls.is_empty() {
                        Vec::new()
                    } else {
                        decide_keepalive(&o, &ctx, &calls, &tx).await
                    };
                    let r = gov.terminal(v, &extra, &outcomes);
                    if r.is_ok() {
                        o.remember_withheld(gov.response_id.as_deref(), core::mem::take(&mut gov.withheld));
                    }
                    r
                }
            };
            let bytes = match result {
                Ok(b) => b,
                Err(e) => {
                    let b = gov.error_event(&e);
                    let _ = send(&tx, b).await;
                    return;
                }
            };
            if !send(&tx, bytes).await {
                return;
            }
        }
        match failure {
            None => {}
            Some(e) if e.is_empty() => return,
            Some(e) => {
                log_warn!("OpenAI proxy: {e}");
                let b = gov.error_event(&OaiError::upstream("upstream_broken", e));
                let _ = send(&tx, b).await;
                return;
            }
        }
    }
}

/// A listed route, passed to the upstream unchanged (after authentication).
async fn passthrough(
    o: Arc<OpenAi>,
    auth: Result<Authenticated, ApiError>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        authenticate(auth)?;
        let body = request_body(body, o.section.max_request_bytes)?;
        let resp = o.upstream.send(method, &path_and_query(&uri), &headers, body).await?;
        let (parts, incoming) = resp.into_parts();
        let mut r = Response::new(Body::new(incoming));
        *r.status_mut() = parts.status;
        copy_headers(&parts.headers, r.headers_mut());
        Ok::<Response, OaiError>(r)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
