//! The requirement expression language: parsed and type-checked when a bundle loads,
//! evaluated with a step budget. Total (every expression yields a value or a typed
//! error), deterministic (no clock, no randomness, no I/O: the request and the evidence
//! are the only inputs) and bounded (no loops, no recursion at run time beyond the
//! syntax tree, whose size is capped; every step is charged). Grammar: spec/guardian.md §4.

use core::fmt;

use serde_json::Value;

use crate::evidence::Evidence;
use crate::request::Request;

/// Longest expression source, in bytes.
pub const MAX_EXPR_LEN: usize = 4096;
/// Most syntax-tree nodes in one expression.
pub const MAX_NODES: usize = 256;
/// Deepest nesting of one expression.
pub const MAX_DEPTH: usize = 32;
/// Longest glob pattern or list literal.
pub const MAX_PATTERN_LEN: usize = 256;
/// Most elements of a list literal.
pub const MAX_LIST: usize = 256;

/// A literal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lit {
    Bool(bool),
    Int(i64),
    Str(String),
    Null,
}

/// Where a path starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    /// The full tool name (`server/tool` for MCP tools).
    Tool,
    /// The part of the tool name before the first `/` (empty if none).
    Server,
    /// The part after the first `/` (the whole name if none).
    ToolName,
    Principal,
    Session,
    /// Kernel time of the request, ms.
    Time,
    Args,
    Context,
}

impl Root {
    fn name(self) -> &'static str {
        match self {
            Root::Tool => "tool",
            Root::Server => "server",
            Root::ToolName => "tool_name",
            Root::Principal => "principal",
            Root::Session => "session",
            Root::Time => "time",
            Root::Args => "args",
            Root::Context => "context",
        }
    }
    fn parse(s: &str) -> Option<Root> {
        Some(match s {
            "tool" => Root::Tool,
            "server" => Root::Server,
            "tool_name" => Root::ToolName,
            "principal" => Root::Principal,
            "session" => Root::Session,
            "time" => Root::Time,
            "args" => Root::Args,
            "context" => Root::Context,
            _ => return None,
        })
    }
    fn ty(self) -> Ty {
        match self {
            Root::Time => Ty::Int,
            Root::Args | Root::Context => Ty::Dyn,
            _ => Ty::Str,
        }
    }
}

/// One step of a path into JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Functions over the evidence (the session's and principal's earlier records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    /// `calls("glob")` / `calls("glob", window_ms)`: permitted calls in this session.
    Calls,
    /// `principal_calls("glob"[, window_ms])`: permitted calls by this principal, all sessions.
    PrincipalCalls,
    /// `called("glob")`: at least one permitted call in this session.
    Called,
    /// `cost("glob"[, window_ms])`: cost units of executed calls in this session.
    Cost,
    /// `principal_cost("glob"[, window_ms])`.
    PrincipalCost,
    /// `approved("glob")`: an APPROVAL in this session granted an escalated call to a matching tool.
    Approved,
}

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Calls => "calls",
            Func::PrincipalCalls => "principal_calls",
            Func::Called => "called",
            Func::Cost => "cost",
            Func::PrincipalCost => "principal_cost",
            Func::Approved => "approved",
        }
    }
    fn parse(s: &str) -> Option<Func> {
        Some(match s {
            "calls" => Func::Calls,
            "principal_calls" => Func::PrincipalCalls,
            "called" => Func::Called,
            "cost" => Func::Cost,
            "principal_cost" => Func::PrincipalCost,
            "approved" => Func::Approved,
            _ => return None,
        })
    }
    fn ty(self) -> Ty {
        match self {
            Func::Called | Func::Approved => Ty::Bool,
            _ => Ty::Int,
        }
    }
    fn takes_window(self) -> bool {
        !matches!(self, Func::Called | Func::Approved)
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Lit(Lit),
    List(Vec<Lit>),
    Path(Root, Vec<Seg>),
    Exists(Root, Vec<Seg>),
    Len(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Op, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    Contains(Box<Expr>, Box<Expr>),
    Matches(Box<Expr>, String),
    Call(Func, String, Option<u64>),
}

/// Static types. `Dyn` is a value read from the arguments or context, checked when used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    Int,
    Str,
    Null,
    List,
    Dyn,
}

