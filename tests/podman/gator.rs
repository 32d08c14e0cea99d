//! service-gator: the token holder beside the agent. Scopes and their confirmation, the
//! token only in the gator (a 0400 file), the gator as hardened as the agent, and the
//! agent reaching its tools over MCP without ever seeing the token.

use serde_json::Value;

use crate::common::assert_fails_with;
use crate::common::pod::{
    BASE_IMAGE, GATOR_IMAGE, TestPod, devaipod, exec, json_of, podman_ok, require_image, stderr,
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
    // The dry run shows the effective scopes, never the token.
    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft",
        "--dry-run",
        "--json",
    ]);
    let plan = json_of(&o);
    assert_eq!(
        plan["gator"]["scopes"],
        serde_json::json!(["jira:PROJ:read", "github:octo/hello:read,create-draft"])
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains(sentinel));

    let o = run(&[
        "--service-gator",
        "github:octo/hello:create-draft",
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
    assert_eq!(args[..3], ["--mcp-server", "127.0.0.1:8765", "--scope"]);
    let scope: Value = serde_json::from_str(args[3]).expect("scope JSON");
    assert_eq!(
        scope,
        serde_json::json!({
            "gh": {"repos": {"octo/hello": {"read": true, "create-draft": true, "pending-review": false, "push-new-branch": false, "write": false}}},
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
    let o = devaipod(&["logs", p.name(), "--container", "gator"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("fake-gator listening"),
        "{}",
        stderr(&o)
    );
}
