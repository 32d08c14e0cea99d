//! The job containers `review` and `delete` run over the agent's clone, attacked from
//! the agent's side: nothing its git config, hooks or attributes name runs in them,
//! what they report cannot be forged into commits or crash devaipod, a job that git
//! stalls in is stopped, and a job is hardened like the agent.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, TestPod, json_of, podman, podman_ok, require_image, stderr, stdout,
};
use crate::common::wait_until;

/// What every planted program does if it runs: print a marker on stdout and stderr
/// (devaipod's debug log shows a job's output) and append a forged commit line with a
/// non-hex id to every output file a job writes.
const EVIL: &str = r#"#!/bin/sh
what=$1
echo "MARKER-$what" >&2
[ "$what" = filter ] || echo "MARKER-$what"
for f in /tmp/out /tmp/out/tips /tmp/out/commits /tmp/out/uncommitted; do
  printf 'ééééééééééééééééééééé MARKER-%s\n' "$what" >> "$f"
done 2>/dev/null
[ "$what" = filter ] && exec cat
exit 0
"#;

/// `devaipod exec NAME --container agent -- sh -c SCRIPT` in the agent's clone; its
/// stdout.
#[track_caller]
fn as_agent(p: &TestPod, script: &str) -> String {
    stdout(&p.as_agent(&format!("cd {} && {script}", p.folder()), &[]))
}

/// devaipod's exit code was 0 or 1 (never a panic's 101) and nothing planted ran.
#[track_caller]
fn assert_clean(what: &str, o: &Output) {
    let all = format!("{}{}", stdout(o), stderr(o));
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{what}: exit {:?}: {all}",
        o.status.code()
    );
    assert!(!all.contains("panicked"), "{what}: {all}");
    assert!(
        !all.contains("MARKER"),
        "{what}: something the agent planted ran: {all}"
    );
}

