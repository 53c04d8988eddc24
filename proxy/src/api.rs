//! The HTTP JSON API (documented in `proxy/openapi.yaml`).
//!
//! [`router`] is the whole server; [`kernel_routes`] are the kernel's own endpoints, so
//! that later routes (the OpenAI-compatible proxy, the MCP interceptor) can be added
//! beside them with [`router_with`] and share the state, the [`Authenticated`]
//! extractor, the body limit and the JSON errors.
//!
//! Fail closed: a body that does not parse, a field that is missing or too long, an
//! unknown field (including any attempt to name a `principal`) is a 400 JSON error and
//! nothing is recorded or allowed. Only a 200 answer of `/v1/evaluate` with
//! `"status": "allow"` permits a call.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use helm_kernel::keyfile::{hex32, key_string, parse_key};
use helm_kernel::store::StoreStats;
use helm_kernel::{Args, EffectReport, Kernel, PendingApproval, Proposal};
use serde::{Deserialize, Serialize};
use verify_core::{EffectStatus, Record};

use crate::auth::{Authenticated, Scope, TokenTable};
use crate::error::ApiError;

/// Longest tool name, session id and executor (the record format's name limit).
pub const MAX_NAME: usize = 256;
/// Most meters on an effect (the record format's limit).
pub const MAX_METERS: usize = 16;
/// Longest meter name.
pub const MAX_METER_NAME: usize = 64;
/// Records one `/v1/records` call returns at most.
pub const MAX_RECORDS_PAGE: u64 = 1000;
/// How long after a kernel error `/healthz` reports `degraded`.
const DEGRADED_FOR: Duration = Duration::from_secs(60);

/// State shared by every handler.
#[derive(Debug)]
pub struct Shared {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// API tokens.
    pub tokens: Arc<TokenTable>,
    /// Largest request body (bytes).
    pub max_body_bytes: usize,
    /// When the server started.
    pub started: Instant,
    /// HTTP counters for `/metrics`.
    pub http: HttpMetrics,
    /// The last kernel error, for `/healthz`.
    pub last_error: Mutex<Option<(Instant, String)>>,
}

/// The router's state: cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<Shared>);

impl AppState {
    /// State for a kernel and its tokens.
    pub fn new(kernel: Arc<Kernel>, tokens: TokenTable, max_body_bytes: usize) -> AppState {
        AppState(Arc::new(Shared {
            kernel,
            tokens: Arc::new(tokens),
            max_body_bytes,
            started: Instant::now(),
            http: HttpMetrics::default(),
            last_error: Mutex::new(None),
        }))
    }

    /// Notes a kernel error (shown by `/healthz` for a minute).
    pub fn note_error(&self, message: &str) {
        let mut g = self
            .0
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Some((Instant::now(), message.to_owned()));
    }

    fn recent_error(&self) -> Option<(u64, String)> {
        let g = self
            .0
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < DEGRADED_FOR)
            .map(|(at, m)| (at.elapsed().as_secs(), m.clone()))
    }
}

impl FromRef<AppState> for Arc<TokenTable> {
    fn from_ref(s: &AppState) -> Arc<TokenTable> {
        s.0.tokens.clone()
    }
}

/// The server's routes: the kernel's endpoints, `/healthz`, `/metrics`, JSON errors for
/// unknown routes and methods, the body limit and the response counters.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes beside the kernel's (they must not set a fallback).
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let limit = state.0.max_body_bytes;
    kernel_routes()
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .with_state(state)
}

/// The kernel's endpoints, without fallbacks or layers.
pub fn kernel_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/evaluate", post(evaluate))
        .route("/v1/effects", post(effects))
        .route("/v1/records", get(records))
        .route("/v1/records/{index}", get(record))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}", get(approval).post(submit_approval))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// A JSON response with `Cache-Control: no-store`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(b) => (status, b),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"code":"INTERNAL","message":"the answer does not encode as JSON"}}"#.to_vec(),
        ),
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see openapi.yaml)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this endpoint does not take that method",
    )
}

/// The body, or the JSON error for one that is too large or unreadable.
fn body(b: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BODY_TOO_LARGE",
                format!("the body is larger than {limit} bytes"),
            )
        } else {
            ApiError::new(e.status(), "BAD_BODY", e.body_text())
        }
    })
}

