//! Dockerfile-based configurations (`build`, legacy `dockerFile`/`context`): the build
//! context is packed on the host and the image is tagged by a hash of everything that
//! goes into the build, so unchanged inputs reuse the image and every pod of a repo
//! shares it. The engine side is [`crate::podman::Engine::build_image`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::devcontainer::DevContainer;

/// Where a Dockerfile outside the context is put inside the context's tar stream.
const OUTSIDE_DOCKERFILE: &str = ".devaipod-build.Dockerfile";

/// The image build a Dockerfile configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BuildPlan {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    /// Build arguments; only their names are printed (a value may be sensitive).
    #[serde(rename = "arg_names", serialize_with = "keys_only")]
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--network` of `build.options` (Podman's network mode for RUN steps).
    pub network: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The tag: `localhost/devaipod-build-REPO:KEY`.
    pub tag: String,
    /// sha256 of the Dockerfile, the context's files and the build's settings.
    pub key: String,
    /// Files in the context (git's tracked and untracked-but-not-ignored files).
    pub files: usize,
    pub bytes: u64,
    /// `--rebuild`: build even if the tag exists, without the layer cache.
    pub rebuild: bool,
}

fn keys_only<S: serde::Serializer>(
    m: &BTreeMap<String, String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(m.keys())
}

/// A prepared build: the plan and the context as a tar stream.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub plan: BuildPlan,
    pub tar: Vec<u8>,
    /// The Dockerfile's path inside the tar stream.
    pub dockerfile_in_context: String,
    pub warnings: Vec<String>,
}

/// `build.options` entries (docker build flags) devaipod maps; anything else is an error.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    no_cache: bool,
    network: Option<String>,
    labels: BTreeMap<String, String>,
    args: BTreeMap<String, String>,
    target: Option<String>,
    warnings: Vec<String>,
}

fn parse_options(options: &[String]) -> std::result::Result<Options, String> {
    let mut out = Options::default();
    let mut it = options.iter();
    while let Some(opt) = it.next() {
        let (flag, inline) = match opt.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (opt.as_str(), None),
        };
        let value = |it: &mut std::slice::Iter<'_, String>| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("build.options: {flag} needs a value"))
        };
        match flag {
            "--no-cache" => out.no_cache = inline.as_deref() != Some("false"),
            "--pull" | "--pull-always" | "--pull-never" => out.warnings.push(format!(
                "build.options: {opt} has no effect: `up --pull never|missing|always` decides when the build pulls its FROM images"
            )),
            "--network" => out.network = Some(value(&mut it)?),
            "--label" => {
                let v = value(&mut it)?;
                let (k, v) = v.split_once('=').unwrap_or((v.as_str(), ""));
                out.labels.insert(k.to_string(), v.to_string());
            }
            "--build-arg" => {
                let v = value(&mut it)?;
                let Some((k, v)) = v.split_once('=') else {
                    return Err(format!(
                        "build.options: --build-arg {v} takes its value from the host environment, which devaipod does not pass into builds; write --build-arg {v}=VALUE"
                    ));
                };
                out.args.insert(k.to_string(), v.to_string());
            }
            "--target" => out.target = Some(value(&mut it)?),
            "--progress" | "-q" | "--quiet" => {
                if flag == "--progress" {
                    value(&mut it)?;
                }
            }
            other => {
                return Err(format!(
                    "build.options: {other} is not supported by devaipod (supported: --no-cache, --network, --label, --build-arg, --target, --pull, --progress); remove it"
                ));
            }
        }
    }
    Ok(out)
}

/// A folder name as an image name component: lowercase `[a-z0-9._-]`.
pub(crate) fn image_component(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() { "repo".into() } else { s }
}

/// Resolves `rel` against `base` and checks that, symlinks resolved, it stays inside
/// `root`.
fn confined(base: &Path, rel: &str, root: &Path, what: &str, config: &Path) -> Result<PathBuf> {
    let path = base.join(rel);
    let real = path.canonicalize().with_context(|| {
        format!(
            "{}: {what} {rel:?} resolves to {}, which does not exist",
            config.display(),
            path.display()
        )
    })?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if !real.starts_with(&root) {
        bail!(
            "{}: {what} {rel:?} resolves to {}, outside the repository {}: builds use only the repository's own files",
            config.display(),
            real.display(),
            root.display()
        );
    }
    Ok(real)
}

/// Reads the configuration's build settings and packs the context. `None` for an
/// image-based (or Compose) configuration.
pub(crate) fn prepare(
    dc: &DevContainer,
    config_path: &Path,
    repo_root: &Path,
    repo_name: &str,
    rebuild: bool,
) -> Result<Option<Prepared>> {
    let build = dc.build.as_ref().and_then(Value::as_object);
    let dockerfile = build
        .and_then(|b| b.get("dockerfile"))
        .and_then(Value::as_str)
        .or(dc.docker_file.as_deref());
    let Some(dockerfile) = dockerfile else {
        if dc.build.is_some() && dc.image.is_none() && dc.docker_compose_file.is_none() {
            bail!(
                "{}: \"build\" has no \"dockerfile\": name the Dockerfile (relative to this file)",
                config_path.display()
            );
        }
        return Ok(None);
    };
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let context_rel = build
        .and_then(|b| b.get("context"))
        .and_then(Value::as_str)
        .or(dc.context.as_deref())
        .unwrap_or(".");
    let dockerfile_path = confined(
        config_dir,
        dockerfile,
        repo_root,
        "the Dockerfile",
        config_path,
    )?;
    if !dockerfile_path.is_file() {
        bail!(
            "{}: the Dockerfile {dockerfile:?} ({}) is not a file",
            config_path.display(),
            dockerfile_path.display()
        );
    }
    let context = confined(
        config_dir,
        context_rel,
        repo_root,
        "the build context",
        config_path,
    )?;
    if !context.is_dir() {
        bail!(
            "{}: the build context {context_rel:?} ({}) is not a folder",
            config_path.display(),
            context.display()
        );
    }
    let mut warnings = Vec::new();
    let options = options_of(build, config_path)?;
    let opts =
        parse_options(&options).map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    warnings.extend(opts.warnings.iter().cloned());
    if build.and_then(|b| b.get("cacheFrom")).is_some() {
        warnings.push("build.cacheFrom has no effect: the local layer cache is used".into());
    }
    let args = args_of(build, &opts.args, config_path)?;
    let target = build
        .and_then(|b| b.get("target"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(opts.target.clone());

    let files = crate::git::context_files(&context)?;
    let (tar, bytes) = pack(&context, &files)?;
    let (dockerfile_in_context, tar) = match dockerfile_path.strip_prefix(&context) {
        Ok(rel) => (rel.display().to_string(), tar),
        Err(_) => {
            let content = std::fs::read(&dockerfile_path)
                .with_context(|| format!("reading {}", dockerfile_path.display()))?;
            (
                OUTSIDE_DOCKERFILE.to_string(),
                append(tar, OUTSIDE_DOCKERFILE, &content)?,
            )
        }
    };
    let key = content_key(
        &dockerfile_in_context,
        &args,
        target.as_deref(),
        &opts,
        &tar,
    );
    let tag = format!(
        "localhost/devaipod-build-{}:{}",
        image_component(repo_name),
        &key[..16]
    );
    Ok(Some(Prepared {
        plan: BuildPlan {
            dockerfile: dockerfile_path,
            context,
            args,
            target,
            no_cache: opts.no_cache,
            network: opts.network,
            labels: opts.labels,
            tag,
            key,
            files: files.len(),
            bytes,
            rebuild,
        },
        tar,
        dockerfile_in_context,
        warnings,
    }))
}

/// `build.options`: an array of strings, or nothing.
fn options_of(
    build: Option<&serde_json::Map<String, Value>>,
    config_path: &Path,
) -> Result<Vec<String>> {
    match build.and_then(|b| b.get("options")) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .with_context(|| {
                format!(
                    "{}: build.options must be an array of strings",
                    config_path.display()
                )
            }),
        Some(_) => bail!(
            "{}: build.options must be an array of strings",
            config_path.display()
        ),
    }
}

/// The build arguments: those of `build.options` (`from_options`), then `build.args`.
fn args_of(
    build: Option<&serde_json::Map<String, Value>>,
    from_options: &BTreeMap<String, String>,
    config_path: &Path,
) -> Result<BTreeMap<String, String>> {
    let mut args = from_options.clone();
    if let Some(a) = build.and_then(|b| b.get("args")) {
        let Some(obj) = a.as_object() else {
            bail!(
                "{}: build.args must be an object of strings",
                config_path.display()
            );
        };
        for (k, v) in obj {
            let Some(v) = v.as_str() else {
                bail!("{}: build.args.{k} must be a string", config_path.display());
            };
            args.insert(k.clone(), v.to_string());
        }
    }
    Ok(args)
}

/// The image's content key: whatever changes the image changes the key.
fn content_key(
    dockerfile_in_context: &str,
    args: &BTreeMap<String, String>,
    target: Option<&str>,
    opts: &Options,
    tar: &[u8],
) -> String {
    let target = target.map(str::to_string);
    let mut h = Sha256::new();
    h.update(b"devaipod-build-v1\0");
    h.update(dockerfile_in_context.as_bytes());
    h.update(b"\0");
    for (k, v) in args {
        h.update(format!("arg {k}={v}\0").as_bytes());
    }
    h.update(format!("target {target:?}\0network {:?}\0", opts.network).as_bytes());
    for (k, v) in &opts.labels {
        h.update(format!("label {k}={v}\0").as_bytes());
    }
    h.update(tar);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A build context being packed deterministically: entries in the order added, owned by
/// root, mtime 0, modes kept, symlinks as symlinks (never followed).
pub(crate) struct ContextTar {
    builder: tar::Builder<Vec<u8>>,
    bytes: u64,
}

impl ContextTar {
    pub(crate) fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            bytes: 0,
        }
    }

    /// Adds the file, symlink or folder at `path` as `name`. Folders are added as
    /// entries only (not their content); other kinds (sockets, devices) are skipped.
    pub(crate) fn add_path(&mut self, path: &Path, name: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        header.set_mtime(0);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path)
                .with_context(|| format!("reading link {}", path.display()))?;
            header.set_size(0);
            self.builder
                .append_link(&mut header, name, &target)
                .with_context(|| format!("packing {}", path.display()))?;
        } else if meta.is_file() {
            self.bytes += meta.len();
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            self.builder
                .append_data(&mut header, name, file)
                .with_context(|| format!("packing {}", path.display()))?;
        } else if meta.is_dir() {
            header.set_size(0);
            self.builder
                .append_data(&mut header, name, std::io::empty())
                .with_context(|| format!("packing {}", path.display()))?;
        }
        Ok(())
    }

    /// Adds a regular file made in memory.
    pub(crate) fn add_bytes(&mut self, name: &str, content: &[u8], mode: u32) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.bytes += content.len() as u64;
        self.builder
            .append_data(&mut header, name, content)
            .with_context(|| format!("packing {name}"))
    }

    /// The tar stream and the total size of the files in it.
    pub(crate) fn finish(self) -> Result<(Vec<u8>, u64)> {
        let bytes = self.bytes;
        Ok((
            self.builder
                .into_inner()
                .context("finishing the build context")?,
            bytes,
        ))
    }
}

/// Packs `files` (relative to `dir`) deterministically, sorted as given. Returns the tar
/// stream and the files' total size.
fn pack(dir: &Path, files: &[PathBuf]) -> Result<(Vec<u8>, u64)> {
    let mut tar = ContextTar::new();
    for rel in files {
        let path = dir.join(rel);
        // git lists submodules as folders; their content is not part of the context.
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            continue;
        }
        tar.add_path(&path, rel)?;
    }
    tar.finish()
}

/// Appends one file to a finished tar stream.
fn append(tar: Vec<u8>, name: &str, content: &[u8]) -> Result<Vec<u8>> {
    // A finished stream ends with two zero blocks; drop them and append.
    let end = tar.len().saturating_sub(1024);
    let mut builder = tar::Builder::new(tar[..end].to_vec());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, name, content)
        .context("packing the Dockerfile")?;
    builder.into_inner().context("packing the Dockerfile")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_mapped_or_refused_by_name() {
        let o = parse_options(&strings(&[
            "--no-cache",
            "--network=host",
            "--label",
            "a=b",
            "--build-arg=X=1",
            "--target",
            "dev",
            "--pull",
        ]))
        .expect("valid");
        assert!(o.no_cache);
        assert_eq!(o.network.as_deref(), Some("host"));
        assert_eq!(o.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(o.args.get("X").map(String::as_str), Some("1"));
        assert_eq!(o.target.as_deref(), Some("dev"));
        assert_eq!(o.warnings.len(), 1);
        let e = parse_options(&strings(&["--squash"])).expect_err("unknown");
        assert!(e.contains("--squash"), "{e}");
        let e = parse_options(&strings(&["--build-arg", "TOKEN"])).expect_err("host env");
        assert!(e.contains("TOKEN"), "{e}");
        let e = parse_options(&strings(&["--network"])).expect_err("no value");
        assert!(e.contains("needs a value"), "{e}");
    }

    #[test]
    fn image_components_are_valid_names() {
        assert_eq!(image_component("My Repo!"), "my-repo");
        assert_eq!(image_component("..."), "repo");
        assert!(crate::plan::valid_image(&format!(
            "localhost/devaipod-build-{}:0123456789abcdef",
            image_component("Foo_Bar.rs")
        )));
    }
}
