//! The pod plan: everything `up` will create, computed from the devcontainer config and
//! the command line without any I/O. `--dry-run` prints this value and the real `up`
//! applies the very same value (see [`crate::podman::apply`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use crate::devcontainer::DevContainer;
use crate::names::Name;

pub mod labels;

pub use labels::Role;

/// The port `opencode serve` listens on, on the pod's loopback only.
pub const AGENT_PORT: u16 = 4096;
/// Where the agent's own home volume is mounted.
pub const AGENT_HOME: &str = "/home/agent";
/// The URL, inside the pod, that answers when the agent is ready.
pub fn readiness_url() -> String {
    format!("http://127.0.0.1:{AGENT_PORT}/global/health")
}

/// The agent's uid and gid: fixed, non-root, and distinct from any user of the dev
/// environment (it needs no passwd entry: HOME is set explicitly). The agent's clone is
/// owned by it.
pub const AGENT_UID: u32 = 4096;

/// Where the workspace sees the agent's clone (read-only), as the git remote `agent`.
pub const AGENT_REPO_IN_WORKSPACE: &str = "/var/lib/devaipod/agent-repo";
/// The name of the workspace clone's remote for the agent's clone.
pub const AGENT_REMOTE: &str = "agent";

/// The workspace's git system config (written by devaipod; see [`workspace_gitconfig`]).
pub const WORKSPACE_GITCONFIG: &str = "/etc/devaipod/gitconfig";

/// The text of [`WORKSPACE_GITCONFIG`].
pub fn workspace_gitconfig() -> String {
    format!(
        "# Written by devaipod: the image's system config, plus the agent's clone (owned by\n# the agent's uid) as a safe directory so that `git fetch agent` works.\n[include]\n\tpath = /etc/gitconfig\n[safe]\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}/.git\n"
    )
}

/// Where the opencode server password is mounted (file secret, mode 0400) in the agent
/// and the workspace.
pub const PASSWORD_FILE: &str = "/run/secrets/devaipod-opencode-password";

/// Where the shims (shims/: `oc`, `opencode-agent`) are installed in the workspace.
pub const SHIM_DIR: &str = "/opt/devaipod/bin";
/// PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent's opencode configuration (a file secret: not in `podman inspect`, not
/// writable by the agent), named by OPENCODE_CONFIG.
pub const AGENT_CONFIG_FILE: &str = "/run/secrets/devaipod-opencode-config.json";

/// The agent's opencode configuration: devaipod's defaults for unattended work in a
/// sandbox, the model, then the user's `[agent.opencode]` table merged over it.
pub fn agent_opencode_config(
    model: Option<&str>,
    mcp: Option<&str>,
    user: Option<&serde_json::Value>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        // Unattended: nothing waits for a human to answer a permission prompt. The
        // sandbox, not the prompt, is what bounds the agent.
        "permission": {
            "edit": "allow",
            "bash": "allow",
            "webfetch": "allow",
            "external_directory": "allow",
            "doom_loop": "allow"
        },
        "share": "disabled",
        "autoupdate": false
    });
    if let Some(m) = model {
        v["model"] = serde_json::json!(m);
    }
    // The gator's tools, without any setup in the agent.
    if let Some(url) = mcp {
        v["mcp"] = serde_json::json!({
            "service-gator": { "type": "remote", "url": url, "enabled": true }
        });
    }
    if let Some(u) = user {
        merge_json(&mut v, u);
    }
    v
}

/// Deep-merges `over` into `base` (objects key by key; anything else replaces).
pub fn merge_json(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// What the plan says about the agent's configuration (never its content: a user may
/// have put a key in it against the advice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentConfigPlan {
    pub model: Option<String>,
    /// Top-level keys of the configuration file.
    pub keys: Vec<String>,
    #[serde(skip)]
    pub content: String,
}

/// The image devaipod bundles opencode in (`just image`).
pub const BUNDLED_IMAGE: &str = "localhost/devaipod-base:latest";
/// Where the bundled image is mounted read-only (a Podman image mount) in the agent and
/// the workspace, for images without their own `opencode`.
pub const BUNDLED_MOUNT: &str = "/opt/devaipod/bundled";

/// Shell that sets `OC` to the image's own `opencode`, else the bundled one (which
/// needs a glibc-based image), else fails saying what to do.
pub fn find_opencode_script() -> String {
    format!(
        "OC=\"$(command -v opencode)\" || {{ OC={BUNDLED_MOUNT}/usr/local/bin/opencode; \
[ -x \"$OC\" ] || {{ echo 'devaipod: this image has no opencode and the bundled image {BUNDLED_IMAGE} is not mounted: install opencode in the image, or build the bundled image with `just image`' >&2; exit 127; }}; \
[ -e /lib64/ld-linux-x86-64.so.2 ] || {{ echo 'devaipod: this image has no opencode and is not glibc-based, so the bundled opencode cannot run in it: install opencode in the image' >&2; exit 127; }}; }}; "
    )
}

/// The agent's command: the server password is read from its secret file into the
/// server's own environment, so it is on no argv and not in `podman inspect`.
pub fn agent_command(secret_env: &[String]) -> Vec<String> {
    let mut script = find_opencode_script();
    script.push_str(&format!(
        "OPENCODE_SERVER_PASSWORD=\"$(cat {PASSWORD_FILE})\" && export OPENCODE_SERVER_PASSWORD && "
    ));
    // The user's agent secrets (validated environment names) from their files.
    for name in secret_env {
        script.push_str(&format!(
            "{name}=\"$(cat {})\" && export {name} && ",
            secret_file(name)
        ));
    }
    script.push_str(&format!(
        "exec \"$OC\" serve --hostname 127.0.0.1 --port {AGENT_PORT}"
    ));
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// Where a user secret named `env_name` is mounted.
pub fn secret_file(env_name: &str) -> String {
    format!("/run/secrets/{env_name}")
}

/// The name of the podman secret holding workspace `name`'s server password.
pub fn password_secret_name(name: &Name) -> String {
    format!("{}-agent-password", name.pod_name())
}

/// The pod label listing the podman secrets made for the workspace (the secrets API of
/// Podman 4.3 takes no labels, so delete finds them through the pod).
pub const SECRETS_LABEL: &str = "io.devaipod.secrets";

/// The agent's default process limit.
pub const AGENT_PIDS_LIMIT: i64 = 4096;
/// The agent's default memory limit (bytes).
pub const AGENT_MEMORY_LIMIT: i64 = 8 * 1024 * 1024 * 1024;
/// Where writable scratch space is in the agent's otherwise read-only root filesystem.
pub const AGENT_TMPFS: &[&str] = &["/tmp", "/var/tmp", "/run", "/run/secrets"];

/// A seccomp profile for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// Podman's default profile.
    Default,
    /// devaipod's agent profile (containers/seccomp/agent.json, embedded): Podman's
    /// default minus user namespaces, mount, keyrings, bpf, ptrace and io_uring.
    Agent,
}

