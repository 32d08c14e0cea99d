//! `${...}` variables in devcontainer.json, substituted as the reference CLI does when
//! it reads a configuration: the local ones (`localEnv`/`env`, `localWorkspaceFolder`,
//! `localWorkspaceFolderBasename`) and the container workspace folder ones. Variables
//! that need an existing container (`containerEnv`, `devcontainerId`) and unknown or
//! malformed forms are left as written. Names are case-sensitive; there is no escaping
//! and no nesting (a `${` ends at the first `}`).
//!
//! What substitution adds is bounded ([`MAX_ADDED_BYTES`] for a configuration and for
//! a remoteEnv, [`MAX_ENV_VALUE_BYTES`] for one remoteEnv value): a 1 MiB file
//! repeating `${localEnv:PATH}` would otherwise grow to gigabytes.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the variables resolve to.
pub(crate) struct Context<'a> {
    /// The folder devaipod was pointed at, on the host.
    pub local_workspace_folder: String,
    /// The workspace folder inside the container.
    pub container_workspace_folder: String,
    /// Reads a host environment variable.
    pub local_env: &'a dyn Fn(&str) -> Option<String>,
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// What substitution may add to one configuration, over all its strings: a legitimate
/// devcontainer.json is a few KB and its variables add less (the reference has no limit).
pub(crate) const MAX_ADDED_BYTES: usize = super::MAX_CONFIG_BYTES as usize;

/// The longest remoteEnv value after `${containerEnv:...}`: Linux refuses a longer
/// environment string to any process (MAX_ARG_STRLEN, 128 KiB).
pub(crate) const MAX_ENV_VALUE_BYTES: usize = 128 * 1024;

/// Why a string's variables cannot be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VarError {
    /// `${localEnv}` / `${env}` without a name (the reference CLI fails on it too).
    #[error("${{{0}}} needs a variable name, e.g. ${{{0}:HOME}}")]
    NoName(String),
    /// The variables would add more than [`MAX_ADDED_BYTES`] to a configuration.
    #[error(
        "its variables add more than {MAX_ADDED_BYTES} bytes to what the file holds; a devcontainer.json needs a few KB (is a ${{localEnv:...}} repeated many times?)"
    )]
    Grows,
    /// `${containerEnv:...}` would make a value longer than [`MAX_ENV_VALUE_BYTES`].
    #[error(
        "${{containerEnv:...}} makes the value longer than {MAX_ENV_VALUE_BYTES} bytes, the most Linux passes to a process in one environment variable"
    )]
    EnvValueTooLong,
}

