//! nf_tables over netlink, spoken directly: the few messages and expressions the
//! agent's rules need, encoded from the kernel's UAPI headers
//! (`linux/netlink.h`, `linux/netfilter/nfnetlink.h`, `linux/netfilter/nf_tables.h`)
//! and decoded back from the kernel's dumps. No libnftnl, no `nft` binary: this runs in
//! a scratch image with CAP_NET_ADMIN only.
//!
//! Wire format, as the kernel reads it: every message is a `struct nlmsghdr` (16 bytes:
//! length, type, flags, sequence, port, all in host order) followed by a
//! `struct nfgenmsg` (family, version 0, resource id in network order) and netlink
//! attributes (`struct nlattr`: 2-byte length, 2-byte type, payload, padded to 4
//! bytes). Integer attributes of nf_tables are big-endian; register data (a uid, a
//! conntrack mark) is in host order, packet data (a port) in network order, exactly as
//! the expression reads it from the packet or the kernel.
//!
//! Changes go in one transaction: `NFNL_MSG_BATCH_BEGIN`, the messages, `..._END`; the
//! kernel applies all of them or none, and acknowledges each message that asks for it
//! (`NLM_F_ACK`), so [`Nftables::apply`] knows which one failed and why.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

// linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// NLM_F_ROOT | NLM_F_MATCH
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
/// In an NLMSG_ERROR: extended-ack attributes follow the echoed request.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// In an NLMSG_ERROR: the echoed request is only its header.
const NLM_F_CAPPED: u16 = 0x100;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// linux/netfilter/nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNETLINK_V0: u8 = 0;

// linux/netfilter.h
pub(crate) const NFPROTO_UNSPEC: u8 = 0;
pub(crate) const NFPROTO_INET: u8 = 1;
pub(crate) const NF_ACCEPT: u32 = 1;
pub(crate) const NF_INET_LOCAL_OUT: u32 = 3;

// enum nf_tables_msg_types
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;

// enum nft_table_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
// enum nft_table_flags
pub(crate) const NFT_TABLE_F_DORMANT: u32 = 0x1;
// enum nft_chain_attributes
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
// enum nft_hook_attributes
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
// enum nft_list_attributes, nft_expr_attributes
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_data_attributes, nft_verdict_attributes
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
// enum nft_meta_attributes
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
// enum nft_cmp_attributes
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
// enum nft_bitwise_attributes
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;
/// enum nft_bitwise_ops: `(reg & mask) ^ xor` (the kernel's default, dumped explicitly)
const NFT_BITWISE_MASK_XOR: u32 = 0;
// enum nft_ct_attributes
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_SREG: u16 = 4;
// enum nft_payload_attributes
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_PAYLOAD_SREG: u16 = 5;
const NFTA_PAYLOAD_CSUM_TYPE: u16 = 6;
const NFTA_PAYLOAD_CSUM_OFFSET: u16 = 7;
const NFTA_PAYLOAD_CSUM_FLAGS: u16 = 8;
// enum nft_immediate_attributes
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_counter_attributes
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_COUNTER_PAD: u16 = 3;
// enum nft_reject_attributes
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;

/// enum nft_registers: the verdict register and the first 16-byte data register
/// (the kernel dumps a register in the numbering it was given in when that is NFT_REG_1).
pub(crate) const NFT_REG_VERDICT: u32 = 0;
pub(crate) const NFT_REG_1: u32 = 1;

// enum nft_meta_keys
pub(crate) const NFT_META_OIFNAME: u32 = 7;
pub(crate) const NFT_META_SKUID: u32 = 10;
pub(crate) const NFT_META_NFPROTO: u32 = 15;
pub(crate) const NFT_META_L4PROTO: u32 = 16;
// enum nft_ct_keys
pub(crate) const NFT_CT_STATE: u32 = 0;
pub(crate) const NFT_CT_MARK: u32 = 3;
// enum nft_cmp_ops
pub(crate) const NFT_CMP_EQ: u32 = 0;
pub(crate) const NFT_CMP_NEQ: u32 = 1;
// enum nft_payload_bases, nft_payload_csum_types
pub(crate) const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub(crate) const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
pub(crate) const NFT_PAYLOAD_CSUM_INET: u32 = 1;
// enum nft_reject_types, nft_reject_inet_code
pub(crate) const NFT_REJECT_TCP_RST: u32 = 1;
pub(crate) const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
pub(crate) const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;
// linux/netfilter/nf_conntrack_common.h: NF_CT_STATE_*_BIT
pub(crate) const NF_CT_STATE_INVALID_BIT: u32 = 1 << 0;
/// NF_CT_STATE_BIT(IP_CT_NEW) = 1 << (IP_CT_NEW + 1), IP_CT_NEW = 2
pub(crate) const NF_CT_STATE_NEW_BIT: u32 = 1 << 3;
pub(crate) const NF_CT_STATE_UNTRACKED_BIT: u32 = 1 << 6;

/// One nf_tables expression, as the kernel holds it. Only the kinds the agent's rules
/// use exist here; decoding anything else is an error, so that a read-back never
/// accepts what it cannot compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `meta load KEY => reg DREG`
    Meta { key: u32, dreg: u32 },
    /// `cmp OP reg SREG DATA`
    Cmp { sreg: u32, op: u32, data: Vec<u8> },
    /// `bitwise reg DREG = (reg SREG & MASK) ^ XOR` (mask and xor have the same length)
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `ct load KEY => reg DREG`
    Ct { key: u32, dreg: u32 },
    /// `ct set KEY with reg SREG`
    CtSet { key: u32, sreg: u32 },
    /// `payload load LEN @ BASE + OFFSET => reg DREG`
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `payload write reg SREG => LEN @ BASE + OFFSET`, updating the checksum at
    /// CSUM_OFFSET (from the start of BASE) when CSUM_TYPE is INET
    PayloadWrite {
        base: u32,
        offset: u32,
        len: u32,
        sreg: u32,
        csum_type: u32,
        csum_offset: u32,
        csum_flags: u32,
    },
    /// `immediate reg DREG DATA`
    Immediate { dreg: u32, data: Vec<u8> },
    /// `immediate reg 0 VERDICT` (accept, drop, ...; no jumps here)
    Verdict { code: u32 },
    /// `counter` (its packet and byte counts are not part of the comparison)
    Counter,
    /// `reject type KIND code CODE` (CODE only for the ICMP kinds)
    Reject { kind: u32, code: Option<u8> },
}

/// A base chain's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainSpec {
    pub(crate) name: String,
    /// "filter", "nat" or "route"
    pub(crate) kind: String,
    pub(crate) hook: u32,
    pub(crate) priority: i32,
    pub(crate) policy: u32,
}

/// A table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableInfo {
    pub(crate) family: u8,
    pub(crate) name: String,
    pub(crate) flags: u32,
}

