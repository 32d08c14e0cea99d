//! The agent's network (issue 16), against the offline fake internet of
//! tests/net/fake-internet.sh (`just fake-internet`): the agent reaches names on its
//! allowlist through the proxy and nothing else, not even the workspace's loopback
//! listeners; the workspace keeps its normal access; `allow` and `deny` change a running
//! pod and survive `stop`/`start`; the rules hold when Podman, not devaipod, starts the
//! pod.

use std::path::PathBuf;

use crate::common::inet::{self, FakeInternet};
use crate::common::pod::{BASE_IMAGE, TestPod, devaipod, exec, json_of, podman_ok, require_image};

/// tests/fake-llm's std-only HTTP server (`fake-origin --http ADDR`), staged beside the
/// fake LLM by `just _stage`.
fn fake_origin() -> PathBuf {
    let llm = std::env::var_os("DEVAIPOD_FAKE_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fake-llm/release/fake-llm")
        });
    let p = llm.with_file_name("fake-origin");
    assert!(
        p.is_file(),
        "{} is missing: `just _stage` builds and stages it",
        p.display()
    );
    p
}

/// `sh -c SCRIPT` in `container` as its user; its exit code and output (stdout+stderr).
fn try_in(container: &str, script: &str) -> (i32, String) {
    let o = crate::common::pod::podman(&["exec", container, "sh", "-c", script]);
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

/// A TCP connection from `container` to ADDR:PORT, bypassing any proxy: `Ok` with the
/// HTTP answer's body, `Err` with why it failed. curl's own timeout bounds a silent drop.
fn direct(container: &str, url: &str) -> Result<String, String> {
    let (code, out) = try_in(
        container,
        &format!("curl -sS --noproxy '*' --max-time 5 -g '{url}'"),
    );
    if code == 0 { Ok(out) } else { Err(out) }
}

/// Through the agent's proxy (its HTTP(S)_PROXY): the body, or curl's error and the
/// proxy's refusal text.
fn proxied(container: &str, url: &str) -> Result<String, String> {
    let (code, out) = try_in(
        container,
        &format!("curl -sS -k --fail-with-body --max-time 10 '{url}'"),
    );
    if code == 0 { Ok(out) } else { Err(out) }
}

/// The default route's gateway in a /proc/net/route text (little-endian hex).
fn default_gateway(route: &str) -> String {
    let hex = route
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"00000000"))
        .and_then(|f| f.get(2).map(|g| g.to_string()))
        .unwrap_or_else(|| panic!("no default route in {route}"));
    let n = u32::from_str_radix(&hex, 16).expect("hex gateway");
    std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
}

#[track_caller]
fn assert_blocked(what: &str, r: Result<String, String>) {
    if let Ok(body) = r {
        panic!("{what}: expected to be blocked, but it answered: {body}");
    }
}

const CONFIG: &str = r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev",
  "postStartCommand": "nohup .devcontainer/fake-origin --http 127.0.0.1:18081 > /tmp/origin.log 2>&1 < /dev/null &"}"#;

