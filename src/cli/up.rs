//! `devaipod up [PATH]`: read the repo's devcontainer.json, plan the pod, and (unless
//! `--dry-run`) create it and wait until the agent answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::devcontainer;
use crate::git::RepoInfo;
use crate::names::{Name, random_suffix};
use crate::plan::{self, ImageState, PlanInput, PodPlan, RepoFacts};
use crate::podman::{Engine, apply};
use crate::progress::Progress;

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
    /// Seconds to wait for the agent to answer before rolling back
    #[arg(long, value_name = "SECS", default_value_t = plan::DEFAULT_READY_TIMEOUT_SECS)]
    pub timeout: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Finds devcontainer.json for `dir`: `--config`, else in `dir` (where several named
/// configs without a default are an error), else in its parents up to `root`.
pub fn find_config(dir: &Path, root: &Path, explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(found) = devcontainer::discover(dir, explicit)? {
        return Ok(Some(found));
    }
    let mut cur = dir.parent();
    while let Some(d) = cur {
        if !d.starts_with(root) {
            break;
        }
        if let Some(found) = devcontainer::find(d) {
            return Ok(Some(found));
        }
        cur = d.parent();
    }
    Ok(None)
}

/// Host environment lookup for `${localEnv:...}`.
pub fn host_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads everything the plan needs (repo, config, image presence) and builds it.
async fn make_plan(
    args: &UpArgs,
    engine: Option<&Engine>,
    engine_error: Option<String>,
) -> Result<(PodPlan, Option<crate::build::Prepared>)> {
    let path = args
        .path
        .canonicalize()
        .with_context(|| format!("{}: no such folder", args.path.display()))?;
    if !path.is_dir() {
        bail!("{} is not a folder: pass the repo folder", path.display());
    }
    let repo = RepoInfo::detect(&path)?;
    let subdir = path
        .strip_prefix(&repo.root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let folder = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| repo.folder_name());
    let name = match &args.name {
        Some(n) => Name::from_user(n).with_context(|| format!("--name {n:?} is not valid"))?,
        None => Name::derive(&folder, &random_suffix()),
    };
    let config_path = find_config(&path, &repo.root, args.config.as_deref())?;
    if let (Some(p), None) = (&config_path, &args.config) {
        devcontainer::confined(p, &repo.root)?;
    }
    let (config, mut config_warnings, container_env_from_host) = match &config_path {
        Some(p) => {
            let loaded = devcontainer::load(p)?;
            if let Some(key) = devcontainer::uses_host_env(&loaded.raw) {
                bail!(
                    "{}: \"{key}\" uses ${{localEnv:...}}: devaipod does not carry host environment variables into the pod (they may hold secrets); write the value itself",
                    p.display()
                );
            }
            let reading = devcontainer::read(&loaded, &path, &repo.root, &host_env)?;
            let from_host = devcontainer::container_env_from_host(&loaded.raw);
            (reading.config, loaded.warnings, from_host)
        }
        None => (
            devcontainer::DevContainer::default(),
            Vec::new(),
            Vec::new(),
        ),
    };
    let prepared = match (&config_path, &args.image) {
        (Some(p), None) => {
            crate::build::prepare(&config, p, &repo.root, &repo.folder_name(), args.rebuild)?
        }
        _ => None,
    };
    if let Some(b) = &prepared {
        config_warnings.extend(b.warnings.iter().cloned());
    }
    let extra_labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    let (user_config, user_config_path) = crate::config::load()?;
    let config_file = user_config_path.unwrap_or_else(|| PathBuf::from("devaipod.toml"));
    let to_plan = |list: &[String], table: &str| -> Result<Vec<plan::UserSecret>> {
        Ok(crate::config::Config::entries(list, &config_file, table)?
            .into_iter()
            .map(|e| plan::UserSecret {
                env_name: e.name,
                existing: e.existing,
            })
            .collect())
    };
    let agent_secrets = to_plan(&user_config.agent.secrets, "agent")?;
    let trusted_secrets = to_plan(&user_config.trusted.secrets, "trusted")?;
    if let Some(both) = agent_secrets
        .iter()
        .find(|a| trusted_secrets.iter().any(|t| t.env_name == a.env_name))
    {
        bail!(
            "{}: {} is listed under both [agent] and [trusted] secrets; a trusted secret never reaches the agent, so list it once",
            config_file.display(),
            both.env_name
        );
    }
    let mut input = PlanInput {
        name,
        repo: RepoFacts {
            root: repo.root.clone(),
            subdir,
            path: path.clone(),
            folder_name: repo.folder_name(),
            head: repo.head.clone(),
            branch: repo.branch.clone(),
            uncommitted: repo.uncommitted,
        },
        devcontainer: config,
        devcontainer_path: config_path,
        image_override: args.image.clone(),
        image_state: ImageState::Unknown {
            note: String::new(),
        },
        build: prepared.as_ref().map(|b| b.plan.clone()),
        extra_labels,
        ready_timeout_secs: args.timeout,
        config_warnings,
        agent_secrets,
        trusted_secrets,
        agent_pids_limit: match user_config.agent.pids_limit {
            Some(p) if p < 64 => bail!(
                "{}: [agent] pids_limit {p} is too small for opencode (use at least 64)",
                config_file.display()
            ),
            Some(p) => p,
            None => plan::AGENT_PIDS_LIMIT,
        },
        agent_memory_limit: match &user_config.agent.memory_limit {
            Some(m) => crate::config::parse_size(m)
                .map_err(|e| anyhow::anyhow!("{}: [agent] {e}", config_file.display()))?,
            None => plan::AGENT_MEMORY_LIMIT,
        },
        container_env_from_host,
        env_files: BTreeMap::new(),
        image_command: None,
        approved: Vec::new(),
        bundled_present: false,
        image_path: None,
        gator: {
            let g = &user_config.service_gator;
            let texts: Vec<String> = g
                .scopes
                .iter()
                .chain(&args.service_gator)
                .cloned()
                .collect();
            if texts.is_empty() {
                if args.service_gator_image.is_some() {
                    bail!(
                        "--service-gator-image without any scope: add --service-gator SCOPE (or [service-gator] scopes)"
                    );
                }
                None
            } else {
                let scopes = plan::gator::parse_scopes(
                    &texts,
                    g.allow_wildcard_write || args.service_gator_allow_wildcard_write,
                )
                .map_err(anyhow::Error::msg)?;
                let image = args
                    .service_gator_image
                    .clone()
                    .or_else(|| g.image.clone())
                    .unwrap_or_else(|| plan::gator::DEFAULT_IMAGE.to_string());
                if !plan::valid_image(&image) {
                    bail!("service-gator image {image:?} is not a valid image reference");
                }
                Some(plan::GatorInput {
                    image,
                    scopes,
                    gitlab_host: g.gitlab_host.clone(),
                    jira_host: g.jira_host.clone(),
                })
            }
        },
        agent_model: user_config.agent.model.clone(),
        agent_opencode: match &user_config.agent.opencode {
            Some(t) => Some(serde_json::to_value(t).with_context(|| {
                format!(
                    "{}: [agent.opencode] cannot be turned into JSON",
                    config_file.display()
                )
            })?),
            None => None,
        },
        cdi_gpu: plan::cdi_gpu_in(&read_cdi_specs()),
        trust: if args.trust {
            Some("--trust".to_string())
        } else if user_config.trusts(&repo.root) {
            Some(format!("[repos] trust in {}", config_file.display()))
        } else {
            None
        },
    };
    if let (Some(cmd), Some(state)) = (
        input
            .devcontainer
            .initialize_command
            .as_ref()
            .and_then(plan::Command::from_value),
        crate::state::StateDir::from_env(),
    ) {
        let key = plan::InitializePlan::key_for(&input.repo.root, &cmd);
        if state.approved(&key) {
            input.approved.push(key);
        }
    }
    input.env_files = read_env_files(&input.devcontainer, &path, &repo.root, &input.config_file())?;
    let (image, _) = plan::choose_image(&input)?;
    if let Some(engine) = engine
        && let Some((cmd, path)) = engine.image_command(&image).await?
    {
        input.image_command = Some(cmd);
        input.image_path = path;
    }
    if let Some(engine) = engine {
        input.bundled_present = engine.image_id(plan::BUNDLED_IMAGE).await?.is_some();
    }
    let to_build = input.image_override.is_none() && input.build.is_some();
    input.image_state = match engine {
        Some(_) if to_build && args.rebuild => ImageState::WillBuild,
        Some(engine) => match engine.image_id(&image).await? {
            Some(id) => ImageState::Present { id },
            None if to_build => ImageState::WillBuild,
            None => ImageState::Missing {
                note: missing_image_note(&image),
            },
        },
        None => ImageState::Unknown {
            note: format!(
                "not checked: {}",
                engine_error.unwrap_or_else(|| "no engine".into())
            ),
        },
    };
    if let (Some(g), Some(engine)) = (&input.gator, engine)
        && engine.image_id(&g.image).await?.is_none()
    {
        bail!(
            "the service-gator image {} is not in the local image store and devaipod never pulls: run `podman pull {}` (or build it), or name another with --service-gator-image",
            g.image,
            g.image
        );
    }
    let plan = plan::build(&input)?;
    check_bind_sources(&plan)?;
    Ok((plan, prepared))
}

/// The host's CDI specifications (where Podman looks for them).
fn read_cdi_specs() -> Vec<String> {
    ["/etc/cdi", "/var/run/cdi"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") || n.ends_with(".yaml") || n.ends_with(".yml")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// Reads runArgs' `--env-file`s: relative to the folder `up` was pointed at, confined
/// to the repo (an env file elsewhere could be any of the user's files).
fn read_env_files(
    dc: &devcontainer::DevContainer,
    base: &Path,
    root: &Path,
    config_file: &str,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(args) = &dc.run_args else {
        return Ok(out);
    };
    // Errors in runArgs are reported by the plan; only the file names matter here.
    let Ok(parsed) = plan::run_args::parse(args, &base.display().to_string()) else {
        return Ok(out);
    };
    for f in parsed.env_files {
        let p = base.join(&f);
        let real = p.canonicalize().with_context(|| {
            format!(
                "{config_file}: runArgs --env-file {f}: {} does not exist",
                p.display()
            )
        })?;
        if !real.starts_with(root) {
            bail!(
                "{config_file}: runArgs --env-file {f} resolves to {}, outside the repository: devaipod reads only the repository's own files",
                real.display()
            );
        }
        let text = std::fs::read_to_string(&real)
            .with_context(|| format!("reading {}", real.display()))?;
        out.insert(f, text);
    }
    Ok(out)
}

/// Host-side checks of the workspace's bind mounts (the plan checked their consent and
/// their names): the source exists, and once symlinks are resolved it is neither a
/// socket nor an engine's path.
fn check_bind_sources(plan: &PodPlan) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for c in &plan.containers {
        for m in c.mounts.iter().filter(|m| m.kind == plan::MountKind::Bind) {
            let real = Path::new(&m.source)
                .canonicalize()
                .with_context(|| format!("the bind mount source {} does not exist", m.source))?;
            let meta = std::fs::metadata(&real)
                .with_context(|| format!("reading the bind mount source {}", m.source))?;
            if meta.file_type().is_socket() || plan::engine_socket_path(&real.display().to_string())
            {
                bail!(
                    "the bind mount source {} resolves to {}, a socket or a container engine's path; it is never mounted",
                    m.source,
                    real.display()
                );
            }
        }
    }
    Ok(())
}

fn missing_image_note(image: &str) -> String {
    if image.starts_with("localhost/devaipod-base") {
        "not in the local image store; build it with `just image` (devaipod never pulls)".into()
    } else {
        format!(
            "not in the local image store and devaipod never pulls: run `podman pull {image}` or build it, then retry"
        )
    }
}

pub async fn run(args: UpArgs) -> Result<ExitCode> {
    if args.dry_run {
        // A dry run works without an engine; it then says the image was not checked.
        let (engine, err) = match Engine::connect().await {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let (plan, _) = make_plan(&args, engine.as_ref(), err).await?;
        drop(engine);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&dry_run_json(&plan))?);
        } else {
            print!("{}", render_plan(&plan));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let task = match (&args.task, &args.task_file) {
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
    let progress = Progress::new();
    progress.step("connecting to podman");
    let mut engine = Engine::connect().await?;
    progress.step("reading the repo and devcontainer.json");
    let (mut plan, prepared) = make_plan(&args, Some(&engine), None).await?;
    for w in &plan.warnings {
        progress.warn(w);
    }
    let values = secret_values(&plan)?;
    let mut cancel = crate::cli::cancel_on_signals();
    if let Some(init) = &plan.initialize
        && let Err(e) =
            crate::cli::initialize::approve_and_run(init, &init.config, &progress, &mut cancel)
                .await
    {
        engine.shutdown();
        return Err(e);
    }
    if let (ImageState::WillBuild, Some(build)) = (&plan.image.state, &prepared) {
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
            r = engine.build_image(build, &labels, &on_line) => r,
            _ = cancel.wait_for(|c| *c) => Err(anyhow::Error::new(crate::Interrupted)),
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                engine.shutdown();
                return Err(e);
            }
        };
        progress.finish_step();
        // Plan again now that the image exists (overrideCommand: false reads its CMD).
        let again = UpArgs {
            rebuild: false,
            name: Some(plan.name.to_string()),
            ..args.clone()
        };
        plan = make_plan(&again, Some(&engine), None).await?.0;
        tracing::debug!(%id, "built");
    }
    let result = apply::apply(&engine, &plan, &values, &progress, &mut cancel).await;
    if result.is_ok() {
        crate::cli::lifecycle::note_agent_ready(&engine, &plan.name).await?;
    }
    let mut session = None;
    if let (Ok(_), Some(task)) = (&result, &task) {
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
        let agent = crate::agent::Agent::with_password(
            &engine,
            &plan.pod.name,
            &plan.repo.workdir,
            password,
        );
        match agent.hand_over(task, None).await {
            Ok(id) => session = Some(id),
            Err(e) => {
                engine.shutdown();
                return Err(e.context(format!(
                    "pod {} is up, but the task was not handed over; retry with `devaipod task {} TEXT`",
                    plan.pod.name, plan.name
                )));
            }
        }
        progress.finish_step();
    }
    engine.shutdown();
    let applied = result?;
    let elapsed = progress.elapsed();
    drop(progress);
    if args.json {
        let mut v = serde_json::to_value(&applied)?;
        v["session"] = serde_json::json!(session);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "pod {} is ready ({:.1}s): the agent answers on http://127.0.0.1:{} inside the pod",
            applied.pod,
            elapsed.as_secs_f64(),
            plan::AGENT_PORT
        );
        println!(
            "  shell:   devaipod ssh {}   (then `oc` attaches to the agent)",
            applied.name
        );
        if let Some(id) = &session {
            println!("  task:    handed over as opencode session {id}");
            println!("  follow:  devaipod status {}", applied.name);
        }
        println!("  attach:  devaipod attach {}", applied.name);
        println!("  review:  devaipod review {}", applied.name);
        println!("  remove:  devaipod delete {}", applied.name);
    }
    Ok(ExitCode::SUCCESS)
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
                    "{variable} is listed in your devaipod configuration's secrets but is not set in devaipod's environment: export it, or name an existing podman secret ({variable}=SECRET-NAME)"
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
pub fn dry_run_json(plan: &PodPlan) -> serde_json::Value {
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
        "lifecycle": plan.lifecycle,
        "trust": plan.trust,
        "warnings": plan.warnings,
    })
}

