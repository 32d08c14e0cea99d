//! `devaipod forward NAME [HOST_PORT:]PORT`: a listener on the host's 127.0.0.1 that
//! relays each connection to PORT inside a running pod, for as long as devaipod runs.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::Context;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// `PORT` or `HOST_PORT:PORT`: the pod's port, and the host's (default the same)
    #[arg(value_name = "[HOST_PORT:]PORT")]
    pub port: String,
}

pub(super) async fn run(_ctx: &Context, args: ForwardArgs) -> Result<ExitCode> {
    bail!("forward is not built yet ({args:?})")
}
