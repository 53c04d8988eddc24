//! Deciding the tool calls a model proposed, and recording the results that come back.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderValue;
use helm_kernel::{Answer, Args, EffectReport, Proposal, Status};
use serde_json::Value;
use verify_core::{EffectStatus, Hash};

use super::calls::{call_id_ext, Known};
use super::error::OaiError;
use super::OpenAi;

/// A call's input as the model wrote it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Input {
    /// Function arguments: JSON text, parsed before deciding (invalid: denied).
    Json(String),
    /// A custom tool's free-text input (committed as text).
    Text(String),
    /// A built-in tool's action, already JSON (Responses `computer_call`, ...).
    Value(Value),
}

/// One tool call proposed by the model.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    /// The call id (`tool_calls[].id`, Responses `call_id`).
    pub(crate) id: Option<String>,
    /// The tool name.
    pub(crate) name: String,
    pub(crate) input: Input,
    /// Cut off (`finish_reason: length`, an incomplete item, a stream that ended).
    pub(crate) truncated: bool,
    /// A form the proxy does not pass (the deprecated `function_call`): denied.
    pub(crate) unsupported: bool,
}

/// What the kernel decided for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) status: Status,
    pub(crate) reason: String,
    pub(crate) intent: Option<String>,
    pub(crate) decision: Option<String>,
    /// With a withheld escalation: the approval id.
    pub(crate) approval: Option<String>,
}

impl Outcome {
    pub(crate) fn allowed(&self) -> bool {
        self.status == Status::Allow
    }

    fn from_answer(a: Answer) -> Outcome {
        Outcome {
            status: a.status,
            reason: a.reason,
            intent: a.intent,
            decision: a.decision,
            approval: a.approval.map(|p| p.id),
        }
    }

    /// DENY `KERNEL_ERROR`, nothing recorded.
    pub(crate) fn kernel_error() -> Outcome {
        Outcome {
            status: Status::Deny,
            reason: "KERNEL_ERROR".into(),
            intent: None,
            decision: None,
            approval: None,
        }
    }

    fn status_name(&self) -> &'static str {
        match self.status {
            Status::Allow => "allow",
            Status::Deny => "deny",
            Status::Pending => "pending",
        }
    }
}

/// Who is asking, in which session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ctx {
    pub(crate) principal: String,
    pub(crate) session: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

/// The proposal for a call, or the reason it is malformed (and its text form).
fn proposal(ctx: &Ctx, call: &Call) -> (Proposal, Option<&'static str>) {
    let name_ok = valid_name(&call.name);
    let id_ok = call.id.as_deref().is_some_and(valid_name);
    let raw = |input: &Input| match input {
        Input::Json(s) | Input::Text(s) => s.clone(),
        Input::Value(v) => v.to_string(),
    };
    let mut p = Proposal {
        tool: if name_ok {
            call.name.clone()
        } else {
            "(invalid tool name)".into()
        },
        args: Args::Text(raw(&call.input)),
        principal: ctx.principal.clone(),
        session: ctx.session.clone(),
        call_id: if id_ok { call.id.clone() } else { None },
    };
    if call.truncated {
        return (p, Some("TRUNCATED_ARGUMENTS"));
    }
    if !name_ok || !id_ok || call.unsupported {
        return (p, Some("INVALID_ARGUMENTS"));
    }
    match &call.input {
        Input::Json(s) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => p.args = Args::Json(v),
            _ => return (p, Some("INVALID_ARGUMENTS")),
        },
        Input::Text(_) => {}
        Input::Value(v) => p.args = Args::Json(v.clone()),
    }
    (p, None)
}

/// Runs a kernel call: on the blocking pool when the store is durable (the call waits
/// for an fsync); inline when it is buffered (a few tens of microseconds of CPU, no
/// waiting: handing it to another thread would cost more in context switches).
async fn kernel_call<T: Send + 'static>(o: &OpenAi, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if o.kernel.is_durable() {
        tokio::task::spawn_blocking(f).await.ok()
    } else {
        Some(f())
    }
}

