//! fake-gator: a stand-in for service-gator (an MCP server) in real-Podman tests.
//!
//! It accepts service-gator's command line, so devaipod can start either with
//! identical arguments, refuses at start what the real server refuses (a JIRA
//! project key outside its rule: exit 1 with its message), logs as it does (errors
//! only, unless RUST_LOG asks for info), and speaks MCP as the real server's rmcp
//! transport does: streamable HTTP on /mcp with stateful sessions (`Mcp-Session-Id`,
//! 401 for an unknown one, 422 for a first message that is not `initialize`), answers
//! to POST as server-sent events (a priming event first), 406 without an Accept
//! naming both application/json and text/event-stream, 415 for another Content-Type,
//! protocol version 2025-03-26 at most, and the real tool names. Its push tools check
//! `repo_path` as the real ones do (absolute, under /workspaces, a `.git` inside) and
//! report whether they could write there; it pushes nothing. GET /report says how the
//! process was started: its arguments, the names (never the values) of its
//! environment variables, its uid/gid and, for each token file variable, the file's
//! owner, mode and length (never its content).
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
/// The newest MCP protocol version service-gator's rmcp speaks: it answers the lower
/// of this and the client's.
const LATEST_PROTOCOL: &str = "2025-03-26";
/// service-gator's tools (its `#[tool]` functions).
const TOOLS: [&str; 10] = [
    "github_api_tool",
    "github_pending_review_tool",
    "gh_create_branch",
    "gh_update_pr_head",
    "github_push",
    "git_push_local",
    "gl",
    "forgejo",
    "jira",
    "status",
];
/// Where the push tools take repositories from.
const WORKSPACE_PREFIX: &str = "/workspaces";

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

#[derive(Debug, PartialEq, Default)]
struct Config {
    mcp_server: String,
    /// `--scope`'s `gh.repos`: each pattern (`OWNER/REPO`, `OWNER/*`) with the
    /// permissions set to true.
    gh_repos: Vec<(String, Vec<String>)>,
}

impl Config {
    /// service-gator's repository pattern match: the exact name, else a pattern whose
    /// trailing `*` is a prefix of it (the longest).
    fn gh_perms(&self, repo: &str) -> Option<&[String]> {
        if let Some((_, p)) = self.gh_repos.iter().find(|(pat, _)| pat == repo) {
            return Some(p);
        }
        self.gh_repos
            .iter()
            .filter_map(|(pat, p)| Some((pat.strip_suffix('*')?, p)))
            .filter(|(prefix, _)| repo.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| p.as_slice())
    }

    /// `GhRepoPermission`'s checks: `write` implies every other permission.
    fn gh_allows(&self, repo: &str, perm: &str) -> bool {
        self.gh_perms(repo)
            .is_some_and(|p| p.iter().any(|g| g == perm || g == "write"))
    }
}

/// Check service-gator's command line. Flags take their value as the next
/// argument or after `=`; values are not interpreted.
fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut mcp_server = None;
    let mut gh_repos = Vec::new();
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
        if flag == "--mcp-server" && mcp_server.replace(value.clone()).is_some() {
            return Err(format!("--mcp-server given more than once\n{USAGE}"));
        }
        if flag == "--jira-project" {
            let key = value.split(':').next().unwrap_or("");
            jira_key(key).map_err(|e| format!("parsing --jira-project '{value}': {e}"))?;
        }
        if flag == "--scope" {
            if let Ok(doc) = parse_json(&value) {
                if let Some(Json::Obj(projects)) = doc.get("jira").and_then(|j| j.get("projects")) {
                    for (key, _) in projects {
                        jira_key(key).map_err(|e| format!("parsing --scope: {e}"))?;
                    }
                }
                if let Some(Json::Obj(repos)) = doc.get("gh").and_then(|g| g.get("repos")) {
                    for (pattern, perms) in repos {
                        let Json::Obj(perms) = perms else { continue };
                        let granted = perms
                            .iter()
                            .filter(|(_, v)| *v == Json::Bool(true))
                            .map(|(k, _)| k.clone())
                            .collect();
                        gh_repos.push((pattern.clone(), granted));
                    }
                }
            }
        }
    }
    let mcp_server = mcp_server.ok_or_else(|| format!("--mcp-server is required\n{USAGE}"))?;
    Ok(Config {
        mcp_server,
        gh_repos,
    })
}