/// A chain as the kernel lists it; `base` is None for a regular (non-hooked) chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainInfo {
    pub(crate) table: String,
    pub(crate) name: String,
    pub(crate) base: Option<ChainSpec>,
}

/// A rule as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    pub(crate) table: String,
    pub(crate) chain: String,
    pub(crate) handle: u64,
    pub(crate) exprs: Vec<Expr>,
}

// ---------------------------------------------------------------------------------
// Encoding

/// Builds one netlink message: header, nfgenmsg, attributes (nests patched on close).
pub(crate) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    /// A message of `kind` (already including its subsystem) for `family`;
    /// `res_id` is the nfgenmsg resource id (the subsystem, for batch messages).
    pub(crate) fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
        buf.push(family);
        buf.push(NFNETLINK_V0);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    /// An nf_tables message (`NFNL_SUBSYS_NFTABLES << 8 | msg`).
    fn nft(msg: u16, flags: u16, seq: u32, family: u8) -> Self {
        Msg::new(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | flags,
            seq,
            family,
            0,
        )
    }

    pub(crate) fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(pad4(self.buf.len()), 0);
        self
    }

    /// A NUL-terminated string, as nf_tables wants names.
    pub(crate) fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(kind, &v)
    }

    pub(crate) fn attr_be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_be_bytes())
    }

    pub(crate) fn nest_begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(crate) fn nest_end(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("nest_end without nest_begin");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// An `NFTA_DATA_VALUE` inside a nest of `kind` (cmp data, bitwise mask, ...).
    fn data_value(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.nest_begin(kind)
            .attr(NFTA_DATA_VALUE, value)
            .nest_end()
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unclosed netlink nest");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } | Expr::CtSet { .. } => "ct",
            Expr::Payload { .. } | Expr::PayloadWrite { .. } => "payload",
            Expr::Immediate { .. } | Expr::Verdict { .. } => "immediate",
            Expr::Counter => "counter",
            Expr::Reject { .. } => "reject",
        }
    }

    /// Appends this expression as one NFTA_LIST_ELEM: its name, then its attributes
    /// (NFTA_EXPR_DATA) in ascending attribute number.
    pub(crate) fn encode(&self, m: &mut Msg) {
        m.nest_begin(NFTA_LIST_ELEM);
        m.attr_str(NFTA_EXPR_NAME, self.name());
        m.nest_begin(NFTA_EXPR_DATA);
        match self {
            Expr::Meta { key, dreg } => {
                m.attr_be32(NFTA_META_DREG, *dreg)
                    .attr_be32(NFTA_META_KEY, *key);
            }
            Expr::Cmp { sreg, op, data } => {
                m.attr_be32(NFTA_CMP_SREG, *sreg)
                    .attr_be32(NFTA_CMP_OP, *op)
                    .data_value(NFTA_CMP_DATA, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                m.attr_be32(NFTA_BITWISE_SREG, *sreg)
                    .attr_be32(NFTA_BITWISE_DREG, *dreg)
                    .attr_be32(NFTA_BITWISE_LEN, mask.len() as u32)
                    .data_value(NFTA_BITWISE_MASK, mask)
                    .data_value(NFTA_BITWISE_XOR, xor)
                    .attr_be32(NFTA_BITWISE_OP, NFT_BITWISE_MASK_XOR);
            }
            Expr::Ct { key, dreg } => {
                m.attr_be32(NFTA_CT_DREG, *dreg)
                    .attr_be32(NFTA_CT_KEY, *key);
            }
            Expr::CtSet { key, sreg } => {
                m.attr_be32(NFTA_CT_KEY, *key)
                    .attr_be32(NFTA_CT_SREG, *sreg);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                m.attr_be32(NFTA_PAYLOAD_DREG, *dreg)
                    .attr_be32(NFTA_PAYLOAD_BASE, *base)
                    .attr_be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .attr_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::PayloadWrite {
                base,
                offset,
                len,
                sreg,
                csum_type,
                csum_offset,
                csum_flags,
            } => {
                m.attr_be32(NFTA_PAYLOAD_BASE, *base)
                    .attr_be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .attr_be32(NFTA_PAYLOAD_LEN, *len)
                    .attr_be32(NFTA_PAYLOAD_SREG, *sreg)
                    .attr_be32(NFTA_PAYLOAD_CSUM_TYPE, *csum_type)
                    .attr_be32(NFTA_PAYLOAD_CSUM_OFFSET, *csum_offset)
                    .attr_be32(NFTA_PAYLOAD_CSUM_FLAGS, *csum_flags);
            }
            Expr::Immediate { dreg, data } => {
                m.attr_be32(NFTA_IMMEDIATE_DREG, *dreg)
                    .data_value(NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Verdict { code } => {
                m.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                    .nest_begin(NFTA_IMMEDIATE_DATA)
                    .nest_begin(NFTA_DATA_VERDICT)
                    .attr_be32(NFTA_VERDICT_CODE, *code)
                    .nest_end()
                    .nest_end();
            }
            Expr::Counter => {}
            Expr::Reject { kind, code } => {
                m.attr_be32(NFTA_REJECT_TYPE, *kind);
                if let Some(code) = code {
                    m.attr(NFTA_REJECT_ICMP_CODE, &[*code]);
                }
            }
        }
        m.nest_end(); // NFTA_EXPR_DATA
        m.nest_end(); // NFTA_LIST_ELEM
    }
}

/// One transaction: BATCH_BEGIN, the messages, BATCH_END. Each message asks for an
/// acknowledgement; `what` names it in errors.
pub(crate) struct Batch {
    msgs: Vec<(u32, String, Vec<u8>)>,
    next_seq: u32,
}

impl Batch {
    pub(crate) fn new(first_seq: u32) -> Self {
        Batch {
            msgs: Vec::new(),
            next_seq: first_seq,
        }
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    fn push(&mut self, seq: u32, what: String, msg: Msg) {
        self.msgs.push((seq, what, msg.finish()));
    }

    /// `add table FAMILY NAME` (no error when it exists)
    pub(crate) fn add_table(&mut self, family: u8, name: &str) {
        let seq = self.seq();
        let mut m = Msg::nft(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK, seq, family);
        m.attr_str(NFTA_TABLE_NAME, name)
            .attr_be32(NFTA_TABLE_FLAGS, 0);
        self.push(seq, format!("add table {} {name}", family_name(family)), m);
    }

    /// `create table FAMILY NAME` (an error when it exists)
    pub(crate) fn create_table(&mut self, family: u8, name: &str) {
        let seq = self.seq();
        let mut m = Msg::nft(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            seq,
            family,
        );
        m.attr_str(NFTA_TABLE_NAME, name)
            .attr_be32(NFTA_TABLE_FLAGS, 0);
        self.push(
            seq,
            format!("create table {} {name}", family_name(family)),
            m,
        );
    }

    /// `delete table FAMILY NAME` (with everything in it)
    pub(crate) fn delete_table(&mut self, family: u8, name: &str) {
        let seq = self.seq();
        let mut m = Msg::nft(NFT_MSG_DELTABLE, NLM_F_ACK, seq, family);
        m.attr_str(NFTA_TABLE_NAME, name);
        self.push(
            seq,
            format!("delete table {} {name}", family_name(family)),
            m,
        );
    }

    /// `create chain FAMILY TABLE NAME { type KIND hook HOOK priority P; policy P; }`
    pub(crate) fn create_base_chain(&mut self, family: u8, table: &str, chain: &ChainSpec) {
        let seq = self.seq();
        let mut m = Msg::nft(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
            seq,
            family,
        );
        m.attr_str(NFTA_CHAIN_TABLE, table)
            .attr_str(NFTA_CHAIN_NAME, &chain.name)
            .nest_begin(NFTA_CHAIN_HOOK)
            .attr_be32(NFTA_HOOK_HOOKNUM, chain.hook)
            .attr_be32(NFTA_HOOK_PRIORITY, chain.priority as u32)
            .nest_end()
            .attr_be32(NFTA_CHAIN_POLICY, chain.policy)
            .attr_str(NFTA_CHAIN_TYPE, &chain.kind);
        self.push(seq, format!("create chain {table} {}", chain.name), m);
    }

    /// `add rule FAMILY TABLE CHAIN EXPRS` (appended at the end of the chain)
    pub(crate) fn append_rule(
        &mut self,
        family: u8,
        table: &str,
        chain: &str,
        exprs: &[Expr],
        what: String,
    ) {
        let seq = self.seq();
        let mut m = Msg::nft(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
            seq,
            family,
        );
        m.attr_str(NFTA_RULE_TABLE, table)
            .attr_str(NFTA_RULE_CHAIN, chain)
            .nest_begin(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            e.encode(&mut m);
        }
        m.nest_end();
        self.push(seq, what, m);
    }

    /// The whole transaction as sent, and the (seq, description) of each message that
    /// asked for an acknowledgement.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Vec<(u32, String)>, u32) {
        let begin_seq = self.seq();
        let end_seq = self.seq();
        let res_id = NFNL_SUBSYS_NFTABLES;
        let mut out = Msg::new(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin_seq,
            NFPROTO_UNSPEC,
            res_id,
        )
        .finish();
        let mut acks = Vec::with_capacity(self.msgs.len());
        for (seq, what, bytes) in self.msgs {
            out.extend_from_slice(&bytes);
            acks.push((seq, what));
        }
        out.extend(
            Msg::new(
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                end_seq,
                NFPROTO_UNSPEC,
                res_id,
            )
            .finish(),
        );
        (out, acks, begin_seq)
    }
}

fn family_name(family: u8) -> &'static str {
    match family {
        NFPROTO_INET => "inet",
        2 => "ip",
        10 => "ip6",
        3 => "arp",
        7 => "bridge",
        5 => "netdev",
        _ => "unknown-family",
    }
}

// ---------------------------------------------------------------------------------
// Decoding

/// One netlink attribute: its type (flags masked off) and payload.
#[derive(Debug, Clone, Copy)]
struct Attr<'a> {
    kind: u16,
    payload: &'a [u8],
}

/// The attributes in `buf`; an attribute that runs past the end is an error.
fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[i], buf[i + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[i + 2], buf[i + 3]]) & NLA_TYPE_MASK;
        if len < 4 || i + len > buf.len() {
            bail!("malformed netlink attribute (length {len} at offset {i})");
        }
        out.push(Attr {
            kind,
            payload: &buf[i + 4..i + len],
        });
        i += pad4(len);
    }
    Ok(out)
}

