//! Host-side git: what the repo is (top level, HEAD, branch, origin, dirty state) and a
//! clean clone of HEAD packed as a tar stream for the workspace volume.
//!
//! Every git command runs with hooks and fsmonitor disabled: nothing in the repo's own
//! files gets to run code on the host while devaipod reads it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::process::{CommandRunExt, ProcessError};

/// What `up` needs to know about the host repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoInfo {
    /// The work tree's top level (absolute, canonical).
    pub root: PathBuf,
    /// HEAD's commit id.
    pub head: String,
    /// The checked-out branch, `None` on a detached HEAD.
    pub branch: Option<String>,
    /// The URL of the `origin` remote, if any.
    pub origin: Option<String>,
    /// Number of uncommitted changes (tracked and untracked) left out of the clone.
    pub uncommitted: usize,
}

/// git run in `dir` with hooks and fsmonitor off, no prompts, and no GIT_DIR or
/// GIT_WORK_TREE inherited: every host-side git call goes through this.
pub(crate) fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    match cmd.run_get_string() {
        Ok(out) => Ok(out.trim_end().to_string()),
        Err(e) if e.not_found() => {
            bail!("git is not installed: install it (Debian: sudo apt-get install git)")
        }
        Err(ProcessError::Spawn { source, .. }) => {
            Err(anyhow::Error::new(source).context(format!("running git to {what}")))
        }
        Err(ProcessError::Failed { stderr, .. }) => bail!("git failed to {what}: {stderr}"),
    }
}

impl RepoInfo {
    /// Reads the repo containing `path` (any folder inside a work tree works).
    pub(crate) fn detect(path: &Path) -> Result<Self> {
        let top = {
            let mut cmd = git(path);
            cmd.args(["rev-parse", "--show-toplevel"]);
            match cmd.run_get_string() {
                Ok(out) => PathBuf::from(out.trim()),
                Err(ProcessError::Spawn { source, .. }) => {
                    return Err(anyhow::Error::new(source)
                        .context(format!("running git in {}", path.display())));
                }
                Err(ProcessError::Failed { .. }) => bail!(
                    "{} is not inside a git repository: devaipod clones the repo's HEAD into the workspace (run `git init` and commit first)",
                    path.display()
                ),
            }
        };
        let root = top
            .canonicalize()
            .with_context(|| format!("resolving {}", top.display()))?;
        let head = {
            let mut cmd = git(&root);
            cmd.args(["rev-parse", "--verify", "-q", "HEAD"]);
            run(cmd, "read HEAD").map_err(|_| {
                anyhow::anyhow!(
                    "the repository at {} has no commits yet: commit something first, devaipod clones HEAD",
                    root.display()
                )
            })?
        };
        let branch = {
            let mut cmd = git(&root);
            cmd.args(["symbolic-ref", "--short", "-q", "HEAD"]);
            run(cmd, "read the current branch")
                .ok()
                .filter(|b| !b.is_empty())
        };
        let origin = {
            let mut cmd = git(&root);
            cmd.args(["remote", "get-url", "origin"]);
            run(cmd, "read the origin remote")
                .ok()
                .filter(|u| !u.is_empty())
        };
        let uncommitted = {
            let mut cmd = git(&root);
            cmd.args(["status", "--porcelain", "-z"]);
            let out = run(cmd, "check for uncommitted changes")?;
            out.split('\0').filter(|l| !l.is_empty()).count()
        };
        Ok(Self {
            root,
            head,
            branch,
            origin,
            uncommitted,
        })
    }

    /// The repo folder's name (used for the default NAME and workspace folder).
    pub(crate) fn folder_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workspace".into())
    }
}

/// The top level of the work tree containing `dir`, if it is inside one.
pub(crate) fn toplevel(dir: &Path) -> Option<PathBuf> {
    let mut cmd = git(dir);
    cmd.args(["rev-parse", "--show-toplevel"]);
    let top = run(cmd, "find the repository's top").ok()?;
    PathBuf::from(top).canonicalize().ok()
}

