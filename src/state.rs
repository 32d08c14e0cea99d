//! devaipod's own small state on the host, under the XDG state directory
//! (`$XDG_STATE_HOME/devaipod`, default `~/.local/state/devaipod`).
//!
//! Readiness records: `up` and `start` write one when they saw the agent answer, naming
//! the agent container and when it was started; `list` reports `agent_ready` by comparing
//! that with the container's current start time, without probing every pod.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::names::Name;

/// When the agent container was seen ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadyRecord {
    /// The agent container's id.
    pub container_id: String,
    /// The container's start time (unix seconds) when the probe succeeded.
    pub started_at: i64,
}

/// An image devaipod pulled or built: for which repos, and when last (unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub repos: Vec<String>,
    pub at: i64,
}

/// Records images pulled or built for `repo` (a failure to write is only logged: the
/// record is for `devaipod image list`, nothing depends on it).
pub(crate) fn record_images(images: &[String], repo: &std::path::Path) {
    if let Some(s) = StateDir::from_env()
        && let Err(e) = s.add_images(images, repo)
    {
        tracing::warn!("recording images: {e:#}");
    }
}

/// The state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateDir(PathBuf);

impl StateDir {
    /// `$XDG_STATE_HOME/devaipod`, else `~/.local/state/devaipod`; `None` without HOME.
    pub(crate) fn from_env() -> Option<Self> {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
        Some(Self(base.join("devaipod")))
    }

    /// A state directory at `path` (tests).
    #[cfg(test)]
    pub(crate) fn at(path: &std::path::Path) -> Self {
        Self(path.to_path_buf())
    }

    fn ready_path(&self, name: &Name) -> PathBuf {
        self.0.join("ready").join(format!("{name}.json"))
    }

