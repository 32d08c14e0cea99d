//! Verifying what Podman applied: after creation, each container's inspect is checked
//! against its plan (capabilities, no-new-privileges, seccomp, user, init, limits,
//! mounts and the repo's own settings), and once it runs, its first process's
//! /proc status shows what the kernel enforces. libpod ignores keys it does not know,
//! so this is the only proof that the spec took effect. Inspect is read into typed
//! structs whose security fields are required: an answer missing one fails.

use crate::plan::MountKind;
use anyhow::{Context, Result, anyhow, bail};

use super::Engine;
use super::inspect::ContainerInspect;
use crate::plan::{ContainerSpec, PodPlan, Seccomp};

/// Whether the engine enforces pids/memory limits: rootless Podman on cgroup v1 ignores
/// them (with a warning). `cgroup_version` is the engine's own answer (`podman info`'s
/// host.cgroupVersion), not this process's view of /sys/fs/cgroup, which differs inside
/// a container or toolbox. Anything but "v1" is verified, so an unknown answer fails
/// closed.
pub(crate) fn limits_enforced(rootless: bool, cgroup_version: &str) -> bool {
    !rootless || cgroup_version != "v1"
}

/// Inspects the created container `c` and checks it against its plan.
pub(crate) async fn verify_created(
    engine: &Engine,
    c: &ContainerSpec,
    limits_enforced: bool,
) -> Result<()> {
    let text = engine.inspect_container_text(&c.name).await?;
    verify_inspect_text(c, &text, limits_enforced)
}

/// [`verify_container`] on Podman's inspect answer as text: an answer that lacks a
/// field a check reads fails the check rather than reading as a default.
pub(crate) fn verify_inspect_text(
    c: &ContainerSpec,
    text: &str,
    limits_enforced: bool,
) -> Result<()> {
    let inspect: ContainerInspect = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "hardening check failed for {}: podman's inspect of it cannot be read ({e})",
            c.name
        )
    })?;
    verify_container(c, &inspect, limits_enforced)
}

/// Checks that podman applied what the spec asked for, from the container's inspect.
pub(crate) fn verify_container(
    c: &ContainerSpec,
    inspect: &ContainerInspect,
    limits_enforced: bool,
) -> Result<()> {
    verify_hardening(c, inspect)?;
    if limits_enforced {
        verify_limits(c, inspect)?;
    }
    verify_extras(c, inspect)?;
    verify_mounts(c, inspect)
}

/// Seccomp, read-only root, capabilities, no-new-privileges, user and init.
fn verify_hardening(c: &ContainerSpec, inspect: &ContainerInspect) -> Result<()> {
    let name = &c.name;
    let host = &inspect.host_config;
    let security_opts = &host.security_opt;
    if c.seccomp == Seccomp::Agent
        && !security_opts
            .iter()
            .any(|o| o.starts_with("seccomp=") && o != "seccomp=unconfined")
    {
        bail!(
            "hardening check failed for {name}: the agent seccomp profile is not applied (SecurityOpt {security_opts:?})"
        );
    }
    if c.read_only && !host.readonly_rootfs {
        bail!("hardening check failed for {name}: the root filesystem is not read-only");
    }
    if c.cap_drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        let unexpected: Vec<&str> = inspect
            .effective_caps
            .iter()
            .map(String::as_str)
            .filter(|cap| {
                let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
                !c.cap_add
                    .iter()
                    .any(|a| bare.eq_ignore_ascii_case(a.strip_prefix("CAP_").unwrap_or(a)))
            })
            .collect();
        if !unexpected.is_empty() {
            bail!(
                "hardening check failed for {name}: it has capabilities {unexpected:?} although all were dropped"
            );
        }
    }
    if c.no_new_privileges
        && !security_opts
            .iter()
            .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true")
    {
        bail!(
            "hardening check failed for {name}: no-new-privileges is not set (SecurityOpt {security_opts:?})"
        );
    }
    if let Some(user) = &c.user
        && inspect.config.user != *user
    {
        bail!(
            "check failed for {name}: it runs as user {:?}, expected {user:?}",
            inspect.config.user
        );
    }
    if c.init && !host.init {
        bail!("check failed for {name}: podman did not add the init process");
    }
    // Nothing of the image (its ENTRYPOINT) may run before or around devaipod's
    // command.
    let argv = inspect.argv();
    if argv != c.command {
        bail!(
            "hardening check failed for {name}: it would run {argv:?} instead of {:?} (an image ENTRYPOINT wrapping the command?)",
            c.command
        );
    }
    Ok(())
}

