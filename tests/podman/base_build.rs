//! The bundled image built without root (issue 21): `containers/base/build.sh
//! --containerfile` runs `podman build` on containers/base/Containerfile, whose base is
//! Debian's image by its usual name, docker.io/library/debian:bookworm-slim. The test
//! registry's drop-in points that name at a stand-in in registry A (a minbase bookworm
//! from tests/images/build-debian.sh), so the build pulls it as it would pull Debian's,
//! then downloads Debian's packages as any build does.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::pod::{devaipod_bin, podman, podman_ok, stderr, stdout};
use crate::common::registry::{Pulled, Registry};

/// Debian's image, as the Containerfile names it.
const DEBIAN: &str = "docker.io/library/debian:bookworm-slim";

/// build.sh beside the staged devaipod (with the Containerfile), else the checkout's.
fn build_script() -> PathBuf {
    let staged = devaipod_bin().with_file_name("build.sh");
    if staged.exists() && staged.with_file_name("Containerfile").exists() {
        return staged;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("containers/base/build.sh")
}

fn build(args: &[&str], tag: &str) -> Output {
    Command::new("bash")
        .arg(build_script())
        .args(args)
        .env("DEVAIPOD_BASE_TAG", tag)
        .output()
        .expect("bash runs build.sh")
}

fn dangling() -> usize {
    podman_ok(&["images", "-q", "--filter", "dangling=true"])
        .lines()
        .count()
}

#[test]
#[ignore = "downloads Debian's packages and opencode: the rootless leg runs it after the suite (just test-rootless)"]
fn the_bundled_image_builds_rootless_from_the_containerfile() {
    assert!(
        !nix::unistd::geteuid().is_root(),
        "this test proves the build without root: run it as the rootless test user (just test-rootless does)"
    );
    let registry = Registry::require();
    let tag = format!("localhost/dvpt-base-containerfile:{}", std::process::id());
    let _image = Pulled::new(tag.clone());
    // Pulled by the build: gone first, so that this build's pull is seen; removed after.
    let _ = podman(&["image", "rm", "-f", DEBIAN]);
    let _debian = Pulled::new(DEBIAN);
    let dangling_before = dangling();

    let key = build(&["--containerfile", "--key"], &tag);
    assert!(key.status.success(), "--key: {}", stderr(&key));
    let key = stdout(&key).trim().to_string();
    assert_eq!(key.len(), 16, "a 16-hex content key: {key:?}");

    registry.mark_log("containerfile-before");
    let seen = registry.requests_for("dvpt/debian").len();
    let o = build(&["--containerfile"], &tag);
    assert!(
        o.status.success(),
        "build.sh --containerfile failed: {}",
        stderr(&o)
    );
    let said = stderr(&o);
    assert!(
        said.contains(&format!("podman build on {DEBIAN}"))
            && said.contains(&format!("built {tag} ({key})")),
        "{said}"
    );
    registry.mark_log("containerfile-after");
    let pulls: Vec<_> = registry.requests_for("dvpt/debian")[seen..]
        .iter()
        .filter(|r| r.uri == "/v2/dvpt/debian/manifests/bookworm-slim" && r.status == 200)
        .cloned()
        .collect();
    assert!(
        pulls.iter().any(|r| r.host == registry.a()),
        "the build pulled {DEBIAN} through the drop-in's rewrite to {}: {pulls:?}",
        registry.a()
    );

    let label = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"io.devaipod.image-key\"}}",
        &tag,
    ]);
    assert_eq!(label.trim(), key, "the image carries its content key");
    let inside = podman_ok(&[
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "opencode --version; git --version; id -u dev; id -g dev; stat -c %a /home/dev; \
         cat /etc/devaipod-base-release; for t in catatonit curl ssh less ps bash; do command -v $t; done; \
         ls /var/lib/apt/lists | grep -v -x -e lock -e partial | wc -l",
    ]);
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(
        lines[0].trim(),
        crate::doctor::bundled_opencode_version(),
        "{inside}"
    );
    assert!(lines[1].starts_with("git version "), "{inside}");
    assert_eq!(
        &lines[2..5],
        ["1000", "1000", "755"],
        "the dev user: {inside}"
    );
    assert_eq!(
        lines[5],
        format!(
            "devaipod-base containerfile {key} opencode {}",
            crate::doctor::bundled_opencode_version()
        ),
        "{inside}"
    );
    assert_eq!(lines.len(), 13, "each package's command is there: {inside}");
    assert_eq!(
        lines[12], "0",
        "apt's lists are not kept in the image: {inside}"
    );

    // Unchanged input: nothing is built again, and no layer of the build stayed behind.
    let again = build(&["--containerfile"], &tag);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains(&format!(
            "is up to date ({key}, built from the Containerfile)"
        )),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        dangling(),
        dangling_before,
        "the build left dangling images"
    );
}
