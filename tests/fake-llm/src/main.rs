//! fake-llm: a scripted, offline, OpenAI-compatible chat-completions server.
//!
//! Lets end-to-end tests drive a real coding agent without a real model. The
//! script lists the tool calls the "model" makes, in order; once every tool
//! result has come back it answers with the script's final text.
//!
//! Usage:  fake-llm --listen 127.0.0.1:PORT (--script FILE | --scripts DIR) [--header-log FILE]
//! Script: {"steps": [{"tool": "bash", "arguments": {"command": "..."}}], "final": "done"}
//!
//! With `--scripts DIR` (the fake internet's provider, tests/net) a request names its
//! script by a first path segment: `/NAME/v1/...` plays DIR/NAME.json, `/v1/...`
//! DIR/default.json, each read when the request comes, so tests add scripts while the
//! server runs. `--header-log FILE` appends one JSON line per request,
//! `{"method":"POST","path":"/v1/chat/completions","headers":[["host","llm.test"],...]}`
//! (names lower-cased, in the order sent), so a test can see which header carried a
//! credential to the provider.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::{thread, time::Duration};

const USAGE: &str =
    "usage: fake-llm --listen ADDR (--script FILE | --scripts DIR) [--header-log FILE]";
const MAX_BODY: usize = 64 << 20;

mod shared;

use shared::{parse_json, quote, read_request, Json, Request};

// ---- Script and reply decision ---------------------------------------------

struct Step {
    tool: String,
    /// The step's `arguments`, serialized as JSON text.
    arguments: String,
}

struct Script {
    steps: Vec<Step>,
    final_text: String,
}

fn load_script(text: &str) -> Result<Script, String> {
    let root = parse_json(text)?;
    let steps = root
        .get("steps")
        .and_then(Json::as_arr)
        .ok_or("script: missing \"steps\" array")?;
    let steps = steps.iter().enumerate().map(|(i, s)| {
        let tool = s.get("tool").and_then(Json::as_str);
        let tool = tool.ok_or_else(|| format!("script: step {i} has no \"tool\" string"))?;
        let arguments = s
            .get("arguments")
            .map_or_else(|| "{}".to_string(), Json::encode);
        Ok(Step {
            tool: tool.to_string(),
            arguments,
        })
    });
    let steps = steps.collect::<Result<Vec<_>, String>>()?;
    let final_text = root
        .get("final")
        .and_then(Json::as_str)
        .unwrap_or("done")
        .to_string();
    Ok(Script { steps, final_text })
}

#[derive(Debug, PartialEq)]
enum Reply<'a> {
    Text(&'a str),
    ToolCall {
        index: usize,
        name: &'a str,
        arguments: &'a str,
    },
}

/// No (or empty) `tools` means a title request. Otherwise the next step is the
/// number of tool results since the last user message.
fn decide<'a>(req: &Json, script: &'a Script) -> Reply<'a> {
    let has_tools = match req.get("tools") {
        None | Some(Json::Null) => false,
        Some(tools) => tools.as_arr().is_none_or(|t| !t.is_empty()),
    };
    if !has_tools {
        return Reply::Text("fake title");
    }
    let messages = req.get("messages").and_then(Json::as_arr).unwrap_or(&[]);
    let is_role = |m: &Json, r: &str| m.get("role").and_then(Json::as_str) == Some(r);
    let start = messages
        .iter()
        .rposition(|m| is_role(m, "user"))
        .map_or(0, |i| i + 1);
    let n = messages[start..]
        .iter()
        .filter(|m| is_role(m, "tool"))
        .count();
    match script.steps.get(n) {
        Some(step) => Reply::ToolCall {
            index: n,
            name: &step.tool,
            arguments: &step.arguments,
        },
        None => Reply::Text(&script.final_text),
    }
}

