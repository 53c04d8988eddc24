//! The stdio transport on both sides: newline-delimited JSON-RPC on a child server's
//! stdin/stdout (upstream), and on the proxy's own stdin/stdout (client).
//!
//! Clean shutdown of a child (spec: stdio transport, shutdown): close its stdin, wait,
//! then SIGTERM, wait, then SIGKILL. Its stderr is passed through to ours.

use core::time::Duration;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::bridge::{Bridge, ToClient};
use crate::log::{log_info, log_warn};

/// How long a child may take to exit after its stdin closed, and after SIGTERM.
pub const CHILD_GRACE: Duration = Duration::from_secs(2);

/// One line of at most `max` bytes (without the newline). `Ok(None)` at end of input;
/// `Err(n)` for a line of more than `max` bytes (consumed and discarded; n bytes seen).
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *r).take(limit).read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(Ok(buf)));
    }
    if buf.len() <= max {
        // The last line, without a newline.
        return Ok(Some(Ok(buf)));
    }
    // Too long: skip to the end of the line.
    let mut seen = buf.len();
    loop {
        buf.clear();
        let n = (&mut *r).take(64 << 10).read_until(b'\n', &mut buf).await?;
        seen = seen.saturating_add(n);
        if n == 0 || buf.last() == Some(&b'\n') {
            return Ok(Some(Err(seen)));
        }
    }
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, v: &Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Spawns the upstream server `argv` and relays between it and `bridge` until `rx`
/// yields the close sentinel (`Value::Null`) or ends (then a clean shutdown) or the
/// child exits (then the bridge is told).
pub fn spawn_child(argv: &[String], env: &BTreeMap<String, String>) -> Result<Child, String> {
    let (prog, args) = argv.split_first().ok_or("empty server command")?;
    Command::new(prog)
        .args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {prog:?}: {e}"))
}

/// Relays between a spawned child and a bridge (see [`spawn_child`]).
pub async fn run_child(mut child: Child, bridge: Arc<Bridge>, mut rx: mpsc::UnboundedReceiver<Value>, max: usize) {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bridge.upstream_closed("the child has no stdin/stdout").await;
        return;
    };
    let reader_bridge = bridge.clone();
    let mut reader = tokio::spawn(async move {
        let mut out = BufReader::new(stdout);
        loop {
            match read_line(&mut out, max).await {
                Ok(Some(Ok(line))) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    reader_bridge.from_upstream_bytes(&line, None).await;
                }
                Ok(Some(Err(n))) => {
                    // Which request it answered cannot be known: the server is dropped
                    // (every pending request gets an error).
                    let why = format!("a message of {n} bytes exceeds max_message_bytes");
                    reader_bridge.upstream_violation(&why).await;
                    return why;
                }
                Ok(None) => return "its stdout closed".to_owned(),
                Err(e) => return format!("reading its stdout failed: {e}"),
            }
        }
    });
    let mut clean = false;
    let why = loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Value::Null) | None => { clean = true; break "shutdown".to_owned(); }
                Some(v) => {
                    if let Err(e) = write_line(&mut stdin, &v).await {
                        break format!("writing its stdin failed: {e}");
                    }
                }
            },
            r = &mut reader => {
                break r.unwrap_or_else(|e| format!("reader failed: {e}"));
            }
        }
    };
    drop(stdin);
    let status = stop_child(&mut child).await;
    if clean {
        reader.abort();
    }
    bridge.upstream_closed(&format!("{why}; {status}")).await;
}

/// Closes nothing itself: waits for the child to exit after its stdin closed, then
/// SIGTERM, then SIGKILL. Returns how it ended.
pub async fn stop_child(child: &mut Child) -> String {
    if let Ok(Ok(s)) = tokio::time::timeout(CHILD_GRACE, child.wait()).await {
        return format!("server exited: {s}");
    }
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if let Ok(Ok(s)) = tokio::time::timeout(CHILD_GRACE, child.wait()).await {
            return format!("server stopped by SIGTERM: {s}");
        }
    }
    let _ = child.kill().await;
    "server killed (SIGKILL)".to_owned()
}

