//! `devaipod stop NAME` and `devaipod start NAME`: stop a workspace's pod (volumes and
//! the agent's home are kept), and start it again, returning when the agent answers.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::Context;
use crate::names::Name;
use crate::plan;
use crate::podman::Engine;
use crate::podman::readiness::{self, Target};
use crate::progress::Progress;
use crate::state::{ReadyRecord, StateDir};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Seconds to wait for the agent to answer
    #[arg(long, value_name = "SECS", default_value_t = plan::DEFAULT_READY_TIMEOUT_SECS)]
    pub timeout: u64,
}

/// The pod of workspace `name`, or a clear error.
async fn existing_pod(engine: &Engine, name: &Name) -> Result<String> {
    Ok(engine.workspace(name).await?.pod)
}

pub(super) async fn stop(ctx: &Context, args: StopArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let pod = existing_pod(engine, &name).await?;
    engine.stop_pod(&pod).await?;
    println!("stopped {pod}");
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn start(ctx: &Context, args: StartArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let mut cancel = crate::cli::cancel_on_signals();
    let progress = Progress::new();
    let engine = ctx.engine().await?;
    let pod = existing_pod(engine, &name).await?;
    let started = start_and_wait(engine, &name, &pod, &args, &progress, &mut cancel).await;
    if started.is_err() && crate::podman::cancel::requested() {
        // Interrupted: the pod goes back to stopped, never left half-started.
        progress.step(&format!("interrupted: stopping {pod} again"));
        engine.stop_pod(&pod).await.with_context(|| {
            format!("interrupted, and stopping {pod} again failed: run `devaipod stop {name}`")
        })?;
        progress.finish_step();
    }
    started?;
    drop(progress);
    println!("started {pod}: the agent answers");
    Ok(ExitCode::SUCCESS)
}

/// The steps of `start` after the pod is found; an interrupt cuts any of them.
async fn start_and_wait(
    engine: &Engine,
    name: &Name,
    pod: &str,
    args: &StartArgs,
    progress: &Progress,
    cancel: &mut crate::podman::cancel::Cancel,
) -> Result<()> {
    use crate::podman::cancel::cancellable;
    progress.step(&format!("starting {pod}"));
    let started = cancellable(cancel, engine.start_pod(pod)).await;
    crate::progress::pause_point("start");
    crate::podman::cancel::check()?;
    let row = engine.workspace(name).await?;
    // The network rules ran first (a Podman init container); the agent's gate stays
    // shut unless they succeeded, so say why rather than wait for the agent.
    if let Some(rules) = row.container("rules")
        && let Some(e) = crate::podman::verify::rules_failure(engine, pod, &rules.name).await?
    {
        return Err(e);
    }
    started?;
    let Some(agent) = row.container("agent") else {
        bail!(
            "workspace {name} has no agent container; recreate it with `devaipod delete {name}` and `devaipod up`"
        );
    };
    progress.step("waiting for the agent to answer");
    let url = plan::readiness_url();
    let target = Target {
        pod,
        agent: &agent.name,
        url: &url,
        timeout: Duration::from_secs(args.timeout),
    };
    readiness::wait_ready(engine, &target, cancel).await?;
    note_agent_ready(engine, name).await?;
    cancellable(cancel, run_post_start(engine, pod, &row, progress)).await
}

/// Runs the postStartCommand recorded on the pod at `up`, in the workspace.
async fn run_post_start(
    engine: &Engine,
    pod: &str,
    row: &crate::podman::inventory::WorkspaceRow,
    progress: &Progress,
) -> Result<()> {
    let inspect = engine.inspect_pod(pod).await?;
    let Some(text) = inspect.label(crate::plan::labels::POST_START) else {
        return Ok(());
    };
    let post: crate::podman::hooks::PostStart = serde_json::from_str(text)
        .with_context(|| format!("reading the postStartCommand recorded on {pod}"))?;
    let Some(ws) = row.container("workspace") else {
        bail!("{pod} has no workspace container to run postStartCommand in");
    };
    crate::podman::hooks::run_lifecycle(
        engine,
        &ws.name,
        post.user.as_deref(),
        &post.workdir,
        &post.env,
        &post.steps,
        progress,
    )
    .await
}

/// Records that the agent of `name` answered since its current start (for `list`).
pub(super) async fn note_agent_ready(engine: &Engine, name: &Name) -> Result<()> {
    let Some(state) = StateDir::from_env() else {
        return Ok(());
    };
    let rows = engine.workspaces(Some(name.as_str())).await?;
    if let Some(agent) = rows.first().and_then(|r| r.container("agent")) {
        state.record_ready(
            name,
            &ReadyRecord {
                container_id: agent.id.clone(),
                started_at: agent.started_at,
            },
        )?;
    }
    Ok(())
}