/// Decides one call: INTENT and DECISION recorded before the answer. An escalation is
/// waited for up to `pending_wait_ms`, then withheld (`Pending`, with its approval id).
async fn decide_one(o: Arc<OpenAi>, ctx: Ctx, call: Call) -> Outcome {
    let (p, malformed) = proposal(&ctx, &call);
    let kernel = o.kernel.clone();
    let p2 = p.clone();
    let answer = kernel_call(&o, move || match malformed {
        Some(reason) => kernel.deny_malformed(&p2, reason),
        None => kernel.evaluate(&p2),
    })
    .await;
    let Some(mut outcome) = answer.map(Outcome::from_answer) else {
        return Outcome::kernel_error();
    };
    if outcome.status == Status::Pending {
        let wait = Duration::from_millis(o.section.pending_wait_ms);
        let t0 = Instant::now();
        let id = outcome
            .approval
            .as_deref()
            .and_then(|a| helm_kernel::keyfile::hex32(a).ok());
        while let Some(id) = id {
            let state = o.kernel.approval(&id).map(|a| a.state);
            if state.as_deref() != Some("pending") {
                // Resolved (or gone): the same call again gets the resolution.
                let kernel = o.kernel.clone();
                let p2 = p.clone();
                outcome = match kernel_call(&o, move || kernel.evaluate(&p2)).await {
                    Some(a) => Outcome::from_answer(a),
                    None => Outcome::kernel_error(),
                };
                break;
            }
            let left = wait.saturating_sub(t0.elapsed());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(20))).await;
        }
    }
    if outcome.status == Status::Deny {
        if let Some(id) = &p.call_id {
            let intent = outcome
                .intent
                .as_deref()
                .and_then(|i| helm_kernel::keyfile::hex32(i).ok());
            o.book()
                .set(&ctx.principal, id, Known::Denied(intent, outcome.reason.clone()));
        }
    }
    outcome
}

/// Decides every call (concurrently: the kernel's group commit serves them together).
pub(crate) async fn decide(o: &Arc<OpenAi>, ctx: &Ctx, calls: &[Call]) -> Vec<Outcome> {
    let futs = calls.iter().map(|c| decide_one(o.clone(), ctx.clone(), c.clone()));
    futures_util::future::join_all(futs).await
}

/// The text that replaces a call the client does not get (rewrite mode).
pub(crate) fn notice(call: &Call, o: &Outcome) -> String {
    let id = call.id.as_deref().unwrap_or("(no id)");
    match o.status {
        Status::Pending => format!(
            "[HELM] The tool call {} ({id}) needs approval {} ({}); it was withheld and must not be run. \
             Propose the same call again once it is approved.",
            call.name,
            o.approval.as_deref().unwrap_or("(unknown)"),
            o.reason
        ),
        _ => format!(
            "[HELM] The tool call {} ({id}) was denied: {} (decision {}). It was not passed on and must not be run.",
            call.name,
            o.reason,
            o.decision.as_deref().unwrap_or("none")
        ),
    }
}

/// The 403 of error mode, if a call was not allowed.
pub(crate) fn refusal(calls: &[Call], outcomes: &[Outcome]) -> Option<OaiError> {
    let bad: Vec<(&Call, &Outcome)> = calls.iter().zip(outcomes).filter(|(_, o)| !o.allowed()).collect();
    if bad.is_empty() {
        return None;
    }
    let any_denied = bad.iter().any(|(_, o)| o.status == Status::Deny);
    let text: Vec<String> = bad.iter().map(|(c, o)| notice(c, o)).collect();
    Some(OaiError::policy(
        if any_denied {
            "tool_call_denied"
        } else {
            "tool_call_pending_approval"
        },
        text.join(" "),
    ))
}

