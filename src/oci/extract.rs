//! A Feature's tar unpacked into the cache, safely: every entry must stay inside the
//! folder (no absolute path, no `..`, no link whose target leaves it, no device, fifo
//! or socket), and the folder appears whole or not at all (unpacked into a temporary
//! folder beside it, then renamed).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// `sha256-HEX` for a digest `sha256:HEX` (refuses anything else, so that a digest
/// from a registry cannot name a path).
pub(crate) fn folder_name(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{digest:?} is not a sha256 digest"))?;
    Ok(format!("sha256-{}", hex.to_ascii_lowercase()))
}

/// The relative path an entry names, normalised; an error for one that would leave
/// the folder.
fn entry_path(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => bail!("{} contains `..`", raw.display()),
            Component::RootDir | Component::Prefix(_) => {
                bail!("{} is an absolute path", raw.display())
            }
        }
    }
    Ok(out)
}

/// Whether a symlink at `at` (relative) pointing to `target` stays inside the folder.
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = at.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks `tar` (a plain tar, or gzip-compressed: the Features' `.tgz` files) into
/// `cache/NAME`; returns that folder. An existing folder is kept (another fetch made it).
pub(crate) fn unpack_into_cache(tar: &[u8], cache: &Path, name: &str) -> Result<PathBuf> {
    let dest = cache.join(name);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(cache)
        .with_context(|| format!("creating a temporary folder in {}", cache.display()))?;
    unpack(tar, tmp.path())?;
    let made = tmp.keep();
    match std::fs::rename(&made, &dest) {
        Ok(()) => Ok(dest),
        // Another fetch renamed the same content into place first.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&made);
            Ok(dest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&made);
            Err(e).with_context(|| format!("moving the unpacked feature to {}", dest.display()))
        }
    }
}

/// Unpacks `bytes` into the empty folder `dir`, refusing unsafe entries.
pub(crate) fn unpack(bytes: &[u8], dir: &Path) -> Result<()> {
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries().context("reading the feature's tar")? {
        let mut entry = entry.context("reading the feature's tar")?;
        let raw = entry.path().context("an entry's path")?.into_owned();
        let rel = entry_path(&raw).context("the feature's tar has an unsafe entry")?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::Directory => {}
            T::Symlink => {
                let target = entry
                    .link_name()
                    .context("a link's target")?
                    .with_context(|| format!("{} is a link without a target", raw.display()))?;
                if !link_stays_inside(&rel, &target) {
                    bail!(
                        "the feature's tar has an unsafe entry: the symlink {} points outside the feature ({})",
                        raw.display(),
                        target.display()
                    );
                }
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .context("a link's target")?
                    .with_context(|| format!("{} is a link without a target", raw.display()))?;
                entry_path(&target).with_context(|| {
                    format!(
                        "the feature's tar has an unsafe entry: the hardlink {} points outside the feature",
                        raw.display()
                    )
                })?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => bail!(
                "the feature's tar has an unsafe entry: {} is a {other:?} (only files, folders and links inside the feature are allowed)",
                raw.display()
            ),
        }
        // The tar crate refuses to write through a symlink that leaves `dir`, and
        // resolves hardlink targets inside `dir`.
        let done = entry
            .unpack_in(dir)
            .with_context(|| format!("unpacking {}", raw.display()))?;
        if !done {
            bail!(
                "the feature's tar has an unsafe entry: {} would be written outside the feature",
                raw.display()
            );
        }
        if kind == T::Regular || kind == T::Continuous {
            // Keep only the owner's execute bit (install.sh must run), never setuid.
            let mode = entry.header().mode().unwrap_or(0o644);
            let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.join(&rel), std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", rel.display()))?;
        }
    }
    check_links(dir, dir)
}

