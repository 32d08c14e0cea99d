//! `devaipod doctor [--json]`: checks what `up` needs on this machine and says, for each
//! piece that is missing or wrong, how to fix it. Exit 1 when something `up` needs is
//! missing (a `fail`), 0 otherwise (`warn`s included).
//!
//! The host checks read files only (the user's subordinate id ranges, /dev/net/tun, the
//! runtime directory); the engine checks connect as `up` does, and the last runs the
//! bundled image's opencode in a container hardened like the agent, so that "ok" means
//! it really starts here. Nothing is left behind: the probe container is removed on
//! every way out, an interrupt included.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Context;
use crate::plan::BUNDLED_IMAGE;
use crate::terminal::line;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON
    #[arg(long)]
    pub json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    /// `up` works, with less than it could (a limit not enforced, say).
    Warn,
    /// `up` needs this and it is missing or wrong.
    Fail,
    /// Does not apply here (rootful, not in a toolbox), or could not be checked because
    /// an earlier check failed.
    Skip,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check: what it looked at, what it found, and the fix when it is not ok.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
    fn bad(
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The user doctor checks for: who runs devaipod.
#[derive(Debug, Clone)]
struct User {
    uid: u32,
    name: String,
}

fn current_user() -> User {
    let uid = nix::unistd::geteuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    User {
        uid: uid.as_raw(),
        name,
    }
}

pub(crate) async fn run(ctx: &Context, args: DoctorArgs) -> Result<ExitCode> {
    let user = current_user();
    let rootless = user.uid != 0;
    let mut checks = Vec::new();
    checks.push(podman_binary());
    if rootless {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        checks.push(runtime_dir(runtime.as_deref(), &user));
        for (name, file) in [("subuid", "/etc/subuid"), ("subgid", "/etc/subgid")] {
            let text = std::fs::read_to_string(file).ok();
            let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
            checks.push(subids(name, file, text.as_deref(), &nss, &user));
        }
        for tool in ["newuidmap", "newgidmap"] {
            checks.push(id_mapper(tool));
        }
        checks.push(tun(Path::new("/dev/net/tun")));
    } else {
        checks.push(Check::skip(
            "rootless",
            "running as root: Podman is rootful, so subordinate ids, newuidmap and /dev/net/tun are not needed",
        ));
    }
    checks.push(toolbox());
    checks.push(network_guard());
    let config = crate::config::load().map(|(c, _)| c.agent);
    checks.push(providers(&crate::inputs::host_env, config.as_ref().ok()));
    checks.extend(engine_checks(ctx, rootless).await);
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let out = serde_json::json!({ "ok": !failed, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(&checks));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The checks as text: one line each, the fix indented below what is not ok, and a
/// last line that says whether `up` can run.
pub(crate) fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        // A multi-line detail (an engine error with its hint) goes on indented lines.
        for (i, part) in c.detail.lines().enumerate() {
            let (word, name) = if i == 0 {
                (c.status.word(), c.name)
            } else {
                ("", "")
            };
            out.push_str(&format!("{word:<5} {name:<14} {}\n", line(part)));
        }
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<20} fix: {}\n", "", line(fix)));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&match (failed, warned) {
        (0, 0) => "everything `up` needs is here\n".to_string(),
        (0, w) => format!("`up` can run here; {w} warning(s) above\n"),
        (f, _) => format!("`up` cannot run here yet: {f} check(s) failed; fix them and run `devaipod doctor` again\n"),
    });
    out
}

fn podman_binary() -> Check {
    const NAME: &str = "podman";
    if let Ok(host) = std::env::var("CONTAINER_HOST") {
        return Check::skip(
            NAME,
            format!("CONTAINER_HOST={host}: devaipod uses that engine, not a local podman"),
        );
    }
    match crate::podman::connect::find_podman() {
        Ok(p) => Check::ok(NAME, p.display().to_string()),
        Err(e) => Check::bad(
            NAME,
            Status::Fail,
            "podman is not on PATH",
            format!("{e:#}"),
        ),
    }
}

