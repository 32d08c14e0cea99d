//! The pod: its name and hostname, the only namespace its containers share (the
//! network), its published ports, and the labels later commands read (the base commit,
//! the folders, the remoteUser, postAttachCommand, remoteEnv, the secrets to delete,
//! where the workspace's SSH helpers are).

use std::collections::BTreeMap;

use super::Context;
use super::folders::Folders;
use super::labels::{self, Role};
use super::run_args::RunArgs;
use super::spec::{PodSpec, PortSpec};

/// The pod's spec; `secrets` is the list of the secrets `up` creates.
pub(crate) fn pod_spec(
    ctx: &Context<'_>,
    folders: &Folders,
    ra: &RunArgs,
    ports: Vec<PortSpec>,
    secrets: String,
) -> PodSpec {
    PodSpec {
        name: ctx.pod_name.clone(),
        hostname: ctx.input.name.to_string(),
        dns: ra.dns.clone(),
        add_hosts: ra.add_hosts.clone(),
        ports,
        share: vec!["net".into()],
        labels: pod_labels(ctx, folders, secrets),
    }
}

fn pod_labels(ctx: &Context<'_>, folders: &Folders, secrets: String) -> BTreeMap<String, String> {
    let input = ctx.input;
    let dc = &input.devcontainer;
    let mut l = ctx.labels(Role::Pod);
    l.insert(labels::BASE.into(), input.repo.head.clone());
    if let Some(b) = &input.repo.branch {
        l.insert(labels::BASE_BRANCH.into(), b.clone());
    }
    l.insert(labels::WORKDIR.into(), folders.workdir.clone());
    l.insert(labels::CLONE.into(), folders.clone_root.clone());
    if let Some(u) = input.owner() {
        l.insert(labels::REMOTE_USER.into(), u);
    }
    let attach = super::lifecycle::steps_of(input, "postAttachCommand");
    if !attach.is_empty() {
        l.insert(
            labels::POST_ATTACH.into(),
            serde_json::to_string(&attach).unwrap_or_default(),
        );
    }
    if let Some(env) = dc.remote_env.as_ref().filter(|e| !e.is_empty()) {
        l.insert(
            labels::REMOTE_ENV.into(),
            serde_json::to_string(env).unwrap_or_default(),
        );
    }
    l.insert(labels::SECRETS.into(), secrets);
    if super::network::workspace_shared_mount(input).is_some() {
        l.insert(labels::HELPER.into(), super::network::mounted_exe());
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn the_pod_records_what_attach_and_delete_need() {
        let mut i = input();
        i.devcontainer.post_attach_command = Some(serde_json::json!("echo hi"));
        i.devcontainer.remote_env = Some([("A".to_string(), "1".to_string())].into());
        i.repo.branch = None;
        let ctx = Context::new(&i);
        let folders = Folders::new(&i).expect("folders");
        let ra = RunArgs {
            dns: vec!["10.0.0.1".into()],
            ..Default::default()
        };
        let pod = pod_spec(&ctx, &folders, &ra, vec![], "a,b".into());
        assert_eq!(
            (pod.name.as_str(), pod.hostname.as_str()),
            ("devaipod-demo", "demo")
        );
        assert_eq!(pod.share, ["net"]);
        assert_eq!(pod.dns, ["10.0.0.1"]);
        let l = &pod.labels;
        assert_eq!(
            l[labels::POST_ATTACH],
            r#"[{"property":"postAttachCommand","command":{"shell":"echo hi"}}]"#
        );
        assert_eq!(l[labels::REMOTE_ENV], r#"{"A":"1"}"#);
        assert_eq!(l[labels::SECRETS], "a,b");
        assert_eq!(l[labels::REMOTE_USER], "dev");
        assert!(!l.contains_key(labels::BASE_BRANCH));
    }
}
