//! What fake-llm and fake-gator share: a minimal JSON parser and writer, and
//! reading one HTTP/1.1 request. Each binary includes this file as a module.
// Each binary uses only part of it.
#![allow(dead_code)]

use std::io::{self, BufRead, Read, Write};

// ---- Minimal JSON ----------------------------------------------------------

/// A JSON value. Objects keep key order; numbers keep their source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        let Json::Obj(fields) = self else { return None };
        fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }
    /// Compact serialization.
    pub fn encode(&self) -> String {
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

pub fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(",")
}

/// Encode `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
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

pub fn parse_json(text: &str) -> Result<Json, String> {
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

// ---- HTTP ------------------------------------------------------------------

pub struct Request {
    pub method: String,
    pub path: String,
    /// The headers in order: names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the last header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().rev().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

pub fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// Append exactly `n` bytes from `r` to `body`, keeping it within `max` bytes.
pub fn read_body(r: &mut impl Read, body: &mut Vec<u8>, n: usize, max: usize) -> io::Result<()> {
    let start = body.len();
    if start + n > max {
        return Err(bad("request body too large"));
    }
    body.resize(start + n, 0);
    r.read_exact(&mut body[start..])
}

/// Read one request: line, headers and the whole body (Content-Length or
/// chunked). `Ok(None)` if the peer closed without sending anything.
pub fn read_request(
    r: &mut impl BufRead,
    w: &mut impl Write,
    max_body: usize,
) -> io::Result<Option<Request>> {
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
    let mut headers = Vec::new();
    loop {
        let header = read_line(r)?;
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((&header, ""));
        let name = name.trim().to_ascii_lowercase();
        headers.push((name.clone(), value.trim().to_string()));
        let value = value.trim().to_ascii_lowercase();
        match name.as_str() {
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
            read_body(r, &mut body, size, max_body)?;
            read_line(r)?; // the CRLF ending each chunk
        }
    } else {
        read_body(r, &mut body, len, max_body)?;
    }
    Ok(Some(Request {
        method: method.to_string(),
        path,
        headers,
        body,
    }))
}
