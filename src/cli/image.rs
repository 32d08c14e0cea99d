//! `devaipod image pull|build|list`: a repo's images without making a pod (pull what
//! its configuration names, build its Dockerfile), and the images devaipod pulled or
//! built, for which repos.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::Context;
use crate::inputs;
use crate::plan::ImageState;
use crate::podman::images::PullPolicy;
use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull the images a repo's configuration names (its image, or its Dockerfile's
    /// base image), with your registries.conf and auth.json, without making a pod
    Pull {
        /// The repo, or a folder inside it
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The devcontainer.json to use
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Pull even images already in the local store (a newer one under the name)
        #[arg(long)]
        always: bool,
    },
    /// Build the image of a repo's Dockerfile configuration, without making a pod
    Build {
        /// The repo, or a folder inside it
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The devcontainer.json to use
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Build again, without the layer cache, even if an image for the same inputs exists
        #[arg(long)]
        rebuild: bool,
        /// When the build pulls its FROM images: never, missing or always
        #[arg(long, value_enum, value_name = "WHEN", default_value_t = PullPolicy::Missing)]
        pull: PullPolicy,
    },
    /// The images devaipod pulled or built, and for which repos
    List {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
}

fn request(
    path: PathBuf,
    config: Option<PathBuf>,
    rebuild: bool,
    pull: PullPolicy,
) -> inputs::Request {
    inputs::Request {
        path,
        name: None,
        image: None,
        config,
        labels: Vec::new(),
        trust: false,
        service_gator: Vec::new(),
        service_gator_image: None,
        service_gator_allow_wildcard_write: false,
        rebuild,
        ready_timeout_secs: crate::plan::DEFAULT_READY_TIMEOUT_SECS,
        network: None,
        allow: Vec::new(),
        model: None,
        task: false,
        pull,
    }
}

pub(super) async fn run(ctx: &Context, args: ImageArgs) -> Result<ExitCode> {
    match args.command {
        ImageCommand::Pull {
            path,
            config,
            always,
        } => pull(ctx, path, config, always).await,
        ImageCommand::Build {
            path,
            config,
            rebuild,
            pull,
        } => build(ctx, path, config, rebuild, pull).await,
        ImageCommand::List { json } => list(ctx, json).await,
    }
}

async fn pull(
    ctx: &Context,
    path: PathBuf,
    config: Option<PathBuf>,
    always: bool,
) -> Result<ExitCode> {
    let policy = if always {
        PullPolicy::Always
    } else {
        PullPolicy::Missing
    };
    let progress = Progress::new();
    let engine = ctx.engine().await?;
    let req = request(path, config, false, policy);
    let host = inputs::host_facts(&req)?;
    let mut images = inputs::image_facts(engine, &host.input, false, policy)
        .await?
        .pulls;
    // A Dockerfile configuration: its base image (the build pulls the others).
    if let Some(b) = &host.prepared {
        let text = std::fs::read_to_string(&b.plan.dockerfile)
            .with_context(|| format!("reading {}", b.plan.dockerfile.display()))?;
        let args: serde_json::Map<String, serde_json::Value> = b
            .plan
            .args
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        if let Some(base) =
            crate::devcontainer::dockerfile::base_image(&text, b.plan.target.as_deref(), &args)
            && !base.starts_with("localhost/")
        {
            let present = engine.image_id(&base).await?.is_some();
            if always || !present {
                images.push(base);
            } else {
                progress.line(&format!("{base} is in the local store"));
            }
        }
    }
    if images.is_empty() {
        progress.line("nothing to pull: the configuration's images are in the local store");
    }
    let mut cancel = crate::cli::cancel_on_signals();
    for image in &images {
        let id = super::up::pull_image(engine, image, policy, &progress, &mut cancel).await?;
        progress.line(&format!("pulled {image} ({})", id.get(..12).unwrap_or(&id)));
    }
    crate::state::record_images(&images, &host.input.repo.root);
    Ok(ExitCode::SUCCESS)
}

async fn build(
    ctx: &Context,
    path: PathBuf,
    config: Option<PathBuf>,
    rebuild: bool,
    pull: PullPolicy,
) -> Result<ExitCode> {
    let progress = Progress::new();
    let engine = ctx.engine().await?;
    let req = request(path, config, rebuild, pull);
    let mut host = inputs::host_facts(&req)?;
    let Some(build) = &host.prepared else {
        anyhow::bail!(
            "{} names an image, not a Dockerfile (`build.dockerfile`): there is nothing to build; `devaipod image pull` gets its image",
            host.input
                .devcontainer_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the configuration".into())
        );
    };
    inputs::image_facts(engine, &host.input, rebuild, pull)
        .await?
        .apply_to(&mut host.input);
    let plan = inputs::plan(&host.input)?;
    if !matches!(plan.image.state, ImageState::WillBuild) {
        progress.line(&format!(
            "{} is up to date (same inputs); --rebuild builds it again",
            build.plan.tag
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut cancel = crate::cli::cancel_on_signals();
    let id = super::up::build_image(engine, &plan, build, pull, &progress, &mut cancel).await?;
    progress.line(&format!(
        "built {} ({})",
        build.plan.tag,
        id.get(..12).unwrap_or(&id)
    ));
    crate::state::record_images(std::slice::from_ref(&build.plan.tag), &host.input.repo.root);
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Context, json: bool) -> Result<ExitCode> {
    let engine = ctx.engine().await?;
    let records = crate::state::StateDir::from_env()
        .map(|s| s.images())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for (image, r) in &records {
        let id = engine.image_id(image).await?;
        rows.push(serde_json::json!({
            "image": image,
            "repo": r.repos.last(),
            "repos": r.repos,
            "present": id.is_some(),
            "id": id,
            "at": r.at,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("devaipod has pulled or built no image yet");
    } else {
        for (image, r) in &records {
            let present = rows
                .iter()
                .find(|v| v["image"] == image.as_str())
                .is_some_and(|v| v["present"] == true);
            println!(
                "{}{}\n    for {}",
                crate::terminal::line(image),
                if present {
                    ""
                } else {
                    "  (no longer in the local store)"
                },
                r.repos
                    .iter()
                    .map(|p| crate::terminal::line(p).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
