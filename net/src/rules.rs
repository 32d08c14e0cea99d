//! The agent's nftables rules and the `rules` command that installs them.
//!
//! The ruleset is a pure function of the agent's uid, its opencode port and the
//! listeners of other uids it may reach ([`ruleset`]). `rules` installs it in one
//! nf_tables transaction, reads the table back from the kernel and compares it
//! expression by expression, and only then writes the marker the agent's gate waits
//! for ([`crate::gate`]).
//!
//! # The rules, and why they hold
//!
//! One table, `inet devaipod` (IPv4 and IPv6 alike), one base chain `output` (filter,
//! hook output, priority 0, policy accept): every packet a socket of this network
//! namespace sends passes it, loopback included (a loopback packet goes out through
//! the output hook to `lo` and comes back in). In `nft` syntax, for agent uid A, its
//! opencode port P, mark M = [`AGENT_MARK`] and each allowance UID:PORT:
//!
//! ```text
//! 1  meta skuid A oifname != "lo" counter reject with icmpx admin-prohibited
//! 2  meta skuid A meta l4proto != tcp counter reject with icmpx admin-prohibited
//! 3  meta skuid A ct state invalid,untracked counter reject with icmpx admin-prohibited
//! 4  oifname "lo" meta skuid A ct state new ct mark set M
//! 5  oifname "lo" meta skuid A ct mark != M tcp sport != P tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept
//! 6  oifname "lo" meta skuid A ct mark != M tcp sport != P counter reject with tcp reset
//! 7  oifname "lo" ct mark M meta skuid A accept
//! 8  oifname "lo" ct mark M meta skuid UID meta nfproto ipv4 ip saddr 127.0.0.1 tcp sport PORT accept   (one per allowance)
//! 9  oifname "lo" ct mark M tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept
//! 10 oifname "lo" ct mark M meta skuid != A meta l4proto tcp counter reject with tcp reset
//! ```
//!
//! - `meta skuid` is the owner (fsuid) of the socket that sends the packet, read from
//!   the socket's file (for a SYN-ACK, the listening socket's). A packet without a
//!   full socket behind it (a RST or ICMP error the kernel makes, a TIME_WAIT ack, a
//!   syncookie SYN-ACK, a packet of an accepted connection before `accept` returns it)
//!   has no skuid: every `meta skuid` match fails on it, `!=` included. Rules 1-6
//!   therefore only ever act on the agent's own sockets, and rule 9 exists for the
//!   socketless case (below).
//! - 1, 2: the agent sends nothing but TCP, and only on the loopback. Every local
//!   address (127.0.0.1, ::1, the pod's own eth0 addresses) routes through `lo`; the
//!   bridge gateway, the host, DNS servers and the internet do not. UDP (DNS), ICMP
//!   (ping sockets), SCTP and the rest are refused on the loopback too.
//! - 3: the reply filter (7-10) depends on conntrack. A packet of the agent's that
//!   conntrack does not track (a `notrack` rule someone with CAP_NET_ADMIN added, a
//!   packet conntrack calls invalid) is refused instead of trusted.
//! - 4: every connection the agent opens on the loopback is marked (on its first
//!   packet, the SYN). The mark lives in the conntrack entry, so it outlives a
//!   re-install of this table (a restart keeps the agent's connections confined).
//! - 5, 6: connections *to* the agent (not marked: their SYN is not the agent's) are
//!   answered on its opencode port P only. Without them the agent could listen on
//!   any other port or address (127.0.0.1:7001, the pod's eth0 address, ::1) and
//!   impersonate a workspace service that is not running yet, or one it raced to the
//!   port. 5 turns the agent's SYN-ACK from any other port into a RST+ACK, so the
//!   workspace's client sees `connection refused` at once, as for a port nobody
//!   listens on; 6 resets any other packet the agent sends in such a connection. The
//!   residual case is syncookies: when the agent's listener's SYN queue overflows,
//!   the kernel answers with a cookie SYN-ACK that carries no socket, so 5 does not
//!   see it and the peer's handshake completes. Data the peer sends after it is
//!   queued on the agent's new socket, and the agent can `accept` and read it before
//!   its first reply is reset by 6 (until `accept` the socket has no file, so its
//!   ACKs pass too). So a workspace client can be made to *send* one flight of data
//!   to such a listener, never to get an answer from it. The agent can bring this
//!   about (many parallel connects of its own to its listener of a small backlog fill
//!   that listener's SYN queue); closing it would need the rules to tell an
//!   accepted-but-not-yet-`accept`ed socket of the agent's from others', which
//!   `meta skuid` cannot.
//! - 7-10 look at the other direction: packets sent *to* the agent in a marked
//!   connection. The first of them is the SYN-ACK, and a SYN-ACK's skuid is the owner
//!   of the listening socket. So: the agent's own listeners answer (7, its test
//!   servers on any port), the proxy and the gator answer on their ports and on
//!   127.0.0.1 only, where they listen (8: a workspace process of the same uid on
//!   another local address, ::1 or the pod's eth0 address, is not them), and every
//!   other SYN-ACK is turned into a RST+ACK on its way to the agent (9), which then
//!   sees `connect: connection refused`, the same answer as for a port nobody listens
//!   on (so the agent cannot even tell which ports the workspace listens on). 10 is
//!   defence in depth: any other packet of another uid's socket in a marked connection.
//! - Why 5 and 9 rewrite instead of `reject with tcp reset`: a reject sends its RST to
//!   the *sender* of the rejected packet, i.e. to the listener. The client would
//!   hear nothing and retry its SYN for about two minutes (and the retries would tell
//!   it that something listens there).
//! - Why 9 does not look at skuid: under a SYN flood (the agent can fill a workspace
//!   listener's SYN queue) the kernel answers with syncookie SYN-ACKs, which carry no
//!   socket, so no `meta skuid` rule sees them. Matched on skuid alone (`skuid != A
//!   reject`), the agent completes such handshakes and its data reaches the workspace's
//!   server (seen on Linux 6.18: with `net.ipv4.tcp_syncookies=2` every time, and with
//!   the default 1, 198 of 200 parallel connects to a listener of backlog 1 were
//!   completed). Rule 9 refuses every
//!   SYN-ACK that 7 and 8 did not accept, socket or not. The price: under syncookies the
//!   agent cannot reach the proxy or its own listeners either (fail closed).
//! - No `ct direction` anywhere: in a marked connection the original direction is the
//!   agent's socket; a non-agent packet in it is refused whichever way it goes. In an
//!   unmarked one, every packet of the agent's is its listener's side.
//! - Connections to the agent on P (the workspace to opencode on 4096) pass 5 and 6,
//!   and their packets of other uids are not in a marked connection, so they pass too.
//!
//! # User namespaces
//!
//! The kernel compares `meta skuid` as seen from the user namespace that owns this
//! network namespace, and stores the uids of the rules as given. Rootful, that is the
//! host's namespace; rootless, it is Podman's (container uid 4096 is 4096 there, host
//! uid 100000+4096 or so). The rules container runs in the pod's user namespace and
//! writes the pod's uids, so `rules` refuses to run when the network namespace belongs
//! to another user namespace than its own ([`check_netns_owner`]): the uids would not
//! mean the agent there.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::gate;
use crate::nft::{self, ChainSpec, Expr, Nftables, RuleInfo};

