//! The libpod create requests devaipod sends, as serializable structs: the
//! SpecGenerator of a container and the PodSpecGenerator of a pod, mapped from the
//! plan. Our own structs rather than podman-api's, because the crate misspells
//! `no_new_privileges` and libpod ignores unknown keys silently; every key set here is
//! checked against the created container by [`super::verify::verify_container`].

use crate::plan::MountKind;
use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::plan::{ContainerSpec, PodPlan, PodSpec, Role, Seccomp};

/// The agent's seccomp profile (containers/seccomp/agent.json), embedded so that no
/// file of unknown version on the host decides the agent's syscalls.
pub(crate) const AGENT_SECCOMP: &str = include_str!("../../containers/seccomp/agent.json");

/// The annotation Podman's inspect turns into `SecurityOpt: seccomp=PATH`.
const SECCOMP_ANNOTATION: &str = "io.podman.annotations.seccomp";

/// How long a container gets to stop before it is killed.
const STOP_TIMEOUT_SECS: u64 = 5;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A libpod SpecGenerator (`POST /libpod/containers/create`), the keys devaipod sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct SpecGenerator {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub image: String,
    /// Always set but for the gator: the image's ENTRYPOINT never wraps devaipod's
    /// commands (it would run before the agent's network gate, as the agent's user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    pub command: Vec<String>,
    pub work_dir: String,
    pub init: bool,
    pub labels: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub no_new_privileges: bool,
    pub volumes: Vec<NamedVolume>,
    pub stop_timeout: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_path: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only_filesystem: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<SpecMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selinux_opts: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub r_limits: Vec<Rlimit>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
    /// Jobs only: no network at all (`none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Namespace>,
    /// Toolbox helpers only: stdin stays open for `podman start --attach --interactive`.
    #[serde(skip_serializing_if = "is_false")]
    pub stdin: bool,
    /// The network rules only: `always`, a Podman init container run before the pod's
    /// other containers on every start of the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_container_type: Option<String>,
    /// Toolbox helpers only: removed by Podman once it exits.
    #[serde(skip_serializing_if = "is_false")]
    pub remove: bool,
}

/// A named volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NamedVolume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Dest")]
    pub dest: String,
    #[serde(rename = "Options")]
    pub options: Vec<String>,
}

/// A podman secret mounted as a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SecretMount {
    pub source: String,
    pub target: String,
    #[serde(rename = "UID")]
    pub uid: u64,
    #[serde(rename = "GID")]
    pub gid: u64,
    pub mode: u32,
}

/// A bind or tmpfs mount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SpecMount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ResourceLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Limit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuLimit>,
}

/// A pids or memory limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Limit {
    pub limit: i64,
}

/// A CPU quota per period (microseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CpuLimit {
    pub quota: i64,
    pub period: i64,
}

/// A device passed through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Device {
    pub path: String,
}

/// A POSIX rlimit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: i64,
    pub hard: i64,
}

/// A namespace setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Namespace {
    pub nsmode: String,
}

/// A libpod PodSpecGenerator (`POST /libpod/pods/create`), the keys devaipod sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PodSpecGenerator {
    pub name: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub shared_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub portmappings: Vec<PortMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_server: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostadd: Vec<String>,
}

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
    pub protocol: String,
}

/// The PodSpecGenerator for the plan's pod, publishing `ports` (container, host).
pub(crate) fn pod_spec(plan: &PodPlan, ports: &[(u16, u16)]) -> Result<PodSpecGenerator> {
    let mut labels = plan.pod.labels.clone();
    // `start` runs postStartCommand as it was at `up`, and the user it ran as.
    if !plan.lifecycle.start.is_empty() {
        let start = super::hooks::PostStart {
            steps: plan.lifecycle.start.clone(),
            user: plan.repo.owner.clone(),
            workdir: plan.repo.workdir.clone(),
            env: plan.lifecycle.env.clone(),
        };
        let text = serde_json::to_string(&start).context("recording postStartCommand")?;
        labels.insert(crate::plan::labels::POST_START.into(), text);
    }
    labels.insert(
        crate::plan::labels::NETWORK.into(),
        serde_json::to_string(&plan.network).context("recording the network")?,
    );
    let portmappings = ports
        .iter()
        .zip(&plan.pod.ports)
        .map(|((c, h), p)| PortMapping {
            container_port: *c,
            host_port: *h,
            host_ip: "127.0.0.1".into(),
            protocol: p.protocol.clone(),
        })
        .collect();
    Ok(PodSpecGenerator {
        name: plan.pod.name.clone(),
        hostname: plan.pod.hostname.clone(),
        labels,
        shared_namespaces: plan.pod.share.clone(),
        portmappings,
        // /dev/shm's size is the pod's on Podman 4.3 (a container's own is ignored).
        shm_size: plan
            .container(Role::Workspace)
            .and_then(|c| c.extra.shm_size),
        dns_server: plan.pod.dns.clone(),
        hostadd: plan.pod.add_hosts.clone(),
    })
}

