//! The image: which reference `up` runs (`--image`, a Dockerfile build, or the
//! configuration's `image`), that it is safe to hand to Podman, and the bundled opencode
//! image mounted for images without their own.

use super::error::PlanError;
use super::input::PlanInput;
use super::paths::{BUNDLED_IMAGE, BUNDLED_MOUNT};
use super::spec::ImagePlan;

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
        _ => Err(PlanError::NoImage),
    }
}

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
pub(crate) fn bundled_mounts(input: &PlanInput, image: &str) -> Vec<(String, String)> {
    if input.bundled_present && image != BUNDLED_IMAGE {
        vec![(BUNDLED_IMAGE.to_string(), BUNDLED_MOUNT.to_string())]
    } else {
        Vec::new()
    }
}

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
        i.devcontainer_path = None;
        assert_eq!(choose_image(&i), Err(PlanError::NoImage));
    }

    #[test]
    fn the_bundled_image_is_mounted_only_into_other_images_when_present() {
        let mut i = input();
        assert_eq!(
            bundled_mounts(&i, "localhost/other:1"),
            [(BUNDLED_IMAGE.to_string(), BUNDLED_MOUNT.to_string())]
        );
        assert!(bundled_mounts(&i, BUNDLED_IMAGE).is_empty());
        i.bundled_present = false;
        assert!(bundled_mounts(&i, "localhost/other:1").is_empty());
    }
}
