//! Real-Podman tests: `up`, `delete` and `--dry-run` against the engine of whoever runs
//! them (root for the rootful leg, an unprivileged user for the rootless leg; see the
//! Justfile). Each test uses unique names and the label `devaipod.test=<run>`, and a
//! guard removes what it made (kept with DEVAIPOD_TEST_KEEP=1). Without Podman these
//! tests fail with instructions; they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{assert_fails_with, init_repo, plan_container, wait_until};
use serde_json::Value;

const BASE_IMAGE: &str = "localhost/devaipod-base:latest";
const BROKEN_IMAGE: &str = "localhost/devaipod-test-broken:latest";
const TEST_LABEL: &str = "devaipod.test";

fn devaipod_bin() -> PathBuf {
    std::env::var_os("DEVAIPOD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_devaipod")))
}

fn podman(args: &[&str]) -> Output {
    match Command::new("podman").args(args).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run podman ({e}): these tests need a real Podman; run `just setup` (or `sudo apt-get install podman`) and `just image`"
        ),
    }
}

fn podman_ok(args: &[&str]) -> String {
    let o = podman(args);
    assert!(
        o.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn require_image(image: &str) {
    let o = podman(&["image", "exists", image]);
    assert!(
        o.status.success(),
        "image {image} is missing: build it with `just image` and `just test-images`"
    );
}

/// A unique workspace name for one test, and cleanup of everything labelled for it.
struct Guard {
    name: String,
    run: String,
}

impl Guard {
    fn new(test: &str) -> Self {
        let run = format!("{}-{}", std::process::id(), test);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            name: format!("t-{test}-{nanos:08x}"),
            run,
        }
    }

    fn label_arg(&self) -> String {
        format!("{TEST_LABEL}={}", self.run)
    }

    fn pod(&self) -> String {
        format!("devaipod-{}", self.name)
    }

    /// Everything labelled for this workspace: (pods, containers, volumes).
    fn leftovers(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let filter = format!("label=io.devaipod.pod={}", self.name);
        let lines = |s: String| -> Vec<String> {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        (
            lines(podman_ok(&["pod", "ps", "-q", "--filter", &filter])),
            lines(podman_ok(&["ps", "-aq", "--filter", &filter])),
            lines(podman_ok(&["volume", "ls", "-q", "--filter", &filter])),
        )
    }

    fn assert_nothing_left(&self) {
        let (p, c, v) = self.leftovers();
        assert!(
            p.is_empty() && c.is_empty() && v.is_empty(),
            "objects left for {}: pods {p:?} containers {c:?} volumes {v:?}",
            self.name
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if std::env::var_os("DEVAIPOD_TEST_KEEP").is_some() {
            return;
        }
        let filter = format!("label={TEST_LABEL}={}", self.run);
        for id in podman_ok(&["pod", "ps", "-q", "--filter", &filter]).lines() {
            let _ = podman(&["pod", "rm", "-f", "-t", "0", id]);
        }
        for id in podman_ok(&["volume", "ls", "-q", "--filter", &filter]).lines() {
            let _ = podman(&["volume", "rm", "-f", id]);
        }
    }
}

/// Removes a podman image when dropped (images a test built).
struct RmImage(String);

impl Drop for RmImage {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// Removes a podman volume when dropped (volumes a repo's mounts named).
struct RmVolume(String);

impl Drop for RmVolume {
    fn drop(&mut self) {
        let _ = podman(&["volume", "rm", "-f", &self.0]);
    }
}

/// Writes `content` to `path` as an executable file.
fn write_executable(path: &Path, content: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A throwaway git repo with a devcontainer.json.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(devcontainer: &str) -> Self {
        Self::with_prefix("devaipod-test-repo-", devcontainer)
    }

    fn with_prefix(prefix: &str, devcontainer: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        init_repo(
            dir.path(),
            &[
                (".devcontainer/devcontainer.json", devcontainer),
                ("hello.txt", "committed\n"),
            ],
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn head(&self) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

fn devaipod(args: &[&str]) -> Output {
    Command::new(devaipod_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("devaipod runs")
}

/// `devaipod up PATH --name NAME --label TEST_LABEL EXTRA...` for the guard's workspace.
fn up(g: &Guard, path: &str, extra: &[&str]) -> Output {
    let label = g.label_arg();
    let mut args = vec!["up", path, "--name", &g.name, "--label", &label];
    args.extend_from_slice(extra);
    devaipod(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "devaipod failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn exec(container: &str, user: Option<&str>, script: &str) -> String {
    let mut args = vec!["exec"];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    args.extend([container, "sh", "-c", script]);
    podman_ok(&args)
}

/// The private service's socket and pid from devaipod's `-v` log lines; `None` when
/// devaipod connected to an existing socket instead (asserted from its log).
fn private_service(log: &str) -> Option<(String, i32)> {
    let Some(line) = log
        .lines()
        .find(|l| l.contains("started a private podman service"))
    else {
        assert!(
            log.lines()
                .any(|l| l.contains("connected to podman") && l.contains("existing socket")),
            "devaipod neither started a service nor used an existing socket:\n{log}"
        );
        return None;
    };
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    let socket = field("socket=").expect("socket= in the log line");
    let pid = field("pid=")
        .and_then(|p| {
            p.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .ok()
        })
        .expect("pid= in the log line");
    Some((socket, pid))
}

/// True while a live (not zombie) process has this pid.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|r| r.trim_start())
            .is_some_and(|r| !r.starts_with('Z')),
        Err(_) => false,
    }
}

/// Spawns `up` on a repo whose agent never answers and returns once it is waiting for
/// the agent (read from its progress output), with everything it printed so far.
fn spawn_hanging_up(
    g: &Guard,
    repo: &Repo,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    let path = repo.path().to_string_lossy().into_owned();
    let mut child = Command::new(devaipod_bin())
        .args([
            "-v",
            "up",
            &path,
            "--name",
            &g.name,
            "--label",
            &g.label_arg(),
            "--timeout",
            "600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("read");
        assert!(
            n > 0,
            "devaipod exited before waiting for the agent: {seen}"
        );
        seen.push_str(&line);
        if line.contains("waiting for the agent") {
            break;
        }
    }
    (child, err, seen)
}

/// The agent's health answer, asked from the workspace (as its user) with the server
/// password the workspace has.
fn agent_health(ws: &str, _agent: &str) -> String {
    let password = exec(
        ws,
        Some("dev"),
        "cat /run/secrets/devaipod-opencode-password",
    );
    exec(
        ws,
        None,
        &format!("curl -s -m 5 -u opencode:{password} http://127.0.0.1:4096/global/health"),
    )
}

const BASE_CONFIG: &str = r#"{
  // comments and trailing commas are fine
  "image": "localhost/devaipod-base:latest",
  "remoteUser": "dev",
  "containerEnv": {"DEVAIPOD_CE": "from-repo-${localWorkspaceFolderBasename}"},
}"#;

#[test]
fn up_makes_a_ready_hardened_pod_and_delete_removes_it() {
    require_image(BASE_IMAGE);
    let g = Guard::new("up");
    let repo = Repo::new(BASE_CONFIG);
    std::fs::write(repo.path().join("hello.txt"), "uncommitted edit\n").expect("write");
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &["--json"]);
    let v = json_of(&out);
    assert!(
        stderr(&out).contains("uncommitted"),
        "no dirty-tree warning: {}",
        stderr(&out)
    );

    // The JSON names the pod and both containers.
    assert_eq!(v["name"], g.name.as_str());
    assert_eq!(v["pod"], g.pod().as_str());
    let containers = v["containers"].as_array().expect("containers");
    let roles: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["role"].as_str())
        .collect();
    assert_eq!(roles, ["agent", "workspace"]);
    for c in containers {
        assert!(c["id"].as_str().is_some_and(|id| id.len() == 64), "{c}");
    }
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());

    // The pod shares only the network namespace.
    let shared = podman_ok(&[
        "pod",
        "inspect",
        &g.pod(),
        "--format",
        "{{.SharedNamespaces}}",
    ]);
    assert_eq!(shared.trim(), "[net]");

    // The agent answers over HTTP, seen from the workspace through the shared netns.
    let health = agent_health(&ws, &agent);
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["healthy"], true);

    // containerEnv is the workspace's, with variables substituted; never the agent's.
    let base = repo
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        exec(&ws, Some("dev"), "printenv DEVAIPOD_CE").trim(),
        format!("from-repo-{base}")
    );
    assert_eq!(
        exec(&agent, None, "printenv DEVAIPOD_CE || echo absent").trim(),
        "absent"
    );

    // The agent runs with no capabilities and no-new-privileges, as its own uid.
    let status = exec(&agent, None, "cat /proc/1/status; id -u");
    for line in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(line), "agent lacks {line:?}:\n{status}");
    }
    // Its own uid: not root, not the workspace's user.
    assert_eq!(status.lines().last(), Some("4096"));
    let home = exec(&agent, None, "echo $HOME; touch $HOME/written && echo ok");
    assert_eq!(home.lines().collect::<Vec<_>>(), ["/home/agent", "ok"]);

    // The workspace has a clone of HEAD (without the uncommitted edit), owned by dev.
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    let script = format!(
        "cd {folder} && pwd && git rev-parse HEAD && cat hello.txt && stat -c %U hello.txt && git status --porcelain | wc -l"
    );
    let got = exec(&ws, Some("dev"), &script);
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        [
            folder.as_str(),
            repo.head().as_str(),
            "committed",
            "dev",
            "0"
        ]
    );
    // ... and no repo hook got installed or ran.
    let hooks = exec(
        &ws,
        None,
        &format!("ls {folder}/.git/hooks 2>/dev/null | wc -l"),
    );
    assert_eq!(hooks.trim(), "0");

    // Every object carries the devaipod labels.
    let objects = [
        ("pod", g.pod(), "{{json .Labels}}"),
        ("container", ws.clone(), "{{json .Config.Labels}}"),
        ("container", agent.clone(), "{{json .Config.Labels}}"),
        (
            "volume",
            format!("{}-workspace", g.pod()),
            "{{json .Labels}}",
        ),
        (
            "volume",
            format!("{}-agent-home", g.pod()),
            "{{json .Labels}}",
        ),
        (
            "volume",
            format!("{}-agent-repo", g.pod()),
            "{{json .Labels}}",
        ),
    ];
    for (kind, obj, format) in objects {
        let labels = podman_ok(&[kind, "inspect", &obj, "--format", format]);
        let labels: Value = serde_json::from_str(&labels).expect("labels JSON");
        assert_eq!(labels["io.devaipod.pod"], g.name.as_str(), "{obj}");
        assert!(labels["io.devaipod.role"].is_string(), "{obj}");
        assert_eq!(
            labels["io.devaipod.repo"],
            repo.path()
                .canonicalize()
                .expect("canon")
                .to_string_lossy()
                .as_ref(),
            "{obj}"
        );
        assert_eq!(
            labels["io.devaipod.version"],
            env!("CARGO_PKG_VERSION"),
            "{obj}"
        );
    }

    // delete removes everything; a second delete is an error.
    let del = devaipod(&["delete", &g.pod(), "--json"]);
    let removed = json_of(&del);
    assert_eq!(removed["pods"], serde_json::json!([g.pod()]));
    assert_eq!(removed["volumes"].as_array().map(Vec::len), Some(3));
    let mut gone: Vec<&str> = removed["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    gone.sort();
    assert_eq!(
        gone,
        [agent.as_str(), ws.as_str()],
        "infra containers are not listed"
    );
    assert_eq!(
        removed["secrets"],
        serde_json::json!([
            format!("{}-agent-password", g.pod()),
            format!("{}-agent-config", g.pod())
        ])
    );
    g.assert_nothing_left();
    let again = devaipod(&["delete", &g.name]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no workspace"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn up_rolls_back_everything_when_the_agent_dies() {
    require_image(BROKEN_IMAGE);
    let g = Guard::new("rollback");
    let repo = Repo::new(r#"{"image": "localhost/devaipod-test-broken:latest"}"#);
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The error says what happened and shows the agent's own last words.
    assert!(err.contains(&format!("{}-agent", g.pod())), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("this opencode fails on purpose"), "{err}");
    g.assert_nothing_left();
}

#[test]
fn dry_run_prints_the_plan_and_creates_nothing() {
    require_image(BASE_IMAGE);
    let g = Guard::new("dryrun");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &["--dry-run", "--json"]);
    let v = json_of(&out);
    assert_eq!(v["image"]["state"], "present");
    assert_eq!(v["pod"]["name"], g.pod().as_str());
    assert_eq!(v["containers"].as_array().map(Vec::len), Some(2));
    g.assert_nothing_left();

    // A missing image: the plan says so, still creates nothing, and `up` refuses.
    let out = devaipod(&[
        "up",
        &path,
        "--name",
        &g.name,
        "--image",
        "localhost/devaipod-no-such-image:1",
        "--dry-run",
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["image"]["state"], "missing");
    assert!(
        v["image"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("never pulls")),
        "{v}"
    );
    let out = devaipod(&[
        "up",
        &path,
        "--name",
        &g.name,
        "--image",
        "localhost/devaipod-no-such-image:1",
    ]);
    assert_fails_with(&out, "localhost/devaipod-no-such-image:1 is not available");
    g.assert_nothing_left();
}

#[test]
fn up_refuses_an_existing_pod_and_keeps_it() {
    require_image(BASE_IMAGE);
    let g = Guard::new("exists");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let first = up(&g, &path, &["--json"]);
    json_of(&first);
    let second = up(&g, &path, &[]);
    assert_fails_with(&second, "already exists");
    // The first pod is untouched and still running.
    let state = podman_ok(&["pod", "inspect", &g.pod(), "--format", "{{.State}}"]);
    assert_eq!(state.trim(), "Running");
    let del = devaipod(&["delete", &g.name]);
    assert!(del.status.success(), "{}", stderr(&del));
    g.assert_nothing_left();
}

#[test]
fn interrupting_up_removes_what_it_created() {
    require_image(BROKEN_IMAGE);
    // The test image's agent never answers in a repo folder named *hang*: `up` waits
    // until interrupted.
    let g = Guard::new("sigint");
    let repo = Repo::with_prefix(
        "devaipod-test-hang-",
        r#"{"image": "localhost/devaipod-test-broken:latest"}"#,
    );
    let (mut child, mut err, seen) = spawn_hanging_up(&g, &repo);
    let (pods, _, _) = g.leftovers();
    assert_eq!(pods.len(), 1, "the pod should exist while up waits");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    let status = child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    g.assert_nothing_left();
    // The private podman service it started is gone too.
    if let Some((socket, pid)) = private_service(&seen) {
        assert!(
            !alive(pid),
            "podman service {pid} ({socket}) outlived devaipod"
        );
        assert!(!Path::new(&socket).exists(), "{socket} was left behind");
    }
}

#[test]
fn killing_devaipod_takes_its_private_service_down() {
    require_image(BROKEN_IMAGE);
    let g = Guard::new("sigkill");
    let repo = Repo::with_prefix(
        "devaipod-test-hang-",
        r#"{"image": "localhost/devaipod-test-broken:latest"}"#,
    );
    let (mut child, _err, seen) = spawn_hanging_up(&g, &repo);
    let Some((socket, pid)) = private_service(&seen) else {
        // A user service is listening: devaipod started none, nothing to check.
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    assert!(alive(pid), "service {pid} should run while devaipod does");
    child.kill().expect("SIGKILL devaipod");
    child.wait().expect("wait");
    // The parent-death signal makes the service exit; wait for that, bounded.
    wait_until(
        &format!("podman service {pid} ({socket}) exits after SIGKILL of devaipod"),
        std::time::Duration::from_secs(20),
        || !alive(pid),
    );
}

#[test]
fn container_host_is_honoured() {
    require_image(BASE_IMAGE);
    let g = Guard::new("chost");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("podman.sock");
    let service = common::PodmanService::start(&socket);
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let out = Command::new(devaipod_bin())
        .args(["-v", "up", &path, "--name", &g.name, "--dry-run", "--json"])
        .env("CONTAINER_HOST", format!("unix://{}", socket.display()))
        .output()
        .expect("runs");
    drop(service);
    let v = json_of(&out);
    assert_eq!(v["image"]["state"], "present");
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("connected to podman")
            && l.contains(&socket.display().to_string())
            && l.contains("existing socket")),
        "{log}"
    );
    assert!(!log.contains("started a private podman service"), "{log}");
}

/// The `list --json` entry of this guard's workspace.
fn listed(g: &Guard) -> Value {
    let v = json_of(&devaipod(&["list", "--json"]));
    let all = v.as_array().expect("list --json prints an array");
    all.iter()
        .find(|e| e["name"] == g.name.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{} missing from list: {v}", g.name))
}

#[test]
fn list_status_stop_start_and_logs() {
    require_image(BASE_IMAGE);
    let g = Guard::new("life");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    json_of(&up(&g, &path, &["--json"]));
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());

    // list: the documented fields, the agent ready right after `up`.
    let e = listed(&g);
    assert_eq!(e["pod"], g.pod().as_str());
    assert_eq!(e["status"], "running");
    assert_eq!(e["agent_ready"], true);
    assert_eq!(e["image"], BASE_IMAGE);
    let canonical = repo.path().canonicalize().expect("canon");
    assert_eq!(e["repo"], canonical.to_string_lossy().as_ref());
    assert!(
        e["created"].as_str().is_some_and(|c| c.starts_with("20")),
        "{e}"
    );
    let containers: Vec<(String, String, String)> = e["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("role"), s("name"), s("state"))
        })
        .collect();
    assert_eq!(
        containers,
        [
            ("workspace".into(), ws.clone(), "running".into()),
            ("agent".into(), agent.clone(), "running".into())
        ]
    );

    // status: the list object plus volumes, mounts, ports and events.
    let s = json_of(&devaipod(&["status", &g.name, "--json"]));
    assert_eq!(s["name"], g.name.as_str());
    assert_eq!(s["agent_ready"], true);
    let mut volumes: Vec<&str> = s["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    volumes.sort();
    assert_eq!(
        volumes,
        [
            format!("{}-agent-home", g.pod()),
            format!("{}-agent-repo", g.pod()),
            format!("{}-workspace", g.pod())
        ]
    );
    assert!(
        s["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["container"] == agent.as_str() && m["destination"] == "/home/agent"),
        "{s}"
    );
    assert!(s["ports"].as_array().is_some());
    assert!(
        s["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|ev| ev["action"] == "start" && ev["name"] == agent.as_str()),
        "{s}"
    );

    // logs: the agent's own output.
    let logs = devaipod(&["logs", &g.name, "--tail", "50"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("opencode server listening"),
        "{logs:?}"
    );
    let none = devaipod(&["logs", &g.name, "--container", "gator"]);
    assert_fails_with(&none, "no gator container");

    // Data written in the workspace and in the agent's home...
    exec(&ws, Some("dev"), "echo kept > notes.txt");
    exec(&agent, None, "echo kept > $HOME/memory.txt");

    // logs --follow streams until the container stops.
    let mut follow = Command::new(devaipod_bin())
        .args(["logs", &g.name, "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let mut follow_out = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut follow_out, &mut line).expect("read");
        assert!(
            n > 0,
            "logs --follow ended before showing the agent's output"
        );
        if line.contains("opencode server listening") {
            break;
        }
    }

    // stop (twice: stopping a stopped pod is fine), then list shows it down.
    for _ in 0..2 {
        let o = devaipod(&["stop", &g.pod()]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let e = listed(&g);
    assert_eq!(e["status"], "exited");
    assert_eq!(e["agent_ready"], false);
    // The follower saw the agent stop and ended by itself.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(follow.wait());
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("logs --follow did not end after the pod stopped")
        .expect("wait");
    assert!(status.success(), "logs --follow exited with {status}");

    // start returns when the agent answers; the data survived.
    let o = devaipod(&["start", &g.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = listed(&g);
    assert_eq!(e["status"], "running");
    assert_eq!(e["agent_ready"], true);
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    assert_eq!(
        exec(&ws, None, &format!("cat {folder}/notes.txt")),
        "kept\n"
    );
    assert_eq!(exec(&agent, None, "cat $HOME/memory.txt"), "kept\n");
    let health = agent_health(&ws, &agent);
    assert!(health.contains("\"healthy\":true"), "{health}");

    // Commands on a missing workspace fail clearly.
    for cmd in ["status", "stop", "start", "logs"] {
        let o = devaipod(&[cmd, "t-no-such-workspace"]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).contains("no workspace t-no-such-workspace"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    let del = devaipod(&["delete", &g.name]);
    assert!(del.status.success(), "{}", stderr(&del));
    g.assert_nothing_left();
}

/// tests/security/agent-probe.sh: one check per hardening row, run inside the agent.
const AGENT_PROBE: &str = include_str!("security/agent-probe.sh");

#[test]
fn the_agent_sandbox_holds_from_inside() {
    require_image(BASE_IMAGE);
    let g = Guard::new("probe");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let up_out = up(&g, &path, &["--json"]);
    json_of(&up_out);
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());

    // The server password: a 0400 file of the agent's user, required by the server, and
    // nowhere else (inspect, devaipod's output, host argv).
    let listing = exec(
        &agent,
        None,
        "stat -c '%a %u' /run/secrets/devaipod-opencode-password",
    );
    assert_eq!(listing.trim(), "400 4096");
    let ws_listing = exec(
        &ws,
        None,
        "stat -c '%a %U' /run/secrets/devaipod-opencode-password",
    );
    assert_eq!(
        ws_listing.trim(),
        "400 dev",
        "the workspace's user holds the password too"
    );
    let password = exec(&agent, None, "cat /run/secrets/devaipod-opencode-password");
    assert!(password.len() >= 32, "password too short");
    let url = "http://127.0.0.1:4096/global/health";
    let code = |auth: &str| {
        exec(
            &ws,
            None,
            &format!("curl -s -o /dev/null -w '%{{http_code}}' {auth} {url}"),
        )
    };
    assert_eq!(code(""), "401", "the agent answered without the password");
    assert_eq!(code("-u opencode:wrong"), "401");
    assert_eq!(code(&format!("-u opencode:{password}")), "200");
    let inspect = podman_ok(&["inspect", &ws, &agent]);
    assert!(
        !inspect.contains(&password),
        "the password shows in podman inspect"
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&up_out.stdout),
        stderr(&up_out)
    );
    assert!(
        !printed.contains(&password),
        "devaipod printed the password"
    );
    let argv = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    assert!(
        !String::from_utf8_lossy(&argv.stdout).contains(&password),
        "the password is on an argv"
    );
    // Something the workspace shares only with itself.
    exec(&ws, None, "touch /dev/shm/devaipod-workspace-marker");
    let ws_uid = exec(&ws, None, "id -u");
    // Limits are enforced rootful (and on cgroup v2); rootless cgroup v1 ignores them.
    let limits = if nix::unistd::geteuid().is_root() {
        "1"
    } else {
        "0"
    };
    let mut child = Command::new("podman")
        .args([
            "exec",
            "-i",
            &agent,
            "sh",
            "-s",
            "--",
            ws_uid.trim(),
            limits,
            "4096",
            "8589934592",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman exec");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        AGENT_PROBE.as_bytes(),
    )
    .expect("send the probe");
    let out = child.wait_with_output().expect("probe");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the agent probe failed:\n{report}{}",
        stderr(&out)
    );
    assert!(report.contains("probe: 0 failure(s)"), "{report}");
    assert!(
        report.lines().filter(|l| l.starts_with("PASS")).count() >= 28,
        "{report}"
    );

    // Nothing outside the pod reaches the agent's port: not the host on the pod's
    // address (rootful pods have one), and the listener is on loopback only (checked above).
    let ip = podman_ok(&[
        "inspect",
        &agent,
        "--format",
        "{{.NetworkSettings.IPAddress}}",
    ]);
    let infra_ip = podman_ok(&[
        "pod",
        "inspect",
        &g.pod(),
        "--format",
        "{{.InfraContainerID}}",
    ]);
    let infra_ip = podman_ok(&[
        "inspect",
        infra_ip.trim(),
        "--format",
        "{{.NetworkSettings.IPAddress}}",
    ]);
    for addr in [ip.trim(), infra_ip.trim()] {
        if addr.is_empty() {
            continue;
        }
        let sock: std::net::SocketAddr = format!("{addr}:4096").parse().expect("addr");
        let reached =
            std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2)).is_ok();
        assert!(!reached, "the host reached the agent at {sock}");
    }
}

#[test]
fn nothing_the_agent_writes_in_git_runs_in_the_workspace() {
    require_image(BASE_IMAGE);
    let g = Guard::new("hooks");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    json_of(&up(&g, &path, &["--json"]));
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    let git = "git -c user.name=a -c user.email=a@example.invalid";

    // The agent plants hooks every way it can in its own clone, and commits one.
    let plant = format!(
        "cd {folder} && \
         mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch /tmp/hook-ran\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && \
         mkdir -p .githooks && cp .git/hooks/pre-commit .githooks/pre-commit && \
         git config core.hooksPath .githooks && git config core.fsmonitor 'touch /tmp/fsmonitor-ran; false' && \
         echo 'x filter=evil' > .gitattributes && git config filter.evil.clean 'touch /tmp/filter-ran; cat' && \
         {git} add -A && {git} commit -q -m 'agent work' && echo committed"
    );
    assert_eq!(exec(&agent, None, &plant).trim(), "committed");
    // In the agent's own clone they do run (the test has teeth).
    assert_eq!(
        exec(&agent, None, "test -e /tmp/hook-ran && echo ran").trim(),
        "ran"
    );

    // The workspace fetches the agent's work and commits on top: nothing runs.
    let work = format!(
        "cd {folder} && {git} fetch -q agent && {git} merge -q --ff-only agent/main && \
         touch x && {git} add -A && {git} commit -q -m 'human work' && {git} status --porcelain | wc -l"
    );
    assert_eq!(exec(&ws, Some("dev"), &work).trim(), "0");
    let ran = exec(
        &ws,
        None,
        "ls /tmp/hook-ran /tmp/fsmonitor-ran /tmp/filter-ran 2>/dev/null | wc -l",
    );
    assert_eq!(
        ran.trim(),
        "0",
        "something the agent wrote ran in the workspace"
    );
    // The workspace's git config is its own.
    let cfg = exec(
        &ws,
        Some("dev"),
        &format!("cd {folder} && git config --get core.hooksPath || echo unset"),
    );
    assert_eq!(cfg.trim(), "unset");
    // And the agent cannot write the workspace's clone at all.
    let mounts = podman_ok(&[
        "inspect",
        &agent,
        "--format",
        "{{range .Mounts}}{{.Name}} {{end}}",
    ]);
    assert!(
        !mounts.contains(&format!("{}-workspace", g.pod())),
        "{mounts}"
    );
}

#[test]
fn secrets_reach_only_their_consumer_and_never_leak() {
    require_image(BASE_IMAGE);
    let g = Guard::new("secrets");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("devaipod.toml");
    std::fs::write(
        &config,
        "[agent]\nsecrets = [\"DEVAIPOD_AGENT_SENTINEL\"]\n[trusted]\nsecrets = [\"DEVAIPOD_TRUSTED_SENTINEL\"]\n",
    )
    .expect("write config");
    let tag = format!("{:x}", std::process::id());
    let agent_value = format!("agent-sentinel-{tag}-9f1c");
    let trusted_value = format!("trusted-sentinel-{tag}-4d2e");
    let run = |args: &[&str]| {
        Command::new(devaipod_bin())
            .args(args)
            .env("DEVAIPOD_CONFIG", &config)
            .env("DEVAIPOD_AGENT_SENTINEL", &agent_value)
            .env("DEVAIPOD_TRUSTED_SENTINEL", &trusted_value)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .expect("devaipod runs")
    };
    let label = g.label_arg();
    let dry = run(&[
        "up",
        &path,
        "--name",
        &g.name,
        "--label",
        &label,
        "--dry-run",
        "--json",
    ]);
    let plan = json_of(&dry);
    let up_out = run(&["up", &path, "--name", &g.name, "--label", &label, "--json"]);
    json_of(&up_out);
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    let logs = run(&["logs", &g.name]);
    let ws_logs = run(&["logs", &g.name, "--container", "workspace"]);
    let status = run(&["status", &g.name, "--json"]);

    // The plan names each container's secrets and their files, never a value.
    let agent_plan = plan_container(&plan, "agent");
    let targets: Vec<&str> = agent_plan["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["target"].as_str())
        .collect();
    assert!(
        targets.contains(&"/run/secrets/DEVAIPOD_AGENT_SENTINEL"),
        "{targets:?}"
    );
    assert!(
        !targets.contains(&"/run/secrets/DEVAIPOD_TRUSTED_SENTINEL"),
        "{targets:?}"
    );

    // No value in devaipod's output (trace logging included), inspect, logs or argv.
    let mut seen = String::new();
    for o in [&dry, &up_out, &logs, &ws_logs, &status] {
        seen.push_str(&String::from_utf8_lossy(&o.stdout));
        seen.push_str(&stderr(o));
    }
    seen.push_str(&podman_ok(&["inspect", &ws, &agent]));
    seen.push_str(&podman_ok(&["pod", "inspect", &g.pod()]));
    for c in [&ws, &agent] {
        let o = podman(&["logs", c]);
        seen.push_str(&String::from_utf8_lossy(&o.stdout));
        seen.push_str(&stderr(&o));
    }
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    seen.push_str(&String::from_utf8_lossy(&ps.stdout));
    for value in [&agent_value, &trusted_value] {
        assert!(
            !seen.contains(value.as_str()),
            "a secret value leaked (see the outputs of this test)"
        );
    }

    // Each value reaches its consumer: the agent's server process has its key...
    let agent_env = exec(
        &agent,
        None,
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'",
    );
    assert!(agent_env.contains(&format!("DEVAIPOD_AGENT_SENTINEL={agent_value}")));
    let file = exec(
        &agent,
        None,
        "stat -c '%a %u' /run/secrets/DEVAIPOD_AGENT_SENTINEL",
    );
    assert_eq!(file.trim(), "400 4096");
    // ...the workspace has the trusted one as a file named by NAME_FILE...
    let ws_value = exec(&ws, None, "cat \"$DEVAIPOD_TRUSTED_SENTINEL_FILE\"");
    assert_eq!(ws_value, trusted_value);
    // ...and the agent has nothing of the trusted one: not in any process's environment,
    // not in its secret files, not in the files it can write.
    assert!(!agent_env.contains(&trusted_value));
    assert!(!agent_env.contains("DEVAIPOD_TRUSTED_SENTINEL"));
    let hits = exec(
        &agent,
        None,
        &format!(
            "grep -rls '{trusted_value}' /run /tmp /var/tmp /home/agent /workspaces 2>/dev/null | wc -l"
        ),
    );
    assert_eq!(hits.trim(), "0");

    // delete removes the secrets devaipod made.
    let del = devaipod(&["delete", &g.name, "--json"]);
    let removed = json_of(&del);
    assert_eq!(
        removed["secrets"].as_array().map(Vec::len),
        Some(4),
        "{removed}"
    );
    g.assert_nothing_left();
    let left = podman_ok(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(!left.contains(&g.pod()), "{left}");
}

#[test]
fn an_unset_secret_stops_up_before_anything_is_made() {
    require_image(BASE_IMAGE);
    let g = Guard::new("unset");
    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("devaipod.toml");
    std::fs::write(&config, "[agent]\nsecrets = [\"DEVAIPOD_UNSET_KEY\"]\n").expect("write");
    let o = Command::new(devaipod_bin())
        .args(["up", &path, "--name", &g.name, "--label", &g.label_arg()])
        .env("DEVAIPOD_CONFIG", &config)
        .env_remove("DEVAIPOD_UNSET_KEY")
        .output()
        .expect("runs");
    assert_fails_with(&o, "DEVAIPOD_UNSET_KEY is listed");
    g.assert_nothing_left();
}

#[test]
fn an_existing_podman_secret_is_used_and_kept() {
    require_image(BASE_IMAGE);
    let g = Guard::new("existing");
    let secret = format!("devaipod-test-existing-{}", std::process::id());
    let value = format!("existing-sentinel-{}", std::process::id());
    let mut create = Command::new("podman")
        .args(["secret", "create", &secret, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("podman secret create");
    std::io::Write::write_all(&mut create.stdin.take().expect("stdin"), value.as_bytes())
        .expect("write");
    assert!(create.wait().expect("wait").success());
    struct RmSecret(String);
    impl Drop for RmSecret {
        fn drop(&mut self) {
            let _ = podman(&["secret", "rm", &self.0]);
        }
    }
    let _rm = RmSecret(secret.clone());

    let repo = Repo::new(BASE_CONFIG);
    let path = repo.path().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("devaipod.toml");
    std::fs::write(
        &config,
        format!("[agent]\nsecrets = [\"DEVAIPOD_EXISTING={secret}\"]\n"),
    )
    .expect("write");
    let o = Command::new(devaipod_bin())
        .args([
            "up",
            &path,
            "--name",
            &g.name,
            "--label",
            &g.label_arg(),
            "--json",
        ])
        .env("DEVAIPOD_CONFIG", &config)
        .output()
        .expect("runs");
    json_of(&o);
    let agent = format!("{}-agent", g.pod());
    let env = exec(
        &agent,
        None,
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'",
    );
    assert!(
        env.contains(&format!("DEVAIPOD_EXISTING={value}")),
        "the agent did not get the existing secret"
    );
    let del = devaipod(&["delete", &g.name, "--json"]);
    let removed = json_of(&del);
    assert!(
        !removed["secrets"].to_string().contains(&secret),
        "{removed}"
    );
    let still = podman(&["secret", "inspect", &secret]);
    assert!(
        still.status.success(),
        "devaipod removed the user's own secret"
    );
    g.assert_nothing_left();
}

#[test]
fn lifecycle_commands_run_in_the_workspace_in_order() {
    require_image(BASE_IMAGE);
    let g = Guard::new("lifecycle");
    let repo = Repo::new(
        r#"{
  "image": "localhost/devaipod-base:latest",
  "remoteUser": "dev",
  "onCreateCommand": "echo oncreate >> /tmp/lifecycle && id -un >> /tmp/lifecycle && pwd >> /tmp/lifecycle",
  "updateContentCommand": ["sh", "-c", "echo update >> /tmp/lifecycle; echo \"$LC_PATH|$LC_PLAIN|$LC_CE\" > /tmp/remote-env"],
  "postCreateCommand": "echo postcreate >> /tmp/lifecycle; echo visible-output",
  "postStartCommand": {"a": "echo start >> /tmp/start-a", "b": ["sh", "-c", "echo start >> /tmp/start-b"]},
  "remoteEnv": {"LC_PATH": "${containerEnv:PATH}:/extra", "LC_PLAIN": "plain"},
  "containerEnv": {"LC_CE": "ce"},
}"#,
    );
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &["--json"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("[postCreateCommand] visible-output"),
        "{}",
        stderr(&out)
    );
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    let log = exec(&ws, None, "cat /tmp/lifecycle");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["oncreate", "dev", folder.as_str(), "update", "postcreate"]
    );
    for f in ["/tmp/start-a", "/tmp/start-b"] {
        assert_eq!(exec(&ws, None, &format!("cat {f}")), "start\n", "{f}");
    }
    // remoteEnv reaches the commands, its ${containerEnv:...} resolved in the container.
    let path_in = exec(&ws, None, "printenv PATH");
    assert_eq!(
        exec(&ws, None, "cat /tmp/remote-env").trim(),
        format!("{}:/extra|plain|ce", path_in.trim())
    );
    // Never in the agent.
    assert_eq!(
        exec(&agent, None, "ls /tmp/lifecycle 2>/dev/null | wc -l").trim(),
        "0"
    );
    // postStartCommand runs again at every start; the create commands do not.
    for cmd in ["stop", "start"] {
        let o = devaipod(&[cmd, &g.name]);
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    }
    assert_eq!(exec(&ws, None, "cat /tmp/start-a"), "start\nstart\n");
    assert_eq!(
        exec(&ws, None, "grep -c oncreate /tmp/lifecycle").trim(),
        "1"
    );
}

#[test]
fn a_failing_lifecycle_command_stops_up_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let g = Guard::new("lcfail");
    let repo = Repo::new(
        r#"{"image": "localhost/devaipod-base:latest", "postCreateCommand": "echo about-to-fail; exit 7"}"#,
    );
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &[]);
    assert_fails_with(&out, "postCreateCommand failed with exit code 7");
    assert!(stderr(&out).contains("about-to-fail"), "{}", stderr(&out));
    g.assert_nothing_left();
}

#[test]
fn repo_mounts_reach_the_workspace_only() {
    require_image(BASE_IMAGE);
    let g = Guard::new("mounts");
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("hello.txt"), "from-host\n").expect("write");
    let vol = format!("devaipod-test-cache-{}", std::process::id());
    let _rm = RmVolume(vol.clone());
    let repo = Repo::new(&format!(
        r#"{{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
            "mounts": ["source={vol},target=/cache,type=volume", {{"type": "tmpfs", "target": "/scratch"}},
                       "type=bind,source={},target=/data,readonly"]}}"#,
        host.path().display()
    ));
    let path = repo.path().to_string_lossy().into_owned();
    json_of(&up(&g, &path, &["--json", "--trust"]));
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    let seen = exec(
        &ws,
        None,
        "cat /data/hello.txt; grep -c ' /scratch tmpfs ' /proc/mounts; grep -c ' /cache ' /proc/mounts; touch /data/x 2>/dev/null && echo rw || echo ro",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["from-host", "1", "1", "ro"]
    );
    let agent_sees = exec(&agent, None, "ls /data /cache /scratch 2>/dev/null | wc -l");
    assert_eq!(agent_sees.trim(), "0", "the agent got a repo mount");
}

#[test]
fn forwarded_ports_are_reachable_on_the_hosts_loopback() {
    require_image(BASE_IMAGE);
    let config = r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev", "forwardPorts": [3999]}"#;
    let g1 = Guard::new("ports1");
    let g2 = Guard::new("ports2");
    let (r1, r2) = (Repo::new(config), Repo::new(config));
    let p1 = r1.path().to_string_lossy().into_owned();
    let p2 = r2.path().to_string_lossy().into_owned();
    json_of(&up(&g1, &p1, &["--json"]));
    json_of(&up(&g2, &p2, &["--json"]));
    let host_port = |g: &Guard| -> u16 {
        let v = json_of(&devaipod(&["ports", &g.name, "--json"]));
        assert_eq!(v[0]["container_port"], 3999, "{v}");
        assert_eq!(v[0]["host_ip"], "127.0.0.1", "{v}");
        v[0]["host_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("host port")
    };
    let (h1, h2) = (host_port(&g1), host_port(&g2));
    assert_ne!(h1, h2, "two pods got the same host port");
    let status = json_of(&devaipod(&["status", &g1.name, "--json"]));
    assert_eq!(status["ports"][0]["host_port"], h1);

    // A server in the workspace on 3999 answers the host on the published port.
    let ws = format!("{}-workspace", g1.pod());
    podman_ok(&[
        "exec",
        "-d",
        "--user",
        "dev",
        &ws,
        "opencode",
        "serve",
        "--hostname",
        "0.0.0.0",
        "--port",
        "3999",
    ]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{h1}").parse().expect("addr");
    wait_until(
        &format!("the server answers on {addr}"),
        std::time::Duration::from_secs(60),
        || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                        .ok()?;
                    s.write_all(b"GET /global/health HTTP/1.0\r\n\r\n").ok()?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf).ok()?;
                    buf.contains("healthy").then_some(())
                })
                .is_some()
        },
    );
}

#[test]
fn host_requirements_limit_the_workspace() {
    require_image(BASE_IMAGE);
    let g = Guard::new("hostreq");
    let repo = Repo::new(
        r#"{"image": "localhost/devaipod-base:latest", "hostRequirements": {"cpus": 1.5, "memory": "1gb", "storage": "10gb"}}"#,
    );
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &["--json"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("storage is reported only"),
        "{}",
        stderr(&out)
    );
    let ws = format!("{}-workspace", g.pod());
    let limits = podman_ok(&[
        "inspect",
        &ws,
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}}",
    ]);
    let cgroup2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if nix::unistd::geteuid().is_root() || cgroup2 {
        // Enforced rootful and on cgroup v2; rootless cgroup v1 ignores limits, with a warning.
        assert_eq!(limits.trim(), "1073741824 150000");
        let cg = exec(
            &ws,
            None,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        );
        assert_eq!(cg.trim(), "1073741824");
    } else {
        assert!(
            stderr(&out).contains("ignores pids, memory and cpu limits"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_dockerfile_config_is_built_once_and_shared() {
    require_image(BASE_IMAGE);
    let g = Guard::new("build");
    let g2 = Guard::new("build2");
    // A nonce in the Dockerfile keys this run's image apart from earlier runs'.
    let nonce = g.name.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    init_repo(
        dir.path(),
        &[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile", "context": "..", "target": "dev",
                    "args": {"GREETING": "hello-from-arg"}},
                    "remoteUser": "dev"}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!(
                    "FROM {BASE_IMAGE} AS base\nLABEL nonce={nonce}\nARG GREETING\nRUN echo \"$GREETING\" > /opt/greeting\nCOPY . /opt/ctx\nFROM base AS dev\nRUN echo dev > /opt/stage\nFROM base AS other\nRUN echo other > /opt/stage\n"
                ),
            ),
            (".gitignore", "ignored/\n"),
            ("ignored/big.bin", "not for the context\n"),
        ],
    );
    let path = dir.path().to_string_lossy().into_owned();
    let plan = json_of(&devaipod(&["up", &path, "--dry-run", "--json"]));
    let tag = plan["image"]["ref"].as_str().expect("ref").to_string();
    let _rm = RmImage(tag.clone());
    assert!(tag.starts_with("localhost/devaipod-build-"), "{tag}");
    assert_eq!(plan["image"]["state"], "will_build", "{plan}");
    assert_eq!(plan["image"]["build"]["arg_names"][0], "GREETING");

    let first = up(&g, &path, &["--json"]);
    json_of(&first);
    assert!(stderr(&first).contains("build: "), "{}", stderr(&first));
    let ws = format!("{}-workspace", g.pod());
    let folder = format!(
        "/workspaces/{}",
        dir.path().file_name().expect("name").to_string_lossy()
    );
    let seen = exec(
        &ws,
        Some("dev"),
        "cat /opt/greeting /opt/stage; ls /opt/ctx/ignored 2>/dev/null | wc -l; cat /opt/ctx/.devcontainer/Dockerfile | grep -c nonce",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["hello-from-arg", "dev", "0", "1"]
    );
    let who = podman_ok(&[
        "exec",
        "-w",
        &folder,
        "--user",
        "dev",
        &ws,
        "sh",
        "-c",
        "id -un; pwd",
    ]);
    assert_eq!(who.lines().collect::<Vec<_>>(), ["dev", folder.as_str()]);
    // The agent runs the same built image.
    let image_of = |c: &str| podman_ok(&["inspect", "-f", "{{.Image}}", c]);
    assert_eq!(image_of(&ws), image_of(&format!("{}-agent", g.pod())));

    // A second pod of the same repo reuses the image: no build.
    let second = up(&g2, &path, &["--json"]);
    json_of(&second);
    assert!(!stderr(&second).contains("build: "), "{}", stderr(&second));
    assert_eq!(image_of(&ws), image_of(&format!("{}-workspace", g2.pod())));
    let o = devaipod(&["delete", &g2.name]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --rebuild builds again (without the layer cache).
    let rebuilt = up(&g2, &path, &["--json", "--rebuild"]);
    json_of(&rebuilt);
    assert!(
        stderr(&rebuilt).contains("RUN echo \"$GREETING\""),
        "{}",
        stderr(&rebuilt)
    );
}

#[test]
fn a_failing_build_names_the_step_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let g = Guard::new("buildfail");
    let dir = tempfile::tempdir().expect("tempdir");
    init_repo(
        dir.path(),
        &[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile"}}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!("FROM {BASE_IMAGE}\nRUN echo {} && exit 3\n", g.name),
            ),
        ],
    );
    let path = dir.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &[]);
    assert_fails_with(&out, "failed: building at STEP \"RUN echo");
    assert!(stderr(&out).contains("exit status 3"), "{}", stderr(&out));
    g.assert_nothing_left();
}

