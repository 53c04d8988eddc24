//! Tool-definition pinning and the policy view of `tools/list`.
//!
//! A tool's **canonical definition** is the RFC 8785 canonical JSON of the object made
//! of its `name`, `title`, `description`, `inputSchema`, `outputSchema`, `annotations`
//! and `execution` members (those present; nothing else). Its SHA-256 is the pin. A pin
//! is an ATTESTATION `tool-pin` record (subject: that hash; claims: `{"tool": name,
//! "server": server}`; the canonical definition kept as a blob), so pins are in the
//! store, survive restarts and appear in every exported pack. Every pinned definition
//! of a (server, tool) stays approved (pins add up, none is revoked), so re-stating a
//! `[[mcp.pin]]` at each start changes nothing.
//!
//! A definition is pinned when first approved: on first sight when `tofu = true`
//! (the default), or by an operator (`[[mcp.pin]]` in the configuration, or
//! `POST /v1/mcp/pins` with an approver token). A definition that differs from the
//! approved one is refused: the tool is left out of `tools/list` and its calls are
//! denied with `TOOL_DEFINITION_CHANGED`, each refusal recorded as a VIOLATION of that
//! code, until the new definition is approved.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use guardian::{glob_match, Bundle, OtherTools};
use helm_kernel::{AttestationReport, Kernel};
use serde_json::{Map, Value};
use verify_core::{sha256, CborWriter, Hash, Verdict};

/// The members of a tool definition that are pinned.
pub const PINNED_MEMBERS: [&str; 7] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "execution",
];

/// The canonical definition of a tool (RFC 8785 JSON of its pinned members).
pub fn canonical_definition(tool: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let mut o = Map::new();
    for k in PINNED_MEMBERS {
        if let Some(v) = tool.get(k) {
            o.insert(k.to_owned(), v.clone());
        }
    }
    let text = serde_json::to_vec(&Value::Object(o)).map_err(|e| format!("definition does not encode: {e}"))?;
    receipt_v5::canonicalize_to_vec(&text).map_err(|e| format!("definition has no RFC 8785 form: {e:?}"))
}

/// The claims map of a `tool-pin` ATTESTATION: `{"tool": t, "server": s}` (keys in
/// deterministic order).
pub fn pin_claims(server: &str, tool: &str) -> Vec<u8> {
    let mut w = CborWriter::new();
    w.map(2).text("tool").text(tool).text("server").text(server);
    w.into_bytes()
}

fn parse_claims(c: &[u8]) -> Option<(String, String)> {
    let mut r = verify_core::cbor::Reader::new(c);
    if r.map_len().ok()? != 2 || r.text().ok()? != "tool" {
        return None;
    }
    let tool = r.text().ok()?.to_owned();
    if r.text().ok()? != "server" {
        return None;
    }
    Some((r.text().ok()?.to_owned(), tool))
}

/// What the pins say about a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinState {
    /// It is the approved definition.
    Approved,
    /// The tool has an approved definition and this is another one.
    Changed {
        /// The approved definition's hash.
        pinned: Hash,
    },
    /// No definition of the tool is approved and first sight does not approve
    /// (`tofu = false`).
    Unapproved,
}

/// The pins of every server, restored from the store and kept in step with it.
#[derive(Debug)]
pub struct PinStore {
    kernel: Arc<Kernel>,
    tofu: bool,
    pins: Mutex<HashMap<(String, String), Vec<Hash>>>,
    /// (server, tool, hash) whose refusal at listing time is already recorded.
    reported: Mutex<HashSet<(String, String, Hash)>>,
}

