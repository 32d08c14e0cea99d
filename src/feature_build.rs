//! The config's devcontainer Features, installed into a derived image: the host side of
//! [`crate::devcontainer::features`]. Reads each feature's folder, adds the hard
//! dependencies, orders them as the reference CLI does, gives each install.sh its
//! options, and prepares the build `up` runs (by Podman, as root, at build time: never in
//! the agent). The image is tagged by a content key of every input, so a second `up`
//! builds nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::oci::Refresh;

use crate::build::{BuildPlan, Prepared};
use crate::devcontainer::DevContainer;
use crate::devcontainer::features::{
    self, BuildInputs, FeatureMeta, FeatureSource, Install, Node, Place, Users,
};
use crate::devcontainer::lockfile::{self, Pin};
use crate::devcontainer::metadata;
use crate::plan::input::FeatureSettings;

/// What `up` knows of the image the features go on.
pub(crate) struct Base<'a> {
    pub reference: &'a str,
    pub id: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The image's USER (empty: root).
    pub user: &'a str,
}

/// The derived image's build, the install order (the config's ids) and what the user
/// should know.
pub(crate) struct FeaturesBuild {
    pub build: Prepared,
    pub order: Vec<String>,
    /// What each asks of the workspace (privileged, capAdd, securityOpt), in order.
    pub settings: Vec<FeatureSettings>,
    /// What each adds, in order, for `--dry-run`.
    pub adds: Vec<Adds>,
    pub warnings: Vec<String>,
    /// The lockfile as resolved; `up` writes it when it changed.
    pub lock: Option<lockfile::Update>,
}

/// What one feature adds, as `--dry-run` shows it: to the image (its files and
/// containerEnv: the agent has them too) and to the workspace alone (the rest).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Adds {
    pub id: String,
    pub version: Option<String>,
    /// The names of its containerEnv (set in the image).
    pub container_env: Vec<String>,
    pub mounts: Vec<serde_json::Value>,
    pub entrypoint: Option<String>,
    /// Its lifecycle properties, in the spec's order.
    pub lifecycle: Vec<String>,
    /// What needs consent (`--trust`), as the refusal names it.
    pub needs_consent: Vec<String>,
}

impl Adds {
    fn new(meta: &FeatureMeta, s: &FeatureSettings) -> Self {
        let mut needs_consent = Vec::new();
        if s.privileged {
            needs_consent.push("privileged".to_string());
        }
        needs_consent.extend(s.cap_add.iter().map(|c| format!("capAdd {c}")));
        needs_consent.extend(s.security_opt.iter().map(|o| format!("securityOpt {o}")));
        for (i, m) in s.mounts.iter().enumerate() {
            if let Ok(m) = crate::plan::parse_mount(m)
                && m.kind == crate::plan::MountKind::Bind
            {
                needs_consent.push(format!("mounts[{i}] binds {} at {}", m.source, m.target));
            }
        }
        Adds {
            id: s.id.clone(),
            version: meta.version.clone(),
            container_env: meta.container_env.iter().map(|(k, _)| k.clone()).collect(),
            mounts: s.mounts.clone(),
            entrypoint: s.entrypoint.clone(),
            lifecycle: s.lifecycle.keys().cloned().collect(),
            needs_consent,
        }
    }

    /// One line for the text dry run.
    pub(crate) fn line(&self) -> String {
        let mut parts = Vec::new();
        if !self.container_env.is_empty() {
            parts.push(format!("containerEnv {}", self.container_env.join(", ")));
        }
        for m in &self.mounts {
            parts.push(match crate::plan::parse_mount(m) {
                Ok(m) => format!(
                    "mount {} {} at {}",
                    m.kind.as_str(),
                    if m.source.is_empty() { "-" } else { &m.source },
                    m.target
                ),
                Err(e) => format!("mount {m} (refused: {e})"),
            });
        }
        if let Some(e) = &self.entrypoint {
            parts.push(format!("entrypoint {e}"));
        }
        if !self.lifecycle.is_empty() {
            parts.push(self.lifecycle.join(", "));
        }
        if !self.needs_consent.is_empty() {
            parts.push(format!("needs --trust: {}", self.needs_consent.join(", ")));
        }
        if parts.is_empty() {
            parts.push("files only".into());
        }
        let version = self
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        format!("{}{version}: {}", self.id, parts.join("; "))
    }
}

/// Whether the config names any feature.
pub(crate) fn wanted(dc: &DevContainer) -> bool {
    dc.features.as_ref().is_some_and(|f| !f.is_empty())
}

/// A feature's folder (fetched into the cache unless local), the digest that names its
/// cache folder, and the digest a lockfile records for it (OCI: the manifest's).
struct Folder {
    path: PathBuf,
    digest: Option<String>,
    integrity: Option<String>,
}