fn be32(a: Attr<'_>) -> Result<u32> {
    let b: [u8; 4] = a
        .payload
        .try_into()
        .map_err(|_| anyhow!("attribute {} is not 4 bytes", a.kind))?;
    Ok(u32::from_be_bytes(b))
}

fn be64(a: Attr<'_>) -> Result<u64> {
    let b: [u8; 8] = a
        .payload
        .try_into()
        .map_err(|_| anyhow!("attribute {} is not 8 bytes", a.kind))?;
    Ok(u64::from_be_bytes(b))
}

fn string(a: Attr<'_>) -> Result<String> {
    let s = a.payload.strip_suffix(&[0]).unwrap_or(a.payload);
    String::from_utf8(s.to_vec()).map_err(|_| anyhow!("attribute {} is not UTF-8", a.kind))
}

/// The NFTA_DATA_VALUE inside a data nest.
fn data_value(a: Attr<'_>) -> Result<Vec<u8>> {
    let inner = attrs(a.payload)?;
    match inner.as_slice() {
        [v] if v.kind == NFTA_DATA_VALUE => Ok(v.payload.to_vec()),
        _ => bail!("expected a data value in attribute {}", a.kind),
    }
}

/// Attribute values of one expression, by attribute number; an attribute outside
/// `known` is an error (so nothing the comparison would miss is dropped silently).
struct Fields<'a> {
    expr: &'static str,
    attrs: Vec<Attr<'a>>,
}

impl<'a> Fields<'a> {
    fn new(expr: &'static str, data: &'a [u8], known: &[u16]) -> Result<Self> {
        let attrs = attrs(data)?;
        if let Some(a) = attrs.iter().find(|a| !known.contains(&a.kind)) {
            bail!(
                "{expr} expression has attribute {} that this reader does not know",
                a.kind
            );
        }
        Ok(Fields { expr, attrs })
    }

    fn get(&self, kind: u16) -> Option<Attr<'a>> {
        self.attrs.iter().copied().find(|a| a.kind == kind)
    }

    fn need(&self, kind: u16) -> Result<Attr<'a>> {
        self.get(kind)
            .ok_or_else(|| anyhow!("{} expression lacks attribute {kind}", self.expr))
    }

    fn u32(&self, kind: u16) -> Result<u32> {
        be32(self.need(kind)?)
    }
}

