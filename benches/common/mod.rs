//! What the benchmarks share: running commands, the bundled image, a repo like
//! examples/hello.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const IMAGE: &str = "localhost/devaipod-base:latest";

/// The release devaipod Cargo built beside the benchmark.
pub fn devaipod() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devaipod"))
}

/// Runs `cmd` (no stdin), which must succeed; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn podman(args: &[&str]) -> String {
    run(Command::new("podman").args(args))
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A repo like examples/hello in a temp dir.
pub fn make_repo() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("devaipod-bench-")
        .tempdir()
        .expect("tempdir");
    let p = dir.path();
    std::fs::create_dir(p.join(".devcontainer")).expect("mkdir");
    std::fs::write(
        p.join(".devcontainer/devcontainer.json"),
        format!(r#"{{"image": "{IMAGE}", "remoteUser": "dev"}}"#),
    )
    .expect("write");
    std::fs::write(p.join("hello.sh"), "#!/bin/sh\necho hello\n").expect("write");
    let git = |args: &[&str]| {
        run(Command::new("git")
            .arg("-C")
            .arg(p)
            .args(["-c", "user.name=b", "-c", "user.email=b@example.invalid"])
            .args(args))
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    dir
}
