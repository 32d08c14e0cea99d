//! `devaipod logs NAME [--container ROLE] [--follow] [--tail N] [--raw]`: a container's
//! output. What the container writes is the agent's (or the repo's) text: on a terminal
//! each line is escaped and marked with the container's role (`agent | ...`), so that
//! neither a control sequence nor a forged `devaipod: ...` line reaches the user as such;
//! into a pipe or a file, or with `--raw`, the bytes pass unchanged.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use futures_util::StreamExt;

use super::Context;
use crate::names::Name;
use crate::plan::Role;
use crate::podman::logs::{LogChunk, LogOptions};
use crate::terminal::Lines;

/// The containers `logs` can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogRole {
    Workspace,
    Agent,
    Gator,
    Proxy,
}

impl From<LogRole> for Role {
    fn from(r: LogRole) -> Self {
        match r {
            LogRole::Workspace => Role::Workspace,
            LogRole::Agent => Role::Agent,
            LogRole::Gator => Role::Gator,
            LogRole::Proxy => Role::Proxy,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workspace: NAME or devaipod-NAME
    pub name: String,
    /// Which container
    #[arg(long, short, value_enum, default_value = "agent")]
    pub container: LogRole,
    /// Keep printing new output until interrupted
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Pass the container's bytes through unchanged, control sequences included (the
    /// default on a terminal escapes them and starts each line with the container's
    /// role; into a pipe or a file the bytes always pass unchanged)
    #[arg(long)]
    pub raw: bool,
}

/// One of `logs`' outputs (stdout or stderr): the container's bytes as they come, or
/// escaped and marked lines ([`Lines`]) when it is a terminal.
struct Sink<W: Write> {
    out: W,
    lines: Option<Lines>,
}

impl<W: Write> Sink<W> {
    fn new(out: W, escape: bool, role: Role) -> Self {
        Self {
            out,
            lines: escape.then(|| Lines::new(format!("{role} | "))),
        }
    }

    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.lines {
            Some(lines) => self.out.write_all(lines.feed(chunk).as_bytes())?,
            None => self.out.write_all(chunk)?,
        }
        self.out.flush()
    }

    /// Writes the last line, when the output ended without a newline; the writer.
    fn finish(mut self) -> std::io::Result<W> {
        if let Some(lines) = self.lines.take() {
            self.out.write_all(lines.finish().as_bytes())?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

pub(super) async fn run(ctx: &Context, args: LogsArgs) -> Result<ExitCode> {
    let name = Name::from_user(&args.name)?;
    let role = Role::from(args.container);
    let engine = ctx.engine().await?;
    let row = engine.workspace(&name).await?;
    let Some(container) = row.container(role.as_str()) else {
        let have: Vec<&str> = row.containers.iter().map(|c| c.role.as_str()).collect();
        bail!(
            "workspace {name} has no {role} container (it has: {})",
            have.join(", ")
        );
    };
    let opts = LogOptions {
        follow: args.follow,
        tail: args.tail,
    };
    let mut stream = engine.logs(&container.name, opts);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = Sink::new(stdout.lock(), !args.raw && stdout.is_terminal(), role);
    let mut err = Sink::new(stderr.lock(), !args.raw && stderr.is_terminal(), role);
    while let Some(chunk) = stream.next().await {
        match chunk? {
            LogChunk::Stderr(b) => err.write(&b)?,
            LogChunk::Stdout(b) => out.write(&b)?,
        }
    }
    drop(stream);
    drop(out.finish()?);
    drop(err.finish()?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM_AGENT: &[u8] = b"ok\n\x1b]0;pwned\x07\ndevaipod: the pod is safe\npartial\xe2\x80";

    #[test]
    fn a_terminal_gets_escaped_lines_marked_as_the_containers() {
        let mut sink = Sink::new(Vec::new(), true, Role::Agent);
        // Chunks that end inside a line and inside a UTF-8 sequence (U+202E).
        sink.write(FROM_AGENT).expect("write");
        sink.write(b"\xae!\n").expect("write");
        sink.write(b"end").expect("write");
        let out = String::from_utf8(sink.finish().expect("finish")).expect("utf-8");
        assert_eq!(
            out,
            "agent | ok\n\
             agent | \\x1b]0;pwned\\x07\n\
             agent | devaipod: the pod is safe\n\
             agent | partial\\u{202e}!\n\
             agent | end\n"
        );
    }

    #[test]
    fn raw_output_passes_the_bytes_unchanged() {
        let mut sink = Sink::new(Vec::new(), false, Role::Agent);
        sink.write(FROM_AGENT).expect("write");
        sink.write(b"\xae").expect("write");
        assert_eq!(
            sink.finish().expect("finish"),
            [FROM_AGENT, b"\xae"].concat()
        );
    }
}
