//! devaipod: run AI coding agents sandboxed inside reproducible dev environments, using
//! rootless Podman pods.
//!
//! The flow is always config -> pure plan -> apply (see ARCHITECTURE.md):
//! [`devcontainer`] reads the repo's devcontainer.json, [`plan`] turns it into a
//! [`plan::PodPlan`] without any I/O, and [`podman`] (the only module that talks to the
//! engine) applies it.

// Only `cli` is public (main needs it), and `fuzzing` for the fuzz targets (feature
// `fuzzing`); everything else is the crate's own, so an item nobody uses warns as dead
// code.
#![warn(unreachable_pub)]

mod agent;
mod agent_repo;
mod build;
pub mod cli;
mod config;
mod devcontainer;
mod feature_build;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod git;
mod inputs;
mod locks;
mod names;
mod net_binary;
mod oci;
mod plan;
mod podman;
mod process;
mod progress;
mod secret;
mod size;
#[allow(dead_code)] // issue 17 in progress: removed when the server lands
mod ssh;
mod state;
mod terminal;

/// The version recorded in the `io.devaipod.version` label of every object we create.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The user interrupted a command (Ctrl-C or SIGTERM); what it had created was removed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;
