//! Relaying a byte stream to a port inside a pod: devaipod-net's `relay` runs in the
//! workspace (which shares the pod's network namespace) by Podman exec, its stdio the
//! stream. Rootless, the host cannot dial the pod's network; this works for every pod,
//! rootful or rootless, published ports or not. Used by the SSH server's `direct-tcpip`
//! channels (`ssh -L`, `ssh -D`) and by `devaipod forward`.

use futures_util::{AsyncWriteExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::podman::Engine;
use crate::podman::exec::{ExecAttach, ExecOutput, ExecSpec};
use crate::podman::session::WorkspaceSession;

/// Where the workspace finds devaipod-net (its image, mounted read-only).
pub(crate) fn helper_path() -> String {
    crate::plan::network::mounted_exe()
}

/// The exec that connects to `host:port` on the pod's loopback (`host` is one of the
/// names devaipod-net's relay takes: `127.0.0.1`, `::1`, `localhost`).
pub(crate) fn relay_spec(ws: &WorkspaceSession, host: &str, port: u16) -> ExecSpec {
    ExecSpec {
        container: ws.workspace.clone(),
        argv: vec![helper_path(), "relay".into(), host.into(), port.to_string()],
        user: ws.user.clone(),
        workdir: Some("/".into()),
        env: Vec::new(),
        tty: None,
    }
}

/// Starts the relay to `host:port`.
pub(crate) async fn start(
    engine: &Engine,
    ws: &WorkspaceSession,
    host: &str,
    port: u16,
) -> anyhow::Result<ExecAttach> {
    engine.exec_attach(&relay_spec(ws, host, port)).await
}

/// Copies `io` to the relay and the relay to `io` until the relay ends (an end of
/// input from `io` is passed on, and the other direction goes on). Returns what the
/// relay said on stderr (why it could not connect, say), made safe for a terminal.
pub(crate) async fn pipe(attach: ExecAttach, io: impl AsyncRead + AsyncWrite) -> String {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut input = attach.input;
    let mut output = attach.output;
    let up = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tracing::debug!("relay: {n} bytes in");
                    // The attach connection buffers: flush, or the relay waits for
                    // bytes that never leave.
                    if input.write_all(&buf[..n]).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = input.close().await;
        // Then wait for the other direction to end.
        std::future::pending::<()>().await;
    };
    let down = async {
        let mut said = Vec::new();
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(ExecOutput::Stdout(b)) => {
                    tracing::debug!("relay: {} bytes out", b.len());
                    if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                        break;
                    }
                }
                Ok(ExecOutput::Stderr(b)) => {
                    if said.len() < 4096 {
                        said.extend_from_slice(&b);
                    }
                }
                Err(_) => break,
            }
        }
        let _ = wr.shutdown().await;
        said
    };
    let said = tokio::select! {
        said = down => said,
        () = up => Vec::new(),
    };
    crate::terminal::line(String::from_utf8_lossy(&said).trim()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_runs_as_the_remote_user_to_the_address_asked_for() {
        let ws = WorkspaceSession {
            workspace: "devaipod-demo-workspace".into(),
            user: Some("dev".into()),
            workdir: Some("/workspaces/demo".into()),
            env: [("SECRETISH".to_string(), "x".to_string())].into(),
            post_attach: Vec::new(),
        };
        let spec = relay_spec(&ws, "::1", 8080);
        assert_eq!(spec.argv, [helper_path().as_str(), "relay", "::1", "8080"]);
        assert_eq!(spec.user.as_deref(), Some("dev"));
        assert_eq!(spec.workdir.as_deref(), Some("/"));
        assert!(spec.env.is_empty(), "the relay needs no remoteEnv");
        assert_eq!(spec.tty, None);
    }
}