/// Appends `s` with every character outside `[A-Za-z0-9_.:-]` as `_` (at most 256).
fn push_header_safe(out: &mut String, s: &str) {
    for c in s.chars().take(256) {
        out.push(if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
            c
        } else {
            '_'
        });
    }
}

/// One `x-helm-call` header value (or SSE comment) per governed call.
pub(crate) fn describe(call: &Call, o: &Outcome) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("id=");
    push_header_safe(&mut s, call.id.as_deref().unwrap_or(""));
    s.push_str("; status=");
    s.push_str(o.status_name());
    s.push_str("; reason=");
    push_header_safe(&mut s, &o.reason);
    for (k, v) in [
        ("decision", &o.decision),
        ("intent", &o.intent),
        ("approval", &o.approval),
    ] {
        if let Some(v) = v {
            s.push_str("; ");
            s.push_str(k);
            s.push('=');
            push_header_safe(&mut s, v);
        }
    }
    s
}

pub(crate) fn header_values(calls: &[Call], outcomes: &[Outcome]) -> Vec<HeaderValue> {
    calls
        .iter()
        .zip(outcomes)
        .filter_map(|(c, o)| HeaderValue::from_str(&describe(c, o)).ok())
        .collect()
}

/// A tool result the client sends back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToolResult {
    pub(crate) call_id: String,
    pub(crate) output: Vec<u8>,
}

/// The output bytes of a result: a string as its UTF-8, anything else as its JSON.
pub(crate) fn output_bytes(v: Option<&Value>) -> Vec<u8> {
    match v {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
        None => Vec::new(),
    }
}

/// Records the results as EFFECTs of their calls (once: a resent result is skipped).
/// A result for a call that was never allowed is recorded as a VIOLATION and the
/// request refused (403); a recording failure refuses it (503).
pub(crate) async fn record_results(o: &Arc<OpenAi>, ctx: &Ctx, results: Vec<ToolResult>) -> Result<(), OaiError> {
    let mut refused: Option<OaiError> = None;
    for r in results {
        let known = o.book().get(&ctx.principal, &r.call_id).cloned();
        match known {
            Some(Known::Completed | Known::Reporting) => continue,
            Some(Known::Denied(intent, reason)) => {
                let detail = format!(
                    "tool result for call {:?}, which was denied ({reason}): results of calls that were never allowed are refused",
                    r.call_id
                );
                violation(o, ctx, intent, &detail).await?;
                refused.get_or_insert(OaiError::policy("tool_result_without_permit", detail));
                continue;
            }
            None => {}
        }
        let intent = o.kernel.intent_for_call(&ctx.principal, &r.call_id);
        let Some(intent) = intent.and_then(|i| helm_kernel::keyfile::hex32(&i).ok()) else {
            let detail = format!(
                "tool result for call {:?}, which no allowed call of principal {:?} has: refused",
                r.call_id, ctx.principal
            );
            violation(o, ctx, None, &detail).await?;
            refused.get_or_insert(OaiError::policy("tool_result_without_permit", detail));
            continue;
        };
        o.book().set(&ctx.principal, &r.call_id, Known::Reporting);
        let report = EffectReport {
            intent,
            principal: ctx.principal.clone(),
            status: EffectStatus::Succeeded,
            output: r.output,
            executor: "client".into(),
            meters: Vec::new(),
            ext: Some(call_id_ext(&r.call_id)),
            blobs: Vec::new(),
        };
        let kernel = o.kernel.clone();
        let done = kernel_call(o, move || kernel.report_effect(&report)).await;
        match done {
            Some(Ok(_)) => o.book().set(&ctx.principal, &r.call_id, Known::Completed),
            Some(Err(refusal)) if refusal.code != "KERNEL_ERROR" => {
                // The kernel refused it and recorded the VIOLATION (pending, or not ours).
                o.book().forget(&ctx.principal, &r.call_id);
                refused.get_or_insert(OaiError::policy(
                    "tool_result_without_permit",
                    format!(
                        "tool result for call {:?} refused: {} ({})",
                        r.call_id, refusal.code, refusal.message
                    ),
                ));
            }
            other => {
                o.book().forget(&ctx.principal, &r.call_id);
                let why = match other {
                    Some(Err(refusal)) => refusal.message,
                    _ => "the kernel's worker stopped".into(),
                };
                return Err(OaiError::kernel(format!(
                    "the result of call {:?} could not be recorded: {why}",
                    r.call_id
                )));
            }
        }
    }
    refused.map_or(Ok(()), Err)
}

