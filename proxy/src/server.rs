//! Running the server: open the kernel, listen, tick, shut down with a final checkpoint.

use core::future::IntoFuture as _;
use core::time::Duration;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use helm_kernel::clock::SystemClock;
use helm_kernel::keyfile::key_string;
use helm_kernel::{Kernel, KernelError};

use crate::api::{router, AppState};
use crate::config::{Config, ConfigError, Prepared};
use crate::log::{log_error, log_info, log_warn};

/// Why the server stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The configuration or a file it names is unusable (exit 2).
    Config(ConfigError),
    /// The kernel did not open (store locked or damaged, trust, signer) (exit 1).
    Kernel(KernelError),
    /// Listening or serving failed (exit 1).
    Io(String),
}

impl core::fmt::Display for ServeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServeError::Config(e) => write!(f, "{e}"),
            ServeError::Kernel(e) => write!(f, "kernel: {e}"),
            ServeError::Io(m) => f.write_str(m),
        }
    }
}

impl core::error::Error for ServeError {}

/// Opens the kernel on the configured store.
pub fn open_kernel(config: &Config, prepared: &Prepared) -> Result<Kernel, ServeError> {
    let (kernel, report) = Kernel::open(
        config.kernel_config(prepared).map_err(ServeError::Config)?,
        prepared.signer.clone(),
        Arc::new(SystemClock),
    )
    .map_err(ServeError::Kernel)?;
    log_info!(
        "store {} opened: {} record(s), {} TRUST_EVENT(s) and {} POLICY record(s) added, {} approval(s) pending",
        config.store.dir.display(),
        report.records,
        report.trust_events_added,
        report.policies_added,
        report.pending_approvals
    );
    if report.truncated_bytes > 0 || report.torn.is_some() {
        log_warn!(
            "store recovery cut a torn tail of {} byte(s): {}",
            report.truncated_bytes,
            report.torn.as_deref().unwrap_or("(no detail)")
        );
    }
    Ok(kernel)
}

