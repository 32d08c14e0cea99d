//! The accept loop the proxy and the gator's relay share: at most a number of
//! connections at once (more wait to be accepted), each served on its own task, and an
//! accept that fails (out of file descriptors and the like) said and retried shortly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Serves each connection of `listener` with `connection`, `max` at once; returns
/// only if its slots are closed, which nothing does.
pub(crate) async fn accept_each<F, Fut>(
    listener: &TcpListener,
    max: usize,
    on_error: impl Fn(&std::io::Error),
    connection: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                on_error(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = connection(stream);
        tokio::spawn(async move {
            let _slot = slot;
            served.await;
        });
    }
}
