//! A container's output (stdout and stderr, demultiplexed): as a stream for `logs`, or
//! its last lines for error messages.

use anyhow::Result;
use containers_api::conn::tty::{self, TtyChunk};
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::{API_PREFIX, Engine, conn_error, encode};

/// One piece of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

impl LogChunk {
    /// The bytes, whichever stream they came from.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            LogChunk::Stdout(b) | LogChunk::Stderr(b) => b,
        }
    }
}

/// Which part of the output to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogOptions {
    /// Keep streaming new output until the container stops (or the stream is dropped).
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
}

/// The query of a logs request.
fn logs_query(opts: LogOptions) -> String {
    let mut q = format!("follow={}&stderr=true&stdout=true", opts.follow);
    if let Some(n) = opts.tail {
        q.push_str(&format!("&tail={n}"));
    }
    q
}

impl Engine {
    /// A container's output as it comes, stdout and stderr kept apart.
    pub(crate) fn logs(
        &self,
        container: &str,
        opts: LogOptions,
    ) -> impl Stream<Item = Result<LogChunk>> + '_ {
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/logs?{}",
            encode(container),
            logs_query(opts)
        );
        let bytes = Box::pin(self.raw.get_stream(ep));
        Box::pin(tty::decode(bytes).map(|chunk| match chunk {
            Ok(TtyChunk::StdErr(b)) => Ok(LogChunk::Stderr(b)),
            Ok(other) => Ok(LogChunk::Stdout(other.to_vec())),
            Err(e) => Err(conn_error(e)),
        }))
    }

    /// The last `tail` lines of a container's output (stdout and stderr).
    pub(crate) async fn logs_tail(&self, container: &str, tail: usize) -> Result<String> {
        let opts = LogOptions {
            follow: false,
            tail: Some(tail),
        };
        let chunks: Vec<LogChunk> = self.logs(container, opts).try_collect().await?;
        let out: Vec<u8> = chunks.iter().flat_map(|c| c.bytes().to_vec()).collect();
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_ask_for_both_streams() {
        assert_eq!(
            logs_query(LogOptions::default()),
            "follow=false&stderr=true&stdout=true"
        );
        let q = logs_query(LogOptions {
            follow: true,
            tail: Some(20),
        });
        assert_eq!(q, "follow=true&stderr=true&stdout=true&tail=20");
    }
}
