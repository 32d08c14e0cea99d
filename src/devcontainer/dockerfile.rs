//! Just enough Dockerfile reading to find the image a build starts from: the `FROM` of
//! the target stage (or the last one), following references to earlier stages and
//! expanding `ARG`s declared before the first `FROM` (build args win). The reference
//! CLI reads a build config's image metadata from that image. Pure.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Logical lines: continuations (`\` at the end) joined, comments and blanks dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if cur.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(trimmed);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Expands `$NAME` and `${NAME}` (and `${NAME:-default}`) from `vars`.
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let rest = &s[i + 1..];
        if let Some(body) = rest.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let value = vars.get(name).filter(|v| !v.is_empty()).cloned();
            out.push_str(&value.unwrap_or_else(|| default.unwrap_or_default().to_string()));
            for _ in 0..end + 2 {
                chars.next();
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            out.push('$');
            continue;
        }
        out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
        for _ in 0..name.len() {
            chars.next();
        }
    }
    out
}

/// The image the build of `target` (or the last stage) starts from.
pub(crate) fn base_image(
    text: &str,
    target: Option<&str>,
    build_args: &Map<String, Value>,
) -> Option<String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<(Option<String>, String)> = Vec::new();
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        let instr = words.next()?.to_ascii_uppercase();
        match instr.as_str() {
            "ARG" if stages.is_empty() => {
                for decl in words {
                    let (name, default) = match decl.split_once('=') {
                        Some((n, d)) => (n, d.trim_matches('"').to_string()),
                        None => (decl, String::new()),
                    };
                    let value = build_args
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or(default);
                    vars.insert(name.to_string(), value);
                }
            }
            "FROM" => {
                let args: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
                let image = expand(args.first()?, &vars);
                let name = match args.get(1) {
                    Some(kw) if kw.eq_ignore_ascii_case("as") => {
                        args.get(2).map(|n| n.to_ascii_lowercase())
                    }
                    _ => None,
                };
                stages.push((name, image));
            }
            _ => {}
        }
    }
    let mut idx = match target {
        Some(t) => stages
            .iter()
            .position(|(n, _)| n.as_deref() == Some(&t.to_ascii_lowercase()))?,
        None => stages.len().checked_sub(1)?,
    };
    // Follow `FROM <earlier stage>` (bounded by the number of stages).
    for _ in 0..stages.len() {
        let image = stages[idx].1.to_ascii_lowercase();
        match stages[..idx]
            .iter()
            .rposition(|(n, _)| n.as_deref() == Some(image.as_str()))
        {
            Some(prev) => idx = prev,
            None => return Some(stages[idx].1.clone()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn finds_the_base_image() {
        let none = Map::new();
        assert_eq!(
            base_image("FROM debian:12\nRUN x\n", None, &none).as_deref(),
            Some("debian:12")
        );
        assert_eq!(
            base_image("# c\nFROM --platform=linux/amd64 a AS x\n", None, &none).as_deref(),
            Some("a")
        );
        let multi = "FROM golang AS build\nRUN make\nFROM build AS dev\nFROM alpine\n";
        assert_eq!(base_image(multi, None, &none).as_deref(), Some("alpine"));
        assert_eq!(
            base_image(multi, Some("dev"), &none).as_deref(),
            Some("golang")
        );
        assert_eq!(base_image(multi, Some("nope"), &none), None);
        let with_args = "ARG BASE=localhost/a\nARG TAG\nFROM ${BASE}:${TAG:-1} AS dev\n";
        assert_eq!(
            base_image(with_args, Some("dev"), &none).as_deref(),
            Some("localhost/a:1")
        );
        let over = args(serde_json::json!({"BASE": "localhost/b", "TAG": "2"}));
        assert_eq!(
            base_image(with_args, None, &over).as_deref(),
            Some("localhost/b:2")
        );
        assert_eq!(
            base_image("FROM \\\n  img\n", None, &none).as_deref(),
            Some("img")
        );
        assert_eq!(base_image("RUN x\n", None, &none), None);
        assert_eq!(base_image("", None, &none), None);
    }
}
