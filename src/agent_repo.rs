//! The agent's clone, read from the host: what it holds beyond the commit the pod started
//! from, whether the host already has those commits, and bringing its branch over as a
//! bundle. Every read runs in a short-lived job container over the clone's volume, never
//! in the pod. `review` shows and fetches this work; `delete` refuses to lose it.
//!
//! What comes back is the agent's data, so it is treated as hostile: commit ids must be
//! hex of the clone's hash length, branch names git's shape, subjects and counts are
//! bounded, and nothing here panics on any bytes.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::names::Name;
use crate::plan::labels;
use crate::podman::Engine;
use crate::podman::job::{Fetch, JOB_OUT, MAX_BRANCHES, MAX_COMMITS, ObjectFormat, TooLarge};
use crate::process::{AsyncCommandRunExt, CommandRunExt, ProcessError};

/// The most of the report (branch tips, the commit list, the uncommitted count)
/// devaipod reads from a job: at most [`MAX_BRANCHES`] and [`MAX_COMMITS`] lines of
/// bounded length fit well within it.
const REPORT_LIMIT: u64 = 16 * 1024 * 1024;
/// A commit subject is cut to this many characters (git pads and truncates it in the
/// job, devaipod cuts again).
const SUBJECT_MAX_CHARS: usize = 200;
/// git allows longer ref names, but no branch an agent needs is longer.
const REF_NAME_MAX: usize = 255;
/// An uncommitted count above this is not a count.
const MAX_UNCOMMITTED: usize = 100_000_000;
/// The most of the clone's loose branch refs `delete`'s fast path reads (an archive of
/// about 50 branches): a clone with more goes to the job, which reads any number in one
/// git process. Podman sends an archive at a few MB/s, so a larger bound would cost
/// more than the job it saves.
const LOOSE_REFS_LIMIT: u64 = 64 * 1024;
/// The most of the clone's packed-refs `delete`'s fast path reads (about 12 000 refs).
const PACKED_REFS_LIMIT: u64 = 1024 * 1024;

/// One commit of the agent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CommitRow {
    pub sha: String,
    pub subject: String,
}

impl CommitRow {
    /// The commit id's first 12 characters.
    pub(crate) fn short(&self) -> &str {
        self.sha.get(..12).unwrap_or(&self.sha)
    }
}

/// What the agent's clone holds beyond the commit the pod started from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgentWork {
    /// The host repo the pod was made from.
    pub repo: PathBuf,
    /// The commit the pod started from.
    pub base: String,
    pub base_branch: Option<String>,
    /// The agent's branch (`devaipod/NAME`) and its tip.
    pub branch: String,
    pub tip: Option<String>,
    /// Commits on the agent's branches that are not in `base`, newest first.
    pub commits: Vec<CommitRow>,
    /// Files the agent changed but did not commit (review cannot bring those).
    pub uncommitted: usize,
}

