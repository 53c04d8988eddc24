//! A strict, allocation-free JSON reader.
//!
//! [`parse`] validates a whole text once: RFC 8259 grammar, with the I-JSON rules
//! (RFC 7493) that RFC 8785 presumes: well-formed UTF-8, no byte order mark, no `\u` escape
//! of a lone surrogate, no duplicate member names (compared after unescaping). It records
//! the first number outside the interoperable subset instead of failing on it, so that the
//! receipt checks can report the errors in the order the profile specifies. After
//! validation, values are read again with the light scanners below ([`skip`],
//! [`Members`], [`Elements`]), which trust the validation but still never panic: if they
//! ever met something unexpected they would fail closed with a `malformed_json` error.
//!
//! Member names of the objects currently open are held in a [`Table`] of fixed size (for
//! duplicate detection and, in the canonical writer, for sorting); recursion is bounded by
//! [`MAX_DEPTH`].

use core::cmp::Ordering;
use core::fmt;

use crate::error::{JsonError, JsonErrorKind, LimitError, NumberError, NumberErrorKind, ReceiptError};

/// Maximum nesting depth of arrays and objects (the top-level value's container is depth 1).
pub const MAX_DEPTH: usize = 32;

/// Maximum number of object members held at once: the members seen so far of every object
/// open at that point while reading, and all members of every object open at that point
/// while writing canonical JSON.
pub const MAX_OPEN_MEMBERS: usize = 256;

/// The largest interoperable magnitude, 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The JSON type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    True,
    False,
    Number,
    String,
    Array,
    Object,
}

/// A validated value: its type and its byte range in the text (quotes and brackets
/// included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A JSON string as it appears in a validated text: the characters between the quotes,
/// escapes not yet decoded. Equality, [`Display`](fmt::Display) and [`chars`](Self::chars)
/// use the decoded value; [`raw`](Self::raw) gives the spelling.
#[derive(Clone, Copy)]
pub struct JsonStr<'a> {
    raw: &'a str,
}

impl<'a> JsonStr<'a> {
    pub(crate) const EMPTY: JsonStr<'static> = JsonStr { raw: "" };

    /// The JSON spelling between the quotes (escapes not decoded).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The value as a `&str` when its spelling has no escapes.
    pub fn as_str(&self) -> Option<&'a str> {
        if self.raw.contains('\\') {
            None
        } else {
            Some(self.raw)
        }
    }

    /// Whether the decoded value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The decoded characters.
    pub fn chars(&self) -> Chars<'a> {
        Chars { rest: self.raw }
    }

    /// Whether the decoded value equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        match self.as_str() {
            Some(raw) => raw == s,
            None => self.chars().eq(s.chars()),
        }
    }

    /// Whether the spelling is already the RFC 8785 canonical one (then it can be signed
    /// as it is, without rewriting).
    pub(crate) fn is_canonical(&self) -> bool {
        let mut rest = self.raw;
        while let Some(i) = rest.find('\\') {
            let Some(escape) = rest.get(i..) else { return false };
            let mut chars = Chars { rest: escape };
            let Some(c) = chars.next() else { return false };
            let used = escape.len().saturating_sub(chars.rest.len());
            let mut buf = [0u8; 6];
            if escape.as_bytes().get(..used) != Some(escape_char(c, &mut buf)) {
                return false;
            }
            rest = chars.rest;
        }
        true
    }

    /// Streams the RFC 8785 spelling of the value (without the quotes).
    pub(crate) fn write_canonical(&self, sink: &mut dyn FnMut(&[u8])) {
        let mut rest = self.raw;
        loop {
            match rest.find('\\') {
                None => {
                    if !rest.is_empty() {
                        sink(rest.as_bytes());
                    }
                    return;
                }
                Some(i) => {
                    // Unescaped runs are canonical as they are: a validated string holds no
                    // raw control character, quotation mark or reverse solidus.
                    let (run, escape) = (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or(""));
                    if !run.is_empty() {
                        sink(run.as_bytes());
                    }
                    let mut chars = Chars { rest: escape };
                    match chars.next() {
                        Some(c) => {
                            let mut buf = [0u8; 6];
                            sink(escape_char(c, &mut buf));
                        }
                        None => return,
                    }
                    rest = chars.rest;
                }
            }
        }
    }

    /// The length of the RFC 8785 spelling of the value (without the quotes).
    pub(crate) fn canonical_len(&self) -> usize {
        let mut n = 0usize;
        self.write_canonical(&mut |b: &[u8]| n = n.saturating_add(b.len()));
        n
    }

    /// Compares decoded values as sequences of UTF-16 code units (RFC 8785 §3.2.3).
    pub(crate) fn cmp_utf16(&self, other: &JsonStr<'_>) -> Ordering {
        Utf16Units::new(self.chars()).cmp(Utf16Units::new(other.chars()))
    }
}

impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &JsonStr<'_>) -> bool {
        if self.raw == other.raw {
            return true;
        }
        if !self.raw.contains('\\') && !other.raw.contains('\\') {
            return false;
        }
        self.chars().eq(other.chars())
    }
}

impl Eq for JsonStr<'_> {}

impl PartialEq<str> for JsonStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.eq_str(other)
    }
}

impl PartialEq<&str> for JsonStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.eq_str(other)
    }
}

impl fmt::Display for JsonStr<'_> {
    /// The decoded value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => self.chars().try_for_each(|c| fmt::Write::write_char(f, c)),
        }
    }
}

impl fmt::Debug for JsonStr<'_> {
    /// The JSON spelling, in quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.raw)
    }
}

/// The decoded characters of a [`JsonStr`].
#[derive(Clone, Debug)]
pub struct Chars<'a> {
    rest: &'a str,
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let mut it = self.rest.chars();
        let c = it.next()?;
        if c != '\\' {
            self.rest = it.as_str();
            return Some(c);
        }
        let after = it.as_str();
        let b = after.as_bytes();
        let (c, used) = match b.first() {
            Some(b'"') => ('"', 1),
            Some(b'\\') => ('\\', 1),
            Some(b'/') => ('/', 1),
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => {
                let hi = hex4(b.get(1..5));
                let lo = if b.get(5..7) == Some(b"\\u".as_slice()) {
                    hex4(b.get(7..11))
                } else {
                    None
                };
                match (hi, lo) {
                    (Some(hi @ 0xD800..=0xDBFF), Some(lo @ 0xDC00..=0xDFFF)) => {
                        match core::char::decode_utf16([hi, lo]).next() {
                            Some(Ok(c)) => (c, 11),
                            _ => (char::REPLACEMENT_CHARACTER, after.len()),
                        }
                    }
                    (Some(u), _) => match char::from_u32(u32::from(u)) {
                        Some(c) => (c, 5),
                        // A lone surrogate: rejected by validation, never reached.
                        None => (char::REPLACEMENT_CHARACTER, after.len()),
                    },
                    (None, _) => (char::REPLACEMENT_CHARACTER, after.len()),
                }
            }
            // Rejected by validation, never reached: end the string.
            _ => (char::REPLACEMENT_CHARACTER, after.len()),
        };
        self.rest = after.get(used..).unwrap_or("");
        Some(c)
    }
}

/// A character's UTF-16 code units, in order.
struct Utf16Units<'a> {
    chars: Chars<'a>,
    pending: Option<u16>,
}

impl<'a> Utf16Units<'a> {
    fn new(chars: Chars<'a>) -> Self {
        Utf16Units { chars, pending: None }
    }
}

impl Iterator for Utf16Units<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if let Some(u) = self.pending.take() {
            return Some(u);
        }
        let c = self.chars.next()?;
        let mut buf = [0u16; 2];
        let units = c.encode_utf16(&mut buf);
        match *units {
            [one] => Some(one),
            [hi, lo] => {
                self.pending = Some(lo);
                Some(hi)
            }
            _ => None,
        }
    }
}