/// Why an expression does not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the source (0 for type errors found after parsing).
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        offset,
        message: message.into(),
    })
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Dot,
    Op(Op),
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    if src.len() > MAX_EXPR_LEN {
        return err(0, format!("expression longer than {MAX_EXPR_LEN} bytes"));
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        let start = i;
        let next = b.get(i.saturating_add(1)).copied();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i = i.saturating_add(1);
                continue;
            }
            b'(' => out.push((start, Tok::LParen)),
            b')' => out.push((start, Tok::RParen)),
            b'[' => out.push((start, Tok::LBrack)),
            b']' => out.push((start, Tok::RBrack)),
            b',' => out.push((start, Tok::Comma)),
            b'.' => out.push((start, Tok::Dot)),
            b'=' | b'!' | b'<' | b'>' => {
                let (op, len) = match (c, next) {
                    (b'=', Some(b'=')) => (Op::Eq, 2),
                    (b'!', Some(b'=')) => (Op::Ne, 2),
                    (b'<', Some(b'=')) => (Op::Le, 2),
                    (b'>', Some(b'=')) => (Op::Ge, 2),
                    (b'<', _) => (Op::Lt, 1),
                    (b'>', _) => (Op::Gt, 1),
                    _ => return err(start, "expected `==` or `!=`"),
                };
                out.push((start, Tok::Op(op)));
                i = i.saturating_add(len);
                continue;
            }
            b'"' | b'\'' => {
                let quote = c;
                let mut s = String::new();
                let mut j = i.saturating_add(1);
                loop {
                    match b.get(j) {
                        None => return err(start, "unterminated string"),
                        Some(&q) if q == quote => break,
                        Some(b'\\') => {
                            match b.get(j.saturating_add(1)) {
                                Some(&e @ (b'\\' | b'"' | b'\'')) => s.push(char::from(e)),
                                _ => return err(j, "only \\\\, \\\" and \\' escapes are allowed"),
                            }
                            j = j.saturating_add(2);
                        }
                        Some(_) => {
                            // Copy one UTF-8 character.
                            let rest = src.get(j..).unwrap_or("");
                            let ch = rest.chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            j = j.saturating_add(ch.len_utf8());
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
                i = j.saturating_add(1);
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let mut j = if c == b'-' { i.saturating_add(1) } else { i };
                let digits_start = j;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j = j.saturating_add(1);
                }
                if j == digits_start {
                    return err(start, "expected a digit");
                }
                let text = src.get(start..j).unwrap_or("");
                let v: i64 = match text.parse() {
                    Ok(v) => v,
                    Err(_) => return err(start, "integer out of range (64-bit signed)"),
                };
                out.push((start, Tok::Int(v)));
                i = j;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while b
                    .get(j)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
                {
                    j = j.saturating_add(1);
                }
                out.push((start, Tok::Ident(src.get(start..j).unwrap_or("").to_owned())));
                i = j;
                continue;
            }
            _ => return err(start, format!("unexpected character {:?}", char::from(c))),
        }
        i = i.saturating_add(1);
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    nodes: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos = self.pos.saturating_add(1);
        t
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == k)
    }
    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), ExprError> {
        if self.peek() == Some(t) {
            self.pos = self.pos.saturating_add(1);
            Ok(())
        } else {
            err(self.offset(), format!("expected {what}"))
        }
    }
    fn node(&mut self) -> Result<(), ExprError> {
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > MAX_NODES {
            return err(self.offset(), format!("more than {MAX_NODES} nodes"));
        }
        Ok(())
    }
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth = self.depth.saturating_add(1);
        if self.depth > MAX_DEPTH {
            return err(self.offset(), format!("nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.enter()?;
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth = self.depth.saturating_sub(1);
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.keyword("not") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            self.enter()?;
            let inner = self.unary()?;
            self.depth = self.depth.saturating_sub(1);
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.term()?;
        if let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            let rhs = self.term()?;
            return Ok(Expr::Cmp(op, Box::new(lhs), Box::new(rhs)));
        }
        if self.keyword("in") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            return Ok(Expr::In(Box::new(lhs), Box::new(self.term()?)));
        }
        if self.keyword("contains") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            return Ok(Expr::Contains(Box::new(lhs), Box::new(self.term()?)));
        }
        if self.keyword("matches") {
            self.pos = self.pos.saturating_add(1);
            self.node()?;
            let at = self.offset();
            return match self.bump() {
                Some(Tok::Str(p)) if p.len() <= MAX_PATTERN_LEN => Ok(Expr::Matches(Box::new(lhs), p)),
                Some(Tok::Str(_)) => err(at, format!("pattern longer than {MAX_PATTERN_LEN} bytes")),
                _ => err(at, "`matches` takes a string literal pattern"),
            };
        }
        Ok(lhs)
    }
    fn literal(&mut self) -> Result<Lit, ExprError> {
        let at = self.offset();
        match self.bump() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Int(v)) => Ok(Lit::Int(v)),
            Some(Tok::Ident(k)) if k == "true" => Ok(Lit::Bool(true)),
            Some(Tok::Ident(k)) if k == "false" => Ok(Lit::Bool(false)),
            Some(Tok::Ident(k)) if k == "null" => Ok(Lit::Null),
            _ => err(at, "expected a literal"),
        }
    }
    fn path(&mut self, root_name: &str, at: usize) -> Result<(Root, Vec<Seg>), ExprError> {
        let Some(root) = Root::parse(root_name) else {
            return err(at, format!("unknown name `{root_name}`"));
        };
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos = self.pos.saturating_add(1);
                    let at = self.offset();
                    match self.bump() {
                        Some(Tok::Ident(k) | Tok::Str(k)) => segs.push(Seg::Key(k)),
                        _ => return err(at, "expected a field name after `.`"),
                    }
                }
                Some(Tok::LBrack) => {
                    self.pos = self.pos.saturating_add(1);
                    let at = self.offset();
                    match self.bump() {
                        Some(Tok::Int(i)) if i >= 0 => segs.push(Seg::Index(usize::try_from(i).unwrap_or(usize::MAX))),
                        Some(Tok::Str(k)) => segs.push(Seg::Key(k)),
                        _ => return err(at, "expected an index or a quoted key"),
                    }
                    self.expect(&Tok::RBrack, "`]`")?;
                }
                _ => break,
            }
            self.node()?;
        }
        if !segs.is_empty() && root.ty() != Ty::Dyn {
            return err(at, format!("`{}` has no fields", root.name()));
        }
        Ok((root, segs))
    }
    fn term(&mut self) -> Result<Expr, ExprError> {
        self.node()?;
        let at = self.offset();
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos = self.pos.saturating_add(1);
                let e = self.or()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Some(Tok::LBrack) => {
                self.pos = self.pos.saturating_add(1);
                let mut items = Vec::new();
                if self.peek() != Some(&Tok::RBrack) {
                    loop {
                        items.push(self.literal()?);
                        if items.len() > MAX_LIST {
                            return err(at, format!("list longer than {MAX_LIST}"));
                        }
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos = self.pos.saturating_add(1);
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::RBrack, "`]` or `,`")?;
                Ok(Expr::List(items))
            }
            Some(Tok::Str(_) | Tok::Int(_)) => Ok(Expr::Lit(self.literal()?)),
            Some(Tok::Ident(name)) => {
                if matches!(name.as_str(), "true" | "false" | "null") {
                    return Ok(Expr::Lit(self.literal()?));
                }
                self.pos = self.pos.saturating_add(1);
                if self.peek() != Some(&Tok::LParen) {
                    let (root, segs) = self.path(&name, at)?;
                    return Ok(Expr::Path(root, segs));
                }
                self.pos = self.pos.saturating_add(1);
                let e = match name.as_str() {
                    "exists" => {
                        let at = self.offset();
                        let Some(Tok::Ident(r)) = self.bump() else {
                            return err(at, "`exists` takes a path");
                        };
                        let (root, segs) = self.path(&r, at)?;
                        Expr::Exists(root, segs)
                    }
                    "len" => {
                        self.enter()?;
                        let inner = self.or()?;
                        self.depth = self.depth.saturating_sub(1);
                        Expr::Len(Box::new(inner))
                    }
                    other => {
                        let Some(f) = Func::parse(other) else {
                            return err(at, format!("unknown function `{other}`"));
                        };
                        let at = self.offset();
                        let pattern = match self.bump() {
                            Some(Tok::Str(p)) if p.len() <= MAX_PATTERN_LEN => p,
                            _ => return err(at, format!("`{other}` takes a tool pattern (string literal)")),
                        };
                        let mut window = None;
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos = self.pos.saturating_add(1);
                            let at = self.offset();
                            match self.bump() {
                                Some(Tok::Int(w)) if w > 0 && f.takes_window() => {
                                    window = Some(w.unsigned_abs());
                                }
                                _ => {
                                    return err(
                                        at,
                                        format!("`{other}` takes a positive window in ms as second argument"),
                                    )
                                }
                            }
                        }
                        Expr::Call(f, pattern, window)
                    }
                };
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            _ => err(at, "expected a value, a path, a function or `(`"),
        }
    }
}

