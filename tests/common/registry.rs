//! The registry tests' two OCI registries on loopback (tests/registry/registry.sh, set up
//! as root by `just registry` before the real-Podman legs): their ports and names, the
//! image references a test's config names, the test credentials, tags made per test, what
//! registry A was asked for (its log), and guards that remove what a test pulled. The
//! script's header describes the same layout: keep the two in step ([`Registry::require`]
//! checks what the script wrote).
//!
//! A (plain HTTP, no authentication) and B (TLS from a test CA, htpasswd) serve one
//! storage: `dvpt/base:latest` is root's base image. Each engine user has its own
//! Podman configuration, in the place that engine reads it: root's in /etc/containers,
//! a rootless user's in ~/.config/containers. Root's names the registries 127.0.0.1, a
//! user's names them localhost, so that a rootless pull that reaches A as localhost (A's
//! log shows the Host) went through the user's own drop-in.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::pod::{image_store_lock, podman};

/// Where the script keeps its files.
pub const RUN_DIR: &str = "/run/dvpt-registry";
/// Written last by `registry.sh up`: what listens where.
pub const READY_FILE: &str = "/run/dvpt-registry/ready";
/// The PEM of the test CA that signed B's certificate.
pub const CA_FILE: &str = "/run/dvpt-registry/ca.pem";
/// Registry A's log: one JSON object per request (`http.request.host`, `.uri`, ...).
pub const LOG_A: &str = "/run/dvpt-registry/log/a.log";
/// Registry A: plain HTTP, no authentication, on 127.0.0.1.
pub const PORT_A: u16 = 5701;
/// Registry B: TLS and a password, on 127.0.0.1.
pub const PORT_B: u16 = 5702;
/// The repository of the base image in both registries.
pub const REPO: &str = "dvpt/base";
/// The tag `up` pushed (root's localhost/devaipod-base:latest).
pub const PUSHED_TAG: &str = "latest";
/// The made-up name the drop-in rewrites to A's `dvpt`.
pub const REWRITE_PREFIX: &str = "registry.devaipod.test/dvpt";
/// A registry the drop-in blocks.
pub const BLOCKED: &str = "blocked.devaipod.test";
/// B's user name (its password is [`Registry::password`]).
pub const B_USER: &str = "dvpt";
/// The drop-in's file name, in each engine's registries.conf.d.
pub const DROPIN_NAME: &str = "50-devaipod-test-registry.conf";

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Proof that the registries are up and the calling user's engine is configured for
/// them; its methods name what the tests use. Holding it is the test's turn: registry
/// tests take turns, because every tag they add is the same manifest, and adding one
/// rewrites that manifest's revision link in the shared storage while another test's
/// pull may read it through the other registry process ("invalid checksum digest
/// format", a 500, seen in CI).
pub struct Registry {
    /// How this engine's configuration names the registries: 127.0.0.1 or localhost.
    host: &'static str,
    /// /run/dvpt-registry/auth/USER.
    auth_dir: PathBuf,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The registry tests' turns (see [`Registry`]).
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    /// Panics, naming the command to run, when the registries are not up, do not
    /// answer, or the calling user's Podman configuration for them is missing.
    #[track_caller]
    pub fn require() -> Self {
        let fix = "set them up as root with `just registry` (or `sudo tests/registry/registry.sh up USER`)";
        let ready = std::fs::read_to_string(READY_FILE).unwrap_or_else(|e| {
            panic!("the test registries are not up ({READY_FILE}: {e}): {fix}")
        });
        let want = format!("a 127.0.0.1:{PORT_A}\nb 127.0.0.1:{PORT_B}\n");
        assert_eq!(
            ready, want,
            "{READY_FILE} is not what tests/common/registry.rs expects: renew the registries \
             with `sudo tests/registry/registry.sh down` and `just registry` from this checkout \
             (or bring tests/registry/registry.sh and tests/common/registry.rs in step)"
        );
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("uid {uid} has no user name (passwd)"))
            .name;
        let (host, config_dir) = if uid.is_root() {
            ("127.0.0.1", PathBuf::from("/etc/containers"))
        } else {
            let home = std::env::var_os("HOME")
                .unwrap_or_else(|| panic!("HOME is not set: rootless Podman reads ~/.config"));
            ("localhost", PathBuf::from(home).join(".config/containers"))
        };
        let configure = format!(
            "the engine user {user} is not configured for the test registries: run \
             `sudo tests/registry/registry.sh up {user}` (`just registry` configures root and \
             the rootless test user)"
        );
        let auth_dir = PathBuf::from(RUN_DIR).join("auth").join(&user);
        let dropin = config_dir.join("registries.conf.d").join(DROPIN_NAME);
        let ca = config_dir.join(format!("certs.d/{host}:{PORT_B}/ca.crt"));
        for file in [
            dropin.clone(),
            ca,
            auth_dir.join("good.json"),
            auth_dir.join("wrong.json"),
            auth_dir.join("password"),
        ] {
            if let Err(e) = std::fs::File::open(&file) {
                panic!("{configure} ({}: {e})", file.display());
            }
        }
        let text = std::fs::read_to_string(&dropin).expect("read the drop-in");
        let location = format!("location = \"{host}:{PORT_A}/dvpt\"");
        assert!(
            text.contains(&location),
            "{} does not rewrite {REWRITE_PREFIX} to {host}:{PORT_A}/dvpt: {configure}",
            dropin.display()
        );
        let registry = Self {
            host,
            auth_dir,
            _turn: turn(),
        };
        let (status, _, _) = http_a("GET", "/v2/", &[], b"").unwrap_or_else(|e| {
            panic!("registry A (127.0.0.1:{PORT_A}) does not answer: {e}; {fix}")
        });
        assert_eq!(status, 200, "registry A's /v2/ answered {status}; {fix}");
        registry
    }

    /// Registry A as this engine's configuration names it (`HOST:5701`).
    pub fn a(&self) -> String {
        format!("{}:{PORT_A}", self.host)
    }

    /// Registry B as this engine's configuration and auth.json name it (`HOST:5702`).
    pub fn b(&self) -> String {
        format!("{}:{PORT_B}", self.host)
    }

    /// Adds the tag `tag` to `dvpt/base` (the manifest of `latest` under a second name,
    /// through A's API; B serves the same storage), so that a test pulls a reference no
    /// other test or earlier run has in its store. `tag`: letters, digits, `.`, `_`, `-`
    /// (a [`super::pod::TestPod`]'s name is one).
    #[track_caller]
    pub fn tag(&self, tag: &str) -> String {
        assert!(
            !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "tag {tag:?}: use letters, digits, ., _ and -"
        );
        let latest = format!("/v2/{REPO}/manifests/{PUSHED_TAG}");
        let (status, content_type, manifest) =
            http_a("GET", &latest, &[("Accept", MANIFEST_TYPES)], b"")
                .unwrap_or_else(|e| panic!("registry A: GET {latest}: {e}"));
        assert_eq!(
            status,
            200,
            "registry A: GET {latest} answered {status}: {}",
            String::from_utf8_lossy(&manifest)
        );
        let content_type =
            content_type.unwrap_or_else(|| panic!("registry A: GET {latest}: no Content-Type"));
        let path = format!("/v2/{REPO}/manifests/{tag}");
        let (status, _, body) = http_a("PUT", &path, &[("Content-Type", &content_type)], &manifest)
            .unwrap_or_else(|e| panic!("registry A: PUT {path}: {e}"));
        assert_eq!(
            status,
            201,
            "registry A: PUT {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        tag.to_string()
    }

    /// A tag of `dvpt/base` made for this call ([`Registry::tag`]): `WORD-PID-NONCE`.
    #[track_caller]
    pub fn unique_tag(&self, word: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.tag(&format!("{word}-{}-{nanos:08x}", std::process::id()))
    }

    /// `registry.devaipod.test/dvpt/base:TAG`: the made-up name that this engine's
    /// drop-in rewrites to A.
    pub fn rewritten(&self, tag: &str) -> String {
        format!("{REWRITE_PREFIX}/base:{tag}")
    }

    /// `HOST:5702/dvpt/base:TAG` on B, which needs the password.
    pub fn on_b(&self, tag: &str) -> String {
        format!("{}/{REPO}:{tag}", self.b())
    }

    /// An image of the blocked registry.
    pub fn blocked(&self) -> String {
        format!("{BLOCKED}/{REPO}:{PUSHED_TAG}")
    }

    /// An auth.json (for REGISTRY_AUTH_FILE) with B's user and password.
    pub fn good_auth(&self) -> PathBuf {
        self.auth_dir.join("good.json")
    }

    /// The same with a wrong password.
    pub fn wrong_auth(&self) -> PathBuf {
        self.auth_dir.join("wrong.json")
    }

    /// B's password: the sentinel that must appear in no output, inspect or argv.
    #[track_caller]
    pub fn password(&self) -> String {
        read_secret(&self.auth_dir.join("password"))
    }

    /// The wrong password of [`Registry::wrong_auth`].
    #[track_caller]
    pub fn wrong_password(&self) -> String {
        auth_password(&self.wrong_auth())
    }

    /// The `auth` value of [`Registry::good_auth`] (base64 of `USER:PASSWORD`): a
    /// sentinel too.
    #[track_caller]
    pub fn good_token(&self) -> String {
        auth_token(&self.good_auth())
    }

    /// Every request registry A has logged for the manifest `dvpt/base:TAG` (a pull's,
    /// not [`Registry::tag`]'s PUT: GET and HEAD only), oldest first.
    #[track_caller]
    pub fn manifest_requests(&self, tag: &str) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(LOG_A)
            .unwrap_or_else(|e| panic!("reading registry A's log {LOG_A}: {e}"));
        let uri = format!("/v2/{REPO}/manifests/{tag}");
        parse_log(&text)
            .into_iter()
            .filter(|r| r.uri == uri && (r.method == "GET" || r.method == "HEAD"))
            .collect()
    }
}

