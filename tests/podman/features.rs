//! `devaipod feature pull` (issue 19) against the real registries of
//! tests/registry/registry.sh (`just registry`): a Feature pushed to registry A as an
//! OCI artifact with the devcontainers media types (tests/common/features.rs), fetched
//! through the calling user's Podman configuration (A insecure in a registries.conf
//! drop-in; B's CA in certs.d and its password in an auth.json given as
//! REGISTRY_AUTH_FILE). Each test has a cache folder of its own (XDG_CACHE_HOME).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::features::{LAYER, feature_tar, push_to_a};
use crate::common::pod::{devaipod_bin, stderr, stdout};
use crate::common::registry::{Registry, assert_no_secret};

const REPO: &str = "dvpt/features/hello";
const FEATURE_JSON: &str = r#"{"id": "hello", "version": "1.0.0", "name": "Hello"}"#;
const INSTALL_SH: &str = "#!/bin/sh\necho hello from the feature\n";

/// Pushes the hello Feature as `dvpt/features/hello:1`; its layer digest.
fn push_hello() -> crate::common::features::Pushed {
    let tar = feature_tar(&[
        ("devcontainer-feature.json", FEATURE_JSON),
        ("install.sh", INSTALL_SH),
    ]);
    push_to_a(REPO, "1", &tar, LAYER)
}

/// `devaipod feature pull ARGS...` with XDG_CACHE_HOME=`cache` and `env`.
fn pull(cache: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(devaipod_bin());
    cmd.args(["feature", "pull"])
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("devaipod runs")
}

#[track_caller]
fn json(what: &str, o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", stdout(o)))
}

#[track_caller]
fn assert_fails_with(what: &str, o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "{what} succeeded: {}", stdout(o));
    let err = stderr(o);
    for n in needles {
        assert!(err.contains(n), "{what}: stderr lacks {n:?}: {err}");
    }
}

/// The Feature's folders in the cache (`sha256-*`).
fn cached_folders(cache: &Path) -> Vec<String> {
    match std::fs::read_dir(cache.join("devaipod/features")) {
        Ok(r) => r
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "refs")
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_feature_is_pulled_from_a_registry_and_then_served_from_the_cache() {
    let r = Registry::require();
    let pushed = push_hello();
    let cache = tempfile::tempdir().expect("tempdir");
    let reference = format!("{}/{REPO}:1", r.a());
    let before = r.requests_for(REPO).len();

    let v = json(
        "the first pull",
        &pull(cache.path(), &[&reference, "--json"], &[]),
    );
    assert_eq!(v["id"], "hello");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["cached"], false);
    assert_eq!(v["digest"], pushed.layer_digest.as_str());
    assert_eq!(v["manifest_digest"], pushed.manifest_digest.as_str());
    let dir = Path::new(v["dir"].as_str().expect("dir"));
    let hex = pushed.layer_digest.trim_start_matches("sha256:");
    assert_eq!(
        dir,
        cache.path().join(format!("devaipod/features/sha256-{hex}"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("devcontainer-feature.json")).expect("json"),
        FEATURE_JSON
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("install.sh")).expect("install.sh"),
        INSTALL_SH
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.join("install.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "install.sh is not executable: {mode:o}"
    );
    r.mark_log("features-first");
    let after_first = r.requests_for(REPO).len();
    assert!(
        after_first > before,
        "registry A logged no request for {REPO} during the first pull"
    );

    // The second pull: from the cache, no request reaches A.
    let v = json(
        "the second pull",
        &pull(cache.path(), &[&reference, "--json"], &[]),
    );
    assert_eq!(v["cached"], true);
    assert_eq!(v["digest"], pushed.layer_digest.as_str());
    assert_eq!(v["dir"].as_str(), Some(dir.to_str().expect("utf-8")));
    r.mark_log("features-second");
    let after_second = r.requests_for(REPO);
    assert_eq!(
        after_second.len(),
        after_first,
        "the second pull asked registry A: {:?}",
        &after_second[after_first..]
    );

    // And with a registries.conf that blocks A, the cached pull still works (it reads
    // no configuration and no network), while --always asks and is refused, naming the
    // file. A user's own ~/.config/containers/registries.conf replaces the system's
    // file and drop-ins (containers-registries.conf(5)), so HOME points at one.
    let home = tempfile::tempdir().expect("tempdir");
    let conf = home.path().join(".config/containers/registries.conf");
    std::fs::create_dir_all(conf.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"{}\"\nblocked = true\n", r.a()),
    )
    .expect("write registries.conf");
    let env = [("HOME", home.path())];
    let v = json(
        "a cached pull under a blocking registries.conf",
        &pull(cache.path(), &[&reference, "--json"], &env),
    );
    assert_eq!(v["cached"], true);
    let o = pull(cache.path(), &[&reference, "--always"], &env);
    assert_fails_with(
        "pull --always of a blocked registry",
        &o,
        &[
            "blocked by registries.conf",
            conf.to_str().expect("utf-8"),
            &reference,
        ],
    );
}