/// Clones HEAD (on its branch when there is one) into a fresh temporary directory, with
/// no hooks, and points `origin` at the host repo's origin (or removes it).
pub(crate) fn clone_head(info: &RepoInfo) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix("devaipod-clone-")
        .tempdir()
        .context("creating a temporary directory for the clone")?;
    let dest = tmp.path().join("repo");
    let mut cmd = git(&info.root);
    cmd.args([
        "clone",
        "--quiet",
        "--no-hardlinks",
        "--no-checkout",
        "--template=",
    ])
    .arg(&info.root)
    .arg(&dest);
    run(cmd, "clone the repository")?;
    let mut cmd = git(&dest);
    match &info.branch {
        Some(b) => cmd.args(["checkout", "--quiet", "-B", b, &info.head]),
        None => cmd.args(["checkout", "--quiet", "--detach", &info.head]),
    };
    run(cmd, "check out HEAD in the clone")?;
    let mut cmd = git(&dest);
    match &info.origin {
        Some(url) => cmd.args(["remote", "set-url", "origin", url]),
        None => cmd.args(["remote", "remove", "origin"]),
    };
    run(cmd, "set the clone's origin")?;
    Ok(tmp)
}

/// Prepares the agent's copy of the clone in `dir`: the branch `branch` at HEAD,
/// checked out, and a git identity that says the commits are the agent's.
pub(crate) fn agent_branch(dir: &Path, branch: &str, name: &str, email: &str) -> Result<()> {
    let mut cmd = git(dir);
    cmd.args(["checkout", "--quiet", "-B", branch]);
    run(cmd, "create the agent's branch")?;
    for (k, v) in [("user.name", name), ("user.email", email)] {
        let mut cmd = git(dir);
        cmd.args(["config", k, v]);
        run(cmd, "set the agent's git identity")?;
    }
    Ok(())
}

/// Undoes [`agent_branch`] for the workspace's copy: back to `original` (a branch, or
/// HEAD detached at `head`), the agent's branch and identity removed.
pub(crate) fn leave_agent_branch(
    dir: &Path,
    branch: &str,
    original: Option<&str>,
    head: &str,
) -> Result<()> {
    let mut cmd = git(dir);
    match original {
        Some(b) => cmd.args(["checkout", "--quiet", b]),
        None => cmd.args(["checkout", "--quiet", "--detach", head]),
    };
    run(cmd, "return to the host's branch")?;
    let mut cmd = git(dir);
    cmd.args(["branch", "--quiet", "-D", branch]);
    run(cmd, "remove the agent's branch from the workspace clone")?;
    let mut cmd = git(dir);
    cmd.args(["config", "--remove-section", "user"]);
    run(cmd, "remove the agent's identity from the workspace clone")?;
    Ok(())
}

/// Adds the remote `name` at `url` to the clone in `dir`, fetched through the command
/// `upload_pack` (`remote.NAME.uploadpack`, run by a shell with the path appended).
pub(crate) fn add_remote(dir: &Path, name: &str, url: &str, upload_pack: &str) -> Result<()> {
    let mut cmd = git(dir);
    cmd.args(["remote", "add", name, url]);
    run(cmd, "add a remote to the clone")?;
    let mut cmd = git(dir);
    cmd.args(["config", &format!("remote.{name}.uploadpack"), upload_pack]);
    run(cmd, "set the remote's upload-pack command").map(|_| ())
}

/// A tar stream of root-owned files: (relative path, content, mode).
pub(crate) fn tar_files(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, *content)
            .with_context(|| format!("packing {path}"))?;
    }
    builder.into_inner().context("packing files")
}

/// The files of a build context: what git tracks under `dir` plus untracked files it
/// does not ignore (so build outputs and dependency folders stay out), relative to
/// `dir`, sorted. Tracked files deleted from the work tree are left out.
pub(crate) fn context_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = git(dir);
    cmd.args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]);
    let out = run(cmd, "list the build context's files")?;
    let mut files: Vec<PathBuf> = out
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .filter(|f| dir.join(f).symlink_metadata().is_ok())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Packs `dir` as a tar stream whose entries are owned by `uid:gid`, rooted at `.` so it
/// unpacks straight into the workspace folder.
pub(crate) fn tar_tree(dir: &Path, uid: u64, gid: u64) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    append_tree(&mut builder, dir, Path::new("."), uid, gid)?;
    builder
        .into_inner()
        .context("finishing the workspace tar stream")
}

fn header_for(meta: &std::fs::Metadata, uid: u64, gid: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    header.set_uid(uid);
    header.set_gid(gid);
    // Names would be resolved in the container's passwd; numeric ids are authoritative.
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    header
}