/// XDG_RUNTIME_DIR: rootless Podman keeps its sockets and state there, devaipod its
/// locks. Unset or missing works (both fall back to /tmp), a foreign one does not.
fn runtime_dir(dir: Option<&Path>, user: &User) -> Check {
    const NAME: &str = "runtime-dir";
    let make = format!(
        "sudo loginctl enable-linger {} (a systemd login session makes it), or sudo install -d -m 0700 -o {} /run/user/{}, then export XDG_RUNTIME_DIR=/run/user/{}",
        user.name, user.name, user.uid, user.uid
    );
    let Some(dir) = dir else {
        return Check::bad(
            NAME,
            Status::Warn,
            "XDG_RUNTIME_DIR is not set: Podman and devaipod fall back to /tmp, where other users can see the names of their files",
            make,
        );
    };
    match std::fs::metadata(dir) {
        Err(_) => Check::bad(
            NAME,
            Status::Warn,
            format!(
                "XDG_RUNTIME_DIR={} does not exist: Podman and devaipod fall back to /tmp, where other users can see the names of their files, and a Podman socket of your login session is not found",
                dir.display()
            ),
            make,
        ),
        Ok(m) if !m.is_dir() => Check::bad(
            NAME,
            Status::Fail,
            format!("XDG_RUNTIME_DIR={} is not a directory", dir.display()),
            make,
        ),
        Ok(m) if m.uid() != user.uid => Check::bad(
            NAME,
            Status::Fail,
            format!(
                "XDG_RUNTIME_DIR={} belongs to uid {}, not to {} (uid {})",
                dir.display(),
                m.uid(),
                user.name,
                user.uid
            ),
            make,
        ),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Check::bad(
            NAME,
            Status::Warn,
            format!(
                "XDG_RUNTIME_DIR={} is open to others (mode {:o})",
                dir.display(),
                m.permissions().mode() & 0o777
            ),
            format!("chmod 0700 {}", dir.display()),
        ),
        Ok(_) => Check::ok(NAME, format!("{} (yours, 0700)", dir.display())),
    }
}

/// The least subordinate ids that hold a dev image's users (uid 1000 and the agent's
/// own) without Podman shrinking the mapping.
const SUBIDS_WANTED: u64 = 65536;

/// The user's range in /etc/subuid or /etc/subgid (`text`; `None` when unreadable).
/// Podman maps a container's uids onto it; without one a rootless container has a
/// single uid and an image with other owners fails to unpack.
fn subids(name: &'static str, file: &str, text: Option<&str>, nss: &str, user: &User) -> Check {
    let flag = if name == "subuid" {
        "--add-subuids"
    } else {
        "--add-subgids"
    };
    let fix = format!("sudo usermod {flag} 100000-165535 {}", user.name);
    let from_nss = nss
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("subid:"))
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "files");
    let uid = user.uid.to_string();
    let total: u64 = text
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, _start, count) = (f.next()?, f.next()?, f.next()?);
            (who == user.name || who == uid)
                .then(|| count.trim().parse::<u64>().ok())
                .flatten()
        })
        .sum();
    match (total, from_nss) {
        (0, Some(source)) => Check::skip(
            name,
            format!(
                "{file} has no range for {}; subordinate ids come from {source} (nsswitch.conf), which doctor does not read",
                user.name
            ),
        ),
        (0, None) if text.is_none() => Check::bad(
            name,
            Status::Fail,
            format!("{file} is missing or unreadable"),
            fix,
        ),
        (0, None) => Check::bad(
            name,
            Status::Fail,
            format!("{file} has no range for {}", user.name),
            fix,
        ),
        (n, _) if n < SUBIDS_WANTED => Check::bad(
            name,
            Status::Warn,
            format!(
                "{file} gives {} {n} ids; images whose files belong to higher ids fail to unpack",
                user.name
            ),
            fix,
        ),
        (n, _) => Check::ok(name, format!("{n} ids for {} in {file}", user.name)),
    }
}

