//! devaipod's per-user locks, files under the runtime directory (one engine store per
//! user): the shared lock, held while devaipod-net's image and the shared volumes are
//! made (and while `gc` removes old ones), and one per workspace, held by the `up` that
//! makes it, so `gc` never takes the objects of an `up` still under way for leftovers,
//! and a second `up --name X` says X is being made instead of racing the first.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped (and when the process ends, however it ends).
pub(crate) type Held = Flock<std::fs::File>;

fn path_of(what: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let uid = nix::unistd::geteuid().as_raw();
    dir.join(format!("devaipod-{what}-{uid}.lock"))
}

fn open(what: &str) -> Result<(std::fs::File, PathBuf)> {
    let path = path_of(what);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((f, path))
}

/// Waits for the shared lock.
pub(crate) fn shared() -> Result<Held> {
    let (f, path) = open("shared")?;
    tokio::task::block_in_place(|| {
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("locking {}: {e}", path.display()))
    })
}

/// Takes the lock of workspace `name` if no other process holds it: `None` when one
/// does (an `up` of it is under way).
pub(crate) fn try_workspace(name: &str) -> Result<Option<Held>> {
    let (f, path) = open(&format!("up-{name}"))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(Some(held)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(anyhow!("locking {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_lock_is_held_once() {
        let name = format!("lock-test-{}", std::process::id());
        let first = try_workspace(&name).expect("lock").expect("free");
        // flock is per open file: a second open in this process conflicts too.
        assert!(try_workspace(&name).expect("lock").is_none());
        drop(first);
        assert!(try_workspace(&name).expect("lock").is_some());
        let _ = std::fs::remove_file(path_of(&format!("up-{name}")));
    }
}