/// Parses and type-checks one requirement: it must be boolean (or a value read from the
/// request, checked to be boolean when evaluated).
pub(crate) fn compile(src: &str) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        nodes: 0,
        depth: 0,
        end: src.len(),
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return err(p.offset(), "unexpected input after the expression");
    }
    match typecheck(&e)? {
        Ty::Bool | Ty::Dyn => Ok(e),
        t => err(0, format!("a requirement must be boolean, this is {t:?}")),
    }
}

fn lit_ty(l: &Lit) -> Ty {
    match l {
        Lit::Bool(_) => Ty::Bool,
        Lit::Int(_) => Ty::Int,
        Lit::Str(_) => Ty::Str,
        Lit::Null => Ty::Null,
    }
}

fn compatible(a: Ty, b: Ty) -> bool {
    a == b || a == Ty::Dyn || b == Ty::Dyn
}

fn typecheck(e: &Expr) -> Result<Ty, ExprError> {
    let want = |t: Ty, want: Ty, what: &str| -> Result<(), ExprError> {
        if compatible(t, want) {
            Ok(())
        } else {
            err(0, format!("type error: {what} needs {want:?}, got {t:?}"))
        }
    };
    Ok(match e {
        Expr::Lit(l) => lit_ty(l),
        Expr::List(_) => Ty::List,
        Expr::Path(r, segs) => {
            if segs.is_empty() {
                r.ty()
            } else {
                Ty::Dyn
            }
        }
        Expr::Exists(..) => Ty::Bool,
        Expr::Len(inner) => {
            let t = typecheck(inner)?;
            if !matches!(t, Ty::Str | Ty::List | Ty::Dyn) {
                return err(0, format!("type error: len() of {t:?}"));
            }
            Ty::Int
        }
        Expr::Not(a) => {
            want(typecheck(a)?, Ty::Bool, "`not`")?;
            Ty::Bool
        }
        Expr::And(a, b) | Expr::Or(a, b) => {
            want(typecheck(a)?, Ty::Bool, "`and`/`or`")?;
            want(typecheck(b)?, Ty::Bool, "`and`/`or`")?;
            Ty::Bool
        }
        Expr::Cmp(op, a, b) => {
            let (ta, tb) = (typecheck(a)?, typecheck(b)?);
            match op {
                Op::Eq | Op::Ne => {
                    if !(compatible(ta, tb) || ta == Ty::Null || tb == Ty::Null) || ta == Ty::List || tb == Ty::List {
                        return err(0, format!("type error: cannot compare {ta:?} with {tb:?}"));
                    }
                }
                _ => {
                    want(ta, Ty::Int, "an ordering comparison")?;
                    want(tb, Ty::Int, "an ordering comparison")?;
                }
            }
            Ty::Bool
        }
        Expr::In(a, b) => {
            let ta = typecheck(a)?;
            if matches!(ta, Ty::List) {
                return err(0, "type error: `in` needs a scalar on the left");
            }
            let tb = typecheck(b)?;
            if !matches!(tb, Ty::List | Ty::Dyn) {
                return err(0, format!("type error: `in` needs a list on the right, got {tb:?}"));
            }
            Ty::Bool
        }
        Expr::Contains(a, b) => {
            let ta = typecheck(a)?;
            if !matches!(ta, Ty::Str | Ty::Dyn) {
                return err(
                    0,
                    format!("type error: `contains` needs a string or an array on the left, got {ta:?}"),
                );
            }
            let tb = typecheck(b)?;
            if matches!(tb, Ty::List) {
                return err(0, "type error: `contains` needs a scalar on the right");
            }
            Ty::Bool
        }
        Expr::Matches(a, _) => {
            want(typecheck(a)?, Ty::Str, "`matches`")?;
            Ty::Bool
        }
        Expr::Call(f, _, _) => f.ty(),
    })
}

