//! devcontainer Features: from the `features` map of devcontainer.json and each feature's
//! devcontainer-feature.json to an install plan (sources, options as install.sh's
//! environment, install order, the derived image's build context), following the Dev
//! Container Features spec and the reference CLI (devcontainers/cli). Pure apart from
//! reading the feature folders it is given; fetching is `crate::oci`'s, building the
//! engine's.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The metadata file at the root of every feature.
pub(crate) const FEATURE_FILE: &str = "devcontainer-feature.json";

/// Where the reference installs features from inside the image being built.
pub(crate) const CONTAINER_FOLDER: &str = "/tmp/dev-container-features";

/// The file of each feature's folder holding its options, sourced before install.sh.
pub(crate) const ENV_FILE: &str = "devcontainer-features.env";

/// The file beside the features' folders holding `_REMOTE_USER` and friends.
const BUILTIN_ENV_FILE: &str = "devcontainer-features.builtin.env";

/// The reference's wrapper around install.sh (sources the env files, reports failure).
const INSTALL_WRAPPER: &str = "devcontainer-features-install.sh";

/// The Dockerfile's name inside the features' build context.
pub(crate) const DOCKERFILE: &str = "Dockerfile.devaipod-features";

/// Where the deprecated short ids point (the reference's `getBackwardCompatibleFeatureId`).
const SHORT_ID_REPOSITORY: &str = "devcontainers/features";
const SHORT_ID_REGISTRY: &str = "ghcr.io";
/// Short ids pin major version 1, as the reference does.
const SHORT_ID_TAG: &str = "1";

/// Short ids that kept their name in ghcr.io/devcontainers/features.
const MIGRATED: &[&str] = &[
    "aws-cli",
    "azure-cli",
    "desktop-lite",
    "docker-in-docker",
    "docker-from-docker",
    "dotnet",
    "git",
    "git-lfs",
    "github-cli",
    "java",
    "kubectl-helm-minikube",
    "node",
    "powershell",
    "python",
    "ruby",
    "rust",
    "sshd",
    "terraform",
];

/// Short ids that were renamed.
const RENAMED: &[(&str, &str)] = &[("golang", "go"), ("common", "common-utils")];

/// Short ids that became an option of another feature: (short id, feature, option).
const INTO_OPTIONS: &[(&str, &str, &str)] = &[
    ("gradle", "java", "installGradle"),
    ("maven", "java", "installMaven"),
    ("jupyterlab", "python", "installJupyterlab"),
];

/// How an OCI feature's version is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Reference {
    Tag(String),
    /// `sha256:HEX`.
    Digest(String),
}

/// Where a feature comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum FeatureSource {
    /// An OCI artifact: `REGISTRY/NAMESPACE/ID[:TAG|@sha256:HEX]` (lowercased).
    Oci {
        registry: String,
        /// `NAMESPACE/ID`.
        repository: String,
        reference: Reference,
    },
    /// A folder under the repository's `.devcontainer` folder (resolved, symlinks too).
    Local { path: PathBuf },
    /// `https://.../devcontainer-feature-ID.tgz`.
    Tarball { url: String },
}

/// Where local feature ids are resolved: the config's folder, confined to the
/// repository's `.devcontainer` folder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub config_path: &'a Path,
    pub repo_root: &'a Path,
}

impl fmt::Display for FeatureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oci {
                registry,
                repository,
                reference: Reference::Tag(t),
            } => write!(f, "{registry}/{repository}:{t}"),
            Self::Oci {
                registry,
                repository,
                reference: Reference::Digest(d),
            } => write!(f, "{registry}/{repository}@{d}"),
            Self::Local { path } => write!(f, "{}", path.display()),
            Self::Tarball { url } => f.write_str(url),
        }
    }
}

/// `^[a-z0-9]+([._-][a-z0-9]+)*$` (one component of the reference's path regex).
fn valid_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    b.windows(2).all(|w| alnum(w[0]) || alnum(w[1]))
        && b.iter()
            .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
}

/// `^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$` (the reference's tag regex).
fn valid_tag(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    !s.is_empty() && s.len() <= 128 && !s.starts_with(['.', '-']) && s.chars().all(ok)
}

impl FeatureSource {
    /// Reads a feature id as written in `features`, `dependsOn`, `installsAfter` or
    /// `overrideFeatureInstallOrder`. Local folders are resolved (on disk) and confined.
    pub(crate) fn parse(id: &str, place: Place<'_>) -> Result<Self> {
        if id.starts_with("./") || id.starts_with("../") {
            return Ok(Self::Local {
                path: local_folder(id, place)?,
            });
        }
        if id.starts_with('/') || id.contains('\\') {
            bail!(
                "feature {id:?}: absolute and Windows-style paths are not allowed; put the feature in a folder under .devcontainer and name it \"./FOLDER\""
            );
        }
        if let Some(rest) = id.strip_prefix("http://") {
            bail!(
                "feature {id:?}: tarball features are fetched over HTTPS only; use \"https://{rest}\""
            );
        }
        if let Some(rest) = id.strip_prefix("https://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if authority.contains('@') {
                // Not echoed: the part before '@' is a credential.
                bail!(
                    "a tarball feature's URL carries credentials (user:password@host); remove them from devcontainer.json"
                );
            }
            tarball_id(id)?;
            return Ok(Self::Tarball {
                url: id.to_string(),
            });
        }
        if !id.contains('/') {
            return short_id(id);
        }
        parse_oci(id)
    }

    /// The feature's id as its source names it (OCI: the last path component; local: the
    /// folder's name; tarball: the `ID` of `devcontainer-feature-ID.tgz`).
    pub(crate) fn id(&self) -> String {
        match self {
            Self::Oci { repository, .. } => {
                repository.rsplit('/').next().unwrap_or(repository).into()
            }
            Self::Local { path } => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Self::Tarball { url } => tarball_id(url).unwrap_or_default(),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Self::Oci { .. } => 0,
            Self::Local { .. } => 1,
            Self::Tarball { .. } => 2,
        }
    }

    /// OCI: `REGISTRY/NAMESPACE`, the prefix legacy ids are resolved against.
    fn oci_prefix(&self) -> Option<String> {
        match self {
            Self::Oci {
                registry,
                repository,
                ..
            } => {
                let ns = repository.rsplit_once('/').map_or("", |(ns, _)| ns);
                Some(format!("{registry}/{ns}"))
            }
            _ => None,
        }
    }

    /// OCI: `REGISTRY/NAMESPACE/ID` without the version.
    fn resource(&self) -> Option<String> {
        match self {
            Self::Oci {
                registry,
                repository,
                ..
            } => Some(format!("{registry}/{repository}")),
            _ => None,
        }
    }
}

/// A short id of the deprecated form, as the reference maps it.
fn short_id(id: &str) -> Result<FeatureSource> {
    let name = if MIGRATED.contains(&id) {
        Some(id)
    } else {
        RENAMED
            .iter()
            .find(|(old, _)| *old == id)
            .map(|(_, new)| *new)
    };
    match name {
        Some(name) => Ok(FeatureSource::Oci {
            registry: SHORT_ID_REGISTRY.into(),
            repository: format!("{SHORT_ID_REPOSITORY}/{name}"),
            reference: Reference::Tag(SHORT_ID_TAG.into()),
        }),
        None => bail!(
            "feature {id:?}: this short form is not supported (nor by the reference CLI); name the feature in full, e.g. \"ghcr.io/devcontainers/features/{id}:1\" (see https://containers.dev/features), or write \"./{id}\" for a folder under .devcontainer"
        ),
    }
}

/// An OCI reference, read as the reference's `getRef` reads it.
fn parse_oci(id: &str) -> Result<FeatureSource> {
    let input = id.to_lowercase();
    let bad = |why: &str| anyhow::anyhow!("feature {id:?}: {why}");
    if input.starts_with('.') {
        return Err(bad("an OCI reference cannot start with '.'"));
    }
    let (resource, reference) = if let Some(at) = input.rfind('@') {
        let digest = &input[at + 1..];
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("a digest must be written sha256:HEX (64 hex digits)"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a digest must be written sha256:HEX (64 hex digits)"));
        }
        (&input[..at], Reference::Digest(digest.to_string()))
    } else {
        match input.rfind(':') {
            Some(colon) if colon > input.rfind('/').unwrap_or(0) => {
                let tag = &input[colon + 1..];
                if !valid_tag(tag) {
                    return Err(bad(
                        "the tag must be letters, digits, '_', '.' or '-' (at most 128), not starting with '.' or '-'",
                    ));
                }
                (&input[..colon], Reference::Tag(tag.to_string()))
            }
            _ => (input.as_str(), Reference::Tag("latest".into())),
        }
    };
    let mut parts: Vec<&str> = resource.split('/').collect();
    if parts.len() < 3 {
        return Err(bad(
            "expected REGISTRY/NAMESPACE/FEATURE, e.g. ghcr.io/devcontainers/features/node:1",
        ));
    }
    if parts[1] == "devcontainers-contrib" {
        // The reference redirects the renamed collection.
        parts[1] = "devcontainers-extra";
    }
    let registry = parts[0];
    if registry.is_empty() {
        return Err(bad("the registry is empty"));
    }
    if let Some(p) = parts[1..].iter().find(|p| !valid_path_component(p)) {
        return Err(bad(&format!(
            "{p:?} is not a valid repository path component (lowercase letters and digits, separated by one of '.', '_', '-')"
        )));
    }
    Ok(FeatureSource::Oci {
        registry: registry.to_string(),
        repository: parts[1..].join("/"),
        reference,
    })
}

/// The feature id of a tarball URL: its file must be named `devcontainer-feature-ID.tgz`.
fn tarball_id(url: &str) -> Result<String> {
    let path = url
        .trim_start_matches("https://")
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    let id = name
        .strip_prefix("devcontainer-feature-")
        .and_then(|r| r.strip_suffix(".tgz"))
        .unwrap_or_default();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!(
            "feature {url:?}: a tarball feature's file must be named devcontainer-feature-ID.tgz, with ID made of letters, digits, '_' and '-'"
        );
    }
    Ok(id.to_string())
}

