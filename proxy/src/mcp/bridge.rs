//! One governed MCP conversation: a client on one side, an upstream server on the
//! other, every message through [`Bridge::from_client`] and [`Bridge::from_upstream`].
//!
//! The transports only move bytes: they parse nothing and decide nothing. The bridge
//! parses every message strictly, checks it against the allowlist of the revision in
//! force, decides governed requests with the kernel (INTENT and DECISION durable
//! before anything is forwarded), forwards under ids of its own (so the proxy can
//! inject requests, such as the `tools/list` a pin check needs, without colliding with
//! the client's), maps answers back, and records effects. A `tools/call` reaches the
//! upstream only after an ALLOW.

use core::time::Duration;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use helm_kernel::keyfile::hex32;
use helm_kernel::{Answer, Args, EffectReport, Kernel, Proposal, Status};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use verify_core::{sha256, EffectStatus, Hash};

use super::config::{DenyAs, McpSection};
use super::pins::{canonical_definition, may_be_allowed, PinState, PinStore};
use super::protocol::{
    allowed, allowed_before_version, code, Dir, Incoming, Malformed, Message, Rev, KNOWN_VERSIONS, MODERN_VERSIONS,
};
use crate::log::{log_error, log_info, log_warn};

/// How long an injected `tools/list` may take.
const LISTING_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a held call looks at its approval.
const APPROVAL_POLL: Duration = Duration::from_millis(50);
/// How long an EFFECT may wait for the conversation's next message to go upstream
/// before it is recorded anyway (see [`Bridge::report_later`]).
const EFFECT_DEFER: Duration = Duration::from_millis(2);

/// Most 2026-07-28 input requests a conversation keeps decided at once (answered ones
/// are forgotten; refused ones are kept so that a poll repeating them is refused too).
const MAX_INPUT_REQUESTS: usize = 4096;

/// What every conversation shares: the kernel, the settings and the pins.
#[derive(Debug)]
pub struct McpShared {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// `[mcp]`.
    pub settings: McpSection,
    /// Tool pins.
    pub pins: PinStore,
}

impl McpShared {
    /// Shared state over a kernel: pins restored from the store, configured pins
    /// recorded (blocking: call before serving).
    pub fn new(kernel: Arc<Kernel>, settings: McpSection) -> Result<Arc<McpShared>, String> {
        let pins = PinStore::load(kernel.clone(), settings.tofu)?;
        for p in &settings.pins {
            let h = hex32(&p.sha256).map_err(|e| format!("[[mcp.pin]] {}/{}: {e}", p.server, p.tool))?;
            let rec = pins.approve(&p.server, &p.tool, h, None)?;
            if !rec.is_empty() {
                log_info!(
                    "MCP pin {}/{} sha256:{} approved by the configuration",
                    p.server,
                    p.tool,
                    p.sha256
                );
            }
        }
        Ok(Arc::new(McpShared { kernel, settings, pins }))
    }

    fn max_message(&self) -> usize {
        usize::try_from(self.settings.max_message_bytes).unwrap_or(usize::MAX)
    }
}

/// A message for the client, with the client request it relates to (the id's JSON
/// text), so that an HTTP transport can put it on that request's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ToClient {
    /// The message.
    pub msg: Value,
    /// The client request it answers or belongs to, if any.
    pub related: Option<String>,
}

/// With `HELM_MCP_TRACE` set, every relayed message is logged (development only: tool
/// arguments and results appear in the log).
pub(crate) fn trace(what: &str, v: &Value) {
    if tracing() {
        log_info!("MCP trace {what}: {v}");
    }
}

/// Whether `HELM_MCP_TRACE` is set (read once).
pub(crate) fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HELM_MCP_TRACE").is_some())
}

/// Where a conversation's messages for the client go.
pub enum ClientSink {
    /// A channel, drained by the client side's writer (stdio).
    Channel(mpsc::UnboundedSender<ToClient>),
    /// A function called at once, which routes the message to its stream (HTTP): one
    /// task hop less per answer.
    Direct(Box<dyn Fn(ToClient) + Send + Sync>),
}

impl core::fmt::Debug for ClientSink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClientSink::Channel(_) => "ClientSink::Channel",
            ClientSink::Direct(_) => "ClientSink::Direct",
        })
    }
}

impl ClientSink {
    fn send(&self, m: ToClient) -> Result<(), ()> {
        match self {
            ClientSink::Channel(tx) => tx.send(m).map_err(|_| ()),
            ClientSink::Direct(f) => {
                f(m);
                Ok(())
            }
        }
    }
}

/// The key of an id: its JSON text (`1` and `"1"` differ).
pub fn id_key(id: &Value) -> String {
    // The same text as `Display` (compact JSON), written straight into the string's
    // buffer rather than through `fmt::Write` (an id key is made several times per
    // message).
    match id.as_u64() {
        Some(u) => u.to_string(),
        None => json_text(id),
    }
}

