//! The devcontainer lifecycle: `initializeCommand` on the host (only once approved) and
//! the workspace's own commands (onCreate ... postStart, postAttach), which run as the
//! remoteUser in the workspace, never in the agent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::input::PlanInput;
use super::spec::keys_only;

/// One lifecycle command, as devcontainer.json writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Command {
    /// A string: run by `/bin/sh -c`.
    Shell(String),
    /// An array: run directly, no shell.
    Exec(Vec<String>),
    /// An object: its commands run in parallel; all must succeed.
    Parallel(BTreeMap<String, Command>),
}

impl Command {
    /// Reads a lifecycle property's value; `None` for an empty or unusable one.
    pub(crate) fn from_value(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(Self::Shell(s.clone())),
            serde_json::Value::Array(a) if !a.is_empty() => {
                let argv: Option<Vec<String>> =
                    a.iter().map(|x| x.as_str().map(str::to_string)).collect();
                argv.map(Self::Exec)
            }
            serde_json::Value::Object(o) if !o.is_empty() => Some(Self::Parallel(
                o.iter()
                    .filter_map(|(k, v)| match Self::from_value(v)? {
                        Self::Parallel(_) => None,
                        c => Some((k.clone(), c)),
                    })
                    .collect(),
            )),
            _ => None,
        }
    }

    /// The argv that runs it (not for `Parallel`).
    pub(crate) fn argv(&self) -> Vec<String> {
        match self {
            Self::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Self::Exec(a) => a.clone(),
            Self::Parallel(_) => Vec::new(),
        }
    }
}

/// A lifecycle step: which property (of which feature, or of devcontainer.json), and its
/// command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct LifecycleStep {
    pub property: String,
    pub command: Command,
    /// The feature it comes from (its id as the config names it); none for the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

impl LifecycleStep {
    /// How progress and errors name it: `postCreateCommand`, or
    /// `feature "./a" postCreateCommand`.
    pub(crate) fn name(&self) -> String {
        match &self.feature {
            Some(id) => format!("feature {id:?} {}", self.property),
            None => self.property.clone(),
        }
    }
}

/// The commands of one lifecycle property, as the reference CLI runs them: each
/// feature's (in install order), then the config's.
pub(crate) fn steps_of(input: &PlanInput, property: &str) -> Vec<LifecycleStep> {
    let features = input.feature_settings.iter().filter_map(|f| {
        let command = f.lifecycle.get(property).and_then(Command::from_value)?;
        Some(LifecycleStep {
            property: property.into(),
            command,
            feature: Some(f.id.clone()),
        })
    });
    let dc = &input.devcontainer;
    let own = match property {
        "onCreateCommand" => &dc.on_create_command,
        "updateContentCommand" => &dc.update_content_command,
        "postCreateCommand" => &dc.post_create_command,
        "postStartCommand" => &dc.post_start_command,
        "postAttachCommand" => &dc.post_attach_command,
        _ => &None,
    };
    let own = own
        .as_ref()
        .and_then(Command::from_value)
        .map(|command| LifecycleStep {
            property: property.into(),
            command,
            feature: None,
        });
    features.chain(own).collect()
}

/// The workspace's lifecycle commands: run as the remoteUser in the workspace folder,
/// never in the agent or on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct LifecyclePlan {
    /// remoteEnv: the environment of these commands (names shown only, like all env;
    /// `${containerEnv:VAR}` resolved when they run).
    #[serde(rename = "env_names", serialize_with = "keys_only")]
    pub env: BTreeMap<String, String>,
    /// Once, after the pod is created: onCreate, updateContent, postCreate, postStart.
    pub create: Vec<LifecycleStep>,
    /// At every later `start`: postStart.
    pub start: Vec<LifecycleStep>,
}

impl LifecyclePlan {
    /// The lifecycle properties of the features and the configuration, in the spec's
    /// order.
    pub(crate) fn new(input: &PlanInput) -> Self {
        let start = steps_of(input, "postStartCommand");
        LifecyclePlan {
            env: input.devcontainer.remote_env.clone().unwrap_or_default(),
            create: [
                "onCreateCommand",
                "updateContentCommand",
                "postCreateCommand",
            ]
            .into_iter()
            .flat_map(|p| steps_of(input, p))
            .chain(start.clone())
            .collect(),
            start,
        }
    }
}

