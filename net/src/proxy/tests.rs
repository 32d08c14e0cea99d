//! The proxy end to end, in process, on the loopback: the agent's side is a hyper client,
//! the origins are small servers on 127.0.0.1 reached through the test name map (the
//! address policy permits the loopback only through its test-only knob). Waits are for
//! events (a log line, a channel), each bounded by [`WAIT`] so that a failure fails.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::*;
use crate::state::tests::TempDir;
use crate::state::{ALLOW_FILE, STATS_FILE, StatsReport};

/// The longest any awaited event may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
const SENTINEL: &str = "SENTINEL-KEY-d3v41p0d-never-shown";

async fn within<F: std::future::Future>(what: &'static str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

struct TestProxy {
    addr: SocketAddr,
    logs: watch::Receiver<Vec<String>>,
    state: std::path::PathBuf,
    _owned: Option<TempDir>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestProxy {
    /// A proxy with a state directory of its own.
    async fn start(config: serde_json::Value) -> TestProxy {
        let state = TempDir::new("proxy");
        let mut proxy = Self::start_at(config, state.path()).await;
        proxy._owned = Some(state);
        proxy
    }

    /// A proxy with the caller's state directory.
    async fn start_at(config: serde_json::Value, state: &Path) -> TestProxy {
        let config: Config = serde_json::from_value(config).expect("a valid configuration");
        let (tx, logs) = watch::channel(Vec::new());
        let addresses = AddressPolicy::new(deny_nets(&config).expect("valid deny_nets"))
            .permitting_loopback_for_tests();
        let proxy = Arc::new(
            Proxy::build(&config, state, addresses, Log::Capture(tx)).expect("the proxy builds"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        proxy.log_start(addr, &config);
        let task = tokio::spawn(serve(listener, proxy));
        TestProxy {
            addr,
            logs,
            state: state.to_path_buf(),
            _owned: None,
            task,
        }
    }

    /// Waits for a log line containing every one of `needles`; returns it.
    async fn wait_log(&self, needles: &[&str]) -> String {
        let mut logs = self.logs.clone();
        let found = tokio::time::timeout(
            WAIT,
            logs.wait_for(|lines| lines.iter().any(|l| needles.iter().all(|n| l.contains(n)))),
        )
        .await;
        match found {
            Ok(Ok(lines)) => lines
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .cloned()
                .unwrap_or_default(),
            _ => panic!("no log line with {needles:?} in {:#?}", self.all_logs()),
        }
    }

    fn all_logs(&self) -> Vec<String> {
        self.logs.borrow().clone()
    }

    fn stats(&self) -> StatsReport {
        let text = std::fs::read_to_string(self.state.join(STATS_FILE)).expect("stats.json");
        serde_json::from_str(&text).expect("stats.json parses")
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

fn full(text: &'static str) -> ProxyBody {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|e| match e {})
        .boxed()
}

/// A body whose frames the test sends one by one.
struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn channel_body() -> (mpsc::UnboundedSender<Bytes>, ProxyBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChannelBody(rx).boxed())
}

/// One HTTP/1.1 connection of the agent's to the proxy.
async fn agent(proxy: SocketAddr) -> SendRequest<ProxyBody> {
    let stream = TcpStream::connect(proxy)
        .await
        .expect("connecting to the proxy");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake with the proxy");
    tokio::spawn(conn.with_upgrades());
    sender
}

async fn send(proxy: SocketAddr, req: Request<ProxyBody>) -> Response<Incoming> {
    let mut sender = agent(proxy).await;
    within("the proxy's response", sender.send_request(req))
        .await
        .expect("a response from the proxy")
}

/// The proxy's own answer: status, refusal code, message.
async fn refusal_of(response: Response<Incoming>) -> (StatusCode, String, String) {
    let status = response.status();
    let code = response
        .headers()
        .get(REFUSED_HEADER)
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let body = within("the refusal's body", response.into_body().collect())
        .await
        .expect("a body")
        .to_bytes();
    (
        status,
        code,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

/// CONNECT through the proxy: the tunnel, or the proxy's answer.
async fn connect(
    proxy: SocketAddr,
    target: &str,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, (StatusCode, String, String)> {
    let req = Request::connect(target)
        .body(empty())
        .expect("a CONNECT request");
    let response = send(proxy, req).await;
    if response.status() == StatusCode::OK {
        let upgraded = within("the tunnel", hyper::upgrade::on(response))
            .await
            .expect("the tunnel opens");
        Ok(TokioIo::new(upgraded))
    } else {
        Err(refusal_of(response).await)
    }
}

/// A TCP origin that answers every chunk it reads with the same bytes, upper-cased.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let upper = buf[..n].to_ascii_uppercase();
                    if stream.write_all(&upper).await.is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A fake HTTP origin: its address, the requests it saw, the connections it accepted.
struct Origin {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    accepts: Arc<std::sync::atomic::AtomicUsize>,
}

/// What a fake origin saw of a request.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
}

type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<ProxyBody> + Send + Sync>;

/// An HTTP origin (TLS with the test certificate for provider.test when `tls`), that
/// reports each request's head and answers with `handler`.
async fn http_origin(tls: bool, handler: Handler) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let acceptor = tls.then(test_tls_acceptor);
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (handler, seen_tx, acceptor) = (handler.clone(), seen_tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let _ = seen_tx.send(Seen {
                        method: req.method().to_string(),
                        target: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = http1::Builder::new();
                let _ = match acceptor {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    Origin {
        addr,
        seen: seen_rx,
        accepts,
    }
}

fn test_tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let certs =
        rustls_pemfile::certs(&mut include_str!("../../tests/fixtures/server.pem").as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the test certificate");
    let key = rustls_pemfile::private_key(
        &mut include_str!("../../tests/fixtures/server.key").as_bytes(),
    )
    .expect("the test key")
    .expect("a key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn hosts(names: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    names
        .iter()
        .map(|(n, a)| (n.to_string(), vec![a.to_string()]))
        .collect()
}

fn key_file(state: &TempDir) -> String {
    let path = state.path().join("provider.key");
    std::fs::write(&path, format!("{SENTINEL}\n")).expect("write the key");
    path.display().to_string()
}

#[tokio::test]
async fn connect_to_an_allowed_name_tunnels_bytes_both_ways() {
    let origin = echo_server().await;
    let port = origin.port();
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": [format!("allowed.test:{port}")],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    let mut tunnel = connect(proxy.addr, &format!("Allowed.Test.:{port}"))
        .await
        .expect("the tunnel opens");
    tunnel.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    within("the echo", tunnel.read_exact(&mut back))
        .await
        .expect("read");
    assert_eq!(&back, b"PING");
    drop(tunnel);

    proxy
        .wait_log(&[" allow CONNECT allowed.test ", &port.to_string()])
        .await;
    let done = proxy.wait_log(&[" done CONNECT allowed.test "]).await;
    assert!(done.contains(" up=4 down=4 "), "{done}");
    let line = proxy
        .all_logs()
        .into_iter()
        .find(|l| l.contains(" allow "))
        .expect("allow line");
    let time = line.split(' ').next().expect("a time");
    assert!(
        time.ends_with('Z') && time.len() == 24 && time.as_bytes()[10] == b'T',
        "{line}"
    );
}

#[tokio::test]
async fn connect_to_another_name_is_refused_logged_and_counted() {
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "pod": "mypod",
        "allow": ["allowed.test"],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1"), ("other.test", "127.0.0.1")])},
    }))
    .await;
    let (status, code, message) = connect(proxy.addr, "other.test:443")
        .await
        .expect_err("refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code, "not-allowed");
    assert_eq!(
        message,
        "devaipod: other.test:443 is not on this pod's allowlist (add it with: devaipod allow mypod other.test)\n"
    );
    let (_, _, message) = connect(proxy.addr, "allowed.test:8443")
        .await
        .expect_err("other port");
    assert!(
        message.contains("devaipod allow mypod allowed.test:8443)"),
        "{message}"
    );

    proxy
        .wait_log(&[" refuse CONNECT other.test 443 not-allowed"])
        .await;
    // stats.json is written before the refusal is answered.
    let stats = proxy.stats();
    assert_eq!((stats.allowed, stats.refused), (0, 2));
    assert_eq!(stats.last_refused[0].name, "allowed.test");
    assert_eq!(stats.last_refused[0].port, Some(8443));
    assert_eq!(stats.last_refused[1].name, "other.test");
    assert_eq!(stats.last_refused[1].reason, "not-allowed");
    assert_eq!(stats.last_refused[1].method, "CONNECT");
}

#[tokio::test]
async fn ip_literals_are_refused_in_every_spelling() {
    let origin = echo_server().await;
    let port = origin.port();
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["allowed.test"],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    for target in [
        format!("127.0.0.1:{port}"),
        "[::1]:443".to_string(),
        "[::ffff:127.0.0.1]:443".to_string(),
        "2130706433:443".to_string(),
        "0x7f000001:443".to_string(),
        "0177.0.0.1:443".to_string(),
        "127.1:443".to_string(),
        "198.51.100.1:443".to_string(),
    ] {
        let (status, code, message) = connect(proxy.addr, &target).await.expect_err(&target);
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "ip-literal"),
            "{target}: {message}"
        );
        assert!(message.contains("allows names only"), "{message}");
    }
    let req = Request::get(format!("http://127.0.0.1:{port}/"))
        .body(empty())
        .expect("request");
    let (status, code, _) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "ip-literal")
    );
    proxy
        .wait_log(&[" refuse CONNECT 2130706433 443 ip-literal"])
        .await;
    proxy
        .wait_log(&[" refuse CONNECT [::1] 443 ip-literal"])
        .await;
}

#[tokio::test]
async fn names_resolving_to_private_or_host_addresses_are_refused() {
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["private.test", "host.test", "metadata.test"],
        "deny_nets": ["198.51.100.0/24"],
        "test": {"hosts": hosts(&[
            ("private.test", "10.0.0.1"),
            ("host.test", "198.51.100.7"),
            ("metadata.test", "169.254.169.254"),
        ])},
    }))
    .await;
    let (status, code, message) = connect(proxy.addr, "private.test:443")
        .await
        .expect_err("private");
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "private-address")
    );
    assert!(
        message.contains("private.test resolves to 10.0.0.1, a private address"),
        "{message}"
    );
    let (_, code, message) = connect(proxy.addr, "host.test:443")
        .await
        .expect_err("host");
    assert_eq!(code, "host-address", "{message}");
    let req = Request::get("http://metadata.test/latest/meta-data/")
        .body(empty())
        .expect("request");
    let (_, code, message) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(code, "private-address", "{message}");
    assert!(message.contains("link-local"), "{message}");
    proxy
        .wait_log(&[" refuse CONNECT private.test 443 private-address"])
        .await;
    proxy
        .wait_log(&[" refuse CONNECT host.test 443 host-address"])
        .await;
    proxy
        .wait_log(&[" refuse GET metadata.test 80 private-address"])
        .await;
    assert_eq!(proxy.stats().refused, 3);
}

