//! `devaipod delete NAME... | --all [--force]`: remove workspaces' pods, containers and
//! volumes, and their SSH entries and host keys.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde::Serialize;

use super::Context;
use crate::agent_repo::CommitRow;
use crate::names::Name;
use crate::plan::labels;
use crate::podman::labelled::Removed;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The workspaces: NAME or devaipod-NAME, one or more
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Delete every workspace devaipod made (those whose agent holds unreviewed commits
    /// only with --force)
    #[arg(long)]
    pub all: bool,
    /// Delete even when the agent holds commits on no host branch, and remove objects
    /// labelled for NAME when its pod is gone (leftovers)
    #[arg(long, short)]
    pub force: bool,
    /// Print what was removed as JSON (an array when several are named or --all)
    #[arg(long)]
    pub json: bool,
}

/// Deletes each named workspace (or all of them), going on past one that cannot be;
/// fails at the end naming those.
pub(super) async fn run(ctx: &Context, args: DeleteArgs) -> Result<ExitCode> {
    // Bad names are refused before anything else (no engine yet).
    let named: Vec<Name> = args
        .names
        .iter()
        .map(|n| Name::from_user(n))
        .collect::<Result<_, _>>()?;
    // An interrupt stops before the next workspace, or before this one's removal
    // begins; a removal once begun runs to its end (it is short), so no workspace is
    // ever left half-removed.
    let _cancel = crate::cli::cancel_on_signals();
    let engine = ctx.engine().await?;
    let names: Vec<Name> = if args.all {
        let mut names: Vec<Name> = Vec::new();
        for row in engine.workspaces(None).await? {
            let name = Name::from_user(&row.name)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            if args.json {
                println!("[]");
            } else {
                println!("no workspaces to delete");
            }
            return Ok(ExitCode::SUCCESS);
        }
        names
    } else {
        named
    };
    let several = args.all || names.len() > 1;
    let mut outputs = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        crate::podman::cancel::check()?;
        match delete_one(engine, name, args.force).await {
            Ok(out) => {
                if !args.json {
                    print_removed(&out);
                }
                outputs.push(out);
            }
            Err(e) if several && !crate::podman::cancel::requested() => {
                eprintln!(
                    "devaipod: {name}: {}",
                    crate::terminal::line(&format!("{e:#}"))
                );
                failed.push(name.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    if args.json {
        let text = if several {
            serde_json::to_string_pretty(&outputs)?
        } else {
            serde_json::to_string_pretty(&outputs[0])?
        };
        println!("{text}");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} workspace(s) not deleted: {} (see above)",
            failed.len(),
            names.len(),
            failed.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes one workspace: refuses to lose the agent's unreviewed commits without
/// `force`, and without its pod removes leftovers only with `force`.
async fn delete_one(engine: &crate::podman::Engine, name: &Name, force: bool) -> Result<Output> {
    let pod = name.pod_name();
    let has_pod = !engine
        .pods_with_label(labels::POD, name.as_str())
        .await?
        .is_empty();
    if !has_pod && !force {
        let volumes = engine
            .volumes_with_label(labels::POD, name.as_str())
            .await?;
        let secrets = engine
            .secrets_with_label(labels::POD, name.as_str())
            .await?;
        if volumes.is_empty() && secrets.is_empty() {
            bail!("no workspace {name}: there is no pod {pod} made by devaipod");
        }
        bail!(
            "no pod {pod}, but {} volume(s) and {} secret(s) labelled for {name} are left over; remove them with `devaipod delete {name} --force`",
            volumes.len(),
            secrets.len()
        );
    }
    if has_pod && !force {
        // The agent's commits that no host branch holds would be lost.
        let lost = match crate::agent_repo::agent_made_no_commits(engine, name).await {
            Ok(Some(true)) => Ok(Vec::new()),
            _ => match crate::agent_repo::agent_work(engine, name).await {
                Ok(work) => crate::agent_repo::unreviewed(&work).await,
                Err(e) => Err(e),
            },
        };
        let lost = lost.with_context(|| {
            format!(
                "cannot tell whether {name}'s agent holds unreviewed commits; pass --force to delete anyway"
            )
        })?;
        if !lost.is_empty() {
            bail!("{}", refusal(name, &lost));
        }
    }
    let state = crate::state::StateDir::from_env();
    let known = state
        .as_ref()
        .map(|s| s.recorded_secrets(name.as_str()))
        .unwrap_or_default();
    crate::progress::pause_point("removing");
    crate::podman::cancel::check()?;
    let removed = engine.remove_labelled(name.as_str(), &known).await?;
    if let Some(state) = &state {
        state.forget(name);
        state.forget_secrets(name.as_str());
    }
    // The SSH entry and host key go with the pod (a leftover of a pod already gone too).
    let ssh = crate::ssh::entry_file::forget(name)
        .with_context(|| format!("removing the SSH entry and host key of {name}"))?;
    if removed.is_empty() && ssh.removed.is_empty() {
        bail!("no workspace {name}: nothing labelled for it exists");
    }
    if let Some(kept) = &ssh.kept {
        eprintln!("left {} alone: devaipod did not write it", kept.display());
    }
    Ok(Output {
        pod,
        removed,
        ssh: ssh.removed,
    })
}

fn print_removed(out: &Output) {
    println!(
        "removed {} ({} pod, {} container(s), {} volume(s))",
        out.pod,
        out.removed.pods.len(),
        out.removed.containers.len(),
        out.removed.volumes.len()
    );
    for p in &out.ssh {
        println!("removed {}", p.display());
    }
}

/// `delete --json`: the engine's objects, and the SSH files (entry, key folder).
#[derive(Serialize)]
struct Output {
    #[serde(skip)]
    pod: String,
    #[serde(flatten)]
    removed: Removed,
    ssh: Vec<std::path::PathBuf>,
}

/// Why `delete` refuses: the agent's commits no host branch holds (their subjects are the
/// agent's text, shown escaped).
fn refusal(name: &Name, lost: &[CommitRow]) -> String {
    let list: Vec<String> = lost
        .iter()
        .map(|c| format!("  {}", super::review::commit_line(c)))
        .collect();
    format!(
        "the agent of {name} holds {} commit(s) that are on no branch of the host repo:\n{}\nbring them over with `devaipod review {name}`, or pass --force to delete them",
        lost.len(),
        list.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::testing::{HOSTILE, HOSTILE_SHOWN, assert_inert};

    #[test]
    fn the_refusal_shows_commit_subjects_escaped() {
        let lost = [
            CommitRow {
                sha: "0123456789abcdef0123456789abcdef01234567".into(),
                subject: HOSTILE.into(),
            },
            CommitRow {
                sha: HOSTILE.into(),
                subject: "x\ndevaipod: forged".into(),
            },
        ];
        let out = refusal(&Name::new("w1").expect("name"), &lost);
        assert_inert(&out);
        assert!(
            out.contains(&format!("\n  0123456789ab {HOSTILE_SHOWN}\n")),
            "{out}"
        );
        assert!(out.contains("x\\x0adevaipod: forged"), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }
}