#[test]
fn the_agent_reaches_only_its_allowlist_through_the_proxy() {
    require_image(BASE_IMAGE);
    let net = FakeInternet::require();
    let origin = std::fs::read(fake_origin()).expect("read fake-origin");
    let mut b = TestPod::new("net")
        .config(CONFIG)
        .executable(".devcontainer/fake-origin", origin)
        .user_config(&format!(
            "[agent]\nnetwork = \"allowlist\"\nallow = [\"{}\", \"{}:{}\"]\n",
            inet::ALLOWED,
            inet::HOSTSIDE,
            inet::HOST_SERVICE_PORT
        ));
    for (k, v) in net.devaipod_env() {
        b = b.env(k, v);
    }
    let p = b.up();
    let (agent, ws) = (p.agent(), p.workspace());
    let allowed = format!("http://{}/", inet::ALLOWED_ADDR);

    // The workspace keeps its normal access: the fake internet, its own listener.
    assert_eq!(
        direct(&ws, &allowed).expect("workspace to the internet"),
        inet::origin_body(inet::ALLOWED_ADDR, inet::ALLOWED_ADDR)
    );
    crate::common::wait_until(
        "the workspace's listener answers",
        std::time::Duration::from_secs(20),
        || direct(&ws, "http://127.0.0.1:18081/").is_ok(),
    );

    // Direct connections from the agent: none leaves, whatever the address.
    assert_blocked("agent direct to an allowed IP", direct(&agent, &allowed));
    assert_blocked(
        "agent direct to another IP",
        direct(&agent, &format!("http://{}/", inet::OTHER_ADDR)),
    );
    assert_blocked(
        "agent direct to a host service",
        direct(
            &agent,
            &format!("http://{}:{}/", inet::HOST_ADDR, inet::HOST_SERVICE_PORT),
        ),
    );
    let gateway = default_gateway(&exec(&agent, None, "cat /proc/net/route"));
    assert_blocked(
        "agent direct to the gateway",
        direct(
            &agent,
            &format!("http://{gateway}:{}/", inet::HOST_SERVICE_PORT),
        ),
    );
    assert_blocked("agent over IPv6", direct(&agent, "http://[2001:db8::10]/"));
    // The workspace's loopback listener answers the workspace, never the agent.
    assert_blocked(
        "agent to the workspace's loopback listener",
        direct(&agent, "http://127.0.0.1:18081/"),
    );
    // DNS: the fake internet's resolver answers the workspace, not the agent.
    let query = format!(
        "exec 3<>/dev/udp/{}/{}; printf '\\022\\064\\001\\000\\000\\001\\000\\000\\000\\000\\000\\000\\001a\\004test\\000\\000\\001\\000\\001' >&3 && timeout 3 head -c 2 <&3 | od -An -tx1",
        inet::DNS_ADDR,
        inet::DNS_PORT
    );
    let (code, out) = try_in(&ws, &format!("bash -c \"{query}\""));
    assert_eq!(
        (code, out.trim()),
        (0, "12 34"),
        "the workspace's DNS answer"
    );
    let (code, out) = try_in(&agent, &format!("bash -c \"{query}\""));
    assert!(
        code != 0 || out.trim().is_empty(),
        "the agent got a DNS answer: {out}"
    );

    // Its own listener, on any port, still answers it.
    let dir = p.folder();
    exec(
        &agent,
        None,
        &format!(
            "cd {dir} && nohup .devcontainer/fake-origin --http 127.0.0.1:18082 > /tmp/own.log 2>&1 < /dev/null &"
        ),
    );
    crate::common::wait_until(
        "the agent's own listener answers it",
        std::time::Duration::from_secs(20),
        || direct(&agent, "http://127.0.0.1:18082/").is_ok(),
    );
    // ... but nobody else does: only its opencode port takes others' connections (a
    // listener of the agent's could otherwise pose as a workspace service), and that
    // one answers the workspace as `oc` needs.
    assert_blocked(
        "the workspace to the agent's own listener",
        direct(&ws, "http://127.0.0.1:18082/"),
    );
    let (code, out) = try_in(
        &ws,
        "curl -sS --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' -u opencode:$(cat /run/secrets/devaipod-opencode-password) http://127.0.0.1:4096/global/health",
    );
    assert_eq!((code, out.as_str()), (0, "200"), "oc's route to the agent");

    // Through the proxy: the allowlist, and only names.
    assert_eq!(
        proxied(&agent, &format!("http://{}/", inet::ALLOWED))
            .expect("plain HTTP to an allowed name"),
        inet::origin_body(inet::ALLOWED_ADDR, inet::ALLOWED)
    );
    assert_eq!(
        proxied(&agent, &format!("https://{}/", inet::ALLOWED))
            .expect("CONNECT to an allowed name"),
        inet::origin_body(inet::ALLOWED_ADDR, inet::ALLOWED)
    );
    for (what, url) in [
        ("another name", format!("https://{}/", inet::OTHER)),
        (
            "another name, plain HTTP",
            format!("http://{}/", inet::OTHER),
        ),
        (
            "a subdomain not listed",
            format!("https://{}/", inet::ALLOWED_SUB),
        ),
        ("an IP literal", format!("https://{}/", inet::ALLOWED_ADDR)),
        ("a decimal IP literal", "http://3325256714/".to_string()),
        ("a private address", format!("https://{}/", inet::PRIVATE)),
        ("loopback", format!("https://{}/", inet::LOOP)),
    ] {
        assert_blocked(&format!("proxy: {what}"), proxied(&agent, &url));
    }
    // The host's own addresses: refused when the fake internet's host side is an
    // address of the machine devaipod runs on (the 4.3 legs). Under the nested Podman 5
    // it is not (devaipod's host is the outer container), so there the same name must
    // answer: what refused it elsewhere was its being the host's, nothing else.
    let hostside = proxied(
        &agent,
        &format!("http://{}:{}/", inet::HOSTSIDE, inet::HOST_SERVICE_PORT),
    );
    if std::net::TcpListener::bind((inet::HOST_ADDR, 0)).is_ok() {
        assert_blocked("proxy: the host's own address", hostside);
    } else {
        assert!(
            hostside.is_ok(),
            "{} is not this host's here, yet refused: {hostside:?}",
            inet::HOST_ADDR
        );
    }
    let refusal = proxied(&agent, &format!("http://{}/", inet::OTHER)).expect_err("refused");
    assert!(refusal.contains("devaipod allow"), "{refusal}");

    // Each decision is in the proxy's log (names, never headers).
    let logs =
        String::from_utf8_lossy(&devaipod(&["logs", p.name(), "--container", "proxy"]).stdout)
            .into_owned();
    assert!(
        logs.contains(inet::OTHER) && logs.contains("refuse"),
        "{logs}"
    );
    assert!(
        logs.contains(inet::ALLOWED) && logs.contains("allow"),
        "{logs}"
    );
    let s = p.status();
    assert_eq!(s["network"]["mode"], "allowlist", "{s}");
    assert!(
        s["network"]["proxy"]["refused"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );

    // `allow` opens a name on the running pod, `deny` closes it; both survive stop/start.
    let other = format!("http://{}/", inet::OTHER);
    let o = devaipod(&["allow", p.name(), inet::OTHER, "--json"]);
    let list = json_of(&o);
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|n| n == inet::OTHER)),
        "{list}"
    );
    assert!(proxied(&agent, &other).is_ok(), "allowed at run time");
    let o = devaipod(&["stop", p.name()]);
    assert!(o.status.success(), "{}", crate::common::pod::stderr(&o));
    let o = devaipod(&["start", p.name()]);
    assert!(o.status.success(), "{}", crate::common::pod::stderr(&o));
    assert!(proxied(&agent, &other).is_ok(), "kept across stop/start");
    let o = devaipod(&["deny", p.name(), inet::OTHER]);
    assert!(o.status.success(), "{}", crate::common::pod::stderr(&o));
    assert_blocked("denied at run time", proxied(&agent, &other));
    assert_blocked("still direct after start", direct(&agent, &allowed));

    // Podman itself starting a pod devaipod stopped runs the rules first: the agent is
    // not unfiltered.
    let o = devaipod(&["stop", p.name()]);
    assert!(o.status.success(), "{}", crate::common::pod::stderr(&o));
    podman_ok(&["pod", "start", &p.pod()]);
    crate::common::wait_until(
        "the agent runs again",
        std::time::Duration::from_secs(60),
        || try_in(&agent, "true").0 == 0,
    );
    assert_blocked("after podman pod start", direct(&agent, &allowed));
    assert!(proxied(&agent, &format!("http://{}/", inet::ALLOWED)).is_ok());
}

