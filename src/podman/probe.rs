//! The paths the rest of devaipod used before the probe was split by job: readiness
//! ([`super::readiness`]), entering the pod ([`super::netns`]) and the agent's HTTP
//! API ([`super::agent_http`]). Re-exported so callers keep compiling.

pub(crate) use super::agent_http::{agent_request, run_http};
pub(crate) use super::readiness::{Target, run_probe, wait_ready};
