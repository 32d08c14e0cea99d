//! The offline fake internet of the network tests (tests/net/fake-internet.sh, set up as
//! root by `just fake-internet` before the real-Podman legs): its names, addresses,
//! ports and files; the environment that points devaipod's proxy at it; what its LLM
//! provider received (the header log) and the scripts that provider plays. The script's
//! header describes the same layout: keep the two in step ([`FakeInternet::require`]
//! compares the name map it wrote with [`HOSTS`]).
//!
//! Every address is a documentation address (in 198.51.100.0/28 and 203.0.113.0/28,
//! the host's link to the fake internet) or one the fake internet captures (10.0.0.1
//! is routed into its namespace), so no test traffic leaves the machine. Every server on 198.51.100.10, 198.51.100.11,
//! 203.0.113.10 and 10.0.0.1 (port 80; TLS on 443 of 198.51.100.10 and 203.0.113.10)
//! and the host service answers [`origin_body`]: which address was reached, under
//! which Host.

use std::path::Path;

/// Where the fake internet keeps its files.
pub const RUN_DIR: &str = "/run/dvpt-inet";
/// The name map (`NAME ADDR...` lines) that devaipod gives its proxy in tests.
pub const HOSTS_FILE: &str = "/run/dvpt-inet/hosts";
/// The PEM of the test CA that signed every TLS server's certificate.
pub const CA_FILE: &str = "/run/dvpt-inet/ca.pem";
/// One JSON line per request the LLM provider received (see [`ReceivedRequest`]).
pub const HEADER_LOG: &str = "/run/dvpt-inet/llm-headers.log";
/// The provider's scripts: `NAME.json` is played for `https://llm.test/NAME/v1/...`,
/// `default.json` (final text "fake answer", no tool calls) for `https://llm.test/v1/...`.
pub const LLM_SCRIPTS: &str = "/run/dvpt-inet/llm-scripts";

/// The environment variables devaipod reads its test-only proxy settings from.
pub const ENV_CA: &str = "DEVAIPOD_TEST_NET_CA";
pub const ENV_HOSTS: &str = "DEVAIPOD_TEST_NET_HOSTS";

pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;
/// UDP; a DNS server on [`DNS_ADDR`] answers every A question with [`ALLOWED_ADDR`].
pub const DNS_PORT: u16 = 53;

/// A public name tests put on the allowlist: HTTP, TLS and DNS.
pub const ALLOWED: &str = "allowed.test";
/// Also [`ALLOWED_ADDR`], under `*.allowed.test` (the certificate covers it).
pub const ALLOWED_SUB: &str = "www.allowed.test";
pub const ALLOWED_ADDR: &str = "198.51.100.10";
/// A second public name and network, for "not on the allowlist": HTTP and TLS.
pub const OTHER: &str = "other.test";
pub const OTHER_ADDR: &str = "203.0.113.10";
/// The LLM provider: fake-llm (OpenAI compatible) behind TLS; HTTP on port 80 is an
/// origin server like the others.
pub const LLM: &str = "llm.test";
pub const LLM_ADDR: &str = "198.51.100.11";
/// A name resolving to a private address (served inside the fake internet, so a proxy
/// that wrongly connects is caught by the answer `origin 10.0.0.1 ...`).
pub const PRIVATE: &str = "private.test";
pub const PRIVATE_ADDR: &str = "10.0.0.1";
/// A name resolving to loopback.
pub const LOOP: &str = "loop.test";
pub const LOOP_ADDR: &str = "127.0.0.1";
/// A name resolving to the host's own address on the fake internet's link.
pub const HOSTSIDE: &str = "hostside.test";
/// The host's side of the link (also 203.0.113.1): what pods' traffic is NATed to.
pub const HOST_ADDR: &str = "198.51.100.1";
/// The host service: plain HTTP on [`HOST_ADDR`], in the host's network namespace.
pub const HOST_SERVICE_PORT: u16 = 8080;
/// A name with one public and one private address (the proxy must refuse it).
pub const MIXED: &str = "mixed.test";
/// The DNS server's address.
pub const DNS_ADDR: &str = ALLOWED_ADDR;