fn append_tree(
    builder: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    rel: &Path,
    uid: u64,
    gid: u64,
) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut header = header_for(&meta, uid, gid);
    builder
        .append_data(&mut header, rel, std::io::empty())
        .with_context(|| format!("packing {}", dir.display()))?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            append_tree(builder, &path, &rel, uid, gid)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("reading link {}", path.display()))?;
            let mut header = header_for(&meta, uid, gid);
            header.set_size(0);
            builder
                .append_link(&mut header, &rel, &target)
                .with_context(|| format!("packing {}", path.display()))?;
        } else if ft.is_file() {
            let mut header = header_for(&meta, uid, gid);
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            builder
                .append_data(&mut header, &rel, file)
                .with_context(|| format!("packing {}", path.display()))?;
        }
        // Sockets and fifos cannot be part of a git checkout; skip anything else.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            st.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        sh(d.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(d.path().join("a.txt"), "one\n").expect("write");
        std::fs::create_dir(d.path().join("sub")).expect("mkdir");
        std::fs::write(d.path().join("sub/b.sh"), "#!/bin/sh\n").expect("write");
        sh(d.path(), &["add", "."]);
        sh(d.path(), &["commit", "-q", "-m", "init"]);
        d
    }

    #[test]
    fn detects_head_branch_and_dirty_state() {
        let d = repo();
        std::fs::write(d.path().join("a.txt"), "changed\n").expect("write");
        std::fs::write(d.path().join("new.txt"), "x\n").expect("write");
        let info = RepoInfo::detect(&d.path().join("sub")).expect("detect");
        assert_eq!(info.root, d.path().canonicalize().expect("canon"));
        assert_eq!(info.branch.as_deref(), Some("main"));
        assert_eq!(info.head.len(), 40);
        assert_eq!(info.origin, None);
        assert_eq!(info.uncommitted, 2);
    }

    #[test]
    fn refuses_non_repos_and_empty_repos() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = RepoInfo::detect(d.path()).expect_err("not a repo");
        assert!(format!("{e:#}").contains("not inside a git repository"));
        sh(d.path(), &["init", "-q"]);
        let e = RepoInfo::detect(d.path()).expect_err("no commits");
        assert!(format!("{e:#}").contains("no commits"));
    }

    #[test]
    fn clone_has_head_only_and_tar_is_owned_by_target_user() {
        let d = repo();
        std::fs::write(d.path().join("a.txt"), "uncommitted\n").expect("write");
        let info = RepoInfo::detect(d.path()).expect("detect");
        let clone = clone_head(&info).expect("clone");
        let repo = clone.path().join("repo");
        assert_eq!(
            std::fs::read_to_string(repo.join("a.txt")).expect("read"),
            "one\n"
        );
        let hooks = repo.join(".git/hooks");
        assert!(!hooks.exists() || std::fs::read_dir(&hooks).expect("ls").next().is_none());
        let tar = tar_tree(&repo, 1000, 1001).expect("tar");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        for e in archive.entries().expect("entries") {
            let e = e.expect("entry");
            assert_eq!(e.header().uid().expect("uid"), 1000);
            assert_eq!(e.header().gid().expect("gid"), 1001);
            names.push(e.path().expect("path").to_string_lossy().into_owned());
        }
        assert!(names.contains(&".".to_string()), "{names:?}");
        assert!(names.contains(&"a.txt".to_string()), "{names:?}");
        assert!(names.contains(&"sub/b.sh".to_string()), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with(".git/")), "{names:?}");
    }

    #[test]
    fn a_remote_is_fetched_through_its_upload_pack_command() {
        let d = repo();
        let clone = tempfile::tempdir().expect("tempdir");
        sh(clone.path(), &["init", "-q"]);
        // The command runs through a shell, with the remote's path appended.
        let marker = clone.path().join("upload-pack-ran");
        let cmd = format!("touch {} && git upload-pack", marker.display());
        add_remote(clone.path(), "agent", &d.path().to_string_lossy(), &cmd).expect("add");
        let mut get = git(clone.path());
        get.args(["config", "remote.agent.uploadpack"]);
        assert_eq!(run(get, "read").expect("config"), cmd);
        sh(clone.path(), &["fetch", "-q", "agent"]);
        assert!(marker.exists());
        let mut tip = git(clone.path());
        tip.args(["rev-parse", "agent/main"]);
        assert_eq!(run(tip, "rev-parse").expect("fetched").len(), 40);
    }
}