#[tokio::test]
async fn an_unknown_name_fails_with_resolve_failed() {
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["nowhere.test"],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    let (status, code, _) = connect(proxy.addr, "nowhere.test:443")
        .await
        .expect_err("unknown");
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_GATEWAY, "resolve-failed")
    );
    proxy
        .wait_log(&[" fail CONNECT nowhere.test 443 resolve-failed"])
        .await;
    let stats = proxy.stats();
    assert_eq!((stats.refused, stats.last_refused.len()), (0, 0));
}

#[tokio::test]
async fn allow_add_and_remove_take_effect_without_a_restart() {
    let origin = echo_server().await;
    let port = origin.port();
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": [],
        "test": {"hosts": hosts(&[("later.test", "127.0.0.1")])},
    }))
    .await;
    let target = format!("later.test:{port}");
    let (_, code, _) = connect(proxy.addr, &target)
        .await
        .expect_err("not yet allowed");
    assert_eq!(code, "not-allowed");

    state::edit_allowlist(&proxy.state, std::slice::from_ref(&target), &[]).expect("allow --add");
    let mut tunnel = connect(proxy.addr, &target).await.expect("allowed now");
    tunnel.write_all(b"x").await.expect("write");
    let mut back = [0u8; 1];
    within("the echo", tunnel.read_exact(&mut back))
        .await
        .expect("read");
    assert_eq!(&back, b"X");
    proxy.wait_log(&[" allowlist reloaded entries=1"]).await;

    state::edit_allowlist(&proxy.state, &[], std::slice::from_ref(&target))
        .expect("allow --remove");
    let (_, code, _) = connect(proxy.addr, &target)
        .await
        .expect_err("removed again");
    assert_eq!(code, "not-allowed");
    // The tunnel opened while it was allowed is closed too (`devaipod deny`).
    proxy
        .wait_log(&[" done CONNECT later.test ", "end=denied"])
        .await;
    let mut rest = Vec::new();
    within("the closed tunnel", tunnel.read_to_end(&mut rest))
        .await
        .expect("read to the end");
    assert!(rest.is_empty(), "{rest:?}");
    let on_disk = std::fs::read_to_string(proxy.state.join(ALLOW_FILE)).expect("allow.json");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&on_disk).expect("array"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_state_directory_keeps_its_allowlist_across_restarts() {
    let state = TempDir::new("restart");
    let config = json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["first.test"],
        "test": {"hosts": hosts(&[("first.test", "127.0.0.1")])},
    });
    let proxy = TestProxy::start_at(config.clone(), state.path()).await;
    state::edit_allowlist(
        &proxy.state,
        &["second.test".to_string()],
        &["first.test".to_string()],
    )
    .expect("edit");
    drop(proxy);
    let again = TestProxy::start_at(config, state.path()).await;
    again.wait_log(&[" listen ", "entries=1"]).await;
    let (_, code, _) = connect(again.addr, "first.test:443")
        .await
        .expect_err("removed by allow");
    assert_eq!(code, "not-allowed");
}

