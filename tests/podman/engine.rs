//! devaipod's connection to Podman: `CONTAINER_HOST`, and the private `podman system
//! service` it starts otherwise, which must not outlive it (Ctrl-C or SIGKILL).

use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, BROKEN_IMAGE, TestPod, alive, devaipod_bin, json_of, private_service,
    require_image, require_no_user_service, stderr,
};
use crate::common::wait_until;

/// A pod whose agent never answers: the test image hangs in a repo folder named *hang*.
fn hanging_pod(test: &str) -> TestPod {
    TestPod::new(test)
        .repo_prefix("devaipod-test-hang-")
        .config(r#"{"image": "localhost/devaipod-test-broken:latest"}"#)
        .build()
}

/// Spawns `-v up` of `p` (whose agent never answers) and returns once it is waiting for
/// the agent (read from its progress output), with everything it printed so far.
fn spawn_hanging_up(p: &TestPod) -> (Child, std::io::BufReader<ChildStderr>, String) {
    let (path, label) = (p.path(), p.label_arg());
    let mut args = vec!["-v"];
    args.extend(p.up_args(&path, &label, &["--timeout", "600"]));
    let mut child = Command::new(devaipod_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("read");
        assert!(
            n > 0,
            "devaipod exited before waiting for the agent: {seen}"
        );
        seen.push_str(&line);
        if line.contains("waiting for the agent") {
            break;
        }
    }
    (child, err, seen)
}

#[test]
fn interrupting_up_removes_what_it_created() {
    require_image(BROKEN_IMAGE);
    let p = hanging_pod("sigint");
    let (mut child, mut err, seen) = spawn_hanging_up(&p);
    assert_eq!(p.pods().len(), 1, "the pod should exist while up waits");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    let status = child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    p.assert_nothing_left();
    // The private podman service it started is gone too.
    if let Some((socket, pid)) = private_service(&seen) {
        assert!(
            !alive(pid),
            "podman service {pid} ({socket}) outlived devaipod"
        );
        assert!(!Path::new(&socket).exists(), "{socket} was left behind");
    }
}

#[test]
fn killing_devaipod_takes_its_private_service_down() {
    require_image(BROKEN_IMAGE);
    // With a service listening devaipod would start none, and this test would check
    // nothing: that is a failure with instructions, never a pass.
    require_no_user_service();
    let p = hanging_pod("sigkill");
    let (mut child, _err, seen) = spawn_hanging_up(&p);
    let (socket, pid) = private_service(&seen).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("devaipod used an existing socket although none listened before:\n{seen}")
    });
    assert!(alive(pid), "service {pid} should run while devaipod does");
    child.kill().expect("SIGKILL devaipod");
    child.wait().expect("wait");
    // The parent-death signal makes the service exit; wait for that, bounded.
    wait_until(
        &format!("podman service {pid} ({socket}) exits after SIGKILL of devaipod"),
        std::time::Duration::from_secs(20),
        || !alive(pid),
    );
}

#[test]
fn container_host_is_honoured() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("chost").config(BASE_CONFIG).build();
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("podman.sock");
    let service = crate::common::PodmanService::start(&socket);
    let out = Command::new(devaipod_bin())
        .args([
            "-v",
            "up",
            &p.path(),
            "--name",
            p.name(),
            "--dry-run",
            "--json",
        ])
        .env("CONTAINER_HOST", format!("unix://{}", socket.display()))
        .output()
        .expect("runs");
    drop(service);
    let v = json_of(&out);
    assert_eq!(v["image"]["state"], "present");
    let log = stderr(&out);
    assert!(
        log.lines().any(|l| l.contains("connected to podman")
            && l.contains(&socket.display().to_string())
            && l.contains("existing socket")),
        "{log}"
    );
    assert!(!log.contains("started a private podman service"), "{log}");
    p.assert_nothing_left();
}
