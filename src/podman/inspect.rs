//! What devaipod reads from Podman's inspect and list answers, as small typed structs.
//!
//! Unknown keys are ignored, so newer Podman versions may add fields. Every field a
//! security check in [`super::verify`] reads is **required**: a missing key is a
//! deserialization error, and verification fails closed instead of reading a default.
//! Only where libpod itself omits a key (`omitempty` in its Go structs) or sends `null`
//! for an empty Go slice/map is a default accepted, and each such field says why.
//!
//! Shapes: Podman 4.3 and 5.1+ (which answers the `/v4.3.1` prefix in the same shape)
//! send these fields with the same names; 5.0.x is refused at connect. The fixtures in
//! the tests are written from libpod's `define.InspectContainerData` and the fields
//! devaipod read before; they should be checked against a real `podman inspect`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// A required key whose value may be `null`: libpod marshals an empty Go slice or map
/// that was never allocated as `null`. The key must still be present.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /libpod/containers/NAME/json`, the parts devaipod reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerInspect {
    /// The process Podman runs: `Path` then `Args` (`/run/podman-init --` first when
    /// the container has an init). Read rather than `Config.Entrypoint`, whose type
    /// differs between Podman 4 (a string) and 5 (a list).
    #[serde(default)]
    pub path: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub args: Vec<String>,
    /// The container's effective capabilities; `null` (a nil Go slice) when it has
    /// none, which is what a container with every capability dropped shows.
    #[serde(deserialize_with = "null_as_empty")]
    pub effective_caps: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// Volume, bind and image mounts (tmpfs mounts are in `HostConfig.Tmpfs`).
    #[serde(deserialize_with = "null_as_empty")]
    pub mounts: Vec<Mount>,
    pub state: ContainerState,
    /// The image as the user named it (for jobs and helpers that use the same image).
    #[serde(default)]
    pub image_name: String,
    /// `omitempty` in libpod; a check that needs it fails when it is absent.
    #[serde(rename = "OCIRuntime", default)]
    pub oci_runtime: Option<String>,
}

impl ContainerInspect {
    /// The argv the container runs, below Podman's init if it has one.
    pub(crate) fn argv(&self) -> Vec<String> {
        let mut v: Vec<String> = std::iter::once(self.path.clone())
            .chain(self.args.iter().cloned())
            .collect();
        if self.host_config.init && v.len() >= 2 && v[0] == PODMAN_INIT && v[1] == "--" {
            v.drain(..2);
        }
        v
    }
}

/// Where Podman puts its init (catatonit) in a container with `init`.
const PODMAN_INIT: &str = "/run/podman-init";

/// `Config` of a container inspect.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    pub user: String,
    pub hostname: String,
    /// `KEY=VALUE` entries; `null` when the container has no environment.
    #[serde(deserialize_with = "null_as_empty")]
    pub env: Vec<String>,
    #[serde(default)]
    pub image: String,
}

impl ContainerConfig {
    /// The configured environment as a map.
    pub(crate) fn env_map(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// `HostConfig` of a container inspect: the hardening devaipod verifies.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostConfig {
    /// `null` would mean none: every check on it requires an entry, so it fails closed.
    #[serde(deserialize_with = "null_as_empty")]
    pub security_opt: Vec<String>,
    pub readonly_rootfs: bool,
    pub pids_limit: i64,
    pub memory: i64,
    pub cpu_quota: i64,
    pub privileged: bool,
    pub shm_size: i64,
    #[serde(deserialize_with = "null_as_empty")]
    pub ulimits: Vec<InspectUlimit>,
    /// `Init,omitempty` in libpod: absent means no init, which fails a check that
    /// wants one.
    #[serde(default)]
    pub init: bool,
    /// Destination -> options.
    #[serde(deserialize_with = "null_as_empty")]
    pub tmpfs: BTreeMap<String, String>,
}

/// One ulimit as libpod reports it (`RLIMIT_NOFILE`, unsigned: unlimited is 2^64-1).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InspectUlimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// One entry of `Mounts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Mount {
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name; empty for binds.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

/// `State` of a container inspect.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerState {
    pub status: String,
    pub running: bool,
    pub pid: i64,
    pub exit_code: i64,
}

/// `GET /libpod/pods/NAME/json`, the parts devaipod reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PodInspect {
    /// `Labels,omitempty` in libpod.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    /// `omitempty`: a pod without an infra container has none.
    #[serde(rename = "InfraContainerID", default)]
    pub infra_container_id: Option<String>,
    #[serde(default)]
    pub infra_config: Option<PodInfraConfig>,
}

impl PodInspect {
    /// A label's value.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// `InfraConfig` of a pod inspect.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PodInfraConfig {
    /// `"8080/tcp"` -> bindings; `null` when nothing is published.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub port_bindings: BTreeMap<String, Vec<HostPort>>,
}

/// One host binding of a published port.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HostPort {
    #[serde(rename = "HostIp", default)]
    pub host_ip: String,
    #[serde(rename = "HostPort", default)]
    pub host_port: String,
}

