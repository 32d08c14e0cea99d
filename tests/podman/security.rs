//! The agent's sandbox seen from inside (tests/security/agent-probe.sh, the server
//! password, reachability from the host) and git: nothing the agent writes in its clone
//! runs in the workspace.

use std::process::{Command, Stdio};

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, TestPod, image_store_lock, json_of, podman_ok, require_image, stderr,
};

/// tests/security/agent-probe.sh: one check per hardening row, run inside the agent.
const AGENT_PROBE: &str = include_str!("../security/agent-probe.sh");

#[test]
fn the_agent_sandbox_holds_from_inside() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("probe").config(BASE_CONFIG).build();
    let up_out = p.up(&["--json"]);
    json_of(&up_out);
    let (ws, agent) = (p.workspace(), p.agent());

    // The server password: a 0400 file of the agent's user, required by the server, and
    // nowhere else (inspect, devaipod's output, host argv).
    let listing = p.in_agent("stat -c '%a %u' /run/secrets/devaipod-opencode-password");
    assert_eq!(listing.trim(), "400 4096");
    let ws_listing = p.in_workspace(
        None,
        "stat -c '%a %U' /run/secrets/devaipod-opencode-password",
    );
    assert_eq!(
        ws_listing.trim(),
        "400 dev",
        "the workspace's user holds the password too"
    );
    let password = p.in_agent("cat /run/secrets/devaipod-opencode-password");
    assert!(password.len() >= 32, "password too short");
    let url = "http://127.0.0.1:4096/global/health";
    let code = |auth: &str| {
        p.in_workspace(
            None,
            &format!("curl -s -o /dev/null -w '%{{http_code}}' {auth} {url}"),
        )
    };
    assert_eq!(code(""), "401", "the agent answered without the password");
    assert_eq!(code("-u opencode:wrong"), "401");
    assert_eq!(code(&format!("-u opencode:{password}")), "200");
    let inspect = podman_ok(&["inspect", &ws, &agent]);
    assert!(
        !inspect.contains(&password),
        "the password shows in podman inspect"
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&up_out.stdout),
        stderr(&up_out)
    );
    assert!(
        !printed.contains(&password),
        "devaipod printed the password"
    );
    let argv = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    assert!(
        !String::from_utf8_lossy(&argv.stdout).contains(&password),
        "the password is on an argv"
    );
    // Something the workspace shares only with itself.
    p.in_workspace(None, "touch /dev/shm/devaipod-workspace-marker");
    let ws_uid = p.in_workspace(None, "id -u");
    // Limits are enforced rootful (and on cgroup v2); rootless cgroup v1 ignores them.
    let limits = if nix::unistd::geteuid().is_root() {
        "1"
    } else {
        "0"
    };
    let mut child = Command::new("podman")
        .args([
            "exec",
            "-i",
            &agent,
            "sh",
            "-s",
            "--",
            ws_uid.trim(),
            limits,
            "4096",
            "8589934592",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman exec");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        AGENT_PROBE.as_bytes(),
    )
    .expect("send the probe");
    let out = child.wait_with_output().expect("probe");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the agent probe failed:\n{report}{}",
        stderr(&out)
    );
    assert!(report.contains("probe: 0 failure(s)"), "{report}");
    assert!(
        report.lines().filter(|l| l.starts_with("PASS")).count() >= 28,
        "{report}"
    );

    // Nothing outside the pod reaches the agent's port: not the host on the pod's
    // address (rootful pods have one), and the listener is on loopback only (checked above).
    let ip = podman_ok(&[
        "inspect",
        &agent,
        "--format",
        "{{.NetworkSettings.IPAddress}}",
    ]);
    let infra_ip = podman_ok(&[
        "pod",
        "inspect",
        &p.pod(),
        "--format",
        "{{.InfraContainerID}}",
    ]);
    let infra_ip = podman_ok(&[
        "inspect",
        infra_ip.trim(),
        "--format",
        "{{.NetworkSettings.IPAddress}}",
    ]);
    for addr in [ip.trim(), infra_ip.trim()] {
        if addr.is_empty() {
            continue;
        }
        let sock: std::net::SocketAddr = format!("{addr}:4096").parse().expect("addr");
        let reached =
            std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2)).is_ok();
        assert!(!reached, "the host reached the agent at {sock}");
    }
}

