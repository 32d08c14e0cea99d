//! Finding a Podman engine: `CONTAINER_HOST`, else the user's own Podman socket when a
//! service listens on it, else a private `podman system service` that lives exactly as
//! long as this devaipod process.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long the private service may idle before it exits by itself (a backstop: we stop
/// it on every exit path, and the parent-death signal covers a killed devaipod).
const SERVICE_IDLE_SECS: u32 = 60;
/// How long to wait for a spawned service's socket.
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Parses `CONTAINER_HOST`; only local unix sockets are supported.
pub(crate) fn parse_container_host(value: &str) -> Result<PathBuf> {
    if let Some(path) = value.strip_prefix("unix://") {
        if path.is_empty() {
            bail!(
                "CONTAINER_HOST={value:?} has no socket path (expected unix:///path/to/podman.sock)"
            );
        }
        return Ok(PathBuf::from(path));
    }
    bail!(
        "CONTAINER_HOST={value:?} is not supported: devaipod talks to a local Podman over a unix socket (unix:///path/to/podman.sock); unset CONTAINER_HOST to use the local Podman"
    )
}

/// The sockets a user's own Podman service listens on, most specific first.
pub(crate) fn default_sockets(euid: u32, xdg_runtime_dir: Option<&Path>) -> Vec<PathBuf> {
    if euid == 0 {
        return vec![PathBuf::from("/run/podman/podman.sock")];
    }
    let mut v = Vec::new();
    if let Some(dir) = xdg_runtime_dir {
        v.push(dir.join("podman/podman.sock"));
    }
    v.push(PathBuf::from(format!(
        "/run/user/{euid}/podman/podman.sock"
    )));
    // Podman's own fallback when there is no login session (no /run/user/UID).
    v.push(PathBuf::from(format!(
        "/tmp/podman-run-{euid}/podman/podman.sock"
    )));
    v.dedup();
    v
}

/// True when something accepts connections on the unix socket at `path`.
pub(crate) fn socket_listens(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Whether devaipod runs inside a toolbox container (it has /run/.toolboxenv): it then
/// must use the host's Podman, never one inside the container.
pub(crate) fn in_toolbox() -> bool {
    Path::new("/run/.toolboxenv").exists()
}

/// What to tell a toolbox user when no route to the host's Podman works.
pub(crate) fn toolbox_hint(runtime_dir: Option<&Path>) -> String {
    let sock = runtime_dir
        .map(|d| d.join("podman/podman.sock").display().to_string())
        .unwrap_or_else(|| "$XDG_RUNTIME_DIR/podman/podman.sock".into());
    format!(
        "devaipod runs inside a toolbox and uses the host's Podman, but nothing listens on {sock} and flatpak-spawn is not available: on the host run `systemctl --user enable --now podman.socket` (or `podman system service --time=0 unix://{sock} &`), then retry"
    )
}

/// Finds a program on PATH.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
}

/// Finds `podman` on PATH.
pub(crate) fn find_podman() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("podman");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "podman is not installed (not found on PATH): install Podman 4.3 or newer (Debian/Ubuntu: sudo apt-get install podman; Fedora: sudo dnf install podman), or set CONTAINER_HOST=unix:///path/to/podman.sock"
    )
}

/// A `podman system service` devaipod started for itself. Dropping it stops the service
/// and removes its private directory.
#[derive(Debug)]
pub(crate) struct PrivateService {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl PrivateService {
    /// Starts the service on a private socket and waits until it accepts connections.
    ///
    /// Call this from a thread that lives as long as devaipod (the main thread): the
    /// parent-death signal fires when the spawning *thread* exits.
    pub(crate) fn start(podman: &Path) -> Result<Self> {
        Self::start_with(&[podman.display().to_string()])
    }

    /// Like [`PrivateService::start`], with `podman` reached through a launcher (inside
    /// a toolbox: `flatpak-spawn --host podman`). The socket is in XDG_RUNTIME_DIR, which
    /// a toolbox shares with the host.
    pub(crate) fn start_with(podman_argv: &[String]) -> Result<Self> {
        let (podman, launcher_args) = podman_argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("no podman command"))?;
        let podman = Path::new(podman);
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("devaipod-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a private directory in {}", base.display()))?;
        let socket = dir.path().join("podman.sock");
        let log_path = dir.path().join("service.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(podman);
        cmd.args(launcher_args)
            .args(["system", "service", &format!("--time={SERVICE_IDLE_SECS}")])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a terminal Ctrl-C signals the foreground group, and
            // the service must outlive that signal until devaipod has cleaned up.
            .process_group(0);
        set_parent_death_signal(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} system service", podman.display()))?;
        let mut service = Self {
            child: Some(child),
            dir,
            socket,
        };
        service.wait_ready(&log_path)?;
        tracing::info!(
            socket = %service.socket.display(),
            pid = service.child.as_ref().map(Child::id),
            "started a private podman service"
        );
        Ok(service)
    }

    fn wait_ready(&mut self, log_path: &Path) -> Result<()> {
        let start = Instant::now();
        loop {
            if socket_listens(&self.socket) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                bail!(
                    "podman system service exited ({status}) before it was ready: {}\nis Podman set up for this user? try `podman info`",
                    crate::process::last_lines(&log, 5)
                );
            }
            if start.elapsed() > SERVICE_START_TIMEOUT {
                bail!(
                    "podman system service did not open its socket within {}s; try `podman info` to see what is wrong",
                    SERVICE_START_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the service and waits for it (idempotent).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = self.dir.path();
    }
}

impl Drop for PrivateService {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolbox_hint_says_what_to_enable_on_the_host() {
        let h = toolbox_hint(Some(Path::new("/run/user/1000")));
        assert!(h.contains("/run/user/1000/podman/podman.sock"), "{h}");
        assert!(
            h.contains("systemctl --user enable --now podman.socket"),
            "{h}"
        );
        assert!(h.contains("flatpak-spawn"), "{h}");
    }

    #[test]
    fn container_host_accepts_unix_only() {
        assert_eq!(
            parse_container_host("unix:///run/x.sock").ok(),
            Some(PathBuf::from("/run/x.sock"))
        );
        for bad in [
            "unix://",
            "tcp://1.2.3.4:80",
            "ssh://u@h/run/podman.sock",
            "/run/x.sock",
        ] {
            let e = parse_container_host(bad).expect_err(bad);
            assert!(format!("{e}").contains("CONTAINER_HOST"), "{e}");
        }
    }

    #[test]
    fn default_sockets_follow_uid_and_runtime_dir() {
        assert_eq!(
            default_sockets(0, None),
            vec![PathBuf::from("/run/podman/podman.sock")]
        );
        let v = default_sockets(1000, Some(Path::new("/run/user/1000")));
        assert_eq!(
            v,
            vec![
                PathBuf::from("/run/user/1000/podman/podman.sock"),
                PathBuf::from("/tmp/podman-run-1000/podman/podman.sock")
            ]
        );
        let v = default_sockets(1001, None);
        assert_eq!(v[0], PathBuf::from("/run/user/1001/podman/podman.sock"));
    }
}