#[test]
fn run_args_and_capabilities_reach_the_workspace_only() {
    require_image(BASE_IMAGE);
    let g = Guard::new("runargs");
    let dir = tempfile::tempdir().expect("tempdir");
    init_repo(
        dir.path(),
        &[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev", "overrideCommand": false,
  "capAdd": ["NET_ADMIN"],
  "runArgs": ["--env=RA_ENV=one", "--env-file", ".devcontainer/ra.env", "--label=ra.label=yes",
    "--shm-size=96m", "--ulimit", "nofile=1024:2048", "--ulimit=nproc=2048:4096",
    "--sysctl=kernel.msgmax=65536", "--hostname=ra-box", "--add-host=db.internal:10.1.2.3",
    "--tmpfs", "/ra-scratch", "-v", "ra-cache-vol:/ra-cache", "--cap-add=SYS_PTRACE",
    "-w", "/tmp", "--restart=always"]}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!(
                    "FROM {BASE_IMAGE}\nCMD [\"sh\", \"-c\", \"echo image-cmd-ran > /tmp/cmd-marker; exec sleep infinity\"]\n"
                ),
            ),
            (".devcontainer/ra.env", "# from a file\nFROM_FILE=two\n"),
        ],
    );
    let path = dir.path().to_string_lossy().into_owned();
    // Capabilities widen the workspace's access: refused without consent.
    let out = up(&g, &path, &[]);
    assert_fails_with(&out, "runArgs --cap-add SYS_PTRACE, capAdd NET_ADMIN");
    g.assert_nothing_left();
    let plan = json_of(&devaipod(&["up", &path, "--dry-run", "--json", "--trust"]));
    let applied = plan["trust"]["applied"].to_string();
    assert!(applied.contains("capAdd NET_ADMIN"), "{applied}");
    let _vol = RmVolume("ra-cache-vol".into());

    let out = up(&g, &path, &["--json", "--trust"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("--restart always has no effect"),
        "{}",
        stderr(&out)
    );
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    let seen = exec(
        &ws,
        None,
        "echo $RA_ENV $FROM_FILE; hostname; cat /proc/sys/kernel/msgmax; grep -c db.internal /etc/hosts; \
         df -B1 /dev/shm | tail -1 | awk '{print $2}'; grep -c ' /ra-scratch tmpfs ' /proc/mounts; \
         grep -c ' /ra-cache ' /proc/mounts; grep 'open files' /proc/1/limits | awk '{print $4\":\"$5}'; \
         cat /tmp/cmd-marker; pwd",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "one two",
            "ra-box",
            "65536",
            "1",
            "100663296",
            "1",
            "1",
            "1024:2048",
            "image-cmd-ran",
            "/tmp"
        ]
    );
    // CAP_NET_ADMIN is bit 12, CAP_SYS_PTRACE bit 19 of the workspace's bounding set.
    let capbnd = exec(&ws, None, "grep CapBnd /proc/1/status | cut -f2");
    let bits = u64::from_str_radix(capbnd.trim(), 16).expect("hex");
    assert!(bits & (1 << 12) != 0 && bits & (1 << 19) != 0, "{capbnd}");
    let label = podman_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ra.label\"}}",
        &ws,
    ]);
    assert_eq!(label.trim(), "yes");
    // None of it reaches the agent.
    let agent_sees = exec(
        &agent,
        None,
        "echo \"${RA_ENV:-none}\"; hostname; grep -c ' /ra-cache ' /proc/mounts; grep CapBnd /proc/1/status | cut -f2",
    );
    let lines: Vec<&str> = agent_sees.lines().collect();
    assert_eq!(lines[0], "none");
    assert_ne!(lines[1], "ra-box");
    assert_eq!(lines[2], "0");
    assert_eq!(lines[3], "0000000000000000");
    let tag = plan["image"]["ref"].as_str().expect("ref").to_string();
    drop(g);
    let _ = podman(&["rmi", "-f", &tag]);
}

