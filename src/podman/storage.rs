//! The engine's volume storage: whether it can hold a volume to a size
//! ([`Engine::volume_quota`]: Podman's local `size` option is an XFS project quota), and
//! how much each of a workspace's volumes holds ([`disk_use`]: `du` on the host, bounded
//! in time, memory and output, never following a link the agent made).
//!
//! What Podman itself checks (libpod `NewVolume`, containers/storage `quota.NewControl`
//! on the engine's volume path): it makes a block device node for the volume path's
//! filesystem and sets a project quota through it, so a volume's size works only where
//! the volume path is on XFS mounted with project quota (`prjquota`) and the engine
//! runs as root (a user namespace may neither make device nodes nor set quotas). Without
//! that, a volume created with `size` fails ("Filesystem does not support Project
//! Quota"), so devaipod asks for a size only where both hold and says so otherwise.
//!
//! The agent controls what its volumes hold: millions of files, deep trees, symlink
//! loops, links to anywhere on the host, hard links. `du -s -x -k` neither follows
//! symbolic links (on the command line or below it) nor leaves the volume's
//! filesystem, counts a hard-linked file once and stats only; it runs in its own
//! process group, under `ulimit -v`, is killed with its group after
//! [`DISK_USE_TIMEOUT`], and only the first bytes of its output are kept.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::plan::VolumeQuota;
use crate::plan::labels;

/// How long `status` waits for the volumes' use (all of them at once, each in its own
/// `du`): a volume of millions of entries reads as unknown rather than holding
/// `status` for minutes.
pub(crate) const DISK_USE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `du` run on a volume's path (`$1`): at most 256 MiB of address space, so a tree
/// of millions of hard links makes it fail instead of taking the host's memory; no
/// symbolic link followed (du's default), no other filesystem entered (`-x`).
const DU_SCRIPT: &str = "ulimit -v 262144 || exit 125\nexec du -s -x -k -- \"$1\"\n";

/// The most of `du`'s stdout and stderr kept (it prints one line; errors are quoted).
const DU_OUTPUT_LIMIT: usize = 4096;

/// `GET /libpod/info`, the one field of its store devaipod reads here.
#[derive(Debug, Deserialize)]
struct StorageInfo {
    store: StoreInfo,
}

#[derive(Debug, Deserialize)]
struct StoreInfo {
    #[serde(rename = "volumePath")]
    volume_path: String,
}

/// What devaipod reads of the mount that holds a path (a line of /proc/self/mountinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountFacts {
    pub mount_point: String,
    pub fs_type: String,
    /// The filesystem's own options (the superblock's: XFS shows `prjquota` there).
    pub super_options: Vec<String>,
}

/// The mount of the filesystem whose device is `major:minor`, from mountinfo's text
/// (proc(5): `ID PARENT MAJOR:MINOR ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE
/// SOURCE SUPER_OPTIONS`). Every mount of one device shares its superblock's options.
pub(crate) fn mount_of(mountinfo: &str, major: u64, minor: u64) -> Option<MountFacts> {
    let dev = format!("{major}:{minor}");
    mountinfo.lines().find_map(|l| {
        let (mine, theirs) = l.split_once(" - ")?;
        let mine: Vec<&str> = mine.split(' ').collect();
        if mine.get(2) != Some(&dev.as_str()) {
            return None;
        }
        let mut theirs = theirs.split(' ');
        let fs_type = theirs.next()?.to_string();
        let _source = theirs.next()?;
        let super_options = theirs
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        Some(MountFacts {
            mount_point: unescape_octal(mine.get(4)?),
            fs_type,
            super_options,
        })
    })
}

