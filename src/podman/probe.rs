//! The paths the rest of devaipod used before the probe was split by job: readiness
//! ([`super::readiness`]), entering the pod ([`super::netns`]) and the agent's HTTP
//! API ([`super::agent_http`]). Re-exported so callers keep compiling.

pub use super::agent_http::{HttpRequest, HttpResponse, agent_request, run_http};
pub use super::netns::{in_pod_command, nsenter_command, toolbox_command};
pub use super::readiness::{
    POLL_INTERVAL, REQUEST_TIMEOUT, Target, agent_stopped, explain_agent_death, parse_url,
    probe_once, run_probe, wait_ready,
};
