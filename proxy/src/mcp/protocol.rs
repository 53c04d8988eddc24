//! MCP protocol revisions, the per-revision method allowlists and strict JSON-RPC 2.0
//! message parsing.
//!
//! Every message the interceptor relays is parsed here first. Anything that is not a
//! well-formed JSON-RPC 2.0 request, notification or response (or, where the revision
//! allows it, a batch of them) is refused; a method outside the allowlist of the
//! negotiated revision and direction is refused. The relayed bytes are always the
//! re-serialisation of the parsed value, so the upstream sees exactly what was decided
//! (a duplicate key cannot mean one thing to the policy and another to the server).

use serde_json::{Map, Value};

/// The protocol revisions the interceptor speaks, oldest first.
pub const KNOWN_VERSIONS: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

/// The revisions negotiated with `initialize` (sessions).
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The stateless revisions (per-request `_meta`, `server/discover`).
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// The `_meta` key carrying a modern request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC error codes used by the interceptor.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// A method outside the allowlist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The interceptor or the upstream failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// HELM refused the call (`deny_as = "error"`).
    pub const HELM_DENIED: i64 = -32010;
    /// HELM holds the call for an approval (`deny_as = "error"`).
    pub const HELM_APPROVAL_PENDING: i64 = -32011;
    /// The upstream server is gone or misbehaved.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32012;
    /// 2026-07-28: HTTP headers do not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A protocol revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rev {
    /// 2024-11-05: HTTP+SSE, initialize.
    V2024_11_05,
    /// 2025-03-26: Streamable HTTP, batches.
    V2025_03_26,
    /// 2025-06-18: no batches, elicitation, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: tasks.
    V2025_11_25,
    /// 2026-07-28: stateless, `server/discover`, per-request `_meta`.
    V2026_07_28,
}

