//! What the plan is computed from: the host repo's facts, the devcontainer config, the
//! user's configuration and the command line, all gathered by the caller.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::gator;
use super::spec::ImageState;
use crate::devcontainer::DevContainer;
use crate::names::Name;

pub(crate) mod net;
pub(crate) mod presets;

pub(crate) use net::{AllowName, CredentialInput, NetworkInput, NetworkMode, TestNet};

/// The facts about the host repo that the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoFacts {
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

/// What a feature's devcontainer-feature.json asks of the workspace at run time: the
/// widening settings (which need consent), its mounts, its entrypoint and its lifecycle
/// commands. The workspace gets them; the agent, which runs the same image, never does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FeatureSettings {
    /// The feature as the config names it.
    pub id: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    /// `mounts`, as written (strings or objects).
    pub mounts: Vec<serde_json::Value>,
    /// `entrypoint`: a command the workspace runs when it starts, before its own.
    pub entrypoint: Option<String>,
    /// The lifecycle commands by property (`onCreateCommand` ... `postAttachCommand`).
    pub lifecycle: BTreeMap<String, serde_json::Value>,
}

/// A user secret for the plan: the name the consumer sees, and an existing podman
/// secret to use instead of devaipod's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserSecret {
    pub env_name: String,
    pub existing: Option<String>,
}

/// What enables and shapes the gator (the user's configuration and command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatorInput {
    pub image: String,
    pub scopes: Vec<gator::Scope>,
    pub gitlab_host: Option<String>,
    pub jira_host: Option<String>,
    pub jira_username: Option<String>,
    /// The image's ENTRYPOINT, from the engine once the image is in the local store
    /// (`None` before: `--dry-run` of an image still to pull assumes `service-gator`).
    pub entrypoint: Option<Vec<String>>,
}

/// Whether the engine's storage can hold a volume to a size: Podman's local volume
/// option `size` works only where Podman can set an XFS project quota on the volume's
/// directory (the volume path on XFS mounted with `prjquota`, and a rootful engine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum VolumeQuota {
    /// Not asked: `--dry-run` without an engine.
    #[default]
    Unknown,
    /// Podman sets a project quota on each new volume that asks for a size.
    Enforced,
    /// Why not, for the user (where the volumes are and what they are on).
    NotEnforced(String),
}

/// Everything the plan is computed from.
#[derive(Debug, Clone)]
pub(crate) struct PlanInput {
    pub name: Name,
    pub repo: RepoFacts,
    pub devcontainer: DevContainer,
    /// Where the devcontainer.json was read from, if any.
    pub devcontainer_path: Option<PathBuf>,
    /// Its text, to say where in it a refused value is.
    pub devcontainer_text: Option<std::sync::Arc<str>>,
    pub image_override: Option<String>,
    pub image_state: ImageState,
    /// The image build of a Dockerfile configuration.
    pub build: Option<crate::build::BuildPlan>,
    /// Extra labels from `--label`, put on every object.
    pub extra_labels: BTreeMap<String, String>,
    pub ready_timeout_secs: u64,
    /// Warnings from reading the inputs (devcontainer.json's ignored properties, the
    /// user's network settings), shown by `up` and `--dry-run`.
    pub config_warnings: Vec<String>,
    /// `[agent] secrets` of the user's config: for the agent only.
    pub agent_secrets: Vec<UserSecret>,
    /// `[trusted] secrets` of the user's config: for the workspace only, never the agent.
    pub trusted_secrets: Vec<UserSecret>,
    /// The agent's limits (user config; defaults otherwise).
    pub agent_pids_limit: i64,
    pub agent_memory_limit: i64,
    /// The most each of the agent's volumes may hold (bytes); `None`: no limit.
    pub agent_disk_limit: Option<u64>,
    /// Whether the engine's storage enforces a volume's size (an engine fact).
    pub volume_quota: VolumeQuota,
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
    /// Where `agent_model` came from when devaipod chose it (a preset's default).
    pub agent_model_from: Option<String>,
    pub agent_opencode: Option<serde_json::Value>,
    /// The agent's network: mode, allowlist, credential routes, the host's addresses.
    pub network: NetworkInput,
    /// The id of [`super::BUNDLED_IMAGE`] when it is in the local store (its opencode is
    /// then mounted for images without their own).
    pub bundled_id: Option<String>,
    /// The derived image with the config's features, once `up` made it (or found it).
    pub features_image: Option<String>,
    /// The features' widening settings, in install order: the workspace's with consent.
    pub feature_settings: Vec<FeatureSettings>,
    /// The image of the network guard and the workspace's SSH helpers
    /// (`localhost/devaipod-net:KEY`, made from the devaipod-net binary by `up`) and
    /// whether it is in the local store. Empty when there is no binary and the network
    /// is `full` (which needs no guard): the workspace then goes without the helpers.
    pub net_image: String,
    pub net_image_state: ImageState,
}

impl PlanInput {
    /// The devcontainer.json path for error messages (empty without one).
    pub(crate) fn config_file(&self) -> String {
        self.devcontainer_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The user that owns the workspace's clone and its secret files, and that people
    /// and tools work as: remoteUser, else containerUser, else (`None`) the image's.
    pub(crate) fn owner(&self) -> Option<String> {
        let dc = &self.devcontainer;
        dc.remote_user.clone().or_else(|| dc.container_user.clone())
    }

    /// Whether the user consented to repo settings that widen access.
    pub(crate) fn trusted(&self) -> bool {
        self.trust.is_some()
    }
}

impl PlanInput {
    /// A refusal of a devcontainer.json property, naming the file and, where the value
    /// at `key` (a key path such as `forwardPorts` or `mounts[2]`; empty for none) is
    /// written in it, its line and column.
    pub(crate) fn bad_property(&self, key: &str, reason: String) -> super::PlanError {
        super::PlanError::BadProperty {
            path: self.config_at(key),
            reason,
        }
    }

    /// `FILE:LINE:COL` of the value at `key` in the devcontainer.json, else `FILE`.
    pub(crate) fn config_at(&self, key: &str) -> String {
        let file = self.config_file();
        let at = (!key.is_empty())
            .then_some(self.devcontainer_text.as_deref())
            .flatten()
            .and_then(|text| crate::devcontainer::locate(text, key));
        match at {
            Some((line, column)) if !file.is_empty() => format!("{file}:{line}:{column}"),
            _ => file,
        }
    }
}