#[test]
fn a_missing_tag_or_a_wrong_media_type_fails_clearly_and_leaves_nothing() {
    let r = Registry::require();
    push_hello();
    let cache = tempfile::tempdir().expect("tempdir");
    let missing = format!("{}/{REPO}:no-such-tag-{}", r.a(), std::process::id());
    let o = pull(cache.path(), &[&missing, "--json"], &[]);
    assert_fails_with("pulling a missing tag", &o, &["was not found", &missing]);
    assert!(
        cached_folders(cache.path()).is_empty(),
        "a failed pull left {:?}",
        cached_folders(cache.path())
    );

    let tar = feature_tar(&[("devcontainer-feature.json", FEATURE_JSON)]);
    push_to_a(
        "dvpt/features/not-a-feature",
        "1",
        &tar,
        "application/vnd.oci.image.layer.v1.tar",
    );
    let wrong = format!("{}/dvpt/features/not-a-feature:1", r.a());
    let o = pull(cache.path(), &[&wrong], &[]);
    assert_fails_with(
        "pulling an image layer",
        &o,
        &[
            "is not a devcontainer Feature",
            "application/vnd.oci.image.layer.v1.tar",
            &wrong,
        ],
    );
    assert!(cached_folders(cache.path()).is_empty());
}

#[test]
fn registry_b_needs_the_credentials_of_an_auth_json() {
    let r = Registry::require();
    let pushed = push_hello();
    let secret = r.password();
    let reference = format!("{}/{REPO}:1", r.b());

    let cache = tempfile::tempdir().expect("tempdir");
    let good = r.good_auth();
    let o = pull(
        cache.path(),
        &[&reference, "--json"],
        &[("REGISTRY_AUTH_FILE", good.as_path())],
    );
    assert_no_secret("feature pull's stderr", &stderr(&o), &[&secret]);
    let v = json("pulling from B with credentials", &o);
    assert_eq!(v["digest"], pushed.layer_digest.as_str());
    assert_eq!(v["id"], "hello");
    assert!(
        Path::new(v["dir"].as_str().expect("dir"))
            .join("install.sh")
            .is_file()
    );

    let wrong = r.wrong_auth();
    let cache = tempfile::tempdir().expect("tempdir");
    let o = pull(
        cache.path(),
        &[&reference],
        &[("REGISTRY_AUTH_FILE", wrong.as_path())],
    );
    assert_fails_with(
        "pulling from B with a wrong password",
        &o,
        &[
            "unauthorized",
            &format!("in {} were refused", wrong.display()),
            "podman login",
        ],
    );
    assert_no_secret("feature pull's stderr", &stderr(&o), &[&secret]);

    let none_dir = tempfile::tempdir().expect("tempdir");
    let none = none_dir.path().join("auth.json");
    std::fs::write(&none, "{\"auths\": {}}\n").expect("write");
    let o = pull(
        cache.path(),
        &[&reference],
        &[("REGISTRY_AUTH_FILE", none.as_path())],
    );
    assert_fails_with(
        "pulling from B without credentials",
        &o,
        &[
            "unauthorized",
            &format!(
                "no credentials for {} were found in {}",
                r.b(),
                none.display()
            ),
        ],
    );
    assert!(cached_folders(cache.path()).is_empty());
}
