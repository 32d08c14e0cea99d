//! `devaipod gc` on a real engine: what an `up` killed midway (SIGKILL) left is found by
//! its labels and its recorded secrets and removed, an unused image devaipod built is
//! removed, and a whole pod is untouched. gc acts on the whole store, so these tests
//! are `#[ignore]`d in the suite and run alone, one at a time, after it (the Justfile's
//! `test-rootful`).

use serde_json::Value;

use crate::BASE_CONFIG;
use crate::common::pod::{
    BASE_IMAGE, Paused, TestPod, devaipod, json_of, podman_ok, require_image, stderr,
};

/// `up` of `p` with DEVAIPOD_TEST_PAUSE_AT=`step`, killed (SIGKILL) once it says it
/// paused there.
fn kill_up_at(p: &TestPod, step: &str) {
    let (path, label) = (p.path(), p.label_arg());
    Paused::at(p.command(&p.up_args(&path, &label, &[])), step).kill();
}

#[test]
#[ignore = "acts on the whole store: run alone (just test-rootful runs it after the suite)"]
fn gc_removes_what_a_killed_up_left_and_keeps_a_whole_pod() {
    require_image(BASE_IMAGE);
    let whole = TestPod::new("gc-whole").config(BASE_CONFIG).up();
    let killed = TestPod::new("gc-killed").config(BASE_CONFIG).build();
    kill_up_at(&killed, "objects");
    // Its pod taken away by hand too: only labels (volumes) and the secrets `up`
    // recorded before making them (Podman 4.3 keeps no labels on secrets) are left.
    podman_ok(&["pod", "rm", "-f", &killed.pod()]);
    let left = killed.leftovers().expect("leftovers");
    assert!(
        !left.volumes.is_empty() && !left.secrets.is_empty(),
        "the killed up made its volumes and secrets: {left:?}"
    );

    // An image devaipod built that nothing uses.
    let built = format!("localhost/devaipod-build-{}:gc", killed.name());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM {BASE_IMAGE}\nLABEL devaipod.test.gc={}\n",
            killed.name()
        ),
    )
    .expect("Containerfile");
    podman_ok(&[
        "build",
        "-q",
        "-t",
        &built,
        &dir.path().display().to_string(),
    ]);

    // The dry run lists it all and removes nothing.
    let dry = json_of(&devaipod(&["gc", "--dry-run", "--json"]));
    let listed = |v: &Value, kind: &str, name: &str| {
        v["remove"]
            .as_array()
            .expect("remove")
            .iter()
            .any(|i| i["kind"] == kind && i["name"] == name)
    };
    assert!(listed(&dry, "workspace", killed.name()), "{dry}");
    assert!(listed(&dry, "image", &built), "{dry}");
    assert!(!listed(&dry, "workspace", whole.name()), "{dry}");
    assert_eq!(killed.leftovers().expect("leftovers"), left);

    let done = devaipod(&["gc", "--json"]);
    let out = json_of(&done);
    assert!(listed(&out, "workspace", killed.name()), "{out}");
    assert!(listed(&out, "image", &built), "{out}");
    killed.assert_nothing_left();
    let exists = crate::common::pod::podman(&["image", "exists", &built]);
    assert!(!exists.status.success(), "{built} is still there");

    // The whole pod is untouched and still answers; a second gc has nothing of it.
    let state = podman_ok(&["pod", "inspect", &whole.pod(), "--format", "{{.State}}"]);
    assert_eq!(state.trim(), "Running");
    let again = json_of(&devaipod(&["gc", "--dry-run", "--json"]));
    assert!(!listed(&again, "workspace", whole.name()), "{again}");
    assert!(!listed(&again, "workspace", killed.name()), "{again}");
    let del = devaipod(&["delete", whole.name()]);
    assert!(del.status.success(), "{}", stderr(&del));
}