/// How long `up` waits for the agent to answer before giving up and rolling back.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 120;

/// Whether the image exists in the engine's local store (devaipod never pulls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ImageState {
    /// Present locally.
    Present { id: String },
    /// Not present: `up` would fail; the note says how to get it.
    Missing { note: String },
    /// Not checked (no engine reachable during `--dry-run`).
    Unknown { note: String },
    /// Built by `up` from the configuration's Dockerfile (not present, or `--rebuild`).
    WillBuild,
}

/// The image every container of the pod (but the gator) runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    #[serde(rename = "ref")]
    pub reference: String,
    /// Where the reference came from: `--image` or the devcontainer.json path.
    pub source: String,
    #[serde(flatten)]
    pub state: ImageState,
    /// How the image is built (Dockerfile configurations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build::BuildPlan>,
}

/// A port of the pod published on the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PortSpec {
    pub container_port: u16,
    /// The host port asked for; `None`: the same as the container's if free, else any
    /// free one (chosen at `up`).
    pub host_port: Option<u16>,
    pub protocol: String,
}

/// The ports of `forwardPorts` and `appPort`. Entries naming another host (Compose
/// services) are skipped with a warning.
pub fn parse_ports(
    forward: &[serde_json::Value],
    app: Option<&serde_json::Value>,
    warnings: &mut Vec<String>,
) -> Result<Vec<PortSpec>, String> {
    let mut out: Vec<PortSpec> = Vec::new();
    let mut push = |p: PortSpec| {
        if !out.iter().any(|o| o.container_port == p.container_port) {
            out.push(p);
        }
    };
    let port = |s: &str| -> Result<u16, String> {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?} is not a port number"))
    };
    for f in forward {
        match f {
            serde_json::Value::Number(n) => push(PortSpec {
                container_port: port(&n.to_string())?,
                host_port: None,
                protocol: "tcp".into(),
            }),
            serde_json::Value::String(s) => match s.split_once(':') {
                Some(("localhost" | "127.0.0.1", p)) => push(PortSpec {
                    container_port: port(p)?,
                    host_port: None,
                    protocol: "tcp".into(),
                }),
                Some(_) => warnings.push(format!(
                    "forwardPorts entry {s:?} names another host (a Compose service); it is skipped"
                )),
                None => push(PortSpec {
                    container_port: port(s)?,
                    host_port: None,
                    protocol: "tcp".into(),
                }),
            },
            _ => return Err("forwardPorts entries are numbers or \"host:port\" strings".into()),
        }
    }
    let apps: Vec<serde_json::Value> = match app {
        None => vec![],
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    };
    for a in apps {
        let text = match &a {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return Err("appPort entries are numbers or \"HOST:CONTAINER\" strings".into()),
        };
        let (host, container) = match text.split_once(':') {
            Some((h, c)) => (Some(port(h)?), port(c)?),
            None => (None, port(&text)?),
        };
        push(PortSpec {
            container_port: container,
            host_port: host,
            protocol: "tcp".into(),
        });
    }
    Ok(out)
}

/// Limits of the workspace from `hostRequirements`: (cpus, memory bytes). Sizes as the
/// spec writes them (`4gb`, `512mb`, plain bytes); `gpu` is reported, not applied.
pub fn host_requirements(
    v: &serde_json::Value,
    cdi_gpu: Option<&str>,
    devices: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(Option<f64>, Option<i64>), String> {
    let cpus = match v.get("cpus") {
        None => None,
        Some(c) => Some(
            c.as_f64()
                .filter(|c| *c > 0.0)
                .ok_or("hostRequirements.cpus must be a positive number")?,
        ),
    };
    let memory = match v.get("memory") {
        None => None,
        Some(m) => {
            let text = m
                .as_str()
                .ok_or("hostRequirements.memory must be a string such as \"4gb\"")?;
            let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
            let unit = text[digits.len()..].to_ascii_lowercase();
            let mult: i64 = match unit.as_str() {
                "" => 1,
                "kb" => 1 << 10,
                "mb" => 1 << 20,
                "gb" => 1 << 30,
                "tb" => 1 << 40,
                _ => {
                    return Err(format!(
                        "hostRequirements.memory {text:?}: use a number with kb, mb, gb or tb"
                    ));
                }
            };
            let n: i64 = digits
                .parse()
                .map_err(|_| format!("hostRequirements.memory {text:?} is not a size"))?;
            Some(
                n.checked_mul(mult)
                    .ok_or("hostRequirements.memory is too large")?,
            )
        }
    };
    if v.get("storage").is_some() {
        warnings.push(
            "hostRequirements.storage is reported only: Podman cannot reserve disk for a container"
                .into(),
        );
    }
    if let Some(gpu) = v
        .get("gpu")
        .filter(|g| !matches!(g, serde_json::Value::Bool(false)))
    {
        let optional = gpu == &serde_json::Value::String("optional".into());
        match cdi_gpu {
            // The host describes its GPUs with a CDI specification: all of them.
            Some(device) => devices.push(device.to_string()),
            None if optional => warnings.push(
                "hostRequirements.gpu is optional and this host has no CDI GPU specification (/etc/cdi, /var/run/cdi): the workspace gets no GPU".into(),
            ),
            None => return Err("hostRequirements.gpu asks for a GPU, and this host has no CDI GPU specification in /etc/cdi or /var/run/cdi (generate one, e.g. `nvidia-ctk cdi generate`)".into()),
        }
    }
    Ok((cpus, memory))
}

/// The first GPU kind a CDI specification in `dirs` declares, as the device naming all
/// of its GPUs (`nvidia.com/gpu=all`).
pub fn cdi_gpu_in(specs: &[String]) -> Option<String> {
    specs.iter().find_map(|text| {
        text.lines().find_map(|l| {
            let l = l.trim().trim_start_matches('"');
            let rest = l.strip_prefix("kind")?.trim_start_matches('"').trim_start();
            let kind = rest
                .strip_prefix(':')?
                .trim()
                .trim_end_matches(',')
                .trim_matches(|c| c == '"' || c == '\'');
            kind.ends_with("/gpu").then(|| format!("{kind}=all"))
        })
    })
}

/// The pod itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSpec {
    pub name: String,
    pub hostname: String,
    /// runArgs --dns / --add-host (the network namespace is the pod's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<String>,
    /// Published on 127.0.0.1 of the host.
    pub ports: Vec<PortSpec>,
    /// Namespaces shared between the pod's containers: only the network.
    pub share: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
}

/// A mount of a named volume into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A podman secret mounted into a container as a file (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRef {
    pub name: String,
    pub target: String,
    /// Whose file it is: the container's user (`remoteUser`/`containerUser`/image's).
    pub owner: Option<String>,
    pub mode: u32,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SecretSource {
    /// A fresh random value made at `up` (the opencode server password).
    Generated,
    /// The agent's opencode configuration ([`PodPlan::agent_config`]).
    AgentConfig,
    /// devaipod's environment variable of this name, at `up`.
    Environment { variable: String },
}

