//! `devaipod config [PATH] [--config FILE] [--json]`: how devaipod reads the
//! devcontainer.json, shaped like the reference CLI's `devcontainer read-configuration
//! --include-merged-configuration`, so the two can be compared key by key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

use super::Context;
use crate::devcontainer::{self, metadata};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The workspace folder (where .devcontainer/ is)
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The devcontainer.json to read (default: .devcontainer/devcontainer.json or .devcontainer.json)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON on stdout: {"configuration", "mergedConfiguration"}
    #[arg(long)]
    pub json: bool,
}

/// The read configuration and, when the image's metadata could be read, the merged one.
pub(super) struct Reading {
    pub configuration: Map<String, Value>,
    pub workspace: devcontainer::Workspace,
    pub merged: Option<Map<String, Value>>,
    /// Why there is no merged configuration.
    pub merged_note: Option<String>,
    pub warnings: Vec<String>,
}

/// Reads the configuration as `config` shows it; the engine is asked only for the
/// metadata of the image the merge starts from.
pub(super) async fn read(ctx: &Context, args: &ConfigArgs) -> Result<Reading> {
    let dir = args
        .path
        .canonicalize()
        .with_context(|| format!("{}: no such folder", args.path.display()))?;
    let Some(path) = devcontainer::discover(&dir, args.config.as_deref())? else {
        bail!(
            "{} has no .devcontainer/devcontainer.json or .devcontainer.json (pass --config FILE to read another file)",
            dir.display()
        );
    };
    // Like the reference CLI, the repo's top (if any) is what gets mounted.
    let root = crate::git::toplevel(&dir).unwrap_or_else(|| dir.clone());
    if args.config.is_none() {
        devcontainer::confined(&path, &root)?;
    }
    let loaded = devcontainer::load(&path)?;
    let (user_config, _) = crate::config::load()?;
    let env = crate::inputs::RepoEnv::new(&user_config);
    let reading = devcontainer::read(&loaded, &dir, &root, &|n| env.get(n))?;
    env.check(&loaded)?;
    let mut configuration = reading.configuration;
    let workspace = reading.workspace;
    configuration.insert(
        "configFilePath".into(),
        json!({
            "$mid": 1,
            "fsPath": path.display().to_string(),
            "path": path.display().to_string(),
            // The reference marks a --config file as "file", a found one as "vscode-fileHost".
            "scheme": if args.config.is_some() { "file" } else { "vscode-fileHost" },
        }),
    );
    let (features, features_note) = config_features(&configuration, &path, &root).await;
    let (merged, mut merged_note) = match metadata_image(&configuration, &path) {
        Err(why) => (None, Some(why)),
        // A build whose target stage is not found starts from nothing: no metadata.
        Ok(None) => (Some(metadata::merge(&features, &configuration)), None),
        Ok(Some(image)) => match image_metadata(ctx, &image).await {
            Ok(Some(mut meta)) => {
                meta.extend(features);
                (Some(metadata::merge(&meta, &configuration)), None)
            }
            Ok(None) => (
                None,
                Some(format!(
                    "image {image} is not present locally: the merged configuration needs its metadata and is not shown"
                )),
            ),
            Err(e) => (
                None,
                Some(format!(
                    "could not read the metadata of image {image}: {e:#}"
                )),
            ),
        },
    };
    if merged.is_some() && features_note.is_some() {
        merged_note = features_note;
    }
    Ok(Reading {
        configuration,
        workspace,
        merged,
        merged_note,
        warnings: loaded.warnings,
    })
}

/// Metadata entries of the config's features (local ones read, OCI and tarball ones
/// fetched into the cache, hard dependencies added), in install order, as the reference
/// CLI merges them; a note instead when they could not all be read.
async fn config_features(
    configuration: &Map<String, Value>,
    config_path: &std::path::Path,
    repo_root: &std::path::Path,
) -> (Vec<Map<String, Value>>, Option<String>) {
    let Some(features) = configuration
        .get("features")
        .and_then(Value::as_object)
        .filter(|f| !f.is_empty())
    else {
        return (Vec::new(), None);
    };
    let order: Vec<String> = configuration
        .get("overrideFeatureInstallOrder")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match crate::feature_build::resolve(
        features,
        &order,
        config_path,
        repo_root,
        crate::devcontainer::lockfile::Mode::Update,
    )
    .await
    {
        Ok(r) => (
            r.order
                .iter()
                .map(|&i| metadata::feature_entry(&r.nodes[i].user_id, &r.nodes[i].meta.raw))
                .collect(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "the features could not be read, so their metadata is not merged: {e:#}"
            )),
        ),
    }
}

