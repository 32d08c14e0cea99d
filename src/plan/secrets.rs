//! The pod's secrets: the opencode server password, the agent's configuration, and the
//! user's secrets (`[agent] secrets` for the agent only, `[trusted] secrets` for the
//! workspace only). All are podman secrets mounted as 0400 files; none is ever in the
//! plan, an environment or an argv.

use std::collections::BTreeMap;

use super::Context;
use super::input::{PlanInput, UserSecret};
use super::labels::Role;
use super::paths::{AGENT_CONFIG_FILE, AGENT_UID, PASSWORD_FILE, secret_file};
use super::spec::{SecretRef, SecretSource, SecretSpec};
use crate::names::Name;

/// The name of the podman secret holding workspace `name`'s server password.
pub(crate) fn password_secret_name(name: &Name) -> String {
    format!("{}-agent-password", name.pod_name())
}

/// The mode of every secret file: readable by its owner only.
const MODE: u32 = 0o400;

/// The secrets of one pod, and who gets which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Secrets {
    /// The server password's podman secret.
    pub password: String,
    /// The agent configuration's podman secret.
    pub agent_config: String,
    /// The user's secrets devaipod makes from its environment (not existing ones).
    pub created: Vec<SecretSpec>,
    /// `[trusted] secrets`, owned by the workspace's user.
    pub workspace: Vec<SecretRef>,
    /// `[agent] secrets`, owned by the agent's uid.
    pub agent: Vec<SecretRef>,
}

impl Secrets {
    /// Names and mounts every secret of the pod.
    pub(crate) fn new(ctx: &Context<'_>) -> Self {
        let input = ctx.input;
        let mut created = Vec::new();
        // The workspace's secret files belong to its people's user (remoteUser, else
        // containerUser, else the image's).
        let workspace = user_refs(
            ctx,
            &input.trusted_secrets,
            Role::Workspace,
            input.owner(),
            &mut created,
        );
        let agent = user_refs(
            ctx,
            &input.agent_secrets,
            Role::Agent,
            Some(AGENT_UID.to_string()),
            &mut created,
        );
        Secrets {
            password: password_secret_name(&input.name),
            agent_config: ctx.object_name("agent-config"),
            created,
            workspace,
            agent,
        }
    }

    /// The server password's file, owned by `owner`.
    pub(crate) fn password_ref(&self, owner: Option<String>) -> SecretRef {
        SecretRef {
            name: self.password.clone(),
            target: PASSWORD_FILE.into(),
            owner,
            mode: MODE,
        }
    }

    /// The agent's secrets: the password, its configuration, then `[agent] secrets`.
    pub(crate) fn agent_refs(&self) -> Vec<SecretRef> {
        let uid = Some(AGENT_UID.to_string());
        [
            self.password_ref(uid.clone()),
            SecretRef {
                name: self.agent_config.clone(),
                target: AGENT_CONFIG_FILE.into(),
                owner: uid,
                mode: MODE,
            },
        ]
        .into_iter()
        .chain(self.agent.iter().cloned())
        .collect()
    }

    /// The workspace's secrets: the password too (attaching to the agent from the
    /// workspace needs it), then `[trusted] secrets`.
    pub(crate) fn workspace_refs(&self, owner: Option<String>) -> Vec<SecretRef> {
        std::iter::once(self.password_ref(owner))
            .chain(self.workspace.iter().cloned())
            .collect()
    }

    /// What `up` creates: the password, the agent configuration, the user's secrets.
    pub(crate) fn specs(&self, ctx: &Context<'_>) -> Vec<SecretSpec> {
        [
            (&self.password, SecretSource::Generated),
            (&self.agent_config, SecretSource::AgentConfig),
        ]
        .into_iter()
        .map(|(name, source)| SecretSpec {
            name: name.clone(),
            source,
            labels: ctx.labels(Role::Agent),
        })
        .chain(self.created.iter().cloned())
        .collect()
    }

    /// The names of the secrets `up` creates, for the pod's label (delete finds them).
    pub(crate) fn label(&self) -> String {
        [self.password.as_str(), self.agent_config.as_str()]
            .into_iter()
            .chain(self.created.iter().map(|s| s.name.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The workspace's `NAME_FILE` variables, naming its secret files.
    pub(crate) fn workspace_env(input: &PlanInput) -> BTreeMap<String, String> {
        input
            .trusted_secrets
            .iter()
            .map(|s| (format!("{}_FILE", s.env_name), secret_file(&s.env_name)))
            .collect()
    }
}

/// The files of user secrets for one role: podman secrets devaipod makes from its
/// environment (recorded in `created`), or existing ones.
fn user_refs(
    ctx: &Context<'_>,
    list: &[UserSecret],
    role: Role,
    owner: Option<String>,
    created: &mut Vec<SecretSpec>,
) -> Vec<SecretRef> {
    list.iter()
        .map(|s| {
            let name = match &s.existing {
                Some(existing) => existing.clone(),
                None => {
                    let name =
                        ctx.object_name(&format!("secret-{}", s.env_name.to_ascii_lowercase()));
                    created.push(SecretSpec {
                        name: name.clone(),
                        source: SecretSource::Environment {
                            variable: s.env_name.clone(),
                        },
                        labels: ctx.labels(role),
                    });
                    name
                }
            };
            SecretRef {
                name,
                target: secret_file(&s.env_name),
                owner: owner.clone(),
                mode: MODE,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    fn secret(env_name: &str, existing: Option<&str>) -> UserSecret {
        UserSecret {
            env_name: env_name.into(),
            existing: existing.map(str::to_string),
        }
    }

    #[test]
    fn each_side_gets_only_its_own_secrets() {
        let mut i = input();
        i.trusted_secrets = vec![secret("GH_TOKEN", None), secret("DB", Some("shared-db"))];
        i.agent_secrets = vec![secret("LLM_KEY", None)];
        let ctx = Context::new(&i);
        let s = Secrets::new(&ctx);
        let agent = s.agent_refs();
        let agent_names: Vec<&str> = agent.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            agent_names,
            [
                "devaipod-demo-agent-password",
                "devaipod-demo-agent-config",
                "devaipod-demo-secret-llm_key"
            ]
        );
        let ws = s.workspace_refs(i.owner());
        let ws_names: Vec<&str> = ws.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            ws_names,
            [
                "devaipod-demo-agent-password",
                "devaipod-demo-secret-gh_token",
                "shared-db"
            ]
        );
        assert!(agent.iter().all(|r| r.owner.as_deref() == Some("4096")));
        assert!(ws.iter().all(|r| r.owner.as_deref() == Some("dev")));
        assert!(agent.iter().chain(&ws).all(|r| r.mode == 0o400));
        assert_eq!(ws[1].target, "/run/secrets/GH_TOKEN");
        // An existing secret is used, not created (nor removed by delete).
        assert_eq!(
            s.label(),
            "devaipod-demo-agent-password,devaipod-demo-agent-config,devaipod-demo-secret-gh_token,devaipod-demo-secret-llm_key"
        );
        let specs = s.specs(&ctx);
        assert_eq!(specs.len(), 4);
        assert_eq!(
            specs[2].source,
            SecretSource::Environment {
                variable: "GH_TOKEN".into()
            }
        );
        assert_eq!(
            Secrets::workspace_env(&i)
                .get("GH_TOKEN_FILE")
                .map(String::as_str),
            Some("/run/secrets/GH_TOKEN")
        );
    }
}
