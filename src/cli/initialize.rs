//! `initializeCommand`: the one repo command that runs on the host. It runs only after
//! the user approved that exact command (asked on a terminal, or `--trust`), and the
//! approval is remembered by a hash of the repo and the command, so a changed command
//! asks again.

use std::io::{BufRead, IsTerminal, Write};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncBufReadExt;

use crate::plan::{Command, InitializePlan};
use crate::podman::cancel::Cancel;
use crate::progress::Progress;

/// How many lines of a failed command's output the error shows.
const TAIL: usize = 20;

fn describe(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(a) => format!("{a:?}"),
        Command::Parallel(m) => m
            .iter()
            .map(|(k, c)| format!("{k}: {}", describe(c)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Asks on the terminal; `false` when there is none or the answer is not yes.
fn ask(init: &InitializePlan, progress: &Progress) -> Result<bool> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    progress.suspend(|| {
        // The user approves what they read: the repo's command is shown escaped, so a
        // control sequence cannot hide part of it.
        eprintln!(
            "The repo's initializeCommand runs on THIS HOST (not in a container), in {}:",
            crate::terminal::line(&init.dir.to_string_lossy())
        );
        eprintln!("    {}", crate::terminal::text(&describe(&init.command)));
        eprint!("Run it? devaipod remembers the answer until the command changes [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the answer")?;
        Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
    })
}

/// Gets the user's approval (remembered, `--trust`, or asked) and runs the command on
/// the host, streaming its output. Fails with the command's name, exit code and last
/// lines.
pub(super) async fn approve_and_run(
    init: &InitializePlan,
    config_file: &str,
    progress: &Progress,
    cancel: &mut Cancel,
) -> Result<()> {
    if !init.approved && !ask(init, progress)? {
        bail!(
            "{config_file}: initializeCommand runs on your host and was not approved: {}\nrun `devaipod up` on a terminal to be asked, or pass --trust to approve it",
            describe(&init.command)
        );
    }
    if let Some(state) = crate::state::StateDir::from_env() {
        state.approve(
            &init.key,
            &format!(
                "{}\n{}\n",
                init.dir.display(),
                serde_json::to_string(&init.command)?
            ),
        )?;
    }
    progress.step("running initializeCommand on the host");
    let jobs: Vec<(String, Vec<String>)> = match &init.command {
        Command::Parallel(m) => m
            .iter()
            .map(|(k, c)| (format!("initializeCommand.{k}"), c.argv()))
            .collect(),
        c => vec![("initializeCommand".to_string(), c.argv())],
    };
    let runs = jobs
        .iter()
        .map(|(label, argv)| run_one(label, argv, init, progress));
    tokio::select! {
        r = futures_util::future::try_join_all(runs) => { r?; }
        _ = cancel.wait_for(|c| *c) => return Err(anyhow::Error::new(crate::Interrupted)),
    }
    progress.finish_step();
    Ok(())
}

async fn run_one(
    label: &str,
    argv: &[String],
    init: &InitializePlan,
    progress: &Progress,
) -> Result<()> {
    let Some((prog, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .current_dir(&init.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("{label}: starting {prog:?} on the host"))?;
    let tail = std::sync::Mutex::new(std::collections::VecDeque::new());
    let pump = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let tail = &tail;
        async move {
            let Some(stream) = stream else { return };
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                progress.line(&format!("[{label}] {line}"));
                if let Ok(mut t) = tail.lock() {
                    t.push_back(line);
                    if t.len() > TAIL {
                        t.pop_front();
                    }
                }
            }
        }
    };
    let out = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let err = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    tokio::join!(pump(out), pump(err));
    let status = child
        .wait()
        .await
        .with_context(|| format!("{label}: waiting for it"))?;
    if !status.success() {
        let tail: Vec<String> = tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        bail!(
            "{label} failed on the host with {status}; nothing was created\n--- its last lines ---\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}
