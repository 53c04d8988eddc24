//! The request side: which tools are offered, and which tool results come back.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::OaiError;
use super::govern::{output_bytes, ToolResult};

/// Which API a body belongs to (their tool shapes differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Responses,
}

/// A tool's name, for `function` and `custom` tools of either API.
fn tool_name(t: &Value) -> Option<&str> {
    t.get("function")
        .and_then(|f| f.get("name"))
        .or_else(|| t.get("custom").and_then(|c| c.get("name")))
        .or_else(|| t.get("name"))
        .and_then(Value::as_str)
}

fn tool_type(t: &Value) -> &str {
    t.get("type").and_then(Value::as_str).unwrap_or("function")
}

/// Whether a tool (or a tool choice naming one) may be offered: a function or custom
/// tool if the policy could allow a call of it; a hosted tool (any other type) if it is
/// listed in `hosted_tools` and the policy could allow the tool `hosted/<type>` (it runs
/// inside the upstream, so this static reading is all the governance it gets).
fn offered(t: &Value, may_use: &dyn Fn(&str) -> bool, hosted: &[String]) -> bool {
    match tool_type(t) {
        "function" | "custom" => tool_name(t).is_some_and(may_use),
        other => hosted.iter().any(|h| h == other) && may_use(&format!("hosted/{other}")),
    }
}

/// What the request-side filter did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filtered {
    /// Tools removed (names, or hosted types).
    pub(crate) removed: Vec<String>,
    /// Whether the body was changed.
    pub(crate) changed: bool,
}

/// Removes the tools `may_use` rules out and the hosted tools not listed; keeps
/// `tool_choice` consistent. A `tool_choice` that forces a removed tool is refused
/// (403), as is `required` with no tool left.
pub(crate) fn filter_tools(
    body: &mut Map<String, Value>,
    api: Api,
    may_use: &dyn Fn(&str) -> bool,
    hosted: &[String],
) -> Result<Filtered, OaiError> {
    let mut out = Filtered::default();
    let Some(tools) = body.get_mut("tools") else {
        return Ok(out);
    };
    let Some(list) = tools.as_array_mut() else {
        return Err(OaiError::invalid_param(
            "tools",
            "invalid_type",
            "tools must be an array",
        ));
    };
    list.retain(|t| {
        let keep = offered(t, may_use, hosted);
        if !keep {
            out.removed
                .push(tool_name(t).map_or_else(|| tool_type(t).to_owned(), str::to_owned));
        }
        keep
    });
    let none_left = list.is_empty();
    out.changed = !out.removed.is_empty();
    if !out.changed {
        return Ok(out);
    }
    let forbidden = |what: &str| {
        OaiError::policy(
            "tool_not_allowed",
            format!("tool_choice requires {what}, which the policy does not allow this principal to use"),
        )
    };
    match body.get_mut("tool_choice") {
        Some(Value::String(s)) if s == "required" && none_left => {
            return Err(forbidden("a tool, but none of those offered"));
        }
        Some(Value::Object(tc)) => {
            let kind = tc.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
            if kind == "allowed_tools" {
                let list = match api {
                    Api::Chat => tc.get_mut("allowed_tools").and_then(|a| a.get_mut("tools")),
                    Api::Responses => tc.get_mut("tools"),
                };
                if let Some(Value::Array(l)) = list {
                    l.retain(|t| offered(t, may_use, hosted));
                    if l.is_empty() {
                        let mode = match api {
                            Api::Chat => tc.get("allowed_tools").and_then(|a| a.get("mode")),
                            Api::Responses => tc.get("mode"),
                        };
                        if mode.and_then(Value::as_str) == Some("required") {
                            return Err(forbidden("one of the allowed tools"));
                        }
                        body.remove("tool_choice");
                    }
                }
            } else {
                let t = Value::Object(tc.clone());
                if !offered(&t, may_use, hosted) {
                    return Err(forbidden(&format!(
                        "{:?}",
                        tool_name(&t).map_or_else(|| kind.clone(), str::to_owned)
                    )));
                }
            }
        }
        _ => {}
    }
    if none_left {
        body.remove("tools");
        body.remove("parallel_tool_calls");
        if matches!(body.get("tool_choice"), Some(Value::String(_))) {
            body.remove("tool_choice");
        }
    }
    Ok(out)
}

