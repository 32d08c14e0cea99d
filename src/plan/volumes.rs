//! The pod's named volumes: the workspace's clone, the agent's own clone and the
//! agent's home, and which container mounts which. The agent works in its own clone
//! (docs/security.md): nothing it writes under .git can run in the workspace, which only
//! fetches from it, read-only.

use super::Context;
use super::folders::Folders;
use super::labels::Role;
use super::paths::{AGENT_HOME, AGENT_REPO_IN_WORKSPACE};
use super::spec::{MountSpec, VolumeSpec};

/// The names of the pod's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Volumes {
    /// The workspace's clone.
    pub workspace: String,
    /// The agent's clone (the workspace's remote `agent`).
    pub agent_repo: String,
    /// The agent's home.
    pub agent_home: String,
}

impl Volumes {
    pub(crate) fn new(ctx: &Context<'_>) -> Self {
        Volumes {
            workspace: ctx.object_name("workspace"),
            agent_repo: ctx.object_name("agent-repo"),
            agent_home: ctx.object_name("agent-home"),
        }
    }

    /// What `up` creates, labelled with the role of the container that writes it.
    pub(crate) fn specs(&self, ctx: &Context<'_>) -> Vec<VolumeSpec> {
        [
            (&self.workspace, "workspace", Role::Workspace),
            (&self.agent_repo, "agent-repo", Role::Agent),
            (&self.agent_home, "agent-home", Role::Agent),
        ]
        .into_iter()
        .map(|(name, role, owner)| VolumeSpec {
            name: name.clone(),
            role: role.into(),
            labels: ctx.labels(owner),
        })
        .collect()
    }

    /// The workspace's clone at the clone root, and the agent's clone read-only.
    pub(crate) fn workspace_mounts(&self, folders: &Folders) -> Vec<MountSpec> {
        vec![
            MountSpec::volume(&self.workspace, &folders.clone_root, false),
            MountSpec::volume(&self.agent_repo, AGENT_REPO_IN_WORKSPACE, true),
        ]
    }

    /// The agent's clone at the clone root, and its home; never the workspace's clone.
    pub(crate) fn agent_mounts(&self, folders: &Folders) -> Vec<MountSpec> {
        vec![
            MountSpec::volume(&self.agent_repo, &folders.clone_root, false),
            MountSpec::volume(&self.agent_home, AGENT_HOME, false),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn the_workspace_reads_the_agents_clone_and_the_agent_never_sees_the_workspaces() {
        let i = input();
        let ctx = Context::new(&i);
        let v = Volumes::new(&ctx);
        let f = Folders::new(&i).expect("folders");
        let ws = v.workspace_mounts(&f);
        assert_eq!(ws[0].source, "devaipod-demo-workspace");
        assert!(!ws[0].read_only);
        assert_eq!(
            (
                ws[1].source.as_str(),
                ws[1].target.as_str(),
                ws[1].read_only
            ),
            ("devaipod-demo-agent-repo", AGENT_REPO_IN_WORKSPACE, true)
        );
        let agent = v.agent_mounts(&f);
        assert!(agent.iter().all(|m| m.source != v.workspace));
        assert_eq!(agent[0].target, f.clone_root);
        let roles: Vec<String> = v.specs(&ctx).into_iter().map(|s| s.role).collect();
        assert_eq!(roles, ["workspace", "agent-repo", "agent-home"]);
    }
}