impl Rev {
    /// The revision named `s`, if known.
    pub fn parse(s: &str) -> Option<Rev> {
        Some(match s {
            "2024-11-05" => Rev::V2024_11_05,
            "2025-03-26" => Rev::V2025_03_26,
            "2025-06-18" => Rev::V2025_06_18,
            "2025-11-25" => Rev::V2025_11_25,
            "2026-07-28" => Rev::V2026_07_28,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Rev::V2024_11_05 => "2024-11-05",
            Rev::V2025_03_26 => "2025-03-26",
            Rev::V2025_06_18 => "2025-06-18",
            Rev::V2025_11_25 => "2025-11-25",
            Rev::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether the revision is stateless (no `initialize`).
    pub fn is_modern(self) -> bool {
        self >= Rev::V2026_07_28
    }

    /// Whether JSON-RPC batches are allowed (only 2025-03-26 has them).
    pub fn batches(self) -> bool {
        self == Rev::V2025_03_26
    }
}

/// Who sends a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    FromClient,
    /// Server to client.
    FromServer,
}

/// One allowlist row: method, direction, request (true) or notification, first and
/// last revision.
type Row = (&'static str, Dir, bool, Rev, Rev);

use Dir::{FromClient as C, FromServer as S};
use Rev::{V2024_11_05 as R1, V2025_06_18 as R3, V2025_11_25 as R4, V2026_07_28 as R5};

/// The explicit allowlist (spec/… of each revision's schema). Everything else is refused.
const METHODS: &[Row] = &[
    // lifecycle and utilities
    ("initialize", C, true, R1, R4),
    ("ping", C, true, R1, R4),
    ("ping", S, true, R1, R4),
    ("server/discover", C, true, R5, R5),
    ("notifications/initialized", C, false, R1, R4),
    ("notifications/cancelled", C, false, R1, R5),
    ("notifications/cancelled", S, false, R1, R5),
    ("notifications/progress", C, false, R1, R4),
    ("notifications/progress", S, false, R1, R5),
    // server features
    ("tools/list", C, true, R1, R5),
    ("tools/call", C, true, R1, R5),
    ("resources/list", C, true, R1, R5),
    ("resources/templates/list", C, true, R1, R5),
    ("resources/read", C, true, R1, R5),
    ("resources/subscribe", C, true, R1, R4),
    ("resources/unsubscribe", C, true, R1, R4),
    ("prompts/list", C, true, R1, R5),
    ("prompts/get", C, true, R1, R5),
    ("completion/complete", C, true, R1, R5),
    ("logging/setLevel", C, true, R1, R4),
    ("subscriptions/listen", C, true, R5, R5),
    ("notifications/message", S, false, R1, R5),
    ("notifications/resources/updated", S, false, R1, R5),
    ("notifications/resources/list_changed", S, false, R1, R5),
    ("notifications/tools/list_changed", S, false, R1, R5),
    ("notifications/prompts/list_changed", S, false, R1, R5),
    ("notifications/subscriptions/acknowledged", S, false, R5, R5),
    // client features, requested by the server (governed and recorded)
    ("sampling/createMessage", S, true, R1, R4),
    ("roots/list", S, true, R1, R4),
    ("elicitation/create", S, true, R3, R4),
    ("notifications/roots/list_changed", C, false, R1, R4),
    ("notifications/elicitation/complete", S, false, R4, R4),
    // tasks (2025-11-25 core; 2026-07-28 extension io.modelcontextprotocol/tasks)
    ("tasks/get", C, true, R4, R5),
    ("tasks/result", C, true, R4, R4),
    ("tasks/list", C, true, R4, R4),
    ("tasks/cancel", C, true, R4, R5),
    ("tasks/update", C, true, R5, R5),
    ("notifications/tasks/status", S, false, R4, R4),
    ("notifications/tasks", S, false, R5, R5),
];

/// Whether `method` may be sent in direction `dir` as a request (`request`) or a
/// notification under revision `rev`.
pub fn allowed(rev: Rev, dir: Dir, request: bool, method: &str) -> bool {
    METHODS
        .iter()
        .any(|(m, d, r, from, to)| *m == method && *d == dir && *r == request && rev >= *from && rev <= *to)
}

/// Methods a client may send before a revision is settled: the legacy handshake and
/// the modern discovery probe (modern requests carry their revision themselves).
pub fn allowed_before_version(method: &str) -> bool {
    matches!(method, "initialize" | "server/discover" | "ping")
}

/// A JSON-RPC id: a string or an integer (null ids are refused: nothing can be routed).
pub fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// One parsed JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request: id, method, params.
    Request {
        /// Its id.
        id: Value,
        /// The method.
        method: String,
        /// Its params (an object, or absent).
        params: Option<Map<String, Value>>,
    },
    /// A notification.
    Notification {
        /// The method.
        method: String,
        /// Its params.
        params: Option<Map<String, Value>>,
    },
    /// A result.
    Result {
        /// The id of the request it answers.
        id: Value,
        /// The result.
        result: Value,
    },
    /// An error answer (the id may be null for errors about unparseable requests).
    Error {
        /// The id, or null.
        id: Value,
        /// The error object.
        error: Map<String, Value>,
    },
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// JSON-RPC code.
    pub code: i64,
    /// Why.
    pub message: String,
    /// The id, if one could be read.
    pub id: Option<Value>,
}

fn bad(code: i64, message: impl Into<String>, id: Option<Value>) -> Malformed {
    Malformed {
        code,
        message: message.into(),
        id,
    }
}

impl Message {
    /// Parses one JSON-RPC 2.0 message from a JSON value, strictly: `jsonrpc` is
    /// `"2.0"`, no members beyond the ones JSON-RPC defines, ids are strings or
    /// integers, params are an object, a response has exactly one of `result` and
    /// `error` and an error has an integer `code` and a string `message`.
    pub fn from_value(v: Value) -> Result<Message, Malformed> {
        let Value::Object(mut o) = v else {
            return Err(bad(code::INVALID_REQUEST, "a JSON-RPC message is an object", None));
        };
        let id = o.remove("id");
        let id_for_error = id.clone().filter(valid_id);
        if o.remove("jsonrpc") != Some(Value::String("2.0".into())) {
            return Err(bad(code::INVALID_REQUEST, "jsonrpc must be \"2.0\"", id_for_error));
        }
        let method = o.remove("method");
        let params = o.remove("params");
        let result = o.remove("result");
        let error = o.remove("error");
        if let Some(k) = o.keys().next() {
            return Err(bad(
                code::INVALID_REQUEST,
                format!("unknown member {k:?} in a JSON-RPC message"),
                id_for_error,
            ));
        }
        let params = match params {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => {
                return Err(bad(code::INVALID_PARAMS, "params must be an object", id_for_error));
            }
        };
        match (method, result, error) {
            (Some(Value::String(method)), None, None) => match id {
                None => Ok(Message::Notification { method, params }),
                Some(id) if valid_id(&id) => Ok(Message::Request { id, method, params }),
                Some(_) => Err(bad(
                    code::INVALID_REQUEST,
                    "a request id is a string or an integer",
                    None,
                )),
            },
            (Some(_), None, None) => Err(bad(code::INVALID_REQUEST, "method must be a string", id_for_error)),
            (None, Some(result), None) if params.is_none() => match id {
                Some(id) if valid_id(&id) => Ok(Message::Result { id, result }),
                _ => Err(bad(
                    code::INVALID_REQUEST,
                    "a result needs a string or integer id",
                    None,
                )),
            },
            (None, None, Some(Value::Object(error))) if params.is_none() => {
                let ok = error.get("code").is_some_and(|c| c.as_i64().is_some())
                    && error.get("message").is_some_and(Value::is_string)
                    && error.keys().all(|k| matches!(k.as_str(), "code" | "message" | "data"));
                if !ok {
                    return Err(bad(
                        code::INVALID_REQUEST,
                        "an error has an integer code, a string message and optional data",
                        id_for_error,
                    ));
                }
                match id {
                    Some(id) if valid_id(&id) || id.is_null() => Ok(Message::Error { id, error }),
                    _ => Err(bad(code::INVALID_REQUEST, "an error needs an id (or null)", None)),
                }
            }
            _ => Err(bad(
                code::INVALID_REQUEST,
                "not a request, notification or response",
                id_for_error,
            )),
        }
    }

    /// The message as JSON.
    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert("jsonrpc".into(), Value::String("2.0".into()));
        match self {
            Message::Request { id, method, params } => {
                o.insert("id".into(), id.clone());
                o.insert("method".into(), Value::String(method.clone()));
                if let Some(p) = params {
                    o.insert("params".into(), Value::Object(p.clone()));
                }
            }
            Message::Notification { method, params } => {
                o.insert("method".into(), Value::String(method.clone()));
                if let Some(p) = params {
                    o.insert("params".into(), Value::Object(p.clone()));
                }
            }
            Message::Result { id, result } => {
                o.insert("id".into(), id.clone());
                o.insert("result".into(), result.clone());
            }
            Message::Error { id, error } => {
                o.insert("id".into(), id.clone());
                o.insert("error".into(), Value::Object(error.clone()));
            }
        }
        Value::Object(o)
    }

    /// The message as JSON, without copying it.
    pub fn into_value(self) -> Value {
        let mut o = Map::new();
        o.insert("jsonrpc".into(), Value::String("2.0".into()));
        match self {
            Message::Request { id, method, params } => {
                o.insert("id".into(), id);
                o.insert("method".into(), Value::String(method));
                if let Some(p) = params {
                    o.insert("params".into(), Value::Object(p));
                }
            }
            Message::Notification { method, params } => {
                o.insert("method".into(), Value::String(method));
                if let Some(p) = params {
                    o.insert("params".into(), Value::Object(p));
                }
            }
            Message::Result { id, result } => {
                o.insert("id".into(), id);
                o.insert("result".into(), result);
            }
            Message::Error { id, error } => {
                o.insert("id".into(), id);
                o.insert("error".into(), Value::Object(error));
            }
        }
        Value::Object(o)
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    /// An error answer.
    pub fn error(id: Value, code: i64, message: impl Into<String>, data: Option<Value>) -> Message {
        let mut e = Map::new();
        e.insert("code".into(), Value::from(code));
        e.insert("message".into(), Value::String(message.into()));
        if let Some(d) = data {
            e.insert("data".into(), d);
        }
        Message::Error { id, error: e }
    }

    /// The modern revision a request declares in `params._meta`, if any.
    pub fn declared_version(&self) -> Option<&str> {
        let p = match self {
            Message::Request { params: Some(p), .. } | Message::Notification { params: Some(p), .. } => p,
            _ => return None,
        };
        p.get("_meta")?.get(META_PROTOCOL_VERSION)?.as_str()
    }
}

/// A parsed body: one message or a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// One message.
    One(Message),
    /// A batch (2025-03-26 only); each element parsed or refused on its own.
    Batch(Vec<Result<Message, Malformed>>),
}

/// Parses bytes as one message or a batch, within `max` bytes.
pub fn parse_bytes(bytes: &[u8], max: usize) -> Result<Incoming, Malformed> {
    if bytes.len() > max {
        return Err(bad(
            code::INVALID_REQUEST,
            format!("message larger than {max} bytes"),
            None,
        ));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(code::PARSE_ERROR, format!("not JSON: {e}"), None))?;
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad(code::INVALID_REQUEST, "an empty batch", None));
            }
            Ok(Incoming::Batch(items.into_iter().map(Message::from_value).collect()))
        }
        other => Message::from_value(other).map(Incoming::One),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn strict_messages() {
        let r = Message::from_value(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).unwrap();
        assert_eq!(r.method(), Some("tools/list"));
        let n = Message::from_value(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(n, Message::Notification { .. }));
        for bad in [
            json!({"jsonrpc":"1.0","id":1,"method":"x"}),
            json!({"id":1,"method":"x"}),
            json!({"jsonrpc":"2.0","id":1.5,"method":"x"}),
            json!({"jsonrpc":"2.0","id":null,"method":"x"}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","params":[1]}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","extra":true}),
            json!({"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}),
            json!({"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}),
            json!({"jsonrpc":"2.0","id":1}),
            json!([1]),
        ] {
            assert!(Message::from_value(bad.clone()).is_err(), "{bad}");
        }
        assert!(parse_bytes(b"{", 100).is_err());
        assert!(parse_bytes(b"[]", 100).is_err());
        assert!(parse_bytes(&[b' '; 101], 100).is_err());
        let round = json!({"jsonrpc":"2.0","id":"a","result":{"x":1}});
        assert_eq!(Message::from_value(round.clone()).unwrap().to_value(), round);
        assert_eq!(Message::from_value(round.clone()).unwrap().into_value(), round);
    }

    #[test]
    fn allowlists_follow_revisions() {
        assert!(allowed(Rev::V2025_11_25, Dir::FromClient, true, "tools/call"));
        assert!(!allowed(Rev::V2026_07_28, Dir::FromClient, true, "initialize"));
        assert!(allowed(Rev::V2026_07_28, Dir::FromClient, true, "server/discover"));
        assert!(!allowed(Rev::V2025_03_26, Dir::FromServer, true, "elicitation/create"));
        assert!(allowed(Rev::V2025_06_18, Dir::FromServer, true, "elicitation/create"));
        assert!(!allowed(Rev::V2025_06_18, Dir::FromClient, true, "tasks/get"));
        assert!(!allowed(Rev::V2025_11_25, Dir::FromClient, true, "admin/shutdown"));
        assert!(!allowed(Rev::V2025_11_25, Dir::FromServer, true, "tools/call"));
        assert!(Rev::V2025_03_26.batches() && !Rev::V2025_06_18.batches() && !Rev::V2024_11_05.batches());
        for v in KNOWN_VERSIONS {
            assert_eq!(Rev::parse(v).unwrap().name(), v);
        }
    }
}