/// The RFC 8785 §3.2.2.2 spelling of one character inside a string.
pub(crate) fn escape_char(c: char, buf: &mut [u8; 6]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let two = |buf: &mut [u8; 6], b: u8| {
        buf[0] = b'\\';
        buf[1] = b;
    };
    match c {
        '"' => two(buf, b'"'),
        '\\' => two(buf, b'\\'),
        '\u{8}' => two(buf, b'b'),
        '\u{c}' => two(buf, b'f'),
        '\n' => two(buf, b'n'),
        '\r' => two(buf, b'r'),
        '\t' => two(buf, b't'),
        '\u{0}'..='\u{1f}' => {
            let v = u32::from(c);
            *buf = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX.get(((v >> 4) & 0xf) as usize).copied().unwrap_or(b'0'),
                HEX.get((v & 0xf) as usize).copied().unwrap_or(b'0'),
            ];
            return buf.as_slice();
        }
        _ => return c.encode_utf8(buf.as_mut_slice()).as_bytes(),
    }
    buf.get(..2).unwrap_or_default()
}

fn hex4(b: Option<&[u8]>) -> Option<u16> {
    let b = b?;
    let mut v: u16 = 0;
    for &d in b {
        let n = match d {
            b'0'..=b'9' => d.wrapping_sub(b'0'),
            b'a'..=b'f' => d.wrapping_sub(b'a').wrapping_add(10),
            b'A'..=b'F' => d.wrapping_sub(b'A').wrapping_add(10),
            _ => return None,
        };
        v = (v << 4) | u16::from(n);
    }
    (b.len() == 4).then_some(v)
}

/// A slot of the member table: a member name and where its value starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<'a> {
    pub(crate) key: JsonStr<'a>,
    pub(crate) value: usize,
}

/// The member names of the objects currently open (a stack).
#[derive(Debug)]
pub(crate) struct Table<'a> {
    slots: [Slot<'a>; MAX_OPEN_MEMBERS],
    len: usize,
}

impl<'a> Table<'a> {
    pub(crate) fn new() -> Self {
        Table {
            slots: [Slot {
                key: JsonStr::EMPTY,
                value: 0,
            }; MAX_OPEN_MEMBERS],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn push(&mut self, slot: Slot<'a>, offset: usize) -> Result<(), LimitError> {
        let free = self
            .slots
            .get_mut(self.len)
            .ok_or(LimitError::TooManyMembers { offset })?;
        *free = slot;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    pub(crate) fn get(&self, i: usize) -> Option<Slot<'a>> {
        self.slots.get(..self.len)?.get(i).copied()
    }

    pub(crate) fn range(&self, from: usize) -> &[Slot<'a>] {
        self.slots.get(from..self.len).unwrap_or_default()
    }

    pub(crate) fn range_mut(&mut self, from: usize) -> &mut [Slot<'a>] {
        self.slots.get_mut(from..self.len).unwrap_or_default()
    }
}

/// A validated JSON text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Document<'a> {
    pub(crate) text: &'a str,
    pub(crate) root: Span,
    /// The first number (in text order) outside the interoperable subset.
    pub(crate) first_bad_number: Option<NumberError>,
}

/// Validates `input` as one strict JSON text.
pub(crate) fn parse(input: &[u8]) -> Result<Document<'_>, ReceiptError> {
    if input.starts_with(b"\xEF\xBB\xBF") {
        return Err(json_err(0, JsonErrorKind::ByteOrderMark));
    }
    let text = core::str::from_utf8(input).map_err(|e| json_err(e.valid_up_to(), JsonErrorKind::InvalidUtf8))?;
    let mut table = Table::new();
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        table: &mut table,
        bad_number: None,
    };
    p.skip_ws();
    let root = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(json_err(p.pos, JsonErrorKind::TrailingCharacters));
    }
    Ok(Document {
        text,
        root,
        first_bad_number: p.bad_number,
    })
}

