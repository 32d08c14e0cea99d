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

/// The port devaipod's proxy (the pod's network guard) listens on, on the pod's
/// loopback: the agent's HTTP(S)_PROXY and its credential routes.
pub(crate) const PROXY_PORT: u16 = 4097;
/// The proxy's uid and gid: its own, distinct from the agent's, so that the rules can
/// tell the agent's connections from the proxy's and the keys are the proxy's alone.
pub(crate) const PROXY_UID: u32 = 4097;

/// The proxy's URL, inside the pod (the agent's HTTPS_PROXY and HTTP_PROXY).
pub(crate) fn proxy_url() -> String {
    format!("http://127.0.0.1:{PROXY_PORT}")
}

/// The credential route of opencode provider `provider` (a checked provider id): the
/// agent's `baseURL` for it; the proxy forwards what comes below it to the provider's
/// `base_url` with the key added.
pub(crate) fn credential_route_url(provider: &str) -> String {
    format!("{}/devaipod/credentials/{provider}", proxy_url())
}

/// The network guard's state (the allowlist `devaipod allow`/`deny` change), in its
/// own volume.
pub(crate) const NET_STATE_DIR: &str = "/var/lib/devaipod-net";
/// The marker the verified rule installer writes; the agent's command waits for it, so
/// that the agent never runs without the rules.
pub(crate) const NET_MARKER: &str = "/run/devaipod-net/ready";

/// Where the workspace sees the agent's clone (read-only), as the git remote `agent`.
pub(crate) const AGENT_REPO_IN_WORKSPACE: &str = "/var/lib/devaipod/agent-repo";
/// The name of the workspace clone's remote for the agent's clone.
pub(crate) const AGENT_REMOTE: &str = "agent";

/// The workspace's git system config (written by devaipod; see [`workspace_gitconfig`]).
pub(crate) const WORKSPACE_GITCONFIG: &str = "/etc/devaipod/gitconfig";

/// The text of [`WORKSPACE_GITCONFIG`]: the image's system config, then an empty
/// `safe.directory`, which empties the list of directories git trusts although another
/// uid owns them (so an image's `safe.directory = *` does not trust the agent's clone).
/// git in the workspace then refuses to work inside the agent's clone ("dubious
/// ownership") and runs nothing its config or attributes name.
pub(crate) fn workspace_gitconfig() -> String {
    "# Written by devaipod: the image's system config, then no directory that another uid\n\
     # owns is trusted, whatever the image says: git refuses to work in the agent's clone\n\
     # (it would run the agent's hooks, filters, pagers). `git fetch agent` reads it through\n\
     # upload-pack alone (remote.agent.uploadpack, /etc/devaipod/agent-upload-pack.gitconfig).\n\
     [include]\n\tpath = /etc/gitconfig\n[safe]\n\tdirectory =\n"
        .to_string()
}

/// The system config of the one git process that reads the agent's clone in the
/// workspace: `git upload-pack` started by `git fetch agent` (see [`agent_upload_pack`]).
pub(crate) const AGENT_UPLOAD_PACK_GITCONFIG: &str = "/etc/devaipod/agent-upload-pack.gitconfig";

/// The text of [`AGENT_UPLOAD_PACK_GITCONFIG`]: the workspace's system config plus the
/// agent's clone as a safe directory (both the work tree and `.git`: git before 2.45
/// checks one, later versions the other).
pub(crate) fn agent_upload_pack_gitconfig() -> String {
    format!(
        "# Written by devaipod: read only by `git upload-pack` for `git fetch agent`, which\n\
         # runs nothing that the repo's own config or attributes name (git(1), SECURITY).\n\
         [include]\n\tpath = {WORKSPACE_GITCONFIG}\n[safe]\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}\n\tdirectory = {AGENT_REPO_IN_WORKSPACE}/.git\n"
    )
}

/// `remote.agent.uploadpack` of the workspace's clone: upload-pack, the part of git
/// that is safe to run in a repo someone else controls, is the only git that trusts the
/// agent's clone. The system config is given through the environment rather than
/// `git -c safe.directory=...`, which git honours only from 2.38 on.
pub(crate) fn agent_upload_pack() -> String {
    format!("GIT_CONFIG_SYSTEM={AGENT_UPLOAD_PACK_GITCONFIG} git upload-pack")
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
/// The agent's default disk limit (bytes), on each of its volumes (its clone, its
/// home), where the engine's storage enforces it: room for a large clone with its
/// build outputs and opencode's caches (an agent was measured writing 5 GiB into its
/// home), while one agent cannot fill the disk of every other pod.
pub(crate) const AGENT_DISK_LIMIT: u64 = 10 * 1024 * 1024 * 1024;
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
    fn the_proxys_addresses() {
        assert_eq!(proxy_url(), "http://127.0.0.1:4097");
        assert_eq!(
            credential_route_url("anthropic"),
            "http://127.0.0.1:4097/devaipod/credentials/anthropic"
        );
        assert_ne!(PROXY_UID, AGENT_UID);
        assert_ne!(PROXY_PORT, AGENT_PORT);
        // The guard's files are in folders of their own, apart from the agent's home and
        // secrets (the agent must not be able to write the marker).
        for p in [NET_STATE_DIR, NET_MARKER] {
            assert!(p.contains("/devaipod-net"), "{p}");
            assert!(
                !p.starts_with(AGENT_HOME) && !p.starts_with("/run/secrets"),
                "{p}"
            );
        }
    }

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

    /// The lines of a git config text that are not comments.
    fn settings(text: &str) -> Vec<&str> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn the_workspace_trusts_no_foreign_clone_after_the_images_config() {
        // The reset comes after the include: an image's `safe.directory = *` is undone.
        assert_eq!(
            settings(&workspace_gitconfig()),
            [
                "[include]",
                "path = /etc/gitconfig",
                "[safe]",
                "directory ="
            ]
        );
        assert!(!workspace_gitconfig().contains(AGENT_REPO_IN_WORKSPACE));
    }

    #[test]
    fn only_upload_pack_trusts_the_agents_clone() {
        assert_eq!(
            settings(&agent_upload_pack_gitconfig()),
            [
                "[include]",
                "path = /etc/devaipod/gitconfig",
                "[safe]",
                "directory = /var/lib/devaipod/agent-repo",
                "directory = /var/lib/devaipod/agent-repo/.git",
            ]
        );
        assert_eq!(
            agent_upload_pack(),
            "GIT_CONFIG_SYSTEM=/etc/devaipod/agent-upload-pack.gitconfig git upload-pack"
        );
    }
}