async fn violation(o: &Arc<OpenAi>, ctx: &Ctx, subject: Option<Hash>, detail: &str) -> Result<(), OaiError> {
    let kernel = o.kernel.clone();
    let (ctx2, detail2) = (ctx.clone(), detail.to_owned());
    let r = kernel_call(o, move || {
        kernel.record_violation(
            "RESULT_WITHOUT_PERMIT",
            subject.as_ref(),
            Some(&detail2),
            &ctx2.principal,
            &ctx2.session,
        )
    })
    .await;
    match r {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(OaiError::kernel(format!(
            "the violation could not be recorded: {}",
            e.message
        ))),
        None => Err(OaiError::kernel("the kernel's worker stopped")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            principal: "p".into(),
            session: "s".into(),
        }
    }

    fn call(input: Input) -> Call {
        Call {
            id: Some("call_1".into()),
            name: "read_file".into(),
            input,
            truncated: false,
            unsupported: false,
        }
    }

    #[test]
    fn proposals_fail_closed() {
        let (p, m) = proposal(&ctx(), &call(Input::Json(r#"{"path":"/w/a"}"#.into())));
        assert_eq!((m, p.call_id.as_deref()), (None, Some("call_1")));
        assert_eq!(p.args, Args::Json(serde_json::json!({"path": "/w/a"})));
        for bad in [r#"{"path":"/w/a""#, "[1]", "\"x\"", ""] {
            let (p, m) = proposal(&ctx(), &call(Input::Json(bad.into())));
            assert_eq!(m, Some("INVALID_ARGUMENTS"), "{bad}");
            assert_eq!(p.args, Args::Text(bad.into()));
        }
        let mut c = call(Input::Json("{}".into()));
        c.truncated = true;
        assert_eq!(proposal(&ctx(), &c).1, Some("TRUNCATED_ARGUMENTS"));
        let mut c = call(Input::Json("{}".into()));
        c.id = None;
        assert_eq!(proposal(&ctx(), &c).1, Some("INVALID_ARGUMENTS"));
        let mut c = call(Input::Text("*** Begin Patch".into()));
        c.name = "x\u{7}".into();
        let (p, m) = proposal(&ctx(), &c);
        assert_eq!((m, p.tool.as_str()), (Some("INVALID_ARGUMENTS"), "(invalid tool name)"));
        let (p, m) = proposal(&ctx(), &call(Input::Text("free text".into())));
        assert_eq!((m, p.args), (None, Args::Text("free text".into())));
    }

    #[test]
    fn descriptions_are_header_safe() {
        let mut c = call(Input::Text(String::new()));
        c.id = Some("call é\r\n".into());
        let o = Outcome {
            status: Status::Deny,
            reason: "POLICY_DENY".into(),
            intent: Some("ab".into()),
            decision: Some("cd".into()),
            approval: None,
        };
        let d = describe(&c, &o);
        assert_eq!(
            d,
            "id=call____; status=deny; reason=POLICY_DENY; decision=cd; intent=ab"
        );
        assert!(HeaderValue::from_str(&d).is_ok());
        assert!(notice(&c, &o).contains("POLICY_DENY"));
        assert_eq!(refusal(&[c], &[o]).unwrap().code.as_deref(), Some("tool_call_denied"));
    }
}
