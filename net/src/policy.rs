//! Who may go where: the entries of a pod's allowlist, the names a request may ask for,
//! and the addresses a name may resolve to. Pure: no I/O, no clock, no DNS.
//!
//! The proxy allows names, never addresses: a requested host that is an IP address in any
//! spelling a resolver or `inet_aton` accepts is refused before anything else, and a name
//! is connected to only when every address it resolves to is a public one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why the proxy answered a request itself: a stable code for the log, `stats.json` and
/// the `X-Devaipod-Refused` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The name (and port) is on no allowlist entry.
    NotAllowed,
    /// The pod's network mode is `none`: credential routes only.
    NetworkNone,
    /// The requested host is an IP address.
    IpLiteral,
    /// The request (its target, host, port or path) is not one the proxy understands.
    Malformed,
    /// The name resolves to a loopback, private, link-local or other special address.
    PrivateAddress,
    /// The name resolves to an address of the host (`deny_nets`).
    HostAddress,
    /// An origin-form path that is no route of the proxy.
    UnknownRoute,
    /// A credential route for a provider that is not configured.
    UnknownProvider,
    /// The name has no address.
    ResolveFailed,
    /// No address of the name accepted the connection.
    ConnectFailed,
    /// The connection (or its TLS handshake) took longer than the connect timeout.
    ConnectTimeout,
    /// The upstream's TLS or HTTP failed.
    UpstreamFailed,
}

impl Reason {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Reason::NotAllowed => "not-allowed",
            Reason::NetworkNone => "network-none",
            Reason::IpLiteral => "ip-literal",
            Reason::Malformed => "malformed",
            Reason::PrivateAddress => "private-address",
            Reason::HostAddress => "host-address",
            Reason::UnknownRoute => "unknown-route",
            Reason::UnknownProvider => "unknown-provider",
            Reason::ResolveFailed => "resolve-failed",
            Reason::ConnectFailed => "connect-failed",
            Reason::ConnectTimeout => "connect-timeout",
            Reason::UpstreamFailed => "upstream-failed",
        }
    }

    /// The HTTP status the proxy answers with.
    pub(crate) fn status(self) -> u16 {
        match self {
            Reason::Malformed => 400,
            Reason::UnknownRoute | Reason::UnknownProvider => 404,
            Reason::ResolveFailed | Reason::ConnectFailed | Reason::UpstreamFailed => 502,
            Reason::ConnectTimeout => 504,
            Reason::NotAllowed
            | Reason::NetworkNone
            | Reason::IpLiteral
            | Reason::PrivateAddress
            | Reason::HostAddress => 403,
        }
    }

    /// A decision of the policy (logged and counted as `refuse`), as opposed to a
    /// failure of an allowed request (`fail`).
    pub(crate) fn is_refusal(self) -> bool {
        self.status() < 500
    }
}

/// The proxy's own answer to a request it does not pass on: a reason code and a
/// one-line, plain-text message for the agent (and whoever reads its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// The ports a plain `NAME` (or `*.NAME`) entry opens.
pub(crate) const DEFAULT_PORTS: [u16; 2] = [443, 80];

/// One entry of an allowlist: `NAME`, `NAME:PORT`, `*.NAME` or `*.NAME:PORT`.
/// Stored lowercase, without a trailing dot; `Display` gives that canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `*.NAME`: every name under NAME, not NAME itself.
    subdomains: bool,
    name: String,
    /// None: the default ports (443 and 80).
    port: Option<u16>,
}

/// Why an allowlist entry is not one; its Display names the entry, the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryError(String);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EntryError {}

