//! devaipod reads devcontainer.json exactly like the reference Dev Containers CLI:
//! `devaipod config --json` against `devcontainer read-configuration
//! [--include-merged-configuration]` on every config of tests/devcontainer-corpus, key by
//! key (configFilePath aside). Needs the reference CLI (`just setup-reference` installs
//! it into target/reference-cli) and the test images (`just test-images`); fails with
//! instructions without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::reference_cli;

/// Corpus entries the reference cannot merge on this offline machine (it needs the
/// network for OCI features and a compose CLI for Compose); their `configuration` and
/// `workspace` are still compared.
const MERGE_NEEDS_NETWORK_OR_COMPOSE: &[&str] =
    &["24-features", "37-compose", "59-compose-no-folder"];

fn run(cmd: &mut Command) -> Output {
    cmd.env("DEVAIPOD_REF_A", "alpha")
        .env_remove("DEVAIPOD_REF_UNSET")
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn json(o: &Output, what: &str) -> Value {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

fn without_path(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("configFilePath");
    }
    v
}

fn images_present() {
    for image in [
        "localhost/devaipod-test-broken:latest",
        "localhost/devaipod-test-meta:latest",
    ] {
        let ok = Command::new("podman")
            .args(["image", "exists", image])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "image {image} is missing: run `just test-images`");
    }
}

#[test]
fn devaipod_reads_every_config_like_the_reference_cli() {
    let cli = reference_cli();
    images_present();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/devcontainer-corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 40,
        "the corpus has only {} configs",
        dirs.len()
    );

    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(dirs.len().div_ceil(4))
            .map(|chunk| {
                let cli = &cli;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .flat_map(|d| compare(cli, d))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The differences between the two readings of one corpus entry.
fn compare(cli: &Path, dir: &Path) -> Vec<String> {
    let name = dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let ws = dir.to_string_lossy().into_owned();
    let reference = |merged: bool| {
        let mut cmd = Command::new(cli);
        cmd.args([
            "read-configuration",
            "--workspace-folder",
            &ws,
            "--docker-path",
            "podman",
        ]);
        if merged {
            cmd.arg("--include-merged-configuration");
        }
        run(&mut cmd)
    };
    let ours = json(
        &run(Command::new(env!("CARGO_BIN_EXE_devaipod")).args(["config", &ws, "--json"])),
        &format!("devaipod config {name}"),
    );
    let mut diffs = Vec::new();
    let plain = json(&reference(false), &format!("reference {name}"));
    if without_path(&plain["configuration"]) != without_path(&ours["configuration"]) {
        diffs.push(format!(
            "{name}: configuration\n  reference {}\n  devaipod  {}",
            without_path(&plain["configuration"]),
            without_path(&ours["configuration"])
        ));
    }
    if plain["workspace"] != ours["workspace"] {
        diffs.push(format!(
            "{name}: workspace {} vs {}",
            plain["workspace"], ours["workspace"]
        ));
    }
    let merged = reference(true);
    if MERGE_NEEDS_NETWORK_OR_COMPOSE.contains(&name.as_str()) {
        if merged.status.success() {
            diffs.push(format!(
                "{name}: the reference merged it after all; compare it"
            ));
        }
        if ours["mergedConfigurationNote"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            diffs.push(format!(
                "{name}: devaipod should say what it could not merge"
            ));
        }
        return diffs;
    }
    let merged = json(
        &merged,
        &format!("reference --include-merged-configuration {name}"),
    );
    let (r, o) = (
        without_path(&merged["mergedConfiguration"]),
        without_path(&ours["mergedConfiguration"]),
    );
    if r != o {
        let keys: std::collections::BTreeSet<&String> = r
            .as_object()
            .into_iter()
            .chain(o.as_object())
            .flat_map(|m| m.keys())
            .collect();
        for k in keys {
            if r.get(k) != o.get(k) {
                diffs.push(format!(
                    "{name}: mergedConfiguration.{k}: reference {:?} devaipod {:?}",
                    r.get(k),
                    o.get(k)
                ));
            }
        }
    }
    diffs
}