/// Chat Completions: refuses what the proxy does not govern; the tool results.
pub(crate) fn chat_request(body: &Map<String, Value>) -> Result<Vec<ToolResult>, OaiError> {
    for legacy in ["functions", "function_call"] {
        if body.contains_key(legacy) {
            return Err(OaiError::invalid_param(
                legacy,
                "unsupported_parameter",
                format!("{legacy} (deprecated) is not passed by the governed proxy: use tools"),
            ));
        }
    }
    let Some(Value::Array(messages)) = body.get("messages") else {
        return Err(OaiError::invalid_param(
            "messages",
            "invalid_type",
            "messages must be an array",
        ));
    };
    let mut out = Vec::new();
    for m in messages {
        match m.get("role").and_then(Value::as_str) {
            Some("tool") => {
                let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(OaiError::invalid_param(
                        "messages",
                        "invalid_value",
                        "a tool message needs its tool_call_id",
                    ));
                };
                out.push(ToolResult {
                    call_id: id.to_owned(),
                    output: output_bytes(m.get("content")),
                });
            }
            Some("function") => {
                return Err(OaiError::invalid_param(
                    "messages",
                    "unsupported_parameter",
                    "function messages (deprecated) are not passed by the governed proxy: use tool messages",
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Responses: refuses background runs (their output escapes governance); the tool
/// results (`function_call_output`, `custom_tool_call_output` and the outputs of
/// built-in client tools, `*_call_output`).
pub(crate) fn responses_request(body: &Map<String, Value>) -> Result<Vec<ToolResult>, OaiError> {
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(OaiError::invalid_param(
            "background",
            "unsupported_parameter",
            "background responses are fetched later, beyond governance: not passed by the governed proxy",
        ));
    }
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = body.get("input") {
        for it in items {
            let kind = it.get("type").and_then(Value::as_str).unwrap_or("");
            if !kind.ends_with("_call_output") {
                continue;
            }
            let Some(id) = it.get("call_id").and_then(Value::as_str) else {
                return Err(OaiError::invalid_param(
                    "input",
                    "invalid_value",
                    format!("a {kind} item needs its call_id"),
                ));
            };
            out.push(ToolResult {
                call_id: id.to_owned(),
                output: output_bytes(it.get("output")),
            });
        }
    }
    Ok(out)
}

/// A top-level key that is present (whatever its value, `null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A value that must be there as `T` when its key is (`null` is not `None`).
fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A chat message, as far as the fast path reads it.
#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
}

/// A Responses input item, as far as the fast path reads it.
#[derive(Deserialize)]
struct ItemView<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// `input` of a Responses request: text, or items.
enum InputView<'a> {
    Text,
    Items(Vec<ItemView<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for InputView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = InputView<'a>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(InputView::Text)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(it) = seq.next_element()? {
                    items.push(it);
                }
                Ok(InputView::Items(items))
            }
        }
        d.deserialize_any(V(core::marker::PhantomData))
    }
}

/// A string, borrowed from the body unless it has escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V(core::marker::PhantomData))
    }
}

/// Fills a field of a view once: a repeated key is an error (the fast path gives up).
fn once<T, E: serde::de::Error>(slot: &mut Option<T>, v: T) -> Result<(), E> {
    if slot.replace(v).is_some() {
        return Err(E::custom("duplicate key"));
    }
    Ok(())
}

/// A tool's `function` or `custom` object, as far as the fast path reads it: `name`
/// (when present, a string). Only a JSON object deserializes (not an array).
#[derive(Default)]
struct NamedView<'a> {
    name: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for NamedView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = NamedView<'a>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = NamedView::default();
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    if k.0 == "name" {
                        once(&mut out.name, map.next_value::<Str<'de>>()?.0)?;
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(core::marker::PhantomData))
    }
}