impl Registry {
    /// Every request registry A has logged whose URI starts with `/v2/REPOSITORY/`
    /// (any method), oldest first.
    #[track_caller]
    pub fn requests_for(&self, repository: &str) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(LOG_A)
            .unwrap_or_else(|e| panic!("reading registry A's log {LOG_A}: {e}"));
        let prefix = format!("/v2/{repository}/");
        parse_log(&text)
            .into_iter()
            .filter(|r| r.uri.starts_with(&prefix))
            .collect()
    }

    /// Sends registry A one request for `/v2/dvpt/marker-WORD/manifests/none` and waits
    /// until A's log shows it: every request completed before this call is logged by
    /// then (A logs each request as it completes, in order).
    #[track_caller]
    pub fn mark_log(&self, word: &str) {
        let uri = format!("/v2/dvpt/marker-{word}/manifests/none");
        let (status, _, _) = http_a("GET", &uri, &[("Accept", MANIFEST_TYPES)], b"")
            .unwrap_or_else(|e| panic!("registry A: GET {uri}: {e}"));
        assert_eq!(status, 404, "registry A: GET {uri}");
        super::wait_until(
            &format!("registry A logged {uri}"),
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(LOG_A)
                    .map(|t| parse_log(&t).iter().any(|r| r.uri == uri))
                    .unwrap_or(false)
            },
        );
    }
}