/// The table devaipod owns in the pod's network namespace (family inet).
pub(crate) const TABLE: &str = "devaipod";
/// Its one base chain.
pub(crate) const CHAIN: &str = "output";
/// The conntrack mark of the agent's loopback connections: ASCII "dvag" (devaipod
/// agent), distinctive in `conntrack -L` and `nft list ruleset`. Nothing else in a
/// pod's network namespace sets conntrack marks.
pub(crate) const AGENT_MARK: u32 = 0x6476_6167;

/// A listener of another uid that the agent may connect to: the proxy, the gator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Allowance {
    pub(crate) uid: u32,
    pub(crate) port: u16,
}

/// What the rules are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) agent_uid: u32,
    /// The one port on which the agent's listeners (opencode) may accept connections
    /// of others.
    pub(crate) agent_port: u16,
    pub(crate) allow: Vec<Allowance>,
}

impl Policy {
    /// From the command line: `--agent-uid`, `--agent-port` and each
    /// `--allow-reply UID:PORT`.
    pub(crate) fn parse(agent_uid: u32, agent_port: u16, allow_reply: &[String]) -> Result<Policy> {
        if agent_uid == 0 {
            bail!(
                "--agent-uid 0: the agent must not run as root (its rules key on its uid, and root's processes would be confined with it)"
            );
        }
        if agent_port == 0 {
            bail!(
                "--agent-port 0: expected the TCP port the agent's opencode listens on (e.g. 4096)"
            );
        }
        let mut allow = Vec::new();
        let mut seen = BTreeSet::new();
        for spec in allow_reply {
            let a = parse_allowance(spec)?;
            if a.uid == agent_uid {
                bail!(
                    "--allow-reply {spec}: {} is the agent's own uid, whose listeners it reaches on every port already",
                    a.uid
                );
            }
            if !seen.insert(a) {
                bail!("--allow-reply {spec} is given twice");
            }
            allow.push(a);
        }
        Ok(Policy {
            agent_uid,
            agent_port,
            allow,
        })
    }
}

fn parse_allowance(spec: &str) -> Result<Allowance> {
    let usage = || {
        format!(
            "--allow-reply {spec:?}: expected UID:PORT (a listener's uid and its TCP port, e.g. 4097:4097)"
        )
    };
    let (uid, port) = spec.split_once(':').with_context(usage)?;
    let uid: u32 = uid.parse().ok().with_context(usage)?;
    let port: u16 = port.parse().ok().with_context(usage)?;
    if port == 0 {
        bail!("{}: port 0 is not a listener's port", usage());
    }
    Ok(Allowance { uid, port })
}

/// One rule: what it is for (in `nft` syntax, for errors and logs) and its expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) text: String,
    pub(crate) exprs: Vec<Expr>,
}

