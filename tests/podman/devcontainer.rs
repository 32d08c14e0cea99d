//! devcontainer.json properties in a real pod: lifecycle commands, mounts, forwarded
//! ports, hostRequirements, runArgs and capabilities, initializeCommand on the host.

use std::process::{Command, Stdio};

use crate::common::pod::{
    BASE_IMAGE, Rm, TestPod, assert_ok, devaipod, devaipod_bin, image_store_lock, json_of,
    podman_ok, require_image, stderr,
};
use crate::common::{assert_fails_with, wait_until};

#[test]
fn lifecycle_commands_run_in_the_workspace_in_order() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("lifecycle")
        .config(
            r#"{
  "image": "localhost/devaipod-base:latest",
  "remoteUser": "dev",
  "onCreateCommand": "echo oncreate >> /tmp/lifecycle && id -un >> /tmp/lifecycle && pwd >> /tmp/lifecycle",
  "updateContentCommand": ["sh", "-c", "echo update >> /tmp/lifecycle; echo \"$LC_PATH|$LC_PLAIN|$LC_CE\" > /tmp/remote-env"],
  "postCreateCommand": "echo postcreate >> /tmp/lifecycle; echo visible-output",
  "postStartCommand": {"a": "echo start >> /tmp/start-a", "b": ["sh", "-c", "echo start >> /tmp/start-b"]},
  "remoteEnv": {"LC_PATH": "${containerEnv:PATH}:/extra", "LC_PLAIN": "plain"},
  "containerEnv": {"LC_CE": "ce"},
}"#,
        )
        .build();
    let out = p.up(&["--json"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("[postCreateCommand] visible-output"),
        "{}",
        stderr(&out)
    );
    let folder = p.folder();
    let log = p.in_workspace(None, "cat /tmp/lifecycle");
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["oncreate", "dev", folder.as_str(), "update", "postcreate"]
    );
    for f in ["/tmp/start-a", "/tmp/start-b"] {
        assert_eq!(p.in_workspace(None, &format!("cat {f}")), "start\n", "{f}");
    }
    // remoteEnv reaches the commands, its ${containerEnv:...} resolved in the container.
    let path_in = p.in_workspace(None, "printenv PATH");
    assert_eq!(
        p.in_workspace(None, "cat /tmp/remote-env").trim(),
        format!("{}:/extra|plain|ce", path_in.trim())
    );
    // Never in the agent.
    assert_eq!(
        p.in_agent("ls /tmp/lifecycle 2>/dev/null | wc -l").trim(),
        "0"
    );
    // postStartCommand runs again at every start; the create commands do not.
    for cmd in ["stop", "start"] {
        assert_ok(cmd, &devaipod(&[cmd, p.name()]));
    }
    assert_eq!(p.in_workspace(None, "cat /tmp/start-a"), "start\nstart\n");
    assert_eq!(
        p.in_workspace(None, "grep -c oncreate /tmp/lifecycle")
            .trim(),
        "1"
    );
}

#[test]
fn a_failing_lifecycle_command_stops_up_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("lcfail")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "postCreateCommand": "echo about-to-fail; exit 7"}"#,
        )
        .build();
    let out = p.up_fails(&[], "postCreateCommand failed with exit code 7");
    assert!(stderr(&out).contains("about-to-fail"), "{}", stderr(&out));
}

#[test]
fn repo_mounts_reach_the_workspace_only() {
    require_image(BASE_IMAGE);
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("hello.txt"), "from-host\n").expect("write");
    let vol = format!("dvpt-cache-{}", std::process::id());
    let _rm = Rm::volume(vol.clone());
    let p = TestPod::new("mounts")
        .config(&format!(
            r#"{{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
            "mounts": ["source={vol},target=/cache,type=volume", {{"type": "tmpfs", "target": "/scratch"}},
                       "type=bind,source={},target=/data,readonly"]}}"#,
            host.path().display()
        ))
        .up_with(&["--trust"]);
    let seen = p.in_workspace(
        None,
        "cat /data/hello.txt; grep -c ' /scratch tmpfs ' /proc/mounts; grep -c ' /cache ' /proc/mounts; touch /data/x 2>/dev/null && echo rw || echo ro",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["from-host", "1", "1", "ro"]
    );
    let agent_sees = p.in_agent("ls /data /cache /scratch 2>/dev/null | wc -l");
    assert_eq!(agent_sees.trim(), "0", "the agent got a repo mount");
}

