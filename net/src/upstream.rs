//! The proxy's side towards the outside: resolving a name (DNS from the container's
//! `/etc/resolv.conf`, or the test-only fixed map), checking every address it resolves to,
//! connecting to a checked address (never resolving twice, so a name cannot rebind to a
//! local address between the check and the connection), TLS to credential upstreams, and
//! the credential routes themselves: where a provider's requests go and the header that
//! carries its key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_resolver::TokioResolver;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

use crate::config;
use crate::policy::{self, AddressPolicy, Reason, Refusal};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the proxy sends or forwards: streamed, never collected.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// Resolving a name, connecting to it and (for TLS) the handshake, together.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an upstream may take to send a response's head, and the longest a body
/// or a tunnel may stay silent (both ways), before the proxy closes it. Long enough for a
/// slow model that thinks before it answers.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(15 * 60);
/// The largest response head the proxy reads from an upstream.
const MAX_UPSTREAM_HEAD: usize = 256 * 1024;
/// How long an idle connection to a credential upstream is kept for the next request.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// At most this many connections kept per credential route.
const POOL_MAX: usize = 8;

/// What the proxy connects to: a name (resolved by the proxy) or, for a credential
/// upstream configured so, an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Where names come from.
pub(crate) enum Resolver {
    /// DNS, configured by the container's `/etc/resolv.conf`.
    Dns(Box<TokioResolver>),
    /// The test-only fixed map (`test.hosts`): used instead of DNS, never with it.
    Fixed(BTreeMap<String, Vec<IpAddr>>),
}

impl Resolver {
    pub(crate) fn system() -> Result<Self> {
        let mut builder = TokioResolver::builder_tokio().context(
            "reading the resolver configuration /etc/resolv.conf (the proxy resolves names itself)",
        )?;
        // Never the pod's /etc/hosts: the repo's `--add-host` (or anything else that
        // writes it) must not send an allowed name to an address of its choosing.
        builder.options_mut().use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        Ok(Resolver::Dns(Box::new(builder.build())))
    }