/// The base chain.
pub(crate) fn chain() -> ChainSpec {
    ChainSpec {
        name: CHAIN.to_string(),
        kind: "filter".to_string(),
        hook: nft::NF_INET_LOCAL_OUT,
        priority: 0,
        policy: nft::NF_ACCEPT,
    }
}

// Expression building blocks, each what `nft` would generate for the same words.

const R1: u32 = nft::NFT_REG_1;

fn meta(key: u32) -> Expr {
    Expr::Meta { key, dreg: R1 }
}

fn cmp(op: u32, data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: R1,
        op,
        data: data.to_vec(),
    }
}

/// `oifname "lo"` / `oifname != "lo"`: the name register is IFNAMSIZ (16) bytes,
/// NUL-padded.
fn oifname_lo(op: u32) -> Vec<Expr> {
    let mut name = [0u8; 16];
    name[..2].copy_from_slice(b"lo");
    vec![meta(nft::NFT_META_OIFNAME), cmp(op, &name)]
}

/// `meta skuid UID` / `!= UID` (host order, as the kernel stores the uid)
fn skuid(op: u32, uid: u32) -> Vec<Expr> {
    vec![meta(nft::NFT_META_SKUID), cmp(op, &uid.to_ne_bytes())]
}

/// `meta l4proto tcp` / `!= tcp` (one byte: IPPROTO_TCP)
fn l4proto_tcp(op: u32) -> Vec<Expr> {
    vec![
        meta(nft::NFT_META_L4PROTO),
        cmp(op, &[libc::IPPROTO_TCP as u8]),
    ]
}

/// `ct state S1,S2`: any of the state bits (host order)
fn ct_state_any(bits: u32) -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: nft::NFT_CT_STATE,
            dreg: R1,
        },
        Expr::Bitwise {
            sreg: R1,
            dreg: R1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        cmp(nft::NFT_CMP_NEQ, &[0; 4]),
    ]
}

/// `ct mark M`
fn ct_mark_is(mark: u32) -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: nft::NFT_CT_MARK,
            dreg: R1,
        },
        cmp(nft::NFT_CMP_EQ, &mark.to_ne_bytes()),
    ]
}

/// `ct mark set M`
fn ct_mark_set(mark: u32) -> Vec<Expr> {
    vec![
        Expr::Immediate {
            dreg: R1,
            data: mark.to_ne_bytes().to_vec(),
        },
        Expr::CtSet {
            key: nft::NFT_CT_MARK,
            sreg: R1,
        },
    ]
}

fn th(offset: u32, len: u32) -> Expr {
    Expr::Payload {
        base: nft::NFT_PAYLOAD_TRANSPORT_HEADER,
        offset,
        len,
        dreg: R1,
    }
}

/// `ct mark != M`
fn ct_mark_is_not(mark: u32) -> Vec<Expr> {
    vec![
        Expr::Ct {
            key: nft::NFT_CT_MARK,
            dreg: R1,
        },
        cmp(nft::NFT_CMP_NEQ, &mark.to_ne_bytes()),
    ]
}

/// `tcp sport PORT` / `!= PORT` (with its `meta l4proto tcp` dependency; the port in
/// network order)
fn tcp_sport(op: u32, port: u16) -> Vec<Expr> {
    let mut v = l4proto_tcp(nft::NFT_CMP_EQ);
    v.extend(tcp_sport_only(op, port));
    v
}

/// `tcp sport` without the dependency, for a rule that has it already.
fn tcp_sport_only(op: u32, port: u16) -> Vec<Expr> {
    vec![th(0, 2), cmp(op, &port.to_be_bytes())]
}

/// `ip saddr 127.0.0.1` (with its `meta nfproto ipv4` dependency: in an inet table the
/// network header may be IPv6). The address is 4 bytes at offset 12 of the IPv4
/// header, in network order.
fn ip_saddr_loopback() -> Vec<Expr> {
    vec![
        meta(nft::NFT_META_NFPROTO),
        cmp(nft::NFT_CMP_EQ, &[libc::NFPROTO_IPV4 as u8]),
        Expr::Payload {
            base: nft::NFT_PAYLOAD_NETWORK_HEADER,
            offset: 12,
            len: 4,
            dreg: R1,
        },
        cmp(nft::NFT_CMP_EQ, &std::net::Ipv4Addr::LOCALHOST.octets()),
    ]
}

const TCP_FIN_SYN_RST_PSH_ACK_OFFSET: u32 = 13;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// `tcp flags & (syn|ack) == syn|ack`: every segment with both SYN and ACK set.
fn tcp_syn_ack() -> Vec<Expr> {
    let mut v = l4proto_tcp(nft::NFT_CMP_EQ);
    v.extend(tcp_syn_ack_only());
    v
}

/// The same without the `meta l4proto tcp` dependency.
fn tcp_syn_ack_only() -> Vec<Expr> {
    vec![
        th(TCP_FIN_SYN_RST_PSH_ACK_OFFSET, 1),
        Expr::Bitwise {
            sreg: R1,
            dreg: R1,
            mask: vec![TCP_SYN | TCP_ACK],
            xor: vec![0],
        },
        cmp(nft::NFT_CMP_EQ, &[TCP_SYN | TCP_ACK]),
    ]
}

