//! `devaipod forward NAME [HOST_PORT:]PORT`: a listener on the host's 127.0.0.1 that
//! relays each connection to PORT inside a running pod (through devaipod-net's relay in
//! the workspace), for as long as the pod runs or until Ctrl-C. Any port: declared in
//! forwardPorts or not, opened after `up` or before.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::Context;
use crate::names::Name;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// `PORT` or `HOST_PORT:PORT`: the pod's port, and the host's (default the same;
    /// 0 picks a free one)
    #[arg(value_name = "[HOST_PORT:]PORT")]
    pub port: String,
}

/// Reads `[HOST_PORT:]PORT`.
pub(crate) fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let port = |p: &str, what: &str, zero: bool| -> Result<u16> {
        match p.parse::<u16>() {
            Ok(0) if !zero => bail!("{what} 0 is not a port"),
            Ok(n) => Ok(n),
            Err(_) => bail!("{what} {p:?} is not a port number (1-65535)"),
        }
    };
    let (host, pod) = match s.split_once(':') {
        Some((h, p)) => (port(h, "host port", true)?, port(p, "pod port", false)?),
        None => {
            let p = port(s, "port", false)?;
            (p, p)
        }
    };
    Ok((host, pod))
}

pub(super) async fn run(ctx: &Context, args: ForwardArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let (host_port, pod_port) = parse_ports(&args.port).with_context(|| {
        format!(
            "reading {:?}: write PORT or HOST_PORT:PORT, e.g. `devaipod forward {name} 8080` or `8081:8080`",
            args.port
        )
    })?;
    let engine = ctx.engine().await?;
    let ws = Arc::new(crate::podman::session::workspace_session(engine, &name).await?);
    check_helper(engine, &ws).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", host_port))
        .await
        .with_context(|| {
            format!(
                "listening on 127.0.0.1:{host_port}: pick another host port (`devaipod forward {name} OTHER:{pod_port}`, or 0 for a free one)"
            )
        })?;
    let local = listener.local_addr()?;
    eprintln!(
        "forwarding {local} to port {pod_port} in {name} (until the workspace stops or Ctrl-C)"
    );
    // The listener's address on stdout, for scripts (`0:PORT` picks a free one).
    println!("{local}");
    let mut watch = tokio::time::interval(Duration::from_secs(2));
    // Relays being started (an exec each), so the listener, the watch and Ctrl-C are
    // served meanwhile; a started relay's copying runs on its own task.
    let mut starting = futures_util::stream::FuturesUnordered::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                match conn {
                    Ok((sock, peer)) => {
                        let ws = ws.clone();
                        starting.push(async move {
                            let r = crate::ssh::relay::start(engine, &ws, "127.0.0.1", pod_port).await;
                            (sock, peer, r)
                        });
                    }
                    Err(e) => tracing::warn!("accepting a connection: {e}"),
                }
            }
            Some((sock, peer, r)) = futures_util::StreamExt::next(&mut starting) => match r {
                Ok(attach) => {
                    tokio::spawn(async move {
                        let said = crate::ssh::relay::pipe(attach, sock).await;
                        if !said.is_empty() {
                            eprintln!("{peer}: {said}");
                        }
                    });
                }
                Err(e) => eprintln!("{peer}: {}", crate::terminal::line(&format!("{e:#}"))),
            },
            _ = watch.tick() => {
                let running = engine
                    .inspect_container(&ws.workspace)
                    .await
                    .map(|c| c.state.running)
                    .unwrap_or(false);
                if !running {
                    eprintln!("workspace {name} stopped: forwarding ends");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// The workspace must have devaipod-net mounted (pods made since the SSH support).
pub(crate) async fn check_helper(
    engine: &crate::podman::Engine,
    ws: &crate::podman::session::WorkspaceSession,
) -> Result<()> {
    let c = engine.inspect_container(&ws.workspace).await?;
    let mounted = c
        .mounts
        .iter()
        .any(|m| m.destination == crate::plan::network::NET_MOUNT);
    if !mounted {
        bail!(
            "{} has no devaipod-net at {} (the pod was made by an older devaipod, or without devaipod-net): recreate it with `devaipod delete` and `devaipod up` to forward ports",
            ws.workspace,
            crate::plan::network::NET_MOUNT
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_as_docker_and_ssh_write_them() {
        assert_eq!(parse_ports("8080").expect("ok"), (8080, 8080));
        assert_eq!(parse_ports("9000:8080").expect("ok"), (9000, 8080));
        assert_eq!(parse_ports("0:8080").expect("ok"), (0, 8080));
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("8080:0").is_err());
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("70000").is_err());
        assert!(parse_ports("1:2:3").is_err());
    }
}
