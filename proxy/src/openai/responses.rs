//! Responses API: the call items of a response, and the response the client gets.
//!
//! Governed items: `function_call` (JSON arguments), `custom_tool_call` (free text) and
//! the calls of built-in tools the client runs (`computer_call`, `local_shell_call`,
//! `shell_call`, `apply_patch_call`, any other `*_call` not known to run in the
//! upstream), decided as the tool `openai/<type>` with the item's action as arguments.
//! Items of hosted tools (web search, file search, code interpreter, image generation,
//! remote MCP) already ran inside the upstream and pass as they are.
//!
//! A denied call's item is replaced, at the same `output_index`, by a `message` item
//! stating the denial (rewrite mode), so indices stay as the client counts them.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::config::DenyMode;
use super::error::OaiError;
use super::govern::{describe, notice, Call, Input, Outcome};
use super::sse;

/// Item types of tools that run inside the upstream.
const HOSTED_ITEMS: [&str; 7] = [
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
];

/// Whether an item is a call the client would run.
pub(crate) fn governed(item: &Value) -> bool {
    let t = item.get("type").and_then(Value::as_str).unwrap_or("");
    t == "function_call" || t == "custom_tool_call" || (t.ends_with("_call") && !HOSTED_ITEMS.contains(&t))
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The call of a governed item.
pub(crate) fn call_of(item: &Value) -> Call {
    let t = item.get("type").and_then(Value::as_str).unwrap_or("");
    let truncated = item.get("status").and_then(Value::as_str) == Some("incomplete");
    let id = item.get("call_id").and_then(Value::as_str).map(str::to_owned);
    let (name, input) = match t {
        "function_call" => (s(item.get("name")), Input::Json(s(item.get("arguments")))),
        "custom_tool_call" => (s(item.get("name")), Input::Text(s(item.get("input")))),
        other => {
            let mut action = item.as_object().cloned().unwrap_or_default();
            for k in ["id", "type", "status", "call_id"] {
                action.remove(k);
            }
            (
                format!("openai/{}", other.strip_suffix("_call").unwrap_or(other)),
                Input::Value(Value::Object(action)),
            )
        }
    };
    Call {
        id,
        name,
        input,
        truncated,
        unsupported: false,
    }
}

/// The item that replaces a call the client does not get.
fn replacement(item: &Value, call: &Call, o: &Outcome) -> Value {
    let id = item.get("id").and_then(Value::as_str).unwrap_or("item");
    json!({
        "id": format!("msg_helm_{id}"),
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": notice(call, o), "annotations": []}],
    })
}

/// A non-streamed response's governed items: (position in `output`, call).
pub(crate) fn extract(resp: &Value) -> Vec<(usize, Call)> {
    resp.get("output")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter(|(_, it)| governed(it))
                .map(|(i, it)| (i, call_of(it)))
                .collect()
        })
        .unwrap_or_default()
}

/// The response the client gets (see the module documentation).
pub(crate) fn apply(
    resp: &mut Value,
    found: &[(usize, Call)],
    outcomes: &[Outcome],
    mode: DenyMode,
) -> Result<(), OaiError> {
    if mode == DenyMode::Error {
        let calls: Vec<Call> = found.iter().map(|(_, c)| c.clone()).collect();
        if let Some(e) = super::govern::refusal(&calls, outcomes) {
            return Err(e);
        }
    }
    if let Some(items) = resp.get_mut("output").and_then(Value::as_array_mut) {
        for ((pos, call), o) in found.iter().zip(outcomes) {
            if o.allowed() {
                continue;
            }
            if let Some(it) = items.get_mut(*pos) {
                *it = replacement(it, call, o);
            }
        }
    }
    Ok(())
}

/// The calls of a response that the client did not get, as (item type, call id, notice):
/// their outputs are supplied for the client when it continues the conversation with
/// `previous_response_id` (the upstream keeps the original items and wants an output
/// for each call).
pub(crate) type Withheld = Vec<(String, String, String)>;

fn withheld_of(item_type: &str, call: &Call, o: &Outcome) -> Option<(String, String, String)> {
    let id = call.id.clone()?;
    (!o.allowed() && matches!(item_type, "function_call" | "custom_tool_call"))
        .then(|| (item_type.to_owned(), id, notice(call, o)))
}

