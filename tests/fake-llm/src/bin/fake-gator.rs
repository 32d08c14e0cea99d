//! fake-gator: a stand-in for service-gator (an MCP server) in real-Podman tests.
//!
//! It accepts service-gator's command line, so devaipod can start either with
//! identical arguments, and serves a minimal MCP endpoint (Streamable HTTP,
//! JSON responses only) whose one tool reports how the process was started:
//! its arguments, the names (never the values) of its environment variables,
//! its uid/gid and, for each token file variable, the file's owner, mode and
//! length (never its content).
//!
//! Usage:  fake-gator --mcp-server ADDR [--scope JSON] [--gh-repo X]
//!         [--gitlab-project X] [--jira-project X] [--gitlab-host X] ...
//! Routes: GET /healthz, GET /report, POST|GET|DELETE /mcp

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::{thread, time::Duration};

const USAGE: &str = "usage: fake-gator --mcp-server ADDR [--scope JSON] [--gh-repo X] \
                     [--gitlab-project X] [--jira-project X] [--gitlab-host X] ...";
const MAX_BODY: usize = 16 << 20;
/// Flags taking a value that may be given any number of times.
const REPEATABLE: [&str; 5] = [
    "--scope",
    "--gh-repo",
    "--gitlab-project",
    "--jira-project",
    "--gitlab-host",
];
/// The token file variables service-gator reads at start.
const SECRET_VARS: [&str; 5] = [
    "GH_TOKEN_FILE",
    "GITLAB_TOKEN_FILE",
    "FORGEJO_TOKEN_FILE",
    "GITEA_TOKEN_FILE",
    "JIRA_API_TOKEN_FILE",
];
const DEFAULT_PROTOCOL: &str = "2024-11-05";

#[path = "../shared.rs"]
mod shared;

use shared::{parse_json, read_request, Json, Request};

fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
    Json::Obj(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn s(text: &str) -> Json {
    Json::Str(text.into())
}

fn num(n: impl std::fmt::Display) -> Json {
    Json::Num(n.to_string())
}

fn strs<T: AsRef<str>>(items: &[T]) -> Json {
    Json::Arr(items.iter().map(|i| s(i.as_ref())).collect())
}

// ---- Command line ----------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Config {
    mcp_server: String,
}

/// Check service-gator's command line. Flags take their value as the next
/// argument or after `=`; values are not interpreted.
fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut mcp_server = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag != "--mcp-server" && !REPEATABLE.contains(&flag) {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline {
            Some(v) => v,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        if flag == "--mcp-server" && mcp_server.replace(value).is_some() {
            return Err(format!("--mcp-server given more than once\n{USAGE}"));
        }
    }
    let mcp_server = mcp_server.ok_or_else(|| format!("--mcp-server is required\n{USAGE}"))?;
    Ok(Config { mcp_server })
}

// ---- What the process was started with -------------------------------------

/// Describe the token file named by `var`: owner, mode and length. The content
/// is read (as service-gator would) and dropped at once; it is never stored.
fn inspect_secret(var: &str, path: &Path) -> Json {
    let mut fields = vec![
        ("var".to_string(), s(var)),
        ("path".to_string(), s(&path.to_string_lossy())),
    ];
    let mut add = |k: &str, v: Json| fields.push((k.to_string(), v));
    match std::fs::metadata(path) {
        Ok(meta) => {
            add("mode", s(&format!("{:04o}", meta.mode() & 0o7777)));
            add("uid", num(meta.uid()));
            add("gid", num(meta.gid()));
        }
        Err(e) => {
            add("mode", Json::Null);
            add("uid", Json::Null);
            add("gid", Json::Null);
            add("stat_error", s(&e.kind().to_string()));
        }
    }
    match std::fs::read(path).map(|content| content.len()) {
        Ok(len) => {
            add("readable", Json::Bool(true));
            add("length", num(len));
        }
        Err(e) => {
            add("readable", Json::Bool(false));
            add("length", Json::Null);
            add("read_error", s(&e.kind().to_string()));
        }
    }
    Json::Obj(fields)
}

/// Inspect each token file variable that `env` says is set.
fn collect_secrets(env: impl Fn(&str) -> Option<OsString>) -> Vec<Json> {
    SECRET_VARS
        .iter()
        .filter_map(|var| Some(inspect_secret(var, Path::new(&env(var)?))))
        .collect()
}

/// The real uid and gid, from /proc/self/status (`Uid:` and `Gid:` lines).
fn ids() -> (Json, Json) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        let line = status.lines().find_map(|l| l.strip_prefix(name));
        let id = line.and_then(|l| l.split_whitespace().next());
        id.and_then(|id| id.parse::<u32>().ok())
            .map_or(Json::Null, num)
    };
    (field("Uid:"), field("Gid:"))
}