#[tokio::test]
async fn mode_none_refuses_every_name_but_serves_credential_routes() {
    let handler: Handler = Arc::new(|_req| Response::new(full("ok")));
    let Origin {
        addr: origin,
        mut seen,
        ..
    } = http_origin(false, handler).await;
    let state = TempDir::new("none");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "none",
            "allow": ["allowed.test"],
            "credentials": [{
                "provider": "local",
                "base_url": format!("http://provider.test:{}/api", origin.port()),
                "header": "authorization",
                "prefix": "Bearer ",
                "secret_file": key,
            }],
            "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1"), ("provider.test", "127.0.0.1")])},
        }),
        state.path(),
    )
    .await;
    let (status, code, message) = connect(proxy.addr, "allowed.test:443")
        .await
        .expect_err("none");
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "network-none")
    );
    assert!(message.contains("network mode is none"), "{message}");

    let req = Request::get("/devaipod/credentials/local/tags")
        .body(empty())
        .expect("request");
    let response = send(proxy.addr, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = within("the origin's request", seen.recv())
        .await
        .expect("seen");
    assert_eq!(seen.target, "/api/tags");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {SENTINEL}").as_str()
    );
}

#[tokio::test]
async fn a_credential_route_sets_the_key_and_streams_server_sent_events() {
    let (events_tx, events_rx) = mpsc::unbounded_channel::<Bytes>();
    let events_rx = Arc::new(std::sync::Mutex::new(Some(events_rx)));
    let handler: Handler = Arc::new(move |_req| {
        let rx = events_rx.lock().expect("lock").take().expect("one request");
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(ChannelBody(rx).boxed())
            .expect("response")
    });
    let Origin {
        addr: origin,
        mut seen,
        ..
    } = http_origin(true, handler).await;
    let state = TempDir::new("credential");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "allow": [],
            "credentials": [{
                "provider": "anthropic",
                "base_url": format!("https://provider.test:{}/v1", origin.port()),
                "header": "x-api-key",
                "secret_file": key,
            }],
            "test": {
                "hosts": hosts(&[("provider.test", "127.0.0.1")]),
                "ca_pem": include_str!("../../tests/fixtures/ca.pem"),
            },
        }),
        state.path(),
    )
    .await;

    let req = Request::post("/devaipod/credentials/anthropic/messages?beta=true")
        .header("host", "evil.test")
        .header("x-api-key", "placeholder")
        .header("authorization", "Bearer agent-token")
        .header("proxy-authorization", "Basic YWdlbnQ6cHc=")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(full(r#"{"stream":true}"#))
        .expect("request");
    let mut sender = agent(proxy.addr).await;
    let response = within("the response head", sender.send_request(req))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let seen = within("the origin's request", seen.recv())
        .await
        .expect("seen");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/v1/messages?beta=true");
    assert_eq!(
        seen.headers["host"],
        format!("provider.test:{}", origin.port()).as_str()
    );
    let keys: Vec<_> = seen.headers.get_all("x-api-key").iter().collect();
    assert_eq!(keys, [SENTINEL]);
    assert_eq!(seen.headers["authorization"], "Bearer agent-token");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(!seen.headers.contains_key("proxy-authorization"));

    // The first event reaches the agent before the origin has sent the second.
    let mut body = response.into_body();
    events_tx
        .send(Bytes::from_static(b"data: one\n\n"))
        .expect("send");
    let first = within("the first event", body.frame())
        .await
        .expect("a frame")
        .expect("ok");
    assert_eq!(first.into_data().expect("data"), "data: one\n\n");
    events_tx
        .send(Bytes::from_static(b"data: two\n\n"))
        .expect("send");
    let second = within("the second event", body.frame())
        .await
        .expect("a frame")
        .expect("ok");
    assert_eq!(second.into_data().expect("data"), "data: two\n\n");
    drop(events_tx);
    let end = within("the end of the body", body.frame()).await;
    assert!(end.is_none(), "the body ends when the origin's does");

    let allow = proxy.wait_log(&[" allow credential provider.test "]).await;
    assert!(allow.ends_with("provider=anthropic"), "{allow}");
    let done = proxy.wait_log(&[" done credential provider.test "]).await;
    assert!(
        done.contains(" up=15 down=22 ") && done.contains("status=200"),
        "{done}"
    );
    let logs = proxy.all_logs().join("\n");
    assert!(!logs.contains(SENTINEL), "the key is in the log:\n{logs}");
    assert!(
        !logs.contains("beta=true") && !logs.contains("messages"),
        "a path or query is in the log:\n{logs}"
    );
    assert!(
        !logs.contains("agent-token") && !logs.contains("evil.test"),
        "a header is in the log:\n{logs}"
    );
}

#[tokio::test]
async fn a_credential_route_also_answers_in_absolute_form_naming_the_proxy() {
    let handler: Handler = Arc::new(|_req| Response::new(full("ok")));
    let Origin {
        addr: origin,
        mut seen,
        ..
    } = http_origin(false, handler).await;
    let state = TempDir::new("absolute-own");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "credentials": [{
                "provider": "local",
                "base_url": format!("http://provider.test:{}/api", origin.port()),
                "header": "x-api-key",
                "secret_file": key,
            }],
            "test": {"hosts": hosts(&[("provider.test", "127.0.0.1")])},
        }),
        state.path(),
    )
    .await;
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "http://{host}:{}/devaipod/credentials/local/tags?x=1",
            proxy.addr.port()
        );
        let response = send(
            proxy.addr,
            Request::get(url).body(empty()).expect("request"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
        let seen = within("the origin's request", seen.recv())
            .await
            .expect("seen");
        assert_eq!(seen.target, "/api/tags?x=1");
        assert_eq!(seen.headers["x-api-key"], SENTINEL);
    }
    // Another port of the loopback is no route of the proxy's: an IP literal.
    let url = format!(
        "http://127.0.0.1:{}/devaipod/credentials/local/tags",
        origin.port()
    );
    let (_, code, _) = refusal_of(
        send(
            proxy.addr,
            Request::get(url).body(empty()).expect("request"),
        )
        .await,
    )
    .await;
    assert_eq!(code, "ip-literal");
}