fn json_err(offset: usize, kind: JsonErrorKind) -> ReceiptError {
    ReceiptError::MalformedJson(JsonError { offset, kind })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

struct Parser<'a, 't> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    table: &'t mut Table<'a>,
    bad_number: Option<NumberError>,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n);
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.advance(1);
        }
    }

    fn err(&self, kind: JsonErrorKind) -> ReceiptError {
        let kind = if self.pos >= self.bytes.len() && kind == JsonErrorKind::UnexpectedCharacter {
            JsonErrorKind::UnexpectedEnd
        } else {
            kind
        };
        json_err(self.pos, kind)
    }

    /// Expects `b` (after whitespace) and consumes it.
    fn expect(&mut self, b: u8) -> Result<(), ReceiptError> {
        self.skip_ws();
        if self.peek() == Some(b) {
            self.advance(1);
            Ok(())
        } else {
            Err(self.err(JsonErrorKind::UnexpectedCharacter))
        }
    }

    /// One value at `self.pos` (no leading whitespace). `depth` is the number of
    /// containers enclosing it.
    fn value(&mut self, depth: usize) -> Result<Span, ReceiptError> {
        let start = self.pos;
        let kind = match self.peek() {
            None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(b'{') => {
                self.object(depth)?;
                Kind::Object
            }
            Some(b'[') => {
                self.array(depth)?;
                Kind::Array
            }
            Some(b'"') => {
                self.string()?;
                Kind::String
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            Some(b't') => {
                self.literal(b"true")?;
                Kind::True
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Kind::False
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Kind::Null
            }
            Some(_) => return Err(self.err(JsonErrorKind::UnexpectedCharacter)),
        };
        Ok(Span {
            kind,
            start,
            end: self.pos,
        })
    }

    fn enter(&self, depth: usize) -> Result<usize, ReceiptError> {
        let depth = depth.saturating_add(1);
        if depth > MAX_DEPTH {
            return Err(LimitError::TooDeep { offset: self.pos }.into());
        }
        Ok(depth)
    }

    fn object(&mut self, depth: usize) -> Result<(), ReceiptError> {
        let depth = self.enter(depth)?;
        self.advance(1);
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.advance(1);
            return Ok(());
        }
        let base = self.table.len();
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err(JsonErrorKind::UnexpectedCharacter));
            }
            let key_at = self.pos;
            let key = self.string()?;
            if self.table.range(base).iter().any(|s| s.key == key) {
                return Err(json_err(key_at, JsonErrorKind::DuplicateMember));
            }
            self.expect(b':')?;
            self.skip_ws();
            let value = self.pos;
            self.table.push(Slot { key, value }, key_at)?;
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b'}') => {
                    self.advance(1);
                    break;
                }
                _ => return Err(self.err(JsonErrorKind::UnexpectedCharacter)),
            }
        }
        self.table.truncate(base);
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<(), ReceiptError> {
        let depth = self.enter(depth)?;
        self.advance(1);
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.advance(1);
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.advance(1),
                Some(b']') => {
                    self.advance(1);
                    return Ok(());
                }
                _ => return Err(self.err(JsonErrorKind::UnexpectedCharacter)),
            }
        }
    }

    /// A string at `self.pos` (the opening quote).
    fn string(&mut self) -> Result<JsonStr<'a>, ReceiptError> {
        self.advance(1);
        let content = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    let raw = self
                        .text
                        .get(content..self.pos)
                        .ok_or(json_err(content, JsonErrorKind::InvalidUtf8))?;
                    self.advance(1);
                    return Ok(JsonStr { raw });
                }
                Some(b'\\') => self.escape()?,
                Some(0..=0x1f) => return Err(self.err(JsonErrorKind::ControlCharacter)),
                // UTF-8 is validated: bytes of multi-byte characters are >= 0x80, never a
                // quotation mark or a reverse solidus.
                Some(_) => self.advance(1),
            }
        }
    }

    /// An escape at `self.pos` (the reverse solidus).
    fn escape(&mut self) -> Result<(), ReceiptError> {
        let at = self.pos;
        let next = self.pos.saturating_add(1);
        match self.bytes.get(next) {
            None => Err(json_err(next, JsonErrorKind::UnexpectedEnd)),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.advance(2);
                Ok(())
            }
            Some(b'u') => {
                let unit = |from: usize| hex4(self.bytes.get(from..from.saturating_add(4)));
                let Some(u) = unit(at.saturating_add(2)) else {
                    return Err(json_err(at, JsonErrorKind::InvalidEscape));
                };
                match u {
                    0xD800..=0xDBFF => {
                        let low_at = at.saturating_add(6);
                        let is_u = self.bytes.get(low_at..low_at.saturating_add(2)) == Some(b"\\u".as_slice());
                        match unit(low_at.saturating_add(2)) {
                            Some(0xDC00..=0xDFFF) if is_u => {
                                self.advance(12);
                                Ok(())
                            }
                            _ => Err(json_err(at, JsonErrorKind::LoneSurrogate)),
                        }
                    }
                    0xDC00..=0xDFFF => Err(json_err(at, JsonErrorKind::LoneSurrogate)),
                    _ => {
                        self.advance(6);
                        Ok(())
                    }
                }
            }
            Some(_) => Err(json_err(at, JsonErrorKind::InvalidEscape)),
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.advance(1);
        }
        self.pos.saturating_sub(from)
    }

    /// A number at `self.pos`: RFC 8259 grammar, then the interoperable-subset check.
    fn number(&mut self) -> Result<(), ReceiptError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.advance(1);
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.advance(1);
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(json_err(start, JsonErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(json_err(start, JsonErrorKind::InvalidNumber)),
        }
        let int_end = self.pos;
        let mut fraction = false;
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.advance(1);
            if self.digits() == 0 {
                return Err(json_err(start, JsonErrorKind::InvalidNumber));
            }
            fraction = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.advance(1);
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.advance(1);
            }
            if self.digits() == 0 {
                return Err(json_err(start, JsonErrorKind::InvalidNumber));
            }
            exponent = true;
        }
        let digits = self.bytes.get(int_start..int_end).unwrap_or_default();
        let kind = if fraction {
            Some(NumberErrorKind::Fraction)
        } else if exponent {
            Some(NumberErrorKind::Exponent)
        } else if negative && digits == b"0" {
            Some(NumberErrorKind::NegativeZero)
        } else if magnitude(digits).is_none_or(|m| m > MAX_SAFE_INTEGER) {
            Some(NumberErrorKind::OutOfRange)
        } else {
            None
        };
        if let (Some(kind), None) = (kind, self.bad_number) {
            self.bad_number = Some(NumberError { offset: start, kind });
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ReceiptError> {
        let end = self.pos.saturating_add(word.len());
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.err(JsonErrorKind::InvalidLiteral))
        }
    }
}

