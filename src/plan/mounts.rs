//! The repo's own mounts (devcontainer.json `mounts`, runArgs `-v`/`--mount`/`--tmpfs`):
//! read, checked, and given to the workspace only. Named volumes and tmpfs are free;
//! a host bind needs consent; an engine's socket or state is never mounted.

use super::consent::{BindFrom, Consent};
use super::error::PlanError;
use super::folders::Folders;
use super::input::PlanInput;
use super::paths::{AGENT_REPO_IN_WORKSPACE, reserved_folder};
use super::run_args::RunArgs;
use super::spec::{MountKind, MountSpec};

/// Reads one entry of devcontainer.json's `mounts` (string `type=..,source=..,target=..`
/// or object form) into a mount of the workspace. `Err` says what is wrong with it.
pub(crate) fn parse_mount(v: &serde_json::Value) -> Result<MountSpec, String> {
    let (kind, source, target, read_only) = mount_fields(v)?;
    let target = target
        .filter(|t| t.starts_with('/'))
        .ok_or("needs an absolute target")?;
    let target = target.trim_end_matches('/').to_string();
    if reserved_folder(&target) || target.starts_with(AGENT_REPO_IN_WORKSPACE) {
        return Err(format!("target {target:?} is a system or devaipod path"));
    }
    let kind = match kind.as_deref().unwrap_or("volume") {
        "volume" => MountKind::Volume,
        "bind" => MountKind::Bind,
        "tmpfs" => MountKind::Tmpfs,
        other => return Err(format!("mount type {other:?} is not volume, bind or tmpfs")),
    };
    let source = match kind {
        MountKind::Volume => volume_source(source)?,
        MountKind::Bind => bind_source(source)?,
        MountKind::Tmpfs => String::new(),
    };
    Ok(MountSpec {
        kind,
        source,
        target,
        read_only,
    })
}

/// A mount's fields as written: (type, source, target, read-only).
type MountFields = (Option<String>, Option<String>, Option<String>, bool);

fn mount_fields(v: &serde_json::Value) -> Result<MountFields, String> {
    let (mut kind, mut source, mut target, mut read_only) = (None, None, None, false);
    match v {
        serde_json::Value::String(s) => {
            for part in s.split(',') {
                let part = part.trim();
                let (k, val) = part.split_once('=').unwrap_or((part, ""));
                match k {
                    "type" => kind = Some(val.to_string()),
                    "source" | "src" => source = Some(val.to_string()),
                    "target" | "dst" | "destination" => target = Some(val.to_string()),
                    "readonly" | "ro" => read_only = val.is_empty() || val == "true" || val == "1",
                    "consistency" | "" => {}
                    other => return Err(format!("unknown mount option {other:?}")),
                }
            }
        }
        serde_json::Value::Object(o) => {
            let text = |k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_string);
            kind = text("type");
            source = text("source");
            target = text("target");
            read_only = o.get("readonly").and_then(|x| x.as_bool()).unwrap_or(false);
        }
        _ => return Err("a mount is a string or an object".into()),
    }
    Ok((kind, source, target, read_only))
}

fn volume_source(source: Option<String>) -> Result<String, String> {
    let s = source
        .filter(|s| !s.is_empty())
        .ok_or("a volume mount needs a source name")?;
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "volume name {s:?} must be [A-Za-z0-9][A-Za-z0-9_.-]*"
        ));
    }
    // devaipod's own volumes (every pod's clones and the agent's home, and the shared
    // volumes whose programs every pod's agent runs) are never the repo's to mount.
    if s.starts_with("devaipod-") {
        return Err(format!(
            "volume {s:?} is one of devaipod's own (the devaipod- prefix is reserved); choose another name"
        ));
    }
    Ok(s)
}

fn bind_source(source: Option<String>) -> Result<String, String> {
    let s = source
        .filter(|s| s.starts_with('/'))
        .ok_or("a bind mount needs an absolute source path")?;
    if engine_socket_path(&s) {
        return Err(format!(
            "source {s:?} is a container engine's socket or directory; it is never mounted"
        ));
    }
    Ok(s)
}

/// Paths of container engines' sockets and state, which no container gets.
pub(crate) fn engine_socket_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p.ends_with("podman.sock")
        || p.ends_with("docker.sock")
        || p.contains("/podman/")
        || [
            "/run",
            "/var/run",
            "/run/podman",
            "/var/run/docker",
            "/run/docker",
            "/run/user",
            "/var/lib/containers",
            "/",
        ]
        .contains(&p)
        || p.starts_with("/run/user/")
        || p.starts_with("/var/lib/containers")
}

