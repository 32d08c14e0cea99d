//! Creating, inspecting, starting and stopping single objects by name: pods,
//! containers, volumes and secrets.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use containers_api::conn::{self, Payload};

use super::inspect::{ContainerInspect, PodInspect};
use super::spec::{PodSpecGenerator, SpecGenerator};
use super::{API_PREFIX, Engine, REQUEST_TIMEOUT, api_error, conn_error, encode};
use super::{is_not_found, is_not_modified};

/// `POST /libpod/volumes/create`.
#[derive(Debug, serde::Serialize)]
struct VolumeCreate<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    /// libpod 4.x reads `Label`, newer versions `Labels`: send both.
    #[serde(rename = "Label")]
    label: &'a BTreeMap<String, String>,
    #[serde(rename = "Labels")]
    labels: &'a BTreeMap<String, String>,
    /// The local driver's options: `o=size=BYTES` holds the volume to a size (an XFS
    /// project quota; the plan asks for one only where the storage enforces it).
    #[serde(rename = "Options", skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<&'static str, String>,
}

impl<'a> VolumeCreate<'a> {
    fn new(name: &'a str, labels: &'a BTreeMap<String, String>, size: Option<u64>) -> Self {
        VolumeCreate {
            name,
            label: labels,
            labels,
            options: size
                .map(|b| ("o", format!("size={b}")))
                .into_iter()
                .collect(),
        }
    }
}

impl Engine {
    /// Whether a pod with this name exists.
    pub(crate) async fn pod_exists(&self, name: &str) -> Result<bool> {
        self.api
            .pods()
            .get(name)
            .exists()
            .await
            .map_err(api_error)
            .with_context(|| format!("checking whether pod {name} exists"))
    }

    /// Creates a pod; returns its id.
    pub(crate) async fn create_pod(&self, spec: &PodSpecGenerator) -> Result<String> {
        self.post_create("/libpod/pods/create", spec).await
    }

    /// Creates a named volume with labels.
    pub(crate) async fn create_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let body = VolumeCreate::new(name, labels, None);
        self.post("/libpod/volumes/create", &body).await?;
        Ok(())
    }

    /// Creates a planned volume: its labels, and the size the plan holds it to.
    pub(crate) async fn create_planned_volume(
        &self,
        v: &crate::plan::spec::VolumeSpec,
    ) -> Result<()> {
        let body = VolumeCreate::new(&v.name, &v.labels, v.size_limit);
        self.post("/libpod/volumes/create", &body)
            .await
            .with_context(|| format!("creating volume {}", v.name))?;
        Ok(())
    }

    /// Creates a container; returns its id.
    pub(crate) async fn create_container(&self, spec: &SpecGenerator) -> Result<String> {
        self.post_create("/libpod/containers/create", spec).await
    }

    /// Stores a secret in Podman's secret store (file driver). The value travels only in
    /// the request body.
    pub(crate) async fn create_secret(
        &self,
        name: &str,
        value: &crate::secret::SecretValue,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let labels = serde_json::to_string(labels)?;
        let ep = format!(
            "{API_PREFIX}/libpod/secrets/create?name={}&labels={}",
            encode(name),
            encode(&labels)
        );
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raw.post_string(
                &ep,
                Payload::Text(value.expose().to_string()),
                None::<conn::Headers>,
            ),
        )
        .await
        .map_err(|_| anyhow!("Podman did not answer in time while creating secret {name}"))?
        .map_err(conn_error)
        .with_context(|| format!("creating secret {name}"))?;
        Ok(())
    }

    /// Whether a secret with this name exists.
    pub(crate) async fn secret_exists(&self, name: &str) -> Result<bool> {
        let ep = format!("/libpod/secrets/{}/json", encode(name));
        match self.get_json::<serde::de::IgnoredAny>(&ep).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.context(format!("inspecting secret {name}"))),
        }
    }

    /// Removes a secret. Missing is fine; `Ok(true)` if it existed.
    pub(crate) async fn remove_secret(&self, name: &str) -> Result<bool> {
        self.delete_if_present(&format!("/libpod/secrets/{}", encode(name)), || {
            format!("removing secret {name}")
        })
        .await
    }

    /// A container's inspect.
    pub(crate) async fn inspect_container(&self, name: &str) -> Result<ContainerInspect> {
        self.get_json(&format!("/libpod/containers/{}/json", encode(name)))
            .await
            .with_context(|| format!("inspecting container {name}"))
    }

    /// A container's inspect as Podman sent it, for [`super::verify`] to read (so that
    /// an answer it cannot read fails the hardening check that needed it).
    pub(crate) async fn inspect_container_text(&self, name: &str) -> Result<String> {
        let ep = format!("{API_PREFIX}/libpod/containers/{}/json", encode(name));
        tokio::time::timeout(REQUEST_TIMEOUT, self.raw.get_string(&ep))
            .await
            .map_err(|_| anyhow!("Podman did not answer the inspect of {name} in time"))?
            .map_err(conn_error)
            .with_context(|| format!("inspecting container {name}"))
    }

    /// A pod's inspect.
    pub(crate) async fn inspect_pod(&self, name: &str) -> Result<PodInspect> {
        self.get_json(&format!("/libpod/pods/{}/json", encode(name)))
            .await
            .with_context(|| format!("inspecting pod {name}"))
    }

    /// Starts a pod (a pod that is already running is fine).
    pub(crate) async fn start_pod(&self, name: &str) -> Result<()> {
        match self
            .post(&format!("/libpod/pods/{}/start", encode(name)), &())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(e.context(format!("starting pod {name}"))),
        }
    }

    /// Stops a pod; an already stopped pod is fine.
    pub(crate) async fn stop_pod(&self, name: &str) -> Result<()> {
        match self
            .post(&format!("/libpod/pods/{}/stop?t=10", encode(name)), &())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(e.context(format!("stopping pod {name}"))),
        }
    }

    /// Starts a created container.
    pub(crate) async fn start_container(&self, name: &str) -> Result<()> {
        self.post(&format!("/libpod/containers/{}/start", encode(name)), &())
            .await
            .with_context(|| format!("starting container {name}"))?;
        Ok(())
    }

    /// Waits until a container has exited; its exit code (-1 when Podman's answer is
    /// not a number). `exited` rather than `stopped`, the later of the two states.
    pub(crate) async fn wait_stopped(&self, name: &str) -> Result<i64> {
        let text = self
            .post(
                &format!("/libpod/containers/{}/wait?condition=exited", encode(name)),
                &(),
            )
            .await
            .with_context(|| format!("waiting for container {name}"))?;
        Ok(text.trim().trim_matches('"').trim().parse().unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request libpod reads (`entities.VolumeCreateOptions`): a size only in
    /// `Options.o`, as `podman volume create --opt o=size=BYTES` sends it.
    #[test]
    fn a_volume_asks_for_a_size_only_when_planned_with_one() {
        let labels = BTreeMap::from([("io.devaipod.pod".to_string(), "demo".to_string())]);
        let plain = serde_json::to_value(VolumeCreate::new("v", &labels, None)).expect("json");
        assert_eq!(
            plain,
            serde_json::json!({"Name": "v", "Label": {"io.devaipod.pod": "demo"}, "Labels": {"io.devaipod.pod": "demo"}})
        );
        let sized =
            serde_json::to_value(VolumeCreate::new("v", &labels, Some(10 << 30))).expect("json");
        assert_eq!(
            sized["Options"],
            serde_json::json!({"o": "size=10737418240"})
        );
        assert_eq!(sized["Labels"], plain["Labels"]);
    }
}