/// [`Withheld`] of a non-streamed response.
pub(crate) fn withheld(found: &[(usize, Call)], outcomes: &[Outcome], original: &[String]) -> Withheld {
    found
        .iter()
        .zip(outcomes)
        .zip(original)
        .filter_map(|(((_, c), o), t)| withheld_of(t, c, o))
        .collect()
}

/// The item types of the governed items of a response (before it is rewritten).
pub(crate) fn item_types(resp: &Value, found: &[(usize, Call)]) -> Vec<String> {
    let items = resp.get("output").and_then(Value::as_array);
    found
        .iter()
        .map(|(i, _)| {
            items
                .and_then(|l| l.get(*i))
                .and_then(|it| it.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Adds, in front of the request's `input`, the outputs of the calls withheld from the
/// client in the response it continues from (`[HELM]` notices, as the call's output).
pub(crate) fn supply_withheld(body: &mut serde_json::Map<String, Value>, withheld: &Withheld) {
    if withheld.is_empty() {
        return;
    }
    let mut items: Vec<Value> = match body.remove("input") {
        Some(Value::Array(l)) => l,
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let given: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("call_id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut front: Vec<Value> = withheld
        .iter()
        .filter(|(_, id, _)| !given.contains(id))
        .map(|(t, id, text)| json!({"type": format!("{t}_output"), "call_id": id, "output": text}))
        .collect();
    front.append(&mut items);
    body.insert("input".into(), Value::Array(front));
}

/// Whether a response body may hold a governed item (cheap test before parsing it).
pub(crate) fn may_have_calls(body: &[u8]) -> bool {
    // Every governed item type ends in `_call"`.
    static CALL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"_call\""));
    CALL.find(body).is_some()
}

/// What the stream driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send these bytes.
    Bytes(Vec<u8>),
    /// Decide the call of the item at this output index, then [`ResponsesStream::resolve`].
    Decide(u64, Call),
    /// A terminal event (`response.completed`, `.incomplete`, `.failed`): decide the
    /// calls [`ResponsesStream::terminal_calls`] names, then [`ResponsesStream::terminal`].
    Terminal(Value),
}

#[derive(Debug, Default)]
struct Buf {
    events: Vec<(Option<String>, Value)>,
    decided: bool,
}

/// The governor of a streamed response (sans-IO).
#[derive(Debug)]
pub(crate) struct ResponsesStream {
    mode: DenyMode,
    seq: u64,
    bufs: BTreeMap<u64, Buf>,
    /// Decided items by item id: the call, its outcome.
    decided: HashMap<String, (Call, Outcome)>,
    /// The response's id (from `response.created`).
    pub(crate) response_id: Option<String>,
    /// Calls withheld from the client.
    pub(crate) withheld: Withheld,
}

impl ResponsesStream {
    pub(crate) fn new(mode: DenyMode) -> ResponsesStream {
        ResponsesStream {
            mode,
            seq: 0,
            bufs: BTreeMap::new(),
            decided: HashMap::new(),
            response_id: None,
            withheld: Vec::new(),
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, event: Option<&str>, mut v: Value) {
        if let Some(n) = v.get_mut("sequence_number") {
            *n = json!(self.seq);
            self.seq = self.seq.saturating_add(1);
        }
        sse::encode_json(out, event, &v);
    }

    /// The calls of items still buffered (their stream ended before `output_item.done`).
    pub(crate) fn abandon(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        for (i, b) in &mut self.bufs {
            if b.decided {
                continue;
            }
            b.decided = true;
            if let Some((_, added)) = b.events.first() {
                let mut call = call_of(added.get("item").unwrap_or(&Value::Null));
                call.truncated = true;
                out.push(Step::Decide(*i, call));
            }
        }
        out
    }

    /// One upstream event.
    pub(crate) fn push(&mut self, ev: &sse::Event) -> Result<Vec<Step>, String> {
        if ev.data.trim() == "[DONE]" {
            let mut out = self.abandon();
            out.push(Step::Bytes(b"data: [DONE]\n\n".to_vec()));
            return Ok(out);
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("a stream event is not JSON: {e}"))?;
        if !v.is_object() {
            return Err("a stream event is not a JSON object".into());
        }
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("")
            .to_owned();
        let index = v.get("output_index").and_then(Value::as_u64);
        if self.response_id.is_none() {
            self.response_id = v.pointer("/response/id").and_then(Value::as_str).map(str::to_owned);
        }
        if kind == "response.output_item.added" {
            if let (Some(i), Some(item)) = (index, v.get("item")) {
                if governed(item) {
                    self.bufs.insert(
                        i,
                        Buf {
                            events: vec![(ev.event.clone(), v)],
                            decided: false,
                        },
                    );
                    return Ok(Vec::new());
                }
            }
        }
        if let Some(b) = index.and_then(|i| self.bufs.get_mut(&i)).filter(|b| !b.decided) {
            let done = kind == "response.output_item.done";
            let call = if done { v.get("item").map(call_of) } else { None };
            b.events.push((ev.event.clone(), v));
            if let (Some(i), Some(call)) = (index, call) {
                b.decided = true;
                return Ok(vec![Step::Decide(i, call)]);
            }
            return Ok(Vec::new());
        }
        if matches!(
            kind.as_str(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            let mut out = self.abandon();
            out.push(Step::Terminal(v));
            return Ok(out);
        }
        let mut out = Vec::new();
        self.emit(&mut out, ev.event.as_deref(), v);
        Ok(vec![Step::Bytes(out)])
    }

    /// After the decision for the item at `index`: its events as they came (allowed),
    /// or, rewritten, a message item stating the denial at the same index.
    pub(crate) fn resolve(&mut self, index: u64, call: &Call, o: &Outcome) -> Result<Vec<u8>, OaiError> {
        let mut out = Vec::new();
        sse::comment(&mut out, &format!("helm-call {}", describe(call, o)));
        if self.mode == DenyMode::Error && !o.allowed() {
            return Err(
                super::govern::refusal(core::slice::from_ref(call), core::slice::from_ref(o))
                    .unwrap_or_else(|| OaiError::policy("tool_call_denied", notice(call, o))),
            );
        }
        let events = self
            .bufs
            .get_mut(&index)
            .map(|b| core::mem::take(&mut b.events))
            .unwrap_or_default();
        let item = events
            .first()
            .and_then(|(_, v)| v.get("item"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            self.decided.insert(id.to_owned(), (call.clone(), o.clone()));
        }
        let item_type = item.get("type").and_then(Value::as_str).unwrap_or("");
        self.withheld.extend(withheld_of(item_type, call, o));
        if o.allowed() {
            for (name, v) in events {
                self.emit(&mut out, name.as_deref(), v);
            }
        } else {
            let msg = replacement(&item, call, o);
            for kind in ["response.output_item.added", "response.output_item.done"] {
                let v = json!({"type": kind, "output_index": index, "item": msg, "sequence_number": 0});
                self.emit(&mut out, Some(kind), v);
            }
        }
        Ok(out)
    }

    /// The governed items of a terminal event's response not decided in the stream.
    pub(crate) fn terminal_calls(&self, v: &Value) -> Vec<(usize, Call)> {
        let mut out = Vec::new();
        if let Some(items) = v.pointer("/response/output").and_then(Value::as_array) {
            for (i, it) in items.iter().enumerate() {
                let id = it.get("id").and_then(Value::as_str).unwrap_or("");
                if governed(it) && !self.decided.contains_key(id) {
                    out.push((i, call_of(it)));
                }
            }
        }
        out
    }

    /// The terminal event, its response's items rewritten as the stream was, plus the
    /// `extra` decisions for the items [`terminal_calls`](Self::terminal_calls) named.
    pub(crate) fn terminal(
        &mut self,
        mut v: Value,
        extra: &[(usize, Call)],
        outcomes: &[Outcome],
    ) -> Result<Vec<u8>, OaiError> {
        let mut out = Vec::new();
        for ((_, c), o) in extra.iter().zip(outcomes) {
            sse::comment(&mut out, &format!("helm-call {}", describe(c, o)));
        }
        if self.mode == DenyMode::Error {
            let calls: Vec<Call> = extra.iter().map(|(_, c)| c.clone()).collect();
            if let Some(e) = super::govern::refusal(&calls, outcomes) {
                return Err(e);
            }
        }
        if let Some(items) = v.pointer_mut("/response/output").and_then(Value::as_array_mut) {
            for (i, it) in items.iter_mut().enumerate() {
                if !governed(it) {
                    continue;
                }
                let id = it.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                let decided = self.decided.get(&id).map(|(c, o)| (c.clone(), o.clone())).or_else(|| {
                    extra
                        .iter()
                        .zip(outcomes)
                        .find(|((p, _), _)| *p == i)
                        .map(|((_, c), o)| (c.clone(), o.clone()))
                });
                let item_type = it.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
                let fresh = !self.decided.contains_key(&id);
                match decided {
                    Some((_, o)) if o.allowed() => {}
                    Some((c, o)) => {
                        if fresh {
                            self.withheld.extend(withheld_of(&item_type, &c, &o));
                        }
                        *it = replacement(it, &c, &o);
                    }
                    // Never decided (cannot happen: terminal_calls names them): not passed.
                    None => {
                        let o = Outcome::kernel_error();
                        *it = replacement(it, &call_of(it), &o);
                    }
                }
            }
        }
        let name = v.get("type").and_then(Value::as_str).map(str::to_owned);
        self.emit(&mut out, name.as_deref(), v);
        Ok(out)
    }

    /// An error event in the Responses stream form that the official clients raise.
    pub(crate) fn error_event(&mut self, e: &OaiError) -> Vec<u8> {
        let mut out = Vec::new();
        let mut v = e.body();
        if let Some(m) = v.as_object_mut() {
            m.insert("type".into(), json!("error"));
            m.insert("code".into(), json!(e.code));
            m.insert("message".into(), json!(e.message));
            m.insert("param".into(), Value::Null);
            m.insert("sequence_number".into(), json!(0));
        }
        self.emit(&mut out, Some("error"), v);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use helm_kernel::Status;

    use super::*;

    fn outcome(status: Status) -> Outcome {
        Outcome {
            status,
            reason: match status {
                Status::Allow => "POLICY_ALLOW",
                Status::Deny => "POLICY_DENY",
                Status::Pending => "POLICY_ESCALATE",
            }
            .into(),
            intent: Some("i".into()),
            decision: Some("d".into()),
            approval: (status == Status::Pending).then(|| "a".repeat(64)),
        }
    }

    #[test]
    fn withheld_outputs_are_supplied() {
        let w: Withheld = vec![("function_call".into(), "c2".into(), "[HELM] denied".into())];
        let mut b = json!({"input": "go on"}).as_object().cloned().unwrap();
        supply_withheld(&mut b, &w);
        assert_eq!(
            b["input"],
            json!([{"type": "function_call_output", "call_id": "c2", "output": "[HELM] denied"}, {"role": "user", "content": "go on"}])
        );
        // An output the client gives itself is not doubled.
        let mut b = json!({"input": [{"type": "function_call_output", "call_id": "c2", "output": "x"}]})
            .as_object()
            .cloned()
            .unwrap();
        supply_withheld(&mut b, &w);
        assert_eq!(b["input"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn items_are_classified() {
        assert!(governed(&json!({"type": "function_call"})));
        assert!(governed(&json!({"type": "custom_tool_call"})));
        assert!(governed(&json!({"type": "local_shell_call"})));
        assert!(!governed(&json!({"type": "web_search_call"})));
        assert!(!governed(&json!({"type": "message"})));
        let c = call_of(
            &json!({"type": "computer_call", "id": "cu_1", "call_id": "c", "status": "completed", "action": {"type": "click"}}),
        );
        assert_eq!(c.name, "openai/computer");
        assert_eq!(c.input, Input::Value(json!({"action": {"type": "click"}})));
    }

    #[test]
    fn non_streamed_replacement_keeps_indices() {
        let mut r = json!({"output": [
            {"type": "reasoning", "id": "rs_1"},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "read_file", "arguments": "{}"},
            {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "shell", "arguments": "{}"},
        ]});
        let f = extract(&r);
        assert_eq!(f.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
        apply(
            &mut r,
            &f,
            &[outcome(Status::Allow), outcome(Status::Pending)],
            DenyMode::Rewrite,
        )
        .unwrap();
        assert_eq!(r["output"][1]["type"], "function_call");
        assert_eq!(r["output"][2]["type"], "message");
        assert!(r["output"][2]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("needs approval aaaa"));
    }

    fn ev(kind: &str, v: Value) -> sse::Event {
        let mut v = v;
        v["type"] = json!(kind);
        v["sequence_number"] = json!(99);
        sse::Event {
            event: Some(kind.into()),
            data: v.to_string(),
        }
    }

    #[test]
    fn streamed_items_are_held_then_released_or_replaced() {
        let fc = |id: &str, call: &str, name: &str, args: &str| json!({"type": "function_call", "id": id, "call_id": call, "name": name, "arguments": args, "status": "completed"});
        let stream = vec![
            ev("response.created", json!({"response": {"output": []}})),
            ev(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"type": "message", "id": "m1"}}),
            ),
            ev(
                "response.output_text.delta",
                json!({"output_index": 0, "item_id": "m1", "delta": "Hi"}),
            ),
            ev(
                "response.output_item.done",
                json!({"output_index": 0, "item": {"type": "message", "id": "m1"}}),
            ),
            ev(
                "response.output_item.added",
                json!({"output_index": 1, "item": fc("fc_1", "c1", "read_file", "")}),
            ),
            ev(
                "response.function_call_arguments.delta",
                json!({"output_index": 1, "item_id": "fc_1", "delta": "{\"pa"}),
            ),
            ev(
                "response.function_call_arguments.delta",
                json!({"output_index": 1, "item_id": "fc_1", "delta": "th\":\"/w\"}"}),
            ),
            ev(
                "response.output_item.done",
                json!({"output_index": 1, "item": fc("fc_1", "c1", "read_file", "{\"path\":\"/w\"}")}),
            ),
            ev(
                "response.output_item.added",
                json!({"output_index": 2, "item": fc("fc_2", "c2", "shell", "")}),
            ),
            ev(
                "response.output_item.done",
                json!({"output_index": 2, "item": fc("fc_2", "c2", "shell", "{\"cmd\":\"rm\"}")}),
            ),
            ev(
                "response.completed",
                json!({"response": {"output": [
                    {"type": "message", "id": "m1"},
                    fc("fc_1", "c1", "read_file", "{\"path\":\"/w\"}"),
                    fc("fc_2", "c2", "shell", "{\"cmd\":\"rm\"}"),
                ]}}),
            ),
        ];
        let mut g = ResponsesStream::new(DenyMode::Rewrite);
        let mut out = Vec::new();
        let mut calls = Vec::new();
        for e in &stream {
            for step in g.push(e).unwrap() {
                match step {
                    Step::Bytes(b) => out.extend(b),
                    Step::Decide(i, c) => {
                        let o = outcome(if c.name == "shell" { Status::Deny } else { Status::Allow });
                        out.extend(g.resolve(i, &c, &o).unwrap());
                        calls.push(c);
                    }
                    Step::Terminal(v) => {
                        assert!(g.terminal_calls(&v).is_empty());
                        out.extend(g.terminal(v, &[], &[]).unwrap());
                    }
                }
            }
        }
        assert_eq!(calls[0].input, Input::Json("{\"path\":\"/w\"}".into()));
        let mut d = sse::Decoder::new(1 << 20);
        let mut evs = Vec::new();
        d.feed(&out, &mut evs).unwrap();
        let vals: Vec<Value> = evs.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        let seqs: Vec<u64> = vals.iter().map(|v| v["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..vals.len() as u64).collect::<Vec<_>>());
        let added_2: Vec<&Value> = vals
            .iter()
            .filter(|v| v["type"] == "response.output_item.added" && v["output_index"] == 2)
            .collect();
        assert_eq!(added_2.len(), 1);
        assert_eq!(added_2[0]["item"]["type"], "message");
        let done = vals.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        assert_eq!(done["response"]["output"][1]["type"], "function_call");
        assert_eq!(done["response"]["output"][2]["type"], "message");
        // Error mode: the denial is an error.
        let mut g = ResponsesStream::new(DenyMode::Error);
        let e = g.resolve(2, &calls[1], &outcome(Status::Deny)).unwrap_err();
        let bytes = g.error_event(&e);
        assert!(String::from_utf8(bytes).unwrap().contains("\"error\":{"));
    }
}
