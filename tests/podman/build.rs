//! Images devaipod builds: a Dockerfile config built once and shared (and `--rebuild`),
//! a failing build, and images without opencode getting the bundled one.

use crate::common::pod::{
    BASE_IMAGE, BROKEN_IMAGE, Rm, TestPod, devaipod, image_store_lock, json_of, podman_ok,
    require_image, stderr,
};

#[test]
fn a_dockerfile_config_is_built_once_and_shared() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let b = TestPod::new("build");
    // A nonce in the Dockerfile keys this run's image apart from earlier runs'.
    let nonce = b.name().to_string();
    let p = b
        .files(&[
            (
                ".devcontainer/devcontainer.json",
                r#"{"build": {"dockerfile": "Dockerfile", "context": "..", "target": "dev",
                    "args": {"GREETING": "hello-from-arg"}},
                    "remoteUser": "dev"}"#,
            ),
            (
                ".devcontainer/Dockerfile",
                &format!(
                    "FROM {BASE_IMAGE} AS base\nLABEL nonce={nonce}\nARG GREETING\nRUN echo \"$GREETING\" > /opt/greeting\nCOPY . /opt/ctx\nFROM base AS dev\nRUN echo dev > /opt/stage\nFROM base AS other\nRUN echo other > /opt/stage\n"
                ),
            ),
            (".gitignore", "ignored/\n"),
            ("ignored/big.bin", "not for the context\n"),
        ])
        .build();
    let path = p.path();
    let plan = json_of(&devaipod(&["up", &path, "--dry-run", "--json"]));
    let tag = plan["image"]["ref"].as_str().expect("ref").to_string();
    let _rm = Rm::image(tag.clone());
    assert!(tag.starts_with("localhost/devaipod-build-"), "{tag}");
    assert_eq!(plan["image"]["state"], "will_build", "{plan}");
    assert_eq!(plan["image"]["build"]["arg_names"][0], "GREETING");

    let first = p.up(&["--json"]);
    json_of(&first);
    assert!(stderr(&first).contains("build: "), "{}", stderr(&first));
    let ws = p.workspace();
    let folder = p.folder();
    let seen = p.in_workspace(
        Some("dev"),
        "cat /opt/greeting /opt/stage; ls /opt/ctx/ignored 2>/dev/null | wc -l; cat /opt/ctx/.devcontainer/Dockerfile | grep -c nonce",
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["hello-from-arg", "dev", "0", "1"]
    );
    let who = podman_ok(&[
        "exec",
        "-w",
        &folder,
        "--user",
        "dev",
        &ws,
        "sh",
        "-c",
        "id -un; pwd",
    ]);
    assert_eq!(who.lines().collect::<Vec<_>>(), ["dev", folder.as_str()]);
    // The agent runs the same built image.
    let image_of = |c: &str| podman_ok(&["inspect", "-f", "{{.Image}}", c]);
    assert_eq!(image_of(&ws), image_of(&p.agent()));

    // A second pod of the same repo reuses the image: no build.
    let p2 = TestPod::new("build2").repo_of(&p).build();
    let second = p2.up(&["--json"]);
    json_of(&second);
    assert!(!stderr(&second).contains("build: "), "{}", stderr(&second));
    assert_eq!(image_of(&ws), image_of(&p2.workspace()));
    p2.delete(&[]);

    // --rebuild builds again (without the layer cache).
    let rebuilt = p2.up(&["--json", "--rebuild"]);
    json_of(&rebuilt);
    assert!(
        stderr(&rebuilt).contains("RUN echo \"$GREETING\""),
        "{}",
        stderr(&rebuilt)
    );
}

#[test]
fn a_failing_build_names_the_step_and_leaves_nothing() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    let b = TestPod::new("buildfail");
    let dockerfile = format!("FROM {BASE_IMAGE}\nRUN echo {} && exit 3\n", b.name());
    let p = b
        .dockerfile(r#"{"build": {"dockerfile": "Dockerfile"}}"#, &dockerfile)
        .build();
    let out = p.up_fails(&[], "failed: building at STEP \"RUN echo");
    assert!(stderr(&out).contains("exit status 3"), "{}", stderr(&out));
}

/// A pod whose Dockerfile derives from `base` and removes its opencode.
fn pod_without_opencode(test: &str, base: &str, rm: &str) -> TestPod {
    let b = TestPod::new(test);
    let dockerfile = format!(
        "FROM {base}\nLABEL nonce={}\nRUN {rm} /usr/local/bin/opencode\n",
        b.name()
    );
    b.dockerfile(r#"{"build": {"dockerfile": "Dockerfile"}}"#, &dockerfile)
        .build()
}

/// The image a `--dry-run` of `p`'s repo would build, removed when dropped.
fn planned_image(p: &TestPod) -> Rm {
    let plan = json_of(&devaipod(&["up", &p.path(), "--dry-run", "--json"]));
    Rm::image(plan["image"]["ref"].as_str().expect("ref"))
}

#[test]
fn images_without_opencode_get_the_bundled_one_read_only() {
    let _images = image_store_lock();
    require_image(BASE_IMAGE);
    require_image(BROKEN_IMAGE);
    let p = pod_without_opencode("bundled", BASE_IMAGE, "rm");
    let _rm = planned_image(&p);
    p.up_json(&["--json"]);
    let agent = p.agent();
    for c in [&p.workspace(), &agent] {
        let seen = crate::common::pod::exec(
            c,
            None,
            "command -v opencode || echo none; test -x /opt/devaipod/bundled/usr/local/bin/opencode && echo bundled; touch /opt/devaipod/bundled/usr/local/bin/x 2>/dev/null || echo read-only",
        );
        assert_eq!(
            seen.lines().collect::<Vec<_>>(),
            ["none", "bundled", "read-only"],
            "{c}"
        );
    }
    // The agent that answered `up` is the bundled binary.
    let pid = podman_ok(&["inspect", "-f", "{{.State.Pid}}", &agent]);
    let tree = podman_ok(&["top", &agent, "args"]);
    assert!(
        tree.contains("/opt/devaipod/bundled/usr/local/bin/opencode serve"),
        "pid {pid}: {tree}"
    );

    // An image that is not glibc-based cannot run it: a clear error, nothing left.
    let p2 = pod_without_opencode("bundled-musl", BROKEN_IMAGE, "busybox rm");
    let _rm2 = planned_image(&p2);
    p2.up_fails(
        &[],
        "is not glibc-based, so the bundled opencode cannot run in it",
    );
}
