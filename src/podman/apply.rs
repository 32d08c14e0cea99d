//! Applying a [`PodPlan`]: create volumes, pod and containers, verify the hardening
//! podman actually applied, put the repo clone into the workspace volume, start the pod
//! and wait until the agent answers. Any failure or cancellation removes everything this
//! `up` created (found by label), so nothing half-made is left behind.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::Engine;
use crate::git;
use crate::plan::{
    ContainerSpec, ImageState, MountKind, PodPlan, PodSpec, Role, Seccomp, SecretSource, labels,
};
use crate::progress::Progress;
use crate::secret::SecretValue;

/// Set when the user asked devaipod to stop (Ctrl-C, SIGTERM).
pub type Cancel = tokio::sync::watch::Receiver<bool>;

/// One created container, as `up --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedContainer {
    pub role: Role,
    pub name: String,
    pub id: String,
}

/// What `up` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub name: String,
    pub pod: String,
    pub containers: Vec<CreatedContainer>,
}

/// The libpod PodSpecGenerator for the plan's pod.
/// Host ports for the plan's published ports: the one asked for, else the container's
/// own if it is free on the host's loopback, else any free one.
pub fn choose_host_ports(ports: &[crate::plan::PortSpec]) -> Result<Vec<(u16, u16)>> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut taken: Vec<u16> = Vec::new();
    let mut out = Vec::new();
    for p in ports {
        let host = match p.host_port {
            Some(h) => h,
            None if free(p.container_port) && !taken.contains(&p.container_port) => {
                p.container_port
            }
            None => {
                let l = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .context("finding a free port on 127.0.0.1")?;
                l.local_addr()?.port()
            }
        };
        taken.push(host);
        out.push((p.container_port, host));
    }
    Ok(out)
}

pub fn pod_spec(plan: &PodPlan, ports: &[(u16, u16)]) -> Value {
    let mut labels = plan.pod.labels.clone();
    // `start` runs postStartCommand as it was at `up`, and the user it ran as.
    if !plan.lifecycle.start.is_empty() {
        let start = json!({
            "steps": plan.lifecycle.start,
            "user": plan.repo.owner,
            "workdir": plan.repo.workdir,
            "env": plan.lifecycle.env,
        });
        labels.insert(POST_START_LABEL.into(), start.to_string());
    }
    let mut spec = json!({
        "name": plan.pod.name,
        "hostname": plan.pod.hostname,
        "labels": labels,
        "shared_namespaces": plan.pod.share,
    });
    if !ports.is_empty() {
        let mappings: Vec<Value> = ports
            .iter()
            .zip(&plan.pod.ports)
            .map(|((c, h), p)| {
                json!({"container_port": c, "host_port": h, "host_ip": "127.0.0.1", "protocol": p.protocol})
            })
            .collect();
        spec["portmappings"] = json!(mappings);
    }
    // /dev/shm's size is the pod's on Podman 4.3 (a container's own is ignored).
    if let Some(shm) = plan
        .container(Role::Workspace)
        .and_then(|c| c.extra.shm_size)
    {
        spec["shm_size"] = json!(shm);
    }
    if !plan.pod.dns.is_empty() {
        spec["dns_server"] = json!(plan.pod.dns);
    }
    if !plan.pod.add_hosts.is_empty() {
        spec["hostadd"] = json!(plan.pod.add_hosts);
    }
    spec
}

/// The shims installed into the workspace (shims/).
pub const SHIM_OC: &str = include_str!("../../shims/oc");
pub const SHIM_OPENCODE_AGENT: &str = include_str!("../../shims/opencode-agent");
pub const SHIM_PROFILE: &str = include_str!("../../shims/profile.sh");

/// The pod label holding postStartCommand for `start`.
pub const POST_START_LABEL: &str = "io.devaipod.post-start";

/// The agent's seccomp profile (containers/seccomp/agent.json), embedded so that no
/// file of unknown version on the host decides the agent's syscalls.
pub const AGENT_SECCOMP: &str = include_str!("../../containers/seccomp/agent.json");

/// The annotation Podman's inspect turns into `SecurityOpt: seccomp=PATH`.
const SECCOMP_ANNOTATION: &str = "io.podman.annotations.seccomp";

