//! Interactive and streaming sessions in a container (`ssh`, `exec`, `attach`): the
//! podman CLI in remote mode against devaipod's engine socket runs them. It already
//! does everything a terminal session needs (raw mode, window resizes, stdin
//! forwarding, the command's exit status), which the REST API would make devaipod
//! re-implement. The environment goes through a 0600 env file, never the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;

use anyhow::{Context, Result};

use super::Engine;

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
