//! Chat Completions responses: the tool calls in them, and the response the client gets.
//!
//! Calls are found by their presence (`message.tool_calls`, the deprecated
//! `message.function_call`), never by `finish_reason`. A choice that ended with
//! `finish_reason: length` has its calls denied as truncated.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use serde_json::{json, Map, Value};

use super::config::DenyMode;
use super::error::OaiError;
use super::govern::{describe, notice, Call, Input, Outcome};
use super::sse;

/// A call found in a response: its choice, its position in `tool_calls` (`None`: the
/// deprecated `function_call`), the call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Found {
    pub(crate) choice: usize,
    pub(crate) pos: Option<usize>,
    pub(crate) call: Call,
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// One entry of `message.tool_calls` as a call.
fn call_of(tc: &Value, truncated: bool) -> Call {
    let kind = tc.get("type").and_then(Value::as_str);
    let custom = tc.get("custom");
    let function = tc.get("function");
    let (name, input, unsupported) = match (kind, custom, function) {
        (Some("custom") | None, Some(c), None) => (s(c.get("name")), Input::Text(s(c.get("input"))), false),
        (Some("function") | None, None, Some(f)) => {
            let input = match f.get("arguments") {
                // Some backends send the arguments as a JSON object, not as its text.
                Some(v @ Value::Object(_)) => Input::Value(v.clone()),
                other => Input::Json(s(other)),
            };
            (s(f.get("name")), input, false)
        }
        // Anything else cannot be governed: denied as invalid.
        _ => (
            s(function.or(custom).and_then(|x| x.get("name"))),
            Input::Text(tc.to_string()),
            true,
        ),
    };
    Call {
        id: tc.get("id").and_then(Value::as_str).map(str::to_owned),
        name,
        input,
        truncated,
        unsupported,
    }
}

/// Every tool call of a (non-streamed) response.
pub(crate) fn extract(resp: &Value) -> Vec<Found> {
    let mut out = Vec::new();
    let Some(choices) = resp.get("choices").and_then(Value::as_array) else {
        return out;
    };
    for (ci, c) in choices.iter().enumerate() {
        let truncated = c.get("finish_reason").and_then(Value::as_str) == Some("length");
        let Some(m) = c.get("message") else { continue };
        match m.get("tool_calls") {
            Some(Value::Array(list)) => {
                for (pos, tc) in list.iter().enumerate() {
                    out.push(Found {
                        choice: ci,
                        pos: Some(pos),
                        call: call_of(tc, truncated),
                    });
                }
            }
            Some(Value::Null) | None => {}
            // Not an array: whatever it is, it is not passed.
            Some(other) => out.push(Found {
                choice: ci,
                pos: Some(usize::MAX),
                call: Call {
                    id: None,
                    name: String::new(),
                    input: Input::Text(other.to_string()),
                    truncated,
                    unsupported: true,
                },
            }),
        }
        if let Some(fc) = m.get("function_call").filter(|v| !v.is_null()) {
            out.push(Found {
                choice: ci,
                pos: None,
                call: Call {
                    id: None,
                    name: s(fc.get("name")),
                    input: Input::Text(s(fc.get("arguments"))),
                    truncated,
                    unsupported: true,
                },
            });
        }
    }
    out
}

/// Whether the response text may hold a tool call at all (a cheap test before parsing
/// in detail; false negatives are impossible: every call has one of these keys).
pub(crate) fn may_have_calls(body: &[u8]) -> bool {
    static TOOL_CALLS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"tool_calls\""));
    static FUNCTION_CALL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"function_call\""));
    TOOL_CALLS.find(body).is_some() || FUNCTION_CALL.find(body).is_some()
}

/// Whether the text has a `\u` (a JSON escape could spell a key the plain searches miss).
pub(crate) fn has_unicode_escape(hay: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', hay).any(|i| hay.get(i..).is_some_and(|r| r.starts_with(b"\\u")))
}

fn append_text(m: &mut Map<String, Value>, text: &str) {
    let new = match m.get("content") {
        Some(Value::String(c)) if !c.is_empty() => format!("{c}\n\n{text}"),
        _ => text.to_owned(),
    };
    m.insert("content".into(), Value::String(new));
}

