//! Publishing test Features to registry A (tests/registry/registry.sh) as the Features
//! distribution spec lays them out: an OCI manifest whose config is
//! `application/vnd.devcontainers` and whose one layer is the Feature folder's tar,
//! `application/vnd.devcontainers.layer.v1+tar`. Podman 4.3 cannot push artifacts, so
//! this pushes with the same OCI client crate devaipod fetches with.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest as _;

/// A Feature's layer media type.
pub const LAYER: &str = "application/vnd.devcontainers.layer.v1+tar";
/// A Feature's config media type.
pub const CONFIG: &str = "application/vnd.devcontainers";

/// What a push made.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `sha256:HEX` of the layer (the tar).
    pub layer_digest: String,
    /// `sha256:HEX` of the manifest, as the registry reports it.
    pub manifest_digest: String,
}

/// The tar of a Feature folder (`./NAME` entries, as the reference CLI packs them;
/// `install.sh` executable).
pub fn feature_tar(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(if name.ends_with(".sh") { 0o755 } else { 0o644 });
        h.set_cksum();
        b.append_data(&mut h, format!("./{name}"), body.as_bytes())
            .expect("tar entry");
    }
    b.into_inner().expect("tar")
}

/// The sha256 digest of `bytes`, `sha256:HEX`.
pub fn sha256(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Pushes `tar` as `127.0.0.1:5701/REPOSITORY:TAG` (plain HTTP, no credentials) with the
/// layer media type `layer_type` ([`LAYER`] for a Feature).
#[track_caller]
pub fn push_to_a(repository: &str, tag: &str, tar: &[u8], layer_type: &str) -> Pushed {
    assert!(
        repository.starts_with("dvpt/"),
        "{repository}: test pushes stay under dvpt/ (tests/cleanup.sh cleans it)"
    );
    let registry = format!("127.0.0.1:{}", super::registry::PORT_A);
    let reference = Reference::with_tag(registry.clone(), repository.into(), tag.into());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let layer = ImageLayer::new(tar.to_vec(), layer_type.to_string(), None);
    let config = Config::new(b"{}".to_vec(), CONFIG.to_string(), None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let manifest_digest = runtime.block_on(async {
        client
            .push(&reference, &[layer], config, &RegistryAuth::Anonymous, None)
            .await
            .unwrap_or_else(|e| panic!("pushing {reference} to registry A: {e}"));
        client
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await
            .unwrap_or_else(|e| panic!("the digest of {reference} on registry A: {e}"))
    });
    Pushed {
        layer_digest: sha256(tar),
        manifest_digest,
    }
}