/// Reads the agent's clone from its volume (the pod may be running or stopped).
/// `repo` and `base` come from the pod's labels.
pub(crate) async fn agent_work(engine: &Engine, name: &Name) -> Result<AgentWork> {
    let row = engine.workspace(name).await?;
    let pod = engine.inspect_pod(&row.pod).await?;
    let label = |k: &str| pod.label(k).map(str::to_string);
    let missing = |k: &str| {
        anyhow!(
            "pod {} has no {k} label (made by an older devaipod): review is not possible; `devaipod delete {name} --force` removes it",
            row.pod
        )
    };
    let repo = PathBuf::from(label(labels::REPO).ok_or_else(|| missing(labels::REPO))?);
    let base = label(labels::BASE).ok_or_else(|| missing(labels::BASE))?;
    let format = ObjectFormat::of_commit(&base).ok_or_else(|| {
        anyhow!(
            "pod {}: the {} label is not a commit",
            row.pod,
            labels::BASE
        )
    })?;
    // One git process lists every branch tip and one lists every commit, whatever
    // their number; beyond the bounds the job refuses with its own exit code.
    let script = format!(
        r#"git for-each-ref --count={} --format='%(objectname) %(refname)' refs/heads > "$out/tips"
if [ "$(wc -l < "$out/tips")" -gt {MAX_BRANCHES} ]; then exit {}; fi
git log --max-count={} --format='%H %<({SUBJECT_MAX_CHARS},trunc)%s' --branches --not "$1" -- > "$out/commits"
if [ "$(wc -l < "$out/commits")" -gt {MAX_COMMITS} ]; then exit {}; fi
if git status --porcelain --ignore-submodules=all --untracked-files=normal > /tmp/status; then
  wc -l < /tmp/status > "$out/uncommitted"
fi"#,
        MAX_BRANCHES + 1,
        TooLarge::Branches.code(),
        MAX_COMMITS + 1,
        TooLarge::Commits.code(),
    );
    let out = clone_job(
        engine,
        name,
        &repo.to_string_lossy(),
        format,
        &script,
        &[&base],
        Fetch::Tree {
            path: JOB_OUT,
            limit: REPORT_LIMIT,
        },
    )
    .await?;
    let report = parse_report(&out.files, format)
        .with_context(|| format!("reading what the agent's clone of {} holds", row.pod))?;
    let branch = format!("devaipod/{name}");
    Ok(AgentWork {
        tip: report
            .tips
            .into_iter()
            .find(|(n, _)| *n == branch)
            .map(|(_, s)| s),
        repo,
        base,
        base_branch: label(labels::BASE_BRANCH),
        branch,
        commits: report.commits,
        uncommitted: report.uncommitted,
    })
}

/// Whether every branch of the agent's clone still points at the commit the pod
/// started from, read from its ref files (no container is run): then the agent made no
/// commits and `delete` has nothing to check. `None` when that cannot be told this way.
pub(crate) async fn agent_made_no_commits(engine: &Engine, name: &Name) -> Result<Option<bool>> {
    let row = engine.workspace(name).await?;
    let pod = engine.inspect_pod(&row.pod).await?;
    let (Some(base), Some(clone)) = (pod.label(labels::BASE), pod.label(labels::CLONE)) else {
        return Ok(None);
    };
    let Some(format) = ObjectFormat::of_commit(base) else {
        return Ok(None);
    };
    let agent = format!("{}-agent", row.pod);
    let git = format!("{}/.git", clone.trim_end_matches('/'));
    let Some(loose) = engine
        .read_plain_tree(&agent, &format!("{git}/refs/heads"), LOOSE_REFS_LIMIT)
        .await?
    else {
        return Ok(None);
    };
    let packed = engine
        .read_plain_tree(&agent, &format!("{git}/packed-refs"), PACKED_REFS_LIMIT)
        .await?;
    let Some(packed) = packed else {
        return Ok(None);
    };
    let packed: Vec<u8> = packed
        .into_iter()
        .next()
        .map(|(_, c)| c)
        .unwrap_or_default();
    Ok(all_tips_are(base, format, &loose, &packed))
}

/// Whether every branch tip in the loose ref files and packed-refs is `base`; `None`
/// when that cannot be told (no tips, or anything that is not a commit id).
fn all_tips_are(
    base: &str,
    format: ObjectFormat,
    loose: &[(String, Vec<u8>)],
    packed: &[u8],
) -> Option<bool> {
    let mut tips: Vec<&[u8]> = loose.iter().map(|(_, c)| c.trim_ascii()).collect();
    for line in packed.split(|b| *b == b'\n') {
        if line.is_empty() || line.starts_with(b"#") || line.starts_with(b"^") {
            continue;
        }
        let (sha, refname) = split_space(line)?;
        if refname.starts_with(b"refs/heads/") {
            tips.push(sha);
        }
    }
    if tips.is_empty() || tips.iter().any(|t| commit_id(t, format).is_none()) {
        return None;
    }
    Some(tips.iter().all(|t| *t == base.as_bytes()))
}

/// What a job reported about the agent's clone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CloneReport {
    tips: Vec<(String, String)>,
    commits: Vec<CommitRow>,
    uncommitted: usize,
}

