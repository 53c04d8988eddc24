//! Splitting a command line into words as a POSIX shell would (`conform --implementation`).
//!
//! Only quoting is interpreted (XCU §2.2): white space (space, tab, newline) separates
//! words; a backslash outside quotes keeps the next character literally (and a
//! backslash-newline disappears); single quotes keep everything up to the next single
//! quote; inside double quotes a backslash escapes only `$`, `` ` ``, `"`, `\` and
//! newline. There are no expansions, redirections, operators or comments: `$HOME`, `*`,
//! `|` and `#` are ordinary characters. Python's `shlex.split` (the reference runner's)
//! gives the same words except for `\$`, `` \` `` and backslash-newline inside double
//! quotes and backslash-newline outside them, where it departs from POSIX; the protocol
//! (spec/conformance.md §1) says POSIX. A small splitter instead of a crate: these rules
//! are the whole job.

use core::fmt;

/// Why a command line could not be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// A `'` or `"` without its closing quote.
    UnclosedQuote(char),
    /// A backslash at the very end.
    TrailingBackslash,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::UnclosedQuote(q) => write!(f, "no closing quotation mark for {q}"),
            SplitError::TrailingBackslash => f.write_str("a backslash at the end escapes nothing"),
        }
    }
}

/// The words of `line`.
pub(crate) fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    // The word being built; `None` between words (so that '' makes an empty word).
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash),
                Some('\n') => {}
                Some(next) => word.get_or_insert_with(String::new).push(next),
            },
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnclosedQuote('\'')),
                        Some('\'') => break,
                        Some(q) => w.push(q),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnclosedQuote('"')),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err(SplitError::UnclosedQuote('"')),
                            Some('\n') => {}
                            Some(e @ ('$' | '`' | '"' | '\\')) => w.push(e),
                            Some(other) => {
                                w.push('\\');
                                w.push(other);
                            }
                        },
                        Some(q) => w.push(q),
                    }
                }
            }
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn words_and_white_space() {
        assert_eq!(
            ok("  python3\tadapter.py \n --fast "),
            ["python3", "adapter.py", "--fast"]
        );
        assert!(ok("").is_empty());
        assert!(ok(" \t\n").is_empty());
        assert_eq!(ok("cargo run -q --"), ["cargo", "run", "-q", "--"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(ok("'my adapter' x"), ["my adapter", "x"]);
        assert_eq!(ok("a'b c'd"), ["ab cd"]);
        assert_eq!(ok("'' x \"\""), ["", "x", ""]);
        assert_eq!(ok(r"'a\b' "), [r"a\b"]);
        assert_eq!(ok(r#""it's" 'say "hi"'"#), ["it's", r#"say "hi""#]);
        assert_eq!(ok(r#""a\"b\\c\$d\`e\xf""#), [r#"a"b\c$d`e\xf"#]);
        assert_eq!(ok("\"a\\\nb\""), ["ab"]);
        assert_eq!(
            ok("$HOME/*.py | # not a comment"),
            ["$HOME/*.py", "|", "#", "not", "a", "comment"]
        );
    }

    #[test]
    fn backslashes() {
        assert_eq!(ok(r"my\ adapter \'x\' \\"), ["my adapter", "'x'", "\\"]);
        assert_eq!(ok("a\\\nb c"), ["ab", "c"]);
        assert_eq!(ok(r"\a"), ["a"]);
    }

    #[test]
    fn errors() {
        assert_eq!(split("'abc"), Err(SplitError::UnclosedQuote('\'')));
        assert_eq!(split("x \"abc"), Err(SplitError::UnclosedQuote('"')));
        assert_eq!(split("x \"abc\\"), Err(SplitError::UnclosedQuote('"')));
        assert_eq!(split("abc\\"), Err(SplitError::TrailingBackslash));
    }
}