// ---------------------------------------------------------------- printing

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Int(v) => write!(f, "{v}"),
            Lit::Str(s) => write_str(f, s),
            Lit::Null => f.write_str("null"),
        }
    }
}

fn write_path(f: &mut fmt::Formatter<'_>, r: Root, segs: &[Seg]) -> fmt::Result {
    f.write_str(r.name())?;
    for s in segs {
        match s {
            Seg::Key(k) => {
                f.write_str("[")?;
                write_str(f, k)?;
                f.write_str("]")?;
            }
            Seg::Index(i) => write!(f, "[{i}]")?,
        }
    }
    Ok(())
}

/// Binding strength: 0 `or`, 1 `and`, 2 `not`, 3 comparisons, 4 terms.
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 0,
        Expr::And(..) => 1,
        Expr::Not(_) => 2,
        Expr::Cmp(..) | Expr::In(..) | Expr::Contains(..) | Expr::Matches(..) => 3,
        _ => 4,
    }
}

/// Writes `e` where the grammar needs at least binding strength `level`: in
/// parentheses exactly when it binds more loosely.
fn write_at(f: &mut fmt::Formatter<'_>, e: &Expr, level: u8) -> fmt::Result {
    if prec(e) < level {
        f.write_str("(")?;
        write_at(f, e, 0)?;
        return f.write_str(")");
    }
    match e {
        Expr::Lit(l) => write!(f, "{l}"),
        Expr::List(items) => {
            f.write_str("[")?;
            for (i, l) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{l}")?;
            }
            f.write_str("]")
        }
        Expr::Path(r, segs) => write_path(f, *r, segs),
        Expr::Exists(r, segs) => {
            f.write_str("exists(")?;
            write_path(f, *r, segs)?;
            f.write_str(")")
        }
        Expr::Len(a) => {
            f.write_str("len(")?;
            write_at(f, a, 0)?;
            f.write_str(")")
        }
        Expr::Or(a, b) => {
            write_at(f, a, 0)?;
            f.write_str(" or ")?;
            write_at(f, b, 1)
        }
        Expr::And(a, b) => {
            write_at(f, a, 1)?;
            f.write_str(" and ")?;
            write_at(f, b, 2)
        }
        Expr::Not(a) => {
            f.write_str("not ")?;
            write_at(f, a, 2)
        }
        Expr::Cmp(op, a, b) => {
            write_at(f, a, 4)?;
            write!(f, " {} ", op.text())?;
            write_at(f, b, 4)
        }
        Expr::In(a, b) => {
            write_at(f, a, 4)?;
            f.write_str(" in ")?;
            write_at(f, b, 4)
        }
        Expr::Contains(a, b) => {
            write_at(f, a, 4)?;
            f.write_str(" contains ")?;
            write_at(f, b, 4)
        }
        Expr::Matches(a, p) => {
            write_at(f, a, 4)?;
            f.write_str(" matches ")?;
            write_str(f, p)
        }
        Expr::Call(func, p, w) => {
            write!(f, "{}(", func.name())?;
            write_str(f, p)?;
            if let Some(w) = w {
                write!(f, ", {w}")?;
            }
            f.write_str(")")
        }
    }
}

