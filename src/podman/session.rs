//! Interactive and streaming sessions in a container (`ssh`, `exec`, `attach`): the
//! podman CLI in remote mode against devaipod's engine socket runs them. It already
//! does everything a terminal session needs (raw mode, window resizes, stdin
//! forwarding, the command's exit status), which the REST API would make devaipod
//! re-implement. The environment goes through a 0600 env file, never the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::names::Name;
use crate::plan::{self, labels};

use super::Engine;

/// The interactive login shell of the session's user.
pub(crate) const LOGIN_SHELL: &str = "u=$(id -un 2>/dev/null); s=$(getent passwd \"$u\" 2>/dev/null | cut -d: -f7); [ -x \"$s\" ] || s=/bin/sh; exec \"$s\" -l";

/// What a session in the workspace needs, from the pod's labels and the container:
/// `devaipod ssh` and the SSH server's channels both run as this.
pub(crate) struct WorkspaceSession {
    pub workspace: String,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    /// postAttachCommand: the features' (in install order), then the config's.
    pub post_attach: Vec<plan::LifecycleStep>,
}

pub(crate) async fn workspace_session(engine: &Engine, name: &Name) -> Result<WorkspaceSession> {
    let row = engine.workspace(name).await?;
    let workspace = row
        .container("workspace")
        .map(|c| c.name.clone())
        .ok_or_else(|| anyhow::anyhow!("pod {} has no workspace container", row.pod))?;
    let pod = engine.inspect_pod(&row.pod).await?;
    let ws = engine.inspect_container(&workspace).await?;
    if !ws.state.running {
        bail!("workspace {name} is not running: start it with `devaipod start {name}`");
    }
    let label = |k: &str| pod.label(k).map(str::to_string);
    let container_env = ws.config.env_map();
    let remote_env: BTreeMap<String, String> = label(labels::REMOTE_ENV)
        .map(|j| serde_json::from_str(&j).context("reading the pod's remoteEnv label"))
        .transpose()?
        .unwrap_or_default();
    let env = crate::devcontainer::vars::remote_env_in(&remote_env, &container_env)?;
    let post_attach = label(labels::POST_ATTACH)
        .map(|j| post_attach_steps(&j))
        .transpose()?
        .unwrap_or_default();
    Ok(WorkspaceSession {
        workspace,
        user: label(labels::REMOTE_USER),
        workdir: label(labels::WORKDIR),
        env,
        post_attach,
    })
}

/// The steps of the pod's postAttachCommand label: a list of steps, or (pods made
/// before features' commands were applied) the config's one command.
fn post_attach_steps(json: &str) -> Result<Vec<plan::LifecycleStep>> {
    if let Ok(steps) = serde_json::from_str(json) {
        return Ok(steps);
    }
    let command =
        serde_json::from_str(json).context("reading the pod's postAttachCommand label")?;
    Ok(vec![plan::LifecycleStep {
        property: "postAttachCommand".into(),
        command,
        feature: None,
    }])
}

/// One session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub container: String,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Allocate a terminal (stdin is then a terminal too).
    pub tty: bool,
    pub argv: Vec<String>,
}

/// The podman command line for `s` (the env file path given separately).
pub(crate) fn command_line(
    podman: &std::path::Path,
    socket: &std::path::Path,
    s: &Session,
    env_file: Option<&std::path::Path>,
) -> Vec<String> {
    let mut argv = vec![
        podman.display().to_string(),
        "--remote".into(),
        "--url".into(),
        format!("unix://{}", socket.display()),
        "exec".into(),
        "--interactive".into(),
    ];
    if s.tty {
        argv.push("--tty".into());
    }
    if let Some(u) = &s.user {
        argv.extend(["--user".into(), u.clone()]);
    }
    if let Some(w) = &s.workdir {
        argv.extend(["--workdir".into(), w.clone()]);
    }
    if let Some(f) = env_file {
        argv.extend(["--env-file".into(), f.display().to_string()]);
    }
    argv.push(s.container.clone());
    argv.extend(s.argv.iter().cloned());
    argv
}

/// Runs the session with devaipod's stdin, stdout and stderr, and returns its exit
/// code. Ctrl-C and SIGTERM go to the session (devaipod waits for it to end).
pub(crate) async fn run(engine: &Engine, s: &Session) -> Result<i32> {
    let podman = super::connect::find_podman()?;
    let dir = tempfile::Builder::new()
        .prefix("devaipod-session-")
        .tempdir()
        .context("creating a private directory for the session")?;
    let env_file = if s.env.is_empty() {
        None
    } else {
        let path = dir.path().join("env");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .context("writing the session's environment")?;
        for (k, v) in &s.env {
            if v.contains('\n') {
                anyhow::bail!("remoteEnv {k} holds a newline, which an env file cannot carry");
            }
            writeln!(f, "{k}={v}")?;
        }
        Some(path)
    };
    let argv = command_line(&podman, engine.socket(), s, env_file.as_deref());
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    // The terminal's signals reach podman (same process group); devaipod itself waits.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.context("waiting for the session")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {
                let _ = child.start_kill();
            }
        }
    };
    drop(dir);
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_carry_no_environment_values() {
        let s = Session {
            container: "c".into(),
            user: Some("dev".into()),
            workdir: Some("/w".into()),
            env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
            tty: true,
            argv: vec!["bash".into()],
        };
        let argv = command_line(
            std::path::Path::new("/usr/bin/podman"),
            std::path::Path::new("/run/p.sock"),
            &s,
            Some(std::path::Path::new("/tmp/x/env")),
        );
        assert_eq!(
            argv,
            [
                "/usr/bin/podman",
                "--remote",
                "--url",
                "unix:///run/p.sock",
                "exec",
                "--interactive",
                "--tty",
                "--user",
                "dev",
                "--workdir",
                "/w",
                "--env-file",
                "/tmp/x/env",
                "c",
                "bash"
            ]
        );
        assert!(!argv.join(" ").contains("s3cret"));
    }
}
