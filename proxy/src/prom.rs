//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use crate::api::{AppState, LATENCY_BUCKETS};

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics text.
pub(crate) fn render(s: &AppState) -> String {
    let k = &s.0.kernel;
    let m = k.metrics();
    let mut o = String::with_capacity(4096);
    family(
        &mut o,
        "helm_decisions_total",
        "counter",
        "Answers to evaluate calls since start, by status.",
    );
    for (status, n) in [("allow", m.allow), ("deny", m.deny), ("pending", m.pending)] {
        let _ = writeln!(o, "helm_decisions_total{{status=\"{status}\"}} {n}");
    }
    family(
        &mut o,
        "helm_kernel_errors_total",
        "counter",
        "Answers that were DENY KERNEL_ERROR because recording failed, since start.",
    );
    let _ = writeln!(o, "helm_kernel_errors_total {}", m.kernel_errors);
    family(&mut o, "helm_effects_total", "counter", "EFFECT records in the store.");
    let _ = writeln!(o, "helm_effects_total {}", m.effects);
    family(
        &mut o,
        "helm_approvals_total",
        "counter",
        "APPROVAL records in the store.",
    );
    let _ = writeln!(o, "helm_approvals_total {}", m.approvals);
    family(
        &mut o,
        "helm_checkpoints_total",
        "counter",
        "CHECKPOINT records in the store.",
    );
    let _ = writeln!(o, "helm_checkpoints_total {}", m.checkpoints);
    family(&mut o, "helm_records", "gauge", "Records in the store.");
    let _ = writeln!(o, "helm_records {}", m.records);
    family(
        &mut o,
        "helm_pending_approvals",
        "gauge",
        "Escalations waiting for approval.",
    );
    let pending = k.approvals().iter().filter(|a| a.state == "pending").count();
    let _ = writeln!(o, "helm_pending_approvals {pending}");
    family(
        &mut o,
        "helm_store_durable",
        "gauge",
        "1 if answers wait for fsync (durable store), 0 if buffered.",
    );
    let _ = writeln!(o, "helm_store_durable {}", u8::from(k.is_durable()));
    family(
        &mut o,
        "helm_http_responses_total",
        "counter",
        "HTTP responses since start, by status class.",
    );
    for (i, c) in s.0.http.responses.iter().enumerate() {
        let _ = writeln!(
            o,
            "helm_http_responses_total{{class=\"{}xx\"}} {}",
            i.saturating_add(1),
            c.load(Ordering::Relaxed)
        );
    }
    family(
        &mut o,
        "helm_evaluate_duration_seconds",
        "histogram",
        "Time from a parsed /v1/evaluate request to the kernel's (durable) answer.",
    );
    let (buckets, count, sum_us) = s.0.http.evaluate.snapshot();
    let mut cumulative = 0u64;
    for (le, n) in LATENCY_BUCKETS.iter().zip(buckets) {
        cumulative = cumulative.saturating_add(n);
        let _ = writeln!(o, "helm_evaluate_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(o, "helm_evaluate_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(o, "helm_evaluate_duration_seconds_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(o, "helm_evaluate_duration_seconds_count {count}");
    family(
        &mut o,
        "helm_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(o, "helm_uptime_seconds {}", s.0.started.elapsed().as_secs());
    o
}