/// newuidmap/newgidmap (the uidmap package): setuid root, so rootless Podman can map
/// the subordinate ids.
fn id_mapper(tool: &'static str) -> Check {
    let fix = "install the uidmap package (Debian/Ubuntu: sudo apt-get install uidmap; Fedora: shadow-utils)";
    let found = crate::podman::connect::find_on_path(tool)
        .or_else(|| Some(PathBuf::from(format!("/usr/bin/{tool}"))).filter(|p| p.is_file()));
    let Some(path) = found else {
        return Check::bad(tool, Status::Fail, format!("{tool} is not installed"), fix);
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.permissions().mode() & 0o4000 != 0 && m.uid() == 0 => {
            Check::ok(tool, format!("{} (setuid root)", path.display()))
        }
        // Fedora gives it file capabilities instead; doctor does not read xattrs.
        Ok(_) => Check::bad(
            tool,
            Status::Warn,
            format!(
                "{} is not setuid root: it works only with file capabilities (getcap shows cap_setuid)",
                path.display()
            ),
            format!(
                "sudo chmod u+s {} (or reinstall the uidmap package)",
                path.display()
            ),
        ),
        Err(e) => Check::bad(tool, Status::Fail, format!("{}: {e}", path.display()), fix),
    }
}

/// /dev/net/tun: rootless networking (slirp4netns, pasta) makes its tap device there.
fn tun(path: &Path) -> Check {
    const NAME: &str = "tun";
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => Check::ok(NAME, format!("{} opens read-write", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::bad(
            NAME,
            Status::Fail,
            format!(
                "{} does not exist: rootless containers get no network",
                path.display()
            ),
            "sudo modprobe tun (in a container: run it with --device /dev/net/tun)",
        ),
        Err(e) => Check::bad(
            NAME,
            Status::Fail,
            format!("{} cannot be opened read-write: {e}", path.display()),
            format!("sudo chmod 0666 {}", path.display()),
        ),
    }
}

fn toolbox() -> Check {
    const NAME: &str = "toolbox";
    if !crate::podman::connect::in_toolbox() {
        return Check::skip(NAME, "not inside a toolbox");
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let host_socket = runtime
        .as_deref()
        .map(|d| d.join("podman/podman.sock"))
        .filter(|s| crate::podman::connect::socket_listens(s));
    match (
        host_socket,
        crate::podman::connect::find_on_path("flatpak-spawn"),
    ) {
        (Some(s), _) => Check::ok(
            NAME,
            format!(
                "inside a toolbox: the host's Podman answers on {}",
                s.display()
            ),
        ),
        (None, Some(_)) => Check::ok(
            NAME,
            "inside a toolbox: devaipod starts the host's Podman service through flatpak-spawn --host",
        ),
        (None, None) => Check::bad(
            NAME,
            Status::Fail,
            "inside a toolbox with no route to the host's Podman",
            crate::podman::connect::toolbox_hint(runtime.as_deref()),
        ),
    }
}

/// The LLM providers `up` would give the agent: the built-in presets whose variables
/// are set in this environment (names only, never values), and `[agent.credentials]`.
fn providers(
    env: &dyn Fn(&str) -> Option<String>,
    agent: Option<&crate::config::AgentConfig>,
) -> Check {
    const NAME: &str = "providers";
    use crate::plan::input::presets::PRESETS;
    let seen: Vec<String> = PRESETS
        .iter()
        .filter_map(|p| p.variable(env).map(|v| format!("{v} ({})", p.id)))
        .collect();
    let explicit: Vec<String> = agent
        .map(|a| {
            a.credentials
                .keys()
                .map(|k| k.get_ref().0.clone())
                .collect()
        })
        .unwrap_or_default();
    let named = agent.and_then(|a| a.named_presets.as_ref());
    let mut parts = Vec::new();
    if !seen.is_empty() {
        parts.push(format!("set: {}", seen.join(", ")));
    }
    if let Some(n) = named {
        let ids: Vec<&str> = n.iter().map(|n| n.id.as_str()).collect();
        parts.push(format!(
            "[agent] providers = [{}] chooses the presets",
            ids.join(", ")
        ));
    }
    if !explicit.is_empty() {
        parts.push(format!("[agent.credentials]: {}", explicit.join(", ")));
    }
    if parts.is_empty() {
        return Check::bad(
            NAME,
            Status::Warn,
            "no provider key: none of the presets' variables is set and there is no [agent.credentials]",
            format!(
                "export your provider's key (one of {}) before `up`, or configure [agent.credentials.ID] (docs/agent.md)",
                PRESETS
                    .iter()
                    .map(|p| p.env[0])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Check::ok(NAME, parts.join("; "))
}

fn network_guard() -> Check {
    const NAME: &str = "devaipod-net";
    match crate::net_binary::find() {
        Ok(b) => Check::ok(NAME, b.path.display().to_string()),
        Err(e) => Check::bad(
            NAME,
            Status::Fail,
            "the agent's network guard is missing",
            format!("{e:#}"),
        ),
    }
}

/// The checks that need the engine: the connection itself, cgroups, the bundled image,
/// and opencode running in a container hardened like the agent.
async fn engine_checks(ctx: &Context, rootless: bool) -> Vec<Check> {
    const LATER: [&str; 4] = ["cgroups", "bundled-image", "locks", "opencode"];
    let engine = match ctx.engine().await {
        Ok(e) => e,
        Err(e) => {
            let mut out = vec![Check::bad(
                "engine",
                Status::Fail,
                format!("cannot reach Podman: {e:#}"),
                "fix what the line above says (`podman info` shows Podman's own view), or set CONTAINER_HOST=unix:///path/to/podman.sock",
            )];
            out.extend(LATER.map(|n| Check::skip(n, "not checked: no engine")));
            return out;
        }
    };
    let via = if engine.private_service() {
        "a private service devaipod started"
    } else {
        "its socket"
    };
    let mut out = vec![Check::ok(
        "engine",
        format!(
            "Podman {} ({}) at {} ({via})",
            engine.version(),
            if engine.rootless() {
                "rootless"
            } else {
                "rootful"
            },
            engine.socket().display()
        ),
    )];
    out.push(match engine.host_info().await {
        Ok(host) => cgroups(
            rootless,
            &host.cgroup_version,
            host.cgroup_controllers.as_deref(),
        ),
        Err(e) => Check::bad(
            "cgroups",
            Status::Fail,
            format!("{e:#}"),
            "check `podman info`",
        ),
    });
    let present = match engine.image_labels(BUNDLED_IMAGE).await {
        Ok(Some(labels)) => {
            let key = labels
                .get("io.devaipod.image-key")
                .map(|k| format!(", content key {k}"))
                .unwrap_or_default();
            out.push(Check::ok(
                "bundled-image",
                format!("{BUNDLED_IMAGE} is present{key}"),
            ));
            true
        }
        Ok(None) => {
            out.push(Check::bad(
                "bundled-image",
                Status::Fail,
                format!("{BUNDLED_IMAGE} is not in this engine's store: `up` needs it for repos without devcontainer.json and for images without opencode"),
                "from a devaipod checkout run `just image` (as the user who runs devaipod)",
            ));
            false
        }
        Err(e) => {
            out.push(Check::bad(
                "bundled-image",
                Status::Fail,
                format!("{e:#}"),
                "check `podman images`",
            ));
            false
        }
    };
    let locks = locks(engine).await;
    let stale = locks.status == Status::Fail;
    out.push(locks);
    if !present {
        out.push(Check::skip("opencode", "not checked: no bundled image"));
        return out;
    }
    if stale {
        // A container created now may be given a lock another object holds.
        out.push(Check::skip(
            "opencode",
            "not checked: Podman's locks are stale",
        ));
        return out;
    }
    out.push(opencode(engine).await);
    out
}

/// Where Podman keeps its locks: one shared-memory file per engine.
fn lock_file(rootless: bool, uid: u32) -> PathBuf {
    if rootless {
        PathBuf::from(format!("/dev/shm/libpod_rootless_lock_{uid}"))
    } else {
        PathBuf::from("/dev/shm/libpod_lock")
    }
}

/// The most of a lock file read: 2048 locks (the default) take 82 KB.
const LOCK_FILE_LIMIT: u64 = 64 << 20;

/// How many locks Podman's shared-memory lock file `bytes` marks as given out, or
/// `None` for a layout this code does not know. The layout is libpod's shm_struct_t:
/// a 16-bit magic 0x87D1 and a 16-bit 0, the segment's mutex, the number of bitmaps
/// and of locks (32-bit each), then per 32 locks a 32-bit bitmap and 32 mutexes.
fn locks_in_use(bytes: &[u8]) -> Option<u32> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    if u16_at(0)? != 0x87D1 || u16_at(2)? != 0 {
        return None;
    }
    // pthread_mutex_t is 40 bytes on x86-64 and 48 on arm64 (glibc), aligned to 8.
    for mutex in [40usize, 48, 32, 24] {
        let header = 8 + mutex + 8;
        let group = 8 + 32 * mutex;
        let (Some(bitmaps), Some(total)) = (u32_at(header - 8), u32_at(header - 4)) else {
            continue;
        };
        let fits = u64::from(bitmaps) * 32 == u64::from(total)
            && (header as u64 + u64::from(bitmaps) * group as u64) == bytes.len() as u64;
        if fits {
            return (0..bitmaps as usize)
                .map(|i| u32_at(header + i * group).map(u32::count_ones))
                .sum();
        }
    }
    None
}

/// Whether each of Podman's objects still holds a lock of its own. Podman gives each
/// container, pod and volume a numbered lock in a file in /dev/shm; when that file is
/// emptied (a tmpfs cleared or remounted) while Podman's own runtime directory stays,
/// Podman does not notice, gives new objects the numbers old ones hold, and then hangs
/// for ever on a pod or volume that shares a lock with its new container. The file then
/// marks fewer locks in use than there are objects.
async fn locks(engine: &crate::podman::Engine) -> Check {
    const NAME: &str = "locks";
    let remote = std::env::var("CONTAINER_HOST").is_ok_and(|h| !h.starts_with("unix://"));
    if remote {
        return Check::skip(NAME, "the engine is on another machine (CONTAINER_HOST)");
    }
    let file = lock_file(engine.rootless(), nix::unistd::geteuid().as_raw());
    let read = || -> std::io::Result<Vec<u8>> {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        std::fs::File::open(&file)?
            .take(LOCK_FILE_LIMIT)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    // Podman gives an object its lock before adding it to its state and frees the lock
    // after removing it, so whatever is in the state when the file is read holds a lock
    // then. The objects listed both before and after the read were there during it:
    // creations and removals elsewhere meanwhile cannot make a shortfall appear.
    let mut last = (0, 0);
    for _ in 0..3 {
        let before = match object_ids(engine).await {
            Ok(ids) => ids,
            Err(e) => {
                return Check::bad(NAME, Status::Fail, format!("{e:#}"), "check `podman ps -a`");
            }
        };
        let bytes = match read() {
            Ok(b) => b,
            Err(e) => {
                return Check::skip(
                    NAME,
                    format!(
                        "Podman's lock file {} is not readable here: {e}",
                        file.display()
                    ),
                );
            }
        };
        let Some(in_use) = locks_in_use(&bytes) else {
            return Check::skip(
                NAME,
                format!(
                    "Podman's lock file {} has a layout this devaipod does not know",
                    file.display()
                ),
            );
        };
        let after = match object_ids(engine).await {
            Ok(ids) => ids,
            Err(e) => {
                return Check::bad(NAME, Status::Fail, format!("{e:#}"), "check `podman ps -a`");
            }
        };
        let throughout = before.intersection(&after).count() as u64;
        if u64::from(in_use) >= throughout {
            return Check::ok(
                NAME,
                format!(
                    "{} containers, pods and volumes; {in_use} of Podman's locks in use",
                    after.len()
                ),
            );
        }
        last = (in_use, throughout);
    }
    let user = if engine.rootless() {
        " as this user"
    } else {
        " as root"
    };
    Check::bad(
        NAME,
        Status::Fail,
        format!(
            "Podman's lock file {} marks {} locks in use for {} containers, pods and volumes: it was emptied (/dev/shm cleared) while Podman's state was kept, so new objects share locks with old ones and Podman hangs creating them",
            file.display(),
            last.0,
            last.1
        ),
        format!("with no other podman command running, run `podman system renumber`{user}"),
    )
}

/// The containers (infra ones included), pods and volumes: what holds a Podman lock.
async fn object_ids(engine: &crate::podman::Engine) -> Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    for (kind, ep, key) in [
        ("container", "/libpod/containers/json?all=true", "Id"),
        ("pod", "/libpod/pods/json", "Id"),
        ("volume", "/libpod/volumes/json", "Name"),
    ] {
        let list: Vec<serde_json::Map<String, serde_json::Value>> = engine.get_json(ep).await?;
        ids.extend(list.iter().map(|o| {
            format!(
                "{kind} {}",
                o.get(key).and_then(|v| v.as_str()).unwrap_or("")
            )
        }));
    }
    Ok(ids)
}

/// Whether the engine's cgroups hold the agent's limits (memory, pids, CPU): rootful
/// always; rootless only on cgroup v2, with the controllers delegated to the user.
fn cgroups(rootless: bool, version: &str, controllers: Option<&[String]>) -> Check {
    const NAME: &str = "cgroups";
    if !crate::podman::verify::limits_enforced(rootless, version) {
        return Check::bad(
            NAME,
            Status::Warn,
            format!(
                "cgroup {version} with rootless Podman: the agent's memory, pids and CPU limits are not enforced (`up` warns each time)"
            ),
            "boot with cgroup v2 (the kernel argument systemd.unified_cgroup_hierarchy=1), or run devaipod as root",
        );
    }
    if rootless && let Some(have) = controllers {
        let missing: Vec<&str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            return Check::bad(
                NAME,
                Status::Warn,
                format!(
                    "cgroup v2, but the controllers {} are not delegated to this user: those limits are not enforced",
                    missing.join(", ")
                ),
                "delegate them: a file /etc/systemd/system/user@.service.d/delegate.conf with [Service] Delegate=cpu cpuset io memory pids, then sudo systemctl daemon-reload and log in again",
            );
        }
    }
    Check::ok(
        NAME,
        format!("cgroup {version}: the agent's memory, pids and CPU limits are enforced"),
    )
}

/// The bundled image's opencode, run as the agent's runs: proves both that a container
/// hardened as the agent is starts here and that opencode runs in it.
async fn opencode(engine: &crate::podman::Engine) -> Check {
    const NAME: &str = "opencode";
    let c = crate::podman::job::probe_container(BUNDLED_IMAGE, "/usr/local/bin/opencode");
    match engine.run_job(&c, None).await {
        Ok(out) if out.code == 0 => {
            let version = out.logs.lines().next().unwrap_or("").trim().to_string();
            Check::ok(
                NAME,
                format!(
                    "opencode {version} runs in {BUNDLED_IMAGE}, in a container hardened like the agent"
                ),
            )
        }
        Ok(out) => Check::bad(
            NAME,
            Status::Fail,
            format!(
                "opencode --version in {BUNDLED_IMAGE} exited {}: {}",
                out.code,
                out.logs.lines().last().unwrap_or("(no output)")
            ),
            "rebuild the bundled image: `just image`",
        ),
        Err(e) => Check::bad(
            NAME,
            Status::Fail,
            format!("a container hardened like the agent did not run: {e:#}"),
            "fix what the line above says; `devaipod up -v` shows the same steps in detail",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            uid: 1001,
            name: "dev".into(),
        }
    }

    #[test]
    fn subordinate_ids_by_name_or_uid_summed() {
        let u = user();
        let c = subids("subuid", "/etc/subuid", Some("dev:100000:65536\n"), "", &u);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let c = subids(
            "subuid",
            "/etc/subuid",
            Some("1001:100000:30000\ndev:200000:40000\n"),
            "",
            &u,
        );
        assert_eq!(c.status, Status::Ok, "{c:?}");
        let c = subids("subgid", "/etc/subgid", Some("dev:100000:1000\n"), "", &u);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        let c = subids("subgid", "/etc/subgid", Some("other:1:65536\n"), "", &u);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert_eq!(
            c.fix.as_deref(),
            Some("sudo usermod --add-subgids 100000-165535 dev")
        );
        let c = subids("subuid", "/etc/subuid", None, "", &u);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        // Ranges from NSS (sssd) are not in the file: not a failure doctor can see.
        let c = subids("subuid", "/etc/subuid", Some(""), "subid: sss\n", &u);
        assert_eq!(c.status, Status::Skip, "{c:?}");
    }

    #[test]
    fn runtime_dir_must_exist_and_be_the_users() {
        let u = User {
            uid: nix::unistd::geteuid().as_raw(),
            name: "me".into(),
        };
        assert_eq!(runtime_dir(None, &u).status, Status::Warn);
        let c = runtime_dir(Some(Path::new("/nonexistent/run/user/1")), &u);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.fix
                .as_deref()
                .unwrap_or("")
                .contains("install -d -m 0700"),
            "{c:?}"
        );
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(runtime_dir(Some(d.path()), &u).status, Status::Ok);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(runtime_dir(Some(d.path()), &u).status, Status::Warn);
        let other = User {
            uid: u.uid + 1,
            ..u
        };
        assert_eq!(runtime_dir(Some(d.path()), &other).status, Status::Fail);
    }

    #[test]
    fn limits_are_enforced_rootful_and_on_delegated_v2() {
        let all = ["cpu", "memory", "pids"].map(String::from);
        assert_eq!(cgroups(false, "v1", None).status, Status::Ok);
        assert_eq!(cgroups(true, "v1", None).status, Status::Warn);
        assert_eq!(cgroups(true, "v2", Some(&all)).status, Status::Ok);
        let c = cgroups(true, "v2", Some(&["cpu".to_string()]));
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("memory, pids"), "{c:?}");
    }

    /// A lock file as libpod lays it out on x86-64 (40-byte mutexes), `bitmaps`' bits set.
    fn lock_file_with(bitmaps: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 56 + bitmaps.len() * (8 + 32 * 40)];
        b[0..2].copy_from_slice(&0x87D1u16.to_le_bytes());
        b[48..52].copy_from_slice(&(bitmaps.len() as u32).to_le_bytes());
        b[52..56].copy_from_slice(&(bitmaps.len() as u32 * 32).to_le_bytes());
        for (i, m) in bitmaps.iter().enumerate() {
            let at = 56 + i * (8 + 32 * 40);
            b[at..at + 4].copy_from_slice(&m.to_le_bytes());
        }
        b
    }

    #[test]
    fn locks_in_use_are_the_bits_set_in_each_bitmap() {
        assert_eq!(locks_in_use(&lock_file_with(&[0; 64])), Some(0));
        assert_eq!(
            locks_in_use(&lock_file_with(&[0x0f, 0, u32::MAX])),
            Some(36)
        );
        let mut other_magic = lock_file_with(&[1]);
        other_magic[0] = 0;
        assert_eq!(locks_in_use(&other_magic), None);
        let mut short = lock_file_with(&[1, 1]);
        short.pop();
        assert_eq!(locks_in_use(&short), None);
        assert_eq!(locks_in_use(&[]), None);
    }

    #[test]
    fn providers_lists_the_variables_it_sees_never_their_values() {
        let env = |v: &str| match v {
            "GEMINI_API_KEY" => Some("sk-secret-value".to_string()),
            "OPENAI_API_KEY" => Some(String::new()),
            _ => None,
        };
        let c = providers(&env, None);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.detail, "set: GEMINI_API_KEY (google)");
        let none = providers(&|_| None, None);
        assert_eq!(none.status, Status::Warn);
        assert!(
            none.fix.as_deref().is_some_and(|f| f.starts_with(
                "export your provider's key (one of ANTHROPIC_API_KEY, OPENAI_API_KEY,"
            )),
            "{none:?}"
        );
        let agent = crate::config::parse(
            "[agent]\nproviders = [\"groq\"]\n[agent.credentials.local]\nbase_url = \"https://llm.example.org/v1\"\nheader = \"authorization\"\nsecret = \"K\"\n",
        )
        .expect("config")
        .agent;
        let c = providers(&env, Some(&agent));
        assert_eq!(
            c.detail,
            "set: GEMINI_API_KEY (google); [agent] providers = [groq] chooses the presets; [agent.credentials]: local"
        );
    }

    #[test]
    fn a_missing_tun_fails_with_its_fix() {
        let c = tun(Path::new("/nonexistent/dev/net/tun"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap_or("").contains("modprobe tun"));
    }

    #[test]
    fn text_shows_each_fix_and_the_verdict_escaped() {
        let checks = [
            Check::ok("podman", "/usr/bin/podman"),
            Check::bad("tun", Status::Fail, "gone\x1b[2J", "modprobe"),
        ];
        let text = render(&checks);
        assert!(text.contains("FAIL  tun"), "{text}");
        assert!(text.contains("fix: modprobe"), "{text}");
        assert!(
            text.contains("cannot run here yet: 1 check(s) failed"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
    }
}
