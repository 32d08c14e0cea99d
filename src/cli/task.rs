//! `devaipod task NAME TEXT`: a follow-up for a running pod's agent, sent through
//! opencode's HTTP API as data (no shell sees it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::Context;
use crate::names::Name;

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// What the agent should do
    #[arg(
        value_name = "TEXT",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub text: Option<String>,
    /// Read the text from FILE
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Send it to this session (default: the most recently active one)
    #[arg(long, value_name = "ID", conflicts_with = "new")]
    pub session: Option<String>,
    /// Start a new session for it
    #[arg(long)]
    pub new: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(ctx: &Context, args: TaskArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the task file {}", f.display()))?,
        (None, None) => bail!("give the task as TEXT or --file FILE"),
    };
    if text.trim().is_empty() {
        bail!("the task is empty: give the agent something to do");
    }
    let engine = ctx.engine().await?;
    engine.workspace(&name).await?;
    let agent = crate::agent::Agent::open(engine, &name).await?;
    let session = match (&args.session, args.new) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => None,
        (None, false) => agent.sessions().await?.into_iter().next().map(|s| s.id),
    };
    let id = agent.hand_over(&text, session.as_deref()).await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "name": name.as_str(), "session": id })
        );
    } else {
        println!("{}", handed_over(&name, &id));
    }
    Ok(ExitCode::SUCCESS)
}

/// The line `task` prints. The session id is the agent's server's answer: shown escaped.
fn handed_over(name: &Name, id: &str) -> String {
    format!(
        "handed over to {name}'s agent as session {}; follow it with `devaipod status {name}`",
        crate::terminal::line(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terminal::testing::{HOSTILE, assert_inert};

    #[test]
    fn the_session_id_is_shown_escaped() {
        let out = handed_over(&Name::new("w1").expect("name"), HOSTILE);
        assert_inert(&out);
        assert_eq!(out.lines().count(), 1);
    }
}