/// The canonical text of an expression: parentheses only where the tree needs them,
/// one space around operators, double-quoted strings, bracketed path keys. Parsing it
/// gives back the same tree (and never a deeper one than the source's), so it is what
/// the canonical bundle (and its hash) holds.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_at(f, self, 0)
    }
}

// ---------------------------------------------------------------- evaluation

/// Why an evaluation failed: each maps to its own DENY reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// A path names a field the request does not have: `POLICY_MISSING_FIELD`.
    MissingField(String),
    /// A value of the wrong type: `POLICY_TYPE_ERROR`.
    Type(String),
    /// The step budget or a size limit was exhausted: `POLICY_LIMIT_EXCEEDED`.
    Limit(String),
}

impl EvalError {
    /// The DENY reason code of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            EvalError::MissingField(_) => "POLICY_MISSING_FIELD",
            EvalError::Type(_) => "POLICY_TYPE_ERROR",
            EvalError::Limit(_) => "POLICY_LIMIT_EXCEEDED",
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::MissingField(p) => write!(f, "missing field {p}"),
            EvalError::Type(m) => write!(f, "type error: {m}"),
            EvalError::Limit(m) => write!(f, "limit exceeded: {m}"),
        }
    }
}

/// A run-time value: borrowed from the request, the bundle or the evidence.
#[derive(Clone, Copy, Debug)]
enum Val<'a> {
    Bool(bool),
    Int(i64),
    Str(&'a str),
    Null,
    List(&'a [Lit]),
    Array(&'a [Value]),
    Object,
    /// A JSON number that is not a 64-bit signed integer (floats are not compared).
    OtherNumber,
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Str(_) => "string",
            Val::Null => "null",
            Val::List(_) | Val::Array(_) => "list",
            Val::Object => "object",
            Val::OtherNumber => "non-integer number",
        }
    }
}

fn from_json(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => n.as_i64().map_or(Val::OtherNumber, Val::Int),
        Value::String(s) => Val::Str(s),
        Value::Array(a) => Val::Array(a),
        Value::Object(_) => Val::Object,
    }
}

fn from_lit(l: &Lit) -> Val<'_> {
    match l {
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Int(v) => Val::Int(*v),
        Lit::Str(s) => Val::Str(s),
        Lit::Null => Val::Null,
    }
}

