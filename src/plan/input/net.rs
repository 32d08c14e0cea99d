//! The agent's network as the plan receives it: the mode, the allowlist, the credential
//! routes, the host's own addresses, and the test-only settings. Also the grammar of
//! what the user writes for them (`[agent] network`, `allow`, `[agent.credentials.ID]`,
//! `up --network`/`--allow`), checked here once for the config file and the command
//! line alike. Pure: nothing here reads the world.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use super::UserSecret;

/// How far the agent reaches (`[agent] network`, `up --network`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum NetworkMode {
    /// Only the gator, its own loopback listeners and the credential routes.
    None,
    /// The names on the allowlist and the credential routes, through the proxy.
    #[default]
    Allowlist,
    /// Any address (devaipod before the allowlist); `up` warns.
    Full,
}

impl NetworkMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Allowlist => "allowlist",
            NetworkMode::Full => "full",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "allowlist" => Ok(NetworkMode::Allowlist),
            "full" => Ok(NetworkMode::Full),
            _ => Err(format!(
                "network mode {s:?} is not one of \"allowlist\" (the default: the names you allow), \"none\" (no outside access but the credential routes) or \"full\" (any address)"
            )),
        }
    }
}

impl TryFrom<String> for NetworkMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One allowlist entry: `NAME`, `*.NAME` (any name below NAME, not NAME itself) and an
/// optional `:PORT`; without a port, 443 and 80. Names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AllowName {
    /// The name without `*.`.
    pub name: String,
    /// `*.NAME`: names below `name`.
    pub wildcard: bool,
    pub port: Option<u16>,
}

/// The ports an entry without `:PORT` opens.
pub(crate) const DEFAULT_PORTS: [u16; 2] = [443, 80];

impl AllowName {
    /// The ports this entry opens.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by plan::network (issue 16), which the lead writes"
        )
    )]
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.port.map_or(DEFAULT_PORTS.to_vec(), |p| vec![p])
    }
}

impl fmt::Display for AllowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl FromStr for AllowName {
    type Err = String;
    /// The reason for a refusal, without the entry (callers name it and where it is).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains("://") {
            return Err("write the host name only, without a scheme or path (example.org, not https://example.org/)".into());
        }
        if s.starts_with('[') || s.matches(':').count() > 1 {
            return Err(ip_literal());
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (s, None),
        };
        let (name, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (host, false),
        };
        if name.contains('*') {
            return Err(
                "a wildcard is only `*.` at the start, for every name below a domain (*.example.org)"
                    .into(),
            );
        }
        let name = name.to_ascii_lowercase();
        check_name(&name).map_err(|e| match e {
            NameError::SingleLabel if wildcard => {
                "a wildcard needs a domain of at least two labels (*.example.org), not a whole top-level domain".to_string()
            }
            e => e.to_string(),
        })?;
        Ok(AllowName {
            name,
            wildcard,
            port,
        })
    }
}

impl TryFrom<String> for AllowName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map_err(|e| format!("allow entry {s:?}: {e}"))
    }
}

impl Serialize for AllowName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn ip_literal() -> String {
    "an IP address literal (dotted, decimal, octal, hex, short or IPv6, with or without brackets): name hosts by their DNS name, which the proxy resolves and checks".into()
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| p.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
}

/// Why a host name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameError {
    Empty,
    TrailingDot,
    TooLong,
    EmptyLabel,
    LongLabel(String),
    NotAscii,
    BadChar(char),
    HyphenEdge(String),
    IpLiteral,
    SingleLabel,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the name is empty"),
            NameError::TrailingDot => f.write_str("write the name without the trailing dot"),
            NameError::TooLong => f.write_str("a DNS name has at most 253 characters"),
            NameError::EmptyLabel => f.write_str("a name has no empty labels (\"..\", or a dot at the start)"),
            NameError::LongLabel(l) => write!(f, "the label {l:?} is longer than 63 characters"),
            NameError::NotAscii => f.write_str("write an internationalised name in its ASCII (xn--) form"),
            NameError::BadChar(c) => write!(
                f,
                "{c:?} is not allowed in a host name (letters, digits, '-' and '.' only)"
            ),
            NameError::HyphenEdge(l) => write!(f, "the label {l:?} starts or ends with '-'"),
            NameError::IpLiteral => f.write_str(&ip_literal()),
            NameError::SingleLabel => f.write_str(
                "a single-label name is no public internet name: write the full name (e.g. git.example.com)",
            ),
        }
    }
}