impl Entry {
    pub(crate) fn parse(text: &str) -> Result<Entry, EntryError> {
        let fail = |problem: String| {
            EntryError(format!(
                "allowlist entry {text:?}: {problem} (entries are NAME, NAME:PORT, *.NAME or *.NAME:PORT, e.g. example.com or *.example.org:8443)"
            ))
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail("is empty".into()));
        }
        let (host, port) = match split_host_port(trimmed) {
            HostPort::IpLiteral => {
                return Err(fail(
                    "is an IP address; the allowlist takes names only, and the proxy refuses IP addresses".into(),
                ));
            }
            HostPort::Split(host, port) => (host, port),
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                parse_port(p)
                    .ok_or_else(|| fail(format!("port {p:?} is not a number from 1 to 65535")))?,
            ),
        };
        let (subdomains, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let name = normalize(name);
        if let Err(problem) = check_name(&name) {
            return Err(match problem {
                NameProblem::IpLike => fail(
                    "is an IP address; the allowlist takes names only, and the proxy refuses IP addresses".into(),
                ),
                NameProblem::Wildcard => fail(
                    "'*' may only be the whole first label, as in *.example.com".into(),
                ),
                other => fail(other.to_string()),
            });
        }
        if subdomains && !name.contains('.') {
            return Err(fail(format!(
                "*.{name} would open every name under the top-level domain {name}; name at least two labels after '*.'"
            )));
        }
        Ok(Entry {
            subdomains,
            name,
            port,
        })
    }

    /// Whether this entry allows a connection to `name` (normalized, as returned by
    /// [`check_request_host`]) on `port`.
    pub(crate) fn allows(&self, name: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        };
        let name_ok = if self.subdomains {
            name.len() > self.name.len()
                && name.ends_with(self.name.as_str())
                && name.as_bytes()[name.len() - self.name.len() - 1] == b'.'
        } else {
            name == self.name
        };
        port_ok && name_ok
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A pod's allowlist, in the order its entries were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Parses every entry; the error names the first bad one.
    pub(crate) fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, EntryError> {
        let mut list = Allowlist::default();
        for text in texts {
            list.add(Entry::parse(text.as_ref())?);
        }
        Ok(list)
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds an entry unless it is there already; says whether it was added.
    pub(crate) fn add(&mut self, entry: Entry) -> bool {
        if self.entries.contains(&entry) {
            return false;
        }
        self.entries.push(entry);
        true
    }

    /// Removes the entry spelled the same (after normalizing); says whether it was there.
    /// `example.com` does not remove `example.com:443` nor `*.example.com`.
    pub(crate) fn remove(&mut self, entry: &Entry) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e != entry);
        self.entries.len() != before
    }

    pub(crate) fn allows(&self, name: &str, port: u16) -> bool {
        self.entries.iter().any(|e| e.allows(name, port))
    }

    /// The canonical spellings, for `allow.json` and `allow`'s output.
    pub(crate) fn to_strings(&self) -> Vec<String> {
        self.entries.iter().map(Entry::to_string).collect()
    }
}

/// Checks the host of a request (CONNECT's authority or an absolute URI's host, without
/// the port) and returns it normalized (lowercase, no trailing dot).
pub(crate) fn check_request_host(host: &str) -> Result<String, Refusal> {
    let shown = printable(host);
    let ip_literal = || {
        Refusal::new(
            Reason::IpLiteral,
            format!(
                "devaipod: {shown} is an IP address; this pod's proxy allows names only (IP addresses are refused in every spelling)"
            ),
        )
    };
    if host.starts_with('[') || host.contains(':') {
        return Err(ip_literal());
    }
    let name = normalize(host);
    match check_name(&name) {
        Ok(()) => Ok(name),
        Err(NameProblem::IpLike) => Err(ip_literal()),
        Err(problem) => Err(Refusal::new(
            Reason::Malformed,
            format!("devaipod: the host {shown} is not a valid name: {problem}"),
        )),
    }
}

/// Whether an origin or CONNECT port is one: 1-65535, decimal digits only.
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A text safe to put in a log line, a message or `stats.json`: the characters of names,
/// addresses and ports only, at most 100 of them; `-` when nothing is left.
pub(crate) fn printable(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']' | '*')
        })
        .take(100)
        .collect();
    if kept.is_empty() { "-".into() } else { kept }
}

