//! devaipod's own small state on the host, under the XDG state directory
//! (`$XDG_STATE_HOME/devaipod`, default `~/.local/state/devaipod`).
//!
//! Readiness records: `up` and `start` write one when they saw the agent answer, naming
//! the agent container and when it was started; `list` reports `agent_ready` by comparing
//! that with the container's current start time, without probing every pod.

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

    /// Forgets the readiness record of `name`.
    pub(crate) fn forget(&self, name: &Name) {
        let _ = std::fs::remove_file(self.ready_path(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
