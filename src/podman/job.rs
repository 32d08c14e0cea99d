//! Short-lived job containers: a script run to completion outside the pod, with the
//! agent's clone mounted read-only, no network and no capabilities. Used to read the
//! agent's clone from its volume without an exec session in the pod (on Podman 4.3 one
//! makes removing the pod seconds slower). A job is planned as a [`ContainerSpec`],
//! created from the same SpecGenerator mapping, labelled like every devaipod object and
//! verified like the pod's containers before it starts.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Engine, encode, spec, verify};
use crate::names::Name;
use crate::plan::{ContainerSpec, MountSpec, Role, Seccomp, labels};

/// What a [`Engine::run_job`] container left behind.
#[derive(Debug)]
pub(crate) struct JobOutput {
    pub code: i64,
    /// stdout and stderr, interleaved.
    pub logs: String,
    pub file: Option<Vec<u8>>,
}

/// A job over the agent's clone of workspace `name`.
#[derive(Debug, Clone)]
pub(crate) struct CloneJob<'a> {
    pub name: &'a Name,
    /// The host repo the workspace was made from (its `io.devaipod.repo` label).
    pub repo: &'a str,
    pub image: &'a str,
    /// sh script, with `args` as $1...
    pub script: &'a str,
    pub args: &'a [&'a str],
}

/// Where the agent's clone is mounted in a job.
pub(crate) const CLONE_IN_JOB: &str = "/repo";

/// The plan of a job container: the agent's uid, every capability dropped,
/// no-new-privileges, the clone read-only at [`CLONE_IN_JOB`].
pub(crate) fn clone_job_container(job: &CloneJob<'_>) -> ContainerSpec {
    let pod = job.name.pod_name();
    let uid = crate::plan::AGENT_UID;
    let mut command = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        job.script.into(),
        "sh".into(),
    ];
    command.extend(job.args.iter().map(|a| a.to_string()));
    let env: BTreeMap<String, String> = [("HOME", "/tmp"), ("GIT_CONFIG_NOSYSTEM", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ContainerSpec {
        role: Role::Helper,
        name: format!("{pod}-job-{}", crate::names::random_suffix()),
        image: job.image.to_string(),
        command,
        user: Some(format!("{uid}:{uid}")),
        workdir: "/".into(),
        init: false,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        security_opt: vec![],
        seccomp: Seccomp::Default,
        read_only: false,
        tmpfs: vec![],
        pids_limit: None,
        memory_limit: None,
        cpu_millis: None,
        mounts: vec![MountSpec {
            kind: crate::plan::MountKind::Volume,
            source: format!("{pod}-agent-repo"),
            target: CLONE_IN_JOB.into(),
            read_only: true,
        }],
        image_mounts: vec![],
        env,
        secrets: vec![],
        labels: labels::for_object(job.name, Role::Helper, job.repo, &BTreeMap::new()),
        extra: Default::default(),
    }
}

impl Engine {
    /// Creates the job container `c`, verifies its hardening, runs it to completion and
    /// removes it: its exit code, its output, and the file `fetch` from its filesystem
    /// if asked.
    pub(crate) async fn run_job(
        &self,
        c: &ContainerSpec,
        fetch: Option<&str>,
    ) -> Result<JobOutput> {
        let name = c.name.clone();
        let result = async {
            self.create_container(&spec::job_spec(c))
                .await
                .with_context(|| format!("creating container {name}"))?;
            // Nothing in a job is limited by cgroups, so the engine's cgroup mode
            // does not matter here.
            verify::verify_created(self, c, false).await?;
            self.start_container(&name).await?;
            let code = self.wait_stopped(&name).await?;
            let logs = self.logs_tail(&name, 100_000).await?;
            let file = match fetch {
                // Mounted first: on Podman 5 the exit cleanup unmounting the root
                // filesystem under an archive read made the file read as missing.
                Some(path) => {
                    self.mount_container(&name).await?;
                    self.read_file(&name, path).await?
                }
                None => None,
            };
            Ok::<_, anyhow::Error>(JobOutput { code, logs, file })
        }
        .await;
        self.delete_if_present(
            &format!("/libpod/containers/{}?force=true&v=true", encode(&name)),
            || format!("removing {name}"),
        )
        .await?;
        result.with_context(|| format!("running {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_jobs_are_labelled_and_hardened() {
        let name = Name::new("demo").expect("name");
        let job = CloneJob {
            name: &name,
            repo: "/home/u/src/proj",
            image: "localhost/devaipod-base:latest",
            script: "echo $1",
            args: &["x"],
        };
        let c = clone_job_container(&job);
        assert!(c.name.starts_with("devaipod-demo-job-"), "{}", c.name);
        for key in [labels::POD, labels::ROLE, labels::REPO, labels::VERSION] {
            assert!(c.labels.contains_key(key), "{key}");
        }
        assert_eq!(c.labels[labels::ROLE], "helper");
        assert_eq!(c.command[4..], ["x"]);
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.no_new_privileges);
        assert_eq!(c.mounts[0].source, "devaipod-demo-agent-repo");
        assert!(c.mounts[0].read_only);
        // The spec sent for it is verified against the same plan.
        let v = serde_json::to_value(spec::job_spec(&c)).expect("json");
        assert_eq!(v["volumes"][0]["Options"][0], "ro");
        assert_eq!(v["user"], "4096:4096");
    }
}
