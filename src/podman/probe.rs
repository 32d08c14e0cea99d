//! Readiness: `up` returns when the agent answers over HTTP on the pod's loopback.
//!
//! The host cannot dial into a rootless pod's network namespace, and the user's image
//! need not contain curl, so devaipod runs *itself* (the hidden `__probe` command) inside
//! the pod's network namespace: `nsenter --net` rootful, `podman unshare nsenter --net`
//! rootless. That one subprocess polls every 50 ms with a short per-request timeout
//! (opencode can leave a request unanswered if it arrives just before it is ready),
//! while devaipod watches the agent container and gives up at once if it dies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::Engine;
use super::apply::Cancel;
use crate::plan::{PodPlan, Role};

/// How often the probe polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one probe request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often devaipod checks that the agent container is still running.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Log lines shown when the agent fails to come up.
const LOG_LINES: usize = 20;

/// Parses `http://HOST:PORT/PATH` (IP literal hosts only; the probe runs inside the pod).
pub fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("probe URL {url:?} must start with http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| anyhow!("probe URL {url:?} needs an IP:PORT authority"))?;
    Ok((addr, path.to_string()))
}

/// One HTTP request; true when the server answered with a status line that means it is
/// serving (2xx, or 401 when a password is set).
pub fn probe_once(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    head.starts_with("HTTP/") && (status.starts_with('2') || status == "401")
}

/// The `__probe` command: poll `url` until it answers or `timeout` passes. Blocking; runs
/// in its own process inside the pod's network namespace.
pub fn run_probe(url: &str, timeout: Duration) -> Result<()> {
    let (addr, path) = parse_url(url)?;
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        if probe_once(addr, &path, REQUEST_TIMEOUT) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{url} did not answer within {}s", timeout.as_secs());
        }
        if let Some(rest) = POLL_INTERVAL.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// PID of a process in the pod's network namespace (the infra container's).