/// The image whose metadata the merge uses: `image`, or the base image of the
/// Dockerfile of a build config (`None` when the Dockerfile has no such stage). `Err`
/// says why there is nothing to merge.
fn metadata_image(
    configuration: &Map<String, Value>,
    config_path: &std::path::Path,
) -> Result<Option<String>, String> {
    if configuration.contains_key("dockerComposeFile") {
        return Err(
            "Compose configurations are not merged yet (that needs the compose service's image)"
                .into(),
        );
    }
    if let Some(image) = configuration.get("image").and_then(Value::as_str) {
        return Ok(Some(image.to_string()));
    }
    let build = configuration.get("build").and_then(Value::as_object);
    let dockerfile = build
        .and_then(|b| b.get("dockerfile"))
        .or_else(|| configuration.get("dockerFile"))
        .and_then(Value::as_str)
        .ok_or("the configuration names no image and no Dockerfile")?;
    let dir = config_path.parent().unwrap_or(std::path::Path::new("."));
    let file = dir.join(dockerfile);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read the Dockerfile {}: {e}", file.display()))?;
    let empty = Map::new();
    let args = build
        .and_then(|b| b.get("args"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let target = build.and_then(|b| b.get("target")).and_then(Value::as_str);
    Ok(devcontainer::dockerfile::base_image(&text, target, args))
}

/// The image's `devcontainer.metadata` entries; `None` when the image is not present.
async fn image_metadata(ctx: &Context, image: &str) -> Result<Option<Vec<Map<String, Value>>>> {
    let labels = ctx.engine().await?.image_labels(image).await?;
    Ok(labels.map(|l| metadata::from_label(l.get(metadata::LABEL).map(String::as_str))))
}

pub(super) async fn run(ctx: &Context, args: ConfigArgs) -> Result<ExitCode> {
    let reading = read(ctx, &args).await?;
    if args.json {
        let mut out = Map::new();
        out.insert("configuration".into(), Value::Object(reading.configuration));
        let mut ws = Map::new();
        ws.insert(
            "workspaceFolder".into(),
            json!(reading.workspace.folder_out),
        );
        if let Some(m) = &reading.workspace.mount_out {
            ws.insert("workspaceMount".into(), json!(m));
        }
        out.insert("workspace".into(), Value::Object(ws));
        if let Some(m) = reading.merged {
            out.insert("mergedConfiguration".into(), Value::Object(m));
        }
        if let Some(note) = &reading.merged_note {
            out.insert("mergedConfigurationNote".into(), json!(note));
        }
        out.insert("warnings".into(), json!(reading.warnings));
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    } else {
        print!("{}", render(&reading));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human view; values are the repo's, shown escaped.
fn render(r: &Reading) -> String {
    use crate::terminal::line;
    use std::fmt::Write;
    let mut s = String::new();
    let c = &r.configuration;
    let path = c["configFilePath"]["fsPath"].as_str().unwrap_or_default();
    let _ = writeln!(s, "file       {}", line(path));
    for key in [
        "name",
        "image",
        "workspaceFolder",
        "containerUser",
        "remoteUser",
    ] {
        if let Some(v) = c.get(key).and_then(Value::as_str) {
            let _ = writeln!(s, "{key:<10} {}", line(v));
        }
    }
    if c.contains_key("build") || c.contains_key("dockerFile") {
        let _ = writeln!(s, "build      from a Dockerfile");
    }
    if c.contains_key("dockerComposeFile") {
        let _ = writeln!(
            s,
            "compose    {}",
            line(&c["dockerComposeFile"].to_string())
        );
    }
    let others: Vec<&str> = c
        .keys()
        .map(String::as_str)
        .filter(|k| {
            ![
                "name",
                "image",
                "workspaceFolder",
                "containerUser",
                "remoteUser",
                "configFilePath",
            ]
            .contains(k)
        })
        .filter_map(devcontainer::properties::printable)
        .collect();
    if !others.is_empty() {
        let _ = writeln!(s, "also       {}", others.join(", "));
    }
    match (&r.merged, &r.merged_note) {
        (Some(m), _) => {
            let _ = writeln!(
                s,
                "merged     with the image's metadata: {} properties",
                m.len()
            );
        }
        (None, Some(note)) => {
            let _ = writeln!(s, "merged     not shown: {}", line(note));
        }
        (None, None) => {}
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning    {}", line(w));
    }
    s
}