/// A user secret for the plan: the name the consumer sees, and an existing podman
/// secret to use instead of devaipod's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSecret {
    pub env_name: String,
    pub existing: Option<String>,
}

/// A podman secret devaipod creates (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    pub name: String,
    pub source: SecretSource,
    pub labels: BTreeMap<String, String>,
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    pub role: Role,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    /// `None`: the image's default user.
    pub user: Option<String>,
    pub workdir: String,
    /// Run podman's init (catatonit) as PID 1 so stop and delete are immediate.
    pub init: bool,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub security_opt: Vec<String>,
    pub seccomp: Seccomp,
    /// Read-only root filesystem, with tmpfs at [`AGENT_TMPFS`].
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub pids_limit: Option<i64>,
    pub memory_limit: Option<i64>,
    /// CPU limit in thousandths of a CPU, from `hostRequirements.cpus` (workspace).
    pub cpu_millis: Option<i64>,
    pub mounts: Vec<MountSpec>,
    /// Images mounted read-only (source image, target): the bundled opencode.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_mounts: Vec<(String, String)>,
    /// Plain (non-secret) environment; only the names are ever printed.
    #[serde(rename = "env_names", serialize_with = "keys_only")]
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<SecretRef>,
    pub labels: BTreeMap<String, String>,
    /// What the repo's runArgs/privileged/capAdd/securityOpt add (workspace only).
    #[serde(flatten)]
    pub extra: Extras,
}

/// Container settings only the workspace gets, from the repo's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extras {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<run_args::Ulimit>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

fn keys_only<S: Serializer>(env: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.keys())
}

/// How the repo gets into the workspace volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoPlan {
    pub host_path: PathBuf,
    pub head: String,
    pub branch: Option<String>,
    /// Uncommitted changes in the host work tree; they are not included.
    pub uncommitted: usize,
    pub volume: String,
    /// The agent's own clone; the workspace clone has it as remote `agent`.
    pub agent_volume: String,
    /// The branch the agent works on in its clone (`devaipod/NAME`), made at HEAD.
    pub agent_branch: String,
    pub workspace_folder: String,
    /// Where the containers start: the workspace folder plus the subfolder `up` was
    /// pointed at.
    pub workdir: String,
    /// The user that owns the cloned files (remoteUser, else containerUser, else the
    /// image's default user).
    pub owner: Option<String>,
}

/// How `up` decides the agent is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessPlan {
    pub url: String,
    pub timeout_secs: u64,
}

/// One lifecycle command, as devcontainer.json writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A string: run by `/bin/sh -c`.
    Shell(String),
    /// An array: run directly, no shell.
    Exec(Vec<String>),
    /// An object: its commands run in parallel; all must succeed.
    Parallel(BTreeMap<String, Command>),
}

impl Command {
    /// Reads a lifecycle property's value; `None` for an empty or unusable one.
    pub fn from_value(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(Self::Shell(s.clone())),
            serde_json::Value::Array(a) if !a.is_empty() => {
                let argv: Option<Vec<String>> =
                    a.iter().map(|x| x.as_str().map(str::to_string)).collect();
                argv.map(Self::Exec)
            }
            serde_json::Value::Object(o) if !o.is_empty() => Some(Self::Parallel(
                o.iter()
                    .filter_map(|(k, v)| match Self::from_value(v)? {
                        Self::Parallel(_) => None,
                        c => Some((k.clone(), c)),
                    })
                    .collect(),
            )),
            _ => None,
        }
    }

    /// The argv that runs it (not for `Parallel`).
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Self::Exec(a) => a.clone(),
            Self::Parallel(_) => Vec::new(),
        }
    }
}

/// A lifecycle step: which property, and its command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LifecycleStep {
    pub property: String,
    pub command: Command,
}

/// The workspace's lifecycle commands: run as the remoteUser in the workspace folder,
/// never in the agent or on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LifecyclePlan {
    /// remoteEnv: the environment of these commands (names shown only, like all env;
    /// `${containerEnv:VAR}` resolved when they run).
    #[serde(rename = "env_names", serialize_with = "keys_only")]
    pub env: BTreeMap<String, String>,
    /// Once, after the pod is created: onCreate, updateContent, postCreate, postStart.
    pub create: Vec<LifecycleStep>,
    /// At every later `start`: postStart.
    pub start: Vec<LifecycleStep>,
}

/// `initializeCommand`: run on the host before anything is made, only once the user
/// approved this exact command for this repo (a prompt, `--trust`, or an approval
/// remembered under `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitializePlan {
    pub command: Command,
    /// The host folder it runs in (the folder `up` was pointed at).
    pub dir: PathBuf,
    /// The devcontainer.json it comes from.
    pub config: String,
    /// sha256 of the repo path and the command: a changed command asks again.
    pub key: String,
    /// Approved before (remembered), or by the consent of `--trust`/`[repos] trust`.
    pub approved: bool,
}

impl InitializePlan {
    pub fn key_for(repo: &std::path::Path, command: &Command) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(repo.display().to_string().as_bytes());
        h.update(b"\0");
        h.update(
            serde_json::to_string(command)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Everything `up` creates, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodPlan {
    pub name: Name,
    pub image: ImagePlan,
    pub pod: PodSpec,
    pub volumes: Vec<VolumeSpec>,
    pub secrets: Vec<SecretSpec>,
    pub containers: Vec<ContainerSpec>,
    pub repo: RepoPlan,
    pub readiness: ReadinessPlan,
    /// initializeCommand (host side; runs before anything is created).
    pub initialize: Option<InitializePlan>,
    /// The agent's opencode configuration.
    pub agent_config: AgentConfigPlan,
    /// The service-gator container, if enabled.
    pub gator: Option<GatorPlan>,
    pub lifecycle: LifecyclePlan,
    /// Consent for repo settings that widen access, and what it applies to.
    pub trust: TrustPlan,
    /// Warnings the user should see (also printed by `up`).
    pub warnings: Vec<String>,
}

/// What `--trust` or `[repos."PATH"] trust` granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustPlan {
    /// `None`: no consent given.
    pub granted_by: Option<String>,
    /// The repo settings the consent let through.
    pub applied: Vec<String>,
}

impl PodPlan {
    pub fn container(&self, role: Role) -> Option<&ContainerSpec> {
        self.containers.iter().find(|c| c.role == role)
    }
}

/// The facts about the host repo that the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFacts {
    pub root: PathBuf,
    /// The folder `up` was pointed at, relative to `root` (empty for the top level);
    /// the containers start there.
    pub subdir: PathBuf,
    /// The folder `up` was pointed at (absolute); recorded in the repo label.
    pub path: PathBuf,
    pub folder_name: String,
    pub head: String,
    pub branch: Option<String>,
    pub uncommitted: usize,
}