/// Evaluation state: the inputs and the remaining step budget.
pub(crate) struct Ctx<'a> {
    pub(crate) req: &'a Request,
    pub(crate) ev: &'a Evidence,
    pub(crate) steps: u64,
}

impl Ctx<'_> {
    fn charge(&mut self, n: u64) -> Result<(), EvalError> {
        match self.steps.checked_sub(n) {
            Some(s) => {
                self.steps = s;
                Ok(())
            }
            None => {
                self.steps = 0;
                Err(EvalError::Limit("evaluation step budget".into()))
            }
        }
    }
}

fn path_text(r: Root, segs: &[Seg]) -> String {
    struct P<'a>(Root, &'a [Seg]);
    impl fmt::Display for P<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_path(f, self.0, self.1)
        }
    }
    P(r, segs).to_string()
}

/// Resolves a JSON path: `Ok(None)` when a key or index is absent.
fn resolve<'a>(root: &'a Value, segs: &[Seg], r: Root) -> Result<Option<&'a Value>, EvalError> {
    let mut cur = root;
    for s in segs {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get(k) {
                Some(v) => v,
                None => return Ok(None),
            },
            (Seg::Index(i), Value::Array(a)) => match a.get(*i) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => {
                return Err(EvalError::Type(format!(
                    "{} steps into a {}",
                    path_text(r, segs),
                    from_json(cur).type_name()
                )))
            }
        };
    }
    Ok(Some(cur))
}

fn loose_eq(a: Val<'_>, b: Val<'_>) -> bool {
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Null, Val::Null) => true,
        _ => false,
    }
}

/// Glob match: `*` matches any run of characters (including `/`), `?` exactly one;
/// everything else is literal. The classic single-backtrack algorithm: time at most
/// `(len(text) + 1) × (len(pattern) + 1)` byte comparisons, no allocation.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: &[u8] = pattern.as_bytes();
    let t: &[u8] = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi = pi.saturating_add(1);
                continue;
            }
            Some(b'?') => {
                // One whole UTF-8 character.
                let w = utf8_width(t.get(ti).copied().unwrap_or(0));
                pi = pi.saturating_add(1);
                ti = ti.saturating_add(w);
                continue;
            }
            Some(&c) if t.get(ti) == Some(&c) => {
                pi = pi.saturating_add(1);
                ti = ti.saturating_add(1);
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                // The star takes one more whole character.
                let st = st.saturating_add(utf8_width(t.get(st).copied().unwrap_or(0)));
                star = Some((sp, st));
                pi = sp.saturating_add(1);
                ti = st;
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi = pi.saturating_add(1);
    }
    pi == p.len() && ti == t.len()
}

