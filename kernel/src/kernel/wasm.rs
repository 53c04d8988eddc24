//! Tools backed by WebAssembly modules: when Guardian allows a call to such a tool, the
//! kernel runs it in the sandbox (`helm-sandbox`) and records the EFFECT itself, with the
//! sandbox evidence (module, seed, virtual time, limits, engine, fuel) in its extension
//! map, so that `helm-airgap replay` can re-execute it offline. Denied and pending calls
//! never run. Each module is recorded once, as an ATTESTATION `sandbox-module` whose
//! subject is the module's SHA-256 and whose blob is the module.

use std::collections::HashMap;

use helm_sandbox::{encode_ext, ModuleRef, RunOutcome, RunRequest, Sandbox, SandboxEvidence};
use verify_core::{sha256, EffectStatus, Hash};

use super::{canonical_args, hexs, Answer, EffectReport, Kernel, KernelError, Proposal, Status};
use crate::kernel::AttestationReport;

/// A tool whose calls run in the sandbox.
#[derive(Clone, Debug)]
pub struct WasmTool {
    /// The tool name Guardian decides on.
    pub tool: String,
    /// The module's bytes (a WASI preview1 command).
    pub module: Vec<u8>,
    /// The SHA-256 the tool is declared with, if any: a module with another hash is
    /// refused at start (the configuration names the module, not just a file path).
    pub sha256: Option<Hash>,
    /// Limits of each run.
    pub limits: helm_sandbox::Limits,
    /// The guest's argv (by convention `args[0]` names the program).
    pub args: Vec<String>,
    /// The guest's environment.
    pub env: Vec<(String, String)>,
}

/// A registered tool: its module's hash and run settings.
#[derive(Debug)]
pub(super) struct Registered {
    module: Hash,
    limits: helm_sandbox::Limits,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The sandbox and the tools it runs.
#[derive(Debug, Default)]
pub(super) struct WasmTools {
    sandbox: Option<Sandbox>,
    tools: HashMap<String, Registered>,
}

/// The answer to a call of a tool that may run in the sandbox.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ToolRun {
    /// The decision (and, for a pending call, the approval).
    pub answer: Answer,
    /// The EFFECT recorded for the run (hex), if the call ran.
    pub effect: Option<String>,
    /// EFFECT status: `succeeded`, `failed` or `aborted`.
    pub status: Option<String>,
    /// The guest's exit status (`None` when stopped).
    pub exit_code: Option<i32>,
    /// Why the run stopped (`GAS_EXHAUSTED`, `TIME_EXHAUSTED`, ...), if it did.
    pub stopped: Option<String>,
    /// What the tool wrote to stdout.
    #[serde(skip)]
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    #[serde(skip)]
    pub stderr: Vec<u8>,
    /// Fuel used.
    pub fuel_used: Option<u64>,
    /// Whether re-executing gives the same result (false after the wall clock stopped it).
    pub replayable: Option<bool>,
}

impl ToolRun {
    fn not_run(answer: Answer) -> ToolRun {
        ToolRun {
            answer,
            effect: None,
            status: None,
            exit_code: None,
            stopped: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: None,
            replayable: None,
        }
    }
}

fn status_name(s: EffectStatus) -> &'static str {
    match s {
        EffectStatus::Succeeded => "succeeded",
        EffectStatus::Failed => "failed",
        EffectStatus::Aborted => "aborted",
    }
}

/// The claims map `{"tool": name}` of a `sandbox-module` ATTESTATION.
fn claims(tool: &str) -> Vec<u8> {
    let mut w = verify_core::CborWriter::new();
    w.map(1).text("tool").text(tool);
    w.into_bytes()
}

impl WasmTools {
    /// Compiles (validates) every module; a module the sandbox refuses stops the kernel.
    pub(super) fn new(tools: Vec<WasmTool>) -> Result<(WasmTools, Vec<WasmTool>), KernelError> {
        if tools.is_empty() {
            return Ok((WasmTools::default(), tools));
        }
        let sandbox = Sandbox::new(helm_sandbox::SandboxConfig::default())
            .map_err(|e| KernelError::Trust(format!("sandbox: {e}")))?;
        let mut map = HashMap::new();
        for t in &tools {
            let module = sandbox
                .compile(&t.module)
                .map_err(|e| KernelError::Trust(format!("WASM tool {}: module refused: {e}", t.tool)))?;
            if let Some(declared) = t.sha256 {
                if declared != module {
                    return Err(KernelError::Trust(format!(
                        "WASM tool {}: the module's SHA-256 is {}, not the declared {}",
                        t.tool,
                        hexs(&module),
                        hexs(&declared)
                    )));
                }
            }
            let previous = map.insert(
                t.tool.clone(),
                Registered {
                    module,
                    limits: t.limits,
                    args: t.args.clone(),
                    env: t.env.clone(),
                },
            );
            if previous.is_some() {
                return Err(KernelError::Trust(format!("WASM tool {} is declared twice", t.tool)));
            }
        }
        Ok((
            WasmTools {
                sandbox: Some(sandbox),
                tools: map,
            },
            tools,
        ))
    }
}