/// A tool definition, as far as the fast path reads it (not its schema): `type`,
/// `function.name`, `custom.name`, `name`. Stricter than [`offered`] reads a [`Value`]:
/// a JSON object only, each of these keys at most once, of the type [`offered`] can
/// use (`null` included in what fails); anything else fails, and the full path decides.
#[derive(Default)]
struct ToolView<'a> {
    kind: Option<Cow<'a, str>>,
    function: Option<NamedView<'a>>,
    custom: Option<NamedView<'a>>,
    name: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ToolView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(core::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = ToolView<'a>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ToolView::default();
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    match &*k.0 {
                        "type" => once(&mut out.kind, map.next_value::<Str<'de>>()?.0)?,
                        "function" => once(&mut out.function, map.next_value::<NamedView<'de>>()?)?,
                        "custom" => once(&mut out.custom, map.next_value::<NamedView<'de>>()?)?,
                        "name" => once(&mut out.name, map.next_value::<Str<'de>>()?.0)?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(core::marker::PhantomData))
    }
}

impl ToolView<'_> {
    /// [`offered`] of the same tool as a [`Value`] (given the view's stricter reading).
    fn offered(&self, may_use: &dyn Fn(&str) -> bool, hosted: &[String]) -> bool {
        match self.kind.as_deref().unwrap_or("function") {
            "function" | "custom" => self
                .function
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .or_else(|| self.custom.as_ref().and_then(|c| c.name.as_deref()))
                .or(self.name.as_deref())
                .is_some_and(may_use),
            other => hosted.iter().any(|h| h == other) && may_use(&format!("hosted/{other}")),
        }
    }
}

/// The parts of a request body the fast path reads (both APIs). Duplicate keys among
/// these are a parse error, hence the slow path.
#[derive(Deserialize)]
struct BodyView<'a> {
    #[serde(default, deserialize_with = "present")]
    functions: bool,
    #[serde(default, deserialize_with = "present")]
    function_call: bool,
    #[serde(default, deserialize_with = "present")]
    background: bool,
    #[serde(borrow, default, deserialize_with = "some")]
    messages: Option<Vec<MessageView<'a>>>,
    #[serde(borrow, default, deserialize_with = "some")]
    input: Option<InputView<'a>>,
    #[serde(borrow, default, deserialize_with = "some")]
    tools: Option<Vec<ToolView<'a>>>,
    #[serde(borrow, default, deserialize_with = "some")]
    previous_response_id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "some")]
    stream: Option<bool>,
}

