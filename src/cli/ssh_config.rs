//! `devaipod ssh-config NAME | --all [--stdout]` and `devaipod ssh-config NAME --remove`:
//! OpenSSH client entries for pods in `~/.ssh/config.d`, and `devaipod ssh-server NAME`,
//! the entries' ProxyCommand (SSH's server side on stdio).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::Context;
use crate::names::Name;
use crate::plan::labels;
use crate::ssh::entry::{self, Entry, INCLUDE_LINE, Inclusion, Toolbox};
use crate::ssh::entry_file;
use crate::ssh::keys::PodKeys;

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The workspace: NAME or devaipod-NAME
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// One entry per workspace
    #[arg(long)]
    pub all: bool,
    /// Print the entry instead of writing it (the pod's host key is still made)
    #[arg(long)]
    pub stdout: bool,
    /// Remove NAME's entry (only a file devaipod wrote) and the pod's SSH host key
    #[arg(long, conflicts_with_all = ["all", "stdout"])]
    pub remove: bool,
}

#[derive(Debug, Args)]
pub struct SshServerArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
}

pub(super) async fn run(ctx: &Context, args: SshConfigArgs) -> Result<ExitCode> {
    let name = args.name.as_deref().map(Name::from_user).transpose()?;
    if args.remove {
        let name = name.context("--remove needs the workspace's NAME")?;
        return remove(&name);
    }
    let home = entry_file::home()?;
    let toolbox = entry_file::toolbox()?;
    let exe = devaipod_exe()?;
    let engine = ctx.engine().await?;
    let rows = match &name {
        Some(n) => vec![engine.workspace(n).await?],
        None => engine.workspaces(None).await?,
    };
    // Every entry is rendered (and so checked) before any file is written.
    let mut entries = Vec::new();
    for row in &rows {
        let name = Name::new(&row.name)
            .with_context(|| format!("the engine lists a pod {} with a bad name", row.pod))?;
        let pod = engine.inspect_pod(&row.pod).await?;
        let keys = PodKeys::of(&name)?;
        let text = entry::render(&Entry {
            name: &name,
            exe: &exe,
            known_hosts: &keys.known_hosts_path(),
            remote_user: pod.label(labels::REMOTE_USER),
            toolbox: toolbox.as_ref(),
        })?;
        entries.push((name, keys, text));
    }
    if entries.is_empty() {
        eprintln!("no devaipod workspaces (create one with `devaipod up PATH`)");
        return Ok(ExitCode::SUCCESS);
    }
    for (_, keys, _) in &entries {
        keys.write_known_hosts()?;
    }
    if args.stdout {
        let texts: Vec<&str> = entries.iter().map(|(_, _, t)| t.as_str()).collect();
        print!("{}", texts.join("\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut not_included = None;
    for (name, _, text) in &entries {
        let path = entry_file::write(&home, name, text)?;
        println!("{}", path.display());
        match entry_file::inclusion(&home, &entry::file_name(name)) {
            Ok(Inclusion::Included) => {}
            other => not_included = Some(other),
        }
    }
    if let Some(state) = not_included {
        eprintln!("{}", include_advice(&state));
    }
    if let Some(tb) = &toolbox {
        eprintln!(
            "{}",
            toolbox_note(tb, &home, &entries[0].1.known_hosts_path())
        );
    }
    if let [(name, _, _)] = entries.as_slice() {
        eprintln!(
            "connect with `ssh {}` or your editor's Remote-SSH host of that name",
            name.pod_name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn server(ctx: &Context, args: SshServerArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    crate::ssh::server::serve_stdio(ctx, &name).await
}

/// devaipod's own executable, absolute and with symlinks resolved, for the ProxyCommand.
fn devaipod_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the devaipod executable")?;
    exe.canonicalize()
        .with_context(|| format!("resolving the devaipod executable {}", exe.display()))
}

/// `--remove`: the entry and the host key go; a file the user wrote stays.
fn remove(name: &Name) -> Result<ExitCode> {
    let forgotten = entry_file::forget(name)?;
    for p in &forgotten.removed {
        println!("removed {}", p.display());
    }
    if let Some(kept) = &forgotten.kept {
        eprintln!("left {} alone: devaipod did not write it", kept.display());
    } else if forgotten.removed.is_empty() {
        eprintln!("no SSH entry or host key of {name} to remove");
    }
    Ok(ExitCode::SUCCESS)
}

/// What to tell the user when `~/.ssh/config` does not read the entries.
fn include_advice(state: &Result<Inclusion, String>) -> String {
    let why = match state {
        Ok(Inclusion::InsideBlock { line }) => format!(
            "~/.ssh/config includes config.d only inside a Host or Match block (line {line}), where the entries do not reliably take effect"
        ),
        Ok(_) => {
            "~/.ssh/config does not include config.d, so ssh and editors do not see the entry yet"
                .into()
        }
        Err(e) => format!("{e}, so devaipod cannot tell whether it includes config.d"),
    };
    format!(
        "{why}: add this line at the top of ~/.ssh/config, before any Host or Match block (devaipod never edits that file):\n\n    {INCLUDE_LINE}\n"
    )
}

/// What a toolbox user needs to know: the ProxyCommand enters the toolbox, a flatpak
/// editor needs flatpak-spawn, and the host must see the known_hosts file.
fn toolbox_note(tb: &Toolbox, home: &Path, known_hosts: &Path) -> String {
    let tb = tb.as_str();
    let mut note = format!(
        "devaipod runs in toolbox {tb}: the entry's ProxyCommand runs `toolbox run --container {tb} ...` on the host. An editor installed as a flatpak cannot run toolbox itself: in its ProxyCommand put `flatpak-spawn --host ` before `toolbox` (the flatpak needs --talk-name=org.freedesktop.Flatpak)."
    );
    if !known_hosts.starts_with(home) {
        note.push_str(&format!(
            "\nthe host may not see {}: a toolbox shares only HOME (and /tmp, /run/user) with it; point XDG_DATA_HOME under HOME",
            known_hosts.display()
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_include_advice_gives_the_exact_line_and_where_it_goes() {
        for state in [
            Ok(Inclusion::Missing),
            Ok(Inclusion::InsideBlock { line: 7 }),
            Err("cannot read /h/.ssh/config: denied".into()),
        ] {
            let a = include_advice(&state);
            assert!(a.contains("\n    Include config.d/*\n"), "{a}");
            assert!(
                a.contains("at the top of ~/.ssh/config, before any Host or Match block"),
                "{a}"
            );
        }
        assert!(include_advice(&Ok(Inclusion::InsideBlock { line: 7 })).contains("(line 7)"));
    }

    #[test]
    fn the_toolbox_note_names_flatpak_spawn_and_an_unshared_pin() {
        let tb = entry::toolbox(true, Some("name=\"tb\"\n"))
            .expect("ok")
            .expect("toolbox");
        let home = Path::new("/var/home/u");
        let n = toolbox_note(&tb, home, Path::new("/var/home/u/.local/share/x"));
        assert!(n.contains("toolbox run --container tb"), "{n}");
        assert!(n.contains("flatpak-spawn --host"), "{n}");
        assert!(!n.contains("may not see"), "{n}");
        let n = toolbox_note(&tb, home, Path::new("/data/x"));
        assert!(n.contains("may not see /data/x"), "{n}");
    }
}
