//! The real-Podman test harness: running podman and devaipod, and [`TestPod`], one
//! test's workspace (its repo, its unique name and label) that removes everything the
//! test made when dropped (pods, containers, volumes and podman secrets) and then fails
//! the test if anything of it is left. DEVAIPOD_TEST_KEEP=1 keeps the objects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The image `just image` builds.
pub const BASE_IMAGE: &str = "localhost/devaipod-base:latest";
/// tests/images/build-broken.sh: an agent that fails, or hangs in a folder named *hang*.
pub const BROKEN_IMAGE: &str = "localhost/devaipod-test-broken:latest";
/// tests/images/build-gator.sh: a fake service-gator that reports what it was given.
pub const GATOR_IMAGE: &str = "localhost/devaipod-test-gator:latest";
/// The label every test object carries (`--label devaipod.test=RUN`); tests/cleanup.sh
/// removes what carries it.
pub const TEST_LABEL: &str = "devaipod.test";
/// Every test workspace's NAME starts with this, so its podman secrets (which carry no
/// labels on Podman 4.3) are `devaipod-dvpt-...` and tests/cleanup.sh can find them.
pub const NAME_PREFIX: &str = "dvpt-";
/// The pod label listing the podman secrets devaipod made for the workspace.
const SECRETS_LABEL: &str = "io.devaipod.secrets";

/// The devaipod under test: DEVAIPOD_BIN (the staged copy), else cargo's build.
pub fn devaipod_bin() -> PathBuf {
    std::env::var_os("DEVAIPOD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_devaipod")))
}

/// Held by every test that builds or removes images. A build's layer-cache lookup
/// ("checking if cached image exists from a previous build") fails with "layer not
/// known" when another test removes an image at that moment, so these tests take turns
/// rather than race on the shared store.
pub fn image_store_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs podman; panics with instructions when it cannot run at all.
pub fn podman(args: &[&str]) -> Output {
    match Command::new("podman").args(args).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run podman ({e}): these tests need a real Podman; run `just setup` (or `sudo apt-get install podman`) and `just image`"
        ),
    }
}

