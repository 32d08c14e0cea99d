//! `devaipod doctor` on a real engine: on the test machine (both legs) every check `up`
//! needs passes and its probe container (opencode, hardened like the agent) leaves
//! nothing; for a user made just now, with no subordinate ids, no runtime directory and
//! an empty image store, it names each missing piece with its fix and exits 1, and when
//! that user's Podman lock file is emptied under its state, it names the lost locks.

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::pod::{BASE_IMAGE, devaipod, devaipod_bin, podman_ok, require_image, stderr};

/// The opencode version the bundled image is built with (containers/base/build.sh).
pub(crate) fn bundled_opencode_version() -> &'static str {
    include_str!("../../containers/base/build.sh")
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_VERSION="))
        .expect("OPENCODE_VERSION in containers/base/build.sh")
}

/// The checks of a `doctor --json` run, by name: (status, detail, fix).
fn checks(o: &Output) -> Vec<(String, String, String, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    });
    let failed = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(
        v["ok"], !failed,
        "ok is false exactly when a check failed: {v}"
    );
    assert_eq!(o.status.code(), Some(if failed { 1 } else { 0 }), "{v}");
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (s("name"), s("status"), s("detail"), s("fix"))
        })
        .collect()
}

#[track_caller]
fn status_of<'a>(checks: &'a [(String, String, String, String)], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.1.as_str())
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

fn probes_left() -> String {
    podman_ok(&[
        "ps",
        "-a",
        "--filter",
        "name=devaipod-doctor-probe-",
        "--format",
        "{{.Names}}",
    ])
}

#[test]
fn doctor_passes_here_and_its_probe_leaves_nothing() {
    require_image(BASE_IMAGE);
    let o = devaipod(&["doctor", "--json"]);
    let c = checks(&o);
    assert!(o.status.success(), "{c:?}\n{}", stderr(&o));
    for (name, status, detail, _) in &c {
        assert!(
            ["ok", "warn", "skip"].contains(&status.as_str()),
            "{name}: {status} {detail}"
        );
    }
    let version = podman_ok(&["version", "--format", "{{.Server.Version}}"]);
    let engine = c.iter().find(|c| c.0 == "engine").expect("engine check");
    assert!(
        engine.2.contains(&format!("Podman {}", version.trim())),
        "{engine:?}"
    );
    let rootless = nix::unistd::geteuid().as_raw() != 0;
    assert!(
        engine
            .2
            .contains(if rootless { "(rootless)" } else { "(rootful)" }),
        "{engine:?}"
    );
    if rootless {
        for name in [
            "runtime-dir",
            "subuid",
            "subgid",
            "newuidmap",
            "newgidmap",
            "tun",
        ] {
            assert_eq!(status_of(&c, name), "ok", "{c:?}");
        }
    } else {
        assert_eq!(status_of(&c, "rootless"), "skip", "{c:?}");
    }
    for name in [
        "podman",
        "devaipod-net",
        "engine",
        "bundled-image",
        "locks",
        "opencode",
    ] {
        assert_eq!(status_of(&c, name), "ok", "{c:?}");
    }
    let opencode = c.iter().find(|c| c.0 == "opencode").expect("opencode");
    assert!(
        opencode.2.contains(bundled_opencode_version()),
        "the probe ran the image's opencode: {opencode:?}"
    );
    assert_eq!(probes_left(), "", "the probe container was removed");
}

/// A system user made for the test (no subordinate ids, no runtime directory, an
/// empty image store), removed with everything it made when the test ends.
struct NewUser {
    name: &'static str,
    uid: u32,
}

impl NewUser {
    fn make(name: &'static str) -> Self {
        remove_user(name);
        let o = Command::new("useradd")
            .args([
                "-r",
                "-m",
                "-d",
                &format!("/home/{name}"),
                "-s",
                "/bin/bash",
                name,
            ])
            .output()
            .expect("useradd runs");
        assert!(o.status.success(), "useradd: {}", stderr(&o));
        let uid = nix::unistd::User::from_name(name)
            .expect("getpwnam")
            .expect("the user exists")
            .uid
            .as_raw();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            assert!(
                !text.lines().any(|l| l.starts_with(&format!("{name}:"))),
                "a system user gets no subordinate ids, but {file} has one for {name}"
            );
        }
        Self { name, uid }
    }

    /// `devaipod doctor --json` as this user, with `runtime_dir` as XDG_RUNTIME_DIR.
    fn doctor(&self, runtime_dir: &str) -> Output {
        self.command(runtime_dir)
            .arg(devaipod_bin())
            .args(["doctor", "--json"])
            .output()
            .expect("runuser runs")
    }

    /// `podman ARGS` as this user, which must succeed.
    fn podman(&self, runtime_dir: &str, args: &[&str]) {
        let o = self
            .command(runtime_dir)
            .arg("podman")
            .args(args)
            .output()
            .expect("runuser runs");
        assert!(
            o.status.success(),
            "podman {args:?} as {}: {}",
            self.name,
            stderr(&o)
        );
    }

    /// A command line that runs what is added to it as this user, in a clean
    /// environment with `runtime_dir` as XDG_RUNTIME_DIR.
    fn command(&self, runtime_dir: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", self.name, "--", "env", "-i"])
            .arg(format!("HOME=/home/{}", self.name))
            .arg(format!("USER={}", self.name))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("XDG_RUNTIME_DIR={runtime_dir}"));
        if let Some(conf) = std::env::var_os("CONTAINERS_CONF") {
            let mut kv = std::ffi::OsString::from("CONTAINERS_CONF=");
            kv.push(conf);
            cmd.arg(kv);
        }
        cmd.current_dir("/");
        cmd
    }
}

