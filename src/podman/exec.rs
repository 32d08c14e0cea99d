//! Exec sessions in running containers (the lifecycle commands), their output line by
//! line and their exit code.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use super::inspect::ExecInspect;
use super::{Engine, api_error, conn_error, encode};

impl Engine {
    /// Runs `argv` in a running container as `user` in `workdir`, handing each output
    /// line to `on_line`; returns the exit code.
    pub(crate) async fn exec_lines(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        workdir: &str,
        env: &[(String, String)],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<i64> {
        let containers = self.api.containers();
        let c = containers.get(container);
        let mut opts = podman_api::opts::ExecCreateOpts::builder()
            .command(argv.iter().cloned())
            .attach_stdout(true)
            .attach_stderr(true)
            .working_dir(workdir);
        if !env.is_empty() {
            opts = opts.env(env.iter().cloned());
        }
        if let Some(u) = user {
            opts = opts.user(podman_api::opts::UserOpt::User(u.to_string()));
        }
        let what = || {
            format!(
                "running {:?} in {container}",
                argv.first().map(String::as_str).unwrap_or_default()
            )
        };
        let exec = c
            .create_exec(&opts.build())
            .await
            .map_err(api_error)
            .with_context(what)?;
        let start = podman_api::opts::ExecStartOpts::builder().build();
        let mut pending = String::new();
        if let Some(mut stream) = exec
            .start(&start)
            .await
            .map_err(api_error)
            .with_context(what)?
        {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(conn_error)?;
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    on_line(line.trim_end_matches(['\n', '\r']));
                }
            }
        }
        if !pending.is_empty() {
            on_line(&pending);
        }
        // The output stream ends when the process does; its exit code follows shortly.
        let ep = format!("/libpod/exec/{}/json", encode(exec.id().as_ref()));
        for _ in 0..200 {
            let inspect: ExecInspect = self.get_json(&ep).await.with_context(what)?;
            if !inspect.running {
                return Ok(inspect.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("{} did not report an exit code", what())
    }
}

/// What an attached exec runs, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecSpec {
    pub container: String,
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    /// A terminal of this size (columns, rows); stdout and stderr are then one stream.
    pub tty: Option<(u16, u16)>,
}

/// One piece of an attached exec's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A running exec with its stdin, stdout and stderr attached.
pub(crate) struct ExecAttach {
    /// The exec session's id (for resizes, its PID and its exit code).
    pub id: String,
    pub output: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<ExecOutput>> + Send>>,
    /// Its stdin; closing it (`shutdown`) gives the process end-of-file.
    pub input: std::pin::Pin<Box<dyn futures_util::io::AsyncWrite + Send>>,
}

impl Engine {
    /// Starts `spec` with its stdio attached (the SSH server's channels, relays).
    pub(crate) async fn exec_attach(&self, spec: &ExecSpec) -> Result<ExecAttach> {
        use containers_api::conn::tty::TtyChunk;
        let c = self.api.containers().get(&spec.container);
        let mut opts = podman_api::opts::ExecCreateOpts::builder()
            .command(spec.argv.iter().cloned())
            .attach_stdin(true)
            .attach_stdout(true)
            .attach_stderr(true)
            .tty(spec.tty.is_some());
        if let Some(w) = &spec.workdir {
            opts = opts.working_dir(w);
        }
        if !spec.env.is_empty() {
            opts = opts.env(spec.env.iter().cloned());
        }
        if let Some(u) = &spec.user {
            opts = opts.user(podman_api::opts::UserOpt::User(u.clone()));
        }
        let what = || {
            format!(
                "running {:?} in {}",
                spec.argv.first().map(String::as_str).unwrap_or_default(),
                spec.container
            )
        };
        let exec = c
            .create_exec(&opts.build())
            .await
            .map_err(api_error)
            .with_context(what)?;
        let mut start = podman_api::opts::ExecStartOpts::builder().tty(spec.tty.is_some());
        if let Some((cols, rows)) = spec.tty {
            start = start.width(usize::from(cols)).height(usize::from(rows));
        }
        let stream = exec
            .start(&start.build())
            .await
            .map_err(api_error)
            .with_context(what)?
            .with_context(|| format!("{}: the engine attached no stream", what()))?;
        let (output, input) = stream.split();
        let output = output.filter_map(|chunk| async move {
            match chunk {
                Ok(TtyChunk::StdOut(b)) => Some(Ok(ExecOutput::Stdout(b))),
                Ok(TtyChunk::StdErr(b)) => Some(Ok(ExecOutput::Stderr(b))),
                Ok(TtyChunk::StdIn(_)) => None,
                Err(e) => Some(Err(conn_error(e))),
            }
        });
        Ok(ExecAttach {
            id: exec.id().to_string(),
            output: Box::pin(output),
            input: Box::pin(input),
        })
    }

    /// The state of exec session `id`.
    pub(crate) async fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
        self.get_json(&format!("/libpod/exec/{}/json", encode(id)))
            .await
            .with_context(|| format!("inspecting exec session {id}"))
    }

    /// Sets the terminal size of exec session `id`.
    pub(crate) async fn exec_resize(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        self.api
            .execs()
            .get(id)
            .resize(usize::from(cols), usize::from(rows))
            .await
            .map_err(api_error)
            .with_context(|| format!("resizing the terminal of exec session {id}"))
    }

    /// The exit code of exec session `id`, whose output has ended (the code follows
    /// shortly after).
    pub(crate) async fn exec_exit_code(&self, id: &str) -> Result<i64> {
        for _ in 0..500 {
            let inspect = self.exec_inspect(id).await?;
            if !inspect.running {
                return Ok(inspect.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("exec session {id} did not report an exit code within 5 s of its output ending")
    }
}