#[test]
fn up_stops_and_rolls_back_when_the_rules_cannot_be_installed() {
    // It makes (and removes) an image of its own.
    let _images = crate::common::pod::image_store_lock();
    require_image(BASE_IMAGE);
    // A "network guard" whose every command fails (busybox knows no `rules` applet): the
    // pod's start stops at its init container, so the agent never runs; `up` says why
    // and leaves nothing behind.
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: `just setup` installs busybox-static"
    );
    let p = TestPod::new("norules")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .env("DEVAIPOD_NET_BIN", busybox.display().to_string())
        .build();
    let plan = p.dry_run(&[]);
    let image = plan["network"]["image"]
        .as_str()
        .expect("network image")
        .to_string();
    let _image = crate::common::pod::Rm::image(&image);
    let o = p.up_fails(&[], "the agent does not run without its network rules");
    assert!(
        crate::common::pod::stderr(&o).contains("rules"),
        "{}",
        crate::common::pod::stderr(&o)
    );
}

#[test]
fn with_network_none_only_the_credential_routes_go_out() {
    require_image(BASE_IMAGE);
    let net = FakeInternet::require();
    let key = format!("dvpt-none-key-{}", std::process::id());
    let llm = net.llm_script(
        &format!("none-{}", std::process::id()),
        r#"{"steps": [], "final": "ok"}"#,
    );
    let mut b = TestPod::new("netnone")
        .config(r#"{"image": "localhost/devaipod-base:latest", "remoteUser": "dev"}"#)
        .env("DVPT_NONE_KEY", key.clone())
        .user_config(&format!(
            "[agent]\nnetwork = \"none\"\n[agent.credentials.fake]\nbase_url = \"{}\"\nheader = \"x-api-key\"\nsecret = \"DVPT_NONE_KEY\"\n",
            llm.base_url()
        ));
    for (k, v) in net.devaipod_env() {
        b = b.env(k, v);
    }
    let p = b.up();
    let agent = p.agent();
    // No name at all, not even one a user might think is harmless.
    assert_blocked(
        "network none: a name",
        proxied(&agent, &format!("http://{}/", inet::ALLOWED)),
    );
    assert_blocked(
        "network none: direct",
        direct(&agent, &format!("http://{}/", inet::ALLOWED_ADDR)),
    );
    // The credential route reaches the provider, with the key the agent never had.
    let (code, out) = try_in(
        &agent,
        "curl -sS --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:4097/devaipod/credentials/fake/v1/models",
    );
    assert_eq!(code, 0, "{out}");
    let seen = net.received_headers(&key);
    assert!(
        seen.iter().any(|h| h.name == "x-api-key" && h.value == key),
        "the provider did not get the key as x-api-key: {seen:?} (curl said {out})"
    );
    let s = p.status();
    assert_eq!(s["network"]["mode"], "none", "{s}");
    assert_eq!(s["network"]["credentials"][0]["provider"], "fake", "{s}");
    assert!(!s.to_string().contains(&key), "status shows the key");
}
