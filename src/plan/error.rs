//! Why no plan could be made: each refusal names the input, where it is and the fix.

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error(
        "no image to run: the repo's devcontainer.json names no \"image\" and no \"build\"; add one, or pass --image IMAGE (e.g. --image localhost/devaipod-base:latest)"
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
    #[error(
        "[agent.opencode] {setting} conflicts with [agent.credentials.{provider}]: devaipod points that provider's baseURL at its proxy and gives the agent only a placeholder apiKey (the proxy adds the key); remove {setting} from [agent.opencode]"
    )]
    CredentialConflict { provider: String, setting: String },
    #[error(
        "service-gator needs devaipod-net in its container (the relay in front of it that logs the agent's requests and their refusals), and devaipod-net was not found: build it with `just net` (`just install` puts it beside devaipod), or name it with DEVAIPOD_NET_BIN"
    )]
    GatorWithoutNet,
    #[error(
        "the service-gator image {image} has no ENTRYPOINT: devaipod runs service-gator as the image's entrypoint (the published image's is `service-gator`); build the image with ENTRYPOINT [\"service-gator\"], or name another with --service-gator-image"
    )]
    GatorWithoutEntrypoint { image: String },
}
