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
    let subject = || {
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
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    wait_until(
        "the agent committed agent-file.txt",
        std::time::Duration::from_secs(90),
        || {
            let s = p.status();
            assert_ne!(
                s["sessions"][0]["state"], "retry",
                "the agent is retrying an LLM error: {s}"
            );
            subject() == "agent: add agent-file.txt"
        },
    );
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
    // ... while no process, file, environment or configuration of the agent holds it.
    // The pattern goes to grep in a file made from two halves, so that no command line
    // of the search itself holds the key.
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
    let inspect = podman_ok(&["inspect", &agent, &format!("{}-proxy", p.pod())]);
    assert!(!inspect.contains(&key), "the key is in podman inspect");
    let logs = podman_ok(&["logs", &format!("{}-proxy", p.pod())]);
    assert!(!logs.contains(&key), "the proxy logged the key");

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