fn parse<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| ApiError::from_json(&e))
}

/// A name as records allow it: 1 to [`MAX_NAME`] bytes, no control characters.
fn check_name(field: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field}: 1 to {MAX_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

fn kernel_gone(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("the kernel's worker stopped: {e}"))
}

/// `POST /v1/evaluate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateRequest {
    tool: String,
    #[serde(default)]
    args: Option<serde_json::Value>,
    #[serde(default)]
    text: Option<String>,
    session: String,
    #[serde(default)]
    call_id: Option<String>,
}

impl EvaluateRequest {
    fn into_proposal(self, principal: String) -> Result<Proposal, ApiError> {
        check_name("tool", &self.tool)?;
        check_name("session", &self.session)?;
        if let Some(id) = &self.call_id {
            check_name("call_id", id)?;
        }
        let args = match (self.args, self.text) {
            (Some(_), Some(_)) => return Err(ApiError::invalid("give args (JSON) or text, not both")),
            (Some(v), None) => Args::Json(v),
            (None, Some(t)) => Args::Text(t),
            (None, None) => Args::Json(serde_json::Value::Object(serde_json::Map::new())),
        };
        Ok(Proposal {
            tool: self.tool,
            args,
            principal,
            session: self.session,
            call_id: self.call_id,
        })
    }
}

async fn evaluate(
    State(s): State<AppState>,
    auth: Authenticated,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Agent)?;
    let b = body(b, s.0.max_body_bytes)?;
    let proposal = parse::<EvaluateRequest>(&b)?.into_proposal(auth.principal)?;
    let kernel = s.0.kernel.clone();
    let t0 = Instant::now();
    if kernel.wasm_module(&proposal.tool).is_some() {
        // A WASM tool: the kernel runs an allowed call in its sandbox and records the
        // EFFECT; the answer carries the run's outcome and output.
        let run = tokio::task::spawn_blocking(move || kernel.call_tool(&proposal))
            .await
            .map_err(kernel_gone)?;
        s.0.http.evaluate.observe(t0.elapsed());
        if let Some(e) = &run.answer.error {
            s.note_error(e);
        }
        let mut v = serde_json::to_value(&run.answer).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            let mut r = serde_json::to_value(&run).unwrap_or_default();
            if let Some(ro) = r.as_object_mut() {
                ro.remove("answer");
                if run.effect.is_some() {
                    ro.insert(
                        "stdout".into(),
                        String::from_utf8_lossy(&run.stdout).into_owned().into(),
                    );
                    ro.insert(
                        "stderr".into(),
                        String::from_utf8_lossy(&run.stderr).into_owned().into(),
                    );
                }
            }
            obj.insert("sandbox".into(), r);
        }
        return Ok(json(StatusCode::OK, &v));
    }
    let answer = tokio::task::spawn_blocking(move || kernel.evaluate(&proposal))
        .await
        .map_err(kernel_gone)?;
    s.0.http.evaluate.observe(t0.elapsed());
    if let Some(e) = &answer.error {
        s.note_error(e);
    }
    Ok(json(StatusCode::OK, &answer))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StatusArg {
    Succeeded,
    Failed,
    Aborted,
}

/// `POST /v1/effects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectRequest {
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    call_id: Option<String>,
    status: StatusArg,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    output_base64: Option<String>,
    #[serde(default)]
    executor: Option<String>,
    #[serde(default)]
    meters: BTreeMap<String, u64>,
}

