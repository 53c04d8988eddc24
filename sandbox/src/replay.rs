//! Offline replay of a sandboxed EFFECT (spec/sandbox.md §7): re-execute the module on the
//! recorded input, seed, time and limits, and compare output bytes, fuel and ending.

use core::fmt;

use sha2::{Digest, Sha256};
use verify_core::EffectStatus;

use crate::engine::{ModuleRef, RunRequest, Sandbox};
use crate::error::SandboxError;
use crate::evidence::{decode_output, encode_output, executor, Ending, SandboxEvidence};
use crate::limits::{ENGINE, FUEL_MODEL};
use crate::wasi::VirtualFile;

/// What the record says about the call (from the EFFECT body, its extension map and its
/// output blob).
#[derive(Clone, Copy, Debug)]
pub struct RecordedEffect<'a> {
    /// The decoded extension entry.
    pub evidence: &'a SandboxEvidence,
    /// EFFECT key 0.
    pub status: EffectStatus,
    /// EFFECT key 5.
    pub executor: &'a str,
    /// The `fuel` entry of EFFECT key 6, if any.
    pub fuel_meter: Option<u64>,
    /// The output blob's content (after its 16-byte salt): the result bytes.
    pub output: &'a [u8],
}

/// The bytes the replay runs on, taken from the pack's blobs.
#[derive(Clone, Copy, Debug)]
pub struct ReplayInputs<'a> {
    /// The module (the module blob's content).
    pub module: &'a [u8],
    /// stdin (the content of the `args` blob).
    pub input: &'a [u8],
    /// The virtual files named by the evidence, with their blobs' content.
    pub files: &'a [VirtualFile],
}

/// Replay settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Wall-clock milliseconds allowed to the re-execution, at least the recorded limit
    /// (a replaying machine may be slower). Running out makes the replay inconclusive,
    /// never a mismatch.
    pub wall_ms: u64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { wall_ms: 60_000 }
    }
}

/// One thing that differs between the record and the re-execution (or within the
/// record).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// The module bytes do not hash to the recorded module.
    ModuleHash {
        /// In the evidence.
        recorded: [u8; 32],
        /// Of the bytes given.
        actual: [u8; 32],
    },
    /// The EFFECT's executor is not `wasm:sha256:<module>`.
    Executor {
        /// In the record.
        recorded: String,
        /// For the evidence's module.
        expected: String,
    },
    /// The EFFECT's `fuel` meter is not the evidence's `fuel_used`.
    FuelMeter {
        /// EFFECT meters.
        meter: Option<u64>,
        /// Evidence.
        evidence: u64,
    },
    /// The files given are not the paths the evidence names.
    Files,
    /// The run ended differently.
    Ending {
        /// Recorded.
        recorded: Ending,
        /// Re-executed.
        replayed: Ending,
    },
    /// The fuel used differs.
    Fuel {
        /// Recorded.
        recorded: u64,
        /// Re-executed.
        replayed: u64,
    },
    /// The EFFECT status differs.
    Status {
        /// Recorded.
        recorded: EffectStatus,
        /// Re-executed.
        replayed: EffectStatus,
    },
    /// The recorded output bytes are not a canonical sandbox output encoding.
    OutputEncoding,
    /// The exit status differs.
    ExitCode {
        /// Recorded.
        recorded: Option<i32>,
        /// Re-executed.
        replayed: Option<i32>,
    },
    /// stdout differs.
    Stdout {
        /// Recorded length.
        recorded_len: usize,
        /// Re-executed length.
        replayed_len: usize,
        /// Offset of the first differing byte.
        first_difference: usize,
    },
    /// stderr differs.
    Stderr {
        /// Recorded length.
        recorded_len: usize,
        /// Re-executed length.
        replayed_len: usize,
        /// Offset of the first differing byte.
        first_difference: usize,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::ModuleHash { recorded, actual } => write!(
                f,
                "module bytes hash to {}, the record names {}",
                hex::encode(actual),
                hex::encode(recorded)
            ),
            Difference::Executor { recorded, expected } => {
                write!(f, "executor is {recorded:?}, expected {expected:?}")
            }
            Difference::FuelMeter { meter, evidence } => {
                write!(f, "fuel meter {meter:?} differs from the evidence's fuel_used {evidence}")
            }
            Difference::Files => f.write_str("the files given are not those the evidence names"),
            Difference::Ending { recorded, replayed } => write!(f, "ending: recorded {recorded}, replayed {replayed}"),
            Difference::Fuel { recorded, replayed } => write!(f, "fuel: recorded {recorded}, replayed {replayed}"),
            Difference::Status { recorded, replayed } => {
                write!(f, "status: recorded {recorded:?}, replayed {replayed:?}")
            }
            Difference::OutputEncoding => f.write_str("the recorded output is not a sandbox output encoding"),
            Difference::ExitCode { recorded, replayed } => {
                write!(f, "exit status: recorded {recorded:?}, replayed {replayed:?}")
            }
            Difference::Stdout {
                recorded_len,
                replayed_len,
                first_difference,
            } => write!(
                f,
                "stdout: recorded {recorded_len} bytes, replayed {replayed_len}, first difference at byte {first_difference}"
            ),
            Difference::Stderr {
                recorded_len,
                replayed_len,
                first_difference,
            } => write!(
                f,
                "stderr: recorded {recorded_len} bytes, replayed {replayed_len}, first difference at byte {first_difference}"
            ),
        }
    }
}