#[test]
fn initialize_command_runs_on_the_host_only_after_approval() {
    require_image(BASE_IMAGE);
    let g = Guard::new("init");
    let state = tempfile::tempdir().expect("tempdir");
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("ran");
    let config = |extra: &str| {
        format!(
            r#"{{"image": "{BASE_IMAGE}", "initializeCommand": "pwd >> {}; echo {extra} >> {}; echo init-output"}}"#,
            marker.display(),
            marker.display()
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    init_repo(
        dir.path(),
        &[(".devcontainer/devcontainer.json", &config("one"))],
    );
    let path = dir.path().to_string_lossy().into_owned();
    let label = g.label_arg();
    let run = |extra: &[&str]| {
        let mut args = vec!["up", path.as_str(), "--name", &g.name, "--label", &label];
        args.extend_from_slice(extra);
        Command::new(devaipod_bin())
            .args(&args)
            .env("XDG_STATE_HOME", state.path())
            .stdin(Stdio::null())
            .output()
            .expect("devaipod runs")
    };
    let runs = || std::fs::read_to_string(&marker).unwrap_or_default();

    // No terminal, no --trust, nothing remembered: refused, nothing ran or was made.
    let out = run(&[]);
    assert_fails_with(
        &out,
        "initializeCommand runs on your host and was not approved",
    );
    assert_eq!(runs(), "");
    g.assert_nothing_left();
    let plan = json_of(&run(&["--dry-run", "--json"]));
    assert_eq!(plan["initialize"]["approved"], false, "{plan}");

    // --trust approves it: it runs on the host, in the repo folder, before the pod.
    let out = run(&["--trust"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[initializeCommand] init-output"),
        "{}",
        stderr(&out)
    );
    assert_eq!(runs(), format!("{path}\none\n"));
    let o = devaipod(&["delete", &g.name]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Remembered: runs again without asking.
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(runs().lines().filter(|l| *l == "one").count(), 2);
    let o = devaipod(&["delete", &g.name]);
    assert!(o.status.success(), "{}", stderr(&o));

    // A changed command asks again; on a terminal, "y" approves it.
    std::fs::write(
        dir.path().join(".devcontainer/devcontainer.json"),
        config("two"),
    )
    .expect("write");
    common::git(dir.path(), &["commit", "-qam", "changed"]);
    let out = run(&[]);
    assert_fails_with(&out, "was not approved");
    assert!(!runs().contains("two"));
    let cmdline = format!(
        "{} up {path} --name {} --label {label}",
        devaipod_bin().display(),
        g.name
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs (package bsdutils)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"y\n").expect("answer");
    }
    let out = child.wait_with_output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("runs on THIS HOST"), "{text}");
    assert!(runs().contains("two"));
}

#[test]
fn a_failing_initialize_command_stops_up_before_anything_is_made() {
    let g = Guard::new("initfail");
    let repo = Repo::new(&format!(
        r#"{{"image": "{BASE_IMAGE}", "initializeCommand": ["sh", "-c", "echo init-said-no; exit 3"]}}"#
    ));
    let path = repo.path().to_string_lossy().into_owned();
    let out = up(&g, &path, &["--trust"]);
    assert_fails_with(
        &out,
        "initializeCommand failed on the host with exit status: 3",
    );
    assert!(stderr(&out).contains("init-said-no"), "{}", stderr(&out));
    g.assert_nothing_left();
}

/// A repo whose Dockerfile derives from `base` and removes its opencode.
fn repo_without_opencode(base: &str, rm: &str, nonce: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    init_repo(
        dir.path(),
        &[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile"}}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!("FROM {base}\nLABEL nonce={nonce}\nRUN {rm} /usr/local/bin/opencode\n"),
            ),
        ],
    );
    dir
}

#[test]
fn images_without_opencode_get_the_bundled_one_read_only() {
    require_image(BASE_IMAGE);
    require_image(BROKEN_IMAGE);
    let g = Guard::new("bundled");
    let dir = repo_without_opencode(BASE_IMAGE, "rm", &g.name);
    let path = dir.path().to_string_lossy().into_owned();
    let plan = json_of(&devaipod(&["up", &path, "--dry-run", "--json"]));
    let tag = plan["image"]["ref"].as_str().expect("ref").to_string();
    let _rm = RmImage(tag);
    json_of(&up(&g, &path, &["--json"]));
    let ws = format!("{}-workspace", g.pod());
    let agent = format!("{}-agent", g.pod());
    for c in [&ws, &agent] {
        let seen = exec(
            c,
            None,
            "command -v opencode || echo none; test -x /opt/devaipod/bundled/usr/local/bin/opencode && echo bundled; touch /opt/devaipod/bundled/x 2>/dev/null || echo read-only",
        );
        assert_eq!(
            seen.lines().collect::<Vec<_>>(),
            ["none", "bundled", "read-only"],
            "{c}"
        );
    }
    // The agent that answered `up` is the bundled binary.
    let pid = podman_ok(&["inspect", "-f", "{{.State.Pid}}", &agent]);
    let tree = podman_ok(&["top", &agent, "args"]);
    assert!(
        tree.contains("/opt/devaipod/bundled/usr/local/bin/opencode serve"),
        "pid {pid}: {tree}"
    );

    // An image that is not glibc-based cannot run it: a clear error, nothing left.
    let g2 = Guard::new("bundled-musl");
    let dir2 = repo_without_opencode(BROKEN_IMAGE, "busybox rm", &g2.name);
    let path2 = dir2.path().to_string_lossy().into_owned();
    let plan2 = json_of(&devaipod(&["up", &path2, "--dry-run", "--json"]));
    let _rm2 = RmImage(plan2["image"]["ref"].as_str().expect("ref").to_string());
    let out = up(&g2, &path2, &[]);
    assert_fails_with(
        &out,
        "is not glibc-based, so the bundled opencode cannot run in it",
    );
    g2.assert_nothing_left();
}

/// The scripted OpenAI-compatible LLM (tests/fake-llm), built by `just _stage`.
fn fake_llm() -> PathBuf {
    let p = std::env::var_os("DEVAIPOD_FAKE_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fake-llm/release/fake-llm")
        });
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build --release --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm` (`just _stage` does)",
        p.display()
    );
    p
}

/// devaipod with the user configuration `config` (DEVAIPOD_CONFIG).
fn devaipod_with(config: &Path, args: &[&str]) -> Output {
    Command::new(devaipod_bin())
        .args(args)
        .env("DEVAIPOD_CONFIG", config)
        .stdin(Stdio::null())
        .output()
        .expect("devaipod runs")
}

#[test]
fn the_agent_takes_a_task_commits_and_its_work_comes_back_for_review() {
    require_image(BASE_IMAGE);
    let g = Guard::new("e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    let llm = std::fs::read(fake_llm()).expect("read fake-llm");
    // The fake LLM runs in the workspace (same network namespace as the agent), started
    // by the repo's own postStartCommand; its script makes the agent commit a file.
    let script = r#"{"steps": [{"tool": "bash", "arguments": {"command": "printf 'hello from the agent\\n' > agent-file.txt && git add agent-file.txt && git commit -qm 'agent: add agent-file.txt'"}}], "final": "done"}"#;
    init_repo(
        dir.path(),
        &[
            (
                ".devcontainer/devcontainer.json",
                r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
  "postStartCommand": "nohup .devcontainer/fake-llm --listen 127.0.0.1:18080 --script .devcontainer/script.json > /tmp/fake-llm.log 2>&1 < /dev/null &",
  "postAttachCommand": "echo attached >> /tmp/attach-marker"}"#,
            ),
            (".devcontainer/script.json", script),
            ("README", "a repo\n"),
        ],
    );
    write_executable(&dir.path().join(".devcontainer/fake-llm"), llm);
    common::git(dir.path(), &["add", "."]);
    common::git(dir.path(), &["commit", "-qm", "fake llm"]);
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let config = cfg_dir.path().join("devaipod.toml");
    std::fs::write(
        &config,
        r#"[agent]
model = "fake/fake-model"
[agent.opencode.provider.fake]
npm = "@ai-sdk/openai-compatible"
name = "Fake LLM"
options = { baseURL = "http://127.0.0.1:18080/v1" }
models = { "fake-model" = { name = "Fake Model" } }
"#,
    )
    .expect("config");
    let path = dir.path().to_string_lossy().into_owned();
    let label = g.label_arg();
    let task = "write agent-file.txt and commit it";
    let out = devaipod_with(
        &config,
        &[
            "up", &path, task, "--name", &g.name, "--label", &label, "--json",
        ],
    );
    let v = json_of(&out);
    let session = v["session"].as_str().expect("session id").to_string();
    assert!(session.starts_with("ses_"), "{v}");

    // Wait (bounded: opencode retries LLM errors without end) for the commit.
    let agent = format!("{}-agent", g.pod());
    let folder = format!(
        "/workspaces/{}",
        dir.path().file_name().expect("name").to_string_lossy()
    );
    let branch = format!("devaipod/{}", g.name);
    let subject = || {
        let o = podman(&[
            "exec",
            &agent,
            "git",
            "-C",
            &folder,
            "log",
            "-1",
            "--format=%s",
            &branch,
        ]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    wait_until(
        "the agent committed agent-file.txt",
        std::time::Duration::from_secs(90),
        || {
            let s = json_of(&devaipod(&["status", &g.name, "--json"]));
            assert_ne!(
                s["sessions"][0]["state"], "retry",
                "the agent is retrying an LLM error: {s}"
            );
            subject() == "agent: add agent-file.txt"
        },
    );
    assert_eq!(
        exec(&agent, None, &format!("cat {folder}/agent-file.txt")),
        "hello from the agent\n"
    );
    let s = json_of(&devaipod(&["status", &g.name, "--json"]));
    assert_eq!(s["sessions"][0]["id"], session.as_str(), "{s}");
    assert_eq!(s["sessions"][0]["title"], format!("devaipod: {task}"));
    // The agent's config came from devaipod.toml, as a file nobody else sees.
    let env = podman_ok(&["inspect", "-f", "{{json .Config.Env}}", &agent]);
    assert!(
        !env.contains("fake-model") && !env.contains("18080"),
        "{env}"
    );

    // delete refuses while the commit is on no host branch, naming it.
    let o = devaipod(&["delete", &g.name]);
    assert_fails_with(&o, "agent: add agent-file.txt");
    assert!(stderr(&o).contains(&format!("devaipod review {}", g.name)));
    assert!(podman(&["pod", "exists", &g.pod()]).status.success());

    // review brings it to the host branch devaipod/NAME (no hook runs) with the diff.
    write_executable(
        &dir.path().join(".git/hooks/reference-transaction"),
        "#!/bin/sh\ntouch hook-ran\n",
    );
    let o = devaipod(&["review", &g.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("+hello from the agent"), "{text}");
    assert!(!dir.path().join("hook-ran").exists(), "a host hook ran");
    let host = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["log", "-1", "--format=%s", &branch])
        .output()
        .expect("git");
    assert_eq!(
        String::from_utf8_lossy(&host.stdout).trim(),
        "agent: add agent-file.txt"
    );

    // With a difftool configured, review uses it.
    common::git(dir.path(), &["config", "diff.tool", "devaipodtest"]);
    common::git(
        dir.path(),
        &[
            "config",
            "difftool.devaipodtest.cmd",
            "echo DIFFTOOL-RAN \"$REMOTE\"",
        ],
    );
    let o = devaipod(&["review", &g.name]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DIFFTOOL-RAN"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // A follow-up goes to the same session. Its text is data: shell syntax in it is
    // never run, and it reaches opencode byte for byte (bad-input case 15).
    let tricky =
        "now say done\nDEVAIPOD_TASK_EOF\n'\"; $(touch /tmp/pwned) `touch /tmp/pwned2` \\ é";
    let o = devaipod(&["task", &g.name, tricky, "--json"]);
    assert_eq!(json_of(&o)["session"], session.as_str());
    // prompt_async answers before the message is stored: wait (bounded) until it is.
    let message_texts = || -> Vec<String> {
        let messages = exec(
            &agent,
            None,
            &format!(
                "curl -s -u opencode:$(cat /run/secrets/devaipod-opencode-password) 'http://127.0.0.1:4096/session/{session}/message?directory={folder}'"
            ),
        );
        let messages: Value = serde_json::from_str(&messages).unwrap_or(Value::Null);
        messages
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["parts"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    };
    wait_until(
        "the follow-up reached opencode",
        std::time::Duration::from_secs(30),
        || message_texts().iter().any(|t| t == tricky),
    );
    let texts = message_texts();
    assert!(texts.iter().any(|t| t == tricky), "{texts:?}");
    for c in [&agent, &format!("{}-workspace", g.pod())] {
        assert_eq!(
            exec(c, None, "ls /tmp/pwned /tmp/pwned2 2>/dev/null | wc -l").trim(),
            "0"
        );
    }

    // The shims are on PATH; postAttachCommand runs for interactive sessions only.
    let ws = format!("{}-workspace", g.pod());
    let o = devaipod(&[
        "ssh",
        &g.name,
        "--",
        "sh",
        "-c",
        "for c in oc opencode-agent; do command -v $c; done",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/opt/devaipod/bin/oc\n/opt/devaipod/bin/opencode-agent\n"
    );
    assert_eq!(
        exec(&ws, None, "cat /tmp/attach-marker 2>/dev/null | wc -l").trim(),
        "0"
    );

    let o = devaipod(&["delete", &g.name]);
    assert!(o.status.success(), "after review: {}", stderr(&o));
    g.assert_nothing_left();
}

#[test]
fn ssh_runs_commands_and_shells_as_the_remote_user() {
    require_image(BASE_IMAGE);
    let g = Guard::new("ssh");
    let repo = Repo::new(
        r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
            "remoteEnv": {"SSH_REMOTE": "from-remote-env"},
            "postAttachCommand": "echo attached >> /tmp/attach-marker"}"#,
    );
    let path = repo.path().to_string_lossy().into_owned();
    json_of(&up(&g, &path, &["--json"]));
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    // A command: no terminal, as remoteUser, in the folder, with remoteEnv; its exit
    // code is devaipod's; stdin passes through.
    let o = devaipod(&[
        "ssh",
        &g.name,
        "--",
        "sh",
        "-c",
        "id -un; pwd; echo $SSH_REMOTE; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("dev\n{folder}\nfrom-remote-env\n")
    );
    let mut child = Command::new(devaipod_bin())
        .args(["ssh", &g.name, "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"piped through\n")
            .expect("write");
    }
    let o = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED THROUGH\n");
    // An interactive shell on a terminal (script(1) gives it one): the prompt is in
    // the folder, postAttachCommand ran, Ctrl-C reaches the shell's foreground command,
    // and the exit status comes back.
    let cmdline = format!("{} ssh {}", devaipod_bin().display(), g.name);
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&seen).contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!(
                    "no {want:?} from the session: {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    };
    let interrupted: std::time::Instant;
    {
        use std::io::Write;
        stdin
            .write_all(b"echo sleeping-$((2*3)); sleep 60; echo not-$((1+1))-interrupted\n")
            .expect("write");
        wait_for("sleeping-6");
        // Interrupt only once `sleep` really runs in the foreground (no race with its start).
        let ws = format!("{}-workspace", g.pod());
        wait_until(
            "sleep 60 runs in the session",
            std::time::Duration::from_secs(30),
            || {
                exec(
                    &ws,
                    None,
                    "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 60 ' ] && echo hit; done | wc -l",
                )
                .trim()
                    != "0"
            },
        );
        interrupted = std::time::Instant::now();
        stdin.write_all(b"\x03").expect("ctrl-c");
        stdin
            .write_all(b"echo marker-$((6*7)) in $PWD; exit 5\n")
            .expect("write");
        wait_for("marker-42");
    }
    drop(stdin);
    let status = child.wait().expect("script");
    reader.join().expect("reader");
    while let Ok(chunk) = rx.try_recv() {
        seen.extend(chunk);
    }
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(30),
        "Ctrl-C did not stop sleep"
    );
    let o = std::process::Output {
        status,
        stdout: seen,
        stderr: Vec::new(),
    };
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{text}");
    assert!(!text.contains("not-2-interrupted"), "{text}");
    assert!(
        text.contains(&format!("dev@{}:{folder}$", g.name)),
        "{text}"
    );
    assert!(text.contains(&format!("marker-42 in {folder}")), "{text}");
    let ws = format!("{}-workspace", g.pod());
    assert_eq!(exec(&ws, None, "cat /tmp/attach-marker"), "attached\n");
    // exec reaches the agent (read-only inspection as its uid).
    let o = devaipod(&["exec", &g.name, "--container", "agent", "--", "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4096");
    // attach runs the `oc` shim on a terminal (here with --help, so it ends by itself);
    // without a terminal it says what to use instead.
    let o = devaipod(&["attach", &g.name]);
    assert_fails_with(&o, "needs a terminal");
    let cmdline = format!("{} attach {} -- --help", devaipod_bin().display(), g.name);
    let o = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("attach to a running opencode server"),
        "{text}"
    );
    assert_eq!(
        exec(&ws, None, "cat /tmp/attach-marker"),
        "attached\nattached\n"
    );
}

const GATOR_IMAGE: &str = "localhost/devaipod-test-gator:latest";

#[test]
fn service_gator_holds_the_token_and_the_agent_reaches_its_tools() {
    require_image(BASE_IMAGE);
    require_image(GATOR_IMAGE);
    let g = Guard::new("gator");
    let repo = Repo::new(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#);
    let path = repo.path().to_string_lossy().into_owned();
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let config = cfg_dir.path().join("devaipod.toml");
    std::fs::write(
        &config,
        format!(
            "[trusted]\nsecrets = [\"GH_TOKEN\"]\n[service-gator]\nimage = \"{GATOR_IMAGE}\"\nscopes = [\"jira:PROJ\"]\n"
        ),
    )
    .expect("config");
    let sentinel = "ghp_gator_sentinel_5150";
    let label = g.label_arg();
    let run = |extra: &[&str]| {
        let mut args = vec!["up", path.as_str(), "--name", &g.name, "--label", &label];
        args.extend_from_slice(extra);
        Command::new(devaipod_bin())
            .args(&args)
            .env("DEVAIPOD_CONFIG", &config)
            .env("GH_TOKEN", sentinel)
            .stdin(Stdio::null())
            .output()
            .expect("devaipod runs")
    };
    // Write access on a wildcard needs the explicit confirmation; nothing is made.
    let o = run(&["--service-gator", "github:octo/*:write"]);
    assert_fails_with(&o, "--service-gator-allow-wildcard-write");
    g.assert_nothing_left();
    // The dry run shows the effective scopes, never the token.
    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft",
        "--dry-run",
        "--json",
    ]);
    let plan = json_of(&o);
    assert_eq!(
        plan["gator"]["scopes"],
        serde_json::json!(["jira:PROJ:read", "github:octo/hello:read,create-draft"])
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(sentinel));

    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft",
        "--json",
    ]);
    json_of(&o);
    assert!(!stderr(&o).contains(sentinel));
    let gator = format!("{}-gator", g.pod());
    let agent = format!("{}-agent", g.pod());
    let report = || -> Value {
        let text = exec(&gator, None, "curl -s http://127.0.0.1:8765/report");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report ({e}): {text}"))
    };
    // The gator got exactly the requested scopes, every permission spelled out, and the
    // token as a 0400 file of its own user; its environment names no token value.
    let r = report();
    let args: Vec<&str> = r["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[..3], ["--mcp-server", "127.0.0.1:8765", "--scope"]);
    let scope: Value = serde_json::from_str(args[3]).expect("scope JSON");
    assert_eq!(
        scope,
        serde_json::json!({
            "gh": {"repos": {"octo/hello": {"read": true, "create-draft": true, "pending-review": false, "push-new-branch": false, "write": false}}},
            "jira": {"projects": {"PROJ": {"read": true, "comment": false, "create": false, "write": false}}}
        })
    );
    let file = &r["secret_files"][0];
    assert_eq!(file["var"], "GH_TOKEN_FILE", "{r}");
    assert_eq!(file["mode"], "0400");
    assert_eq!(file["uid"], 65534);
    assert_eq!(file["readable"], true);
    assert_eq!(file["length"], sentinel.len());
    assert_eq!(r["uid"], 65534);
    assert!(!r.to_string().contains(sentinel));
    // Hardened like the agent: no capabilities, no-new-privileges (PID 1 as the kernel sees it).
    let status = exec(
        &gator,
        None,
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/1/status",
    );
    assert_eq!(
        status.lines().collect::<Vec<_>>(),
        [
            "CapEff:\t0000000000000000",
            "CapBnd:\t0000000000000000",
            "NoNewPrivs:\t1"
        ]
    );

    // The agent sees the gator's tools without setup: opencode connects to the MCP
    // endpoint named in its configuration.
    let folder = format!(
        "/workspaces/{}",
        repo.path().file_name().expect("name").to_string_lossy()
    );
    let mcp = exec(
        &agent,
        None,
        &format!(
            "curl -s -u opencode:$(cat /run/secrets/devaipod-opencode-password) 'http://127.0.0.1:4096/mcp?directory={folder}'"
        ),
    );
    wait_until(
        "opencode listed the gator's tools",
        std::time::Duration::from_secs(30),
        || {
            let methods = report()["mcp_methods"].to_string();
            methods.contains("tools/list")
        },
    );
    assert!(mcp.contains("service-gator"), "{mcp}");
    // And the agent has the token nowhere: environment, files, configuration.
    let hits = exec(
        &agent,
        None,
        &format!(
            "cat /proc/1/environ | tr '\\0' '\\n' | grep -c {sentinel}; grep -rl {sentinel} /run /home/agent /tmp 2>/dev/null | wc -l; grep -c GH_TOKEN /run/secrets/devaipod-opencode-config.json; true"
        ),
    );
    assert_eq!(hits.lines().collect::<Vec<_>>(), ["0", "0", "0"]);
    let env = podman_ok(&["inspect", "-f", "{{json .Config.Env}}", &agent]);
    assert!(
        !env.contains(sentinel) && !env.contains("GH_TOKEN"),
        "{env}"
    );
    // status and logs know the gator.
    let s = json_of(&devaipod(&["status", &g.name, "--json"]));
    let roles = s["containers"].to_string();
    assert!(
        roles.contains("\"gator\"") && roles.contains("running"),
        "{s}"
    );
    let o = devaipod(&["logs", &g.name, "--container", "gator"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fake-gator listening"),
        "{}",
        stderr(&o)
    );
}
