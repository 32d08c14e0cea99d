//! Real-Podman tests: devaipod's commands against the engine of whoever runs them (root
//! for the rootful leg, an unprivileged user for the rootless leg; see the Justfile's
//! `test-rootful` and `test-rootless`). Not part of a plain `cargo test` (Cargo.toml:
//! `test = false`). Each test makes its workspace with `common::pod::TestPod`: a unique
//! name, the label `devaipod.test=<run>`, and a guard that removes everything it made,
//! podman secrets included, and fails the test if anything stays (kept with
//! DEVAIPOD_TEST_KEEP=1). Without Podman these tests fail with instructions; they never
//! skip.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod base_build;
mod build;
mod devcontainer;
mod doctor;
mod engine;
mod feature_install;
mod feature_lock;
mod feature_reference;
mod features;
mod gator;
mod gc;
mod hostile_sizes;
mod inert_git;
mod inert_output;
mod interrupt;
mod jobs;
mod load;
mod network;
mod openssh;
mod pod;
mod registry;
mod secrets;
mod security;
mod ssh;

/// The devcontainer.json most tests use: the base image, comments and trailing commas,
/// a containerEnv with a variable.
const BASE_CONFIG: &str = r#"{
  // comments and trailing commas are fine
  "image": "localhost/devaipod-base:latest",
  "remoteUser": "dev",
  "containerEnv": {"DEVAIPOD_CE": "from-repo-${localWorkspaceFolderBasename}"},
}"#;

/// The agent's health answer, asked from the workspace (as root) with the server
/// password the workspace's user has.
#[track_caller]
fn agent_health(pod: &common::pod::TestPod) -> String {
    let password = pod.in_workspace(Some("dev"), "cat /run/secrets/devaipod-opencode-password");
    pod.in_workspace(
        None,
        &format!("curl -s -m 5 -u opencode:{password} http://127.0.0.1:4096/global/health"),
    )
}
