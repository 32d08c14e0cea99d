//! The agent's network (docs/security.md, "The agent's network"). Unless the user asks
//! for `full`, the pod gets two more containers, both running devaipod-net (a static
//! binary in its own scratch image, `localhost/devaipod-net:KEY`):
//!
//! - `rules`, a Podman init container (run before the others on every start of the
//!   pod, whoever starts it), the only one with CAP_NET_ADMIN: it installs the nftables
//!   rules that confine the agent's uid to the proxy, the gator and its own loopback
//!   listeners, reads them back, and writes a marker naming the network namespace;
//! - `proxy`, uid [`PROXY_UID`], no capabilities: the agent's only way out (names on the
//!   allowlist, and credential routes that add a provider's key the agent never holds).
//!
//! The agent's command waits behind `devaipod-net gate`, which returns only when the
//! marker names the namespace the agent runs in: the agent never runs unfiltered, even
//! when something other than devaipod starts it.
//!
//! The same image carries the workspace's SSH helpers (`devaipod-net sftp-server` and
//! `relay`, which devaipod's SSH server runs by `podman exec`): it is mounted read-only
//! into the workspace in every mode, `full` included, whenever devaipod-net is there.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Context;
use super::gator;
use super::input::{NetworkMode, PlanInput, UserSecret};
use super::labels::Role;
use super::paths::{
    AGENT_UID, NET_MARKER, NET_STATE_DIR, PROXY_PORT, PROXY_UID, credential_route_url, proxy_url,
};
use super::spec::{
    ContainerSpec, Extras, MountSpec, Seccomp, SecretRef, SecretSource, SecretSpec, SharedMount,
    VolumeSpec,
};

/// Where devaipod-net is in its image.
pub(crate) const NET_EXE: &str = "/devaipod-net";
/// Where the devaipod-net image is mounted (read-only): in the agent, for its gate, and
/// in the workspace, for the SSH helpers.
pub(crate) const NET_MOUNT: &str = "/opt/devaipod-net";
/// The proxy's configuration (a file secret of the proxy's uid).
const NET_CONFIG_FILE: &str = "/run/secrets/devaipod-net-config.json";
/// Where the rules container writes its marker, and the agent reads it (read-only).
const MARKER_DIR: &str = "/run/devaipod-net";
/// How long the agent's gate waits for the marker before the agent gives up.
pub(crate) const GATE_TIMEOUT_SECS: u64 = 60;
/// The proxy's limits: it holds no data, so small ones.
const PROXY_PIDS_LIMIT: i64 = 256;
const PROXY_MEMORY_LIMIT: i64 = 256 * 1024 * 1024;
/// The rules container's limits: one process, a netlink batch.
const RULES_PIDS_LIMIT: i64 = 16;
const RULES_MEMORY_LIMIT: i64 = 64 * 1024 * 1024;
/// Every secret file of the proxy is readable by its uid only.
const MODE: u32 = 0o400;

/// Where a provider's key is in the proxy.
fn credential_file(provider: &str) -> String {
    format!("/run/secrets/devaipod-credential-{provider}")
}

/// What `--dry-run` and `status` show of a credential route (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CredentialPlan {
    pub provider: String,
    pub base_url: String,
    pub header: String,
    /// What opencode is pointed at instead of `base_url`.
    pub route: String,
    /// The podman secret holding the key (in the proxy only).
    pub secret: String,
    /// The variable of devaipod's environment the key is read from at `up` (`None`:
    /// the user's existing podman secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// The built-in preset this route is, when devaipod made it (docs/agent.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The paths below `base_url` the proxy forwards (a preset's model API); empty:
    /// every path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// The agent's network in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NetworkPlan {
    pub mode: NetworkMode,
    /// The proxy's initial allowlist (`devaipod allow`/`deny` change the running copy).
    pub allow: Vec<String>,
    pub credentials: Vec<CredentialPlan>,
    /// The agent's HTTP(S)_PROXY; `None` in `full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The image of the rules and proxy containers; `None` in `full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Whether that image is present, made by `up`, or cannot be (no devaipod-net).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_state: Option<super::spec::ImageState>,
    /// What the agent may reach, as sentences (the rules' meaning).
    pub reach: Vec<String>,
    /// The proxy's configuration (devaipod-net's `config::Config`); a secret's content.
    #[serde(skip)]
    pub proxy_config: String,
}

