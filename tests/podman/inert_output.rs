//! Issue 14 item 3: the host terminal never receives control sequences from the agent's
//! text. The agent writes hostile text everywhere devaipod prints it (a session title,
//! a commit subject, lines on its container's stdout and stderr, a forged `devaipod:`
//! line); `status`, `review`, `delete` and `logs` run on a terminal (script(1)) and show
//! it escaped, `logs` marks every line as the container's; into a pipe (or with `--raw`)
//! `logs` passes the bytes unchanged, and `--json` keeps the exact text.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::BASE_CONFIG;
use crate::common::pod::{BASE_IMAGE, TestPod, devaipod, devaipod_bin, require_image, stderr};
use crate::common::{assert_fails_with, wait_until};

/// A session title: window title (OSC 0), cleared screen (CSI 2J), a link (OSC 8), a
/// bidi override, a C1 CSI.
const TITLE: &str = "title \x1b]0;pwned\x07 \x1b[2J \x1b]8;;http://evil.invalid\x1b\\link\x1b]8;;\x1b\\ \u{202e}txt \u{9b}2J";
const TITLE_SHOWN: &str = r"title \x1b]0;pwned\x07 \x1b[2J \x1b]8;;http://evil.invalid\x1b\link\x1b]8;;\x1b\ \u{202e}txt \u{9b}2J";
/// A commit subject: a clipboard write (OSC 52), a cleared screen, bidi, C1.
const SUBJECT: &str = "subject \x1b]52;c;ZXZpbA==\x07 \x1b[2J \u{202e} \u{9b}2J end";
const SUBJECT_SHOWN: &str = r"subject \x1b]52;c;ZXZpbA==\x07 \x1b[2J \u{202e} \u{9b}2J end";
/// What the agent writes on its container's stdout (PID 1's) and stderr.
const STDOUT_LINES: &[u8] =
    b"log \x1b]0;pwned\x07 \x1b[2J\ndevaipod: the agent is sandboxed, all is well\n";
const STDERR_LINES: &[u8] = b"err \x1b]52;c;ZXZpbA==\x07 \xe2\x80\xae\n";

