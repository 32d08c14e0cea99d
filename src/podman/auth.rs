//! Registry credentials for pulls and builds, found where Podman finds them
//! (containers-auth.json(5)): `REGISTRY_AUTH_FILE`, else the primary file
//! (`$XDG_RUNTIME_DIR/containers/auth.json`, `/run/containers/0/auth.json` for root),
//! `$XDG_CONFIG_HOME/containers/auth.json`, then Docker's `~/.docker/config.json`. The
//! first file naming a registry wins.
//!
//! They travel to the engine as the podman client sends them: an `X-Registry-Auth`
//! (pull) or `X-Registry-Config` (build) header holding the base64url JSON map of
//! registry to credentials, over the engine's unix socket. Never on a command line,
//! in the environment, or in a log (the HTTP crates are held at info; [`Creds`] hides
//! its values in `Debug`). devaipod stores no credentials of its own. Credential
//! helpers (`credHelpers`, `credsStore`) are not run: with nothing else to send, no
//! header is sent and the engine looks up its own files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Serialize;

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Creds {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(rename = "identitytoken", skip_serializing_if = "String::is_empty")]
    pub identity_token: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The auth files to read, in order.
pub(crate) fn auth_files(
    var: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    euid: u32,
) -> Vec<PathBuf> {
    if let Some(p) = var("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let home = var("HOME").map(PathBuf::from);
    let mut v = Vec::new();
    if euid == 0 {
        v.push(PathBuf::from("/run/containers/0/auth.json"));
    } else if let Some(run) = var("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(run).join("containers/auth.json"));
    } else {
        v.push(PathBuf::from(format!("/run/containers/{euid}/auth.json")));
    }
    match var("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(c) => v.push(PathBuf::from(c).join("containers/auth.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".config/containers/auth.json"));
            }
        }
    }
    if let Some(h) = &home {
        v.push(h.join(".docker/config.json"));
    }
    v
}

/// The registry key as Podman normalises it: no scheme, Docker Hub's aliases as
/// `docker.io`.
fn normalize(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    if matches!(
        host,
        "index.docker.io" | "registry-1.docker.io" | "docker.io"
    ) {
        return "docker.io".into();
    }
    k.trim_end_matches('/').to_string()
}

/// The credentials of one auth file's `auths` (entries with `auth` = base64
/// `user:password`, or `identitytoken`); malformed entries are skipped, as Podman
/// skips them.
pub(crate) fn parse(text: &str) -> BTreeMap<String, Creds> {
    let mut out = BTreeMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return out;
    };
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return out;
    };
    for (key, entry) in auths {
        let token = entry
            .get("identitytoken")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        let pair = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .and_then(|a| {
                base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let (username, password) = match pair.as_deref().and_then(|p| p.split_once(':')) {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (String::new(), String::new()),
        };
        if username.is_empty() && token.is_empty() {
            continue;
        }
        out.entry(normalize(key)).or_insert(Creds {
            username,
            password,
            identity_token: token,
        });
    }
    out
}

/// Every credential the user's auth files hold (the first file naming a registry wins).
pub(crate) fn user_credentials() -> BTreeMap<String, Creds> {
    let var = |k: &str| std::env::var_os(k);
    let mut all = BTreeMap::new();
    for path in auth_files(&var, nix::unistd::geteuid().as_raw()) {
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (k, c) in parse(&text) {
                all.entry(k).or_insert(c);
            }
        }
    }
    all
}

/// The credentials for one repository, as containers/image looks them up: in each auth
/// file in order, the most specific key first (`HOST/PATH/REPO`, ..., `HOST`); the
/// first file with a match wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookup {
    pub creds: Option<Creds>,
    /// The file they came from.
    pub file: Option<PathBuf>,
    /// The files looked in, in order (those that exist and those that do not), for
    /// messages.
    pub searched: Vec<PathBuf>,
}

/// [`Lookup`] for `repository` (`HOST[:PORT]/PATH`, no tag) in the user's auth files.
pub(crate) fn credentials_for(repository: &str) -> Lookup {
    let var = |k: &str| std::env::var_os(k);
    let files = auth_files(&var, nix::unistd::geteuid().as_raw())
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).ok();
            (p, text)
        });
    lookup_in(repository, files)
}

fn lookup_in(repository: &str, files: impl Iterator<Item = (PathBuf, Option<String>)>) -> Lookup {
    let repository = normalize(repository);
    let mut keys = vec![repository.as_str()];
    let mut rest = repository.as_str();
    while let Some((head, _)) = rest.rsplit_once('/') {
        keys.push(head);
        rest = head;
    }
    let mut out = Lookup::default();
    for (path, text) in files {
        out.searched.push(path.clone());
        let Some(text) = text else {
            continue;
        };
        let creds = parse(&text);
        if let Some(c) = keys.iter().find_map(|k| creds.get(*k)) {
            out.creds = Some(c.clone());
            out.file = Some(path);
            return out;
        }
    }
    out
}

