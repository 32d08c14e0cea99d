//! Applying a [`PodPlan`]: create volumes, pod and containers, verify the hardening
//! podman actually applied ([`super::verify`]), put the repo clone into the workspace
//! volume, start the pod and wait until the agent answers. Any failure or cancellation
//! removes everything this `up` created (found by label), so nothing half-made is left
//! behind.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use super::Engine;
use super::cancel::{Cancel, cancellable};
use super::hooks::run_lifecycle;
use super::spec::{SeccompFile, container_spec, pod_spec};
use super::verify::limits_enforced;
use crate::git;
use crate::plan::{ContainerSpec, ImageState, PodPlan, Role, SecretSource, labels};
use crate::progress::Progress;
use crate::secret::SecretValue;

/// One created container, as `up --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CreatedContainer {
    pub role: Role,
    pub name: String,
    pub id: String,
}

/// What `up` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Applied {
    pub name: String,
    pub pod: String,
    pub containers: Vec<CreatedContainer>,
}

/// Host ports for the plan's published ports: the one asked for, else the container's
/// own if it is free on the host's loopback, else any free one.
pub(crate) fn choose_host_ports(ports: &[crate::plan::PortSpec]) -> Result<Vec<(u16, u16)>> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut taken: Vec<u16> = Vec::new();
    let mut out = Vec::new();
    for p in ports {
        let host = match p.host_port {
            Some(h) => h,
            None if free(p.container_port) && !taken.contains(&p.container_port) => {
                p.container_port
            }
            None => {
                let l = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .context("finding a free port on 127.0.0.1")?;
                l.local_addr()?.port()
            }
        };
        taken.push(host);
        out.push((p.container_port, host));
    }
    Ok(out)
}

/// Creates everything in the plan and waits for the agent. On any error (or
/// cancellation) removes what was created before returning the error.
/// The values of the plan's secrets that come from devaipod's environment, by podman
/// secret name.
pub(crate) type SecretValues = std::collections::BTreeMap<String, SecretValue>;

