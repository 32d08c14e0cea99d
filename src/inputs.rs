//! What the plan is computed from, gathered from the world: host facts read without the
//! engine (the repo, its devcontainer.json and build, the user's configuration, env
//! files, remembered approvals, CDI specs), and image facts asked of the engine (is the
//! image there, its command and PATH, the bundled and service-gator images). `up`
//! gathers both, plans, and after building the image refreshes only the image facts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::devcontainer;
use crate::git::RepoInfo;
use crate::names::{Name, random_suffix};
use crate::plan::input::{AllowName, NetworkInput, NetworkMode, TestNet, presets};
use crate::plan::{self, ImageState, PlanInput, PodPlan, RepoFacts};
use crate::podman::Engine;

/// What the user asked `up` for: the command line's say in the plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// The repo, or a folder inside it.
    pub path: PathBuf,
    pub name: Option<String>,
    pub image: Option<String>,
    /// `--config FILE`: the devcontainer.json to use.
    pub config: Option<PathBuf>,
    pub labels: Vec<(String, String)>,
    pub trust: bool,
    pub service_gator: Vec<String>,
    pub service_gator_image: Option<String>,
    pub service_gator_allow_wildcard_write: bool,
    pub rebuild: bool,
    pub ready_timeout_secs: u64,
    /// `--network`: the mode for this pod, over `[agent] network`.
    pub network: Option<NetworkMode>,
    /// `--allow`: names added to `[agent] allow` for this pod.
    pub allow: Vec<AllowName>,
    /// `--pull`: when a missing image is pulled.
    pub pull: crate::podman::images::PullPolicy,
    /// `--model`: the agent's model for this pod, over `[agent] model`.
    pub model: Option<String>,
    /// Whether a task is handed over (several presets without a model are then an
    /// error, not a warning).
    pub task: bool,
}

/// The host facts: the plan's input without the image facts, and the build context
/// when the image is built from a Dockerfile.
#[derive(Debug)]
pub(crate) struct HostFacts {
    pub input: PlanInput,
    pub prepared: Option<crate::build::Prepared>,
    /// The network guard's binary (`None` in network mode `full`).
    pub net: Option<crate::net_binary::NetBinary>,
}

/// Host environment lookup for `${localEnv:...}`.
pub(crate) fn host_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The host environment as a repo's devcontainer.json may read it through
/// `${localEnv:NAME}`/`${env:NAME}`: never the variables that hold keys devaipod keeps
/// from the repo and the agent (every provider preset's, and the secrets and credential
/// keys of the user's devaipod.toml). Without this a repo could carry a key into an
/// image name (pulled on the host), a build argument or a lifecycle command, none of
/// which asks for consent. A protected name reads as unset, and [`RepoEnv::check`]
/// then refuses the file, naming where.
pub(crate) struct RepoEnv {
    protected: std::collections::BTreeSet<String>,
    asked: std::cell::RefCell<Vec<String>>,
}

impl RepoEnv {
    /// The protected names for `config` (the user's devaipod.toml).
    pub(crate) fn new(config: &crate::config::Config) -> Self {
        let mut protected: std::collections::BTreeSet<String> = presets::PRESETS
            .iter()
            .flat_map(|p| p.env.iter().map(|v| v.to_string()))
            .collect();
        let agent = &config.agent;
        let trusted = &config.trusted.secrets;
        for entry in agent.secrets.iter().chain(trusted) {
            if let Ok(e) = crate::config::parse_secret_entry(entry) {
                protected.insert(e.name);
            }
        }
        for c in agent.credentials.values() {
            protected.insert(c.secret.get_ref().name.clone());
        }
        Self {
            protected,
            asked: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// `name`'s value, unless it is protected.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        if self.protected.contains(name) {
            self.asked.borrow_mut().push(name.to_string());
            return None;
        }
        host_env(name)
    }

    /// Refuses `loaded` when it asked for a protected variable: FILE:LINE:COL of the
    /// first place it names one.
    pub(crate) fn check(&self, loaded: &devcontainer::Loaded) -> Result<()> {
        let asked = self.asked.borrow();
        let Some(name) = asked.first() else {
            return Ok(());
        };
        let text: &str = &loaded.text;
        let at = ["${localEnv:", "${env:"]
            .iter()
            .filter_map(|kind| {
                let needle = format!("{kind}{name}");
                text.match_indices(&needle)
                    .map(|(i, _)| i)
                    .find(|i| matches!(text.as_bytes().get(i + needle.len()), Some(b'}' | b':')))
            })
            .min()
            .map(|i| {
                let (line, col) = crate::config::line_col(text, i);
                format!(":{line}:{col}")
            })
            .unwrap_or_default();
        bail!(
            "{}{at}: ${{localEnv:{name}}} names a key devaipod keeps out of a repository's reach (a provider preset's variable, or a secret or credential of your devaipod.toml): remove it from the file; the agent reaches its provider through devaipod's proxy, and [trusted] secrets reach the workspace as files",
            loaded.path.display()
        )
    }
}

/// Finds devcontainer.json for `dir`: `--config`, else in `dir` (where several named
/// configs without a default are an error), else in its parents up to `root`.
pub(crate) fn find_config(
    dir: &Path,
    root: &Path,
    explicit: Option<&Path>,
) -> Result<Option<PathBuf>> {
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

/// The repo folder `up` was pointed at, and what git says about its repo.
struct Location {
    path: PathBuf,
    repo: RepoInfo,
}

impl Location {
    fn of(path: &Path) -> Result<Self> {
        let path = path
            .canonicalize()
            .with_context(|| format!("{}: no such folder", path.display()))?;
        if !path.is_dir() {
            bail!("{} is not a folder: pass the repo folder", path.display());
        }
        let repo = RepoInfo::detect(&path)?;
        Ok(Self { path, repo })
    }

    fn facts(&self) -> RepoFacts {
        RepoFacts {
            root: self.repo.root.clone(),
            subdir: self
                .path
                .strip_prefix(&self.repo.root)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            path: self.path.clone(),
            folder_name: self.repo.folder_name(),
            head: self.repo.head.clone(),
            branch: self.repo.branch.clone(),
            uncommitted: self.repo.uncommitted,
        }
    }

    /// `--name`, else the folder's name with a short random suffix.
    fn name(&self, requested: Option<&str>) -> Result<Name> {
        match requested {
            Some(n) => Name::from_user(n).map_err(|e| match Name::suggest(n) {
                Some(s) => anyhow::anyhow!("--name: {e}; for example --name {s}"),
                None => anyhow::anyhow!("--name: {e}"),
            }),
            None => {
                let folder = self
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| self.repo.folder_name());
                Ok(Name::derive(&folder, &random_suffix()))
            }
        }
    }
}

