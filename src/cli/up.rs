//! `devaipod up [PATH]`: read the repo's devcontainer.json, plan the pod, and (unless
//! `--dry-run`) create it and wait until the agent answers.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::podman::images::PullPolicy;
use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::Context;
use crate::devcontainer::lockfile;
use crate::inputs;
use crate::plan::input::{AllowName, NetworkMode};
use crate::plan::{self, ImageState, PodPlan};
use crate::podman::{Engine, apply};
use crate::progress::Progress;
use crate::terminal::line;

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// The repo (or a folder inside it) to work on
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// A task for the agent, handed over once it is ready (PATH is then required)
    #[arg(value_name = "TASK", conflicts_with = "task_file")]
    pub task: Option<String>,
    /// Read the task from FILE
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,
    /// Workspace NAME (pod devaipod-NAME); default: the folder name plus a short suffix
    #[arg(long)]
    pub name: Option<String>,
    /// Image for the workspace and agent, instead of devcontainer.json's "image"
    #[arg(long)]
    pub image: Option<String>,
    /// The devcontainer.json to use (default: .devcontainer/devcontainer.json or
    /// .devcontainer.json, in PATH or the folders above it up to the repo's top)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the plan and create nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Extra label KEY=VALUE on every object created (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Consent for the repo's settings that widen the workspace's access (host environment
    /// values, host binds, privileged/capAdd/securityOpt and such runArgs) and approval of
    /// its initializeCommand; --dry-run lists what it lets through
    #[arg(long)]
    pub trust: bool,
    /// Run service-gator with this scope: github:OWNER/REPO[:PERMS], gitlab:GROUP/PROJECT[:PERMS],
    /// jira:KEY[:PERMS] (repeatable; added to [service-gator] scopes)
    #[arg(long = "service-gator", value_name = "SCOPE")]
    pub service_gator: Vec<String>,
    /// The service-gator image (default: [service-gator] image, else the upstream image)
    #[arg(long, value_name = "IMAGE")]
    pub service_gator_image: Option<String>,
    /// Confirm write access on wildcard service-gator scopes (OWNER/*)
    #[arg(long)]
    pub service_gator_allow_wildcard_write: bool,
    /// Build the image of a Dockerfile configuration again, without the layer cache,
    /// even if an image for the same inputs exists
    #[arg(long)]
    pub rebuild: bool,
    /// The agent's network for this pod, over [agent] network: allowlist (the names
    /// allowed, through the proxy), none (only the credential routes) or full (any
    /// address; warned)
    #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(NetworkMode))]
    pub(crate) network: Option<NetworkMode>,
    /// Let the agent reach NAME (ports 443 and 80), NAME:PORT or *.NAME for this pod,
    /// besides [agent] allow (repeatable; allowlist mode only; never an IP address)
    #[arg(long = "allow", value_name = "NAME", value_parser = clap::value_parser!(AllowName))]
    pub(crate) allow: Vec<AllowName>,
    /// When to pull the images the configuration names (its image, a Dockerfile's
    /// FROM images, the service-gator's) through Podman, with your registries.conf and
    /// auth.json: never, missing (those not in the local store) or always
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = PullPolicy::Missing)]
    pub(crate) pull: PullPolicy,
    /// The agent's model for this pod, over [agent] model: an opencode model id,
    /// PROVIDER/MODEL (e.g. anthropic/claude-sonnet-4-5)
    #[arg(long, value_name = "PROVIDER/MODEL", value_parser = parse_model)]
    pub model: Option<String>,
    /// Seconds to wait for the agent to answer before rolling back
    #[arg(long, value_name = "SECS", default_value_t = plan::DEFAULT_READY_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Require the features' lockfile (devcontainer-lock.json beside devcontainer.json)
    /// to exist and to match what is resolved; never write it
    #[arg(long, conflicts_with = "no_lockfile")]
    pub frozen_lockfile: bool,
    /// Neither read nor write the features' lockfile (fetch each feature by its tag)
    #[arg(long)]
    pub no_lockfile: bool,
}