enum HostPort<'a> {
    IpLiteral,
    Split(&'a str, Option<&'a str>),
}

fn split_host_port(text: &str) -> HostPort<'_> {
    if text.starts_with('[') {
        return HostPort::IpLiteral;
    }
    match text.rsplit_once(':') {
        // More than one colon: a bare IPv6 address (with or without a port).
        Some((host, _)) if host.contains(':') => HostPort::IpLiteral,
        Some((host, port)) => HostPort::Split(host, Some(port)),
        None => HostPort::Split(text, None),
    }
}

fn normalize(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => lower,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NameProblem {
    Empty,
    TooLong,
    EmptyLabel,
    LabelTooLong(String),
    BadCharacter(String),
    Hyphen(String),
    Wildcard,
    /// The last label is numeric or 0x-hex: `inet_aton` (and so curl, glibc, browsers)
    /// would read the name as an IPv4 address (127.1, 2130706433, 0x7f000001, 0177.0.0.1).
    IpLike,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("the name is empty"),
            NameProblem::TooLong => f.write_str("the name is longer than 253 characters"),
            NameProblem::EmptyLabel => {
                f.write_str("it has an empty label (two dots in a row, or a leading dot)")
            }
            NameProblem::LabelTooLong(l) => {
                write!(f, "the label {l:?} is longer than 63 characters")
            }
            NameProblem::BadCharacter(l) => write!(
                f,
                "the label {:?} has a character other than letters, digits and '-'",
                printable(l)
            ),
            NameProblem::Hyphen(l) => write!(f, "the label {l:?} starts or ends with '-'"),
            NameProblem::Wildcard => f.write_str("'*' is not a character of a name"),
            NameProblem::IpLike => f.write_str("it is an IP address"),
        }
    }
}