/// The repo's devcontainer.json, read: its configuration, warnings, and the container
/// env names it takes from the host.
struct Reading {
    path: Option<PathBuf>,
    text: Option<std::sync::Arc<str>>,
    config: devcontainer::DevContainer,
    warnings: Vec<String>,
    container_env_from_host: Vec<String>,
}

fn read_devcontainer(at: &Location, explicit: Option<&Path>, env: &RepoEnv) -> Result<Reading> {
    let root = &at.repo.root;
    let path = find_config(&at.path, root, explicit)?;
    if let (Some(p), None) = (&path, explicit) {
        devcontainer::confined(p, root)?;
    }
    let Some(p) = &path else {
        return Ok(Reading {
            path,
            text: None,
            config: devcontainer::DevContainer::default(),
            warnings: Vec::new(),
            container_env_from_host: Vec::new(),
        });
    };
    let loaded = devcontainer::load(p)?;
    if let Some(key) = devcontainer::uses_host_env(&loaded.raw) {
        bail!(
            "{}: \"{key}\" uses ${{localEnv:...}}: devaipod does not carry host environment variables into the pod (they may hold secrets); write the value itself",
            p.display()
        );
    }
    let reading = devcontainer::read(&loaded, &at.path, root, &|n| env.get(n))?;
    env.check(&loaded)?;
    let container_env_from_host = devcontainer::container_env_from_host(&loaded.raw);
    Ok(Reading {
        path,
        text: Some(loaded.text.clone()),
        config: reading.config,
        warnings: loaded.warnings,
        container_env_from_host,
    })
}

/// Reads everything the plan needs that the engine does not know, checking the user's
/// configuration on the way. The image facts are left unknown.
pub(crate) fn host_facts(req: &Request) -> Result<HostFacts> {
    let at = Location::of(&req.path)?;
    let name = at.name(req.name.as_deref())?;
    let (user_config, user_config_path) = crate::config::load()?;
    let reading = read_devcontainer(&at, req.config.as_deref(), &RepoEnv::new(&user_config))?;
    let prepared = match (&reading.path, &req.image) {
        (Some(p), None) => crate::build::prepare(
            &reading.config,
            p,
            &at.repo.root,
            &at.repo.folder_name(),
            req.rebuild,
        )?,
        _ => None,
    };
    let mut config_warnings = reading.warnings;
    if let Some(b) = &prepared {
        config_warnings.extend(b.warnings.iter().cloned());
    }
    let config_file = user_config_path.unwrap_or_else(|| PathBuf::from("devaipod.toml"));
    let (agent_secrets, trusted_secrets) = user_config.secret_lists(&config_file)?;
    let agent_secret_names: Vec<String> = agent_secrets.iter().map(|s| s.name.clone()).collect();
    let (network, network_warnings, active) = network_input(
        &user_config.agent,
        &agent_secret_names,
        req,
        TestNetEnv::from_env(),
        &config_file,
        &host_env,
    )?;
    config_warnings.extend(network_warnings);
    let (agent_model, agent_model_from) =
        agent_model(&user_config.agent, req, &active, &mut config_warnings)?;
    let mut input = PlanInput {
        name,
        repo: at.facts(),
        devcontainer: reading.config,
        devcontainer_path: reading.path,
        devcontainer_text: reading.text,
        image_override: req.image.clone(),
        image_state: ImageState::Unknown {
            note: String::new(),
        },
        build: prepared.as_ref().map(|b| b.plan.clone()),
        extra_labels: req.labels.iter().cloned().collect(),
        ready_timeout_secs: req.ready_timeout_secs,
        config_warnings,
        agent_secrets: user_secrets(agent_secrets),
        trusted_secrets: user_secrets(trusted_secrets),
        agent_pids_limit: user_config
            .agent_pids_limit(&config_file)?
            .unwrap_or(plan::AGENT_PIDS_LIMIT),
        agent_memory_limit: user_config
            .agent_memory_limit(&config_file)?
            .unwrap_or(plan::AGENT_MEMORY_LIMIT),
        agent_disk_limit: user_config.agent_disk_limit(&config_file)?,
        volume_quota: plan::VolumeQuota::Unknown,
        container_env_from_host: reading.container_env_from_host,
        env_files: BTreeMap::new(),
        image_command: None,
        approved: Vec::new(),
        bundled_id: None,
        features_image: None,
        feature_settings: Vec::new(),
        image_path: None,
        gator: gator_input(&user_config.service_gator, req)?,
        agent_model,
        agent_model_from,
        agent_opencode: user_config.agent_opencode_json(&config_file)?,
        network,
        cdi_gpu: plan::cdi_gpu_in(&read_cdi_specs()),
        net_image: String::new(),
        net_image_state: ImageState::Unknown {
            note: String::new(),
        },
        trust: if req.trust {
            Some("--trust".to_string())
        } else if user_config.trusts(&at.repo.root) {
            Some(format!("[repos] trust in {}", config_file.display()))
        } else {
            None
        },
    };
    input.approved = remembered_approval(&input).into_iter().collect();
    input.env_files = read_env_files(
        &input.devcontainer,
        &at.path,
        &at.repo.root,
        &input.config_file(),
    )?;
    // The image is the agent's network guard and the workspace's SSH helpers. Without
    // the binary the plan still reads (`--dry-run` shows why); `up` refuses, unless the
    // network is `full`: then the pod has no guard to miss, and the workspace goes
    // without the helpers (the plan says so).
    let net = match crate::net_binary::find() {
        Ok(n) => Some(n),
        Err(_) if input.network.mode == plan::input::NetworkMode::Full => None,
        Err(e) => {
            input.net_image = format!("{}:missing", crate::net_binary::NET_IMAGE_REPO);
            input.net_image_state = ImageState::Missing {
                note: format!("{e:#}"),
            };
            None
        }
    };
    if let Some(n) = &net {
        input.net_image = n.image.clone();
    }
    Ok(HostFacts {
        input,
        prepared,
        net,
    })
}