struct State {
    args: Vec<String>,
    secret_files: Vec<Json>,
    mcp_methods: Mutex<Vec<String>>,
}

impl State {
    fn new(args: Vec<String>, secret_files: Vec<Json>) -> Self {
        State {
            args,
            secret_files,
            mcp_methods: Mutex::new(Vec::new()),
        }
    }

    fn report(&self) -> Json {
        let mut env_names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        env_names.sort();
        let (uid, gid) = ids();
        let methods = self.mcp_methods.lock().unwrap_or_else(|e| e.into_inner());
        obj([
            ("args", strs(&self.args)),
            ("env_names", strs(&env_names)),
            ("secret_files", Json::Arr(self.secret_files.clone())),
            ("uid", uid),
            ("gid", gid),
            ("mcp_methods", strs(&methods)),
        ])
    }
}

// ---- MCP (JSON-RPC 2.0) ----------------------------------------------------

struct Response {
    status: &'static str,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// The JSON-RPC method, for the log line.
    rpc_method: Option<String>,
}

fn empty(status: &'static str) -> Response {
    Response {
        status,
        content_type: None,
        headers: Vec::new(),
        body: String::new(),
        rpc_method: None,
    }
}

fn json_response(status: &'static str, body: Json) -> Response {
    Response {
        content_type: Some("application/json"),
        body: body.encode(),
        ..empty(status)
    }
}

fn rpc_result(id: &Json, result: Json) -> Json {
    obj([
        ("jsonrpc", s("2.0")),
        ("id", id.clone()),
        ("result", result),
    ])
}

fn rpc_error(id: &Json, code: i32, message: &str) -> Json {
    let error = obj([("code", num(code)), ("message", s(message))]);
    obj([("jsonrpc", s("2.0")), ("id", id.clone()), ("error", error)])
}

/// A random-looking hex session id (std's RandomState is seeded per process).
fn session_id() -> String {
    let state = RandomState::new();
    let word = |part: u8| {
        let mut h = state.build_hasher();
        h.write_u8(part);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", word(0), word(1))
}

fn tools_list() -> Json {
    let schema = obj([("type", s("object")), ("properties", obj([]))]);
    let tool = obj([
        ("name", s("gator_report")),
        ("description", s("Reports how the stand-in was started")),
        ("inputSchema", schema),
    ]);
    obj([("tools", Json::Arr(vec![tool]))])
}

/// Handle one POST /mcp body.
fn dispatch(state: &State, body: &[u8]) -> Response {
    let msg = std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(parse_json);
    let msg = match msg {
        Ok(msg @ Json::Obj(_)) => msg,
        Ok(_) => {
            let err = rpc_error(&Json::Null, -32600, "expected a single JSON-RPC object");
            return json_response("400 Bad Request", err);
        }
        Err(_) => {
            return json_response(
                "400 Bad Request",
                rpc_error(&Json::Null, -32700, "parse error"),
            )
        }
    };
    let method = msg.get("method").and_then(Json::as_str);
    if let Some(m) = method {
        let mut methods = state.mcp_methods.lock().unwrap_or_else(|e| e.into_inner());
        methods.push(m.to_string());
    }
    let mut resp = match (msg.get("id"), method) {
        // A notification, or the client's answer to a request: nothing to say.
        (None, _) => empty("202 Accepted"),
        (Some(_), None) if msg.get("result").is_some() || msg.get("error").is_some() => {
            empty("202 Accepted")
        }
        (Some(id), None) => json_response("200 OK", rpc_error(id, -32600, "invalid request")),
        (Some(id), Some(m)) => call(state, id, m, msg.get("params")),
    };
    resp.rpc_method = method.map(str::to_string);
    resp
}

/// Answer a JSON-RPC request.
fn call(state: &State, id: &Json, method: &str, params: Option<&Json>) -> Response {
    let param = |key: &str| params.and_then(|p| p.get(key)).and_then(Json::as_str);
    let reply = match method {
        "initialize" => {
            let version = param("protocolVersion").unwrap_or(DEFAULT_PROTOCOL);
            let tools = obj([("listChanged", Json::Bool(false))]);
            let result = obj([
                ("protocolVersion", s(version)),
                ("capabilities", obj([("tools", tools)])),
                (
                    "serverInfo",
                    obj([
                        ("name", s("service-gator-stand-in")),
                        ("version", s("0.1.0")),
                    ]),
                ),
            ]);
            let mut resp = json_response("200 OK", rpc_result(id, result));
            resp.headers.push(("Mcp-Session-Id", session_id()));
            return resp;
        }
        "ping" => rpc_result(id, obj([])),
        "tools/list" => rpc_result(id, tools_list()),
        "tools/call" if param("name") == Some("gator_report") => {
            let text = obj([("type", s("text")), ("text", s(&state.report().encode()))]);
            rpc_result(id, obj([("content", Json::Arr(vec![text]))]))
        }
        "tools/call" => rpc_error(id, -32602, "unknown tool"),
        _ => rpc_error(id, -32601, "method not found"),
    };
    json_response("200 OK", reply)
}

fn route(req: &Request, state: &State) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => empty("200 OK"),
        ("GET", "/report") => json_response("200 OK", state.report()),
        ("POST", "/mcp") => dispatch(state, &req.body),
        ("GET", "/mcp") => {
            let mut resp = empty("405 Method Not Allowed");
            resp.headers.push(("Allow", "POST, DELETE".into()));
            resp
        }
        ("DELETE", "/mcp") => empty("200 OK"),
        _ => empty("404 Not Found"),
    }
}