/// What the network adds to the agent's container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AgentNet {
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<MountSpec>,
    pub shared_mounts: Vec<SharedMount>,
    /// Shell run before opencode: the gate.
    pub gate: Option<String>,
}

/// The network's part of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Network {
    pub plan: NetworkPlan,
    /// `rules` (an init container) then `proxy`; empty in `full`.
    pub containers: Vec<ContainerSpec>,
    pub volumes: Vec<VolumeSpec>,
    /// The proxy's configuration and the keys devaipod makes from its environment.
    pub secrets: Vec<SecretSpec>,
    pub agent: AgentNet,
}

/// The proxy's configuration file, devaipod-net's side of it being `net/src/config.rs`.
#[derive(Debug, Serialize)]
struct ProxyConfig<'a> {
    /// The workspace's NAME, for the refusals' hint (`devaipod allow NAME ...`).
    pod: &'a str,
    listen: String,
    mode: &'a str,
    allow: Vec<String>,
    credentials: Vec<ProxyCredential<'a>>,
    deny_nets: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<ProxyTest<'a>>,
}

#[derive(Debug, Serialize)]
struct ProxyCredential<'a> {
    provider: &'a str,
    base_url: &'a str,
    header: &'a str,
    prefix: &'a str,
    secret_file: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    paths: &'a [&'a str],
}

/// The paths a credential route forwards: its preset's model API, or (for a route of
/// the user's `[agent.credentials]`) every path.
fn route_paths(c: &super::input::CredentialInput) -> &'static [&'static str] {
    c.preset
        .as_deref()
        .and_then(super::input::presets::by_id)
        .map_or(&[], |p| p.paths)
}

#[derive(Debug, Serialize)]
struct ProxyTest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_pem: Option<&'a str>,
    hosts: &'a BTreeMap<String, Vec<String>>,
}

impl Network {
    pub(crate) fn new(ctx: &Context<'_>) -> Self {
        let input = ctx.input;
        let net = &input.network;
        if net.mode == NetworkMode::Full {
            return Network {
                plan: NetworkPlan {
                    mode: net.mode,
                    allow: Vec::new(),
                    credentials: Vec::new(),
                    proxy: None,
                    image: None,
                    image_state: None,
                    reach: vec!["anything the pod's network reaches (no proxy, no rules)".into()],
                    proxy_config: String::new(),
                },
                containers: Vec::new(),
                volumes: Vec::new(),
                secrets: Vec::new(),
                agent: AgentNet::default(),
            };
        }
        let state = ctx.object_name("net-state");
        let marker = ctx.object_name("net-marker");
        let config_secret = ctx.object_name("net-config");
        let mut secrets = vec![SecretSpec {
            name: config_secret.clone(),
            source: SecretSource::NetConfig,
            labels: ctx.labels(Role::Proxy),
        }];
        let mut proxy_secrets = vec![SecretRef {
            name: config_secret,
            target: NET_CONFIG_FILE.into(),
            owner: Some(PROXY_UID.to_string()),
            mode: MODE,
        }];
        let mut credentials = Vec::new();
        for c in &net.credentials {
            let name = credential_secret(ctx, &c.provider, &c.secret, &mut secrets);
            proxy_secrets.push(SecretRef {
                name: name.clone(),
                target: credential_file(&c.provider),
                owner: Some(PROXY_UID.to_string()),
                mode: MODE,
            });
            credentials.push(CredentialPlan {
                provider: c.provider.clone(),
                base_url: c.base_url.clone(),
                header: c.header.clone(),
                route: credential_route_url(&c.provider),
                secret: name,
                variable: c
                    .secret
                    .existing
                    .is_none()
                    .then(|| c.secret.env_name.clone()),
                preset: c.preset.clone(),
                paths: route_paths(c).iter().map(|p| p.to_string()).collect(),
            });
        }
        let plan = NetworkPlan {
            mode: net.mode,
            allow: allow_strings(input),
            credentials,
            proxy: Some(proxy_url()),
            image: Some(input.net_image.clone()),
            image_state: Some(input.net_image_state.clone()),
            reach: reach(input),
            proxy_config: proxy_config(input),
        };
        let containers = vec![
            rules_container(ctx, &marker),
            proxy_container(ctx, &state, proxy_secrets),
        ];
        let volumes = [
            (&state, "net-state", Role::Proxy),
            (&marker, "net-marker", Role::Rules),
        ]
        .into_iter()
        .map(|(name, role, owner)| VolumeSpec {
            name: name.clone(),
            role: role.into(),
            labels: ctx.labels(owner),
            size_limit: None,
        })
        .collect();
        Network {
            plan,
            containers,
            volumes,
            secrets,
            agent: agent_net(input, &marker),
        }
    }

