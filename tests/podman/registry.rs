//! Images from registries (issue 18), against the two real OCI registries of
//! tests/registry/registry.sh (`just registry`), configured the way a user configures
//! Podman: a registries.conf drop-in (A insecure, a made-up name rewritten to A, a
//! blocked name), B's CA in certs.d, B's password in an auth.json passed as
//! REGISTRY_AUTH_FILE. Every test pulls a tag of its own (made from the base image's
//! manifest), so no test or earlier run has it, and removes it afterwards.

use std::path::Path;
use std::process::Output;

use crate::common::pod::{
    TestPod, assert_ok, image_store_lock, json_of, podman_ok, stderr, stdout,
};
use crate::common::registry::{
    ArgvWatch, Pulled, Registry, assert_no_secret, assert_no_secret_in_files, image_exists,
};

/// `podman pull IMAGE` with REGISTRY_AUTH_FILE=`auth` when given.
fn podman_pull(image: &str, auth: Option<&Path>) -> Output {
    let mut cmd = std::process::Command::new("podman");
    cmd.args(["pull", "--quiet", image]);
    if let Some(auth) = auth {
        cmd.env("REGISTRY_AUTH_FILE", auth);
    }
    cmd.output().expect("podman runs")
}

/// A devcontainer.json naming `image`.
fn config_naming(image: &str) -> String {
    format!(r#"{{"image": "{image}", "remoteUser": "dev"}}"#)
}

/// The line devaipod prints (stderr, no terminal) before it pulls `image`.
fn pulling_line(image: &str) -> String {
    format!("devaipod: pulling {image}")
}

/// `what` said it pulls `image` (stderr, no terminal), then passed on Podman's progress.
#[track_caller]
fn assert_pulled(what: &str, o: &Output, image: &str) {
    let line = pulling_line(image);
    let err = stderr(o);
    let mut after = err.lines().skip_while(|l| l.trim_end() != line);
    assert!(
        after.next().is_some(),
        "{what} did not say {line:?} on stderr: {err}"
    );
    assert!(
        after.any(|l| l.contains("Copying")),
        "{what} showed none of Podman's progress (\"Copying blob ...\") after {line:?}: {err}"
    );
}

/// `up EXTRA...` of `pod` with REGISTRY_AUTH_FILE=`auth`.
fn up_with_auth(pod: &TestPod, auth: &Path, extra: &[&str]) -> Output {
    let (path, label) = (pod.path(), pod.label_arg());
    pod.command(&pod.up_args(&path, &label, extra))
        .env("REGISTRY_AUTH_FILE", auth)
        .output()
        .expect("devaipod runs")
}

#[test]
fn up_pulls_a_missing_image_once_through_registries_conf() {
    let registry = Registry::require();
    let b = TestPod::new("regpull");
    let tag = registry.tag(b.name());
    let image = registry.rewritten(&tag);
    let _pulled = Pulled::new(&image);
    let p = b.config(&config_naming(&image)).build();
    assert!(
        !image_exists(&image),
        "{image} is in the store before the test"
    );

    // --pull never: refused with the fix; nothing made, nothing pulled.
    let never = p.up_fails(&["--pull", "never"], "not in the local image store");
    assert!(stderr(&never).contains("--pull"), "{}", stderr(&never));
    assert!(!image_exists(&image), "--pull never pulled {image}");

    // The dry run says it would pull, and does not.
    let plan = p.dry_run(&[]);
    assert_eq!(plan["image"]["state"], "will_pull", "{plan}");
    assert!(!image_exists(&image), "the dry run pulled {image}");

    // `up` (--pull missing) pulls it first, from A through this engine's drop-in (which
    // names A as 127.0.0.1 for root, localhost for a rootless user), and runs it.
    let first = p.up(&["--json"]);
    json_of(&first);
    assert_pulled("up", &first, &image);
    assert!(image_exists(&image), "up did not pull {image}");
    let asked = registry.manifest_requests(&tag);
    assert!(
        asked.iter().any(|r| r.status == 200),
        "registry A never served {tag}: {asked:?}"
    );
    assert!(
        asked.iter().all(|r| r.host == registry.a()),
        "the pull reached A as another name than this engine's configuration gives it ({}): {asked:?}",
        registry.a()
    );
    let used = podman_ok(&["inspect", "-f", "{{.ImageName}}", &p.workspace()]);
    assert_eq!(used.trim(), image, "the workspace's image");

    // A second `up` of the same config pulls nothing and asks the registry nothing.
    let p2 = TestPod::new("regpull2").repo_of(&p).build();
    let second = p2.up(&["--json"]);
    json_of(&second);
    assert!(
        !stderr(&second).contains("pulling"),
        "the second up pulled: {}",
        stderr(&second)
    );
    assert_eq!(
        registry.manifest_requests(&tag),
        asked,
        "the second up asked registry A for {tag}"
    );
    p2.delete(&[]);
    p.delete(&[]);
}

#[test]
fn a_dockerfile_from_a_registry_image_is_pulled_by_the_build() {
    let registry = Registry::require();
    let b = TestPod::new("regbuild");
    let tag = registry.tag(b.name());
    let from = registry.rewritten(&tag);
    let _from = Pulled::new(&from);
    // Declared before the pod, so removed after it: the pod's containers run it.
    let _built: Pulled;
    let nonce = b.name().to_string();
    let p = b
        .files(&[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev"}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!("FROM {from}\nLABEL nonce={nonce}\nRUN echo built > /opt/built\n"),
            ),
        ])
        .build();
    assert!(
        !image_exists(&from),
        "{from} is in the store before the test"
    );
    let plan = p.dry_run(&[]);
    assert_eq!(plan["image"]["state"], "will_build", "{plan}");
    let built = plan["image"]["ref"]
        .as_str()
        .expect("the built image's ref");
    _built = Pulled::new(built);
    assert!(!image_exists(&from), "the dry run pulled {from}");

    {
        let _images = image_store_lock();
        json_of(&p.up(&["--json"]));
    }
    assert!(image_exists(&from), "the build did not pull {from}");
    let asked = registry.manifest_requests(&tag);
    assert!(
        asked
            .iter()
            .any(|r| r.status == 200 && r.host == registry.a()),
        "registry A never served {tag} as {}: {asked:?}",
        registry.a()
    );
    assert_eq!(
        p.in_workspace(Some("dev"), "cat /opt/built").trim(),
        "built"
    );
    p.delete(&[]);
}