impl EffectRequest {
    /// The report; `open_call` resolves a `call_id` of the principal to its open INTENT.
    fn into_report(
        self,
        principal: String,
        open_call: impl FnOnce(&str, &str) -> Option<String>,
    ) -> Result<EffectReport, ApiError> {
        let intent_hex = match (self.intent, self.call_id) {
            (Some(i), None) => i,
            (None, Some(id)) => {
                check_name("call_id", &id)?;
                open_call(&principal, &id).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "NO_OPEN_PERMIT",
                        format!("no open call with call_id {id:?} of this principal"),
                    )
                })?
            }
            _ => return Err(ApiError::invalid("give intent or call_id (exactly one)")),
        };
        let intent = hex32(&intent_hex).map_err(|e| ApiError::invalid(format!("intent: {e}")))?;
        let output = match (self.output, self.output_base64) {
            (Some(_), Some(_)) => return Err(ApiError::invalid("give output (text) or output_base64, not both")),
            (Some(t), None) => t.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| ApiError::invalid(format!("output_base64: {e}")))?,
            (None, None) => Vec::new(),
        };
        let executor = self.executor.unwrap_or_else(|| "client".into());
        check_name("executor", &executor)?;
        if self.meters.len() > MAX_METERS {
            return Err(ApiError::invalid(format!("meters: at most {MAX_METERS}")));
        }
        if let Some(m) = self.meters.keys().find(|m| m.is_empty() || m.len() > MAX_METER_NAME) {
            return Err(ApiError::invalid(format!(
                "meters: {m:?}: a meter name is 1 to {MAX_METER_NAME} bytes"
            )));
        }
        Ok(EffectReport {
            intent,
            principal,
            status: match self.status {
                StatusArg::Succeeded => EffectStatus::Succeeded,
                StatusArg::Failed => EffectStatus::Failed,
                StatusArg::Aborted => EffectStatus::Aborted,
            },
            output,
            executor,
            meters: self.meters.into_iter().collect(),
            ext: None,
            blobs: Vec::new(),
        })
    }
}

#[derive(Serialize)]
struct EffectAnswer {
    effect: String,
}

async fn effects(
    State(s): State<AppState>,
    auth: Authenticated,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Agent)?;
    let b = body(b, s.0.max_body_bytes)?;
    let report = parse::<EffectRequest>(&b)?.into_report(auth.principal, |p, id| s.0.kernel.intent_for_call(p, id))?;
    let kernel = s.0.kernel.clone();
    let effect = tokio::task::spawn_blocking(move || kernel.report_effect(&report))
        .await
        .map_err(kernel_gone)?
        .map_err(|r| {
            if r.code == "KERNEL_ERROR" {
                s.note_error(&r.message);
            }
            ApiError::from_refusal(r)
        })?;
    Ok(json(StatusCode::OK, &EffectAnswer { effect }))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Base64,
    Hex,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    from: Option<u64>,
    limit: Option<u64>,
    encoding: Option<Encoding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordQuery {
    encoding: Option<Encoding>,
}

/// A record as the API shows it: its bytes and hash, and the decoded envelope fields.
#[derive(Serialize)]
struct RecordView {
    index: u64,
    hash: String,
    size: usize,
    #[serde(flatten)]
    decoded: Option<Decoded>,
    cbor: String,
}

#[derive(Serialize)]
struct Decoded {
    kind: &'static str,
    kid: String,
    lamport: u64,
    time: u64,
    principal: String,
    session: String,
    seq: u64,
    parents: Vec<String>,
}

fn record_view(index: u64, bytes: &[u8], enc: Encoding) -> RecordView {
    let decoded = Record::decode(bytes).ok().map(|r| Decoded {
        kind: r.kind.name(),
        kid: key_string(&r.kid),
        lamport: r.lamport,
        time: r.time,
        principal: r.principal.to_owned(),
        session: r.session.to_owned(),
        seq: r.seq,
        parents: r.parents.iter().map(hex::encode).collect(),
    });
    RecordView {
        index,
        hash: hex::encode(verify_core::sha256(bytes)),
        size: bytes.len(),
        decoded,
        cbor: match enc {
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
            Encoding::Hex => hex::encode(bytes),
        },
    }
}

#[derive(Serialize)]
struct RecordsPage {
    from: u64,
    total: u64,
    next: Option<u64>,
    encoding: Encoding,
    records: Vec<RecordView>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))
}