/// One request registry A logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The Host header: which name of A the client used.
    pub host: String,
    pub method: String,
    pub uri: String,
    pub status: u16,
}

/// An image a test pulled (or had devaipod pull or build), removed when dropped (kept
/// with DEVAIPOD_TEST_KEEP=1). It takes the image-store lock to remove it (a build's
/// cache lookup fails when an image goes at that moment), so drop it after releasing
/// that lock.
pub struct Pulled(String);

impl Pulled {
    pub fn new(image: impl Into<String>) -> Self {
        Self(image.into())
    }
}

impl Drop for Pulled {
    fn drop(&mut self) {
        if std::env::var_os("DEVAIPOD_TEST_KEEP").is_some() {
            return;
        }
        let _images = image_store_lock();
        // A name the image shares with others (the base image's) only goes away: `rm`
        // of one of several names untags.
        let _ = podman(&["image", "rm", "-f", &self.0]);
    }
}

/// Whether `image` (a reference) is in the engine's store.
pub fn image_exists(image: &str) -> bool {
    podman(&["image", "exists", image]).status.success()
}

/// Fails when `text` (what `what` printed or showed) contains any of `secrets`; the
/// message shows where, with the secret itself replaced by `<SECRET>`.
#[track_caller]
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty(), "an empty sentinel proves nothing");
        if let Some(at) = text.find(secret) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(80)
                .map_or(0, |(i, _)| i);
            let end = (at + secret.len() + 80).min(text.len());
            let end = (end..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            let context = text[start..end].replace(secret, "<SECRET>");
            panic!("a registry credential appears in {what}: ...{context}...");
        }
    }
}

