//! Interrupts and faults on a real engine: SIGINT and SIGTERM (to devaipod alone, or to
//! its whole process group as a terminal's Ctrl-C) at each named step of `up` remove
//! everything that `up` made, secrets included, and exit 130; an interrupted `start`
//! leaves the pod stopped, an interrupted `review` leaves the host repo as it was, an
//! interrupted `delete` leaves the workspace whole; a Podman service that dies midway is
//! reported, `list` marks the half-made pod and `delete` removes it.
//!
//! devaipod stops itself at a step with `DEVAIPOD_TEST_PAUSE_AT` (docs/ci.md). These
//! run on the rootful leg only, after the suite (the Justfile's `test-rootful`): they
//! prove devaipod's own handling, which does not depend on the engine's mode.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, Paused, TestPod, assert_ok, devaipod, json_of, podman_ok, private_service,
    require_image, require_no_user_service, stderr,
};

/// How long devaipod may take to tidy up after an interrupt.
const TIDY: Duration = Duration::from_secs(90);

/// `up` of `p` paused at `step`, sent `sig` (to its group when `group`) and continued:
/// it must exit 130, say it was interrupted, and leave nothing.
#[track_caller]
fn interrupt_up_at(p: &TestPod, step: &str, sig: Signal, group: bool) {
    let (path, label) = (p.path(), p.label_arg());
    let mut paused = Paused::at(p.command(&p.up_args(&path, &label, &[])), step);
    paused.signal_and_continue(sig, group);
    let (code, said) = paused.finish(TIDY);
    assert_eq!(code, Some(130), "{step} {sig}: {said}");
    assert!(said.contains("interrupted"), "{step}: {said}");
    p.assert_nothing_left();
}

#[test]
#[ignore = "fault injection: runs on the rootful leg only (just test-rootful)"]
fn interrupting_up_at_each_step_removes_what_it_made() {
    let _images = crate::common::pod::image_store_lock();
    require_image(BASE_IMAGE);
    let plain = |test: &str| TestPod::new(test).config(BASE_CONFIG).build();
    // Each step, with each way of asking devaipod to stop.
    interrupt_up_at(&plain("int-objects"), "objects", Signal::SIGTERM, false);
    interrupt_up_at(&plain("int-containers"), "containers", Signal::SIGINT, true);
    interrupt_up_at(&plain("int-started"), "started", Signal::SIGINT, false);
    interrupt_up_at(&plain("int-copied"), "copied", Signal::SIGTERM, false);
    // A lifecycle command that would run for ten minutes is cut short.
    let slow = TestPod::new("int-lifecycle")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
                "postCreateCommand": "echo started-the-long-one; sleep 600"}"#,
        )
        .build();
    interrupt_up_at(&slow, "lifecycle", Signal::SIGINT, true);
    // A build: Ctrl-C reaches podman's build too; nothing of the workspace is made.
    let b = TestPod::new("int-build");
    let dockerfile = format!("FROM {BASE_IMAGE}\nRUN echo {}\n", b.name());
    let built = b
        .dockerfile(r#"{"build": {"dockerfile": "Dockerfile"}}"#, &dockerfile)
        .build();
    interrupt_up_at(&built, "build", Signal::SIGINT, true);
}

