//! Talking to a pod's agent (opencode's HTTP API): handing over tasks and reading its
//! sessions. Requests go through [`crate::podman::agent_http::agent_request`], inside the
//! pod's network namespace; the server password is read from the workspace's secret
//! file and never leaves devaipod's memory except on the helper's stdin.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::plan::{self, labels};
use crate::podman::{Engine, agent_http, encode};
use crate::secret::SecretValue;

/// One opencode session as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SessionRow {
    pub id: String,
    pub title: String,
    /// `busy`, `idle` or `retry` (opencode is retrying a failed LLM request).
    pub state: String,
    /// When it last changed (unix milliseconds).
    pub updated: i64,
    /// The error of a retrying session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A running pod's agent.
#[derive(Debug)]
pub(crate) struct Agent<'a> {
    engine: &'a Engine,
    pod: String,
    /// The agent's working folder: opencode's `directory` for every call.
    directory: String,
    password: SecretValue,
}

/// The session title for a task: its first line, shortened.
pub(crate) fn title_for(task: &str) -> String {
    let first = task
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("task");
    let mut t: String = first.trim().chars().take(60).collect();
    if first.trim().chars().count() > 60 {
        t.push('…');
    }
    format!("devaipod: {t}")
}

/// Reads opencode's session list and status map into rows, newest first.
pub(crate) fn session_rows(sessions: &Value, status: &Value) -> Vec<SessionRow> {
    let mut rows: Vec<SessionRow> = sessions
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let id = s["id"].as_str()?.to_string();
            let st = &status[&id];
            Some(SessionRow {
                title: s["title"].as_str().unwrap_or_default().to_string(),
                // The status map lists only busy and retrying sessions.
                state: st["type"].as_str().unwrap_or("idle").to_string(),
                updated: s["time"]["updated"].as_i64().unwrap_or_default(),
                message: st["message"].as_str().map(str::to_string),
                id,
            })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.updated));
    rows
}

impl<'a> Agent<'a> {
    /// The agent of running workspace `name` (with the pod's labels already read).
    pub(crate) async fn open(engine: &'a Engine, name: &crate::names::Name) -> Result<Agent<'a>> {
        let pod = name.pod_name();
        let inspect = engine.inspect_pod(&pod).await?;
        let directory = inspect
            .label(labels::WORKDIR)
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "pod {pod} has no {} label: it was made by an older devaipod; recreate it",
                    labels::WORKDIR
                )
            })?;
        let workspace = format!("{pod}-workspace");
        let state = engine.inspect_container(&workspace).await?;
        if !state.state.running {
            bail!("workspace {name} is not running: start it with `devaipod start {name}`");
        }
        let password = read_password(engine, &workspace).await?;
        Ok(Self {
            engine,
            pod,
            directory,
            password,
        })
    }

    /// An agent whose password the caller already has (`up`).
    pub(crate) fn with_password(
        engine: &'a Engine,
        pod: &str,
        directory: &str,
        password: SecretValue,
    ) -> Agent<'a> {
        Self {
            engine,
            pod: pod.to_string(),
            directory: directory.to_string(),
            password,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}directory={}", encode(&self.directory));
        let r =
            agent_http::agent_request(self.engine, &self.pod, method, &path, body, &self.password)
                .await?;
        if !(200..300).contains(&r.status) {
            bail!(
                "the agent answered {method} {path} with HTTP {}: {}",
                r.status,
                r.body
            );
        }
        Ok(r.body)
    }

    /// Creates a session titled after `task` and hands the task to it without waiting
    /// (`prompt_async`). The text is sent as data: no shell ever sees it.
    pub(crate) async fn hand_over(&self, task: &str, session: Option<&str>) -> Result<String> {
        let id = match session {
            Some(id) => id.to_string(),
            None => {
                let s = self
                    .call(
                        "POST",
                        "/session",
                        Some(json!({ "title": title_for(task) })),
                    )
                    .await
                    .context("creating an opencode session")?;
                s["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("opencode created a session without an id: {s}"))?
                    .to_string()
            }
        };
        self.call(
            "POST",
            &format!("/session/{}/prompt_async", encode(&id)),
            Some(json!({ "parts": [{ "type": "text", "text": task }] })),
        )
        .await
        .with_context(|| format!("sending the task to session {id}"))?;
        Ok(id)
    }

    /// The agent's sessions, newest first.
    pub(crate) async fn sessions(&self) -> Result<Vec<SessionRow>> {
        let (sessions, status) = tokio::try_join!(
            self.call("GET", "/session", None),
            self.call("GET", "/session/status", None),
        )?;
        Ok(session_rows(&sessions, &status))
    }
}

/// The server password, read from the workspace's secret file through the archive
/// API (no exec session: on Podman 4.3 one makes removing the pod seconds slower).
async fn read_password(engine: &Engine, workspace: &str) -> Result<SecretValue> {
    let value = engine
        .read_file(workspace, plan::PASSWORD_FILE)
        .await?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    if value.is_empty() {
        bail!(
            "could not read the agent's password from {} in {workspace}",
            plan::PASSWORD_FILE
        );
    }
    Ok(SecretValue::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_the_first_line_shortened() {
        assert_eq!(title_for("\n  fix the bug\nmore"), "devaipod: fix the bug");
        let long = "x".repeat(100);
        assert_eq!(title_for(&long).chars().count(), "devaipod: ".len() + 61);
    }

    #[test]
    fn sessions_are_idle_unless_the_status_map_says_otherwise() {
        let sessions = json!([
            {"id": "ses_a", "title": "a", "time": {"updated": 5}},
            {"id": "ses_b", "title": "b", "time": {"updated": 9}},
            {"id": "ses_c", "title": "c", "time": {"updated": 7}}
        ]);
        let status =
            json!({"ses_b": {"type": "busy"}, "ses_c": {"type": "retry", "message": "429"}});
        let rows = session_rows(&sessions, &status);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            got,
            [("ses_b", "busy"), ("ses_c", "retry"), ("ses_a", "idle")]
        );
        assert_eq!(rows[1].message.as_deref(), Some("429"));
    }
}