pub(crate) async fn apply(
    engine: &Engine,
    plan: &PodPlan,
    values: &SecretValues,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<Applied> {
    if let ImageState::Missing { note } = &plan.image.state {
        bail!("image {} is not available: {note}", plan.image.reference);
    }
    if let Some(ImageState::Missing { note }) = &plan.network.image_state {
        bail!("{note}");
    }
    let name = plan.name.as_str();
    if engine.pod_exists(&plan.pod.name).await? {
        bail!(
            "pod {} already exists: attach to it, remove it with `devaipod delete {name}`, or choose another --name",
            plan.pod.name
        );
    }
    let leftovers = engine.volumes_with_label(labels::POD, name).await?;
    if !leftovers.is_empty() {
        bail!(
            "volumes {leftovers:?} are labelled for {name} but there is no pod: they are left over from an earlier run; remove them with `devaipod delete {name} --force` or choose another --name"
        );
    }
    for c in &plan.containers {
        for r in &c.secrets {
            let ours = plan.secrets.iter().any(|s| s.name == r.name);
            if !ours && !engine.secret_exists(&r.name).await? {
                bail!(
                    "podman secret {} (named in your devaipod configuration for {}) does not exist: create it with `podman secret create {} FILE`",
                    r.name,
                    r.target,
                    r.name
                );
            }
        }
    }
    for secret in &plan.secrets {
        if engine.secret_exists(&secret.name).await? {
            bail!(
                "secret {} is left over from an earlier run of {name}; remove it with `devaipod delete {name} --force` or choose another --name",
                secret.name
            );
        }
    }
    // From here on, everything labelled for `name` was made by this run.
    let result = create_and_start(engine, plan, values, progress, cancel).await;
    if let Err(e) = result {
        progress.step(&format!(
            "rolling back: removing what was created for {name}"
        ));
        let made: Vec<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
        match engine.remove_labelled(name, &made).await {
            Ok(_) => {
                if let Some(state) = crate::state::StateDir::from_env() {
                    state.forget_secrets(name);
                }
                progress.finish_step()
            }
            Err(re) => {
                return Err(e.context(format!(
                    "and the rollback failed too ({re:#}); run `devaipod delete {name} --force`"
                )));
            }
        }
        return Err(e);
    }
    result
}

/// The steps of [`apply`] once nothing labelled for the workspace exists.
async fn create_and_start(
    engine: &Engine,
    plan: &PodPlan,
    values: &SecretValues,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<Applied> {
    // The host-side clone runs while podman creates the objects.
    let clone = start_clone(plan);
    progress.step("creating volumes and pod");
    cancellable(cancel, create_pod_objects(engine, plan, values)).await?;
    crate::progress::pause_point("objects");

    progress.step("creating containers");
    let seccomp = SeccompFile::write()?;
    let (created, owner) = create_containers(engine, plan, &seccomp, progress, cancel).await?;
    crate::progress::pause_point("containers");
    let workspace = role(plan, Role::Workspace)?;
    let agent = role(plan, Role::Agent)?;
    engine
        .copy_into(&workspace.name, "/", super::hooks::workspace_files()?)
        .await?;

    // Podman chowns a fresh volume's root to the user of whichever container mounts it
    // first, at start; copying the repo after the start makes its ownership final.
    progress.step("starting pod");
    let started = cancellable(cancel, engine.start_pod(&plan.pod.name)).await;
    if let Err(e) = started {
        return Err(explain_rules(engine, plan).await.unwrap_or(e));
    }
    crate::progress::pause_point("started");

    progress.step("copying the repo into the workspace volume");
    let clone_dir = clone.await.context("the clone task failed")??;
    let (agent_tar, workspace_tar) = pack_repo(plan, &clone_dir, owner).await?;
    drop(clone_dir);
    let copied = cancellable(cancel, async {
        tokio::try_join!(
            engine.copy_into(&workspace.name, &plan.repo.workspace_folder, workspace_tar),
            engine.copy_into(&agent.name, &plan.repo.workspace_folder, agent_tar),
        )
    })
    .await;
    if let Err(e) = copied {
        // An agent that died right after the start makes copying into it fail; its own
        // failure is the one worth reporting.
        return Err(super::readiness::explain_agent_death(engine, &agent.name)
            .await
            .unwrap_or(e));
    }

    crate::progress::pause_point("copied");
    progress.step("waiting for the agent to answer");
    drop(seccomp);
    wait_until_usable(engine, plan, progress, cancel).await?;
    progress.finish_step();

    let mut containers = created;
    containers.sort_by_key(|c| c.role.as_str());
    Ok(Applied {
        name: plan.name.to_string(),
        pod: plan.pod.name.clone(),
        containers,
    })
}

/// When the pod's start failed because its network rules did (a Podman init container
/// that exited non-zero stops the start), that failure with the rules' own last lines.
async fn explain_rules(engine: &Engine, plan: &PodPlan) -> Option<anyhow::Error> {
    let rules = plan.container(Role::Rules)?;
    super::verify::rules_failure(engine, &format!("pod {}", plan.pod.name), &rules.name)
        .await
        .ok()
        .flatten()
}

/// The plan's container for `r`.
fn role(plan: &PodPlan, r: Role) -> Result<&ContainerSpec> {
    plan.container(r)
        .ok_or_else(|| anyhow!("the plan has no {r} container"))
}

/// The hook-free clone of the host repo's HEAD, made on a blocking thread.
fn start_clone(plan: &PodPlan) -> tokio::task::JoinHandle<Result<tempfile::TempDir>> {
    let info = git::RepoInfo {
        root: plan.repo.host_path.clone(),
        head: plan.repo.head.clone(),
        branch: plan.repo.branch.clone(),
        origin: None,
        uncommitted: 0,
    };
    tokio::task::spawn_blocking(move || {
        let origin = git::RepoInfo::detect(&info.root)
            .ok()
            .and_then(|i| i.origin);
        git::clone_head(&git::RepoInfo { origin, ..info })
    })
}

/// Volumes, the pod and the secrets, made concurrently.
async fn create_pod_objects(engine: &Engine, plan: &PodPlan, values: &SecretValues) -> Result<()> {
    let host_ports = choose_host_ports(&plan.pod.ports)?;
    let pod = pod_spec(plan, &host_ports)?;
    let volumes = plan.volumes.iter().map(|v| engine.create_planned_volume(v));
    let create_volumes = async {
        futures_util::future::try_join_all(volumes)
            .await
            .context("creating volumes")
    };
    let create_pod = async {
        engine
            .create_pod(&pod)
            .await
            .with_context(|| format!("creating pod {}", plan.pod.name))
    };
    let create_secrets = async {
        for secret in &plan.secrets {
            let value = match &secret.source {
                // `up` may have made it already (it hands the task over with it).
                SecretSource::Generated => values
                    .get(&secret.name)
                    .cloned()
                    .unwrap_or_else(SecretValue::generate),
                SecretSource::AgentConfig => SecretValue::new(plan.agent_config.content.clone()),
                SecretSource::NetConfig => SecretValue::new(plan.network.proxy_config.clone()),
                SecretSource::Environment { variable } => values
                    .get(&secret.name)
                    .cloned()
                    .ok_or_else(|| anyhow!("no value for secret {} ({variable})", secret.name))?,
            };
            engine
                .create_secret(&secret.name, &value, &secret.labels)
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::try_join!(create_volumes, create_pod, create_secrets)?;
    Ok(())
}

/// Creates and verifies every container: the agent first, because its uid is fixed and
/// its image's /etc/passwd (the same image as the workspace's) tells whose the
/// workspace's files and secrets are. Returns them and that owner (uid, gid).
async fn create_containers(
    engine: &Engine,
    plan: &PodPlan,
    seccomp: &SeccompFile,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<(Vec<CreatedContainer>, (u64, u64))> {
    let enforced = limits_enforced(engine.rootless(), &engine.cgroup_version().await?);
    if !enforced
        && plan
            .containers
            .iter()
            .any(|c| c.pids_limit.is_some() || c.memory_limit.is_some() || c.cpu_millis.is_some())
    {
        progress.warn("rootless Podman on cgroup v1 ignores pids, memory and cpu limits: the containers run without them on this host");
    }
    let create = async |c: &ContainerSpec, owner: (u64, u64)| {
        let id = engine
            .create_container(&container_spec(&plan.pod, c, Some(seccomp.path()), owner))
            .await
            .with_context(|| format!("creating container {}", c.name))?;
        super::verify::verify_created(engine, c, enforced).await?;
        Ok::<_, anyhow::Error>(CreatedContainer {
            role: c.role,
            name: c.name.clone(),
            id,
        })
    };
    let agent = role(plan, Role::Agent)?;
    let agent_ids = (
        u64::from(crate::plan::AGENT_UID),
        u64::from(crate::plan::AGENT_UID),
    );
    let mut created = vec![cancellable(cancel, create(agent, agent_ids)).await?];
    let owner = match &plan.repo.owner {
        None => (0, 0),
        Some(owner) => super::hooks::owner_ids(engine, &agent.name, owner).await?,
    };
    let rest = plan
        .containers
        .iter()
        .filter(|c| c.role != Role::Agent)
        .map(|c| {
            let ids = match c.role {
                Role::Gator => {
                    let g = u64::from(crate::plan::gator::UID);
                    (g, g)
                }
                Role::Proxy => {
                    let p = u64::from(crate::plan::paths::PROXY_UID);
                    (p, p)
                }
                Role::Rules => (0, 0),
                _ => owner,
            };
            create(c, ids)
        });
    created.extend(cancellable(cancel, futures_util::future::try_join_all(rest)).await?);
    // The workspace's process user (containerUser, runArgs' --user, else the image's
    // USER, as Podman settled it) may not have the agent's uid either.
    let workspace = role(plan, Role::Workspace)?;
    let user = engine.inspect_container(&workspace.name).await?.config.user;
    if !user.is_empty() && plan.repo.owner.as_deref() != Some(user.as_str()) {
        super::hooks::owner_ids(engine, &workspace.name, &user).await?;
    }
    Ok((created, owner))
}

/// Packs the clone twice: the agent's on its own branch, then the workspace's (owned
/// by `uid:gid`), which knows the agent's as a read-only remote.
async fn pack_repo(
    plan: &PodPlan,
    clone_dir: &tempfile::TempDir,
    (uid, gid): (u64, u64),
) -> Result<(Vec<u8>, Vec<u8>)> {
    let repo_dir = clone_dir.path().join("repo");
    let agent_branch = plan.repo.agent_branch.clone();
    let agent_identity = (
        format!("devaipod agent ({})", plan.name),
        format!("agent@{}.devaipod.invalid", plan.name),
    );
    let host_branch = plan.repo.branch.clone();
    let host_head = plan.repo.head.clone();
    tokio::task::spawn_blocking(move || {
        let agent_id = u64::from(crate::plan::AGENT_UID);
        // The agent works on its own branch, devaipod/NAME, from the host's HEAD.
        git::agent_branch(
            &repo_dir,
            &agent_branch,
            &agent_identity.0,
            &agent_identity.1,
        )?;
        let agent_tar = git::tar_tree(&repo_dir, agent_id, agent_id)?;
        git::leave_agent_branch(&repo_dir, &agent_branch, host_branch.as_deref(), &host_head)?;
        git::add_remote(
            &repo_dir,
            crate::plan::AGENT_REMOTE,
            crate::plan::AGENT_REPO_IN_WORKSPACE,
            &crate::plan::agent_upload_pack(),
        )?;
        let workspace_tar = git::tar_tree(&repo_dir, uid, gid)?;
        Ok((agent_tar, workspace_tar))
    })
    .await
    .context("the packing task failed")?
}

/// Waits for the agent, checks the hardening inside the running containers and runs
/// the create-time lifecycle commands, all at once; then waits for service-gator and
/// checks that the workspace's own command still runs.
async fn wait_until_usable(
    engine: &Engine,
    plan: &PodPlan,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<()> {
    let workspace = role(plan, Role::Workspace)?;
    let target = super::readiness::Target::of_plan(plan)?;
    let mut lifecycle_cancel = cancel.clone();
    let ready = super::readiness::wait_ready(engine, &target, cancel);
    let verified = super::verify::verify_inside(engine, plan);
    // A long lifecycle command (a dependency download) is cut by an interrupt too.
    let lifecycle = cancellable(
        &mut lifecycle_cancel,
        run_lifecycle(
            engine,
            &workspace.name,
            plan.repo.owner.as_deref(),
            &plan.repo.workdir,
            &plan.lifecycle.env,
            &plan.lifecycle.create,
            progress,
        ),
    );
    // All run together; when the agent dies, the readiness error (with its logs) is the
    // one that explains it.
    let (ready, verified, lifecycle) = tokio::join!(ready, verified, lifecycle);
    ready?;
    verified?;
    // The gator answers its health check before `up` returns, so the agent's first use
    // of its tools finds it listening.
    if let Some(g) = plan.container(Role::Gator) {
        progress.step("waiting for service-gator to answer");
        let url = format!("http://127.0.0.1:{}/healthz", crate::plan::gator::PORT);
        let target = super::readiness::Target {
            pod: &plan.pod.name,
            agent: &g.name,
            url: &url,
            timeout: std::time::Duration::from_secs(plan.readiness.timeout_secs),
        };
        super::readiness::wait_ready(engine, &target, cancel)
            .await
            .context("waiting for service-gator")?;
    }
    // A workspace whose command ended (overrideCommand: false and an image CMD that
    // exits) explains a failed lifecycle command better than the exec error does.
    let ws_state = engine.inspect_container(&workspace.name).await?.state;
    if !ws_state.running {
        let logs = engine
            .logs_tail(&workspace.name, 20)
            .await
            .unwrap_or_default();
        bail!(
            "the workspace's command ended (exit code {}) right after the start, so the workspace cannot be used; with \"overrideCommand\": false its image's ENTRYPOINT/CMD must keep running\n--- its last lines ---\n{}",
            ws_state.exit_code,
            logs.trim_end()
        );
    }
    lifecycle
}
