//! git in the workspace never executes what the agent writes into its clone: the agent
//! names a program in every git setting that runs one, the workspace's user then works
//! in the agent's clone (which git refuses) and fetches, reads and merges the agent's
//! branch in its own clone (which works), and no program ran and no trusted secret was
//! read. A workspace user with the agent's uid is refused.

use crate::common::assert_fails_with;
use crate::common::pod::{BASE_IMAGE, TestPod, require_image, stderr, stdout};

/// The workspace's trusted secret (`[trusted] secrets`), at /run/secrets/NAME there.
const SECRET: &str = "DEVAIPOD_INERT_GIT_SECRET";
/// Where the workspace sees the agent's clone.
const AGENT_CLONE: &str = "/var/lib/devaipod/agent-repo";
/// Every program the agent names writes /tmp/inert-git-WHAT in the container it runs in.
const MARKER_PREFIX: &str = "/tmp/inert-git-";

/// What a planted program does: record that it ran, as which uid, and what it read of
/// the workspace's trusted secret.
fn record(what: &str) -> String {
    format!("{{ id -u; cat /run/secrets/{SECRET}; }} >{MARKER_PREFIX}{what} 2>&1")
}

/// A planted program that then passes its input on (a pager, filter or textconv that
/// works, so git has no reason to stop early).
fn marker(what: &str) -> String {
    format!("{}; cat", record(what))
}

/// The settings the agent writes into its clone, each naming a program; hooks come
/// in a hooks folder of their own (`core.hooksPath`) and in `.git/hooks`.
fn plant_script(folder: &str, tag: &str) -> String {
    let settings = [
        ("core.fsmonitor", marker("fsmonitor")),
        ("core.pager", marker("pager")),
        ("core.sshCommand", marker("ssh-command")),
        ("core.alternateRefsCommand", marker("alternate-refs")),
        (
            "credential.helper",
            format!("!{}", marker("credential-helper")),
        ),
        ("diff.evil.command", marker("diff-command")),
        ("diff.evil.textconv", marker("textconv")),
        ("filter.evil.clean", marker("filter-clean")),
        ("filter.evil.smudge", marker("filter-smudge")),
        ("alias.st", format!("!{}", marker("alias"))),
        ("include.path", "evil.inc".to_string()),
        ("core.hooksPath", ".git/evil-hooks".to_string()),
    ];
    let config: String = settings
        .iter()
        .map(|(k, v)| format!("git config {k} \"{v}\"\n"))
        .collect();
    let hooks = "pre-commit post-commit post-checkout post-merge post-rewrite reference-transaction pre-auto-gc post-index-change pre-push";
    format!(
        "set -e\n\
         cd {folder}\n\
         echo agent-line-{tag} >> hello.txt\n\
         echo 'evil.txt diff=evil filter=evil' > .gitattributes\n\
         echo one > evil.txt\n\
         git add -A\n\
         git commit -q -m 'agent work {tag}'\n\
         mkdir -p .git/hooks .git/evil-hooks\n\
         for h in {hooks}; do\n\
           printf '#!/bin/sh\\n%s\\nexit 0\\n' \"{hook}\" > .git/evil-hooks/$h\n\
           chmod +x .git/evil-hooks/$h\n\
           cp .git/evil-hooks/$h .git/hooks/$h\n\
         done\n\
         printf '[alias]\\n\\tinc = \"!%s\"\\n' \"{include}\" > .git/evil.inc\n\
         git init -q --bare .git/alternate.git\n\
         echo ../alternate.git/objects > .git/objects/info/alternates\n\
         git remote add evil ssh://example.invalid/evil.git\n\
         {config}\
         echo more-{tag} >> hello.txt\n\
         git commit -q -m 'agent work 2 {tag}' -- hello.txt\n\
         echo two >> evil.txt\n\
         git rev-parse HEAD\n",
        hook = record("hook-$h"),
        include = marker("include"),
    )
}

