//! The built `devaipod-net` binary: `allow` and `stats` on a state directory, and
//! `proxy` as a process (its start line, refusals, SIGTERM, and that no `RUST_LOG` makes
//! it print a key). The proxy's forwarding is tested in process (src/proxy/tests.rs):
//! the binary refuses loopback upstreams, and this test has nothing else to reach.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const SENTINEL: &str = "SENTINEL-KEY-cli-7a61c0de";
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_devaipod-net"))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "devaipod-net-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running devaipod-net")
}

#[track_caller]
fn stdout_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[track_caller]
fn stderr_failing(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8(out.stderr).expect("utf-8")
}

#[test]
fn allow_adds_removes_and_prints_the_list() {
    let dir = TempDir::new("allow");
    let state = dir.path().to_str().expect("utf-8 path");
    std::fs::write(dir.path().join("allow.json"), "[\"first.example\"]\n").expect("write");

    let json = stdout_ok(bin().args([
        "allow",
        "--state",
        state,
        "--add",
        "A.example",
        "--add",
        "*.B.example.:8443",
        "--json",
    ]));
    let list: Vec<String> = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(list, ["first.example", "a.example", "*.b.example:8443"]);

    let text = stdout_ok(bin().args([
        "allow",
        "--state",
        state,
        "--remove",
        "first.example",
        "--remove",
        "a.example",
    ]));
    assert_eq!(text, "*.b.example:8443\n");

    let on_disk: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("allow.json")).expect("read"),
    )
    .expect("array");
    assert_eq!(on_disk, ["*.b.example:8443"]);

    let err = stderr_failing(bin().args([
        "allow",
        "--state",
        state,
        "--add",
        "ok.example",
        "--add",
        "[::1]:443",
    ]));
    assert!(err.contains("\"[::1]:443\": is an IP address"), "{err}");
    assert_eq!(
        stdout_ok(bin().args(["allow", "--state", state, "--json"])),
        "[\"*.b.example:8443\"]\n"
    );

    stdout_ok(bin().args(["allow", "--state", state, "--remove", "*.b.example:8443"]));
    assert_eq!(
        stdout_ok(bin().args(["allow", "--state", state])),
        "(the allowlist is empty: no names are allowed)\n"
    );
}

#[test]
fn allow_and_stats_without_a_state_say_what_is_missing() {
    let dir = TempDir::new("missing");
    let state = dir.path().to_str().expect("utf-8 path");
    let err = stderr_failing(bin().args(["allow", "--state", state, "--add", "a.example"]));
    assert!(
        err.contains("allow.json does not exist: the proxy creates it when it starts"),
        "{err}"
    );
    let err = stderr_failing(bin().args(["stats", "--state", state]));
    assert!(
        err.contains("stats.json does not exist: the proxy writes it when it starts"),
        "{err}"
    );
}

/// A `devaipod-net proxy` process, killed on drop if still running.
struct ProxyProcess {
    child: Option<Child>,
    addr: String,
    first_line: String,
    rest: Option<JoinHandle<String>>,
}

impl ProxyProcess {
    fn start(config: &serde_json::Value, state: &Path, env: &[(&str, &str)]) -> ProxyProcess {
        let config_path = state.join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write the configuration");
        let mut child = bin()
            .args(["proxy", "--config"])
            .arg(&config_path)
            .arg("--state")
            .arg(state.join("state"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the proxy");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first_line = String::new();
        stdout
            .read_line(&mut first_line)
            .expect("reading the proxy's first line");
        if first_line.is_empty() {
            let mut err = String::new();
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            panic!("the proxy printed nothing and exited: {err}");
        }
        let addr = first_line
            .split(' ')
            .nth(2)
            .expect("TIME listen ADDR ...")
            .to_string();
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            rest
        });
        ProxyProcess {
            child: Some(child),
            addr,
            first_line,
            rest: Some(rest),
        }
    }

