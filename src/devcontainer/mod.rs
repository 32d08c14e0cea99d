//! devcontainer.json: find it in a repo and read the properties devaipod uses (pure:
//! reads only the files it is given, talks to no engine).
//!
//! JSONC as the spec defines it: comments, trailing commas and a BOM are accepted; the
//! JSON5-style extensions the parser crate allows by default are not. Errors name the
//! file and line:column and never echo the file's content.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

pub(crate) mod dockerfile;
pub(crate) mod features;
pub(crate) mod lockfile;
pub(crate) mod metadata;
pub(crate) mod properties;
pub(crate) mod vars;

/// Files larger than this are refused before parsing (a devcontainer.json is a few KB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The properties of devcontainer.json that devaipod reads so far (spec names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DevContainer {
    pub name: Option<String>,
    pub image: Option<String>,
    pub workspace_folder: Option<String>,
    pub container_user: Option<String>,
    pub remote_user: Option<String>,
    /// Environment of the workspace container (never the agent's).
    pub container_env: Option<std::collections::BTreeMap<String, String>>,
    /// Present in Compose configurations (not supported by `up` yet).
    pub docker_compose_file: Option<Value>,
    /// Present in Dockerfile configurations (not supported by `up` yet).
    pub build: Option<Value>,
    pub docker_file: Option<String>,
    /// Legacy build context (with `dockerFile`).
    pub context: Option<String>,
    /// Environment of devaipod's exec sessions in the workspace (lifecycle commands);
    /// `${containerEnv:VAR}` in it is resolved against the container's environment.
    /// A `null` value (the spec's "unset") sets nothing.
    #[serde(default, deserialize_with = "env_without_nulls")]
    pub remote_env: Option<std::collections::BTreeMap<String, String>>,
    /// Ports to publish on the host's loopback (numbers or "localhost:N").
    pub forward_ports: Option<Vec<Value>>,
    /// Legacy published ports ("H:C" strings or numbers).
    pub app_port: Option<Value>,
    /// cpus and memory become the workspace's limits.
    pub host_requirements: Option<Value>,
    /// Extra mounts of the workspace container (strings or objects).
    pub mounts: Option<Vec<Value>>,
    /// Lifecycle commands (string, array or object of those), run in the workspace.
    pub on_create_command: Option<Value>,
    pub update_content_command: Option<Value>,
    pub post_create_command: Option<Value>,
    pub post_start_command: Option<Value>,
    /// Run on the host before anything is created, after the user approved it.
    pub initialize_command: Option<Value>,
    /// Run in the workspace at every attach (`devaipod ssh`, `attach`).
    pub post_attach_command: Option<Value>,
    /// `docker run` flags (plan::run_args maps them).
    pub run_args: Option<Vec<String>>,
    pub privileged: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub init: Option<bool>,
    /// false: the image's ENTRYPOINT/CMD runs instead of devaipod's keep-alive.
    pub override_command: Option<bool>,
    /// Where the workspace's clone volume is mounted (its source is never bind-mounted).
    pub workspace_mount: Option<String>,
    /// Features (id -> options), installed into a derived image (src/feature_build.rs).
    pub features: Option<Map<String, Value>>,
    pub override_feature_install_order: Option<Vec<String>>,
}

/// A devcontainer.json that was found and read.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub path: PathBuf,
    /// The file as read: where its values are, for messages ([`locate`]).
    pub text: std::sync::Arc<str>,
    /// Every property as written (variables not yet substituted).
    pub raw: Map<String, Value>,
    /// The properties devaipod uses.
    pub config: DevContainer,
    /// Unknown properties and properties devaipod does not apply yet.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The configuration as the reference CLI reads it: legacy properties migrated,
    /// `${...}` variables substituted; and the typed view of it.
    pub(crate) fn resolve(
        &self,
        ctx: &vars::Context<'_>,
    ) -> Result<(Map<String, Value>, DevContainer)> {
        let mut v = Value::Object(migrate_legacy(self.raw.clone()));
        vars::substitute(&mut v, ctx)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        // Read from a reference: a clone of a large configuration would double its cost.
        let config = DevContainer::deserialize(&v).unwrap_or_else(|_| self.config.clone());
        match v {
            Value::Object(map) => Ok((map, config)),
            _ => Ok((self.raw.clone(), config)),
        }
    }
}