/// `path` without `.` and with `..` applied, lexically; `None` if `..` climbs above it.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// The folder of a local feature: under the config's `.devcontainer` folder (the one
/// holding devcontainer.json, or `.devcontainer/NAME/devcontainer.json`, or the one
/// beside a `.devcontainer.json`), inside the repository, both as written and with
/// symlinks resolved.
fn local_folder(id: &str, place: Place<'_>) -> Result<PathBuf> {
    let fix = "local features live in folders under the .devcontainer folder of devcontainer.json; move the feature there and name it \"./FOLDER\" relative to devcontainer.json";
    let config_dir = place.config_path.parent().unwrap_or(Path::new("."));
    let root = match config_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == ".devcontainer"))
    {
        Some(d) => normalise(d),
        None => normalise(&config_dir.join(".devcontainer")),
    };
    let joined = normalise(&config_dir.join(id));
    let (Some(root), Some(joined)) = (root, joined) else {
        bail!("feature {id:?}: the path climbs out of the filesystem root; {fix}");
    };
    if joined == root || !joined.starts_with(&root) {
        bail!(
            "feature {id:?}: {} is not inside {}; {fix}",
            joined.display(),
            root.display()
        );
    }
    let real = joined
        .canonicalize()
        .with_context(|| format!("feature {id:?}: {} does not exist; {fix}", joined.display()))?;
    let real_root = root
        .canonicalize()
        .with_context(|| format!("feature {id:?}: resolving {}", root.display()))?;
    let real_repo = place
        .repo_root
        .canonicalize()
        .with_context(|| format!("resolving {}", place.repo_root.display()))?;
    if !real_root.starts_with(&real_repo) {
        bail!(
            "feature {id:?}: {} resolves (through a symlink) to {}, outside the repository; {fix}",
            root.display(),
            real_root.display()
        );
    }
    if !real.starts_with(&real_root) || real == real_root {
        bail!(
            "feature {id:?}: {} resolves (through a symlink) to {}, outside {}; {fix}",
            joined.display(),
            real.display(),
            real_root.display()
        );
    }
    if !real.is_dir() {
        bail!("feature {id:?}: {} is not a folder", real.display());
    }
    Ok(real)
}

/// A feature the config asks for (in `features`), with the value written for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Requested {
    /// The key as written in `features` (after the reference's folding of short ids that
    /// became options).
    pub user_id: String,
    pub source: FeatureSource,
    /// The value as written: a string (the `version` option), `true`, or an object.
    pub value: Value,
}

/// The features of a config's `features` object, in order. Short ids that became an
/// option of another feature (`gradle`, `maven`, `jupyterlab`) are folded into it as the
/// reference does; the second value is the warnings for the deprecated forms.
pub(crate) fn requested(
    features: &Map<String, Value>,
    place: Place<'_>,
) -> Result<(Vec<Requested>, Vec<String>)> {
    let mut entries: Vec<(String, Value)> = features
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut warnings = Vec::new();
    for (short, into, option) in INTO_OPTIONS {
        if !entries.iter().any(|(k, _)| k == short) {
            continue;
        }
        warnings.push(format!(
            "feature {short:?} is deprecated: it is now the option {option:?} of ghcr.io/devcontainers/features/{into}"
        ));
        let full = format!("{SHORT_ID_REGISTRY}/{SHORT_ID_REPOSITORY}/{into}");
        let target = entries
            .iter_mut()
            .find(|(k, _)| k == into || *k == full || k.starts_with(&format!("{full}:")));
        let mut options = match target.as_ref().map(|(_, v)| v) {
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(s)) => {
                Map::from_iter([("version".into(), Value::String(s.clone()))])
            }
            _ => Map::new(),
        };
        options.insert((*option).into(), Value::Bool(true));
        match target {
            Some((_, v)) => *v = Value::Object(options),
            None => entries.push((format!("{full}:{SHORT_ID_TAG}"), Value::Object(options))),
        }
    }
    entries.retain(|(k, _)| !INTO_OPTIONS.iter().any(|(s, _, _)| s == k));
    let mut out = Vec::new();
    for (user_id, value) in entries {
        let source = FeatureSource::parse(&user_id, place)?;
        if !user_id.contains('/') {
            warnings.push(format!(
                "feature {user_id:?} uses the deprecated short form; write \"{source}\""
            ));
        }
        out.push(Requested {
            user_id,
            source,
            value,
        });
    }
    Ok((out, warnings))
}

/// One option a feature declares.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum FeatureOption {
    String {
        #[serde(default)]
        default: Option<Value>,
        #[serde(default)]
        proposals: Option<Vec<String>>,
        #[serde(default, rename = "enum")]
        allowed: Option<Vec<String>>,
        #[serde(default)]
        description: Option<String>,
    },
    Boolean {
        #[serde(default)]
        default: Option<Value>,
        #[serde(default)]
        description: Option<String>,
    },
}

impl FeatureOption {
    fn default(&self) -> Option<&Value> {
        match self {
            Self::String { default, .. } | Self::Boolean { default, .. } => default.as_ref(),
        }
    }
}

fn ordered_options<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, FeatureOption)>, D::Error> {
    let map = Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| {
            serde_json::from_value(v)
                .map(|o| (k.clone(), o))
                .map_err(|e| serde::de::Error::custom(format!("options.{k}: {e}")))
        })
        .collect()
}

fn ordered_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let map = Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(serde::de::Error::custom(format!(
                "containerEnv.{k} must be a string"
            ))),
        })
        .collect()
}

/// devcontainer-feature.json. Properties it does not name are kept in `extra` (and the
/// whole file in `raw`), not refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FeatureMeta {
    pub id: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "documentationURL")]
    pub documentation_url: Option<String>,
    /// Options in declaration order.
    #[serde(default, deserialize_with = "ordered_options")]
    pub options: Vec<(String, FeatureOption)>,
    /// In declaration order; written as ENV lines of the image.
    #[serde(default, deserialize_with = "ordered_strings")]
    pub container_env: Vec<(String, String)>,
    pub mounts: Option<Vec<Value>>,
    pub cap_add: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub privileged: Option<bool>,
    pub init: Option<bool>,
    pub entrypoint: Option<String>,
    pub customizations: Option<Value>,
    pub on_create_command: Option<Value>,
    pub update_content_command: Option<Value>,
    pub post_create_command: Option<Value>,
    pub post_start_command: Option<Value>,
    pub post_attach_command: Option<Value>,
    /// Hard dependencies: feature id -> options (as in `features`), in order.
    pub depends_on: Option<Map<String, Value>>,
    /// Soft dependencies: installed first when also requested.
    pub installs_after: Option<Vec<String>>,
    pub legacy_ids: Option<Vec<String>>,
    pub current_id: Option<String>,
    pub deprecated: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The file as read.
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

impl FeatureMeta {
    /// Parses devcontainer-feature.json (JSONC, like devcontainer.json); `path` names it
    /// in errors.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw = super::parse_raw(text).map_err(|e| {
            anyhow::anyhow!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message)
        })?;
        let mut meta: Self = serde_json::from_value(Value::Object(raw.clone()))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if meta.id.is_empty() {
            bail!("{}: \"id\" is empty", path.display());
        }
        meta.raw = raw;
        Ok(meta)
    }

    /// Reads `FOLDER/devcontainer-feature.json`.
    pub(crate) fn read(folder: &Path) -> Result<Self> {
        let path = folder.join(FEATURE_FILE);
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}: every feature has one", path.display()))?;
        if !meta.is_file() || meta.len() > super::MAX_CONFIG_BYTES {
            bail!(
                "{}: not a regular file of at most {} bytes",
                path.display(),
                super::MAX_CONFIG_BYTES
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path)
    }

    /// `[currentId or id, ...legacyIds]`, the names the reference matches renamed
    /// features by.
    fn aliases(&self) -> Vec<&str> {
        let current = self.current_id.as_deref().unwrap_or(&self.id);
        std::iter::once(current)
            .chain(self.legacy_ids.iter().flatten().map(String::as_str))
            .collect()
    }
}

/// The reference's `getSafeId`: an option (or feature) name as an environment variable.
pub(crate) fn safe_id(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let rest = replaced.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    let out = if rest.len() == replaced.len() {
        replaced
    } else {
        format!("_{rest}")
    };
    out.to_uppercase()
}

/// A JSON value as JavaScript's template strings print it (`${v}`).
fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// install.sh's environment for one feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OptionEnv {
    /// `NAME=value`, in the reference's order: the declared options with a default (in
    /// declaration order), then options only the user set.
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// The options of `feature` (named `user_id` in the config) given the user's `value`: a
/// string is the `version` option, `true` or `{}` the defaults, an object the options.
pub(crate) fn option_env(user_id: &str, meta: &FeatureMeta, value: &Value) -> Result<OptionEnv> {
    let user: Map<String, Value> = match value {
        Value::Bool(true) | Value::Null => Map::new(),
        Value::String(s) => Map::from_iter([("version".into(), Value::String(s.clone()))]),
        Value::Object(m) => m.clone(),
        Value::Bool(false) => bail!(
            "feature {user_id:?}: false does not turn a feature off (the reference CLI installs it anyway); remove the entry, or write true for its defaults"
        ),
        other => bail!(
            "feature {user_id:?}: the value must be true, a version string or an object of options, not {other}"
        ),
    };
    let mut out = OptionEnv::default();
    let mut values: Vec<(String, Value)> = meta
        .options
        .iter()
        .filter_map(|(k, o)| o.default().map(|d| (k.clone(), d.clone())))
        .collect();
    for (k, v) in &user {
        if matches!(v, Value::Array(_) | Value::Object(_)) {
            bail!("feature {user_id:?}: option {k:?} must be a string or a boolean, not {v}");
        }
        if safe_id(k).is_empty() {
            bail!("feature {user_id:?}: an option name cannot be empty");
        }
        let declared = meta.options.iter().find(|(name, _)| name == k);
        match declared.map(|(_, o)| o) {
            None => out.warnings.push(format!(
                "feature {user_id:?} declares no option {k:?} (it has: {}); install.sh gets it anyway, as with the reference CLI",
                names(meta)
            )),
            Some(FeatureOption::String {
                allowed: Some(allowed),
                ..
            }) if !allowed.contains(&js_string(v)) => bail!(
                "feature {user_id:?}: option {k:?} is {}, which is not one of its allowed values: {}",
                v,
                allowed.join(", ")
            ),
            Some(_) => {}
        }
        match values.iter_mut().find(|(name, _)| name == k) {
            Some((_, slot)) => *slot = v.clone(),
            None => values.push((k.clone(), v.clone())),
        }
    }
    out.vars = values
        .into_iter()
        .map(|(k, v)| (safe_id(&k), js_string(&v)))
        .collect();
    Ok(out)
}

