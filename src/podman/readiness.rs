//! Readiness: `up` returns when the agent answers over HTTP on the pod's loopback.
//!
//! The user's image need not contain curl, so devaipod runs *itself* (the hidden
//! `__probe` command) inside the pod's network namespace ([`super::netns`]). That one
//! subprocess polls every 50 ms with a short per-request timeout (opencode can leave a
//! request unanswered if it arrives just before it is ready), while devaipod watches
//! the agent container and gives up at once if it dies.
//! Each probe is one GET through hyper (as the agent's API client in
//! [`super::agent_http`]), bounded by its own timeout; only the status counts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::hyper;

use super::Engine;
use super::cancel::Cancel;
use super::inspect::ContainerState;
use crate::plan::{PodPlan, Role};

/// How often the probe polls.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one probe request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often devaipod checks that the agent container is still running.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Log lines shown when the agent fails to come up.
const LOG_LINES: usize = 20;

/// Parses `http://HOST:PORT/PATH` (IP literal hosts only; the probe runs inside the pod).
pub(crate) fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
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

/// One GET; true when the server answered, within `timeout`, with a status that means
/// it is serving (2xx, or 401 when a password is set).
pub(crate) async fn probe_once(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let Ok(uri) = format!("http://{addr}{path}").parse::<hyper::Uri>() else {
        return false;
    };
    let client = super::agent_http::loopback_client();
    // The answer's head is enough: its body is never read.
    match tokio::time::timeout(timeout, client.get(uri)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            status.is_success() || status == hyper::StatusCode::UNAUTHORIZED
        }
        _ => false,
    }
}

/// The `__probe` command: poll `url` until it answers or `timeout` passes. Runs in its
/// own process inside the pod's network namespace.
pub(crate) async fn run_probe(url: &str, timeout: Duration) -> Result<()> {
    let (addr, path) = parse_url(url)?;
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        if probe_once(addr, &path, REQUEST_TIMEOUT).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{url} did not answer within {}s", timeout.as_secs());
        }
        if let Some(rest) = POLL_INTERVAL.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// What to wait for: the pod, its agent container and the URL inside the pod.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    pub pod: &'a str,
    pub agent: &'a str,
    pub url: &'a str,
    pub timeout: Duration,
}

impl<'a> Target<'a> {
    /// The target a plan describes.
    pub(crate) fn of_plan(plan: &'a PodPlan) -> Result<Self> {
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
pub(crate) async fn wait_ready(
    engine: &Engine,
    target: &Target<'_>,
    cancel: &mut Cancel,
) -> Result<()> {
    let timeout = target.timeout;
    let args = [
        "__probe".to_string(),
        target.url.to_string(),
        "--timeout-ms".into(),
        timeout.as_millis().to_string(),
    ];
    let argv = super::netns::in_pod_command(engine, target.pod, &args).await?;
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
                // A Ctrl-C from a terminal reaches the probe too (it is in devaipod's
                // process group): it died of the interrupt, not of the agent.
                if super::cancel::requested() {
                    return Err(crate::Interrupted.into());
                }
                let mut msg = String::new();
                if let Some(mut e) = stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut msg).await;
                }
                let msg = crate::process::last_lines(&msg, 3);
                break format!("{} did not answer on {} within {}s ({msg})", target.agent, target.url, timeout.as_secs());
            }
            _ = watch.tick() => {
                let inspect = engine.inspect_container(target.agent).await?;
                if let Some(reason) = agent_stopped(&inspect.state) {
                    break format!("container {} {reason}", target.agent);
                }
            }
            _ = cancel.wait_for(|c| *c) => {
                return Err(crate::Interrupted.into());
            }
        }
    };
    let _ = child.start_kill();
    Err(with_logs(engine, target.agent, &failure).await)
}

/// `failure`, followed by the last log lines of `container` (the agent, or the gator
/// that died before its hardening check). The caller prints it escaped.
pub(crate) async fn with_logs(engine: &Engine, container: &str, failure: &str) -> anyhow::Error {
    let logs = engine
        .logs_tail(container, LOG_LINES)
        .await
        .unwrap_or_else(|e| format!("(could not read its logs: {e:#})"));
    anyhow!(
        "{failure}\n--- last {LOG_LINES} lines of {container} ---\n{}",
        logs.trim_end()
    )
}

/// When the agent container has stopped: the error saying so, with its last log
/// lines. `None` while it runs (or cannot be inspected).
pub(crate) async fn explain_agent_death(engine: &Engine, agent: &str) -> Option<anyhow::Error> {
    let inspect = engine.inspect_container(agent).await.ok()?;
    let reason = agent_stopped(&inspect.state)?;
    let failure = format!("the agent container {agent} {reason}");
    Some(with_logs(engine, agent, &failure).await)
}

/// `Some(reason)` when the inspected container is no longer running.
pub(crate) fn agent_stopped(state: &ContainerState) -> Option<String> {
    match state.status.as_str() {
        "running" | "created" | "initialized" | "configured" => None,
        // Podman 4 says `exited` and Podman 5 `stopped` for a process that ended by
        // itself (before and after its cleanup): the same thing to the user.
        "exited" | "stopped" => Some(format!("has exited (exit code {})", state.exit_code)),
        other => Some(format!("is {other} (exit code {})", state.exit_code)),
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

    #[tokio::test]
    async fn probe_sees_a_real_server_and_its_absence() {
        use std::io::{Read, Write};
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
        assert!(probe_once(addr, "/global/health", Duration::from_secs(2)).await);
        server.join().expect("server");
        // Nothing listens there any more.
        assert!(!probe_once(addr, "/", Duration::from_millis(200)).await);
    }

    #[tokio::test]
    async fn probe_counts_2xx_and_401_as_serving() {
        use std::io::{Read, Write};
        for (status, serving) in [
            ("204 No Content", true),
            ("401 Unauthorized", true),
            ("503 Service Unavailable", false),
            ("404 Not Found", false),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).expect("write");
            });
            assert_eq!(
                probe_once(addr, "/", Duration::from_secs(2)).await,
                serving,
                "{status}"
            );
            server.join().expect("server");
        }
    }

    #[tokio::test]
    async fn probe_times_out_on_a_silent_server() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts (through the backlog) but never answers, like opencode just before ready.
        let t = Instant::now();
        assert!(!probe_once(addr, "/", Duration::from_millis(300)).await);
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn agent_state() {
        let state = |status: &str, exit_code| ContainerState {
            status: status.into(),
            running: status == "running",
            pid: 0,
            exit_code,
        };
        assert_eq!(agent_stopped(&state("running", 0)), None);
        for status in ["exited", "stopped"] {
            assert_eq!(
                agent_stopped(&state(status, 127)).as_deref(),
                Some("has exited (exit code 127)"),
                "{status}"
            );
        }
        assert_eq!(
            agent_stopped(&state("paused", 0)).as_deref(),
            Some("is paused (exit code 0)")
        );
    }
}