#[tokio::test]
async fn a_credential_route_streams_the_request_body_and_reuses_its_connection() {
    let (frames_tx, mut frames) = mpsc::unbounded_channel::<Bytes>();
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let frames_tx = frames_tx.clone();
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let mut incoming = req.into_body();
            let mut total = 0;
            while let Some(Ok(frame)) = incoming.frame().await {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    let _ = frames_tx.send(data);
                }
            }
            let _ = tx.send(Bytes::from(format!("got {total}")));
        });
        Response::new(body)
    });
    let Origin {
        addr: origin,
        mut seen,
        accepts,
    } = http_origin(false, handler).await;
    let state = TempDir::new("upload");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "credentials": [{
                "provider": "openai",
                "base_url": format!("http://provider.test:{}/", origin.port()),
                "header": "authorization",
                "prefix": "Bearer ",
                "secret_file": key,
            }],
            "test": {"hosts": hosts(&[("provider.test", "127.0.0.1")])},
        }),
        state.path(),
    )
    .await;

    for round in 0..2 {
        let (up_tx, up) = channel_body();
        let req = Request::post("/devaipod/credentials/openai/v1/chat/completions")
            .body(up)
            .expect("request");
        let mut sender = agent(proxy.addr).await;
        let response = tokio::spawn(async move { sender.send_request(req).await });
        up_tx.send(Bytes::from_static(b"part one;")).expect("send");
        let first = within("the first part at the origin", frames.recv())
            .await
            .expect("a frame");
        assert_eq!(first, "part one;", "round {round}");
        up_tx.send(Bytes::from_static(b"part two")).expect("send");
        let second = within("the second part at the origin", frames.recv())
            .await
            .expect("a frame");
        assert_eq!(second, "part two");
        drop(up_tx);
        let response = within("the response", response)
            .await
            .expect("joined")
            .expect("response");
        let body = within("the body", response.into_body().collect())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "got 17");
        let seen = within("the origin's request", seen.recv())
            .await
            .expect("seen");
        assert_eq!(seen.target, "/v1/chat/completions");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {SENTINEL}").as_str()
        );
        proxy
            .wait_log(&[" done credential provider.test ", " up=17 down=6 "])
            .await;
    }
    // The second request went over the first one's connection to the origin.
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    let allows = proxy
        .all_logs()
        .iter()
        .filter(|l| l.contains(" allow credential "))
        .count();
    assert_eq!(allows, 2);
}

