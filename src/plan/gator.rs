//! The optional service-gator container: scopes (`github:OWNER/REPO[:PERMS]`,
//! `gitlab:GROUP/PROJECT[:PERMS]`, `jira:KEY[:PERMS]`), validated before anything is
//! made and passed to service-gator as one explicit `--scope` JSON document (every
//! permission spelled out: its `--gh-repo OWNER/REPO:read` would also grant
//! create-draft and pending-review, which service-gator turns on by default).
//! docs/service-gator.md has the details. The gator holds the forge tokens; the agent
//! only gets its MCP address.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::Context;
use super::error::PlanError;
use super::input::GatorInput;
use super::labels::Role;
use super::secrets::Secrets;
use super::spec::{ContainerSpec, Extras, GatorPlan, Seccomp, SecretRef};

/// The image the service-gator project publishes (LobsterTrap/service-gator, formerly
/// cgwalters/service-gator; its README and CI name this one).
pub(crate) const DEFAULT_IMAGE: &str = "ghcr.io/lobstertrap/service-gator:latest";
/// Where the agent reaches the gator, on the pod's loopback: devaipod-net's relay
/// (`mcp-audit`), which logs each MCP request and its outcome.
pub(crate) const PORT: u16 = 8765;
/// Where service-gator itself listens, behind the relay. The agent's rules reach the
/// gator's uid on [`PORT`] only, so the agent cannot go around the log.
pub(crate) const SERVER_PORT: u16 = 8766;
/// The entrypoint of the image the project publishes, assumed by `--dry-run` for an
/// image not in the local store yet (`up` reads the image's own after the pull).
const PUBLISHED_ENTRYPOINT: &str = "service-gator";
/// The gator's uid:gid (non-root; its port needs no privilege).
pub(crate) const UID: u32 = 65534;

/// The MCP endpoint the agent's opencode configuration names.
pub(crate) fn mcp_url() -> String {
    format!("http://127.0.0.1:{PORT}/mcp")
}

/// Which service a scope is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Service {
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
pub(crate) struct Scope {
    pub service: Service,
    /// `OWNER/REPO`, `OWNER/*`, `GROUP/PROJECT` or a JIRA project key.
    pub target: String,
    /// Granted permissions (`read` always; `write` implies the rest).
    pub perms: Vec<String>,
}

impl Scope {
    pub(crate) fn is_wildcard(&self) -> bool {
        self.target.ends_with('*')
    }

    pub(crate) fn writes(&self) -> bool {
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
pub(crate) fn parse_scope(text: &str) -> Result<Scope, String> {
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
            if let Some(why) = jira_key_refusal(target) {
                return Err(bad(&format!(
                    "{target:?} is not a JIRA project key: {why} (service-gator takes 2 to 10 letters and digits, a letter first, and exits at start on any other)"
                )));
            }
        }
    }
    // service-gator keeps JIRA keys in upper case; so does the plan.
    let target = match service {
        Service::Jira => target.to_ascii_uppercase(),
        _ => target.to_string(),
    };
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
        target,
        perms: granted,
    })
}

/// Why service-gator would refuse `key` as a JIRA project key, in its own words and in
/// its order of checks; `None` for a key it takes.
fn jira_key_refusal(key: &str) -> Option<String> {
    if key.len() < 2 {
        return Some(format!(
            "project key too short ({} chars, min 2)",
            key.len()
        ));
    }
    if key.len() > 10 {
        return Some(format!(
            "project key too long ({} chars, max 10)",
            key.len()
        ));
    }
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Some("project key must start with a letter".into());
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Some("project key must be alphanumeric (A-Z, 0-9)".into());
    }
    None
}

