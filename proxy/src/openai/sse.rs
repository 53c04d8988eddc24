//! Server-sent events: a sans-IO decoder (bytes in, events out; any split of the input
//! gives the same events) and the encoder.

/// One event: its `event:` name (if any) and its data lines joined by `\n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// The event is larger than the limit, or not UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseError(pub(crate) String);

/// Feeds bytes, yields complete events (WHATWG `text/event-stream` parsing: lines end
/// with `\n`, `\r\n` or `\r`; `:` lines are comments; an empty line dispatches).
#[derive(Debug)]
pub(crate) struct Decoder {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    max: usize,
}

impl Decoder {
    /// A decoder refusing events (and lines) larger than `max` bytes.
    pub(crate) fn new(max: usize) -> Decoder {
        Decoder {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            max,
        }
    }

    /// Feeds `bytes`; appends the events they complete to `out`.
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let (head, tail) = rest.split_at(pos);
            let cr = tail.first() == Some(&b'\r');
            rest = tail.get(1..).unwrap_or_default();
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = rest.get(1..).unwrap_or_default(),
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line.is_empty() {
                // The whole line is in this chunk: read in place.
                self.line_done(head, out)?;
            } else {
                let mut line = core::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let done = self.line_done(&line, out);
                line.clear();
                self.line = line;
                done?;
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.max {
            return Err(SseError(format!("an event line is longer than {} bytes", self.max)));
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data || self.event.is_some() {
                out.push(Event {
                    event: self.event.take(),
                    data: core::mem::take(&mut self.data),
                });
            }
            self.has_data = false;
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let line = core::str::from_utf8(line).map_err(|_| SseError("an event line is not UTF-8".into()))?;
        let (field, value) = match line.find(':') {
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or_default();
                (f, v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError(format!("an event is larger than {} bytes", self.max)));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether bytes of an unfinished event are held (the stream ended mid-event).
    pub(crate) fn pending(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }
}

/// Appends one event in wire form.
pub(crate) fn encode(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// [`encode`] of `v`'s compact JSON text, written in place (that text has no line break:
/// serde_json escapes `\n` and `\r` in strings, and the compact form adds no whitespace).
pub(crate) fn encode_json(out: &mut Vec<u8>, event: Option<&str>, v: &serde_json::Value) {
    let start = out.len();
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, v).is_err() {
        // Cannot happen for a Value (its keys are strings); the general path if it did.
        out.truncate(start);
        encode(out, event, &v.to_string());
        return;
    }
    out.extend_from_slice(b"\n\n");
}

/// Appends a comment line (ignored by clients): keep-alives and governance notes.
pub(crate) fn comment(out: &mut Vec<u8>, text: &str) {
    for line in text.split(['\n', '\r']) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut d = Decoder::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let wire = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\n\ndata: one\ndata:two\r\rdata: [DONE]\n\n";
        let whole = all(&[wire]);
        assert_eq!(
            whole,
            vec![
                Event {
                    event: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                Event {
                    event: None,
                    data: "one\ntwo".into()
                },
                Event {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        for i in 0..wire.len() {
            for j in i..wire.len() {
                let (a, rest) = wire.split_at(i);
                let (b, c) = rest.split_at(j - i);
                assert_eq!(all(&[a, b, c]), whole, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn limits_and_encoding() {
        let mut d = Decoder::new(16);
        let mut out = Vec::new();
        assert!(d.feed(b"data: 0123456789abcdefgh", &mut out).is_err());
        let mut w = Vec::new();
        encode(&mut w, Some("response.created"), "{\"a\":1}");
        comment(&mut w, "keep-alive");
        assert_eq!(w, b"event: response.created\ndata: {\"a\":1}\n\n: keep-alive\n\n");
        assert_eq!(all(&[&w]).len(), 1);
    }

    #[test]
    fn json_encoded_in_place_as_its_text() {
        let v = serde_json::json!({
            "a": "line\nbreak\r\u{2028}é\u{1}\"", "b": [1, 2.5, null, true], "c": {"d": {}}
        });
        for event in [None, Some("response.output_text.delta")] {
            let (mut want, mut got) = (b"x".to_vec(), b"x".to_vec());
            encode(&mut want, event, &v.to_string());
            encode_json(&mut got, event, &v);
            assert_eq!(got, want);
            let evs = all(&[&got[1..]]);
            assert_eq!(serde_json::from_str::<serde_json::Value>(&evs[0].data).unwrap(), v);
        }
    }
}