fn names(meta: &FeatureMeta) -> String {
    if meta.options.is_empty() {
        return "none".into();
    }
    meta.options
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value in single quotes for `sh`: every byte reaches the shell literally.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An env file for `set -a; . ./FILE; set +a`: one `NAME='value'` per line.
pub(crate) fn env_file(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("{k}={}\n", sh_quote(v)))
        .collect()
}

/// A feature resolved by the caller: its source, value and metadata (fetched or read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// How the config (or the `dependsOn` that pulled it in) names it.
    pub user_id: String,
    pub source: FeatureSource,
    pub value: Value,
    pub meta: FeatureMeta,
    /// OCI: the manifest's digest (equal digests and options are the same feature).
    pub digest: Option<String>,
}

/// A hard dependency the caller must fetch and add as a [`Node`] before ordering.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Needed {
    pub user_id: String,
    pub source: FeatureSource,
    pub value: Value,
    /// The `user_id` of the feature whose `dependsOn` names it.
    pub required_by: String,
}

/// The `dependsOn` entries of `nodes` that no node answers yet (same source, same
/// options), in the reference's breadth-first order. The caller fetches them, appends
/// them to `nodes` and asks again until none are left.
pub(crate) fn needed_dependencies(nodes: &[Node], place: Place<'_>) -> Result<Vec<Needed>> {
    let mut out: Vec<Needed> = Vec::new();
    for n in nodes {
        for (id, value) in n.meta.depends_on.iter().flatten() {
            let source = FeatureSource::parse(id, place)
                .with_context(|| format!("dependsOn of feature {:?}", n.user_id))?;
            let answered = nodes
                .iter()
                .any(|m| m.source == source && options_cmp(&m.value, value).is_eq())
                || out
                    .iter()
                    .any(|m| m.source == source && options_cmp(&m.value, value).is_eq());
            if !answered {
                out.push(Needed {
                    user_id: id.clone(),
                    source,
                    value: value.clone(),
                    required_by: n.user_id.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// JavaScript's `localeCompare` as the reference's ordering uses it, for the ASCII ids
/// features have: punctuation before digits before letters, letters compared without
/// case first, then lowercase before uppercase.
pub(crate) fn locale_cmp(a: &str, b: &str) -> Ordering {
    const PUNCTUATION: &str = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$";
    let primary = |c: char| -> (u8, u32) {
        if let Some(i) = PUNCTUATION.find(c) {
            (0, i as u32)
        } else if c.is_ascii_digit() {
            (1, c as u32)
        } else if c.is_ascii_alphabetic() {
            (2, c.to_ascii_lowercase() as u32)
        } else {
            (3, c as u32)
        }
    };
    let pa: Vec<_> = a.chars().map(primary).collect();
    let pb: Vec<_> = b.chars().map(primary).collect();
    pa.cmp(&pb).then_with(|| {
        let case = |s: &str| -> Vec<bool> { s.chars().map(|c| c.is_ascii_uppercase()).collect() };
        case(a).cmp(&case(b))
    })
}

/// The reference's `optionsCompareTo` over the values as written.
fn options_cmp(a: &Value, b: &Value) -> Ordering {
    let bools = |x: bool, y: bool| x.cmp(&y);
    match (a, b) {
        (Value::String(x), Value::String(y)) => locale_cmp(x, y),
        (Value::Bool(x), Value::Bool(y)) => bools(*x, *y),
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort();
            yk.sort();
            for (kx, ky) in xk.iter().zip(&yk) {
                if kx != ky {
                    return locale_cmp(kx, ky);
                }
                let o = match (&x[kx.as_str()], &y[ky.as_str()]) {
                    (Value::String(p), Value::String(q)) => locale_cmp(p, q),
                    (Value::Bool(p), Value::Bool(q)) => bools(*p, *q),
                    _ => Ordering::Equal,
                };
                if o.is_ne() {
                    return o;
                }
            }
            Ordering::Equal
        }
        _ => locale_cmp(js_type(a), js_type(b)),
    }
}

fn js_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::Null => "undefined",
        _ => "object",
    }
}

/// The reference's `compareTo`: the order within a round, and (at 0) equality.
fn compare(a: &Node, b: &Node) -> Ordering {
    if a.source.kind() != b.source.kind() {
        return locale_cmp(&a.user_id, &b.user_id);
    }
    match (&a.source, &b.source) {
        (FeatureSource::Oci { reference: ra, .. }, FeatureSource::Oci { reference: rb, .. }) => {
            let options = options_cmp(&a.value, &b.value);
            if a.digest == b.digest && options.is_eq() {
                return Ordering::Equal;
            }
            let (pa, pb) = (a.source.oci_prefix(), b.source.oci_prefix());
            if pa != pb {
                return locale_cmp(&pa.unwrap_or_default(), &pb.unwrap_or_default());
            }
            let (aa, ab) = (a.meta.aliases(), b.meta.aliases());
            if !aa.iter().any(|x| ab.contains(x)) {
                return locale_cmp(&a.source.id(), &b.source.id());
            }
            if let (Reference::Tag(ta), Reference::Tag(tb)) = (ra, rb)
                && ta != tb
            {
                return locale_cmp(ta, tb);
            }
            if options.is_ne() {
                return options;
            }
            locale_cmp(
                a.digest.as_deref().unwrap_or_default(),
                b.digest.as_deref().unwrap_or_default(),
            )
        }
        (FeatureSource::Local { path: x }, FeatureSource::Local { path: y }) => {
            locale_cmp(&x.to_string_lossy(), &y.to_string_lossy())
                .then_with(|| options_cmp(&a.value, &b.value))
        }
        (FeatureSource::Tarball { url: x }, FeatureSource::Tarball { url: y }) => {
            locale_cmp(x, y).then_with(|| options_cmp(&a.value, &b.value))
        }
        _ => Ordering::Equal,
    }
}

fn equals(a: &Node, b: &Node) -> bool {
    a.source.kind() == b.source.kind() && compare(a, b).is_eq()
}

/// The reference's `satisfiesSoftDependency`: does `node` answer `wanted`
/// (`installsAfter` or `overrideFeatureInstallOrder`)? OCI features match by resource
/// regardless of version; for `installsAfter`, also by a legacy id (`aliases`).
fn satisfies(node: &Node, wanted: &FeatureSource, aliases: &[&str]) -> bool {
    match (&node.source, wanted) {
        (FeatureSource::Oci { .. }, FeatureSource::Oci { .. }) => {
            node.source.resource() == wanted.resource()
                || aliases.iter().any(|legacy| {
                    Some(format!(
                        "{}/{legacy}",
                        wanted.oci_prefix().unwrap_or_default()
                    )) == node.source.resource()
                })
        }
        (FeatureSource::Local { path: x }, FeatureSource::Local { path: y }) => x == y,
        (FeatureSource::Tarball { url: x }, FeatureSource::Tarball { url: y }) => x == y,
        _ => false,
    }
}

/// The aliases of a soft dependency. The reference fetches its metadata; here they come
/// from the node that is that feature under a legacy id (its metadata names both).
fn soft_aliases<'a>(wanted: &FeatureSource, nodes: &'a [Node]) -> Vec<&'a str> {
    let id = wanted.id();
    nodes
        .iter()
        .filter(|n| n.source.oci_prefix().is_some() && n.source.oci_prefix() == wanted.oci_prefix())
        .map(|n| n.meta.aliases())
        .find(|a| a.contains(&id.as_str()))
        .unwrap_or_default()
}

/// The install order of `nodes` (requested features first, then the dependencies
/// [`needed_dependencies`] asked for, in that order), as indexes into `nodes`: the
/// reference's round-based algorithm. A node equal to an earlier one (same feature,
/// same options) is installed once.
pub(crate) fn install_order(
    nodes: &[Node],
    override_order: &[String],
    place: Place<'_>,
) -> Result<Vec<usize>> {
    let mut work: Vec<usize> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if !work.iter().any(|&j| equals(&nodes[j], n)) {
            work.push(i);
        }
    }
    // Hard edges point at the node fetched for the dependency; soft edges keep only
    // what some feature to be installed answers.
    let mut hard: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut soft: Vec<Vec<(FeatureSource, Vec<&str>)>> = vec![Vec::new(); nodes.len()];
    for &i in &work {
        let n = &nodes[i];
        for (id, value) in n.meta.depends_on.iter().flatten() {
            let source = FeatureSource::parse(id, place)
                .with_context(|| format!("dependsOn of feature {:?}", n.user_id))?;
            let Some(m) = nodes
                .iter()
                .position(|m| m.source == source && options_cmp(&m.value, value).is_eq())
            else {
                bail!(
                    "feature {:?} depends on {id:?}, which was not fetched (internal: needed_dependencies lists it)",
                    n.user_id
                );
            };
            hard[i].push(m);
        }
        for id in n.meta.installs_after.iter().flatten() {
            let source = FeatureSource::parse(id, place)
                .with_context(|| format!("installsAfter of feature {:?}", n.user_id))?;
            let aliases = soft_aliases(&source, nodes);
            if work
                .iter()
                .any(|&w| satisfies(&nodes[w], &source, &aliases))
            {
                soft[i].push((source, aliases));
            }
        }
    }
    let mut priority = vec![0usize; nodes.len()];
    let count = override_order.len();
    for (i, id) in override_order.iter().enumerate().rev() {
        let source = FeatureSource::parse(id, place)
            .with_context(|| format!("overrideFeatureInstallOrder entry {id:?}"))?;
        for &w in &work {
            if satisfies(&nodes[w], &source, &[]) {
                priority[w] = priority[w].max(count - i);
            }
        }
    }

    let mut order: Vec<usize> = Vec::new();
    while !work.is_empty() {
        let ready = |i: usize, order: &[usize]| {
            (hard[i].is_empty() && soft[i].is_empty())
                || hard[i]
                    .iter()
                    .all(|&d| order.iter().any(|&o| equals(&nodes[o], &nodes[d])))
                    && soft[i]
                        .iter()
                        .all(|(s, a)| order.iter().any(|&o| satisfies(&nodes[o], s, a)))
        };
        let mut round: Vec<usize> = work.iter().copied().filter(|&i| ready(i, &order)).collect();
        if round.is_empty() {
            bail!(
                "the features' dependencies form a cycle: {}; remove one of these dependsOn/installsAfter links (or the feature)",
                describe_cycle(nodes, &work, &hard, &soft)
            );
        }
        let max = round.iter().map(|&i| priority[i]).max().unwrap_or(0);
        round.retain(|&i| priority[i] == max);
        work.retain(|&w| !round.iter().any(|&r| equals(&nodes[r], &nodes[w])));
        round.sort_by(|&a, &b| compare(&nodes[a], &nodes[b]));
        order.extend(round);
    }
    Ok(order)
}

