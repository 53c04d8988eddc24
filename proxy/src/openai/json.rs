//! A JSON document as a [`Value`], noting whether any object repeats a key.
//!
//! `serde_json` keeps the last of repeated keys; other parsers keep the first, or fail.
//! An upstream answer whose calls were decided on its [`Value`] may be passed to the
//! client as the upstream's own bytes only if every parser reads those bytes as that
//! [`Value`]: hence no repeated key anywhere (and the strict grammar of `serde_json`:
//! valid UTF-8, no lone surrogate, no trailing data).

use core::cell::Cell;
use core::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as [`serde_json::from_slice`] does into a [`Value`]; the flag says
/// whether some object repeated a key (the value then holds the last, as serde_json's).
pub(crate) fn parse(bytes: &[u8]) -> serde_json::Result<(Value, bool)> {
    let repeated = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Seed(&repeated).deserialize(&mut de)?;
    de.end()?;
    Ok((v, repeated.get()))
}

#[derive(Clone, Copy)]
struct Seed<'f>(&'f Cell<bool>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(self)?;
            if out.insert(k, v).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn same_value_as_serde_json_and_repeats_noted() {
        for (text, repeated) in [
            (
                r#"{"a": [1, -2, 3.5, 1e300, -0.0, true, null, "x\u00e9"], "b": {"c": {}}}"#,
                false,
            ),
            (r#"{"a": 1, "a": 2}"#, true),
            (r#"{"a": {"b": 1, "\u0062": 2}}"#, true),
            (r#"[{"x": 1}, {"x": 1}]"#, false),
            (
                r#"{"choices": [{"message": {"tool_calls": [], "tool_calls": null}}]}"#,
                true,
            ),
            (r#"  "s"  "#, false),
            ("18446744073709551615", false),
            ("-9223372036854775808", false),
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes()).unwrap(), (want, repeated), "{text}");
        }
        for bad in [
            "{\"a\": 1} x",
            "{\"a\": \"\\ud800\"}",
            "{\"a\": 1,}",
            "{\"a\": 1e400}",
            "",
            "{\"a\": \"\u{1}\"}",
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(b"{\"a\": \"\xff\"}").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