/// The name map, as [`HOSTS_FILE`] lists it.
pub const HOSTS: [(&str, &[&str]); 8] = [
    (ALLOWED, &[ALLOWED_ADDR]),
    (ALLOWED_SUB, &[ALLOWED_ADDR]),
    (OTHER, &[OTHER_ADDR]),
    (LLM, &[LLM_ADDR]),
    (PRIVATE, &[PRIVATE_ADDR]),
    (LOOP, &[LOOP_ADDR]),
    (HOSTSIDE, &[HOST_ADDR]),
    (MIXED, &[ALLOWED_ADDR, PRIVATE_ADDR]),
];

/// What every HTTP server of the fake internet answers when `addr` was reached with
/// `Host: host` (`-` for a request without one).
pub fn origin_body(addr: &str, host: &str) -> String {
    format!("origin {addr} {host}\n")
}

/// Proof that the fake internet is up; its methods read what it recorded.
pub struct FakeInternet(());

impl FakeInternet {
    /// Panics, naming the command to run, when the fake internet is not up or is not
    /// the one this checkout describes.
    #[track_caller]
    pub fn require() -> Self {
        let text = std::fs::read_to_string(HOSTS_FILE).unwrap_or_else(|e| {
            panic!(
                "the fake internet is not up ({HOSTS_FILE}: {e}): set it up as root with \
                 `just fake-internet` (or `sudo tests/net/fake-internet.sh up`)"
            )
        });
        let want: Vec<(String, Vec<String>)> = HOSTS
            .iter()
            .map(|(n, a)| (n.to_string(), a.iter().map(|a| a.to_string()).collect()))
            .collect();
        assert_eq!(
            parse_hosts(&text),
            want,
            "{HOSTS_FILE} is not the name map of tests/common/inet.rs: renew it with \
             `sudo tests/net/fake-internet.sh down` and `just fake-internet` from this \
             checkout (or bring tests/net/fake-internet.sh and tests/common/inet.rs in step)"
        );
        for file in [CA_FILE, HEADER_LOG] {
            if let Err(e) = std::fs::File::open(file) {
                panic!(
                    "the fake internet is incomplete ({file}: {e}): renew it with \
                     `sudo tests/net/fake-internet.sh down` and `just fake-internet`"
                );
            }
        }
        Self(())
    }

    /// The environment of a devaipod run whose proxy uses the fake internet: its CA
    /// and its name map.
    pub fn devaipod_env(&self) -> [(&'static str, &'static str); 2] {
        [(ENV_CA, CA_FILE), (ENV_HOSTS, HOSTS_FILE)]
    }

    /// Every request the LLM provider has received so far, oldest first.
    #[track_caller]
    pub fn received_requests(&self) -> Vec<ReceivedRequest> {
        let text = std::fs::read_to_string(HEADER_LOG)
            .unwrap_or_else(|e| panic!("reading the provider's header log {HEADER_LOG}: {e}"));
        parse_header_log(&text)
    }

    /// Every header, of every request the provider received, whose value contains
    /// `sentinel` (a unique credential value): which header carried it, and where to.
    #[track_caller]
    pub fn received_headers(&self, sentinel: &str) -> Vec<ReceivedHeader> {
        let requests = self.received_requests();
        let with = |r: &ReceivedRequest| {
            let found = r.headers.iter().filter(|(_, v)| v.contains(sentinel));
            let found = found.map(|(name, value)| ReceivedHeader {
                method: r.method.clone(),
                path: r.path.clone(),
                name: name.clone(),
                value: value.clone(),
            });
            found.collect::<Vec<_>>()
        };
        requests.iter().flat_map(with).collect()
    }

    /// Installs `script` (fake-llm's JSON: `{"steps": [...], "final": "..."}`) as the
    /// provider's script NAME, played for requests to [`LlmScript::base_url`] until the
    /// returned guard is dropped. NAME: letters, digits, `-` and `_`, unique to the test
    /// (a [`super::pod::TestPod`]'s name is).
    #[track_caller]
    pub fn llm_script(&self, name: &str, script: &str) -> LlmScript {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "LLM script name {name:?}: use letters, digits, - and _"
        );
        let dir = Path::new(LLM_SCRIPTS);
        let path = dir.join(format!("{name}.json"));
        let tmp = dir.join(format!(".{name}.json.tmp"));
        // Renamed into place: the provider never reads half a script.
        std::fs::write(&tmp, script)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .unwrap_or_else(|e| panic!("writing the LLM script {}: {e}", path.display()));
        LlmScript {
            name: name.to_string(),
            path,
        }
    }
}