/// `--model`: an opencode model id, `PROVIDER/MODEL`.
fn parse_model(s: &str) -> Result<String, String> {
    let ok = s
        .split_once('/')
        .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty())
        && s.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(s.to_string())
    } else {
        Err("an opencode model id is PROVIDER/MODEL, printable and without spaces (e.g. anthropic/claude-sonnet-4-5)".into())
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl UpArgs {
    /// What `up` does with the features' lockfile.
    fn lock_mode(&self) -> lockfile::Mode {
        match (self.frozen_lockfile, self.no_lockfile) {
            (true, _) => lockfile::Mode::Frozen,
            (_, true) => lockfile::Mode::Off,
            _ => lockfile::Mode::Update,
        }
    }

    /// The flags that decide the plan.
    fn request(&self) -> inputs::Request {
        inputs::Request {
            path: self.path.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            config: self.config.clone(),
            labels: self.labels.clone(),
            trust: self.trust,
            service_gator: self.service_gator.clone(),
            service_gator_image: self.service_gator_image.clone(),
            service_gator_allow_wildcard_write: self.service_gator_allow_wildcard_write,
            rebuild: self.rebuild,
            ready_timeout_secs: self.timeout,
            network: self.network,
            allow: self.allow.clone(),
            pull: self.pull,
            model: self.model.clone(),
            task: self.task.is_some() || self.task_file.is_some(),
        }
    }

    /// The task for the agent (TASK or --task-file), refused when empty.
    fn task(&self) -> Result<Option<String>> {
        let task = match (&self.task, &self.task_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading the task file {}", f.display()))?,
            ),
            (None, None) => None,
        };
        if task.as_deref().is_some_and(|t| t.trim().is_empty()) {
            bail!("the task is empty: give the agent something to do");
        }
        Ok(task)
    }
}