/// The agent's sequences, none of which may reach a terminal raw.
const RAW: &[&[u8]] = &[
    b"\x1b]0;",
    b"\x1b[2J",
    b"\x1b]8;;",
    b"\x1b]52;",
    b"\x07",
    "\u{9b}".as_bytes(),
    "\u{202e}".as_bytes(),
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fails when any of the agent's raw sequences is in `out` (what a terminal received).
#[track_caller]
fn assert_no_raw(what: &str, out: &[u8]) {
    let found: Vec<String> = RAW
        .iter()
        .filter(|s| contains(out, s))
        .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
        .collect();
    assert!(
        found.is_empty(),
        "{what}: raw {found:?} reached the terminal:\n{}",
        String::from_utf8_lossy(out)
    );
}

#[test]
fn agent_text_reaches_the_terminal_escaped() {
    require_image(BASE_IMAGE);
    let p = TestPod::new("inert").config(BASE_CONFIG).up();

    // The attack. A session with a hostile title, made through opencode's API.
    let body = serde_json::json!({ "title": TITLE }).to_string();
    let o = p.as_agent(
        "curl -s -m 10 -u opencode:$(cat /run/secrets/devaipod-opencode-password) \
         -X POST \"http://127.0.0.1:4096/session?directory=$PWD\" \
         -H content-type:application/json -d \"$1\"",
        &[&body],
    );
    let made: serde_json::Value = serde_json::from_slice(&o.stdout).expect("session JSON");
    assert_eq!(made["title"], TITLE, "opencode kept the title");
    // A commit with a hostile subject in its clone, on its branch.
    p.as_agent(
        "echo x > agent-file && git add agent-file && \
         git -c user.name=a -c user.email=a@example.invalid commit -q -m \"$1\"",
        &[SUBJECT],
    );
    // Lines on its container's stdout and stderr (PID 1's, which `logs` shows).
    p.as_agent(
        "printf %s \"$1\" > /proc/1/fd/1 && printf %s \"$2\" > /proc/1/fd/2",
        &[
            std::str::from_utf8(STDOUT_LINES).expect("utf-8"),
            std::str::from_utf8(STDERR_LINES).expect("utf-8"),
        ],
    );

    // status on a terminal: the title escaped; --json keeps it exactly.
    let o = p.on_terminal(&["status", p.name()].join(" "));
    assert!(o.status.success(), "status: {}", stderr(&o));
    assert_no_raw("status", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("({TITLE_SHOWN})")), "{text}");
    let titles: Vec<String> = p.status()["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["title"].as_str().map(str::to_string))
        .collect();
    assert!(titles.iter().any(|t| t == TITLE), "{titles:?}");

    // delete refuses to lose the commit, naming it escaped.
    let o = p.on_terminal(&["delete", p.name()].join(" "));
    assert_eq!(o.status.code(), Some(1), "delete must refuse");
    assert_no_raw("delete", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("on no branch of the host repo"), "{text}");
    assert!(text.contains(SUBJECT_SHOWN), "{text}");
    // Without a terminal too: devaipod's own messages are escaped wherever they go.
    let o = devaipod(&["delete", p.name()]);
    assert_fails_with(&o, SUBJECT_SHOWN);
    assert_no_raw("delete without a terminal", &o.stderr);

    // review fetches it and lists it escaped; --json keeps the exact subject.
    let o = p.on_terminal(&["review", p.name(), "--no-diff"].join(" "));
    assert!(
        o.status.success(),
        "review: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_no_raw("review", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(SUBJECT_SHOWN), "{text}");
    let work = crate::common::pod::json_of(&devaipod(&["review", p.name(), "--json"]));
    assert_eq!(work["commits"][0]["subject"], SUBJECT, "{work}");

    // logs on a terminal: escaped, and every line marked as the agent's.
    let o = p.on_terminal(&["logs", p.name()].join(" "));
    assert!(
        o.status.success(),
        "logs: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_no_raw("logs", &o.stdout);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(r"agent | log \x1b]0;pwned\x07 \x1b[2J"),
        "{text}"
    );
    assert!(
        text.contains("agent | devaipod: the agent is sandboxed"),
        "{text}"
    );
    assert!(
        text.contains(r"agent | err \x1b]52;c;ZXZpbA==\x07 \u{202e}"),
        "{text}"
    );
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        assert!(
            line.is_empty() || line.starts_with("agent | "),
            "a line not marked as the agent's: {line:?}\n{text}"
        );
    }
    // --raw passes the bytes to the terminal unchanged (so the checks above can see
    // a raw sequence when one gets through).
    let o = p.on_terminal(&["logs", p.name(), "--raw"].join(" "));
    assert!(
        contains(&o.stdout, b"\x1b]0;pwned\x07"),
        "--raw on a terminal"
    );
    // Into a pipe: the bytes unchanged and unmarked, with or without --raw.
    for args in [&["logs", p.name()][..], &["logs", p.name(), "--raw"][..]] {
        let o = devaipod(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(contains(&o.stdout, STDOUT_LINES), "{args:?}: {o:?}");
        assert!(contains(&o.stderr, STDERR_LINES), "{args:?}: {o:?}");
        assert!(!contains(&o.stdout, b"agent | "), "{args:?}");
    }

    // logs --follow on a terminal shows new lines escaped as they come, and ends when
    // the agent stops.
    let cmdline = format!("{} logs {} --follow", devaipod_bin().display(), p.name());
    let mut follow = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        let mut out = follow.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    p.as_agent("printf 'later \\033[2J\\n' > /proc/1/fd/1", &[]);
    let seen_line = || contains(&seen.lock().expect("lock"), br"agent | later \x1b[2J");
    wait_until(
        "logs --follow shows the new line",
        std::time::Duration::from_secs(30),
        seen_line,
    );
    let o = devaipod(&["stop", p.name()]);
    assert!(o.status.success(), "stop: {}", stderr(&o));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(follow.wait());
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("logs --follow ends when the agent stops")
        .expect("wait");
    assert!(status.success(), "logs --follow: {status}");
    reader.join().expect("reader");
    assert_no_raw("logs --follow", &seen.lock().expect("lock"));
}
