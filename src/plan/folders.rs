//! Where the repo is in the containers: the workspace folder, the root of the clone
//! (`workspaceMount`'s target; devaipod never bind-mounts the host folder) and the
//! folder the containers start in. None may be a system or devaipod path.

use super::error::PlanError;
use super::input::PlanInput;
use super::mounts::parse_mount;
use super::paths::reserved_folder;
use super::spec::MountKind;

/// The folders of one workspace, the same in the workspace and the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Folders {
    /// `workspaceFolder`, else `/workspaces/FOLDER_NAME`.
    pub workspace_folder: String,
    /// Where the clone volume is mounted: the workspace folder or a parent of it.
    pub clone_root: String,
    /// Where the containers start: the workspace folder plus the subfolder `up` was
    /// pointed at.
    pub workdir: String,
    /// What `workspaceMount` asked for and does not get.
    pub warnings: Vec<String>,
}

impl Folders {
    /// Reads `workspaceFolder` and `workspaceMount`; refuses relative and reserved
    /// folders and a workspace folder outside the mount.
    pub(crate) fn new(input: &PlanInput) -> Result<Self, PlanError> {
        let workspace_folder = workspace_folder(input)?;
        let mut warnings = Vec::new();
        let clone_root = clone_root(input, &workspace_folder, &mut warnings)?;
        for folder in [&clone_root, &workspace_folder] {
            if reserved_folder(folder) {
                return Err(PlanError::ReservedWorkspaceFolder {
                    path: input.config_file(),
                    folder: folder.clone(),
                });
            }
        }
        let workdir = if input.repo.subdir.as_os_str().is_empty() {
            workspace_folder.clone()
        } else {
            format!(
                "{}/{}",
                workspace_folder.trim_end_matches('/'),
                input.repo.subdir.display()
            )
        };
        Ok(Folders {
            workspace_folder,
            clone_root,
            workdir,
            warnings,
        })
    }
}

fn workspace_folder(input: &PlanInput) -> Result<String, PlanError> {
    let folder = match &input.devcontainer.workspace_folder {
        Some(f) if f.starts_with('/') => f.trim_end_matches('/').to_string(),
        Some(_) => {
            return Err(PlanError::RelativeWorkspaceFolder {
                path: input.config_file(),
            });
        }
        None => format!("/workspaces/{}", input.repo.folder_name),
    };
    Ok(if folder.is_empty() {
        "/".to_string()
    } else {
        folder
    })
}

/// workspaceMount: the clone volume goes at its target, and workspaceFolder must be
/// that folder or inside it.
fn clone_root(
    input: &PlanInput,
    workspace_folder: &str,
    warnings: &mut Vec<String>,
) -> Result<String, PlanError> {
    let dc = &input.devcontainer;
    let Some(text) = &dc.workspace_mount else {
        return Ok(workspace_folder.to_string());
    };
    let m = parse_mount(&serde_json::Value::String(text.clone())).map_err(|reason| {
        input.bad_property("workspaceMount", format!("workspaceMount: {reason}"))
    })?;
    let target = m.target.trim_end_matches('/').to_string();
    if dc.workspace_folder.is_none() {
        return Err(input.bad_property(
            "workspaceMount",
            "workspaceMount needs workspaceFolder too (the spec requires both)".into(),
        ));
    }
    if !(workspace_folder == target || workspace_folder.starts_with(&format!("{target}/"))) {
        return Err(input.bad_property(
            "workspaceFolder",
            format!(
                "workspaceFolder {workspace_folder} is not inside workspaceMount's target {target}"
            ),
        ));
    }
    if m.kind == MountKind::Bind {
        warnings.push(format!(
            "workspaceMount: {} is not bind-mounted; the repo is cloned into a volume at {target}",
            m.source
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn folders_follow_workspace_folder_mount_and_subdir() {
        for (folder, mount, subdir, want) in [
            (
                None,
                None,
                "",
                Ok(("/workspaces/proj", "/workspaces/proj", "/workspaces/proj")),
            ),
            (Some("/src/"), None, "a/b", Ok(("/src", "/src", "/src/a/b"))),
            (
                Some("/w/sub"),
                Some("type=volume,source=v,target=/w"),
                "",
                Ok(("/w/sub", "/w", "/w/sub")),
            ),
            (
                Some("/w"),
                Some("type=bind,source=/h,target=/w/"),
                "",
                Ok(("/w", "/w", "/w")),
            ),
            (
                Some("/x"),
                Some("type=volume,source=v,target=/w"),
                "",
                Err("not inside"),
            ),
            (
                None,
                Some("type=volume,source=v,target=/w"),
                "",
                Err("needs workspaceFolder"),
            ),
            (
                Some("/w"),
                Some("type=volume,target=rel"),
                "",
                Err("absolute target"),
            ),
            (Some("rel"), None, "", Err("must be an absolute path")),
            (Some("/etc/x"), None, "", Err("system or devaipod path")),
            (Some("/"), None, "", Err("system or devaipod path")),
        ] {
            let mut i = input();
            i.devcontainer.workspace_folder = folder.map(str::to_string);
            i.devcontainer.workspace_mount = mount.map(str::to_string);
            i.repo.subdir = PathBuf::from(subdir);
            match (Folders::new(&i), want) {
                (Ok(f), Ok((ws, root, workdir))) => {
                    assert_eq!(
                        (
                            f.workspace_folder.as_str(),
                            f.clone_root.as_str(),
                            f.workdir.as_str()
                        ),
                        (ws, root, workdir),
                        "{folder:?} {mount:?}"
                    );
                }
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{folder:?} {mount:?}: {e}");
                }
                (got, want) => panic!("{folder:?} {mount:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_bind_workspace_mount_warns_that_it_is_a_volume() {
        let mut i = input();
        i.devcontainer.workspace_folder = Some("/w".into());
        i.devcontainer.workspace_mount = Some("type=bind,source=/h,target=/w".into());
        let f = Folders::new(&i).expect("folders");
        assert_eq!(f.warnings.len(), 1);
        assert!(
            f.warnings[0].contains("/h is not bind-mounted"),
            "{:?}",
            f.warnings
        );
    }
}
