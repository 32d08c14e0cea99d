//! Images: presence, pulls (through the engine, with the user's registries.conf and
//! auth.json), the facts the plan needs (command, PATH, labels) and building a
//! Dockerfile configuration's image.

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::{self, Payload, hyper};
use futures_util::StreamExt;

use super::inspect::ImageInspect;
use super::{API_PREFIX, Engine, conn_error, encode, is_not_found};

/// When `up` pulls an image: `--pull never|missing|always`, as `podman --pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Never: a missing image is an error.
    Never,
    /// When the image is not in the local store.
    #[default]
    Missing,
    /// Every time (a newer image under the same name is taken).
    Always,
}

impl PullPolicy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Missing => "missing",
            Self::Always => "always",
        }
    }
}

/// One line of libpod's pull output.
#[derive(Debug, serde::Deserialize)]
struct PullLine {
    stream: Option<String>,
    error: Option<String>,
    id: Option<String>,
}

/// A failed pull as the user needs it: the image, the registry, the cause and what to
/// do. `message` is the engine's (it never holds a credential).
pub(crate) fn pull_error(reference: &str, message: &str) -> anyhow::Error {
    let registry = super::auth::registry_of(reference)
        .map(|r| format!("the registry {r}"))
        .unwrap_or_else(|| "the search registries of registries.conf".into());
    let reg = super::auth::registry_of(reference).unwrap_or("REGISTRY");
    let m = message.to_ascii_lowercase();
    let shown = crate::terminal::line(message.trim()).into_owned();
    let advice = if m.contains("blocked") {
        format!(
            "{reference} is blocked by registries.conf (a [[registry]] with blocked = true matches it, in registries.conf or a drop-in under registries.conf.d): name another image, or change that configuration"
        )
    } else if m.contains("short-name") || m.contains("short name") {
        format!(
            "{reference} is a short name and registries.conf's short-name-mode needs a choice devaipod cannot ask for: write the fully qualified name (e.g. docker.io/library/{reference}), or add an alias in registries.conf.d"
        )
    } else if m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("401")
        || m.contains("denied")
    {
        format!(
            "{registry} refused the credentials for {reference} (unauthorized): log in with `podman login {reg}` (devaipod reads the same auth.json as Podman: REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json)"
        )
    } else if m.contains("manifest unknown")
        || m.contains("not found")
        || m.contains("name unknown")
        || m.contains("404")
    {
        format!("{reference} was not found in {registry}: check the image's name and tag")
    } else if m.contains("http response to https client") {
        format!(
            "{registry} speaks plain HTTP: if that is intended, mark it `insecure = true` in a registries.conf drop-in"
        )
    } else if m.contains("x509") || m.contains("certificate") {
        format!(
            "{registry}'s TLS certificate is not trusted: put its CA in /etc/containers/certs.d/{reg}/ca.crt (rootless: ~/.config/containers/certs.d/{reg}/ca.crt)"
        )
    } else if m.contains("connection refused")
        || m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("network is unreachable")
        || m.contains("dial tcp")
        || m.contains("timeout")
    {
        format!(
            "{registry} cannot be reached for {reference}: check the network (or a mirror in registries.conf), then retry; `--pull never` uses only local images"
        )
    } else {
        format!("pulling {reference} from {registry} failed")
    };
    anyhow!(
        "{advice}
Podman said: {shown}"
    )
}

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

    /// Image id if the image is in the local store, `None` if not.
    pub(crate) async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.inspect_image(reference).await?.map(|i| i.id))
    }

    /// Builds a Dockerfile configuration's image from its packed context, passing each
    /// line of the build's output to `on_line`. Returns the image id.
    pub(crate) async fn build_image(
        &self,
        build: &crate::build::Prepared,
        labels: &std::collections::BTreeMap<String, String>,
        pull: PullPolicy,
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
        query.push(format!("pullpolicy={}", pull.as_str()));
        let ep = format!("{API_PREFIX}/libpod/build?{}", query.join("&"));
        let headers = super::auth::header_value(&super::auth::user_credentials())
            .map(|h| conn::Headers::single("X-Registry-Config", h));
        let mut stream = Box::pin(self.raw.post_stream(
            &ep,
            Payload::Tar(build.tar.clone()),
            headers,
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

    /// Pulls `reference` through the engine (`policy`: missing or always), passing
    /// Podman's progress lines to `on_line`; returns the image id. The engine applies
    /// the user's registries.conf (rewrites, mirrors, insecure, blocked, short names);
    /// the user's auth.json credentials travel in the request's header.
    pub(crate) async fn pull_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<String> {
        let ep = format!(
            "{API_PREFIX}/libpod/images/pull?reference={}&policy={}",
            encode(reference),
            policy.as_str()
        );
        let headers = super::auth::header_value(&super::auth::user_credentials())
            .map(|h| conn::Headers::single("X-Registry-Auth", h));
        let mut stream = Box::pin(self.raw.post_stream(
            &ep,
            Payload::<hyper::Body>::empty(),
            headers,
        ));
        let mut pending = String::new();
        let mut id = None;
        let mut error = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Err(pull_error(reference, &format!("{:#}", conn_error(e)))),
            };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let Ok(v) = serde_json::from_str::<PullLine>(line.trim()) else {
                    continue;
                };
                if let Some(text) = &v.stream {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        on_line(l.trim());
                    }
                }
                if let Some(e) = v.error.filter(|e| !e.is_empty()) {
                    error = Some(e);
                }
                if let Some(i) = v.id.filter(|i| !i.is_empty()) {
                    id = Some(i);
                }
            }
        }
        if let Some(e) = error {
            return Err(pull_error(reference, &e));
        }
        match id {
            Some(id) => Ok(id),
            None => self
                .image_id(reference)
                .await?
                .ok_or_else(|| anyhow!("pulling {reference} ended without an image")),
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

    /// A local image's ENTRYPOINT (empty when it has none), `None` if the image is not
    /// present.
    pub(crate) async fn image_entrypoint(&self, reference: &str) -> Result<Option<Vec<String>>> {
        Ok(self
            .inspect_image(reference)
            .await?
            .map(|i| i.config.entrypoint))
    }

    /// The labels of a local image, `None` if the image is not present.
    pub(crate) async fn image_labels(
        &self,
        reference: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        Ok(self.inspect_image(reference).await?.map(|i| i.labels))
    }
}