/// The human-readable plan.
pub fn render_plan(plan: &PodPlan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for workspace {} (dry run: nothing is created)",
        plan.name
    );
    let state = match &plan.image.state {
        ImageState::Present { id } => format!("present ({})", id.get(..12).unwrap_or(id)),
        ImageState::Missing { note } => format!("MISSING: {note}"),
        ImageState::Unknown { note } => note.clone(),
        ImageState::WillBuild => "to be built".into(),
    };
    let _ = writeln!(
        s,
        "image      {} from {}: {state}",
        plan.image.reference, plan.image.source
    );
    if let Some(b) = &plan.image.build {
        let _ = writeln!(
            s,
            "build      {} in {} ({} files, {} bytes){}{}",
            b.dockerfile.display(),
            b.context.display(),
            b.files,
            b.bytes,
            b.target
                .as_deref()
                .map(|t| format!(", target {t}"))
                .unwrap_or_default(),
            if b.args.is_empty() {
                String::new()
            } else {
                format!(
                    ", args {}",
                    b.args.keys().cloned().collect::<Vec<_>>().join(",")
                )
            }
        );
    }
    let _ = writeln!(
        s,
        "pod        {} (shares only: {})",
        plan.pod.name,
        plan.pod.share.join(",")
    );
    for v in &plan.volumes {
        let _ = writeln!(s, "volume     {} ({})", v.name, v.role);
    }
    let branch = plan.repo.branch.as_deref().unwrap_or("detached HEAD");
    let _ = writeln!(
        s,
        "repo       {} at {} ({branch}) cloned into {} at {}",
        plan.repo.host_path.display(),
        plan.repo.head.get(..12).unwrap_or(&plan.repo.head),
        plan.repo.volume,
        plan.repo.workspace_folder
    );
    for c in &plan.containers {
        let _ = writeln!(s, "container  {} [{}]", c.name, c.role);
        let _ = writeln!(s, "             command  {}", c.command.join(" "));
        let _ = writeln!(
            s,
            "             user     {}",
            c.user.as_deref().unwrap_or("(image default)")
        );
        let _ = writeln!(s, "             workdir  {}", c.workdir);
        if !c.cap_drop.is_empty() {
            let _ = writeln!(s, "             cap_drop {}", c.cap_drop.join(","));
        }
        if !c.security_opt.is_empty() {
            let _ = writeln!(s, "             security {}", c.security_opt.join(","));
        }
        for m in &c.mounts {
            let _ = writeln!(s, "             mount    {} -> {}", m.source, m.target);
        }
        if !c.env.is_empty() {
            let names: Vec<&str> = c.env.keys().map(String::as_str).collect();
            let _ = writeln!(s, "             env      {}", names.join(","));
        }
    }
    if let Some(g) = &plan.gator {
        let _ = writeln!(
            s,
            "gator      {} serving {} with scopes {} (tokens: {})",
            g.image,
            g.mcp_url,
            g.scopes.join(" "),
            if g.token_files.is_empty() {
                "none".to_string()
            } else {
                g.token_files.join(", ")
            }
        );
    }
    if let Some(init) = &plan.initialize {
        let _ = writeln!(
            s,
            "host       initializeCommand {} in {} ({})",
            serde_json::to_string(&init.command).unwrap_or_default(),
            init.dir.display(),
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
        plan.readiness.url, plan.readiness.timeout_secs
    );
    for w in &plan.warnings {
        let _ = writeln!(s, "warning    {w}");
    }
    s
}