/// Runs podman and returns its stdout; panics with its stderr on failure.
#[track_caller]
pub fn podman_ok(args: &[&str]) -> String {
    let o = podman(args);
    assert!(
        o.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The non-empty lines of podman's stdout (IDs or names); never panics, so a guard can
/// use it while a failed test unwinds.
fn podman_lines(args: &[&str]) -> Result<Vec<String>, String> {
    let o = Command::new("podman")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run podman {args:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Fails the test with instructions when `image` is not in the engine's store.
#[track_caller]
pub fn require_image(image: &str) {
    let o = podman(&["image", "exists", image]);
    assert!(
        o.status.success(),
        "image {image} is missing: build it with `just image` and `just test-images`"
    );
}

/// `devaipod ARGS` with no stdin and the test's own environment.
pub fn devaipod(args: &[&str]) -> Output {
    Command::new(devaipod_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("devaipod runs")
}

/// What a command printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What a command printed on stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that devaipod succeeded and returns its stdout as JSON.
#[track_caller]
pub fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "devaipod failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// Asserts that a command succeeded, naming it and showing its stderr otherwise.
#[track_caller]
pub fn assert_ok(what: &str, o: &Output) {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
}

/// `podman exec [--user USER] CONTAINER sh -c SCRIPT`; its stdout.
#[track_caller]
pub fn exec(container: &str, user: Option<&str>, script: &str) -> String {
    let mut args = vec!["exec"];
    if let Some(u) = user {
        args.extend(["--user", u]);
    }
    args.extend([container, "sh", "-c", script]);
    podman_ok(&args)
}

/// Writes `content` to `path` as an executable file.
pub fn write_executable(path: &Path, content: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A podman object a test made itself (an image it built, a volume or secret its repo
/// named), removed when dropped.
pub struct Rm {
    args: [&'static str; 3],
    name: String,
}

impl Rm {
    pub fn image(name: impl Into<String>) -> Self {
        Self {
            args: ["image", "rm", "-f"],
            name: name.into(),
        }
    }

    pub fn volume(name: impl Into<String>) -> Self {
        Self {
            args: ["volume", "rm", "-f"],
            name: name.into(),
        }
    }

    pub fn secret(name: impl Into<String>) -> Self {
        // `podman secret rm` has no -f on 4.3; a missing secret is an error we ignore.
        Self {
            args: ["secret", "rm", "--"],
            name: name.into(),
        }
    }
}

impl Drop for Rm {
    fn drop(&mut self) {
        if keep() {
            return;
        }
        let mut args = self.args.to_vec();
        args.push(&self.name);
        let _ = podman_lines(&args);
    }
}

/// DEVAIPOD_TEST_KEEP=1: leave every test object in place for a look.
fn keep() -> bool {
    std::env::var_os("DEVAIPOD_TEST_KEEP").is_some()
}

/// One file of a test repo.
struct RepoFile {
    path: String,
    content: Vec<u8>,
    executable: bool,
}

/// How a [`TestPod`] is made: its repo's files, the user configuration and the
/// environment devaipod runs with. Made by [`TestPod::new`].
#[must_use = "a TestPod builder does nothing until .build() or .up()"]
pub struct TestPodBuilder {
    test: String,
    name: String,
    prefix: String,
    files: Vec<RepoFile>,
    user_config: Option<String>,
    env: Vec<(String, Option<String>)>,
    shared_repo: Option<PathBuf>,
    parent: Option<PathBuf>,
    folder_is_name: bool,
}

impl TestPodBuilder {
    /// The workspace NAME the pod will have (known before it is made, for nonces).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The repo's `.devcontainer/devcontainer.json`.
    pub fn config(self, devcontainer: &str) -> Self {
        self.file(".devcontainer/devcontainer.json", devcontainer)
    }

    /// A file of the repo (committed with the rest).
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push(RepoFile {
            path: path.into(),
            content: content.into(),
            executable: false,
        });
        self
    }

    /// Files of the repo: (path, content).
    pub fn files(self, files: &[(&str, &str)]) -> Self {
        files.iter().fold(self, |b, (p, c)| b.file(p, *c))
    }

    /// A Dockerfile configuration: `.devcontainer/devcontainer.json` is `config` (which
    /// names `"dockerfile": "Dockerfile"`), `.devcontainer/Dockerfile` is `dockerfile`.
    pub fn dockerfile(self, config: &str, dockerfile: &str) -> Self {
        self.files(&[
            (".devcontainer/devcontainer.json", config),
            (".devcontainer/Dockerfile", dockerfile),
        ])
    }

    /// An executable file of the repo.
    pub fn executable(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push(RepoFile {
            path: path.into(),
            content: content.into(),
            executable: true,
        });
        self
    }

    /// The prefix of the repo folder's name (the test image reads it: *hang*).
    pub fn repo_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Make the repo in `dir` (default: the temporary directory).
    pub fn repo_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.parent = Some(dir.into());
        self
    }

    /// Name the repo's folder NAME (in a fresh temporary directory), so that `up`
    /// without `--name` derives `NAME-SUFFIX`: its secrets are `devaipod-NAME-...`, which
    /// the guard removes, and its other objects carry the test's label.
    pub fn repo_folder_is_name(mut self) -> Self {
        self.folder_is_name = true;
        self
    }

    /// Use `other`'s repo instead of a new one (a second pod of the same repo).
    pub fn repo_of(mut self, other: &TestPod) -> Self {
        self.shared_repo = Some(other.repo.clone());
        self
    }

    /// The user configuration (devaipod.toml, passed as DEVAIPOD_CONFIG) of the pod's
    /// devaipod runs ([`TestPod::run`], [`TestPod::up`]).
    pub fn user_config(mut self, toml: &str) -> Self {
        self.user_config = Some(toml.into());
        self
    }

    /// An environment variable of the pod's devaipod runs.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// An environment variable removed from the pod's devaipod runs.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Makes the repo (one commit on `main`) and the configuration; runs nothing.
    pub fn build(self) -> TestPod {
        let (dir, repo) = match self.shared_repo {
            Some(path) => (None, path),
            None => {
                let mut b = tempfile::Builder::new();
                b.prefix(&self.prefix);
                let dir = match &self.parent {
                    Some(parent) => b.tempdir_in(parent),
                    None => b.tempdir(),
                }
                .expect("tempdir");
                let path = if self.folder_is_name {
                    dir.path().join(&self.name)
                } else {
                    dir.path().to_path_buf()
                };
                write_repo(&path, &self.files);
                (Some(dir), path)
            }
        };
        let config_dir = tempfile::tempdir().expect("tempdir");
        let user_config = self.user_config.map(|toml| {
            let path = config_dir.path().join("devaipod.toml");
            std::fs::write(&path, toml).expect("write devaipod.toml");
            path
        });
        TestPod {
            run: format!("{}-{}", std::process::id(), self.test),
            name: self.name,
            repo,
            user_config,
            env: self.env,
            _dir: dir,
            _config_dir: config_dir,
        }
    }

    /// Builds the pod and runs `up --json`, which must succeed.
    #[track_caller]
    pub fn up(self) -> TestPod {
        self.up_with(&[])
    }

    /// Builds the pod and runs `up --json EXTRA...`, which must succeed.
    #[track_caller]
    pub fn up_with(self, extra: &[&str]) -> TestPod {
        let pod = self.build();
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        pod.up_json(&args);
        pod
    }
}

/// Writes `files` (and hello.txt) into `dir` and commits them on `main`.
fn write_repo(dir: &Path, files: &[RepoFile]) {
    let hello = RepoFile {
        path: "hello.txt".into(),
        content: b"committed\n".to_vec(),
        executable: false,
    };
    for f in std::iter::once(&hello).chain(files) {
        let p = dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        if f.executable {
            write_executable(&p, &f.content);
        } else {
            std::fs::write(&p, &f.content).expect("write");
        }
    }
    super::git(dir, &["init", "-q", "-b", "main"]);
    super::git(dir, &["add", "."]);
    super::git(dir, &["commit", "-q", "-m", "init"]);
}

/// One test's workspace: a unique NAME (`dvpt-TEST-NONCE`), the label
/// `devaipod.test=PID-TEST` on everything `up` makes, its repo and configuration.
/// Dropping it removes every pod, container, volume and secret of the workspace and
/// fails the test if any is left.
pub struct TestPod {
    name: String,
    run: String,
    repo: PathBuf,
    user_config: Option<PathBuf>,
    env: Vec<(String, Option<String>)>,
    _dir: Option<tempfile::TempDir>,
    _config_dir: tempfile::TempDir,
}

impl TestPod {
    /// A pod for the test `test` (a short word, unique in the suite).
    // Reads as the sentence it is: `TestPod::new("ssh").config(..).up()`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(test: &str) -> TestPodBuilder {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TestPodBuilder {
            test: test.into(),
            name: format!("{NAME_PREFIX}{test}-{nanos:08x}"),
            prefix: "devaipod-test-repo-".into(),
            files: Vec::new(),
            user_config: None,
            env: Vec::new(),
            shared_repo: None,
            parent: None,
            folder_is_name: false,
        }
    }

    /// The workspace NAME.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `devaipod-NAME`.
    pub fn pod(&self) -> String {
        format!("devaipod-{}", self.name)
    }

    /// The workspace container.
    pub fn workspace(&self) -> String {
        format!("{}-workspace", self.pod())
    }

    /// The agent container.
    pub fn agent(&self) -> String {
        format!("{}-agent", self.pod())
    }

    /// The service-gator container.
    pub fn gator(&self) -> String {
        format!("{}-gator", self.pod())
    }

    /// `devaipod.test=RUN`, the label argument of this pod's `up`.
    pub fn label_arg(&self) -> String {
        format!("{TEST_LABEL}={}", self.run)
    }

    /// The repo on the host.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The repo on the host, as an argument.
    pub fn path(&self) -> String {
        self.repo.to_string_lossy().into_owned()
    }

    /// The repo's commit HEAD.
    pub fn head(&self) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The repo folder's name.
    pub fn basename(&self) -> String {
        self.repo
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    }

    /// The clone's folder in the containers: /workspaces/BASENAME.
    pub fn folder(&self) -> String {
        format!("/workspaces/{}", self.basename())
    }

    /// The user configuration file, when the pod has one.
    pub fn user_config(&self) -> Option<&Path> {
        self.user_config.as_deref()
    }

    /// devaipod with the pod's user configuration and environment, no stdin.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(devaipod_bin());
        cmd.args(args).stdin(Stdio::null());
        self.with_env(&mut cmd);
        cmd
    }

    /// Gives `cmd` the pod's user configuration and environment: no provider key of
    /// the machine's environment (each would be a built-in preset), only the test's.
    fn with_env(&self, cmd: &mut Command) {
        for v in super::PRESET_VARIABLES {
            cmd.env_remove(v);
        }
        if let Some(c) = &self.user_config {
            cmd.env("DEVAIPOD_CONFIG", c);
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
    }

    /// `devaipod ARGS` with the pod's user configuration and environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("devaipod runs")
    }

    /// `devaipod CMDLINE` (devaipod's arguments as one shell string) on a terminal
    /// (script(1)), with the pod's user configuration and environment: what the
    /// terminal received (stdout and stderr both) and the exit status.
    pub fn on_terminal(&self, cmdline: &str) -> Output {
        let mut cmd = Command::new("script");
        let line = format!("{} {cmdline}", devaipod_bin().display());
        cmd.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
        self.with_env(&mut cmd);
        cmd.output().expect("script(1) runs")
    }

    /// The agent (as its own uid, through `devaipod exec --container agent`) runs
    /// `sh -c SCRIPT ARGS...`, which must succeed.
    #[track_caller]
    pub fn as_agent(&self, script: &str, args: &[&str]) -> Output {
        let mut argv = vec![
            "exec",
            self.name.as_str(),
            "--container",
            "agent",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ];
        argv.extend_from_slice(args);
        let o = self.run(&argv);
        assert!(o.status.success(), "as the agent: {script}: {}", stderr(&o));
        o
    }

    /// The arguments of `up REPO --name NAME --label devaipod.test=RUN EXTRA...`.
    pub fn up_args<'a>(&'a self, path: &'a str, label: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["up", path, "--name", &self.name, "--label", label];
        args.extend_from_slice(extra);
        args
    }

    /// `devaipod up REPO --name NAME --label devaipod.test=RUN EXTRA...`.
    pub fn up(&self, extra: &[&str]) -> Output {
        let (path, label) = (self.path(), self.label_arg());
        self.run(&self.up_args(&path, &label, extra))
    }

    /// `up EXTRA...`, which must succeed and print JSON (pass `--json`).
    #[track_caller]
    pub fn up_json(&self, extra: &[&str]) -> Value {
        json_of(&self.up(extra))
    }

    /// `up EXTRA...`, which must fail with `want` on stderr and leave nothing behind.
    #[track_caller]
    pub fn up_fails(&self, extra: &[&str], want: &str) -> Output {
        let o = self.up(extra);
        super::assert_fails_with(&o, want);
        self.assert_nothing_left();
        o
    }

    /// `up --dry-run --json EXTRA...`: the plan, which must create nothing.
    #[track_caller]
    pub fn dry_run(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--dry-run", "--json"];
        args.extend_from_slice(extra);
        let plan = json_of(&self.up(&args));
        self.assert_nothing_left();
        plan
    }

    /// `devaipod delete NAME EXTRA...`, which must succeed and leave nothing behind.
    #[track_caller]
    pub fn delete(&self, extra: &[&str]) -> Output {
        let mut args = vec!["delete", self.name.as_str()];
        args.extend_from_slice(extra);
        let o = devaipod(&args);
        assert_ok(&format!("devaipod delete {}", self.name), &o);
        self.assert_nothing_left();
        o
    }

    /// `podman exec` in the workspace container (as `user`, else its default).
    #[track_caller]
    pub fn in_workspace(&self, user: Option<&str>, script: &str) -> String {
        exec(&self.workspace(), user, script)
    }

    /// `podman exec` in the agent container.
    #[track_caller]
    pub fn in_agent(&self, script: &str) -> String {
        exec(&self.agent(), None, script)
    }

    /// The `list --json` entry of this workspace.
    #[track_caller]
    pub fn listed(&self) -> Value {
        let v = json_of(&devaipod(&["list", "--json"]));
        let all = v.as_array().expect("list --json prints an array");
        all.iter()
            .find(|e| e["name"] == self.name.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{} missing from list: {v}", self.name))
    }

    /// `devaipod status NAME --json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        json_of(&devaipod(&["status", &self.name, "--json"]))
    }

    /// Every object of this workspace: pods, containers, volumes (labelled for NAME
    /// or with the test's label) and secrets (named `devaipod-NAME-...`). An error when
    /// podman cannot tell (never read as "nothing left").
    pub fn leftovers(&self) -> Result<Leftovers, String> {
        let by_name = format!("label=io.devaipod.pod={}", self.name);
        let by_run = format!("label={TEST_LABEL}={}", self.run);
        let mut l = Leftovers::default();
        for filter in [&by_name, &by_run] {
            l.pods
                .extend(podman_lines(&["pod", "ps", "-q", "--filter", filter])?);
            l.containers
                .extend(podman_lines(&["ps", "-aq", "--filter", filter])?);
            l.volumes
                .extend(podman_lines(&["volume", "ls", "-q", "--filter", filter])?);
        }
        let prefix = format!("{}-", self.pod());
        l.secrets = podman_lines(&["secret", "ls", "--format", "{{.Name}}"])?
            .into_iter()
            .filter(|s| s.starts_with(&prefix))
            .collect();
        for v in [
            &mut l.pods,
            &mut l.containers,
            &mut l.volumes,
            &mut l.secrets,
        ] {
            v.sort();
            v.dedup();
        }
        Ok(l)
    }

    /// Fails the test (at the caller's line) when any object of this workspace exists.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let l = self.leftovers().unwrap_or_else(|e| panic!("{e}"));
        assert!(l.is_empty(), "objects left for {}: {l:?}", self.name);
    }

    /// The pods of this workspace (their IDs).
    #[track_caller]
    pub fn pods(&self) -> Vec<String> {
        self.leftovers().unwrap_or_else(|e| panic!("{e}")).pods
    }

    /// Removes every object of this workspace, secrets included (best effort: the
    /// check after it says what stayed).
    fn remove_everything(&self) {
        let Ok(l) = self.leftovers() else { return };
        let mut secrets = l.secrets.clone();
        // The pod names its secrets, whatever they are called.
        for pod in &l.pods {
            let format = format!("{{{{index .Labels \"{SECRETS_LABEL}\"}}}}");
            let listed = podman_lines(&["pod", "inspect", pod, "--format", &format]);
            secrets.extend(
                listed
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|l| l.split(','))
                    .filter(|s| s.starts_with(&format!("{}-", self.pod())))
                    .map(str::to_string),
            );
        }
        for pod in &l.pods {
            let _ = podman_lines(&["pod", "rm", "-f", "-t", "0", pod]);
        }
        for c in &l.containers {
            let _ = podman_lines(&["rm", "-f", "-t", "0", c]);
        }
        for v in &l.volumes {
            let _ = podman_lines(&["volume", "rm", "-f", v]);
        }
        secrets.sort();
        secrets.dedup();
        for s in &secrets {
            let _ = podman_lines(&["secret", "rm", s]);
        }
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        if keep() {
            return;
        }
        self.remove_everything();
        // A second panic while unwinding would abort the whole suite.
        if !std::thread::panicking() {
            match self.leftovers() {
                Ok(l) => assert!(
                    l.is_empty(),
                    "could not remove the objects of {}: {l:?}",
                    self.name
                ),
                Err(e) => panic!("cannot check what {} left: {e}", self.name),
            }
        }
    }
}