/// mountinfo writes a space, tab, newline and backslash in a path as `\040` etc.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether Podman can hold a volume under `volume_path` to a size, from what holds the
/// path: root, XFS, project quota enforced (`prjquota`; `pqnoenforce` only counts).
pub(crate) fn quota_of(
    rootless: bool,
    volume_path: &str,
    mount: Result<MountFacts, String>,
) -> VolumeQuota {
    if rootless {
        return VolumeQuota::NotEnforced(
            "Podman runs rootless, and it holds a volume to a size only with an XFS project quota, which only a rootful engine can set".into(),
        );
    }
    let m = match mount {
        Ok(m) => m,
        Err(e) => {
            return VolumeQuota::NotEnforced(format!(
                "devaipod could not tell what Podman's volumes ({volume_path}) are stored on: {e}"
            ));
        }
    };
    let has = |o: &str| m.super_options.iter().any(|s| s == o);
    if m.fs_type != "xfs" {
        VolumeQuota::NotEnforced(format!(
            "Podman's volumes ({volume_path}) are on {} (mounted at {}), and Podman holds a volume to a size only on XFS mounted with project quota (prjquota)",
            m.fs_type, m.mount_point
        ))
    } else if has("prjquota") || has("pquota") {
        VolumeQuota::Enforced
    } else if has("pqnoenforce") {
        VolumeQuota::NotEnforced(format!(
            "Podman's volumes ({volume_path}) are on XFS (mounted at {}) with project quotas counted but not enforced (pqnoenforce): mount it with prjquota",
            m.mount_point
        ))
    } else {
        VolumeQuota::NotEnforced(format!(
            "Podman's volumes ({volume_path}) are on XFS (mounted at {}) without project quota: mount it with prjquota for Podman to hold volumes to a size",
            m.mount_point
        ))
    }
}

/// The mount holding `path`, found by its device number in /proc/self/mountinfo.
fn mount_of_path(path: &Path) -> Result<MountFacts, String> {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    mount_of(&text, major, minor)
        .ok_or_else(|| format!("no mount of its device {major}:{minor} in /proc/self/mountinfo"))
}

impl Engine {
    /// Whether the engine holds a new volume to the size it is created with (see the
    /// module's doc). Never an error: what cannot be found out is a reason why not.
    pub(crate) async fn volume_quota(&self) -> VolumeQuota {
        if self.rootless() {
            return quota_of(true, "", Err(String::new()));
        }
        let info: Result<StorageInfo> = self
            .get_json("/libpod/info")
            .await
            .context("asking Podman where its volumes are (GET /libpod/info)");
        match info {
            Ok(info) => {
                let path = info.store.volume_path;
                let mount = mount_of_path(Path::new(&path));
                quota_of(false, &path, mount)
            }
            Err(e) => VolumeQuota::NotEnforced(format!("{e:#}")),
        }
    }

    /// The volumes labelled for workspace `name`, in the engine's order, with where
    /// they are and the options they were made with.
    pub(crate) async fn workspace_volumes(&self, name: &str) -> Result<Vec<VolumeEntry>> {
        let f = serde_json::json!({"label": [format!("{}={name}", labels::POD)]});
        let list: Vec<VolumeEntry> = self
            .get_json(&format!(
                "/libpod/volumes/json?filters={}",
                super::encode(&f.to_string())
            ))
            .await
            .with_context(|| format!("listing the volumes of {name}"))?;
        Ok(list)
    }
}

/// One volume of `GET /libpod/volumes/json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct VolumeEntry {
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub mountpoint: String,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

impl VolumeEntry {
    /// The size Podman holds it to: its `o=size=BYTES` option (devaipod writes bytes).
    pub(crate) fn size_limit(&self) -> Option<u64> {
        self.options
            .as_ref()?
            .get("o")?
            .split(',')
            .find_map(|o| o.strip_prefix("size="))?
            .parse()
            .ok()
    }
}

/// How much one volume holds, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct VolumeUse {
    pub volume: String,
    /// Bytes of disk it takes (allocated blocks as `du -k` counts them, each hard-linked
    /// file once); `null` when not known (`note` says why).
    pub bytes: Option<u64>,
    /// The size Podman holds it to, if it was made with one (`[agent] disk_limit` where
    /// the storage enforces it).
    pub limit: Option<u64>,
    /// Why `bytes` is unknown, or only a lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The command measuring the volume at `path`: `du` directly when the engine is
/// rootful (devaipod is root too), in the user's namespace (`podman unshare`, where the
/// volume's files belong to the container's uids) when rootless.
pub(crate) fn du_command(rootless: bool, podman: &Path, path: &str) -> Vec<String> {
    let mut argv = Vec::new();
    if rootless {
        argv.push(podman.display().to_string());
        argv.push("unshare".into());
    }
    argv.extend(
        ["/bin/sh", "-c", DU_SCRIPT, "sh", path]
            .into_iter()
            .map(str::to_string),
    );
    argv
}

