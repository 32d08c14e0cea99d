//! Local images: presence (devaipod never pulls), the facts the plan needs (command,
//! PATH, labels) and building a Dockerfile configuration's image.

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::{self, Payload, hyper};
use futures_util::StreamExt;

use super::inspect::ImageInspect;
use super::{API_PREFIX, Engine, conn_error, encode, is_not_found};

/// One line of libpod's build output.
#[derive(Debug, serde::Deserialize)]
struct BuildLine {
    stream: Option<String>,
    error: Option<String>,
    aux: Option<BuildAux>,
}

/// `aux` of a build line: the built image's id.
#[derive(Debug, serde::Deserialize)]
struct BuildAux {
    #[serde(rename = "ID")]
    id: Option<String>,
}

impl Engine {
    /// A local image's inspect, `None` if the image is not in the local store.
    pub(crate) async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInspect>> {
        let ep = format!("/libpod/images/{}/json", encode(reference));
        match self.get_json(&ep).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.context(format!("inspecting image {reference}"))),
        }
    }

    /// Imports `layer` (a tar of the image's whole filesystem) as the image `reference`
    /// with `changes` (Containerfile instructions such as `LABEL k=v`): the network
    /// guard's scratch image, made without a build or a pull. Returns the image id.
    pub(crate) async fn import_image(
        &self,
        reference: &str,
        layer: Vec<u8>,
        changes: &[String],
    ) -> Result<String> {
        let mut query = vec![format!("reference={}", encode(reference))];
        query.extend(changes.iter().map(|c| format!("changes={}", encode(c))));
        let ep = format!("{API_PREFIX}/libpod/images/import?{}", query.join("&"));
        let text = tokio::time::timeout(
            super::client::REQUEST_TIMEOUT,
            self.raw.post_string(
                &ep,
                Payload::XTar(hyper::Body::from(layer)),
                None::<conn::Headers>,
            ),
        )
        .await
        .map_err(|_| anyhow!("Podman did not finish importing {reference} in time"))?
        .map_err(conn_error)
        .with_context(|| format!("importing the image {reference}"))?;
        #[derive(serde::Deserialize)]
        struct Imported {
            #[serde(rename = "Id", default)]
            id: String,
        }
        let id = serde_json::from_str::<Imported>(&text)
            .map(|i| i.id)
            .unwrap_or_default();
        match id.is_empty() {
            false => Ok(id),
            true => self
                .image_id(reference)
                .await?
                .ok_or_else(|| anyhow!("importing {reference} ended without an image: {text}")),
        }
    }

    /// Image id if the image is in the local store, `None` if not (devaipod never pulls).
    pub(crate) async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.inspect_image(reference).await?.map(|i| i.id))
    }

    /// Builds a Dockerfile configuration's image from its packed context, passing each
    /// line of the build's output to `on_line`. Returns the image id.
    pub(crate) async fn build_image(
        &self,
        build: &crate::build::Prepared,
        labels: &std::collections::BTreeMap<String, String>,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String> {
        let b = &build.plan;
        let mut query = vec![
            format!("dockerfile={}", encode(&build.dockerfile_in_context)),
            format!("t={}", encode(&b.tag)),
            format!("buildargs={}", encode(&serde_json::to_string(&b.args)?)),
            format!("labels={}", encode(&serde_json::to_string(labels)?)),
            "rm=true".into(),
            "forcerm=true".into(),
            "layers=true".into(),
            format!("nocache={}", b.no_cache || b.rebuild),
        ];
        if let Some(t) = &b.target {
            query.push(format!("target={}", encode(t)));
        }
        if let Some(n) = &b.network {
            query.push(format!("networkmode={}", encode(n)));
        }
        let ep = format!("{API_PREFIX}/libpod/build?{}", query.join("&"));
        let mut stream = Box::pin(self.raw.post_stream(
            &ep,
            Payload::Tar(build.tar.clone()),
            None::<conn::Headers>,
        ));
        let mut pending = String::new();
        let mut id = None;
        let mut error = None;
        let mut tail: Vec<String> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(conn_error)
                .with_context(|| format!("building {}", b.tag))?;
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let Ok(v) = serde_json::from_str::<BuildLine>(line.trim()) else {
                    continue;
                };
                if let Some(text) = &v.stream {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        on_line(l);
                        tail.push(l.to_string());
                        if tail.len() > 20 {
                            tail.remove(0);
                        }
                    }
                }
                if let Some(e) = v.error {
                    error = Some(e);
                }
                if let Some(i) = v.aux.and_then(|a| a.id) {
                    id = Some(i);
                }
            }
        }
        if let Some(e) = error {
            let tail = tail.join("\n");
            let hint = super::client::hint_for(&format!("{e}\n{tail}"))
                .map(|h| format!("\nhint: {h}"))
                .unwrap_or_default();
            bail!(
                "building the image from {} failed: {}\nlast output:\n{tail}{hint}",
                b.dockerfile.display(),
                e.trim(),
            );
        }
        match id {
            Some(id) => Ok(id),
            None => self.image_id(&b.tag).await?.ok_or_else(|| {
                anyhow!(
                    "building the image from {} ended without an image; last output:\n{}",
                    b.dockerfile.display(),
                    tail.join("\n")
                )
            }),
        }
    }

    /// A local image's ENTRYPOINT followed by its CMD, and its PATH; `None` if the
    /// image is absent.
    pub(crate) async fn image_command(
        &self,
        reference: &str,
    ) -> Result<Option<(Vec<String>, Option<String>)>> {
        Ok(self.inspect_image(reference).await?.map(|i| {
            let path = i
                .config
                .env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .map(str::to_string);
            let mut cmd = i.config.entrypoint;
            cmd.extend(i.config.cmd);
            (cmd, path)
        }))
    }

    /// The labels of a local image, `None` if the image is not present.
    pub(crate) async fn image_labels(
        &self,
        reference: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        Ok(self.inspect_image(reference).await?.map(|i| i.labels))
    }
}