/// `GET /libpod/images/NAME/json`, the parts devaipod reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageInspect {
    pub id: String,
    #[serde(default)]
    pub config: ImageConfig,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `Config` of an image inspect (each list may be absent or `null`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ImageConfig {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub cmd: Vec<String>,
    /// The image's USER (empty: root).
    #[serde(default)]
    pub user: String,
}

/// `GET /libpod/exec/ID/json`, the parts devaipod reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExecInspect {
    pub running: bool,
    pub exit_code: i64,
    /// The process's PID in the engine's PID namespace (0 once it has ended).
    #[serde(default)]
    pub pid: i64,
}

/// One line of `GET /libpod/events?stream=false`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventLine {
    pub time: i64,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
}

/// `Actor` of an event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventActor {
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// `GET /libpod/info`, the parts devaipod reads (libpod's `define.Info`, camelCase keys).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EngineInfo {
    pub host: InfoHost,
}

/// `host` of the engine's info.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InfoHost {
    /// `v1` or `v2`: the cgroup mode the engine runs containers under. Required: whether
    /// limits are verified depends on it.
    pub cgroup_version: String,
    /// The cgroup controllers the engine may use (for a rootless engine on cgroup v2,
    /// the ones delegated to the user); absent from older engines.
    #[serde(default)]
    pub cgroup_controllers: Option<Vec<String>>,
}

/// One entry of `GET /libpod/secrets/json`. Podman 5 keeps the labels a secret was
/// created with; 4.3 drops them (then `Labels` is absent or empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SecretEntry {
    pub spec: SecretSpecEntry,
}

/// `Spec` of a listed secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SecretSpecEntry {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Inspect answers shaped like libpod's, for the verification tests.

    /// A hardened container's inspect (the agent of the test plan, with no caps).
    pub(crate) const AGENT: &str = include_str!("fixtures/agent-inspect.json");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_container_inspect_and_ignores_unknown_keys() {
        let i: ContainerInspect = serde_json::from_str(fixtures::AGENT).expect("inspect");
        assert!(i.effective_caps.is_empty(), "null caps are none");
        assert!(i.host_config.readonly_rootfs);
        assert_eq!(i.host_config.pids_limit, 4096);
        assert!(i.host_config.init);
        assert_eq!(i.config.user, "4096:4096");
        assert!(i.state.running);
        assert!(i.config.env_map().contains_key("HOME"));
    }

    #[test]
    fn a_missing_security_field_is_an_error() {
        let full: serde_json::Value = serde_json::from_str(fixtures::AGENT).expect("json");
        for (outer, key) in [
            (None, "EffectiveCaps"),
            (None, "Mounts"),
            (None, "State"),
            (Some("HostConfig"), "SecurityOpt"),
            (Some("HostConfig"), "Privileged"),
            (Some("HostConfig"), "ReadonlyRootfs"),
            (Some("HostConfig"), "PidsLimit"),
            (Some("HostConfig"), "Memory"),
            (Some("HostConfig"), "CpuQuota"),
            (Some("HostConfig"), "Tmpfs"),
            (Some("Config"), "User"),
        ] {
            let mut v = full.clone();
            let obj = match outer {
                Some(o) => v[o].as_object_mut().expect("object"),
                None => v.as_object_mut().expect("object"),
            };
            assert!(obj.remove(key).is_some(), "{key} is in the fixture");
            let e = serde_json::from_value::<ContainerInspect>(v).expect_err(key);
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn pods_images_and_execs_read_what_libpod_sends() {
        let pod: PodInspect = serde_json::from_value(serde_json::json!({
            "Id": "p", "Labels": {"io.devaipod.pod": "x"}, "InfraContainerID": "i",
            "InfraConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}},
        }))
        .expect("pod");
        assert_eq!(pod.label("io.devaipod.pod"), Some("x"));
        assert_eq!(pod.infra_container_id.as_deref(), Some("i"));
        let bare: PodInspect =
            serde_json::from_value(serde_json::json!({"InfraConfig": {"PortBindings": null}}))
                .expect("bare pod");
        assert!(bare.labels.is_empty());
        let image: ImageInspect = serde_json::from_value(serde_json::json!({
            "Id": "sha", "Config": {"Env": ["PATH=/bin"], "Entrypoint": null, "Cmd": ["sh"]},
            "Labels": null,
        }))
        .expect("image");
        assert_eq!((image.config.cmd.len(), image.labels.len()), (1, 0));
        let exec: ExecInspect =
            serde_json::from_value(serde_json::json!({"Running": false, "ExitCode": 3}))
                .expect("exec");
        assert_eq!(exec.exit_code, 3);
        assert!(
            serde_json::from_value::<ExecInspect>(serde_json::json!({"Running": false})).is_err()
        );
    }

    #[test]
    fn engine_info_needs_the_cgroup_version() {
        let info: EngineInfo = serde_json::from_value(serde_json::json!({
            "host": {"cgroupVersion": "v1", "cgroupManager": "cgroupfs", "arch": "amd64"},
            "store": {}, "version": {"Version": "5.4.2"},
        }))
        .expect("info");
        assert_eq!(info.host.cgroup_version, "v1");
        let e = serde_json::from_value::<EngineInfo>(serde_json::json!({"host": {}}))
            .expect_err("no cgroupVersion");
        assert!(e.to_string().contains("cgroupVersion"), "{e}");
    }
}
