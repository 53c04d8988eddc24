//! What Guardian knows about the past: the permitted calls, their costs and the
//! approvals of one session and one principal. It is derived from the signed records
//! ([`Evidence::from_records`]), so restarting the kernel cannot reset a budget.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use verify_core::{Body, Hash, Record, Verdict};

use crate::expr::glob_match;

/// The meter of an EFFECT that budgets count as cost units.
pub const COST_METER: &str = "cost";

#[derive(Clone, Debug, Default)]
struct History {
    /// Times of permitted calls, ascending.
    calls: Vec<u64>,
    /// (time, cost units) of executed calls, ascending by time.
    costs: Vec<(u64, u64)>,
}

fn insert_sorted(v: &mut Vec<u64>, t: u64) {
    let at = v.partition_point(|x| *x <= t);
    v.insert(at, t);
}

impl History {
    fn calls_since(&self, since: Option<u64>) -> u64 {
        let skip = since.map_or(0, |s| self.calls.partition_point(|t| *t <= s));
        self.calls.len().saturating_sub(skip) as u64
    }
    fn cost_since(&self, since: Option<u64>) -> u64 {
        let skip = since.map_or(0, |s| self.costs.partition_point(|c| c.0 <= s));
        self.costs.iter().skip(skip).fold(0u64, |a, c| a.saturating_add(c.1))
    }
}

/// One earlier event, as bundle test cases write it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PastCall {
    /// The tool called.
    pub tool: String,
    /// Kernel time of the call, ms.
    pub time: u64,
    /// `false`: another session of the same principal.
    #[serde(default = "yes")]
    pub same_session: bool,
    /// Cost units the call's EFFECT metered.
    #[serde(default)]
    pub cost: u64,
    /// The call was escalated and then approved.
    #[serde(default)]
    pub approved: bool,
}

fn yes() -> bool {
    true
}

/// Per-tool histories of permitted calls and metered costs: one session's, or one
/// principal's across its sessions. The kernel keeps one per principal and one per
/// session and lends them to [`Evidence::from_parts`], so a principal's history is
/// stored once however many sessions it has.
#[derive(Clone, Debug, Default)]
pub struct Histories(BTreeMap<String, History>);

impl Histories {
    /// Adds a permitted call to `tool` at `time`.
    pub fn add_call(&mut self, tool: &str, time: u64) {
        let h = self.0.entry(tool.to_owned()).or_default();
        insert_sorted(&mut h.calls, time);
    }

    /// Removes one permitted call to `tool` at `time` (added by [`Histories::add_call`]
    /// for a decision that was then not written). Returns whether there was one.
    pub fn remove_call(&mut self, tool: &str, time: u64) -> bool {
        let Some(h) = self.0.get_mut(tool) else { return false };
        let at = h.calls.partition_point(|x| *x < time);
        if h.calls.get(at) != Some(&time) {
            return false;
        }
        h.calls.remove(at);
        if h.calls.is_empty() && h.costs.is_empty() {
            self.0.remove(tool);
        }
        true
    }

    /// Adds `cost` units metered by a call to `tool` at `time`.
    pub fn add_cost(&mut self, tool: &str, time: u64, cost: u64) {
        let h = self.0.entry(tool.to_owned()).or_default();
        let at = h.costs.partition_point(|c| c.0 <= time);
        h.costs.insert(at, (time, cost));
    }

    /// Number of tools with a history.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no tool has a history.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Counters over the session's and the principal's history.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    session: Arc<Histories>,
    principal: Arc<Histories>,
    approved: Arc<BTreeSet<String>>,
}

fn has_glob(p: &str) -> bool {
    p.bytes().any(|b| b == b'*' || b == b'?')
}

impl Evidence {
    /// No history.
    pub fn new() -> Evidence {
        Evidence::default()
    }

    /// Evidence over parts the caller keeps: the principal's history, the session's
    /// history and the tools approved in the session.
    pub fn from_parts(principal: Arc<Histories>, session: Arc<Histories>, approved: Arc<BTreeSet<String>>) -> Evidence {
        Evidence {
            session,
            principal,
            approved,
        }
    }

    /// Adds one permitted call (it counts for the principal, and for the session if
    /// `same_session`).
    pub fn add_call(&mut self, call: &PastCall) {
        let add = |h: &mut Arc<Histories>| {
            let h = Arc::make_mut(h);
            h.add_call(&call.tool, call.time);
            if call.cost > 0 {
                h.add_cost(&call.tool, call.time, call.cost);
            }
        };
        add(&mut self.principal);
        if call.same_session {
            add(&mut self.session);
            if call.approved {
                Arc::make_mut(&mut self.approved).insert(call.tool.clone());
            }
        }
    }

