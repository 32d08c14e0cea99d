//! Every top-level devcontainer.json property the spec defines, and whether devaipod
//! applies it yet. Anything else is unknown. Keep docs/devcontainer.md in step.

/// How devaipod treats a known property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Read and applied.
    Applied,
    /// Has no effect on the pod by definition (schema links, display names).
    NoEffect,
    /// Read, but not applied yet: `up` warns.
    NotApplied,
}

/// The spec's top-level properties (image, Dockerfile and Compose configs alike).
pub(crate) const PROPERTIES: &[(&str, Support)] = &[
    ("$schema", Support::NoEffect),
    ("name", Support::NoEffect),
    ("image", Support::Applied),
    ("workspaceFolder", Support::Applied),
    ("containerUser", Support::Applied),
    ("remoteUser", Support::Applied),
    ("build", Support::Applied),
    ("dockerFile", Support::Applied),
    ("context", Support::Applied),
    ("dockerComposeFile", Support::NotApplied),
    ("service", Support::NotApplied),
    ("runServices", Support::NotApplied),
    ("workspaceMount", Support::Applied),
    // devaipod pods live until `stop`/`delete`; nothing stops them when a tool detaches.
    ("shutdownAction", Support::NoEffect),
    ("overrideCommand", Support::Applied),
    ("forwardPorts", Support::Applied),
    // Labels and auto-forward behaviour for editors' port views.
    ("portsAttributes", Support::NoEffect),
    ("otherPortsAttributes", Support::NoEffect),
    ("appPort", Support::Applied),
    ("containerEnv", Support::Applied),
    ("remoteEnv", Support::Applied),
    // The repo is cloned into a volume owned by the remoteUser: no host uid to match.
    ("updateRemoteUserUID", Support::NoEffect),
    ("userEnvProbe", Support::NotApplied),
    ("mounts", Support::Applied),
    ("runArgs", Support::Applied),
    // devaipod always runs an init in the workspace (stop and delete are immediate).
    ("init", Support::Applied),
    ("privileged", Support::Applied),
    ("capAdd", Support::Applied),
    ("securityOpt", Support::Applied),
    ("features", Support::Applied),
    ("overrideFeatureInstallOrder", Support::Applied),
    ("initializeCommand", Support::Applied),
    ("onCreateCommand", Support::Applied),
    ("updateContentCommand", Support::Applied),
    ("postCreateCommand", Support::Applied),
    ("postStartCommand", Support::Applied),
    ("postAttachCommand", Support::Applied),
    // `up` returns after every create-time lifecycle command has finished.
    ("waitFor", Support::NoEffect),
    ("customizations", Support::NotApplied),
    ("hostRequirements", Support::Applied),
    ("secrets", Support::NotApplied),
];

/// How devaipod treats `name`, or `None` when the spec does not know it.
pub(crate) fn support(name: &str) -> Option<Support> {
    PROPERTIES.iter().find(|(p, _)| *p == name).map(|(_, s)| *s)
}

/// A property name safe to print (spec-like identifiers only; anything else is
/// described rather than echoed).
pub(crate) fn printable(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'));
    ok.then_some(name)
}

/// A feature id or similar reference safe to print (registry paths, tags, local paths).
pub(crate) fn printable_id(id: &str) -> Option<&str> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@'));
    ok.then_some(id)
}

/// The legacy top-level properties the reference moves into `customizations.vscode`
/// ([`super::migrate_legacy`]).
const LEGACY: [&str; 3] = ["extensions", "settings", "devPort"];

/// Warnings for the top-level properties of `config`: unknown ones, and known ones that
/// devaipod does not apply yet.
pub(crate) fn warnings(config: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut out = Vec::new();
    if config.get("init") == Some(&serde_json::Value::Bool(false)) {
        out.push(
            "property \"init\" is not applied as false: devaipod always runs an init in the workspace (stop and delete are immediate)"
                .to_string(),
        );
    }
    for key in config.keys() {
        if LEGACY.contains(&key.as_str()) {
            out.push(format!(
                "property \"{key}\" is legacy: like the reference CLI, devaipod reads it as customizations.vscode.{key} (`devaipod config` shows it there); editor customizations are not applied by devaipod"
            ));
            continue;
        }
        match (support(key), printable(key)) {
            (Some(Support::NotApplied), Some(k)) => out.push(format!(
                "property \"{k}\" is not applied by devaipod yet; it is ignored"
            )),
            (None, Some(k)) => out.push(format!(
                "unknown property \"{k}\" (not in the devcontainer.json spec); it is ignored"
            )),
            (None, None) => out.push(
                "an unknown property with an unusual name (not in the devcontainer.json spec) is ignored"
                    .to_string(),
            ),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_properties() {
        assert_eq!(support("image"), Some(Support::Applied));
        assert_eq!(support("mounts"), Some(Support::Applied));
        assert_eq!(support("runArgs"), Some(Support::Applied));
        assert_eq!(support("features"), Some(Support::Applied));
        assert_eq!(support("secrets"), Some(Support::NotApplied));
        assert_eq!(support("$schema"), Some(Support::NoEffect));
        assert_eq!(support("imag"), None);
    }

    #[test]
    fn warns_about_unapplied_and_unknown_only() {
        let v: serde_json::Value = serde_json::json!({
            "image": "x", "name": "n", "secrets": {}, "imag": "typo", "a b\"c": 1,
        });
        let w = warnings(v.as_object().expect("object"));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|m| m.contains("\"secrets\" is not applied")));
        assert!(w.iter().any(|m| m.contains("unknown property \"imag\"")));
        assert!(w.iter().any(|m| m.contains("unusual name")));
        assert!(
            !w.iter().any(|m| m.contains("a b")),
            "names are not echoed raw"
        );
        let legacy: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"extensions": ["a"], "settings": {"x": 1}}"#).expect("json");
        let w = warnings(&legacy);
        assert_eq!(w.len(), 2, "{w:?}");
        for (m, key) in w.iter().zip(["extensions", "settings"]) {
            assert!(
                m.starts_with(&format!("property \"{key}\" is legacy")),
                "{m}"
            );
            assert!(m.contains(&format!("customizations.vscode.{key}")), "{m}");
            assert!(!m.contains("unknown"), "{m}");
        }
    }
}
