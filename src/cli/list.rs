//! `devaipod list [--json]`: every devaipod workspace at a glance, in a fixed number of
//! engine requests (two), whatever the number of pods.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Context;
use crate::names::Name;
use crate::podman::inventory::WorkspaceRow;
use crate::state::StateDir;
use crate::terminal::line;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array on stdout
    #[arg(long)]
    pub json: bool,
}

/// One workspace as `list --json` prints it: the workspace's fields plus `agent_ready`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Entry {
    #[serde(flatten)]
    pub row: WorkspaceRow,
    /// The agent runs and answered since its last start (recorded by `up`/`start`).
    pub agent_ready: bool,
    /// The containers a whole workspace has that this one lacks: a half-made pod (an
    /// `up` killed, or cut off from Podman, midway), which `delete` or `gc` removes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<&'static str>,
}

/// True when the agent container runs and a readiness record matches its current start.
pub(super) fn agent_ready(row: &WorkspaceRow, state: Option<&StateDir>) -> bool {
    let (Some(agent), Some(state)) = (row.container("agent"), state) else {
        return false;
    };
    if agent.state != "running" {
        return false;
    }
    let Ok(name) = Name::new(&row.name) else {
        return false;
    };
    state
        .read_ready(&name)
        .is_some_and(|r| r.container_id == agent.id && r.started_at == agent.started_at)
}

impl Entry {
    pub(super) fn new(row: WorkspaceRow, state: Option<&StateDir>) -> Self {
        let agent_ready = agent_ready(&row, state);
        let missing = row.missing();
        Self {
            row,
            agent_ready,
            missing,
        }
    }
}

pub(super) async fn run(ctx: &Context, args: ListArgs) -> Result<ExitCode> {
    let engine = ctx.engine().await?;
    let rows = engine.workspaces(None).await?;
    let state = StateDir::from_env();
    let entries: Vec<Entry> = rows
        .into_iter()
        .map(|r| Entry::new(r, state.as_ref()))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print!("{}", render_table(&entries));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human table.
pub(super) fn render_table(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "no devaipod workspaces (create one with `devaipod up PATH`)\n".into();
    }
    let header = ["NAME", "STATUS", "AGENT", "CREATED", "REPO"];
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            let e = &entry.row;
            let agent = match (entry.agent_ready, e.container("agent")) {
                (true, _) => "ready".to_string(),
                (false, Some(c)) => c.state.clone(),
                (false, None) => "missing".to_string(),
            };
            let created = e.created.get(..16).unwrap_or(&e.created).replace('T', " ");
            let status = if entry.missing.is_empty() {
                e.status.clone()
            } else {
                format!("{} (partial: no {})", e.status, entry.missing.join(", no "))
            };
            // Labels and states are read from the engine: shown, never sent to the
            // terminal as control sequences.
            [&e.name, &status, &agent, &created, &e.repo].map(|c| line(c).into_owned())
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    push(header);
    for r in &rows {
        push([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::inventory::ContainerRow;
    use crate::state::ReadyRecord;

    fn row(agent_state: &str, started_at: i64) -> WorkspaceRow {
        WorkspaceRow {
            name: "w1".into(),
            pod: "devaipod-w1".into(),
            status: "running".into(),
            repo: "/src/w1".into(),
            image: "img".into(),
            created: "2026-11-26T18:00:00+00:00".into(),
            containers: vec![
                ContainerRow {
                    role: "agent".into(),
                    name: "devaipod-w1-agent".into(),
                    state: agent_state.into(),
                    id: "cid".into(),
                    image: "img".into(),
                    started_at,
                },
                ContainerRow {
                    role: "workspace".into(),
                    name: "devaipod-w1-workspace".into(),
                    state: "running".into(),
                    id: "wid".into(),
                    image: "img".into(),
                    started_at,
                },
            ],
        }
    }

    #[test]
    fn a_half_made_pod_is_marked_partial() {
        let mut r = row("running", 1);
        r.containers.retain(|c| c.role == "workspace");
        let e = Entry::new(r, None);
        assert_eq!(e.missing, ["agent"]);
        let t = render_table(std::slice::from_ref(&e));
        assert!(t.contains("running (partial: no agent)"), "{t}");
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["missing"], serde_json::json!(["agent"]));
        let whole = serde_json::to_value(Entry::new(row("running", 1), None)).expect("json");
        assert!(whole.get("missing").is_none(), "{whole}");
    }

    #[test]
    fn agent_ready_needs_a_matching_record_and_a_running_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::at(dir.path());
        assert!(!agent_ready(&row("running", 5), Some(&state)));
        let name = Name::new("w1").expect("name");
        let rec = ReadyRecord {
            container_id: "cid".into(),
            started_at: 5,
        };
        state.record_ready(&name, &rec).expect("record");
        assert!(agent_ready(&row("running", 5), Some(&state)));
        assert!(
            !agent_ready(&row("running", 6), Some(&state)),
            "restarted since"
        );
        assert!(!agent_ready(&row("exited", 5), Some(&state)));
        assert!(!agent_ready(&row("running", 5), None));
    }

    #[test]
    fn table_lines_up() {
        let entries = vec![Entry::new(row("running", 1), None)];
        let t = render_table(&entries);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("NAME  STATUS   AGENT    CREATED"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("w1    running  running  2026-11-26 18:00"),
            "{t}"
        );
        assert_eq!(render_table(&[]).lines().count(), 1);
    }

    #[test]
    fn the_table_shows_control_characters_escaped() {
        use crate::terminal::testing::{HOSTILE, assert_inert};
        let mut r = row(HOSTILE, 1);
        r.repo = format!("/src/{HOSTILE}");
        r.status = HOSTILE.into();
        let t = render_table(&[Entry::new(r, None)]);
        assert_inert(&t);
        assert_eq!(t.lines().count(), 2, "{t}");
    }
}
