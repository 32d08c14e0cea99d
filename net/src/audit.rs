//! `mcp-audit --listen ADDR --upstream ADDR -- SERVER ARGS...`: the gator's MCP endpoint
//! as the agent reaches it. service-gator logs no request and no refusal (a refused
//! tool call goes back to the agent as the tool's error, and nothing else sees it), so
//! devaipod puts this relay in front of it, in the gator's container: it starts the
//! server (SERVER ARGS..., the image's entrypoint and service-gator's arguments, which
//! listen on ADDR of `--upstream`), forwards every HTTP request to it and every answer
//! back, streamed, and logs each MCP request and its outcome on stderr, beside the
//! server's own lines (`devaipod logs NAME --container gator`). It exits with the
//! server's exit status, and passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to it.
//!
//! The agent's nftables rules let it reach the gator's uid on the relay's port only, so
//! it cannot go around the log (the server's own port answers the relay, the workspace
//! and nobody else of the pod's users that are confined).
//!
//! The lines, in service-gator's own compact format (level, then the message):
//!
//! ```text
//!  INFO devaipod-audit: listening address=ADDR upstream=ADDR server_pid=N
//!  INFO devaipod-audit: mcp request session=S id=ID method="tools/call" tool="T" arguments={...}
//!  INFO devaipod-audit: mcp result session=S id=ID method="M" tool="T" outcome=ok ms=N
//!  WARN devaipod-audit: mcp result session=S id=ID method="M" tool="T" outcome=refused|tool-error|error|unanswered|not-inspected ms=N text="..."
//!  WARN devaipod-audit: mcp answer session=S method="M" status=CODE text="..."
//!  INFO devaipod-audit: mcp stream opened|closed session=S
//!  INFO devaipod-audit: mcp session ended session=S status=CODE
//!  INFO devaipod-audit: mcp server message session=S method="M"
//!  INFO devaipod-audit: http METHOD PATH status=CODE
//!  WARN devaipod-audit: upstream failed path=PATH error="..."
//! ```
//!
//! S is the first 8 characters of the session id (`-` before `initialize` answers).
//! Every text that comes from the agent or the server (ids, names, arguments, error
//! texts) is quoted with every character outside printable ASCII escaped, so a line is
//! one line and holds no terminal control; long strings are cut (`<N bytes>` for an
//! argument over 160 bytes, a result's text at 300). Headers are never logged: the
//! agent holds no token, and the server's answers carry none.
//! `outcome=refused` is a tool error whose text is one of service-gator's scope
//! refusals ("... not allowed ...", "... permission not granted ...");
//! `tool-error` any other tool error, `error` a JSON-RPC error (unknown tool, bad
//! parameters), `unanswered` a request whose answer ended without it,
//! `not-inspected` an answer too large to read (it is still passed on).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::upstream::{self, BoxError, ProxyBody};

/// The largest request the relay reads (and so forwards); service-gator (rmcp) reads
/// a body whole without a limit of its own.
const MAX_REQUEST: usize = 2 * 1024 * 1024;
/// The time a request's body has to arrive, once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The most messages of a JSON-RPC batch the relay passes on (service-gator's rmcp
/// 0.14 refuses batches; each message is a line).
const MAX_BATCH: usize = 16;
/// A line of the server's output longer than this is cut.
const MAX_SERVER_LINE: usize = 16 * 1024;
/// What the relay puts before each line of the server's output, so that no line the
/// server prints (it logs text of the agent's, newlines included) reads as the relay's.
const SERVER_PREFIX: &str = "service-gator | ";
/// The most of one answer (an SSE event, or a JSON body) the relay reads to log its
/// outcome; beyond it the answer is passed on unread.
const MAX_INSPECT: usize = 1024 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// The time to reach the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent's time to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Argument strings longer than this are logged as their length.
const MAX_ARG: usize = 160;
/// A result's text is cut here.
const MAX_TEXT: usize = 300;
/// An `arguments={...}` summary is cut here.
const MAX_ARGUMENTS: usize = 1200;

/// Runs the server and the relay in front of it; the exit status is the server's.
pub(crate) fn run(listen: SocketAddr, upstream: SocketAddr, server: &[OsString]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log("ERROR", &format!("starting the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let Some((program, args)) = server.split_first() else {
            log("ERROR", "no server command after `--`");
            return ExitCode::from(2);
        };
        // Listen first: a port taken by another process of the pod ends the gator at
        // once, before the server holds its tokens.
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                log("ERROR", &format!("cannot listen on {listen}: {e}"));
                return ExitCode::FAILURE;
            }
        };
        // The signals are ours before the server exists: one that comes at once is
        // passed on, never the default (which would end the relay and leave the server).
        let signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                log("ERROR", &format!("handling signals: {e}"));
                return ExitCode::FAILURE;
            }
        };
        let mut child = match tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                log(
                    "ERROR",
                    &format!("cannot run {}: {e}", quote(&program.to_string_lossy())),
                );
                return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                });
            }
        };
        let pid = child.id().unwrap_or(0);
        let address = listener.local_addr().map_or(listen, |a| a);
        log(
            "INFO",
            &format!("listening address={address} upstream={upstream} server_pid={pid}"),
        );
        let pumps = [
            child
                .stdout
                .take()
                .map(|o| tokio::spawn(pump(o, Out::Stdout))),
            child
                .stderr
                .take()
                .map(|e| tokio::spawn(pump(e, Out::Stderr))),
        ];
        tokio::spawn(serve(listener, Relay::new(upstream)));
        let status = match signals.forward_until_exit(&mut child, pid).await {
            Ok(s) => s,
            Err(e) => {
                log("ERROR", &format!("waiting for the server: {e}"));
                return ExitCode::FAILURE;
            }
        };
        // Its last lines (why it ended) before the relay ends; a process it started
        // may hold its output open, hence the bound.
        for p in pumps.into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        ExitCode::from(u8::try_from(code).unwrap_or(1))
    })
}