/// The repo's mounts for the workspace, and the host binds of `mounts` the consent
/// let through (runArgs' binds are among runArgs' widening settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoMounts {
    pub mounts: Vec<MountSpec>,
    pub binds: Vec<Consent>,
}

/// The reference CLI's `${devcontainerId}` for the pod `name`: sha256 of its id labels
/// (here devaipod's pod label), as a base-32 number of 52 digits. Stable across
/// rebuilds of the same pod, distinct between pods.
pub(crate) fn devcontainer_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let labels = serde_json::json!({ super::labels::POD: name });
    let hash = Sha256::digest(labels.to_string().as_bytes());
    // 256 bits with 4 leading zero bits are 52 digits of 5 bits, most significant first.
    let mut bits: Vec<bool> = vec![false; 4];
    bits.extend(
        hash.iter()
            .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)),
    );
    bits.chunks(5)
        .map(|c| {
            let d = c.iter().fold(0u32, |n, &b| n << 1 | u32::from(b));
            char::from_digit(d, 32).unwrap_or('0')
        })
        .collect()
}

/// `v` with `${devcontainerId}` substituted in every string.
fn with_id(v: &serde_json::Value, id: &str) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => s.replace("${devcontainerId}", id).into(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), with_id(v, id)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other.clone(),
    }
}