/// Checks a lower-case host name: letters, digits and hyphens in labels of 1 to 63
/// characters, at least two labels, and a last label that is not a number (decimal,
/// octal or `0x` hex), which is what makes every IPv4 spelling (`1.2.3.4`, `127.1`,
/// `2130706433`, `0x7f.1`, `0177.0.0.1`) a refusal rather than a name.
pub(crate) fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(':') || name.starts_with('[') {
        return Err(NameError::IpLiteral);
    }
    if name.ends_with('.') && name.len() > 1 {
        return Err(NameError::TrailingDot);
    }
    if !name.is_ascii() {
        return Err(NameError::NotAscii);
    }
    if name.len() > 253 {
        return Err(NameError::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    for l in &labels {
        if l.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if let Some(c) = l
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NameError::BadChar(c));
        }
        if l.len() > 63 {
            return Err(NameError::LongLabel(l.to_string()));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(NameError::HyphenEdge(l.to_string()));
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err(NameError::IpLiteral);
    }
    if labels.len() < 2 {
        return Err(NameError::SingleLabel);
    }
    Ok(())
}

/// Providers that do not authenticate with one static header, and why; the proxy
/// cannot hold their key. (`azure` is not among them: its API keys go in the static
/// `api-key` header; Entra ID tokens, which expire within the hour, are not supported.)
pub(crate) const REFUSED_PROVIDERS: &[(&str, &str)] = &[
    (
        "amazon-bedrock",
        "Amazon Bedrock signs every request with AWS SigV4 (a signature over the request made with the secret key), which one static header cannot carry",
    ),
    (
        "google-vertex",
        "Google Vertex AI authenticates with short-lived OAuth tokens made from a service account, not one static header",
    ),
    (
        "google-vertex-anthropic",
        "Google Vertex AI authenticates with short-lived OAuth tokens made from a service account, not one static header",
    ),
    (
        "github-copilot",
        "GitHub Copilot authenticates through an OAuth login (`opencode auth login`) whose tokens rotate",
    ),
    (
        "github-copilot-enterprise",
        "GitHub Copilot authenticates through an OAuth login (`opencode auth login`) whose tokens rotate",
    ),
    (
        "sap-ai-core",
        "SAP AI Core authenticates with OAuth tokens made from a service key, which expire",
    ),
];

/// Checks an opencode provider id for `[agent.credentials.ID]`: `[a-z0-9][a-z0-9._-]*`
/// (it is a path segment of the credential route), and not a provider the proxy cannot
/// authenticate.
pub(crate) fn check_provider_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        || id.len() > 64
    {
        return Err(format!(
            "provider id {id:?}: an opencode provider id is [a-z0-9][a-z0-9._-]* (at most 64 characters), e.g. anthropic"
        ));
    }
    if let Some((_, why)) = REFUSED_PROVIDERS.iter().find(|(p, _)| *p == id) {
        return Err(format!(
            "provider {id} cannot be given a key by devaipod's proxy: {why}; leave it out of [agent.credentials] (an [agent] secret would put its credentials inside the agent)"
        ));
    }
    Ok(())
}

/// Checks a credential's `base_url`: `https://` (or `http://`) then a host name (never
/// an IP literal), an optional port and path; no user info, query or fragment.
pub(crate) fn check_base_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("base_url {url:?}: {why}");
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(bad("must start with https:// (or http://)"));
    };
    if url.contains('?') || url.contains('#') {
        return Err(bad(
            "has a query or fragment; give the base URL only (scheme, host, port, path)",
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad(
            "has user info (user@ or user:password@); the key belongs in secret",
        ));
    }
    if authority.starts_with('[') || authority.matches(':').count() > 1 {
        return Err(bad(&ip_literal()));
    }
    let host = match authority.split_once(':') {
        Some((h, p)) => {
            parse_port(p).map_err(|e| bad(&e))?;
            h
        }
        None => authority,
    };
    check_name(&host.to_ascii_lowercase()).map_err(|e| bad(&format!("host {host:?}: {e}")))?;
    let path_char = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c);
    if let Some(c) = path.chars().find(|c| !path_char(*c)) {
        return Err(bad(&format!(
            "{c:?} is not allowed in the path (percent-encode it)"
        )));
    }
    Ok(())
}

/// Headers that frame or route the request: the proxy cannot put a key there.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];

