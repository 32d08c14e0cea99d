//! Finding devaipod-net, the pod's network guard (net/: a static binary), on the host,
//! and naming the image `up` makes of it: `localhost/devaipod-net:KEY`, KEY from the
//! binary's content, so a new build is a new image and an old pod keeps its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The repository of the network guard's image.
pub(crate) const NET_IMAGE_REPO: &str = "localhost/devaipod-net";

/// The binary and the image made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetBinary {
    pub path: PathBuf,
    /// `localhost/devaipod-net:KEY`.
    pub image: String,
}

/// Where devaipod looks: `$DEVAIPOD_NET_BIN`, else beside its own executable, else
/// `../libexec/devaipod/` from it (an installed layout).
fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("DEVAIPOD_NET_BIN") {
        return vec![PathBuf::from(p)];
    }
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    vec![
        dir.join("devaipod-net"),
        dir.join("../libexec/devaipod/devaipod-net"),
    ]
}

/// Finds the binary and names its image.
pub(crate) fn find() -> Result<NetBinary> {
    let tried = candidates();
    for path in &tried {
        if path.is_file() {
            return at(path);
        }
    }
    let list = tried
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    bail!(
        "devaipod-net, the network guard that confines the agent, was not found (looked at: {list}): build it with `just net` (`just install` puts it beside devaipod), or name it with DEVAIPOD_NET_BIN; `[agent] network = \"full\"` in devaipod.toml runs the agent without it, unconfined"
    )
}

/// The binary at `path` and its image's name.
pub(crate) fn at(path: &Path) -> Result<NetBinary> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the network guard {}", path.display()))?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!(
            "{} is not an executable (ELF) file: rebuild it with `just net`",
            path.display()
        );
    }
    // The key covers the layer's layout too, so a change to it makes a new image.
    let mut hasher = Sha256::new();
    hasher.update(&bytes);
    hasher.update(format!("{LAYER_DIRS:?}{LAYER_FILES:?}{SHARED_LINK:?}"));
    let digest = hasher.finalize();
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(NetBinary {
        path: path.to_path_buf(),
        image: format!("{NET_IMAGE_REPO}:{key}"),
    })
}

/// Folders of the image: the mount points its containers' read-only roots need that
/// Podman cannot make there (the secrets' tmpfs, /etc for the files Podman binds). Not
/// the volumes' mount points: Podman makes those, and a fresh volume then belongs to
/// the container's user (an image folder would hand it root's ownership instead).
/// `opt/devaipod-net` is the folder copied into the volume the workspace and the agent
/// mount (`plan::network`'s shared mount): the binary again, as a hard link.
const LAYER_DIRS: &[&str] = &[
    "etc",
    "opt",
    "opt/devaipod-net",
    "run",
    "run/secrets",
    "tmp",
];
/// The binary's second name (a hard link), in the folder the shared volume copies.
const SHARED_LINK: &str = "opt/devaipod-net/devaipod-net";
/// Empty files Podman binds over in every container.
const LAYER_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// The image's only layer: the binary at `/devaipod-net`, root's, mode 0755, and the
/// mount points above.
pub(crate) fn layer(bin: &NetBinary) -> Result<Vec<u8>> {
    let bytes = std::fs::read(&bin.path)
        .with_context(|| format!("reading the network guard {}", bin.path.display()))?;
    let mut tar = tar::Builder::new(Vec::new());
    for d in LAYER_DIRS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if *d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
    }
    for f in LAYER_FILES {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, f, std::io::empty())?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let exe = crate::plan::network::NET_EXE.trim_start_matches('/');
    tar.append_data(&mut header, exe, bytes.as_slice())?;
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Link);
    link.set_size(0);
    link.set_mode(0o755);
    link.set_mtime(0);
    tar.append_link(&mut link, SHARED_LINK, exe)?;
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_named_by_the_binarys_content_and_holds_it_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("devaipod-net");
        std::fs::write(&p, b"\x7fELF one").expect("write");
        let a = at(&p).expect("binary");
        assert!(a.image.starts_with("localhost/devaipod-net:"));
        assert_eq!(a.image.len(), "localhost/devaipod-net:".len() + 16);
        std::fs::write(&p, b"\x7fELF two").expect("write");
        assert_ne!(at(&p).expect("binary").image, a.image);
        let layer = layer(&a).expect("layer");
        let mut ar = tar::Archive::new(layer.as_slice());
        let entries: Vec<(String, u32, Option<String>)> = ar
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                    e.link_name()
                        .expect("link")
                        .map(|l| l.display().to_string()),
                )
            })
            .collect();
        let n = entries.len();
        assert_eq!(
            entries[n - 2..],
            [
                ("devaipod-net".to_string(), 0o755, None),
                (
                    "opt/devaipod-net/devaipod-net".to_string(),
                    0o755,
                    Some("devaipod-net".to_string())
                )
            ]
        );
        assert!(
            entries.iter().any(|(p, _, _)| p == "run/secrets/"),
            "{entries:?}"
        );
        std::fs::write(&p, b"#!/bin/sh").expect("write");
        let e = at(&p).expect_err("not ELF");
        assert!(format!("{e:#}").contains("just net"), "{e:#}");
    }
}
