//! The user's own configuration: `$DEVAIPOD_CONFIG`, else
//! `$XDG_CONFIG_HOME/devaipod.toml` (default `~/.config/devaipod.toml`). Only this file
//! and the command line decide what reaches the agent; the repo's files never do.
//! Unknown keys and bad values are errors with the file's line and column.
//!
//! ```toml
//! [agent]
//! model = "anthropic/claude-sonnet-4-5"   # opencode model id
//! providers = ["anthropic"]         # built-in presets (unset: those whose variable is set)
//! network = "allowlist"             # the default; or "none", or "full" (warned at up)
//! allow = ["*.example.org", "git.example.com:8443"]   # NAME (ports 443, 80) or NAME:PORT
//! secrets = ["OTHER_KEY"]           # from devaipod's environment at `up`; inside the agent
//! disk_limit = "10g"                # each of the agent's volumes, where storage enforces it; or "none"
//! [agent.credentials.anthropic]     # an opencode provider id: the proxy holds its key
//! base_url = "https://api.anthropic.com/v1"
//! header = "x-api-key"              # set on every request, replacing the agent's
//! prefix = ""                       # before the key, e.g. "Bearer "
//! secret = "ANTHROPIC_API_KEY"      # from devaipod's environment, or NAME=podman-secret
//! [agent.opencode]                  # merged into the agent's opencode config
//! provider.openai.options.apiKey = "{file:/run/secrets/OTHER_KEY}"
//! [trusted]
//! secrets = ["GH_TOKEN"]            # workspace only, never the agent
//! [service-gator]
//! scopes = ["github:me/project:create-draft"]   # or up --service-gator SCOPE
//! [repos."/home/me/src/project"]
//! trust = true                      # consent for repo settings that widen access
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

use crate::plan::input::net::{self, AllowName, CredentialInput, NetworkMode};
use crate::plan::input::presets::{self, HandSetting, NamedPreset};

/// The parsed configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub trusted: TrustedConfig,
    #[serde(default)]
    pub repos: BTreeMap<String, RepoConfig>,
    /// The optional service-gator container (docs/service-gator.md).
    #[serde(default, rename = "service-gator")]
    pub service_gator: GatorConfig,
}

/// `[service-gator]`: scopes (as for `up --service-gator`), and its image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatorConfig {
    /// `github:OWNER/REPO[:PERMS]`, `gitlab:GROUP/PROJECT[:PERMS]`, `jira:KEY[:PERMS]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    pub image: Option<String>,
    /// Confirms write access on wildcard scopes (`OWNER/*`).
    #[serde(default)]
    pub allow_wildcard_write: bool,
    pub gitlab_host: Option<String>,
    pub jira_host: Option<String>,
    /// JIRA's user for basic authentication with the API token (not a secret); without
    /// it service-gator sends the token as a bearer token.
    pub jira_username: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConfig {
    /// The opencode model id (`provider/model`) the agent uses.
    pub model: Option<String>,
    /// Merged into the agent's opencode configuration (providers, permissions, MCP
    /// servers). Secrets belong in `secrets` and are referred to as
    /// `{file:/run/secrets/NAME}`.
    pub opencode: Option<toml::Table>,
    /// Secrets for the agent (LLM API keys): `NAME` or `NAME=podman-secret`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The agent's process limit (the documented loosenable subset: limits only).
    pub pids_limit: Option<i64>,
    /// The agent's memory limit, in bytes or with a suffix k/m/g (e.g. "16g").
    pub memory_limit: Option<String>,
    /// The most each of the agent's volumes (its clone, its home) may hold, where the
    /// engine's storage enforces it (e.g. "10g"); `"none"`: no limit.
    pub disk_limit: Option<String>,
    /// How far the agent reaches: `allowlist` (the default), `none` or `full`.
    pub network: Option<Spanned<NetworkMode>>,
    /// The names the agent may reach through the proxy (`allowlist` only), as written;
    /// [`parse`] checks each.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// `allow`, checked (filled by [`parse`]).
    #[serde(skip)]
    pub allowed: Vec<AllowName>,
    /// The providers whose key the proxy holds, by opencode provider id.
    #[serde(default)]
    pub credentials: BTreeMap<Spanned<ProviderId>, CredentialConfig>,
    /// The built-in provider presets to use (`ID` or `ID=podman-secret`); unset: those
    /// whose variable is set in devaipod's environment.
    pub providers: Option<Spanned<Vec<Spanned<String>>>>,
    /// `providers`, checked, with `LINE:COL` positions (filled by [`parse`]).
    #[serde(skip)]
    pub named_presets: Option<Vec<NamedPreset>>,
    /// `[agent.opencode] provider.ID.options.baseURL`/`apiKey`, with `LINE:COL`
    /// positions (filled by [`parse`]).
    #[serde(skip)]
    pub hand_settings: Vec<HandSetting>,
}

/// An opencode provider id that the proxy can hold a key for
/// ([`net::check_provider_id`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct ProviderId(pub String);

impl TryFrom<String> for ProviderId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        net::check_provider_id(&s).map(|()| ProviderId(s))
    }
}