/// Checks a credential's `header`: an HTTP header name (a token of RFC 9110), not one of
/// the headers that frame the request.
pub(crate) fn check_header(header: &str) -> Result<(), String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || !header.chars().all(tchar) {
        return Err(format!(
            "header {header:?} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), e.g. x-api-key or authorization"
        ));
    }
    if FRAMING_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {header:?} frames or routes the request; the key needs its own header, e.g. x-api-key or authorization"
        ));
    }
    Ok(())
}

/// Checks a credential's `prefix`: visible ASCII and spaces only (it goes into a
/// header line before the key), at most 64 characters.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 64 || !prefix.chars().all(|c| matches!(c, ' '..='~')) {
        return Err(
            "prefix may hold only visible ASCII characters and spaces (at most 64), e.g. \"Bearer \""
                .into(),
        );
    }
    Ok(())
}

/// One `[agent.credentials.ID]` table, checked: the proxy forwards
/// `credential_route_url(provider)/REST` to `base_url/REST` with `header: prefix+key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialInput {
    /// The opencode provider id ([`check_provider_id`]).
    pub provider: String,
    /// [`check_base_url`].
    pub base_url: String,
    /// [`check_header`], as written.
    pub header: String,
    /// [`check_prefix`]; empty when unset.
    pub prefix: String,
    /// Where the key is: devaipod's environment, or an existing Podman secret.
    pub secret: UserSecret,
    /// The built-in preset this route is (its provider id), `None` for
    /// `[agent.credentials.ID]` ([`super::presets`]).
    pub preset: Option<String>,
}

/// Test-only settings of the proxy, from devaipod's own environment
/// (`DEVAIPOD_TEST_NET_CA`, `DEVAIPOD_TEST_NET_HOSTS`); nothing in a repo or the config
/// file reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TestNet {
    /// The PEM text of a CA the proxy trusts besides the public roots.
    pub ca_pem: Option<String>,
    /// A fixed name map the proxy uses instead of DNS: name -> addresses.
    pub hosts: BTreeMap<String, Vec<String>>,
}

/// The agent's network as the user configured it for this pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NetworkInput {
    pub mode: NetworkMode,
    /// `[agent] allow` and `up --allow`, without repeats, in that order.
    pub allow: Vec<AllowName>,
    /// `[agent.credentials.*]`, by provider id.
    pub credentials: Vec<CredentialInput>,
    /// The host's own interface addresses, as /32 and /128 CIDRs: refused whatever name
    /// resolves to them.
    pub deny_nets: Vec<String>,
    pub test: Option<TestNet>,
}

