//! Cancellation: set when the user asked devaipod to stop (Ctrl-C, SIGTERM). Its own
//! module because applying a plan, waiting for readiness and running jobs all watch it.
//!
//! One channel per process: [`on_signals`] turns SIGINT and SIGTERM into a request on
//! it (once; later calls only subscribe), and [`current`] subscribes without catching
//! signals, so code deep down (a job reading the agent's clone) stops and tidies up
//! when a command that catches them is interrupted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::sync::watch;

/// Set when the user asked devaipod to stop (Ctrl-C, SIGTERM).
pub(crate) type Cancel = watch::Receiver<bool>;

/// The process's cancellation channel; its sender lives as long as the process, so a
/// receiver's `wait_for` only ever ends with a request.
fn channel() -> &'static watch::Sender<bool> {
    static CHANNEL: OnceLock<watch::Sender<bool>> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(false).0)
}

/// Whether signals are caught (then a signal is a request, not the end of devaipod).
static CATCHING: AtomicBool = AtomicBool::new(false);

/// A receiver of the process's cancellation requests (none unless [`on_signals`] ran).
pub(crate) fn current() -> Cancel {
    channel().subscribe()
}

/// Set by the signal handler itself, before any task runs: a check right after a
/// signal sees it (the channel is set a moment later, by a task).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether the user asked devaipod to stop.
pub(crate) fn requested() -> bool {
    SIGNALLED.load(Ordering::SeqCst) || *channel().borrow()
}

/// Registers the handler's part: an atomic store, nothing else.
#[allow(unsafe_code)]
fn flag_on(signal: i32) -> std::io::Result<()> {
    // SAFETY: the action runs in a signal handler and only stores to an atomic, which
    // is async-signal-safe; it allocates, locks and calls nothing.
    unsafe { signal_hook_registry::register(signal, || SIGNALLED.store(true, Ordering::SeqCst)) }
        .map(|_| ())
}

/// Asks everything watching [`current`] to stop (what a signal does).
pub(crate) fn request() {
    channel().send_replace(true);
}

/// From now on Ctrl-C (which a terminal sends to devaipod's whole process group) and
/// SIGTERM ask devaipod to stop and tidy up rather than end it; a second signal while it
/// tidies up changes nothing. Must run inside the runtime.
pub(crate) fn on_signals() -> Cancel {
    if !CATCHING.swap(true, Ordering::SeqCst) {
        // Registered here, before any await: a signal from now on is caught.
        for signal in [nix::libc::SIGINT, nix::libc::SIGTERM] {
            if let Err(e) = flag_on(signal) {
                tracing::warn!("cannot catch signal {signal} ({e})");
            }
        }
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    eprintln!("devaipod: interrupted, cleaning up (this takes a moment)");
                    request();
                    // Later signals are caught and dropped until devaipod exits.
                    loop {
                        tokio::select! {
                            _ = int.recv() => {}
                            _ = term.recv() => {}
                        }
                    }
                });
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(
                    "cannot catch SIGINT/SIGTERM ({e}): an interrupt ends devaipod at once"
                );
            }
        }
    }
    current()
}

/// Runs `fut` unless cancellation is requested first.
pub(crate) async fn cancellable<T>(
    cancel: &mut Cancel,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if *cancel.borrow() || SIGNALLED.load(Ordering::SeqCst) {
        return Err(crate::Interrupted.into());
    }
    tokio::select! {
        r = fut => r,
        _ = cancel.wait_for(|c| *c) => Err(crate::Interrupted.into()),
    }
}

/// `Err(Interrupted)` if cancellation was requested: a check between steps that must
/// not be cut in the middle.
pub(crate) fn check() -> Result<()> {
    if requested() {
        return Err(crate::Interrupted.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The process's own channel is left alone here (other tests share the process):
    // signals and `request` are exercised by tests/podman/interrupt.rs.
    #[tokio::test]
    async fn a_request_cancels_what_runs_and_what_starts_after_it() {
        let (tx, rx) = watch::channel(false);
        let (mut a, mut b) = (rx.clone(), rx);
        let slow = cancellable(&mut a, async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let asker = async {
            tokio::task::yield_now().await;
            tx.send_replace(true);
        };
        let (r, ()) = tokio::join!(slow, asker);
        assert!(r.expect_err("cancelled").is::<crate::Interrupted>());
        let late = cancellable(&mut b, async { Ok(1) }).await;
        assert!(late.is_err(), "a request made before the start wins");
        assert!(!requested(), "the process's channel is untouched");
        assert!(check().is_ok());
    }
}