/// The objects of one workspace (IDs of pods, containers, volumes; secret names).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.containers.is_empty()
            && self.volumes.is_empty()
            && self.secrets.is_empty()
    }
}

/// The private service's socket and pid from devaipod's `-v` log lines; `None` when
/// devaipod connected to an existing socket instead (asserted from its log).
#[track_caller]
pub fn private_service(log: &str) -> Option<(String, i32)> {
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

/// The sockets devaipod would use instead of starting its own service (its default
/// sockets for this uid and XDG_RUNTIME_DIR) that accept connections now.
pub fn listening_default_sockets() -> Vec<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let mut sockets = Vec::new();
    if uid == 0 {
        sockets.push(PathBuf::from("/run/podman/podman.sock"));
    } else {
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            sockets.push(PathBuf::from(dir).join("podman/podman.sock"));
        }
        sockets.push(PathBuf::from(format!("/run/user/{uid}/podman/podman.sock")));
        sockets.push(PathBuf::from(format!(
            "/tmp/podman-run-{uid}/podman/podman.sock"
        )));
    }
    sockets
        .into_iter()
        .filter(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
        .collect()
}

/// Fails the test with instructions when a Podman service listens where devaipod
/// looks first: a test about devaipod's own private service cannot check it then.
#[track_caller]
pub fn require_no_user_service() {
    let listening = listening_default_sockets();
    assert!(
        listening.is_empty(),
        "a Podman service listens on {listening:?}, so devaipod would use it instead of \
         starting the private service this test checks: stop it (`systemctl --user stop \
         podman.socket podman.service`, or as root `systemctl stop podman.socket \
         podman.service`) and run the test again; CI machines have none"
    );
}

