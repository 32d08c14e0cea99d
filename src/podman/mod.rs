//! The only code that talks to Podman: connecting to an engine ([`connect`]), the
//! libpod REST calls devaipod needs (through the pinned podman-api crate, with its known
//! bugs worked around), applying a plan ([`apply`]) and the readiness probe ([`probe`]).
//!
//! podman-api workarounds (docs/dependencies.md):
//! - containers and pods are created from our own spec structs POSTed through a raw
//!   request client, because the crate misspells `no_new_privileges` and libpod ignores
//!   unknown keys silently; every created container's hardening is then verified by
//!   inspecting it;
//! - `adjust_api_version()` is never called (it breaks libpod network endpoints);
//! - 304 "already stopped" is success;
//! - inspect JSON is read tolerantly (raw `serde_json::Value`), so podman 5.x shapes
//!   cannot break it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::{self, Payload, RequestClient, Transport, hyper};
use futures_util::StreamExt;
use serde_json::Value;

pub mod apply;
pub mod connect;
pub mod inventory;
pub mod probe;
pub mod session;

use crate::plan::labels;

/// The libpod API version prefix we speak (podman-api's own; answered by 4.x and 5.1+).
pub(crate) const API_PREFIX: &str = "/v4.3.1";
/// Every engine request gets this much time; podman answers in milliseconds normally.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What a [`Engine::run_job`] container left behind.
#[derive(Debug)]
pub struct JobOutput {
    pub code: i64,
    /// stdout and stderr, interleaved.
    pub logs: String,
    pub file: Option<Vec<u8>>,
}

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("podman: {message} (HTTP {code})")]
    Api { code: u16, message: String },
}

/// Converts an API error into our own, keeping Podman's message and dropping raw dumps.
pub fn api_error(e: podman_api::Error) -> anyhow::Error {
    match e {
        podman_api::Error::Fault { code, message } => fault(code.as_u16(), message),
        podman_api::Error::Error(conn::Error::Fault { code, message }) => {
            fault(code.as_u16(), message)
        }
        other => anyhow!("podman API: {other}"),
    }
}

pub(crate) fn conn_error(e: conn::Error) -> anyhow::Error {
    match e {
        conn::Error::Fault { code, message } => fault(code.as_u16(), message),
        other => anyhow!("podman API: {other}"),
    }
}

fn fault(code: u16, message: String) -> anyhow::Error {
    let mut message = message.trim().to_string();
    if let Some(hint) = hint_for(&message) {
        message = format!("{message}\nhint: {hint}");
    }
    anyhow::Error::new(EngineError::Api { code, message })
}

/// The HTTP status of a Podman API error, if it is one.
pub fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<EngineError>() {
            Some(EngineError::Api { code, .. }) => Some(*code),
            _ => None,
        })
}

/// libpod's error text: `message`, or the `Errs` list of pod operations.
fn error_message(v: &Value) -> Option<String> {
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        return Some(m.to_string());
    }
    let errs: Vec<&str> = v
        .get("Errs")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// A hint for engine errors whose cause is a known host setting.
pub fn hint_for(message: &str) -> Option<&'static str> {
    if message.contains("error setting rlimit") {
        return Some(
            "this host cannot apply Podman's default ulimits (typical of hybrid-cgroup hosts): set `default_ulimits = []` under [containers] in containers.conf, e.g. `export CONTAINERS_CONF=$PWD/containers/hybrid-cgroups.conf` from the devaipod checkout",
        );
    }
    if message.contains("cgroups in hybrid mode not supported") {
        return Some(
            "crun does not support hybrid cgroups: use runc (`runtime = \"runc\"` under [engine] in containers.conf, e.g. `export CONTAINERS_CONF=$PWD/containers/hybrid-cgroups.conf`)",
        );
    }
    None
}

