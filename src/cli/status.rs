//! `devaipod status NAME [--json]`: one workspace in detail: the `list` object plus
//! volumes (with how much each holds), mounts, published ports and recent events.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Context;
use super::list::Entry;
use crate::names::Name;
use crate::podman::inspect::{ContainerInspect, PodInspect};
use crate::podman::inventory::EventRow;
use crate::podman::storage::{self, VolumeUse};
use crate::state::StateDir;
use crate::terminal::line;

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
    /// How much each volume holds, in the order of `volumes` (`du`, bounded in time).
    pub disk: Vec<VolumeUse>,
    pub mounts: Vec<MountRow>,
    pub ports: Vec<PortRow>,
    /// The agent's opencode sessions, newest first (`null` when the pod is not
    /// running or the agent does not answer; `sessions_note` says why).
    pub sessions: Option<Vec<crate::agent::SessionRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions_note: Option<String>,
    /// The agent's network: mode, allowlist, credential providers, refusals.
    pub network: super::network::NetworkStatus,
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
            line(&row.pod)
        );
    } else {
        println!("CONTAINER  HOST");
        for p in &ports {
            println!(
                "{:<10} {}:{}",
                format!("{}/{}", p.container_port, line(&p.protocol)),
                line(&p.host_ip),
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
        engine.workspace_volumes(name.as_str()),
        engine.events(name.as_str(), EVENTS_SINCE_SECS, EVENTS_LIMIT),
    )?;
    let agent = async {
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
        let network = super::network::status(engine, &row, &pod.labels).await;
        (sessions, sessions_note, network)
    };
    let disk = storage::disk_use(engine.rootless(), &volumes, storage::DISK_USE_TIMEOUT);
    let ((sessions, sessions_note, network), disk) = tokio::join!(agent, disk);
    let mounts = row
        .containers
        .iter()
        .zip(&inspects)
        .flat_map(|(c, i)| mounts_of(&c.name, i))
        .collect();
    let status = Status {
        ports: ports_of(&pod),
        entry: Entry::new(row, StateDir::from_env().as_ref()),
        volumes: volumes.into_iter().map(|v| v.name).collect(),
        disk,
        mounts,
        sessions,
        sessions_note,
        network,
        events,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human view. Every field is escaped ([`line`]): session titles and messages are
/// the agent's, labels, mounts and image names the repo's.
fn render(s: &Status) -> String {
    use std::fmt::Write;
    let ready = s.entry.agent_ready;
    let e = &s.entry.row;
    let mut out = String::new();
    let _ = writeln!(out, "workspace  {} (pod {})", line(&e.name), line(&e.pod));
    let _ = writeln!(out, "status     {}", line(&e.status));
    let _ = writeln!(
        out,
        "agent      {}",
        if ready { "ready" } else { "not ready" }
    );
    let _ = writeln!(out, "repo       {}", line(&e.repo));
    let _ = writeln!(out, "image      {}", line(&e.image));
    let created = chrono::DateTime::parse_from_rfc3339(&e.created)
        .map(|t| crate::terminal::local_time(t.timestamp(), crate::terminal::now_secs()))
        .unwrap_or_else(|_| line(&e.created).into_owned());
    let _ = writeln!(out, "created    {created}");
    for c in &e.containers {
        let _ = writeln!(
            out,
            "container  {} [{}] {}",
            line(&c.name),
            line(&c.role),
            line(&c.state)
        );
    }
    for v in &s.volumes {
        let used = s.disk.iter().find(|d| &d.volume == v).map(disk_use);
        let _ = writeln!(
            out,
            "volume     {}{}",
            line(v),
            used.map(|u| format!(" {u}")).unwrap_or_default()
        );
    }
    for m in &s.mounts {
        let mode = if m.rw { "rw" } else { "ro" };
        let _ = writeln!(
            out,
            "mount      {}: {} -> {} ({mode})",
            line(&m.container),
            line(&m.source),
            line(&m.destination)
        );
    }
    for p in &s.ports {
        let _ = writeln!(
            out,
            "port       {}:{} -> {}/{}",
            line(&p.host_ip),
            p.host_port,
            p.container_port,
            line(&p.protocol)
        );
    }
    match (&s.sessions, &s.sessions_note) {
        (Some(list), _) if list.is_empty() => {
            let _ = writeln!(
                out,
                "sessions   none (hand over a task with `devaipod task {} TEXT`)",
                line(&e.name)
            );
        }
        (Some(list), _) => {
            for r in list {
                let _ = writeln!(
                    out,
                    "session    {} {} {} ({}){}",
                    line(&r.id),
                    line(&r.state),
                    ago(r.updated),
                    line(&r.title),
                    r.message
                        .as_deref()
                        .map(|m| format!(": {}", line(m)))
                        .unwrap_or_default()
                );
            }
        }
        (None, Some(note)) => {
            let _ = writeln!(out, "sessions   unknown: {}", line(note));
        }
        (None, None) => {}
    }
    render_network(&mut out, &s.network);
    let now = crate::terminal::now_secs();
    for ev in &s.events {
        let _ = writeln!(
            out,
            "event      {} {} {} {}",
            crate::terminal::local_time(ev.time, now),
            line(&ev.kind),
            line(&ev.action),
            line(&ev.name)
        );
    }
    out
}

/// A volume's use: `20.3MiB`, `20.3MiB of 10GiB`, `unknown (timed out after 10s)`.
fn disk_use(d: &VolumeUse) -> String {
    use crate::size::human;
    let mut s = match d.bytes {
        Some(b) => human(b),
        None => "unknown".into(),
    };
    if let Some(l) = d.limit {
        s.push_str(&format!(" of {}", human(l)));
    }
    if let Some(n) = &d.note {
        s.push_str(&format!(" ({})", line(n)));
    }
    s
}

/// The network lines of the human view.
fn render_network(out: &mut String, n: &super::network::NetworkStatus) {
    use std::fmt::Write;
    if n.mode.is_empty() {
        return;
    }
    let _ = writeln!(out, "network    {}", line(&n.mode));
    if n.mode != "full" {
        let allow: Vec<String> = n.allow.iter().map(|a| line(a).into_owned()).collect();
        let _ = writeln!(
            out,
            "allow      {}",
            if allow.is_empty() {
                "(nothing)".to_string()
            } else {
                allow.join(" ")
            }
        );
    }
    for c in &n.credentials {
        let _ = writeln!(
            out,
            "credential {} -> {} (header {}{}{})",
            line(c["provider"].as_str().unwrap_or_default()),
            line(c["base_url"].as_str().unwrap_or_default()),
            line(c["header"].as_str().unwrap_or_default()),
            if c["preset"].is_string() {
                ", built-in preset"
            } else {
                ""
            },
            c["variable"]
                .as_str()
                .map(|v| format!(", key from {}", line(v)))
                .unwrap_or_default()
        );
    }
    if let Some(p) = &n.proxy {
        let _ = writeln!(
            out,
            "proxy      {} allowed, {} refused",
            p["allowed"].as_u64().unwrap_or_default(),
            p["refused"].as_u64().unwrap_or_default()
        );
        for r in p["last_refused"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "refused    {} {} ({})",
                line(r["time"].as_str().unwrap_or_default()),
                line(r["name"].as_str().unwrap_or_default()),
                line(r["reason"].as_str().unwrap_or_default())
            );
        }
    }
    if let Some(note) = &n.note {
        let _ = writeln!(out, "network    note: {}", line(note));
    }
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

    fn hostile_status() -> Status {
        use crate::terminal::testing::HOSTILE;
        let row = crate::podman::inventory::WorkspaceRow {
            name: "w1".into(),
            pod: "devaipod-w1".into(),
            status: "running".into(),
            repo: format!("/src/{HOSTILE}"),
            image: HOSTILE.into(),
            created: "2026-11-26T18:00:00+00:00".into(),
            containers: vec![],
        };
        let session = |title: &str, message: Option<&str>| crate::agent::SessionRow {
            id: "ses_1".into(),
            title: title.into(),
            state: "retry".into(),
            updated: 0,
            message: message.map(str::to_string),
        };
        Status {
            entry: Entry::new(row, None),
            volumes: vec![
                "devaipod-w1-agent-home".into(),
                "devaipod-w1-agent-repo".into(),
            ],
            disk: vec![
                VolumeUse {
                    volume: "devaipod-w1-agent-home".into(),
                    bytes: Some((20 << 20) + 300 * 1024),
                    limit: Some(10 << 30),
                    note: None,
                },
                VolumeUse {
                    volume: "devaipod-w1-agent-repo".into(),
                    bytes: None,
                    limit: None,
                    note: Some(format!("du failed: {HOSTILE}")),
                },
            ],
            mounts: vec![MountRow {
                container: "c".into(),
                kind: "bind".into(),
                source: HOSTILE.into(),
                destination: "/d".into(),
                rw: true,
            }],
            ports: vec![],
            sessions: Some(vec![
                session(HOSTILE, None),
                session("fine", Some(HOSTILE)),
                // A title with a newline cannot forge a line of status.
                session("a\nsession    forged", None),
            ]),
            sessions_note: None,
            network: super::super::network::NetworkStatus {
                mode: "allowlist".into(),
                allow: vec![HOSTILE.into()],
                credentials: vec![
                    serde_json::json!({"provider": HOSTILE, "base_url": "https://x.example", "header": "x-api-key", "preset": "anthropic", "variable": HOSTILE}),
                ],
                proxy: Some(
                    serde_json::json!({"allowed": 1, "refused": 2, "last_refused": [{"time": "t", "name": HOSTILE, "reason": HOSTILE}]}),
                ),
                note: None,
            },
            events: vec![],
        }
    }

    #[test]
    fn the_network_is_shown_escaped() {
        use crate::terminal::testing::assert_inert;
        let out = render(&hostile_status());
        assert_inert(&out);
        assert!(out.contains("network    allowlist\n"), "{out}");
        assert!(out.contains("proxy      1 allowed, 2 refused\n"), "{out}");
        assert!(out.contains(", built-in preset, key from "), "{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("refused ")).count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn session_titles_and_messages_are_shown_escaped() {
        use crate::terminal::testing::{HOSTILE_SHOWN, assert_inert};
        let out = render(&hostile_status());
        assert_inert(&out);
        let sessions: Vec<&str> = out.lines().filter(|l| l.starts_with("session")).collect();
        assert_eq!(sessions.len(), 3, "{out}");
        assert!(
            sessions[0].ends_with(&format!("({HOSTILE_SHOWN})")),
            "{out}"
        );
        assert!(
            sessions[1].ends_with(&format!("(fine): {HOSTILE_SHOWN}")),
            "{out}"
        );
        assert!(sessions[2].ends_with("(a\\x0asession    forged)"), "{out}");
        assert!(
            out.contains(&format!("image      {HOSTILE_SHOWN}\n")),
            "{out}"
        );
    }

    #[test]
    fn each_volume_shows_its_use() {
        use crate::terminal::testing::{HOSTILE_SHOWN, assert_inert};
        let out = render(&hostile_status());
        assert_inert(&out);
        let volumes: Vec<&str> = out.lines().filter(|l| l.starts_with("volume ")).collect();
        assert_eq!(
            volumes,
            [
                "volume     devaipod-w1-agent-home 20.3MiB of 10GiB".to_string(),
                format!("volume     devaipod-w1-agent-repo unknown (du failed: {HOSTILE_SHOWN})"),
            ]
        );
        let timed_out = VolumeUse {
            volume: "v".into(),
            bytes: None,
            limit: None,
            note: Some("timed out after 10s".into()),
        };
        assert_eq!(disk_use(&timed_out), "unknown (timed out after 10s)");
        let v = serde_json::to_value(hostile_status()).expect("json");
        assert_eq!(
            v["disk"][0],
            serde_json::json!({"volume": "devaipod-w1-agent-home", "bytes": 21278720, "limit": 10737418240u64})
        );
        assert_eq!(v["disk"][1]["bytes"], serde_json::Value::Null);
        assert_eq!(v["volumes"][1], "devaipod-w1-agent-repo");
    }

    #[test]
    fn json_keeps_the_exact_title() {
        use crate::terminal::testing::HOSTILE;
        let json = serde_json::to_string(&hostile_status()).expect("json");
        assert!(!json.contains('\u{1b}'), "JSON escapes control characters");
        let back: serde_json::Value = serde_json::from_str(&json).expect("parse");
        assert_eq!(back["sessions"][0]["title"], HOSTILE);
        assert_eq!(back["sessions"][1]["message"], HOSTILE);
        assert_eq!(back["image"], HOSTILE);
    }
}
