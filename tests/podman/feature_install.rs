//! devcontainer Features (local ones) installed into a derived image by `up`: their
//! files in the workspace and the agent, in the configured order, with their options;
//! their containerEnv in the image; none of their runtime settings in the agent; the
//! image made once; a bad option stopping `up` with nothing left.

use crate::common::pod::{
    BASE_IMAGE, Rm, TestPod, image_store_lock, podman_ok, require_image, stderr,
};

/// A feature folder's files: its devcontainer-feature.json and an install.sh that
/// records its place in the order and what its options were.
fn feature(id: &str, meta_extra: &str, nonce: &str) -> [(String, String); 2] {
    [
        (
            format!(".devcontainer/{id}/devcontainer-feature.json"),
            format!(
                r#"{{"id": "{id}", "version": "1.0.0", "name": "Feature {id}",
                    "options": {{"greeting": {{"type": "string", "default": "hello-{id}", "enum": ["hello-{id}", "it's $HOME `x`"]}},
                                 "loud": {{"type": "boolean", "default": false}}}}
                    {meta_extra}}}"#
            ),
        ),
        (
            format!(".devcontainer/{id}/install.sh"),
            format!(
                "#!/bin/sh\nset -e\n# {nonce}\necho {id} >> /usr/local/share/feature-order\nprintf '%s|%s|%s|%s\\n' \"$GREETING\" \"$LOUD\" \"$_REMOTE_USER\" \"$(id -u)\" > /usr/local/share/feature-{id}\nprintf '#!/bin/sh\\necho {id}-entry >> /tmp/feature-entry\\n' > /usr/local/share/feature-{id}-entry.sh\nchmod +x /usr/local/share/feature-{id}-entry.sh\n"
            ),
        ),
    ]
}

