//! The agent's HTTP API from inside the pod: the hidden `__http` helper runs in the
//! pod's network namespace ([`super::netns`]), reads one [`HttpRequest`] on stdin (the
//! password travels there, never on a command line), sends it to opencode on the pod's
//! loopback with hyper, and writes the [`HttpResponse`] on stdout. [`agent_request`]
//! is the host side that starts the helper.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use containers_api::conn::hyper;
use serde_json::Value;

use super::Engine;

/// One request to the agent's server, as the `__http` helper reads it on stdin (the
/// password travels here, never on a command line).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct HttpRequest {
    pub method: String,
    /// Path and query, e.g. `/session?directory=%2Fw`.
    pub path: String,
    pub body: Option<Value>,
    pub password: String,
    pub timeout_ms: u64,
}

/// The helper's answer on stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

/// The `__http` command: one request to the agent's server on the pod's loopback, from
/// inside the pod's network namespace. Reads [`HttpRequest`] on stdin, writes
/// [`HttpResponse`] on stdout. The helper is its own short process (devaipod's binary
/// run by [`agent_request`]), so it runs on the runtime `main` made; blocking on stdin
/// there holds up nothing else.
pub(crate) async fn run_http() -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the request")?;
    let req: HttpRequest = serde_json::from_str(&input).context("parsing the request")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::plan::AGENT_PORT));
    let response = send(addr, &req).await?;
    let out = serde_json::to_string(&response)?;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Sends `req` to the server at `addr` and reads its whole answer (hyper frames it by
/// Content-Length or chunks, so a server that keeps the connection open is fine).
/// The request's `timeout_ms` bounds the whole exchange.
pub(crate) async fn send(addr: SocketAddr, req: &HttpRequest) -> Result<HttpResponse> {
    let timeout = Duration::from_millis(req.timeout_ms);
    tokio::time::timeout(timeout, exchange(addr, req))
        .await
        .map_err(|_| {
            anyhow!(
                "the agent on {addr} did not answer {} {} within {}ms",
                req.method,
                req.path,
                req.timeout_ms
            )
        })?
}

async fn exchange(addr: SocketAddr, req: &HttpRequest) -> Result<HttpResponse> {
    use base64::Engine as _;
    use hyper::header;
    let client = loopback_client();
    let uri: hyper::Uri = format!("http://{addr}{}", req.path)
        .parse()
        .with_context(|| format!("the agent request path {:?} is not valid", req.path))?;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("opencode:{}", req.password));
    let mut builder = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Basic {auth}"))
        .header(header::ACCEPT, "application/json");
    let body = match &req.body {
        Some(b) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            serde_json::to_vec(b)?
        }
        None => Vec::new(),
    };
    let request = builder
        .body(hyper::Body::from(body))
        .context("building the agent request")?;
    let what = || format!("{} {} to the agent on {addr}", req.method, req.path);
    let response = client.request(request).await.with_context(what)?;
    let status = response.status().as_u16();
    let bytes = hyper::body::to_bytes(response.into_body())
        .await
        .with_context(|| format!("reading the agent's answer to {} {}", req.method, req.path))?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(HttpResponse { status, body })
}

/// An HTTP client for one request to a server on the pod's loopback (no pooled
/// connections: each helper process makes one or a few requests and exits). The
/// readiness probe uses it too.
pub(crate) fn loopback_client() -> hyper::Client<hyper::client::HttpConnector> {
    hyper::Client::builder()
        .pool_max_idle_per_host(0)
        .build_http::<hyper::Body>()
}

/// Sends one request to the pod's agent server (through `__http` in the pod's network
/// namespace) and returns its status and JSON body.
pub(crate) async fn agent_request(
    engine: &Engine,
    pod: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    password: &crate::secret::SecretValue,
) -> Result<HttpResponse> {
    use crate::process::{AsyncCommandRunExt, ProcessError, last_lines};
    let argv = super::netns::in_pod_command(engine, pod, &["__http".to_string()]).await?;
    let req = HttpRequest {
        method: method.into(),
        path: path.into(),
        body,
        password: password.expose().to_string(),
        timeout_ms: 30_000,
    };
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .run_with_input(&serde_json::to_vec(&req)?)
        .await
        .map_err(|e| match e {
            ProcessError::Failed { stderr, .. } => {
                anyhow!(
                    "{method} {path} to the agent failed: {}",
                    last_lines(&stderr, 3)
                )
            }
            spawn => anyhow::Error::new(spawn)
                .context(format!("starting the agent request helper ({})", argv[0])),
        })?;
    serde_json::from_slice(&out).with_context(|| format!("reading the answer to {method} {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server answering `answer` raw; hands back the request it read.
    /// With `hold`, it keeps the connection open that long after answering.
    fn serve(
        answer: &'static [u8],
        hold: Duration,
    ) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and a Content-Length body.
            loop {
                let n = s.read(&mut buf).expect("read");
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer).expect("write");
            std::thread::sleep(hold);
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, server)
    }

    fn request(method: &str, body: Option<Value>, timeout_ms: u64) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: "/session?directory=%2Fw".into(),
            body,
            password: "pw".into(),
            timeout_ms,
        }
    }

    #[tokio::test]
    async fn reads_a_content_length_answer_and_sends_the_password() {
        let (addr, server) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"id\":\"s1\"}",
            Duration::ZERO,
        );
        let r = send(
            addr,
            &request("POST", Some(serde_json::json!({"title": "t"})), 5000),
        )
        .await
        .expect("answer");
        assert_eq!((r.status, r.body["id"].as_str()), (200, Some("s1")));
        let seen = server.join().expect("server");
        assert!(
            seen.starts_with("POST /session?directory=%2Fw HTTP/1.1\r\n"),
            "{seen}"
        );
        // base64("opencode:pw")
        assert!(
            seen.contains("authorization: Basic b3BlbmNvZGU6cHc="),
            "{seen}"
        );
        assert!(seen.contains("content-type: application/json"), "{seen}");
        assert!(seen.ends_with(r#"{"title":"t"}"#), "{seen}");
    }

    #[tokio::test]
    async fn reads_a_chunked_answer_from_a_server_that_keeps_the_connection() {
        let (addr, server) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"a\"\r\n4\r\n:1}]\r\n0\r\n\r\n",
            Duration::from_secs(3),
        );
        let started = std::time::Instant::now();
        let r = send(addr, &request("GET", None, 10_000))
            .await
            .expect("answer");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "framing ends the read"
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, serde_json::json!([{"a": 1}]));
        assert!(server.join().expect("server").starts_with("GET "));
    }

    #[tokio::test]
    async fn empty_and_non_json_answers_keep_their_status() {
        let (addr, server) = serve(b"HTTP/1.1 204 No Content\r\n\r\n", Duration::from_secs(2));
        let r = send(addr, &request("GET", None, 5000))
            .await
            .expect("answer");
        assert_eq!((r.status, &r.body), (204, &Value::Null));
        server.join().expect("server");
        let (addr, server) = serve(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope",
            Duration::ZERO,
        );
        let r = send(addr, &request("GET", None, 5000))
            .await
            .expect("answer");
        assert_eq!((r.status, r.body.as_str()), (401, Some("nope")));
        server.join().expect("server");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts (through the backlog) but never answers.
        let started = std::time::Instant::now();
        let e = send(addr, &request("GET", None, 300))
            .await
            .expect_err("timeout");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(format!("{e:#}").contains("did not answer"), "{e:#}");
        drop(listener);
    }
}
