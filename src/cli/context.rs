//! What every command shares: the engine connection. It is made at most once, on the
//! first command step that needs it (so `config`, `completions` and the checks that come
//! before any engine call never connect), and shut down once, by [`super::run`], on
//! every way a command can end.

use anyhow::Result;

use crate::podman::Engine;

/// The shared state of one devaipod invocation.
#[derive(Debug, Default)]
pub(crate) struct Context {
    engine: tokio::sync::OnceCell<Engine>,
}

impl Context {
    /// A context that has not connected yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The engine, connected on first use; a failed connection is tried again on the
    /// next call.
    pub(crate) async fn engine(&self) -> Result<&Engine> {
        self.engine.get_or_try_init(Engine::connect).await
    }

    /// Stops the private Podman service, if this invocation started one (idempotent).
    pub(crate) fn shutdown(&mut self) {
        if let Some(engine) = self.engine.get_mut() {
            engine.shutdown();
        }
    }
}