/// Our stdin, as the runtime reads it.
pub type StdIn = Box<dyn AsyncRead + Unpin + Send>;
/// Our stdout, as the runtime writes it.
pub type StdOut = Box<dyn AsyncWrite + Unpin + Send>;

/// Restores blocking mode on our stdin and stdout when dropped (their file
/// descriptions may be shared with the process that started us).
#[derive(Debug, Default)]
pub struct RestoreBlocking(Vec<std::os::fd::OwnedFd>);

impl Drop for RestoreBlocking {
    fn drop(&mut self) {
        for fd in self.0.drain(..) {
            // `set_nonblocking` is ioctl(FIONBIO), which applies to any descriptor
            // (pipes too), not only to sockets.
            let _ = std::os::unix::net::UnixStream::from(fd).set_nonblocking(false);
        }
    }
}

/// Our stdin and stdout as async streams. When they are pipes or Unix sockets (as a
/// client that spawns us makes them), the runtime reads and writes them directly
/// (non-blocking, through its reactor: no thread hop per message); otherwise (a
/// terminal, a file) two threads of their own feed in-memory streams. Call inside the
/// runtime; keep the returned guard until the streams are dropped.
pub fn std_streams(rt: tokio::runtime::Handle) -> (StdIn, StdOut, RestoreBlocking) {
    use std::os::fd::AsFd as _;
    let mut guard = RestoreBlocking::default();
    let input = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| direct(fd, &mut guard, true));
    let output = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| direct(fd, &mut guard, false));
    match (input, output) {
        (Some(Direct::In(i)), Some(Direct::Out(o))) => (i, o, guard),
        (i, o) => {
            drop(i);
            drop(o);
            drop(guard);
            let (i, o) = std_threads(rt);
            (Box::new(i), Box::new(o), RestoreBlocking::default())
        }
    }
}

enum Direct {
    In(StdIn),
    Out(StdOut),
}

/// `fd` registered with the runtime if it is a pipe or a Unix stream socket.
fn direct(fd: std::os::fd::OwnedFd, guard: &mut RestoreBlocking, read: bool) -> Option<Direct> {
    use std::os::unix::fs::FileTypeExt as _;
    let file = std::fs::File::from(fd);
    let kind = file.metadata().ok()?.file_type();
    let restore = file.try_clone().ok()?.into();
    if kind.is_fifo() {
        // (`from_file` checks the access mode and sets O_NONBLOCK.)
        let d = if read {
            Direct::In(Box::new(tokio::net::unix::pipe::Receiver::from_file(file).ok()?))
        } else {
            Direct::Out(Box::new(tokio::net::unix::pipe::Sender::from_file(file).ok()?))
        };
        guard.0.push(restore);
        return Some(d);
    }
    if kind.is_socket() {
        let s = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        // Not a Unix socket (say, a TCP connection from inetd): the threads serve it.
        s.local_addr().ok()?;
        s.set_nonblocking(true).ok()?;
        guard.0.push(restore);
        let s = tokio::net::UnixStream::from_std(s).ok()?;
        return Some(if read {
            Direct::In(Box::new(s))
        } else {
            Direct::Out(Box::new(s))
        });
    }
    None
}