/// The response the client gets: allowed calls stay; in rewrite mode the others are
/// removed and stated in the message's content (a choice left without calls ends with
/// `stop`); in error mode any call not allowed refuses the whole response.
pub(crate) fn apply(resp: &mut Value, found: &[Found], outcomes: &[Outcome], mode: DenyMode) -> Result<(), OaiError> {
    if mode == DenyMode::Error {
        let calls: Vec<Call> = found.iter().map(|f| f.call.clone()).collect();
        if let Some(e) = super::govern::refusal(&calls, outcomes) {
            return Err(e);
        }
    }
    let Some(choices) = resp.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (ci, c) in choices.iter_mut().enumerate() {
        let mine: Vec<(&Found, &Outcome)> = found.iter().zip(outcomes).filter(|(f, _)| f.choice == ci).collect();
        if mine.is_empty() {
            continue;
        }
        let Some(Value::Object(m)) = c.get_mut("message") else {
            continue;
        };
        let mut texts = Vec::new();
        let mut kept = Vec::new();
        let old = match m.remove("tool_calls") {
            Some(Value::Array(l)) => l,
            _ => Vec::new(),
        };
        for (pos, tc) in old.into_iter().enumerate() {
            match mine.iter().find(|(f, _)| f.pos == Some(pos)) {
                Some((_, o)) if o.allowed() => kept.push(tc),
                Some((f, o)) => texts.push(notice(&f.call, o)),
                None => {}
            }
        }
        for (f, o) in &mine {
            if f.pos.is_none() || f.pos == Some(usize::MAX) {
                m.remove("function_call");
                texts.push(notice(&f.call, o));
            }
        }
        let any_kept = !kept.is_empty();
        if any_kept {
            m.insert("tool_calls".into(), Value::Array(kept));
        }
        if !texts.is_empty() {
            append_text(m, &texts.join("\n"));
        }
        if !any_kept {
            if let Some(Value::Object(co)) = Some(&mut *c) {
                if matches!(
                    co.get("finish_reason").and_then(Value::as_str),
                    Some("tool_calls" | "function_call")
                ) {
                    co.insert("finish_reason".into(), json!("stop"));
                }
            }
        }
    }
    Ok(())
}

/// One call being assembled from stream fragments.
#[derive(Clone, Debug, Default)]
struct BufCall {
    index: u64,
    id: Option<String>,
    name: String,
    args: String,
    custom: bool,
    unsupported: bool,
}

/// A chunk whose tool-call fragments are held: the chunk (with its one choice's delta
/// emptied) and the fragments, each with the position of its call.
#[derive(Clone, Debug)]
struct Held {
    template: Value,
    entries: Vec<(usize, Value)>,
}

#[derive(Clone, Debug, Default)]
struct ChoiceBuf {
    calls: Vec<BufCall>,
    held: Vec<Held>,
    finish: Option<Value>,
    decided: bool,
}

/// What the stream driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send these bytes.
    Bytes(Vec<u8>),
    /// Decide these calls of a choice, then [`ChatStream::resolve`].
    Decide(u64, Vec<Call>),
}

/// The governor of a streamed Chat Completion (sans-IO): events in, steps out.
#[derive(Debug)]
pub(crate) struct ChatStream {
    mode: DenyMode,
    choices: BTreeMap<u64, ChoiceBuf>,
}

fn choice_template(chunk: &Map<String, Value>, choice: &Map<String, Value>) -> Value {
    let mut t = chunk.clone();
    t.remove("usage");
    let mut c = choice.clone();
    c.insert("delta".into(), json!({}));
    c.insert("finish_reason".into(), Value::Null);
    t.insert("choices".into(), Value::Array(vec![Value::Object(c)]));
    Value::Object(t)
}

fn data(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    sse::encode_json(&mut out, None, v);
    out
}

impl ChatStream {
    pub(crate) fn new(mode: DenyMode) -> ChatStream {
        ChatStream {
            mode,
            choices: BTreeMap::new(),
        }
    }