#[test]
fn nothing_in_the_agents_clone_runs_in_or_fools_review_and_delete() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("jobs")
        .config(BASE_CONFIG)
        .env("RUST_LOG", "devaipod=debug")
        .env("DEVAIPOD_JOB_TIMEOUT_SECS", "30")
        .up();
    let name = p.name().to_string();
    let git = "git -c user.name=a -c user.email=a@example.invalid";

    // The agent plants every program-running setting git has in its clone, a nested
    // repo with its own fsmonitor, a committed .gitattributes naming drivers, and
    // commits whose subjects look like devaipod's report lines.
    let plant = format!(
        r#"cat > .evil.sh <<'X'
{EVIL}X
chmod +x .evil.sh
mkdir -p .githooks
for h in post-index-change reference-transaction post-checkout pre-auto-gc; do
  printf '#!/bin/sh\nexec sh .evil.sh hook-%s\n' $h > .githooks/$h
  chmod +x .githooks/$h
done
git config core.hooksPath .githooks
git config core.fsmonitor 'sh .evil.sh fsmonitor'
git config core.pager 'sh .evil.sh pager'
git config core.sshCommand 'sh .evil.sh ssh'
git config core.alternateRefsCommand 'sh .evil.sh alternate-refs'
git config credential.helper '!sh .evil.sh credential'
git config diff.evil.command 'sh .evil.sh diff'
git config diff.evil.textconv 'sh .evil.sh textconv'
git config filter.evil.clean 'sh .evil.sh filter'
git config filter.evil.smudge 'sh .evil.sh filter'
printf '[core]\n\tfsmonitor = sh .evil.sh include\n' > .evil.cfg
git config include.path ../.evil.cfg
git config alias.st '!sh .evil.sh alias'
echo '* filter=evil diff=evil' > .gitattributes
mkdir -p sub && (cd sub && git init -q && git config core.fsmonitor 'sh ../.evil.sh nested')
echo work > work.txt
{git} add .gitattributes work.txt
{git} commit -q -m 'agent work ---' -m 'body'
{git} commit -q --allow-empty -m 'x ---
---
0123456789abcdef0123456789abcdef01234567 forged'
echo more >> work.txt
{git} rev-list HEAD --not {base}
echo ---
git -c core.fsmonitor=false -c core.hooksPath=/dev/null status --porcelain | wc -l"#,
        base = p.head()
    );
    let planted = as_agent(&p, &plant);
    let (commits, count) = planted.split_once("---\n").expect("two parts");
    let commits: Vec<&str> = commits.lines().collect();
    assert_eq!(commits.len(), 2, "{planted}");
    // (counted with the agent's fsmonitor off: it would hide the change to work.txt)
    let uncommitted: usize = count.trim().parse().expect("count");
    assert_eq!(uncommitted, 5, "{planted}");
    // In the agent's own clone they do run (the test has teeth).
    let ran = as_agent(
        &p,
        "git status --porcelain 2>&1 >/dev/null; git diff 2>&1 | head -c 0",
    );
    assert!(
        ran.contains("MARKER-include") && ran.contains("MARKER-hook-post-index-change"),
        "{ran}"
    );

    // delete refuses (the commits are on no host branch), lists them, runs nothing.
    let o = p.run(&["delete", name.as_str()]);
    assert_clean("delete", &o);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("holds 2 commit(s)"), "{err}");
    for c in &commits {
        assert!(err.contains(&c[..12]), "{c} in {err}");
    }
    // The debug log shows the jobs' output, so a program that ran would show there.
    assert!(err.contains("job ended"), "no job output in the log: {err}");

    // review fetches exactly the agent's commits and counts what it left uncommitted.
    let o = p.run(&["review", name.as_str(), "--json"]);
    assert_clean("review --json", &o);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json_of(&o);
    let got: Vec<&str> = v["commits"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|c| c["sha"].as_str().expect("sha"))
        .collect();
    assert_eq!(got, commits, "{v}");
    assert_eq!(
        v["commits"][0]["subject"],
        "x --- --- 0123456789abcdef0123456789abcdef01234567 forged"
    );
    assert_eq!(v["commits"][1]["subject"], "agent work ---");
    assert_eq!(v["uncommitted"], uncommitted, "{v}");
    let o = p.run(&["review", name.as_str(), "--no-diff"]);
    assert_clean("review", &o);
    assert!(o.status.success(), "{}", stderr(&o));
    let tip = std::process::Command::new("git")
        .args(["-C", &p.path(), "rev-parse", &format!("devaipod/{name}")])
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&tip.stdout).trim(), commits[0]);

    // A non-hex "commit id" in packed-refs: review and delete refuse, no panic.
    as_agent(
        &p,
        "printf 'ééééééééééééééééééééé refs/heads/fake\\n' >> .git/packed-refs",
    );
    for args in [["review", name.as_str()], ["delete", name.as_str()]] {
        let o = p.run(&args);
        assert_clean(&args.join(" "), &o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    }
    as_agent(&p, "sed -i '/refs\\/heads\\/fake/d' .git/packed-refs");

    // A FIFO where git reads stalls the job: it is stopped after the timeout with an
    // error naming the pod. Meanwhile the job is seen from inside: hardened like the
    // agent (unshare fails under its seccomp profile, no capabilities, no new
    // privileges, read-only root, no network).
    as_agent(&p, "mkfifo .git/objects/info/alternates");
    let child = p
        .command(&["review", name.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devaipod runs");
    let job_filter = [
        "ps",
        "--filter",
        "label=io.devaipod.role=helper",
        "--filter",
        &format!("label=io.devaipod.pod={name}"),
        "--format",
        "{{.Names}}",
    ];
    let mut job = String::new();
    wait_until("the job to run", Duration::from_secs(30), || {
        job = podman_ok(&job_filter).trim().to_string();
        !job.is_empty()
    });
    let unshare = podman(&["exec", &job, "unshare", "-Ur", "true"]);
    assert!(!unshare.status.success(), "unshare -Ur worked in the job");
    let status = podman_ok(&["exec", &job, "cat", "/proc/1/status"]);
    for want in [
        "Seccomp:\t2",
        "NoNewPrivs:\t1",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
    ] {
        assert!(status.contains(want), "{want} in {status}");
    }
    let id = podman_ok(&["exec", &job, "id", "-u"]);
    assert_eq!(id.trim(), "4096");
    for path in ["/repo/x", "/etc/x"] {
        let write = podman(&["exec", &job, "touch", path]);
        assert!(!write.status.success(), "the job could write {path}");
    }
    let links = podman_ok(&["exec", &job, "ls", "/sys/class/net"]);
    assert_eq!(
        links.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{links}"
    );
    let labels = podman_ok(&["inspect", &job, "--format", "{{json .Config.Labels}}"]);
    for key in [
        "io.devaipod.pod",
        "io.devaipod.role",
        "io.devaipod.repo",
        "io.devaipod.version",
    ] {
        assert!(labels.contains(key), "{key} in {labels}");
    }
    let o = child.wait_with_output().expect("devaipod ends");
    assert_clean("review of a stalled clone", &o);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("took longer than 30s") && err.contains(&p.pod()) && err.contains("--force"),
        "{err}"
    );
    assert!(
        podman_ok(&[
            "ps",
            "-a",
            "--filter",
            "label=io.devaipod.role=helper",
            "--filter",
            &format!("label=io.devaipod.pod={name}"),
            "-q"
        ])
        .trim()
        .is_empty(),
        "the job was left behind"
    );
    as_agent(&p, "rm .git/objects/info/alternates");
}