async fn netns_pid(engine: &Engine, pod: &str) -> Result<i64> {
    let pod_json = engine.inspect_pod(pod).await?;
    let infra = pod_json["InfraContainerID"]
        .as_str()
        .ok_or_else(|| anyhow!("pod {pod} has no infra container"))?;
    let infra_json = engine.inspect_container(infra).await?;
    infra_json["State"]["Pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("the infra container of pod {pod} is not running"))
}

/// The command that runs devaipod with `args` inside the network namespace of `pid`:
/// `nsenter` rootful, `podman unshare nsenter` rootless.
pub fn nsenter_command(
    rootless: bool,
    podman: &std::path::Path,
    exe: &std::path::Path,
    pid: i64,
    args: &[String],
) -> Vec<String> {
    let mut argv = Vec::new();
    if rootless {
        argv.push(podman.display().to_string());
        argv.push("unshare".into());
    }
    argv.extend([
        "nsenter".to_string(),
        format!("--net=/proc/{pid}/ns/net"),
        "--".into(),
        exe.display().to_string(),
    ]);
    argv.extend(args.iter().cloned());
    argv
}

/// Inside a toolbox no route into the pod's namespaces exists (its user namespace is a
/// child of the one owning the pod). There devaipod runs itself in a short-lived
/// helper container that joins the pod: the workspace's image, hardened like the
/// agent, with devaipod's binary mounted read-only from a path the host also sees.
pub fn toolbox_command(
    podman: &std::path::Path,
    socket: &std::path::Path,
    pod: &str,
    name: &str,
    image: &str,
    helper: &std::path::Path,
    args: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = [
        podman.display().to_string(),
        "--remote".into(),
        "--url".into(),
        format!("unix://{}", socket.display()),
        "run".into(),
        "--rm".into(),
        "--interactive".into(),
        "--pod".into(),
        pod.into(),
        "--label".into(),
        format!("{}={name}", crate::plan::labels::POD),
        "--label".into(),
        format!("{}=helper", crate::plan::labels::ROLE),
        "--user".into(),
        "65534:65534".into(),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        "--read-only".into(),
        "--volume".into(),
        format!("{}:/devaipod-helper:ro", helper.display()),
        "--entrypoint".into(),
        "/devaipod-helper".into(),
        image.into(),
    ]
    .into_iter()
    .collect();
    argv.extend(args.iter().cloned());
    argv
}

/// A copy of devaipod's binary at a path the host's engine can mount (a toolbox shares
/// $HOME, /tmp and XDG_RUNTIME_DIR with the host, not /usr).
fn host_visible_exe(exe: &std::path::Path) -> Result<std::path::PathBuf> {
    let shared = ["/home/", "/tmp/", "/var/home/", "/run/user/"];
    if shared.iter().any(|p| exe.starts_with(p)) {
        return Ok(exe.to_path_buf());
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let copy = dir.join(format!("devaipod-helper-{}", crate::VERSION));
    let same = std::fs::metadata(&copy)
        .ok()
        .zip(std::fs::metadata(exe).ok())
        .is_some_and(|(a, b)| a.len() == b.len());
    if !same {
        std::fs::copy(exe, &copy)
            .with_context(|| format!("copying devaipod to {} for the helper", copy.display()))?;
    }
    Ok(copy)
}

/// The command that runs devaipod with `args` in the pod's network namespace, by
/// whichever route this host allows.
pub async fn in_pod_command(engine: &Engine, pod: &str, args: &[String]) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the devaipod executable")?;
    if super::connect::in_toolbox() {
        let ws = engine
            .inspect_container(&format!("{pod}-workspace"))
            .await?;
        let image = ws["ImageName"]
            .as_str()
            .or(ws["Config"]["Image"].as_str())
            .ok_or_else(|| anyhow!("cannot tell the image of {pod}-workspace"))?
            .to_string();
        let name = pod.strip_prefix("devaipod-").unwrap_or(pod);
        return Ok(toolbox_command(
            &super::connect::find_podman()?,
            engine.socket(),
            pod,
            name,
            &image,
            &host_visible_exe(&exe)?,
            args,
        ));
    }
    let pid = netns_pid(engine, pod).await?;
    let podman = if engine.rootless() {
        super::connect::find_podman()?
    } else {
        std::path::PathBuf::from("podman")
    };
    Ok(nsenter_command(engine.rootless(), &podman, &exe, pid, args))
}

/// One request to the agent's server, as the `__http` helper reads it on stdin (the
/// password travels here, never on a command line).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, e.g. `/session?directory=%2Fw`.
    pub path: String,
    pub body: Option<Value>,
    pub password: String,
    pub timeout_ms: u64,
}

/// The helper's answer on stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

/// The `__http` command: one request to the agent's server on the pod's loopback, from
/// inside the pod's network namespace. Reads [`HttpRequest`] on stdin, writes
/// [`HttpResponse`] on stdout.
pub fn run_http() -> Result<()> {
    use base64::Engine as _;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the request")?;
    let req: HttpRequest = serde_json::from_str(&input).context("parsing the request")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::plan::AGENT_PORT));
    let timeout = Duration::from_millis(req.timeout_ms);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to the agent on {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = match &req.body {
        Some(b) => serde_json::to_vec(b)?,
        None => Vec::new(),
    };
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("opencode:{}", req.password));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Basic {auth}\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        req.method,
        req.path,
        body.len()
    );
    if req.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    // Read until the response is complete by its own framing: the server may keep the
    // connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if response_complete(&raw) {
            break;
        }
        let n = stream.read(&mut buf).with_context(|| {
            format!("reading the agent's answer to {} {}", req.method, req.path)
        })?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let (status, body) = parse_response(&raw)?;
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let out = serde_json::to_string(&HttpResponse { status, body })?;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Whether `raw` holds a whole HTTP/1.1 response (by Content-Length, or the last chunk
/// of a chunked body). Without either, only the end of the stream tells.
pub fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

/// Splits an HTTP/1.1 response into its status and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("the agent's answer has no HTTP header"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("the agent's answer has no status"))?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| anyhow!("bad chunk size in the agent's answer"))?;
            if size == 0 {
                break;
            }
            let start = eol + 2;
            let end = (start + size).min(rest.len());
            out.extend_from_slice(&rest[start..end]);
            rest = rest.get(end + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok((status, body))
}

/// Sends one request to the pod's agent server (through `__http` in the pod's network
/// namespace) and returns its status and JSON body.
pub async fn agent_request(
    engine: &Engine,
    pod: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    password: &crate::secret::SecretValue,
) -> Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let argv = in_pod_command(engine, pod, &["__http".to_string()]).await?;
    let req = HttpRequest {
        method: method.into(),
        path: path.into(),
        body,
        password: password.expose().to_string(),
        timeout_ms: 30_000,
    };
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the agent request helper ({})", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&serde_json::to_vec(&req)?).await?;
    }
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).await?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).await?;
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!(
            "{method} {path} to the agent failed: {}",
            super::connect::last_lines(&err, 3)
        );
    }
    serde_json::from_str(&out).with_context(|| format!("reading the answer to {method} {path}"))
}