/// The agent profile written to a file for the engine to read at create time (Podman
/// copies the profile into the container's configuration; the file is removed after).
pub struct SeccompFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl SeccompFile {
    pub fn write() -> Result<Self> {
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

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The libpod SpecGenerator for one container. Every key here is checked against the
/// created container by [`verify_container`], because libpod ignores unknown keys.
pub fn container_spec(
    pod: &PodSpec,
    c: &ContainerSpec,
    seccomp_path: Option<&std::path::Path>,
    (owner_uid, owner_gid): (u64, u64),
) -> Value {
    let volumes: Vec<Value> = c
        .mounts
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .map(|m| {
            let options: Vec<&str> = if m.read_only { vec!["ro"] } else { vec![] };
            json!({ "Name": m.source, "Dest": m.target, "Options": options })
        })
        .collect();
    // Binds and tmpfs (from the repo's "mounts") join the tmpfs mounts below.
    let other_mounts: Vec<Value> = c
        .mounts
        .iter()
        .filter(|m| m.kind != MountKind::Volume)
        .map(|m| {
            let mut options = vec![if m.read_only { "ro" } else { "rw" }];
            if m.kind == MountKind::Tmpfs {
                options.extend(["nosuid", "nodev"]);
            } else {
                options.push("rbind");
            }
            let source = if m.kind == MountKind::Tmpfs {
                "tmpfs"
            } else {
                m.source.as_str()
            };
            json!({"destination": m.target, "type": m.kind, "source": source, "options": options})
        })
        .collect();
    let mut spec = json!({
        "name": c.name,
        "pod": pod.name,
        // Only the network is shared, so each container has its own UTS namespace:
        // give it the workspace's name rather than a container id.
        "hostname": pod.hostname,
        "image": c.image,
        "command": c.command,
        "work_dir": c.workdir,
        "init": c.init,
        "labels": c.labels,
        "env": c.env,
        "cap_drop": c.cap_drop,
        "cap_add": c.cap_add,
        "no_new_privileges": c.no_new_privileges,
        "volumes": volumes,
        "stop_timeout": 5,
    });
    if let Some(user) = &c.user {
        spec["user"] = json!(user);
    }
    if !c.secrets.is_empty() {
        // Files under /run/secrets, owned by the container's user, mode from the plan.
        let secrets: Vec<Value> = c
            .secrets
            .iter()
            .map(|s| {
                json!({"Source": s.name, "Target": s.target, "UID": owner_uid,
                       "GID": owner_gid, "Mode": s.mode})
            })
            .collect();
        spec["secrets"] = json!(secrets);
    }
    if let (Seccomp::Agent, Some(path)) = (&c.seccomp, seccomp_path) {
        spec["seccomp_policy"] = json!("default");
        spec["seccomp_profile_path"] = json!(path.display().to_string());
        // Podman reports a profile in inspect's SecurityOpt only through this annotation
        // (its CLI sets both). Whether the profile really holds is tested from inside the
        // agent by tests/security (unshare must fail).
        spec["annotations"] = json!({ SECCOMP_ANNOTATION: path.display().to_string() });
    }
    if c.read_only {
        spec["read_only_filesystem"] = json!(true);
    }
    let mut mounts: Vec<Value> = c
        .tmpfs
        .iter()
        .map(|d| {
            json!({"destination": d, "type": "tmpfs", "source": "tmpfs",
                   "options": ["rw", "nosuid", "nodev"]})
        })
        .collect();
    mounts.extend(other_mounts);
    if !mounts.is_empty() {
        spec["mounts"] = json!(mounts);
    }
    let mut limits = serde_json::Map::new();
    if let Some(p) = c.pids_limit {
        limits.insert("pids".into(), json!({ "limit": p }));
    }
    if let Some(m) = c.memory_limit {
        limits.insert("memory".into(), json!({ "limit": m }));
    }
    if let Some(millis) = c.cpu_millis {
        // A quota of so many 100 ms periods' worth of CPU time.
        limits.insert(
            "cpu".into(),
            json!({ "quota": millis * 100, "period": 100_000 }),
        );
    }
    if !limits.is_empty() {
        spec["resource_limits"] = Value::Object(limits);
    }
    // The repo's own settings (workspace only; consent was checked by the plan).
    if c.role == Role::Workspace {
        for o in &c.security_opt {
            if o == "seccomp=unconfined" {
                spec["seccomp_profile_path"] = json!("unconfined");
            } else if o == "apparmor=unconfined" {
                spec["apparmor_profile"] = json!("unconfined");
            } else if let Some(l) = o.strip_prefix("label=") {
                let mut opts = spec["selinux_opts"].as_array().cloned().unwrap_or_default();
                opts.push(json!(l));
                spec["selinux_opts"] = json!(opts);
            }
        }
    }
    if !c.image_mounts.is_empty() {
        let iv: Vec<Value> = c
            .image_mounts
            .iter()
            .map(|(src, dst)| json!({"source": src, "destination": dst, "rw": false}))
            .collect();
        spec["image_volumes"] = json!(iv);
    }
    let x = &c.extra;
    if x.privileged {
        spec["privileged"] = json!(true);
    }
    if !x.devices.is_empty() {
        let devices: Vec<Value> = x.devices.iter().map(|d| json!({ "path": d })).collect();
        spec["devices"] = json!(devices);
    }
    if let Some(shm) = x.shm_size {
        spec["shm_size"] = json!(shm);
    }
    if !x.ulimits.is_empty() {
        let r: Vec<Value> = x
            .ulimits
            .iter()
            .map(|u| {
                json!({"type": u.name,
                       "soft": u.soft, "hard": u.hard})
            })
            .collect();
        spec["r_limits"] = json!(r);
    }
    if !x.sysctls.is_empty() {
        spec["sysctl"] = json!(x.sysctls);
    }
    if let Some(h) = &x.hostname {
        spec["hostname"] = json!(h);
    }
    if let Some(r) = &x.runtime {
        spec["oci_runtime"] = json!(r);
    }
    spec
}

/// Whether the engine enforces pids/memory limits: rootless Podman on cgroup v1 ignores
/// them (with a warning). The engine is local, so the host's cgroup mode is its mode.
pub fn limits_enforced(rootless: bool) -> bool {
    let cgroup2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    !rootless || cgroup2
}

/// Checks that podman applied what the spec asked for, from the container's inspect
/// JSON: capabilities, no-new-privileges, user, init and mounts.
pub fn verify_container(c: &ContainerSpec, inspect: &Value, limits_enforced: bool) -> Result<()> {
    let name = &c.name;
    let host = &inspect["HostConfig"];
    let security_opts: Vec<&str> = host["SecurityOpt"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if c.seccomp == Seccomp::Agent
        && !security_opts
            .iter()
            .any(|o| o.starts_with("seccomp=") && *o != "seccomp=unconfined")
    {
        bail!(
            "hardening check failed for {name}: the agent seccomp profile is not applied (SecurityOpt {security_opts:?})"
        );
    }
    if c.read_only && host["ReadonlyRootfs"].as_bool() != Some(true) {
        bail!("hardening check failed for {name}: the root filesystem is not read-only");
    }
    if limits_enforced {
        if let Some(p) = c.pids_limit
            && host["PidsLimit"].as_i64() != Some(p)
        {
            bail!(
                "hardening check failed for {name}: pids limit is {}, expected {p}",
                host["PidsLimit"]
            );
        }
        if let Some(millis) = c.cpu_millis
            && host["CpuQuota"].as_i64() != Some(millis * 100)
        {
            bail!(
                "hardening check failed for {name}: cpu quota is {}, expected {}",
                host["CpuQuota"],
                millis * 100
            );
        }
        if let Some(m) = c.memory_limit
            && host["Memory"].as_i64() != Some(m)
        {
            bail!(
                "hardening check failed for {name}: memory limit is {}, expected {m}",
                host["Memory"]
            );
        }
    }
    if c.cap_drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        let effective: Vec<&str> = inspect["EffectiveCaps"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let unexpected: Vec<&str> = effective
            .iter()
            .copied()
            .filter(|cap| !c.cap_add.iter().any(|a| cap.eq_ignore_ascii_case(a)))
            .collect();
        if !unexpected.is_empty() {
            bail!(
                "hardening check failed for {name}: it has capabilities {unexpected:?} although all were dropped"
            );
        }
    }
    if c.no_new_privileges {
        let opts: Vec<&str> = host["SecurityOpt"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !opts
            .iter()
            .any(|o| *o == "no-new-privileges" || *o == "no-new-privileges:true")
        {
            bail!(
                "hardening check failed for {name}: no-new-privileges is not set (SecurityOpt {opts:?})"
            );
        }
    }
    if let Some(user) = &c.user {
        let got = inspect["Config"]["User"].as_str().unwrap_or_default();
        if got != user {
            bail!("check failed for {name}: it runs as user {got:?}, expected {user:?}");
        }
    }
    let x = &c.extra;
    if x.privileged && host["Privileged"].as_bool() != Some(true) {
        bail!("check failed for {name}: it is not privileged although the repo asked for it");
    }
    if !x.privileged && host["Privileged"].as_bool() == Some(true) {
        bail!("hardening check failed for {name}: it is privileged");
    }
    if let Some(shm) = x.shm_size
        && host["ShmSize"].as_i64() != Some(shm)
    {
        bail!(
            "check failed for {name}: /dev/shm is {} bytes, expected {shm}",
            host["ShmSize"]
        );
    }
    for u in &x.ulimits {
        let want = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        let ok = host["Ulimits"].as_array().is_some_and(|a| {
            a.iter().any(|l| {
                l["Name"].as_str() == Some(want.as_str())
                    && l["Soft"].as_i64() == Some(u.soft)
                    && l["Hard"].as_i64() == Some(u.hard)
            })
        });
        if !ok {
            bail!(
                "check failed for {name}: ulimit {}={}:{} is not applied ({})",
                u.name,
                u.soft,
                u.hard,
                host["Ulimits"]
            );
        }
    }
    // Podman 4.3's inspect does not show sysctls; tests/podman.rs reads them inside.
    if let Some(h) = &x.hostname
        && inspect["Config"]["Hostname"].as_str() != Some(h.as_str())
    {
        bail!("check failed for {name}: its hostname is not {h}");
    }
    if let Some(r) = &x.runtime
        && inspect["OCIRuntime"].as_str() != Some(r.as_str())
    {
        bail!(
            "check failed for {name}: it runs under {} rather than {r}",
            inspect["OCIRuntime"]
        );
    }
    if c.init && inspect["HostConfig"]["Init"].as_bool() != Some(true) {
        bail!("check failed for {name}: podman did not add the init process");
    }
    let mounts = inspect["Mounts"].as_array().cloned().unwrap_or_default();
    for (src, dst) in &c.image_mounts {
        let ok = mounts.iter().any(|x| {
            x["Type"].as_str() == Some("image")
                && x["Destination"].as_str() == Some(dst.as_str())
                && x["RW"].as_bool() == Some(false)
        });
        if !ok {
            bail!("check failed for {name}: the image {src} is not mounted read-only at {dst}");
        }
    }
    for m in &c.mounts {
        // Podman lists tmpfs mounts under HostConfig.Tmpfs, the rest under Mounts.
        let found = if m.kind == MountKind::Tmpfs {
            host["Tmpfs"].get(&m.target).is_some()
        } else {
            mounts.iter().any(|x| {
                x["Destination"].as_str() == Some(m.target.as_str())
                    && (m.kind != MountKind::Volume
                        || x["Name"].as_str() == Some(m.source.as_str()))
            })
        };
        if !found {
            bail!(
                "check failed for {name}: the {} mount {} is not at {}",
                m.kind,
                m.source,
                m.target
            );
        }
    }
    Ok(())
}

/// How many lines of a failed lifecycle command's output the error shows.
const LIFECYCLE_TAIL: usize = 20;

/// Runs lifecycle steps in the workspace, in order (an object's commands in parallel),
/// as the workspace's user in its folder, streaming their output. The first failure
/// stops the rest with its name, exit code and last lines.
pub async fn run_lifecycle(
    engine: &Engine,
    plan_container: &str,
    user: Option<&str>,
    workdir: &str,
    remote_env: &std::collections::BTreeMap<String, String>,
    steps: &[crate::plan::LifecycleStep],
    progress: &Progress,
) -> Result<()> {
    use crate::plan::Command;
    if steps.is_empty() {
        return Ok(());
    }
    // remoteEnv's ${containerEnv:VAR} refers to the container's own environment.
    let container_env: std::collections::BTreeMap<String, String> =
        engine.inspect_container(plan_container).await?["Config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
    let env: Vec<(String, String)> = remote_env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                crate::devcontainer::vars::substitute_container_env(v, &container_env),
            )
        })
        .collect();
    let env = &env;
    for step in steps {
        progress.step(&format!("running {}", step.property));
        let jobs: Vec<(String, Vec<String>)> = match &step.command {
            Command::Parallel(map) => map
                .iter()
                .map(|(k, c)| (format!("{}.{k}", step.property), c.argv()))
                .collect(),
            c => vec![(step.property.clone(), c.argv())],
        };
        let runs = jobs.iter().map(|(label, argv)| async move {
            let tail = std::sync::Mutex::new(std::collections::VecDeque::new());
            let on_line = |line: &str| {
                progress.line(&format!("[{label}] {line}"));
                if let Ok(mut t) = tail.lock() {
                    t.push_back(line.to_string());
                    if t.len() > LIFECYCLE_TAIL {
                        t.pop_front();
                    }
                }
            };
            let code = engine
                .exec_lines(plan_container, argv, user, workdir, env, &on_line)
                .await?;
            if code != 0 {
                let tail: Vec<String> = tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
                bail!(
                    "{label} failed with exit code {code} in {plan_container}\n--- its last lines ---\n{}",
                    tail.join("\n")
                );
            }
            Ok(())
        });
        futures_util::future::try_join_all(runs).await?;
    }
    Ok(())
}

/// Reads the status of each hardened container's PID 1 and checks what the kernel
/// actually applied: capabilities, no-new-privileges and seccomp. It is read from the
/// host's /proc (the engine is local): an exec session would need `cat` in the image
/// and, on Podman 4.3, makes removing the container seconds slower.
async fn verify_inside(engine: &Engine, plan: &PodPlan) -> Result<()> {
    for c in plan
        .containers
        .iter()
        .filter(|c| c.no_new_privileges || !c.cap_drop.is_empty())
    {
        let inspect = engine.inspect_container(&c.name).await?;
        let Some(pid) = inspect["State"]["Pid"].as_i64().filter(|p| *p > 0) else {
            bail!(
                "{} is not running, so its hardening cannot be checked",
                c.name
            );
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| {
            format!(
                "reading the status of {}'s first process (pid {pid})",
                c.name
            )
        })?;
        check_status(c, &status)?;
    }
    Ok(())
}

/// Checks a /proc/PID/status text against the container's plan.
pub fn check_status(c: &ContainerSpec, status: &str) -> Result<()> {
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let name = &c.name;
    if c.cap_drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) && c.cap_add.is_empty() {
        for set in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
            let v = field(set);
            if v.is_empty() || !v.trim_start_matches('0').is_empty() {
                bail!("hardening check failed inside {name}: {set} {v}, expected no capabilities");
            }
        }
    }
    if c.no_new_privileges && field("NoNewPrivs:") != "1" {
        bail!(
            "hardening check failed inside {name}: NoNewPrivs is {:?}",
            field("NoNewPrivs:")
        );
    }
    if c.seccomp == Seccomp::Agent && field("Seccomp:") != "2" {
        bail!(
            "hardening check failed inside {name}: Seccomp is {:?}, expected 2 (filter)",
            field("Seccomp:")
        );
    }
    Ok(())
}

