//! The entry's file, `~/.ssh/config.d/devaipod-NAME`: written 0600 (its folder 0700)
//! and replaced atomically, removed only when its first line is devaipod's marker (a
//! file the user wrote is never touched), and what `~/.ssh/config` and the toolbox files
//! in `/run` say, read for [`super::entry`]'s pure functions.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::entry::{self, Inclusion, Toolbox};
use super::keys::{self, PodKeys};
use crate::names::Name;

/// The user's home folder (`HOME`, absolute).
pub(crate) fn home() -> Result<PathBuf> {
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h),
        _ => bail!(
            "HOME is not set to an absolute path: devaipod ssh-config writes ~/.ssh/config.d/devaipod-NAME there"
        ),
    }
}

/// `HOME/.ssh/config.d`.
pub(crate) fn config_d(home: &Path) -> PathBuf {
    home.join(".ssh/config.d")
}

/// `HOME/.ssh/config.d/devaipod-NAME`.
pub(crate) fn entry_path(home: &Path, name: &Name) -> PathBuf {
    config_d(home).join(entry::file_name(name))
}

/// What is at the entry's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Existing {
    Nothing,
    Ours,
    /// Something else (not a regular file, or one without our marker), and why.
    Foreign(&'static str),
}

fn existing(path: &Path, name: &Name) -> Result<Existing> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.file_type().is_file() {
        return Ok(Existing::Foreign("it is not a regular file"));
    }
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut first = Vec::new();
    BufReader::new(file)
        .take(4096)
        .read_until(b'\n', &mut first)
        .with_context(|| format!("reading {}", path.display()))?;
    let first = String::from_utf8_lossy(&first);
    if entry::is_marker(first.trim_end_matches(['\n', '\r']), name) {
        Ok(Existing::Ours)
    } else {
        Ok(Existing::Foreign("its first line is not devaipod's marker"))
    }
}

/// Writes pod `name`'s entry `text` under `home` and returns its path. `~/.ssh` is made
/// 0700 if missing (an existing one is left as it is), `config.d` is made or narrowed to
/// 0700, the file is 0600. A file there that devaipod did not write is refused.
pub(crate) fn write(home: &Path, name: &Name, text: &str) -> Result<PathBuf> {
    let path = entry_path(home, name);
    if let Existing::Foreign(why) = existing(&path, name)? {
        bail!(
            "{} exists and devaipod did not write it ({why}): move it away, or use another workspace name",
            path.display()
        );
    }
    let ssh = home.join(".ssh");
    match std::fs::DirBuilder::new().mode(0o700).create(&ssh) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", ssh.display())),
    }
    keys::make_private_dir(&config_d(home))?;
    keys::write_private_file(&path, text.as_bytes())?;
    Ok(path)
}

/// What [`forget`] removed or left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Forgotten {
    /// Paths removed: the entry file and the pod's key folder, when they existed.
    pub removed: Vec<PathBuf>,
    /// An entry path left alone because devaipod did not write the file there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<PathBuf>,
}

/// Removes pod `name`'s entry under `home` (only a regular file carrying our marker) and
/// its SSH keys (`keys`). Missing files are fine.
pub(crate) fn forget_at(home: &Path, keys: &PodKeys, name: &Name) -> Result<Forgotten> {
    let mut out = Forgotten::default();
    let path = entry_path(home, name);
    match existing(&path, name)? {
        Existing::Nothing => {}
        Existing::Foreign(_) => out.kept = Some(path),
        Existing::Ours => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            out.removed.push(path);
        }
    }
    if std::fs::symlink_metadata(keys.dir()).is_ok() {
        keys.remove()?;
        out.removed.push(keys.dir().to_path_buf());
    }
    Ok(out)
}

/// [`forget_at`] for the user's home and devaipod's data folder.
pub(crate) fn forget(name: &Name) -> Result<Forgotten> {
    forget_at(&home()?, &PodKeys::of(name)?, name)
}