impl Expr {
    /// Decodes one NFTA_LIST_ELEM's contents (name and data) as the kernel dumps them.
    fn decode(elem: &[u8]) -> Result<Expr> {
        let parts = attrs(elem)?;
        let name = parts
            .iter()
            .find(|a| a.kind == NFTA_EXPR_NAME)
            .map(|a| string(*a))
            .transpose()?
            .ok_or_else(|| anyhow!("expression without a name"))?;
        let data = parts
            .iter()
            .find(|a| a.kind == NFTA_EXPR_DATA)
            .map(|a| a.payload)
            .unwrap_or(&[]);
        Ok(match name.as_str() {
            "meta" => {
                let f = Fields::new("meta", data, &[NFTA_META_DREG, NFTA_META_KEY])?;
                Expr::Meta {
                    key: f.u32(NFTA_META_KEY)?,
                    dreg: f.u32(NFTA_META_DREG)?,
                }
            }
            "cmp" => {
                let f = Fields::new("cmp", data, &[NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA])?;
                Expr::Cmp {
                    sreg: f.u32(NFTA_CMP_SREG)?,
                    op: f.u32(NFTA_CMP_OP)?,
                    data: data_value(f.need(NFTA_CMP_DATA)?)?,
                }
            }
            "bitwise" => {
                let f = Fields::new(
                    "bitwise",
                    data,
                    &[
                        NFTA_BITWISE_SREG,
                        NFTA_BITWISE_DREG,
                        NFTA_BITWISE_LEN,
                        NFTA_BITWISE_MASK,
                        NFTA_BITWISE_XOR,
                        NFTA_BITWISE_OP,
                    ],
                )?;
                if let Some(op) = f.get(NFTA_BITWISE_OP) {
                    let op = be32(op)?;
                    if op != NFT_BITWISE_MASK_XOR {
                        bail!("bitwise expression has operation {op}, not mask-and-xor");
                    }
                }
                let mask = data_value(f.need(NFTA_BITWISE_MASK)?)?;
                let xor = data_value(f.need(NFTA_BITWISE_XOR)?)?;
                let len = f.u32(NFTA_BITWISE_LEN)? as usize;
                if mask.len() != len || xor.len() != len {
                    bail!("bitwise expression of length {len} has a mask or xor of another length");
                }
                Expr::Bitwise {
                    sreg: f.u32(NFTA_BITWISE_SREG)?,
                    dreg: f.u32(NFTA_BITWISE_DREG)?,
                    mask,
                    xor,
                }
            }
            "ct" => {
                let f = Fields::new("ct", data, &[NFTA_CT_DREG, NFTA_CT_KEY, NFTA_CT_SREG])?;
                let key = f.u32(NFTA_CT_KEY)?;
                match (f.get(NFTA_CT_DREG), f.get(NFTA_CT_SREG)) {
                    (Some(d), None) => Expr::Ct {
                        key,
                        dreg: be32(d)?,
                    },
                    (None, Some(s)) => Expr::CtSet {
                        key,
                        sreg: be32(s)?,
                    },
                    _ => bail!(
                        "ct expression with neither or both of a source and destination register"
                    ),
                }
            }
            "payload" => {
                let f = Fields::new(
                    "payload",
                    data,
                    &[
                        NFTA_PAYLOAD_DREG,
                        NFTA_PAYLOAD_BASE,
                        NFTA_PAYLOAD_OFFSET,
                        NFTA_PAYLOAD_LEN,
                        NFTA_PAYLOAD_SREG,
                        NFTA_PAYLOAD_CSUM_TYPE,
                        NFTA_PAYLOAD_CSUM_OFFSET,
                        NFTA_PAYLOAD_CSUM_FLAGS,
                    ],
                )?;
                let (base, offset, len) = (
                    f.u32(NFTA_PAYLOAD_BASE)?,
                    f.u32(NFTA_PAYLOAD_OFFSET)?,
                    f.u32(NFTA_PAYLOAD_LEN)?,
                );
                match (f.get(NFTA_PAYLOAD_DREG), f.get(NFTA_PAYLOAD_SREG)) {
                    (Some(d), None) => Expr::Payload {
                        base,
                        offset,
                        len,
                        dreg: be32(d)?,
                    },
                    (None, Some(s)) => Expr::PayloadWrite {
                        base,
                        offset,
                        len,
                        sreg: be32(s)?,
                        csum_type: f
                            .get(NFTA_PAYLOAD_CSUM_TYPE)
                            .map(be32)
                            .transpose()?
                            .unwrap_or(0),
                        csum_offset: f
                            .get(NFTA_PAYLOAD_CSUM_OFFSET)
                            .map(be32)
                            .transpose()?
                            .unwrap_or(0),
                        csum_flags: f
                            .get(NFTA_PAYLOAD_CSUM_FLAGS)
                            .map(be32)
                            .transpose()?
                            .unwrap_or(0),
                    },
                    _ => bail!(
                        "payload expression with neither or both of a source and destination register"
                    ),
                }
            }
            "immediate" => {
                let f = Fields::new(
                    "immediate",
                    data,
                    &[NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA],
                )?;
                let dreg = f.u32(NFTA_IMMEDIATE_DREG)?;
                let d = f.need(NFTA_IMMEDIATE_DATA)?;
                let inner = attrs(d.payload)?;
                match inner.as_slice() {
                    [v] if v.kind == NFTA_DATA_VALUE => Expr::Immediate {
                        dreg,
                        data: v.payload.to_vec(),
                    },
                    [v] if v.kind == NFTA_DATA_VERDICT && dreg == NFT_REG_VERDICT => {
                        let vf = Fields::new("verdict", v.payload, &[NFTA_VERDICT_CODE])?;
                        Expr::Verdict {
                            code: vf.u32(NFTA_VERDICT_CODE)?,
                        }
                    }
                    _ => bail!("immediate expression with data this reader does not know"),
                }
            }
            "counter" => {
                Fields::new(
                    "counter",
                    data,
                    &[NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS, NFTA_COUNTER_PAD],
                )?;
                Expr::Counter
            }
            "reject" => {
                let f = Fields::new("reject", data, &[NFTA_REJECT_TYPE, NFTA_REJECT_ICMP_CODE])?;
                let kind = f.u32(NFTA_REJECT_TYPE)?;
                let code = match f.get(NFTA_REJECT_ICMP_CODE) {
                    Some(a) => match a.payload {
                        [c] => Some(*c),
                        _ => bail!("reject expression with an ICMP code that is not one byte"),
                    },
                    None => None,
                };
                Expr::Reject { kind, code }
            }
            other => bail!("expression {other:?}, which devaipod's rules never use"),
        })
    }
}

/// A message from the kernel: its header fields and its attributes' bytes.
struct Incoming<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    /// After the nlmsghdr (for nf_tables messages: starting with the nfgenmsg).
    body: &'a [u8],
}

fn messages(buf: &[u8]) -> Result<Vec<Incoming<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes(buf[i..i + 4].try_into()?) as usize;
        if len < NLMSG_HDRLEN || i + len > buf.len() {
            bail!("malformed netlink message (length {len} at offset {i})");
        }
        out.push(Incoming {
            kind: u16::from_ne_bytes(buf[i + 4..i + 6].try_into()?),
            flags: u16::from_ne_bytes(buf[i + 6..i + 8].try_into()?),
            seq: u32::from_ne_bytes(buf[i + 8..i + 12].try_into()?),
            body: &buf[i + NLMSG_HDRLEN..i + len],
        });
        i += pad4(len);
    }
    Ok(out)
}