/// service-gator's JIRA project key rule, in its order of checks and its words.
fn jira_key(key: &str) -> Result<(), String> {
    let why = if key.len() < 2 {
        format!("project key too short ({} chars, min 2)", key.len())
    } else if key.len() > 10 {
        format!("project key too long ({} chars, max 10)", key.len())
    } else if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        "project key must start with a letter".into()
    } else if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        "project key must be alphanumeric (A-Z, 0-9)".into()
    } else {
        return Ok(());
    };
    Err(format!("invalid project key '{key}': {why}"))
}

/// One line on stderr in one write, as tracing's formatter writes an event: the relay
/// in front of the stand-in shares its stderr, and `eprintln!` writes a line in pieces.
fn line(text: &str) {
    let _ = io::stderr()
        .lock()
        .write_all(format!("{text}\n").as_bytes());
}

/// A warning as service-gator's tracing writes it, when RUST_LOG lets info through.
fn log_warn(message: &str) {
    if logs_info() {
        line(&format!(" WARN {message}"));
    }
}

/// An info line as service-gator's tracing writes it (compact, no time, no target),
/// when RUST_LOG lets it through.
fn log_info(message: &str) {
    if logs_info() {
        line(&format!(" INFO {message}"));
    }
}

/// Whether RUST_LOG lets info lines through (tracing's EnvFilter: errors only when
/// it is unset). A plain level or a `service_gator=LEVEL` directive counts.
fn logs_info() -> bool {
    let filter = std::env::var("RUST_LOG").unwrap_or_default();
    filter.split(',').any(|d| {
        let level = match d.split_once('=') {
            Some(("service_gator", level)) => level,
            Some(_) => return false,
            None => d,
        };
        matches!(level.trim(), "info" | "debug" | "trace")
    })
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
    /// The scopes it serves (`--scope`'s `gh.repos`).
    config: Config,
    secret_files: Vec<Json>,
    mcp_methods: Mutex<Vec<String>>,
    sessions: Mutex<Vec<String>>,
    /// Each push tool call's report, for /report.
    pushes: Mutex<Vec<Json>>,
    /// Read tool calls since the last log line about them (service-gator logs reads
    /// in aggregate, every 5 s).
    read_ops: std::sync::atomic::AtomicU64,
}

impl State {
    /// One read operation, logged in aggregate.
    fn count_read(&self) {
        self.read_ops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every 5 s, the read operations since the last time, as service-gator's
    /// background logger does.
    fn log_reads_every_5s(self: Arc<Self>) {
        thread::spawn(move || loop {
            thread::sleep(Duration::from_secs(5));
            let count = self.read_ops.swap(0, std::sync::atomic::Ordering::Relaxed);
            if count > 0 {
                log_info(&format!("read operations in last interval count={count}"));
            }
        });
    }

    fn has_session(&self, sid: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| s == sid)
    }

