//! SSH keys: each pod's host key under devaipod's data directory
//! (`$XDG_DATA_HOME/devaipod/ssh/NAME/`, default `~/.local/share/devaipod/ssh/NAME/`),
//! pinned for the client by a known_hosts file beside it, and the user's own public
//! keys (`~/.ssh/*.pub` and the SSH agent's), the only ones the server accepts.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rand::RngCore as _;
use russh::keys::{PrivateKey, PublicKey};

use crate::names::Name;

/// `$XDG_DATA_HOME/devaipod`, else `~/.local/share/devaipod`.
pub(crate) fn data_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match base {
        Some(b) => Ok(b.join("devaipod")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set: devaipod keeps SSH host keys there"),
    }
}

/// One pod's SSH files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodKeys {
    dir: PathBuf,
    alias: String,
}

impl PodKeys {
    /// The files of pod `name` (nothing is read or made yet).
    pub(crate) fn of(name: &Name) -> Result<Self> {
        Ok(Self::at(&data_dir()?.join("ssh").join(name.as_str()), name))
    }

    /// The files of pod `name` under `dir` (tests).
    pub(crate) fn at(dir: &Path, name: &Name) -> Self {
        Self {
            dir: dir.to_path_buf(),
            alias: host_alias(name),
        }
    }

    /// The pod's folder (0700).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private host key (OpenSSH format, 0600).
    pub(crate) fn host_key_path(&self) -> PathBuf {
        self.dir.join("host_ed25519_key")
    }

    /// The client's `UserKnownHostsFile` for this pod: one line pinning the host key.
    pub(crate) fn known_hosts_path(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The host key, made on first use (ed25519).
    pub(crate) fn host_key(&self) -> Result<PrivateKey> {
        let path = self.host_key_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                check_private(&path)?;
                PrivateKey::from_openssh(text.trim_end()).with_context(|| {
                    format!(
                        "reading the SSH host key {}: delete it and run `devaipod ssh-config` again to make a new one",
                        path.display()
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.create_host_key(),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn create_host_key(&self) -> Result<PrivateKey> {
        make_private_dir(&self.dir)?;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
        seed.fill(0);
        let mut key = PrivateKey::from(pair);
        key.set_comment(self.alias.as_str());
        let text = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .context("encoding the SSH host key")?;
        let path = self.host_key_path();
        // create_new: two sessions racing to make the key keep the first one.
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return self.host_key(),
            Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
        };
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(key)
    }

    /// The known_hosts line for `key`: `devaipod-NAME ssh-ed25519 AAAA…`.
    pub(crate) fn known_hosts_line(&self, key: &PrivateKey) -> Result<String> {
        let public = key
            .public_key()
            .to_openssh()
            .context("encoding the SSH host key")?;
        Ok(format!("{} {public}\n", self.alias))
    }

    /// Writes the known_hosts file (0600) for the current host key, making the key if
    /// needed.
    pub(crate) fn write_known_hosts(&self) -> Result<PathBuf> {
        let key = self.host_key()?;
        let path = self.known_hosts_path();
        write_private_file(&path, self.known_hosts_line(&key)?.as_bytes())?;
        Ok(path)
    }

    /// Removes the pod's SSH files (a missing folder is fine).
    pub(crate) fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.dir.display())),
        }
    }
}

/// The SSH host name of pod `name`: `devaipod-NAME`.
pub(crate) fn host_alias(name: &Name) -> String {
    name.pod_name()
}

/// A private key must be the user's alone, as OpenSSH insists for its own.
fn check_private(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the SSH host key {} is readable by others (mode {:o}): `chmod 600` it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

/// Makes `dir` and its parents; `dir` itself is 0700 (an existing one is narrowed).
pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting {} to 0700", dir.display()))
}

/// Writes `bytes` to `path` (0600) atomically: a temporary file beside it, renamed.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no folder", path.display()))?;
    make_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".devaipod-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The public keys the user authenticates with: every `~/.ssh/*.pub` that parses, and
/// the SSH agent's (`SSH_AUTH_SOCK`), when there is one.
pub(crate) async fn user_keys() -> Vec<PublicKey> {
    let mut keys = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        keys.extend(pub_files(&PathBuf::from(home).join(".ssh")));
    }
    keys.extend(agent_keys().await);
    keys
}

/// The keys of every `DIR/*.pub` (unreadable or unparsable files are skipped: OpenSSH
/// would not offer them either).
pub(crate) fn pub_files(dir: &Path) -> Vec<PublicKey> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| openssh_keys::PublicKey::parse(text.trim()).ok())
        .filter_map(|k| PublicKey::from_bytes(&k.data()).ok())
        .collect()
}

async fn agent_keys() -> Vec<PublicKey> {
    if std::env::var_os("SSH_AUTH_SOCK").is_none() {
        return Vec::new();
    }
    let ask = async {
        let mut agent = russh::keys::agent::client::AgentClient::connect_env().await?;
        agent.request_identities().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), ask).await {
        Ok(Ok(ids)) => ids
            .into_iter()
            .filter_map(|id| match id {
                russh::keys::agent::AgentIdentity::PublicKey { key, .. } => Some(key),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `key` is one of `allowed` (same algorithm and key material).
pub(crate) fn is_allowed(key: &PublicKey, allowed: &[PublicKey]) -> bool {
    allowed.iter().any(|a| a.key_data() == key.key_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> Name {
        Name::new("demo").expect("valid")
    }

    #[test]
    fn the_host_key_is_made_once_private_and_pinned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keys = PodKeys::at(&tmp.path().join("ssh/demo"), &name());
        let first = keys.host_key().expect("made");
        let again = keys.host_key().expect("read");
        assert_eq!(first.public_key(), again.public_key());
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&keys.host_key_path()), 0o600);
        assert_eq!(mode(keys.dir()), 0o700);
        let kh = keys.write_known_hosts().expect("written");
        assert_eq!(mode(&kh), 0o600);
        let line = std::fs::read_to_string(&kh).expect("read");
        assert!(line.starts_with("devaipod-demo ssh-ed25519 AAAA"), "{line}");
        keys.remove().expect("removed");
        assert!(!keys.dir().exists());
        keys.remove().expect("removing twice is fine");
    }

    #[test]
    fn a_host_key_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keys = PodKeys::at(tmp.path(), &name());
        keys.host_key().expect("made");
        std::fs::set_permissions(keys.host_key_path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let e = keys.host_key().expect_err("refused");
        assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
    }

    #[test]
    fn pub_files_read_every_key_and_skip_junk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = PodKeys::at(&tmp.path().join("a"), &name())
            .host_key()
            .expect("a");
        let line = a.public_key().to_openssh().expect("encode");
        std::fs::write(
            tmp.path().join("id_ed25519.pub"),
            format!("{line} me@host\n"),
        )
        .expect("w");
        std::fs::write(tmp.path().join("junk.pub"), "not a key\n").expect("w");
        std::fs::write(tmp.path().join("id_ed25519"), "private, not read\n").expect("w");
        let keys = pub_files(tmp.path());
        assert_eq!(keys.len(), 1);
        assert!(is_allowed(a.public_key(), &keys));
        let b = PodKeys::at(&tmp.path().join("b"), &name())
            .host_key()
            .expect("b");
        assert!(!is_allowed(b.public_key(), &keys));
    }
}