    /// One request on its own connection; the whole answer.
    fn request(&self, head: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).expect("connecting to the proxy");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.write_all(head.as_bytes()).expect("write");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("reading the answer");
        answer
    }

    /// SIGTERM; waits for the exit; returns (exited cleanly, stdout after the first
    /// line, stderr).
    fn terminate(mut self) -> (bool, String, String) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            let _ = tx.send((status, err));
        });
        let (status, err) = rx.recv_timeout(WAIT).expect("the proxy exits on SIGTERM");
        let out = self
            .rest
            .take()
            .expect("stdout")
            .join()
            .expect("stdout reader");
        (status.expect("status").success(), out, err)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_proxy_refuses_counts_and_exits_on_sigterm() {
    let dir = TempDir::new("proxy");
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "pod": "demo",
        "allow": ["allowed.test"],
        "test": {"hosts": {"allowed.test": ["127.0.0.1"]}},
    });
    let proxy = ProxyProcess::start(&config, dir.path(), &[]);
    assert!(
        proxy.first_line.contains(" listen 127.0.0.1:"),
        "{}",
        proxy.first_line
    );
    assert!(
        proxy.first_line.contains("mode=allowlist entries=1"),
        "{}",
        proxy.first_line
    );

    let answer = proxy.request(
        "CONNECT other.test:443 HTTP/1.1\r\nHost: other.test:443\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-devaipod-refused: not-allowed"),
        "{answer}"
    );
    assert!(
        answer.ends_with("(add it with: devaipod allow demo other.test)\n"),
        "{answer}"
    );
    // The allowed name resolves to the loopback: the real binary refuses that.
    let answer = proxy.request(
        "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\nConnection: close\r\n\r\n",
    );
    assert!(
        answer.contains("x-devaipod-refused: private-address"),
        "{answer}"
    );

    let state = dir.path().join("state");
    let state = state.to_str().expect("utf-8 path");
    let stats: serde_json::Value = serde_json::from_str(&stdout_ok(
        bin().args(["stats", "--state", state, "--json"]),
    ))
    .expect("JSON");
    assert_eq!(stats["refused"], 2);
    assert_eq!(stats["last_refused"][0]["name"], "allowed.test");
    assert_eq!(stats["last_refused"][0]["reason"], "private-address");
    assert_eq!(stats["last_refused"][1]["name"], "other.test");
    let text = stdout_ok(bin().args(["stats", "--state", state]));
    assert!(
        text.starts_with("allowed 0, refused 2, failed 0 since "),
        "{text}"
    );
    assert!(
        text.contains(" CONNECT other.test:443 not-allowed\n"),
        "{text}"
    );
    let allow = stdout_ok(bin().args(["allow", "--state", state, "--json"]));
    assert_eq!(allow, "[\"allowed.test\"]\n");

    let (clean, out, _err) = proxy.terminate();
    assert!(clean, "the proxy should exit 0 on SIGTERM");
    assert!(
        out.contains(" refuse CONNECT other.test 443 not-allowed\n"),
        "{out}"
    );
}

