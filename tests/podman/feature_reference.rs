//! devcontainer Features against the reference Dev Containers CLI: for one repo with
//! local features, the container `devcontainer up --docker-path podman` makes and the
//! workspace `devaipod up` makes have the same features installed in the same order
//! (a `dependsOn` naming a feature with other options than the config's installs it
//! twice, an `installsAfter` orders two), install.sh saw the same options (strings and
//! booleans, given and defaulted, an enum) and the same users, the same containerEnv
//! in the image and in the container, and `devaipod config --json` merges the
//! configuration as the reference's `read-configuration --include-merged-configuration`
//! does. The reference reads local features offline; it needs `just setup-reference`.
//!
//! The reference runs with `--buildkit never` (plain `podman build`, which makes a
//! content image `dev_container_feature_content_temp` and the features image
//! `vsc-BASENAME-SHA256(PATH)-features`), `BUILDAH_LAYERS=false` (no intermediate
//! images left behind), its temporary files under the test's own TMPDIR, and the
//! test's label as its `--id-label`. Both images and the container are removed when
//! the test ends, and it fails if any is left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::pod::{
    BASE_IMAGE, Rm, TestPod, image_store_lock, json_of, podman, podman_ok, require_image, stderr,
    stdout,
};
use crate::common::reference_cli;

/// The keys install.sh records: the options of the three features, the builtin users
/// and the features' containerEnv (PATH too: feature a prepends to it).
const RECORDED: &str = "GREETING|LOUD|FLAVOUR|EXTRA|_REMOTE_USER|_CONTAINER_USER|_REMOTE_USER_HOME|_CONTAINER_USER_HOME|FEATURE_A_HOME|FEATURE_B|FEATURE_C|PATH";
/// The containerEnv keys of the features (PATH is compared on its own).
const FEATURE_ENV: &[&str] = &["FEATURE_A_HOME", "FEATURE_B", "FEATURE_C"];
/// Where each install.sh appends its line.
const LOG: &str = "/usr/local/share/order.log";

/// Feature `id`'s folder: its metadata and an install.sh appending to [`LOG`] its id
/// and every [`RECORDED`] variable it sees.
fn feature(id: &str, meta: &str, nonce: &str) -> [(String, String); 2] {
    [
        (
            format!(".devcontainer/{id}/devcontainer-feature.json"),
            meta.to_string(),
        ),
        (
            format!(".devcontainer/{id}/install.sh"),
            format!(
                "#!/bin/sh\nset -e\n# {nonce}\nprintf '%s %s\\n' {id} \"$(env | grep -E '^({RECORDED})=' | sort | tr '\\n' ' ')\" >> {LOG}\n"
            ),
        ),
    ]
}

/// The repo's devcontainer.json: the config's own containerEnv, and options given for
/// ./b (a space and a quote: both CLIs pass them; a `$` or a backtick the reference
/// would expand, devaipod passes literally) and ./c; ./a's are all defaults.
const CONFIG: &str = r#"{
  "image": "localhost/devaipod-base:latest",
  "remoteUser": "dev",
  "containerEnv": {"CONFIG_ENV": "from-config"},
  "features": {
    "./c": {"flavour": "given-c"},
    "./b": {"greeting": "it's a b", "loud": true},
    "./a": {}
  }
}"#;

const META_A: &str = r#"{"id": "a", "version": "1.0.0", "name": "Feature a",
  "options": {"greeting": {"type": "string", "default": "hello-a"}, "loud": {"type": "boolean", "default": false}},
  "containerEnv": {"FEATURE_A_HOME": "/opt/a", "PATH": "/opt/a/bin:${PATH}"}}"#;
const META_B: &str = r#"{"id": "b", "version": "1.0.0", "name": "Feature b",
  "options": {"greeting": {"type": "string", "default": "hello-b", "proposals": ["hello-b"]}, "loud": {"type": "boolean", "default": false}},
  "containerEnv": {"FEATURE_B": "b-${FEATURE_A_HOME}"},
  "installsAfter": ["./a"]}"#;
const META_C: &str = r#"{"id": "c", "version": "1.0.0", "name": "Feature c",
  "options": {"flavour": {"type": "string", "enum": ["plain", "given-c"], "default": "plain"}, "extra": {"type": "boolean", "default": true}},
  "containerEnv": {"FEATURE_C": "c"},
  "dependsOn": {"./b": {}}}"#;

/// What the reference makes for one repo: its container (found by the test's label)
/// and its two images (named from the repo's path, as the reference names them).
/// Dropping it removes them and fails the test if any is left.
struct ReferenceObjects {
    label: String,
    images: [String; 2],
}