/// Compact JSON text of a value (what `Display` writes), without the `fmt` machinery.
pub fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[derive(Clone, Debug)]
enum Kind {
    Plain,
    Initialize,
    Discover,
    ToolsList {
        complete: bool,
    },
    Injected,
    Governed {
        intent: String,
        started: Instant,
        tool: String,
    },
    TaskResult {
        task: String,
    },
    /// `tasks/get`: under 2026-07-28 a terminal task carries the call's result.
    TaskGet {
        task: String,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    client_id: Option<Value>,
    kind: Kind,
    progress: Option<String>,
}

/// How a 2026-07-28 input request (a request of the server inside a result) was decided.
#[derive(Clone, Debug)]
enum InputRequest {
    /// Allowed: its INTENT and when, for the EFFECT once the client's response comes.
    Allowed(String, Instant),
    /// Refused: the error that replaces every result carrying it.
    Refused(String, Value),
}

#[derive(Debug, Default)]
struct State {
    rev: Option<Rev>,
    next_up: u64,
    pending: HashMap<u64, Pending>,
    by_client: HashMap<String, u64>,
    evaluating: HashSet<String>,
    cancelled: HashSet<String>,
    progress: HashMap<String, String>,
    tools: Option<HashMap<String, Hash>>,
    /// When `tools` was started from a first page (for `relist_ms`).
    tools_at: Option<Instant>,
    listing: Option<Vec<oneshot::Sender<()>>>,
    modern_meta: Option<Value>,
    server_reqs: HashMap<String, Option<(String, Instant)>>,
    /// 2026-07-28 requests of the server carried in results (`inputRequests`), by
    /// task id (empty outside a task) and key: decided once, however often a poll
    /// shows them again.
    input_reqs: HashMap<(String, String), InputRequest>,
    tasks: HashMap<String, (String, Instant)>,
    violation_recorded: bool,
    closed: bool,
    /// Upstream ids of requests the client cancelled (late answers are dropped).
    cancelled_up: HashSet<u64>,
    client_gone: bool,
    /// Tools' `x-mcp-header` annotations, from the listings.
    params: HashMap<String, super::params::Declared>,
    /// `Mcp-Param-*` headers a client sent with a stateless tools/call, by request key:
    /// checked against the arguments once the tool's annotations are known.
    sent_params: HashMap<String, Vec<(String, String)>>,
}

/// One conversation.
#[derive(Debug)]
pub struct Bridge {
    shared: Arc<McpShared>,
    /// The upstream's name (tools are `server/tool`).
    pub server: String,
    /// The authenticated principal.
    pub principal: String,
    /// The kernel session.
    pub session: String,
    up: mpsc::UnboundedSender<Value>,
    client: ClientSink,
    st: Mutex<State>,
    inflight: core::sync::atomic::AtomicUsize,
    /// Signalled each time a message goes upstream: EFFECTs waiting to be recorded go.
    upstream_sent: tokio::sync::Notify,
}

/// What a governed request came to.
enum Decided {
    Forward { intent: String, tool: String },
    Answer(Message),
}

impl Bridge {
    /// A conversation: messages for the upstream go to `up`, messages for the client to
    /// `client`.
    pub fn new(
        shared: Arc<McpShared>,
        server: &str,
        principal: &str,
        session: &str,
        up: mpsc::UnboundedSender<Value>,
        client: ClientSink,
    ) -> Arc<Bridge> {
        Arc::new(Bridge {
            shared,
            server: server.to_owned(),
            principal: principal.to_owned(),
            session: session.to_owned(),
            up,
            client,
            st: Mutex::new(State::default()),
            inflight: core::sync::atomic::AtomicUsize::new(0),
            upstream_sent: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The revision negotiated by `initialize`, if any.
    pub fn revision(&self) -> Option<Rev> {
        self.lock().rev
    }

    /// Whether the upstream side has closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The `Mcp-Param-*` headers a call of `tool` with `args` carries upstream.
    pub fn param_headers(&self, tool: &str, args: &Value) -> Vec<(String, String)> {
        self.lock()
            .params
            .get(tool)
            .map(|d| super::params::headers_for(d, args))
            .unwrap_or_default()
    }

    /// The `Mcp-Param-*` headers (lowercase names) sent with the stateless request
    /// `key`: the call is refused (`-32020`) unless they match its arguments.
    pub fn expect_params(&self, key: &str, sent: Vec<(String, String)>) {
        self.lock().sent_params.insert(key.to_owned(), sent);
    }

    /// The client is gone (end of its input, or its HTTP session was deleted): nothing
    /// more is sent to it; calls already forwarded still get their EFFECT.
    pub fn client_closed(&self) {
        self.lock().client_gone = true;
    }

    fn to_client(&self, msg: Message, related: Option<String>) {
        if self.lock().client_gone {
            return;
        }
        let msg = msg.into_value();
        trace("to client", &msg);
        let _ = self.client.send(ToClient { msg, related });
    }

    fn refuse_client(&self, m: Malformed) {
        let id = m.id.unwrap_or(Value::Null);
        let related = (!id.is_null()).then(|| id_key(&id));
        self.to_client(Message::error(id, m.code, m.message, None), related);
    }

    /// Bytes from the client: one message or a batch. Anything malformed is answered
    /// with a JSON-RPC error and goes nowhere.
    pub fn from_client_bytes(self: &Arc<Self>, bytes: &[u8]) {
        match super::protocol::parse_bytes(bytes, self.shared.max_message()) {
            Ok(inc) => self.from_client(inc),
            Err(m) => self.refuse_client(m),
        }
    }

    /// A parsed body from the client.
    pub fn from_client(self: &Arc<Self>, inc: Incoming) {
        match inc {
            Incoming::One(m) => self.client_message(m),
            Incoming::Batch(items) => {
                let rev = self.lock().rev;
                if !rev.is_some_and(Rev::batches) {
                    self.refuse_client(Malformed {
                        code: code::INVALID_REQUEST,
                        message: format!(
                            "JSON-RPC batches are not allowed in protocol revision {}",
                            rev.map_or("(none negotiated)", Rev::name)
                        ),
                        id: None,
                    });
                    return;
                }
                for item in items {
                    match item {
                        Ok(m) if m.method() == Some("initialize") => self.refuse_client(Malformed {
                            code: code::INVALID_REQUEST,
                            message: "initialize cannot be part of a batch".into(),
                            id: match m {
                                Message::Request { id, .. } => Some(id),
                                _ => None,
                            },
                        }),
                        Ok(m) => self.client_message(m),
                        Err(e) => self.refuse_client(e),
                    }
                }
            }
        }
    }

    fn forward(&self, st: &mut State, mut msg: Message, client_id: Option<Value>, kind: Kind) -> Option<u64> {
        if st.closed {
            // (The state is locked here: send directly, not through `to_client`.)
            if let (Some(id), false) = (client_id, st.client_gone) {
                let key = id_key(&id);
                let m = Message::error(id, code::UPSTREAM_UNAVAILABLE, "the upstream server is gone", None);
                let _ = self.client.send(ToClient {
                    msg: m.into_value(),
                    related: Some(key),
                });
            }
            return None;
        }
        st.next_up = st.next_up.saturating_add(1);
        let up = st.next_up;
        let mut progress = None;
        if let Message::Request { id, params, .. } = &mut msg {
            *id = Value::from(up);
            if let (Some(cid), Some(tok)) = (
                &client_id,
                params
                    .as_ref()
                    .and_then(|p| p.get("_meta"))
                    .and_then(|m| m.get("progressToken")),
            ) {
                let t = id_key(tok);
                st.progress.insert(t.clone(), id_key(cid));
                progress = Some(t);
            }
        }
        if let Some(cid) = &client_id {
            st.by_client.insert(id_key(cid), up);
        }
        st.pending.insert(
            up,
            Pending {
                client_id,
                kind,
                progress,
            },
        );
        let v = msg.into_value();
        trace("to upstream", &v);
        let _ = self.up.send(v);
        self.upstream_sent.notify_waiters();
        Some(up)
    }

    fn client_message(self: &Arc<Self>, msg: Message) {
        match msg {
            Message::Request { .. } => self.client_request(msg),
            Message::Notification { .. } => self.client_notification(msg),
            Message::Result { .. } | Message::Error { .. } => self.client_response(msg),
        }
    }

    fn client_request(self: &Arc<Self>, msg: Message) {
        let Message::Request { id, method, params } = &msg else {
            return;
        };
        let key = id_key(id);
        if let Some(p) = params {
            self.input_responses(p);
        }
        let declared = msg.declared_version().map(str::to_owned);
        let mut st = self.lock();
        if st.by_client.contains_key(&key) || st.evaluating.contains(&key) {
            drop(st);
            self.refuse_client(Malformed {
                code: code::INVALID_REQUEST,
                message: format!("request id {key} is already in flight"),
                id: None,
            });
            return;
        }
        let rev = match (&declared, st.rev) {
            (Some(v), _) => match Rev::parse(v).filter(|r| r.is_modern()) {
                Some(r) => {
                    st.modern_meta = params.as_ref().and_then(|p| p.get("_meta")).cloned();
                    Some(r)
                }
                None => {
                    drop(st);
                    self.to_client(
                        Message::error(
                            id.clone(),
                            code::UNSUPPORTED_PROTOCOL_VERSION,
                            "Unsupported protocol version",
                            Some(json!({"supported": MODERN_VERSIONS, "requested": v})),
                        ),
                        Some(key),
                    );
                    return;
                }
            },
            (None, r) => r,
        };
        let permitted = match rev {
            Some(r) => allowed(r, Dir::FromClient, true, method),
            None => allowed_before_version(method),
        };
        if !permitted {
            drop(st);
            let why = match rev {
                Some(r) => format!(
                    "method {method:?} is not allowed by HELM in protocol revision {}",
                    r.name()
                ),
                None => format!("method {method:?} before initialize"),
            };
            self.to_client(Message::error(id.clone(), code::METHOD_NOT_FOUND, why, None), Some(key));
            return;
        }
        match method.as_str() {
            "tools/call" | "resources/read" | "prompts/get" => {
                st.evaluating.insert(key);
                drop(st);
                let me = self.clone();
                let modern = rev.is_some_and(Rev::is_modern);
                tokio::spawn(async move { me.govern(msg, modern).await });
            }
            _ => {
                let kind = match method.as_str() {
                    "initialize" => {
                        let v = params
                            .as_ref()
                            .and_then(|p| p.get("protocolVersion"))
                            .and_then(Value::as_str);
                        if v.is_none() {
                            drop(st);
                            self.to_client(
                                Message::error(
                                    id.clone(),
                                    code::INVALID_PARAMS,
                                    "initialize needs protocolVersion",
                                    None,
                                ),
                                Some(key),
                            );
                            return;
                        }
                        Kind::Initialize
                    }
                    "server/discover" => Kind::Discover,
                    "tools/list" => Kind::ToolsList {
                        complete: params.as_ref().and_then(|p| p.get("cursor")).is_none(),
                    },
                    "tasks/result" => match params.as_ref().and_then(|p| p.get("taskId")).and_then(Value::as_str) {
                        Some(t) => Kind::TaskResult { task: t.to_owned() },
                        None => Kind::Plain,
                    },
                    "tasks/get" => match params.as_ref().and_then(|p| p.get("taskId")).and_then(Value::as_str) {
                        Some(t) => Kind::TaskGet { task: t.to_owned() },
                        None => Kind::Plain,
                    },
                    _ => Kind::Plain,
                };
                let cid = id.clone();
                self.forward(&mut st, msg, Some(cid), kind);
            }
        }
    }

    fn client_notification(self: &Arc<Self>, msg: Message) {
        let Message::Notification { method, params } = &msg else {
            return;
        };
        let mut st = self.lock();
        let rev = msg
            .declared_version()
            .and_then(Rev::parse)
            .or(st.rev)
            .unwrap_or(Rev::V2026_07_28);
        if !allowed(rev, Dir::FromClient, false, method) {
            log_warn!(
                "MCP {}: notification {method:?} from the client is not allowed in {}: dropped",
                self.server,
                rev.name()
            );
            return;
        }
        if method == "notifications/cancelled" {
            let Some(rid) = params.as_ref().and_then(|p| p.get("requestId")) else {
                return;
            };
            let key = id_key(rid);
            if st.evaluating.contains(&key) {
                st.cancelled.insert(key);
                return;
            }
            let Some(up) = st.by_client.remove(&key) else {
                return;
            };
            // The request is over for the client: a late answer is dropped, a forwarded
            // call's EFFECT is `aborted` now.
            let pending = st.pending.remove(&up);
            if let Some(t) = pending.as_ref().and_then(|p| p.progress.as_ref()) {
                st.progress.remove(t);
            }
            st.cancelled_up.insert(up);
            drop(st);
            let mut p = params.clone().unwrap_or_default();
            p.insert("requestId".into(), Value::from(up));
            let _ = self.up.send(
                Message::Notification {
                    method: method.clone(),
                    params: Some(p),
                }
                .into_value(),
            );
            if let Some(Pending {
                kind: Kind::Governed { intent, started, .. },
                ..
            }) = pending
            {
                let me = self.clone();
                tokio::spawn(async move {
                    me.report(
                        intent,
                        EffectStatus::Aborted,
                        b"cancelled by the client".to_vec(),
                        started,
                    )
                    .await
                });
            }
            return;
        }
        if !st.closed {
            let _ = self.up.send(msg.into_value());
        }
    }

    fn client_response(self: &Arc<Self>, msg: Message) {
        let (Message::Result { id, .. } | Message::Error { id, .. }) = &msg else {
            return;
        };
        let key = id_key(id);
        let entry = self.lock().server_reqs.remove(&key);
        let Some(recorded) = entry else {
            log_warn!(
                "MCP {}: a response from the client to no request of the server (id {key}): dropped",
                self.server
            );
            return;
        };
        if let Some((intent, started)) = recorded {
            let (status, output) = outcome(&msg);
            let me = self.clone();
            tokio::spawn(async move { me.report(intent, status, output, started).await });
        }
        let _ = self.up.send(msg.into_value());
    }

    /// Decides a governed request and forwards or answers it.
    async fn govern(self: Arc<Self>, msg: Message, modern: bool) {
        let Message::Request { id, method, .. } = &msg else {
            return;
        };
        let key = id_key(id);
        let decided = self.decide(&msg, modern).await;
        let (cancelled, closed) = {
            let mut st = self.lock();
            st.evaluating.remove(&key);
            (st.cancelled.remove(&key), st.closed)
        };
        match decided {
            Decided::Forward { intent, tool } => {
                if cancelled || closed {
                    let why = if cancelled {
                        "cancelled by the client before it was forwarded"
                    } else {
                        "the upstream server is gone"
                    };
                    if !cancelled {
                        self.to_client(
                            Message::error(id.clone(), code::UPSTREAM_UNAVAILABLE, why, None),
                            Some(key),
                        );
                    }
                    self.report(intent, EffectStatus::Aborted, why.as_bytes().to_vec(), Instant::now())
                        .await;
                    return;
                }
                let kind = Kind::Governed {
                    intent,
                    started: Instant::now(),
                    tool,
                };
                let cid = id.clone();
                let _ = method;
                let mut st = self.lock();
                self.forward(&mut st, msg, Some(cid), kind);
            }
            Decided::Answer(answer) => {
                if !cancelled {
                    self.to_client(answer, Some(key));
                }
            }
        }
    }

    async fn decide(self: &Arc<Self>, msg: &Message, modern: bool) -> Decided {
        let Message::Request { id, method, params } = msg else {
            return Decided::Answer(Message::error(Value::Null, code::INTERNAL_ERROR, "not a request", None));
        };
        let no_params = Map::new();
        let p = params.as_ref().unwrap_or(&no_params);
        let invalid = |m: &str| Decided::Answer(Message::error(id.clone(), code::INVALID_PARAMS, m, None));
        let (tool, args) = match method.as_str() {
            "tools/call" => {
                let Some(name) = p.get("name").and_then(Value::as_str) else {
                    return invalid("tools/call needs a string name");
                };
                let args = match p.get("arguments") {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(Value::Object(a)) => Value::Object(a.clone()),
                    Some(_) => return invalid("tools/call arguments must be an object"),
                };
                if let Some(answer) = self.check_pin(id, name, modern).await {
                    return Decided::Answer(answer);
                }
                let sent = self.lock().sent_params.remove(&id_key(id));
                if let Some(sent) = sent {
                    let decl = self.lock().params.get(name).cloned().unwrap_or_default();
                    if let Err(e) = super::params::check(&decl, &args, &sent) {
                        return Decided::Answer(Message::error(id.clone(), code::HEADER_MISMATCH, e, None));
                    }
                }
                (format!("{}/{name}", self.server), args)
            }
            "resources/read" => {
                let Some(uri) = p.get("uri").and_then(Value::as_str) else {
                    return invalid("resources/read needs a string uri");
                };
                (format!("{}:resources/read", self.server), json!({ "uri": uri }))
            }
            "prompts/get" => {
                let Some(name) = p.get("name").and_then(Value::as_str) else {
                    return invalid("prompts/get needs a string name");
                };
                let a = p.get("arguments").cloned().unwrap_or_else(|| json!({}));
                (
                    format!("{}:prompts/get", self.server),
                    json!({ "name": name, "arguments": a }),
                )
            }
            _ => return invalid("not a governed method"),
        };
        let (answer, args) = self.evaluate(&tool, args, Some(id_key(id))).await;
        let answer = self.wait_for_approval(answer, &tool, args, id).await;
        match answer.status {
            Status::Allow => match answer.intent {
                Some(intent) => Decided::Forward { intent, tool },
                None => Decided::Answer(self.denial(id, method, &answer, modern)),
            },
            Status::Deny | Status::Pending => {
                log_info!(
                    "MCP {} {}: {tool} {} ({})",
                    self.principal,
                    self.session,
                    if answer.status == Status::Deny {
                        "DENIED"
                    } else {
                        "PENDING APPROVAL"
                    },
                    answer.reason
                );
                Decided::Answer(self.denial(id, method, &answer, modern))
            }
        }
    }

    /// Decides `tool` with `args`; hands the arguments back (an escalated call is
    /// decided again with them), `Null` if the kernel's worker failed.
    async fn evaluate(&self, tool: &str, args: Value, call_id: Option<String>) -> (Answer, Value) {
        let proposal = Proposal {
            tool: tool.to_owned(),
            args: Args::Json(args),
            principal: self.principal.clone(),
            session: self.session.clone(),
            call_id: call_id.map(|mut c| {
                // At most 256 characters (cut at a character boundary, not copied char by char).
                if let Some((i, _)) = c.char_indices().nth(256) {
                    c.truncate(i);
                }
                c
            }),
        };
        let args = |p: Proposal| match p.args {
            Args::Json(v) => v,
            _ => Value::Null,
        };
        let kernel = self.shared.kernel.clone();
        if !kernel.is_durable() {
            // Buffered store: no fsync wait, a decision is some tens of microseconds of
            // CPU; a hop to the blocking pool would cost more than it saves.
            let a = kernel.evaluate(&proposal);
            return (a, args(proposal));
        }
        match tokio::task::spawn_blocking(move || (kernel.evaluate(&proposal), proposal)).await {
            Ok((a, p)) => (a, args(p)),
            Err(e) => (
                Answer::kernel_error(&format!("the kernel's worker stopped: {e}")),
                Value::Null,
            ),
        }
    }

    /// Holds a pending call for at most `escalation_wait_ms`, then answers with
    /// whatever the approval came to (the same call after a grant is allowed).
    async fn wait_for_approval(&self, mut answer: Answer, tool: &str, mut args: Value, id: &Value) -> Answer {
        let wait = Duration::from_millis(self.shared.settings.escalation_wait_ms);
        let deadline = Instant::now().checked_add(wait).unwrap_or_else(Instant::now);
        while answer.status == Status::Pending && Instant::now() < deadline {
            tokio::time::sleep(APPROVAL_POLL).await;
            let Some(aid) = answer.approval.as_ref().and_then(|a| hex32(&a.id).ok()) else {
                break;
            };
            let state = self.shared.kernel.approval(&aid).map(|a| a.state);
            if state.as_deref() != Some("pending") {
                (answer, args) = self.evaluate(tool, args, Some(id_key(id))).await;
            }
        }
        answer
    }

    fn denial(&self, id: &Value, method: &str, a: &Answer, modern: bool) -> Message {
        let decision = json!({
            "status": a.status,
            "reason": a.reason,
            "rule": a.rule,
            "intent": a.intent,
            "decision": a.decision,
            "approval": a.approval.as_ref().map(|p| json!({"id": p.id, "challenge": p.challenge, "role": p.role, "quorum": p.quorum, "expires": p.expires})),
        });
        let pending = a.status == Status::Pending;
        let text = if pending {
            format!(
                "HELM: this call needs an approval ({}), which has not been granted yet (approval id {}). \
                 Ask an approver, then make the same call again.",
                a.reason,
                a.approval.as_ref().map_or("?", |p| p.id.as_str())
            )
        } else {
            format!(
                "HELM denied this call: {}{}.",
                a.reason,
                a.rule.as_ref().map(|r| format!(" (rule {r})")).unwrap_or_default()
            )
        };
        if method == "tools/call" && self.shared.settings.deny_as == DenyAs::Result {
            let mut r = json!({
                "content": [{"type": "text", "text": text}],
                "isError": true,
                "_meta": {"helm/decision": decision},
            });
            if modern {
                if let Some(o) = r.as_object_mut() {
                    o.insert("resultType".into(), Value::String("complete".into()));
                }
            }
            return Message::Result {
                id: id.clone(),
                result: r,
            };
        }
        let c = if pending {
            code::HELM_APPROVAL_PENDING
        } else {
            code::HELM_DENIED
        };
        Message::error(id.clone(), c, text, Some(decision))
    }

    /// Checks the called tool's definition against its pin, listing the tools first
    /// if this conversation has not seen them. `Some(answer)` refuses the call.
    async fn check_pin(self: &Arc<Self>, id: &Value, name: &str, modern: bool) -> Option<Message> {
        let mut seen = None;
        for attempt in 0..2 {
            let rx = {
                let mut st = self.lock();
                // A listing older than `relist_ms` is read again before the call: a
                // server may change a definition without announcing it.
                let relist = self.shared.settings.relist_ms;
                let stale = relist > 0
                    && attempt == 0
                    && st.tools_at.is_some_and(|t| t.elapsed() > Duration::from_millis(relist));
                if stale && st.listing.is_none() {
                    st.tools = None;
                    st.tools_at = None;
                }
                if let Some(tools) = &st.tools {
                    match tools.get(name) {
                        Some(h) => {
                            seen = Some(*h);
                            break;
                        }
                        None if attempt > 0 => break,
                        None => {}
                    }
                }
                let (tx, rx) = oneshot::channel();
                match &mut st.listing {
                    Some(w) => w.push(tx),
                    None => {
                        st.listing = Some(vec![tx]);
                        self.inject_listing(&mut st, None);
                    }
                }
                rx
            };
            if tokio::time::timeout(LISTING_TIMEOUT, rx).await.is_err() {
                break;
            }
        }
        let unknown = |m: String| Some(Message::error(id.clone(), code::INVALID_PARAMS, m, None));
        let Some(hash) = seen else {
            return unknown(format!("unknown tool {name:?} (not in the server's tools/list)"));
        };
        if self.shared.pins.is_approved(&self.server, name, &hash) {
            return None;
        }
        let approved = self.shared.pins.approved(&self.server, name);
        let detail = match approved {
            Some(p) => format!(
                "call {} of {}/{name} refused: its definition sha256:{} is not the pinned sha256:{}",
                id_key(id),
                self.server,
                hex::encode(hash),
                hex::encode(p)
            ),
            None => format!(
                "call {} of {}/{name} refused: its definition sha256:{} is not approved",
                id_key(id),
                self.server,
                hex::encode(hash)
            ),
        };
        let kernel = self.shared.kernel.clone();
        let (principal, session) = (self.principal.clone(), self.session.clone());
        let d = detail.clone();
        let rec = tokio::task::spawn_blocking(move || {
            kernel.record_violation("TOOL_DEFINITION_CHANGED", Some(&hash), Some(&d), &principal, &session)
        })
        .await;
        let reason = match rec {
            Ok(Ok(_)) => "TOOL_DEFINITION_CHANGED",
            _ => "KERNEL_ERROR",
        };
        log_warn!("MCP {detail}");
        let a = Answer {
            status: Status::Deny,
            reason: reason.into(),
            rule: None,
            intent: None,
            decision: None,
            policy: None,
            approval: None,
            durable: self.shared.kernel.is_durable(),
            error: None,
        };
        let mut m = self.denial(id, "tools/call", &a, modern);
        // Name the definitions, so that an operator can approve the new one
        // (`POST /v1/mcp/pins` or `[[mcp.pin]]`).
        let extra = |d: &mut Value| {
            if let Some(o) = d.as_object_mut() {
                o.insert("definition".into(), Value::String(hex::encode(hash)));
                o.insert(
                    "pinned".into(),
                    approved.map_or(Value::Null, |p| Value::String(hex::encode(p))),
                );
            }
        };
        match &mut m {
            Message::Result { result, .. } => {
                if let Some(d) = result.get_mut("_meta").and_then(|x| x.get_mut("helm/decision")) {
                    extra(d);
                }
            }
            Message::Error { error, .. } => {
                if let Some(d) = error.get_mut("data") {
                    extra(d);
                }
            }
            _ => {}
        }
        Some(m)
    }

    fn inject_listing(&self, st: &mut State, cursor: Option<Value>) {
        let mut p = Map::new();
        if let Some(c) = cursor {
            p.insert("cursor".into(), c);
        }
        if let Some(meta) = &st.modern_meta {
            p.insert("_meta".into(), meta.clone());
        }
        let msg = Message::Request {
            id: Value::Null,
            method: "tools/list".into(),
            params: (!p.is_empty()).then_some(p),
        };
        if self.forward(st, msg, None, Kind::Injected).is_none() {
            for w in st.listing.take().unwrap_or_default() {
                let _ = w.send(());
            }
        }
    }

    /// Pins, filters and notes the tools of one `tools/list` page (blocking).
    fn process_listing(&self, result: &mut Value) -> Result<HashMap<String, Hash>, String> {
        let bundles = self.shared.kernel.bundles();
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return Err("the server's tools/list result has no tools array".into());
        };
        let mut seen = HashMap::new();
        let mut keep = Vec::with_capacity(tools.len());
        for t in tools.drain(..) {
            let Some(obj) = t.as_object() else { continue };
            let Some(name) = obj.get("name").and_then(Value::as_str) else {
                continue;
            };
            let def = match canonical_definition(obj) {
                Ok(d) => d,
                Err(e) => {
                    log_warn!("MCP {}/{name}: {e}: hidden", self.server);
                    continue;
                }
            };
            // 2026-07-28: a tool whose x-mcp-header annotations are invalid is dropped.
            let declared = match obj.get("inputSchema").map(super::params::declared) {
                None => Vec::new(),
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    log_warn!("MCP {}/{name}: invalid x-mcp-header ({e}): hidden", self.server);
                    continue;
                }
            };
            if declared.is_empty() {
                self.lock().params.remove(name);
            } else {
                self.lock().params.insert(name.to_owned(), declared);
            }
            let state = self
                .shared
                .pins
                .observe(&self.server, name, &def, &self.principal, &self.session);
            seen.insert(name.to_owned(), sha256(&def));
            let qualified = format!("{}/{name}", self.server);
            if state == PinState::Approved && may_be_allowed(bundles, &self.principal, &qualified) {
                keep.push(t);
            }
        }
        *tools = keep;
        Ok(seen)
    }

    /// One message (or batch) from the upstream. `related` is the upstream request on
    /// whose response stream it arrived, if the transport knows.
    pub async fn from_upstream(self: &Arc<Self>, v: Value, related: Option<u64>) {
        match v {
            Value::Array(items) => {
                for item in items {
                    Box::pin(self.upstream_message(item, related)).await;
                }
            }
            other => self.upstream_message(other, related).await,
        }
    }

    /// Bytes from the upstream (one line of stdio, one SSE event, one HTTP body).
    pub async fn from_upstream_bytes(self: &Arc<Self>, bytes: &[u8], related: Option<u64>) {
        if bytes.len() > self.shared.max_message() {
            self.upstream_violation(&format!(
                "a message of {} bytes from the upstream exceeds max_message_bytes",
                bytes.len()
            ))
            .await;
            return;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => self.from_upstream(v, related).await,
            Err(e) => {
                self.upstream_violation(&format!("the upstream sent something that is not JSON: {e}"))
                    .await
            }
        }
    }

    /// A message from the client larger than `max_message_bytes` (its id unknown).
    pub fn refuse_oversized(&self, n: usize) {
        self.refuse_client(Malformed {
            code: code::INVALID_REQUEST,
            message: format!(
                "message larger than {} bytes ({n} bytes)",
                self.shared.settings.max_message_bytes
            ),
            id: None,
        });
    }

    /// Logs a misbehaving upstream; the first time in a conversation, records a
    /// VIOLATION `PROTOCOL_VIOLATION`.
    pub async fn upstream_violation(&self, what: &str) {
        log_warn!("MCP {}: {what}: dropped", self.server);
        let first = {
            let mut st = self.lock();
            !core::mem::replace(&mut st.violation_recorded, true)
        };
        if first {
            let kernel = self.shared.kernel.clone();
            let (p, s, d) = (
                self.principal.clone(),
                self.session.clone(),
                format!("MCP {}: {what}", self.server),
            );
            let _ = tokio::task::spawn_blocking(move || {
                kernel.record_violation("PROTOCOL_VIOLATION", None, Some(&d), &p, &s)
            })
            .await;
        }
    }

    fn related_client(&self, st: &State, up: Option<u64>) -> Option<String> {
        up.and_then(|u| st.pending.get(&u))
            .and_then(|p| p.client_id.as_ref())
            .map(id_key)
    }

    async fn upstream_message(self: &Arc<Self>, v: Value, related: Option<u64>) {
        if tracing() {
            trace(&format!("from upstream (related {related:?})"), &v);
        }
        let msg = match Message::from_value(v) {
            Ok(m) => m,
            Err(m) => {
                self.upstream_violation(&format!("malformed JSON-RPC from the upstream: {}", m.message))
                    .await;
                if let Some(up) = m.id.and_then(|i| i.as_u64()) {
                    self.fail_pending(up, "the upstream answered with a malformed message")
                        .await;
                }
                return;
            }
        };
        match msg {
            Message::Result { .. } | Message::Error { .. } => self.upstream_response(msg).await,
            Message::Request { .. } => self.upstream_request(msg, related).await,
            Message::Notification { .. } => self.upstream_notification(msg, related),
        }
    }

    async fn fail_pending(&self, up: u64, why: &str) {
        let p = {
            let mut st = self.lock();
            let p = st.pending.remove(&up);
            if let Some(cid) = p.as_ref().and_then(|p| p.client_id.as_ref()) {
                st.by_client.remove(&id_key(cid));
            }
            p
        };
        let Some(p) = p else { return };
        if let Some(cid) = p.client_id {
            let key = id_key(&cid);
            self.to_client(Message::error(cid, code::UPSTREAM_UNAVAILABLE, why, None), Some(key));
        }
        if let Kind::Governed { intent, started, .. } = p.kind {
            self.report(intent, EffectStatus::Aborted, why.as_bytes().to_vec(), started)
                .await;
        }
    }

    async fn upstream_response(self: &Arc<Self>, msg: Message) {
        let (Message::Result { id, .. } | Message::Error { id, .. }) = &msg else {
            return;
        };
        let Some(up) = id.as_u64() else {
            self.upstream_violation(&format!("a response with id {id} the proxy never used"))
                .await;
            return;
        };
        let pending = {
            let mut st = self.lock();
            let p = st.pending.remove(&up);
            if let Some(p) = &p {
                if let Some(cid) = &p.client_id {
                    st.by_client.remove(&id_key(cid));
                }
                if let Some(t) = &p.progress {
                    st.progress.remove(t);
                }
            }
            p
        };
        let Some(p) = pending else {
            if !self.lock().cancelled_up.remove(&up) {
                self.upstream_violation(&format!("a response to no pending request (id {up})"))
                    .await;
            }
            return;
        };
        let mut msg = msg;
        if let Message::Result { result, .. } = &msg {
            if let Some(refusal) = self.govern_input_requests(result).await {
                msg = refusal;
            }
        }
        // The EFFECT to record once the answer is on its way.
        let mut effect = None;
        match (&p.kind, &mut msg) {
            (Kind::Initialize, Message::Result { result, .. }) => {
                let v = result.get("protocolVersion").and_then(Value::as_str).map(str::to_owned);
                match v.as_deref().and_then(Rev::parse).filter(|r| !r.is_modern()) {
                    Some(r) => {
                        self.lock().rev = Some(r);
                        log_info!("MCP {} {}: protocol revision {}", self.server, self.session, r.name());
                    }
                    None => {
                        msg = Message::error(
                            Value::Null,
                            code::INTERNAL_ERROR,
                            format!(
                                "the upstream chose protocol version {:?}, which HELM cannot govern (it speaks {})",
                                v.unwrap_or_default(),
                                KNOWN_VERSIONS.join(", ")
                            ),
                            None,
                        );
                    }
                }
            }
            (Kind::Discover, Message::Result { result, .. }) => {
                if let Some(list) = result.get_mut("supportedVersions").and_then(Value::as_array_mut) {
                    list.retain(|v| v.as_str().is_some_and(|s| KNOWN_VERSIONS.contains(&s)));
                }
            }
            (Kind::ToolsList { complete }, Message::Result { result, .. }) => {
                let complete = *complete && result.get("nextCursor").is_none_or(Value::is_null);
                let mut r = core::mem::take(result);
                let me = self.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let seen = me.process_listing(&mut r);
                    (r, seen)
                })
                .await;
                match done {
                    Ok((r, Ok(seen))) => {
                        *result = r;
                        let mut st = self.lock();
                        let fresh = match &mut st.tools {
                            Some(t) => {
                                t.extend(seen);
                                complete
                            }
                            None if complete => {
                                st.tools = Some(seen);
                                true
                            }
                            None => false,
                        };
                        if fresh {
                            st.tools_at = Some(Instant::now());
                        }
                    }
                    Ok((_, Err(e))) => msg = Message::error(Value::Null, code::INTERNAL_ERROR, e, None),
                    Err(e) => {
                        msg = Message::error(Value::Null, code::INTERNAL_ERROR, format!("listing failed: {e}"), None)
                    }
                }
            }
            (Kind::Injected, _) => {
                self.injected_done(msg).await;
                return;
            }
            (Kind::Governed { intent, started, tool }, _) => {
                let (status, output) = outcome(&msg);
                let task = match &msg {
                    // 2026-07-28 (extension io.modelcontextprotocol/tasks): a
                    // CreateTaskResult, `resultType: "task"` with the task's fields.
                    Message::Result { result, .. }
                        if result.get("resultType").and_then(Value::as_str) == Some("task") =>
                    {
                        result.get("taskId").and_then(Value::as_str).map(str::to_owned)
                    }
                    // 2025-11-25: `{task: {taskId, ...}}` in place of the content.
                    Message::Result { result, .. } if result.get("content").is_none() => result
                        .get("task")
                        .and_then(|t| t.get("taskId"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    _ => None,
                };
                match task {
                    Some(t) => {
                        log_info!("MCP {tool}: task {t}: its EFFECT is written when its result is delivered");
                        self.lock().tasks.insert(t, (intent.clone(), *started));
                    }
                    None => effect = Some((intent.clone(), status, output, *started)),
                }
            }
            (Kind::TaskResult { task }, _) => {
                let t = self.lock().tasks.remove(task);
                if let Some((intent, started)) = t {
                    let (status, output) = outcome(&msg);
                    effect = Some((intent, status, output, started));
                }
            }
            (Kind::TaskGet { task }, Message::Result { result, .. }) => {
                if let Some((status, output)) = result.as_object().and_then(|r| terminal_task(r, false)) {
                    if let Some((intent, started)) = self.lock().tasks.remove(task) {
                        effect = Some((intent, status, output, started));
                    }
                }
            }
            _ => {}
        }
        if let Some(cid) = p.client_id {
            match &mut msg {
                Message::Result { id, .. } | Message::Error { id, .. } => *id = cid.clone(),
                _ => {}
            }
            self.to_client(msg, Some(id_key(&cid)));
        }
        // The answer goes first (on the stdio runtime a task queued before the writer
        // would sign the EFFECT before the answer is written).
        if let Some((intent, status, output, started)) = effect {
            self.report_later(intent, status, output, started);
        }
    }

    async fn injected_done(self: &Arc<Self>, msg: Message) {
        let Message::Result { mut result, .. } = msg else {
            log_warn!("MCP {}: the server refused the proxy's tools/list", self.server);
            let mut st = self.lock();
            if st.tools.is_none() {
                st.tools = Some(HashMap::new());
                st.tools_at = Some(Instant::now());
            }
            for w in st.listing.take().unwrap_or_default() {
                let _ = w.send(());
            }
            return;
        };
        let cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
        let me = self.clone();
        let seen = tokio::task::spawn_blocking(move || me.process_listing(&mut result))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut st = self.lock();
        if st.tools.is_none() {
            st.tools_at = Some(Instant::now());
        }
        st.tools.get_or_insert_with(HashMap::new).extend(seen);
        match cursor {
            Some(c) => self.inject_listing(&mut st, Some(c)),
            None => {
                for w in st.listing.take().unwrap_or_default() {
                    let _ = w.send(());
                }
            }
        }
    }

    /// 2026-07-28 has no requests of the server to the client on their own: they travel
    /// inside results, as `inputRequests` of an InputRequiredResult (`resultType:
    /// "input_required"`) or of a task waiting for input (`status: "input_required"`).
    /// Each is decided like a server request of an earlier revision (`server:METHOD`
    /// with its params) and recorded, once per task and key however often a poll
    /// repeats it; its EFFECT is the client's response, when a request carries it in
    /// `inputResponses`. One refused, or one HELM cannot govern (not a client feature,
    /// malformed), refuses the whole result: the client gets a JSON-RPC error instead.
    async fn govern_input_requests(self: &Arc<Self>, result: &Value) -> Option<Message> {
        let waiting = result.get("resultType").and_then(Value::as_str) == Some("input_required")
            || result.get("status").and_then(Value::as_str) == Some("input_required");
        if !waiting {
            return None;
        }
        let scope = result
            .get("taskId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let refuse =
            |message: String, data: Value| Some(Message::error(Value::Null, code::HELM_DENIED, message, Some(data)));
        let requests = match result.get("inputRequests") {
            // A 2025-11-25 task in `input_required` names no requests: they come as
            // requests of the server on their own, decided in `upstream_request`.
            None => return None,
            Some(Value::Object(r)) => r,
            Some(_) => {
                return refuse(
                    "HELM refused the result: its inputRequests is not an object".into(),
                    json!({"reason": "MALFORMED_INPUT_REQUEST"}),
                )
            }
        };
        for (key, request) in requests {
            let id = (scope.clone(), key.clone());
            let (known, open) = {
                let st = self.lock();
                (st.input_reqs.get(&id).cloned(), st.input_reqs.len())
            };
            match known {
                Some(InputRequest::Allowed(..)) => continue,
                Some(InputRequest::Refused(message, data)) => return refuse(message, data),
                None => {}
            }
            if open >= MAX_INPUT_REQUESTS {
                return refuse(
                    format!("HELM refused the result: more than {MAX_INPUT_REQUESTS} input requests are open in this session"),
                    json!({"reason": "CAPACITY_EXHAUSTED", "input_request": key}),
                );
            }
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
            if !matches!(method, "sampling/createMessage" | "elicitation/create" | "roots/list") {
                log_warn!("MCP {}: input request {key:?} for {method:?} refused", self.server);
                return refuse(
                    format!("HELM refused the result: its input request {key:?} is for {method:?}, not a client feature HELM governs"),
                    json!({"reason": "METHOD_NOT_ALLOWED", "input_request": key}),
                );
            }
            let tool = format!("{}:{method}", self.server);
            let mut args = request
                .get("params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            args.remove("_meta");
            let call_id = if scope.is_empty() {
                format!("input:{key}")
            } else {
                format!("input:{scope}:{key}")
            };
            let (answer, _) = self.evaluate(&tool, Value::Object(args), Some(call_id)).await;
            let decided = match (answer.status, answer.intent) {
                (Status::Allow, Some(intent)) => InputRequest::Allowed(intent, Instant::now()),
                (status, _) => {
                    log_info!(
                        "MCP {}: input request {tool} {:?} ({})",
                        self.session,
                        status,
                        answer.reason
                    );
                    InputRequest::Refused(
                        format!("HELM refused {method} (input request {key:?}): {}", answer.reason),
                        json!({"reason": answer.reason, "decision": answer.decision, "input_request": key}),
                    )
                }
            };
            self.lock().input_reqs.insert(id, decided.clone());
            if let InputRequest::Refused(message, data) = decided {
                return refuse(message, data);
            }
        }
        None
    }

    /// The client's responses to input requests (`inputResponses` of a retried request
    /// or of `tasks/update`): the EFFECT of each allowed one.
    fn input_responses(self: &Arc<Self>, params: &serde_json::Map<String, Value>) {
        let Some(responses) = params.get("inputResponses").and_then(Value::as_object) else {
            return;
        };
        let scope = params
            .get("taskId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (key, response) in responses {
            let id = (scope.clone(), key.clone());
            let allowed = {
                let mut st = self.lock();
                // A refused one stays, so that a later poll is refused too.
                match st.input_reqs.get(&id) {
                    Some(InputRequest::Allowed(..)) => st.input_reqs.remove(&id),
                    _ => None,
                }
            };
            if let Some(InputRequest::Allowed(intent, started)) = allowed {
                let declined = response
                    .get("action")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a != "accept");
                let status = if declined {
                    EffectStatus::Aborted
                } else {
                    EffectStatus::Succeeded
                };
                let output = serde_json::to_vec(response).unwrap_or_default();
                self.report_later(intent, status, output, started);
            }
        }
    }

    async fn upstream_request(self: &Arc<Self>, msg: Message, related: Option<u64>) {
        let Message::Request { id, method, params } = &msg else {
            return;
        };
        let (rev, rel) = {
            let st = self.lock();
            (st.rev.unwrap_or(Rev::V2025_11_25), self.related_client(&st, related))
        };
        let refuse = |code: i64, m: String| {
            let _ = self.up.send(Message::error(id.clone(), code, m, None).into_value());
        };
        if !allowed(rev, Dir::FromServer, true, method) {
            log_warn!(
                "MCP {}: server request {method:?} not allowed in {}: refused",
                self.server,
                rev.name()
            );
            refuse(
                code::METHOD_NOT_FOUND,
                format!("method {method:?} is not allowed by HELM"),
            );
            return;
        }
        let key = id_key(id);
        if method == "ping" {
            self.lock().server_reqs.insert(key, None);
            self.to_client(msg, rel);
            return;
        }
        // sampling/createMessage, elicitation/create, roots/list: decided and recorded.
        let tool = format!("{}:{method}", self.server);
        let mut args = params.clone().unwrap_or_default();
        args.remove("_meta");
        let (answer, _) = self
            .evaluate(&tool, Value::Object(args), Some(format!("server:{key}")))
            .await;
        match (answer.status, answer.intent) {
            (Status::Allow, Some(intent)) => {
                self.lock().server_reqs.insert(key, Some((intent, Instant::now())));
                self.to_client(msg, rel);
            }
            (status, _) => {
                log_info!(
                    "MCP {}: server request {tool} {:?} ({})",
                    self.session,
                    status,
                    answer.reason
                );
                let _ = self.up.send(
                    Message::error(
                        id.clone(),
                        code::HELM_DENIED,
                        format!("HELM refused {method}: {}", answer.reason),
                        Some(json!({"reason": answer.reason, "decision": answer.decision})),
                    )
                    .into_value(),
                );
            }
        }
    }

    fn upstream_notification(self: &Arc<Self>, msg: Message, related: Option<u64>) {
        let Message::Notification { method, params } = &msg else {
            return;
        };
        let mut st = self.lock();
        let rev = st.rev.unwrap_or(Rev::V2026_07_28);
        if !allowed(rev, Dir::FromServer, false, method) {
            log_warn!(
                "MCP {}: notification {method:?} from the server is not allowed in {}: dropped",
                self.server,
                rev.name()
            );
            return;
        }
        let mut rel = self.related_client(&st, related);
        let mut effect = None;
        match method.as_str() {
            "notifications/tools/list_changed" => st.tools = None,
            // 2026-07-28: a task's status pushed; a terminal one carries the call's
            // result, like `tasks/get`.
            "notifications/tasks" => {
                if let Some(p) = params.as_ref() {
                    if p.get("status").and_then(Value::as_str) == Some("input_required") {
                        // Its input requests are decided first (as in a `tasks/get`
                        // result); refused, the push is dropped: a poll shows the refusal.
                        drop(st);
                        let (me, p) = (self.clone(), Value::Object(p.clone()));
                        tokio::spawn(async move {
                            match me.govern_input_requests(&p).await {
                                None => me.to_client(msg, rel),
                                Some(_) => log_warn!(
                                    "MCP {}: a task status push with a refused input request: dropped",
                                    me.server
                                ),
                            }
                        });
                        return;
                    }
                    let task = p.get("taskId").and_then(Value::as_str);
                    if let (Some(t), Some((status, output))) = (task, terminal_task(p, true)) {
                        if let Some((intent, started)) = st.tasks.remove(t) {
                            effect = Some((intent, status, output, started));
                        }
                    }
                }
            }
            "notifications/progress" => {
                if let Some(t) = params.as_ref().and_then(|p| p.get("progressToken")) {
                    if let Some(c) = st.progress.get(&id_key(t)) {
                        rel = Some(c.clone());
                    }
                }
            }
            "notifications/cancelled" => {
                if let Some(r) = params.as_ref().and_then(|p| p.get("requestId")) {
                    st.server_reqs.remove(&id_key(r));
                }
            }
            _ => {}
        }
        drop(st);
        self.to_client(msg, rel);
        if let Some((intent, status, output, started)) = effect {
            self.report_later(intent, status, output, started);
        }
    }

    /// The upstream is gone: every pending request gets an error, every forwarded call
    /// an EFFECT `aborted`.
    pub async fn upstream_closed(&self, why: &str) {
        let pending: Vec<u64> = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            for w in st.listing.take().unwrap_or_default() {
                let _ = w.send(());
            }
            st.pending.keys().copied().collect()
        };
        log_info!("MCP {} {}: upstream closed ({why})", self.server, self.session);
        for up in pending {
            self.fail_pending(up, &format!("the upstream server is gone: {why}"))
                .await;
        }
        let tasks: Vec<(String, Instant)> = self.lock().tasks.drain().map(|(_, v)| v).collect();
        for (intent, started) in tasks {
            self.report(
                intent,
                EffectStatus::Aborted,
                b"upstream closed before the task's result".to_vec(),
                started,
            )
            .await;
        }
    }

    async fn report(&self, intent: String, status: EffectStatus, output: Vec<u8>, started: Instant) {
        self.report_ms(intent, status, output, started.elapsed()).await;
    }

    /// Records an EFFECT whose call took `took`.
    async fn report_ms(&self, intent: String, status: EffectStatus, output: Vec<u8>, took: Duration) {
        let Ok(intent_hash) = hex32(&intent) else { return };
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let report = EffectReport {
            intent: intent_hash,
            principal: self.principal.clone(),
            status,
            output,
            executor: format!("mcp:{}", self.server),
            meters: vec![("duration_ms".into(), ms)],
            ext: None,
            blobs: Vec::new(),
        };
        let kernel = self.shared.kernel.clone();
        let outcome = if kernel.is_durable() {
            tokio::task::spawn_blocking(move || kernel.report_effect(&report))
                .await
                .map_err(|e| format!("worker failed: {e}"))
        } else {
            Ok(kernel.report_effect(&report))
        };
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(r)) => log_error!("MCP effect of INTENT {intent} refused: {}: {}", r.code, r.message),
            Err(e) => log_error!("MCP effect of INTENT {intent}: {e}"),
        }
    }