#[test]
fn forwarded_ports_are_reachable_on_the_hosts_loopback() {
    require_image(BASE_IMAGE);
    let config = r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev", "forwardPorts": [3999]}"#;
    let p1 = TestPod::new("ports1").config(config).up();
    let p2 = TestPod::new("ports2").config(config).up();
    let host_port = |p: &TestPod| -> u16 {
        let v = json_of(&devaipod(&["ports", p.name(), "--json"]));
        assert_eq!(v[0]["container_port"], 3999, "{v}");
        assert_eq!(v[0]["host_ip"], "127.0.0.1", "{v}");
        v[0]["host_port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("host port")
    };
    let (h1, h2) = (host_port(&p1), host_port(&p2));
    assert_ne!(h1, h2, "two pods got the same host port");
    let status = p1.status();
    assert_eq!(status["ports"][0]["host_port"], h1);

    // A server in the workspace on 3999 answers the host on the published port.
    podman_ok(&[
        "exec",
        "-d",
        "--user",
        "dev",
        &p1.workspace(),
        "opencode",
        "serve",
        "--hostname",
        "0.0.0.0",
        "--port",
        "3999",
    ]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{h1}").parse().expect("addr");
    wait_until(
        &format!("the server answers on {addr}"),
        std::time::Duration::from_secs(60),
        || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                        .ok()?;
                    s.write_all(b"GET /global/health HTTP/1.0\r\n\r\n").ok()?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf).ok()?;
                    buf.contains("healthy").then_some(())
                })
                .is_some()
        },
    );
}

#[test]
fn host_requirements_limit_the_workspace() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("hostreq")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "hostRequirements": {"cpus": 1.5, "memory": "1gb", "storage": "10gb"}}"#,
        )
        .build();
    let out = p.up(&["--json"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("storage is reported only"),
        "{}",
        stderr(&out)
    );
    let limits = podman_ok(&[
        "inspect",
        &p.workspace(),
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}}",
    ]);
    let cgroup2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if nix::unistd::geteuid().is_root() || cgroup2 {
        // Enforced rootful and on cgroup v2; rootless cgroup v1 ignores limits, with a warning.
        assert_eq!(limits.trim(), "1073741824 150000");
        let cg = p.in_workspace(
            None,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        );
        assert_eq!(cg.trim(), "1073741824");
    } else {
        assert!(
            stderr(&out).contains("ignores pids, memory and cpu limits"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn run_args_and_capabilities_reach_the_workspace_only() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let p = TestPod::new("runargs")
        .files(&[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev", "overrideCommand": false,
  "capAdd": ["NET_ADMIN"],
  "runArgs": ["--env=RA_ENV=one", "--env-file", ".devcontainer/ra.env", "--label=ra.label=yes",
    "--shm-size=96m", "--ulimit", "nofile=1024:2048", "--ulimit=nproc=2048:4096",
    "--sysctl=kernel.msgmax=65536", "--hostname=ra-box", "--add-host=db.internal:10.1.2.3",
    "--tmpfs", "/ra-scratch", "-v", "dvpt-ra-cache:/ra-cache", "--cap-add=SYS_PTRACE",
    "-w", "/tmp", "--restart=always"]}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!(
                    "FROM {BASE_IMAGE}\nCMD [\"sh\", \"-c\", \"echo image-cmd-ran > /tmp/cmd-marker; exec sleep infinity\"]\n"
                ),
            ),
            (".devcontainer/ra.env", "# from a file\nFROM_FILE=two\n"),
        ])
        .build();
    let path = p.path();
    // Capabilities widen the workspace's access: refused without consent.
    p.up_fails(&[], "runArgs --cap-add SYS_PTRACE, capAdd NET_ADMIN");
    let plan = json_of(&devaipod(&["up", &path, "--dry-run", "--json", "--trust"]));
    let applied = plan["trust"]["applied"].to_string();
    assert!(applied.contains("capAdd NET_ADMIN"), "{applied}");
    let image = Rm::image(plan["image"]["ref"].as_str().expect("ref"));
    let vol = Rm::volume("dvpt-ra-cache");

    let out = p.up(&["--json", "--trust"]);
    json_of(&out);
    assert!(
        stderr(&out).contains("--restart always has no effect"),
        "{}",
        stderr(&out)
    );
    let seen = p.in_workspace(
        None,
        "echo $RA_ENV $FROM_FILE; hostname; cat /proc/sys/kernel/msgmax; grep -c db.internal /etc/hosts; \
         df -B1 /dev/shm | tail -1 | awk '{print $2}'; grep -c ' /ra-scratch tmpfs ' /proc/mounts; \
         grep -c ' /ra-cache ' /proc/mounts; grep 'open files' /proc/1/limits | awk '{print $4\":\"$5}'; \
         cat /tmp/cmd-marker; pwd",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "one two",
            "ra-box",
            "65536",
            "1",
            "100663296",
            "1",
            "1",
            "1024:2048",
            "image-cmd-ran",
            "/tmp"
        ]
    );
    // CAP_NET_ADMIN is bit 12, CAP_SYS_PTRACE bit 19 of the workspace's bounding set.
    let capbnd = p.in_workspace(None, "grep CapBnd /proc/1/status | cut -f2");
    let bits = u64::from_str_radix(capbnd.trim(), 16).expect("hex");
    assert!(bits & (1 << 12) != 0 && bits & (1 << 19) != 0, "{capbnd}");
    let label = podman_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ra.label\"}}",
        &p.workspace(),
    ]);
    assert_eq!(label.trim(), "yes");
    // None of it reaches the agent.
    let agent_sees = p.in_agent(
        "echo \"${RA_ENV:-none}\"; hostname; grep -c ' /ra-cache ' /proc/mounts; grep CapBnd /proc/1/status | cut -f2",
    );
    let lines: Vec<&str> = agent_sees.lines().collect();
    assert_eq!(lines[0], "none");
    assert_ne!(lines[1], "ra-box");
    assert_eq!(lines[2], "0");
    assert_eq!(lines[3], "0000000000000000");
    // The pod goes first: its containers use the image and the volume.
    drop(p);
    drop(vol);
    drop(image);
}