/// `[agent.credentials.ID]`: where the proxy sends that provider's requests, and the
/// header it sets from the secret. Checked by [`parse`], with positions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialConfig {
    pub base_url: Spanned<String>,
    pub header: Spanned<String>,
    pub prefix: Option<Spanned<String>>,
    /// `NAME` (devaipod's environment at `up`) or `NAME=podman-secret`.
    pub secret: Spanned<SecretEntry>,
}

/// Reads `[agent] memory_limit`: a size ([`crate::size::parse_size`]) of at least 64 MiB.
pub(crate) fn parse_memory_limit(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let too_small = || format!("memory_limit {s:?}: must be at least 64m");
    // A negative size is a number, just too small for the agent.
    if s.starts_with('-') {
        return Err(too_small());
    }
    let bytes = crate::size::parse_size(s).map_err(|e| match e {
        crate::size::SizeError::Unit => format!("memory_limit {s:?}: {e}"),
        crate::size::SizeError::Number | crate::size::SizeError::Overflow => {
            format!("memory_limit {s:?}: {}", crate::size::SizeError::Number)
        }
    })?;
    i64::try_from(bytes)
        .ok()
        .filter(|v| *v >= 64 << 20)
        .ok_or_else(too_small)
}

/// The smallest `[agent] disk_limit`: opencode's own files and a small clone fit.
pub(crate) const MIN_DISK_LIMIT: u64 = 256 << 20;

/// Reads `[agent] disk_limit`: `none` (no limit), or a size
/// ([`crate::size::parse_size`]) of at least [`MIN_DISK_LIMIT`].
pub(crate) fn parse_disk_limit(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s == "none" {
        return Ok(None);
    }
    let too_small = || format!("disk_limit {s:?}: must be at least 256m (or \"none\")");
    if s.starts_with('-') {
        return Err(too_small());
    }
    let bytes = crate::size::parse_size(s).map_err(|e| match e {
        crate::size::SizeError::Unit => format!("disk_limit {s:?}: {e}, or \"none\""),
        crate::size::SizeError::Number | crate::size::SizeError::Overflow => {
            format!(
                "disk_limit {s:?}: {}, or \"none\"",
                crate::size::SizeError::Number
            )
        }
    })?;
    if bytes < MIN_DISK_LIMIT {
        return Err(too_small());
    }
    Ok(Some(bytes))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustedConfig {
    /// Secrets for the workspace (forge tokens): `NAME` or `NAME=podman-secret`.
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepoConfig {
    /// Consent for the repo's settings that widen access.
    #[serde(default)]
    pub trust: bool,
}

/// One secret entry: the environment name the consumer sees, and where the value is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct SecretEntry {
    pub name: String,
    /// `Some(podman secret)` for `NAME=podman-secret`; `None`: devaipod's environment.
    pub existing: Option<String>,
}

impl TryFrom<String> for SecretEntry {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_secret_entry(&s)
    }
}

/// Whether `s` is a podman secret name as devaipod accepts one: `[A-Za-z0-9_.-]+`.
fn podman_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parses `NAME` or `NAME=podman-secret-name`. A refusal does not repeat the entry: it
/// may be a key written where its name belongs.
pub(crate) fn parse_secret_entry(entry: &str) -> Result<SecretEntry, String> {
    let (name, existing) = match entry.split_once('=') {
        Some((n, s)) => (n, Some(s)),
        None => (entry, None),
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(
            "a secret entry is NAME or NAME=podman-secret, and the name must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*); the entry is not shown, in case it is a key itself"
                .into(),
        );
    }
    if let Some(s) = existing
        && !podman_secret_name(s)
    {
        return Err(format!(
            "secret entry {name}=...: the podman secret name after '=' must be [A-Za-z0-9_.-]+"
        ));
    }
    Ok(SecretEntry {
        name: name.to_string(),
        existing: existing.map(str::to_string),
    })
}