/// An NLMSG_ERROR: the errno (0 for an acknowledgement), the echoed request's
/// sequence number, and the kernel's extended-ack message, if any.
fn parse_error(m: &Incoming<'_>) -> Result<(i32, u32, Option<String>)> {
    if m.body.len() < 4 + NLMSG_HDRLEN {
        bail!("short netlink error message");
    }
    let errno = i32::from_ne_bytes(m.body[0..4].try_into()?);
    let echoed = &m.body[4..];
    let echoed_len = u32::from_ne_bytes(echoed[0..4].try_into()?) as usize;
    let seq = u32::from_ne_bytes(echoed[8..12].try_into()?);
    let mut text = None;
    if m.flags & NLM_F_ACK_TLVS != 0 {
        let skip = if m.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            pad4(echoed_len)
        };
        if let Some(tlvs) = echoed.get(skip..) {
            for a in attrs(tlvs)? {
                if a.kind == NLMSGERR_ATTR_MSG {
                    text = Some(string(a)?);
                }
            }
        }
    }
    Ok((-errno, seq, text))
}

/// The nf_tables attributes of a message body (after its 4-byte nfgenmsg), and its family.
fn nft_body<'a>(m: &Incoming<'a>) -> Result<(u8, Vec<Attr<'a>>)> {
    if m.body.len() < 4 {
        bail!("short nf_tables message");
    }
    Ok((m.body[0], attrs(&m.body[4..])?))
}

fn decode_table(m: &Incoming<'_>) -> Result<TableInfo> {
    let (family, a) = nft_body(m)?;
    let mut t = TableInfo {
        family,
        name: String::new(),
        flags: 0,
    };
    for a in a {
        match a.kind {
            NFTA_TABLE_NAME => t.name = string(a)?,
            NFTA_TABLE_FLAGS => t.flags = be32(a)?,
            _ => {}
        }
    }
    Ok(t)
}

fn decode_chain(m: &Incoming<'_>) -> Result<ChainInfo> {
    let (_, a) = nft_body(m)?;
    let mut table = String::new();
    let mut name = String::new();
    let mut hook = None;
    let mut policy = None;
    let mut kind = None;
    for a in a {
        match a.kind {
            NFTA_CHAIN_TABLE => table = string(a)?,
            NFTA_CHAIN_NAME => name = string(a)?,
            NFTA_CHAIN_HOOK => {
                let mut num = None;
                let mut prio = None;
                for h in attrs(a.payload)? {
                    match h.kind {
                        NFTA_HOOK_HOOKNUM => num = Some(be32(h)?),
                        NFTA_HOOK_PRIORITY => prio = Some(be32(h)? as i32),
                        _ => {}
                    }
                }
                hook = Some((
                    num.ok_or_else(|| anyhow!("chain {name} has a hook without a number"))?,
                    prio.ok_or_else(|| anyhow!("chain {name} has a hook without a priority"))?,
                ));
            }
            NFTA_CHAIN_POLICY => policy = Some(be32(a)?),
            NFTA_CHAIN_TYPE => kind = Some(string(a)?),
            _ => {}
        }
    }
    let base = match hook {
        Some((hook, priority)) => Some(ChainSpec {
            name: name.clone(),
            kind: kind.unwrap_or_default(),
            hook,
            priority,
            policy: policy.ok_or_else(|| anyhow!("base chain {name} has no policy"))?,
        }),
        None => None,
    };
    Ok(ChainInfo { table, name, base })
}