    /// Evidence from a session's records: `records` are all records up to (not
    /// including) the call being decided, in stream order; those about `principal`
    /// count for the principal, those also in `session` for the session. A call counts
    /// when an ALLOW permitted its INTENT or an APPROVAL granted its ESCALATE; its cost
    /// is the `cost` meter of its EFFECTs.
    pub fn from_records(records: &[Record<'_>], principal: &str, session: &str) -> Evidence {
        let mut ev = Evidence::new();
        // INTENT hash -> (tool, session matches); ESCALATE hash -> INTENT hash.
        let mut intents: BTreeMap<Hash, (&str, bool)> = BTreeMap::new();
        let mut escalations: BTreeMap<Hash, Hash> = BTreeMap::new();
        for r in records {
            if r.principal != principal {
                continue;
            }
            let same_session = r.session == session;
            match r.body {
                Body::Intent { tool, .. } => {
                    intents.insert(r.hash, (tool, same_session));
                }
                Body::Decision { verdict, .. } => {
                    let Some(intent) = r.parents.iter().find(|p| intents.contains_key(p)) else {
                        continue;
                    };
                    match verdict {
                        Verdict::Allow => {
                            if let Some((tool, _)) = intents.get(&intent) {
                                ev.add_call(&PastCall {
                                    tool: (*tool).to_owned(),
                                    time: r.time,
                                    same_session,
                                    cost: 0,
                                    approved: false,
                                });
                            }
                        }
                        Verdict::Escalate => {
                            escalations.insert(r.hash, intent);
                        }
                        Verdict::Deny => {}
                    }
                }
                Body::Approval { .. } => {
                    let intent = r.parents.iter().find_map(|p| escalations.get(&p).copied());
                    if let Some((tool, _)) = intent.and_then(|i| intents.get(&i)) {
                        ev.add_call(&PastCall {
                            tool: (*tool).to_owned(),
                            time: r.time,
                            same_session,
                            cost: 0,
                            approved: true,
                        });
                    }
                }
                Body::Effect { tool, meters, .. } => {
                    let cost = meters.and_then(|m| m.get(COST_METER)).unwrap_or(0);
                    if cost > 0 {
                        ev.add_cost(tool, r.time, cost, same_session);
                    }
                }
                _ => {}
            }
        }
        ev
    }

    /// Adds cost units metered by an executed call.
    pub fn add_cost(&mut self, tool: &str, time: u64, cost: u64, same_session: bool) {
        Arc::make_mut(&mut self.principal).add_cost(tool, time, cost);
        if same_session {
            Arc::make_mut(&mut self.session).add_cost(tool, time, cost);
        }
    }

    fn histories<'a>(&'a self, pattern: &'a str, principal: bool) -> impl Iterator<Item = &'a History> + 'a {
        let map = if principal { &self.principal.0 } else { &self.session.0 };
        let exact = if has_glob(pattern) { None } else { map.get(pattern) };
        let globbed =
            has_glob(pattern).then(|| map.iter().filter(move |(t, _)| glob_match(pattern, t)).map(|(_, h)| h));
        exact.into_iter().chain(globbed.into_iter().flatten())
    }

    /// Steps charged for a scan with `pattern`: the number of tools looked at.
    pub(crate) fn scan_cost(&self, pattern: &str) -> u64 {
        if has_glob(pattern) {
            (self.principal.0.len() as u64).saturating_add(1)
        } else {
            1
        }
    }

    /// Permitted calls to tools matching `pattern` after time `since` (all if `None`).
    pub(crate) fn calls(&self, pattern: &str, since: Option<u64>, principal: bool) -> i64 {
        let n = self
            .histories(pattern, principal)
            .fold(0u64, |a, h| a.saturating_add(h.calls_since(since)));
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Cost units of calls to tools matching `pattern` after `since`.
    pub(crate) fn cost(&self, pattern: &str, since: Option<u64>, principal: bool) -> i64 {
        let n = self
            .histories(pattern, principal)
            .fold(0u64, |a, h| a.saturating_add(h.cost_since(since)));
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Whether an APPROVAL in this session granted a call to a tool matching `pattern`.
    pub(crate) fn approved(&self, pattern: &str) -> bool {
        if has_glob(pattern) {
            self.approved.iter().any(|t| glob_match(pattern, t))
        } else {
            self.approved.contains(pattern)
        }
    }
}
