//! The `[mcp]` section of the configuration.
//!
//! ```toml
//! [mcp]
//! deny_as = "result"            # or "error": how a refused tools/call is answered
//! escalation_wait_ms = 2000     # how long a call waits for an approval before "approval pending"
//! max_message_bytes = 4194304   # larger messages are refused (both directions)
//! tofu = true                   # pin a tool's definition when first seen
//! relist_ms = 60000             # re-read tools/list before a call when the last is older
//! allowed_origins = []          # Origins accepted besides loopback ones (http://localhost:*, ...)
//! stdio_principal = "mcp-stdio" # the principal of `helm-proxy mcp --stdio`
//!
//! [[mcp.server]]                # an upstream: exactly one of command, url, sse_url
//! name = "everything"
//! command = ["npx", "@modelcontextprotocol/server-everything"]
//!
//! [[mcp.pin]]                   # an approved definition (e.g. after a change)
//! server = "everything"
//! tool = "echo"
//! sha256 = "<64 hex>"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a refused call is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyAs {
    /// A `CallToolResult` with `isError: true`, the reason code in its text and in
    /// `_meta["helm/decision"]` (the model reads it and can adapt).
    #[default]
    Result,
    /// A JSON-RPC error: code -32010 (denied) or -32011 (approval pending), the
    /// decision in `error.data`.
    Error,
}

/// One upstream MCP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Its name: tools are `name/tool` for the policy. 1–64 bytes of `a-z A-Z 0-9 _ - .`.
    pub name: String,
    /// A stdio server: the program and its arguments (spawned per client session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment variables for `command`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A Streamable HTTP server: its MCP endpoint URL (`http://` or `https://`; TLS with
    /// the Mozilla roots and those of `ca_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An HTTP+SSE (2024-11-05) server: its SSE URL (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_url: Option<String>,
    /// Extra HTTP headers sent upstream (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `url` / `sse_url` over `https://`: PEM certificates trusted as roots besides the
    /// Mozilla ones (a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// One approved tool definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinSection {
    /// The server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// SHA-256 of its canonical definition (64 lowercase hex digits).
    pub sha256: String,
}

/// `[mcp]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSection {
    /// How a refused tools/call is answered.
    pub deny_as: DenyAs,
    /// How long a tools/call waits for an approval before answering "approval pending"
    /// (ms; at most 50000, clients time out around a minute).
    pub escalation_wait_ms: u64,
    /// Largest message accepted from either side (bytes).
    pub max_message_bytes: u64,
    /// Pin a definition on first sight (trust on first use).
    pub tofu: bool,
    /// Before a `tools/call`, the server's `tools/list` is read again (by the proxy,
    /// every page) when the last complete listing is older than this (ms), so that a
    /// definition changed without `notifications/tools/list_changed` is caught within
    /// this time. 0: only when the server announces a change.
    pub relist_ms: u64,
    /// Origins accepted besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// The principal of `helm-proxy mcp --stdio` (the process owner is the caller).
    pub stdio_principal: String,
    /// How long an idle HTTP session is kept (ms).
    pub session_idle_ms: u64,
    /// Most HTTP sessions at once.
    pub max_sessions: usize,
    /// Upstream servers reachable over HTTP at `/mcp/{name}`.
    #[serde(rename = "server")]
    pub servers: Vec<UpstreamSection>,
    /// Approved definitions.
    #[serde(rename = "pin")]
    pub pins: Vec<PinSection>,
}

impl Default for McpSection {
    fn default() -> Self {
        McpSection {
            deny_as: DenyAs::Result,
            escalation_wait_ms: 2000,
            max_message_bytes: 4 << 20,
            tofu: true,
            relist_ms: 60_000,
            allowed_origins: Vec::new(),
            stdio_principal: "mcp-stdio".into(),
            session_idle_ms: 30 * 60 * 1000,
            max_sessions: 256,
            servers: Vec::new(),
            pins: Vec::new(),
        }
    }
}

/// Whether `s` is a valid upstream name.
pub fn valid_server_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl McpSection {
    /// Checks the values (not the upstreams themselves).
    pub fn check(&self) -> Result<(), String> {
        if self.escalation_wait_ms > 50_000 {
            return Err("[mcp] escalation_wait_ms must be at most 50000".into());
        }
        if !(1024..=(64 << 20)).contains(&self.max_message_bytes) {
            return Err("[mcp] max_message_bytes must be between 1024 and 67108864".into());
        }
        if self.stdio_principal.is_empty() || self.stdio_principal == "kernel" || self.stdio_principal.len() > 256 {
            return Err("[mcp] stdio_principal must be a name other than \"kernel\"".into());
        }
        if self.max_sessions == 0 {
            return Err("[mcp] max_sessions must be at least 1".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.servers {
            if !valid_server_name(&s.name) {
                return Err(format!(
                    "[[mcp.server]] {:?}: a name is 1 to 64 bytes of a-z A-Z 0-9 _ - .",
                    s.name
                ));
            }
            if !names.insert(s.name.clone()) {
                return Err(format!("[[mcp.server]] {:?} appears twice", s.name));
            }
            let n = [s.command.is_some(), s.url.is_some(), s.sse_url.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if n != 1 {
                return Err(format!(
                    "[[mcp.server]] {:?}: exactly one of command, url and sse_url",
                    s.name
                ));
            }
            if s.command.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("[[mcp.server]] {:?}: command is empty", s.name));
            }
            if s.command.is_some() && s.ca_file.is_some() {
                return Err(format!(
                    "[[mcp.server]] {:?}: ca_file applies to url and sse_url only",
                    s.name
                ));
            }
            for u in [&s.url, &s.sse_url].into_iter().flatten() {
                if !u.starts_with("http://") && !u.starts_with("https://") {
                    return Err(format!(
                        "[[mcp.server]] {:?}: {u:?} is not an http:// or https:// URL",
                        s.name
                    ));
                }
            }
        }
        for p in &self.pins {
            if helm_kernel::keyfile::hex32(&p.sha256).is_err() {
                return Err(format!(
                    "[[mcp.pin]] {}/{}: sha256 must be 64 lowercase hex digits",
                    p.server, p.tool
                ));
            }
        }
        Ok(())
    }
}
