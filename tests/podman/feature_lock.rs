//! Features pinned by `devcontainer-lock.json` (OCI features on registry A, see
//! tests/registry/registry.sh), a tarball feature served over HTTPS on loopback
//! (tests/common/tls.rs: a test CA that devaipod trusts through SSL_CERT_FILE, as a
//! user would), and features whose registry cannot be reached. Each test has a feature
//! cache of its own (XDG_CACHE_HOME), so that what it asserts is never the cache's doing.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::features::{LAYER, feature_tar, push_to_a, sha256};
use crate::common::pod::{
    BASE_IMAGE, Rm, TestPod, devaipod_bin, image_store_lock, json_of, podman_ok, require_image,
    stderr,
};
use crate::common::registry::Registry;
use crate::common::tls::TestCa;

const LOCK: &str = ".devcontainer/devcontainer-lock.json";

/// A devcontainer-feature.json of `version` whose postStartCommand says `word`.
fn feature_json(id: &str, version: &str, word: &str) -> String {
    format!(r#"{{"id": "{id}", "version": "{version}", "postStartCommand": "echo pinned-{word}"}}"#)
}

/// A lockfile as the reference CLI writes it, one OCI feature: `id` pinned to the
/// manifest `digest` of `resource` (REGISTRY/PATH).
fn oci_lockfile(id: &str, resource: &str, digest: &str, version: &str) -> String {
    format!(
        "{{\n  \"features\": {{\n    \"{id}\": {{\n      \"version\": \"{version}\",\n      \"resolved\": \"{resource}@{digest}\",\n      \"integrity\": \"{digest}\"\n    }}\n  }}\n}}\n"
    )
}

/// Everything in the feature cache under `xdg` (folders and remembered references).
fn cache_entries(xdg: &Path) -> Vec<String> {
    let dir = xdg.join("devaipod/features");
    let mut out = Vec::new();
    for sub in [dir.clone(), dir.join("refs")] {
        if let Ok(r) = std::fs::read_dir(&sub) {
            out.extend(
                r.flatten()
                    .map(|e| e.path().display().to_string())
                    .filter(|p| !p.ends_with("/refs")),
            );
        }
    }
    out
}

/// `devaipod ARGS` as `p` runs it, with the feature cache `xdg`.
fn run_with_cache(p: &TestPod, args: &[&str], xdg: &Path) -> Output {
    p.command(args)
        .env("XDG_CACHE_HOME", xdg)
        .output()
        .expect("devaipod runs")
}

#[test]
fn a_lockfile_pins_the_manifest_so_a_moved_tag_changes_nothing() {
    require_image(BASE_IMAGE);
    let r = Registry::require();
    let b = TestPod::new("lock");
    let repo = format!("dvpt/features/{}", b.name());
    let one = feature_tar(&[
        (
            "devcontainer-feature.json",
            &feature_json("pinned", "1.0.0", "one"),
        ),
        ("install.sh", "#!/bin/sh\necho one\n"),
    ]);
    let d1 = push_to_a(&repo, "1", &one, LAYER);
    let id = format!("{}/{repo}:1", r.a());
    let resource = format!("{}/{repo}", r.a());
    let config = format!(r#"{{"image": "{BASE_IMAGE}", "features": {{"{id}": {{}}}}}}"#);
    let lock = oci_lockfile(&id, &resource, &d1.manifest_digest, "1.0.0");
    let cache = tempfile::tempdir().expect("tempdir");
    let p = b
        .files(&[(".devcontainer/devcontainer.json", &config), (LOCK, &lock)])
        .env("XDG_CACHE_HOME", cache.path().display().to_string())
        .build();

    // The tag moves to another manifest (D2).
    let two = feature_tar(&[
        (
            "devcontainer-feature.json",
            &feature_json("pinned", "2.0.0", "two"),
        ),
        ("install.sh", "#!/bin/sh\necho two\n"),
    ]);
    let d2 = push_to_a(&repo, "1", &two, LAYER);
    assert_ne!(d1.manifest_digest, d2.manifest_digest);

    // The dry run fetches D1 by its digest, never asking for the tag.
    r.mark_log(&format!("{}-before", p.name()));
    let before = r.requests_for(&repo).len();
    let dry = p.dry_run(&[]);
    r.mark_log(&format!("{}-after", p.name()));
    let asked: Vec<String> = r.requests_for(&repo)[before..]
        .iter()
        .filter(|q| q.method == "GET" || q.method == "HEAD")
        .map(|q| q.uri.clone())
        .collect();
    let by_digest = format!("/v2/{repo}/manifests/{}", d1.manifest_digest);
    assert!(asked.contains(&by_digest), "{asked:?}");
    assert!(
        !asked.iter().any(|u| u.ends_with("/manifests/1")),
        "the tag was asked for: {asked:?}"
    );
    let f = &dry["features"];
    assert_eq!(f["each"][0]["version"], "1.0.0", "{dry}");
    assert_eq!(f["lockfile"]["state"], "unchanged", "{dry}");
    assert_eq!(
        f["lockfile"]["features"][&id]["integrity"],
        d1.manifest_digest.as_str(),
        "{dry}"
    );
    let folder = cache.path().join(format!(
        "devaipod/features/sha256-{}",
        d1.layer_digest.trim_start_matches("sha256:")
    ));
    assert!(folder.is_dir(), "{:?}", cache_entries(cache.path()));
    // The same with --frozen-lockfile: the file matches.
    let frozen = p.dry_run(&["--frozen-lockfile"]);
    assert_eq!(frozen["features"]["lockfile"]["state"], "unchanged");

    // config --json merges D1's metadata, from a cache of its own.
    let other = tempfile::tempdir().expect("tempdir");
    let o = run_with_cache(&p, &["config", &p.path(), "--json"], other.path());
    let v = json_of(&o);
    let commands = v["mergedConfiguration"]["postStartCommands"].to_string();
    assert!(
        commands.contains("pinned-one") && !commands.contains("pinned-two"),
        "{v}"
    );
    // feature pull of the lockfile's `resolved` is D1 too.
    let resolved = format!("{resource}@{}", d1.manifest_digest);
    let o = run_with_cache(&p, &["feature", "pull", &resolved, "--json"], other.path());
    let v = json_of(&o);
    assert_eq!(v["digest"], d1.layer_digest.as_str(), "{v}");
    assert_eq!(v["version"], "1.0.0", "{v}");

    // Without the lockfile (and a fresh cache) the moved tag is D2.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (path, label) = (p.path(), p.label_arg());
    let args = p.up_args(&path, &label, &["--dry-run", "--json", "--no-lockfile"]);
    let v = json_of(&run_with_cache(&p, &args, fresh.path()));
    assert_eq!(v["features"]["each"][0]["version"], "2.0.0", "{v}");
    assert!(v["features"]["lockfile"].is_null(), "{v}");
    p.assert_nothing_left();
}

#[test]
fn a_wrong_or_malformed_lockfile_stops_up_naming_it_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let r = Registry::require();
    let b = TestPod::new("lock-bad");
    let repo = format!("dvpt/features/{}", b.name());
    let tar = feature_tar(&[
        (
            "devcontainer-feature.json",
            &feature_json("pinned", "1.0.0", "one"),
        ),
        ("install.sh", "#!/bin/sh\necho one\n"),
    ]);
    let pushed = push_to_a(&repo, "1", &tar, LAYER);
    let id = format!("{}/{repo}:1", r.a());
    let resource = format!("{}/{repo}", r.a());
    // A manifest digest the registry has never seen.
    let wrong = sha256(b"not this feature");
    let config = format!(r#"{{"image": "{BASE_IMAGE}", "features": {{"{id}": {{}}}}}}"#);
    let cache = tempfile::tempdir().expect("tempdir");
    let p = b
        .files(&[
            (".devcontainer/devcontainer.json", &config),
            (LOCK, &oci_lockfile(&id, &resource, &wrong, "1.0.0")),
        ])
        .env("XDG_CACHE_HOME", cache.path().display().to_string())
        .build();
    let lock_path = p.repo().join(LOCK);
    let o = p.up_fails(&[], &format!("as {} pins it", lock_path.display()));
    let err = stderr(&o);
    assert!(err.contains(&id) && err.contains("was not found"), "{err}");
    assert!(err.contains(&wrong), "{err}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());

    // Not a lockfile: FILE:LINE:COL.
    std::fs::write(
        &lock_path,
        "{\n  \"features\": {\n    \"x\": nope\n  }\n}\n",
    )
    .expect("write");
    p.up_fails(&[], &format!("{}:3:", lock_path.display()));

    // A feature the lockfile lacks is fetched by its tag, and `up` would add it: the
    // dry run says so; --frozen-lockfile refuses, naming it.
    let other = format!("{}/{repo}:2", r.a());
    push_to_a(&repo, "2", &tar, LAYER);
    let config =
        format!(r#"{{"image": "{BASE_IMAGE}", "features": {{"{id}": {{}}, "{other}": {{}}}}}}"#);
    std::fs::write(p.repo().join(".devcontainer/devcontainer.json"), config).expect("write");
    let lock = oci_lockfile(&id, &resource, &pushed.manifest_digest, "1.0.0");
    std::fs::write(&lock_path, &lock).expect("write");
    let dry = p.dry_run(&[]);
    let l = &dry["features"]["lockfile"];
    assert_eq!(l["state"], "will_write", "{dry}");
    assert_eq!(
        l["features"][&id]["integrity"],
        pushed.manifest_digest.as_str()
    );
    assert_eq!(
        l["features"][&other]["integrity"],
        pushed.manifest_digest.as_str()
    );
    let o = p.up_fails(&["--frozen-lockfile"], "--frozen-lockfile");
    let err = stderr(&o);
    assert!(
        err.contains("does not match") && err.contains(&format!("{other:?} is not in it")),
        "{err}"
    );
    // A dry run writes nothing.
    assert_eq!(std::fs::read_to_string(&lock_path).expect("read"), lock);
}

/// A gzipped Feature tarball, as `devcontainer features package` makes one.
fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write as _;
    let tar = feature_tar(files);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// `devaipod feature pull ARGS...` trusting `ca` (SSL_CERT_FILE) with the cache `xdg`.
fn pull_trusting(ca: &Path, xdg: &Path, args: &[&str]) -> Output {
    Command::new(devaipod_bin())
        .args(["feature", "pull"])
        .args(args)
        .env("SSL_CERT_FILE", ca)
        .env("XDG_CACHE_HOME", xdg)
        .stdin(Stdio::null())
        .output()
        .expect("devaipod runs")
}

#[test]
fn a_tarball_feature_over_https_on_loopback_is_pulled_installed_and_locked() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let ca = TestCa::new();
    let b = TestPod::new("tgz");
    let name = "devcontainer-feature-tgzhello.tgz";
    let install = format!(
        "#!/bin/sh\nset -e\necho 'tarball {}' > /usr/local/share/feature-tgz\n",
        b.name()
    );
    let bytes = tgz(&[
        (
            "devcontainer-feature.json",
            r#"{"id": "tgzhello", "version": "1.0.0"}"#,
        ),
        ("install.sh", &install),
    ]);
    let server = ca.serve(&[(name, bytes.clone())]);
    let url = server.url(name);

    // feature pull, trusting the test CA as a user would (SSL_CERT_FILE).
    let cache = tempfile::tempdir().expect("tempdir");
    let o = pull_trusting(&ca.ca_file(), cache.path(), &[&url, "--json"]);
    let v = json_of(&o);
    assert_eq!(v["id"], "tgzhello", "{v}");
    assert_eq!(v["digest"], sha256(&bytes).as_str(), "{v}");

    // A URL the server does not have, and a server whose certificate no one signed.
    let missing = server.url("devcontainer-feature-nothere.tgz");
    let o = pull_trusting(&ca.ca_file(), cache.path(), &[&missing]);
    crate::common::assert_fails_with(&o, &format!("fetching the feature {missing}: not found"));
    let rogue = ca.serve_rogue(&[(name, bytes.clone())]);
    let o = pull_trusting(&ca.ca_file(), cache.path(), &[&rogue.url(name)]);
    crate::common::assert_fails_with(&o, "TLS certificate is not trusted");
    assert!(stderr(&o).contains(&rogue.url(name)), "{}", stderr(&o));

    // up installs it, and writes the lockfile beside devcontainer.json.
    let config = format!(
        r#"{{"image": "{BASE_IMAGE}", "remoteUser": "dev", "features": {{"{url}": {{}}}}}}"#
    );
    let xdg = tempfile::tempdir().expect("tempdir");
    let p = b
        .config(&config)
        .env("SSL_CERT_FILE", ca.ca_file().display().to_string())
        .env("XDG_CACHE_HOME", xdg.path().display().to_string())
        .build();
    let o = p.up(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = podman_ok(&["inspect", &p.workspace(), "--format", "{{.ImageName}}"]);
    let _rm = Rm::image(image.trim().to_string());
    assert_eq!(
        p.in_workspace(Some("dev"), "cat /usr/local/share/feature-tgz"),
        format!("tarball {}\n", p.name())
    );
    let lock_path = p.repo().join(LOCK);
    let written = std::fs::read_to_string(&lock_path).expect("up wrote the lockfile");
    let lock: serde_json::Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(
        lock,
        serde_json::json!({"features": {&url: {
            "version": "1.0.0", "resolved": &url, "integrity": sha256(&bytes)}}}),
        "{written}"
    );
    p.delete(&[]);

    // The file on the server changes: the lockfile's integrity refuses it, and nothing
    // is kept (a fresh cache stays empty).
    server.replace(
        name,
        tgz(&[
            (
                "devcontainer-feature.json",
                r#"{"id": "tgzhello", "version": "1.0.1"}"#,
            ),
            ("install.sh", "#!/bin/sh\necho changed\n"),
        ]),
    );
    let fresh = tempfile::tempdir().expect("tempdir");
    let (path, label) = (p.path(), p.label_arg());
    let o = run_with_cache(&p, &p.up_args(&path, &label, &[]), fresh.path());
    crate::common::assert_fails_with(&o, "does not match its digest");
    let err = stderr(&o);
    assert!(
        err.contains(&lock_path.display().to_string()) && err.contains(&url),
        "{err}"
    );
    assert_eq!(cache_entries(fresh.path()), Vec::<String>::new());
    p.assert_nothing_left();
}

#[test]
fn up_with_unreachable_features_names_each_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let b = TestPod::new("offline");
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let one = "127.0.0.1:1/dvpt/features/one:1";
    let two = "127.0.0.1:1/dvpt/features/two:1";
    let config =
        format!(r#"{{"image": "{BASE_IMAGE}", "features": {{"{one}": {{}}, "{two}": {{}}}}}}"#);
    let cache = tempfile::tempdir().expect("tempdir");
    let p = b
        .config(&config)
        .env("XDG_CACHE_HOME", cache.path().display().to_string())
        .build();
    let o = p.up_fails(&[], "2 features could not be fetched");
    let err = stderr(&o);
    for id in [one, two] {
        assert!(
            err.contains(&format!("fetching the feature {id:?}"))
                && err.contains(&format!(
                    "127.0.0.1:1 cannot be reached for the feature {id}"
                )),
            "{err}"
        );
    }
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
    assert!(
        !p.repo().join(LOCK).exists(),
        "a failed up wrote the lockfile"
    );
}