/// Moves the legacy top-level `extensions`, `settings` and `devPort` into
/// `customizations.vscode`, as the reference CLI does before anything else.
pub(crate) fn migrate_legacy(mut raw: Map<String, Value>) -> Map<String, Value> {
    let extensions = raw.remove("extensions");
    let settings = raw.remove("settings");
    let dev_port = raw.remove("devPort");
    if extensions.is_none() && settings.is_none() && dev_port.is_none() {
        return raw;
    }
    let customizations = raw
        .entry("customizations")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(customizations) = customizations else {
        return raw;
    };
    let vscode = customizations
        .entry("vscode")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(vscode) = vscode else {
        return raw;
    };
    if let Some(Value::Array(legacy)) = extensions {
        let mut list = match vscode.remove("extensions") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        list.extend(legacy);
        vscode.insert("extensions".into(), Value::Array(list));
    }
    if let Some(Value::Object(mut legacy)) = settings {
        if let Some(Value::Object(existing)) = vscode.remove("settings") {
            legacy.extend(existing);
        }
        vscode.insert("settings".into(), Value::Object(legacy));
    }
    if let Some(port) = dev_port
        && !vscode.contains_key("devPort")
    {
        vscode.insert("devPort".into(), port);
    }
    raw
}

/// Where the workspace is, on both sides, as the reference CLI computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workspace {
    /// `${containerWorkspaceFolder}`: the `workspaceFolder` property (with local
    /// variables), else the default.
    pub container_folder: String,
    /// The `workspace` object of `devcontainer read-configuration`.
    pub folder_out: String,
    pub mount_out: Option<String>,
}

/// Computes the workspace: for Compose configs `workspaceFolder` or `/`; otherwise the
/// repo's top (`root`, or the folder itself outside git) is mounted at
/// `/workspaces/<root name>` and the default folder is the local folder's place in it.
pub(crate) fn workspace(
    raw: &Map<String, Value>,
    local_folder: &Path,
    root: &Path,
    local_only: &dyn Fn(&str) -> Result<String>,
) -> Result<Workspace> {
    let property = |key: &str| -> Result<Option<String>> {
        raw.get(key)
            .and_then(Value::as_str)
            .map(local_only)
            .transpose()
    };
    let folder_prop = property("workspaceFolder")?;
    if raw.contains_key("dockerComposeFile") {
        let folder = folder_prop.unwrap_or_else(|| "/".into());
        return Ok(Workspace {
            container_folder: folder.clone(),
            folder_out: folder,
            mount_out: None,
        });
    }
    let root_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = format!("/workspaces/{root_name}");
    let rel = local_folder.strip_prefix(root).unwrap_or(Path::new(""));
    let default_folder = if rel.as_os_str().is_empty() {
        target.clone()
    } else {
        format!("{target}/{}", rel.display())
    };
    let quote = |s: &str| {
        if s.contains(',') {
            format!("\"{s}\"")
        } else {
            s.to_string()
        }
    };
    let default_mount = format!(
        "type=bind,source={},target={}",
        quote(&root.display().to_string()),
        quote(&target)
    );
    // An empty workspaceFolder counts as unset for the variable, not for the output.
    let container_folder = folder_prop
        .clone()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| default_folder.clone());
    let mount_out = if raw.contains_key("workspaceMount") {
        // The reference resolves the container's folder in it (the mount's target).
        let basename = container_folder
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        raw.get("workspaceMount")
            .and_then(Value::as_str)
            .map(|m| {
                local_only(
                    &m.replace("${containerWorkspaceFolderBasename}", basename)
                        .replace("${containerWorkspaceFolder}", &container_folder),
                )
            })
            .transpose()?
            .or(Some(String::new()))
    } else {
        Some(default_mount)
    };
    Ok(Workspace {
        container_folder,
        folder_out: folder_prop.unwrap_or(default_folder),
        mount_out,
    })
}

/// A configuration read as the reference CLI reads it.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// Every property, legacy ones migrated, variables substituted.
    pub configuration: Map<String, Value>,
    /// The typed view devaipod uses.
    pub config: DevContainer,
    pub workspace: Workspace,
}