    /// Records an EFFECT off the answer's path: the answer is relayed at once, the
    /// record follows (a crash in between leaves the ALLOW without its EFFECT, which
    /// verification shows as an unused permit). [`Bridge::drain`] waits for them.
    ///
    /// With a buffered store the EFFECT is signed and appended on the runtime's
    /// thread, and a client that got its answer typically sends its next message at
    /// once: the EFFECT is recorded once that message has gone upstream (while the
    /// upstream works on it), or after [`EFFECT_DEFER`] at the latest, rather than in
    /// front of it. (A durable store records it on the blocking pool: at once, its
    /// fsync overlapping the client's next message.) Its `duration_ms` is the call's,
    /// measured now.
    fn report_later(self: &Arc<Self>, intent: String, status: EffectStatus, output: Vec<u8>, started: Instant) {
        self.inflight.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
        let took = started.elapsed();
        let me = self.clone();
        tokio::spawn(async move {
            if !me.shared.kernel.is_durable() {
                let _ = tokio::time::timeout(EFFECT_DEFER, me.upstream_sent.notified()).await;
            }
            // Then after the tasks already woken (the one writing that message
            // upstream among them): a task woken from a running one is run next
            // (tokio's LIFO slot), a yielding one after all those ready.
            tokio::task::yield_now().await;
            me.report_ms(intent, status, output, took).await;
            me.inflight.fetch_sub(1, core::sync::atomic::Ordering::AcqRel);
        });
    }

