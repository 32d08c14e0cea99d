//! `devaipod review NAME`: bring the agent's commits to the host repo as the branch
//! `devaipod/NAME` (a git bundle made from the agent's clone, fetched with no hook) and show the
//! diff against the commit the pod started from. Reading the agent's clone is
//! [`crate::agent_repo`]'s.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::Context;
use crate::agent_repo::{AgentWork, CommitRow, agent_work, fetch_branch};
use crate::names::Name;
use crate::process::CommandRunExt;
use crate::terminal::line;

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
    // An interrupt stops the jobs reading the agent's clone (their containers and the
    // bundle's temporary file go) and comes before the fetch: the host repo is changed
    // only by a whole `git fetch`, whose ref update is atomic.
    let _cancel = crate::cli::cancel_on_signals();
    let engine = ctx.engine().await?;
    let work = agent_work(engine, &name).await?;
    if work.tip.is_some() && !work.commits.is_empty() {
        fetch_branch(engine, &name, &work).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&work)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", summary(&name, &work));
    if work.commits.is_empty() {
        return Ok(ExitCode::SUCCESS);
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

/// What `review` says before the diff: the agent's commits (their subjects are the
/// agent's text, shown escaped), or that there are none.
fn summary(name: &Name, work: &AgentWork) -> String {
    use std::fmt::Write;
    let base_name = work
        .base_branch
        .clone()
        .unwrap_or_else(|| work.base.chars().take(12).collect());
    let base_name = line(&base_name);
    let branch = line(&work.branch);
    let mut out = String::new();
    if work.commits.is_empty() {
        let _ = writeln!(
            out,
            "the agent of {name} has made no commits on {branch} since {base_name}{}",
            if work.uncommitted > 0 {
                format!(" ({} uncommitted change(s) in its clone)", work.uncommitted)
            } else {
                String::new()
            }
        );
        return out;
    }
    let _ = writeln!(
        out,
        "fetched {} commit(s) into {} as branch {branch} (from {base_name}):",
        work.commits.len(),
        line(&work.repo.to_string_lossy()),
    );
    for c in &work.commits {
        let _ = writeln!(out, "  {}", commit_line(c));
    }
    if work.uncommitted > 0 {
        let _ = writeln!(
            out,
            "note: the agent's clone also has {} uncommitted change(s), not fetched",
            work.uncommitted
        );
    }
    out
}

/// `SHORT-SHA SUBJECT`, escaped: the agent wrote both.
pub(super) fn commit_line(c: &CommitRow) -> String {
    format!("{} {}", line(c.short()), line(&c.subject))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::testing::{HOSTILE, HOSTILE_SHOWN, assert_inert};

    fn hostile_commits() -> Vec<CommitRow> {
        vec![
            CommitRow {
                sha: "0123456789abcdef0123456789abcdef01234567".into(),
                subject: HOSTILE.into(),
            },
            CommitRow {
                sha: format!("{HOSTILE}{HOSTILE}"),
                subject: "plain".into(),
            },
        ]
    }

    #[test]
    fn commit_subjects_are_shown_escaped() {
        let work = AgentWork {
            repo: "/src/r".into(),
            base: "0123456789abcdef".into(),
            base_branch: Some("main".into()),
            branch: "devaipod/w1".into(),
            tip: Some("0123456789abcdef0123456789abcdef01234567".into()),
            commits: hostile_commits(),
            uncommitted: 0,
        };
        let name = Name::new("w1").expect("name");
        let out = summary(&name, &work);
        assert_inert(&out);
        assert!(
            out.contains(&format!("\n  0123456789ab {HOSTILE_SHOWN}\n")),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3, "{out}");
        let none = AgentWork {
            commits: vec![],
            branch: HOSTILE.into(),
            ..work
        };
        assert_inert(&summary(&name, &none));
    }
}