/// A request the provider received: one line of [`HEADER_LOG`],
/// `{"method":"POST","path":"/v1/chat/completions","headers":[["host","llm.test"],...]}`
/// (header names lower-cased, values as sent, in the order sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The values of the headers named `name` (lower case), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        let found = self.headers.iter().filter(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str()).collect()
    }
}

/// One header of a request the provider received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedHeader {
    pub method: String,
    pub path: String,
    /// Lower case.
    pub name: String,
    pub value: String,
}

/// An installed script of the provider; removed when dropped.
pub struct LlmScript {
    name: String,
    path: std::path::PathBuf,
}

impl LlmScript {
    /// The provider's base URL for this script: `https://llm.test/NAME/v1`.
    pub fn base_url(&self) -> String {
        format!("https://{LLM}/{}/v1", self.name)
    }
}

impl Drop for LlmScript {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && !std::thread::panicking()
        {
            panic!("removing the LLM script {}: {e}", self.path.display());
        }
    }
}

/// The name map: `NAME ADDR...` per line, in file order.
fn parse_hosts(text: &str) -> Vec<(String, Vec<String>)> {
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let entry = |line: &str| {
        let mut words = line.split_whitespace().map(str::to_string);
        let name = words.next().unwrap_or_default();
        (name, words.collect())
    };
    lines.map(entry).collect()
}

/// The header log's complete lines (a line still being written, without its newline,
/// is left for the next read); panics on a line that is not a logged request.
#[track_caller]
fn parse_header_log(text: &str) -> Vec<ReceivedRequest> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let lines = complete.lines().filter(|l| !l.is_empty());
    lines
        .enumerate()
        .map(|(i, l)| parse_logged(i + 1, l))
        .collect()
}

#[track_caller]
fn parse_logged(number: usize, line: &str) -> ReceivedRequest {
    #[track_caller]
    fn bad(number: usize, line: &str, what: &str) -> ! {
        panic!("{HEADER_LOG} line {number}: {what}: {line}")
    }
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| bad(number, line, &format!("not JSON ({e})")));
    let text = |key: &str| match v[key].as_str() {
        Some(s) => s.to_string(),
        None => bad(number, line, &format!("no string {key:?}")),
    };
    let Some(pairs) = v["headers"].as_array() else {
        bad(number, line, "no array \"headers\"")
    };
    let pair = |p: &serde_json::Value| match (p[0].as_str(), p[1].as_str()) {
        (Some(n), Some(v)) => (n.to_string(), v.to_string()),
        _ => bad(number, line, "a header is not [name, value]"),
    };
    ReceivedRequest {
        method: text("method"),
        path: text("path"),
        headers: pairs.iter().map(pair).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines_are_names_and_addresses() {
        let map = parse_hosts("a.test 198.51.100.10\n\nmixed.test  198.51.100.10 10.0.0.1\n");
        let want = [
            ("a.test", vec!["198.51.100.10"]),
            ("mixed.test", vec!["198.51.100.10", "10.0.0.1"]),
        ];
        let want: Vec<(String, Vec<String>)> = want
            .into_iter()
            .map(|(n, a)| (n.into(), a.into_iter().map(String::from).collect()))
            .collect();
        assert_eq!(map, want);
    }

    #[test]
    fn header_log_reads_complete_lines_only() {
        let log = concat!(
            r#"{"method":"GET","path":"/v1/models","headers":[["host","llm.test"]]}"#,
            "\n",
            r#"{"method":"POST","path":"/x/v1/chat/completions","headers":[["x-api-key","s-1"],["x-api-key","s-2"]]}"#,
            "\n",
            r#"{"method":"POST","path":"/half"#,
        );
        let got = parse_header_log(log);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].header("host"), ["llm.test"]);
        assert_eq!(got[1].path, "/x/v1/chat/completions");
        assert_eq!(got[1].header("x-api-key"), ["s-1", "s-2"]);
        assert!(parse_header_log(r#"{"method":"GET""#).is_empty());
    }
}