/// Fetches (or finds) one feature's folder: by the lockfile's pin when it has one (an
/// OCI feature by its manifest's digest, not its tag; a tarball checked against it).
async fn folder_of(
    user_id: &str,
    source: &FeatureSource,
    cache: &Path,
    lock: Option<&lockfile::Read>,
) -> Result<Folder> {
    let named = || format!("fetching the feature {user_id:?} named in devcontainer.json");
    let pin = match lock {
        Some(l) => l.pin(user_id, source).with_context(named)?,
        None => None,
    };
    let fetched = match (source, &pin) {
        (FeatureSource::Local { path }, _) => {
            return Ok(Folder {
                path: path.clone(),
                digest: None,
                integrity: None,
            });
        }
        (
            FeatureSource::Oci {
                registry,
                repository,
                ..
            },
            Some(Pin::Oci { manifest }),
        ) => {
            let by_digest = format!("{registry}/{repository}@{manifest}");
            match crate::oci::fetch_feature(&by_digest, cache, Refresh::IfMissing).await {
                Ok(f) if f.manifest_digest.as_deref() != Some(manifest.as_str()) => {
                    Err(anyhow::anyhow!(
                        "the registry answered {by_digest} with the manifest {}",
                        f.manifest_digest.as_deref().unwrap_or("(none)")
                    ))
                }
                other => other,
            }
        }
        (FeatureSource::Tarball { url }, Some(Pin::Tarball { digest })) => {
            crate::oci::fetch_tarball_pinned(url, cache, digest.as_str()).await
        }
        (FeatureSource::Tarball { url }, _) => {
            crate::oci::fetch_tarball(url, cache, Refresh::IfMissing).await
        }
        (FeatureSource::Oci { .. }, _) => {
            crate::oci::fetch_feature(&source.to_string(), cache, Refresh::IfMissing).await
        }
    };
    let fetched = match (&pin, lock) {
        (Some(_), Some(l)) => fetched.with_context(|| {
            format!(
                "fetching the feature {user_id:?} as {} pins it",
                l.path.display()
            )
        }),
        _ => fetched.with_context(named),
    }?;
    Ok(Folder {
        path: fetched.dir,
        integrity: Some(fetched.manifest_digest.unwrap_or(fetched.digest.clone())),
        digest: Some(fetched.digest),
    })
}