impl Config {
    /// The secrets of one list, checked.
    pub(crate) fn entries(list: &[String], path: &Path, table: &str) -> Result<Vec<SecretEntry>> {
        let mut out: Vec<SecretEntry> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, e) in list.iter().enumerate() {
            let entry = parse_secret_entry(e)
                .map_err(|m| anyhow::anyhow!("{}: [{table}] secrets[{i}]: {m}", path.display()))?;
            if !seen.insert(entry.name.clone()) {
                bail!("{}: [{table}] lists {} twice", path.display(), entry.name);
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// The `[agent]` and `[trusted]` secrets, each list checked; a name may not be in
    /// both. `path` names the file in errors.
    pub(crate) fn secret_lists(&self, path: &Path) -> Result<(Vec<SecretEntry>, Vec<SecretEntry>)> {
        let agent = Self::entries(&self.agent.secrets, path, "agent")?;
        let trusted = Self::entries(&self.trusted.secrets, path, "trusted")?;
        let trusted_names: std::collections::HashSet<&str> =
            trusted.iter().map(|t| t.name.as_str()).collect();
        if let Some(both) = agent
            .iter()
            .find(|a| trusted_names.contains(a.name.as_str()))
        {
            bail!(
                "{}: {} is listed under both [agent] and [trusted] secrets; a trusted secret never reaches the agent, so list it once",
                path.display(),
                both.name
            );
        }
        Ok((agent, trusted))
    }

    /// `[agent] pids_limit`, when set: at least 64, or opencode cannot run.
    pub(crate) fn agent_pids_limit(&self, path: &Path) -> Result<Option<i64>> {
        match self.agent.pids_limit {
            Some(p) if p < 64 => bail!(
                "{}: [agent] pids_limit {p} is too small for opencode (use at least 64)",
                path.display()
            ),
            p => Ok(p),
        }
    }

    /// `[agent] memory_limit` in bytes, when set ([`parse_memory_limit`]).
    pub(crate) fn agent_memory_limit(&self, path: &Path) -> Result<Option<i64>> {
        self.agent
            .memory_limit
            .as_deref()
            .map(|m| {
                parse_memory_limit(m)
                    .map_err(|e| anyhow::anyhow!("{}: [agent] {e}", path.display()))
            })
            .transpose()
    }

    /// `[agent] disk_limit` in bytes: the default when unset, `None` for `"none"`
    /// ([`parse_disk_limit`]).
    pub(crate) fn agent_disk_limit(&self, path: &Path) -> Result<Option<u64>> {
        match self.agent.disk_limit.as_deref() {
            None => Ok(Some(crate::plan::AGENT_DISK_LIMIT)),
            Some(d) => {
                parse_disk_limit(d).map_err(|e| anyhow::anyhow!("{}: [agent] {e}", path.display()))
            }
        }
    }

    /// `[agent.opencode]` as the JSON merged into the agent's opencode configuration.
    pub(crate) fn agent_opencode_json(&self, path: &Path) -> Result<Option<serde_json::Value>> {
        self.agent
            .opencode
            .as_ref()
            .map(|t| {
                serde_json::to_value(t).with_context(|| {
                    format!(
                        "{}: [agent.opencode] cannot be turned into JSON",
                        path.display()
                    )
                })
            })
            .transpose()
    }

    /// Whether the user trusts the repo at `repo` (its canonical path).
    pub(crate) fn trusts(&self, repo: &Path) -> bool {
        self.repos.iter().any(|(p, r)| {
            r.trust
                && Path::new(p)
                    .canonicalize()
                    .map(|c| c == repo)
                    .unwrap_or(false)
        })
    }
}

/// Where the configuration is read from.
pub(crate) fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DEVAIPOD_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("devaipod.toml"))
}

/// Parses configuration text and checks what one value alone cannot show; errors are
/// `LINE:COL: message`.
pub(crate) fn parse(text: &str) -> Result<Config, String> {
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        format!("{line}:{col}: {}", e.message())
    })?;
    let at = Positions(text);
    config.agent.check_network(&at)?;
    config.agent.check_credentials(&at)?;
    if config.agent.opencode.is_some() {
        // A second parse, with spans: only when there is a table to read.
        config.agent.hand_settings = hand_settings(text, &at);
    }
    opencode_conflicts(&config.agent.hand_settings, &config.agent.credentials, &at)?;
    config.agent.named_presets = config.agent.check_providers(&at)?;
    Ok(config)
}

/// Positions in the configuration text, for messages.
struct Positions<'a>(&'a str);

impl Positions<'_> {
    /// `LINE:COL` of a span's start.
    fn pos(&self, span: Range<usize>) -> String {
        let (line, col) = line_col(self.0, span.start);
        format!("{line}:{col}")
    }

    /// `LINE:COL: message`.
    fn at(&self, span: Range<usize>, msg: String) -> String {
        format!("{}: {msg}", self.pos(span))
    }
}

impl AgentConfig {
    /// The mode, the default when unset.
    pub(crate) fn network_mode(&self) -> NetworkMode {
        self.network
            .as_ref()
            .map(|m| *m.get_ref())
            .unwrap_or_default()
    }

