//! Image metadata: the `devcontainer.metadata` label an image carries (written by the
//! reference CLI and feature-enabled builds), merged with the devcontainer.json the way
//! the reference CLI merges them into its "mergedConfiguration". Pure.

use serde_json::{Map, Value, json};

/// The image label holding the metadata (a JSON array of entries, or one entry).
pub(crate) const LABEL: &str = "devcontainer.metadata";

/// The entries of a metadata label value; an absent or unreadable label has none.
pub(crate) fn from_label(label: Option<&str>) -> Vec<Map<String, Value>> {
    let Some(text) = label else {
        return Vec::new();
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(entries)) => entries
            .into_iter()
            .filter_map(|e| match e {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        Ok(Value::Object(m)) => vec![m],
        _ => Vec::new(),
    }
}

/// The properties a feature's devcontainer-feature.json contributes to the merge.
const FEATURE_PROPERTIES: &[&str] = &[
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "mounts",
    "customizations",
];

/// The metadata entry of a feature: its mergeable properties, with `id` set to how the
/// config names it.
pub(crate) fn feature_entry(user_id: &str, feature: &Map<String, Value>) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("id".into(), Value::String(user_id.to_string()));
    for k in FEATURE_PROPERTIES {
        if let Some(v) = feature.get(*k) {
            entry.insert(k.to_string(), v.clone());
        }
    }
    entry
}

/// The properties of devcontainer.json that take part in the merge as the last entry
/// (the reference CLI's list, in its order).
const CONFIG_ENTRY_PROPERTIES: &[&str] = &[
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "waitFor",
    "customizations",
    "mounts",
    "containerEnv",
    "containerUser",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "remoteUser",
    "userEnvProbe",
    "remoteEnv",
    "overrideCommand",
    "portsAttributes",
    "otherPortsAttributes",
    "forwardPorts",
    "shutdownAction",
    "updateRemoteUserUID",
    "hostRequirements",
];

/// Properties of the config that the merged configuration drops (it has plural or
/// merged forms of them instead).
const REPLACED: &[&str] = &[
    "customizations",
    "entrypoint",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "shutdownAction",
];

/// JavaScript truthiness, which the reference's merge rules use.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The truthy values of `key`, in entry order.
fn collect(entries: &[Map<String, Value>], key: &str) -> Vec<Value> {
    entries
        .iter()
        .filter_map(|e| e.get(key).filter(|v| truthy(v)).cloned())
        .collect()
}

/// The last truthy value of `key`.
fn last_truthy(entries: &[Map<String, Value>], key: &str) -> Option<Value> {
    entries
        .iter()
        .rev()
        .find_map(|e| e.get(key).filter(|v| truthy(v)).cloned())
}

/// The last boolean value of `key`.
fn last_bool(entries: &[Map<String, Value>], key: &str) -> Option<Value> {
    entries
        .iter()
        .rev()
        .find_map(|e| e.get(key).filter(|v| v.is_boolean()).cloned())
}

fn any_truthy(entries: &[Map<String, Value>], key: &str) -> bool {
    entries.iter().any(|e| e.get(key).is_some_and(truthy))
}

/// Flattens the (truthy) arrays of `key`; a non-array value counts as one item.
fn flat(entries: &[Map<String, Value>], key: &str) -> Vec<Value> {
    collect(entries, key)
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a,
            other => vec![other],
        })
        .collect()
}

/// Distinct items in first-seen order; `None` when there are none.
fn union(entries: &[Map<String, Value>], key: &str) -> Option<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in flat(entries, key) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

