//! `devaipod review NAME`: bring the agent's commits to the host repo as the branch
//! `devaipod/NAME` (a git bundle made from the agent's clone, fetched with no hook) and show the
//! diff against the commit the pod started from. Reading the agent's clone is
//! [`crate::agent_repo`]'s.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::Context;
use crate::agent_repo::{agent_work, fetch_branch};
use crate::names::Name;
use crate::process::CommandRunExt;

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Only fetch the branch; print no diff
    #[arg(long)]
    pub no_diff: bool,
    /// Print JSON on stdout (implies --no-diff)
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(ctx: &Context, args: ReviewArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let engine = ctx.engine().await?;
    let work = agent_work(engine, &name).await?;
    if work.tip.is_some() && !work.commits.is_empty() {
        fetch_branch(engine, &name, &work).await?;
    }
    let base_name = work
        .base_branch
        .clone()
        .unwrap_or_else(|| work.base.chars().take(12).collect());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&work)?);
        return Ok(ExitCode::SUCCESS);
    }
    if work.commits.is_empty() {
        println!(
            "the agent of {name} has made no commits on {} since {base_name}{}",
            work.branch,
            if work.uncommitted > 0 {
                format!(" ({} uncommitted change(s) in its clone)", work.uncommitted)
            } else {
                String::new()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "fetched {} commit(s) into {} as branch {} (from {base_name}):",
        work.commits.len(),
        work.repo.display(),
        work.branch
    );
    for c in &work.commits {
        println!("  {} {}", c.short(), c.subject);
    }
    if work.uncommitted > 0 {
        println!(
            "note: the agent's clone also has {} uncommitted change(s), not fetched",
            work.uncommitted
        );
    }
    if args.no_diff {
        return Ok(ExitCode::SUCCESS);
    }
    let range = format!("{}...{}", work.base, work.branch);
    let tool = crate::git::git(&work.repo)
        .args(["config", "--get", "diff.tool"])
        .run_capture()
        .is_ok_and(|o| !o.is_empty());
    let status = if tool {
        crate::git::git(&work.repo)
            .args(["difftool", "--no-prompt", &range])
            .status()
    } else {
        crate::git::git(&work.repo)
            .args(["diff", "--stat", "-p", &range])
            .status()
    }
    .context("running git to show the diff")?;
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
