//! registries.conf as Podman reads it (containers-registries.conf(5), containers/image's
//! sysregistriesv2), for what devaipod fetches itself (Features): which files, in which
//! order, and what they say about one reference: `blocked`, `insecure` (plain HTTP), a
//! `location` rewrite of its prefix, and mirrors.
//!
//! Files: `CONTAINERS_REGISTRIES_CONF` if set; else `~/.config/containers/registries.conf`
//! when it exists (then only the drop-ins of `~/.config/containers/registries.conf.d`);
//! else `/etc/containers/registries.conf` with the drop-ins of
//! `/etc/containers/registries.conf.d` and then `~/.config/containers/registries.conf.d`.
//! Root and rootless differ by `HOME` alone, as in containers/image. Within a directory
//! the `*.conf` files are read in name order. A later `[[registry]]` with the same prefix
//! replaces the earlier one whole; the longest matching prefix wins.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// One `[[registry]]` table (the fields devaipod uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
struct RegistryTable {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror: Vec<MirrorTable>,
    #[serde(rename = "mirror-by-digest-only")]
    mirror_by_digest_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
struct MirrorTable {
    location: String,
    insecure: bool,
    #[serde(rename = "pull-from-mirror")]
    pull_from_mirror: String,
}

/// The V1 format's `[registries.insecure]` and `[registries.block]` lists.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1Tables {
    insecure: V1List,
    block: V1List,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct V1List {
    registries: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileTables {
    registry: Vec<RegistryTable>,
    registries: Option<V1Tables>,
}

/// A `[[registry]]` after reading: where it came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    table: RegistryTable,
    file: PathBuf,
}

/// The merged registries.conf of the calling user.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistriesConf {
    entries: Vec<Entry>,
    /// The files read, in order (for messages).
    pub files: Vec<PathBuf>,
}

/// One place to pull a reference from: a mirror or the (rewritten) location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `HOST[:PORT]/REPOSITORY`, without tag or digest.
    pub repository: String,
    /// Plain HTTP allowed (`insecure = true`).
    pub insecure: bool,
}

impl Endpoint {
    /// The `HOST[:PORT]` part.
    pub(crate) fn registry(&self) -> &str {
        self.repository
            .split_once('/')
            .map_or(self.repository.as_str(), |(h, _)| h)
    }
}

/// What registries.conf says about one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Blocked by the `[[registry]]` of this file.
    Blocked { file: PathBuf, prefix: String },
    /// Try these in order (mirrors first, the location last).
    Pull(Vec<Endpoint>),
}