async fn records(
    State(s): State<AppState>,
    auth: Authenticated,
    q: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Auditor)?;
    let q = query(q)?;
    let from = q.from.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_RECORDS_PAGE {
        return Err(ApiError::invalid(format!("limit: 1 to {MAX_RECORDS_PAGE}")));
    }
    let enc = q.encoding.unwrap_or_default();
    let kernel = s.0.kernel.clone();
    let (total, list) = tokio::task::spawn_blocking(move || {
        let total = kernel.metrics().records;
        kernel.records_range(from, limit).map(|l| (total, l))
    })
    .await
    .map_err(kernel_gone)?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "KERNEL_ERROR", e.to_string()))?;
    let records: Vec<RecordView> = list
        .iter()
        .zip(from..)
        .map(|(bytes, i)| record_view(i, bytes, enc))
        .collect();
    let end = from.saturating_add(records.len() as u64);
    Ok(json(
        StatusCode::OK,
        &RecordsPage {
            from,
            total: total.max(end),
            next: (end < total).then_some(end),
            encoding: enc,
            records,
        },
    ))
}

async fn record(
    State(s): State<AppState>,
    auth: Authenticated,
    index: Result<Path<u64>, PathRejection>,
    q: Result<Query<RecordQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Auditor)?;
    let Path(index) = index.map_err(|_| ApiError::invalid("the record index is a non-negative integer"))?;
    let enc = query(q)?.encoding.unwrap_or_default();
    let kernel = s.0.kernel.clone();
    let list = tokio::task::spawn_blocking(move || kernel.records_range(index, 1))
        .await
        .map_err(kernel_gone)?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "KERNEL_ERROR", e.to_string()))?;
    let bytes = list
        .first()
        .ok_or_else(|| ApiError::not_found(format!("no record {index}")))?;
    Ok(json(StatusCode::OK, &record_view(index, bytes, enc)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsQuery {
    state: Option<String>,
}

#[derive(Serialize)]
struct ApprovalList {
    approvals: Vec<PendingApproval>,
}

async fn approvals(
    State(s): State<AppState>,
    auth: Authenticated,
    q: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Approver)?;
    let q = query(q)?;
    if let Some(st) = &q.state {
        if !["pending", "approved", "denied"].contains(&st.as_str()) {
            return Err(ApiError::invalid("state: pending, approved or denied"));
        }
    }
    let mut list = s.0.kernel.approvals();
    if let Some(st) = &q.state {
        list.retain(|a| &a.state == st);
    }
    Ok(json(StatusCode::OK, &ApprovalList { approvals: list }))
}

fn approval_id(p: Result<Path<String>, PathRejection>) -> Result<[u8; 32], ApiError> {
    let Path(id) = p.map_err(|e| ApiError::invalid(e.body_text()))?;
    hex32(&id).map_err(|e| ApiError::invalid(format!("approval id: {e}")))
}

async fn approval(
    State(s): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Approver)?;
    let id = approval_id(id)?;
    let a =
        s.0.kernel
            .approval(&id)
            .ok_or_else(|| ApiError::not_found(format!("no approval {}", hex::encode(id))))?;
    Ok(json(StatusCode::OK, &a))
}

/// `POST /v1/approvals/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalRequest {
    /// Optional (as `helm-airgap approve --json` writes it): must be the path's id.
    #[serde(default)]
    id: Option<String>,
    approver: String,
    signature: String,
}

async fn submit_approval(
    State(s): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Approver)?;
    let id = approval_id(id)?;
    let b = body(b, s.0.max_body_bytes)?;
    let req: ApprovalRequest = parse(&b)?;
    if let Some(body_id) = &req.id {
        if hex32(body_id).ok() != Some(id) {
            return Err(ApiError::invalid("id: the body names another approval than the path"));
        }
    }
    let approver = parse_key(&req.approver).map_err(|e| ApiError::invalid(format!("approver: {e}")))?;
    let sig = hex::decode(&req.signature)
        .ok()
        .filter(|_| req.signature.bytes().all(|c| !c.is_ascii_uppercase()))
        .and_then(|v| <[u8; 64]>::try_from(v).ok())
        .ok_or_else(|| ApiError::invalid("signature: 128 lowercase hex digits (an Ed25519 signature)"))?;
    let kernel = s.0.kernel.clone();
    let view = tokio::task::spawn_blocking(move || kernel.submit_approval(&id, approver, sig))
        .await
        .map_err(kernel_gone)?
        .map_err(|r| {
            if r.code == "KERNEL_ERROR" {
                s.note_error(&r.message);
            }
            ApiError::from_refusal(r)
        })?;
    Ok(json(StatusCode::OK, &view))
}