fn utf8_width(b: u8) -> usize {
    match b {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn glob_cost(pattern: &str, text: &str) -> u64 {
    let (n, m) = (text.len() as u64, pattern.len() as u64);
    if pattern.contains('*') {
        // Single-backtrack matching: at most (n + 1) × (m + 1) byte comparisons.
        n.saturating_add(1).saturating_mul(m.saturating_add(1))
    } else {
        n.min(m).saturating_add(1)
    }
}

fn eval_val<'a>(e: &'a Expr, cx: &mut Ctx<'a>) -> Result<Val<'a>, EvalError> {
    cx.charge(1)?;
    Ok(match e {
        Expr::Lit(l) => from_lit(l),
        Expr::List(items) => Val::List(items),
        Expr::Path(r, segs) => {
            let req = cx.req;
            match r {
                Root::Tool => Val::Str(&req.tool),
                Root::Server => Val::Str(req.tool.split_once('/').map_or("", |s| s.0)),
                Root::ToolName => Val::Str(req.tool.split_once('/').map_or(req.tool.as_str(), |s| s.1)),
                Root::Principal => Val::Str(&req.principal),
                Root::Session => Val::Str(&req.session),
                Root::Time => Val::Int(i64::try_from(req.time).unwrap_or(i64::MAX)),
                Root::Args | Root::Context => {
                    let root = if *r == Root::Args { &req.args } else { &req.context };
                    cx.charge(segs.len() as u64)?;
                    match resolve(root, segs, *r)? {
                        Some(v) => from_json(v),
                        None => return Err(EvalError::MissingField(path_text(*r, segs))),
                    }
                }
            }
        }
        Expr::Exists(r, segs) => {
            let root = if *r == Root::Args {
                &cx.req.args
            } else {
                &cx.req.context
            };
            cx.charge(segs.len() as u64)?;
            match *r {
                Root::Args | Root::Context => Val::Bool(matches!(resolve(root, segs, *r), Ok(Some(_)))),
                _ => Val::Bool(true),
            }
        }
        Expr::Len(a) => match eval_val(a, cx)? {
            Val::Str(s) => Val::Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)),
            Val::List(l) => Val::Int(i64::try_from(l.len()).unwrap_or(i64::MAX)),
            Val::Array(l) => Val::Int(i64::try_from(l.len()).unwrap_or(i64::MAX)),
            v => return Err(EvalError::Type(format!("len() of a {}", v.type_name()))),
        },
        Expr::Not(a) => Val::Bool(!eval_bool(a, cx)?),
        Expr::And(a, b) => Val::Bool(eval_bool(a, cx)? && eval_bool(b, cx)?),
        Expr::Or(a, b) => Val::Bool(eval_bool(a, cx)? || eval_bool(b, cx)?),
        Expr::Cmp(op, a, b) => {
            let (x, y) = (eval_val(a, cx)?, eval_val(b, cx)?);
            let r = match (op, x, y) {
                (Op::Eq | Op::Ne, Val::Null, _) | (Op::Eq | Op::Ne, _, Val::Null) => {
                    matches!((x, y), (Val::Null, Val::Null))
                }
                (Op::Eq | Op::Ne, Val::Bool(p), Val::Bool(q)) => p == q,
                (Op::Eq | Op::Ne, Val::Int(p), Val::Int(q)) => p == q,
                (Op::Eq | Op::Ne, Val::Str(p), Val::Str(q)) => {
                    cx.charge(p.len().min(q.len()) as u64 / 64)?;
                    p == q
                }
                (Op::Lt, Val::Int(p), Val::Int(q)) => p < q,
                (Op::Le, Val::Int(p), Val::Int(q)) => p <= q,
                (Op::Gt, Val::Int(p), Val::Int(q)) => p > q,
                (Op::Ge, Val::Int(p), Val::Int(q)) => p >= q,
                _ => {
                    return Err(EvalError::Type(format!(
                        "cannot compare {} {} {}",
                        x.type_name(),
                        op.text(),
                        y.type_name()
                    )))
                }
            };
            Val::Bool(if *op == Op::Ne { !r } else { r })
        }
        Expr::In(a, b) => {
            let x = eval_val(a, cx)?;
            if matches!(x, Val::List(_) | Val::Array(_) | Val::Object | Val::OtherNumber) {
                return Err(EvalError::Type(format!("`in` with a {} on the left", x.type_name())));
            }
            match eval_val(b, cx)? {
                Val::List(l) => {
                    cx.charge(l.len() as u64)?;
                    Val::Bool(l.iter().any(|i| loose_eq(x, from_lit(i))))
                }
                Val::Array(l) => {
                    cx.charge(l.len() as u64)?;
                    Val::Bool(l.iter().any(|i| loose_eq(x, from_json(i))))
                }
                v => return Err(EvalError::Type(format!("`in` with a {} on the right", v.type_name()))),
            }
        }
        Expr::Contains(a, b) => {
            let (x, y) = (eval_val(a, cx)?, eval_val(b, cx)?);
            match (x, y) {
                (Val::Str(s), Val::Str(n)) => {
                    cx.charge((s.len() as u64).saturating_add(n.len() as u64) / 16)?;
                    Val::Bool(s.contains(n))
                }
                (Val::Array(l), y) if !matches!(y, Val::List(_) | Val::Array(_) | Val::Object) => {
                    cx.charge(l.len() as u64)?;
                    Val::Bool(l.iter().any(|i| loose_eq(y, from_json(i))))
                }
                _ => return Err(EvalError::Type(format!("{} contains {}", x.type_name(), y.type_name()))),
            }
        }
        Expr::Matches(a, p) => match eval_val(a, cx)? {
            Val::Str(s) => {
                cx.charge(glob_cost(p, s) / 16)?;
                Val::Bool(glob_match(p, s))
            }
            v => return Err(EvalError::Type(format!("`matches` on a {}", v.type_name()))),
        },
        Expr::Call(f, pattern, window) => {
            let (ev, req) = (cx.ev, cx.req);
            cx.charge(ev.scan_cost(pattern))?;
            let since = window.map(|w| req.time.saturating_sub(w));
            match f {
                Func::Calls => Val::Int(ev.calls(pattern, since, false)),
                Func::PrincipalCalls => Val::Int(ev.calls(pattern, since, true)),
                Func::Called => Val::Bool(ev.calls(pattern, None, false) > 0),
                Func::Cost => Val::Int(ev.cost(pattern, since, false)),
                Func::PrincipalCost => Val::Int(ev.cost(pattern, since, true)),
                Func::Approved => Val::Bool(ev.approved(pattern)),
            }
        }
    })
}