/// What to wait for: the pod, its agent container and the URL inside the pod.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub pod: &'a str,
    pub agent: &'a str,
    pub url: &'a str,
    pub timeout: Duration,
}

impl<'a> Target<'a> {
    /// The target a plan describes.
    pub fn of_plan(plan: &'a PodPlan) -> Result<Self> {
        let agent = plan
            .container(Role::Agent)
            .ok_or_else(|| anyhow!("the plan has no agent container"))?;
        Ok(Self {
            pod: &plan.pod.name,
            agent: &agent.name,
            url: &plan.readiness.url,
            timeout: Duration::from_secs(plan.readiness.timeout_secs),
        })
    }
}

/// Waits until the agent answers, the agent dies, the deadline passes or the user
/// cancels. On failure the error carries the agent's last log lines.
pub async fn wait_ready(engine: &Engine, target: &Target<'_>, cancel: &mut Cancel) -> Result<()> {
    let timeout = target.timeout;
    let args = [
        "__probe".to_string(),
        target.url.to_string(),
        "--timeout-ms".into(),
        timeout.as_millis().to_string(),
    ];
    let argv = in_pod_command(engine, target.pod, &args).await?;
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the readiness probe ({})", argv[0]))?;
    let mut stderr = child.stderr.take();
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let failure = loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the readiness probe")?;
                if status.success() {
                    return Ok(());
                }
                let mut msg = String::new();
                if let Some(mut e) = stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut msg).await;
                }
                let msg = super::connect::last_lines(&msg, 3);
                break format!("the agent did not answer on {} within {}s ({msg})", target.url, timeout.as_secs());
            }
            _ = watch.tick() => {
                let inspect = engine.inspect_container(target.agent).await?;
                if let Some(reason) = agent_stopped(&inspect) {
                    break format!("the agent container {} {reason}", target.agent);
                }
            }
            _ = cancel.wait_for(|c| *c) => {
                return Err(crate::Interrupted.into());
            }
        }
    };
    let _ = child.start_kill();
    Err(with_agent_logs(engine, target.agent, &failure).await)
}

/// `failure`, followed by the agent's last log lines.
async fn with_agent_logs(engine: &Engine, agent: &str, failure: &str) -> anyhow::Error {
    let logs = engine
        .logs_tail(agent, LOG_LINES)
        .await
        .unwrap_or_else(|e| format!("(could not read its logs: {e:#})"));
    anyhow!(
        "{failure}\n--- last {LOG_LINES} lines of {agent} ---\n{}",
        logs.trim_end()
    )
}

/// When the agent container has stopped: the error saying so, with its last log
/// lines. `None` while it runs (or cannot be inspected).
pub async fn explain_agent_death(engine: &Engine, agent: &str) -> Option<anyhow::Error> {
    let inspect = engine.inspect_container(agent).await.ok()?;
    let reason = agent_stopped(&inspect)?;
    let failure = format!("the agent container {agent} {reason}");
    Some(with_agent_logs(engine, agent, &failure).await)
}

