//! `helm-airgap`: verify, inspect and export HELM EvidencePacks offline, verify HELM
//! `receipt.v5` receipts, and run the conformance vectors against any verifier.
//!
//! A thin binary over `verify-core`, `pack-format` and `receipt-v5`: flags are parsed into a typed
//! configuration in one place ([`cli`]); each subcommand is one module with a `run`.
//! It contains no network code. Exit status: 0 success (verified; `conform`: all
//! vectors passed), 1 verification failed, 2 usage or I/O error; a closed standard output is not an error. See README.md.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic,
        reason = "unit tests fail loudly"
    )
)]

mod ceremony;
mod cli;
mod conform;
mod encoding;
mod export;
mod files;
mod framing;
mod inspect;
mod keyfile;
mod keys;
mod output;
mod policy;
mod replay;
mod replay_effects;
mod report;
mod shell;
mod status;
mod time;
mod trust_root;
mod verify;
mod verify_receipt;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let command = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout (exit 0); usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match &command {
        Command::Verify(c) => verify::run(c),
        Command::Inspect(c) => inspect::run(c),
        Command::Export(c) => export::run(c),
        Command::Keys(c) => keys::run(c),
        Command::VerifyReceipt(c) => verify_receipt::run(c),
        Command::Conform(c) => conform::run(c),
        Command::Policy(c) => policy::run(c),
        Command::ReplayDecisions(c) => replay::run(c),
        Command::Ceremony(c) => ceremony::run(c),
        Command::Approve(a) => ceremony::approve(a),
        Command::Replay(a) => replay_effects::run(a),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            output::note!("{e}");
            e.status.into()
        }
    }
}