/// Maps non-2xx responses to `Fault` with libpod's `message` field.
fn validate(
    response: hyper::Response<hyper::Body>,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = conn::Result<hyper::Response<hyper::Body>>> + Send + Sync>,
> {
    Box::pin(async move {
        let status = response.status();
        if status.is_success() || status == hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body()).await?;
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| error_message(&v))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(conn::Error::Fault {
            code: status,
            message,
        })
    })
}

/// A connected engine. Dropping it stops the private service, if devaipod started one.
pub struct Engine {
    api: podman_api::Podman,
    raw: RequestClient<conn::Error>,
    socket: PathBuf,
    version: String,
    rootless: bool,
    service: Option<connect::PrivateService>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.socket)
            .field("version", &self.version)
            .field("rootless", &self.rootless)
            .field("private_service", &self.service.is_some())
            .finish()
    }
}

/// Checks the engine version: 4.3 or newer, but not 5.0.x.
pub fn check_version(version: &str) -> Result<()> {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        bail!(
            "cannot understand the Podman version {version:?}; devaipod needs Podman 4.3 or newer"
        );
    };
    if (major, minor) < (4, 3) {
        bail!(
            "Podman {version} is too old: devaipod needs Podman 4.3 or newer (Debian 12 ships 4.3.1); upgrade Podman"
        );
    }
    if (major, minor) == (5, 0) {
        bail!(
            "Podman {version} is not supported: 5.0.x changed its API answers in ways that break clients; upgrade to Podman 5.1 or newer"
        );
    }
    Ok(())
}

impl Engine {
    /// Connects as described in [`connect`]: `CONTAINER_HOST`, else the user's socket if
    /// a service listens, else a private service for the duration of this process.
    pub async fn connect() -> Result<Self> {
        let euid = nix::unistd::geteuid().as_raw();
        let (socket, service) = if let Ok(host) = std::env::var("CONTAINER_HOST") {
            let path = connect::parse_container_host(&host)?;
            if !connect::socket_listens(&path) {
                bail!(
                    "nothing listens on {} (from CONTAINER_HOST): start the service (`systemctl --user start podman.socket` or `podman system service`) or unset CONTAINER_HOST",
                    path.display()
                );
            }
            (path, None)
        } else {
            let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
            match connect::default_sockets(euid, runtime_dir.as_deref())
                .into_iter()
                .find(|p| connect::socket_listens(p))
            {
                Some(path) => (path, None),
                // Inside a toolbox the engine is the host's: start its service there.
                None if connect::in_toolbox() => match connect::find_on_path("flatpak-spawn") {
                    Some(fs) => {
                        let argv = [fs.display().to_string(), "--host".into(), "podman".into()];
                        let service = connect::PrivateService::start_with(&argv)?;
                        (service.socket().to_path_buf(), Some(service))
                    }
                    None => bail!("{}", connect::toolbox_hint(runtime_dir.as_deref())),
                },
                None => {
                    let podman = connect::find_podman()?;
                    let service = connect::PrivateService::start(&podman)?;
                    (service.socket().to_path_buf(), Some(service))
                }
            }
        };
        let api = podman_api::Podman::unix(&socket);
        let raw = RequestClient::new(
            Transport::Unix {
                client: hyper::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build(conn::get_unix_connector()),
                path: socket.clone(),
            },
            Box::new(validate),
        );
        let ping = tokio::time::timeout(Duration::from_secs(30), api.ping())
            .await
            .map_err(|_| anyhow!("Podman at {} did not answer within 30s", socket.display()))?
            .map_err(api_error)
            .with_context(|| format!("connecting to Podman at {}", socket.display()))?;
        let version = ping.libpod_api_version;
        check_version(&version)?;
        tracing::info!(
            socket = %socket.display(),
            %version,
            via = if service.is_some() { "private service" } else { "existing socket" },
            "connected to podman"
        );
        Ok(Self {
            api,
            raw,
            socket,
            version,
            // A local engine runs as the user who owns it; devaipod talks to its own.
            rootless: euid != 0,
            service,
        })
    }