impl ReferenceObjects {
    fn new(label: String, repo: &Path) -> Self {
        // getFolderImageName: `vsc-${basename}-${sha256(path)}`, lowercased (the test
        // repo's name has no other character it drops).
        let path = repo.to_string_lossy();
        let hash: String = Sha256::digest(path.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let base = repo
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_lowercase();
        Self {
            label,
            images: [
                format!("localhost/vsc-{base}-{hash}-features:latest"),
                "localhost/dev_container_feature_content_temp:latest".into(),
            ],
        }
    }

    fn containers(&self) -> Vec<String> {
        let filter = format!("label={}", self.label);
        podman_ok(&["ps", "-aq", "--filter", &filter])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn images_left(&self) -> Vec<&String> {
        self.images
            .iter()
            .filter(|i| podman(&["image", "exists", i]).status.success())
            .collect()
    }
}

impl Drop for ReferenceObjects {
    fn drop(&mut self) {
        if std::env::var_os("DEVAIPOD_TEST_KEEP").is_some() {
            return;
        }
        for c in self.containers() {
            let _ = podman(&["rm", "-f", "-t", "0", &c]);
        }
        for i in &self.images {
            let _ = podman(&["image", "rm", i]);
        }
        if !std::thread::panicking() {
            let (c, i) = (self.containers(), self.images_left());
            assert!(
                c.is_empty() && i.is_empty(),
                "the reference's objects are left: containers {c:?}, images {i:?}"
            );
        }
    }
}

/// The podman the reference is given. Rootful Podman 4.3 refuses `--userns=keep-id`,
/// which the reference passes for a non-root remoteUser ("keep-id is only supported in
/// rootless mode"): as root, a wrapper drops that one argument (it maps the host's uid
/// into the container, which nothing here compares).
fn docker_path(tmp: &Path) -> String {
    if !nix::unistd::geteuid().is_root() {
        return "podman".into();
    }
    let wrapper = tmp.join("podman");
    crate::common::pod::write_executable(
        &wrapper,
        "#!/bin/sh\nfor a do shift; [ \"$a\" = --userns=keep-id ] || set -- \"$@\" \"$a\"; done\nexec podman \"$@\"\n",
    );
    wrapper.to_string_lossy().into_owned()
}

/// The reference CLI with its temporary files in `tmp` and plain builds without
/// intermediate images.
fn reference(cli: &Path, tmp: &Path, args: &[&str]) -> Output {
    Command::new(cli)
        .args(args)
        .env("TMPDIR", tmp)
        .env("BUILDAH_LAYERS", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running the reference CLI {}: {e}", cli.display()))
}

#[track_caller]
fn reference_json(o: &Output, what: &str) -> Value {
    assert!(
        o.status.success(),
        "the reference's {what} failed: {}\n{}",
        stderr(o),
        stdout(o)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("the reference's {what}: not JSON ({e}): {}", stdout(o)))
}

/// An env list (`K=V`) as a map.
fn env_map(json: &str) -> BTreeMap<String, String> {
    let list: Vec<String> = serde_json::from_str(json).expect("env JSON");
    list.into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect()
}

/// The `KEY=VALUE` entries of an env list (in its order) whose key is in `keys`.
fn only(json: &str, keys: &[&str]) -> Vec<String> {
    let list: Vec<String> = serde_json::from_str(json).expect("env JSON");
    list.into_iter()
        .filter(|kv| kv.split_once('=').is_some_and(|(k, _)| keys.contains(&k)))
        .collect()
}

fn metadata_label(image: &str) -> Vec<Value> {
    let raw = podman_ok(&[
        "image",
        "inspect",
        image,
        "--format",
        "{{index .Labels \"devcontainer.metadata\"}}",
    ]);
    serde_json::from_str(raw.trim()).unwrap_or_else(|e| panic!("{image}'s label ({e}): {raw}"))
}

#[test]
fn local_features_install_as_the_reference_cli_installs_them() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let cli = reference_cli();
    let b = TestPod::new("featref");
    let nonce = b.name().to_string();
    let mut files: Vec<(String, String)> =
        vec![(".devcontainer/devcontainer.json".into(), CONFIG.into())];
    for (id, meta) in [("a", META_A), ("b", META_B), ("c", META_C)] {
        files.extend(feature(id, meta, &nonce));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let p = b.files(&files).build();
    let tmp = tempfile::tempdir().expect("tempdir");
    let refs = ReferenceObjects::new(p.label_arg(), p.repo());

    // The reference's container.
    let started = std::time::Instant::now();
    let docker = docker_path(tmp.path());
    let folder = p.path();
    let label = p.label_arg();
    let common = [
        "--workspace-folder",
        folder.as_str(),
        "--docker-path",
        docker.as_str(),
        "--id-label",
        label.as_str(),
    ];
    let mut up = vec![
        "up",
        "--buildkit",
        "never",
        "--skip-post-create",
        "--update-remote-user-uid-default",
        "never",
        "--default-user-env-probe",
        "none",
    ];
    up.extend(common);
    let ref_up = reference_json(&reference(&cli, tmp.path(), &up), "up");
    assert_eq!(ref_up["outcome"], "success", "{ref_up}");
    let ref_container = ref_up["containerId"].as_str().expect("containerId");
    let mut read = vec!["read-configuration", "--include-merged-configuration"];
    read.extend(common);
    let ref_read = reference_json(&reference(&cli, tmp.path(), &read), "read-configuration");
    let ref_log = podman_ok(&["exec", ref_container, "cat", LOG]);
    let ref_env = podman_ok(&["inspect", ref_container, "--format", "{{json .Config.Env}}"]);
    let ref_image = podman_ok(&["inspect", ref_container, "--format", "{{.ImageName}}"]);
    let ref_image = ref_image.trim();
    assert_eq!(
        ref_image, refs.images[0],
        "the reference named its image otherwise"
    );
    let ref_image_env = podman_ok(&[
        "image",
        "inspect",
        ref_image,
        "--format",
        "{{json .Config.Env}}",
    ]);
    let ref_label = metadata_label(ref_image);
    eprintln!("the reference's up took {:?}", started.elapsed());

    // devaipod's workspace of the same repo.
    let started = std::time::Instant::now();
    let o = p.up(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = podman_ok(&["inspect", &p.workspace(), "--format", "{{.ImageName}}"]);
    let image = image.trim().to_string();
    let _rm = Rm::image(image.clone());
    assert!(image.starts_with("localhost/devaipod-features-"), "{image}");
    let log = p.in_workspace(None, &format!("cat {LOG}"));
    let env = podman_ok(&[
        "inspect",
        &p.workspace(),
        "--format",
        "{{json .Config.Env}}",
    ]);
    let image_env = podman_ok(&[
        "image",
        "inspect",
        &image,
        "--format",
        "{{json .Config.Env}}",
    ]);
    let ours = json_of(&p.run(&["config", &folder, "--json"]));
    eprintln!("devaipod's up took {:?}", started.elapsed());

    // Installed in the same order, each install.sh seeing the same options and users:
    // ./b twice (./c's dependsOn asks for it with its defaults, the config with its
    // own options), after ./a (installsAfter), ./c last.
    assert_eq!(log, ref_log, "install.sh lines: devaipod vs the reference");
    let ids: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(ids, ["a", "b", "b", "c"], "{log}");
    for want in [
        "GREETING=hello-a LOUD=false",
        "GREETING=hello-b LOUD=false",
        "GREETING=it's a b LOUD=true",
        "EXTRA=true FEATURE_A_HOME=/opt/a FEATURE_B=b-/opt/a FEATURE_C=c FLAVOUR=given-c",
        "_CONTAINER_USER=root _CONTAINER_USER_HOME=/root _REMOTE_USER=dev _REMOTE_USER_HOME=/home/dev",
    ] {
        assert!(log.contains(want), "no {want:?} in {log}");
    }

    // The features' containerEnv: the same ENV lines in the same order in both images,
    // the same values in both containers (with the config's own containerEnv); the
    // workspace's PATH has devaipod's shim folder after the image's.
    let mut image_keys = FEATURE_ENV.to_vec();
    image_keys.push("PATH");
    assert_eq!(
        only(&image_env, &image_keys),
        only(&ref_image_env, &image_keys),
        "image ENV: devaipod {image_env} vs the reference {ref_image_env}"
    );
    let (ours_env, ref_env) = (env_map(&env), env_map(&ref_env));
    for k in FEATURE_ENV.iter().chain(&["CONFIG_ENV"]) {
        assert_eq!(
            ours_env.get(*k),
            ref_env.get(*k),
            "{k}: {env} vs {ref_env:?}"
        );
        assert!(ref_env.contains_key(*k), "{k} missing: {ref_env:?}");
    }
    assert_eq!(
        ours_env["PATH"],
        format!("{}:/opt/devaipod/bin", ref_env["PATH"]),
        "PATH"
    );

    // The merged configuration, as read-configuration shows it for the container.
    assert_eq!(
        ours["configuration"], ref_read["configuration"],
        "configuration"
    );
    assert_eq!(
        ours["mergedConfiguration"], ref_read["mergedConfiguration"],
        "mergedConfiguration: devaipod vs the reference"
    );
    // The images' devcontainer.metadata: the features' entries alike; the reference
    // adds the config's own entry, which devaipod keeps out of the image (it is applied
    // to the workspace, and the image is shared with the agent).
    let ours_label = metadata_label(&image);
    assert_eq!(
        ref_label.len(),
        ours_label.len() + 1,
        "{ref_label:?} vs {ours_label:?}"
    );
    assert_eq!(ref_label[..ours_label.len()], ours_label[..]);
    assert_eq!(
        ref_label[ours_label.len()],
        serde_json::json!({"containerEnv": {"CONFIG_ENV": "from-config"}, "remoteUser": "dev"})
    );
    drop(p);
    drop(refs);
}