    /// Waits (at most `max`) until every EFFECT still being recorded is recorded.
    pub async fn drain(&self, max: Duration) {
        let t0 = Instant::now();
        while self.inflight.load(core::sync::atomic::Ordering::Acquire) > 0 && t0.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A 2026-07-28 task (a `tasks/get` result or `notifications/tasks` params) in a
/// terminal status: the EFFECT of its call. `completed` carries the call's result (a
/// tool error, `isError: true`, is a failed call), `failed` the JSON-RPC error,
/// `cancelled` nothing. `None` while it is working or waiting for input, and for a
/// 2025-11-25 `tasks/get` (its result comes from `tasks/result`).
fn terminal_task(task: &serde_json::Map<String, Value>, notification: bool) -> Option<(EffectStatus, Vec<u8>)> {
    // A 2026-07-28 `tasks/get` result MUST say `resultType: "complete"`; one of
    // 2025-11-25 has no resultType (and no result: that comes from `tasks/result`).
    if !notification && task.get("resultType").and_then(Value::as_str) != Some("complete") {
        return None;
    }
    match task.get("status").and_then(Value::as_str)? {
        "completed" => {
            let result = task.get("result")?;
            Some((result_status(result), serde_json::to_vec(result).unwrap_or_default()))
        }
        "failed" => Some((
            EffectStatus::Failed,
            serde_json::to_vec(task.get("error").unwrap_or(&Value::Null)).unwrap_or_default(),
        )),
        "cancelled" => Some((EffectStatus::Aborted, b"task cancelled".to_vec())),
        _ => None,
    }
}

/// The EFFECT status of a result: `failed` for `isError: true`, `aborted` for an
/// `input_required` interim result (the retry is a new call), else `succeeded`.
fn result_status(result: &Value) -> EffectStatus {
    if result.get("isError") == Some(&Value::Bool(true)) {
        EffectStatus::Failed
    } else if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        EffectStatus::Aborted
    } else {
        EffectStatus::Succeeded
    }
}

/// The EFFECT status and output of an answer: a result with `isError: true` or an
/// error is `failed`; an `input_required` interim result is `aborted` (the retry is a
/// new call); the output is the answer's JSON.
fn outcome(msg: &Message) -> (EffectStatus, Vec<u8>) {
    match msg {
        Message::Result { result, .. } => (result_status(result), serde_json::to_vec(result).unwrap_or_default()),
        Message::Error { error, .. } => (EffectStatus::Failed, serde_json::to_vec(error).unwrap_or_default()),
        _ => (EffectStatus::Failed, Vec::new()),
    }
}