/// The files Podman reads: (main file, drop-in directories in order).
pub(crate) fn config_files(
    var: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> (PathBuf, Vec<PathBuf>) {
    let home = var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let user_dir = home
        .as_ref()
        .map(|h| h.join(".config/containers/registries.conf.d"));
    if let Some(p) = var("CONTAINERS_REGISTRIES_CONF").filter(|p| !p.is_empty()) {
        let mut dirs = vec![PathBuf::from("/etc/containers/registries.conf.d")];
        dirs.extend(user_dir);
        return (PathBuf::from(p), dirs);
    }
    if let Some(h) = &home {
        let user_file = h.join(".config/containers/registries.conf");
        if user_file.is_file() {
            return (user_file, user_dir.into_iter().collect());
        }
    }
    let mut dirs = vec![PathBuf::from("/etc/containers/registries.conf.d")];
    dirs.extend(user_dir);
    (PathBuf::from("/etc/containers/registries.conf"), dirs)
}

impl RegistriesConf {
    /// Reads the calling user's registries.conf and drop-ins (missing files are none).
    pub(crate) fn load() -> Result<Self> {
        let var = |k: &str| std::env::var_os(k);
        let (main, dirs) = config_files(&var);
        let mut files = Vec::new();
        if main.is_file() {
            files.push(main);
        }
        for dir in dirs {
            let Ok(read) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut confs: Vec<PathBuf> = read
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                .collect();
            confs.sort();
            files.extend(confs);
        }
        let mut conf = Self::default();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            conf.add(&file, &text)?;
        }
        Ok(conf)
    }

    /// Adds one file's tables on top of what was read before.
    pub(crate) fn add(&mut self, file: &Path, text: &str) -> Result<()> {
        let tables: FileTables = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = crate::config::line_col(text, s.start);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            anyhow::anyhow!(
                "{}{at}: not a valid registries.conf (containers-registries.conf(5)): {}",
                file.display(),
                e.message()
            )
        })?;
        let mut new: Vec<RegistryTable> = tables.registry;
        if let Some(v1) = tables.registries {
            for r in v1.insecure.registries {
                new.push(RegistryTable {
                    prefix: r.clone(),
                    location: r,
                    insecure: true,
                    ..Default::default()
                });
            }
            for r in v1.block.registries {
                new.push(RegistryTable {
                    prefix: r.clone(),
                    location: r,
                    blocked: true,
                    ..Default::default()
                });
            }
        }
        for mut table in new {
            if table.prefix.is_empty() {
                table.prefix = table.location.clone();
            }
            if table.prefix.is_empty() {
                anyhow::bail!(
                    "{}: a [[registry]] has neither prefix nor location",
                    file.display()
                );
            }
            self.entries.retain(|e| e.table.prefix != table.prefix);
            self.entries.push(Entry {
                table,
                file: file.to_path_buf(),
            });
        }
        self.files.push(file.to_path_buf());
        Ok(())
    }

    /// Where to pull `repository` (`HOST[:PORT]/PATH`, no tag) from; `by_digest` when
    /// the reference names a manifest digest (mirrors marked digest-only serve only those).
    pub(crate) fn resolve(&self, repository: &str, by_digest: bool) -> Resolution {
        let best = self
            .entries
            .iter()
            .filter(|e| prefix_matches(&e.table.prefix, repository))
            .max_by_key(|e| e.table.prefix.len());
        let Some(entry) = best else {
            return Resolution::Pull(vec![Endpoint {
                repository: repository.to_string(),
                insecure: false,
            }]);
        };
        let t = &entry.table;
        if t.blocked {
            return Resolution::Blocked {
                file: entry.file.clone(),
                prefix: t.prefix.clone(),
            };
        }
        let rest = if t.prefix.starts_with("*.") {
            // A wildcard prefix matches a whole host; nothing is rewritten.
            ""
        } else {
            &repository[t.prefix.len()..]
        };
        let rewrite = |location: &str| {
            if t.prefix.starts_with("*.") || location.is_empty() {
                repository.to_string()
            } else {
                format!("{location}{rest}")
            }
        };
        let mut out = Vec::new();
        for m in &t.mirror {
            let digest_only = t.mirror_by_digest_only || m.pull_from_mirror == "digest-only";
            let tag_only = m.pull_from_mirror == "tag-only";
            if (digest_only && !by_digest) || (tag_only && by_digest) || m.location.is_empty() {
                continue;
            }
            out.push(Endpoint {
                repository: rewrite(&m.location),
                insecure: m.insecure,
            });
        }
        out.push(Endpoint {
            repository: rewrite(&t.location),
            insecure: t.insecure,
        });
        Resolution::Pull(out)
    }
}

