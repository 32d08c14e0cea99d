//! The user's own configuration: `$DEVAIPOD_CONFIG`, else
//! `$XDG_CONFIG_HOME/devaipod.toml` (default `~/.config/devaipod.toml`). Only this file
//! and the command line decide what reaches the agent; the repo's files never do.
//! Unknown keys are errors with the file's line and column.
//!
//! ```toml
//! [agent]
//! secrets = ["ANTHROPIC_API_KEY"]   # from devaipod's environment at `up`; agent only
//! model = "anthropic/claude-sonnet-4-5"   # opencode model id
//! [agent.opencode]                  # merged into the agent's opencode config
//! provider.anthropic.options.apiKey = "{file:/run/secrets/ANTHROPIC_API_KEY}"
//! [trusted]
//! secrets = ["GH_TOKEN"]            # workspace only, never the agent
//! [service-gator]
//! scopes = ["github:me/project:create-draft"]   # or up --service-gator SCOPE
//! [repos."/home/me/src/project"]
//! trust = true                      # consent for repo settings that widen access
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretEntry {
    pub name: String,
    /// `Some(podman secret)` for `NAME=podman-secret`; `None`: devaipod's environment.
    pub existing: Option<String>,
}

/// Parses `NAME` or `NAME=podman-secret-name`.
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
        return Err(format!(
            "secret entry {entry:?}: the name must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    if let Some(s) = existing
        && (s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "secret entry {entry:?}: the podman secret name after '=' must be [A-Za-z0-9_.-]+"
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
        for e in list {
            let entry = parse_secret_entry(e)
                .map_err(|m| anyhow::anyhow!("{}: [{table}] {m}", path.display()))?;
            if out.iter().any(|o| o.name == entry.name) {
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
        if let Some(both) = agent
            .iter()
            .find(|a| trusted.iter().any(|t| t.name == a.name))
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

/// Parses configuration text; errors are `LINE:COL: message`.
pub(crate) fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        format!("{line}:{col}: {}", e.message())
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
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
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((Config::default(), None));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the devaipod configuration {}", path.display()));
        }
    };
    let config = parse(&text).map_err(|m| anyhow::anyhow!("{}:{m}", path.display()))?;
    Ok((config, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Config::default();
        assert_eq!(c.agent_pids_limit(file).expect("unset"), None);
        assert_eq!(c.agent_memory_limit(file).expect("unset"), None);
        assert_eq!(c.agent_opencode_json(file).expect("unset"), None);
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