/// True while a live (not zombie) process has this pid.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|r| r.trim_start())
            .is_some_and(|r| !r.starts_with('Z')),
        Err(_) => false,
    }
}

/// A devaipod run stopped at a test pause point (`DEVAIPOD_TEST_PAUSE_AT`), in its own
/// process group as a terminal's foreground job is: what a test signals, continues and
/// waits for.
pub struct Paused {
    child: std::process::Child,
    /// The thread that stopped itself at the step (devaipod names it).
    thread: i32,
    /// What it said on stderr up to the pause.
    pub said: String,
    rest: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl Paused {
    /// Spawns `cmd` with `DEVAIPOD_TEST_PAUSE_AT=step` and returns once it says it paused
    /// there (it has stopped itself); fails if it ends first.
    #[track_caller]
    pub fn at(mut cmd: Command, step: &str) -> Self {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .env("DEVAIPOD_TEST_PAUSE_AT", step)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("devaipod runs");
        let err = child.stderr.take().expect("stderr");
        let mut rest = std::io::BufReader::new(err).lines();
        let mut said = String::new();
        let want = format!("paused at {step} (DEVAIPOD_TEST_PAUSE_AT, thread ");
        let thread = loop {
            match rest.next() {
                Some(Ok(line)) => {
                    said.push_str(&line);
                    said.push('\n');
                    if let Some((_, tail)) = line.split_once(&want) {
                        let tid = tail.strip_suffix(')').and_then(|t| t.parse().ok());
                        break tid.unwrap_or_else(|| panic!("no thread id in {line:?}"));
                    }
                }
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("devaipod ended ({status:?}) before pausing at {step}:\n{said}");
                }
            }
        };
        // It says so just before it stops itself: wait for the stop (bounded), or a
        // signal sent now could come before it and the stop after.
        let stat = format!("/proc/{}/stat", child.id());
        super::wait_until(
            &format!("devaipod has stopped itself at {step}"),
            std::time::Duration::from_secs(10),
            || {
                std::fs::read_to_string(&stat).is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
            },
        );
        Self {
            child,
            thread,
            said,
            rest,
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` to devaipod alone, or to its whole process group too (`group`: what a
    /// terminal's Ctrl-C does, devaipod's children included), then continues it.
    ///
    /// devaipod's copy goes to the thread stopped at the step (tgkill), so it is handled
    /// before that thread goes on: sent to the process, another thread could take it and
    /// run the handler only after the step's check (src/progress.rs `pause_point`). In
    /// group mode devaipod gets it a second time, sent to the process as a terminal's
    /// is; devaipod ignores signals after the first.
    pub fn signal_and_continue(&mut self, sig: nix::sys::signal::Signal, group: bool) {
        use nix::sys::signal::{Signal, kill, killpg};
        let pid = self.pid();
        #[allow(unsafe_code)]
        // SAFETY: tgkill takes three integers and touches no memory of ours.
        let sent = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_tgkill,
                pid.as_raw(),
                self.thread,
                sig as nix::libc::c_int,
            )
        };
        assert_eq!(
            sent,
            0,
            "tgkill {sig} to devaipod's thread {}: {}",
            self.thread,
            std::io::Error::last_os_error()
        );
        if group {
            killpg(pid, sig).expect("signal the group");
            killpg(pid, Signal::SIGCONT).expect("continue the group");
        } else {
            kill(pid, Signal::SIGCONT).expect("continue devaipod");
        }
    }

    /// Continues it without a signal.
    pub fn resume(&mut self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    }

    /// Waits for its end, at most `limit` (then kills it and fails): its exit code and
    /// everything it said on stderr.
    #[track_caller]
    pub fn finish(mut self, limit: std::time::Duration) -> (Option<i32>, String) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = self.rest;
        std::thread::spawn(move || {
            for line in lines.by_ref().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + limit;
        let mut said = self.said;
        let status = loop {
            said.extend(rx.try_iter().map(|l| l + "\n"));
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("devaipod did not end within {limit:?} after it was continued:\n{said}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // What it said last (its stderr closes when it exits; children holding it are
        // given a moment, bounded).
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
            said.push_str(&line);
            said.push('\n');
        }
        (status.code(), said)
    }

    /// Kills it (SIGKILL) where it stopped.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "{status:?}");
    }
}
