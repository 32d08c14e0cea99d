//! Fetching devcontainer Features (the Features distribution spec): an OCI artifact
//! (a manifest whose one layer is `application/vnd.devcontainers.layer.v1+tar`) from a
//! registry, or a tarball over HTTPS, unpacked into the cache folder
//! `sha256-HEX` of the layer's (or the tarball's) digest. The only code besides
//! `podman` that talks to a registry: it reads the user's Podman configuration the way
//! Podman does (registries.conf for blocked, insecure, rewrites and mirrors; auth.json;
//! certs.d), because the engine cannot pull an artifact for us on Podman 4.
//!
//! A second fetch of the same reference uses the cache without the network (the
//! reference's last digest is kept in `refs/`), unless [`Refresh::Always`].

mod extract;
mod registries;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub(crate) use registries::{Endpoint, RegistriesConf, Resolution};

/// The media type of a Feature's layer (a tar of its folder).
pub(crate) const LAYER_MEDIA_TYPE: &str = "application/vnd.devcontainers.layer.v1+tar";
/// The media type of a Feature's (empty) config.
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.devcontainers";
/// The largest Feature devaipod downloads (a Feature is a few scripts).
const MAX_SIZE: u64 = 256 << 20;

/// A fetched Feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fetched {
    /// The reference or URL as given.
    pub reference: String,
    /// `sha256:HEX` of the layer (or of the tarball): names the folder.
    pub digest: String,
    /// The unpacked Feature: `CACHE/sha256-HEX`.
    pub dir: PathBuf,
    /// The manifest's digest (OCI artifacts only).
    pub manifest_digest: Option<String>,
    /// Where it was fetched from (`HOST/REPOSITORY` after registries.conf; the URL).
    pub source: String,
    /// Taken from the cache, without the network.
    #[serde(skip_deserializing)]
    pub cached: bool,
}

/// When to ask the registry again for a reference the cache has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Only when the cache does not have it.
    IfMissing,
    /// Every time (a tag may have moved).
    Always,
}

/// The Features cache: `$XDG_CACHE_HOME/devaipod/features` (`~/.cache/devaipod/features`).
pub(crate) fn default_cache() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
            "neither XDG_CACHE_HOME nor HOME is set: devaipod needs a cache folder for Features",
        )?)
        .join(".cache"),
    };
    Ok(base.join("devaipod/features"))
}