#[test]
#[ignore = "fault injection: runs on the rootful leg only (just test-rootful)"]
fn interrupting_start_review_and_delete_leaves_each_whole() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("int-cmds").config(BASE_CONFIG).up();
    let name = p.name();

    // start: back to stopped, and a later start works.
    assert_ok("stop", &devaipod(&["stop", name]));
    let mut start = Paused::at(p.command(&["start", name]), "start");
    start.signal_and_continue(Signal::SIGINT, true);
    let (code, said) = start.finish(TIDY);
    assert_eq!(code, Some(130), "{said}");
    let running = podman_ok(&[
        "ps",
        "--filter",
        &format!("pod={}", p.pod()),
        "--filter",
        "status=running",
        "--format",
        "{{.Names}}",
    ]);
    let running: Vec<&str> = running.lines().filter(|l| !l.ends_with("-infra")).collect();
    assert!(
        running.is_empty(),
        "an interrupted start left {running:?} running"
    );
    assert_ok("start again", &p.run(&["start", name]));

    // review: the agent's commit is not fetched; refs, files and temporary files as
    // they were; no job container left.
    let folder = p.folder();
    p.in_agent(&format!(
        "cd {folder} && echo work > agent.txt && git add agent.txt && \
         git -c user.name=a -c user.email=a@example.invalid commit -q -m 'agent work'"
    ));
    let snapshot = || {
        let out = std::process::Command::new("find")
            .arg(p.repo().join(".git"))
            .args(["-printf", "%P %s %T@\n"])
            .output()
            .expect("find");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let before = snapshot();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = p.command(&["review", name, "--no-diff"]);
    cmd.env("TMPDIR", tmp.path());
    let mut review = Paused::at(cmd, "fetch");
    review.signal_and_continue(Signal::SIGTERM, false);
    let (code, said) = review.finish(TIDY);
    assert_eq!(code, Some(130), "{said}");
    assert_eq!(
        snapshot(),
        before,
        "the interrupted review changed the host repo"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let jobs = podman_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.devaipod.pod={name}"),
        "--filter",
        "label=io.devaipod.role=helper",
        "--format",
        "{{.Names}}",
    ]);
    assert!(jobs.trim().is_empty(), "job containers left: {jobs}");

    // delete: interrupted before its removal begins, the workspace stays whole and
    // listed; a second delete removes it all.
    let mut delete = Paused::at(p.command(&["delete", name, "--force"]), "removing");
    delete.signal_and_continue(Signal::SIGINT, true);
    let (code, said) = delete.finish(TIDY);
    assert_eq!(code, Some(130), "{said}");
    let listed = p.listed();
    assert!(listed.get("missing").is_none(), "{listed}");
    assert_eq!(p.in_agent("echo alive").trim(), "alive");
    assert_ok("delete again", &p.run(&["delete", name, "--force"]));
    p.assert_nothing_left();
}

#[test]
#[ignore = "fault injection: runs on the rootful leg only (just test-rootful)"]
fn a_podman_service_that_dies_midway_is_reported_and_cleaned_up() {
    require_image(BASE_IMAGE);
    // The fault is devaipod's private service dying: with another service listening
    // there would be none to kill, and this test would check nothing.
    require_no_user_service();
    let kill_service = |paused: &mut Paused| {
        let (_, pid) = private_service(&paused.said)
            .unwrap_or_else(|| panic!("no private service:\n{}", paused.said));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
            .expect("kill the service");
        paused.resume();
    };

    // During an up, once its pod exists and none of its containers do.
    let p = TestPod::new("svc-up").config(BASE_CONFIG).build();
    let (path, label) = (p.path(), p.label_arg());
    let mut args = vec!["-v"];
    args.extend(p.up_args(&path, &label, &[]));
    let mut up = Paused::at(p.command(&args), "objects");
    kill_service(&mut up);
    let (code, said) = up.finish(TIDY);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("the podman service stopped answering"),
        "{said}"
    );
    assert!(
        said.contains(&format!("run `devaipod delete {} --force`", p.name())),
        "{said}"
    );
    // A later list (its own service) shows the half-made pod as such.
    let listed = p.listed();
    assert_eq!(
        listed["missing"],
        serde_json::json!(["workspace", "agent"]),
        "{listed}"
    );
    assert_ok(
        "delete after the service died",
        &p.run(&["delete", p.name(), "--force"]),
    );
    p.assert_nothing_left();

    // During a delete, before its removal: the workspace stays, a second delete ends it.
    let q = TestPod::new("svc-del").config(BASE_CONFIG).up();
    let mut delete = Paused::at(
        q.command(&["-v", "delete", q.name(), "--force"]),
        "removing",
    );
    kill_service(&mut delete);
    let (code, said) = delete.finish(TIDY);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("the podman service stopped answering"),
        "{said}"
    );
    let listed = json_of(&devaipod(&["list", "--json"]));
    assert!(listed.to_string().contains(q.name()), "{listed}");
    let out = q.run(&["delete", q.name(), "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    q.assert_nothing_left();
}
