//! The repo's own settings for the workspace: runArgs, `hostRequirements`,
//! `containerEnv`, `mounts`, `privileged`/`capAdd`/`securityOpt`. Read and checked in one
//! place, with the consent the widening ones need; only the workspace gets them, never
//! the agent or the gator.

use std::collections::BTreeMap;

use super::consent::{self, Consent};
use super::error::PlanError;
use super::folders::Folders;
use super::input::PlanInput;
use super::mounts::{RepoMounts, repo_mounts};
use super::resources::Resources;
use super::run_args::{self, RunArgs};

/// What the repo asks of the workspace, checked and consented to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RepoSettings {
    pub run_args: RunArgs,
    pub resources: Resources,
    /// runArgs' `-e` and `--env-file`s, then `containerEnv` (which wins).
    pub env: BTreeMap<String, String>,
    pub mounts: RepoMounts,
    /// `containerEnv` values from the host (consented to).
    pub host_env: Vec<Consent>,
    /// runArgs' widening flags, then `privileged`, `capAdd`, `securityOpt` (consented
    /// to).
    pub widening: Vec<Consent>,
}

impl RepoSettings {
    /// Reads the settings; refuses what is invalid, and what widens access without
    /// consent.
    pub(crate) fn new(input: &PlanInput, folders: &Folders) -> Result<Self, PlanError> {
        let host_env = consent::host_env(input)?;
        let mut resources = Resources::new(input)?;
        let dc = &input.devcontainer;
        let ra = run_args::parse(
            dc.run_args.as_deref().unwrap_or_default(),
            &input.repo.path.display().to_string(),
        )
        .map_err(|reason| input.bad_property("runArgs", reason))?;
        let widening = consent::widening(input, &ra)?;
        resources.add_run_args_gpus(input, &ra)?;
        consent::require(input, &widening)?;
        let mut env = env_of_run_args(input, &ra)?;
        env.extend(dc.container_env.clone().unwrap_or_default());
        let mounts = repo_mounts(input, &ra, folders)?;
        Ok(RepoSettings {
            run_args: ra,
            resources,
            env,
            mounts,
            host_env,
            widening,
        })
    }

    /// What the settings ask for and do not get: `hostRequirements`' unapplied parts,
    /// then `init: false`.
    pub(crate) fn warnings(&self, input: &PlanInput) -> Vec<String> {
        let mut out = self.resources.warnings.clone();
        if input.devcontainer.init == Some(false) || self.run_args.init == Some(false) {
            out.push(
                "init: false has no effect: devaipod always runs an init in the workspace so stop and delete are immediate".into(),
            );
        }
        out
    }

    /// Security options of runArgs, then of `securityOpt`.
    pub(crate) fn security_opt(&self, input: &PlanInput) -> Vec<String> {
        let mut out = self.run_args.security_opt.clone();
        out.extend(input.devcontainer.security_opt.iter().flatten().cloned());
        for f in &input.feature_settings {
            out.extend(
                f.security_opt
                    .iter()
                    .filter(|o| !out.contains(o))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        out
    }

    /// Capabilities of runArgs, then of `capAdd` (upper-cased, as Podman wants them).
    pub(crate) fn cap_add(&self, input: &PlanInput) -> Vec<String> {
        let mut out = self.run_args.cap_add.clone();
        out.extend(
            input
                .devcontainer
                .cap_add
                .iter()
                .flatten()
                .map(|c| c.to_ascii_uppercase()),
        );
        for c in input.feature_settings.iter().flat_map(|f| &f.cap_add) {
            let c = c.to_ascii_uppercase();
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// runArgs' `-e` values, then its `--env-file`s (read by `up`) in order.
fn env_of_run_args(input: &PlanInput, ra: &RunArgs) -> Result<BTreeMap<String, String>, PlanError> {
    let mut env = ra.env.clone();
    for f in &ra.env_files {
        let text = input.env_files.get(f).ok_or_else(|| {
            input.bad_property("runArgs", format!("runArgs: --env-file {f} was not read"))
        })?;
        env.extend(
            run_args::parse_env_file(text, f).map_err(|r| input.bad_property("runArgs", r))?,
        );
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    fn settings(i: &PlanInput) -> Result<RepoSettings, PlanError> {
        RepoSettings::new(i, &Folders::new(i).expect("folders"))
    }

    #[test]
    fn container_env_wins_over_run_args_and_env_files_are_needed() {
        let mut i = input();
        i.devcontainer.run_args = Some(vec![
            "-e".into(),
            "A=run".into(),
            "--env-file".into(),
            ".env".into(),
        ]);
        i.devcontainer.container_env = Some([("A".to_string(), "ce".to_string())].into());
        let e = settings(&i).expect_err("not read").to_string();
        assert!(e.contains("--env-file .env was not read"), "{e}");
        i.env_files.insert(".env".into(), "B=file\nA=file\n".into());
        let s = settings(&i).expect("settings");
        assert_eq!(s.env["A"], "ce");
        assert_eq!(s.env["B"], "file");
    }

    #[test]
    fn widening_settings_are_listed_and_refused_without_consent() {
        let mut i = input();
        i.devcontainer.cap_add = Some(vec!["sys_ptrace".into()]);
        i.devcontainer.run_args = Some(vec!["--cap-add=NET_ADMIN".into(), "--init=false".into()]);
        let e = settings(&i).expect_err("consent").to_string();
        assert!(
            e.contains("runArgs --cap-add NET_ADMIN, capAdd sys_ptrace widen(s)"),
            "{e}"
        );
        i.trust = Some("--trust".into());
        let s = settings(&i).expect("settings");
        assert_eq!(s.cap_add(&i), ["NET_ADMIN", "SYS_PTRACE"]);
        assert_eq!(s.widening.len(), 2);
        assert!(s.warnings(&i)[0].starts_with("init: false has no effect"));
    }

    #[test]
    fn host_env_is_refused_before_anything_else() {
        let mut i = input();
        i.container_env_from_host = vec!["TOKEN".into()];
        i.devcontainer.run_args = Some(vec!["--frobnicate".into()]);
        assert!(matches!(
            settings(&i),
            Err(PlanError::HostEnvNeedsTrust { .. })
        ));
    }
}
