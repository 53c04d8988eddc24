//! Reads one JSON value on stdin and writes it transformed on stdout, compact, with object
//! keys sorted: every number doubled, every string upper-cased. Invalid JSON: a message on
//! stderr and exit status 2.

use std::io::{Read, Write};

use serde_json::Value;

fn transform(v: Value) -> Value {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i.checked_mul(2) {
                Some(d) => Value::from(d),
                None => Value::from(i as f64 * 2.0),
            },
            (None, Some(f)) => Value::from(f * 2.0),
            _ => Value::Number(n),
        },
        Value::String(s) => Value::String(s.to_uppercase()),
        Value::Array(a) => Value::Array(a.into_iter().map(transform).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, transform(v))).collect()),
        other => other,
    }
}

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("json-transform: cannot read stdin: {e}");
        std::process::exit(2);
    }
    let value: Value = match serde_json::from_str(&input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("json-transform: invalid JSON: {e}");
            std::process::exit(2);
        }
    };
    let out = serde_json::to_string(&transform(value)).unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.write_all(b"\n");
}