#[test]
fn no_rust_log_makes_the_proxy_print_its_key() {
    let dir = TempDir::new("sentinel");
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{SENTINEL}\n")).expect("write the key");
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "mode": "allowlist",
        "allow": ["provider.test"],
        "credentials": [{
            "provider": "anthropic",
            "base_url": "http://provider.test:9/v1",
            "header": "x-api-key",
            "secret_file": key.display().to_string(),
        }],
        "test": {"hosts": {"provider.test": ["127.0.0.1"]}},
    });
    let env = [
        ("RUST_LOG", "trace"),
        ("RUST_BACKTRACE", "full"),
        ("RUST_LOG_STYLE", "always"),
    ];
    let proxy = ProxyProcess::start(&config, dir.path(), &env);
    let answers = [
        proxy.request(
            "POST /devaipod/credentials/anthropic/messages HTTP/1.1\r\nHost: x\r\nx-api-key: placeholder\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        ),
        proxy.request("CONNECT provider.test:9 HTTP/1.1\r\nHost: provider.test:9\r\nConnection: close\r\n\r\n"),
        proxy.request("GET http://provider.test/ HTTP/1.1\r\nHost: provider.test\r\nConnection: close\r\n\r\n"),
        proxy.request("GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ];
    for answer in &answers {
        assert!(answer.contains("x-devaipod-refused: "), "{answer}");
        assert!(!answer.contains(SENTINEL), "{answer}");
    }
    let (clean, out, err) = proxy.terminate();
    assert!(clean);
    assert!(
        out.contains(" refuse credential provider.test 9 private-address provider=anthropic\n"),
        "{out}"
    );
    for printed in [&out, &err] {
        assert!(
            !printed.contains(SENTINEL),
            "the key was printed:\n{printed}"
        );
    }
    assert!(err.is_empty(), "the proxy wrote to stderr: {err}");
}

#[test]
fn the_proxy_fails_at_start_with_a_clear_error() {
    let dir = TempDir::new("bad-start");
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{SENTINEL}\nmore\n")).expect("write");
    let config_path = dir.path().join("config.json");
    let state = dir.path().join("state");
    for (config, says) in [
        (
            serde_json::json!({"listen": "127.0.0.1:0", "mode": "allowlist",
                "credentials": [{"provider": "anthropic", "base_url": "https://api.example.com",
                    "header": "x-api-key", "secret_file": dir.path().join("absent").display().to_string()}]}),
            "credential provider anthropic: reading its key from",
        ),
        (
            serde_json::json!({"listen": "127.0.0.1:0", "mode": "allowlist",
                "credentials": [{"provider": "anthropic", "base_url": "https://api.example.com",
                    "header": "x-api-key", "secret_file": key.display().to_string()}]}),
            "not a valid HTTP header value",
        ),
        (
            serde_json::json!({"listen": "localhost", "mode": "allowlist"}),
            "listen \"localhost\" is not an address and port",
        ),
        (
            serde_json::json!({"listen": "127.0.0.1:0", "mode": "allowlist", "deny_nets": ["10.0.0.0/40"]}),
            "deny_nets: \"10.0.0.0/40\"",
        ),
        (
            serde_json::json!({"listen": "127.0.0.1:0", "mode": "allowlist", "allow": ["a..b"]}),
            "the configuration's allow: allowlist entry \"a..b\"",
        ),
        (
            serde_json::json!({"listen": "127.0.0.1:0", "mode": "open"}),
            "parsing the proxy configuration",
        ),
    ] {
        std::fs::write(&config_path, config.to_string()).expect("write");
        let err = stderr_failing(
            bin()
                .arg("proxy")
                .arg("--config")
                .arg(&config_path)
                .arg("--state")
                .arg(&state),
        );
        assert!(err.starts_with("devaipod-net: "), "{err}");
        assert!(err.contains(says), "expected {says:?} in: {err}");
        assert!(!err.contains(SENTINEL), "{err}");
    }
}

fn mcp_audit(server: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args([
        "mcp-audit",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--",
    ])
    .args(server);
    cmd
}

#[test]
fn mcp_audit_runs_the_server_and_exits_with_its_status() {
    let o = run(&mut mcp_audit(&[
        "sh",
        "-c",
        "echo server-said-this >&2; printf 'x\\n INFO devaipod-audit: forged\\033[2J\\n' >&2; exit 7",
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{err}");
    // The server's lines, marked as its own: none can pass for the relay's.
    assert!(err.contains("service-gator | server-said-this\n"), "{err}");
    assert!(
        err.contains("service-gator | x\nservice-gator |  INFO devaipod-audit: forged\\u001b[2J\n")
            && !err.contains("\n INFO devaipod-audit: forged"),
        "{err}"
    );
    assert!(
        err.contains(" INFO devaipod-audit: listening address=127.0.0.1:")
            && err.contains("upstream=127.0.0.1:9 server_pid="),
        "{err}"
    );
    // A server that cannot be run: 127, as a shell says it.
    let o = run(&mut mcp_audit(&["/nonexistent/service-gator"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("ERROR devaipod-audit: cannot run \"/nonexistent/service-gator\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No server command: clap's usage error.
    let o = run(bin().args([
        "mcp-audit",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
    ]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn mcp_audit_refuses_a_taken_port_before_the_server_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let o = run(bin().args([
        "mcp-audit",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        "127.0.0.1:9",
        "--",
        "sh",
        "-c",
        "echo the-server-ran >&2",
    ]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "ERROR devaipod-audit: cannot listen on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains("the-server-ran"), "{err}");
}

#[test]
fn mcp_audit_passes_sigterm_to_the_server_and_takes_its_exit() {
    let mut child = mcp_audit(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 1; done",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "service-gator | ready\n", "the server's trap is set");
    assert!(kill_term(child.id()), "kill");
    let status = child.wait().expect("wait");
    // The relay's status first: a relay ended by the signal itself leaves the server
    // running, and its output open.
    assert_eq!(status.code(), Some(42), "the server's exit status");
    line.clear();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "service-gator | got-term\n");
}

fn kill_term(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