    /// Records that the agent of `name` answered since its last start.
    pub(crate) fn record_ready(&self, name: &Name, record: &ReadyRecord) -> Result<()> {
        let path = self.ready_path(name);
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(record)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The readiness record of `name`, if any (an unreadable record counts as none).
    pub(crate) fn read_ready(&self, name: &Name) -> Option<ReadyRecord> {
        let text = std::fs::read(self.ready_path(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn approval_path(&self, key: &str) -> PathBuf {
        self.0.join("approved").join(key)
    }

    /// Whether the user approved the host command with this key (see
    /// [`crate::plan::InitializePlan`]).
    pub(crate) fn approved(&self, key: &str) -> bool {
        self.approval_path(key).is_file()
    }

    /// Remembers the user's approval of a host command; `what` is kept for people
    /// reading the folder.
    pub(crate) fn approve(&self, key: &str, what: &str) -> Result<()> {
        let path = self.approval_path(key);
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, what).with_context(|| format!("writing {}", path.display()))
    }

    fn images_path(&self) -> PathBuf {
        self.0.join("images.json")
    }

    /// The images devaipod pulled or built, each with the repos it did so for.
    pub(crate) fn images(&self) -> BTreeMap<String, ImageRecord> {
        std::fs::read(self.images_path())
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default()
    }

    /// Adds `images`, pulled or built for `repo` now, to the record. Several `up`s may
    /// add at once: each reads, changes and replaces the file holding its lock file, so
    /// none loses another's records or renames another's temporary file.
    pub(crate) fn add_images(&self, images: &[String], repo: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("creating {}", self.0.display()))?;
        let lock_path = self.0.join("images.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // Held for a read and a write of a small file.
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", lock_path.display()))?;
        let mut all = self.images();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for i in images {
            let r = all.entry(i.clone()).or_default();
            let repo = repo.display().to_string();
            if !r.repos.contains(&repo) {
                r.repos.push(repo);
            }
            r.at = now;
        }
        let path = self.images_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Forgets the readiness record of `name`.
    pub(crate) fn forget(&self, name: &Name) {
        let _ = std::fs::remove_file(self.ready_path(name));
    }

    fn secrets_path(&self, name: &str) -> PathBuf {
        self.0.join("secrets").join(format!("{name}.json"))
    }

    /// Records the podman secrets `up` is about to make for `name` (Podman 4.3 keeps no
    /// labels on secrets: this is how `delete` and `gc` find those of a pod that never
    /// came to be).
    pub(crate) fn record_secrets(&self, name: &str, secrets: &[String]) -> Result<()> {
        let path = self.secrets_path(name);
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut all = self.recorded_secrets(name);
        for s in secrets {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&all)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// The secrets recorded for `name`: only names of its own (`devaipod-NAME-...`),
    /// whatever the file says.
    pub(crate) fn recorded_secrets(&self, name: &str) -> Vec<String> {
        let prefix = format!("devaipod-{name}-");
        let all: Vec<String> = std::fs::read(self.secrets_path(name))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default();
        all.into_iter().filter(|s| s.starts_with(&prefix)).collect()
    }

    /// Forgets the secrets recorded for `name` (they were removed).
    pub(crate) fn forget_secrets(&self, name: &str) {
        let _ = std::fs::remove_file(self.secrets_path(name));
    }

    /// The names of `kind`'s records (`secrets`, `ready`): file stems of `*.json`.
    pub(crate) fn record_names(&self, kind: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.0.join(kind)) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                n.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        out.sort();
        out
    }

    /// Removes the readiness record of `name` (gc: its pod is gone); `Ok(false)` when
    /// it was gone already.
    pub(crate) fn remove_ready(&self, name: &str) -> Result<bool> {
        remove_if_present(&self.0.join("ready").join(format!("{name}.json")))
    }

    /// The remembered approvals: key, and the host folder the command runs in.
    pub(crate) fn approvals(&self) -> Vec<(String, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(self.0.join("approved")) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let key = e.file_name().into_string().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((key, PathBuf::from(text.lines().next()?)))
            })
            .collect();
        out.sort();
        out
    }

    /// Removes a remembered approval; `Ok(false)` when it was gone already.
    pub(crate) fn remove_approval(&self, key: &str) -> Result<bool> {
        remove_if_present(&self.approval_path(key))
    }
}

fn remove_if_present(path: &std::path::Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_records_gather_and_are_listed_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::at(dir.path());
        assert!(state.record_names("secrets").is_empty());
        state
            .record_secrets("a", &["devaipod-a-s1".into()])
            .expect("record");
        state
            .record_secrets(
                "a",
                &[
                    "devaipod-a-s1".into(),
                    "devaipod-a-s2".into(),
                    "mine".into(),
                ],
            )
            .expect("record");
        state.record_secrets("b", &[]).expect("record");
        // Only the workspace's own names are ever given back.
        assert_eq!(
            state.recorded_secrets("a"),
            ["devaipod-a-s1", "devaipod-a-s2"]
        );
        assert_eq!(state.record_names("secrets"), ["a", "b"]);
        state.forget_secrets("a");
        assert!(state.recorded_secrets("a").is_empty());
        assert_eq!(state.record_names("secrets"), ["b"]);
    }

    #[test]
    fn image_records_gather_repos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::at(dir.path());
        assert!(state.images().is_empty());
        let a = std::path::Path::new("/r/a");
        state.add_images(&["x:1".into()], a).expect("add");
        state
            .add_images(&["x:1".into(), "y:2".into()], std::path::Path::new("/r/b"))
            .expect("add");
        state.add_images(&["x:1".into()], a).expect("again");
        let all = state.images();
        assert_eq!(all["x:1"].repos, ["/r/a", "/r/b"]);
        assert_eq!(all["y:2"].repos, ["/r/b"]);
    }

    #[test]
    fn image_records_of_concurrent_ups_are_all_kept() {
        // Several `up`s (processes; threads here) record at once: each one's images
        // stay, and none fails on another's temporary file.
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::at(dir.path());
        let repo = std::path::Path::new("/r");
        std::thread::scope(|s| {
            for t in 0..8 {
                let state = &state;
                s.spawn(move || {
                    for i in 0..20 {
                        state
                            .add_images(&[format!("img-{t}-{i}:1")], repo)
                            .expect("add");
                    }
                });
            }
        });
        assert_eq!(state.images().len(), 8 * 20);
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::at(dir.path());
        let name = Name::new("rt").expect("name");
        assert_eq!(state.read_ready(&name), None);
        let rec = ReadyRecord {
            container_id: "abc".into(),
            started_at: 42,
        };
        state.record_ready(&name, &rec).expect("record");
        assert_eq!(state.read_ready(&name), Some(rec));
        assert!(dir.path().join("ready/rt.json").is_file());
        state.forget(&name);
        assert_eq!(state.read_ready(&name), None);
    }
}