/// A cycle among the features left, as `a -> b -> a`.
fn describe_cycle(
    nodes: &[Node],
    left: &[usize],
    hard: &[Vec<usize>],
    soft: &[Vec<(FeatureSource, Vec<&str>)>],
) -> String {
    let edges = |i: usize| -> Vec<usize> {
        left.iter()
            .copied()
            .filter(|&w| {
                hard[i].iter().any(|&d| equals(&nodes[d], &nodes[w]))
                    || soft[i].iter().any(|(s, a)| satisfies(&nodes[w], s, a))
            })
            .collect()
    };
    // Every node left waits on another one left, so walking any edge must revisit.
    let mut path: Vec<usize> = Vec::new();
    let mut at = left[0];
    loop {
        if let Some(pos) = path.iter().position(|&p| p == at) {
            let mut cycle: Vec<&str> = path[pos..]
                .iter()
                .map(|&p| nodes[p].user_id.as_str())
                .collect();
            cycle.push(&nodes[at].user_id);
            return cycle.join(" -> ");
        }
        path.push(at);
        match edges(at).first() {
            Some(&next) => at = next,
            None => {
                return left
                    .iter()
                    .map(|&i| nodes[i].user_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
            }
        }
    }
}

/// A feature to install, in order: its node, its files, install.sh's options.
#[derive(Debug, Clone)]
pub(crate) struct Install<'a> {
    pub node: &'a Node,
    /// The feature's files (devcontainer-feature.json, install.sh, ...).
    pub folder: PathBuf,
    /// From [`option_env`].
    pub env: Vec<(String, String)>,
}

/// The users features are installed for (`_CONTAINER_USER`, `_REMOTE_USER` and homes),
/// and the image's own user, restored after the installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Users {
    pub container_user: String,
    pub container_home: String,
    pub remote_user: String,
    pub remote_home: String,
    pub image_user: String,
}

/// One file of the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContextFile {
    /// Copied from disk (symlinks kept as symlinks).
    Disk { name: String, path: PathBuf },
    /// Made here.
    Made {
        name: String,
        content: Vec<u8>,
        mode: u32,
    },
}

/// The derived image's build: Dockerfile, context, content key and tag.
#[derive(Debug)]
pub(crate) struct FeaturesBuild {
    pub dockerfile: String,
    /// Every file of the context, in order (the Dockerfile is [`DOCKERFILE`] among them).
    pub files: Vec<ContextFile>,
    pub tar: Vec<u8>,
    /// sha256 of every input: base image id, each feature's files and options, users.
    pub key: String,
    /// `localhost/devaipod-features-REPO:KEY16`.
    pub tag: String,
}

/// The folder name of the `n`th feature, as the reference names it (`ID_N`).
fn consecutive_id(id: &str, n: usize) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}_{n}")
}

/// An ENV line the way the reference writes one: double quotes, `"` and `\` escaped,
/// `$` left for the builder to expand (features write `PATH=/x:${PATH}`).
fn env_line(feature: &str, k: &str, v: &str) -> Result<String> {
    if k.is_empty() || k.contains(['=', ' ', '\t', '\n', '"', '\\']) || v.contains(['\n', '\r']) {
        bail!(
            "feature {feature:?}: containerEnv {k:?} cannot be written as an image ENV (names have no '=', spaces or quotes; values no newlines)"
        );
    }
    let mut escaped = String::new();
    for c in v.chars() {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(format!("ENV {k}=\"{escaped}\"\n"))
}

/// The reference's `devcontainer.metadata` LABEL line.
fn metadata_label(entries: &[Map<String, Value>]) -> String {
    let json = Value::Array(entries.iter().cloned().map(Value::Object).collect()).to_string();
    let mut escaped = String::new();
    for c in json.chars() {
        if matches!(c, '"' | '\\' | '$') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("LABEL {}=\"{escaped}\"\n", super::metadata::LABEL)
}

/// An echo of `s` in single quotes for the wrapper script.
fn echo(s: &str) -> String {
    format!("echo {}\n", sh_quote(s))
}

/// The reference's `devcontainer-features-install.sh`: prints what is installed, sources
/// the env files with `set -a`, runs install.sh, and names the feature if it fails.
fn install_wrapper(node: &Node, env: &[(String, String)]) -> String {
    let m = &node.meta;
    let name = m.name.as_deref().unwrap_or("Unknown");
    let id = node.user_id.split('@').next().unwrap_or(&node.user_id);
    let docs = m.documentation_url.as_deref().unwrap_or("");
    let mut warning = String::new();
    if m.deprecated == Some(true) {
        warning.push_str(&format!(
            "(!) WARNING: Using the deprecated Feature \"{}\". This Feature will no longer receive any further updates/support.\n",
            m.id
        ));
    }
    if let Some(current) = &m.current_id
        && m.legacy_ids.as_ref().is_some_and(|l| !l.is_empty())
        && *current != m.id
    {
        warning.push_str(&format!(
            "(!) WARNING: This feature has been renamed. Please update the reference in devcontainer.json to \"{current}\"."
        ));
    }
    let mut failed = format!("ERROR: Feature \"{name}\" ({id}) failed to install!");
    if !docs.is_empty() {
        failed.push_str(&format!(
            " Look at the documentation at {docs} for help troubleshooting this error."
        ));
    }
    let options: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("    {k}={}", sh_quote(v)))
        .collect();
    let mut s = String::from("#!/bin/sh\nset -e\n\non_exit () {\n\t[ $? -eq 0 ] && exit\n\t");
    s.push_str(&echo(&failed));
    s.push_str("}\n\ntrap on_exit EXIT\n\necho ===========================================================================\n");
    if !warning.is_empty() {
        s.push_str(&echo(&warning));
    }
    s.push_str(&echo(&format!("Feature       : {name}")));
    s.push_str(&echo(&format!(
        "Description   : {}",
        m.description.as_deref().unwrap_or("")
    )));
    s.push_str(&echo(&format!("Id            : {id}")));
    s.push_str(&echo(&format!(
        "Version       : {}",
        m.version.as_deref().unwrap_or("")
    )));
    s.push_str(&echo(&format!("Documentation : {docs}")));
    s.push_str(&echo("Options       :"));
    s.push_str(&echo(&options.join("\n")));
    s.push_str(
        "echo ===========================================================================\n\n",
    );
    s.push_str(&format!(
        "set -a\n. ../{BUILTIN_ENV_FILE}\n. ./{ENV_FILE}\nset +a\n\nchmod +x ./install.sh\n./install.sh\n"
    ));
    s
}

/// The files under `dir`, relative, sorted; symlinks are listed, not followed.
fn tree(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries =
            std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("reading {}", here.display()))?;
            let path = rel.join(e.file_name());
            let kind = e
                .file_type()
                .with_context(|| format!("reading {}", dir.join(&path).display()))?;
            if kind.is_dir() {
                stack.push(path.clone());
            }
            if kind.is_dir() || kind.is_file() || kind.is_symlink() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What the derived image is built from.
#[derive(Debug, Clone)]
pub(crate) struct BuildInputs<'a> {
    /// The `FROM` of the derived image (a name or an image id).
    pub base_image: &'a str,
    /// The base image's id: a new base under the same name changes the key.
    pub base_image_id: &'a str,
    /// The base image's own `devcontainer.metadata` entries, kept first in the label.
    pub base_metadata: &'a [Map<String, Value>],
    pub users: &'a Users,
    /// In install order.
    pub features: &'a [Install<'a>],
    /// Names the image: `localhost/devaipod-features-REPO:KEY16`.
    pub repo_name: &'a str,
}