/// The agent's network for this pod: `[agent] network`, `allow` and `credentials`, with
/// `--network` over the mode and `--allow` added to the names; the provider presets in
/// use (whose routes are among the credentials); the host's addresses; the test
/// settings. Also what `up` says about them. `env` looks up devaipod's environment.
fn network_input(
    agent: &crate::config::AgentConfig,
    agent_secrets: &[String],
    req: &Request,
    test: TestNetEnv,
    config_file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(NetworkInput, Vec<String>, Vec<presets::Active>)> {
    let (mode, source) = match req.network {
        Some(m) => (m, format!("--network {m}")),
        None => {
            let m = agent.network_mode();
            (m, format!("[agent] network = \"{m}\""))
        }
    };
    let mut warnings = Vec::new();
    if mode != NetworkMode::Allowlist && !req.allow.is_empty() {
        bail!(
            "--allow adds names to the allowlist, but this pod's network is \"{mode}\" ({source}), which has none: drop --allow, or pass --network allowlist"
        );
    }
    let mut allow = Vec::new();
    if mode == NetworkMode::Allowlist {
        allow = agent.allowed.clone();
    } else if !agent.allow.is_empty() {
        warnings.push(format!(
            "{source}: the {} name(s) of [agent] allow are not used for this pod",
            agent.allow.len()
        ));
    }
    for a in &req.allow {
        if !allow.contains(a) {
            allow.push(a.clone());
        }
    }
    let mut credentials = agent.credential_inputs();
    let in_file = |at: &str| format!("{}:{at}", config_file.display());
    let active = if mode == NetworkMode::Full {
        // No proxy runs: nothing could hold a key for the agent.
        if let Some(c) = credentials.first() {
            bail!(
                "{}: [agent.credentials.{}] needs devaipod's proxy to hold the key, but this pod's network is \"full\" ({source}), which runs no proxy: use network \"allowlist\" (the default) or \"none\", or remove [agent.credentials]",
                config_file.display(),
                c.provider
            );
        }
        if let Some(n) = agent.named_presets.as_ref().and_then(|n| n.first()) {
            bail!(
                "{}: [agent] providers names {}, whose key devaipod's proxy holds, but this pod's network is \"full\" ({source}), which runs no proxy: use network \"allowlist\" (the default) or \"none\", or remove providers",
                in_file(&n.at),
                n.id
            );
        }
        let unused: Vec<&str> = match agent.named_presets {
            Some(_) => Vec::new(),
            None => presets::PRESETS
                .iter()
                .filter_map(|p| p.variable(env))
                .collect(),
        };
        if !unused.is_empty() {
            warnings.push(format!(
                "{source}: no proxy runs, so the provider keys in {} are not used (a preset needs the proxy); the agent has no key for those providers",
                unused.join(", ")
            ));
        }
        Vec::new()
    } else {
        let named: Option<Vec<presets::NamedPreset>> = agent.named_presets.as_ref().map(|n| {
            n.iter()
                .map(|p| presets::NamedPreset {
                    at: in_file(&p.at),
                    ..p.clone()
                })
                .collect()
        });
        let hand: Vec<presets::HandSetting> = agent
            .hand_settings
            .iter()
            .map(|h| presets::HandSetting {
                at: in_file(&h.at),
                ..h.clone()
            })
            .collect();
        let explicit: Vec<String> = credentials.iter().map(|c| c.provider.clone()).collect();
        let urls = test.preset_urls()?;
        let choice = presets::Choice {
            named: named.as_deref(),
            explicit: &explicit,
            hand: &hand,
            agent_secrets,
            test_urls: urls.as_ref(),
        };
        let (active, notes) = presets::choose(&choice, env).map_err(|e| anyhow::anyhow!(e))?;
        warnings.extend(notes);
        for (id, url) in urls.iter().flatten() {
            warnings.push(format!(
                "{TEST_PRESET_URLS} is set: the {id} preset goes to {url} instead of {} (a test-only setting)",
                presets::by_id(id).map(|p| p.base_url).unwrap_or_default()
            ));
        }
        credentials.extend(active.iter().map(|a| a.credential.clone()));
        active
    };
    let network = NetworkInput {
        mode,
        allow,
        credentials,
        deny_nets: host_addresses()?,
        test: test.read()?,
    };
    warnings.extend(network.warnings(&source, agent_secrets));
    Ok((network, warnings, active))
}

/// The agent's model: `up --model`, else `[agent] model`, else (unless `[agent.opencode]`
/// sets `model` itself) the default of the one preset in use; with several presets in
/// use and none of these, an error when a task is handed over, else a warning. Also
/// where a default came from, for the plan.
fn agent_model(
    agent: &crate::config::AgentConfig,
    req: &Request,
    active: &[presets::Active],
    warnings: &mut Vec<String>,
) -> Result<(Option<String>, Option<String>)> {
    if let Some(m) = req.model.clone().or_else(|| agent.model.clone()) {
        return Ok((Some(m), None));
    }
    if agent
        .opencode
        .as_ref()
        .is_some_and(|t| t.contains_key("model"))
    {
        return Ok((None, None));
    }
    match presets::default_model(active) {
        Ok(Some(m)) => Ok((
            Some(m.to_string()),
            Some(format!(
                "the {} preset's default (from {}); set [agent] model or pass --model to change it",
                active[0].preset.id, active[0].origin
            )),
        )),
        Ok(None) => Ok((None, None)),
        Err(e) if req.task => bail!("{e}"),
        Err(e) => {
            warnings.push(format!(
                "{e}; without a task, opencode picks one of them itself"
            ));
            Ok((None, None))
        }
    }
}

/// The host's own interface addresses as /32 and /128 CIDRs, sorted: the proxy refuses
/// them whatever name resolves to them.
fn host_addresses() -> Result<Vec<String>> {
    let addrs = nix::ifaddrs::getifaddrs().context(
        "listing the host's network addresses (getifaddrs), which the agent's proxy refuses",
    )?;
    let ips: std::collections::BTreeSet<std::net::IpAddr> = addrs
        .filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        .collect();
    Ok(ips.into_iter().map(host_cidr).collect())
}

/// One address as a CIDR of itself alone.
fn host_cidr(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}/32"),
        std::net::IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// The proxy's test-only settings as devaipod's own environment names them: the
/// values of `DEVAIPOD_TEST_NET_CA` (a PEM file) and `DEVAIPOD_TEST_NET_HOSTS` (a name
/// map file). Nothing in a repo or the config file reaches them.
#[derive(Debug, Clone, Default)]
pub(crate) struct TestNetEnv {
    pub ca: Option<std::ffi::OsString>,
    pub hosts: Option<std::ffi::OsString>,
    /// `DEVAIPOD_TEST_PRESET_URLS`: `ID=URL,...`, base URLs of presets.
    pub preset_urls: Option<std::ffi::OsString>,
}

const TEST_NET_CA: &str = "DEVAIPOD_TEST_NET_CA";
const TEST_NET_HOSTS: &str = "DEVAIPOD_TEST_NET_HOSTS";
const TEST_PRESET_URLS: &str = "DEVAIPOD_TEST_PRESET_URLS";

impl TestNetEnv {
    fn from_env() -> Self {
        Self {
            ca: std::env::var_os(TEST_NET_CA),
            hosts: std::env::var_os(TEST_NET_HOSTS),
            preset_urls: std::env::var_os(TEST_PRESET_URLS),
        }
    }

    /// The presets' test base URLs, checked; `None` when unset. Only beside the test
    /// name map (`DEVAIPOD_TEST_NET_HOSTS`): on its own it would send a real key to
    /// whatever answers that URL.
    fn preset_urls(&self) -> Result<Option<BTreeMap<String, String>>> {
        let Some(v) = &self.preset_urls else {
            return Ok(None);
        };
        if self.hosts.is_none() {
            bail!(
                "{TEST_PRESET_URLS} is set without {TEST_NET_HOSTS}: it is a test-only setting of the fake internet (tests/net), never for real keys; unset it"
            );
        }
        let text = v
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{TEST_PRESET_URLS} is not UTF-8"))?;
        presets::parse_test_urls(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{TEST_PRESET_URLS}: {e} (ID=URL[,ID=URL...])"))
    }

    /// Reads the files named, each checked; `None` when neither is set.
    fn read(&self) -> Result<Option<TestNet>> {
        if self.ca.is_none() && self.hosts.is_none() {
            return Ok(None);
        }
        let ca_pem = self
            .ca
            .as_deref()
            .map(|p| {
                let (path, text) = read_named_file(TEST_NET_CA, p, "a PEM file of the test CA")?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    bail!(
                        "{TEST_NET_CA}={}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                        path.display()
                    );
                }
                Ok(text)
            })
            .transpose()?;
        let hosts = match self.hosts.as_deref() {
            Some(p) => {
                let (path, text) =
                    read_named_file(TEST_NET_HOSTS, p, "a file of lines NAME ADDR [ADDR...]")?;
                parse_test_hosts(&text)
                    .map_err(|e| anyhow::anyhow!("{TEST_NET_HOSTS}={}:{e}", path.display()))?
            }
            None => BTreeMap::new(),
        };
        Ok(Some(TestNet { ca_pem, hosts }))
    }
}

/// Reads the file an environment variable names (`what` it should be, for errors).
fn read_named_file(var: &str, value: &std::ffi::OsStr, what: &str) -> Result<(PathBuf, String)> {
    if value.is_empty() {
        bail!("{var} is set but empty: name {what}, or unset it");
    }
    let path = PathBuf::from(value);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{var}={}: reading {what}", path.display()))?;
    Ok((path, text))
}

/// Parses the test name map: lines `NAME ADDR [ADDR...]`; blank lines and lines
/// starting with `#` are skipped. Errors are `LINE: message`.
pub(crate) fn parse_test_hosts(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_ascii_lowercase();
        plan::input::net::check_name(&name).map_err(|e| format!("{n}: name {name:?}: {e}"))?;
        let mut addrs = Vec::new();
        for w in words {
            let ip: std::net::IpAddr = w
                .parse()
                .map_err(|_| format!("{n}: {w:?} is not an IPv4 or IPv6 address"))?;
            addrs.push(ip.to_string());
        }
        if addrs.is_empty() {
            return Err(format!("{n}: {name} has no address (NAME ADDR [ADDR...])"));
        }
        if out.insert(name.clone(), addrs).is_some() {
            return Err(format!("{n}: {name} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("1: no NAME ADDR line in it".into());
    }
    Ok(out)
}

fn user_secrets(entries: Vec<crate::config::SecretEntry>) -> Vec<plan::UserSecret> {
    entries
        .into_iter()
        .map(|e| plan::UserSecret {
            env_name: e.name,
            existing: e.existing,
        })
        .collect()
}

/// The service-gator the user asked for: `[service-gator]` and `--service-gator`
/// scopes together, the image from the command line, the file, or the default.
fn gator_input(g: &crate::config::GatorConfig, req: &Request) -> Result<Option<plan::GatorInput>> {
    let texts: Vec<String> = g.scopes.iter().chain(&req.service_gator).cloned().collect();
    if texts.is_empty() {
        if req.service_gator_image.is_some() {
            bail!(
                "--service-gator-image without any scope: add --service-gator SCOPE (or [service-gator] scopes)"
            );
        }
        return Ok(None);
    }
    let scopes = plan::gator::parse_scopes(
        &texts,
        g.allow_wildcard_write || req.service_gator_allow_wildcard_write,
    )
    .map_err(anyhow::Error::msg)?;
    let image = req
        .service_gator_image
        .clone()
        .or_else(|| g.image.clone())
        .unwrap_or_else(|| plan::gator::DEFAULT_IMAGE.to_string());
    if !plan::valid_image(&image) {
        bail!("service-gator image {image:?} is not a valid image reference");
    }
    if let Some(u) = &g.jira_username
        && (u.is_empty() || u.len() > 256 || u.chars().any(char::is_control))
    {
        bail!(
            "[service-gator] jira_username must be 1 to 256 characters without control characters (JIRA's user name or e-mail address)"
        );
    }
    Ok(Some(plan::GatorInput {
        image,
        scopes,
        gitlab_host: g.gitlab_host.clone(),
        jira_host: g.jira_host.clone(),
        jira_username: g.jira_username.clone(),
        entrypoint: None,
    }))
}

/// The approval key of the repo's initializeCommand, when the user approved it before.
fn remembered_approval(input: &PlanInput) -> Option<String> {
    let cmd = input
        .devcontainer
        .initialize_command
        .as_ref()
        .and_then(plan::Command::from_value)?;
    let state = crate::state::StateDir::from_env()?;
    let key = plan::InitializePlan::key_for(&input.repo.root, &cmd);
    state.approved(&key).then_some(key)
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
        let text = read_env_file(&real)?;
        out.insert(f, text);
    }
    Ok(out)
}

/// An `--env-file` as text, at most the size of a devcontainer.json (it is the repo's
/// file: a larger one, or a device, is refused before it is read whole).
fn read_env_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let limit = devcontainer::MAX_CONFIG_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{}: an --env-file larger than the {limit} byte limit; it holds NAME=VALUE lines",
            path.display()
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))
}

