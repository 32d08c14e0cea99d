//! The image: which reference `up` runs (`--image`, a Dockerfile build, or the
//! configuration's `image`), that it is safe to hand to Podman, and the bundled opencode
//! image mounted for images without their own.

use super::error::PlanError;
use super::input::PlanInput;
use super::paths::{BUNDLED_IMAGE, BUNDLED_MOUNT};
use super::spec::{ImagePlan, SharedMount};

/// An image reference as Podman takes it: no leading `-`, no spaces or odd characters.
pub(crate) fn valid_image(reference: &str) -> bool {
    reference.len() <= 512
        && reference
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '-'))
}

/// The image reference `up` will use, and where it came from.
pub(crate) fn choose_image(input: &PlanInput) -> Result<(String, String), PlanError> {
    if let Some(img) = &input.image_override {
        return Ok((img.clone(), "--image".into()));
    }
    if let Some(img) = &input.features_image {
        return Ok((img.clone(), input.config_file()));
    }
    let dc = &input.devcontainer;
    if dc.docker_compose_file.is_some() {
        return Err(PlanError::Compose {
            path: input.config_file(),
        });
    }
    if let Some(b) = &input.build {
        return Ok((b.tag.clone(), input.config_file()));
    }
    match (&dc.image, &input.devcontainer_path) {
        (Some(img), Some(p)) => Ok((img.clone(), p.display().to_string())),
        // A repo without any devcontainer.json runs in the bundled image.
        (_, None) => Ok((BUNDLED_IMAGE.into(), NO_CONFIG.into())),
        _ => Err(PlanError::NoImage),
    }
}

/// The image's source when the repo has no devcontainer.json (the bundled image).
pub(crate) const NO_CONFIG: &str = "the bundled image (the repo has no devcontainer.json)";

/// The chosen, validated image; its build only when it is not `--image`'s.
pub(crate) fn image_plan(input: &PlanInput) -> Result<ImagePlan, PlanError> {
    let (reference, source) = choose_image(input)?;
    if !valid_image(&reference) {
        return Err(PlanError::BadImage { origin: source });
    }
    Ok(ImagePlan {
        reference,
        source,
        state: input.image_state.clone(),
        build: if input.image_override.is_none() {
            input.build.clone()
        } else {
            None
        },
    })
}

/// The bundled opencode, read-only, for images without their own (the image's own
/// comes first on PATH). Not when the image is the bundled one.
/// Its /usr/local/bin (opencode alone) is copied into `devaipod-bundled-ID` and seen at
/// `BUNDLED_MOUNT/usr/local/bin`.
pub(crate) fn bundled_mounts(input: &PlanInput, image: &str) -> Vec<SharedMount> {
    match &input.bundled_id {
        Some(id) if image != BUNDLED_IMAGE => {
            let id = id.strip_prefix("sha256:").unwrap_or(id);
            vec![SharedMount {
                volume: format!("devaipod-bundled-{}", &id[..id.len().min(12)]),
                image: BUNDLED_IMAGE.into(),
                path: BUNDLED_BIN.into(),
                file: "opencode".into(),
                target: format!("{BUNDLED_MOUNT}{BUNDLED_BIN}"),
            }]
        }
        _ => Vec::new(),
    }
}

/// The bundled image's folder that holds opencode.
const BUNDLED_BIN: &str = "/usr/local/bin";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn the_image_comes_from_the_override_then_the_build_then_the_config() {
        let mut i = input();
        let p = image_plan(&i).expect("config");
        assert_eq!(p.reference, "localhost/devaipod-base:latest");
        assert!(p.source.ends_with("devcontainer.json"), "{}", p.source);
        i.devcontainer.docker_compose_file = Some(serde_json::json!("c.yml"));
        assert!(matches!(choose_image(&i), Err(PlanError::Compose { .. })));
        i.image_override = Some("localhost/x:1".into());
        let p = image_plan(&i).expect("override");
        assert_eq!(
            (p.reference.as_str(), p.source.as_str()),
            ("localhost/x:1", "--image")
        );
        assert_eq!(p.build, None, "--image never builds");
        let mut i = input();
        i.devcontainer.image = None;
        assert_eq!(
            choose_image(&i),
            Err(PlanError::NoImage),
            "a config without an image"
        );
        i.devcontainer_path = None;
        assert_eq!(
            choose_image(&i),
            Ok((BUNDLED_IMAGE.to_string(), NO_CONFIG.to_string())),
            "no config at all: the bundled image"
        );
    }

    #[test]
    fn the_bundled_image_is_mounted_only_into_other_images_when_present() {
        let mut i = input();
        let m = bundled_mounts(&i, "localhost/other:1");
        assert_eq!(
            m.iter()
                .map(|m| (
                    m.volume.as_str(),
                    m.image.as_str(),
                    m.path.as_str(),
                    m.target.as_str()
                ))
                .collect::<Vec<_>>(),
            [(
                "devaipod-bundled-0123456789ab",
                BUNDLED_IMAGE,
                "/usr/local/bin",
                "/opt/devaipod/bundled/usr/local/bin"
            )]
        );
        assert!(bundled_mounts(&i, BUNDLED_IMAGE).is_empty());
        i.bundled_id = None;
        assert!(bundled_mounts(&i, "localhost/other:1").is_empty());
    }
}