#[tokio::test]
async fn credential_routes_refuse_private_upstreams_and_unknown_providers() {
    let state = TempDir::new("cred-private");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "credentials": [{
                "provider": "anthropic",
                "base_url": "https://internal.test/v1",
                "header": "x-api-key",
                "secret_file": key,
            }],
            "test": {"hosts": hosts(&[("internal.test", "10.1.2.3")])},
        }),
        state.path(),
    )
    .await;
    let req = Request::post("/devaipod/credentials/anthropic/messages")
        .body(full("{}"))
        .expect("request");
    let (status, code, message) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "private-address"),
        "{message}"
    );
    assert!(!message.contains(SENTINEL));

    let req = Request::get("/devaipod/credentials/openai/models")
        .body(empty())
        .expect("request");
    let (status, code, message) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "unknown-provider")
    );
    assert!(
        message.contains("no credential route for provider openai (configured: anthropic)"),
        "{message}"
    );

    let req = Request::get("/devaipod/credentials/anthropic/../../admin")
        .body(empty())
        .expect("request");
    let (status, code, _) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "malformed")
    );

    let req = Request::get("/")
        .header("host", "provider.test")
        .body(empty())
        .expect("request");
    let (status, code, message) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "unknown-route")
    );
    assert!(
        message.contains("/devaipod/credentials/PROVIDER/..."),
        "{message}"
    );

    proxy
        .wait_log(&[" refuse credential internal.test 443 private-address provider=anthropic"])
        .await;
    proxy
        .wait_log(&[" refuse credential - - unknown-provider provider=openai"])
        .await;
    proxy.wait_log(&[" refuse GET - - unknown-route"]).await;
    let logs = proxy.all_logs().join("\n");
    assert!(!logs.contains(SENTINEL), "{logs}");
}