/// Fails when a file under `dir` (recursively; absent is fine) contains any of `secrets`.
#[track_caller]
pub fn assert_no_secret_in_files(dir: &Path, secrets: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            assert_no_secret_in_files(&path, secrets);
        } else if kind.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            assert_no_secret(
                &path.display().to_string(),
                &String::from_utf8_lossy(&bytes),
                secrets,
            );
        }
    }
}

/// Watches every process's command line (and, where readable, environment) while it
/// lives, collecting those that contain a secret. Sampling: a process shorter than a
/// scan can slip through, so this backs up, not replaces, the output and inspect checks.
pub struct ArgvWatch {
    stop: Arc<AtomicBool>,
    scans: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ArgvWatch {
    pub fn start(secrets: &[&str]) -> Self {
        let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        assert!(secrets.iter().all(|s| !s.is_empty()), "empty sentinel");
        let stop = Arc::new(AtomicBool::new(false));
        let scans = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), scans.clone());
        let thread = std::thread::spawn(move || {
            let mut hits = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                scan_processes(&secrets, &mut hits);
                count.fetch_add(1, Ordering::Relaxed);
                // A sampling rate, not a wait for anything: leave the cores to the test.
                std::thread::sleep(Duration::from_millis(10));
            }
            hits
        });
        Self {
            stop,
            scans,
            thread: Some(thread),
        }
    }

    /// How many scans of /proc have finished.
    pub fn scans(&self) -> usize {
        self.scans.load(Ordering::Relaxed)
    }

    /// Stops watching; fails when any process showed a secret.
    #[track_caller]
    pub fn assert_clean(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let hits = self
            .thread
            .take()
            .expect("watching")
            .join()
            .expect("the watch thread");
        assert!(self.scans() > 0, "the process watch never scanned");
        assert!(
            hits.is_empty(),
            "a registry credential appeared in a process's command line or environment: {hits:?}"
        );
    }
}

impl Drop for ArgvWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One scan of /proc: records `PID (COMM) cmdline|environ` of each process whose
/// command line or environment contains a secret.
fn scan_processes(secrets: &[Vec<u8>], hits: &mut Vec<String>) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        for what in ["cmdline", "environ"] {
            // Another user's environment is not readable; a process may end meanwhile.
            let Ok(bytes) = std::fs::read(entry.path().join(what)) else {
                continue;
            };
            if secrets.iter().any(|s| contains(&bytes, s)) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let hit = format!("{pid} ({}) {what}", comm.trim());
                if !hits.contains(&hit) {
                    hits.push(hit);
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[track_caller]
fn read_secret(path: &Path) -> String {
    let s =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let s = s.trim().to_string();
    assert!(!s.is_empty(), "{} is empty", path.display());
    s
}

/// The one `auth` value of an auth.json.
#[track_caller]
fn auth_token(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let auths = v["auths"]
        .as_object()
        .unwrap_or_else(|| panic!("{} has no \"auths\"", path.display()));
    let token = auths.values().find_map(|a| a["auth"].as_str());
    token
        .unwrap_or_else(|| panic!("{} has no \"auth\"", path.display()))
        .to_string()
}

/// The password of an auth.json's one `auth` value.
#[track_caller]
fn auth_password(path: &Path) -> String {
    use base64::Engine as _;
    let token = auth_token(path);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&token)
        .unwrap_or_else(|e| panic!("{}: \"auth\" is not base64: {e}", path.display()));
    let pair = String::from_utf8(bytes).expect("auth is UTF-8");
    let (_, password) = pair
        .split_once(':')
        .unwrap_or_else(|| panic!("{}: \"auth\" is not USER:PASSWORD", path.display()));
    password.to_string()
}

/// One HTTP/1.1 request to registry A (plain HTTP on loopback): status, Content-Type,
/// body.
fn http_a(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], PORT_A));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("sending: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("reading the answer: {e}"))?;
    parse_response(&response)
}