    /// The names of the secrets `up` creates for the network (for the pod's label).
    pub(crate) fn created_secrets(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|s| s.name.as_str())
    }
}

/// The podman secret of a provider's key: made from devaipod's environment, or the
/// user's existing one.
fn credential_secret(
    ctx: &Context<'_>,
    provider: &str,
    secret: &UserSecret,
    created: &mut Vec<SecretSpec>,
) -> String {
    match &secret.existing {
        Some(existing) => existing.clone(),
        None => {
            let name = ctx.object_name(&format!("credential-{provider}"));
            created.push(SecretSpec {
                name: name.clone(),
                source: SecretSource::Environment {
                    variable: secret.env_name.clone(),
                },
                labels: ctx.labels(Role::Proxy),
            });
            name
        }
    }
}

/// The allowlist as the proxy reads it (`*.NAME:PORT`); empty unless `allowlist`.
fn allow_strings(input: &PlanInput) -> Vec<String> {
    match input.network.mode {
        NetworkMode::Allowlist => input.network.allow.iter().map(|a| a.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The proxy's configuration as devaipod-net reads it.
fn proxy_config(input: &PlanInput) -> String {
    let net = &input.network;
    let config = ProxyConfig {
        pod: input.name.as_str(),
        listen: format!("127.0.0.1:{PROXY_PORT}"),
        mode: net.mode.as_str(),
        allow: allow_strings(input),
        credentials: net
            .credentials
            .iter()
            .map(|c| ProxyCredential {
                provider: &c.provider,
                base_url: &c.base_url,
                header: &c.header,
                prefix: &c.prefix,
                secret_file: credential_file(&c.provider),
                paths: route_paths(c),
            })
            .collect(),
        deny_nets: &net.deny_nets,
        test: net.test.as_ref().map(|t| ProxyTest {
            ca_pem: t.ca_pem.as_deref(),
            hosts: &t.hosts,
        }),
    };
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// The rules' meaning, for `--dry-run` and `status`.
fn reach(input: &PlanInput) -> Vec<String> {
    let mut out = vec![format!(
        "the proxy on 127.0.0.1:{PROXY_PORT}: {}",
        match input.network.mode {
            NetworkMode::Allowlist => "names on the allowlist, and the credential routes",
            _ => "the credential routes only",
        }
    )];
    if input.gator.is_some() {
        out.push(format!("service-gator on 127.0.0.1:{}", gator::PORT));
    }
    out.push("its own listeners on the pod's loopback, any port".into());
    out.push("nothing else: no workspace listener, no other address, no DNS, no UDP".into());
    out
}

/// `rules`: the pod's init container. Root in its user namespace with CAP_NET_ADMIN
/// alone (rules in the pod's network namespace need it), no-new-privileges, the agent's
/// seccomp profile, a read-only root; it writes only the marker volume.
fn rules_container(ctx: &Context<'_>, marker: &str) -> ContainerSpec {
    let input = ctx.input;
    let mut command = vec![
        NET_EXE.to_string(),
        "rules".into(),
        "--agent-uid".into(),
        AGENT_UID.to_string(),
        "--agent-port".into(),
        crate::plan::AGENT_PORT.to_string(),
        "--allow-reply".into(),
        format!("{PROXY_UID}:{PROXY_PORT}"),
    ];
    if input.gator.is_some() {
        command.extend([
            "--allow-reply".into(),
            format!("{}:{}", gator::UID, gator::PORT),
        ]);
    }
    command.extend(["--marker".into(), NET_MARKER.into()]);
    ContainerSpec {
        role: Role::Rules,
        name: ctx.object_name("rules"),
        image: input.net_image.clone(),
        command,
        user: Some("0:0".into()),
        workdir: "/".into(),
        init: false,
        init_container: true,
        cap_drop: vec!["ALL".into()],
        cap_add: vec!["NET_ADMIN".into()],
        no_new_privileges: true,
        security_opt: vec!["no-new-privileges".into(), "seccomp=devaipod-agent".into()],
        seccomp: Seccomp::Agent,
        read_only: true,
        tmpfs: Vec::new(),
        pids_limit: Some(RULES_PIDS_LIMIT),
        memory_limit: Some(RULES_MEMORY_LIMIT),
        cpu_millis: None,
        mounts: vec![MountSpec::volume(marker, MARKER_DIR, false)],
        shared_mounts: Vec::new(),
        env: BTreeMap::new(),
        secrets: Vec::new(),
        labels: ctx.labels(Role::Rules),
        extra: Extras::default(),
    }
}

/// `proxy`: its own uid, no capabilities, no-new-privileges, the agent's seccomp
/// profile, a read-only root; its configuration and keys as 0400 files of its uid.
fn proxy_container(ctx: &Context<'_>, state: &str, secrets: Vec<SecretRef>) -> ContainerSpec {
    ContainerSpec {
        role: Role::Proxy,
        name: ctx.object_name("proxy"),
        image: ctx.input.net_image.clone(),
        command: vec![
            NET_EXE.to_string(),
            "proxy".into(),
            "--config".into(),
            NET_CONFIG_FILE.into(),
            "--state".into(),
            NET_STATE_DIR.into(),
        ],
        user: Some(format!("{PROXY_UID}:{PROXY_UID}")),
        workdir: "/".into(),
        init: true,
        init_container: false,
        cap_drop: vec!["ALL".into()],
        cap_add: Vec::new(),
        no_new_privileges: true,
        security_opt: vec!["no-new-privileges".into(), "seccomp=devaipod-agent".into()],
        seccomp: Seccomp::Agent,
        read_only: true,
        // Where Podman puts the secret files (the root is read-only).
        tmpfs: vec!["/run/secrets".into()],
        pids_limit: Some(PROXY_PIDS_LIMIT),
        memory_limit: Some(PROXY_MEMORY_LIMIT),
        cpu_millis: None,
        mounts: vec![MountSpec::volume(state, NET_STATE_DIR, false)],
        shared_mounts: Vec::new(),
        env: BTreeMap::new(),
        secrets,
        labels: ctx.labels(Role::Proxy),
        extra: Extras::default(),
    }
}

/// devaipod-net as the agent and the workspace see it.
pub(crate) fn mounted_exe() -> String {
    format!("{NET_MOUNT}{NET_EXE}")
}

/// devaipod-net's folder in its image, copied into the volume the agent (its gate) and
/// the workspace (the SSH helpers) mount: whenever there is an image (every mode;
/// without the binary, only `full` gets this far).
pub(crate) fn workspace_shared_mount(input: &PlanInput) -> Option<SharedMount> {
    (!input.net_image.is_empty()).then(|| net_shared_mount(input))
}

/// The volume `devaipod-net-KEY` (KEY: the image's tag, named by the binary's content).
fn net_shared_mount(input: &PlanInput) -> SharedMount {
    let key = input.net_image.rsplit_once(':').map_or("", |(_, k)| k);
    SharedMount {
        volume: format!("devaipod-net-{key}"),
        image: input.net_image.clone(),
        path: NET_MOUNT.into(),
        file: NET_EXE.trim_start_matches('/').into(),
        target: NET_MOUNT.into(),
    }
}

/// What a pod without the helpers cannot do.
pub(crate) fn helpers_warning(input: &PlanInput) -> Option<String> {
    workspace_shared_mount(input).is_none().then(|| {
        "devaipod-net was not found, so the workspace gets no SSH helpers: sftp, scp and port forwarding through `devaipod ssh-config` (and `devaipod forward`) will not work in this pod; build it with `just net` (`just install` puts it beside devaipod), or name it with DEVAIPOD_NET_BIN".to_string()
    })
}

/// The agent's side: the proxy in its environment, the marker (read-only) and the
/// devaipod-net image for its gate.
fn agent_net(input: &PlanInput, marker: &str) -> AgentNet {
    let url = proxy_url();
    let mut env: BTreeMap<String, String> =
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
            .into_iter()
            .map(|k| (k.to_string(), url.clone()))
            .collect();
    for k in ["NO_PROXY", "no_proxy"] {
        env.insert(k.into(), "localhost,127.0.0.1,::1".into());
    }
    // opencode's model catalogue comes from models.dev; unless the user allows it, the
    // proxy refuses it, and opencode then uses the catalogue it was built with.
    let catalogue_allowed = allow_strings(input).iter().any(|a| a == "models.dev");
    if !catalogue_allowed {
        env.insert("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into());
    }
    AgentNet {
        env,
        mounts: vec![MountSpec::volume(marker, MARKER_DIR, true)],
        shared_mounts: vec![net_shared_mount(input)],
        gate: Some(format!(
            "{} gate --marker {NET_MARKER} --timeout-secs {GATE_TIMEOUT_SECS} || exit 1; ",
            mounted_exe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ImageState;
    use crate::plan::input::CredentialInput;
    use crate::plan::tests_support::input;

    fn build(i: &PlanInput) -> crate::plan::PodPlan {
        crate::plan::build(i).expect("plan")
    }

    #[test]
    fn by_default_the_agent_is_behind_the_proxy_and_the_rules() {
        let plan = build(&input());
        let roles: Vec<Role> = plan.containers.iter().map(|c| c.role).collect();
        assert_eq!(
            roles,
            [Role::Workspace, Role::Agent, Role::Rules, Role::Proxy]
        );
        let rules = plan.container(Role::Rules).expect("rules");
        assert!(rules.init_container);
        assert_eq!(rules.cap_drop, ["ALL"]);
        assert_eq!(rules.cap_add, ["NET_ADMIN"]);
        assert!(rules.no_new_privileges && rules.read_only);
        assert_eq!(
            rules.command,
            [
                "/devaipod-net",
                "rules",
                "--agent-uid",
                "4096",
                "--agent-port",
                "4096",
                "--allow-reply",
                "4097:4097",
                "--marker",
                "/run/devaipod-net/ready"
            ]
        );
        let proxy = plan.container(Role::Proxy).expect("proxy");
        assert_eq!(proxy.user.as_deref(), Some("4097:4097"));
        assert!(proxy.cap_add.is_empty() && proxy.no_new_privileges && proxy.read_only);
        assert_eq!(proxy.image, "localhost/devaipod-net:0123456789ab");
        assert!(
            proxy
                .secrets
                .iter()
                .all(|s| s.owner.as_deref() == Some("4097") && s.mode == 0o400)
        );
        let agent = plan.container(Role::Agent).expect("agent");
        assert_eq!(agent.env["HTTPS_PROXY"], "http://127.0.0.1:4097");
        assert_eq!(agent.env["no_proxy"], "localhost,127.0.0.1,::1");
        assert!(
            agent.command[2].starts_with(
                "/opt/devaipod-net/devaipod-net gate --marker /run/devaipod-net/ready"
            )
        );
        let marker = agent
            .mounts
            .iter()
            .find(|m| m.target == "/run/devaipod-net")
            .expect("marker mount");
        assert!(marker.read_only, "the agent must not write its own marker");
        // The workspace has none of it (devaipod-net's image, for the SSH helpers, only).
        let ws = plan.container(Role::Workspace).expect("ws");
        assert!(!ws.env.contains_key("HTTPS_PROXY"));
        assert!(ws.mounts.iter().all(|m| !m.source.contains("net-")));
        assert_eq!(plan.network.mode, NetworkMode::Allowlist);
    }

    #[test]
    fn full_is_todays_pod_and_none_drops_the_allowlist() {
        let mut i = input();
        i.network.mode = NetworkMode::Full;
        let plan = build(&i);
        let roles: Vec<Role> = plan.containers.iter().map(|c| c.role).collect();
        assert_eq!(roles, [Role::Workspace, Role::Agent]);
        let agent = plan.container(Role::Agent).expect("agent");
        assert!(!agent.env.contains_key("HTTPS_PROXY"));
        assert!(!agent.command[2].contains("gate"));
        i.network.mode = NetworkMode::None;
        i.network.allow = vec!["example.org".parse().expect("name")];
        let plan = build(&i);
        assert!(plan.network.allow.is_empty());
        let config: serde_json::Value =
            serde_json::from_str(&plan.network.proxy_config).expect("json");
        assert_eq!(config["mode"], "none");
        assert_eq!(config["allow"], serde_json::json!([]));
    }

    #[test]
    fn the_workspace_gets_the_ssh_helpers_in_every_mode() {
        for mode in [NetworkMode::Allowlist, NetworkMode::None, NetworkMode::Full] {
            let mut i = input();
            i.network.mode = mode;
            let plan = build(&i);
            let ws = plan.container(Role::Workspace).expect("ws");
            let m = ws.shared_mounts.iter().find(|m| m.target == NET_MOUNT);
            assert_eq!(
                m.map(|m| (m.volume.as_str(), m.image.as_str(), m.path.as_str())),
                Some((
                    "devaipod-net-0123456789ab",
                    "localhost/devaipod-net:0123456789ab",
                    "/opt/devaipod-net"
                )),
                "{mode}: {:?}",
                ws.shared_mounts
            );
            assert_eq!(
                plan.pod
                    .labels
                    .get(crate::plan::labels::HELPER)
                    .map(String::as_str),
                Some("/opt/devaipod-net/devaipod-net"),
                "{mode}"
            );
            assert!(
                plan.warnings.iter().all(|w| !w.contains("SSH helpers")),
                "{mode}: {:?}",
                plan.warnings
            );
        }
    }

    #[test]
    fn without_devaipod_net_a_full_pod_has_no_helpers_and_says_so() {
        let mut i = input();
        i.network.mode = NetworkMode::Full;
        i.net_image = String::new();
        i.net_image_state = ImageState::Unknown {
            note: "no devaipod-net binary (network = full)".into(),
        };
        let plan = build(&i);
        for c in &plan.containers {
            assert!(
                c.shared_mounts.iter().all(|m| m.target != NET_MOUNT),
                "{}: {:?}",
                c.name,
                c.shared_mounts
            );
        }
        assert!(!plan.pod.labels.contains_key(crate::plan::labels::HELPER));
        assert!(
            plan.warnings.iter().any(|w| w
                .starts_with("devaipod-net was not found, so the workspace gets no SSH helpers")),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn a_credential_is_a_secret_of_the_proxy_alone() {
        let mut i = input();
        i.network.allow = vec!["*.example.org".parse().expect("name")];
        i.network.credentials = vec![CredentialInput {
            provider: "anthropic".into(),
            base_url: "https://api.anthropic.com/v1".into(),
            header: "x-api-key".into(),
            prefix: String::new(),
            secret: UserSecret {
                env_name: "ANTHROPIC_API_KEY".into(),
                existing: None,
            },
            preset: None,
        }];
        i.gator = Some(crate::plan::GatorInput {
            image: "localhost/gator:1".into(),
            scopes: Vec::new(),
            gitlab_host: None,
            jira_host: None,
            jira_username: None,
            entrypoint: Some(vec!["service-gator".into()]),
        });
        let plan = build(&i);
        let proxy = plan.container(Role::Proxy).expect("proxy");
        let targets: Vec<&str> = proxy.secrets.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/run/secrets/devaipod-net-config.json",
                "/run/secrets/devaipod-credential-anthropic"
            ]
        );
        for c in &plan.containers {
            if c.role != Role::Proxy {
                assert!(
                    c.secrets.iter().all(|s| !s.name.contains("credential")),
                    "{} has the key",
                    c.name
                );
            }
        }
        assert!(
            plan.secrets
                .iter()
                .any(|s| s.name == "devaipod-demo-credential-anthropic"
                    && s.source
                        == SecretSource::Environment {
                            variable: "ANTHROPIC_API_KEY".into()
                        })
        );
        assert!(
            plan.pod.labels["io.devaipod.secrets"].contains("devaipod-demo-credential-anthropic")
        );
        let config: serde_json::Value =
            serde_json::from_str(&plan.network.proxy_config).expect("json");
        assert_eq!(
            config["credentials"][0]["secret_file"],
            "/run/secrets/devaipod-credential-anthropic"
        );
        assert_eq!(config["allow"][0], "*.example.org");
        let rules = plan.container(Role::Rules).expect("rules");
        assert!(rules.command.contains(&"65534:8765".to_string()));
        let shown = serde_json::to_string(&plan.network).expect("json");
        assert!(shown.contains("http://127.0.0.1:4097/devaipod/credentials/anthropic"));
    }
}
