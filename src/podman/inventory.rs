//! Reading what exists: devaipod workspaces (pods and their containers, by label) in a
//! fixed number of requests, and the details `status` shows.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use super::inspect::EventLine;
use super::{API_PREFIX, Engine, api_error};
use crate::plan::labels;

/// One container of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerRow {
    pub role: String,
    pub name: String,
    pub state: String,
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub image: String,
    /// Unix seconds of the last start (0 if never started).
    #[serde(skip)]
    pub started_at: i64,
}

/// One workspace: its pod and containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WorkspaceRow {
    pub name: String,
    pub pod: String,
    pub status: String,
    pub repo: String,
    pub image: String,
    pub created: String,
    pub containers: Vec<ContainerRow>,
}

impl WorkspaceRow {
    pub(crate) fn container(&self, role: &str) -> Option<&ContainerRow> {
        self.containers.iter().find(|c| c.role == role)
    }

    /// The containers every whole workspace has and this one lacks (an `up` killed or
    /// cut off from Podman midway, or a container removed by hand).
    pub(crate) fn missing(&self) -> Vec<&'static str> {
        ["workspace", "agent"]
            .into_iter()
            .filter(|r| self.container(r).is_none())
            .collect()
    }
}

/// Groups listed pods and containers into workspaces, sorted by name. Pure.
pub(crate) fn group(
    pods: Vec<podman_api::models::ListPodsReport>,
    containers: Vec<podman_api::models::ListContainer>,
) -> Vec<WorkspaceRow> {
    let mut by_name: BTreeMap<String, Vec<ContainerRow>> = BTreeMap::new();
    for c in containers {
        if c.is_infra == Some(true) {
            continue;
        }
        let labels = c.labels.unwrap_or_default();
        let Some(ws) = labels.get(labels::POD) else {
            continue;
        };
        by_name.entry(ws.clone()).or_default().push(ContainerRow {
            role: labels.get(labels::ROLE).cloned().unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .unwrap_or_default(),
            state: c.state.unwrap_or_default(),
            id: c.id.unwrap_or_default(),
            image: c.image.unwrap_or_default(),
            started_at: c.started_at.unwrap_or(0),
        });
    }
    let mut rows: Vec<WorkspaceRow> = pods
        .into_iter()
        .filter_map(|p| {
            let labels = p.labels.unwrap_or_default();
            let name = labels.get(labels::POD)?.clone();
            let mut containers = by_name.remove(&name).unwrap_or_default();
            containers.sort_by_key(|c| role_order(&c.role));
            let image = containers
                .iter()
                .find(|c| c.role == "workspace")
                .or(containers.first())
                .map(|c| c.image.clone())
                .unwrap_or_default();
            Some(WorkspaceRow {
                pod: p.name.unwrap_or_else(|| format!("devaipod-{name}")),
                name,
                status: p.status.unwrap_or_default().to_lowercase(),
                repo: labels.get(labels::REPO).cloned().unwrap_or_default(),
                image,
                created: p.created.map(|t| t.to_rfc3339()).unwrap_or_default(),
                containers,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn role_order(role: &str) -> u8 {
    match role {
        "workspace" => 0,
        "agent" => 1,
        "gator" => 2,
        "proxy" => 3,
        _ => 4,
    }
}

/// One engine event about a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EventRow {
    /// Unix seconds; `--json` shows RFC 3339 in local time.
    #[serde(serialize_with = "crate::terminal::rfc3339")]
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    pub name: String,
}

/// How often a list that met an object removed meanwhile is asked again.
const LIST_TRIES: u32 = 8;

/// Whether a list failed only because an object it was reading was removed meanwhile.
fn removed_mid_list(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("no such pod") || text.contains("no such container")
}

impl Engine {
    /// Workspaces carrying `io.devaipod.pod` (all, or only `name`): two requests in
    /// all, however many pods there are.
    pub(crate) async fn workspaces(&self, name: Option<&str>) -> Result<Vec<WorkspaceRow>> {
        use podman_api::opts::{
            ContainerListFilter, ContainerListOpts, PodListFilter, PodListOpts,
        };
        let (pod_filter, ctr_filter) = match name {
            Some(n) => (
                PodListFilter::LabelKeyVal(labels::POD.into(), n.into()),
                ContainerListFilter::LabelKeyVal(labels::POD.into(), n.into()),
            ),
            None => (
                PodListFilter::LabelKey(labels::POD.into()),
                ContainerListFilter::LabelKey(labels::POD.into()),
            ),
        };
        let pod_opts = PodListOpts::builder().filter([pod_filter]).build();
        let ctr_opts = ContainerListOpts::builder()
            .all(true)
            .filter([ctr_filter])
            .build();
        let pods_api = self.api.pods();
        let containers_api = self.api.containers();
        // Podman 4 fails a whole list when a pod or container it is reading is removed
        // meanwhile (`could not find container .. pod .. no such pod`, HTTP 500): a
        // `delete` elsewhere is not a reason for `list` or `status` to fail, so such a
        // list is asked again (each try is a fresh read of the state).
        let mut tries = 0;
        loop {
            tries += 1;
            match tokio::try_join!(
                async { pods_api.list(&pod_opts).await.map_err(api_error) },
                async { containers_api.list(&ctr_opts).await.map_err(api_error) },
            ) {
                Ok((pods, containers)) => return Ok(group(pods, containers)),
                Err(e) if tries < LIST_TRIES && removed_mid_list(&e) => continue,
                Err(e) => return Err(e.context("listing devaipod pods")),
            }
        }
    }

    /// The workspace `name`, or the error every command gives for a missing one.
    pub(crate) async fn workspace(&self, name: &crate::names::Name) -> Result<WorkspaceRow> {
        match self
            .workspaces(Some(name.as_str()))
            .await?
            .into_iter()
            .next()
        {
            Some(row) => Ok(row),
            None => anyhow::bail!(
                "no workspace {name}: there is no pod {} made by devaipod (see `devaipod list`)",
                name.pod_name()
            ),
        }
    }

    /// Recent events of containers labelled for workspace `name`, oldest first.
    pub(crate) async fn events(
        &self,
        name: &str,
        since_secs: u64,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        let filters = serde_json::json!({ "label": [format!("{}={name}", labels::POD)] });
        let ep = format!(
            "{API_PREFIX}/libpod/events?stream=false&since={}s&filters={}",
            since_secs,
            super::encode(&filters.to_string())
        );
        let text = tokio::time::timeout(super::REQUEST_TIMEOUT, self.raw.get_string(&ep))
            .await
            .map_err(|_| anyhow::anyhow!("Podman did not answer the events request in time"))?
            .map_err(super::conn_error)
            .context("reading events")?;
        let mut rows: Vec<EventRow> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<EventLine>(l).ok())
            .map(|mut e| EventRow {
                time: e.time,
                kind: e.kind,
                action: e.action,
                name: e.actor.attributes.remove("name").unwrap_or_default(),
            })
            .collect();
        let skip = rows.len().saturating_sub(limit);
        rows.drain(..skip);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_list_that_met_a_removal_is_asked_again_and_nothing_else_is() {
        let raced = super::super::client::fault(
            500,
            "could not find container 9d5d pod (id 09c8) in state: no such pod: no such pod".into(),
        );
        assert!(removed_mid_list(&raced));
        assert!(removed_mid_list(&anyhow::anyhow!("no such container 9d5d")));
        for other in ["permission denied", "the podman service stopped answering"] {
            assert!(!removed_mid_list(&anyhow::anyhow!("{other}")), "{other}");
        }
    }

    fn pod(name: &str, status: &str) -> podman_api::models::ListPodsReport {
        serde_json::from_value(serde_json::json!({
            "Name": format!("devaipod-{name}"),
            "Status": status,
            "Labels": {(labels::POD): name, (labels::REPO): "/r"},
        }))
        .expect("pod")
    }

    fn ctr(ws: &str, role: &str, state: &str, infra: bool) -> podman_api::models::ListContainer {
        let labels: HashMap<&str, &str> = [(labels::POD, ws), (labels::ROLE, role)]
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "Names": [format!("devaipod-{ws}-{role}")],
            "State": state,
            "Image": "localhost/img:1",
            "IsInfra": infra,
            "Labels": labels,
            "StartedAt": 7,
            "Id": format!("id-{ws}-{role}"),
        }))
        .expect("container")
    }

    #[test]
    fn groups_containers_under_their_pods() {
        let rows = group(
            vec![pod("b", "Running"), pod("a", "Exited")],
            vec![
                ctr("a", "agent", "exited", false),
                ctr("a", "workspace", "exited", false),
                ctr("b", "pod", "running", true),
                ctr("b", "agent", "running", false),
                ctr("orphan", "agent", "running", false),
            ],
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a");
        assert_eq!(rows[0].status, "exited");
        assert_eq!(rows[0].repo, "/r");
        assert_eq!(rows[0].image, "localhost/img:1");
        let roles: Vec<&str> = rows[0].containers.iter().map(|c| c.role.as_str()).collect();
        assert_eq!(roles, ["workspace", "agent"]);
        assert_eq!(
            rows[1].containers.len(),
            1,
            "infra containers are not listed"
        );
        assert_eq!(rows[1].container("agent").map(|c| c.started_at), Some(7));
    }
}
