//! devaipod inside a real toolbox container, driving the host's rootless Podman: run by
//! `just test-toolbox` as the rootless test user (it needs podman-toolbox, a D-Bus
//! system daemon and localhost/devaipod-test-toolbox; the recipe provides them). It
//! fails loudly when any of that is missing; it never skips.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::pod::{BASE_IMAGE, TestPod, devaipod_bin, require_image};

const TOOLBOX_IMAGE: &str = "localhost/devaipod-test-toolbox:latest";

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("runs")
}

#[track_caller]
fn ok(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The toolbox container, removed on drop.
struct Toolbox(String);

impl Drop for Toolbox {
    fn drop(&mut self) {
        let _ = Command::new("toolbox").args(["rm", "-f", &self.0]).output();
    }
}

/// Removes files on drop (a test key in the test user's ~/.ssh).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn devaipod_in_a_toolbox_uses_the_hosts_podman() {
    let runtime = PathBuf::from(
        std::env::var_os("XDG_RUNTIME_DIR").expect("XDG_RUNTIME_DIR is set (just test-toolbox)"),
    );
    assert_ne!(
        nix::unistd::geteuid().as_raw(),
        0,
        "run this as the rootless test user (just test-toolbox)"
    );
    require_image(BASE_IMAGE);
    require_image(TOOLBOX_IMAGE);
    let socket = runtime.join("podman/podman.sock");
    std::fs::create_dir_all(socket.parent().expect("dir")).expect("mkdir");
    let _ = std::fs::remove_file(&socket);
    let _service = common::PodmanService::start(&socket);

    let run_id = std::process::id();
    let boxname = format!("dvp-toolbox-{run_id}");
    ok(
        "toolbox create",
        &run(Command::new("toolbox").args(["create", "--image", TOOLBOX_IMAGE, &boxname])),
    );
    let _box = Toolbox(boxname.clone());
    // The repo lives in /tmp, which the toolbox shares with the host.
    let p = TestPod::new("toolbox")
        .repo_in("/tmp")
        .repo_prefix("devaipod-tb-repo-")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .build();
    let name = p.name().to_string();
    let bin = devaipod_bin().display().to_string();
    let in_box = |args: &[&str]| {
        let mut cmd = Command::new("toolbox");
        cmd.args(["run", "-c", &boxname, &bin]).args(args);
        run(&mut cmd)
    };
    // Inside the toolbox: it is one, and devaipod brings the pod up on the host.
    ok(
        "toolbox marker",
        &run(Command::new("toolbox").args([
            "run",
            "-c",
            &boxname,
            "test",
            "-e",
            "/run/.toolboxenv",
        ])),
    );
    let (path, label) = (p.path(), p.label_arg());
    let up = in_box(&p.up_args(&path, &label, &["--json"]));
    let text = ok("devaipod up inside the toolbox", &up);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["pod"], format!("devaipod-{name}"), "{v}");

    // A pull from inside the toolbox is the host's engine's: through the host user's
    // registries.conf (a rewrite to the test registry), into the host's store.
    let registry = common::registry::Registry::require();
    let tag = registry.tag(&format!("tb-{run_id}"));
    let image = registry.rewritten(&tag);
    let _pulled = common::registry::Pulled::new(&image);
    let q = TestPod::new("tbpull")
        .repo_in("/tmp")
        .repo_prefix("devaipod-tb-repo-")
        .config(&format!(r#"{{"image": "{image}", "remoteUser": "dev"}}"#))
        .build();
    assert!(
        !common::registry::image_exists(&image),
        "{image} is in the store before the test"
    );
    let pulled = in_box(&["image", "pull", &q.path()]);
    let said = ok("devaipod image pull inside the toolbox", &pulled);
    assert!(
        common::registry::image_exists(&image),
        "the host's store has no {image} after the pull inside the toolbox: {said}"
    );

    // The host sees it.
    let listed = ok(
        "devaipod list on the host",
        &run(Command::new(devaipod_bin()).args(["list", "--json"])),
    );
    let list: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let row = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("{name} not listed on the host: {listed}"));
    assert_eq!(row["status"], "running", "{row}");
    assert_eq!(row["agent_ready"], true, "{row}");

    // The agent made from inside the toolbox is confined like any other: its rules were
    // installed by the pod's init container, with no route into the pod from here.
    let _net = common::inet::FakeInternet::require();
    let url = format!("http://{}/", common::inet::ALLOWED_ADDR);
    let curl = |c: &str| {
        run(Command::new("podman").args([
            "exec",
            c,
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            &url,
        ]))
    };
    let ws = curl(&format!("devaipod-{name}-workspace"));
    assert!(
        ws.status.success(),
        "the workspace keeps its access: {}",
        String::from_utf8_lossy(&ws.stderr)
    );
    let agent = curl(&format!("devaipod-{name}-agent"));
    assert!(
        !agent.status.success(),
        "the agent reached {url} directly: {}",
        String::from_utf8_lossy(&agent.stdout)
    );

    // Sessions from inside work too (the podman client in the toolbox).
    let o = in_box(&["ssh", &name, "--", "sh", "-c", "id -un; exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "dev\n");
    // An editor on the host reaches the pod through the entry written inside: its
    // ProxyCommand enters the toolbox (`toolbox run`) to run devaipod's SSH server.
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let key = home.join(format!(".ssh/dvpt-toolbox-{run_id}"));
    let _key = RemoveOnDrop(vec![key.clone(), key.with_extension("pub")]);
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir ~/.ssh");
    ok(
        "ssh-keygen",
        &run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)),
    );
    let entry = ok("ssh-config inside", &in_box(&["ssh-config", &name]));
    let entry = PathBuf::from(entry.trim());
    let text = std::fs::read_to_string(&entry).expect("the entry is on the host");
    assert!(
        text.contains(&format!(
            "ProxyCommand toolbox run --container {boxname} \"{bin}\" ssh-server {name}"
        )),
        "{text}"
    );
    let o = run(Command::new("ssh")
        .arg("-F")
        .arg(&entry)
        .arg("-i")
        .arg(&key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .arg(format!("devaipod-{name}"))
        .arg("id -un; pwd; exit 3")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null()));
    assert_eq!(
        o.status.code(),
        Some(3),
        "ssh from the host: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("dev\n{}\n", p.folder())
    );
    let st = ok("status inside", &in_box(&["status", &name, "--json"]));
    let st: serde_json::Value = serde_json::from_str(&st).expect("JSON");
    assert_eq!(st["sessions"], serde_json::json!([]), "{st}");
    assert_eq!(st["network"]["mode"], "allowlist", "{st}");
    assert!(
        st["network"]["proxy"]["allowed"].is_u64(),
        "the proxy's counts from inside: {st}"
    );

    // Deleted from inside, gone on the host (secrets included).
    ok(
        "devaipod delete inside the toolbox",
        &in_box(&["delete", &name]),
    );
    assert!(
        !entry.exists(),
        "delete removed the SSH entry {}",
        entry.display()
    );
    p.assert_nothing_left();
}