/// The agent profile written to a file for the engine to read at create time (Podman
/// copies the profile into the container's configuration; the file is removed after).
#[derive(Debug)]
pub(crate) struct SeccompFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl SeccompFile {
    /// Writes [`AGENT_SECCOMP`] to a fresh directory the engine can read.
    pub(crate) fn write() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("devaipod-seccomp-")
            .tempdir()
            .context("creating a directory for the seccomp profile")?;
        // Readable by the engine even when it runs as another user (CONTAINER_HOST).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let path = dir.path().join("agent.json");
        std::fs::write(&path, AGENT_SECCOMP).context("writing the seccomp profile")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(Self { _dir: dir, path })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The SpecGenerator for one of the pod's containers. `owner` is the uid/gid its
/// secret files belong to.
pub(crate) fn container_spec(
    pod: &PodSpec,
    c: &ContainerSpec,
    seccomp_path: Option<&std::path::Path>,
    owner: (u64, u64),
) -> SpecGenerator {
    let mut spec = base_spec(c, seccomp_path, owner);
    spec.pod = Some(pod.name.clone());
    // Only the network is shared, so each container has its own UTS namespace: give it
    // the workspace's name rather than a container id (unless the repo names one).
    if spec.hostname.is_none() {
        spec.hostname = Some(pod.hostname.clone());
    }
    spec
}

/// The SpecGenerator for a job container outside the pod: no network at all, and
/// every tmpfs bounded to `tmpfs_bytes`. `seccomp_path` is the agent profile's file
/// ([`SeccompFile`]), applied when the plan asks for it as for the agent.
pub(crate) fn job_spec(
    c: &ContainerSpec,
    seccomp_path: Option<&std::path::Path>,
    tmpfs_bytes: u64,
) -> SpecGenerator {
    let mut spec = SpecGenerator {
        netns: Some(Namespace {
            nsmode: "none".into(),
        }),
        ..base_spec(c, seccomp_path, (0, 0))
    };
    bound_tmpfs(&mut spec, tmpfs_bytes);
    spec
}

/// The SpecGenerator for a toolbox helper ([`super::netns`]): in `pod` (its network
/// namespace is the point), stdin kept open for the attached client, removed by Podman
/// when it exits, every tmpfs bounded to `tmpfs_bytes`.
pub(crate) fn helper_spec(
    pod: &str,
    c: &ContainerSpec,
    seccomp_path: Option<&std::path::Path>,
    tmpfs_bytes: u64,
) -> SpecGenerator {
    let mut spec = SpecGenerator {
        pod: Some(pod.to_string()),
        stdin: true,
        remove: true,
        ..base_spec(c, seccomp_path, (0, 0))
    };
    bound_tmpfs(&mut spec, tmpfs_bytes);
    spec
}

/// Bounds every tmpfs of a side container (a job, a toolbox helper) to `bytes`.
fn bound_tmpfs(spec: &mut SpecGenerator, bytes: u64) {
    for m in spec.mounts.iter_mut().filter(|m| m.kind == "tmpfs") {
        m.options.push(format!("size={bytes}"));
    }
}

/// What every container's spec holds, from its plan.
fn base_spec(
    c: &ContainerSpec,
    seccomp_path: Option<&std::path::Path>,
    (uid, gid): (u64, u64),
) -> SpecGenerator {
    // The plan's argv is the whole process: its first word replaces the image's
    // ENTRYPOINT (libpod then ignores the image's CMD too).
    let (entrypoint, command) = match c.command.split_first() {
        Some((first, rest)) => (Some(vec![first.clone()]), rest.to_vec()),
        None => (None, Vec::new()),
    };
    let mut spec = SpecGenerator {
        name: c.name.clone(),
        image: c.image.clone(),
        entrypoint,
        command,
        work_dir: c.workdir.clone(),
        init: c.init,
        init_container_type: c.init_container.then(|| "always".to_string()),
        labels: c.labels.clone(),
        env: c.env.clone(),
        cap_drop: c.cap_drop.clone(),
        cap_add: c.cap_add.clone(),
        no_new_privileges: c.no_new_privileges,
        volumes: volumes(c),
        stop_timeout: STOP_TIMEOUT_SECS,
        user: c.user.clone(),
        // Files under /run/secrets, owned by the container's user, mode from the plan.
        secrets: c
            .secrets
            .iter()
            .map(|s| SecretMount {
                source: s.name.clone(),
                target: s.target.clone(),
                uid,
                gid,
                mode: s.mode,
            })
            .collect(),
        read_only_filesystem: c.read_only,
        mounts: mounts(c),
        resource_limits: resource_limits(c),
        ..SpecGenerator::default()
    };
    if let (Seccomp::Agent, Some(path)) = (&c.seccomp, seccomp_path) {
        let path = path.display().to_string();
        spec.seccomp_policy = Some("default".into());
        spec.seccomp_profile_path = Some(path.clone());
        // Podman reports a profile in inspect's SecurityOpt only through this annotation
        // (its CLI sets both). Whether the profile really holds is tested from inside the
        // agent by tests/security (unshare must fail).
        spec.annotations.insert(SECCOMP_ANNOTATION.into(), path);
    }
    if c.role == Role::Workspace {
        apply_repo_security_opts(&mut spec, &c.security_opt);
    }
    apply_extras(&mut spec, &c.extra);
    spec
}

/// Named volumes (read-only when the plan says so), then the shared ones: read-only,
/// and never filled from the container's image (`nocopy`).
fn volumes(c: &ContainerSpec) -> Vec<NamedVolume> {
    c.mounts
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .map(|m| NamedVolume {
            name: m.source.clone(),
            dest: m.target.clone(),
            options: if m.read_only {
                vec!["ro".into()]
            } else {
                vec![]
            },
        })
        .chain(c.shared_mounts.iter().map(|m| NamedVolume {
            name: m.volume.clone(),
            dest: m.target.clone(),
            options: vec!["ro".into(), "nocopy".into()],
        }))
        .collect()
}

/// The plan's tmpfs folders, then the repo's binds and tmpfs mounts.
fn mounts(c: &ContainerSpec) -> Vec<SpecMount> {
    let tmpfs = |d: &str, mode: &str| SpecMount {
        destination: d.to_string(),
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options: vec![mode.into(), "nosuid".into(), "nodev".into()],
    };
    let mut out: Vec<SpecMount> = c.tmpfs.iter().map(|d| tmpfs(d, "rw")).collect();
    for m in c.mounts.iter().filter(|m| m.kind != MountKind::Volume) {
        let mode = if m.read_only { "ro" } else { "rw" };
        out.push(if m.kind == MountKind::Tmpfs {
            tmpfs(&m.target, mode)
        } else {
            SpecMount {
                destination: m.target.clone(),
                kind: m.kind.as_str().to_string(),
                source: m.source.clone(),
                options: vec![mode.into(), "rbind".into()],
            }
        });
    }
    out
}

/// pids, memory and CPU limits; `None` when the plan sets none.
fn resource_limits(c: &ContainerSpec) -> Option<ResourceLimits> {
    let limits = ResourceLimits {
        pids: c.pids_limit.map(|limit| Limit { limit }),
        memory: c.memory_limit.map(|limit| Limit { limit }),
        // A quota of so many 100 ms periods' worth of CPU time.
        cpu: c.cpu_millis.map(|millis| CpuLimit {
            quota: millis * 100,
            period: 100_000,
        }),
    };
    (limits != ResourceLimits::default()).then_some(limits)
}

/// The repo's own securityOpt (workspace only; consent was checked by the plan).
fn apply_repo_security_opts(spec: &mut SpecGenerator, opts: &[String]) {
    for o in opts {
        if o == "seccomp=unconfined" {
            spec.seccomp_profile_path = Some("unconfined".into());
        } else if o == "apparmor=unconfined" {
            spec.apparmor_profile = Some("unconfined".into());
        } else if let Some(l) = o.strip_prefix("label=") {
            spec.selinux_opts.push(l.to_string());
        }
    }
}

/// What the repo's runArgs/privileged add (workspace only).
fn apply_extras(spec: &mut SpecGenerator, x: &crate::plan::Extras) {
    spec.privileged = x.privileged;
    spec.devices = x
        .devices
        .iter()
        .map(|d| Device { path: d.clone() })
        .collect();
    spec.shm_size = x.shm_size;
    spec.r_limits = x
        .ulimits
        .iter()
        .map(|u| Rlimit {
            kind: u.name.clone(),
            soft: u.soft,
            hard: u.hard,
        })
        .collect();
    spec.sysctl = x.sysctls.clone();
    if let Some(h) = &x.hostname {
        spec.hostname = Some(h.clone());
    }
    spec.oci_runtime = x.runtime.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The plans whose specs are pinned in fixtures/spec-*.json: the test plan, and one
    /// with every repo setting the spec maps (consented), the bundled image mounted
    /// into another image, and service-gator.
    /// The fixtures predate the network's containers (checked by
    /// `the_network_containers_are_sent_as_planned`): `full` keeps the pod they describe.
    fn fixture_input() -> crate::plan::PlanInput {
        let mut i = crate::plan::tests_support::input();
        i.network.mode = crate::plan::input::NetworkMode::Full;
        i
    }

    fn spec_cases() -> Vec<(&'static str, crate::plan::PodPlan)> {
        let plain = crate::plan::build(&fixture_input()).expect("plan");
        let mut i = fixture_input();
        i.trust = Some("--trust".into());
        i.devcontainer.image = Some("localhost/other:1".into());
        i.devcontainer.privileged = Some(true);
        i.devcontainer.security_opt = Some(vec![
            "seccomp=unconfined".into(),
            "apparmor=unconfined".into(),
            "label=disable".into(),
        ]);
        i.devcontainer.run_args = Some(
            [
                "--device=/dev/fuse",
                "--dns=10.0.0.1",
                "--add-host=db:10.0.0.2",
                "--shm-size=1g",
                "--ulimit=nofile=1024:2048",
                "--sysctl=kernel.msgmax=65536",
                "--hostname=box",
                "--runtime=runc",
                "--tmpfs=/scratch",
                "-v=/srv/data:/data:ro",
            ]
            .map(String::from)
            .to_vec(),
        );
        i.devcontainer.forward_ports = Some(vec![serde_json::json!(8080)]);
        i.devcontainer.host_requirements = Some(serde_json::json!({"cpus": 2, "memory": "4gb"}));
        i.gator = Some(crate::plan::GatorInput {
            image: "localhost/gator:1".into(),
            scopes: crate::plan::gator::parse_scopes(
                &["github:octo/hello:create-draft".to_string()],
                false,
            )
            .expect("scopes"),
            gitlab_host: None,
            jira_host: None,
            jira_username: None,
            entrypoint: Some(vec!["service-gator".into()]),
        });
        let wide = crate::plan::build(&i).expect("wide plan");
        vec![("plain", plain), ("wide", wide)]
    }

    /// The spec of each case's pod and containers, as sent to libpod.
    fn specs_of(plan: &PodPlan) -> Value {
        let ports: Vec<(u16, u16)> = plan
            .pod
            .ports
            .iter()
            .map(|p| (p.container_port, 18000 + p.container_port % 1000))
            .collect();
        let mut out = serde_json::Map::new();
        let pod = pod_spec(plan, &ports).expect("pod spec");
        out.insert("pod".into(), serde_json::to_value(pod).expect("json"));
        let seccomp = std::path::Path::new("/tmp/devaipod-seccomp-x/agent.json");
        for c in &plan.containers {
            let spec = container_spec(&plan.pod, c, Some(seccomp), (1000, 1001));
            out.insert(
                c.role.as_str().into(),
                serde_json::to_value(spec).expect("json"),
            );
        }
        Value::Object(out)
    }

    /// The fixtures were written by the `json!` mapping these structs replace: the
    /// same keys and values must reach libpod.
    #[test]
    fn specs_send_libpod_what_the_json_mapping_sent() {
        let fixtures = [
            ("plain", include_str!("fixtures/spec-plain.json")),
            ("wide", include_str!("fixtures/spec-wide.json")),
        ];
        let cases = spec_cases();
        assert_eq!(cases.len(), fixtures.len());
        for ((case, plan), (name, fixture)) in cases.iter().zip(fixtures) {
            assert_eq!(*case, name);
            let mut want: Value = serde_json::from_str(fixture).expect("fixture");
            // The fixtures were written by devaipod 0.1.0; the label follows the crate.
            for obj in want.as_object_mut().expect("object").values_mut() {
                obj["labels"][crate::plan::labels::VERSION] = crate::VERSION.into();
            }
            // The pod records its network (issue 16), which the fixtures predate.
            want["pod"]["labels"][crate::plan::labels::NETWORK] =
                serde_json::to_string(&plan.network).expect("json").into();
            // The workspace mounts devaipod-net for the SSH helpers (issue 17), and the
            // pod says so.
            // A privileged workspace gets no shared volume (they are every pod's).
            let privileged = want["workspace"]["privileged"] == true;
            if !privileged {
                want["pod"]["labels"][crate::plan::labels::HELPER] =
                    "/opt/devaipod-net/devaipod-net".into();
            }
            let volumes = want["workspace"]["volumes"]
                .as_array_mut()
                .expect("volumes");
            if privileged {
                volumes.retain(|v| v["Options"] != serde_json::json!(["ro", "nocopy"]));
            } else {
                volumes.push(serde_json::json!({"Name": "devaipod-net-0123456789ab", "Dest": "/opt/devaipod-net", "Options": ["ro", "nocopy"]}));
            }
            // The gator logs at info, and reads the agent's clone for its push tools
            // (issue 22).
            if let Some(g) = want.get_mut("gator") {
                g["env"]["RUST_LOG"] = "info".into();
                g["env"]["NO_COLOR"] = "1".into();
                let clone = want["agent"]["volumes"][0]["Dest"].clone();
                want["gator"]["volumes"] = serde_json::json!([{"Name": "devaipod-demo-agent-repo", "Dest": clone, "Options": ["ro"]}, {"Name": "devaipod-net-0123456789ab", "Dest": "/opt/devaipod-net", "Options": ["ro", "nocopy"]}]);
                // service-gator behind devaipod-net's logging relay, on the port after it.
                let scope = want["gator"]["command"][3].clone();
                want["gator"]["entrypoint"] = serde_json::json!(["/opt/devaipod-net/devaipod-net"]);
                want["gator"]["command"] = serde_json::json!([
                    "mcp-audit",
                    "--listen",
                    "127.0.0.1:8765",
                    "--upstream",
                    "127.0.0.1:8766",
                    "--",
                    "service-gator",
                    "--mcp-server",
                    "127.0.0.1:8766",
                    "--scope",
                    scope
                ]);
            }
            let got = specs_of(plan);
            for (key, want) in want.as_object().expect("object") {
                assert_eq!(&got[key], want, "{case}: {key}");
            }
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn the_network_containers_are_sent_as_planned() {
        use serde_json::json;
        let plan = crate::plan::build(&crate::plan::tests_support::input()).expect("plan");
        let seccomp = std::path::Path::new("/tmp/devaipod-seccomp-x/agent.json");
        let spec = |r: Role| {
            let c = plan.container(r).expect("container");
            serde_json::to_value(container_spec(&plan.pod, c, Some(seccomp), (0, 0))).expect("json")
        };
        let rules = spec(Role::Rules);
        assert_eq!(rules["init_container_type"], "always");
        assert_eq!(rules["cap_drop"], json!(["ALL"]));
        assert_eq!(rules["cap_add"], json!(["NET_ADMIN"]));
        assert_eq!(rules["no_new_privileges"], true);
        assert_eq!(rules["read_only_filesystem"], true);
        assert_eq!(rules["pod"], "devaipod-demo");
        let proxy = spec(Role::Proxy);
        assert!(proxy.get("init_container_type").is_none());
        assert_eq!(proxy["cap_add"], json!([]));
        assert_eq!(proxy["user"], "4097:4097");
        let agent = spec(Role::Agent);
        let volumes = agent["volumes"].as_array().expect("volumes");
        assert!(
            volumes.contains(&json!({"Name": "devaipod-net-0123456789ab", "Dest": "/opt/devaipod-net", "Options": ["ro", "nocopy"]})),
            "{volumes:?}"
        );
        assert!(agent.get("image_volumes").is_none());
    }

    #[test]
    fn job_specs_have_no_network_and_no_pod() {
        let plan = crate::plan::build(&crate::plan::tests_support::input()).expect("plan");
        let agent = plan.container(Role::Agent).expect("agent");
        let seccomp = std::path::Path::new("/tmp/devaipod-seccomp-x/agent.json");
        let v = serde_json::to_value(job_spec(agent, Some(seccomp), 4096)).expect("json");
        assert_eq!(v["netns"]["nsmode"], "none");
        assert!(v.get("pod").is_none() && v.get("hostname").is_none());
        assert_eq!(v["no_new_privileges"], true);
        assert_eq!(
            v["seccomp_profile_path"],
            "/tmp/devaipod-seccomp-x/agent.json"
        );
        let tmpfs = v["mounts"].as_array().expect("mounts");
        assert!(!tmpfs.is_empty());
        for m in tmpfs {
            assert_eq!(
                m["options"].as_array().expect("options").last(),
                Some(&"size=4096".into()),
                "{m}"
            );
        }
    }
}