/// The value of a string of decimal digits, if it fits in a u64.
pub(crate) fn magnitude(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// Skips whitespace from `pos`.
fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).copied().is_some_and(is_ws) {
        pos = pos.saturating_add(1);
    }
    pos
}

/// The index just past the closing quote of the string whose opening quote is at `pos`.
fn string_end(bytes: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos.checked_add(1)?;
    loop {
        match bytes.get(i)? {
            b'"' => return i.checked_add(1),
            b'\\' => i = i.checked_add(2)?,
            _ => i = i.checked_add(1)?,
        }
    }
}

/// The span of the validated value starting at `pos` (after optional whitespace).
pub(crate) fn skip(text: &str, pos: usize) -> Result<Span, ReceiptError> {
    let bytes = text.as_bytes();
    let start = skip_ws(bytes, pos);
    let broken = || json_err(start, JsonErrorKind::UnexpectedEnd);
    let first = *bytes.get(start).ok_or_else(broken)?;
    let (kind, end) = match first {
        b'"' => (Kind::String, string_end(bytes, start).ok_or_else(broken)?),
        b'{' | b'[' => {
            let kind = if first == b'{' { Kind::Object } else { Kind::Array };
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *bytes.get(i).ok_or_else(broken)? {
                    b'"' => {
                        i = string_end(bytes, i).ok_or_else(broken)?;
                        continue;
                    }
                    b'{' | b'[' => depth = depth.saturating_add(1),
                    b'}' | b']' => {
                        depth = depth.checked_sub(1).ok_or_else(broken)?;
                        if depth == 0 {
                            break (kind, i.saturating_add(1));
                        }
                    }
                    _ => {}
                }
                i = i.saturating_add(1);
            }
        }
        _ => {
            let kind = match first {
                b't' => Kind::True,
                b'f' => Kind::False,
                b'n' => Kind::Null,
                b'-' | b'0'..=b'9' => Kind::Number,
                _ => return Err(broken()),
            };
            let mut i = start;
            while bytes
                .get(i)
                .is_some_and(|&b| !is_ws(b) && !matches!(b, b',' | b']' | b'}' | b':'))
            {
                i = i.saturating_add(1);
            }
            (kind, i)
        }
    };
    Ok(Span { kind, start, end })
}