/// The build context of the image with `features` installed on the base image, as the
/// reference lays it out: each feature in `/tmp/dev-container-features/ID_N/` with its
/// options in devcontainer-features.env, installed as root in its own RUN, its
/// containerEnv as ENV lines (before its install, as the reference writes them), and
/// the base's plus the features' metadata entries in the `devcontainer.metadata` label.
pub(crate) fn build_context(inputs: &BuildInputs<'_>) -> Result<FeaturesBuild> {
    let u = inputs.users;
    let builtin = env_file(&[
        ("_CONTAINER_USER".into(), u.container_user.clone()),
        ("_REMOTE_USER".into(), u.remote_user.clone()),
        ("_CONTAINER_USER_HOME".into(), u.container_home.clone()),
        ("_REMOTE_USER_HOME".into(), u.remote_home.clone()),
    ]);
    if inputs.base_image.contains(char::is_whitespace) || u.image_user.contains(char::is_whitespace)
    {
        bail!(
            "the base image {:?} or its user {:?} contains whitespace",
            inputs.base_image,
            u.image_user
        );
    }
    let mut files = vec![ContextFile::Made {
        name: BUILTIN_ENV_FILE.into(),
        content: builtin.into_bytes(),
        mode: 0o644,
    }];
    let mut dockerfile = format!(
        "FROM {}\nUSER root\nCOPY --chown=root:root {BUILTIN_ENV_FILE} {CONTAINER_FOLDER}/\n",
        inputs.base_image
    );
    let mut entries: Vec<Map<String, Value>> = inputs.base_metadata.to_vec();
    for (n, f) in inputs.features.iter().enumerate() {
        let node = f.node;
        let cid = consecutive_id(&node.meta.id, n);
        for rel in tree(&f.folder)? {
            let name = rel.to_string_lossy();
            if name == ENV_FILE || name == INSTALL_WRAPPER {
                continue;
            }
            files.push(ContextFile::Disk {
                name: format!("{cid}/{name}"),
                path: f.folder.join(&rel),
            });
        }
        if !f.folder.join("install.sh").is_file() {
            bail!(
                "feature {:?}: {} has no install.sh",
                node.user_id,
                f.folder.display()
            );
        }
        files.push(ContextFile::Made {
            name: format!("{cid}/{ENV_FILE}"),
            content: env_file(&f.env).into_bytes(),
            mode: 0o644,
        });
        files.push(ContextFile::Made {
            name: format!("{cid}/{INSTALL_WRAPPER}"),
            content: install_wrapper(node, &f.env).into_bytes(),
            mode: 0o755,
        });
        for (k, v) in &node.meta.container_env {
            dockerfile.push_str(&env_line(&node.user_id, k, v)?);
        }
        let dest = format!("{CONTAINER_FOLDER}/{cid}");
        dockerfile.push_str(&format!(
            "COPY --chown=root:root {cid}/ {dest}/\nRUN chmod -R 0755 {dest} \\\n && cd {dest} \\\n && chmod +x ./{INSTALL_WRAPPER} \\\n && ./{INSTALL_WRAPPER}\n"
        ));
        entries.push(super::metadata::feature_entry(
            &node.user_id,
            &node.meta.raw,
        ));
    }
    dockerfile.push_str(&format!("USER {}\n", u.image_user));
    dockerfile.push_str(&metadata_label(&entries));
    files.push(ContextFile::Made {
        name: DOCKERFILE.into(),
        content: dockerfile.clone().into_bytes(),
        mode: 0o644,
    });

    let mut tar = crate::build::ContextTar::new();
    for f in &files {
        match f {
            ContextFile::Disk { name, path } => tar.add_path(path, Path::new(name))?,
            ContextFile::Made {
                name,
                content,
                mode,
            } => tar.add_bytes(name, content, *mode)?,
        }
    }
    let (tar, _) = tar.finish()?;
    let key = content_key(inputs, &tar);
    let tag = format!(
        "localhost/devaipod-features-{}:{}",
        crate::build::image_component(inputs.repo_name),
        &key[..16]
    );
    Ok(FeaturesBuild {
        dockerfile,
        files,
        tar,
        key,
        tag,
    })
}