/// `tcp flags set rst|ack`, as `nft` writes it: the 16 bits at offset 12 (data offset,
/// reserved bits, flags) are read, the flag byte replaced, and written back with the
/// TCP checksum (16 bytes into the header) updated. A 16-bit write keeps the
/// incremental checksum update aligned; the data offset byte is kept as it was. The
/// acknowledgement number stays the SYN-ACK's, which is what makes the agent's kernel
/// accept the RST in SYN-SENT.
fn tcp_flags_set_rst_ack() -> Vec<Expr> {
    vec![
        th(12, 2),
        Expr::Bitwise {
            sreg: R1,
            dreg: R1,
            mask: vec![0xff, 0x00],
            xor: vec![0x00, TCP_RST | TCP_ACK],
        },
        Expr::PayloadWrite {
            base: nft::NFT_PAYLOAD_TRANSPORT_HEADER,
            offset: 12,
            len: 2,
            sreg: R1,
            csum_type: nft::NFT_PAYLOAD_CSUM_INET,
            csum_offset: 16,
            csum_flags: 0,
        },
    ]
}

fn counter() -> Expr {
    Expr::Counter
}

fn accept() -> Expr {
    Expr::Verdict {
        code: nft::NF_ACCEPT,
    }
}

/// `reject with icmpx admin-prohibited`: ICMP "communication administratively
/// prohibited" (v4) or ICMPv6 "administratively prohibited" to the sender, i.e. to the
/// agent's own socket: `connect` fails (EHOSTUNREACH at once for IPv4; EACCES for
/// IPv6, after about a second, as the first ICMPv6 error of a connect is taken as
/// soft), `send` fails (EPERM).
fn reject_admin_prohibited() -> Expr {
    Expr::Reject {
        kind: nft::NFT_REJECT_ICMPX_UNREACH,
        code: Some(nft::NFT_REJECT_ICMPX_ADMIN_PROHIBITED),
    }
}

fn reject_tcp_reset() -> Expr {
    Expr::Reject {
        kind: nft::NFT_REJECT_TCP_RST,
        code: None,
    }
}

fn rule(text: String, parts: Vec<Vec<Expr>>) -> Rule {
    Rule {
        text,
        exprs: parts.into_iter().flatten().collect(),
    }
}

/// The agent's rules, in order (see the module documentation for each one's reason).
pub(crate) fn ruleset(p: &Policy) -> Vec<Rule> {
    use nft::{NFT_CMP_EQ as EQ, NFT_CMP_NEQ as NEQ};
    let a = p.agent_uid;
    let port = p.agent_port;
    let m = AGENT_MARK;
    let mut rules = vec![
        rule(
            format!("meta skuid {a} oifname != \"lo\" counter reject with icmpx admin-prohibited"),
            vec![
                skuid(EQ, a),
                oifname_lo(NEQ),
                vec![counter(), reject_admin_prohibited()],
            ],
        ),
        rule(
            format!(
                "meta skuid {a} meta l4proto != tcp counter reject with icmpx admin-prohibited"
            ),
            vec![
                skuid(EQ, a),
                l4proto_tcp(NEQ),
                vec![counter(), reject_admin_prohibited()],
            ],
        ),
        rule(
            format!(
                "meta skuid {a} ct state invalid,untracked counter reject with icmpx admin-prohibited"
            ),
            vec![
                skuid(EQ, a),
                ct_state_any(nft::NF_CT_STATE_INVALID_BIT | nft::NF_CT_STATE_UNTRACKED_BIT),
                vec![counter(), reject_admin_prohibited()],
            ],
        ),
        rule(
            format!("oifname \"lo\" meta skuid {a} ct state new ct mark set {m:#010x}"),
            vec![
                oifname_lo(EQ),
                skuid(EQ, a),
                ct_state_any(nft::NF_CT_STATE_NEW_BIT),
                ct_mark_set(m),
            ],
        ),
        rule(
            format!(
                "oifname \"lo\" meta skuid {a} ct mark != {m:#010x} tcp sport != {port} tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept"
            ),
            vec![
                oifname_lo(EQ),
                skuid(EQ, a),
                ct_mark_is_not(m),
                tcp_sport(NEQ, port),
                tcp_syn_ack_only(),
                vec![counter()],
                tcp_flags_set_rst_ack(),
                vec![accept()],
            ],
        ),
        rule(
            format!(
                "oifname \"lo\" meta skuid {a} ct mark != {m:#010x} tcp sport != {port} counter reject with tcp reset"
            ),
            vec![
                oifname_lo(EQ),
                skuid(EQ, a),
                ct_mark_is_not(m),
                tcp_sport(NEQ, port),
                vec![counter(), reject_tcp_reset()],
            ],
        ),
        rule(
            format!("oifname \"lo\" ct mark {m:#010x} meta skuid {a} accept"),
            vec![oifname_lo(EQ), ct_mark_is(m), skuid(EQ, a), vec![accept()]],
        ),
    ];
    for al in &p.allow {
        rules.push(rule(
            format!(
                "oifname \"lo\" ct mark {m:#010x} meta skuid {} meta nfproto ipv4 ip saddr 127.0.0.1 tcp sport {} accept",
                al.uid, al.port
            ),
            vec![
                oifname_lo(EQ),
                ct_mark_is(m),
                skuid(EQ, al.uid),
                ip_saddr_loopback(),
                tcp_sport(EQ, al.port),
                vec![accept()],
            ],
        ));
    }
    rules.push(rule(
        format!(
            "oifname \"lo\" ct mark {m:#010x} tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept"
        ),
        vec![
            oifname_lo(EQ),
            ct_mark_is(m),
            tcp_syn_ack(),
            vec![counter()],
            tcp_flags_set_rst_ack(),
            vec![accept()],
        ],
    ));
    rules.push(rule(
        format!(
            "oifname \"lo\" ct mark {m:#010x} meta skuid != {a} meta l4proto tcp counter reject with tcp reset"
        ),
        vec![
            oifname_lo(EQ),
            ct_mark_is(m),
            skuid(NEQ, a),
            l4proto_tcp(EQ),
            vec![counter(), reject_tcp_reset()],
        ],
    ));
    rules
}