/// What the cache remembers of a reference (`CACHE/refs/sha256-HEX.json`, HEX of the
/// reference's text).
fn ref_file(cache: &Path, reference: &str) -> PathBuf {
    let key = hex(&sha2::Sha256::digest(reference.as_bytes()));
    cache.join("refs").join(format!("sha256-{key}.json"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cached fetch of `reference`, if its folder is still there.
fn cached(cache: &Path, reference: &str) -> Option<Fetched> {
    let text = std::fs::read_to_string(ref_file(cache, reference)).ok()?;
    let mut f: Fetched = serde_json::from_str(&text).ok()?;
    let name = extract::folder_name(&f.digest).ok()?;
    (f.reference == reference && cache.join(&name).is_dir()).then(|| {
        f.dir = cache.join(name);
        f.cached = true;
        f
    })
}

fn remember(cache: &Path, f: &Fetched) -> Result<()> {
    let path = ref_file(cache, &f.reference);
    let dir = path.parent().unwrap_or(cache);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    serde_json::to_writer_pretty(&mut tmp, f)?;
    tmp.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Fetches the Feature `reference` (`HOST[:PORT]/PATH:TAG` or `...@sha256:HEX`) into
/// `cache`, with the user's registries.conf, auth.json and certs.d.
pub(crate) async fn fetch_feature(
    reference: &str,
    cache: &Path,
    refresh: Refresh,
) -> Result<Fetched> {
    if refresh == Refresh::IfMissing
        && let Some(f) = cached(cache, reference)
    {
        return Ok(f);
    }
    let parsed = parse_reference(reference)?;
    let repository = format!("{}/{}", parsed.registry(), parsed.repository());
    let conf = RegistriesConf::load()?;
    let endpoints = match conf.resolve(&repository, parsed.digest().is_some()) {
        Resolution::Blocked { file, prefix } => bail!(
            "the feature {reference} is blocked by registries.conf: {} has a [[registry]] with prefix {prefix:?} and blocked = true; name another feature, or change that configuration",
            file.display()
        ),
        Resolution::Pull(e) => e,
    };
    install_crypto();
    let mut failures = Vec::new();
    let last = endpoints.len().saturating_sub(1);
    for (i, endpoint) in endpoints.iter().enumerate() {
        match fetch_from(reference, &parsed, endpoint, cache).await {
            Ok(f) => {
                remember(cache, &f)?;
                return Ok(f);
            }
            Err(e) if i < last => {
                tracing::info!("{reference}: mirror {} failed: {e:#}", endpoint.repository);
                failures.push(format!("{}: {e:#}", endpoint.repository));
            }
            Err(e) => {
                if failures.is_empty() {
                    return Err(e);
                }
                return Err(e.context(format!(
                    "the mirrors of registries.conf failed too ({})",
                    failures.join("; ")
                )));
            }
        }
    }
    bail!("registries.conf gives no place to fetch {reference} from")
}

/// A Feature reference, fully qualified (a Feature has no short names).
fn parse_reference(reference: &str) -> Result<Reference> {
    if crate::podman::auth::registry_of(reference).is_none() {
        bail!(
            "the feature {reference:?} does not name a registry: write it fully qualified, e.g. ghcr.io/devcontainers/features/{}",
            reference.trim_start_matches('/')
        );
    }
    let parsed: Reference = reference.parse().with_context(|| {
        format!("the feature {reference:?} is not an OCI reference (HOST/PATH:TAG or HOST/PATH@sha256:HEX)")
    })?;
    Ok(parsed)
}

/// The process's TLS crypto: ring (rustls needs one chosen when several could be).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One endpoint's attempt: manifest, layer, blob, unpack.
async fn fetch_from(
    reference: &str,
    parsed: &Reference,
    endpoint: &Endpoint,
    cache: &Path,
) -> Result<Fetched> {
    let registry = endpoint.registry().to_string();
    let path = endpoint.repository[registry.len()..].trim_start_matches('/');
    let target = match (parsed.digest(), parsed.tag()) {
        (Some(d), _) => Reference::with_digest(registry.clone(), path.into(), d.into()),
        (None, t) => {
            Reference::with_tag(registry.clone(), path.into(), t.unwrap_or("latest").into())
        }
    };
    let cas = registry_cas(&registry)?;
    let config = oci_client::client::ClientConfig {
        protocol: if endpoint.insecure {
            oci_client::client::ClientProtocol::HttpsExcept(vec![
                target.resolve_registry().to_string(),
            ])
        } else {
            oci_client::client::ClientProtocol::Https
        },
        extra_root_certificates: cas
            .iter()
            .map(|(_, pem)| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("devaipod/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    let client = Client::new(config);
    let lookup = crate::podman::auth::credentials_for(&endpoint.repository);
    let auth = match &lookup.creds {
        Some(c) if !c.username.is_empty() => {
            RegistryAuth::Basic(c.username.clone(), c.password.clone())
        }
        _ => RegistryAuth::Anonymous,
    };
    let asked = format!("{}/{}", parsed.registry(), parsed.repository());
    let from = if asked == endpoint.repository {
        String::new()
    } else {
        format!(" (as {} after registries.conf)", endpoint.repository)
    };
    let why = |e: OciDistributionError| explain(reference, &from, endpoint, &lookup, &cas, e);
    let (manifest, manifest_digest) = client
        .pull_image_manifest(&target, &auth)
        .await
        .map_err(why)?;
    let layer = match manifest.layers.as_slice() {
        [one] => one.clone(),
        more => bail!(
            "{reference} is not a devcontainer Feature: its manifest (from {}) has {} layers, a Feature has one of media type {LAYER_MEDIA_TYPE}",
            endpoint.repository,
            more.len()
        ),
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        bail!(
            "{reference} is not a devcontainer Feature: its layer is of media type {} (a Feature's is {LAYER_MEDIA_TYPE}; config {CONFIG_MEDIA_TYPE})",
            layer.media_type
        );
    }
    if u64::try_from(layer.size).unwrap_or(u64::MAX) > MAX_SIZE {
        bail!(
            "the feature {reference}'s layer is {} bytes: more than devaipod's limit of {MAX_SIZE}",
            layer.size
        );
    }
    let digest = layer.digest.clone();
    let name = extract::folder_name(&digest)
        .with_context(|| format!("the manifest of {reference} names its layer"))?;
    let dir = cache.join(&name);
    if !dir.is_dir() {
        let mut bytes = Vec::new();
        client
            .pull_blob(&target, &layer, &mut bytes)
            .await
            .map_err(why)?;
        check_digest(reference, &digest, &bytes)?;
        extract::unpack_into_cache(&bytes, cache, &name)
            .with_context(|| format!("unpacking the feature {reference}"))?;
    }
    Ok(Fetched {
        reference: reference.to_string(),
        digest,
        dir,
        manifest_digest: Some(manifest_digest),
        source: endpoint.repository.clone(),
        cached: false,
    })
}

fn check_digest(what: &str, want: &str, bytes: &[u8]) -> Result<()> {
    let got = format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)));
    if !got.eq_ignore_ascii_case(want) {
        bail!(
            "the download of {what} does not match its digest: expected {want}, got {got} (a broken mirror or proxy, or a changed file): nothing was kept"
        );
    }
    Ok(())
}

/// The CA certificates Podman trusts for `registry` (containers-certs.d(5)): the `*.crt`
/// files of the first of `~/.config/containers/certs.d/REGISTRY` (rootless),
/// `/etc/containers/certs.d/REGISTRY`, `/etc/docker/certs.d/REGISTRY` that exists.
fn registry_cas(registry: &str) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut dirs = Vec::new();
    if !nix::unistd::geteuid().is_root()
        && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        dirs.push(PathBuf::from(home).join(".config/containers/certs.d"));
    }
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    for d in dirs {
        let dir = d.join(registry);
        if !dir.is_dir() {
            continue;
        }
        let mut out = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for f in files {
            let pem = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            out.push((f, pem));
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

/// A registry error as the user needs it: the feature, the registry, the cause, the fix.
fn explain(
    reference: &str,
    from: &str,
    endpoint: &Endpoint,
    lookup: &crate::podman::auth::Lookup,
    cas: &[(PathBuf, Vec<u8>)],
    e: OciDistributionError,
) -> anyhow::Error {
    let registry = endpoint.registry();
    let c: Vec<&OciErrorCode> = match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().map(|c| &c.code).collect()
        }
        _ => Vec::new(),
    };
    let status = match &e {
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Some(401),
        OciDistributionError::ImageManifestNotFoundError(_) => Some(404),
        OciDistributionError::RequestError(r) => r.status().map(|s| s.as_u16()),
        _ => None,
    };
    let denied = matches!(status, Some(401 | 403))
        || c.iter()
            .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied));
    let missing = status == Some(404)
        || c.iter().any(|c| {
            matches!(
                c,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        });
    let chain = error_chain(&e);
    let message = if denied {
        let creds = match (&lookup.creds, &lookup.file) {
            (Some(_), Some(file)) => format!(
                "the credentials for {registry} in {} were refused",
                file.display()
            ),
            _ => format!(
                "no credentials for {registry} were found in {}",
                lookup
                    .searched
                    .iter()
                    .map(|p| {
                        let missing = if p.is_file() { "" } else { " (missing)" };
                        format!("{}{missing}", p.display())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "{registry} refused access to the feature {reference}{from} (unauthorized): {creds}; log in with `podman login {registry}` (devaipod reads the same auth.json as Podman: REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json)"
        )
    } else if missing {
        format!(
            "the feature {reference} was not found in {registry}{from}: check its name and tag (or digest)"
        )
    } else if matches!(e, OciDistributionError::DigestError(_)) {
        format!(
            "the download of the feature {reference} from {registry}{from} does not match its digest (a broken registry, mirror or proxy): nothing was kept"
        )
    } else if chain.contains("certificate") || chain.contains("UnknownIssuer") {
        let trusted = if cas.is_empty() {
            "no certs.d CA for it".to_string()
        } else {
            format!(
                "trusted in addition to the system's: {}",
                cas.iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "{registry}'s TLS certificate is not trusted for the feature {reference}{from} ({trusted}): put its CA in /etc/containers/certs.d/{registry}/ca.crt (rootless: ~/.config/containers/certs.d/{registry}/ca.crt)"
        )
    } else if matches!(&e, OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout())
    {
        let plain = if endpoint.insecure {
            " over plain HTTP (insecure = true)"
        } else {
            ""
        };
        format!(
            "{registry} cannot be reached{plain} for the feature {reference}{from}: check the network and the registry's address (or a mirror in registries.conf); a registry that speaks plain HTTP needs `insecure = true` in a registries.conf drop-in"
        )
    } else {
        format!("fetching the feature {reference} from {registry}{from} failed")
    };
    anyhow::anyhow!("{chain}").context(message)
}

/// The error and its sources in one line (reqwest hides the cause in its sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Fetches a Feature tarball (`https://.../devcontainer-feature-ID.tgz`) into `cache`;
/// its digest is the sha256 of the download.
pub(crate) async fn fetch_tarball(url: &str, cache: &Path, refresh: Refresh) -> Result<Fetched> {
    if refresh == Refresh::IfMissing
        && let Some(f) = cached(cache, url)
    {
        return Ok(f);
    }
    let bytes = download(url).await?;
    let f = store_tarball(url, &bytes, cache)?;
    remember(cache, &f)?;
    Ok(f)
}

/// Fetches a Feature tarball that a lockfile pins to `integrity` (`sha256:HEX` of the
/// download): the cache folder of that digest when it is there, else the download,
/// checked before anything is kept.
pub(crate) async fn fetch_tarball_pinned(
    url: &str,
    cache: &Path,
    integrity: &str,
) -> Result<Fetched> {
    let name = extract::folder_name(integrity)?;
    let dir = cache.join(&name);
    if dir.is_dir() {
        return Ok(Fetched {
            reference: url.to_string(),
            digest: integrity.to_string(),
            dir,
            manifest_digest: None,
            source: url.to_string(),
            cached: true,
        });
    }
    let bytes = download(url).await?;
    check_digest(&format!("the feature {url}"), integrity, &bytes)?;
    let f = store_tarball(url, &bytes, cache)?;
    remember(cache, &f)?;
    Ok(f)
}

/// Downloads a tarball over HTTPS, trusting the system's roots (rustls-platform-verifier:
/// on Linux the system bundle, or SSL_CERT_FILE / SSL_CERT_DIR instead when set).
async fn download(url: &str) -> Result<Vec<u8>> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("the feature {url:?} is not a URL"))?;
    if parsed.scheme() != "https" {
        bail!(
            "the feature {url} is fetched only over HTTPS (a tarball's integrity rests on TLS): use an https:// URL"
        );
    }
    install_crypto();
    let client = reqwest::Client::builder()
        .user_agent(concat!("devaipod/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .build()
        .context("setting up the HTTPS client")?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let response = client.get(parsed).send().await.map_err(|e| {
        let chain = error_chain(&e);
        let cause = if chain.contains("certificate") || chain.contains("UnknownIssuer") {
            format!(
                "{host}'s TLS certificate is not trusted: add its CA to the system's trust store (update-ca-certificates, update-ca-trust), or point SSL_CERT_FILE at a PEM bundle that has it (docs/registries.md)"
            )
        } else {
            format!("{host} cannot be reached: check the network and the URL")
        };
        anyhow::anyhow!("{chain}").context(format!("fetching the feature {url}: {cause}"))
    })?;
    let status = response.status();
    if !status.is_success() {
        let cause = match status.as_u16() {
            404 => "not found (HTTP 404): check the URL".to_string(),
            401 | 403 => format!(
                "refused (HTTP {}): devaipod sends no credentials for tarball URLs; publish the feature to a registry, or use a URL that needs none",
                status.as_u16()
            ),
            s => format!("HTTP {s}"),
        };
        bail!("fetching the feature {url}: {cause}");
    }
    if response.content_length().is_some_and(|n| n > MAX_SIZE) {
        bail!("the feature {url} is larger than devaipod's limit of {MAX_SIZE} bytes");
    }
    let mut bytes = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("downloading the feature {url}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_SIZE {
            bail!("the feature {url} is larger than devaipod's limit of {MAX_SIZE} bytes");
        }
    }
    Ok(bytes)
}

/// Unpacks a downloaded tarball into the cache under its own digest.
fn store_tarball(url: &str, bytes: &[u8], cache: &Path) -> Result<Fetched> {
    let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)));
    let name = extract::folder_name(&digest)?;
    let dir = extract::unpack_into_cache(bytes, cache, &name)
        .with_context(|| format!("unpacking the feature {url}"))?;
    Ok(Fetched {
        reference: url.to_string(),
        digest,
        dir,
        manifest_digest: None,
        source: url.to_string(),
        cached: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in [
            (
                "devcontainer-feature.json",
                &br#"{"id":"hello","version":"1.0.0"}"#[..],
            ),
            ("install.sh", b"#!/bin/sh\necho hello\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, body).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[tokio::test]
    async fn a_second_fetch_is_served_from_the_cache() {
        let cache = tempfile::tempdir().expect("tempdir");
        // Unroutable on purpose: a fetch that went to the network would fail.
        let url = "https://127.0.0.1:1/devcontainer-feature-hello.tgz";
        let tar = feature_tar();
        let first = store_tarball(url, &tar, cache.path()).expect("stored");
        remember(cache.path(), &first).expect("remembered");
        assert_eq!(
            first.digest,
            format!("sha256:{}", hex(&sha2::Sha256::digest(&tar)))
        );
        assert!(first.dir.join("install.sh").is_file());
        let again = fetch_tarball(url, cache.path(), Refresh::IfMissing)
            .await
            .expect("from the cache");
        assert!(again.cached);
        assert_eq!(again.digest, first.digest);
        assert_eq!(again.dir, first.dir);
        // Without the cache, the same call goes to the network (and fails there).
        let e = fetch_tarball(url, cache.path(), Refresh::Always)
            .await
            .expect_err("no server");
        assert!(format!("{e:#}").contains("cannot be reached"), "{e:#}");
        // A cache entry whose folder is gone is not used.
        std::fs::remove_dir_all(&first.dir).expect("rm");
        assert!(cached(cache.path(), url).is_none());
    }

    #[tokio::test]
    async fn plain_http_tarballs_and_short_names_are_refused() {
        let cache = tempfile::tempdir().expect("tempdir");
        let e = fetch_tarball(
            "http://example.invalid/f.tgz",
            cache.path(),
            Refresh::Always,
        )
        .await
        .expect_err("http");
        assert!(format!("{e:#}").contains("only over HTTPS"), "{e:#}");
        let e = fetch_feature(
            "devcontainers/features/node:1",
            cache.path(),
            Refresh::Always,
        )
        .await
        .expect_err("short");
        assert!(
            format!("{e:#}").contains("does not name a registry"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_named() {
        let cache = tempfile::tempdir().expect("tempdir");
        // Port 1 on loopback: nothing listens there.
        let e = fetch_feature("127.0.0.1:1/dvpt/x:1", cache.path(), Refresh::Always)
            .await
            .expect_err("nothing listens");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("127.0.0.1:1 cannot be reached for the feature 127.0.0.1:1/dvpt/x:1"),
            "{msg}"
        );
        assert!(
            std::fs::read_dir(cache.path())
                .expect("read")
                .next()
                .is_none()
        );
    }

    #[test]
    fn digests_are_checked() {
        let want = format!("sha256:{}", hex(&sha2::Sha256::digest(b"abc")));
        check_digest("f", &want, b"abc").expect("same");
        let e = check_digest("f", &want, b"abd").expect_err("differs");
        assert!(
            format!("{e:#}").contains("does not match its digest"),
            "{e:#}"
        );
    }
}