/// Resolves a user spec (`NAME`, `UID`, `UID:GID`, `NAME:GROUP`) to numeric ids using the
/// container's /etc/passwd and /etc/group.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<(u64, u64)> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup_passwd = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == name)
                .then(|| (f[2].parse::<u64>().ok(), f[3].parse::<u64>().ok()))
        })
    };
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(uid) => {
            let gid = passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[2].parse::<u64>().ok() == Some(uid))
                    .then(|| f[3].parse::<u64>().ok())
                    .flatten()
            });
            (uid, gid.unwrap_or(uid))
        }
        Err(_) => match lookup_passwd(user) {
            Some((Some(uid), Some(gid))) => (uid, gid),
            _ => bail!("user {user:?} does not exist in the image's /etc/passwd"),
        },
    };
    let gid = match grp {
        None => primary_gid,
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse::<u64>().ok())
                        .flatten()
                })
                .ok_or_else(|| anyhow!("group {g:?} does not exist in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// Runs `fut` unless cancellation is requested first.
async fn cancellable<T>(
    cancel: &mut Cancel,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if *cancel.borrow() {
        return Err(crate::Interrupted.into());
    }
    tokio::select! {
        r = fut => r,
        _ = cancel.wait_for(|c| *c) => Err(crate::Interrupted.into()),
    }
}

/// Creates everything in the plan and waits for the agent. On any error (or
/// cancellation) removes what was created before returning the error.
/// The values of the plan's secrets that come from devaipod's environment, by podman
/// secret name.
pub type SecretValues = std::collections::BTreeMap<String, SecretValue>;

pub async fn apply(
    engine: &Engine,
    plan: &PodPlan,
    values: &SecretValues,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<Applied> {
    if let ImageState::Missing { note } = &plan.image.state {
        bail!("image {} is not available: {note}", plan.image.reference);
    }
    let name = plan.name.as_str();
    if engine.pod_exists(&plan.pod.name).await? {
        bail!(
            "pod {} already exists: attach to it, remove it with `devaipod delete {name}`, or choose another --name",
            plan.pod.name
        );
    }
    let leftovers = engine.volumes_with_label(labels::POD, name).await?;
    if !leftovers.is_empty() {
        bail!(
            "volumes {leftovers:?} are labelled for {name} but there is no pod: they are left over from an earlier run; remove them with `devaipod delete {name} --force` or choose another --name"
        );
    }
    for c in &plan.containers {
        for r in &c.secrets {
            let ours = plan.secrets.iter().any(|s| s.name == r.name);
            if !ours && !engine.secret_exists(&r.name).await? {
                bail!(
                    "podman secret {} (named in your devaipod configuration for {}) does not exist: create it with `podman secret create {} FILE`",
                    r.name,
                    r.target,
                    r.name
                );
            }
        }
    }
    for secret in &plan.secrets {
        if engine.secret_exists(&secret.name).await? {
            bail!(
                "secret {} is left over from an earlier run of {name}; remove it with `devaipod delete {name} --force` or choose another --name",
                secret.name
            );
        }
    }
    // From here on, everything labelled for `name` was made by this run.
    let result = create_and_start(engine, plan, values, progress, cancel).await;
    if let Err(e) = result {
        progress.step(&format!(
            "rolling back: removing what was created for {name}"
        ));
        match engine.remove_labelled(name).await {
            Ok(_) => progress.finish_step(),
            Err(re) => {
                return Err(e.context(format!(
                    "and the rollback failed too ({re:#}); run `devaipod delete {name} --force`"
                )));
            }
        }
        return Err(e);
    }
    result
}

async fn create_and_start(
    engine: &Engine,
    plan: &PodPlan,
    values: &SecretValues,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<Applied> {
    let repo_root = plan.repo.host_path.clone();
    let head = plan.repo.head.clone();
    let branch = plan.repo.branch.clone();
    // The host-side clone runs while podman creates the objects.
    let clone = tokio::task::spawn_blocking(move || {
        let info = git::RepoInfo {
            root: repo_root,
            head,
            branch,
            origin: None,
            uncommitted: 0,
        };
        let origin = git::RepoInfo::detect(&info.root)
            .ok()
            .and_then(|i| i.origin);
        git::clone_head(&git::RepoInfo { origin, ..info })
    });

    progress.step("creating volumes and pod");
    let host_ports = choose_host_ports(&plan.pod.ports)?;
    let volumes = plan
        .volumes
        .iter()
        .map(|v| async move { engine.create_volume(&v.name, &json!(v.labels)).await });
    let create_volumes = async {
        futures_util::future::try_join_all(volumes)
            .await
            .context("creating volumes")
    };
    let create_pod = async {
        engine
            .create_pod(&pod_spec(plan, &host_ports))
            .await
            .with_context(|| format!("creating pod {}", plan.pod.name))
    };
    let create_secrets = async {
        for secret in &plan.secrets {
            let value = match &secret.source {
                // `up` may have made it already (it hands the task over with it).
                SecretSource::Generated => values
                    .get(&secret.name)
                    .cloned()
                    .unwrap_or_else(SecretValue::generate),
                SecretSource::AgentConfig => SecretValue::new(plan.agent_config.content.clone()),
                SecretSource::Environment { variable } => values
                    .get(&secret.name)
                    .cloned()
                    .ok_or_else(|| anyhow!("no value for secret {} ({variable})", secret.name))?,
            };
            engine
                .create_secret(&secret.name, &value, &secret.labels)
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    cancellable(cancel, async {
        tokio::try_join!(create_volumes, create_pod, create_secrets)
    })
    .await?;

    progress.step("creating containers");
    let seccomp = SeccompFile::write()?;
    let enforced = limits_enforced(engine.rootless());
    if !enforced
        && plan
            .containers
            .iter()
            .any(|c| c.pids_limit.is_some() || c.memory_limit.is_some() || c.cpu_millis.is_some())
    {
        progress.warn("rootless Podman on cgroup v1 ignores pids, memory and cpu limits: the containers run without them on this host");
    }
    let seccomp_path = seccomp.path();
    let create = async |c: &ContainerSpec, owner: (u64, u64)| {
        let id = engine
            .create_container(&container_spec(&plan.pod, c, Some(seccomp_path), owner))
            .await
            .with_context(|| format!("creating container {}", c.name))?;
        let inspect = engine.inspect_container(&c.name).await?;
        verify_container(c, &inspect, enforced)?;
        Ok::<_, anyhow::Error>(CreatedContainer {
            role: c.role,
            name: c.name.clone(),
            id,
        })
    };
    let workspace = plan
        .container(Role::Workspace)
        .ok_or_else(|| anyhow!("the plan has no workspace container"))?;
    let agent = plan
        .container(Role::Agent)
        .ok_or_else(|| anyhow!("the plan has no agent container"))?;
    // The agent comes first: its uid is fixed, and its image's /etc/passwd (the same
    // image as the workspace's) tells whose the workspace's files and secrets are.
    let agent_ids = (
        u64::from(crate::plan::AGENT_UID),
        u64::from(crate::plan::AGENT_UID),
    );
    let mut created = vec![cancellable(cancel, create(agent, agent_ids)).await?];
    let (uid, gid) = match &plan.repo.owner {
        None => (0, 0),
        Some(owner) => {
            let passwd = engine
                .read_file(&agent.name, "/etc/passwd")
                .await?
                .unwrap_or_default();
            let group = engine
                .read_file(&agent.name, "/etc/group")
                .await?
                .unwrap_or_default();
            resolve_user(
                owner,
                &String::from_utf8_lossy(&passwd),
                &String::from_utf8_lossy(&group),
            )
            .with_context(|| format!("resolving remoteUser/containerUser {owner:?}"))?
        }
    };
    let rest = plan
        .containers
        .iter()
        .filter(|c| c.role != Role::Agent)
        .map(|c| {
            let owner = if c.role == Role::Gator {
                let g = u64::from(crate::plan::gator::UID);
                (g, g)
            } else {
                (uid, gid)
            };
            create(c, owner)
        });
    created.extend(cancellable(cancel, futures_util::future::try_join_all(rest)).await?);
    // devaipod's files in the workspace (not the image): its git system config, the
    // shims (oc, opencode-agent) and the profile snippet that puts them on PATH.
    let gitconfig = crate::plan::workspace_gitconfig();
    let files = git::tar_files(&[
        (
            crate::plan::WORKSPACE_GITCONFIG.trim_start_matches('/'),
            gitconfig.as_bytes(),
            0o644,
        ),
        ("opt/devaipod/bin/oc", SHIM_OC.as_bytes(), 0o755),
        (
            "opt/devaipod/bin/opencode-agent",
            SHIM_OPENCODE_AGENT.as_bytes(),
            0o755,
        ),
        ("etc/profile.d/devaipod.sh", SHIM_PROFILE.as_bytes(), 0o644),
    ])?;
    engine.copy_into(&workspace.name, "/", files).await?;

    // Podman chowns a fresh volume's root to the user of whichever container mounts it
    // first, at start; copying the repo after the start makes its ownership final.
    progress.step("starting pod");
    cancellable(cancel, engine.start_pod(&plan.pod.name)).await?;

    progress.step("copying the repo into the workspace volume");
    let clone_dir = clone.await.context("the clone task failed")??;
    let repo_dir = clone_dir.path().join("repo");
    // The agent's clone first; then the workspace's, which knows the agent's as a remote.
    let agent_branch = plan.repo.agent_branch.clone();
    let agent_identity = (
        format!("devaipod agent ({})", plan.name),
        format!("agent@{}.devaipod.invalid", plan.name),
    );
    let host_branch = plan.repo.branch.clone();
    let host_head = plan.repo.head.clone();
    let (agent_tar, workspace_tar) = tokio::task::spawn_blocking(move || {
        let agent_id = u64::from(crate::plan::AGENT_UID);
        // The agent works on its own branch, devaipod/NAME, from the host's HEAD.
        git::agent_branch(
            &repo_dir,
            &agent_branch,
            &agent_identity.0,
            &agent_identity.1,
        )?;
        let agent_tar = git::tar_tree(&repo_dir, agent_id, agent_id)?;
        git::leave_agent_branch(&repo_dir, &agent_branch, host_branch.as_deref(), &host_head)?;
        git::add_remote(
            &repo_dir,
            crate::plan::AGENT_REMOTE,
            crate::plan::AGENT_REPO_IN_WORKSPACE,
        )?;
        let workspace_tar = git::tar_tree(&repo_dir, uid, gid)?;
        Ok::<_, anyhow::Error>((agent_tar, workspace_tar))
    })
    .await
    .context("the packing task failed")??;
    drop(clone_dir);
    let copied = cancellable(cancel, async {
        tokio::try_join!(
            engine.copy_into(&workspace.name, &plan.repo.workspace_folder, workspace_tar),
            engine.copy_into(&agent.name, &plan.repo.workspace_folder, agent_tar),
        )
    })
    .await;
    if let Err(e) = copied {
        // An agent that died right after the start makes copying into it fail; its own
        // failure is the one worth reporting.
        return Err(super::probe::explain_agent_death(engine, &agent.name)
            .await
            .unwrap_or(e));
    }

    progress.step("waiting for the agent to answer");
    drop(seccomp);
    let target = super::probe::Target::of_plan(plan)?;
    let ready = super::probe::wait_ready(engine, &target, cancel);
    let verified = verify_inside(engine, plan);
    let lifecycle = run_lifecycle(
        engine,
        &workspace.name,
        plan.repo.owner.as_deref(),
        &plan.repo.workdir,
        &plan.lifecycle.env,
        &plan.lifecycle.create,
        progress,
    );
    // All run together; when the agent dies, the readiness error (with its logs) is the
    // one that explains it.
    let (ready, verified, lifecycle) = tokio::join!(ready, verified, lifecycle);
    ready?;
    verified?;
    // The gator answers its health check before `up` returns, so the agent's first use
    // of its tools finds it listening.
    if let Some(g) = plan.container(Role::Gator) {
        progress.step("waiting for service-gator to answer");
        let url = format!("http://127.0.0.1:{}/healthz", crate::plan::gator::PORT);
        let target = super::probe::Target {
            pod: &plan.pod.name,
            agent: &g.name,
            url: &url,
            timeout: std::time::Duration::from_secs(plan.readiness.timeout_secs),
        };
        super::probe::wait_ready(engine, &target, cancel)
            .await
            .context("waiting for service-gator")?;
    }
    // A workspace whose command ended (overrideCommand: false and an image CMD that
    // exits) explains a failed lifecycle command better than the exec error does.
    let ws_state = engine.inspect_container(&workspace.name).await?;
    if ws_state["State"]["Running"].as_bool() != Some(true) {
        let logs = engine
            .logs_tail(&workspace.name, 20)
            .await
            .unwrap_or_default();
        bail!(
            "the workspace's command ended (exit code {}) right after the start, so the workspace cannot be used; with \"overrideCommand\": false its image's ENTRYPOINT/CMD must keep running\n--- its last lines ---\n{}",
            ws_state["State"]["ExitCode"],
            logs.trim_end()
        );
    }
    lifecycle?;
    progress.finish_step();

    let mut containers = created;
    containers.sort_by_key(|c| c.role.as_str());
    Ok(Applied {
        name: plan.name.to_string(),
        pod: plan.pod.name.clone(),
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndev:x:1000:1000:dev:/home/dev:/bin/bash\nsvc:x:998:50::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\ndev:x:1000:\nstaff:x:50:\n";

    fn agent() -> ContainerSpec {
        let input = crate::plan::tests_support::input();
        crate::plan::build(&input)
            .expect("plan")
            .container(Role::Agent)
            .cloned()
            .expect("agent")
    }

    #[test]
    fn status_checks_catch_what_the_kernel_did_not_apply() {
        let good = "Name:\tcatatonit\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let a = agent();
        assert!(check_status(&a, good).is_ok());
        let caps = good.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000400");
        assert!(format!("{:#}", check_status(&a, &caps).expect_err("caps")).contains("CapEff"));
        let nnp = good.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert!(check_status(&a, &nnp).is_err());
        let sec = good.replace("Seccomp:\t2", "Seccomp:\t0");
        assert!(check_status(&a, &sec).is_err());
    }

    #[test]
    fn inspect_checks_catch_silently_ignored_settings() {
        let a = agent();
        let mounts: Vec<Value> = a
            .mounts
            .iter()
            .map(|m| json!({"Name": m.source, "Destination": m.target}))
            .collect();
        let good = json!({
            "EffectiveCaps": [],
            "Config": {"User": a.user},
            "HostConfig": {"SecurityOpt": ["no-new-privileges", "seccomp=/tmp/p.json"],
                "ReadonlyRootfs": true, "PidsLimit": a.pids_limit, "Memory": a.memory_limit, "Init": true},
            "Mounts": mounts,
        });
        assert!(verify_container(&a, &good, true).is_ok());
        let mut v = good.clone();
        v["EffectiveCaps"] = json!(["CAP_NET_RAW"]);
        assert!(verify_container(&a, &v, true).is_err());
        let mut v = good.clone();
        v["HostConfig"]["SecurityOpt"] = json!(["seccomp=/tmp/p.json"]);
        assert!(
            verify_container(&a, &v, true).is_err(),
            "no-new-privileges missing"
        );
        let mut v = good.clone();
        v["HostConfig"]["SecurityOpt"] = json!(["no-new-privileges"]);
        assert!(verify_container(&a, &v, true).is_err(), "seccomp missing");
        let mut v = good.clone();
        v["HostConfig"]["ReadonlyRootfs"] = json!(false);
        assert!(verify_container(&a, &v, true).is_err());
        let mut v = good.clone();
        v["HostConfig"]["PidsLimit"] = json!(0);
        assert!(verify_container(&a, &v, true).is_err());
        assert!(
            verify_container(&a, &v, false).is_ok(),
            "limits not enforced: not checked"
        );
        let mut v = good;
        v["Mounts"] = json!([]);
        assert!(verify_container(&a, &v, true).is_err());
    }

    #[test]
    fn resolves_users() {
        assert_eq!(resolve_user("dev", PASSWD, GROUP).ok(), Some((1000, 1000)));
        assert_eq!(resolve_user("svc", PASSWD, GROUP).ok(), Some((998, 50)));
        assert_eq!(resolve_user("root", PASSWD, GROUP).ok(), Some((0, 0)));
        assert_eq!(resolve_user("1000", PASSWD, GROUP).ok(), Some((1000, 1000)));
        assert_eq!(resolve_user("4242", PASSWD, GROUP).ok(), Some((4242, 4242)));
        assert_eq!(
            resolve_user("dev:staff", PASSWD, GROUP).ok(),
            Some((1000, 50))
        );
        assert_eq!(resolve_user("1000:7", PASSWD, GROUP).ok(), Some((1000, 7)));
        assert!(resolve_user("nobody-here", PASSWD, GROUP).is_err());
        assert!(resolve_user("dev:nogroup", PASSWD, GROUP).is_err());
    }
}
