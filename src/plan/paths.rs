//! Where things are inside the pod's containers, whose uid owns them, and the limits
//! devaipod applies: the fixed layout every builder and `podman::apply` agree on.

/// The port `opencode serve` listens on, on the pod's loopback only.
pub(crate) const AGENT_PORT: u16 = 4096;
/// Where the agent's own home volume is mounted.
pub(crate) const AGENT_HOME: &str = "/home/agent";

/// The URL, inside the pod, that answers when the agent is ready.
pub(crate) fn readiness_url() -> String {
    format!("http://127.0.0.1:{AGENT_PORT}/global/health")
}

/// The agent's uid and gid: fixed, non-root, and distinct from any user of the dev
/// environment (it needs no passwd entry: HOME is set explicitly). The agent's clone is
/// owned by it.
pub(crate) const AGENT_UID: u32 = 4096;

/// Where the workspace sees the agent's clone (read-only), as the git remote `agent`.
pub(crate) const AGENT_REPO_IN_WORKSPACE: &str = "/var/lib/devaipod/agent-repo";
/// The name of the workspace clone's remote for the agent's clone.
pub(crate) const AGENT_REMOTE: &str = "agent";

/// The workspace's git system config (written by devaipod; see [`workspace_gitconfig`]).
pub(crate) const WORKSPACE_GITCONFIG: &str = "/etc/devaipod/gitconfig";

/// The text of [`WORKSPACE_GITCONFIG`].
pub(crate) fn workspace_gitconfig() -> String {
    format!(
        "# Written by devaipod: the image's system config, plus the agent's clone (owned by\n# the agent's uid) as a safe directory so that `git fetch agent` works.\n[include]\n\tpath = /etc/gitconfig\n[safe]\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}/.git\n"
    )
}

/// Where the opencode server password is mounted (file secret, mode 0400) in the agent
/// and the workspace.
pub(crate) const PASSWORD_FILE: &str = "/run/secrets/devaipod-opencode-password";

/// Where a user secret named `env_name` is mounted.
pub(crate) fn secret_file(env_name: &str) -> String {
    format!("/run/secrets/{env_name}")
}

/// Where the shims (shims/: `oc`, `opencode-agent`) are installed in the workspace.
pub(crate) const SHIM_DIR: &str = "/opt/devaipod/bin";
/// PATH when the image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent's opencode configuration (a file secret: not in `podman inspect`, not
/// writable by the agent), named by OPENCODE_CONFIG.
pub(crate) const AGENT_CONFIG_FILE: &str = "/run/secrets/devaipod-opencode-config.json";

/// The image devaipod bundles opencode in (`just image`).
pub(crate) const BUNDLED_IMAGE: &str = "localhost/devaipod-base:latest";
/// Where the bundled image is mounted read-only (a Podman image mount) in the agent and
/// the workspace, for images without their own `opencode`.
pub(crate) const BUNDLED_MOUNT: &str = "/opt/devaipod/bundled";

/// The agent's default process limit.
pub(crate) const AGENT_PIDS_LIMIT: i64 = 4096;
/// The agent's default memory limit (bytes).
pub(crate) const AGENT_MEMORY_LIMIT: i64 = 8 * 1024 * 1024 * 1024;
/// Where writable scratch space is in the agent's otherwise read-only root filesystem.
pub(crate) const AGENT_TMPFS: &[&str] = &["/tmp", "/var/tmp", "/run", "/run/secrets"];

/// How long `up` waits for the agent to answer before giving up and rolling back.
pub(crate) const DEFAULT_READY_TIMEOUT_SECS: u64 = 120;

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
pub(crate) fn reserved_folder(folder: &str) -> bool {
    folder == "/"
        || folder.split('/').any(|p| p == ".." || p == ".")
        || RESERVED_FOLDERS
            .iter()
            .any(|r| folder == *r || folder.starts_with(&format!("{r}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_folders_cover_system_paths_and_traversal() {
        for (folder, reserved) in [
            ("/", true),
            ("/etc", true),
            ("/etc/x", true),
            ("/home/agent", true),
            ("/var/lib/devaipod/agent-repo", true),
            ("/w/../etc", true),
            ("/w/./x", true),
            ("/etcetera", false),
            ("/workspaces/x", false),
            ("/home/dev", false),
        ] {
            assert_eq!(reserved_folder(folder), reserved, "{folder}");
        }
    }
}