#[test]
fn nothing_the_agent_writes_in_git_runs_in_the_workspace() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("hooks").config(BASE_CONFIG).up();
    let folder = p.folder();
    let git = "git -c user.name=a -c user.email=a@example.invalid";

    // The agent plants hooks every way it can in its own clone, and commits one.
    let plant = format!(
        "cd {folder} && \
         mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch /tmp/hook-ran\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && \
         mkdir -p .githooks && cp .git/hooks/pre-commit .githooks/pre-commit && \
         git config core.hooksPath .githooks && git config core.fsmonitor 'touch /tmp/fsmonitor-ran; false' && \
         echo 'x filter=evil' > .gitattributes && git config filter.evil.clean 'touch /tmp/filter-ran; cat' && \
         {git} add -A && {git} commit -q -m 'agent work' && echo committed"
    );
    assert_eq!(p.in_agent(&plant).trim(), "committed");
    // In the agent's own clone they do run (the test has teeth).
    assert_eq!(
        p.in_agent("test -e /tmp/hook-ran && echo ran").trim(),
        "ran"
    );

    // The workspace fetches the agent's work and commits on top: nothing runs.
    let work = format!(
        "cd {folder} && {git} fetch -q agent && {git} merge -q --ff-only agent/main && \
         touch x && {git} add -A && {git} commit -q -m 'human work' && {git} status --porcelain | wc -l"
    );
    assert_eq!(p.in_workspace(Some("dev"), &work).trim(), "0");
    let ran = p.in_workspace(
        None,
        "ls /tmp/hook-ran /tmp/fsmonitor-ran /tmp/filter-ran 2>/dev/null | wc -l",
    );
    assert_eq!(
        ran.trim(),
        "0",
        "something the agent wrote ran in the workspace"
    );
    // The workspace's git config is its own.
    let cfg = p.in_workspace(
        Some("dev"),
        &format!("cd {folder} && git config --get core.hooksPath || echo unset"),
    );
    assert_eq!(cfg.trim(), "unset");
    // And the agent cannot write the workspace's clone at all.
    let mounts = podman_ok(&[
        "inspect",
        &p.agent(),
        "--format",
        "{{range .Mounts}}{{.Name}} {{end}}",
    ]);
    assert!(
        !mounts.contains(&format!("{}-workspace", p.pod())),
        "{mounts}"
    );
}

/// An image's ENTRYPOINT never wraps devaipod's commands: it would run as the agent's
/// user before the agent's network gate (and in the workspace before devaipod's
/// keep-alive). This one fails every container it wraps, so `up` only succeeds, and the
/// agent only answers, if none of them ran it.
#[test]
fn an_image_entrypoint_never_wraps_devaipods_commands() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let b = TestPod::new("entrypoint");
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\n\
         RUN printf '#!/bin/sh\\necho \"hostile entrypoint ran: $*\" >&2\\nexit 7\\n' > /usr/local/bin/hostile-entrypoint \\\n \
         && chmod 755 /usr/local/bin/hostile-entrypoint && echo {}\n\
         ENTRYPOINT [\"/usr/local/bin/hostile-entrypoint\"]\n",
        b.name()
    );
    let p = b
        .dockerfile(
            r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev"}"#,
            &dockerfile,
        )
        .up();
    // The image really has it (the test has teeth).
    let image = podman_ok(&["inspect", &p.agent(), "--format", "{{.ImageName}}"]);
    let entrypoint = podman_ok(&[
        "image",
        "inspect",
        image.trim(),
        "--format",
        "{{json .Config.Entrypoint}}",
    ]);
    assert!(entrypoint.contains("hostile-entrypoint"), "{entrypoint}");
    for c in [p.agent(), p.workspace()] {
        let argv = podman_ok(&["inspect", &c, "--format", "{{.Path}} {{json .Args}}"]);
        assert!(!argv.contains("hostile"), "{c} runs {argv}");
    }
    assert_eq!(p.in_agent("echo alive").trim(), "alive");
    assert_eq!(p.in_workspace(None, "echo alive").trim(), "alive");
}