/// Every symlink under `at` resolves inside `root` (a lexical check alone is fooled by
/// a target that passes through another link).
fn check_links(root: &Path, at: &Path) -> Result<()> {
    let root_real =
        std::fs::canonicalize(root).with_context(|| format!("resolving {}", root.display()))?;
    for entry in std::fs::read_dir(at).with_context(|| format!("reading {}", at.display()))? {
        let entry = entry.with_context(|| format!("reading {}", at.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("{}", path.display()))?;
        if kind.is_symlink() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            match std::fs::canonicalize(&path) {
                Ok(real) if real.starts_with(&root_real) => {}
                Ok(_) => bail!(
                    "the feature's tar has an unsafe entry: the symlink {} points outside the feature",
                    rel.display()
                ),
                Err(_) => bail!(
                    "the feature's tar has an unsafe entry: the symlink {} points to nothing inside the feature",
                    rel.display()
                ),
            }
        } else if kind.is_dir() {
            check_links(root, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one entry of each given (path, type, link target or content).
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            // Write the raw name so that unsafe names reach the archive at all.
            let name = h.as_gnu_mut().expect("gnu").name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_link_name(data).expect("link name");
                    h.set_size(0);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).expect("append");
                }
                _ => {
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).expect("append");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn a_feature_is_unpacked() {
        use tar::EntryType as T;
        let t = tar_of(&[
            ("./", T::Directory, ""),
            ("./devcontainer-feature.json", T::Regular, "{\"id\":\"x\"}"),
            ("./install.sh", T::Regular, "#!/bin/sh\n"),
            ("./lib/", T::Directory, ""),
            ("./lib/link", T::Symlink, "../install.sh"),
            ("./hard", T::Link, "install.sh"),
        ]);
        let d = tempfile::tempdir().expect("tempdir");
        unpack(&t, d.path()).expect("unpacks");
        assert_eq!(
            std::fs::read_to_string(d.path().join("devcontainer-feature.json")).expect("json"),
            "{\"id\":\"x\"}"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("lib/link")).expect("link"),
            "#!/bin/sh\n"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("install.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn unsafe_entries_are_refused() {
        use tar::EntryType as T;
        type Entries<'a> = &'a [(&'a str, T, &'a str)];
        let cases: &[(Entries, &str)] = &[
            (&[("/etc/passwd", T::Regular, "x")], "absolute path"),
            (&[("../escape", T::Regular, "x")], "contains `..`"),
            (&[("a/../../escape", T::Regular, "x")], "contains `..`"),
            (&[("l", T::Symlink, "/etc")], "points outside"),
            (&[("d/l", T::Symlink, "../../x")], "points outside"),
            (&[("h", T::Link, "../x")], "hardlink h points outside"),
            (
                &[("h", T::Link, "/etc/shadow")],
                "hardlink h points outside",
            ),
            (
                &[
                    ("a/", T::Directory, ""),
                    ("a/b", T::Symlink, ".."),
                    ("y", T::Symlink, "a/b/.."),
                ],
                "symlink y points outside",
            ),
            (&[("dev", T::Char, "")], "is a Char"),
            (&[("blk", T::Block, "")], "is a Block"),
            (&[("fifo", T::Fifo, "")], "is a Fifo"),
        ];
        for (entries, want) in cases {
            let d = tempfile::tempdir().expect("tempdir");
            let e = unpack(&tar_of(entries), d.path()).expect_err("refused");
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "{entries:?}: {msg}");
            assert!(msg.contains("unsafe entry"), "{entries:?}: {msg}");
        }
    }

    #[test]
    fn a_failed_unpack_leaves_no_folder() {
        let t = tar_of(&[
            ("ok.txt", tar::EntryType::Regular, "x"),
            ("../bad", tar::EntryType::Regular, "x"),
        ]);
        let cache = tempfile::tempdir().expect("tempdir");
        let name = folder_name(&format!("sha256:{}", "a".repeat(64))).expect("name");
        unpack_into_cache(&t, cache.path(), &name).expect_err("refused");
        let left: Vec<_> = std::fs::read_dir(cache.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn digests_name_folders_only_when_they_are_sha256() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            folder_name(&format!("sha256:{hex}")).expect("ok"),
            format!("sha256-{hex}")
        );
        assert!(folder_name("sha256:../../x").is_err());
        assert!(folder_name(&format!("sha512:{hex}")).is_err());
    }

    #[test]
    fn gzip_tarballs_are_unpacked() {
        let t = tar_of(&[("install.sh", tar::EntryType::Regular, "echo hi\n")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).expect("gzip");
        let d = tempfile::tempdir().expect("tempdir");
        unpack(&gz.finish().expect("gzip"), d.path()).expect("unpacks");
        assert!(d.path().join("install.sh").is_file());
    }
}
