//! The optional service-gator container: scopes (`github:OWNER/REPO[:PERMS]`,
//! `gitlab:GROUP/PROJECT[:PERMS]`, `jira:KEY[:PERMS]`), validated before anything is
//! made and passed to service-gator as one explicit `--scope` JSON document (every
//! permission spelled out: its `--gh-repo OWNER/REPO:read` would also grant
//! create-draft and pending-review, which service-gator turns on by default).
//! docs/service-gator.md has the details.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

/// The image upstream devaipod runs for the gator.
pub const DEFAULT_IMAGE: &str = "ghcr.io/cgwalters/service-gator:latest";
/// Where the gator's MCP server listens, on the pod's loopback.
pub const PORT: u16 = 8765;
/// The gator's uid:gid (non-root; its port needs no privilege).
pub const UID: u32 = 65534;

/// The MCP endpoint the agent's opencode configuration names.
pub fn mcp_url() -> String {
    format!("http://127.0.0.1:{PORT}/mcp")
}

/// Which service a scope is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Github,
    Gitlab,
    Jira,
}

impl Service {
    fn perms(self) -> &'static [&'static str] {
        match self {
            Service::Github => &[
                "read",
                "create-draft",
                "pending-review",
                "push-new-branch",
                "write",
            ],
            Service::Gitlab => &[
                "read",
                "create-draft",
                "approve",
                "push-new-branch",
                "write",
            ],
            Service::Jira => &["read", "comment", "create", "write"],
        }
    }

    fn writes(self) -> &'static [&'static str] {
        match self {
            Service::Github | Service::Gitlab => &["push-new-branch", "write"],
            Service::Jira => &["write"],
        }
    }
}

/// One validated scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub service: Service,
    /// `OWNER/REPO`, `OWNER/*`, `GROUP/PROJECT` or a JIRA project key.
    pub target: String,
    /// Granted permissions (`read` always; `write` implies the rest).
    pub perms: Vec<String>,
}

impl Scope {
    pub fn is_wildcard(&self) -> bool {
        self.target.ends_with('*')
    }

    pub fn writes(&self) -> bool {
        self.perms
            .iter()
            .any(|p| self.service.writes().contains(&p.as_str()))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.service {
            Service::Github => "github",
            Service::Gitlab => "gitlab",
            Service::Jira => "jira",
        };
        write!(f, "{s}:{}:{}", self.target, self.perms.join(","))
    }
}

fn valid_path_part(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p != "."
        && p != ".."
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses `SERVICE:TARGET[:PERMS]`; PERMS defaults to `read`.
pub fn parse_scope(text: &str) -> Result<Scope, String> {
    let bad = |why: &str| {
        format!(
            "service-gator scope {text:?}: {why} (write github:OWNER/REPO[:PERMS], gitlab:GROUP/PROJECT[:PERMS] or jira:KEY[:PERMS])"
        )
    };
    let (service, rest) = text.split_once(':').ok_or_else(|| bad("no service"))?;
    let service = match service {
        "github" | "gh" => Service::Github,
        "gitlab" | "gl" => Service::Gitlab,
        "jira" => Service::Jira,
        _ => return Err(bad(&format!("unknown service {service:?}"))),
    };
    let (target, perms) = match rest.split_once(':') {
        Some((t, p)) => (t, p),
        None => (rest, "read"),
    };
    match service {
        Service::Github | Service::Gitlab => {
            let parts: Vec<&str> = target.split('/').collect();
            let ok = parts.len() >= 2
                && (service == Service::Gitlab || parts.len() == 2)
                && parts[..parts.len() - 1].iter().all(|p| valid_path_part(p))
                && (parts[parts.len() - 1] == "*" || valid_path_part(parts[parts.len() - 1]));
            if !ok {
                return Err(bad(&format!("{target:?} is not OWNER/REPO or OWNER/*")));
            }
        }
        Service::Jira => {
            let ok = !target.is_empty()
                && target.len() <= 20
                && target
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                && target
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(bad(&format!("{target:?} is not a JIRA project key")));
            }
        }
    }
    let mut granted: Vec<String> = vec!["read".into()];
    for p in perms.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = if p == "push" { "push-new-branch" } else { p };
        if !service.perms().contains(&p) {
            return Err(bad(&format!(
                "unknown permission {p:?} (one of {})",
                service.perms().join(", ")
            )));
        }
        if !granted.iter().any(|g| g == p) {
            granted.push(p.to_string());
        }
    }
    // In service-gator's order, so plans and flags are stable.
    granted.sort_by_key(|g| service.perms().iter().position(|p| p == g));
    Ok(Scope {
        service,
        target: target.to_string(),
        perms: granted,
    })
}

/// Parses and checks all scopes: no duplicates, and write access on a wildcard only
/// with the explicit confirmation.
pub fn parse_scopes(texts: &[String], allow_wildcard_write: bool) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = Vec::new();
    for t in texts {
        let s = parse_scope(t)?;
        if s.is_wildcard() && s.writes() && !allow_wildcard_write {
            return Err(format!(
                "service-gator scope {t:?} gives write access to every repository matching {}: confirm with --service-gator-allow-wildcard-write (or allow_wildcard_write = true under [service-gator])",
                s.target
            ));
        }
        if out
            .iter()
            .any(|o| o.service == s.service && o.target == s.target)
        {
            return Err(format!(
                "service-gator scope for {} is given twice; give it once with all its permissions",
                s.target
            ));
        }
        out.push(s);
    }
    Ok(out)
}

