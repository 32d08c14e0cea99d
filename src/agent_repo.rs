//! The agent's clone, read from the host: what it holds beyond the commit the pod started
//! from, whether the host already has those commits, and bringing its branch over as a
//! bundle. Every read runs in a short-lived job container over the clone's volume, never
//! in the pod. `review` shows and fetches this work; `delete` refuses to lose it.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::names::Name;
use crate::plan::labels;
use crate::podman::Engine;
use crate::process::{CommandRunExt, ProcessError};

/// One commit of the agent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CommitRow {
    pub sha: String,
    pub subject: String,
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
    /// Tips of the agent's branches (name, sha).
    #[serde(skip)]
    pub tips: Vec<(String, String)>,
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
    if !base.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "pod {}: the {} label is not a commit",
            row.pod,
            labels::BASE
        );
    }
    let script = r#"set -e
cd /repo
{
git for-each-ref --format='%(refname:short) %(objectname)' refs/heads
echo ---
git log --format='%H %s' --branches --not "$1" --
echo ---
git status --porcelain | wc -l
} > /tmp/out"#;
    let out = clone_job(
        engine,
        name,
        &repo.to_string_lossy(),
        script,
        &[&base],
        "/tmp/out",
    )
    .await?;
    let stdout = out.file.unwrap_or_default();
    let text = String::from_utf8_lossy(&stdout);
    let mut parts = text.split("---\n");
    let tips: Vec<(String, String)> = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    let commits = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, subject)| CommitRow {
            sha: sha.to_string(),
            subject: subject.to_string(),
        })
        .collect();
    let uncommitted = parts
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_default();
    let branch = format!("devaipod/{name}");
    Ok(AgentWork {
        tip: tips
            .iter()
            .find(|(n, _)| *n == branch)
            .map(|(_, s)| s.clone()),
        repo,
        base,
        base_branch: label(labels::BASE_BRANCH),
        branch,
        commits,
        tips,
        uncommitted,
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
    let agent = format!("{}-agent", row.pod);
    let git = format!("{}/.git", clone.trim_end_matches('/'));
    let loose = engine
        .read_tree(&agent, &format!("{git}/refs/heads"))
        .await?;
    let packed = engine
        .read_file(&agent, &format!("{git}/packed-refs"))
        .await?
        .unwrap_or_default();
    let mut tips: Vec<String> = loose
        .iter()
        .map(|(_, c)| String::from_utf8_lossy(c).trim().to_string())
        .collect();
    tips.extend(
        String::from_utf8_lossy(&packed)
            .lines()
            .filter(|l| l.contains(" refs/heads/"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string)),
    );
    if tips.is_empty() {
        return Ok(None);
    }
    Ok(Some(tips.iter().all(|t| t == base)))
}

/// The agent's commits that no host branch contains (what `delete` would lose).
pub(crate) fn unreviewed(work: &AgentWork) -> Result<Vec<CommitRow>> {
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
    // A tip some host branch contains has all its ancestors on the host too.
    let mut lost_tips = Vec::new();
    for (_, sha) in &work.tips {
        let held = crate::git::git(&work.repo)
            .args(["for-each-ref", "--contains", sha, "refs/heads"])
            .run_capture();
        match held {
            Ok(out) if !out.is_empty() => {}
            Ok(_) | Err(ProcessError::Failed { .. }) => lost_tips.push(sha.clone()),
            Err(ProcessError::Spawn { source, .. }) => {
                return Err(anyhow::Error::new(source).context("running git in the host repo"));
            }
        }
    }
    if lost_tips.is_empty() {
        return Ok(Vec::new());
    }
    // Commits on a lost tip's history that a kept tip does not also hold are lost;
    // telling them apart needs the agent's history, so list every commit not known on
    // the host instead.
    let mut lost = Vec::new();
    for c in &work.commits {
        let known = crate::git::git(&work.repo)
            .args(["for-each-ref", "--contains", &c.sha, "refs/heads"])
            .run_capture()
            .is_ok_and(|o| !o.is_empty());
        if !known {
            lost.push(c.clone());
        }
    }
    Ok(lost)
}

/// Runs `script` (sh, with `args` as $1...) in a job container over the agent's clone
/// ([`crate::podman::job`]: mounted read-only at /repo, no network, no capabilities)
/// and returns the file `fetch` it wrote. Nothing runs in the pod itself: on Podman 4.3
/// an exec session there makes removing the pod seconds slower, and a stopped pod needs
/// no start. The image is the bundled one (it has git) when present, else the
/// workspace's. `repo` is the host repo the workspace was made from (for its labels).
async fn clone_job(
    engine: &Engine,
    name: &Name,
    repo: &str,
    script: &str,
    args: &[&str],
    fetch: &str,
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
        script,
        args,
    };
    let container = crate::podman::job::clone_job_container(&job);
    let out = engine.run_job(&container, Some(fetch)).await?;
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
    let script = r#"set -e
cd /repo
git bundle create -q /tmp/review.bundle "refs/heads/$1" --not "$2""#;
    let out = clone_job(
        engine,
        name,
        &work.repo.to_string_lossy(),
        script,
        &[&work.branch, &work.base],
        "/tmp/review.bundle",
    )
    .await?;
    let bundle = out
        .file
        .filter(|b| !b.is_empty())
        .ok_or_else(|| anyhow!("making a bundle of {} gave nothing", work.branch))?;
    let file = tempfile::Builder::new()
        .prefix("devaipod-review-")
        .suffix(".bundle")
        .tempfile()
        .context("creating a temporary file for the bundle")?;
    std::fs::write(file.path(), &bundle).context("writing the bundle")?;
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