/// `initializeCommand`: run on the host before anything is made, only once the user
/// approved this exact command for this repo (a prompt, `--trust`, or an approval
/// remembered under `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct InitializePlan {
    pub command: Command,
    /// The host folder it runs in (the folder `up` was pointed at).
    pub dir: PathBuf,
    /// The devcontainer.json it comes from.
    pub config: String,
    /// sha256 of the repo path and the command: a changed command asks again.
    pub key: String,
    /// Approved before (remembered), or by the consent of `--trust`/`[repos] trust`.
    pub approved: bool,
}

impl InitializePlan {
    /// The approval key of `command` in `repo`.
    pub(crate) fn key_for(repo: &std::path::Path, command: &Command) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(repo.display().to_string().as_bytes());
        h.update(b"\0");
        h.update(
            serde_json::to_string(command)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The configuration's `initializeCommand`, approved by consent or a remembered key.
    pub(crate) fn new(input: &PlanInput) -> Option<Self> {
        let command = input
            .devcontainer
            .initialize_command
            .as_ref()
            .and_then(Command::from_value)?;
        let key = Self::key_for(&input.repo.root, &command);
        Some(InitializePlan {
            approved: input.trusted() || input.approved.contains(&key),
            command,
            dir: input.repo.path.clone(),
            config: input.config_file(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn initialize_runs_only_once_approved_for_this_exact_command() {
        let mut i = input();
        assert_eq!(InitializePlan::new(&i), None);
        i.devcontainer.initialize_command = Some(json!("make prep"));
        let p = InitializePlan::new(&i).expect("plan");
        assert!(!p.approved);
        assert_eq!(p.command, Command::Shell("make prep".into()));
        i.approved = vec![p.key.clone()];
        assert!(
            InitializePlan::new(&i).expect("plan").approved,
            "remembered"
        );
        i.devcontainer.initialize_command = Some(json!("make other"));
        assert!(
            !InitializePlan::new(&i).expect("plan").approved,
            "changed command"
        );
        i.trust = Some("--trust".into());
        assert!(InitializePlan::new(&i).expect("plan").approved, "consent");
    }

    #[test]
    fn post_start_runs_at_create_and_at_every_start() {
        let mut i = crate::plan::tests_support::input();
        i.devcontainer = crate::devcontainer::DevContainer {
            update_content_command: Some(json!("u")),
            post_start_command: Some(json!(["s"])),
            remote_env: Some([("A".to_string(), "1".to_string())].into()),
            ..Default::default()
        };
        let p = LifecyclePlan::new(&i);
        let props = |steps: &[LifecycleStep]| -> Vec<String> {
            steps.iter().map(|s| s.property.clone()).collect()
        };
        assert_eq!(
            props(&p.create),
            ["updateContentCommand", "postStartCommand"]
        );
        assert_eq!(props(&p.start), ["postStartCommand"]);
        assert_eq!(p.env.len(), 1);
    }

    #[test]
    fn features_commands_run_before_the_configs_in_install_order() {
        let mut i = crate::plan::tests_support::input();
        i.devcontainer.post_create_command = Some(json!("own"));
        i.devcontainer.post_start_command = Some(json!("own-start"));
        let feature =
            |id: &str, props: &[(&str, serde_json::Value)]| crate::plan::input::FeatureSettings {
                id: id.into(),
                lifecycle: props
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..Default::default()
            };
        i.feature_settings = vec![
            feature(
                "./a",
                &[
                    ("postCreateCommand", json!("a-create")),
                    ("onCreateCommand", json!(["a-on"])),
                ],
            ),
            feature("./b", &[("postStartCommand", json!({"x": "b-start"}))]),
            feature("./c", &[("postCreateCommand", json!(""))]),
        ];
        let p = LifecyclePlan::new(&i);
        let names: Vec<String> = p.create.iter().map(LifecycleStep::name).collect();
        assert_eq!(
            names,
            [
                "feature \"./a\" onCreateCommand",
                "feature \"./a\" postCreateCommand",
                "postCreateCommand",
                "feature \"./b\" postStartCommand",
                "postStartCommand",
            ]
        );
        assert_eq!(p.start.len(), 2);
        assert_eq!(p.start[0].feature.as_deref(), Some("./b"));
        let attach = steps_of(&i, "postAttachCommand");
        assert!(attach.is_empty());
    }
}