/// Evaluates a requirement to a boolean.
pub(crate) fn eval_bool<'a>(e: &'a Expr, cx: &mut Ctx<'a>) -> Result<bool, EvalError> {
    match eval_val(e, cx)? {
        Val::Bool(b) => Ok(b),
        v => Err(EvalError::Type(format!("{e} is a {}, not a boolean", v.type_name()))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_round_trips() {
        for src in [
            "args.path matches '/workspace/*' and not (args.path contains '..')",
            "tool == 'a' or tool == 'b' and time > 5",
            "args['odd key'][0] in [1, 2, \"x\", null, true]",
            "calls('fs/*', 60000) < 10 and called('read_inbox') and not exists(context.x.y)",
            "len(args.items) <= 3",
            "principal != 'x\\'y'",
            "not not not (tool == 'a')",
            "(not called('x')) == true",
            "(tool == 'a' or tool == 'b') and not (time > 3 or time < 1)",
            "tool == 'a' or (tool == 'b' or tool == 'c')",
            "(exists(args.a) and exists(args.b)) and (exists(args.c) and exists(args.d))",
        ] {
            let e = compile(src).unwrap();
            let text = e.to_string();
            let again = compile(&text).unwrap();
            assert_eq!(e, again, "{src} -> {text}");
            assert_eq!(text, again.to_string());
        }
    }

    #[test]
    fn canonical_text_example_of_the_spec() {
        let e = compile("( args.amount<=100 ) and not(tool=='x')").unwrap();
        assert_eq!(e.to_string(), "args[\"amount\"] <= 100 and not tool == \"x\"");
    }

    #[test]
    fn glob_agrees_with_a_reference_matcher() {
        // Differential test against the obvious exponential recursion, on every
        // pattern and text over a small alphabet (a deterministic generator).
        fn reference(p: &[char], t: &[char]) -> bool {
            match (p.first(), t.first()) {
                (None, None) => true,
                (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
                (Some('?'), Some(_)) => reference(&p[1..], &t[1..]),
                (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
                _ => false,
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n) as usize
        };
        for _ in 0..200_000 {
            let p: String = (0..next(7)).map(|_| ['a', '\u{e9}', '*', '?', '/'][next(5)]).collect();
            let t: String = (0..next(9))
                .map(|_| ['a', '\u{e9}', '/', '\u{1f600}'][next(4)])
                .collect();
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            assert_eq!(glob_match(&p, &t), reference(&pc, &tc), "{p:?} {t:?}");
        }
    }

    #[test]
    fn static_errors_are_rejected() {
        for src in [
            "",
            "tool ==",
            "tool == 1",
            "time matches 'x'",
            "not 3",
            "tool.x == 'a'",
            "nothing == 1",
            "frobnicate('x')",
            "args.x matches args.y",
            "calls('x') and 1",
            "tool",
            "'unterminated",
            "1 = 2",
            "called('x', 10)",
            "99999999999999999999 > 1",
            "args.a in 'x'",
            "tool == 'a' tool",
        ] {
            assert!(compile(src).is_err(), "{src:?} compiled");
        }
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        assert!(compile(&deep).is_err());
        let many = vec!["true"; 200].join(" and ");
        assert!(compile(&many).is_err());
        // A long chain and deep negations within the limits stay loadable in canonical text.
        let chain = vec!["tool == 'x'"; 60].join(" and ");
        let e = compile(&chain).unwrap();
        assert_eq!(compile(&e.to_string()).unwrap(), e);
        let nots = format!("{}true", "not ".repeat(30));
        let e = compile(&nots).unwrap();
        assert_eq!(compile(&e.to_string()).unwrap(), e);
        assert!(compile(&"x".repeat(MAX_EXPR_LEN + 1)).is_err());
    }

    #[test]
    fn glob() {
        assert!(glob_match("/workspace/*", "/workspace/a/b.rs"));
        assert!(glob_match("*.rs", "src/x.rs"));
        assert!(!glob_match("*.rs", "src/x.rsx"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a?c", "a\u{e9}c"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("github/*", "github/create_issue"));
        assert!(!glob_match("github/*", "gitlab/x"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!glob_match("*a*b*c*d", "xxaxxbxxcxx"));
    }
}
