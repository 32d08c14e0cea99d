//! Objects found by label: listing pods, containers and volumes labelled for a
//! workspace, and removing them (missing is fine), which is how `delete` and rollback
//! work: from labels, never by name guessing.

use anyhow::{Context, Result};

use super::{Engine, api_error, encode};
use crate::plan::labels;

impl Engine {
    /// Names of pods carrying `label=value`.
    pub(crate) async fn pods_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let opts = podman_api::opts::PodListOpts::builder()
            .filter([podman_api::opts::PodListFilter::LabelKeyVal(
                label.into(),
                value.into(),
            )])
            .build();
        let pods = self.api.pods().list(&opts).await.map_err(api_error)?;
        Ok(pods.into_iter().filter_map(|p| p.name).collect())
    }

    /// Names of containers (any state) carrying `label=value`.
    /// (A pod's infra container inherits the pod's labels; it is not listed: it goes
    /// with its pod.)
    pub(crate) async fn containers_with_label(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<String>> {
        let opts = podman_api::opts::ContainerListOpts::builder()
            .all(true)
            .filter([podman_api::opts::ContainerListFilter::LabelKeyVal(
                label.into(),
                value.into(),
            )])
            .build();
        let list = self.api.containers().list(&opts).await.map_err(api_error)?;
        Ok(list
            .into_iter()
            .filter(|c| c.is_infra != Some(true))
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .collect())
    }

    /// Names of volumes carrying `label=value`.
    pub(crate) async fn volumes_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let opts = podman_api::opts::VolumeListOpts::builder()
            .filter([podman_api::opts::VolumeListFilter::LabelKeyVal(
                label.into(),
                value.into(),
            )])
            .build();
        let list = self.api.volumes().list(&opts).await.map_err(api_error)?;
        Ok(list.into_iter().map(|v| v.name).collect())
    }

    /// Kills (SIGKILL) and force-removes a pod with its containers. Missing is fine.
    pub(crate) async fn remove_pod(&self, name: &str) -> Result<()> {
        // Killing first makes removal immediate: a forced remove would otherwise give
        // every container its stop timeout.
        let _ = self
            .post(
                &format!("/libpod/pods/{}/kill?signal=KILL", encode(name)),
                &(),
            )
            .await;
        self.delete_if_present(&format!("/libpod/pods/{}?force=true", encode(name)), || {
            format!("removing pod {name}")
        })
        .await
        .map(drop)
    }

    /// Force-removes a container (and its anonymous volumes). Missing is fine.
    pub(crate) async fn remove_container(&self, name: &str) -> Result<()> {
        self.delete_if_present(
            &format!(
                "/libpod/containers/{}?force=true&v=true&timeout=0",
                encode(name)
            ),
            || format!("removing container {name}"),
        )
        .await
        .map(drop)
    }

    /// Removes a volume. Missing is fine.
    pub(crate) async fn remove_volume(&self, name: &str) -> Result<()> {
        self.delete_if_present(
            &format!("/libpod/volumes/{}?force=true", encode(name)),
            || format!("removing volume {name}"),
        )
        .await
        .map(drop)
    }

    /// Names of secrets carrying `label=value` (Podman 5; always empty on 4.3, whose
    /// secrets keep no labels). The secrets API filters by name and id only, so the
    /// labels are read from the list.
    pub(crate) async fn secrets_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let list: Vec<super::inspect::SecretEntry> = self
            .get_json("/libpod/secrets/json")
            .await
            .context("listing secrets")?;
        Ok(labelled_secrets(list, label, value))
    }

    /// Removes every object labelled for workspace `name`: pods (with their
    /// containers), stray containers, then volumes, then its secrets (those the pod
    /// lists, those labelled, and `known` ones: recorded by `up`). Returns what was
    /// removed.
    pub(crate) async fn remove_labelled(&self, name: &str, known: &[String]) -> Result<Removed> {
        let pods = self.pods_with_label(labels::POD, name).await?;
        let containers = self.containers_with_label(labels::POD, name).await?;
        // Secrets carry no labels on Podman 4.3's API: the pod lists them, and the
        // password's name is known. Podman 5 keeps their labels, so those of a workspace
        // whose pod never came to be (an `up` killed at the wrong moment) are found too,
        // after the others (the order `delete --json` reports stays the same).
        let mut secrets: Vec<String> = Vec::new();
        for p in &pods {
            let inspect = self.inspect_pod(p).await?;
            if let Some(list) = inspect.label(labels::SECRETS) {
                secrets.extend(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
        }
        if let Ok(n) = crate::names::Name::new(name) {
            secrets.push(crate::plan::password_secret_name(&n));
        }
        secrets.extend(self.secrets_with_label(labels::POD, name).await?);
        secrets.extend(known.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        secrets.retain(|s| seen.insert(s.clone()));
        futures_util::future::try_join_all(pods.iter().map(|p| self.remove_pod(p))).await?;
        // Containers of the removed pods are gone already (404 is fine); this catches strays.
        futures_util::future::try_join_all(containers.iter().map(|c| self.remove_container(c)))
            .await?;
        let volumes = self.volumes_with_label(labels::POD, name).await?;
        futures_util::future::try_join_all(volumes.iter().map(|v| self.remove_volume(v))).await?;
        let mut removed_secrets = Vec::new();
        for s in secrets {
            if self.remove_secret(&s).await? {
                removed_secrets.push(s);
            }
        }
        Ok(Removed {
            pods,
            containers,
            volumes,
            secrets: removed_secrets,
        })
    }
}

/// The names of the secrets in `list` that carry `label=value`.
fn labelled_secrets(
    list: Vec<super::inspect::SecretEntry>,
    label: &str,
    value: &str,
) -> Vec<String> {
    list.into_iter()
        .filter(|s| s.spec.labels.get(label).map(String::as_str) == Some(value))
        .map(|s| s.spec.name)
        .collect()
}

/// What [`Engine::remove_labelled`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Removed {
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
}

impl Removed {
    pub(crate) fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.containers.is_empty()
            && self.volumes.is_empty()
            && self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_by_their_labels_where_the_engine_keeps_them() {
        // Podman 5.4's list (labels kept) beside 4.3's (no Labels, or null).
        let list: Vec<super::super::inspect::SecretEntry> = serde_json::from_str(
            r#"[
              {"ID": "a", "Spec": {"Name": "devaipod-x-agent-password", "Labels": {"io.devaipod.pod": "x"}}},
              {"ID": "b", "Spec": {"Name": "devaipod-xy-agent-password", "Labels": {"io.devaipod.pod": "xy"}}},
              {"ID": "c", "Spec": {"Name": "mine", "Labels": null}},
              {"ID": "d", "Spec": {"Name": "devaipod-x-old"}}
            ]"#,
        )
        .expect("list");
        assert_eq!(
            labelled_secrets(list, labels::POD, "x"),
            ["devaipod-x-agent-password"]
        );
    }
}