#[test]
fn credentials_come_from_auth_json_and_appear_nowhere() {
    let registry = Registry::require();
    let (password, token, wrong) = (
        registry.password(),
        registry.good_token(),
        registry.wrong_password(),
    );
    let secrets = [password.as_str(), token.as_str(), wrong.as_str()];
    let b = TestPod::new("regauth");
    let tag = registry.tag(b.name());
    let image = registry.on_b(&tag);
    let _pulled = Pulled::new(&image);
    let p = b.config(&config_naming(&image)).build();
    assert!(
        !image_exists(&image),
        "{image} is in the store before the test"
    );
    let no_entry = tempfile::tempdir().expect("tempdir");
    let no_entry = no_entry.path().join("auth.json");
    std::fs::write(&no_entry, r#"{"auths": {}}"#).expect("write auth.json");

    // A wrong password, and none for B: refused, naming B and the fix; nothing made.
    for (case, auth) in [
        ("a wrong password", registry.wrong_auth()),
        ("no credentials for B", no_entry.clone()),
    ] {
        let o = up_with_auth(&p, &auth, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "up with {case}: {err}");
        assert!(err.to_lowercase().contains("unauthorized"), "{case}: {err}");
        assert!(
            err.contains(&registry.b()),
            "{case}: the registry is not named: {err}"
        );
        assert!(err.contains("podman login"), "{case}: no fix: {err}");
        assert_no_secret(&format!("up's stderr ({case})"), &err, &secrets);
        assert_no_secret(&format!("up's stdout ({case})"), &stdout(&o), &secrets);
        p.assert_nothing_left();
        assert!(!image_exists(&image), "{image} was pulled with {case}");
    }

    // The right password, from REGISTRY_AUTH_FILE: pulled; the password in no process's
    // command line or environment meanwhile, in no output, in nothing created.
    let watch = ArgvWatch::start(&secrets);
    let o = up_with_auth(&p, &registry.good_auth(), &["--json"]);
    watch.assert_clean();
    json_of(&o);
    assert_pulled("up", &o, &image);
    assert!(image_exists(&image), "up did not pull {image}");
    assert_no_secret("up's stdout", &stdout(&o), &secrets);
    assert_no_secret("up's stderr", &stderr(&o), &secrets);
    let made = p.leftovers().unwrap_or_else(|e| panic!("{e}"));
    assert!(!made.pods.is_empty(), "up made no pod");
    let inspect = |kind: &str, ids: &[String]| {
        if ids.is_empty() {
            return;
        }
        let mut args = vec![kind, "inspect"];
        args.extend(ids.iter().map(String::as_str));
        let shown = podman_ok(&args);
        assert_no_secret(&format!("podman {kind} inspect"), &shown, &secrets);
    };
    inspect("pod", &made.pods);
    inspect("container", &made.containers);
    inspect("volume", &made.volumes);
    // What devaipod keeps on the host (state, SSH keys).
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let dir = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .map(|d| d.join("devaipod"))
    };
    for d in [
        dir("XDG_STATE_HOME", ".local/state"),
        dir("XDG_DATA_HOME", ".local/share"),
    ]
    .into_iter()
    .flatten()
    {
        assert_no_secret_in_files(&d, &secrets);
    }
    p.delete(&[]);
}

