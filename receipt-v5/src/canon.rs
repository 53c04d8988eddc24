//! RFC 8785 canonical JSON, restricted to the interoperable subset.
//!
//! On that subset (every number an integer literal `-?(0|[1-9][0-9]*)`, not `-0`, of
//! magnitude at most 2^53-1) HELM's canonical JSON and a strict RFC 8785 implementation
//! give the same bytes: a canonical integer literal is exactly what the ECMAScript
//! Number-to-String algorithm prints for it, so numbers are copied as they are. Any other
//! number is refused (`non_interoperable_number`), never re-rendered.
//!
//! The input is validated completely before the first byte is written, so a sink never
//! sees a partial output of an input that is refused.

use crate::error::{LimitError, ReceiptError};
use crate::json::{self, Elements, Kind, Members, Slot, Span, Table};

/// Writes the canonical form of the JSON text `input` into `out`; returns its length.
///
/// Errors: `malformed_json` (not strict JSON: see [`JsonErrorKind`](crate::JsonErrorKind)),
/// `non_interoperable_number`, `resource_limit` (nesting, members, or `out` too small; the
/// error then says how many bytes are needed).
pub fn canonicalize(input: &[u8], out: &mut [u8]) -> Result<usize, ReceiptError> {
    let mut sink = BufferSink::new(out);
    canonicalize_with(input, |b| sink.write(b))?;
    sink.finish()
}

/// Streams the canonical form of the JSON text `input` into `sink`, in pieces (for
/// example into a hash), without allocating. Nothing is written if `input` is refused.
pub fn canonicalize_with(input: &[u8], mut sink: impl FnMut(&[u8])) -> Result<(), ReceiptError> {
    let doc = json::parse(input)?;
    if let Some(e) = doc.first_bad_number {
        return Err(e.into());
    }
    let mut table = Table::new();
    // Members of the objects open while writing must fit too: check before writing.
    emit(doc.text, doc.root, &mut table, &mut |_: &[u8]| {})?;
    emit(doc.text, doc.root, &mut table, &mut sink)
}

/// The canonical form of the JSON text `input`, as a new vector.
#[cfg(feature = "alloc")]
pub fn canonicalize_to_vec(input: &[u8]) -> Result<alloc::vec::Vec<u8>, ReceiptError> {
    let mut out = alloc::vec::Vec::new();
    canonicalize_with(input, |b| out.extend_from_slice(b))?;
    Ok(out)
}

fn emit<'a>(text: &'a str, span: Span, table: &mut Table<'a>, sink: &mut dyn FnMut(&[u8])) -> Result<(), ReceiptError> {
    match span.kind {
        Kind::Null | Kind::True | Kind::False | Kind::Number => {
            sink(text.as_bytes().get(span.start..span.end).unwrap_or_default());
        }
        Kind::String => {
            let s = json::string_at(text, span).unwrap_or(json::JsonStr::EMPTY);
            sink(b"\"");
            s.write_canonical(sink);
            sink(b"\"");
        }
        Kind::Array => {
            sink(b"[");
            for (i, element) in Elements::new(text, span).enumerate() {
                if i > 0 {
                    sink(b",");
                }
                emit(text, element?, table, sink)?;
            }
            sink(b"]");
        }
        Kind::Object => {
            let base = table.len();
            for member in Members::new(text, span) {
                let (key, value) = member?;
                table.push(
                    Slot {
                        key,
                        value: value.start,
                    },
                    value.start,
                )?;
            }
            sort_by_utf16(table.range_mut(base));
            sink(b"{");
            let end = table.len();
            let mut i = base;
            while i < end {
                let Some(slot) = table.get(i) else { break };
                if i > base {
                    sink(b",");
                }
                sink(b"\"");
                slot.key.write_canonical(sink);
                sink(b"\":");
                emit(text, json::skip(text, slot.value)?, table, sink)?;
                i = i.saturating_add(1);
            }
            sink(b"}");
            table.truncate(base);
        }
    }
    Ok(())
}

/// Insertion sort by UTF-16 code units (RFC 8785 §3.2.3); at most
/// [`MAX_OPEN_MEMBERS`](crate::MAX_OPEN_MEMBERS) members, all names distinct.
fn sort_by_utf16(slots: &mut [Slot<'_>]) {
    for i in 1..slots.len() {
        let mut j = i;
        while j > 0 {
            let prev = j.saturating_sub(1);
            let out_of_order = match (slots.get(prev), slots.get(j)) {
                (Some(a), Some(b)) => a.key.cmp_utf16(&b.key).is_gt(),
                _ => false,
            };
            if !out_of_order {
                break;
            }
            slots.swap(prev, j);
            j = prev;
        }
    }
}

/// A sink into a caller buffer that keeps counting past its end.
pub(crate) struct BufferSink<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl<'o> BufferSink<'o> {
    pub(crate) fn new(out: &'o mut [u8]) -> Self {
        BufferSink { out, len: 0 }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }

    pub(crate) fn finish(self) -> Result<usize, ReceiptError> {
        if self.len > self.out.len() {
            return Err(LimitError::BufferTooSmall {
                needed: self.len,
                available: self.out.len(),
            }
            .into());
        }
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    use super::*;

    fn canon(input: &str) -> Result<String, ReceiptError> {
        let mut out = [0u8; 1024];
        let n = canonicalize(input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn sorts_nested_objects_and_keeps_arrays() {
        assert_eq!(
            canon(" { \"b\" : [ 3 , { \"y\":1, \"x\":2 } ], \"a\" : { } } ").unwrap(),
            "{\"a\":{},\"b\":[3,{\"x\":2,\"y\":1}]}"
        );
        assert_eq!(canon("\"x\"").unwrap(), "\"x\"");
        assert_eq!(canon("[]").unwrap(), "[]");
    }

    #[test]
    fn buffer_too_small_says_how_much() {
        let mut out = [0u8; 4];
        assert_eq!(
            canonicalize(b"{\"abc\":1}", &mut out),
            Err(ReceiptError::ResourceLimit(LimitError::BufferTooSmall {
                needed: 9,
                available: 4
            }))
        );
    }

    #[test]
    fn refuses_before_writing() {
        let mut wrote = false;
        let r = canonicalize_with(b"[1, 2, 1.5]", |_| wrote = true);
        assert!(matches!(r, Err(ReceiptError::NonInteroperableNumber(_))));
        assert!(!wrote);
    }

    #[test]
    fn member_table_limit_while_writing() {
        // 200 + 100 members open at once: the reader holds at most 201, the writer 300.
        let inner: Vec<String> = (0..100).map(|i| format!("\"i{i}\":0")).collect();
        let mut outer: Vec<String> = vec![format!("\"a\":{{{}}}", inner.join(","))];
        outer.extend((0..199).map(|i| format!("\"o{i}\":0")));
        let text = format!("{{{}}}", outer.join(","));
        let mut wrote = false;
        let r = canonicalize_with(text.as_bytes(), |_| wrote = true);
        assert!(matches!(
            r,
            Err(ReceiptError::ResourceLimit(LimitError::TooManyMembers { .. }))
        ));
        assert!(!wrote);
    }
}