impl PinStore {
    /// Restores the pins from the store's `tool-pin` ATTESTATIONs.
    pub fn load(kernel: Arc<Kernel>, tofu: bool) -> Result<PinStore, String> {
        let mut pins: HashMap<(String, String), Vec<Hash>> = HashMap::new();
        for a in kernel.attestations("tool-pin").map_err(|e| e.to_string())? {
            if let Some(key) = a.claims.as_deref().and_then(parse_claims) {
                let v = pins.entry(key).or_default();
                if !v.contains(&a.subject) {
                    v.push(a.subject);
                }
            }
        }
        Ok(PinStore {
            kernel,
            tofu,
            pins: Mutex::new(pins),
            reported: Mutex::new(HashSet::new()),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Hash>>> {
        self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest approved definition of a tool, if any.
    pub fn approved(&self, server: &str, tool: &str) -> Option<Hash> {
        self.map()
            .get(&(server.to_owned(), tool.to_owned()))
            .and_then(|v| v.last().copied())
    }

    /// Whether `hash` is an approved definition of the tool.
    pub fn is_approved(&self, server: &str, tool: &str, hash: &Hash) -> bool {
        self.map()
            .get(&(server.to_owned(), tool.to_owned()))
            .is_some_and(|v| v.contains(hash))
    }

    /// Every pin: (server, tool, approved definition), sorted.
    pub fn all(&self) -> Vec<(String, String, Hash)> {
        let mut v: Vec<_> = self
            .map()
            .iter()
            .flat_map(|((s, t), hs)| hs.iter().map(move |h| (s.clone(), t.clone(), *h)))
            .collect();
        v.sort();
        v
    }

    /// Number of pinned tools.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no tool is pinned.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Records `hash` as the approved definition of (server, tool) (blocking: waits
    /// for the store). `definition` is kept as a blob when given.
    pub fn approve(&self, server: &str, tool: &str, hash: Hash, definition: Option<Vec<u8>>) -> Result<String, String> {
        if self.is_approved(server, tool, &hash) {
            return Ok(String::new());
        }
        let rec = self
            .kernel
            .attest(&AttestationReport {
                subtype: "tool-pin".into(),
                subject: hash,
                claims: Some(pin_claims(server, tool)),
                principal: "kernel".into(),
                session: String::new(),
                blobs: definition.into_iter().collect(),
            })
            .map_err(|r| format!("{}: {}", r.code, r.message))?;
        self.map()
            .entry((server.to_owned(), tool.to_owned()))
            .or_default()
            .push(hash);
        Ok(rec)
    }

    /// Checks a definition seen in a listing (blocking: may record a pin on first sight
    /// with `tofu`, or a VIOLATION `TOOL_DEFINITION_CHANGED` once per new definition).
    pub fn observe(&self, server: &str, tool: &str, definition: &[u8], principal: &str, session: &str) -> PinState {
        let hash = sha256(definition);
        if self.is_approved(server, tool, &hash) {
            return PinState::Approved;
        }
        match self.approved(server, tool) {
            Some(pinned) => {
                let first = self
                    .reported
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert((server.to_owned(), tool.to_owned(), hash));
                if first {
                    let detail = format!(
                        "{server}/{tool}: listed definition sha256:{} differs from the pinned sha256:{}",
                        hex::encode(hash),
                        hex::encode(pinned)
                    );
                    crate::log::log_warn!("MCP {detail}: the tool is hidden and its calls denied until approved");
                    if let Err(e) = self.kernel.record_violation(
                        "TOOL_DEFINITION_CHANGED",
                        Some(&hash),
                        Some(&detail),
                        principal,
                        session,
                    ) {
                        crate::log::log_error!("MCP cannot record the VIOLATION: {}: {}", e.code, e.message);
                    }
                }
                PinState::Changed { pinned }
            }
            None if self.tofu => match self.approve(server, tool, hash, Some(definition.to_vec())) {
                Ok(_) => PinState::Approved,
                Err(e) => {
                    crate::log::log_error!("MCP cannot pin {server}/{tool}: {e}");
                    PinState::Unapproved
                }
            },
            None => PinState::Unapproved,
        }
    }
}

/// Whether some call of `tool` by `principal` could be allowed (or escalated) by the
/// bundles, whatever its arguments: no applicable bundle denies every call of it (no
/// candidate rule with `other_tools = "deny"`, or only DENY candidate rules), and at
/// least one applicable bundle has an ALLOW or ESCALATE candidate rule. Budgets are not
/// considered (they change over time). A tool that cannot be allowed is left out of
/// `tools/list`.
pub fn may_be_allowed(bundles: &[Bundle], principal: &str, tool: &str) -> bool {
    let mut some = false;
    for b in bundles {
        let spec = b.spec();
        if !spec.principals.is_empty() && !spec.principals.iter().any(|p| glob_match(p, principal)) {
            continue;
        }
        let candidates: Vec<_> = spec
            .rules
            .iter()
            .filter(|r| r.tools.iter().any(|t| glob_match(t, tool)))
            .collect();
        if candidates.is_empty() {
            if spec.other_tools == OtherTools::Deny {
                return false;
            }
            continue;
        }
        if candidates.iter().all(|r| r.verdict == Verdict::Deny) {
            return false;
        }
        some = true;
    }
    some
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_definitions_cover_more_than_the_description() {
        let t = |v: Value| canonical_definition(v.as_object().unwrap()).unwrap();
        let a = t(json!({"name":"echo","description":"d","inputSchema":{"type":"object","b":1,"a":2}}));
        assert_eq!(
            a,
            br#"{"description":"d","inputSchema":{"a":2,"b":1,"type":"object"},"name":"echo"}"#.to_vec()
        );
        // Members outside the pinned set do not count; schema changes do.
        let b = t(
            json!({"name":"echo","description":"d","inputSchema":{"type":"object","a":2,"b":1},"_meta":{"x":1},"icons":[]}),
        );
        assert_eq!(a, b);
        let c = t(json!({"name":"echo","description":"d","inputSchema":{"type":"object","a":2,"b":2}}));
        assert_ne!(a, c);
        let d = t(
            json!({"name":"echo","description":"d","inputSchema":{"type":"object","a":2,"b":1},"annotations":{"destructiveHint":true}}),
        );
        assert_ne!(a, d);
    }

    #[test]
    fn claims_round_trip() {
        assert_eq!(
            parse_claims(&pin_claims("fs", "read_file")),
            Some(("fs".into(), "read_file".into()))
        );
    }

    #[test]
    fn listing_follows_policy() {
        let b = Bundle::from_toml(
            r#"
name = "t"
other_tools = "deny"
[[rule]]
id = "a"
tools = ["fs/read_*"]
verdict = "allow"
require = ["args.path matches '/w/*'"]
[[rule]]
id = "b"
tools = ["fs/rm"]
verdict = "deny"
require = ["true"]
[[rule]]
id = "c"
tools = ["fs/deploy"]
verdict = "escalate"
require = ["true"]
escalation = { role = "approver", quorum = 1, ttl_ms = 1000 }
"#,
        )
        .unwrap();
        let bs = [b];
        assert!(may_be_allowed(&bs, "p", "fs/read_file"));
        assert!(may_be_allowed(&bs, "p", "fs/deploy"));
        assert!(!may_be_allowed(&bs, "p", "fs/rm"));
        assert!(!may_be_allowed(&bs, "p", "fs/other"));
        assert!(!may_be_allowed(&[], "p", "fs/read_file"));
    }
}
