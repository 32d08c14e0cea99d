//! A workspace's life: `up` (a ready, hardened, labelled pod; rollback; refusal of an
//! existing pod), `--dry-run`, `list`, `status`, `logs`, `stop`, `start` and `delete`.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::assert_fails_with;
use crate::common::pod::{
    BASE_IMAGE, BROKEN_IMAGE, TestPod, assert_ok, devaipod, devaipod_bin, json_of, podman_ok,
    require_image, stderr,
};
use crate::{BASE_CONFIG, agent_health};

#[test]
fn up_makes_a_ready_hardened_pod_and_delete_removes_it() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("up").config(BASE_CONFIG).build();
    std::fs::write(p.repo().join("hello.txt"), "uncommitted edit\n").expect("write");
    let out = p.up(&["--json"]);
    let v = json_of(&out);
    assert!(
        stderr(&out).contains("uncommitted"),
        "no dirty-tree warning: {}",
        stderr(&out)
    );

    // The JSON names the pod and its containers: the network's too (rules, proxy).
    assert_eq!(v["name"], p.name());
    assert_eq!(v["pod"], p.pod().as_str());
    let containers = v["containers"].as_array().expect("containers");
    let roles: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["role"].as_str())
        .collect();
    assert_eq!(roles, ["agent", "proxy", "rules", "workspace"]);
    for c in containers {
        assert!(c["id"].as_str().is_some_and(|id| id.len() == 64), "{c}");
    }
    let (ws, agent) = (p.workspace(), p.agent());

    // The pod shares only the network namespace.
    let shared = podman_ok(&[
        "pod",
        "inspect",
        &p.pod(),
        "--format",
        "{{.SharedNamespaces}}",
    ]);
    assert_eq!(shared.trim(), "[net]");

    // The agent answers over HTTP, seen from the workspace through the shared netns.
    let health = agent_health(&p);
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["healthy"], true);

    // containerEnv is the workspace's, with variables substituted; never the agent's.
    assert_eq!(
        p.in_workspace(Some("dev"), "printenv DEVAIPOD_CE").trim(),
        format!("from-repo-{}", p.basename())
    );
    assert_eq!(
        p.in_agent("printenv DEVAIPOD_CE || echo absent").trim(),
        "absent"
    );

    // The agent runs with no capabilities and no-new-privileges, as its own uid.
    let status = p.in_agent("cat /proc/1/status; id -u");
    for line in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(status.contains(line), "agent lacks {line:?}:\n{status}");
    }
    // Its own uid: not root, not the workspace's user.
    assert_eq!(status.lines().last(), Some("4096"));
    let home = p.in_agent("echo $HOME; touch $HOME/written && echo ok");
    assert_eq!(home.lines().collect::<Vec<_>>(), ["/home/agent", "ok"]);

    // The workspace has a clone of HEAD (without the uncommitted edit), owned by dev.
    let folder = p.folder();
    let script = format!(
        "cd {folder} && pwd && git rev-parse HEAD && cat hello.txt && stat -c %U hello.txt && git status --porcelain | wc -l"
    );
    let got = p.in_workspace(Some("dev"), &script);
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        [folder.as_str(), p.head().as_str(), "committed", "dev", "0"]
    );
    // ... and no repo hook got installed or ran.
    let hooks = p.in_workspace(None, &format!("ls {folder}/.git/hooks 2>/dev/null | wc -l"));
    assert_eq!(hooks.trim(), "0");

    // Every object carries the devaipod labels.
    let objects = [
        ("pod", p.pod(), "{{json .Labels}}"),
        ("container", ws.clone(), "{{json .Config.Labels}}"),
        ("container", agent.clone(), "{{json .Config.Labels}}"),
        (
            "volume",
            format!("{}-workspace", p.pod()),
            "{{json .Labels}}",
        ),
        (
            "volume",
            format!("{}-agent-home", p.pod()),
            "{{json .Labels}}",
        ),
        (
            "volume",
            format!("{}-agent-repo", p.pod()),
            "{{json .Labels}}",
        ),
    ];
    let repo = p.repo().canonicalize().expect("canon");
    for (kind, obj, format) in objects {
        let labels = podman_ok(&[kind, "inspect", &obj, "--format", format]);
        let labels: Value = serde_json::from_str(&labels).expect("labels JSON");
        assert_eq!(labels["io.devaipod.pod"], p.name(), "{obj}");
        assert!(labels["io.devaipod.role"].is_string(), "{obj}");
        assert_eq!(
            labels["io.devaipod.repo"],
            repo.to_string_lossy().as_ref(),
            "{obj}"
        );
        assert_eq!(
            labels["io.devaipod.version"],
            env!("CARGO_PKG_VERSION"),
            "{obj}"
        );
    }

    // devaipod-net reaches the agent (its gate) and the workspace (the SSH helpers) as
    // a volume every pod shares, read-only, filled once from devaipod-net's image (an
    // image mount could be unmounted under a starting pod by another one stopping).
    let mut shared = Vec::new();
    for c in [&agent, &ws] {
        let mounts = podman_ok(&["inspect", c, "--format", "{{json .Mounts}}"]);
        let mounts: Value = serde_json::from_str(&mounts).expect("mounts JSON");
        let m = mounts
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["Destination"] == "/opt/devaipod-net")
            .unwrap_or_else(|| panic!("{c}: no /opt/devaipod-net in {mounts}"));
        assert_eq!(
            (&m["Type"], &m["RW"]),
            (&Value::from("volume"), &Value::from(false)),
            "{c}: {m}"
        );
        shared.push(m["Name"].as_str().expect("name").to_string());
    }
    assert_eq!(shared[0], shared[1]);
    assert!(shared[0].starts_with("devaipod-net-"), "{shared:?}");
    let volume = podman_ok(&["volume", "inspect", &shared[0]]);
    let volume: Value = serde_json::from_str(&volume).expect("volume JSON");
    let volume = &volume[0];
    // Podman leaves NeedsCopyUp out once the copy is made.
    assert!(
        volume.get("NeedsCopyUp").is_none_or(|v| v == false),
        "{volume}"
    );
    let from = volume["Labels"]["io.devaipod.shared"]
        .as_str()
        .unwrap_or_default();
    assert!(from.starts_with("localhost/devaipod-net:"), "{volume}");
    assert!(
        volume["Labels"].get("io.devaipod.pod").is_none(),
        "{volume}"
    );
    assert_eq!(
        p.in_agent("test -x /opt/devaipod-net/devaipod-net && echo runs; touch /opt/devaipod-net/x 2>/dev/null || echo read-only"),
        "runs\nread-only\n"
    );

    // delete removes everything; a second delete is an error.
    let del = devaipod(&["delete", &p.pod(), "--json"]);
    let removed = json_of(&del);
    assert_eq!(removed["pods"], serde_json::json!([p.pod()]));
    // The clones, the agent's home, the proxy's state and the rules' marker.
    assert_eq!(removed["volumes"].as_array().map(Vec::len), Some(5));
    let mut gone: Vec<&str> = removed["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    gone.sort();
    let (proxy, rules) = (format!("{}-proxy", p.pod()), format!("{}-rules", p.pod()));
    assert_eq!(
        gone,
        [agent.as_str(), proxy.as_str(), rules.as_str(), ws.as_str()],
        "infra containers are not listed"
    );
    assert_eq!(
        removed["secrets"],
        serde_json::json!([
            format!("{}-agent-password", p.pod()),
            format!("{}-agent-config", p.pod()),
            format!("{}-net-config", p.pod())
        ])
    );
    p.assert_nothing_left();
    // ... but the shared volume, which other pods use.
    podman_ok(&["volume", "exists", &shared[0]]);
    let again = devaipod(&["delete", p.name()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("no workspace"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn up_rolls_back_everything_when_the_agent_dies() {
    require_image(BROKEN_IMAGE);
    let p = TestPod::new("rollback")
        .config(r#"{"image": "localhost/devaipod-test-broken:latest"}"#)
        .build();
    let out = p.up(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The error says what happened and shows the agent's own last words.
    assert!(err.contains(&p.agent()), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("this opencode fails on purpose"), "{err}");
    p.assert_nothing_left();
}

#[test]
fn dry_run_prints_the_plan_and_creates_nothing() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("dryrun").config(BASE_CONFIG).build();
    let v = p.dry_run(&[]);
    assert_eq!(v["image"]["state"], "present");
    assert_eq!(v["pod"]["name"], p.pod().as_str());
    assert_eq!(v["containers"].as_array().map(Vec::len), Some(4));
    p.assert_nothing_left();

    // A missing image: the plan says so, still creates nothing, and `up` refuses.
    let path = p.path();
    let out = devaipod(&[
        "up",
        &path,
        "--name",
        p.name(),
        "--image",
        "localhost/devaipod-no-such-image:1",
        "--dry-run",
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["image"]["state"], "missing");
    assert!(
        v["image"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("never pulled")),
        "{v}"
    );
    let out = devaipod(&[
        "up",
        &path,
        "--name",
        p.name(),
        "--image",
        "localhost/devaipod-no-such-image:1",
    ]);
    assert_fails_with(&out, "localhost/devaipod-no-such-image:1 is not available");
    p.assert_nothing_left();
}

#[test]
fn delete_takes_several_names_and_goes_on_past_one_that_fails() {
    require_image(BASE_IMAGE);
    let a = TestPod::new("del-a").config(BASE_CONFIG).up();
    let b = TestPod::new("del-b").config(BASE_CONFIG).up();
    let missing = format!("{}-missing", a.name());
    let del = devaipod(&["delete", a.name(), &missing, &b.pod(), "--json"]);
    assert!(
        !del.status.success(),
        "a missing workspace fails the command"
    );
    let err = stderr(&del);
    assert!(
        err.contains(&format!("{missing}: no workspace"))
            && err.contains("1 of 3 workspace(s) not deleted"),
        "{err}"
    );
    let out: Value = serde_json::from_slice(&del.stdout).expect("an array on stdout");
    let pods: Vec<&Value> = out
        .as_array()
        .expect("array")
        .iter()
        .map(|o| &o["pods"][0])
        .collect();
    assert_eq!(
        pods,
        [&Value::from(a.pod()), &Value::from(b.pod())],
        "{out}"
    );
    a.assert_nothing_left();
    b.assert_nothing_left();
}

#[test]
fn up_refuses_an_existing_pod_and_keeps_it() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("exists").config(BASE_CONFIG).up();
    let second = p.up(&[]);
    assert_fails_with(&second, "already exists");
    // The first pod is untouched and still running.
    let state = podman_ok(&["pod", "inspect", &p.pod(), "--format", "{{.State}}"]);
    assert_eq!(state.trim(), "Running");
    p.delete(&[]);
}

#[test]
fn list_status_disk_stop_start_and_logs() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("life").config(BASE_CONFIG).build();
    let up = p.up(&["--json"]);
    json_of(&up);
    let (ws, agent) = (p.workspace(), p.agent());

    // The default disk limit: held by Podman where the storage enforces it (then the
    // agent's volumes were made with a size), else said once by `up`.
    let home = format!("{}-agent-home", p.pod());
    let options: Value = serde_json::from_str(&podman_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{json .Options}}",
        &home,
    ]))
    .expect("volume options");
    let enforced = options["o"]
        .as_str()
        .is_some_and(|o| o.contains("size=10737418240"));
    let said: Vec<String> = stderr(&up)
        .lines()
        .filter(|l| l.contains("the agent's disk limit ("))
        .map(str::to_string)
        .collect();
    if enforced {
        assert!(said.is_empty(), "enforced, yet warned: {said:?}");
    } else {
        assert_eq!(said.len(), 1, "said once: {}", stderr(&up));
        assert!(
            said[0].contains(
                "(10GiB on each of its volumes, [agent] disk_limit) is not enforced here: "
            ) && said[0].contains(&format!(
                "`devaipod status {}` shows each volume's use",
                p.name()
            )),
            "{}",
            said[0]
        );
    }

    // list: the documented fields, the agent ready right after `up`.
    let e = p.listed();
    assert_eq!(e["pod"], p.pod().as_str());
    assert_eq!(e["status"], "running");
    assert_eq!(e["agent_ready"], true);
    assert_eq!(e["image"], BASE_IMAGE);
    let canonical = p.repo().canonicalize().expect("canon");
    assert_eq!(e["repo"], canonical.to_string_lossy().as_ref());
    assert!(
        e["created"].as_str().is_some_and(|c| c.starts_with("20")),
        "{e}"
    );
    let containers: Vec<(String, String, String)> = e["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("role"), s("name"), s("state"))
        })
        .collect();
    assert_eq!(
        containers,
        [
            ("workspace".into(), ws.clone(), "running".into()),
            ("agent".into(), agent.clone(), "running".into()),
            (
                "proxy".into(),
                format!("{}-proxy", p.pod()),
                "running".into()
            ),
            // The network rules ran before the others and ended.
            (
                "rules".into(),
                format!("{}-rules", p.pod()),
                "exited".into()
            ),
        ]
    );

    // status: the list object plus volumes, mounts, ports and events.
    let s = p.status();
    assert_eq!(s["name"], p.name());
    assert_eq!(s["agent_ready"], true);
    let mut volumes: Vec<&str> = s["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    volumes.sort();
    assert_eq!(
        volumes,
        [
            format!("{}-agent-home", p.pod()),
            format!("{}-agent-repo", p.pod()),
            format!("{}-net-marker", p.pod()),
            format!("{}-net-state", p.pod()),
            format!("{}-workspace", p.pod())
        ]
    );
    assert!(
        s["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["container"] == agent.as_str() && m["destination"] == "/home/agent"),
        "{s}"
    );
    assert!(s["ports"].as_array().is_some());
    assert!(
        s["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|ev| ev["action"] == "start" && ev["name"] == agent.as_str()),
        "{s}"
    );
    // Event times: RFC 3339 strings in --json (local offset), never raw Unix seconds.
    assert!(
        s["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|ev| ev["time"]
                .as_str()
                .is_some_and(|t| t.len() >= 20 && t.as_bytes()[10] == b'T')),
        "{s}"
    );

    // Each volume's disk use: the agent writes 20 MiB into its home.
    p.in_agent("head -c 20971520 /dev/zero > $HOME/twenty-mib");
    let s = p.status();
    let disk = s["disk"].as_array().expect("disk");
    assert_eq!(
        disk.len(),
        volumes.len(),
        "one entry per volume: {}",
        s["disk"]
    );
    let of = |v: &str| -> &Value {
        disk.iter()
            .find(|d| d["volume"] == v)
            .unwrap_or_else(|| panic!("no disk entry for {v}: {}", s["disk"]))
    };
    let home_use = of(&home);
    assert!(
        home_use["bytes"].as_u64().is_some_and(|b| b >= 20 << 20),
        "{home_use}"
    );
    assert_eq!(home_use.get("note"), None, "{home_use}");
    let limit = if enforced {
        Value::from(10u64 << 30)
    } else {
        Value::Null
    };
    assert_eq!(home_use["limit"], limit, "{home_use}");
    assert_eq!(of(&format!("{}-agent-repo", p.pod()))["limit"], limit);
    // The repo's clone is in the workspace's volume; the workspace has no limit.
    let ws_use = of(&format!("{}-workspace", p.pod()));
    assert!(ws_use["bytes"].as_u64().is_some_and(|b| b > 0), "{ws_use}");
    assert_eq!(ws_use["limit"], Value::Null);
    // The human view says it on the volume's line.
    let o = devaipod(&["status", p.name()]);
    assert_ok("status", &o);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let prefix = format!("volume     {home} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {home}: {text}"));
    let shown = line[prefix.len()..].split(' ').next().unwrap_or_default();
    let mib: f64 = shown
        .strip_suffix("MiB")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a size in MiB: {line}"));
    assert!(mib >= 20.0, "{line}");

    // logs: the agent's own output.
    let logs = devaipod(&["logs", p.name(), "--tail", "50"]);
    assert_ok("logs", &logs);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("opencode server listening"),
        "{logs:?}"
    );
    let none = devaipod(&["logs", p.name(), "--container", "gator"]);
    assert_fails_with(&none, "no gator container");

    // Data written in the workspace and in the agent's home, and an opencode session...
    p.in_workspace(Some("dev"), "echo kept > notes.txt");
    p.in_agent("echo kept > $HOME/memory.txt");
    let made = p.as_agent(
        "curl -sf -m 10 -u opencode:$(cat /run/secrets/devaipod-opencode-password) \
         -X POST \"http://127.0.0.1:4096/session?directory=$PWD\" \
         -H content-type:application/json -d '{\"title\": \"kept across stop\"}'",
        &[],
    );
    let session: Value = serde_json::from_slice(&made.stdout).expect("session JSON");
    let session = session["id"].as_str().expect("session id").to_string();
    let ids = |s: &Value| -> Vec<String> {
        s["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["id"].as_str().map(str::to_string))
            .collect()
    };
    assert!(ids(&p.status()).contains(&session), "made: {session}");

    // logs --follow streams until the container stops.
    let mut follow = Command::new(devaipod_bin())
        .args(["logs", p.name(), "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let mut follow_out = std::io::BufReader::new(follow.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut follow_out, &mut line).expect("read");
        assert!(
            n > 0,
            "logs --follow ended before showing the agent's output"
        );
        if line.contains("opencode server listening") {
            break;
        }
    }

    // stop (twice: stopping a stopped pod is fine), then list shows it down.
    for _ in 0..2 {
        assert_ok("stop", &devaipod(&["stop", &p.pod()]));
    }
    let e = p.listed();
    assert_eq!(e["status"], "exited");
    assert_eq!(e["agent_ready"], false);
    // The follower saw the agent stop and ended by itself.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(follow.wait());
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("logs --follow did not end after the pod stopped")
        .expect("wait");
    assert!(status.success(), "logs --follow exited with {status}");

    // start returns when the agent answers; the files and the session survived.
    assert_ok("start", &devaipod(&["start", p.name()]));
    let e = p.listed();
    assert_eq!(e["status"], "running");
    assert_eq!(e["agent_ready"], true);
    assert_eq!(
        p.in_workspace(None, &format!("cat {}/notes.txt", p.folder())),
        "kept\n"
    );
    assert_eq!(p.in_agent("cat $HOME/memory.txt"), "kept\n");
    let after = p.status();
    assert!(
        ids(&after).contains(&session),
        "{session}: {}",
        after["sessions"]
    );
    let health = agent_health(&p);
    assert!(health.contains("\"healthy\":true"), "{health}");

    // Commands on a missing workspace fail clearly.
    for cmd in ["status", "stop", "start", "logs"] {
        let o = devaipod(&[cmd, "t-no-such-workspace"]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).contains("no workspace t-no-such-workspace"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    p.delete(&[]);
}
