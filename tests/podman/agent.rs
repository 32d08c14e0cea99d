//! The agent end to end: a task to a scripted LLM (tests/fake-llm), the commit it makes,
//! `delete` refusing to lose it, `review` bringing it to the host, follow-up `task`s,
//! and the shims on PATH.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::common::pod::{
    BASE_IMAGE, TestPod, devaipod, exec, json_of, podman, podman_ok, require_image, stderr,
    write_executable,
};
use crate::common::{assert_fails_with, wait_until};

/// The scripted OpenAI-compatible LLM (tests/fake-llm), built by `just _stage`.
fn fake_llm() -> PathBuf {
    let p = std::env::var_os("DEVAIPOD_FAKE_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fake-llm/release/fake-llm")
        });
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build --release --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm` (`just _stage` does)",
        p.display()
    );
    p
}

#[test]
fn the_agent_takes_a_task_commits_and_its_work_comes_back_for_review() {
    require_image(BASE_IMAGE);
    let llm = std::fs::read(fake_llm()).expect("read fake-llm");
    // The fake LLM runs in the workspace (same network namespace as the agent), started
    // by the repo's own postStartCommand; its script makes the agent commit a file.
    let script = r#"{"steps": [{"tool": "bash", "arguments": {"command": "printf 'hello from the agent\\n' > agent-file.txt && git add agent-file.txt && git commit -qm 'agent: add agent-file.txt'"}}], "final": "done"}"#;
    let p = TestPod::new("e2e")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
  "postStartCommand": "nohup .devcontainer/fake-llm --listen 127.0.0.1:18080 --script .devcontainer/script.json > /tmp/fake-llm.log 2>&1 < /dev/null &",
  "postAttachCommand": "echo attached >> /tmp/attach-marker"}"#,
        )
        .file(".devcontainer/script.json", script)
        .file("README", "a repo\n")
        .executable(".devcontainer/fake-llm", llm)
        .user_config(
            r#"[agent]
model = "fake/fake-model"
[agent.opencode.provider.fake]
npm = "@ai-sdk/openai-compatible"
name = "Fake LLM"
options = { baseURL = "http://127.0.0.1:18080/v1" }
models = { "fake-model" = { name = "Fake Model" } }
"#,
        )
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
        !env.contains("fake-model") && !env.contains("18080"),
        "{env}"
    );

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
