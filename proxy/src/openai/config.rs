//! `[openai]`: the OpenAI-compatible proxy's configuration.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// What a client sees of a tool call that was denied or is waiting for approval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyMode {
    /// The response is rewritten: the call is removed, and a text (an assistant message,
    /// or a Responses `message` item) states the denial, its reason code and decision;
    /// a withheld escalation states the approval id. Other calls pass.
    #[default]
    Rewrite,
    /// The whole response is refused with a 403 OpenAI-style error (in a stream: an
    /// error event, then the stream ends), naming each call's reason code.
    Error,
}

impl DenyMode {
    /// `rewrite` or `error`.
    pub fn name(self) -> &'static str {
        match self {
            DenyMode::Rewrite => "rewrite",
            DenyMode::Error => "error",
        }
    }
}

/// The routes passed through by default: they carry no tool calls.
pub const DEFAULT_PASSTHROUGH: [&str; 2] = ["/v1/models", "/v1/embeddings"];

/// Hosted tool types known to run inside the upstream (Responses API); any other
/// non-function, non-custom tool type is treated the same way (offered only if listed).
pub const KNOWN_HOSTED: [&str; 12] = [
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "mcp",
    "image_generation",
    "computer_use_preview",
    "local_shell",
    "shell",
    "apply_patch",
    "computer_use",
];

/// Paths the proxy serves itself or the kernel serves: never passed through.
const RESERVED: [&str; 6] = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/evaluate",
    "/v1/effects",
    "/v1/records",
    "/v1/approvals",
];

/// `[openai]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiSection {
    /// The upstream's base URL including its version prefix, as an OpenAI client's
    /// `base_url` (`https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`). The client's
    /// `/v1/...` path is appended after it without the client's `/v1`.
    pub upstream: String,
    /// Environment variable holding the upstream API key (this, `api_key_file`, or
    /// neither for an upstream without authentication). Never logged or recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// File holding the upstream API key (one line; mode 0600 or 0400).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Extra PEM root certificates for the upstream (besides the Mozilla roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Routes passed to the upstream unchanged (a path and everything under it).
    /// Default `/v1/models`, `/v1/embeddings`. Realtime, batch, files and stored
    /// responses are refused unless listed: tool calls there would escape governance.
    pub passthrough: Vec<String>,
    /// `rewrite` (default) or `error`.
    pub deny_mode: DenyMode,
    /// How long a response waits for an escalated call's approval before withholding
    /// the call with an "approval pending" answer (ms).
    pub pending_wait_ms: u64,
    /// Hosted tool types that may be offered to the model (`web_search`, `file_search`,
    /// `code_interpreter`, `mcp`, ...), if the principal's bundles could also allow the
    /// tool `hosted/<type>`. They run inside the upstream, beyond governance in flight:
    /// every other hosted tool is stripped from requests.
    pub hosted_tools: Vec<String>,
    /// The session of requests without an `X-Helm-Session` header.
    pub default_session: String,
    /// Connecting to the upstream (ms).
    pub connect_timeout_ms: u64,
    /// A whole non-streamed answer, or the longest gap between two stream chunks (ms).
    pub timeout_ms: u64,
    /// Largest request body accepted on the proxied routes (bytes).
    pub max_request_bytes: u64,
    /// Largest upstream answer (non-streamed) or stream event (bytes).
    pub max_response_bytes: u64,
    /// SSE keep-alive comments while a decision waits (ms).
    pub keepalive_ms: u64,
    /// Call ids remembered as completed or denied (to tell a resent tool result from
    /// one for a call never allowed); the oldest are forgotten beyond this.
    pub remember_calls: usize,
}

impl Default for OpenAiSection {
    fn default() -> Self {
        OpenAiSection {
            upstream: "https://api.openai.com/v1".into(),
            api_key_env: None,
            api_key_file: None,
            ca_file: None,
            passthrough: DEFAULT_PASSTHROUGH.iter().map(|s| (*s).to_owned()).collect(),
            deny_mode: DenyMode::Rewrite,
            pending_wait_ms: 1000,
            hosted_tools: Vec::new(),
            default_session: "openai".into(),
            connect_timeout_ms: 10_000,
            timeout_ms: 600_000,
            max_request_bytes: 16 << 20,
            max_response_bytes: 64 << 20,
            keepalive_ms: 1000,
            remember_calls: 1_000_000,
        }
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(format!("[openai] {}", m.into())))
}

/// A parsed upstream base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub(crate) https: bool,
    /// `host[:port]`.
    pub(crate) authority: String,
    /// The path prefix without a trailing `/` (`/v1`, or empty).
    pub(crate) prefix: String,
}

/// Parses `http(s)://authority[/prefix]` (no query, no fragment, no user info).
pub(crate) fn parse_base_url(s: &str) -> Result<BaseUrl, String> {
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with https:// or http://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("needs a host (and no user info)".into());
    }
    if s.contains('?') || s.contains('#') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no query, fragment or spaces".into());
    }
    if authority.parse::<axum::http::uri::Authority>().is_err() {
        return Err(format!("{authority:?} is not a host[:port]"));
    }
    Ok(BaseUrl {
        https,
        authority: authority.to_owned(),
        prefix: path.trim_end_matches('/').to_owned(),
    })
}