/// Reads the job's files `tips` (`SHA refs/heads/NAME`), `commits` (`SHA SUBJECT`) and
/// `uncommitted` (a count; missing when `git status` failed). Any line that is not of
/// that shape fails the whole report: a half-read list could hide a commit.
fn parse_report(files: &[(String, Vec<u8>)], format: ObjectFormat) -> Result<CloneReport> {
    let file = |n: &str| {
        files
            .iter()
            .find(|(p, _)| std::path::Path::new(p).file_name() == Some(std::ffi::OsStr::new(n)))
            .map(|(_, c)| c.as_slice())
    };
    let tips_file = file("tips").ok_or_else(|| anyhow!("the job wrote no branch list"))?;
    let commits_file = file("commits").ok_or_else(|| anyhow!("the job wrote no commit list"))?;
    let mut tips = Vec::new();
    for (i, line) in lines(tips_file).enumerate() {
        if i >= MAX_BRANCHES {
            bail!("the agent's clone has more than {MAX_BRANCHES} branches");
        }
        let tip = (|| {
            let (sha, refname) = split_space(line)?;
            let branch = branch_name(refname.strip_prefix(b"refs/heads/")?)?;
            Some((branch, commit_id(sha, format)?))
        })();
        tips.push(tip.ok_or_else(|| anyhow!("line {} of the branch list is not a branch", i + 1))?);
    }
    let mut commits = Vec::new();
    for (i, line) in lines(commits_file).enumerate() {
        if i >= MAX_COMMITS {
            bail!("the agent made more than {MAX_COMMITS} commits");
        }
        let (sha, subject) = split_space(line).unwrap_or((line, b""));
        let sha = commit_id(sha, format)
            .ok_or_else(|| anyhow!("line {} of the commit list has no commit id", i + 1))?;
        commits.push(CommitRow {
            sha,
            subject: subject_text(subject),
        });
    }
    let uncommitted = match file("uncommitted") {
        None => {
            tracing::warn!(
                "git status failed in the agent's clone; its uncommitted changes are not counted"
            );
            0
        }
        Some(c) => std::str::from_utf8(c)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|n| *n <= MAX_UNCOMMITTED)
            .ok_or_else(|| anyhow!("the uncommitted count is not a count"))?,
    };
    Ok(CloneReport {
        tips,
        commits,
        uncommitted,
    })
}

/// The bytes before and after the first space.
fn split_space(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = line.iter().position(|b| *b == b' ')?;
    Some((&line[..at], &line[at + 1..]))
}

/// The lines of a file (a last newline ends a line rather than starting one).
fn lines(file: &[u8]) -> impl Iterator<Item = &[u8]> {
    let file = file.strip_suffix(b"\n").unwrap_or(file);
    file.split(|b| *b == b'\n')
        .filter(move |_| !file.is_empty())
}

/// A commit id: exactly the hash's length of lowercase hex digits.
fn commit_id(bytes: &[u8], format: ObjectFormat) -> Option<String> {
    let ok = bytes.len() == format.hex_len()
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    ok.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A branch name as git allows it (git-check-ref-format): UTF-8 without control
/// characters, spaces or `~^:?*[\`, no `..` or `@{`, no empty, dot-led or `.lock`
/// component, no leading or trailing `/`; at most [`REF_NAME_MAX`] bytes.
fn branch_name(bytes: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(bytes).ok()?;
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    let ok = !name.is_empty()
        && name.len() <= REF_NAME_MAX
        && !name.chars().any(bad_char)
        && !name.contains("..")
        && !name.contains("@{")
        && name != "@"
        && !name.ends_with('.')
        && name
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"));
    ok.then(|| name.to_string())
}

/// A subject as text: invalid UTF-8 replaced, git's padding trimmed, cut to
/// [`SUBJECT_MAX_CHARS`].
fn subject_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end().chars().take(SUBJECT_MAX_CHARS).collect()
}