/// What the feature asks of the workspace at run time: the widening settings (which
/// need consent), its mounts, entrypoint and lifecycle commands. The workspace always
/// runs an init, so `init` asks nothing more.
fn settings_of(user_id: &str, meta: &FeatureMeta) -> FeatureSettings {
    let lifecycle = [
        ("onCreateCommand", &meta.on_create_command),
        ("updateContentCommand", &meta.update_content_command),
        ("postCreateCommand", &meta.post_create_command),
        ("postStartCommand", &meta.post_start_command),
        ("postAttachCommand", &meta.post_attach_command),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect();
    FeatureSettings {
        id: user_id.to_string(),
        privileged: meta.privileged == Some(true),
        cap_add: meta.cap_add.clone().unwrap_or_default(),
        security_opt: meta.security_opt.clone().unwrap_or_default(),
        mounts: meta.mounts.clone().unwrap_or_default(),
        entrypoint: meta.entrypoint.clone().filter(|e| !e.trim().is_empty()),
        lifecycle,
    }
}

/// A user's home as the build sees it.
fn home_of(user: &str) -> String {
    match user {
        "root" | "0" => "/root".into(),
        u => format!("/home/{u}"),
    }
}

/// The config's features with their hard dependencies: each read (fetched into the
/// cache unless local), and their install order.
pub(crate) struct Resolved {
    pub nodes: Vec<Node>,
    /// Each node's folder, by index.
    pub folders: Vec<PathBuf>,
    /// Indexes into `nodes`, in install order.
    pub order: Vec<usize>,
    pub warnings: Vec<String>,
    /// The lockfile as resolved (`None` with `--no-lockfile`).
    pub lock: Option<lockfile::Update>,
}

/// Reads (or fetches) every feature `map` names and those they depend on, and orders
/// them as the reference CLI does. The features of one round (the config's, then each
/// level of dependencies) are fetched together, and every failure of the round is
/// reported. `lock` says whether the config's lockfile pins them.
pub(crate) async fn resolve(
    map: &serde_json::Map<String, serde_json::Value>,
    override_order: &[String],
    config_path: &Path,
    repo_root: &Path,
    lock: lockfile::Mode,
) -> Result<Resolved> {
    let place = Place {
        config_path,
        repo_root,
    };
    let (requested, warnings) = features::requested(map, place)?;
    let lock_path = lockfile::path_for(config_path);
    let old = match lock {
        lockfile::Mode::Off => None,
        _ => lockfile::read_confined(&lock_path)?,
    };
    if lock == lockfile::Mode::Frozen && old.is_none() {
        anyhow::bail!(
            "--frozen-lockfile: {} does not exist: run `devaipod up` once without --frozen-lockfile to write it, and commit it",
            lock_path.display()
        );
    }
    let cache = crate::oci::default_cache()?;
    let mut nodes = Vec::new();
    let mut folders = Vec::new();
    let mut entries = std::collections::BTreeMap::new();
    let mut pending: Vec<(String, FeatureSource, serde_json::Value)> = requested
        .into_iter()
        .map(|r| (r.user_id, r.source, r.value))
        .collect();
    while !pending.is_empty() {
        let fetched = futures_util::future::join_all(
            pending
                .iter()
                .map(|(user_id, source, _)| folder_of(user_id, source, &cache, old.as_ref())),
        )
        .await;
        let mut failures = Vec::new();
        for ((user_id, source, value), got) in pending.into_iter().zip(fetched) {
            let folder = match got {
                Ok(f) => f,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let meta = FeatureMeta::read(&folder.path)?;
            let depends_on = meta.depends_on.iter().flatten().map(|(k, _)| k.clone());
            if let Some(e) = folder.integrity.as_deref().and_then(|d| {
                lockfile::entry(&source, d, meta.version.as_deref(), depends_on.collect())
            }) {
                entries.insert(user_id.clone(), e);
            }
            nodes.push(Node {
                user_id,
                source,
                value,
                meta,
                digest: folder.digest,
            });
            folders.push(folder.path);
        }
        if let Some(e) = gathered(failures) {
            return Err(e);
        }
        pending = features::needed_dependencies(&nodes, place)?
            .into_iter()
            .map(|n| (n.user_id, n.source, n.value))
            .collect();
    }
    let order = features::install_order(&nodes, override_order, place)?;
    let update = match lock {
        lockfile::Mode::Off => None,
        mode => Some(lockfile::Update::new(
            mode,
            lock_path,
            old.map(|r| r.lockfile),
            lockfile::Lockfile { features: entries },
        )?),
    };
    Ok(Resolved {
        nodes,
        folders,
        order,
        warnings,
        lock: update,
    })
}

/// One error for the fetch failures of a round: the one, or each on a line of its own.
fn gathered(mut failures: Vec<anyhow::Error>) -> Option<anyhow::Error> {
    match failures.len() {
        0 => None,
        1 => failures.pop(),
        n => Some(anyhow::anyhow!(
            "{n} features could not be fetched:\n{}",
            failures
                .iter()
                .map(|e| format!("  - {e:#}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

/// Prepares the features' build on `base`; `None` when the config names none.
pub(crate) async fn prepare(
    dc: &DevContainer,
    config_path: &Path,
    repo_root: &Path,
    repo_name: &str,
    base: &Base<'_>,
    rebuild: bool,
    lock: lockfile::Mode,
) -> Result<Option<FeaturesBuild>> {
    let Some(map) = dc.features.as_ref().filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let Resolved {
        nodes,
        folders,
        order,
        mut warnings,
        lock,
    } = resolve(
        map,
        dc.override_feature_install_order.as_deref().unwrap_or(&[]),
        config_path,
        repo_root,
        lock,
    )
    .await?;
    let mut installs = Vec::new();
    let mut settings = Vec::new();
    let mut adds = Vec::new();
    for &i in &order {
        let node = &nodes[i];
        let s = settings_of(&node.user_id, &node.meta);
        adds.push(Adds::new(&node.meta, &s));
        settings.push(s);
        let env = features::option_env(&node.user_id, &node.meta, &node.value)?;
        warnings.extend(env.warnings);
        installs.push(Install {
            node,
            folder: folders[i].clone(),
            env: env.vars,
        });
    }
    let image_user = match base.user.split(':').next().unwrap_or("") {
        "" => "root",
        u => u,
    };
    let container_user = dc.container_user.clone().unwrap_or(image_user.to_string());
    let remote_user = dc.remote_user.clone().unwrap_or(container_user.clone());
    let users = Users {
        container_home: home_of(&container_user),
        remote_home: home_of(&remote_user),
        container_user,
        remote_user,
        image_user: image_user.to_string(),
    };
    let base_metadata = metadata::from_label(base.labels.get(metadata::LABEL).map(String::as_str));
    let made = features::build_context(&BuildInputs {
        base_image: base.reference,
        base_image_id: base.id,
        base_metadata: &base_metadata,
        users: &users,
        features: &installs,
        repo_name,
    })?;
    tracing::debug!(dockerfile = %made.dockerfile, key = %made.key, "features' build");
    let order_ids = order.iter().map(|&i| nodes[i].user_id.clone()).collect();
    let plan = BuildPlan {
        dockerfile: PathBuf::from(features::DOCKERFILE),
        context: config_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        args: BTreeMap::new(),
        target: None,
        no_cache: false,
        network: None,
        labels: BTreeMap::new(),
        tag: made.tag,
        key: made.key,
        files: made.files.len(),
        bytes: made.tar.len() as u64,
        rebuild,
    };
    Ok(Some(FeaturesBuild {
        build: Prepared {
            plan,
            tar: made.tar,
            dockerfile_in_context: features::DOCKERFILE.to_string(),
            warnings: Vec::new(),
        },
        order: order_ids,
        settings,
        adds,
        warnings,
        lock,
    }))
}
