//! The MCP interceptor: `helm-proxy` in front of any MCP server, on every transport,
//! so that every tool call through MCP is decided and recorded, and a server cannot
//! silently change what its tools are.
//!
//! - [`protocol`]: revisions 2024-11-05 to 2026-07-28, per-revision method allowlists,
//!   strict JSON-RPC parsing.
//! - [`bridge`]: one governed conversation (the transports only move bytes).
//! - [`pins`]: tool-definition pinning (ATTESTATION `tool-pin`) and the policy view of
//!   `tools/list`.
//! - [`stdio`]: the stdio transport, both sides (`helm-proxy mcp --stdio -- CMD…`).
//! - [`http`]: Streamable HTTP and HTTP+SSE, client-facing (an axum router mounted by
//!   the server) and upstream-facing.
//!
//! Tools are named `server/tool` for the policy; `resources/read` is the tool
//! `server:resources/read` (arguments `{"uri": …}`), `prompts/get` is
//! `server:prompts/get` (`{"name": …, "arguments": …}`), and requests of the server to
//! the client are `server:sampling/createMessage`, `server:elicitation/create` and
//! `server:roots/list` (arguments: their params). See `proxy/README.md`, "MCP
//! interceptor".

pub mod bridge;
pub mod config;
pub mod http;
pub mod params;
pub mod pins;
pub mod protocol;
pub mod sse;
pub mod stdio;
mod upstream;

use std::sync::Arc;

use crate::config::Config;
use crate::log::{log_error, log_info};
use crate::server::{open_kernel, ServeError};

pub use bridge::{Bridge, McpShared, ToClient};
pub use upstream::{start_upstream, UpstreamSpec};

/// A random id: 16 bytes as 32 hex digits.
pub(crate) fn random_id() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("random source failed: {e}"))?;
    Ok(hex::encode(b))
}

/// Options of `helm-proxy mcp --stdio`.
#[derive(Clone, Debug)]
pub struct StdioOptions {
    /// The upstream's name (tools are `server/tool`).
    pub server: String,
    /// The server command and its arguments.
    pub command: Vec<String>,
    /// The principal (default: `[mcp] stdio_principal`).
    pub principal: Option<String>,
    /// The kernel session (default: `mcp-stdio-<random>`).
    pub session: Option<String>,
}

/// `helm-proxy mcp --stdio -- CMD…`: opens the kernel of `config`, spawns the server,
/// and relays our stdin/stdout to it, governed, until end of input or SIGTERM; then
/// shuts the server down cleanly and writes a final CHECKPOINT. Logs go to stderr
/// (stdout carries only protocol messages).
pub fn run_stdio(config: &Config, opts: StdioOptions) -> Result<(), ServeError> {
    if !config::valid_server_name(&opts.server) {
        return Err(ServeError::Config(crate::config::ConfigError(format!(
            "--server {:?}: a name is 1 to 64 bytes of a-z A-Z 0-9 _ - .",
            opts.server
        ))));
    }
    let prepared = config.prepare().map_err(ServeError::Config)?;
    let kernel = Arc::new(open_kernel(config, &prepared)?);
    let shared = McpShared::new(kernel.clone(), config.mcp.clone()).map_err(ServeError::Io)?;
    let principal = opts
        .principal
        .clone()
        .unwrap_or_else(|| config.mcp.stdio_principal.clone());
    let session = match &opts.session {
        Some(s) => s.clone(),
        None => format!("mcp-stdio-{}", random_id().map_err(ServeError::Io)?),
    };
    // One conversation: a single-threaded runtime (no cross-thread wake-ups per
    // message); blocking kernel calls (durable store) go to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("helm-proxy-mcp")
        .build()
        .map_err(|e| ServeError::Io(format!("tokio runtime: {e}")))?;
    let result = runtime.block_on(async move {
        let max = usize::try_from(config.mcp.max_message_bytes).unwrap_or(usize::MAX);
        let (up_tx, up_rx) = tokio::sync::mpsc::unbounded_channel();
        let (cl_tx, cl_rx) = tokio::sync::mpsc::unbounded_channel();
        let bridge = Bridge::new(
            shared.clone(),
            &opts.server,
            &principal,
            &session,
            up_tx.clone(),
            bridge::ClientSink::Channel(cl_tx),
        );
        let spec = UpstreamSpec::Command {
            argv: opts.command.clone(),
            env: Default::default(),
        };
        let upstream = start_upstream(&spec, bridge.clone(), up_rx, max).map_err(ServeError::Io)?;
        log_info!(
            "MCP stdio: server {} ({}) for principal {principal:?}, session {session}",
            opts.server,
            opts.command.join(" ")
        );
        let (input, output, restore) = stdio::std_streams(tokio::runtime::Handle::current());
        stdio::serve_stdio(bridge, up_tx, cl_rx, input, output, upstream, max, stop_signal()).await;
        drop(restore);
        Ok::<(), ServeError>(())
    });
    runtime.shutdown_timeout(core::time::Duration::from_secs(5));
    match kernel.checkpoint() {
        Ok(Some((pos, hash))) => log_info!("final CHECKPOINT at record {pos} ({hash})"),
        Ok(None) => {}
        Err(e) => log_error!("final CHECKPOINT failed: {e}"),
    }
    result
}

/// Resolves on ctrl-c or SIGTERM.
pub(crate) async fn stop_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => core::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupt",
        () = term => "SIGTERM",
    }
}
