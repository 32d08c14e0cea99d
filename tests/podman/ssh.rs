//! Sessions in the workspace: `ssh` commands and interactive shells (terminal, Ctrl-C,
//! exit status, postAttachCommand), `exec` in the agent, `attach`.

use std::process::{Command, Stdio};

use crate::common::pod::{
    BASE_IMAGE, TestPod, devaipod, devaipod_bin, exec, require_image, stderr,
};
use crate::common::{assert_fails_with, wait_until};

#[test]
fn ssh_runs_commands_and_shells_as_the_remote_user() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("ssh")
        .config(
            r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
            "remoteEnv": {"SSH_REMOTE": "from-remote-env"},
            "postAttachCommand": "echo attached >> /tmp/attach-marker"}"#,
        )
        .up();
    let folder = p.folder();
    // A command: no terminal, as remoteUser, in the folder, with remoteEnv; its exit
    // code is devaipod's; stdin passes through.
    let o = devaipod(&[
        "ssh",
        p.name(),
        "--",
        "sh",
        "-c",
        "id -un; pwd; echo $SSH_REMOTE; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("dev\n{folder}\nfrom-remote-env\n")
    );
    let mut child = Command::new(devaipod_bin())
        .args(["ssh", p.name(), "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"piped through\n")
            .expect("write");
    }
    let o = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED THROUGH\n");
    // An interactive shell on a terminal (script(1) gives it one): the prompt is in
    // the folder, postAttachCommand ran, Ctrl-C reaches the shell's foreground command,
    // and the exit status comes back.
    let cmdline = format!("{} ssh {}", devaipod_bin().display(), p.name());
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&seen).contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!(
                    "no {want:?} from the session: {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    };
    let interrupted: std::time::Instant;
    {
        use std::io::Write;
        stdin
            .write_all(b"echo sleeping-$((2*3)); sleep 60; echo not-$((1+1))-interrupted\n")
            .expect("write");
        wait_for("sleeping-6");
        // Interrupt only once `sleep` really runs in the foreground (no race with its start).
        let ws = p.workspace();
        wait_until(
            "sleep 60 runs in the session",
            std::time::Duration::from_secs(30),
            || {
                exec(
                    &ws,
                    None,
                    "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep 60 ' ] && echo hit; done | wc -l",
                )
                .trim()
                    != "0"
            },
        );
        interrupted = std::time::Instant::now();
        stdin.write_all(b"\x03").expect("ctrl-c");
        stdin
            .write_all(b"echo marker-$((6*7)) in $PWD; exit 5\n")
            .expect("write");
        wait_for("marker-42");
    }
    drop(stdin);
    let status = child.wait().expect("script");
    reader.join().expect("reader");
    while let Ok(chunk) = rx.try_recv() {
        seen.extend(chunk);
    }
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(30),
        "Ctrl-C did not stop sleep"
    );
    let o = std::process::Output {
        status,
        stdout: seen,
        stderr: Vec::new(),
    };
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(5), "{text}");
    assert!(!text.contains("not-2-interrupted"), "{text}");
    assert!(
        text.contains(&format!("dev@{}:{folder}$", p.name())),
        "{text}"
    );
    assert!(text.contains(&format!("marker-42 in {folder}")), "{text}");
    let ws = p.workspace();
    assert_eq!(exec(&ws, None, "cat /tmp/attach-marker"), "attached\n");
    // exec reaches the agent (read-only inspection as its uid).
    let o = devaipod(&["exec", p.name(), "--container", "agent", "--", "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4096");
    // attach runs the `oc` shim on a terminal (here with --help, so it ends by itself);
    // without a terminal it says what to use instead.
    let o = devaipod(&["attach", p.name()]);
    assert_fails_with(&o, "needs a terminal");
    let cmdline = format!("{} attach {} -- --help", devaipod_bin().display(), p.name());
    let o = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("attach to a running opencode server"),
        "{text}"
    );
    assert_eq!(
        exec(&ws, None, "cat /tmp/attach-marker"),
        "attached\nattached\n"
    );
}