#[test]
fn image_pull_gets_images_without_a_pod_and_a_blocked_name_fails() {
    let registry = Registry::require();
    let b = TestPod::new("regimage");
    let tag = registry.tag(b.name());
    let image = registry.rewritten(&tag);
    let _pulled = Pulled::new(&image);
    let p = b.config(&config_naming(&image)).build();
    assert!(
        !image_exists(&image),
        "{image} is in the store before the test"
    );

    let path = p.path();
    let o = p.run(&["image", "pull", &path]);
    assert_ok("devaipod image pull", &o);
    assert_pulled("image pull", &o, &image);
    assert!(image_exists(&image), "image pull did not pull {image}");
    p.assert_nothing_left();

    let listed = json_of(&p.run(&["image", "list", "--json"]));
    let all = listed
        .as_array()
        .expect("image list --json prints an array");
    let canonical = p.repo().canonicalize().expect("the repo's path");
    let ours = |e: &&serde_json::Value| {
        e["image"] == image.as_str()
            && e["repo"]
                .as_str()
                .is_some_and(|r| r == path || Path::new(r) == canonical)
    };
    assert!(
        all.iter().any(|e| ours(&e)),
        "image list has no entry for {image} of {path}: {listed}"
    );

    // A registry registries.conf blocks: refused, saying so; nothing made or pulled.
    let blocked = registry.blocked();
    let q = TestPod::new("regblock")
        .config(&config_naming(&blocked))
        .build();
    let o = q.up_fails(&[], "blocked");
    assert!(stderr(&o).contains("registries.conf"), "{}", stderr(&o));
    assert!(!image_exists(&blocked), "{blocked} is in the store");
}

/// The registries and this engine's configuration of them, through `podman pull`
/// itself: what the tests above rely on, so that a broken setup fails here, by name,
/// rather than as a devaipod failure.
#[test]
fn podman_itself_pulls_through_the_test_configuration() {
    let registry = Registry::require();
    let tag = registry.unique_tag("podman");

    let image = registry.rewritten(&tag);
    let _pulled = Pulled::new(&image);
    assert_ok(&format!("podman pull {image}"), &podman_pull(&image, None));
    let asked = registry.manifest_requests(&tag);
    assert!(
        !asked.is_empty() && asked.iter().all(|r| r.host == registry.a()),
        "podman's pull of {image} did not reach A as {}: {asked:?}",
        registry.a()
    );

    let blocked = podman_pull(&registry.blocked(), None);
    assert!(
        !blocked.status.success(),
        "podman pulled {}",
        registry.blocked()
    );
    let err = stderr(&blocked);
    assert!(
        err.contains("blocked") && err.contains("registries.conf"),
        "{err}"
    );

    let on_b = registry.on_b(&tag);
    let _pulled_b = Pulled::new(&on_b);
    let wrong = podman_pull(&on_b, Some(&registry.wrong_auth()));
    assert!(
        !wrong.status.success(),
        "podman pulled {on_b} with a wrong password"
    );
    // Podman 4.3 says "unauthorized: authentication required", 5.4 only the latter.
    assert!(
        stderr(&wrong).contains("authentication required"),
        "{}",
        stderr(&wrong)
    );
    let good = podman_pull(&on_b, Some(&registry.good_auth()));
    assert_ok(&format!("podman pull {on_b} with the password"), &good);
    assert!(image_exists(&on_b));
}
