//! Load and concurrency on a real engine: five `up`s of one repo at once (no `--name`)
//! all succeed with distinct names, `list` and `status` never fail while they run or
//! while the pods are deleted, and two `up --name X` at once leave exactly one winner,
//! whose pod the loser's refusal leaves whole; at the end nothing is left.
//!
//! Runs on the rootful leg only, after the suite (the Justfile's `test-rootful`): it is
//! the heaviest test (five pods at once) and checks devaipod's own locking and listing,
//! which do not depend on the engine's mode.

use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::common::pod::{
    BASE_IMAGE, TestPod, assert_ok, devaipod, json_of, podman_ok, require_image, stderr,
};
use crate::{BASE_CONFIG, agent_health};

/// How many `up`s run at once.
const UPS: usize = 5;
/// The pause between two rounds of polling: it paces the lists (each starts its own
/// Podman service) so that they do not take the machine's two cores from the commands
/// they watch. Not a synchronisation: each round checks what exists then.
const POLL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts `cmd` with its output captured.
fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devaipod runs")
}

/// Runs `list --json` over and over until every child has ended, and `status NAME
/// --json` once for each listed workspace whose name starts with one of `prefixes`
/// (read at whatever step its command is then); each call must succeed. Returns the
/// children's outputs, how many lists and statuses ran.
#[track_caller]
fn poll_until_done(children: Vec<Child>, prefixes: &[&str]) -> (Vec<Output>, usize, usize) {
    let mut children: Vec<(Child, Option<std::process::ExitStatus>)> =
        children.into_iter().map(|c| (c, None)).collect();
    let mut lists = 0;
    let mut read: Vec<String> = Vec::new();
    while children.iter_mut().any(|(c, done)| {
        if done.is_none() {
            *done = c.try_wait().expect("wait");
        }
        done.is_none()
    }) {
        let listed = json_of(&devaipod(&["list", "--json"]));
        lists += 1;
        let names: Vec<String> = listed
            .as_array()
            .expect("list --json prints an array")
            .iter()
            .filter_map(|e| e["name"].as_str())
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
            .filter(|n| !read.iter().any(|r| r == n))
            .map(str::to_string)
            .collect();
        for name in names {
            let status = json_of(&devaipod(&["status", &name, "--json"]));
            assert_eq!(status["name"], name.as_str(), "{status}");
            read.push(name);
        }
        std::thread::sleep(POLL_PAUSE);
    }
    let outputs = children
        .into_iter()
        .map(|(c, _)| c.wait_with_output().expect("wait"))
        .collect();
    (outputs, lists, read.len())
}

/// The workspace's `list --json` entry is running, whole, with its agent ready.
#[track_caller]
fn assert_ready(entry: &Value) {
    assert_eq!(entry["status"], "running", "{entry}");
    assert_eq!(entry["agent_ready"], true, "{entry}");
    assert!(entry.get("missing").is_none(), "{entry}");
}

#[test]
#[ignore = "load: runs on the rootful leg only (just test-rootful)"]
fn concurrent_ups_races_and_deletes() {
    require_image(BASE_IMAGE);
    // One repo whose folder is the guard's NAME: `up` without --name derives
    // NAME-SUFFIX, so the guard finds all of their objects (label, secret prefix).
    let many = TestPod::new("load-many")
        .config(BASE_CONFIG)
        .repo_folder_is_name()
        .build();
    let (path, label) = (many.path(), many.label_arg());
    let ups = (0..UPS)
        .map(|_| spawn(many.command(&["up", &path, "--label", &label, "--json"])))
        .collect();
    let prefix = format!("{}-", many.name());
    let (outputs, lists, statuses) = poll_until_done(ups, &[&prefix]);
    assert!(
        lists > 0 && statuses > 0,
        "{lists} lists and {statuses} statuses ran while the ups did"
    );
    let mut names: Vec<String> = outputs
        .iter()
        .map(|o| {
            let up = json_of(o);
            up["name"].as_str().expect("up --json names it").to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        UPS,
        "the ups' names are not distinct: {names:?}"
    );
    let listed = json_of(&devaipod(&["list", "--json"]));
    for name in &names {
        assert!(
            name.starts_with(&prefix),
            "{name} is not derived from the folder"
        );
        let entry = listed
            .as_array()
            .expect("array")
            .iter()
            .find(|e| e["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing from list: {listed}"));
        assert_ready(entry);
    }

    // Two `up --name X` at once: one wins; the loser says why and removes nothing.
    let race = TestPod::new("load-race").config(BASE_CONFIG).build();
    let (rpath, rlabel) = (race.path(), race.label_arg());
    let racers: Vec<Child> = (0..2)
        .map(|_| spawn(race.command(&race.up_args(&rpath, &rlabel, &["--json"]))))
        .collect();
    let outputs: Vec<Output> = racers
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let (won, lost): (Vec<&Output>, Vec<&Output>) =
        outputs.iter().partition(|o| o.status.success());
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "two up --name {} at once: {:?}",
        race.name(),
        outputs.iter().map(stderr).collect::<Vec<_>>()
    );
    let why = stderr(lost[0]);
    assert_eq!(lost[0].status.code(), Some(1), "{why}");
    let busy = format!(
        "another devaipod up (or gc) is working on the workspace {} right now",
        race.name()
    );
    let exists = format!("pod {} already exists", race.pod());
    assert!(
        why.contains(&busy) || why.contains(&exists),
        "the loser's error does not say why: {why}"
    );
    // The winner's pod is whole: every container it made runs, its secrets exist, its
    // agent answers.
    let made = json_of(won[0]);
    for c in made["containers"].as_array().expect("containers") {
        let name = c["name"].as_str().expect("name");
        let state = podman_ok(&["inspect", "--format", "{{.Id}} {{.State.Status}}", name]);
        let id = c["id"].as_str().expect("id");
        let want = if c["role"] == "rules" {
            "exited"
        } else {
            "running"
        };
        assert_eq!(state.trim(), format!("{id} {want}"), "{name}");
    }
    let secrets = race.leftovers().expect("leftovers").secrets;
    assert!(!secrets.is_empty(), "the winner's secrets are gone");
    let secrets_label = podman_ok(&[
        "pod",
        "inspect",
        &race.pod(),
        "--format",
        "{{index .Labels \"io.devaipod.secrets\"}}",
    ]);
    let mut labelled: Vec<&str> = secrets_label.trim().split(',').collect();
    labelled.sort();
    assert_eq!(labelled, secrets, "the winner's secrets are not all there");
    assert_ready(&race.listed());
    let health: Value = serde_json::from_str(&agent_health(&race)).expect("health JSON");
    assert_eq!(health["healthy"], true);

    // Five deletes at once, `list` and the racer's `status` polled meanwhile.
    let deletes = names
        .iter()
        .map(|n| spawn(many.command(&["delete", n])))
        .collect();
    let (outputs, lists, statuses) = poll_until_done(deletes, &[race.name()]);
    assert!(
        lists > 0 && statuses > 0,
        "{lists} lists and {statuses} statuses ran while the deletes did"
    );
    for (name, o) in names.iter().zip(&outputs) {
        assert_ok(&format!("delete {name}"), o);
    }
    many.assert_nothing_left();
    race.delete(&[]);
}
