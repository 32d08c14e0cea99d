//! The agent's egress proxy (`devaipod-net proxy`): an HTTP/1.1 server on the pod's
//! loopback that passes on
//!
//! - `CONNECT NAME:PORT`: a byte tunnel (TLS stays end to end between agent and origin),
//! - absolute-form `http://NAME[:PORT]/...` requests: forwarded over plain TCP,
//! - origin-form `/devaipod/credentials/PROVIDER/...` requests: forwarded to the
//!   provider's base URL with its key added (see `upstream::CredentialRoute`),
//!
//! when the policy allows them (`policy`: names on the allowlist, every resolved address
//! public, the host's addresses refused), and answers everything else itself with a
//! one-line reason and `X-Devaipod-Refused: CODE`. Bodies and tunnels are streamed,
//! never collected; redirects are passed back, never followed.
//!
//! Each decision is one line on stdout (see [`Log`]); no `tracing` or `log` subscriber is
//! installed, so that no environment variable (`RUST_LOG`) can make a dependency print
//! headers, which carry the key. The lines, fields separated by one space, TIME in
//! RFC 3339 UTC with milliseconds (`2026-12-02T00:56:55.881Z`):
//!
//! ```text
//! TIME listen ADDR mode=allowlist|none entries=N credentials=P,Q|- deny_nets=N resolver=dns|test-map
//! TIME allow  METHOD NAME PORT [provider=P]
//! TIME refuse METHOD NAME|- PORT|- CODE [provider=P]
//! TIME fail   METHOD NAME PORT CODE [provider=P]
//! TIME done   CONNECT NAME PORT up=BYTES down=BYTES ms=N end=closed|idle|error|no-upgrade
//! TIME done   METHOD NAME PORT up=BYTES down=BYTES ms=N status=S [provider=P]
//! TIME allowlist reloaded entries=N
//! TIME error  allowlist|stats|accept MESSAGE
//! ```
//!
//! METHOD is `CONNECT`, the method of a plain HTTP request, or `credential` (then NAME
//! and PORT are the base URL's); CODE is `policy::Reason::code`. `refuse` is a decision
//! of the policy (4xx), `fail` an allowed request that found no way (5xx); `up` counts
//! what the agent sent, `down` what it received (bodies, or a tunnel's bytes). Paths,
//! queries, headers and bodies are never logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;

use crate::config::{Config, Mode};
use crate::policy::{self, AddressPolicy, Allowlist, Cidr, DEFAULT_PORTS, Reason, Refusal};
use crate::state::{self, LiveAllowlist, RefusedItem, Stats};
use crate::upstream::{
    self, BoxError, CredentialRoute, Host, IDLE_LIMIT, Io, ProxyBody, Resolver, Upstream,
};

#[cfg(test)]
mod tests;

/// The header of every answer the proxy gives itself: the reason code.
pub(crate) const REFUSED_HEADER: &str = "x-devaipod-refused";
/// The largest request head the agent may send (request line and headers).
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// The time the agent has to send a request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 4096;
/// How often the counts are written when only allowed requests changed them.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// `devaipod-net proxy --config FILE --state DIR`.
pub(crate) fn run(config_path: &Path, state_dir: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    let listen: SocketAddr = config.listen.parse().with_context(|| {
        format!(
            "{}: listen {:?} is not an address and port (e.g. 127.0.0.1:4097)",
            config_path.display(),
            config.listen
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let deny = deny_nets(&config)?;
        let proxy = Arc::new(
            Proxy::build(&config, state_dir, AddressPolicy::new(deny), Log::Stdout)
                .with_context(|| format!("starting the proxy with {}", config_path.display()))?,
        );
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let local = listener
            .local_addr()
            .context("reading the listening address")?;
        proxy.log_start(local, &config);
        tokio::spawn(write_stats(proxy.clone()));
        tokio::select! {
            served = serve(listener, proxy.clone()) => served,
            signal = shutdown_signal() => {
                if let Some(e) = proxy.stats.flush() {
                    proxy.log.line(format!("error stats {e}"));
                }
                signal
            }
        }
    })
}

fn deny_nets(config: &Config) -> Result<Vec<Cidr>> {
    config
        .deny_nets
        .iter()
        .map(|n| Cidr::parse(n).map_err(|e| anyhow::anyhow!("deny_nets: {e}")))
        .collect()
}

/// A container's PID 1 gets no default action for SIGTERM: without this, `podman stop`
/// would wait out its timeout and kill the proxy.
async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn write_stats(proxy: Arc<Proxy>) {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(e) = proxy.stats.flush() {
            proxy.log.line(format!("error stats {e}"));
        }
    }
}

