//! devaipod: run AI coding agents sandboxed inside reproducible dev environments, using
//! rootless Podman pods.
//!
//! The flow is always config -> pure plan -> apply (see ARCHITECTURE.md):
//! [`devcontainer`] reads the repo's devcontainer.json, [`plan`] turns it into a
//! [`plan::PodPlan`] without any I/O, and [`podman`] (the only module that talks to the
//! engine) applies it.

pub mod agent;
pub mod agent_repo;
pub mod build;
pub mod cli;
pub mod config;
pub mod devcontainer;
pub mod git;
pub mod inputs;
pub mod names;
pub mod plan;
pub mod podman;
pub mod process;
pub mod progress;
pub mod secret;
pub mod size;
pub mod state;
pub mod terminal;

/// The version recorded in the `io.devaipod.version` label of every object we create.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The user interrupted a command (Ctrl-C or SIGTERM); what it had created was removed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;
