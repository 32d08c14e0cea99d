//! `devaipod status NAME [--json]`: one workspace in detail: the `list` object plus
//! volumes, mounts, published ports and recent events.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Context;
use super::list::Entry;
use crate::names::Name;
use crate::plan::labels;
use crate::podman::inspect::{ContainerInspect, PodInspect};
use crate::podman::inventory::EventRow;
use crate::state::StateDir;

/// How far back `status` looks for events.
const EVENTS_SINCE_SECS: u64 = 24 * 3600;
/// How many events `status` shows.
const EVENTS_LIMIT: usize = 20;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// A mount of one container.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MountRow {
    pub container: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub destination: String,
    pub rw: bool,
}

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Status {
    #[serde(flatten)]
    pub entry: Entry,
    pub volumes: Vec<String>,
    pub mounts: Vec<MountRow>,
    pub ports: Vec<PortRow>,
    /// The agent's opencode sessions, newest first (`null` when the pod is not
    /// running or the agent does not answer; `sessions_note` says why).
    pub sessions: Option<Vec<crate::agent::SessionRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_note: Option<String>,
    pub events: Vec<EventRow>,
}

fn mounts_of(container: &str, inspect: &ContainerInspect) -> Vec<MountRow> {
    inspect
        .mounts
        .iter()
        .map(|m| MountRow {
            container: container.to_string(),
            kind: m.kind.clone(),
            source: if m.name.is_empty() {
                m.source.clone()
            } else {
                m.name.clone()
            },
            destination: m.destination.clone(),
            rw: m.rw,
        })
        .collect()
}

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct PortRow {
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
    pub protocol: String,
}

/// Published ports from the pod's infra config.
pub(super) fn ports_of(pod_inspect: &PodInspect) -> Vec<PortRow> {
    let mut out = Vec::new();
    let bindings = pod_inspect
        .infra_config
        .iter()
        .flat_map(|c| &c.port_bindings);
    for (port, bindings) in bindings {
        let (cport, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        let Ok(container_port) = cport.parse() else {
            continue;
        };
        for b in bindings {
            let Ok(host_port) = b.host_port.parse() else {
                continue;
            };
            out.push(PortRow {
                container_port,
                host_port,
                host_ip: b.host_ip.clone(),
                protocol: proto.to_string(),
            });
        }
    }
    out.sort_by_key(|p| p.container_port);
    out
}

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Print a JSON array on stdout
    #[arg(long)]
    pub json: bool,
}

/// `devaipod ports NAME`: the workspace's ports published on the host.
pub(super) async fn ports(ctx: &Context, args: PortsArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let pod = engine.inspect_pod(&row.pod).await?;
    let ports = ports_of(&pod);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ports)?);
    } else if ports.is_empty() {
        println!(
            "{} publishes no ports (forwardPorts/appPort in devcontainer.json)",
            row.pod
        );
    } else {
        println!("CONTAINER  HOST");
        for p in &ports {
            println!(
                "{:<10} {}:{}",
                format!("{}/{}", p.container_port, p.protocol),
                p.host_ip,
                p.host_port
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run(ctx: &Context, args: StatusArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let inspects = futures_util::future::try_join_all(
        row.containers
            .iter()
            .map(|c| engine.inspect_container(&c.name)),
    );
    let (inspects, pod, volumes, events) = tokio::try_join!(
        inspects,
        engine.inspect_pod(&row.pod),
        engine.volumes_with_label(labels::POD, name.as_str()),
        engine.events(name.as_str(), EVENTS_SINCE_SECS, EVENTS_LIMIT),
    )?;
    let (sessions, sessions_note) = if row.status == "running" {
        let got = async {
            let agent = crate::agent::Agent::open(engine, &name).await?;
            agent.sessions().await
        }
        .await;
        match got {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, Some(format!("the pod is {}", row.status)))
    };
    let mounts = row
        .containers
        .iter()
        .zip(&inspects)
        .flat_map(|(c, i)| mounts_of(&c.name, i))
        .collect();
    let status = Status {
        ports: ports_of(&pod),
        entry: Entry::new(row, StateDir::from_env().as_ref()),
        volumes,
        mounts,
        sessions,
        sessions_note,
        events,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(s: &Status) -> String {
    use std::fmt::Write;
    let ready = s.entry.agent_ready;
    let e = &s.entry.row;
    let mut out = String::new();
    let _ = writeln!(out, "workspace  {} (pod {})", e.name, e.pod);
    let _ = writeln!(out, "status     {}", e.status);
    let _ = writeln!(
        out,
        "agent      {}",
        if ready { "ready" } else { "not ready" }
    );
    let _ = writeln!(out, "repo       {}", e.repo);
    let _ = writeln!(out, "image      {}", e.image);
    let _ = writeln!(out, "created    {}", e.created);
    for c in &e.containers {
        let _ = writeln!(out, "container  {} [{}] {}", c.name, c.role, c.state);
    }
    for v in &s.volumes {
        let _ = writeln!(out, "volume     {v}");
    }
    for m in &s.mounts {
        let mode = if m.rw { "rw" } else { "ro" };
        let _ = writeln!(
            out,
            "mount      {}: {} -> {} ({mode})",
            m.container, m.source, m.destination
        );
    }
    for p in &s.ports {
        let _ = writeln!(
            out,
            "port       {}:{} -> {}/{}",
            p.host_ip, p.host_port, p.container_port, p.protocol
        );
    }
    match (&s.sessions, &s.sessions_note) {
        (Some(list), _) if list.is_empty() => {
            let _ = writeln!(
                out,
                "sessions   none (hand over a task with `devaipod task {} TEXT`)",
                e.name
            );
        }
        (Some(list), _) => {
            for r in list {
                let _ = writeln!(
                    out,
                    "session    {} {} {} ({}){}",
                    r.id,
                    r.state,
                    ago(r.updated),
                    r.title,
                    r.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
        }
        (None, Some(note)) => {
            let _ = writeln!(out, "sessions   unknown: {note}");
        }
        (None, None) => {}
    }
    for ev in &s.events {
        let _ = writeln!(
            out,
            "event      {} {} {} {}",
            ev.time, ev.kind, ev.action, ev.name
        );
    }
    out
}

/// "12s ago", "5m ago" for a unix-milliseconds time.
fn ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let secs = (now - ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mounts_and_ports() {
        let mut c: serde_json::Value =
            serde_json::from_str(crate::podman::inspect::fixtures::AGENT).expect("fixture");
        c["Mounts"] = serde_json::json!([
            {"Type": "volume", "Name": "v1", "Source": "/var/lib/x", "Destination": "/w", "RW": true},
            {"Type": "bind", "Source": "/etc/hosts", "Destination": "/etc/hosts", "RW": false},
        ]);
        let c: ContainerInspect = serde_json::from_value(c).expect("inspect");
        let m = mounts_of("c1", &c);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].source.as_str(), m[0].rw), ("v1", true));
        assert_eq!(m[1].source, "/etc/hosts");
        let pod = |v| serde_json::from_value::<PodInspect>(v).expect("pod");
        let published = pod(
            serde_json::json!({"InfraConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}}}),
        );
        assert_eq!(
            ports_of(&published),
            [PortRow {
                container_port: 8080,
                host_port: 18080,
                host_ip: "127.0.0.1".into(),
                protocol: "tcp".into()
            }]
        );
        assert!(ports_of(&pod(serde_json::json!({}))).is_empty());
    }
}