/// Serves the agent's connections until the listener fails.
pub(crate) async fn serve(listener: TcpListener, proxy: Arc<Proxy>) -> Result<()> {
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    if proxy.local.set(local).is_err() {
        bail!("the proxy serves one listener only");
    }
    crate::accept::accept_each(
        &listener,
        MAX_CONNECTIONS,
        |e| proxy.log.line(format!("error accept {e}")),
        |stream| {
            let proxy = proxy.clone();
            async move {
                let service = service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(req).await) }
                });
                // A connection's errors (the agent hung up, a bad request line) end only it.
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_HEAD)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            }
        },
    )
    .await;
    bail!("the proxy stopped accepting connections")
}

/// Where the decision lines go.
pub(crate) enum Log {
    Stdout,
    #[cfg(test)]
    Capture(tokio::sync::watch::Sender<Vec<String>>),
}

impl Log {
    /// Writes `TIME text` as one line. `text` is built only from checked names, codes
    /// and numbers (see `policy::printable`), never from headers, paths or bodies.
    fn line(&self, text: String) {
        let line = format!("{} {}", state::utc_now(), text.replace(['\r', '\n'], " "));
        match self {
            Log::Stdout => {
                use std::io::Write;
                // A closed stdout must not stop the proxy (println! would panic).
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            #[cfg(test)]
            Log::Capture(lines) => lines.send_modify(|l| l.push(line)),
        }
    }
}

/// The running proxy: its policy, its routes, its state.
pub(crate) struct Proxy {
    mode: Mode,
    pod: Option<String>,
    allow: LiveAllowlist,
    stats: Stats,
    upstream: Upstream,
    routes: Vec<CredentialRoute>,
    log: Log,
    /// The address `serve` listens on.
    local: std::sync::OnceLock<SocketAddr>,
}

impl Proxy {
    /// Checks the configuration, reads the keys, sets up the state directory. `addresses`
    /// is given by the caller so that tests can permit their loopback upstreams.
    pub(crate) fn build(
        config: &Config,
        state_dir: &Path,
        addresses: AddressPolicy,
        log: Log,
    ) -> Result<Proxy> {
        let initial = Allowlist::parse(&config.allow).context("the configuration's allow")?;
        let test = config.test.clone().unwrap_or_default();
        let resolver = if test.hosts.is_empty() {
            Resolver::system()?
        } else {
            Resolver::fixed(&test.hosts)?
        };
        let tls = upstream::tls_connector(test.ca_pem.as_deref())?;
        let mut routes: Vec<CredentialRoute> = Vec::new();
        for credential in &config.credentials {
            let route = CredentialRoute::load(credential)?;
            if routes.iter().any(|r| r.provider == route.provider) {
                bail!("credential provider {} is configured twice", route.provider);
            }
            routes.push(route);
        }
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
        let list = state::init_allowlist(state_dir, &initial)?;
        Ok(Proxy {
            mode: config.mode.clone(),
            pod: config.pod.clone(),
            allow: LiveAllowlist::new(state_dir, list),
            stats: Stats::start(state_dir)?,
            upstream: Upstream::new(resolver, addresses, tls),
            routes,
            log,
            local: std::sync::OnceLock::new(),
        })
    }

    /// Whether an absolute URI names this proxy (http://127.0.0.1:PORT, localhost, [::1]).
    fn is_own_address(&self, uri: &Uri) -> bool {
        let (Some(local), Some(authority)) = (self.local.get(), uri.authority()) else {
            return false;
        };
        let loopback = matches!(
            authority.host().to_ascii_lowercase().as_str(),
            "127.0.0.1" | "localhost" | "[::1]"
        );
        let port = authority.port_u16().unwrap_or(80);
        uri.scheme_str() == Some("http") && loopback && port == local.port()
    }

