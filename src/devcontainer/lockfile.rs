//! `devcontainer-lock.json`, as the reference Dev Containers CLI reads and writes it
//! (its src/spec-configuration/lockfile.ts): beside the config (`.devcontainer-lock.json`
//! beside a `.devcontainer.json`), `{"features": {ID: {version, resolved, integrity,
//! dependsOn?}}}` keyed by the feature's id as the config (or a `dependsOn`) writes it.
//!
//! For an OCI feature `integrity` is the manifest's digest and `resolved` is
//! `REGISTRY/PATH@` that digest: the feature is fetched by it (not by its tag) and the
//! manifest checked against it, so a moved tag changes nothing. For a tarball both name
//! the download: `resolved` its URL, `integrity` the sha256 of its bytes. Local features
//! are not locked. An empty file pins nothing (the reference's "initialise me" marker).
//!
//! Pure apart from reading the file it is given; `up` writes it (src/cli/up.rs).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};

use super::features::{FeatureSource, Reference, locale_cmp};

/// The lockfile's name beside `devcontainer.json`.
pub(crate) const NAME: &str = "devcontainer-lock.json";
/// The lockfile's name beside `.devcontainer.json`.
pub(crate) const DOT_NAME: &str = ".devcontainer-lock.json";

/// What `up` does with the lockfile (the reference's default, `--frozen-lockfile`,
/// `--no-lockfile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// Honour its pins; `up` writes it when it is missing or differs from what was
    /// resolved.
    #[default]
    Update,
    /// Honour its pins; it must exist and match what was resolved, and is never written.
    Frozen,
    /// Neither read nor written.
    Off,
}

/// The lockfile of the config at `config_path`: `devcontainer-lock.json` beside it, or
/// `.devcontainer-lock.json` when the config's own name starts with a dot.
pub(crate) fn path_for(config_path: &Path) -> PathBuf {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let dotted = config_path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    dir.join(if dotted { DOT_NAME } else { NAME })
}

/// `sha256:` and 64 lowercase hex digits, as the reference writes digests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub(crate) struct Digest(String);

impl Digest {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(
                "integrity must be \"sha256:\" followed by 64 lowercase hex digits",
            )
        })
    }
}

/// One feature's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The feature's version (its devcontainer-feature.json's), for people to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// OCI: `REGISTRY/PATH@sha256:HEX`; tarball: its URL.
    pub resolved: String,
    /// OCI: the manifest's digest; tarball: the sha256 of the download.
    pub integrity: Digest,
    /// The ids its `dependsOn` names (absent when none).
    #[serde(rename = "dependsOn", default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

/// A lockfile's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lockfile {
    pub features: BTreeMap<String, Entry>,
}

/// What the lockfile pins a feature to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pin {
    /// Fetch `REGISTRY/PATH@manifest` and check the manifest against it.
    Oci { manifest: Digest },
    /// Check the download (or the cache folder of that digest) against it.
    Tarball { digest: Digest },
}

/// A lockfile as read, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub path: PathBuf,
    pub lockfile: Lockfile,
}

/// Reads `path`; `None` when there is no such file. A file that is not a lockfile is an
/// error naming it (`FILE:LINE:COL` for a syntax or type error).
pub(crate) fn read(path: &Path) -> Result<Option<Read>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if text.len() as u64 > super::MAX_CONFIG_BYTES {
        bail!(
            "{}: file is {} bytes, larger than the {} byte limit for a lockfile",
            path.display(),
            text.len(),
            super::MAX_CONFIG_BYTES
        );
    }
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{}: the file is not UTF-8 text", path.display()))?;
    let lockfile = parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    Ok(Some(Read {
        path: path.to_path_buf(),
        lockfile,
    }))
}

/// [`read`], refusing a symlink: `up` replaces the file, so it must be the repo's own
/// regular file, not a link to one elsewhere.
pub(crate) fn read_confined(path: &Path) -> Result<Option<Read>> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "{} is a symlink: devaipod reads and writes only a regular file there; replace the link with the file (or use --no-lockfile)",
            path.display()
        );
    }
    read(path)
}

/// Whether `up` writes the lockfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// It exists and says what was resolved.
    Unchanged,
    /// It is missing or says something else: `up` writes it.
    WillWrite,
}

/// The lockfile as resolved: where, what, and whether `up` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Update {
    pub path: PathBuf,
    pub state: State,
    #[serde(flatten)]
    pub lockfile: Lockfile,
}

