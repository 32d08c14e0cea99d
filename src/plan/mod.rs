//! The pod plan: everything `up` will create, computed from the devcontainer config and
//! the command line without any I/O. `--dry-run` prints this value and the real `up`
//! applies the very same value (see [`crate::podman::apply`]).
//!
//! [`build`] composes one builder per concern: the image ([`image`]), the folders
//! ([`folders`]), the volumes ([`volumes`]), the secrets ([`secrets`]), the repo's
//! own settings and the consent they need ([`settings`], [`consent`], [`mounts`],
//! [`resources`], [`run_args`]), the three containers ([`workspace`], [`agent`],
//! [`gator`]), the pod ([`pod`], [`ports`]) and the lifecycle ([`lifecycle`]). The
//! output types are in [`spec`], the fixed in-container layout in [`paths`], the input
//! in [`input`].

pub(crate) mod agent;
pub(crate) mod consent;
mod context;
pub(crate) mod error;
pub(crate) mod folders;
pub(crate) mod gator;
pub(crate) mod image;
pub(crate) mod input;
pub(crate) mod labels;
pub(crate) mod lifecycle;
pub(crate) mod mounts;
pub(crate) mod network;
pub(crate) mod paths;
pub(crate) mod pod;
pub(crate) mod ports;
pub(crate) mod resources;
pub(crate) mod run_args;
pub(crate) mod secrets;
pub(crate) mod settings;
pub(crate) mod spec;
pub(crate) mod volumes;
pub(crate) mod workspace;

pub(crate) use context::Context;
pub(crate) use error::PlanError;
pub(crate) use image::{choose_image, valid_image};
pub(crate) use input::{GatorInput, PlanInput, RepoFacts, UserSecret, VolumeQuota};
pub(crate) use labels::Role;
pub(crate) use lifecycle::{Command, InitializePlan, LifecyclePlan, LifecycleStep};
pub(crate) use mounts::{engine_socket_path, parse_mount};
pub(crate) use paths::{
    AGENT_DISK_LIMIT, AGENT_MEMORY_LIMIT, AGENT_PIDS_LIMIT, AGENT_PORT, AGENT_REMOTE,
    AGENT_REPO_IN_WORKSPACE, AGENT_UID, AGENT_UPLOAD_PACK_GITCONFIG, BUNDLED_IMAGE,
    DEFAULT_READY_TIMEOUT_SECS, PASSWORD_FILE, SHIM_DIR, WORKSPACE_GITCONFIG, agent_upload_pack,
    agent_upload_pack_gitconfig, readiness_url, workspace_gitconfig,
};
pub(crate) use resources::cdi_gpu_in;
pub(crate) use secrets::password_secret_name;
pub(crate) use spec::{
    AgentConfigPlan, ContainerSpec, Extras, ImageState, MountKind, MountSpec, PodPlan, PodSpec,
    PortSpec, ReadinessPlan, RepoPlan, Seccomp, SecretSource, SharedMount,
};

use folders::Folders;
use gator::Gator;
use secrets::Secrets;
use settings::RepoSettings;
use volumes::Volumes;