/// `Some(reason)` when the inspected container is no longer running.
pub fn agent_stopped(inspect: &Value) -> Option<String> {
    let state = &inspect["State"];
    let status = state["Status"].as_str().unwrap_or_default();
    match status {
        "running" | "created" | "initialized" | "configured" => None,
        other => Some(format!(
            "is {other} (exit code {})",
            state["ExitCode"].as_i64().unwrap_or(-1)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_urls() {
        let (a, p) = parse_url("http://127.0.0.1:4096/global/health").expect("url");
        assert_eq!(a.to_string(), "127.0.0.1:4096");
        assert_eq!(p, "/global/health");
        assert_eq!(parse_url("http://127.0.0.1:80").expect("url").1, "/");
        assert!(parse_url("https://127.0.0.1:1/").is_err());
        assert!(parse_url("http://localhost:1/").is_err());
    }

    #[test]
    fn responses_are_complete_by_their_framing() {
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}"
        ));
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        ));
        assert!(response_complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert!(response_complete(chunked));
        assert!(!response_complete(&chunked[..chunked.len() - 5]));
        let (status, body) = parse_response(chunked).expect("parse");
        assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n\r\nabc"));
    }

    #[test]
    fn commands_enter_the_pod_by_the_hosts_route() {
        let podman = std::path::Path::new("/usr/bin/podman");
        let exe = std::path::Path::new("/x/devaipod");
        let args = ["__probe".to_string(), "http://127.0.0.1:1/".into()];
        let rootful = nsenter_command(false, podman, exe, 42, &args);
        assert_eq!(rootful[..3], ["nsenter", "--net=/proc/42/ns/net", "--"]);
        assert_eq!(
            rootful[3..],
            ["/x/devaipod", "__probe", "http://127.0.0.1:1/"]
        );
        let rootless = nsenter_command(true, podman, exe, 42, &args);
        assert_eq!(rootless[..3], ["/usr/bin/podman", "unshare", "nsenter"]);
        let tb = toolbox_command(
            podman,
            std::path::Path::new("/run/user/1000/podman/podman.sock"),
            "devaipod-x",
            "x",
            "localhost/img:1",
            std::path::Path::new("/home/u/devaipod"),
            &args,
        );
        let text = tb.join(" ");
        assert!(text.starts_with("/usr/bin/podman --remote --url unix:///run/user/1000/podman/podman.sock run --rm --interactive --pod devaipod-x"), "{text}");
        assert!(
            text.contains("--cap-drop ALL --security-opt no-new-privileges --read-only"),
            "{text}"
        );
        assert!(
            text.contains("--volume /home/u/devaipod:/devaipod-helper:ro"),
            "{text}"
        );
        assert!(
            text.ends_with("localhost/img:1 __probe http://127.0.0.1:1/"),
            "{text}"
        );
    }

    #[test]
    fn probe_sees_a_real_server_and_its_absence() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .expect("write");
        });
        assert!(probe_once(addr, "/global/health", Duration::from_secs(2)));
        server.join().expect("server");
        // Nothing listens there any more.
        assert!(!probe_once(addr, "/", Duration::from_millis(200)));
    }

    #[test]
    fn probe_times_out_on_a_silent_server() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts (through the backlog) but never answers, like opencode just before ready.
        let t = Instant::now();
        assert!(!probe_once(addr, "/", Duration::from_millis(300)));
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn agent_state() {
        let running = serde_json::json!({"State": {"Status": "running"}});
        assert_eq!(agent_stopped(&running), None);
        let dead = serde_json::json!({"State": {"Status": "exited", "ExitCode": 127}});
        assert_eq!(
            agent_stopped(&dead).as_deref(),
            Some("is exited (exit code 127)")
        );
    }
}
