//! The marker and the gate: how the agent knows that its network rules are in place.
//!
//! `rules` writes the marker only after it has read its rules back from the kernel. The
//! marker names the network namespace it was written for (its cookie, a number the
//! kernel never reuses while it runs, and the boot it belongs to, because after a reboot
//! the cookies start again from the same values). The agent's command runs `gate`
//! before opencode: it returns only once the marker names the network namespace the
//! gate itself runs in, so a pod started without its rules container (or a marker left
//! from an earlier start, whose network namespace is gone) keeps the agent waiting and
//! then stops it.
//!
//! The marker is one line of JSON, e.g.
//! `{"version":1,"netns_cookie":4101,"boot_id":"…","ruleset":"sha256:0123456789abcdef",
//! "agent_uid":4096,"agent_port":4096,"allow_reply":["4097:4097"]}`, written with mode 0644 by rename
//! (readers see the old file or the new one, never half of one).

use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub(crate) const MARKER_VERSION: u32 = 1;

/// What the gate prints when it gives up (and the agent does not start).
pub(crate) const NOT_INSTALLED: &str = "devaipod: this pod's network rules are not installed in this network namespace; the agent does not start without them. Start the pod with devaipod start NAME (or podman pod start, which runs the rules container first).";

/// How often the gate looks at the marker while it waits.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub(crate) version: u32,
    /// SO_NETNS_COOKIE of the network namespace the rules were installed in.
    pub(crate) netns_cookie: u64,
    /// /proc/sys/kernel/random/boot_id when they were installed.
    pub(crate) boot_id: String,
    /// [`crate::rules::ruleset_hash`] of what was installed.
    pub(crate) ruleset: String,
    pub(crate) agent_uid: u32,
    pub(crate) agent_port: u16,
    pub(crate) allow_reply: Vec<String>,
}

/// SO_NETNS_COOKIE (asm-generic/socket.h; the value on x86_64 and aarch64).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// This network namespace's cookie, asked of a socket made for the purpose (a unix
/// datagram socket: it belongs to the namespace and sends nothing).
pub(crate) fn netns_cookie() -> Result<u64> {
    let sock = UnixDatagram::unbound()
        .context("making a socket to read the network namespace's cookie")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (8) bytes into `cookie`, which lives for
    // the call, and updates `len`; the fd is open for `sock`'s lifetime.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
            bail!(
                "this kernel does not tell a network namespace's cookie (SO_NETNS_COOKIE needs Linux 5.14 or later), so devaipod cannot tell whether the agent's network rules are in place here"
            );
        }
        return Err(e).context("reading the network namespace's cookie (SO_NETNS_COOKIE)");
    }
    if len as usize != std::mem::size_of::<u64>() {
        bail!("the kernel answered SO_NETNS_COOKIE with {len} bytes, not 8");
    }
    Ok(cookie)
}

/// The kernel's id of this boot.
pub(crate) fn boot_id() -> Result<String> {
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    let id = fs::read_to_string(PATH).with_context(|| format!("reading {PATH}"))?;
    let id = id.trim();
    if id.is_empty() {
        bail!("{PATH} is empty");
    }
    Ok(id.to_string())
}

/// Writes the marker by rename: a temporary file beside it, mode 0644, synced, renamed
/// over the old one.
pub(crate) fn write_marker(path: &Path, marker: &Marker) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("--marker {}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut line = serde_json::to_string(marker).context("encoding the marker")?;
    line.push('\n');
    let result = (|| -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        // The umask may have taken bits off the mode asked for at open.
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
        f.write_all(line.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Where this process runs: what a marker must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Here {
    pub(crate) netns_cookie: u64,
    pub(crate) boot_id: String,
}

/// Ok when the marker at `path` names `here`; else why not, in words.
pub(crate) fn check(path: &Path, here: &Here) -> std::result::Result<(), String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} does not exist", path.display()));
        }
        Err(e) => return Err(format!("{} cannot be read: {e}", path.display())),
    };
    let m: Marker = serde_json::from_str(text.trim())
        .map_err(|e| format!("{} is not a devaipod marker: {e}", path.display()))?;
    if m.version != MARKER_VERSION {
        return Err(format!(
            "{} is a marker of version {}, this gate reads version {MARKER_VERSION}",
            path.display(),
            m.version
        ));
    }
    if m.boot_id != here.boot_id {
        return Err(format!(
            "{} was written during another boot ({}; this is {})",
            path.display(),
            m.boot_id,
            here.boot_id
        ));
    }
    if m.netns_cookie != here.netns_cookie {
        return Err(format!(
            "{} names network namespace {}; the agent runs in network namespace {}",
            path.display(),
            m.netns_cookie,
            here.netns_cookie
        ));
    }
    Ok(())
}

/// `devaipod-net gate`: returns as soon as the marker names this network namespace;
/// after `timeout_secs`, prints [`NOT_INSTALLED`] and exits 1.
pub(crate) fn run(marker: &Path, timeout_secs: u64) -> Result<()> {
    let here = Here {
        netns_cookie: netns_cookie()?,
        boot_id: boot_id()?,
    };
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let why_not = match check(marker, &here) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            eprintln!("{NOT_INSTALLED}\n  ({why_not})");
            std::process::exit(1);
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(cookie: u64, boot: &str) -> Marker {
        Marker {
            version: MARKER_VERSION,
            netns_cookie: cookie,
            boot_id: boot.into(),
            ruleset: "sha256:0123456789abcdef".into(),
            agent_uid: 4096,
            agent_port: 4096,
            allow_reply: vec!["4097:4097".into()],
        }
    }

    #[test]
    fn this_kernel_tells_the_cookie_and_boot() {
        let a = netns_cookie().expect("cookie");
        assert_eq!(a, netns_cookie().expect("cookie again"));
        assert_ne!(a, 0);
        assert_eq!(boot_id().expect("boot id").len(), 36);
    }

    #[test]
    fn the_marker_is_written_whole_with_mode_0644_and_checked() {
        let dir = std::env::temp_dir().join(format!("dvp-gate-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("dir");
        let path = dir.join("marker");
        let here = Here {
            netns_cookie: 77,
            boot_id: "b".into(),
        };
        let e = check(&path, &here).expect_err("absent");
        assert!(e.ends_with("does not exist"), "{e}");

        write_marker(&path, &marker(76, "b")).expect("write");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        let e = check(&path, &here).expect_err("other netns");
        assert!(
            e.contains("names network namespace 76; the agent runs in network namespace 77"),
            "{e}"
        );

        write_marker(&path, &marker(77, "a")).expect("overwrite");
        let e = check(&path, &here).expect_err("other boot");
        assert!(e.contains("another boot"), "{e}");

        write_marker(&path, &marker(77, "b")).expect("overwrite");
        check(&path, &here).expect("this netns, this boot");
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "{\"version\":1,\"netns_cookie\":77,\"boot_id\":\"b\",\"ruleset\":\"sha256:0123456789abcdef\",\"agent_uid\":4096,\"agent_port\":4096,\"allow_reply\":[\"4097:4097\"]}\n"
        );
        // Nothing but the marker is left in the directory.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("marker")]);

        fs::write(&path, "{\"version\":2}").expect("garbage");
        let e = check(&path, &here).expect_err("not a marker");
        assert!(e.contains("is not a devaipod marker"), "{e}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