/// Everything the plan is computed from.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub name: Name,
    pub repo: RepoFacts,
    pub devcontainer: DevContainer,
    /// Where the devcontainer.json was read from, if any.
    pub devcontainer_path: Option<PathBuf>,
    pub image_override: Option<String>,
    pub image_state: ImageState,
    /// The image build of a Dockerfile configuration.
    pub build: Option<crate::build::BuildPlan>,
    /// Extra labels from `--label`, put on every object.
    pub extra_labels: BTreeMap<String, String>,
    pub ready_timeout_secs: u64,
    /// Warnings from reading devcontainer.json (ignored properties), shown by `up`.
    pub config_warnings: Vec<String>,
    /// `[agent] secrets` of the user's config: for the agent only.
    pub agent_secrets: Vec<UserSecret>,
    /// `[trusted] secrets` of the user's config: for the workspace only, never the agent.
    pub trusted_secrets: Vec<UserSecret>,
    /// The agent's limits (user config; defaults otherwise).
    pub agent_pids_limit: i64,
    pub agent_memory_limit: i64,
    /// Consent for repo settings that widen access (`--trust` or the user's config):
    /// what granted it, shown by `--dry-run`.
    pub trust: Option<String>,
    /// `containerEnv` names whose values come from the host environment (need trust).
    pub container_env_from_host: Vec<String>,
    /// The contents of runArgs' `--env-file`s, by the path written there (read by `up`).
    pub env_files: BTreeMap<String, String>,
    /// The image's ENTRYPOINT then CMD (for `overrideCommand: false`).
    pub image_command: Option<Vec<String>>,
    /// The keys of host commands the user approved before (state directory).
    pub approved: Vec<String>,
    /// The host's CDI GPU device for all GPUs (`KIND=all`), if it has a CDI spec.
    pub cdi_gpu: Option<String>,
    /// The image's PATH (its Config.Env), when known.
    pub image_path: Option<String>,
    /// The service-gator container, when enabled.
    pub gator: Option<GatorInput>,
    /// `[agent] model` and `[agent.opencode]` of the user's configuration.
    pub agent_model: Option<String>,
    pub agent_opencode: Option<serde_json::Value>,
    /// Whether [`BUNDLED_IMAGE`] is in the local store (it is then mounted for images
    /// without opencode).
    pub bundled_present: bool,
}

impl PlanInput {
    /// The devcontainer.json path for error messages (empty without one).
    pub fn config_file(&self) -> String {
        self.devcontainer_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// What enables and shapes the gator (the user's configuration and command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatorInput {
    pub image: String,
    pub scopes: Vec<gator::Scope>,
    pub gitlab_host: Option<String>,
    pub jira_host: Option<String>,
}

/// What `--dry-run` shows of the gator: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatorPlan {
    pub image: String,
    /// The effective scopes, `service:target:permissions`.
    pub scopes: Vec<String>,
    pub mcp_url: String,
    /// The token variables it gets as files (`GH_TOKEN_FILE`, ...), by secret name.
    pub token_files: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no image to run: the repo has no devcontainer.json with an \"image\" and no --image was given (pass --image IMAGE, e.g. --image localhost/devaipod-base:latest)"
    )]
    NoImage,
    #[error(
        "{path}: Compose configurations (\"dockerComposeFile\") are not supported by `up` yet; `devaipod config` reads them. Use an image-based devcontainer.json or pass --image"
    )]
    Compose { path: String },
    #[error("{path}: {reason}")]
    BadProperty { path: String, reason: String },
    #[error("{path}: mounts[{index}]: {reason}")]
    BadMount {
        path: String,
        index: usize,
        reason: String,
    },
    #[error(
        "{path}: mounts[{index}] binds the host path {source_path} into the workspace; host binds need your consent: pass --trust (or set trust = true for this repo in devaipod.toml)"
    )]
    BindNeedsTrust {
        path: String,
        index: usize,
        source_path: String,
    },
    #[error(
        "{path}: {names} take values from your host environment (${{localEnv:...}}); that needs your consent: pass --trust (or set trust = true for this repo in devaipod.toml)"
    )]
    HostEnvNeedsTrust { path: String, names: String },
    #[error(
        "{path}: {what} widen(s) the workspace's access to the host; that needs your consent: pass --trust (or set trust = true for this repo in devaipod.toml)"
    )]
    NeedsTrust { path: String, what: String },
    #[error(
        "{path}: \"workspaceFolder\" must be an absolute path inside the container (starting with '/')"
    )]
    RelativeWorkspaceFolder { path: String },
    #[error("label {0:?}: the io.devaipod. prefix is reserved for devaipod's own labels")]
    ReservedLabel(String),
    #[error(
        "image reference from {origin} is not valid: it must start with a letter or digit and contain only letters, digits and ._/:@- (e.g. localhost/devaipod-base:latest)"
    )]
    BadImage { origin: String },
    #[error(
        "{path}: \"workspaceFolder\" {folder:?} is a system or devaipod path; use a folder of its own such as /workspaces/NAME"
    )]
    ReservedWorkspaceFolder { path: String, folder: String },
}

/// Reads one entry of devcontainer.json's `mounts` (string `type=..,source=..,target=..`
/// or object form) into a mount of the workspace. `Err` says what is wrong with it.
pub fn parse_mount(v: &serde_json::Value) -> Result<MountSpec, String> {
    let (mut kind, mut source, mut target, mut read_only) = (None, None, None, false);
    match v {
        serde_json::Value::String(s) => {
            for part in s.split(',') {
                let part = part.trim();
                let (k, val) = part.split_once('=').unwrap_or((part, ""));
                match k {
                    "type" => kind = Some(val.to_string()),
                    "source" | "src" => source = Some(val.to_string()),
                    "target" | "dst" | "destination" => target = Some(val.to_string()),
                    "readonly" | "ro" => read_only = val.is_empty() || val == "true" || val == "1",
                    "consistency" | "" => {}
                    other => return Err(format!("unknown mount option {other:?}")),
                }
            }
        }
        serde_json::Value::Object(o) => {
            kind = o.get("type").and_then(|x| x.as_str()).map(str::to_string);
            source = o.get("source").and_then(|x| x.as_str()).map(str::to_string);
            target = o.get("target").and_then(|x| x.as_str()).map(str::to_string);
            read_only = o.get("readonly").and_then(|x| x.as_bool()).unwrap_or(false);
        }
        _ => return Err("a mount is a string or an object".into()),
    }
    let kind = kind.unwrap_or_else(|| "volume".into());
    let target = target
        .filter(|t| t.starts_with('/'))
        .ok_or("needs an absolute target")?;
    let target = target.trim_end_matches('/').to_string();
    if reserved_folder(&target) || target.starts_with(AGENT_REPO_IN_WORKSPACE) {
        return Err(format!("target {target:?} is a system or devaipod path"));
    }
    let source = match kind.as_str() {
        "volume" => {
            let s = source
                .filter(|s| !s.is_empty())
                .ok_or("a volume mount needs a source name")?;
            let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(format!(
                    "volume name {s:?} must be [A-Za-z0-9][A-Za-z0-9_.-]*"
                ));
            }
            s
        }
        "bind" => {
            let s = source
                .filter(|s| s.starts_with('/'))
                .ok_or("a bind mount needs an absolute source path")?;
            if engine_socket_path(&s) {
                return Err(format!(
                    "source {s:?} is a container engine's socket or directory; it is never mounted"
                ));
            }
            s
        }
        "tmpfs" => String::new(),
        other => return Err(format!("mount type {other:?} is not volume, bind or tmpfs")),
    };
    Ok(MountSpec {
        kind,
        source,
        target,
        read_only,
    })
}

