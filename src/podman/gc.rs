//! What `devaipod gc` reads of the engine: every object devaipod labelled (pods with
//! their containers, stray containers, volumes, secrets where Podman keeps labels), its
//! shared volumes no container uses, and the images it built with how many containers
//! use them. Read by label and by devaipod's own image names, never by guessing.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::inspect::SecretEntry;
use super::inventory::WorkspaceRow;
use super::{Engine, encode};
use crate::plan::labels;

/// A labelled container (not a pod's infra container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelledContainer {
    pub name: String,
    /// Its `io.devaipod.pod`.
    pub workspace: String,
}

/// A labelled volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelledVolume {
    pub name: String,
    /// Its `io.devaipod.pod`.
    pub workspace: String,
}

/// An image in the store: its id, names and how many containers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRow {
    pub id: String,
    pub names: Vec<String>,
    pub containers: u64,
}

/// Everything `gc` decides from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GcInventory {
    pub workspaces: Vec<WorkspaceRow>,
    pub containers: Vec<LabelledContainer>,
    pub volumes: Vec<LabelledVolume>,
    /// Secrets with an `io.devaipod.pod` label (Podman 5: 4.3 keeps none), by workspace.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// Shared volumes (`io.devaipod.shared`) that no container mounts.
    pub unused_shared: Vec<String>,
    pub images: Vec<ImageRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerEntry {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    is_infra: bool,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeEntry {
    name: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageEntry {
    id: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    containers: u64,
}

/// The `filters` query of a list request.
fn filters(f: serde_json::Value) -> String {
    format!("filters={}", encode(&f.to_string()))
}

impl Engine {
    /// Reads what `gc` needs: a handful of list requests however many objects there are.
    pub(crate) async fn gc_inventory(&self) -> Result<GcInventory> {
        let workspaces = self.workspaces(None).await?;
        let containers: Vec<ContainerEntry> = self
            .get_json(&format!(
                "/libpod/containers/json?all=true&{}",
                filters(serde_json::json!({"label": [labels::POD]}))
            ))
            .await
            .context("listing devaipod's containers")?;
        let volumes: Vec<VolumeEntry> = self
            .get_json(&format!(
                "/libpod/volumes/json?{}",
                filters(serde_json::json!({"label": [labels::POD]}))
            ))
            .await
            .context("listing devaipod's volumes")?;
        let shared_label = format!("{}shared", labels::PREFIX);
        let unused_shared: Vec<VolumeEntry> = self
            .get_json(&format!(
                "/libpod/volumes/json?{}",
                filters(serde_json::json!({"label": [shared_label], "dangling": ["true"]}))
            ))
            .await
            .context("listing devaipod's shared volumes")?;
        let secrets: Vec<SecretEntry> = self
            .get_json("/libpod/secrets/json")
            .await
            .context("listing secrets")?;
        let images: Vec<ImageEntry> = self
            .get_json("/libpod/images/json")
            .await
            .context("listing images")?;
        let pod_of = |l: &Option<BTreeMap<String, String>>| {
            l.as_ref().and_then(|l| l.get(labels::POD)).cloned()
        };
        let mut by_workspace: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in secrets {
            if let Some(w) = s.spec.labels.get(labels::POD) {
                by_workspace.entry(w.clone()).or_default().push(s.spec.name);
            }
        }
        Ok(GcInventory {
            workspaces,
            containers: containers
                .into_iter()
                .filter(|c| !c.is_infra)
                .filter_map(|c| {
                    Some(LabelledContainer {
                        workspace: pod_of(&c.labels)?,
                        name: c.names.into_iter().next()?,
                    })
                })
                .collect(),
            volumes: volumes
                .into_iter()
                .filter_map(|v| {
                    Some(LabelledVolume {
                        workspace: pod_of(&v.labels)?,
                        name: v.name,
                    })
                })
                .collect(),
            secrets: by_workspace,
            unused_shared: unused_shared.into_iter().map(|v| v.name).collect(),
            images: images
                .into_iter()
                .map(|i| ImageRow {
                    id: i.id,
                    names: i.names.unwrap_or_default(),
                    containers: i.containers,
                })
                .collect(),
        })
    }

    /// Removes an image by id, without force: one a container took meanwhile stays.
    /// `Ok(false)` when it is gone already.
    pub(crate) async fn remove_image_unforced(&self, id: &str) -> Result<bool> {
        self.delete_if_present(&format!("/libpod/images/{}", encode(id)), || {
            format!("removing image {id}")
        })
        .await
    }

    /// Removes a volume without force: one a container took meanwhile stays.
    pub(crate) async fn remove_volume_unforced(&self, name: &str) -> Result<bool> {
        self.delete_if_present(&format!("/libpod/volumes/{}", encode(name)), || {
            format!("removing volume {name}")
        })
        .await
    }
}