    /// The calls of choices still undecided, as truncated (the stream ends or broke).
    pub(crate) fn abandon(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        for (i, c) in &mut self.choices {
            if !c.decided && !c.calls.is_empty() {
                c.decided = true;
                out.push(Step::Decide(*i, calls_of(&c.calls, true)));
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
        let (v, repeated) =
            super::json::parse(ev.data.as_bytes()).map_err(|e| format!("a stream chunk is not JSON: {e}"))?;
        let Value::Object(mut chunk) = v else {
            return Err("a stream chunk is not a JSON object".into());
        };
        // A chunk passed unchanged goes as the upstream wrote it (not re-encoded), unless
        // a key repeats (a client could then read it otherwise than it was governed).
        let bytes = |chunk: Map<String, Value>, changed: bool| {
            if changed || repeated {
                data(&Value::Object(chunk))
            } else {
                let mut out = Vec::with_capacity(ev.data.len().saturating_add(8));
                sse::encode(&mut out, None, &ev.data);
                out
            }
        };
        if chunk.contains_key("error") {
            let mut out = self.abandon();
            out.push(Step::Bytes(bytes(chunk, false)));
            return Ok(out);
        }
        let mut decide = Vec::new();
        let choices = chunk.remove("choices");
        if let Some(Value::Array(list)) = choices {
            let had_choices = !list.is_empty();
            // Whether anything of the chunk is removed or held.
            let mut changed = false;
            let mut kept = Vec::new();
            for choice in list {
                let Value::Object(mut choice) = choice else {
                    return Err("a stream choice is not a JSON object".into());
                };
                let idx = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                let buf = self.choices.entry(idx).or_default();
                let mut entries = Vec::new();
                if let Some(Value::Object(delta)) = choice.get_mut("delta") {
                    let tool_calls = delta.remove("tool_calls");
                    let function_call = delta.remove("function_call");
                    changed |= tool_calls.is_some() || function_call.is_some();
                    match tool_calls {
                        Some(Value::Array(tcs)) => {
                            for tc in tcs {
                                let pos = buf.absorb(&tc);
                                entries.push((pos, tc));
                            }
                        }
                        Some(Value::Null) | None => {}
                        Some(other) => {
                            let pos = buf.absorb_unsupported(&other);
                            entries.push((pos, other));
                        }
                    }
                    if let Some(fc) = function_call.filter(|v| !v.is_null()) {
                        let pos = buf.absorb_unsupported(&fc);
                        entries.push((pos, Value::Null));
                    }
                }
                if !entries.is_empty() {
                    // The chunk as a template (its delta and finish_reason emptied: made
                    // only for chunks with fragments to hold).
                    let template = choice_template(&chunk, &choice);
                    buf.held.push(Held { template, entries });
                }
                let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                if finished && !buf.calls.is_empty() && !buf.decided {
                    let truncated = choice.get("finish_reason").and_then(Value::as_str) == Some("length");
                    let mut t = chunk.clone();
                    t.remove("usage");
                    t.insert("choices".into(), Value::Array(vec![Value::Object(choice)]));
                    buf.finish = Some(Value::Object(t));
                    buf.decided = true;
                    decide.push(Step::Decide(idx, calls_of(&buf.calls, truncated)));
                    changed = true;
                    continue;
                }
                let empty_delta = choice.get("delta").and_then(Value::as_object).is_none_or(Map::is_empty);
                let logprobs = choice.get("logprobs").is_some_and(|l| !l.is_null());
                if empty_delta && !finished && !logprobs {
                    changed = true;
                    continue;
                }
                kept.push(Value::Object(choice));
            }
            let keep_chunk = !kept.is_empty() || !had_choices || chunk.get("usage").is_some_and(|u| !u.is_null());
            chunk.insert("choices".into(), Value::Array(kept));
            let mut out = Vec::new();
            if keep_chunk {
                out.push(Step::Bytes(bytes(chunk, changed)));
            }
            out.extend(decide);
            return Ok(out);
        }
        // `choices` that is not an array is not passed.
        Ok(vec![Step::Bytes(bytes(chunk, choices.is_some()))])
    }

    /// The bytes that follow the decisions for choice `idx`: allowed calls as their
    /// original chunks (indices renumbered 0, 1, ... per choice), the denial notice,
    /// governance comments, the held finish chunk. In error mode a call not allowed is
    /// an error (the driver sends it as an error event and ends the stream).
    pub(crate) fn resolve(&mut self, idx: u64, calls: &[Call], outcomes: &[Outcome]) -> Result<Vec<u8>, OaiError> {
        let mut out = Vec::new();
        for (c, o) in calls.iter().zip(outcomes) {
            sse::comment(&mut out, &format!("helm-call {}", describe(c, o)));
        }
        if self.mode == DenyMode::Error {
            if let Some(e) = super::govern::refusal(calls, outcomes) {
                return Err(e);
            }
        }
        let Some(buf) = self.choices.get_mut(&idx) else {
            return Ok(out);
        };
        let mut renumber: Vec<Option<u64>> = Vec::with_capacity(buf.calls.len());
        let mut next = 0u64;
        for o in outcomes {
            if o.allowed() {
                renumber.push(Some(next));
                next = next.saturating_add(1);
            } else {
                renumber.push(None);
            }
        }
        let mut last_template = None;
        for h in buf.held.drain(..) {
            let mut entries = Vec::new();
            for (pos, mut e) in h.entries {
                if let Some(Some(n)) = renumber.get(pos) {
                    if let Some(m) = e.as_object_mut() {
                        m.insert("index".into(), json!(n));
                        entries.push(e);
                    }
                }
            }
            let mut t = h.template;
            if !entries.is_empty() {
                if let Some(Value::Object(d)) = t.pointer_mut("/choices/0/delta") {
                    d.insert("tool_calls".into(), Value::Array(entries));
                }
                out.extend(data(&t));
            }
            last_template = Some(t);
        }
        let texts: Vec<String> = calls
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| !o.allowed())
            .map(|(c, o)| notice(c, o))
            .collect();
        if let (false, Some(mut t)) = (texts.is_empty(), last_template) {
            if let Some(Value::Object(d)) = t.pointer_mut("/choices/0/delta") {
                d.clear();
                d.insert("content".into(), Value::String(format!("\n\n{}", texts.join("\n"))));
            }
            out.extend(data(&t));
        }
        if let Some(mut f) = buf.finish.take() {
            if next == 0 {
                if let Some(fr) = f.pointer_mut("/choices/0/finish_reason") {
                    if matches!(fr.as_str(), Some("tool_calls" | "function_call")) {
                        *fr = json!("stop");
                    }
                }
            }
            if let Some(Value::Object(d)) = f.pointer_mut("/choices/0/delta") {
                d.remove("tool_calls");
            }
            out.extend(data(&f));
        }
        buf.calls.clear();
        Ok(out)
    }
}

fn calls_of(bufs: &[BufCall], truncated: bool) -> Vec<Call> {
    bufs.iter()
        .map(|b| Call {
            id: b.id.clone(),
            name: b.name.clone(),
            input: if b.custom {
                Input::Text(b.args.clone())
            } else {
                Input::Json(b.args.clone())
            },
            truncated,
            unsupported: b.unsupported,
        })
        .collect()
}

impl ChoiceBuf {
    /// Adds one `tool_calls` fragment; returns its call's position. A fragment with an
    /// id other than the current call's at its index starts a new call (some backends
    /// reuse index 0 for parallel calls); one without an id continues the current call.
    fn absorb(&mut self, tc: &Value) -> usize {
        let index = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let current = self.calls.iter().rposition(|c| c.index == index);
        let pos = match (current, id) {
            (Some(p), None) => p,
            (Some(p), Some(id)) if self.calls.get(p).is_some_and(|c| c.id.as_deref() == Some(id)) => p,
            (Some(p), Some(id)) if self.calls.get(p).is_some_and(|c| c.id.is_none() && c.args.is_empty()) => {
                if let Some(c) = self.calls.get_mut(p) {
                    c.id = Some(id.to_owned());
                }
                p
            }
            _ => {
                self.calls.push(BufCall {
                    index,
                    id: id.map(str::to_owned),
                    ..BufCall::default()
                });
                self.calls.len().saturating_sub(1)
            }
        };
        if let Some(c) = self.calls.get_mut(pos) {
            let kind = tc.get("type").and_then(Value::as_str);
            let (part, custom) = match (tc.get("function"), tc.get("custom")) {
                (Some(f), None) => (Some(f), false),
                (None, Some(x)) => (Some(x), true),
                (None, None) => (None, kind == Some("custom")),
                (Some(_), Some(_)) => {
                    c.unsupported = true;
                    (None, false)
                }
            };
            if custom {
                c.custom = true;
            }
            if matches!(kind, Some(k) if k != "function" && k != "custom") {
                c.unsupported = true;
            }
            if let Some(p) = part {
                if let Some(n) = p.get("name").and_then(Value::as_str) {
                    // Some backends repeat the whole name in every fragment.
                    if c.name != n {
                        c.name.push_str(n);
                    }
                }
                let frag = if custom { p.get("input") } else { p.get("arguments") };
                if let Some(a) = frag.and_then(Value::as_str) {
                    c.args.push_str(a);
                }
            }
        }
        pos
    }