    /// The fixed map; its names are checked and normalized like requested hosts.
    pub(crate) fn fixed(map: &BTreeMap<String, Vec<String>>) -> Result<Self> {
        let mut fixed = BTreeMap::new();
        for (name, addrs) in map {
            let key = policy::check_request_host(name).map_err(|r| {
                anyhow::anyhow!("test.hosts: {name:?} is not a name: {}", r.message)
            })?;
            let parsed = addrs
                .iter()
                .map(|a| {
                    a.parse::<IpAddr>().with_context(|| {
                        format!("test.hosts: {a:?} (for {name}) is not an IP address")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if parsed.is_empty() {
                bail!("test.hosts: {name} has no addresses");
            }
            fixed.insert(key, parsed);
        }
        Ok(Resolver::Fixed(fixed))
    }

    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Refusal> {
        let none = |why: String| {
            Refusal::new(
                Reason::ResolveFailed,
                format!("devaipod: could not resolve {name}: {why}"),
            )
        };
        let mut addrs = match self {
            Resolver::Fixed(map) => map
                .get(name)
                .cloned()
                .ok_or_else(|| none("it is not in the proxy's test name map".into()))?,
            Resolver::Dns(resolver) => {
                // The trailing dot makes the name absolute: resolv.conf's search domains
                // are not tried (the allowlist names this name, not name.corp.example).
                let lookup = resolver
                    .lookup_ip(format!("{name}."))
                    .await
                    .map_err(|e| none(one_line(&e.to_string())))?;
                lookup.iter().collect::<Vec<_>>()
            }
        };
        if addrs.is_empty() {
            return Err(none("it has no address".into()));
        }
        // IPv4 first: a pod rarely has an IPv6 route out, and a silent one would eat the
        // whole connect timeout.
        addrs.sort_by_key(|a| a.is_ipv6());
        Ok(addrs)
    }
}

/// Any byte stream the proxy talks HTTP over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Resolution, the address check, TCP and TLS.
pub(crate) struct Upstream {
    resolver: Resolver,
    addresses: AddressPolicy,
    tls: TlsConnector,
}

impl Upstream {
    pub(crate) fn new(resolver: Resolver, addresses: AddressPolicy, tls: TlsConnector) -> Self {
        Upstream {
            resolver,
            addresses,
            tls,
        }
    }

    /// Resolves `host`, refuses it unless every address passes the address policy, and
    /// connects to one of those addresses, all within [`CONNECT_TIMEOUT`].
    pub(crate) async fn connect(&self, host: &Host, port: u16) -> Result<TcpStream, Refusal> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        self.connect_by(host, port, deadline).await
    }

    async fn connect_by(
        &self,
        host: &Host,
        port: u16,
        deadline: tokio::time::Instant,
    ) -> Result<TcpStream, Refusal> {
        let shown = host.to_string();
        let timed_out = |what: &str| {
            Refusal::new(
                Reason::ConnectTimeout,
                format!(
                    "devaipod: {what} {shown}:{port} took longer than {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )
        };
        let addrs = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => timeout_at(deadline, self.resolver.resolve(name))
                .await
                .map_err(|_| timed_out("resolving"))??,
        };
        self.addresses.check_all(&shown, &addrs)?;
        let mut last_error = String::new();
        for addr in addrs {
            let target = SocketAddr::new(addr, port);
            match timeout_at(deadline, TcpStream::connect(target)).await {
                Err(_) => return Err(timed_out("connecting to")),
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last_error = format!("{target}: {e}"),
            }
        }
        Err(Refusal::new(
            Reason::ConnectFailed,
            format!("devaipod: could not connect to {shown}:{port} ({last_error})"),
        ))
    }

    /// [`Upstream::connect`], then TLS with the server name `host`.
    async fn connect_tls(&self, host: &Host, port: u16) -> Result<Box<dyn Io>, Refusal> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let tcp = self.connect_by(host, port, deadline).await?;
        let server_name = match host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(name) => ServerName::try_from(name.clone()).map_err(|_| {
                Refusal::new(
                    Reason::UpstreamFailed,
                    format!("devaipod: {name} is not a TLS server name"),
                )
            })?,
        };
        match timeout_at(deadline, self.tls.connect(server_name, tcp)).await {
            Err(_) => Err(Refusal::new(
                Reason::ConnectTimeout,
                format!(
                    "devaipod: the TLS handshake with {host}:{port} took longer than {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(e)) => Err(Refusal::new(
                Reason::UpstreamFailed,
                format!(
                    "devaipod: the TLS handshake with {host}:{port} failed: {}",
                    one_line(&e.to_string())
                ),
            )),
            Ok(Ok(tls)) => Ok(Box::new(tls)),
        }
    }
}

/// The TLS client of credential upstreams: the web's roots (webpki-roots, built in: the
/// proxy's image has no certificate store), plus the test-only CA when configured.
pub(crate) fn tls_connector(test_ca_pem: Option<&str>) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = test_ca_pem {
        let certs = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("test.ca_pem: reading its PEM certificates")?;
        if certs.is_empty() {
            bail!("test.ca_pem holds no PEM certificate (BEGIN CERTIFICATE)");
        }
        for cert in certs {
            roots
                .add(cert)
                .context("test.ca_pem: a certificate is not a usable CA certificate")?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// Sends one request on a new HTTP/1.1 connection over `io`; the connection closes when
/// the response (its body included) is done.
pub(crate) async fn send_once(
    io: Box<dyn Io>,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, Refusal> {
    let mut sender = handshake(io).await?;
    send_on(&mut sender, req).await
}

async fn handshake(io: Box<dyn Io>) -> Result<SendRequest<ProxyBody>, Refusal> {
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_UPSTREAM_HEAD)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| upstream_failed(&e))?;
    // Its errors reach the request's response or body; nothing to do with them here.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send_on(
    sender: &mut SendRequest<ProxyBody>,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, Refusal> {
    match tokio::time::timeout(IDLE_LIMIT, sender.send_request(req)).await {
        Err(_) => Err(Refusal::new(
            Reason::UpstreamFailed,
            format!(
                "devaipod: the upstream sent no response within {} minutes",
                IDLE_LIMIT.as_secs() / 60
            ),
        )),
        Ok(result) => result.map_err(|e| upstream_failed(&e)),
    }
}

fn upstream_failed(e: &hyper::Error) -> Refusal {
    Refusal::new(
        Reason::UpstreamFailed,
        format!(
            "devaipod: the upstream's HTTP failed: {}",
            one_line(&e.to_string())
        ),
    )
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The headers of one hop only (RFC 9110 7.6.1), and the ones the `Connection` header
/// names: never forwarded in either direction. `Proxy-Authorization` is the agent's to
/// this proxy, never the upstream's.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The path prefix of credential routes on the proxy.
pub(crate) const CREDENTIAL_PREFIX: &str = "/devaipod/credentials/";

/// `/devaipod/credentials/PROVIDER/REST` -> (PROVIDER, `/REST`); (PROVIDER, "") when
/// nothing follows the provider. None for other paths.
pub(crate) fn split_credential_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix(CREDENTIAL_PREFIX)?;
    Some(match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    })
}

/// A provider's key, with its prefix, as the header value; never shown.
struct Secret(HeaderValue);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// One credential route: `/devaipod/credentials/PROVIDER/...` to the provider's base URL,
/// with its key in its header.
pub(crate) struct CredentialRoute {
    pub(crate) provider: String,
    tls: bool,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// The base URL's authority: the Host header of every forwarded request.
    authority: HeaderValue,
    /// The base URL's path without its trailing slash ("" for none).
    base_path: String,
    header: HeaderName,
    value: Secret,
    /// [`config::Credential::paths`].
    paths: Vec<String>,
    pool: Pool,
}

impl CredentialRoute {
    /// Checks the configuration of one route and reads its key (failing now, at the
    /// proxy's start, rather than at the agent's first request).
    pub(crate) fn load(c: &config::Credential) -> Result<Self> {
        let provider = &c.provider;
        let valid_id = !provider.is_empty()
            && provider != "."
            && provider != ".."
            && provider.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !valid_id {
            bail!(
                "credential provider {provider:?}: a provider id is a path segment of lowercase letters, digits, '.', '_' and '-'"
            );
        }
        let context = || format!("credential provider {provider}");
        let (tls, host, port, authority, base_path) =
            parse_base_url(&c.base_url).with_context(context)?;
        let header = parse_credential_header(&c.header).with_context(context)?;
        let value = read_key(Path::new(&c.secret_file), &c.prefix).with_context(context)?;
        if let Some(bad) = c.paths.iter().find(|p| {
            p.is_empty()
                || p.starts_with('/')
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        }) {
            bail!(
                "credential provider {provider}: path {bad:?} is not a relative path of letters, digits and -_./"
            );
        }
        Ok(CredentialRoute {
            provider: provider.clone(),
            tls,
            host,
            port,
            authority,
            base_path,
            header,
            value,
            paths: c.paths.clone(),
            pool: Pool::default(),
        })
    }

    /// The upstream's origin-form target for the rest of the proxy path (`/REST` or "")
    /// and the query. Dot segments are refused: the route stays under the base path.
    pub(crate) fn target(&self, rest: &str, query: Option<&str>) -> Result<Uri, Refusal> {
        let dot = rest.split('/').any(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            decoded == "." || decoded == ".."
        });
        if dot {
            return Err(Refusal::new(
                Reason::Malformed,
                "devaipod: a credential route's path may not contain '.' or '..' segments",
            ));
        }
        // Nor what an upstream might decode into a separator or a path parameter, so
        // that "the route stays under the base path" does not depend on the upstream.
        let lower = rest.to_ascii_lowercase();
        if ["%2f", "%5c", "\\", ";", "%3b", "%25"]
            .iter()
            .any(|bad| lower.contains(bad))
        {
            return Err(Refusal::new(
                Reason::Malformed,
                "devaipod: a credential route's path may not contain encoded slashes, backslashes, ';' or '%25'",
            ));
        }
        // A preset's route forwards its model API only: not the provider's account,
        // file or key management, which the same key may reach.
        if !self.paths.is_empty() {
            let p = rest.trim_start_matches('/');
            let allowed = self.paths.iter().any(|a| {
                p == a
                    || p.strip_prefix(a.as_str())
                        .is_some_and(|more| more.starts_with('/') || more.starts_with(':'))
            });
            if !allowed {
                return Err(Refusal::new(
                    Reason::NotAllowed,
                    format!(
                        "devaipod: the {} route forwards only {} below its base URL",
                        self.provider,
                        self.paths.join(", ")
                    ),
                ));
            }
        }
        let mut target = format!("{}{rest}", self.base_path);
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        target.parse::<Uri>().map_err(|_| {
            Refusal::new(
                Reason::Malformed,
                "devaipod: the credential route's path is not a valid request target",
            )
        })
    }

    /// The forwarded request's headers: hop-by-hop ones gone, Host the base URL's
    /// authority, and the route's header holding the key (any the agent sent under that
    /// name replaced; other headers left as they are).
    pub(crate) fn prepare_headers(&self, headers: &mut HeaderMap) {
        strip_hop_by_hop(headers);
        // The proxy already answered any `Expect: 100-continue` of the agent's.
        headers.remove(header::EXPECT);
        headers.insert(header::HOST, self.authority.clone());
        headers.insert(self.header.clone(), self.value.0.clone());
    }

    /// Sends the request on a kept connection when one is free, else on a new one (which
    /// is kept afterwards). `connected` runs once, when the request is about to go.
    pub(crate) async fn send(
        &self,
        upstream: &Upstream,
        req: Request<ProxyBody>,
        connected: impl FnOnce(),
    ) -> Result<Response<Incoming>, Refusal> {
        let mut connected = Some(connected);
        let mut announce = || {
            if let Some(f) = connected.take() {
                f();
            }
        };
        let mut req = req;
        if let Some(mut sender) = self.pool.take() {
            announce();
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.pool.put(sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Not sent (the connection closed meanwhile): try a new one.
                    Some(back) => req = back,
                    None => return Err(upstream_failed(&e.into_error())),
                },
            }
        }
        let io: Box<dyn Io> = if self.tls {
            upstream.connect_tls(&self.host, self.port).await?
        } else {
            Box::new(upstream.connect(&self.host, self.port).await?)
        };
        let mut sender = handshake(io).await?;
        announce();
        let response = send_on(&mut sender, req).await?;
        self.pool.put(sender);
        Ok(response)
    }
}

type BaseUrl = (bool, Host, u16, HeaderValue, String);

fn parse_base_url(text: &str) -> Result<BaseUrl> {
    if !(text.starts_with("https://") || text.starts_with("http://")) {
        bail!("base_url {text:?} must start with https:// (or http:// for a local test server)");
    }
    let uri: Uri = text
        .parse()
        .with_context(|| format!("base_url {text:?} is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            bail!("base_url {text:?} must start with https:// (or http:// for a local test server)")
        }
    };
    let authority = uri
        .authority()
        .with_context(|| format!("base_url {text:?} has no host"))?;
    if authority.as_str().contains('@') {
        bail!(
            "base_url {text:?} holds a user name or password; put the key in the route's secret instead"
        );
    }
    if uri.query().is_some() {
        bail!("base_url {text:?} has a query; give the base URL only (the agent's query is kept)");
    }
    let raw_host = authority.host();
    let host = match raw_host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(policy::check_request_host(raw_host).map_err(|r| {
            anyhow::anyhow!(
                "base_url {text:?}: the host is neither a name nor an IP address ({})",
                r.message
            )
        })?),
    };
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = HeaderValue::from_str(authority.as_str())
        .with_context(|| format!("base_url {text:?}: its host is not a valid Host header"))?;
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok((tls, host, port, authority, base_path))
}

fn parse_credential_header(name: &str) -> Result<HeaderName> {
    let header = HeaderName::from_bytes(name.as_bytes()).with_context(|| {
        format!("header {name:?} is not an HTTP header name (e.g. x-api-key or authorization)")
    })?;
    let reserved = [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::EXPECT,
    ];
    if reserved.contains(&header) || header == "keep-alive" || header == "proxy-connection" {
        bail!(
            "header {name:?} is one the proxy manages itself; the key goes in a header such as x-api-key or authorization"
        );
    }
    Ok(header)
}

/// Reads the key (one trailing newline dropped) and makes `prefix` + key the header
/// value. No error here shows the key.
fn read_key(path: &Path, prefix: &str) -> Result<Secret> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading its key from {} (devaipod mounts it as a file secret readable by the proxy's uid)",
            path.display()
        )
    })?;
    let mut key: &[u8] = &bytes;
    if let Some(rest) = key.strip_suffix(b"\n") {
        key = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if key.is_empty() {
        bail!("its key file {} is empty", path.display());
    }
    let mut value = Vec::with_capacity(prefix.len() + key.len());
    value.extend_from_slice(prefix.as_bytes());
    value.extend_from_slice(key);
    let mut value = HeaderValue::from_bytes(&value).map_err(|_| {
        anyhow::anyhow!(
            "its prefix and the key in {} are not a valid HTTP header value (a line break or another control character inside the key?)",
            path.display()
        )
    })?;
    value.set_sensitive(true);
    Ok(Secret(value))
}

