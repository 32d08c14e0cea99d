//! The request layer under [`Engine`]: the pinned libpod API prefix, one timeout for
//! every call, percent-encoding of path parts, and Podman's HTTP answers mapped once
//! into [`EngineError`] so that callers branch on a kind, never on a status code.

use std::time::Duration;

use anyhow::{Result, anyhow};
use containers_api::conn::{self, Payload, hyper};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Engine;

/// The libpod API version prefix we speak (podman-api's own; answered by 4.x and 5.1+,
/// which keeps the 4.x shapes for it).
pub(crate) const API_PREFIX: &str = "/v4.3.1";
/// Every engine request gets this much time; podman answers in milliseconds normally.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors callers branch on, built from Podman's HTTP status in [`EngineError::from_status`]
/// alone. Each keeps Podman's message (with a hint for known host settings).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    /// 404: the object does not exist.
    #[error("podman: {message} (HTTP 404)")]
    NotFound { message: String },
    /// 409: the object is in a state that forbids the call, or the name is taken.
    #[error("podman: {message} (HTTP 409)")]
    Conflict { message: String },
    /// 304: nothing to do (a pod already started or stopped).
    #[error("podman: {message} (HTTP 304)")]
    NotModified { message: String },
    /// Any other failure Podman reported.
    #[error("podman: {message} (HTTP {code})")]
    Api { code: u16, message: String },
}

impl EngineError {
    /// The one place that maps an HTTP status to a kind.
    pub(crate) fn from_status(code: u16, message: String) -> Self {
        match code {
            404 => Self::NotFound { message },
            409 => Self::Conflict { message },
            304 => Self::NotModified { message },
            code => Self::Api { code, message },
        }
    }

    /// The engine error somewhere in `e`'s chain, if there is one.
    pub(crate) fn of(e: &anyhow::Error) -> Option<&EngineError> {
        e.chain().find_map(|c| c.downcast_ref::<EngineError>())
    }
}

/// Whether `e` says the object does not exist.
pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(EngineError::of(e), Some(EngineError::NotFound { .. }))
}

/// Whether `e` says the object is in use (Podman's 409).
pub(crate) fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(EngineError::of(e), Some(EngineError::Conflict { .. }))
}

/// Whether `e` says there was nothing to do.
pub(crate) fn is_not_modified(e: &anyhow::Error) -> bool {
    matches!(EngineError::of(e), Some(EngineError::NotModified { .. }))
}

/// Converts a podman-api error into our own, keeping Podman's message and dropping raw
/// dumps.
pub(crate) fn api_error(e: podman_api::Error) -> anyhow::Error {
    match e {
        podman_api::Error::Fault { code, message } => fault(code.as_u16(), message),
        podman_api::Error::Error(conn::Error::Fault { code, message }) => {
            fault(code.as_u16(), message)
        }
        podman_api::Error::Error(other) => conn_error(other),
        other => anyhow!("podman API: {other}"),
    }
}

/// Converts a raw-client error into our own.
pub(crate) fn conn_error(e: conn::Error) -> anyhow::Error {
    match e {
        conn::Error::Fault { code, message } => fault(code.as_u16(), message),
        other if lost_service(&other) => anyhow!(
            "the podman service stopped answering ({other}); is it still running? `podman info` tells"
        ),
        other => anyhow!("podman API: {other}"),
    }
}

/// Whether `e` says the service is gone (its socket refuses, or it hung up midway)
/// rather than that it answered with an error.
fn lost_service(e: &conn::Error) -> bool {
    use std::io::ErrorKind;
    let io_lost = |e: &std::io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::NotFound
                | ErrorKind::UnexpectedEof
        )
    };
    match e {
        conn::Error::Hyper(h) => {
            if h.is_connect() || h.is_closed() || h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
            // hyper's "connection error" is an I/O error below it (a reset).
            let mut source = std::error::Error::source(h);
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    return io_lost(io);
                }
                source = e.source();
            }
            false
        }
        conn::Error::IO(io) => io_lost(io),
        _ => false,
    }
}

/// The error for an engine's failure status and message, with a hint where one is known.
pub(crate) fn fault(code: u16, message: String) -> anyhow::Error {
    let mut message = message.trim().to_string();
    if let Some(hint) = hint_for(&message) {
        message = format!("{message}\nhint: {hint}");
    }
    anyhow::Error::new(EngineError::from_status(code, message))
}

/// A hint for engine errors whose cause is a known host setting.
pub(crate) fn hint_for(message: &str) -> Option<&'static str> {
    if message.contains("error setting rlimit") {
        return Some(
            "this host cannot apply Podman's default ulimits (typical of hybrid-cgroup hosts): set `default_ulimits = []` under [containers] in containers.conf, e.g. `export CONTAINERS_CONF=$PWD/containers/hybrid-cgroups.conf` from the devaipod checkout; Podman 5's builds raise nofile and nproc even then, so for builds name the limits you have: `default_ulimits = [\"nofile=N:N\", \"nproc=M:M\"]` with N from `ulimit -Hn` and M from `ulimit -Hu`",
        );
    }
    if message.contains("cgroups in hybrid mode not supported") {
        return Some(
            "crun does not support hybrid cgroups: use runc (`runtime = \"runc\"` under [engine] in containers.conf, e.g. `export CONTAINERS_CONF=$PWD/containers/hybrid-cgroups.conf`)",
        );
    }
    None
}

/// libpod's error body: `message`, or the `Errs` list of pod operations.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    message: Option<String>,
    #[serde(
        rename = "Errs",
        default,
        deserialize_with = "super::inspect::null_as_empty"
    )]
    errs: Vec<String>,
}