    fn new(args: Vec<String>, secret_files: Vec<Json>) -> Self {
        State {
            config: parse_args(&args).unwrap_or_default(),
            args,
            secret_files,
            mcp_methods: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            pushes: Mutex::new(Vec::new()),
            read_ops: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn report(&self) -> Json {
        let mut env_names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        env_names.sort();
        let (uid, gid) = ids();
        let methods = self.mcp_methods.lock().unwrap_or_else(|e| e.into_inner());
        let pushes = self.pushes.lock().unwrap_or_else(|e| e.into_inner());
        obj([
            ("args", strs(&self.args)),
            ("env_names", strs(&env_names)),
            ("secret_files", Json::Arr(self.secret_files.clone())),
            ("uid", uid),
            ("gid", gid),
            ("mcp_methods", strs(&methods)),
            ("pushes", Json::Arr(pushes.clone())),
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

/// A plain-text refusal, as rmcp's transport sends them.
fn text_response(status: &'static str, text: &str) -> Response {
    Response {
        content_type: Some("text/plain; charset=utf-8"),
        body: text.into(),
        ..empty(status)
    }
}

/// A JSON-RPC message as rmcp answers a POST: a server-sent event stream whose first
/// event only primes the client (an id, the retry time, no data).
fn sse_response(message: Json) -> Response {
    Response {
        content_type: Some("text/event-stream"),
        body: format!(
            "id: 0\nretry: 3000\ndata: \n\ndata: {}\n\n",
            message.encode()
        ),
        ..empty("200 OK")
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
    let (a, b) = (word(0), word(1));
    // rmcp's: a UUID v4, with its dashes.
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn tools_list() -> Json {
    let string = || obj([("type", s("string"))]);
    let tools = TOOLS
        .iter()
        .map(|name| {
            let properties = match *name {
                "github_push" | "git_push_local" => obj([
                    ("repo_path", string()),
                    ("commit_sha", string()),
                    ("target", string()),
                    ("description", string()),
                ]),
                _ => obj([]),
            };
            obj([
                ("name", s(name)),
                ("description", s("service-gator's tool (stand-in)")),
                (
                    "inputSchema",
                    obj([("type", s("object")), ("properties", properties)]),
                ),
            ])
        })
        .collect();
    obj([("tools", Json::Arr(tools))])
}

/// A tool's result: its text, and whether it is an error.
fn tool_result(id: &Json, text: &str, is_error: bool) -> Json {
    let content = obj([("type", s("text")), ("text", s(text))]);
    rpc_result(
        id,
        obj([
            ("content", Json::Arr(vec![content])),
            ("isError", Json::Bool(is_error)),
        ]),
    )
}

/// A push tool, checked in service-gator's order: its parameters as rmcp reads them
/// (`repo_path` a `WorkspacePath`: a JSON-RPC error -32602 when it is not one), then
/// the scope (`github_push`: push-new-branch on `repo`, and create-draft with `base`
/// and `title` unless `create_draft_pr` is false; a tool error in service-gator's
/// words), then the repository (a `.git` inside), then whether this process could
/// write there (it must not: the agent's clone is read-only here).
fn push(state: &State, id: &Json, tool: &str, args: Option<&Json>) -> Json {
    let path = args
        .and_then(|a| a.get("repo_path"))
        .and_then(Json::as_str)
        .unwrap_or("");
    let p = Path::new(path);
    // service-gator's WorkspacePathError, through rmcp's `Parameters`.
    let bad_path = if path.is_empty() {
        Some("path cannot be empty")
    } else if !p.is_absolute() {
        Some("path must be absolute")
    } else if !p.starts_with(WORKSPACE_PREFIX) {
        Some("path must be under /workspaces")
    } else if p.components().any(|c| c == std::path::Component::ParentDir) {
        Some("path cannot contain '..' components")
    } else {
        None
    };
    if let Some(why) = bad_path {
        return rpc_error(
            id,
            -32602,
            &format!("failed to deserialize parameters: {why}"),
        );
    }
    let arg = |k: &str| {
        args.and_then(|a| a.get(k))
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    if tool == "github_push" {
        let repo = arg("repo");
        let draft = args.and_then(|a| a.get("create_draft_pr")) != Some(&Json::Bool(false));
        let refusal = if !state.config.gh_allows(&repo, "push-new-branch") {
            Some(format!(
                "push-new-branch permission not granted for github:{repo}"
            ))
        } else if draft && !state.config.gh_allows(&repo, "create-draft") {
            Some(format!(
                "create-draft permission not granted for github:{repo}. For github_push with create_draft_pr=true, both push-new-branch and create-draft permissions are required."
            ))
        } else if draft && arg("base").is_empty() {
            Some("base is required when create_draft_pr is true (e.g., \"main\")".into())
        } else if draft && arg("title").is_empty() {
            Some("title is required when create_draft_pr is true".into())
        } else {
            None
        };
        if let Some(r) = refusal {
            return tool_result(id, &r, true);
        }
    }
    // As service-gator: each write operation at info once its checks pass (refusals
    // go back to the agent only), with what it pushes.
    if tool == "github_push" {
        // Inside rmcp's `serve_inner` span, which tracing's compact format names.
        let draft = args.and_then(|a| a.get("create_draft_pr")) != Some(&Json::Bool(false));
        let fork = args.and_then(|a| a.get("use_fork")) == Some(&Json::Bool(true));
        log_info(&format!(
            "serve_inner: starting GitHub push operation operation=\"github_push\" repo={} commit={} branch_desc={} create_draft_pr={draft} use_fork={fork}",
            arg("repo"),
            arg("commit_sha"),
            arg("description")
        ));
    } else {
        log_info(&format!(
            "serve_inner: starting git push operation operation=\"git_push_local\" target={} commit={} branch_desc={}",
            arg("target"),
            arg("commit_sha"),
            arg("description")
        ));
    }
    // service-gator's git clone from repo_path fails after that line; the stand-in
    // says why at the same point.
    if !p.join(".git").exists() {
        return tool_result(
            id,
            &format!("Not a git repository (no .git directory): {path}"),
            true,
        );
    }
    let probe = p.join(".git").join("fake-gator-write-probe");
    let writable = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    let head = std::fs::read_to_string(p.join(".git/HEAD")).unwrap_or_default();
    let report = obj([
        ("tool", s(tool)),
        ("repo_path", s(path)),
        ("git_dir", Json::Bool(true)),
        ("head", s(head.trim())),
        ("writable", Json::Bool(writable)),
    ]);
    let text = report.encode();
    state
        .pushes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(report);
    tool_result(id, &text, false)
}

/// Handle one POST /mcp, as rmcp's stateful streamable HTTP transport does.
fn post_mcp(state: &State, req: &Request) -> Response {
    let accept = req.header("accept").unwrap_or("");
    if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
        return text_response(
            "406 Not Acceptable",
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        );
    }
    if !req
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return text_response(
            "415 Unsupported Media Type",
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let msg = std::str::from_utf8(&req.body)
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
    let mut resp = match req.header("mcp-session-id") {
        None if method != Some("initialize") => text_response(
            "422 Unprocessable Entity",
            "Unexpected message, expect initialize request",
        ),
        None => {
            let sid = session_id();
            log_info(&format!("create new session session_id=\"{sid}\""));
            let id = msg.get("id").cloned().unwrap_or(Json::Null);
            let mut resp = sse_response(initialize(&id, msg.get("params")));
            state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sid.clone());
            resp.headers.push(("Mcp-Session-Id", sid));
            resp
        }
        Some(sid)
            if !state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| s == sid) =>
        {
            text_response("401 Unauthorized", "Unauthorized: Session not found")
        }
        Some(_) => match (msg.get("id"), method) {
            // A notification, or the client's answer to a request: nothing to say.
            (None, _) => empty("202 Accepted"),
            (Some(_), None) if msg.get("result").is_some() || msg.get("error").is_some() => {
                empty("202 Accepted")
            }
            (Some(id), None) => sse_response(rpc_error(id, -32600, "invalid request")),
            (Some(id), Some(m)) => {
                let answer = call(state, id, m, msg.get("params"));
                // rmcp warns of each JSON-RPC error it answers, in its Debug form.
                if let Some(e) = answer.get("error") {
                    let code = e.get("code").map(Json::encode).unwrap_or_default();
                    let message = e.get("message").map(Json::encode).unwrap_or_default();
                    log_warn(&format!(
                        "serve_inner: response error id={} error=ErrorData {{ code: ErrorCode({code}), message: {message}, data: None }}",
                        id.encode()
                    ));
                }
                sse_response(answer)
            }
        },
    };
    if let Some(m) = method {
        if resp.status.starts_with('2') {
            let mut methods = state.mcp_methods.lock().unwrap_or_else(|e| e.into_inner());
            methods.push(m.to_string());
        }
    }
    resp.rpc_method = method.map(str::to_string);
    resp
}

/// The answer to `initialize`: the lower of the client's protocol version and ours.
fn initialize(id: &Json, params: Option<&Json>) -> Json {
    let asked = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Json::as_str)
        .unwrap_or(LATEST_PROTOCOL);
    let version = if asked < LATEST_PROTOCOL {
        asked
    } else {
        LATEST_PROTOCOL
    };
    let tools = obj([("listChanged", Json::Bool(false))]);
    let result = obj([
        ("protocolVersion", s(version)),
        ("capabilities", obj([("tools", tools)])),
        (
            "serverInfo",
            obj([
                ("name", s("service-gator-stand-in")),
                ("version", s("0.2.0")),
            ]),
        ),
    ]);
    rpc_result(id, result)
}

/// `github_api_tool`'s reads, checked as service-gator checks them (the repository
/// from `repos/OWNER/REPO/...`, else global read), then counted as a read operation;
/// the stand-in reaches no GitHub, so the answer is a fixed text. Writes are not
/// served.
fn github_api(state: &State, id: &Json, args: Option<&Json>) -> Json {
    let endpoint = args
        .and_then(|a| a.get("endpoint"))
        .and_then(Json::as_str)
        .unwrap_or("");
    let method = args
        .and_then(|a| a.get("method"))
        .and_then(Json::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if method != "GET" {
        return tool_result(id, "the stand-in serves reads only", true);
    }
    let mut parts = endpoint.trim_start_matches('/').split('/');
    let repo = match (parts.next(), parts.next(), parts.next()) {
        (Some("repos"), Some(owner), Some(name)) if !owner.is_empty() && !name.is_empty() => {
            Some(format!("{owner}/{name}"))
        }
        _ => None,
    };
    match repo {
        Some(repo) if !state.config.gh_allows(&repo, "read") => tool_result(
            id,
            &format!("Read access not allowed for repository: {repo}"),
            true,
        ),
        None => tool_result(
            id,
            "This endpoint requires global read access. Set `read = true` in [gh] config, or use /repos/owner/repo/... paths.",
            true,
        ),
        Some(_) => {
            state.count_read();
            tool_result(id, &format!("{{\"stand_in\":true,\"endpoint\":{}}}", s(endpoint).encode()), false)
        }
    }
}

/// Answer a JSON-RPC request of an initialized session.
fn call(state: &State, id: &Json, method: &str, params: Option<&Json>) -> Json {
    let name = params
        .and_then(|p| p.get("name"))
        .and_then(Json::as_str)
        .unwrap_or("");
    match method {
        "initialize" => initialize(id, params),
        "ping" => rpc_result(id, obj([])),
        "tools/list" => rpc_result(id, tools_list()),
        "tools/call" if name == "github_push" || name == "git_push_local" => {
            push(state, id, name, params.and_then(|p| p.get("arguments")))
        }
        "tools/call" if name == "status" => tool_result(id, "service-gator stand-in", false),
        "tools/call" if name == "github_api_tool" => {
            github_api(state, id, params.and_then(|p| p.get("arguments")))
        }
        "tools/call" if TOOLS.contains(&name) => {
            tool_result(id, &format!("the stand-in does not serve {name}"), true)
        }
        "tools/call" => rpc_error(id, -32602, "unknown tool"),
        _ => rpc_error(id, -32601, "method not found"),
    }
}

fn route(req: &Request, state: &State) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => empty("200 OK"),
        ("GET", "/report") => json_response("200 OK", state.report()),
        ("POST", "/mcp") => post_mcp(state, req),
        // A valid GET is the standalone stream (`handle` serves it); its refusals here.
        ("GET", "/mcp") => match get_mcp_refusal(state, req) {
            Some(refusal) => refusal,
            None => empty("200 OK"),
        },
        ("DELETE", "/mcp") => {
            let mut sessions = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let before = sessions.len();
            sessions.retain(|s| Some(s.as_str()) != req.header("mcp-session-id"));
            if sessions.len() < before {
                log_info("serve_inner: input stream terminated");
            }
            // rmcp answers 202 whether or not it knew the session.
            empty("202 Accepted")
        }
        _ => empty("404 Not Found"),
    }
}

/// Why rmcp refuses a GET /mcp (the standalone stream of a session): 406 without an
/// Accept naming text/event-stream, 401 without a session or for an unknown one.
fn get_mcp_refusal(state: &State, req: &Request) -> Option<Response> {
    if !req
        .header("accept")
        .is_some_and(|a| a.contains("text/event-stream"))
    {
        return Some(text_response(
            "406 Not Acceptable",
            "Not Acceptable: Client must accept text/event-stream",
        ));
    }
    let Some(sid) = req.header("mcp-session-id") else {
        return Some(text_response(
            "401 Unauthorized",
            "Unauthorized: Session ID is required",
        ));
    };
    if !state.has_session(sid) {
        return Some(text_response(
            "401 Unauthorized",
            "Unauthorized: Session not found",
        ));
    }
    None
}

/// The standalone stream of a session, as rmcp serves it: its priming event, then a
/// keep-alive comment every 15 s, until the client goes or the session ends (DELETE).
/// The stand-in sends no server-initiated messages on it.
fn serve_stream(stream: &TcpStream, sid: &str, state: &State) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\nid: 0\nretry: 3000\ndata: \n\n",
    )?;
    writer.flush()?;
    let mut ticks = 0u32;
    while state.has_session(sid) {
        thread::sleep(Duration::from_secs(1)); // the session's end is seen within 1 s
        ticks += 1;
        if ticks.is_multiple_of(15) {
            writer.write_all(b":ping\n\n")?;
            writer.flush()?;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

fn handle(stream: &TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut reader, mut writer) = (BufReader::new(stream), stream);
    let Some(req) = read_request(&mut reader, &mut writer, MAX_BODY)? else {
        return Ok(());
    };
    if req.method == "GET" && req.path == "/mcp" && get_mcp_refusal(state, &req).is_none() {
        let sid = req.header("mcp-session-id").unwrap_or("").to_string();
        return serve_stream(stream, &sid, state);
    }
    let resp = route(&req, state);
    // service-gator logs no HTTP requests (writes and read counts only, above); the
    // stand-in does at debug.
    if std::env::var("RUST_LOG").is_ok_and(|f| f.contains("debug")) {
        let rpc = resp.rpc_method.as_deref().unwrap_or("-");
        line(&format!(
            "DEBUG fake-gator: {} {} {rpc} -> {}",
            req.method, req.path, resp.status
        ));
    }
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
    log_info(&format!("MCP server listening address={addr}"));
    Arc::clone(&state).log_reads_every_5s();
    for conn in listener.incoming() {
        let Ok(stream) = conn.map_err(|e| line(&format!("fake-gator: accept error: {e}"))) else {
            thread::sleep(Duration::from_millis(10)); // e.g. out of file descriptors
            continue;
        };
        let state = Arc::clone(&state);
        thread::spawn(move || {
            if let Err(e) = handle(&stream, &state) {
                line(&format!("fake-gator: connection error: {e}"));
            }
        });
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        // As service-gator's main: the error at ERROR (no target), exit code 1.
        line(&format!("ERROR {e}"));
        std::process::exit(1);
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

    /// POST `body` to /mcp with `headers` (the right Accept and Content-Type unless
    /// given); the response.
    fn post_with(state: &State, headers: &[(&str, &str)], body: &str) -> Response {
        let mut all: Vec<(String, String)> = vec![
            (
                "accept".into(),
                "application/json, text/event-stream".into(),
            ),
            ("content-type".into(), "application/json".into()),
        ];
        for (k, v) in headers {
            all.retain(|(n, _)| n != k);
            all.push((k.to_string(), v.to_string()));
        }
        let req = Request {
            method: "POST".into(),
            path: "/mcp".into(),
            headers: all,
            body: body.as_bytes().to_vec(),
        };
        post_mcp(state, &req)
    }

    /// The JSON-RPC message of an event-stream answer (after the priming event).
    fn message(resp: &Response) -> Json {
        assert_eq!(
            resp.content_type,
            Some("text/event-stream"),
            "{}",
            resp.body
        );
        let (priming, rest) = resp.body.split_once("\n\n").expect("two events");
        assert_eq!(priming, "id: 0\nretry: 3000\ndata: ");
        let data = rest.strip_prefix("data: ").expect("data").trim_end();
        parse_json(data).unwrap()
    }

    /// A session: initialize, then the id to send.
    fn session(state: &State) -> String {
        let resp = post_with(
            state,
            &[],
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
        );
        assert_eq!(resp.status, "200 OK");
        resp.headers
            .iter()
            .find(|(n, _)| *n == "Mcp-Session-Id")
            .expect("a session id")
            .1
            .clone()
    }

    /// POST `body` in `sid`'s session; the status and the message (Null if none).
    fn post(state: &State, sid: &str, body: &str) -> (&'static str, Json) {
        let resp = post_with(state, &[("mcp-session-id", sid)], body);
        let json = if resp.body.is_empty() {
            Json::Null
        } else {
            message(&resp)
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
        let line = r#"--mcp-server 127.0.0.1:8765 --scope {"gh":{"repos":{"a/b":{"read":true}}}} --gh-repo a/b --gh-repo c/d --gitlab-project g/p --jira-project JP --gitlab-host gitlab.example.com --scope=x"#;
        let config = parse_args(&argv(line)).unwrap();
        assert_eq!(config.mcp_server, "127.0.0.1:8765");
        assert_eq!(
            parse_args(&argv("--mcp-server=0.0.0.0:1")).unwrap(),
            Config {
                mcp_server: "0.0.0.0:1".into(),
                ..Config::default()
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
    fn jira_keys_are_refused_at_start_as_service_gator_refuses_them() {
        let ok = r#"--mcp-server a:1 --scope {"jira":{"projects":{"PROJ":{"read":true}}}} --jira-project AB1:read"#;
        assert!(parse_args(&argv(ok)).is_ok());
        for (bad, want) in [
            (r#"--mcp-server a:1 --scope {"jira":{"projects":{"MY_PROJ":{}}}}"#, "parsing --scope: invalid project key 'MY_PROJ': project key must be alphanumeric (A-Z, 0-9)"),
            ("--mcp-server a:1 --jira-project A:read", "parsing --jira-project 'A:read': invalid project key 'A': project key too short (1 chars, min 2)"),
            ("--mcp-server a:1 --jira-project 1AB", "project key must start with a letter"),
            ("--mcp-server a:1 --jira-project ABCDEFGHIJK", "project key too long (11 chars, max 10)"),
        ] {
            let e = parse_args(&argv(bad)).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn the_transport_is_rmcps_streamable_http_with_sessions() {
        let st = state();
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        // Accept must name both; the body must be JSON.
        for accept in ["application/json", "text/event-stream", ""] {
            let resp = post_with(&st, &[("accept", accept)], init);
            assert_eq!(resp.status, "406 Not Acceptable", "{accept}");
            assert!(resp
                .body
                .contains("must accept both application/json and text/event-stream"));
        }
        let resp = post_with(&st, &[("content-type", "text/plain")], init);
        assert_eq!(resp.status, "415 Unsupported Media Type");
        // No session: only initialize; an unknown session: 401.
        let resp = post_with(
            &st,
            &[],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        assert_eq!(resp.status, "422 Unprocessable Entity");
        let resp = post_with(
            &st,
            &[("mcp-session-id", "nope")],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        assert_eq!(resp.status, "401 Unauthorized");
        // initialize: a session id, and the lower protocol version.
        let resp = post_with(&st, &[], init);
        assert_eq!(resp.status, "200 OK");
        let (name, sid) = &resp.headers[0];
        assert_eq!(*name, "Mcp-Session-Id");
        // A UUID v4, as rmcp's.
        let groups: Vec<usize> = sid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{sid}");
        assert!(
            sid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{sid}"
        );
        assert_eq!(&sid[14..15], "4", "{sid}");
        let v = message(&resp);
        assert_eq!(at(&v, "id"), &num(1));
        assert_eq!(at(&v, "result.protocolVersion"), &s("2025-03-26"));
        let older = post_with(
            &st,
            &[],
            r#"{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"protocolVersion":"2024-11-05"}}"#,
        );
        assert_eq!(
            at(&message(&older), "result.protocolVersion"),
            &s("2024-11-05")
        );
        // In the session: notifications are accepted, requests answered as events.
        let (status, v) = post(
            &st,
            sid,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!((status, v), ("202 Accepted", Json::Null));
        let (status, v) = post(
            &st,
            sid,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        assert_eq!(status, "200 OK");
        let Json::Arr(tools) = at(&v, "result.tools") else {
            panic!("tools is not an array: {v:?}")
        };
        let names: Vec<&str> = tools
            .iter()
            .filter_map(|t| at(t, "name").as_str())
            .collect();
        assert_eq!(names, TOOLS);
        let (_, v) = post(&st, sid, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
        assert_eq!(at(&v, "result"), &obj([]));
        let (_, v) = post(
            &st,
            sid,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}"#,
        );
        assert_eq!(at(&v, "error.code"), &num(-32602));
        let (_, v) = post(
            &st,
            sid,
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#,
        );
        assert_eq!(at(&v, "error.code"), &num(-32601));
        let (_, v) = post(
            &st,
            sid,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"jira","arguments":{}}}"#,
        );
        assert_eq!(at(&v, "result.isError"), &Json::Bool(true));
        let methods = "initialize initialize notifications/initialized tools/list ping tools/call resources/list tools/call";
        assert_eq!(at(&st.report(), "mcp_methods"), &strs(&argv(methods)));
        // Malformed bodies.
        assert_eq!(
            post_with(&st, &[("mcp-session-id", sid)], "{").status,
            "400 Bad Request"
        );
        assert_eq!(
            post_with(&st, &[("mcp-session-id", sid)], "[]").status,
            "400 Bad Request"
        );
        assert_eq!(
            post(&st, sid, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#).0,
            "202 Accepted"
        );
    }

    #[test]
    fn push_tools_check_parameters_scope_and_repository_in_service_gators_order() {
        let st = State::new(
            argv(
                r#"--mcp-server 127.0.0.1:1 --scope {"gh":{"repos":{"octo/hello":{"read":true,"create-draft":true,"push-new-branch":true,"write":false},"octo/*":{"read":true,"push-new-branch":false},"wide/*":{"write":true}}}}"#,
            ),
            Vec::new(),
        );
        let sid = session(&st);
        let call = |args: &str| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"github_push","arguments":{args}}}}}"#
            );
            post(&st, &sid, &body).1
        };
        let text = |v: &Json| {
            let Json::Arr(content) = at(v, "result.content") else {
                panic!("{v:?}")
            };
            at(&content[0], "text").as_str().unwrap().to_string()
        };
        // repo_path is read with the parameters: a JSON-RPC error, as rmcp answers.
        for (path, want) in [
            ("", "path cannot be empty"),
            ("relative/x", "path must be absolute"),
            ("/home/x", "path must be under /workspaces"),
            ("/workspaces/a/../b", "path cannot contain '..' components"),
        ] {
            let v = call(&format!(
                r#"{{"repo_path":{},"repo":"octo/hello"}}"#,
                Json::Str(path.into()).encode()
            ));
            assert_eq!(at(&v, "error.code").encode(), "-32602", "{path}");
            assert_eq!(
                at(&v, "error.message").as_str(),
                Some(format!("failed to deserialize parameters: {want}").as_str())
            );
        }
        // Then the scope, in service-gator's words (a tool error).
        for (args, want) in [
            (
                r#"{"repo_path":"/workspaces/x","repo":"octo/other"}"#,
                "push-new-branch permission not granted for github:octo/other",
            ),
            (
                r#"{"repo_path":"/workspaces/x","repo":"nobody/r"}"#,
                "push-new-branch permission not granted for github:nobody/r",
            ),
            (
                r#"{"repo_path":"/workspaces/x","repo":"octo/hello"}"#,
                "base is required when create_draft_pr is true",
            ),
            (
                r#"{"repo_path":"/workspaces/x","repo":"octo/hello","base":"main"}"#,
                "title is required when create_draft_pr is true",
            ),
        ] {
            let v = call(args);
            assert_eq!(at(&v, "result.isError"), &Json::Bool(true), "{args}");
            assert!(text(&v).starts_with(want), "{args}: {}", text(&v));
        }
        // `write` on a wildcard grants push and create-draft; then the repository.
        let v = call(
            r#"{"repo_path":"/workspaces/no-such-repo","repo":"wide/x","base":"main","title":"t"}"#,
        );
        assert_eq!(
            text(&v),
            "Not a git repository (no .git directory): /workspaces/no-such-repo"
        );
        let v = call(
            r#"{"repo_path":"/workspaces/no-such-repo","repo":"octo/hello","create_draft_pr":false}"#,
        );
        assert!(text(&v).starts_with("Not a git repository"), "{}", text(&v));
    }

    #[test]
    fn the_standalone_stream_is_refused_as_rmcp_refuses_it() {
        let st = state();
        let sid = session(&st);
        let get = |headers: &[(&str, &str)]| {
            let req = Request {
                method: "GET".into(),
                path: "/mcp".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: Vec::new(),
            };
            get_mcp_refusal(&st, &req).map(|r| (r.status, r.body))
        };
        assert_eq!(
            get(&[("mcp-session-id", &sid)]),
            Some((
                "406 Not Acceptable",
                "Not Acceptable: Client must accept text/event-stream".into()
            ))
        );
        let accept = ("accept", "text/event-stream");
        assert_eq!(
            get(&[accept]),
            Some((
                "401 Unauthorized",
                "Unauthorized: Session ID is required".into()
            ))
        );
        assert_eq!(
            get(&[accept, ("mcp-session-id", "nope")]),
            Some(("401 Unauthorized", "Unauthorized: Session not found".into()))
        );
        assert_eq!(get(&[accept, ("mcp-session-id", &sid)]), None);
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
        let via_tool = {
            let sid = session(&st);
            post_with(
                &st,
                &[("mcp-session-id", &sid)],
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"status"}}"#,
            )
            .body
        };
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
