//! kill -9 of the server during a load of decisions: every decision the server
//! acknowledged (a 200 answer reached the client) must be in the store after a restart,
//! and the whole store must verify against the trust root and replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod common;

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use serde_json::json;

/// One acknowledged answer: status, INTENT and DECISION hashes.
#[derive(Debug, Clone)]
struct Ack {
    status: String,
    intent: String,
    decision: String,
}

/// Concurrent callers until the server dies (or a bound is reached); returns the acks.
fn load(c: &Client, callers: usize, kill_after: usize, server: Server) -> (Vec<Ack>, usize) {
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (c, acks, failed, stop) = (c.clone(), acks.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0..100_000u32 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    // A mix of allowed and denied calls, each distinct.
                    let (tool, args) = if i % 4 == 3 {
                        ("shell", json!({"cmd": "rm", "n": i}))
                    } else {
                        ("read_file", json!({"path": format!("/workspace/{t}/{i}.txt")}))
                    };
                    let body = json!({"tool": tool, "args": args, "session": format!("load-{t}")});
                    match c.try_post_raw("/v1/evaluate", Some(AGENT_TOKEN), body.to_string().as_bytes()) {
                        Ok(r) if r.status == 200 => {
                            let s = |k: &str| r.json[k].as_str().unwrap().to_owned();
                            acks.lock().unwrap().push(Ack {
                                status: s("status"),
                                intent: s("intent"),
                                decision: s("decision"),
                            });
                        }
                        Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text),
                        Err(_) => {
                            // The server is gone: this call was not acknowledged.
                            failed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    // Kill -9 in the middle of the load.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().unwrap().len() < kill_after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before_kill = acks.lock().unwrap().len();
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    eprintln!(
        "{} answers acknowledged ({before_kill} when SIGKILL was sent), {} calls cut off by the kill",
        acks.len(),
        failed.load(Ordering::Relaxed)
    );
    assert!(before_kill >= kill_after, "the load did not get going");
    (acks, failed.load(Ordering::Relaxed))
}

#[test]
fn kill9_during_load_loses_no_acknowledged_decision() {
    let setup = Setup::new();
    let server = setup.start();
    let c = server.client();
    let (acks, _) = load(&c, 16, 1000, server);
    assert!(acks.iter().any(|a| a.status == "allow") && acks.iter().any(|a| a.status == "deny"));

    // Restart on the same store: it opens (recovering a torn tail if there is one) and works.
    let server = setup.start();
    let c = server.client();
    let log = server.log_text();
    eprintln!(
        "{}",
        log.lines()
            .filter(|l| l.contains("store"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let h = c.get("/healthz", None);
    assert_eq!(h.status, 200);
    let after = c.evaluate("read_file", json!({"path": "/workspace/after-restart.txt"}), "s-after");
    assert_eq!(after.json["status"], "allow", "{}", after.text);
    assert!(server.terminate().success());

    let records = store_records(&setup.store());
    let all = hashes(&records);
    let mut missing = Vec::new();
    for a in &acks {
        for h in [&a.intent, &a.decision] {
            if !all.contains(h) {
                missing.push(h.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing: {missing:?}",
        missing.len()
    );
    verify(&records);
    replay(&records, &store_blobs(&setup.store()));
    airgap_export_verify_replay(&setup);
}
