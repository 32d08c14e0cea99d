//! The labels on every object devaipod creates; `list`, `delete` and cleanup find
//! objects by these, never by name guessing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::names::Name;

/// Every devaipod label starts with this.
pub(crate) const PREFIX: &str = "io.devaipod.";
/// NAME of the workspace the object belongs to.
pub(crate) const POD: &str = "io.devaipod.pod";
/// What the object is for (see [`Role`]).
pub(crate) const ROLE: &str = "io.devaipod.role";
/// The host repo path the workspace was made from.
pub(crate) const REPO: &str = "io.devaipod.repo";
/// Pod only: the host commit the workspace started from (review diffs against it).
pub(crate) const BASE: &str = "io.devaipod.base";
/// Pod only: the host branch the workspace started from, if any.
pub(crate) const BASE_BRANCH: &str = "io.devaipod.base-branch";
/// Pod only: the agent's working folder (opencode's session directory) and the
/// folder of its clone.
pub(crate) const WORKDIR: &str = "io.devaipod.workdir";
pub(crate) const CLONE: &str = "io.devaipod.clone";
/// Pod only: the user attach/ssh sessions run as (remoteUser), if set.
pub(crate) const REMOTE_USER: &str = "io.devaipod.remote-user";
/// Pod only: postAttachCommand (JSON), run at every attach.
pub(crate) const POST_ATTACH: &str = "io.devaipod.post-attach";
/// Pod only: remoteEnv (JSON), the environment of attach/ssh sessions.
pub(crate) const REMOTE_ENV: &str = "io.devaipod.remote-env";
/// Pod only: the podman secrets made for the workspace (the secrets API of Podman 4.3
/// takes no labels, so delete finds them through the pod).
pub(crate) const SECRETS: &str = "io.devaipod.secrets";
/// The devaipod version that created the object.
pub(crate) const VERSION: &str = "io.devaipod.version";
/// The pod's network as `up` planned it (mode, allowlist, credential providers; JSON).
pub(crate) const NETWORK: &str = "io.devaipod.network";
/// Pod only: postStartCommand as `up` ran it (JSON), for `start`.
pub(crate) const POST_START: &str = "io.devaipod.post-start";
/// Pod only: devaipod-net in the workspace (`/opt/devaipod-net/devaipod-net`), whose
/// `sftp-server` and `relay` devaipod's SSH server runs there. Absent when the pod has
/// no helpers: made before they existed, or without devaipod-net (network = full).
pub(crate) const HELPER: &str = "io.devaipod.helper";

/// What an object is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Pod,
    Workspace,
    Agent,
    Gator,
    Proxy,
    /// The pod's init container that installs the agent's network rules.
    Rules,
    /// A short-lived container outside the pod's plan: a job reading the agent's
    /// clone, or the toolbox route into the pod.
    #[value(skip)]
    Helper,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Workspace => "workspace",
            Role::Agent => "agent",
            Role::Gator => "gator",
            Role::Proxy => "proxy",
            Role::Rules => "rules",
            Role::Helper => "helper",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Refuses `--label`s under devaipod's own prefix.
pub(crate) fn check_extra(extra: &BTreeMap<String, String>) -> Result<(), super::PlanError> {
    match extra.keys().find(|k| k.starts_with(PREFIX)) {
        Some(key) => Err(super::PlanError::ReservedLabel(key.clone())),
        None => Ok(()),
    }
}

/// The full label set of one object.
pub(crate) fn for_object(
    name: &Name,
    role: Role,
    repo: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.insert(POD.into(), name.to_string());
    labels.insert(ROLE.into(), role.as_str().into());
    labels.insert(REPO.into(), repo.into());
    labels.insert(VERSION.into(), crate::VERSION.into());
    labels
}