/// The transaction that (re)creates the table: `add table` (so that the delete cannot
/// fail on a first run), `delete table` (the previous run's chain and rules with it),
/// `create table`, the chain, the rules. The kernel applies it whole or not at all, so
/// there is no moment without rules on a re-run.
pub(crate) fn install_batch(nft: &mut Nftables, rules: &[Rule]) -> nft::Batch {
    let mut b = nft.batch();
    fill_batch(&mut b, rules);
    b
}

fn fill_batch(b: &mut nft::Batch, rules: &[Rule]) {
    b.add_table(nft::NFPROTO_INET, TABLE);
    b.delete_table(nft::NFPROTO_INET, TABLE);
    b.create_table(nft::NFPROTO_INET, TABLE);
    b.create_base_chain(nft::NFPROTO_INET, TABLE, &chain());
    for (i, r) in rules.iter().enumerate() {
        b.append_rule(
            nft::NFPROTO_INET,
            TABLE,
            CHAIN,
            &r.exprs,
            format!("add rule inet {TABLE} {CHAIN} (rule {}: {})", i + 1, r.text),
        );
    }
}

/// A short hash of the ruleset: SHA-256 of the transaction's bytes (fixed sequence
/// numbers), its first 16 hex digits. The same policy always gives the same hash.
pub(crate) fn ruleset_hash(rules: &[Rule]) -> String {
    let mut b = nft::Batch::new(0);
    fill_batch(&mut b, rules);
    let (bytes, _, _) = b.finish();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut s = String::from("sha256:");
    for byte in &digest.as_ref()[..8] {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Compares the kernel's rules of the chain with what was sent: the same number, in
/// the same order, each with the same expressions. The error names the first
/// difference.
pub(crate) fn compare(expected: &[Rule], found: &[RuleInfo]) -> Result<()> {
    let place = format!("inet {TABLE} {CHAIN}");
    for (i, want) in expected.iter().enumerate() {
        let n = i + 1;
        let Some(got) = found.get(i) else {
            bail!(
                "read back {place}: the kernel holds {} rules, devaipod sent {}; rule {n} is missing: {}",
                found.len(),
                expected.len(),
                want.text
            );
        };
        for (j, w) in want.exprs.iter().enumerate() {
            match got.exprs.get(j) {
                Some(g) if g == w => {}
                Some(g) => bail!(
                    "read back {place}: rule {n} ({}) differs at expression {}: the kernel holds `{g}`, devaipod sent `{w}`",
                    want.text,
                    j + 1
                ),
                None => bail!(
                    "read back {place}: rule {n} ({}) ends after {} expressions in the kernel, devaipod sent {} (the first missing: `{w}`)",
                    want.text,
                    got.exprs.len(),
                    want.exprs.len()
                ),
            }
        }
        if let Some(extra) = got.exprs.get(want.exprs.len()) {
            bail!(
                "read back {place}: rule {n} ({}) has {} expressions in the kernel, devaipod sent {} (the first extra: `{extra}`)",
                want.text,
                got.exprs.len(),
                want.exprs.len()
            );
        }
    }
    if found.len() > expected.len() {
        let extra = &found[expected.len()];
        let exprs: Vec<String> = extra.exprs.iter().map(|e| e.to_string()).collect();
        bail!(
            "read back {place}: the kernel holds {} rules, devaipod sent {}; rule {} (handle {}) is not devaipod's: {}",
            found.len(),
            expected.len(),
            expected.len() + 1,
            extra.handle,
            exprs.join(", ")
        );
    }
    Ok(())
}

/// Reads the table back and compares it with what was sent: the table (not dormant),
/// its only chain, the chain's rules.
fn read_back(nft: &mut Nftables, rules: &[Rule]) -> Result<Vec<String>> {
    let tables = nft.tables()?;
    let ours: Vec<_> = tables
        .iter()
        .filter(|t| t.family == nft::NFPROTO_INET && t.name == TABLE)
        .collect();
    match ours.as_slice() {
        [t] if t.flags & nft::NFT_TABLE_F_DORMANT != 0 => {
            bail!("read back: table inet {TABLE} is dormant (its rules do not run)")
        }
        [_] => {}
        [] => bail!("read back: table inet {TABLE} is not in the kernel after the transaction"),
        _ => bail!("read back: the kernel lists table inet {TABLE} more than once"),
    }
    let chains = nft.chains(nft::NFPROTO_INET, TABLE)?;
    let want = chain();
    match chains.as_slice() {
        [c] if c.name == want.name => match &c.base {
            Some(base) if *base == want => {}
            Some(base) => {
                bail!("read back: chain inet {TABLE} {CHAIN} is {base:?}, devaipod sent {want:?}")
            }
            None => bail!("read back: chain inet {TABLE} {CHAIN} is not a base chain"),
        },
        _ => {
            let names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "read back: table inet {TABLE} holds the chains {names:?}, devaipod sent only {CHAIN:?}"
            )
        }
    }
    let found = nft.rules(nft::NFPROTO_INET, TABLE, CHAIN)?;
    compare(rules, &found)?;
    Ok(tables
        .iter()
        .filter(|t| !(t.family == nft::NFPROTO_INET && t.name == TABLE))
        .map(|t| format!("{} {}", family_label(t.family), t.name))
        .collect())
}

fn family_label(f: u8) -> String {
    match f {
        nft::NFPROTO_INET => "inet".into(),
        2 => "ip".into(),
        10 => "ip6".into(),
        3 => "arp".into(),
        7 => "bridge".into(),
        5 => "netdev".into(),
        f => format!("family{f}"),
    }
}

/// Refuses to go on when this network namespace belongs to another user namespace
/// than the one this process runs in: the kernel would read `meta skuid` as uids of
/// that namespace, and the agent's uid given here would name someone else (or nobody).
fn check_netns_owner() -> Result<()> {
    let net = File::open("/proc/self/ns/net").context("opening /proc/self/ns/net")?;
    // SAFETY: NS_GET_USERNS takes no argument; it returns a new file descriptor (which
    // we own from here on) or -1 with errno set.
    let fd = unsafe { libc::ioctl(net.as_raw_fd(), libc::NS_GET_USERNS) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            bail!(
                "this network namespace belongs to a user namespace outside this container's, so the uids of its rules would not be this pod's; run the rules container in the pod's user namespace"
            );
        }
        return Err(e).context(
            "asking the kernel which user namespace owns this network namespace (NS_GET_USERNS)",
        );
    }
    // SAFETY: fd is a fresh descriptor returned to us above and closed by OwnedFd.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let owner = owner
        .metadata()
        .context("reading the network namespace's owning user namespace")?;
    let mine = std::fs::metadata("/proc/self/ns/user").context("reading /proc/self/ns/user")?;
    if (owner.dev(), owner.ino()) != (mine.dev(), mine.ino()) {
        bail!(
            "this network namespace belongs to another user namespace (inode {}) than this container's (inode {}), so the uids of its rules would not be this pod's; run the rules container in the pod's user namespace",
            owner.ino(),
            mine.ino()
        );
    }
    Ok(())
}