/// The agent's commits that no host branch contains (what `delete` would lose), told by
/// two host git processes whatever their number: `cat-file` says which of them the host
/// has, `rev-list` which of those no branch reaches. Their output is bounded by the
/// agent's commits ([`MAX_COMMITS`]): rev-list lists only commits reachable from the
/// ones it is given and not from the pod's base, which are the agent's commits.
pub(crate) async fn unreviewed(work: &AgentWork) -> Result<Vec<CommitRow>> {
    if work.commits.is_empty() {
        return Ok(Vec::new());
    }
    if !work.repo.is_dir() {
        bail!(
            "the host repo {} is gone, so devaipod cannot tell whether the agent's {} commit(s) were kept; pass --force to delete anyway",
            work.repo.display(),
            work.commits.len()
        );
    }
    let found = host_git(
        work,
        &[
            "cat-file",
            "--buffer",
            "--batch-check=%(objectname) %(objecttype)",
        ],
        &id_lines(work.commits.iter().map(|c| c.sha.as_str())),
    )
    .await?;
    let held: std::collections::HashSet<&str> = found
        .lines()
        .filter_map(|l| l.strip_suffix(" commit"))
        .collect();
    if held.is_empty() {
        return Ok(work.commits.clone());
    }
    // What a host branch reaches is kept; so is the base's history.
    let unreached = host_git(
        work,
        &[
            "rev-list",
            "--ignore-missing",
            "--stdin",
            "--not",
            "--branches",
            &work.base,
        ],
        &id_lines(held.iter().copied()),
    )
    .await?;
    let unreached: std::collections::HashSet<&str> = unreached.lines().collect();
    Ok(work
        .commits
        .iter()
        .filter(|c| !held.contains(c.sha.as_str()) || unreached.contains(c.sha.as_str()))
        .cloned()
        .collect())
}