/// Parses and checks all scopes: no duplicates, and write access on a wildcard only
/// with the explicit confirmation.
pub(crate) fn parse_scopes(
    texts: &[String],
    allow_wildcard_write: bool,
) -> Result<Vec<Scope>, String> {
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
pub(crate) fn scope_json(scopes: &[Scope]) -> Value {
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

/// service-gator's arguments (after its image's entrypoint).
pub(crate) fn server_args(scopes: &[Scope], gitlab_host: Option<&str>) -> Vec<String> {
    let mut v = vec![
        "--mcp-server".to_string(),
        format!("127.0.0.1:{SERVER_PORT}"),
        "--scope".into(),
        scope_json(scopes).to_string(),
    ];
    if let Some(h) = gitlab_host {
        v.extend(["--gitlab-host".into(), h.to_string()]);
    }
    v
}

/// The gator's whole command line: devaipod-net's relay on [`PORT`], then the image's
/// entrypoint with service-gator's arguments, listening on [`SERVER_PORT`].
pub(crate) fn command(
    entrypoint: &[String],
    scopes: &[Scope],
    gitlab_host: Option<&str>,
) -> Vec<String> {
    let mut v = vec![
        super::network::mounted_exe(),
        "mcp-audit".into(),
        "--listen".into(),
        format!("127.0.0.1:{PORT}"),
        "--upstream".into(),
        format!("127.0.0.1:{SERVER_PORT}"),
        "--".into(),
    ];
    v.extend(entrypoint.iter().cloned());
    v.extend(server_args(scopes, gitlab_host));
    v
}

/// The service-gator variable a trusted secret feeds (`NAME_FILE`), if any. Forgejo
/// and Gitea are not among them: service-gator takes Forgejo hosts and repositories
/// only from its own configuration file, which devaipod does not write.
pub(crate) fn token_var(secret_env: &str) -> Option<&'static str> {
    match secret_env {
        "GH_TOKEN" | "GITHUB_TOKEN" => Some("GH_TOKEN_FILE"),
        "GITLAB_TOKEN" => Some("GITLAB_TOKEN_FILE"),
        "JIRA_API_TOKEN" => Some("JIRA_API_TOKEN_FILE"),
        _ => None,
    }
}

/// service-gator's log level: it logs errors only by default (tracing's EnvFilter
/// without RUST_LOG); at info it says where it listens, each write it makes (a push,
/// a pull request, a review, a JIRA change), a count of reads every 5 s, and its MCP
/// library's session lines and JSON-RPC errors. No tokens at this level; the tool
/// calls and their refusals are logged by devaipod-net's relay in front of it.
pub(crate) const LOG_LEVEL: &str = "info";

/// The gator's part of the plan: its container, what `--dry-run` shows of it, and
/// warnings (a service with scopes but no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gator {
    pub container: ContainerSpec,
    pub plan: GatorPlan,
    pub warnings: Vec<String>,
}

/// The token variable each service reads, and the secrets that can feed it.
const TOKENS: &[(Service, &str, &str)] = &[
    (Service::Github, "GH_TOKEN_FILE", "GH_TOKEN or GITHUB_TOKEN"),
    (Service::Gitlab, "GITLAB_TOKEN_FILE", "GITLAB_TOKEN"),
    (Service::Jira, "JIRA_API_TOKEN_FILE", "JIRA_API_TOKEN"),
];

impl Gator {
    /// The gator, when enabled: hardened like the agent, holding the forge tokens of
    /// `[trusted] secrets` as 0400 files of its own uid (the first secret feeding a
    /// variable wins), service-gator behind devaipod-net's logging relay. `None` when
    /// the gator is off; an error without devaipod-net or without the image's
    /// entrypoint.
    pub(crate) fn new(
        ctx: &Context<'_>,
        secrets: &Secrets,
        mounts: Vec<super::spec::MountSpec>,
    ) -> Result<Option<Self>, PlanError> {
        let Some(g) = ctx.input.gator.as_ref() else {
            return Ok(None);
        };
        let net =
            super::network::workspace_shared_mount(ctx.input).ok_or(PlanError::GatorWithoutNet)?;
        let (entrypoint, entrypoint_from) = match &g.entrypoint {
            Some(e) if e.is_empty() => {
                return Err(PlanError::GatorWithoutEntrypoint {
                    image: g.image.clone(),
                });
            }
            Some(e) => (e.clone(), "the image's ENTRYPOINT".to_string()),
            None => (
                vec![PUBLISHED_ENTRYPOINT.to_string()],
                format!(
                    "assumed {PUBLISHED_ENTRYPOINT:?} (the published image's): the image is not in the local store yet, `up` reads its ENTRYPOINT after the pull"
                ),
            ),
        };
        let mut env: BTreeMap<String, String> = [
            ("HOME".to_string(), "/tmp".to_string()),
            ("RUST_LOG".to_string(), LOG_LEVEL.to_string()),
            // Plain lines: tracing colours its output unless NO_COLOR is set, and the
            // relay would show each escape sequence as text.
            ("NO_COLOR".to_string(), "1".to_string()),
        ]
        .into();
        if let Some(h) = &g.jira_host {
            env.insert("JIRA_HOST".into(), h.clone());
        }
        if let Some(u) = &g.jira_username {
            env.insert("JIRA_USERNAME".into(), u.clone());
        }
        let mut tokens = Vec::new();
        let mut token_files = Vec::new();
        for (s, r) in ctx.input.trusted_secrets.iter().zip(&secrets.workspace) {
            let Some(var) = token_var(&s.env_name).filter(|v| !env.contains_key(*v)) else {
                continue;
            };
            env.insert(var.into(), r.target.clone());
            token_files.push(format!("{var} <- {}", s.env_name));
            tokens.push(SecretRef {
                owner: Some(UID.to_string()),
                mode: 0o400,
                ..r.clone()
            });
        }
        let warnings = TOKENS
            .iter()
            .filter(|(service, var, _)| {
                g.scopes.iter().any(|s| s.service == *service) && !env.contains_key(*var)
            })
            .map(|(service, _, names)| format!(
                "service-gator has {service:?} scopes but no token: list {names} under [trusted] secrets"
            ))
            .collect();
        Ok(Some(Gator {
            container: container(ctx, g, &entrypoint, env, tokens, mounts, net),
            plan: GatorPlan {
                image: g.image.clone(),
                scopes: g.scopes.iter().map(ToString::to_string).collect(),
                mcp_url: mcp_url(),
                token_files,
                server: format!("127.0.0.1:{SERVER_PORT}"),
                entrypoint,
                entrypoint_from,
            },
            warnings,
        }))
    }
}