/// Why a replay did not confirm the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The record and the re-execution (or the record and its own blobs) disagree.
    Mismatch(Vec<Difference>),
    /// The run was stopped by the wall clock: there is nothing deterministic to compare.
    NotReplayable,
    /// The record was made by another engine: this one refuses to judge it.
    EngineDiffers {
        /// Recorded.
        recorded: String,
        /// This build.
        ours: &'static str,
    },
    /// The record was made under another fuel model: refuses to judge.
    FuelModelDiffers {
        /// Recorded.
        recorded: u32,
        /// This build.
        ours: u32,
    },
    /// The re-execution ran out of wall-clock time: inconclusive.
    TimedOut,
    /// The re-execution could not be carried out for a reason that is not the module's
    /// (e.g. the module exceeds this sandbox's size limit): inconclusive.
    Sandbox(SandboxError),
}

impl ReplayError {
    /// Whether the record is contradicted (as opposed to the replay being inconclusive).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, ReplayError::Mismatch(_))
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Mismatch(d) => {
                f.write_str("replay mismatch: ")?;
                for (i, x) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
            ReplayError::NotReplayable => f.write_str("not replayable: the run was stopped by the wall clock"),
            ReplayError::EngineDiffers { recorded, ours } => {
                write!(
                    f,
                    "engine version differs: recorded {recorded:?}, this replayer is {ours:?}; not judged"
                )
            }
            ReplayError::FuelModelDiffers { recorded, ours } => {
                write!(
                    f,
                    "fuel model differs: recorded {recorded}, this replayer has {ours}; not judged"
                )
            }
            ReplayError::TimedOut => f.write_str("the re-execution ran out of wall-clock time; not judged"),
            ReplayError::Sandbox(e) => write!(f, "the re-execution could not run: {e}; not judged"),
        }
    }
}

impl core::error::Error for ReplayError {}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// What a successful replay re-executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Fuel used by the re-execution (equal to the record's).
    pub fuel_used: u64,
    /// How it ended (equal to the record's).
    pub ending: Ending,
}