/// What the engine knows of the images the plan uses.
#[derive(Debug, Clone)]
pub(crate) struct ImageFacts {
    /// The image's own command and PATH (for overrideCommand: false), when present.
    pub command: Option<(Vec<String>, Option<String>)>,
    /// The bundled image's id (it has git and opencode), when in the local store.
    pub bundled_id: Option<String>,
    pub state: ImageState,
    /// The network guard's image: present, or made by `up` from the binary.
    pub net_state: ImageState,
    /// Images `up` pulls before it creates anything (the pod's, the service-gator's).
    pub pulls: Vec<String>,
    /// The service-gator image's ENTRYPOINT, when it is in the local store.
    pub gator_entrypoint: Option<Vec<String>>,
    /// Whether the engine's storage holds a volume to a size (asked only when the
    /// agent has a disk limit).
    pub volume_quota: plan::VolumeQuota,
}

impl ImageFacts {
    /// No engine to ask: the image is reported as not checked, and why.
    pub(crate) fn unknown(why: &str) -> Self {
        Self {
            command: None,
            bundled_id: None,
            state: ImageState::Unknown {
                note: format!("not checked: {why}"),
            },
            net_state: ImageState::Unknown {
                note: format!("not checked: {why}"),
            },
            pulls: Vec::new(),
            gator_entrypoint: None,
            volume_quota: plan::VolumeQuota::Unknown,
        }
    }