#[derive(Serialize)]
struct BundleView {
    name: String,
    hash: String,
}

#[derive(Serialize)]
struct LastError {
    seconds_ago: u64,
    message: String,
}

/// One store in `/healthz`.
#[derive(Serialize)]
struct StoreView {
    appended: u64,
    durable: u64,
    segments: u32,
    fsyncs: u64,
    poisoned: Option<String>,
}

impl StoreView {
    fn new(stats: StoreStats, poisoned: Option<String>) -> Self {
        StoreView {
            appended: stats.appended,
            durable: stats.durable,
            segments: stats.segments,
            fsyncs: stats.fsyncs,
            poisoned,
        }
    }
}

/// The kernel's stores in `/healthz` (from [`Kernel::store_state`]).
#[derive(Serialize)]
struct StoresView {
    poisoned: bool,
    records: StoreView,
    blobs: StoreView,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    durability: &'static str,
    records: u64,
    key: String,
    signer: String,
    bundles: Vec<BundleView>,
    pending_approvals: usize,
    kernel_errors: u64,
    last_error: Option<LastError>,
    store: StoresView,
    uptime_seconds: u64,
}

async fn healthz(State(s): State<AppState>) -> Response {
    let k = &s.0.kernel;
    let m = k.metrics();
    let last = s.recent_error();
    let st = k.store_state();
    let poisoned = st.is_poisoned();
    let (status, code) = health_verdict(last.is_some(), poisoned);
    let h = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        durability: if k.is_durable() { "durable" } else { "buffered" },
        records: m.records,
        key: key_string(&k.public_key()),
        signer: k.signer_description(),
        bundles: k
            .bundles()
            .iter()
            .map(|b| BundleView {
                name: b.spec().name.clone(),
                hash: hex::encode(b.hash()),
            })
            .collect(),
        pending_approvals: k.approvals().iter().filter(|a| a.state == "pending").count(),
        kernel_errors: m.kernel_errors,
        last_error: last.map(|(seconds_ago, message)| LastError { seconds_ago, message }),
        store: StoresView {
            poisoned,
            records: StoreView::new(st.record_stats, st.records_poisoned),
            blobs: StoreView::new(st.blob_stats, st.blobs_poisoned),
        },
        uptime_seconds: s.0.started.elapsed().as_secs(),
    };
    json(code, &h)
}

/// `/healthz`'s verdict: `degraded` (503) for a minute after a kernel error, and while a
/// store is poisoned (a failed `fsync`: every decision is denied until the server
/// restarts and recovery runs); `ok` (200) otherwise.
fn health_verdict(recent_error: bool, store_poisoned: bool) -> (&'static str, StatusCode) {
    if recent_error || store_poisoned {
        ("degraded", StatusCode::SERVICE_UNAVAILABLE)
    } else {
        ("ok", StatusCode::OK)
    }
}

async fn metrics(State(s): State<AppState>, auth: Authenticated) -> Result<Response, ApiError> {
    auth.require(Scope::Auditor)?;
    let text = crate::prom::render(&s);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

async fn count_responses(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    s.0.http.count(r.status());
    r
}

/// Upper bounds (seconds) of the evaluate latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// A latency histogram (cumulative on output, as Prometheus wants).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative), total count, sum in microseconds.
    pub fn snapshot(&self) -> ([u64; 14], u64, u64) {
        let mut b = [0u64; 14];
        for (o, a) in b.iter_mut().zip(&self.buckets) {
            *o = a.load(Ordering::Relaxed);
        }
        (
            b,
            self.count.load(Ordering::Relaxed),
            self.sum_us.load(Ordering::Relaxed),
        )
    }
}

/// HTTP counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Responses by status class: 1xx..5xx at 0..4.
    pub responses: [AtomicU64; 5],
    /// `/v1/evaluate` latency, from the parsed request to the kernel's answer.
    pub evaluate: Histogram,
}

