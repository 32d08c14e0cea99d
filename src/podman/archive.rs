//! Files in and out of containers through the archive API: unpacking a tar into a
//! (created or running) container, and reading files back, with no exec session and
//! no tool needed in the image.

use anyhow::{Context, Result, anyhow, bail};
use containers_api::conn::{Payload, hyper};

use super::{API_PREFIX, Engine, REQUEST_TIMEOUT, conn_error, encode, is_not_found};

/// How much of a container's files [`Engine::read_tree`] reads: /etc/passwd, secrets and
/// ref files are far smaller; a container that offers more is not believed.
const READ_LIMIT: u64 = 64 * 1024 * 1024;

impl Engine {
    /// Unpacks a tar stream into `path` of a (created or running) container; paths
    /// inside mounted volumes land in the volume.
    ///
    /// Ownership comes from the tar headers (`copyUIDGID=false`); libpod would otherwise
    /// chown everything to the container's main user.
    pub(crate) async fn copy_into(&self, container: &str, path: &str, tar: Vec<u8>) -> Result<()> {
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/archive?path={}&copyUIDGID=false",
            encode(container),
            encode(path)
        );
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.raw.put(&ep, Payload::XTar(hyper::Body::from(tar))),
        )
        .await
        .map_err(|_| anyhow!("Podman did not finish copying into {container} in time"))?
        .map_err(conn_error)
        .with_context(|| format!("copying files into {container}:{path}"))?;
        Ok(())
    }

    /// Every regular file under `path` in a container (path relative to `path`,
    /// content); empty if `path` does not exist. At most [`READ_LIMIT`] bytes of
    /// archive are read.
    pub(crate) async fn read_tree(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        // In memory: what is read this way (the server password, /etc/passwd) is small
        // and must not reach a file.
        let spool = std::io::Cursor::new(Vec::new());
        Ok(self
            .read_tree_entries(container, path, READ_LIMIT, spool)
            .await?
            .0)
    }

    /// [`Self::read_tree`], failing once the archive Podman sends exceeds `limit` bytes
    /// (tar headers included): what a container holds may be hostile. The archive is
    /// spooled to a temporary file, so only the files' contents are held in memory.
    pub(crate) async fn read_tree_within(
        &self,
        container: &str,
        path: &str,
        limit: u64,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .read_tree_entries(container, path, limit, spool_file()?)
            .await?
            .0)
    }

    /// [`Self::read_tree_within`], or `None` when the tree holds anything but regular
    /// files and directories (links, FIFOs, devices).
    pub(crate) async fn read_plain_tree(
        &self,
        container: &str,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>> {
        let (files, others) = self
            .read_tree_entries(container, path, limit, spool_file()?)
            .await?;
        Ok((others == 0).then_some(files))
    }

    /// The regular files of the tree, and how many entries were neither files nor
    /// directories; the archive goes through `spool` first.
    async fn read_tree_entries(
        &self,
        container: &str,
        path: &str,
        limit: u64,
        mut spool: impl std::io::Read + std::io::Write + std::io::Seek,
    ) -> Result<(Vec<(String, Vec<u8>)>, usize)> {
        if !self
            .archive_into(container, path, limit, &mut spool)
            .await?
        {
            return Ok((Vec::new(), 0));
        }
        std::io::Seek::rewind(&mut spool).context("reading the spooled archive")?;
        let mut others = 0;
        let mut out = Vec::new();
        let mut archive = tar::Archive::new(std::io::BufReader::new(spool));
        for entry in archive
            .entries()
            .context("reading the archive from podman")?
        {
            let mut entry = entry.context("reading the archive from podman")?;
            if entry.header().entry_type().is_file() {
                let name = entry.path()?.display().to_string();
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut buf)?;
                out.push((name, buf));
            } else if !entry.header().entry_type().is_dir() {
                others += 1;
            }
        }
        Ok((out, others))
    }

    /// Copies the regular file `path` of a container into `dest`, reading at most
    /// `limit` bytes of archive (spooled to a temporary file, not memory). `false` if
    /// the path does not exist or is not a regular file.
    pub(crate) async fn copy_file_out(
        &self,
        container: &str,
        path: &str,
        limit: u64,
        dest: &mut std::fs::File,
    ) -> Result<bool> {
        let mut spool = spool_file()?;
        if !self
            .archive_into(container, path, limit, &mut spool)
            .await?
        {
            return Ok(false);
        }
        std::io::Seek::rewind(&mut spool).context("reading the spooled archive")?;
        let mut archive = tar::Archive::new(spool);
        let entries = archive
            .entries()
            .context("reading the archive from podman")?;
        for entry in entries {
            let mut entry = entry.context("reading the archive from podman")?;
            if entry.header().entry_type().is_file() {
                std::io::copy(&mut entry, dest)
                    .with_context(|| format!("copying {container}:{path}"))?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Streams the archive of `path` into `sink`, failing past `limit` bytes; `false`
    /// when the path does not exist.
    async fn archive_into(
        &self,
        container: &str,
        path: &str,
        limit: u64,
        sink: &mut impl std::io::Write,
    ) -> Result<bool> {
        use hyper::body::HttpBody as _;
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/archive?path={}",
            encode(container),
            encode(path)
        );
        let read = async {
            let resp = match self.raw.get(&ep).await.map_err(conn_error) {
                Ok(r) => r,
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(e),
            };
            let mut body = resp.into_body();
            let mut total: u64 = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.context("reading the archive from podman")?;
                total += chunk.len() as u64;
                if total > limit {
                    bail!("it is larger than devaipod reads ({limit} bytes)");
                }
                sink.write_all(&chunk).context("spooling the archive")?;
            }
            Ok(true)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, read)
            .await
            .map_err(|_| anyhow!("Podman did not send {container}:{path} in time"))?
            .with_context(|| format!("reading {container}:{path}"))
    }

    /// Reads one file out of a container (created or running), `None` if it is missing.
    pub(crate) async fn read_file(&self, container: &str, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read_tree(container, path)
            .await?
            .into_iter()
            .next()
            .map(|(_, content)| content))
    }
}

/// An anonymous temporary file (removed when dropped) to spool an archive in.
fn spool_file() -> Result<std::fs::File> {
    tempfile::tempfile().context("creating a temporary file")
}
