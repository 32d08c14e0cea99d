//! The agent container: opencode serving on the pod's loopback, as its own uid, with no
//! capabilities, devaipod's seccomp profile, a read-only root, its own clone and home,
//! and only devaipod's environment. Nothing of the repo's configuration (capAdd,
//! privileged, securityOpt, mounts, env, runArgs) and no trusted secret reaches it.

use std::collections::BTreeMap;

use super::Context;
use super::PlanError;
use super::folders::Folders;
use super::gator;
use super::input::CredentialInput;
use super::labels::Role;
use super::paths::{
    AGENT_CONFIG_FILE, AGENT_HOME, AGENT_PORT, AGENT_TMPFS, AGENT_UID, BUNDLED_IMAGE,
    BUNDLED_MOUNT, PASSWORD_FILE, credential_route_url, secret_file,
};
use super::secrets::Secrets;
use super::spec::{AgentConfigPlan, ContainerSpec, Extras, Seccomp, SharedMount};
use super::volumes::Volumes;

/// Shell that sets `OC` to the image's own `opencode`, else the bundled one (which
/// needs a glibc-based image), else fails saying what to do.
pub(crate) fn find_opencode_script() -> String {
    format!(
        "OC=\"$(command -v opencode)\" || {{ OC={BUNDLED_MOUNT}/usr/local/bin/opencode; \
[ -x \"$OC\" ] || {{ echo 'devaipod: this image has no opencode and the bundled image {BUNDLED_IMAGE} is not mounted: install opencode in the image, or build the bundled image with `just image`' >&2; exit 127; }}; \
[ -e /lib64/ld-linux-x86-64.so.2 ] || {{ echo 'devaipod: this image has no opencode and is not glibc-based, so the bundled opencode cannot run in it: install opencode in the image' >&2; exit 127; }}; }}; "
    )
}