/// Loads what the configuration names, opens the kernel and serves until SIGTERM or
/// ctrl-c; then drains requests in flight and writes a final CHECKPOINT.
///
/// Prints one line to standard output once listening, `helm-proxy listening on
/// http://ADDR` (`https://` with `[server] tls_cert`), so that a supervisor (or a test)
/// learns the port when it was 0.
pub fn run(config: &Config) -> Result<(), ServeError> {
    let prepared = config.prepare().map_err(ServeError::Config)?;
    for w in &prepared.warnings {
        log_warn!("{w}");
    }
    for line in prepared.summary(config) {
        log_info!("{line}");
    }
    let kernel = Arc::new(open_kernel(config, &prepared)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("helm-proxy")
        .build()
        .map_err(|e| ServeError::Io(format!("tokio runtime: {e}")))?;
    let max_body = usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX);
    let tls = prepared.tls.clone();
    let state = AppState::new(kernel.clone(), prepared.tokens, max_body);
    let openai = match &config.openai {
        Some(o) => Some(crate::openai::OpenAi::open(o, kernel.clone(), &config.store.dir).map_err(ServeError::Config)?),
        None => None,
    };
    // The MCP interceptor's HTTP endpoints, when [[mcp.server]]s are configured.
    let mcp = if config.mcp.servers.is_empty() {
        None
    } else {
        let shared = crate::mcp::McpShared::new(kernel.clone(), config.mcp.clone()).map_err(ServeError::Io)?;
        for s in &config.mcp.servers {
            log_info!("MCP server {} at /mcp/{} (and /mcp/{}/sse)", s.name, s.name, s.name);
        }
        Some(
            crate::mcp::http::McpHttp::new(shared, state.0.tokens.clone())
                .map_err(|e| ServeError::Config(crate::config::ConfigError(e)))?,
        )
    };
    let result = runtime.block_on(serve(config, state, kernel.clone(), openai, mcp, tls));
    // Let blocking tasks still running finish before the kernel is dropped.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(
    config: &Config,
    state: AppState,
    kernel: Arc<Kernel>,
    openai: Option<Arc<crate::openai::OpenAi>>,
    mcp: Option<Arc<crate::mcp::http::McpHttp>>,
    tls: Option<crate::tls::Tls>,
) -> Result<(), ServeError> {
    let addr = config.listen_addr().map_err(ServeError::Config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Io(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Io(format!("listening socket: {e}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    log_info!(
        "listening on {scheme}://{local} ({} store, kernel key {}{})",
        if kernel.is_durable() { "durable" } else { "BUFFERED" },
        key_string(&kernel.public_key()),
        match tls.as_ref().and_then(|t| t.client_auth) {
            Some(m) => format!(", client certificates {}", m.name()),
            None => String::new(),
        }
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "helm-proxy listening on {scheme}://{local}");
        let _ = out.flush();
    }

    let ticker = tokio::spawn(tick_loop(
        kernel.clone(),
        state.clone(),
        Duration::from_millis(config.server.tick_ms),
    ));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mcp_routes = mcp.clone().map(crate::mcp::http::routes);
    let app = match (openai, mcp_routes) {
        (Some(o), Some(m)) => crate::api::router_with(state, crate::openai::routes(o).merge(m)),
        (Some(o), None) => crate::api::router_with(state, crate::openai::routes(o)),
        (None, Some(m)) => crate::api::router_with(state, m),
        (None, None) => router(state),
    };
    let stopped = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let mut server = match &tls {
        // HTTPS only; each request carries its connection's client certificate
        // (ConnectInfo<Peer>) for the Authenticated extractor.
        Some(t) => {
            let listener = crate::tls::TlsListener::new(listener, t)
                .map_err(|e| ServeError::Io(format!("listening socket: {e}")))?;
            tokio::spawn(
                axum::serve(listener, app.into_make_service_with_connect_info::<crate::tls::Peer>())
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            )
        }
        None => tokio::spawn(
            // TCP_NODELAY: streamed answers (SSE) are many small writes; without it Nagle's
            // algorithm and the client's delayed ACK hold each one for up to 40 ms.
            axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
    };
    let served = tokio::select! {
        r = &mut server => Some(r),
        s = shutdown_signal() => {
            log_info!("{s}: shutting down (no new connections; requests in flight finish)");
            None
        }
    };
    let result = match served {
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(ServeError::Io(format!("server failed: {e}"))),
        Some(Err(e)) => Err(ServeError::Io(format!("server task failed: {e}"))),
        None => {
            let _ = stop_tx.send(true);
            if let Some(m) = &mcp {
                // Long-lived MCP streams end now; upstream servers are shut down cleanly.
                m.shutdown().await;
            }
            let grace = Duration::from_millis(config.server.shutdown_grace_ms);
            match tokio::time::timeout(grace, &mut server).await {
                Ok(_) => {}
                Err(_) => {
                    log_warn!("requests still in flight after {} ms: closing them", grace.as_millis());
                    server.abort();
                }
            }
            Ok(())
        }
    };
    ticker.abort();
    let k = kernel.clone();
    let t0 = Instant::now();
    match tokio::task::spawn_blocking(move || k.checkpoint()).await {
        Ok(Ok(Some((pos, hash)))) => log_info!(
            "final CHECKPOINT at record {pos} ({hash}) in {} ms",
            t0.elapsed().as_millis()
        ),
        Ok(Ok(None)) => log_info!("no record since the last CHECKPOINT: none written"),
        Ok(Err(e)) => log_error!("final CHECKPOINT failed: {e}"),
        Err(e) => log_error!("final CHECKPOINT task failed: {e}"),
    }
    log_info!("stopped");
    result
}

/// Runs the kernel's housekeeping every `every`. Errors are logged (at most one line
/// per distinct message every 30 s) and shown by `/healthz`.
async fn tick_loop(kernel: Arc<Kernel>, state: AppState, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_logged: Option<(Instant, String)> = None;
    loop {
        interval.tick().await;
        let k = kernel.clone();
        let r = tokio::task::spawn_blocking(move || k.tick()).await;
        let message = match r {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("tick task failed: {e}"),
        };
        state.note_error(&message);
        let quiet = last_logged
            .as_ref()
            .is_some_and(|(at, m)| *m == message && at.elapsed() < Duration::from_secs(30));
        if !quiet {
            log_error!("kernel housekeeping failed: {message}");
            last_logged = Some((Instant::now(), message));
        }
    }
}

/// Resolves on ctrl-c or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            core::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => core::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => "interrupt",
        () = term => "SIGTERM",
    }
}
