//! `devaipod allow NAME HOST…` and `devaipod deny NAME HOST…`: change a running pod's
//! allowlist without a restart. The list lives in the proxy's state volume, so it
//! survives `stop` and `start`; the proxy reads it again on its next request. And the
//! network part of `status`: the mode, the allowlist, the credential providers (never a
//! value), the refusal counts and the last refused names, from the proxy itself.

use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;

use super::Context;
use crate::names::Name;
use crate::plan::labels;
use crate::plan::paths::{NET_STATE_DIR, PROXY_UID};
use crate::podman::Engine;
use crate::podman::inventory::WorkspaceRow;
use crate::terminal::line;

#[derive(Debug, Args)]
pub struct AllowArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// NAME (ports 443 and 80), NAME:PORT, or `*.NAME` for its subdomains
    #[arg(required = true, value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Print the resulting allowlist as a JSON array on stdout
    #[arg(long)]
    pub json: bool,
}

/// The devaipod-net binary in the proxy's image.
const NET_EXE: &str = crate::plan::network::NET_EXE;

/// Runs devaipod-net `args` in the running proxy of `row`, as the proxy's uid; its
/// stdout lines, or its error.
async fn in_proxy(engine: &Engine, row: &WorkspaceRow, args: &[&str]) -> Result<Vec<String>> {
    let proxy = row.container("proxy").ok_or_else(|| {
        anyhow!(
            "{} has no proxy: its agent's network is `full` (set at `up`); nothing to allow or deny",
            row.name
        )
    })?;
    if proxy.state != "running" {
        bail!(
            "the proxy of {} is {}: start the workspace with `devaipod start {}` first",
            row.name,
            proxy.state,
            row.name
        );
    }
    let argv: Vec<String> = std::iter::once(NET_EXE)
        .chain(args.iter().copied())
        .map(str::to_string)
        .collect();
    let lines = std::sync::Mutex::new(Vec::new());
    let user = format!("{PROXY_UID}:{PROXY_UID}");
    let code = engine
        .exec_lines(&proxy.name, &argv, Some(&user), "/", &[], &|l| {
            if let Ok(mut v) = lines.lock() {
                v.push(l.to_string());
            }
        })
        .await?;
    let lines = lines.into_inner().unwrap_or_default();
    if code != 0 {
        bail!(
            "the proxy refused: {}",
            lines
                .iter()
                .map(|l| l.trim_start_matches("devaipod-net: "))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(lines)
}

/// `allow` (`add`) or `deny`.
pub(super) async fn change(ctx: &Context, args: AllowArgs, add: bool) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let flag = if add { "--add" } else { "--remove" };
    let mut argv = vec!["allow", "--state", NET_STATE_DIR, "--json"];
    for h in &args.hosts {
        argv.extend([flag, h.as_str()]);
    }
    let out = in_proxy(engine, &row, &argv).await?;
    let list: Vec<String> = serde_json::from_str(&out.join("\n"))
        .context("reading the proxy's allowlist (devaipod-net allow --json)")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!(
            "{}: the agent may reach no name (credential routes only)",
            line(&row.name)
        );
    } else {
        println!("{}: the agent may reach", line(&row.name));
        for n in &list {
            println!("  {}", line(n));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The network part of `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct NetworkStatus {
    /// `allowlist`, `none`, `full` (from the pod's label; empty for a pod made before).
    pub mode: String,
    /// The running proxy's allowlist; the one `up` set while the pod is stopped.
    pub allow: Vec<String>,
    /// The credential providers (name, base URL, header); never a value.
    pub credentials: Vec<serde_json::Value>,
    /// The proxy's decision counts and last refused names (`null` when not running).
    pub proxy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Reads the network's status of `row` (whose pod labels are `pod_labels`).
pub(super) async fn status(
    engine: &Engine,
    row: &WorkspaceRow,
    pod_labels: &std::collections::BTreeMap<String, String>,
) -> NetworkStatus {
    let planned: serde_json::Value = pod_labels
        .get(labels::NETWORK)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let mut s = NetworkStatus {
        mode: planned["mode"].as_str().unwrap_or_default().to_string(),
        allow: strings(&planned["allow"]),
        credentials: planned["credentials"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let mut v = serde_json::json!({
                            "provider": c["provider"],
                            "base_url": c["base_url"],
                            "header": c["header"],
                        });
                        for key in ["preset", "variable"] {
                            if let Some(x) = c.get(key).filter(|x| x.is_string()) {
                                v[key] = x.clone();
                            }
                        }
                        v
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    if row.container("proxy").is_none_or(|p| p.state != "running") {
        if s.mode != "full" && !s.mode.is_empty() {
            s.note = Some("the proxy is not running: the allowlist shown is the one `up` set, and `devaipod allow`/`deny` changes since are applied at the next start".into());
        }
        return s;
    }
    let allow = in_proxy(engine, row, &["allow", "--state", NET_STATE_DIR, "--json"]).await;
    let stats = in_proxy(engine, row, &["stats", "--state", NET_STATE_DIR, "--json"]).await;
    match allow.and_then(|l| Ok(serde_json::from_str::<Vec<String>>(&l.join("\n"))?)) {
        Ok(list) => s.allow = list,
        Err(e) => s.note = Some(format!("reading the proxy's allowlist: {e:#}")),
    }
    match stats.and_then(|l| Ok(serde_json::from_str::<serde_json::Value>(&l.join("\n"))?)) {
        Ok(v) => s.proxy = Some(v),
        Err(e) => s.note = Some(format!("reading the proxy's counts: {e:#}")),
    }
    s
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
