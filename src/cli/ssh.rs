//! `devaipod ssh NAME [-- CMD...]`, `devaipod attach NAME` and `devaipod exec NAME
//! [--container ROLE] -- CMD...`: sessions in a running workspace, as its remoteUser,
//! in its folder, with remoteEnv, devaipod's shims on PATH and postAttachCommand run
//! for interactive sessions.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Context;
use crate::names::Name;
use crate::plan::{self, Role};
use crate::podman::Engine;
use crate::podman::session::{self, LOGIN_SHELL, Session, WorkspaceSession};

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// A command to run instead of an interactive shell (after `--`); its exit code is
    /// devaipod's
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Options for `opencode attach` (after `--`), e.g. `-- --continue`
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Which container: workspace (default), agent (read-only inspection: it runs as the
    /// agent's uid with no capabilities), gator
    #[arg(long, short, value_enum, default_value_t = Role::Workspace)]
    pub container: Role,
    /// Run as this user (default: the container's own user)
    #[arg(long, short)]
    pub user: Option<String>,
    /// The command (after `--`)
    #[arg(last = true, value_name = "CMD", required = true)]
    pub command: Vec<String>,
}

/// Runs postAttachCommand (interactive sessions only); a failure is reported and the
/// session goes on.
async fn post_attach(engine: &Engine, ctx: &WorkspaceSession) {
    if ctx.post_attach.is_empty() {
        return;
    }
    let progress = crate::progress::Progress::new();
    if let Err(e) = crate::podman::hooks::run_lifecycle(
        engine,
        &ctx.workspace,
        ctx.user.as_deref(),
        ctx.workdir.as_deref().unwrap_or("/"),
        &ctx.env,
        &ctx.post_attach,
        &progress,
    )
    .await
    {
        progress.warn(&format!("{e:#}"));
    }
    progress.finish_step();
}

/// A session in the workspace as its remoteUser, in its folder, with remoteEnv; a
/// terminal session (interactive) runs postAttachCommand first.
async fn run_session(
    engine: &Engine,
    name: &Name,
    tty: bool,
    argv: Vec<String>,
) -> Result<ExitCode> {
    let ctx = session::workspace_session(engine, name).await?;
    if tty {
        post_attach(engine, &ctx).await;
    }
    let s = Session {
        container: ctx.workspace,
        user: ctx.user,
        workdir: ctx.workdir,
        env: ctx.env,
        tty,
        argv,
    };
    Ok(exit_code(session::run(engine, &s).await?))
}

/// The session's exit status as devaipod's own.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

pub(super) async fn ssh(ctx: &Context, args: SshArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let tty = args.command.is_empty() && std::io::stdin().is_terminal();
    let argv = if args.command.is_empty() {
        vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()]
    } else {
        args.command
    };
    run_session(engine, &name, tty, argv).await
}

pub(super) async fn attach(ctx: &Context, args: AttachArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    if !std::io::stdin().is_terminal() {
        bail!(
            "`devaipod attach` opens the agent's terminal interface and needs a terminal; for scripts use `devaipod task {name} TEXT` or `devaipod ssh {name} -- opencode-agent run TEXT`"
        );
    }
    let engine = ctx.engine().await?;
    let mut argv = vec![format!("{}/oc", plan::SHIM_DIR)];
    argv.extend(args.args);
    run_session(engine, &name, true, argv).await
}

pub(super) async fn exec(ctx: &Context, args: ExecArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let container = row
        .container(args.container.as_str())
        .map(|c| c.name.clone())
        .ok_or_else(|| anyhow::anyhow!("pod {} has no {} container", row.pod, args.container))?;
    let s = Session {
        container,
        user: args.user,
        workdir: None,
        env: BTreeMap::new(),
        tty: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
        argv: args.command,
    };
    Ok(exit_code(session::run(engine, &s).await?))
}