/// A DNS name of letter-digit-hyphen labels (already normalized), that no IPv4 parser
/// would take for an address.
fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > 253 {
        return Err(NameProblem::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(NameProblem::EmptyLabel);
        }
        if label.contains('*') {
            return Err(NameProblem::Wildcard);
        }
        if label.len() > 63 {
            return Err(NameProblem::LabelTooLong(label.to_string()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(NameProblem::BadCharacter(label.to_string()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameProblem::Hyphen(label.to_string()));
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameProblem::IpLike);
    }
    Ok(())
}

/// An address block: `ADDRESS/PREFIX`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not an address block ({why}; write e.g. 192.0.2.0/24, 2001:db8::/32 or 192.0.2.7)"
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let written: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max: u8 = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(bad(&format!("the prefix length must be 0 to {max}"))),
            },
        };
        // An IPv4-mapped block (::ffff:192.0.2.0/120) is the IPv4 block it maps.
        let addr = written.to_canonical();
        let prefix = match (written, addr) {
            (IpAddr::V6(_), IpAddr::V4(_)) if prefix >= 96 => prefix - 96,
            (IpAddr::V6(_), IpAddr::V4(_)) => {
                return Err(bad(
                    "an IPv4-mapped block needs a prefix length of 96 or more",
                ));
            }
            _ => prefix,
        };
        Ok(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(a.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_eq(net.to_bits(), a.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(width - prefix);
    (a >> shift) == (b >> shift)
}

/// The addresses a name may resolve to for the proxy to connect to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddressPolicy {
    deny: Vec<Cidr>,
    /// Tests serve their fake upstreams on the loopback; nothing outside `cfg(test)` can
    /// set this (it is not in the configuration file).
    #[cfg(test)]
    permit_loopback: bool,
}

impl AddressPolicy {
    /// `deny`: blocks refused besides the special ranges (the host's own addresses).
    pub(crate) fn new(deny: Vec<Cidr>) -> Self {
        AddressPolicy {
            deny,
            #[cfg(test)]
            permit_loopback: false,
        }
    }

    /// The same policy, but 127.0.0.0/8 and ::1 are allowed: for tests only.
    #[cfg(test)]
    pub(crate) fn permitting_loopback_for_tests(mut self) -> Self {
        self.permit_loopback = true;
        self
    }

    /// Refuses an address that is special (see [`special_kind`]) or inside a denied block.
    /// `name` is only for the message.
    pub(crate) fn check(&self, name: &str, addr: IpAddr) -> Result<(), Refusal> {
        #[cfg(test)]
        if self.permit_loopback && addr.to_canonical().is_loopback() {
            return Ok(());
        }
        if let Some(kind) = special_kind(addr) {
            return Err(Refusal::new(
                Reason::PrivateAddress,
                format!(
                    "devaipod: {name} resolves to {addr}, a {kind} address; the proxy connects only to public addresses"
                ),
            ));
        }
        if let Some(net) = self.deny.iter().find(|n| n.contains(addr)) {
            return Err(Refusal::new(
                Reason::HostAddress,
                format!(
                    "devaipod: {name} resolves to {addr}, an address of the host (in {net}); the proxy does not connect to the host"
                ),
            ));
        }
        Ok(())
    }

    /// Checks every address: one bad address refuses the name (a name that resolves to a
    /// public and a private address would otherwise be a way in, by chance or by design).
    pub(crate) fn check_all(&self, name: &str, addrs: &[IpAddr]) -> Result<(), Refusal> {
        addrs.iter().try_for_each(|a| self.check(name, *a))
    }
}

/// The kind of a special address (never a destination of the proxy), or None for a
/// public one. IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 addresses are judged by
/// the IPv4 address inside them. The documentation ranges 192.0.2.0/24, 198.51.100.0/24
/// and 203.0.113.0/24 are public here: the tests' fake internet lives there.
pub(crate) fn special_kind(addr: IpAddr) -> Option<&'static str> {
    match addr.to_canonical() {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(addr: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = addr.octets();
    let kind = match (a, b) {
        _ if addr.is_broadcast() => "broadcast",
        (0, _) => "\"this network\" (0.0.0.0/8)",
        (10, _) | (192, 168) => "private",
        (172, 16..=31) => "private",
        (100, 64..=127) => "shared (CGNAT, 100.64.0.0/10)",
        (127, _) => "loopback",
        (169, 254) => "link-local",
        (224..=239, _) => "multicast",
        (240..=255, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(kind)
}

fn special_v6(addr: Ipv6Addr) -> Option<&'static str> {
    let seg = addr.segments();
    if addr.is_unspecified() {
        return Some("unspecified");
    }
    if addr.is_loopback() {
        return Some("loopback");
    }
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::a.b.c.d, the deprecated IPv4-compatible form: never a real destination.
    if seg[..6] == [0; 6] {
        return Some("IPv4-compatible");
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return special_v4(embedded_v4(seg[6], seg[7]));
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16-47.
    if seg[0] == 0x2002
        && let Some(kind) = special_v4(embedded_v4(seg[1], seg[2]))
    {
        return Some(kind);
    }
    let kind = match seg[0] {
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        s if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn entry(text: &str) -> Entry {
        match Entry::parse(text) {
            Ok(e) => e,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    #[track_caller]
    fn entry_error(text: &str) -> String {
        match Entry::parse(text) {
            Ok(e) => panic!("{text:?} should be refused, parsed as {e}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn entries_parse_to_their_canonical_spelling() {
        for (text, canonical) in [
            ("example.com", "example.com"),
            ("Example.COM.", "example.com"),
            ("  example.com  ", "example.com"),
            ("example.com:8443", "example.com:8443"),
            ("EXAMPLE.com.:8443", "example.com:8443"),
            ("*.example.org", "*.example.org"),
            ("*.Example.org.:22", "*.example.org:22"),
            ("localhost", "localhost"),
            ("a-b.c1.io", "a-b.c1.io"),
            ("1.2.3.4.nip.io", "1.2.3.4.nip.io"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(entry(text).to_string(), canonical, "{text:?}");
        }
    }

    #[test]
    fn entries_that_are_not_names_are_refused_with_the_reason() {
        for (text, says) in [
            ("", "is empty"),
            ("   ", "is empty"),
            ("127.0.0.1", "is an IP address"),
            ("127.1", "is an IP address"),
            ("2130706433", "is an IP address"),
            ("0x7f000001", "is an IP address"),
            ("0177.0.0.1", "is an IP address"),
            ("[::1]", "is an IP address"),
            ("[::1]:443", "is an IP address"),
            ("::1", "is an IP address"),
            ("::ffff:127.0.0.1", "is an IP address"),
            ("10.0.0.1:8080", "is an IP address"),
            ("example.123", "is an IP address"),
            ("example.0xff", "is an IP address"),
            ("a..b", "empty label"),
            (".example.com", "empty label"),
            ("example.com..", "empty label"),
            ("exa mple.com", "character other than"),
            ("exa_mple.com", "character other than"),
            ("b\u{fc}cher.example", "character other than"),
            ("-a.example", "starts or ends with '-'"),
            ("a-.example", "starts or ends with '-'"),
            ("example.com:", "is not a number"),
            ("example.com:0", "is not a number"),
            ("example.com:65536", "is not a number"),
            ("example.com:+80", "is not a number"),
            ("example.com:http", "is not a number"),
            ("*.com", "top-level domain"),
            ("*", "'*' may only be"),
            ("*example.com", "'*' may only be"),
            ("foo.*.example.com", "'*' may only be"),
            ("*.*.example.com", "'*' may only be"),
        ] {
            let message = entry_error(text);
            assert!(message.contains(says), "{text:?}: {message}");
            assert!(message.contains("e.g. example.com"), "{text:?}: {message}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(entry_error(&long_label).contains("longer than 63"));
        let long_name = format!("{}example", "abcdefghi.".repeat(25));
        assert!(entry_error(&long_name).contains("longer than 253"));
    }

    #[test]
    fn a_name_entry_opens_ports_443_and_80_only() {
        let e = entry("example.com");
        assert!(e.allows("example.com", 443));
        assert!(e.allows("example.com", 80));
        assert!(!e.allows("example.com", 8443));
        assert!(!e.allows("www.example.com", 443));
        assert!(!e.allows("notexample.com", 443));
        assert!(!e.allows("example.com.evil.test", 443));
    }

    #[test]
    fn a_port_entry_opens_that_port_only() {
        let e = entry("git.example.com:8443");
        assert!(e.allows("git.example.com", 8443));
        assert!(!e.allows("git.example.com", 443));
        assert!(!e.allows("git.example.com", 80));
    }

    #[test]
    fn a_wildcard_opens_subdomains_at_any_depth_but_not_the_apex() {
        let e = entry("*.example.org");
        assert!(e.allows("a.example.org", 443));
        assert!(e.allows("a.b.example.org", 80));
        assert!(!e.allows("example.org", 443));
        assert!(!e.allows("badexample.org", 443));
        assert!(!e.allows("a.example.org", 22));
        assert!(!e.allows("a.example.org.evil.test", 443));
        let p = entry("*.example.org:22");
        assert!(p.allows("a.example.org", 22));
        assert!(!p.allows("a.example.org", 443));
    }

    #[test]
    fn the_allowlist_adds_once_and_removes_the_same_spelling_only() {
        let mut list = Allowlist::parse(&["example.com", "*.example.org:22"]).expect("parses");
        assert!(!list.add(entry("EXAMPLE.com.")));
        assert!(list.add(entry("example.com:443")));
        assert_eq!(
            list.to_strings(),
            ["example.com", "*.example.org:22", "example.com:443"]
        );
        assert!(list.remove(&entry("example.com")));
        assert!(!list.remove(&entry("example.com")));
        assert!(!list.remove(&entry("*.example.org")));
        assert_eq!(list.to_strings(), ["*.example.org:22", "example.com:443"]);
        assert!(list.allows("example.com", 443));
        assert!(!list.allows("example.com", 80));
        assert!(list.allows("x.example.org", 22));
        assert!(!Allowlist::default().allows("example.com", 443));
    }

    #[test]
    fn an_allowlist_with_a_bad_entry_names_it() {
        let err = Allowlist::parse(&["example.com", "10.1.2.3"]).expect_err("refused");
        assert!(err.to_string().contains("\"10.1.2.3\""), "{err}");
    }

    #[test]
    fn requested_hosts_are_normalized() {
        for (host, name) in [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("a.b-c.example", "a.b-c.example"),
        ] {
            assert_eq!(check_request_host(host), Ok(name.to_string()), "{host:?}");
        }
    }

    #[test]
    fn requested_ip_literals_are_refused_in_every_spelling() {
        for host in [
            "127.0.0.1",
            "127.0.0.1.",
            "10.0.0.1",
            "198.51.100.7",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0x7f.0x0.0x0.0x1",
            "0177.0.0.1",
            "0177.0000.0000.0001",
            "127.1",
            "127.0.1",
            "0",
            "0x",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[fe80::1%25eth0]",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "example.123",
            "foo.0x1f",
        ] {
            let refusal = check_request_host(host).expect_err(host);
            assert_eq!(
                refusal.reason,
                Reason::IpLiteral,
                "{host:?}: {}",
                refusal.message
            );
            assert!(
                refusal.message.contains("allows names only"),
                "{}",
                refusal.message
            );
        }
    }

    #[test]
    fn requested_hosts_that_are_not_names_are_malformed() {
        for host in [
            "",
            ".",
            "a..b",
            "exa mple.com",
            "ex%61mple.com",
            "under_score.example",
            "-x.example",
            "*.example.com",
            "b\u{fc}cher.example",
            "evil.test\r\nX-Injected",
        ] {
            let refusal = check_request_host(host).expect_err(host);
            assert_eq!(
                refusal.reason,
                Reason::Malformed,
                "{host:?}: {}",
                refusal.message
            );
            assert!(!refusal.message.contains('\n'), "{:?}", refusal.message);
        }
    }

    #[test]
    fn printable_keeps_only_name_characters() {
        assert_eq!(printable("example.com"), "example.com");
        assert_eq!(printable("[::1]"), "[::1]");
        assert_eq!(printable("a\r\nb c"), "abc");
        assert_eq!(printable("\n"), "-");
        assert_eq!(printable(&"a".repeat(500)).len(), 100);
    }

    #[test]
    fn ports_are_decimal_1_to_65535() {
        assert_eq!(parse_port("443"), Some(443));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["", "0", "65536", "+1", "-1", " 1", "0x50", "000000443"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[track_caller]
    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn special_addresses_are_refused() {
        for (addr, kind) in [
            ("0.0.0.0", "this network"),
            ("0.1.2.3", "this network"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("2002:0a00:0001::1", "private"),
            ("2002:7f00:0001::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("ff02::1", "multicast"),
        ] {
            let found = special_kind(ip(addr));
            assert!(
                found.is_some_and(|k| k.contains(kind)),
                "{addr}: expected {kind}, got {found:?}"
            );
        }
    }

    #[test]
    fn public_and_documentation_addresses_are_not_special() {
        for addr in [
            "198.51.100.1",
            "198.51.100.255",
            "203.0.113.9",
            "192.0.2.1",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.1.1",
            "192.167.1.1",
            "223.255.255.255",
            "::ffff:198.51.100.1",
            "64:ff9b::198.51.100.1",
            "2002:c633:6401::1",
            "2001:db8::1",
            "2606:4700::1111",
            "fbff::1",
        ] {
            assert_eq!(special_kind(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net = Cidr::parse("192.0.2.0/24").expect("parses");
        assert!(net.contains(ip("192.0.2.77")));
        assert!(net.contains(ip("::ffff:192.0.2.77")));
        assert!(!net.contains(ip("192.0.3.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let one = Cidr::parse("198.51.100.7").expect("parses");
        assert_eq!(one.to_string(), "198.51.100.7/32");
        assert!(one.contains(ip("198.51.100.7")));
        assert!(!one.contains(ip("198.51.100.8")));
        let v6 = Cidr::parse("2001:db8:1::/48").expect("parses");
        assert!(v6.contains(ip("2001:db8:1:ffff::1")));
        assert!(!v6.contains(ip("2001:db8:2::1")));
        let mapped = Cidr::parse("::ffff:203.0.113.0/120").expect("parses");
        assert_eq!(mapped.to_string(), "203.0.113.0/24");
        assert!(mapped.contains(ip("203.0.113.5")));
        assert!(mapped.contains(ip("::ffff:203.0.113.5")));
        assert!(Cidr::parse("::ffff:203.0.113.0/64").is_err());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("parses")
                .contains(ip("8.8.8.8"))
        );
        for bad in [
            "",
            "example.com",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "::/129",
            "10.0.0.0/+8",
        ] {
            let err = Cidr::parse(bad).expect_err(bad);
            assert!(err.contains("e.g. 192.0.2.0/24"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_address_policy_refuses_special_and_denied_addresses() {
        let policy = AddressPolicy::new(vec![Cidr::parse("203.0.113.0/28").expect("parses")]);
        assert_eq!(policy.check("a.test", ip("198.51.100.1")), Ok(()));
        assert_eq!(policy.check("a.test", ip("203.0.113.200")), Ok(()));
        let private = policy.check("a.test", ip("10.0.0.1")).expect_err("private");
        assert_eq!(private.reason, Reason::PrivateAddress);
        assert!(
            private
                .message
                .contains("a.test resolves to 10.0.0.1, a private address")
        );
        let host = policy.check("a.test", ip("203.0.113.3")).expect_err("host");
        assert_eq!(host.reason, Reason::HostAddress);
        assert!(host.message.contains("203.0.113.0/28"), "{}", host.message);
        let loopback = policy
            .check("a.test", ip("127.0.0.1"))
            .expect_err("loopback");
        assert_eq!(loopback.reason, Reason::PrivateAddress);
    }

    #[test]
    fn one_bad_address_refuses_the_name() {
        let policy = AddressPolicy::new(Vec::new());
        let addrs = [ip("198.51.100.1"), ip("fd00::1")];
        let refusal = policy.check_all("mixed.test", &addrs).expect_err("refused");
        assert!(refusal.message.contains("fd00::1"), "{}", refusal.message);
        assert_eq!(policy.check_all("ok.test", &[ip("198.51.100.1")]), Ok(()));
    }

    #[test]
    fn the_test_knob_permits_loopback_only() {
        let policy = AddressPolicy::new(Vec::new()).permitting_loopback_for_tests();
        assert_eq!(policy.check("x", ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check("x", ip("::1")), Ok(()));
        assert!(policy.check("x", ip("10.0.0.1")).is_err());
        assert!(policy.check("x", ip("169.254.169.254")).is_err());
    }

    #[test]
    fn reasons_map_to_statuses() {
        assert_eq!(Reason::NotAllowed.status(), 403);
        assert_eq!(Reason::IpLiteral.status(), 403);
        assert_eq!(Reason::Malformed.status(), 400);
        assert_eq!(Reason::UnknownRoute.status(), 404);
        assert_eq!(Reason::ConnectTimeout.status(), 504);
        assert!(Reason::PrivateAddress.is_refusal());
        assert!(!Reason::ResolveFailed.is_refusal());
    }
}