/// sha256 over the base image's id and the context (every feature's files, options,
/// the users and the Dockerfile are in it).
fn content_key(inputs: &BuildInputs<'_>, tar: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"devaipod-features-v1\0");
    h.update(inputs.base_image_id.as_bytes());
    h.update(b"\0");
    h.update(tar);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nowhere() -> Place<'static> {
        Place {
            config_path: Path::new("/nonexistent/.devcontainer/devcontainer.json"),
            repo_root: Path::new("/nonexistent"),
        }
    }

    fn oci(registry: &str, repository: &str, reference: Reference) -> FeatureSource {
        FeatureSource::Oci {
            registry: registry.into(),
            repository: repository.into(),
            reference,
        }
    }

    fn tag(t: &str) -> Reference {
        Reference::Tag(t.into())
    }

    fn parse(id: &str) -> Result<FeatureSource> {
        FeatureSource::parse(id, nowhere())
    }

    #[track_caller]
    fn parse_err(id: &str) -> String {
        format!("{:#}", parse(id).expect_err(id))
    }

    #[test]
    fn oci_references_are_read_as_the_reference_reads_them() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let table: Vec<(String, FeatureSource)> = vec![
            (
                "ghcr.io/devcontainers/features/node:1".into(),
                oci("ghcr.io", "devcontainers/features/node", tag("1")),
            ),
            (
                "ghcr.io/devcontainers/features/node".into(),
                oci("ghcr.io", "devcontainers/features/node", tag("latest")),
            ),
            (
                format!("ghcr.io/devcontainers/features/node@{digest}"),
                oci(
                    "ghcr.io",
                    "devcontainers/features/node",
                    Reference::Digest(digest.clone()),
                ),
            ),
            (
                "GHCR.io/DevContainers/Features/Go:1.2".into(),
                oci("ghcr.io", "devcontainers/features/go", tag("1.2")),
            ),
            (
                "localhost:5000/a/b/feat".into(),
                oci("localhost:5000", "a/b/feat", tag("latest")),
            ),
            (
                "localhost:5000/a/feat:2".into(),
                oci("localhost:5000", "a/feat", tag("2")),
            ),
            (
                "ghcr.io/devcontainers-contrib/features/deno:1".into(),
                oci("ghcr.io", "devcontainers-extra/features/deno", tag("1")),
            ),
        ];
        for (id, want) in table {
            assert_eq!(parse(&id).expect(&id), want, "{id}");
        }
        assert_eq!(
            parse("ghcr.io/devcontainers/features/node:1")
                .expect("valid")
                .id(),
            "node"
        );
    }

    #[test]
    fn malformed_oci_references_are_refused_by_name() {
        for id in [
            "ghcr.io/node:1",
            "ghcr.io/devcontainers/features/node:-1",
            "ghcr.io/devcontainers/features/node@sha256:abc",
            "ghcr.io/devcontainers/features/node@md5:abc",
            "ghcr.io/devcontainers//node",
            "ghcr.io/devcontainers/features/no de",
            ".ghcr.io/a/b",
        ] {
            let e = parse_err(id);
            assert!(e.contains(&format!("{id:?}")), "{id}: {e}");
        }
    }

    #[test]
    fn short_ids_map_as_the_reference_maps_them() {
        let table = [
            ("git", "devcontainers/features/git"),
            ("node", "devcontainers/features/node"),
            (
                "docker-in-docker",
                "devcontainers/features/docker-in-docker",
            ),
            ("terraform", "devcontainers/features/terraform"),
            ("golang", "devcontainers/features/go"),
            ("common", "devcontainers/features/common-utils"),
        ];
        for (id, repo) in table {
            assert_eq!(parse(id).expect(id), oci("ghcr.io", repo, tag("1")), "{id}");
        }
        let e = parse_err("fish");
        assert!(
            e.contains("\"fish\"") && e.contains("ghcr.io/devcontainers/features/fish:1"),
            "{e}"
        );
    }

    #[test]
    fn deprecated_option_features_fold_into_their_feature() {
        let features = json!({"gradle": "latest", "maven": true,
            "ghcr.io/devcontainers/features/java:1": "17", "jupyterlab": {}, "git": "os-provided"});
        let (req, warnings) =
            requested(features.as_object().expect("object"), nowhere()).expect("valid");
        let ids: Vec<&str> = req.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "ghcr.io/devcontainers/features/java:1",
                "git",
                "ghcr.io/devcontainers/features/python:1"
            ]
        );
        assert_eq!(
            req[0].value,
            json!({"version": "17", "installGradle": true, "installMaven": true})
        );
        assert_eq!(req[2].value, json!({"installJupyterlab": true}));
        assert_eq!(
            req[1].source,
            oci("ghcr.io", "devcontainers/features/git", tag("1"))
        );
        assert_eq!(req[1].value, json!("os-provided"));
        assert_eq!(warnings.len(), 4, "{warnings:?}");
    }

    #[test]
    fn tarballs_are_https_only_and_named_by_the_spec() {
        let url = "https://example.com/rel/devcontainer-feature-hello_world.tgz";
        let s = parse(url).expect("valid");
        assert_eq!(s, FeatureSource::Tarball { url: url.into() });
        assert_eq!(s.id(), "hello_world");
        let e = parse_err("http://example.com/devcontainer-feature-x.tgz");
        assert!(
            e.contains("HTTPS") && e.contains("https://example.com/devcontainer-feature-x.tgz"),
            "{e}"
        );
        let e = parse_err("https://user:hunter2@example.com/devcontainer-feature-x.tgz");
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        let e = parse_err("https://example.com/feature.tgz");
        assert!(e.contains("devcontainer-feature-ID.tgz"), "{e}");
        let e = parse_err("https://example.com/devcontainer-feature-a.b.tgz");
        assert!(e.contains("devcontainer-feature-ID.tgz"), "{e}");
    }

    struct Repo {
        dir: tempfile::TempDir,
    }

    impl Repo {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(dir.path().join(".devcontainer/sub")).expect("mkdir");
            Self { dir }
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.root().join(rel);
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        }
        fn place<'a>(&'a self, config: &'a Path) -> Place<'a> {
            Place {
                config_path: config,
                repo_root: self.root(),
            }
        }
    }

    #[test]
    fn a_devcontainer_folder_linked_out_of_the_repo_is_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(outside.path().join("feat")).expect("mkdir");
        let repo = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), repo.path().join(".devcontainer"))
            .expect("symlink");
        let config = repo.path().join(".devcontainer/devcontainer.json");
        let place = Place {
            config_path: &config,
            repo_root: repo.path(),
        };
        let e = format!(
            "{:#}",
            FeatureSource::parse("./feat", place).expect_err("outside")
        );
        assert!(
            e.contains("\"./feat\"") && e.contains("outside the repository"),
            "{e}"
        );
    }

    #[test]
    fn local_features_stay_under_the_devcontainer_folder() {
        let repo = Repo::new();
        let feat = repo.mkdir(".devcontainer/myfeat");
        repo.mkdir("outside");
        std::os::unix::fs::symlink(
            repo.root().join("outside"),
            repo.root().join(".devcontainer/link"),
        )
        .expect("symlink");
        let config = repo.root().join(".devcontainer/devcontainer.json");
        let sub_config = repo.root().join(".devcontainer/sub/devcontainer.json");
        let root_config = repo.root().join(".devcontainer.json");
        let real = feat.canonicalize().expect("canonical");
        let s = FeatureSource::parse("./myfeat", repo.place(&config)).expect("inside");
        assert_eq!(s, FeatureSource::Local { path: real.clone() });
        assert_eq!(s.id(), "myfeat");
        let s = FeatureSource::parse("../myfeat", repo.place(&sub_config)).expect("still inside");
        assert_eq!(s, FeatureSource::Local { path: real });
        let refused = [
            ("../outside", &config, "is not inside"),
            ("./sub/../../outside", &config, "is not inside"),
            ("./.", &config, "is not inside"),
            ("./myfeat", &root_config, "is not inside"),
            ("./link", &config, "through a symlink"),
            ("./missing", &config, "does not exist"),
            ("/etc", &config, "absolute"),
        ];
        for (id, cfg, why) in refused {
            let e = format!(
                "{:#}",
                FeatureSource::parse(id, repo.place(cfg)).expect_err(id)
            );
            assert!(
                e.contains(&format!("{id:?}")) && e.contains(why),
                "{id}: {e}"
            );
            if id != "/etc" {
                assert!(
                    e.contains("under the .devcontainer folder of devcontainer.json"),
                    "{id}: {e}"
                );
            }
        }
    }

    const NODE_META: &str = r#"{
        // JSONC, like devcontainer.json
        "id": "node", "version": "1.6.1", "name": "Node.js",
        "options": {
            "version": {"type": "string", "proposals": ["lts", "18"], "default": "lts"},
            "nodeGypDependencies": {"type": "boolean", "default": true},
            "pnpm": {"type": "string", "enum": ["none", "latest"], "default": "none"},
            "nvmVersion": {"type": "string"},
            "1st-option": {"type": "string", "default": "x"}
        },
        "containerEnv": {"NVM_DIR": "/usr/local/share/nvm", "PATH": "/usr/local/share/nvm/current/bin:${PATH}"},
        "capAdd": ["SYS_PTRACE"], "privileged": false, "init": true,
        "entrypoint": "/usr/local/share/entry.sh",
        "mounts": [{"source": "v", "target": "/v", "type": "volume"}],
        "customizations": {"vscode": {"extensions": ["dbaeumer.vscode-eslint"]}},
        "postCreateCommand": "node --version",
        "dependsOn": {"ghcr.io/devcontainers/features/common-utils:2": {"installZsh": false}},
        "installsAfter": ["ghcr.io/devcontainers/features/python"],
        "legacyIds": ["nodejs"],
        "somethingNew": {"kept": true},
        "keywords": ["js"]
    }"#;

    fn node_meta() -> FeatureMeta {
        FeatureMeta::parse(NODE_META, Path::new("node/devcontainer-feature.json")).expect("valid")
    }

    #[test]
    fn feature_metadata_is_read_with_unknown_keys_kept() {
        let m = node_meta();
        assert_eq!(m.id, "node");
        assert_eq!(m.version.as_deref(), Some("1.6.1"));
        let names: Vec<&str> = m.options.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "version",
                "nodeGypDependencies",
                "pnpm",
                "nvmVersion",
                "1st-option"
            ]
        );
        assert_eq!(
            m.options[2].1,
            FeatureOption::String {
                default: Some(json!("none")),
                proposals: None,
                allowed: Some(vec!["none".into(), "latest".into()]),
                description: None,
            }
        );
        assert!(matches!(
            m.options[1].1,
            FeatureOption::Boolean {
                default: Some(Value::Bool(true)),
                ..
            }
        ));
        assert_eq!(m.container_env[1].0, "PATH");
        assert_eq!(m.cap_add, Some(vec!["SYS_PTRACE".into()]));
        assert_eq!(m.init, Some(true));
        assert_eq!(m.entrypoint.as_deref(), Some("/usr/local/share/entry.sh"));
        assert_eq!(m.post_create_command, Some(json!("node --version")));
        assert_eq!(
            m.depends_on
                .as_ref()
                .map(|d| d.keys().cloned().collect::<Vec<_>>()),
            Some(vec![
                "ghcr.io/devcontainers/features/common-utils:2".to_string()
            ])
        );
        assert_eq!(
            m.installs_after,
            Some(vec!["ghcr.io/devcontainers/features/python".into()])
        );
        assert_eq!(m.legacy_ids, Some(vec!["nodejs".into()]));
        assert_eq!(m.extra["somethingNew"], json!({"kept": true}));
        assert_eq!(m.raw["keywords"], json!(["js"]));
    }

    #[test]
    fn malformed_feature_metadata_names_the_file() {
        let path = Path::new("f/devcontainer-feature.json");
        let e = format!(
            "{:#}",
            FeatureMeta::parse("{\"id\": \"x\",\n  \"options\": {", path).expect_err("truncated")
        );
        assert!(e.starts_with("f/devcontainer-feature.json:"), "{e}");
        let e = format!(
            "{:#}",
            FeatureMeta::parse(r#"{"id": "x", "options": {"o": {"type": "number"}}}"#, path)
                .expect_err("type")
        );
        assert!(e.contains("options.o"), "{e}");
        let e = format!(
            "{:#}",
            FeatureMeta::parse(r#"{"name": "x"}"#, path).expect_err("no id")
        );
        assert!(e.contains("id"), "{e}");
    }

    #[test]
    fn safe_ids_match_the_references_tests() {
        for (name, want) in [
            ("option-name", "OPTION_NAME"),
            ("option1-name-with_dashes-", "OPTION1_NAME_WITH_DASHES_"),
            ("myOptionName", "MYOPTIONNAME"),
            ("1name", "_NAME"),
            ("12345_option-name", "_OPTION_NAME"),
            ("__x", "_X"),
            ("version", "VERSION"),
        ] {
            assert_eq!(safe_id(name), want, "{name}");
        }
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn option_values_become_install_sh_environment() {
        let m = node_meta();
        let defaults = vars(&[
            ("VERSION", "lts"),
            ("NODEGYPDEPENDENCIES", "true"),
            ("PNPM", "none"),
            ("_ST_OPTION", "x"),
        ]);
        for v in [json!(true), json!({})] {
            let env = option_env("node", &m, &v).expect("valid");
            assert_eq!(env.vars, defaults, "{v}");
            assert!(env.warnings.is_empty());
        }
        let env = option_env("node", &m, &json!("18")).expect("valid");
        assert_eq!(env.vars[0], ("VERSION".into(), "18".into()));
        let env = option_env(
            "node",
            &m,
            &json!({"nodeGypDependencies": false, "pnpm": "latest", "nvmVersion": "0.39", "extra-thing": "1"}),
        )
        .expect("valid");
        assert_eq!(
            env.vars,
            vars(&[
                ("VERSION", "lts"),
                ("NODEGYPDEPENDENCIES", "false"),
                ("PNPM", "latest"),
                ("_ST_OPTION", "x"),
                ("NVMVERSION", "0.39"),
                ("EXTRA_THING", "1"),
            ])
        );
        assert_eq!(env.warnings.len(), 1);
        assert!(
            env.warnings[0].contains("\"extra-thing\"") && env.warnings[0].contains("nvmVersion"),
            "{:?}",
            env.warnings
        );
    }

    #[test]
    fn option_values_outside_an_enum_are_refused() {
        let e = format!(
            "{:#}",
            option_env("node", &node_meta(), &json!({"pnpm": "8"})).expect_err("enum")
        );
        assert!(
            e.contains("\"node\"") && e.contains("\"pnpm\"") && e.contains("none, latest"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            option_env("node", &node_meta(), &json!({"": "x"})).expect_err("empty name")
        );
        assert!(e.contains("empty"), "{e}");
        let e = format!(
            "{:#}",
            option_env("node", &node_meta(), &json!(false)).expect_err("false")
        );
        assert!(e.contains("\"node\""), "{e}");
        let e = format!(
            "{:#}",
            option_env("node", &node_meta(), &json!({"version": ["1"]})).expect_err("array")
        );
        assert!(e.contains("\"version\""), "{e}");
    }

    #[test]
    fn env_files_reach_sh_literally() {
        let values = vars(&[
            ("PLAIN", "lts"),
            ("QUOTES", r#"it's "quoted" ''"#),
            ("DOLLAR", "$HOME ${PATH} $(id) $"),
            ("BACKTICK", "`id` \\ \\n"),
            ("NEWLINES", "line1\nline2\n\n"),
            ("EMPTY", ""),
            ("SEMICOLON", "a; exit 3 # ~ * ?"),
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(ENV_FILE), env_file(&values)).expect("write");
        let names: Vec<String> = values.iter().map(|(k, _)| format!("\"${k}\"")).collect();
        let script = format!(
            "set -a; . ./{ENV_FILE}; set +a; printf '%s\\0' {}; sh -c 'printf \"%s\" \"$QUOTES\"'",
            names.join(" ")
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env_clear()
            .output()
            .expect("running sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut got: Vec<&str> = text.split('\0').collect();
        let exported = got.pop().expect("the child's output");
        assert_eq!(
            got,
            values.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(exported, values[1].1, "set -a exports to install.sh");
    }

    fn node(user_id: &str, meta: Value, value: Value) -> Node {
        let meta = FeatureMeta::parse(&meta.to_string(), Path::new("t")).expect("meta");
        let source = parse(user_id).expect(user_id);
        let digest = Some(format!("sha256:{}", source.resource().unwrap_or_default()));
        Node {
            user_id: user_id.into(),
            source,
            value,
            meta,
            digest,
        }
    }

    const F: &str = "ghcr.io/devcontainers/features";

    #[track_caller]
    fn order(nodes: &[Node], overrides: &[&str]) -> Vec<String> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        install_order(nodes, &overrides, nowhere())
            .expect("order")
            .into_iter()
            .map(|i| nodes[i].source.id())
            .collect()
    }

    #[test]
    fn independent_features_install_in_id_order() {
        let nodes = vec![
            node(&format!("{F}/python:1"), json!({"id": "python"}), json!({})),
            node(&format!("{F}/go:1"), json!({"id": "go"}), json!({})),
            node(
                "ghcr.io/aaa/features/zzz:1",
                json!({"id": "zzz"}),
                json!({}),
            ),
            node(
                &format!("{F}/common-utils:2"),
                json!({"id": "common-utils"}),
                json!({}),
            ),
        ];
        // Registry+namespace first, then the id.
        assert_eq!(order(&nodes, &[]), ["zzz", "common-utils", "go", "python"]);
    }

    #[test]
    fn installs_after_counts_only_among_requested_features() {
        let nodes = vec![
            node(
                &format!("{F}/aaa:1"),
                json!({"id": "aaa", "installsAfter": [format!("{F}/zzz"), format!("{F}/not-requested")]}),
                json!({}),
            ),
            node(&format!("{F}/zzz:1"), json!({"id": "zzz"}), json!({})),
        ];
        assert_eq!(order(&nodes, &[]), ["zzz", "aaa"]);
    }

    #[test]
    fn installs_after_matches_a_legacy_id() {
        // "nodejs" is the old name of "node": installsAfter node is answered by it.
        let nodes = vec![
            node(
                &format!("{F}/aaa:1"),
                json!({"id": "aaa", "installsAfter": [format!("{F}/node")]}),
                json!({}),
            ),
            node(
                &format!("{F}/nodejs:1"),
                json!({"id": "node", "legacyIds": ["nodejs"]}),
                json!({}),
            ),
        ];
        assert_eq!(order(&nodes, &[]), ["nodejs", "aaa"]);
    }

    #[test]
    fn hard_dependencies_are_reported_then_installed_first() {
        let dep = format!("{F}/common-utils:2");
        let mut nodes = vec![node(
            &format!("{F}/aaa:1"),
            json!({"id": "aaa", "dependsOn": {dep.clone(): {"installZsh": false}}}),
            json!(true),
        )];
        let needed = needed_dependencies(&nodes, nowhere()).expect("valid");
        assert_eq!(
            needed,
            vec![Needed {
                user_id: dep.clone(),
                source: oci("ghcr.io", "devcontainers/features/common-utils", tag("2")),
                value: json!({"installZsh": false}),
                required_by: format!("{F}/aaa:1"),
            }]
        );
        let e = format!(
            "{:#}",
            install_order(&nodes, &[], nowhere()).expect_err("not fetched")
        );
        assert!(e.contains(&dep), "{e}");
        nodes.push(node(
            &dep,
            json!({"id": "common-utils"}),
            json!({"installZsh": false}),
        ));
        assert!(
            needed_dependencies(&nodes, nowhere())
                .expect("valid")
                .is_empty()
        );
        assert_eq!(order(&nodes, &[]), ["common-utils", "aaa"]);
    }

    #[test]
    fn a_dependency_the_user_also_requests_with_the_same_options_installs_once() {
        let dep = format!("{F}/common-utils:2");
        let nodes = vec![
            node(
                &format!("{F}/aaa:1"),
                json!({"id": "aaa", "dependsOn": {dep.clone(): {}}}),
                json!({}),
            ),
            node(&dep, json!({"id": "common-utils"}), json!({})),
        ];
        assert!(
            needed_dependencies(&nodes, nowhere())
                .expect("valid")
                .is_empty()
        );
        assert_eq!(order(&nodes, &[]), ["common-utils", "aaa"]);
        // Other options: another install of the same feature is needed.
        let nodes = vec![
            node(
                &format!("{F}/aaa:1"),
                json!({"id": "aaa", "dependsOn": {dep.clone(): {"x": "1"}}}),
                json!({}),
            ),
            node(&dep, json!({"id": "common-utils"}), json!({})),
        ];
        assert_eq!(
            needed_dependencies(&nodes, nowhere()).expect("valid").len(),
            1
        );
    }

    #[test]
    fn override_order_takes_priority_over_id_order() {
        let nodes = vec![
            node(&format!("{F}/aaa:1"), json!({"id": "aaa"}), json!({})),
            node(&format!("{F}/bbb:1"), json!({"id": "bbb"}), json!({})),
            node(&format!("{F}/ccc:1"), json!({"id": "ccc"}), json!({})),
        ];
        assert_eq!(
            order(&nodes, &[&format!("{F}/ccc"), &format!("{F}/bbb:9")]),
            ["ccc", "bbb", "aaa"]
        );
        // An override cannot put a feature before its dependency.
        let nodes = vec![
            node(&format!("{F}/aaa:1"), json!({"id": "aaa"}), json!({})),
            node(
                &format!("{F}/bbb:1"),
                json!({"id": "bbb", "installsAfter": [format!("{F}/aaa")]}),
                json!({}),
            ),
        ];
        assert_eq!(order(&nodes, &[&format!("{F}/bbb")]), ["aaa", "bbb"]);
    }

    #[test]
    fn cycles_are_refused_naming_the_cycle() {
        let a = format!("{F}/aaa:1");
        let b = format!("{F}/bbb:1");
        let nodes = vec![
            node(&format!("{F}/ccc:1"), json!({"id": "ccc"}), json!({})),
            node(
                &a,
                json!({"id": "aaa", "dependsOn": {b.clone(): {}}}),
                json!({}),
            ),
            node(
                &b,
                json!({"id": "bbb", "installsAfter": [format!("{F}/aaa")]}),
                json!({}),
            ),
        ];
        let e = format!(
            "{:#}",
            install_order(&nodes, &[], nowhere()).expect_err("cycle")
        );
        assert!(e.contains(&format!("{a} -> {b} -> {a}")), "{e}");
    }

    #[test]
    fn locale_order_is_javascripts_for_ids() {
        let mut ids = vec!["b", "A", "a", "_x", "-x", "1", "a-b", "ab", "a_b"];
        ids.sort_by(|x, y| locale_cmp(x, y));
        assert_eq!(ids, ["_x", "-x", "1", "a", "A", "a_b", "a-b", "ab", "b"]);
    }

    struct Built {
        _dir: tempfile::TempDir,
        build: FeaturesBuild,
    }

    fn users() -> Users {
        Users {
            container_user: "root".into(),
            container_home: "/root".into(),
            remote_user: "dev".into(),
            remote_home: "/home/dev".into(),
            image_user: "dev".into(),
        }
    }

    fn build_with(option: &str, base_id: &str, users: &Users) -> Built {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("node");
        std::fs::create_dir_all(folder.join("lib")).expect("mkdir");
        std::fs::write(folder.join(FEATURE_FILE), NODE_META).expect("write");
        std::fs::write(folder.join("install.sh"), "#!/bin/sh\necho hi\n").expect("write");
        std::fs::write(folder.join("lib/x.sh"), "x\n").expect("write");
        std::fs::write(folder.join(ENV_FILE), "STALE=1\n").expect("write");
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::fs::write(
            other.join(FEATURE_FILE),
            r#"{"id": "other", "postStartCommand": "x"}"#,
        )
        .expect("write");
        std::fs::write(other.join("install.sh"), "#!/bin/sh\n").expect("write");
        let n0 = Node {
            meta: FeatureMeta::read(&other).expect("meta"),
            ..node(&format!("{F}/other:1"), json!({"id": "other"}), json!({}))
        };
        let n1 = Node {
            meta: FeatureMeta::read(&folder).expect("meta"),
            ..node(&format!("{F}/node:1"), json!({"id": "node"}), json!({}))
        };
        let installs = vec![
            Install {
                node: &n0,
                folder: other.clone(),
                env: vec![],
            },
            Install {
                node: &n1,
                folder: folder.clone(),
                env: vars(&[("VERSION", option)]),
            },
        ];
        let base_metadata = vec![Map::from_iter([("remoteUser".to_string(), json!("dev"))])];
        let build = build_context(&BuildInputs {
            base_image: "docker.io/library/debian:12",
            base_image_id: base_id,
            base_metadata: &base_metadata,
            users,
            features: &installs,
            repo_name: "My Repo",
        })
        .expect("build context");
        Built { _dir: dir, build }
    }

    fn made<'a>(b: &'a FeaturesBuild, name: &str) -> &'a str {
        b.files
            .iter()
            .find_map(|f| match f {
                ContextFile::Made {
                    name: n, content, ..
                } if n == name => std::str::from_utf8(content).ok(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name} not in the context"))
    }

    #[test]
    fn the_build_context_is_laid_out_as_the_reference_does() {
        let built = build_with("18", "sha256:base", &users());
        let b = &built.build;
        let names: Vec<&str> = b
            .files
            .iter()
            .map(|f| match f {
                ContextFile::Disk { name, .. } | ContextFile::Made { name, .. } => name.as_str(),
            })
            .collect();
        assert_eq!(
            names,
            [
                BUILTIN_ENV_FILE,
                "other_0/devcontainer-feature.json",
                "other_0/install.sh",
                "other_0/devcontainer-features.env",
                "other_0/devcontainer-features-install.sh",
                "node_1/devcontainer-feature.json",
                "node_1/install.sh",
                "node_1/lib",
                "node_1/lib/x.sh",
                "node_1/devcontainer-features.env",
                "node_1/devcontainer-features-install.sh",
                DOCKERFILE,
            ]
        );
        assert_eq!(
            made(b, BUILTIN_ENV_FILE),
            "_CONTAINER_USER='root'\n_REMOTE_USER='dev'\n_CONTAINER_USER_HOME='/root'\n_REMOTE_USER_HOME='/home/dev'\n"
        );
        assert_eq!(
            made(b, "node_1/devcontainer-features.env"),
            "VERSION='18'\n"
        );
        let wrapper = made(b, "node_1/devcontainer-features-install.sh");
        assert!(wrapper.contains("set -a\n. ../devcontainer-features.builtin.env\n. ./devcontainer-features.env\nset +a\n"), "{wrapper}");
        assert!(
            wrapper.contains("echo 'Feature       : Node.js'"),
            "{wrapper}"
        );
        assert!(wrapper.ends_with("./install.sh\n"), "{wrapper}");

        let d = &b.dockerfile;
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines[0], "FROM docker.io/library/debian:12");
        assert_eq!(lines[1], "USER root");
        let pos = |needle: &str| {
            d.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in\n{d}"))
        };
        assert!(
            pos("COPY --chown=root:root other_0/ /tmp/dev-container-features/other_0/")
                < pos("ENV NVM_DIR=\"/usr/local/share/nvm\"")
        );
        assert!(
            pos("ENV PATH=\"/usr/local/share/nvm/current/bin:${PATH}\"")
                < pos("COPY --chown=root:root node_1/")
        );
        assert!(
            pos(
                "&& cd /tmp/dev-container-features/node_1 \\\n && chmod +x ./devcontainer-features-install.sh \\\n && ./devcontainer-features-install.sh"
            ) > pos("COPY --chown=root:root node_1/")
        );
        assert_eq!(d.matches("RUN ").count(), 2);
        assert!(
            d.contains(
                "./devcontainer-features-install.sh\nUSER dev\nLABEL devcontainer.metadata="
            ),
            "{d}"
        );
        let label = lines.last().expect("label");
        let json = label
            .strip_prefix("LABEL devcontainer.metadata=\"")
            .and_then(|l| l.strip_suffix('"'))
            .expect("label line")
            .replace("\\\"", "\"")
            .replace("\\$", "$");
        let entries = super::super::metadata::from_label(Some(&json));
        assert_eq!(entries.len(), 3, "{json}");
        assert_eq!(entries[0]["remoteUser"], "dev");
        assert_eq!(entries[1]["id"], format!("{F}/other:1"));
        assert_eq!(entries[1]["postStartCommand"], "x");
        assert_eq!(entries[2]["capAdd"], json!(["SYS_PTRACE"]));
        assert!(!entries[2].contains_key("containerEnv"));

        let mut archive = tar::Archive::new(b.tar.as_slice());
        let in_tar: Vec<String> = archive
            .entries()
            .expect("tar")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(in_tar, names);
        assert!(
            b.tag.starts_with("localhost/devaipod-features-my-repo:"),
            "{}",
            b.tag
        );
        assert!(crate::plan::valid_image(&b.tag), "{}", b.tag);
    }

    #[test]
    fn the_content_key_changes_with_every_input_and_only_then() {
        let key =
            |option: &str, base: &str, users: &Users| build_with(option, base, users).build.key;
        let k = key("18", "sha256:base", &users());
        assert_eq!(
            k,
            key("18", "sha256:base", &users()),
            "same inputs, same key"
        );
        assert_ne!(k, key("20", "sha256:base", &users()), "an option");
        assert_ne!(k, key("18", "sha256:other", &users()), "the base image");
        let mut u = users();
        u.remote_home = "/home/other".into();
        assert_ne!(k, key("18", "sha256:base", &u), "a home");
    }

    #[test]
    fn container_env_that_cannot_be_an_env_line_is_refused() {
        assert!(env_line("f", "A", "x\ny").is_err());
        assert!(env_line("f", "A B", "x").is_err());
        assert_eq!(
            env_line("f", "A", r#"say "hi" \ $X"#).expect("valid"),
            "ENV A=\"say \\\"hi\\\" \\\\ $X\"\n"
        );
    }

    /// The reference's install-order tests on local features
    /// (containerFeaturesOrder.test.ts): `features` and `overrideFeatureInstallOrder`
    /// as in the config, each feature's dependencies, the order it expects.
    #[test]
    fn local_feature_orders_match_the_references_tests() {
        struct Case {
            name: &'static str,
            features: Value,
            overrides: &'static [&'static str],
            metas: Value,
            want: Value,
        }
        let cases = [
            Case {
                name: "installsAfter/local-simple",
                features: json!({"./a": {}, "./c": {"magicNumber": "321"}}),
                overrides: &[],
                metas: json!({"a": {"installsAfter": ["./b", "./c"]}, "b": {}, "c": {}}),
                want: json!([["./c", {"magicNumber": "321"}], ["./a", {}]]),
            },
            Case {
                name: "dependsOn/local-simple",
                features: json!({"./a": {}}),
                overrides: &[],
                metas: json!({"a": {"dependsOn": {"./b": {"magicNumber": "50"}}}, "b": {}}),
                want: json!([["./b", {"magicNumber": "50"}], ["./a", {}]]),
            },
            Case {
                name: "dependsOn/local-with-options",
                features: json!({"./a": {"optA": "a", "optB": "b"}, "./b": {"optA": "a", "optB": "b"}}),
                overrides: &[],
                metas: json!({
                    "a": {"dependsOn": {"./b": {"optA": "a", "optB": "a"}, "./c": {}}},
                    "b": {},
                    "c": {"dependsOn": {"./b": {"optA": "b", "optB": "a"}, "./d": {}, "./e": {}}},
                    "d": {"dependsOn": {"./b": {"optA": "b", "optB": "b"}}},
                    "e": {"dependsOn": {"./b": {}}},
                }),
                want: json!([
                    ["./b", {}],
                    ["./b", {"optA": "a", "optB": "a"}],
                    ["./b", {"optA": "a", "optB": "b"}],
                    ["./b", {"optA": "b", "optB": "a"}],
                    ["./b", {"optA": "b", "optB": "b"}],
                    ["./d", {}],
                    ["./e", {}],
                    ["./c", {}],
                    ["./a", {"optA": "a", "optB": "b"}],
                ]),
            },
            Case {
                name: "dependsOn-and-installsAfter/local-simple",
                features: json!({"./a": {}}),
                overrides: &[],
                metas: json!({"a": {"installsAfter": ["./b"], "dependsOn": {"./c": {"magicNumber": "321"}}}, "b": {}, "c": {}}),
                want: json!([["./c", {"magicNumber": "321"}], ["./a", {}]]),
            },
            Case {
                name: "overrideFeatureInstallOrder/local-simple",
                features: json!({"./a": {}}),
                overrides: &["./c"],
                metas: json!({"a": {"dependsOn": {"./b": {}, "./c": {}, "./d": {}}}, "b": {}, "c": {}, "d": {}}),
                want: json!([["./c", {}], ["./b", {}], ["./d", {}], ["./a", {}]]),
            },
            Case {
                name: "overrideFeatureInstallOrder/local-intermediate",
                features: json!({"./a": {}}),
                overrides: &["./c", "./d"],
                metas: json!({"a": {"dependsOn": {"./b": {}, "./d": {}}, "installsAfter": ["./c"]},
                    "b": {"dependsOn": {"./c": {}}}, "c": {}, "d": {}}),
                want: json!([["./c", {}], ["./d", {}], ["./b", {}], ["./a", {}]]),
            },
            Case {
                name: "overrideFeatureInstallOrder/local-roundPriority",
                features: json!({"./b": {}, "./c": {}}),
                overrides: &["./a", "./b", "./c"],
                metas: json!({"a": {}, "b": {"dependsOn": {"./a": {}}}, "c": {}}),
                want: json!([["./a", {}], ["./b", {}], ["./c", {}]]),
            },
        ];
        for case in cases {
            let got = resolve_local(&case.features, case.overrides, &case.metas).expect(case.name);
            assert_eq!(Value::Array(got), case.want, "{}", case.name);
        }
    }

    /// Writes local features with `metas` (id -> devcontainer-feature.json less its id),
    /// resolves `features` as up would (dependencies fetched until none are needed) and
    /// returns the install order as `[user id, value]` pairs.
    fn resolve_local(features: &Value, overrides: &[&str], metas: &Value) -> Result<Vec<Value>> {
        let repo = Repo::new();
        for (id, meta) in metas.as_object().expect("object") {
            let dir = repo.mkdir(&format!(".devcontainer/{id}"));
            let mut meta = meta.as_object().cloned().expect("object");
            meta.insert("id".into(), json!(id));
            std::fs::write(dir.join(FEATURE_FILE), Value::Object(meta).to_string()).expect("write");
        }
        let config = repo.root().join(".devcontainer/devcontainer.json");
        let place = repo.place(&config);
        let read = |user_id: String, source: FeatureSource, value: Value| {
            let FeatureSource::Local { path } = &source else {
                panic!("{user_id} is not local")
            };
            let meta = FeatureMeta::read(path).expect("meta");
            Node {
                user_id,
                source,
                value,
                meta,
                digest: None,
            }
        };
        let (requested, _) = requested(features.as_object().expect("object"), place)?;
        let mut nodes: Vec<Node> = requested
            .into_iter()
            .map(|r| read(r.user_id, r.source, r.value))
            .collect();
        loop {
            let needed = needed_dependencies(&nodes, place)?;
            if needed.is_empty() {
                break;
            }
            nodes.extend(
                needed
                    .into_iter()
                    .map(|n| read(n.user_id, n.source, n.value)),
            );
        }
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let got: Vec<Value> = install_order(&nodes, &overrides, place)?
            .into_iter()
            .map(|i| json!([nodes[i].user_id, nodes[i].value]))
            .collect();
        Ok(got)
    }

    /// The reference's invalid-circular fixtures fail; the error names the cycle.
    #[test]
    fn circular_local_features_fail_naming_the_cycle() {
        let e = resolve_local(
            &json!({"./a": {}, "./b": {}, "./c": {}}),
            &[],
            &json!({"a": {"installsAfter": ["./b"]}, "b": {"installsAfter": ["./c"]}, "c": {"installsAfter": ["./a"]}}),
        )
        .expect_err("installsAfter cycle");
        assert!(
            format!("{e:#}").contains("./a -> ./b -> ./c -> ./a"),
            "{e:#}"
        );
        let e = resolve_local(
            &json!({"./a": {}}),
            &[],
            &json!({"a": {"dependsOn": {"./b": {}}}, "b": {"dependsOn": {"./c": {"magicNumber": "50"}}},
                "c": {"dependsOn": {"./a": {"magicNumber": "50"}}}}),
        )
        .expect_err("dependsOn cycle");
        assert!(
            format!("{e:#}").contains("./b -> ./c -> ./a -> ./b"),
            "{e:#}"
        );
    }
}
