//! The workspace container: where people and tools work, as the remoteUser, with the
//! repo's own settings (runArgs, capAdd, mounts, env, ...) and its clone. devaipod adds
//! its shims, its git config, the agent's clone and devaipod-net (the SSH helpers, at
//! /opt/devaipod-net), read-only.

use std::collections::BTreeMap;

use super::Context;
use super::error::PlanError;
use super::folders::Folders;
use super::labels::Role;
use super::paths::{DEFAULT_PATH, SHIM_DIR, WORKSPACE_GITCONFIG};
use super::secrets::Secrets;
use super::settings::RepoSettings;
use super::spec::{ContainerSpec, Extras, Seccomp, SharedMount};
use super::volumes::Volumes;

/// The workspace's command, as the reference CLI wraps it: a shell that exits on
/// SIGTERM, runs the features' `entrypoints` (in install order), then `cmd` (the image's
/// own, for `overrideCommand: false`) if any, and otherwise waits forever.
pub(crate) fn keep_alive(entrypoints: &[String], cmd: &[String]) -> Vec<String> {
    let mut script = String::from("echo Container started\ntrap \"exit 0\" 15\n");
    for e in entrypoints {
        script.push_str(e);
        script.push('\n');
    }
    script.push_str("exec \"$@\"\nwhile sleep 1 & wait $!; do :; done");
    let mut v: Vec<String> = vec!["/bin/sh".into(), "-c".into(), script, "-".into()];
    v.extend(cmd.iter().cloned());
    v
}

/// What the workspace is made of, beside the repo's settings.
pub(crate) struct Workspace<'a> {
    pub image: &'a str,
    pub folders: &'a Folders,
    pub volumes: &'a Volumes,
    pub secrets: &'a Secrets,
    pub settings: &'a RepoSettings,
    pub shared_mounts: Vec<SharedMount>,
}

impl Workspace<'_> {
    /// The workspace container.
    pub(crate) fn container(&self, ctx: &Context<'_>) -> Result<ContainerSpec, PlanError> {
        let input = ctx.input;
        let dc = &input.devcontainer;
        let ra = &self.settings.run_args;
        let security_opt = self.settings.security_opt(input);
        let mut labels = ctx.labels(Role::Workspace);
        for (k, v) in &ra.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut spec = ContainerSpec {
            role: Role::Workspace,
            name: ctx.object_name("workspace"),
            image: self.image.to_string(),
            command: command(ctx)?,
            user: ra.user.clone().or_else(|| dc.container_user.clone()),
            workdir: ra
                .workdir
                .clone()
                .unwrap_or_else(|| self.folders.workdir.clone()),
            init: true,
            init_container: false,
            cap_drop: ra.cap_drop.clone(),
            cap_add: self.settings.cap_add(input),
            no_new_privileges: security_opt
                .iter()
                .any(|o| o.starts_with("no-new-privileges")),
            security_opt,
            seccomp: Seccomp::Default,
            read_only: false,
            tmpfs: vec![],
            pids_limit: None,
            memory_limit: ra.memory.or(self.settings.resources.memory),
            cpu_millis: ra
                .cpus
                .or(self.settings.resources.cpus)
                .map(|c| (c * 1000.0).round() as i64),
            shared_mounts: self.shared_mounts.clone(),
            mounts: self
                .volumes
                .workspace_mounts(self.folders)
                .into_iter()
                .chain(self.settings.mounts.mounts.iter().cloned())
                .collect(),
            env: self.env(ctx),
            secrets: self.secrets.workspace_refs(input.owner()),
            labels,
            extra: Extras {
                privileged: ra.privileged
                    || dc.privileged == Some(true)
                    || input.feature_settings.iter().any(|f| f.privileged),
                devices: ra
                    .devices
                    .iter()
                    .chain(&self.settings.resources.devices)
                    .cloned()
                    .collect(),
                shm_size: ra.shm_size,
                ulimits: ra.ulimits.clone(),
                sysctls: ra.sysctls.clone(),
                hostname: ra.hostname.clone(),
                runtime: ra.runtime.clone(),
            },
        };
        // Every pod's agent runs what the shared volumes hold: a workspace that could
        // remount them writable (privileged, or SYS_ADMIN, by the user's consent) gets
        // none, so a repo given that reaches no other pod.
        if can_remount(&spec) {
            spec.shared_mounts.clear();
        }
        Ok(spec)
    }

    /// The repo's environment, then devaipod's own (which wins).
    fn env(&self, ctx: &Context<'_>) -> BTreeMap<String, String> {
        let mut env = self.settings.env.clone();
        env.extend(Secrets::workspace_env(ctx.input));
        // The workspace's system config is devaipod's file: the image's /etc/gitconfig,
        // then no safe.directory, so git refuses to work inside the agent's clone (owned
        // by the agent's uid) and runs none of its config; `git fetch agent` reads it
        // through upload-pack alone (remote.agent.uploadpack).
        env.insert("GIT_CONFIG_SYSTEM".into(), WORKSPACE_GITCONFIG.into());
        // The shims on PATH in every exec session (login shells get them from
        // /etc/profile.d/devaipod.sh): the image's PATH, then devaipod's folder.
        if !env.contains_key("PATH") {
            let base = ctx.input.image_path.as_deref().unwrap_or(DEFAULT_PATH);
            env.insert("PATH".into(), format!("{base}:{SHIM_DIR}"));
        }
        env
    }
}

