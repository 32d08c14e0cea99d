//! The pod's named volumes: the workspace's clone, the agent's own clone and the
//! agent's home, and which container mounts which. The agent works in its own clone
//! (docs/security.md): nothing it writes under .git can run in the workspace, which only
//! fetches from it, read-only.

use super::Context;
use super::folders::Folders;
use super::input::{PlanInput, VolumeQuota};
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

    /// What `up` creates, labelled with the role of the container that writes it; the
    /// agent's volumes held to [`disk_limit`] where the storage enforces it.
    pub(crate) fn specs(&self, ctx: &Context<'_>) -> Vec<VolumeSpec> {
        let agent_limit = match ctx.input.volume_quota {
            VolumeQuota::Enforced => ctx.input.agent_disk_limit,
            VolumeQuota::Unknown | VolumeQuota::NotEnforced(_) => None,
        };
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
            size_limit: agent_limit.filter(|_| owner == Role::Agent),
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

    /// The agent's clone read-only at the agent's clone root: service-gator's push tools
    /// (`github_push`, `git_push_local`) read the commit to push from the repository at
    /// the path the agent gives, which is the agent's own.
    pub(crate) fn gator_mounts(&self, folders: &Folders) -> Vec<MountSpec> {
        vec![MountSpec::volume(
            &self.agent_repo,
            &folders.clone_root,
            true,
        )]
    }

    /// The agent's clone at the clone root, and its home; never the workspace's clone.
    pub(crate) fn agent_mounts(&self, folders: &Folders) -> Vec<MountSpec> {
        vec![
            MountSpec::volume(&self.agent_repo, &folders.clone_root, false),
            MountSpec::volume(&self.agent_home, AGENT_HOME, false),
        ]
    }
}

/// Said once by `up` (and `--dry-run`) when the engine's storage cannot hold the
/// agent's volumes to `[agent] disk_limit`: the pod is made all the same, without it.
pub(crate) fn disk_limit_warning(input: &PlanInput) -> Option<String> {
    let limit = input.agent_disk_limit?;
    let VolumeQuota::NotEnforced(why) = &input.volume_quota else {
        return None;
    };
    Some(format!(
        "the agent's disk limit ({} on each of its volumes, [agent] disk_limit) is not enforced here: {why}; the agent can fill that disk. `devaipod status {}` shows each volume's use; [agent] disk_limit = \"none\" in devaipod.toml stops this warning",
        crate::size::human(limit),
        input.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn the_agents_volumes_are_limited_where_the_storage_enforces_it() {
        let limits = |i: &PlanInput| -> Vec<(String, Option<u64>)> {
            Volumes::new(&Context::new(i))
                .specs(&Context::new(i))
                .into_iter()
                .map(|s| (s.role, s.size_limit))
                .collect()
        };
        let mut i = input();
        i.agent_disk_limit = Some(4 << 30);
        i.volume_quota = VolumeQuota::Enforced;
        assert_eq!(
            limits(&i),
            [
                ("workspace".to_string(), None),
                ("agent-repo".to_string(), Some(4 << 30)),
                ("agent-home".to_string(), Some(4 << 30)),
            ]
        );
        assert_eq!(disk_limit_warning(&i), None);

        // Where it cannot be enforced, no volume asks for a size (Podman would refuse
        // to make it) and the user is told once, with the reason.
        i.volume_quota = VolumeQuota::NotEnforced("the volumes are on ext4".into());
        assert!(limits(&i).iter().all(|(_, l)| l.is_none()));
        assert_eq!(
            disk_limit_warning(&i).as_deref(),
            Some(
                "the agent's disk limit (4GiB on each of its volumes, [agent] disk_limit) is not enforced here: the volumes are on ext4; the agent can fill that disk. `devaipod status demo` shows each volume's use; [agent] disk_limit = \"none\" in devaipod.toml stops this warning"
            )
        );

        // No engine asked (dry run without one): nothing claimed, nothing warned.
        i.volume_quota = VolumeQuota::Unknown;
        assert!(limits(&i).iter().all(|(_, l)| l.is_none()));
        assert_eq!(disk_limit_warning(&i), None);

        // disk_limit = "none": no limit and no warning, whatever the storage.
        i.agent_disk_limit = None;
        for q in [VolumeQuota::Enforced, VolumeQuota::NotEnforced("x".into())] {
            i.volume_quota = q;
            assert!(limits(&i).iter().all(|(_, l)| l.is_none()));
            assert_eq!(disk_limit_warning(&i), None);
        }
    }

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