fn decode_rule(m: &Incoming<'_>) -> Result<RuleInfo> {
    let (_, a) = nft_body(m)?;
    let mut r = RuleInfo {
        table: String::new(),
        chain: String::new(),
        handle: 0,
        exprs: Vec::new(),
    };
    for a in a {
        match a.kind {
            NFTA_RULE_TABLE => r.table = string(a)?,
            NFTA_RULE_CHAIN => r.chain = string(a)?,
            NFTA_RULE_HANDLE => r.handle = be64(a)?,
            NFTA_RULE_EXPRESSIONS => {
                for (i, e) in attrs(a.payload)?.into_iter().enumerate() {
                    if e.kind != NFTA_LIST_ELEM {
                        bail!("rule expression list holds attribute {}", e.kind);
                    }
                    r.exprs.push(
                        Expr::decode(e.payload).with_context(|| format!("expression {}", i + 1))?,
                    );
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------
// The socket

/// A NETLINK_NETFILTER socket of this network namespace.
pub(crate) struct Nftables {
    sock: netlink_sys::Socket,
    seq: u32,
}

/// How long to wait for the kernel's answer before calling it lost; the kernel answers
/// a batch within microseconds, so this only bounds a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Nftables {
    pub(crate) fn open() -> Result<Self> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)
            .context("opening a netfilter netlink socket")?;
        sock.bind_auto()
            .context("binding the netfilter netlink socket")?;
        sock.connect(&netlink_sys::SocketAddr::new(0, 0))
            .context("connecting the netfilter netlink socket to the kernel")?;
        // Best effort: the kernel's reason in words, when it has one. Old kernels
        // without extended acks still report the errno.
        let _ = sock.set_ext_ack(true);
        set_recv_timeout(&sock, REPLY_TIMEOUT)?;
        // Sequence numbers only pair replies with requests on this socket.
        let seq = std::process::id().wrapping_mul(0x10000);
        Ok(Nftables { sock, seq })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// A fresh batch numbered after this socket's earlier requests.
    pub(crate) fn batch(&mut self) -> Batch {
        let first = self.next_seq();
        self.seq = first.wrapping_add(1000);
        Batch::new(first)
    }

    fn recv(&self, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        // MSG_TRUNC: the datagram's real length, so that a cut one is an error.
        match self.sock.recv(buf, libc::MSG_TRUNC) {
            Ok(n) if n > buf.len() => bail!("a netlink reply of {n} bytes did not fit"),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "the kernel did not answer within {}s",
                    REPLY_TIMEOUT.as_secs()
                )
            }
            Err(e) => Err(e).context("reading from the netfilter netlink socket"),
        }
    }

    /// Sends the batch and waits for every acknowledgement; the first refusal is the
    /// error, naming the message and the kernel's reason.
    pub(crate) fn apply(&mut self, batch: Batch) -> Result<()> {
        let (bytes, acks, begin_seq) = batch.finish();
        let n = self
            .sock
            .send(&bytes, 0)
            .context("sending the nftables batch")?;
        if n != bytes.len() {
            bail!("the kernel took {n} of the batch's {} bytes", bytes.len());
        }
        let mut pending: Vec<(u32, String)> = acks;
        let mut failures: Vec<String> = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        while !pending.is_empty() {
            if let Err(e) = self.recv(&mut buf) {
                // The kernel answers every message of a batch, refused or not; should it
                // stop early, the refusals it did send are the better report.
                if failures.is_empty() {
                    return Err(e);
                }
                break;
            }
            for m in messages(&buf)? {
                if m.kind != NLMSG_ERROR {
                    continue;
                }
                let (errno, seq, text) = parse_error(&m)?;
                if seq == begin_seq {
                    // The batch as a whole was refused (no permission, no nf_tables):
                    // nothing else will be answered.
                    return Err(refusal("the nftables transaction", errno, text, true));
                }
                let Some(i) = pending.iter().position(|(s, _)| *s == seq) else {
                    continue;
                };
                let (_, what) = pending.remove(i);
                if errno != 0 {
                    failures.push(format!("{:#}", refusal(&what, errno, text, false)));
                }
            }
        }
        // The first refusal is the cause; later messages often fail because of it.
        match failures.as_slice() {
            [] => {}
            [only] => {
                bail!("the kernel refused the nftables transaction (nothing was changed): {only}")
            }
            [first, rest @ ..] => bail!(
                "the kernel refused the nftables transaction (nothing was changed): {first} (and {} later messages of it)",
                rest.len()
            ),
        }
        Ok(())
    }

    /// Sends a dump request and collects the replies' messages until NLMSG_DONE.
    fn dump<T>(
        &mut self,
        msg: u16,
        family: u8,
        fill: impl FnOnce(&mut Msg),
        what: &str,
        decode: impl Fn(&Incoming<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let seq = self.next_seq();
        let mut m = Msg::nft(msg, NLM_F_DUMP, seq, family);
        fill(&mut m);
        let bytes = m.finish();
        self.sock
            .send(&bytes, 0)
            .with_context(|| format!("asking the kernel for {what}"))?;
        let mut out = Vec::new();
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            self.recv(&mut buf)?;
            for m in messages(&buf)? {
                if m.seq != seq {
                    continue;
                }
                if m.flags & NLM_F_DUMP_INTR != 0 {
                    bail!("the ruleset changed while {what} were read; run again");
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let (errno, _, text) = parse_error(&m)?;
                        if errno == 0 {
                            continue;
                        }
                        return Err(refusal(&format!("listing {what}"), errno, text, true));
                    }
                    _ => out.push(decode(&m).with_context(|| format!("reading {what}"))?),
                }
            }
        }
    }

    /// Every table of every family.
    pub(crate) fn tables(&mut self) -> Result<Vec<TableInfo>> {
        self.dump(
            NFT_MSG_GETTABLE,
            NFPROTO_UNSPEC,
            |_| {},
            "the tables",
            decode_table,
        )
    }

    /// The chains of `table` (of `family`).
    pub(crate) fn chains(&mut self, family: u8, table: &str) -> Result<Vec<ChainInfo>> {
        let all = self.dump(NFT_MSG_GETCHAIN, family, |_| {}, "the chains", decode_chain)?;
        Ok(all.into_iter().filter(|c| c.table == table).collect())
    }

    /// The rules of `table` `chain` (of `family`), in the order the kernel runs them.
    pub(crate) fn rules(&mut self, family: u8, table: &str, chain: &str) -> Result<Vec<RuleInfo>> {
        let all = self.dump(
            NFT_MSG_GETRULE,
            family,
            |m| {
                m.attr_str(NFTA_RULE_TABLE, table)
                    .attr_str(NFTA_RULE_CHAIN, chain);
            },
            "the rules",
            decode_rule,
        )?;
        Ok(all
            .into_iter()
            .filter(|r| r.table == table && r.chain == chain)
            .collect())
    }
}

/// An errno from the kernel in words. `whole` is a refusal of the whole request (as
/// for a missing capability) rather than of one message of a batch.
fn refusal(what: &str, errno: i32, text: Option<String>, whole: bool) -> anyhow::Error {
    let err = io::Error::from_raw_os_error(errno);
    let hint = match errno {
        libc::EPERM if whole => {
            " (nftables needs CAP_NET_ADMIN in this network namespace: devaipod gives it to the pod's rules container only)"
        }
        libc::EPERM => " (the table belongs to another process, which made it with `flags owner`)",
        libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => {
            " (this kernel lacks nf_tables)"
        }
        libc::ENOENT => " (an object or an expression module is missing from this kernel)",
        _ => "",
    };
    match text {
        Some(t) => anyhow!("{what}: {err}: {t}{hint}"),
        None => anyhow!("{what}: {err}{hint}"),
    }
}

fn set_recv_timeout(sock: &netlink_sys::Socket, t: Duration) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt reads size_of::<timeval>() bytes from &tv, which lives for
    // the call; the fd is the socket's own, open for its lifetime.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("setting the netlink socket's timeout");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Text, for errors and logs: close to `nft --debug=netlink`.

fn meta_key(k: u32) -> String {
    match k {
        NFT_META_OIFNAME => "oifname".into(),
        NFT_META_SKUID => "skuid".into(),
        NFT_META_L4PROTO => "l4proto".into(),
        NFT_META_NFPROTO => "nfproto".into(),
        k => format!("key{k}"),
    }
}

fn ct_key(k: u32) -> String {
    match k {
        NFT_CT_STATE => "state".into(),
        NFT_CT_MARK => "mark".into(),
        k => format!("key{k}"),
    }
}