/// `Object.assign({}, ...)` of the values of `key`: always an object.
fn assign(entries: &[Map<String, Value>], key: &str) -> Value {
    let mut out = Map::new();
    for e in entries {
        if let Some(Value::Object(m)) = e.get(key) {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The target of a mount, as the reference parses it: for strings, the value of the
/// `target`/`dst`/`destination` part (`k=v` pairs split on `,`, a value ends at the
/// next `=`); for objects, `target`. Mounts without one share the same (absent) key.
fn mount_target(m: &Value) -> Option<String> {
    match m {
        Value::Object(o) => o.get("target").map(|t| match t {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        Value::String(s) => {
            let mut target = None;
            for part in s.split(',') {
                let mut kv = part.split('=');
                let k = kv.next().unwrap_or_default();
                let v = kv.next();
                if matches!(k, "target" | "dst" | "destination") {
                    target = v.map(str::to_string);
                }
            }
            target
        }
        _ => None,
    }
}

/// Mounts: the last mount for each target wins, kept in order; `None` when empty.
fn merge_mounts(entries: &[Map<String, Value>]) -> Option<Value> {
    let all = flat(entries, "mounts");
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Value> = all
        .iter()
        .rev()
        .filter(|m| seen.insert(mount_target(m)))
        .cloned()
        .collect();
    out.reverse();
    (!out.is_empty()).then_some(Value::Array(out))
}

/// forwardPorts: numbers and `localhost:N` are the same port; distinct in order.
fn merge_forward_ports(entries: &[Map<String, Value>]) -> Option<Value> {
    let mut keys: Vec<String> = Vec::new();
    for p in entries
        .iter()
        .filter_map(|e| e.get("forwardPorts"))
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
    {
        let key = match &p {
            Value::Number(n) => format!("localhost:{n}"),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let out: Vec<Value> = keys
        .into_iter()
        .map(|k| match localhost_port(&k) {
            Some(n) => json!(n),
            None => Value::String(k),
        })
        .collect();
    (!out.is_empty()).then_some(Value::Array(out))
}

/// The port of a string containing `localhost:DIGITS` (unanchored, like the reference's
/// regex), parsed from the 11th character on.
fn localhost_port(s: &str) -> Option<i64> {
    let i = s.find("localhost:")?;
    let digits = &s[i + "localhost:".len()..];
    if !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let tail = s.get(10..)?;
    let n: String = tail
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    n.parse().ok()
}

/// A size like `4gb` in bytes (0 when unreadable), as the reference parses it: it reads
/// only whole numbers with a lowercase `kb`/`mb`/`gb`/`tb` or no unit, so any other form
/// [`crate::size::parse_size`] would accept counts as 0 here.
fn bytes(v: Option<&Value>) -> f64 {
    let Some(Value::String(s)) = v else {
        return 0.0;
    };
    let unit = ["kb", "mb", "gb", "tb"]
        .iter()
        .find(|u| s.ends_with(*u))
        .map_or(0, |u| u.len());
    let number = &s[..s.len() - unit];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return 0.0;
    }
    crate::size::parse_size(s).map_or(0.0, |n| n as f64)
}

/// JavaScript's `${n}` for a number.
fn js_number_string(n: f64) -> String {
    if n == f64::NEG_INFINITY {
        "-Infinity".into()
    } else if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{}", n as i128)
    } else {
        format!("{n}")
    }
}

fn js_number(n: f64) -> Value {
    if n.is_finite() {
        if n.fract() == 0.0 && n.abs() < 9e15 {
            json!(n as i64)
        } else {
            json!(n)
        }
    } else {
        Value::Null
    }
}

/// Merges two `gpu` requirements as the reference does.
fn merge_gpu(a: Option<Value>, b: Option<Value>) -> Option<Value> {
    let falsy = |v: &Option<Value>| matches!(v, None | Some(Value::Bool(false)));
    if falsy(&a) {
        return b;
    }
    if falsy(&b) {
        return a;
    }
    let optional = |v: &Option<Value>| matches!(v, Some(Value::String(s)) if s == "optional");
    if optional(&a) && optional(&b) {
        return Some(json!("optional"));
    }
    let obj = |v: &Option<Value>| match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let (x, y) = (obj(&a), obj(&b));
    let num = |m: &Map<String, Value>| {
        m.get("cores")
            .and_then(Value::as_f64)
            .filter(|f| *f != 0.0)
            .unwrap_or(0.0)
    };
    let cores = num(&x).max(num(&y));
    let memory = bytes(x.get("memory")).max(bytes(y.get("memory")));
    let mut out = Map::new();
    if cores != 0.0 {
        out.insert("cores".into(), js_number(cores));
    }
    if memory != 0.0 {
        out.insert("memory".into(), json!(js_number_string(memory)));
    }
    Some(Value::Object(out))
}

/// hostRequirements: the largest of each requirement. Like the reference, an empty
/// entry list yields `{"cpus": null, "memory": "-Infinity", "storage": "-Infinity"}`.
fn merge_host_requirements(entries: &[Map<String, Value>]) -> Option<Value> {
    let req = |e: &Map<String, Value>| e.get("hostRequirements").cloned().unwrap_or(Value::Null);
    let max = |f: &dyn Fn(&Value) -> f64| {
        entries
            .iter()
            .map(|e| f(&req(e)))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let cpus = max(&|r| {
        r.get("cpus")
            .filter(|v| truthy(v))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    });
    let memory = max(&|r| bytes(r.get("memory")));
    let storage = max(&|r| bytes(r.get("storage")));
    let gpu = entries
        .iter()
        .map(|e| req(e).get("gpu").cloned())
        .fold(None, merge_gpu);
    let gpu_truthy = gpu.as_ref().is_some_and(truthy);
    if cpus == 0.0 && memory == 0.0 && storage == 0.0 && !gpu_truthy {
        return None;
    }
    let mut out = Map::new();
    out.insert("cpus".into(), js_number(cpus));
    if memory != 0.0 {
        out.insert("memory".into(), json!(js_number_string(memory)));
    }
    if storage != 0.0 {
        out.insert("storage".into(), json!(js_number_string(storage)));
    }
    if let Some(g) = gpu {
        out.insert("gpu".into(), g);
    }
    Some(Value::Object(out))
}

/// `config` merged with the image's metadata `entries`, as the reference CLI's
/// mergedConfiguration: the config (less the properties the merge replaces) plus the
/// merged properties, where the config's own mergeable properties count as the last
/// metadata entry. Empty entries take no part.
pub(crate) fn merge(
    entries: &[Map<String, Value>],
    config: &Map<String, Value>,
) -> Map<String, Value> {
    let config_entry: Map<String, Value> = CONFIG_ENTRY_PROPERTIES
        .iter()
        .filter_map(|k| config.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let all: Vec<Map<String, Value>> = entries
        .iter()
        .cloned()
        .chain([config_entry])
        .filter(|e| !e.is_empty())
        .collect();

    let mut out = config.clone();
    for k in REPLACED {
        out.remove(*k);
    }
    let mut set = |k: &str, v: Option<Value>| match v {
        Some(v) => {
            out.insert(k.to_string(), v);
        }
        None => {
            out.remove(k);
        }
    };
    set("init", Some(json!(any_truthy(&all, "init"))));
    set("privileged", Some(json!(any_truthy(&all, "privileged"))));
    set("capAdd", union(&all, "capAdd"));
    set("securityOpt", union(&all, "securityOpt"));
    let entrypoints = collect(&all, "entrypoint");
    set(
        "entrypoints",
        (!entrypoints.is_empty()).then_some(Value::Array(entrypoints)),
    );
    set("mounts", merge_mounts(&all));
    let mut customizations = Map::new();
    for e in &all {
        if let Some(Value::Object(c)) = e.get("customizations") {
            for (k, v) in c {
                match customizations.get_mut(k) {
                    Some(Value::Array(list)) => list.push(v.clone()),
                    _ => {
                        customizations.insert(k.clone(), json!([v]));
                    }
                }
            }
        }
    }
    set(
        "customizations",
        (!customizations.is_empty()).then_some(Value::Object(customizations)),
    );
    for (prop, plural) in [
        ("onCreateCommand", "onCreateCommands"),
        ("updateContentCommand", "updateContentCommands"),
        ("postCreateCommand", "postCreateCommands"),
        ("postStartCommand", "postStartCommands"),
        ("postAttachCommand", "postAttachCommands"),
    ] {
        set(plural, Some(Value::Array(collect(&all, prop))));
    }
    for k in [
        "waitFor",
        "remoteUser",
        "containerUser",
        "userEnvProbe",
        "otherPortsAttributes",
        "shutdownAction",
    ] {
        set(k, last_truthy(&all, k));
    }
    for k in ["overrideCommand", "updateRemoteUserUID"] {
        set(k, last_bool(&all, k));
    }
    set("remoteEnv", Some(assign(&all, "remoteEnv")));
    set("containerEnv", Some(assign(&all, "containerEnv")));
    set("portsAttributes", Some(assign(&all, "portsAttributes")));
    set("forwardPorts", merge_forward_ports(&all));
    set("hostRequirements", merge_host_requirements(&all));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn reads_the_label() {
        assert!(from_label(None).is_empty());
        assert!(from_label(Some("not json")).is_empty());
        assert_eq!(from_label(Some(r#"{"init": true}"#)).len(), 1);
        assert_eq!(
            from_label(Some(r#"[{"init": true}, {"remoteUser": "u"}, 3]"#)).len(),
            2
        );
    }

    #[test]
    fn no_metadata_gives_the_reference_defaults() {
        let config = obj(json!({"image": "x", "remoteUser": "dev"}));
        let m = merge(&[], &config);
        assert_eq!(m["init"], false);
        assert_eq!(m["privileged"], false);
        assert_eq!(m["onCreateCommands"], json!([]));
        assert_eq!(m["postAttachCommands"], json!([]));
        assert_eq!(m["portsAttributes"], json!({}));
        assert_eq!(m["remoteUser"], "dev");
        assert!(!m.contains_key("capAdd"));
        assert!(!m.contains_key("mounts"));
    }

    #[test]
    fn metadata_merges_per_property() {
        let meta = vec![obj(
            json!({"init": true, "capAdd": ["SYS_PTRACE"], "remoteUser": "img",
                "postCreateCommand": "a", "remoteEnv": {"A": "1", "B": "1"},
                "mounts": ["source=v,target=/x,type=volume"], "customizations": {"vscode": {"x": 1}}}),
        )];
        let config = obj(json!({"image": "x", "capAdd": ["SYS_PTRACE", "NET_ADMIN"],
            "postCreateCommand": "b", "remoteEnv": {"B": "2"},
            "mounts": [{"source": "w", "target": "/x", "type": "volume"}]}));
        let m = merge(&meta, &config);
        assert_eq!(m["init"], true);
        assert_eq!(m["capAdd"], json!(["SYS_PTRACE", "NET_ADMIN"]));
        assert_eq!(m["remoteUser"], "img");
        assert_eq!(m["postCreateCommands"], json!(["a", "b"]));
        assert!(!m.contains_key("postCreateCommand"));
        assert_eq!(m["remoteEnv"], json!({"A": "1", "B": "2"}));
        assert_eq!(
            m["mounts"],
            json!([{"source": "w", "target": "/x", "type": "volume"}])
        );
        assert_eq!(m["customizations"], json!({"vscode": [{"x": 1}]}));
    }

    #[test]
    fn host_requirement_sizes_read_only_the_references_form() {
        let table: &[(&str, f64)] = &[
            ("4gb", 4.0 * 2f64.powi(30)),
            ("512mb", 512.0 * 2f64.powi(20)),
            ("2tb", 2.0 * 2f64.powi(40)),
            ("8kb", 8192.0),
            ("4096", 4096.0),
            ("4g", 0.0),
            ("4GB", 0.0),
            ("1.5gb", 0.0),
            (" 4gb", 0.0),
            ("gb", 0.0),
            ("", 0.0),
            ("4kbkb", 0.0),
        ];
        for (text, want) in table {
            assert_eq!(bytes(Some(&json!(text))), *want, "{text:?}");
        }
        assert_eq!(bytes(Some(&json!(4))), 0.0);
        assert_eq!(bytes(None), 0.0);
    }
}
