//! Standard output and standard error.
//!
//! A closed standard output (`helm-airgap verify PACK | head -3`) is not an error: output
//! stops and the exit status is still the verdict. Any other write error is exit 2.

use core::fmt;
use std::io::{self, Write};

use crate::status::CliError;

/// Buffered standard output that treats a broken pipe as "stop writing".
#[derive(Debug)]
pub(crate) struct Out {
    w: io::BufWriter<io::Stdout>,
    closed: bool,
    error: Option<io::Error>,
}

impl Out {
    pub(crate) fn new() -> Out {
        Out {
            w: io::BufWriter::new(io::stdout()),
            closed: false,
            error: None,
        }
    }

    fn absorb(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.closed = true,
            Err(e) => self.error = Some(e),
        }
    }

    /// Whether output stopped (the reader went away, or writing failed).
    pub(crate) fn stopped(&self) -> bool {
        self.closed || self.error.is_some()
    }

    /// Writes one line.
    pub(crate) fn line(&mut self, args: fmt::Arguments<'_>) {
        if self.stopped() {
            return;
        }
        let r = self.w.write_fmt(args).and_then(|()| self.w.write_all(b"\n"));
        self.absorb(r);
    }

    /// Writes `value` as pretty-printed JSON and a newline.
    pub(crate) fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::usage(format!("cannot encode the JSON report: {e}")))?;
        self.line(format_args!("{text}"));
        Ok(())
    }

    /// Flushes; a broken pipe is fine, any other write error is exit 2.
    pub(crate) fn finish(mut self) -> Result<(), CliError> {
        if !self.stopped() {
            let r = self.w.flush();
            self.absorb(r);
        }
        match self.error.take() {
            Some(e) => Err(CliError::io("writing to standard output", &e)),
            None => Ok(()),
        }
    }
}

/// `outln!(out, "...", args)`: one line on standard output.
macro_rules! outln {
    ($out:expr) => {
        $out.line(format_args!(""))
    };
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line on standard error, prefixed with the program name. Errors writing to
/// standard error are ignored: there is nowhere left to report them.
pub(crate) fn note_line(args: fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e.write_all(b"helm-airgap: ");
    let _ = e.write_fmt(args);
    let _ = e.write_all(b"\n");
}

/// `note!("...", args)`: a note on standard error.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::note_line(format_args!($($arg)*))
    };
}
pub(crate) use note;

/// Text from a pack (tool names, sessions, reason details) made safe for a terminal:
/// control characters and bidirectional overrides are shown as `\u{..}` escapes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Safe<'a>(pub(crate) &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Safe;

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(Safe("read_file").to_string(), "read_file");
        assert_eq!(Safe("a\u{1b}[31mb").to_string(), "a\\u{1b}[31mb");
        assert_eq!(Safe("x\u{202e}y").to_string(), "x\\u{202e}y");
    }
}
