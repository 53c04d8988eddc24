//! Server-Sent Events: a bounded incremental parser (upstream streams) and the event
//! encoder (client streams).

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` (empty: `message`).
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:`, if given.
    pub id: Option<String>,
}

/// An incremental parser: feed chunks, get complete events. A line or an event larger
/// than the limit is an error (the stream is then abandoned).
#[derive(Debug)]
pub struct Parser {
    buf: Vec<u8>,
    cur: Event,
    has_data: bool,
    max: usize,
}

impl Parser {
    /// A parser refusing events larger than `max` bytes.
    pub fn new(max: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            cur: Event::default(),
            has_data: false,
            max,
        }
    }

    /// Adds bytes; returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| "an SSE line is not UTF-8".to_owned())?;
            if line.is_empty() {
                if self.has_data {
                    out.push(core::mem::take(&mut self.cur));
                } else {
                    self.cur = Event::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.cur.event = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.cur.id = Some(value.to_owned()),
                _ => {}
            }
            if self.cur.data.len() > self.max {
                return Err(format!("an SSE event larger than {} bytes", self.max));
            }
        }
        if self.buf.len() > self.max {
            return Err(format!("an SSE line larger than {} bytes", self.max));
        }
        Ok(out)
    }
}

/// One event as bytes: `id`, `event` (omitted for `message`), one `data:` line per line.
pub fn encode(id: Option<&str>, event: Option<&str>, data: &str) -> Vec<u8> {
    let mut s = String::with_capacity(data.len().saturating_add(32));
    if let Some(i) = id {
        s.push_str("id: ");
        s.push_str(i);
        s.push('\n');
    }
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    for l in data.split('\n') {
        s.push_str("data: ");
        s.push_str(l);
        s.push('\n');
    }
    s.push('\n');
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn parses_in_pieces() {
        let mut p = Parser::new(1000);
        let mut all = Vec::new();
        for chunk in [
            &b"event: endpoint\r\nda"[..],
            b"ta: /messages?x=1\r\n\r\n: ping\n\nid: 7\ndata: {\"a\":\n",
            b"data: 1}\n\n",
        ] {
            all.extend(p.push(chunk).unwrap());
        }
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].event.as_str(), all[0].data.as_str()),
            ("endpoint", "/messages?x=1")
        );
        assert_eq!((all[1].id.as_deref(), all[1].data.as_str()), (Some("7"), "{\"a\":\n1}"));
        assert!(Parser::new(10).push(&[b'x'; 20]).is_err());
        let e = encode(Some("1"), Some("message"), "a\nb");
        assert_eq!(e, b"id: 1\nevent: message\ndata: a\ndata: b\n\n");
    }
}
