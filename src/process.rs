//! Running host subprocesses to completion: one way to spawn, capture and fail with the
//! command's own last stderr lines (bootc's `CommandRunExt` is the model). Commands whose
//! output streams to the user as it comes (initializeCommand, interactive sessions) do
//! not go through here.

use std::process::{ExitStatus, Output};

/// How many stderr lines a failure's message shows.
pub(crate) const STDERR_TAIL: usize = 5;

/// Why a subprocess did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    /// It could not be started (not installed, not executable).
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and exited unsuccessfully.
    #[error("{program} failed ({status}): {}", last_lines(stderr, STDERR_TAIL))]
    Failed {
        program: String,
        status: ExitStatus,
        /// Everything it wrote on stderr, trimmed.
        stderr: String,
    },
}

impl ProcessError {
    /// True when the program was not found at all.
    pub(crate) fn not_found(&self) -> bool {
        matches!(self, Self::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The last `n` non-empty lines of `text`, joined with "; ".
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

/// Turns a finished command's output into its stdout, or the failure.
fn checked(program: String, out: std::io::Result<Output>) -> Result<Vec<u8>, ProcessError> {
    let out = out.map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(ProcessError::Failed {
            program,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Runs a [`std::process::Command`] to completion, stdin closed, stdout and stderr
/// captured.
pub(crate) trait CommandRunExt {
    /// Runs it; its stdout on success, else the failure with its stderr.
    fn run_capture(&mut self) -> Result<Vec<u8>, ProcessError>;

    /// Runs it for its effect only.
    fn run(&mut self) -> Result<(), ProcessError> {
        self.run_capture().map(drop)
    }

    /// Runs it and returns its stdout as text (lossy UTF-8).
    fn run_get_string(&mut self) -> Result<String, ProcessError> {
        self.run_capture()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
    }
}

impl CommandRunExt for std::process::Command {
    fn run_capture(&mut self) -> Result<Vec<u8>, ProcessError> {
        let program = self.get_program().to_string_lossy().into_owned();
        // `output` closes stdin: nothing run this way can wait for the user.
        checked(program, self.output())
    }
}

/// [`CommandRunExt`] for [`tokio::process::Command`]: the same, without blocking the
/// runtime.
pub(crate) trait AsyncCommandRunExt {
    /// Runs it with `input` on its stdin (closed after); its stdout on success.
    fn run_with_input(
        &mut self,
        input: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, ProcessError>> + Send;
}

impl AsyncCommandRunExt for tokio::process::Command {
    async fn run_with_input(&mut self, input: &[u8]) -> Result<Vec<u8>, ProcessError> {
        use std::process::Stdio;
        use tokio::io::AsyncWriteExt;
        let program = self.as_std().get_program().to_string_lossy().into_owned();
        let spawned = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = spawned.map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdin = child.stdin.take();
        // Written while the output is read: a child that answers before it has read all
        // its input must not fill a pipe and wait forever.
        let write = async {
            if let Some(mut stdin) = stdin {
                stdin.write_all(input).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let (written, out) = tokio::join!(write, child.wait_with_output());
        let stdout = checked(program.clone(), out)?;
        // A child that exits without reading its input is judged by its status alone.
        if let Err(e) = written
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(ProcessError::Spawn { program, source: e });
        }
        Ok(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_returned_and_failures_carry_stderr() {
        let out = std::process::Command::new("sh")
            .args(["-c", "echo hi"])
            .run_get_string()
            .expect("echo");
        assert_eq!(out, "hi\n");
        let e = std::process::Command::new("sh")
            .args(["-c", "echo one >&2; echo two >&2; exit 3"])
            .run()
            .expect_err("exit 3");
        let ProcessError::Failed { stderr, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(stderr, "one\ntwo");
        let msg = e.to_string();
        assert!(
            msg.starts_with("sh failed (") && msg.ends_with("one; two"),
            "{msg}"
        );
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b; c");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn a_missing_program_is_told_apart() {
        let e = std::process::Command::new("/nonexistent/devaipod-no-such-tool")
            .run()
            .expect_err("missing");
        assert!(e.not_found(), "{e:?}");
    }

    #[tokio::test]
    async fn async_commands_take_input() {
        let out = tokio::process::Command::new("cat")
            .run_with_input(b"data")
            .await
            .expect("cat");
        assert_eq!(out, b"data");
        let e = tokio::process::Command::new("sh")
            .args(["-c", "echo bad >&2; exit 1"])
            .run_with_input(b"")
            .await
            .expect_err("exit 1");
        assert!(e.to_string().ends_with(": bad"), "{e}");
    }
}