/// `devaipod-net rules`: install, read back, then write the marker.
pub(crate) fn run(
    agent_uid: u32,
    agent_port: u16,
    allow_reply: &[String],
    marker: &Path,
) -> Result<()> {
    let policy = Policy::parse(agent_uid, agent_port, allow_reply)?;
    check_netns_owner()?;
    // Before any change: without these the gate cannot work, so fail early.
    let cookie = gate::netns_cookie()?;
    let boot_id = gate::boot_id()?;
    let rules = ruleset(&policy);
    let hash = ruleset_hash(&rules);

    let mut nft = Nftables::open()?;
    let batch = install_batch(&mut nft, &rules);
    nft.apply(batch)
        .with_context(|| format!("installing table inet {TABLE}"))?;
    let others = read_back(&mut nft, &rules)?;
    if !others.is_empty() {
        // Not an error: our chain runs whatever else is there, but another table
        // could undo our marks; this is for whoever reads the pod's logs.
        eprintln!(
            "devaipod-net: note: this network namespace also holds the nftables tables {}",
            others.join(", ")
        );
    }
    gate::write_marker(
        marker,
        &gate::Marker {
            version: gate::MARKER_VERSION,
            netns_cookie: cookie,
            boot_id,
            ruleset: hash.clone(),
            agent_uid: policy.agent_uid,
            agent_port: policy.agent_port,
            allow_reply: policy
                .allow
                .iter()
                .map(|a| format!("{}:{}", a.uid, a.port))
                .collect(),
        },
    )?;
    eprintln!(
        "devaipod-net: {} rules installed in table inet {TABLE} and read back ({hash}); marker {} written for network namespace {cookie}",
        rules.len(),
        marker.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(4096, 4096, &["4097:4097".into(), "65534:8765".into()]).expect("policy")
    }

    #[test]
    fn allowances_parse_and_bad_ones_say_why() {
        assert_eq!(
            policy().allow,
            vec![
                Allowance {
                    uid: 4097,
                    port: 4097
                },
                Allowance {
                    uid: 65534,
                    port: 8765
                }
            ]
        );
        for (bad, says) in [
            ("4097", "expected UID:PORT"),
            ("x:1", "expected UID:PORT"),
            ("1:70000", "expected UID:PORT"),
            ("1:0", "port 0"),
            ("4096:80", "the agent's own uid"),
        ] {
            let e = Policy::parse(4096, 4096, &[bad.into()]).expect_err(bad);
            assert!(format!("{e:#}").contains(says), "{bad}: {e:#}");
        }
        let e = Policy::parse(4096, 4096, &["1:2".into(), "1:2".into()]).expect_err("twice");
        assert!(format!("{e:#}").contains("twice"), "{e:#}");
        let e = Policy::parse(0, 4096, &[]).expect_err("root");
        assert!(format!("{e:#}").contains("root"), "{e:#}");
        let e = Policy::parse(4096, 0, &[]).expect_err("port 0");
        assert!(format!("{e:#}").contains("--agent-port 0"), "{e:#}");
    }

    /// The ruleset in `nft` words, in order: the contract the module documentation
    /// explains.
    #[test]
    fn the_ruleset_reads_as_documented() {
        let texts: Vec<String> = ruleset(&policy()).into_iter().map(|r| r.text).collect();
        assert_eq!(
            texts,
            [
                "meta skuid 4096 oifname != \"lo\" counter reject with icmpx admin-prohibited",
                "meta skuid 4096 meta l4proto != tcp counter reject with icmpx admin-prohibited",
                "meta skuid 4096 ct state invalid,untracked counter reject with icmpx admin-prohibited",
                "oifname \"lo\" meta skuid 4096 ct state new ct mark set 0x64766167",
                "oifname \"lo\" meta skuid 4096 ct mark != 0x64766167 tcp sport != 4096 tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept",
                "oifname \"lo\" meta skuid 4096 ct mark != 0x64766167 tcp sport != 4096 counter reject with tcp reset",
                "oifname \"lo\" ct mark 0x64766167 meta skuid 4096 accept",
                "oifname \"lo\" ct mark 0x64766167 meta skuid 4097 meta nfproto ipv4 ip saddr 127.0.0.1 tcp sport 4097 accept",
                "oifname \"lo\" ct mark 0x64766167 meta skuid 65534 meta nfproto ipv4 ip saddr 127.0.0.1 tcp sport 8765 accept",
                "oifname \"lo\" ct mark 0x64766167 tcp flags & (syn|ack) == syn|ack counter tcp flags set rst|ack accept",
                "oifname \"lo\" ct mark 0x64766167 meta skuid != 4096 meta l4proto tcp counter reject with tcp reset",
            ]
        );
    }

    /// The expressions, as `nft --debug=netlink` prints what nft 1.0.6 generates for the
    /// same rules (checked by hand once; the root test `nft_lists_the_intended_ruleset`
    /// keeps checking the other direction).
    #[test]
    fn the_expressions_are_what_nft_generates() {
        let rules = ruleset(&policy());
        let text =
            |i: usize| -> Vec<String> { rules[i].exprs.iter().map(|e| e.to_string()).collect() };
        let lo = "cmp eq reg 1 0x6c6f0000000000000000000000000000";
        let uid = |u: u32| format!("cmp eq reg 1 {}", hexs(&u.to_ne_bytes()));
        let mark = format!("cmp eq reg 1 {}", hexs(&AGENT_MARK.to_ne_bytes()));
        assert_eq!(
            text(0),
            [
                "meta load skuid => reg 1".to_string(),
                uid(4096),
                "meta load oifname => reg 1".into(),
                "cmp neq reg 1 0x6c6f0000000000000000000000000000".into(),
                "counter".into(),
                "reject type 2 code 3".into(),
            ]
        );
        assert_eq!(
            text(2)[2..5],
            [
                "ct load state => reg 1".to_string(),
                "bitwise reg 1 = (reg 1 & 0x41000000) ^ 0x00000000".into(),
                "cmp neq reg 1 0x00000000".into(),
            ]
        );
        assert_eq!(
            text(3)[4..],
            [
                "ct load state => reg 1".to_string(),
                "bitwise reg 1 = (reg 1 & 0x08000000) ^ 0x00000000".into(),
                "cmp neq reg 1 0x00000000".into(),
                format!("immediate reg 1 {}", hexs(&AGENT_MARK.to_ne_bytes())),
                "ct set mark with reg 1".into(),
            ]
        );
        let syn_ack_to_rst_ack = [
            "payload load 1b @ base 2 + 13 => reg 1".to_string(),
            "bitwise reg 1 = (reg 1 & 0x12) ^ 0x00".into(),
            "cmp eq reg 1 0x12".into(),
            "counter".into(),
            "payload load 2b @ base 2 + 12 => reg 1".into(),
            "bitwise reg 1 = (reg 1 & 0xff00) ^ 0x0014".into(),
            "payload write reg 1 => 2b @ base 2 + 12 csum_type 1 csum_off 16 csum_flags 0x0".into(),
            "immediate reg 0 accept".into(),
        ];
        let not_opened_by_the_agent_from_another_port = [
            "meta load oifname => reg 1".to_string(),
            lo.into(),
            "meta load skuid => reg 1".into(),
            uid(4096),
            "ct load mark => reg 1".into(),
            format!("cmp neq reg 1 {}", hexs(&AGENT_MARK.to_ne_bytes())),
            "meta load l4proto => reg 1".into(),
            "cmp eq reg 1 0x06".into(),
            "payload load 2b @ base 2 + 0 => reg 1".into(),
            "cmp neq reg 1 0x1000".into(),
        ];
        assert_eq!(
            text(4),
            [
                &not_opened_by_the_agent_from_another_port[..],
                &syn_ack_to_rst_ack[..]
            ]
            .concat()
        );
        assert_eq!(
            text(5),
            [
                &not_opened_by_the_agent_from_another_port[..],
                &["counter".to_string(), "reject type 1".into()][..]
            ]
            .concat()
        );
        assert_eq!(
            text(7),
            [
                "meta load oifname => reg 1".to_string(),
                lo.into(),
                "ct load mark => reg 1".into(),
                mark.clone(),
                "meta load skuid => reg 1".into(),
                uid(4097),
                "meta load nfproto => reg 1".into(),
                "cmp eq reg 1 0x02".into(),
                "payload load 4b @ base 1 + 12 => reg 1".into(),
                "cmp eq reg 1 0x7f000001".into(),
                "meta load l4proto => reg 1".into(),
                "cmp eq reg 1 0x06".into(),
                "payload load 2b @ base 2 + 0 => reg 1".into(),
                "cmp eq reg 1 0x1001".into(),
                "immediate reg 0 accept".into(),
            ]
        );
        assert_eq!(
            text(9)[4..],
            [
                &[
                    "meta load l4proto => reg 1".to_string(),
                    "cmp eq reg 1 0x06".into()
                ][..],
                &syn_ack_to_rst_ack[..]
            ]
            .concat()
        );
        assert_eq!(text(10).last().map(String::as_str), Some("reject type 1"));
    }

    fn hexs(b: &[u8]) -> String {
        let mut s = String::from("0x");
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        s
    }

    #[test]
    fn the_hash_is_stable_and_follows_the_policy() {
        let a = ruleset_hash(&ruleset(&policy()));
        assert_eq!(a, ruleset_hash(&ruleset(&policy())));
        assert_eq!(a.len(), "sha256:".len() + 16);
        let other = Policy::parse(4096, 4096, &["4097:4097".into()]).expect("policy");
        assert_ne!(a, ruleset_hash(&ruleset(&other)));
        let mut other_port = policy();
        other_port.agent_port = 4095;
        assert_ne!(a, ruleset_hash(&ruleset(&other_port)));
    }

    fn as_found(rules: &[Rule]) -> Vec<RuleInfo> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleInfo {
                table: TABLE.into(),
                chain: CHAIN.into(),
                handle: i as u64 + 2,
                exprs: r.exprs.clone(),
            })
            .collect()
    }

    #[test]
    fn read_back_names_the_first_difference() {
        let rules = ruleset(&policy());
        compare(&rules, &as_found(&rules)).expect("identical");

        // A changed uid in rule 8.
        let mut found = as_found(&rules);
        found[7].exprs[5] = Expr::Cmp {
            sreg: 1,
            op: nft::NFT_CMP_EQ,
            data: 1000u32.to_ne_bytes().to_vec(),
        };
        let e = format!("{:#}", compare(&rules, &found).expect_err("uid differs"));
        assert!(
            e.contains("rule 8 (oifname \"lo\" ct mark 0x64766167 meta skuid 4097 meta nfproto ipv4 ip saddr 127.0.0.1 tcp sport 4097 accept) differs at expression 6"),
            "{e}"
        );
        assert!(
            e.contains("the kernel holds `cmp eq reg 1 0xe8030000`"),
            "{e}"
        );

        // Two rules swapped: order matters.
        let mut found = as_found(&rules);
        found.swap(3, 4);
        let e = format!("{:#}", compare(&rules, &found).expect_err("order"));
        assert!(e.contains("rule 4 "), "{e}");

        // A rule missing, a rule too many, an expression too many.
        let found = as_found(&rules[..rules.len() - 1]);
        let e = format!("{:#}", compare(&rules, &found).expect_err("missing"));
        assert!(e.contains("rule 11 is missing"), "{e}");
        let mut found = as_found(&rules);
        found.push(found[0].clone());
        let e = format!("{:#}", compare(&rules, &found).expect_err("extra"));
        assert!(e.contains("rule 12 (handle 2) is not devaipod's"), "{e}");
        let mut found = as_found(&rules);
        found[0].exprs.push(Expr::Counter);
        let e = format!("{:#}", compare(&rules, &found).expect_err("longer"));
        assert!(e.contains("the first extra: `counter`"), "{e}");
    }
}