#[test]
fn local_features_are_installed_in_order_once_and_stay_out_of_the_agent() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let b = TestPod::new("features");
    // The nonce keys this run's derived image apart from earlier runs'.
    let nonce = b.name().to_string();
    let a = feature(
        "a",
        r#", "containerEnv": {"FEATURE_A_HOME": "/opt/a", "PATH": "/opt/a/bin:${PATH}"}, "capAdd": ["SYS_PTRACE"],
            "mounts": [{"source": "dvpt-feature-${devcontainerId}", "target": "/feature-data", "type": "volume"}],
            "entrypoint": "/usr/local/share/feature-a-entry.sh",
            "postCreateCommand": "echo feature-a >> /tmp/lifecycle",
            "postStartCommand": "echo feature-a-start >> /tmp/lifecycle""#,
        &nonce,
    );
    let bfeat = feature(
        "b",
        r#", "installsAfter": ["./a"], "entrypoint": "/usr/local/share/feature-b-entry.sh""#,
        &nonce,
    );
    let config = format!(
        r#"{{"image": "{BASE_IMAGE}", "remoteUser": "dev", "postCreateCommand": "echo config >> /tmp/lifecycle",
            "features": {{"./b": {{"greeting": "it's $HOME `x`", "loud": true}}, "./a": {{}}}}}}"#
    );
    let mut files: Vec<(&str, &str)> = vec![(".devcontainer/devcontainer.json", &config)];
    for (p, c) in a.iter().chain(bfeat.iter()) {
        files.push((p, c));
    }
    let p = b.files(&files).build();

    // Feature a's capAdd needs the same consent as the config's own: without it, up
    // says which feature asks for what, and makes nothing (no pod, no image).
    let refused = p.up_fails(&[], "feature \"./a\" capAdd SYS_PTRACE");
    assert!(stderr(&refused).contains("--trust"), "{}", stderr(&refused));

    // The dry run shows the install order and the image to build, and makes nothing.
    let dry = p.dry_run(&["--trust"]);
    assert_eq!(
        dry["features"]["order"],
        serde_json::json!(["./a", "./b"]),
        "{dry}"
    );
    assert_eq!(dry["features"]["state"], "will_build", "{dry}");
    let planned = dry["features"]["image"]
        .as_str()
        .expect("image")
        .to_string();
    // What each adds, and what needs consent.
    let each = &dry["features"]["each"];
    assert_eq!(each[0]["id"], "./a", "{dry}");
    assert_eq!(
        each[0]["needs_consent"],
        serde_json::json!(["capAdd SYS_PTRACE"]),
        "{dry}"
    );
    assert_eq!(
        each[0]["lifecycle"],
        serde_json::json!(["postCreateCommand", "postStartCommand"]),
        "{dry}"
    );
    assert_eq!(each[1]["entrypoint"], "/usr/local/share/feature-b-entry.sh");
    // The feature's volume, named for this pod (the plan substitutes ${devcontainerId}):
    // a name the test removes itself, after the pod.
    let volume = feature_volume(&dry);
    assert!(
        volume.starts_with("dvpt-feature-") && volume.len() == 13 + 52,
        "{volume}"
    );
    let _volume = Rm::volume(volume.clone());

    let first = p.up(&["--json", "--trust"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let err = stderr(&first);
    assert!(err.contains("installing features ./a, ./b"), "{err}");
    let image = podman_ok(&["inspect", &p.workspace(), "--format", "{{.ImageName}}"]);
    let image = image.trim().to_string();
    let _rm = Rm::image(image.clone());
    assert!(image.starts_with("localhost/devaipod-features-"), "{image}");
    assert_eq!(image, planned);
    let again = crate::common::pod::json_of(&p.up(&["--dry-run", "--json", "--trust"]));
    assert_eq!(again["features"]["state"], "present", "{again}");

    // Installed in order (./b installs after ./a), as root, with their options given
    // literally (a value with a quote, $ and backticks) and the remote user.
    let seen = p.in_workspace(
        Some("dev"),
        "cat /usr/local/share/feature-order /usr/local/share/feature-a /usr/local/share/feature-b; printenv FEATURE_A_HOME; echo $PATH",
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "a",
            "b",
            "hello-a|false|dev|0",
            "it's $HOME `x`|true|dev|0",
            "/opt/a"
        ],
        "{seen}"
    );
    assert!(lines[5].starts_with("/opt/a/bin:"), "{seen}");

    // The features' runtime settings, in the workspace: the entrypoints ran in order at
    // its start, their lifecycle commands before the config's, the volume mounted.
    assert_eq!(
        p.in_workspace(Some("dev"), "cat /tmp/feature-entry /tmp/lifecycle"),
        "a-entry\nb-entry\nfeature-a\nconfig\nfeature-a-start\n"
    );
    let mounted = podman_ok(&[
        "inspect",
        &p.workspace(),
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/feature-data\"}}{{.Name}}{{end}}{{end}}",
    ]);
    assert_eq!(mounted.trim(), volume);

    // The agent runs the same image: the features' files and environment, but none of
    // their runtime settings (no capability).
    let agent = p.in_agent(
        "cat /usr/local/share/feature-order; printenv FEATURE_A_HOME; grep CapEff /proc/1/status; ls /tmp/feature-entry /tmp/lifecycle /feature-data 2>&1 | wc -l; cat /tmp/feature-entry 2>/dev/null; true",
    );
    // (three lines of ls errors: no entrypoint ran, no lifecycle command, no mount)
    assert_eq!(
        agent.lines().collect::<Vec<_>>(),
        ["a", "b", "/opt/a", "CapEff:\t0000000000000000", "3"],
        "{agent}"
    );
    // The workspace got the capability, by consent.
    let ws_caps = p.in_workspace(None, "grep CapEff /proc/1/status");
    let eff = u64::from_str_radix(ws_caps.trim().trim_start_matches("CapEff:").trim(), 16)
        .expect("CapEff");
    assert_ne!(
        eff & (1 << 19),
        0,
        "no CAP_SYS_PTRACE in the workspace: {ws_caps}"
    );

    // A second up of the same repo builds nothing: the same image.
    let id = podman_ok(&["image", "inspect", &image, "--format", "{{.Id}}"]);
    let del = crate::common::pod::devaipod(&["delete", &p.pod()]);
    assert!(del.status.success(), "{}", stderr(&del));
    let second = p.up(&["--json", "--trust"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        !stderr(&second).contains("installing features"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        podman_ok(&["image", "inspect", &image, "--format", "{{.Id}}"]),
        id
    );
    assert_eq!(
        podman_ok(&["inspect", &p.workspace(), "--format", "{{.ImageName}}"]).trim(),
        image
    );
}

/// The name of the volume the dry run mounts at /feature-data in the workspace.
fn feature_volume(dry: &serde_json::Value) -> String {
    let containers = dry["containers"].as_array().expect("containers");
    containers
        .iter()
        .flat_map(|c| c["mounts"].as_array().into_iter().flatten())
        .find(|m| m["target"] == "/feature-data")
        .and_then(|m| m["source"].as_str())
        .unwrap_or_else(|| panic!("no mount at /feature-data in the plan: {dry}"))
        .to_string()
}

#[test]
fn a_feature_option_outside_its_enum_stops_up_and_leaves_nothing() {
    require_image(BASE_IMAGE);
    let b = TestPod::new("features-bad");
    let nonce = b.name().to_string();
    let a = feature("a", "", &nonce);
    let config = format!(
        r#"{{"image": "{BASE_IMAGE}", "features": {{"./a": {{"greeting": "not-allowed"}}}}}}"#
    );
    let mut files: Vec<(&str, &str)> = vec![(".devcontainer/devcontainer.json", &config)];
    for (p, c) in a.iter() {
        files.push((p, c));
    }
    let p = b.files(&files).build();
    let o = p.up_fails(&[], "not-allowed");
    let err = stderr(&o);
    assert!(err.contains("./a") && err.contains("greeting"), "{err}");
}

#[test]
fn an_oci_feature_from_a_registry_is_installed_and_a_missing_one_stops_up() {
    use crate::common::features::{LAYER, feature_tar, push_to_a};
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let r = crate::common::registry::Registry::require();
    let b = TestPod::new("features-oci");
    // A repository of this run's own: its digest, and so the derived image, are new.
    let repo = format!("dvpt/features/{}", b.name());
    let install =
        format!("#!/bin/sh\nset -e\necho \"$WHO from {repo}\" > /usr/local/share/feature-greet\n");
    let tar = feature_tar(&[
        (
            "devcontainer-feature.json",
            r#"{"id": "greet", "version": "1.0.0", "options": {"who": {"type": "string", "default": "nobody"}}}"#,
        ),
        ("install.sh", &install),
    ]);
    push_to_a(&repo, "1", &tar, LAYER);
    let reference = format!("{}/{repo}:1", r.a());
    let config = format!(
        r#"{{"image": "{BASE_IMAGE}", "remoteUser": "dev", "features": {{"{reference}": {{"who": "oci-user"}}}}}}"#
    );
    let p = b
        .files(&[(".devcontainer/devcontainer.json", &config)])
        .build();
    let o = p.up(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let image = podman_ok(&["inspect", &p.workspace(), "--format", "{{.ImageName}}"]);
    let _rm = Rm::image(image.trim().to_string());
    assert_eq!(
        p.in_workspace(Some("dev"), "cat /usr/local/share/feature-greet"),
        format!("oci-user from {repo}\n")
    );
    drop(p);

    // A tag the registry does not have: up says which feature and why, and makes nothing.
    let b = TestPod::new("features-missing");
    let config = format!(
        r#"{{"image": "{BASE_IMAGE}", "features": {{"{}/{repo}:2": {{}}}}}}"#,
        r.a()
    );
    let p = b
        .files(&[(".devcontainer/devcontainer.json", &config)])
        .build();
    let o = p.up_fails(&[], "fetching the feature");
    assert!(stderr(&o).contains(&format!("{repo}:2")), "{}", stderr(&o));
}