/// Paths of container engines' sockets and state, which no container gets.
pub fn engine_socket_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p.ends_with("podman.sock")
        || p.ends_with("docker.sock")
        || p.contains("/podman/")
        || [
            "/run",
            "/var/run",
            "/run/podman",
            "/var/run/docker",
            "/run/docker",
            "/run/user",
            "/var/lib/containers",
            "/",
        ]
        .contains(&p)
        || p.starts_with("/run/user/")
        || p.starts_with("/var/lib/containers")
}

/// An image reference as Podman takes it: no leading `-`, no spaces or odd characters.
pub fn valid_image(reference: &str) -> bool {
    reference.len() <= 512
        && reference
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-'))
}

/// Folders the workspace may not be mounted at: system paths, and devaipod's own.
const RESERVED_FOLDERS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/tmp",
    "/var/tmp",
    "/var/lib/devaipod",
    AGENT_HOME,
];

/// Whether `folder` (absolute, no trailing slash) is `/`, has `..`/`.` parts, or is
/// inside a reserved folder.
pub fn reserved_folder(folder: &str) -> bool {
    folder == "/"
        || folder.split('/').any(|p| p == ".." || p == ".")
        || RESERVED_FOLDERS
            .iter()
            .any(|r| folder == *r || folder.starts_with(&format!("{r}/")))
}

/// The image reference `up` will use, and where it came from.
pub fn choose_image(input: &PlanInput) -> Result<(String, String), PlanError> {
    if let Some(img) = &input.image_override {
        return Ok((img.clone(), "--image".into()));
    }
    let dc = &input.devcontainer;
    if dc.docker_compose_file.is_some() {
        return Err(PlanError::Compose {
            path: input.config_file(),
        });
    }
    if let Some(b) = &input.build {
        return Ok((b.tag.clone(), input.config_file()));
    }
    match (&dc.image, &input.devcontainer_path) {
        (Some(img), Some(p)) => Ok((img.clone(), p.display().to_string())),
        _ => Err(PlanError::NoImage),
    }
}