/// Render a reply as an OpenAI streaming (SSE) response body.
fn sse_body(reply: &Reply) -> String {
    let (delta, finish) = match reply {
        Reply::Text(text) => (format!(r#"{{"content":{}}}"#, quote(text)), "stop"),
        Reply::ToolCall {
            index,
            name,
            arguments,
        } => {
            let f = format!(
                r#"{{"name":{},"arguments":{}}}"#,
                quote(name),
                quote(arguments)
            );
            let call =
                format!(r#"{{"index":0,"id":"call_{index}","type":"function","function":{f}}}"#);
            (format!(r#"{{"tool_calls":[{call}]}}"#), "tool_calls")
        }
    };
    // Each entry is the `choices` value plus any extra top-level fields.
    let choice = |delta: &str, finish: &str| {
        format!(r#"[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]"#)
    };
    let chunks = [
        choice(r#"{"role":"assistant","content":""}"#, "null"),
        choice(&delta, "null"),
        choice("{}", &quote(finish)),
        r#"[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}"#.to_string(),
    ];
    let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"fake-model","choices":"#;
    let body: String = chunks
        .iter()
        .map(|c| format!("data: {head}{c}}}\n\n"))
        .collect();
    body + "data: [DONE]\n\n"
}

/// (status, content type, body, log note)
type Response = (&'static str, &'static str, String, String);

fn plain(status: &'static str, msg: String) -> Response {
    (
        status,
        "text/plain",
        format!("{msg}\n"),
        format!("{status}: {msg}"),
    )
}

/// Where a request's script comes from.
enum Scripts {
    /// `--script FILE`: one script for every request, paths as they come.
    Fixed(Arc<Script>),
    /// `--scripts DIR`: the request's first path segment names the script.
    Dir(PathBuf),
}

/// A script name from a request path: letters, digits, `-` and `_` only, so that it
/// names a file in the scripts directory and nothing else.
fn valid_script_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Scripts {
    /// The script for a request to `path` and the API path it asks for.
    fn resolve<'p>(&self, path: &'p str) -> Result<(Arc<Script>, &'p str), String> {
        let dir = match self {
            Scripts::Fixed(script) => return Ok((Arc::clone(script), path)),
            Scripts::Dir(dir) => dir,
        };
        let (name, api) = if path.starts_with("/v1/") {
            ("default", path)
        } else {
            let rest = path.strip_prefix('/').unwrap_or(path);
            let (name, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if !valid_script_name(name) || !tail.starts_with("/v1/") {
                return Err(format!(
                    "{path}: not /v1/... or /NAME/v1/... with NAME of [A-Za-z0-9_-]"
                ));
            }
            (name, tail)
        };
        let file = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading the script {}: {e}", file.display()))?;
        let script = load_script(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok((Arc::new(script), api))
    }
}

/// One line of the header log: the request's method, path and every header.
fn header_log_line(req: &Request) -> String {
    let headers = req
        .headers
        .iter()
        .map(|(name, value)| format!("[{},{}]", quote(name), quote(value)));
    format!(
        "{{\"method\":{},\"path\":{},\"headers\":[{}]}}\n",
        quote(&req.method),
        quote(&req.path),
        shared::join(headers)
    )
}

fn route(req: &Request, scripts: &Scripts) -> Response {
    let (script, path) = match scripts.resolve(&req.path) {
        Ok(found) => found,
        Err(e) => return plain("404 Not Found", e),
    };
    match (req.method.as_str(), path) {
        ("GET", "/v1/models") => {
            let models = r#"{"object":"list","data":[{"id":"fake-model","object":"model"}]}"#;
            ("200 OK", "application/json", models.into(), "models".into())
        }
        ("POST", "/v1/chat/completions") => {
            let json = std::str::from_utf8(&req.body)
                .map_err(|e| e.to_string())
                .and_then(parse_json);
            let json = match json {
                Ok(json) => json,
                Err(e) => return plain("400 Bad Request", e),
            };
            let reply = decide(&json, &script);
            let note = match &reply {
                Reply::Text(t) if *t == script.final_text => "reply: text final".into(),
                Reply::Text(t) => format!("reply: text {t:?}"),
                Reply::ToolCall { index, name, .. } => format!("reply: tool_call {index} {name}"),
            };
            ("200 OK", "text/event-stream", sse_body(&reply), note)
        }
        _ => plain("404 Not Found", "not found".into()),
    }
}

/// What every connection shares: the scripts and the header log.
struct Server {
    scripts: Scripts,
    header_log: Option<Mutex<File>>,
}

fn handle(stream: &TcpStream, server: &Server) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut reader, mut writer) = (BufReader::new(stream), stream);
    let Some(req) = read_request(&mut reader, &mut writer, MAX_BODY)? else {
        return Ok(());
    };
    if let Some(log) = &server.header_log {
        // One write of a whole line to an O_APPEND file: lines never interleave.
        let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(header_log_line(&req).as_bytes())?;
    }
    let (status, content_type, body, note) = route(&req, &server.scripts);
    eprintln!("fake-llm: {} {} {note}", req.method, req.path);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(response.as_bytes())?;
    writer.flush()?;
    let _ = stream.shutdown(Shutdown::Write); // end of response; the peer may already be gone
    Ok(())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let known = ["--listen", "--script", "--scripts", "--header-log"];
    let pairs_ok =
        args.len().is_multiple_of(2) && args.iter().step_by(2).all(|a| known.contains(&a.as_str()));
    let Some(listen) = opt("--listen").filter(|_| pairs_ok) else {
        return Err(USAGE.into());
    };
    let scripts = match (opt("--script"), opt("--scripts")) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
            Scripts::Fixed(Arc::new(load_script(&text)?))
        }
        (None, Some(dir)) => Scripts::Dir(PathBuf::from(dir)),
        _ => return Err(USAGE.into()),
    };
    let header_log = match opt("--header-log") {
        Some(path) => {
            let file = File::options().append(true).create(true).open(path);
            Some(Mutex::new(
                file.map_err(|e| format!("opening {path}: {e}"))?,
            ))
        }
        None => None,
    };
    let server = Arc::new(Server {
        scripts,
        header_log,
    });
    let listener = TcpListener::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("fake-llm listening on {addr}");
    io::stdout().flush().map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let Ok(stream) = conn.map_err(|e| eprintln!("fake-llm: accept error: {e}")) else {
            continue;
        };
        let server = Arc::clone(&server);
        thread::spawn(move || {
            if let Err(e) = handle(&stream, &server) {
                eprintln!("fake-llm: connection error: {e}");
            }
        });
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-llm: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"{"steps": [{"tool": "bash", "arguments": {"command": "echo \"hi\" > f"}},
        {"tool": "read", "arguments": {"path": "f"}}], "final": "all done"}"#;

    /// Decide for a request whose messages have the given (space-separated)
    /// roles, and describe the reply as a short string.
    fn pick(tools: bool, roles: &str) -> String {
        let msgs: Vec<_> = roles
            .split(' ')
            .map(|r| format!(r#"{{"role":"{r}"}}"#))
            .collect();
        let tools = if tools { r#","tools":[{}]"# } else { "" };
        let req = parse_json(&format!(r#"{{"messages":[{}]{tools}}}"#, msgs.join(","))).unwrap();
        match decide(&req, &load_script(SCRIPT).unwrap()) {
            Reply::Text(t) => format!("text {t}"),
            Reply::ToolCall {
                index,
                name,
                arguments,
            } => format!("tool {index} {name} {arguments}"),
        }
    }

    #[test]
    fn json_parser_tricky_input() {
        let text = r#" { "a" : [1, -2.5e+3, true, false, null, {}, [ ]], "s": "q\"b\\s\/\n\t\u00e9\ud83d\ude00\u0041é", "": "" } "#;
        let v = parse_json(text).unwrap();
        assert_eq!(v.get("s").and_then(Json::as_str), Some("q\"b\\s/\n\té😀Aé"));
        assert_eq!(
            v.get("a").unwrap().encode(),
            "[1,-2.5e+3,true,false,null,{},[]]"
        );
        assert_eq!(parse_json(&v.encode()).unwrap(), v, "round trip");
        assert_eq!(
            parse_json(r#""\ud800x\udc00""#).unwrap(),
            Json::Str("\u{FFFD}x\u{FFFD}".into())
        );
        assert_eq!(quote("a\u{1}\"\\\n"), r#""a\u0001\"\\\n""#);
        for bad in [
            "",
            "{",
            "[1,]",
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "\"abc",
            "tru",
            "1 2",
            r#""\x""#,
            r#""\u12""#,
            "-",
        ] {
            assert!(parse_json(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn reply_decision() {
        assert_eq!(pick(false, "system user"), "text fake title");
        assert_eq!(
            pick(true, "system user"),
            r#"tool 0 bash {"command":"echo \"hi\" > f"}"#
        );
        assert_eq!(
            pick(true, "system user assistant tool"),
            r#"tool 1 read {"path":"f"}"#
        );
        assert_eq!(
            pick(true, "user assistant tool assistant tool"),
            "text all done"
        );
        let new_turn = "user assistant tool assistant tool assistant user";
        assert!(pick(true, new_turn).starts_with("tool 0 bash"));
    }

    #[test]
    fn sse_output() {
        let text = sse_body(&Reply::Text("all done"));
        assert!(text.contains(r#""delta":{"content":"all done"},"finish_reason":null"#));
        assert!(text.contains(r#""finish_reason":"stop""#) && text.ends_with("data: [DONE]\n\n"));
        let args = r#"{"command":"ls"}"#;
        let sse = sse_body(&Reply::ToolCall {
            index: 2,
            name: "bash",
            arguments: args,
        });
        let data = sse
            .split("\n\n")
            .filter_map(|c| c.strip_prefix("data: "))
            .filter(|c| *c != "[DONE]");
        let chunks: Vec<Json> = data.map(|c| parse_json(c).unwrap()).collect();
        assert_eq!(chunks.len(), 4);
        let choice = &chunks[1].get("choices").and_then(Json::as_arr).unwrap()[0];
        let call = &choice
            .get("delta")
            .and_then(|d| d.get("tool_calls"))
            .and_then(Json::as_arr)
            .unwrap()[0];
        assert_eq!(call.get("id").and_then(Json::as_str), Some("call_2"));
        assert_eq!(
            call.get("function")
                .and_then(|f| f.get("arguments"))
                .and_then(Json::as_str),
            Some(args)
        );
        assert!(sse.contains(r#""finish_reason":"tool_calls""#));
    }

    #[test]
    fn scripts_dir_picks_the_script_the_path_names() {
        let dir = std::env::temp_dir().join(format!("fake-llm-scripts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("default.json"), r#"{"steps": [], "final": "d"}"#).unwrap();
        std::fs::write(dir.join("e2e-1.json"), SCRIPT).unwrap();
        let scripts = Scripts::Dir(dir.clone());
        let (s, api) = scripts.resolve("/v1/chat/completions").unwrap();
        assert_eq!((s.final_text.as_str(), api), ("d", "/v1/chat/completions"));
        let (s, api) = scripts.resolve("/e2e-1/v1/models").unwrap();
        assert_eq!((s.final_text.as_str(), api), ("all done", "/v1/models"));
        let missing = scripts.resolve("/nope/v1/models").err().unwrap();
        assert!(missing.contains("nope.json"), "{missing}");
        for bad in [
            "/../v1/x",
            "/a.b/v1/x",
            "/e2e-1/v2/x",
            "/e2e-1",
            "//v1/x",
            "/",
        ] {
            let e = scripts
                .resolve(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} resolved"));
            assert!(e.contains("NAME"), "{bad}: {e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
        let fixed = Scripts::Fixed(Arc::new(load_script(SCRIPT).unwrap()));
        assert_eq!(fixed.resolve("/any/path").unwrap().1, "/any/path");
    }

    #[test]
    fn header_log_line_keeps_every_header_as_sent() {
        let raw = "POST /v1/chat/completions HTTP/1.1\r\nHost: llm.test\r\nX-Api-Key:  k\"ey \r\n\
                   Content-Length: 2\r\n\r\n{}";
        let req = read_request(&mut io::Cursor::new(raw), &mut Vec::new(), MAX_BODY)
            .unwrap()
            .unwrap();
        assert_eq!(req.header("x-api-key"), Some("k\"ey"));
        let line = header_log_line(&req);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let v = parse_json(&line).unwrap();
        assert_eq!(v.get("method").and_then(Json::as_str), Some("POST"));
        assert_eq!(
            v.get("path").and_then(Json::as_str),
            Some("/v1/chat/completions")
        );
        assert_eq!(
            v.get("headers").unwrap().encode(),
            r#"[["host","llm.test"],["x-api-key","k\"ey"],["content-length","2"]]"#
        );
    }

    #[test]
    fn chunked_request_body() {
        let raw = "POST /v1/x?y=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext\r\nde\r\n0\r\n\r\n";
        let req = read_request(&mut io::Cursor::new(raw), &mut Vec::new(), MAX_BODY)
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/x"));
        assert_eq!(req.body, b"abcde");
    }
}