    fn absorb_unsupported(&mut self, v: &Value) -> usize {
        self.calls.push(BufCall {
            index: u64::MAX,
            id: None,
            name: v.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            args: v.to_string(),
            custom: true,
            unsupported: true,
        });
        self.calls.len().saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use helm_kernel::Status;

    use super::*;

    fn allow() -> Outcome {
        Outcome {
            status: Status::Allow,
            reason: "POLICY_ALLOW".into(),
            intent: Some("i".into()),
            decision: Some("d".into()),
            approval: None,
        }
    }

    fn deny() -> Outcome {
        Outcome {
            status: Status::Deny,
            reason: "POLICY_DENY".into(),
            intent: Some("i2".into()),
            decision: Some("d2".into()),
            approval: None,
        }
    }

    #[test]
    fn non_streamed_rewrite() {
        let mut r = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"/w\"}"}},
            {"id": "c2", "type": "custom", "custom": {"name": "patch", "input": "*** Begin"}},
        ]}}]});
        let f = extract(&r);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].call.input, Input::Text("*** Begin".into()));
        assert!(may_have_calls(r.to_string().as_bytes()));
        for (text, calls, escape) in [
            (r#"{"choices":[{"message":{"content":"hi"}}]}"#, false, false),
            (r#"{"message":{"tool_calls":[]}}"#, true, false),
            (r#"{"message":{"function_call":null}}"#, true, false),
            (r#"{"message":{"tool\u005fcalls":[]}}"#, false, true),
            (r#"{"content":"a\\u"}"#, false, true),
            (r#"{"content":"a\n\\"}"#, false, false),
            (r#"\"#, false, false),
            ("", false, false),
        ] {
            assert_eq!(may_have_calls(text.as_bytes()), calls, "{text}");
            assert_eq!(has_unicode_escape(text.as_bytes()), escape, "{text}");
        }
        let mut e = r.clone();
        assert_eq!(
            apply(&mut e, &f, &[allow(), deny()], DenyMode::Error)
                .unwrap_err()
                .status
                .as_u16(),
            403
        );
        apply(&mut r, &f, &[allow(), deny()], DenyMode::Rewrite).unwrap();
        let m = &r["choices"][0]["message"];
        assert_eq!(m["tool_calls"].as_array().unwrap().len(), 1);
        assert!(m["content"].as_str().unwrap().contains("(c2) was denied: POLICY_DENY"));
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        let mut r2 = r.clone();
        let f2 = extract(&r2);
        apply(&mut r2, &f2, &[deny()], DenyMode::Rewrite).unwrap();
        assert!(r2["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(r2["choices"][0]["finish_reason"], "stop");
        // Arguments as an object (some backends): decided as they are.
        let o = json!({"choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [{"id": "x", "type": "function", "function": {"name": "a", "arguments": {"k": 1}}}]}}]});
        assert_eq!(extract(&o)[0].call.input, Input::Value(json!({"k": 1})));
        // Truncated choices.
        let t = json!({"choices": [{"finish_reason": "length", "message": {"tool_calls": [{"id": "x", "function": {"name": "a", "arguments": "{"}}]}}]});
        assert!(extract(&t)[0].call.truncated);
    }

    fn events(chunks: &[Value]) -> Vec<sse::Event> {
        let mut v: Vec<sse::Event> = chunks
            .iter()
            .map(|c| sse::Event {
                event: None,
                data: c.to_string(),
            })
            .collect();
        v.push(sse::Event {
            event: None,
            data: "[DONE]".into(),
        });
        v
    }

    fn chunk(choice: Value) -> Value {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]})
    }

    /// Runs a stream through the governor with `decide` as the kernel; returns the
    /// events the client gets.
    fn run(chunks: &[Value], decide: &dyn Fn(&Call) -> Outcome, mode: DenyMode) -> (Vec<Value>, Vec<Vec<Call>>) {
        let mut g = ChatStream::new(mode);
        let mut out = Vec::new();
        let mut decided = Vec::new();
        'feed: for ev in events(chunks) {
            for step in g.push(&ev).unwrap() {
                match step {
                    Step::Bytes(b) => out.extend(b),
                    Step::Decide(i, calls) => {
                        let o: Vec<Outcome> = calls.iter().map(decide).collect();
                        let r = g.resolve(i, &calls, &o);
                        decided.push(calls);
                        match r {
                            Ok(b) => out.extend(b),
                            Err(e) => {
                                out.extend(data(&e.body()));
                                break 'feed;
                            }
                        }
                    }
                }
            }
        }
        let mut d = sse::Decoder::new(1 << 20);
        let mut evs = Vec::new();
        d.feed(&out, &mut evs).unwrap();
        let vals = evs
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data.clone())))
            .collect();
        (vals, decided)
    }

    /// What the governor sends for one chunk given as text.
    fn one(text: &str) -> Vec<u8> {
        let mut g = ChatStream::new(DenyMode::Rewrite);
        let ev = sse::Event {
            event: None,
            data: text.to_owned(),
        };
        let mut out = Vec::new();
        for step in g.push(&ev).unwrap() {
            if let Step::Bytes(b) = step {
                out.extend(b);
            }
        }
        out
    }

    #[test]
    fn unchanged_chunks_pass_as_written() {
        let text = r#"{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi \u00e9"}, "finish_reason": null}]}"#;
        assert_eq!(one(text), format!("data: {text}\n\n").into_bytes());
        for text in [
            r#"{"error": {"message": "x"}}"#,
            r#"{"id": "c", "usage": {"total_tokens": 3}}"#,
        ] {
            assert_eq!(one(text), format!("data: {text}\n\n").into_bytes());
        }
        // Re-encoded from what was governed: a repeated key, a removed null, a dropped
        // choice, a choices that is not an array.
        for (text, want) in [
            (
                r#"{"choices": [{"index": 0, "delta": {"content": "a", "content": "b"}}]}"#,
                json!({"choices": [{"index": 0, "delta": {"content": "b"}}]}),
            ),
            (
                r#"{"choices": [{"index": 0, "delta": {"content": "a", "tool_calls": null}}]}"#,
                json!({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
            ),
            (
                r#"{"choices": [{"index": 0, "delta": {"content": "a", "function_call": null}}]}"#,
                json!({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
            ),
            (
                r#"{"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {}}]}"#,
                json!({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
            ),
            (r#"{"id": "c", "choices": 1}"#, json!({"id": "c"})),
        ] {
            assert_eq!(one(text), data(&want), "{text}");
        }
    }

    #[test]
    fn streamed_calls_split_anywhere_reused_index() {
        // Two parallel calls, both at index 0 (distinct ids), arguments split mid-token.
        let args1 = r#"{"path": "/workspace/a.txt"}"#;
        let args2 = r#"{"cmd": "rm"}"#;
        let mut chunks = vec![chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": "Let me "}, "finish_reason": null}),
        )];
        chunks.push(chunk(
            json!({"index": 0, "delta": {"content": "look."}, "finish_reason": null}),
        ));
        let mut first = true;
        for (id, name, args) in [("call_a", "read_file", args1), ("call_b", "shell", args2)] {
            for (k, piece) in args.as_bytes().chunks(3).enumerate() {
                let piece = core::str::from_utf8(piece).unwrap();
                let mut tc = json!({"index": 0, "function": {"arguments": piece}});
                if k == 0 {
                    tc["id"] = json!(id);
                    tc["type"] = json!("function");
                    tc["function"]["name"] = json!(name);
                }
                let mut delta = json!({"tool_calls": [tc]});
                if first {
                    delta["role"] = json!("assistant");
                    first = false;
                }
                chunks.push(chunk(json!({"index": 0, "delta": delta, "finish_reason": null})));
            }
        }
        chunks.push(chunk(json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"})));
        chunks.push(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": {"total_tokens": 9}}));
        let decide = |c: &Call| if c.name == "shell" { deny() } else { allow() };
        let (out, decided) = run(&chunks, &decide, DenyMode::Rewrite);
        assert_eq!(decided.len(), 1);
        let calls = &decided[0];
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].input, Input::Json(args1.into()));
        assert_eq!(calls[1].input, Input::Json(args2.into()));
        assert_eq!(calls[1].id.as_deref(), Some("call_b"));
        // Text came first, then the allowed call's fragments (index 0), the notice,
        // the finish (still tool_calls: one call remains), usage, [DONE].
        let mut args = String::new();
        let mut content = String::new();
        let mut finish = None;
        for v in &out {
            let Some(c) = v.get("choices").and_then(|c| c.get(0)) else {
                continue;
            };
            for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                assert_eq!(tc["index"], 0);
                assert_ne!(tc.get("id").and_then(Value::as_str), Some("call_b"));
                args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            content.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            if !c["finish_reason"].is_null() {
                finish = Some(c["finish_reason"].clone());
            }
        }
        assert_eq!(args, args1);
        assert!(content.starts_with("Let me look."));
        assert!(content.contains("(call_b) was denied: POLICY_DENY"));
        assert_eq!(finish, Some(json!("tool_calls")));
        assert!(out[out.len() - 2].get("usage").is_some());
        assert_eq!(out[out.len() - 1], json!("[DONE]"));

        // Error mode: an error event, no [DONE].
        let (out, _) = run(&chunks, &decide, DenyMode::Error);
        assert_eq!(out.last().unwrap()["error"]["code"], "tool_call_denied");
        // All denied: finish becomes stop.
        let (out, _) = run(&chunks, &|_| deny(), DenyMode::Rewrite);
        let fin: Vec<&Value> = out
            .iter()
            .filter_map(|v| v.pointer("/choices/0/finish_reason"))
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(fin, [&json!("stop")]);
    }

    #[test]
    fn truncated_and_cut_streams_deny() {
        let chunks = vec![
            chunk(
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": "read_file", "arguments": "{\"pa"}}]}, "finish_reason": null}),
            ),
            chunk(json!({"index": 0, "delta": {}, "finish_reason": "length"})),
        ];
        let (_, decided) = run(&chunks, &|_| deny(), DenyMode::Rewrite);
        assert!(decided[0][0].truncated);
        // No finish at all before [DONE]: truncated too.
        let (_, decided) = run(&chunks[..1], &|_| deny(), DenyMode::Rewrite);
        assert!(decided[0][0].truncated);
        // A custom tool in a stream.
        let chunks = vec![
            chunk(
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "custom", "custom": {"name": "patch", "input": "*** Be"}}]}, "finish_reason": null}),
            ),
            chunk(
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "custom": {"input": "gin"}}]}, "finish_reason": "tool_calls"}),
            ),
        ];
        let (_, decided) = run(&chunks, &|_| allow(), DenyMode::Rewrite);
        assert_eq!(decided[0][0].input, Input::Text("*** Begin".into()));
        assert!(!decided[0][0].truncated);
    }
}