impl Update {
    /// Compares what was resolved (`new`) with the file's content (`old`); with
    /// [`Mode::Frozen`] a difference is an error naming each feature.
    pub(crate) fn new(
        mode: Mode,
        path: PathBuf,
        old: Option<Lockfile>,
        new: Lockfile,
    ) -> Result<Self> {
        let state = if old.as_ref() == Some(&new) {
            State::Unchanged
        } else {
            State::WillWrite
        };
        if mode == Mode::Frozen && state == State::WillWrite {
            let d = differences(&old.unwrap_or_default(), &new);
            bail!(
                "--frozen-lockfile: {} does not match the features resolved ({}): run `devaipod up` without --frozen-lockfile to update it, and commit it",
                path.display(),
                d.join("; ")
            );
        }
        Ok(Self {
            path,
            state,
            lockfile: new,
        })
    }

    /// The file's new text.
    pub(crate) fn text(&self) -> String {
        render(&self.lockfile)
    }
}

/// Parses a lockfile's text; an empty (or blank) text pins nothing.
pub(crate) fn parse(text: &str) -> Result<Lockfile, super::ParseError> {
    if text.trim().is_empty() {
        return Ok(Lockfile::default());
    }
    let parsed: Option<Lockfile> = super::parse_as(text)?;
    parsed.ok_or(super::ParseError {
        line: 1,
        column: 1,
        message: "expected an object such as {\"features\": {}}".into(),
    })
}

impl Read {
    /// The pin of the feature `user_id` (as the config or a `dependsOn` names it), if the
    /// lockfile has one. An entry that contradicts the id is an error naming the file.
    pub(crate) fn pin(&self, user_id: &str, source: &FeatureSource) -> Result<Option<Pin>> {
        let Some(e) = self.lockfile.features.get(user_id) else {
            return Ok(None);
        };
        let file = self.path.display();
        let fix = "correct or remove the entry (`up` writes it anew), or use --no-lockfile";
        match source {
            FeatureSource::Local { .. } => Ok(None),
            FeatureSource::Oci {
                registry,
                repository,
                reference,
            } => {
                let want = format!("{registry}/{repository}@{}", e.integrity);
                if e.resolved != want {
                    bail!(
                        "{file}: the entry for the feature {user_id:?} resolves to {:?}, but its integrity {} makes that {want:?}: {fix}",
                        e.resolved,
                        e.integrity
                    );
                }
                if let Reference::Digest(d) = reference
                    && d != e.integrity.as_str()
                {
                    bail!(
                        "{file}: the feature {user_id:?} names the digest {d}, but the lockfile pins it to {}: {fix}",
                        e.integrity
                    );
                }
                Ok(Some(Pin::Oci {
                    manifest: e.integrity.clone(),
                }))
            }
            FeatureSource::Tarball { url } => {
                if &e.resolved != url {
                    bail!(
                        "{file}: the entry for the feature {user_id:?} resolves to {:?}, not to its URL: {fix}",
                        e.resolved
                    );
                }
                Ok(Some(Pin::Tarball {
                    digest: e.integrity.clone(),
                }))
            }
        }
    }
}

/// The entry for a fetched feature (`None` for a local one, which is not locked):
/// `digest` is the manifest's (OCI) or the download's (tarball).
pub(crate) fn entry(
    source: &FeatureSource,
    digest: &str,
    version: Option<&str>,
    depends_on: Vec<String>,
) -> Option<Entry> {
    let integrity = Digest::parse(digest)?;
    let resolved = match source {
        FeatureSource::Local { .. } => return None,
        FeatureSource::Oci {
            registry,
            repository,
            ..
        } => format!("{registry}/{repository}@{integrity}"),
        FeatureSource::Tarball { url } => url.clone(),
    };
    Some(Entry {
        version: version.map(str::to_string),
        resolved,
        integrity,
        depends_on: (!depends_on.is_empty()).then_some(depends_on),
    })
}