    /// Puts the facts into the plan's input.
    pub(crate) fn apply_to(self, input: &mut PlanInput) {
        if let Some((cmd, path)) = self.command {
            input.image_command = Some(cmd);
            input.image_path = path;
        }
        input.bundled_id = self.bundled_id;
        input.image_state = self.state;
        input.volume_quota = self.volume_quota;
        if let Some(g) = input.gator.as_mut() {
            g.entrypoint = self.gator_entrypoint;
        }
        // A missing binary stays missing, whatever the engine says.
        if !matches!(input.net_image_state, ImageState::Missing { .. }) {
            input.net_image_state = self.net_state;
        }
    }
}

/// Asks the engine about the plan's images (and whether its storage holds the agent's
/// volumes to a size). `rebuild`: the image is built even if
/// present. `pull`: which missing (or, `always`, present) images `up` pulls; with
/// `never`, a missing image is reported (the plan then refuses) and a missing
/// service-gator image is an error.
pub(crate) async fn image_facts(
    engine: &Engine,
    input: &PlanInput,
    rebuild: bool,
    pull: crate::podman::images::PullPolicy,
) -> Result<ImageFacts> {
    use crate::podman::images::PullPolicy;
    let (image, _) = plan::choose_image(input)?;
    let command = engine.image_command(&image).await?;
    let bundled_id = engine.image_id(plan::BUNDLED_IMAGE).await?;
    let to_build = input.image_override.is_none() && input.build.is_some();
    let mut pulls = Vec::new();
    let state = if to_build && rebuild {
        ImageState::WillBuild
    } else {
        match engine.image_id(&image).await? {
            _ if to_build && pull == PullPolicy::Always => ImageState::WillBuild,
            Some(_) if pull == PullPolicy::Always && !is_local_only(&image) => {
                pulls.push(image.clone());
                ImageState::WillPull
            }
            Some(id) => ImageState::Present { id },
            None if to_build => ImageState::WillBuild,
            None if pull != PullPolicy::Never && !is_local_only(&image) => {
                pulls.push(image.clone());
                ImageState::WillPull
            }
            None => ImageState::Missing {
                note: missing_image_note(&image, pull),
            },
        }
    };
    let mut gator_entrypoint = None;
    if let Some(g) = &input.gator {
        gator_entrypoint = engine.image_entrypoint(&g.image).await?;
        let present = gator_entrypoint.is_some();
        if (!present || pull == PullPolicy::Always)
            && pull != PullPolicy::Never
            && !is_local_only(&g.image)
        {
            pulls.push(g.image.clone());
        } else if !present {
            bail!(
                "the service-gator image {} is not in the local image store{}: run `podman pull {}` (or build it), or name another with --service-gator-image",
                g.image,
                if pull == PullPolicy::Never {
                    " and --pull never pulls nothing"
                } else {
                    " and cannot be pulled (a localhost/ name)"
                },
                g.image
            );
        }
    }
    let net_state = if input.net_image.is_empty() {
        ImageState::Unknown {
            note: "no devaipod-net binary (network = full)".into(),
        }
    } else if let ImageState::Missing { .. } = &input.net_image_state {
        input.net_image_state.clone()
    } else {
        match engine.image_id(&input.net_image).await? {
            Some(id) => ImageState::Present { id },
            None => ImageState::WillBuild,
        }
    };
    let volume_quota = match input.agent_disk_limit {
        Some(_) => engine.volume_quota().await,
        None => plan::VolumeQuota::Unknown,
    };
    Ok(ImageFacts {
        command,
        bundled_id,
        state,
        net_state,
        pulls,
        gator_entrypoint,
        volume_quota,
    })
}

/// `localhost/...` names only ever exist locally (built or imported): never pulled.
fn is_local_only(image: &str) -> bool {
    image.starts_with("localhost/")
}