/// containers-registries.conf(5)'s prefix match: the whole repository, or a prefix
/// followed by `/` (a namespace); `*.example.com` matches any subdomain's host.
fn prefix_matches(prefix: &str, repository: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = repository.split('/').next().unwrap_or(repository);
        let host = host.split(':').next().unwrap_or(host);
        return host.ends_with(&format!(".{domain}"));
    }
    repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(files: &[(&str, &str)]) -> RegistriesConf {
        let mut c = RegistriesConf::default();
        for (name, text) in files {
            c.add(Path::new(name), text).expect("valid");
        }
        c
    }

    fn ep(repository: &str, insecure: bool) -> Endpoint {
        Endpoint {
            repository: repository.into(),
            insecure,
        }
    }

    #[test]
    fn the_test_registries_drop_in_is_understood() {
        let c = conf(&[(
            "/etc/containers/registries.conf.d/50-test.conf",
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "127.0.0.1:5701"
insecure = true

[[registry]]
prefix = "registry.devaipod.test/dvpt"
location = "127.0.0.1:5701/dvpt"
insecure = true

[[registry]]
location = "blocked.devaipod.test"
blocked = true
"#,
        )]);
        assert_eq!(
            c.resolve("127.0.0.1:5701/dvpt/features/hello", false),
            Resolution::Pull(vec![ep("127.0.0.1:5701/dvpt/features/hello", true)])
        );
        assert_eq!(
            c.resolve("registry.devaipod.test/dvpt/features/hello", false),
            Resolution::Pull(vec![ep("127.0.0.1:5701/dvpt/features/hello", true)])
        );
        // A prefix matches whole path components only.
        assert_eq!(
            c.resolve("registry.devaipod.test/dvptx/a", false),
            Resolution::Pull(vec![ep("registry.devaipod.test/dvptx/a", false)])
        );
        assert_eq!(
            c.resolve("blocked.devaipod.test/x/y", false),
            Resolution::Blocked {
                file: "/etc/containers/registries.conf.d/50-test.conf".into(),
                prefix: "blocked.devaipod.test".into()
            }
        );
        assert_eq!(
            c.resolve("ghcr.io/devcontainers/features/node", false),
            Resolution::Pull(vec![ep("ghcr.io/devcontainers/features/node", false)])
        );
    }

    #[test]
    fn later_files_replace_a_prefix_and_the_longest_prefix_wins() {
        let c = conf(&[
            (
                "/etc/containers/registries.conf",
                "[[registry]]\nlocation = \"ghcr.io\"\nblocked = true\n",
            ),
            (
                "/home/u/.config/containers/registries.conf.d/10.conf",
                r#"
[[registry]]
location = "ghcr.io"

[[registry]]
prefix = "ghcr.io/devcontainers"
location = "mirror.example/dc"
[[registry.mirror]]
location = "fast.example/dc"
insecure = true
[[registry.mirror]]
location = "digests.example/dc"
pull-from-mirror = "digest-only"
"#,
            ),
        ]);
        assert_eq!(
            c.resolve("ghcr.io/other/x", false),
            Resolution::Pull(vec![ep("ghcr.io/other/x", false)])
        );
        assert_eq!(
            c.resolve("ghcr.io/devcontainers/features/node", false),
            Resolution::Pull(vec![
                ep("fast.example/dc/features/node", true),
                ep("mirror.example/dc/features/node", false)
            ])
        );
        assert_eq!(
            c.resolve("ghcr.io/devcontainers/features/node", true),
            Resolution::Pull(vec![
                ep("fast.example/dc/features/node", true),
                ep("digests.example/dc/features/node", false),
                ep("mirror.example/dc/features/node", false)
            ])
        );
    }

    #[test]
    fn v1_lists_and_wildcards_and_errors() {
        let c = conf(&[(
            "/etc/containers/registries.conf",
            "[registries.insecure]\nregistries = [\"plain.example:5000\"]\n[registries.block]\nregistries = [\"bad.example\"]\n[[registry]]\nprefix = \"*.corp.example\"\nblocked = true\n",
        )]);
        assert_eq!(
            c.resolve("plain.example:5000/a/b", false),
            Resolution::Pull(vec![ep("plain.example:5000/a/b", true)])
        );
        assert!(matches!(
            c.resolve("bad.example/a", false),
            Resolution::Blocked { .. }
        ));
        assert!(matches!(
            c.resolve("reg.corp.example:443/a", false),
            Resolution::Blocked { .. }
        ));
        let mut c = RegistriesConf::default();
        let e = c
            .add(
                Path::new("/x/r.conf"),
                "[[registry]]\nlocation = \"a\"\ninsecure = \"yes\"\n",
            )
            .expect_err("a string is not a bool");
        assert!(format!("{e:#}").starts_with("/x/r.conf:3:"), "{e:#}");
    }

    #[test]
    fn podmans_file_locations() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        // No user file (this HOME does not exist): the system file and both directories.
        let (main, dirs) = config_files(&env(&[("HOME", "/nonexistent-devaipod-home")]));
        assert_eq!(main, PathBuf::from("/etc/containers/registries.conf"));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/etc/containers/registries.conf.d"),
                PathBuf::from("/nonexistent-devaipod-home/.config/containers/registries.conf.d")
            ]
        );
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(home.path().join(".config/containers")).expect("mkdir");
        std::fs::write(home.path().join(".config/containers/registries.conf"), "").expect("write");
        let h = home.path().to_path_buf();
        let var = move |k: &str| (k == "HOME").then(|| h.clone().into_os_string());
        let (main, dirs) = config_files(&var);
        assert_eq!(main, home.path().join(".config/containers/registries.conf"));
        assert_eq!(
            dirs,
            [home.path().join(".config/containers/registries.conf.d")]
        );
    }
}