impl OpenAiSection {
    /// Makes the file paths absolute (relative ones against `base`).
    pub fn resolve(&mut self, base: &Path) {
        let abs = |p: &Path| {
            let joined = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            std::path::absolute(&joined).unwrap_or(joined)
        };
        if let Some(f) = &mut self.api_key_file {
            *f = abs(f);
        }
        if let Some(f) = &mut self.ca_file {
            *f = abs(f);
        }
    }

    /// Checks the values (not the files they name).
    pub fn check(&self) -> Result<(), ConfigError> {
        parse_base_url(&self.upstream).or_else(|e| err(format!("upstream = {:?}: {e}", self.upstream)))?;
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            return err("give api_key_env or api_key_file, not both");
        }
        if let Some(v) = &self.api_key_env {
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                return err(format!("api_key_env = {v:?} is not an environment variable name"));
            }
        }
        for p in &self.passthrough {
            let ok = p.starts_with("/v1/")
                && p.len() > 4
                && !p.ends_with('/')
                && !p.contains("//")
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/_.-".contains(&b));
            if !ok {
                return err(format!(
                    "passthrough {p:?}: a path under /v1/ of lower-case letters, digits, '/', '_', '.', '-'"
                ));
            }
            if RESERVED
                .iter()
                .any(|r| p == r || p.starts_with(&format!("{r}/")) || r.starts_with(&format!("{p}/")))
            {
                return err(format!("passthrough {p:?} overlaps a governed or kernel route"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.passthrough {
            if !seen.insert(p) {
                return err(format!("passthrough {p:?} is listed twice"));
            }
        }
        for t in &self.hosted_tools {
            if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return err(format!("hosted_tools {t:?}: a tool type such as \"web_search\""));
            }
        }
        if self.default_session.is_empty()
            || self.default_session.len() > 256
            || self.default_session.chars().any(char::is_control)
        {
            return err("default_session: 1 to 256 bytes without control characters");
        }
        if self.pending_wait_ms > 60_000 {
            return err("pending_wait_ms must be at most 60000");
        }
        if !(100..=600_000).contains(&self.connect_timeout_ms) {
            return err("connect_timeout_ms must be between 100 and 600000");
        }
        if !(100..=3_600_000).contains(&self.timeout_ms) {
            return err("timeout_ms must be between 100 and 3600000");
        }
        if !(1024..=(256 << 20)).contains(&self.max_request_bytes) {
            return err("max_request_bytes must be between 1024 and 268435456");
        }
        if !(1024..=(1 << 30)).contains(&self.max_response_bytes) {
            return err("max_response_bytes must be between 1024 and 1073741824");
        }
        if !(50..=60_000).contains(&self.keepalive_ms) {
            return err("keepalive_ms must be between 50 and 60000");
        }
        if !(1000..=100_000_000).contains(&self.remember_calls) {
            return err("remember_calls must be between 1000 and 100000000");
        }
        Ok(())
    }

    /// Reads the upstream API key, if one is configured.
    pub(crate) fn load_key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(v) = &self.api_key_env {
            return match std::env::var(v) {
                Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_owned())),
                _ => err(format!("api_key_env: the environment variable {v} is not set")),
            };
        }
        let Some(path) = &self.api_key_file else {
            return Ok(None);
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).or_else(|e| err(format!("api_key_file {}: {e}", path.display())))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return err(format!(
                    "api_key_file {}: readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let text = std::fs::read_to_string(path).or_else(|e| err(format!("api_key_file {}: {e}", path.display())))?;
        let key = text.trim();
        if key.is_empty() || key.len() > 4096 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return err(format!(
                "api_key_file {}: one line of visible ASCII (the key)",
                path.display()
            ));
        }
        Ok(Some(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn base_urls() {
        let b = parse_base_url("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            (b.https, b.authority.as_str(), b.prefix.as_str()),
            (true, "api.openai.com", "/v1")
        );
        let b = parse_base_url("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (b.https, b.authority.as_str(), b.prefix.as_str()),
            (false, "127.0.0.1:9000", "")
        );
        for bad in [
            "ftp://x",
            "https://",
            "https://u:p@host/v1",
            "https://h/v1?x=1",
            "https://h /v1",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks() {
        assert!(OpenAiSection::default().check().is_ok());
        let with = |f: &dyn Fn(&mut OpenAiSection)| {
            let mut s = OpenAiSection::default();
            f(&mut s);
            s.check()
        };
        assert!(with(&|s| s.passthrough = vec!["/v1/responses".into()]).is_err());
        assert!(with(&|s| s.passthrough = vec!["/v1/chat".into()]).is_err());
        assert!(with(&|s| s.passthrough = vec!["/v1/Models".into()]).is_err());
        assert!(with(&|s| s.passthrough = vec!["/v1/{x}".into()]).is_err());
        assert!(with(&|s| s.passthrough = vec!["/v1/files".into(), "/v1/files".into()]).is_err());
        assert!(with(&|s| s.passthrough = vec!["/v1/files".into()]).is_ok());
        assert!(with(&|s| s.hosted_tools = vec!["web search".into()]).is_err());
        assert!(with(&|s| {
            s.api_key_env = Some("K".into());
            s.api_key_file = Some("/k".into());
        })
        .is_err());
        assert!(with(&|s| s.upstream = "localhost:8000".into()).is_err());
    }
}
