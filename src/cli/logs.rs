//! `devaipod logs NAME [--container ROLE] [--follow] [--tail N]`: a container's output.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;

use super::Context;
use crate::names::Name;
use crate::plan::Role;
use crate::podman::logs::{LogChunk, LogOptions};

/// The containers `logs` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogRole {
    Workspace,
    Agent,
    Gator,
    Proxy,
}

impl From<LogRole> for Role {
    fn from(r: LogRole) -> Self {
        match r {
            LogRole::Workspace => Role::Workspace,
            LogRole::Agent => Role::Agent,
            LogRole::Gator => Role::Gator,
            LogRole::Proxy => Role::Proxy,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Which container
    #[arg(long, short, value_enum, default_value = "agent")]
    pub container: LogRole,
    /// Keep printing new output until interrupted
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

pub(super) async fn run(ctx: &Context, args: LogsArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let role = Role::from(args.container);
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let Some(container) = row.container(role.as_str()) else {
        let have: Vec<&str> = row.containers.iter().map(|c| c.role.as_str()).collect();
        bail!(
            "workspace {name} has no {role} container (it has: {})",
            have.join(", ")
        );
    };
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
    };
    let mut stream = engine.logs(&container.name, opts);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    while let Some(chunk) = stream.next().await {
        match chunk? {
            LogChunk::Stderr(b) => {
                err.write_all(&b)?;
                err.flush()?;
            }
            LogChunk::Stdout(b) => {
                out.write_all(&b)?;
                out.flush()?;
            }
        }
    }
    drop(stream);
    Ok(ExitCode::SUCCESS)
}