/// The members of a validated object, in text order.
#[derive(Clone, Debug)]
pub(crate) struct Members<'a> {
    text: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Members<'a> {
    pub(crate) fn new(text: &'a str, object: Span) -> Self {
        Members {
            text,
            pos: object.start.saturating_add(1),
            done: object.kind != Kind::Object,
        }
    }

    fn step(&mut self) -> Result<Option<(JsonStr<'a>, Span)>, ReceiptError> {
        let bytes = self.text.as_bytes();
        let mut pos = skip_ws(bytes, self.pos);
        match bytes.get(pos) {
            Some(b'}') => return Ok(None),
            Some(b',') => pos = skip_ws(bytes, pos.saturating_add(1)),
            _ => {}
        }
        let broken = json_err(pos, JsonErrorKind::UnexpectedEnd);
        if bytes.get(pos) != Some(&b'"') {
            return Err(broken);
        }
        let key_end = string_end(bytes, pos).ok_or(broken)?;
        let raw = self
            .text
            .get(pos.saturating_add(1)..key_end.saturating_sub(1))
            .ok_or(broken)?;
        let colon = skip_ws(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return Err(broken);
        }
        let value = skip(self.text, colon.saturating_add(1))?;
        self.pos = value.end;
        Ok(Some((JsonStr { raw }, value)))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<(JsonStr<'a>, Span), ReceiptError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step();
        if !matches!(step, Ok(Some(_))) {
            self.done = true;
        }
        step.transpose()
    }
}

/// The elements of a validated array, in order.
#[derive(Clone, Debug)]
pub(crate) struct Elements<'a> {
    text: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Elements<'a> {
    pub(crate) fn new(text: &'a str, array: Span) -> Self {
        Elements {
            text,
            pos: array.start.saturating_add(1),
            done: array.kind != Kind::Array,
        }
    }

    fn step(&mut self) -> Result<Option<Span>, ReceiptError> {
        let bytes = self.text.as_bytes();
        let mut pos = skip_ws(bytes, self.pos);
        match bytes.get(pos) {
            Some(b']') => return Ok(None),
            Some(b',') => pos = pos.saturating_add(1),
            _ => {}
        }
        let value = skip(self.text, pos)?;
        self.pos = value.end;
        Ok(Some(value))
    }
}

impl Iterator for Elements<'_> {
    type Item = Result<Span, ReceiptError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step();
        if !matches!(step, Ok(Some(_))) {
            self.done = true;
        }
        step.transpose()
    }
}

/// The string at a validated string span.
pub(crate) fn string_at(text: &str, span: Span) -> Option<JsonStr<'_>> {
    if span.kind != Kind::String {
        return None;
    }
    let raw = text.get(span.start.checked_add(1)?..span.end.checked_sub(1)?)?;
    Some(JsonStr { raw })
}