/// Re-executes a recorded sandboxed call and compares. `Ok` means the record's output
/// bytes, fuel, status and ending are exactly what the module produces on the recorded
/// inputs.
pub fn replay_effect(
    sandbox: &Sandbox,
    recorded: &RecordedEffect<'_>,
    inputs: &ReplayInputs<'_>,
    options: &ReplayOptions,
) -> Result<Replayed, ReplayError> {
    let ev = recorded.evidence;
    // What the record must say about itself, whatever the engine.
    let mut diffs = Vec::new();
    let actual: [u8; 32] = Sha256::digest(inputs.module).into();
    if actual != ev.module {
        diffs.push(Difference::ModuleHash {
            recorded: ev.module,
            actual,
        });
    }
    let expected = executor(&ev.module);
    if recorded.executor != expected {
        diffs.push(Difference::Executor {
            recorded: recorded.executor.to_string(),
            expected,
        });
    }
    if recorded.fuel_meter != Some(ev.fuel_used) {
        diffs.push(Difference::FuelMeter {
            meter: recorded.fuel_meter,
            evidence: ev.fuel_used,
        });
    }
    let mut given: Vec<&str> = inputs.files.iter().map(|f| f.path.as_str()).collect();
    given.sort_unstable();
    if !given.iter().copied().eq(ev.files.iter().map(|(p, _)| p.as_str())) {
        diffs.push(Difference::Files);
    }
    let recorded_output = decode_output(recorded.output);
    if recorded_output.is_err() {
        diffs.push(Difference::OutputEncoding);
    }
    if !diffs.is_empty() {
        return Err(ReplayError::Mismatch(diffs));
    }
    if ev.engine != ENGINE {
        return Err(ReplayError::EngineDiffers {
            recorded: ev.engine.clone(),
            ours: ENGINE,
        });
    }
    if ev.fuel_model != FUEL_MODEL {
        return Err(ReplayError::FuelModelDiffers {
            recorded: ev.fuel_model,
            ours: FUEL_MODEL,
        });
    }
    if !ev.replayable {
        return Err(ReplayError::NotReplayable);
    }

    let mut limits = ev.limits;
    limits.wall_ms = limits.wall_ms.max(options.wall_ms);
    let req = RunRequest {
        input: inputs.input,
        args: &ev.args,
        env: &ev.env,
        files: inputs.files,
        seed: ev.seed,
        virtual_time_ms: ev.virtual_time_ms,
        limits,
    };
    let (ending, fuel_used, status, output) = match sandbox.run(ModuleRef::Bytes(inputs.module), &req) {
        Ok(o) => {
            if o.stopped == Some(crate::Stop::Time) {
                return Err(ReplayError::TimedOut);
            }
            let ending = match o.stopped {
                None => Ending::Completed,
                Some(s) => Ending::Stopped(s),
            };
            (ending, o.fuel_used, o.status(), o.output())
        }
        Err(e) if e.is_module_refusal() => (
            Ending::Refused(e.code().to_string()),
            0,
            EffectStatus::Failed,
            encode_output(None, b"", b""),
        ),
        Err(e) => return Err(ReplayError::Sandbox(e)),
    };

    if ending != ev.ending {
        diffs.push(Difference::Ending {
            recorded: ev.ending.clone(),
            replayed: ending.clone(),
        });
    }
    if fuel_used != ev.fuel_used {
        diffs.push(Difference::Fuel {
            recorded: ev.fuel_used,
            replayed: fuel_used,
        });
    }
    if status != recorded.status {
        diffs.push(Difference::Status {
            recorded: recorded.status,
            replayed: status,
        });
    }
    if output != recorded.output {
        match (recorded_output, decode_output(&output)) {
            (Ok((rc, ro, re)), Ok((pc, po, pe))) => {
                if rc != pc {
                    diffs.push(Difference::ExitCode {
                        recorded: rc,
                        replayed: pc,
                    });
                }
                if ro != po {
                    diffs.push(Difference::Stdout {
                        recorded_len: ro.len(),
                        replayed_len: po.len(),
                        first_difference: first_difference(ro, po),
                    });
                }
                if re != pe {
                    diffs.push(Difference::Stderr {
                        recorded_len: re.len(),
                        replayed_len: pe.len(),
                        first_difference: first_difference(re, pe),
                    });
                }
            }
            _ => diffs.push(Difference::OutputEncoding),
        }
    }
    if diffs.is_empty() {
        Ok(Replayed { fuel_used, ending })
    } else {
        Err(ReplayError::Mismatch(diffs))
    }
}