    /// `[agent] allow`, in the file's order, each checked with its position.
    fn allow_names(&self, at: &Positions<'_>) -> Result<Vec<AllowName>, String> {
        let mut out: Vec<AllowName> = Vec::new();
        // A set beside the list: a long list stays linear to check.
        let mut seen = std::collections::HashSet::new();
        for a in &self.allow {
            let name = AllowName::try_from(a.get_ref().clone())
                .map_err(|e| at.at(a.span(), format!("[agent] {e}")))?;
            if !seen.insert(name.clone()) {
                return Err(at.at(a.span(), format!("[agent] allow lists {name} twice")));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// `[agent.credentials.*]`, by provider id.
    pub(crate) fn credential_inputs(&self) -> Vec<CredentialInput> {
        self.credentials
            .iter()
            .map(|(id, c)| CredentialInput {
                provider: id.get_ref().0.clone(),
                base_url: c.base_url.get_ref().clone(),
                header: c.header.get_ref().clone(),
                prefix: c
                    .prefix
                    .as_ref()
                    .map(|p| p.get_ref().clone())
                    .unwrap_or_default(),
                secret: crate::plan::UserSecret {
                    env_name: c.secret.get_ref().name.clone(),
                    existing: c.secret.get_ref().existing.clone(),
                },
                preset: None,
            })
            .collect()
    }

    /// Each `allow` entry, no name twice, and no `allow` that the mode would ignore.
    fn check_network(&mut self, at: &Positions<'_>) -> Result<(), String> {
        self.allowed = self.allow_names(at)?;
        if let (Some(mode), Some(first)) = (&self.network, self.allow.first())
            && *mode.get_ref() != NetworkMode::Allowlist
        {
            return Err(at.at(
                mode.span(),
                format!(
                    "[agent] network = \"{}\" takes no allow list: the names of [agent] allow (at {}) would be ignored; remove allow, or set network = \"allowlist\"",
                    mode.get_ref(),
                    at.pos(first.span())
                ),
            ));
        }
        Ok(())
    }

    /// `[agent] providers`: presets, each once, as `ID` or `ID=podman-secret`.
    fn check_providers(&self, at: &Positions<'_>) -> Result<Option<Vec<NamedPreset>>, String> {
        let Some(list) = &self.providers else {
            return Ok(None);
        };
        let mut out: Vec<NamedPreset> = Vec::new();
        for entry in list.get_ref() {
            let (id, existing) = match entry.get_ref().split_once('=') {
                Some((id, secret)) => {
                    let valid = podman_secret_name(secret)
                        && secret.len() <= 64
                        && !presets::looks_like_a_key(secret);
                    if !valid {
                        // Not shown: it may be the key itself, written where its name belongs.
                        return Err(at.at(
                            entry.span(),
                            format!("[agent] providers: {id}=...: the podman secret name after '=' must be [A-Za-z0-9_.-]+, at most 64 characters, and not a key (the value is not shown, in case it is one)"),
                        ));
                    }
                    (id, Some(secret.to_string()))
                }
                None => (entry.get_ref().as_str(), None),
            };
            if presets::by_id(id).is_none() {
                // Named only when it is a provider id: it may be a key written where the
                // name belongs.
                let (what, hint) =
                    if net::check_provider_id(id).is_ok() && !presets::looks_like_a_key(id) {
                        (
                            format!("{id:?}"),
                            format!("; configure {id} with [agent.credentials.{id}]"),
                        )
                    } else {
                        (
                            "the entry (not shown, in case it is a key)".to_string(),
                            String::new(),
                        )
                    };
                return Err(at.at(
                    entry.span(),
                    format!(
                        "[agent] providers: {what} is no built-in preset (the presets: {}){hint}",
                        presets::ids()
                    ),
                ));
            }
            if out.iter().any(|n| n.id == id) {
                return Err(at.at(entry.span(), format!("[agent] providers lists {id} twice")));
            }
            out.push(NamedPreset {
                id: id.to_string(),
                existing,
                at: at.pos(entry.span()),
            });
        }
        Ok(Some(out))
    }

    /// Each credential's URL, header and prefix, no key also handed to the agent, and
    /// a proxy to hold them (not network `full`).
    fn check_credentials(&self, at: &Positions<'_>) -> Result<(), String> {
        if let (Some(mode), Some(id)) = (&self.network, self.credentials.keys().next())
            && *mode.get_ref() == NetworkMode::Full
        {
            return Err(at.at(
                mode.span(),
                format!(
                    "[agent] network = \"full\" runs no proxy, but [agent.credentials.{}] (at {}) needs the proxy to hold its key: set network = \"allowlist\" (the default) or \"none\", or remove [agent.credentials]",
                    id.get_ref().0,
                    at.pos(id.span())
                ),
            ));
        }
        let agent_secrets: std::collections::HashSet<String> = self
            .secrets
            .iter()
            .filter_map(|s| parse_secret_entry(s).ok())
            .map(|s| s.name)
            .collect();
        for (id, c) in &self.credentials {
            let table = format!("[agent.credentials.{}]", id.get_ref().0);
            let check = |value: &Spanned<String>, rule: fn(&str) -> Result<(), String>| {
                rule(value.get_ref()).map_err(|e| at.at(value.span(), format!("{table} {e}")))
            };
            check(&c.base_url, net::check_base_url)?;
            check(&c.header, net::check_header)?;
            if let Some(prefix) = &c.prefix {
                check(prefix, net::check_prefix)?;
            }
            let secret = c.secret.get_ref();
            if agent_secrets.contains(&secret.name) {
                return Err(at.at(
                    c.secret.span(),
                    format!(
                        "{table} secret {} is also listed in [agent] secrets, which puts it inside the agent; list it only here, where the proxy holds it",
                        secret.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Every provider's `options.baseURL` and `options.apiKey` in `[agent.opencode]`:
/// devaipod sets both for a credential route (its own or a preset's).
fn hand_settings(text: &str, at: &Positions<'_>) -> Vec<HandSetting> {
    fn table<'a, 'i>(t: &'a toml::de::DeTable<'i>, key: &str) -> Option<&'a toml::de::DeTable<'i>> {
        t.get(key).and_then(|v| v.get_ref().as_table())
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    let Some(providers) = table(doc.get_ref(), "agent")
        .and_then(|a| table(a, "opencode"))
        .and_then(|o| table(o, "provider"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, p) in providers {
        let Some(options) = p.get_ref().as_table().and_then(|p| table(p, "options")) else {
            continue;
        };
        for key in ["baseURL", "apiKey"] {
            if let Some((k, _)) = options.get_key_value(key) {
                out.push(HandSetting {
                    provider: name.get_ref().to_string(),
                    setting: format!("provider.{}.options.{key}", name.get_ref()),
                    at: at.pos(k.span()),
                });
            }
        }
    }
    out
}

/// A credential provider's `baseURL` or `apiKey` set in `[agent.opencode]` too: devaipod
/// sets both for it (the credential route and a placeholder), so the two would fight.
fn opencode_conflicts(
    hand: &[HandSetting],
    credentials: &BTreeMap<Spanned<ProviderId>, CredentialConfig>,
    at: &Positions<'_>,
) -> Result<(), String> {
    for id in credentials.keys() {
        let name = &id.get_ref().0;
        if let Some(h) = hand.iter().find(|h| &h.provider == name) {
            let why = if h.setting.ends_with(".baseURL") {
                "devaipod points that provider's baseURL at its proxy, which forwards to the base_url there"
            } else {
                "devaipod gives the agent a placeholder apiKey for that provider and the proxy adds the key from the secret there"
            };
            return Err(format!(
                "{}: [agent.opencode] {} conflicts with [agent.credentials.{name}] (at {}): {why}; remove {}",
                h.at,
                h.setting,
                at.pos(id.span()),
                h.setting
            ));
        }
    }
    Ok(())
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Loads the configuration (`DEVAIPOD_CONFIG` must exist; the default file may not).
pub(crate) fn load() -> Result<(Config, Option<PathBuf>)> {
    let Some(path) = path() else {
        return Ok((Config::default(), None));
    };
    let explicit = std::env::var_os("DEVAIPOD_CONFIG").is_some();
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((Config::default(), None));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the devaipod configuration {}", path.display()));
        }
    };
    let text = read_text(file, &path)?;
    let config = parse(&text).map_err(|m| anyhow::anyhow!("{}:{m}", path.display()))?;
    Ok((config, Some(path)))
}

/// A devaipod.toml larger than this is refused before parsing: it holds a few settings.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the configuration as UTF-8 text of at most [`MAX_FILE_BYTES`], and no more
/// than that even when `DEVAIPOD_CONFIG` names a device or a FIFO.
fn read_text(file: std::fs::File, path: &Path) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the devaipod configuration {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "{}: the devaipod configuration is larger than the {MAX_FILE_BYTES} byte limit; it holds a few settings: is this the right file? (DEVAIPOD_CONFIG names another)",
            path.display()
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: the devaipod configuration is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("devaipod.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("write");
        for path in [big.as_path(), Path::new("/dev/zero")] {
            let file = std::fs::File::open(path).expect("open");
            let e = read_text(file, path).expect_err("too large");
            assert!(
                format!("{e}").contains("larger than the 1048576 byte limit"),
                "{e}"
            );
        }
        std::fs::write(&big, b"[agent]\nmodel = \"\xff\"\n").expect("write");
        let file = std::fs::File::open(&big).expect("open");
        let e = read_text(file, &big).expect_err("not UTF-8");
        assert!(
            format!("{e}").contains("not UTF-8 text (invalid byte at offset 17)"),
            "{e}"
        );
    }

    #[test]
    fn parses_the_documented_file() {
        let c = parse(
            "[agent]\nsecrets = [\"ANTHROPIC_API_KEY\"]\n[trusted]\nsecrets = [\"GH_TOKEN=gh-token\"]\n[repos.\"/src/p\"]\ntrust = true\n",
        )
        .expect("parses");
        assert_eq!(c.agent.secrets, ["ANTHROPIC_API_KEY"]);
        assert_eq!(c.agent.pids_limit, None);
        assert_eq!(c.trusted.secrets, ["GH_TOKEN=gh-token"]);
        assert!(c.repos["/src/p"].trust);
        assert_eq!(parse("").expect("empty"), Config::default());
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let e = parse("[agent]\nsecrets = []\nsecret = [\"X\"]\n").expect_err("unknown key");
        assert!(e.starts_with("3:1:"), "{e}");
        assert!(e.contains("secret"), "{e}");
        let e = parse("[agnet]\n").expect_err("unknown table");
        assert!(e.starts_with("1:"), "{e}");
        let e = parse("[agent]\nsecrets = \"X\"\n").expect_err("wrong type");
        assert!(e.starts_with("2:"), "{e}");
    }

    #[test]
    fn agent_rules_name_the_file() {
        let file = Path::new("/home/me/.config/devaipod.toml");
        let c = parse("[agent]\nsecrets = [\"K\"]\n[trusted]\nsecrets = [\"K\"]\n").expect("parse");
        let e = c.secret_lists(file).expect_err("in both");
        assert!(
            format!("{e}").starts_with("/home/me/.config/devaipod.toml: K is listed under both"),
            "{e}"
        );
        let c =
            parse("[agent]\nsecrets = [\"A\"]\n[trusted]\nsecrets = [\"B=b\"]\n").expect("parse");
        let (agent, trusted) = c.secret_lists(file).expect("distinct");
        assert_eq!(
            (agent.len(), trusted[0].existing.as_deref()),
            (1, Some("b"))
        );

        let c = parse("[agent]\npids_limit = 63\n").expect("parse");
        let e = c.agent_pids_limit(file).expect_err("too small");
        assert!(
            format!("{e}").contains("[agent] pids_limit 63 is too small"),
            "{e}"
        );
        let c = parse("[agent]\npids_limit = 64\nmemory_limit = \"1g\"\n").expect("parse");
        assert_eq!(c.agent_pids_limit(file).expect("64"), Some(64));
        assert_eq!(c.agent_memory_limit(file).expect("1g"), Some(1 << 30));
        let c = parse("[agent]\nmemory_limit = \"lots\"\n").expect("parse");
        let e = c.agent_memory_limit(file).expect_err("lots");
        assert!(
            format!("{e}").contains(": [agent] memory_limit \"lots\""),
            "{e}"
        );
        let c = parse("[agent]\ndisk_limit = \"2g\"\n").expect("parse");
        assert_eq!(c.agent_disk_limit(file).expect("2g"), Some(2 << 30));
        let c = parse("[agent]\ndisk_limit = \"none\"\n").expect("parse");
        assert_eq!(c.agent_disk_limit(file).expect("none"), None);
        let c = parse("[agent]\ndisk_limit = \"1m\"\n").expect("parse");
        let e = c.agent_disk_limit(file).expect_err("1m");
        assert_eq!(
            format!("{e}"),
            "/home/me/.config/devaipod.toml: [agent] disk_limit \"1m\": must be at least 256m (or \"none\")"
        );
        let e = parse("[agent]\ndisk_limit = 10\n").expect_err("a number");
        assert!(e.starts_with("2:14:"), "{e}");
        let c = Config::default();
        assert_eq!(
            c.agent_disk_limit(file).expect("unset"),
            Some(crate::plan::AGENT_DISK_LIMIT)
        );
        assert_eq!(c.agent_pids_limit(file).expect("unset"), None);
        assert_eq!(c.agent_memory_limit(file).expect("unset"), None);
        assert_eq!(c.agent_opencode_json(file).expect("unset"), None);
    }

    const CREDENTIAL: &str = "[agent.credentials.anthropic]\nbase_url = \"https://api.anthropic.com/v1\"\nheader = \"x-api-key\"\nsecret = \"ANTHROPIC_API_KEY\"\n";

    #[test]
    fn the_network_settings_of_the_documented_file() {
        let c = parse(
            "[agent]\nnetwork = \"allowlist\"\nallow = [\"*.example.org\", \"Git.Example.com:8443\"]\n[agent.credentials.anthropic]\nbase_url = \"https://api.anthropic.com/v1\"\nheader = \"x-api-key\"\nprefix = \"\"\nsecret = \"ANTHROPIC_API_KEY\"\n[agent.credentials.openai]\nbase_url = \"https://api.openai.com/v1\"\nheader = \"authorization\"\nprefix = \"Bearer \"\nsecret = \"OPENAI_KEY=openai-key\"\n",
        )
        .expect("parses");
        assert_eq!(c.agent.network_mode(), NetworkMode::Allowlist);
        let allowed: Vec<String> = c.agent.allowed.iter().map(|a| a.to_string()).collect();
        assert_eq!(allowed, ["*.example.org", "git.example.com:8443"]);
        assert_eq!(
            c.agent.credential_inputs(),
            [
                CredentialInput {
                    provider: "anthropic".into(),
                    base_url: "https://api.anthropic.com/v1".into(),
                    header: "x-api-key".into(),
                    prefix: String::new(),
                    secret: crate::plan::UserSecret {
                        env_name: "ANTHROPIC_API_KEY".into(),
                        existing: None
                    },
                    preset: None,
                },
                CredentialInput {
                    provider: "openai".into(),
                    base_url: "https://api.openai.com/v1".into(),
                    header: "authorization".into(),
                    prefix: "Bearer ".into(),
                    secret: crate::plan::UserSecret {
                        env_name: "OPENAI_KEY".into(),
                        existing: Some("openai-key".into())
                    },
                    preset: None,
                },
            ]
        );
        let c = parse("").expect("empty");
        assert_eq!(c.agent.network_mode(), NetworkMode::Allowlist);
        assert!(c.agent.allowed.is_empty() && c.agent.credential_inputs().is_empty());
        for mode in ["none", "full"] {
            let c = parse(&format!("[agent]\nnetwork = \"{mode}\"\n")).expect(mode);
            assert_eq!(c.agent.network_mode().as_str(), mode);
        }
        // An inline table and dotted keys read the same.
        let c = parse("[agent]\ncredentials.a = { base_url = \"https://x.example\", header = \"h\", secret = \"K\" }\n").expect("inline");
        assert_eq!(c.agent.credential_inputs()[0].provider, "a");
    }

    /// Each refusal, exactly, with its line and column.
    #[test]
    fn network_errors_are_exact_and_positioned() {
        let ip = "an IP address literal (dotted, decimal, octal, hex, short or IPv6, with or without brackets): name hosts by their DNS name, which the proxy resolves and checks";
        let cases: Vec<(String, String)> = vec![
            (
                "[agent]\nnetwork = \"open\"\n".into(),
                "2:11: network mode \"open\" is not one of \"allowlist\" (the default: the names you allow), \"none\" (no outside access but the credential routes) or \"full\" (any address)".into(),
            ),
            (
                "[agent]\nallow = [\"ok.example\",\n  \"0x7f.1\"]\n".into(),
                format!("3:3: [agent] allow entry \"0x7f.1\": {ip}"),
            ),
            (
                "[agent]\nallow = [\"[::1]:443\"]\n".into(),
                format!("2:10: [agent] allow entry \"[::1]:443\": {ip}"),
            ),
            (
                "[agent]\nallow = [\"a.example\", \"A.example:443\", \"a.example:443\"]\n".into(),
                "2:40: [agent] allow lists a.example:443 twice".into(),
            ),
            (
                "[agent]\nallow = [\"a.example:70000\"]\n".into(),
                "2:10: [agent] allow entry \"a.example:70000\": port \"70000\" is not a number from 1 to 65535".into(),
            ),
            (
                "[agent]\nallow = [\"a.example\"]\nnetwork = \"none\"\n".into(),
                "3:11: [agent] network = \"none\" takes no allow list: the names of [agent] allow (at 2:10) would be ignored; remove allow, or set network = \"allowlist\"".into(),
            ),
            (
                "[agent]\nnetwork = \"full\"\nallow = [\"a.example\"]\n".into(),
                "2:11: [agent] network = \"full\" takes no allow list: the names of [agent] allow (at 3:10) would be ignored; remove allow, or set network = \"allowlist\"".into(),
            ),
            (
                "[agent.credentials.amazon-bedrock]\nbase_url = \"https://x.example\"\nheader = \"h\"\nsecret = \"K\"\n".into(),
                "1:20: provider amazon-bedrock cannot be given a key by devaipod's proxy: Amazon Bedrock signs every request with AWS SigV4 (a signature over the request made with the secret key), which one static header cannot carry; leave it out of [agent.credentials] (an [agent] secret would put its credentials inside the agent)".into(),
            ),
            (
                "[agent.credentials.\"Open/AI\"]\nbase_url = \"https://x.example\"\nheader = \"h\"\nsecret = \"K\"\n".into(),
                "1:20: provider id \"Open/AI\": an opencode provider id is [a-z0-9][a-z0-9._-]* (at most 64 characters), e.g. anthropic".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://10.0.0.1/v1\"\nheader = \"h\"\nsecret = \"K\"\n".into(),
                format!("2:12: [agent.credentials.a] base_url \"https://10.0.0.1/v1\": host \"10.0.0.1\": {ip}"),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://me:pw@x.example/v1\"\nheader = \"h\"\nsecret = \"K\"\n".into(),
                "2:12: [agent.credentials.a] base_url \"https://me:pw@x.example/v1\": has user info (user@ or user:password@); the key belongs in secret".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://x.example/v1?k=1\"\nheader = \"h\"\nsecret = \"K\"\n".into(),
                "2:12: [agent.credentials.a] base_url \"https://x.example/v1?k=1\": has a query or fragment; give the base URL only (scheme, host, port, path)".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"x api key\"\nsecret = \"K\"\n".into(),
                "3:10: [agent.credentials.a] header \"x api key\" is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), e.g. x-api-key or authorization".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"h\"\nprefix = \"Bearer\\r\\n\"\nsecret = \"K\"\n".into(),
                "4:10: [agent.credentials.a] prefix may hold only visible ASCII characters and spaces (at most 64), e.g. \"Bearer \"".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"h\"\n".into(),
                "1:1: missing field `secret`".into(),
            ),
            (
                "[agent.credentials.a]\nbase_url = \"https://x.example\"\nheader = \"h\"\nsecret = \"K\"\nsecrets = []\n".into(),
                "5:1: unknown field `secrets`, expected one of `base_url`, `header`, `prefix`, `secret`".into(),
            ),
            (
                "[agent]\nsecrets = [\"ANTHROPIC_API_KEY\"]\n".to_string() + CREDENTIAL,
                "6:10: [agent.credentials.anthropic] secret ANTHROPIC_API_KEY is also listed in [agent] secrets, which puts it inside the agent; list it only here, where the proxy holds it".into(),
            ),
            (
                CREDENTIAL.to_string() + "[agent.opencode]\nprovider.anthropic.options.baseURL = \"https://elsewhere.example\"\n",
                "6:28: [agent.opencode] provider.anthropic.options.baseURL conflicts with [agent.credentials.anthropic] (at 1:20): devaipod points that provider's baseURL at its proxy, which forwards to the base_url there; remove provider.anthropic.options.baseURL".into(),
            ),
            (
                "[agent.opencode.provider.anthropic]\noptions = { apiKey = \"{file:/run/secrets/K}\" }\n".to_string() + CREDENTIAL,
                "2:13: [agent.opencode] provider.anthropic.options.apiKey conflicts with [agent.credentials.anthropic] (at 3:20): devaipod gives the agent a placeholder apiKey for that provider and the proxy adds the key from the secret there; remove provider.anthropic.options.apiKey".into(),
            ),
            (
                "[agent]\nnetwork = \"full\"\n".to_string() + CREDENTIAL,
                "2:11: [agent] network = \"full\" runs no proxy, but [agent.credentials.anthropic] (at 3:20) needs the proxy to hold its key: set network = \"allowlist\" (the default) or \"none\", or remove [agent.credentials]".into(),
            ),
            (
                "[agent]\nproviders = [\"anthropic\", \"ollama\"]\n".into(),
                format!("2:27: [agent] providers: \"ollama\" is no built-in preset (the presets: {}); configure ollama with [agent.credentials.ollama]", presets::ids()),
            ),
            (
                "[agent]\nproviders = [\"Open AI\"]\n".into(),
                format!("2:14: [agent] providers: the entry (not shown, in case it is a key) is no built-in preset (the presets: {})", presets::ids()),
            ),
            (
                "[agent]\nproviders = [\"sk-ant-api03-secret\"]\n".into(),
                format!("2:14: [agent] providers: the entry (not shown, in case it is a key) is no built-in preset (the presets: {})", presets::ids()),
            ),
            (
                "[agent]\nproviders = [\"anthropic=sk-ant-api03-secret\"]\n".into(),
                "2:14: [agent] providers: anthropic=...: the podman secret name after '=' must be [A-Za-z0-9_.-]+, at most 64 characters, and not a key (the value is not shown, in case it is one)".into(),
            ),
            (
                "[agent]\nproviders = [\"groq\", \"groq=k\"]\n".into(),
                "2:22: [agent] providers lists groq twice".into(),
            ),
            (
                "[agent]\nproviders = [\"groq=sk live key\"]\n".into(),
                "2:14: [agent] providers: groq=...: the podman secret name after '=' must be [A-Za-z0-9_.-]+, at most 64 characters, and not a key (the value is not shown, in case it is one)".into(),
            ),
            (
                "[agent]\nproviders = \"groq\"\n".into(),
                "2:13: invalid type: string \"groq\", expected a sequence".into(),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).expect_err(&text), want, "{text}");
        }
        // Other providers' settings in [agent.opencode] are the user's.
        let ok = CREDENTIAL.to_string()
            + "[agent.opencode]\nprovider.openai.options.baseURL = \"https://x.example\"\nprovider.anthropic.options.timeout = 5\n";
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn a_key_written_where_its_name_belongs_is_not_repeated() {
        let sentinel = "sk-ant-sentinel-value-123";
        let text = CREDENTIAL.replace("ANTHROPIC_API_KEY", sentinel);
        let e = parse(&text).expect_err("not a name");
        assert_eq!(
            e,
            "4:10: a secret entry is NAME or NAME=podman-secret, and the name must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*); the entry is not shown, in case it is a key itself"
        );
        let c = parse(&format!("[agent]\nsecrets = [\"OK\", \"{sentinel}\"]\n")).expect("parse");
        let e = c
            .secret_lists(Path::new("devaipod.toml"))
            .expect_err("bad")
            .to_string();
        assert!(
            e.starts_with("devaipod.toml: [agent] secrets[1]: a secret entry is NAME"),
            "{e}"
        );
        assert!(!e.contains(sentinel), "{e}");
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("16g"), Ok(16 << 30));
        assert_eq!(parse_memory_limit("512M"), Ok(512 << 20));
        assert_eq!(parse_memory_limit("1073741824"), Ok(1 << 30));
        let refused = [
            ("", "expected a number"),
            ("x", "unknown unit"),
            ("1q", "unknown unit"),
            ("-1g", "at least 64m"),
            ("1k", "at least 64m"),
            ("99999999999999999999", "expected a number"),
        ];
        for (bad, why) in refused {
            let e = parse_memory_limit(bad).expect_err(bad);
            assert!(
                e.starts_with("memory_limit ") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn disk_limits() {
        assert_eq!(parse_disk_limit("10g"), Ok(Some(10 << 30)));
        assert_eq!(parse_disk_limit(" 256m "), Ok(Some(256 << 20)));
        assert_eq!(parse_disk_limit("none"), Ok(None));
        let refused = [
            ("", "expected a number"),
            ("None", "unknown unit"),
            ("10GiB", "unknown unit"),
            ("-1g", "at least 256m"),
            ("255m", "at least 256m"),
            ("0", "at least 256m"),
            ("99999999999999999999", "expected a number"),
        ];
        for (bad, why) in refused {
            let e = parse_disk_limit(bad).expect_err(bad);
            assert!(
                e.starts_with("disk_limit ") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn secret_entries() {
        assert_eq!(
            parse_secret_entry("GH_TOKEN"),
            Ok(SecretEntry {
                name: "GH_TOKEN".into(),
                existing: None
            })
        );
        assert_eq!(
            parse_secret_entry("GH_TOKEN=my-gh.token"),
            Ok(SecretEntry {
                name: "GH_TOKEN".into(),
                existing: Some("my-gh.token".into())
            })
        );
        for bad in ["", "1X", "A-B", "A=", "A=b c", "A=$(x)", "-x"] {
            assert!(parse_secret_entry(bad).is_err(), "{bad}");
        }
    }
}