impl NetworkInput {
    /// What the user should hear about these settings at `up`. `source` is the
    /// setting that chose the mode (`[agent] network = "full"`, `--network full`);
    /// `agent_secrets` are the names of `[agent] secrets`.
    pub(crate) fn warnings(&self, source: &str, agent_secrets: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode == NetworkMode::Full {
            out.push(format!(
                "{source}: the agent can reach any address, including the workspace's loopback services and the host's; see docs/security.md"
            ));
        }
        if !agent_secrets.is_empty() {
            out.push(format!(
                "[agent] secrets {}: these secrets are inside the agent, which can read and send them; [agent.credentials] keeps a provider key in the proxy instead",
                agent_secrets.join(", ")
            ));
        }
        for c in &self.credentials {
            if c.base_url.starts_with("http://") {
                out.push(format!(
                    "[agent.credentials.{}] base_url is http://: the proxy sends the key over the network unencrypted",
                    c.provider
                ));
            }
        }
        if let Some(t) = &self.test {
            if t.ca_pem.is_some() {
                out.push("DEVAIPOD_TEST_NET_CA is set: the proxy trusts a test CA besides the public roots (a test-only setting)".into());
            }
            if !t.hosts.is_empty() {
                out.push("DEVAIPOD_TEST_NET_HOSTS is set: the proxy resolves names from a fixed test map instead of DNS (a test-only setting)".into());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> Result<AllowName, String> {
        s.parse()
    }

    #[test]
    fn allow_entries_that_pass() {
        for (text, name, wildcard, port, shown) in [
            ("example.org", "example.org", false, None, "example.org"),
            ("*.example.org", "example.org", true, None, "*.example.org"),
            (
                "git.example.com:8443",
                "git.example.com",
                false,
                Some(8443),
                "git.example.com:8443",
            ),
            (
                "*.Example.ORG:1",
                "example.org",
                true,
                Some(1),
                "*.example.org:1",
            ),
            (
                "xn--bcher-kva.example",
                "xn--bcher-kva.example",
                false,
                None,
                "xn--bcher-kva.example",
            ),
            (
                "1password.com",
                "1password.com",
                false,
                None,
                "1password.com",
            ),
            (
                "a-b.c-d.example:65535",
                "a-b.c-d.example",
                false,
                Some(65535),
                "a-b.c-d.example:65535",
            ),
            (
                "1.2.3.4.example",
                "1.2.3.4.example",
                false,
                None,
                "1.2.3.4.example",
            ),
        ] {
            let a = allow(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (a.name.as_str(), a.wildcard, a.port),
                (name, wildcard, port),
                "{text}"
            );
            assert_eq!(a.to_string(), shown);
            assert_eq!(serde_json::to_value(&a).expect("json"), shown);
        }
        assert_eq!(allow("example.org").expect("ok").ports(), [443, 80]);
        assert_eq!(allow("example.org:22").expect("ok").ports(), [22]);
    }

    #[test]
    fn ip_literals_are_refused_in_every_spelling() {
        for ip in [
            "1.2.3.4",
            "1.2.3.4:443",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0X7F.0.0.1",
            "0x7f.1",
            "0177.0.0.1",
            "10.0.0.0x1",
            "[::1]",
            "[::1]:443",
            "::1",
            "fe80::1%eth0",
            "::ffff:127.0.0.1",
            "2001:db8::1",
            "*.1.2.3",
            "example.0x",
        ] {
            assert_eq!(allow(ip), Err(ip_literal()), "{ip}");
        }
    }

    #[test]
    fn other_bad_allow_entries_say_why() {
        for (bad, why) in [
            ("", "the name is empty"),
            ("*.", "the name is empty"),
            ("example.org.", "write the name without the trailing dot"),
            ("a..example", "no empty labels"),
            (".example.org", "no empty labels"),
            ("ex_ample.org", "'_' is not allowed in a host name"),
            ("exa mple.org", "' ' is not allowed"),
            ("bücher.example", "xn--"),
            ("-a.example", "starts or ends with '-'"),
            ("a-.example", "starts or ends with '-'"),
            ("a.*.example", "a wildcard is only `*.` at the start"),
            ("*example.org", "a wildcard is only `*.` at the start"),
            ("*.org", "not a whole top-level domain"),
            (
                "localhost",
                "a single-label name is no public internet name",
            ),
            (
                "example.org:0",
                "port \"0\" is not a number from 1 to 65535",
            ),
            ("example.org:65536", "port \"65536\" is not a number"),
            ("example.org:", "port \"\" is not a number"),
            ("example.org:+1", "port \"+1\" is not a number"),
            ("https://example.org", "without a scheme or path"),
            ("example.org/x", "'/' is not allowed"),
        ] {
            let e = allow(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(allow(&long).expect_err("long").contains("longer than 63"));
        let long = format!("{}example", "abcdefghi.".repeat(26));
        assert!(allow(&long).expect_err("long").contains("at most 253"));
        assert_eq!(
            AllowName::try_from("1.2.3.4".to_string()).expect_err("ip"),
            format!("allow entry \"1.2.3.4\": {}", ip_literal())
        );
    }

    #[test]
    fn network_modes() {
        for (text, mode) in [
            ("none", NetworkMode::None),
            ("allowlist", NetworkMode::Allowlist),
            ("full", NetworkMode::Full),
        ] {
            assert_eq!(text.parse::<NetworkMode>(), Ok(mode));
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(NetworkMode::default(), NetworkMode::Allowlist);
        let e = "Full".parse::<NetworkMode>().expect_err("case");
        assert!(
            e.starts_with("network mode \"Full\" is not one of \"allowlist\""),
            "{e}"
        );
    }

    #[test]
    fn provider_ids() {
        for good in ["anthropic", "openai", "azure", "my.provider_2-x", "302ai"] {
            assert_eq!(check_provider_id(good), Ok(()), "{good}");
        }
        for bad in ["", "Anthropic", "-x", ".x", "a/b", "a b", &"a".repeat(65)] {
            let e = check_provider_id(bad).expect_err(bad);
            assert!(e.contains("[a-z0-9][a-z0-9._-]*"), "{bad}: {e}");
        }
        for (id, why) in [
            ("amazon-bedrock", "SigV4"),
            ("google-vertex", "short-lived OAuth tokens"),
            ("google-vertex-anthropic", "short-lived OAuth tokens"),
            ("github-copilot", "OAuth login"),
            ("github-copilot-enterprise", "OAuth login"),
            ("sap-ai-core", "service key"),
        ] {
            let e = check_provider_id(id).expect_err(id);
            assert!(
                e.starts_with(&format!(
                    "provider {id} cannot be given a key by devaipod's proxy: "
                )) && e.contains(why),
                "{id}: {e}"
            );
        }
    }

    #[test]
    fn base_urls() {
        for good in [
            "https://api.anthropic.com/v1",
            "https://api.example.com",
            "https://api.example.com/",
            "http://llm.example.test:8080/openai/v1",
            "https://Res.OpenAI.Azure.com/openai",
            "https://x.example/a%20b/~c",
        ] {
            assert_eq!(check_base_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("api.example.com", "must start with https:// (or http://)"),
            ("ftp://api.example.com", "must start with https://"),
            ("HTTPS://api.example.com", "must start with https://"),
            ("https://", "the name is empty"),
            ("https://1.2.3.4/v1", "an IP address literal"),
            ("https://[::1]:443/v1", "an IP address literal"),
            ("https://2130706433", "an IP address literal"),
            ("https://0x7f.1/", "an IP address literal"),
            ("https://localhost:11434/v1", "single-label"),
            ("https://user:pw@api.example.com", "user info"),
            ("https://api.example.com/v1?key=1", "query or fragment"),
            ("https://api.example.com/#x", "query or fragment"),
            ("https://api.example.com:0/", "port \"0\""),
            ("https://api.example.com:99999/", "port \"99999\""),
            (
                "https://api.exa mple.com/",
                "' ' is not allowed in a host name",
            ),
            (
                "https://api.example.com/a b",
                "' ' is not allowed in the path",
            ),
            (
                "https://api.example.com/\"",
                "'\"' is not allowed in the path",
            ),
        ] {
            let e = check_base_url(bad).expect_err(bad);
            assert!(
                e.starts_with(&format!("base_url {bad:?}: ")) && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn headers_and_prefixes() {
        for good in [
            "x-api-key",
            "authorization",
            "Authorization",
            "api-key",
            "x-goog-api-key",
        ] {
            assert_eq!(check_header(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "is not an HTTP header name"),
            ("x api key", "is not an HTTP header name"),
            ("x-api-key:", "is not an HTTP header name"),
            ("x\r\ny", "is not an HTTP header name"),
            ("Host", "frames or routes the request"),
            ("content-length", "frames or routes the request"),
            ("Transfer-Encoding", "frames or routes the request"),
        ] {
            let e = check_header(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        for good in ["", "Bearer ", "Token  x!~"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for bad in ["Bearer\r\n", "a\nb", "\t", "é", &"x".repeat(65)] {
            assert!(
                check_prefix(bad)
                    .expect_err(bad)
                    .starts_with("prefix may hold only visible ASCII")
            );
        }
    }

    #[test]
    fn warnings_name_the_risk() {
        let mut n = NetworkInput::default();
        assert!(
            n.warnings("[agent] network = \"allowlist\"", &[])
                .is_empty()
        );
        n.mode = NetworkMode::Full;
        n.credentials.push(CredentialInput {
            provider: "local".into(),
            base_url: "http://llm.example.test/v1".into(),
            header: "authorization".into(),
            prefix: "Bearer ".into(),
            secret: UserSecret {
                env_name: "K".into(),
                existing: None,
            },
            preset: None,
        });
        n.test = Some(TestNet {
            ca_pem: Some("pem".into()),
            hosts: [("a.test".to_string(), vec!["198.51.100.1".to_string()])].into(),
        });
        assert_eq!(
            n.warnings("--network full", &["A".into(), "B".into()]),
            [
                "--network full: the agent can reach any address, including the workspace's loopback services and the host's; see docs/security.md",
                "[agent] secrets A, B: these secrets are inside the agent, which can read and send them; [agent.credentials] keeps a provider key in the proxy instead",
                "[agent.credentials.local] base_url is http://: the proxy sends the key over the network unencrypted",
                "DEVAIPOD_TEST_NET_CA is set: the proxy trusts a test CA besides the public roots (a test-only setting)",
                "DEVAIPOD_TEST_NET_HOSTS is set: the proxy resolves names from a fixed test map instead of DNS (a test-only setting)",
            ]
        );
    }
}