/// Whether the container may remount what it sees (privileged, SYS_ADMIN or ALL).
pub(crate) fn can_remount(c: &ContainerSpec) -> bool {
    c.extra.privileged
        || c.cap_add.iter().any(|cap| {
            let cap = cap.to_ascii_uppercase();
            let cap = cap.strip_prefix("CAP_").unwrap_or(&cap);
            cap == "SYS_ADMIN" || cap == "ALL"
        })
}

/// devaipod's keep-alive, or the image's own command for `overrideCommand: false`.
fn command(ctx: &Context<'_>) -> Result<Vec<String>, PlanError> {
    let input = ctx.input;
    let entrypoints: Vec<String> = input
        .feature_settings
        .iter()
        .filter_map(|f| f.entrypoint.clone())
        .collect();
    let keep_alive = |cmd: &[String]| keep_alive(&entrypoints, cmd);
    match input.devcontainer.override_command {
        Some(false) => match &input.image_command {
            Some(cmd) if !cmd.is_empty() => Ok(keep_alive(cmd)),
            // Not known yet (a dry run before the image is built).
            None => Ok(keep_alive(
                &["<the image's ENTRYPOINT and CMD>".to_string()],
            )),
            Some(_) => Err(input.bad_property(
                "overrideCommand",
                "overrideCommand is false but the image has no ENTRYPOINT or CMD to run".into(),
            )),
        },
        _ => Ok(keep_alive(&[])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::input::{PlanInput, UserSecret};
    use crate::plan::tests_support::input;

    fn workspace(i: &PlanInput) -> Result<ContainerSpec, PlanError> {
        let ctx = Context::new(i);
        let folders = Folders::new(i)?;
        let settings = RepoSettings::new(i, &folders)?;
        Workspace {
            image: "localhost/x:1",
            folders: &folders,
            volumes: &Volumes::new(&ctx),
            secrets: &Secrets::new(&ctx),
            settings: &settings,
            shared_mounts: Vec::new(),
        }
        .container(&ctx)
    }

    #[test]
    fn devaipods_env_wins_and_path_gets_the_shims() {
        let mut i = input();
        i.devcontainer.container_env = Some(
            [
                ("GIT_CONFIG_SYSTEM".to_string(), "/evil".to_string()),
                ("GH_TOKEN_FILE".to_string(), "/evil".to_string()),
            ]
            .into(),
        );
        i.trusted_secrets = vec![UserSecret {
            env_name: "GH_TOKEN".into(),
            existing: None,
        }];
        i.image_path = Some("/usr/bin".into());
        let ws = workspace(&i).expect("workspace");
        assert_eq!(ws.env["GIT_CONFIG_SYSTEM"], WORKSPACE_GITCONFIG);
        assert_eq!(ws.env["GH_TOKEN_FILE"], "/run/secrets/GH_TOKEN");
        assert_eq!(ws.env["PATH"], "/usr/bin:/opt/devaipod/bin");
        i.devcontainer.container_env = Some([("PATH".to_string(), "/mine".to_string())].into());
        assert_eq!(workspace(&i).expect("workspace").env["PATH"], "/mine");
    }

    #[test]
    fn the_repos_settings_shape_the_workspace() {
        let mut i = input();
        i.trust = Some("--trust".into());
        i.devcontainer.security_opt = Some(vec!["no-new-privileges".into()]);
        i.devcontainer.host_requirements = Some(serde_json::json!({"cpus": 1.5, "memory": "1gb"}));
        i.devcontainer.run_args = Some(vec![
            "--memory=2g".into(),
            "--label=team=a".into(),
            "-u".into(),
            "1000".into(),
        ]);
        let ws = workspace(&i).expect("workspace");
        assert!(ws.no_new_privileges);
        assert_eq!(ws.memory_limit, Some(2 << 30), "runArgs wins");
        assert_eq!(ws.cpu_millis, Some(1500));
        assert_eq!(ws.labels["team"], "a");
        assert_eq!(ws.user.as_deref(), Some("1000"));
        assert_eq!(
            ws.secrets[0].owner.as_deref(),
            Some("dev"),
            "files belong to remoteUser"
        );
    }
}
