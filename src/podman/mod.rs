//! The only code that talks to Podman. Split by job:
//!
//! - [`connect`]: finding or starting the engine's socket; [`client`]: requests,
//!   the API prefix, errors mapped once into [`EngineError`];
//! - [`inspect`]: typed inspect/list answers (security fields required);
//! - [`images`], [`objects`] (create/inspect/start/stop), [`labelled`] (list and
//!   remove by label), [`archive`] (copy into / read out of containers), [`exec`],
//!   [`logs`], [`job`] (short-lived job containers), [`inventory`] (workspaces, events),
//!   [`storage`] (whether volumes can be held to a size, and how much each holds);
//! - [`spec`] (plan -> libpod SpecGenerator), [`verify`] (hardening checks),
//!   [`apply`] (ordering and rollback), [`hooks`] (lifecycle commands, shims, users);
//! - [`netns`] (entering the pod), [`readiness`], [`agent_http`] (the agent's API),
//!   [`cancel`], [`session`] (interactive podman CLI sessions).
//!
//! podman-api workarounds (docs/dependencies.md):
//! - containers and pods are created from our own spec structs POSTed through a raw
//!   request client, because the crate misspells `no_new_privileges` and libpod ignores
//!   unknown keys silently; every created container's hardening is then verified by
//!   inspecting it;
//! - `adjust_api_version()` is never called (it breaks libpod network endpoints);
//! - 304 "already stopped" is success;
//! - inspect answers are read into our own small structs ([`inspect`]) that ignore
//!   unknown keys, so podman 5.x additions cannot break them, while a missing security
//!   field fails verification.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::{self, RequestClient, Transport, hyper};

pub(crate) mod agent_http;
pub(crate) mod apply;
pub(crate) mod archive;
pub(crate) mod auth;
pub(crate) mod cancel;
pub(crate) mod client;
pub(crate) mod connect;
pub(crate) mod exec;
pub(crate) mod gc;
pub(crate) mod hooks;
pub(crate) mod images;
pub(crate) mod inspect;
pub(crate) mod inventory;
pub(crate) mod job;
pub(crate) mod labelled;
pub(crate) mod logs;
pub(crate) mod netns;
pub(crate) mod objects;
pub(crate) mod readiness;
pub(crate) mod session;
pub(crate) mod shared;
pub(crate) mod spec;
pub(crate) mod storage;
pub(crate) mod verify;

pub(crate) use client::{API_PREFIX, REQUEST_TIMEOUT, conn_error};
pub(crate) use client::{api_error, encode, is_not_found, is_not_modified};
pub(crate) use job::JobOutput;

/// A connected engine. Dropping it stops the private service, if devaipod started one.
pub(crate) struct Engine {
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
pub(crate) fn check_version(version: &str) -> Result<()> {
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
    pub(crate) async fn connect() -> Result<Self> {
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
            Box::new(client::validate),
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

    pub(crate) fn rootless(&self) -> bool {
        self.rootless
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The cgroup mode the engine runs containers under (`v1` or `v2`), from its info.
    pub(crate) async fn cgroup_version(&self) -> Result<String> {
        let info: inspect::EngineInfo = self
            .get_json("/libpod/info")
            .await
            .context("asking Podman for its cgroup version (GET /libpod/info)")?;
        Ok(info.host.cgroup_version)
    }

    /// The engine's version, as its API answered.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Whether devaipod started a private `podman system service` for this command.
    pub(crate) fn private_service(&self) -> bool {
        self.service.is_some()
    }

    /// The host part of the engine's info (cgroup mode and controllers).
    pub(crate) async fn host_info(&self) -> Result<inspect::InfoHost> {
        let info: inspect::EngineInfo = self
            .get_json("/libpod/info")
            .await
            .context("asking Podman for its host info (GET /libpod/info)")?;
        Ok(info.host)
    }

    /// Stops the private service now (also done on drop).
    pub(crate) fn shutdown(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.stop();
        }
    }
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
}
