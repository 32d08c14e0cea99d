//! Hostile sizes in the agent's clone: whatever it holds, reading it (`delete`,
//! `review`) costs bounded time and memory. Thousands of branches are checked by one job
//! and two host git processes, not one per branch; refs beyond the job's bounds
//! (src/podman/job.rs, docs/agent.md) are refused with a message naming what, where and
//! what to do, never read whole.
//!
//! The refusals' test writes a 1 GiB packed-refs into the agent's clone; both tests are
//! `#[ignore]`d and run on the rootful leg only (CI time), alone after the suite (the Justfile's
//! `test-rootful`; docs/ci.md), where it also measures devaipod's peak RSS.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::BASE_CONFIG;
use crate::common::PodmanService;
use crate::common::pod::{BASE_IMAGE, TestPod, podman_ok, require_image, stderr, stdout};

/// How many branches the agent makes, each with a commit of its own.
const BRANCHES: usize = 5000;
/// The branch whose commit the host does not hold at first.
const LOST: usize = 2345;

/// `sh -c SCRIPT` as the agent in its clone; its stdout.
#[track_caller]
fn as_agent(p: &TestPod, script: &str) -> String {
    stdout(&p.as_agent(&format!("cd {} && {script}", p.folder()), &[]))
}

/// A fast-import stream of commit `i` on top of `base` on branch `PREFIX/i`: the same
/// commit (same id) wherever it is imported, as everything in it is fixed.
fn commit_stream(prefix: &str, base: &str, i: usize) -> String {
    format!(
        "commit refs/heads/{prefix}/{i}\ncommitter a <a@example.invalid> 1700000000 +0000\ndata 6\nc{i:05}\nfrom {base}\n\n"
    )
}

/// The agent's side of [`commit_stream`], made by a shell loop in its clone (printf
/// writes exactly what the Rust side writes).
fn agent_import_script(base: &str) -> String {
    format!(
        r#"i=1
while [ $i -le {BRANCHES} ]; do
  printf 'commit refs/heads/c/%d\ncommitter a <a@example.invalid> 1700000000 +0000\ndata 6\nc%05d\nfrom %s\n\n' $i $i {base}
  i=$((i + 1))
done | git fast-import --quiet
git for-each-ref refs/heads | wc -l"#
    )
}

/// Imports `stream` into the host repo.
#[track_caller]
fn host_import(repo: &Path, stream: &str) {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stream.as_bytes())
        .expect("feeding fast-import");
    assert!(child.wait().expect("fast-import").success());
}

/// A folder with a `git` that logs its arguments to `LOG` and runs the real git: put
/// first on PATH, it shows every host git devaipod runs.
fn git_spy(dir: &Path) -> (String, std::path::PathBuf) {
    let real = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    assert!(real.starts_with('/'), "no git on PATH: {real}");
    let log = dir.join("git.log");
    crate::common::pod::write_executable(
        &dir.join("git"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            log.display()
        ),
    );
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, log)
}

