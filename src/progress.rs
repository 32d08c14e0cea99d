//! Progress display: an indicatif spinner on a terminal, plain `devaipod: ...` lines
//! otherwise (indicatif hides everything when stderr is not a terminal, so CI and logs
//! would see nothing). Every message is escaped for the terminal ([`crate::terminal`]):
//! steps, output lines and warnings quote repo and container text (image tags, Dockerfile
//! paths, a lifecycle command's output, devcontainer.json property names).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::terminal;

/// Reports the steps of a slow command on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain lines otherwise.
    pub(crate) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        Self {
            bar,
            start: Instant::now(),
        }
    }

    /// Starts a step.
    pub(crate) fn step(&self, msg: &str) {
        let msg = terminal::line(msg);
        match &self.bar {
            Some(bar) => {
                // The spinner appears with the first step, not before (no empty line).
                bar.enable_steady_tick(Duration::from_millis(100));
                bar.set_message(msg.to_string());
            }
            None => eprintln!("devaipod: {msg}"),
        }
    }

    /// Marks the current step as done (clears the spinner line).
    pub(crate) fn finish_step(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(String::new());
        }
    }

    /// Prints a line of a command's output without garbling the spinner.
    pub(crate) fn line(&self, msg: &str) {
        let msg = terminal::line(msg);
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{msg}")),
            None => eprintln!("{msg}"),
        }
    }

    /// Runs `f` (a prompt) with the spinner hidden.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Prints a warning without garbling the spinner.
    pub(crate) fn warn(&self, msg: &str) {
        let msg = warning(msg);
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{msg}")),
            None => eprintln!("{msg}"),
        }
    }

    /// Time since the command started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A warning as printed: control characters escaped, newlines kept.
fn warning(msg: &str) -> String {
    format!("warning: {}", terminal::text(msg))
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Test-only fault injection (documented in docs/ci.md): with
/// `DEVAIPOD_TEST_PAUSE_AT=STEP`, devaipod says `paused at STEP` on stderr and stops
/// itself (SIGSTOP) there, so a test can signal or kill it at a known step. The steps:
/// of `up`, `pull` and `build` (before each), `objects` (volumes, pod and secrets made),
/// `containers` (made, not started), `started` (the pod started), `copied` (the repo
/// copied in), `lifecycle` (before each lifecycle step, `start`'s postStart too); of
/// `start`, `start` (the pod started); of `review`, `fetch` (the bundle made, before
/// `git fetch`); of `delete`, `removing` (before a workspace's removal).
///
/// It names the thread that stops (`thread TID`): a signal meant to arrive "at" the step
/// must be sent to that thread (tgkill). One sent to the process may be taken by any of
/// its threads after SIGCONT, and its handler may then run only after this thread has
/// gone on past the step's cancellation check; one sent to this thread is handled
/// before `raise` returns here.
pub(crate) fn pause_point(step: &str) {
    if std::env::var("DEVAIPOD_TEST_PAUSE_AT").as_deref() == Ok(step) {
        let tid = nix::unistd::gettid();
        eprintln!("devaipod: paused at {step} (DEVAIPOD_TEST_PAUSE_AT, thread {tid})");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_show_control_characters_escaped() {
        // A devcontainer.json property name quoted in a warning.
        let w = warning("property \"x\u{1b}]0;pwned\u{7}\u{202e}\" is not known\nsecond line");
        assert_eq!(
            w,
            "warning: property \"x\\x1b]0;pwned\\x07\\u{202e}\" is not known\nsecond line"
        );
    }
}