/// A read-only view of a validated JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonValue<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number: its literal, exactly as in the text.
    Number(&'a str),
    /// A string.
    String(JsonStr<'a>),
    /// An array: its text, brackets included, exactly as in the input.
    Array(&'a str),
    /// An object: its text, braces included, exactly as in the input.
    Object(&'a str),
}

impl<'a> JsonValue<'a> {
    pub(crate) fn from_span(text: &'a str, span: Span) -> Option<JsonValue<'a>> {
        let raw = text.get(span.start..span.end)?;
        Some(match span.kind {
            Kind::Null => JsonValue::Null,
            Kind::True => JsonValue::Bool(true),
            Kind::False => JsonValue::Bool(false),
            Kind::Number => JsonValue::Number(raw),
            Kind::String => JsonValue::String(string_at(text, span)?),
            Kind::Array => JsonValue::Array(raw),
            Kind::Object => JsonValue::Object(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    fn class(input: &str) -> Result<Document<'_>, ReceiptError> {
        parse(input.as_bytes())
    }

    fn kind(input: &str) -> JsonErrorKind {
        match class(input) {
            Err(ReceiptError::MalformedJson(e)) => e.kind,
            other => panic!("{input:?}: expected malformed_json, got {other:?}"),
        }
    }

    #[test]
    fn accepts_strict_json() {
        for ok in [
            "{}",
            "[]",
            " {\"a\" : [1, -2, 0, true, false, null, \"x\", {}]}\n",
            "\"\\ud83d\\ude00\\u00e9\\/\\b\\f\\n\\r\\t\\\\\\\"\"",
            "0",
            "-9007199254740991",
        ] {
            let doc = class(ok).unwrap();
            assert!(doc.first_bad_number.is_none(), "{ok}");
        }
    }

    #[test]
    fn rejects_non_json() {
        use JsonErrorKind::*;
        for (input, want) in [
            ("", UnexpectedEnd),
            ("   ", UnexpectedEnd),
            ("{", UnexpectedEnd),
            ("{\"a\"}", UnexpectedCharacter),
            ("{\"a\":1,}", UnexpectedCharacter),
            ("[1,]", UnexpectedCharacter),
            ("[1 2]", UnexpectedCharacter),
            ("{a:1}", UnexpectedCharacter),
            ("01", InvalidNumber),
            ("-", InvalidNumber),
            ("1.", InvalidNumber),
            ("1e", InvalidNumber),
            ("+1", UnexpectedCharacter),
            (".5", UnexpectedCharacter),
            ("tru", InvalidLiteral),
            ("nul", InvalidLiteral),
            ("True", UnexpectedCharacter),
            ("\"a\nb\"", ControlCharacter),
            ("\"\\x\"", InvalidEscape),
            ("\"\\u12\"", InvalidEscape),
            ("\"\\ud800\"", LoneSurrogate),
            ("\"\\udc00\\ud800\"", LoneSurrogate),
            ("\"\\ud800\\u0041\"", LoneSurrogate),
            ("{\"a\":1,\"a\":2}", DuplicateMember),
            ("{\"a\":1,\"\\u0061\":2}", DuplicateMember),
            ("{} {}", TrailingCharacters),
            ("\u{feff}{}", ByteOrderMark),
            ("\"unterminated", UnexpectedEnd),
        ] {
            assert_eq!(kind(input), want, "{input:?}");
        }
        assert_eq!(kind_bytes(b"\"\xff\""), InvalidUtf8);
    }

    fn kind_bytes(input: &[u8]) -> JsonErrorKind {
        match parse(input) {
            Err(ReceiptError::MalformedJson(e)) => e.kind,
            other => panic!("expected malformed_json, got {other:?}"),
        }
    }

    #[test]
    fn duplicates_are_per_object() {
        assert!(class("{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}").is_ok());
    }

    #[test]
    fn records_the_first_non_interoperable_number() {
        use NumberErrorKind::*;
        for (input, offset, want) in [
            ("[1e2]", 1, Exponent),
            ("[1E2]", 1, Exponent),
            ("[1, 1.0, 1e2]", 4, Fraction),
            ("-0", 0, NegativeZero),
            ("9007199254740992", 0, OutOfRange),
            ("-9007199254740992", 0, OutOfRange),
            ("123456789012345678901234567890", 0, OutOfRange),
        ] {
            let doc = class(input).unwrap();
            assert_eq!(
                doc.first_bad_number,
                Some(NumberError { offset, kind: want }),
                "{input}"
            );
        }
    }

    #[test]
    fn depth_and_member_limits() {
        let deep_ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(class(&deep_ok).is_ok());
        let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            class(&too_deep),
            Err(ReceiptError::ResourceLimit(LimitError::TooDeep { offset })) if offset == MAX_DEPTH
        ));
        let members = |n: usize| {
            let body: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
            format!("{{{}}}", body.join(","))
        };
        assert!(class(&members(MAX_OPEN_MEMBERS)).is_ok());
        assert!(matches!(
            class(&members(MAX_OPEN_MEMBERS + 1)),
            Err(ReceiptError::ResourceLimit(LimitError::TooManyMembers { .. }))
        ));
    }

    #[test]
    fn strings_decode() {
        let doc = class("\"a\\u00e9\\ud83d\\ude00\\n\\/\"").unwrap();
        let s = string_at(doc.text, doc.root).unwrap();
        assert_eq!(s.chars().collect::<String>(), "aé😀\n/");
        assert_eq!(s.to_string(), "aé😀\n/");
        assert!(s.eq_str("aé😀\n/"));
        assert!(!s.is_canonical());
        let mut out = Vec::new();
        s.write_canonical(&mut |b: &[u8]| out.extend_from_slice(b));
        assert_eq!(out, "aé😀\\n/".as_bytes());
        assert_eq!(s.canonical_len(), out.len());
    }

    #[test]
    fn canonical_spellings() {
        for (raw, canonical) in [
            ("abc", true),
            ("\\\"\\\\\\b\\f\\n\\r\\t", true),
            ("\\u0000\\u001f", true),
            ("\\u001F", false),
            ("\\u0008", false),
            ("\\/", false),
            ("\\u0041", false),
            ("\\u007f", false),
        ] {
            let text = format!("\"{raw}\"");
            let doc = class(&text).unwrap();
            assert_eq!(
                string_at(doc.text, doc.root).unwrap().is_canonical(),
                canonical,
                "{raw}"
            );
        }
    }

    #[test]
    fn utf16_order() {
        let doc = class("[\"\\ud800\\udc00\",\"\\ufffd\",\"a\",\"ab\"]").unwrap();
        let s: Vec<JsonStr<'_>> = Elements::new(doc.text, doc.root)
            .map(|e| string_at(doc.text, e.unwrap()).unwrap())
            .collect();
        assert_eq!(s[0].cmp_utf16(&s[1]), Ordering::Less);
        assert_eq!(s[2].cmp_utf16(&s[3]), Ordering::Less);
        assert_eq!(s[3].cmp_utf16(&s[0]), Ordering::Less);
    }

    #[test]
    fn members_and_elements_rescan() {
        let doc = class("{ \"a\" : [1, {\"b\":\"}\"}] , \"c\":\"x\\\"y\" ,\"d\":-1}").unwrap();
        let m: Vec<(String, JsonValue<'_>)> = Members::new(doc.text, doc.root)
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_string(), JsonValue::from_span(doc.text, v).unwrap())
            })
            .collect();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].1, JsonValue::Array("[1, {\"b\":\"}\"}]"));
        assert_eq!(m[1].0, "c");
        assert!(matches!(m[1].1, JsonValue::String(s) if s == "x\"y"));
        assert_eq!(m[2].1, JsonValue::Number("-1"));
    }
}