    /// The podman-api client, for streaming calls (logs).
    pub fn api(&self) -> &podman_api::Podman {
        &self.api
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn rootless(&self) -> bool {
        self.rootless
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the private service now (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.stop();
        }
    }

    async fn get_json(&self, endpoint: &str) -> Result<Value> {
        let ep = format!("{API_PREFIX}{endpoint}");
        tokio::time::timeout(REQUEST_TIMEOUT, self.raw.get_json::<Value>(&ep))
            .await
            .map_err(|_| anyhow!("Podman did not answer GET {endpoint} in time"))?
            .map_err(conn_error)
    }

    async fn post_json(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let ep = format!("{API_PREFIX}{endpoint}");
        let payload = Payload::Json(serde_json::to_string(body)?);
        let text = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raw.post_string(&ep, payload, None::<conn::Headers>),
        )
        .await
        .map_err(|_| anyhow!("Podman did not answer POST {endpoint} in time"))?
        .map_err(conn_error)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn delete_req(&self, endpoint: &str) -> Result<()> {
        let ep = format!("{API_PREFIX}{endpoint}");
        tokio::time::timeout(REQUEST_TIMEOUT, self.raw.delete(&ep))
            .await
            .map_err(|_| anyhow!("Podman did not answer DELETE {endpoint} in time"))?
            .map_err(conn_error)?;
        Ok(())
    }

    /// Image id if the image is in the local store, `None` if not (devaipod never pulls).
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        let ep = format!("/libpod/images/{}/json", encode(reference));
        match self.get_json(&ep).await {
            Ok(v) => Ok(v.get("Id").and_then(Value::as_str).map(str::to_string)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.context(format!("inspecting image {reference}"))),
        }
    }