/// Whether the user's `~/.ssh/config` reads the entry of pod `name`; an unreadable file
/// is reported as the error text.
pub(crate) fn inclusion(home: &Path, file_name: &str) -> Result<Inclusion, String> {
    let path = home.join(".ssh/config");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(entry::inclusion(
            &String::from_utf8_lossy(&bytes),
            home,
            file_name,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inclusion::Missing),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The toolbox devaipod runs in, from `/run/.toolboxenv` and `/run/.containerenv`.
pub(crate) fn toolbox() -> Result<Option<Toolbox>> {
    let in_toolbox = crate::podman::connect::in_toolbox();
    let containerenv = if in_toolbox {
        std::fs::read_to_string("/run/.containerenv").ok()
    } else {
        None
    };
    entry::toolbox(in_toolbox, containerenv.as_deref())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn demo() -> Name {
        Name::new("demo").expect("name")
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777
    }

    const TEXT: &str = "# Written by devaipod ssh-config for workspace demo; `devaipod delete demo` removes it.\nHost devaipod-demo\n";

    #[test]
    fn the_entry_is_0600_in_a_0700_folder_and_ssh_is_made_0700() {
        let home = tempfile::tempdir().expect("tempdir");
        let path = write(home.path(), &demo(), TEXT).expect("written");
        assert_eq!(path, home.path().join(".ssh/config.d/devaipod-demo"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), TEXT);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&home.path().join(".ssh/config.d")), 0o700);
        assert_eq!(mode(&home.path().join(".ssh")), 0o700);
        let again = write(home.path(), &demo(), &format!("{TEXT}    User x\n")).expect("again");
        assert!(
            std::fs::read_to_string(again)
                .expect("read")
                .ends_with("User x\n")
        );
        let leftovers: Vec<_> = std::fs::read_dir(home.path().join(".ssh/config.d"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["devaipod-demo"], "no temporary file is left");
    }

    #[test]
    fn an_existing_ssh_folder_keeps_its_mode_and_config_d_is_narrowed() {
        let home = tempfile::tempdir().expect("tempdir");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("config.d")).expect("mkdir");
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(ssh.join("config.d"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        write(home.path(), &demo(), TEXT).expect("written");
        assert_eq!(mode(&ssh), 0o755, "never chmod the user's ~/.ssh");
        assert_eq!(mode(&ssh.join("config.d")), 0o700);
    }

    #[test]
    fn a_file_the_user_wrote_is_neither_replaced_nor_removed() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join(".ssh/config.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("devaipod-demo");
        let mine = "Host devaipod-demo\n    User me\n";
        std::fs::write(&path, mine).expect("w");
        let e = write(home.path(), &demo(), TEXT).expect_err("refused");
        assert!(
            format!("{e:#}").contains("devaipod did not write it"),
            "{e:#}"
        );
        let keys = PodKeys::at(&home.path().join("data/ssh/demo"), &demo());
        let f = forget_at(home.path(), &keys, &demo()).expect("forget");
        assert_eq!(f.kept, Some(path.clone()));
        assert!(f.removed.is_empty());
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), mine);

        // Another workspace's marker is not ours either.
        std::fs::write(&path, TEXT.replace("workspace demo;", "workspace demo2;")).expect("w");
        assert!(write(home.path(), &demo(), TEXT).is_err());

        // A symlink is not followed, replaced or removed, even to a file of ours.
        std::fs::remove_file(&path).expect("rm");
        let target = home.path().join("target");
        std::fs::write(&target, TEXT).expect("w");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert!(write(home.path(), &demo(), TEXT).is_err());
        let f = forget_at(home.path(), &keys, &demo()).expect("forget");
        assert_eq!(f.kept, Some(path.clone()));
        assert!(std::fs::symlink_metadata(&path).is_ok());
        assert!(target.exists());
    }

    #[test]
    fn forget_removes_our_entry_and_the_keys() {
        let home = tempfile::tempdir().expect("tempdir");
        let keys = PodKeys::at(&home.path().join("data/ssh/demo"), &demo());
        keys.write_known_hosts().expect("keys");
        let path = write(home.path(), &demo(), TEXT).expect("written");
        let f = forget_at(home.path(), &keys, &demo()).expect("forget");
        assert_eq!(f.removed, [path.clone(), keys.dir().to_path_buf()]);
        assert_eq!(f.kept, None);
        assert!(!path.exists());
        assert!(!keys.dir().exists());
        assert_eq!(
            forget_at(home.path(), &keys, &demo()).expect("again"),
            Forgotten::default()
        );
    }

    #[test]
    fn inclusion_reads_the_users_config() {
        let home = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            inclusion(home.path(), "devaipod-demo"),
            Ok(Inclusion::Missing)
        );
        std::fs::create_dir_all(home.path().join(".ssh")).expect("mkdir");
        std::fs::write(
            home.path().join(".ssh/config"),
            "Include config.d/*\nHost *\n",
        )
        .expect("w");
        assert_eq!(
            inclusion(home.path(), "devaipod-demo"),
            Ok(Inclusion::Included)
        );
    }
}