/// Reads `loaded` for the workspace folder `local_folder` inside the repo top `root`
/// (the folder itself outside git), with host environment lookups from `env`.
pub(crate) fn read(
    loaded: &Loaded,
    local_folder: &Path,
    root: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Reading> {
    let local = local_folder.display().to_string();
    let local_only = |s: &str| -> Result<String> {
        vars::substitute_str(
            s,
            &vars::Context {
                local_workspace_folder: local.clone(),
                container_workspace_folder: String::new(),
                local_env: env,
            },
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.path.display()))
    };
    // The legacy properties migrate_legacy moves play no part in the workspace.
    let workspace = workspace(&loaded.raw, local_folder, root, &local_only)?;
    let ctx = vars::Context {
        local_workspace_folder: local.clone(),
        container_workspace_folder: workspace.container_folder.clone(),
        local_env: env,
    };
    let (configuration, config) = loaded.resolve(&ctx)?;
    Ok(Reading {
        configuration,
        config,
        workspace,
    })
}

/// Properties whose values reach the agent's container (paths, users): host environment
/// variables are not substituted into them when applying, because a repo could use
/// `${localEnv:...}` to carry a host secret into the sandbox.
pub(crate) const NO_HOST_ENV: &[&str] = &["workspaceFolder", "containerUser", "remoteUser"];

/// The `containerEnv` and `remoteEnv` entries (as `property.NAME`) whose values use
/// `${localEnv:...}`/`${env:...}` as written: applying them carries host environment
/// into the workspace, so `up` needs the user's consent for them.
pub(crate) fn container_env_from_host(raw: &Map<String, Value>) -> Vec<String> {
    ["containerEnv", "remoteEnv"]
        .iter()
        .flat_map(|prop| {
            raw.get(*prop)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, v)| {
                    v.as_str()
                        .is_some_and(|v| v.contains("${localEnv:") || v.contains("${env:"))
                })
                .map(move |(k, _)| format!("{prop}.{k}"))
        })
        .collect()
}

/// The first of [`NO_HOST_ENV`] whose value uses `${localEnv:...}` or `${env:...}`.
pub(crate) fn uses_host_env(raw: &Map<String, Value>) -> Option<&'static str> {
    NO_HOST_ENV.iter().copied().find(|k| {
        raw.get(*k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.contains("${localEnv:") || v.contains("${env:"))
    })
}

/// Refuses a discovered config that resolves (through symlinks) outside `root`: a repo
/// could otherwise point devaipod at any file of the user's (a key, a token).
pub(crate) fn confined(path: &Path, root: &Path) -> Result<()> {
    let real = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if !real.starts_with(&root) {
        bail!(
            "{} resolves to a file outside {}: devaipod reads only the repository's own files (name another file explicitly with --config)",
            path.display(),
            root.display()
        );
    }
    Ok(())
}

