//! service-gator: the token holder beside the agent. Scopes and their confirmation, the
//! token only in the gator (a 0400 file), the gator as hardened as the agent, and the
//! agent reaching its tools over MCP without ever seeing the token.

use serde_json::Value;

use crate::common::assert_fails_with;
use crate::common::pod::{
    BASE_IMAGE, GATOR_IMAGE, Rm, TestPod, devaipod, exec, image_store_lock, json_of, podman_ok,
    require_image, stderr,
};
use crate::common::wait_until;

#[test]
fn service_gator_holds_the_token_and_the_agent_reaches_its_tools() {
    require_image(BASE_IMAGE);
    require_image(GATOR_IMAGE);
    let sentinel = "ghp_gator_sentinel_5150";
    let p = TestPod::new("gator")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .user_config(&format!(
            "[trusted]\nsecrets = [\"GH_TOKEN\"]\n[service-gator]\nimage = \"{GATOR_IMAGE}\"\nscopes = [\"jira:PROJ\"]\n"
        ))
        .env("GH_TOKEN", sentinel)
        .build();
    let run = |extra: &[&str]| p.up(extra);
    // Write access on a wildcard needs the explicit confirmation; nothing is made.
    let o = run(&["--service-gator", "github:octo/*:write"]);
    assert_fails_with(&o, "--service-gator-allow-wildcard-write");
    p.assert_nothing_left();
    // A JIRA key service-gator would exit on is refused before anything is made.
    let o = run(&["--service-gator", "jira:MY_PROJ"]);
    assert_fails_with(&o, "project key must be alphanumeric (A-Z, 0-9)");
    p.assert_nothing_left();
    // The dry run shows the effective scopes, never the token.
    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft,push",
        "--dry-run",
        "--json",
    ]);
    let plan = json_of(&o);
    assert_eq!(
        plan["gator"]["scopes"],
        serde_json::json!([
            "jira:PROJ:read",
            "github:octo/hello:read,create-draft,push-new-branch"
        ])
    );
    // The image is in the store: its own entrypoint runs behind the relay.
    assert_eq!(plan["gator"]["entrypoint_from"], "the image's ENTRYPOINT");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(sentinel));

    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft,push",
        "--json",
    ]);
    json_of(&o);
    assert!(!stderr(&o).contains(sentinel));
    let gator = p.gator();
    let agent = p.agent();
    let report = || -> Value {
        let text = exec(&gator, None, "curl -s http://127.0.0.1:8765/report");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report ({e}): {text}"))
    };
    // The gator got exactly the requested scopes, every permission spelled out, and the
    // token as a 0400 file of its own user; its environment names no token value.
    let r = report();
    let args: Vec<&str> = r["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // service-gator listens behind devaipod-net's relay, which has the agent's port.
    assert_eq!(args[..3], ["--mcp-server", "127.0.0.1:8766", "--scope"]);
    let scope: Value = serde_json::from_str(args[3]).expect("scope JSON");
    assert_eq!(
        scope,
        serde_json::json!({
            "gh": {"repos": {"octo/hello": {"read": true, "create-draft": true, "pending-review": false, "push-new-branch": true, "write": false}}},
            "jira": {"projects": {"PROJ": {"read": true, "comment": false, "create": false, "write": false}}}
        })
    );
    let file = &r["secret_files"][0];
    assert_eq!(file["var"], "GH_TOKEN_FILE", "{r}");
    assert_eq!(file["mode"], "0400");
    assert_eq!(file["uid"], 65534);
    assert_eq!(file["readable"], true);
    assert_eq!(file["length"], sentinel.len());
    assert_eq!(r["uid"], 65534);
    assert!(!r.to_string().contains(sentinel));
    // Hardened like the agent: no capabilities, no-new-privileges (PID 1 as the kernel sees it).
    let status = exec(
        &gator,
        None,
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/1/status",
    );
    assert_eq!(
        status.lines().collect::<Vec<_>>(),
        [
            "CapEff:\t0000000000000000",
            "CapBnd:\t0000000000000000",
            "NoNewPrivs:\t1"
        ]
    );

    // The agent sees the gator's tools without setup: opencode connects to the MCP
    // endpoint named in its configuration.
    let folder = p.folder();
    let mcp = exec(
        &agent,
        None,
        &format!(
            "curl -s -u opencode:$(cat /run/secrets/devaipod-opencode-password) 'http://127.0.0.1:4096/mcp?directory={folder}'"
        ),
    );
    wait_until(
        "opencode listed the gator's tools",
        std::time::Duration::from_secs(30),
        || {
            let methods = report()["mcp_methods"].to_string();
            methods.contains("tools/list")
        },
    );
    assert!(mcp.contains("service-gator"), "{mcp}");
    // And the agent has the token nowhere: environment, files, configuration.
    let hits = exec(
        &agent,
        None,
        &format!(
            "cat /proc/1/environ | tr '\\0' '\\n' | grep -c {sentinel}; grep -rl {sentinel} /run /home/agent /tmp 2>/dev/null | wc -l; grep -c GH_TOKEN /run/secrets/devaipod-opencode-config.json; true"
        ),
    );
    assert_eq!(hits.lines().collect::<Vec<_>>(), ["0", "0", "0"]);
    let env = podman_ok(&["inspect", "-f", "{{json .Config.Env}}", &agent]);
    assert!(
        !env.contains(sentinel) && !env.contains("GH_TOKEN"),
        "{env}"
    );
    // status and logs know the gator.
    let s = json_of(&devaipod(&["status", p.name(), "--json"]));
    let roles = s["containers"].to_string();
    assert!(
        roles.contains("\"gator\"") && roles.contains("running"),
        "{s}"
    );
    // Its start-up shows in its logs (RUST_LOG=info; service-gator logs errors only
    // without it).
    let o = devaipod(&["logs", p.name(), "--container", "gator"]);
    let logs = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(
        logs.contains("MCP server listening address=127.0.0.1:8766")
            && logs.contains(" INFO devaipod-audit: listening address=127.0.0.1:8765 upstream=127.0.0.1:8766 server_pid="),
        "{logs}"
    );
    // The agent reaches the gator only through the relay: service-gator's own port
    // answers in the gator, never the agent (its rules allow the gator's uid on 8765).
    let own_port = "curl -s -o /dev/null -w '%{http_code}' --connect-timeout 3 http://127.0.0.1:8766/healthz; true";
    assert_eq!(exec(&gator, None, own_port), "200");
    assert_eq!(
        exec(&agent, None, own_port),
        "000",
        "the agent reached service-gator around the relay"
    );

    // The push tools read the agent's clone, mounted read-only in the gator at the
    // agent's path; over MCP as service-gator's transport speaks it (a session, the
    // answers as events, 406 without the Accept both types).
    let mounts = podman_ok(&["inspect", "-f", "{{json .Mounts}}", &gator]);
    let mounts: Value = serde_json::from_str(&mounts).expect("mounts JSON");
    let repo = mounts
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["Name"] == format!("devaipod-{}-agent-repo", p.name()))
        .unwrap_or_else(|| panic!("the agent's clone is not mounted in the gator: {mounts}"));
    assert_eq!(repo["Destination"], folder.as_str(), "{repo}");
    assert_eq!(repo["RW"], false, "{repo}");
    let mcp_session = format!(
        r#"set -e
u=http://127.0.0.1:8765/mcp
a='Accept: application/json, text/event-stream'
j='Content-Type: application/json'
echo "no-accept $(curl -s -o /dev/null -w '%{{http_code}}' -H "$j" -d '{{}}' $u)"
echo "no-session $(curl -s -o /dev/null -w '%{{http_code}}' -H "$a" -H "$j" -d '{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}' $u)"
sid=$(curl -s -D - -o /dev/null -H "$a" -H "$j" -d '{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}' $u | tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
echo "$sid"
curl -s -H "$a" -H "$j" -H "Mcp-Session-Id: $sid" -d '{{"jsonrpc":"2.0","method":"notifications/initialized"}}' $u
curl -s -H "$a" -H "$j" -H "Mcp-Session-Id: $sid" -d '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github_push","arguments":{{"repo_path":"{folder}","commit_sha":"{sha}","repo":"octo/hello","description":"t","base":"main","title":"t"}}}}}}' $u | sed -n 's/^data: //p' | grep .
curl -s -H "$a" -H "$j" -H "Mcp-Session-Id: $sid" -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"github_push","arguments":{{"repo_path":"{folder}","commit_sha":"{sha}","repo":"octo/other","description":"t"}}}}}}' $u | sed -n 's/^data: //p' | grep .
curl -s -H "$a" -H "$j" -H "Mcp-Session-Id: $sid" -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"status","arguments":{{}}}}}}' $u | sed -n 's/^data: //p' | grep .
curl -s -H "$a" -H "$j" -H "Mcp-Session-Id: $sid" -d '{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"github_api_tool","arguments":{{"endpoint":"repos/octo/hello/pulls"}}}}}}' $u | sed -n 's/^data: //p' | grep .
# The session's own stream (GET) passes through the relay as it comes: its priming
# event arrives while the stream stays open (curl gives up after 1 s).
curl -s -N --max-time 1 -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $sid" $u | grep -c '^retry: 3000' || true
echo "end $(curl -s -o /dev/null -w '%{{http_code}}' -X DELETE -H "Mcp-Session-Id: $sid" $u)"
"#,
        sha = "0".repeat(40)
    );
    let out = exec(&agent, None, &mcp_session);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["no-accept 406", "no-session 422"], "{out}");
    let sid: String = lines[2].chars().take(8).collect();
    assert_eq!(sid.len(), 8, "{out}");
    let answer: Value = serde_json::from_str(lines[3]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let refused: Value = serde_json::from_str(lines[4]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(refused["result"]["isError"], true, "{refused}");
    let read: Value = serde_json::from_str(lines[6]).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(read["result"]["isError"], false, "{read}");
    assert_eq!(lines[7..], ["1", "end 202"], "{out}");
    let push = &report()["pushes"][0];
    assert_eq!(push["repo_path"], folder.as_str(), "{push}");
    assert_eq!(push["git_dir"], true, "{push}");
    assert_eq!(
        push["writable"], false,
        "the gator cannot write the agent's clone: {push}"
    );
    assert!(
        push["head"]
            .as_str()
            .is_some_and(|h| h.starts_with("ref: refs/heads/")),
        "the gator reads the agent's repository: {push}"
    );
    // Its logs show the requests: service-gator's own lines (each write operation at
    // once, the reads counted every 5 s: a bounded wait for that line), and the
    // relay's, each request of the agent's and its outcome, the refusal with its
    // reason (service-gator logs no refusal).
    // service-gator's lines pass through the relay marked as its own.
    let want_push = format!(
        "service-gator |  INFO serve_inner: starting GitHub push operation operation=\"github_push\" repo=octo/hello commit={} branch_desc=t create_draft_pr=true use_fork=false",
        "0".repeat(40)
    );
    let want = [
        format!(
            r#" INFO devaipod-audit: mcp request session={sid} id=1 method="tools/call" tool="github_push" arguments={{"base":"main","commit_sha":"{sha}","description":"t","repo":"octo/hello","repo_path":"{folder}","title":"t"}}"#,
            sha = "0".repeat(40)
        ),
        format!(
            r#" INFO devaipod-audit: mcp result session={sid} id=1 method="tools/call" tool="github_push" outcome=ok ms="#
        ),
        format!(
            r#" WARN devaipod-audit: mcp result session={sid} id=2 method="tools/call" tool="github_push" outcome=refused ms="#
        ),
        r#" text="push-new-branch permission not granted for github:octo/other""#.to_string(),
        format!(
            r#" INFO devaipod-audit: mcp result session={sid} id=3 method="tools/call" tool="status" outcome=ok ms="#
        ),
        format!(
            r#" INFO devaipod-audit: mcp result session={sid} id=4 method="tools/call" tool="github_api_tool" outcome=ok ms="#
        ),
        format!(" INFO devaipod-audit: mcp stream opened session={sid}"),
        format!(" INFO devaipod-audit: mcp stream closed session={sid} ("),
        format!(" INFO devaipod-audit: mcp session ended session={sid} status=202"),
        // The real opencode's own session, through the relay.
        r#" method="tools/list" outcome=ok ms="#.to_string(),
    ];
    let mut logs = String::new();
    wait_until(
        "the gator's logs show the push, the read and the relay's lines",
        std::time::Duration::from_secs(20),
        || {
            let o = devaipod(&["logs", p.name(), "--container", "gator"]);
            logs = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
            logs.contains(&want_push)
                && logs.contains("service-gator |  INFO read operations in last interval count=1")
                && want.iter().all(|w| logs.contains(w.as_str()))
        },
    );
    assert!(
        !logs.contains(sentinel),
        "the gator logged its token: {logs}"
    );
}

#[test]
fn a_gator_that_dies_at_start_shows_its_last_lines_and_leaves_nothing() {
    require_image(GATOR_IMAGE);
    // A gator image whose server exits at once, as the real one does on a scope it
    // refuses: its message is on stderr, its exit code 1.
    let image = format!("localhost/dvpt-dying-gator:{}", std::process::id());
    let _rm = Rm::image(image.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM {GATOR_IMAGE}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo 'Error: dying-gator-sentinel: project key must be alphanumeric' >&2; exit 1\", \"sh\"]\n"
        ),
    )
    .expect("write the Containerfile");
    {
        let _images = image_store_lock();
        podman_ok(&[
            "build",
            "--quiet",
            "--pull=never",
            "-t",
            &image,
            &dir.path().display().to_string(),
        ]);
    }
    let p = TestPod::new("gatordies")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .build();
    let o = p.up(&[
        "--service-gator",
        "github:octo/hello",
        "--service-gator-image",
        &image,
    ]);
    assert!(!o.status.success(), "up with a dying gator succeeded");
    let said = stderr(&o);
    let gator = format!("devaipod-{}-gator", p.name());
    assert!(
        said.contains(&format!("{gator} has exited (exit code 1)"))
            && said.contains(&format!("--- last 20 lines of {gator} ---"))
            && said.contains("dying-gator-sentinel: project key must be alphanumeric"),
        "the error names the gator, its exit and its last lines: {said}"
    );
    p.assert_nothing_left();
}
