//! The plan's output: the pod, its containers, volumes and secrets, as `--dry-run`
//! prints them and `podman::apply` creates them. Values only; the builders beside this
//! module decide them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::consent::Consent;
use super::labels::Role;
use super::lifecycle::{InitializePlan, LifecyclePlan};
use super::run_args;
use crate::names::Name;

/// Everything `up` creates, in creation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PodPlan {
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
    /// The agent's network: its mode, allowlist and credential routes.
    pub network: super::network::NetworkPlan,
    /// Warnings the user should see (also printed by `up`).
    pub warnings: Vec<String>,
}

impl PodPlan {
    /// The container with this role, if the plan has one.
    pub(crate) fn container(&self, role: Role) -> Option<&ContainerSpec> {
        self.containers.iter().find(|c| c.role == role)
    }

    /// The shared volumes the containers mount, each once.
    pub(crate) fn shared_volumes(&self) -> Vec<&SharedMount> {
        let mut out: Vec<&SharedMount> = Vec::new();
        for m in self.containers.iter().flat_map(|c| &c.shared_mounts) {
            if !out.iter().any(|o| o.volume == m.volume) {
                out.push(m);
            }
        }
        out
    }
}

/// Whether the image exists in the engine's local store, or how `up` gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub(crate) enum ImageState {
    /// Present locally.
    Present { id: String },
    /// Not present: `up` would fail; the note says how to get it.
    Missing { note: String },
    /// Not checked (no engine reachable during `--dry-run`).
    Unknown { note: String },
    /// Built by `up` from the configuration's Dockerfile (not present, or `--rebuild`).
    WillBuild,
    /// Pulled by `up` through the engine before anything is created (`--pull`).
    WillPull,
}

/// The image every container of the pod (but the gator) runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ImagePlan {
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

/// The pod itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PodSpec {
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

/// A port of the pod published on the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct PortSpec {
    pub container_port: u16,
    /// The host port asked for; `None`: the same as the container's if free, else any
    /// free one (chosen at `up`).
    pub host_port: Option<u16>,
    pub protocol: String,
}

/// A named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VolumeSpec {
    pub name: String,
    pub role: String,
    pub labels: BTreeMap<String, String>,
    /// The size Podman holds it to (bytes; the local driver's `size` option, an XFS
    /// project quota): `[agent] disk_limit` on the agent's volumes where the engine's
    /// storage enforces it, `null` everywhere else (and when no engine was asked).
    pub size_limit: Option<u64>,
}

/// What a mount is: it decides which engine field carries it and whether it needs
/// the user's consent (a host bind does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MountKind {
    /// A named volume.
    Volume,
    /// A host path.
    Bind,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountKind {
    /// The name devcontainer.json and Podman use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MountKind::Volume => "volume",
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

impl std::fmt::Display for MountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A folder of one of devaipod's images (devaipod-net, the bundled opencode), copied once
/// into a volume that every pod mounts read-only. Not an image mount: Podman's image
/// mounts are counted per store, and a pod stopping while another starts could unmount
/// one under a starting container (on Podman 4.3 and 5.4 alike; docs/podman5.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SharedMount {
    /// The volume, named by the image's content (`devaipod-net-KEY`, `devaipod-bundled-ID`).
    pub volume: String,
    /// The image the folder comes from, and the folder in it.
    pub image: String,
    pub path: String,
    /// A file the folder holds, relative to it (what the copy's helper names as its
    /// command: the copy is made without running anything).
    pub file: String,
    /// Where the container sees it.
    pub target: String,
}

/// A mount into a container: a named volume, a host bind or a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MountSpec {
    #[serde(rename = "type")]
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl MountSpec {
    /// A read-write or read-only mount of the named volume `source`.
    pub(crate) fn volume(source: &str, target: &str, read_only: bool) -> Self {
        MountSpec {
            kind: MountKind::Volume,
            source: source.into(),
            target: target.into(),
            read_only,
        }
    }
}