    fn log_start(&self, local: SocketAddr, config: &Config) {
        let mode = match self.mode {
            Mode::Allowlist => "allowlist",
            Mode::None => "none",
        };
        let providers: Vec<&str> = self.routes.iter().map(|r| r.provider.as_str()).collect();
        let resolver = match config.test.as_ref().is_some_and(|t| !t.hosts.is_empty()) {
            true => "test-map",
            false => "dns",
        };
        let entries = self.allow.current().list.entries().len();
        self.log.line(format!(
            "listen {local} mode={mode} entries={entries} credentials={} deny_nets={} resolver={resolver}",
            if providers.is_empty() { "-".to_string() } else { providers.join(",") },
            config.deny_nets.len(),
        ));
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        // A client that ignores NO_PROXY sends its credential requests to the proxy in
        // absolute form, naming the proxy itself: those are the proxy's own routes.
        let own = self.is_own_address(req.uri());
        if req.uri().scheme().is_some() && !own {
            return self.forward(req).await;
        }
        let method = policy::printable(req.method().as_str());
        if req.uri().authority().is_some() && !own {
            return self.refuse(
                &method,
                "-",
                None,
                "",
                Refusal::new(
                    Reason::Malformed,
                    "devaipod: an authority-form target is for CONNECT only",
                ),
            );
        }
        let path = req.uri().path().to_string();
        match upstream::split_credential_path(&path) {
            Some((provider, rest)) => {
                let (provider, rest) = (provider.to_string(), rest.to_string());
                self.credential(req, &provider, &rest).await
            }
            None => self.refuse(
                &method,
                "-",
                None,
                "",
                Refusal::new(
                    Reason::UnknownRoute,
                    format!(
                        "devaipod: this is the pod's egress proxy; it serves no path but {}PROVIDER/... (use it as HTTP_PROXY/HTTPS_PROXY)",
                        upstream::CREDENTIAL_PREFIX
                    ),
                ),
            ),
        }
    }