/// Computes the plan. Pure: no engine, no filesystem.
pub(crate) fn build(input: &PlanInput) -> Result<PodPlan, PlanError> {
    let image = image::image_plan(input)?;
    labels::check_extra(&input.extra_labels)?;
    let ctx = Context::new(input);
    let folders = Folders::new(input)?;
    let volumes = Volumes::new(&ctx);
    let secrets = Secrets::new(&ctx);
    let settings = RepoSettings::new(input, &folders)?;
    let bundled = image::bundled_mounts(input, &image.reference);
    let workspace = workspace::Workspace {
        image: &image.reference,
        folders: &folders,
        volumes: &volumes,
        secrets: &secrets,
        settings: &settings,
        shared_mounts: bundled
            .iter()
            .cloned()
            .chain(network::workspace_shared_mount(input))
            .collect(),
    }
    .container(&ctx)?;
    let network = network::Network::new(&ctx);
    let agent = agent::container(
        &ctx,
        &image.reference,
        &folders,
        &volumes,
        &secrets,
        bundled.clone(),
        &network.agent,
    );
    let gator = Gator::new(&ctx, &secrets, volumes.gator_mounts(&folders))?;

    let mut warnings = input.config_warnings.clone();
    warnings.extend(gator.iter().flat_map(|g| g.warnings.iter().cloned()));
    warnings.extend(settings.warnings(input));
    warnings.extend(folders.warnings.iter().cloned());
    warnings.extend(network::helpers_warning(input));
    if workspace::can_remount(&workspace)
        && (!bundled.is_empty() || network::workspace_shared_mount(input).is_some())
    {
        warnings.push("the workspace is privileged or has SYS_ADMIN, so it could change what every pod's agent runs: it gets neither the bundled opencode (`oc` needs the image's own) nor devaipod-net's SSH helpers (sftp, scp and forwarding through `devaipod ssh-config`)".to_string());
    }
    warnings.extend(settings.run_args.warnings.iter().cloned());
    let ports = ports::pod_ports(input, &settings.run_args, &mut warnings)?;
    warnings.extend(uncommitted_warning(input));
    warnings.extend(volumes::disk_limit_warning(input));
    warnings.extend(features_warning(input));
    let (gator_container, gator_plan) = gator.map(|g| (g.container, g.plan)).unzip();
    let mut pod = pod::pod_spec(
        &ctx,
        &folders,
        &settings.run_args,
        ports,
        std::iter::once(secrets.label())
            .chain(network.created_secrets().map(str::to_string))
            .collect::<Vec<_>>()
            .join(","),
    );
    // The pod says where the SSH helpers are only when its workspace has them.
    if !workspace
        .shared_mounts
        .iter()
        .any(|m| m.target == network::NET_MOUNT)
    {
        pod.labels.remove(labels::HELPER);
    }

    Ok(PodPlan {
        name: input.name.clone(),
        image,
        pod,
        volumes: volumes
            .specs(&ctx)
            .into_iter()
            .chain(network.volumes)
            .collect(),
        secrets: secrets
            .specs(&ctx)
            .into_iter()
            .chain(network.secrets)
            .collect(),
        containers: [Some(workspace), Some(agent), gator_container]
            .into_iter()
            .flatten()
            .chain(network.containers)
            .collect(),
        repo: repo_plan(input, &folders, &volumes),
        readiness: ReadinessPlan {
            url: readiness_url(),
            timeout_secs: input.ready_timeout_secs,
        },
        initialize: InitializePlan::new(input),
        agent_config: AgentConfigPlan::new(&ctx)?,
        gator: gator_plan,
        lifecycle: LifecyclePlan::new(input),
        trust: consent::trust_plan(
            input,
            settings.host_env,
            settings.mounts.binds,
            settings.widening,
        ),
        network: network.plan,
        warnings,
    })
}

/// How the repo gets into the workspace's and the agent's volumes.
fn repo_plan(input: &PlanInput, folders: &Folders, volumes: &Volumes) -> RepoPlan {
    RepoPlan {
        host_path: input.repo.root.clone(),
        head: input.repo.head.clone(),
        branch: input.repo.branch.clone(),
        uncommitted: input.repo.uncommitted,
        volume: volumes.workspace.clone(),
        agent_volume: volumes.agent_repo.clone(),
        agent_branch: format!("devaipod/{}", input.name),
        workspace_folder: folders.clone_root.clone(),
        workdir: folders.workdir.clone(),
        owner: input.owner(),
    }
}

/// Uncommitted changes stay on the host: the clone is of HEAD.
/// What `up` does with the config's features, before it has made their image.
fn features_warning(input: &PlanInput) -> Option<String> {
    let features = input
        .devcontainer
        .features
        .as_ref()
        .filter(|f| !f.is_empty())?;
    if input.features_image.is_some() || input.image_override.is_some() {
        return None;
    }
    let name = |k: &String| {
        crate::devcontainer::properties::printable_id(k)
            .unwrap_or("(unprintable id)")
            .to_string()
    };
    Some(format!(
        "features {} are installed by `up` into a derived image (OCI and tarball ones fetched first): each install.sh runs as root in Podman's build, never in the agent",
        features.keys().map(name).collect::<Vec<_>>().join(", ")
    ))
}

fn uncommitted_warning(input: &PlanInput) -> Option<String> {
    let repo = &input.repo;
    (repo.uncommitted > 0).then(|| {
        format!(
            "{} has {} uncommitted change(s); the workspace gets HEAD ({}) without them",
            repo.root.display(),
            repo.uncommitted,
            repo.head.get(..12).unwrap_or(&repo.head)
        )
    })
}

#[cfg(test)]
mod tests;

/// Plan inputs for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::input;
}
