//! `devaipod ssh-config NAME | --all [--stdout]`: OpenSSH client entries for pods, and
//! `devaipod ssh-server NAME`, the entries' ProxyCommand (SSH's server side on stdio).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Context;
use crate::names::Name;

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The workspace: NAME or devaipod-NAME
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// One entry per workspace
    #[arg(long)]
    pub all: bool,
    /// Print the entry instead of writing it
    #[arg(long)]
    pub stdout: bool,
}

#[derive(Debug, Args)]
pub struct SshServerArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
}

pub(super) async fn run(_ctx: &Context, args: SshConfigArgs) -> Result<ExitCode> {
    bail!("ssh-config is not built yet ({args:?})")
}

pub(super) async fn server(ctx: &Context, args: SshServerArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    crate::ssh::server::serve_stdio(ctx, &name).await
}