impl Drop for NewUser {
    fn drop(&mut self) {
        remove_user(self.name);
        for dir in [
            format!("/tmp/podman-run-{}", self.uid),
            format!("/tmp/containers-user-{}", self.uid),
            format!("/tmp/storage-run-{}", self.uid),
        ] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes `name` and its home, after ending its processes (rootless Podman leaves a
/// pause process that holds its user namespace).
fn remove_user(name: &str) {
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        return;
    }
    let _ = Command::new("pkill").args(["-KILL", "-u", name]).status();
    let o = Command::new("userdel")
        .args(["-r", name])
        .output()
        .expect("userdel runs");
    // userdel says the mail spool is missing; anything else is a failure.
    assert!(
        nix::unistd::User::from_name(name).ok().flatten().is_none(),
        "userdel {name}: {}",
        stderr(&o)
    );
}

#[test]
#[ignore = "makes and removes a system user: run as root on the rootful leg (just test-rootful)"]
fn doctor_names_each_piece_a_new_user_lacks() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test makes a user: run it as root (just test-rootful runs it)"
    );
    // As tests/test-user.sh does for the rootless leg: rootless networking needs it.
    let tun = std::fs::metadata("/dev/net/tun").expect("/dev/net/tun");
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&tun.permissions()) & 0o006 == 0o006,
        "/dev/net/tun must be 0666 on the test machine (tests/test-user.sh makes it so)"
    );
    let user = NewUser::make("dvp-doctor");

    // Before its runtime directory exists: Podman and devaipod fall back to /tmp (a
    // warning); the subordinate ids and the bundled image are missing (failures).
    let missing = format!("/run/user/{}", user.uid);
    assert!(!std::path::Path::new(&missing).exists(), "{missing} exists");
    let c = checks(&user.doctor(&missing));
    let want = [
        ("podman", "ok"),
        ("runtime-dir", "warn"),
        ("subuid", "fail"),
        ("subgid", "fail"),
        ("newuidmap", "ok"),
        ("newgidmap", "ok"),
        ("tun", "ok"),
        ("engine", "ok"),
        ("bundled-image", "fail"),
        ("locks", "ok"),
        ("opencode", "skip"),
        // Its environment holds no provider key.
        ("providers", "warn"),
    ];
    for (name, status) in want {
        assert_eq!(status_of(&c, name), status, "{name}: {c:?}");
    }
    let fix = |name: &str| {
        c.iter()
            .find(|c| c.0 == name)
            .map(|c| c.3.clone())
            .unwrap_or_default()
    };
    assert!(fix("runtime-dir").contains(&missing), "{c:?}");
    assert_eq!(
        fix("subuid"),
        "sudo usermod --add-subuids 100000-165535 dvp-doctor"
    );
    assert_eq!(
        fix("subgid"),
        "sudo usermod --add-subgids 100000-165535 dvp-doctor"
    );
    assert!(fix("bundled-image").contains("just image"), "{c:?}");
    // Every check that is not ok says how to fix it.
    for (name, status, detail, fix) in &c {
        if status == "fail" || status == "warn" {
            assert!(!fix.is_empty(), "{name}: {detail}: no fix");
        }
    }

    // A runtime directory that is someone else's: Podman cannot use it either.
    let foreign = tempfile::tempdir().expect("tempdir");
    let c = checks(&user.doctor(&foreign.path().display().to_string()));
    assert_eq!(status_of(&c, "runtime-dir"), "fail", "{c:?}");
    let runtime = c
        .iter()
        .find(|c| c.0 == "runtime-dir")
        .expect("runtime-dir");
    assert!(runtime.2.contains("belongs to uid 0"), "{runtime:?}");

    // Podman's lock file emptied while its state stays (what clearing /dev/shm does):
    // Podman makes a new file silently, and the objects it knows hold no lock in it.
    user.podman(&missing, &["volume", "create", "dvpt-doctor-locks"]);
    let lock_file = format!("/dev/shm/libpod_rootless_lock_{}", user.uid);
    let c = checks(&user.doctor(&missing));
    assert_eq!(status_of(&c, "locks"), "ok", "{c:?}");
    std::fs::remove_file(&lock_file).expect("the user's lock file is there");
    let c = checks(&user.doctor(&missing));
    assert_eq!(status_of(&c, "locks"), "fail", "{c:?}");
    let locks = c.iter().find(|c| c.0 == "locks").expect("locks");
    assert!(
        locks.2.contains(&lock_file) && locks.2.contains("0 locks in use for 1 "),
        "{locks:?}"
    );
    assert_eq!(
        locks.3,
        "with no other podman command running, run `podman system renumber` as this user"
    );
    // The fix it names is the fix.
    user.podman(&missing, &["system", "renumber"]);
    let c = checks(&user.doctor(&missing));
    assert_eq!(status_of(&c, "locks"), "ok", "{c:?}");
}