/// pids, CPU and memory limits (only where the engine enforces them).
fn verify_limits(c: &ContainerSpec, inspect: &ContainerInspect) -> Result<()> {
    let name = &c.name;
    let host = &inspect.host_config;
    if let Some(p) = c.pids_limit
        && host.pids_limit != p
    {
        bail!(
            "hardening check failed for {name}: pids limit is {}, expected {p}",
            host.pids_limit
        );
    }
    if let Some(millis) = c.cpu_millis
        && host.cpu_quota != millis * 100
    {
        bail!(
            "hardening check failed for {name}: cpu quota is {}, expected {}",
            host.cpu_quota,
            millis * 100
        );
    }
    if let Some(m) = c.memory_limit
        && host.memory != m
    {
        bail!(
            "hardening check failed for {name}: memory limit is {}, expected {m}",
            host.memory
        );
    }
    Ok(())
}

/// The repo's own settings: privileged (both ways), /dev/shm, ulimits, hostname,
/// runtime.
fn verify_extras(c: &ContainerSpec, inspect: &ContainerInspect) -> Result<()> {
    let name = &c.name;
    let host = &inspect.host_config;
    let x = &c.extra;
    if x.privileged && !host.privileged {
        bail!("check failed for {name}: it is not privileged although the repo asked for it");
    }
    if !x.privileged && host.privileged {
        bail!("hardening check failed for {name}: it is privileged");
    }
    if let Some(shm) = x.shm_size
        && host.shm_size != shm
    {
        bail!(
            "check failed for {name}: /dev/shm is {} bytes, expected {shm}",
            host.shm_size
        );
    }
    for u in &x.ulimits {
        let want = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        let ok = host.ulimits.iter().any(|l| {
            l.name == want
                && i64::try_from(l.soft).ok() == Some(u.soft)
                && i64::try_from(l.hard).ok() == Some(u.hard)
        });
        if !ok {
            let have: Vec<String> = host
                .ulimits
                .iter()
                .map(|l| format!("{}={}:{}", l.name, l.soft, l.hard))
                .collect();
            bail!(
                "check failed for {name}: ulimit {}={}:{} is not applied ({have:?})",
                u.name,
                u.soft,
                u.hard,
            );
        }
    }
    // Podman 4.3's inspect does not show sysctls; tests/podman/ reads them inside.
    if let Some(h) = &x.hostname
        && inspect.config.hostname != *h
    {
        bail!("check failed for {name}: its hostname is not {h}");
    }
    if let Some(r) = &x.runtime
        && inspect.oci_runtime.as_deref() != Some(r.as_str())
    {
        bail!(
            "check failed for {name}: it runs under {:?} rather than {r}",
            inspect.oci_runtime
        );
    }
    Ok(())
}