    /// Builds a Dockerfile configuration's image from its packed context, passing each
    /// line of the build's output to `on_line`. Returns the image id.
    pub async fn build_image(
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
                let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
                    continue;
                };
                if let Some(text) = v["stream"].as_str() {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        on_line(l);
                        tail.push(l.to_string());
                        if tail.len() > 20 {
                            tail.remove(0);
                        }
                    }
                }
                if let Some(e) = v["error"].as_str() {
                    error = Some(e.to_string());
                }
                if let Some(i) = v["aux"]["ID"].as_str() {
                    id = Some(i.to_string());
                }
            }
        }
        if let Some(e) = error {
            bail!(
                "building the image from {} failed: {}\nlast output:\n{}",
                b.dockerfile.display(),
                e.trim(),
                tail.join("\n")
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
    pub async fn image_command(
        &self,
        reference: &str,
    ) -> Result<Option<(Vec<String>, Option<String>)>> {
        let ep = format!("/libpod/images/{}/json", encode(reference));
        match self.get_json(&ep).await {
            Ok(v) => {
                let path = v["Config"]["Env"].as_array().and_then(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .find_map(|e| e.strip_prefix("PATH="))
                        .map(str::to_string)
                });
                let list = |k: &str| -> Vec<String> {
                    v["Config"][k]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut cmd = list("Entrypoint");
                cmd.extend(list("Cmd"));
                Ok(Some((cmd, path)))
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.context(format!("inspecting image {reference}"))),
        }
    }

    /// The labels of a local image, `None` if the image is not present.
    pub async fn image_labels(
        &self,
        reference: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        let ep = format!("/libpod/images/{}/json", encode(reference));
        match self.get_json(&ep).await {
            Ok(v) => Ok(Some(
                v["Labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.context(format!("inspecting image {reference}"))),
        }
    }

    /// Whether a pod with this name exists.
    pub async fn pod_exists(&self, name: &str) -> Result<bool> {
        self.api
            .pods()
            .get(name)
            .exists()
            .await
            .map_err(api_error)
            .with_context(|| format!("checking whether pod {name} exists"))
    }

    /// Creates a pod from a libpod PodSpecGenerator.
    pub async fn create_pod(&self, spec: &Value) -> Result<String> {
        let v = self.post_json("/libpod/pods/create", spec).await?;
        Ok(v.get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Creates a named volume with labels.
    pub async fn create_volume(&self, name: &str, labels: &Value) -> Result<()> {
        let body = serde_json::json!({ "Name": name, "Label": labels, "Labels": labels });
        self.post_json("/libpod/volumes/create", &body).await?;
        Ok(())
    }

    /// Creates a container from a libpod SpecGenerator; returns its id.
    pub async fn create_container(&self, spec: &Value) -> Result<String> {
        let v = self.post_json("/libpod/containers/create", spec).await?;
        Ok(v.get("Id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Stores a secret in Podman's secret store (file driver). The value travels only in
    /// the request body.
    pub async fn create_secret(
        &self,
        name: &str,
        value: &crate::secret::SecretValue,
        labels: &std::collections::BTreeMap<String, String>,
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
    pub async fn secret_exists(&self, name: &str) -> Result<bool> {
        match self
            .get_json(&format!("/libpod/secrets/{}/json", encode(name)))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e.context(format!("inspecting secret {name}"))),
        }
    }

    /// Removes a secret. Missing is fine; `Ok(true)` if it existed.
    pub async fn remove_secret(&self, name: &str) -> Result<bool> {
        self.delete_if_present(&format!("/libpod/secrets/{}", encode(name)), || {
            format!("removing secret {name}")
        })
        .await
    }

    /// Raw container inspect (tolerant of version differences).
    pub async fn inspect_container(&self, name: &str) -> Result<Value> {
        self.get_json(&format!("/libpod/containers/{}/json", encode(name)))
            .await
            .with_context(|| format!("inspecting container {name}"))
    }

    /// Raw pod inspect.
    pub async fn inspect_pod(&self, name: &str) -> Result<Value> {
        self.get_json(&format!("/libpod/pods/{}/json", encode(name)))
            .await
            .with_context(|| format!("inspecting pod {name}"))
    }

    /// Starts a pod (a pod that is already running is fine).
    pub async fn start_pod(&self, name: &str) -> Result<()> {
        match self
            .post_json(
                &format!("/libpod/pods/{}/start", encode(name)),
                &Value::Null,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(e.context(format!("starting pod {name}"))),
        }
    }

    /// Unpacks a tar stream into `path` of a (created or running) container; paths
    /// inside mounted volumes land in the volume.
    ///
    /// Ownership comes from the tar headers (`copyUIDGID=false`); libpod would otherwise
    /// chown everything to the container's main user.
    pub async fn copy_into(&self, container: &str, path: &str, tar: Vec<u8>) -> Result<()> {
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/archive?path={}&copyUIDGID=false",
            encode(container),
            encode(path)
        );
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raw.put(&ep, Payload::XTar(hyper::Body::from(tar))),
        )
        .await
        .map_err(|_| anyhow!("Podman did not finish copying into {container} in time"))?
        .map_err(conn_error)
        .with_context(|| format!("copying files into {container}:{path}"))?;
        Ok(())
    }

    /// Every regular file under `path` in a container (path relative to `path`,
    /// content); empty if `path` does not exist.
    pub async fn read_tree(&self, container: &str, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/archive?path={}",
            encode(container),
            encode(path)
        );
        let resp = match self.raw.get(&ep).await {
            Ok(r) => r,
            Err(conn::Error::Fault { code, .. }) if code.as_u16() == 404 => return Ok(Vec::new()),
            Err(e) => {
                return Err(conn_error(e)).with_context(|| format!("reading {container}:{path}"));
            }
        };
        let bytes = hyper::body::to_bytes(resp.into_body())
            .await
            .with_context(|| format!("reading {container}:{path}"))?;
        let mut out = Vec::new();
        let mut archive = tar::Archive::new(&bytes[..]);
        for entry in archive
            .entries()
            .context("reading the archive from podman")?
        {
            let mut entry = entry.context("reading the archive from podman")?;
            if entry.header().entry_type().is_file() {
                let name = entry.path()?.display().to_string();
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut buf)?;
                out.push((name, buf));
            }
        }
        Ok(out)
    }

    /// Reads one file out of a container (created or running), `None` if it is missing.
    pub async fn read_file(&self, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_tree(container, path)
            .await?
            .into_iter()
            .next()
            .map(|(_, content)| content))
    }

    /// Runs `argv` in a running container as `user` in `workdir`, handing each output
    /// line to `on_line`; returns the exit code.
    pub async fn exec_lines(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        workdir: &str,
        env: &[(String, String)],
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<i64> {
        let containers = self.api.containers();
        let c = containers.get(container);
        let mut opts = podman_api::opts::ExecCreateOpts::builder()
            .command(argv.iter().cloned())
            .attach_stdout(true)
            .attach_stderr(true)
            .working_dir(workdir);
        if !env.is_empty() {
            opts = opts.env(env.iter().cloned());
        }
        if let Some(u) = user {
            opts = opts.user(podman_api::opts::UserOpt::User(u.to_string()));
        }
        let what = || {
            format!(
                "running {:?} in {container}",
                argv.first().map(String::as_str).unwrap_or_default()
            )
        };
        let exec = c
            .create_exec(&opts.build())
            .await
            .map_err(api_error)
            .with_context(what)?;
        let start = podman_api::opts::ExecStartOpts::builder().build();
        let mut pending = String::new();
        if let Some(mut stream) = exec
            .start(&start)
            .await
            .map_err(api_error)
            .with_context(what)?
        {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(conn_error)?;
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    on_line(line.trim_end_matches(['\n', '\r']));
                }
            }
        }
        if !pending.is_empty() {
            on_line(&pending);
        }
        // The output stream ends when the process does; its exit code follows shortly.
        for _ in 0..200 {
            let inspect = exec.inspect().await.map_err(api_error).with_context(what)?;
            if inspect["Running"].as_bool() != Some(true) {
                return Ok(inspect["ExitCode"].as_i64().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("{} did not report an exit code", what())
    }

    /// Runs a short-lived container from `spec` (a libpod SpecGenerator) to completion
    /// and removes it: its exit code, its output, and the file `fetch` from its
    /// filesystem if asked. Used to read the agent's clone from its volume without an
    /// exec session in the pod (on Podman 4.3 one makes removing the pod seconds slower).
    pub async fn run_job(&self, spec: &Value, fetch: Option<&str>) -> Result<JobOutput> {
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        let result = async {
            self.create_container(spec).await?;
            self.post_json(
                &format!("/libpod/containers/{}/start", encode(&name)),
                &Value::Null,
            )
            .await?;
            let code = self
                .post_json(
                    &format!(
                        "/libpod/containers/{}/wait?condition=stopped",
                        encode(&name)
                    ),
                    &Value::Null,
                )
                .await?;
            let code = code
                .as_i64()
                .or_else(|| code.as_str().and_then(|s| s.trim().parse().ok()))
                .unwrap_or(-1);
            let logs = self.logs_tail(&name, 100_000).await?;
            let file = match fetch {
                Some(path) => self.read_file(&name, path).await?,
                None => None,
            };
            Ok::<_, anyhow::Error>(JobOutput { code, logs, file })
        }
        .await;
        self.delete_if_present(
            &format!("/libpod/containers/{}?force=true&v=true", encode(&name)),
            || format!("removing {name}"),
        )
        .await?;
        result.with_context(|| format!("running {name}"))
    }

    /// The last `tail` lines of a container's output (stdout and stderr).
    pub async fn logs_tail(&self, container: &str, tail: usize) -> Result<String> {
        let opts = podman_api::opts::ContainerLogsOpts::builder()
            .stdout(true)
            .stderr(true)
            .tail(tail.to_string())
            .build();
        let containers = self.api.containers();
        let c = containers.get(container);
        let mut stream = c.logs(&opts);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(api_error)?;
            out.extend_from_slice(&chunk.to_vec());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Names of pods carrying `label=value`.
    pub async fn pods_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
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
    pub async fn containers_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
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
    pub async fn volumes_with_label(&self, label: &str, value: &str) -> Result<Vec<String>> {
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
    pub async fn remove_pod(&self, name: &str) -> Result<()> {
        // Killing first makes removal immediate: a forced remove would otherwise give
        // every container its stop timeout.
        let _ = self
            .post_json(
                &format!("/libpod/pods/{}/kill?signal=KILL", encode(name)),
                &Value::Null,
            )
            .await;
        self.delete_if_present(&format!("/libpod/pods/{}?force=true", encode(name)), || {
            format!("removing pod {name}")
        })
        .await
        .map(drop)
    }

    /// Force-removes a container (and its anonymous volumes). Missing is fine.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
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
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.delete_if_present(
            &format!("/libpod/volumes/{}?force=true", encode(name)),
            || format!("removing volume {name}"),
        )
        .await
        .map(drop)
    }

    /// DELETE that treats a missing object as done; `Ok(true)` if it existed.
    async fn delete_if_present(&self, endpoint: &str, what: impl Fn() -> String) -> Result<bool> {
        match self.delete_req(endpoint).await {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(e.context(what())),
        }
    }

    /// Removes every object labelled for workspace `name`: pods (with their
    /// containers), stray containers, then volumes. Returns what was removed.
    pub async fn remove_labelled(&self, name: &str) -> Result<Removed> {
        let pods = self.pods_with_label(labels::POD, name).await?;
        let containers = self.containers_with_label(labels::POD, name).await?;
        // Secrets carry no labels on Podman 4.3: the pod lists them, and the password's
        // name is known.
        let mut secrets: Vec<String> = Vec::new();
        for p in &pods {
            let inspect = self.inspect_pod(p).await?;
            if let Some(list) = inspect["Labels"][crate::plan::SECRETS_LABEL].as_str() {
                secrets.extend(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
        }
        if let Ok(n) = crate::names::Name::new(name) {
            let password = crate::plan::password_secret_name(&n);
            if !secrets.contains(&password) {
                secrets.push(password);
            }
        }
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

/// What [`Engine::remove_labelled`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub pods: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub secrets: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
            && self.containers.is_empty()
            && self.volumes.is_empty()
            && self.secrets.is_empty()
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gate() {
        for ok in ["4.3.1", "4.9.4", "5.1.0", "5.4.2-dev", "6.0.0"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["4.2.0", "3.4.4", "5.0.3", "garbage", ""] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        let e = check_version("5.0.2").expect_err("5.0");
        assert!(format!("{e}").contains("5.1"), "{e}");
    }

    #[test]
    fn pod_errors_are_readable_and_hinted() {
        let v = serde_json::json!({"Errs": ["starting container a: error setting rlimit type 7", "b failed"], "Id": "x"});
        let m = error_message(&v).expect("message");
        assert_eq!(
            m,
            "starting container a: error setting rlimit type 7; b failed"
        );
        assert!(hint_for(&m).is_some_and(|h| h.contains("default_ulimits")));
        assert_eq!(
            error_message(&serde_json::json!({"message": "no such pod"})).as_deref(),
            Some("no such pod")
        );
        assert_eq!(error_message(&serde_json::json!({})), None);
    }

    #[test]
    fn encode_escapes_reserved() {
        assert_eq!(encode("localhost/x:latest"), "localhost%2Fx%3Alatest");
        assert_eq!(encode("/workspaces/a b"), "%2Fworkspaces%2Fa%20b");
    }
}