fn missing_image_note(image: &str, pull: crate::podman::images::PullPolicy) -> String {
    if image.starts_with("localhost/devaipod-base") {
        "not in the local image store; build it with `just image` in devaipod's checkout (a localhost/ image is never pulled), or pass --image IMAGE".into()
    } else if is_local_only(image) {
        format!(
            "not in the local image store (a localhost/ image is never pulled): build or load {image}, then retry"
        )
    } else if pull == crate::podman::images::PullPolicy::Never {
        format!(
            "not in the local image store and --pull never pulls nothing: run `podman pull {image}`, or retry with --pull missing (the default)"
        )
    } else {
        format!("not in the local image store: run `podman pull {image}`, then retry")
    }
}

/// The plan of `input`, with the host-side checks the pure plan cannot make.
pub(crate) fn plan(input: &PlanInput) -> Result<PodPlan> {
    let plan = plan::build(input)?;
    check_bind_sources(&plan)?;
    Ok(plan)
}

/// Host-side checks of the workspace's bind mounts (the plan checked their consent and
/// their names): the source exists, and once symlinks are resolved it is neither a
/// socket nor an engine's path.
fn check_bind_sources(plan: &PodPlan) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    for c in &plan.containers {
        for m in c
            .mounts
            .iter()
            .filter(|m| m.kind == crate::plan::MountKind::Bind)
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(toml: &str) -> crate::config::AgentConfig {
        crate::config::parse(toml).expect("config").agent
    }

    fn names(n: &NetworkInput) -> Vec<String> {
        n.allow.iter().map(|a| a.to_string()).collect()
    }

    fn allow(s: &str) -> AllowName {
        s.parse().expect("allow")
    }

    /// [`super::network_input`] with an empty environment, for the tests of the network.
    fn network_input(
        a: &crate::config::AgentConfig,
        secrets: &[String],
        req: &Request,
        test: TestNetEnv,
    ) -> Result<(NetworkInput, Vec<String>)> {
        super::network_input(a, secrets, req, test, Path::new("c.toml"), &|_| None)
            .map(|(n, w, _)| (n, w))
    }

    /// The network, warnings, model and its origin.
    type Presets = (NetworkInput, Vec<String>, Option<String>, Option<String>);

    /// The presets and model of `toml` with environment `env`, as `up` sees them.
    fn presets_of(toml: &str, env: &[(&str, &str)], req: &Request) -> Result<Presets> {
        let a = agent(toml);
        let secrets: Vec<String> = a
            .secrets
            .iter()
            .map(|s| s.split('=').next().unwrap_or_default().to_string())
            .collect();
        let lookup = |v: &str| {
            env.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        };
        let hosts = tempfile::NamedTempFile::new().expect("hosts file");
        std::fs::write(hosts.path(), "llm.test 198.51.100.7\n").expect("write");
        let test = TestNetEnv {
            preset_urls: Some("deepseek=https://llm.test/t/v1".into()),
            hosts: Some(hosts.path().into()),
            ..Default::default()
        };
        let (n, mut w, active) =
            super::network_input(&a, &secrets, req, test, Path::new("c.toml"), &lookup)?;
        let (model, from) = agent_model(&a, req, &active, &mut w)?;
        Ok((n, w, model, from))
    }

    #[test]
    fn a_key_in_the_environment_is_a_preset_and_chooses_the_model() {
        let req = Request::default();
        let (n, w, model, from) =
            presets_of("", &[("ANTHROPIC_API_KEY", "sk-sentinel")], &req).expect("preset");
        assert_eq!(n.credentials.len(), 1);
        let c = &n.credentials[0];
        assert_eq!(
            (
                c.provider.as_str(),
                c.base_url.as_str(),
                c.header.as_str(),
                c.prefix.as_str(),
                c.secret.env_name.as_str(),
                c.preset.as_deref()
            ),
            (
                "anthropic",
                "https://api.anthropic.com/v1",
                "x-api-key",
                "",
                "ANTHROPIC_API_KEY",
                Some("anthropic")
            )
        );
        assert_eq!(model.as_deref(), Some("anthropic/claude-sonnet-4-5"));
        assert_eq!(
            from.as_deref(),
            Some(
                "the anthropic preset's default (from ANTHROPIC_API_KEY); set [agent] model or pass --model to change it"
            )
        );
        assert!(
            w.iter().all(|w| !w.contains("sk-sentinel")),
            "a warning shows the key: {w:?}"
        );
        // [agent] model and --model win over the default, --model over the file.
        let (_, _, model, from) = presets_of(
            "[agent]\nmodel = \"anthropic/claude-opus-4-5\"\n",
            &[("ANTHROPIC_API_KEY", "k")],
            &req,
        )
        .expect("model");
        assert_eq!(
            (model.as_deref(), from),
            (Some("anthropic/claude-opus-4-5"), None)
        );
        let flag = Request {
            model: Some("anthropic/claude-haiku-4-5".into()),
            ..Default::default()
        };
        let (_, _, model, _) = presets_of(
            "[agent]\nmodel = \"anthropic/claude-opus-4-5\"\n",
            &[("ANTHROPIC_API_KEY", "k")],
            &flag,
        )
        .expect("flag");
        assert_eq!(model.as_deref(), Some("anthropic/claude-haiku-4-5"));
        // [agent.opencode] model is the user's choice too: no default over it.
        let (_, _, model, from) = presets_of(
            "[agent.opencode]\nmodel = \"anthropic/claude-opus-4-5\"\n",
            &[("ANTHROPIC_API_KEY", "k")],
            &req,
        )
        .expect("opencode model");
        assert_eq!((model, from), (None, None));
        // Nothing set: no preset, no model.
        let (n, _, model, _) = presets_of("", &[], &req).expect("none");
        assert!(n.credentials.is_empty() && model.is_none());
        // The test-only base URL, warned about.
        let (n, w, _, _) = presets_of("", &[("DEEPSEEK_API_KEY", "d")], &req).expect("test");
        assert_eq!(n.credentials[0].base_url, "https://llm.test/t/v1");
        assert!(
            w.contains(&"DEVAIPOD_TEST_PRESET_URLS is set: the deepseek preset goes to https://llm.test/t/v1 instead of https://api.deepseek.com (a test-only setting)".to_string()),
            "{w:?}"
        );
    }

    #[test]
    fn several_presets_without_a_model_refuse_a_task_and_warn_otherwise() {
        let env = [("OPENAI_API_KEY", "o"), ("GROQ_API_KEY", "g")];
        let (n, w, model, _) = presets_of("", &env, &Request::default()).expect("no task");
        assert_eq!(n.credentials.len(), 2);
        assert_eq!(model, None);
        assert!(
            w.iter().any(|w| w.starts_with("several provider presets are in use (openai from OPENAI_API_KEY, groq from GROQ_API_KEY) and no model is chosen")),
            "{w:?}"
        );
        let task = Request {
            task: true,
            ..Default::default()
        };
        let e = presets_of("", &env, &task).expect_err("task");
        assert!(
            e.to_string().starts_with("several provider presets are in use (openai from OPENAI_API_KEY, groq from GROQ_API_KEY) and no model is chosen: pass --model (e.g. --model openai/gpt-5)"),
            "{e}"
        );
        // [agent] providers chooses one of them.
        let (n, _, model, _) =
            presets_of("[agent]\nproviders = [\"groq\"]\n", &env, &task).expect("named");
        assert_eq!(n.credentials.len(), 1);
        assert_eq!(model.as_deref(), Some("groq/openai/gpt-oss-120b"));
    }

    #[test]
    fn explicit_credentials_win_and_conflicts_name_both() {
        let explicit = "[agent.credentials.anthropic]\nbase_url = \"https://mirror.example/v1\"\nheader = \"x-api-key\"\nsecret = \"MY_KEY\"\n";
        let (n, _, model, _) =
            presets_of(explicit, &[("ANTHROPIC_API_KEY", "a")], &Request::default())
                .expect("explicit");
        assert_eq!(n.credentials.len(), 1);
        assert_eq!(n.credentials[0].base_url, "https://mirror.example/v1");
        assert_eq!(n.credentials[0].preset, None);
        // The explicit one is no preset: no default model.
        assert_eq!(model, None);
        let e = presets_of(
            "[agent.opencode.provider.openai.options]\napiKey = \"{file:/run/secrets/OPENAI_API_KEY}\"\n",
            &[("OPENAI_API_KEY", "o")],
            &Request::default(),
        )
        .expect_err("hand");
        assert_eq!(
            e.to_string(),
            "c.toml:2:1: [agent.opencode] provider.openai.options.apiKey configures provider openai by hand, but OPENAI_API_KEY is set in devaipod's environment, which makes openai a built-in credential route (the proxy holds the key): remove provider.openai.options.apiKey to use the preset, or set [agent] providers to the presets you want (without openai)"
        );
        let e = presets_of(
            "[agent]\nsecrets = [\"OPENAI_API_KEY\"]\n",
            &[("OPENAI_API_KEY", "o")],
            &Request::default(),
        )
        .expect_err("secret");
        assert!(
            e.to_string().starts_with(
                "[agent] secrets lists OPENAI_API_KEY, which puts it inside the agent"
            ),
            "{e}"
        );
        // providers = [] keeps the old setup working.
        let (n, _, _, _) = presets_of(
            "[agent]\nproviders = []\nsecrets = [\"OPENAI_API_KEY\"]\n",
            &[("OPENAI_API_KEY", "o")],
            &Request::default(),
        )
        .expect("none");
        assert!(n.credentials.is_empty());
        let e = presets_of(
            "[agent]\nproviders = [\"mistral\"]\n",
            &[],
            &Request::default(),
        )
        .expect_err("unset");
        assert!(
            e.to_string().starts_with(
                "c.toml:2:14: [agent] providers names mistral, but MISTRAL_API_KEY is not set"
            ),
            "{e}"
        );
    }

    #[test]
    fn network_full_runs_no_proxy_for_a_key() {
        let full = Request {
            network: Some(NetworkMode::Full),
            ..Default::default()
        };
        let (n, w, model, _) = presets_of("", &[("XAI_API_KEY", "x")], &full).expect("full");
        assert!(n.credentials.is_empty() && model.is_none());
        assert!(
            w.contains(&"--network full: no proxy runs, so the provider keys in XAI_API_KEY are not used (a preset needs the proxy); the agent has no key for those providers".to_string()),
            "{w:?}"
        );
        let e = presets_of(
            "[agent]\nproviders = [\"xai\"]\n",
            &[("XAI_API_KEY", "x")],
            &full,
        )
        .expect_err("named");
        assert!(e.to_string().starts_with("c.toml:2:14: [agent] providers names xai, whose key devaipod's proxy holds, but this pod's network is \"full\" (--network full)"), "{e}");
        let e = presets_of(
            "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"h\"\nsecret = \"K\"\n",
            &[],
            &full,
        )
        .expect_err("credentials");
        assert!(e.to_string().starts_with("c.toml: [agent.credentials.a] needs devaipod's proxy to hold the key, but this pod's network is \"full\""), "{e}");
    }

    #[test]
    fn the_command_line_overrides_the_mode_and_adds_names() {
        let a = agent("[agent]\nallow = [\"a.example\", \"b.example:22\"]\n");
        let (n, warnings) =
            network_input(&a, &[], &Request::default(), TestNetEnv::default()).expect("net");
        assert_eq!(n.mode, NetworkMode::Allowlist);
        assert_eq!(names(&n), ["a.example", "b.example:22"]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(n.test, None);

        let req = Request {
            allow: vec![allow("c.example"), allow("a.example")],
            ..Default::default()
        };
        let (n, _) = network_input(&a, &[], &req, TestNetEnv::default()).expect("net");
        assert_eq!(names(&n), ["a.example", "b.example:22", "c.example"]);

        // --network none drops the config's names for this pod, and says so.
        let req = Request {
            network: Some(NetworkMode::None),
            ..Default::default()
        };
        let (n, warnings) = network_input(&a, &[], &req, TestNetEnv::default()).expect("net");
        assert_eq!((n.mode, n.allow.len()), (NetworkMode::None, 0));
        assert_eq!(
            warnings,
            ["--network none: the 2 name(s) of [agent] allow are not used for this pod"]
        );

        // --allow with a mode that has no allowlist is refused by name.
        let req = Request {
            network: Some(NetworkMode::Full),
            allow: vec![allow("c.example")],
            ..Default::default()
        };
        let e = network_input(&a, &[], &req, TestNetEnv::default()).expect_err("full");
        assert_eq!(
            e.to_string(),
            "--allow adds names to the allowlist, but this pod's network is \"full\" (--network full), which has none: drop --allow, or pass --network allowlist"
        );
        let none = agent("[agent]\nnetwork = \"none\"\n");
        let req = Request {
            allow: vec![allow("c.example")],
            ..Default::default()
        };
        let e = network_input(&none, &[], &req, TestNetEnv::default()).expect_err("none");
        assert!(
            e.to_string()
                .contains("this pod's network is \"none\" ([agent] network = \"none\")"),
            "{e}"
        );
        // ... unless the command line also sets allowlist.
        let req = Request {
            network: Some(NetworkMode::Allowlist),
            allow: vec![allow("c.example")],
            ..Default::default()
        };
        let (n, _) = network_input(&none, &[], &req, TestNetEnv::default()).expect("net");
        assert_eq!(names(&n), ["c.example"]);
    }

    #[test]
    fn full_access_and_agent_secrets_are_warned_about() {
        let a = agent("[agent]\nnetwork = \"full\"\n");
        let (n, warnings) = network_input(
            &a,
            &["OTHER".into()],
            &Request::default(),
            TestNetEnv::default(),
        )
        .expect("net");
        assert!(n.credentials.is_empty());
        assert_eq!(
            warnings,
            [
                "[agent] network = \"full\": the agent can reach any address, including the workspace's loopback services and the host's; see docs/security.md",
                "[agent] secrets OTHER: these secrets are inside the agent, which can read and send them; [agent.credentials] keeps a provider key in the proxy instead",
            ]
        );
        assert!(
            n.deny_nets.iter().any(|c| c == "127.0.0.1/32"),
            "{:?}",
            n.deny_nets
        );
    }

    #[test]
    fn the_hosts_own_addresses_are_single_address_cidrs() {
        let nets = host_addresses().expect("getifaddrs");
        assert!(nets.iter().any(|c| c == "127.0.0.1/32"), "{nets:?}");
        for c in &nets {
            let (ip, len) = c.split_once('/').expect("cidr");
            let ip: std::net::IpAddr = ip.parse().expect(c);
            assert_eq!(len, if ip.is_ipv4() { "32" } else { "128" }, "{c}");
        }
        let mut sorted = nets.clone();
        sorted.dedup();
        assert_eq!(sorted, nets);
        assert_eq!(host_cidr("fe80::1".parse().expect("ip")), "fe80::1/128");
    }

    #[test]
    fn test_hosts_files() {
        let map = parse_test_hosts(
            "# the fake internet\n\nAllowed.test 198.51.100.10\n  private.test 10.0.0.1 2001:db8::1 \n",
        )
        .expect("hosts");
        assert_eq!(
            map,
            BTreeMap::from([
                (
                    "allowed.test".to_string(),
                    vec!["198.51.100.10".to_string()]
                ),
                (
                    "private.test".to_string(),
                    vec!["10.0.0.1".to_string(), "2001:db8::1".to_string()]
                ),
            ])
        );
        for (bad, want) in [
            ("a.test\n", "1: a.test has no address (NAME ADDR [ADDR...])"),
            (
                "a.test 1.2.3\n",
                "1: \"1.2.3\" is not an IPv4 or IPv6 address",
            ),
            (
                "\n1.2.3.4 1.2.3.4\n",
                "2: name \"1.2.3.4\": an IP address literal",
            ),
            (
                "a.test 1.1.1.1\na.test 2.2.2.2\n",
                "2: a.test is listed twice",
            ),
            ("# nothing\n", "1: no NAME ADDR line in it"),
        ] {
            let e = parse_test_hosts(bad).expect_err(bad);
            assert!(e.starts_with(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn test_settings_come_from_the_files_the_environment_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let ca = d.path().join("ca.pem");
        let hosts = d.path().join("hosts");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        std::fs::write(&hosts, "a.test 198.51.100.1\n").expect("write");
        let env = TestNetEnv {
            ca: Some(ca.clone().into()),
            hosts: Some(hosts.clone().into()),
            preset_urls: None,
        };
        let t = env.read().expect("read").expect("set");
        assert!(
            t.ca_pem
                .expect("pem")
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(t.hosts["a.test"], ["198.51.100.1"]);
        let only_hosts = TestNetEnv {
            ca: None,
            hosts: Some(hosts.clone().into()),
            preset_urls: None,
        };
        assert_eq!(only_hosts.read().expect("read").expect("set").ca_pem, None);
        assert_eq!(TestNetEnv::default().read().expect("unset"), None);

        let err = |env: TestNetEnv| format!("{:#}", env.read().expect_err("bad"));
        std::fs::write(&hosts, "a.test nowhere\n").expect("write");
        assert_eq!(
            err(TestNetEnv {
                ca: None,
                hosts: Some(hosts.clone().into()),
                preset_urls: None,
            }),
            format!(
                "DEVAIPOD_TEST_NET_HOSTS={}:1: \"nowhere\" is not an IPv4 or IPv6 address",
                hosts.display()
            )
        );
        std::fs::write(&ca, "not a certificate\n").expect("write");
        assert_eq!(
            err(TestNetEnv {
                ca: Some(ca.clone().into()),
                hosts: None,
                preset_urls: None,
            }),
            format!(
                "DEVAIPOD_TEST_NET_CA={}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                ca.display()
            )
        );
        let missing = d.path().join("missing.pem");
        let e = err(TestNetEnv {
            ca: Some(missing.clone().into()),
            hosts: None,
            preset_urls: None,
        });
        assert!(
            e.starts_with(&format!(
                "DEVAIPOD_TEST_NET_CA={}: reading a PEM file of the test CA: ",
                missing.display()
            )),
            "{e}"
        );
        assert_eq!(
            err(TestNetEnv {
                ca: Some("".into()),
                hosts: None,
                preset_urls: None,
            }),
            "DEVAIPOD_TEST_NET_CA is set but empty: name a PEM file of the test CA, or unset it"
        );
    }
}