#[tokio::test]
async fn a_credential_host_needs_an_entry_for_a_plain_connect() {
    let handler: Handler = Arc::new(|_req| Response::new(full("ok")));
    let Origin { addr: origin, .. } = http_origin(false, handler).await;
    let state = TempDir::new("cred-connect");
    let key = key_file(&state);
    let proxy = TestProxy::start_at(
        json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "credentials": [{
                "provider": "local",
                "base_url": format!("http://provider.test:{}", origin.port()),
                "header": "x-api-key",
                "secret_file": key,
            }],
            "test": {"hosts": hosts(&[("provider.test", "127.0.0.1")])},
        }),
        state.path(),
    )
    .await;
    let target = format!("provider.test:{}", origin.port());
    let (_, code, _) = connect(proxy.addr, &target).await.expect_err("no entry");
    assert_eq!(code, "not-allowed");
    let req = Request::get(format!("http://{target}/"))
        .body(empty())
        .expect("request");
    let (_, code, _) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(code, "not-allowed");
}

#[tokio::test]
async fn plain_http_is_forwarded_in_origin_form_and_redirects_are_passed_back() {
    let handler: Handler = Arc::new(|_req| {
        Response::builder()
            .status(302)
            .header("location", "http://elsewhere.test/next")
            .header("connection", "x-origin-hop")
            .header("x-origin-hop", "1")
            .body(full("moved"))
            .expect("response")
    });
    let Origin {
        addr: origin,
        mut seen,
        ..
    } = http_origin(false, handler).await;
    let port = origin.port();
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": [format!("allowed.test:{port}"), "elsewhere.test"],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1"), ("elsewhere.test", "127.0.0.1")])},
    }))
    .await;
    let req = Request::get(format!("http://user:pw@allowed.test:{port}/path/x?q=1"))
        .header("host", "wrong.test")
        .header("proxy-authorization", "Basic eDp5")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-end-to-end", "kept")
        .body(empty())
        .expect("request");
    let response = send(proxy.addr, req).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "http://elsewhere.test/next");
    assert!(!response.headers().contains_key("x-origin-hop"));
    let body = within("the body", response.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "moved");

    let seen_first = within("the origin's request", seen.recv())
        .await
        .expect("seen");
    assert_eq!(seen_first.target, "/path/x?q=1");
    assert_eq!(
        seen_first.headers["host"],
        format!("allowed.test:{port}").as_str()
    );
    assert_eq!(seen_first.headers["x-end-to-end"], "kept");
    for gone in ["proxy-authorization", "x-hop"] {
        assert!(
            !seen_first.headers.contains_key(gone),
            "{gone} reached the origin"
        );
    }
    proxy
        .wait_log(&[" done GET allowed.test ", " status=302"])
        .await;
    // The redirect was not followed: the origin saw one request only.
    assert!(seen.try_recv().is_err(), "the proxy followed the redirect");
    let logs = proxy.all_logs().join("\n");
    assert!(!logs.contains("/path/x") && !logs.contains("q=1"), "{logs}");
}