/// Computes the plan. Pure: no engine, no filesystem.
pub fn build(input: &PlanInput) -> Result<PodPlan, PlanError> {
    let (image, source) = choose_image(input)?;
    if !valid_image(&image) {
        return Err(PlanError::BadImage { origin: source });
    }
    for key in input.extra_labels.keys() {
        if key.starts_with(labels::PREFIX) {
            return Err(PlanError::ReservedLabel(key.clone()));
        }
    }
    let pod_name = input.name.pod_name();
    let dc = &input.devcontainer;
    let workspace_folder = match &dc.workspace_folder {
        Some(f) if f.starts_with('/') => f.trim_end_matches('/').to_string(),
        Some(_) => {
            return Err(PlanError::RelativeWorkspaceFolder {
                path: input.config_file(),
            });
        }
        None => format!("/workspaces/{}", input.repo.folder_name),
    };
    let workspace_folder = if workspace_folder.is_empty() {
        "/".to_string()
    } else {
        workspace_folder
    };
    // workspaceMount: devaipod never bind-mounts the host folder; the clone volume goes
    // at its target, and workspaceFolder must be that folder or inside it.
    let mut wm_warnings = Vec::new();
    let clone_root = match &dc.workspace_mount {
        None => workspace_folder.clone(),
        Some(text) => {
            let m = parse_mount(&serde_json::Value::String(text.clone())).map_err(|reason| {
                PlanError::BadProperty {
                    path: input.config_file(),
                    reason: format!("workspaceMount: {reason}"),
                }
            })?;
            let target = m.target.trim_end_matches('/').to_string();
            if dc.workspace_folder.is_none() {
                return Err(PlanError::BadProperty {
                    path: input.config_file(),
                    reason: "workspaceMount needs workspaceFolder too (the spec requires both)"
                        .into(),
                });
            }
            if !(workspace_folder == target || workspace_folder.starts_with(&format!("{target}/")))
            {
                return Err(PlanError::BadProperty {
                    path: input.config_file(),
                    reason: format!(
                        "workspaceFolder {workspace_folder} is not inside workspaceMount's target {target}"
                    ),
                });
            }
            if m.kind == "bind" {
                wm_warnings.push(format!(
                    "workspaceMount: {} is not bind-mounted; the repo is cloned into a volume at {target}",
                    m.source
                ));
            }
            target
        }
    };
    if reserved_folder(&clone_root) {
        return Err(PlanError::ReservedWorkspaceFolder {
            path: input.config_file(),
            folder: clone_root,
        });
    }
    if reserved_folder(&workspace_folder) {
        return Err(PlanError::ReservedWorkspaceFolder {
            path: input.config_file(),
            folder: workspace_folder,
        });
    }
    let workdir = if input.repo.subdir.as_os_str().is_empty() {
        workspace_folder.clone()
    } else {
        format!(
            "{}/{}",
            workspace_folder.trim_end_matches('/'),
            input.repo.subdir.display()
        )
    };
    let repo_path = input.repo.path.display().to_string();
    let labels_for =
        |role: Role| labels::for_object(&input.name, role, &repo_path, &input.extra_labels);

    let ws_volume = format!("{pod_name}-workspace");
    let agent_repo_volume = format!("{pod_name}-agent-repo");
    let home_volume = format!("{pod_name}-agent-home");
    let volumes = vec![
        VolumeSpec {
            name: ws_volume.clone(),
            role: "workspace".into(),
            labels: labels_for(Role::Workspace),
        },
        VolumeSpec {
            name: agent_repo_volume.clone(),
            role: "agent-repo".into(),
            labels: labels_for(Role::Agent),
        },
        VolumeSpec {
            name: home_volume.clone(),
            role: "agent-home".into(),
            labels: labels_for(Role::Agent),
        },
    ];
    let ws_mount = MountSpec {
        kind: "volume".into(),
        source: ws_volume.clone(),
        target: clone_root.clone(),
        read_only: false,
    };
    // The agent works in its own clone (docs/security.md): nothing it writes under .git
    // can run in the workspace, which only fetches from it, read-only.
    let agent_repo_mount = MountSpec {
        kind: "volume".into(),
        source: agent_repo_volume.clone(),
        target: clone_root.clone(),
        read_only: false,
    };
    let agent_repo_for_workspace = MountSpec {
        kind: "volume".into(),
        source: agent_repo_volume.clone(),
        target: AGENT_REPO_IN_WORKSPACE.into(),
        read_only: true,
    };
    // remoteUser is the user people and tools work as; it owns the workspace's clone.
    // The agent has its own uid (AGENT_UID), which owns the agent's clone.
    let owner = dc.remote_user.clone().or_else(|| dc.container_user.clone());

    let password = password_secret_name(&input.name);
    let password_ref = |owner: Option<String>| SecretRef {
        name: password.clone(),
        target: PASSWORD_FILE.into(),
        owner,
        mode: 0o400,
    };
    // User secrets: podman secrets devaipod makes from its environment (or existing
    // ones), mounted as files; the agent's are exported into its process by its
    // start command, the workspace's are named by NAME_FILE.
    let mut created_secrets: Vec<SecretSpec> = Vec::new();
    let mut user_refs = |list: &[UserSecret], role: Role, mode: u32, owner: Option<String>| {
        list.iter()
            .map(|s| {
                let name = match &s.existing {
                    Some(existing) => existing.clone(),
                    None => {
                        let name = format!("{pod_name}-secret-{}", s.env_name.to_ascii_lowercase());
                        created_secrets.push(SecretSpec {
                            name: name.clone(),
                            source: SecretSource::Environment {
                                variable: s.env_name.clone(),
                            },
                            labels: labels_for(role),
                        });
                        name
                    }
                };
                SecretRef {
                    name,
                    target: secret_file(&s.env_name),
                    owner: owner.clone(),
                    mode,
                }
            })
            .collect::<Vec<_>>()
    };
    // The workspace's secret files belong to its people's user (remoteUser, else
    // containerUser, else the image's), 0400.
    let workspace_secrets = user_refs(
        &input.trusted_secrets,
        Role::Workspace,
        0o400,
        owner.clone(),
    );
    let agent_user = Some(AGENT_UID.to_string());
    let agent_secrets = user_refs(&input.agent_secrets, Role::Agent, 0o400, agent_user.clone());
    if !input.container_env_from_host.is_empty() && input.trust.is_none() {
        return Err(PlanError::HostEnvNeedsTrust {
            path: input.config_file(),
            names: input.container_env_from_host.join(", "),
        });
    }
    let mut hr_warnings = Vec::new();
    let mut gpu_devices = Vec::new();
    let (ws_cpus, ws_memory) = match &dc.host_requirements {
        Some(v) => host_requirements(
            v,
            input.cdi_gpu.as_deref(),
            &mut gpu_devices,
            &mut hr_warnings,
        )
        .map_err(|reason| PlanError::BadProperty {
            path: input.config_file(),
            reason,
        })?,
        None => (None, None),
    };
    let bad = |reason: String| PlanError::BadProperty {
        path: input.config_file(),
        reason,
    };
    let ra = run_args::parse(
        dc.run_args.as_deref().unwrap_or_default(),
        &input.repo.path.display().to_string(),
    )
    .map_err(bad)?;
    // Settings that widen the workspace's access need consent, like host binds.
    let mut widening = ra.needs_trust.clone();
    if dc.privileged == Some(true) {
        widening.push("privileged".into());
    }
    for c in dc.cap_add.iter().flatten() {
        widening.push(format!("capAdd {c}"));
    }
    for o in dc.security_opt.iter().flatten() {
        run_args::security_opt_known(o).map_err(|e| bad(format!("securityOpt: {e}")))?;
        widening.push(format!("securityOpt {o}"));
    }
    if let Some(g) = &ra.gpus {
        match &input.cdi_gpu {
            Some(d) => gpu_devices.push(d.clone()),
            None => {
                return Err(bad(format!(
                    "runArgs: --gpus {g}: devaipod gives containers GPUs only through CDI devices, and this host has no CDI GPU specification in /etc/cdi or /var/run/cdi"
                )));
            }
        }
    }
    if !widening.is_empty() && input.trust.is_none() {
        return Err(PlanError::NeedsTrust {
            path: input.config_file(),
            what: widening.join(", "),
        });
    }
    let mut run_env = ra.env.clone();
    for f in &ra.env_files {
        let text = input
            .env_files
            .get(f)
            .ok_or_else(|| bad(format!("runArgs: --env-file {f} was not read")))?;
        run_env.extend(run_args::parse_env_file(text, f).map_err(bad)?);
    }
    // The repo's mounts, for the workspace only (never the agent).
    let mut repo_mounts = Vec::new();
    let mut trusted_binds = Vec::new();
    for (index, m) in dc.mounts.iter().flatten().enumerate() {
        let mount = parse_mount(m).map_err(|reason| PlanError::BadMount {
            path: input.config_file(),
            index,
            reason,
        })?;
        if mount.target == workspace_folder {
            return Err(PlanError::BadMount {
                path: input.config_file(),
                index,
                reason: "its target is the workspace folder itself".into(),
            });
        }
        if mount.kind == "bind" {
            if input.trust.is_none() {
                return Err(PlanError::BindNeedsTrust {
                    path: input.config_file(),
                    index,
                    source_path: mount.source.clone(),
                });
            }
            trusted_binds.push(format!(
                "mounts[{index}] binds {} at {}",
                mount.source, mount.target
            ));
        }
        repo_mounts.push(mount);
    }
    for m in &ra.mounts {
        if m.target == workspace_folder || m.target == clone_root {
            return Err(bad(format!(
                "runArgs: the mount at {} would hide the workspace folder",
                m.target
            )));
        }
        if m.kind == "bind" {
            trusted_binds.push(format!("runArgs binds {} at {}", m.source, m.target));
        }
    }
    repo_mounts.extend(ra.mounts.iter().cloned());
    // The repo's containerEnv, then devaipod's own (which wins).
    let mut workspace_env: BTreeMap<String, String> = run_env;
    workspace_env.extend(dc.container_env.clone().unwrap_or_default());
    workspace_env.extend(
        input
            .trusted_secrets
            .iter()
            .map(|s| (format!("{}_FILE", s.env_name), secret_file(&s.env_name))),
    );
    // git refuses to read a repo another uid owns unless it is a safe.directory, which
    // it honours only from system/global config (and a fetch's upload-pack does not see
    // command-line config): the workspace's system config is devaipod's file, which
    // includes the image's /etc/gitconfig and adds the agent's clone.
    workspace_env.insert("GIT_CONFIG_SYSTEM".into(), WORKSPACE_GITCONFIG.into());
    // The shims on PATH in every exec session (login shells get them from
    // /etc/profile.d/devaipod.sh): the image's PATH, then devaipod's folder.
    if !workspace_env.contains_key("PATH") {
        let base = input.image_path.as_deref().unwrap_or(DEFAULT_PATH);
        workspace_env.insert("PATH".into(), format!("{base}:{SHIM_DIR}"));
    }
    // The bundled opencode, read-only, for images without their own (the image's own
    // comes first on PATH). Not when the image is the bundled one.
    let bundled: Vec<(String, String)> = if input.bundled_present && image != BUNDLED_IMAGE {
        vec![(BUNDLED_IMAGE.to_string(), BUNDLED_MOUNT.to_string())]
    } else {
        Vec::new()
    };
    let command = match dc.override_command {
        Some(false) => match &input.image_command {
            Some(cmd) if !cmd.is_empty() => keep_alive(cmd),
            // Not known yet (a dry run before the image is built).
            None => keep_alive(&["<the image's ENTRYPOINT and CMD>".to_string()]),
            Some(_) => {
                return Err(bad(
                    "overrideCommand is false but the image has no ENTRYPOINT or CMD to run".into(),
                ));
            }
        },
        _ => keep_alive(&[]),
    };
    let mut cap_add: Vec<String> = ra.cap_add.clone();
    cap_add.extend(dc.cap_add.iter().flatten().map(|c| c.to_ascii_uppercase()));
    let mut security_opt: Vec<String> = ra.security_opt.clone();
    security_opt.extend(dc.security_opt.iter().flatten().cloned());
    if dc.init == Some(false) || ra.init == Some(false) {
        hr_warnings.push(
            "init: false has no effect: devaipod always runs an init in the workspace so stop and delete are immediate".into(),
        );
    }
    let mut ws_labels = labels_for(Role::Workspace);
    for (k, v) in &ra.labels {
        ws_labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let workspace = ContainerSpec {
        role: Role::Workspace,
        name: format!("{pod_name}-workspace"),
        image: image.clone(),
        command,
        user: ra.user.clone().or_else(|| dc.container_user.clone()),
        workdir: ra.workdir.clone().unwrap_or_else(|| workdir.clone()),
        init: true,
        cap_drop: ra.cap_drop.clone(),
        cap_add,
        no_new_privileges: security_opt
            .iter()
            .any(|o| o.starts_with("no-new-privileges")),
        security_opt,
        seccomp: Seccomp::Default,
        read_only: false,
        tmpfs: vec![],
        pids_limit: None,
        memory_limit: ra.memory.or(ws_memory),
        cpu_millis: ra.cpus.or(ws_cpus).map(|c| (c * 1000.0).round() as i64),
        image_mounts: bundled.clone(),
        mounts: [ws_mount, agent_repo_for_workspace]
            .into_iter()
            .chain(repo_mounts)
            .collect(),
        env: workspace_env,
        // The server password too: attaching to the agent from the workspace needs it.
        secrets: std::iter::once(password_ref(owner.clone()))
            .chain(workspace_secrets.iter().cloned())
            .collect(),
        labels: ws_labels,
        extra: Extras {
            privileged: ra.privileged || dc.privileged == Some(true),
            devices: ra.devices.iter().chain(&gpu_devices).cloned().collect(),
            shm_size: ra.shm_size,
            ulimits: ra.ulimits.clone(),
            sysctls: ra.sysctls.clone(),
            hostname: ra.hostname.clone(),
            runtime: ra.runtime.clone(),
        },
    };
    let agent_config_secret = format!("{pod_name}-agent-config");
    let agent_env: BTreeMap<String, String> = [
        ("HOME", AGENT_HOME),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_CONFIG", AGENT_CONFIG_FILE),
        // The repo's own opencode.json could otherwise override the user's settings.
        ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let agent = ContainerSpec {
        role: Role::Agent,
        name: format!("{pod_name}-agent"),
        image: image.clone(),
        command: agent_command(
            &input
                .agent_secrets
                .iter()
                .map(|s| s.env_name.clone())
                .collect::<Vec<_>>(),
        ),
        user: Some(format!("{AGENT_UID}:{AGENT_UID}")),
        workdir: workdir.clone(),
        init: true,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        security_opt: vec!["no-new-privileges".into(), "seccomp=devaipod-agent".into()],
        seccomp: Seccomp::Agent,
        read_only: true,
        tmpfs: AGENT_TMPFS.iter().map(|s| s.to_string()).collect(),
        pids_limit: Some(input.agent_pids_limit),
        memory_limit: Some(input.agent_memory_limit),
        cpu_millis: None,
        image_mounts: bundled,
        mounts: vec![
            agent_repo_mount,
            MountSpec {
                kind: "volume".into(),
                source: home_volume,
                target: AGENT_HOME.into(),
                read_only: false,
            },
        ],
        env: agent_env,
        secrets: [
            password_ref(agent_user.clone()),
            SecretRef {
                name: agent_config_secret.clone(),
                target: AGENT_CONFIG_FILE.into(),
                owner: agent_user.clone(),
                mode: 0o400,
            },
        ]
        .into_iter()
        .chain(agent_secrets)
        .collect(),
        labels: labels_for(Role::Agent),
        extra: Extras::default(),
    };

    let mut warnings = input.config_warnings.clone();
    // The gator: hardened like the agent, holding the forge tokens as files.
    let mut gator_plan = None;
    let gator_container = match &input.gator {
        None => None,
        Some(g) => {
            let gator_user = Some(gator::UID.to_string());
            let mut env: BTreeMap<String, String> = [("HOME", "/tmp")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Some(h) = &g.jira_host {
                env.insert("JIRA_HOST".into(), h.clone());
            }
            let mut secrets = Vec::new();
            let mut token_files = Vec::new();
            for (s, r) in input.trusted_secrets.iter().zip(&workspace_secrets) {
                if let Some(var) = gator::token_var(&s.env_name) {
                    if env.contains_key(var) {
                        continue;
                    }
                    env.insert(var.into(), r.target.clone());
                    token_files.push(format!("{var} <- {}", s.env_name));
                    secrets.push(SecretRef {
                        name: r.name.clone(),
                        target: r.target.clone(),
                        owner: gator_user.clone(),
                        mode: 0o400,
                    });
                }
            }
            for (service, var, names) in [
                (
                    gator::Service::Github,
                    "GH_TOKEN_FILE",
                    "GH_TOKEN or GITHUB_TOKEN",
                ),
                (gator::Service::Gitlab, "GITLAB_TOKEN_FILE", "GITLAB_TOKEN"),
                (
                    gator::Service::Jira,
                    "JIRA_API_TOKEN_FILE",
                    "JIRA_API_TOKEN",
                ),
            ] {
                if g.scopes.iter().any(|s| s.service == service) && !env.contains_key(var) {
                    warnings.push(format!(
                        "service-gator has {service:?} scopes but no token: list {names} under [trusted] secrets"
                    ));
                }
            }
            gator_plan = Some(GatorPlan {
                image: g.image.clone(),
                scopes: g.scopes.iter().map(ToString::to_string).collect(),
                mcp_url: gator::mcp_url(),
                token_files,
            });
            Some(ContainerSpec {
                role: Role::Gator,
                name: format!("{pod_name}-gator"),
                image: g.image.clone(),
                command: gator::command(&g.scopes, g.gitlab_host.as_deref()),
                user: Some(format!("{0}:{0}", gator::UID)),
                workdir: "/".into(),
                init: true,
                cap_drop: vec!["ALL".into()],
                cap_add: vec![],
                no_new_privileges: true,
                security_opt: vec!["no-new-privileges".into()],
                seccomp: Seccomp::Default,
                read_only: true,
                tmpfs: vec!["/tmp".into(), "/run/secrets".into()],
                pids_limit: Some(1024),
                memory_limit: Some(1024 * 1024 * 1024),
                cpu_millis: None,
                image_mounts: vec![],
                mounts: vec![],
                env,
                secrets,
                labels: labels_for(Role::Gator),
                extra: Extras::default(),
            })
        }
    };
    warnings.extend(hr_warnings);
    warnings.extend(wm_warnings);
    warnings.extend(ra.warnings.iter().cloned());
    let ports = parse_ports(
        dc.forward_ports.as_deref().unwrap_or_default(),
        dc.app_port.as_ref(),
        &mut warnings,
    )
    .map_err(|reason| PlanError::BadProperty {
        path: input.config_file(),
        reason,
    })?;
    let mut ports = ports;
    for p in &ra.ports {
        if !ports
            .iter()
            .any(|q| q.container_port == p.container_port && q.protocol == p.protocol)
        {
            ports.push(p.clone());
        }
    }
    if input.repo.uncommitted > 0 {
        warnings.push(format!(
            "{} has {} uncommitted change(s); the workspace gets HEAD ({}) without them",
            input.repo.root.display(),
            input.repo.uncommitted,
            short(&input.repo.head)
        ));
    }

    Ok(PodPlan {
        name: input.name.clone(),
        image: ImagePlan {
            reference: image,
            source,
            state: input.image_state.clone(),
            build: if input.image_override.is_none() {
                input.build.clone()
            } else {
                None
            },
        },
        pod: PodSpec {
            name: pod_name.clone(),
            hostname: input.name.to_string(),
            dns: ra.dns.clone(),
            add_hosts: ra.add_hosts.clone(),
            ports,
            share: vec!["net".into()],
            labels: {
                let mut l = labels_for(Role::Pod);
                l.insert(labels::BASE.into(), input.repo.head.clone());
                if let Some(b) = &input.repo.branch {
                    l.insert(labels::BASE_BRANCH.into(), b.clone());
                }
                l.insert(labels::WORKDIR.into(), workdir.clone());
                l.insert(labels::CLONE.into(), clone_root.clone());
                if let Some(u) = &owner {
                    l.insert(labels::REMOTE_USER.into(), u.clone());
                }
                if let Some(c) = dc
                    .post_attach_command
                    .as_ref()
                    .and_then(Command::from_value)
                {
                    l.insert(
                        labels::POST_ATTACH.into(),
                        serde_json::to_string(&c).unwrap_or_default(),
                    );
                }
                if let Some(env) = dc.remote_env.as_ref().filter(|e| !e.is_empty()) {
                    l.insert(
                        labels::REMOTE_ENV.into(),
                        serde_json::to_string(env).unwrap_or_default(),
                    );
                }
                let names: Vec<&str> = [password.as_str(), agent_config_secret.as_str()]
                    .into_iter()
                    .chain(created_secrets.iter().map(|s| s.name.as_str()))
                    .collect();
                l.insert(SECRETS_LABEL.into(), names.join(","));
                l
            },
        },
        volumes,
        secrets: [
            SecretSpec {
                name: password.clone(),
                source: SecretSource::Generated,
                labels: labels_for(Role::Agent),
            },
            SecretSpec {
                name: agent_config_secret.clone(),
                source: SecretSource::AgentConfig,
                labels: labels_for(Role::Agent),
            },
        ]
        .into_iter()
        .chain(created_secrets)
        .collect(),
        containers: [Some(workspace), Some(agent), gator_container]
            .into_iter()
            .flatten()
            .collect(),
        gator: gator_plan,
        repo: RepoPlan {
            host_path: input.repo.root.clone(),
            head: input.repo.head.clone(),
            branch: input.repo.branch.clone(),
            uncommitted: input.repo.uncommitted,
            volume: ws_volume,
            agent_volume: agent_repo_volume,
            agent_branch: format!("devaipod/{}", input.name),
            workspace_folder: clone_root,
            workdir,
            owner,
        },
        readiness: ReadinessPlan {
            url: readiness_url(),
            timeout_secs: input.ready_timeout_secs,
        },
        agent_config: {
            let mcp = input.gator.as_ref().map(|_| gator::mcp_url());
            let v = agent_opencode_config(
                input.agent_model.as_deref(),
                mcp.as_deref(),
                input.agent_opencode.as_ref(),
            );
            AgentConfigPlan {
                model: v["model"].as_str().map(str::to_string),
                keys: v
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default(),
                content: serde_json::to_string_pretty(&v).unwrap_or_default(),
            }
        },
        initialize: dc
            .initialize_command
            .as_ref()
            .and_then(Command::from_value)
            .map(|command| {
                let key = InitializePlan::key_for(&input.repo.root, &command);
                InitializePlan {
                    approved: input.trust.is_some() || input.approved.contains(&key),
                    command,
                    dir: input.repo.path.clone(),
                    config: input.config_file(),
                    key,
                }
            }),
        lifecycle: {
            let step = |property: &str, v: &Option<serde_json::Value>| {
                v.as_ref()
                    .and_then(Command::from_value)
                    .map(|command| LifecycleStep {
                        property: property.into(),
                        command,
                    })
            };
            let start: Vec<LifecycleStep> = step("postStartCommand", &dc.post_start_command)
                .into_iter()
                .collect();
            LifecyclePlan {
                env: dc.remote_env.clone().unwrap_or_default(),
                create: [
                    step("onCreateCommand", &dc.on_create_command),
                    step("updateContentCommand", &dc.update_content_command),
                    step("postCreateCommand", &dc.post_create_command),
                ]
                .into_iter()
                .flatten()
                .chain(start.clone())
                .collect(),
                start,
            }
        },
        trust: TrustPlan {
            granted_by: input.trust.clone(),
            applied: input
                .container_env_from_host
                .iter()
                .map(|n| format!("{n} from the host environment (workspace only)"))
                .chain(trusted_binds)
                .chain(
                    widening
                        .iter()
                        .filter(|w| !w.contains(" binds "))
                        .map(|w| format!("{w} (workspace only)")),
                )
                .collect(),
        },
        warnings,
    })
}

/// The workspace's command, as the reference CLI wraps it: a shell that exits on
/// SIGTERM, runs `cmd` (the image's own, for `overrideCommand: false`) if any, and
/// otherwise waits forever.
pub fn keep_alive(cmd: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "/bin/sh",
        "-c",
        "echo Container started\ntrap \"exit 0\" 15\nexec \"$@\"\nwhile sleep 1 & wait $!; do :; done",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(cmd.iter().cloned());
    v
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests;

pub mod gator;
pub mod run_args;

/// Plan inputs for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::input;
}