/// Reads the features' `mounts` (in install order), then the config's, then adds
/// runArgs' mounts. As in the reference CLI's merge, a later mount of the same target
/// replaces an earlier one. A host bind without consent and any mount hiding the
/// workspace folder or the agent's clone are refused.
pub(crate) fn repo_mounts(
    input: &PlanInput,
    ra: &RunArgs,
    folders: &Folders,
) -> Result<RepoMounts, PlanError> {
    let id = devcontainer_id(input.name.as_str());
    let hides =
        |m: &MountSpec| m.target == folders.workspace_folder || m.target == folders.clone_root;
    let mut all: Vec<(MountSpec, Option<Consent>)> = Vec::new();
    let mut feature_binds = Vec::new();
    for f in &input.feature_settings {
        for (index, m) in f.mounts.iter().enumerate() {
            let bad = |reason: String| {
                input.bad_property("", format!("feature {:?} mounts[{index}]: {reason}", f.id))
            };
            let mount = parse_mount(&with_id(m, &id)).map_err(bad)?;
            if hides(&mount) {
                return Err(bad("its target would hide the workspace folder".into()));
            }
            let consent = (mount.kind == MountKind::Bind).then(|| Consent::HostBind {
                from: BindFrom::Feature {
                    id: f.id.clone(),
                    index,
                },
                source: mount.source.clone(),
                target: mount.target.clone(),
            });
            feature_binds.extend(consent.iter().map(Consent::request));
            all.push((mount, consent));
        }
    }
    if !feature_binds.is_empty() && !input.trusted() {
        return Err(PlanError::NeedsTrust {
            path: input.config_file(),
            what: feature_binds.join(", "),
        });
    }
    let bad_mount = |index: usize, reason: String| PlanError::BadMount {
        path: input.config_at(&format!("mounts[{index}]")),
        index,
        reason,
    };
    for (index, m) in input.devcontainer.mounts.iter().flatten().enumerate() {
        let mount = parse_mount(&with_id(m, &id)).map_err(|reason| bad_mount(index, reason))?;
        if mount.target == folders.workspace_folder {
            return Err(bad_mount(
                index,
                "its target is the workspace folder itself".into(),
            ));
        }
        let mut consent = None;
        if mount.kind == MountKind::Bind {
            if !input.trusted() {
                return Err(PlanError::BindNeedsTrust {
                    path: input.config_file(),
                    index,
                    source_path: mount.source.clone(),
                });
            }
            consent = Some(Consent::HostBind {
                from: BindFrom::Mounts { index },
                source: mount.source.clone(),
                target: mount.target.clone(),
            });
        }
        all.push((mount, consent));
    }
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<(MountSpec, Option<Consent>)> = all
        .into_iter()
        .rev()
        .filter(|(m, _)| seen.insert(m.target.clone()))
        .collect();
    kept.reverse();
    let mut out = RepoMounts {
        mounts: Vec::new(),
        binds: Vec::new(),
    };
    for (mount, consent) in kept {
        out.binds.extend(consent);
        out.mounts.push(mount);
    }
    for m in &ra.mounts {
        if hides(m) {
            return Err(input.bad_property(
                "runArgs",
                format!(
                    "runArgs: the mount at {} would hide the workspace folder",
                    m.target
                ),
            ));
        }
    }
    out.mounts.extend(ra.mounts.iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn mounts_parse_in_both_forms_or_say_what_is_wrong() {
        for (v, want) in [
            (
                json!("type=volume,source=cache,target=/cache"),
                Ok((MountKind::Volume, "cache", "/cache", false)),
            ),
            (
                json!("source=cache,target=/cache/,ro"),
                Ok((MountKind::Volume, "cache", "/cache", true)),
            ),
            (
                json!({"type": "tmpfs", "target": "/scratch"}),
                Ok((MountKind::Tmpfs, "", "/scratch", false)),
            ),
            (
                json!({"type": "bind", "source": "/data", "target": "/d", "readonly": true}),
                Ok((MountKind::Bind, "/data", "/d", true)),
            ),
            (
                json!("type=npipe,source=x,target=/x"),
                Err("not volume, bind or tmpfs"),
            ),
            (
                json!("type=volume,source=x,target=x"),
                Err("absolute target"),
            ),
            (
                json!("type=volume,source=x,target=/etc"),
                Err("system or devaipod path"),
            ),
            (
                json!("type=volume,source=x,target=/var/lib/devaipod/agent-repo"),
                Err("system or devaipod path"),
            ),
            (json!("type=volume,target=/x"), Err("needs a source name")),
            (
                json!("type=volume,source=../v,target=/x"),
                Err("volume name"),
            ),
            (
                json!("type=bind,source=rel,target=/x"),
                Err("absolute source path"),
            ),
            (
                json!("type=bind,source=/run/podman/podman.sock,target=/x"),
                Err("never mounted"),
            ),
            (
                json!("type=volume,source=v,target=/x,frob=1"),
                Err("unknown mount option"),
            ),
            (json!(3), Err("a string or an object")),
        ] {
            match (parse_mount(&v), want) {
                (Ok(m), Ok((kind, source, target, ro))) => assert_eq!(
                    (m.kind, m.source.as_str(), m.target.as_str(), m.read_only),
                    (kind, source, target, ro),
                    "{v}"
                ),
                (Err(e), Err(want)) => assert!(e.contains(want), "{v}: {e}"),
                (got, want) => panic!("{v}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn devaipods_own_volumes_are_never_the_repos_to_mount() {
        for v in [
            json!("type=volume,source=devaipod-net-0123456789ab,target=/x"),
            json!({"type": "volume", "source": "devaipod-other-agent-repo", "target": "/x"}),
            json!("source=devaipod-bundled-4eab5b314d8f,target=/x"),
        ] {
            let e = parse_mount(&v).expect_err("reserved");
            assert!(e.contains("devaipod- prefix is reserved"), "{e}");
        }
        assert!(parse_mount(&json!("source=my-devaipod-cache,target=/x")).is_ok());
    }

    #[test]
    fn engine_sockets_and_state_are_recognised() {
        for p in [
            "/var/run/docker.sock",
            "/run/user/1000/podman/podman.sock",
            "/run",
            "/var/lib/containers/storage",
        ] {
            assert!(engine_socket_path(p), "{p}");
        }
        for p in ["/home/u/data", "/srv/run"] {
            assert!(!engine_socket_path(p), "{p}");
        }
    }

    fn folders() -> Folders {
        Folders::new(&input()).expect("folders")
    }

    #[test]
    fn host_binds_without_consent_refuse_and_with_it_are_recorded() {
        let mut i = input();
        i.devcontainer.mounts = Some(vec![
            json!("source=cache,target=/cache,type=volume"),
            json!("type=bind,source=/data,target=/data"),
        ]);
        let e = repo_mounts(&i, &RunArgs::default(), &folders()).expect_err("no consent");
        assert!(
            matches!(e, PlanError::BindNeedsTrust { index: 1, .. }),
            "{e:?}"
        );
        i.trust = Some("--trust".into());
        let m = repo_mounts(&i, &RunArgs::default(), &folders()).expect("consent");
        assert_eq!(m.mounts.len(), 2);
        assert_eq!(m.binds.len(), 1);
        assert_eq!(m.binds[0].to_string(), "mounts[1] binds /data at /data");
    }

    #[test]
    fn no_mount_hides_the_workspace_folder() {
        let mut i = input();
        i.devcontainer.mounts = Some(vec![json!("source=v,target=/workspaces/proj")]);
        let e = repo_mounts(&i, &RunArgs::default(), &folders()).expect_err("hides");
        assert!(e.to_string().contains("the workspace folder itself"), "{e}");
        let i = input();
        let ra = RunArgs {
            mounts: vec![MountSpec::volume("v", "/workspaces/proj", false)],
            ..Default::default()
        };
        let e = repo_mounts(&i, &ra, &folders()).expect_err("hides");
        assert!(
            e.to_string().contains("would hide the workspace folder"),
            "{e}"
        );
    }
}