/// Kept connections of one credential route.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
}

impl Pool {
    /// A kept connection that is free for a request now (not still streaming a response).
    fn take(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(sender, since)| !sender.is_closed() && since.elapsed() < POOL_IDLE);
        let free = idle.iter().position(|(sender, _)| sender.is_ready())?;
        Some(idle.swap_remove(free).0)
    }

    /// Keeps a connection once its response has begun; it becomes free when the response
    /// is done. The oldest goes when there are too many.
    fn put(&self, sender: SendRequest<ProxyBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= POOL_MAX {
            idle.remove(0);
        }
        idle.push((sender, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::state::tests::TempDir;

    fn route(
        dir: &TempDir,
        base_url: &str,
        header: &str,
        prefix: &str,
        key: &[u8],
    ) -> Result<CredentialRoute> {
        let secret = dir.path().join("key");
        let mut f = std::fs::File::create(&secret).expect("create");
        f.write_all(key).expect("write");
        CredentialRoute::load(&config::Credential {
            provider: "anthropic".into(),
            base_url: base_url.into(),
            header: header.into(),
            prefix: prefix.into(),
            secret_file: secret.display().to_string(),
            paths: Vec::new(),
        })
    }

    #[track_caller]
    fn ok_route(base_url: &str) -> CredentialRoute {
        let dir = TempDir::new("route");
        route(&dir, base_url, "x-api-key", "", b"k\n").expect("loads")
    }

    #[test]
    fn credential_paths_split_into_provider_and_rest() {
        assert_eq!(
            split_credential_path("/devaipod/credentials/anthropic/v1/messages"),
            Some(("anthropic", "/v1/messages"))
        );
        assert_eq!(
            split_credential_path("/devaipod/credentials/openai"),
            Some(("openai", ""))
        );
        assert_eq!(
            split_credential_path("/devaipod/credentials/openai/"),
            Some(("openai", "/"))
        );
        assert_eq!(
            split_credential_path("/devaipod/credentials/"),
            Some(("", ""))
        );
        assert_eq!(split_credential_path("/devaipod/credentialsx/a"), None);
        assert_eq!(split_credential_path("/v1/messages"), None);
    }

    #[test]
    fn targets_append_the_rest_and_keep_the_query() {
        let r = ok_route("https://api.example.com/v1/");
        let t = |rest, query| r.target(rest, query).expect("a target").to_string();
        assert_eq!(t("/messages", None), "/v1/messages");
        assert_eq!(
            t("/messages", Some("beta=true&x=%20")),
            "/v1/messages?beta=true&x=%20"
        );
        assert_eq!(t("", None), "/v1");
        assert_eq!(t("/", None), "/v1/");
        let root = ok_route("https://api.example.com");
        assert_eq!(root.target("", None).expect("target").to_string(), "/");
        assert_eq!(
            root.target("/chat", None).expect("target").to_string(),
            "/chat"
        );
        for rest in [
            "/../admin",
            "/a/./b",
            "/%2e%2e/x",
            "/.%2E/x",
            "/a/%2E",
            "/v1/..;/x",
            "/%2E%2E%2Fadmin",
            "/a%2f..%2f..%2fadmin",
            "/%2e%2e%5cx",
            "/a\\b",
            "/a%252e%252e/x",
        ] {
            let refusal = r.target(rest, None).expect_err(rest);
            assert_eq!(refusal.reason, Reason::Malformed, "{rest}");
        }
        assert!(r.target("/a..b/.x", None).is_ok());
    }

    #[test]
    fn a_routes_paths_bound_what_it_forwards() {
        let mut r = ok_route("https://api.example.com/v1");
        r.paths = vec![
            "messages".into(),
            "models".into(),
            "chat/completions".into(),
        ];
        for ok in [
            "/messages",
            "/messages/count_tokens",
            "/models",
            "/models/x:generateContent",
            "/chat/completions",
        ] {
            assert!(r.target(ok, None).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/",
            "/messagesx",
            "/organizations/invites",
            "/files",
            "/chat",
            "/chat/completionsx",
            "/Messages",
        ] {
            let refusal = r.target(bad, None).expect_err(bad);
            assert_eq!(refusal.reason, Reason::NotAllowed, "{bad}");
            assert_eq!(
                refusal.message,
                "devaipod: the anthropic route forwards only messages, models, chat/completions below its base URL"
            );
        }
    }

    #[test]
    fn base_urls_give_host_port_and_authority() {
        let r = ok_route("https://API.example.com/v1");
        assert_eq!(r.host, Host::Name("api.example.com".into()));
        assert_eq!((r.tls, r.port), (true, 443));
        assert_eq!(r.authority, "API.example.com");
        let r = ok_route("http://provider.test:8080");
        assert_eq!((r.tls, r.port, r.base_path.as_str()), (false, 8080, ""));
        assert_eq!(r.authority, "provider.test:8080");
        let r = ok_route("http://127.0.0.1:9/x");
        assert_eq!(r.host, Host::Ip("127.0.0.1".parse().expect("ip")));
        let r = ok_route("https://[2001:db8::1]:8443/");
        assert_eq!(r.host, Host::Ip("2001:db8::1".parse().expect("ip")));
        assert_eq!(r.port, 8443);
    }

    #[test]
    fn bad_routes_fail_with_the_reason() {
        let dir = TempDir::new("bad-route");
        for (url, header, says) in [
            ("ftp://x.example", "x-api-key", "must start with https://"),
            (
                "api.example.com/v1",
                "x-api-key",
                "must start with https://",
            ),
            (
                "https://user:pw@x.example",
                "x-api-key",
                "user name or password",
            ),
            ("https://x.example/v1?a=b", "x-api-key", "has a query"),
            (
                "https://127.1/",
                "x-api-key",
                "neither a name nor an IP address",
            ),
            ("https://x.example", "x api key", "not an HTTP header name"),
            ("https://x.example", "Host", "manages itself"),
            ("https://x.example", "content-length", "manages itself"),
        ] {
            let err = route(&dir, url, header, "", b"k").err().expect(url);
            let text = format!("{err:#}");
            assert!(text.contains(says), "{url} {header}: {text}");
            assert!(text.contains("credential provider anthropic"), "{text}");
        }
    }

    #[test]
    fn keys_lose_one_trailing_newline_and_never_show_in_errors() {
        let dir = TempDir::new("keys");
        let value = |key: &[u8], prefix: &str| {
            let r = route(&dir, "https://x.example", "authorization", prefix, key).expect("loads");
            r.value.0.as_bytes().to_vec()
        };
        assert_eq!(value(b"sk-1\n", ""), b"sk-1");
        assert_eq!(value(b"sk-1\r\n", "Bearer "), b"Bearer sk-1");
        assert_eq!(value(b"sk-1", ""), b"sk-1");
        // Only one newline goes: a second one is inside the key, which no header can hold.
        let two = route(&dir, "https://x.example", "x-api-key", "", b"sk-1\n\n");
        assert!(two.is_err());

        let sentinel = b"SENTINEL-KEY-inside\nSENTINEL-rest";
        let err = route(&dir, "https://x.example", "x-api-key", "", sentinel)
            .err()
            .expect("refused");
        let text = format!("{err:#} {err:?}");
        assert!(text.contains("not a valid HTTP header value"), "{text}");
        assert!(!text.contains("SENTINEL"), "{text}");

        let err = route(&dir, "https://x.example", "x-api-key", "", b"\n")
            .err()
            .expect("empty");
        assert!(format!("{err:#}").contains("is empty"));

        let missing = CredentialRoute::load(&config::Credential {
            provider: "anthropic".into(),
            base_url: "https://x.example".into(),
            header: "x-api-key".into(),
            prefix: String::new(),
            secret_file: dir.path().join("nope").display().to_string(),
            paths: Vec::new(),
        })
        .err()
        .expect("missing key file");
        let text = format!("{missing:#}");
        assert!(
            text.contains("reading its key from") && text.contains("nope"),
            "{text}"
        );

        let r = route(&dir, "https://x.example", "x-api-key", "", b"SENTINEL-KEY").expect("loads");
        assert_eq!(format!("{:?}", r.value), "Secret(redacted)");
        assert!(!format!("{:?}", r.value.0).contains("SENTINEL"));
    }

    #[test]
    fn provider_ids_are_path_segments() {
        let dir = TempDir::new("ids");
        for bad in ["", ".", "..", "Anthropic", "a/b", "a b"] {
            let secret = dir.path().join("key");
            std::fs::write(&secret, "k").expect("write");
            let err = CredentialRoute::load(&config::Credential {
                provider: bad.into(),
                base_url: "https://x.example".into(),
                header: "x-api-key".into(),
                prefix: String::new(),
                secret_file: secret.display().to_string(),
                paths: Vec::new(),
            })
            .err()
            .expect(bad);
            assert!(
                err.to_string().contains("a provider id is a path segment"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn prepared_headers_replace_the_credential_and_drop_hop_by_hop_ones() {
        let dir = TempDir::new("headers");
        let r = route(
            &dir,
            "https://api.example.com/v1",
            "x-api-key",
            "",
            b"real-key\n",
        )
        .expect("loads");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4097"));
        headers.append("x-api-key", HeaderValue::from_static("placeholder"));
        headers.append("X-Api-Key", HeaderValue::from_static("second"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-drop-me"),
        );
        headers.insert("x-drop-me", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.prepare_headers(&mut headers);

        let all: Vec<_> = headers.get_all("x-api-key").iter().collect();
        assert_eq!(all, ["real-key"]);
        assert!(all[0].is_sensitive());
        assert_eq!(headers[header::HOST], "api.example.com");
        assert_eq!(
            headers[header::AUTHORIZATION],
            "Bearer other",
            "another header name is left alone"
        );
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        for gone in [
            "proxy-authorization",
            "connection",
            "x-drop-me",
            "keep-alive",
            "transfer-encoding",
            "expect",
        ] {
            assert!(!headers.contains_key(gone), "{gone} was forwarded");
        }
    }

    #[test]
    fn fixed_names_are_checked() {
        let map =
            |name: &str, addr: &str| BTreeMap::from([(name.to_string(), vec![addr.to_string()])]);
        assert!(Resolver::fixed(&map("Provider.Test.", "198.51.100.1")).is_ok());
        let err = Resolver::fixed(&map("127.0.0.1", "198.51.100.1"))
            .err()
            .expect("ip");
        assert!(err.to_string().contains("is not a name"), "{err}");
        let err = Resolver::fixed(&map("a.test", "nope")).err().expect("addr");
        assert!(err.to_string().contains("is not an IP address"), "{err}");
        let err = Resolver::fixed(&BTreeMap::from([("a.test".to_string(), vec![])]))
            .err()
            .expect("empty");
        assert!(err.to_string().contains("no addresses"), "{err}");
    }

    #[tokio::test]
    async fn the_fixed_map_is_the_only_source_of_addresses() {
        let resolver = Resolver::fixed(&BTreeMap::from([(
            "a.test".to_string(),
            vec!["2001:db8::1".to_string(), "198.51.100.1".to_string()],
        )]))
        .expect("valid");
        let addrs = resolver.resolve("a.test").await.expect("mapped");
        assert_eq!(
            addrs,
            [
                "198.51.100.1".parse::<IpAddr>().expect("ip"),
                "2001:db8::1".parse().expect("ip")
            ]
        );
        let refusal = resolver.resolve("localhost").await.expect_err("not mapped");
        assert_eq!(refusal.reason, Reason::ResolveFailed);
        assert!(
            refusal.message.contains("test name map"),
            "{}",
            refusal.message
        );
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
        let resolver = Resolver::fixed(&BTreeMap::from([
            ("private.test".to_string(), vec!["10.0.0.1".to_string()]),
            (
                "mixed.test".to_string(),
                vec!["198.51.100.1".to_string(), "127.0.0.1".to_string()],
            ),
        ]))
        .expect("valid");
        let upstream = Upstream::new(
            resolver,
            AddressPolicy::new(Vec::new()),
            tls_connector(None).expect("tls"),
        );
        for name in ["private.test", "mixed.test"] {
            let refusal = upstream
                .connect(&Host::Name(name.into()), 443)
                .await
                .expect_err(name);
            assert_eq!(
                refusal.reason,
                Reason::PrivateAddress,
                "{name}: {}",
                refusal.message
            );
        }
        let refusal = upstream
            .connect(&Host::Ip("127.0.0.1".parse().expect("ip")), 80)
            .await
            .expect_err("literal");
        assert_eq!(refusal.reason, Reason::PrivateAddress);
    }

    #[test]
    fn the_test_ca_must_be_a_certificate() {
        assert!(tls_connector(Some(include_str!("../tests/fixtures/ca.pem"))).is_ok());
        let err = tls_connector(Some("not pem")).err().expect("refused");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