/// The git subcommands the spy saw since the log was last taken (and empties it).
fn take_git_calls(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text.lines()
        .map(|l| {
            // `-C DIR -c K=V -c K=V SUBCOMMAND ...`
            l.split(' ')
                .find(|w| !(w.starts_with('-') || w.contains('=') || w.starts_with('/')))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The names of the job containers made for `p` so far (the engine's create events).
fn jobs_made(p: &TestPod, since: u64) -> BTreeSet<String> {
    let out = podman_ok(&[
        "events",
        "--stream=false",
        "--since",
        &since.to_string(),
        "--filter",
        "event=create",
        "--filter",
        &format!("label=io.devaipod.pod={}", p.name()),
        "--format",
        "{{.Name}}",
    ]);
    out.lines()
        .filter(|n| n.starts_with(&format!("{}-job-", p.pod())))
        .map(str::to_string)
        .collect()
}

/// Runs devaipod `args` for `p` with PATH = `path`: its output, the jobs it made, the
/// host git subcommands it ran, and how long it took.
fn checked_run(
    p: &TestPod,
    since: u64,
    path: &str,
    log: &Path,
    args: &[&str],
) -> (Output, usize, Vec<String>, f64) {
    let before = jobs_made(p, since);
    let t = Instant::now();
    let o = p
        .command(args)
        .env("PATH", path)
        .output()
        .expect("devaipod");
    let took = t.elapsed().as_secs_f64();
    let after = jobs_made(p, since);
    let calls = take_git_calls(log);
    (o, after.difference(&before).count(), calls, took)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_sub(1)
}

/// `err` (of `cmd`) refuses what is `beyond` a bound, unread, naming the agent's
/// volume and what to do: look inside the agent, or delete anyway.
#[track_caller]
fn assert_refused(err: &str, beyond: &str, p: &TestPod, cmd: &str) {
    let name = p.name();
    for want in [
        beyond,
        "was not read",
        &format!("volume {}-agent-repo", p.pod()),
        &format!("devaipod exec {name} --container agent"),
        &format!("devaipod delete {name} --force"),
    ] {
        assert!(err.contains(want), "{cmd}: {want} in {err}");
    }
}

#[test]
#[ignore = "heavy: the rootful leg runs it after the suite (just test-rootful)"]
fn thousands_of_agent_branches_cost_one_job_and_two_host_gits() {
    require_image(BASE_IMAGE);
    let since = now_secs();
    let p = TestPod::new("branches").config(BASE_CONFIG).up();
    let name = p.name().to_string();
    let base = p.head();
    let spy = tempfile::tempdir().expect("tempdir");
    let (path, log) = git_spy(spy.path());

    // The agent makes 5000 branches, each with a commit of its own; the host holds all
    // of them but one (the same commits, brought over by a review).
    let refs = as_agent(&p, &agent_import_script(&base));
    assert_eq!(refs.trim(), (BRANCHES + 2).to_string(), "{refs}");
    let lost = as_agent(&p, &format!("git rev-parse c/{LOST}"));
    let lost = lost.trim();
    let held: String = (1..=BRANCHES)
        .filter(|i| *i != LOST)
        .map(|i| commit_stream("kept", &base, i))
        .collect();
    host_import(p.repo(), &held);

    // delete refuses naming exactly the one commit the host lacks: one job, one
    // cat-file and one rev-list on the host, whatever the number of branches.
    let (o, jobs, calls, took) = checked_run(&p, since, &path, &log, &["delete", &name]);
    eprintln!("delete with {BRANCHES} agent branches: {took:.2}s");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("holds 1 commit(s)"), "{err}");
    assert!(
        err.contains(&format!("  {} c{LOST:05}", &lost[..12])),
        "{err}"
    );
    assert_eq!(jobs, 1, "jobs made by delete");
    assert_eq!(calls, ["cat-file", "rev-list"], "host git calls");

    // status does not read the clone and is unaffected.
    let s = p.status();
    assert_eq!(s["name"], name.as_str(), "{s}");

    // Once the host holds that commit too, delete goes ahead: still one job and two
    // host gits.
    host_import(p.repo(), &commit_stream("kept", &base, LOST));
    let (o, jobs, calls, took) = checked_run(&p, since, &path, &log, &["delete", &name]);
    eprintln!("delete with {BRANCHES} reviewed agent branches: {took:.2}s");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(jobs, 1, "jobs made by delete");
    assert_eq!(calls, ["cat-file", "rev-list"], "host git calls");
    p.assert_nothing_left();
}

/// A packed-refs line of the padding the agent writes: 56 bytes.
fn pad_line(base: &str) -> String {
    format!("{base} refs/tags/pad\n")
}

#[test]
#[ignore = "writes 1 GiB: the rootful leg runs it alone after the suite (just test-rootful)"]
fn refs_beyond_the_bounds_are_refused_unread_and_devaipod_stays_small() {
    require_image(BASE_IMAGE);
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "GNU time (/usr/bin/time) measures devaipod's peak RSS: `just setup` installs it (apt-get install time)"
    );
    let since = now_secs();
    let p = TestPod::new("packed").config(BASE_CONFIG).up();
    let name = p.name().to_string();
    let base = p.head();
    let spy = tempfile::tempdir().expect("tempdir");
    let (path, log) = git_spy(spy.path());

    // More files under .git/refs/heads than a job reads are refused before git reads
    // them, and so is a branch file larger than a ref.
    as_agent(
        &p,
        "mkdir .git/refs/heads/many && cd .git/refs/heads/many && seq 0 20000 | xargs touch",
    );
    let (o, jobs, calls, _) = checked_run(&p, since, &path, &log, &["delete", &name]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_refused(
        &err,
        ".git/refs/heads holds more than 20000 files and folders",
        &p,
        "delete",
    );
    assert_eq!((jobs, calls.len()), (1, 0), "{calls:?}");
    as_agent(
        &p,
        "rm -rf .git/refs/heads/many && head -c 2048 /dev/zero | tr '\\0' a > .git/refs/heads/big",
    );
    let (o, _, _, _) = checked_run(&p, since, &path, &log, &["review", &name]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a file under its .git/refs/heads is larger than 1024 bytes"),
        "{err}"
    );
    as_agent(&p, "rm .git/refs/heads/big");

    // A packed-refs of 1 GiB (the agent's own refs packed first, then padding).
    let gib: usize = 1 << 30;
    let lines = gib.div_ceil(pad_line(&base).len());
    let size = as_agent(
        &p,
        &format!(
            "git pack-refs --all && yes '{}' | head -n {lines} >> .git/packed-refs && wc -c < .git/packed-refs",
            pad_line(&base).trim_end()
        ),
    );
    let size: usize = size.trim().parse().expect("size");
    assert!(size >= gib, "{size}");

    // devaipod talks to a service of the test's own, so the service is not counted as
    // devaipod's child; GNU time reports the peak RSS of devaipod and what it waited for
    // (wait4's ru_maxrss).
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let socket = sock_dir.path().join("podman.sock");
    let _service = PodmanService::start(&socket);
    let host = format!("unix://{}", socket.display());
    for cmd in ["delete", "review"] {
        let rss_file = sock_dir.path().join(format!("{cmd}.rss"));
        let t = Instant::now();
        let o = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(crate::common::pod::devaipod_bin())
            .args([cmd, &name])
            .env("CONTAINER_HOST", &host)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("time devaipod");
        let took = t.elapsed().as_secs_f64();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert_refused(&err, ".git/packed-refs is larger than 64 MiB", &p, cmd);
        let rss = std::fs::read_to_string(&rss_file).expect("GNU time's report");
        let kib: u64 = rss
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("not a number: {rss}"));
        eprintln!(
            "{cmd} with a 1 GiB packed-refs: peak RSS {:.1} MB, {took:.2}s",
            kib as f64 / 1024.0
        );
        assert!(
            kib < 64 * 1024,
            "{cmd}: devaipod's peak RSS {kib} KiB is not under 64 MiB"
        );
    }

    // The fix the message names works: with the padding gone, delete goes ahead.
    as_agent(
        &p,
        "grep -v ' refs/tags/pad$' .git/packed-refs > /tmp/packed && cat /tmp/packed > .git/packed-refs && wc -c < .git/packed-refs",
    );
    let o = p
        .command(&["delete", &name])
        .env("CONTAINER_HOST", &host)
        .output()
        .expect("devaipod");
    assert!(o.status.success(), "{}", stderr(&o));
    p.assert_nothing_left();
}
