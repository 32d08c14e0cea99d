//! `${...}` variables in devcontainer.json, substituted as the reference CLI does when
//! it reads a configuration: the local ones (`localEnv`/`env`, `localWorkspaceFolder`,
//! `localWorkspaceFolderBasename`) and the container workspace folder ones. Variables
//! that need an existing container (`containerEnv`, `devcontainerId`) and unknown or
//! malformed forms are left as written. Names are case-sensitive; there is no escaping
//! and no nesting (a `${` ends at the first `}`).

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

/// A variable that cannot be substituted at all (the reference CLI fails on it too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("${{{0}}} needs a variable name, e.g. ${{{0}:HOME}}")]
pub(crate) struct VarError(pub String);

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
        ("localEnv" | "env", None) => return Err(VarError(kind.to_string())),
        ("localEnv" | "env", Some(name)) => {
            (ctx.local_env)(name).unwrap_or_else(|| default.unwrap_or_default().to_string())
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Substitutes the variables in one string.
pub(crate) fn substitute_str(s: &str, ctx: &Context<'_>) -> Result<String, VarError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let body = &after[..end];
                match resolve(body, ctx)? {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${");
                        out.push_str(body);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes the variables in every string value of `v` (keys are left alone).
/// Iterative, so no input can recurse without bound.
pub(crate) fn substitute(v: &mut Value, ctx: &Context<'_>) -> Result<(), VarError> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains("${") => *s = substitute_str(s, ctx)?,
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(o) => stack.extend(o.values_mut()),
            _ => {}
        }
    }
    Ok(())
}

/// Resolves `${containerEnv:VAR}` and `${containerEnv:VAR:default}` against a
/// container's environment (the reference does this for remoteEnv at exec time); other
/// forms stay as they are.
pub(crate) fn substitute_container_env(
    s: &str,
    env: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${containerEnv:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let mut parts = after[..end].split(':').skip(1);
        let name = parts.next().unwrap_or_default();
        let default = parts.next().unwrap_or_default();
        out.push_str(env.get(name).map(String::as_str).unwrap_or(default));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
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
        assert_eq!(
            substitute_container_env("${containerEnv:PATH}:/x", &env),
            "/usr/bin:/x"
        );
        assert_eq!(
            substitute_container_env("${containerEnv:NOPE:d}", &env),
            "d"
        );
        assert_eq!(substitute_container_env("${containerEnv:NOPE}", &env), "");
        assert_eq!(
            substitute_container_env("${localEnv:X} ${containerEnv", &env),
            "${localEnv:X} ${containerEnv"
        );
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