fn hex(data: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in data {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Meta { key, dreg } => write!(f, "meta load {} => reg {dreg}", meta_key(*key)),
            Expr::Cmp { sreg, op, data } => {
                let op = match *op {
                    NFT_CMP_EQ => "eq".to_string(),
                    NFT_CMP_NEQ => "neq".to_string(),
                    o => format!("op{o}"),
                };
                write!(f, "cmp {op} reg {sreg} {}", hex(data))
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => write!(
                f,
                "bitwise reg {dreg} = (reg {sreg} & {}) ^ {}",
                hex(mask),
                hex(xor)
            ),
            Expr::Ct { key, dreg } => write!(f, "ct load {} => reg {dreg}", ct_key(*key)),
            Expr::CtSet { key, sreg } => write!(f, "ct set {} with reg {sreg}", ct_key(*key)),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => write!(
                f,
                "payload load {len}b @ base {base} + {offset} => reg {dreg}"
            ),
            Expr::PayloadWrite {
                base,
                offset,
                len,
                sreg,
                csum_type,
                csum_offset,
                csum_flags,
            } => write!(
                f,
                "payload write reg {sreg} => {len}b @ base {base} + {offset} csum_type {csum_type} csum_off {csum_offset} csum_flags {csum_flags:#x}"
            ),
            Expr::Immediate { dreg, data } => write!(f, "immediate reg {dreg} {}", hex(data)),
            Expr::Verdict { code } => match *code {
                NF_ACCEPT => write!(f, "immediate reg 0 accept"),
                0 => write!(f, "immediate reg 0 drop"),
                c => write!(f, "immediate reg 0 verdict {c:#x}"),
            },
            Expr::Counter => write!(f, "counter"),
            Expr::Reject { kind, code } => match code {
                Some(c) => write!(f, "reject type {kind} code {c}"),
                None => write!(f, "reject type {kind}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes of one expression as the kernel might dump them, in the
    /// kernel's own order and with the attributes it adds (counter values, bitwise op).
    fn elem(name: &str, data: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = Msg::new(0, 0, 0, 0, 0);
        m.attr_str(NFTA_EXPR_NAME, name).nest_begin(NFTA_EXPR_DATA);
        for (k, v) in data {
            m.attr(*k, v);
        }
        m.nest_end();
        m.finish()[NLMSG_HDRLEN + 4..].to_vec()
    }

    fn nested_value(v: &[u8]) -> Vec<u8> {
        let mut m = Msg::new(0, 0, 0, 0, 0);
        m.attr(NFTA_DATA_VALUE, v);
        m.finish()[NLMSG_HDRLEN + 4..].to_vec()
    }

    /// Message header, derived by hand from linux/netlink.h and nfnetlink.h: a
    /// NEWTABLE for `inet devaipod` with flags 0 and sequence 7.
    #[test]
    fn newtable_bytes_follow_the_uapi() {
        let mut b = Batch::new(7);
        b.add_table(NFPROTO_INET, "devaipod");
        let (bytes, acks, begin) = b.finish();
        assert_eq!(acks, vec![(7, "add table inet devaipod".to_string())]);
        assert_eq!(begin, 8);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // BATCH_BEGIN: len 20, type 0x10, flags REQUEST, seq 8, pid 0
            &[20, 0, 0, 0, 0x10, 0, 0x01, 0, 8, 0, 0, 0, 0, 0, 0, 0][..],
            // nfgenmsg: AF_UNSPEC, V0, res_id = htons(NFNL_SUBSYS_NFTABLES)
            &[0, 0, 0, 10],
            // NEWTABLE: len 44, type (10 << 8 | 0) = 0x0a00,
            // flags REQUEST|ACK|CREATE = 0x0405, seq 7
            &[44, 0, 0, 0, 0x00, 0x0a, 0x05, 0x04, 7, 0, 0, 0, 0, 0, 0, 0],
            // nfgenmsg: NFPROTO_INET, V0, res_id 0
            &[1, 0, 0, 0],
            // NFTA_TABLE_NAME "devaipod\0": len 13, type 1, padded to 16
            &[13, 0, 1, 0], b"devaipod", &[0, 0, 0, 0],
            // NFTA_TABLE_FLAGS 0 (big-endian u32): len 8, type 2
            &[8, 0, 2, 0, 0, 0, 0, 0],
            // BATCH_END: len 20, type 0x11, seq 9
            &[20, 0, 0, 0, 0x11, 0, 0x01, 0, 9, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 10],
        ]
        .concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn base_chain_bytes_follow_the_uapi() {
        let mut b = Batch::new(1);
        b.create_base_chain(
            NFPROTO_INET,
            "devaipod",
            &ChainSpec {
                name: "output".into(),
                kind: "filter".into(),
                hook: NF_INET_LOCAL_OUT,
                priority: 0,
                policy: NF_ACCEPT,
            },
        );
        let (bytes, _, _) = b.finish();
        let msg = &bytes[20..bytes.len() - 20];
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // NEWCHAIN: len 88, type 0x0a03, flags REQUEST|ACK|EXCL|CREATE = 0x0605, seq 1
            &[88, 0, 0, 0, 0x03, 0x0a, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0],
            // NFTA_CHAIN_TABLE "devaipod"
            &[13, 0, 1, 0], b"devaipod", &[0, 0, 0, 0],
            // NFTA_CHAIN_NAME "output\0": len 11, type 3, padded to 12
            &[11, 0, 3, 0], b"output", &[0, 0],
            // NFTA_CHAIN_HOOK, nested (type 4 | NLA_F_NESTED = 0x8004), len 20:
            &[20, 0, 0x04, 0x80],
            //   NFTA_HOOK_HOOKNUM NF_INET_LOCAL_OUT = 3
            &[8, 0, 1, 0, 0, 0, 0, 3],
            //   NFTA_HOOK_PRIORITY 0
            &[8, 0, 2, 0, 0, 0, 0, 0],
            // NFTA_CHAIN_POLICY NF_ACCEPT = 1
            &[8, 0, 5, 0, 0, 0, 0, 1],
            // NFTA_CHAIN_TYPE "filter\0": len 11, type 7
            &[11, 0, 7, 0], b"filter", &[0, 0],
        ]
        .concat();
        assert_eq!(msg, want.as_slice());
    }

    /// `meta skuid 4096` as a rule: meta (dreg 1, key SKUID) then cmp eq reg 1 with the
    /// uid in host order, then `accept`.
    #[test]
    fn rule_bytes_follow_the_uapi() {
        let mut b = Batch::new(3);
        b.append_rule(
            NFPROTO_INET,
            "t",
            "c",
            &[
                Expr::Meta {
                    key: NFT_META_SKUID,
                    dreg: NFT_REG_1,
                },
                Expr::Cmp {
                    sreg: NFT_REG_1,
                    op: NFT_CMP_EQ,
                    data: 4096u32.to_ne_bytes().to_vec(),
                },
                Expr::Verdict { code: NF_ACCEPT },
            ],
            "r".into(),
        );
        let (bytes, _, _) = b.finish();
        let msg = &bytes[20..bytes.len() - 20];
        let uid = 4096u32.to_ne_bytes();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // NEWRULE: type 0x0a06, flags REQUEST|ACK|CREATE|APPEND = 0x0c05
            &[168, 0, 0, 0, 0x06, 0x0a, 0x05, 0x0c, 3, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0],
            &[6, 0, 1, 0], b"t", &[0, 0, 0], // NFTA_RULE_TABLE "t"
            &[6, 0, 2, 0], b"c", &[0, 0, 0], // NFTA_RULE_CHAIN "c"
            &[132, 0, 0x04, 0x80],            // NFTA_RULE_EXPRESSIONS, nested
            //  NFTA_LIST_ELEM (nested): "meta", data {DREG 1, KEY 10}
            &[36, 0, 0x01, 0x80],
            &[9, 0, 1, 0], b"meta", &[0, 0, 0, 0],
            &[20, 0, 0x02, 0x80],
            &[8, 0, 1, 0, 0, 0, 0, 1],
            &[8, 0, 2, 0, 0, 0, 0, 10],
            //  "cmp": data {SREG 1, OP EQ, DATA {VALUE uid (host order)}}
            &[44, 0, 0x01, 0x80],
            &[8, 0, 1, 0], b"cmp", &[0],
            &[32, 0, 0x02, 0x80],
            &[8, 0, 1, 0, 0, 0, 0, 1],
            &[8, 0, 2, 0, 0, 0, 0, 0],
            &[12, 0, 0x03, 0x80],
            &[8, 0, 1, 0], &uid,
            //  "immediate": data {DREG 0, DATA {VERDICT {CODE NF_ACCEPT}}}
            &[48, 0, 0x01, 0x80],
            &[14, 0, 1, 0], b"immediate", &[0, 0, 0],
            &[28, 0, 0x02, 0x80],
            &[8, 0, 1, 0, 0, 0, 0, 0],
            &[16, 0, 0x02, 0x80],
            &[12, 0, 0x02, 0x80],
            &[8, 0, 1, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(msg, want.as_slice());
    }

    #[test]
    fn every_expression_kind_round_trips() {
        let all = vec![
            Expr::Meta {
                key: NFT_META_OIFNAME,
                dreg: 1,
            },
            Expr::Cmp {
                sreg: 1,
                op: NFT_CMP_NEQ,
                data: vec![6],
            },
            Expr::Bitwise {
                sreg: 1,
                dreg: 1,
                mask: vec![0xff, 0],
                xor: vec![0, 0x14],
            },
            Expr::Ct {
                key: NFT_CT_STATE,
                dreg: 1,
            },
            Expr::CtSet {
                key: NFT_CT_MARK,
                sreg: 1,
            },
            Expr::Payload {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 0,
                len: 2,
                dreg: 1,
            },
            Expr::Meta {
                key: NFT_META_NFPROTO,
                dreg: 1,
            },
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 12,
                len: 4,
                dreg: 1,
            },
            Expr::PayloadWrite {
                base: NFT_PAYLOAD_TRANSPORT_HEADER,
                offset: 12,
                len: 2,
                sreg: 1,
                csum_type: NFT_PAYLOAD_CSUM_INET,
                csum_offset: 16,
                csum_flags: 0,
            },
            Expr::Immediate {
                dreg: 1,
                data: vec![1, 2, 3, 4],
            },
            Expr::Verdict { code: NF_ACCEPT },
            Expr::Counter,
            Expr::Reject {
                kind: NFT_REJECT_ICMPX_UNREACH,
                code: Some(NFT_REJECT_ICMPX_ADMIN_PROHIBITED),
            },
            Expr::Reject {
                kind: NFT_REJECT_TCP_RST,
                code: None,
            },
        ];
        for e in all {
            let mut m = Msg::new(0, 0, 0, 0, 0);
            e.encode(&mut m);
            let bytes = m.finish();
            let list = attrs(&bytes[NLMSG_HDRLEN + 4..]).expect("attrs");
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].kind, NFTA_LIST_ELEM);
            assert_eq!(Expr::decode(list[0].payload).expect("decode"), e, "{e}");
        }
    }

    /// What the kernel adds on its way back is accepted; what we cannot compare is not.
    #[test]
    fn decoding_accepts_the_kernels_additions_and_refuses_the_unknown() {
        let counter = elem(
            "counter",
            &[
                (NFTA_COUNTER_BYTES, 1234u64.to_be_bytes().to_vec()),
                (NFTA_COUNTER_PACKETS, 5u64.to_be_bytes().to_vec()),
            ],
        );
        assert_eq!(Expr::decode(&counter).expect("counter"), Expr::Counter);

        // nft_meta_get_dump writes KEY before DREG.
        let meta = elem(
            "meta",
            &[
                (NFTA_META_KEY, NFT_META_SKUID.to_be_bytes().to_vec()),
                (NFTA_META_DREG, 1u32.to_be_bytes().to_vec()),
            ],
        );
        assert_eq!(
            Expr::decode(&meta).expect("meta"),
            Expr::Meta {
                key: NFT_META_SKUID,
                dreg: 1
            }
        );

        // A ct load with a direction: not what our rules hold, so not accepted as one.
        let ct_dir = elem(
            "ct",
            &[
                (NFTA_CT_KEY, NFT_CT_MARK.to_be_bytes().to_vec()),
                (NFTA_CT_DREG, 1u32.to_be_bytes().to_vec()),
                (3, vec![1]),
            ],
        );
        let err = Expr::decode(&ct_dir).expect_err("direction is unknown here");
        assert!(format!("{err:#}").contains("attribute 3"), "{err:#}");

        let shift = elem(
            "bitwise",
            &[
                (NFTA_BITWISE_SREG, 1u32.to_be_bytes().to_vec()),
                (NFTA_BITWISE_DREG, 1u32.to_be_bytes().to_vec()),
                (NFTA_BITWISE_LEN, 4u32.to_be_bytes().to_vec()),
                (NFTA_BITWISE_MASK | NLA_F_NESTED, nested_value(&[0; 4])),
                (NFTA_BITWISE_XOR | NLA_F_NESTED, nested_value(&[0; 4])),
                (NFTA_BITWISE_OP, 1u32.to_be_bytes().to_vec()),
            ],
        );
        let err = Expr::decode(&shift).expect_err("a shift is not mask-and-xor");
        assert!(format!("{err:#}").contains("operation 1"), "{err:#}");

        let lookup = elem("lookup", &[]);
        let err = Expr::decode(&lookup).expect_err("lookup is not ours");
        assert!(format!("{err:#}").contains("\"lookup\""), "{err:#}");
    }

    #[test]
    fn an_error_reply_names_the_request_and_the_kernels_words() {
        // NLMSG_ERROR, flags ACK_TLVS|CAPPED, errno -EPERM, echoed header (seq 42), then
        // NLMSGERR_ATTR_MSG.
        let mut body = Vec::new();
        body.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        body.extend_from_slice(&[20, 0, 0, 0, 0x06, 0x0a, 0x05, 0x0c]);
        body.extend_from_slice(&42u32.to_ne_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&[9, 0, 1, 0]);
        body.extend_from_slice(b"nope");
        body.extend_from_slice(&[0, 0, 0, 0]);
        let m = Incoming {
            kind: NLMSG_ERROR,
            flags: NLM_F_ACK_TLVS | NLM_F_CAPPED,
            seq: 42,
            body: &body,
        };
        let (errno, seq, text) = parse_error(&m).expect("parse");
        assert_eq!(
            (errno, seq, text.as_deref()),
            (libc::EPERM, 42, Some("nope"))
        );
        let e = refusal("the nftables transaction", errno, text.clone(), true);
        assert_eq!(
            format!("{e:#}"),
            "the nftables transaction: Operation not permitted (os error 1): nope (nftables needs CAP_NET_ADMIN in this network namespace: devaipod gives it to the pod's rules container only)"
        );
        let e = refusal("delete table inet devaipod", errno, text, false);
        assert!(format!("{e:#}").contains("flags owner"), "{e:#}");
    }
}
