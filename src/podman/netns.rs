//! Entering the pod's network namespace: the host cannot dial into a rootless pod's
//! namespace, so devaipod runs *itself* there (the hidden `__probe` and `__http`
//! commands): `nsenter --net` rootful, `podman unshare nsenter --net` rootless, and
//! inside a toolbox a short-lived hardened helper container that joins the pod.

use anyhow::{Context, Result, anyhow, bail};

use super::Engine;

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

/// Inside a toolbox no route into the pod's namespaces exists (its user namespace is a
/// child of the one owning the pod). There devaipod runs itself in a short-lived
/// helper container that joins the pod: the workspace's image, hardened like the
/// agent, with devaipod's binary mounted read-only from a path the host also sees.
pub(crate) fn toolbox_command(
    podman: &std::path::Path,
    socket: &std::path::Path,
    pod: &str,
    name: &str,
    image: &str,
    helper: &std::path::Path,
    args: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = [
        podman.display().to_string(),
        "--remote".into(),
        "--url".into(),
        format!("unix://{}", socket.display()),
        "run".into(),
        "--rm".into(),
        "--interactive".into(),
        "--pod".into(),
        pod.into(),
        "--label".into(),
        format!("{}={name}", crate::plan::labels::POD),
        "--label".into(),
        format!(
            "{}={}",
            crate::plan::labels::ROLE,
            crate::plan::Role::Helper
        ),
        "--user".into(),
        "65534:65534".into(),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges".into(),
        "--read-only".into(),
        "--volume".into(),
        format!("{}:/devaipod-helper:ro", helper.display()),
        "--entrypoint".into(),
        "/devaipod-helper".into(),
        image.into(),
    ]
    .into_iter()
    .collect();
    argv.extend(args.iter().cloned());
    argv
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
        let name = pod.strip_prefix("devaipod-").unwrap_or(pod);
        return Ok(toolbox_command(
            &super::connect::find_podman()?,
            engine.socket(),
            pod,
            name,
            &image,
            &host_visible_exe(&exe)?,
            args,
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
            "devaipod-x",
            "x",
            "localhost/img:1",
            std::path::Path::new("/home/u/devaipod"),
            &args,
        );
        let text = tb.join(" ");
        assert!(text.starts_with("/usr/bin/podman --remote --url unix:///run/user/1000/podman/podman.sock run --rm --interactive --pod devaipod-x"), "{text}");
        assert!(
            text.contains("--cap-drop ALL --security-opt no-new-privileges --read-only"),
            "{text}"
        );
        assert!(
            text.contains("--volume /home/u/devaipod:/devaipod-helper:ro"),
            "{text}"
        );
        assert!(
            text.ends_with("localhost/img:1 __probe http://127.0.0.1:1/"),
            "{text}"
        );
    }
}
