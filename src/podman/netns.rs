//! Entering the pod's network namespace: the host cannot dial into a rootless pod's
//! namespace, so devaipod runs *itself* there (the hidden `__probe` and `__http`
//! commands): `nsenter --net` rootful, `podman unshare nsenter --net` rootless, and
//! inside a toolbox a short-lived hardened helper container that joins the pod.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};

use super::Engine;
use crate::plan::{ContainerSpec, MountKind, MountSpec, Role, labels};

/// PID of a process in the pod's network namespace (the infra container's).
async fn netns_pid(engine: &Engine, pod: &str) -> Result<i64> {
    let pod_inspect = engine.inspect_pod(pod).await?;
    let infra = pod_inspect
        .infra_container_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| anyhow!("pod {pod} has no infra container"))?;
    let pid = engine.inspect_container(&infra).await?.state.pid;
    if pid <= 0 {
        bail!("the infra container of pod {pod} is not running");
    }
    Ok(pid)
}

/// The command that runs devaipod with `args` inside the network namespace of `pid`:
/// `nsenter` rootful, `podman unshare nsenter` rootless.
pub(crate) fn nsenter_command(
    rootless: bool,
    podman: &std::path::Path,
    exe: &std::path::Path,
    pid: i64,
    args: &[String],
) -> Vec<String> {
    let mut argv = Vec::new();
    if rootless {
        argv.push(podman.display().to_string());
        argv.push("unshare".into());
    }
    argv.extend([
        "nsenter".to_string(),
        format!("--net=/proc/{pid}/ns/net"),
        "--".into(),
        exe.display().to_string(),
    ]);
    argv.extend(args.iter().cloned());
    argv
}

/// Where devaipod's binary is mounted in a toolbox helper.
const HELPER_EXE: &str = "/devaipod-helper";
/// A toolbox helper's tmpfs (/tmp): it writes nothing there; bounded all the same.
const HELPER_TMPFS_BYTES: u64 = 16 * 1024 * 1024;

/// Inside a toolbox no route into the pod's namespaces exists (its user namespace is a
/// child of the one owning the pod). There devaipod runs itself in a short-lived
/// helper container that joins the pod: the workspace's image, hardened like the agent
/// (its seccomp profile, no capabilities, no-new-privileges, read-only root, its pids
/// and memory limits; uid 65534, as it holds nothing), with devaipod's binary mounted
/// read-only from a path the host also sees. It is created and verified through the
/// same spec and checks as the pod's containers ([`toolbox_helper`]), then attached by
/// the podman CLI ([`toolbox_command`]), which carries its stdin and stdout.
pub(crate) fn helper_container(
    name: &crate::names::Name,
    repo: &str,
    image: &str,
    helper: &std::path::Path,
    args: &[String],
) -> ContainerSpec {
    let mut command = vec![HELPER_EXE.to_string()];
    command.extend(args.iter().cloned());
    super::job::helper_like_agent(
        format!(
            "{}-helper-{}",
            name.pod_name(),
            crate::names::random_suffix()
        ),
        image,
        "65534:65534".into(),
        command,
        MountSpec {
            kind: MountKind::Bind,
            source: helper.display().to_string(),
            target: HELPER_EXE.into(),
            read_only: true,
        },
        BTreeMap::new(),
        labels::for_object(name, Role::Helper, repo, &BTreeMap::new()),
    )
}

/// Creates the toolbox helper `c` in `pod` and verifies its hardening (failing closed,
/// as for the agent); a helper that fails the check is removed.
async fn toolbox_helper(engine: &Engine, pod: &str, c: &ContainerSpec) -> Result<()> {
    let seccomp = super::spec::SeccompFile::write()?;
    engine
        .create_container(&super::spec::helper_spec(
            pod,
            c,
            Some(seccomp.path()),
            HELPER_TMPFS_BYTES,
        ))
        .await
        .with_context(|| format!("creating the helper container {}", c.name))?;
    drop(seccomp);
    let enforced =
        super::verify::limits_enforced(engine.rootless(), &engine.cgroup_version().await?);
    if let Err(e) = super::verify::verify_created(engine, c, enforced).await {
        let _ = engine.remove_container(&c.name).await;
        return Err(e);
    }
    Ok(())
}

/// The podman CLI command that starts the created helper `name` with its stdin and
/// stdout attached; its exit code is the helper's, and Podman removes it after.
pub(crate) fn toolbox_command(
    podman: &std::path::Path,
    socket: &std::path::Path,
    name: &str,
) -> Vec<String> {
    [
        podman.display().to_string(),
        "--remote".into(),
        "--url".into(),
        format!("unix://{}", socket.display()),
        "start".into(),
        "--attach".into(),
        "--interactive".into(),
        name.into(),
    ]
    .into_iter()
    .collect()
}

