//! User secrets: each reaches only its consumer (`[agent]` the agent, `[trusted]` the
//! workspace), no value shows anywhere, an unset one stops `up`, an existing podman
//! secret is used and kept.

use std::process::{Command, Stdio};

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, Rm, TestPod, devaipod, json_of, podman, podman_ok, require_image, stderr,
};
use crate::common::{assert_fails_with, plan_container};

#[test]
fn secrets_reach_only_their_consumer_and_never_leak() {
    require_image(BASE_IMAGE);
    let tag = format!("{:x}", std::process::id());
    let agent_value = format!("agent-sentinel-{tag}-9f1c");
    let trusted_value = format!("trusted-sentinel-{tag}-4d2e");
    let p = TestPod::new("secrets")
        .config(BASE_CONFIG)
        .user_config(
            "[agent]\nsecrets = [\"DEVAIPOD_AGENT_SENTINEL\"]\n[trusted]\nsecrets = [\"DEVAIPOD_TRUSTED_SENTINEL\"]\n",
        )
        .env("DEVAIPOD_AGENT_SENTINEL", &agent_value)
        .env("DEVAIPOD_TRUSTED_SENTINEL", &trusted_value)
        .env("RUST_LOG", "trace")
        .build();
    let dry = p.up(&["--dry-run", "--json"]);
    let plan = json_of(&dry);
    let up_out = p.up(&["--json"]);
    json_of(&up_out);
    let (ws, agent) = (p.workspace(), p.agent());
    let logs = p.run(&["logs", p.name()]);
    let ws_logs = p.run(&["logs", p.name(), "--container", "workspace"]);
    let status = p.run(&["status", p.name(), "--json"]);

    // The plan names each container's secrets and their files, never a value.
    let agent_plan = plan_container(&plan, "agent");
    let targets: Vec<&str> = agent_plan["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["target"].as_str())
        .collect();
    assert!(
        targets.contains(&"/run/secrets/DEVAIPOD_AGENT_SENTINEL"),
        "{targets:?}"
    );
    assert!(
        !targets.contains(&"/run/secrets/DEVAIPOD_TRUSTED_SENTINEL"),
        "{targets:?}"
    );

    // No value in devaipod's output (trace logging included), inspect, logs or argv.
    let mut seen = String::new();
    for o in [&dry, &up_out, &logs, &ws_logs, &status] {
        seen.push_str(&String::from_utf8_lossy(&o.stdout));
        seen.push_str(&stderr(o));
    }
    seen.push_str(&podman_ok(&["inspect", &ws, &agent]));
    seen.push_str(&podman_ok(&["pod", "inspect", &p.pod()]));
    for c in [&ws, &agent] {
        let o = podman(&["logs", c]);
        seen.push_str(&String::from_utf8_lossy(&o.stdout));
        seen.push_str(&stderr(&o));
    }
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    seen.push_str(&String::from_utf8_lossy(&ps.stdout));
    for value in [&agent_value, &trusted_value] {
        assert!(
            !seen.contains(value.as_str()),
            "a secret value leaked (see the outputs of this test)"
        );
    }

    // Each value reaches its consumer: the agent's server process has its key...
    let agent_env = p.in_agent("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'");
    assert!(agent_env.contains(&format!("DEVAIPOD_AGENT_SENTINEL={agent_value}")));
    let file = p.in_agent("stat -c '%a %u' /run/secrets/DEVAIPOD_AGENT_SENTINEL");
    assert_eq!(file.trim(), "400 4096");
    // ...the workspace has the trusted one as a file named by NAME_FILE...
    let ws_value = p.in_workspace(None, "cat \"$DEVAIPOD_TRUSTED_SENTINEL_FILE\"");
    assert_eq!(ws_value, trusted_value);
    // ...and the agent has nothing of the trusted one: not in any process's environment,
    // not in its secret files, not in the files it can write.
    assert!(!agent_env.contains(&trusted_value));
    assert!(!agent_env.contains("DEVAIPOD_TRUSTED_SENTINEL"));
    let hits = p.in_agent(&format!(
        "grep -rls '{trusted_value}' /run /tmp /var/tmp /home/agent /workspaces 2>/dev/null | wc -l"
    ));
    assert_eq!(hits.trim(), "0");

    // delete removes the secrets devaipod made.
    let del = devaipod(&["delete", p.name(), "--json"]);
    let removed = json_of(&del);
    assert_eq!(
        removed["secrets"].as_array().map(Vec::len),
        // The password, the agent's configuration, the two sentinels, the proxy's
        // configuration.
        Some(5),
        "{removed}"
    );
    p.assert_nothing_left();
    let left = podman_ok(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(!left.contains(&p.pod()), "{left}");
}

#[test]
fn an_unset_secret_stops_up_before_anything_is_made() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("unset")
        .config(BASE_CONFIG)
        .user_config("[agent]\nsecrets = [\"DEVAIPOD_UNSET_KEY\"]\n")
        .env_remove("DEVAIPOD_UNSET_KEY")
        .build();
    p.up_fails(
        &[],
        "DEVAIPOD_UNSET_KEY is named in your devaipod configuration",
    );
}

#[test]
fn an_existing_podman_secret_is_used_and_kept() {
    require_image(BASE_IMAGE);
    // Named like the test workspaces' objects (devaipod-dvpt-...), so tests/cleanup.sh
    // removes it should this test die before its guard runs.
    let secret = format!("devaipod-dvpt-existing-{}", std::process::id());
    let value = format!("existing-sentinel-{}", std::process::id());
    let mut create = Command::new("podman")
        .args(["secret", "create", &secret, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("podman secret create");
    std::io::Write::write_all(&mut create.stdin.take().expect("stdin"), value.as_bytes())
        .expect("write");
    assert!(create.wait().expect("wait").success());
    let _rm = Rm::secret(secret.clone());

    let p = TestPod::new("existing")
        .config(BASE_CONFIG)
        .user_config(&format!(
            "[agent]\nsecrets = [\"DEVAIPOD_EXISTING={secret}\"]\n"
        ))
        .up();
    let env = p.in_agent("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'");
    assert!(
        env.contains(&format!("DEVAIPOD_EXISTING={value}")),
        "the agent did not get the existing secret"
    );
    let del = devaipod(&["delete", p.name(), "--json"]);
    let removed = json_of(&del);
    assert!(
        !removed["secrets"].to_string().contains(&secret),
        "{removed}"
    );
    let still = podman(&["secret", "inspect", &secret]);
    assert!(
        still.status.success(),
        "devaipod removed the user's own secret"
    );
    p.assert_nothing_left();
}

/// A workspace's secret whose pod never came to be (an `up` killed between making the
/// secret and the pod) is found by its label and removed by `delete` where the engine's
/// API reports secrets' labels (Podman 5); Podman 4.3's secrets list answers
/// `"Labels": null`, so there only the names the pod lists are removed, and `delete`
/// says that nothing labelled exists.
#[test]
fn delete_removes_a_labelled_secret_without_its_pod() {
    let p = TestPod::new("orphan").build();
    let secret = format!("{}-orphan", p.pod());
    let value = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(value.path(), "orphan-value").expect("write");
    let label = format!("io.devaipod.pod={}", p.name());
    let path = value.path().display().to_string();
    podman_ok(&["secret", "create", "--label", &label, &secret, &path]);
    let _rm = Rm::secret(&secret);
    assert!(
        p.pods().is_empty(),
        "the test needs a workspace with no pod"
    );
    let version = podman_ok(&["version", "--format", "{{.Server.Version}}"]);
    let out = p.run(&["delete", p.name(), "--force", "--json"]);
    if version.trim().starts_with("4.") {
        assert_fails_with(&out, "nothing labelled for it exists");
        assert!(
            podman(&["secret", "inspect", &secret]).status.success(),
            "on 4.3 the secret is not found by its label, so it stays (the guard removes it)"
        );
    } else {
        let v = json_of(&out);
        assert!(
            v["secrets"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == secret.as_str())),
            "{v}"
        );
        assert!(
            !podman(&["secret", "inspect", &secret]).status.success(),
            "{secret} is still there"
        );
        p.assert_nothing_left();
    }
}