/// Our stdin and stdout as in-memory async streams fed by two threads of their own
/// (tokio's `Stdin`/`Stdout` hand every read and write to the blocking pool: a
/// thread hop per message). For a terminal or a file.
pub fn std_threads(rt: tokio::runtime::Handle) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
    use std::io::{Read as _, Write as _};
    let (mut to_proxy, input) = tokio::io::duplex(1 << 16);
    let (output, mut from_proxy) = tokio::io::duplex(1 << 16);
    let rt2 = rt.clone();
    let _ = std::thread::Builder::new().name("mcp-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    if rt.block_on(to_proxy.write_all(chunk)).is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `to_proxy` is the end of input.
    });
    let _ = std::thread::Builder::new().name("mcp-stdout".into()).spawn(move || {
        let mut stdout = std::io::stdout().lock();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rt2.block_on(from_proxy.read(&mut buf)) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    if stdout.write_all(chunk).and_then(|()| stdout.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    (input, output)
}

/// Batches in flight: the answers of each are held until all have come.
#[derive(Debug, Default)]
struct Batches {
    next: u64,
    by_key: std::collections::HashMap<String, u64>,
    open: std::collections::HashMap<u64, (usize, Vec<Value>)>,
}

impl Batches {
    fn open(&mut self, mut keys: Vec<String>) {
        keys.sort();
        keys.dedup();
        // A key already waiting (a duplicate id in flight) is refused by the bridge
        // without an answer to hold: such a batch is not grouped.
        if keys.is_empty() || keys.iter().any(|k| self.by_key.contains_key(k)) {
            return;
        }
        self.next = self.next.saturating_add(1);
        let n = self.next;
        for k in &keys {
            self.by_key.insert(k.clone(), n);
        }
        self.open.insert(n, (keys.len(), Vec::new()));
    }

    /// What to write for `m`: itself, nothing yet (held for its batch), or the batch.
    fn route(&mut self, m: ToClient) -> Option<Value> {
        let is_answer = m.msg.get("result").is_some() || m.msg.get("error").is_some();
        let batch = m
            .related
            .as_ref()
            .filter(|_| is_answer)
            .and_then(|k| self.by_key.remove(k));
        let Some(n) = batch else { return Some(m.msg) };
        let (left, answers) = self.open.get_mut(&n)?;
        answers.push(m.msg);
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.open.remove(&n).map(|(_, a)| Value::Array(a))
    }
}

/// The client side on our own stdin/stdout: reads messages until end of input (or
/// `stop`), then shuts the upstream down cleanly. Returns when both sides are done.
#[allow(
    clippy::too_many_arguments,
    reason = "the two sides, their channels and the stop signal, wired once by run_stdio"
)]
pub async fn serve_stdio<R, W>(
    bridge: Arc<Bridge>,
    up_tx: mpsc::UnboundedSender<Value>,
    mut client_rx: mpsc::UnboundedReceiver<ToClient>,
    input: R,
    mut output: W,
    upstream: tokio::task::JoinHandle<()>,
    max: usize,
    stop: impl core::future::Future<Output = &'static str>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // The answers to a batch (2025-03-26) go out together, as one array.
    let batches = Arc::new(std::sync::Mutex::new(Batches::default()));
    let writer_batches = batches.clone();
    let writer = tokio::spawn(async move {
        while let Some(m) = client_rx.recv().await {
            let out = {
                let mut b = writer_batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                b.route(m)
            };
            if let Some(v) = out {
                if write_line(&mut output, &v).await.is_err() {
                    break;
                }
            }
        }
    });
    let reader_bridge = bridge.clone();
    let reading = async move {
        let mut input = BufReader::new(input);
        loop {
            match read_line(&mut input, max).await {
                Ok(Some(Ok(line))) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                        if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&line) {
                            let keys: Vec<String> = items
                                .iter()
                                .filter(|i| i.get("method").is_some())
                                .filter_map(|i| i.get("id").map(super::bridge::id_key))
                                .collect();
                            batches
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .open(keys);
                        }
                    }
                    reader_bridge.from_client_bytes(&line);
                }
                Ok(Some(Err(n))) => {
                    log_warn!("MCP stdio: a message of {n} bytes exceeds max_message_bytes: refused");
                    reader_bridge.refuse_oversized(n);
                }
                Ok(None) => return "end of input",
                Err(_) => return "input error",
            }
        }
    };
    let why = tokio::select! {
        w = reading => w,
        s = stop => s,
    };
    log_info!("MCP stdio: {why}: shutting the upstream down");
    bridge.client_closed();
    // Let calls in flight finish for a moment, then close the child's stdin.
    let mut upstream = upstream;
    let _ = up_tx.send(Value::Null);
    if tokio::time::timeout(CHILD_GRACE.saturating_mul(3), &mut upstream)
        .await
        .is_err()
    {
        upstream.abort();
    }
    bridge.drain(Duration::from_secs(10)).await;
    drop(bridge);
    drop(up_tx);
    let _ = tokio::time::timeout(Duration::from_millis(300), writer).await;
}