/// The fast path of the request side: `Some(stream)` when the body is a JSON object
/// that the proxy passes unchanged and that carries no tool result (no tool removed,
/// no withheld output to supply, nothing refused), so that it need not be parsed into
/// a [`Value`] tree. `None` means "do not know": the caller takes the full path
/// ([`chat_request`], [`responses_request`], [`filter_tools`]), which decides (and
/// refuses) exactly as before. Only ever answers `Some` when the full path would
/// forward the same bytes with no result to record.
pub(crate) fn untouched(
    body: &[u8],
    api: Api,
    may_use: &dyn Fn(&str) -> bool,
    hosted: &[String],
    has_withheld: &dyn Fn(&str) -> bool,
) -> Option<bool> {
    // A struct also deserializes from an array: only objects take this path.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let v: BodyView<'_> = serde_json::from_slice(body).ok()?;
    match api {
        Api::Chat => {
            if v.functions || v.function_call {
                return None;
            }
            let messages = v.messages?;
            if messages
                .iter()
                .any(|m| matches!(m.role.as_deref(), Some("tool" | "function")))
            {
                return None;
            }
        }
        Api::Responses => {
            if v.background {
                return None;
            }
            if let Some(InputView::Items(items)) = &v.input {
                if items
                    .iter()
                    .any(|it| it.kind.as_deref().unwrap_or("").ends_with("_call_output"))
                {
                    return None;
                }
            }
            if v.previous_response_id.as_deref().is_some_and(has_withheld) {
                return None;
            }
        }
    }
    if let Some(tools) = &v.tools {
        if !tools.iter().all(|t| t.offered(may_use, hosted)) {
            return None;
        }
    }
    Some(v.stream == Some(true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn may(t: &str) -> bool {
        t != "shell" && t != "hosted/file_search"
    }

    #[test]
    fn chat_tools_are_filtered() {
        let mut b = obj(json!({
            "tools": [
                {"type": "function", "function": {"name": "read_file"}},
                {"type": "function", "function": {"name": "shell"}},
                {"type": "custom", "custom": {"name": "apply_patch"}},
            ],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
                {"type": "function", "function": {"name": "shell"}},
                {"type": "function", "function": {"name": "read_file"}},
            ]}}
        }));
        let f = filter_tools(&mut b, Api::Chat, &may, &[]).unwrap();
        assert_eq!(f.removed, ["shell"]);
        assert_eq!(b["tools"].as_array().unwrap().len(), 2);
        assert_eq!(b["tool_choice"]["allowed_tools"]["tools"].as_array().unwrap().len(), 1);

        let mut b = obj(json!({
            "tools": [{"type": "function", "function": {"name": "shell"}}],
            "tool_choice": "auto", "parallel_tool_calls": true
        }));
        filter_tools(&mut b, Api::Chat, &may, &[]).unwrap();
        assert!(b.get("tools").is_none() && b.get("tool_choice").is_none() && b.get("parallel_tool_calls").is_none());

        let mut b = obj(json!({
            "tools": [{"type": "function", "function": {"name": "shell"}}, {"type": "function", "function": {"name": "a"}}],
            "tool_choice": {"type": "function", "function": {"name": "shell"}}
        }));
        let e = filter_tools(&mut b, Api::Chat, &may, &[]).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_deref()), (403, Some("tool_not_allowed")));

        let mut b =
            obj(json!({"tools": [{"type": "function", "function": {"name": "shell"}}], "tool_choice": "required"}));
        assert!(filter_tools(&mut b, Api::Chat, &may, &[]).is_err());
        // Nothing removed: the body is untouched.
        let mut b = obj(json!({"tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": "required"}));
        assert!(!filter_tools(&mut b, Api::Chat, &may, &[]).unwrap().changed);
    }

    #[test]
    fn hosted_tools_are_stripped_unless_listed() {
        let mut b = obj(json!({"tools": [
            {"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}},
            {"type": "mcp", "server_label": "x", "server_url": "https://example.invalid"},
            {"type": "function", "name": "read_file", "parameters": {}},
        ]}));
        let f = filter_tools(&mut b, Api::Responses, &may, &["web_search".to_owned()]).unwrap();
        assert_eq!(f.removed, ["code_interpreter", "mcp"]);
        let kept: Vec<&str> = b["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(kept, ["web_search", "function"]);
        // Listed, but the policy never allows it: stripped.
        let mut b = obj(json!({"tools": [{"type": "file_search"}, {"type": "function", "name": "a"}]}));
        let f = filter_tools(&mut b, Api::Responses, &may, &["file_search".to_owned()]).unwrap();
        assert_eq!(f.removed, ["file_search"]);
        let mut b = obj(
            json!({"tools": [{"type": "mcp", "server_label": "x"}, {"type": "function", "name": "a"}], "tool_choice": {"type": "mcp", "server_label": "x"}}),
        );
        assert!(filter_tools(&mut b, Api::Responses, &may, &[]).is_err());
    }

    #[test]
    fn results_and_refusals() {
        let b = obj(json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "x"}]},
        ]}));
        let r = chat_request(&b).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].output, b"ok");
        assert_eq!(r[1].output, br#"[{"text":"x","type":"text"}]"#);
        assert!(chat_request(&obj(json!({"messages": [], "functions": []}))).is_err());
        assert!(chat_request(&obj(
            json!({"messages": [{"role": "function", "name": "f", "content": ""}]})
        ))
        .is_err());
        let b = obj(json!({"input": [
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
            {"type": "message", "role": "user", "content": "x"},
        ]}));
        assert_eq!(responses_request(&b).unwrap().len(), 2);
        assert!(responses_request(&obj(json!({"input": "x", "background": true}))).is_err());
    }
    /// Where the fast path's view of a tool reads it at all, it decides as [`offered`].
    #[test]
    fn tool_view_agrees_with_the_full_path() {
        let hosted = ["web_search".to_owned()];
        let names = ["read_file", "shell", "apply_patch", "r\\u0065ad_file", ""];
        let mut samples = Vec::new();
        for n in names {
            for kind in [
                "",
                r#""type": "function", "#,
                r#""type": "custom", "#,
                r#""type": "web_search", "#,
                r#""type": "file_search", "#,
            ] {
                samples.push(format!(r#"{{{kind}"function": {{"name": "{n}"}}}}"#));
                samples.push(format!(r#"{{{kind}"custom": {{"name": "{n}"}}, "name": "shell"}}"#));
                samples.push(format!(r#"{{{kind}"name": "{n}"}}"#));
                samples.push(format!(
                    r#"{{{kind}"function": {{"description": "d"}}, "name": "{n}"}}"#
                ));
                samples.push(format!(
                    r#"{{{kind}"function": {{"name": "{n}"}}, "custom": {{"name": "shell"}}}}"#
                ));
                samples.push(format!(r#"{{{kind}"x": 1}}"#));
            }
        }
        let mut read = 0;
        for t in &samples {
            let v: Value = serde_json::from_str(t).unwrap();
            if let Ok(view) = serde_json::from_str::<ToolView<'_>>(t) {
                read += 1;
                assert_eq!(view.offered(&may, &hosted), offered(&v, &may, &hosted), "{t}");
            }
        }
        assert_eq!(read, samples.len());
    }

    #[test]
    fn fast_path_only_when_nothing_changes() {
        let hosted = ["web_search".to_owned()];
        let none = |_: &str| false;
        let fast = |api, b: &str| untouched(b.as_bytes(), api, &may, &hosted, &none);
        let tools = r#""tools": [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]"#;
        let chat = format!(r#"{{"model": "m", "messages": [{{"role": "user", "content": "hi"}}], {tools}}}"#);
        assert_eq!(fast(Api::Chat, &chat), Some(false));
        assert_eq!(
            fast(Api::Chat, &chat.replace(r#""model""#, r#""stream": true, "model""#)),
            Some(true)
        );
        // Everything the full path changes, refuses or records goes there.
        for (api, body) in [
            (Api::Chat, chat.replace("read_file", "shell")),
            (
                Api::Chat,
                chat.replace(r#""role": "user""#, r#""role": "tool", "tool_call_id": "c""#),
            ),
            (
                Api::Chat,
                chat.replace(r#""role": "user""#, r#""role": "\u0074ool", "tool_call_id": "c""#),
            ),
            (Api::Chat, chat.replace(r#""role": "user""#, r#""role": "function""#)),
            (Api::Chat, chat.replace(r#""model": "m""#, r#""functions": null"#)),
            (Api::Chat, chat.replace(r#""model": "m""#, r#""function_call": "auto""#)),
            (Api::Chat, chat.replace(r#""model": "m""#, r#""tools": []"#)),
            (Api::Chat, chat.replace(tools, r#""tools": null"#)),
            (
                Api::Chat,
                chat.replace(r#""model": "m", "messages""#, r#""messages": [], "messages""#),
            ),
            (Api::Chat, r#"{"model": "m"}"#.to_owned()),
            (Api::Chat, "[]".to_owned()),
            (Api::Responses, "[]".to_owned()),
            (Api::Responses, r#"{"input": "x", "background": false}"#.to_owned()),
            (
                Api::Responses,
                r#"{"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}"#.to_owned(),
            ),
            (
                Api::Responses,
                r#"{"input": "x", "tools": [{"type": "code_interpreter"}]}"#.to_owned(),
            ),
            (Api::Responses, r#"{"input": "x", "stream": "yes"}"#.to_owned()),
            (Api::Responses, r#"{"input": "x"} x"#.to_owned()),
        ] {
            assert_eq!(fast(api, &body), None, "{body}");
        }
        // Tool definitions the view reads more strictly than the full path: to it.
        for t in [
            r#"["function", {"name": "read_file"}]"#,
            r#"{"type": "function", "function": {"name": null}, "name": "read_file"}"#,
            r#"{"type": "function", "function": {"name": "shell"}, "function": {"name": "read_file"}}"#,
            r#"{"type": "function", "function": {"name": "read_file", "name": "shell"}}"#,
            r#"{"type": "function", "function": ["read_file"]}"#,
            r#"{"type": "function", "function": null, "name": "read_file"}"#,
            r#"{"type": null, "name": "read_file"}"#,
            r#"{"type": "function", "function": {"name": 1}, "name": "read_file"}"#,
        ] {
            let body = format!(r#"{{"model": "m", "messages": [], "tools": [{t}]}}"#);
            assert_eq!(fast(Api::Chat, &body), None, "{body}");
        }
        for t in [
            r#"{"type": "function", "function": {"name": "read\u005ffile", "parameters": {"a": [1, {"name": "shell"}]}}}"#,
            r#"{"type": "function", "name": "read_file", "parameters": {}}"#,
            r#"{"type": "custom", "custom": {"name": "read_file"}}"#,
            r#"{"function": {"description": "x", "name": "read_file"}}"#,
        ] {
            let body = format!(r#"{{"model": "m", "messages": [], "tools": [{t}]}}"#);
            assert_eq!(fast(Api::Chat, &body), Some(false), "{body}");
        }
        let r = r#"{"input": [{"type": "message", "role": "user", "content": "x"}], "tools": [{"type": "web_search"}], "previous_response_id": "resp_1"}"#;
        assert_eq!(fast(Api::Responses, r), Some(false));
        let withheld = |id: &str| id == "resp_1";
        assert_eq!(untouched(r.as_bytes(), Api::Responses, &may, &hosted, &withheld), None);
        assert_eq!(fast(Api::Responses, r#" {"input": "x", "stream": true}"#), Some(true));
    }
}