/// libpod's error text from an error body.
fn error_message(body: &[u8]) -> Option<String> {
    let v: ErrorBody = serde_json::from_slice(body).ok()?;
    if let Some(m) = v.message {
        return Some(m);
    }
    (!v.errs.is_empty()).then(|| v.errs.join("; "))
}

/// The future [`validate`] returns.
type Validated = std::pin::Pin<
    Box<dyn std::future::Future<Output = conn::Result<hyper::Response<hyper::Body>>> + Send + Sync>,
>;

/// Maps non-2xx responses to `Fault` with libpod's `message` field.
pub(crate) fn validate(response: hyper::Response<hyper::Body>) -> Validated {
    Box::pin(async move {
        let status = response.status();
        if status.is_success() || status == hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let bytes = hyper::body::to_bytes(response.into_body()).await?;
        let message =
            error_message(&bytes).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(conn::Error::Fault {
            code: status,
            message,
        })
    })
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error for a request Podman did not answer within [`REQUEST_TIMEOUT`].
fn no_answer(method: &str, endpoint: &str) -> anyhow::Error {
    anyhow!(
        "Podman did not answer {method} {endpoint} in {}s; if `podman ps` hangs too, \
         `devaipod doctor` checks Podman's locks (objects that share a lock, after \
         /dev/shm was emptied, hang Podman until `podman system renumber`)",
        REQUEST_TIMEOUT.as_secs()
    )
}

/// The `Id` of a create answer.
#[derive(Debug, serde::Deserialize)]
struct Created {
    #[serde(rename = "Id", default)]
    id: String,
}

impl Engine {
    /// GET `endpoint` (below the API prefix), its JSON answer typed.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, endpoint: &str) -> Result<T> {
        let ep = format!("{API_PREFIX}{endpoint}");
        let text = tokio::time::timeout(REQUEST_TIMEOUT, self.raw.get_string(&ep))
            .await
            .map_err(|_| no_answer("GET", endpoint))?
            .map_err(conn_error)?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("reading Podman's answer to GET {endpoint}: {e}"))
    }

    /// POST `body` as JSON to `endpoint`; the answer's text. `&()` sends `null`.
    pub(crate) async fn post<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<String> {
        let ep = format!("{API_PREFIX}{endpoint}");
        let payload = Payload::Json(serde_json::to_string(body)?);
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raw.post_string(&ep, payload, None::<conn::Headers>),
        )
        .await
        .map_err(|_| no_answer("POST", endpoint))?
        .map_err(conn_error)
    }

    /// POST a create request; the new object's id.
    pub(crate) async fn post_create<B: Serialize + ?Sized>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<String> {
        let text = self.post(endpoint, body).await?;
        // An answer without an id is not an error: the object exists either way.
        Ok(serde_json::from_str::<Created>(&text)
            .map(|c| c.id)
            .unwrap_or_default())
    }

    async fn delete_req(&self, endpoint: &str) -> Result<()> {
        let ep = format!("{API_PREFIX}{endpoint}");
        tokio::time::timeout(REQUEST_TIMEOUT, self.raw.delete(&ep))
            .await
            .map_err(|_| no_answer("DELETE", endpoint))?
            .map_err(conn_error)?;
        Ok(())
    }

    /// DELETE that treats a missing object as done; `Ok(true)` if it existed.
    pub(crate) async fn delete_if_present(
        &self,
        endpoint: &str,
        what: impl Fn() -> String,
    ) -> Result<bool> {
        match self.delete_req(endpoint).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.context(what())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_errors_are_readable_and_hinted() {
        let body = br#"{"Errs": ["starting container a: error setting rlimit type 7", "b failed"], "Id": "x"}"#;
        let m = error_message(body).expect("message");
        assert_eq!(
            m,
            "starting container a: error setting rlimit type 7; b failed"
        );
        assert!(hint_for(&m).is_some_and(|h| h.contains("default_ulimits")));
        // A Podman 5 build's RUN step fails the same way; the hint names its fix too.
        let build = "error setting rlimits for ready process: error setting rlimit type 7: operation not permitted";
        assert!(hint_for(build).is_some_and(|h| h.contains("ulimit -Hn")));
        assert_eq!(
            error_message(br#"{"message": "no such pod"}"#).as_deref(),
            Some("no such pod")
        );
        assert_eq!(error_message(b"{}"), None);
        assert_eq!(error_message(br#"{"Errs": null}"#), None);
    }

    #[test]
    fn statuses_map_to_kinds_once() {
        let e = fault(404, "no such container".into());
        assert!(is_not_found(&e));
        assert!(!is_not_modified(&e));
        assert_eq!(format!("{e}"), "podman: no such container (HTTP 404)");
        assert!(is_not_modified(&fault(304, String::new())));
        assert!(matches!(
            EngineError::of(&fault(409, "in use".into())),
            Some(EngineError::Conflict { .. })
        ));
        let e = fault(500, "boom".into()).context("starting pod x");
        assert!(matches!(
            EngineError::of(&e),
            Some(EngineError::Api { code: 500, .. })
        ));
        assert_eq!(
            format!("{:#}", e),
            "starting pod x: podman: boom (HTTP 500)"
        );
    }

    #[test]
    fn encode_escapes_reserved() {
        assert_eq!(encode("localhost/x:latest"), "localhost%2Fx%3Alatest");
        assert_eq!(encode("/workspaces/a b"), "%2Fworkspaces%2Fa%20b");
    }
}
