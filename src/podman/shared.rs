//! The volumes every pod shares ([`SharedMount`]): a folder of one of devaipod's images
//! (devaipod-net, the bundled opencode) copied once into a volume named by the image's
//! content, which the workspace and the agent mount read-only.
//!
//! Not image mounts: Podman counts those per store, and a pod stopping while another
//! starts could unmount one under the starting container, whose gate then found a
//! root-only empty folder ("Permission denied"), on Podman 4.3 and 5.4 alike.
//!
//! The copy is Podman's own copy-up: a helper container of the image, with the empty
//! volume at the folder, is initialised (never started: nothing runs) and removed. A
//! volume that still needs its copy-up is what an interrupted copy left; it is made
//! again. The caller holds the per-user lock, so one `up` copies at a time.

use anyhow::{Context, Result, anyhow};

use super::spec::{NamedVolume, Namespace, SpecGenerator};
use super::{Engine, encode};
use crate::plan::SharedMount;
use crate::plan::labels::PREFIX;

/// What Podman says of a volume that matters here.
#[derive(Debug, serde::Deserialize)]
struct VolumeState {
    /// True until a container's image filled it (or was mounted without `nocopy`).
    #[serde(rename = "NeedsCopyUp", default)]
    needs_copy_up: bool,
}

impl Engine {
    /// Whether the volume exists and holds its copy: `None` when missing.
    async fn volume_filled(&self, name: &str) -> Result<Option<bool>> {
        match self
            .get_json::<VolumeState>(&format!("/libpod/volumes/{}/json", encode(name)))
            .await
        {
            Ok(v) => Ok(Some(!v.needs_copy_up)),
            Err(e) if super::client::is_not_found(&e) => Ok(None),
            Err(e) => Err(e.context(format!("inspecting volume {name}"))),
        }
    }
}

/// Makes each shared volume that is missing, or was left empty by an interrupted copy.
/// `on_copy` is told of each copy before it starts.
pub(crate) async fn ensure(
    engine: &Engine,
    mounts: &[&SharedMount],
    on_copy: &(dyn Fn(&SharedMount) + Sync),
) -> Result<()> {
    for m in mounts {
        match engine.volume_filled(&m.volume).await? {
            Some(true) => continue,
            Some(false) => {
                // Without force: a volume some container still has is not taken from it.
                engine
                    .delete_if_present(&format!("/libpod/volumes/{}", encode(&m.volume)), || {
                        format!(
                            "removing the volume {}, left empty by an interrupted copy (remove the pods that use it: `podman volume inspect {}` shows it)",
                            m.volume, m.volume
                        )
                    })
                    .await?;
            }
            None => {}
        }
        on_copy(m);
        if let Err(e) = copy(engine, m).await {
            let _ = engine.remove_container(&helper_name(m)).await;
            let _ = engine.remove_volume(&m.volume).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Removes what an interrupted [`ensure`] left: helpers, and volumes still empty.
pub(crate) async fn tidy(engine: &Engine, mounts: &[&SharedMount]) {
    for m in mounts {
        let _ = engine.remove_container(&helper_name(m)).await;
        if let Ok(Some(false)) = engine.volume_filled(&m.volume).await {
            let _ = engine
                .delete_if_present(
                    &format!("/libpod/volumes/{}", encode(&m.volume)),
                    String::new,
                )
                .await;
        }
    }
}

/// The helper container's name.
fn helper_name(m: &SharedMount) -> String {
    format!("{}-copy", m.volume)
}

/// The volume's labels: what it holds, from which image.
fn labels(m: &SharedMount) -> std::collections::BTreeMap<String, String> {
    [
        (format!("{PREFIX}shared"), m.image.clone()),
        (format!("{PREFIX}shared-path"), m.path.clone()),
    ]
    .into()
}

/// The helper: the image, the volume at the folder, no network, never started.
fn helper_spec(m: &SharedMount) -> SpecGenerator {
    SpecGenerator {
        name: helper_name(m),
        image: m.image.clone(),
        command: vec![format!("{}/{}", m.path.trim_end_matches('/'), m.file)],
        work_dir: "/".into(),
        labels: labels(m),
        cap_drop: vec!["ALL".into()],
        no_new_privileges: true,
        volumes: vec![NamedVolume {
            name: m.volume.clone(),
            dest: m.path.clone(),
            options: vec![],
        }],
        netns: Some(Namespace {
            nsmode: "none".into(),
        }),
        ..SpecGenerator::default()
    }
}

/// Creates the volume and has Podman copy the folder into it.
async fn copy(engine: &Engine, m: &SharedMount) -> Result<()> {
    let helper = helper_name(m);
    // What a killed `up` left.
    engine.remove_container(&helper).await?;
    engine
        .create_volume(&m.volume, &labels(m))
        .await
        .with_context(|| format!("creating the volume {}", m.volume))?;
    engine
        .create_container(&helper_spec(m))
        .await
        .with_context(|| format!("creating {helper} to copy {}:{}", m.image, m.path))?;
    engine
        .post(&format!("/libpod/containers/{}/init", encode(&helper)), &())
        .await
        .with_context(|| {
            format!(
                "copying {}:{} into the volume {}",
                m.image, m.path, m.volume
            )
        })?;
    engine.remove_container(&helper).await?;
    match engine.volume_filled(&m.volume).await? {
        Some(true) => Ok(()),
        _ => Err(anyhow!(
            "copying {}:{} into the volume {} left it empty",
            m.image,
            m.path,
            m.volume
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_copies_without_running_or_networking() {
        let m = SharedMount {
            volume: "devaipod-net-0123".into(),
            image: "localhost/devaipod-net:0123".into(),
            path: "/opt/devaipod-net".into(),
            file: "devaipod-net".into(),
            target: "/opt/devaipod-net".into(),
        };
        let v = serde_json::to_value(helper_spec(&m)).expect("json");
        assert_eq!(v["name"], "devaipod-net-0123-copy");
        assert_eq!(
            v["command"],
            serde_json::json!(["/opt/devaipod-net/devaipod-net"])
        );
        assert_eq!(v["netns"]["nsmode"], "none");
        assert_eq!(
            v["volumes"],
            serde_json::json!([{"Name": "devaipod-net-0123", "Dest": "/opt/devaipod-net", "Options": []}])
        );
        assert_eq!(
            v["labels"]["io.devaipod.shared"],
            "localhost/devaipod-net:0123"
        );
    }
}