/// The value of one variable body (what is between `${` and `}`), or `None` to keep it.
/// The body splits on every `:`: kind, variable name, default (only that one part, so a
/// default cannot contain `:`, as in the reference CLI).
fn resolve(body: &str, ctx: &Context<'_>) -> Result<Option<String>, VarError> {
    let mut parts = body.split(':');
    let kind = parts.next().unwrap_or_default();
    let name = parts.next();
    let default = parts.next();
    let value = match (kind, name) {
        ("localWorkspaceFolder", None) => ctx.local_workspace_folder.clone(),
        ("localWorkspaceFolderBasename", None) => basename(&ctx.local_workspace_folder).to_string(),
        ("containerWorkspaceFolder", None) => ctx.container_workspace_folder.clone(),
        ("containerWorkspaceFolderBasename", None) => {
            basename(&ctx.container_workspace_folder).to_string()
        }
        ("localEnv" | "env", None) => return Err(VarError::NoName(kind.to_string())),
        ("localEnv" | "env", Some(name)) => {
            (ctx.local_env)(name).unwrap_or_else(|| default.unwrap_or_default().to_string())
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Substitutes the variables in one string.
pub(crate) fn substitute_str(s: &str, ctx: &Context<'_>) -> Result<String, VarError> {
    let mut budget = MAX_ADDED_BYTES;
    substitute_within(s, ctx, &mut budget)
}

/// Substitutes the variables in `s`, adding at most `budget` bytes (taken from it).
fn substitute_within(s: &str, ctx: &Context<'_>, budget: &mut usize) -> Result<String, VarError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let body = &after[..end];
        match resolve(body, ctx)? {
            Some(v) => {
                // The form `${body}` gives way to the value: only growth counts.
                let added = v.len().saturating_sub(body.len() + 3);
                *budget = budget.checked_sub(added).ok_or(VarError::Grows)?;
                out.push_str(&v);
            }
            None => {
                out.push_str("${");
                out.push_str(body);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes the variables in every string value of `v` (keys are left alone), adding
/// at most [`MAX_ADDED_BYTES`] in all. Iterative, so no input can recurse without bound.
pub(crate) fn substitute(v: &mut Value, ctx: &Context<'_>) -> Result<(), VarError> {
    let mut budget = MAX_ADDED_BYTES;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains("${") => {
                *s = substitute_within(s, ctx, &mut budget)?;
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(o) => stack.extend(o.values_mut()),
            _ => {}
        }
    }
    Ok(())
}

/// remoteEnv with `${containerEnv:...}` resolved against the container's environment
/// ([`substitute_container_env`] for each value); together the values may grow by at
/// most [`MAX_ADDED_BYTES`] (a process could not receive more). Errors name the entry.
pub(crate) fn remote_env_in(
    remote_env: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut added = 0usize;
    let mut out = BTreeMap::new();
    for (k, v) in remote_env {
        let value =
            substitute_container_env(v, env).map_err(|e| anyhow::anyhow!("remoteEnv.{k}: {e}"))?;
        added += value.len().saturating_sub(v.len());
        if added > MAX_ADDED_BYTES {
            anyhow::bail!(
                "remoteEnv: its ${{containerEnv:...}} variables add more than {MAX_ADDED_BYTES} bytes, more than a process receives in its environment"
            );
        }
        out.insert(k.clone(), value);
    }
    Ok(out)
}

/// Resolves `${containerEnv:VAR}` and `${containerEnv:VAR:default}` against a
/// container's environment (the reference does this for remoteEnv at exec time); other
/// forms stay as they are. The image sets that environment, so a value that would grow
/// past [`MAX_ENV_VALUE_BYTES`] is an error.
pub(crate) fn substitute_container_env(
    s: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, VarError> {
    // A value as written may be longer (exec refuses it then): it only may not grow.
    let limit = MAX_ENV_VALUE_BYTES.max(s.len());
    let mut out = String::with_capacity(s.len().min(MAX_ENV_VALUE_BYTES));
    let mut rest = s;
    while let Some(start) = rest.find("${containerEnv:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let mut parts = after[..end].split(':').skip(1);
        let name = parts.next().unwrap_or_default();
        let default = parts.next().unwrap_or_default();
        out.push_str(env.get(name).map(String::as_str).unwrap_or(default));
        if out.len() > limit {
            return Err(VarError::EnvValueTooLong);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if out.len() > limit {
        return Err(VarError::EnvValueTooLong);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ctx() -> Context<'static> {
        Context {
            local_workspace_folder: "/src/proj".into(),
            container_workspace_folder: "/workspaces/proj".into(),
            local_env: &ctx_env,
        }
    }

    #[test]
    fn substitutes_like_the_reference() {
        let cases = [
            ("${localEnv:HOME}", "/home/u"),
            ("${env:HOME}/x", "/home/u/x"),
            ("${localEnv:NOPE}", ""),
            ("${localEnv:NOPE:dflt}", "dflt"),
            ("${localEnv:NOPE:a:b}", "a"),
            ("${localEnv:HOME:dflt}", "/home/u"),
            ("${localEnv:EMPTY:dflt}", ""),
            ("${localWorkspaceFolder}", "/src/proj"),
            ("${localWorkspaceFolderBasename}", "proj"),
            ("${containerWorkspaceFolder}/bin", "/workspaces/proj/bin"),
            ("${containerWorkspaceFolderBasename}", "proj"),
            ("${containerEnv:PATH}", "${containerEnv:PATH}"),
            ("${devcontainerId}", "${devcontainerId}"),
            ("${unknown}", "${unknown}"),
            ("${LOCALENV:HOME}", "${LOCALENV:HOME}"),
            ("${}", "${}"),
            ("${ localEnv:HOME}", "${ localEnv:HOME}"),
            ("a ${ b", "a ${ b"),
            (
                "$HOME ${localEnv:HOME}${localEnv:HOME}",
                "$HOME /home/u/home/u",
            ),
            ("no vars", "no vars"),
        ];
        for (input, want) in cases {
            assert_eq!(
                substitute_str(input, &ctx()).as_deref(),
                Ok(want),
                "{input}"
            );
        }
        for bad in ["${localEnv}", "${env}", "x ${localEnv} y"] {
            assert!(substitute_str(bad, &ctx()).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_env_references() {
        let env: std::collections::BTreeMap<String, String> =
            [("PATH".to_string(), "/usr/bin".to_string())]
                .into_iter()
                .collect();
        let sub = |s: &str| substitute_container_env(s, &env).expect("short");
        assert_eq!(sub("${containerEnv:PATH}:/x"), "/usr/bin:/x");
        assert_eq!(sub("${containerEnv:NOPE:d}"), "d");
        assert_eq!(sub("${containerEnv:NOPE}"), "");
        assert_eq!(
            sub("${localEnv:X} ${containerEnv"),
            "${localEnv:X} ${containerEnv"
        );
    }

    #[test]
    fn growth_is_bounded() {
        // An image's 64 KiB variable, referred to three times, passes Linux's limit.
        let env: std::collections::BTreeMap<String, String> =
            [("BIG".to_string(), "x".repeat(64 * 1024))]
                .into_iter()
                .collect();
        assert!(substitute_container_env("${containerEnv:BIG}", &env).is_ok());
        assert_eq!(
            substitute_container_env(&"${containerEnv:BIG}".repeat(3), &env),
            Err(VarError::EnvValueTooLong)
        );
        // A host variable repeated across a configuration: the budget is the whole value's.
        let big = |name: &str| (name == "BIG").then(|| "x".repeat(64 * 1024));
        let ctx = Context {
            local_workspace_folder: "/src/proj".into(),
            container_workspace_folder: "/workspaces/proj".into(),
            local_env: &big,
        };
        let refs = |n| Value::Array(vec![Value::String("${localEnv:BIG}".into()); n]);
        let mut fits = refs(15);
        substitute(&mut fits, &ctx).expect("under 1 MiB added");
        let mut grows = refs(17);
        let e = substitute(&mut grows, &ctx).expect_err("over 1 MiB added");
        assert_eq!(e, VarError::Grows);
        assert!(e.to_string().contains("1048576 bytes"), "{e}");
    }

    #[test]
    fn substitutes_nested_values_but_not_keys() {
        let mut v = serde_json::json!({
            "${localEnv:HOME}": ["${localWorkspaceFolderBasename}", {"k": "${localEnv:HOME}"}],
            "n": 1
        });
        substitute(&mut v, &ctx()).expect("substitutes");
        assert_eq!(
            v,
            serde_json::json!({"${localEnv:HOME}": ["proj", {"k": "/home/u"}], "n": 1})
        );
    }
}