    /// CONNECT NAME:PORT: check, connect, answer 200, then tunnel.
    async fn connect(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        const METHOD: &str = "CONNECT";
        let Some(authority) = req.uri().authority().cloned() else {
            return self.refuse(
                METHOD,
                "-",
                None,
                "",
                Refusal::new(
                    Reason::Malformed,
                    "devaipod: CONNECT needs a NAME:PORT target",
                ),
            );
        };
        let shown = policy::printable(authority.host());
        let port = match authority.port_u16() {
            Some(p) if p != 0 => p,
            _ => {
                return self.refuse(
                    METHOD,
                    &shown,
                    None,
                    "",
                    Refusal::new(
                        Reason::Malformed,
                        format!("devaipod: CONNECT {shown} needs a port (NAME:PORT)"),
                    ),
                );
            }
        };
        let name = match self.check_target(authority.host(), port) {
            Ok(name) => name,
            Err(refusal) => return self.refuse(METHOD, &shown, Some(port), "", refusal),
        };
        let stream = match self.upstream.connect(&Host::Name(name.clone()), port).await {
            Ok(stream) => stream,
            Err(refusal) => return self.refuse(METHOD, &name, Some(port), "", refusal),
        };
        self.allowed(METHOD, &name, port, "");
        let proxy = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let meter = Arc::new(Meter::new());
            // `devaipod deny` closes a tunnel already open to the name, too.
            let still_allowed =
                || proxy.mode != Mode::None && proxy.allow.current().list.allows(&name, port);
            let ended = match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    tunnel(
                        TokioIo::new(upgraded),
                        stream,
                        meter.clone(),
                        &still_allowed,
                    )
                    .await
                }
                Err(_) => "no-upgrade",
            };
            proxy.log.line(format!(
                "done {METHOD} {name} {port} up={} down={} ms={} end={ended}",
                meter.up(),
                meter.down(),
                started.elapsed().as_millis()
            ));
        });
        Response::new(Empty::new().map_err(|e| match e {}).boxed())
    }

    /// Absolute-form `http://...`: check, connect, forward in origin form.
    async fn forward(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let method = policy::printable(req.method().as_str());
        if req.uri().scheme_str() != Some("http") {
            return self.refuse(
                &method,
                "-",
                None,
                "",
                Refusal::new(
                    Reason::Malformed,
                    "devaipod: the proxy forwards plain http:// URLs only; https:// goes through CONNECT (HTTPS_PROXY)",
                ),
            );
        }
        let Some(authority) = req.uri().authority().cloned() else {
            return self.refuse(
                &method,
                "-",
                None,
                "",
                Refusal::new(Reason::Malformed, "devaipod: the URL has no host"),
            );
        };
        let shown = policy::printable(authority.host());
        let port = match (authority.port(), authority.port_u16()) {
            (None, _) => 80,
            (Some(_), Some(p)) if p != 0 => p,
            _ => {
                return self.refuse(
                    &method,
                    &shown,
                    None,
                    "",
                    Refusal::new(Reason::Malformed, "devaipod: the URL's port is not 1-65535"),
                );
            }
        };
        let name = match self.check_target(authority.host(), port) {
            Ok(name) => name,
            Err(refusal) => return self.refuse(&method, &shown, Some(port), "", refusal),
        };
        let stream = match self.upstream.connect(&Host::Name(name.clone()), port).await {
            Ok(stream) => stream,
            Err(refusal) => return self.refuse(&method, &name, Some(port), "", refusal),
        };
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse::<Uri>();
        let Ok(target) = target else {
            return self.refuse(
                &method,
                &name,
                Some(port),
                "",
                Refusal::new(
                    Reason::Malformed,
                    "devaipod: the URL's path is not a valid target",
                ),
            );
        };
        upstream::strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::EXPECT);
        // RFC 9112 3.2.2: a proxy replaces Host with the absolute URI's authority (less
        // any user info).
        let host = match authority.port() {
            Some(p) => format!("{}:{}", authority.host(), p.as_str()),
            None => authority.host().to_string(),
        };
        match HeaderValue::from_str(&host) {
            Ok(host) => parts.headers.insert(header::HOST, host),
            Err(_) => parts.headers.remove(header::HOST),
        };
        parts.uri = target;
        parts.version = Version::HTTP_11;
        let meter = Arc::new(Meter::new());
        let body = Metered::up(body, meter.clone()).boxed();
        self.allowed(&method, &name, port, "");
        let response =
            upstream::send_once(Box::new(stream), Request::from_parts(parts, body)).await;
        self.relay(response, &method, &name, port, String::new(), meter)
    }

    /// `/devaipod/credentials/PROVIDER/REST`: to the provider's base URL with its key.
    async fn credential(
        self: Arc<Self>,
        req: Request<Incoming>,
        provider: &str,
        rest: &str,
    ) -> Response<ProxyBody> {
        const METHOD: &str = "credential";
        let shown = policy::printable(provider);
        let Some(route) = self.routes.iter().find(|r| r.provider == provider) else {
            let configured: Vec<&str> = self.routes.iter().map(|r| r.provider.as_str()).collect();
            let configured = if configured.is_empty() {
                "none".to_string()
            } else {
                configured.join(", ")
            };
            return self.refuse(
                METHOD,
                "-",
                None,
                &format!("provider={shown}"),
                Refusal::new(
                    Reason::UnknownProvider,
                    format!(
                        "devaipod: this pod has no credential route for provider {shown} (configured: {configured})"
                    ),
                ),
            );
        };
        let extra = format!("provider={}", route.provider);
        let name = route.host.to_string();
        let port = route.port;
        // An API's methods only: TRACE (or CONNECT, OPTIONS) could have an upstream or
        // an intermediary echo the request, key included, back to the agent.
        if ![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
        ]
        .contains(req.method())
        {
            return self.refuse(
                METHOD,
                &name,
                Some(port),
                &extra,
                Refusal::new(
                    Reason::Malformed,
                    "devaipod: a credential route takes GET, POST, PUT, PATCH, DELETE or HEAD",
                ),
            );
        }
        let target = match route.target(rest, req.uri().query()) {
            Ok(target) => target,
            Err(refusal) => return self.refuse(METHOD, &name, Some(port), &extra, refusal),
        };
        let (mut parts, body) = req.into_parts();
        route.prepare_headers(&mut parts.headers);
        parts.uri = target;
        parts.version = Version::HTTP_11;
        let meter = Arc::new(Meter::new());
        let body = Metered::up(body, meter.clone()).boxed();
        let request = Request::from_parts(parts, body);
        let response = route
            .send(&self.upstream, request, || {
                self.allowed(METHOD, &name, port, &extra)
            })
            .await;
        self.relay(response, METHOD, &name, port, extra.clone(), meter)
    }

    /// The upstream's response back to the agent (hop-by-hop headers dropped, body
    /// streamed, a `done` line when it ends), or the proxy's own answer when it failed.
    fn relay(
        self: &Arc<Self>,
        response: Result<Response<Incoming>, Refusal>,
        method: &str,
        name: &str,
        port: u16,
        extra: String,
        meter: Arc<Meter>,
    ) -> Response<ProxyBody> {
        let response = match response {
            Ok(response) => response,
            Err(refusal) => return self.refuse(method, name, Some(port), &extra, refusal),
        };
        let (mut parts, body) = response.into_parts();
        upstream::strip_hop_by_hop(&mut parts.headers);
        let done = Done {
            proxy: self.clone(),
            line: format!("{method} {name} {port}"),
            extra: format!("status={} {extra}", parts.status.as_u16()),
            started: Instant::now(),
            meter: meter.clone(),
        };
        let body = Metered::down(body, meter, done).boxed();
        Response::from_parts(parts, body)
    }

    /// The name check of CONNECT and plain HTTP: a name (not an address), the mode, the
    /// allowlist. Returns the normalized name.
    fn check_target(&self, host: &str, port: u16) -> Result<String, Refusal> {
        let name = policy::check_request_host(host)?;
        if self.mode == Mode::None {
            return Err(Refusal::new(
                Reason::NetworkNone,
                format!(
                    "devaipod: {name}:{port} is refused: this pod's network mode is none (only its credential routes are reachable)"
                ),
            ));
        }
        let current = self.allow.current();
        match current.reloaded {
            None => {}
            Some(Ok(entries)) => self
                .log
                .line(format!("allowlist reloaded entries={entries}")),
            Some(Err(e)) => self.log.line(format!(
                "error allowlist {e}; refusing every name until it is fixed"
            )),
        }
        if current.list.allows(&name, port) {
            return Ok(name);
        }
        let pod = self.pod.as_deref().map(policy::printable);
        let pod = pod.as_deref().unwrap_or("POD");
        let entry = if DEFAULT_PORTS.contains(&port) {
            name.clone()
        } else {
            format!("{name}:{port}")
        };
        Err(Refusal::new(
            Reason::NotAllowed,
            format!(
                "devaipod: {name}:{port} is not on this pod's allowlist (add it with: devaipod allow {pod} {entry})"
            ),
        ))
    }

    fn allowed(&self, method: &str, name: &str, port: u16, extra: &str) {
        self.stats.count_allowed();
        self.log.line(
            format!("allow {method} {name} {port} {extra}")
                .trim_end()
                .to_string(),
        );
    }

    /// Logs and counts the proxy's own answer, and makes it.
    fn refuse(
        &self,
        method: &str,
        name: &str,
        port: Option<u16>,
        extra: &str,
        refusal: Refusal,
    ) -> Response<ProxyBody> {
        let code = refusal.reason.code();
        let port_text = port.map_or_else(|| "-".to_string(), |p| p.to_string());
        let verb = if refusal.reason.is_refusal() {
            "refuse"
        } else {
            "fail"
        };
        self.log.line(
            format!("{verb} {method} {name} {port_text} {code} {extra}")
                .trim_end()
                .to_string(),
        );
        if refusal.reason.is_refusal() {
            let item = RefusedItem {
                time: state::utc_now(),
                method: method.to_string(),
                name: name.to_string(),
                port,
                reason: code.to_string(),
            };
            if let Some(e) = self.stats.count_refused(item) {
                self.log.line(format!("error stats {e}"));
            }
        } else {
            self.stats.count_failed();
        }
        answer(&refusal)
    }
}