/// The bytes of `du -s -k`'s line for `path` (`KIB\tPATH`).
fn parse_du(stdout: &[u8], path: &str) -> Option<u64> {
    let text = std::str::from_utf8(stdout).ok()?;
    let (kib, p) = text.lines().next()?.split_once('\t')?;
    if p != path {
        return None;
    }
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// How a bounded command ended.
#[derive(Debug)]
pub(crate) enum Bounded {
    /// It exited: its status and the first bytes of its stdout and stderr.
    Exited {
        success: bool,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It ran past its time: it and its process group were killed.
    TimedOut,
    /// It could not be started.
    Spawn(std::io::Error),
}

/// Reads all of `r`, keeping the first `limit` bytes (the rest is drained, so the
/// writer never blocks on a full pipe).
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: Option<R>, limit: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let Some(mut r) = r else { return kept };
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Runs `argv` in a process group of its own, stdin closed, for at most `timeout`;
/// past it, the whole group is killed (under `podman unshare` the measuring process is
/// a grandchild).
pub(crate) async fn run_bounded(argv: &[String], timeout: Duration) -> Bounded {
    let Some((program, args)) = argv.split_first() else {
        return Bounded::Spawn(std::io::Error::other("no command"));
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Bounded::Spawn(e),
    };
    let group = child.id().and_then(|p| i32::try_from(p).ok());
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let (stdout, stderr, status) = tokio::join!(
            read_capped(out, DU_OUTPUT_LIMIT),
            read_capped(err, DU_OUTPUT_LIMIT),
            child.wait()
        );
        Bounded::Exited {
            success: status.is_ok_and(|s| s.success()),
            stdout,
            stderr,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(g) = group {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(g),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Bounded::TimedOut
        }
    }
}

/// The first non-empty line of a command's stderr, for a note.
fn first_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string()
}

/// What one bounded `du` of `path` tells: the bytes (a lower bound when it could not
/// read everything) and a note.
pub(crate) fn judge(
    ended: Bounded,
    path: &str,
    timeout: Duration,
) -> (Option<u64>, Option<String>) {
    match ended {
        Bounded::Exited {
            success,
            stdout,
            stderr,
        } => match (parse_du(&stdout, path), success) {
            (Some(b), true) => (Some(b), None),
            (Some(b), false) => (
                Some(b),
                Some(format!(
                    "at least this much: du could not read all of it ({})",
                    first_line(&stderr)
                )),
            ),
            (None, _) => (None, Some(format!("du failed: {}", first_line(&stderr)))),
        },
        Bounded::TimedOut => (
            None,
            Some(format!("timed out after {}s", timeout.as_secs())),
        ),
        Bounded::Spawn(e) => (None, Some(format!("cannot run du: {e}"))),
    }
}

/// How much each volume holds, all measured at once, for at most `timeout`.
pub(crate) async fn disk_use(
    rootless: bool,
    volumes: &[VolumeEntry],
    timeout: Duration,
) -> Vec<VolumeUse> {
    let podman = if rootless && !super::connect::in_toolbox() {
        super::connect::find_podman().map_err(|e| format!("{e:#}"))
    } else {
        Ok(std::path::PathBuf::from("podman"))
    };
    let each = volumes.iter().map(|v| {
        let podman = &podman;
        async move {
            let (bytes, note) = if super::connect::in_toolbox() {
                (
                    None,
                    Some("not measured inside a toolbox (its user namespace cannot read Podman's volumes): run `devaipod status` on the host".to_string()),
                )
            } else if v.driver != "local" || v.mountpoint.is_empty() {
                (
                    None,
                    Some(format!(
                        "not measured: Podman gives no local path for it (driver {:?})",
                        v.driver
                    )),
                )
            } else {
                match podman {
                    Err(e) => (None, Some(format!("cannot run du: {e}"))),
                    Ok(p) => {
                        let argv = du_command(rootless, p, &v.mountpoint);
                        judge(run_bounded(&argv, timeout).await, &v.mountpoint, timeout)
                    }
                }
            };
            VolumeUse {
                volume: v.name.clone(),
                bytes,
                limit: v.size_limit(),
                note,
            }
        }
    });
    futures_util::future::join_all(each).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 253:3 / /var/lib/containers rw,relatime shared:5 - xfs /dev/mapper/vg-podman rw,attr2,inode64,logbufs=8,logbsize=32k,prjquota
41 27 253:4 / /srv/with\\040space rw,relatime - xfs /dev/sdb1 rw,attr2,inode64,noquota
42 27 253:5 / /srv/counted rw,relatime - xfs /dev/sdc1 rw,attr2,inode64,pqnoenforce
";

    #[test]
    fn the_mount_is_found_by_device_with_its_superblock_options() {
        let m = mount_of(MOUNTINFO, 253, 3).expect("253:3");
        assert_eq!(m.mount_point, "/var/lib/containers");
        assert_eq!(m.fs_type, "xfs");
        assert!(m.super_options.iter().any(|o| o == "prjquota"));
        assert_eq!(
            mount_of(MOUNTINFO, 253, 4).expect("253:4").mount_point,
            "/srv/with space"
        );
        assert_eq!(mount_of(MOUNTINFO, 254, 0).expect("root").fs_type, "ext4");
        assert_eq!(mount_of(MOUNTINFO, 9, 9), None);
        assert_eq!(mount_of("garbage\n\n", 254, 0), None);
    }

    /// The plan of both cases: only rootful XFS with prjquota enforces a size. Untested
    /// against a real XFS here: this kernel's XFS has no quota support.
    #[test]
    fn only_rootful_xfs_with_project_quota_enforces_a_size() {
        let path = "/var/lib/containers/storage/volumes";
        let at = |dev: u64| mount_of(MOUNTINFO, 253, dev).ok_or("none".to_string());
        assert_eq!(quota_of(false, path, at(3)), VolumeQuota::Enforced);
        let not = |q: VolumeQuota| match q {
            VolumeQuota::NotEnforced(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            not(quota_of(true, path, at(3))),
            "Podman runs rootless, and it holds a volume to a size only with an XFS project quota, which only a rootful engine can set"
        );
        assert_eq!(
            not(quota_of(false, path, at(4))),
            "Podman's volumes (/var/lib/containers/storage/volumes) are on XFS (mounted at /srv/with space) without project quota: mount it with prjquota for Podman to hold volumes to a size"
        );
        assert!(not(quota_of(false, path, at(5))).contains("(pqnoenforce)"));
        assert_eq!(
            not(quota_of(
                false,
                path,
                mount_of(MOUNTINFO, 254, 0).ok_or(String::new())
            )),
            "Podman's volumes (/var/lib/containers/storage/volumes) are on ext4 (mounted at /), and Podman holds a volume to a size only on XFS mounted with project quota (prjquota)"
        );
        assert_eq!(
            not(quota_of(false, path, Err("permission denied".into()))),
            "devaipod could not tell what Podman's volumes (/var/lib/containers/storage/volumes) are stored on: permission denied"
        );
    }

    #[test]
    fn this_hosts_own_root_is_found() {
        // The real lookup, on a path every host has.
        let m = mount_of_path(Path::new("/")).expect("the root's mount");
        assert!(!m.fs_type.is_empty(), "{m:?}");
    }

    #[test]
    fn a_volumes_limit_is_its_size_option() {
        let v = |o: serde_json::Value| -> VolumeEntry {
            serde_json::from_value(serde_json::json!({"Name": "v", "Driver": "local", "Mountpoint": "/m", "Options": o}))
                .expect("entry")
        };
        assert_eq!(
            v(serde_json::json!({"o": "size=1073741824", "SIZE": "1073741824"})).size_limit(),
            Some(1 << 30)
        );
        assert_eq!(
            v(serde_json::json!({"o": "nodev,size=2048"})).size_limit(),
            Some(2048)
        );
        assert_eq!(v(serde_json::json!({})).size_limit(), None);
        assert_eq!(v(serde_json::Value::Null).size_limit(), None);
    }

    #[test]
    fn du_runs_in_the_users_namespace_when_rootless() {
        let podman = Path::new("/usr/bin/podman");
        let rootful = du_command(false, podman, "/v/_data");
        assert_eq!(rootful[..2], ["/bin/sh", "-c"]);
        assert_eq!(rootful[3..], ["sh", "/v/_data"]);
        assert!(
            rootful[2].contains("du -s -x -k -- \"$1\""),
            "{}",
            rootful[2]
        );
        assert!(!rootful[2].contains("-L"), "{}", rootful[2]);
        let rootless = du_command(true, podman, "/v/_data");
        assert_eq!(rootless[..3], ["/usr/bin/podman", "unshare", "/bin/sh"]);
        assert_eq!(rootless[2..], rootful[..]);
    }

    #[test]
    fn du_output_is_read_for_its_own_path_only() {
        assert_eq!(
            parse_du(b"20484\t/v/_data\n", "/v/_data"),
            Some(20484 * 1024)
        );
        assert_eq!(parse_du(b"20484\t/other\n", "/v/_data"), None);
        assert_eq!(parse_du(b"lots\t/v/_data\n", "/v/_data"), None);
        assert_eq!(parse_du(b"", "/v/_data"), None);
        let t = Duration::from_secs(10);
        let exited = |success: bool, out: &[u8], err: &[u8]| Bounded::Exited {
            success,
            stdout: out.to_vec(),
            stderr: err.to_vec(),
        };
        assert_eq!(
            judge(exited(true, b"4\t/p\n", b""), "/p", t),
            (Some(4096), None)
        );
        assert_eq!(
            judge(exited(false, b"4\t/p\n", b"du: cannot read directory '/p/x'\n"), "/p", t),
            (
                Some(4096),
                Some("at least this much: du could not read all of it (du: cannot read directory '/p/x')".into())
            )
        );
        assert_eq!(
            judge(exited(false, b"", b"\ndu: memory exhausted\n"), "/p", t),
            (None, Some("du failed: du: memory exhausted".into()))
        );
        assert_eq!(
            judge(Bounded::TimedOut, "/p", t),
            (None, Some("timed out after 10s".into()))
        );
    }

    /// A hostile tree: links to the host's large folders and to themselves, a hard link,
    /// a deep chain of folders. Only the volume's own blocks are counted, once.
    #[tokio::test]
    async fn the_measure_stays_inside_the_volume() {
        let dir = tempfile::tempdir().expect("tmp");
        let v = dir.path().join("_data");
        std::fs::create_dir(&v).expect("mkdir");
        std::fs::write(v.join("big"), vec![7u8; 1 << 20]).expect("write");
        std::fs::hard_link(v.join("big"), v.join("big-again")).expect("link");
        for (link, to) in [
            ("root", "/"),
            ("usr", "/usr"),
            ("loop-a", "loop-b"),
            ("loop-b", "loop-a"),
            ("up", ".."),
        ] {
            std::os::unix::fs::symlink(to, v.join(link)).expect("symlink");
        }
        let mut deep = v.clone();
        for _ in 0..40 {
            deep = deep.join("d");
        }
        std::fs::create_dir_all(&deep).expect("deep");
        std::os::unix::fs::symlink("/usr", deep.join("usr")).expect("symlink");
        let path = v.display().to_string();
        let t = Duration::from_secs(30);
        let (bytes, note) = judge(
            run_bounded(&du_command(false, Path::new("podman"), &path), t).await,
            &path,
            t,
        );
        assert_eq!(note, None);
        let bytes = bytes.expect("measured");
        // 1 MiB once, plus the folders' own blocks (at most 4 KiB each here).
        assert!((1 << 20..(1 << 20) + 64 * 4096).contains(&bytes), "{bytes}");
    }

    #[tokio::test]
    async fn a_command_past_its_time_is_killed_with_its_group() {
        let dir = tempfile::tempdir().expect("tmp");
        let pid_file = dir.path().join("pid");
        // The grandchild (as du is under `podman unshare`) writes its pid, then sleeps.
        let script = format!(
            "sh -c 'echo $$ > {}; exec sleep 30' & wait",
            pid_file.display()
        );
        let start = std::time::Instant::now();
        let ended = run_bounded(
            &["/bin/sh".into(), "-c".into(), script],
            Duration::from_millis(500),
        )
        .await;
        assert!(matches!(ended, Bounded::TimedOut), "{ended:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("number");
        // Killed: gone, or a zombie until its parent (also killed) is reaped by init.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let alive = state
                .as_deref()
                .and_then(|s| s.rsplit_once(") "))
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            if !alive {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild {pid} still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn output_beyond_the_limit_is_drained_not_kept() {
        let ended = run_bounded(
            &[
                "/bin/sh".into(),
                "-c".into(),
                "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2".into(),
            ],
            Duration::from_secs(30),
        )
        .await;
        let Bounded::Exited {
            success,
            stdout,
            stderr,
        } = ended
        else {
            panic!("{ended:?}");
        };
        assert!(success);
        assert_eq!(
            (stdout.len(), stderr.len()),
            (DU_OUTPUT_LIMIT, DU_OUTPUT_LIMIT)
        );
    }
}