/// Finds the config for `dir`: `explicit` (`--config`) if given, else the default
/// locations. When neither default exists but `.devcontainer/NAME/devcontainer.json`
/// files do, that is an error listing them (the user must pick one with `--config`).
pub(crate) fn discover(dir: &Path, explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        // Relative to where devaipod runs, like any path on the command line.
        if !p.is_file() {
            bail!("--config {}: no such file", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(found) = find(dir) {
        return Ok(Some(found));
    }
    let mut named: Vec<PathBuf> = std::fs::read_dir(dir.join(".devcontainer"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("devcontainer.json"))
        .filter(|p| p.is_file())
        .collect();
    if named.is_empty() {
        return Ok(None);
    }
    named.sort();
    let list: Vec<String> = named
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    bail!(
        "{} has no .devcontainer/devcontainer.json or .devcontainer.json, but has {}: pick one with --config, e.g. --config {}",
        dir.display(),
        list.join(", "),
        list[0]
    )
}

/// Finds the config as the reference CLI does: `.devcontainer/devcontainer.json`, else
/// `.devcontainer.json`. `None` when the repo has neither.
pub(crate) fn find(repo: &Path) -> Option<PathBuf> {
    [
        repo.join(".devcontainer").join("devcontainer.json"),
        repo.join(".devcontainer.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Reads and parses the config at `path`.
pub(crate) fn load(path: &Path) -> Result<Loaded> {
    let text = read_text(path)?;
    from_text(path, &text)
}

/// Reads `path` as UTF-8 text of at most [`MAX_CONFIG_BYTES`], and no more than that
/// even when the file grows while it is read or is a device or a FIFO.
fn read_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let too_big = |size: u64| {
        anyhow::anyhow!(
            "{}: file is {}{size} bytes, larger than the {MAX_CONFIG_BYTES} byte limit for a devcontainer.json",
            path.display(),
            if size > MAX_CONFIG_BYTES + 1 {
                ""
            } else {
                "at least "
            },
        )
    };
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_CONFIG_BYTES {
        return Err(too_big(size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: the file is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Parses the text of the config at `path` (what [`load`] does once it has read it).
pub(crate) fn from_text(path: &Path, text: &str) -> Result<Loaded> {
    let config = parse(text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    let raw = parse_raw(text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    let warnings = properties::warnings(&raw)
        .into_iter()
        .map(|w| format!("{}: {w}", path.display()))
        .collect();
    Ok(Loaded {
        path: path.to_path_buf(),
        text: text.into(),
        raw,
        config,
        warnings,
    })
}

/// A parse error with its 1-based position; Display is `LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub(crate) struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// JSONC as the spec defines it: comments and trailing commas, nothing from JSON5.
fn options() -> jsonc_parser::ParseOptions {
    jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

/// Parses devcontainer.json text into every property, as written.
pub(crate) fn parse_raw(text: &str) -> Result<Map<String, Value>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Option<Value> =
        jsonc_parser::parse_to_serde_value(text, &options()).map_err(|e| error(text, &e))?;
    match value {
        Some(Value::Object(map)) => Ok(map),
        _ => Err(ParseError {
            line: 1,
            column: 1,
            message: "expected a JSON object such as {\"image\": \"...\"}".into(),
        }),
    }
}

/// Parses JSONC text (the spec's dialect) into `T`; a type error carries the position
/// of the value, and never quotes it. `None` for an empty text.
pub(crate) fn parse_as<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<Option<T>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    jsonc_parser::parse_to_serde_value(text, &options()).map_err(|e| error(text, &e))
}

/// Parses devcontainer.json text into the properties devaipod uses.
pub(crate) fn parse(text: &str) -> Result<DevContainer, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Option<DevContainer> =
        jsonc_parser::parse_to_serde_value(text, &options()).map_err(|e| error(text, &e))?;
    value.ok_or(ParseError {
        line: 1,
        column: 1,
        message: "the file is empty; expected a JSON object such as {\"image\": \"...\"}".into(),
    })
}

/// `remoteEnv`: strings, and `null` for a variable it does not set.
fn env_without_nulls<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::collections::BTreeMap<String, String>>, D::Error> {
    let map: Option<std::collections::BTreeMap<String, Option<String>>> =
        serde::Deserialize::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()))
}

/// serde's names of JSON's types said as JSON says them ("unit" is `null`, a "map" an
/// object, a "sequence" an array).
fn json_words(serde: &str) -> String {
    let mut out = serde.to_string();
    for (from, to) in [
        ("unit value", "null"),
        ("unit", "null"),
        ("a map", "an object"),
        ("map", "an object"),
        ("a sequence", "an array"),
        ("sequence", "an array"),
        ("floating point", "a number"),
        ("integer", "a number"),
        ("boolean", "true or false"),
    ] {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
}

/// The parser's error as ours: its position, and for an error in a value (a wrong type,
/// an unknown variant) the key path of that value, `remoteEnv.HOME` or `mounts[2]`.
fn error(text: &str, e: &jsonc_parser::errors::ParseError) -> ParseError {
    let mut message = describe(e.kind());
    if matches!(e.kind(), jsonc_parser::errors::ParseErrorKind::Custom(_))
        && let Some(path) = key_path(text, e.range().start)
    {
        message = format!("{path}: {message}");
    }
    ParseError {
        line: e.line_display(),
        column: e.column_display(),
        message,
    }
}

/// The key path to the innermost value of `text` that starts at or encloses byte
/// `offset`: object keys joined by `.`, array indexes as `[N]`. A key that is not a
/// plain identifier is shown quoted with its control characters escaped, so a path
/// never carries the file's bytes to the terminal raw. `None` at the top level, or when
/// the text does not parse (the caller has an error to show already).
fn key_path(text: &str, offset: usize) -> Option<String> {
    use jsonc_parser::ast::Value as V;
    use jsonc_parser::common::Ranged as _;
    use std::fmt::Write as _;
    let parsed =
        jsonc_parser::parse_to_ast(text, &jsonc_parser::CollectOptions::default(), &options())
            .ok()?;
    let mut value = parsed.value?;
    let mut path = String::new();
    let within = |r: jsonc_parser::common::Range| r.start <= offset && offset < r.end;
    loop {
        value = match value {
            V::Object(o) => {
                let Some(prop) = o.properties.into_iter().find(|p| within(p.range)) else {
                    break;
                };
                let name = prop.name.into_string();
                match properties::printable(&name) {
                    Some(n) if !path.is_empty() => {
                        path.push('.');
                        path.push_str(n);
                    }
                    Some(n) => path.push_str(n),
                    None => {
                        let _ = write!(path, "[\"{}\"]", crate::terminal::line(&name));
                    }
                }
                prop.value
            }
            V::Array(a) => {
                let Some((i, v)) = a
                    .elements
                    .into_iter()
                    .enumerate()
                    .find(|(_, v)| within(v.range()))
                else {
                    break;
                };
                let _ = write!(path, "[{i}]");
                v
            }
            _ => break,
        };
    }
    (!path.is_empty()).then_some(path)
}

/// The 1-based line and column where the value at `path` (keys joined by `.`, array
/// indexes as `[N]`: `mounts[0]`, `hostRequirements.cpus`) starts in devcontainer.json
/// `text`; `None` when the text has no such value.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    use jsonc_parser::ast::Value as V;
    use jsonc_parser::common::Ranged as _;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed =
        jsonc_parser::parse_to_ast(text, &jsonc_parser::CollectOptions::default(), &options())
            .ok()?;
    let mut value = parsed.value?;
    for segment in path.split('.') {
        let (name, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        if !name.is_empty() {
            let V::Object(o) = value else { return None };
            value = o
                .properties
                .into_iter()
                .find(|p| p.name.clone().into_string() == name)?
                .value;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.strip_suffix(']')?.parse().ok()?;
            let V::Array(a) = value else { return None };
            value = a.elements.into_iter().nth(i)?;
        }
    }
    let before = text.get(..value.range().start)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Some((line, column))
}

/// Turns the parser's message into ours, without quoting any of the file's content
/// (serde's "invalid type: string \"...\"" would echo a value).
fn describe(kind: &jsonc_parser::errors::ParseErrorKind) -> String {
    let msg = kind.to_string();
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let expected = rest
            .rsplit_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("another type");
        let found = rest.split([' ', ',']).next().unwrap_or("value");
        return format!(
            "wrong type: found {}, expected {}",
            json_words(found),
            json_words(expected)
        );
    }
    let first = msg.chars().next().map(|c| c.to_ascii_lowercase());
    match first {
        Some(c) => format!("{c}{}", &msg[1..]),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_located_by_their_key_path() {
        let text = "\u{feff}// c\n{\n  \"mounts\": [\"a\",\n    \"b\"],\n  \"hostRequirements\": { \"cpus\": 0 },\n  \"é\": {\"x\": 1}, \"y\": 2\n}\n";
        assert_eq!(locate(text, "mounts"), Some((3, 13)));
        assert_eq!(locate(text, "mounts[1]"), Some((4, 5)));
        assert_eq!(locate(text, "hostRequirements.cpus"), Some((5, 33)));
        assert_eq!(locate(text, "y"), Some((6, 23)));
        for missing in [
            "mounts[2]",
            "nope",
            "mounts.x",
            "hostRequirements[0]",
            "mounts[x]",
        ] {
            assert_eq!(locate(text, missing), None, "{missing}");
        }
        assert_eq!(locate("{", "mounts"), None);
    }

    #[test]
    fn reads_jsonc_with_comments_trailing_commas_and_bom() {
        let text = "\u{feff}// top\n{\n  /* block */ \"image\": \"localhost/x:1\", // after\n  \"workspaceFolder\": \"/w\",\n  \"remoteUser\": \"dev\",\n}\n";
        let c = parse(text).expect("parses");
        assert_eq!(c.image.as_deref(), Some("localhost/x:1"));
        assert_eq!(c.workspace_folder.as_deref(), Some("/w"));
        assert_eq!(c.remote_user.as_deref(), Some("dev"));
        assert_eq!(c.container_user, None);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("{\n  \"image\": \"a\"\n  \"name\": \"b\"\n}").expect_err("missing comma");
        // The parser points just after the value that needs a comma.
        assert_eq!((e.line, e.column), (2, 15), "{e}");
        assert!(e.message.contains("comma"), "{e}");
    }

    #[test]
    fn json5_extensions_are_refused() {
        for bad in [
            "{'image': 'x'}",
            "{image: \"x\"}",
            "{\"a\": 0x10}",
            "{\"a\": +1}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn type_errors_do_not_echo_content() {
        let e = parse("{\"image\": 12345678}").expect_err("wrong type");
        assert!(!e.message.contains("12345678"), "{e}");
        assert!(e.message.contains("expected a string"), "{e}");
        assert_eq!(e.line, 1);
        // JSON's words, never serde's.
        for (text, found) in [
            ("{\"capAdd\": [null]}", "found null"),
            ("{\"image\": [1]}", "found an array"),
            ("{\"image\": {}}", "found an object"),
            ("{\"image\": true}", "found true or false"),
        ] {
            let e = parse(text).expect_err("wrong type");
            assert!(e.message.contains(found), "{text}: {e}");
            for serde_word in ["unit", "map", "sequence"] {
                assert!(!e.message.contains(serde_word), "{text}: {e}");
            }
        }
    }

    #[test]
    fn value_errors_name_the_key_path() {
        for (text, path) in [
            ("{\"image\": 5}", "image: wrong type"),
            (
                "{\"remoteEnv\": {\"HOME\": 5}}",
                "remoteEnv.HOME: wrong type",
            ),
            (
                "{\"image\": \"x\", \"capAdd\": [\"a\", \"b\", 3]}",
                "capAdd[2]: wrong type",
            ),
            (
                "{\"containerEnv\": {\"A\": [1]}}",
                "containerEnv.A: wrong type",
            ),
            // A key that is not an identifier is quoted, its control characters escaped.
            (
                "{\"remoteEnv\": {\"a\\u001b]0;x b\": 5}}",
                "remoteEnv[\"a\\x1b]0;x b\"]: wrong type",
            ),
        ] {
            let e = parse(text).expect_err("wrong type");
            assert!(e.message.starts_with(path), "{text}: {e}");
            assert!(!e.message.contains('\x1b'), "{text}: {e}");
        }
        // Syntax errors have a position and no path.
        let e = parse("{\"remoteEnv\": {\"A\": }}").expect_err("syntax");
        assert!(!e.message.starts_with("remoteEnv"), "{e}");
    }

    #[test]
    fn remote_env_null_sets_nothing() {
        let c = parse("{\"image\": \"x\", \"remoteEnv\": {\"A\": null, \"B\": \"b\"}}")
            .expect("null is allowed");
        assert_eq!(
            c.remote_env,
            Some([("B".to_string(), "b".to_string())].into())
        );
    }

    #[test]
    fn empty_and_deep_inputs_error_without_panic() {
        assert!(parse("").is_err());
        assert!(parse("   ").is_err());
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
        let deep_obj = format!("{{\"name\": {}", "[".repeat(100_000));
        assert!(parse(&deep_obj).is_err());
    }

    #[test]
    fn a_device_is_read_no_further_than_the_limit() {
        let e = load(Path::new("/dev/zero")).expect_err("endless");
        assert!(
            e.to_string()
                .contains("at least 1048577 bytes, larger than the 1048576 byte limit"),
            "{e}"
        );
    }

    #[test]
    fn find_prefers_the_folder_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find(dir.path()), None);
        std::fs::write(dir.path().join(".devcontainer.json"), "{}").expect("write");
        assert_eq!(
            find(dir.path()),
            Some(dir.path().join(".devcontainer.json"))
        );
        std::fs::create_dir(dir.path().join(".devcontainer")).expect("mkdir");
        std::fs::write(dir.path().join(".devcontainer/devcontainer.json"), "{}").expect("write");
        assert_eq!(
            find(dir.path()),
            Some(dir.path().join(".devcontainer/devcontainer.json"))
        );
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Deterministic pseudo-random inputs built from JSON-ish fragments: the readers
    /// must return (Ok or Err), never panic or overflow the stack.
    #[test]
    fn arbitrary_inputs_never_panic() {
        const FRAGMENTS: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"image\"",
            "\"x\"",
            "1",
            "-",
            "1e999",
            "null",
            "true",
            "//",
            "/*",
            "*/",
            "\n",
            "\\",
            "\"\\u12",
            "'",
            "\u{feff}",
            "${",
            "}",
            "\"${localEnv:",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            let mut text = String::new();
            let len = (state % 40) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(FRAGMENTS[(state % FRAGMENTS.len() as u64) as usize]);
            }
            let _ = parse(&text);
            let _ = parse_raw(&text);
        }
        let deep = format!("{{\"a\": {}}}", "[".repeat(200_000));
        assert!(parse_raw(&deep).is_err());
    }
}
