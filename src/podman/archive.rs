//! Files in and out of containers through the archive API: unpacking a tar into a
//! (created or running) container, and reading files back, with no exec session and
//! no tool needed in the image.

use anyhow::{Context, Result, anyhow};
use containers_api::conn::{Payload, hyper};

use super::{API_PREFIX, Engine, REQUEST_TIMEOUT, conn_error, encode, is_not_found};

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
    /// content); empty if `path` does not exist.
    pub(crate) async fn read_tree(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let ep = format!(
            "{API_PREFIX}/libpod/containers/{}/archive?path={}",
            encode(container),
            encode(path)
        );
        let resp = match self.raw.get(&ep).await.map_err(conn_error) {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e.context(format!("reading {container}:{path}"))),
        };
        let bytes = hyper::body::to_bytes(resp.into_body())
            .await
            .with_context(|| format!("reading {container}:{path}"))?;
        let mut out = Vec::new();
        let mut archive = tar::Archive::new(&bytes[..]);
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
            }
        }
        Ok(out)
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