#[tokio::test]
async fn https_in_absolute_form_and_bad_targets_are_malformed() {
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["allowed.test"],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    let req = Request::get("https://allowed.test/")
        .body(empty())
        .expect("request");
    let (status, code, message) = refusal_of(send(proxy.addr, req).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "malformed")
    );
    assert!(
        message.contains("https:// goes through CONNECT"),
        "{message}"
    );
    let (status, code, _) = connect(proxy.addr, "bad_name.test:443")
        .await
        .expect_err("malformed");
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "malformed")
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    // Read while writing: the proxy answers and closes before it has read all of it.
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    });
    let big = "a".repeat(MAX_REQUEST_HEAD * 2);
    let head = format!("GET /devaipod/credentials/x HTTP/1.1\r\nHost: p\r\nX-Big: {big}\r\n\r\n");
    let _ = writer.write_all(head.as_bytes()).await;
    let answer = within("the proxy's answer", answer)
        .await
        .expect("the reader");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn many_tunnels_at_once() {
    let origin = echo_server().await;
    let port = origin.port();
    let proxy = TestProxy::start(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": [format!("allowed.test:{port}")],
        "test": {"hosts": hosts(&[("allowed.test", "127.0.0.1")])},
    }))
    .await;
    let mut tunnels = Vec::new();
    for _ in 0..100 {
        tunnels.push(
            connect(proxy.addr, &format!("allowed.test:{port}"))
                .await
                .expect("opens"),
        );
    }
    // All are open together; each still answers.
    for (i, tunnel) in tunnels.iter_mut().enumerate() {
        let text = format!("t{i:03}");
        tunnel.write_all(text.as_bytes()).await.expect("write");
        let mut back = [0u8; 4];
        within("an echo", tunnel.read_exact(&mut back))
            .await
            .expect("read");
        assert_eq!(back, text.to_ascii_uppercase().as_bytes());
    }
    drop(tunnels);
    let mut logs = proxy.logs.clone();
    within(
        "100 done lines",
        logs.wait_for(|l| l.iter().filter(|l| l.contains(" done CONNECT ")).count() == 100),
    )
    .await
    .expect("the log");
}

