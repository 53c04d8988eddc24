//! `x-mcp-header` (2026-07-28): tool parameters mirrored into `Mcp-Param-{token}` HTTP
//! headers. The proxy is a server to its client (it checks the headers against the
//! body) and a client to its upstream (it sends them), and it drops tools whose
//! annotations are invalid, as clients must.

use base64::Engine as _;
use serde_json::Value;

/// The annotations of one tool: (property path, header token).
pub type Declared = Vec<(Vec<String>, String)>;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn count_annotations(v: &Value) -> usize {
    match v {
        Value::Object(o) => {
            let here = usize::from(o.contains_key("x-mcp-header"));
            o.values().map(count_annotations).fold(here, usize::saturating_add)
        }
        Value::Array(a) => a.iter().map(count_annotations).fold(0, usize::saturating_add),
        _ => 0,
    }
}

fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Declared) -> Result<(), String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (k, sub) in props {
        path.push(k.clone());
        if let Some(h) = sub.get("x-mcp-header") {
            let where_ = path.join(".");
            let token = h
                .as_str()
                .ok_or_else(|| format!("property {where_:?}: x-mcp-header must be a string"))?;
            if token.is_empty() || !token.bytes().all(is_tchar) {
                return Err(format!(
                    "property {where_:?}: x-mcp-header {token:?} is not an RFC 9110 token"
                ));
            }
            match sub.get("type").and_then(Value::as_str) {
                Some("integer" | "string" | "boolean") => {}
                _ => {
                    return Err(format!(
                        "property {where_:?}: x-mcp-header is only permitted on integer, string and boolean properties"
                    ))
                }
            }
            if out.iter().any(|(_, t)| t.eq_ignore_ascii_case(token)) {
                return Err(format!("x-mcp-header {token:?} appears twice"));
            }
            out.push((path.clone(), token.to_owned()));
        }
        walk(sub, path, out)?;
        path.pop();
    }
    Ok(())
}

/// The `x-mcp-header` annotations of an input schema, or why they are invalid (one
/// off a pure `properties` chain, not a token, on a non-primitive, or twice).
pub fn declared(input_schema: &Value) -> Result<Declared, String> {
    let mut out = Vec::new();
    walk(input_schema, &mut Vec::new(), &mut out)?;
    if count_annotations(input_schema) != out.len() {
        return Err("x-mcp-header found at a schema position not reachable through properties alone".into());
    }
    Ok(out)
}

fn value_at<'a>(args: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = args;
    for k in path {
        v = v.as_object()?.get(k)?;
    }
    (!v.is_null()).then_some(v)
}

fn render(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.to_owned()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A header value as is when it is plain visible ASCII, else the `=?base64?…?=` form.
pub fn encode(s: &str) -> String {
    let sentinel = s.starts_with("=?base64?") && s.ends_with("?=");
    let plain = !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !sentinel;
    if plain {
        s.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(s))
    }
}

/// Decodes the `=?base64?…?=` form (other values as they are).
pub fn decode(v: &str) -> Option<String> {
    match v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok()),
        None => Some(v.to_owned()),
    }
}

/// The `Mcp-Param-*` headers a call with `args` carries.
pub fn headers_for(decl: &Declared, args: &Value) -> Vec<(String, String)> {
    decl.iter()
        .filter_map(|(path, token)| {
            let v = render(value_at(args, path)?)?;
            Some((format!("mcp-param-{token}"), encode(&v)))
        })
        .collect()
}

/// Checks the `Mcp-Param-*` headers a client sent (lowercase name, raw value) against
/// the call's arguments: every declared parameter with a value has its header with the
/// same value (numbers compared as numbers), none without one has a header.
pub fn check(decl: &Declared, args: &Value, sent: &[(String, String)]) -> Result<(), String> {
    for (path, token) in decl {
        let name = format!("mcp-param-{}", token.to_ascii_lowercase());
        let header = sent.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        match (value_at(args, path), header) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "Header mismatch: Mcp-Param-{token} given, but the argument is absent"
                ));
            }
            (Some(_), None) => return Err(format!("Header mismatch: Mcp-Param-{token} is missing")),
            (Some(v), Some(h)) => {
                let h = decode(h).ok_or_else(|| format!("Header mismatch: Mcp-Param-{token} is malformed"))?;
                let same = match v {
                    Value::Number(n) => h.parse::<f64>().ok() == n.as_f64(),
                    other => render(other).as_deref() == Some(h.as_str()),
                };
                if !same {
                    return Err(format!(
                        "Header mismatch: Mcp-Param-{token} does not match the argument"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_headers_and_checks() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "q":{"type":"string"}}});
        let d = declared(&schema).unwrap();
        assert_eq!(d.len(), 2);
        let args = json!({"region":"Hello, 世界","opts":{"n":42},"q":"x"});
        let h = headers_for(&d, &args);
        assert!(h.contains(&("mcp-param-Region".into(), "=?base64?SGVsbG8sIOS4lueVjA==?=".into())));
        assert!(h.contains(&("mcp-param-N".into(), "42".into())));
        let sent: Vec<(String, String)> = h.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
        assert!(check(&d, &args, &sent).is_ok());
        assert!(check(&d, &args, &sent[..1]).is_err());
        let other = vec![
            ("mcp-param-region".into(), "x".into()),
            ("mcp-param-n".into(), "42.0".into()),
        ];
        assert!(check(&d, &args, &other).is_err());
        let num = vec![
            ("mcp-param-region".into(), "=?base64?SGVsbG8sIOS4lueVjA==?=".into()),
            ("mcp-param-n".into(), "42.0".into()),
        ];
        assert!(check(&d, &args, &num).is_ok());
        assert!(check(&d, &json!({"q":"x"}), &num).is_err());
        for bad in [
            json!({"properties":{"a":{"type":"array","x-mcp-header":"A"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}),
            json!({"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}),
            json!({"anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}),
        ] {
            assert!(declared(&bad).is_err(), "{bad}");
        }
        assert_eq!(encode("=?base64?x?="), "=?base64?PT9iYXNlNjQ/eD89?=");
        assert_eq!(decode("=?base64?PT9iYXNlNjQ/eD89?=").unwrap(), "=?base64?x?=");
    }
}