/// The text the reference writes: JSON indented by two spaces, the features in
/// `localeCompare` order of their ids, a final newline.
pub(crate) fn render(lockfile: &Lockfile) -> String {
    let mut ids: Vec<&String> = lockfile.features.keys().collect();
    ids.sort_by(|a, b| locale_cmp(a, b));
    let mut features = serde_json::Map::new();
    for id in ids {
        let value = serde_json::to_value(&lockfile.features[id]).unwrap_or_default();
        features.insert(id.clone(), value);
    }
    let doc = serde_json::json!({ "features": features });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// How `new` differs from `old`, one line per feature, for a refusal to write.
pub(crate) fn differences(old: &Lockfile, new: &Lockfile) -> Vec<String> {
    let mut out = Vec::new();
    for (id, n) in &new.features {
        match old.features.get(id) {
            None => out.push(format!("{id:?} is not in it")),
            Some(o) if o.integrity != n.integrity => out.push(format!(
                "{id:?} is pinned to {}, resolved to {}",
                o.integrity, n.integrity
            )),
            Some(o) if o != n => {
                out.push(format!("{id:?} has another version, resolved or dependsOn"))
            }
            Some(_) => {}
        }
    }
    for id in old.features.keys() {
        if !new.features.contains_key(id) {
            out.push(format!("{id:?} is in it but no longer used"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn oci(reference: Reference) -> FeatureSource {
        FeatureSource::Oci {
            registry: "ghcr.io".into(),
            repository: "devcontainers/features/node".into(),
            reference,
        }
    }

    fn read_text(text: &str) -> Read {
        Read {
            path: PathBuf::from("/r/.devcontainer/devcontainer-lock.json"),
            lockfile: parse(text).expect("parses"),
        }
    }

    /// A lockfile as the reference CLI writes it (its test fixture's shape).
    const REFERENCE: &str = r#"{
  "features": {
    "ghcr.io/devcontainers/features/node:1": {
      "version": "1.6.1",
      "resolved": "ghcr.io/devcontainers/features/node@sha256:1111111111111111111111111111111111111111111111111111111111111111",
      "integrity": "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    },
    "https://example.com/devcontainer-feature-hello.tgz": {
      "version": "1.0.0",
      "resolved": "https://example.com/devcontainer-feature-hello.tgz",
      "integrity": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
      "dependsOn": [
        "ghcr.io/devcontainers/features/node:1"
      ]
    }
  }
}
"#;

    #[test]
    fn the_lockfile_sits_beside_the_config() {
        assert_eq!(
            path_for(Path::new("/r/.devcontainer/devcontainer.json")),
            Path::new("/r/.devcontainer/devcontainer-lock.json")
        );
        assert_eq!(
            path_for(Path::new("/r/.devcontainer.json")),
            Path::new("/r/.devcontainer-lock.json")
        );
        assert_eq!(
            path_for(Path::new("/r/.devcontainer/py/devcontainer.json")),
            Path::new("/r/.devcontainer/py/devcontainer-lock.json")
        );
    }

    #[test]
    fn the_references_lockfile_is_read_and_written_back_the_same() {
        let l = parse(REFERENCE).expect("parses");
        assert_eq!(l.features.len(), 2);
        let tgz = &l.features["https://example.com/devcontainer-feature-hello.tgz"];
        assert_eq!(tgz.integrity.as_str(), D2);
        assert_eq!(
            tgz.depends_on.as_deref(),
            Some(&["ghcr.io/devcontainers/features/node:1".to_string()][..])
        );
        assert_eq!(render(&l), REFERENCE);
    }

    #[test]
    fn features_are_written_in_locale_order() {
        let e = |d: &str| Entry {
            version: None,
            resolved: format!("x@{d}"),
            integrity: Digest::parse(d).expect("digest"),
            depends_on: None,
        };
        let l = Lockfile {
            features: BTreeMap::from([
                ("b/x/Zed:1".to_string(), e(D1)),
                ("b/x/alpha:1".to_string(), e(D2)),
                ("b/x/_under:1".to_string(), e(D1)),
            ]),
        };
        let text = render(&l);
        let at = |k: &str| text.find(k).expect(k);
        assert!(
            at("_under") < at("alpha") && at("alpha") < at("Zed"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_file_pins_nothing() {
        assert_eq!(parse(""), Ok(Lockfile::default()));
        assert_eq!(parse(" \n"), Ok(Lockfile::default()));
    }

    #[test]
    fn malformed_lockfiles_are_errors_with_a_position() {
        for (text, line, col, needle) in [
            ("{\n  \"features\": {\n    \"a\": {\n", 4, 1, ""),
            (
                "{\"features\": {\"a\": {\"resolved\": \"x\", \"integrity\": \"md5:abc\"}}}",
                // The parser places a check of a value at its entry.
                1,
                20,
                "lowercase hex",
            ),
            (
                "{\"features\": {\"a\": {\"resolved\": 3, \"integrity\": \"x\"}}}",
                1,
                33,
                "expected a string",
            ),
            ("[]", 1, 1, ""),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!((e.line, e.column), (line, col), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        assert!(
            parse("{}")
                .expect_err("no features")
                .message
                .contains("features")
        );
        // A type error does not quote the value.
        let e = parse("{\"features\": {\"a\": {\"resolved\": 12345678, \"integrity\": \"x\"}}}")
            .expect_err("type");
        assert!(!e.message.contains("12345678"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_lockfile_is_named_with_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NAME);
        assert_eq!(super::read(&path).expect("absent"), None);
        std::fs::write(&path, "{\"features\": {\n  \"a\": nope\n}}").expect("write");
        let e = super::read(&path).expect_err("bad");
        let msg = format!("{e:#}");
        assert!(msg.starts_with(&format!("{}:2:", path.display())), "{msg}");
    }

    #[test]
    fn oci_pins_are_the_manifest_digest_and_must_agree_with_the_id() {
        let l = read_text(REFERENCE);
        let id = "ghcr.io/devcontainers/features/node:1";
        let pin = l.pin(id, &oci(Reference::Tag("1".into()))).expect("pin");
        assert_eq!(
            pin,
            Some(Pin::Oci {
                manifest: Digest::parse(D1).expect("d")
            })
        );
        // A feature the lockfile lacks is fetched by its tag (and `up` adds it).
        assert_eq!(
            l.pin(
                "ghcr.io/devcontainers/features/go:1",
                &oci(Reference::Tag("1".into()))
            )
            .expect("none"),
            None
        );
        // The id's own digest must be the pinned one.
        let e = l
            .pin(id, &oci(Reference::Digest(D2.into())))
            .expect_err("conflict");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("devcontainer-lock.json") && msg.contains(id),
            "{msg}"
        );
        // resolved and integrity must name the same manifest of the same repository.
        let edited = REFERENCE.replacen("node@sha256:1111", "node@sha256:3333", 1);
        let e = read_text(&edited)
            .pin(id, &oci(Reference::Tag("1".into())))
            .expect_err("disagree");
        assert!(format!("{e:#}").contains("resolves to"), "{e:#}");
        let other = FeatureSource::Oci {
            registry: "ghcr.io".into(),
            repository: "someone/else/node".into(),
            reference: Reference::Tag("1".into()),
        };
        assert!(l.pin(id, &other).is_err());
    }

    #[test]
    fn tarball_pins_are_the_downloads_digest_and_locals_are_not_pinned() {
        let l = read_text(REFERENCE);
        let url = "https://example.com/devcontainer-feature-hello.tgz";
        let pin = l
            .pin(url, &FeatureSource::Tarball { url: url.into() })
            .expect("pin");
        assert_eq!(
            pin,
            Some(Pin::Tarball {
                digest: Digest::parse(D2).expect("d")
            })
        );
        let local = FeatureSource::Local {
            path: PathBuf::from("/r/.devcontainer/x"),
        };
        assert_eq!(l.pin(url, &local).expect("local"), None);
    }

    #[test]
    fn entries_are_made_as_the_reference_makes_them() {
        let e = entry(
            &oci(Reference::Tag("1".into())),
            D1,
            Some("1.6.1"),
            Vec::new(),
        )
        .expect("oci");
        assert_eq!(
            e.resolved,
            format!("ghcr.io/devcontainers/features/node@{D1}")
        );
        assert_eq!(e.depends_on, None);
        let url = "https://example.com/devcontainer-feature-hello.tgz";
        let t = entry(
            &FeatureSource::Tarball { url: url.into() },
            D2,
            None,
            vec!["a".into()],
        )
        .expect("tgz");
        assert_eq!((t.resolved.as_str(), t.integrity.as_str()), (url, D2));
        assert_eq!(t.depends_on, Some(vec!["a".to_string()]));
        let local = FeatureSource::Local {
            path: PathBuf::from("/x"),
        };
        assert_eq!(entry(&local, D1, None, Vec::new()), None);
    }

    #[test]
    fn differences_name_each_feature() {
        let old = parse(REFERENCE).expect("parses");
        let mut new = old.clone();
        let url = "https://example.com/devcontainer-feature-hello.tgz";
        new.features.remove(url);
        new.features
            .get_mut("ghcr.io/devcontainers/features/node:1")
            .expect("node")
            .integrity = Digest::parse(D2).expect("d");
        let d = differences(&old, &new);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].contains("pinned to") && d[1].contains("no longer used"),
            "{d:?}"
        );
        assert!(differences(&old, &old).is_empty());
    }
}