#[test]
fn the_proxy_fails_at_start_without_its_key_and_never_shows_it() {
    let state = TempDir::new("no-key");
    let bad_key = state.path().join("bad.key");
    std::fs::write(&bad_key, format!("{SENTINEL}\nsecond line\n")).expect("write");
    for (file, says) in [
        (state.path().join("missing.key"), "reading its key from"),
        (bad_key, "not a valid HTTP header value"),
    ] {
        let config: Config = serde_json::from_value(json!({
            "listen": "127.0.0.1:0",
            "mode": "allowlist",
            "credentials": [{
                "provider": "anthropic",
                "base_url": "https://api.example.com",
                "header": "x-api-key",
                "secret_file": file.display().to_string(),
            }],
            "test": {"hosts": hosts(&[("api.example.com", "198.51.100.1")])},
        }))
        .expect("config");
        let (tx, _rx) = watch::channel(Vec::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _guard = runtime.enter();
        let err = Proxy::build(
            &config,
            state.path(),
            AddressPolicy::new(Vec::new()),
            Log::Capture(tx),
        )
        .err()
        .expect("refused");
        let text = format!("{err:#} {err:?}");
        assert!(
            text.contains(says) && text.contains("credential provider anthropic"),
            "{text}"
        );
        assert!(!text.contains(SENTINEL), "{text}");
    }
}

#[test]
fn a_bad_configured_entry_stops_the_start() {
    let state = TempDir::new("bad-entry");
    let config: Config = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["ok.test", "0x7f000001"],
        "test": {"hosts": hosts(&[("ok.test", "198.51.100.1")])},
    }))
    .expect("config");
    let (tx, _rx) = watch::channel(Vec::new());
    let err = Proxy::build(
        &config,
        state.path(),
        AddressPolicy::new(Vec::new()),
        Log::Capture(tx),
    )
    .err()
    .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("the configuration's allow") && text.contains("\"0x7f000001\""),
        "{text}"
    );
}

/// No crate that could print a dependency's `tracing`/`log` events (and with them a
/// request's headers) is linked: `RUST_LOG` has nothing to raise.
#[test]
fn no_log_subscriber_is_linked() {
    let lock = include_str!("../../Cargo.lock");
    for subscriber in [
        "tracing-subscriber",
        "tracing-appender",
        "tracing-log",
        "env_logger",
        "pretty_env_logger",
        "log4rs",
        "simplelog",
        "simple_logger",
        "fern",
        "flexi_logger",
        "stderrlog",
    ] {
        assert!(
            !lock.contains(&format!("name = \"{subscriber}\"")),
            "{subscriber} is in Cargo.lock"
        );
    }
}
