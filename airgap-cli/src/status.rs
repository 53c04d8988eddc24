//! Exit statuses and the error every subcommand returns.
//!
//! | status | meaning |
//! |---:|---|
//! | 0 | success; for `verify`, the pack verified; for `verify-receipt`, the receipt verified; for `conform`, every vector passed (or failed as expected) |
//! | 1 | verification failed: the pack or receipt (or the input to `export`) is invalid; for `conform`, a vector failed or an expected failure passed |
//! | 2 | usage error, unreadable input, I/O error, or a bad trust-root, key file or trusted key; for `conform`, the runner could not run |

use core::fmt;
use std::io;
use std::process::ExitCode;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Exit 0.
    Success,
    /// Exit 1: something did not verify.
    Failed,
    /// Exit 2: usage or I/O error.
    Error,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(match s {
            Status::Success => 0,
            Status::Failed => 1,
            Status::Error => 2,
        })
    }
}

/// A failure with its exit status and a message for standard error.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) status: Status,
    pub(crate) message: String,
}

impl CliError {
    /// Exit 2: a bad argument or input file (not the pack's fault).
    pub(crate) fn usage(message: impl Into<String>) -> CliError {
        CliError {
            status: Status::Error,
            message: message.into(),
        }
    }

    /// Exit 2: an I/O error while doing `what`.
    pub(crate) fn io(what: impl fmt::Display, e: &io::Error) -> CliError {
        CliError::usage(format!("{what}: {e}"))
    }

    /// Exit 1: something does not verify.
    pub(crate) fn invalid(message: impl Into<String>) -> CliError {
        CliError {
            status: Status::Failed,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