/// The header value (base64url JSON map) for `creds`; `None` when there are none.
pub(crate) fn header_value(creds: &BTreeMap<String, Creds>) -> Option<String> {
    if creds.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(creds).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE.encode(json))
}

/// The registry an image reference names (its first component when that is a host),
/// for messages; `None` for a short name.
pub(crate) fn registry_of(reference: &str) -> Option<&str> {
    let (first, rest) = reference.split_once('/')?;
    if rest.is_empty() {
        return None;
    }
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files_follow_podmans_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let v = auth_files(
            &env(&[("REGISTRY_AUTH_FILE", "/x/a.json"), ("HOME", "/h")]),
            1000,
        );
        assert_eq!(v, [PathBuf::from("/x/a.json")]);
        let v = auth_files(
            &env(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/h")]),
            1000,
        );
        assert_eq!(
            v,
            [
                PathBuf::from("/run/user/1000/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );
        let v = auth_files(&env(&[("HOME", "/root"), ("XDG_CONFIG_HOME", "/c")]), 0);
        assert_eq!(
            v,
            [
                PathBuf::from("/run/containers/0/auth.json"),
                PathBuf::from("/c/containers/auth.json"),
                PathBuf::from("/root/.docker/config.json"),
            ]
        );
    }

    #[test]
    fn auth_entries_are_read_and_normalised_and_never_shown() {
        let text = r#"{"auths": {
            "127.0.0.1:5702": {"auth": "ZHZwdDpzM2NyZXQtc2VudGluZWw="},
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "quay.io/org": {"identitytoken": "tok"},
            "bad.example": {"auth": "!!!"},
            "empty.example": {}
        }, "credHelpers": {"x.example": "secretservice"}}"#;
        let c = parse(text);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c["127.0.0.1:5702"].username, "dvpt");
        assert_eq!(c["127.0.0.1:5702"].password, "s3cret-sentinel");
        assert_eq!(c["docker.io"].username, "u");
        assert_eq!(c["quay.io/org"].identity_token, "tok");
        assert!(!format!("{c:?}").contains("s3cret-sentinel"));
        let h = header_value(&c).expect("a header");
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(&h)
            .expect("base64url");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["127.0.0.1:5702"]["password"], "s3cret-sentinel");
        assert_eq!(v["quay.io/org"]["identitytoken"], "tok");
        assert_eq!(header_value(&BTreeMap::new()), None);
        assert!(parse("not json").is_empty());
    }

    #[test]
    fn one_repositorys_credentials_come_from_the_first_file_naming_it() {
        let token = |up: &str| base64::engine::general_purpose::STANDARD.encode(up);
        let f1 = format!(
            r#"{{"auths": {{"reg.example/team": {{"auth": "{}"}}}}}}"#,
            token("team:p1")
        );
        let f2 = format!(
            r#"{{"auths": {{"reg.example": {{"auth": "{}"}}, "127.0.0.1:5702": {{"auth": "{}"}}}}}}"#,
            token("all:p2"),
            token("dvpt:p3")
        );
        let files = || {
            vec![
                (PathBuf::from("/1.json"), Some(f1.clone())),
                (PathBuf::from("/0.json"), None),
                (PathBuf::from("/2.json"), Some(f2.clone())),
            ]
            .into_iter()
        };
        let l = lookup_in("reg.example/team/features/x", files());
        assert_eq!(l.creds.expect("found").username, "team");
        assert_eq!(l.file, Some(PathBuf::from("/1.json")));
        let l = lookup_in("reg.example/other/x", files());
        assert_eq!(l.creds.expect("found").username, "all");
        assert_eq!(l.file, Some(PathBuf::from("/2.json")));
        let l = lookup_in("127.0.0.1:5702/dvpt/features/hello", files());
        assert_eq!(l.creds.expect("found").password, "p3");
        let l = lookup_in("elsewhere.example/x", files());
        assert!(l.creds.is_none());
        assert_eq!(l.searched.len(), 3);
        // The team's key does not match a longer name that only starts with it.
        let l = lookup_in("reg.example/teamx/y", files());
        assert_eq!(l.creds.expect("found").username, "all");
    }

    #[test]
    fn registries_are_named_from_references() {
        assert_eq!(registry_of("ghcr.io/o/i:1"), Some("ghcr.io"));
        assert_eq!(
            registry_of("127.0.0.1:5701/dvpt/base:latest"),
            Some("127.0.0.1:5701")
        );
        assert_eq!(
            registry_of("localhost/devaipod-base:latest"),
            Some("localhost")
        );
        assert_eq!(registry_of("library/debian"), None);
        assert_eq!(registry_of("debian:12"), None);
    }
}
