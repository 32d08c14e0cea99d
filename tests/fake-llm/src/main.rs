//! fake-llm: a scripted, offline, OpenAI-compatible chat-completions server.
//!
//! Lets end-to-end tests drive a real coding agent without a real model. The
//! script lists the tool calls the "model" makes, in order; once every tool
//! result has come back it answers with the script's final text.
//!
//! Usage:  fake-llm --listen 127.0.0.1:PORT --script FILE
//! Script: {"steps": [{"tool": "bash", "arguments": {"command": "..."}}], "final": "done"}

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::{sync::Arc, thread, time::Duration};

const USAGE: &str = "usage: fake-llm --listen ADDR --script FILE";
const MAX_BODY: usize = 64 << 20;

// ---- Minimal JSON ----------------------------------------------------------

/// A JSON value. Objects keep key order; numbers keep their source text.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        let Json::Obj(fields) = self else { return None };
        fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }
    /// Compact serialization.
    fn encode(&self) -> String {
        match self {
            Json::Null => "null".into(),
            Json::Bool(b) => b.to_string(),
            Json::Num(n) => n.clone(),
            Json::Str(s) => quote(s),
            Json::Arr(items) => format!("[{}]", join(items.iter().map(Json::encode))),
            Json::Obj(fields) => format!(
                "{{{}}}",
                join(fields.iter().map(|(k, v)| quote(k) + ":" + &v.encode()))
            ),
        }
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(",")
}

/// Encode `s` as a JSON string literal, quotes included.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => out.extend(['\\', c]),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    match p.peek() {
        None => Ok(v),
        Some(_) => Err(p.err("trailing data")),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> String {
        format!("JSON error at byte {}: {msg}", self.i)
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    /// Skip whitespace, then consume `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, b: u8) -> Result<(), String> {
        self.eat(b)
            .then_some(())
            .ok_or_else(|| self.err(&format!("expected '{}'", b as char)))
    }
    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 256 {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        for (word, v) in [
            ("null", Json::Null),
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
        ] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(v);
            }
        }
        match self.peek() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => self.list(b']', |p| p.value(depth + 1)).map(Json::Arr),
            Some(b'{') => {
                let member = |p: &mut Self| {
                    let key = p.string()?;
                    p.expect(b':')?;
                    Ok((key, p.value(depth + 1)?))
                };
                self.list(b'}', member).map(Json::Obj)
            }
            _ => Err(self.err("unexpected character or end of input")),
        }
    }
    /// Parse `[item, item, ...]` (or `{...}`); the opening bracket is next.
    fn list<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        self.i += 1;
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(b',')?;
        }
    }
    /// Lenient number: the usual characters, accepted if Rust can parse it as f64.
    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.peek().is_some_and(|b| b"0123456789+-.eE".contains(&b)) {
            self.i += 1;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        text.parse::<f64>()
            .map(|_| Json::Num(text))
            .map_err(|_| self.err("invalid number"))
    }
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            let c = match b {
                b'"' => return String::from_utf8(out).map_err(|_| self.err("invalid UTF-8")),
                b'\\' => self.escape()?,
                0..=0x1f => return Err(self.err("control character in string")),
                _ => {
                    out.push(b);
                    continue;
                }
            };
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    /// Decode the escape after a backslash. Surrogate pairs are joined; lone
    /// surrogates become U+FFFD.
    fn escape(&mut self) -> Result<char, String> {
        let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
        self.i += 1;
        Ok(match e {
            b'"' | b'\\' | b'/' => e as char,
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                    let save = self.i;
                    self.i += 2;
                    let lo = self.hex4()?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return Ok(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                    }
                    self.i = save; // not a low surrogate: decode it on its own
                }
                char::from_u32(hi).unwrap_or('\u{FFFD}')
            }
            _ => return Err(self.err("invalid escape")),
        })
    }
    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).unwrap_or_default();
        let v = digits
            .iter()
            .try_fold(0, |acc, &b| Some(acc * 16 + char::from(b).to_digit(16)?));
        let v = v.filter(|_| digits.len() == 4);
        let v = v.ok_or_else(|| self.err("invalid \\u escape"))?;
        self.i += 4; // only advance on success, so `i` never passes the end
        Ok(v)
    }
}

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

// ---- HTTP ------------------------------------------------------------------

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// Append exactly `n` bytes from `r` to `body`, enforcing `MAX_BODY`.
fn read_body(r: &mut impl Read, body: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let start = body.len();
    if start + n > MAX_BODY {
        return Err(bad("request body too large"));
    }
    body.resize(start + n, 0);
    r.read_exact(&mut body[start..])
}

/// Read one request: line, headers and the whole body (Content-Length or
/// chunked). `Ok(None)` if the peer closed without sending anything.
fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Option<Request>> {
    let line = read_line(r)?;
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad("bad request line"));
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    let (mut len, mut chunked) = (0, false);
    loop {
        let header = read_line(r)?;
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((&header, ""));
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = value.parse().map_err(|_| bad("bad Content-Length"))?,
            "transfer-encoding" => chunked = value.contains("chunked"),
            "expect" if value == "100-continue" => w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?,
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break; // trailers are ignored: the connection is closed after the reply
            }
            read_body(r, &mut body, size)?;
            read_line(r)?; // the CRLF ending each chunk
        }
    } else {
        read_body(r, &mut body, len)?;
    }
    Ok(Some(Request {
        method: method.to_string(),
        path,
        body,
    }))
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

fn route(req: &Request, script: &Script) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
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
            let reply = decide(&json, script);
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

fn handle(stream: &TcpStream, script: &Script) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (mut reader, mut writer) = (BufReader::new(stream), stream);
    let Some(req) = read_request(&mut reader, &mut writer)? else {
        return Ok(());
    };
    let (status, content_type, body, note) = route(&req, script);
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
    let (Some(listen), Some(script_path), 4) = (opt("--listen"), opt("--script"), args.len())
    else {
        return Err(USAGE.into());
    };
    let text =
        std::fs::read_to_string(script_path).map_err(|e| format!("reading {script_path}: {e}"))?;
    let script = Arc::new(load_script(&text)?);
    let listener = TcpListener::bind(listen).map_err(|e| format!("binding {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("fake-llm listening on {addr}");
    io::stdout().flush().map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let Ok(stream) = conn.map_err(|e| eprintln!("fake-llm: accept error: {e}")) else {
            continue;
        };
        let script = Arc::clone(&script);
        thread::spawn(move || {
            if let Err(e) = handle(&stream, &script) {
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
    fn chunked_request_body() {
        let raw = "POST /v1/x?y=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext\r\nde\r\n0\r\n\r\n";
        let req = read_request(&mut io::Cursor::new(raw), &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/x"));
        assert_eq!(req.body, b"abcde");
    }
}