/// service-gator's `--scope` document: every permission explicit.
pub fn scope_json(scopes: &[Scope]) -> Value {
    let mut by: BTreeMap<Service, serde_json::Map<String, Value>> = BTreeMap::new();
    for s in scopes {
        let perms: serde_json::Map<String, Value> = s
            .service
            .perms()
            .iter()
            .map(|p| (p.to_string(), json!(s.perms.iter().any(|g| g == p))))
            .collect();
        by.entry(s.service)
            .or_default()
            .insert(s.target.clone(), Value::Object(perms));
    }
    let mut doc = serde_json::Map::new();
    for (service, entries) in by {
        let (key, table) = match service {
            Service::Github => ("gh", "repos"),
            Service::Gitlab => ("gitlab", "projects"),
            Service::Jira => ("jira", "projects"),
        };
        doc.insert(key.into(), json!({ table: entries }));
    }
    Value::Object(doc)
}

/// The gator's arguments (its image's entrypoint is service-gator).
pub fn command(scopes: &[Scope], gitlab_host: Option<&str>) -> Vec<String> {
    let mut v = vec![
        "--mcp-server".to_string(),
        format!("127.0.0.1:{PORT}"),
        "--scope".into(),
        scope_json(scopes).to_string(),
    ];
    if let Some(h) = gitlab_host {
        v.extend(["--gitlab-host".into(), h.to_string()]);
    }
    v
}

/// The service-gator variable a trusted secret feeds (`NAME_FILE`), if any.
pub fn token_var(secret_env: &str) -> Option<&'static str> {
    match secret_env {
        "GH_TOKEN" | "GITHUB_TOKEN" => Some("GH_TOKEN_FILE"),
        "GITLAB_TOKEN" => Some("GITLAB_TOKEN_FILE"),
        "JIRA_API_TOKEN" => Some("JIRA_API_TOKEN_FILE"),
        "FORGEJO_TOKEN" => Some("FORGEJO_TOKEN_FILE"),
        "GITEA_TOKEN" => Some("GITEA_TOKEN_FILE"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scopes_parse_with_read_by_default_and_explicit_permissions() {
        let sc = parse_scope("github:octo/hello").expect("ok");
        assert_eq!(sc.perms, ["read"]);
        let sc = parse_scope("github:octo/hello:push,create-draft").expect("ok");
        assert_eq!(sc.perms, ["read", "create-draft", "push-new-branch"]);
        assert_eq!(
            sc.to_string(),
            "github:octo/hello:read,create-draft,push-new-branch"
        );
        assert!(parse_scope("gitlab:grp/sub/proj:approve").is_ok());
        assert!(parse_scope("jira:PROJ:comment,create").is_ok());
        for (bad, want) in [
            ("octo/hello", "no service"),
            ("bitbucket:a/b", "unknown service"),
            ("github:octo", "not OWNER/REPO"),
            ("github:../x", "not OWNER/REPO"),
            ("github:a/b/c", "not OWNER/REPO"),
            ("github:a/b:admin", "unknown permission \"admin\""),
            ("jira:proj", "not a JIRA project key"),
            ("jira:PROJ:approve", "unknown permission"),
        ] {
            let e = parse_scope(bad).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcard_write_needs_confirmation_and_duplicates_are_refused() {
        assert!(parse_scopes(&s(&["github:octo/*:read,create-draft"]), false).is_ok());
        let e = parse_scopes(&s(&["github:octo/*:write"]), false).expect_err("confirm");
        assert!(e.contains("--service-gator-allow-wildcard-write"), "{e}");
        assert!(parse_scopes(&s(&["github:octo/*:push-new-branch"]), false).is_err());
        assert!(parse_scopes(&s(&["github:octo/*:write"]), true).is_ok());
        let e = parse_scopes(&s(&["github:a/b", "github:a/b:write"]), false).expect_err("dup");
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn the_scope_document_spells_out_every_permission() {
        let sc = parse_scopes(&s(&["github:octo/hello", "jira:PROJ:comment"]), false).expect("ok");
        let doc = scope_json(&sc);
        assert_eq!(
            doc["gh"]["repos"]["octo/hello"],
            json!({"read": true, "create-draft": false, "pending-review": false, "push-new-branch": false, "write": false})
        );
        assert_eq!(
            doc["jira"]["projects"]["PROJ"],
            json!({"read": true, "comment": true, "create": false, "write": false})
        );
        let cmd = command(&sc, None);
        assert_eq!(cmd[..3], ["--mcp-server", "127.0.0.1:8765", "--scope"]);
        assert_eq!(token_var("GITHUB_TOKEN"), Some("GH_TOKEN_FILE"));
        assert_eq!(token_var("OPENAI_API_KEY"), None);
    }
}
