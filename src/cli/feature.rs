//! `devaipod feature pull`: fetch a devcontainer Feature (an OCI artifact, or a tarball
//! over HTTPS) into the cache, with the user's registries.conf, auth.json and certs.d,
//! and say where it is.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

use super::Context;
use crate::oci::{self, Refresh};

#[derive(Debug, Args)]
pub struct FeatureArgs {
    #[command(subcommand)]
    pub command: FeatureCommand,
}

#[derive(Debug, Subcommand)]
pub enum FeatureCommand {
    /// Fetch a Feature (HOST/PATH:TAG, HOST/PATH@sha256:..., or an https:// tarball URL)
    /// into the cache ($XDG_CACHE_HOME/devaipod/features) and print its folder
    Pull {
        /// The Feature's reference or URL
        reference: String,
        /// Ask the registry again even when the cache has the reference (a tag may have moved)
        #[arg(long)]
        always: bool,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(_ctx: &Context, args: FeatureArgs) -> Result<ExitCode> {
    match args.command {
        FeatureCommand::Pull {
            reference,
            always,
            json,
        } => pull(&reference, always, json).await,
    }
}

/// What devcontainer-feature.json says about itself (the fields shown).
#[derive(Debug, serde::Deserialize)]
struct Meta {
    id: Option<String>,
    version: Option<String>,
}

async fn pull(reference: &str, always: bool, json: bool) -> Result<ExitCode> {
    let cache = oci::default_cache()?;
    let refresh = if always {
        Refresh::Always
    } else {
        Refresh::IfMissing
    };
    let fetched = if reference.contains("://") {
        oci::fetch_tarball(reference, &cache, refresh).await?
    } else {
        oci::fetch_feature(reference, &cache, refresh).await?
    };
    let meta_path = fetched.dir.join("devcontainer-feature.json");
    let text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "{reference} has no devcontainer-feature.json ({}): it is not a devcontainer Feature",
            meta_path.display()
        )
    })?;
    let map = crate::devcontainer::parse_raw(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: {}",
            meta_path.display(),
            e.line,
            e.column,
            e.message
        )
    })?;
    let meta: Meta = serde_json::from_value(serde_json::Value::Object(map))
        .with_context(|| format!("{}: id and version must be strings", meta_path.display()))?;
    if json {
        let v = serde_json::json!({
            "reference": fetched.reference,
            "dir": fetched.dir,
            "digest": fetched.digest,
            "manifest_digest": fetched.manifest_digest,
            "source": fetched.source,
            "cached": fetched.cached,
            "id": meta.id,
            "version": meta.version,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let t = |s: &str| crate::terminal::line(s).into_owned();
        println!(
            "{} {}{}",
            t(meta.id.as_deref().unwrap_or("(no id)")),
            t(meta.version.as_deref().unwrap_or("(no version)")),
            if fetched.cached { "  (cached)" } else { "" }
        );
        println!("    folder  {}", t(&fetched.dir.display().to_string()));
        println!("    digest  {}", fetched.digest);
        if let Some(m) = &fetched.manifest_digest {
            println!("    manifest {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