#[test]
fn initialize_command_runs_on_the_host_only_after_approval() {
    require_image(BASE_IMAGE);
    let state = tempfile::tempdir().expect("tempdir");
    let marker_dir = tempfile::tempdir().expect("tempdir");
    let marker = marker_dir.path().join("ran");
    let config = |extra: &str| {
        format!(
            r#"{{"image": "{BASE_IMAGE}", "initializeCommand": "pwd >> {}; echo {extra} >> {}; echo init-output"}}"#,
            marker.display(),
            marker.display()
        )
    };
    let p = TestPod::new("init")
        .config(&config("one"))
        .env("XDG_STATE_HOME", state.path().to_string_lossy())
        .build();
    let path = p.path();
    let runs = || std::fs::read_to_string(&marker).unwrap_or_default();

    // No terminal, no --trust, nothing remembered: refused, nothing ran or was made.
    p.up_fails(
        &[],
        "initializeCommand runs on your host and was not approved",
    );
    assert_eq!(runs(), "");
    let plan = json_of(&p.up(&["--dry-run", "--json"]));
    assert_eq!(plan["initialize"]["approved"], false, "{plan}");

    // --trust approves it: it runs on the host, in the repo folder, before the pod.
    let out = p.up(&["--trust"]);
    assert_ok("up --trust", &out);
    assert!(
        stderr(&out).contains("[initializeCommand] init-output"),
        "{}",
        stderr(&out)
    );
    assert_eq!(runs(), format!("{path}\none\n"));
    p.delete(&[]);

    // Remembered: runs again without asking.
    assert_ok("up (remembered)", &p.up(&[]));
    assert_eq!(runs().lines().filter(|l| *l == "one").count(), 2);
    p.delete(&[]);

    // A changed command asks again; on a terminal, "y" approves it.
    std::fs::write(
        p.repo().join(".devcontainer/devcontainer.json"),
        config("two"),
    )
    .expect("write");
    crate::common::git(p.repo(), &["commit", "-qam", "changed"]);
    let out = p.up(&[]);
    assert_fails_with(&out, "was not approved");
    assert!(!runs().contains("two"));
    let cmdline = format!(
        "{} up {path} --name {} --label {}",
        devaipod_bin().display(),
        p.name(),
        p.label_arg()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs (package bsdutils)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"y\n").expect("answer");
    }
    let out = child.wait_with_output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("runs on THIS HOST"), "{text}");
    assert!(runs().contains("two"));
}

#[test]
fn a_failing_initialize_command_stops_up_before_anything_is_made() {
    let p = TestPod::new("initfail")
        .config(&format!(
            r#"{{"image": "{BASE_IMAGE}", "initializeCommand": ["sh", "-c", "echo init-said-no; exit 3"]}}"#
        ))
        .build();
    let out = p.up_fails(
        &["--trust"],
        "initializeCommand failed on the host with exit status: 3",
    );
    assert!(stderr(&out).contains("init-said-no"), "{}", stderr(&out));
}

/// A repo without any devcontainer.json runs in the bundled image, and `up` says so.
#[test]
fn a_repo_without_devcontainer_json_runs_in_the_bundled_image() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("nodc")
        .files(&[("README.md", "no configuration here\n")])
        .build();
    let plan = p.dry_run(&[]);
    assert_eq!(plan["image"]["ref"], BASE_IMAGE, "{plan}");
    assert!(
        plan["image"]["source"]
            .as_str()
            .is_some_and(|s| s.contains("no devcontainer.json")),
        "{plan}"
    );
    let out = p.up(&["--json"]);
    json_of(&out);
    let said = stderr(&out);
    assert_eq!(
        said.matches("has no devcontainer.json: running the bundled image")
            .count(),
        1,
        "{said}"
    );
    assert_eq!(p.in_agent("echo alive").trim(), "alive");
    assert_eq!(
        p.in_workspace(None, &format!("cat {}/README.md", p.folder()))
            .trim(),
        "no configuration here"
    );
}