/// Status, Content-Type and body of a whole HTTP/1.1 response (Content-Length framing
/// or the end of the connection; not chunked).
fn parse_response(response: &[u8]) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", response.len()))?;
    let head = String::from_utf8_lossy(&response[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-type" => content_type = Some(v.to_string()),
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" if v.eq_ignore_ascii_case("chunked") => {
                return Err("a chunked answer (not expected from the registry)".into());
            }
            _ => {}
        }
    }
    let mut body = response[end + 4..].to_vec();
    if let Some(n) = length {
        if body.len() < n {
            return Err(format!("the body ended after {} of {n} bytes", body.len()));
        }
        body.truncate(n);
    }
    Ok((status, content_type, body))
}

/// The registry's JSON log lines that record a completed request (other lines, and
/// lines still being written, are left out).
fn parse_log(text: &str) -> Vec<LoggedRequest> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let request = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Some(LoggedRequest {
            host: s("http.request.host")?,
            method: s("http.request.method")?,
            uri: s("http.request.uri")?,
            status: u16::try_from(v["http.response.status"].as_u64()?).ok()?,
        })
    };
    complete.lines().filter_map(request).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_of_completed_requests_are_read() {
        let log = concat!(
            r#"{"level":"info","msg":"listening on 127.0.0.1:5701"}"#,
            "\n",
            r#"{"http.request.host":"localhost:5701","http.request.method":"GET","http.request.uri":"/v2/dvpt/base/manifests/t1","http.response.status":200,"msg":"response completed"}"#,
            "\n",
            r#"{"http.request.host":"127.0.0.1:5701","http.request.method":"GET","http.request.uri":"/v2/"#,
        );
        let got = parse_log(log);
        assert_eq!(
            got,
            [LoggedRequest {
                host: "localhost:5701".into(),
                method: "GET".into(),
                uri: "/v2/dvpt/base/manifests/t1".into(),
                status: 200,
            }]
        );
    }

    #[test]
    fn responses_are_framed_by_content_length() {
        let r = b"HTTP/1.1 201 Created\r\nContent-Type: x/y\r\nContent-Length: 2\r\n\r\nokEXTRA";
        assert_eq!(
            parse_response(r),
            Ok((201, Some("x/y".into()), b"ok".to_vec()))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    }

    /// The watch sees a secret in a child's command line and in another's environment.
    #[test]
    fn the_process_watch_sees_a_secret_in_argv_and_environ() {
        let secret = format!("watch-probe-{}", std::process::id());
        let spawn = |cmd: &mut std::process::Command| cmd.spawn().expect("sleep runs");
        // `read`, not a child: killing the shell ends all of it.
        let mut in_argv = spawn(
            std::process::Command::new("sh")
                .args(["-c", "read line", "sh", &secret])
                .stdin(std::process::Stdio::piped()),
        );
        let mut in_env = spawn(
            std::process::Command::new("sleep")
                .arg("30")
                .env("PROBE", &secret),
        );
        let watch = ArgvWatch::start(&[&secret]);
        let seen = watch.scans() + 2;
        crate::common::wait_until("the watch scanned twice", Duration::from_secs(10), || {
            watch.scans() >= seen
        });
        for child in [&mut in_argv, &mut in_env] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let failed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| watch.assert_clean()));
        let message = failed.expect_err("the watch saw nothing");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            message.contains(&format!("{} (sleep) environ", in_env.id())),
            "{message}"
        );
        assert!(
            message.contains(&format!("{} (sh) cmdline", in_argv.id())),
            "{message}"
        );
        assert!(
            !message.contains(&secret),
            "the report shows the secret: {message}"
        );
    }

    #[test]
    #[should_panic(expected = "...user <SECRET> here...")]
    fn a_secret_in_text_is_reported_without_it() {
        assert_no_secret("x", "user s3cr3t here", &["s3cr3t"]);
    }
}
