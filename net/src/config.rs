//! devaipod's configuration of the proxy: a JSON file (a Podman file secret of the
//! proxy's uid) that devaipod writes at `up`. devaipod's side of this contract is
//! `src/plan/network.rs` in the main crate; keep the two in step.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Names on the allowlist, and the credential routes.
    Allowlist,
    /// The credential routes only.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Where the proxy listens: the pod's loopback, e.g. "127.0.0.1:4097".
    pub(crate) listen: String,
    pub(crate) mode: Mode,
    /// The pod's name, for the hint in a refusal ("add it with: devaipod allow POD NAME");
    /// `POD` when absent.
    #[serde(default)]
    pub(crate) pod: Option<String>,
    /// The initial allowlist (NAME, NAME:PORT, `*.`NAME); `allow` changes the copy in
    /// the state directory, which wins once it exists.
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// Credential routes: `http://LISTEN/devaipod/credentials/PROVIDER/REST` goes to
    /// `base_url` + `/REST` with the header set.
    #[serde(default)]
    pub(crate) credentials: Vec<Credential>,
    /// Addresses that are refused whatever the name (the host's own addresses, which
    /// devaipod reads at `up`), as CIDRs. Loopback, private, link-local and the rest of
    /// the special ranges are refused always, without being listed.
    #[serde(default)]
    pub(crate) deny_nets: Vec<String>,
    /// Test-only settings: present only when devaipod's own environment names them
    /// (DEVAIPOD_TEST_NET_CA, DEVAIPOD_TEST_NET_HOSTS); nothing in a repo reaches them.
    #[serde(default)]
    pub(crate) test: Option<TestSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credential {
    /// The opencode provider id (a path segment: [a-z0-9._-]).
    pub(crate) provider: String,
    /// https:// (or http:// only for a test) URL with an optional path prefix.
    pub(crate) base_url: String,
    /// The header that is set, replacing any the agent sent (e.g. "x-api-key").
    pub(crate) header: String,
    /// Put before the key (e.g. "Bearer ").
    #[serde(default)]
    pub(crate) prefix: String,
    /// The key's file (a Podman file secret of the proxy's uid, mode 0400).
    pub(crate) secret_file: String,
    /// The paths below `base_url` the route forwards (each a prefix that ends where a
    /// `/` or `:` follows, e.g. `messages`, `models`); empty: every path.
    #[serde(default)]
    pub(crate) paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestSettings {
    /// PEM of a CA the proxy trusts besides the built-in roots.
    #[serde(default)]
    pub(crate) ca_pem: Option<String>,
    /// A fixed name map used instead of DNS: name -> addresses.
    #[serde(default)]
    pub(crate) hosts: BTreeMap<String, Vec<String>>,
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the proxy configuration {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing the proxy configuration {}", path.display()))
    }
}
