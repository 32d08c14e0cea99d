//! What runs inside the workspace besides its command: the devcontainer lifecycle
//! commands (through exec sessions, as the workspace's user), the shims devaipod
//! installs, and resolving a user name through the image's /etc/passwd.

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::progress::Progress;

/// The shims installed into the workspace (shims/).
pub(crate) const SHIM_OC: &str = include_str!("../../shims/oc");
pub(crate) const SHIM_OPENCODE_AGENT: &str = include_str!("../../shims/opencode-agent");
pub(crate) const SHIM_PROFILE: &str = include_str!("../../shims/profile.sh");

/// postStartCommand as `up` records it on the pod (label `io.devaipod.post-start`), so
/// that `start` runs it without re-reading the repo, as the user it ran as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PostStart {
    pub steps: Vec<crate::plan::LifecycleStep>,
    pub user: Option<String>,
    pub workdir: String,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

/// devaipod's files in the workspace (not the image), as a tar for `/`: its git system
/// configs (the workspace's, and upload-pack's for `git fetch agent`), the shims (oc,
/// opencode-agent) and the profile snippet that puts them on PATH.
pub(crate) fn workspace_files() -> Result<Vec<u8>> {
    let gitconfig = crate::plan::workspace_gitconfig();
    let upload_pack = crate::plan::agent_upload_pack_gitconfig();
    crate::git::tar_files(&[
        (
            crate::plan::WORKSPACE_GITCONFIG.trim_start_matches('/'),
            gitconfig.as_bytes(),
            0o644,
        ),
        (
            crate::plan::AGENT_UPLOAD_PACK_GITCONFIG.trim_start_matches('/'),
            upload_pack.as_bytes(),
            0o644,
        ),
        ("opt/devaipod/bin/oc", SHIM_OC.as_bytes(), 0o755),
        (
            "opt/devaipod/bin/opencode-agent",
            SHIM_OPENCODE_AGENT.as_bytes(),
            0o755,
        ),
        ("etc/profile.d/devaipod.sh", SHIM_PROFILE.as_bytes(), 0o644),
    ])
}

/// The numeric owner (uid, gid) of `owner` (remoteUser/containerUser) in the image of
/// `container`, read from its /etc/passwd and /etc/group through the archive API.
pub(crate) async fn owner_ids(engine: &Engine, container: &str, owner: &str) -> Result<(u64, u64)> {
    let passwd = engine
        .read_file(container, "/etc/passwd")
        .await?
        .unwrap_or_default();
    let group = engine
        .read_file(container, "/etc/group")
        .await?
        .unwrap_or_default();
    resolve_workspace_user(
        owner,
        &String::from_utf8_lossy(&passwd),
        &String::from_utf8_lossy(&group),
    )
}

/// Resolves a user of the workspace ([`resolve_user`]) and refuses the agent's uid:
/// git trusts a repo its own uid owns, so a workspace user with uid 4096 would run the
/// agent's hooks, filters and pagers in the agent's clone, next to the trusted secrets.
pub(crate) fn resolve_workspace_user(spec: &str, passwd: &str, group: &str) -> Result<(u64, u64)> {
    let (uid, gid) = resolve_user(spec, passwd, group)
        .with_context(|| format!("resolving remoteUser/containerUser {spec:?}"))?;
    let agent = u64::from(crate::plan::AGENT_UID);
    if uid == agent {
        bail!(
            "the workspace's user {spec:?} has uid {agent}, the agent's uid: git in the workspace would then take the agent's clone for the user's own and run the hooks, filters and pagers the agent writes into it; make remoteUser, containerUser and runArgs' --user in devcontainer.json (or the image's USER) a user with any other uid"
        );
    }
    let proxy = u64::from(crate::plan::paths::PROXY_UID);
    if uid == proxy {
        bail!(
            "the workspace's user {spec:?} has uid {proxy}, the agent's proxy's uid: the agent's network rules let it reach that uid's listener on the proxy's port, so a workspace service could answer the agent as its proxy; make remoteUser, containerUser and runArgs' --user in devcontainer.json (or the image's USER) a user with any other uid"
        );
    }
    Ok((uid, gid))
}

/// How many lines of a failed lifecycle command's output the error shows.
const LIFECYCLE_TAIL: usize = 20;

/// Runs lifecycle steps in the workspace, in order (an object's commands in parallel),
/// as the workspace's user in its folder, streaming their output. The first failure
/// stops the rest with its name, exit code and last lines.
pub(crate) async fn run_lifecycle(
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
    let container_env = engine
        .inspect_container(plan_container)
        .await?
        .config
        .env_map();
    let env: Vec<(String, String)> =
        crate::devcontainer::vars::remote_env_in(remote_env, &container_env)?
            .into_iter()
            .collect();
    let env = &env;
    for step in steps {
        let name = step.name();
        progress.step(&format!("running {name}"));
        crate::progress::pause_point("lifecycle");
        let jobs: Vec<(String, Vec<String>)> = match &step.command {
            Command::Parallel(map) => map
                .iter()
                .map(|(k, c)| (format!("{name}.{k}"), c.argv()))
                .collect(),
            c => vec![(name.clone(), c.argv())],
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

/// Resolves a user spec (`NAME`, `UID`, `UID:GID`, `NAME:GROUP`) to numeric ids using the
/// container's /etc/passwd and /etc/group.
pub(crate) fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<(u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndev:x:1000:1000:dev:/home/dev:/bin/bash\nsvc:x:998:50::/:/bin/false\n";
    const GROUP: &str = "root:x:0:\ndev:x:1000:\nstaff:x:50:\n";

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

    #[test]
    fn a_workspace_user_with_the_agents_uid_is_refused() {
        let passwd = format!("{PASSWD}agentish:x:4096:4096::/home/a:/bin/sh\n");
        for spec in ["agentish", "4096", "4096:50", "agentish:staff"] {
            let e = resolve_workspace_user(spec, &passwd, GROUP).expect_err(spec);
            let msg = format!("{e:#}");
            assert!(msg.contains("uid 4096, the agent's uid"), "{msg}");
            assert!(msg.contains("any other uid"), "{msg}");
        }
        // The agent's gid alone is not its identity: git checks the owner's uid.
        assert_eq!(
            resolve_workspace_user("1000:4096", &passwd, GROUP).ok(),
            Some((1000, 4096))
        );
        assert_eq!(
            resolve_workspace_user("dev", &passwd, GROUP).ok(),
            Some((1000, 1000))
        );
        assert!(resolve_workspace_user("nobody-here", &passwd, GROUP).is_err());
    }
    #[test]
    fn post_start_records_read_back() {
        let p = PostStart {
            steps: vec![],
            user: None,
            workdir: "/w".into(),
            env: Default::default(),
        };
        let text = serde_json::to_string(&p).expect("json");
        assert_eq!(text, r#"{"steps":[],"user":null,"workdir":"/w","env":{}}"#);
        assert_eq!(serde_json::from_str::<PostStart>(&text).expect("read"), p);
    }
}