/// Image mounts, volumes, binds and tmpfs mounts.
fn verify_mounts(c: &ContainerSpec, inspect: &ContainerInspect) -> Result<()> {
    let name = &c.name;
    let mounts = &inspect.mounts;
    for m in &c.shared_mounts {
        let ok = mounts.iter().any(|x| {
            x.kind == "volume" && x.name == m.volume && x.destination == m.target && !x.rw
        });
        if !ok {
            bail!(
                "check failed for {name}: the volume {} is not mounted read-only at {}",
                m.volume,
                m.target
            );
        }
    }
    for dir in &c.tmpfs {
        if !inspect.host_config.tmpfs.contains_key(dir) {
            bail!("check failed for {name}: there is no tmpfs at {dir}");
        }
    }
    for m in &c.mounts {
        if m.read_only
            && m.kind != MountKind::Tmpfs
            && mounts.iter().any(|x| x.destination == m.target && x.rw)
        {
            bail!(
                "hardening check failed for {name}: {} is mounted writable although the plan has it read-only",
                m.target
            );
        }
        // Podman lists tmpfs mounts under HostConfig.Tmpfs, the rest under Mounts.
        let found = if m.kind == MountKind::Tmpfs {
            inspect.host_config.tmpfs.contains_key(&m.target)
        } else {
            mounts.iter().any(|x| {
                x.destination == m.target && (m.kind != MountKind::Volume || x.name == m.source)
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

/// Reads the status of each hardened container's PID 1 and checks what the kernel
/// actually applied: capabilities, no-new-privileges and seccomp. It is read from the
/// host's /proc (the engine is local): an exec session would need `cat` in the image
/// and, on Podman 4.3, makes removing the container seconds slower.
pub(crate) async fn verify_inside(engine: &Engine, plan: &PodPlan) -> Result<()> {
    for c in plan
        .containers
        .iter()
        .filter(|c| c.no_new_privileges || !c.cap_drop.is_empty())
    {
        let inspect = engine.inspect_container(&c.name).await?;
        if c.init_container {
            // The rules ran to completion before the others started; they must have
            // succeeded (the agent's gate would not open otherwise, either).
            verify_rules_ran(&c.name, &inspect.state)?;
            continue;
        }
        let pid = inspect.state.pid;
        if pid <= 0 {
            let reason = super::readiness::agent_stopped(&inspect.state)
                .unwrap_or_else(|| "is not running".into());
            let failure = format!("{} {reason}, so its hardening cannot be checked", c.name);
            return Err(super::readiness::with_logs(engine, &c.name, &failure).await);
        }
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

/// The network rules' init container ended, and with success.
pub(crate) fn verify_rules_ran(name: &str, state: &super::inspect::ContainerState) -> Result<()> {
    if state.running || state.exit_code != 0 {
        bail!(
            "the network rules container {name} did not install the agent's rules (running: {}, exit code {})",
            state.running,
            state.exit_code
        );
    }
    Ok(())
}

/// After a pod's start: the failure of its network rules container `rules` (in pod
/// `pod`), with the rules' own last lines, or `None` when they ran to success.
pub(crate) async fn rules_failure(
    engine: &Engine,
    pod: &str,
    rules: &str,
) -> Result<Option<anyhow::Error>> {
    let state = engine.inspect_container(rules).await?.state;
    let Err(e) = verify_rules_ran(rules, &state) else {
        return Ok(None);
    };
    let logs = engine.logs_tail(rules, 20).await.unwrap_or_default();
    Ok(Some(e.context(format!(
        "starting {pod}: the agent does not run without its network rules\n--- the rules' last lines ---\n{}",
        logs.trim_end()
    ))))
}

/// Checks a /proc/PID/status text against the container's plan.
pub(crate) fn check_status(c: &ContainerSpec, status: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;
    use serde_json::{Value, json};

    fn agent() -> ContainerSpec {
        // The fixture's agent predates the network (full keeps its mounts and env).
        let mut input = crate::plan::tests_support::input();
        input.network.mode = crate::plan::input::NetworkMode::Full;
        crate::plan::build(&input)
            .expect("plan")
            .container(Role::Agent)
            .cloned()
            .expect("agent")
    }

    /// The fixture, adjusted by `edit`, verified against the test plan's agent.
    fn verify_with(edit: impl FnOnce(&mut Value), enforced: bool) -> Result<()> {
        let mut v: Value =
            serde_json::from_str(super::super::inspect::fixtures::AGENT).expect("json");
        // The process Podman reports for a spec with this plan: its init, then the argv.
        let agent = agent();
        v["Args"] = json!(
            ["--"]
                .into_iter()
                .chain(agent.command.iter().map(String::as_str))
                .collect::<Vec<_>>()
        );
        edit(&mut v);
        verify_inspect_text(&agent, &v.to_string(), enforced)
    }

    #[test]
    fn limits_are_verified_unless_rootless_on_cgroup_v1() {
        assert!(limits_enforced(false, "v1"), "rootful v1 enforces");
        assert!(limits_enforced(false, "v2"));
        assert!(!limits_enforced(true, "v1"), "rootless v1 only warns");
        assert!(limits_enforced(true, "v2"), "rootless v2 enforces");
        assert!(limits_enforced(true, "v3"), "an unknown answer is verified");
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
        assert!(
            verify_with(|_| {}, true).is_ok(),
            "the fixture is the plan's agent"
        );
        assert!(verify_with(|v| v["EffectiveCaps"] = json!(["CAP_NET_RAW"]), true).is_err());
        assert!(
            verify_with(
                |v| v["HostConfig"]["SecurityOpt"] = json!(["seccomp=/tmp/p.json"]),
                true
            )
            .is_err(),
            "no-new-privileges missing"
        );
        assert!(
            verify_with(
                |v| v["HostConfig"]["SecurityOpt"] = json!(["no-new-privileges"]),
                true
            )
            .is_err(),
            "seccomp missing"
        );
        assert!(verify_with(|v| v["HostConfig"]["ReadonlyRootfs"] = json!(false), true).is_err());
        let pids = |v: &mut Value| v["HostConfig"]["PidsLimit"] = json!(0);
        assert!(verify_with(pids, true).is_err());
        assert!(
            verify_with(pids, false).is_ok(),
            "limits not enforced: not checked"
        );
        assert!(verify_with(|v| v["Mounts"] = json!([]), true).is_err());
        assert!(verify_with(|v| v["HostConfig"]["Tmpfs"] = json!({}), true).is_err());
        assert!(verify_with(|v| v["HostConfig"]["Privileged"] = json!(true), true).is_err());
        assert!(verify_with(|v| v["Config"]["User"] = json!("0:0"), true).is_err());
        let wrapped = |v: &mut Value| {
            let mut args = v["Args"].as_array().expect("args").clone();
            args.insert(1, json!("/usr/local/bin/image-entrypoint.sh"));
            v["Args"] = Value::Array(args);
        };
        let err = verify_with(wrapped, true).expect_err("an image ENTRYPOINT around the agent");
        assert!(format!("{err:#}").contains("ENTRYPOINT"), "{err:#}");
        let no_process = |v: &mut Value| {
            let o = v.as_object_mut().expect("object");
            o.remove("Path");
            o.remove("Args");
        };
        assert!(
            verify_with(no_process, true).is_err(),
            "no process: fails closed"
        );
        let no_init = |v: &mut Value| {
            v["HostConfig"]
                .as_object_mut()
                .expect("object")
                .remove("Init");
        };
        assert!(
            verify_with(no_init, true).is_err(),
            "libpod omits Init when false"
        );
    }

    #[test]
    fn an_inspect_missing_a_security_field_fails_verification() {
        for (outer, key) in [
            (None, "EffectiveCaps"),
            (None, "Mounts"),
            (Some("HostConfig"), "Privileged"),
            (Some("HostConfig"), "SecurityOpt"),
            (Some("HostConfig"), "ReadonlyRootfs"),
            (Some("HostConfig"), "PidsLimit"),
            (Some("HostConfig"), "Memory"),
            (Some("Config"), "User"),
        ] {
            let e = verify_with(
                |v| {
                    let obj = match outer {
                        Some(o) => v[o].as_object_mut().expect("object"),
                        None => v.as_object_mut().expect("object"),
                    };
                    obj.remove(key);
                },
                true,
            )
            .expect_err(key);
            let text = format!("{e:#}");
            assert!(
                text.starts_with("hardening check failed for devaipod-demo-agent:")
                    && text.contains(key),
                "{key}: {text}"
            );
        }
    }
}