/// A copy of devaipod's binary at a path the host's engine can mount (a toolbox shares
/// $HOME, /tmp and XDG_RUNTIME_DIR with the host, not /usr).
fn host_visible_exe(exe: &std::path::Path) -> Result<std::path::PathBuf> {
    let shared = ["/home/", "/tmp/", "/var/home/", "/run/user/"];
    if shared.iter().any(|p| exe.starts_with(p)) {
        return Ok(exe.to_path_buf());
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let copy = dir.join(format!("devaipod-helper-{}", crate::VERSION));
    let same = std::fs::metadata(&copy)
        .ok()
        .zip(std::fs::metadata(exe).ok())
        .is_some_and(|(a, b)| a.len() == b.len());
    if !same {
        std::fs::copy(exe, &copy)
            .with_context(|| format!("copying devaipod to {} for the helper", copy.display()))?;
    }
    Ok(copy)
}

/// The command that runs devaipod with `args` in the pod's network namespace, by
/// whichever route this host allows.
pub(crate) async fn in_pod_command(
    engine: &Engine,
    pod: &str,
    args: &[String],
) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the devaipod executable")?;
    if super::connect::in_toolbox() {
        let ws = engine
            .inspect_container(&format!("{pod}-workspace"))
            .await?;
        let image = [ws.image_name, ws.config.image]
            .into_iter()
            .find(|i| !i.is_empty())
            .ok_or_else(|| anyhow!("cannot tell the image of {pod}-workspace"))?;
        let name = crate::names::Name::new(pod.strip_prefix("devaipod-").unwrap_or(pod))?;
        let repo = engine
            .inspect_pod(pod)
            .await?
            .label(labels::REPO)
            .unwrap_or_default()
            .to_string();
        let helper = helper_container(&name, &repo, &image, &host_visible_exe(&exe)?, args);
        toolbox_helper(engine, pod, &helper).await?;
        return Ok(toolbox_command(
            &super::connect::find_podman()?,
            engine.socket(),
            &helper.name,
        ));
    }
    let pid = netns_pid(engine, pod).await?;
    let podman = if engine.rootless() {
        super::connect::find_podman()?
    } else {
        std::path::PathBuf::from("podman")
    };
    Ok(nsenter_command(engine.rootless(), &podman, &exe, pid, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Seccomp;

    #[test]
    fn commands_enter_the_pod_by_the_hosts_route() {
        let podman = std::path::Path::new("/usr/bin/podman");
        let exe = std::path::Path::new("/x/devaipod");
        let args = ["__probe".to_string(), "http://127.0.0.1:1/".into()];
        let rootful = nsenter_command(false, podman, exe, 42, &args);
        assert_eq!(rootful[..3], ["nsenter", "--net=/proc/42/ns/net", "--"]);
        assert_eq!(
            rootful[3..],
            ["/x/devaipod", "__probe", "http://127.0.0.1:1/"]
        );
        let rootless = nsenter_command(true, podman, exe, 42, &args);
        assert_eq!(rootless[..3], ["/usr/bin/podman", "unshare", "nsenter"]);
        let tb = toolbox_command(
            podman,
            std::path::Path::new("/run/user/1000/podman/podman.sock"),
            "devaipod-x-helper-1",
        );
        assert_eq!(
            tb.join(" "),
            "/usr/bin/podman --remote --url unix:///run/user/1000/podman/podman.sock start --attach --interactive devaipod-x-helper-1"
        );
    }

    #[test]
    fn the_toolbox_helper_is_hardened_like_the_agent() {
        let name = crate::names::Name::new("x").expect("name");
        let args = ["__probe".to_string(), "http://127.0.0.1:1/".into()];
        let c = helper_container(
            &name,
            "/home/u/src/x",
            "localhost/img:1",
            std::path::Path::new("/home/u/devaipod"),
            &args,
        );
        assert_eq!(c.role, Role::Helper);
        assert!(c.name.starts_with("devaipod-x-helper-"), "{}", c.name);
        assert_eq!(
            c.command,
            ["/devaipod-helper", "__probe", "http://127.0.0.1:1/"]
        );
        assert_eq!(c.user.as_deref(), Some("65534:65534"));
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.cap_add.is_empty() && c.no_new_privileges && c.read_only);
        assert_eq!(c.seccomp, Seccomp::Agent);
        assert_eq!(c.pids_limit, Some(crate::plan::AGENT_PIDS_LIMIT));
        assert_eq!(c.memory_limit, Some(crate::plan::AGENT_MEMORY_LIMIT));
        assert_eq!(
            c.mounts,
            [MountSpec {
                kind: MountKind::Bind,
                source: "/home/u/devaipod".into(),
                target: HELPER_EXE.into(),
                read_only: true,
            }]
        );
        for key in [labels::POD, labels::ROLE, labels::REPO, labels::VERSION] {
            assert!(c.labels.contains_key(key), "{key}");
        }
        let spec = serde_json::to_value(super::super::spec::helper_spec(
            "devaipod-x",
            &c,
            Some(std::path::Path::new("/tmp/p.json")),
            HELPER_TMPFS_BYTES,
        ))
        .expect("json");
        assert_eq!(spec["pod"], "devaipod-x");
        assert_eq!(spec["stdin"], true);
        assert_eq!(spec["remove"], true);
        assert_eq!(spec["read_only_filesystem"], true);
        assert_eq!(spec["seccomp_profile_path"], "/tmp/p.json");
        assert!(spec.get("netns").is_none(), "it joins the pod's network");
        let tmpfs = spec["mounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["destination"] == "/tmp"))
            .expect("tmpfs");
        assert!(
            tmpfs["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == &format!("size={HELPER_TMPFS_BYTES}"))),
            "{tmpfs}"
        );
    }
}
