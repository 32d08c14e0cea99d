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
