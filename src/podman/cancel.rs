//! Cancellation: set when the user asked devaipod to stop (Ctrl-C, SIGTERM). Its own
//! module because applying a plan and waiting for readiness both watch it.

use anyhow::Result;

/// Set when the user asked devaipod to stop (Ctrl-C, SIGTERM).
pub(crate) type Cancel = tokio::sync::watch::Receiver<bool>;

/// Runs `fut` unless cancellation is requested first.
pub(crate) async fn cancellable<T>(
    cancel: &mut Cancel,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if *cancel.borrow() {
        return Err(crate::Interrupted.into());
    }
    tokio::select! {
        r = fut => r,
        _ = cancel.wait_for(|c| *c) => Err(crate::Interrupted.into()),
    }
}
