//! Decision latency: p50/p99 of `Guardian::decide` for bundles of 10, 100 and 1,000
//! rules, ALLOW and DENY, with rules indexed by tool (exact names) and, for contrast,
//! the same rules written as glob patterns (which are matched one by one).
//!
//! `cargo bench -p guardian` (harness = false: plain timing, no dependencies).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "benchmark"
)]

use core::hint::black_box;
use std::time::Instant;

use guardian::{Bundle, Evidence, Guardian, Limits, PastCall, Request};
use serde_json::json;

fn bundle(rules: usize, glob: bool) -> Bundle {
    let mut s = String::from("name = \"bench\"\nprincipals = [\"agent-*\"]\n");
    for i in 0..rules {
        let tool = if glob {
            format!("srv/tool_{i}*")
        } else {
            format!("srv/tool_{i}")
        };
        s.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\ntools = [\"{tool}\"]\nverdict = \"allow\"\nrequire = [\"args.path matches '/workspace/*' and not (args.path contains '..')\", \"args.size <= 1000\", \"not called('srv/forbidden')\"]\n"
        ));
    }
    s.push_str(
        "[[budget]]\nid = \"rate\"\nscope = \"session\"\ntools = [\"srv/*\"]\nmax_calls = 1000\nwindow_ms = 60000\n",
    );
    Bundle::from_toml(&s).unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn measure(g: &Guardian, req: &Request, ev: &Evidence, expect_allow: bool) -> (u64, u64) {
    let d = g.decide(req, ev);
    assert_eq!(d.verdict == guardian::Verdict::Allow, expect_allow, "{d}");
    for _ in 0..20_000 {
        black_box(g.decide(black_box(req), black_box(ev)));
    }
    let n = 100_000;
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        black_box(g.decide(black_box(req), black_box(ev)));
        t.push(start.elapsed().as_nanos() as u64);
    }
    t.sort_unstable();
    (percentile(&t, 0.50), percentile(&t, 0.99))
}

/// Adversarial requirements: how long a decision takes when it spends (nearly) the
/// whole default step budget, which is what bounds the cost of any decision.
fn adversarial() {
    let cases: Vec<(&str, String, serde_json::Value)> = vec![
        (
            "one glob match of ~99k steps (1.6M byte comparisons)",
            format!("args.s matches '*{}b'", "a".repeat(198)),
            json!({"s": "a".repeat(7_800)}),
        ),
        (
            "32 x contains over 48 KiB",
            "args.s contains 'needle'".to_owned(),
            json!({"s": "x".repeat(48 << 10)}),
        ),
        (
            "in over a 90,000-element array",
            "7 in args.list".to_owned(),
            json!({"list": vec![1; 90_000]}),
        ),
        (
            "12 rules x 32 requirements x ~250 nodes",
            vec!["args.n == 1"; 50].join(" or "),
            json!({"n": 2}),
        ),
    ];
    println!(
        "adversarial requirements, default budget of {} steps:",
        Limits::default().max_steps
    );
    for (what, req, args) in cases {
        let mut src = String::from("name = \"adv\"\n");
        for r in 0..12 {
            src.push_str(&format!(
                "[[rule]]\nid = \"r{r}\"\ntools = [\"t\"]\nverdict = \"allow\"\nrequire = ["
            ));
            for i in 0..32 {
                if i > 0 {
                    src.push_str(", ");
                }
                src.push_str(&format!("{:?}", format!("not ({req})")));
            }
            src.push_str("]\n");
        }
        let g = Guardian::new(vec![Bundle::from_toml(&src).unwrap()], Limits::default());
        let r = Request::new("t", "p", "s", 0).with_args(args);
        let d = g.decide(&r, &Evidence::new());
        let n = 200;
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            black_box(g.decide(black_box(&r), black_box(&Evidence::new())));
            t.push(start.elapsed().as_nanos() as u64);
        }
        t.sort_unstable();
        println!(
            "  {what:<55} p50 {:>9} ns  max {:>9} ns  -> {} {}",
            percentile(&t, 0.5),
            t[t.len() - 1],
            guardian::verdict_str(d.verdict),
            d.reason
        );
    }
}

fn main() {
    let mut ev = Evidence::new();
    for i in 0..20 {
        ev.add_call(&PastCall {
            tool: format!("srv/tool_{i}"),
            time: 1_000_000 - 1000 * i,
            same_session: true,
            cost: 1,
            approved: false,
        });
    }
    // The clock's own cost, to read the figures against.
    let mut t = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let s = Instant::now();
        t.push(s.elapsed().as_nanos() as u64);
    }
    t.sort_unstable();
    println!(
        "timer overhead: p50 {} ns, p99 {} ns",
        percentile(&t, 0.5),
        percentile(&t, 0.99)
    );
    println!(
        "{:>6} {:>8} {:>7} {:>10} {:>10}",
        "rules", "index", "case", "p50 ns", "p99 ns"
    );
    for glob in [false, true] {
        for rules in [10usize, 100, 1000] {
            let g = Guardian::new(vec![bundle(rules, glob)], Limits::default());
            let tool = format!("srv/tool_{}", rules / 2);
            let allow = Request::new(&tool, "agent-1", "s1", 1_000_000)
                .with_args(json!({"path": "/workspace/src/lib.rs", "size": 10}));
            let deny = Request::new(&tool, "agent-1", "s1", 1_000_000)
                .with_args(json!({"path": "/workspace/../etc/passwd", "size": 10}));
            for (case, req, ok) in [("allow", &allow, true), ("deny", &deny, false)] {
                let (p50, p99) = measure(&g, req, &ev, ok);
                let index = if glob { "glob" } else { "exact" };
                println!("{rules:>6} {index:>8} {case:>7} {p50:>10} {p99:>10}");
            }
        }
    }
    adversarial();
}