/// `up --dry-run`: prints the plan. It works without an engine; the plan then says the
/// image was not checked, and why.
async fn dry_run(ctx: &Context, args: &UpArgs) -> Result<ExitCode> {
    let engine = ctx.engine().await.map_err(|e| format!("{e:#}"));
    let req = args.request();
    let mut host = inputs::host_facts(&req)?;
    let facts = match &engine {
        Ok(engine) => inputs::image_facts(engine, &host.input, req.rebuild, req.pull).await?,
        Err(why) => inputs::ImageFacts::unknown(why),
    };
    let pulls = facts.pulls.clone();
    facts.apply_to(&mut host.input);
    let mut plan = inputs::plan(&host.input)?;
    let features = match &engine {
        Ok(engine) => planned_features(engine, &host, &plan, &req, args.lock_mode()).await?,
        Err(_) => None,
    };
    if let Some(f) = &features {
        // The plan as `up` makes it: the features' settings in the workspace, consented.
        host.input.feature_settings = f.settings.clone();
        plan = inputs::plan(&host.input)?;
    }
    if args.json {
        let mut v = dry_run_json(&plan);
        v["pulls"] = serde_json::json!(pulls);
        v["features"] = serde_json::json!(features);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_plan(&plan));
        for p in &pulls {
            println!("would pull {} (--pull {})", line(p), req.pull.as_str());
        }
        if let Some(f) = &features {
            let ids: Vec<String> = f.order.iter().map(|i| line(i).into_owned()).collect();
            println!(
                "features   {} -> {} ({})",
                ids.join(", "),
                line(&f.image),
                f.state
            );
            for a in &f.each {
                println!("           {}", line(&a.line()));
            }
            for w in &f.warnings {
                println!("           {}", line(w));
            }
            if let Some(l) = &f.lockfile {
                let state = match l.state {
                    lockfile::State::Unchanged => "unchanged",
                    lockfile::State::WillWrite => "would be written",
                };
                println!(
                    "lockfile   {} ({state})",
                    line(&l.path.display().to_string())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `up` would do with the config's features: their install order and the derived
/// image (present, or to build). `None` without features, or when the base image is
/// not local yet (its id keys the derived image). Fetches OCI and tarball features into
/// the cache; creates nothing in Podman.
#[derive(serde::Serialize)]
struct PlannedFeatures {
    order: Vec<String>,
    image: String,
    state: &'static str,
    /// What each feature adds, in install order.
    each: Vec<crate::feature_build::Adds>,
    warnings: Vec<String>,
    /// The lockfile as resolved: its path, whether `up` would write it, its features
    /// (`null` with --no-lockfile).
    lockfile: Option<lockfile::Update>,
    #[serde(skip)]
    settings: Vec<crate::plan::input::FeatureSettings>,
}

async fn planned_features(
    engine: &Engine,
    host: &inputs::HostFacts,
    plan: &PodPlan,
    req: &inputs::Request,
    lock: lockfile::Mode,
) -> Result<Option<PlannedFeatures>> {
    let Some(path) = &host.input.devcontainer_path else {
        return Ok(None);
    };
    if !crate::feature_build::wanted(&host.input.devcontainer)
        || host.input.image_override.is_some()
    {
        return Ok(None);
    }
    let Some(base) = engine.inspect_image(&plan.image.reference).await? else {
        return Ok(None);
    };
    let made = features_on(host, path, &plan.image.reference, &base, req.rebuild, lock).await?;
    let Some(made) = made else { return Ok(None) };
    let tag = made.build.plan.tag;
    let present = !req.rebuild && engine.image_id(&tag).await?.is_some();
    Ok(Some(PlannedFeatures {
        order: made.order,
        image: tag,
        state: if present { "present" } else { "will_build" },
        each: made.adds,
        warnings: made.warnings,
        lockfile: made.lock,
        settings: made.settings,
    }))
}

pub(super) async fn run(ctx: &Context, args: UpArgs) -> Result<ExitCode> {
    if args.dry_run {
        return dry_run(ctx, &args).await;
    }
    let task = args.task()?;
    // Caught from the start: an interrupt at any step ends in the rollback of what this
    // `up` made, and exit code 130.
    let mut cancel = crate::cli::cancel_on_signals();
    let progress = Progress::new();
    progress.step("connecting to podman");
    let engine = ctx.engine().await?;
    progress.step("reading the repo and devcontainer.json");
    let req = args.request();
    let mut host = inputs::host_facts(&req)?;
    // Held until `up` ends: gc leaves this workspace's objects alone meanwhile.
    let Some(_making) = crate::locks::try_workspace(host.input.name.as_str())? else {
        bail!(
            "another devaipod up (or gc) is working on the workspace {} right now; wait for it, or choose another --name",
            host.input.name
        );
    };
    let facts = inputs::image_facts(engine, &host.input, req.rebuild, req.pull).await?;
    let pulls = facts.pulls.clone();
    facts.apply_to(&mut host.input);
    let mut plan = inputs::plan(&host.input)?;
    if plan.image.source == plan::image::NO_CONFIG {
        progress.line(&format!(
            "{} has no devcontainer.json: running the bundled image {} (add .devcontainer/devcontainer.json, or pass --image, to choose)",
            host.input.repo.root.display(),
            plan.image.reference
        ));
    }
    for w in &plan.warnings {
        progress.warn(w);
    }
    // A key exported for another tool becomes a preset by itself: say so at every up.
    for c in plan
        .network
        .credentials
        .iter()
        .filter(|c| c.preset.is_some())
    {
        progress.line(&format!(
            "devaipod: provider {} through the proxy, which holds the key from {} (a built-in preset; [agent] providers chooses)",
            c.provider,
            c.variable.as_deref().unwrap_or("a podman secret")
        ));
    }
    if !pulls.is_empty() {
        // Before anything is created: a failed pull leaves nothing behind.
        for image in &pulls {
            crate::progress::pause_point("pull");
            pull_image(engine, image, req.pull, &progress, &mut cancel).await?;
        }
        inputs::image_facts(engine, &host.input, req.rebuild, PullPolicy::Never)
            .await?
            .apply_to(&mut host.input);
        plan = inputs::plan(&host.input)?;
        crate::state::record_images(&pulls, &host.input.repo.root);
    }
    let values = secret_values(&plan)?;
    if let Some(init) = &plan.initialize {
        crate::cli::initialize::approve_and_run(init, &init.config, &progress, &mut cancel).await?;
    }
    if let (ImageState::WillBuild, Some(build)) = (&plan.image.state, &host.prepared) {
        crate::progress::pause_point("build");
        let id = build_image(engine, &plan, build, req.pull, &progress, &mut cancel).await?;
        crate::state::record_images(std::slice::from_ref(&build.plan.tag), &host.input.repo.root);
        // Plan again now that the image exists (overrideCommand: false reads its CMD):
        // only what the engine knows of the images changed.
        if let Some(b) = &mut host.input.build {
            b.rebuild = false;
        }
        inputs::image_facts(engine, &host.input, false, PullPolicy::Never)
            .await?
            .apply_to(&mut host.input);
        plan = inputs::plan(&host.input)?;
        tracing::debug!(%id, "built");
    }
    if let Some(path) = host.input.devcontainer_path.clone()
        && crate::feature_build::wanted(&host.input.devcontainer)
        && host.input.image_override.is_none()
    {
        let lock = args.lock_mode();
        install_features(engine, &mut host, &path, &req, lock, &progress, &mut cancel).await?;
        plan = inputs::plan(&host.input)?;
        for w in plan.warnings.iter().filter(|w| w.starts_with("feature ")) {
            progress.warn(w);
        }
    }
    // devaipod's own images and the volumes copied from them are shared by the user's
    // pods: one `up` makes them at a time, and none that another made meanwhile.
    let shared = plan.shared_volumes();
    let net_to_make = match (&host.input.net_image_state, &host.net) {
        (ImageState::WillBuild, Some(net)) => Some(net),
        _ => None,
    };
    if net_to_make.is_some() || !shared.is_empty() {
        let lock = crate::locks::shared()?;
        if let Some(net) = net_to_make
            && engine.image_id(&net.image).await?.is_none()
        {
            progress.step(&format!(
                "making the image of devaipod-net (network guard, SSH helpers) {}",
                net.image
            ));
            let layer = crate::net_binary::layer(net)?;
            let changes = [format!("LABEL {}image=net", plan::labels::PREFIX)];
            engine.import_image(&net.image, layer, &changes).await?;
            progress.finish_step();
        }
        let on_copy = |m: &plan::SharedMount| {
            progress.step(&format!(
                "copying {}:{} into the volume {} (once; every pod mounts it read-only)",
                m.image, m.path, m.volume
            ))
        };
        let made = crate::podman::cancel::cancellable(
            &mut cancel,
            crate::podman::shared::ensure(engine, &shared, &on_copy),
        )
        .await;
        if made.is_err() {
            // Interrupted mid-copy: no helper, and no volume left half-made.
            crate::podman::shared::tidy(engine, &shared).await;
        }
        made?;
        progress.finish_step();
        drop(lock);
    }
    // Before any secret exists: delete and gc find those of an `up` killed midway.
    if let Some(state) = crate::state::StateDir::from_env() {
        let names: Vec<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
        state.record_secrets(plan.name.as_str(), &names)?;
    }
    let result = apply::apply(engine, &plan, &values, &progress, &mut cancel).await;
    if result.is_ok() {
        crate::cli::lifecycle::note_agent_ready(engine, &plan.name).await?;
    }
    let session = match (&result, &task) {
        (Ok(_), Some(task)) => Some(hand_over(engine, &plan, &values, task, &progress).await?),
        _ => None,
    };
    let applied = result?;
    let elapsed = progress.elapsed();
    drop(progress);
    if args.json {
        let mut v = serde_json::to_value(&applied)?;
        v["session"] = serde_json::json!(session);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", ready_text(&applied, elapsed, session.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The features' build on the base image `base_ref` (inspected as `base`).
async fn features_on(
    host: &inputs::HostFacts,
    config_path: &std::path::Path,
    base_ref: &str,
    base: &crate::podman::inspect::ImageInspect,
    rebuild: bool,
    lock: lockfile::Mode,
) -> Result<Option<crate::feature_build::FeaturesBuild>> {
    crate::feature_build::prepare(
        &host.input.devcontainer,
        config_path,
        &host.input.repo.root,
        &host.input.repo.folder_name,
        &crate::feature_build::Base {
            reference: base_ref,
            id: &base.id,
            labels: &base.labels,
            user: &base.config.user,
        },
        rebuild,
        lock,
    )
    .await
}

/// Installs the config's features into the derived image (built unless it exists, or
/// `--rebuild`), and points the plan's input at it.
async fn install_features(
    engine: &Engine,
    host: &mut inputs::HostFacts,
    config_path: &std::path::Path,
    req: &inputs::Request,
    lock: lockfile::Mode,
    progress: &Progress,
    cancel: &mut crate::podman::cancel::Cancel,
) -> Result<()> {
    let plan = inputs::plan(&host.input)?;
    let base_ref = plan.image.reference.clone();
    let Some(base) = engine.inspect_image(&base_ref).await? else {
        anyhow::bail!(
            "the image {base_ref} is not in the local store, so its features cannot be installed: `devaipod image pull {base_ref}`, or `up --pull missing`"
        );
    };
    let made = features_on(host, config_path, &base_ref, &base, req.rebuild, lock).await?;
    let Some(made) = made else { return Ok(()) };
    let tag = made.build.plan.tag.clone();
    host.input.feature_settings = made.settings.clone();
    host.input.features_image = Some(tag.clone());
    // What the features ask of the workspace needs the same consent as the config's
    // own: refused before anything is built.
    inputs::plan(&host.input)?;
    if req.rebuild || engine.image_id(&tag).await?.is_none() {
        progress.step(&format!(
            "installing features {} into {tag}",
            made.order.join(", ")
        ));
        build_image(
            engine,
            &plan,
            &made.build,
            PullPolicy::Never,
            progress,
            cancel,
        )
        .await?;
        crate::state::record_images(std::slice::from_ref(&tag), &host.input.repo.root);
    }
    if let Some(update) = made
        .lock
        .as_ref()
        .filter(|u| u.state == lockfile::State::WillWrite)
    {
        write_lockfile(update)?;
        progress.line(&format!("wrote {}", update.path.display()));
    }
    host.input.config_warnings.extend(made.warnings);
    inputs::image_facts(engine, &host.input, false, PullPolicy::Never)
        .await?
        .apply_to(&mut host.input);
    Ok(())
}

/// Writes the features' lockfile as the reference CLI does (after the features were
/// fetched and installed): a new file beside devcontainer.json, renamed into place.
fn write_lockfile(update: &lockfile::Update) -> Result<()> {
    use std::io::Write as _;
    let path = &update.path;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".devaipod-lock.")
        .tempfile_in(dir)
        .with_context(|| format!("writing the lockfile {}", path.display()))?;
    tmp.write_all(update.text().as_bytes())
        .with_context(|| format!("writing the lockfile {}", path.display()))?;
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), mode)
        .with_context(|| format!("writing the lockfile {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing the lockfile {}", path.display()))?;
    Ok(())
}

/// Builds the image of a Dockerfile configuration, labelled like the pod's objects but
/// with the build's own devaipod labels; the user may interrupt it.
pub(crate) async fn build_image(
    engine: &Engine,
    plan: &PodPlan,
    build: &crate::build::Prepared,
    pull: PullPolicy,
    progress: &Progress,
    cancel: &mut crate::podman::cancel::Cancel,
) -> Result<String> {
    progress.step(&format!(
        "building {} from {} ({} files)",
        build.plan.tag,
        build.plan.dockerfile.display(),
        build.plan.files
    ));
    let mut labels = plan.pod.labels.clone();
    labels.retain(|k, _| !k.starts_with(plan::labels::PREFIX));
    labels.extend(build.plan.labels.clone());
    labels.insert(
        format!("{}build-key", plan::labels::PREFIX),
        build.plan.key.clone(),
    );
    let on_line = |l: &str| progress.line(&format!("  build: {l}"));
    let id = tokio::select! {
        r = engine.build_image(build, &labels, pull, &on_line) => r,
        _ = cancel.wait_for(|c| *c) => Err(anyhow::Error::new(crate::Interrupted)),
    }?;
    progress.finish_step();
    Ok(id)
}

/// Pulls `image` with Podman's progress on the terminal (or as plain lines).
pub(crate) async fn pull_image(
    engine: &Engine,
    image: &str,
    policy: PullPolicy,
    progress: &Progress,
    cancel: &mut crate::podman::cancel::Cancel,
) -> Result<String> {
    progress.step(&format!("pulling {image}"));
    let on_line = |l: &str| progress.line(&format!("  pull: {}", crate::terminal::line(l)));
    let policy = if policy == PullPolicy::Never {
        PullPolicy::Missing
    } else {
        policy
    };
    let id = tokio::select! {
        r = engine.pull_image(image, policy, &on_line) => r,
        _ = cancel.wait_for(|c| *c) => Err(anyhow::Error::new(crate::Interrupted)),
    }?;
    progress.finish_step();
    Ok(id)
}

/// Hands the task to the agent of the pod just made; the session's id.
async fn hand_over(
    engine: &Engine,
    plan: &PodPlan,
    values: &apply::SecretValues,
    task: &str,
    progress: &Progress,
) -> Result<String> {
    if plan.agent_config.model.is_none() {
        progress.warn(
            "the agent has no model configured ([agent] model in devaipod.toml): the task is handed over, and opencode uses its own default model",
        );
    }
    progress.step("handing the task to the agent");
    let password = values
        .get(&plan::password_secret_name(&plan.name))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the agent's password was not made"))?;
    let agent =
        crate::agent::Agent::with_password(engine, &plan.pod.name, &plan.repo.workdir, password);
    let id = agent.hand_over(task, None).await.map_err(|e| {
        e.context(format!(
            "pod {} is up, but the task was not handed over; retry with `devaipod task {} TEXT`",
            plan.pod.name, plan.name
        ))
    })?;
    progress.finish_step();
    Ok(id)
}

/// What `up` prints when the pod is ready: where the agent answers and what to do next.
/// The session id is the agent's server's answer: shown escaped.
fn ready_text(
    applied: &apply::Applied,
    elapsed: std::time::Duration,
    session: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pod {} is ready ({:.1}s): the agent answers on http://127.0.0.1:{} inside the pod",
        applied.pod,
        elapsed.as_secs_f64(),
        plan::AGENT_PORT
    );
    let _ = writeln!(
        out,
        "  shell:   devaipod ssh {}   (then `oc` attaches to the agent)",
        applied.name
    );
    if let Some(id) = session {
        let _ = writeln!(
            out,
            "  task:    handed over as opencode session {}",
            line(id)
        );
        let _ = writeln!(out, "  follow:  devaipod status {}", applied.name);
    }
    let _ = writeln!(out, "  attach:  devaipod attach {}", applied.name);
    let _ = writeln!(out, "  review:  devaipod review {}", applied.name);
    let _ = writeln!(out, "  remove:  devaipod delete {}", applied.name);
    out
}

/// The values of the plan's environment secrets, read from devaipod's environment now.
fn secret_values(plan: &PodPlan) -> Result<apply::SecretValues> {
    let mut values = apply::SecretValues::new();
    for s in &plan.secrets {
        if let plan::SecretSource::Generated = &s.source {
            values.insert(s.name.clone(), crate::secret::SecretValue::generate());
        }
        if let plan::SecretSource::Environment { variable } = &s.source {
            let Some(value) = std::env::var_os(variable) else {
                bail!(
                    "{variable} is named in your devaipod configuration (a secrets list or an [agent.credentials] secret) but is not set in devaipod's environment: export it, or name an existing podman secret ({variable}=SECRET-NAME)"
                );
            };
            let value = value.into_string().map_err(|_| {
                anyhow::anyhow!("{variable} is not valid UTF-8; podman secrets must be text")
            })?;
            if value.is_empty() {
                bail!("{variable} is set but empty; a secret needs a value");
            }
            values.insert(s.name.clone(), crate::secret::SecretValue::new(value));
        }
    }
    Ok(values)
}

/// The `--dry-run --json` document: the plan, with `pod`, `containers`, `volumes` and
/// `secrets` at the top level. Never contains a secret value.
pub(super) fn dry_run_json(plan: &PodPlan) -> serde_json::Value {
    serde_json::json!({
        "name": plan.name,
        "image": plan.image,
        "pod": plan.pod,
        "containers": plan.containers,
        "volumes": plan.volumes,
        "secrets": plan.secrets,
        "repo": plan.repo,
        "readiness": plan.readiness,
        "initialize": plan.initialize,
        "agent_config": plan.agent_config,
        "gator": plan.gator,
        "network": plan.network,
        "lifecycle": plan.lifecycle,
        "trust": plan.trust,
        "warnings": plan.warnings,
    })
}

/// The human-readable plan. Every value is escaped ([`line`]): most come from the repo's
/// devcontainer.json and Dockerfile.
pub(super) fn render_plan(plan: &PodPlan) -> String {
    use std::fmt::Write;
    let l = |v: &str| line(v).into_owned();
    let list = |v: &[String], sep: &str| l(&v.join(sep));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for workspace {} (dry run: nothing is created)",
        plan.name
    );
    let state = match &plan.image.state {
        ImageState::Present { id } => format!("present ({})", l(id.get(..12).unwrap_or(id))),
        ImageState::Missing { note } => format!("MISSING: {}", l(note)),
        ImageState::Unknown { note } => l(note),
        ImageState::WillBuild => "to be built".into(),
        ImageState::WillPull => "to be pulled (--pull)".into(),
    };
    let _ = writeln!(
        s,
        "image      {} from {}: {state}",
        l(&plan.image.reference),
        l(&plan.image.source.to_string())
    );
    if let Some(b) = &plan.image.build {
        let _ = writeln!(
            s,
            "build      {} in {} ({} files, {} bytes){}{}",
            l(&b.dockerfile.to_string_lossy()),
            l(&b.context.to_string_lossy()),
            b.files,
            b.bytes,
            b.target
                .as_deref()
                .map(|t| format!(", target {}", l(t)))
                .unwrap_or_default(),
            if b.args.is_empty() {
                String::new()
            } else {
                format!(
                    ", args {}",
                    list(&b.args.keys().cloned().collect::<Vec<_>>(), ",")
                )
            }
        );
    }
    let _ = writeln!(
        s,
        "pod        {} (shares only: {})",
        plan.pod.name,
        list(&plan.pod.share, ",")
    );
    for v in &plan.volumes {
        let _ = writeln!(s, "volume     {} ({})", l(&v.name), v.role);
    }
    let branch = plan.repo.branch.as_deref().unwrap_or("detached HEAD");
    let _ = writeln!(
        s,
        "repo       {} at {} ({}) cloned into {} at {}",
        l(&plan.repo.host_path.to_string_lossy()),
        l(plan.repo.head.get(..12).unwrap_or(&plan.repo.head)),
        l(branch),
        l(&plan.repo.volume),
        l(&plan.repo.workspace_folder)
    );
    for c in &plan.containers {
        let _ = writeln!(s, "container  {} [{}]", l(&c.name), c.role);
        let _ = writeln!(s, "             command  {}", list(&c.command, " "));
        let _ = writeln!(
            s,
            "             user     {}",
            l(c.user.as_deref().unwrap_or("(image default)"))
        );
        let _ = writeln!(s, "             workdir  {}", l(&c.workdir));
        if !c.cap_drop.is_empty() {
            let _ = writeln!(s, "             cap_drop {}", list(&c.cap_drop, ","));
        }
        if !c.security_opt.is_empty() {
            let _ = writeln!(s, "             security {}", list(&c.security_opt, ","));
        }
        for m in &c.mounts {
            let _ = writeln!(
                s,
                "             mount    {} -> {}",
                l(&m.source),
                l(&m.target)
            );
        }
        for m in &c.shared_mounts {
            let _ = writeln!(
                s,
                "             shared   {} -> {} (read-only; {}:{})",
                l(&m.volume),
                l(&m.target),
                l(&m.image),
                l(&m.path)
            );
        }
        if !c.env.is_empty() {
            let names: Vec<String> = c.env.keys().cloned().collect();
            let _ = writeln!(s, "             env      {}", list(&names, ","));
        }
    }
    if let Some(g) = &plan.gator {
        let _ = writeln!(
            s,
            "gator      {} serving {} with scopes {} (tokens: {})",
            l(&g.image),
            l(&g.mcp_url),
            list(&g.scopes, " "),
            if g.token_files.is_empty() {
                "none".to_string()
            } else {
                list(&g.token_files, ", ")
            }
        );
        let _ = writeln!(
            s,
            "           devaipod-net's relay logs each MCP request and its outcome; service-gator ({}, {}) listens on {}",
            list(&g.entrypoint, " "),
            l(&g.entrypoint_from),
            l(&g.server)
        );
    }
    let net = &plan.network;
    let _ = writeln!(
        s,
        "network    {}{}",
        net.mode.as_str(),
        net.proxy
            .as_ref()
            .map(|p| format!(" through the proxy {}", l(p)))
            .unwrap_or_default()
    );
    if net.proxy.is_some() {
        let _ = writeln!(
            s,
            "             allow    {}",
            if net.allow.is_empty() {
                "(nothing)".to_string()
            } else {
                list(&net.allow, " ")
            }
        );
    }
    for c in &net.credentials {
        let _ = writeln!(
            s,
            "             credential {} -> {} (header {}, {}secret {}{}, in the proxy only)",
            l(&c.provider),
            l(&c.base_url),
            l(&c.header),
            if c.preset.is_some() {
                "built-in preset, "
            } else {
                ""
            },
            l(&c.secret),
            c.variable
                .as_deref()
                .map(|v| format!(" from {}", l(v)))
                .unwrap_or_default()
        );
    }
    if let Some(m) = &plan.agent_config.model {
        let _ = writeln!(
            s,
            "agent      model {}{}",
            l(m),
            plan.agent_config
                .model_from
                .as_deref()
                .map(|f| format!(" ({})", l(f)))
                .unwrap_or_default()
        );
    }
    for r in &net.reach {
        let _ = writeln!(s, "             reaches  {}", l(r));
    }
    if let Some(init) = &plan.initialize {
        let _ = writeln!(
            s,
            "host       initializeCommand {} in {} ({})",
            l(&serde_json::to_string(&init.command).unwrap_or_default()),
            l(&init.dir.to_string_lossy()),
            if init.approved {
                "approved"
            } else {
                "NOT APPROVED: up asks on a terminal, or pass --trust"
            }
        );
    }
    let _ = writeln!(
        s,
        "readiness  {} within {}s",
        l(&plan.readiness.url),
        plan.readiness.timeout_secs
    );
    for w in &plan.warnings {
        let _ = writeln!(s, "warning    {}", l(w));
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::terminal::testing::{HOSTILE, HOSTILE_SHOWN, assert_inert};

    #[derive(Debug, Parser)]
    struct Up {
        #[command(flatten)]
        up: UpArgs,
    }

    fn up(args: &[&str]) -> Result<UpArgs, String> {
        Up::try_parse_from(std::iter::once("up").chain(args.iter().copied()))
            .map(|u| u.up)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn network_flags_reach_the_request() {
        let a = up(&[]).expect("no flags");
        assert_eq!((a.network, a.allow.len()), (None, 0));
        let a = up(&[
            "--network",
            "allowlist",
            "--allow",
            "*.Example.org",
            "--allow=git.example.com:8443",
        ])
        .expect("flags");
        let req = a.request();
        assert_eq!(req.network, Some(NetworkMode::Allowlist));
        let allow: Vec<String> = req.allow.iter().map(|n| n.to_string()).collect();
        assert_eq!(allow, ["*.example.org", "git.example.com:8443"]);
        for mode in ["none", "full"] {
            assert_eq!(
                up(&["--network", mode])
                    .expect(mode)
                    .network
                    .map(|m| m.as_str()),
                Some(mode)
            );
        }
    }

    #[test]
    fn bad_network_flags_name_the_flag() {
        let e = up(&["--network", "open"]).expect_err("mode");
        assert!(
            e.starts_with("error: invalid value 'open' for '--network <MODE>': network mode \"open\" is not one of"),
            "{e}"
        );
        for (bad, why) in [
            ("1.2.3.4", "an IP address literal"),
            ("[::1]:443", "an IP address literal"),
            ("0x7f000001", "an IP address literal"),
            (
                "example.org:0",
                "port \"0\" is not a number from 1 to 65535",
            ),
            ("*.com", "not a whole top-level domain"),
        ] {
            let e = up(&["--allow", bad]).expect_err(bad);
            assert!(
                e.starts_with(&format!(
                    "error: invalid value '{bad}' for '--allow <NAME>': "
                )) && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_task_summary_shows_the_session_id_escaped() {
        let applied = apply::Applied {
            name: "w1".into(),
            pod: "devaipod-w1".into(),
            containers: vec![],
        };
        let out = ready_text(&applied, std::time::Duration::from_secs(1), Some(HOSTILE));
        assert_inert(&out);
        assert!(
            out.contains(&format!(
                "handed over as opencode session {HOSTILE_SHOWN}\n"
            )),
            "{out}"
        );
    }
}