/// The proxy's own answer: the status of the reason, its code in `X-Devaipod-Refused`,
/// the message as a plain-text line.
fn answer(refusal: &Refusal) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("{}\n", refusal.message)))
        .map_err(|e| match e {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(refusal.reason.status()).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        REFUSED_HEADER,
        HeaderValue::from_static(refusal.reason.code()),
    );
    response
}

/// Bytes through a request in each direction, and when they last moved.
struct Meter {
    up: AtomicU64,
    down: AtomicU64,
    base: Instant,
    last_ms: AtomicU64,
}

impl Meter {
    fn new() -> Self {
        Meter {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn add_up(&self, n: usize) {
        self.up.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    fn add_down(&self, n: usize) {
        self.down.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    fn last_activity(&self) -> Instant {
        self.base + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Logs the `done` line of an HTTP request when its response body ends (or the agent
/// goes away).
struct Done {
    proxy: Arc<Proxy>,
    line: String,
    extra: String,
    started: Instant,
    meter: Arc<Meter>,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.proxy.log.line(
            format!(
                "done {} up={} down={} ms={} {}",
                self.line,
                self.meter.up(),
                self.meter.down(),
                self.started.elapsed().as_millis(),
                self.extra
            )
            .trim_end()
            .to_string(),
        );
    }
}

/// A body passed through frame by frame: counted, ended with an error after
/// [`IDLE_LIMIT`] without a frame.
struct Metered<B> {
    inner: B,
    meter: Arc<Meter>,
    upward: bool,
    idle: Pin<Box<Sleep>>,
    _done: Option<Done>,
}

impl<B> Metered<B> {
    fn up(inner: B, meter: Arc<Meter>) -> Self {
        Self::new(inner, meter, true, None)
    }

    fn down(inner: B, meter: Arc<Meter>, done: Done) -> Self {
        Self::new(inner, meter, false, Some(done))
    }

    fn new(inner: B, meter: Arc<Meter>, upward: bool, done: Option<Done>) -> Self {
        Metered {
            inner,
            meter,
            upward,
            idle: Box::pin(tokio::time::sleep(IDLE_LIMIT)),
            _done: done,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if this.upward {
                        this.meter.add_up(data.len());
                    } else {
                        this.meter.add_down(data.len());
                    }
                }
                this.idle
                    .as_mut()
                    .reset(tokio::time::Instant::now() + IDLE_LIMIT);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "devaipod: no data for {} minutes",
                    IDLE_LIMIT.as_secs() / 60
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How often an open tunnel checks that its name is still allowed.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies both ways until both sides are done, nothing moved for [`IDLE_LIMIT`], or
/// the name left the allowlist (checked every [`RECHECK`]); says which.
async fn tunnel<C: Io>(
    mut client: C,
    upstream: tokio::net::TcpStream,
    meter: Arc<Meter>,
    still_allowed: &(dyn Fn() -> bool + Send + Sync),
) -> &'static str {
    let mut upstream = MeteredStream {
        inner: upstream,
        meter: meter.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let idle_until = tokio::time::Instant::from_std(meter.last_activity() + IDLE_LIMIT);
        let recheck = tokio::time::Instant::now() + RECHECK;
        tokio::select! {
            result = &mut copy => return if result.is_ok() { "closed" } else { "error" },
            () = tokio::time::sleep_until(idle_until.min(recheck)) => {
                if meter.last_activity() + IDLE_LIMIT <= Instant::now() {
                    return "idle";
                }
                if !still_allowed() {
                    return "denied";
                }
            }
        }
    }
}

/// The upstream side of a tunnel: what is written to it goes up, what is read comes down.
struct MeteredStream<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            this.meter.add_down(buf.filled().len() - before);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.meter.add_up(n);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
