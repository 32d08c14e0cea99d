//! Helpers shared by the test crates (CLI, Podman, toolbox): git repos, plan lookups,
//! polling, a private Podman service; [`pod`] is the real-Podman harness, [`inet`] the
//! offline fake internet of the network tests, [`registry`] the registry tests' OCI
//! registries on loopback, [`tls`] an HTTPS file server on loopback (tarball Features).
// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod features;
pub mod inet;
pub mod pod;
pub mod registry;
pub mod tls;

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` with a throwaway identity; panics with git's stderr on failure.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Creates a git repo in `dir` holding `files` (path, content) in one commit on `main`.
pub fn init_repo(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

/// The variables of every built-in provider preset (src/plan/input/presets.rs).
pub const PRESET_VARIABLES: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENERATIVE_AI_API_KEY",
    "GEMINI_API_KEY",
    // The variables that turn a preset off (a gateway's endpoint).
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "GOOGLE_GEMINI_BASE_URL",
];

/// Asserts that a devaipod run failed with exit code 1 and said `want` on stderr.
#[track_caller]
pub fn assert_fails_with(o: &std::process::Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "expected failure: {err}");
    assert!(err.contains(want), "expected {want:?} in: {err}");
}

/// The container with `role` in a `--dry-run --json` plan; panics when there is none.
#[track_caller]
pub fn plan_container(plan: &serde_json::Value, role: &str) -> serde_json::Value {
    plan["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["role"] == role))
        .cloned()
        .unwrap_or_else(|| panic!("the plan has no {role} container: {plan}"))
}

/// Polls `ready` every 20 ms until it holds; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `podman system service` on `socket`, listening before `start` returns (bounded);
/// stopped, and its socket removed, when dropped.
pub struct PodmanService {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl PodmanService {
    pub fn start(socket: &Path) -> Self {
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("podman system service (install podman)");
        let service = Self {
            child,
            socket: socket.to_path_buf(),
        };
        wait_until(
            "the podman service accepts connections",
            std::time::Duration::from_secs(20),
            || std::os::unix::net::UnixStream::connect(socket).is_ok(),
        );
        service
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The reference Dev Containers CLI (`just setup-reference` installs it into target/;
/// `DEVAIPOD_REFERENCE_CLI` names another); a test fails with that advice without it.
pub fn reference_cli() -> std::path::PathBuf {
    let path = std::env::var_os("DEVAIPOD_REFERENCE_CLI")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/reference-cli/node_modules/.bin/devcontainer")
        });
    assert!(
        path.exists(),
        "the reference CLI is missing at {}: run `just setup-reference` (npm install @devcontainers/cli)",
        path.display()
    );
    path
}
