//! The SSH server side, over devaipod's stdin and stdout: authentication with the
//! user's keys, and each channel mapped onto a Podman exec in the workspace.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::Context;
use crate::names::Name;

/// Speaks SSH on stdin/stdout for pod `name` until the client goes away.
pub(crate) async fn serve_stdio(_ctx: &Context, name: &Name) -> Result<ExitCode> {
    bail!("the SSH server for {name} is not built yet")
}