/// One commit id a line: git's `--stdin` input.
fn id_lines<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<u8> {
    ids.flat_map(|id| [id.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

/// Host git in the repo `work` came from, `input` on its stdin: its stdout.
async fn host_git(work: &AgentWork, args: &[&str], input: &[u8]) -> Result<String> {
    let mut cmd = crate::git::git(&work.repo);
    cmd.args(args);
    let out = tokio::process::Command::from(cmd)
        .run_with_input(input)
        .await
        .map_err(|e| match e {
            ProcessError::Spawn { source, .. } => {
                anyhow::Error::new(source).context("running git in the host repo")
            }
            failed => anyhow!(failed).context(format!(
                "git {} in the host repo {} failed",
                args[0],
                work.repo.display()
            )),
        })?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Runs `script` (sh, after [`crate::podman::job::safe_git_dir`], with `args` as
/// $1...) in a job container over the agent's clone ([`crate::podman::job`]: mounted
/// read-only at /repo, hardened like the agent, no network) and returns what `fetch`
/// read. Nothing runs in the pod itself: on Podman 4.3 an exec session there makes
/// removing the pod seconds slower, and a stopped pod needs no start. The image is the
/// bundled one (it has git) when present, else the workspace's. `repo` is the host repo
/// the workspace was made from (for its labels).
async fn clone_job(
    engine: &Engine,
    name: &Name,
    repo: &str,
    object_format: ObjectFormat,
    script: &str,
    args: &[&str],
    fetch: Fetch<'_>,
) -> Result<crate::podman::JobOutput> {
    let pod = name.pod_name();
    let image = if engine.image_id(crate::plan::BUNDLED_IMAGE).await?.is_some() {
        crate::plan::BUNDLED_IMAGE.to_string()
    } else {
        let ws = engine
            .inspect_container(&format!("{pod}-workspace"))
            .await?;
        Some(ws.image_name)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| anyhow!("cannot tell the image of {pod}-workspace"))?
    };
    let job = crate::podman::job::CloneJob {
        name,
        repo,
        image: &image,
        object_format,
        script,
        args,
    };
    let container = crate::podman::job::clone_job_container(&job);
    let out = engine
        .run_job(&container, Some(fetch))
        .await
        .map_err(|e| crate::podman::job::explain_timeout(e, name))?;
    if let Some(e) = crate::podman::job::explain_too_large(out.code, name) {
        return Err(e);
    }
    if out.code != 0 {
        bail!(
            "reading the agent's clone failed (exit code {}): {}",
            out.code,
            crate::process::last_lines(&out.logs, 5)
        );
    }
    Ok(out)
}

/// Fetches the agent's branch into the host repo (a bundle made from its clone).
pub(crate) async fn fetch_branch(engine: &Engine, name: &Name, work: &AgentWork) -> Result<()> {
    let format = ObjectFormat::of_commit(&work.base)
        .ok_or_else(|| anyhow!("the pod's base {} is not a commit", work.base))?;
    let script = r#"git bundle create -q "$out/review.bundle" "refs/heads/$1" --not "$2""#;
    let mut file = tempfile::Builder::new()
        .prefix("devaipod-review-")
        .suffix(".bundle")
        .tempfile()
        .context("creating a temporary file for the bundle")?;
    let out = clone_job(
        engine,
        name,
        &work.repo.to_string_lossy(),
        format,
        script,
        &[&work.branch, &work.base],
        Fetch::File {
            path: &format!("{JOB_OUT}/review.bundle"),
            limit: crate::podman::job::BUNDLE_LIMIT,
            dest: file.as_file_mut(),
        },
    )
    .await?;
    let size = file.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    if !out.copied || size == 0 {
        bail!("making a bundle of {} gave nothing", work.branch);
    }
    crate::progress::pause_point("fetch");
    crate::podman::cancel::check()?;
    let refspec = format!("+refs/heads/{0}:refs/heads/{0}", work.branch);
    let fetched = crate::git::git(&work.repo)
        .args(["fetch", "--quiet", "--no-tags"])
        .arg(file.path())
        .arg(&refspec)
        .run();
    match fetched {
        Ok(()) => Ok(()),
        Err(ProcessError::Spawn { source, .. }) => {
            Err(anyhow::Error::new(source).context("running git fetch in the host repo"))
        }
        Err(ProcessError::Failed { stderr, .. }) => bail!(
            "git fetch of {} into {} failed: {stderr}",
            work.branch,
            work.repo.display(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn files(tips: &[u8], commits: &[u8], uncommitted: Option<&[u8]>) -> Vec<(String, Vec<u8>)> {
        let mut f = vec![
            ("out/tips".to_string(), tips.to_vec()),
            ("out/commits".to_string(), commits.to_vec()),
        ];
        if let Some(u) = uncommitted {
            f.push(("out/uncommitted".to_string(), u.to_vec()));
        }
        f
    }

    #[test]
    fn a_report_is_read() {
        let tips = format!("{A} refs/heads/devaipod/demo\n{B} refs/heads/main\n");
        let commits = format!("{A} fix the thing{}\n{B} \n", " ".repeat(180));
        let r = parse_report(
            &files(tips.as_bytes(), commits.as_bytes(), Some(b"3\n")),
            ObjectFormat::Sha1,
        )
        .expect("report");
        assert_eq!(
            r.tips,
            [
                ("devaipod/demo".to_string(), A.to_string()),
                ("main".to_string(), B.to_string())
            ]
        );
        assert_eq!(r.commits[0].subject, "fix the thing");
        assert_eq!(r.commits[1].subject, "");
        assert_eq!(r.commits[0].short(), "0123456789ab");
        assert_eq!(r.uncommitted, 3);
        // A failed `git status` leaves no count.
        let r = parse_report(&files(b"", b"", None), ObjectFormat::Sha1).expect("empty");
        assert_eq!((r.tips.len(), r.commits.len(), r.uncommitted), (0, 0, 0));
        // sha256 clones have 64-digit ids, and only those.
        let long = "a".repeat(64);
        let t = format!("{long} refs/heads/x\n");
        assert!(parse_report(&files(t.as_bytes(), b"", None), ObjectFormat::Sha256).is_ok());
        assert!(parse_report(&files(t.as_bytes(), b"", None), ObjectFormat::Sha1).is_err());
    }

    #[test]
    fn forged_and_broken_reports_are_refused() {
        let huge = format!("{A} {}\n", "x".repeat(10_000));
        let cases: Vec<(&str, String, String, Option<&str>)> = vec![
            (
                "non-ascii sha",
                String::new(),
                format!("{} forged\n", "é".repeat(20)),
                None,
            ),
            (
                "non-ascii tip",
                format!("{} refs/heads/x\n", "é".repeat(20)),
                String::new(),
                None,
            ),
            (
                "uppercase",
                String::new(),
                format!("{} x\n", A.to_uppercase()),
                None,
            ),
            ("short sha", String::new(), "0123abc forged\n".into(), None),
            (
                "missing separator",
                format!("{A}refs/heads/x\n"),
                String::new(),
                None,
            ),
            (
                "not a branch",
                format!("{A} refs/tags/x\n"),
                String::new(),
                None,
            ),
            (
                "forged section",
                String::new(),
                format!("{A} x\n---\n{B} y\n"),
                None,
            ),
            (
                "bad branch",
                format!("{A} refs/heads/a..b\n"),
                String::new(),
                None,
            ),
            (
                "space in branch",
                format!("{A} refs/heads/a b\n"),
                String::new(),
                None,
            ),
            (
                "escape in branch",
                format!("{A} refs/heads/a\x1b[2J\n"),
                String::new(),
                None,
            ),
            (
                "lock branch",
                format!("{A} refs/heads/x.lock\n"),
                String::new(),
                None,
            ),
            (
                "long branch",
                format!("{A} refs/heads/{}\n", "b".repeat(300)),
                String::new(),
                None,
            ),
            ("nul", String::new(), format!("{A}\0 x\n"), None),
            ("empty line", String::new(), format!("{A} x\n\n"), None),
            ("bad count", String::new(), String::new(), Some("3\n---\n1")),
            ("negative count", String::new(), String::new(), Some("-1")),
            (
                "huge count",
                String::new(),
                String::new(),
                Some("99999999999999999999999"),
            ),
        ];
        for (what, tips, commits, count) in cases {
            let r = parse_report(
                &files(
                    tips.as_bytes(),
                    commits.as_bytes(),
                    count.map(str::as_bytes),
                ),
                ObjectFormat::Sha1,
            );
            assert!(r.is_err(), "{what}: {r:?}");
        }
        // A huge subject is cut, not refused.
        let r = parse_report(&files(b"", huge.as_bytes(), None), ObjectFormat::Sha1).expect("huge");
        assert_eq!(r.commits[0].subject.chars().count(), SUBJECT_MAX_CHARS);
        // Too many commits are refused.
        let many: String = (0..=MAX_COMMITS).map(|_| format!("{A} x\n")).collect();
        assert!(parse_report(&files(b"", many.as_bytes(), None), ObjectFormat::Sha1).is_err());
        // Missing files are refused.
        assert!(parse_report(&[], ObjectFormat::Sha1).is_err());
    }

    /// A fixed-seed xorshift generator: the same bytes on every run.
    fn bytes(state: &mut u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                alphabet[(*state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn no_bytes_make_the_readers_panic() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let all: Vec<u8> = (0..=255).collect();
        // Bytes near the expected shape reach the deeper checks more often.
        let near = b"0123456789abcdef \n/refs/heads/.-@{}~^\xc3\xa9\x00\x1b";
        for round in 0..20_000 {
            let alphabet: &[u8] = if round % 2 == 0 { &all } else { near };
            let len = (round % 300) + 1;
            let tips = bytes(&mut state, len, alphabet);
            let commits = bytes(&mut state, len, alphabet);
            let count = bytes(&mut state, round % 8, alphabet);
            let f = files(&tips, &commits, Some(&count));
            for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
                if let Ok(r) = parse_report(&f, format) {
                    for c in &r.commits {
                        assert_eq!(c.sha.len(), format.hex_len());
                        let _ = c.short();
                    }
                }
                let _ = all_tips_are(A, format, &[("x".into(), tips.clone())], &commits);
            }
        }
    }

    /// git in `dir` with a fixed identity and dates: its trimmed stdout.
    fn git_in(dir: &std::path::Path, args: &[&str]) -> String {
        let out = crate::git::git(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .env("GIT_COMMITTER_DATE", "1700000000 +0000")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .args(args)
            .run_get_string()
            .expect("git");
        out.trim().to_string()
    }

    #[tokio::test]
    async fn lost_commits_are_told_by_two_git_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        git_in(repo, &["init", "-q", "-b", "main"]);
        git_in(repo, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git_in(repo, &["rev-parse", "HEAD"]);
        // 3000 commits on branches of their own (the host holds them: a review brought
        // them over), one the host has only off-branch, one on main, one it lacks.
        let mut stream = String::new();
        for i in 0..3000 {
            stream.push_str(&format!(
                "commit refs/heads/k/{i}\ncommitter t <t@example.invalid> 1700000000 +0000\ndata 6\nc{i:05}\nfrom {base}\n\n"
            ));
        }
        let mut import = crate::git::git(repo);
        import.args(["fast-import", "--quiet"]);
        tokio::process::Command::from(import)
            .run_with_input(stream.as_bytes())
            .await
            .expect("fast-import");
        let branches = git_in(
            repo,
            &["for-each-ref", "--format=%(objectname)", "refs/heads/k"],
        );
        let branches: Vec<&str> = branches.lines().collect();
        assert_eq!(branches.len(), 3000);
        let dangling = {
            git_in(repo, &["checkout", "-q", "-b", "gone"]);
            git_in(repo, &["commit", "-q", "--allow-empty", "-m", "dangling"]);
            let c = git_in(repo, &["rev-parse", "HEAD"]);
            git_in(repo, &["checkout", "-q", "main"]);
            git_in(repo, &["branch", "-q", "-D", "gone"]);
            c
        };
        let on_main = {
            git_in(
                repo,
                &["commit", "-q", "--allow-empty", "-m", "kept on main"],
            );
            git_in(repo, &["rev-parse", "HEAD"])
        };
        let missing = "0123456789abcdef0123456789abcdef01234567".to_string();
        let row = |sha: &str| CommitRow {
            sha: sha.to_string(),
            subject: String::new(),
        };
        let mut commits: Vec<CommitRow> = branches.iter().map(|b| row(b)).collect();
        commits.extend([row(&missing), row(&dangling), row(&on_main)]);
        let work = AgentWork {
            repo: repo.to_path_buf(),
            base: base.clone(),
            base_branch: Some("main".into()),
            branch: "devaipod/t".into(),
            tip: None,
            commits,
            uncommitted: 0,
        };
        let lost = unreviewed(&work).await.expect("unreviewed");
        assert_eq!(lost.len(), 2, "{lost:?}");
        let lost: Vec<&str> = lost.iter().map(|c| c.sha.as_str()).collect();
        assert_eq!(lost, [missing.as_str(), dangling.as_str()]);
        // None held at all: every commit is lost (cat-file alone tells).
        let none = AgentWork {
            commits: vec![row(&missing)],
            ..work.clone()
        };
        assert_eq!(unreviewed(&none).await.expect("unreviewed").len(), 1);
        // All held: nothing is lost.
        let all_held = AgentWork {
            commits: vec![row(&on_main), row(branches[0])],
            ..work
        };
        assert!(unreviewed(&all_held).await.expect("unreviewed").is_empty());
    }

    #[test]
    fn the_ref_file_fast_path_believes_only_commit_ids() {
        let loose = |c: &str| vec![("main".to_string(), c.as_bytes().to_vec())];
        assert_eq!(
            all_tips_are(A, ObjectFormat::Sha1, &loose(&format!("{A}\n")), b""),
            Some(true)
        );
        assert_eq!(
            all_tips_are(A, ObjectFormat::Sha1, &loose(B), b""),
            Some(false)
        );
        let packed = format!("# pack-refs with: peeled\n{B} refs/heads/x\n^{A}\n");
        assert_eq!(
            all_tips_are(A, ObjectFormat::Sha1, &loose(A), packed.as_bytes()),
            Some(false)
        );
        let packed = format!("{A} refs/heads/x\n{A} refs/tags/t\n");
        assert_eq!(
            all_tips_are(A, ObjectFormat::Sha1, &[], packed.as_bytes()),
            Some(true)
        );
        for bad in [
            "ref: refs/heads/other".to_string(),
            "é".repeat(20),
            A.to_uppercase(),
            String::new(),
        ] {
            assert_eq!(
                all_tips_are(A, ObjectFormat::Sha1, &loose(&bad), b""),
                None,
                "{bad}"
            );
        }
        let forged = format!("{}x refs/heads/fake\n", "é".repeat(13));
        assert_eq!(
            all_tips_are(A, ObjectFormat::Sha1, &loose(A), forged.as_bytes()),
            None
        );
        assert_eq!(all_tips_are(A, ObjectFormat::Sha1, &[], b"garbage\n"), None);
        assert_eq!(all_tips_are(A, ObjectFormat::Sha1, &[], b""), None);
    }
}