impl Kernel {
    /// Records a `sandbox-module` ATTESTATION (with the module as its blob) for every
    /// WASM tool whose module the store does not attest yet.
    pub(super) fn attest_modules(&self, tools: &[WasmTool]) -> Result<usize, KernelError> {
        if tools.is_empty() {
            return Ok(0);
        }
        let mut have: Vec<Hash> = self
            .attestations("sandbox-module")?
            .into_iter()
            .map(|a| a.subject)
            .collect();
        let mut added = 0usize;
        for t in tools {
            let module = sha256(&t.module);
            if have.contains(&module) {
                continue;
            }
            self.attest(&AttestationReport {
                subtype: "sandbox-module".into(),
                subject: module,
                claims: Some(claims(&t.tool)),
                principal: "kernel".into(),
                session: String::new(),
                blobs: vec![t.module.clone()],
            })
            .map_err(|r| KernelError::Sign(format!("cannot attest the module of {}: {}", t.tool, r.message)))?;
            have.push(module);
            added = added.saturating_add(1);
        }
        Ok(added)
    }

    /// Whether `tool` runs in the sandbox, and its module's hash (hex).
    pub fn wasm_module(&self, tool: &str) -> Option<String> {
        self.wasm.tools.get(tool).map(|r| hexs(&r.module))
    }

    /// Decides a call and, if it is allowed and the tool is a WASM tool, runs it in the
    /// sandbox and records its EFFECT. Other allowed calls are returned for the caller
    /// to run (and report). Denied and pending calls never run.
    pub fn call_tool(&self, p: &Proposal) -> ToolRun {
        let answer = self.evaluate(p);
        let Some(reg) = self.wasm.tools.get(&p.tool) else {
            return ToolRun::not_run(answer);
        };
        let (Some(sandbox), Status::Allow, Some(intent)) = (&self.wasm.sandbox, answer.status, answer.intent.clone())
        else {
            return ToolRun::not_run(answer);
        };
        match self.run_in_sandbox(sandbox, reg, p, &intent) {
            Ok((effect, outcome)) => ToolRun {
                answer,
                effect: Some(effect),
                status: Some(status_name(outcome.status()).into()),
                exit_code: outcome.exit_code,
                stopped: outcome.stopped.map(|s| s.code().to_owned()),
                fuel_used: Some(outcome.fuel_used),
                replayable: Some(outcome.replayable),
                stdout: outcome.stdout,
                stderr: outcome.stderr,
            },
            Err(e) => {
                let mut answer = answer;
                answer.error = Some(format!("the tool did not run: {e}"));
                ToolRun::not_run(answer)
            }
        }
    }

    fn run_in_sandbox(
        &self,
        sandbox: &Sandbox,
        reg: &Registered,
        p: &Proposal,
        intent: &str,
    ) -> Result<(String, RunOutcome), String> {
        let (_, input) = canonical_args(&p.args)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("random source failed: {e}"))?;
        let req = RunRequest {
            input: &input,
            args: &reg.args,
            env: &reg.env,
            files: &[],
            seed,
            virtual_time_ms: self.clock.now_ms(),
            limits: reg.limits,
        };
        let outcome = match sandbox.run(ModuleRef::Hash(&reg.module), &req) {
            Ok(o) => o,
            Err(e) => return Err(format!("sandbox: {e}")),
        };
        let evidence = SandboxEvidence::of_run(&req, &outcome, &[]);
        let intent: Hash = hex::decode(intent)
            .ok()
            .and_then(|v| Hash::try_from(v).ok())
            .ok_or("bad intent id")?;
        let report = EffectReport {
            intent,
            principal: p.principal.clone(),
            status: outcome.status(),
            output: outcome.output(),
            executor: evidence.executor(),
            meters: outcome.meters().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ext: Some(encode_ext(&evidence)),
            blobs: Vec::new(),
        };
        let effect = self
            .report_effect(&report)
            .map_err(|r| format!("{}: {}", r.code, r.message))?;
        Ok((effect, outcome))
    }
}