/// The signals the relay passes on to the server.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    async fn forward_until_exit(
        mut self,
        child: &mut tokio::process::Child,
        pid: u32,
    ) -> std::io::Result<std::process::ExitStatus> {
        let pass = |sig: libc::c_int| {
            if let Ok(pid) = libc::pid_t::try_from(pid)
                && pid > 0
            {
                // SAFETY: kill(2) with our own child's pid and a signal number; no memory.
                unsafe { libc::kill(pid, sig) };
            }
        };
        loop {
            tokio::select! {
                status = child.wait() => return status,
                _ = self.term.recv() => pass(libc::SIGTERM),
                _ = self.int.recv() => pass(libc::SIGINT),
                _ = self.hup.recv() => pass(libc::SIGHUP),
                _ = self.quit.recv() => pass(libc::SIGQUIT),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
}

/// The server's output, line by line, each after [`SERVER_PREFIX`] with its control
/// and non-ASCII characters escaped (`\u001b`), cut at [`MAX_SERVER_LINE`].
async fn pump(from: impl AsyncRead + Unpin, to: Out) {
    let mut r = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        let Ok((n, cut)) = read_line_capped(&mut r, &mut line, MAX_SERVER_LINE).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let text = server_line(&line, cut);
        use std::io::Write;
        let _ = match to {
            Out::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Out::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

/// Reads up to a newline (dropped) into `line`, keeping at most `max` bytes; the bytes
/// read, and whether the line was cut.
async fn read_line_capped(
    r: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let (mut total, mut cut) = (0, false);
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((total, cut));
        }
        let (take, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        cut |= take > room;
        let used = if end { take + 1 } else { take };
        r.consume(used);
        total += used;
        if end {
            return Ok((total, cut));
        }
    }
}

/// One line of the server's, as the relay writes it.
fn server_line(line: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let mut out = String::with_capacity(SERVER_PREFIX.len() + text.len() + 1);
    out.push_str(SERVER_PREFIX);
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            '\t' => out.push_str("\\t"),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    if cut {
        out.push_str("...(cut)");
    }
    out.push('\n');
    out
}

/// One line on stderr, in service-gator's compact format.
fn log(level: &str, message: &str) {
    use std::io::Write;
    let line = format!(
        "{level:>5} devaipod-audit: {}\n",
        message.replace(['\r', '\n'], " ")
    );
    #[cfg(test)]
    tests::captured(&line);
    // A closed stderr must not stop the relay.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// What every connection shares: where the server is, and the ids of each session's
/// requests still in flight.
pub(crate) struct Relay {
    upstream: SocketAddr,
    /// Session id -> request ids awaiting their answer. rmcp routes an answer by its
    /// id alone: a second request with the id of one in flight would take the first
    /// one's answer, so the relay refuses it.
    inflight: Mutex<HashMap<String, HashSet<String>>>,
}

impl Relay {
    pub(crate) fn new(upstream: SocketAddr) -> Arc<Self> {
        Arc::new(Relay {
            upstream,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Registers `ids` of `session` as in flight; the first already in flight, if any.
    fn claim(self: &Arc<Self>, session: &str, ids: &[String]) -> Result<Claim, String> {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let set = map.entry(session.to_string()).or_default();
        if let Some(dup) = ids.iter().find(|id| set.contains(*id)) {
            return Err(dup.clone());
        }
        set.extend(ids.iter().cloned());
        Ok(Claim {
            relay: self.clone(),
            session: session.to_string(),
            ids: ids.to_vec(),
        })
    }
}

/// Request ids in flight, released when their exchange is over.
struct Claim {
    relay: Arc<Relay>,
    session: String,
    ids: Vec<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut map = self
            .relay
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(set) = map.get_mut(&self.session) {
            for id in &self.ids {
                set.remove(id);
            }
            if set.is_empty() {
                map.remove(&self.session);
            }
        }
    }
}

/// Serves the agent's connections.
pub(crate) async fn serve(listener: TcpListener, relay: Arc<Relay>) {
    crate::accept::accept_each(
        &listener,
        MAX_CONNECTIONS,
        |e| {
            log(
                "WARN",
                &format!("accept failed error={}", quote(&e.to_string())),
            )
        },
        |stream| {
            let relay = relay.clone();
            async move {
                let service = service_fn(move |req| {
                    let relay = relay.clone();
                    async move { Ok::<_, Infallible>(handle(req, relay).await) }
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        },
    )
    .await;
}

/// The relay's own answer (it never reached the server).
fn own_answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Whether the request is MCP's endpoint (service-gator's router nests it at `/mcp`:
/// `/mcp` and `/mcp/...`, on the raw path).
fn is_mcp(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/")
}

/// What the exchange with the server needs to log its answer.
struct Exchange {
    path: String,
    mcp: bool,
    method: Method,
    session: Option<String>,
    calls: Calls,
    started: Instant,
    /// The request ids this exchange holds in flight.
    claim: Option<Claim>,
}

async fn handle(req: Request<Incoming>, relay: Arc<Relay>) -> Response<ProxyBody> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    // Hop-by-hop headers go first, so the session the log names is the one the server
    // is sent (`Connection: mcp-session-id` would strip it on the way).
    upstream::strip_hop_by_hop(&mut parts.headers);
    let path = parts.uri.path().to_string();
    let mcp = is_mcp(&path);
    let full_session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let session = full_session.as_deref().map(short_session);
    let sid = session.clone().unwrap_or_else(|| "-".into());
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_REQUEST).collect())
        .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            log(
                "WARN",
                &format!(
                    "mcp request refused session={sid} path={} reason=\"over {} MiB\"",
                    quote(&cut(&path, 200)),
                    MAX_REQUEST / 1024 / 1024
                ),
            );
            return own_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "devaipod: a request over {} MiB is not passed on to service-gator",
                    MAX_REQUEST / 1024 / 1024
                ),
            );
        }
        Ok(Err(_)) => {
            return own_answer(
                StatusCode::BAD_REQUEST,
                "devaipod: the request body broke off",
            );
        }
        Err(_) => {
            log(
                "WARN",
                &format!(
                    "mcp request refused session={sid} path={} reason=\"its body took over {} s\"",
                    quote(&cut(&path, 200)),
                    BODY_TIMEOUT.as_secs()
                ),
            );
            return own_answer(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "devaipod: a request body must arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            );
        }
    };
    // Every POST is read, whatever its path: a JSON-RPC request to another path
    // (`/mcp/`, `//mcp`, `/%6dcp`, ...) is logged as well, with its path, in case the
    // server's router takes it for MCP.
    let parsed = if parts.method == Method::POST {
        Parsed::of(&body, mcp)
    } else {
        Parsed::default()
    };
    if parsed.messages > MAX_BATCH {
        log(
            "WARN",
            &format!(
                "mcp request refused session={sid} path={} reason=\"a batch of {} messages\"",
                quote(&cut(&path, 200)),
                parsed.messages
            ),
        );
        return own_answer(
            StatusCode::BAD_REQUEST,
            &format!(
                "devaipod: a JSON-RPC batch of more than {MAX_BATCH} messages is not passed on to service-gator"
            ),
        );
    }
    let elsewhere = if mcp || parsed.is_empty() {
        String::new()
    } else {
        format!(" path={}", quote(&cut(&path, 200)))
    };
    for c in &parsed.calls.0 {
        log("INFO", &format!("{}{elsewhere}", c.request_line(&sid)));
    }
    for n in &parsed.notes {
        log("INFO", &format!("mcp {n} session={sid}{elsewhere}"));
    }
    // rmcp routes answers by id: one id in flight twice in a session is refused.
    let claim = match &full_session {
        Some(full) if !parsed.calls.0.is_empty() => {
            let ids: Vec<String> = parsed.calls.0.iter().map(|c| c.id.clone()).collect();
            match relay.claim(full, &ids) {
                Ok(c) => Some(c),
                Err(dup) => {
                    log(
                        "WARN",
                        &format!(
                            "mcp request refused session={sid} id={dup} reason=\"a request with this id is in flight\""
                        ),
                    );
                    return own_answer(
                        StatusCode::CONFLICT,
                        &format!(
                            "devaipod: request id {dup} is already in flight in this session; use another id"
                        ),
                    );
                }
            }
        }
        _ => None,
    };
    // A GET's resumption (`Last-Event-ID`) would move the answers of requests in flight
    // from their own streams to this one: the relay opens a new stream instead.
    if parts.method == Method::GET && parts.headers.remove("last-event-id").is_some() {
        log(
            "INFO",
            &format!("mcp stream resumption not passed on session={sid} (a new stream is opened)"),
        );
    }
    let exchange = Exchange {
        path,
        mcp,
        method: parts.method.clone(),
        session,
        calls: parsed.calls,
        started,
        claim,
    };
    let forwarded = Request::from_parts(parts, Full::new(body).map_err(|e| match e {}).boxed());
    // The exchange runs on its own: an agent that hangs up does not end it, so the
    // outcome of what it asked is logged all the same.
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(exchange.run(forwarded, relay.upstream, head_tx));
    match head_rx.await {
        Ok(resp) => resp,
        Err(_) => own_answer(
            StatusCode::BAD_GATEWAY,
            "devaipod: the relay lost its exchange with service-gator",
        ),
    }
}

impl Exchange {
    async fn run(
        self,
        req: Request<ProxyBody>,
        upstream: SocketAddr,
        head: tokio::sync::oneshot::Sender<Response<ProxyBody>>,
    ) {
        let path = &self.path;
        let answer = match forward(req, upstream).await {
            Ok(a) => a,
            Err(e) => {
                // The readiness probe polls /healthz while the server starts: not logged.
                if path != "/healthz" {
                    log(
                        "WARN",
                        &format!(
                            "upstream failed path={} error={}",
                            quote(&cut(path, 200)),
                            quote(&e)
                        ),
                    );
                }
                let _ = head.send(own_answer(
                    StatusCode::BAD_GATEWAY,
                    &format!("devaipod: service-gator did not answer on {upstream}: {e}"),
                ));
                return;
            }
        };
        let (mut parts, body) = answer.into_parts();
        upstream::strip_hop_by_hop(&mut parts.headers);
        let status = parts.status;
        // `initialize` is answered with the session's id.
        let sid = self
            .session
            .clone()
            .or_else(|| {
                parts
                    .headers
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(short_session)
            })
            .unwrap_or_else(|| "-".into());
        let kind = content_kind(parts.headers.get(header::CONTENT_TYPE));
        let method = self.method.clone();
        let has_calls = !self.calls.0.is_empty();
        let watcher = match method {
            Method::POST if has_calls && !status.is_success() => {
                for c in &self.calls.0 {
                    log(
                        "WARN",
                        &format!(
                            "mcp answer session={sid} method={} status={}",
                            quote(&c.method),
                            status.as_u16()
                        ),
                    );
                }
                None
            }
            Method::POST if has_calls => {
                Some(Watcher::new(sid.clone(), kind, self.calls, self.started))
            }
            // Notifications (and answers of the agent's to the server) taken: said above.
            Method::POST if self.mcp && status.is_success() => None,
            Method::GET if status.is_success() && kind == Kind::Events => {
                log("INFO", &format!("mcp stream opened session={sid}"));
                Some(Watcher::new(sid.clone(), kind, Calls::default(), self.started).stream())
            }
            Method::DELETE if self.mcp => {
                log(
                    "INFO",
                    &format!("mcp session ended session={sid} status={}", status.as_u16()),
                );
                None
            }
            _ => {
                if path != "/healthz" {
                    log(
                        "INFO",
                        &format!(
                            "http {method} {} status={}",
                            quote(&cut(path, 200)),
                            status.as_u16()
                        ),
                    );
                }
                None
            }
        };
        let Some(mut watcher) = watcher else {
            let _ = head.send(Response::from_parts(
                parts,
                body.map_err(BoxError::from).boxed(),
            ));
            return;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut agent = head
            .send(Response::from_parts(parts, Channel(rx).boxed()))
            .is_ok()
            .then_some(tx);
        let mut body = body;
        let deadline = tokio::time::Instant::now() + upstream::IDLE_LIMIT;
        loop {
            let next = body.frame();
            let frame = match &agent {
                // The agent is there: the answer takes as long as it takes, and the
                // session's stream ends as soon as the agent leaves it (not at the
                // server's next keep-alive).
                Some(tx) => tokio::select! {
                    f = next => f,
                    _ = tx.closed(), if watcher.stream => {
                        watcher.finish("the agent closed it");
                        break;
                    }
                },
                None => match tokio::time::timeout_at(deadline, next).await {
                    Ok(f) => f,
                    Err(_) => {
                        watcher
                            .finish("the agent left, and the answer did not end within 15 minutes");
                        break;
                    }
                },
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        watcher.feed(data);
                    }
                    if let Some(tx) = &agent
                        && tx.send(Ok(frame)).await.is_err()
                    {
                        agent = None;
                        if watcher.stream {
                            watcher.finish("the agent closed it");
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    watcher.finish("the server's answer broke off");
                    if let Some(tx) = &agent {
                        let _ = tx.send(Err(e.into())).await;
                    }
                    break;
                }
                None => {
                    watcher.finish(match (&agent, watcher.stream) {
                        (Some(_), true) => "the server ended it",
                        (Some(_), false) => "the answer ended",
                        (None, _) => "the answer ended after the agent left",
                    });
                    break;
                }
            }
        }
        drop(self.claim);
    }
}

/// An answer's frames on their way to the agent, from its exchange.
struct Channel(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().0.poll_recv(cx)
    }
}

async fn forward(
    req: Request<ProxyBody>,
    upstream: SocketAddr,
) -> Result<Response<Incoming>, String> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Err(_) => {
            return Err(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    upstream::send_once(Box::new(stream), req)
        .await
        .map_err(|r| r.message)
}

/// The first 8 characters of a session id, quoted when they are not plain.
fn short_session(id: &str) -> String {
    let short: String = id.chars().take(8).collect();
    if short.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !short.is_empty() {
        short
    } else {
        quote(&short)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Events,
    Json,
    Other,
}

fn content_kind(v: Option<&HeaderValue>) -> Kind {
    let t = v
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if t.starts_with("text/event-stream") {
        Kind::Events
    } else if t.starts_with("application/json") {
        Kind::Json
    } else {
        Kind::Other
    }
}

/// `text` as a double-quoted string, every character outside printable ASCII (and `"`
/// and `\`) escaped: one line, no terminal control.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    escape_into(&mut out, text);
    out.push('"');
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => {
                // JSON's way: a surrogate pair.
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
}

/// A string cut to `max` bytes (at a character boundary), saying how long it was.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &text[..end], text.len())
}

/// A tool call's arguments as compact JSON, long strings replaced by their length,
/// every non-ASCII character escaped (still JSON), cut at `MAX_ARGUMENTS`.
fn summarize(v: &Value) -> String {
    fn walk(v: &Value, depth: usize, out: &mut String) {
        match v {
            Value::String(s) if s.len() > MAX_ARG => {
                out.push_str(&format!("\"<{} bytes>\"", s.len()));
            }
            Value::String(s) => {
                out.push('"');
                escape_into(out, s);
                out.push('"');
            }
            Value::Array(items) if depth >= 3 => {
                out.push_str(&format!("\"<{} items>\"", items.len()))
            }
            Value::Object(m) if depth >= 3 => out.push_str(&format!("\"<{} fields>\"", m.len())),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    walk(item, depth + 1, out);
                    if out.len() > MAX_ARGUMENTS {
                        return;
                    }
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (i, (k, item)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    escape_into(out, &cut(k, MAX_ARG));
                    out.push_str("\":");
                    walk(item, depth + 1, out);
                    if out.len() > MAX_ARGUMENTS {
                        return;
                    }
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    walk(v, 0, &mut out);
    if out.len() > MAX_ARGUMENTS {
        let mut end = MAX_ARGUMENTS;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...(cut)");
    }
    out
}

/// One JSON-RPC request of the agent's (notifications are not logged).
#[derive(Debug, Clone, PartialEq)]
struct Call {
    /// The id as JSON text (`3`, `"a"`), quoted for the log.
    id: String,
    method: String,
    /// `tools/call`'s tool.
    tool: Option<String>,
    arguments: Option<String>,
}

impl Call {
    fn request_line(&self, session: &str) -> String {
        let mut line = format!(
            "mcp request session={session} id={} method={}",
            self.id,
            quote(&self.method)
        );
        if let Some(t) = &self.tool {
            line += &format!(" tool={}", quote(t));
        }
        if let Some(a) = &self.arguments {
            line += &format!(" arguments={a}");
        }
        line
    }

    fn names(&self) -> String {
        let mut s = format!("method={}", quote(&self.method));
        if let Some(t) = &self.tool {
            s += &format!(" tool={}", quote(t));
        }
        s
    }
}

/// The id as the log shows it: a number as it is, anything else quoted.
fn id_text(id: &Value) -> String {
    match id {
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(&cut(s, 64)),
        other => quote(&cut(&other.to_string(), 64)),
    }
}

/// The requests of one POST: one message, or a batch.
#[derive(Debug, Default)]
struct Calls(Vec<Call>);

impl Calls {
    #[cfg(test)]
    fn parse(body: &[u8], mcp: bool) -> Self {
        Parsed::of(body, mcp).calls
    }
}

/// What a POST's body holds: its requests, what the log says of its notifications,
/// and how many messages it has.
#[derive(Debug, Default)]
struct Parsed {
    messages: usize,
    calls: Calls,
    notes: Vec<String>,
}

impl Parsed {
    /// For the MCP endpoint (`mcp`), a body that is not JSON is one entry too;
    /// elsewhere only JSON-RPC is.
    fn of(body: &[u8], mcp: bool) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            if !mcp {
                return Parsed::default();
            }
            return Parsed {
                messages: 1,
                calls: Calls(vec![Call {
                    id: "-".into(),
                    method: "(not JSON)".into(),
                    tool: None,
                    arguments: None,
                }]),
                notes: Vec::new(),
            };
        };
        let items = match v {
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut out = Parsed {
            messages: items.len(),
            ..Parsed::default()
        };
        for m in &items {
            let Some(method) = m.get("method").and_then(Value::as_str) else {
                continue;
            };
            let params = m.get("params");
            let Some(id) = m.get("id") else {
                // A notification. Its cancellation of a request is what matters: the
                // request's answer then never comes.
                match method {
                    "notifications/initialized" => {}
                    "notifications/cancelled" => out.notes.push(format!(
                        "cancel id={}",
                        params
                            .and_then(|p| p.get("requestId"))
                            .map_or_else(|| "-".to_string(), id_text)
                    )),
                    other => out
                        .notes
                        .push(format!("notification method={}", quote(&cut(other, 128)))),
                }
                continue;
            };
            let tool = (method == "tools/call")
                .then(|| params.and_then(|p| p.get("name")).and_then(Value::as_str))
                .flatten()
                .map(|t| cut(t, 128));
            let arguments = (method == "tools/call")
                .then(|| params.and_then(|p| p.get("arguments")).map(summarize))
                .flatten();
            out.calls.0.push(Call {
                id: id_text(id),
                method: cut(method, 128),
                tool,
                arguments,
            });
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.calls.0.is_empty() && self.notes.is_empty()
    }
}

/// service-gator's words for a scope refusal (src/mcp.rs, src/services: "Read access
/// not allowed for repository: R", "push-new-branch permission not granted for
/// github:R", "... is not granted for that repo", "Operation not allowed: ...",
/// "GraphQL mutations are not supported via api ...", "This endpoint requires ...",
/// "No configured ... host has access to ...").
fn is_refusal(text: &str) -> bool {
    [
        "not allowed",
        "not granted",
        "not supported via",
        "This endpoint requires",
        "has access to",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// Reads an answer as it streams past and logs the outcome of each request it answers.
struct Watcher {
    session: String,
    kind: Kind,
    pending: Vec<Call>,
    started: Instant,
    /// The GET stream: its server messages are logged, its end too.
    stream: bool,
    buf: Vec<u8>,
    /// The current SSE event's data lines.
    data: Vec<u8>,
    /// The current event (or JSON body) went over `MAX_INSPECT`.
    overflow: bool,
    finished: bool,
}

impl Watcher {
    fn new(session: String, kind: Kind, calls: Calls, started: Instant) -> Self {
        Watcher {
            session,
            kind,
            pending: calls.0,
            started,
            stream: false,
            buf: Vec::new(),
            data: Vec::new(),
            overflow: false,
            finished: false,
        }
    }

    fn stream(mut self) -> Self {
        self.stream = true;
        self
    }

    fn feed(&mut self, chunk: &[u8]) {
        match self.kind {
            Kind::Json | Kind::Other => {
                if self.buf.len() + chunk.len() > MAX_INSPECT {
                    self.overflow = true;
                    self.buf.clear();
                } else if !self.overflow {
                    self.buf.extend_from_slice(chunk);
                }
            }
            Kind::Events => {
                for &b in chunk {
                    if b == b'\n' {
                        let line = std::mem::take(&mut self.buf);
                        self.sse_line(&line);
                    } else if self.buf.len() < MAX_INSPECT {
                        self.buf.push(b);
                    } else {
                        self.overflow = true;
                    }
                }
            }
        }
    }

    fn sse_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            if std::mem::take(&mut self.overflow) {
                self.not_inspected();
            } else if !data.is_empty() {
                self.message(&data);
            }
            return;
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if self.data.len() + rest.len() + 1 > MAX_INSPECT {
                self.overflow = true;
                self.data.clear();
            } else if !self.overflow {
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(rest);
            }
        }
    }

    /// One JSON-RPC message (or a batch) from the server.
    fn message(&mut self, data: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let items = match v {
            Value::Array(items) => items,
            other => vec![other],
        };
        for m in items {
            if let Some(method) = m.get("method").and_then(Value::as_str) {
                log(
                    "INFO",
                    &format!(
                        "mcp server message session={} method={}",
                        self.session,
                        quote(&cut(method, 128))
                    ),
                );
                continue;
            }
            let Some(id) = m.get("id").map(id_text) else {
                continue;
            };
            let Some(at) = self.pending.iter().position(|c| c.id == id) else {
                // An answer this stream was not asked for (the session's stream, or a
                // request's stream answering another): logged with what it says.
                let stray = Call {
                    id,
                    method: "(not asked on this stream)".into(),
                    tool: None,
                    arguments: None,
                };
                self.outcome(&stray, &m);
                continue;
            };
            let call = self.pending.remove(at);
            self.outcome(&call, &m);
        }
    }

    fn outcome(&self, call: &Call, m: &Value) {
        let ms = self.started.elapsed().as_millis();
        let head = format!(
            "mcp result session={} id={} {}",
            self.session,
            call.id,
            call.names()
        );
        if let Some(e) = m.get("error") {
            let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
            let text = e.get("message").and_then(Value::as_str).unwrap_or("");
            log(
                "WARN",
                &format!(
                    "{head} outcome=error ms={ms} code={code} text={}",
                    quote(&cut(text, MAX_TEXT))
                ),
            );
            return;
        }
        let result = m.get("result");
        if result
            .and_then(|r| r.get("isError"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            let text: Vec<&str> = result
                .and_then(|r| r.get("content"))
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|c| c.get("text").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let text = text.join(" ");
            let outcome = if is_refusal(&text) {
                "refused"
            } else {
                "tool-error"
            };
            log(
                "WARN",
                &format!(
                    "{head} outcome={outcome} ms={ms} text={}",
                    quote(&cut(&text, MAX_TEXT))
                ),
            );
            return;
        }
        log("INFO", &format!("{head} outcome=ok ms={ms}"));
    }

    fn not_inspected(&mut self) {
        // Which request it answered is unknown: the first pending one is the likeliest.
        if !self.pending.is_empty() {
            let call = self.pending.remove(0);
            log(
                "WARN",
                &format!(
                    "mcp result session={} id={} {} outcome=not-inspected ms={} text=\"an answer over {} KiB, passed on unread\"",
                    self.session,
                    call.id,
                    call.names(),
                    self.started.elapsed().as_millis(),
                    MAX_INSPECT / 1024
                ),
            );
        }
    }

    /// The answer ended (or broke off, or the agent hung up): what it never answered.
    fn finish(&mut self, how: &str) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        match self.kind {
            Kind::Json | Kind::Other => {
                if self.overflow {
                    while !self.pending.is_empty() {
                        self.not_inspected();
                    }
                } else {
                    let body = std::mem::take(&mut self.buf);
                    self.message(&body);
                }
            }
            Kind::Events => {
                // An event not ended by its blank line.
                let line = std::mem::take(&mut self.buf);
                if !line.is_empty() {
                    self.sse_line(&line);
                }
                self.sse_line(b"");
            }
        }
        for call in std::mem::take(&mut self.pending) {
            log(
                "WARN",
                &format!(
                    "mcp result session={} id={} {} outcome=unanswered ms={} text={}",
                    self.session,
                    call.id,
                    call.names(),
                    self.started.elapsed().as_millis(),
                    quote(how)
                ),
            );
        }
        if self.stream {
            log(
                "INFO",
                &format!("mcp stream closed session={} ({how})", self.session),
            );
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.finish("the agent closed the connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// Every line logged by this process's tests (they run in parallel: each looks for
    /// its own session or id).
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Keeps a logged line, its `ms=` time as `ms=N`.
    pub(super) fn captured(line: &str) {
        let mut out = String::new();
        let mut rest = line.trim_end();
        while let Some(at) = rest.find(" ms=") {
            out.push_str(&rest[..at + 4]);
            out.push('N');
            rest = rest[at + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(out);
    }

    fn lines_with(needle: &str) -> Vec<String> {
        LINES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    #[test]
    fn quoting_keeps_a_line_one_line_and_free_of_terminal_control() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny\r\u{1b}[2J"), r#""x\ny\u000d\u001b[2J""#);
        assert_eq!(quote("é\u{202e}😀"), r#""\u00e9\u202e\ud83d\ude00""#);
    }

    #[test]
    fn arguments_are_summarized_without_their_long_strings() {
        let long = "x".repeat(500);
        let v = json!({"repo": "octo/hello", "body": long, "n": 3, "args": ["api", "repos/o/r"], "deep": {"a": {"b": {"c": 1}}}});
        let s = summarize(&v);
        assert_eq!(
            s,
            r#"{"args":["api","repos/o/r"],"body":"<500 bytes>","deep":{"a":{"b":"<1 fields>"}},"n":3,"repo":"octo/hello"}"#
        );
        // Still JSON.
        serde_json::from_str::<Value>(&s).expect("JSON");
        let many: Vec<Value> = (0..2000).map(|i| json!(format!("item{i}"))).collect();
        let s = summarize(&Value::Array(many));
        assert!(
            s.len() <= MAX_ARGUMENTS + 20 && s.ends_with("...(cut)"),
            "{s}"
        );
        assert_eq!(summarize(&json!({"t": "é\n"})), r#"{"t":"\u00e9\n"}"#);
    }

    #[test]
    fn a_posts_requests_are_read_and_its_notifications_left_out() {
        let body = br#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"github_push","arguments":{"repo":"octo/hello"}}},
            {"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":"a\u001b","method":"tools/list"}]"#;
        let calls = Calls::parse(body, true).0;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0].request_line("1a2b3c4d"),
            r#"mcp request session=1a2b3c4d id=3 method="tools/call" tool="github_push" arguments={"repo":"octo/hello"}"#
        );
        assert_eq!(calls[1].id, r#""a\u001b""#);
        assert_eq!(Calls::parse(b"{not json", true).0[0].method, "(not JSON)");
        assert!(Calls::parse(b"{not json", false).0.is_empty());
    }

    fn watcher(session: &str, kind: Kind, body: &str) -> Watcher {
        Watcher::new(
            session.into(),
            kind,
            Calls::parse(body.as_bytes(), true),
            Instant::now(),
        )
    }

    #[test]
    fn an_sse_answer_is_matched_to_its_request_across_chunks() {
        let mut w = watcher(
            "sse1",
            Kind::Events,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"github_push"}}"#,
        );
        let event = "id: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"push-new-branch permission not granted for github:octo/other\"}],\"isError\":true}}\r\n\r\n";
        for chunk in event.as_bytes().chunks(7) {
            w.feed(chunk);
        }
        assert!(w.pending.is_empty(), "answered");
        w.finish("the answer ended");
        assert!(
            lines_with("session=sse1 id=4").contains(&r#" WARN devaipod-audit: mcp result session=sse1 id=4 method="tools/call" tool="github_push" outcome=refused ms=N text="push-new-branch permission not granted for github:octo/other""#.to_string()),
            "{:?}",
            lines_with("session=sse1")
        );
    }

    #[test]
    fn a_request_whose_answer_never_came_stays_pending_until_the_end() {
        let mut w = watcher(
            "unans",
            Kind::Events,
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
        );
        w.feed(b"id: 0\nretry: 3000\ndata: \n\n");
        assert_eq!(w.pending.len(), 1);
        w.finish("the answer ended");
        assert!(w.pending.is_empty());
        assert_eq!(
            lines_with("session=unans"),
            [
                r#" WARN devaipod-audit: mcp result session=unans id=9 method="tools/list" outcome=unanswered ms=N text="the answer ended""#
            ]
        );
    }

    #[test]
    fn an_event_over_the_limit_is_passed_on_unread() {
        let mut w = watcher(
            "big",
            Kind::Events,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gh"}}"#,
        );
        w.feed(b"data: ");
        let big = vec![b'x'; MAX_INSPECT + 10];
        w.feed(&big);
        w.feed(b"\n\n");
        assert!(w.pending.is_empty(), "reported as not inspected");
        assert!(w.buf.len() <= MAX_INSPECT && w.data.len() <= MAX_INSPECT);
        let said = lines_with("session=big");
        assert!(
            said.len() == 1 && said[0].contains("outcome=not-inspected"),
            "{said:?}"
        );
    }

    #[test]
    fn a_json_answer_is_read_at_its_end() {
        let mut w = watcher(
            "json1",
            Kind::Json,
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        );
        w.feed(br#"{"jsonrpc":"2.0","id":2,"#);
        assert_eq!(w.pending.len(), 1);
        w.feed(br#""result":{}}"#);
        w.finish("the answer ended");
        assert!(w.pending.is_empty());
        assert_eq!(
            lines_with("session=json1"),
            [
                r#" INFO devaipod-audit: mcp result session=json1 id=2 method="ping" outcome=ok ms=N"#
            ]
        );
    }

    #[test]
    fn service_gators_scope_refusals_are_told_from_other_tool_errors() {
        assert!(is_refusal(
            "Read access not allowed for repository: other/repo"
        ));
        assert!(is_refusal(
            "push-new-branch permission not granted for github:o/r"
        ));
        assert!(!is_refusal(
            "Not a git repository (no .git directory): /workspaces/x"
        ));
    }

    /// A server that answers one request with `answer` and hands over what it read.
    fn one_shot_server(answer: &'static str) -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).expect("read");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer.as_bytes()).expect("write");
            let _ = tx.send(got);
        });
        (addr, rx)
    }

    async fn relay_to(upstream: SocketAddr) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve(l, Relay::new(upstream)));
        addr
    }

    async fn exchange(relay: SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(relay).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8(out).expect("UTF-8")
    }

    const EVENTS: &str = "id: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"Read access not allowed for repository: other/repo\"}],\"isError\":true}}\n\n";

    #[tokio::test]
    async fn the_relay_passes_both_ways_unchanged_and_logs_the_call_and_its_refusal() {
        let answer: &'static str = Box::leak(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n{EVENTS}")
                .into_boxed_str(),
        );
        let (up, got) = one_shot_server(answer);
        let relay = relay_to(up).await;
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"gh","arguments":{"args":["api","repos/other/repo"]}}}"#;
        let out = exchange(
            relay,
            &format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMcp-Session-Id: relaytest-1234\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
        )
        .await;
        let (head, events) = out.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        // Chunked on the way to the agent (the server closed its stream): the events as sent.
        let unchunked: String = events
            .split("\r\n")
            .collect::<Vec<_>>()
            .chunks(2)
            .filter_map(|p| p.get(1).copied())
            .collect();
        assert_eq!(unchunked, EVENTS, "{events:?}");
        let seen = String::from_utf8(got.recv().expect("the server's request")).expect("UTF-8");
        assert!(seen.ends_with(body), "{seen}");
        assert!(
            seen.contains("mcp-session-id: relaytest-1234")
                || seen.contains("Mcp-Session-Id: relaytest-1234"),
            "{seen}"
        );
        assert_eq!(
            lines_with("session=relaytes"),
            [
                r#" INFO devaipod-audit: mcp request session=relaytes id=7 method="tools/call" tool="gh" arguments={"args":["api","repos/other/repo"]}"#,
                r#" WARN devaipod-audit: mcp result session=relaytes id=7 method="tools/call" tool="gh" outcome=refused ms=N text="Read access not allowed for repository: other/repo""#,
            ]
        );
    }

    #[tokio::test]
    async fn a_server_not_listening_is_a_502_and_a_log_line() {
        // A port nothing listens on: bound, then closed.
        let up = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let relay = relay_to(up).await;
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let out = exchange(
            relay,
            &format!("POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: down5678\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 502"), "{out}");
        assert!(
            out.contains("devaipod: service-gator did not answer"),
            "{out}"
        );
        let said = lines_with("down5678");
        assert!(
            said.iter()
                .any(|l| l.contains(r#"mcp request session=down5678 id=1 method="tools/list""#)),
            "{said:?}"
        );
        let failed = lines_with("upstream failed path=\"/mcp\"");
        assert!(!failed.is_empty(), "{failed:?}");
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_refused_and_logged() {
        let up = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let relay = relay_to(up).await;
        let n = MAX_REQUEST + 1;
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: huge0000\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        );
        let out = exchange(relay, &(head + &"x".repeat(n))).await;
        assert!(
            out.starts_with("HTTP/1.1 413"),
            "{}",
            &out[..out.len().min(200)]
        );
        assert_eq!(
            lines_with("huge0000"),
            [
                r#" WARN devaipod-audit: mcp request refused session=huge0000 path="/mcp" reason="over 2 MiB""#
            ]
        );
    }

    #[tokio::test]
    async fn a_json_rpc_request_to_another_path_is_logged_with_its_path() {
        let answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (up, got) = one_shot_server(answer);
        let relay = relay_to(up).await;
        let body =
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"github_push"}}"#;
        let out = exchange(
            relay,
            &format!("POST //mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: elsewhere\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        got.recv().expect("forwarded");
        assert_eq!(
            lines_with("session=elsewher"),
            [
                r#" INFO devaipod-audit: mcp request session=elsewher id=5 method="tools/call" tool="github_push" path="//mcp""#,
                r#" WARN devaipod-audit: mcp answer session=elsewher method="tools/call" status=404"#,
            ]
        );
    }

    /// A server that answers each of `n` requests with `answer`, after `delay`.
    fn slow_server(answer: &'static str, delay: Duration) -> SocketAddr {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut got = Vec::new();
                    while !String::from_utf8_lossy(&got).contains("}") {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    std::thread::sleep(delay); // the server's work: not a synchronisation
                    let _ = s.write_all(answer.as_bytes());
                });
            }
        });
        addr
    }

    const REFUSED_ANSWER: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"push-new-branch permission not granted for github:o/x\"}],\"isError\":true}}\n\n";

    /// Waits (bounded) until a line with `needle` is logged.
    async fn logged(needle: &str) -> Vec<String> {
        for _ in 0..500 {
            let l = lines_with(needle);
            if !l.is_empty() {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nothing logged with {needle}: {:?}", lines_with(""));
    }

    #[tokio::test]
    async fn an_agent_that_hangs_up_still_has_the_outcome_logged() {
        use tokio::io::AsyncWriteExt;
        let up = slow_server(REFUSED_ANSWER, Duration::from_millis(200));
        let relay = relay_to(up).await;
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github_push","arguments":{"repo":"o/x"}}}"#;
        for (sid, how) in [("hangup01", "close"), ("hangup02", "half-close")] {
            let mut s = TcpStream::connect(relay).await.expect("connect");
            let req = format!(
                "POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.expect("write");
            logged(&format!("mcp request session={sid}")).await;
            if how == "close" {
                drop(s);
            } else {
                s.shutdown().await.expect("half-close");
            }
            let said = logged(&format!("mcp result session={sid}")).await;
            assert_eq!(
                said,
                [format!(
                    r#" WARN devaipod-audit: mcp result session={sid} id=7 method="tools/call" tool="github_push" outcome=refused ms=N text="push-new-branch permission not granted for github:o/x""#
                )],
                "{how}"
            );
        }
    }

    #[tokio::test]
    async fn an_id_in_flight_twice_in_a_session_is_refused() {
        use tokio::io::AsyncWriteExt;
        let up = slow_server(REFUSED_ANSWER, Duration::from_millis(500));
        let relay = relay_to(up).await;
        let body =
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github_push"}}"#;
        let req = format!(
            "POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: twiceid1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut first = TcpStream::connect(relay).await.expect("connect");
        first.write_all(req.as_bytes()).await.expect("write");
        logged("mcp request session=twiceid1").await;
        let out = exchange(relay, &req).await;
        assert!(out.starts_with("HTTP/1.1 409"), "{out}");
        assert!(out.contains("request id 7 is already in flight"), "{out}");
        logged(r#"mcp request refused session=twiceid1 id=7 reason="a request with this id is in flight""#).await;
        // Once the first is answered, the id is free again.
        logged("mcp result session=twiceid1 id=7").await;
        let out = exchange(relay, &req).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        // Other sessions are other ids.
        let other = req.replace("twiceid1", "twiceid2");
        assert!(exchange(relay, &other).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_large_batch_is_refused_and_a_cancel_is_logged() {
        let up = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let relay = relay_to(up).await;
        let batch: Vec<String> = (0..17)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/list"}}"#))
            .collect();
        let body = format!("[{}]", batch.join(","));
        let out = exchange(relay, &format!("POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: batch017\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert_eq!(
            lines_with("session=batch017"),
            [
                r#" WARN devaipod-audit: mcp request refused session=batch017 path="/mcp" reason="a batch of 17 messages""#
            ]
        );
        let body =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#;
        exchange(relay, &format!("POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: cancel04\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())).await;
        assert_eq!(
            lines_with("session=cancel04")[0],
            " INFO devaipod-audit: mcp cancel id=4 session=cancel04"
        );
    }

    #[tokio::test]
    async fn a_resumption_is_not_passed_on_and_a_connection_header_cannot_hide_the_session() {
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nid: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        let (up, got) = one_shot_server(answer);
        let relay = relay_to(up).await;
        let out = exchange(relay, "GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nMcp-Session-Id: resume01\r\nLast-Event-ID: 0/3\r\nConnection: close\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let seen = String::from_utf8(got.recv().expect("forwarded"))
            .expect("UTF-8")
            .to_ascii_lowercase();
        assert!(!seen.contains("last-event-id"), "{seen}");
        assert!(seen.contains("mcp-session-id: resume01"), "{seen}");
        let said = lines_with("session=resume01");
        assert_eq!(
            said[0],
            " INFO devaipod-audit: mcp stream resumption not passed on session=resume01 (a new stream is opened)"
        );
        assert_eq!(
            said[1],
            " INFO devaipod-audit: mcp stream opened session=resume01"
        );
        // An answer on the session's stream is logged too.
        assert!(
            said.iter().any(|l| l == r#" INFO devaipod-audit: mcp result session=resume01 id=7 method="(not asked on this stream)" outcome=ok ms=N"#),
            "{said:?}"
        );
        // `Connection: mcp-session-id` strips the header on the way: the log says so.
        let (up, got) =
            one_shot_server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let relay = relay_to(up).await;
        let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#;
        exchange(relay, &format!("POST /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: hidden01\r\nConnection: mcp-session-id, close\r\nContent-Length: {}\r\n\r\n{body}", body.len())).await;
        let seen = String::from_utf8(got.recv().expect("forwarded")).expect("UTF-8");
        assert!(
            !seen.to_ascii_lowercase().contains("mcp-session-id"),
            "{seen}"
        );
        assert!(
            lines_with("hidden01").is_empty(),
            "{:?}",
            lines_with("hidden01")
        );
    }

    #[test]
    fn the_servers_lines_are_marked_escaped_and_cut() {
        assert_eq!(
            server_line(b" INFO starting x repo=\"a\" \x1b[2J\r", false),
            "service-gator |  INFO starting x repo=\"a\" \\u001b[2J\n"
        );
        assert_eq!(
            server_line("é\u{202e}".as_bytes(), true),
            "service-gator | \\u00e9\\u202e...(cut)\n"
        );
    }

    #[tokio::test]
    async fn the_servers_output_is_read_line_by_line_within_its_bound() {
        let text = format!("one\n{}\nthree", "x".repeat(40));
        let mut r = BufReader::new(text.as_bytes());
        let mut line = Vec::new();
        let got = read_line_capped(&mut r, &mut line, 10).await.expect("read");
        assert_eq!((got, line.as_slice()), ((4, false), &b"one"[..]));
        line.clear();
        let got = read_line_capped(&mut r, &mut line, 10).await.expect("read");
        assert_eq!((got, line.len()), ((41, true), 10));
        line.clear();
        let got = read_line_capped(&mut r, &mut line, 10).await.expect("read");
        assert_eq!((got, line.as_slice()), ((5, false), &b"three"[..]));
        line.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut line, 10).await.expect("read"),
            (0, false)
        );
    }

    #[tokio::test]
    async fn the_sessions_stream_is_passed_on_as_it_comes_and_its_end_logged() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A server whose stream sends its priming event and then nothing.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up = l.local_addr().expect("addr");
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nid: 0\nretry: 3000\ndata: \n\n")
                .expect("write");
            // Held open until the test is over.
            let _ = done_rx.recv();
        });
        let relay = relay_to(up).await;
        let mut s = TcpStream::connect(relay).await.expect("connect");
        s.write_all(b"GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nMcp-Session-Id: stream01\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("retry: 3000") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        logged("mcp stream opened session=stream01").await;
        drop(s);
        let said = logged("mcp stream closed session=stream01").await;
        assert_eq!(
            said,
            [" INFO devaipod-audit: mcp stream closed session=stream01 (the agent closed it)"]
        );
        let _ = done_tx.send(());
    }
}