/// The agent's command: the server password is read from its secret file into the
/// server's own environment, so it is on no argv and not in `podman inspect`.
pub(crate) fn agent_command(secret_env: &[String], gate: Option<&str>) -> Vec<String> {
    // The network gate first: opencode never runs before the pod's rules are in place.
    let mut script = gate.unwrap_or_default().to_string();
    script.push_str(&find_opencode_script());
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

/// The agent's opencode configuration: devaipod's defaults for unattended work in a
/// sandbox, the model, then the user's `[agent.opencode]` table merged over it, then
/// each credential provider pointed at its route on the proxy
/// ([`point_at_credential_routes`]).
pub(crate) fn agent_opencode_config(
    model: Option<&str>,
    mcp: Option<&str>,
    user: Option<&serde_json::Value>,
    credentials: &[CredentialInput],
) -> Result<serde_json::Value, PlanError> {
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
    point_at_credential_routes(&mut v, user, credentials)?;
    Ok(v)
}

/// What the agent holds as the `apiKey` of a provider whose key the proxy holds:
/// opencode hides a provider without a key, and the proxy replaces whatever the agent
/// sends in the credential's header.
pub(crate) const PLACEHOLDER_API_KEY: &str = "devaipod-proxy-holds-the-key";

/// Sets `provider.ID.options.baseURL` to the provider's credential route and
/// `provider.ID.options.apiKey` to [`PLACEHOLDER_API_KEY`] for each credential. The
/// user's own `[agent.opencode]` must set neither for that provider: the two would
/// fight, and a real key there would be inside the agent after all.
fn point_at_credential_routes(
    v: &mut serde_json::Value,
    user: Option<&serde_json::Value>,
    credentials: &[CredentialInput],
) -> Result<(), PlanError> {
    for c in credentials {
        let id = c.provider.as_str();
        for key in ["baseURL", "apiKey"] {
            let set = user
                .and_then(|u| {
                    u.pointer(&format!("/provider/{}/options/{key}", pointer_segment(id)))
                })
                .is_some();
            if set {
                return Err(PlanError::CredentialConflict {
                    provider: id.to_string(),
                    setting: format!("provider.{id}.options.{key}"),
                });
            }
        }
        let mut at = &mut *v;
        for (depth, part) in ["provider", id, "options"].into_iter().enumerate() {
            let obj = at
                .as_object_mut()
                .ok_or_else(|| PlanError::CredentialConflict {
                    provider: id.to_string(),
                    setting: ["provider", id][..depth].join("."),
                })?;
            at = obj
                .entry(part)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
        let options = at
            .as_object_mut()
            .ok_or_else(|| PlanError::CredentialConflict {
                provider: id.to_string(),
                setting: format!("provider.{id}.options"),
            })?;
        options.insert(
            "baseURL".into(),
            serde_json::json!(credential_route_url(id)),
        );
        options.insert("apiKey".into(), serde_json::json!(PLACEHOLDER_API_KEY));
    }
    Ok(())
}

/// `id` as one segment of a JSON pointer (RFC 6901 escapes).
fn pointer_segment(id: &str) -> String {
    id.replace('~', "~0").replace('/', "~1")
}

/// Deep-merges `over` into `base` (objects key by key; anything else replaces).
pub(crate) fn merge_json(base: &mut serde_json::Value, over: &serde_json::Value) {
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

impl AgentConfigPlan {
    /// The configuration of the user's model and table, naming the gator's MCP server
    /// when there is one.
    pub(crate) fn new(ctx: &Context<'_>) -> Result<Self, PlanError> {
        let input = ctx.input;
        let mcp = input.gator.as_ref().map(|_| gator::mcp_url());
        let v = agent_opencode_config(
            input.agent_model.as_deref(),
            mcp.as_deref(),
            input.agent_opencode.as_ref(),
            &input.network.credentials,
        )?;
        let model = v["model"].as_str().map(str::to_string);
        Ok(AgentConfigPlan {
            // The preset's default, unless `[agent.opencode]` chose another.
            model_from: input
                .agent_model_from
                .clone()
                .filter(|_| model.as_deref() == input.agent_model.as_deref()),
            model,
            keys: v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default(),
            content: serde_json::to_string_pretty(&v).unwrap_or_default(),
        })
    }
}

/// The agent's environment: devaipod's only.
fn agent_env() -> BTreeMap<String, String> {
    [
        ("HOME", AGENT_HOME),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_CONFIG", AGENT_CONFIG_FILE),
        // The repo's own opencode.json could otherwise override the user's settings.
        ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The agent container. It reads the input only for its limits and its own secrets.
pub(crate) fn container(
    ctx: &Context<'_>,
    image: &str,
    folders: &Folders,
    volumes: &Volumes,
    secrets: &Secrets,
    shared_mounts: Vec<SharedMount>,
    net: &super::network::AgentNet,
) -> ContainerSpec {
    let input = ctx.input;
    let secret_env: Vec<String> = input
        .agent_secrets
        .iter()
        .map(|s| s.env_name.clone())
        .collect();
    ContainerSpec {
        role: Role::Agent,
        name: ctx.object_name("agent"),
        image: image.to_string(),
        command: agent_command(&secret_env, net.gate.as_deref()),
        user: Some(format!("{AGENT_UID}:{AGENT_UID}")),
        workdir: folders.workdir.clone(),
        init: true,
        init_container: false,
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
        shared_mounts: shared_mounts
            .into_iter()
            .chain(net.shared_mounts.iter().cloned())
            .collect(),
        mounts: volumes
            .agent_mounts(folders)
            .into_iter()
            .chain(net.mounts.iter().cloned())
            .collect(),
        env: agent_env().into_iter().chain(net.env.clone()).collect(),
        secrets: secrets.agent_refs(),
        labels: ctx.labels(Role::Agent),
        extra: Extras::default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::input::{NetworkMode, PlanInput, UserSecret};
    use crate::plan::tests_support::input;

    fn agent_of(i: &PlanInput) -> ContainerSpec {
        let plan = crate::plan::build(i).expect("plan");
        plan.container(Role::Agent).expect("agent").clone()
    }

    /// Every repo setting that could widen or shape a container, consented to.
    fn hostile(i: &mut PlanInput) {
        let dc = &mut i.devcontainer;
        dc.privileged = Some(true);
        dc.cap_add = Some(vec!["SYS_ADMIN".into()]);
        dc.security_opt = Some(vec!["seccomp=unconfined".into(), "label=disable".into()]);
        dc.container_env = Some([("REPO_VAR".to_string(), "x".to_string())].into());
        dc.mounts = Some(vec![json!("type=bind,source=/data,target=/data")]);
        dc.host_requirements = Some(json!({"cpus": 8, "memory": "64gb"}));
        dc.container_user = Some("root".into());
        dc.run_args = Some(
            [
                "--privileged",
                "--cap-add=ALL",
                "--device=/dev/kvm",
                "-v",
                "/srv:/srv",
                "-e",
                "RUN_VAR=1",
                "--shm-size=1g",
                "--ulimit=nofile=1:2",
                "--runtime=runc",
                "--sysctl=kernel.msgmax=1",
                "-u",
                "0",
                "-w",
                "/elsewhere",
            ]
            .map(String::from)
            .to_vec(),
        );
        i.trust = Some("--trust".into());
        i.container_env_from_host = vec!["REPO_VAR".into()];
        i.trusted_secrets = vec![UserSecret {
            env_name: "GH_TOKEN".into(),
            existing: None,
        }];
    }

    #[test]
    fn the_agent_never_gets_the_repos_settings_or_trusted_secrets() {
        let baseline = agent_of(&input());
        let mut i = input();
        hostile(&mut i);
        let agent = agent_of(&i);
        assert_eq!(agent, baseline, "the repo's settings reached the agent");
        assert!(agent.cap_add.is_empty() && agent.cap_drop == ["ALL"]);
        assert_eq!(agent.extra, Extras::default());
        assert_eq!(agent.seccomp, Seccomp::Agent);
        assert!(
            agent
                .env
                .keys()
                .all(|k| !k.contains("VAR") && !k.contains("TOKEN"))
        );
        assert!(agent.secrets.iter().all(|s| !s.name.contains("gh_token")));
        assert!(
            agent
                .mounts
                .iter()
                .all(|m| m.kind == crate::plan::MountKind::Volume)
        );
        // ... while the workspace got them.
        let plan = crate::plan::build(&i).expect("plan");
        let ws = plan.container(Role::Workspace).expect("ws");
        assert!(ws.extra.privileged && ws.env.contains_key("REPO_VAR"));
    }

    #[test]
    fn agent_secrets_are_exported_from_their_files_and_limits_come_from_the_input() {
        let mut i = input();
        i.agent_secrets = vec![UserSecret {
            env_name: "LLM_KEY".into(),
            existing: None,
        }];
        i.agent_pids_limit = 10;
        i.agent_memory_limit = 1 << 20;
        let agent = agent_of(&i);
        assert!(
            agent.command[2].contains("LLM_KEY=\"$(cat /run/secrets/LLM_KEY)\" && export LLM_KEY"),
            "{}",
            agent.command[2]
        );
        assert!(
            !agent.env.contains_key("LLM_KEY"),
            "never in the inspectable env"
        );
        assert_eq!(
            (agent.pids_limit, agent.memory_limit),
            (Some(10), Some(1 << 20))
        );
        assert_eq!(agent.secrets.len(), 3);
    }

    fn credential(provider: &str) -> CredentialInput {
        CredentialInput {
            provider: provider.into(),
            base_url: "https://api.example.com/v1".into(),
            header: "x-api-key".into(),
            prefix: String::new(),
            secret: UserSecret {
                env_name: "SENTINEL_KEY".into(),
                existing: None,
            },
            preset: None,
        }
    }

    #[test]
    fn credential_providers_point_at_the_proxy_with_a_placeholder_key() {
        let user = json!({
            "provider": {
                "anthropic": {"options": {"timeout": 5}, "models": {"m": {}}},
                "openai": {"options": {"baseURL": "https://mirror.example/v1"}}
            }
        });
        let v = agent_opencode_config(
            Some("anthropic/m"),
            None,
            Some(&user),
            &[credential("anthropic"), credential("my.local_llm-2")],
        )
        .expect("config");
        assert_eq!(
            v["provider"]["anthropic"],
            json!({
                "options": {
                    "timeout": 5,
                    "baseURL": "http://127.0.0.1:4097/devaipod/credentials/anthropic",
                    "apiKey": "devaipod-proxy-holds-the-key"
                },
                "models": {"m": {}}
            })
        );
        assert_eq!(
            v["provider"]["my.local_llm-2"],
            json!({"options": {
                "baseURL": "http://127.0.0.1:4097/devaipod/credentials/my.local_llm-2",
                "apiKey": "devaipod-proxy-holds-the-key"
            }})
        );
        // A provider without credentials keeps the user's settings.
        assert_eq!(
            v["provider"]["openai"]["options"]["baseURL"],
            "https://mirror.example/v1"
        );
        // Neither the secret's name nor its value is in the agent's configuration.
        assert!(!v.to_string().contains("SENTINEL_KEY"));
        // Without credentials nothing changes.
        let plain = agent_opencode_config(None, None, Some(&user), &[]).expect("config");
        assert_eq!(plain["provider"], user["provider"]);
    }

    #[test]
    fn a_credential_providers_base_url_or_key_in_the_users_table_is_an_error() {
        for key in ["baseURL", "apiKey"] {
            let user = json!({"provider": {"anthropic": {"options": {key: "x"}}}});
            let e = agent_opencode_config(None, None, Some(&user), &[credential("anthropic")])
                .expect_err(key);
            assert_eq!(
                e.to_string(),
                format!(
                    "[agent.opencode] provider.anthropic.options.{key} conflicts with [agent.credentials.anthropic]: devaipod points that provider's baseURL at its proxy and gives the agent only a placeholder apiKey (the proxy adds the key); remove provider.anthropic.options.{key} from [agent.opencode]"
                )
            );
        }
        // A provider table that is no table cannot take the route.
        let user = json!({"provider": {"anthropic": "x"}});
        let e = agent_opencode_config(None, None, Some(&user), &[credential("anthropic")])
            .expect_err("not a table");
        assert_eq!(
            e,
            PlanError::CredentialConflict {
                provider: "anthropic".into(),
                setting: "provider.anthropic".into()
            }
        );
        // Through the plan, too.
        let mut i = input();
        i.agent_opencode = Some(json!({"provider": {"anthropic": {"options": {"apiKey": "k"}}}}));
        i.network.credentials = vec![credential("anthropic")];
        assert!(matches!(
            crate::plan::build(&i),
            Err(PlanError::CredentialConflict { .. })
        ));
    }

    #[test]
    fn the_plans_agent_config_carries_the_routes() {
        let mut i = input();
        i.network.credentials = vec![credential("anthropic")];
        let plan = crate::plan::build(&i).expect("plan");
        let v: serde_json::Value = serde_json::from_str(&plan.agent_config.content).expect("json");
        assert_eq!(
            v["provider"]["anthropic"]["options"]["apiKey"],
            PLACEHOLDER_API_KEY
        );
        assert!(plan.agent_config.keys.iter().any(|k| k == "provider"));
    }

    #[test]
    fn the_model_catalogue_is_fetched_only_when_it_can_be() {
        let env_of = |i: &PlanInput| {
            agent_of(i)
                .env
                .contains_key("OPENCODE_DISABLE_MODELS_FETCH")
        };
        let mut i = input();
        assert!(env_of(&i), "allowlist without models.dev");
        i.network.allow = vec!["models.dev".parse().expect("name")];
        assert!(!env_of(&i), "allowlist with models.dev");
        i.network.mode = NetworkMode::None;
        i.network.allow.clear();
        assert!(env_of(&i));
        i.network.mode = NetworkMode::Full;
        assert!(!env_of(&i));
    }

    #[test]
    fn merge_is_deep_for_objects_and_replaces_anything_else() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_json(&mut base, &json!({"a": {"c": 3}, "d": [2], "e": null}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "d": [2], "e": null}));
    }
}