impl HttpMetrics {
    fn count(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).saturating_sub(1);
        if let Some(c) = self.responses.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn evaluate_requests_parse_strictly() {
        let ok: EvaluateRequest = parse(br#"{"tool":"t","args":{"a":1},"session":"s"}"#).unwrap();
        let p = ok.into_proposal("alice".into()).unwrap();
        assert_eq!(p.principal, "alice");
        assert_eq!(p.args, Args::Json(serde_json::json!({"a": 1})));
        let text: EvaluateRequest = parse(br#"{"tool":"t","text":"hi","session":"s"}"#).unwrap();
        assert_eq!(text.into_proposal("a".into()).unwrap().args, Args::Text("hi".into()));
        // The principal is never taken from the body.
        let e = parse::<EvaluateRequest>(br#"{"tool":"t","session":"s","principal":"root"}"#).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
        );
        let e = parse::<EvaluateRequest>(b"{\"tool\":").unwrap_err();
        assert_eq!(e.code, "INVALID_JSON");
        let both: EvaluateRequest = parse(br#"{"tool":"t","args":{},"text":"x","session":"s"}"#).unwrap();
        assert!(both.into_proposal("a".into()).is_err());
        let long = format!(r#"{{"tool":"{}","session":"s"}}"#, "x".repeat(257));
        let long: EvaluateRequest = parse(long.as_bytes()).unwrap();
        assert!(long.into_proposal("a".into()).is_err());
        let empty: EvaluateRequest = parse(br#"{"tool":"t","session":""}"#).unwrap();
        assert!(empty.into_proposal("a".into()).is_err());
    }

    #[test]
    fn effect_requests_parse_strictly() {
        let intent = "ab".repeat(32);
        let r: EffectRequest = parse(
            format!(r#"{{"intent":"{intent}","status":"succeeded","output_base64":"aGk=","meters":{{"cost":3}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        let r = r.into_report("a".into(), |_, _| None).unwrap();
        assert_eq!(r.output, b"hi");
        assert_eq!(r.executor, "client");
        assert_eq!(r.meters, vec![("cost".to_string(), 3)]);
        assert!(parse::<EffectRequest>(format!(r#"{{"intent":"{intent}","status":"done"}}"#).as_bytes()).is_err());
        let bad: EffectRequest = parse(br#"{"intent":"00","status":"failed"}"#).unwrap();
        assert!(bad.into_report("a".into(), |_, _| None).is_err());
        let many: String = (0..17).map(|i| format!(r#""m{i}":1"#)).collect::<Vec<_>>().join(",");
        let many: EffectRequest =
            parse(format!(r#"{{"intent":"{intent}","status":"failed","meters":{{{many}}}}}"#).as_bytes()).unwrap();
        assert!(many.into_report("a".into(), |_, _| None).is_err());
    }

    #[test]
    fn effects_by_call_id() {
        let intent = "cd".repeat(32);
        let r: EffectRequest = parse(br#"{"call_id":"call_1","status":"succeeded"}"#).unwrap();
        let got = r
            .into_report("alice".into(), |p, id| {
                assert_eq!((p, id), ("alice", "call_1"));
                Some(intent.clone())
            })
            .unwrap();
        assert_eq!(hex::encode(got.intent), intent);
        let r: EffectRequest = parse(br#"{"call_id":"call_2","status":"succeeded"}"#).unwrap();
        let e = r.into_report("alice".into(), |_, _| None).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (StatusCode::CONFLICT, "NO_OPEN_PERMIT"));
        let both: EffectRequest =
            parse(format!(r#"{{"intent":"{intent}","call_id":"c","status":"failed"}}"#).as_bytes()).unwrap();
        assert!(both.into_report("a".into(), |_, _| None).is_err());
        let neither: EffectRequest = parse(br#"{"status":"failed"}"#).unwrap();
        assert!(neither.into_report("a".into(), |_, _| None).is_err());
    }

    #[test]
    fn a_poisoned_store_or_a_recent_error_is_degraded() {
        assert_eq!(health_verdict(false, false), ("ok", StatusCode::OK));
        for (error, poisoned) in [(true, false), (false, true), (true, true)] {
            assert_eq!(
                health_verdict(error, poisoned),
                ("degraded", StatusCode::SERVICE_UNAVAILABLE)
            );
        }
    }

    #[test]
    fn histogram_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let (b, n, sum) = h.snapshot();
        assert_eq!((b[0], b[6], b.iter().sum::<u64>(), n), (1, 1, 2, 3));
        assert_eq!(sum, 10_003_030);
    }
}
