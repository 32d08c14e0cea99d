//! The agent end to end: a task to a scripted LLM (tests/fake-llm), the commit it makes,
//! `delete` refusing to lose it, `review` bringing it to the host, follow-up `task`s,
//! and the shims on PATH.

use std::process::Command;

use serde_json::Value;

use crate::common::inet::FakeInternet;
use crate::common::pod::{
    BASE_IMAGE, TestPod, devaipod, exec, json_of, podman, podman_ok, require_image, stderr,
    write_executable,
};
use crate::common::{assert_fails_with, wait_until};

#[test]
fn the_agent_takes_a_task_commits_and_its_work_comes_back_for_review() {
    require_image(BASE_IMAGE);
    let net = FakeInternet::require();
    // The scripted LLM is a provider on the fake internet (https://llm.test, behind the
    // test CA), reached only through the pod's proxy, which adds the key: the agent
    // never holds it. Its script makes the agent commit a file.
    let script = r#"{"steps": [{"tool": "bash", "arguments": {"command": "printf 'hello from the agent\\n' > agent-file.txt && git add agent-file.txt && git commit -qm 'agent: add agent-file.txt'"}}], "final": "done"}"#;
    let key = format!("dvpt-llm-key-{}", std::process::id());
    let mut b = TestPod::new("e2e")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
  "postAttachCommand": "echo attached >> /tmp/attach-marker"}"#,
        )
        .file("README", "a repo\n")
        .env("DVPT_LLM_KEY", key.clone())
        .env("RUST_LOG", "trace");
    for (k, v) in net.devaipod_env() {
        b = b.env(k, v);
    }
    let llm = net.llm_script(&format!("e2e-{}", std::process::id()), script);
    let p = b
        .user_config(&format!(
            r#"[agent]
model = "fake/fake-model"
[agent.credentials.fake]
base_url = "{}"
header = "authorization"
prefix = "Bearer "
secret = "DVPT_LLM_KEY"
[agent.opencode.provider.fake]
npm = "@ai-sdk/openai-compatible"
name = "Fake LLM"
models = {{ "fake-model" = {{ name = "Fake Model" }} }}
"#,
            llm.base_url()
        ))
        .build();
    let (path, label) = (p.path(), p.label_arg());
    let task = "write agent-file.txt and commit it";
    let out = p.run(&[
        "up",
        &path,
        task,
        "--name",
        p.name(),
        "--label",
        &label,
        "--json",
    ]);
    let v = json_of(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&key),
        "devaipod printed the key (RUST_LOG=trace)"
    );
    let session = v["session"].as_str().expect("session id").to_string();
    assert!(session.starts_with("ses_"), "{v}");

    // Wait (bounded: opencode retries LLM errors without end) for the commit.
    let agent = p.agent();
    let folder = p.folder();
    let branch = format!("devaipod/{}", p.name());
    wait_for_commit(&p, "agent: add agent-file.txt");
    assert_eq!(
        exec(&agent, None, &format!("cat {folder}/agent-file.txt")),
        "hello from the agent\n"
    );
    let s = json_of(&devaipod(&["status", p.name(), "--json"]));
    assert_eq!(s["sessions"][0]["id"], session.as_str(), "{s}");
    assert_eq!(s["sessions"][0]["title"], format!("devaipod: {task}"));
    // The agent's config came from devaipod.toml, as a file nobody else sees.
    let env = podman_ok(&["inspect", "-f", "{{json .Config.Env}}", &agent]);
    assert!(
        !env.contains("fake-model") && !env.contains("llm.test"),
        "{env}"
    );
    // The key reached the provider as the configured header, and only that way ...
    let seen = net.received_headers(&key);
    assert!(!seen.is_empty(), "the provider never saw the key");
    for h in &seen {
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("authorization", format!("Bearer {key}").as_str())
        );
    }
    // ... while the agent holds it nowhere.
    assert_the_agent_holds_it_nowhere(&p, &key);

    // delete refuses while the commit is on no host branch, naming it.
    let o = devaipod(&["delete", p.name()]);
    assert_fails_with(&o, "agent: add agent-file.txt");
    assert!(stderr(&o).contains(&format!("devaipod review {}", p.name())));
    assert!(podman(&["pod", "exists", &p.pod()]).status.success());

    // review brings it to the host branch devaipod/NAME (no hook runs) with the diff.
    write_executable(
        &p.repo().join(".git/hooks/reference-transaction"),
        "#!/bin/sh\ntouch hook-ran\n",
    );
    let o = devaipod(&["review", p.name()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("+hello from the agent"), "{text}");
    assert!(!p.repo().join("hook-ran").exists(), "a host hook ran");
    let host = Command::new("git")
        .arg("-C")
        .arg(p.repo())
        .args(["log", "-1", "--format=%s", &branch])
        .output()
        .expect("git");
    assert_eq!(
        String::from_utf8_lossy(&host.stdout).trim(),
        "agent: add agent-file.txt"
    );

    // With a difftool configured, review uses it.
    crate::common::git(p.repo(), &["config", "diff.tool", "devaipodtest"]);
    crate::common::git(
        p.repo(),
        &[
            "config",
            "difftool.devaipodtest.cmd",
            "echo DIFFTOOL-RAN \"$REMOTE\"",
        ],
    );
    let o = devaipod(&["review", p.name()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DIFFTOOL-RAN"),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );

    // A follow-up goes to the same session. Its text is data: shell syntax in it is
    // never run, and it reaches opencode byte for byte (bad-input case 15).
    let tricky =
        "now say done\nDEVAIPOD_TASK_EOF\n'\"; $(touch /tmp/pwned) `touch /tmp/pwned2` \\ é";
    let o = devaipod(&["task", p.name(), tricky, "--json"]);
    assert_eq!(json_of(&o)["session"], session.as_str());
    // prompt_async answers before the message is stored: wait (bounded) until it is.
    let message_texts = || -> Vec<String> {
        let messages = exec(
            &agent,
            None,
            &format!(
                "curl -s -u opencode:$(cat /run/secrets/devaipod-opencode-password) 'http://127.0.0.1:4096/session/{session}/message?directory={folder}'"
            ),
        );
        let messages: Value = serde_json::from_str(&messages).unwrap_or(Value::Null);
        messages
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["parts"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    };
    wait_until(
        "the follow-up reached opencode",
        std::time::Duration::from_secs(30),
        || message_texts().iter().any(|t| t == tricky),
    );
    let texts = message_texts();
    assert!(texts.iter().any(|t| t == tricky), "{texts:?}");
    for c in [&agent, &p.workspace()] {
        assert_eq!(
            exec(c, None, "ls /tmp/pwned /tmp/pwned2 2>/dev/null | wc -l").trim(),
            "0"
        );
    }

    // The shims are on PATH; postAttachCommand runs for interactive sessions only.
    let ws = p.workspace();
    let o = devaipod(&[
        "ssh",
        p.name(),
        "--",
        "sh",
        "-c",
        "for c in oc opencode-agent; do command -v $c; done",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/opt/devaipod/bin/oc\n/opt/devaipod/bin/opencode-agent\n"
    );
    assert_eq!(
        exec(&ws, None, "cat /tmp/attach-marker 2>/dev/null | wc -l").trim(),
        "0"
    );

    let o = devaipod(&["delete", p.name()]);
    assert!(o.status.success(), "after review: {}", stderr(&o));
    p.assert_nothing_left();
}

#[test]
fn a_providers_key_in_the_environment_is_all_the_agent_needs() {
    require_image(BASE_IMAGE);
    let net = FakeInternet::require();
    // Only DEEPSEEK_API_KEY is set and devaipod.toml is empty: the built-in DeepSeek
    // preset becomes a credential route, opencode's deepseek provider points at it, and
    // its default model gets the task. The preset's base URL is redirected to the
    // scripted provider on the fake internet by a setting of devaipod's own
    // environment, which no repo file reaches.
    let script = r#"{"steps": [{"tool": "bash", "arguments": {"command": "printf 'from the preset\\n' > preset-file.txt && git add preset-file.txt && git commit -qm 'agent: add preset-file.txt'"}}], "final": "done"}"#;
    let key = format!("dvpt-preset-key-{}", std::process::id());
    let llm = net.llm_script(&format!("preset-{}", std::process::id()), script);
    let mut b = TestPod::new("preset")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .user_config("")
        .env(
            "DEVAIPOD_TEST_PRESET_URLS",
            format!("deepseek={}", llm.base_url()),
        );
    // (TestPod removes every other preset's variable.)
    b = b.env("DEEPSEEK_API_KEY", key.clone());
    for (k, v) in net.devaipod_env() {
        b = b.env(k, v);
    }
    let p = b.build();
    let (path, label) = (p.path(), p.label_arg());

    // The dry run names the preset, the variable and the model, never the key.
    let o = p.run(&["up", &path, "--name", p.name(), "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!(
            "credential deepseek -> {} (header authorization, built-in preset, secret ",
            llm.base_url()
        )) && text.contains(" from DEEPSEEK_API_KEY, in the proxy only)"),
        "{text}"
    );
    assert!(
        text.contains("agent      model deepseek/deepseek-v4-pro (the deepseek preset's default (from DEEPSEEK_API_KEY)"),
        "{text}"
    );
    let all = format!("{text}{}", stderr(&o));
    assert!(!all.contains(&key), "the dry run shows the key");
    assert!(
        text.contains("warning    DEVAIPOD_TEST_PRESET_URLS is set: the deepseek preset goes to"),
        "{text}"
    );

    let out = p.run(&[
        "up",
        &path,
        "write preset-file.txt and commit it",
        "--name",
        p.name(),
        "--label",
        &label,
        "--json",
    ]);
    let v = json_of(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&key),
        "devaipod printed the key"
    );
    assert!(
        v["session"].as_str().is_some_and(|s| s.starts_with("ses_")),
        "{v}"
    );

    let agent = p.agent();
    wait_for_commit(&p, "agent: add preset-file.txt");
    // The provider saw the key in the preset's header, on the preset's path, and the
    // request named the preset's default model.
    let seen = net.received_headers(&key);
    assert!(!seen.is_empty(), "the provider never saw the key");
    for h in &seen {
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("authorization", format!("Bearer {key}").as_str()),
            "{h:?}"
        );
        assert_eq!(
            h.path,
            format!("/preset-{}/v1/chat/completions", std::process::id()),
            "{h:?}"
        );
    }
    // The preset's route forwards its model API only: another path of the provider
    // (its account's, its files') is refused by the proxy and never reaches it.
    let refused = exec(
        &agent,
        None,
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4097/devaipod/credentials/deepseek/user/balance",
    );
    assert_eq!(refused.trim(), "403", "{refused}");
    assert!(
        net.received_requests()
            .iter()
            .all(|r| !r.path.ends_with("/user/balance")),
        "the provider got a path outside the preset's model API"
    );
    // status names the preset and its variable, never the value.
    let s = p.status();
    assert_eq!(
        s["network"]["credentials"][0]["provider"], "deepseek",
        "{s}"
    );
    assert_eq!(s["network"]["credentials"][0]["preset"], "deepseek", "{s}");
    assert_eq!(
        s["network"]["credentials"][0]["variable"], "DEEPSEEK_API_KEY",
        "{s}"
    );
    assert!(!s.to_string().contains(&key), "status shows the key");
    let o = p.run(&["status", p.name()]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("(header authorization, built-in preset, key from DEEPSEEK_API_KEY)"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The agent holds the key nowhere.
    assert_the_agent_holds_it_nowhere(&p, &key);
    let config = exec(
        &agent,
        None,
        "cat /run/secrets/devaipod-opencode-config.json",
    );
    let config: Value = serde_json::from_str(&config).expect("the agent's opencode config");
    assert_eq!(
        config["provider"]["deepseek"]["options"],
        serde_json::json!({
            "baseURL": "http://127.0.0.1:4097/devaipod/credentials/deepseek",
            "apiKey": "devaipod-proxy-holds-the-key"
        }),
        "{config}"
    );
    assert_eq!(config["model"], "deepseek/deepseek-v4-pro", "{config}");
    let o = p.run(&["delete", p.name(), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    p.assert_nothing_left();
}

/// Waits (bounded: opencode retries LLM errors without end) until the agent's branch
/// `devaipod/NAME` has `subject` as its last commit, failing at once on a retrying session.
#[track_caller]
fn wait_for_commit(p: &TestPod, subject: &str) {
    let (agent, folder) = (p.agent(), p.folder());
    let branch = format!("devaipod/{}", p.name());
    wait_until(
        &format!("the agent committed {subject:?}"),
        std::time::Duration::from_secs(90),
        || {
            let s = p.status();
            assert_ne!(
                s["sessions"][0]["state"], "retry",
                "the agent is retrying an LLM error: {s}"
            );
            let o = podman(&[
                "exec",
                &agent,
                "git",
                "-C",
                &folder,
                "log",
                "-1",
                "--format=%s",
                &branch,
            ]);
            String::from_utf8_lossy(&o.stdout).trim() == subject
        },
    );
}

/// No process, file, environment or configuration of the agent holds `key`, and
/// neither `podman inspect` of the agent and the proxy nor the proxy's logs show it.
/// The pattern goes to grep in a file made from two halves, so that no command line of
/// the search itself holds the key.
#[track_caller]
fn assert_the_agent_holds_it_nowhere(p: &TestPod, key: &str) {
    let agent = p.agent();
    let (a, b) = key.split_at(key.len() / 2);
    let found = exec(
        &agent,
        None,
        &format!(
            "printf '%s%s' '{a}' '{b}' > /tmp/.pattern && grep -rlsF -f /tmp/.pattern /proc/[0-9]*/environ /proc/[0-9]*/cmdline /run /tmp /home/agent {} 2>/dev/null | grep -vx /tmp/.pattern | head; rm -f /tmp/.pattern; true",
            p.folder()
        ),
    );
    assert_eq!(found.trim(), "", "the agent can read the key in: {found}");
    let proxy = format!("{}-proxy", p.pod());
    let inspect = podman_ok(&["inspect", &agent, &proxy]);
    assert!(!inspect.contains(key), "the key is in podman inspect");
    let logs = podman_ok(&["logs", &proxy]);
    assert!(!logs.contains(key), "the proxy logged the key");
}