fn handle(stream: &TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut reader, mut writer) = (BufReader::new(stream), stream);
    let Some(req) = read_request(&mut reader, &mut writer, MAX_BODY)? else {
        return Ok(());
    };
    let resp = route(&req, state);
    let rpc = resp.rpc_method.as_deref().unwrap_or("-");
    eprintln!(
        "fake-gator: {} {} {rpc} -> {}",
        req.method, req.path, resp.status
    );
    let mut head = format!("HTTP/1.1 {}\r\n", resp.status);
    if let Some(ct) = resp.content_type {
        head += &format!("Content-Type: {ct}\r\n");
    }
    for (name, value) in &resp.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!(
        "Content-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        resp.body.len()
    );
    writer.write_all((head + &resp.body).as_bytes())?;
    writer.flush()?;
    let _ = stream.shutdown(Shutdown::Write); // end of response; the peer may already be gone
    Ok(())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let config = parse_args(&args)?;
    let secret_files = collect_secrets(|var| std::env::var_os(var));
    let state = Arc::new(State::new(args, secret_files));
    let listen = &config.mcp_server;
    let listener = TcpListener::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("fake-gator listening on {addr}");
    io::stdout().flush().map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let Ok(stream) = conn.map_err(|e| eprintln!("fake-gator: accept error: {e}")) else {
            thread::sleep(Duration::from_millis(10)); // e.g. out of file descriptors
            continue;
        };
        let state = Arc::clone(&state);
        thread::spawn(move || {
            if let Err(e) = handle(&stream, &state) {
                eprintln!("fake-gator: connection error: {e}");
            }
        });
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-gator: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    fn state() -> State {
        State::new(argv("--mcp-server 127.0.0.1:1"), Vec::new())
    }

    /// POST `body` to /mcp; return the status and the parsed reply (Null if empty).
    fn post(state: &State, body: &str) -> (&'static str, Json) {
        let resp = dispatch(state, body.as_bytes());
        let json = if resp.body.is_empty() {
            Json::Null
        } else {
            parse_json(&resp.body).unwrap()
        };
        (resp.status, json)
    }

    fn at<'a>(v: &'a Json, path: &str) -> &'a Json {
        path.split('.').fold(v, |v, k| {
            v.get(k).unwrap_or_else(|| panic!("no {k} in {v:?}"))
        })
    }

    #[test]
    fn args_accepted() {
        let line = r#"--mcp-server 127.0.0.1:8765 --scope {"gh":{"repos":{"a/b":{"read":true}}}} --gh-repo a/b --gh-repo c/d --gitlab-project g/p --jira-project J --gitlab-host gitlab.example.com --scope=x"#;
        let config = parse_args(&argv(line)).unwrap();
        assert_eq!(config.mcp_server, "127.0.0.1:8765");
        assert_eq!(
            parse_args(&argv("--mcp-server=0.0.0.0:1")).unwrap(),
            Config {
                mcp_server: "0.0.0.0:1".into()
            }
        );
        // Values are taken as-is, even when they look like flags.
        assert!(parse_args(&argv("--gh-repo --weird --mcp-server a:1")).is_ok());
    }

    #[test]
    fn args_rejected() {
        for bad in [
            "",
            "--gh-repo a/b",
            "--mcp-server",
            "--mcp-server a:1 --gh-repo",
            "--mcp-server a:1 --unknown x",
            "--mcp-server a:1 --unknown=x",
            "--mcp-server a:1 positional",
            "--mcp-server a:1 --mcp-server b:2",
            "-h --mcp-server a:1",
        ] {
            let args: Vec<String> = argv(bad).into_iter().filter(|a| !a.is_empty()).collect();
            assert!(parse_args(&args).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn initialize_echoes_protocol_version() {
        let st = state();
        let req = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let resp = dispatch(&st, req.as_bytes());
        assert_eq!(resp.status, "200 OK");
        let (name, sid) = &resp.headers[0];
        assert_eq!(*name, "Mcp-Session-Id");
        assert!(sid.len() == 32 && sid.chars().all(|c| c.is_ascii_hexdigit()));
        let v = parse_json(&resp.body).unwrap();
        assert_eq!(at(&v, "id"), &num(1));
        assert_eq!(at(&v, "result.protocolVersion"), &s("2025-06-18"));
        assert_eq!(
            at(&v, "result.capabilities.tools.listChanged"),
            &Json::Bool(false)
        );
        assert_eq!(
            at(&v, "result.serverInfo.name"),
            &s("service-gator-stand-in")
        );
        // No (string) protocolVersion: the default.
        let (_, v) = post(
            &st,
            r#"{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"protocolVersion":3}}"#,
        );
        assert_eq!(at(&v, "result.protocolVersion"), &s(DEFAULT_PROTOCOL));
        assert_eq!(at(&v, "id"), &s("x"));
    }

    #[test]
    fn dispatch_methods() {
        let st = state();
        let (status, v) = post(
            &st,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!((status, v), ("202 Accepted", Json::Null));
        let (status, v) = post(&st, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        assert_eq!(status, "200 OK");
        let Json::Arr(tools) = at(&v, "result.tools") else {
            panic!("tools is not an array: {v:?}")
        };
        assert!(tools.iter().any(|t| at(t, "name") == &s("gator_report")));
        assert_eq!(at(&tools[0], "inputSchema.type"), &s("object"));
        let (_, v) = post(&st, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
        assert_eq!(at(&v, "result"), &obj([]));
        let (_, v) = post(
            &st,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}"#,
        );
        assert_eq!(at(&v, "error.code"), &num(-32602));
        let (_, v) = post(&st, r#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#);
        assert_eq!(at(&v, "error.code"), &num(-32601));
        assert_eq!(at(&v, "error.message"), &s("method not found"));
        let (_, v) = post(
            &st,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"gator_report","arguments":{}}}"#,
        );
        let Json::Arr(content) = at(&v, "result.content") else {
            panic!("content is not an array: {v:?}")
        };
        let report = parse_json(at(&content[0], "text").as_str().unwrap()).unwrap();
        let methods =
            "notifications/initialized tools/list ping tools/call resources/list tools/call";
        assert_eq!(at(&report, "mcp_methods"), &strs(&argv(methods)));
        assert_eq!(
            at(&report, "args"),
            &strs(&argv("--mcp-server 127.0.0.1:1"))
        );
        assert!(matches!(at(&report, "uid"), Json::Num(_)));
        // Malformed bodies.
        assert_eq!(post(&st, "{").0, "400 Bad Request");
        assert_eq!(post(&st, "[]").0, "400 Bad Request");
        assert_eq!(
            post(&st, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#).0,
            "202 Accepted"
        );
    }

    #[test]
    fn report_never_contains_token() {
        let sentinel = "SENTINEL-TOKEN-d41d8cd98f00b204e9800998ecf8427e";
        let dir = std::env::temp_dir().join(format!("fake-gator-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gh-token");
        std::fs::write(&path, sentinel).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let missing = dir.join("missing");
        let env = |var: &str| match var {
            "GH_TOKEN_FILE" => Some(path.clone().into_os_string()),
            "JIRA_API_TOKEN_FILE" => Some(missing.clone().into_os_string()),
            _ => None,
        };
        let st = State::new(argv("--mcp-server a:1"), collect_secrets(env));
        let report = st.report().encode();
        let via_tool = dispatch(
            &st,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gator_report"}}"#,
        )
        .body;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!report.contains(sentinel) && !report.contains("SENTINEL"));
        assert!(!via_tool.contains("SENTINEL"));
        let v = parse_json(&report).unwrap();
        let Json::Arr(files) = at(&v, "secret_files") else {
            panic!("no secret_files: {report}")
        };
        assert_eq!(files.len(), 2);
        let gh = &files[0];
        assert_eq!(at(gh, "var"), &s("GH_TOKEN_FILE"));
        assert_eq!(at(gh, "path"), &s(&path.to_string_lossy()));
        assert_eq!(at(gh, "mode"), &s("0400"));
        assert_eq!(at(gh, "readable"), &Json::Bool(true));
        assert_eq!(at(gh, "length"), &num(sentinel.len()));
        assert!(matches!(at(gh, "uid"), Json::Num(_)));
        let jira = &files[1];
        assert_eq!(at(jira, "var"), &s("JIRA_API_TOKEN_FILE"));
        assert_eq!(at(jira, "readable"), &Json::Bool(false));
        assert_eq!(at(jira, "mode"), &Json::Null);
    }
}