fn container(
    ctx: &Context<'_>,
    g: &GatorInput,
    entrypoint: &[String],
    env: BTreeMap<String, String>,
    secrets: Vec<SecretRef>,
    mounts: Vec<super::spec::MountSpec>,
    net: super::spec::SharedMount,
) -> ContainerSpec {
    ContainerSpec {
        role: Role::Gator,
        name: ctx.object_name("gator"),
        image: g.image.clone(),
        // The relay first, then the image's entrypoint: nothing of the image runs
        // before or around the command checked after create.
        command: command(entrypoint, &g.scopes, g.gitlab_host.as_deref()),
        user: Some(format!("{UID}:{UID}")),
        workdir: "/".into(),
        init: true,
        init_container: false,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        security_opt: vec!["no-new-privileges".into()],
        seccomp: Seccomp::Default,
        read_only: true,
        tmpfs: vec!["/tmp".into(), "/run/secrets".into()],
        pids_limit: Some(1024),
        memory_limit: Some(1024 * 1024 * 1024),
        cpu_millis: None,
        shared_mounts: vec![net],
        mounts,
        env,
        secrets,
        labels: ctx.labels(Role::Gator),
        extra: Extras::default(),
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
        for key in ["AB", "A1", "ABCDEFGHIJ", "X9Y8"] {
            assert!(parse_scope(&format!("jira:{key}")).is_ok(), "{key}");
        }
        assert_eq!(parse_scope("jira:proj").expect("lower case").target, "PROJ");
        for (bad, want) in [
            ("octo/hello", "no service"),
            ("bitbucket:a/b", "unknown service"),
            ("github:octo", "not OWNER/REPO"),
            ("github:../x", "not OWNER/REPO"),
            ("github:a/b/c", "not OWNER/REPO"),
            ("github:a/b:admin", "unknown permission \"admin\""),
            ("jira:A", "project key too short (1 chars, min 2)"),
            (
                "jira:ABCDEFGHIJK",
                "project key too long (11 chars, max 10)",
            ),
            (
                "jira:MY_PROJ",
                "project key must be alphanumeric (A-Z, 0-9)",
            ),
            ("jira:1AB", "project key must start with a letter"),
            ("jira:ÉTÉ", "project key must start with a letter"),
            ("jira:PROJ:approve", "unknown permission"),
        ] {
            let e = parse_scope(bad).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn only_tokens_service_gator_reads_from_its_environment_are_mapped() {
        assert_eq!(token_var("GH_TOKEN"), Some("GH_TOKEN_FILE"));
        assert_eq!(token_var("GITHUB_TOKEN"), Some("GH_TOKEN_FILE"));
        assert_eq!(token_var("GITLAB_TOKEN"), Some("GITLAB_TOKEN_FILE"));
        assert_eq!(token_var("JIRA_API_TOKEN"), Some("JIRA_API_TOKEN_FILE"));
        // Its Forgejo token comes from its scope configuration, which devaipod has none of.
        for other in ["FORGEJO_TOKEN", "GITEA_TOKEN", "ANTHROPIC_API_KEY"] {
            assert_eq!(token_var(other), None, "{other}");
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
        let cmd = server_args(&sc, None);
        assert_eq!(cmd[..3], ["--mcp-server", "127.0.0.1:8766", "--scope"]);
        let cmd = command(&["/usr/bin/service-gator".to_string()], &sc, None);
        assert_eq!(
            cmd[..10],
            [
                "/opt/devaipod-net/devaipod-net",
                "mcp-audit",
                "--listen",
                "127.0.0.1:8765",
                "--upstream",
                "127.0.0.1:8766",
                "--",
                "/usr/bin/service-gator",
                "--mcp-server",
                "127.0.0.1:8766"
            ]
        );
        assert_eq!(token_var("GITHUB_TOKEN"), Some("GH_TOKEN_FILE"));
        assert_eq!(token_var("OPENAI_API_KEY"), None);
    }

    fn gator_input(scopes: &[&str]) -> crate::plan::PlanInput {
        let mut i = crate::plan::tests_support::input();
        i.gator = Some(GatorInput {
            image: "localhost/gator:1".into(),
            scopes: parse_scopes(&s(scopes), false).expect("scopes"),
            gitlab_host: Some("gitlab.example.com".into()),
            jira_host: Some("jira.example.com".into()),
            jira_username: Some("me@example.com".into()),
            entrypoint: Some(vec!["/usr/bin/service-gator".into()]),
        });
        i
    }

    fn secret(env_name: &str) -> crate::plan::UserSecret {
        crate::plan::UserSecret {
            env_name: env_name.into(),
            existing: None,
        }
    }

    #[test]
    fn the_gator_gets_only_token_files_of_its_own_uid_first_one_wins() {
        let mut i = gator_input(&["github:o/r", "gitlab:g/p"]);
        i.trusted_secrets = ["GITHUB_TOKEN", "DB_PASSWORD", "GH_TOKEN", "GITLAB_TOKEN"]
            .map(secret)
            .to_vec();
        let ctx = Context::new(&i);
        let g = Gator::new(&ctx, &Secrets::new(&ctx), vec![])
            .expect("a plan")
            .expect("enabled");
        let c = &g.container;
        let names: Vec<&str> = c.secrets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "devaipod-demo-secret-github_token",
                "devaipod-demo-secret-gitlab_token"
            ]
        );
        assert!(
            c.secrets
                .iter()
                .all(|r| r.mode == 0o400 && r.owner.as_deref() == Some("65534"))
        );
        assert_eq!(c.env["GH_TOKEN_FILE"], "/run/secrets/GITHUB_TOKEN");
        assert_eq!(c.env["JIRA_HOST"], "jira.example.com");
        assert_eq!(c.env["JIRA_USERNAME"], "me@example.com");
        assert_eq!(c.env["RUST_LOG"], "info");
        assert_eq!(c.env["NO_COLOR"], "1");
        assert_eq!(
            g.plan.token_files,
            [
                "GH_TOKEN_FILE <- GITHUB_TOKEN",
                "GITLAB_TOKEN_FILE <- GITLAB_TOKEN"
            ]
        );
        assert!(g.warnings.is_empty(), "{:?}", g.warnings);
        assert!(c.command.ends_with(&[
            "--gitlab-host".to_string(),
            "gitlab.example.com".to_string()
        ]));
        assert!(c.read_only && c.no_new_privileges && c.cap_add.is_empty());
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.mounts.is_empty());
        assert_eq!(
            c.shared_mounts
                .iter()
                .map(|m| m.target.as_str())
                .collect::<Vec<_>>(),
            ["/opt/devaipod-net"],
            "devaipod-net, for the relay"
        );
    }

    #[test]
    fn a_service_without_its_token_warns_and_no_gator_without_input() {
        let i = gator_input(&["jira:PROJ"]);
        let ctx = Context::new(&i);
        let g = Gator::new(&ctx, &Secrets::new(&ctx), vec![])
            .expect("a plan")
            .expect("enabled");
        assert_eq!(g.warnings.len(), 1);
        assert!(
            g.warnings[0].contains("Jira scopes but no token: list JIRA_API_TOKEN"),
            "{:?}",
            g.warnings
        );
        assert!(g.container.secrets.is_empty());
        let i = crate::plan::tests_support::input();
        let ctx = Context::new(&i);
        assert_eq!(Gator::new(&ctx, &Secrets::new(&ctx), vec![]), Ok(None));
    }
}