/// A podman secret mounted into a container as a file (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SecretRef {
    pub name: String,
    pub target: String,
    /// Whose file it is: the container's user (`remoteUser`/`containerUser`/image's).
    pub owner: Option<String>,
    pub mode: u32,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum SecretSource {
    /// A fresh random value made at `up` (the opencode server password).
    Generated,
    /// The agent's opencode configuration ([`PodPlan::agent_config`]).
    AgentConfig,
    /// The proxy's configuration ([`PodPlan::network`]).
    NetConfig,
    /// devaipod's environment variable of this name, at `up`.
    Environment { variable: String },
}

/// A podman secret devaipod creates (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SecretSpec {
    pub name: String,
    pub source: SecretSource,
    pub labels: BTreeMap<String, String>,
}

/// A seccomp profile for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Seccomp {
    /// Podman's default profile.
    Default,
    /// devaipod's agent profile (containers/seccomp/agent.json, embedded): Podman's
    /// default minus user namespaces, mount, keyrings, bpf, ptrace and io_uring.
    Agent,
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerSpec {
    pub role: Role,
    pub name: String,
    pub image: String,
    /// The whole argv: `command[0]` replaces the image's ENTRYPOINT, so nothing of the
    /// image runs before it (the gator's names its image's entrypoint itself, after
    /// devaipod-net's relay).
    pub command: Vec<String>,
    /// `None`: the image's default user.
    pub user: Option<String>,
    pub workdir: String,
    /// Run podman's init (catatonit) as PID 1 so stop and delete are immediate.
    pub init: bool,
    /// A Podman init container of type `always`: run to completion before the pod's
    /// other containers on every start of the pod (the network rules).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init_container: bool,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub security_opt: Vec<String>,
    pub seccomp: Seccomp,
    /// Read-only root filesystem, with tmpfs at [`super::AGENT_TMPFS`].
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub pids_limit: Option<i64>,
    pub memory_limit: Option<i64>,
    /// CPU limit in thousandths of a CPU, from `hostRequirements.cpus` (workspace).
    pub cpu_millis: Option<i64>,
    pub mounts: Vec<MountSpec>,
    /// Folders of images, copied once into volumes every pod shares, mounted read-only:
    /// the bundled opencode, and devaipod-net in the agent (its gate) and the workspace
    /// (the SSH helpers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_mounts: Vec<SharedMount>,
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
pub(crate) struct Extras {
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

/// Serializes an environment as its names only: values may be secret-like.
pub(crate) fn keys_only<S: Serializer>(
    env: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.keys())
}

/// How the repo gets into the workspace volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RepoPlan {
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
pub(crate) struct ReadinessPlan {
    pub url: String,
    pub timeout_secs: u64,
}

/// What the plan says about the agent's configuration (never its content: a user may
/// have put a key in it against the advice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AgentConfigPlan {
    pub model: Option<String>,
    /// Where devaipod's choice of `model` came from (a provider preset's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_from: Option<String>,
    /// Top-level keys of the configuration file.
    pub keys: Vec<String>,
    #[serde(skip)]
    pub content: String,
}

/// What `--dry-run` shows of the gator: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GatorPlan {
    pub image: String,
    /// The effective scopes, `service:target:permissions`.
    pub scopes: Vec<String>,
    pub mcp_url: String,
    /// The token variables it gets as files (`GH_TOKEN_FILE`, ...), by secret name.
    pub token_files: Vec<String>,
    /// Where service-gator itself listens, behind devaipod-net's relay on `mcp_url`
    /// (which logs each request and its outcome).
    pub server: String,
    /// What runs service-gator, and where that was read.
    pub entrypoint: Vec<String>,
    pub entrypoint_from: String,
}

/// What `--trust` or `[repos."PATH"] trust` granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TrustPlan {
    /// `None`: no consent given.
    pub granted_by: Option<String>,
    /// The repo settings the consent let through (each printed as a sentence).
    pub applied: Vec<Consent>,
}