/// What the workspace's user runs inside the agent's clone (all of it must be refused).
fn browse_script() -> String {
    format!(
        "cd {AGENT_CLONE}\n\
         for c in status diff 'log -p' show st inc 'ls-remote evil' fetch 'diff HEAD~1'; do git $c 2>&1; done\n\
         printf 'protocol=https\\nhost=example.invalid\\n\\n' | GIT_TERMINAL_PROMPT=0 git credential fill 2>&1\n\
         true\n"
    )
}

/// `devaipod ssh NAME -- sh -c SCRIPT` (the workspace's user, in its clone), which
/// must succeed; its stdout.
#[track_caller]
fn as_the_user(pod: &TestPod, script: &str) -> String {
    let o = pod.run(&["ssh", pod.name(), "--", "sh", "-c", script]);
    assert!(
        o.status.success(),
        "{script} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The markers in the workspace, with their content.
#[track_caller]
fn markers_in_workspace(pod: &TestPod) -> String {
    pod.in_workspace(
        None,
        "find / \\( -path /proc -o -path /sys \\) -prune -o -name 'inert-git-*' -print 2>/dev/null | sort | while read f; do echo \"$f: $(tr '\\n' ' ' < $f)\"; done",
    )
}

#[test]
fn git_in_the_workspace_never_runs_what_the_agent_writes() {
    require_image(BASE_IMAGE);
    let tag = format!("{:x}", std::process::id());
    let secret_value = format!("inert-git-trusted-{tag}-7b3a");
    let p = TestPod::new("inertgit")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .user_config(&format!("[trusted]\nsecrets = [\"{SECRET}\"]\n"))
        .env(SECRET, &secret_value)
        .up();
    let folder = p.folder();
    let branch = format!("agent/devaipod/{}", p.name());
    // The workspace's user can read the trusted secret: what a planted program would take.
    assert_eq!(
        p.in_workspace(Some("dev"), &format!("cat /run/secrets/{SECRET}")),
        secret_value
    );
    // An image whose system config trusts every directory must not re-open the hole.
    p.in_workspace(
        Some("root"),
        "printf '[safe]\\n\\tdirectory = *\\n' > /etc/gitconfig",
    );

    // The agent plants its programs, through devaipod's own door into its container.
    let o = p.run(&[
        "exec",
        p.name(),
        "--container",
        "agent",
        "--",
        "sh",
        "-c",
        &plant_script(&folder, &tag),
    ]);
    assert!(o.status.success(), "planting failed: {}", stderr(&o));
    let agent_head = stdout(&o).trim().to_string();
    assert_eq!(agent_head.len(), 40, "{}", stdout(&o));
    // The programs work: the agent's own commit ran its hooks (in the agent, with no
    // secret to read there).
    let ran = p.in_agent(&format!("cat {MARKER_PREFIX}hook-pre-commit"));
    assert_eq!(ran.lines().next(), Some("4096"), "{ran}");
    assert!(!ran.contains(&secret_value));

    // The workspace's user browses the agent's clone: git refuses, without a terminal...
    let browsed = as_the_user(&p, &browse_script());
    assert!(browsed.contains("dubious ownership"), "{browsed}");
    // ...and on one, where git would start a pager.
    let paged = p.on_terminal(
        &format!(
            "exec {} --container workspace --user dev -- sh -c 'cd {AGENT_CLONE}; test -t 1 && echo on-a-terminal; export PAGER=cat; git log; git show; git -p status; git diff HEAD~1; cd {folder}; git log -p -1; echo browsed-on-a-terminal'",
            p.name()
        ),
    );
    let paged_text = String::from_utf8_lossy(&paged.stdout);
    assert!(paged_text.contains("on-a-terminal"), "{paged_text}");
    assert!(paged_text.contains("dubious ownership"), "{paged_text}");
    assert!(paged_text.contains("browsed-on-a-terminal"), "{paged_text}");

    // In its own clone, the agent's work arrives: fetch, log, diff, merge.
    let fetched = as_the_user(
        &p,
        &format!("git fetch -q agent 2>&1 && git rev-parse {branch}"),
    );
    assert_eq!(fetched.trim(), agent_head);
    let log = as_the_user(&p, &format!("git log -p {branch}"));
    assert!(log.contains(&format!("+agent-line-{tag}")), "{log}");
    assert!(log.contains(&format!("agent work 2 {tag}")), "{log}");
    let diff = as_the_user(&p, &format!("git diff HEAD...{branch}"));
    assert!(diff.contains(&format!("+more-{tag}")), "{diff}");
    assert!(diff.contains("evil.txt"), "{diff}");
    let merged = as_the_user(
        &p,
        &format!(
            "git -c user.name=dev -c user.email=dev@example.invalid merge -q --no-edit {branch} && git rev-parse HEAD && git status --porcelain && cat hello.txt"
        ),
    );
    assert!(merged.starts_with(&agent_head), "{merged}");
    assert!(merged.contains(&format!("more-{tag}")), "{merged}");
    let paged = p.on_terminal(
        &format!(
            "exec {} --container workspace --user dev -- sh -c 'cd {folder}; export PAGER=cat; git log -p -2; git show; git diff HEAD~2; echo own-clone-on-a-terminal'",
            p.name()
        ),
    );
    let paged_text = String::from_utf8_lossy(&paged.stdout);
    // (colored on a terminal: the line itself, not its `+`)
    assert!(
        paged_text.contains(&format!("agent-line-{tag}")),
        "{paged_text}"
    );
    assert!(
        paged_text.contains("own-clone-on-a-terminal"),
        "{paged_text}"
    );

    // Nothing ran in the workspace, and the trusted secret was copied nowhere.
    assert_eq!(
        markers_in_workspace(&p).trim(),
        "",
        "a program the agent wrote ran in the workspace"
    );
    let copies = p.in_workspace(
        None,
        &format!(
            "grep -rlF '{secret_value}' /tmp /var/tmp /home /root /workspaces /dev/shm /var/lib/devaipod 2>/dev/null | wc -l"
        ),
    );
    assert_eq!(copies.trim(), "0", "the trusted secret was copied");

    // The test has teeth: had git trusted the clone (as a user's own global config can
    // tell it to), the same commands would have run the agent's programs and read the
    // secret.
    let trusted = as_the_user(
        &p,
        &format!(
            "printf '[safe]\\n\\tdirectory = *\\n' > /tmp/trust-all.gitconfig\n\
             export GIT_CONFIG_GLOBAL=/tmp/trust-all.gitconfig\n\
             {}\
             cd {AGENT_CLONE} && script -qec 'git log -1' /dev/null </dev/null >/dev/null 2>&1 || true\n",
            browse_script()
        ),
    );
    let found = markers_in_workspace(&p);
    for what in [
        "fsmonitor",
        "pager",
        "ssh-command",
        "credential-helper",
        "diff-command",
        "textconv",
        "filter-clean",
        "alias",
        "include",
    ] {
        let line = found
            .lines()
            .find(|l| l.starts_with(&format!("{MARKER_PREFIX}{what}:")))
            .unwrap_or_else(|| panic!("{what} did not run when trusted: {found}\n{trusted}"));
        assert!(line.contains(&secret_value), "{line}");
    }
}

#[test]
fn a_workspace_user_with_the_agents_uid_is_refused() {
    require_image(BASE_IMAGE);
    // As the user people work as, and as the workspace's own process user only.
    for (test, config) in [
        (
            "agentuid",
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "4096"}"#,
        ),
        (
            "agentproc",
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev", "runArgs": ["--user", "4096"]}"#,
        ),
    ] {
        let p = TestPod::new(test).config(config).build();
        let o = p.up_fails(&[], "uid 4096, the agent's uid");
        assert_fails_with(&o, "any other uid");
    }
}
